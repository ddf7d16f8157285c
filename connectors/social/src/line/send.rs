//! Outbound: the push API, addressed by the thread key, made idempotent by
//! `X-Line-Retry-Key`. The reply API is not used: its token is single-use and expires within
//! about a minute, too short for an agent's answer. Quoting (`quoteToken`) needs the token of
//! the quoted message, which only the webhook carries and the hub does not hand to senders, so
//! replies are not shown as quotes.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use sha2::Digest;
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::{ConnectorError, Outbound, OutboundMessage, Sent};

use super::config::Settings;

pub struct LineOutbound {
    pub(crate) s: Arc<Settings>,
    pub(crate) client: reqwest::Client,
}

/// LINE takes at most five messages per push.
const MAX_MESSAGES: usize = 5;

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The `X-Line-Retry-Key` for an idempotency key: the key itself when it is a UUID, else a
/// UUID derived from it (SHA-256, laid out as an RFC 9562 version 8 UUID), so every retry of
/// one reply carries the same value.
pub fn retry_key(idempotency_key: &str) -> String {
    let k = idempotency_key.trim();
    if is_uuid(k) {
        return k.to_ascii_lowercase();
    }
    let d = sha2::Sha256::digest(format!("switchboard:line-retry-key:{k}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The push API's `to` from a thread key (`user:U…`, `group:C…`, `room:R…`).
fn recipient(thread_key: &str) -> Result<&str, ConnectorError> {
    let to = match thread_key.split_once(':') {
        Some(("user" | "group" | "room", id)) => id,
        Some(_) => {
            return Err(ConnectorError::Permanent(format!(
                "thread key `{thread_key}` does not name a LINE user, group or room"
            )))
        }
        None => thread_key,
    };
    if to.trim().is_empty() {
        return Err(ConnectorError::Permanent(
            "thread key has no LINE recipient".into(),
        ));
    }
    Ok(to)
}

/// The text message first, then one image message per attachment URL; URLs beyond LINE's
/// five messages are appended to the text as links.
fn messages(msg: &OutboundMessage) -> Vec<Value> {
    let urls = &msg.attachment_urls;
    let needs_text = !msg.text.trim().is_empty() || urls.len() > MAX_MESSAGES;
    let room = MAX_MESSAGES - usize::from(needs_text);
    let (images, links) = urls.split_at(urls.len().min(room));
    let mut text = msg.text.clone();
    for l in links {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(l);
    }
    let mut out = Vec::new();
    if !text.trim().is_empty() {
        out.push(json!({"type": "text", "text": text}));
    }
    for u in images {
        out.push(json!({"type": "image", "originalContentUrl": u, "previewImageUrl": u}));
    }
    out
}

/// A LINE error body's `message` and `details`, for the agent.
fn reason(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.to_string();
    };
    let mut r = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(details) = v.get("details").and_then(Value::as_array) {
        for d in details.iter().take(5) {
            let m = d.get("message").and_then(Value::as_str).unwrap_or("");
            let p = d.get("property").and_then(Value::as_str).unwrap_or("");
            r.push_str(&format!("; {p}: {m}"));
        }
    }
    if r.is_empty() {
        body.to_string()
    } else {
        r
    }
}

#[async_trait]
impl Outbound for LineOutbound {
    async fn send(&self, msg: &OutboundMessage) -> Result<Sent, ConnectorError> {
        let to = recipient(&msg.thread_key)?;
        let messages = messages(msg);
        if messages.is_empty() {
            return Err(ConnectorError::Permanent(
                "nothing to send: the reply has no text and no attachments".into(),
            ));
        }
        let body = json!({"to": to, "messages": messages});
        let resp = self
            .client
            .post(format!("{}/v2/bot/message/push", self.s.api_base))
            .bearer_auth(self.s.channel_access_token.expose())
            .header("x-line-retry-key", retry_key(&msg.idempotency_key))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers(), chrono::Utc::now().timestamp());
        let text = resp.text().await.unwrap_or_default();
        match status {
            200..=299 => Ok(Sent {
                provider_message_id: serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                    v.pointer("/sentMessages/0/id").and_then(|id| match id {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                }),
            }),
            // "The retry key is already accepted": an earlier attempt of this very reply went
            // through (its answer was lost). LINE does not repeat the message ids here.
            409 => Ok(Sent {
                provider_message_id: None,
            }),
            // The monthly message quota does not come back by waiting a few seconds.
            429 if text.contains("monthly limit") => Err(ConnectorError::Permanent(format!(
                "HTTP 429: {}",
                reason(&text)
            ))),
            _ => Err(status_error(status, wait, &reason(&text))),
        }
    }
}

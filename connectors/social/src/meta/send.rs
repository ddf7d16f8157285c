//! Outbound: replies through the Graph API Send endpoints, with Meta's error codes mapped to
//! retry classes. The token goes in `Authorization: Bearer`, never in the URL.
//!
//! A reply with attachments goes out as the text message first, then one attachment message
//! per URL (Meta sends text and a file as separate messages). The type is chosen by the URL's
//! extension (image, video, audio), anything else goes as a file / document.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::{ConnectorError, Outbound, OutboundMessage, Sent};

use super::config::Settings;
use super::normalize::{scalar, METADATA_PREFIX};
use super::Kind;

pub struct MetaOutbound {
    pub(crate) s: Arc<Settings>,
    pub(crate) client: reqwest::Client,
}

/// The reason shown to agents when WhatsApp refuses a free-form message.
pub const WHATSAPP_WINDOW: &str =
    "outside the 24-hour messaging window; a template message is needed";
/// The reason shown when Messenger / Instagram refuse a message outside the window.
pub const MESSENGER_WINDOW: &str = "outside the 24-hour messaging window";

#[async_trait]
impl Outbound for MetaOutbound {
    async fn send(&self, msg: &OutboundMessage) -> Result<Sent, ConnectorError> {
        let to = msg.thread_key.trim();
        if to.is_empty() {
            return Err(ConnectorError::Permanent(
                "the conversation has no recipient id".into(),
            ));
        }
        let first = self.post(&self.text_body(msg, to)).await?;
        for (n, url) in msg.attachment_urls.iter().enumerate() {
            if let Err(e) = self.post(&self.attachment_body(msg, to, url)).await {
                // The text already went out: a retry would send it twice, so a failed
                // attachment fails the reply with what was and was not delivered.
                let why = match e {
                    ConnectorError::RateLimited { .. } => "rate limited".to_string(),
                    ConnectorError::Transient(r)
                    | ConnectorError::Unauthorized(r)
                    | ConnectorError::Permanent(r) => r,
                };
                return Err(ConnectorError::Permanent(format!(
                    "text sent{}, attachment {} of {} not sent: {why}",
                    first
                        .as_deref()
                        .map(|id| format!(" as {id}"))
                        .unwrap_or_default(),
                    n + 1,
                    msg.attachment_urls.len()
                )));
            }
        }
        Ok(Sent {
            provider_message_id: first,
        })
    }
}

/// The attachment type Meta expects, from a URL's file extension.
fn media_type(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" | "gif" | "webp" => "image",
        "mp4" | "mov" | "3gp" | "m4v" => "video",
        "mp3" | "m4a" | "aac" | "ogg" | "opus" | "amr" | "wav" => "audio",
        _ => "file",
    }
}

impl MetaOutbound {
    fn text_body(&self, msg: &OutboundMessage, to: &str) -> Value {
        match self.s.kind {
            Kind::Messenger => json!({
                "recipient": {"id": to},
                "messaging_type": "RESPONSE",
                "message": {
                    "text": msg.text,
                    "metadata": format!("{METADATA_PREFIX}{}", msg.id),
                },
            }),
            Kind::Instagram => json!({
                "recipient": {"id": to},
                "message": {"text": msg.text},
            }),
            Kind::Whatsapp => {
                let mut b = json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": to,
                    "type": "text",
                    "text": {"body": msg.text},
                });
                if let Some(id) = &msg.in_reply_to {
                    b["context"] = json!({"message_id": id});
                }
                b
            }
        }
    }

    fn attachment_body(&self, msg: &OutboundMessage, to: &str, url: &str) -> Value {
        let t = media_type(url);
        match self.s.kind {
            Kind::Messenger => json!({
                "recipient": {"id": to},
                "messaging_type": "RESPONSE",
                "message": {
                    "attachment": {"type": t, "payload": {"url": url, "is_reusable": false}},
                    "metadata": format!("{METADATA_PREFIX}{}", msg.id),
                },
            }),
            Kind::Instagram => json!({
                "recipient": {"id": to},
                "message": {"attachment": {"type": t, "payload": {"url": url}}},
            }),
            Kind::Whatsapp => {
                let t = if t == "file" { "document" } else { t };
                let mut b = json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": to,
                    "type": t,
                });
                b[t] = json!({"link": url});
                if t == "document" {
                    if let Some(name) = url
                        .split(['?', '#'])
                        .next()
                        .and_then(|p| p.rsplit('/').next())
                        .filter(|n| !n.is_empty())
                    {
                        b[t]["filename"] = json!(name);
                    }
                }
                b
            }
        }
    }

    /// POSTs one message; the provider's message id on success.
    async fn post(&self, body: &Value) -> Result<Option<String>, ConnectorError> {
        let url = format!("{}/{}/messages", self.s.api_base, self.s.account_id);
        let resp = self
            .client
            .post(&url)
            .bearer_auth(self.s.access_token.expose())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers(), chrono::Utc::now().timestamp());
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) || json.get("error").is_some() {
            return Err(map_error(self.s.kind, status, wait, &text));
        }
        Ok(json
            .get("message_id")
            .and_then(scalar)
            .or_else(|| json.pointer("/messages/0/id").and_then(scalar)))
    }
}

/// Maps a Graph API error answer (`{"error":{"message","type","code","error_subcode"}}`) to a
/// retry class; answers without that shape fall back to the HTTP status.
pub fn map_error(kind: Kind, status: u16, wait: Option<Duration>, body: &str) -> ConnectorError {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let Some(err) = json.get("error").filter(|e| e.is_object()) else {
        return status_error(status, wait, body);
    };
    let code = err.get("code").and_then(Value::as_i64);
    let sub = err.get("error_subcode").and_then(Value::as_i64);
    let message: String = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    let details = err
        .pointer("/error_data/details")
        .and_then(Value::as_str)
        .map(|d| d.chars().take(300).collect::<String>());
    let mut reason = match code {
        Some(c) => format!("Meta error {c}"),
        None => format!("HTTP {status}"),
    };
    if let Some(s) = sub {
        reason.push_str(&format!("/{s}"));
    }
    if !message.is_empty() {
        reason.push_str(&format!(": {message}"));
    }
    if let Some(d) = details.filter(|d| *d != message) {
        reason.push_str(&format!(" ({d})"));
    }
    match (code, sub) {
        // Application, user, page and WhatsApp throughput / pair rate limits.
        (Some(4 | 17 | 32 | 613 | 80007 | 130429 | 131056), _) => {
            ConnectorError::RateLimited { retry_after: wait }
        }
        (Some(10), Some(2534022 | 2018278)) => {
            ConnectorError::Permanent(format!("{MESSENGER_WINDOW} ({reason})"))
        }
        (Some(131047), _) if kind == Kind::Whatsapp => {
            ConnectorError::Permanent(format!("{WHATSAPP_WINDOW} ({reason})"))
        }
        // Expired or invalid token, or a token without the permission: the connector needs
        // attention, so the hub marks it unhealthy.
        (Some(190 | 102), _) => ConnectorError::Unauthorized(reason),
        _ if status == 401 => ConnectorError::Unauthorized(reason),
        _ if status == 429 => ConnectorError::RateLimited { retry_after: wait },
        _ if status >= 500 || err.get("is_transient").and_then(Value::as_bool) == Some(true) => {
            ConnectorError::Transient(reason)
        }
        (Some(1 | 2), _) => ConnectorError::Transient(reason),
        _ if status == 403 => ConnectorError::Unauthorized(reason),
        _ => ConnectorError::Permanent(reason),
    }
}

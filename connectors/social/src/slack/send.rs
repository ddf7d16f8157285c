//! Outbound: `chat.postMessage` into the conversation's channel and thread. Slack answers
//! most errors with HTTP 200 and `{"ok": false, "error": "…"}`; each error is mapped to the
//! hub's retry classes. Slack has no idempotency key for posts. Attachment URLs are appended
//! to the text as links (Slack unfurls them); uploading files needs another API flow.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::{ConnectorError, Outbound, OutboundMessage, Sent};

use super::config::Settings;
use super::normalize::message_id;

pub struct SlackOutbound {
    pub(crate) s: Arc<Settings>,
    pub(crate) client: reqwest::Client,
}

/// `"<channel>:<thread ts>"` → channel and thread; a bare channel posts at the top level.
fn target(thread_key: &str) -> Result<(&str, Option<&str>), ConnectorError> {
    let (channel, ts) = match thread_key.split_once(':') {
        Some((c, t)) => (c, Some(t).filter(|t| !t.is_empty())),
        None => (thread_key, None),
    };
    if channel.trim().is_empty() {
        return Err(ConnectorError::Permanent(
            "thread key has no Slack channel".into(),
        ));
    }
    Ok((channel, ts))
}

/// A Slack Web API `error` code → the hub's retry class.
pub fn api_error(code: &str, retry_after: Option<Duration>) -> ConnectorError {
    match code {
        "ratelimited" | "rate_limited" => ConnectorError::RateLimited { retry_after },
        "invalid_auth"
        | "not_authed"
        | "token_revoked"
        | "token_expired"
        | "account_inactive"
        | "no_permission"
        | "missing_scope"
        | "not_allowed_token_type"
        | "ekm_access_denied" => ConnectorError::Unauthorized(format!("Slack: {code}")),
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            ConnectorError::Transient(format!("Slack: {code}"))
        }
        // channel_not_found, not_in_channel, is_archived, msg_too_long, no_text, …
        other => ConnectorError::Permanent(format!("Slack: {other}")),
    }
}

#[async_trait]
impl Outbound for SlackOutbound {
    async fn send(&self, msg: &OutboundMessage) -> Result<Sent, ConnectorError> {
        let (channel, thread_ts) = target(&msg.thread_key)?;
        let mut text = msg.text.clone();
        for u in &msg.attachment_urls {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(u);
        }
        if text.trim().is_empty() {
            return Err(ConnectorError::Permanent(
                "nothing to send: the reply has no text and no attachments".into(),
            ));
        }
        let mut body = json!({"channel": channel, "text": text});
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let resp = self
            .client
            .post(format!("{}/chat.postMessage", self.s.api_base))
            .bearer_auth(self.s.bot_token.expose())
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers(), chrono::Utc::now().timestamp());
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(status_error(status, wait, &text));
        }
        let v: Value = serde_json::from_str(&text).map_err(|_| {
            ConnectorError::Transient("Slack answered with a body that is not JSON".into())
        })?;
        if v.get("ok").and_then(Value::as_bool) != Some(true) {
            let code = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error");
            return Err(api_error(code, wait));
        }
        // The echo of this post carries the same "<channel>:<ts>", so the hub can tell it
        // is ours.
        let posted_channel = v.get("channel").and_then(Value::as_str).unwrap_or(channel);
        Ok(Sent {
            provider_message_id: v
                .get("ts")
                .and_then(Value::as_str)
                .map(|ts| message_id(posted_channel, ts)),
        })
    }
}

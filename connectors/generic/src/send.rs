//! Outbound: the hub POSTs each reply as signed JSON to `reply_url`.

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::{ConnectorError, Outbound, OutboundMessage, Sent};

use crate::config::Settings;
use crate::normalize::scalar;

pub struct GenericOutbound {
    pub(crate) s: Arc<Settings>,
    pub(crate) url: String,
    pub(crate) client: reqwest::Client,
}

#[async_trait]
impl Outbound for GenericOutbound {
    async fn send(&self, msg: &OutboundMessage) -> Result<Sent, ConnectorError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "id": msg.id,
            "idempotency_key": msg.idempotency_key,
            "thread": msg.thread_key,
            "text": msg.text,
            "attachments": msg.attachment_urls,
        }))
        .map_err(|e| ConnectorError::Permanent(e.to_string()))?;
        let signature = self
            .s
            .scheme
            .sign(self.s.secret.expose().as_bytes(), &[&body]);
        let resp = self
            .client
            .post(&self.url)
            .header(self.s.signature_header.as_str(), signature)
            // The receiver can drop a repeat of a send it already handled.
            .header("idempotency-key", msg.idempotency_key.as_str())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers(), chrono::Utc::now().timestamp());
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(status_error(status, wait, &text));
        }
        let provider_message_id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.pointer(&self.s.reply_id).and_then(scalar));
        Ok(Sent {
            provider_message_id,
        })
    }
}

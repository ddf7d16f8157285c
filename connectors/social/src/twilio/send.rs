//! Outbound: `POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, Basic auth,
//! form-encoded, with the reply's idempotency key as `I-Twilio-Idempotency-Token`.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::{ConnectorError, Outbound, OutboundMessage, Sent};

use super::config::Settings;
use super::normalize::{address, error_meaning};

pub struct TwilioOutbound {
    pub(crate) s: Arc<Settings>,
    pub(crate) client: reqwest::Client,
}

/// Twilio accepts at most 10 `MediaUrl`s per message.
const MAX_MEDIA: usize = 10;

/// The form Twilio's Messages API takes for one reply.
pub fn message_form(s: &Settings, msg: &OutboundMessage) -> Result<String, ConnectorError> {
    let (to, ours) = match msg.thread_key.split_once('|') {
        Some((to, ours)) => (to.trim(), Some(ours.trim()).filter(|o| !o.is_empty())),
        None => (msg.thread_key.trim(), None),
    };
    if to.is_empty() {
        return Err(ConnectorError::Permanent(
            "conversation has no Twilio address to reply to".into(),
        ));
    }
    if msg.text.trim().is_empty() && msg.attachment_urls.is_empty() {
        return Err(ConnectorError::Permanent("nothing to send".into()));
    }
    if msg.attachment_urls.len() > MAX_MEDIA {
        return Err(ConnectorError::Permanent(format!(
            "Twilio takes at most {MAX_MEDIA} media URLs per message"
        )));
    }
    let channel = address(to).channel;
    // The number the customer wrote to, else our configured sender, on the customer's
    // channel (`whatsapp:` needs a `whatsapp:` sender).
    let from = ours.map(str::to_string).or_else(|| {
        s.from.as_ref().map(|f| {
            if channel != "sms" && address(f).channel == "sms" {
                format!("{channel}:{f}")
            } else {
                f.clone()
            }
        })
    });
    let mut f = form_urlencoded::Serializer::new(String::new());
    f.append_pair("To", to);
    if let Some(from) = &from {
        f.append_pair("From", from);
    }
    // With both, Twilio sends from `From` and applies the service's features.
    if let Some(ms) = &s.messaging_service_sid {
        f.append_pair("MessagingServiceSid", ms);
    }
    if !msg.text.is_empty() {
        f.append_pair("Body", &msg.text);
    }
    for u in &msg.attachment_urls {
        f.append_pair("MediaUrl", u);
    }
    // Delivery updates come back to the same signed webhook.
    f.append_pair("StatusCallback", &s.public_url);
    Ok(f.finish())
}

/// Maps Twilio's error answer `{"code":21610,"message":"…","status":400}`.
pub fn send_error(status: u16, wait: Option<std::time::Duration>, body: &str) -> ConnectorError {
    let json = serde_json::from_str::<serde_json::Value>(body).ok();
    let code = json.as_ref().and_then(|v| match &v["code"] {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    });
    if status == 429 || code.as_deref() == Some("20429") {
        return ConnectorError::RateLimited { retry_after: wait };
    }
    let message = json
        .as_ref()
        .and_then(|v| v["message"].as_str())
        .map(|m| m.chars().take(300).collect::<String>());
    let reason = match (&code, &message) {
        (Some(c), m) => {
            let mut r = format!("Twilio error {c}");
            if let Some(k) = error_meaning(c) {
                r.push_str(": ");
                r.push_str(k);
            }
            if let Some(m) = m {
                r.push_str(" (");
                r.push_str(m);
                r.push(')');
            }
            r
        }
        (None, Some(m)) => m.clone(),
        (None, None) => body.chars().take(300).collect(),
    };
    status_error(status, wait, &reason)
}

#[async_trait]
impl Outbound for TwilioOutbound {
    async fn send(&self, msg: &OutboundMessage) -> Result<Sent, ConnectorError> {
        let form = message_form(&self.s, msg)?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.s.api_base, self.s.account_sid
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.s.account_sid,
            self.s.auth_token.expose()
        ));
        let resp = self
            .client
            .post(&url)
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            // Twilio drops a repeat of a request it already handled.
            .header("i-twilio-idempotency-token", msg.idempotency_key.as_str())
            .body(form)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers(), chrono::Utc::now().timestamp());
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(send_error(status, wait, &text));
        }
        let provider_message_id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["sid"].as_str().map(str::to_string))
            .filter(|s| !s.is_empty());
        Ok(Sent {
            provider_message_id,
        })
    }
}

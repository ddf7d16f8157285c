//! Webhook mode: Telegram POSTs one Update per request with the `secret_token` given to
//! `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`. There is no signature and no handshake.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use switchboard_core::signature::ct_eq;
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;
use super::normalize::{update_kind, update_time};

pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The header carrying the bot id into the stored event, so the normaliser scopes user ids by
/// the bot that received the update even if the config later changes.
pub const BOT_ID_HEADER: &str = "x-sb-bot-id";

pub struct TelegramWebhook {
    pub(crate) s: Arc<Settings>,
}

impl WebhookIngress for TelegramWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        // Built only in webhook mode, where the config requires a secret token; refuse
        // everything if it is somehow absent.
        let expected = self
            .s
            .secret_token
            .as_ref()
            .ok_or(VerifyError::Missing("configured secret_token"))?;
        let provided = req
            .headers
            .get(SECRET_HEADER)
            .ok_or(VerifyError::Missing("X-Telegram-Bot-Api-Secret-Token"))?;
        // Comparing digests keeps the comparison constant-time and hides the token's length.
        let a = Sha256::digest(provided.as_bytes());
        let b = Sha256::digest(expected.expose().as_bytes());
        if !ct_eq(&a, &b) {
            return Err(VerifyError::Mismatch);
        }
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let body = v.req.body;
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| IngressError::Malformed(format!("invalid JSON: {e}")))?;
        Ok(Ingress::Events(vec![raw_event(
            &json,
            body.clone(),
            &self.s.bot_id,
        )?]))
    }
}

/// One Update as a raw event: `update_id` for dedupe, the exact bytes, the bot id.
pub(crate) fn raw_event(
    json: &serde_json::Value,
    payload: bytes::Bytes,
    bot_id: &str,
) -> Result<RawEvent, IngressError> {
    let update_id = json
        .get("update_id")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| IngressError::MissingField("update_id".into()))?;
    Ok(RawEvent {
        provider_event_id: update_id.to_string(),
        kind: update_kind(json).to_string(),
        occurred_at: update_time(json),
        payload,
        headers: vec![(BOT_ID_HEADER.to_string(), bot_id.to_string())],
    })
}

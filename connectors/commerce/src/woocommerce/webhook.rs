//! WooCommerce webhooks: `X-WC-Webhook-Signature` is the base64 HMAC-SHA256 of the exact body
//! under the webhook's secret. When a webhook is created WooCommerce pings it with the form
//! body `webhook_id=<id>` and no signature, and needs a 200: that ping is answered and stored
//! nowhere. Any other unsigned request is refused.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;
use super::normalize::{event_id, parse_gmt};

pub const SIGNATURE_HEADER: &str = "x-wc-webhook-signature";
/// Delivery headers kept with the stored event: the topic tells the normaliser what the body
/// is; the ids trace the delivery.
pub const KEPT_HEADERS: [&str; 6] = [
    "x-wc-webhook-topic",
    "x-wc-webhook-resource",
    "x-wc-webhook-event",
    "x-wc-webhook-id",
    "x-wc-webhook-delivery-id",
    "x-wc-webhook-source",
];

/// The scheme WooCommerce signs with (`class-wc-webhook.php::generate_signature`).
pub fn scheme() -> HmacScheme {
    HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None)
}

/// The creation ping: exactly one form field `webhook_id` with a numeric value.
pub fn is_ping(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    match text.trim().split_once('=') {
        Some(("webhook_id", id)) => {
            !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

pub struct WooWebhook {
    pub(crate) s: Arc<Settings>,
}

impl WebhookIngress for WooWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        match req.header(SIGNATURE_HEADER) {
            Some(sig) => {
                scheme().verify(self.s.webhook_secret.expose().as_bytes(), &[req.body], sig)?;
                Ok(Verified::after_check(req))
            }
            // Accepted unsigned only to answer it: `parse` stores nothing for a ping.
            None if is_ping(req.body) => Ok(Verified::after_check(req)),
            None => Err(VerifyError::Missing("X-WC-Webhook-Signature")),
        }
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        if req.header(SIGNATURE_HEADER).is_none() {
            return Ok(Ingress::Events(vec![]));
        }
        let topic = req
            .header("x-wc-webhook-topic")
            .ok_or_else(|| IngressError::MissingField("X-WC-Webhook-Topic header".into()))?
            .trim()
            .to_string();
        let json: serde_json::Value = serde_json::from_slice(req.body)
            .map_err(|e| IngressError::Malformed(format!("invalid JSON: {e}")))?;
        let delivery = req.header("x-wc-webhook-delivery-id");
        let id = event_id(&topic, &json, delivery).unwrap_or_else(|| match delivery {
            Some(d) => format!("delivery:{d}"),
            None => format!("body:{}", hex::encode(Sha256::digest(req.body))),
        });
        let occurred_at = json
            .get("date_modified_gmt")
            .and_then(|t| t.as_str())
            .and_then(parse_gmt)
            // A deletion carries no time: it happened when it reached us.
            .unwrap_or(req.now.saturating_mul(1000));
        let headers = KEPT_HEADERS
            .iter()
            .filter_map(|n| req.header(n).map(|v| (n.to_string(), v.to_string())))
            .collect();
        Ok(Ingress::Events(vec![RawEvent {
            provider_event_id: id,
            kind: topic,
            occurred_at: Some(occurred_at),
            payload: req.body.clone(),
            headers,
        }]))
    }
}

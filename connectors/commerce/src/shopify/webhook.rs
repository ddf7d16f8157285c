//! Shopify webhooks: `X-Shopify-Hmac-Sha256` (newer deliveries: `shopify-hmac-sha256`) is the
//! base64 HMAC-SHA256 of the raw body under the app's client secret. One resource per request.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;
use super::normalize::{event_id, parse_time};

/// Delivery headers kept with the stored event (lower-case, `x-shopify-` form): the topic
/// tells the normaliser what the body is; the ids and trigger time help to trace a delivery.
pub const KEPT_HEADERS: [&str; 6] = [
    "topic",
    "webhook-id",
    "event-id",
    "triggered-at",
    "shop-domain",
    "api-version",
];

pub struct ShopifyWebhook {
    pub(crate) s: Arc<Settings>,
}

/// A Shopify header under either of its names (`X-Shopify-<name>` or `shopify-<name>`).
fn shopify_header<'a>(req: &'a InboundRequest<'a>, name: &str) -> Option<&'a str> {
    req.header(&format!("x-shopify-{name}"))
        .or_else(|| req.header(&format!("shopify-{name}")))
}

impl WebhookIngress for ShopifyWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        let provided = shopify_header(req, "hmac-sha256")
            .ok_or(VerifyError::Missing("X-Shopify-Hmac-Sha256"))?;
        HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None).verify(
            self.s.webhook_secret.expose().as_bytes(),
            &[req.body],
            provided,
        )?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        let topic = shopify_header(req, "topic")
            .ok_or_else(|| IngressError::MissingField("X-Shopify-Topic header".into()))?
            .trim()
            .to_string();
        let json: serde_json::Value = serde_json::from_slice(req.body)
            .map_err(|e| IngressError::Malformed(format!("invalid JSON: {e}")))?;
        let headers: Vec<(String, String)> = KEPT_HEADERS
            .iter()
            .filter_map(|n| {
                shopify_header(req, n).map(|v| (format!("x-shopify-{n}"), v.to_string()))
            })
            .collect();
        // Documents are keyed by their version so that a webhook and a poll of the same
        // version are one raw event; anything else by the delivery (same across retries).
        let id = event_id(&topic, &json).unwrap_or_else(|| {
            match shopify_header(req, "webhook-id").or_else(|| shopify_header(req, "event-id")) {
                Some(w) => format!("webhook:{w}"),
                None => format!("body:{}", hex::encode(Sha256::digest(req.body))),
            }
        });
        let occurred_at = json
            .get("updated_at")
            .or_else(|| json.get("created_at"))
            .and_then(|t| t.as_str())
            .and_then(parse_time)
            .or_else(|| shopify_header(req, "triggered-at").and_then(parse_time));
        Ok(Ingress::Events(vec![RawEvent {
            provider_event_id: id,
            kind: topic,
            occurred_at,
            payload: req.body.clone(),
            headers,
        }]))
    }
}

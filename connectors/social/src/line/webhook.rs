//! Inbound: verify `x-line-signature` over the exact bytes, then split the batch into one raw
//! event per `webhookEventId`, each keeping its own exact bytes.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Digest;
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;
use super::DESTINATION_HEADER;

pub struct LineWebhook {
    pub(crate) s: Arc<Settings>,
}

const SIGNATURE_HEADER: &str = "x-line-signature";

#[derive(Deserialize)]
struct Envelope<'a> {
    destination: Option<String>,
    #[serde(borrow, default)]
    events: Vec<&'a RawValue>,
}

impl WebhookIngress for LineWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        let provided = req
            .header(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing("x-line-signature"))?;
        HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None).verify(
            self.s.channel_secret.expose().as_bytes(),
            &[req.body],
            provided,
        )?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let body: &[u8] = v.req.body;
        let env: Envelope<'_> = serde_json::from_slice(body)
            .map_err(|e| IngressError::Malformed(format!("invalid JSON: {e}")))?;
        // The console's "Verify" button sends an empty batch: acknowledge, store nothing.
        let mut out = Vec::with_capacity(env.events.len());
        for (i, raw) in env.events.iter().enumerate() {
            // Only what the hub needs to store the event; the normaliser reads the rest. A
            // field of an unexpected type is left for the normaliser to report, not refused.
            let head: serde_json::Value = serde_json::from_str(raw.get())
                .map_err(|e| IngressError::Malformed(format!("events[{i}]: {e}")))?;
            let text = |k: &str| head.get(k).and_then(|v| v.as_str()).map(str::trim);
            let event_id = text("webhookEventId").filter(|s| !s.is_empty());
            let provider_event_id = match event_id.map(str::to_string) {
                Some(id) if id.len() <= 512 => id,
                Some(_) => {
                    return Err(IngressError::Malformed(format!(
                        "events[{i}].webhookEventId longer than 512 bytes"
                    )))
                }
                // Events from before LINE added the id: the event's own bytes dedupe identical
                // redeliveries.
                None => format!(
                    "sha256:{}",
                    hex::encode(sha2::Sha256::digest(raw.get().as_bytes()))
                ),
            };
            let mut headers = Vec::new();
            if let Some(d) = env.destination.as_deref().filter(|d| !d.is_empty()) {
                headers.push((DESTINATION_HEADER.to_string(), d.to_string()));
            }
            out.push(RawEvent {
                provider_event_id,
                kind: text("type").unwrap_or("unknown").to_string(),
                occurred_at: head.get("timestamp").and_then(|t| t.as_i64()),
                payload: Bytes::copy_from_slice(raw.get().as_bytes()),
                headers,
            });
        }
        Ok(Ingress::Events(out))
    }
}

use std::sync::Arc;

use sha2::Digest;
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Verified, VerifyError, WebhookIngress,
};

use crate::config::Settings;
use crate::normalize::{parse_time, scalar};

pub struct GenericWebhook {
    pub(crate) s: Arc<Settings>,
}

/// Headers kept with each raw event: the ones that identify or describe the delivery.
const KEPT_HEADERS: &[&str] = &["content-type", "user-agent"];

impl WebhookIngress for GenericWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        let values: Vec<&str> = req
            .headers
            .get_all(self.s.signature_header.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            // Several signatures may share one header, comma- or space-separated.
            .flat_map(|v| v.split([',', ' ']))
            .filter(|v| !v.is_empty())
            .collect();
        self.s
            .scheme
            .verify_any(&[self.s.secret.expose().as_bytes()], &[req.body], values)?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        let json: serde_json::Value = serde_json::from_slice(req.body)
            .map_err(|e| IngressError::Malformed(format!("invalid JSON: {e}")))?;
        let provider_event_id = match (&self.s.event_id, &self.s.event_id_header) {
            (Some(ptr), _) => json
                .pointer(ptr)
                .and_then(scalar)
                .ok_or_else(|| IngressError::MissingField(format!("event id at `{ptr}`")))?,
            (None, Some(h)) => req
                .header(h)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| IngressError::MissingField(format!("header `{h}`")))?,
            // No id configured: the body's hash, so identical retries dedupe.
            (None, None) => format!("sha256:{}", hex::encode(sha2::Sha256::digest(req.body))),
        };
        if provider_event_id.len() > 512 {
            return Err(IngressError::Malformed(
                "event id longer than 512 bytes".into(),
            ));
        }
        let kind = self
            .s
            .event_kind
            .as_deref()
            .and_then(|p| json.pointer(p))
            .and_then(scalar)
            .unwrap_or_else(|| "event".into());
        let occurred_at = self
            .s
            .mapping
            .occurred_at
            .as_deref()
            .and_then(|p| json.pointer(p))
            .and_then(parse_time);
        let mut headers: Vec<(String, String)> = KEPT_HEADERS
            .iter()
            .filter_map(|h| req.header(h).map(|v| (h.to_string(), v.to_string())))
            .collect();
        if let Some(h) = &self.s.event_id_header {
            headers.push((h.clone(), provider_event_id.clone()));
        }
        Ok(Ingress::Events(vec![RawEvent {
            provider_event_id,
            kind,
            occurred_at,
            payload: req.body.clone(),
            headers,
        }]))
    }
}

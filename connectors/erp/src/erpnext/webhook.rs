//! The Frappe Webhook doctype's deliveries: `POST` of one document as JSON, signed with
//! `X-Frappe-Webhook-Signature` = base64(HMAC-SHA256(webhook secret, raw body)). Frappe has no
//! timestamp or delivery id: the version (`doctype`, `name`, `modified`) is the event id, the
//! same one polling gives, so a document that arrives both ways is stored once.

use std::sync::Arc;

use serde_json::Value;
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;
use crate::common::datetime_ms;

pub const SIGNATURE_HEADER: &str = "x-frappe-webhook-signature";

/// `<doctype>:<name>:<modified>` with `modified` written one way (microseconds always), so a
/// webhook's `2026-01-05 10:00:00` and a poll's `2026-01-05 10:00:00.000000` are one version.
pub fn event_id(doctype: &str, name: &str, modified: &str) -> String {
    let modified = chrono::NaiveDateTime::parse_from_str(modified.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_else(|_| modified.to_string());
    format!("{doctype}:{name}:{modified}")
}

/// One document as a raw event; `None` when it lacks `doctype`, `name` or `modified`.
pub fn raw_event(doc: &Value, payload: bytes::Bytes) -> Result<RawEvent, &'static str> {
    let field = |k: &'static str| {
        doc.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or(k)
    };
    let doctype = field("doctype")?;
    let name = field("name")?;
    let modified = field("modified")?;
    Ok(RawEvent {
        provider_event_id: event_id(doctype, name, modified),
        kind: doctype.to_string(),
        occurred_at: datetime_ms(modified),
        payload,
        headers: Vec::new(),
    })
}

pub struct ErpNextWebhook {
    pub(crate) s: Arc<Settings>,
}

impl WebhookIngress for ErpNextWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        // Built only with a webhook secret; without one there is no webhook to verify.
        let Some(secret) = &self.s.webhook_secret else {
            return Err(VerifyError::Missing("webhook secret"));
        };
        let provided = req
            .header(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing("X-Frappe-Webhook-Signature"))?;
        HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None).verify(
            secret.expose().as_bytes(),
            &[req.body],
            provided,
        )?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, req: Verified<'_>) -> Result<Ingress, IngressError> {
        let doc: Value = serde_json::from_slice(req.req.body)
            .map_err(|_| IngressError::Malformed("the body is not JSON".into()))?;
        if !doc.is_object() {
            return Err(IngressError::Malformed(
                "the body is not one document (a JSON object)".into(),
            ));
        }
        let ev = raw_event(&doc, req.req.body.clone())
            .map_err(|k| IngressError::MissingField(k.to_string()))?;
        Ok(Ingress::Events(vec![ev]))
    }
}

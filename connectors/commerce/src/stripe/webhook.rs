//! Webhook ingress: `Stripe-Signature` checked exactly as stripe-python's
//! `WebhookSignature.verify_header` does, then one raw event per delivery (Stripe sends one
//! event per request), keyed by the event id `evt_…` that `/v1/events` returns too.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_core::signature::{ct_eq, hmac, Algorithm};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;

pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// Headers kept with each raw event. Stripe has no delivery id besides the event id.
const KEPT_HEADERS: &[&str] = &["content-type", "user-agent"];

pub struct StripeWebhook {
    pub(crate) s: Arc<Settings>,
}

/// `t` and every `v1` of a `Stripe-Signature` header, parsed like stripe-python: split on `,`,
/// each item on `=` (the value is what lies between the first and a second `=`); the first
/// `t` counts; `v0` and unknown schemes are ignored. A `t` or `v1` item without `=`, a missing
/// `t` or one that is not an integer makes the header unreadable.
pub fn parse_header(header: &str) -> Result<(i64, Vec<&str>), VerifyError> {
    const GARBLED: VerifyError = VerifyError::Malformed("Stripe-Signature header");
    let mut timestamp: Option<&str> = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let mut parts = item.splitn(3, '=');
        let key = parts.next().unwrap_or("");
        if key != "t" && key != "v1" {
            continue;
        }
        let value = parts.next().ok_or(GARBLED)?;
        if key == "t" {
            timestamp.get_or_insert(value);
        } else {
            v1.push(value);
        }
    }
    let t = timestamp
        .and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or(GARBLED)?;
    Ok((t, v1))
}

/// The `v1` signature Stripe computes: hex HMAC-SHA256 of `"{t}.{body}"` under the endpoint
/// secret as written (`whsec_` prefix included).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    hex::encode(hmac(
        Algorithm::Sha256,
        secret.as_bytes(),
        &[t.as_bytes(), b".", body],
    ))
}

/// Checks a `Stripe-Signature` header value against `body` at `now` (unix seconds): the
/// signature first, then the timestamp, in stripe-python's order. Future timestamps pass and
/// `tolerance_secs == 0` turns the age check off, as in the SDK.
pub fn verify_header(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let (timestamp, signatures) = parse_header(header)?;
    if signatures.is_empty() {
        return Err(VerifyError::Missing("v1 signature"));
    }
    let expected = sign(secret, timestamp, body);
    // Every candidate is compared (constant time each), so the answer does not reveal which.
    let mut ok = false;
    for s in &signatures {
        ok |= ct_eq(expected.as_bytes(), s.as_bytes());
    }
    if !ok {
        return Err(VerifyError::Mismatch);
    }
    if tolerance_secs > 0 && timestamp < now.saturating_sub(tolerance_secs) {
        return Err(VerifyError::Expired);
    }
    Ok(())
}

impl WebhookIngress for StripeWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        let Some(value) = req.headers.get(SIGNATURE_HEADER) else {
            return Err(VerifyError::Missing("Stripe-Signature header"));
        };
        let header = value
            .to_str()
            .map_err(|_| VerifyError::Malformed("Stripe-Signature header"))?;
        let Some(secret) = &self.s.webhook_secret else {
            // Not reachable through the hub (no secret, no webhook), but never accept unsigned.
            return Err(VerifyError::Missing("webhook_secret"));
        };
        verify_header(
            secret.expose(),
            header,
            req.body,
            req.now,
            self.s.tolerance_secs,
        )?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        let json: serde_json::Value = serde_json::from_slice(req.body)
            .map_err(|e| IngressError::Malformed(format!("invalid JSON: {e}")))?;
        let headers = KEPT_HEADERS
            .iter()
            .filter_map(|h| req.header(h).map(|v| (h.to_string(), v.to_string())))
            .collect();
        let ev = raw_event(&json, req.body.clone(), headers)?;
        Ok(Ingress::Events(vec![ev]))
    }
}

/// One Stripe event (a webhook body or one item of `/v1/events`) as a raw event: id `evt_…`,
/// kind = the event type, occurred_at = `created`. Thin v2 events (`object:
/// "v2.core.event"`, `created` as RFC 3339) are kept too; the normaliser shows them as
/// unsupported.
pub(crate) fn raw_event(
    json: &serde_json::Value,
    payload: Bytes,
    headers: Vec<(String, String)>,
) -> Result<RawEvent, IngressError> {
    let id = json
        .get("id")
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IngressError::MissingField("id".into()))?;
    if id.len() > 255 {
        return Err(IngressError::Malformed(
            "event id longer than 255 bytes".into(),
        ));
    }
    let kind = json
        .get("type")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IngressError::MissingField("type".into()))?;
    Ok(RawEvent {
        provider_event_id: id.to_string(),
        kind: kind.chars().take(200).collect(),
        occurred_at: json.get("created").and_then(unix_ms),
        payload,
        headers,
    })
}

/// Stripe's `created`: unix seconds (v1 objects) or RFC 3339 (v2 events), as unix ms.
pub(crate) fn unix_ms(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64()?.checked_mul(1000),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_millis()),
        _ => None,
    }
}

//! Inbound: verify the `v0` signature and the request timestamp over the exact bytes, answer
//! `url_verification`, store each `event_callback` under its outer `event_id`, and slash
//! commands (form bodies) under their `trigger_id`.

use std::sync::Arc;

use bytes::Bytes;
use sha2::Digest;
use switchboard_core::signature::{
    check_timestamp, parse_timestamp, Algorithm, Encoding, HmacScheme,
};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Reply, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;
use super::form_pairs;

pub struct SlackWebhook {
    pub(crate) s: Arc<Settings>,
}

const SIGNATURE_HEADER: &str = "x-slack-signature";
const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Kept with each event: a retry is harmless (the event id dedupes) but worth seeing.
const KEPT_HEADERS: &[&str] = &["x-slack-retry-num", "x-slack-retry-reason"];

fn body_hash(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

impl SlackWebhook {
    fn kept_headers(req: &InboundRequest<'_>) -> Vec<(String, String)> {
        KEPT_HEADERS
            .iter()
            .filter_map(|h| req.header(h).map(|v| (h.to_string(), v.to_string())))
            .collect()
    }

    /// A form body: a slash command, or an interactive `payload=` (kept, shown unsupported).
    fn parse_form(&self, req: &InboundRequest<'_>) -> Result<Ingress, IngressError> {
        let pairs = form_pairs(req.body);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let (kind, id) = if get("command").is_some() {
            let id = match get("trigger_id") {
                Some(t) if t.len() <= 256 => format!("command:{t}"),
                _ => format!("command:sha256:{}", body_hash(req.body)),
            };
            ("slash_command", id)
        } else if get("payload").is_some() {
            (
                "interactive",
                format!("interactive:sha256:{}", body_hash(req.body)),
            )
        } else {
            return Err(IngressError::Malformed(
                "a form body must be a slash command (`command=`) or an interaction (`payload=`)"
                    .into(),
            ));
        };
        // Slack gives a command no time of its own; the signed request time is when it ran.
        let occurred_at = req
            .header(TIMESTAMP_HEADER)
            .and_then(|t| t.trim().parse::<i64>().ok())
            .and_then(|t| t.checked_mul(1000));
        let mut headers = Self::kept_headers(req);
        headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        Ok(Ingress::Events(vec![RawEvent {
            provider_event_id: id,
            kind: kind.into(),
            occurred_at,
            payload: req.body.clone(),
            headers,
        }]))
    }
}

impl WebhookIngress for SlackWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        let ts_text = req
            .header(TIMESTAMP_HEADER)
            .ok_or(VerifyError::Missing("x-slack-request-timestamp"))?;
        let provided = req
            .header(SIGNATURE_HEADER)
            .ok_or(VerifyError::Missing("x-slack-signature"))?;
        let ts = parse_timestamp(ts_text)?;
        // As Slack's SDK: a stale request is refused before its MAC is even computed.
        check_timestamp(ts, req.now, self.s.timestamp_tolerance_secs)?;
        HmacScheme::new(Algorithm::Sha256, Encoding::Hex, Some("v0=")).verify(
            self.s.signing_secret.expose().as_bytes(),
            &[b"v0:", ts_text.as_bytes(), b":", req.body],
            provided,
        )?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        let first = req.body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return self.parse_form(req);
        }
        let json: serde_json::Value = serde_json::from_slice(req.body)
            .map_err(|e| IngressError::Malformed(format!("invalid JSON: {e}")))?;
        let text = |k: &str| {
            json.get(k)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        match text("type") {
            Some("url_verification") => {
                let challenge = text("challenge")
                    .ok_or_else(|| IngressError::MissingField("challenge".into()))?;
                Ok(Ingress::Reply(Reply {
                    status: 200,
                    content_type: "text/plain",
                    body: Bytes::copy_from_slice(challenge.as_bytes()),
                }))
            }
            Some("event_callback") => {
                let id = text("event_id")
                    .ok_or_else(|| IngressError::MissingField("event_id".into()))?;
                if id.len() > 512 {
                    return Err(IngressError::Malformed(
                        "event_id longer than 512 bytes".into(),
                    ));
                }
                let kind = json
                    .pointer("/event/type")
                    .and_then(|v| v.as_str())
                    .unwrap_or("event_callback");
                let occurred_at = json
                    .get("event_time")
                    .and_then(|t| t.as_i64())
                    .and_then(|t| t.checked_mul(1000));
                Ok(Ingress::Events(vec![RawEvent {
                    provider_event_id: id.to_string(),
                    kind: kind.to_string(),
                    occurred_at,
                    payload: req.body.clone(),
                    headers: Self::kept_headers(req),
                }]))
            }
            // Slack telling us it dropped events for an hour: nothing to store per customer.
            Some("app_rate_limited") => Ok(Ingress::Events(vec![])),
            // Kept and shown as unsupported rather than dropped.
            other => Ok(Ingress::Events(vec![RawEvent {
                provider_event_id: format!("sha256:{}", body_hash(req.body)),
                kind: other.unwrap_or("unknown").to_string(),
                occurred_at: None,
                payload: req.body.clone(),
                headers: Self::kept_headers(req),
            }])),
        }
    }
}

//! `kind = "mailgun"`: Mailgun inbound routes (`forward("https://…/webhooks/{id}")`). Form
//! fields `timestamp`, `token`, `signature` = hex HMAC-SHA256(signing key, timestamp + token);
//! timestamps older than `tolerance_secs` (300) and tokens already seen are refused.

use std::collections::HashMap;
use std::sync::Mutex;

use switchboard_core::signature::{check_timestamp, ct_eq, hmac, parse_timestamp, Algorithm};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, NormalizeError, NormalizedEvent, Normalizer, RawEvent,
    Secret, StoredEvent, Verified, VerifyError, WebhookIngress,
};

use crate::config::NormalizeSettings;
use crate::inbound::{self, field, field_text, parse_form};
use crate::mime;
use crate::normalize::{events_for, unsupported};

/// Tokens remembered for replay checks at most (older ones are pruned first).
const MAX_TOKENS: usize = 100_000;

pub struct MailgunWebhook {
    pub key: Secret,
    pub tolerance: i64,
    /// token → timestamp, for tokens younger than twice the tolerance.
    pub seen: Mutex<HashMap<String, i64>>,
}

impl MailgunWebhook {
    pub fn new(key: Secret, tolerance: i64) -> Self {
        MailgunWebhook {
            key,
            tolerance,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, token: &str, ts: i64, now: i64) -> Result<(), VerifyError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TOKENS / 2 {
            let horizon = now - 2 * self.tolerance;
            seen.retain(|_, t| *t >= horizon);
            if seen.len() >= MAX_TOKENS {
                // Still full of fresh tokens (a flood): forget the oldest half.
                let mut ts: Vec<i64> = seen.values().copied().collect();
                ts.sort_unstable();
                let cut = ts[ts.len() / 2];
                seen.retain(|_, t| *t > cut);
            }
        }
        if seen.contains_key(token) {
            return Err(VerifyError::Expired);
        }
        seen.insert(token.to_string(), ts);
        Ok(())
    }
}

fn content_type<'a>(req: &'a InboundRequest<'a>) -> Result<&'a str, VerifyError> {
    req.header("content-type")
        .ok_or(VerifyError::Missing("content-type"))
}

impl WebhookIngress for MailgunWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        let fields = parse_form(content_type(req)?, req.body)
            .map_err(|_| VerifyError::Malformed("form body"))?;
        let ts_s = field_text(&fields, "timestamp").ok_or(VerifyError::Missing("timestamp"))?;
        let token = field_text(&fields, "token").ok_or(VerifyError::Missing("token"))?;
        let sig = field_text(&fields, "signature").ok_or(VerifyError::Missing("signature"))?;
        let ts = parse_timestamp(&ts_s)?;
        let provided = hex::decode(sig.trim()).map_err(|_| VerifyError::Malformed("signature"))?;
        // The raw timestamp string, as Mailgun signs it.
        let expected = hmac(
            Algorithm::Sha256,
            self.key.expose().as_bytes(),
            &[ts_s.as_bytes(), token.as_bytes()],
        );
        if !ct_eq(&expected, &provided) {
            return Err(VerifyError::Mismatch);
        }
        check_timestamp(ts, req.now, self.tolerance)?;
        self.remember(&token, ts, req.now)?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        let ct = req.header("content-type").unwrap_or_default();
        let fields = parse_form(ct, req.body).map_err(IngressError::Malformed)?;
        let mime_id = field(&fields, "body-mime").map(|f| mime::event_id(&f.value));
        let id = match mime_id.filter(|i| !i.starts_with("sha256:")) {
            Some(i) => i,
            None => {
                let get = |n: &str| {
                    field(&fields, n)
                        .map(|f| f.value.clone())
                        .unwrap_or_default()
                };
                inbound::event_id(
                    field_text(&fields, "Message-Id").as_deref(),
                    &[
                        &get("from"),
                        &get("subject"),
                        &get("message-headers"),
                        &get("body-plain"),
                    ],
                )
            }
        };
        let occurred_at = field_text(&fields, "timestamp")
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map(|t| t.saturating_mul(1000));
        Ok(Ingress::Events(vec![RawEvent {
            provider_event_id: id,
            kind: "inbound".into(),
            occurred_at,
            payload: req.body.clone(),
            headers: vec![("content-type".into(), ct.to_string())],
        }]))
    }
}

pub struct MailgunNormalizer {
    pub s: NormalizeSettings,
}

impl Normalizer for MailgunNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let fallback = raw.occurred_at.unwrap_or(raw.received_at);
        let Ok(fields) = parse_form(raw.header("content-type").unwrap_or_default(), &raw.payload)
        else {
            return Ok(vec![unsupported(fallback, "Mailgun body is not a form")]);
        };
        if let Some(m) = field(&fields, "body-mime").and_then(|f| mime::parse(&f.value)) {
            return Ok(events_for(&m, &self.s, fallback));
        }
        // `message-headers`: JSON list of [name, value] in order; else the top-level fields.
        let listed: Vec<(String, String)> = field_text(&fields, "message-headers")
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        let mut pairs: Vec<(String, String)> = listed;
        if pairs.is_empty() {
            for name in [
                "From",
                "Subject",
                "Message-Id",
                "In-Reply-To",
                "References",
                "Date",
                "Reply-To",
            ] {
                if let Some(v) = field_text(&fields, name)
                    .or_else(|| field_text(&fields, &name.to_ascii_lowercase()))
                {
                    pairs.push((name.to_string(), v));
                }
            }
        }
        let mut m = inbound::mail_from_headers(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if m.to.is_empty() {
            if let Some(r) =
                field_text(&fields, "recipient").and_then(|r| mime::parse_address_header(&r))
            {
                m.to.push(r);
            }
        }
        inbound::set_bodies(
            &mut m,
            field_text(&fields, "body-plain"),
            field_text(&fields, "stripped-text"),
            field_text(&fields, "body-html"),
        );
        let files: Vec<_> = fields
            .iter()
            .filter(|f| f.filename.is_some() && f.name.starts_with("attachment"))
            .map(|f| {
                inbound::attachment(
                    f.filename.clone(),
                    f.content_type.clone(),
                    Some(f.value.len() as u64),
                    None,
                )
            })
            .collect();
        inbound::push_attachments(&mut m, files);
        Ok(events_for(&m, &self.s, fallback))
    }
}

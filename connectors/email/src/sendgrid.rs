//! `kind = "sendgrid"`: SendGrid Inbound Parse (multipart/form-data). Protected by HTTP Basic
//! auth in the URL and/or, when `verification_key` is set, the security policy's ECDSA P-256
//! signature: `X-Twilio-Email-Event-Webhook-Signature` (base64 DER) over
//! `X-Twilio-Email-Event-Webhook-Timestamp` + the raw body.

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use switchboard_core::signature::{check_timestamp, parse_timestamp};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, NormalizeError, NormalizedEvent, Normalizer, RawEvent,
    StoredEvent, Verified, VerifyError, WebhookIngress,
};

use crate::config::{BasicAuth, NormalizeSettings};
use crate::inbound::{self, field, field_text, parse_form};
use crate::mime;
use crate::normalize::{events_for, unsupported};

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// Reads a public key given as base64 DER (SPKI) or PEM.
pub fn parse_key(s: &str) -> Result<VerifyingKey, String> {
    let b64: String = s
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "not base64 DER or PEM".to_string())?;
    VerifyingKey::from_public_key_der(&der).map_err(|_| "not a P-256 public key (SPKI)".to_string())
}

/// Verifies the ECDSA signature over `timestamp + body`.
pub fn verify_signature(
    key: &VerifyingKey,
    timestamp: &str,
    body: &[u8],
    signature_b64: &str,
) -> Result<(), VerifyError> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| VerifyError::Malformed("signature"))?;
    let sig = Signature::from_der(&der).map_err(|_| VerifyError::Malformed("signature"))?;
    let mut msg = Vec::with_capacity(timestamp.len() + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.extend_from_slice(body);
    key.verify(&msg, &sig).map_err(|_| VerifyError::Mismatch)
}

pub struct SendgridWebhook {
    pub auth: Option<BasicAuth>,
    pub key: Option<VerifyingKey>,
    pub tolerance: i64,
}

impl WebhookIngress for SendgridWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        if let Some(a) = &self.auth {
            inbound::check_basic(req, a)?;
        }
        if let Some(k) = &self.key {
            let sig = req
                .header(SIGNATURE_HEADER)
                .ok_or(VerifyError::Missing("signature"))?;
            let ts = req
                .header(TIMESTAMP_HEADER)
                .ok_or(VerifyError::Missing("timestamp"))?;
            let t = parse_timestamp(ts)?;
            verify_signature(k, ts, req.body, sig)?;
            check_timestamp(t, req.now, self.tolerance)?;
        }
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        let ct = req.header("content-type").unwrap_or_default();
        let fields = parse_form(ct, req.body).map_err(IngressError::Malformed)?;
        let id = if let Some(raw) = field(&fields, "email") {
            mime::event_id(&raw.value)
        } else {
            let headers = field(&fields, "headers")
                .map(|f| f.value.clone())
                .unwrap_or_default();
            let mut block = headers.clone();
            block.extend_from_slice(b"\r\n\r\n");
            let get = |n: &str| {
                field(&fields, n)
                    .map(|f| f.value.clone())
                    .unwrap_or_default()
            };
            let mid = mime::parse(&block).and_then(|m| m.message_id);
            inbound::event_id(
                mid.as_deref(),
                &[&headers, &get("from"), &get("subject"), &get("text")],
            )
        };
        Ok(Ingress::Events(vec![RawEvent {
            provider_event_id: id,
            kind: "inbound".into(),
            occurred_at: None,
            payload: req.body.clone(),
            headers: vec![("content-type".into(), ct.to_string())],
        }]))
    }
}

pub struct SendgridNormalizer {
    pub s: NormalizeSettings,
}

/// A field's text in the charset SendGrid names for it in `charsets` (JSON).
fn decoded(fields: &[inbound::Field], charsets: &serde_json::Value, name: &str) -> Option<String> {
    let f = field(fields, name)?;
    let cs = charsets
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or("utf-8");
    if cs.eq_ignore_ascii_case("utf-8") || cs.eq_ignore_ascii_case("utf8") {
        return Some(f.text()).filter(|s| !s.is_empty());
    }
    let cs: String = cs
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let mut raw = format!(
        "Content-Type: text/plain; charset={cs}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(&f.value);
    mime::parse(&raw)
        .map(|m| m.text_full)
        .filter(|s| !s.is_empty())
}

impl Normalizer for SendgridNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let fallback = raw.occurred_at.unwrap_or(raw.received_at);
        let Ok(fields) = parse_form(raw.header("content-type").unwrap_or_default(), &raw.payload)
        else {
            return Ok(vec![unsupported(fallback, "SendGrid body is not a form")]);
        };
        if let Some(m) = field(&fields, "email").and_then(|f| mime::parse(&f.value)) {
            return Ok(events_for(&m, &self.s, fallback));
        }
        let charsets: serde_json::Value = field_text(&fields, "charsets")
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or(serde_json::Value::Null);
        let mut block = field(&fields, "headers")
            .map(|f| f.value.clone())
            .unwrap_or_default();
        block.extend_from_slice(b"\r\n\r\n");
        let mut m = mime::parse(&block).unwrap_or_default();
        if m.from.is_none() {
            m.from = field_text(&fields, "from").and_then(|f| mime::parse_address_header(&f));
        }
        if m.subject.is_empty() {
            m.subject = decoded(&fields, &charsets, "subject").unwrap_or_default();
        }
        inbound::set_bodies(
            &mut m,
            decoded(&fields, &charsets, "text"),
            None,
            decoded(&fields, &charsets, "html"),
        );
        let info: serde_json::Value = field_text(&fields, "attachment-info")
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or(serde_json::Value::Null);
        let count: usize = field_text(&fields, "attachments")
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        let mut files = Vec::new();
        for i in 1..=count.min(10_000) {
            let key = format!("attachment{i}");
            let meta = info.get(&key);
            let part = field(&fields, &key);
            let s = |k: &str| {
                meta.and_then(|m| m.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            files.push(inbound::attachment(
                s("filename").or_else(|| part.and_then(|p| p.filename.clone())),
                s("type").or_else(|| part.and_then(|p| p.content_type.clone())),
                part.map(|p| p.value.len() as u64),
                s("content-id").as_deref(),
            ));
        }
        inbound::push_attachments(&mut m, files);
        Ok(events_for(&m, &self.s, fallback))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const TS: &str = "1600112502";
    const PAYLOAD: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";
    const SIG: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";

    #[test]
    fn sendgrid_a7_vector_verifies() {
        let k = parse_key(KEY).unwrap();
        assert_eq!(verify_signature(&k, TS, PAYLOAD.as_bytes(), SIG), Ok(()));
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &KEY[..64],
            &KEY[64..]
        );
        assert_eq!(
            verify_signature(&parse_key(&pem).unwrap(), TS, PAYLOAD.as_bytes(), SIG),
            Ok(())
        );
    }

    #[test]
    fn sendgrid_a7_negatives_fail() {
        let k = parse_key(KEY).unwrap();
        let other = parse_key("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==").unwrap();
        assert_eq!(
            verify_signature(&other, TS, PAYLOAD.as_bytes(), SIG),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_signature(&k, TS, b"payload", SIG),
            Err(VerifyError::Mismatch)
        );
        let bad_sig = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
        assert_eq!(
            verify_signature(&k, TS, PAYLOAD.as_bytes(), bad_sig),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_signature(&k, "timestamp", PAYLOAD.as_bytes(), SIG),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_signature(&k, TS, PAYLOAD.as_bytes(), "not base64!"),
            Err(VerifyError::Malformed("signature"))
        );
        assert!(parse_key("bm90IGEga2V5").is_err());
    }
}

//! `kind = "postmark"`: Postmark's inbound webhook (JSON), protected by HTTP Basic auth in the
//! webhook URL (Postmark signs nothing).

use serde::Deserialize;
use switchboard_core::{
    InboundRequest, Ingress, IngressError, NormalizeError, NormalizedEvent, Normalizer, RawEvent,
    StoredEvent, Verified, VerifyError, WebhookIngress,
};

use crate::config::{BasicAuth, NormalizeSettings};
use crate::inbound;
use crate::mime;
use crate::normalize::{events_for, unsupported};

pub struct PostmarkWebhook {
    pub auth: BasicAuth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Inbound {
    from: String,
    from_full: Option<Person>,
    to: String,
    subject: String,
    date: String,
    reply_to: String,
    #[serde(rename = "MessageID")]
    message_id: String,
    text_body: String,
    html_body: String,
    stripped_text_reply: String,
    headers: Vec<NameValue>,
    attachments: Vec<PmAttachment>,
    raw_email: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Person {
    email: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PmAttachment {
    name: String,
    content_type: String,
    content_length: u64,
    #[serde(rename = "ContentID")]
    content_id: String,
}

impl Inbound {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

impl WebhookIngress for PostmarkWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        inbound::check_basic(req, &self.auth)?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        let p: Inbound = serde_json::from_slice(req.body)
            .map_err(|e| IngressError::Malformed(format!("invalid JSON: {e}")))?;
        let header_id = p.header("Message-ID").and_then(mime::norm_id);
        let id = match header_id {
            Some(i) => i,
            None if !p.message_id.is_empty() && p.message_id.len() <= 200 => {
                format!("postmark:{}", p.message_id)
            }
            None => inbound::event_id(
                None,
                &[
                    p.from.as_bytes(),
                    p.subject.as_bytes(),
                    p.date.as_bytes(),
                    p.text_body.as_bytes(),
                ],
            ),
        };
        Ok(Ingress::Events(vec![RawEvent {
            provider_event_id: id,
            kind: "inbound".into(),
            occurred_at: None,
            payload: req.body.clone(),
            headers: Vec::new(),
        }]))
    }
}

pub struct PostmarkNormalizer {
    pub s: NormalizeSettings,
}

impl Normalizer for PostmarkNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let fallback = raw.occurred_at.unwrap_or(raw.received_at);
        let Ok(p) = serde_json::from_slice::<Inbound>(&raw.payload) else {
            return Ok(vec![unsupported(
                fallback,
                "Postmark body is not the inbound JSON",
            )]);
        };
        if !p.raw_email.is_empty() {
            if let Some(m) = mime::parse(p.raw_email.as_bytes()) {
                return Ok(events_for(&m, &self.s, fallback));
            }
        }
        let from = match &p.from_full {
            Some(f) if !f.email.is_empty() => {
                if f.name.is_empty() {
                    f.email.clone()
                } else {
                    format!("\"{}\" <{}>", f.name.replace('"', "'"), f.email)
                }
            }
            _ => p.from.clone(),
        };
        let mut pairs: Vec<(&str, &str)> = vec![
            ("From", from.as_str()),
            ("To", p.to.as_str()),
            ("Subject", p.subject.as_str()),
            ("Date", p.date.as_str()),
        ];
        if !p.reply_to.is_empty() {
            pairs.push(("Reply-To", p.reply_to.as_str()));
        }
        for h in &p.headers {
            let known = ["from", "to", "subject", "date", "reply-to"];
            if !known.contains(&h.name.to_ascii_lowercase().as_str()) {
                pairs.push((h.name.as_str(), h.value.as_str()));
            }
        }
        let mut m = inbound::mail_from_headers(pairs.into_iter().filter(|(_, v)| !v.is_empty()));
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        inbound::set_bodies(
            &mut m,
            nonempty(&p.text_body),
            nonempty(&p.stripped_text_reply),
            nonempty(&p.html_body),
        );
        let files = p
            .attachments
            .iter()
            .map(|a| {
                inbound::attachment(
                    nonempty(&a.name),
                    nonempty(&a.content_type),
                    Some(a.content_length),
                    nonempty(&a.content_id).as_deref(),
                )
            })
            .collect();
        inbound::push_attachments(&mut m, files);
        Ok(events_for(&m, &self.s, fallback))
    }
}

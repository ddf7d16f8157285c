//! Inbound: every Twilio callback (incoming SMS/MMS/WhatsApp, status callbacks) is a signed
//! POST to the configured `public_url`.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Reply, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;
use super::signature::{body_sha256, validate, Signed};

pub struct TwilioWebhook {
    pub(crate) s: Arc<Settings>,
}

/// Headers kept with each raw event.
const KEPT_HEADERS: &[&str] = &["content-type", "i-twilio-idempotency-token"];

/// Ids longer than this are not Twilio's (SIDs are 34 characters).
const MAX_ID_LEN: usize = 128;

/// A form body as decoded pairs (`+` and `%XX` decoded; invalid UTF-8 replaced).
pub(crate) fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of `name`, trimmed, when not empty.
pub(crate) fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// What a Twilio messaging callback is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery<'a> {
    /// A status callback for one of our sends.
    Status { sid: &'a str, status: &'a str },
    /// A message from a customer.
    Message { sid: &'a str },
    /// Anything else signed by Twilio (a voice call, a misrouted product webhook).
    Other,
}

pub(crate) fn classify(params: &[(String, String)]) -> Delivery<'_> {
    let sid = get(params, "MessageSid")
        .or_else(|| get(params, "SmsMessageSid"))
        .or_else(|| get(params, "SmsSid"));
    match (sid, get(params, "MessageStatus")) {
        (Some(sid), Some(status)) => Delivery::Status { sid, status },
        (Some(sid), None) => Delivery::Message { sid },
        _ => Delivery::Other,
    }
}

/// The `bodySHA256` value of a request's query, which marks a JSON-bodied webhook.
fn body_hash_param(req: &InboundRequest<'_>) -> Option<String> {
    let q = req.uri.query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
}

impl WebhookIngress for TwilioWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        let provided = req.header("x-twilio-signature");
        let token = self.s.auth_token.expose();
        match body_hash_param(req) {
            Some(claimed) => validate(
                token,
                &self.s.public_url,
                Signed::Json {
                    body: req.body,
                    body_sha256: &claimed,
                },
                provided,
            )?,
            None => {
                let params = form(req.body);
                validate(token, &self.s.public_url, Signed::Form(&params), provided)?
            }
        }
        Ok(Verified::after_check(req))
    }

    /// Twilio reads the answer as TwiML: an empty `<Response/>` sends nothing back and
    /// keeps its debugger free of "invalid content" warnings.
    fn accepted_reply(&self) -> Option<Reply> {
        Some(Reply {
            status: 200,
            content_type: "text/xml",
            body: Bytes::from_static(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"),
        })
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        let headers: Vec<(String, String)> = KEPT_HEADERS
            .iter()
            .filter_map(|h| req.header(h).map(|v| (h.to_string(), v.to_string())))
            .collect();
        let event = |id: String, kind: &str| RawEvent {
            provider_event_id: id,
            kind: kind.to_string(),
            // Messaging callbacks carry no time; the hub's receipt time stands in.
            occurred_at: None,
            payload: req.body.clone(),
            headers: headers.clone(),
        };
        if body_hash_param(req).is_some() {
            // A JSON-bodied product webhook (not Programmable Messaging): kept, shown as
            // unsupported. Its body hash dedupes Twilio's retries.
            return Ok(Ingress::Events(vec![event(
                format!("sha256:{}", body_sha256(req.body)),
                "json",
            )]));
        }
        let params = form(req.body);
        let too_long = |what: &str| IngressError::Malformed(format!("{what} is too long"));
        let ev = match classify(&params) {
            Delivery::Status { sid, status } => {
                if sid.len() + status.len() >= MAX_ID_LEN {
                    return Err(too_long("MessageSid/MessageStatus"));
                }
                // One event per state change: `sent` and `delivered` share a MessageSid.
                event(format!("{sid}:{status}"), "status")
            }
            Delivery::Message { sid } => {
                if sid.len() > MAX_ID_LEN {
                    return Err(too_long("MessageSid"));
                }
                event(sid.to_string(), "message")
            }
            Delivery::Other => event(format!("sha256:{}", body_sha256(req.body)), "other"),
        };
        Ok(Ingress::Events(vec![ev]))
    }
}

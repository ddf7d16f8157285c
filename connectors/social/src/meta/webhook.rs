//! Webhook ingress shared by the three kinds: the GET `hub.challenge` handshake, the
//! `X-Hub-Signature-256` check over the exact bytes, and the split of one delivery into one
//! raw event per message, status or other item, each keeping its exact slice of the body.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::Digest;
use switchboard_core::signature::{ct_eq, Algorithm, Encoding, HmacScheme};
use switchboard_core::{
    InboundRequest, Ingress, IngressError, RawEvent, Reply, Verified, VerifyError, WebhookIngress,
};

use super::config::Settings;
use super::normalize::{scalar, whatsapp_seconds};
use super::Kind;

pub struct MetaWebhook {
    pub(crate) s: Arc<Settings>,
}

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Headers the webhook adds to each raw event: envelope context the normaliser needs once an
/// item is stored on its own.
pub mod hdr {
    pub const OBJECT: &str = "x-sb-object";
    pub const ENTRY_ID: &str = "x-sb-entry-id";
    pub const ENTRY_TIME: &str = "x-sb-entry-time";
    pub const FIELD: &str = "x-sb-field";
    pub const PHONE_NUMBER_ID: &str = "x-sb-phone-number-id";
    pub const DISPLAY_PHONE: &str = "x-sb-display-phone-number";
    pub const CONTACT_NAME: &str = "x-sb-contact-name";
    pub const CONTACT_USER_ID: &str = "x-sb-contact-user-id";
    pub const CONTACT_USERNAME: &str = "x-sb-contact-username";
}

/// Longest provider event id the hub stores; longer ones are replaced by a hash.
const MAX_ID: usize = 512;

fn scheme() -> HmacScheme {
    HmacScheme::new(Algorithm::Sha256, Encoding::Hex, Some("sha256="))
}

/// The signature header Meta would send for `body` under `app_secret` (tests, tooling).
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    scheme().sign(app_secret.as_bytes(), &[body])
}

impl WebhookIngress for MetaWebhook {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError> {
        if req.method == http::Method::GET {
            let query = req.uri.query().unwrap_or("");
            let mode = query_param(query, "hub.mode");
            if mode.as_deref() != Some("subscribe") {
                return Err(VerifyError::Forbidden("hub.mode"));
            }
            let token = query_param(query, "hub.verify_token")
                .ok_or(VerifyError::Forbidden("hub.verify_token"))?;
            if !ct_eq(token.as_bytes(), self.s.verify_token.expose().as_bytes()) {
                return Err(VerifyError::Forbidden("hub.verify_token"));
            }
            return Ok(Verified::after_check(req));
        }
        if req.method != http::Method::POST {
            return Err(VerifyError::MethodNotAllowed);
        }
        let values: Vec<&str> = req
            .headers
            .get_all(SIGNATURE_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        scheme().verify_any(
            &[self.s.app_secret.expose().as_bytes()],
            &[req.body],
            values,
        )?;
        Ok(Verified::after_check(req))
    }

    fn parse(&self, v: Verified<'_>) -> Result<Ingress, IngressError> {
        let req = v.req;
        if req.method == http::Method::GET {
            return challenge(req.uri.query().unwrap_or(""));
        }
        let env: Envelope<'_> = serde_json::from_slice(req.body)
            .map_err(|e| IngressError::Malformed(format!("invalid Meta webhook JSON: {e}")))?;
        let expected = self.s.kind.object();
        match env.object.as_deref() {
            Some(o) if o == expected => {}
            Some(o) => {
                return Err(IngressError::Malformed(format!(
                "object `{o}` is not `{expected}` (is this callback URL set on the right product?)"
            )))
            }
            None => return Err(IngressError::MissingField("object".into())),
        }
        let mut out = Vec::new();
        for entry in &env.entry {
            let mut base = vec![(hdr::OBJECT.to_string(), expected.to_string())];
            if let Some(id) = entry.id.as_ref().and_then(scalar) {
                base.push((hdr::ENTRY_ID.to_string(), id));
            }
            if let Some(t) = entry.time.as_ref().and_then(scalar) {
                base.push((hdr::ENTRY_TIME.to_string(), t));
            }
            match self.s.kind {
                Kind::Messenger | Kind::Instagram => {
                    for item in &entry.messaging {
                        out.push(messaging_event(req.body, item, &base));
                    }
                }
                Kind::Whatsapp => {
                    for change in &entry.changes {
                        whatsapp_change(req.body, change, &base, &mut out)?;
                    }
                }
            }
        }
        Ok(Ingress::Events(out))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    object: Option<String>,
    #[serde(borrow, default)]
    entry: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    time: Option<Value>,
    #[serde(borrow, default)]
    messaging: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    changes: Vec<Change<'a>>,
}

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(default)]
    field: Option<String>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WaValue<'a> {
    #[serde(default)]
    metadata: Option<WaMetadata>,
    #[serde(default)]
    contacts: Vec<WaContact>,
    #[serde(borrow, default)]
    messages: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    statuses: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    errors: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct WaMetadata {
    #[serde(default)]
    phone_number_id: Option<Value>,
    #[serde(default)]
    display_phone_number: Option<Value>,
}

#[derive(Deserialize)]
struct WaContact {
    #[serde(default)]
    wa_id: Option<Value>,
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    profile: Option<WaProfile>,
}

#[derive(Deserialize)]
struct WaProfile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

/// The exact bytes of `part`, a slice of `body` (no copy); a copy if it is not one.
fn slice_of(body: &Bytes, part: &str) -> Bytes {
    let base = body.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    match start.checked_sub(base) {
        Some(off) if off + part.len() <= body.len() => body.slice(off..off + part.len()),
        _ => Bytes::copy_from_slice(part.as_bytes()),
    }
}

fn hashed_id(prefix: &str, bytes: &[u8]) -> String {
    format!(
        "{prefix}sha256:{}",
        hex::encode(sha2::Sha256::digest(bytes))
    )
}

/// Keeps ids within the store's limit without losing uniqueness.
fn bounded(id: String) -> String {
    if id.len() <= MAX_ID {
        id
    } else {
        hashed_id("", id.as_bytes())
    }
}

fn str_at(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(scalar).filter(|s| !s.is_empty())
}

/// One Messenger / Instagram `messaging[]` item: its id and kind from what it carries.
fn messaging_event(body: &Bytes, item: &RawValue, base: &[(String, String)]) -> RawEvent {
    let v: Value = serde_json::from_str(item.get()).unwrap_or(Value::Null);
    let sender = str_at(&v, "/sender/id").unwrap_or_default();
    let ts = str_at(&v, "/timestamp").unwrap_or_default();
    let (id, kind) = if let Some(m) = v.get("message") {
        let mid = str_at(m, "/mid");
        let deleted = m.get("is_deleted").and_then(Value::as_bool) == Some(true);
        let echo = m.get("is_echo").and_then(Value::as_bool) == Some(true);
        match mid {
            Some(mid) if deleted => (Some(format!("{mid}:deleted")), "deleted"),
            Some(mid) => (Some(mid), if echo { "echo" } else { "message" }),
            None => (None, "message"),
        }
    } else if let Some(e) = v.get("message_edit") {
        let n = str_at(e, "/num_edit").unwrap_or_default();
        (
            str_at(e, "/mid").map(|mid| format!("{mid}:edit:{n}")),
            "edit",
        )
    } else if let Some(r) = v.get("reaction") {
        let mid = str_at(r, "/mid").unwrap_or_default();
        let action = str_at(r, "/action").unwrap_or_default();
        (
            Some(format!("reaction:{mid}:{sender}:{action}:{ts}")),
            "reaction",
        )
    } else if let Some(d) = v.get("delivery") {
        let w = str_at(d, "/watermark").unwrap_or_default();
        (Some(format!("delivery:{sender}:{w}")), "delivery")
    } else if let Some(r) = v.get("read") {
        let w = str_at(r, "/watermark").unwrap_or_default();
        (Some(format!("read:{sender}:{w}")), "read")
    } else if let Some(p) = v.get("postback") {
        let id = str_at(p, "/mid")
            .map(|mid| format!("postback:{mid}"))
            .unwrap_or_else(|| format!("postback:{sender}:{ts}"));
        (Some(id), "postback")
    } else {
        let kind = v
            .as_object()
            .and_then(|o| {
                o.keys()
                    .find(|k| !matches!(k.as_str(), "sender" | "recipient" | "timestamp"))
            })
            .map(|k| k.as_str())
            .unwrap_or("unknown");
        (None, leak_kind(kind))
    };
    let provider_event_id = bounded(id.unwrap_or_else(|| hashed_id("", item.get().as_bytes())));
    let occurred_at = v
        .get("timestamp")
        .and_then(Value::as_i64)
        .or_else(|| base_header(base, hdr::ENTRY_TIME).and_then(|t| t.parse().ok()));
    RawEvent {
        provider_event_id,
        kind: kind.to_string(),
        occurred_at,
        payload: slice_of(body, item.get()),
        headers: base.to_vec(),
    }
}

/// Event kinds as stored; unknown item kinds are named `other` (their key is in the payload).
fn leak_kind(k: &str) -> &'static str {
    match k {
        "optin" => "optin",
        "referral" => "referral",
        "account_linking" => "account_linking",
        "pass_thread_control" | "take_thread_control" | "request_thread_control" => "handover",
        "policy_enforcement" => "policy_enforcement",
        _ => "other",
    }
}

fn base_header<'a>(base: &'a [(String, String)], name: &str) -> Option<&'a str> {
    base.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One WhatsApp `changes[]` item: a raw event per message, per status and per error; a change
/// of another field is stored whole (the normaliser shows it as unsupported).
fn whatsapp_change(
    body: &Bytes,
    change: &Change<'_>,
    base: &[(String, String)],
    out: &mut Vec<RawEvent>,
) -> Result<(), IngressError> {
    let Some(raw_value) = change.value else {
        return Ok(());
    };
    let field = change.field.clone().unwrap_or_default();
    let mut base = base.to_vec();
    base.push((hdr::FIELD.to_string(), field.clone()));
    if field != "messages" {
        out.push(RawEvent {
            provider_event_id: hashed_id(
                &format!("{}:", bounded_field(&field)),
                raw_value.get().as_bytes(),
            ),
            kind: format!("change:{}", bounded_field(&field)),
            occurred_at: None,
            payload: slice_of(body, raw_value.get()),
            headers: base,
        });
        return Ok(());
    }
    let value: WaValue<'_> = serde_json::from_str(raw_value.get())
        .map_err(|e| IngressError::Malformed(format!("invalid WhatsApp change value: {e}")))?;
    if let Some(m) = &value.metadata {
        if let Some(id) = m.phone_number_id.as_ref().and_then(scalar) {
            base.push((hdr::PHONE_NUMBER_ID.to_string(), id));
        }
        if let Some(n) = m.display_phone_number.as_ref().and_then(scalar) {
            base.push((hdr::DISPLAY_PHONE.to_string(), n));
        }
    }
    for m in &value.messages {
        let v: Value = serde_json::from_str(m.get()).unwrap_or(Value::Null);
        let from = str_at(&v, "/from");
        let mut headers = base.clone();
        // The contact that sent this message: matched by wa_id, or the only one given.
        let contact = value
            .contacts
            .iter()
            .find(|c| from.is_some() && c.wa_id.as_ref().and_then(scalar) == from)
            .or_else(|| {
                (value.contacts.len() == 1)
                    .then(|| value.contacts.first())
                    .flatten()
            });
        if let Some(c) = contact {
            if let Some(p) = &c.profile {
                if let Some(n) = p.name.as_ref().filter(|n| !n.trim().is_empty()) {
                    headers.push((hdr::CONTACT_NAME.to_string(), n.clone()));
                }
                if let Some(u) = p.username.as_ref().filter(|n| !n.trim().is_empty()) {
                    headers.push((hdr::CONTACT_USERNAME.to_string(), u.clone()));
                }
            }
            if let Some(u) = c.user_id.as_ref().and_then(scalar) {
                headers.push((hdr::CONTACT_USER_ID.to_string(), u));
            }
        }
        out.push(RawEvent {
            provider_event_id: bounded(
                str_at(&v, "/id").unwrap_or_else(|| hashed_id("", m.get().as_bytes())),
            ),
            kind: str_at(&v, "/type")
                .map(|t| format!("message:{}", bounded_field(&t)))
                .unwrap_or_else(|| "message".into()),
            occurred_at: v.get("timestamp").and_then(whatsapp_seconds),
            payload: slice_of(body, m.get()),
            headers,
        });
    }
    for s in &value.statuses {
        let v: Value = serde_json::from_str(s.get()).unwrap_or(Value::Null);
        let status = str_at(&v, "/status").unwrap_or_default();
        let id = match str_at(&v, "/id") {
            Some(id) => format!("{id}:{status}"),
            None => hashed_id("status:", s.get().as_bytes()),
        };
        out.push(RawEvent {
            provider_event_id: bounded(id),
            kind: format!("status:{}", bounded_field(&status)),
            occurred_at: v.get("timestamp").and_then(whatsapp_seconds),
            payload: slice_of(body, s.get()),
            headers: base.clone(),
        });
    }
    for e in &value.errors {
        out.push(RawEvent {
            provider_event_id: hashed_id("error:", e.get().as_bytes()),
            kind: "error".into(),
            occurred_at: None,
            payload: slice_of(body, e.get()),
            headers: base.clone(),
        });
    }
    Ok(())
}

/// A provider-given name used inside an id or kind: short and plain.
fn bounded_field(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// Answers the GET handshake with `hub.challenge` as plain text.
fn challenge(query: &str) -> Result<Ingress, IngressError> {
    let c = query_param(query, "hub.challenge")
        .ok_or_else(|| IngressError::MissingField("hub.challenge".into()))?;
    // Meta sends digits; anything else is not echoed back (no reflected content).
    let plain = !c.is_empty()
        && c.len() <= 256
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !plain {
        return Err(IngressError::Malformed("hub.challenge".into()));
    }
    Ok(Ingress::Reply(Reply {
        status: 200,
        content_type: "text/plain",
        body: Bytes::from(c),
    }))
}

/// One `application/x-www-form-urlencoded` query parameter, decoded (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

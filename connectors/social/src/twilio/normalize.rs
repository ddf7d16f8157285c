//! Pure: a stored Twilio callback (the exact form body) → timeline events.

use switchboard_core::{
    Attachment, Direction, EventBody, IdentityClaim, NormalizeError, NormalizedEvent, Normalizer,
    StoredEvent,
};

use super::webhook::{classify, form, get, Delivery};

pub struct TwilioNormalizer;

/// Twilio sends at most 10 media per message; more indexes are not read.
const MAX_MEDIA: usize = 10;

/// A Twilio address: `+14155550100` (SMS/MMS) or `<channel>:<id>` (`whatsapp:+1…`,
/// `messenger:…`, `rcs:…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Address<'a> {
    pub channel: &'a str,
    pub id: &'a str,
}

pub(crate) fn address(a: &str) -> Address<'_> {
    let a = a.trim();
    match a.split_once(':') {
        Some((p, id)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()) => {
            Address { channel: p, id }
        }
        _ => Address {
            channel: "sms",
            id: a,
        },
    }
}

/// `+` and 8 to 15 digits (E.164), as Twilio writes phone addresses.
fn e164(id: &str) -> Option<&str> {
    let digits = id.strip_prefix('+')?;
    (digits.len() >= 8 && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(id)
}

/// What Twilio's common delivery error codes mean, for the agent reading a failed reply.
pub fn error_meaning(code: &str) -> Option<&'static str> {
    Some(match code {
        "20003" => "authentication failed (check account_sid and auth_token)",
        "20429" => "too many requests",
        "21211" => "invalid 'To' phone number",
        "21408" => "sending to this region is not enabled on the account",
        "21610" => "the recipient has unsubscribed (replied STOP)",
        "21614" => "'To' is not a mobile number",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked by the recipient or carrier",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "filtered by the carrier as spam",
        "30008" => "unknown delivery error",
        "30034" => "sender number not registered for US A2P 10DLC",
        "63003" => "the channel could not find the 'To' address",
        "63016" => "outside the WhatsApp 24-hour window: send an approved template",
        "63024" => "invalid WhatsApp recipient",
        _ => return None,
    })
}

/// `Twilio error 63016: outside the WhatsApp … (Twilio's own message)`.
pub fn error_reason(code: Option<&str>, message: Option<&str>) -> Option<String> {
    let code = code.filter(|c| *c != "0");
    let mut r = match (code, message) {
        (None, None) => return None,
        (None, Some(m)) => return Some(m.chars().take(300).collect()),
        (Some(c), _) => format!("Twilio error {c}"),
    };
    if let Some(k) = code.and_then(error_meaning) {
        r.push_str(": ");
        r.push_str(k);
    }
    if let Some(m) = message {
        r.push_str(" (");
        r.extend(m.chars().take(300));
        r.push(')');
    }
    Some(r)
}

/// Twilio's message statuses in the hub's terms; `None` for ones the hub has no word for.
fn hub_status(s: &str) -> Option<&'static str> {
    Some(match s.to_ascii_lowercase().as_str() {
        // Before the carrier has it; the hub leaves a reply's state as it is.
        "accepted" | "scheduled" | "queued" | "sending" => "queued",
        "sent" => "sent",
        "delivered" => "delivered",
        "read" => "read",
        "failed" | "undelivered" | "canceled" => "failed",
        _ => return None,
    })
}

fn media(params: &[(String, String)]) -> Vec<Attachment> {
    let n = get(params, "NumMedia")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_MEDIA);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let Some(url) = get(params, &format!("MediaUrl{i}")) else {
            continue;
        };
        let content_type = get(params, &format!("MediaContentType{i}")).map(str::to_string);
        let kind = match content_type.as_deref().and_then(|c| c.split('/').next()) {
            Some("image") => "image",
            Some("video") => "video",
            Some("audio") => "audio",
            _ => "file",
        };
        out.push(Attachment {
            kind: Some(kind.into()),
            url: Some(url.to_string()),
            content_type,
            ..Attachment::default()
        });
    }
    // A WhatsApp location pin carries coordinates instead of media.
    if let (Some(lat), Some(lon)) = (get(params, "Latitude"), get(params, "Longitude")) {
        out.push(Attachment {
            kind: Some("location".into()),
            url: Some(format!("geo:{lat},{lon}")),
            name: get(params, "Label")
                .or_else(|| get(params, "Address"))
                .map(str::to_string),
            ..Attachment::default()
        });
    }
    out
}

/// The text exactly as sent (not trimmed).
fn body_text(params: &[(String, String)]) -> String {
    params
        .iter()
        .find(|(k, _)| k == "Body")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The customer's identity claims: the phone in E.164 (whatever the channel), the WhatsApp
/// id under our number, the profile name. A non-phone address (short code, Messenger id)
/// becomes a platform id scoped by the channel and our address.
fn claims(
    params: &[(String, String)],
    customer: Address<'_>,
    ours: Address<'_>,
) -> Vec<IdentityClaim> {
    let mut c = Vec::new();
    match e164(customer.id) {
        Some(p) => c.push(IdentityClaim::phone(p)),
        None if !customer.id.is_empty() => c.push(IdentityClaim::platform_id(
            format!("{}:{}", customer.channel, ours.id),
            customer.id,
        )),
        None => {}
    }
    if let Some(wa) = get(params, "WaId").filter(|w| w.bytes().all(|b| b.is_ascii_digit())) {
        c.push(IdentityClaim::platform_id(
            format!("whatsapp:{}", ours.id),
            wa,
        ));
        // WhatsApp ids are the number without `+`; where they differ (some countries'
        // numbering changes) both numbers reach the person.
        if customer.id.strip_prefix('+') != Some(wa) {
            if let Some(p) = e164(&format!("+{wa}")) {
                c.push(IdentityClaim::phone(p));
            }
        }
    }
    if let Some(n) = get(params, "ProfileName") {
        c.push(IdentityClaim::name(n));
    }
    c
}

/// `<customer address>|<our address>`: the reply goes to the customer from the number they
/// wrote to (which matters with pooled numbers and Messaging Services).
pub(crate) fn thread_key(customer: &str, ours: Option<&str>) -> String {
    match ours {
        Some(o) => format!("{}|{}", customer.trim(), o.trim()),
        None => customer.trim().to_string(),
    }
}

impl Normalizer for TwilioNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let occurred_at = raw.occurred_at.unwrap_or(raw.received_at);
        let unsupported = |channel: &str, reason: String| NormalizedEvent {
            channel: channel.to_string(),
            direction: Direction::Inbound,
            thread_key: None,
            claims: Vec::new(),
            occurred_at,
            body: EventBody::Unsupported { reason },
            thread_refs: Vec::new(),
        };
        if raw.kind == "json" {
            return Ok(vec![unsupported(
                "twilio",
                "a JSON-bodied Twilio webhook (not a Programmable Messaging callback)".into(),
            )]);
        }
        let params = form(&raw.payload);
        let ev = match classify(&params) {
            Delivery::Message { sid } => {
                let Some(from) = get(&params, "From") else {
                    return Ok(vec![unsupported(
                        "sms",
                        format!("Twilio message {sid} without a From address"),
                    )]);
                };
                let to = get(&params, "To");
                let customer = address(from);
                let ours = address(to.unwrap_or(""));
                let text = body_text(&params);
                let attachments = media(&params);
                let body = if text.trim().is_empty() && attachments.is_empty() {
                    EventBody::Unsupported {
                        reason: format!(
                            "Twilio message {sid} has no text, media or location{}",
                            get(&params, "MessageType")
                                .map(|t| format!(" (type `{t}`)"))
                                .unwrap_or_default()
                        ),
                    }
                } else {
                    EventBody::Message {
                        message_id: Some(sid.to_string()),
                        text,
                        attachments,
                        reply_to: get(&params, "OriginalRepliedMessageSid").map(str::to_string),
                    }
                };
                NormalizedEvent {
                    channel: customer.channel.to_string(),
                    direction: Direction::Inbound,
                    thread_key: Some(thread_key(from, to)),
                    claims: claims(&params, customer, ours),
                    occurred_at,
                    body,
                    thread_refs: Vec::new(),
                }
            }
            Delivery::Status { sid, status } => {
                // A status callback is about our send: To is the customer, From is us.
                let customer = get(&params, "To");
                let channel = address(customer.unwrap_or("")).channel.to_string();
                let thread = customer.map(|c| thread_key(c, get(&params, "From")));
                match hub_status(status) {
                    Some(hub) => NormalizedEvent {
                        channel,
                        direction: Direction::Outbound,
                        thread_key: thread,
                        claims: Vec::new(),
                        occurred_at,
                        body: EventBody::Status {
                            message_id: sid.to_string(),
                            status: hub.to_string(),
                            reason: (hub == "failed").then(|| {
                                error_reason(
                                    get(&params, "ErrorCode"),
                                    get(&params, "ErrorMessage"),
                                )
                                .unwrap_or_else(|| format!("Twilio status `{status}`"))
                            }),
                        },
                        thread_refs: Vec::new(),
                    },
                    None => NormalizedEvent {
                        thread_key: thread,
                        ..unsupported(
                            &channel,
                            format!("Twilio message {sid}: unknown status `{status}`"),
                        )
                    },
                }
            }
            Delivery::Other => {
                let what = if get(&params, "CallSid").is_some() {
                    "a Twilio voice callback (CallSid); this connector handles messaging only"
                } else {
                    "a Twilio callback without MessageSid"
                };
                // Kept on the caller's timeline when the caller is a phone number.
                let claims = get(&params, "From")
                    .and_then(|f| e164(address(f).id))
                    .map(|p| vec![IdentityClaim::phone(p)])
                    .unwrap_or_default();
                NormalizedEvent {
                    claims,
                    ..unsupported("twilio", what.to_string())
                }
            }
        };
        Ok(vec![ev])
    }
}

//! Pure normalisation of stored Meta events: one `messaging[]` item (Messenger, Instagram) or
//! one WhatsApp message, status or error, with the envelope context the webhook put in headers.

use serde_json::Value;
use switchboard_core::{
    Attachment, Direction, EventBody, IdentityClaim, NormalizeError, NormalizedEvent, Normalizer,
    StoredEvent,
};

use super::webhook::hdr;
use super::Kind;

/// The metadata prefix our Messenger sends carry, so that their echoes are recognised.
pub const METADATA_PREFIX: &str = "switchboard:";

/// Attachments read from one message; more are summarised, not dropped silently.
const MAX_ATTACHMENTS: usize = 50;

pub struct MetaNormalizer {
    pub(crate) kind: Kind,
}

/// A string or a number as text.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// WhatsApp timestamps: a string (or number) of unix seconds, as milliseconds.
pub fn whatsapp_seconds(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    secs.checked_mul(1000)
}

fn str_at(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(scalar).filter(|s| !s.is_empty())
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool) == Some(true)
}

impl Normalizer for MetaNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let fallback_at = raw.occurred_at.unwrap_or(raw.received_at);
        let Ok(v) = serde_json::from_slice::<Value>(&raw.payload) else {
            return Ok(vec![self.event(
                Direction::Inbound,
                None,
                vec![],
                fallback_at,
                unsupported("the stored payload is not JSON"),
            )]);
        };
        Ok(match self.kind {
            Kind::Messenger | Kind::Instagram => self.messaging(raw, &v, fallback_at),
            Kind::Whatsapp => self.whatsapp(raw, &v, fallback_at),
        })
    }
}

fn unsupported(reason: impl Into<String>) -> EventBody {
    EventBody::Unsupported {
        reason: reason.into(),
    }
}

impl MetaNormalizer {
    fn event(
        &self,
        direction: Direction,
        thread_key: Option<String>,
        claims: Vec<IdentityClaim>,
        occurred_at: i64,
        body: EventBody,
    ) -> NormalizedEvent {
        NormalizedEvent {
            channel: self.kind.as_str().to_string(),
            direction,
            thread_key,
            claims,
            occurred_at,
            body,
            thread_refs: Vec::new(),
        }
    }

    /// One Messenger / Instagram `messaging[]` item.
    fn messaging(&self, raw: &StoredEvent, v: &Value, fallback_at: i64) -> Vec<NormalizedEvent> {
        let network = self.kind.network();
        let at = v
            .get("timestamp")
            .and_then(Value::as_i64)
            .unwrap_or(fallback_at);
        let sender = str_at(v, "/sender/id");
        let recipient = str_at(v, "/recipient/id");
        let message = v.get("message");
        let echo = message.is_some_and(|m| flag(m, "is_echo"));
        // The customer is the sender, except in echoes of what the page itself sent.
        let (customer, account) = if echo {
            (recipient, sender)
        } else {
            (sender, recipient)
        };
        let account = account.or_else(|| raw.header(hdr::ENTRY_ID).map(str::to_string));
        let Some(customer) = customer else {
            return vec![self.event(
                Direction::Inbound,
                None,
                vec![],
                at,
                unsupported(format!("{network}: event without a sender id")),
            )];
        };
        let mut claims = vec![IdentityClaim::platform_id(
            format!("{network}:{}", account.as_deref().unwrap_or("")),
            customer.clone(),
        )];
        if !echo {
            if let Some(u) = str_at(v, "/sender/username") {
                claims.push(IdentityClaim::name(u));
            }
        }
        let direction = if echo {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let thread = Some(customer.clone());
        let one =
            |body: EventBody| vec![self.event(direction, thread.clone(), claims.clone(), at, body)];

        if let Some(m) = message {
            let mid = str_at(m, "/mid");
            if flag(m, "is_deleted") {
                return match mid {
                    Some(mid) => one(EventBody::Delete { message_id: mid }),
                    None => one(unsupported(format!(
                        "{network}: deletion without a message id"
                    ))),
                };
            }
            if echo {
                let ours = m
                    .get("metadata")
                    .and_then(Value::as_str)
                    .is_some_and(|md| md.starts_with(METADATA_PREFIX));
                if let (true, Some(mid)) = (ours, &mid) {
                    // Our own send, tagged when it went out: only its state moves.
                    return one(EventBody::Status {
                        message_id: mid.clone(),
                        status: "sent".into(),
                        reason: None,
                    });
                }
            }
            if flag(m, "is_unsupported") {
                return one(unsupported(format!(
                    "{network}: a message type the API does not deliver"
                )));
            }
            let text = m
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let list = m
                .get("attachments")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let attachments: Vec<Attachment> = list
                .iter()
                .take(MAX_ATTACHMENTS)
                .map(|a| Attachment {
                    kind: str_at(a, "/type"),
                    url: str_at(a, "/payload/url"),
                    name: str_at(a, "/payload/title"),
                    ..Attachment::default()
                })
                .collect();
            let mut text = text;
            if list.len() > MAX_ATTACHMENTS {
                text.push_str(&format!(
                    "\n[{} more attachments not shown]",
                    list.len() - MAX_ATTACHMENTS
                ));
            }
            if text.is_empty() && attachments.is_empty() {
                return one(unsupported(format!(
                    "{network}: a message without text or attachments"
                )));
            }
            return one(EventBody::Message {
                message_id: mid,
                text,
                attachments,
                reply_to: str_at(m, "/reply_to/mid"),
            });
        }
        if let Some(e) = v.get("message_edit") {
            return match str_at(e, "/mid") {
                Some(mid) => one(EventBody::Edit {
                    message_id: mid,
                    text: e
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                }),
                None => one(unsupported(format!(
                    "{network}: an edit without a message id"
                ))),
            };
        }
        if let Some(d) = v.get("delivery") {
            // Delivery receipts name our messages when they can; a bare watermark cannot be
            // tied to one message and is kept only as the stored raw event.
            let mids = d
                .get("mids")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            return mids
                .iter()
                .filter_map(scalar)
                .take(MAX_ATTACHMENTS)
                .map(|mid| {
                    self.event(
                        Direction::Outbound,
                        thread.clone(),
                        vec![],
                        at,
                        EventBody::Status {
                            message_id: mid,
                            status: "delivered".into(),
                            reason: None,
                        },
                    )
                })
                .collect();
        }
        if v.get("read").is_some() {
            // A read watermark covers "everything before" and names no message: kept raw only.
            return vec![];
        }
        if let Some(p) = v.get("postback") {
            // A button tap: the customer "said" the button's title.
            let text = str_at(p, "/title")
                .or_else(|| str_at(p, "/payload"))
                .unwrap_or_else(|| "(button)".into());
            return one(EventBody::Message {
                message_id: str_at(p, "/mid"),
                text,
                attachments: vec![],
                reply_to: None,
            });
        }
        if let Some(r) = v.get("reaction") {
            let action = str_at(r, "/action").unwrap_or_else(|| "react".into());
            let emoji = str_at(r, "/emoji")
                .or_else(|| str_at(r, "/reaction"))
                .unwrap_or_default();
            let mid = str_at(r, "/mid").unwrap_or_default();
            return one(unsupported(format!(
                "{network}: reaction ({action} {emoji}) to message {mid}"
            )));
        }
        let what = v
            .as_object()
            .and_then(|o| {
                o.keys()
                    .find(|k| !matches!(k.as_str(), "sender" | "recipient" | "timestamp"))
            })
            .map(|k| k.chars().take(64).collect::<String>())
            .unwrap_or_else(|| "unknown".into());
        one(unsupported(format!(
            "{network}: `{what}` events are not handled"
        )))
    }

    fn whatsapp(&self, raw: &StoredEvent, v: &Value, fallback_at: i64) -> Vec<NormalizedEvent> {
        let field = raw.header(hdr::FIELD).unwrap_or("messages");
        if field != "messages" {
            let field: String = field.chars().take(64).collect();
            return vec![self.event(
                Direction::Inbound,
                None,
                vec![],
                fallback_at,
                unsupported(format!("whatsapp: webhook field `{field}` is not handled")),
            )];
        }
        let at = v
            .get("timestamp")
            .and_then(whatsapp_seconds)
            .unwrap_or(fallback_at);
        if v.get("status").is_some() && v.get("from").is_none() {
            return vec![self.whatsapp_status(v, at)];
        }
        let Some(from) = str_at(v, "/from") else {
            let reason = error_reason(v.pointer("/errors/0").unwrap_or(v))
                .unwrap_or_else(|| "an event without a sender".into());
            return vec![self.event(
                Direction::Inbound,
                None,
                vec![],
                at,
                unsupported(format!("whatsapp: {reason}")),
            )];
        };
        let mut claims = Vec::new();
        if !from.is_empty() && from.bytes().all(|b| b.is_ascii_digit()) {
            claims.push(IdentityClaim::phone(format!("+{from}")));
        }
        let scope = raw
            .header(hdr::ENTRY_ID)
            .or_else(|| raw.header(hdr::PHONE_NUMBER_ID))
            .unwrap_or("");
        if let Some(u) = raw.header(hdr::CONTACT_USER_ID) {
            claims.push(IdentityClaim::platform_id(format!("whatsapp:{scope}"), u));
        }
        match (
            raw.header(hdr::CONTACT_NAME),
            raw.header(hdr::CONTACT_USERNAME),
        ) {
            (Some(n), _) => claims.push(IdentityClaim::name(n)),
            (None, Some(u)) => claims.push(IdentityClaim::name(u)),
            _ => {}
        }
        let mid = str_at(v, "/id");
        let reply_to = str_at(v, "/context/id");
        let kind = str_at(v, "/type").unwrap_or_default();
        let message = |text: String, attachments: Vec<Attachment>| EventBody::Message {
            message_id: mid.clone(),
            text,
            attachments,
            reply_to: reply_to.clone(),
        };
        let body = match kind.as_str() {
            "text" => message(str_at(v, "/text/body").unwrap_or_default(), vec![]),
            "image" | "video" | "audio" | "document" | "sticker" => {
                let media = v.get(kind.as_str()).unwrap_or(&Value::Null);
                let attachment = Attachment {
                    kind: Some(kind.clone()),
                    media_id: str_at(media, "/id"),
                    content_type: str_at(media, "/mime_type"),
                    name: str_at(media, "/filename"),
                    url: str_at(media, "/url"),
                    size: None,
                };
                message(
                    str_at(media, "/caption").unwrap_or_default(),
                    vec![attachment],
                )
            }
            "location" => {
                let loc = v.get("location").unwrap_or(&Value::Null);
                let lat = str_at(loc, "/latitude").unwrap_or_default();
                let lon = str_at(loc, "/longitude").unwrap_or_default();
                let label: Vec<String> = ["/name", "/address"]
                    .iter()
                    .filter_map(|p| str_at(loc, p))
                    .collect();
                let text = if label.is_empty() {
                    format!("Location: {lat},{lon}")
                } else {
                    format!("Location: {} ({lat},{lon})", label.join(", "))
                };
                let attachment = Attachment {
                    kind: Some("location".into()),
                    url: Some(format!("geo:{lat},{lon}")),
                    ..Attachment::default()
                };
                message(text, vec![attachment])
            }
            "button" => message(
                str_at(v, "/button/text")
                    .or_else(|| str_at(v, "/button/payload"))
                    .unwrap_or_default(),
                vec![],
            ),
            "interactive" => match str_at(v, "/interactive/button_reply/title")
                .or_else(|| str_at(v, "/interactive/list_reply/title"))
            {
                Some(t) => message(t, vec![]),
                None => unsupported("whatsapp: an interactive reply of an unknown kind"),
            },
            "reaction" => unsupported(format!(
                "whatsapp: reaction {} to message {}",
                str_at(v, "/reaction/emoji").unwrap_or_default(),
                str_at(v, "/reaction/message_id").unwrap_or_default()
            )),
            other => {
                let other: String = other.chars().take(64).collect();
                let why = v
                    .pointer("/errors/0")
                    .and_then(error_reason)
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                unsupported(format!("whatsapp: `{other}` messages are not handled{why}"))
            }
        };
        let body = match body {
            EventBody::Message {
                ref text,
                ref attachments,
                ..
            } if text.is_empty() && attachments.is_empty() => {
                unsupported(format!("whatsapp: an empty `{kind}` message"))
            }
            b => b,
        };
        vec![self.event(Direction::Inbound, Some(from), claims, at, body)]
    }

    /// A `statuses[]` item: the state of one of our sends.
    fn whatsapp_status(&self, v: &Value, at: i64) -> NormalizedEvent {
        let thread = str_at(v, "/recipient_id");
        let status = str_at(v, "/status").unwrap_or_default();
        let body = match (str_at(v, "/id"), status.as_str()) {
            (Some(id), "sent" | "delivered" | "read" | "failed") => EventBody::Status {
                message_id: id,
                reason: if status == "failed" {
                    Some(
                        v.pointer("/errors/0")
                            .and_then(error_reason)
                            .unwrap_or_else(|| "failed (no reason given)".into()),
                    )
                } else {
                    None
                },
                status,
            },
            (id, s) => unsupported(format!(
                "whatsapp: status `{}` for message {}",
                s.chars().take(32).collect::<String>(),
                id.unwrap_or_default()
            )),
        };
        self.event(Direction::Outbound, thread, vec![], at, body)
    }
}

/// `title: details (code)` from a WhatsApp error object.
fn error_reason(e: &Value) -> Option<String> {
    let title = str_at(e, "/title").or_else(|| str_at(e, "/message"));
    let details = str_at(e, "/error_data/details");
    let code = str_at(e, "/code");
    let mut r = match (title, details) {
        (Some(t), Some(d)) if t != d => format!("{t}: {d}"),
        (Some(t), _) => t,
        (None, Some(d)) => d,
        (None, None) => return code.map(|c| format!("error {c}")),
    };
    if let Some(c) = code {
        r.push_str(&format!(" ({c})"));
    }
    Some(r)
}

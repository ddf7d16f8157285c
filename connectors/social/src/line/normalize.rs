//! One stored LINE webhook event → timeline events. Pure: the event's bytes and the batch's
//! `destination` header in, normalised events out.

use std::sync::Arc;

use serde_json::Value;
use switchboard_core::{
    Attachment, Direction, EventBody, IdentityClaim, NormalizeError, NormalizedEvent, Normalizer,
    StoredEvent,
};

use super::config::Settings;
use super::DESTINATION_HEADER;

pub struct LineNormalizer {
    pub(crate) s: Arc<Settings>,
}

const CHANNEL: &str = "line";

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// LINE sends ids as strings; accept numbers too rather than lose them.
fn id_at(v: &Value, ptr: &str) -> Option<String> {
    match v.pointer(ptr)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The conversation: who the push API must address to answer. A group or room is one
/// conversation whoever speaks in it.
fn thread_key(ev: &Value) -> Option<String> {
    match str_at(ev, "/source/type") {
        Some("group") => str_at(ev, "/source/groupId").map(|g| format!("group:{g}")),
        Some("room") => str_at(ev, "/source/roomId").map(|r| format!("room:{r}")),
        _ => str_at(ev, "/source/userId").map(|u| format!("user:{u}")),
    }
}

fn media(kind: &str, msg: &Value) -> Attachment {
    // `contentProvider.type = external` carries the URL; `line` means fetch it by id.
    let url = (str_at(msg, "/contentProvider/type") == Some("external"))
        .then(|| str_at(msg, "/contentProvider/originalContentUrl"))
        .flatten()
        .map(str::to_string);
    Attachment {
        kind: Some(kind.to_string()),
        url,
        media_id: id_at(msg, "/id"),
        name: str_at(msg, "/fileName").map(str::to_string),
        content_type: None,
        size: msg.get("fileSize").and_then(|s| match s {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }),
    }
}

/// A `message` event's body, or why it is not understood.
fn message_body(msg: &Value) -> Result<EventBody, String> {
    let kind = str_at(msg, "/type").unwrap_or("");
    let message_id = id_at(msg, "/id");
    let reply_to = id_at(msg, "/quotedMessageId");
    let (text, attachments) = match kind {
        "text" => (
            msg.get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            Vec::new(),
        ),
        "image" | "video" | "audio" | "file" => (String::new(), vec![media(kind, msg)]),
        "sticker" => {
            let keywords: Vec<&str> = msg
                .get("keywords")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).take(5).collect())
                .unwrap_or_default();
            let name = match (id_at(msg, "/packageId"), id_at(msg, "/stickerId")) {
                (Some(p), Some(s)) => Some(format!("sticker {p}/{s}")),
                _ => None,
            };
            (
                keywords.join(", "),
                vec![Attachment {
                    kind: Some("sticker".into()),
                    media_id: id_at(msg, "/stickerId"),
                    name,
                    ..Attachment::default()
                }],
            )
        }
        "location" => {
            let lat = msg.get("latitude").and_then(Value::as_f64);
            let lon = msg.get("longitude").and_then(Value::as_f64);
            let text = [str_at(msg, "/title"), str_at(msg, "/address")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n");
            (
                text,
                vec![Attachment {
                    kind: Some("location".into()),
                    // RFC 5870 geo URI, readable by any map app; six decimals are ~10 cm.
                    url: match (lat, lon) {
                        (Some(a), Some(o)) => Some(format!("geo:{a:.6},{o:.6}")),
                        _ => None,
                    },
                    name: str_at(msg, "/title").map(str::to_string),
                    ..Attachment::default()
                }],
            )
        }
        other => return Err(format!("LINE message type `{other}` is not supported")),
    };
    Ok(EventBody::Message {
        message_id,
        text,
        attachments,
        reply_to,
    })
}

/// Events that are not messages but that an agent should see, in words.
fn note_text(kind: &str, ev: &Value) -> Option<String> {
    Some(match kind {
        "follow" => "followed the LINE account".to_string(),
        "unfollow" => "unfollowed (blocked) the LINE account".to_string(),
        "join" => "the bot was added to this chat".to_string(),
        "leave" => "the bot was removed from this chat".to_string(),
        "memberJoined" => "a member joined this chat".to_string(),
        "memberLeft" => "a member left this chat".to_string(),
        "postback" => format!(
            "postback: {}",
            ev.pointer("/postback/data")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
        ),
        _ => return None,
    })
}

impl Normalizer for LineNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let ev: Value = serde_json::from_slice(&raw.payload)
            .map_err(|e| NormalizeError(format!("payload is not JSON: {e}")))?;
        let occurred_at = ev
            .get("timestamp")
            .and_then(Value::as_i64)
            .or(raw.occurred_at)
            .unwrap_or(raw.received_at);
        // A LINE user id is only meaningful for the bot that received it.
        let scope = match raw.header(DESTINATION_HEADER) {
            Some(d) => format!("line:{d}"),
            None => format!("line:{}", self.s.connector_id),
        };
        let claims: Vec<IdentityClaim> = str_at(&ev, "/source/userId")
            .map(|u| vec![IdentityClaim::platform_id(scope, u)])
            .unwrap_or_default();
        let thread_key = thread_key(&ev);
        let kind = str_at(&ev, "/type").unwrap_or("");
        let body = match kind {
            "message" => match ev.get("message") {
                Some(msg) => {
                    message_body(msg).unwrap_or_else(|reason| EventBody::Unsupported { reason })
                }
                None => EventBody::Unsupported {
                    reason: "LINE message event without a message".into(),
                },
            },
            "unsend" => match id_at(&ev, "/unsend/messageId") {
                Some(message_id) => EventBody::Delete { message_id },
                None => EventBody::Unsupported {
                    reason: "LINE unsend event without a message id".into(),
                },
            },
            other => match note_text(other, &ev) {
                Some(text) => EventBody::Note { text },
                None => EventBody::Unsupported {
                    reason: format!("LINE event type `{other}` is not supported"),
                },
            },
        };
        Ok(vec![NormalizedEvent {
            channel: CHANNEL.into(),
            direction: Direction::Inbound,
            thread_key,
            claims,
            occurred_at,
            body,
            thread_refs: Vec::new(),
        }])
    }
}

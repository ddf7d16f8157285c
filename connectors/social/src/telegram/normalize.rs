//! Update → timeline. Message ids are only unique per chat, so every message id is
//! `"<chat_id>:<message_id>"`; the conversation is the chat (`chat.id`).

use std::sync::Arc;

use serde_json::Value;
use switchboard_core::{
    Attachment, Direction, EventBody, IdentityClaim, NormalizeError, NormalizedEvent, Normalizer,
    StoredEvent,
};

use super::config::Settings;
use super::webhook::BOT_ID_HEADER;

pub const CHANNEL: &str = "telegram";

/// The update kinds this normaliser turns into timeline entries (also `allowed_updates`).
pub const HANDLED: &[&str] = &[
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
];

pub struct TelegramNormalizer {
    pub(crate) s: Arc<Settings>,
}

/// The Update's kind: its one field besides `update_id`.
pub(crate) fn update_kind(update: &Value) -> String {
    update
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != "update_id").cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// When the update's message was sent (or edited), unix milliseconds.
pub(crate) fn update_time(update: &Value) -> Option<i64> {
    let obj = update.as_object()?;
    let inner = obj.iter().find(|(k, _)| k.as_str() != "update_id")?.1;
    // A callback query has no time of its own (its `message.date` is when we sent the
    // message): the caller falls back to the time of receipt.
    let secs = inner
        .get("edit_date")
        .and_then(Value::as_i64)
        .or_else(|| inner.get("date").and_then(Value::as_i64))?;
    (0..100_000_000_000).contains(&secs).then(|| secs * 1000)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// An integer id as text (chat and user ids fit in an i64).
fn id_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_i64).map(|i| i.to_string())
}

fn size_of(v: &Value) -> Option<u64> {
    v.get("file_size").and_then(Value::as_u64)
}

/// The attachments of a message: the largest photo size, and each file kind.
fn attachments(msg: &Value) -> Vec<Attachment> {
    let mut out = Vec::new();
    if let Some(sizes) = msg.get("photo").and_then(Value::as_array) {
        let area = |p: &Value| {
            let w = p.get("width").and_then(Value::as_u64).unwrap_or(0);
            let h = p.get("height").and_then(Value::as_u64).unwrap_or(0);
            (w.saturating_mul(h), size_of(p).unwrap_or(0))
        };
        if let Some(best) = sizes
            .iter()
            .filter(|p| str_of(p, "file_id").is_some())
            .max_by_key(|p| area(p))
        {
            out.push(Attachment {
                kind: Some("image".into()),
                media_id: str_of(best, "file_id").map(str::to_string),
                size: size_of(best),
                ..Default::default()
            });
        }
    }
    for (field, kind) in [
        ("document", "file"),
        ("video", "video"),
        ("video_note", "video"),
        ("audio", "audio"),
        ("voice", "voice"),
        ("sticker", "sticker"),
    ] {
        let Some(f) = msg.get(field).filter(|f| str_of(f, "file_id").is_some()) else {
            continue;
        };
        let content_type = str_of(f, "mime_type").map(str::to_string).or_else(|| {
            (field == "sticker").then(|| {
                if f.get("is_animated").and_then(Value::as_bool) == Some(true) {
                    "application/x-tgsticker".to_string()
                } else if f.get("is_video").and_then(Value::as_bool) == Some(true) {
                    "video/webm".to_string()
                } else {
                    "image/webp".to_string()
                }
            })
        });
        out.push(Attachment {
            kind: Some(kind.into()),
            media_id: str_of(f, "file_id").map(str::to_string),
            name: str_of(f, "file_name").map(str::to_string),
            content_type,
            size: size_of(f),
            url: None,
        });
    }
    out
}

/// Claims for a sender (`User`): the user id scoped by the bot, the name, the @username.
fn user_claims(user: &Value, scope: &str) -> Vec<IdentityClaim> {
    let mut claims = Vec::new();
    if let Some(id) = id_of(user, "id") {
        claims.push(IdentityClaim::platform_id(scope, id));
    }
    let name = [str_of(user, "first_name"), str_of(user, "last_name")]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !name.is_empty() {
        claims.push(IdentityClaim::name(name));
    }
    if let Some(u) = str_of(user, "username") {
        claims.push(IdentityClaim::name(format!("@{u}")));
    }
    claims
}

/// Claims for a channel post's sender chat (no `from`): the chat id and its title.
fn chat_claims(chat: &Value, scope: &str) -> Vec<IdentityClaim> {
    let mut claims = Vec::new();
    if let Some(id) = id_of(chat, "id") {
        claims.push(IdentityClaim::platform_id(scope, id));
    }
    if let Some(t) = str_of(chat, "title") {
        claims.push(IdentityClaim::name(t));
    }
    if let Some(u) = str_of(chat, "username") {
        claims.push(IdentityClaim::name(format!("@{u}")));
    }
    claims
}

impl TelegramNormalizer {
    fn event(
        &self,
        direction: Direction,
        thread_key: Option<String>,
        claims: Vec<IdentityClaim>,
        occurred_at: i64,
        body: EventBody,
    ) -> NormalizedEvent {
        NormalizedEvent {
            channel: CHANNEL.into(),
            direction,
            thread_key,
            claims,
            occurred_at,
            body,
            thread_refs: Vec::new(),
        }
    }

    fn unsupported(
        &self,
        thread: Option<String>,
        claims: Vec<IdentityClaim>,
        at: i64,
        reason: String,
    ) -> NormalizedEvent {
        self.event(
            Direction::Inbound,
            thread,
            claims,
            at,
            EventBody::Unsupported { reason },
        )
    }

    /// A `message` or `channel_post` (or, with `edit`, their edited forms).
    fn message(
        &self,
        kind: &str,
        msg: &Value,
        scope: &str,
        at: i64,
        edit: bool,
    ) -> NormalizedEvent {
        let chat = msg.get("chat").unwrap_or(&Value::Null);
        let chat_id = id_of(chat, "id");
        let mid = msg.get("message_id").and_then(Value::as_i64);
        let (from_bot, claims) = match msg.get("from").filter(|f| f.is_object()) {
            Some(from) => (
                from.get("is_bot").and_then(Value::as_bool) == Some(true),
                user_claims(from, scope),
            ),
            None => (
                false,
                msg.get("sender_chat")
                    .map(|c| chat_claims(c, scope))
                    .unwrap_or_default(),
            ),
        };
        let (Some(chat_id), Some(mid)) = (chat_id, mid) else {
            return self.unsupported(
                None,
                claims,
                at,
                format!("telegram {kind} without chat.id or message_id"),
            );
        };
        let thread = Some(chat_id.clone());
        let message_id = format!("{chat_id}:{mid}");
        // Bots never see their own messages in private chats; a bot sender is another bot
        // (or ours, seen in a group or channel): not the customer speaking.
        let direction = if from_bot {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let text = str_of(msg, "text")
            .or_else(|| str_of(msg, "caption"))
            .unwrap_or("")
            .to_string();
        let files = attachments(msg);
        if text.is_empty() && files.is_empty() {
            let what: Vec<&str> = msg
                .as_object()
                .map(|o| {
                    o.keys()
                        .map(String::as_str)
                        .filter(|k| {
                            !matches!(
                                *k,
                                "message_id"
                                    | "from"
                                    | "chat"
                                    | "date"
                                    | "sender_chat"
                                    | "edit_date"
                                    | "message_thread_id"
                            )
                        })
                        .take(5)
                        .collect()
                })
                .unwrap_or_default();
            return self.unsupported(
                thread,
                claims,
                at,
                format!(
                    "telegram {kind} without text or media ({})",
                    what.join(", ")
                ),
            );
        }
        if edit {
            return self.event(
                direction,
                thread,
                claims,
                at,
                EventBody::Edit { message_id, text },
            );
        }
        let reply_to = msg
            .get("reply_to_message")
            .and_then(|r| r.get("message_id"))
            .and_then(Value::as_i64)
            .map(|r| format!("{chat_id}:{r}"));
        self.event(
            direction,
            thread,
            claims,
            at,
            EventBody::Message {
                message_id: Some(message_id),
                text,
                attachments: files,
                reply_to,
            },
        )
    }

    /// A button press on one of our messages: its `data` is what the customer chose.
    fn callback(&self, cb: &Value, scope: &str, at: i64) -> NormalizedEvent {
        let claims = cb
            .get("from")
            .map(|f| user_claims(f, scope))
            .unwrap_or_default();
        let msg = cb.get("message");
        let chat_id = msg.and_then(|m| m.get("chat")).and_then(|c| id_of(c, "id"));
        let data = str_of(cb, "data");
        let (Some(chat_id), Some(data), Some(id)) = (chat_id, data, str_of(cb, "id")) else {
            return self.unsupported(
                None,
                claims,
                at,
                "telegram callback_query without data or without a chat message (inline or game)"
                    .into(),
            );
        };
        let reply_to = msg
            .and_then(|m| m.get("message_id"))
            .and_then(Value::as_i64)
            .map(|m| format!("{chat_id}:{m}"));
        self.event(
            Direction::Inbound,
            Some(chat_id),
            claims,
            at,
            EventBody::Message {
                message_id: Some(format!("callback:{id}")),
                text: data.to_string(),
                attachments: Vec::new(),
                reply_to,
            },
        )
    }
}

impl Normalizer for TelegramNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let bot_id = raw.header(BOT_ID_HEADER).unwrap_or(&self.s.bot_id);
        let scope = format!("telegram:{bot_id}");
        let fallback = raw.occurred_at.unwrap_or(raw.received_at);
        let Ok(update) = serde_json::from_slice::<Value>(&raw.payload) else {
            return Ok(vec![self.unsupported(
                None,
                Vec::new(),
                fallback,
                "telegram update is not JSON".into(),
            )]);
        };
        let at = update_time(&update).unwrap_or(fallback);
        let kind = update_kind(&update);
        let inner = update.get(&kind).unwrap_or(&Value::Null);
        let ev = match kind.as_str() {
            "message" | "channel_post" => self.message(&kind, inner, &scope, at, false),
            "edited_message" | "edited_channel_post" => {
                self.message(&kind, inner, &scope, at, true)
            }
            "callback_query" => self.callback(inner, &scope, at),
            other => {
                let claims = inner
                    .get("from")
                    .map(|f| user_claims(f, &scope))
                    .unwrap_or_default();
                let thread = inner.get("chat").and_then(|c| id_of(c, "id"));
                self.unsupported(
                    thread,
                    claims,
                    at,
                    format!("telegram update `{other}` is not supported"),
                )
            }
        };
        Ok(vec![ev])
    }
}

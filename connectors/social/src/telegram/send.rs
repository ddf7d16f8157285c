//! Replies: `sendMessage` (as a reply to the customer's latest message when known), then one
//! `sendPhoto`/`sendDocument` per attachment URL. Telegram takes no idempotency key.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use switchboard_core::{ConnectorError, Outbound, OutboundMessage, Sent};

use super::api::Api;

/// Telegram's limit on one message's text, in characters.
const MAX_TEXT: usize = 4096;

pub struct TelegramOutbound {
    pub(crate) api: Arc<Api>,
}

/// The chat id as Telegram wants it: a number, or `@channelusername`.
fn chat_id(thread_key: &str) -> Value {
    match thread_key.trim().parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(thread_key),
    }
}

/// The message id inside `"<chat>:<id>"`, when it belongs to this chat.
fn reply_target(thread_key: &str, in_reply_to: Option<&str>) -> Option<i64> {
    let (chat, id) = in_reply_to?.rsplit_once(':')?;
    (chat == thread_key).then_some(())?;
    id.parse::<i64>().ok()
}

fn image_url(url: &str) -> bool {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".webp"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Splits text into pieces of at most `MAX_TEXT` characters.
fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(MAX_TEXT).map(|c| c.iter().collect()).collect()
}

impl TelegramOutbound {
    /// `"<chat>:<message_id>"` from a sent Message.
    fn sent_id(thread_key: &str, result: &[u8]) -> Option<String> {
        let m: Value = serde_json::from_slice(result).ok()?;
        let id = m.get("message_id").and_then(Value::as_i64)?;
        let chat = m
            .get("chat")
            .and_then(|c| c.get("id"))
            .and_then(Value::as_i64)
            .map(|c| c.to_string())
            .unwrap_or_else(|| thread_key.to_string());
        Some(format!("{chat}:{id}"))
    }
}

#[async_trait]
impl Outbound for TelegramOutbound {
    async fn send(&self, msg: &OutboundMessage) -> Result<Sent, ConnectorError> {
        let chat = chat_id(&msg.thread_key);
        let mut reply = reply_target(&msg.thread_key, msg.in_reply_to.as_deref())
            .map(|id| json!({"message_id": id, "allow_sending_without_reply": true}));
        let mut first: Option<String> = None;
        let mut calls: Vec<(&str, Value)> = Vec::new();
        for piece in chunks(&msg.text) {
            calls.push(("sendMessage", json!({"chat_id": chat, "text": piece})));
        }
        for url in &msg.attachment_urls {
            let (method, field) = if image_url(url) {
                ("sendPhoto", "photo")
            } else {
                ("sendDocument", "document")
            };
            calls.push((method, json!({"chat_id": chat, field: url})));
        }
        if calls.is_empty() {
            return Err(ConnectorError::Permanent(
                "nothing to send: the reply has no text and no attachment".into(),
            ));
        }
        for (method, mut body) in calls {
            // Only the first message quotes the customer's; the rest follow it.
            if let Some(r) = reply.take() {
                body["reply_parameters"] = r;
            }
            let result = self.api.call(method, &body).await?;
            if first.is_none() {
                first = Self::sent_id(&msg.thread_key, &result);
            }
        }
        Ok(Sent {
            provider_message_id: first,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_target_reads_chat_colon_id_of_this_chat_only() {
        assert_eq!(reply_target("-100", Some("-100:7")), Some(7));
        assert_eq!(reply_target("-100", Some("55:7")), None);
        assert_eq!(reply_target("55", Some("callback:123")), None);
        assert_eq!(reply_target("55", Some("55:x")), None);
        assert_eq!(reply_target("55", None), None);
    }

    #[test]
    fn long_text_is_split_at_4096_characters() {
        let text = "é".repeat(MAX_TEXT + 10);
        let parts = chunks(&text);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), MAX_TEXT);
        assert_eq!(parts[1].chars().count(), 10);
        assert!(chunks("").is_empty());
    }

    #[test]
    fn images_go_as_photos_by_extension() {
        assert!(image_url("https://x.test/a/b.JPG?sig=1"));
        assert!(!image_url("https://x.test/a/b.pdf"));
        assert!(!image_url("https://x.test/jpg"));
    }
}

//! One stored Slack delivery → timeline events. Pure: the bytes in, events out.

use std::sync::Arc;

use serde_json::Value;
use switchboard_core::{
    Attachment, Direction, EventBody, IdentityClaim, NormalizeError, NormalizedEvent, Normalizer,
    StoredEvent,
};

use super::config::Settings;
use super::form_pairs;

pub struct SlackNormalizer {
    pub(crate) s: Arc<Settings>,
}

const CHANNEL: &str = "slack";

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A Slack message id is only unique within its channel.
pub(crate) fn message_id(channel: &str, ts: &str) -> String {
    format!("{channel}:{ts}")
}

fn attachment(f: &Value) -> Attachment {
    let mime = str_at(f, "/mimetype");
    let kind = mime
        .and_then(|m| m.split('/').next())
        .filter(|k| matches!(*k, "image" | "video" | "audio"))
        .unwrap_or("file");
    Attachment {
        kind: Some(kind.to_string()),
        // Needs the bot token to download (Authorization: Bearer), like any Slack file.
        url: str_at(f, "/url_private").map(str::to_string),
        media_id: str_at(f, "/id").map(str::to_string),
        name: str_at(f, "/name")
            .or_else(|| str_at(f, "/title"))
            .map(str::to_string),
        content_type: mime.map(str::to_string),
        size: f.get("size").and_then(Value::as_u64),
    }
}

/// The sender's profile when the event carries one (`user_profile`, or `profile` in some
/// payloads), for the email and name claims.
fn profile(ev: &Value) -> Option<&Value> {
    ev.get("user_profile")
        .filter(|p| p.is_object())
        .or_else(|| ev.get("profile").filter(|p| p.is_object()))
}

/// Message subtypes that are a person (or our bot) saying something.
fn is_plain(subtype: Option<&str>) -> bool {
    matches!(
        subtype,
        None | Some("file_share" | "thread_broadcast" | "me_message" | "bot_message")
    )
}

struct Ctx {
    team: String,
    occurred_at: i64,
}

impl Ctx {
    fn claims(&self, user: Option<&str>, profile: Option<&Value>) -> Vec<IdentityClaim> {
        let mut c = Vec::new();
        if let Some(u) = user {
            c.push(IdentityClaim::platform_id(
                format!("slack:{}", self.team),
                u,
            ));
        }
        if let Some(p) = profile {
            if let Some(e) = str_at(p, "/email") {
                c.push(IdentityClaim::email(e.to_lowercase()));
            }
            if let Some(n) = str_at(p, "/real_name")
                .or_else(|| str_at(p, "/display_name"))
                .or_else(|| str_at(p, "/name"))
            {
                c.push(IdentityClaim::name(n));
            }
        }
        c
    }

    fn event(
        &self,
        direction: Direction,
        thread_key: Option<String>,
        claims: Vec<IdentityClaim>,
        body: EventBody,
    ) -> NormalizedEvent {
        NormalizedEvent {
            channel: CHANNEL.into(),
            direction,
            thread_key,
            claims,
            occurred_at: self.occurred_at,
            body,
            thread_refs: Vec::new(),
        }
    }

    fn unsupported(
        &self,
        thread_key: Option<String>,
        claims: Vec<IdentityClaim>,
        reason: String,
    ) -> NormalizedEvent {
        self.event(
            Direction::Inbound,
            thread_key,
            claims,
            EventBody::Unsupported { reason },
        )
    }

    /// A `message` event (`event` is the inner object).
    fn message(&self, ev: &Value) -> NormalizedEvent {
        let channel = str_at(ev, "/channel").unwrap_or("");
        let subtype = str_at(ev, "/subtype");
        match subtype {
            Some("message_changed") => {
                let m = ev.get("message").unwrap_or(&Value::Null);
                let ts = str_at(m, "/ts");
                let thread = str_at(m, "/thread_ts").or(ts);
                let direction = if m.get("bot_id").is_some() {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                let claims = if direction == Direction::Inbound {
                    self.claims(str_at(m, "/user"), profile(m))
                } else {
                    Vec::new()
                };
                let thread_key = conversation(ev, channel, thread);
                match ts {
                    Some(ts) if !channel.is_empty() => self.event(
                        direction,
                        thread_key,
                        claims,
                        EventBody::Edit {
                            message_id: message_id(channel, ts),
                            text: m
                                .get("text")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        },
                    ),
                    _ => self.unsupported(
                        thread_key,
                        claims,
                        "Slack message_changed without channel or ts".into(),
                    ),
                }
            }
            Some("message_deleted") => {
                let ts = str_at(ev, "/deleted_ts");
                let thread = str_at(ev, "/previous_message/thread_ts").or(ts);
                let thread_key = conversation(ev, channel, thread);
                let claims = self.claims(str_at(ev, "/previous_message/user"), None);
                match ts {
                    Some(ts) if !channel.is_empty() => self.event(
                        Direction::Inbound,
                        thread_key,
                        claims,
                        EventBody::Delete {
                            message_id: message_id(channel, ts),
                        },
                    ),
                    _ => self.unsupported(
                        thread_key,
                        claims,
                        "Slack message_deleted without channel or deleted_ts".into(),
                    ),
                }
            }
            s if is_plain(s) => {
                let ts = str_at(ev, "/ts");
                let thread_ts = str_at(ev, "/thread_ts");
                let thread_key = conversation(ev, channel, thread_ts.or(ts));
                // Our own sends (and other bots' and apps') come back as bot messages.
                let echo =
                    ev.get("bot_id").is_some_and(|b| !b.is_null()) || s == Some("bot_message");
                let (direction, claims) = if echo {
                    (Direction::Outbound, Vec::new())
                } else {
                    (
                        Direction::Inbound,
                        self.claims(str_at(ev, "/user"), profile(ev)),
                    )
                };
                let Some(ts) = ts.filter(|_| !channel.is_empty()) else {
                    return self.unsupported(
                        thread_key,
                        claims,
                        "Slack message without channel or ts".into(),
                    );
                };
                let attachments = ev
                    .get("files")
                    .and_then(Value::as_array)
                    .map(|fs| fs.iter().take(50).map(attachment).collect())
                    .unwrap_or_default();
                // A reply in a thread answers the thread's first message.
                let reply_to = thread_ts
                    .filter(|t| *t != ts)
                    .map(|t| message_id(channel, t));
                self.event(
                    direction,
                    thread_key,
                    claims,
                    EventBody::Message {
                        message_id: Some(message_id(channel, ts)),
                        text: ev
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        attachments,
                        reply_to,
                    },
                )
            }
            other => {
                let other = other.unwrap_or("");
                let thread_key = conversation(
                    ev,
                    channel,
                    str_at(ev, "/thread_ts").or_else(|| str_at(ev, "/ts")),
                );
                self.unsupported(
                    thread_key,
                    self.claims(str_at(ev, "/user"), None),
                    format!("Slack message subtype `{other}` is not supported"),
                )
            }
        }
    }

    /// A slash command: the user asked something in a channel.
    fn command(&self, pairs: &[(String, String)]) -> NormalizedEvent {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let claims = {
            let mut c = Vec::new();
            if let Some(u) = get("user_id") {
                c.push(IdentityClaim::platform_id(
                    format!("slack:{}", self.team),
                    u,
                ));
            }
            if let Some(n) = get("user_name") {
                c.push(IdentityClaim::name(n));
            }
            c
        };
        // A command has no message ts to thread under: the reply goes to the channel itself.
        let thread_key = get("channel_id").map(str::to_string);
        let text = [get("command"), get("text")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        self.event(
            Direction::Inbound,
            thread_key,
            claims,
            EventBody::Message {
                message_id: None,
                text,
                attachments: Vec::new(),
                reply_to: None,
            },
        )
    }
}

impl Normalizer for SlackNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let fallback_time = raw.occurred_at.unwrap_or(raw.received_at);
        let first = raw.payload.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            let pairs = form_pairs(&raw.payload);
            let team = pairs
                .iter()
                .find(|(k, _)| k == "team_id")
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| self.s.connector_id.clone());
            let ctx = Ctx {
                team,
                occurred_at: fallback_time,
            };
            if pairs.iter().any(|(k, _)| k == "command") {
                return Ok(vec![ctx.command(&pairs)]);
            }
            return Ok(vec![ctx.unsupported(
                None,
                Vec::new(),
                "Slack interactive payloads are not supported".into(),
            )]);
        }
        let json: Value = serde_json::from_slice(&raw.payload)
            .map_err(|e| NormalizeError(format!("payload is not JSON: {e}")))?;
        let ev = json.get("event").unwrap_or(&Value::Null);
        let team = str_at(&json, "/team_id")
            .or_else(|| str_at(ev, "/team"))
            .map(str::to_string)
            .unwrap_or_else(|| self.s.connector_id.clone());
        // `event_ts`/`ts` are "seconds.micros" strings; the envelope's `event_time` is seconds.
        let occurred_at = str_at(ev, "/event_ts")
            .or_else(|| str_at(ev, "/ts"))
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t > 0.0 && *t < 1e11)
            .map(|t| (t * 1000.0).round() as i64)
            .unwrap_or(fallback_time);
        let ctx = Ctx { team, occurred_at };
        let out = match (str_at(&json, "/type"), str_at(ev, "/type")) {
            (Some("event_callback"), Some("message")) => ctx.message(ev),
            (Some("event_callback"), t) => ctx.unsupported(
                None,
                ctx.claims(str_at(ev, "/user"), None),
                format!("Slack event type `{}` is not supported", t.unwrap_or("")),
            ),
            (t, _) => ctx.unsupported(
                None,
                Vec::new(),
                format!("Slack delivery type `{}` is not supported", t.unwrap_or("")),
            ),
        };
        Ok(vec![out])
    }
}

/// The conversation a message belongs to: a direct message channel (`im`, `mpim`) is one
/// conversation, as a person reads it; in a channel each thread is its own (`channel:thread_ts`),
/// so replies go into the thread.
fn conversation(ev: &Value, channel: &str, thread: Option<&str>) -> Option<String> {
    if channel.is_empty() {
        return None;
    }
    let direct = matches!(str_at(ev, "/channel_type"), Some("im" | "mpim"));
    if direct {
        return Some(channel.to_string());
    }
    thread.map(|t| message_id(channel, t))
}

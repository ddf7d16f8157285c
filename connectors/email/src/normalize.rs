//! From a parsed email to timeline events: one `Message` per email, its conversation key, the
//! refs that thread it (`References`/`In-Reply-To`, its own Message-ID, the subject within a
//! window), and the sender's identity claims.
//!
//! The conversation key (`thread_key`) is a `mailto:` URI (RFC 6068) that carries what a reply
//! needs: `mailto:<customer>?references=<root Message-ID>&subject=<base subject>`.

use base64::Engine;
use switchboard_core::{
    Attachment, Direction, EventBody, IdentityClaim, NormalizeError, NormalizedEvent, Normalizer,
    StoredEvent,
};

use crate::config::NormalizeSettings;
use crate::mime::{self, is_noreply, Mailbox, ParsedMail, MAX_INLINE_BODY_BYTES};

/// The channel agents see.
pub const CHANNEL: &str = "email";
/// Scope of the claim a `noreply`-style sender gets instead of an email identity.
pub const NOREPLY_SCOPE: &str = "email:noreply";

/// The subject without reply/forward prefixes (`Re:`, `Fwd:`, `AW:`, `SV:`, `Re[2]:` …) and
/// mailing-list tags (`[list]`), whitespace collapsed (RFC 5256 §2.1, simplified).
pub fn base_subject(s: &str) -> String {
    let mut t: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let prefixes = [
        "re", "fw", "fwd", "aw", "sv", "wg", "vs", "tr", "antw", "rif", "r", "ref", "odp", "vl",
    ];
    for _ in 0..20 {
        let before = t.len();
        let trimmed = t.trim_start();
        if let Some(rest) = trimmed.strip_prefix('[') {
            if let Some((_, after)) = rest.split_once(']') {
                // A list tag, but not a subject that is only a bracketed text.
                if !after.trim().is_empty() {
                    t = after.trim_start().to_string();
                }
            }
        }
        let lower = t.to_lowercase();
        for p in prefixes {
            if let Some(rest) = lower.strip_prefix(p) {
                // `Re:`, `Re :`, `Re[2]:`, `Re(2):`
                let rest_trim = rest.trim_start();
                let after_counter = if rest_trim.starts_with('[') || rest_trim.starts_with('(') {
                    rest_trim
                        .find([']', ')'])
                        .map(|i| rest_trim[i + 1..].trim_start())
                        .unwrap_or(rest_trim)
                } else {
                    rest_trim
                };
                if let Some(after) = after_counter.strip_prefix(':') {
                    let cut = lower.len() - after.len();
                    t = t.get(cut..).unwrap_or("").trim_start().to_string();
                    break;
                }
            }
        }
        if t.len() == before {
            break;
        }
    }
    t.trim().chars().take(200).collect()
}

/// `mailto:<addr>?references=<root>&subject=<subject>` with RFC 3986 percent-encoding.
pub fn thread_key(customer: &str, root: Option<&str>, subject: &str) -> String {
    let enc = |s: &str| -> String {
        let mut o = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                o.push(b as char);
            } else {
                o.push_str(&format!("%{b:02X}"));
            }
        }
        o
    };
    let mut k = format!("mailto:{}", enc(customer).replace("%40", "@"));
    let mut sep = '?';
    if let Some(r) = root {
        k.push(sep);
        k.push_str("references=");
        k.push_str(&enc(r));
        sep = '&';
    }
    if !subject.is_empty() {
        k.push(sep);
        k.push_str("subject=");
        k.push_str(&enc(subject));
    }
    k
}

/// What a reply needs from a conversation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    pub to: String,
    pub root: Option<String>,
    pub subject: String,
}

pub fn parse_thread_key(key: &str) -> Option<ReplyTarget> {
    let rest = key.strip_prefix("mailto:")?;
    let (addr, query) = rest.split_once('?').unwrap_or((rest, ""));
    let to: String = form_urlencoded::parse(format!("a={addr}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    if !to.contains('@') {
        return None;
    }
    let mut t = ReplyTarget {
        to,
        root: None,
        subject: String::new(),
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "references" => t.root = mime::norm_id(&v),
            "subject" => t.subject = v.into_owned(),
            _ => {}
        }
    }
    Some(t)
}

fn data_url(content_type: &str, body: &str) -> String {
    format!(
        "data:{content_type};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(body.as_bytes())
    )
}

fn is_own(s: &NormalizeSettings, a: &str) -> bool {
    s.own_addresses.iter().any(|o| o == a)
}

/// The timeline events of one parsed email. `fallback_ms` is the time used when the `Date`
/// header is missing or implausible (later than `fallback_ms` plus a day).
pub fn events_for(
    mail: &ParsedMail,
    s: &NormalizeSettings,
    fallback_ms: i64,
) -> Vec<NormalizedEvent> {
    let occurred_at = mail
        .date_ms
        .filter(|d| *d > 0 && *d <= fallback_ms.saturating_add(86_400_000))
        .unwrap_or(fallback_ms);
    let usable = |m: &&Mailbox| !is_own(s, &m.address);
    let from_ours = mail.from.as_ref().is_some_and(|f| is_own(s, &f.address));

    let mut claims = Vec::new();
    let (direction, customer): (Direction, Option<&Mailbox>) = if from_ours {
        // Sent by us from another mail client: the customer is the first recipient not ours.
        let to = mail.to.iter().find(usable);
        if let Some(t) = to {
            claims.push(IdentityClaim::email(&t.address));
            if let Some(n) = &t.name {
                claims.push(IdentityClaim::name(n));
            }
        }
        (Direction::Outbound, to)
    } else {
        let from = mail.from.as_ref().filter(usable);
        let reply_to = mail
            .reply_to
            .as_ref()
            .filter(usable)
            .filter(|r| !is_noreply(&r.address));
        match from {
            Some(f) if !is_noreply(&f.address) => {
                claims.push(IdentityClaim::email(&f.address));
                if let Some(r) = reply_to.filter(|r| r.address != f.address) {
                    claims.push(IdentityClaim::email(&r.address));
                }
                if let Some(n) = &f.name {
                    claims.push(IdentityClaim::name(n));
                }
                (Direction::Inbound, Some(reply_to.unwrap_or(f)))
            }
            Some(f) => match reply_to {
                // A web form or shop sending from noreply@ on behalf of the customer in Reply-To.
                Some(r) => {
                    claims.push(IdentityClaim::email(&r.address));
                    if let Some(n) = r.name.as_ref().or(f.name.as_ref()) {
                        claims.push(IdentityClaim::name(n));
                    }
                    (Direction::Inbound, Some(r))
                }
                // An automated sender: its own scoped identity, never an email identity that
                // could merge real people, and a name that says so.
                None => {
                    claims.push(IdentityClaim::platform_id(NOREPLY_SCOPE, &f.address));
                    let n = f.name.clone().unwrap_or_else(|| f.address.clone());
                    claims.push(IdentityClaim::name(format!("{n} (automated sender)")));
                    (Direction::Inbound, Some(f))
                }
            },
            None => (Direction::Inbound, reply_to),
        }
    };

    let Some(customer) = customer else {
        let why = if mail.from.is_none() {
            "email without a readable From address"
        } else {
            "email from one of our own addresses to no customer address"
        };
        return vec![NormalizedEvent {
            channel: CHANNEL.into(),
            direction,
            thread_key: None,
            claims: Vec::new(),
            occurred_at,
            body: EventBody::Unsupported {
                reason: format!(
                    "{why} (Message-ID {}, subject {:?})",
                    mail.message_id.as_deref().unwrap_or("none"),
                    mail.subject
                ),
            },
            thread_refs: Vec::new(),
        }];
    };

    let subject = base_subject(&mail.subject);
    let root = mail
        .references
        .first()
        .or(mail.in_reply_to.first())
        .or(mail.message_id.as_ref());
    let thread_key = thread_key(&customer.address, root.map(String::as_str), &subject);

    // Refs: the parent(s) first, then the rest of the chain (latest first), then our own id,
    // then the subject within its window.
    let mut refs: Vec<String> = Vec::new();
    for r in mail
        .in_reply_to
        .iter()
        .chain(mail.references.iter().rev())
        .chain(mail.message_id.iter())
    {
        if !refs.contains(r) {
            refs.push(r.clone());
        }
    }
    if s.subject_window_secs > 0 && !subject.is_empty() {
        refs.push(format!(
            "window:{}:subject:{}:{}",
            s.subject_window_secs,
            customer.address,
            subject.to_lowercase()
        ));
    }

    let mut text = if let Some(size) = mail.truncated_size {
        format!("[This email is {size} bytes, larger than max_message_bytes: only its headers were imported.]")
    } else {
        mail.text_new.clone()
    };
    if !mail.problems.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&format!("[switchboard: {}]", mail.problems.join("; ")));
    }
    let mut attachments = mail.attachments.clone();
    if let Some(h) = mail.html.as_ref().filter(|h| !h.trim().is_empty()) {
        if h.len() <= MAX_INLINE_BODY_BYTES {
            attachments.push(Attachment {
                kind: Some("html_body".into()),
                url: Some(data_url("text/html;charset=utf-8", h)),
                media_id: None,
                name: Some("body.html".into()),
                content_type: Some("text/html; charset=utf-8".into()),
                size: Some(h.len() as u64),
            });
        }
    }
    if mail.text_full.trim_end() != mail.text_new.trim_end()
        && mail.text_full.len() <= MAX_INLINE_BODY_BYTES
    {
        attachments.push(Attachment {
            kind: Some("full_text".into()),
            url: Some(data_url("text/plain;charset=utf-8", &mail.text_full)),
            media_id: None,
            name: Some("full-text.txt".into()),
            content_type: Some("text/plain; charset=utf-8".into()),
            size: Some(mail.text_full.len() as u64),
        });
    }

    vec![NormalizedEvent {
        channel: CHANNEL.into(),
        direction,
        thread_key: Some(thread_key),
        claims,
        occurred_at,
        body: EventBody::Message {
            message_id: mail.message_id.clone(),
            text,
            attachments,
            reply_to: mail.in_reply_to.first().cloned(),
        },
        thread_refs: refs,
    }]
}

/// The `email` kind's normaliser: the raw event is the exact RFC 5322 bytes (IMAP), or only
/// the header block when the message was larger than `max_message_bytes` (header
/// `x-sb-truncated: <size>`).
pub struct EmailNormalizer {
    pub s: NormalizeSettings,
}

impl Normalizer for EmailNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let fallback = raw.occurred_at.unwrap_or(raw.received_at);
        let Some(mut mail) = mime::parse(&raw.payload) else {
            return Ok(vec![unsupported(
                fallback,
                "not a readable RFC 5322 message",
            )]);
        };
        mail.truncated_size = raw.header("x-sb-truncated").and_then(|v| v.parse().ok());
        Ok(events_for(&mail, &self.s, fallback))
    }
}

pub fn unsupported(at: i64, reason: &str) -> NormalizedEvent {
    NormalizedEvent {
        channel: CHANNEL.into(),
        direction: Direction::Inbound,
        thread_key: None,
        claims: Vec::new(),
        occurred_at: at,
        body: EventBody::Unsupported {
            reason: reason.into(),
        },
        thread_refs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subject_strips_prefixes_and_list_tags() {
        assert_eq!(base_subject("Re: Saying Hello"), "Saying Hello");
        assert_eq!(
            base_subject("RE: Fwd: AW:  SV: Saying   Hello"),
            "Saying Hello"
        );
        assert_eq!(base_subject("[support] Re: [support] Order 5"), "Order 5");
        assert_eq!(base_subject("Re[2]: Question"), "Question");
        assert_eq!(base_subject("Reply needed"), "Reply needed");
        assert_eq!(base_subject("Re:"), "");
        assert_eq!(base_subject("[only tag]"), "[only tag]");
    }

    #[test]
    fn thread_key_round_trips_what_a_reply_needs() {
        let k = thread_key(
            "jane+x@example.com",
            Some("<1234@local>"),
            "Saying Hello & more",
        );
        assert_eq!(
            k,
            "mailto:jane%2Bx@example.com?references=%3C1234%40local%3E&subject=Saying%20Hello%20%26%20more"
        );
        let t = parse_thread_key(&k).unwrap();
        assert_eq!(t.to, "jane+x@example.com");
        assert_eq!(t.root.as_deref(), Some("<1234@local>"));
        assert_eq!(t.subject, "Saying Hello & more");
        assert_eq!(parse_thread_key("telegram:1"), None);
        assert_eq!(parse_thread_key("mailto:nobody"), None);
    }
}

//! RFC 5322 / MIME parsing with `mail-parser`: headers (encoded words, charsets), text and HTML
//! bodies, attachments as metadata, and quoted-reply trimming kept apart from the full text.
//!
//! Nothing here panics on input: a message `mail-parser` cannot read at all gives `None`, and
//! anything odd inside a readable message is noted in `ParsedMail::problems`.

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
use switchboard_core::Attachment;

/// Attachments listed per message; the rest are counted, not listed.
pub const MAX_ATTACHMENTS: usize = 100;
/// Characters of body text kept in a timeline entry.
pub const MAX_TEXT_CHARS: usize = 64 * 1024;
/// Bytes of the sanitised HTML / full text carried as a `data:` attachment.
pub const MAX_INLINE_BODY_BYTES: usize = 128 * 1024;
/// Message ids kept from `References` (the first one, the root, and the most recent ones).
const MAX_REFERENCES: usize = 50;
/// Longest Message-ID accepted (RFC 5322 lines are at most 998 characters).
const MAX_ID_LEN: usize = 500;

/// A mailbox: lower-cased address and display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub address: String,
    pub name: Option<String>,
}

/// What the normaliser needs from one email, whatever it arrived as (IMAP bytes, a provider's
/// inbound-parse fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedMail {
    /// `<id-left@id-right>`, angle brackets included.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub subject: String,
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    /// Unix milliseconds from the `Date` header.
    pub date_ms: Option<i64>,
    /// The whole plain text (from the text part, else converted from HTML).
    pub text_full: String,
    /// The new part of the text: `text_full` with the quoted reply trimmed.
    pub text_new: String,
    /// The HTML body, sanitised for display (scripts, event handlers, forms removed).
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Attachments in the message, including those not listed.
    pub attachment_count: usize,
    /// `Auto-Submitted`/`Precedence: bulk` or a `noreply`-style sender.
    pub automated: bool,
    /// Set when the body was not imported (larger than `max_message_bytes`): its size.
    pub truncated_size: Option<u64>,
    /// Things that were wrong with the message and how they were handled.
    pub problems: Vec<String>,
}

/// Normalises a message id to `<left@right>`; `None` if it is empty, too long or has spaces.
pub fn norm_id(s: &str) -> Option<String> {
    let t = s
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    if t.is_empty()
        || t.len() > MAX_ID_LEN
        || t.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
    {
        return None;
    }
    Some(format!("<{t}>"))
}

/// All message ids in a header value such as `References: <a@x> <b@y>` (also without
/// brackets, as some clients write them).
pub fn ids_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.contains('<') {
        for part in s.split('<').skip(1) {
            if let Some((id, _)) = part.split_once('>') {
                if let Some(n) = norm_id(id) {
                    out.push(n);
                }
            }
            if out.len() >= 1000 {
                break;
            }
        }
    } else {
        out.extend(s.split_whitespace().take(1000).filter_map(norm_id));
    }
    out
}

fn header_ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => ids_in(t),
        HeaderValue::TextList(l) => l.iter().take(1000).filter_map(|t| norm_id(t)).collect(),
        _ => Vec::new(),
    }
}

/// Keeps the root and the most recent references when a chain is very long.
fn bound_refs(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|r| seen.insert(r.clone()));
    if v.len() > MAX_REFERENCES {
        let tail = v.split_off(v.len() - (MAX_REFERENCES - 1));
        v.truncate(1);
        v.extend(tail);
    }
    v
}

pub fn mailbox(addr: Option<&str>, name: Option<&str>) -> Option<Mailbox> {
    let a = addr?.trim().trim_matches(['<', '>']).to_lowercase();
    if !a.contains('@') || a.len() > 320 || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let name = name
        .map(|n| n.trim().trim_matches('"').trim().to_string())
        .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case(&a))
        .map(|n| n.chars().take(200).collect());
    Some(Mailbox { address: a, name })
}

fn first_mailbox(a: Option<&Address<'_>>) -> Option<Mailbox> {
    a?.iter().find_map(|x| mailbox(x.address(), x.name()))
}

/// Parses a simple address header value such as `"Jane Doe" <jane@example.com>` (as
/// inbound-parse providers pass it) with the same MIME parser.
pub fn parse_address_header(v: &str) -> Option<Mailbox> {
    let raw = format!("From: {}\r\n\r\n", v.replace(['\r', '\n'], " "));
    let msg = MessageParser::default().parse_headers(raw.as_bytes())?;
    first_mailbox(msg.from())
}

/// Local parts that mean "nobody reads replies to this address".
pub fn is_noreply(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("").to_ascii_lowercase();
    let squashed: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    squashed.starts_with("noreply")
        || squashed.starts_with("donotreply")
        || squashed.starts_with("dontreply")
        || squashed == "mailerdaemon"
        || squashed == "postmaster"
        || local.starts_with("bounce")
}

fn truncate_chars(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (s[..i].to_string(), true),
        None => (s.to_string(), false),
    }
}

/// Sanitises HTML for display: `ammonia`'s allow-list (no scripts, styles, forms, event
/// handlers or `javascript:` URLs; links get `rel="noopener noreferrer"`).
pub fn sanitize_html(html: &str) -> String {
    ammonia::clean(html)
}

/// Is this line the header a mail client writes above a quoted reply?
fn is_reply_header(line: &str, next: Option<&str>) -> bool {
    let l = line.trim();
    if l.is_empty() || l.len() > 400 {
        return false;
    }
    let lower = l.to_lowercase();
    if lower.starts_with("-----original message-----")
        || lower.starts_with("----- original message -----")
        || lower.starts_with("-------- original message --------")
        || lower.starts_with("-----ursprüngliche nachricht-----")
        || lower.starts_with("________________________________")
    {
        return true;
    }
    // "On <date>, <name> wrote:" (possibly wrapped onto the next line), and its translations.
    let joined = match next {
        Some(n) if !lower.ends_with(':') => format!("{lower} {}", n.trim().to_lowercase()),
        _ => lower.clone(),
    };
    let starts = [
        "on ", "le ", "am ", "el ", "il ", "op ", "den ", "em ", "w dniu ",
    ];
    let verbs = [
        " wrote",
        " a écrit",
        " schrieb",
        " escribió",
        " ha scritto",
        " schreef",
        " skrev",
        " escreveu",
        " napisał",
    ];
    if starts.iter().any(|s| joined.starts_with(s))
        && joined.ends_with(':')
        && verbs.iter().any(|v| joined.contains(v))
    {
        return true;
    }
    // Outlook: "From: …" followed by "Sent:"/"Date:" lines.
    if (lower.starts_with("from:")
        || lower.starts_with("von:")
        || lower.starts_with("de :")
        || lower.starts_with("de:"))
        && next.is_some_and(|n| {
            let n = n.trim().to_lowercase();
            n.starts_with("sent:")
                || n.starts_with("date:")
                || n.starts_with("gesendet:")
                || n.starts_with("envoyé :")
        })
    {
        return true;
    }
    false
}

/// The new part of a reply: cut at the first reply header ("On … wrote:", "-----Original
/// Message-----", Outlook's From:/Sent: block) or at the quoted (`>`) block that ends the
/// message. Inline answers between quotes are kept. Never empty when `text` is not.
pub fn trim_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut cut = lines.len();
    for i in 0..lines.len() {
        if is_reply_header(lines[i], lines.get(i + 1).copied()) {
            cut = i;
            break;
        }
    }
    // A trailing block of quoted lines (blank lines allowed inside).
    let mut j = cut;
    while j > 0 && (lines[j - 1].trim().is_empty() || lines[j - 1].trim_start().starts_with('>')) {
        j -= 1;
    }
    if lines[j..cut]
        .iter()
        .any(|l| l.trim_start().starts_with('>'))
    {
        cut = j;
    }
    let new = lines[..cut].join("\n").trim_end().to_string();
    if new.trim().is_empty() {
        text.trim_end().to_string()
    } else {
        new
    }
}

/// The bytes after the header block, as lossy UTF-8, bounded.
fn raw_body(bytes: &[u8]) -> String {
    let start = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(bytes.len());
    let end = bytes.len().min(start + MAX_TEXT_CHARS);
    String::from_utf8_lossy(&bytes[start..end]).into_owned()
}

/// Parses one message (RFC 5322 bytes). `None` only when the bytes are not a message at all.
pub fn parse(bytes: &[u8]) -> Option<ParsedMail> {
    let msg = MessageParser::default().parse(bytes)?;
    let mut p = ParsedMail {
        message_id: msg.message_id().and_then(norm_id),
        in_reply_to: bound_refs(header_ids(msg.in_reply_to())),
        references: bound_refs(header_ids(msg.references())),
        subject: msg
            .subject()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(998)
            .collect(),
        from: first_mailbox(msg.from()),
        reply_to: first_mailbox(msg.reply_to()),
        to: msg
            .to()
            .map(|a| {
                a.iter()
                    .take(100)
                    .filter_map(|x| mailbox(x.address(), x.name()))
                    .collect()
            })
            .unwrap_or_default(),
        date_ms: msg.date().map(|d| d.to_timestamp().saturating_mul(1000)),
        ..ParsedMail::default()
    };
    if msg.message_id().is_some() && p.message_id.is_none() {
        p.problems.push("unusable Message-ID header".into());
    }
    if msg.from().is_some() && p.from.is_none() {
        p.problems.push("unreadable From header".into());
    }
    let header_text = |name: &str| msg.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    p.automated = header_text("Auto-Submitted").is_some_and(|v| v != "no")
        || header_text("Precedence").is_some_and(|v| v == "bulk" || v == "junk" || v == "list");

    // Text: every text body part (mail-parser converts an HTML-only body to text).
    let mut full = String::new();
    for i in 0..msg.text_body_count().min(50) {
        if let Some(t) = msg.body_text(i) {
            if !full.is_empty() {
                full.push_str("\n\n");
            }
            full.push_str(&t);
        }
        if full.len() > MAX_TEXT_CHARS * 4 {
            break;
        }
    }
    if full.trim().is_empty() && msg.html_body_count() == 0 {
        // Malformed MIME (a multipart that never ends, a part without headers): show an
        // unnamed text part, else the raw body, rather than nothing.
        let unnamed_text = msg
            .attachments()
            .find(|a| a.is_text() && a.attachment_name().is_none())
            .and_then(|a| a.text_contents().map(str::to_string));
        let body = unnamed_text.unwrap_or_else(|| raw_body(bytes));
        if !body.trim().is_empty() {
            p.problems
                .push("no readable MIME body; the text found is shown as is".into());
            full = body;
        }
    }
    let full = full.replace("\r\n", "\n");
    let (full, cut) = truncate_chars(&full, MAX_TEXT_CHARS);
    if cut {
        p.problems.push(format!(
            "text longer than {MAX_TEXT_CHARS} characters; truncated"
        ));
    }
    p.text_new = trim_quoted(&full);
    p.text_full = full;
    if msg.html_body_count() > 0 {
        if let Some(part) = msg.html_part(0).filter(|part| part.is_text_html()) {
            if let Some(h) = part.text_contents() {
                p.html = Some(sanitize_html(h));
            }
        }
    }

    for part in msg.attachments() {
        p.attachment_count += 1;
        if p.attachments.len() >= MAX_ATTACHMENTS {
            continue;
        }
        let ct = part.content_type().map(|c| match c.subtype() {
            Some(s) => format!("{}/{}", c.ctype(), s),
            None => c.ctype().to_string(),
        });
        let kind = match ct.as_deref().and_then(|c| c.split('/').next()) {
            Some("image") => "image",
            Some("video") => "video",
            Some("audio") => "audio",
            _ if part.is_message() => "message",
            _ => "file",
        };
        p.attachments.push(Attachment {
            kind: Some(kind.to_string()),
            url: None,
            // The Content-ID, so an inline image (`cid:`) can be matched to its part.
            media_id: part.content_id().and_then(norm_id),
            name: part
                .attachment_name()
                .map(|n| n.chars().filter(|c| !c.is_control()).take(255).collect()),
            content_type: ct,
            size: Some(part.len() as u64),
        });
    }
    if p.attachment_count > p.attachments.len() {
        p.problems.push(format!(
            "{} attachments; the first {} are listed",
            p.attachment_count, MAX_ATTACHMENTS
        ));
    }
    Some(p)
}

/// The bytes of the `index`-th attachment (in the order `parse` lists them), decoded from
/// the message's transfer encoding.
pub fn attachment(bytes: &[u8], index: usize) -> Option<switchboard_core::AttachmentContent> {
    if index >= MAX_ATTACHMENTS {
        return None;
    }
    let msg = MessageParser::default().parse(bytes)?;
    let part = msg.attachments().nth(index)?;
    let content_type = part
        .content_type()
        .map(|c| match c.subtype() {
            Some(s) => format!("{}/{}", c.ctype(), s),
            None => c.ctype().to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".to_string());
    Some(switchboard_core::AttachmentContent {
        name: part
            .attachment_name()
            .map(|n| n.chars().filter(|c| !c.is_control()).take(255).collect()),
        content_type,
        bytes: part.contents().to_vec(),
    })
}

/// The dedupe id of a raw email: its normalised `Message-ID`, or `sha256:<hex>` of the bytes
/// when it has none (or one too long to be an id). The same message seen twice (another
/// mailbox, a UIDVALIDITY resync, a provider's retry) is stored once.
pub fn event_id(bytes: &[u8]) -> String {
    use sha2::Digest;
    MessageParser::default()
        .parse_headers(bytes)
        .and_then(|m| m.message_id().and_then(norm_id))
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_normalised_with_brackets_and_bounded() {
        assert_eq!(norm_id(" <a@b> ").as_deref(), Some("<a@b>"));
        assert_eq!(norm_id("a@b").as_deref(), Some("<a@b>"));
        assert_eq!(norm_id("<>"), None);
        assert_eq!(norm_id("a b@c"), None);
        assert_eq!(norm_id(&"x".repeat(600)), None);
        assert_eq!(
            ids_in("<a@x>\r\n <b@y> junk <c@z>"),
            vec!["<a@x>", "<b@y>", "<c@z>"]
        );
        assert_eq!(ids_in("a@x b@y"), vec!["<a@x>", "<b@y>"]);
    }

    #[test]
    fn long_reference_chains_keep_root_and_latest() {
        let v: Vec<String> = (0..200).map(|i| format!("<{i}@x>")).collect();
        let b = bound_refs(v);
        assert_eq!(b.len(), MAX_REFERENCES);
        assert_eq!(b[0], "<0@x>");
        assert_eq!(b.last().map(String::as_str), Some("<199@x>"));
    }

    #[test]
    fn trims_on_wrote_header_and_trailing_quotes() {
        let t = "Thanks, that works.\n\nOn Fri, 21 Nov 1997 at 10:01, Mary Smith <mary@example.net>\nwrote:\n> This is a reply\n> to your hello.\n";
        assert_eq!(trim_quoted(t), "Thanks, that works.");
        let t = "Yes please.\n\n> Do you want it?\n>\n> Bob\n";
        assert_eq!(trim_quoted(t), "Yes please.");
        let t = "Hi\n\n-----Original Message-----\nFrom: x\nSent: y\n\nold";
        assert_eq!(trim_quoted(t), "Hi");
        let t = "New text\n\nFrom: Support <s@x.com>\nSent: Monday\nTo: me\nold";
        assert_eq!(trim_quoted(t), "New text");
    }

    #[test]
    fn trimming_keeps_inline_answers_and_never_empties() {
        let t = "> question one\nanswer one\n> question two\nanswer two";
        assert_eq!(trim_quoted(t), t);
        let t = "> only a quote\n> nothing new";
        assert_eq!(trim_quoted(t), t);
        assert_eq!(trim_quoted(""), "");
    }

    #[test]
    fn noreply_senders_are_recognised() {
        for a in [
            "noreply@x.com",
            "no-reply@x.com",
            "do-not-reply@x.com",
            "DoNotReply@x.com",
            "mailer-daemon@x.com",
            "bounces+123@x.com",
        ] {
            assert!(is_noreply(a), "{a}");
        }
        for a in ["nora@x.com", "jane@x.com", "reply@x.com"] {
            assert!(!is_noreply(a), "{a}");
        }
    }

    #[test]
    fn address_headers_parse_with_encoded_names() {
        let m = parse_address_header("=?UTF-8?B?SsO8cmdlbg==?= <Juergen@Example.COM>").unwrap();
        assert_eq!(m.address, "juergen@example.com");
        assert_eq!(m.name.as_deref(), Some("Jürgen"));
        assert_eq!(parse_address_header("not an address"), None);
    }

    #[test]
    fn html_is_sanitised() {
        let h = sanitize_html(
            "<p onclick=\"x()\">Hi<script>alert(1)</script><a href=\"javascript:x\">l</a></p>",
        );
        assert!(
            !h.contains("script") && !h.contains("onclick") && !h.contains("javascript"),
            "{h}"
        );
        assert!(h.contains("<p>Hi"), "{h}");
    }
}

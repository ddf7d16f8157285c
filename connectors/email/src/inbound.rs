//! What the inbound-parse kinds (Mailgun, Postmark, SendGrid) share: form bodies
//! (`application/x-www-form-urlencoded` and `multipart/form-data`, the latter read with the
//! same MIME parser), HTTP Basic auth, a `ParsedMail` built from a provider's header list, and
//! the connector type itself.

use std::sync::Arc;

use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use switchboard_core::signature::ct_eq;
use switchboard_core::{
    Attachment, Connector, InboundRequest, Normalizer, Outbound, VerifyError, WebhookIngress,
};

use crate::config::BasicAuth;
use crate::mime::{self, ParsedMail};
use crate::send::SmtpSender;

/// Fields read from one form body at most.
const MAX_FIELDS: usize = 2000;

/// One form field: text fields have no filename; files keep their type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub value: Vec<u8>,
}

impl Field {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

pub fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

pub fn field_text(fields: &[Field], name: &str) -> Option<String> {
    field(fields, name)
        .map(Field::text)
        .filter(|s| !s.is_empty())
}

/// Reads a form body by its content type. Multipart bodies go through `mail-parser` (a
/// `multipart/form-data` body is MIME); field values are the exact bytes of each part.
pub fn parse_form(content_type: &str, body: &[u8]) -> Result<Vec<Field>, String> {
    let ct = content_type.trim().to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        return Ok(form_urlencoded::parse(body)
            .take(MAX_FIELDS)
            .map(|(k, v)| Field {
                name: k.into_owned(),
                filename: None,
                content_type: None,
                value: v.into_owned().into_bytes(),
            })
            .collect());
    }
    if !ct.starts_with("multipart/form-data") {
        return Err(format!(
            "unsupported content type `{}`",
            content_type.chars().take(100).collect::<String>()
        ));
    }
    let clean_ct = content_type.replace(['\r', '\n'], " ");
    let mut raw = Vec::with_capacity(body.len() + clean_ct.len() + 20);
    raw.extend_from_slice(b"Content-Type: ");
    raw.extend_from_slice(clean_ct.as_bytes());
    raw.extend_from_slice(b"\r\n\r\n");
    let offset = raw.len();
    raw.extend_from_slice(body);
    let msg = MessageParser::default()
        .parse(&raw)
        .ok_or_else(|| "unreadable multipart body".to_string())?;
    let mut out = Vec::new();
    for part in msg.parts.iter().skip(1).take(MAX_FIELDS) {
        if matches!(part.body, PartType::Multipart(_)) {
            continue;
        }
        let Some(disp) = part.content_disposition() else {
            continue;
        };
        let Some(name) = disp.attribute("name") else {
            continue;
        };
        let (start, end) = (part.offset_body as usize, part.offset_end as usize);
        let value = if part.encoding == mail_parser::Encoding::None
            && start >= offset
            && start <= end
            && end <= raw.len()
        {
            raw[start..end].to_vec()
        } else {
            part.contents().to_vec()
        };
        let value = strip_crlf(value);
        out.push(Field {
            name: name.to_string(),
            filename: disp.attribute("filename").map(str::to_string),
            content_type: part.content_type().map(|c| match c.subtype() {
                Some(s) => format!("{}/{}", c.ctype(), s),
                None => c.ctype().to_string(),
            }),
            value,
        });
    }
    Ok(out)
}

fn strip_crlf(mut v: Vec<u8>) -> Vec<u8> {
    if v.ends_with(b"\r\n") {
        v.truncate(v.len() - 2);
    } else if v.ends_with(b"\n") {
        v.truncate(v.len() - 1);
    }
    v
}

/// Checks `Authorization: Basic …` against the configured credentials in constant time.
pub fn check_basic(req: &InboundRequest<'_>, auth: &BasicAuth) -> Result<(), VerifyError> {
    let h = req
        .header("authorization")
        .ok_or(VerifyError::Missing("authorization"))?;
    let b64 = h
        .trim()
        .strip_prefix("Basic ")
        .or_else(|| h.trim().strip_prefix("basic "))
        .ok_or(VerifyError::Malformed("authorization"))?;
    let got = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| VerifyError::Malformed("authorization"))?;
    let want = format!("{}:{}", auth.user, auth.password.expose());
    if ct_eq(&got, want.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// A `ParsedMail` from a provider's list of header (name, value) pairs: the pairs become a
/// header block for the MIME parser, so encoded words, ids and dates are read one way only.
pub fn mail_from_headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> ParsedMail {
    let mut block = String::new();
    for (name, value) in pairs.take(500) {
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != ':')
            .collect();
        if name.is_empty() {
            continue;
        }
        block.push_str(&name);
        block.push_str(": ");
        block.push_str(&value.replace(['\r', '\n'], " "));
        block.push_str("\r\n");
    }
    block.push_str("\r\n");
    mime::parse(block.as_bytes()).unwrap_or_default()
}

/// Sets the text fields of a provider-parsed mail: the full text, the provider's stripped reply
/// when it gives one (else our own trimming), and sanitised HTML.
pub fn set_bodies(
    m: &mut ParsedMail,
    text: Option<String>,
    stripped: Option<String>,
    html: Option<String>,
) {
    let text = text.map(|t| t.replace("\r\n", "\n"));
    let full = match (&text, &html) {
        (Some(t), _) if !t.trim().is_empty() => t.clone(),
        (_, Some(h)) => {
            mime::parse(format!("Content-Type: text/html; charset=utf-8\r\n\r\n{h}").as_bytes())
                .map(|p| p.text_full)
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    let (full, _) = truncate(&full, mime::MAX_TEXT_CHARS);
    m.text_new = stripped
        .map(|s| s.replace("\r\n", "\n").trim_end().to_string())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| mime::trim_quoted(&full));
    m.text_full = full;
    m.html = html
        .filter(|h| !h.trim().is_empty())
        .map(|h| mime::sanitize_html(&h));
}

fn truncate(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (s[..i].to_string(), true),
        None => (s.to_string(), false),
    }
}

pub fn attachment(
    name: Option<String>,
    content_type: Option<String>,
    size: Option<u64>,
    content_id: Option<&str>,
) -> Attachment {
    let kind = match content_type.as_deref().and_then(|c| c.split('/').next()) {
        Some("image") => "image",
        Some("video") => "video",
        Some("audio") => "audio",
        _ => "file",
    };
    Attachment {
        kind: Some(kind.into()),
        url: None,
        media_id: content_id.and_then(mime::norm_id),
        name,
        content_type,
        size,
    }
}

/// Adds attachments, bounded, noting how many were not listed.
pub fn push_attachments(m: &mut ParsedMail, all: Vec<Attachment>) {
    m.attachment_count = all.len();
    if all.len() > mime::MAX_ATTACHMENTS {
        m.problems.push(format!(
            "{} attachments; the first {} are listed",
            all.len(),
            mime::MAX_ATTACHMENTS
        ));
    }
    m.attachments = all.into_iter().take(mime::MAX_ATTACHMENTS).collect();
}

/// The dedupe id of an inbound-parse delivery: the mail's Message-ID, else a hash of what
/// identifies the mail (not the delivery: a provider's retry carries a new token).
pub fn event_id(message_id: Option<&str>, identifying: &[&[u8]]) -> String {
    use sha2::Digest;
    if let Some(id) = message_id.and_then(mime::norm_id) {
        return id;
    }
    let mut h = sha2::Sha256::new();
    for p in identifying {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// A built inbound-parse connector.
pub struct InboundConnector {
    pub kind: &'static str,
    pub webhook: Box<dyn WebhookIngress>,
    pub normalizer: Box<dyn Normalizer>,
    pub outbound: Option<Arc<SmtpSender>>,
}

impl Connector for InboundConnector {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn normalizer(&self) -> &dyn Normalizer {
        self.normalizer.as_ref()
    }
    fn webhook(&self) -> Option<&dyn WebhookIngress> {
        Some(self.webhook.as_ref())
    }
    fn outbound(&self) -> Option<&dyn Outbound> {
        self.outbound.as_deref().map(|o| o as &dyn Outbound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_form_fields_keep_exact_bytes_and_files() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nK\u{e4}se bitte\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nFrom: a@b.c\r\nSubject: x\r\n\r\nbody\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\r\n\
                    --XyZ--\r\n";
        let f = parse_form("multipart/form-data; boundary=XyZ", body.as_bytes()).unwrap();
        assert_eq!(field_text(&f, "subject").as_deref(), Some("Käse bitte"));
        assert_eq!(
            field(&f, "email").unwrap().value,
            b"From: a@b.c\r\nSubject: x\r\n\r\nbody"
        );
        let a = field(&f, "attachment1").unwrap();
        assert_eq!(a.filename.as_deref(), Some("a.pdf"));
        assert_eq!(a.content_type.as_deref(), Some("application/pdf"));
        assert_eq!(a.value, b"%PDF-1.4");
    }

    #[test]
    fn urlencoded_forms_and_unknown_types() {
        let f = parse_form("application/x-www-form-urlencoded", b"a=1&b=K%C3%A4se").unwrap();
        assert_eq!(field_text(&f, "b").as_deref(), Some("Käse"));
        assert!(parse_form("application/json", b"{}").is_err());
    }

    #[test]
    fn headers_list_becomes_a_parsed_mail() {
        let m = mail_from_headers(
            [
                ("From", "=?UTF-8?Q?J=C3=BCrgen?= <J@Example.de>"),
                ("Message-ID", "<x@y>"),
                ("In-Reply-To", "<p@y>"),
                ("References", "<r@y> <p@y>"),
                ("Subject", "Re: Käse"),
                ("Date", "Mon, 03 Mar 2025 10:00:00 +0000"),
                ("Evil\r\nBcc", "x\r\nBcc: z@z"),
            ]
            .into_iter(),
        );
        assert_eq!(m.message_id.as_deref(), Some("<x@y>"));
        assert_eq!(m.references, vec!["<r@y>", "<p@y>"]);
        assert_eq!(m.from.as_ref().unwrap().address, "j@example.de");
        assert_eq!(m.subject, "Re: Käse");
        assert_eq!(m.date_ms, Some(1_740_996_000_000));
    }
}

//! The MIME normaliser on fixtures: RFC 5322 Appendix A.2's thread, encoded words and
//! charsets, quoted-reply trimming, attachments, identities, and bad input.

use bytes::Bytes;
use switchboard_core::{
    ClaimKind, Direction, EventBody, IdentityClaim, NormalizedEvent, Normalizer, StoredEvent,
};
use switchboard_email::config::NormalizeSettings;
use switchboard_email::mime;
use switchboard_email::normalize::{parse_thread_key, EmailNormalizer, NOREPLY_SCOPE};

const RECEIVED: i64 = 1_800_000_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/email/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn normalizer() -> EmailNormalizer {
    EmailNormalizer {
        s: NormalizeSettings {
            connector_id: "mail".into(),
            own_addresses: vec!["support@shop.example".into()],
            subject_window_secs: 14 * 86_400,
        },
    }
}

fn stored(bytes: Vec<u8>, headers: Vec<(String, String)>) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "mail".into(),
        provider_event_id: mime::event_id(&bytes),
        kind: "message".into(),
        occurred_at: None,
        received_at: RECEIVED,
        headers,
        payload: Bytes::from(bytes),
    }
}

fn one(name: &str) -> NormalizedEvent {
    let mut v = normalizer()
        .normalize(&stored(fixture(name), Vec::new()))
        .expect("normalize");
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

fn text_of(e: &NormalizedEvent) -> &str {
    match &e.body {
        EventBody::Message { text, .. } => text,
        other => panic!("not a message: {other:?}"),
    }
}

#[test]
fn rfc5322_a2_thread_shares_one_thread_key_and_chains_refs() {
    let m1 = one("a2_1_hello.eml");
    let m2 = one("a2_2_reply.eml");
    let m3 = one("a2_3_reply.eml");
    // Every message's root is 1234, so each conversation key names it.
    for m in [&m1, &m2, &m3] {
        let t = parse_thread_key(m.thread_key.as_deref().unwrap()).unwrap();
        assert_eq!(t.root.as_deref(), Some("<1234@local.machine.example>"));
        assert_eq!(t.subject, "Saying Hello");
    }
    assert_eq!(m1.occurred_at, 880_127_706_000);
    assert_eq!(m2.occurred_at, 880_128_070_000);
    assert_eq!(m3.occurred_at, 880_131_600_000);
    assert!(m2
        .thread_refs
        .contains(&"<1234@local.machine.example>".to_string()));
    assert!(m3
        .thread_refs
        .starts_with(&["<3456@example.net>".to_string()]));
    assert!(m3
        .thread_refs
        .contains(&"<abcd.1234@local.machine.test>".to_string()));
    match &m3.body {
        EventBody::Message {
            message_id,
            reply_to,
            text,
            ..
        } => {
            assert_eq!(
                message_id.as_deref(),
                Some("<abcd.1234@local.machine.test>")
            );
            assert_eq!(reply_to.as_deref(), Some("<3456@example.net>"));
            assert_eq!(text, "This is a reply to your reply.");
        }
        other => panic!("{other:?}"),
    }
    // Mary wrote from one address with a Reply-To of another: both are hers; replies go to
    // the Reply-To.
    assert!(m2
        .claims
        .contains(&IdentityClaim::email("mary@example.net")));
    assert!(m2
        .claims
        .contains(&IdentityClaim::email("smith@home.example")));
    assert!(m2.claims.contains(&IdentityClaim::name("Mary Smith")));
    assert_eq!(
        parse_thread_key(m2.thread_key.as_deref().unwrap())
            .unwrap()
            .to,
        "smith@home.example"
    );
    assert!(m1
        .thread_refs
        .iter()
        .any(|r| r == "window:1209600:subject:jdoe@machine.example:saying hello"));
}

#[test]
fn multipart_with_encoded_words_charsets_quote_html_and_attachments() {
    let e = one("multipart_quoted.eml");
    assert_eq!(e.direction, Direction::Inbound);
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::email("juergen@example.de"),
            IdentityClaim::name("Jürgen Müller")
        ]
    );
    assert_eq!(
        parse_thread_key(e.thread_key.as_deref().unwrap())
            .unwrap()
            .subject,
        "Bestellung für Käse"
    );
    let EventBody::Message {
        text,
        attachments,
        reply_to,
        ..
    } = &e.body
    else {
        panic!()
    };
    assert_eq!(text, "Ja, bitte schicken Sie den Käse.");
    assert_eq!(reply_to.as_deref(), Some("<our-1@shop.example>"));
    let pdf = attachments
        .iter()
        .find(|a| a.name.as_deref() == Some("rechnung.pdf"))
        .expect("pdf listed");
    assert_eq!(pdf.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(pdf.kind.as_deref(), Some("file"));
    assert_eq!(pdf.size, Some(15));
    let logo = attachments
        .iter()
        .find(|a| a.name.as_deref() == Some("logo.png"))
        .expect("inline image listed");
    assert_eq!(logo.media_id.as_deref(), Some("<logo@shop>"));
    assert_eq!(logo.kind.as_deref(), Some("image"));
    // The sanitised HTML and the untrimmed text ride along as data: attachments.
    let html = attachments
        .iter()
        .find(|a| a.kind.as_deref() == Some("html_body"))
        .expect("html body");
    let decoded = decode_data_url(html.url.as_deref().unwrap());
    assert!(
        decoded.contains("Käse") && !decoded.contains("script") && !decoded.contains("onclick"),
        "{decoded}"
    );
    let full = attachments
        .iter()
        .find(|a| a.kind.as_deref() == Some("full_text"))
        .expect("full text");
    assert!(
        decode_data_url(full.url.as_deref().unwrap()).contains("> Sollen wir den Käse schicken?")
    );
}

fn decode_data_url(u: &str) -> String {
    use base64::Engine;
    let b64 = u
        .split_once(";base64,")
        .map(|(_, b)| b)
        .expect("base64 data url");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("b64"),
    )
    .expect("utf8")
}

#[test]
fn missing_message_id_gets_a_content_hash_id_and_no_message_id() {
    let bytes = fixture("no_message_id.eml");
    let id = mime::event_id(&bytes);
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(
        mime::event_id(&fixture("a2_1_hello.eml")),
        "<1234@local.machine.example>"
    );
    let e = one("no_message_id.eml");
    let EventBody::Message {
        message_id, text, ..
    } = &e.body
    else {
        panic!()
    };
    assert_eq!(message_id, &None);
    assert_eq!(text, "Hello without an id.");
}

#[test]
fn noreply_sender_with_reply_to_is_the_reply_to_customer() {
    let e = one("noreply_with_reply_to.eml");
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::email("ada@example.com"),
            IdentityClaim::name("Ada Lovelace")
        ]
    );
    assert_eq!(
        parse_thread_key(e.thread_key.as_deref().unwrap())
            .unwrap()
            .to,
        "ada@example.com"
    );
}

#[test]
fn noreply_sender_alone_gets_a_scoped_claim_marked_automated() {
    let e = one("noreply_only.eml");
    assert!(
        !e.claims.iter().any(|c| c.kind == ClaimKind::Email),
        "{:?}",
        e.claims
    );
    assert!(e.claims.contains(&IdentityClaim::platform_id(
        NOREPLY_SCOPE,
        "noreply@carrier.example"
    )));
    assert!(e.claims.contains(&IdentityClaim::name(
        "Carrier Notifications (automated sender)"
    )));
}

#[test]
fn mail_from_our_own_address_is_outbound_to_the_recipient() {
    let e = one("own_sent.eml");
    assert_eq!(e.direction, Direction::Outbound);
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::email("bob@example.com"),
            IdentityClaim::name("Bob Customer")
        ]
    );
    assert!(!e
        .claims
        .iter()
        .any(|c| c.value.contains("support@shop.example")));
}

#[test]
fn eight_bit_headers_and_unknown_charset_still_give_a_message() {
    let e = one("eight_bit_headers.eml");
    assert!(e.claims.contains(&IdentityClaim::email("renee@example.fr")));
    assert!(text_of(&e).contains("body"), "{}", text_of(&e));
}

#[test]
fn malformed_mime_gives_a_visible_message() {
    let e = one("malformed_mime.eml");
    assert!(text_of(&e).contains("truncated part"), "{}", text_of(&e));
}

#[test]
fn five_hundred_attachments_are_bounded_and_counted_visibly() {
    let e = one("five_hundred_attachments.eml");
    let EventBody::Message {
        text, attachments, ..
    } = &e.body
    else {
        panic!()
    };
    assert_eq!(attachments.len(), mime::MAX_ATTACHMENTS);
    assert!(text.starts_with("See attached."), "{text}");
    assert!(
        text.contains("500 attachments; the first 100 are listed"),
        "{text}"
    );
}

#[test]
fn garbage_and_empty_input_never_panic_and_are_visible() {
    let n = normalizer();
    for bytes in [
        Vec::new(),
        b"\0\0\0".to_vec(),
        vec![0xff; 4096],
        b"no headers at all".to_vec(),
        b"From:\r\n\r\n".to_vec(),
    ] {
        let v = n
            .normalize(&stored(bytes.clone(), Vec::new()))
            .expect("normalize");
        assert_eq!(v.len(), 1, "{bytes:?} gave {v:?}");
        assert!(matches!(
            v[0].body,
            EventBody::Unsupported { .. } | EventBody::Message { .. }
        ));
        if let EventBody::Unsupported { reason } = &v[0].body {
            assert!(!reason.is_empty());
        }
    }
}

#[test]
fn headers_only_event_is_flagged_as_truncated() {
    let bytes = fixture("a2_1_hello.eml");
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let e = normalizer()
        .normalize(&stored(
            bytes[..end].to_vec(),
            vec![("x-sb-truncated".into(), "99999999".into())],
        ))
        .unwrap()
        .remove(0);
    assert!(
        text_of(&e).contains("99999999 bytes, larger than max_message_bytes"),
        "{}",
        text_of(&e)
    );
    assert_eq!(e.thread_refs[0], "<1234@local.machine.example>");
}

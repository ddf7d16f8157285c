//! The Meta connectors (messenger, instagram, whatsapp) driven through the SDK traits: config
//! validation, signature and handshake, batch splitting, fixture normalisation, and sends
//! against the fake provider.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::{json, Value};
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    Attachment, ClaimKind, Connector, ConnectorError, Direction, EventBody, IdentityClaim,
    InboundRequest, Ingress, IngressError, NormalizedEvent, OutboundMessage, RawEvent, StoredEvent,
    VerifyError,
};
use switchboard_social::meta;

const SECRET: &str = "app-secret-1";
const VERIFY: &str = "verify-me-42";

fn no_env(_: &str) -> Option<String> {
    None
}

fn config(kind: &str, api_base: &str) -> String {
    let (account, token) = match kind {
        "messenger" => ("page_id = \"106540352242922\"", "page_access_token"),
        "instagram" => ("account_id = \"17841405822304914\"", "access_token"),
        _ => ("phone_number_id = \"106540352242922\"", "access_token"),
    };
    format!(
        "id = \"{kind}1\"\nkind = \"{kind}\"\napp_secret = \"{SECRET}\"\nverify_token = \"{VERIFY}\"\n{account}\n{token} = \"tok-{kind}\"\napi_base = \"{api_base}\"\n"
    )
}

fn build(kind: &str, api_base: &str) -> meta::Meta {
    build_from(kind, &config(kind, api_base)).expect("valid config")
}

fn build_from(kind: &str, cfg: &str) -> Result<meta::Meta, switchboard_core::ConfigError> {
    let k = meta::Kind::parse(kind).expect("kind");
    meta::build(
        k,
        "c1",
        "connectors[1]",
        toml::from_str(cfg).expect("toml"),
        &no_env,
    )
}

fn request(
    c: &meta::Meta,
    method: Method,
    uri: &str,
    body: &[u8],
    sig: Option<&str>,
) -> Result<Ingress, String> {
    let mut headers = HeaderMap::new();
    if let Some(s) = sig {
        headers.insert("x-hub-signature-256", HeaderValue::from_str(s).unwrap());
    }
    let uri: Uri = uri.parse().unwrap();
    let body = Bytes::copy_from_slice(body);
    let req = InboundRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
        now: 1_700_000_000,
    };
    let hook = c.webhook().expect("webhook");
    let v = hook.verify(&req).map_err(|e| format!("verify: {e:?}"))?;
    hook.parse(v).map_err(|e| format!("parse: {e:?}"))
}

fn post(c: &meta::Meta, body: &[u8]) -> Vec<RawEvent> {
    match request(
        c,
        Method::POST,
        "/webhooks/c1",
        body,
        Some(&meta::sign(SECRET, body)),
    ) {
        Ok(Ingress::Events(e)) => e,
        other => panic!("expected events, got {other:?}"),
    }
}

fn stored(raw: &RawEvent) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "c1".into(),
        provider_event_id: raw.provider_event_id.clone(),
        kind: raw.kind.clone(),
        occurred_at: raw.occurred_at,
        received_at: 1_800_000_000_000,
        headers: raw.headers.clone(),
        payload: raw.payload.clone(),
    }
}

/// Fixture in, every normalised event out (in raw event order).
fn normalize_fixture(kind: &str, name: &str) -> (Vec<RawEvent>, Vec<NormalizedEvent>) {
    let c = build(kind, "http://127.0.0.1:9");
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "meta", name);
    let raws = post(&c, &body);
    let mut out = Vec::new();
    for r in &raws {
        out.extend(c.normalizer().normalize(&stored(r)).expect("normalize"));
    }
    (raws, out)
}

// ---------------------------------------------------------------- config

#[test]
fn config_errors_name_the_exact_key() {
    let e = build_from(
        "messenger",
        "kind = \"messenger\"\nverify_token = \"v\"\npage_id = \"1\"\npage_access_token = \"t\"",
    )
    .err()
    .expect("missing app_secret");
    assert_eq!(e.key, "connectors[1].app_secret");
    let e = build_from(
        "whatsapp",
        &format!("{}\nphone_number = \"1\"", config("whatsapp", "http://x")),
    )
    .err()
    .expect("unknown key");
    assert!(
        e.to_string().contains("unknown field `phone_number`"),
        "{e}"
    );
    let e = build_from(
        "instagram",
        &config("instagram", "http://x").replace("17841405822304914", "12/../34"),
    )
    .err()
    .expect("bad id");
    assert_eq!(e.key, "connectors[1].account_id");
    let e = build_from("messenger", &config("messenger", "ftp://x"))
        .err()
        .expect("bad base");
    assert_eq!(e.key, "connectors[1].api_base");
}

#[test]
fn secrets_may_come_from_env_and_api_base_defaults_to_the_graph_api() {
    let env = |k: &str| match k {
        "APP" => Some("s".to_string()),
        "VT" => Some("v".to_string()),
        "TOK" => Some("t".to_string()),
        _ => None,
    };
    let cfg = "id = \"w\"\nkind = \"whatsapp\"\napp_secret_env = \"APP\"\nverify_token_env = \"VT\"\nphone_number_id = \"1\"\naccess_token_env = \"TOK\"";
    let c = meta::build(
        meta::Kind::Whatsapp,
        "w",
        "connectors[0]",
        toml::from_str(cfg).unwrap(),
        &env,
    );
    assert!(c.is_ok());
    let s = meta::Settings::from_table(
        meta::Kind::Instagram,
        "i",
        "connectors[0]",
        toml::from_str(&cfg.replace("phone_number_id", "account_id")).unwrap(),
        &env,
    )
    .expect("instagram settings");
    assert_eq!(s.api_base, "https://graph.instagram.com/v21.0");
    let e = meta::Settings::from_table(
        meta::Kind::Whatsapp,
        "w",
        "connectors[0]",
        toml::from_str(&cfg.replace("\"TOK\"", "\"UNSET\"")).unwrap(),
        &env,
    )
    .expect_err("unset env");
    assert_eq!(e.key, "connectors[0].access_token_env");
    assert!(!format!("{s:?}").contains("\"s\""), "secrets are redacted");
}

// ---------------------------------------------------------------- verify

#[test]
fn signature_missing_malformed_tampered_or_under_another_secret_is_refused() {
    let c = build("messenger", "http://127.0.0.1:9");
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "meta", "messenger_text.json");
    let good = meta::sign(SECRET, &body);
    assert!(request(&c, Method::POST, "/w", &body, Some(&good)).is_ok());
    let missing = request(&c, Method::POST, "/w", &body, None).unwrap_err();
    assert!(missing.contains("Missing"), "{missing}");
    let no_prefix = good.trim_start_matches("sha256=").to_string();
    let e = request(&c, Method::POST, "/w", &body, Some(&no_prefix)).unwrap_err();
    assert!(e.contains("Malformed"), "{e}");
    let e = request(&c, Method::POST, "/w", &body, Some("sha256=zz")).unwrap_err();
    assert!(e.contains("Malformed"), "{e}");
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'h').unwrap();
    tampered[at] = b'H';
    let e = request(&c, Method::POST, "/w", &tampered, Some(&good)).unwrap_err();
    assert!(e.contains("Mismatch"), "{e}");
    let other = meta::sign("another-secret", &body);
    let e = request(&c, Method::POST, "/w", &body, Some(&other)).unwrap_err();
    assert!(e.contains("Mismatch"), "{e}");
}

#[test]
fn signature_over_the_unicode_escaped_body_is_accepted_and_its_decoded_form_refused() {
    let c = build("messenger", "http://127.0.0.1:9");
    let escaped = fixture(
        env!("CARGO_MANIFEST_DIR"),
        "meta",
        "messenger_unicode_escaped.json",
    );
    assert!(std::str::from_utf8(&escaped)
        .unwrap()
        .contains(r"\u00e4\u00f6\u00e5"));
    let sig = meta::sign(SECRET, &escaped);
    let events = post(&c, &escaped);
    assert_eq!(events.len(), 1);
    // The same JSON with the characters as raw UTF-8: equal as JSON, different bytes.
    let decoded = String::from_utf8(escaped.clone())
        .unwrap()
        .replace(r"\u00e4\u00f6\u00e5", "äöå");
    assert_eq!(
        serde_json::from_slice::<Value>(&escaped).unwrap(),
        serde_json::from_str::<Value>(&decoded).unwrap()
    );
    let e = request(&c, Method::POST, "/w", decoded.as_bytes(), Some(&sig)).unwrap_err();
    assert!(e.contains("Mismatch"), "{e}");
    // The stored event keeps the escaped bytes; the normaliser decodes them.
    let n = c.normalizer().normalize(&stored(&events[0])).unwrap();
    assert!(matches!(&n[0].body, EventBody::Message { text, .. } if text == "äöå"));
}

#[test]
fn handshake_with_the_right_token_answers_the_challenge_and_a_wrong_one_is_forbidden() {
    for kind in ["messenger", "instagram", "whatsapp"] {
        let c = build(kind, "http://127.0.0.1:9");
        let ok = request(
            &c,
            Method::GET,
            &format!("/webhooks/c1?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY}"),
            b"",
            None,
        )
        .unwrap();
        match ok {
            Ingress::Reply(r) => {
                assert_eq!(r.status, 200);
                assert_eq!(r.content_type, "text/plain");
                assert_eq!(&r.body[..], b"1158201444");
            }
            other => panic!("{other:?}"),
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-any", HeaderValue::from_static("1"));
        for uri in [
            "/w?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope",
            "/w?hub.mode=subscribe&hub.challenge=1",
            "/w?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-me-42",
        ] {
            let uri: Uri = uri.parse().unwrap();
            let body = Bytes::new();
            let req = InboundRequest {
                method: &Method::GET,
                uri: &uri,
                headers: &headers,
                body: &body,
                now: 0,
            };
            let e = c.webhook().unwrap().verify(&req).unwrap_err();
            assert!(matches!(e, VerifyError::Forbidden(_)), "{uri}: {e:?}");
        }
        let e = request(&c, Method::PUT, "/w", b"{}", None).unwrap_err();
        assert!(e.contains("MethodNotAllowed"), "{e}");
    }
}

#[test]
fn handshake_token_is_percent_decoded_and_a_non_numeric_challenge_is_not_echoed() {
    let cfg = config("messenger", "http://x").replace(VERIFY, "a b&c");
    let c = build_from("messenger", &cfg).unwrap();
    let ok = request(
        &c,
        Method::GET,
        "/w?hub.mode=subscribe&hub.challenge=77&hub.verify_token=a+b%26c",
        b"",
        None,
    );
    assert!(matches!(ok, Ok(Ingress::Reply(_))), "{ok:?}");
    let bad = request(
        &c,
        Method::GET,
        "/w?hub.mode=subscribe&hub.challenge=%3Cscript%3E&hub.verify_token=a+b%26c",
        b"",
        None,
    )
    .unwrap_err();
    assert!(bad.contains("parse"), "{bad}");
}

#[test]
fn a_delivery_for_another_product_is_refused_by_its_object() {
    let c = build("whatsapp", "http://127.0.0.1:9");
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "meta", "messenger_text.json");
    let e = request(
        &c,
        Method::POST,
        "/w",
        &body,
        Some(&meta::sign(SECRET, &body)),
    )
    .unwrap_err();
    assert!(e.contains("object `page`"), "{e}");
    let c = build("whatsapp", "http://127.0.0.1:9");
    let hook = c.webhook().unwrap();
    let body = Bytes::from_static(b"{\"entry\":[]}");
    let headers = {
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            HeaderValue::from_str(&meta::sign(SECRET, &body)).unwrap(),
        );
        h
    };
    let uri: Uri = "/w".parse().unwrap();
    let req = InboundRequest {
        method: &Method::POST,
        uri: &uri,
        headers: &headers,
        body: &body,
        now: 0,
    };
    let v = hook.verify(&req).unwrap();
    assert!(matches!(hook.parse(v), Err(IngressError::MissingField(f)) if f == "object"));
}

// ---------------------------------------------------------------- split

#[test]
fn a_batch_of_three_entries_with_two_messages_each_is_six_raw_events_with_exact_bytes() {
    let c = build("messenger", "http://127.0.0.1:9");
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "meta", "messenger_batch.json");
    let events = post(&c, &body);
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.provider_event_id.as_str())
        .collect();
    assert_eq!(ids, ["m_b_1", "m_b_2", "m_b_3", "m_b_4", "m_b_6", "m_b_5"]);
    let text = std::str::from_utf8(&body).unwrap();
    for e in &events {
        let slice = std::str::from_utf8(&e.payload).unwrap();
        assert!(text.contains(slice), "payload is a slice of the body");
        let v: Value = serde_json::from_str(slice).unwrap();
        assert_eq!(v["message"]["mid"], e.provider_event_id.as_str());
        assert_eq!(e.occurred_at, v["timestamp"].as_i64());
        assert_eq!(e.kind, "message");
    }
}

#[test]
fn whatsapp_statuses_are_one_event_per_message_and_status() {
    let c = build("whatsapp", "http://127.0.0.1:9");
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "meta", "whatsapp_statuses.json");
    let events = post(&c, &body);
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e.provider_event_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "wamid.OURS1:sent",
            "wamid.OURS1:delivered",
            "wamid.OURS1:read",
            "wamid.OURS2:failed"
        ]
    );
    assert_eq!(events[0].occurred_at, Some(1_749_416_500_000));
}

// ---------------------------------------------------------------- normalise

#[test]
fn messenger_text_fixture_is_an_inbound_message_from_the_psid_scoped_to_the_page() {
    let (raws, n) = normalize_fixture("messenger", "messenger_text.json");
    assert_eq!(
        raws[0].provider_event_id,
        "mid.1457764197618:41d102a3e1ae206a38"
    );
    assert_eq!(n.len(), 1);
    let e = &n[0];
    assert_eq!(e.channel, "messenger");
    assert_eq!(e.direction, Direction::Inbound);
    assert_eq!(e.thread_key.as_deref(), Some("6783145918422001"));
    assert_eq!(e.occurred_at, 1_458_692_752_478);
    assert_eq!(
        e.claims,
        vec![IdentityClaim::platform_id(
            "messenger:106540352242922",
            "6783145918422001"
        )]
    );
    assert_eq!(
        e.body,
        EventBody::Message {
            message_id: Some("mid.1457764197618:41d102a3e1ae206a38".into()),
            text: "hello, world!".into(),
            attachments: vec![],
            reply_to: None,
        }
    );
}

#[test]
fn messenger_attachment_fixture_keeps_each_attachment_type_and_url() {
    let (_, n) = normalize_fixture("messenger", "messenger_attachment.json");
    match &n[0].body {
        EventBody::Message {
            text, attachments, ..
        } => {
            assert_eq!(text, "");
            assert_eq!(
                attachments,
                &vec![
                    Attachment {
                        kind: Some("image".into()),
                        url: Some("https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg".into()),
                        ..Attachment::default()
                    },
                    Attachment {
                        kind: Some("file".into()),
                        url: Some("https://cdn.fbsbx.com/v/t59.2708-21/invoice.pdf".into()),
                        ..Attachment::default()
                    }
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn messenger_reply_to_fixture_names_the_quoted_message() {
    let (_, n) = normalize_fixture("messenger", "messenger_reply.json");
    assert!(
        matches!(&n[0].body, EventBody::Message { reply_to: Some(r), .. } if r == "m_original_1")
    );
}

#[test]
fn a_tagged_echo_is_a_sent_status_and_an_untagged_echo_an_outbound_message() {
    let (_, n) = normalize_fixture("messenger", "messenger_echo_tagged.json");
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0].body,
        EventBody::Status {
            message_id: "m_echo_ours".into(),
            status: "sent".into(),
            reason: None
        }
    );
    let (raws, n) = normalize_fixture("messenger", "messenger_echo_untagged.json");
    assert_eq!(raws[0].kind, "echo");
    assert_eq!(n[0].direction, Direction::Outbound);
    assert_eq!(n[0].thread_key.as_deref(), Some("6783145918422001"));
    assert_eq!(n[0].claims[0].scope, "messenger:106540352242922");
    assert!(
        matches!(&n[0].body, EventBody::Message { message_id: Some(m), .. } if m == "m_echo_page_inbox")
    );
}

#[test]
fn a_delivery_with_mids_becomes_delivered_statuses_and_a_read_watermark_is_kept_raw_only() {
    let (raws, n) = normalize_fixture("messenger", "messenger_delivery_read.json");
    assert_eq!(raws.len(), 2);
    assert_eq!(raws[0].kind, "delivery");
    assert_eq!(raws[1].kind, "read");
    assert_eq!(
        n,
        vec![NormalizedEvent {
            channel: "messenger".into(),
            direction: Direction::Outbound,
            thread_key: Some("6783145918422001".into()),
            claims: vec![],
            occurred_at: 1_700_000_003_900,
            body: EventBody::Status {
                message_id: "m_sent_by_us_1".into(),
                status: "delivered".into(),
                reason: None
            },
            thread_refs: Vec::new(),
        }]
    );
}

#[test]
fn instagram_text_reply_and_unsupported_fixture() {
    let (_, n) = normalize_fixture("instagram", "instagram_text.json");
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].channel, "instagram");
    assert_eq!(
        n[0].claims,
        vec![IdentityClaim::platform_id(
            "instagram:17841405822304914",
            "1134567890123456"
        )]
    );
    assert!(
        matches!(&n[0].body, EventBody::Message { text, reply_to: Some(r), .. }
        if text == "is this still available?" && r == "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1ODIyMzA0OTAw")
    );
    assert!(
        matches!(&n[1].body, EventBody::Unsupported { reason } if reason.contains("instagram"))
    );
}

#[test]
fn instagram_deleted_fixture_is_a_delete_of_that_message_with_its_own_event_id() {
    let (raws, n) = normalize_fixture("instagram", "instagram_deleted.json");
    assert_eq!(
        raws[0].provider_event_id,
        "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1ODIyMzA0OTE0:deleted"
    );
    assert_eq!(
        n[0].body,
        EventBody::Delete {
            message_id: "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1ODIyMzA0OTE0".into()
        }
    );
}

#[test]
fn whatsapp_text_fixture_claims_the_phone_and_profile_name_with_seconds_as_ms() {
    let (raws, n) = normalize_fixture("whatsapp", "whatsapp_text.json");
    assert_eq!(
        raws[0].provider_event_id,
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    );
    let e = &n[0];
    assert_eq!(e.channel, "whatsapp");
    assert_eq!(e.thread_key.as_deref(), Some("16505551234"));
    assert_eq!(e.occurred_at, 1_749_416_383_000);
    assert!(e.claims.contains(&IdentityClaim::phone("+16505551234")));
    assert!(e.claims.contains(&IdentityClaim::name("Sheena Nelson")));
    assert!(
        matches!(&e.body, EventBody::Message { text, .. } if text == "Does it come in another color?")
    );
}

#[test]
fn whatsapp_media_context_and_unsupported_fixture() {
    let (raws, n) = normalize_fixture("whatsapp", "whatsapp_media_reply.json");
    assert_eq!(raws.len(), 4);
    match &n[0].body {
        EventBody::Message {
            text, attachments, ..
        } => {
            assert_eq!(text, "this one");
            assert_eq!(attachments[0].kind.as_deref(), Some("image"));
            assert_eq!(attachments[0].media_id.as_deref(), Some("1003383421387256"));
            assert_eq!(attachments[0].content_type.as_deref(), Some("image/jpeg"));
        }
        other => panic!("{other:?}"),
    }
    match &n[1].body {
        EventBody::Message { attachments, .. } => {
            assert_eq!(attachments[0].kind.as_deref(), Some("document"));
            assert_eq!(attachments[0].name.as_deref(), Some("receipt.pdf"));
            assert_eq!(
                attachments[0].content_type.as_deref(),
                Some("application/pdf")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&n[2].body, EventBody::Message { reply_to: Some(r), .. } if r == "wamid.OURS1")
    );
    assert!(
        matches!(&n[3].body, EventBody::Unsupported { reason } if reason.contains("Message type is currently not supported")),
        "{:?}",
        n[3].body
    );
    assert!(n
        .iter()
        .all(|e| e.claims.iter().any(|c| c.kind == ClaimKind::Phone)));
}

#[test]
fn whatsapp_statuses_fixture_moves_our_message_and_a_failure_carries_its_reason() {
    let (_, n) = normalize_fixture("whatsapp", "whatsapp_statuses.json");
    let got: Vec<(String, String, Option<String>)> = n
        .iter()
        .map(|e| match &e.body {
            EventBody::Status {
                message_id,
                status,
                reason,
            } => (message_id.clone(), status.clone(), reason.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got[0], ("wamid.OURS1".into(), "sent".into(), None));
    assert_eq!(got[1].1, "delivered");
    assert_eq!(got[2].1, "read");
    assert_eq!(got[3].0, "wamid.OURS2");
    assert_eq!(got[3].1, "failed");
    let reason = got[3].2.as_deref().unwrap();
    assert!(
        reason.starts_with(
            "Re-engagement message: Message failed to send because more than 24 hours"
        ),
        "{reason}"
    );
    assert!(reason.ends_with("(131047)"), "{reason}");
}

#[test]
fn junk_items_become_unsupported_entries_never_panics() {
    let c = build("messenger", "http://127.0.0.1:9");
    let body = br#"{"object":"page","entry":[{"id":"1","time":5,"messaging":[{"sender":{"id":"9"},"recipient":{"id":"1"},"timestamp":"x","optin":{"ref":"r"}},{"recipient":{"id":"1"},"message":{"mid":"m"}},{}, 7]}]}"#;
    let raws = post(&c, body);
    assert_eq!(raws.len(), 4);
    assert_eq!(raws[0].kind, "optin");
    for r in &raws {
        let n = c.normalizer().normalize(&stored(r)).unwrap();
        assert!(
            n.iter()
                .all(|e| matches!(e.body, EventBody::Unsupported { .. })),
            "{n:?}"
        );
        assert_eq!(n.len(), 1);
    }
    let w = build("whatsapp", "http://127.0.0.1:9");
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"account_update","value":{"event":"X"}},{"field":"messages","value":{"messages":[{"from":"1","id":"w1","type":"contacts","contacts":[]}],"statuses":[{"id":"w2","status":"deleted"}]}}]}]}"#;
    let raws = post(&w, body);
    assert_eq!(raws.len(), 3);
    for r in &raws {
        let n = w.normalizer().normalize(&stored(r)).unwrap();
        assert!(matches!(n[0].body, EventBody::Unsupported { .. }), "{n:?}");
    }
}

// ---------------------------------------------------------------- send

fn outbound(thread: &str, in_reply_to: Option<&str>, attachments: &[&str]) -> OutboundMessage {
    OutboundMessage {
        id: "out-1".into(),
        idempotency_key: "k-1".into(),
        thread_key: thread.into(),
        text: "Your parcel left today".into(),
        attachment_urls: attachments.iter().map(|s| s.to_string()).collect(),
        in_reply_to: in_reply_to.map(str::to_string),
    }
}

#[tokio::test]
async fn messenger_send_posts_to_the_page_with_bearer_token_and_tagged_metadata() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        "/106540352242922/messages",
        [Answer::json(
            json!({"recipient_id": "6783145918422001", "message_id": "m_sent_1"}),
        )],
    );
    let c = build("messenger", &fake.base);
    let sent = c
        .outbound()
        .unwrap()
        .send(&outbound(
            "6783145918422001",
            Some("m_in"),
            &["https://x.test/a.png"],
        ))
        .await
        .unwrap();
    assert_eq!(sent.provider_message_id.as_deref(), Some("m_sent_1"));
    let got = fake.received_on("/106540352242922/messages");
    assert_eq!(got.len(), 2, "text, then the attachment");
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-messenger"));
    assert_eq!(got[0].query, None, "no token in the URL");
    assert_eq!(
        got[0].json(),
        json!({"recipient": {"id": "6783145918422001"}, "messaging_type": "RESPONSE",
               "message": {"text": "Your parcel left today", "metadata": "switchboard:out-1"}})
    );
    assert_eq!(
        got[1].json()["message"]["attachment"],
        json!({"type": "image", "payload": {"url": "https://x.test/a.png", "is_reusable": false}})
    );
}

#[tokio::test]
async fn instagram_send_posts_to_the_account_and_whatsapp_sends_context_only_when_replying() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        "/17841405822304914/messages",
        [Answer::json(
            json!({"recipient_id": "1134567890123456", "message_id": "ig_sent_1"}),
        )],
    );
    fake.on(
        "POST",
        "/106540352242922/messages",
        [Answer::json(
            json!({"messaging_product": "whatsapp", "contacts": [{"input": "16505551234", "wa_id": "16505551234"}], "messages": [{"id": "wamid.SENT1"}]}),
        )],
    );
    let ig = build("instagram", &fake.base);
    let sent = ig
        .outbound()
        .unwrap()
        .send(&outbound("1134567890123456", None, &[]))
        .await
        .unwrap();
    assert_eq!(sent.provider_message_id.as_deref(), Some("ig_sent_1"));
    let got = fake.received_on("/17841405822304914/messages");
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-instagram"));
    assert_eq!(
        got[0].json(),
        json!({"recipient": {"id": "1134567890123456"}, "message": {"text": "Your parcel left today"}})
    );

    let wa = build("whatsapp", &fake.base);
    let out = wa.outbound().unwrap();
    let sent = out
        .send(&outbound(
            "16505551234",
            Some("wamid.IN1"),
            &["https://x.test/r.pdf?sig=1"],
        ))
        .await
        .unwrap();
    assert_eq!(sent.provider_message_id.as_deref(), Some("wamid.SENT1"));
    out.send(&outbound("16505551234", None, &[])).await.unwrap();
    let got = fake.received_on("/106540352242922/messages");
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-whatsapp"));
    assert_eq!(
        got[0].json(),
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
               "type": "text", "text": {"body": "Your parcel left today"},
               "context": {"message_id": "wamid.IN1"}})
    );
    assert_eq!(
        got[1].json()["document"],
        json!({"link": "https://x.test/r.pdf?sig=1", "filename": "r.pdf"})
    );
    assert!(got[2].json().get("context").is_none());
}

async fn send_error(kind: &str, answer: Answer) -> ConnectorError {
    let fake = FakeProvider::start().await;
    let path = match kind {
        "instagram" => "/17841405822304914/messages",
        _ => "/106540352242922/messages",
    };
    fake.on("POST", path, [answer]);
    let c = build(kind, &fake.base);
    c.outbound()
        .unwrap()
        .send(&outbound("123", None, &[]))
        .await
        .unwrap_err()
}

fn meta_error(code: i64, sub: Option<i64>, message: &str) -> Value {
    let mut e = json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "A1"}});
    if let Some(s) = sub {
        e["error"]["error_subcode"] = json!(s);
    }
    e
}

#[tokio::test]
async fn meta_error_codes_map_to_rate_limit_window_unauthorized_and_transient() {
    let e = send_error(
        "messenger",
        Answer::status_json(
            400,
            meta_error(613, None, "Calls to this api have exceeded the rate limit."),
        )
        .header("retry-after", "2"),
    )
    .await;
    assert_eq!(
        e,
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    let e = send_error(
        "whatsapp",
        Answer::status_json(400, meta_error(130429, None, "Rate limit hit")),
    )
    .await;
    assert!(matches!(e, ConnectorError::RateLimited { .. }), "{e:?}");
    let e = send_error(
        "messenger",
        Answer::status_json(
            400,
            meta_error(
                10,
                Some(2534022),
                "This message is sent outside of allowed window.",
            ),
        ),
    )
    .await;
    assert!(
        matches!(&e, ConnectorError::Permanent(r) if r.starts_with("outside the 24-hour messaging window") && r.contains("2534022")),
        "{e:?}"
    );
    let e = send_error(
        "whatsapp",
        Answer::status_json(400, meta_error(131047, None, "Re-engagement message")),
    )
    .await;
    assert!(
        matches!(&e, ConnectorError::Permanent(r) if r.starts_with("outside the 24-hour messaging window; a template message is needed")),
        "{e:?}"
    );
    let e = send_error(
        "instagram",
        Answer::status_json(
            400,
            meta_error(190, Some(463), "Error validating access token"),
        ),
    )
    .await;
    assert!(matches!(e, ConnectorError::Unauthorized(_)), "{e:?}");
    let e = send_error("messenger", Answer::status(401, "")).await;
    assert!(matches!(e, ConnectorError::Unauthorized(_)), "{e:?}");
    let e = send_error(
        "messenger",
        Answer::status_json(500, meta_error(2, None, "Service temporarily unavailable")),
    )
    .await;
    assert!(matches!(e, ConnectorError::Transient(_)), "{e:?}");
    let e = send_error("whatsapp", Answer::status(503, "busy")).await;
    assert!(matches!(e, ConnectorError::Transient(_)), "{e:?}");
    let e = send_error(
        "messenger",
        Answer::status_json(400, meta_error(100, None, "Invalid parameter")),
    )
    .await;
    assert!(
        matches!(&e, ConnectorError::Permanent(r) if r == "Meta error 100: Invalid parameter"),
        "{e:?}"
    );
}

#[tokio::test]
async fn errors_never_carry_the_token() {
    // Nothing listens on port 9: a transport error, which must not show the URL or token.
    let c = build("whatsapp", "http://127.0.0.1:9");
    let e = c
        .outbound()
        .unwrap()
        .send(&outbound("123", None, &[]))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Transient(_)), "{e:?}");
    assert!(!format!("{e:?}").contains("tok-whatsapp"));
}

#[test]
fn a_messenger_edit_is_an_edit_of_that_message_and_a_postback_a_message_with_the_button_title() {
    let c = build("messenger", "http://127.0.0.1:9");
    let body = br#"{"object":"page","entry":[{"id":"106540352242922","time":1700000050000,"messaging":[{"sender":{"id":"6783145918422001"},"recipient":{"id":"106540352242922"},"timestamp":1700000049000,"message_edit":{"mid":"m_edited","text":"hello again","num_edit":1}},{"sender":{"id":"6783145918422001"},"recipient":{"id":"106540352242922"},"timestamp":1700000049500,"postback":{"mid":"m_pb","title":"Track my order","payload":"TRACK"}}]}]}"#;
    let raws = post(&c, body);
    assert_eq!(raws[0].provider_event_id, "m_edited:edit:1");
    assert_eq!(raws[1].provider_event_id, "postback:m_pb");
    let edit = c.normalizer().normalize(&stored(&raws[0])).unwrap();
    assert_eq!(
        edit[0].body,
        EventBody::Edit {
            message_id: "m_edited".into(),
            text: "hello again".into()
        }
    );
    let pb = c.normalizer().normalize(&stored(&raws[1])).unwrap();
    assert!(
        matches!(&pb[0].body, EventBody::Message { text, message_id: Some(m), .. } if text == "Track my order" && m == "m_pb")
    );
}

#[test]
fn a_whatsapp_business_scoped_user_id_is_claimed_in_the_waba_scope() {
    let c = build("whatsapp", "http://127.0.0.1:9");
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson","username":"sheena"},"wa_id":"16505551234","user_id":"US.13491208655302741918"}],"messages":[{"from":"16505551234","id":"wamid.U1","timestamp":"1749416383","type":"text","text":{"body":"hi"}}]}}]}]}"#;
    let raws = post(&c, body);
    let n = c.normalizer().normalize(&stored(&raws[0])).unwrap();
    assert_eq!(
        n[0].claims,
        vec![
            IdentityClaim::phone("+16505551234"),
            IdentityClaim::platform_id("whatsapp:102290129340398", "US.13491208655302741918"),
            IdentityClaim::name("Sheena Nelson"),
        ]
    );
}

//! LINE connector: signature checks (published SDK vector), batch splitting, normalisation of
//! every documented event kind, and push sends against a fake LINE API.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::json;
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    Attachment, ClaimKind, Connector, ConnectorError, Direction, EventBody, IdentityClaim,
    InboundRequest, Ingress, IngressError, OutboundMessage, RawEvent, StoredEvent, VerifyError,
};
use switchboard_social::line;

const SECRET: &str = "line-channel-secret";
const USER: &str = "U206d25c2ea6bd87c17655609a1c37cb8";

fn connector_with(secret: &str, api_base: &str) -> line::Line {
    let table: toml::Value = toml::from_str(&format!(
        "id = 'line'\nkind = 'line'\nchannel_secret = '{secret}'\nchannel_access_token = 'line-token'\napi_base = '{api_base}'"
    ))
    .unwrap();
    line::build("line", "connectors[0]", table, &|_| None).unwrap()
}

fn connector() -> line::Line {
    connector_with(SECRET, "https://api.line.me")
}

fn load(name: &str) -> Vec<u8> {
    fixture(env!("CARGO_MANIFEST_DIR"), "line", name)
}

fn sign(secret: &str, body: &[u8]) -> String {
    HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None).sign(secret.as_bytes(), &[body])
}

/// Runs verify then parse as the hub's webhook route does.
fn deliver(
    c: &line::Line,
    method: Method,
    body: &[u8],
    signature: Option<&str>,
) -> Result<Result<Ingress, IngressError>, VerifyError> {
    let mut headers = HeaderMap::new();
    if let Some(s) = signature {
        headers.insert("x-line-signature", HeaderValue::from_str(s).unwrap());
    }
    let uri: Uri = "/webhooks/line".parse().unwrap();
    let body = Bytes::copy_from_slice(body);
    let req = InboundRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
        now: 1_700_000_000,
    };
    let hook = c.webhook().unwrap();
    let v = hook.verify(&req)?;
    Ok(hook.parse(v))
}

fn events(c: &line::Line, body: &[u8]) -> Vec<RawEvent> {
    match deliver(c, Method::POST, body, Some(&sign(SECRET, body))) {
        Ok(Ok(Ingress::Events(e))) => e,
        other => panic!("expected events, got {other:?}"),
    }
}

fn stored(e: &RawEvent) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "line".into(),
        provider_event_id: e.provider_event_id.clone(),
        kind: e.kind.clone(),
        occurred_at: e.occurred_at,
        received_at: 1_800_000_000_000,
        headers: e.headers.clone(),
        payload: e.payload.clone(),
    }
}

fn normalize_all(c: &line::Line, body: &[u8]) -> Vec<switchboard_core::NormalizedEvent> {
    events(c, body)
        .iter()
        .flat_map(|e| c.normalizer().normalize(&stored(e)).unwrap())
        .collect()
}

#[test]
fn published_sdk_vector_signature_passes_and_its_non_json_body_is_malformed_not_unauthorized() {
    let c = connector_with("channel_secret", "https://api.line.me");
    let got = deliver(
        &c,
        Method::POST,
        b"bodybodybodybody",
        Some("/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k="),
    );
    assert!(
        matches!(got, Ok(Err(IngressError::Malformed(_)))),
        "{got:?}"
    );
    let bad = deliver(
        &c,
        Method::POST,
        b"bodybodybodybody",
        Some("invalid_signature"),
    );
    assert!(bad.is_err(), "{bad:?}");
}

#[test]
fn missing_wrong_or_tampered_signatures_are_refused() {
    let c = connector();
    let body = load("text_message.json");
    assert_eq!(
        deliver(&c, Method::POST, &body, None).unwrap_err(),
        VerifyError::Missing("x-line-signature")
    );
    assert_eq!(
        deliver(&c, Method::POST, &body, Some(&sign("other-secret", &body))).unwrap_err(),
        VerifyError::Mismatch
    );
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        deliver(&c, Method::POST, &tampered, Some(&sign(SECRET, &body))).unwrap_err(),
        VerifyError::Mismatch
    );
    assert_eq!(
        deliver(&c, Method::GET, &body, Some(&sign(SECRET, &body))).unwrap_err(),
        VerifyError::MethodNotAllowed
    );
    for junk in ["", "not base64 !!", "AAAA"] {
        assert!(
            deliver(&c, Method::POST, &body, Some(junk)).is_err(),
            "{junk:?}"
        );
    }
}

#[test]
fn console_verify_with_empty_events_stores_nothing() {
    assert!(events(&connector(), &load("verify_empty.json")).is_empty());
}

#[test]
fn a_batch_becomes_one_raw_event_per_webhook_event_id_with_exact_bytes_and_destination() {
    let c = connector();
    let body = load("batch.json");
    let evs = events(&c, &body);
    let ids: Vec<&str> = evs.iter().map(|e| e.provider_event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "01FZ74A0TDDPYRVKNK77XKC3ZR",
            "01FZ74A0TDDPYRVKNK77XKC3ZS",
            "01FZ74A0TDDPYRVKNK77XKC3ZT"
        ]
    );
    let text = String::from_utf8(body.clone()).unwrap();
    for e in &evs {
        // Each payload is a verbatim slice of the delivery.
        let slice = std::str::from_utf8(&e.payload).unwrap();
        assert!(text.contains(slice), "{slice}");
        assert!(slice.starts_with('{') && slice.ends_with('}'));
        assert_eq!(e.kind, "message");
        assert_eq!(
            e.headers,
            vec![("x-sb-line-destination".to_string(), "U123".to_string())]
        );
    }
    assert_eq!(evs[0].occurred_at, Some(1462629479859));
}

#[test]
fn text_message_normalises_with_the_user_claim_scoped_by_destination() {
    let out = normalize_all(&connector(), &load("text_message.json"));
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.channel, "line");
    assert_eq!(e.direction, Direction::Inbound);
    assert_eq!(
        e.thread_key.as_deref(),
        Some(format!("user:{USER}").as_str())
    );
    assert_eq!(
        e.claims,
        vec![IdentityClaim::platform_id("line:U123", USER)]
    );
    assert_eq!(e.occurred_at, 1462629479859);
    assert_eq!(
        e.body,
        EventBody::Message {
            message_id: Some("325708".into()),
            text: "Hello, world".into(),
            attachments: vec![],
            reply_to: None,
        }
    );
}

#[test]
fn group_room_quote_image_and_file_messages_normalise() {
    let out = normalize_all(&connector(), &load("batch.json"));
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0].thread_key.as_deref(),
        Some("group:Ca56f94637c0000000000000000000000")
    );
    assert!(
        matches!(&out[0].body, EventBody::Message { reply_to: Some(q), text, .. } if q == "325700" && text == "Quoting you")
    );
    assert_eq!(out[0].claims[0].kind, ClaimKind::PlatformId);
    assert_eq!(
        out[1].thread_key.as_deref(),
        Some(format!("user:{USER}").as_str())
    );
    assert_eq!(
        out[1].body,
        EventBody::Message {
            message_id: Some("325710".into()),
            text: String::new(),
            attachments: vec![Attachment {
                kind: Some("image".into()),
                media_id: Some("325710".into()),
                ..Attachment::default()
            }],
            reply_to: None,
        }
    );
    assert_eq!(
        out[2].thread_key.as_deref(),
        Some("room:Ra8dbf4673c0000000000000000000000")
    );
    assert!(
        matches!(&out[2].body, EventBody::Message { attachments, .. }
        if attachments[0] == Attachment {
            kind: Some("file".into()),
            media_id: Some("325711".into()),
            name: Some("invoice.pdf".into()),
            size: Some(2138),
            ..Attachment::default()
        })
    );
}

#[test]
fn sticker_location_unsend_and_non_message_events_are_kept_never_dropped() {
    let out = normalize_all(&connector(), &load("kinds.json"));
    assert_eq!(out.len(), 9, "one entry per event");
    assert!(
        matches!(&out[0].body, EventBody::Message { text, attachments, .. }
        if text == "happy, smile" && attachments[0].kind.as_deref() == Some("sticker")
            && attachments[0].media_id.as_deref() == Some("1988"))
    );
    assert!(
        matches!(&out[1].body, EventBody::Message { text, attachments, .. }
        if text.starts_with("Tokyo Tower\n4 Chome")
            && attachments[0].url.as_deref() == Some("geo:35.659108,139.703729"))
    );
    assert_eq!(
        out[2].body,
        EventBody::Delete {
            message_id: "325708".into()
        }
    );
    let notes: Vec<&str> = out[3..8]
        .iter()
        .map(|e| match &e.body {
            EventBody::Note { text } => text.as_str(),
            other => panic!("expected a note, got {other:?}"),
        })
        .collect();
    assert_eq!(notes[0], "followed the LINE account");
    assert_eq!(notes[1], "unfollowed (blocked) the LINE account");
    assert_eq!(notes[4], "postback: action=buy&itemid=111");
    // A group event without a user still lands in the group's conversation.
    assert_eq!(
        out[5].thread_key.as_deref(),
        Some("group:Ca56f94637c0000000000000000000000")
    );
    assert!(out[5].claims.is_empty());
    assert!(matches!(&out[8].body, EventBody::Unsupported { reason } if reason.contains("beacon")));
}

#[test]
fn odd_payloads_normalise_to_unsupported_or_an_error_never_a_panic() {
    let c = connector();
    let mut e = stored(&events(&c, &load("text_message.json"))[0]);
    for payload in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"type":"message"}"#,
        br#"{"type":"message","message":{"type":"imagemap","id":7}}"#,
        br#"{"type":"message","source":{"type":"user","userId":5},"message":{"type":"text","text":5,"id":null}}"#,
        br#"{"type":"unsend","unsend":{}}"#,
    ] {
        e.payload = Bytes::copy_from_slice(payload);
        if let Ok(out) = c.normalizer().normalize(&e) {
            assert_eq!(out.len(), 1, "{}", String::from_utf8_lossy(payload));
        }
    }
    e.payload = Bytes::from_static(br#"{"type":"message","message":{"type":"imagemap","id":"7"}}"#);
    let out = c.normalizer().normalize(&e).unwrap();
    assert!(
        matches!(&out[0].body, EventBody::Unsupported { reason } if reason.contains("imagemap"))
    );
    assert_eq!(
        out[0].occurred_at,
        e.occurred_at.unwrap(),
        "falls back to the stored time"
    );
}

#[test]
fn config_names_the_missing_key_reads_env_secrets_and_rejects_unknown_keys() {
    let build = |t: &str, env: &dyn Fn(&str) -> Option<String>| {
        line::build("l", "connectors[4]", toml::from_str(t).unwrap(), env).err()
    };
    let none = |_: &str| None;
    let e = build("id='l'\nkind='line'\nchannel_access_token='t'", &none).unwrap();
    assert_eq!(e.key, "connectors[4].channel_secret");
    let e = build("id='l'\nkind='line'\nchannel_secret='s'", &none).unwrap();
    assert_eq!(e.key, "connectors[4].channel_access_token");
    let env = |k: &str| (k == "LINE_SECRET" || k == "LINE_TOKEN").then(|| "v".to_string());
    assert!(build(
        "id='l'\nkind='line'\nchannel_secret_env='LINE_SECRET'\nchannel_access_token_env='LINE_TOKEN'",
        &env
    )
    .is_none());
    let e = build(
        "id='l'\nkind='line'\nchannel_secret='s'\nchannel_access_token='t'\napi_base='ftp://x'",
        &none,
    )
    .unwrap();
    assert_eq!(e.key, "connectors[4].api_base");
    let e = build(
        "id='l'\nkind='line'\nchannel_secret='s'\nchannel_access_token='t'\nchanel='x'",
        &none,
    )
    .unwrap();
    assert!(e.to_string().contains("unknown field `chanel`"), "{e}");
}

#[test]
fn retry_key_keeps_a_uuid_and_derives_a_stable_uuid_from_any_other_key() {
    assert_eq!(
        line::retry_key("123E4567-E89B-12D3-A456-426614174000"),
        "123e4567-e89b-12d3-a456-426614174000"
    );
    let a = line::retry_key("reply-42");
    assert_eq!(a, line::retry_key("reply-42"), "stable across retries");
    assert_ne!(a, line::retry_key("reply-43"));
    let parts: Vec<&str> = a.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    assert!(parts[2].starts_with('8'), "version 8: {a}");
}

fn reply(thread: &str, key: &str, urls: &[&str]) -> OutboundMessage {
    OutboundMessage {
        id: "out-1".into(),
        idempotency_key: key.into(),
        thread_key: thread.into(),
        text: "Your parcel left today".into(),
        attachment_urls: urls.iter().map(|u| u.to_string()).collect(),
        in_reply_to: Some("325708".into()),
    }
}

const PUSH: &str = "/v2/bot/message/push";

#[tokio::test]
async fn push_send_addresses_the_thread_with_token_and_retry_key_and_returns_the_sent_id() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        PUSH,
        [Answer::json(
            json!({"sentMessages":[{"id":"461230966842064897","quoteToken":"IStG5h1Tz"}]}),
        )],
    );
    let c = connector_with(SECRET, &fake.base);
    let sent = c
        .outbound()
        .unwrap()
        .send(&reply(
            "group:Ca56f94637c0000000000000000000000",
            "k-1",
            &["https://example.com/a.png"],
        ))
        .await
        .unwrap();
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some("461230966842064897")
    );
    let got = fake.received_on(PUSH);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("authorization"), Some("Bearer line-token"));
    assert_eq!(
        got[0].header("x-line-retry-key"),
        Some(line::retry_key("k-1").as_str())
    );
    assert_eq!(
        got[0].json(),
        json!({"to": "Ca56f94637c0000000000000000000000", "messages": [
            {"type": "text", "text": "Your parcel left today"},
            {"type": "image", "originalContentUrl": "https://example.com/a.png",
             "previewImageUrl": "https://example.com/a.png"}
        ]})
    );
}

#[tokio::test]
async fn a_409_for_an_already_accepted_retry_key_counts_as_sent() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        PUSH,
        [
            Answer::status_json(409, json!({"message":"The retry key is already accepted"}))
                .header("x-line-accepted-request-id", "abc"),
        ],
    );
    let c = connector_with(SECRET, &fake.base);
    let sent = c
        .outbound()
        .unwrap()
        .send(&reply(&format!("user:{USER}"), "k-2", &[]))
        .await
        .unwrap();
    assert_eq!(sent.provider_message_id, None);
    assert_eq!(fake.received_on(PUSH)[0].json()["to"], USER);
}

#[tokio::test]
async fn push_errors_map_to_rate_limited_unauthorized_permanent_and_transient() {
    let cases = [
        (
            Answer::status_json(429, json!({"message":"Too Many Requests"}))
                .header("retry-after", "2"),
            ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
            },
        ),
        (
            Answer::status_json(
                401,
                json!({"message":"Authentication failed due to the expired access token"}),
            ),
            ConnectorError::Unauthorized(
                "HTTP 401: Authentication failed due to the expired access token".into(),
            ),
        ),
        (
            Answer::status_json(
                400,
                json!({"message":"The request body has 1 error(s)",
                "details":[{"message":"May not be empty","property":"messages[0].text"}]}),
            ),
            ConnectorError::Permanent(
                "HTTP 400: The request body has 1 error(s); messages[0].text: May not be empty"
                    .into(),
            ),
        ),
        (
            Answer::status_json(
                429,
                json!({"message":"You have reached your monthly limit."}),
            ),
            ConnectorError::Permanent("HTTP 429: You have reached your monthly limit.".into()),
        ),
        (
            Answer::status(500, ""),
            ConnectorError::Transient("HTTP 500".into()),
        ),
    ];
    for (answer, want) in cases {
        let fake = FakeProvider::start().await;
        fake.on("POST", PUSH, [answer]);
        let c = connector_with(SECRET, &fake.base);
        let got = c
            .outbound()
            .unwrap()
            .send(&reply(&format!("user:{USER}"), "k", &[]))
            .await;
        assert_eq!(got, Err(want));
    }
}

#[tokio::test]
async fn a_thread_key_that_names_no_line_recipient_fails_permanently_without_a_request() {
    let fake = FakeProvider::start().await;
    let c = connector_with(SECRET, &fake.base);
    let got = c
        .outbound()
        .unwrap()
        .send(&reply("channel:C1", "k", &[]))
        .await;
    assert!(matches!(got, Err(ConnectorError::Permanent(_))), "{got:?}");
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn more_than_five_attachments_send_four_images_and_the_rest_as_links_in_the_text() {
    let fake = FakeProvider::start().await;
    fake.on("POST", PUSH, [Answer::json(json!({"sentMessages":[]}))]);
    let c = connector_with(SECRET, &fake.base);
    let urls: Vec<String> = (0..6)
        .map(|i| format!("https://example.com/{i}.png"))
        .collect();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    c.outbound()
        .unwrap()
        .send(&reply(&format!("user:{USER}"), "k", &refs))
        .await
        .unwrap();
    let body = fake.received_on(PUSH)[0].json();
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 5);
    assert_eq!(
        msgs[0]["text"],
        "Your parcel left today\nhttps://example.com/4.png\nhttps://example.com/5.png"
    );
    assert!(msgs[1..].iter().all(|m| m["type"] == "image"));
}

//! The Telegram connector driven through the SDK traits: config validation, the secret-token
//! webhook, fixture updates normalised, getUpdates paging and sends against a fake Bot API.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::json;
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    Attachment, ClaimKind, Connector, ConnectorError, Direction, EventBody, IdentityClaim,
    InboundRequest, Ingress, NormalizedEvent, OutboundMessage, StoredEvent, VerifyError,
};
use switchboard_social::telegram::{self, Telegram};

const TOKEN: &str = "7000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const SECRET: &str = "hook-Secret_123";

fn no_env(_: &str) -> Option<String> {
    None
}

fn build(cfg: &str) -> Result<Telegram, switchboard_core::ConfigError> {
    telegram::build("tg", "connectors[0]", toml::from_str(cfg).unwrap(), &no_env)
}

fn webhook_connector() -> Telegram {
    build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nsecret_token = '{SECRET}'"
    ))
    .unwrap()
}

fn api_connector(base: &str, mode: &str) -> Telegram {
    build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nsecret_token = '{SECRET}'\nmode = '{mode}'\napi_base = '{base}'\npoll_timeout_secs = 2"
    ))
    .unwrap()
}

fn fx(name: &str) -> Vec<u8> {
    fixture(env!("CARGO_MANIFEST_DIR"), "telegram", name)
}

fn deliver(
    c: &Telegram,
    method: Method,
    body: &[u8],
    secret: Option<&str>,
) -> Result<Ingress, String> {
    let mut headers = HeaderMap::new();
    if let Some(s) = secret {
        headers.insert(
            "x-telegram-bot-api-secret-token",
            HeaderValue::from_str(s).unwrap(),
        );
    }
    let body = Bytes::copy_from_slice(body);
    let uri: Uri = "/webhooks/tg".parse().unwrap();
    let req = InboundRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
        now: 1_764_590_400,
    };
    let hook = c.webhook().ok_or("no webhook")?;
    let v = hook.verify(&req).map_err(|e| format!("verify: {e:?}"))?;
    hook.parse(v).map_err(|e| format!("parse: {e}"))
}

fn stored(payload: &[u8], headers: Vec<(String, String)>) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "tg".into(),
        provider_event_id: "1".into(),
        kind: "message".into(),
        occurred_at: None,
        received_at: 1_700_000_000_000,
        headers,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// Normalises a fixture the way the hub would after a webhook delivery.
fn normalize(name: &str) -> NormalizedEvent {
    let c = webhook_connector();
    let Ingress::Events(evs) = deliver(&c, Method::POST, &fx(name), Some(SECRET)).unwrap() else {
        panic!("expected events");
    };
    assert_eq!(evs.len(), 1);
    let e = &evs[0];
    let raw = StoredEvent {
        provider_event_id: e.provider_event_id.clone(),
        kind: e.kind.clone(),
        occurred_at: e.occurred_at,
        ..stored(&e.payload, e.headers.clone())
    };
    let mut out = c.normalizer().normalize(&raw).unwrap();
    assert_eq!(out.len(), 1, "{name}");
    out.remove(0)
}

fn scope() -> String {
    "telegram:7000001".into()
}

// ---- config ----------------------------------------------------------------------------

#[test]
fn config_errors_name_the_exact_key() {
    let e = build("id = 'tg'\nkind = 'telegram'\nsecret_token = 'abc'")
        .err()
        .unwrap();
    assert_eq!(e.key, "connectors[0].bot_token");
    let e = build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'"
    ))
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].secret_token");
    assert!(e.problem.contains("webhook"), "{e}");
    let e = build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nsecret_token = 'has spaces'"
    ))
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].secret_token");
    let long = "a".repeat(257);
    let e = build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nsecret_token = '{long}'"
    ))
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].secret_token");
    let e = build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nmode = 'poll'\npoll_timeout_secs = 51"
    ))
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].poll_timeout_secs");
    let e = build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nmode = 'push'"
    ))
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].mode");
    let e = build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nsecret_token = 'x'\napi_base = 'ftp://x'"
    ))
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].api_base");
    let e = build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nsecret_token = 'x'\nsecret = 'typo'"
    ))
    .err()
    .unwrap();
    assert!(e.to_string().contains("unknown field `secret`"), "{e}");
}

#[test]
fn a_malformed_bot_token_is_refused_without_echoing_it() {
    let e = build(
        "id = 'tg'\nkind = 'telegram'\nbot_token = 'notatoken-SECRETPART'\nsecret_token = 'x'",
    )
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].bot_token");
    assert!(!e.to_string().contains("SECRETPART"), "{e}");
}

#[test]
fn secrets_can_come_from_the_environment_and_poll_mode_needs_no_secret_token() {
    let env = |k: &str| match k {
        "TG_TOKEN" => Some(TOKEN.to_string()),
        "TG_SECRET" => Some(SECRET.to_string()),
        _ => None,
    };
    let c = telegram::build(
        "tg",
        "connectors[0]",
        toml::from_str("id = 'tg'\nkind = 'telegram'\nbot_token_env = 'TG_TOKEN'\nsecret_token_env = 'TG_SECRET'").unwrap(),
        &env,
    )
    .unwrap();
    assert!(c.webhook().is_some() && c.poller().is_none());
    let p = build(&format!(
        "id = 'tg'\nkind = 'telegram'\nbot_token = '{TOKEN}'\nmode = 'poll'"
    ))
    .unwrap();
    assert!(p.webhook().is_none(), "poll mode has no webhook endpoint");
    assert!(p.poller().is_some() && p.outbound().is_some());
    assert_eq!(p.poller().unwrap().interval(), Duration::ZERO);
}

// ---- webhook ---------------------------------------------------------------------------

#[test]
fn webhook_with_the_secret_token_yields_one_event_keyed_by_update_id_with_exact_bytes() {
    let c = webhook_connector();
    let body = fx("message_text.json");
    let Ingress::Events(evs) = deliver(&c, Method::POST, &body, Some(SECRET)).unwrap() else {
        panic!("expected events");
    };
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].provider_event_id, "900000001");
    assert_eq!(evs[0].kind, "message");
    assert_eq!(evs[0].occurred_at, Some(1_764_590_400_000));
    assert_eq!(&evs[0].payload[..], &body[..]);
    assert_eq!(
        evs[0].headers,
        vec![("x-sb-bot-id".to_string(), "7000001".to_string())]
    );
}

#[test]
fn webhook_refuses_missing_wrong_and_near_miss_tokens_and_other_methods() {
    let c = webhook_connector();
    let body = fx("message_text.json");
    let missing = deliver(&c, Method::POST, &body, None).unwrap_err();
    assert!(missing.contains("Missing"), "{missing}");
    for wrong in [
        "wrong",
        "hook-Secret_12",
        "hook-Secret_1234",
        "HOOK-SECRET_123",
        "",
    ] {
        let e = deliver(&c, Method::POST, &body, Some(wrong)).unwrap_err();
        assert!(e.contains("Mismatch"), "{wrong}: {e}");
    }
    let e = deliver(&c, Method::GET, &body, Some(SECRET)).unwrap_err();
    assert_eq!(e, format!("verify: {:?}", VerifyError::MethodNotAllowed));
}

#[test]
fn webhook_body_without_update_id_or_not_json_is_a_400_not_a_panic() {
    let c = webhook_connector();
    let e = deliver(&c, Method::POST, br#"{"message":{}}"#, Some(SECRET)).unwrap_err();
    assert!(e.contains("update_id"), "{e}");
    let e = deliver(&c, Method::POST, b"\xff\xfe not json", Some(SECRET)).unwrap_err();
    assert!(e.contains("invalid JSON"), "{e}");
}

// ---- normalise -------------------------------------------------------------------------

#[test]
fn text_message_becomes_a_message_in_the_chat_thread_with_scoped_claims_and_reply_to() {
    let n = normalize("message_text.json");
    assert_eq!(n.channel, "telegram");
    assert_eq!(n.direction, Direction::Inbound);
    assert_eq!(n.thread_key.as_deref(), Some("111222333"));
    assert_eq!(n.occurred_at, 1_764_590_400_000);
    assert_eq!(
        n.body,
        EventBody::Message {
            message_id: Some("111222333:42".into()),
            text: "Where is my parcel?".into(),
            attachments: vec![],
            reply_to: Some("111222333:41".into()),
        }
    );
    assert_eq!(
        n.claims,
        vec![
            IdentityClaim::platform_id(scope(), "111222333"),
            IdentityClaim::name("Ada Lovelace"),
            IdentityClaim::name("@ada_l"),
        ]
    );
    assert!(n
        .claims
        .iter()
        .all(|c| !c.value.contains("AAHdq") && !c.scope.contains("AAHdq")));
}

#[test]
fn photo_keeps_the_largest_size_and_the_caption_as_text() {
    let n = normalize("message_photo.json");
    let EventBody::Message {
        text, attachments, ..
    } = n.body
    else {
        panic!("{:?}", n.body);
    };
    assert_eq!(text, "The box arrived damaged");
    assert_eq!(
        attachments,
        vec![Attachment {
            kind: Some("image".into()),
            media_id: Some("AgACAgQAAxkBAAIBlarge".into()),
            size: Some(98211),
            ..Default::default()
        }]
    );
}

#[test]
fn document_video_audio_voice_and_sticker_become_attachments_with_name_type_and_size() {
    // (fixture, kind, file_id, file name, content type, size, caption)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        u64,
        &'a str,
    );
    let cases: [Case; 5] = [
        (
            "message_document.json",
            "file",
            "BQACAgQAAxkBAAIBdoc",
            Some("invoice-1001.pdf"),
            "application/pdf",
            53121,
            "",
        ),
        (
            "message_video.json",
            "video",
            "BAACAgQAAxkBAAIBvid",
            Some("unboxing.mp4"),
            "video/mp4",
            2048000,
            "See the dent",
        ),
        (
            "message_audio.json",
            "audio",
            "CQACAgQAAxkBAAIBaud",
            Some("jingle.mp3"),
            "audio/mpeg",
            2900000,
            "",
        ),
        (
            "message_voice.json",
            "voice",
            "AwACAgQAAxkBAAIBvoi",
            None,
            "audio/ogg",
            9120,
            "",
        ),
        (
            "message_sticker.json",
            "sticker",
            "CAACAgIAAxkBAAIBsti",
            None,
            "image/webp",
            30000,
            "",
        ),
    ];
    for (file, kind, media, name, mime, size, caption) in cases {
        let n = normalize(file);
        let EventBody::Message {
            text, attachments, ..
        } = n.body
        else {
            panic!("{file}: {:?}", n.body);
        };
        assert_eq!(text, caption, "{file}");
        assert_eq!(
            attachments,
            vec![Attachment {
                kind: Some(kind.into()),
                media_id: Some(media.into()),
                name: name.map(str::to_string),
                content_type: Some(mime.into()),
                size: Some(size),
                url: None,
            }],
            "{file}"
        );
    }
}

#[test]
fn edited_message_becomes_an_edit_of_the_same_chat_scoped_id_at_edit_time() {
    let n = normalize("edited_message.json");
    assert_eq!(
        n.body,
        EventBody::Edit {
            message_id: "111222333:42".into(),
            text: "Where is my parcel? Order #1001".into()
        }
    );
    assert_eq!(n.occurred_at, 1_764_590_900_000);
}

#[test]
fn channel_post_is_a_message_from_the_sender_chat() {
    let n = normalize("channel_post.json");
    assert_eq!(n.thread_key.as_deref(), Some("-1001234567890"));
    assert!(
        matches!(&n.body, EventBody::Message { message_id: Some(id), text, .. }
        if id == "-1001234567890:7" && text == "Winter sale starts today")
    );
    assert_eq!(
        n.claims[0],
        IdentityClaim::platform_id(scope(), "-1001234567890")
    );
    assert!(n.claims.contains(&IdentityClaim::name("Shop News")));
}

#[test]
fn callback_query_is_a_message_whose_text_is_the_button_data() {
    let n = normalize("callback_query.json");
    assert_eq!(n.thread_key.as_deref(), Some("111222333"));
    assert_eq!(n.direction, Direction::Inbound);
    assert_eq!(
        n.body,
        EventBody::Message {
            message_id: Some("callback:4382bfdwdsb323b2d9".into()),
            text: "helpful:yes".into(),
            attachments: vec![],
            reply_to: Some("111222333:50".into()),
        }
    );
    // A callback has no time of its own: the time of receipt.
    assert_eq!(n.occurred_at, 1_700_000_000_000);
}

#[test]
fn a_bot_sender_is_outbound_in_a_group_thread() {
    let n = normalize("group_message_from_bot.json");
    assert_eq!(n.direction, Direction::Outbound);
    assert_eq!(n.thread_key.as_deref(), Some("-1009876543210"));
    assert!(
        matches!(&n.body, EventBody::Message { message_id: Some(id), .. } if id == "-1009876543210:310")
    );
}

#[test]
fn unknown_updates_and_messages_without_text_or_media_are_unsupported_not_dropped() {
    let n = normalize("my_chat_member.json");
    assert!(
        matches!(&n.body, EventBody::Unsupported { reason } if reason.contains("my_chat_member")),
        "{:?}",
        n.body
    );
    assert_eq!(
        n.claims[0],
        IdentityClaim::platform_id(scope(), "111222333")
    );
    let n = normalize("message_location.json");
    assert!(
        matches!(&n.body, EventBody::Unsupported { reason } if reason.contains("location")),
        "{:?}",
        n.body
    );
    assert_eq!(n.thread_key.as_deref(), Some("111222333"));
}

#[test]
fn garbage_payloads_normalise_to_unsupported_without_panicking() {
    let c = webhook_connector();
    for payload in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"update_id":1,"message":null}"#,
        br#"{"update_id":1,"message":{"chat":{"id":"x"},"message_id":1}}"#,
        br#"{"update_id":1,"message":{"chat":{"id":5},"message_id":1,"photo":[{"width":-1}],"from":7}}"#,
        br#"{"update_id":1,"callback_query":{"id":"1","data":"x"}}"#,
        br#"{"update_id":1,"edited_message":{"chat":{"id":5},"message_id":1,"date":99999999999999}}"#,
    ] {
        let out = c.normalizer().normalize(&stored(payload, vec![])).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body.kind(), "unsupported", "{}", String::from_utf8_lossy(payload));
    }
}

#[test]
fn normalising_is_pure_and_scopes_by_the_stored_bot_id() {
    let c = webhook_connector();
    let raw = stored(
        &fx("message_text.json"),
        vec![("x-sb-bot-id".into(), "555".into())],
    );
    let a = c.normalizer().normalize(&raw).unwrap();
    assert_eq!(a, c.normalizer().normalize(&raw).unwrap());
    assert_eq!(a[0].claims[0].scope, "telegram:555");
    assert_eq!(a[0].claims[0].kind, ClaimKind::PlatformId);
}

// ---- poll ------------------------------------------------------------------------------

fn updates_path() -> String {
    format!("/bot{TOKEN}/getUpdates")
}

#[tokio::test]
async fn get_updates_sends_offset_limit_timeout_and_splits_the_page_with_exact_bytes() {
    let fake = FakeProvider::start().await;
    let page = fx("get_updates.json");
    let page_json: serde_json::Value = serde_json::from_slice(&page).unwrap();
    fake.on("POST", &updates_path(), [Answer::json(page_json.clone())]);
    let c = api_connector(&fake.base, "poll");
    let p = c
        .poller()
        .unwrap()
        .poll(Some("900000001".into()))
        .await
        .unwrap();
    let req = &fake.received_on(&updates_path())[0];
    let body = req.json();
    assert_eq!(body["offset"], 900000001);
    assert_eq!(body["limit"], 100);
    assert_eq!(body["timeout"], 2);
    assert!(body["allowed_updates"]
        .as_array()
        .unwrap()
        .contains(&json!("callback_query")));
    assert_eq!(p.events.len(), 2);
    assert_eq!(p.events[0].provider_event_id, "900000001");
    assert_eq!(p.events[1].provider_event_id, "900000002");
    assert_eq!(p.next_cursor.as_deref(), Some("900000003"));
    assert!(!p.more);
    let first: serde_json::Value = serde_json::from_slice(&p.events[0].payload).unwrap();
    assert_eq!(first, page_json["result"][0]);
    assert_eq!(p.events[1].kind, "message");
}

#[tokio::test]
async fn get_updates_keeps_each_updates_exact_bytes() {
    let fake = FakeProvider::start().await;
    let page = fx("get_updates.json");
    let text = String::from_utf8(page.clone()).unwrap();
    fake.on(
        "POST",
        &updates_path(),
        [Answer::status(200, &text).header("content-type", "application/json")],
    );
    let c = api_connector(&fake.base, "poll");
    let p = c.poller().unwrap().poll(None).await.unwrap();
    assert!(fake.received_on(&updates_path())[0]
        .json()
        .get("offset")
        .is_none());
    // The second update is indented in the page: its bytes are kept as they came.
    let second = std::str::from_utf8(&p.events[1].payload).unwrap();
    assert!(text.contains(second) && second.contains("\n"), "{second}");
    assert!(text.contains(std::str::from_utf8(&p.events[0].payload).unwrap()));
}

#[tokio::test]
async fn empty_page_keeps_the_cursor_and_a_full_page_asks_for_more() {
    let fake = FakeProvider::start().await;
    let full: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"update_id": 500 + i, "message": {"message_id": i, "chat": {"id": 1}, "date": 1, "text": "x"}}))
        .collect();
    fake.on(
        "POST",
        &updates_path(),
        [
            Answer::json(json!({"ok": true, "result": []})),
            Answer::json(json!({"ok": true, "result": full})),
        ],
    );
    let c = api_connector(&fake.base, "poll");
    let p = c.poller().unwrap().poll(Some("42".into())).await.unwrap();
    assert!(p.events.is_empty() && !p.more);
    assert_eq!(p.next_cursor.as_deref(), Some("42"));
    let p = c.poller().unwrap().poll(Some("500".into())).await.unwrap();
    assert_eq!(p.events.len(), 100);
    assert!(p.more);
    assert_eq!(p.next_cursor.as_deref(), Some("600"));
}

async fn poll_error(answer: Answer) -> ConnectorError {
    let fake = FakeProvider::start().await;
    fake.on("POST", &updates_path(), [answer]);
    let c = api_connector(&fake.base, "poll");
    c.poller().unwrap().poll(None).await.unwrap_err()
}

#[tokio::test]
async fn get_updates_errors_map_to_conflict_unauthorized_and_rate_limit() {
    let e = poll_error(Answer::status_json(409, json!({"ok": false, "error_code": 409,
        "description": "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"}))).await;
    assert!(
        matches!(&e, ConnectorError::Permanent(r) if r.contains("deleteWebhook") && r.contains("webhook is set")),
        "{e:?}"
    );
    let e = poll_error(Answer::status_json(
        401,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
    ))
    .await;
    assert!(matches!(e, ConnectorError::Unauthorized(_)), "{e:?}");
    let e = poll_error(Answer::status_json(
        404,
        json!({"ok": false, "error_code": 404, "description": "Not Found"}),
    ))
    .await;
    assert!(matches!(e, ConnectorError::Unauthorized(_)), "{e:?}");
    let e = poll_error(Answer::status_json(
        429,
        json!({"ok": false, "error_code": 429,
        "description": "Too Many Requests: retry after 17", "parameters": {"retry_after": 17}}),
    ))
    .await;
    assert_eq!(
        e,
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(17))
        }
    );
    let e = poll_error(Answer::status(502, "<html>Bad Gateway</html>")).await;
    assert!(matches!(e, ConnectorError::Transient(_)), "{e:?}");
    let e = poll_error(Answer::json(
        json!({"ok": true, "result": {"not": "an array"}}),
    ))
    .await;
    assert!(matches!(e, ConnectorError::Transient(_)), "{e:?}");
}

// ---- send ------------------------------------------------------------------------------

fn send_path(method: &str) -> String {
    format!("/bot{TOKEN}/{method}")
}

fn outbound(text: &str, in_reply_to: Option<&str>, attachments: &[&str]) -> OutboundMessage {
    OutboundMessage {
        id: "out-1".into(),
        idempotency_key: "k-1".into(),
        thread_key: "111222333".into(),
        text: text.into(),
        attachment_urls: attachments.iter().map(|s| s.to_string()).collect(),
        in_reply_to: in_reply_to.map(str::to_string),
    }
}

fn sent_message(id: i64) -> serde_json::Value {
    json!({"ok": true, "result": {"message_id": id, "chat": {"id": 111222333, "type": "private"}, "date": 1, "text": "x"}})
}

#[tokio::test]
async fn send_message_replies_to_the_customers_message_and_returns_chat_scoped_id() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &send_path("sendMessage"),
        [Answer::json(sent_message(77))],
    );
    let c = api_connector(&fake.base, "webhook");
    let sent = c
        .outbound()
        .unwrap()
        .send(&outbound("It left today", Some("111222333:42"), &[]))
        .await
        .unwrap();
    assert_eq!(sent.provider_message_id.as_deref(), Some("111222333:77"));
    let body = fake.received_on(&send_path("sendMessage"))[0].json();
    assert_eq!(
        body,
        json!({"chat_id": 111222333, "text": "It left today",
               "reply_parameters": {"message_id": 42, "allow_sending_without_reply": true}})
    );
}

#[tokio::test]
async fn attachments_go_by_url_through_send_photo_and_send_document() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &send_path("sendMessage"),
        [Answer::json(sent_message(1))],
    );
    fake.on(
        "POST",
        &send_path("sendPhoto"),
        [Answer::json(sent_message(2))],
    );
    fake.on(
        "POST",
        &send_path("sendDocument"),
        [Answer::json(sent_message(3))],
    );
    let c = api_connector(&fake.base, "webhook");
    let sent = c
        .outbound()
        .unwrap()
        .send(&outbound(
            "",
            None,
            &["https://cdn.test/a.png", "https://cdn.test/label.pdf"],
        ))
        .await
        .unwrap();
    assert!(
        fake.received_on(&send_path("sendMessage")).is_empty(),
        "no empty text message"
    );
    assert_eq!(sent.provider_message_id.as_deref(), Some("111222333:2"));
    assert_eq!(
        fake.received_on(&send_path("sendPhoto"))[0].json(),
        json!({"chat_id": 111222333, "photo": "https://cdn.test/a.png"})
    );
    assert_eq!(
        fake.received_on(&send_path("sendDocument"))[0].json(),
        json!({"chat_id": 111222333, "document": "https://cdn.test/label.pdf"})
    );
}

async fn send_error(answer: Answer) -> ConnectorError {
    let fake = FakeProvider::start().await;
    fake.on("POST", &send_path("sendMessage"), [answer]);
    let c = api_connector(&fake.base, "webhook");
    c.outbound()
        .unwrap()
        .send(&outbound("hi", None, &[]))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_blocked_bot_is_a_permanent_failure_with_telegrams_reason_not_unauthorized() {
    let e = send_error(Answer::status_json(
        403,
        json!({"ok": false, "error_code": 403,
        "description": "Forbidden: bot was blocked by the user"}),
    ))
    .await;
    assert_eq!(
        e,
        ConnectorError::Permanent(
            "Telegram sendMessage: Forbidden: bot was blocked by the user".into()
        )
    );
}

#[tokio::test]
async fn send_rate_limit_carries_retry_after_and_bad_request_is_permanent() {
    let e = send_error(Answer::status_json(
        429,
        json!({"ok": false, "error_code": 429,
        "description": "Too Many Requests: retry after 3", "parameters": {"retry_after": 3}}),
    ))
    .await;
    assert_eq!(
        e,
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    let e = send_error(Answer::status_json(
        400,
        json!({"ok": false, "error_code": 400,
        "description": "Bad Request: chat not found"}),
    ))
    .await;
    assert!(
        matches!(&e, ConnectorError::Permanent(r) if r.contains("chat not found")),
        "{e:?}"
    );
    let e = send_error(Answer::status_json(
        401,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
    ))
    .await;
    assert!(matches!(e, ConnectorError::Unauthorized(_)), "{e:?}");
}

#[tokio::test]
async fn the_bot_token_never_appears_in_a_server_error_or_a_transport_error() {
    let secret_half = TOKEN.split_once(':').unwrap().1;
    // A 500 whose body echoes the request URL (as some proxies do).
    let e = send_error(Answer::status(
        500,
        &format!("upstream failed for /bot{TOKEN}/sendMessage"),
    ))
    .await;
    assert!(matches!(e, ConnectorError::Transient(_)), "{e:?}");
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(secret_half), "{shown}");
    }
    // Nothing listens on this port: a connection error, which reqwest would print with the URL.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let c = api_connector(&format!("http://127.0.0.1:{port}"), "webhook");
    let e = c
        .outbound()
        .unwrap()
        .send(&outbound("hi", None, &[]))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Transient(_)), "{e:?}");
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(secret_half), "{shown}");
    }
    let p = api_connector(&format!("http://127.0.0.1:{port}"), "poll");
    let e = p.poller().unwrap().poll(None).await.unwrap_err();
    assert!(!format!("{e:?}").contains(secret_half));
}

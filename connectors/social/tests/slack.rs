//! Slack connector: the published signing vector (a slash command), timestamp tolerance, the
//! url_verification handshake, event_callback storage, normalisation of messages, threads,
//! files, edits, deletions and bot echoes, and chat.postMessage against a fake Slack API.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::json;
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    Attachment, Connector, ConnectorError, Direction, EventBody, IdentityClaim, InboundRequest,
    Ingress, IngressError, NormalizedEvent, OutboundMessage, RawEvent, Reply, StoredEvent,
    VerifyError,
};
use switchboard_social::slack;

const SECRET: &str = "slack-signing-secret";
const VECTOR_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const VECTOR_TS: i64 = 1531420618;
const VECTOR_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
const NOW: i64 = 1_700_000_000;

fn connector_with(secret: &str, api_base: &str, tolerance: i64) -> slack::Slack {
    let table: toml::Value = toml::from_str(&format!(
        "id = 'slack'\nkind = 'slack'\nsigning_secret = '{secret}'\nbot_token = 'xoxb-test'\napi_base = '{api_base}'\ntimestamp_tolerance_secs = {tolerance}"
    ))
    .unwrap();
    slack::build("slack", "connectors[0]", table, &|_| None).unwrap()
}

fn connector() -> slack::Slack {
    connector_with(SECRET, "https://slack.com/api", 300)
}

fn load(name: &str) -> Vec<u8> {
    fixture(env!("CARGO_MANIFEST_DIR"), "slack", name)
}

fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let ts = ts.to_string();
    HmacScheme::new(Algorithm::Sha256, Encoding::Hex, Some("v0="))
        .sign(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body])
}

type Delivery = Result<Result<Ingress, IngressError>, VerifyError>;

fn deliver(c: &slack::Slack, now: i64, body: &[u8], headers: &[(&str, &str)]) -> Delivery {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let uri: Uri = "/webhooks/slack".parse().unwrap();
    let body = Bytes::copy_from_slice(body);
    let method = Method::POST;
    let req = InboundRequest {
        method: &method,
        uri: &uri,
        headers: &h,
        body: &body,
        now,
    };
    let hook = c.webhook().unwrap();
    let v = hook.verify(&req)?;
    Ok(hook.parse(v))
}

fn signed(c: &slack::Slack, body: &[u8]) -> Delivery {
    let ts = NOW.to_string();
    deliver(
        c,
        NOW,
        body,
        &[
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &sign(SECRET, NOW, body)),
        ],
    )
}

fn events(c: &slack::Slack, body: &[u8]) -> Vec<RawEvent> {
    match signed(c, body) {
        Ok(Ok(Ingress::Events(e))) => e,
        other => panic!("expected events, got {other:?}"),
    }
}

fn stored(e: &RawEvent) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "slack".into(),
        provider_event_id: e.provider_event_id.clone(),
        kind: e.kind.clone(),
        occurred_at: e.occurred_at,
        received_at: 1_800_000_000_000,
        headers: e.headers.clone(),
        payload: e.payload.clone(),
    }
}

fn normalize_one(c: &slack::Slack, body: &[u8]) -> NormalizedEvent {
    let evs = events(c, body);
    assert_eq!(evs.len(), 1);
    let mut out = c.normalizer().normalize(&stored(&evs[0])).unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn vector_headers() -> [(&'static str, String); 2] {
    [
        ("x-slack-request-timestamp", VECTOR_TS.to_string()),
        ("x-slack-signature", VECTOR_SIG.to_string()),
    ]
}

fn with<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn published_vector_slash_command_passes_within_tolerance_and_becomes_a_message() {
    let c = connector_with(VECTOR_SECRET, "https://slack.com/api", 300);
    let body = load("slash_command_vector.txt");
    let evs = match deliver(&c, VECTOR_TS + 10, &body, &with(&vector_headers())) {
        Ok(Ok(Ingress::Events(e))) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(evs.len(), 1);
    assert_eq!(
        evs[0].provider_event_id,
        "command:398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    );
    assert_eq!(evs[0].kind, "slash_command");
    assert_eq!(evs[0].payload.as_ref(), body.as_slice());
    assert_eq!(evs[0].occurred_at, Some(VECTOR_TS * 1000));
    let out = c.normalizer().normalize(&stored(&evs[0])).unwrap();
    assert_eq!(out[0].thread_key.as_deref(), Some("G8PSS9T3V"));
    assert_eq!(
        out[0].claims,
        vec![
            IdentityClaim::platform_id("slack:T1DC2JH3J", "U2CERLKJA"),
            IdentityClaim::name("roadrunner"),
        ]
    );
    assert!(matches!(&out[0].body, EventBody::Message { text, .. } if text == "/webhook-collect"));
}

#[test]
fn published_vector_is_expired_with_the_default_tolerance_and_tampering_is_a_mismatch() {
    let c = connector_with(VECTOR_SECRET, "https://slack.com/api", 300);
    let body = load("slash_command_vector.txt");
    assert_eq!(
        deliver(&c, NOW, &body, &with(&vector_headers())).unwrap_err(),
        VerifyError::Expired
    );
    let mut tampered = body.clone();
    tampered.extend_from_slice(b"------");
    assert_eq!(
        deliver(&c, VECTOR_TS, &tampered, &with(&vector_headers())).unwrap_err(),
        VerifyError::Mismatch
    );
}

#[test]
fn missing_headers_wrong_secret_and_junk_timestamps_are_refused() {
    let c = connector();
    let body = load("message.json");
    let ts = NOW.to_string();
    let good = sign(SECRET, NOW, &body);
    assert_eq!(
        deliver(&c, NOW, &body, &[("x-slack-signature", &good)]).unwrap_err(),
        VerifyError::Missing("x-slack-request-timestamp")
    );
    assert_eq!(
        deliver(&c, NOW, &body, &[("x-slack-request-timestamp", &ts)]).unwrap_err(),
        VerifyError::Missing("x-slack-signature")
    );
    let wrong = sign("another-secret", NOW, &body);
    assert_eq!(
        deliver(
            &c,
            NOW,
            &body,
            &[
                ("x-slack-request-timestamp", &ts),
                ("x-slack-signature", &wrong)
            ]
        )
        .unwrap_err(),
        VerifyError::Mismatch
    );
    // A signature for another timestamp does not carry over.
    assert_eq!(
        deliver(
            &c,
            NOW + 1,
            &body,
            &[
                ("x-slack-request-timestamp", &(NOW + 1).to_string()),
                ("x-slack-signature", &good)
            ]
        )
        .unwrap_err(),
        VerifyError::Mismatch
    );
    for junk_ts in ["", "12a", "99999999999999999999999", "-9223372036854775808"] {
        assert!(
            deliver(
                &c,
                NOW,
                &body,
                &[
                    ("x-slack-request-timestamp", junk_ts),
                    ("x-slack-signature", &good)
                ]
            )
            .is_err(),
            "{junk_ts:?}"
        );
    }
    for junk_sig in ["", "v0=", "v0=zz", "v1=00", "abc"] {
        assert!(
            deliver(
                &c,
                NOW,
                &body,
                &[
                    ("x-slack-request-timestamp", &ts),
                    ("x-slack-signature", junk_sig)
                ]
            )
            .is_err(),
            "{junk_sig:?}"
        );
    }
}

#[test]
fn signed_url_verification_answers_the_challenge_as_text() {
    let got = signed(&connector(), &load("url_verification.json"));
    assert_eq!(
        got,
        Ok(Ok(Ingress::Reply(Reply {
            status: 200,
            content_type: "text/plain",
            body: Bytes::from_static(b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"),
        })))
    );
}

#[test]
fn event_callback_is_one_raw_event_under_the_outer_event_id_with_retry_headers_kept() {
    let c = connector();
    let body = load("message.json");
    let ts = NOW.to_string();
    let sig = sign(SECRET, NOW, &body);
    let evs = match deliver(
        &c,
        NOW,
        &body,
        &[
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &sig),
            ("x-slack-retry-num", "1"),
            ("x-slack-retry-reason", "http_timeout"),
        ],
    ) {
        Ok(Ok(Ingress::Events(e))) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].provider_event_id, "Ev123ABC456");
    assert_eq!(evs[0].kind, "message");
    assert_eq!(evs[0].occurred_at, Some(1355517523000));
    assert_eq!(evs[0].payload.as_ref(), body.as_slice());
    assert_eq!(
        evs[0].headers,
        vec![
            ("x-slack-retry-num".to_string(), "1".to_string()),
            (
                "x-slack-retry-reason".to_string(),
                "http_timeout".to_string()
            )
        ]
    );
}

#[test]
fn app_rate_limited_stores_nothing_and_bodies_without_an_event_id_or_known_shape_are_refused() {
    let c = connector();
    assert_eq!(
        signed(
            &c,
            br#"{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820}"#
        ),
        Ok(Ok(Ingress::Events(vec![])))
    );
    assert!(matches!(
        signed(&c, br#"{"type":"event_callback"}"#),
        Ok(Err(IngressError::MissingField(_)))
    ));
    assert!(matches!(
        signed(&c, b"{not json"),
        Ok(Err(IngressError::Malformed(_)))
    ));
    assert!(matches!(
        signed(&c, b"a=b"),
        Ok(Err(IngressError::Malformed(_)))
    ));
}

#[test]
fn a_channel_message_normalises_with_team_scoped_id_email_and_name() {
    let e = normalize_one(&connector(), &load("message.json"));
    assert_eq!(e.channel, "slack");
    assert_eq!(e.direction, Direction::Inbound);
    assert_eq!(
        e.thread_key.as_deref(),
        Some("C123ABC456:1355517523.000005")
    );
    assert_eq!(e.occurred_at, 1355517523000);
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::platform_id("slack:T123ABC456", "U123ABC456"),
            IdentityClaim::email("ada@example.com"),
            IdentityClaim::name("Ada Lovelace"),
        ]
    );
    assert_eq!(
        e.body,
        EventBody::Message {
            message_id: Some("C123ABC456:1355517523.000005".into()),
            text: "Where is my order?".into(),
            attachments: vec![],
            reply_to: None,
        }
    );
}

#[test]
fn a_thread_reply_with_a_file_joins_the_parent_thread_and_keeps_the_file() {
    let e = normalize_one(&connector(), &load("thread_reply_with_file.json"));
    assert_eq!(
        e.thread_key.as_deref(),
        Some("C123ABC456:1355517523.000005")
    );
    assert_eq!(
        e.body,
        EventBody::Message {
            message_id: Some("C123ABC456:1355517600.000100".into()),
            text: "Here is the photo".into(),
            attachments: vec![Attachment {
                kind: Some("image".into()),
                url: Some(
                    "https://files.slack.com/files-pri/T123ABC456-F0123ABCD/parcel.jpg".into()
                ),
                media_id: Some("F0123ABCD".into()),
                name: Some("parcel.jpg".into()),
                content_type: Some("image/jpeg".into()),
                size: Some(48213),
            }],
            reply_to: Some("C123ABC456:1355517523.000005".into()),
        }
    );
}

#[test]
fn message_changed_is_an_edit_and_message_deleted_a_delete_of_the_channel_scoped_id() {
    let c = connector();
    let e = normalize_one(&c, &load("message_changed.json"));
    assert_eq!(
        e.body,
        EventBody::Edit {
            message_id: "C123ABC456:1355517523.000005".into(),
            text: "Where is my order #1001?".into(),
        }
    );
    assert_eq!(
        e.thread_key.as_deref(),
        Some("C123ABC456:1355517523.000005")
    );
    let d = normalize_one(&c, &load("message_deleted.json"));
    assert_eq!(
        d.body,
        EventBody::Delete {
            message_id: "C123ABC456:1355517523.000005".into()
        }
    );
}

#[test]
fn a_bot_message_is_an_outbound_echo_with_the_id_our_send_returns() {
    let e = normalize_one(&connector(), &load("bot_message.json"));
    assert_eq!(e.direction, Direction::Outbound);
    assert!(e.claims.is_empty(), "a bot is not the customer");
    assert!(
        matches!(&e.body, EventBody::Message { message_id: Some(id), .. } if id == "C123ABC456:1355517900.000400")
    );
    assert_eq!(
        e.thread_key.as_deref(),
        Some("C123ABC456:1355517523.000005")
    );
}

#[test]
fn other_event_types_and_odd_payloads_are_unsupported_never_dropped_or_panicking() {
    let c = connector();
    let e = normalize_one(&c, &load("reaction_added.json"));
    assert!(
        matches!(&e.body, EventBody::Unsupported { reason } if reason.contains("reaction_added"))
    );
    let mut s = stored(&events(&c, &load("message.json"))[0]);
    for payload in [
        &br#"{"type":"event_callback","event":{"type":"message","subtype":"channel_join","channel":"C1","user":"U1","ts":"1.2"}}"#[..],
        br#"{"type":"event_callback","event":{"type":"message"}}"#,
        br#"{"type":"event_callback","event":{"type":"message","subtype":"message_changed","channel":"C1"}}"#,
        br#"{"type":"event_callback","event":{"type":"message","channel":"C1","ts":"1.2","files":[1,{"size":"x"}],"user":{"id":1}}}"#,
        br#"{"type":"event_callback","event":{"type":"message","channel":"C1","ts":"1e400"}}"#,
        br#"{"type":"something_new"}"#,
        b"payload=%7B%22type%22%3A%22block_actions%22%7D",
    ] {
        s.payload = Bytes::copy_from_slice(payload);
        let out = c.normalizer().normalize(&s).unwrap();
        assert_eq!(out.len(), 1, "{}", String::from_utf8_lossy(payload));
    }
    s.payload = Bytes::from_static(b"{truncated");
    assert!(c.normalizer().normalize(&s).is_err());
}

#[test]
fn config_names_the_bad_key_and_reads_env_secrets() {
    let build = |t: &str, env: &dyn Fn(&str) -> Option<String>| {
        slack::build("s", "connectors[2]", toml::from_str(t).unwrap(), env).err()
    };
    let none = |_: &str| None;
    assert_eq!(
        build("id='s'\nkind='slack'\nbot_token='x'", &none)
            .unwrap()
            .key,
        "connectors[2].signing_secret"
    );
    assert_eq!(
        build("id='s'\nkind='slack'\nsigning_secret='x'", &none)
            .unwrap()
            .key,
        "connectors[2].bot_token"
    );
    assert_eq!(
        build(
            "id='s'\nkind='slack'\nsigning_secret='x'\nbot_token='y'\ntimestamp_tolerance_secs=0",
            &none
        )
        .unwrap()
        .key,
        "connectors[2].timestamp_tolerance_secs"
    );
    let env = |k: &str| (k == "SLACK_SECRET" || k == "SLACK_TOKEN").then(|| "v".to_string());
    assert!(build(
        "id='s'\nkind='slack'\nsigning_secret_env='SLACK_SECRET'\nbot_token_env='SLACK_TOKEN'",
        &env
    )
    .is_none());
    let e = build(
        "id='s'\nkind='slack'\nsigning_secret='x'\nbot_token='y'\nverification_token='z'",
        &none,
    )
    .unwrap();
    assert!(
        e.to_string().contains("unknown field `verification_token`"),
        "{e}"
    );
}

fn reply(thread: &str, urls: &[&str]) -> OutboundMessage {
    OutboundMessage {
        id: "out-1".into(),
        idempotency_key: "k-1".into(),
        thread_key: thread.into(),
        text: "Your parcel left today".into(),
        attachment_urls: urls.iter().map(|u| u.to_string()).collect(),
        in_reply_to: Some("C123ABC456:1355517600.000100".into()),
    }
}

const POST: &str = "/chat.postMessage";

#[tokio::test]
async fn post_message_goes_into_the_thread_with_the_bot_token_and_returns_channel_and_ts() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        POST,
        [Answer::json(
            json!({"ok": true, "channel": "C123ABC456", "ts": "1355517900.000400",
            "message": {"text": "Your parcel left today", "bot_id": "B0BOT00001"}}),
        )],
    );
    let c = connector_with(SECRET, &fake.base, 300);
    let sent = c
        .outbound()
        .unwrap()
        .send(&reply(
            "C123ABC456:1355517523.000005",
            &["https://example.com/label.pdf"],
        ))
        .await
        .unwrap();
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some("C123ABC456:1355517900.000400")
    );
    let got = fake.received_on(POST);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("authorization"), Some("Bearer xoxb-test"));
    assert_eq!(
        got[0].json(),
        json!({"channel": "C123ABC456", "thread_ts": "1355517523.000005",
               "text": "Your parcel left today\nhttps://example.com/label.pdf"})
    );
}

#[tokio::test]
async fn a_channel_only_thread_key_posts_at_the_top_level() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        POST,
        [Answer::json(
            json!({"ok": true, "channel": "G8PSS9T3V", "ts": "1.2"}),
        )],
    );
    let c = connector_with(SECRET, &fake.base, 300);
    c.outbound()
        .unwrap()
        .send(&reply("G8PSS9T3V", &[]))
        .await
        .unwrap();
    let body = fake.received_on(POST)[0].json();
    assert_eq!(body["channel"], "G8PSS9T3V");
    assert!(body.get("thread_ts").is_none(), "{body}");
}

#[tokio::test]
async fn ok_false_errors_and_http_errors_map_to_the_hub_retry_classes() {
    let err = |e: &str| Answer::json(json!({"ok": false, "error": e}));
    let cases = [
        (
            err("ratelimited"),
            ConnectorError::RateLimited { retry_after: None },
        ),
        (
            Answer::status_json(429, json!({"ok": false, "error": "ratelimited"}))
                .header("retry-after", "3"),
            ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
        ),
        (
            err("invalid_auth"),
            ConnectorError::Unauthorized("Slack: invalid_auth".into()),
        ),
        (
            err("not_authed"),
            ConnectorError::Unauthorized("Slack: not_authed".into()),
        ),
        (
            err("token_revoked"),
            ConnectorError::Unauthorized("Slack: token_revoked".into()),
        ),
        (
            err("account_inactive"),
            ConnectorError::Unauthorized("Slack: account_inactive".into()),
        ),
        (
            err("channel_not_found"),
            ConnectorError::Permanent("Slack: channel_not_found".into()),
        ),
        (
            err("not_in_channel"),
            ConnectorError::Permanent("Slack: not_in_channel".into()),
        ),
        (
            err("is_archived"),
            ConnectorError::Permanent("Slack: is_archived".into()),
        ),
        (
            err("msg_too_long"),
            ConnectorError::Permanent("Slack: msg_too_long".into()),
        ),
        (
            err("internal_error"),
            ConnectorError::Transient("Slack: internal_error".into()),
        ),
        (
            err("fatal_error"),
            ConnectorError::Transient("Slack: fatal_error".into()),
        ),
        (
            err("service_unavailable"),
            ConnectorError::Transient("Slack: service_unavailable".into()),
        ),
        (
            Answer::status(503, ""),
            ConnectorError::Transient("HTTP 503".into()),
        ),
        (
            Answer::status(200, "<html>"),
            ConnectorError::Transient("Slack answered with a body that is not JSON".into()),
        ),
    ];
    for (answer, want) in cases {
        let fake = FakeProvider::start().await;
        fake.on("POST", POST, [answer]);
        let c = connector_with(SECRET, &fake.base, 300);
        let got = c
            .outbound()
            .unwrap()
            .send(&reply("C123ABC456:1355517523.000005", &[]))
            .await;
        assert_eq!(got, Err(want));
    }
}

#[test]
fn an_email_in_a_profile_object_is_claimed_lower_cased() {
    let c = connector();
    let body = br#"{"type":"event_callback","team_id":"T9","event_id":"Ev9","event":{"type":"message","channel":"D1","user":"U9","text":"hi","ts":"1.5","profile":{"email":"Bob@Example.COM","display_name":"bob"}}}"#;
    let e = normalize_one(&c, body);
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::platform_id("slack:T9", "U9"),
            IdentityClaim::email("bob@example.com"),
            IdentityClaim::name("bob"),
        ]
    );
}

#[test]
fn direct_messages_share_one_conversation_per_dm_channel_while_channels_split_by_thread() {
    let dm = |ts: &str, thread_ts: Option<&str>| {
        let mut ev = json!({"type": "message", "channel": "D024BE91L", "user": "U123ABC456",
                            "text": "hi", "ts": ts, "channel_type": "im"});
        if let Some(t) = thread_ts {
            ev["thread_ts"] = json!(t);
        }
        let body = json!({"team_id": "T123ABC456", "event": ev, "type": "event_callback",
                          "event_id": format!("Ev{ts}"), "event_time": 1355517523});
        normalize_one(&connector(), body.to_string().as_bytes())
    };
    let first = dm("1355517523.000005", None);
    let second = dm("1355517999.000001", None);
    let in_thread = dm("1355518000.000001", Some("1355517523.000005"));
    for e in [&first, &second, &in_thread] {
        assert_eq!(e.thread_key.as_deref(), Some("D024BE91L"), "{e:?}");
    }
    // A channel message still opens its own thread conversation.
    let e = normalize_one(&connector(), &load("message.json"));
    assert_eq!(
        e.thread_key.as_deref(),
        Some("C123ABC456:1355517523.000005")
    );
}

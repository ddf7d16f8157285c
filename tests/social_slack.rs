//! Slack through the real app, on SQLite and PostgreSQL: the published signing vector (a
//! slash command) on the webhook route, stale and bad signatures, the url_verification
//! handshake, a channel message on the timeline, retry dedupe, replies into the thread, the
//! echo of our own reply, and `ok:false` answers mapped to reply states.

mod common;

use common::{assert_problem, spawn_app_with, Db, TestApp};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use switchboard_core::fake::{Answer, FakeProvider};

const SECRET: &str = "slack-signing-secret";
const VECTOR_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const VECTOR_TS: &str = "1531420618";
const VECTOR_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
const VECTOR_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const POST: &str = "/chat.postMessage";
const CHANNEL: &str = "C123ABC456";
const PARENT_TS: &str = "1355517523.000005";

fn slack_table(secret: &str, api_base: &str, tolerance: Option<i64>) -> toml::Value {
    let mut t = format!(
        r#"
id = "slack"
kind = "slack"
signing_secret = "{secret}"
bot_token = "xoxb-test"
api_base = "{api_base}"
send_rate_per_sec = 200
send_burst = 50
"#
    );
    if let Some(tol) = tolerance {
        t.push_str(&format!("timestamp_tolerance_secs = {tol}\n"));
    }
    toml::from_str(&t).expect("slack table")
}

async fn app_with_slack(
    db: Db,
    secret: &str,
    api_base: &str,
    tolerance: Option<i64>,
) -> Option<TestApp> {
    let t = slack_table(secret, api_base, tolerance);
    spawn_app_with(db, move |s| s.connectors.push(t)).await
}

fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

async fn post(
    app: &TestApp,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/slack", app.addr))
        .header("content-type", content_type)
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// Posts `body` as Slack would: JSON, signed now with `SECRET`, plus `extra` headers.
async fn post_signed(app: &TestApp, body: &[u8], extra: &[(&str, &str)]) -> reqwest::Response {
    let ts = now();
    let sig = sign(SECRET, &ts, body);
    let mut h = vec![
        ("x-slack-request-timestamp", ts.as_str()),
        ("x-slack-signature", sig.as_str()),
    ];
    h.extend_from_slice(extra);
    post(app, "application/json", body, &h).await
}

fn message_event(event_id: &str, ts: &str, thread_ts: Option<&str>, text: &str) -> Vec<u8> {
    let mut ev = json!({"type": "message", "channel": CHANNEL, "user": "U123ABC456",
        "text": text, "ts": ts, "event_ts": ts, "channel_type": "channel",
        "user_profile": {"real_name": "Ada Lovelace", "display_name": "ada", "email": "Ada@Example.com"}});
    if let Some(t) = thread_ts {
        ev["thread_ts"] = json!(t);
    }
    serde_json::to_vec(&json!({"token": "XXYYZZ", "team_id": "T123ABC456",
        "api_app_id": "A123ABC456", "event": ev, "type": "event_callback",
        "authed_users": ["U0BOT00001"], "event_id": event_id, "event_time": 1355517523}))
    .unwrap()
}

async fn raw_count(app: &TestApp) -> i64 {
    app.store.count("raw_events").await.unwrap()
}

async fn only_conversation(app: &TestApp) -> serde_json::Value {
    let list = app.get_json("/api/v1/conversations?connector=slack").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    items[0].clone()
}

async fn identities(app: &TestApp, customer_id: &str) -> Vec<serde_json::Value> {
    let c = app
        .get_json(&format!("/api/v1/customers/{customer_id}"))
        .await;
    c["identities"].as_array().unwrap().clone()
}

async fn published_vector_slash_command_passes_the_route_with_a_large_tolerance(db: Db) {
    let Some(app) =
        app_with_slack(db, VECTOR_SECRET, "http://127.0.0.1:9", Some(2_000_000_000)).await
    else {
        return;
    };
    let r = post(
        &app,
        "application/x-www-form-urlencoded",
        VECTOR_BODY.as_bytes(),
        &[
            ("x-slack-request-timestamp", VECTOR_TS),
            ("x-slack-signature", VECTOR_SIG),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "accepted"
    );
    app.drain().await;
    let conv = only_conversation(&app).await;
    assert_eq!(conv["thread_key"], "G8PSS9T3V");
    let ids = identities(&app, conv["customer_id"].as_str().unwrap()).await;
    assert!(
        ids.iter().any(|i| i["kind"] == "platform_id"
            && i["scope"] == "slack:T1DC2JH3J"
            && i["value"] == "U2CERLKJA"),
        "{ids:?}"
    );
    let detail = app
        .get_json(&format!(
            "/api/v1/conversations/{}",
            conv["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(detail["messages"][0]["body"]["text"], "/webhook-collect");
    app.stop().await;
}
on_both_backends!(
    published_vector_slash_command_passes_the_route_with_a_large_tolerance,
    super::published_vector_slash_command_passes_the_route_with_a_large_tolerance
);

async fn published_vector_with_the_default_tolerance_is_401_expired_and_stores_nothing(db: Db) {
    let Some(app) = app_with_slack(db, VECTOR_SECRET, "http://127.0.0.1:9", None).await else {
        return;
    };
    let r = post(
        &app,
        "application/x-www-form-urlencoded",
        VECTOR_BODY.as_bytes(),
        &[
            ("x-slack-request-timestamp", VECTOR_TS),
            ("x-slack-signature", VECTOR_SIG),
        ],
    )
    .await;
    assert_problem(r, 401, "expired_timestamp").await;
    assert_eq!(raw_count(&app).await, 0);
    app.stop().await;
}
on_both_backends!(
    published_vector_with_the_default_tolerance_is_401_expired_and_stores_nothing,
    super::published_vector_with_the_default_tolerance_is_401_expired_and_stores_nothing
);

async fn tampered_body_wrong_secret_and_missing_headers_are_401_and_store_nothing(db: Db) {
    let Some(app) = app_with_slack(db, SECRET, "http://127.0.0.1:9", None).await else {
        return;
    };
    let body = message_event("Ev1", PARENT_TS, None, "hello");
    let ts = now();
    let good = sign(SECRET, &ts, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b"------");
    let r = post(
        &app,
        "application/json",
        &tampered,
        &[
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &good),
        ],
    )
    .await;
    assert_problem(r, 401, "bad_signature").await;
    let wrong = sign("not-the-secret", &ts, &body);
    let r = post(
        &app,
        "application/json",
        &body,
        &[
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &wrong),
        ],
    )
    .await;
    assert_problem(r, 401, "bad_signature").await;
    let r = post(
        &app,
        "application/json",
        &body,
        &[("x-slack-signature", &good)],
    )
    .await;
    assert_problem(r, 401, "missing_signature").await;
    let r = post(
        &app,
        "application/json",
        &body,
        &[("x-slack-request-timestamp", &ts)],
    )
    .await;
    assert_problem(r, 401, "missing_signature").await;
    assert_eq!(raw_count(&app).await, 0);
    app.stop().await;
}
on_both_backends!(
    tampered_body_wrong_secret_and_missing_headers_are_401_and_store_nothing,
    super::tampered_body_wrong_secret_and_missing_headers_are_401_and_store_nothing
);

async fn signed_url_verification_answers_the_challenge_as_plain_text(db: Db) {
    let Some(app) = app_with_slack(db, SECRET, "http://127.0.0.1:9", None).await else {
        return;
    };
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let r = post_signed(&app, body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(
        r.text().await.unwrap(),
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    assert_eq!(raw_count(&app).await, 0);
    app.stop().await;
}
on_both_backends!(
    signed_url_verification_answers_the_challenge_as_plain_text,
    super::signed_url_verification_answers_the_challenge_as_plain_text
);

async fn a_message_reaches_the_timeline_as_the_slack_user_and_a_retry_adds_nothing(db: Db) {
    let Some(app) = app_with_slack(db, SECRET, "http://127.0.0.1:9", None).await else {
        return;
    };
    let body = message_event("Ev123ABC456", PARENT_TS, None, "Where is my order?");
    assert_eq!(post_signed(&app, &body, &[]).await.status(), 200);
    app.drain().await;
    // Slack retries the same event (same event_id) after a timeout.
    let r = post_signed(
        &app,
        &body,
        &[
            ("x-slack-retry-num", "1"),
            ("x-slack-retry-reason", "http_timeout"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "duplicate"
    );
    app.drain().await;
    assert_eq!(raw_count(&app).await, 1);

    let conv = only_conversation(&app).await;
    assert_eq!(conv["thread_key"], format!("{CHANNEL}:{PARENT_TS}"));
    assert_eq!(conv["channel"], "slack");
    let detail = app
        .get_json(&format!(
            "/api/v1/conversations/{}",
            conv["id"].as_str().unwrap()
        ))
        .await;
    let msgs = detail["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{detail}");
    assert_eq!(msgs[0]["body"]["text"], "Where is my order?");
    let ids = identities(&app, conv["customer_id"].as_str().unwrap()).await;
    assert!(
        ids.iter().any(|i| i["kind"] == "platform_id"
            && i["scope"] == "slack:T123ABC456"
            && i["value"] == "U123ABC456"),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .any(|i| i["kind"] == "email" && i["value"] == "ada@example.com"),
        "{ids:?}"
    );
    app.stop().await;
}
on_both_backends!(
    a_message_reaches_the_timeline_as_the_slack_user_and_a_retry_adds_nothing,
    super::a_message_reaches_the_timeline_as_the_slack_user_and_a_retry_adds_nothing
);

/// Two customer messages in one thread, then a reply; returns the conversation id and the
/// reply once it is sent or failed.
async fn reply_once(app: &TestApp, key: &str) -> (String, serde_json::Value) {
    let body = message_event("Ev-parent", PARENT_TS, None, "Where is my order?");
    assert_eq!(post_signed(app, &body, &[]).await.status(), 200);
    // A later message in the same thread: the conversation stays the parent's.
    let body = message_event(
        "Ev-child",
        "1355517600.000100",
        Some(PARENT_TS),
        "Any news?",
    );
    assert_eq!(post_signed(app, &body, &[]).await.status(), 200);
    app.drain().await;
    let conv = only_conversation(app).await;
    let conv_id = conv["id"].as_str().unwrap().to_string();
    let r = app
        .client
        .post(format!(
            "{}/api/v1/conversations/{conv_id}/replies",
            app.addr
        ))
        .bearer_auth(&app.token)
        .header("idempotency-key", key)
        .json(&json!({"text": "It left today"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let m: serde_json::Value = r.json().await.unwrap();
    let id = m["id"].as_str().unwrap().to_string();
    let m = app
        .wait_message(&conv_id, &id, |s| s == "sent" || s == "failed")
        .await;
    (conv_id, m)
}

async fn a_reply_goes_into_the_thread_and_its_echo_is_not_a_new_message(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        POST,
        [Answer::json(
            json!({"ok": true, "channel": CHANNEL, "ts": "1355517900.000400"}),
        )],
    );
    let Some(app) = app_with_slack(db, SECRET, &fake.base, None).await else {
        return;
    };
    let (conv_id, m) = reply_once(&app, "reply-1").await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(
        m["provider_message_id"],
        format!("{CHANNEL}:1355517900.000400")
    );
    let got = fake.received_on(POST);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("authorization"), Some("Bearer xoxb-test"));
    assert_eq!(
        got[0].json(),
        json!({"channel": CHANNEL, "thread_ts": PARENT_TS, "text": "It left today"})
    );
    // Slack echoes our post back as a bot message: the hub recognises it as the reply.
    let echo = serde_json::to_vec(&json!({"token": "XXYYZZ", "team_id": "T123ABC456",
        "type": "event_callback", "event_id": "Ev-echo", "event_time": 1355517900,
        "event": {"type": "message", "channel": CHANNEL, "user": "U0BOT00001",
            "bot_id": "B0BOT00001", "text": "It left today", "ts": "1355517900.000400",
            "thread_ts": PARENT_TS}}))
    .unwrap();
    assert_eq!(post_signed(&app, &echo, &[]).await.status(), 200);
    app.drain().await;
    let detail = app
        .get_json(&format!("/api/v1/conversations/{conv_id}"))
        .await;
    let msgs = detail["messages"].as_array().unwrap();
    assert_eq!(
        msgs.len(),
        3,
        "two customer messages and one reply: {detail}"
    );
    assert_eq!(
        msgs.iter().filter(|e| e["direction"] == "outbound").count(),
        1
    );
    app.stop().await;
}
on_both_backends!(
    a_reply_goes_into_the_thread_and_its_echo_is_not_a_new_message,
    super::a_reply_goes_into_the_thread_and_its_echo_is_not_a_new_message
);

async fn ok_false_ratelimited_is_retried_then_sent(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        POST,
        [
            Answer::json(json!({"ok": false, "error": "ratelimited"})),
            Answer::json(json!({"ok": true, "channel": CHANNEL, "ts": "1355517900.000400"})),
        ],
    );
    let Some(app) = app_with_slack(db, SECRET, &fake.base, None).await else {
        return;
    };
    let (_, m) = reply_once(&app, "reply-rl").await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(fake.received_on(POST).len(), 2);
    app.stop().await;
}
on_both_backends!(
    ok_false_ratelimited_is_retried_then_sent,
    super::ok_false_ratelimited_is_retried_then_sent
);

async fn ok_false_channel_not_found_fails_at_once_with_the_reason(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        POST,
        [Answer::json(
            json!({"ok": false, "error": "channel_not_found"}),
        )],
    );
    let Some(app) = app_with_slack(db, SECRET, &fake.base, None).await else {
        return;
    };
    let (_, m) = reply_once(&app, "reply-cnf").await;
    assert_eq!(m["state"], "failed", "{m}");
    assert!(
        m["error"].as_str().unwrap().contains("channel_not_found"),
        "{m}"
    );
    assert_eq!(m["attempts"], 1);
    assert_eq!(fake.received_on(POST).len(), 1);
    app.stop().await;
}
on_both_backends!(
    ok_false_channel_not_found_fails_at_once_with_the_reason,
    super::ok_false_channel_not_found_fails_at_once_with_the_reason
);

//! LINE through the real app, on SQLite and PostgreSQL: signature checks on the webhook route
//! (the published SDK vector included), the console's empty Verify batch, a customer message
//! on the timeline, redelivery dedupe, and a reply pushed to a fake LINE API.

mod common;

use base64::Engine;
use common::{assert_problem, spawn_app_with, Db, TestApp};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use switchboard_core::fake::{Answer, FakeProvider};

const SECRET: &str = "line-channel-secret";
const USER: &str = "U206d25c2ea6bd87c17655609a1c37cb8";
const PUSH: &str = "/v2/bot/message/push";

fn line_table(secret: &str, api_base: &str) -> toml::Value {
    toml::from_str(&format!(
        r#"
id = "line"
kind = "line"
channel_secret = "{secret}"
channel_access_token = "line-token"
api_base = "{api_base}"
send_rate_per_sec = 200
send_burst = 50
"#
    ))
    .expect("line table")
}

async fn app_with_line(db: Db, secret: &str, api_base: &str) -> Option<TestApp> {
    let t = line_table(secret, api_base);
    spawn_app_with(db, move |s| s.connectors.push(t)).await
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn post(app: &TestApp, body: &[u8], signature: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/line", app.addr))
        .header("content-type", "application/json; charset=UTF-8")
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("x-line-signature", s);
    }
    req.send().await.expect("request")
}

fn text_event(event_id: &str, message_id: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"destination": "U123", "events": [{
        "replyToken": "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA", "type": "message", "mode": "active",
        "timestamp": 1462629479859_i64, "source": {"type": "user", "userId": USER},
        "webhookEventId": event_id, "deliveryContext": {"isRedelivery": false},
        "message": {"id": message_id, "type": "text", "text": text, "quoteToken": "q"}}]}))
    .unwrap()
}

async fn raw_count(app: &TestApp) -> i64 {
    app.store.count("raw_events").await.unwrap()
}

async fn published_sdk_vector_passes_the_signature_then_is_400_malformed_and_stores_nothing(
    db: Db,
) {
    let Some(app) = app_with_line(db, "channel_secret", "http://127.0.0.1:9").await else {
        return;
    };
    let r = post(
        &app,
        b"bodybodybodybody",
        Some("/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k="),
    )
    .await;
    // Not 401: the signature is right, only the body is not a LINE batch.
    assert_problem(r, 400, "malformed_body").await;
    let r = post(&app, b"bodybodybodybody", Some("invalid_signature")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(raw_count(&app).await, 0);
    app.stop().await;
}
on_both_backends!(
    published_sdk_vector_passes_the_signature_then_is_400_malformed_and_stores_nothing,
    super::published_sdk_vector_passes_the_signature_then_is_400_malformed_and_stores_nothing
);

async fn tampered_body_wrong_secret_and_missing_signature_are_401_and_store_nothing(db: Db) {
    let Some(app) = app_with_line(db, SECRET, "http://127.0.0.1:9").await else {
        return;
    };
    let body = text_event("ev-1", "m-1", "hello");
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let r = post(&app, &tampered, Some(&sign(SECRET, &body))).await;
    assert_problem(r, 401, "bad_signature").await;
    let r = post(&app, &body, Some(&sign("not-the-secret", &body))).await;
    assert_problem(r, 401, "bad_signature").await;
    let r = post(&app, &body, None).await;
    assert_problem(r, 401, "missing_signature").await;
    assert_eq!(raw_count(&app).await, 0);
    app.stop().await;
}
on_both_backends!(
    tampered_body_wrong_secret_and_missing_signature_are_401_and_store_nothing,
    super::tampered_body_wrong_secret_and_missing_signature_are_401_and_store_nothing
);

async fn console_verify_with_empty_events_is_200_and_stores_nothing(db: Db) {
    let Some(app) = app_with_line(db, SECRET, "http://127.0.0.1:9").await else {
        return;
    };
    let body = br#"{"destination":"U123","events":[]}"#;
    let r = post(&app, body, Some(&sign(SECRET, body))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "ignored"
    );
    assert_eq!(raw_count(&app).await, 0);
    app.stop().await;
}
on_both_backends!(
    console_verify_with_empty_events_is_200_and_stores_nothing,
    super::console_verify_with_empty_events_is_200_and_stores_nothing
);

/// The single conversation of the `line` connector.
async fn line_conversation(app: &TestApp) -> serde_json::Value {
    let list = app.get_json("/api/v1/conversations?connector=line").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    items[0].clone()
}

async fn a_message_reaches_the_timeline_as_the_line_user_and_a_redelivery_adds_nothing(db: Db) {
    let Some(app) = app_with_line(db, SECRET, "http://127.0.0.1:9").await else {
        return;
    };
    let body = text_event("01FZ74A0TDDPYRVKNK77XKC3ZR", "325708", "Hello, world");
    let r = post(&app, &body, Some(&sign(SECRET, &body))).await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    // LINE redelivers with the same webhookEventId.
    let r = post(&app, &body, Some(&sign(SECRET, &body))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "duplicate"
    );
    app.drain().await;
    assert_eq!(raw_count(&app).await, 1);

    let conv = line_conversation(&app).await;
    assert_eq!(conv["thread_key"], format!("user:{USER}"));
    assert_eq!(conv["channel"], "line");
    let id = conv["id"].as_str().unwrap();
    let detail = app.get_json(&format!("/api/v1/conversations/{id}")).await;
    let msgs = detail["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{detail}");
    assert_eq!(msgs[0]["body"]["text"], "Hello, world");
    assert_eq!(msgs[0]["body"]["message_id"], "325708");
    let customer = app
        .get_json(&format!(
            "/api/v1/customers/{}",
            conv["customer_id"].as_str().unwrap()
        ))
        .await;
    let ids = customer["identities"].as_array().unwrap();
    assert!(
        ids.iter()
            .any(|i| i["kind"] == "platform_id" && i["scope"] == "line:U123" && i["value"] == USER),
        "{customer}"
    );
    app.stop().await;
}
on_both_backends!(
    a_message_reaches_the_timeline_as_the_line_user_and_a_redelivery_adds_nothing,
    super::a_message_reaches_the_timeline_as_the_line_user_and_a_redelivery_adds_nothing
);

async fn a_reply_is_pushed_to_the_line_user_with_token_and_retry_key(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        PUSH,
        [Answer::json(
            json!({"sentMessages": [{"id": "461230966842064897", "quoteToken": "x"}]}),
        )],
    );
    let Some(app) = app_with_line(db, SECRET, &fake.base).await else {
        return;
    };
    let body = text_event("ev-1", "325708", "Where is my parcel?");
    assert_eq!(
        post(&app, &body, Some(&sign(SECRET, &body))).await.status(),
        200
    );
    app.drain().await;
    let conv = line_conversation(&app).await;
    let conv_id = conv["id"].as_str().unwrap();
    let r = app
        .client
        .post(format!(
            "{}/api/v1/conversations/{conv_id}/replies",
            app.addr
        ))
        .bearer_auth(&app.token)
        .header("idempotency-key", "reply-1")
        .json(&json!({"text": "It left today"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let m: serde_json::Value = r.json().await.unwrap();
    let id = m["id"].as_str().unwrap();
    let m = app
        .wait_message(conv_id, id, |s| s == "sent" || s == "failed")
        .await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(m["provider_message_id"], "461230966842064897");
    let got = fake.received_on(PUSH);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("authorization"), Some("Bearer line-token"));
    assert_eq!(
        got[0].header("x-line-retry-key"),
        Some(switchboard_social::line::retry_key("reply-1").as_str())
    );
    assert_eq!(
        got[0].json(),
        json!({"to": USER, "messages": [{"type": "text", "text": "It left today"}]})
    );
    app.stop().await;
}
on_both_backends!(
    a_reply_is_pushed_to_the_line_user_with_token_and_retry_key,
    super::a_reply_is_pushed_to_the_line_user_with_token_and_retry_key
);

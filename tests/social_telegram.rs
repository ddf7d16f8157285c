//! The Telegram connector through the real app, on SQLite and PostgreSQL: the secret-token
//! webhook, dedupe by update_id, the poller runner with its stored cursor (across a restart),
//! and replies delivered to a fake Bot API.

mod common;

use std::time::Duration;

use common::{assert_problem, spawn_app_on, spawn_app_with, Db, TestApp};
use serde_json::json;
use switchboard::config::Settings;
use switchboard_core::fake::{Answer, FakeProvider};

const TOKEN: &str = "7000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const TOKEN_SECRET_HALF: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const SECRET: &str = "hook-Secret_123";

fn fixture(name: &str) -> Vec<u8> {
    switchboard_core::testkit::fixture(
        concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/social"),
        "telegram",
        name,
    )
}

/// Adds `[[connectors]] id = "tg" kind = "telegram"` and makes the workers quick.
fn with_telegram(s: &mut Settings, mode: &str, api_base: &str) {
    let table: toml::Value = toml::from_str(&format!(
        r#"
id = "tg"
kind = "telegram"
bot_token = "{TOKEN}"
secret_token = "{SECRET}"
mode = "{mode}"
api_base = "{api_base}"
poll_timeout_secs = 1
send_rate_per_sec = 200
send_burst = 50
"#
    ))
    .expect("telegram table");
    s.connectors.push(table);
    s.poller.min_interval_ms = 20;
    s.poller.base_backoff_ms = 50;
    s.poller.max_backoff_ms = 200;
}

fn updates_path() -> String {
    format!("/bot{TOKEN}/getUpdates")
}

/// A text message from Ada in her private chat.
fn update(update_id: i64, message_id: i64, text: &str) -> serde_json::Value {
    json!({"update_id": update_id, "message": {"message_id": message_id,
        "from": {"id": 111222333, "is_bot": false, "first_name": "Ada", "last_name": "Lovelace"},
        "chat": {"id": 111222333, "type": "private", "first_name": "Ada"},
        "date": 1764590400, "text": text}})
}

fn page(updates: Vec<serde_json::Value>) -> Answer {
    Answer::json(json!({"ok": true, "result": updates}))
}

/// An empty long poll that holds the connection a little, as Telegram does.
fn idle() -> Answer {
    page(vec![]).delayed(Duration::from_millis(200))
}

async fn post_update(app: &TestApp, body: &[u8], secret: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/tg", app.addr))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = secret {
        req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
    }
    req.send().await.expect("request")
}

/// The one Telegram conversation and the texts of its messages, oldest first.
async fn telegram_messages(app: &TestApp) -> (String, Vec<String>) {
    let convs = app.get_json("/api/v1/conversations?connector=tg").await;
    let items = convs["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{convs}");
    assert_eq!(items[0]["thread_key"], "111222333");
    let id = items[0]["id"].as_str().expect("id").to_string();
    let conv = app.get_json(&format!("/api/v1/conversations/{id}")).await;
    let mut texts: Vec<String> = conv["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"]["text"].as_str().map(str::to_string))
        .collect();
    texts.sort();
    (id, texts)
}

async fn webhook_with_the_secret_token_puts_the_message_on_the_timeline(db: Db) {
    let Some(app) = spawn_app_with(db, |s| with_telegram(s, "webhook", "http://127.0.0.1:9")).await
    else {
        return;
    };
    let r = post_update(&app, &fixture("message_text.json"), Some(SECRET)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "accepted"
    );
    app.drain().await;
    let (conv, texts) = telegram_messages(&app).await;
    assert_eq!(texts, vec!["Where is my parcel?"]);
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c["channel"], "telegram", "{c}");
    let customer = c["customer_id"].as_str().unwrap();
    let cust = app.get_json(&format!("/api/v1/customers/{customer}")).await;
    assert_eq!(cust["display_name"], "Ada Lovelace", "{cust}");
    app.stop().await;
}
on_both_backends!(
    webhook_with_the_secret_token_puts_the_message_on_the_timeline,
    super::webhook_with_the_secret_token_puts_the_message_on_the_timeline
);

async fn wrong_or_missing_secret_token_is_401_and_stores_nothing(db: Db) {
    let Some(app) = spawn_app_with(db, |s| with_telegram(s, "webhook", "http://127.0.0.1:9")).await
    else {
        return;
    };
    let body = fixture("message_text.json");
    assert_problem(
        post_update(&app, &body, Some("hook-Secret_12")).await,
        401,
        "bad_signature",
    )
    .await;
    assert_problem(
        post_update(&app, &body, None).await,
        401,
        "missing_signature",
    )
    .await;
    let get = app
        .client
        .get(format!("{}/webhooks/tg", app.addr))
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    assert_eq!(app.store.count("jobs").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    wrong_or_missing_secret_token_is_401_and_stores_nothing,
    super::wrong_or_missing_secret_token_is_401_and_stores_nothing
);

async fn the_same_update_delivered_twice_is_one_message(db: Db) {
    let Some(app) = spawn_app_with(db, |s| with_telegram(s, "webhook", "http://127.0.0.1:9")).await
    else {
        return;
    };
    let body = fixture("message_text.json");
    assert_eq!(post_update(&app, &body, Some(SECRET)).await.status(), 200);
    let again = post_update(&app, &body, Some(SECRET)).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap()["status"],
        "duplicate"
    );
    app.drain().await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 1);
    assert_eq!(app.store.count("timeline_entries").await.unwrap(), 1);
    app.stop().await;
}
on_both_backends!(
    the_same_update_delivered_twice_is_one_message,
    super::the_same_update_delivered_twice_is_one_message
);

async fn poll_mode_stores_each_page_and_advances_the_cursor(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &updates_path(),
        [
            page(vec![update(100, 1, "first"), update(101, 2, "second")]),
            page(vec![update(102, 3, "third")]),
            idle(),
        ],
    );
    let base = fake.base.clone();
    let Some(app) = spawn_app_with(db, |s| with_telegram(s, "poll", &base)).await else {
        return;
    };
    let got = fake
        .wait_for(&updates_path(), 3, Duration::from_secs(10))
        .await;
    assert!(got.len() >= 3, "polls: {}", got.len());
    assert!(
        got[0].json().get("offset").is_none(),
        "first poll has no cursor yet"
    );
    assert_eq!(got[1].json()["offset"], 102);
    assert_eq!(got[2].json()["offset"], 103);
    assert_eq!(
        app.store.poll_cursor("tg").await.unwrap().as_deref(),
        Some("103")
    );
    app.drain().await;
    let (_, texts) = telegram_messages(&app).await;
    assert_eq!(texts, vec!["first", "second", "third"]);
    // Poll mode has no webhook endpoint: Telegram delivers one way at a time.
    let r = post_update(&app, &fixture("message_text.json"), Some(SECRET)).await;
    assert_eq!(r.status(), 404);
    app.stop().await;
}
on_both_backends!(
    poll_mode_stores_each_page_and_advances_the_cursor,
    super::poll_mode_stores_each_page_and_advances_the_cursor
);

async fn a_restarted_poller_neither_skips_nor_repeats_an_update(db: Db) {
    let first = FakeProvider::start().await;
    first.on(
        "POST",
        &updates_path(),
        [
            page(vec![update(100, 1, "u100"), update(101, 2, "u101")]),
            idle(),
        ],
    );
    let base = first.base.clone();
    let Some(app) = spawn_app_with(db, |s| with_telegram(s, "poll", &base)).await else {
        return;
    };
    // The second poll is only made after page 1 and its cursor were committed.
    let got = first
        .wait_for(&updates_path(), 2, Duration::from_secs(10))
        .await;
    assert_eq!(
        got.get(1).map(|r| r.json()["offset"].clone()),
        Some(json!(102))
    );
    let tdb = app.stop().await;

    let second = FakeProvider::start().await;
    second.on(
        "POST",
        &updates_path(),
        [
            page(vec![update(102, 3, "u102"), update(103, 4, "u103")]),
            idle(),
        ],
    );
    let base = second.base.clone();
    let app = spawn_app_on(tdb, |s| with_telegram(s, "poll", &base)).await;
    let got = second
        .wait_for(&updates_path(), 2, Duration::from_secs(10))
        .await;
    assert_eq!(
        got[0].json()["offset"],
        102,
        "resumes right after the last stored update"
    );
    assert_eq!(got[1].json()["offset"], 104);
    app.drain().await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 4);
    let (_, texts) = telegram_messages(&app).await;
    assert_eq!(texts, vec!["u100", "u101", "u102", "u103"]);
    app.stop().await;
}
on_both_backends!(
    a_restarted_poller_neither_skips_nor_repeats_an_update,
    super::a_restarted_poller_neither_skips_nor_repeats_an_update
);

async fn poll_once_stores_a_page_with_its_cursor_and_drops_repeats(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &updates_path(),
        [
            page(vec![update(100, 1, "a"), update(101, 2, "b")]),
            // A provider may send an update again; the store keeps it once.
            page(vec![update(101, 2, "b"), update(102, 3, "c")]),
        ],
    );
    let base = fake.base.clone();
    let mut connectors = Vec::new();
    let Some(app) = spawn_app_with(db, |s| {
        with_telegram(s, "poll", &base);
        s.poller.enabled = false;
        connectors = s.connectors.clone();
    })
    .await
    else {
        return;
    };
    let registry =
        switchboard::registry::Registry::build(&connectors, &|_: &str| None).expect("registry");
    let tg = registry.get("tg").expect("tg");
    assert!(!switchboard::poller::poll_once(&app.store, tg)
        .await
        .unwrap());
    assert_eq!(
        app.store.poll_cursor("tg").await.unwrap().as_deref(),
        Some("102")
    );
    assert!(!switchboard::poller::poll_once(&app.store, tg)
        .await
        .unwrap());
    assert_eq!(
        app.store.poll_cursor("tg").await.unwrap().as_deref(),
        Some("103")
    );
    assert_eq!(fake.received_on(&updates_path())[1].json()["offset"], 102);
    assert_eq!(app.store.count("raw_events").await.unwrap(), 3);
    assert_eq!(app.store.count("jobs").await.unwrap(), 3);
    app.stop().await;
}
on_both_backends!(
    poll_once_stores_a_page_with_its_cursor_and_drops_repeats,
    super::poll_once_stores_a_page_with_its_cursor_and_drops_repeats
);

async fn reply(app: &TestApp, conv: &str, key: &str, text: &str) -> String {
    let r = app
        .client
        .post(format!("{}/api/v1/conversations/{conv}/replies", app.addr))
        .bearer_auth(&app.token)
        .header("idempotency-key", key)
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let m: serde_json::Value = r.json().await.unwrap();
    m["id"].as_str().unwrap().to_string()
}

async fn a_reply_reaches_send_message_with_chat_id_and_reply_parameters(db: Db) {
    let fake = FakeProvider::start().await;
    let send = format!("/bot{TOKEN}/sendMessage");
    fake.on(
        "POST",
        &send,
        [Answer::json(json!({"ok": true, "result": {"message_id": 77,
            "chat": {"id": 111222333, "type": "private"}, "date": 1764590500, "text": "It left today"}}))],
    );
    let base = fake.base.clone();
    let Some(app) = spawn_app_with(db, |s| with_telegram(s, "webhook", &base)).await else {
        return;
    };
    assert_eq!(
        post_update(&app, &fixture("message_text.json"), Some(SECRET))
            .await
            .status(),
        200
    );
    app.drain().await;
    let (conv, _) = telegram_messages(&app).await;
    let id = reply(&app, &conv, "k-1", "It left today").await;
    let m = app.wait_message(&conv, &id, |s| s == "sent").await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(m["provider_message_id"], "111222333:77");
    let got = fake.received_on(&send);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json(),
        json!({"chat_id": 111222333, "text": "It left today",
               "reply_parameters": {"message_id": 42, "allow_sending_without_reply": true}})
    );
    app.stop().await;
}
on_both_backends!(
    a_reply_reaches_send_message_with_chat_id_and_reply_parameters,
    super::a_reply_reaches_send_message_with_chat_id_and_reply_parameters
);

async fn a_failed_replys_reason_never_contains_the_bot_token(db: Db) {
    let fake = FakeProvider::start().await;
    let send = format!("/bot{TOKEN}/sendMessage");
    // A server error whose body echoes the request URL, token and all.
    fake.on(
        "POST",
        &send,
        [Answer::status(
            500,
            &format!("upstream error on POST /bot{TOKEN}/sendMessage"),
        )],
    );
    let base = fake.base.clone();
    let Some(app) = spawn_app_with(db, |s| with_telegram(s, "webhook", &base)).await else {
        return;
    };
    assert_eq!(
        post_update(&app, &fixture("message_text.json"), Some(SECRET))
            .await
            .status(),
        200
    );
    app.drain().await;
    let (conv, _) = telegram_messages(&app).await;
    let id = reply(&app, &conv, "k-1", "hello").await;
    let m = app.wait_message(&conv, &id, |s| s == "failed").await;
    assert_eq!(m["state"], "failed", "{m}");
    let reason = m["error"].as_str().unwrap_or("");
    assert!(reason.contains("upstream error"), "{m}");
    assert!(!m.to_string().contains(TOKEN_SECRET_HALF), "{m}");
    assert!(fake.received_on(&send).len() >= 3, "retried before failing");
    app.stop().await;
}
on_both_backends!(
    a_failed_replys_reason_never_contains_the_bot_token,
    super::a_failed_replys_reason_never_contains_the_bot_token
);

async fn a_refused_poll_marks_the_connector_unhealthy_and_keeps_retrying(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &updates_path(),
        [Answer::status_json(
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        )],
    );
    let base = fake.base.clone();
    let Some(app) = spawn_app_with(db, |s| with_telegram(s, "poll", &base)).await else {
        return;
    };
    // Two polls: the first refusal was recorded before the second call.
    let got = fake
        .wait_for(&updates_path(), 2, Duration::from_secs(10))
        .await;
    assert!(got.len() >= 2);
    let list = app.get_json("/api/v1/connectors").await;
    let tg = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "tg")
        .cloned()
        .unwrap();
    assert_eq!(tg["health"], "unhealthy", "{tg}");
    assert!(
        tg["unhealthy_reason"]
            .as_str()
            .unwrap()
            .contains("Unauthorized"),
        "{tg}"
    );
    assert!(!list.to_string().contains(TOKEN_SECRET_HALF));
    assert_eq!(tg["capabilities"]["poll"], true);

    // The token is fixed on Telegram's side: the same task picks up where it left off.
    fake.on(
        "POST",
        &updates_path(),
        [page(vec![update(100, 1, "back")]), idle()],
    );
    // Counters and health are updated just after the commit: wait for them, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let tg = loop {
        let list = app.get_json("/api/v1/connectors").await;
        let tg = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "tg")
            .cloned()
            .unwrap();
        if tg["health"] == "healthy" || std::time::Instant::now() > deadline {
            break tg;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(tg["health"], "healthy", "{tg}");
    assert_eq!(tg["counters"]["accepted"], 1, "{tg}");
    assert_eq!(
        app.store.poll_cursor("tg").await.unwrap().as_deref(),
        Some("101")
    );
    app.stop().await;
}
on_both_backends!(
    a_refused_poll_marks_the_connector_unhealthy_and_keeps_retrying,
    super::a_refused_poll_marks_the_connector_unhealthy_and_keeps_retrying
);

#[test]
fn the_example_config_is_valid_and_builds_a_webhook_and_a_polling_bot() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/telegram.toml");
    let s = switchboard::config::load(std::path::Path::new(path)).expect("example config");
    let reg = switchboard::registry::Registry::build(&s.connectors, &|_: &str| None)
        .expect("example connectors");
    let hook = reg.get("tg-support").expect("tg-support");
    assert!(hook.connector.webhook().is_some() && hook.connector.poller().is_none());
    let poll = reg.get("tg-sales").expect("tg-sales");
    assert!(poll.connector.webhook().is_none() && poll.connector.poller().is_some());
}

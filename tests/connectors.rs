//! `GET /api/v1/connectors` (capabilities, health, counters, no secrets), health marked by
//! the provider refusing credentials, and echoes of our own sends kept off the timeline.

mod common;

use common::{spawn_app_with, with_reply_url, Db};
use serde_json::json;
use switchboard_core::fake::{Answer, FakeProvider};

async fn reply(app: &common::TestApp, conv: &str, key: &str, text: &str) -> serde_json::Value {
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
    r.json().await.unwrap()
}

fn connector<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .expect("connector listed")
}

async fn connectors_list_shows_capabilities_and_counters_but_no_secret(db: Db) {
    let Some(app) = spawn_app_with(db, |s| with_reply_url(s, "http://127.0.0.1:9/replies")).await
    else {
        return;
    };
    app.send(json!({"id": "e1", "thread": "t", "text": "hi", "email": "a@example.com"}))
        .await;
    app.send(json!({"id": "e1", "thread": "t", "text": "hi", "email": "a@example.com"}))
        .await;
    let r = app.post_webhook("api", b"{}", Some("sha256=00")).await;
    assert_eq!(r.status(), 401);
    app.drain().await;
    let r = app.get("/api/v1/connectors").await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(common::SECRET),
        "the connector list must not show the secret: {text}"
    );
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(list["next_cursor"].is_null());
    let c = connector(&list, "api");
    assert_eq!(c["kind"], "generic");
    assert_eq!(c["webhook_path"], "/webhooks/api");
    assert_eq!(
        c["capabilities"],
        json!({"webhook": true, "poll": false, "send": true})
    );
    assert_eq!(c["health"], "healthy");
    assert_eq!(c["counters"]["accepted"], 1);
    assert_eq!(c["counters"]["duplicate"], 1);
    assert_eq!(c["counters"]["rejected"]["bad_signature"], 1);
    assert_eq!(c["counters"]["normalized"], 1);
    // Any token may read it; without one it is a 401.
    let r = app
        .client
        .get(format!("{}/api/v1/connectors", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}
on_both_backends!(
    connectors_list_shows_capabilities_and_counters_but_no_secret,
    super::connectors_list_shows_capabilities_and_counters_but_no_secret
);

async fn refused_credentials_mark_the_connector_unhealthy_until_a_send_succeeds(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        "/replies",
        [
            Answer::status_json(401, json!({"error": "invalid token"})),
            Answer::json(json!({"id": "prov-ok"})),
        ],
    );
    let url = format!("{}/replies", fake.base);
    let Some(app) = spawn_app_with(db, |s| with_reply_url(s, &url)).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let m = reply(&app, &conv, "k1", "first").await;
    let id = m["id"].as_str().unwrap();
    let m = app.wait_message(&conv, id, |s| s == "failed").await;
    assert_eq!(m["state"], "failed", "{m}");
    assert!(m["error"].as_str().unwrap().contains("credentials"), "{m}");

    let list = app.get_json("/api/v1/connectors").await;
    let c = connector(&list, "api");
    assert_eq!(c["health"], "unhealthy");
    assert!(
        c["unhealthy_reason"]
            .as_str()
            .unwrap()
            .contains("invalid token"),
        "{c}"
    );
    assert!(c["unhealthy_since"].is_string());
    let metrics = app.client.get(format!("{}/metrics", app.addr)).send().await;
    let metrics = metrics.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("switchboard_connector_up{connector=\"api\"} 0"),
        "{metrics}"
    );

    // The next successful send clears it.
    let m = reply(&app, &conv, "k2", "second").await;
    let id = m["id"].as_str().unwrap();
    let m = app.wait_message(&conv, id, |s| s == "sent").await;
    assert_eq!(m["state"], "sent", "{m}");
    let list = app.get_json("/api/v1/connectors").await;
    assert_eq!(connector(&list, "api")["health"], "healthy");
    assert!(connector(&list, "api")["unhealthy_reason"].is_null());
    app.stop().await;
}
on_both_backends!(
    refused_credentials_mark_the_connector_unhealthy_until_a_send_succeeds,
    super::refused_credentials_mark_the_connector_unhealthy_until_a_send_succeeds
);

async fn an_echo_of_our_own_reply_is_not_a_new_message_but_a_foreign_send_is_shown(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on("POST", "/replies", [Answer::json(json!({"id": "prov-1"}))]);
    let url = format!("{}/replies", fake.base);
    let Some(app) = spawn_app_with(db, |s| {
        with_reply_url(s, &url);
        if let Some(m) = s.connectors[0]
            .as_table_mut()
            .and_then(|t| t.get_mut("mapping"))
            .and_then(|m| m.as_table_mut())
        {
            m.insert("direction".into(), toml::Value::String("/direction".into()));
        }
    })
    .await
    else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let m = reply(&app, &conv, "k1", "on its way").await;
    let id = m["id"].as_str().unwrap();
    let m = app.wait_message(&conv, id, |s| s == "sent").await;
    assert_eq!(m["provider_message_id"], "prov-1", "{m}");

    // The provider echoes our send, then reports one sent from its own app.
    for (event, mid, text) in [
        ("echo-1", "prov-1", "on its way"),
        ("echo-2", "prov-foreign", "sent from the provider's app"),
    ] {
        let r = app
            .send(
                json!({"id": event, "thread": "t1", "text": text, "email": "ada@example.com",
                          "direction": "outbound", "message_id": mid}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    app.drain().await;
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let texts: Vec<(String, String)> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| {
            (
                e["direction"].as_str().unwrap_or("").to_string(),
                e["body"]["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let ours = texts.iter().filter(|(_, t)| t == "on its way").count();
    assert_eq!(
        ours, 1,
        "our reply appears once, not again as its echo: {texts:?}"
    );
    assert!(
        texts.contains(&("outbound".into(), "sent from the provider's app".into())),
        "{texts:?}"
    );
    assert!(
        texts.contains(&("inbound".into(), "hello".into())),
        "{texts:?}"
    );
    app.stop().await;
}
on_both_backends!(
    an_echo_of_our_own_reply_is_not_a_new_message_but_a_foreign_send_is_shown,
    super::an_echo_of_our_own_reply_is_not_a_new_message_but_a_foreign_send_is_shown
);

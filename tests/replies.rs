//! Replies through the channel: idempotent queueing, delivery to the provider (a fake
//! receiver), retries on 429/500/timeouts, permanent failures, manual retry, status updates.

mod common;

use std::time::Instant;

use common::receiver::{Answer, Receiver};
use common::{assert_problem, sign, spawn_app_with, with_reply_url, Db};
use serde_json::json;

async fn app_with_receiver(db: Db, script: &[Answer]) -> Option<(common::TestApp, Receiver)> {
    let rx = Receiver::start(script).await;
    let url = rx.url.clone();
    let app = spawn_app_with(db, |s| with_reply_url(s, &url)).await?;
    Some((app, rx))
}

async fn reply(app: &common::TestApp, conv: &str, key: &str, text: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/conversations/{conv}/replies", app.addr))
        .bearer_auth(&app.token)
        .header("idempotency-key", key)
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap()
}

async fn a_reply_is_queued_then_delivered_signed_to_the_channel(db: Db) {
    let Some((app, rx)) = app_with_receiver(db, &[]).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let started = Instant::now();
    let r = reply(&app, &conv, "k-1", "Your parcel left today").await;
    assert_eq!(r.status(), 202);
    let m: serde_json::Value = r.json().await.unwrap();
    assert_eq!(m["state"], "queued");
    let id = m["id"].as_str().unwrap().to_string();
    let m = app.wait_message(&conv, &id, |s| s == "sent").await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(m["provider_message_id"], format!("prov-{id}"));
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].at.duration_since(started).as_secs() < 5);
    // Signed like inbound webhooks, with the idempotency key passed on.
    assert_eq!(
        got[0].headers["x-switchboard-signature"],
        sign(&got[0].body).as_str()
    );
    assert_eq!(got[0].headers["idempotency-key"], "k-1");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["thread"], "t1");
    assert_eq!(body["text"], "Your parcel left today");
    // The reply is on the conversation, with its delivery state.
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let out = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["direction"] == "outbound")
        .unwrap()
        .clone();
    assert_eq!(out["body"]["text"], "Your parcel left today");
    assert_eq!(out["delivery_state"], "sent");
    assert!(out["actor"].as_str().unwrap().starts_with("token:"));
    app.stop().await;
}
on_both_backends!(
    a_reply_is_queued_then_delivered_signed_to_the_channel,
    super::a_reply_is_queued_then_delivered_signed_to_the_channel
);

async fn same_idempotency_key_never_sends_twice_and_a_different_body_is_422(db: Db) {
    let Some((app, rx)) = app_with_receiver(db, &[]).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let a: serde_json::Value = reply(&app, &conv, "same", "hello")
        .await
        .json()
        .await
        .unwrap();
    let b = reply(&app, &conv, "same", "hello").await;
    assert_eq!(b.status(), 202);
    let b: serde_json::Value = b.json().await.unwrap();
    assert_eq!(a["id"], b["id"], "the same message");
    let p = assert_problem(
        reply(&app, &conv, "same", "something else").await,
        422,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(p["field"], "Idempotency-Key");
    let id = a["id"].as_str().unwrap();
    app.wait_message(&conv, id, |s| s == "sent").await;
    // Asked again after sending: still the same message, still one delivery.
    let c: serde_json::Value = reply(&app, &conv, "same", "hello")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c["state"], "sent");
    assert_eq!(rx.received().len(), 1);
    assert_eq!(
        app.store.count("timeline_entries").await.unwrap(),
        2,
        "inbound + one reply"
    );
    app.stop().await;
}
on_both_backends!(
    same_idempotency_key_never_sends_twice_and_a_different_body_is_422,
    super::same_idempotency_key_never_sends_twice_and_a_different_body_is_422
);

async fn rate_limit_is_honoured_with_retry_after_then_sent(db: Db) {
    let Some((app, rx)) = app_with_receiver(
        db,
        &[Answer::RateLimited {
            retry_after_secs: 1,
        }],
    )
    .await
    else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let m: serde_json::Value = reply(&app, &conv, "k", "hi").await.json().await.unwrap();
    let id = m["id"].as_str().unwrap();
    let m = app.wait_message(&conv, id, |s| s == "sent").await;
    assert_eq!(m["state"], "sent", "{m}");
    let got = rx.received();
    assert_eq!(got.len(), 2);
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited.as_millis() >= 950,
        "Retry-After: 1 was honoured, waited {waited:?}"
    );
    app.stop().await;
}
on_both_backends!(
    rate_limit_is_honoured_with_retry_after_then_sent,
    super::rate_limit_is_honoured_with_retry_after_then_sent
);

async fn server_errors_and_timeouts_are_retried_with_backoff(db: Db) {
    let Some((app, rx)) = app_with_receiver(db, &[Answer::ServerError, Answer::Hang]).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let m: serde_json::Value = reply(&app, &conv, "k", "hi").await.json().await.unwrap();
    let id = m["id"].as_str().unwrap();
    let m = app.wait_message(&conv, id, |s| s == "sent").await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(m["attempts"], 3, "500, then a timeout, then delivered");
    assert_eq!(rx.received().len(), 3);
    // The receiver saw the same idempotency key each time, so it can drop repeats.
    assert!(rx
        .received()
        .iter()
        .all(|r| r.headers["idempotency-key"] == "k"));
    app.stop().await;
}
on_both_backends!(
    server_errors_and_timeouts_are_retried_with_backoff,
    super::server_errors_and_timeouts_are_retried_with_backoff
);

async fn a_receiver_that_stays_down_marks_the_reply_failed_and_retry_requeues_it(db: Db) {
    let Some((app, rx)) = app_with_receiver(
        db,
        &[
            Answer::ServerError,
            Answer::ServerError,
            Answer::ServerError,
        ],
    )
    .await
    else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let m: serde_json::Value = reply(&app, &conv, "k", "hi").await.json().await.unwrap();
    let id = m["id"].as_str().unwrap();
    let m = app.wait_message(&conv, id, |s| s == "failed").await;
    assert_eq!(m["state"], "failed", "{m}");
    assert!(m["error"].as_str().unwrap().contains("HTTP 500"), "{m}");
    assert_eq!(rx.received().len(), 3, "max_attempts = 3");
    // Visible on the conversation.
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let out = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["direction"] == "outbound")
        .unwrap()
        .clone();
    assert_eq!(out["delivery_state"], "failed");
    assert!(out["delivery_error"].as_str().unwrap().contains("HTTP 500"));
    // A manual retry goes out again (the receiver now answers 200).
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/messages/{id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let m = app.wait_message(&conv, id, |s| s == "sent").await;
    assert_eq!(m["state"], "sent");
    // Retrying a sent message is a conflict.
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/messages/{id}/retry"),
            json!({}),
        )
        .await;
    assert_problem(r, 409, "not_failed").await;
    app.stop().await;
}
on_both_backends!(
    a_receiver_that_stays_down_marks_the_reply_failed_and_retry_requeues_it,
    super::a_receiver_that_stays_down_marks_the_reply_failed_and_retry_requeues_it
);

async fn a_permanent_refusal_fails_at_once_with_the_providers_reason(db: Db) {
    let Some((app, rx)) = app_with_receiver(db, &[Answer::Rejected]).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let m: serde_json::Value = reply(&app, &conv, "k", "hi").await.json().await.unwrap();
    let id = m["id"].as_str().unwrap();
    let m = app.wait_message(&conv, id, |s| s == "failed").await;
    assert_eq!(m["state"], "failed");
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .contains("outside the 24 hour messaging window"),
        "{m}"
    );
    assert_eq!(m["attempts"], 1);
    assert_eq!(rx.received().len(), 1);
    app.stop().await;
}
on_both_backends!(
    a_permanent_refusal_fails_at_once_with_the_providers_reason,
    super::a_permanent_refusal_fails_at_once_with_the_providers_reason
);

async fn provider_status_updates_move_the_reply_forward_only(db: Db) {
    let Some((app, _rx)) = app_with_receiver(db, &[]).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let m: serde_json::Value = reply(&app, &conv, "k", "hi").await.json().await.unwrap();
    let id = m["id"].as_str().unwrap().to_string();
    app.wait_message(&conv, &id, |s| s == "sent").await;
    let provider_id = format!("prov-{id}");
    for (n, status) in ["read", "delivered"].iter().enumerate() {
        let r = app.send(json!({"id": format!("st-{n}"), "status": status, "message_id": provider_id, "thread": "t1"})).await;
        assert_eq!(r.status(), 200);
        app.drain().await;
    }
    let m = app
        .get_json(&format!("/api/v1/conversations/{conv}/messages/{id}"))
        .await;
    assert_eq!(
        m["state"], "read",
        "a late 'delivered' does not move 'read' back"
    );
    // Status callbacks are not customer messages.
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c["messages"].as_array().unwrap().len(), 2);
    app.stop().await;
}
on_both_backends!(
    provider_status_updates_move_the_reply_forward_only,
    super::provider_status_updates_move_the_reply_forward_only
);

async fn reply_requests_are_validated_with_the_field_named(db: Db) {
    let Some((app, _rx)) = app_with_receiver(db, &[]).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/replies"),
            json!({"text": ""}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "invalid_field").await["field"],
        "text"
    );
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/replies"),
            json!({"text": 5}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "invalid_field").await["field"],
        "text"
    );
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/replies"),
            json!({"text": "x", "attachments": ["ftp://x"]}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "invalid_url").await["field"],
        "attachments[0]"
    );
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/replies"),
            json!({"txt": "x"}),
        )
        .await;
    assert_problem(r, 422, "invalid_field").await;
    let r = app
        .client
        .post(format!("{}/api/v1/conversations/{conv}/replies", app.addr))
        .bearer_auth(&app.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "malformed_json").await;
    let r = app
        .post_json("/api/v1/conversations/nope/replies", json!({"text": "x"}))
        .await;
    assert_problem(r, 404, "not_found").await;
    app.stop().await;
}
on_both_backends!(
    reply_requests_are_validated_with_the_field_named,
    super::reply_requests_are_validated_with_the_field_named
);

async fn the_per_connector_rate_limit_spaces_sends_out(db: Db) {
    let rx = Receiver::start(&[]).await;
    let url = rx.url.clone();
    let Some(app) = spawn_app_with(db, |s| {
        with_reply_url(s, &url);
        if let Some(t) = s.connectors[0].as_table_mut() {
            // Two per second, no burst beyond one.
            t.insert("send_rate_per_sec".into(), toml::Value::Integer(2));
            t.insert("send_burst".into(), toml::Value::Integer(1));
        }
    })
    .await
    else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let m: serde_json::Value = reply(&app, &conv, &format!("k{i}"), &format!("m{i}"))
            .await
            .json()
            .await
            .unwrap();
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        app.wait_message(&conv, id, |s| s == "sent").await;
    }
    let got = rx.received();
    assert_eq!(got.len(), 3);
    let mut at: Vec<_> = got.iter().map(|r| r.at).collect();
    at.sort();
    // Three sends at 2/s with a burst of 1 need at least a second between first and last.
    let spread = at[2].duration_since(at[0]);
    assert!(
        spread.as_millis() >= 900,
        "sends were not spaced: {spread:?}"
    );
    app.stop().await;
}
on_both_backends!(
    the_per_connector_rate_limit_spaces_sends_out,
    super::the_per_connector_rate_limit_spaces_sends_out
);

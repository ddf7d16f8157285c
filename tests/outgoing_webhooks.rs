//! Outgoing webhooks: subscriptions (admin only), Standard Webhooks signing, kind filtering,
//! retries with backoff and Retry-After, the attempt log, failure after the retry window,
//! replay, pause after repeated failures and resume, and a fan-out cursor that survives a
//! restart. A fake receiver on 127.0.0.1 answers as each test scripts it.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{assert_problem, spawn_app_with, Db, TestApp};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use switchboard::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    ServerError,
    RateLimited { retry_after_secs: u64 },
    Hang,
}

#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

struct Inner {
    script: VecDeque<Answer>,
    otherwise: Answer,
    hits: Vec<Hit>,
}

/// A webhook receiver: answers follow the script, then `otherwise` (changeable).
#[derive(Clone)]
struct Hook {
    inner: Arc<Mutex<Inner>>,
    url: String,
}

impl Hook {
    async fn start(script: &[Answer], otherwise: Answer) -> Hook {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.iter().copied().collect(),
            otherwise,
            hits: Vec::new(),
        }));
        let app = Router::new()
            .route("/hook", post(answer))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hook { inner, url }
    }

    fn hits(&self) -> Vec<Hit> {
        self.inner.lock().unwrap().hits.clone()
    }

    fn answer_from_now(&self, a: Answer) {
        self.inner.lock().unwrap().otherwise = a;
    }

    /// Waits until at least `n` requests arrived (10 s at most).
    async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hits = self.hits();
            if hits.len() >= n || Instant::now() > deadline {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = {
        let mut i = inner.lock().unwrap();
        i.hits.push(Hit {
            at: Instant::now(),
            headers,
            body,
        });
        let otherwise = i.otherwise;
        i.script.pop_front().unwrap_or(otherwise)
    };
    match a {
        Answer::Ok => StatusCode::NO_CONTENT.into_response(),
        Answer::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Answer::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after_secs.to_string())],
            "slow down",
        )
            .into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// Fast retries; a long window unless a test shortens it.
fn fast(s: &mut Settings) {
    s.webhooks.idle_poll_ms = 20;
    s.webhooks.base_backoff_ms = 50;
    s.webhooks.max_backoff_ms = 200;
    s.webhooks.request_timeout_ms = 500;
    s.webhooks.retry_window_hours = 60.0 / 3600.0;
    s.webhooks.pause_after_failures = 1000;
}

async fn subscribe(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let r = app
        .post_json(
            "/api/v1/webhook-subscriptions",
            json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    (
        b["id"].as_str().unwrap().to_string(),
        b["secret"].as_str().unwrap().to_string(),
    )
}

async fn deliveries(app: &TestApp, sub: &str) -> Vec<Value> {
    let b = app
        .get_json(&format!(
            "/api/v1/webhook-subscriptions/{sub}/deliveries?limit=200"
        ))
        .await;
    b["items"].as_array().unwrap().clone()
}

/// Polls the deliveries of `sub` until `done` holds (15 s at most); returns the last list.
async fn wait_deliveries(app: &TestApp, sub: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let items = deliveries(app, sub).await;
        if done(&items) || Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn all_in(state: &'static str, n: usize) -> impl Fn(&[Value]) -> bool {
    move |items: &[Value]| items.len() >= n && items.iter().all(|d| d["state"] == state)
}

/// Whether a hit carries a valid Standard Webhooks signature under `secret` (the secret the
/// create answer returned), with a timestamp within the 5 minute tolerance.
fn verifies(hit: &Hit, secret: &str) -> bool {
    let id = hit.header("webhook-id");
    let ts = hit.header("webhook-timestamp");
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&hit.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let ts: i64 = ts.parse().unwrap_or(0);
    let fresh = (chrono::Utc::now().timestamp() - ts).abs() <= 300;
    fresh
        && hit
            .header("webhook-signature")
            .split(' ')
            .any(|s| s == expected)
}

fn verify(hit: &Hit, secret: &str) {
    assert!(
        verifies(hit, secret),
        "bad signature {:?} on {:?}",
        hit.header("webhook-signature"),
        hit.body
    );
}

async fn deliveries_are_signed_and_only_subscribed_kinds_arrive(db: Db) {
    let Some(app) = spawn_app_with(db, fast).await else {
        return;
    };
    let messages = Hook::start(&[], Answer::Ok).await;
    let updates = Hook::start(&[], Answer::Ok).await;
    let merges = Hook::start(&[], Answer::Ok).await;
    let (msub, secret) = subscribe(&app, &messages.url, &["message.created"]).await;
    assert!(secret.starts_with("whsec_"));
    assert_eq!(STANDARD.decode(&secret[6..]).unwrap().len(), 32);
    let (usub, usecret) = subscribe(&app, &updates.url, &["conversation.updated"]).await;
    let (_, _) = subscribe(&app, &merges.url, &["customer.merged"]).await;

    let conv = app.conversation("t1", "ada@example.com").await;
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/labels"),
            json!({"label": "vip"}),
        )
        .await;
    assert!(r.status().is_success());

    let hits = messages.wait_hits(1).await;
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    verify(hit, &secret);
    assert!(hit.header("webhook-id").starts_with("msg_"));
    assert_eq!(hit.header("content-type"), "application/json");
    let body = hit.json();
    assert_eq!(body["type"], "message.created");
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(body["data"]["conversation_id"], conv.as_str());
    assert!(body["data"]["event_id"].as_i64().is_some());
    assert!(body["data"]["customer_id"].is_string());

    let uhits = updates.wait_hits(1).await;
    assert!(!uhits.is_empty());
    for h in &uhits {
        verify(h, &usecret);
        assert_eq!(h.json()["type"], "conversation.updated");
    }
    // A signature under another subscription's secret does not verify.
    assert!(!verifies(&uhits[0], &secret));

    // Delivered, with the one attempt logged; the stored body is what was sent.
    let ds = wait_deliveries(&app, &msub, all_in("delivered", 1)).await;
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert_eq!(ds[0]["id"], hit.header("webhook-id").as_str());
    assert_eq!(ds[0]["type"], "message.created");
    assert_eq!(ds[0]["payload"], body);
    let attempts = ds[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status_code"], 204);
    assert!(attempts[0]["error"].is_null());
    assert!(attempts[0]["duration_ms"].as_i64().unwrap() >= 0);
    assert!(attempts[0]["at"].is_string());
    let uds = wait_deliveries(&app, &usub, all_in("delivered", 1)).await;
    assert!(uds.iter().all(|d| d["type"] == "conversation.updated"));

    // No merge happened: nothing for that subscription.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(merges.hits().is_empty());
    // The secret is never shown again.
    let got = app
        .get_json(&format!("/api/v1/webhook-subscriptions/{msub}"))
        .await;
    assert!(got.get("secret").is_none(), "{got}");
    assert_eq!(got["state"], "active");
    assert_eq!(got["events"], json!(["message.created"]));
    app.stop().await;
}
on_both_backends!(
    deliveries_are_signed_and_only_subscribed_kinds_arrive,
    super::deliveries_are_signed_and_only_subscribed_kinds_arrive
);

async fn failures_are_retried_with_backoff_and_the_same_id(db: Db) {
    let Some(app) = spawn_app_with(db, fast).await else {
        return;
    };
    let hook = Hook::start(
        &[
            Answer::ServerError,
            Answer::RateLimited {
                retry_after_secs: 1,
            },
            Answer::Hang,
        ],
        Answer::Ok,
    )
    .await;
    let (sub, secret) = subscribe(&app, &hook.url, &["message.created"]).await;
    app.conversation("t1", "ada@example.com").await;
    let ds = wait_deliveries(&app, &sub, all_in("delivered", 1)).await;
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["state"], "delivered", "{ds:?}");
    let hits = hook.hits();
    assert_eq!(hits.len(), 4);
    let id = hits[0].header("webhook-id");
    for h in &hits {
        assert_eq!(
            h.header("webhook-id"),
            id,
            "same webhook-id on every attempt"
        );
        assert_eq!(h.body, hits[0].body, "same body on every attempt");
        verify(h, &secret);
    }
    // Retry-After: 1 on the 429 was honoured.
    assert!(hits[2].at - hits[1].at >= Duration::from_millis(900));
    // Backoff after the 500 (50 ms ± jitter).
    assert!(hits[1].at - hits[0].at >= Duration::from_millis(35));

    let attempts = ds[0]["attempts"].as_array().unwrap();
    let numbers: Vec<i64> = attempts
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3, 4]);
    let codes: Vec<Value> = attempts.iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, vec![json!(500), json!(429), Value::Null, json!(204)]);
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    assert!(attempts[1]["error"].as_str().unwrap().contains("429"));
    assert!(attempts[2]["error"].as_str().unwrap().contains("timed out"));
    assert!(attempts[2]["duration_ms"].as_i64().unwrap() >= 400);
    assert!(attempts[3]["error"].is_null());
    assert_eq!(ds[0]["attempt_count"], 4);
    app.stop().await;
}
on_both_backends!(
    failures_are_retried_with_backoff_and_the_same_id,
    super::failures_are_retried_with_backoff_and_the_same_id
);

async fn a_delivery_fails_after_the_window_and_replay_sends_it_again(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        fast(s);
        s.webhooks.retry_window_hours = 1.0 / 3600.0; // one second
    })
    .await
    else {
        return;
    };
    let hook = Hook::start(&[], Answer::ServerError).await;
    let (sub, _) = subscribe(&app, &hook.url, &["message.created"]).await;
    app.conversation("t1", "ada@example.com").await;
    let ds = wait_deliveries(&app, &sub, all_in("failed", 1)).await;
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["state"], "failed", "{ds:?}");
    let attempts = ds[0]["attempts"].as_array().unwrap();
    assert!(
        attempts.len() >= 3,
        "retried within the window: {attempts:?}"
    );
    assert_eq!(hook.hits().len(), attempts.len(), "every attempt is logged");
    assert!(attempts.iter().all(|a| a["status_code"] == 500));
    assert!(ds[0]["last_error"].as_str().unwrap().contains("boom"));
    assert!(ds[0]["next_attempt_at"].is_null());
    let failed = app
        .get_json(&format!(
            "/api/v1/webhook-subscriptions/{sub}/deliveries?state=failed"
        ))
        .await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);

    // Replay once the receiver is fixed: same webhook-id, attempts continue.
    hook.answer_from_now(Answer::Ok);
    let did = ds[0]["id"].as_str().unwrap().to_string();
    let before = hook.hits().len();
    let r = app
        .post_json(
            &format!("/api/v1/webhook-subscriptions/{sub}/deliveries/{did}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["state"], "pending");
    let ds = wait_deliveries(&app, &sub, all_in("delivered", 1)).await;
    assert_eq!(ds[0]["state"], "delivered", "{ds:?}");
    let hits = hook.hits();
    assert_eq!(hits.len(), before + 1);
    assert_eq!(hits.last().unwrap().header("webhook-id"), did);
    let attempts = ds[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), before + 1);
    assert_eq!(attempts.last().unwrap()["attempt"], (before + 1) as i64);

    // Only a failed delivery can be replayed; an unknown one is a 404.
    let r = app
        .post_json(
            &format!("/api/v1/webhook-subscriptions/{sub}/deliveries/{did}/replay"),
            json!({}),
        )
        .await;
    assert_problem(r, 409, "not_failed").await;
    let r = app
        .post_json(
            &format!("/api/v1/webhook-subscriptions/{sub}/deliveries/msg_nope/replay"),
            json!({}),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    app.stop().await;
}
on_both_backends!(
    a_delivery_fails_after_the_window_and_replay_sends_it_again,
    super::a_delivery_fails_after_the_window_and_replay_sends_it_again
);

async fn repeated_failures_pause_and_resume_delivers_the_backlog(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        fast(s);
        s.webhooks.pause_after_failures = 3;
    })
    .await
    else {
        return;
    };
    let hook = Hook::start(&[], Answer::ServerError).await;
    let (sub, secret) = subscribe(&app, &hook.url, &["message.created"]).await;
    app.conversation("t1", "ada@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let paused = loop {
        let s = app
            .get_json(&format!("/api/v1/webhook-subscriptions/{sub}"))
            .await;
        if s["state"] == "paused" || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(paused["state"], "paused", "{paused}");
    assert_eq!(paused["active"], true);
    assert!(paused["paused_at"].is_string());
    assert!(paused["pause_reason"]
        .as_str()
        .unwrap()
        .contains("3 consecutive failed attempts"));
    assert_eq!(paused["consecutive_failures"], 3);

    // While paused, new events queue up but nothing is sent.
    app.conversation("t2", "bob@example.com").await;
    app.conversation("t3", "cy@example.com").await;
    let ds = wait_deliveries(&app, &sub, |d| d.len() >= 3).await;
    assert_eq!(ds.len(), 3);
    assert!(ds.iter().all(|d| d["state"] == "pending"), "{ds:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.hits().len(), 3, "no attempt while paused");

    // Resume: the backlog goes out.
    hook.answer_from_now(Answer::Ok);
    let r = app
        .patch_json(
            &format!("/api/v1/webhook-subscriptions/{sub}"),
            json!({"active": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["state"], "active");
    assert!(s["pause_reason"].is_null());
    assert_eq!(s["consecutive_failures"], 0);
    let ds = wait_deliveries(&app, &sub, all_in("delivered", 3)).await;
    assert!(ds.iter().all(|d| d["state"] == "delivered"), "{ds:?}");
    let hits = hook.hits();
    assert_eq!(hits.len(), 6);
    for h in &hits[3..] {
        verify(h, &secret);
    }
    let mut ids: Vec<String> = hits[3..].iter().map(|h| h.header("webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    app.stop().await;
}
on_both_backends!(
    repeated_failures_pause_and_resume_delivers_the_backlog,
    super::repeated_failures_pause_and_resume_delivers_the_backlog
);

async fn subscriptions_are_admin_only_and_validated(db: Db) {
    let Some(app) = spawn_app_with(db, fast).await else {
        return;
    };
    let agent =
        switchboard::auth::create_token(&app.store, "agent", switchboard::auth::Role::Agent)
            .await
            .unwrap();
    let r = app
        .client
        .post(format!("{}/api/v1/webhook-subscriptions", app.addr))
        .bearer_auth(&agent)
        .json(&json!({"url": "http://127.0.0.1:9/x", "events": ["message.created"]}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .client
        .get(format!("{}/api/v1/webhook-subscriptions", app.addr))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .client
        .get(format!("{}/api/v1/webhook-subscriptions", app.addr))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;

    for (body, field) in [
        (
            json!({"url": "ftp://127.0.0.1/x", "events": ["message.created"]}),
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["message.created"]}),
            "url",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": ["message.deleted"]}),
            "events",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": []}),
            "events",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": ["message.created"], "secret": "short"}),
            "secret",
        ),
    ] {
        let r = app
            .post_json("/api/v1/webhook-subscriptions", body.clone())
            .await;
        assert_eq!(r.status(), 422, "{body}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["field"], field, "{body} → {p}");
    }
    let r = app
        .post_json(
            "/api/v1/webhook-subscriptions",
            json!({"url": "http://127.0.0.1:9/x", "events": "message.created"}),
        )
        .await;
    assert_eq!(r.status(), 422);

    // A given secret is kept (and returned once); GETs never show it.
    let given = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    let r = app
        .post_json(
            "/api/v1/webhook-subscriptions",
            json!({"url": "https://example.com/hooks", "events": ["message.created", "customer.merged"], "secret": given}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["secret"], given.as_str());
    let (b, _) = subscribe(&app, "http://127.0.0.1:9/b", &["outbound.status"]).await;
    let page = app.get_json("/api/v1/webhook-subscriptions?limit=1").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let page2 = app
        .get_json(&format!(
            "/api/v1/webhook-subscriptions?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert!(page2["next_cursor"].is_null());
    let mut ids = vec![
        page["items"][0]["id"].as_str().unwrap().to_string(),
        page2["items"][0]["id"].as_str().unwrap().to_string(),
    ];
    ids.sort();
    let mut want = vec![a["id"].as_str().unwrap().to_string(), b.clone()];
    want.sort();
    assert_eq!(ids, want);
    for it in [&page["items"][0], &page2["items"][0]] {
        assert!(it.get("secret").is_none());
    }

    // PATCH validates the same way, and changes url/events/active.
    let r = app
        .patch_json(
            &format!("/api/v1/webhook-subscriptions/{b}"),
            json!({"events": ["nope"]}),
        )
        .await;
    let p = assert_problem(r, 422, "unknown_event").await;
    assert_eq!(p["field"], "events");
    let r = app
        .patch_json(
            &format!("/api/v1/webhook-subscriptions/{b}"),
            json!({"url": "http://127.0.0.1:9/c", "events": ["message.created"], "active": false}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["url"], "http://127.0.0.1:9/c");
    assert_eq!(s["events"], json!(["message.created"]));
    assert_eq!(s["state"], "disabled");

    // Delete; then it is gone.
    let r = app
        .delete(&format!("/api/v1/webhook-subscriptions/{b}"))
        .await;
    assert_eq!(r.status(), 204);
    let r = app.get(&format!("/api/v1/webhook-subscriptions/{b}")).await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .get(&format!("/api/v1/webhook-subscriptions/{b}/deliveries"))
        .await;
    assert_problem(r, 404, "not_found").await;
    app.stop().await;
}
on_both_backends!(
    subscriptions_are_admin_only_and_validated,
    super::subscriptions_are_admin_only_and_validated
);

async fn without_subscriptions_fan_out_reads_no_events_and_jumps_the_cursor_a_batch_behind(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        fast(s);
        s.webhooks.enabled = false;
    })
    .await
    else {
        return;
    };
    let start = app.store.webhook_fanout_cursor().await.unwrap();
    app.conversation("t1", "ada@example.com").await;
    let latest = app.store.latest_event_id().await.unwrap();
    assert!(latest > start);
    let behind = (latest - start) as usize;
    // Less than a batch behind: nothing consumed, the cursor stays.
    assert_eq!(app.store.fan_out_events(behind + 1).await.unwrap(), (0, 0));
    assert_eq!(app.store.webhook_fanout_cursor().await.unwrap(), start);
    // A whole batch behind: the cursor jumps to the latest event, no delivery is made.
    assert_eq!(app.store.fan_out_events(behind).await.unwrap(), (0, 0));
    assert_eq!(app.store.webhook_fanout_cursor().await.unwrap(), latest);
    assert_eq!(app.store.count("webhook_deliveries").await.unwrap(), 0);

    // A subscription made now gets the next event, once.
    let hook = Hook::start(&[], Answer::Ok).await;
    let (sub, _) = subscribe(&app, &hook.url, &["message.created"]).await;
    app.conversation("t2", "bob@example.com").await;
    let (_, created) = app.store.fan_out_events(500).await.unwrap();
    assert_eq!(created, 1);
    let ds = app
        .store
        .list_deliveries(&sub, None, None, 100)
        .await
        .unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(
        app.store.webhook_fanout_cursor().await.unwrap(),
        app.store.latest_event_id().await.unwrap()
    );
    app.stop().await;
}
on_both_backends!(
    without_subscriptions_fan_out_reads_no_events_and_jumps_the_cursor_a_batch_behind,
    super::without_subscriptions_fan_out_reads_no_events_and_jumps_the_cursor_a_batch_behind
);

async fn the_fan_out_cursor_survives_a_restart(db: Db) {
    // The dispatcher is off: fan-out is driven by hand.
    let Some(app) = spawn_app_with(db, |s| {
        fast(s);
        s.webhooks.enabled = false;
    })
    .await
    else {
        return;
    };
    let hook = Hook::start(&[], Answer::Ok).await;
    let (sub, _) = subscribe(&app, &hook.url, &["message.created"]).await;
    app.conversation("t1", "ada@example.com").await;
    let (_, created) = app.store.fan_out_events(500).await.unwrap();
    assert_eq!(created, 1);
    assert_eq!(app.store.fan_out_events(500).await.unwrap(), (0, 0));
    let cursor = app.store.webhook_fanout_cursor().await.unwrap();
    assert_eq!(cursor, app.store.latest_event_id().await.unwrap());
    app.conversation("t2", "bob@example.com").await;
    let tdb = app.stop().await;

    // Restarted with the dispatcher on: the event not yet fanned out goes out once, the one
    // already fanned out is not doubled.
    let mut s = common::settings(&tdb.url);
    fast(&mut s);
    let app2 = switchboard::app::Application::build(s).await.unwrap();
    let store = app2.store();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app2.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(15);
    let ds = loop {
        let ds = store.list_deliveries(&sub, None, None, 100).await.unwrap();
        if (ds.len() >= 2 && ds.iter().all(|d| d.state == "delivered")) || Instant::now() > deadline
        {
            break ds;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(ds.len(), 2, "{ds:?}");
    assert!(ds.iter().all(|d| d.state == "delivered"), "{ds:?}");
    assert_ne!(ds[0].event_id, ds[1].event_id);
    let hits = hook.hits();
    assert_eq!(hits.len(), 2);
    assert_ne!(hits[0].header("webhook-id"), hits[1].header("webhook-id"));
    let _ = tx.send(());
    handle.await.unwrap().unwrap();
    drop(tdb);
}
on_both_backends!(
    the_fan_out_cursor_survives_a_restart,
    super::the_fan_out_cursor_survives_a_restart
);

//! The read API, identity merging, ordering, retries and replay, on both backends.

mod common;

use common::{assert_problem, spawn_app, spawn_app_with, Db};
use serde_json::json;
use switchboard::store::NewRawEvent;

async fn api_requires_a_valid_bearer_token(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let url = format!("{}/api/v1/conversations", app.addr);
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_problem(r, 401, "unauthorized").await;
    let r = app
        .client
        .get(&url)
        .bearer_auth("sb_not-a-real-token")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    let r = app
        .client
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    assert_eq!(app.get("/api/v1/conversations").await.status(), 200);
    app.stop().await;
}
on_both_backends!(
    api_requires_a_valid_bearer_token,
    super::api_requires_a_valid_bearer_token
);

async fn bad_query_parameters_are_400_problems(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    assert_problem(
        app.get("/api/v1/conversations?limit=0").await,
        400,
        "invalid_limit",
    )
    .await;
    assert_problem(
        app.get("/api/v1/conversations?limit=abc").await,
        400,
        "invalid_limit",
    )
    .await;
    assert_problem(
        app.get("/api/v1/conversations?cursor=%%%").await,
        400,
        "invalid_cursor",
    )
    .await;
    assert_problem(
        app.get("/api/v1/conversations?status=closed").await,
        400,
        "invalid_status",
    )
    .await;
    assert_problem(
        app.get("/api/v1/conversations?bogus=1").await,
        400,
        "unknown_parameter",
    )
    .await;
    assert_problem(
        app.get("/api/v1/customers?email=not-an-email").await,
        400,
        "invalid_email",
    )
    .await;
    assert_problem(
        app.get("/api/v1/customers?phone=12").await,
        400,
        "invalid_phone",
    )
    .await;
    assert_problem(
        app.get("/api/v1/customers?email=a@b.io&phone=1").await,
        400,
        "conflicting_filters",
    )
    .await;
    assert_problem(app.get("/api/v1/customers/nope").await, 404, "not_found").await;
    assert_problem(
        app.get("/api/v1/conversations/nope").await,
        404,
        "not_found",
    )
    .await;
    assert_problem(app.get("/api/v1/nothing-here").await, 404, "not_found").await;
    app.stop().await;
}
on_both_backends!(
    bad_query_parameters_are_400_problems,
    super::bad_query_parameters_are_400_problems
);

async fn cursor_pagination_walks_every_conversation_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..25 {
        // Same time for several threads: the id breaks the tie, so no row is skipped.
        let ev = json!({"id": format!("p{i}"), "thread": format!("t{i}"), "text": "hi",
                        "customer_id": format!("u{i}"), "at": 1_795_000_000 + (i / 3)});
        assert_eq!(app.send(ev).await.status(), 200);
    }
    app.drain().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/conversations?limit=7&cursor={c}"),
            None => "/api/v1/conversations?limit=7".to_string(),
        };
        let page = app.get_json(&path).await;
        for c in page["items"].as_array().unwrap() {
            seen.push(c["thread_key"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 25, "no conversation twice");
    assert_eq!(seen[0], "t24", "newest first");
    app.stop().await;
}
on_both_backends!(
    cursor_pagination_walks_every_conversation_once,
    super::cursor_pagination_walks_every_conversation_once
);

async fn conversation_orders_by_occurred_at_then_arrival(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let events = [
        ("o1", "third", 30),
        ("o2", "first", 10),
        ("o3", "second-a", 20),
        ("o4", "second-b", 20),
    ];
    for (id, text, at) in events {
        let ev = json!({"id": id, "thread": "t", "text": text, "email": "x@y.io", "at": 1_795_000_000 + at});
        assert_eq!(app.send(ev).await.status(), 200);
        // One batch per event, so arrival order is observable.
        app.drain().await;
    }
    let convs = app.get_json("/api/v1/conversations").await;
    let id = convs["items"][0]["id"].as_str().unwrap();
    let conv = app
        .get_json(&format!("/api/v1/conversations/{id}?limit=2"))
        .await;
    let mut texts: Vec<String> = conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["text"].as_str().unwrap().to_string())
        .collect();
    let next = conv["next_cursor"].as_str().unwrap();
    let rest = app
        .get_json(&format!("/api/v1/conversations/{id}?limit=2&cursor={next}"))
        .await;
    texts.extend(
        rest["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"]["text"].as_str().unwrap().to_string()),
    );
    assert_eq!(texts, ["first", "second-a", "second-b", "third"]);
    assert_eq!(
        conv["last_message_at"],
        "2025-11-19T05:07:10.000Z".replace("2025-11-19T05:07:10", &chrono_like(1_795_000_030))
    );
    app.stop().await;
}
on_both_backends!(
    conversation_orders_by_occurred_at_then_arrival,
    super::conversation_orders_by_occurred_at_then_arrival
);

fn chrono_like(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

async fn an_event_with_claims_of_two_customers_merges_them_with_a_record(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(json!({"id": "m1", "thread": "a", "text": "by email", "email": "ada@example.com", "at": 1_795_000_000})).await;
    app.send(json!({"id": "m2", "thread": "b", "text": "by phone", "phone": "020 7946 0958", "at": 1_795_000_001})).await;
    app.drain().await;
    assert_eq!(app.store.count("customers").await.unwrap(), 2);
    let by_email = app
        .get_json("/api/v1/customers?email=ada@example.com")
        .await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_phone = app
        .get_json("/api/v1/customers?phone=%2B442079460958")
        .await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(by_email, by_phone);

    // The link: one event carries both the email and the phone (in another format).
    app.send(json!({"id": "m3", "thread": "c", "text": "both", "email": "ADA@example.com", "phone": "+44 20 7946 0958", "at": 1_795_000_002})).await;
    app.drain().await;
    // Ids are time-ordered (UUIDv7): the smaller is the older customer, which survives.
    // Which was created first depends on which worker claimed which event.
    let (survivor, merged) = if by_email < by_phone {
        (&by_email, &by_phone)
    } else {
        (&by_phone, &by_email)
    };
    let detail = app.get_json(&format!("/api/v1/customers/{merged}")).await;
    assert_eq!(
        detail["id"],
        survivor.as_str(),
        "the older customer survives; the other id resolves to it"
    );
    assert_eq!(detail["aliases"], json!([merged]));
    let kinds: Vec<&str> = detail["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["email", "phone"]);
    assert_eq!(detail["identities"][1]["connector_id"], "api");
    let merge = &detail["merges"][0];
    assert_eq!(merge["survivor_id"], survivor.as_str());
    assert_eq!(merge["merged_id"], merged.as_str());
    assert_eq!(merge["actor"], "pipeline");
    assert!(
        merge["evidence"]["identities"].as_array().unwrap().len() == 2,
        "{merge}"
    );
    let tl = app
        .get_json(&format!("/api/v1/customers/{merged}/timeline"))
        .await;
    let texts: Vec<&str> = tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["both", "by phone", "by email"],
        "newest first, all three"
    );
    let listed = app.get_json("/api/v1/customers").await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "merged customers are listed once"
    );
    let q = app.get_json("/api/v1/customers?q=ada%40").await;
    assert_eq!(q["items"][0]["id"], survivor.as_str());
    app.stop().await;
}
on_both_backends!(
    an_event_with_claims_of_two_customers_merges_them_with_a_record,
    super::an_event_with_claims_of_two_customers_merges_them_with_a_record
);

async fn orders_reach_the_timeline_outside_conversations(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(json!({"id": "ord-1", "customer_id": "c9", "email": "buyer@shop.io",
                    "order": {"id": "1001", "total": "59.90", "currency": "EUR", "status": "paid"}})).await;
    app.drain().await;
    let c = app.get_json("/api/v1/customers?email=buyer@shop.io").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tl = app
        .get_json(&format!("/api/v1/customers/{c}/timeline"))
        .await;
    assert_eq!(tl["items"][0]["kind"], "order");
    assert_eq!(tl["items"][0]["conversation_id"], serde_json::Value::Null);
    assert_eq!(
        tl["items"][0]["body"],
        json!({"type": "order", "order_id": "1001", "total_minor": 5990, "currency": "EUR", "status": "paid"})
    );
    assert_eq!(app.store.count("conversations").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    orders_reach_the_timeline_outside_conversations,
    super::orders_reach_the_timeline_outside_conversations
);

async fn a_failing_job_is_retried_then_parked_dead_with_its_error(db: Db) {
    let Some(app) = spawn_app_with(db, |s| s.pipeline.max_attempts = 2).await else {
        return;
    };
    // A stored event the normaliser cannot read (not JSON): only possible from outside the
    // webhook path, e.g. an older connector version. It must not block the queue.
    app.store
        .insert_raw_events(&[NewRawEvent {
            connector_id: "api".into(),
            provider_event_id: "broken".into(),
            kind: "event".into(),
            occurred_at: None,
            received_at: 1,
            headers: "[]".into(),
            payload: bytes::Bytes::from_static(b"\xff not json"),
        }])
        .await
        .unwrap();
    app.send(json!({"id": "fine", "thread": "t", "text": "still processed", "email": "a@b.io"}))
        .await;
    app.drain().await;
    let dead = app.store.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].provider_event_id, "broken");
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("not JSON"),
        "{:?}",
        dead[0].last_error
    );
    assert_eq!(app.store.count("timeline_entries").await.unwrap(), 1);
    let m = app.metrics().await;
    assert!(
        m.contains("switchboard_normalize_dead_total{connector=\"api\"} 1"),
        "{m}"
    );
    assert!(m.contains("switchboard_jobs{state=\"dead\"} 1"), "{m}");
    app.stop().await;
}
on_both_backends!(
    a_failing_job_is_retried_then_parked_dead_with_its_error,
    super::a_failing_job_is_retried_then_parked_dead_with_its_error
);

async fn replay_rebuilds_the_same_timeline_without_duplicates(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..5 {
        app.send(
            json!({"id": format!("r{i}"), "thread": format!("t{}", i % 2), "text": format!("m{i}"),
                        "email": format!("p{}@x.io", i % 3), "at": 1_795_000_000 + i}),
        )
        .await;
    }
    app.drain().await;
    let before = snapshot(&app).await;
    let counts_before = counts(&app).await;
    assert_eq!(app.store.enqueue_replay("api", 0).await.unwrap(), 5);
    app.drain().await;
    assert_eq!(counts(&app).await, counts_before);
    assert_eq!(snapshot(&app).await, before);
    app.stop().await;
}
on_both_backends!(
    replay_rebuilds_the_same_timeline_without_duplicates,
    super::replay_rebuilds_the_same_timeline_without_duplicates
);

async fn health_readiness_and_metrics_answer(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(json!({"id": "h1", "text": "x", "thread": "t"}))
        .await;
    let get = |p: &str| app.client.get(format!("{}{p}", app.addr)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let m = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        m.contains("switchboard_ingest_total{connector=\"api\",outcome=\"accepted\"} 1"),
        "{m}"
    );
    assert!(m.contains("switchboard_jobs{state=\"queued\"}"), "{m}");
    assert!(m.contains("switchboard_job_lag_seconds"), "{m}");
    app.stop().await;
}
on_both_backends!(
    health_readiness_and_metrics_answer,
    super::health_readiness_and_metrics_answer
);

async fn snapshot(app: &common::TestApp) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut all = Vec::new();
    for c in app.get_json("/api/v1/customers").await["items"]
        .as_array()
        .unwrap()
    {
        let id = c["id"].as_str().unwrap();
        all.push(
            app.get_json(&format!("/api/v1/customers/{id}/timeline"))
                .await,
        );
    }
    (all, app.get_json("/api/v1/conversations").await)
}

async fn counts(app: &common::TestApp) -> Vec<i64> {
    let mut v = Vec::new();
    for t in [
        "customers",
        "identities",
        "conversations",
        "timeline_entries",
        "customer_merges",
    ] {
        v.push(app.store.count(t).await.unwrap());
    }
    v
}

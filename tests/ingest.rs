//! Durable webhook ingest, end to end through the real app, on SQLite and PostgreSQL.

mod common;

use common::{assert_problem, sign, spawn_app, spawn_app_with, Db};
use serde_json::json;

fn message(id: &str, text: &str) -> serde_json::Value {
    json!({"id": id, "type": "message.created", "thread": "t-1", "text": text,
           "email": "ada@example.com", "name": "Ada Lovelace", "at": "2026-11-20T10:00:00Z"})
}

async fn signed_webhook_reaches_the_customer_timeline(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let r = app.send(message("e1", "Where is my parcel?")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "accepted"
    );
    app.drain().await;

    let found = app
        .get_json("/api/v1/customers?email=ADA@example.com")
        .await;
    let customer = found["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(found["items"][0]["display_name"], "Ada Lovelace");
    let tl = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    assert_eq!(tl["items"].as_array().unwrap().len(), 1);
    assert_eq!(tl["items"][0]["body"]["text"], "Where is my parcel?");
    assert_eq!(tl["items"][0]["occurred_at"], "2026-11-20T10:00:00.000Z");

    let convs = app
        .get_json("/api/v1/conversations?status=open&connector=api")
        .await;
    assert_eq!(convs["items"][0]["customer_id"], customer.as_str());
    let id = convs["items"][0]["id"].as_str().unwrap();
    let conv = app.get_json(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(conv["messages"][0]["body"]["text"], "Where is my parcel?");
    app.stop().await;
}
on_both_backends!(
    signed_webhook_reaches_the_customer_timeline,
    super::signed_webhook_reaches_the_customer_timeline
);

async fn duplicate_event_id_is_200_and_stores_nothing_new(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    assert_eq!(app.send(message("dup", "first")).await.status(), 200);
    let r = app.send(message("dup", "second copy, same id")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "duplicate"
    );
    assert_eq!(app.store.count("raw_events").await.unwrap(), 1);
    assert_eq!(app.store.count("jobs").await.unwrap(), 1);
    app.drain().await;
    assert_eq!(app.store.count("timeline_entries").await.unwrap(), 1);
    app.stop().await;
}
on_both_backends!(
    duplicate_event_id_is_200_and_stores_nothing_new,
    super::duplicate_event_id_is_200_and_stores_nothing_new
);

async fn bad_missing_or_malformed_signature_is_401_and_stores_nothing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let body = serde_json::to_vec(&message("e1", "hi")).unwrap();
    let other = sign(b"another body");
    assert_problem(
        app.post_webhook("api", &body, Some(&other)).await,
        401,
        "bad_signature",
    )
    .await;
    assert_problem(
        app.post_webhook("api", &body, None).await,
        401,
        "missing_signature",
    )
    .await;
    assert_problem(
        app.post_webhook("api", &body, Some("sha256=xyz")).await,
        401,
        "malformed_signature",
    )
    .await;
    assert_problem(
        app.post_webhook("api", &body, Some("md5=abc")).await,
        401,
        "malformed_signature",
    )
    .await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"switchboard_ingest_total{connector="api",outcome="rejected",reason="bad_signature"} 1"#), "{metrics}");
    app.stop().await;
}
on_both_backends!(
    bad_missing_or_malformed_signature_is_401_and_stores_nothing,
    super::bad_missing_or_malformed_signature_is_401_and_stores_nothing
);

async fn unknown_connector_is_404_problem(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let body = b"{}";
    assert_problem(
        app.post_webhook("nope", body, Some(&sign(body))).await,
        404,
        "not_found",
    )
    .await;
    app.stop().await;
}
on_both_backends!(
    unknown_connector_is_404_problem,
    super::unknown_connector_is_404_problem
);

async fn oversized_body_is_413_problem_and_stores_nothing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // The test config limits bodies to 64 KiB.
    let big = serde_json::to_vec(&message("big", &"x".repeat(70_000))).unwrap();
    assert_problem(
        app.post_webhook("api", &big, Some(&sign(&big))).await,
        413,
        "body_too_large",
    )
    .await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    oversized_body_is_413_problem_and_stores_nothing,
    super::oversized_body_is_413_problem_and_stores_nothing
);

async fn malformed_json_is_400_problem_naming_the_problem(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let bad = b"{\"id\": \"e1\", \"text\": ";
    let p = assert_problem(
        app.post_webhook("api", bad, Some(&sign(bad))).await,
        400,
        "malformed_body",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("invalid JSON"),
        "{p}"
    );
    let no_id = br#"{"text": "hello"}"#;
    let p = assert_problem(
        app.post_webhook("api", no_id, Some(&sign(no_id))).await,
        400,
        "missing_field",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("/id"), "{p}");
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    malformed_json_is_400_problem_naming_the_problem,
    super::malformed_json_is_400_problem_naming_the_problem
);

async fn concurrent_webhooks_share_commits_and_each_lands_exactly_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let ev = json!({"id": format!("c{i}"), "thread": format!("t{}", i % 10), "text": format!("m{i}"),
                            "customer_id": format!("u{}", i % 10), "at": 1_795_000_000 + i});
            app.send(ev).await.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(app.store.count("raw_events").await.unwrap(), 200);
    let metrics = app.metrics().await;
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(counter("switchboard_ingest_committed_events_total"), 200);
    let commits = counter("switchboard_ingest_commits_total");
    assert!(
        (1..200).contains(&commits),
        "200 concurrent webhooks shared commits: {commits} commits"
    );
    app.drain().await;
    assert_eq!(app.store.count("timeline_entries").await.unwrap(), 200);
    assert_eq!(app.store.count("customers").await.unwrap(), 10);
    assert_eq!(app.store.count("conversations").await.unwrap(), 10);
    let app = std::sync::Arc::into_inner(app).unwrap();
    app.stop().await;
}
on_both_backends!(
    concurrent_webhooks_share_commits_and_each_lands_exactly_once,
    super::concurrent_webhooks_share_commits_and_each_lands_exactly_once
);

async fn get_on_the_webhook_endpoint_is_405(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let r = app
        .client
        .get(format!("{}/webhooks/api", app.addr))
        .send()
        .await
        .unwrap();
    assert_problem(r, 405, "method_not_allowed").await;
    app.stop().await;
}
on_both_backends!(
    get_on_the_webhook_endpoint_is_405,
    super::get_on_the_webhook_endpoint_is_405
);

async fn graceful_shutdown_commits_every_acknowledged_event(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let url = app.addr.clone();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let url = url.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            // Spread out, so that shutdown begins while later ones are still on their way.
            tokio::time::sleep(std::time::Duration::from_millis(i * 2)).await;
            let body =
                serde_json::to_vec(&json!({"id": format!("s{i}"), "text": "x", "thread": "t"}))
                    .unwrap();
            let r = reqwest::Client::new()
                .post(format!("{url}/webhooks/api"))
                .header("x-switchboard-signature", sign(&body))
                .body(body)
                .send()
                .await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            matches!(r, Ok(r) if r.status() == 200).then_some(i)
        }));
    }
    // Shut down once the first answers are in, with the rest still being sent: waiting for
    // an answer (not a fixed time) keeps a slow machine from stopping before any arrived.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 5
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let tdb = app.stop().await;
    let mut acked = Vec::new();
    for t in tasks {
        if let Some(i) = t.await.unwrap() {
            acked.push(i);
        }
    }
    let store = switchboard::store::Store::connect(&switchboard::config::DatabaseSettings {
        url: tdb.url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let stored = store.count("raw_events").await.unwrap();
    assert!(
        stored >= acked.len() as i64,
        "acknowledged {} but stored {stored}",
        acked.len()
    );
    assert!(
        !acked.is_empty(),
        "some requests were in flight and answered"
    );
    store.close().await;
}
on_both_backends!(
    graceful_shutdown_commits_every_acknowledged_event,
    super::graceful_shutdown_commits_every_acknowledged_event
);

async fn store_unavailable_is_503_never_2xx_and_recovers(db: Db) {
    let Some(app) = spawn_app_with(db, |s| s.server.ingest_timeout_ms = 300).await else {
        return;
    };
    assert_eq!(app.send(message("before", "ok")).await.status(), 200);
    // Make the database refuse writes for a while, then give it back.
    let blocker = common::block_writes(db, &app.db.url).await;
    let r = app.send(message("during", "not durable yet")).await;
    assert_problem(r, 503, "unavailable").await;
    drop(blocker);
    // The provider retries: the event is stored once.
    let mut status = 0;
    for _ in 0..50 {
        status = app
            .send(message("during", "not durable yet"))
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "ingest recovers by itself");
    app.drain().await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 2);
    assert_eq!(app.store.count("timeline_entries").await.unwrap(), 2);
    app.stop().await;
}
on_both_backends!(
    store_unavailable_is_503_never_2xx_and_recovers,
    super::store_unavailable_is_503_never_2xx_and_recovers
);

/// SQLite: the writer connection's thread, which every group commit waits for, asks Linux's
/// EEVDF scheduler for its shortest time slice (src/store/writer_thread.rs); the thread the
/// store reports is one of this process's, with that slice and its nice value unchanged.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_sqlite_writer_thread_takes_the_short_scheduling_slice() {
    let Some(app) = spawn_app(Db::Sqlite).await else {
        return;
    };
    // The writer is in use: a webhook committed through it.
    let r = app.send(message("slice-1", "hello")).await;
    assert_eq!(r.status(), 200);
    let tid = match app.store.sqlite_writer_thread() {
        Some(Ok(tid)) => tid,
        other => panic!("the writer thread did not take the short slice: {other:?}"),
    };
    let task = format!("/proc/self/task/{tid}");
    let comm = std::fs::read_to_string(format!("{task}/comm")).unwrap();
    assert!(comm.starts_with("sqlx-sqlite"), "thread {tid} is {comm:?}");
    let sched = std::fs::read_to_string(format!("{task}/sched")).unwrap();
    // Kernels before EEVDF (6.6) print no slice and ignore the request.
    if let Some(line) = sched.lines().find(|l| l.starts_with("se.slice")) {
        let ns: u64 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        assert_eq!(ns, 100_000, "{line}");
    }
    // Linux nice values are per thread: the writer keeps the process's.
    assert_eq!(nice_of(&format!("{task}/stat")), nice_of("/proc/self/stat"));
}

/// The nice value in a `/proc/.../stat` file (field 19; fields after the command name
/// start at 3, the state).
#[cfg(target_os = "linux")]
fn nice_of(stat: &str) -> i64 {
    let stat = std::fs::read_to_string(stat).unwrap();
    let after_name = stat.rsplit(')').next().unwrap();
    after_name
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap()
}

//! Crash and fault tests on one node, with real `switchboard serve` processes (kit in
//! `common/process.rs`): nothing acknowledged is ever lost, nothing is processed twice, and the
//! hub recovers by itself.
//!
//! - SQLite: `kill -9` mid-flood and restart, several cycles.
//! - PostgreSQL: the database vanishes under load (a proxy in front of the shared server cuts
//!   every connection and swallows or refuses new ones), then comes back.
//! - A sender killed mid-send: the reply reaches the receiver again with the same idempotency
//!   key, so the receiver delivers it once, and it never stays "sending".

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::process::{Flood, Hub, ProxyMode, TcpProxy};
use common::receiver::{Answer, Receiver};
use common::{fresh_db, fresh_pg_url, sign, Db};
use sqlx::{Connection, Row};

const EMAIL: &str = "flood@example.com";

/// How many times each stored event id was stored, read straight from the database.
async fn stored_counts(url: &str) -> HashMap<String, i64> {
    let sql = "SELECT provider_event_id, COUNT(*) FROM raw_events WHERE connector_id = 'api' \
               GROUP BY provider_event_id";
    let rows: Vec<(String, i64)> = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        let rows = sqlx::query(sql).fetch_all(&mut c).await.expect("query");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("pg");
        let rows = sqlx::query(sql).fetch_all(&mut c).await.expect("query");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    rows.into_iter().collect()
}

/// Pipeline jobs by state, read straight from the database.
async fn job_states(url: &str) -> HashMap<String, i64> {
    let sql = "SELECT state, COUNT(*) FROM jobs GROUP BY state";
    let rows: Vec<(String, i64)> = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        let rows = sqlx::query(sql).fetch_all(&mut c).await.expect("query");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("pg");
        let rows = sqlx::query(sql).fetch_all(&mut c).await.expect("query");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    rows.into_iter().collect()
}

/// Every acknowledged event is stored exactly once and on the timeline exactly once; nothing
/// is stored twice or on the timeline twice; every stored event reached the timeline (the
/// pipeline resumed); no job is left claimed, queued or dead.
async fn assert_exactly_once(
    hub: &Hub,
    url: &str,
    acked: &BTreeSet<String>,
    tried: &BTreeSet<String>,
    within: Duration,
) {
    let stored = stored_counts(url).await;
    for id in acked {
        assert_eq!(
            stored.get(id).copied(),
            Some(1),
            "acknowledged event {id} must be stored exactly once"
        );
    }
    for (id, n) in &stored {
        assert_eq!(*n, 1, "event {id} stored {n} times");
        assert!(tried.contains(id), "stored event {id} was never sent");
    }
    let texts = hub.wait_timeline(EMAIL, stored.len(), within).await;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in &texts {
        *seen.entry(t.as_str()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "on the timeline more than once: {twice:?}"
    );
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged event(s) missing from the timeline, e.g. {:?}\n{}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        hub.logs()
    );
    assert_eq!(
        texts.len(),
        stored.len(),
        "every stored event reaches the timeline once"
    );
    let jobs = job_states(url).await;
    for state in ["running", "queued", "dead"] {
        assert_eq!(
            jobs.get(state).copied().unwrap_or(0),
            0,
            "jobs {state}: {jobs:?}"
        );
    }
}

/// SQLite, one node: the hub is `kill -9`ed 20 times while four senders flood it, and
/// restarted on the same file. Every event that got a 2xx is stored once and on the timeline
/// once, nothing is stored or shown twice, and the pipeline resumes right after each restart:
/// jobs claimed by the killed process are released at start, not after their 60 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_mid_flood_loses_no_acknowledged_event_and_duplicates_none() {
    let Some(db) = fresh_db(Db::Sqlite).await else {
        return;
    };
    let mut hub = Hub::start(&db.url, db.dir.path(), |_| {}).await;
    let flood = Flood::start(&hub.addr, EMAIL, "k9", 4, Duration::ZERO);
    for cycle in 0..20u64 {
        assert!(
            flood.wait_acked(60, Duration::from_secs(60)).await,
            "cycle {cycle}: the hub took no events\n{}",
            hub.logs()
        );
        // Somewhere mid-commit or mid-batch, differently each cycle.
        tokio::time::sleep(Duration::from_millis(7 * (cycle % 8))).await;
        hub.kill9();
        tokio::time::sleep(Duration::from_millis(200)).await;
        hub.restart().await;
    }
    assert!(
        flood.wait_acked(150, Duration::from_secs(60)).await,
        "events are acknowledged after the last restart\n{}",
        hub.logs()
    );
    let report = flood.stop().await;
    let statuses = report.statuses();
    eprintln!(
        "kill -9 x20: {} events acknowledged, {} sent, answers {statuses:?}",
        report.acked.len(),
        report.tried.len()
    );
    assert!(
        statuses.get(&None).copied().unwrap_or(0) > 0,
        "the kills hit requests in flight: {statuses:?}"
    );
    for status in statuses.keys().flatten() {
        assert!(
            *status == 200 || *status == 503,
            "only 200 or 503 while crashing: {statuses:?}"
        );
    }
    // Well inside the pipeline's 60 s lease: only releasing the dead run's claims at start
    // lets the last batch claimed before a kill reach the timeline this soon.
    let within = Duration::from_secs(30);
    assert_exactly_once(&hub, &db.url, &report.acked, &report.tried, within).await;
    assert!(hub.terminate().await, "a clean stop after all that");
}

/// `postgres://user@host:port/db` → (`host:port`, the same URL through 127.0.0.1:`port`).
fn through_proxy(url: &str, proxy_port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), rest),
    };
    let (hostport, path) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let upstream = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    (
        upstream,
        format!("{scheme}://{auth}127.0.0.1:{proxy_port}/{path}"),
    )
}

/// PostgreSQL vanishes under load for about six seconds, without touching the shared server:
/// a proxy in front of it first stalls this hub's open connections (a network that drops
/// packets), then closes them and swallows new ones (a dead host), then resets new ones. During the outage no webhook gets a 2xx; every answer is a quick 503
/// problem+json with Retry-After (within the ingest timeout, no hang), and `/readyz` says not
/// ready. When the database is back the hub recovers by itself, and every acknowledged event
/// is on the timeline exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_under_load_answers_503_and_recovers_by_itself_postgres() {
    let Some(direct) = fresh_pg_url().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, _) = through_proxy(&direct, 0);
    let proxy = TcpProxy::start(&upstream).await;
    let (_, proxied) = through_proxy(&direct, proxy.port);
    let ingest_timeout = Duration::from_millis(2000);
    let hub = Hub::start(&proxied, dir.path(), |t| {
        let server = t["server"].as_table_mut().expect("[server]");
        server.insert(
            "ingest_timeout_ms".into(),
            toml::Value::Integer(ingest_timeout.as_millis() as i64),
        );
    })
    .await;
    let flood = Flood::start(&hub.addr, EMAIL, "pg", 4, Duration::from_millis(5));
    assert!(
        flood.wait_acked(100, Duration::from_secs(60)).await,
        "the hub takes events before the outage\n{}",
        hub.logs()
    );

    let outage_start = Instant::now();
    proxy.set(ProxyMode::Stall);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let asked = Instant::now();
    let ready = probe
        .get(format!("{}/readyz", hub.addr))
        .send()
        .await
        .expect("/readyz answers during the outage");
    let ready_took = asked.elapsed();
    assert_eq!(ready.status(), 503, "not ready while the database is gone");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set(ProxyMode::Blackhole);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(ProxyMode::Refuse);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outage_end = Instant::now();
    proxy.set(ProxyMode::Forward);

    assert!(
        flood.wait_acked(100, Duration::from_secs(60)).await,
        "ingest recovers by itself after the outage\n{}",
        hub.logs()
    );
    let report = flood.stop().await;

    // A request that began after the cut and ended before the restore had no database.
    let grace = Duration::from_millis(200);
    let during: Vec<_> = report
        .attempts
        .iter()
        .filter(|a| a.started > outage_start + grace && a.started + a.latency < outage_end)
        .collect();
    assert!(
        during.len() >= 4,
        "the flood kept asking during the outage: {}",
        during.len()
    );
    let slowest = during.iter().map(|a| a.latency).max().unwrap_or_default();
    eprintln!(
        "outage: {} events acknowledged, {} requests during the outage (slowest answer {slowest:?}), /readyz answered in {ready_took:?}, answers {:?}",
        report.acked.len(),
        during.len(),
        report.statuses()
    );
    let slack = Duration::from_secs(3);
    for a in &during {
        assert_eq!(
            a.status,
            Some(503),
            "event {} answered {:?} with no database",
            a.id,
            a.status
        );
        assert!(
            a.problem_json && a.retry_after,
            "503 as problem+json with Retry-After"
        );
        assert!(
            a.latency <= ingest_timeout + slack,
            "a 503 comes within the ingest timeout, not after a hang: {:?}",
            a.latency
        );
    }
    assert!(
        report.attempts.iter().all(|a| a.status.is_some()),
        "every request got an answer (no hang, no reset)"
    );
    assert!(
        ready_took <= Duration::from_secs(2) + slack,
        "/readyz answers within its bound: {ready_took:?}"
    );
    let ready = probe
        .get(format!("{}/readyz", hub.addr))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "ready again");
    let within = Duration::from_secs(60);
    assert_exactly_once(&hub, &direct, &report.acked, &report.tried, within).await;
}

/// Points connector `api` (the first) at a fake reply receiver.
fn reply_to(t: &mut toml::Table, url: &str) {
    let c = t["connectors"].as_array_mut().expect("connectors")[0]
        .as_table_mut()
        .expect("connector table");
    c.insert("reply_url".into(), toml::Value::String(url.into()));
    let m = c["mapping"].as_table_mut().expect("mapping");
    m.insert("status".into(), toml::Value::String("/status".into()));
    m.insert(
        "message_id".into(),
        toml::Value::String("/message_id".into()),
    );
}

/// The hub is `kill -9`ed while the receiver holds its reply request (received, not yet
/// answered). After a restart the reply is sent again with the same Idempotency-Key and the
/// same body, so a receiver that honours the key delivers it once; it ends `sent`, not stuck
/// in `sending`. SQLite releases the dead run's claim at start, well inside the send lease
/// (35 s here); PostgreSQL, where another node might still be sending, waits for the lease.
async fn sender_killed_mid_send_resends_with_the_same_key_and_never_sticks(db: Db) {
    let Some(tdb) = fresh_db(db).await else {
        return;
    };
    let receiver = Receiver::start(&[Answer::Hang]).await;
    // The send lease is the send timeout + 5 s: 35 s on SQLite (only the release at start
    // can beat it), 8 s on PostgreSQL.
    let send_timeout_ms: i64 = if db == Db::Sqlite { 30_000 } else { 3_000 };
    let url = receiver.url.clone();
    let mut hub = Hub::start(&tdb.url, tdb.dir.path(), |t| {
        reply_to(t, &url);
        let out = t["outbound"].as_table_mut().expect("[outbound]");
        out.insert(
            "send_timeout_ms".into(),
            toml::Value::Integer(send_timeout_ms),
        );
        out.insert("lease_secs".into(), toml::Value::Integer(1));
    })
    .await;

    let body = serde_json::to_vec(&serde_json::json!({
        "id": "in-1", "thread": "t-crash", "text": "hello?", "email": EMAIL, "name": "Ada"
    }))
    .unwrap();
    let r = hub
        .client
        .post(format!("{}/webhooks/api", hub.addr))
        .header("content-type", "application/json")
        .header("x-switchboard-signature", sign(&body))
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let conv = loop {
        let list = hub.get_json("/api/v1/conversations?limit=10").await;
        if let Some(id) = list["items"][0]["id"].as_str() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "conversation created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = hub
        .client
        .post(format!("{}/api/v1/conversations/{conv}/replies", hub.addr))
        .bearer_auth(&hub.token)
        .header("idempotency-key", "crash-reply-1")
        .json(&serde_json::json!({ "text": "Your parcel left today" }))
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.received().is_empty() {
        assert!(Instant::now() < deadline, "the send reached the receiver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.kill9();
    hub.restart().await;

    let path = format!("/api/v1/conversations/{conv}/messages/{id}");
    let within = if db == Db::Sqlite { 20 } else { 40 };
    let deadline = Instant::now() + Duration::from_secs(within);
    let m = loop {
        let m = hub.get_json(&path).await;
        if m["state"] == "sent" || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(m["state"], "sent", "{m}\n{}", hub.logs());
    let got = receiver.received();
    assert_eq!(got.len(), 2, "the interrupted send, then one retry");
    for g in &got {
        assert_eq!(g.headers["idempotency-key"], "crash-reply-1");
        assert_eq!(g.body, got[0].body, "the same request each time");
    }
    let keys: BTreeSet<_> = got
        .iter()
        .map(|g| g.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "one delivery from the receiver's point of view"
    );
    assert!(hub.terminate().await, "a clean stop");
}
on_both_backends!(
    sender_killed_mid_send_resends_with_the_same_key_and_never_sticks,
    super::sender_killed_mid_send_resends_with_the_same_key_and_never_sticks
);

/// A reply receiver that holds the first request until the test opens the gate, then answers
/// 200 to it and to every later one; it records each request's Idempotency-Key.
struct GatedReceiver {
    url: String,
    keys: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
}

impl GatedReceiver {
    async fn start() -> GatedReceiver {
        use axum::http::HeaderMap;
        let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let (k, g) = (keys.clone(), gate.clone());
        let app = axum::Router::new().route(
            "/replies",
            axum::routing::post(move |headers: HeaderMap| {
                let (k, g) = (k.clone(), g.clone());
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let first = {
                        let mut k = k.lock().unwrap();
                        k.push(key.clone());
                        k.len() == 1
                    };
                    if first {
                        if let Ok(p) = g.acquire().await {
                            p.forget();
                        }
                    }
                    axum::Json(serde_json::json!({ "id": format!("prov-{key}") }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/replies", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GatedReceiver { url, keys, gate }
    }

    fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

/// The provider accepts a reply while the database is away (a proxy cut it): the sender keeps
/// trying to record the outcome, so once the database is back the message is `sent` and the
/// provider got one request, not a second one after the 15 s send lease ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_accepted_during_a_database_outage_is_recorded_not_resent_postgres() {
    let Some(direct) = fresh_pg_url().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, _) = through_proxy(&direct, 0);
    let proxy = TcpProxy::start(&upstream).await;
    let (_, proxied) = through_proxy(&direct, proxy.port);
    let receiver = GatedReceiver::start().await;
    let url = receiver.url.clone();
    let hub = Hub::start(&proxied, dir.path(), |t| {
        reply_to(t, &url);
        let out = t["outbound"].as_table_mut().expect("[outbound]");
        // Lease = send timeout + 5 s = 15 s.
        out.insert("send_timeout_ms".into(), toml::Value::Integer(10_000));
        out.insert("lease_secs".into(), toml::Value::Integer(1));
    })
    .await;
    let body = serde_json::to_vec(&serde_json::json!({
        "id": "in-1", "thread": "t-outage", "text": "hello?", "email": EMAIL, "name": "Ada"
    }))
    .unwrap();
    let r = hub
        .client
        .post(format!("{}/webhooks/api", hub.addr))
        .header("content-type", "application/json")
        .header("x-switchboard-signature", sign(&body))
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let conv = loop {
        let list = hub.get_json("/api/v1/conversations?limit=10").await;
        if let Some(id) = list["items"][0]["id"].as_str() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "conversation created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = hub
        .client
        .post(format!("{}/api/v1/conversations/{conv}/replies", hub.addr))
        .bearer_auth(&hub.token)
        .header("idempotency-key", "outage-reply-1")
        .json(&serde_json::json!({ "text": "On its way" }))
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.keys().is_empty() {
        assert!(Instant::now() < deadline, "the send reached the receiver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claimed = Instant::now();
    proxy.set(ProxyMode::Refuse);
    tokio::time::sleep(Duration::from_millis(300)).await;
    receiver.gate.add_permits(1); // the provider accepts while the database is gone
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(ProxyMode::Forward);

    let path = format!("/api/v1/conversations/{conv}/messages/{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = hub.get_json(&path).await;
        if m["state"] == "sent" || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(m["state"], "sent", "{m}\n{}", hub.logs());
    // Past the 15 s lease and a sweep: a send whose outcome was lost would go out again now.
    let past_lease = claimed + Duration::from_secs(18);
    tokio::time::sleep(past_lease.saturating_duration_since(Instant::now())).await;
    assert_eq!(
        receiver.keys(),
        vec!["outage-reply-1".to_string()],
        "one request reached the provider\n{}",
        hub.logs()
    );
}

//! Several hub nodes on one database: poll leases (one node polls a connector at a time, a
//! stopped or killed owner's connectors pass to another node, a stale page is fenced off),
//! roles per node, SSE across nodes (LISTEN/NOTIFY), and three real `switchboard serve`
//! processes under a webhook flood with `kill -9` of one node, over and over.
//!
//! Which node polls is seen from the provider's side: every node's Telegram connector points at
//! its own path prefix on one fake Bot API (`/n1`, `/n2`, …) that holds each `getUpdates` for
//! `HOLD`; two owners at once would show as requests from two prefixes less than `HOLD` apart.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fresh_db, fresh_pg_url, settings, sign, Db, SECRET};
use serde_json::json;
use switchboard::app::Application;
use switchboard::config::Settings;
use switchboard::node::Roles;
use switchboard::store::{LeaseFence, LeaseLost, NewRawEvent, Store};
use switchboard_core::fake::{Answer, FakeProvider, Recorded};
use tokio::sync::oneshot;

const TOKEN: &str = "7000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
/// How long the fake Bot API holds every `getUpdates`.
const HOLD: Duration = Duration::from_millis(100);

fn updates_path(node: usize) -> String {
    format!("/n{node}/bot{TOKEN}/getUpdates")
}

/// A fake Bot API answering every node's `getUpdates` with an empty page after `HOLD`.
async fn fake_bot_api(nodes: usize) -> FakeProvider {
    let fake = FakeProvider::start().await;
    for n in 1..=nodes {
        fake.on(
            "POST",
            &updates_path(n),
            [Answer::json(json!({"ok": true, "result": []})).delayed(HOLD)],
        );
    }
    fake
}

/// The Telegram poll connector of node `node`, as a TOML table.
fn telegram_toml(api_base: &str, node: usize) -> String {
    format!(
        r#"
[[connectors]]
id = "tg"
kind = "telegram"
bot_token = "{TOKEN}"
mode = "poll"
api_base = "{api_base}/n{node}"
poll_timeout_secs = 1
"#
    )
}

/// The polls the fake saw, as (arrival, node), in arrival order.
fn polls(fake: &FakeProvider) -> Vec<(Instant, usize)> {
    let mut out: Vec<(Instant, usize)> = fake
        .received()
        .iter()
        .filter_map(|r: &Recorded| {
            let rest = r.path.strip_prefix("/n")?;
            let (n, tail) = rest.split_once('/')?;
            tail.ends_with("getUpdates")
                .then(|| n.parse().ok())
                .flatten()
                .map(|n| (r.at, n))
        })
        .collect();
    out.sort_by_key(|(at, _)| *at);
    out
}

/// Two polls from different nodes less than `HOLD` apart: both were in flight at once.
fn overlaps(polls: &[(Instant, usize)]) -> Vec<(usize, usize, Duration)> {
    polls
        .windows(2)
        .filter(|w| w[0].1 != w[1].1 && w[1].0.duration_since(w[0].0) < HOLD)
        .map(|w| (w[0].1, w[1].1, w[1].0.duration_since(w[0].0)))
        .collect()
}

/// An in-process node: the real `Application` with a shutdown handle.
struct Node {
    addr: String,
    node_id: String,
    store: Store,
    live: switchboard::http::live::LiveEvents,
    token: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Node {
    async fn start(s: Settings) -> Node {
        let app = Application::build(s).await.expect("build node");
        let addr = format!("http://127.0.0.1:{}", app.port());
        let node_id = app.node_id().to_string();
        let store = app.store();
        let live = app.live_events();
        let token =
            switchboard::auth::create_token(&store, "test-admin", switchboard::auth::Role::Admin)
                .await
                .expect("token");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Node {
            addr,
            node_id,
            store,
            live,
            token,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("clean shutdown");
        }
    }
}

fn node_settings(url: &str, extra_toml: &str, tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = settings(url);
    if !extra_toml.is_empty() {
        let t: toml::Table = toml::from_str(extra_toml).expect("extra toml");
        if let Some(toml::Value::Array(cs)) = t.get("connectors") {
            s.connectors.extend(cs.iter().cloned());
        }
    }
    s.poller.lease_seconds = 2;
    s.poller.min_interval_ms = 20;
    s.poller.base_backoff_ms = 50;
    s.poller.max_backoff_ms = 200;
    tweak(&mut s);
    s
}

fn raw(id: &str) -> NewRawEvent {
    NewRawEvent {
        connector_id: "tg".into(),
        provider_event_id: id.into(),
        kind: "message".into(),
        occurred_at: None,
        received_at: 0,
        headers: "[]".into(),
        payload: bytes::Bytes::from_static(b"{}"),
    }
}

/// The lease at the store: one holder at a time, a takeover only after expiry, and a page
/// written under a lease that passed to another node is refused whole (the cursor stays).
async fn a_lease_passes_only_after_expiry_and_fences_off_the_old_owner(db: Db) {
    let Some(tdb) = fresh_db(db).await else {
        return;
    };
    let store = Store::connect(&settings(&tdb.url).database)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let a = store
        .try_acquire_lease("tg", "node-a", 300, false)
        .await
        .unwrap()
        .expect("free lease is taken");
    assert_eq!(
        store
            .try_acquire_lease("tg", "node-b", 300, false)
            .await
            .unwrap(),
        None,
        "a held lease is not taken"
    );
    let held_a = LeaseFence {
        owner: "node-a".into(),
        fence: a,
    };
    assert!(store.renew_lease("tg", &held_a, 300).await.unwrap());
    store
        .insert_polled_fenced("tg", &[raw("1")], Some("c1"), &held_a)
        .await
        .expect("the owner stores a page");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = store
        .try_acquire_lease("tg", "node-b", 10_000, false)
        .await
        .unwrap()
        .expect("an expired lease is taken");
    assert!(b > a, "the fence grows at a change of owner: {a} -> {b}");
    // node-a was paused past its lease: its renewal and its page are refused.
    assert!(!store.renew_lease("tg", &held_a, 300).await.unwrap());
    let err = store
        .insert_polled_fenced("tg", &[raw("2")], Some("stale"), &held_a)
        .await
        .expect_err("a stale page is refused");
    assert!(err.downcast_ref::<LeaseLost>().is_some(), "{err:#}");
    assert_eq!(
        store.poll_cursor("tg").await.unwrap().as_deref(),
        Some("c1")
    );
    assert_eq!(store.count("raw_events").await.unwrap(), 1);
    // Released, it passes at once.
    let held_b = LeaseFence {
        owner: "node-b".into(),
        fence: b,
    };
    store.release_lease("tg", &held_b).await.unwrap();
    assert!(store
        .try_acquire_lease("tg", "node-c", 300, false)
        .await
        .unwrap()
        .is_some());
    let leases = store.leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].owner, "node-c");
    store.close().await;
}
on_both_backends!(
    a_lease_passes_only_after_expiry_and_fences_off_the_old_owner,
    super::a_lease_passes_only_after_expiry_and_fences_off_the_old_owner
);

mod postgres {
    use super::*;

    /// Three nodes on one PostgreSQL, each running the poller: exactly one polls the
    /// connector; when it stops, another takes over, and never are two polling at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_poll_a_connector_one_at_a_time_and_hand_over_postgres() {
        let Some(url) = fresh_pg_url().await else {
            return;
        };
        let fake = fake_bot_api(3).await;
        let mut nodes = Vec::new();
        for n in 1..=3 {
            let s = node_settings(&url, &telegram_toml(&fake.base, n), |_| {});
            nodes.push(Node::start(s).await);
        }
        // Wait for polls, then let them run a while.
        let deadline = Instant::now() + Duration::from_secs(15);
        while polls(&fake).len() < 5 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seen = polls(&fake);
        let pollers: std::collections::BTreeSet<usize> = seen.iter().map(|(_, n)| *n).collect();
        assert_eq!(pollers.len(), 1, "exactly one node polls: {pollers:?}");
        let owner = *pollers.iter().next().unwrap();
        // The API names the owner, on every node.
        let client = reqwest::Client::new();
        for node in &nodes {
            let list: serde_json::Value = client
                .get(format!("{}/api/v1/connectors", node.addr))
                .bearer_auth(&node.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let tg = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == "tg")
                .cloned()
                .unwrap();
            assert_eq!(tg["poll_lease"]["owner"], nodes[owner - 1].node_id, "{tg}");
            assert_eq!(
                tg["poll_lease"]["held_by_this_node"],
                node.node_id == nodes[owner - 1].node_id
            );
        }
        // The owner stops (gracefully: it gives the lease up); another node takes over.
        let stopped_at = Instant::now();
        let owner_node = nodes.remove(owner - 1);
        owner_node.stop().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        let takeover = loop {
            if let Some((at, n)) = polls(&fake)
                .into_iter()
                .find(|(at, n)| *n != owner && *at > stopped_at)
            {
                break Some((at, n));
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (at, new_owner) = takeover.expect("another node takes the connector over");
        eprintln!(
            "handover after a graceful stop: {:?} (to node {new_owner})",
            at.duration_since(stopped_at)
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        let all = polls(&fake);
        assert!(
            overlaps(&all).is_empty(),
            "two nodes polled at once: {:?}",
            overlaps(&all)
        );
        let after: std::collections::BTreeSet<usize> = all
            .iter()
            .filter(|(a, _)| *a > stopped_at)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(after.len(), 1, "one owner after the handover: {after:?}");
        for n in nodes {
            n.stop().await;
        }
    }

    /// An SSE client on node B sees an event that node A produced, woken by LISTEN/NOTIFY;
    /// resuming on node B with Last-Event-ID gives exactly the events after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sse_on_node_b_sees_events_of_node_a_with_last_event_id_postgres() {
        let Some(url) = fresh_pg_url().await else {
            return;
        };
        // Node A ingests and normalises; node B only serves the API.
        let a = Node::start(node_settings(&url, "", |s| {
            s.server.roles = Roles::parse("ingest,pipeline").unwrap()
        }))
        .await;
        let b = Node::start(node_settings(&url, "", |s| {
            s.server.roles = Roles::parse("api").unwrap()
        }))
        .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !b.live.is_listening() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(b.live.is_listening(), "node B listens for events");
        let client = reqwest::Client::new();
        let post = |id: &str| {
            let body = serde_json::to_vec(&json!({"id": id, "thread": "t1", "text": format!("hello {id}"), "email": "ada@example.com"})).unwrap();
            client
                .post(format!("{}/webhooks/api", a.addr))
                .header("content-type", "application/json")
                .header("x-switchboard-signature", sign(&body))
                .body(body)
                .send()
        };
        let mut wake = b.live.subscribe();
        wake.borrow_and_update();
        let mut sse = Sse::open(&client, &b, None).await;
        let sent = Instant::now();
        assert_eq!(post("e1").await.unwrap().status(), 200);
        // The NOTIFY of node A's commit wakes node B.
        tokio::time::timeout(Duration::from_secs(10), wake.changed())
            .await
            .expect("node B is woken by node A's event")
            .unwrap();
        let first = sse.next_event("message.created").await;
        eprintln!("node A -> SSE on node B: {:?}", sent.elapsed());
        assert_eq!(first.1["data"]["body"]["text"], "hello e1", "{}", first.1);
        drop(sse);
        // While no client is connected, two more events; a client resuming with the first
        // id gets both, once each, in order.
        assert_eq!(post("e2").await.unwrap().status(), 200);
        assert_eq!(post("e3").await.unwrap().status(), 200);
        let mut resumed = Sse::open(&client, &b, Some(first.0)).await;
        let e2 = resumed.next_event("message.created").await;
        let e3 = resumed.next_event("message.created").await;
        assert!(first.0 < e2.0 && e2.0 < e3.0);
        assert_eq!(e2.1["data"]["body"]["text"], "hello e2");
        assert_eq!(e3.1["data"]["body"]["text"], "hello e3");
        drop(resumed);
        a.stop().await;
        b.stop().await;
    }

    /// A bounded reader of an SSE response.
    struct Sse {
        resp: reqwest::Response,
        buf: String,
    }

    impl Sse {
        async fn open(client: &reqwest::Client, node: &Node, last: Option<i64>) -> Sse {
            let mut req = client
                .get(format!("{}/api/v1/events", node.addr))
                .bearer_auth(&node.token);
            if let Some(l) = last {
                req = req.header("last-event-id", l.to_string());
            }
            let resp = req.send().await.expect("sse");
            assert_eq!(resp.status(), 200);
            Sse {
                resp,
                buf: String::new(),
            }
        }

        /// The next event of `kind` as (id, data), within 10 s.
        async fn next_event(&mut self, kind: &str) -> (i64, serde_json::Value) {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut id = None;
                    let mut event = None;
                    let mut data = None;
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().parse::<i64>().ok();
                        } else if let Some(v) = line.strip_prefix("event:") {
                            event = Some(v.trim().to_string());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data = serde_json::from_str::<serde_json::Value>(v.trim()).ok();
                        }
                    }
                    if let (Some(id), Some(e), Some(d)) = (id, event, data) {
                        if e == kind {
                            return (id, d);
                        }
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let chunk = tokio::time::timeout(left, self.resp.chunk())
                    .await
                    .expect("an SSE event within 10 s")
                    .expect("sse read")
                    .expect("stream open");
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    }
}

/// A node with `ingest` only takes webhooks, serves no `/api/v1` (404) and normalises
/// nothing; a node with `pipeline,api` on the same database then puts the event on the
/// timeline.
async fn an_ingest_only_node_serves_no_api_and_runs_no_pipeline(db: Db) {
    let Some(tdb) = fresh_db(db).await else {
        return;
    };
    let ingest = Node::start(node_settings(&tdb.url, "", |s| {
        s.server.roles = Roles::parse("ingest").unwrap()
    }))
    .await;
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(
        &json!({"id": "r1", "thread": "t1", "text": "hi", "email": "ada@example.com"}),
    )
    .unwrap();
    let r = client
        .post(format!("{}/webhooks/api", ingest.addr))
        .header("content-type", "application/json")
        .header("x-switchboard-signature", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for path in ["/api/v1/conversations", "/api/v1/openapi.json"] {
        let r = client
            .get(format!("{}{path}", ingest.addr))
            .bearer_auth(&ingest.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = client
            .get(format!("{}{path}", ingest.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The job stays queued: no pipeline runs here (its idle poll is 50 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let q = ingest.store.queue_stats().await.unwrap();
    assert_eq!((q.queued, q.running), (1, 0));
    assert_eq!(ingest.store.count("timeline_entries").await.unwrap(), 0);
    ingest.stop().await;
    // SQLite is single-node, so the worker node comes after; on PostgreSQL that is the same.
    let worker = Node::start(node_settings(&tdb.url, "", |s| {
        s.server.roles = Roles::parse("pipeline,api").unwrap()
    }))
    .await;
    let r = client
        .post(format!("{}/webhooks/api", worker.addr))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no ingest role: no /webhooks");
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.store.count("timeline_entries").await.unwrap() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(worker.store.count("timeline_entries").await.unwrap(), 1);
    worker.stop().await;
    drop(tdb);
}
on_both_backends!(
    an_ingest_only_node_serves_no_api_and_runs_no_pipeline,
    super::an_ingest_only_node_serves_no_api_and_runs_no_pipeline
);

#[test]
fn serve_with_an_unknown_role_fails_and_names_the_roles() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--roles", "api,chef"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown role `chef`"), "{err}");
    assert!(
        err.contains("api, ingest, pipeline, sender, poller"),
        "{err}"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--roles"), "{help}");
}

// ---- three real processes under kill -9 -------------------------------------------------

/// A free port on 127.0.0.1 (bound and released; the node binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `switchboard serve` process; killed when dropped.
struct Proc {
    port: u16,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl Proc {
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn switchboard serve");
        self.child = Some(child);
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = client
                .get(format!("http://127.0.0.1:{}/readyz", self.port))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node on port {} not ready; log:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL, and reap.
    async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the flood saw: every event id that got a 2xx.
#[derive(Default)]
struct Acks {
    acked: Vec<String>,
    refused: usize,
    failed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_under_kill_9_lose_nothing_and_keep_one_poller_postgres() {
    let Some(url) = fresh_pg_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_bot_api(3).await;
    // Migrate once up front (nodes would too; one at a time under an advisory lock).
    {
        let store = Store::connect(&settings(&url).database).await.unwrap();
        store.migrate().await.unwrap();
        store.close().await;
    }
    let mut procs = Vec::new();
    for n in 1..=3 {
        let port = free_port();
        let config = dir.path().join(format!("node{n}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
ingest_timeout_ms = 3000
[database]
url = "{url}"
max_connections = 6
writers = 2
[pipeline]
base_backoff_ms = 20
max_backoff_ms = 100
idle_poll_ms = 50
lease_secs = 2
[poller]
lease_seconds = 2
min_interval_ms = 20
base_backoff_ms = 50
max_backoff_ms = 200
[log]
level = "warn"
[[connectors]]
id = "api"
kind = "generic"
secret = "{SECRET}"
signature_prefix = "sha256="
event_id = "/id"
event_kind = "/type"
[connectors.mapping]
text = "/text"
thread = "/thread"
customer_email = "/email"
{tg}
"#,
                tg = telegram_toml(&fake.base, n)
            ),
        )
        .unwrap();
        let mut p = Proc {
            port,
            config,
            log: dir.path().join(format!("node{n}.log")),
            child: None,
        };
        p.spawn().await;
        procs.push(p);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for p in &procs {
        p.wait_ready(&client).await;
    }
    // The flood: two senders per node, unique ids, until told to stop.
    let acks = Arc::new(Mutex::new(Acks::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut senders = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        for k in 0..2 {
            let port = p.port;
            let acks = acks.clone();
            let stop = stop_rx.clone();
            let client = client.clone();
            senders.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while !*stop.borrow() {
                    seq += 1;
                    let id = format!("n{i}-s{k}-{seq}");
                    let body = serde_json::to_vec(&json!({"id": id, "thread": format!("t{}", seq % 50), "text": "flood", "email": format!("c{}@example.com", seq % 50)})).unwrap();
                    let r = client
                        .post(format!("http://127.0.0.1:{port}/webhooks/api"))
                        .header("content-type", "application/json")
                        .header("x-switchboard-signature", sign(&body))
                        .body(body)
                        .send()
                        .await;
                    let ok = match r {
                        Ok(r) if r.status().is_success() => {
                            acks.lock().unwrap().acked.push(id);
                            true
                        }
                        Ok(_) => {
                            acks.lock().unwrap().refused += 1;
                            true
                        }
                        Err(_) => {
                            acks.lock().unwrap().failed += 1;
                            false
                        }
                    };
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
    }
    // Kill -9 one node per cycle; every other cycle the current poll owner.
    let started = Instant::now();
    let mut failovers: Vec<Duration> = Vec::new();
    const CYCLES: usize = 20;
    for cycle in 0..CYCLES {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let victim = if cycle % 2 == 0 {
            polls(&fake).last().map(|(_, n)| n - 1).unwrap_or(0)
        } else {
            cycle % 3
        };
        let was_owner = polls(&fake).last().map(|(_, n)| n - 1) == Some(victim);
        let killed_at = Instant::now();
        procs[victim].kill9().await;
        procs[victim].spawn().await;
        procs[victim].wait_ready(&client).await;
        if was_owner {
            // The next poll by anyone after the kill: the failover (bounded by the lease).
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some((at, _)) = polls(&fake).into_iter().find(|(at, _)| *at > killed_at) {
                    failovers.push(at.duration_since(killed_at));
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no node polls after the owner was killed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let _ = stop_tx.send(true);
    for s in senders {
        let _ = s.await;
    }
    let flood = started.elapsed();
    // Every acknowledged event is normalised: wait for the queue to empty (jobs of a killed
    // node come back after the pipeline lease, 2 s).
    let store = Store::connect(&settings(&url).database).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = store.queue_stats().await.unwrap();
        if q.queued + q.running == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the queue does not drain: {q:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = store.pg_pool().unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.provider_event_id, COUNT(t.id) FROM raw_events r \
         LEFT JOIN timeline_entries t ON t.raw_event_id = r.id \
         WHERE r.connector_id = 'api' GROUP BY r.provider_event_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let on_timeline: HashMap<String, i64> = rows.into_iter().collect();
    let a = std::mem::take(&mut *acks.lock().unwrap());
    let lost: Vec<&String> = a
        .acked
        .iter()
        .filter(|id| !on_timeline.contains_key(*id))
        .collect();
    let not_once: Vec<(&String, i64)> = on_timeline
        .iter()
        .filter(|(_, n)| **n != 1)
        .map(|(id, n)| (id, *n))
        .collect();
    let dead = store.queue_stats().await.unwrap().dead;
    let all = polls(&fake);
    eprintln!(
        "{CYCLES} kill -9 cycles in {flood:?}: {} acknowledged, {} stored, {} refused (5xx/4xx), {} failed to connect; {} polls; failover after killing the owner: max {:?} over {} kills",
        a.acked.len(),
        on_timeline.len(),
        a.refused,
        a.failed,
        all.len(),
        failovers.iter().max(),
        failovers.len()
    );
    assert!(a.acked.len() > 100, "the flood got through");
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(
        not_once.is_empty(),
        "not exactly once on the timeline: {not_once:?}"
    );
    assert_eq!(dead, 0, "no job died");
    assert!(
        overlaps(&all).is_empty(),
        "two nodes polled at once: {:?}",
        overlaps(&all)
    );
    assert!(!failovers.is_empty(), "the owner was killed at least once");
    store.close().await;
    for p in &mut procs {
        p.kill9().await;
    }
}

/// Two nodes and one reply: node A's send lease runs out, node B claims the reply again;
/// node A's late outcome is ignored, node B's counts (claims are fenced by attempt number).
async fn a_late_send_outcome_of_a_reclaimed_reply_is_ignored(db: Db) {
    let Some(app) = common::spawn_app_with(db, |s| s.outbound.enabled = false).await else {
        return;
    };
    let conv = app.conversation("t-late", "ada@example.com").await;
    let (msg, _) = app
        .store
        .create_reply(&conv, "hello", &[], "late-1", "test")
        .await
        .unwrap();
    let now = switchboard::store::now_ms();
    let a = app.store.claim_outbound(10, now, 1).await.unwrap();
    assert_eq!(a.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        app.store
            .requeue_expired_outbound(switchboard::store::now_ms())
            .await
            .unwrap(),
        1
    );
    let b = app
        .store
        .claim_outbound(10, switchboard::store::now_ms(), 60_000)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!((a[0].attempts, b[0].attempts), (1, 2));
    let failed = switchboard::store::SendOutcome::Failed {
        error: "late".into(),
    };
    app.store
        .finish_outbound_attempt(&msg.id, Some(a[0].attempts), &failed)
        .await
        .unwrap();
    let row = app.store.get_outbound(&msg.id).await.unwrap().unwrap();
    assert_eq!(row.state, "sending", "node A's late outcome is ignored");
    let sent = switchboard::store::SendOutcome::Sent {
        provider_message_id: Some("p-1".into()),
    };
    app.store
        .finish_outbound_attempt(&msg.id, Some(b[0].attempts), &sent)
        .await
        .unwrap();
    let row = app.store.get_outbound(&msg.id).await.unwrap().unwrap();
    assert_eq!(row.state, "sent");
    app.stop().await;
}
on_both_backends!(
    a_late_send_outcome_of_a_reclaimed_reply_is_ignored,
    super::a_late_send_outcome_of_a_reclaimed_reply_is_ignored
);

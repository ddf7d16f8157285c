//! Test harness: the real app on port 0 with a fresh database per test, on SQLite or
//! PostgreSQL. PostgreSQL absent: a developer's run skips by name; CI (`CI=true`) fails.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{Connection, Executor};
use switchboard::app::Application;
use switchboard::config::{self, Settings};
use switchboard::pipeline::Pipeline;
use switchboard::store::Store;
use tokio::sync::oneshot;

pub mod process;
pub mod receiver;

pub const SECRET: &str = "test-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Defines `mod $name { sqlite(), postgres() }` running `$body(Db)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body($crate::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body($crate::common::Db::Postgres).await
            }
        }
    };
}

pub fn pg_admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database URL, or `None` (skip) when PostgreSQL is absent outside CI.
pub async fn fresh_pg_url() -> Option<String> {
    let admin = pg_admin_url();
    let conn =
        tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin)).await;
    let mut conn = match conn {
        Ok(Ok(c)) => c,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".into(),
            };
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL is required in CI but not reachable at {admin}: {why}");
            }
            eprintln!(
                "SKIPPED {}: PostgreSQL not reachable at {admin} ({why}); set SWITCHBOARD_TEST_PG_URL",
                std::thread::current().name().unwrap_or("test")
            );
            return None;
        }
    };
    let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let _ = conn.close().await;
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin);
    Some(format!("{base}/{name}"))
}

pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

pub async fn fresh_db(db: Db) -> Option<TestDb> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match db {
        Db::Sqlite => format!("sqlite://{}/switchboard.db", dir.path().display()),
        Db::Postgres => fresh_pg_url().await?,
    };
    Some(TestDb { url, dir })
}

pub fn settings(url: &str) -> Settings {
    config::from_str(&settings_toml(url), &[]).expect("test settings")
}

/// The test configuration as TOML text (the in-process kit parses it; the process kit in
/// `process.rs` writes it to a file for `switchboard serve`).
pub fn settings_toml(url: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
ingest_timeout_ms = 2000
[database]
url = "{url}"
max_connections = 8
[pipeline]
base_backoff_ms = 20
max_backoff_ms = 100
max_attempts = 3
idle_poll_ms = 50
[outbound]
base_backoff_ms = 50
max_backoff_ms = 200
send_timeout_ms = 700
max_attempts = 3
idle_poll_ms = 50
[identity]
default_region = "GB"
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
occurred_at = "/at"
customer_email = "/email"
customer_phone = "/phone"
customer_name = "/name"
customer_external_id = "/customer_id"
order_id = "/order/id"
order_total = "/order/total"
order_currency = "/order/currency"
order_status = "/order/status"
order_updated_at = "/order/updated_at"
"#
    )
}

pub struct TestApp {
    pub addr: String,
    pub store: Store,
    pub pipeline: Arc<Pipeline>,
    pub token: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: TestDb,
}

/// Spawns the app; `None` when its backend is absent on a developer's machine.
pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, |_| {}).await
}

pub async fn spawn_app_with(db: Db, tweak: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let tdb = fresh_db(db).await?;
    Some(spawn_app_on(tdb, tweak).await)
}

/// Spawns the app on an existing database (e.g. the one a stopped app returned: a restart).
pub async fn spawn_app_on(tdb: TestDb, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut s = settings(&tdb.url);
    tweak(&mut s);
    let app = Application::build(s).await.expect("build app");
    let addr = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let pipeline = app.pipeline();
    let token =
        switchboard::auth::create_token(&store, "test-admin", switchboard::auth::Role::Admin)
            .await
            .expect("token");
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        store,
        pipeline,
        token,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        handle: Some(handle),
        db: tdb,
    }
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl TestApp {
    pub async fn post_webhook(
        &self,
        connector: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhooks/{connector}", self.addr))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("x-switchboard-signature", s);
        }
        req.send().await.expect("request")
    }

    /// Posts a correctly signed JSON event.
    pub async fn send(&self, event: serde_json::Value) -> reqwest::Response {
        let body = serde_json::to_vec(&event).unwrap();
        self.post_webhook("api", &body, Some(&sign(&body))).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.addr))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let r = self
            .client
            .get(format!("{}/metrics", self.addr))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.expect("metrics text")
    }

    /// Runs the pipeline until no job is ready, so tests never sleep.
    pub async fn drain(&self) -> usize {
        self.pipeline.drain().await.expect("pipeline drain")
    }

    /// Stops the app gracefully; returns the database so a test can look at it afterwards.
    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("clean shutdown");
        }
        self.db
    }
}

/// Asserts a problem+json response with the given status and code; returns the body.
pub async fn assert_problem(r: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status().as_u16(), status);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(ct, "application/problem+json");
    let body: serde_json::Value = r.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    body
}

/// Holds the database's write lock until dropped: SQLite by an open `BEGIN EXCLUSIVE`,
/// PostgreSQL by an `ACCESS EXCLUSIVE` lock on `raw_events`. Writers wait, like a database
/// that does not answer.
pub struct WriteBlocker {
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drop for WriteBlocker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.done.recv_timeout(Duration::from_secs(10));
    }
}

/// Runs SQL (several statements allowed) on the test database from outside the app.
pub async fn exec_sql(db: Db, url: &str, sql: &str) {
    match db {
        Db::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
            c.execute(sql).await.expect(sql);
            c.close().await.ok();
        }
        Db::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("pg");
            c.execute(sql).await.expect(sql);
            c.close().await.ok();
        }
    }
}

pub async fn block_writes(db: Db, url: &str) -> WriteBlocker {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let url = url.to_string();
    tokio::spawn(async move {
        match db {
            Db::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
                c.execute("BEGIN EXCLUSIVE").await.expect("lock");
                let _ = ready_tx.send(());
                let _ = stop_rx.await;
                c.execute("ROLLBACK").await.expect("unlock");
                let _ = c.close().await;
            }
            Db::Postgres => {
                let mut c = sqlx::PgConnection::connect(&url).await.expect("pg");
                c.execute("BEGIN").await.expect("begin");
                c.execute("LOCK TABLE raw_events IN ACCESS EXCLUSIVE MODE")
                    .await
                    .expect("lock");
                let _ = ready_tx.send(());
                let _ = stop_rx.await;
                c.execute("ROLLBACK").await.expect("unlock");
                let _ = c.close().await;
            }
        }
        let _ = done_tx.send(());
    });
    ready_rx.await.expect("lock taken");
    WriteBlocker {
        stop: Some(stop_tx),
        done: done_rx,
    }
}

/// Points the test connector's replies at `url`.
pub fn with_reply_url(s: &mut Settings, url: &str) {
    if let Some(t) = s.connectors[0].as_table_mut() {
        t.insert("reply_url".into(), toml::Value::String(url.into()));
        t.insert("send_rate_per_sec".into(), toml::Value::Integer(200));
        t.insert("send_burst".into(), toml::Value::Integer(50));
        let mapping = t
            .entry("mapping")
            .or_insert_with(|| toml::Value::Table(Default::default()));
        if let Some(m) = mapping.as_table_mut() {
            m.insert("status".into(), toml::Value::String("/status".into()));
            m.insert(
                "message_id".into(),
                toml::Value::String("/message_id".into()),
            );
        }
    }
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.addr))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn patch_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .patch(format!("{}{path}", self.addr))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}{path}", self.addr))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }

    /// The id of the first conversation, after sending one inbound message on thread `t`.
    pub async fn conversation(&self, thread: &str, email: &str) -> String {
        let r = self
            .send(serde_json::json!({"id": format!("in-{thread}-{email}"), "thread": thread, "text": "hello", "email": email, "name": "Ada"}))
            .await;
        assert_eq!(r.status(), 200);
        self.drain().await;
        let list = self.get_json("/api/v1/conversations?limit=200").await;
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["thread_key"] == thread)
            .map(|c| c["id"].as_str().unwrap().to_string())
            .expect("conversation")
    }

    /// Polls an outbound message until `done(state)` or 10 s pass; returns the last body.
    pub async fn wait_message(
        &self,
        conversation: &str,
        id: &str,
        done: impl Fn(&str) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let m = self
                .get_json(&format!(
                    "/api/v1/conversations/{conversation}/messages/{id}"
                ))
                .await;
            if done(m["state"].as_str().unwrap_or("")) || std::time::Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

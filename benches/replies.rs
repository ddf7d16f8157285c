//! Reply latency: time from the 202 of `POST /conversations/{id}/replies` to the moment a fake
//! provider on 127.0.0.1 receives the send, with the limiter allowing (SQLite; PostgreSQL too
//! with PG_URL set).
//!
//!     cargo bench --bench replies
//!     PG_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench replies
//!
//! Knobs: REPLIES (default 1000), CONCURRENCY (clients, default 8), RATE (replies per second
//! across all clients, default 100 — far above what a support team sends; RATE=0 sends as
//! fast as the hub accepts, which on SQLite measures the single writer's queue instead).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{Connection, Executor};
use switchboard::app::Application;
use switchboard::config;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn receiver(arrivals: Arrivals) -> String {
    let app = axum::Router::new().route(
        "/replies",
        post(move |body: Bytes| {
            let arrivals = arrivals.clone();
            async move {
                let now = Instant::now();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let id = v["id"].as_str().unwrap_or_default().to_string();
                arrivals.lock().unwrap().insert(id.clone(), now);
                axum::Json(serde_json::json!({ "id": format!("prov-{id}") }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/replies", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(label: &str, db_url: &str) -> anyhow::Result<()> {
    let arrivals: Arrivals = Default::default();
    let reply_url = receiver(arrivals.clone()).await;
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[database]
url = "{db_url}"
[log]
level = "warn"
[[connectors]]
id = "api"
kind = "generic"
secret = "bench-secret"
signature_prefix = "sha256="
event_id = "/id"
reply_url = "{reply_url}"
send_rate_per_sec = 5000
send_burst = 500
[connectors.mapping]
text = "/text"
thread = "/thread"
customer_email = "/email"
"#
    );
    let settings = config::from_str(&text, &[])?;
    let app = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let pipeline = app.pipeline();
    let token =
        switchboard::auth::create_token(&store, "bench", switchboard::auth::Role::Admin).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::new();

    // One conversation per client, through the real webhook path.
    let conc = env_num("CONCURRENCY", 8) as usize;
    for c in 0..conc {
        let body = serde_json::to_vec(
            &serde_json::json!({"id": format!("in-{c}"), "thread": format!("t{c}"), "text": "hi", "email": format!("c{c}@example.com")}),
        )?;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"bench-secret")?;
        mac.update(&body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        client
            .post(format!("{base}/webhooks/api"))
            .header("x-switchboard-signature", sig)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
    }
    pipeline.drain().await?;
    let list: serde_json::Value = client
        .get(format!("{base}/api/v1/conversations?limit=200"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let convs: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();

    let n = env_num("REPLIES", 1000) as usize;
    let rate = env_num("RATE", 100);
    let gap = (rate > 0).then(|| Duration::from_secs_f64(conc as f64 / rate as f64));
    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, conv) in convs.iter().enumerate() {
        let (client, base, token, conv, accepted) = (
            client.clone(),
            base.clone(),
            token.clone(),
            conv.clone(),
            accepted.clone(),
        );
        let per = n / conc + usize::from(c < n % conc);
        tasks.push(tokio::spawn(async move {
            let mut tick = gap.map(tokio::time::interval);
            for i in 0..per {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let r = client
                    .post(format!("{base}/api/v1/conversations/{conv}/replies"))
                    .bearer_auth(&token)
                    .header("idempotency-key", format!("{conv}-{i}"))
                    .json(&serde_json::json!({ "text": format!("reply {i}") }))
                    .send()
                    .await
                    .expect("reply");
                let at = Instant::now();
                assert_eq!(r.status(), 202);
                let m: serde_json::Value = r.json().await.expect("json");
                accepted
                    .lock()
                    .unwrap()
                    .insert(m["id"].as_str().unwrap().to_string(), at);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let (acc, arr) = (
        accepted.lock().unwrap().clone(),
        arrivals.lock().unwrap().clone(),
    );
    let mut lat: Vec<f64> = acc
        .iter()
        .filter_map(|(id, at)| {
            arr.get(id)
                .map(|got| got.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{label}: {} of {n} replies delivered in {:.2}s ({:.0}/s, RATE={rate}) by {conc} clients; 202 → provider p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    // The machine-readable line bench/all.sh reads.
    println!(
        "@bench {}",
        serde_json::json!({
            "bench": "replies", "backend": label, "replies": n, "delivered": lat.len(),
            "rate": rate, "clients": conc, "secs": elapsed.as_secs_f64(),
            "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99),
            "max_ms": lat.last().copied().unwrap_or(0.0),
        })
    );
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}

/// The shipped binary's allocator (src/main.rs), so in-process figures match `switchboard serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        run(
            "sqlite",
            &format!("sqlite://{}/bench.db", dir.path().display()),
        )
        .await?;
        if let Ok(admin) = std::env::var("PG_URL") {
            let name = format!("sb_bench_{}", uuid::Uuid::new_v4().simple());
            let mut c = sqlx::PgConnection::connect(&admin).await?;
            c.execute(format!("CREATE DATABASE {name}").as_str())
                .await?;
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(admin.clone());
            let r = run("postgres", &format!("{base}/{name}")).await;
            c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await?;
            r?;
        }
        Ok(())
    })
}

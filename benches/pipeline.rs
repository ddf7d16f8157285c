//! Pipeline benchmark: normalise → timeline throughput, and ingest-to-visible lag at a steady
//! 1,000 events/s, on SQLite and (with PG_URL set) PostgreSQL.
//!
//!     cargo bench --bench pipeline                      # SQLite
//!     PG_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench pipeline
//!
//! Knobs: EVENTS (throughput run, default 50000), LAG_SECS (default 10), RATE (default 1000).
//! Lag is timeline_entries.created_at − raw_events.received_at, both stamped by the hub, so it
//! covers queueing, claim, normalise, identity and the write (the commit follows within the
//! same transaction).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};
use switchboard::app::build_parts;
use switchboard::config::{self, Settings};
use switchboard::ingest::Ingestor;
use switchboard::metrics::Metrics;
use switchboard::pipeline::Pipeline;
use switchboard::store::{now_ms, NewRawEvent, Store};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn settings(url: &str) -> Settings {
    let text = format!(
        r#"
[database]
url = "{url}"
[[connectors]]
id = "bench"
kind = "generic"
secret = "bench-secret"
event_id = "/id"
event_kind = "/type"
[connectors.mapping]
text = "/message/text"
thread = "/conversation/id"
occurred_at = "/created_at"
customer_email = "/customer/email"
customer_name = "/customer/name"
customer_external_id = "/customer/id"
message_id = "/message/id"
"#
    );
    config::from_str(&text, &[]).expect("bench settings")
}

fn event(run: &str, n: u64) -> NewRawEvent {
    let c = n % 5000;
    let body = serde_json::json!({
        "id": format!("{run}-{n}"), "type": "message.created", "created_at": 1_795_000_000 + n,
        "conversation": {"id": format!("conv-{c}")},
        "message": {"id": format!("m-{n}"), "text": "x".repeat(1200)},
        "customer": {"id": format!("cust-{c}"), "email": format!("user{c}@example.com"), "name": format!("User {c}")},
    });
    NewRawEvent {
        connector_id: "bench".into(),
        provider_event_id: format!("{run}-{n}"),
        kind: "message.created".into(),
        occurred_at: None,
        received_at: now_ms(),
        headers: "[]".into(),
        payload: serde_json::to_vec(&body).unwrap().into(),
    }
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(label: &str, url: &str) -> anyhow::Result<()> {
    let s = settings(url);
    let (registry, claims) = build_parts(&s, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::connect(&s.database).await?;
    store.migrate().await?;
    let metrics = Arc::new(Metrics::new(registry.iter().map(|c| c.id.as_str())));
    let wake = Arc::new(tokio::sync::Notify::new());
    // The real group-commit ingestor (used by the lag run), and on SQLite the pipeline gives
    // it the writer first, as `switchboard serve` does.
    let (ingestor, writers) = Ingestor::start(
        store.clone(),
        1,
        16_384,
        512,
        Duration::from_secs(5),
        wake.clone(),
        metrics.clone(),
    );
    let mut pipeline = Pipeline::new(
        store.clone(),
        registry,
        claims,
        s.pipeline.clone(),
        metrics,
        wake.clone(),
    );
    if store.backend() == switchboard::store::Backend::Sqlite {
        pipeline = pipeline.yield_to_ingest(ingestor.pressure());
    }
    let pipeline = Arc::new(pipeline);

    // 1. Throughput: preload, then drain.
    let n = env_num("EVENTS", 50_000);
    let t = Instant::now();
    for chunk_start in (0..n).step_by(500) {
        let batch: Vec<NewRawEvent> = (chunk_start..(chunk_start + 500).min(n))
            .map(|i| event("tp", i))
            .collect();
        store.insert_raw_events(&batch).await?;
    }
    let load = t.elapsed();
    let t = Instant::now();
    let done = pipeline.drain().await?;
    let el = t.elapsed();
    let entries = store.count("timeline_entries").await?;
    println!(
        "{label}: preload {n} raw events in {:.2}s ({:.0}/s, 500 per commit); normalise→timeline {done} jobs in {:.2}s = {:.0} events/s ({entries} entries)",
        load.as_secs_f64(),
        n as f64 / load.as_secs_f64(),
        el.as_secs_f64(),
        done as f64 / el.as_secs_f64()
    );

    // 2. Lag at a steady rate through the real group-commit ingestor and a running worker.
    let rate = env_num("RATE", 1000);
    let secs = env_num("LAG_SECS", 10);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(pipeline.clone().run(stop_rx));
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut interval = tokio::time::interval(tick);
    let mut inflight = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        interval.tick().await;
        for _ in 0..per_tick {
            let ing = ingestor.clone();
            let ev = event("lag", sent);
            sent += 1;
            inflight.push(tokio::spawn(async move { ing.submit(vec![ev]).await }));
        }
    }
    for h in inflight {
        h.await??;
    }
    pipeline.drain().await?;
    let _ = stop_tx.send(true);
    wake.notify_one();
    worker.await?;
    drop(ingestor);
    writers.join().await;
    let lags = lag_sample(url).await?;
    // The machine-readable line bench/all.sh reads.
    println!(
        "@bench {}",
        serde_json::json!({
            "bench": "pipeline", "backend": label, "events": n,
            "preload_per_s": n as f64 / load.as_secs_f64(),
            "normalise_per_s": done as f64 / el.as_secs_f64(),
            "rate": rate, "lag_secs": secs, "lag_events": lags.len(),
            "lag_p50_ms": pct(&lags, 0.50), "lag_p99_ms": pct(&lags, 0.99),
            "lag_max_ms": lags.last().copied().unwrap_or(0),
        })
    );
    println!(
        "{label}: {sent} events at {rate}/s for {secs}s; ingest→timeline lag p50 {} ms, p99 {} ms, max {} ms",
        pct(&lags, 0.50),
        pct(&lags, 0.99),
        lags.last().copied().unwrap_or(0)
    );
    store.close().await;
    Ok(())
}

async fn lag_sample(url: &str) -> anyhow::Result<Vec<i64>> {
    const Q: &str = "SELECT t.created_at - r.received_at FROM timeline_entries t JOIN raw_events r ON r.id = t.raw_event_id WHERE r.provider_event_id LIKE 'lag-%'";
    let mut v: Vec<i64> = if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query_scalar(Q).fetch_all(&mut c).await?
    } else {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query_scalar(Q).fetch_all(&mut c).await?
    };
    v.sort_unstable();
    Ok(v)
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

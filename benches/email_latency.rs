//! Steady-state email delivery latency: a message appended to the mailbox of a real Dovecot
//! (IDLE on) → on the hub's timeline, through the hub's own poller runner and pipeline.
//!
//! `cargo bench --bench email_latency` (SQLite); `BENCH_PG=1` for PostgreSQL as well.
//! `BENCH_MESSAGES` (default 100) messages, one every 250–500 ms. Needs `dovecot` installed.

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros, unused_imports)]
mod common;
#[path = "../connectors/email/tests/support/mod.rs"]
mod email_support;

use std::time::{Duration, Instant};

use common::{spawn_app_with, Db};
use email_support::{Dovecot, PASSWORD, USER};
use rand::Rng;

async fn run(db: Db, n: usize) -> Option<Vec<Duration>> {
    let dv = Dovecot::start("email_latency")?;
    let cfg = format!(
        "id = \"mail\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nimap_port = {}\nimap_tls = \"none\"\n\
         username = \"{USER}\"\npassword = \"{PASSWORD}\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 9\n\
         smtp_tls = \"none\"\nsmtp_auth = false",
        dv.port
    );
    let app = spawn_app_with(db, move |s| {
        s.connectors.push(toml::from_str(&cfg).expect("toml"));
        // The shipped defaults, not the tests' fast ones.
        s.pipeline.idle_poll_ms = 250;
        s.poller = Default::default();
    })
    .await?;
    // Let the first (empty) sync and the first IDLE start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let before = app.store.count("timeline_entries").await.expect("count");
        let mail = format!(
            "From: Customer {i} <c{i}@example.com>\r\nTo: {USER}\r\nSubject: Question {i}\r\n\
             Message-ID: <lat-{i}@example.com>\r\n\r\nHello {i}\r\n"
        );
        let t0 = Instant::now();
        dv.deliver(mail.as_bytes());
        loop {
            if app.store.count("timeline_entries").await.expect("count") > before {
                lat.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                panic!("message {i} did not arrive within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let pause = rand::thread_rng().gen_range(250..500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    app.stop().await;
    Some(lat)
}

fn report(label: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "{label}: {} messages appended → on the timeline: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        lat.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    );
    // The machine-readable line bench/all.sh reads.
    println!(
        "@bench {}",
        serde_json::json!({
            "bench": "email", "backend": label, "messages": lat.len(),
            "p50_ms": pct(0.50).as_secs_f64() * 1000.0,
            "p99_ms": pct(0.99).as_secs_f64() * 1000.0,
            "max_ms": lat.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
        })
    );
}

/// The shipped binary's allocator (src/main.rs), so in-process figures match `switchboard serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    match run(Db::Sqlite, n).await {
        Some(l) => report("sqlite", l),
        None => println!("skipped: dovecot is not installed"),
    }
    if std::env::var("BENCH_PG").is_ok() {
        if let Some(l) = run(Db::Postgres, n).await {
            report("postgres", l);
        }
    }
}

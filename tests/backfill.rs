//! `switchboard backfill`: walks a poller's history from a backfill cursor, stores each page
//! with its own cursor, resumes after an interruption without importing anything twice, waits
//! out rate limits, and never moves the live poller's cursor.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::{fresh_db, Db};
use switchboard::backfill::{self, BackfillReport};
use switchboard::config::DatabaseSettings;
use switchboard::registry::ConnectorInstance;
use switchboard::store::Store;
use switchboard_core::{
    Connector, ConnectorError, NormalizeError, NormalizedEvent, Normalizer, PollPage, Poller,
    RawEvent, StoredEvent,
};

/// A provider with `total` historical events served `page` at a time; the cursor is the
/// index of the next event. It answers with `fail_at` (once) when asked for that index.
struct History {
    total: usize,
    page: usize,
    fail_at: Mutex<Option<(usize, ConnectorError)>>,
    calls: AtomicUsize,
}

#[async_trait]
impl Poller for History {
    async fn poll(&self, cursor: Option<String>) -> Result<PollPage, ConnectorError> {
        self.calls.fetch_add(1, SeqCst);
        let from: usize = cursor
            .as_deref()
            .and_then(|c| c.strip_prefix("at:"))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ConnectorError::Permanent("bad cursor".into()))?;
        {
            let mut f = self.fail_at.lock().unwrap();
            if f.as_ref().is_some_and(|(at, _)| *at == from) {
                return Err(f.take().unwrap().1);
            }
        }
        let to = (from + self.page).min(self.total);
        let events = (from..to)
            .map(|i| RawEvent {
                provider_event_id: format!("order:{i}"),
                kind: "order".into(),
                occurred_at: None,
                payload: Bytes::from(format!("{{\"n\":{i}}}")),
                headers: vec![],
            })
            .collect();
        Ok(PollPage {
            events,
            next_cursor: Some(format!("at:{to}")),
            more: to < self.total,
        })
    }
    fn interval(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn backfill_cursor(&self, since_ms: i64) -> Option<String> {
        // History "since" a time: here the index is the time in seconds.
        Some(format!("at:{}", since_ms / 1000))
    }
}

struct Shop {
    history: History,
}

impl Normalizer for Shop {
    fn normalize(&self, _raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        Ok(vec![])
    }
}

impl Connector for Shop {
    fn kind(&self) -> &'static str {
        "test-shop"
    }
    fn normalizer(&self) -> &dyn Normalizer {
        self
    }
    fn poller(&self) -> Option<&dyn Poller> {
        Some(&self.history)
    }
}

fn shop(total: usize, page: usize, fail_at: Option<(usize, ConnectorError)>) -> ConnectorInstance {
    ConnectorInstance {
        id: "shop".into(),
        kind: "test-shop",
        connector: Box::new(Shop {
            history: History {
                total,
                page,
                fail_at: Mutex::new(fail_at),
                calls: AtomicUsize::new(0),
            },
        }),
        send_rate_per_sec: 10.0,
        send_burst: 10,
        poll_rate_per_sec: 1000.0,
    }
}

async fn store(db: Db) -> Option<(Store, common::TestDb)> {
    let tdb = fresh_db(db).await?;
    let store = Store::connect(&DatabaseSettings {
        url: tdb.url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    store.migrate().await.unwrap();
    Some((store, tdb))
}

async fn an_interrupted_backfill_resumes_and_imports_each_event_exactly_once(db: Db) {
    let Some((store, _db)) = store(db).await else {
        return;
    };
    // The provider refuses at event 250 (page 6 of 50): the backfill stops, resumable.
    let inst = shop(
        1000,
        50,
        Some((250, ConnectorError::Permanent("maintenance".into()))),
    );
    let mut seen: Vec<BackfillReport> = Vec::new();
    let err = backfill::run(&store, &inst, 0, false, None, |r| seen.push(r.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run it again to resume"), "{err}");
    assert_eq!(seen.len(), 5, "progress after every page");
    assert_eq!(store.count("raw_events").await.unwrap(), 250);
    assert!(store
        .poll_cursor(&backfill::cursor_key("shop"))
        .await
        .unwrap()
        .is_some());

    // Run again: it resumes at 250, not at `since`.
    let r = backfill::run(&store, &inst, 0, false, None, |_| {})
        .await
        .unwrap();
    assert!(r.resumed);
    assert!(r.done);
    assert_eq!(r.accepted, 750);
    assert_eq!(r.duplicate, 0, "nothing is fetched twice");
    assert_eq!(store.count("raw_events").await.unwrap(), 1000);
    assert_eq!(store.count("jobs").await.unwrap(), 1000);
    // Finished: its cursor is gone and the live poller's was never written.
    assert!(store
        .poll_cursor(&backfill::cursor_key("shop"))
        .await
        .unwrap()
        .is_none());
    assert!(store.poll_cursor("shop").await.unwrap().is_none());

    // A second full backfill finds everything already there.
    let r = backfill::run(&store, &inst, 0, false, None, |_| {})
        .await
        .unwrap();
    assert!(!r.resumed);
    assert_eq!((r.accepted, r.duplicate), (0, 1000));
    assert_eq!(store.count("raw_events").await.unwrap(), 1000);
}
on_both_backends!(
    an_interrupted_backfill_resumes_and_imports_each_event_exactly_once,
    super::an_interrupted_backfill_resumes_and_imports_each_event_exactly_once
);

async fn a_rate_limited_backfill_waits_and_continues(db: Db) {
    let Some((store, _db)) = store(db).await else {
        return;
    };
    let inst = shop(
        120,
        50,
        Some((
            50,
            ConnectorError::RateLimited {
                retry_after: Some(Duration::from_millis(200)),
            },
        )),
    );
    let started = std::time::Instant::now();
    let r = backfill::run(&store, &inst, 0, false, None, |_| {})
        .await
        .unwrap();
    assert!(r.done);
    assert_eq!(r.accepted, 120);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waited as long as Retry-After said"
    );
}
on_both_backends!(
    a_rate_limited_backfill_waits_and_continues,
    super::a_rate_limited_backfill_waits_and_continues
);

async fn backfill_starts_at_since_and_restart_discards_an_interrupted_one(db: Db) {
    let Some((store, _db)) = store(db).await else {
        return;
    };
    // Stop after two pages on purpose, then restart from a later `since`.
    let inst = shop(300, 50, None);
    let r = backfill::run(&store, &inst, 100_000, false, Some(2), |_| {})
        .await
        .unwrap();
    assert!(!r.done);
    assert_eq!(r.accepted, 100, "events 100..200");
    let r = backfill::run(&store, &inst, 250_000, true, None, |_| {})
        .await
        .unwrap();
    assert!(!r.resumed, "--restart starts at --since");
    assert_eq!(r.accepted, 50, "events 250..300");
    assert_eq!(store.count("raw_events").await.unwrap(), 150);
}
on_both_backends!(
    backfill_starts_at_since_and_restart_discards_an_interrupted_one,
    super::backfill_starts_at_since_and_restart_discards_an_interrupted_one
);

#[tokio::test]
async fn a_connector_that_does_not_poll_cannot_backfill() {
    let Some((store, _db)) = store(Db::Sqlite).await else {
        return;
    };
    struct Mute;
    impl Normalizer for Mute {
        fn normalize(&self, _: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
            Ok(vec![])
        }
    }
    impl Connector for Mute {
        fn kind(&self) -> &'static str {
            "mute"
        }
        fn normalizer(&self) -> &dyn Normalizer {
            self
        }
    }
    let inst = ConnectorInstance {
        id: "mute".into(),
        kind: "mute",
        connector: Box::new(Mute),
        send_rate_per_sec: 1.0,
        send_burst: 1,
        poll_rate_per_sec: 1.0,
    };
    let err = backfill::run(&store, &inst, 0, false, None, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not poll"), "{err}");
}

//! The pipeline worker loop itself (the other tests drive batches directly).

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use common::{fresh_db, settings, Db};
use switchboard::app::build_parts;
use switchboard::metrics::Metrics;
use switchboard::pipeline::Pipeline;
use switchboard::store::{now_ms, NewRawEvent, Store};

async fn pipeline_keeps_draining_while_ingest_pressure_never_drops(db: Db) {
    let Some(tdb) = fresh_db(db).await else {
        return;
    };
    let s = settings(&tdb.url);
    let (registry, claims) = build_parts(&s, &|_| None).unwrap();
    let store = Store::connect(&s.database).await.unwrap();
    store.migrate().await.unwrap();
    let events: Vec<NewRawEvent> = (0..350)
        .map(|i| NewRawEvent {
            connector_id: "api".into(),
            provider_event_id: format!("p{i}"),
            kind: "k".into(),
            occurred_at: None,
            received_at: now_ms(),
            headers: "[]".into(),
            payload: serde_json::to_vec(
                &serde_json::json!({"id": format!("p{i}"), "text": "t", "thread": "x"}),
            )
            .unwrap()
            .into(),
        })
        .collect();
    store.insert_raw_events(&events).await.unwrap();
    // Webhooks "always waiting": the worker yields, but must still make progress.
    let pressure = switchboard::ingest::IngestPressure {
        pending: Arc::new(AtomicUsize::new(5)),
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::new(["api"]));
    let pipeline = Arc::new(
        Pipeline::new(
            store.clone(),
            registry,
            claims,
            s.pipeline.clone(),
            metrics,
            Default::default(),
        )
        .yield_to_ingest(pressure),
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(pipeline.clone().run(rx));
    let mut entries = 0;
    for _ in 0..200 {
        entries = store.count("timeline_entries").await.unwrap();
        if entries == 350 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    worker.await.unwrap();
    assert_eq!(entries, 350, "every job processed under constant pressure");
    store.close().await;
}
on_both_backends!(
    pipeline_keeps_draining_while_ingest_pressure_never_drops,
    super::pipeline_keeps_draining_while_ingest_pressure_never_drops
);

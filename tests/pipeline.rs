//! The pipeline worker loop itself (the other tests drive batches directly).

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use common::{fresh_db, settings, Db};
use switchboard::app::build_parts;
use switchboard::metrics::Metrics;
use switchboard::pipeline::Pipeline;
use switchboard::store::{now_ms, InsertOutcome, NewRawEvent, Store};

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
    // Webhooks "always waiting", as many as in a flood: the worker yields, but must still
    // make progress.
    let mut s = s;
    s.pipeline.flood_pause_ms = 50;
    let pressure = switchboard::ingest::IngestPressure {
        pending: Arc::new(AtomicUsize::new(s.pipeline.flood_waiting)),
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

/// The normalise job comes from a database trigger in the INSERT that stores the event, one
/// per stored event, none for a duplicate, and ready at once even when the caller stamped
/// the event with a later `received_at`.
async fn each_stored_event_gets_one_ready_job_and_a_duplicate_none(db: Db) {
    let Some(tdb) = fresh_db(db).await else {
        return;
    };
    let s = settings(&tdb.url);
    let (registry, claims) = build_parts(&s, &|_| None).unwrap();
    let store = Store::connect(&s.database).await.unwrap();
    store.migrate().await.unwrap();
    let event = |id: &str, received_at: i64| NewRawEvent {
        connector_id: "api".into(),
        provider_event_id: id.into(),
        kind: "k".into(),
        occurred_at: None,
        received_at,
        headers: "[]".into(),
        payload: serde_json::to_vec(&serde_json::json!({"id": id, "text": "t", "thread": "x"}))
            .unwrap()
            .into(),
    };
    let day_later = now_ms() + 86_400_000;
    let out = store
        .insert_raw_events(&[
            event("f1", day_later),
            event("f2", now_ms()),
            event("f1", 0),
        ])
        .await
        .unwrap();
    let accepted = out
        .iter()
        .filter(|o| matches!(o, InsertOutcome::Accepted(_)))
        .count();
    assert_eq!(accepted, 2, "{out:?}");
    // Stored again: nothing new, no second job.
    store
        .insert_raw_events(&[event("f2", now_ms())])
        .await
        .unwrap();
    assert_eq!(store.count("raw_events").await.unwrap(), 2);
    assert_eq!(store.count("jobs").await.unwrap(), 2);
    let pipeline = Pipeline::new(
        store.clone(),
        registry,
        claims,
        s.pipeline.clone(),
        Arc::new(Metrics::new(["api"])),
        Default::default(),
    );
    assert_eq!(
        pipeline.drain().await.unwrap(),
        2,
        "both jobs ready at once"
    );
    assert_eq!(store.count("timeline_entries").await.unwrap(), 2);
    store.close().await;
}
on_both_backends!(
    each_stored_event_gets_one_ready_job,
    super::each_stored_event_gets_one_ready_job_and_a_duplicate_none
);

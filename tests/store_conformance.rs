//! The store's contract, run against SQLite and PostgreSQL alike.

mod common;

use common::{fresh_db, Db};
use switchboard::config::DatabaseSettings;
use switchboard::store::{now_ms, InsertOutcome, NewRawEvent, Store};

async fn store(db: Db) -> Option<(Store, common::TestDb)> {
    let tdb = fresh_db(db).await?;
    let s = Store::connect(&DatabaseSettings {
        url: tdb.url.clone(),
        ..Default::default()
    })
    .await
    .expect("connect");
    s.migrate().await.expect("migrate");
    Some((s, tdb))
}

fn raw(connector: &str, id: &str) -> NewRawEvent {
    NewRawEvent {
        connector_id: connector.into(),
        provider_event_id: id.into(),
        kind: "k".into(),
        occurred_at: Some(5),
        received_at: now_ms(),
        headers: r#"[["x-h","v"]]"#.into(),
        payload: bytes::Bytes::from(vec![0u8, 159, 146, 150, b'{']),
    }
}

async fn migrations_apply_once_and_are_idempotent(db: Db) {
    let Some((s, _t)) = store(db).await else {
        return;
    };
    assert!(
        s.migrate().await.unwrap().is_empty(),
        "second run applies nothing"
    );
    s.close().await;
}
on_both_backends!(
    migrations_apply_once_and_are_idempotent,
    super::migrations_apply_once_and_are_idempotent
);

async fn raw_events_dedupe_per_connector_within_and_across_batches(db: Db) {
    let Some((s, _t)) = store(db).await else {
        return;
    };
    let out = s
        .insert_raw_events(&[raw("a", "1"), raw("a", "1"), raw("b", "1"), raw("a", "2")])
        .await
        .unwrap();
    assert!(matches!(out[0], InsertOutcome::Accepted(_)), "{out:?}");
    assert_eq!(out[1], InsertOutcome::Duplicate);
    assert!(
        matches!(out[2], InsertOutcome::Accepted(_)),
        "same id, other connector"
    );
    assert!(matches!(out[3], InsertOutcome::Accepted(_)));
    let again = s
        .insert_raw_events(&[raw("a", "2"), raw("a", "3")])
        .await
        .unwrap();
    assert_eq!(again[0], InsertOutcome::Duplicate);
    assert!(matches!(again[1], InsertOutcome::Accepted(_)));
    assert_eq!(s.count("raw_events").await.unwrap(), 4);
    assert_eq!(
        s.count("jobs").await.unwrap(),
        4,
        "one job per accepted event"
    );
    s.close().await;
}
on_both_backends!(
    raw_events_dedupe_per_connector_within_and_across_batches,
    super::raw_events_dedupe_per_connector_within_and_across_batches
);

async fn payload_bytes_and_headers_round_trip_exactly(db: Db) {
    let Some((s, _t)) = store(db).await else {
        return;
    };
    let InsertOutcome::Accepted(id) = s.insert_raw_events(&[raw("a", "x")]).await.unwrap()[0]
    else {
        panic!()
    };
    let got = s.load_raw_events(&[id]).await.unwrap();
    assert_eq!(
        &got[0].payload[..],
        &[0u8, 159, 146, 150, b'{'],
        "not valid UTF-8, kept byte for byte"
    );
    assert_eq!(got[0].headers, vec![("x-h".to_string(), "v".to_string())]);
    assert_eq!(got[0].occurred_at, Some(5));
    s.close().await;
}
on_both_backends!(
    payload_bytes_and_headers_round_trip_exactly,
    super::payload_bytes_and_headers_round_trip_exactly
);

async fn claimed_jobs_are_not_claimed_again_until_their_lease_expires(db: Db) {
    let Some((s, _t)) = store(db).await else {
        return;
    };
    s.insert_raw_events(&[raw("a", "1"), raw("a", "2"), raw("a", "3")])
        .await
        .unwrap();
    let now = now_ms();
    let first = s.claim_jobs(2, now, 60_000).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|j| j.attempts == 1));
    let second = s.claim_jobs(10, now, 60_000).await.unwrap();
    assert_eq!(second.len(), 1, "only the unclaimed one");
    assert!(s.claim_jobs(10, now, 60_000).await.unwrap().is_empty());
    assert_eq!(
        s.requeue_expired(now + 30_000).await.unwrap(),
        0,
        "leases still valid"
    );
    assert_eq!(s.requeue_expired(now + 61_000).await.unwrap(), 3);
    let again = s.claim_jobs(10, now + 61_000, 60_000).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(
        again.iter().all(|j| j.attempts == 2),
        "attempts count every claim"
    );
    s.close().await;
}
on_both_backends!(
    claimed_jobs_are_not_claimed_again_until_their_lease_expires,
    super::claimed_jobs_are_not_claimed_again_until_their_lease_expires
);

async fn a_claim_whose_answer_was_lost_is_given_back_by_its_lease_end(db: Db) {
    let Some((s, _t)) = store(db).await else {
        return;
    };
    s.insert_raw_events(&[raw("a", "1"), raw("a", "2"), raw("a", "3")])
        .await
        .unwrap();
    let now = now_ms();
    // Two claims with different lease ends (tokens); the first one's answer is "lost".
    let lost = s.claim_jobs(2, now, 60_000).await.unwrap();
    let kept = s.claim_jobs(1, now, 60_001).await.unwrap();
    assert_eq!((lost.len(), kept.len()), (2, 1));
    assert_eq!(s.release_claim(now + 60_000).await.unwrap(), 2);
    let q = s.queue_stats().await.unwrap();
    assert_eq!(
        (q.queued, q.running),
        (2, 1),
        "the other claim is left alone"
    );
    let again = s.claim_jobs(10, now, 60_000).await.unwrap();
    let mut ids: Vec<i64> = again.iter().map(|j| j.id).collect();
    ids.sort();
    let mut lost_ids: Vec<i64> = lost.iter().map(|j| j.id).collect();
    lost_ids.sort();
    assert_eq!(ids, lost_ids, "the released jobs are claimable at once");
    assert!(
        again.iter().all(|j| j.attempts == 1),
        "the lost claim's attempt is returned"
    );
    s.close().await;
}
on_both_backends!(
    a_claim_whose_answer_was_lost_is_given_back_by_its_lease_end,
    super::a_claim_whose_answer_was_lost_is_given_back_by_its_lease_end
);

async fn failed_jobs_wait_for_their_retry_time_or_park_dead(db: Db) {
    let Some((s, _t)) = store(db).await else {
        return;
    };
    s.insert_raw_events(&[raw("a", "1"), raw("a", "2")])
        .await
        .unwrap();
    let now = now_ms();
    let jobs = s.claim_jobs(10, now, 60_000).await.unwrap();
    s.fail_job(jobs[0].id, "flaky", Some(now + 5_000))
        .await
        .unwrap();
    s.fail_job(jobs[1].id, "hopeless", None).await.unwrap();
    assert!(
        s.claim_jobs(10, now, 60_000).await.unwrap().is_empty(),
        "not before its retry time"
    );
    let later = s.claim_jobs(10, now + 5_000, 60_000).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].id, jobs[0].id);
    let dead = s.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("hopeless"));
    let q = s.queue_stats().await.unwrap();
    assert_eq!((q.queued, q.running, q.dead), (0, 1, 1));
    s.close().await;
}
on_both_backends!(
    failed_jobs_wait_for_their_retry_time_or_park_dead,
    super::failed_jobs_wait_for_their_retry_time_or_park_dead
);

async fn tokens_are_found_by_hash_only(db: Db) {
    let Some((s, _t)) = store(db).await else {
        return;
    };
    let token = switchboard::auth::create_token(&s, "ops", switchboard::auth::Role::Agent)
        .await
        .unwrap();
    assert!(token.starts_with("sb_") && token.len() >= 46, "{token}");
    let rec = s
        .find_token(&switchboard::auth::hash_token(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rec.name.as_str(), rec.role.as_str()), ("ops", "agent"));
    assert!(
        s.find_token(&token).await.unwrap().is_none(),
        "the clear token is not stored"
    );
    s.close().await;
}
on_both_backends!(
    tokens_are_found_by_hash_only,
    super::tokens_are_found_by_hash_only
);

async fn replay_enqueues_only_the_connectors_events_since_a_time(db: Db) {
    let Some((s, _t)) = store(db).await else {
        return;
    };
    let mut old = raw("a", "old");
    old.received_at = 1_000;
    s.insert_raw_events(&[old, raw("a", "new"), raw("b", "other")])
        .await
        .unwrap();
    assert_eq!(s.enqueue_replay("a", 2_000).await.unwrap(), 1);
    assert_eq!(s.enqueue_replay("a", 0).await.unwrap(), 2);
    assert_eq!(s.enqueue_replay("zzz", 0).await.unwrap(), 0);
    s.close().await;
}
on_both_backends!(
    replay_enqueues_only_the_connectors_events_since_a_time,
    super::replay_enqueues_only_the_connectors_events_since_a_time
);

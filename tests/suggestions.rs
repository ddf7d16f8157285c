//! Merge suggestions end to end on both databases: weak evidence is scored by the background
//! suggester into suggestions with reasons and never merges; accept merges (audited, with
//! `customer.merged`), reject and unmerge are remembered; the threshold comes from config.

mod common;

use common::{assert_problem, exec_sql, spawn_app_with, Db, TestApp};
use serde_json::{json, Value};
use switchboard::config::Settings;
use switchboard::suggest::Suggester;

/// The test connector also maps a profile's address and birth date; the background loop is
/// off so each test runs the suggester itself, deterministically.
fn tweak(threshold: f64) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.identity.suggestions.enabled = false;
        s.identity.suggestions.threshold = threshold;
        let m = s.connectors[0]
            .as_table_mut()
            .unwrap()
            .get_mut("mapping")
            .unwrap()
            .as_table_mut()
            .unwrap();
        for (k, v) in [
            ("customer_address_line1", "/addr/line1"),
            ("customer_city", "/addr/city"),
            ("customer_postal_code", "/addr/postcode"),
            ("customer_region", "/addr/state"),
            ("customer_birth_date", "/dob"),
        ] {
            m.insert(k.into(), toml::Value::String(v.into()));
        }
    }
}

fn suggester(app: &TestApp, threshold: f64) -> Suggester {
    let cfg = switchboard::config::SuggestSettings {
        threshold,
        ..Default::default()
    };
    Suggester::new(app.store.clone(), cfg)
}

/// A customer record from a shop: its own external id and email (strong, different per
/// record) with a name, an address and a birth date (weak).
fn record(id: &str, name: &str, line1: &str, dob: &str) -> Value {
    json!({
        "id": format!("ev-{id}-{line1}"), "thread": format!("t-{id}"), "text": "hello",
        "customer_id": id, "email": format!("{id}@example.com"), "name": name,
        "addr": {"line1": line1, "city": "Toowoomba", "postcode": "4350", "state": "qld"},
        "dob": dob,
    })
}

async fn send(app: &TestApp, ev: Value) {
    let r = app.send(ev).await;
    assert_eq!(r.status(), 200);
}

async fn customer_ids(app: &TestApp) -> Vec<String> {
    let mut ids: Vec<String> = app.get_json("/api/v1/customers?limit=200").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn open_suggestions(app: &TestApp) -> Vec<Value> {
    app.get_json("/api/v1/merge-suggestions").await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Two records of one person (a typo in the surname and the street) and one stranger.
async fn two_similar_and_one_stranger(app: &TestApp, s: &Suggester) {
    send(
        app,
        record("c1", "Ada Lovelace", "12 Kitchener Street", "1975-03-02"),
    )
    .await;
    send(
        app,
        record("c2", "Ada Lovelase", "12 Kitchner Street", "1975-03-02"),
    )
    .await;
    send(
        app,
        record("c3", "Grace Hopper", "7 Ruthven Street", "1906-12-09"),
    )
    .await;
    app.drain().await;
    let st = s.drain(50).await.unwrap();
    assert!(st.changed >= 3, "{st:?}");
}

async fn weak_evidence_never_merges_but_becomes_a_suggestion_with_reasons(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(12.0)).await else {
        return;
    };
    let s = suggester(&app, 12.0);
    two_similar_and_one_stranger(&app, &s).await;
    assert_eq!(customer_ids(&app).await.len(), 3, "nothing merged");
    let items = open_suggestions(&app).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let sg = &items[0];
    assert_eq!(sg["status"], "open");
    assert!(sg["score"].as_f64().unwrap() >= 12.0);
    assert_ne!(sg["customer_id"], sg["other_customer_id"]);
    let reasons = sg["reasons"].as_array().unwrap();
    let level = |f: &str| {
        reasons
            .iter()
            .find(|r| r["field"] == f)
            .map(|r| r["level"].as_str().unwrap().to_string())
    };
    assert_eq!(level("birth_date").as_deref(), Some("exact"));
    assert_eq!(level("given_name").as_deref(), Some("exact"));
    assert_eq!(level("surname").as_deref(), Some("close"));
    assert_eq!(level("postcode").as_deref(), Some("exact"));
    // Filters: by customer (either side), by min score.
    let c = sg["customer_id"].as_str().unwrap();
    let by_c = app
        .get_json(&format!("/api/v1/merge-suggestions?customer={c}"))
        .await;
    assert_eq!(by_c["items"].as_array().unwrap().len(), 1);
    let high = app.get_json("/api/v1/merge-suggestions?min_score=99").await;
    assert!(high["items"].as_array().unwrap().is_empty());
    // Seeing the same evidence again changes nothing.
    send(
        &app,
        record("c2", "Ada Lovelase", "12 Kitchner Street", "1975-03-02"),
    )
    .await;
    app.drain().await;
    s.drain(50).await.unwrap();
    assert_eq!(open_suggestions(&app).await.len(), 1);
    app.stop().await;
}
on_both_backends!(
    weak_evidence_suggests,
    super::weak_evidence_never_merges_but_becomes_a_suggestion_with_reasons
);

/// Customers from before the suggester had its queue (migration 11) are queued once by
/// migration 15 and then scored like any other; without it they were never looked at.
async fn customers_from_before_the_suggester_are_scored_after_the_upgrade(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(12.0)).await else {
        return;
    };
    let s = suggester(&app, 12.0);
    two_similar_and_one_stranger(&app, &s).await;
    // As if these customers predated the suggester: nothing queued, scored or suggested,
    // and migration 15 not yet applied.
    exec_sql(
        db,
        &app.db.url,
        "DELETE FROM suggest_dirty; DELETE FROM suggest_features; DELETE FROM suggest_blocks; \
         DELETE FROM merge_suggestions; DELETE FROM schema_migrations WHERE version = 15;",
    )
    .await;
    assert_eq!(s.drain(50).await.unwrap().customers, 0);
    assert!(open_suggestions(&app).await.is_empty());

    assert_eq!(app.store.migrate().await.unwrap(), [15]);
    let st = s.drain(50).await.unwrap();
    assert_eq!(st.customers, 3, "each customer scored once: {st:?}");
    let items = open_suggestions(&app).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(customer_ids(&app).await.len(), 3, "nothing merged");
    // Scored once: a second pass finds nothing left to do.
    assert_eq!(s.drain(50).await.unwrap().customers, 0);
    app.stop().await;
}
on_both_backends!(
    customers_from_before_the_suggester_are_scored_after_the_upgrade,
    super::customers_from_before_the_suggester_are_scored_after_the_upgrade
);

async fn accepting_a_suggestion_merges_with_the_suggestion_as_evidence(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(12.0)).await else {
        return;
    };
    let s = suggester(&app, 12.0);
    two_similar_and_one_stranger(&app, &s).await;
    let sg = open_suggestions(&app).await[0].clone();
    let id = sg["id"].as_str().unwrap();
    let r = app
        .post_json(&format!("/api/v1/merge-suggestions/{id}/accept"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["suggestion"]["status"], "accepted");
    assert!(body["suggestion"]["decided_by"]
        .as_str()
        .unwrap()
        .starts_with("token:"));
    let merge = &body["merge"];
    assert!(merge["actor"].as_str().unwrap().starts_with("token:"));
    assert_eq!(merge["reason"], "accepted merge suggestion");
    assert_eq!(merge["evidence"]["suggestion_id"], id);
    assert!(merge["evidence"]["reasons"].as_array().unwrap().len() >= 4);
    assert_eq!(body["suggestion"]["merge_id"], merge["id"]);
    assert_eq!(
        customer_ids(&app).await.len(),
        2,
        "the pair is one customer"
    );
    let events = app.store.events_after(0, 500).await.unwrap();
    let merged = events
        .iter()
        .find(|e| e.kind == "customer.merged")
        .expect("customer.merged");
    assert_eq!(merged.payload["merge_id"], merge["id"]);
    // Decided: 409; unknown: 404; no open suggestion is left.
    let again = app
        .post_json(&format!("/api/v1/merge-suggestions/{id}/accept"), json!({}))
        .await;
    assert_problem(again, 409, "already_decided").await;
    let gone = app
        .post_json("/api/v1/merge-suggestions/nope/accept", json!({}))
        .await;
    assert_eq!(gone.status(), 404);
    let gone = app
        .post_json("/api/v1/merge-suggestions/nope/reject", json!({}))
        .await;
    assert_eq!(gone.status(), 404);
    assert!(open_suggestions(&app).await.is_empty());
    let accepted = app
        .get_json("/api/v1/merge-suggestions?status=accepted")
        .await;
    assert_eq!(accepted["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}
on_both_backends!(
    accept_merges,
    super::accepting_a_suggestion_merges_with_the_suggestion_as_evidence
);

async fn a_rejected_pair_is_never_suggested_again(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(12.0)).await else {
        return;
    };
    let s = suggester(&app, 12.0);
    two_similar_and_one_stranger(&app, &s).await;
    let sg = open_suggestions(&app).await[0].clone();
    let id = sg["id"].as_str().unwrap();
    let r = app
        .post_json(&format!("/api/v1/merge-suggestions/{id}/reject"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "rejected");
    let again = app
        .post_json(&format!("/api/v1/merge-suggestions/{id}/reject"), json!({}))
        .await;
    assert_problem(again, 409, "already_decided").await;
    // Both customers change (new street spelling, so they are scored again), with the same
    // evidence between them: still no suggestion, and nothing merged.
    send(
        &app,
        record("c1", "Ada Lovelace", "12 Kitchener St", "1975-03-02"),
    )
    .await;
    send(
        &app,
        record("c2", "Ada Lovelase", "12 Kitchener St", "1975-03-02"),
    )
    .await;
    app.drain().await;
    let st = s.drain(50).await.unwrap();
    assert_eq!(st.changed, 2, "both were scored again: {st:?}");
    assert!(open_suggestions(&app).await.is_empty());
    assert_eq!(customer_ids(&app).await.len(), 3);
    // A third record of the same person is still suggested, with either of them.
    send(
        &app,
        record("c4", "Ada Lovelace", "12 Kitchener St", "1975-03-02"),
    )
    .await;
    app.drain().await;
    s.drain(50).await.unwrap();
    assert_eq!(open_suggestions(&app).await.len(), 2);
    let rejected = app
        .get_json("/api/v1/merge-suggestions?status=rejected")
        .await;
    assert_eq!(rejected["items"][0]["id"], id);
    app.stop().await;
}
on_both_backends!(
    reject_remembered,
    super::a_rejected_pair_is_never_suggested_again
);

async fn an_unmerged_pair_is_never_suggested_again(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(12.0)).await else {
        return;
    };
    let s = suggester(&app, 12.0);
    send(
        &app,
        record("c1", "Ada Lovelace", "12 Kitchener Street", "1975-03-02"),
    )
    .await;
    send(
        &app,
        record("c2", "Ada Lovelase", "12 Kitchner Street", "1975-03-02"),
    )
    .await;
    app.drain().await;
    let id_of = |email: &'static str| {
        let app = &app;
        async move {
            app.get_json(&format!("/api/v1/customers?email={email}"))
                .await["items"][0]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let (a, b) = (id_of("c1@example.com").await, id_of("c2@example.com").await);
    // Merged by hand before the suggester saw them, then unmerged: the agent says they are
    // two people. No suggestion row exists for the pair; only the unmerge remembers it.
    let r = app
        .post_json(&format!("/api/v1/customers/{a}/merge"), json!({"other": b}))
        .await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/customers/{a}/unmerge"),
            json!({"merge_id": m["id"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let st = s.drain(50).await.unwrap();
    assert_eq!(st.changed, 2, "both scored: {st:?}");
    assert!(open_suggestions(&app).await.is_empty());
    let all = app.get_json("/api/v1/merge-suggestions?status=all").await;
    assert!(all["items"].as_array().unwrap().is_empty(), "{all}");
    // A third record of the same person is suggested with each of them: the suggester ran.
    send(
        &app,
        record("c4", "Ada Lovelace", "12 Kitchener Street", "1975-03-02"),
    )
    .await;
    app.drain().await;
    s.drain(50).await.unwrap();
    assert_eq!(open_suggestions(&app).await.len(), 2);
    assert_eq!(customer_ids(&app).await.len(), 3);
    app.stop().await;
}

async fn a_suggestion_whose_customers_are_merged_otherwise_is_closed(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(12.0)).await else {
        return;
    };
    let s = suggester(&app, 12.0);
    two_similar_and_one_stranger(&app, &s).await;
    let sg = open_suggestions(&app).await[0].clone();
    let (a, b) = (
        sg["customer_id"].as_str().unwrap().to_string(),
        sg["other_customer_id"].as_str().unwrap().to_string(),
    );
    let r = app
        .post_json(&format!("/api/v1/customers/{a}/merge"), json!({"other": b}))
        .await;
    assert_eq!(r.status(), 200);
    let closed = app
        .get_json("/api/v1/merge-suggestions?status=closed")
        .await;
    let items = closed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{closed}");
    // It now names the survivor on both sides; it cannot be accepted.
    assert_eq!(items[0]["customer_id"], a.as_str());
    assert_eq!(items[0]["other_customer_id"], a.as_str());
    let id = items[0]["id"].as_str().unwrap();
    let r = app
        .post_json(&format!("/api/v1/merge-suggestions/{id}/accept"), json!({}))
        .await;
    assert_problem(r, 409, "already_decided").await;
    s.drain(50).await.unwrap();
    assert!(open_suggestions(&app).await.is_empty(), "never itself");
    app.stop().await;
}
on_both_backends!(
    merged_otherwise_closes,
    super::a_suggestion_whose_customers_are_merged_otherwise_is_closed
);

on_both_backends!(
    unmerge_remembered,
    super::an_unmerged_pair_is_never_suggested_again
);

async fn the_configured_threshold_decides_what_is_offered(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(90.0)).await else {
        return;
    };
    // The same pair as above scores well under 90.
    let s = suggester(&app, 90.0);
    two_similar_and_one_stranger(&app, &s).await;
    assert!(open_suggestions(&app).await.is_empty());
    // Below the stranger's score, the stranger is offered too.
    send(
        &app,
        record("c1", "Ada Lovelace", "13 Kitchener Street", "1975-03-02"),
    )
    .await;
    app.drain().await;
    let low = suggester(&app, -100.0);
    low.drain(50).await.unwrap();
    let all = app.get_json("/api/v1/merge-suggestions?status=all").await;
    assert!(all["items"].as_array().unwrap().len() >= 2, "{all}");
    app.stop().await;
}
on_both_backends!(
    threshold_from_config,
    super::the_configured_threshold_decides_what_is_offered
);

async fn bad_list_parameters_are_400_problems(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(12.0)).await else {
        return;
    };
    for (q, code) in [
        ("status=maybe", "invalid_status"),
        ("min_score=high", "invalid_min_score"),
        ("min_score=NaN", "invalid_min_score"),
        ("limit=0", "invalid_limit"),
        ("limit=201", "invalid_limit"),
        ("cursor=%%%", "invalid_cursor"),
        ("cursor=bm90LWEtY3Vyc29y", "invalid_cursor"),
        ("sort=score", "unknown_parameter"),
    ] {
        let r = app.get(&format!("/api/v1/merge-suggestions?{q}")).await;
        assert_problem(r, 400, code).await;
    }
    let r = app
        .client
        .get(format!("{}/api/v1/merge-suggestions", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}
on_both_backends!(bad_params, super::bad_list_parameters_are_400_problems);

async fn pages_follow_the_cursor_without_gaps_or_repeats(db: Db) {
    let Some(app) = spawn_app_with(db, tweak(0.0)).await else {
        return;
    };
    let s = suggester(&app, 0.0);
    for i in 0..5 {
        send(
            &app,
            record(
                &format!("p{i}"),
                "Ada Lovelace",
                "12 Kitchener Street",
                "1975-03-02",
            ),
        )
        .await;
    }
    app.drain().await;
    s.drain(50).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let page = app
            .get_json(&format!(
                "/api/v1/merge-suggestions?limit=3&cursor={cursor}"
            ))
            .await;
        for it in page["items"].as_array().unwrap() {
            seen.push(it["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), 10, "5 records, 10 pairs: {seen:?}");
    assert_eq!(unique.len(), 10);
    app.stop().await;
}
on_both_backends!(
    pagination,
    super::pages_follow_the_cursor_without_gaps_or_repeats
);

//! The identity graph end to end on both databases: provenance, phone quirks, every guard,
//! and manual merge/unmerge with its audit trail and events.

mod common;

use common::{assert_problem, spawn_app_with, Db, TestApp};
use serde_json::{json, Value};

/// The canonical customer id whose identities include `value`.
async fn customer_with(app: &TestApp, q: &str) -> Vec<String> {
    let list = app
        .get_json(&format!("/api/v1/customers?{q}&limit=200"))
        .await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

async fn all_customers(app: &TestApp) -> Vec<Value> {
    app.get_json("/api/v1/customers?limit=200").await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn send(app: &TestApp, ev: Value) {
    let r = app.send(ev).await;
    assert_eq!(r.status(), 200);
}

async fn identity_is_seen_again_moves_last_seen_and_keeps_first(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    send(&app, json!({"id": "e1", "thread": "t", "text": "a", "email": "ada@example.com", "at": 1_795_000_000})).await;
    app.drain().await;
    send(&app, json!({"id": "e2", "thread": "t", "text": "b", "email": "Ada@Example.com", "at": 1_795_000_100})).await;
    app.drain().await;
    let ids = customer_with(&app, "email=ada@example.com").await;
    assert_eq!(ids.len(), 1);
    let c = app.get_json(&format!("/api/v1/customers/{}", ids[0])).await;
    let email = c["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "email")
        .unwrap()
        .clone();
    assert_eq!(email["first_seen"], "2026-11-18T11:06:40.000Z");
    assert_eq!(email["last_seen"], "2026-11-18T11:08:20.000Z");
    assert_eq!(email["connector_id"], "api");
    assert_eq!(email["last_connector_id"], "api");
    assert_ne!(email["raw_event_id"], email["last_raw_event_id"]);
    assert_eq!(email["links"], true);
    app.stop().await;
}
on_both_backends!(
    identity_seen_again,
    super::identity_is_seen_again_moves_last_seen_and_keeps_first
);

async fn whatsapp_numbers_with_and_without_the_ninth_digit_are_one_customer(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    send(
        &app,
        json!({"id": "w1", "thread": "wa1", "text": "oi", "phone": "whatsapp:+551187654321"}),
    )
    .await;
    app.drain().await;
    send(
        &app,
        json!({"id": "w2", "thread": "wa2", "text": "oi de novo", "phone": "+55 11 98765-4321"}),
    )
    .await;
    app.drain().await;
    send(
        &app,
        json!({"id": "m1", "thread": "mx1", "text": "hola", "phone": "whatsapp:+5215512345678"}),
    )
    .await;
    app.drain().await;
    send(
        &app,
        json!({"id": "m2", "thread": "mx2", "text": "hola", "phone": "+52 55 1234 5678"}),
    )
    .await;
    app.drain().await;
    assert_eq!(
        all_customers(&app).await.len(),
        2,
        "one Brazilian, one Mexican"
    );
    let br = customer_with(&app, "phone=%2B551187654321").await;
    assert_eq!(br.len(), 1, "the old form finds the canonical number");
    let c = app.get_json(&format!("/api/v1/customers/{}", br[0])).await;
    assert_eq!(c["identities"][0]["value"], "+5511987654321");
    let mx = customer_with(&app, "phone=%2B5215512345678").await;
    let c = app.get_json(&format!("/api/v1/customers/{}", mx[0])).await;
    assert_eq!(c["identities"][0]["value"], "+525512345678");
    app.stop().await;
}
on_both_backends!(
    whatsapp_quirks,
    super::whatsapp_numbers_with_and_without_the_ninth_digit_are_one_customer
);

async fn a_blocklisted_phone_is_recorded_on_each_customer_but_merges_nobody(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        s.identity.blocklist = vec!["+442079460000".into()];
    })
    .await
    else {
        return;
    };
    send(&app, json!({"id": "b1", "thread": "b1", "text": "a", "email": "a@example.com", "phone": "020 7946 0000"})).await;
    send(&app, json!({"id": "b2", "thread": "b2", "text": "b", "email": "b@example.com", "phone": "+44 20 7946 0000"})).await;
    app.drain().await;
    let customers = all_customers(&app).await;
    assert_eq!(customers.len(), 2);
    for c in customers {
        let d = app
            .get_json(&format!("/api/v1/customers/{}", c["id"].as_str().unwrap()))
            .await;
        let phone = d["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "phone")
            .expect("the blocked phone is still shown")
            .clone();
        assert_eq!(
            (phone["links"].clone(), phone["guard"].clone()),
            (json!(false), json!("blocked"))
        );
    }
    assert_eq!(app.store.count("customer_merges").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    blocklist_guard,
    super::a_blocklisted_phone_is_recorded_on_each_customer_but_merges_nobody
);

/// Cap email = 1: an event linking two customers with one email each is refused (the event
/// goes to its email's customer, the more trusted kind), and the phone it carried becomes
/// shared by two customers; with max_shared = 1 it then links nobody.
async fn the_cap_refuses_a_merge_and_an_over_shared_value_links_nothing(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        s.identity.max_per_kind.insert("email".into(), 1);
        s.identity.max_shared = 1;
    })
    .await
    else {
        return;
    };
    send(&app, json!({"id": "c1", "thread": "c1", "text": "a", "email": "a@example.com", "phone": "020 7946 0958"})).await;
    app.drain().await;
    send(
        &app,
        json!({"id": "c2", "thread": "c2", "text": "b", "email": "b@example.com"}),
    )
    .await;
    app.drain().await;
    // Would merge a@ and b@ through the phone: refused by the cap.
    send(&app, json!({"id": "c3", "thread": "c3", "text": "c", "email": "b@example.com", "phone": "020 7946 0958"})).await;
    app.drain().await;
    assert_eq!(app.store.count("customer_merges").await.unwrap(), 0);
    let a = customer_with(&app, "email=a@example.com").await;
    let b = customer_with(&app, "email=b@example.com").await;
    assert_ne!(a, b);
    let conv = app.get_json("/api/v1/conversations?limit=200").await;
    let c3 = conv["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["thread_key"] == "c3")
        .unwrap()
        .clone();
    assert_eq!(c3["customer_id"], b[0].as_str(), "email outranks phone");
    let d = app.get_json(&format!("/api/v1/customers/{}", b[0])).await;
    let phone = d["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "phone")
        .unwrap()
        .clone();
    assert_eq!(phone["guard"], "shared");
    // The phone is now on two customers, more than max_shared: alone it finds nobody.
    send(
        &app,
        json!({"id": "c4", "thread": "c4", "text": "d", "phone": "020 7946 0958"}),
    )
    .await;
    app.drain().await;
    assert_eq!(all_customers(&app).await.len(), 3);
    // A second email on the capped customer is recorded but does not link.
    send(&app, json!({"id": "c5", "thread": "c1", "text": "e", "email": "a@example.com", "customer_id": "u1"})).await;
    send(&app, json!({"id": "c6", "thread": "c1", "text": "f", "email": "a2@example.com", "customer_id": "u1"})).await;
    app.drain().await;
    let d = app.get_json(&format!("/api/v1/customers/{}", a[0])).await;
    let a2 = d["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == "a2@example.com")
        .unwrap()
        .clone();
    assert_eq!(
        (a2["links"].clone(), a2["guard"].clone()),
        (json!(false), json!("capped"))
    );
    app.stop().await;
}
on_both_backends!(
    cap_and_shared_guards,
    super::the_cap_refuses_a_merge_and_an_over_shared_value_links_nothing
);

/// The pipeline loads guard counts only for customers a new identifier can reach from what
/// is stored; one reached only through an earlier event of the same batch (here a new
/// thread that the batch's first event put on customer A) is found by the plan and loaded
/// before anything is written, so the cap still holds.
async fn the_cap_holds_for_a_customer_reached_only_through_the_same_batch(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        s.identity.max_per_kind.insert("email".into(), 1);
        s.pipeline.enabled = false;
    })
    .await
    else {
        return;
    };
    send(
        &app,
        json!({"id": "m1", "thread": "t1", "text": "a", "email": "a@example.com"}),
    )
    .await;
    app.drain().await;
    // One batch: m2 (all known) opens thread n1 on A; m3 in n1 brings only a new email.
    send(
        &app,
        json!({"id": "m2", "thread": "n1", "text": "b", "email": "a@example.com"}),
    )
    .await;
    send(
        &app,
        json!({"id": "m3", "thread": "n1", "text": "c", "email": "a3@example.com"}),
    )
    .await;
    app.drain().await;
    assert_eq!(all_customers(&app).await.len(), 1);
    let a = customer_with(&app, "email=a@example.com").await;
    let d = app.get_json(&format!("/api/v1/customers/{}", a[0])).await;
    let a3 = d["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == "a3@example.com")
        .unwrap()
        .clone();
    assert_eq!(
        (a3["links"].clone(), a3["guard"].clone()),
        (json!(false), json!("capped")),
        "A already holds its one email"
    );
    app.stop().await;
}
on_both_backends!(
    cap_within_one_batch,
    super::the_cap_holds_for_a_customer_reached_only_through_the_same_batch
);

async fn manual_merge_then_unmerge_restores_both_customers_with_an_audit_trail(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    send(&app, json!({"id": "u1", "thread": "ta", "text": "by email", "email": "ada@example.com", "name": "Ada"})).await;
    send(
        &app,
        json!({"id": "u2", "thread": "tb", "text": "by phone", "phone": "020 7946 0958"}),
    )
    .await;
    send(
        &app,
        json!({"id": "u3", "thread": "tc", "text": "third", "email": "c@example.com"}),
    )
    .await;
    app.drain().await;
    let a = customer_with(&app, "email=ada@example.com").await.remove(0);
    let b = customer_with(&app, "phone=02079460958").await.remove(0);
    let c = customer_with(&app, "email=c@example.com").await.remove(0);
    let before_a = app.get_json(&format!("/api/v1/customers/{a}")).await;
    let before_b = app.get_json(&format!("/api/v1/customers/{b}")).await;

    // c into b first, so b has an alias of its own that must travel with it.
    let r = app
        .post_json(&format!("/api/v1/customers/{b}/merge"), json!({"other": c}))
        .await;
    assert_eq!(r.status(), 200);
    let inner: Value = r.json().await.unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/customers/{a}/merge"),
            json!({"other": b, "reason": "same person, confirmed by phone"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(
        (m["survivor_id"].as_str(), m["merged_id"].as_str()),
        (Some(a.as_str()), Some(b.as_str()))
    );
    let mut moved: Vec<String> = serde_json::from_value(m["moved_ids"].clone()).unwrap();
    moved.sort();
    let mut want = vec![b.clone(), c.clone()];
    want.sort();
    assert_eq!(moved, want);
    assert!(m["actor"].as_str().unwrap().starts_with("token:"));
    let merged = app.get_json(&format!("/api/v1/customers/{b}")).await;
    assert_eq!(merged["id"], a.as_str());
    assert_eq!(
        merged["identities"].as_array().unwrap().len(),
        3,
        "a's email, b's phone, c's email"
    );
    let tl = app
        .get_json(&format!("/api/v1/customers/{a}/timeline"))
        .await;
    assert_eq!(tl["items"].as_array().unwrap().len(), 3);
    // Merging again is a conflict; unknown ids are 404.
    let r = app
        .post_json(&format!("/api/v1/customers/{a}/merge"), json!({"other": c}))
        .await;
    assert_problem(r, 409, "same_customer").await;
    let r = app
        .post_json(
            &format!("/api/v1/customers/{a}/merge"),
            json!({"other": "nope"}),
        )
        .await;
    assert_eq!(r.status(), 404);

    let r = app
        .post_json(
            &format!("/api/v1/customers/{a}/unmerge"),
            json!({"merge_id": m["id"], "reason": "different people after all"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let undone: Value = r.json().await.unwrap();
    assert!(undone["undone_at"].is_string());
    assert_eq!(undone["undo_reason"], "different people after all");
    let r = app
        .post_json(
            &format!("/api/v1/customers/{a}/unmerge"),
            json!({"merge_id": m["id"]}),
        )
        .await;
    assert_problem(r, 409, "already_unmerged").await;

    // Exactly as before: a alone, b with its own alias c again.
    let after_a = app.get_json(&format!("/api/v1/customers/{a}")).await;
    assert_eq!(after_a["identities"], before_a["identities"]);
    assert_eq!(after_a["aliases"], before_a["aliases"]);
    let after_b = app.get_json(&format!("/api/v1/customers/{b}")).await;
    assert_eq!(after_b["id"], b.as_str());
    assert_eq!(after_b["aliases"], json!([c]));
    assert_eq!(
        after_b["identities"].as_array().unwrap().len(),
        before_b["identities"].as_array().unwrap().len() + 1
    );
    let tl = app
        .get_json(&format!("/api/v1/customers/{a}/timeline"))
        .await;
    assert_eq!(tl["items"].as_array().unwrap().len(), 1);
    let conv = app.get_json("/api/v1/conversations?limit=200").await;
    for cv in conv["items"].as_array().unwrap() {
        let want = if cv["thread_key"] == "ta" { &a } else { &b };
        assert_eq!(cv["customer_id"], want.as_str(), "{cv}");
    }

    // The audit trail: both merges, one undone, with actor and reason; and both events.
    let trail = app.get_json(&format!("/api/v1/customers/{b}/merges")).await;
    let items = trail["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], inner["id"]);
    assert!(items[0]["undone_at"].is_null());
    assert_eq!(items[1]["reason"], "same person, confirmed by phone");
    assert!(items[1]["undone_by"]
        .as_str()
        .unwrap()
        .starts_with("token:"));
    let events = app.store.events_after(0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "customer.merged").count(), 2);
    let un = events
        .iter()
        .find(|e| e.kind == "customer.unmerged")
        .expect("unmerged event");
    assert_eq!(un.payload["merge_id"], m["id"]);
    app.stop().await;
}
on_both_backends!(
    manual_merge_and_unmerge,
    super::manual_merge_then_unmerge_restores_both_customers_with_an_audit_trail
);

/// An unmerge is the agent's word that these are two people: a later event that carries
/// identifiers of both does not merge them again (it goes to its most trusted identifier's
/// customer, and the other value is recorded there as shared), while each still gets its own
/// events; a third customer merges as usual.
async fn an_unmerged_pair_is_never_merged_again_by_a_later_event(db: Db) {
    let Some(app) = spawn_app_with(db, |s| s.pipeline.enabled = false).await else {
        return;
    };
    send(
        &app,
        json!({"id": "s1", "thread": "sa", "text": "a", "email": "ann@example.com"}),
    )
    .await;
    send(
        &app,
        json!({"id": "s2", "thread": "sb", "text": "b", "phone": "020 7946 0958"}),
    )
    .await;
    app.drain().await;
    // The pipeline merges them through an event that carries both …
    send(&app, json!({"id": "s3", "thread": "sc", "text": "c", "email": "ann@example.com", "phone": "020 7946 0958"})).await;
    app.drain().await;
    let a = customer_with(&app, "email=ann@example.com").await.remove(0);
    let merges = app.get_json(&format!("/api/v1/customers/{a}/merges")).await;
    let merge = merges["items"].as_array().unwrap()[0].clone();
    let b = merge["merged_id"].as_str().unwrap().to_string();
    assert_eq!(merge["actor"], "pipeline");
    // … an agent says they are two people …
    let r = app
        .post_json(
            &format!("/api/v1/customers/{a}/unmerge"),
            json!({"merge_id": merge["id"], "reason": "two people share the phone"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // … and the next event with both identifiers leaves them apart.
    send(&app, json!({"id": "s4", "thread": "sd", "text": "d", "email": "ann@example.com", "phone": "020 7946 0958"})).await;
    send(
        &app,
        json!({"id": "s5", "thread": "se", "text": "e", "phone": "020 7946 0958"}),
    )
    .await;
    app.drain().await;
    assert_eq!(app.store.count("customer_merges").await.unwrap(), 1);
    assert_eq!(
        customer_with(&app, "email=ann@example.com").await,
        vec![a.clone()]
    );
    let conv = app.get_json("/api/v1/conversations?limit=200").await;
    let owner = |thread: &str| {
        conv["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["thread_key"] == thread)
            .unwrap()["customer_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(owner("sd"), a, "email outranks phone");
    assert_eq!(owner("se"), b, "the phone alone still finds its customer");
    // A third customer still merges through a strong identifier as usual.
    send(
        &app,
        json!({"id": "s6", "thread": "sf", "text": "f", "email": "zed@example.com"}),
    )
    .await;
    app.drain().await;
    send(&app, json!({"id": "s7", "thread": "sg", "text": "g", "email": "zed@example.com", "phone": "020 7946 0958"})).await;
    app.drain().await;
    assert_eq!(app.store.count("customer_merges").await.unwrap(), 2);
    app.stop().await;
}
on_both_backends!(
    unmerged_pair_stays_apart,
    super::an_unmerged_pair_is_never_merged_again_by_a_later_event
);

//! The Stripe connector through the real app, on SQLite and PostgreSQL: `Stripe-Signature`
//! refusals store nothing, an event that comes by webhook and by poll is stored once, a
//! payment and its refund are two documents on the payer's timeline, a dispute's later
//! events update one document, and an interrupted backfill resumes.

mod common;

use common::{spawn_app_with, Db, TestApp};
use serde_json::json;
use switchboard::config::Settings;
use switchboard_core::fake::{Answer, FakeProvider};

const SECRET: &str = "whsec_test_secret";
const API_KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
const PI: &str = "pi_3MtwBwLkdIwHu7ix28a3tqPa";

fn fixture(name: &str) -> Vec<u8> {
    switchboard_core::testkit::fixture(
        concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/commerce"),
        "stripe",
        name,
    )
}

/// Adds `[[connectors]] id = "st" kind = "stripe"` (webhooks and polling against
/// `api_base`); the app's own poller stays off so tests drive polls themselves.
fn with_stripe(s: &mut Settings, api_base: &str) {
    let table: toml::Value = toml::from_str(&format!(
        r#"
id = "st"
kind = "stripe"
webhook_secret = "{SECRET}"
api_key = "{API_KEY}"
api_base = "{api_base}"
poll_rate_per_sec = 100
"#
    ))
    .expect("stripe table");
    s.connectors.push(table);
    s.poller.enabled = false;
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn signed(body: &[u8], t: i64) -> String {
    format!(
        "t={t},v1={}",
        switchboard_commerce::stripe::sign(SECRET, t, body)
    )
}

async fn post(app: &TestApp, body: &[u8], signature: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/st", app.addr))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("stripe-signature", s);
    }
    req.send().await.expect("request")
}

/// Delivers a fixture as Stripe does (signed now) and runs the pipeline.
async fn deliver(app: &TestApp, name: &str) {
    let body = fixture(name);
    let r = post(app, &body, Some(&signed(&body, now()))).await;
    assert_eq!(r.status(), 200, "{name}");
    app.drain().await;
}

async fn customer_of(app: &TestApp, email: &str) -> String {
    let found = app
        .get_json(&format!("/api/v1/customers?email={email}"))
        .await;
    found["items"][0]["id"]
        .as_str()
        .expect("customer")
        .to_string()
}

async fn timeline_kinds(app: &TestApp, customer: &str) -> Vec<String> {
    let tl = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    let mut k: Vec<String> = tl["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    k.sort();
    k
}

async fn two_v1_signatures_where_only_the_second_matches_are_accepted(db: Db) {
    let Some(app) = spawn_app_with(db, |s| with_stripe(s, "http://127.0.0.1:9")).await else {
        return;
    };
    let body = fixture("payment_intent.succeeded.json");
    let t = now();
    let stale = switchboard_commerce::stripe::sign("whsec_rotated_out", t, &body);
    let good = switchboard_commerce::stripe::sign(SECRET, t, &body);
    let r = post(&app, &body, Some(&format!("t={t},v1={stale},v1={good}"))).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["status"], "accepted", "{v}");
    assert_eq!(app.store.count("raw_events").await.unwrap(), 1);
    app.stop().await;
}
on_both_backends!(
    two_v1_signatures_where_only_the_second_matches_are_accepted,
    super::two_v1_signatures_where_only_the_second_matches_are_accepted
);

async fn refused_signatures_are_401_and_store_nothing(db: Db) {
    let Some(app) = spawn_app_with(db, |s| with_stripe(s, "http://127.0.0.1:9")).await else {
        return;
    };
    let body = fixture("payment_intent.succeeded.json");
    let t = now();
    let sig = switchboard_commerce::stripe::sign(SECRET, t, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b"\n");
    let cases: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        (
            "six minutes old",
            body.clone(),
            Some(signed(&body, t - 360)),
        ),
        ("tampered body", tampered, Some(format!("t={t},v1={sig}"))),
        (
            "wrong secret",
            body.clone(),
            Some(format!(
                "t={t},v1={}",
                switchboard_commerce::stripe::sign("whsec_other", t, &body)
            )),
        ),
        ("no v1", body.clone(), Some(format!("t={t},v0={sig}"))),
        ("garbled", body.clone(), Some(format!("v1={sig};t={t}"))),
        ("missing", body.clone(), None),
    ];
    for (what, b, header) in cases {
        let r = post(&app, &b, header.as_deref()).await;
        assert_eq!(r.status(), 401, "{what}");
    }
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    assert_eq!(app.store.count("jobs").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    refused_signatures_are_401_and_store_nothing,
    super::refused_signatures_are_401_and_store_nothing
);

fn registry(connectors: &[toml::Value]) -> switchboard::registry::Registry {
    switchboard::registry::Registry::build(connectors, &|_: &str| None).expect("registry")
}

fn list(events: Vec<serde_json::Value>, has_more: bool) -> Answer {
    Answer::json(
        json!({"object": "list", "url": "/v1/events", "has_more": has_more, "data": events}),
    )
}

fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name)).expect("fixture json")
}

async fn the_same_event_by_webhook_and_by_poll_is_stored_once(db: Db) {
    let fake = FakeProvider::start().await;
    // The poll sees the webhook's event again, and the charge that followed it.
    fake.on(
        "GET",
        "/v1/events",
        [list(
            vec![
                fixture_json("charge.succeeded.json"),
                fixture_json("payment_intent.succeeded.json"),
            ],
            false,
        )],
    );
    let base = fake.base.clone();
    let mut connectors = Vec::new();
    let Some(app) = spawn_app_with(db, |s| {
        with_stripe(s, &base);
        connectors = s.connectors.clone();
    })
    .await
    else {
        return;
    };
    deliver(&app, "payment_intent.succeeded.json").await;
    let reg = registry(&connectors);
    let st = reg.get("st").expect("st");
    assert!(!switchboard::poller::poll_once(&app.store, st)
        .await
        .unwrap());
    assert_eq!(app.store.count("raw_events").await.unwrap(), 2);
    app.drain().await;
    let cursor = app.store.poll_cursor("st").await.unwrap().expect("cursor");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&cursor).unwrap(),
        json!({"walk": "live", "newest": "evt_3MtwBwLkdIwHu7ix0chArGe1"})
    );
    let customer = customer_of(&app, "ada@example.com").await;
    let payments = app
        .get_json(&format!("/api/v1/customers/{customer}/payments"))
        .await;
    let items = payments["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{payments}");
    assert_eq!(items[0]["id"], PI);
    assert_eq!(items[0]["body"]["amount_minor"], 2000);
    // The charge repeats the intent's state: nothing changed.
    assert_eq!(timeline_kinds(&app, &customer).await, ["payment"]);
    app.stop().await;
}
on_both_backends!(
    the_same_event_by_webhook_and_by_poll_is_stored_once,
    super::the_same_event_by_webhook_and_by_poll_is_stored_once
);

async fn a_payment_then_a_refund_are_two_documents_on_the_payers_timeline(db: Db) {
    let Some(app) = spawn_app_with(db, |s| with_stripe(s, "http://127.0.0.1:9")).await else {
        return;
    };
    deliver(&app, "payment_intent.succeeded.json").await;
    deliver(&app, "charge.refunded.json").await;
    deliver(&app, "refund.created.json").await;
    let customer = customer_of(&app, "ada@example.com").await;
    let payments = app
        .get_json(&format!("/api/v1/customers/{customer}/payments"))
        .await;
    let items = payments["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{payments}");
    let by_id = |id: &str| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {payments}"))
    };
    let paid = by_id(PI);
    assert_eq!(paid["connector_id"], "st");
    assert_eq!(paid["body"]["kind"], "charge");
    assert_eq!(paid["body"]["amount_minor"], 2000);
    assert_eq!(paid["body"]["currency"], "USD");
    assert_eq!(paid["body"]["status"], "partially_refunded");
    let refund = by_id("re_3MtwBwLkdIwHu7ix1Pv0e8mG");
    assert_eq!(refund["body"]["kind"], "refund");
    assert_eq!(refund["body"]["amount_minor"], 750);
    assert_eq!(refund["body"]["currency"], "USD");
    assert_eq!(refund["body"]["status"], "succeeded");
    assert_eq!(
        timeline_kinds(&app, &customer).await,
        ["payment", "payment", "payment_changed"]
    );
    let tl = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    let changed = tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "payment_changed")
        .expect("changed entry");
    assert_eq!(
        changed["body"]["changes"],
        json!({"status": ["succeeded", "partially_refunded"]})
    );
    // The Stripe customer id is one of the customer's identities.
    let c = app.get_json(&format!("/api/v1/customers/{customer}")).await;
    assert!(c.to_string().contains("cus_NffrFeUfNV2Hib"), "{c}");
    app.stop().await;
}
on_both_backends!(
    a_payment_then_a_refund_are_two_documents_on_the_payers_timeline,
    super::a_payment_then_a_refund_are_two_documents_on_the_payers_timeline
);

async fn a_dispute_created_then_closed_is_one_document_with_one_change(db: Db) {
    let Some(app) = spawn_app_with(db, |s| with_stripe(s, "http://127.0.0.1:9")).await else {
        return;
    };
    deliver(&app, "charge.dispute.created.json").await;
    deliver(&app, "charge.dispute.closed.json").await;
    // A retried delivery of the older event changes nothing.
    deliver(&app, "charge.dispute.created.json").await;
    let customer = customer_of(&app, "ada@example.com").await;
    let payments = app
        .get_json(&format!("/api/v1/customers/{customer}/payments"))
        .await;
    let items = payments["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{payments}");
    assert_eq!(items[0]["id"], "dp_1Q2DiSpuTe00000000000001");
    assert_eq!(items[0]["body"]["kind"], "dispute");
    assert_eq!(items[0]["body"]["status"], "lost");
    assert_eq!(items[0]["body"]["reason"], "fraudulent");
    assert_eq!(items[0]["body"]["amount_minor"], 2000);
    assert_eq!(
        timeline_kinds(&app, &customer).await,
        ["payment", "payment_changed"]
    );
    let tl = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    let changed = tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "payment_changed")
        .expect("changed entry");
    assert_eq!(
        changed["body"],
        json!({"type": "payment_changed", "payment_id": "dp_1Q2DiSpuTe00000000000001",
               "changes": {"status": ["needs_response", "lost"]}})
    );
    app.stop().await;
}
on_both_backends!(
    a_dispute_created_then_closed_is_one_document_with_one_change,
    super::a_dispute_created_then_closed_is_one_document_with_one_change
);

fn event(id: &str, created: i64) -> serde_json::Value {
    json!({"id": id, "object": "event", "type": "customer.updated", "created": created,
           "data": {"object": {"id": "cus_NffrFeUfNV2Hib", "object": "customer",
                               "email": "ada@example.com", "name": "Ada Lovelace"}}})
}

async fn an_interrupted_backfill_resumes_with_starting_after_and_leaves_the_live_cursor(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        "/v1/events",
        [
            list(
                vec![event("evt_9", 1_764_000_090), event("evt_8", 1_764_000_080)],
                true,
            ),
            list(vec![event("evt_7", 1_764_000_070)], false),
        ],
    );
    let base = fake.base.clone();
    let mut connectors = Vec::new();
    let Some(app) = spawn_app_with(db, |s| {
        with_stripe(s, &base);
        connectors = s.connectors.clone();
    })
    .await
    else {
        return;
    };
    let reg = registry(&connectors);
    let st = reg.get("st").expect("st");
    let since = 1_764_000_000_000;
    let first = switchboard::backfill::run(&app.store, st, since, false, Some(1), |_| {})
        .await
        .unwrap();
    assert!(!first.done);
    assert_eq!(first.accepted, 2);
    let rest = switchboard::backfill::run(&app.store, st, since, false, None, |_| {})
        .await
        .unwrap();
    assert!(rest.resumed && rest.done);
    assert_eq!(rest.accepted, 1);
    assert_eq!(rest.duplicate, 0);
    let reqs = fake.received_on("/v1/events");
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].query_param("created[gte]").as_deref(),
        Some("1764000000")
    );
    assert_eq!(
        reqs[1].query_param("starting_after").as_deref(),
        Some("evt_8")
    );
    assert_eq!(app.store.poll_cursor("st").await.unwrap(), None);
    assert_eq!(app.store.count("raw_events").await.unwrap(), 3);
    app.drain().await;
    let customer = customer_of(&app, "ada@example.com").await;
    assert_eq!(timeline_kinds(&app, &customer).await, ["profile"]);
    app.stop().await;
}
on_both_backends!(
    an_interrupted_backfill_resumes_with_starting_after_and_leaves_the_live_cursor,
    super::an_interrupted_backfill_resumes_with_starting_after_and_leaves_the_live_cursor
);

#[test]
fn the_example_config_is_valid_and_builds_both_setups() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/stripe.toml");
    let s = switchboard::config::load(std::path::Path::new(path)).expect("example config");
    let reg = switchboard::registry::Registry::build(&s.connectors, &|_: &str| None)
        .expect("example connectors");
    let main = reg.get("stripe-main").expect("stripe-main");
    assert!(main.connector.webhook().is_some() && main.connector.poller().is_some());
    let eu = reg.get("stripe-eu").expect("stripe-eu");
    assert!(eu.connector.webhook().is_some() && eu.connector.poller().is_none());
}

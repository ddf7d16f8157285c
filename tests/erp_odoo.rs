//! Odoo end to end on SQLite and PostgreSQL: polled partners join the customer another channel
//! already knows by email; sale orders and invoices become documents on that customer; an
//! invoice posted then paid is one invoice with one change. The customer with the email is
//! made by the generic test connector `api` (its `email` field), since a WhatsApp sender
//! claims a phone, not an email.

mod common;

use common::{spawn_app_with, Db, TestApp};
use serde_json::{json, Value};
use switchboard::config::Settings;
use switchboard::registry::Registry;
use switchboard_core::fake::{Answer, FakeProvider};

fn fixture(name: &str) -> Value {
    let bytes = switchboard_core::testkit::fixture(
        concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/erp"),
        "odoo",
        name,
    );
    serde_json::from_slice(&bytes).expect("fixture JSON")
}

fn path(model: &str) -> String {
    format!("/json/2/{model}/search_read")
}

/// Adds `[[connectors]] id = "odoo" kind = "odoo"`; polls are driven by the test.
fn with_odoo(s: &mut Settings, api_base: &str) -> Vec<toml::Value> {
    let table: toml::Value = toml::from_str(&format!(
        r#"
id = "odoo"
kind = "odoo"
api_base = "{api_base}"
database = "acme"
username = "api@acme.example"
api_key = "odoo-test-key"
"#
    ))
    .expect("odoo table");
    s.connectors.push(table);
    s.poller.enabled = false;
    s.connectors.clone()
}

/// Polls until the round is over (bounded), then runs the pipeline.
async fn poll_all(app: &TestApp, connectors: &[toml::Value]) {
    let registry = Registry::build(connectors, &|_: &str| None).expect("registry");
    let odoo = registry.get("odoo").expect("odoo");
    for _ in 0..10 {
        let more = switchboard::poller::poll_once(&app.store, odoo)
            .await
            .expect("poll");
        if !more {
            break;
        }
    }
    app.drain().await;
}

async fn customer_of(app: &TestApp, email: &str) -> Vec<String> {
    let found = app
        .get_json(&format!("/api/v1/customers?email={email}"))
        .await;
    found["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect()
}

async fn timeline(app: &TestApp, customer: &str) -> Vec<Value> {
    let tl = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    tl["items"].as_array().unwrap().clone()
}

async fn an_odoo_partner_with_a_known_email_lands_on_that_customer_with_its_documents(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &path("res.partner"),
        [
            Answer::json(json!([fixture("partner.json")])),
            Answer::json(json!([])),
        ],
    );
    fake.on(
        "POST",
        &path("sale.order"),
        [
            Answer::json(json!([fixture("sale_order.json")])),
            Answer::json(json!([])),
        ],
    );
    fake.on(
        "POST",
        &path("account.move"),
        [
            Answer::json(json!([fixture("invoice_posted.json")])),
            Answer::json(json!([])),
        ],
    );
    let base = fake.base.clone();
    let mut connectors = Vec::new();
    let Some(app) = spawn_app_with(db, |s| connectors = with_odoo(s, &base)).await else {
        return;
    };
    // The customer first wrote in on another channel, with this email.
    app.conversation("chat-1", "ada.lovelace@example.com").await;
    assert_eq!(customer_of(&app, "ada.lovelace@example.com").await.len(), 1);

    poll_all(&app, &connectors).await;
    let customers = customer_of(&app, "ada.lovelace@example.com").await;
    assert_eq!(customers.len(), 1, "the partner joined the known customer");
    let customer = &customers[0];
    let mut kinds: Vec<String> = timeline(&app, customer)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["invoice", "message", "order", "profile"]);

    let orders = app
        .get_json(&format!("/api/v1/customers/{customer}/orders"))
        .await;
    let items = orders["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{orders}");
    assert_eq!(items[0]["connector_id"], "odoo");
    assert_eq!(items[0]["body"]["number"], "S00007");
    assert_eq!(items[0]["body"]["total_minor"], 123_456);
    assert_eq!(items[0]["body"]["currency"], "EUR");

    let invoices = app
        .get_json(&format!("/api/v1/customers/{customer}/invoices"))
        .await;
    assert_eq!(invoices["items"][0]["body"]["status"], "not_paid");
    app.stop().await;
}
on_both_backends!(
    an_odoo_partner_with_a_known_email_lands_on_that_customer_with_its_documents,
    super::an_odoo_partner_with_a_known_email_lands_on_that_customer_with_its_documents
);

async fn an_invoice_posted_then_paid_is_one_invoice_with_one_change(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &path("res.partner"),
        [
            Answer::json(json!([fixture("partner.json")])),
            Answer::json(json!([])),
        ],
    );
    fake.on("POST", &path("sale.order"), [Answer::json(json!([]))]);
    fake.on(
        "POST",
        &path("account.move"),
        [
            Answer::json(json!([fixture("invoice_posted.json")])),
            Answer::json(json!([fixture("invoice_paid.json")])),
            Answer::json(json!([])),
        ],
    );
    let base = fake.base.clone();
    let mut connectors = Vec::new();
    let Some(app) = spawn_app_with(db, |s| connectors = with_odoo(s, &base)).await else {
        return;
    };
    poll_all(&app, &connectors).await;
    poll_all(&app, &connectors).await;
    let customers = customer_of(&app, "ada.lovelace@example.com").await;
    assert_eq!(customers.len(), 1);
    let customer = &customers[0];

    let invoices = app
        .get_json(&format!("/api/v1/customers/{customer}/invoices"))
        .await;
    let items = invoices["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one invoice document: {invoices}");
    assert_eq!(items[0]["id"], "19");
    assert_eq!(items[0]["body"]["status"], "paid");
    assert_eq!(items[0]["body"]["amount_due_minor"], 0);

    let entries = timeline(&app, customer).await;
    let changes: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "invoice_changed")
        .collect();
    assert_eq!(changes.len(), 1, "{entries:?}");
    assert_eq!(
        changes[0]["body"]["changes"]["status"],
        json!(["not_paid", "paid"])
    );
    assert_eq!(
        changes[0]["body"]["changes"]["amount_due_minor"],
        json!([123_456, 0])
    );
    assert_eq!(entries.iter().filter(|e| e["kind"] == "invoice").count(), 1);
    // The second round asked after the first invoice, by write_date then id.
    let moves = fake.received_on(&path("account.move"));
    assert!(moves.len() >= 2);
    assert_eq!(
        moves[1].json()["domain"][2],
        json!(["write_date", ">", "2026-01-06 08:05:00"])
    );
    app.stop().await;
}
on_both_backends!(
    an_invoice_posted_then_paid_is_one_invoice_with_one_change,
    super::an_invoice_posted_then_paid_is_one_invoice_with_one_change
);

async fn an_interrupted_backfill_resumes_without_skips_or_repeats(db: Db) {
    let fake = FakeProvider::start().await;
    let partners: Vec<Value> = (1..=200)
        .map(|i| {
            json!({"id": i, "name": format!("P{i}"), "email": format!("p{i}@example.com"),
                        "write_date": "2026-01-05 10:00:00"})
        })
        .collect();
    fake.on(
        "POST",
        &path("res.partner"),
        [
            Answer::json(Value::Array(partners)),
            Answer::json(json!([{"id": 201, "name": "P201", "write_date": "2026-01-05 10:00:00"}])),
            Answer::json(json!([])),
        ],
    );
    fake.on(
        "POST",
        &path("sale.order"),
        [
            Answer::json(json!([fixture("sale_order.json")])),
            Answer::json(json!([])),
        ],
    );
    fake.on("POST", &path("account.move"), [Answer::json(json!([]))]);
    let base = fake.base.clone();
    let mut connectors = Vec::new();
    let Some(app) = spawn_app_with(db, |s| connectors = with_odoo(s, &base)).await else {
        return;
    };
    let registry = Registry::build(&connectors, &|_: &str| None).expect("registry");
    let odoo = registry.get("odoo").expect("odoo");
    // 2026-01-01: interrupted after the first page.
    let since = 1_767_225_600_000;
    let first = switchboard::backfill::run(&app.store, odoo, since, false, Some(1), |_| {})
        .await
        .expect("first run");
    assert!(!first.done);
    assert_eq!(first.accepted, 200);
    let second = switchboard::backfill::run(&app.store, odoo, since, false, None, |_| {})
        .await
        .expect("resumed run");
    assert!(second.resumed && second.done, "{second:?}");
    assert_eq!((second.accepted, second.duplicate), (2, 0));
    assert_eq!(app.store.count("raw_events").await.unwrap(), 202);
    let calls = fake.received_on(&path("res.partner"));
    assert_eq!(
        calls[0].json()["domain"][1],
        json!(["write_date", ">", "2026-01-01 00:00:00"])
    );
    assert_eq!(
        calls[1].json()["domain"][4],
        json!(["id", ">", 200]),
        "resumed after the last stored record"
    );
    app.stop().await;
}
on_both_backends!(
    an_interrupted_backfill_resumes_without_skips_or_repeats,
    super::an_interrupted_backfill_resumes_without_skips_or_repeats
);

#[test]
fn the_example_config_is_valid_and_builds_a_poller() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/odoo.toml");
    let s = switchboard::config::load(std::path::Path::new(path)).expect("example config");
    let env = |k: &str| (k == "ODOO_API_KEY").then(|| "example-key".to_string());
    let reg = Registry::build(&s.connectors, &env).expect("example builds");
    let odoo = reg.get("odoo-main").expect("odoo-main");
    assert_eq!(odoo.kind, "odoo");
    assert!(odoo.connector.poller().is_some());
    assert!(odoo.connector.webhook().is_none(), "poll only");
}

//! ERPNext end to end on SQLite and PostgreSQL: signed webhooks are stored, unsigned or
//! wrongly signed ones are 401 and store nothing; the poll picks up a document whose webhook
//! was lost, and a version that came by webhook and by poll is stored once.

mod common;

use common::{spawn_app_with, Db, TestApp};
use serde_json::{json, Value};
use switchboard::config::Settings;
use switchboard::registry::Registry;
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};

const WEBHOOK_SECRET: &str = "frappe-hook-secret";

fn fixture(name: &str) -> Vec<u8> {
    switchboard_core::testkit::fixture(
        concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/erp"),
        "erpnext",
        name,
    )
}

fn sign(body: &[u8]) -> String {
    HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None)
        .sign(WEBHOOK_SECRET.as_bytes(), &[body])
}

/// Adds `[[connectors]] id = "erp" kind = "erpnext"` with a webhook; polls are driven by the
/// test.
fn with_erpnext(s: &mut Settings, api_base: &str) -> Vec<toml::Value> {
    let table: toml::Value = toml::from_str(&format!(
        r#"
id = "erp"
kind = "erpnext"
api_base = "{api_base}"
api_key = "k1"
api_secret = "s1"
webhook_secret = "{WEBHOOK_SECRET}"
doctypes = ["Customer", "Sales Order"]
"#
    ))
    .expect("erpnext table");
    s.connectors.push(table);
    s.poller.enabled = false;
    s.connectors.clone()
}

async fn post_hook(app: &TestApp, body: &[u8], sig: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/erp", app.addr))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = sig {
        req = req.header("x-frappe-webhook-signature", s);
    }
    req.send().await.expect("request")
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

async fn a_signed_webhook_is_stored_and_a_bad_or_missing_signature_is_401(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        with_erpnext(s, "http://127.0.0.1:9");
    })
    .await
    else {
        return;
    };
    let body = fixture("customer.json");
    let r = post_hook(&app, &body, None).await;
    assert_eq!(r.status(), 401);
    let r = post_hook(&app, &body, Some(&sign(b"another body"))).await;
    assert_eq!(r.status(), 401);
    let r = post_hook(&app, &body, Some("not base64!")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        app.store.count("raw_events").await.unwrap(),
        0,
        "nothing stored"
    );

    let r = post_hook(&app, &body, Some(&sign(&body))).await;
    assert_eq!(r.status(), 200);
    // Frappe retries a delivery it thinks failed: the same version is stored once.
    let r = post_hook(&app, &body, Some(&sign(&body))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.store.count("raw_events").await.unwrap(), 1);
    app.drain().await;
    let customers = customer_of(&app, "grace@example.org").await;
    assert_eq!(customers.len(), 1);
    let tl = app
        .get_json(&format!("/api/v1/customers/{}/timeline", customers[0]))
        .await;
    assert_eq!(tl["items"][0]["kind"], "profile");
    assert_eq!(tl["items"][0]["body"]["external_id"], "CUST-00001");
    app.stop().await;
}
on_both_backends!(
    a_signed_webhook_is_stored_and_a_bad_or_missing_signature_is_401,
    super::a_signed_webhook_is_stored_and_a_bad_or_missing_signature_is_401
);

async fn the_poll_recovers_a_lost_webhook_and_stores_a_version_seen_both_ways_once(db: Db) {
    let fake = FakeProvider::start().await;
    let customer: Value = serde_json::from_slice(&fixture("customer.json")).unwrap();
    let order: Value = serde_json::from_slice(&fixture("sales_order.json")).unwrap();
    let mut order_row = order.clone();
    if let Some(o) = order_row.as_object_mut() {
        o.remove("items");
        o.remove("doctype");
    }
    fake.on(
        "GET",
        "/api/resource/Customer",
        [
            Answer::json(json!({"data": [customer]})),
            Answer::json(json!({"data": []})),
        ],
    );
    fake.on(
        "GET",
        "/api/resource/Sales%20Order",
        [
            Answer::json(json!({"data": [order_row]})),
            Answer::json(json!({"data": []})),
        ],
    );
    fake.on(
        "GET",
        "/api/resource/Sales%20Order/SAL-ORD-2026-00001",
        [Answer::json(json!({"data": order}))],
    );
    let base = fake.base.clone();
    let mut connectors = Vec::new();
    let Some(app) = spawn_app_with(db, |s| connectors = with_erpnext(s, &base)).await else {
        return;
    };
    // The customer's webhook arrived; the sales order's was lost.
    let body = fixture("customer.json");
    assert_eq!(
        post_hook(&app, &body, Some(&sign(&body))).await.status(),
        200
    );
    app.drain().await;

    let registry = Registry::build(&connectors, &|_: &str| None).expect("registry");
    let erp = registry.get("erp").expect("erp");
    for _ in 0..5 {
        if !switchboard::poller::poll_once(&app.store, erp)
            .await
            .expect("poll")
        {
            break;
        }
    }
    app.drain().await;
    assert_eq!(
        app.store.count("raw_events").await.unwrap(),
        2,
        "the customer once (webhook and poll), the order once (poll)"
    );
    let customers = customer_of(&app, "grace@example.org").await;
    assert_eq!(customers.len(), 1);
    let customer = &customers[0];
    let orders = app
        .get_json(&format!("/api/v1/customers/{customer}/orders"))
        .await;
    let items = orders["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{orders}");
    assert_eq!(items[0]["id"], "SAL-ORD-2026-00001");
    assert_eq!(items[0]["connector_id"], "erp");
    assert_eq!(items[0]["body"]["total_minor"], 5990);
    assert_eq!(items[0]["body"]["items"].as_array().map(Vec::len), Some(2));
    let tl = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    let profiles = tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "profile")
        .count();
    assert_eq!(profiles, 1, "one profile entry: {tl}");
    app.stop().await;
}
on_both_backends!(
    the_poll_recovers_a_lost_webhook_and_stores_a_version_seen_both_ways_once,
    super::the_poll_recovers_a_lost_webhook_and_stores_a_version_seen_both_ways_once
);

#[test]
fn the_example_config_is_valid_and_builds_a_webhook_and_a_poller() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/erpnext.toml");
    let s = switchboard::config::load(std::path::Path::new(path)).expect("example config");
    let env = |k: &str| k.starts_with("ERPNEXT_").then(|| "example".to_string());
    let reg = Registry::build(&s.connectors, &env).expect("example builds");
    let erp = reg.get("erpnext-main").expect("erpnext-main");
    assert_eq!(erp.kind, "erpnext");
    assert!(erp.connector.poller().is_some() && erp.connector.webhook().is_some());
}

//! WooCommerce through the hub on SQLite and PostgreSQL: the creation ping is answered and
//! stored nowhere, a signed order lands on the timeline in exact minor units, a poll recovers
//! an update whose webhook was missed, and a bad signature stores nothing.

mod common;

use base64::Engine;
use common::{spawn_app_with, Db, TestApp};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use switchboard::registry::Registry;
use switchboard_core::fake::{Answer, FakeProvider};

const SECRET: &str = "wc_hub_test_secret";
const PATH: &str = "/wp-json/wc/v3/orders";

async fn app(db: Db) -> Option<(TestApp, FakeProvider, Registry)> {
    let fake = FakeProvider::start().await;
    let mut connectors = Vec::new();
    let app = spawn_app_with(db, |s| {
        let table: toml::Value = toml::from_str(&format!(
            r#"
id = "woo"
kind = "woocommerce"
webhook_secret = "{SECRET}"
consumer_key = "ck_hub"
consumer_secret = "cs_hub"
api_base = "{}/wp-json/wc/v3"
poll_rate_per_sec = 1000
"#,
            fake.base
        ))
        .expect("woocommerce table");
        s.connectors.push(table);
        s.poller.enabled = false;
        connectors = s.connectors.clone();
    })
    .await?;
    let registry = Registry::build(&connectors, &|_: &str| None).expect("registry");
    Some((app, fake, registry))
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn post(
    app: &TestApp,
    topic: Option<&str>,
    content_type: &str,
    body: &[u8],
    sig: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/woo", app.addr))
        .header("content-type", content_type)
        .body(body.to_vec());
    if let Some(t) = topic {
        req = req
            .header("x-wc-webhook-topic", t)
            .header("x-wc-webhook-delivery-id", format!("d-{}", body.len()));
    }
    if let Some(s) = sig {
        req = req.header("x-wc-webhook-signature", s);
    }
    req.send().await.expect("request")
}

fn order(status: &str, modified: &str) -> serde_json::Value {
    json!({"id": 727, "number": "727", "status": status, "currency": "USD", "total": "29.35",
        "date_created_gmt": "2026-11-01T16:28:02", "date_modified_gmt": modified, "customer_id": 26,
        "billing": {"first_name": "John", "last_name": "Doe", "email": "john.doe@example.com", "phone": ""},
        "line_items": [{"id": 315, "name": "Woo Single #1", "quantity": 2, "sku": "WS-1", "price": 3}],
        "refunds": []})
}

async fn orders(app: &TestApp) -> Vec<serde_json::Value> {
    let found = app
        .get_json("/api/v1/customers?email=john.doe@example.com")
        .await;
    let id = found["items"][0]["id"].as_str().expect("customer");
    let list = app
        .get_json(&format!("/api/v1/customers/{id}/orders"))
        .await;
    list["items"].as_array().cloned().unwrap_or_default()
}

async fn the_creation_ping_is_200_and_stores_nothing(db: Db) {
    let Some((app, _fake, _registry)) = app(db).await else {
        return;
    };
    let r = post(
        &app,
        None,
        "application/x-www-form-urlencoded",
        b"webhook_id=12",
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    assert_eq!(app.store.count("jobs").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    the_creation_ping_is_200_and_stores_nothing,
    super::the_creation_ping_is_200_and_stores_nothing
);

async fn a_signed_order_webhook_puts_the_order_on_the_timeline_in_exact_minor_units(db: Db) {
    let Some((app, _fake, _registry)) = app(db).await else {
        return;
    };
    let body = serde_json::to_vec(&order("processing", "2026-11-01T16:28:03")).unwrap();
    let r = post(
        &app,
        Some("order.created"),
        "application/json",
        &body,
        Some(&sign(&body)),
    )
    .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    let list = orders(&app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "727");
    assert_eq!(list[0]["connector_id"], "woo");
    assert_eq!(list[0]["body"]["total_minor"], 2935);
    assert_eq!(list[0]["body"]["currency"], "USD");
    assert_eq!(list[0]["body"]["status"], "processing");
    assert_eq!(list[0]["body"]["items"][0]["unit_price_minor"], 300);
    app.stop().await;
}
on_both_backends!(
    a_signed_order_webhook_puts_the_order_on_the_timeline_in_exact_minor_units,
    super::a_signed_order_webhook_puts_the_order_on_the_timeline_in_exact_minor_units
);

async fn a_poll_recovers_an_update_whose_webhook_was_missed(db: Db) {
    let Some((app, fake, registry)) = app(db).await else {
        return;
    };
    let body = serde_json::to_vec(&order("processing", "2026-11-01T16:28:03")).unwrap();
    let r = post(
        &app,
        Some("order.created"),
        "application/json",
        &body,
        Some(&sign(&body)),
    )
    .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    // The order.updated delivery failed (WooCommerce never retries); the poll has it.
    fake.on(
        "GET",
        PATH,
        [
            Answer::json(json!([order("completed", "2026-11-02T09:00:00")]))
                .header("x-wp-totalpages", "1")
                .header("x-wp-total", "1"),
        ],
    );
    let woo = registry.get("woo").expect("woo");
    switchboard::poller::poll_once(&app.store, woo)
        .await
        .expect("poll");
    app.drain().await;
    let list = orders(&app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["body"]["status"], "completed");
    let customer = app
        .get_json("/api/v1/customers?email=john.doe@example.com")
        .await;
    let id = customer["items"][0]["id"].as_str().unwrap().to_string();
    let tl = app
        .get_json(&format!("/api/v1/customers/{id}/timeline"))
        .await;
    let mut kinds: Vec<&str> = tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["order", "order_changed"]);
    assert_eq!(
        fake.received_on(PATH)[0].header("authorization"),
        Some("Basic Y2tfaHViOmNzX2h1Yg==")
    );
    app.stop().await;
}
on_both_backends!(
    a_poll_recovers_an_update_whose_webhook_was_missed,
    super::a_poll_recovers_an_update_whose_webhook_was_missed
);

async fn a_bad_signature_is_401_and_stores_nothing(db: Db) {
    let Some((app, _fake, _registry)) = app(db).await else {
        return;
    };
    let body = serde_json::to_vec(&order("processing", "2026-11-01T16:28:03")).unwrap();
    let wrong = sign(b"something else");
    for sig in [Some(wrong.as_str()), Some("%%%"), None] {
        let r = post(&app, Some("order.created"), "application/json", &body, sig).await;
        assert_eq!(r.status(), 401, "{sig:?}");
    }
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    a_bad_signature_is_401_and_stores_nothing,
    super::a_bad_signature_is_401_and_stores_nothing
);

#[test]
fn the_example_config_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/woocommerce.toml"
    ))
    .expect("example");
    let s = switchboard::config::from_str(&text, &[]).expect("example parses");
    let env = |k: &str| Some(format!("value-of-{k}"));
    let reg = Registry::build(&s.connectors, &env).expect("example builds");
    assert!(reg.get("woo").is_some());
}

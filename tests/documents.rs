//! Business documents are entities: one order per id, updated in place by newer versions with
//! a compact `order_changed` entry each; older or identical versions change nothing; the
//! customer's orders are listed across systems, alias merges included.

mod common;

use common::{spawn_app, Db};
use serde_json::json;

fn order(event: &str, status: &str, total: &str, updated_at: &str) -> serde_json::Value {
    json!({"id": event, "type": "order", "email": "ada@example.com", "name": "Ada",
           "order": {"id": "1001", "total": total, "currency": "EUR", "status": status,
                     "updated_at": updated_at}})
}

async fn customer_of(app: &common::TestApp, email: &str) -> String {
    let found = app
        .get_json(&format!("/api/v1/customers?email={email}"))
        .await;
    found["items"][0]["id"]
        .as_str()
        .expect("customer")
        .to_string()
}

async fn kinds(app: &common::TestApp, customer: &str) -> Vec<String> {
    let tl = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

async fn an_order_updated_twice_is_one_order_with_its_final_state_and_two_changes(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for (ev, status, total, at) in [
        ("o-1", "pending", "59.90", "2026-11-01T10:00:00Z"),
        ("o-2", "paid", "59.90", "2026-11-01T11:00:00Z"),
        ("o-3", "shipped", "64.90", "2026-11-01T12:00:00Z"),
    ] {
        assert_eq!(app.send(order(ev, status, total, at)).await.status(), 200);
        // One at a time, as webhooks and polls arrive over time.
        app.drain().await;
    }
    let customer = customer_of(&app, "ada@example.com").await;
    let orders = app
        .get_json(&format!("/api/v1/customers/{customer}/orders"))
        .await;
    let items = orders["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{orders}");
    assert_eq!(items[0]["id"], "1001");
    assert_eq!(items[0]["connector_id"], "api");
    assert_eq!(items[0]["body"]["status"], "shipped");
    assert_eq!(items[0]["body"]["total_minor"], 6490);
    assert!(orders["next_cursor"].is_null());

    let mut k = kinds(&app, &customer).await;
    k.sort();
    assert_eq!(k, ["order", "order_changed", "order_changed"]);
    let tl = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    let entries = tl["items"].as_array().unwrap();
    let order_entry = entries.iter().find(|e| e["kind"] == "order").unwrap();
    assert_eq!(
        order_entry["body"]["status"], "shipped",
        "the order entry shows its current state"
    );
    // A change is dated by the provider's modification time (its version).
    let changes: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["kind"] == "order_changed")
        .map(|e| &e["body"]["changes"])
        .collect();
    assert_eq!(
        changes,
        [
            &json!({"status": ["paid", "shipped"], "total_minor": [5990, 6490]}),
            &json!({"status": ["pending", "paid"]}),
        ]
    );
    app.stop().await;
}
on_both_backends!(
    an_order_updated_twice_is_one_order_with_its_final_state_and_two_changes,
    super::an_order_updated_twice_is_one_order_with_its_final_state_and_two_changes
);

async fn an_older_or_identical_version_changes_nothing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(order("o-2", "paid", "59.90", "2026-11-01T11:00:00Z"))
        .await;
    app.drain().await;
    // The same version again under another event id (it came by poll as well as webhook) and
    // an older version arriving late, in one batch and in separate batches.
    app.send(order("poll-2", "paid", "59.90", "2026-11-01T11:00:00Z"))
        .await;
    app.send(order("o-1", "pending", "59.90", "2026-11-01T10:00:00Z"))
        .await;
    app.drain().await;
    let customer = customer_of(&app, "ada@example.com").await;
    assert_eq!(kinds(&app, &customer).await, ["order"]);
    let orders = app
        .get_json(&format!("/api/v1/customers/{customer}/orders"))
        .await;
    assert_eq!(orders["items"][0]["body"]["status"], "paid");

    // Replaying every raw event ends the same.
    let before = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    app.store.enqueue_replay("api", 0).await.unwrap();
    app.drain().await;
    let after = app
        .get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await;
    assert_eq!(before, after);
    app.stop().await;
}
on_both_backends!(
    an_older_or_identical_version_changes_nothing,
    super::an_older_or_identical_version_changes_nothing
);

async fn versions_in_one_batch_end_on_the_latest_whatever_their_arrival_order(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for (ev, status, at) in [
        ("o-3", "shipped", "2026-11-01T12:00:00Z"),
        ("o-1", "pending", "2026-11-01T10:00:00Z"),
        ("o-2", "paid", "2026-11-01T11:00:00Z"),
    ] {
        app.send(order(ev, status, "10", at)).await;
    }
    app.drain().await;
    let customer = customer_of(&app, "ada@example.com").await;
    let orders = app
        .get_json(&format!("/api/v1/customers/{customer}/orders"))
        .await;
    assert_eq!(orders["items"][0]["body"]["status"], "shipped");
    assert_eq!(orders["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}
on_both_backends!(
    versions_in_one_batch_end_on_the_latest_whatever_their_arrival_order,
    super::versions_in_one_batch_end_on_the_latest_whatever_their_arrival_order
);

async fn orders_list_pages_newest_first_and_follows_merged_customers(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // Three orders by email, two by phone; then one event carries both: the customers merge.
    for i in 0..3 {
        app.send(json!({"id": format!("a{i}"), "email": "ada@example.com",
                        "order": {"id": format!("A{i}"), "total": "1", "currency": "EUR",
                                  "updated_at": format!("2026-11-0{}T10:00:00Z", i + 1)}}))
            .await;
    }
    for i in 0..2 {
        app.send(json!({"id": format!("b{i}"), "phone": "+14155552671",
                        "order": {"id": format!("B{i}"), "total": "2", "currency": "EUR",
                                  "updated_at": format!("2026-11-0{}T10:00:00Z", i + 5)}}))
            .await;
    }
    app.drain().await;
    app.send(
        json!({"id": "link", "email": "ada@example.com", "phone": "+14155552671",
                    "thread": "t", "text": "hi"}),
    )
    .await;
    app.drain().await;
    let customer = customer_of(&app, "ada@example.com").await;
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for _ in 0..5 {
        let page = app
            .get_json(&format!(
                "/api/v1/customers/{customer}/orders?limit=2{cursor}"
            ))
            .await;
        for o in page["items"].as_array().unwrap() {
            ids.push(o["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    // No document carries its own creation time here: first seen, newest first.
    ids.sort();
    assert_eq!(ids, ["A0", "A1", "A2", "B0", "B1"]);
    let r = app
        .get(&format!(
            "/api/v1/customers/{customer}/orders?cursor=nonsense"
        ))
        .await;
    common::assert_problem(r, 400, "invalid_cursor").await;
    let r = app.get("/api/v1/customers/nobody/orders").await;
    common::assert_problem(r, 404, "not_found").await;
    let payments = app
        .get_json(&format!("/api/v1/customers/{customer}/payments"))
        .await;
    assert_eq!(payments["items"].as_array().unwrap().len(), 0);
    app.stop().await;
}
on_both_backends!(
    orders_list_pages_newest_first_and_follows_merged_customers,
    super::orders_list_pages_newest_first_and_follows_merged_customers
);

//! ERPNext: the webhook's base64 HMAC-SHA256 over the raw body is checked in constant time
//! (missing or wrong → refused, nothing parsed); fixtures (documented doctypes) normalise to
//! profiles, orders, invoices and payments; the poller walks doctypes by `(modified, name)`
//! and gives a version the same event id the webhook gives it.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::{json, Value};
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    Connector, ConnectorError, EventBody, IdentityClaim, InboundRequest, Ingress, NormalizedEvent,
    StoredEvent, VerifyError,
};
use switchboard_erp::erpnext::{self, ErpNext};

const SECRET: &str = "frappe-webhook-secret";

fn no_env(_: &str) -> Option<String> {
    None
}

fn connector(extra: &str, base: &str) -> ErpNext {
    let t: toml::Value = toml::from_str(&format!(
        "id = \"erp\"\nkind = \"erpnext\"\napi_base = \"{base}\"\napi_key = \"k1\"\napi_secret = \"s1\"\n{extra}"
    ))
    .unwrap();
    erpnext::build("erp", "connectors[1]", t, &no_env).expect("valid config")
}

fn with_webhook(base: &str) -> ErpNext {
    connector(&format!("webhook_secret = \"{SECRET}\""), base)
}

fn fx(name: &str) -> Vec<u8> {
    fixture(env!("CARGO_MANIFEST_DIR"), "erpnext", name)
}

fn sign(body: &[u8]) -> String {
    HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None).sign(SECRET.as_bytes(), &[body])
}

/// Runs verify then parse, as the hub's `/webhooks/{id}` does.
fn deliver(
    c: &ErpNext,
    method: Method,
    body: &[u8],
    sig: Option<&str>,
) -> Result<Ingress, VerifyError> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(s) = sig {
        headers.insert(
            "x-frappe-webhook-signature",
            HeaderValue::from_str(s).unwrap(),
        );
    }
    let body = Bytes::copy_from_slice(body);
    let uri: Uri = "/webhooks/erp".parse().unwrap();
    let req = InboundRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
        now: 1_767_600_000,
    };
    let w = c.webhook().expect("webhook enabled");
    let verified = w.verify(&req)?;
    Ok(w.parse(verified).expect("parses"))
}

fn stored(kind: &str, payload: &[u8]) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "erp".into(),
        provider_event_id: "x".into(),
        kind: kind.into(),
        occurred_at: None,
        received_at: 1_700_000_000_000,
        headers: Vec::new(),
        payload: Bytes::copy_from_slice(payload),
    }
}

fn normalize(kind: &str, name: &str) -> NormalizedEvent {
    let c = connector("", "https://erp.example.com");
    let mut out = c.normalizer().normalize(&stored(kind, &fx(name))).unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

#[test]
fn a_correctly_signed_document_is_one_event_keyed_by_its_version_with_exact_bytes() {
    let c = with_webhook("https://erp.example.com");
    let body = fx("customer.json");
    let Ingress::Events(events) = deliver(&c, Method::POST, &body, Some(&sign(&body))).unwrap()
    else {
        panic!("not events")
    };
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].provider_event_id,
        "Customer:CUST-00001:2026-01-05 10:00:00.123456"
    );
    assert_eq!(events[0].kind, "Customer");
    assert_eq!(events[0].payload.as_ref(), body.as_slice());
    assert_eq!(events[0].occurred_at, Some(1_767_607_200_123));
}

#[test]
fn a_missing_wrong_or_malformed_signature_is_refused() {
    let c = with_webhook("https://erp.example.com");
    let body = fx("customer.json");
    assert_eq!(
        deliver(&c, Method::POST, &body, None).unwrap_err(),
        VerifyError::Missing("X-Frappe-Webhook-Signature")
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        deliver(&c, Method::POST, &tampered, Some(&sign(&body))).unwrap_err(),
        VerifyError::Mismatch
    );
    let other = HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None).sign(b"other", &[&body]);
    assert_eq!(
        deliver(&c, Method::POST, &body, Some(&other)).unwrap_err(),
        VerifyError::Mismatch
    );
    assert_eq!(
        deliver(&c, Method::POST, &body, Some("%%%not base64")).unwrap_err(),
        VerifyError::Malformed("signature")
    );
    assert_eq!(
        deliver(&c, Method::GET, &body, Some(&sign(&body))).unwrap_err(),
        VerifyError::MethodNotAllowed
    );
}

#[test]
fn a_signed_body_without_doctype_name_or_modified_is_a_bad_request() {
    let c = with_webhook("https://erp.example.com");
    let body = br#"{"doctype":"Customer","name":"CUST-1"}"#;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-frappe-webhook-signature",
        HeaderValue::from_str(&sign(body)).unwrap(),
    );
    let b = Bytes::from_static(body);
    let uri: Uri = "/webhooks/erp".parse().unwrap();
    let req = InboundRequest {
        method: &Method::POST,
        uri: &uri,
        headers: &headers,
        body: &b,
        now: 0,
    };
    let w = c.webhook().unwrap();
    let v = w.verify(&req).expect("signature is right");
    assert_eq!(
        w.parse(v).unwrap_err(),
        switchboard_core::IngressError::MissingField("modified".into())
    );
}

#[test]
fn without_a_webhook_secret_there_is_no_webhook_endpoint() {
    assert!(connector("", "https://erp.example.com").webhook().is_none());
    assert!(with_webhook("https://erp.example.com").webhook().is_some());
}

#[test]
fn config_errors_name_the_exact_key() {
    let err = |extra: &str| {
        let t: toml::Value = toml::from_str(&format!(
            "id='e'\nkind='erpnext'\napi_base='https://x'\napi_key='k'\n{extra}"
        ))
        .unwrap();
        erpnext::build("e", "connectors[1]", t, &no_env)
            .err()
            .expect("refused")
            .to_string()
    };
    assert_eq!(
        err(""),
        "connectors[1].api_secret: missing (set `api_secret` or `api_secret_env`)"
    );
    assert!(err("api_secret='s'\ndoctypes=['Customer','Item']")
        .starts_with("connectors[1].doctypes[1]: `Item` is not one of"));
    assert!(err("api_secret='s'\nwebhook_secret_env='NOPE'")
        .starts_with("connectors[1].webhook_secret_env: environment variable NOPE"));
    assert!(err("api_secret='s'\nwebhook_secret=''").starts_with("connectors[1].webhook_secret"));
}

#[test]
fn a_customer_is_a_profile_claiming_email_mobile_name_and_its_name() {
    let ev = normalize("Customer", "customer.json");
    assert_eq!(
        ev.claims,
        vec![
            IdentityClaim::external_id("erp", "CUST-00001"),
            IdentityClaim::email("grace@example.org"),
            IdentityClaim::phone("+14155550100"),
            IdentityClaim::name("Grace Hopper"),
        ]
    );
    let EventBody::Profile(p) = ev.body else {
        panic!("not a profile")
    };
    assert_eq!(p.external_id, "CUST-00001");
    assert_eq!(p.updated_at, Some(1_767_607_200_123));
}

#[test]
fn a_sales_order_has_exact_totals_and_its_items() {
    let ev = normalize("Sales Order", "sales_order.json");
    let EventBody::Order(o) = &ev.body else {
        panic!("not an order")
    };
    assert_eq!(o.order_id, "SAL-ORD-2026-00001");
    assert_eq!(o.status.as_deref(), Some("To Deliver and Bill"));
    assert_eq!(o.currency.as_deref(), Some("USD"));
    assert_eq!(o.total_minor, Some(5990));
    assert_eq!(o.items.len(), 2);
    assert_eq!(o.items[0].sku.as_deref(), Some("MUG-01"));
    assert_eq!(o.items[0].name, "Compiler Mug");
    assert_eq!(o.items[0].quantity, 2);
    assert_eq!(o.items[0].unit_price_minor, Some(1995));
    assert!(ev
        .claims
        .contains(&IdentityClaim::external_id("erp", "CUST-00001")));
    assert!(ev
        .claims
        .contains(&IdentityClaim::email("grace@example.org")));
}

#[test]
fn a_sales_invoice_has_its_outstanding_amount_due_date_and_order() {
    let ev = normalize("Sales Invoice", "sales_invoice.json");
    let EventBody::Invoice(i) = ev.body else {
        panic!("not an invoice")
    };
    assert_eq!(i.status.as_deref(), Some("Unpaid"));
    assert_eq!(
        (i.total_minor, i.amount_due_minor),
        (Some(5990), Some(5990))
    );
    assert_eq!(i.due_date.as_deref(), Some("2026-02-05"));
    assert_eq!(i.order_id.as_deref(), Some("SAL-ORD-2026-00001"));
}

#[test]
fn a_payment_entry_is_a_payment_of_the_invoice_it_references() {
    let ev = normalize("Payment Entry", "payment_entry.json");
    let EventBody::Payment(p) = &ev.body else {
        panic!("not a payment")
    };
    assert_eq!(p.kind, "payment_entry");
    assert_eq!(p.amount_minor, Some(5990));
    assert_eq!(p.currency.as_deref(), Some("USD"));
    assert_eq!(p.invoice_id.as_deref(), Some("ACC-SINV-2026-00001"));
    assert!(ev
        .claims
        .contains(&IdentityClaim::external_id("erp", "CUST-00001")));
}

#[test]
fn an_unmapped_doctype_or_a_broken_document_is_unsupported() {
    let c = connector("", "https://erp.example.com");
    for (kind, payload) in [
        (
            "Item",
            &br#"{"name":"MUG-01","modified":"2026-01-01 00:00:00"}"#[..],
        ),
        ("Customer", b"[1,2]"),
        ("Sales Order", b"\xff"),
    ] {
        let out = c.normalizer().normalize(&stored(kind, payload)).unwrap();
        assert!(
            matches!(out[0].body, EventBody::Unsupported { .. }),
            "{kind}"
        );
    }
}

fn list_path(doctype: &str) -> String {
    format!("/api/resource/{}", doctype.replace(' ', "%20"))
}

#[tokio::test]
async fn a_polled_version_has_the_webhooks_event_id_and_whole_documents_are_fetched() {
    let fake = FakeProvider::start().await;
    let customer: Value = serde_json::from_slice(&fx("customer.json")).unwrap();
    let order: Value = serde_json::from_slice(&fx("sales_order.json")).unwrap();
    // List rows carry the parent's fields only, without `doctype` or child tables.
    let mut order_row = order.clone();
    order_row.as_object_mut().unwrap().remove("items");
    order_row.as_object_mut().unwrap().remove("doctype");
    fake.on(
        "GET",
        &list_path("Customer"),
        [
            Answer::json(json!({"data": [customer]})),
            Answer::json(json!({"data": []})),
        ],
    );
    fake.on(
        "GET",
        &list_path("Sales Order"),
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
    let c = connector("doctypes = ['Customer', 'Sales Order']", &fake.base);
    let p = c.poller().unwrap();
    let p1 = p.poll(None).await.unwrap();
    assert!(p1.more);
    let webhook_id = {
        let w = with_webhook("https://erp.example.com");
        let body = fx("customer.json");
        match deliver(&w, Method::POST, &body, Some(&sign(&body))).unwrap() {
            Ingress::Events(e) => e[0].provider_event_id.clone(),
            Ingress::Reply(_) => panic!("reply"),
        }
    };
    assert_eq!(
        p1.events[0].provider_event_id, webhook_id,
        "same version, same id"
    );

    let p2 = p.poll(p1.next_cursor.clone()).await.unwrap();
    assert!(!p2.more);
    assert_eq!(
        p2.events[0].provider_event_id,
        "Sales Order:SAL-ORD-2026-00001:2026-01-05 11:30:00.000000"
    );
    let whole: Value = serde_json::from_slice(&p2.events[0].payload).unwrap();
    assert_eq!(
        whole["items"].as_array().map(Vec::len),
        Some(2),
        "the whole document"
    );

    let list = fake.received_on(&list_path("Customer"));
    let r = &list[0];
    assert_eq!(r.header("authorization"), Some("token k1:s1"));
    assert_eq!(r.query_param("fields").as_deref(), Some(r#"["*"]"#));
    assert_eq!(
        r.query_param("order_by").as_deref(),
        Some("modified asc, name asc")
    );
    assert_eq!(r.query_param("limit_page_length").as_deref(), Some("100"));
    assert_eq!(r.query_param("filters"), None, "first poll: everything");

    // The next round asks after the last customer, ties broken by name.
    let p3 = p.poll(p2.next_cursor.clone()).await.unwrap();
    assert!(p3.events.is_empty() && !p3.more);
    let list = fake.received_on(&list_path("Customer"));
    let r = &list[1];
    let filters: Value = serde_json::from_str(&r.query_param("filters").unwrap()).unwrap();
    assert_eq!(
        filters,
        json!([["modified", ">=", "2026-01-05 10:00:00.123456"]])
    );
    let or: Value = serde_json::from_str(&r.query_param("or_filters").unwrap()).unwrap();
    assert_eq!(
        or,
        json!([
            ["modified", ">", "2026-01-05 10:00:00.123456"],
            ["name", ">", "CUST-00001"]
        ])
    );
}

#[tokio::test]
async fn poll_errors_map_to_retry_classes() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        &list_path("Customer"),
        [
            Answer::status_json(429, json!({})).header("retry-after", "3"),
            Answer::status_json(
                403,
                json!({"exc_type": "PermissionError", "exc": "Traceback …"}),
            ),
        ],
    );
    let c = connector("", &fake.base);
    let p = c.poller().unwrap();
    assert_eq!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    let err = p.poll(None).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Unauthorized(r) if r.contains("PermissionError") && !r.contains("Traceback")),
        "{err:?}"
    );
}

#[test]
fn the_event_id_writes_modified_one_way() {
    assert_eq!(
        erpnext::event_id("Customer", "C1", "2026-01-05 10:00:00"),
        erpnext::event_id("Customer", "C1", "2026-01-05 10:00:00.000000")
    );
}

//! Shopify at crate level: signature (a derived vector), documented payloads normalised to
//! exact minor units, REST paging by the `Link` header, rate limits, and a backfill walk that
//! survives a failure mid-way — all against fixtures and a fake Shopify on 127.0.0.1.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use switchboard_commerce::shopify::{self, poll::PollCursor};
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::{
    ClaimKind, Connector, ConnectorError, EventBody, IdentityClaim, InboundRequest, Ingress,
    RawEvent, StoredEvent, VerifyError,
};

const SECRET: &str = "shpss_derived_test_secret";
/// base64(HMAC-SHA256(SECRET, fixtures/shopify/orders_create.json)), computed with Python's
/// hmac/hashlib (providers.md TEST VECTORS §D: Shopify's webhook vector is derived).
const ORDER_SIG: &str = "UhwTn2E+uiVwf2Kf0TBouVmEQZAZIgS7NbNt6JAS2Io=";
/// The same secret over `{"id":1}`.
const SMALL_SIG: &str = "R+bK0LCz8eXK5H0kdLwShCpmHdItAeY50L5eDGbQKW0=";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/shopify/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn connector(api_base: &str) -> shopify::Shopify {
    let t: toml::Value = toml::from_str(&format!(
        r#"id = "shop"
kind = "shopify"
webhook_secret = "{SECRET}"
access_token = "shpat_test"
api_base = "{api_base}"
"#
    ))
    .unwrap();
    match shopify::build("shop", "connectors[0]", t, &|_: &str| None) {
        Ok(c) => c,
        Err(e) => panic!("config: {e}"),
    }
}

fn config_error(extra: &str) -> String {
    let t: toml::Value =
        toml::from_str(&format!("id = \"shop\"\nkind = \"shopify\"\n{extra}")).unwrap();
    match shopify::build("shop", "connectors[0]", t, &|_: &str| None) {
        Ok(_) => panic!("config accepted: {extra}"),
        Err(e) => e.to_string(),
    }
}

fn request<'a>(
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a Bytes,
) -> InboundRequest<'a> {
    InboundRequest {
        method,
        uri,
        headers,
        body,
        now: 1_800_000_000,
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn stored(e: RawEvent) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "shop".into(),
        provider_event_id: e.provider_event_id,
        kind: e.kind,
        occurred_at: e.occurred_at,
        received_at: 1_800_000_000_000,
        headers: e.headers,
        payload: e.payload,
    }
}

fn raw(kind: &str, body: Vec<u8>) -> StoredEvent {
    stored(RawEvent {
        provider_event_id: "x".into(),
        kind: kind.into(),
        occurred_at: None,
        payload: Bytes::from(body),
        headers: vec![],
    })
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

#[test]
fn the_derived_signature_vector_verifies_under_both_header_names_and_tampering_fails() {
    let c = connector("https://shop.example/admin/api/2025-01");
    let w = c.webhook().unwrap();
    let (post, uri) = (Method::POST, Uri::from_static("/webhooks/shop"));
    let body = Bytes::from(fixture("orders_create.json"));
    for name in ["x-shopify-hmac-sha256", "shopify-hmac-sha256"] {
        let h = headers(&[(name, ORDER_SIG)]);
        assert!(w.verify(&request(&post, &uri, &h, &body)).is_ok(), "{name}");
    }
    let small = Bytes::from_static(br#"{"id":1}"#);
    let h = headers(&[("x-shopify-hmac-sha256", SMALL_SIG)]);
    assert!(w.verify(&request(&post, &uri, &h, &small)).is_ok());

    let tampered = Bytes::from_static(br#"{"id":2}"#);
    assert_eq!(
        w.verify(&request(&post, &uri, &h, &tampered)).err(),
        Some(VerifyError::Mismatch)
    );
    let none = HeaderMap::new();
    assert!(matches!(
        w.verify(&request(&post, &uri, &none, &small)).err(),
        Some(VerifyError::Missing(_))
    ));
    let junk = headers(&[("x-shopify-hmac-sha256", "not base64!!")]);
    assert!(w.verify(&request(&post, &uri, &junk, &small)).is_err());
    let get = Method::GET;
    assert_eq!(
        w.verify(&request(&get, &uri, &h, &small)).err(),
        Some(VerifyError::MethodNotAllowed)
    );
}

#[test]
fn a_webhook_is_keyed_by_order_version_and_keeps_the_delivery_headers() {
    let c = connector("https://shop.example/admin/api/2025-01");
    let w = c.webhook().unwrap();
    let (post, uri) = (Method::POST, Uri::from_static("/webhooks/shop"));
    let body = Bytes::from(fixture("orders_create.json"));
    let h = headers(&[
        ("shopify-hmac-sha256", ORDER_SIG),
        ("shopify-topic", "orders/create"),
        (
            "x-shopify-webhook-id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("x-shopify-event-id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
        ("x-shopify-triggered-at", "2026-11-01T15:00:05.123Z"),
        ("x-shopify-shop-domain", "shop.myshopify.com"),
    ]);
    let req = request(&post, &uri, &h, &body);
    let Ok(Ingress::Events(events)) = w.parse(w.verify(&req).unwrap()) else {
        panic!("events expected");
    };
    assert_eq!(events.len(), 1);
    let e = &events[0];
    let version = ms("2026-11-01T10:00:05-05:00");
    assert_eq!(
        e.provider_event_id,
        format!("order:820982911946154508:{version}")
    );
    assert_eq!(e.kind, "orders/create");
    assert_eq!(e.occurred_at, Some(version));
    assert_eq!(e.payload, body, "exact bytes");
    let get = |k: &str| {
        e.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-shopify-topic"), Some("orders/create"));
    assert_eq!(
        get("x-shopify-webhook-id"),
        Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    );
    assert_eq!(
        get("x-shopify-event-id"),
        Some("98880550-7158-44d4-b7cd-2c97c8a091b5")
    );
    assert_eq!(
        get("x-shopify-triggered-at"),
        Some("2026-11-01T15:00:05.123Z")
    );

    // An unknown topic is stored by its delivery id.
    let small = Bytes::from_static(br#"{"id":1}"#);
    let h = headers(&[
        ("x-shopify-hmac-sha256", SMALL_SIG),
        ("x-shopify-topic", "products/update"),
        ("x-shopify-webhook-id", "wh-1"),
    ]);
    let req = request(&post, &uri, &h, &small);
    let Ok(Ingress::Events(events)) = w.parse(w.verify(&req).unwrap()) else {
        panic!("events expected");
    };
    assert_eq!(events[0].provider_event_id, "webhook:wh-1");
}

#[test]
fn the_order_fixture_normalises_to_exact_minor_units_items_addresses_and_claims() {
    let c = connector("https://shop.example/admin/api/2025-01");
    let out = c
        .normalizer()
        .normalize(&raw("orders/create", fixture("orders_create.json")))
        .unwrap();
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.channel, "shopify");
    assert_eq!(e.thread_key, None);
    assert_eq!(e.occurred_at, ms("2026-11-01T10:00:05-05:00"));
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::external_id("shop", "115310627314723954"),
            IdentityClaim::email("jon@example.com"),
            IdentityClaim::phone("+15145550100"),
            IdentityClaim::name("John Smith"),
        ]
    );
    let EventBody::Order(o) = &e.body else {
        panic!("order expected: {:?}", e.body);
    };
    assert_eq!(o.order_id, "820982911946154508");
    assert_eq!(o.number.as_deref(), Some("#1001"));
    assert_eq!(o.status.as_deref(), Some("open"));
    assert_eq!(o.financial_status.as_deref(), Some("paid"));
    assert_eq!(o.fulfillment_status, None);
    assert_eq!(o.currency.as_deref(), Some("USD"));
    assert_eq!(o.total_minor, Some(40300));
    assert_eq!(o.refunded_minor, 0);
    assert_eq!(o.items.len(), 2);
    assert_eq!(o.items[0].sku.as_deref(), Some("IPOD2008PINK"));
    assert_eq!(o.items[0].name, "IPod Nano - 8GB");
    assert_eq!(o.items[0].unit_price_minor, Some(19900));
    assert_eq!(o.items[1].quantity, 2);
    assert_eq!(o.items[1].unit_price_minor, Some(9700));
    let b = o.billing_address.as_ref().unwrap();
    assert_eq!(b.name.as_deref(), Some("Bob Biller"));
    assert_eq!(b.line1.as_deref(), Some("123 Billing Street"));
    assert_eq!(b.region.as_deref(), Some("KY"));
    assert_eq!(b.postal_code.as_deref(), Some("K2P0B0"));
    assert_eq!(b.country.as_deref(), Some("US"));
    assert_eq!(
        o.shipping_address.as_ref().unwrap().city.as_deref(),
        Some("Shippington")
    );
    assert_eq!(o.created_at, Some(ms("2026-11-01T10:00:00-05:00")));
    assert_eq!(o.updated_at, Some(ms("2026-11-01T10:00:05-05:00")));
    assert!(
        e.claims.iter().all(|c| c.kind != ClaimKind::PlatformId),
        "addresses are attributes, never claims"
    );
}

#[test]
fn a_cancelled_order_has_status_cancelled_and_only_successful_refunds_count() {
    let c = connector("https://shop.example/admin/api/2025-01");
    let out = c
        .normalizer()
        .normalize(&raw("orders/cancelled", fixture("orders_cancelled.json")))
        .unwrap();
    let EventBody::Order(o) = &out[0].body else {
        panic!("order expected");
    };
    assert_eq!(o.status.as_deref(), Some("cancelled"));
    assert_eq!(o.financial_status.as_deref(), Some("partially_refunded"));
    assert_eq!(
        o.refunded_minor, 4194,
        "the failed 5.00 transaction is not a refund"
    );
    assert_eq!(o.billing_address, None);
}

#[test]
fn a_refund_is_a_refund_payment_of_its_transactions_linked_to_its_order() {
    let c = connector("https://shop.example/admin/api/2025-01");
    let out = c
        .normalizer()
        .normalize(&raw("refunds/create", fixture("refunds_create.json")))
        .unwrap();
    let EventBody::Payment(p) = &out[0].body else {
        panic!("payment expected: {:?}", out[0].body);
    };
    assert_eq!(p.payment_id, "509562969");
    assert_eq!(p.kind, "refund");
    assert_eq!(p.amount_minor, Some(4200), "41.94 + 0.06");
    assert_eq!(p.currency.as_deref(), Some("USD"));
    assert_eq!(p.order_id.as_deref(), Some("820982911946154508"));
    assert_eq!(p.reason.as_deref(), Some("it broke during shipping"));
    assert_eq!(out[0].occurred_at, ms("2026-11-02T09:29:00-05:00"));
}

#[test]
fn a_customer_is_a_profile_with_its_claims() {
    let c = connector("https://shop.example/admin/api/2025-01");
    let out = c
        .normalizer()
        .normalize(&raw("customers/create", fixture("customers_create.json")))
        .unwrap();
    let EventBody::Profile(p) = &out[0].body else {
        panic!("profile expected");
    };
    assert_eq!(p.external_id, "115310627314723954");
    assert_eq!(p.email.as_deref(), Some("jon@example.com"));
    assert_eq!(p.name.as_deref(), Some("John Smith"));
    assert_eq!(
        p.address.as_ref().unwrap().city.as_deref(),
        Some("Louisville")
    );
    assert_eq!(p.updated_at, Some(ms("2026-10-30T08:00:01-04:00")));
    assert_eq!(
        out[0].claims,
        vec![
            IdentityClaim::external_id("shop", "115310627314723954"),
            IdentityClaim::email("jon@example.com"),
            IdentityClaim::phone("+16135551111"),
            IdentityClaim::name("John Smith"),
        ]
    );
}

#[test]
fn unknown_topics_and_unreadable_bodies_are_unsupported_never_errors() {
    let c = connector("https://shop.example/admin/api/2025-01");
    for (kind, body) in [
        ("products/update", br#"{"id":1}"#.to_vec()),
        ("orders/create", b"not json".to_vec()),
        (
            "orders/create",
            br#"{"id":1,"currency":"USD","total_price":"1.234"}"#.to_vec(),
        ),
        ("orders/updated", br#"[]"#.to_vec()),
    ] {
        let out = c.normalizer().normalize(&raw(kind, body)).unwrap();
        assert_eq!(out.len(), 1);
        assert!(
            matches!(&out[0].body, EventBody::Unsupported { reason } if reason.starts_with(&format!("shopify {kind}"))),
            "{kind}: {:?}",
            out[0].body
        );
    }
}

#[test]
fn config_names_the_key_that_is_missing_or_wrong() {
    assert_eq!(
        config_error("webhook_secret = \"s\"\naccess_token = \"t\""),
        "connectors[0].api_base: missing (the shop's own API URL; there is no default)"
    );
    assert!(
        config_error("access_token = \"t\"\napi_base = \"https://x\"")
            .starts_with("connectors[0].webhook_secret: missing")
    );
    assert!(
        config_error("webhook_secret = \"\"\naccess_token = \"t\"\napi_base = \"https://x\"")
            .starts_with("connectors[0].webhook_secret: must not be empty")
    );
    assert!(
        config_error("webhook_secret = \"s\"\naccess_token = \"t\"\napi_base = \"ftp://x\"")
            .starts_with("connectors[0].api_base:")
    );
    assert!(config_error(
        "webhook_secret = \"s\"\naccess_token = \"t\"\napi_base = \"https://x\"\npoll_interval_secs = 0"
    )
    .starts_with("connectors[0].poll_interval_secs:"));
    assert!(config_error(
        "webhook_secret = \"s\"\naccess_token = \"t\"\napi_base = \"https://x\"\ntoken = \"x\""
    )
    .contains("unknown field `token`"));
}

const PATH: &str = "/admin/api/2025-01/orders.json";

/// A generated order `n` (version `updated_at` = 1793534400 + n seconds).
pub fn order_json(n: u64) -> serde_json::Value {
    let at = chrono::DateTime::from_timestamp(1_793_534_400 + n as i64, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({"id": 1000 + n, "name": format!("#{}", 1000 + n), "email": format!("c{n}@example.com"),
        "currency": "EUR", "total_price": "10.50", "financial_status": "paid",
        "created_at": at, "updated_at": at, "cancelled_at": null, "closed_at": null, "line_items": []})
}

fn page(from: u64, to: u64, next: Option<&str>, base: &str) -> Answer {
    let a =
        Answer::json(serde_json::json!({"orders": (from..to).map(order_json).collect::<Vec<_>>()}))
            .header("x-shopify-shop-api-call-limit", "1/40");
    match next {
        Some(p) => a.header(
            "link",
            &format!("<{base}{PATH}?limit=250&page_info=prev>; rel=\"previous\", <{base}{PATH}?limit=250&page_info={p}>; rel=\"next\""),
        ),
        None => a,
    }
}

fn ids(p: &switchboard_core::PollPage) -> Vec<String> {
    p.events
        .iter()
        .map(|e| e.provider_event_id.clone())
        .collect()
}

#[tokio::test]
async fn polling_follows_the_link_header_and_sends_no_filter_with_a_page_info() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        PATH,
        [
            page(0, 3, Some("p2"), &fake.base),
            page(3, 5, None, &fake.base),
        ],
    );
    let c = connector(&format!("{}/admin/api/2025-01", fake.base));
    let p = c.poller().unwrap();
    let start = p.backfill_cursor(ms("2026-10-01T00:00:00Z")).unwrap();
    let first = p.poll(Some(start)).await.unwrap();
    assert!(first.more);
    assert_eq!(first.events.len(), 3);
    assert_eq!(first.events[0].kind, "orders/updated");
    let v0 = 1_793_534_400_000i64;
    assert_eq!(
        first.events[0].provider_event_id,
        format!("order:1000:{v0}")
    );
    let cur: PollCursor = serde_json::from_str(first.next_cursor.as_deref().unwrap()).unwrap();
    assert_eq!(cur.page_info.as_deref(), Some("p2"));
    let second = p.poll(first.next_cursor.clone()).await.unwrap();
    assert!(!second.more);
    assert_eq!(second.events.len(), 2);
    let next: PollCursor = serde_json::from_str(second.next_cursor.as_deref().unwrap()).unwrap();
    assert_eq!(next.page_info, None);
    let newest = chrono::DateTime::from_timestamp(1_793_534_404, 0).unwrap();
    assert_eq!(
        next.updated_at_min,
        newest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "the newest order seen"
    );

    let got = fake.received_on(PATH);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].query_param("status").as_deref(), Some("any"));
    assert_eq!(
        got[0].query_param("updated_at_min").as_deref(),
        Some("2026-10-01T00:00:00Z")
    );
    assert_eq!(got[0].query_param("limit").as_deref(), Some("250"));
    assert_eq!(
        got[0].query_param("order").as_deref(),
        Some("updated_at asc")
    );
    assert_eq!(got[0].header("x-shopify-access-token"), Some("shpat_test"));
    assert_eq!(got[1].query_param("page_info").as_deref(), Some("p2"));
    assert_eq!(got[1].query_param("limit").as_deref(), Some("250"));
    for banned in ["status", "updated_at_min", "order"] {
        assert_eq!(
            got[1].query_param(banned),
            None,
            "{banned} sent with page_info"
        );
    }
}

#[tokio::test]
async fn a_polled_order_has_the_event_id_of_its_webhook() {
    let body = fixture("orders_create.json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        PATH,
        [Answer::json(serde_json::json!({"orders": [json]}))],
    );
    let c = connector(&format!("{}/admin/api/2025-01", fake.base));
    let polled = c.poller().unwrap().poll(None).await.unwrap();
    let w = c.webhook().unwrap();
    let (post, uri) = (Method::POST, Uri::from_static("/webhooks/shop"));
    let body = Bytes::from(body);
    let h = headers(&[
        ("x-shopify-hmac-sha256", ORDER_SIG),
        ("x-shopify-topic", "orders/create"),
    ]);
    let req = request(&post, &uri, &h, &body);
    let Ok(Ingress::Events(hooked)) = w.parse(w.verify(&req).unwrap()) else {
        panic!("events expected");
    };
    assert_eq!(ids(&polled), vec![hooked[0].provider_event_id.clone()]);
}

#[tokio::test]
async fn a_429_is_rate_limited_with_shopifys_retry_after_and_401_is_unauthorized() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        PATH,
        [
            Answer::status_json(429, serde_json::json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}))
                .header("retry-after", "2.0"),
            Answer::status_json(429, serde_json::json!({"errors": "throttled"})).header("retry-after", "3"),
            Answer::status_json(401, serde_json::json!({"errors": "[API] Invalid API key or access token"})),
        ],
    );
    let c = connector(&format!("{}/admin/api/2025-01", fake.base));
    let p = c.poller().unwrap();
    assert_eq!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    assert_eq!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    let err = p.poll(None).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Unauthorized(_)), "{err:?}");
    assert!(
        !format!("{err:?}").contains("shpat_test"),
        "the token never appears"
    );
}

#[tokio::test]
async fn a_nearly_full_call_bucket_holds_the_next_call_without_asking_shopify() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        PATH,
        [Answer::json(serde_json::json!({"orders": []}))
            .header("x-shopify-shop-api-call-limit", "39/40")],
    );
    let c = connector(&format!("{}/admin/api/2025-01", fake.base));
    let p = c.poller().unwrap();
    assert!(p.poll(None).await.is_ok(), "the page itself is used");
    match p.poll(None).await {
        Err(ConnectorError::RateLimited {
            retry_after: Some(d),
        }) => {
            assert!(
                d > Duration::from_secs(3) && d <= Duration::from_millis(4500),
                "{d:?}"
            )
        }
        other => panic!("expected a hold, got {other:?}"),
    }
    assert_eq!(fake.received_on(PATH).len(), 1, "the held call never left");
    assert_eq!(shopify::poll::call_limit_hold("20/40"), None);
    assert_eq!(shopify::poll::call_limit_hold("junk"), None);
    assert_eq!(shopify::poll::call_limit_hold("5/0"), None);
}

#[tokio::test]
async fn a_backfill_walk_that_fails_mid_way_resumes_at_its_page_and_sees_each_order_once() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        PATH,
        [
            page(0, 250, Some("p2"), &fake.base),
            Answer::status_json(503, serde_json::json!({"errors": "Service Unavailable"})),
            page(250, 500, Some("p3"), &fake.base),
            page(500, 600, None, &fake.base),
        ],
    );
    let c = connector(&format!("{}/admin/api/2025-01", fake.base));
    let p = c.poller().unwrap();
    let mut cursor = p.backfill_cursor(0).unwrap();
    let mut seen = Vec::new();
    let mut failures = 0;
    for _ in 0..10 {
        match p.poll(Some(cursor.clone())).await {
            Ok(page) => {
                seen.extend(ids(&page));
                cursor = page.next_cursor.unwrap();
                if !page.more {
                    break;
                }
            }
            // The stored cursor stays where it was: the same page is asked again.
            Err(ConnectorError::Transient(_)) => failures += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(failures, 1);
    assert_eq!(seen.len(), 600);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 600, "no order twice");
    let got = fake.received_on(PATH);
    assert_eq!(got[1].query_param("page_info").as_deref(), Some("p2"));
    assert_eq!(
        got[2].query_param("page_info").as_deref(),
        Some("p2"),
        "retried the same page"
    );
    assert_eq!(
        got[0].query_param("updated_at_min").as_deref(),
        Some("1970-01-01T00:00:00Z")
    );
}

#[test]
fn link_headers_yield_only_the_next_page_info() {
    use shopify::poll::next_page_info;
    assert_eq!(
        next_page_info(r#"<https://s.myshopify.com/admin/api/2025-01/orders.json?limit=250&page_info=abc>; rel="next""#).as_deref(),
        Some("abc")
    );
    assert_eq!(
        next_page_info(r#"<https://s/o.json?page_info=a>; rel="previous""#),
        None
    );
    assert_eq!(next_page_info("garbage"), None);
    assert_eq!(next_page_info(""), None);
}

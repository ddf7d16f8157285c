//! WooCommerce at crate level: the published signature vector (§A.5), the unsigned creation
//! ping, documented payloads normalised to exact minor units, and REST polling by page.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use switchboard_commerce::woocommerce::{self, poll::PollCursor, webhook};
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::{
    Connector, ConnectorError, EventBody, IdentityClaim, InboundRequest, Ingress, RawEvent,
    StoredEvent, VerifyError,
};

const SECRET: &str = "wc_derived_secret";
/// base64(HMAC-SHA256(SECRET, fixture)), computed with Python's hmac/hashlib.
const CREATED_SIG: &str = "dOXCHsgS/qYSXnJgBe2VPa9mT/RM33HRutwBfFNP0Jk=";
const DELETED_SIG: &str = "Zz6R5GBSImZZeofk3dacu6qx6Aog+Xo/BuJNvb08bW0=";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/woocommerce/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn connector(api_base: &str) -> woocommerce::WooCommerce {
    let t: toml::Value = toml::from_str(&format!(
        r#"id = "woo"
kind = "woocommerce"
webhook_secret = "{SECRET}"
consumer_key = "ck_test"
consumer_secret_env = "WOO_CS"
api_base = "{api_base}"
poll_interval_secs = 30
"#
    ))
    .unwrap();
    let env = |k: &str| (k == "WOO_CS").then(|| "cs_test".to_string());
    match woocommerce::build("woo", "connectors[1]", t, &env) {
        Ok(c) => c,
        Err(e) => panic!("config: {e}"),
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
        connector_id: "woo".into(),
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

fn gmt(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

#[test]
fn the_published_vector_with_an_empty_secret_verifies_at_the_signature_level() {
    // §A.5: secret "" and payload "secret". An empty secret is refused by config, so the
    // vector is checked on the scheme the webhook uses.
    let sig = "GBDo00G55h6IiV+6CxqivQPLbI//KzaOZm747971tPs=";
    assert_eq!(webhook::scheme().sign(b"", &[b"secret"]), sig);
    assert_eq!(webhook::scheme().verify(b"", &[b"secret"], sig), Ok(()));
    assert_eq!(
        webhook::scheme().verify(b"", &[b"secret!"], sig),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn a_signed_order_webhook_verifies_and_is_keyed_by_its_modified_version() {
    let c = connector("https://shop.example/wp-json/wc/v3");
    let w = c.webhook().unwrap();
    let (post, uri) = (Method::POST, Uri::from_static("/webhooks/woo"));
    let body = Bytes::from(fixture("order_created.json"));
    let h = headers(&[
        ("x-wc-webhook-signature", CREATED_SIG),
        ("x-wc-webhook-topic", "order.created"),
        ("x-wc-webhook-delivery-id", "5b1b2d4c"),
        ("x-wc-webhook-id", "12"),
    ]);
    let req = request(&post, &uri, &h, &body);
    let Ok(Ingress::Events(events)) = w.parse(w.verify(&req).unwrap()) else {
        panic!("events expected");
    };
    assert_eq!(events.len(), 1);
    let v = gmt("2026-11-01T16:28:03");
    assert_eq!(events[0].provider_event_id, format!("order:727:{v}"));
    assert_eq!(events[0].kind, "order.created");
    assert_eq!(events[0].occurred_at, Some(v));
    assert_eq!(events[0].payload, body);
    assert!(events[0]
        .headers
        .contains(&("x-wc-webhook-delivery-id".into(), "5b1b2d4c".into())));

    let tampered = Bytes::from(fixture("order_deleted.json"));
    assert_eq!(
        w.verify(&request(&post, &uri, &h, &tampered)).err(),
        Some(VerifyError::Mismatch)
    );
}

#[test]
fn the_creation_ping_is_answered_and_stores_nothing_while_other_unsigned_bodies_are_refused() {
    let c = connector("https://shop.example/wp-json/wc/v3");
    let w = c.webhook().unwrap();
    let (post, uri) = (Method::POST, Uri::from_static("/webhooks/woo"));
    let none = HeaderMap::new();
    let ping = Bytes::from_static(b"webhook_id=12");
    let req = request(&post, &uri, &none, &ping);
    assert_eq!(
        w.parse(w.verify(&req).unwrap()),
        Ok(Ingress::Events(vec![]))
    );
    for body in [
        &b"webhook_id=12&x=1"[..],
        b"webhook_id=",
        b"webhook_id=abc",
        b"{\"id\":727}",
        b"",
    ] {
        let b = Bytes::copy_from_slice(body);
        assert!(
            matches!(
                w.verify(&request(&post, &uri, &none, &b)).err(),
                Some(VerifyError::Missing(_))
            ),
            "{body:?}"
        );
    }
    let get = Method::GET;
    assert_eq!(
        w.verify(&request(&get, &uri, &none, &ping)).err(),
        Some(VerifyError::MethodNotAllowed)
    );
}

#[test]
fn the_order_fixture_normalises_to_exact_minor_units_with_claims_and_the_checkout_note() {
    let c = connector("https://shop.example/wp-json/wc/v3");
    let out = c
        .normalizer()
        .normalize(&raw("order.created", fixture("order_created.json")))
        .unwrap();
    assert_eq!(out.len(), 2, "the order and the customer's note");
    let e = &out[0];
    assert_eq!(e.channel, "woocommerce");
    assert_eq!(e.thread_key, None);
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::external_id("woo", "26"),
            IdentityClaim::email("john.doe@example.com"),
            IdentityClaim::phone("(555) 555-5555"),
            IdentityClaim::name("John Doe"),
        ]
    );
    let EventBody::Order(o) = &e.body else {
        panic!("order expected");
    };
    assert_eq!(o.order_id, "727");
    assert_eq!(o.number.as_deref(), Some("727"));
    assert_eq!(o.status.as_deref(), Some("processing"));
    assert_eq!(o.currency.as_deref(), Some("USD"));
    assert_eq!(o.total_minor, Some(2935));
    assert_eq!(o.refunded_minor, 0);
    assert_eq!(o.items.len(), 2);
    assert_eq!(o.items[0].unit_price_minor, Some(300));
    assert_eq!(o.items[0].quantity, 2);
    assert_eq!(o.items[1].sku.as_deref(), Some("SYI-BLK-M"));
    assert_eq!(o.items[1].unit_price_minor, Some(1200));
    let b = o.billing_address.as_ref().unwrap();
    assert_eq!(
        (
            b.line1.as_deref(),
            b.region.as_deref(),
            b.postal_code.as_deref(),
            b.country.as_deref()
        ),
        (Some("969 Market"), Some("CA"), Some("94103"), Some("US"))
    );
    assert_eq!(o.created_at, Some(gmt("2026-11-01T16:28:02")));
    assert_eq!(o.updated_at, Some(gmt("2026-11-01T16:28:03")));
    assert!(
        matches!(&out[1].body, EventBody::Note { text } if text == "Customer note on order 727: Please ring twice")
    );

    // An update of the same order carries no second note; refunds add up.
    let out = c
        .normalizer()
        .normalize(&raw(
            "order.updated",
            fixture("order_updated_refunded.json"),
        ))
        .unwrap();
    assert_eq!(out.len(), 1);
    let EventBody::Order(o) = &out[0].body else {
        panic!("order expected");
    };
    assert_eq!(o.status.as_deref(), Some("refunded"));
    assert_eq!(o.refunded_minor, 2935);
    assert_eq!(
        o.shipping_address, None,
        "an all-empty address is no address"
    );
}

#[test]
fn a_deleted_order_is_status_deleted_versioned_by_its_arrival() {
    let c = connector("https://shop.example/wp-json/wc/v3");
    let w = c.webhook().unwrap();
    let (post, uri) = (Method::POST, Uri::from_static("/webhooks/woo"));
    let body = Bytes::from(fixture("order_deleted.json"));
    let h = headers(&[
        ("x-wc-webhook-signature", DELETED_SIG),
        ("x-wc-webhook-topic", "order.deleted"),
        ("x-wc-webhook-delivery-id", "d-9"),
    ]);
    let req = request(&post, &uri, &h, &body);
    let Ok(Ingress::Events(events)) = w.parse(w.verify(&req).unwrap()) else {
        panic!("events expected");
    };
    assert_eq!(events[0].provider_event_id, "order:727:deleted:d-9");
    assert_eq!(events[0].occurred_at, Some(1_800_000_000_000));
    let out = c
        .normalizer()
        .normalize(&stored(events[0].clone()))
        .unwrap();
    let EventBody::Order(o) = &out[0].body else {
        panic!("order expected");
    };
    assert_eq!(o.order_id, "727");
    assert_eq!(o.status.as_deref(), Some("deleted"));
    assert_eq!(o.updated_at, Some(1_800_000_000_000));
}

#[test]
fn a_customer_is_a_profile_with_claims_and_unknown_topics_are_unsupported() {
    let c = connector("https://shop.example/wp-json/wc/v3");
    let out = c
        .normalizer()
        .normalize(&raw("customer.created", fixture("customer_created.json")))
        .unwrap();
    let EventBody::Profile(p) = &out[0].body else {
        panic!("profile expected");
    };
    assert_eq!(p.external_id, "25");
    assert_eq!(p.email.as_deref(), Some("john.doe@example.com"));
    assert_eq!(p.name.as_deref(), Some("John Doe"));
    assert_eq!(p.updated_at, Some(gmt("2026-10-20T13:30:00")));
    assert_eq!(out[0].claims[0], IdentityClaim::external_id("woo", "25"));

    for (kind, body) in [
        ("product.updated", br#"{"id":1}"#.to_vec()),
        ("order.updated", b"<html>".to_vec()),
        (
            "order.updated",
            br#"{"id":1,"currency":"JPY","total":"1.5"}"#.to_vec(),
        ),
    ] {
        let out = c.normalizer().normalize(&raw(kind, body)).unwrap();
        assert!(
            matches!(&out[0].body, EventBody::Unsupported { reason } if reason.starts_with(&format!("woocommerce {kind}"))),
            "{kind}: {:?}",
            out[0].body
        );
    }
}

#[test]
fn config_refuses_an_empty_secret_and_names_missing_keys() {
    let err = |extra: &str| {
        let t: toml::Value =
            toml::from_str(&format!("id = \"woo\"\nkind = \"woocommerce\"\n{extra}")).unwrap();
        match woocommerce::build("woo", "connectors[1]", t, &|_: &str| None) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => e.to_string(),
        }
    };
    let ok_keys =
        "consumer_key = \"ck\"\nconsumer_secret = \"cs\"\napi_base = \"https://x/wp-json/wc/v3\"";
    assert_eq!(
        err(&format!("webhook_secret = \"\"\n{ok_keys}")),
        "connectors[1].webhook_secret: must not be empty"
    );
    assert!(
        err("webhook_secret = \"s\"\nconsumer_key = \"ck\"\napi_base = \"https://x\"")
            .starts_with("connectors[1].consumer_secret: missing")
    );
    assert!(
        err("webhook_secret = \"s\"\nconsumer_key = \"ck\"\nconsumer_secret = \"cs\"")
            .starts_with("connectors[1].api_base: missing")
    );
}

const PATH: &str = "/wp-json/wc/v3/orders";

fn order(n: u64, modified: &str) -> serde_json::Value {
    serde_json::json!({"id": n, "number": n.to_string(), "status": "processing", "currency": "EUR",
        "total": "12.30", "date_created_gmt": modified, "date_modified_gmt": modified,
        "customer_id": 0, "billing": {"email": format!("c{n}@example.com")}, "line_items": []})
}

#[tokio::test]
async fn polling_walks_pages_until_x_wp_totalpages_with_basic_auth() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        PATH,
        [
            Answer::json(serde_json::json!([
                order(1, "2026-11-01T10:00:00"),
                order(2, "2026-11-01T10:00:01")
            ]))
            .header("x-wp-totalpages", "2")
            .header("x-wp-total", "3"),
            Answer::json(serde_json::json!([order(3, "2026-11-01T10:00:07")]))
                .header("x-wp-totalpages", "2")
                .header("x-wp-total", "3"),
        ],
    );
    let c = connector(&format!("{}/wp-json/wc/v3", fake.base));
    let p = c.poller().unwrap();
    assert_eq!(p.interval().as_secs(), 30);
    let start = p.backfill_cursor(gmt("2026-10-01T00:00:00")).unwrap();
    let first = p.poll(Some(start)).await.unwrap();
    assert!(first.more);
    assert_eq!(
        first.events[0].provider_event_id,
        format!("order:1:{}", gmt("2026-11-01T10:00:00"))
    );
    let second = p.poll(first.next_cursor).await.unwrap();
    assert!(!second.more);
    let next: PollCursor = serde_json::from_str(second.next_cursor.as_deref().unwrap()).unwrap();
    assert_eq!(next.page, 1);
    assert_eq!(
        next.modified_after, "2026-11-01T10:00:06Z",
        "a second before the newest: modified_after is strict"
    );
    let got = fake.received_on(PATH);
    assert_eq!(
        got[0].query_param("modified_after").as_deref(),
        Some("2026-10-01T00:00:00Z")
    );
    assert_eq!(got[0].query_param("page").as_deref(), Some("1"));
    assert_eq!(got[1].query_param("page").as_deref(), Some("2"));
    assert_eq!(
        got[1].query_param("modified_after").as_deref(),
        Some("2026-10-01T00:00:00Z")
    );
    for (k, v) in [
        ("per_page", "100"),
        ("orderby", "modified"),
        ("order", "asc"),
        ("dates_are_gmt", "true"),
    ] {
        assert_eq!(got[0].query_param(k).as_deref(), Some(v), "{k}");
    }
    // ck_test:cs_test
    assert_eq!(
        got[0].header("authorization"),
        Some("Basic Y2tfdGVzdDpjc190ZXN0")
    );
}

#[tokio::test]
async fn a_429_is_rate_limited_and_a_refused_key_is_unauthorized() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        PATH,
        [
            Answer::status_json(429, serde_json::json!({"code": "too_many"})).header("retry-after", "5"),
            Answer::status_json(401, serde_json::json!({"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources."})),
        ],
    );
    let c = connector(&format!("{}/wp-json/wc/v3", fake.base));
    let p = c.poller().unwrap();
    assert_eq!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(5))
        }
    );
    let err = p.poll(None).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Unauthorized(r) if r.contains("cannot list")),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains("cs_test"));
}

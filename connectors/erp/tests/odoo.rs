//! Odoo: config errors name the key; fixtures (documented `search_read` records) normalise to
//! profiles, orders and invoices; the poller walks models page by page through a restart; a
//! server without JSON-2 is read over JSON-RPC; errors map to the right kind.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    ClaimKind, Connector, ConnectorError, EventBody, IdentityClaim, NormalizedEvent, PollPage,
    StoredEvent,
};
use switchboard_erp::odoo::{self, Odoo};

const KEY: &str = "odoo-api-key-0123456789";

fn no_env(_: &str) -> Option<String> {
    None
}

fn table(extra: &str, base: &str) -> toml::Value {
    toml::from_str(&format!(
        "id = \"odoo-eu\"\nkind = \"odoo\"\napi_base = \"{base}\"\ndatabase = \"acme\"\nusername = \"api@acme.example\"\napi_key = \"{KEY}\"\n{extra}"
    ))
    .unwrap()
}

fn connector(extra: &str, base: &str) -> Odoo {
    odoo::build("odoo-eu", "connectors[0]", table(extra, base), &no_env).expect("valid config")
}

fn stored(kind: &str, payload: &[u8]) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "odoo-eu".into(),
        provider_event_id: "x".into(),
        kind: kind.into(),
        occurred_at: None,
        received_at: 1_700_000_000_000,
        headers: Vec::new(),
        payload: bytes::Bytes::copy_from_slice(payload),
    }
}

fn normalize_fixture(kind: &str, name: &str) -> NormalizedEvent {
    let c = connector("", "https://acme.odoo.com");
    let raw = stored(kind, &fixture(env!("CARGO_MANIFEST_DIR"), "odoo", name));
    let mut out = c.normalizer().normalize(&raw).expect("normalises");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

#[test]
fn config_errors_name_the_exact_key() {
    let err = |t: &str| {
        let v: toml::Value = toml::from_str(t).unwrap();
        odoo::build("o", "connectors[3]", v, &no_env)
            .err()
            .expect("refused")
            .to_string()
    };
    let base = "id='o'\nkind='odoo'\ndatabase='acme'\nusername='u'\napi_key='k'\n";
    assert!(
        err(base).starts_with("connectors[3].api_base: missing"),
        "{}",
        err(base)
    );
    assert_eq!(
        err(&format!("{base}api_base='ftp://x'")),
        "connectors[3].api_base: `ftp://x` is not an http(s) URL"
    );
    assert!(err(&format!(
        "{base}api_base='https://x'\nmodels=['res.partner','stock.picking']"
    ))
    .starts_with("connectors[3].models[1]: `stock.picking` is not one of"));
    assert!(err(&format!("{base}api_base='https://x'\napi='xmlrpc'"))
        .starts_with("connectors[3].api: unknown variant"));
    assert!(
        err(&format!("{base}api_base='https://x'\npoll_interval_secs=0"))
            .starts_with("connectors[3].poll_interval_secs")
    );
    assert!(err(&format!("{base}api_base='https://x'\napi_secret='x'"))
        .contains("unknown field `api_secret`"));
    let no_key = "id='o'\nkind='odoo'\napi_base='https://x'\ndatabase='acme'\nusername='u'\n";
    assert_eq!(
        err(no_key),
        "connectors[3].api_key: missing (set `api_key` or `api_key_env`)"
    );
    assert!(
        err(&format!("{no_key}api_key_env='ODOO_KEY'")).starts_with("connectors[3].api_key_env")
    );
    // The key from the environment is accepted, and the poller's interval defaults to 60 s.
    let env = |k: &str| (k == "ODOO_KEY").then(|| "from-env".to_string());
    let v: toml::Value = toml::from_str(&format!("{no_key}api_key_env='ODOO_KEY'")).unwrap();
    let c = odoo::build("o", "connectors[3]", v, &env).expect("key from env");
    assert_eq!(c.poller().unwrap().interval(), Duration::from_secs(60));
}

#[test]
fn a_partner_is_a_profile_claiming_its_email_phones_name_and_partner_id() {
    let ev = normalize_fixture("res.partner", "partner.json");
    assert_eq!(ev.thread_key, None);
    assert_eq!(
        ev.occurred_at, 1_767_607_200_000,
        "write_date 2026-01-05 10:00:00 UTC"
    );
    assert_eq!(
        ev.claims,
        vec![
            IdentityClaim::external_id("odoo-eu", "partner:42"),
            IdentityClaim::email("ada.lovelace@example.com"),
            IdentityClaim::phone("+447700900123"),
            IdentityClaim::phone("+442079460958"),
            IdentityClaim::name("Ada Lovelace"),
        ]
    );
    let EventBody::Profile(p) = ev.body else {
        panic!("not a profile: {:?}", ev.body)
    };
    assert_eq!(p.external_id, "partner:42");
    assert_eq!(p.email.as_deref(), Some("ada.lovelace@example.com"));
    assert_eq!(p.updated_at, Some(1_767_607_200_000));
    let a = p.address.expect("address");
    assert_eq!(a.city.as_deref(), Some("London"));
    assert_eq!(a.line2, None, "Odoo's `false` is no value");
}

#[test]
fn a_sale_order_total_is_exact_minor_units_of_its_currency() {
    let ev = normalize_fixture("sale.order", "sale_order.json");
    let EventBody::Order(o) = &ev.body else {
        panic!("not an order: {:?}", ev.body)
    };
    assert_eq!(o.order_id, "7");
    assert_eq!(o.number.as_deref(), Some("S00007"));
    assert_eq!(o.status.as_deref(), Some("sale"));
    assert_eq!(o.currency.as_deref(), Some("EUR"));
    assert_eq!(o.total_minor, Some(123_456));
    assert_eq!(
        ev.claims,
        vec![
            IdentityClaim::external_id("odoo-eu", "partner:42"),
            IdentityClaim::name("Ada Lovelace"),
        ]
    );
}

#[test]
fn an_invoice_posted_then_paid_is_one_invoice_whose_status_and_amount_due_change() {
    let posted = normalize_fixture("account.move", "invoice_posted.json");
    let paid = normalize_fixture("account.move", "invoice_paid.json");
    let (EventBody::Invoice(a), EventBody::Invoice(b)) = (&posted.body, &paid.body) else {
        panic!("not invoices")
    };
    assert_eq!(a.invoice_id, b.invoice_id, "one entity");
    assert_eq!(a.number.as_deref(), Some("INV/2026/00019"));
    assert_eq!(
        (a.status.as_deref(), b.status.as_deref()),
        (Some("not_paid"), Some("paid"))
    );
    assert_eq!(
        (a.total_minor, b.total_minor),
        (Some(123_456), Some(123_456))
    );
    assert_eq!(
        (a.amount_due_minor, b.amount_due_minor),
        (Some(123_456), Some(0))
    );
    assert_eq!(a.due_date.as_deref(), Some("2026-02-05"));
    assert!(b.updated_at > a.updated_at, "the paid version is newer");
}

#[test]
fn a_draft_credit_note_has_no_number_and_negative_amounts() {
    let ev = normalize_fixture("account.move", "credit_note_draft.json");
    let EventBody::Invoice(i) = ev.body else {
        panic!("not an invoice")
    };
    assert_eq!(i.number, None, "`/` is a draft without a number");
    assert_eq!(i.status.as_deref(), Some("draft"));
    assert_eq!(i.total_minor, Some(-10_000));
    assert_eq!(i.due_date, None);
}

#[test]
fn anything_not_understood_is_unsupported_never_dropped() {
    let c = connector("", "https://acme.odoo.com");
    for (kind, payload) in [
        ("res.partner", &b"not json"[..]),
        ("sale.order", br#"{"name":"no id"}"#),
        (
            "account.move",
            br#"{"id":3,"move_type":"in_invoice","write_date":"2026-01-01 00:00:00"}"#,
        ),
        ("stock.picking", br#"{"id":3}"#),
    ] {
        let out = c.normalizer().normalize(&stored(kind, payload)).unwrap();
        assert_eq!(out.len(), 1, "{kind}");
        assert!(
            matches!(out[0].body, EventBody::Unsupported { .. }),
            "{kind}: {:?}",
            out[0].body
        );
    }
}

fn partner(id: i64, write_date: &str) -> Value {
    json!({"id": id, "name": format!("P{id}"), "email": format!("p{id}@example.com"),
           "phone": false, "mobile": false, "write_date": write_date})
}

fn json2_path(model: &str) -> String {
    format!("/json/2/{model}/search_read")
}

async fn poll(c: &Odoo, cursor: Option<String>) -> PollPage {
    c.poller().unwrap().poll(cursor).await.expect("poll")
}

#[tokio::test]
async fn the_cursor_walks_pages_and_models_without_skips_or_repeats_across_a_restart() {
    let fake = FakeProvider::start().await;
    // 200 partners fill a page; the 201st waits on the next one. Ten share the boundary second.
    let first: Vec<Value> = (1..=200)
        .map(|i| {
            partner(
                i,
                if i > 190 {
                    "2026-01-05 10:00:00"
                } else {
                    "2026-01-05 09:00:00"
                },
            )
        })
        .collect();
    fake.on(
        "POST",
        &json2_path("res.partner"),
        [
            Answer::json(Value::Array(first)),
            Answer::json(json!([partner(201, "2026-01-05 10:00:00")])),
            Answer::json(json!([])),
        ],
    );
    let order = json!({"id": 7, "name": "S00007", "state": "sale", "amount_total": 10.0,
        "currency_id": [1, "EUR"], "partner_id": [5, "P5"], "write_date": "2026-01-05 11:00:00"});
    fake.on(
        "POST",
        &json2_path("sale.order"),
        [Answer::json(json!([order])), Answer::json(json!([]))],
    );
    fake.on(
        "POST",
        &json2_path("account.move"),
        [Answer::json(json!([]))],
    );

    let mut ids: Vec<String> = Vec::new();
    let p1 = poll(&connector("", &fake.base), None).await;
    assert_eq!(p1.events.len(), 200);
    assert!(p1.more, "a full page: more right now");
    ids.extend(p1.events.iter().map(|e| e.provider_event_id.clone()));

    // A restart: a new connector instance resumes from the stored cursor alone.
    let c = connector("", &fake.base);
    let p2 = poll(&c, p1.next_cursor.clone()).await;
    assert_eq!(p2.events.len(), 1);
    assert!(p2.more, "other models are still to be asked this round");
    ids.extend(p2.events.iter().map(|e| e.provider_event_id.clone()));
    let p3 = poll(&c, p2.next_cursor.clone()).await;
    assert_eq!(
        p3.events[0].provider_event_id,
        "sale.order:7:2026-01-05 11:00:00"
    );
    assert!(p3.more);
    ids.extend(p3.events.iter().map(|e| e.provider_event_id.clone()));
    let p4 = poll(&c, p3.next_cursor.clone()).await;
    assert!(p4.events.is_empty() && !p4.more, "the round ends caught up");
    let p5 = poll(&c, p4.next_cursor.clone()).await;
    assert!(p5.events.is_empty() && !p5.more);

    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no repeats");
    assert_eq!(ids.len(), 202, "no skips");
    assert_eq!(ids[0], "res.partner:1:2026-01-05 09:00:00");

    let partner_calls = fake.received_on(&json2_path("res.partner"));
    assert_eq!(
        partner_calls[0].json()["domain"],
        json!([]),
        "first poll: everything"
    );
    assert_eq!(
        partner_calls[1].json()["domain"],
        json!([
            "|",
            ["write_date", ">", "2026-01-05 10:00:00"],
            "&",
            ["write_date", "=", "2026-01-05 10:00:00"],
            ["id", ">", 200]
        ]),
        "after the last record of page one, ties broken by id"
    );
    assert_eq!(
        partner_calls[2].json()["domain"][4],
        json!(["id", ">", 201]),
        "the next round starts after page two"
    );
    let move_call = &fake.received_on(&json2_path("account.move"))[0];
    assert_eq!(
        move_call.json()["domain"][0],
        json!(["move_type", "in", ["out_invoice", "out_refund"]])
    );
    // The sale order position survived the round: the next round asks after it.
    let so_calls = fake.received_on(&json2_path("sale.order"));
    assert_eq!(so_calls[1].json()["domain"][4], json!(["id", ">", 7]));
}

#[tokio::test]
async fn json2_requests_carry_the_bearer_key_database_fields_order_and_limit() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &json2_path("res.partner"),
        [Answer::json(json!([]))],
    );
    let c = connector("models = ['res.partner']", &fake.base);
    let page = poll(&c, None).await;
    assert!(page.events.is_empty() && !page.more);
    let r = &fake.received_on(&json2_path("res.partner"))[0];
    assert_eq!(
        r.header("authorization"),
        Some(format!("bearer {KEY}").as_str())
    );
    assert_eq!(r.header("x-odoo-database"), Some("acme"));
    let body = r.json();
    assert_eq!(body["order"], "write_date asc, id asc");
    assert_eq!(body["limit"], odoo::LIMIT);
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        fields.contains(&"email") && fields.contains(&"write_date"),
        "{fields:?}"
    );
}

#[tokio::test]
async fn a_json2_404_falls_back_to_jsonrpc_authenticating_once() {
    let fake = FakeProvider::start().await;
    // No script for /json/2/…: the fake answers 404, as a server before Odoo 19 does.
    fake.on(
        "POST",
        "/jsonrpc",
        [
            Answer::json(json!({"jsonrpc": "2.0", "id": 1, "result": 2})),
            Answer::json(json!({"jsonrpc": "2.0", "id": 1,
                "result": [partner(42, "2026-01-05 10:00:00")]})),
            Answer::json(json!({"jsonrpc": "2.0", "id": 1, "result": []})),
        ],
    );
    let c = connector("models = ['res.partner']", &fake.base);
    assert!(!c.uses_jsonrpc());
    let page = poll(&c, None).await;
    assert!(c.uses_jsonrpc(), "switched after the 404");
    assert_eq!(page.events.len(), 1);
    assert_eq!(
        page.events[0].provider_event_id,
        "res.partner:42:2026-01-05 10:00:00"
    );
    // The record's exact bytes, not the JSON-RPC envelope.
    let stored: Value = serde_json::from_slice(&page.events[0].payload).unwrap();
    assert_eq!(stored["id"], 42);

    poll(&c, page.next_cursor.clone()).await;
    assert_eq!(
        fake.received_on(&json2_path("res.partner")).len(),
        1,
        "JSON-2 asked once"
    );
    let rpc = fake.received_on("/jsonrpc");
    assert_eq!(rpc.len(), 3, "authenticate once, then two searches");
    let auth = rpc[0].json();
    assert_eq!(auth["params"]["service"], "common");
    assert_eq!(auth["params"]["method"], "authenticate");
    assert_eq!(
        auth["params"]["args"],
        json!(["acme", "api@acme.example", KEY, {}])
    );
    let search = rpc[2].json();
    assert_eq!(search["params"]["service"], "object");
    assert_eq!(search["params"]["method"], "execute_kw");
    let args = &search["params"]["args"];
    assert_eq!(args[0], "acme");
    assert_eq!(args[1], 2, "the cached uid");
    assert_eq!(args[3], "res.partner");
    assert_eq!(args[4], "search_read");
    assert_eq!(args[5][0][4], json!(["id", ">", 42]), "the cursor's domain");
    assert_eq!(args[6]["order"], "write_date asc, id asc");
}

#[tokio::test]
async fn invalid_apikey_is_unauthorized_without_the_traceback_or_the_key() {
    let fake = FakeProvider::start().await;
    let body: Value = serde_json::from_slice(&fixture(
        env!("CARGO_MANIFEST_DIR"),
        "odoo",
        "json2_invalid_apikey.json",
    ))
    .unwrap();
    fake.on(
        "POST",
        &json2_path("res.partner"),
        [Answer::status_json(401, body)],
    );
    let c = connector("", &fake.base);
    let err = c.poller().unwrap().poll(None).await.unwrap_err();
    let ConnectorError::Unauthorized(reason) = err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("Invalid apikey"), "{reason}");
    assert!(
        !reason.contains("Traceback") && !reason.contains(KEY),
        "{reason}"
    );
}

#[tokio::test]
async fn jsonrpc_access_denied_and_a_refused_login_are_unauthorized() {
    let fake = FakeProvider::start().await;
    let denied: Value = serde_json::from_slice(&fixture(
        env!("CARGO_MANIFEST_DIR"),
        "odoo",
        "jsonrpc_access_denied.json",
    ))
    .unwrap();
    fake.on("POST", "/jsonrpc", [Answer::json(denied)]);
    let c = connector("api = 'jsonrpc'", &fake.base);
    let err = c.poller().unwrap().poll(None).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Unauthorized(r) if r.contains("Access Denied")),
        "{err:?}"
    );
    assert!(
        fake.received_on(&json2_path("res.partner")).is_empty(),
        "configured JSON-RPC only"
    );

    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        "/jsonrpc",
        [Answer::json(
            json!({"jsonrpc": "2.0", "id": 1, "result": false}),
        )],
    );
    let c = connector("api = 'jsonrpc'", &fake.base);
    let err = c.poller().unwrap().poll(None).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unauthorized(_)), "{err:?}");
}

#[tokio::test]
async fn rate_limits_and_server_errors_map_to_retry_classes() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &json2_path("res.partner"),
        [
            Answer::status_json(429, json!({"message": "slow down"})).header("retry-after", "7"),
            Answer::status(502, "bad gateway"),
        ],
    );
    let c = connector("", &fake.base);
    let p = c.poller().unwrap();
    assert_eq!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(matches!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::Transient(_)
    ));
}

#[tokio::test]
async fn a_backfill_cursor_asks_every_model_from_the_date() {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &json2_path("res.partner"),
        [Answer::json(json!([]))],
    );
    let c = connector("models = ['res.partner']", &fake.base);
    // 2026-01-01 00:00:00 UTC
    let cursor = c.poller().unwrap().backfill_cursor(1_767_225_600_000);
    let page = poll(&c, cursor).await;
    assert!(!page.more);
    let r = &fake.received_on(&json2_path("res.partner"))[0];
    assert_eq!(
        r.json()["domain"],
        json!([
            "|",
            ["write_date", ">", "2026-01-01 00:00:00"],
            "&",
            ["write_date", "=", "2026-01-01 00:00:00"],
            ["id", ">", 0]
        ])
    );
}

#[test]
fn claims_are_in_their_most_specific_scope() {
    let ev = normalize_fixture("res.partner", "partner.json");
    let ext = ev
        .claims
        .iter()
        .find(|c| c.kind == ClaimKind::ExternalId)
        .unwrap();
    assert_eq!(ext.scope, "odoo-eu", "scoped to the connector");
}

//! The Stripe connector driven through the SDK traits: config validation, `Stripe-Signature`
//! exactly as stripe-python checks it, fixture events normalised into payments, refunds,
//! disputes, checkouts, invoices and profiles, and `/v1/events` paging against a fake API.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::json;
use switchboard_commerce::stripe::{self, PollCursor, Stripe};
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    ClaimKind, Connector, ConnectorError, EventBody, IdentityClaim, InboundRequest, Ingress,
    NormalizedEvent, Payment, StoredEvent, VerifyError,
};

const SECRET: &str = "whsec_test_secret";
const API_KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
const NOW: i64 = 1_764_590_400;
const CUS: &str = "cus_NffrFeUfNV2Hib";
const PI: &str = "pi_3MtwBwLkdIwHu7ix28a3tqPa";

fn no_env(_: &str) -> Option<String> {
    None
}

fn build(cfg: &str) -> Result<Stripe, switchboard_core::ConfigError> {
    stripe::build("st", "connectors[0]", toml::from_str(cfg).unwrap(), &no_env)
}

fn webhook_connector() -> Stripe {
    build(&format!(
        "id = 'st'\nkind = 'stripe'\nwebhook_secret = '{SECRET}'"
    ))
    .unwrap()
}

fn api_connector(base: &str) -> Stripe {
    build(&format!(
        "id = 'st'\nkind = 'stripe'\napi_key = '{API_KEY}'\napi_base = '{base}'\npoll_interval_secs = 5"
    ))
    .unwrap()
}

fn fx(name: &str) -> Vec<u8> {
    fixture(env!("CARGO_MANIFEST_DIR"), "stripe", name)
}

/// A `Stripe-Signature` header as Stripe sends it: `t=…,v1=…`.
fn header_for(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", stripe::sign(secret, t, body))
}

fn deliver(
    c: &Stripe,
    method: Method,
    body: &[u8],
    signature: Option<&str>,
    now: i64,
) -> Result<Ingress, String> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(s) = signature {
        headers.insert("stripe-signature", HeaderValue::from_str(s).unwrap());
    }
    let body = Bytes::copy_from_slice(body);
    let uri: Uri = "/webhooks/st".parse().unwrap();
    let req = InboundRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
        now,
    };
    let hook = c.webhook().expect("webhook");
    let v = hook.verify(&req).map_err(|e| e.reason().to_string())?;
    hook.parse(v).map_err(|e| format!("parse: {e}"))
}

fn stored(body: &[u8]) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "st".into(),
        provider_event_id: "evt".into(),
        kind: "event".into(),
        occurred_at: None,
        received_at: 1_700_000_000_000,
        headers: vec![],
        payload: Bytes::copy_from_slice(body),
    }
}

fn normalize(name: &str) -> Vec<NormalizedEvent> {
    let c = webhook_connector();
    c.normalizer().normalize(&stored(&fx(name))).unwrap()
}

fn payment(ev: &NormalizedEvent) -> &Payment {
    match &ev.body {
        EventBody::Payment(p) => p,
        other => panic!("expected a payment, got {other:?}"),
    }
}

fn link(id: &str) -> IdentityClaim {
    IdentityClaim::platform_id(stripe::payment_scope("st"), id)
}

// ---------------------------------------------------------------- signature

/// The SDK test's secret and payload; the signature was cross-checked with the official
/// `stripe` 16.1.0 package (`WebhookSignature._compute_signature`, `verify_header`).
const SDK_PAYLOAD: &str = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
const SDK_SIGNATURE: &str = "a4f21b4fe216fca64c384e96053114027a5635c7f680db28f311c3b5302543ab";

#[test]
fn signature_matches_the_official_sdk_for_its_test_secret() {
    assert_eq!(
        stripe::sign(SECRET, NOW, SDK_PAYLOAD.as_bytes()),
        SDK_SIGNATURE
    );
    let header = format!("t={NOW},v1={SDK_SIGNATURE}");
    assert_eq!(
        stripe::verify_header(SECRET, &header, SDK_PAYLOAD.as_bytes(), NOW, 300),
        Ok(())
    );
}

#[test]
fn two_v1_signatures_where_only_the_second_matches_are_accepted() {
    let body = fx("payment_intent.succeeded.json");
    let good = stripe::sign(SECRET, NOW, &body);
    let other = stripe::sign("whsec_old_secret", NOW, &body);
    let header = format!("t={NOW},v1={other},v1={good},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
    let got = deliver(
        &webhook_connector(),
        Method::POST,
        &body,
        Some(&header),
        NOW,
    )
    .unwrap();
    let Ingress::Events(events) = got else {
        panic!("expected events")
    };
    assert_eq!(events.len(), 1);
}

#[test]
fn a_six_minute_old_timestamp_is_refused_as_expired() {
    let body = fx("payment_intent.succeeded.json");
    let t = NOW - 360;
    let got = deliver(
        &webhook_connector(),
        Method::POST,
        &body,
        Some(&header_for(SECRET, t, &body)),
        NOW,
    );
    assert_eq!(got.unwrap_err(), "expired_timestamp");
    // Just inside the tolerance still passes, and so does a timestamp in the future (as in
    // the SDK, which only refuses `t < now - tolerance`).
    for t in [NOW - 300, NOW + 3600] {
        let h = header_for(SECRET, t, &body);
        assert!(deliver(&webhook_connector(), Method::POST, &body, Some(&h), NOW).is_ok());
    }
}

#[test]
fn tolerance_zero_turns_the_age_check_off() {
    let c = build(&format!(
        "id = 'st'\nkind = 'stripe'\nwebhook_secret = '{SECRET}'\ntolerance_secs = 0"
    ))
    .unwrap();
    let body = fx("charge.succeeded.json");
    let h = header_for(SECRET, NOW - 86_400, &body);
    assert!(deliver(&c, Method::POST, &body, Some(&h), NOW).is_ok());
}

#[test]
fn tampered_body_and_wrong_secret_are_refused_as_bad_signatures() {
    let body = fx("payment_intent.succeeded.json");
    let header = header_for(SECRET, NOW, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let c = webhook_connector();
    assert_eq!(
        deliver(&c, Method::POST, &tampered, Some(&header), NOW).unwrap_err(),
        "bad_signature"
    );
    let wrong = header_for("whsec_someone_else", NOW, &body);
    assert_eq!(
        deliver(&c, Method::POST, &body, Some(&wrong), NOW).unwrap_err(),
        "bad_signature"
    );
    // Upper-case hex is not what Stripe sends; the SDK compares strings and refuses it.
    let upper = format!(
        "t={NOW},v1={}",
        stripe::sign(SECRET, NOW, &body).to_uppercase()
    );
    assert_eq!(
        deliver(&c, Method::POST, &body, Some(&upper), NOW).unwrap_err(),
        "bad_signature"
    );
}

#[test]
fn a_header_without_v1_is_refused_even_with_a_valid_v0() {
    let body = fx("payment_intent.succeeded.json");
    let sig = stripe::sign(SECRET, NOW, &body);
    let got = deliver(
        &webhook_connector(),
        Method::POST,
        &body,
        Some(&format!("t={NOW},v0={sig}")),
        NOW,
    );
    assert_eq!(got.unwrap_err(), "missing_signature");
}

#[test]
fn missing_or_garbled_headers_are_refused_without_panicking() {
    let body = fx("payment_intent.succeeded.json");
    let sig = stripe::sign(SECRET, NOW, &body);
    let c = webhook_connector();
    assert_eq!(
        deliver(&c, Method::POST, &body, None, NOW).unwrap_err(),
        "missing_signature"
    );
    for junk in [
        String::new(),
        "garbage".to_string(),
        format!("v1={sig}"),
        format!("t=abc,v1={sig}"),
        format!("t,v1={sig}"),
        format!("t={NOW},v1"),
        format!("t=99999999999999999999999,v1={sig}"),
        ",,,=,==".to_string(),
    ] {
        let got = deliver(&c, Method::POST, &body, Some(&junk), NOW);
        assert_eq!(
            got.unwrap_err(),
            "malformed_signature",
            "{junk:?} must be unreadable"
        );
    }
    // Odd but readable: parsed as the SDK does, and refused for not matching.
    for odd in ["t=1,v1=", "t=-5,v1=zz", "t= 1 ,v1=00=11"] {
        let got = deliver(&c, Method::POST, &body, Some(odd), NOW);
        assert_eq!(got.unwrap_err(), "bad_signature", "{odd:?}");
    }
    assert_eq!(
        stripe::verify_header(
            SECRET,
            &format!("t={},v1={sig}", i64::MIN),
            &body,
            i64::MAX,
            300
        ),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn only_post_is_accepted() {
    let body = fx("payment_intent.succeeded.json");
    let h = header_for(SECRET, NOW, &body);
    assert_eq!(
        deliver(&webhook_connector(), Method::GET, &body, Some(&h), NOW).unwrap_err(),
        "method_not_allowed"
    );
}

#[test]
fn a_delivery_is_one_raw_event_keyed_by_the_event_id_with_its_exact_bytes() {
    let body = fx("charge.dispute.created.json");
    let h = header_for(SECRET, NOW, &body);
    let Ingress::Events(events) =
        deliver(&webhook_connector(), Method::POST, &body, Some(&h), NOW).unwrap()
    else {
        panic!("expected events")
    };
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.provider_event_id, "evt_1Q2DiSpuTeCrEaTeD0000001");
    assert_eq!(e.kind, "charge.dispute.created");
    assert_eq!(e.occurred_at, Some(1_764_680_400_000));
    assert_eq!(&e.payload[..], &body[..]);
    assert!(e.headers.iter().any(|(k, _)| k == "content-type"));
}

#[test]
fn a_signed_body_that_is_not_an_event_is_a_400_not_a_panic() {
    let c = webhook_connector();
    for body in [&b"not json"[..], b"{}", b"{\"id\":\"evt_1\"}", b"[1,2]"] {
        let h = header_for(SECRET, NOW, body);
        let got = deliver(&c, Method::POST, body, Some(&h), NOW).unwrap_err();
        assert!(got.starts_with("parse:"), "{got}");
    }
}

// ---------------------------------------------------------------- normalise

#[test]
fn payment_intent_succeeded_is_one_charge_document_in_exact_minor_units() {
    let out = normalize("payment_intent.succeeded.json");
    assert_eq!(out.len(), 1);
    let ev = &out[0];
    assert_eq!(ev.channel, "stripe");
    assert_eq!(ev.thread_key, None);
    assert_eq!(ev.occurred_at, 1_764_590_400_000);
    let p = payment(ev);
    assert_eq!(p.payment_id, PI);
    assert_eq!(p.kind, "charge");
    assert_eq!(p.status.as_deref(), Some("succeeded"));
    assert_eq!(p.amount_minor, Some(2000));
    assert_eq!(p.currency.as_deref(), Some("USD"));
    assert_eq!(p.updated_at, Some(1_764_590_400_000));
    assert_eq!(
        ev.claims,
        vec![
            IdentityClaim::external_id("st", CUS),
            IdentityClaim::email("ada@example.com"),
            link(PI),
        ]
    );
}

#[test]
fn payment_intent_payment_failed_is_failed_with_the_last_error_as_reason() {
    let out = normalize("payment_intent.payment_failed.json");
    let p = payment(&out[0]);
    assert_eq!(p.status.as_deref(), Some("failed"));
    assert_eq!(p.amount_minor, Some(4599));
    assert_eq!(p.currency.as_deref(), Some("EUR"));
    assert_eq!(
        p.reason.as_deref(),
        Some("Your card has insufficient funds.")
    );
}

#[test]
fn a_charge_updates_its_payment_intents_document_with_the_payers_details() {
    let out = normalize("charge.succeeded.json");
    assert_eq!(out.len(), 1);
    let p = payment(&out[0]);
    assert_eq!(p.payment_id, PI, "one payment, one document");
    assert_eq!(p.kind, "charge");
    assert_eq!(p.status.as_deref(), Some("succeeded"));
    let claims = &out[0].claims;
    for c in [
        IdentityClaim::external_id("st", CUS),
        IdentityClaim::email("ada@example.com"),
        IdentityClaim::phone("+44 20 7946 0018"),
        IdentityClaim::name("Ada Lovelace"),
        link(PI),
    ] {
        assert!(claims.contains(&c), "{c:?} in {claims:?}");
    }
}

#[test]
fn charge_refunded_marks_the_payment_and_adds_each_embedded_refund() {
    let out = normalize("charge.refunded.json");
    assert_eq!(out.len(), 2);
    let charge = payment(&out[0]);
    assert_eq!(charge.payment_id, PI);
    assert_eq!(charge.status.as_deref(), Some("partially_refunded"));
    assert_eq!(charge.amount_minor, Some(2000));
    let refund = payment(&out[1]);
    assert_eq!(refund.payment_id, "re_3MtwBwLkdIwHu7ix1Pv0e8mG");
    assert_eq!(refund.kind, "refund");
    assert_eq!(refund.amount_minor, Some(750));
    assert_eq!(refund.currency.as_deref(), Some("USD"));
    assert_eq!(refund.reason.as_deref(), Some("requested_by_customer"));
    assert_eq!(refund.updated_at, Some(1_764_594_000_000));
    assert!(out[1]
        .claims
        .contains(&IdentityClaim::external_id("st", CUS)));
}

#[test]
fn refund_created_is_a_refund_document_tied_to_the_payment_it_returns() {
    let out = normalize("refund.created.json");
    assert_eq!(out.len(), 1);
    let p = payment(&out[0]);
    assert_eq!(p.payment_id, "re_3MtwBwLkdIwHu7ix1Pv0e8mG");
    assert_eq!(p.kind, "refund");
    assert_eq!(p.status.as_deref(), Some("succeeded"));
    assert_eq!(p.amount_minor, Some(750));
    assert_eq!(p.created_at, Some(1_764_593_999_000));
    // A refund names no customer: the payment link puts it on the payer's timeline.
    assert_eq!(out[0].claims, vec![link(PI)]);
}

#[test]
fn a_dispute_created_then_closed_is_one_document_whose_status_moves() {
    let created = normalize("charge.dispute.created.json");
    let closed = normalize("charge.dispute.closed.json");
    let (a, b) = (payment(&created[0]), payment(&closed[0]));
    assert_eq!(a.payment_id, "dp_1Q2DiSpuTe00000000000001");
    assert_eq!(a.payment_id, b.payment_id);
    assert_eq!(a.kind, "dispute");
    assert_eq!(a.status.as_deref(), Some("needs_response"));
    assert_eq!(b.status.as_deref(), Some("lost"));
    assert_eq!(a.reason.as_deref(), Some("fraudulent"));
    assert_eq!(a.amount_minor, Some(2000));
    assert!(b.updated_at > a.updated_at);
    assert!(created[0]
        .claims
        .contains(&IdentityClaim::email("ada@example.com")));
    assert!(created[0].claims.contains(&link(PI)));
}

#[test]
fn checkout_session_completed_claims_the_customer_details() {
    let out = normalize("checkout.session.completed.json");
    let p = payment(&out[0]);
    assert_eq!(p.kind, "checkout");
    assert_eq!(
        p.payment_id,
        "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY"
    );
    assert_eq!(p.amount_minor, Some(5990));
    assert_eq!(p.currency.as_deref(), Some("EUR"));
    assert_eq!(p.status.as_deref(), Some("paid"));
    assert_eq!(p.order_id.as_deref(), Some("order-1001"));
    let claims = &out[0].claims;
    for c in [
        IdentityClaim::external_id("st", CUS),
        IdentityClaim::email("ada@example.com"),
        IdentityClaim::phone("+4930123456"),
        IdentityClaim::name("Ada Lovelace"),
    ] {
        assert!(claims.contains(&c), "{c:?} in {claims:?}");
    }
}

#[test]
fn invoice_paid_is_an_invoice_document() {
    let out = normalize("invoice.paid.json");
    let EventBody::Invoice(inv) = &out[0].body else {
        panic!("expected an invoice")
    };
    assert_eq!(inv.invoice_id, "in_1MtHbELkdIwHu7ixl4OzzPMv");
    assert_eq!(inv.number.as_deref(), Some("A1B2C3D4-0007"));
    assert_eq!(inv.status.as_deref(), Some("paid"));
    assert_eq!(inv.total_minor, Some(12500));
    assert_eq!(inv.amount_due_minor, Some(0));
    assert_eq!(inv.currency.as_deref(), Some("USD"));
    assert_eq!(inv.due_date.as_deref(), Some("2026-01-01"));
    assert_eq!(inv.updated_at, Some(1_764_604_800_000));
    assert!(out[0]
        .claims
        .contains(&IdentityClaim::email("ada@example.com")));
    assert!(out[0]
        .claims
        .contains(&IdentityClaim::external_id("st", CUS)));
}

#[test]
fn customer_created_is_a_profile_with_its_identities() {
    let out = normalize("customer.created.json");
    let EventBody::Profile(p) = &out[0].body else {
        panic!("expected a profile")
    };
    assert_eq!(p.external_id, CUS);
    assert_eq!(p.email.as_deref(), Some("ada@example.com"));
    assert_eq!(p.phone.as_deref(), Some("+442079460018"));
    let addr = p.address.as_ref().expect("address");
    assert_eq!(addr.city.as_deref(), Some("London"));
    assert_eq!(addr.country.as_deref(), Some("GB"));
    assert_eq!(
        out[0].claims,
        vec![
            IdentityClaim::external_id("st", CUS),
            IdentityClaim::email("ada@example.com"),
            IdentityClaim::phone("+442079460018"),
            IdentityClaim::name("Ada Lovelace"),
        ]
    );
    assert!(!out[0]
        .claims
        .iter()
        .any(|c| c.kind == ClaimKind::PlatformId));
}

#[test]
fn unknown_types_thin_events_and_junk_are_kept_as_unsupported() {
    for (name, needle) in [
        ("payout.paid.json", "payout.paid"),
        (
            "v2.thin_event.json",
            "v1.billing.meter.error_report_triggered",
        ),
    ] {
        let out = normalize(name);
        assert_eq!(out.len(), 1);
        match &out[0].body {
            EventBody::Unsupported { reason } => assert!(reason.contains(needle), "{reason}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let c = webhook_connector();
    for junk in [
        &b"not json"[..],
        b"{}",
        b"{\"type\":\"charge.succeeded\",\"data\":{\"object\":{\"object\":\"charge\"}}}",
        b"{\"type\":\"charge.succeeded\",\"data\":{\"object\":[]}}",
        b"{\"type\":\"refund.created\",\"data\":{\"object\":{\"id\":7,\"object\":\"refund\"}}}",
    ] {
        let out = c.normalizer().normalize(&stored(junk)).unwrap();
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0].body, EventBody::Unsupported { .. }));
        assert_eq!(
            out[0].occurred_at, 1_700_000_000_000,
            "falls back to receipt"
        );
    }
}

#[test]
fn normalising_is_pure_same_event_same_documents() {
    for name in [
        "payment_intent.succeeded.json",
        "charge.refunded.json",
        "invoice.paid.json",
    ] {
        assert_eq!(normalize(name), normalize(name));
    }
}

// ---------------------------------------------------------------- config

#[test]
fn config_errors_name_the_exact_key() {
    let e = build("id = 'st'\nkind = 'stripe'").err().unwrap();
    assert_eq!(e.key, "connectors[0].webhook_secret");
    let e = build(&format!(
        "id = 'st'\nkind = 'stripe'\nwebhook_secret = '{SECRET}'\nwebhok = 1"
    ))
    .err()
    .unwrap();
    assert!(e.to_string().contains("unknown field `webhok`"), "{e}");
    let e = build(&format!(
        "id = 'st'\nkind = 'stripe'\nwebhook_secret = '{SECRET}'\napi_base = 'ftp://x'"
    ))
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].api_base");
    let e = build(&format!(
        "id = 'st'\nkind = 'stripe'\nwebhook_secret = '{SECRET}'\npoll_interval_secs = 0"
    ))
    .err()
    .unwrap();
    assert_eq!(e.key, "connectors[0].poll_interval_secs");
    let e = build("id = 'st'\nkind = 'stripe'\napi_key_env = 'NOPE'")
        .err()
        .unwrap();
    assert_eq!(e.key, "connectors[0].api_key_env");
}

#[test]
fn secrets_come_from_env_and_each_half_exists_only_when_configured() {
    let env = |k: &str| match k {
        "STRIPE_WHSEC" => Some(SECRET.to_string()),
        "STRIPE_KEY" => Some(API_KEY.to_string()),
        _ => None,
    };
    let both = stripe::build(
        "st",
        "connectors[0]",
        toml::from_str(
            "id='st'\nkind='stripe'\nwebhook_secret_env='STRIPE_WHSEC'\napi_key_env='STRIPE_KEY'",
        )
        .unwrap(),
        &env,
    )
    .unwrap();
    assert!(both.webhook().is_some() && both.poller().is_some());
    assert_eq!(both.poller().unwrap().interval(), Duration::from_secs(60));
    let hook_only = webhook_connector();
    assert!(hook_only.webhook().is_some() && hook_only.poller().is_none());
    let poll_only = api_connector("http://127.0.0.1:9");
    assert!(poll_only.webhook().is_none() && poll_only.poller().is_some());
    assert_eq!(
        poll_only.poller().unwrap().interval(),
        Duration::from_secs(5)
    );
}

// ---------------------------------------------------------------- poll

fn event(id: &str, created: i64) -> serde_json::Value {
    json!({"id": id, "object": "event", "type": "customer.updated", "created": created,
           "data": {"object": {"id": CUS, "object": "customer", "email": "ada@example.com"}}})
}

fn list(events: Vec<serde_json::Value>, has_more: bool) -> Answer {
    Answer::json(
        json!({"object": "list", "url": "/v1/events", "has_more": has_more, "data": events}),
    )
}

fn ids(page: &switchboard_core::PollPage) -> Vec<&str> {
    page.events
        .iter()
        .map(|e| e.provider_event_id.as_str())
        .collect()
}

fn live(newest: &str) -> String {
    PollCursor::Live {
        newest: newest.into(),
    }
    .encode()
}

#[tokio::test]
async fn first_poll_takes_the_latest_page_oldest_first_and_starts_from_its_newest() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        "/v1/events",
        [list(
            vec![event("evt_3", 30), event("evt_2", 20), event("evt_1", 10)],
            true,
        )],
    );
    let c = api_connector(&fake.base);
    let page = c.poller().unwrap().poll(None).await.unwrap();
    assert_eq!(ids(&page), ["evt_1", "evt_2", "evt_3"]);
    assert_eq!(page.next_cursor, Some(live("evt_3")));
    assert!(!page.more, "older history is the backfill's job");
    let req = &fake.received_on("/v1/events")[0];
    assert_eq!(req.query_param("limit").as_deref(), Some("100"));
    assert_eq!(req.query_param("ending_before"), None);
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    // Each list item is stored as itself (its bytes cut out of the page).
    let stored: serde_json::Value = serde_json::from_slice(&page.events[0].payload).unwrap();
    assert_eq!(stored, event("evt_1", 10));
    assert_eq!(page.events[0].occurred_at, Some(10_000));
}

#[tokio::test]
async fn live_polls_walk_forward_with_ending_before_page_by_page_without_gaps_or_repeats() {
    let fake = FakeProvider::start().await;
    // Six newer events than evt_3, served as Stripe does: the page just newer than the
    // cursor, newest first within it, `has_more` while even newer ones remain.
    fake.on(
        "GET",
        "/v1/events",
        [
            list(vec![event("evt_5", 50), event("evt_4", 40)], true),
            list(vec![event("evt_7", 70), event("evt_6", 60)], false),
            list(vec![], false),
        ],
    );
    let c = api_connector(&fake.base);
    let p = c.poller().unwrap();
    let first = p.poll(Some(live("evt_3"))).await.unwrap();
    assert_eq!(ids(&first), ["evt_4", "evt_5"]);
    assert_eq!(first.next_cursor, Some(live("evt_5")));
    assert!(first.more);
    // A restart resumes from the stored cursor: the next page starts right after evt_5.
    let second = p.poll(first.next_cursor.clone()).await.unwrap();
    assert_eq!(ids(&second), ["evt_6", "evt_7"]);
    assert_eq!(second.next_cursor, Some(live("evt_7")));
    assert!(!second.more);
    let idle = p.poll(second.next_cursor.clone()).await.unwrap();
    assert!(idle.events.is_empty());
    assert_eq!(
        idle.next_cursor,
        Some(live("evt_7")),
        "an empty page keeps the cursor"
    );
    assert!(!idle.more);
    let asked: Vec<Option<String>> = fake
        .received_on("/v1/events")
        .iter()
        .map(|r| r.query_param("ending_before"))
        .collect();
    assert_eq!(
        asked,
        [
            Some("evt_3".to_string()),
            Some("evt_5".to_string()),
            Some("evt_7".to_string())
        ]
    );
}

#[tokio::test]
async fn backfill_walks_back_to_since_with_starting_after() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        "/v1/events",
        [
            list(vec![event("evt_9", 90), event("evt_8", 80)], true),
            list(vec![event("evt_7", 70)], false),
        ],
    );
    let c = api_connector(&fake.base);
    let p = c.poller().unwrap();
    let start = p
        .backfill_cursor(1_764_000_000_999)
        .expect("backfill cursor");
    assert_eq!(
        serde_json::from_str::<PollCursor>(&start).unwrap(),
        PollCursor::Backfill {
            since: 1_764_000_000,
            after: None
        }
    );
    let first = p.poll(Some(start)).await.unwrap();
    assert_eq!(ids(&first), ["evt_8", "evt_9"]);
    assert!(first.more);
    let second = p.poll(first.next_cursor.clone()).await.unwrap();
    assert_eq!(ids(&second), ["evt_7"]);
    assert!(!second.more);
    let reqs = fake.received_on("/v1/events");
    assert_eq!(
        reqs[0].query_param("created[gte]").as_deref(),
        Some("1764000000")
    );
    assert_eq!(reqs[0].query_param("starting_after"), None);
    assert_eq!(
        reqs[1].query_param("created[gte]").as_deref(),
        Some("1764000000")
    );
    assert_eq!(
        reqs[1].query_param("starting_after").as_deref(),
        Some("evt_8")
    );
}

#[tokio::test]
async fn a_foreign_cursor_starts_a_fresh_live_walk() {
    let fake = FakeProvider::start().await;
    fake.on("GET", "/v1/events", [list(vec![event("evt_1", 10)], false)]);
    let c = api_connector(&fake.base);
    let page = c
        .poller()
        .unwrap()
        .poll(Some("12345".into()))
        .await
        .unwrap();
    assert_eq!(ids(&page), ["evt_1"]);
    assert_eq!(
        fake.received_on("/v1/events")[0].query_param("ending_before"),
        None
    );
}

#[tokio::test]
async fn provider_errors_map_to_retry_classes_without_leaking_the_key() {
    let fake = FakeProvider::start().await;
    fake.on(
        "GET",
        "/v1/events",
        [
            Answer::status_json(429, json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}})),
            Answer::status_json(429, json!({"error": {"message": "slow down"}})).header("retry-after", "7"),
            Answer::status_json(401, json!({"error": {"type": "invalid_request_error", "message": format!("Invalid API Key provided: {API_KEY}")}})),
            Answer::status_json(500, json!({"error": {"type": "api_error", "message": "boom"}})),
            Answer::status_json(400, json!({"error": {"type": "invalid_request_error", "message": "No such event: 'evt_gone'"}})),
            Answer::status(200, "<html>"),
        ],
    );
    let c = api_connector(&fake.base);
    let p = c.poller().unwrap();
    assert_eq!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::RateLimited {
            retry_after: Some(stripe::DEFAULT_RETRY_AFTER)
        }
    );
    assert_eq!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    match p.poll(None).await.unwrap_err() {
        ConnectorError::Unauthorized(r) => {
            assert!(!r.contains(API_KEY), "{r}");
            assert!(r.contains("Invalid API Key"), "{r}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::Transient(_)
    ));
    match p.poll(Some(live("evt_gone"))).await.unwrap_err() {
        ConnectorError::Permanent(r) => assert!(r.contains("No such event"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.poll(None).await.unwrap_err(),
        ConnectorError::Transient(_)
    ));
}

#[tokio::test]
async fn an_unreachable_api_is_transient_and_names_no_url() {
    let c = api_connector("http://127.0.0.1:9");
    match c.poller().unwrap().poll(None).await.unwrap_err() {
        ConnectorError::Transient(r) => assert!(!r.contains("127.0.0.1"), "{r}"),
        other => panic!("{other:?}"),
    }
}

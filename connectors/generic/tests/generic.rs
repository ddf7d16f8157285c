//! The generic connector, driven through the SDK traits with fixture payloads.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    ClaimKind, Connector, Direction, EventBody, InboundRequest, Ingress, IngressError, StoredEvent,
    VerifyError,
};

const CONFIG: &str = r#"
id = "api"
kind = "generic"
secret = "topsecret"
signature_header = "X-Signature"
signature_prefix = "sha256="
event_id = "/id"
event_kind = "/type"
[mapping]
text = "/message/text"
thread = "/conversation/id"
occurred_at = "/created_at"
customer_email = "/customer/email"
customer_phone = "/customer/phone"
customer_name = "/customer/name"
customer_external_id = "/customer/id"
message_id = "/message/id"
order_id = "/order/id"
order_total = "/order/total"
order_currency = "/order/currency"
order_status = "/order/status"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn connector(cfg: &str) -> switchboard_generic::Generic {
    switchboard_generic::build(
        "api",
        "connectors[0]",
        toml::from_str(cfg).unwrap(),
        &no_env,
    )
    .unwrap()
}

fn sign(body: &[u8]) -> String {
    HmacScheme::new(Algorithm::Sha256, Encoding::Hex, Some("sha256=")).sign(b"topsecret", &[body])
}

fn ingest(
    c: &switchboard_generic::Generic,
    body: &[u8],
    sig: Option<&str>,
) -> Result<Ingress, String> {
    let mut headers = HeaderMap::new();
    if let Some(s) = sig {
        headers.insert("x-signature", HeaderValue::from_str(s).unwrap());
    }
    let body = Bytes::copy_from_slice(body);
    let uri: Uri = "/webhooks/api".parse().unwrap();
    let req = InboundRequest {
        method: &Method::POST,
        uri: &uri,
        headers: &headers,
        body: &body,
        now: 0,
    };
    let hook = c.webhook().unwrap();
    let v = hook.verify(&req).map_err(|e| format!("verify: {e:?}"))?;
    hook.parse(v).map_err(|e| format!("parse: {e:?}"))
}

fn stored(c: &switchboard_generic::Generic, body: &[u8]) -> StoredEvent {
    let Ok(Ingress::Events(mut evs)) = ingest(c, body, Some(&sign(body))) else {
        panic!("expected events")
    };
    let e = evs.remove(0);
    StoredEvent {
        id: 1,
        connector_id: "api".into(),
        provider_event_id: e.provider_event_id,
        kind: e.kind,
        occurred_at: e.occurred_at,
        received_at: 1_700_000_000_000,
        headers: e.headers,
        payload: e.payload,
    }
}

#[test]
fn signed_message_is_accepted_with_its_event_id_kind_and_exact_bytes() {
    let c = connector(CONFIG);
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "generic", "message.json");
    let Ok(Ingress::Events(evs)) = ingest(&c, &body, Some(&sign(&body))) else {
        panic!()
    };
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].provider_event_id, "evt_1001");
    assert_eq!(evs[0].kind, "message.created");
    assert_eq!(evs[0].occurred_at, Some(1_795_169_700_000));
    assert_eq!(&evs[0].payload[..], &body[..]);
}

#[test]
fn wrong_missing_or_malformed_signature_is_refused() {
    let c = connector(CONFIG);
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "generic", "message.json");
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        ingest(&c, &tampered, Some(&sign(&body))).unwrap_err(),
        format!("verify: {:?}", VerifyError::Mismatch)
    );
    assert!(ingest(&c, &body, None).unwrap_err().contains("Missing"));
    assert!(ingest(&c, &body, Some("sha256=nothex"))
        .unwrap_err()
        .contains("Malformed"));
    assert!(ingest(&c, &body, Some("md5=00"))
        .unwrap_err()
        .contains("Malformed"));
}

#[test]
fn malformed_json_and_missing_event_id_are_named() {
    let c = connector(CONFIG);
    let bad = b"{not json";
    assert!(ingest(&c, bad, Some(&sign(bad)))
        .unwrap_err()
        .contains("invalid JSON"));
    let no_id = br#"{"message":{"text":"hi"}}"#;
    let err = ingest(&c, no_id, Some(&sign(no_id))).unwrap_err();
    assert!(err.contains("event id at `/id`"), "{err}");
}

#[test]
fn event_id_from_header_and_body_hash_fallback() {
    let cfg = CONFIG.replace("event_id = \"/id\"", "event_id_header = \"X-Event-Id\"");
    let c = connector(&cfg);
    let body = br#"{"message":{"text":"hi"}}"#;
    let mut headers = HeaderMap::new();
    headers.insert("x-signature", HeaderValue::from_str(&sign(body)).unwrap());
    headers.insert("x-event-id", HeaderValue::from_static("delivery-9"));
    let b = Bytes::from_static(body);
    let uri: Uri = "/".parse().unwrap();
    let req = InboundRequest {
        method: &Method::POST,
        uri: &uri,
        headers: &headers,
        body: &b,
        now: 0,
    };
    let hook = c.webhook().unwrap();
    let Ingress::Events(evs) = hook.parse(hook.verify(&req).unwrap()).unwrap() else {
        panic!()
    };
    assert_eq!(evs[0].provider_event_id, "delivery-9");

    let c = connector(&CONFIG.replace("event_id = \"/id\"\n", ""));
    let Ok(Ingress::Events(a)) = ingest(&c, body, Some(&sign(body))) else {
        panic!()
    };
    let Ok(Ingress::Events(b)) = ingest(&c, body, Some(&sign(body))) else {
        panic!()
    };
    assert!(a[0].provider_event_id.starts_with("sha256:"));
    assert_eq!(
        a[0].provider_event_id, b[0].provider_event_id,
        "identical retries share an id"
    );
}

#[test]
fn message_fixture_normalises_to_a_message_with_scoped_claims() {
    let c = connector(CONFIG);
    let raw = stored(
        &c,
        &fixture(env!("CARGO_MANIFEST_DIR"), "generic", "message.json"),
    );
    let out = c.normalizer().normalize(&raw).unwrap();
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.channel, "generic");
    assert_eq!(e.direction, Direction::Inbound);
    assert_eq!(e.thread_key.as_deref(), Some("conv-42"));
    assert_eq!(e.occurred_at, 1_795_169_700_000);
    assert_eq!(
        e.body,
        EventBody::Message {
            message_id: Some("m-1".into()),
            text: "Hello, where is my order?".into(),
            attachments: vec![],
            reply_to: None,
        }
    );
    let kinds: Vec<_> = e
        .claims
        .iter()
        .map(|c| (c.kind, c.scope.as_str(), c.value.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ClaimKind::Email, "", "Ada.Lovelace@Example.COM"),
            (ClaimKind::Phone, "", "+44 20 7946 0958"),
            (ClaimKind::ExternalId, "api", "cust-7"),
            (ClaimKind::Name, "", "Ada Lovelace"),
        ]
    );
    // Pure: the same input gives the same output.
    assert_eq!(c.normalizer().normalize(&raw).unwrap(), out);
}

#[test]
fn order_fixture_normalises_to_an_order_outside_any_conversation() {
    let c = connector(CONFIG);
    let raw = stored(
        &c,
        &fixture(env!("CARGO_MANIFEST_DIR"), "generic", "order.json"),
    );
    let out = c.normalizer().normalize(&raw).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].thread_key, None);
    assert_eq!(
        out[0].occurred_at, 1_795_169_700_000,
        "unix seconds are accepted"
    );
    assert_eq!(
        out[0].body,
        EventBody::Order(switchboard_core::Order {
            order_id: "1001".into(),
            total_minor: Some(5990),
            currency: Some("EUR".into()),
            status: Some("paid".into()),
            ..Default::default()
        })
    );
}

#[test]
fn unmapped_payload_becomes_a_visible_unsupported_entry() {
    let c = connector(CONFIG);
    let raw = stored(
        &c,
        &fixture(env!("CARGO_MANIFEST_DIR"), "generic", "unknown.json"),
    );
    let out = c.normalizer().normalize(&raw).unwrap();
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].body, EventBody::Unsupported { .. }));
    assert_eq!(
        out[0].occurred_at, 1_795_166_400_000,
        "offset times are converted to UTC"
    );
}

#[test]
fn config_errors_name_the_exact_key() {
    let err = |cfg: &str| {
        switchboard_generic::build(
            "api",
            "connectors[2]",
            toml::from_str(cfg).unwrap(),
            &no_env,
        )
        .err()
        .unwrap()
        .to_string()
    };
    assert_eq!(
        err("id='api'\nkind='generic'"),
        "connectors[2].secret: missing (set `secret` or `secret_env`)"
    );
    assert!(
        err("id='api'\nkind='generic'\nsecret='x'\n[mapping]\ntext='message'")
            .starts_with("connectors[2].mapping.text: ")
    );
    assert!(
        err("id='api'\nkind='generic'\nsecret='x'\nsignature_encoding='rot13'")
            .starts_with("connectors[2].signature_encoding: ")
    );
    assert!(
        err("id='api'\nkind='generic'\nsecret='x'\nsecrte='y'").contains("unknown field `secrte`")
    );
    assert!(
        err("id='api'\nkind='generic'\nsecret_env='SB_TEST_UNSET_VAR'")
            .starts_with("connectors[2].secret_env: ")
    );
}

#[test]
fn base64_scheme_without_prefix_verifies() {
    let c = connector(&CONFIG.replace(
        "signature_prefix = \"sha256=\"\n",
        "signature_encoding = \"base64\"\n",
    ));
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "generic", "order.json");
    let sig =
        HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None).sign(b"topsecret", &[&body]);
    assert!(ingest(&c, &body, Some(&sig)).is_ok());
    assert!(matches!(ingest(&c, &body, Some(&sign(&body))), Err(e) if e.contains("verify")));
}

#[test]
fn get_requests_are_not_allowed() {
    let c = connector(CONFIG);
    let headers = HeaderMap::new();
    let b = Bytes::new();
    let uri: Uri = "/".parse().unwrap();
    let req = InboundRequest {
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
        body: &b,
        now: 0,
    };
    assert_eq!(
        c.webhook().unwrap().verify(&req).unwrap_err(),
        VerifyError::MethodNotAllowed
    );
    let _ = IngressError::Malformed(String::new());
}

//! The Twilio connector through the SDK traits: the twilio-python signature vectors
//! (providers.md TEST VECTORS §A.3), webhook verification and splitting, fixture payloads
//! normalised, config validation, and sends against a fake Twilio API.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_core::testkit::fixture;
use switchboard_core::{
    ClaimKind, Connector, ConnectorError, Direction, EventBody, IdentityClaim, InboundRequest,
    Ingress, OutboundMessage, RawEvent, StoredEvent, VerifyError,
};
use switchboard_social::twilio::signature::{
    compute_signature, port_variants, signing_string, validate, Signed,
};
use switchboard_social::twilio::{self, Twilio};

const TOKEN: &str = "12345";
const VECTOR_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn vector_params() -> Vec<(String, String)> {
    [
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---- TEST VECTORS §A.3 ----

#[test]
fn vector_string_to_sign_and_signature_match_twilio_python() {
    let params = vector_params();
    assert_eq!(
        signing_string(VECTOR_URL, &params),
        "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212"
    );
    assert_eq!(
        compute_signature(TOKEN, VECTOR_URL, &params),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
    assert_eq!(
        validate(
            TOKEN,
            VECTOR_URL,
            Signed::Form(&params),
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ),
        Ok(())
    );
}

#[test]
fn vector_https_with_explicit_port_validates_the_portless_signature() {
    let params = vector_params();
    let url = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert_eq!(
        validate(
            TOKEN,
            url,
            Signed::Form(&params),
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ),
        Ok(())
    );
}

#[test]
fn vector_http_with_port_1234_is_hashed_with_the_port() {
    let params = vector_params();
    let url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert_eq!(
        compute_signature(TOKEN, url, &params),
        "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
    );
    assert_eq!(
        validate(
            TOKEN,
            url,
            Signed::Form(&params),
            Some("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")
        ),
        Ok(())
    );
}

#[test]
fn vector_https_signed_with_443_validates_on_the_portless_url() {
    let params = vector_params();
    assert_eq!(
        compute_signature(
            TOKEN,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params
        ),
        "kvajT1Ptam85bY51eRf/AJRuM3w="
    );
    assert_eq!(
        port_variants(VECTOR_URL)[0],
        "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    );
    assert_eq!(
        validate(
            TOKEN,
            VECTOR_URL,
            Signed::Form(&params),
            Some("kvajT1Ptam85bY51eRf/AJRuM3w=")
        ),
        Ok(())
    );
}

#[test]
fn vector_http_signed_with_80_validates_on_the_portless_url() {
    let params = vector_params();
    let url = "http://mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(
        compute_signature(
            TOKEN,
            "http://mycompany.com:80/myapp.php?foo=1&bar=2",
            &params
        ),
        "0ZXoZLH/DfblKGATFgpif+LLRf4="
    );
    assert_eq!(
        validate(
            TOKEN,
            url,
            Signed::Form(&params),
            Some("0ZXoZLH/DfblKGATFgpif+LLRf4=")
        ),
        Ok(())
    );
}

#[test]
fn vector_duplicate_values_are_deduplicated_and_sorted() {
    let params = p(&[
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]);
    assert_eq!(
        signing_string(VECTOR_URL, &params),
        "https://mycompany.com/myapp.php?foo=1&bar=2Digits1234Digits5678SidCA123SidAccountAC123"
    );
    assert_eq!(
        compute_signature(TOKEN, VECTOR_URL, &params),
        "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    );
    assert_eq!(
        validate(
            TOKEN,
            VECTOR_URL,
            Signed::Form(&params),
            Some("IK+Dwps556ElfBT0I3Rgjkr1wJU=")
        ),
        Ok(())
    );
}

const JSON_BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

#[test]
fn vector_json_body_signs_the_url_with_body_sha256_and_checks_the_hash() {
    assert_eq!(twilio::signature::body_sha256(JSON_BODY), JSON_HASH);
    assert_eq!(
        compute_signature(TOKEN, &format!("{VECTOR_URL}&bodySHA256={JSON_HASH}"), &[]),
        "a9nBmqA0ju/hNViExpshrM61xv4="
    );
    let signed = Signed::Json {
        body: JSON_BODY,
        body_sha256: JSON_HASH,
    };
    assert_eq!(
        validate(
            TOKEN,
            VECTOR_URL,
            signed,
            Some("a9nBmqA0ju/hNViExpshrM61xv4=")
        ),
        Ok(())
    );
    // A different body no longer matches the hash the signature covers.
    let tampered = Signed::Json {
        body: br#"{"property": "value", "boolean": false}"#,
        body_sha256: JSON_HASH,
    };
    assert_eq!(
        validate(
            TOKEN,
            VECTOR_URL,
            tampered,
            Some("a9nBmqA0ju/hNViExpshrM61xv4=")
        ),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn vector_with_wrong_token_tampered_param_or_no_signature_is_refused() {
    let params = vector_params();
    let sig = Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    assert_eq!(
        validate("54321", VECTOR_URL, Signed::Form(&params), sig),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = params.clone();
    tampered[1].1 = "9999".into();
    assert_eq!(
        validate(TOKEN, VECTOR_URL, Signed::Form(&tampered), sig),
        Err(VerifyError::Mismatch)
    );
    // A different URL (the request's own Host behind a proxy) does not match either.
    assert_eq!(
        validate(
            TOKEN,
            "https://internal.local/myapp.php?foo=1&bar=2",
            Signed::Form(&params),
            sig
        ),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        validate(TOKEN, VECTOR_URL, Signed::Form(&params), None),
        Err(VerifyError::Missing(_))
    ));
}

// ---- the connector ----

fn no_env(_: &str) -> Option<String> {
    None
}

fn config(extra: &str) -> String {
    format!(
        r#"
id = "sms"
kind = "twilio"
account_sid = "{ACCOUNT}"
auth_token = "{TOKEN}"
public_url = "{VECTOR_URL}"
{extra}
"#
    )
}

fn connector(extra: &str) -> Twilio {
    twilio::build(
        "sms",
        "connectors[0]",
        toml::from_str(&config(extra)).unwrap(),
        &no_env,
    )
    .unwrap()
}

fn default_connector() -> Twilio {
    connector(r#"from = "+14155550100""#)
}

fn request(
    c: &Twilio,
    method: Method,
    uri: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<Ingress, String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let Some(s) = signature {
        headers.insert("x-twilio-signature", HeaderValue::from_str(s).unwrap());
    }
    let body = Bytes::copy_from_slice(body);
    let uri: Uri = uri.parse().unwrap();
    let req = InboundRequest {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
        now: 0,
    };
    let hook = c.webhook().unwrap();
    let v = hook.verify(&req).map_err(|e| format!("verify: {e:?}"))?;
    hook.parse(v).map_err(|e| format!("parse: {e:?}"))
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Signs a form body as Twilio does for the connector's configured URL.
fn sign_form(body: &[u8]) -> String {
    compute_signature(TOKEN, VECTOR_URL, &form_pairs(body))
}

fn post(c: &Twilio, body: &[u8]) -> Vec<RawEvent> {
    match request(
        c,
        Method::POST,
        "/webhooks/sms",
        body,
        Some(&sign_form(body)),
    ) {
        Ok(Ingress::Events(evs)) => evs,
        other => panic!("expected events, got {other:?}"),
    }
}

fn stored(e: RawEvent) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: "sms".into(),
        provider_event_id: e.provider_event_id,
        kind: e.kind,
        occurred_at: e.occurred_at,
        received_at: 1_700_000_000_000,
        headers: e.headers,
        payload: e.payload,
    }
}

fn normalize_fixture(name: &str) -> Vec<switchboard_core::NormalizedEvent> {
    let c = default_connector();
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "twilio", name);
    let mut evs = post(&c, &body);
    assert_eq!(evs.len(), 1);
    c.normalizer().normalize(&stored(evs.remove(0))).unwrap()
}

#[test]
fn webhook_accepts_the_vector_form_signed_for_the_configured_url_not_the_request_host() {
    let c = default_connector();
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "twilio", "voice_vector.form");
    // Both Twilio spellings of the URL (with :443 and without a port) are accepted, whatever
    // path and host the request itself reached us on.
    for sig in [
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        "kvajT1Ptam85bY51eRf/AJRuM3w=",
    ] {
        let got = request(&c, Method::POST, "/webhooks/sms", &body, Some(sig));
        assert!(
            matches!(got, Ok(Ingress::Events(ref e)) if e.len() == 1),
            "{got:?}"
        );
    }
}

#[test]
fn webhook_refuses_missing_wrong_and_tampered_signatures() {
    let c = default_connector();
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "twilio", "inbound_sms.form");
    let good = sign_form(&body);
    assert_eq!(
        request(&c, Method::POST, "/webhooks/sms", &body, None).unwrap_err(),
        "verify: Missing(\"X-Twilio-Signature\")"
    );
    let wrong_token = compute_signature("not-the-token", VECTOR_URL, &form_pairs(&body));
    assert_eq!(
        request(&c, Method::POST, "/webhooks/sms", &body, Some(&wrong_token)).unwrap_err(),
        "verify: Mismatch"
    );
    let mut tampered = body.clone();
    tampered.extend_from_slice(b"&Body=refund+me");
    assert_eq!(
        request(&c, Method::POST, "/webhooks/sms", &tampered, Some(&good)).unwrap_err(),
        "verify: Mismatch"
    );
    assert!(
        request(&c, Method::POST, "/webhooks/sms", &body, Some("%%%"))
            .unwrap_err()
            .starts_with("verify: Malformed")
    );
    assert_eq!(
        request(&c, Method::GET, "/webhooks/sms", &body, Some(&good)).unwrap_err(),
        "verify: MethodNotAllowed"
    );
}

#[test]
fn webhook_verifies_a_json_body_through_body_sha256_in_the_query() {
    let c = default_connector();
    let uri = format!("/webhooks/sms?bodySHA256={JSON_HASH}");
    let got = request(
        &c,
        Method::POST,
        &uri,
        JSON_BODY,
        Some("a9nBmqA0ju/hNViExpshrM61xv4="),
    );
    let Ok(Ingress::Events(evs)) = got else {
        panic!("{got:?}")
    };
    assert_eq!(evs[0].kind, "json");
    assert_eq!(evs[0].payload.as_ref(), JSON_BODY);
    let out = c.normalizer().normalize(&stored(evs[0].clone())).unwrap();
    assert!(matches!(out[0].body, EventBody::Unsupported { .. }));
    let bad = request(
        &c,
        Method::POST,
        &uri,
        br#"{"property": "other", "boolean": true}"#,
        Some("a9nBmqA0ju/hNViExpshrM61xv4="),
    );
    assert_eq!(bad.unwrap_err(), "verify: Mismatch");
}

#[test]
fn inbound_sms_is_one_raw_event_keyed_by_message_sid_with_exact_bytes() {
    let c = default_connector();
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "twilio", "inbound_sms.form");
    let evs = post(&c, &body);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        evs[0].provider_event_id,
        "SM1f0e8ae6ade43cb3c0ce4525424e404f"
    );
    assert_eq!(evs[0].kind, "message");
    assert_eq!(evs[0].payload.as_ref(), body.as_slice());
}

#[test]
fn inbound_sms_normalises_to_a_message_with_phone_and_reply_thread() {
    let out = normalize_fixture("inbound_sms.form");
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.channel, "sms");
    assert_eq!(e.direction, Direction::Inbound);
    assert_eq!(e.thread_key.as_deref(), Some("+14155550123|+14155550100"));
    assert_eq!(e.claims, vec![IdentityClaim::phone("+14155550123")]);
    assert_eq!(e.occurred_at, 1_700_000_000_000, "received_at stands in");
    assert_eq!(
        e.body,
        EventBody::Message {
            message_id: Some("SM1f0e8ae6ade43cb3c0ce4525424e404f".into()),
            text: "Where is my order?".into(),
            attachments: vec![],
            reply_to: None,
        }
    );
}

#[test]
fn inbound_mms_keeps_each_media_url_and_content_type() {
    let out = normalize_fixture("inbound_mms.form");
    let EventBody::Message {
        text, attachments, ..
    } = &out[0].body
    else {
        panic!("{out:?}")
    };
    assert_eq!(text, "Photo of the damaged box");
    assert_eq!(attachments.len(), 2);
    assert_eq!(attachments[0].kind.as_deref(), Some("image"));
    assert_eq!(attachments[0].content_type.as_deref(), Some("image/jpeg"));
    assert!(attachments[0]
        .url
        .as_deref()
        .unwrap()
        .ends_with("/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9"));
    assert_eq!(attachments[1].kind.as_deref(), Some("file"));
    assert_eq!(
        attachments[1].content_type.as_deref(),
        Some("application/pdf")
    );
}

#[test]
fn media_count_is_bounded_at_ten() {
    let c = default_connector();
    let mut body = String::from(
        "MessageSid=SMmany&From=%2B14155550123&To=%2B14155550100&NumMedia=99999999999999999999",
    );
    for i in 0..12 {
        body.push_str(&format!("&MediaUrl{i}=https%3A%2F%2Fm.example%2F{i}"));
    }
    let evs = post(&c, body.as_bytes());
    let out = c.normalizer().normalize(&stored(evs[0].clone())).unwrap();
    // NumMedia that does not parse reads no media; a sane one is capped at 10.
    assert!(
        matches!(&out[0].body, EventBody::Unsupported { .. }),
        "{out:?}"
    );
    let body = body.replace("NumMedia=99999999999999999999", "NumMedia=12");
    let evs = post(&c, body.as_bytes());
    let out = c.normalizer().normalize(&stored(evs[0].clone())).unwrap();
    let EventBody::Message { attachments, .. } = &out[0].body else {
        panic!("{out:?}")
    };
    assert_eq!(attachments.len(), 10);
}

#[test]
fn inbound_whatsapp_strips_the_prefix_for_the_phone_and_keeps_it_in_the_thread() {
    let out = normalize_fixture("inbound_whatsapp.form");
    let e = &out[0];
    assert_eq!(e.channel, "whatsapp");
    assert_eq!(
        e.thread_key.as_deref(),
        Some("whatsapp:+14155550123|whatsapp:+14155238886")
    );
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::phone("+14155550123"),
            IdentityClaim::platform_id("whatsapp:+14155238886", "14155550123"),
            IdentityClaim::name("Ada Lovelace"),
        ]
    );
    assert!(
        matches!(&e.body, EventBody::Message { text, .. } if text == "Hi, same question on WhatsApp")
    );
}

#[test]
fn status_callbacks_are_keyed_per_state_and_move_our_message() {
    let c = default_connector();
    let body = fixture(
        env!("CARGO_MANIFEST_DIR"),
        "twilio",
        "status_delivered.form",
    );
    let evs = post(&c, &body);
    assert_eq!(
        evs[0].provider_event_id,
        "SM5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e:delivered"
    );
    assert_eq!(evs[0].kind, "status");
    let out = c.normalizer().normalize(&stored(evs[0].clone())).unwrap();
    assert_eq!(out[0].direction, Direction::Outbound);
    assert!(out[0].claims.is_empty());
    assert_eq!(
        out[0].body,
        EventBody::Status {
            message_id: "SM5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e".into(),
            status: "delivered".into(),
            reason: None,
        }
    );
}

#[test]
fn undelivered_maps_to_failed_with_the_error_code_meaning() {
    let out = normalize_fixture("status_undelivered.form");
    let EventBody::Status { status, reason, .. } = &out[0].body else {
        panic!("{out:?}")
    };
    assert_eq!(status, "failed");
    assert_eq!(
        reason.as_deref(),
        Some("Twilio error 30007: filtered by the carrier as spam")
    );
}

#[test]
fn whatsapp_63016_failure_says_outside_the_24_hour_window() {
    let out = normalize_fixture("status_whatsapp_failed_63016.form");
    assert_eq!(out[0].channel, "whatsapp");
    let EventBody::Status { status, reason, .. } = &out[0].body else {
        panic!("{out:?}")
    };
    assert_eq!(status, "failed");
    let reason = reason.as_deref().unwrap();
    assert!(
        reason.starts_with("Twilio error 63016: outside the WhatsApp 24-hour window"),
        "{reason}"
    );
    assert!(reason.contains("outside the allowed window"), "{reason}");
}

#[test]
fn voice_vector_is_kept_as_unsupported_on_the_callers_timeline() {
    let out = normalize_fixture("voice_vector.form");
    assert!(matches!(&out[0].body, EventBody::Unsupported { reason } if reason.contains("voice")));
    assert_eq!(out[0].claims, vec![IdentityClaim::phone("+14158675309")]);
}

#[test]
fn unknown_status_and_empty_message_are_unsupported_not_dropped() {
    let c = default_connector();
    for body in [
        &b"MessageSid=SMx&MessageStatus=partially_delivered&To=%2B14155550123&From=%2B14155550100"
            [..],
        &b"MessageSid=SMy&From=%2B14155550123&To=%2B14155550100&Body="[..],
        &b"MessageSid=SMz&Body=no+sender"[..],
        &b"Unrelated=1"[..],
        &b"%ff%fe=%00&&&==&MessageSid"[..],
    ] {
        let evs = post(&c, body);
        let out = c.normalizer().normalize(&stored(evs[0].clone())).unwrap();
        assert_eq!(out.len(), 1);
        assert!(
            matches!(out[0].body, EventBody::Unsupported { .. }),
            "{:?} → {out:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn whatsapp_reply_to_and_location_are_read() {
    let c = default_connector();
    let body = b"MessageSid=SMloc&From=whatsapp%3A%2B14155550123&To=whatsapp%3A%2B14155238886&Body=&Latitude=51.5&Longitude=-0.12&Address=Baker+St&OriginalRepliedMessageSid=SMprev";
    let evs = post(&c, body);
    let out = c.normalizer().normalize(&stored(evs[0].clone())).unwrap();
    let EventBody::Message {
        attachments,
        reply_to,
        ..
    } = &out[0].body
    else {
        panic!("{out:?}")
    };
    assert_eq!(reply_to.as_deref(), Some("SMprev"));
    assert_eq!(attachments[0].kind.as_deref(), Some("location"));
    assert_eq!(attachments[0].url.as_deref(), Some("geo:51.5,-0.12"));
    assert_eq!(attachments[0].name.as_deref(), Some("Baker St"));
}

// ---- config ----

fn build_err(cfg: &str) -> String {
    let env = |k: &str| (k == "TW_TOKEN").then(|| "from-env".to_string());
    match twilio::build("sms", "connectors[1]", toml::from_str(cfg).unwrap(), &env) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_errors_name_the_exact_key() {
    let base = |extra: &str| {
        format!("id = \"sms\"\nkind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\npublic_url = \"https://hub.example.com/webhooks/sms\"\n{extra}")
    };
    assert_eq!(
        build_err(&base("from = \"+1415\"")),
        "connectors[1].auth_token: missing (set `auth_token` or `auth_token_env`)"
    );
    assert_eq!(
        build_err(&base(
            "auth_token_env = \"TW_TOKEN\"\nfrom = \"+14155550100\""
        )),
        "ok"
    );
    assert_eq!(
        build_err(&base("auth_token_env = \"NOPE\"\nfrom = \"+14155550100\"")),
        "connectors[1].auth_token_env: environment variable NOPE is not set or empty"
    );
    assert_eq!(
        build_err(&base("auth_token = \"t\"")),
        "connectors[1].from: missing (set `from` or `messaging_service_sid`)"
    );
    assert_eq!(
        build_err(&base(
            "auth_token = \"t\"\nmessaging_service_sid = \"MGabc123\""
        )),
        "ok"
    );
    assert!(
        build_err(&base("auth_token = \"t\"\nmessaging_service_sid = \"PN1\""))
            .starts_with("connectors[1].messaging_service_sid:")
    );
    assert!(
        build_err(&base("auth_token = \"t\"\nfrom = \"+1\"\nfrm = \"x\""))
            .contains("unknown field `frm`")
    );
    assert!(build_err(&base(
        "auth_token = \"t\"\nfrom = \"+1\"\napi_base = \"ftp://x\""
    ))
    .starts_with("connectors[1].api_base:"));
    let no_url = format!(
        "id = \"sms\"\nkind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"t\"\nfrom = \"+1\"\npublic_url = \"/webhooks/sms\""
    );
    assert!(build_err(&no_url)
        .starts_with("connectors[1].public_url: `/webhooks/sms` is not an absolute http(s) URL"));
    let bad_sid = base("auth_token = \"t\"\nfrom = \"+1\"").replace(ACCOUNT, "AC/../x");
    assert!(build_err(&bad_sid).starts_with("connectors[1].account_sid:"));
}

// ---- send ----

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}

fn reply(thread: &str) -> OutboundMessage {
    OutboundMessage {
        id: "r1".into(),
        idempotency_key: "idem-1".into(),
        thread_key: thread.into(),
        text: "Your parcel left today".into(),
        attachment_urls: vec!["https://cdn.example.com/label.pdf".into()],
        in_reply_to: Some("SM1f0e8ae6ade43cb3c0ce4525424e404f".into()),
    }
}

async fn fake_connector(extra: &str, answers: Vec<Answer>) -> (FakeProvider, Twilio) {
    let fake = FakeProvider::start().await;
    fake.on("POST", &messages_path(), answers);
    let c = connector(&format!("{extra}\napi_base = \"{}\"", fake.base));
    (fake, c)
}

fn ok_answer() -> Answer {
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "twilio", "send_ok.json");
    Answer::status_json(201, serde_json::from_slice(&body).unwrap())
}

fn error_answer(status: u16, name: &str) -> Answer {
    let body = fixture(env!("CARGO_MANIFEST_DIR"), "twilio", name);
    Answer::status_json(status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn send_posts_the_form_from_the_number_the_customer_wrote_to() {
    let (fake, c) = fake_connector(r#"from = "+14155559999""#, vec![ok_answer()]).await;
    let sent = c
        .outbound()
        .unwrap()
        .send(&reply("+14155550123|+14155550100"))
        .await
        .unwrap();
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some("SM3d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c")
    );
    let got = fake.received_on(&messages_path());
    assert_eq!(got.len(), 1);
    let r = &got[0];
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(r.header("i-twilio-idempotency-token"), Some("idem-1"));
    let form = r.form();
    let get = |k: &str| -> Vec<&str> {
        form.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("To"), ["+14155550123"]);
    assert_eq!(get("From"), ["+14155550100"], "not the configured default");
    assert_eq!(get("Body"), ["Your parcel left today"]);
    assert_eq!(get("MediaUrl"), ["https://cdn.example.com/label.pdf"]);
    assert_eq!(get("StatusCallback"), [VECTOR_URL]);
    assert!(get("MessagingServiceSid").is_empty());
}

#[tokio::test]
async fn send_without_our_number_uses_config_from_with_the_whatsapp_prefix() {
    let (fake, c) = fake_connector(r#"from = "+14155238886""#, vec![ok_answer()]).await;
    c.outbound()
        .unwrap()
        .send(&reply("whatsapp:+14155550123"))
        .await
        .unwrap();
    let form = fake.received_on(&messages_path())[0].form();
    assert!(form.contains(&("To".into(), "whatsapp:+14155550123".into())));
    assert!(form.contains(&("From".into(), "whatsapp:+14155238886".into())));
}

#[tokio::test]
async fn send_with_a_messaging_service_names_it_and_keeps_a_known_sender() {
    let (fake, c) =
        fake_connector(r#"messaging_service_sid = "MG0123abcd""#, vec![ok_answer()]).await;
    c.outbound()
        .unwrap()
        .send(&reply("+14155550123"))
        .await
        .unwrap();
    let form = fake.received_on(&messages_path())[0].form();
    assert!(form.contains(&("MessagingServiceSid".into(), "MG0123abcd".into())));
    assert!(!form.iter().any(|(k, _)| k == "From"));
    // A conversation that names the pooled number the customer wrote to keeps that sender;
    // Twilio takes MessagingServiceSid "instead of or in addition to" From (error 21603 docs).
    c.outbound()
        .unwrap()
        .send(&reply("+14155550123|+14155550177"))
        .await
        .unwrap();
    let form = fake.received_on(&messages_path())[1].form();
    assert!(form.contains(&("From".into(), "+14155550177".into())));
    assert!(form.contains(&("MessagingServiceSid".into(), "MG0123abcd".into())));
}

#[tokio::test]
async fn send_errors_map_to_rate_limit_unauthorized_permanent_and_transient() {
    let (_fake, c) = fake_connector(
        r#"from = "+14155550100""#,
        vec![
            error_answer(400, "error_21610.json"),
            error_answer(429, "error_20429.json").header("retry-after", "2"),
            error_answer(401, "error_20003.json"),
            Answer::status(503, "upstream busy"),
            // Twilio's code 20429 decides even when the HTTP status is not 429.
            error_answer(400, "error_20429.json"),
        ],
    )
    .await;
    let out = c.outbound().unwrap();
    let m = reply("+14155550123|+14155550100");
    match out.send(&m).await {
        Err(ConnectorError::Permanent(r)) => {
            assert!(r.contains("Twilio error 21610"), "{r}");
            assert!(r.contains("unsubscribed"), "{r}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        out.send(&m).await,
        Err(ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        })
    );
    assert!(
        matches!(out.send(&m).await, Err(ConnectorError::Unauthorized(r)) if r.contains("20003"))
    );
    assert!(matches!(
        out.send(&m).await,
        Err(ConnectorError::Transient(_))
    ));
    assert_eq!(
        out.send(&m).await,
        Err(ConnectorError::RateLimited { retry_after: None })
    );
}

#[tokio::test]
async fn send_to_an_unreachable_api_is_transient_and_names_no_token() {
    let c = connector("from = \"+14155550100\"\napi_base = \"http://127.0.0.1:9\"");
    match c.outbound().unwrap().send(&reply("+14155550123")).await {
        Err(ConnectorError::Transient(r)) => {
            assert!(!r.contains(TOKEN) && !r.contains(ACCOUNT), "{r}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn send_refuses_an_empty_reply_without_calling_twilio() {
    let (fake, c) = fake_connector(r#"from = "+14155550100""#, vec![ok_answer()]).await;
    let mut m = reply("+14155550123");
    m.text.clear();
    m.attachment_urls.clear();
    assert!(matches!(
        c.outbound().unwrap().send(&m).await,
        Err(ConnectorError::Permanent(_))
    ));
    assert!(fake.received().is_empty());
}

#[test]
fn claim_kinds_are_strong_for_phone_so_sms_and_whatsapp_merge() {
    // The hub merges customers on strong claims; both channels emit the same E.164 phone.
    let sms = normalize_fixture("inbound_sms.form");
    let wa = normalize_fixture("inbound_whatsapp.form");
    let phone = |e: &switchboard_core::NormalizedEvent| {
        e.claims
            .iter()
            .find(|c| c.kind == ClaimKind::Phone)
            .map(|c| c.value.clone())
    };
    assert_eq!(phone(&sms[0]), phone(&wa[0]));
    assert!(ClaimKind::Phone.is_strong());
}

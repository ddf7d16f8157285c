//! The inbound-parse kinds on documented payload shapes: Mailgun (HMAC, 5-minute tolerance,
//! token replay), Postmark (Basic auth), SendGrid (Basic auth, ECDSA vector §A.7), each fed to
//! the shared normaliser; and `reply_via`.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use switchboard_core::signature::{hmac, Algorithm};
use switchboard_core::{
    Connector, EventBody, IdentityClaim, InboundRequest, Ingress, NormalizedEvent, RawEvent,
    StoredEvent, VerifyError,
};

const NOW: i64 = 1_741_000_000;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn build(toml_text: &str) -> Result<Box<dyn Connector>, String> {
    let t: toml::Value = toml::from_str(toml_text).expect("toml");
    let kind = t
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let all = vec![
        t.clone(),
        toml::from_str(
            "id = \"mail\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nusername = \"support@shop.example\"\npassword = \"pw\"\nsmtp_host = \"127.0.0.1\"\nsend_rate_per_sec = 5",
        )
        .expect("toml"),
        toml::from_str("id = \"noimap\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nusername = \"x@shop.example\"\npassword = \"pw\"").expect("toml"),
    ];
    match switchboard_email::build_in(&kind, "in", "connectors[0]", t, &|_| None, &all) {
        Some(r) => r.map_err(|e| e.to_string()),
        None => Err(format!("unknown kind {kind}")),
    }
}

struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn post(content_type: &str, body: Vec<u8>) -> Req {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_str(content_type).expect("ct"),
        );
        Req {
            method: Method::POST,
            uri: Uri::from_static("/webhooks/in"),
            headers,
            body: Bytes::from(body),
        }
    }
    fn header(mut self, k: &'static str, v: &str) -> Req {
        self.headers
            .insert(k, HeaderValue::from_str(v).expect("header"));
        self
    }
    fn at(&self, now: i64) -> InboundRequest<'_> {
        InboundRequest {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            body: &self.body,
            now,
        }
    }
}

/// verify + parse; the single raw event.
fn ingest(c: &dyn Connector, req: &InboundRequest<'_>) -> Result<RawEvent, VerifyError> {
    let w = c.webhook().expect("webhook");
    let v = w.verify(req)?;
    match w.parse(v).expect("parse") {
        Ingress::Events(mut e) => {
            assert_eq!(e.len(), 1);
            Ok(e.remove(0))
        }
        Ingress::Reply(r) => panic!("unexpected reply {r:?}"),
    }
}

fn normalize(c: &dyn Connector, raw: RawEvent) -> NormalizedEvent {
    let stored = StoredEvent {
        id: 1,
        connector_id: "in".into(),
        provider_event_id: raw.provider_event_id,
        kind: raw.kind,
        occurred_at: raw.occurred_at,
        received_at: NOW * 1000,
        headers: raw.headers,
        payload: raw.payload,
    };
    let mut v = c.normalizer().normalize(&stored).expect("normalize");
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

// --- Mailgun ---

const MAILGUN: &str = "id = \"in\"\nkind = \"mailgun\"\nsigning_key = \"key-mg\"\nreply_via = \"mail\"\nown_addresses = [\"support@shop.example\"]";

fn mailgun_form(ts: &str, token: &str, key: &str) -> Vec<u8> {
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fixture("mailgun/route_fields.json")).expect("json");
    let sig = hex::encode(hmac(
        Algorithm::Sha256,
        key.as_bytes(),
        &[ts.as_bytes(), token.as_bytes()],
    ));
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &fields {
        s.append_pair(k, v.as_str().unwrap_or(""));
    }
    s.append_pair("timestamp", ts)
        .append_pair("token", token)
        .append_pair("signature", &sig);
    s.finish().into_bytes()
}

const FORM: &str = "application/x-www-form-urlencoded";

#[test]
fn mailgun_signed_route_is_one_message_with_the_stripped_text_and_refs() {
    let c = build(MAILGUN).expect("config");
    let ts = NOW.to_string();
    let req = Req::post(FORM, mailgun_form(&ts, "tok-1", "key-mg"));
    let raw = ingest(c.as_ref(), &req.at(NOW)).expect("verified");
    assert_eq!(raw.provider_event_id, "<mg-1@example.com>");
    assert_eq!(raw.payload, req.body, "exact bytes stored");
    let e = normalize(c.as_ref(), raw);
    let EventBody::Message {
        text,
        message_id,
        reply_to,
        attachments,
    } = &e.body
    else {
        panic!("{e:?}")
    };
    assert_eq!(text, "Yes, the blue one.");
    assert_eq!(message_id.as_deref(), Some("<mg-1@example.com>"));
    assert_eq!(reply_to.as_deref(), Some("<sb.out-1@shop.example>"));
    let html = attachments
        .iter()
        .find(|a| a.kind.as_deref() == Some("html_body"))
        .expect("html");
    assert!(html
        .url
        .as_deref()
        .is_some_and(|u| u.starts_with("data:text/html")));
    assert!(e.claims.contains(&IdentityClaim::email("ada@example.com")));
    assert!(e
        .thread_refs
        .contains(&"<sb.out-1@shop.example>".to_string()));
    assert_eq!(
        e.occurred_at, 1_741_078_800_000,
        "Date from message-headers"
    );
    // reply_via gives it the email connector's SMTP sender.
    assert!(c.outbound().is_some());
}

#[test]
fn mailgun_refuses_bad_signature_old_timestamp_replayed_token_and_get() {
    let c = build(MAILGUN).expect("config");
    let w = c.webhook().expect("webhook");
    let ts = NOW.to_string();
    let forged = Req::post(FORM, mailgun_form(&ts, "tok-2", "wrong-key"));
    assert_eq!(w.verify(&forged.at(NOW)).err(), Some(VerifyError::Mismatch));
    let old = Req::post(
        FORM,
        mailgun_form(&(NOW - 301).to_string(), "tok-3", "key-mg"),
    );
    assert_eq!(w.verify(&old.at(NOW)).err(), Some(VerifyError::Expired));
    let fine = Req::post(
        FORM,
        mailgun_form(&(NOW - 299).to_string(), "tok-4", "key-mg"),
    );
    assert!(w.verify(&fine.at(NOW)).is_ok());
    // The same signed request again: the token was used.
    assert_eq!(w.verify(&fine.at(NOW)).err(), Some(VerifyError::Expired));
    let mut get = Req::post(FORM, Vec::new());
    get.method = Method::GET;
    assert_eq!(
        w.verify(&get.at(NOW)).err(),
        Some(VerifyError::MethodNotAllowed)
    );
    let unsigned = Req::post(FORM, b"from=a%40b.c".to_vec());
    assert_eq!(
        w.verify(&unsigned.at(NOW)).err(),
        Some(VerifyError::Missing("timestamp"))
    );
}

#[test]
fn mailgun_multipart_with_attachments_lists_them() {
    let c = build(MAILGUN).expect("config");
    let ts = NOW.to_string();
    let sig = hex::encode(hmac(
        Algorithm::Sha256,
        b"key-mg",
        &[ts.as_bytes(), b"tok-mp"],
    ));
    let mut body = String::new();
    for (k, v) in [
        ("from", "Ada <ada@example.com>"),
        ("subject", "files"),
        ("body-plain", "see files"),
        ("Message-Id", "<mp@example.com>"),
        ("attachment-count", "2"),
        ("timestamp", ts.as_str()),
        ("token", "tok-mp"),
        ("signature", sig.as_str()),
    ] {
        body.push_str(&format!(
            "--B\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str("--B\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 xx\r\n");
    body.push_str("--B\r\nContent-Disposition: form-data; name=\"attachment-2\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nJPEG\r\n--B--\r\n");
    let req = Req::post("multipart/form-data; boundary=B", body.into_bytes());
    let raw = ingest(c.as_ref(), &req.at(NOW)).expect("verified");
    let e = normalize(c.as_ref(), raw);
    let EventBody::Message {
        text, attachments, ..
    } = &e.body
    else {
        panic!("{e:?}")
    };
    assert_eq!(text, "see files");
    let names: Vec<_> = attachments
        .iter()
        .filter_map(|a| a.name.as_deref())
        .collect();
    assert_eq!(names, vec!["a.pdf", "p.jpg"]);
    assert_eq!(attachments[0].size, Some(11));
    assert_eq!(attachments[1].kind.as_deref(), Some("image"));
}

// --- Postmark ---

const POSTMARK: &str = "id = \"in\"\nkind = \"postmark\"\nbasic_auth_user = \"pm\"\nbasic_auth_password = \"pm-secret\"";

#[test]
fn postmark_inbound_json_is_a_threaded_message_from_the_sender() {
    let c = build(POSTMARK).expect("config");
    let req = Req::post("application/json", fixture("postmark/inbound.json"))
        .header("authorization", &basic("pm", "pm-secret"));
    let raw = ingest(c.as_ref(), &req.at(NOW)).expect("verified");
    assert_eq!(raw.provider_event_id, "<CAHT0bq3Ye@mail.gmail.com>");
    let e = normalize(c.as_ref(), raw);
    let EventBody::Message {
        text,
        attachments,
        reply_to,
        ..
    } = &e.body
    else {
        panic!("{e:?}")
    };
    assert_eq!(text, "This is the reply text");
    assert_eq!(reply_to.as_deref(), Some("<sb.out-9@shop.example>"));
    assert!(e
        .claims
        .contains(&IdentityClaim::email("support@postmarkapp.com")));
    assert!(e
        .claims
        .contains(&IdentityClaim::email("replyto@example.com")));
    assert!(e
        .claims
        .contains(&IdentityClaim::name("Postmarkapp Support")));
    let logo = attachments
        .iter()
        .find(|a| a.name.as_deref() == Some("logo.png"))
        .expect("logo");
    assert_eq!(logo.media_id.as_deref(), Some("<logo@postmark>"));
    assert_eq!(logo.size, Some(8));
    let html = attachments
        .iter()
        .find(|a| a.kind.as_deref() == Some("html_body"))
        .expect("html");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(
            html.url
                .as_deref()
                .and_then(|u| u.split_once(";base64,"))
                .map(|(_, b)| b)
                .expect("data url"),
        )
        .expect("b64");
    let decoded = String::from_utf8(decoded).expect("utf8");
    assert!(
        decoded.contains("test html body") && !decoded.contains("onerror"),
        "{decoded}"
    );
    // Postmark's Date has a colon in its zone; it still parses.
    assert_eq!(e.occurred_at, 1_406_925_932_000);
}

#[test]
fn postmark_refuses_missing_and_wrong_basic_auth() {
    let c = build(POSTMARK).expect("config");
    let w = c.webhook().expect("webhook");
    let none = Req::post("application/json", fixture("postmark/inbound.json"));
    assert_eq!(
        w.verify(&none.at(NOW)).err(),
        Some(VerifyError::Missing("authorization"))
    );
    let wrong = Req::post("application/json", fixture("postmark/inbound.json"))
        .header("authorization", &basic("pm", "nope"));
    assert_eq!(w.verify(&wrong.at(NOW)).err(), Some(VerifyError::Mismatch));
}

// --- SendGrid ---

const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";

#[test]
fn sendgrid_inbound_parse_is_a_message_with_its_attachment() {
    let c = build("id = \"in\"\nkind = \"sendgrid\"\nbasic_auth_user = \"sg\"\nbasic_auth_password = \"sg-secret\"").expect("config");
    let req = Req::post(
        "multipart/form-data; boundary=xYzZY",
        fixture("sendgrid/inbound_parse.multipart"),
    )
    .header("authorization", &basic("sg", "sg-secret"));
    let raw = ingest(c.as_ref(), &req.at(NOW)).expect("verified");
    assert_eq!(raw.provider_event_id, "<CAJ3+sg@example.com>");
    let e = normalize(c.as_ref(), raw);
    let EventBody::Message {
        text,
        attachments,
        reply_to,
        ..
    } = &e.body
    else {
        panic!("{e:?}")
    };
    assert_eq!(text, "Hello Sendgrid!");
    assert_eq!(reply_to.as_deref(), Some("<sb.out-3@shop.example>"));
    assert_eq!(
        e.claims,
        vec![
            IdentityClaim::email("test@example.com"),
            IdentityClaim::name("Example User")
        ]
    );
    let note = attachments
        .iter()
        .find(|a| a.name.as_deref() == Some("note.txt"))
        .expect("note");
    assert_eq!(note.size, Some(6));
    assert_eq!(note.content_type.as_deref(), Some("text/plain"));
    let wrong = Req::post("multipart/form-data; boundary=xYzZY", Vec::new())
        .header("authorization", &basic("sg", "x"));
    assert_eq!(
        c.webhook().expect("webhook").verify(&wrong.at(NOW)).err(),
        Some(VerifyError::Mismatch)
    );
}

#[test]
fn sendgrid_ecdsa_policy_accepts_the_a7_vector_and_refuses_changes() {
    let c = build(&format!(
        "id = \"in\"\nkind = \"sendgrid\"\nverification_key = \"{SENDGRID_KEY}\""
    ))
    .expect("config");
    let w = c.webhook().expect("webhook");
    let payload = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";
    let sig = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    let signed = |body: &str, ts: &str| {
        Req::post("application/json", body.as_bytes().to_vec())
            .header("x-twilio-email-event-webhook-signature", sig)
            .header("x-twilio-email-event-webhook-timestamp", ts)
    };
    assert!(w
        .verify(&signed(payload, "1600112502").at(1_600_112_502))
        .is_ok());
    assert_eq!(
        w.verify(&signed("payload", "1600112502").at(1_600_112_502))
            .err(),
        Some(VerifyError::Mismatch)
    );
    assert_eq!(
        w.verify(&signed(payload, "1600112503").at(1_600_112_502))
            .err(),
        Some(VerifyError::Mismatch)
    );
    // Valid signature, but replayed long after: refused by the timestamp tolerance.
    assert_eq!(
        w.verify(&signed(payload, "1600112502").at(1_600_112_502 + 3600))
            .err(),
        Some(VerifyError::Expired)
    );
    let unsigned = Req::post("application/json", payload.as_bytes().to_vec());
    assert_eq!(
        w.verify(&unsigned.at(1_600_112_502)).err(),
        Some(VerifyError::Missing("signature"))
    );
}

#[test]
fn config_errors_name_the_exact_key() {
    let e = build("id = \"in\"\nkind = \"sendgrid\"")
        .err()
        .expect("no auth");
    assert!(e.starts_with("connectors[0].basic_auth_user"), "{e}");
    let e = build("id = \"in\"\nkind = \"sendgrid\"\nverification_key = \"bm9wZQ==\"")
        .err()
        .expect("bad key");
    assert!(e.starts_with("connectors[0].verification_key"), "{e}");
    let e = build("id = \"in\"\nkind = \"mailgun\"")
        .err()
        .expect("no key");
    assert!(e.starts_with("connectors[0].signing_key"), "{e}");
    let e = build("id = \"in\"\nkind = \"postmark\"\nbasic_auth_user = \"u\"\nbasic_auth_password = \"p\"\nreply_via = \"nobody\"").err().expect("unknown");
    assert!(
        e.starts_with("connectors[0].reply_via") && e.contains("nobody"),
        "{e}"
    );
    let e = build("id = \"in\"\nkind = \"postmark\"\nbasic_auth_user = \"u\"\nbasic_auth_password = \"p\"\nreply_via = \"noimap\"").err().expect("no smtp");
    assert!(
        e.starts_with("connectors[0].reply_via") && e.contains("smtp_host"),
        "{e}"
    );
    let e = build("id = \"in\"\nkind = \"mailgun\"\nsigning_key = \"k\"\nsigning_kye = \"typo\"")
        .err()
        .expect("unknown key");
    assert!(e.contains("signing_kye"), "{e}");
    let e = build("id = \"in\"\nkind = \"email\"\nimap_host = \"h\"\nusername = \"u@x.com\"\npassword = \"p\"\nimap_tls = \"ssl\"").err().expect("bad tls");
    assert!(e.starts_with("connectors[0].imap_tls"), "{e}");
    let e = build("id = \"in\"\nkind = \"email\"\nimap_host = \"h\"\nusername = \"u\"\npassword = \"p\"\nsmtp_host = \"s\"").err().expect("no from");
    assert!(e.starts_with("connectors[0].from_address"), "{e}");
}

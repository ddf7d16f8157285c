//! The Twilio connector end to end through the real app, on SQLite and PostgreSQL: signed
//! form webhooks on `/webhooks/{id}` (the twilio-python vector's port variants, refusals),
//! SMS and WhatsApp messages on one customer, dedupe on MessageSid, replies delivered to a
//! fake Twilio Messages API, status callbacks, and Twilio's errors.

mod common;

use std::time::Duration;

use common::{spawn_app_with, Db, TestApp};
use serde_json::json;
use switchboard_core::fake::{Answer, FakeProvider};
use switchboard_social::twilio::signature::compute_signature;

const TOKEN: &str = "12345";
const ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// The URL of TEST VECTORS §A.3, configured as `public_url`: the request itself reaches the
/// app on `http://127.0.0.1:PORT/webhooks/tw`, as behind a proxy.
const PUBLIC_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const OUR_NUMBER: &str = "+14155550100";
const CUSTOMER: &str = "+14155550123";

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}

async fn app(db: Db, api_base: &str) -> Option<TestApp> {
    let table: toml::Value = toml::from_str(&format!(
        r#"
id = "tw"
kind = "twilio"
account_sid = "{ACCOUNT}"
auth_token = "{TOKEN}"
public_url = "{PUBLIC_URL}"
from = "+14155559999"
api_base = "{api_base}"
send_rate_per_sec = 200
send_burst = 50
"#
    ))
    .expect("twilio table");
    spawn_app_with(db, |s| s.connectors.push(table)).await
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Posts `params` form-encoded with the given signature header (none when `None`).
async fn post_form(
    app: &TestApp,
    params: &[(String, String)],
    signature: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/tw", app.addr))
        .form(params);
    if let Some(s) = signature {
        req = req.header("x-twilio-signature", s);
    }
    req.send().await.expect("request")
}

/// Asserts the empty TwiML answer Twilio expects.
async fn assert_twiml_ack(r: reqwest::Response) {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/xml");
    let body = r.text().await.expect("body");
    assert!(body.ends_with("<Response/>"), "{body}");
}

/// Posts `params` signed as Twilio signs them for `PUBLIC_URL`; returns how many raw events
/// the delivery stored (0 for a duplicate).
async fn twilio_posts(app: &TestApp, params: &[(String, String)]) -> i64 {
    let before = app.store.count("raw_events").await.unwrap();
    let sig = compute_signature(TOKEN, PUBLIC_URL, params);
    let r = post_form(app, params, Some(&sig)).await;
    assert_twiml_ack(r).await;
    app.store.count("raw_events").await.unwrap() - before
}

fn inbound_sms(sid: &str, text: &str) -> Vec<(String, String)> {
    pairs(&[
        ("ToCountry", "US"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", text),
        ("To", OUR_NUMBER),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT),
        ("From", CUSTOMER),
        ("ApiVersion", "2010-04-01"),
    ])
}

fn inbound_whatsapp(sid: &str, text: &str) -> Vec<(String, String)> {
    pairs(&[
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ProfileName", "Ada Lovelace"),
        ("MessageType", "text"),
        ("WaId", "14155550123"),
        ("SmsStatus", "received"),
        ("Body", text),
        ("To", "whatsapp:+14155238886"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT),
        ("From", "whatsapp:+14155550123"),
        ("ApiVersion", "2010-04-01"),
    ])
}

fn status(sid: &str, status: &str, error_code: Option<&str>) -> Vec<(String, String)> {
    let mut p = pairs(&[
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", CUSTOMER),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT),
        ("From", OUR_NUMBER),
        ("ApiVersion", "2010-04-01"),
    ]);
    if let Some(c) = error_code {
        p.push(("ErrorCode".into(), c.into()));
    }
    p
}

async fn customer_by_phone(app: &TestApp, phone: &str) -> Vec<serde_json::Value> {
    let found = app
        .get_json(&format!(
            "/api/v1/customers?phone={}",
            phone.replace('+', "%2B")
        ))
        .await;
    found["items"].as_array().cloned().unwrap_or_default()
}

async fn timeline(app: &TestApp, customer: &str) -> Vec<serde_json::Value> {
    app.get_json(&format!("/api/v1/customers/{customer}/timeline"))
        .await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn conversation_of(app: &TestApp, thread: &str) -> String {
    let list = app
        .get_json("/api/v1/conversations?connector=tw&limit=200")
        .await;
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["thread_key"] == thread))
        .and_then(|c| c["id"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no conversation {thread}: {list}"))
}

async fn reply(app: &TestApp, conv: &str, key: &str, text: &str) -> String {
    let r = app
        .client
        .post(format!("{}/api/v1/conversations/{conv}/replies", app.addr))
        .bearer_auth(&app.token)
        .header("idempotency-key", key)
        .json(&json!({ "text": text }))
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 202);
    let m: serde_json::Value = r.json().await.expect("json");
    m["id"].as_str().expect("message id").to_string()
}

fn vector_params() -> Vec<(String, String)> {
    pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ])
}

async fn vector_signed_with_and_without_443_is_accepted_as_an_unsupported_voice_entry(db: Db) {
    let Some(app) = app(db, "http://127.0.0.1:9").await else {
        return;
    };
    let params = vector_params();
    // Signed over the port-less URL (the vector's expected value) …
    let r = post_form(&app, &params, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")).await;
    assert_twiml_ack(r).await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 1);
    // … and over `https://mycompany.com:443/…`: verified too, then a duplicate of the same
    // delivery (same bytes), so nothing new is stored.
    let r = post_form(&app, &params, Some("kvajT1Ptam85bY51eRf/AJRuM3w=")).await;
    assert_twiml_ack(r).await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 1);
    app.drain().await;
    // The vector is a voice call: kept and visible on the caller's timeline as unsupported.
    let found = customer_by_phone(&app, "+14158675309").await;
    assert_eq!(found.len(), 1);
    let tl = timeline(&app, found[0]["id"].as_str().unwrap()).await;
    assert_eq!(tl.len(), 1);
    assert_eq!(tl[0]["kind"], "unsupported");
    assert!(
        tl[0]["body"]["reason"].as_str().unwrap().contains("voice"),
        "{}",
        tl[0]
    );
    app.stop().await;
}
on_both_backends!(
    vector_signed_with_and_without_443_is_accepted_as_an_unsupported_voice_entry,
    super::vector_signed_with_and_without_443_is_accepted_as_an_unsupported_voice_entry
);

async fn missing_wrong_token_and_tampered_signatures_are_401_and_store_nothing(db: Db) {
    let Some(app) = app(db, "http://127.0.0.1:9").await else {
        return;
    };
    let params = inbound_sms("SMbad00000000000000000000000000001", "hello");
    let r = post_form(&app, &params, None).await;
    common::assert_problem(r, 401, "missing_signature").await;
    let wrong = compute_signature("not-the-token", PUBLIC_URL, &params);
    let r = post_form(&app, &params, Some(&wrong)).await;
    common::assert_problem(r, 401, "bad_signature").await;
    let good = compute_signature(TOKEN, PUBLIC_URL, &params);
    let mut tampered = params.clone();
    tampered.push(("Body".into(), "refund me".into()));
    let r = post_form(&app, &tampered, Some(&good)).await;
    common::assert_problem(r, 401, "bad_signature").await;
    // Signed for the URL the request really reached (the Host header), not the configured
    // one: refused, since Twilio signs the URL it was configured with.
    let host_url = format!("{}/webhooks/tw", app.addr);
    let by_host = compute_signature(TOKEN, &host_url, &params);
    let r = post_form(&app, &params, Some(&by_host)).await;
    common::assert_problem(r, 401, "bad_signature").await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    missing_wrong_token_and_tampered_signatures_are_401_and_store_nothing,
    super::missing_wrong_token_and_tampered_signatures_are_401_and_store_nothing
);

async fn sms_and_whatsapp_from_one_number_are_one_customer_and_a_repeated_sid_is_dropped(db: Db) {
    let Some(app) = app(db, "http://127.0.0.1:9").await else {
        return;
    };
    let sms = inbound_sms("SM1f0e8ae6ade43cb3c0ce4525424e404f", "Where is my order?");
    assert_eq!(twilio_posts(&app, &sms).await, 1);
    let wa = inbound_whatsapp("SM9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b", "Same question here");
    assert_eq!(twilio_posts(&app, &wa).await, 1);
    // Twilio retries the SMS webhook: same MessageSid, nothing new.
    assert_eq!(twilio_posts(&app, &sms).await, 0);
    app.drain().await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 2);

    let found = customer_by_phone(&app, CUSTOMER).await;
    assert_eq!(found.len(), 1, "one person across SMS and WhatsApp");
    assert_eq!(found[0]["display_name"], "Ada Lovelace");
    let tl = timeline(&app, found[0]["id"].as_str().unwrap()).await;
    assert_eq!(tl.len(), 2, "{tl:?}");
    let mut channels: Vec<&str> = tl.iter().filter_map(|e| e["channel"].as_str()).collect();
    channels.sort();
    assert_eq!(channels, ["sms", "whatsapp"]);
    assert!(tl.iter().all(|e| e["kind"] == "message"));
    let texts: Vec<&str> = tl
        .iter()
        .filter_map(|e| e["body"]["text"].as_str())
        .collect();
    assert!(texts.contains(&"Where is my order?"), "{texts:?}");
    assert!(texts.contains(&"Same question here"), "{texts:?}");
    // One conversation per channel and number pair, so replies go back the same way.
    conversation_of(&app, "+14155550123|+14155550100").await;
    conversation_of(&app, "whatsapp:+14155550123|whatsapp:+14155238886").await;
    app.stop().await;
}
on_both_backends!(
    sms_and_whatsapp_from_one_number_are_one_customer_and_a_repeated_sid_is_dropped,
    super::sms_and_whatsapp_from_one_number_are_one_customer_and_a_repeated_sid_is_dropped
);

fn sent_answer(sid: &str) -> Answer {
    Answer::status_json(
        201,
        json!({"account_sid": ACCOUNT, "api_version": "2010-04-01", "sid": sid,
               "status": "queued", "direction": "outbound-api", "to": CUSTOMER,
               "from": OUR_NUMBER, "num_media": "0"}),
    )
}

/// An app with a fake Twilio answering `answers`, and the SMS conversation it has.
async fn with_conversation(
    db: Db,
    answers: Vec<Answer>,
) -> Option<(TestApp, FakeProvider, String)> {
    let fake = FakeProvider::start().await;
    fake.on("POST", &messages_path(), answers);
    let app = app(db, &fake.base).await?;
    twilio_posts(
        &app,
        &inbound_sms("SM1f0e8ae6ade43cb3c0ce4525424e404f", "Where is my order?"),
    )
    .await;
    app.drain().await;
    let conv = conversation_of(&app, "+14155550123|+14155550100").await;
    Some((app, fake, conv))
}

async fn a_reply_goes_from_the_number_written_to_and_a_status_callback_marks_it_delivered(db: Db) {
    let Some((app, fake, conv)) =
        with_conversation(db, vec![sent_answer("SMout0000000000000000000000000001")]).await
    else {
        return;
    };
    let id = reply(&app, &conv, "k-1", "Your parcel left today").await;
    let m = app.wait_message(&conv, &id, |s| s == "sent").await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(
        m["provider_message_id"],
        "SMout0000000000000000000000000001"
    );
    let got = fake.received_on(&messages_path());
    assert_eq!(got.len(), 1);
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(got[0].header("i-twilio-idempotency-token"), Some("k-1"));
    let form = got[0].form();
    assert!(form.contains(&("To".into(), CUSTOMER.into())), "{form:?}");
    // The number the customer wrote to, not the configured default `from`.
    assert!(
        form.contains(&("From".into(), OUR_NUMBER.into())),
        "{form:?}"
    );
    assert!(form.contains(&("Body".into(), "Your parcel left today".into())));

    // Twilio reports delivery to the same signed webhook.
    let r = twilio_posts(
        &app,
        &status("SMout0000000000000000000000000001", "sent", None),
    )
    .await;
    assert_eq!(r, 1);
    let r = twilio_posts(
        &app,
        &status("SMout0000000000000000000000000001", "delivered", None),
    )
    .await;
    assert_eq!(r, 1, "sent and delivered are two events");
    app.drain().await;
    let m = app.wait_message(&conv, &id, |s| s == "delivered").await;
    assert_eq!(m["state"], "delivered", "{m}");
    // Status callbacks are not customer messages.
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c["messages"].as_array().map(Vec::len), Some(2), "{c}");
    app.stop().await;
}
on_both_backends!(
    a_reply_goes_from_the_number_written_to_and_a_status_callback_marks_it_delivered,
    super::a_reply_goes_from_the_number_written_to_and_a_status_callback_marks_it_delivered
);

async fn undelivered_with_an_error_code_shows_the_reply_failed_with_the_reason(db: Db) {
    let Some((app, _fake, conv)) =
        with_conversation(db, vec![sent_answer("SMout0000000000000000000000000002")]).await
    else {
        return;
    };
    let id = reply(&app, &conv, "k-2", "Hello again").await;
    app.wait_message(&conv, &id, |s| s == "sent").await;
    twilio_posts(
        &app,
        &status(
            "SMout0000000000000000000000000002",
            "undelivered",
            Some("30007"),
        ),
    )
    .await;
    app.drain().await;
    let m = app.wait_message(&conv, &id, |s| s == "failed").await;
    assert_eq!(m["state"], "failed", "{m}");
    let err = m["error"].as_str().unwrap_or("");
    assert!(err.contains("30007") && err.contains("carrier"), "{m}");
    app.stop().await;
}
on_both_backends!(
    undelivered_with_an_error_code_shows_the_reply_failed_with_the_reason,
    super::undelivered_with_an_error_code_shows_the_reply_failed_with_the_reason
);

async fn twilio_400_21610_fails_the_reply_at_once_with_the_reason(db: Db) {
    let answer = Answer::status_json(
        400,
        json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient",
               "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}),
    );
    let Some((app, fake, conv)) = with_conversation(db, vec![answer]).await else {
        return;
    };
    let id = reply(&app, &conv, "k-3", "Are you there?").await;
    let m = app.wait_message(&conv, &id, |s| s == "failed").await;
    assert_eq!(m["state"], "failed", "{m}");
    let err = m["error"].as_str().unwrap_or("");
    assert!(err.contains("21610") && err.contains("unsubscribed"), "{m}");
    assert_eq!(m["attempts"], 1);
    assert_eq!(fake.received_on(&messages_path()).len(), 1, "not retried");
    app.stop().await;
}
on_both_backends!(
    twilio_400_21610_fails_the_reply_at_once_with_the_reason,
    super::twilio_400_21610_fails_the_reply_at_once_with_the_reason
);

async fn twilio_429_is_retried_after_retry_after_then_sent(db: Db) {
    let limited = Answer::status_json(
        429,
        json!({"code": 20429, "message": "Too Many Requests", "status": 429}),
    )
    .header("retry-after", "1");
    let Some((app, fake, conv)) = with_conversation(
        db,
        vec![limited, sent_answer("SMout0000000000000000000000000004")],
    )
    .await
    else {
        return;
    };
    let id = reply(&app, &conv, "k-4", "Thanks for waiting").await;
    let m = app.wait_message(&conv, &id, |s| s == "sent").await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(
        m["provider_message_id"],
        "SMout0000000000000000000000000004"
    );
    let got = fake
        .wait_for(&messages_path(), 2, Duration::from_secs(5))
        .await;
    assert_eq!(got.len(), 2);
    assert!(
        got[1].at.duration_since(got[0].at) >= Duration::from_millis(950),
        "Retry-After: 1 honoured"
    );
    // The same idempotency token both times, so Twilio can drop a repeat.
    assert_eq!(
        got[0].header("i-twilio-idempotency-token"),
        got[1].header("i-twilio-idempotency-token")
    );
    app.stop().await;
}
on_both_backends!(
    twilio_429_is_retried_after_retry_after_then_sent,
    super::twilio_429_is_retried_after_retry_after_then_sent
);

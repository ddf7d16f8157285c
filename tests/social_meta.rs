//! The Meta connectors (messenger, instagram, whatsapp) through the real app on SQLite and
//! PostgreSQL: signed deliveries split into timeline messages, dedupe, refusals that store
//! nothing, the GET handshake, replies to each channel via a fake Graph API, WhatsApp
//! statuses, window refusals and echoes of our own sends.

mod common;

use common::{spawn_app_with, Db, TestApp};
use serde_json::{json, Value};
use switchboard_core::fake::{Answer, FakeProvider};

const SECRET: &str = "meta-app-secret";
const VERIFY: &str = "meta-verify-token";
const PAGE: &str = "106540352242922";
const IG_ACCOUNT: &str = "17841405822304914";
const WA_PHONE: &str = "106540352242999";

fn fixture(name: &str) -> Vec<u8> {
    switchboard_core::testkit::fixture(
        concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/social"),
        "meta",
        name,
    )
}

fn sign(body: &[u8]) -> String {
    switchboard_social::meta::sign(SECRET, body)
}

/// The app with `fb` (messenger), `ig` (instagram) and `wa` (whatsapp) sending to `fake`.
async fn app(db: Db, fake: &FakeProvider) -> Option<TestApp> {
    let base = fake.base.clone();
    spawn_app_with(db, move |s| {
        for (id, kind, account, token) in [
            ("fb", "messenger", format!("page_id = \"{PAGE}\""), "page_access_token"),
            ("ig", "instagram", format!("account_id = \"{IG_ACCOUNT}\""), "access_token"),
            ("wa", "whatsapp", format!("phone_number_id = \"{WA_PHONE}\""), "access_token"),
        ] {
            let table: toml::Value = toml::from_str(&format!(
                "id = \"{id}\"\nkind = \"{kind}\"\napp_secret = \"{SECRET}\"\nverify_token = \"{VERIFY}\"\n{account}\n{token} = \"tok-{id}\"\napi_base = \"{base}\"\nsend_rate_per_sec = 200\nsend_burst = 50\n"
            ))
            .expect("connector table");
            s.connectors.push(table);
        }
    })
    .await
}

async fn deliver(
    app: &TestApp,
    connector: &str,
    body: &[u8],
    sig: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/{connector}", app.addr))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = sig {
        req = req.header("x-hub-signature-256", s);
    }
    req.send().await.expect("request")
}

async fn deliver_signed(app: &TestApp, connector: &str, body: &[u8]) {
    let r = deliver(app, connector, body, Some(&sign(body))).await;
    assert_eq!(r.status(), 200, "{connector}: {:?}", r.text().await);
}

/// The conversation of `connector` on `thread`.
async fn conversation(app: &TestApp, connector: &str, thread: &str) -> String {
    let list = app
        .get_json(&format!(
            "/api/v1/conversations?connector={connector}&limit=200"
        ))
        .await;
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["thread_key"] == thread))
        .and_then(|c| c["id"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no conversation {connector}/{thread}: {list}"))
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
    let m: Value = r.json().await.expect("reply body");
    m["id"].as_str().expect("reply id").to_string()
}

async fn a_batch_of_three_entries_with_two_messages_each_is_six_messages_and_a_redelivery_adds_none(
    db: Db,
) {
    let fake = FakeProvider::start().await;
    let Some(app) = app(db, &fake).await else {
        return;
    };
    let body = fixture("messenger_batch.json");
    deliver_signed(&app, "fb", &body).await;
    app.drain().await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 6);
    assert_eq!(app.store.count("timeline_entries").await.unwrap(), 6);
    assert_eq!(app.store.count("conversations").await.unwrap(), 3);
    let conv = conversation(&app, "fb", "1003").await;
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let texts: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["body"]["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["five", "six"],
        "ordered by the provider's timestamps"
    );
    // Meta retries the same delivery: accepted, nothing new.
    deliver_signed(&app, "fb", &body).await;
    app.drain().await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 6);
    assert_eq!(app.store.count("timeline_entries").await.unwrap(), 6);
    app.stop().await;
}
on_both_backends!(
    a_batch_of_three_entries_with_two_messages_each_is_six_messages_and_a_redelivery_adds_none,
    super::a_batch_of_three_entries_with_two_messages_each_is_six_messages_and_a_redelivery_adds_none
);

async fn signatures_are_checked_over_the_exact_bytes_and_a_refusal_stores_nothing(db: Db) {
    let fake = FakeProvider::start().await;
    let Some(app) = app(db, &fake).await else {
        return;
    };
    let escaped = fixture("messenger_unicode_escaped.json");
    let sig = sign(&escaped);
    let decoded = String::from_utf8(escaped.clone())
        .unwrap()
        .replace(r"\u00e4\u00f6\u00e5", "äöå");
    let r = deliver(&app, "fb", decoded.as_bytes(), Some(&sig)).await;
    assert_eq!(
        r.status(),
        401,
        "re-serialised bytes do not match Meta's signature"
    );
    let mut tampered = escaped.clone();
    let at = tampered.iter().position(|b| *b == b'6').unwrap();
    tampered[at] = b'7';
    assert_eq!(
        deliver(&app, "fb", &tampered, Some(&sig)).await.status(),
        401
    );
    let other = switchboard_social::meta::sign("not-the-app-secret", &escaped);
    assert_eq!(
        deliver(&app, "fb", &escaped, Some(&other)).await.status(),
        401
    );
    assert_eq!(deliver(&app, "fb", &escaped, None).await.status(), 401);
    assert_eq!(
        deliver(&app, "fb", &escaped, Some("sha1=abc"))
            .await
            .status(),
        401
    );
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    // The escaped body as Meta signed it is accepted and decoded for the agent.
    assert_eq!(
        deliver(&app, "fb", &escaped, Some(&sig)).await.status(),
        200
    );
    app.drain().await;
    assert_eq!(app.store.count("raw_events").await.unwrap(), 1);
    let conv = conversation(&app, "fb", "6783145918422001").await;
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c["messages"][0]["body"]["text"], "äöå");
    app.stop().await;
}
on_both_backends!(
    signatures_are_checked_over_the_exact_bytes_and_a_refusal_stores_nothing,
    super::signatures_are_checked_over_the_exact_bytes_and_a_refusal_stores_nothing
);

async fn handshake_answers_the_challenge_and_a_wrong_verify_token_is_403(db: Db) {
    let fake = FakeProvider::start().await;
    let Some(app) = app(db, &fake).await else {
        return;
    };
    for id in ["fb", "ig", "wa"] {
        let r = app
            .client
            .get(format!(
                "{}/webhooks/{id}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY}",
                app.addr
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{id}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(r.text().await.unwrap(), "1158201444");
        let r = app
            .client
            .get(format!(
                "{}/webhooks/{id}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong",
                app.addr
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{id}");
    }
    assert_eq!(app.store.count("raw_events").await.unwrap(), 0);
    app.stop().await;
}
on_both_backends!(
    handshake_answers_the_challenge_and_a_wrong_verify_token_is_403,
    super::handshake_answers_the_challenge_and_a_wrong_verify_token_is_403
);

async fn a_reply_reaches_each_channel_with_the_right_recipient_and_whatsapp_context(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &format!("/{PAGE}/messages"),
        [Answer::json(
            json!({"recipient_id": "6783145918422001", "message_id": "m_fb_sent"}),
        )],
    );
    fake.on(
        "POST",
        &format!("/{IG_ACCOUNT}/messages"),
        [Answer::json(
            json!({"recipient_id": "1134567890123456", "message_id": "m_ig_sent"}),
        )],
    );
    fake.on(
        "POST",
        &format!("/{WA_PHONE}/messages"),
        [Answer::json(
            json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.SENT"}]}),
        )],
    );
    let Some(app) = app(db, &fake).await else {
        return;
    };
    deliver_signed(&app, "fb", &fixture("messenger_text.json")).await;
    deliver_signed(&app, "ig", &fixture("instagram_text.json")).await;
    deliver_signed(&app, "wa", &fixture("whatsapp_text.json")).await;
    app.drain().await;
    for (connector, thread, path, provider_id) in [
        (
            "fb",
            "6783145918422001",
            format!("/{PAGE}/messages"),
            "m_fb_sent",
        ),
        (
            "ig",
            "1134567890123456",
            format!("/{IG_ACCOUNT}/messages"),
            "m_ig_sent",
        ),
        (
            "wa",
            "16505551234",
            format!("/{WA_PHONE}/messages"),
            "wamid.SENT",
        ),
    ] {
        let conv = conversation(&app, connector, thread).await;
        let id = reply(&app, &conv, &format!("k-{connector}"), "Thanks, on its way").await;
        let m = app.wait_message(&conv, &id, |s| s == "sent").await;
        assert_eq!(m["state"], "sent", "{connector}: {m}");
        assert_eq!(m["provider_message_id"], provider_id);
        let got = fake.received_on(&path);
        assert_eq!(got.len(), 1, "{connector}");
        assert_eq!(
            got[0].header("authorization"),
            Some(format!("Bearer tok-{connector}").as_str())
        );
        let body = got[0].json();
        match connector {
            "fb" => {
                assert_eq!(body["recipient"]["id"], thread);
                assert_eq!(body["messaging_type"], "RESPONSE");
                assert_eq!(body["message"]["text"], "Thanks, on its way");
                assert_eq!(body["message"]["metadata"], format!("switchboard:{id}"));
            }
            "ig" => {
                assert_eq!(body["recipient"]["id"], thread);
                assert_eq!(body["message"]["text"], "Thanks, on its way");
            }
            _ => {
                assert_eq!(body["to"], thread);
                assert_eq!(body["text"]["body"], "Thanks, on its way");
                assert_eq!(
                    body["context"]["message_id"],
                    "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                    "quotes the customer's latest message"
                );
            }
        }
    }
    app.stop().await;
}
on_both_backends!(
    a_reply_reaches_each_channel_with_the_right_recipient_and_whatsapp_context,
    super::a_reply_reaches_each_channel_with_the_right_recipient_and_whatsapp_context
);

async fn whatsapp_statuses_move_the_reply_to_read_and_a_failed_status_shows_its_reason(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &format!("/{WA_PHONE}/messages"),
        [
            Answer::json(
                json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.OURS1"}]}),
            ),
            Answer::json(
                json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.OURS2"}]}),
            ),
        ],
    );
    let Some(app) = app(db, &fake).await else {
        return;
    };
    deliver_signed(&app, "wa", &fixture("whatsapp_text.json")).await;
    app.drain().await;
    let conv = conversation(&app, "wa", "16505551234").await;
    let first = reply(&app, &conv, "k1", "first").await;
    app.wait_message(&conv, &first, |s| s == "sent").await;
    let second = reply(&app, &conv, "k2", "second").await;
    let m = app.wait_message(&conv, &second, |s| s == "sent").await;
    assert_eq!(m["provider_message_id"], "wamid.OURS2");
    deliver_signed(&app, "wa", &fixture("whatsapp_statuses.json")).await;
    app.drain().await;
    let m = app
        .get_json(&format!("/api/v1/conversations/{conv}/messages/{first}"))
        .await;
    assert_eq!(m["state"], "read", "{m}");
    let m = app
        .get_json(&format!("/api/v1/conversations/{conv}/messages/{second}"))
        .await;
    assert_eq!(m["state"], "failed", "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap_or("")
            .contains("Re-engagement message: Message failed to send because more than 24 hours"),
        "{m}"
    );
    // Statuses are not timeline messages: one inbound message and two replies.
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c["messages"].as_array().unwrap().len(), 3, "{c}");
    app.stop().await;
}
on_both_backends!(
    whatsapp_statuses_move_the_reply_to_read_and_a_failed_status_shows_its_reason,
    super::whatsapp_statuses_move_the_reply_to_read_and_a_failed_status_shows_its_reason
);

async fn a_send_refused_outside_the_window_fails_the_reply_with_the_reason(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &format!("/{WA_PHONE}/messages"),
        [Answer::status_json(
            400,
            json!({"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException",
                   "code": 131047, "error_data": {"messaging_product": "whatsapp",
                   "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
                   "fbtrace_id": "AbC"}}),
        )],
    );
    fake.on(
        "POST",
        &format!("/{PAGE}/messages"),
        [Answer::status_json(
            400,
            json!({"error": {"message": "(#10) This message is sent outside of allowed window.",
                   "type": "OAuthException", "code": 10, "error_subcode": 2534022, "fbtrace_id": "AbD"}}),
        )],
    );
    let Some(app) = app(db, &fake).await else {
        return;
    };
    deliver_signed(&app, "wa", &fixture("whatsapp_text.json")).await;
    deliver_signed(&app, "fb", &fixture("messenger_text.json")).await;
    app.drain().await;
    for (connector, thread, reason) in [
        (
            "wa",
            "16505551234",
            "outside the 24-hour messaging window; a template message is needed",
        ),
        (
            "fb",
            "6783145918422001",
            "outside the 24-hour messaging window",
        ),
    ] {
        let conv = conversation(&app, connector, thread).await;
        let id = reply(&app, &conv, &format!("k-{connector}"), "late answer").await;
        let m = app.wait_message(&conv, &id, |s| s == "failed").await;
        assert_eq!(m["state"], "failed", "{m}");
        assert!(m["error"].as_str().unwrap_or("").contains(reason), "{m}");
        assert_eq!(m["attempts"], 1, "a permanent refusal is not retried");
    }
    app.stop().await;
}
on_both_backends!(
    a_send_refused_outside_the_window_fails_the_reply_with_the_reason,
    super::a_send_refused_outside_the_window_fails_the_reply_with_the_reason
);

fn echo(mid: &str, metadata: Option<&str>, text: &str) -> Vec<u8> {
    let mut message =
        json!({"is_echo": true, "app_id": 1517776481860111u64, "mid": mid, "text": text});
    if let Some(m) = metadata {
        message["metadata"] = json!(m);
    }
    serde_json::to_vec(
        &json!({"object": "page", "entry": [{"id": PAGE, "time": 1700000002000u64,
        "messaging": [{"sender": {"id": PAGE}, "recipient": {"id": "6783145918422001"},
                       "timestamp": 1700000001900u64, "message": message}]}]}),
    )
    .unwrap()
}

async fn an_echo_of_our_own_send_is_not_shown_as_a_message_but_a_page_inbox_answer_is(db: Db) {
    let fake = FakeProvider::start().await;
    fake.on(
        "POST",
        &format!("/{PAGE}/messages"),
        [
            Answer::json(json!({"recipient_id": "6783145918422001", "message_id": "m_ours_1"})),
            Answer::json(json!({"recipient_id": "6783145918422001", "message_id": "m_ours_2"})),
        ],
    );
    let Some(app) = app(db, &fake).await else {
        return;
    };
    deliver_signed(&app, "fb", &fixture("messenger_text.json")).await;
    app.drain().await;
    let conv = conversation(&app, "fb", "6783145918422001").await;
    let one = reply(&app, &conv, "k1", "first reply").await;
    app.wait_message(&conv, &one, |s| s == "sent").await;
    let two = reply(&app, &conv, "k2", "second reply").await;
    app.wait_message(&conv, &two, |s| s == "sent").await;
    // Echo of the first, tagged with our metadata; of the second, untagged (matched by id);
    // and an answer typed in the Page inbox, which the agent should see.
    deliver_signed(
        &app,
        "fb",
        &echo(
            "m_ours_1",
            Some(&format!("switchboard:{one}")),
            "first reply",
        ),
    )
    .await;
    deliver_signed(&app, "fb", &echo("m_ours_2", None, "second reply")).await;
    deliver_signed(
        &app,
        "fb",
        &echo("m_page_inbox", None, "typed in the Page inbox"),
    )
    .await;
    app.drain().await;
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let messages = c["messages"].as_array().unwrap();
    let inbound: Vec<&Value> = messages
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .collect();
    assert_eq!(
        inbound.len(),
        1,
        "only the customer's message is inbound: {c}"
    );
    let texts: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["body"]["text"].as_str())
        .collect();
    assert_eq!(
        texts.iter().filter(|t| **t == "first reply").count(),
        1,
        "{c}"
    );
    assert_eq!(
        texts.iter().filter(|t| **t == "second reply").count(),
        1,
        "{c}"
    );
    assert!(texts.contains(&"typed in the Page inbox"), "{c}");
    assert_eq!(messages.len(), 4, "{c}");
    app.stop().await;
}
on_both_backends!(
    an_echo_of_our_own_send_is_not_shown_as_a_message_but_a_page_inbox_answer_is,
    super::an_echo_of_our_own_send_is_not_shown_as_a_message_but_a_page_inbox_answer_is
);

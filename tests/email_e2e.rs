//! The email connector end to end, on SQLite and PostgreSQL: a customer's mail delivered into a
//! real Dovecot is polled in, an agent replies through the API (SMTP to a real aiosmtpd), the
//! customer answers that reply (In-Reply-To/References naming our Message-ID), and the inbox
//! shows ONE conversation with the messages in order. The first answer names only our
//! Message-ID (In-Reply-To), so only the id recorded at send time can thread it.
//!
//! The IMAP poller runs directly here and its page is stored the way the hub's poller runner
//! stores pages (raw events + normalise jobs), then the pipeline is drained.

mod common;
#[path = "../connectors/email/tests/support/mod.rs"]
mod email_support;

use std::time::Duration;

use common::{spawn_app_with, Db};
use email_support::{Dovecot, Smtp, PASSWORD, USER};
use switchboard::store::NewRawEvent;
use switchboard_core::Connector;

fn config(imap_port: u16, smtp_port: u16) -> String {
    format!(
        "id = \"mail\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nimap_port = {imap_port}\nimap_tls = \"none\"\n\
         username = \"{USER}\"\npassword = \"{PASSWORD}\"\nidle = false\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {smtp_port}\nsmtp_tls = \"none\"\nsmtp_auth = false\nfrom_name = \"Shop Support\""
    )
}

/// One poll of the mailbox, stored as the runner would; then the pipeline runs.
async fn poll_into_hub(
    app: &common::TestApp,
    c: &dyn Connector,
    cursor: &mut Option<String>,
) -> usize {
    let page = c
        .poller()
        .expect("poller")
        .poll(cursor.clone())
        .await
        .expect("poll");
    *cursor = page.next_cursor;
    let n = page.events.len();
    let events: Vec<NewRawEvent> = page
        .events
        .into_iter()
        .map(|e| NewRawEvent {
            connector_id: "mail".into(),
            provider_event_id: e.provider_event_id,
            kind: e.kind,
            occurred_at: e.occurred_at,
            received_at: chrono::Utc::now().timestamp_millis(),
            headers: serde_json::to_string(&e.headers).expect("headers"),
            payload: e.payload,
        })
        .collect();
    app.store.insert_raw_events(&events).await.expect("insert");
    app.drain().await;
    n
}

fn rfc2822(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs)).to_rfc2822()
}

async fn mail_reply_answer_is_one_conversation_in_order(db: Db) {
    let name = "mail_reply_answer_is_one_conversation_in_order";
    let Some(dv) = Dovecot::start(name) else {
        return;
    };
    let Some(smtp) = Smtp::start(name, "", 0) else {
        return;
    };
    let cfg = config(dv.port, smtp.port);
    let app_cfg = cfg.clone();
    let Some(app) = spawn_app_with(db, move |s| {
        s.connectors.push(toml::from_str(&app_cfg).expect("toml"));
    })
    .await
    else {
        return;
    };
    let poller = switchboard_email::build(
        "email",
        "mail",
        "connectors[9]",
        toml::from_str(&cfg).expect("toml"),
        &|_| None,
    )
    .expect("kind")
    .expect("config");
    let mut cursor = None;

    // 1. The customer writes.
    dv.deliver(
        format!(
            "From: Ada Lovelace <ada@example.com>\r\nTo: {USER}\r\nSubject: Where is order 5?\r\nDate: {}\r\nMessage-ID: <first@example.com>\r\n\r\nHello, where is my order?\r\n",
            rfc2822(-3600)
        )
        .as_bytes(),
    );
    assert_eq!(poll_into_hub(&app, poller.as_ref(), &mut cursor).await, 1);
    let list = app.get_json("/api/v1/conversations?limit=10").await;
    let convs = list["items"].as_array().expect("items");
    assert_eq!(convs.len(), 1, "{list}");
    let conv = convs[0]["id"].as_str().expect("id").to_string();

    // 2. The agent replies; the sender delivers it by SMTP.
    let r = app
        .client
        .post(format!("{}/api/v1/conversations/{conv}/replies", app.addr))
        .bearer_auth(&app.token)
        .header("idempotency-key", "reply-1")
        .json(&serde_json::json!({ "text": "It left the warehouse today." }))
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let m = app
        .wait_message(&conv, &id, |s| s == "sent" || s == "failed")
        .await;
    assert_eq!(m["state"], "sent", "{m}");
    let our_id = m["provider_message_id"]
        .as_str()
        .expect("provider id")
        .to_string();
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    let sent = switchboard_email::mime::parse(&got[0].0).expect("sent mail");
    assert_eq!(sent.message_id.as_deref(), Some(our_id.as_str()));
    assert_eq!(sent.in_reply_to, vec!["<first@example.com>".to_string()]);
    assert_eq!(sent.subject, "Re: Where is order 5?");
    assert_eq!(got[0].1["rcpt_tos"], serde_json::json!(["ada@example.com"]));

    // 3. The customer answers from a client that keeps only In-Reply-To (our Message-ID) and
    //    changes the subject: the id of our sent reply, recorded when it was sent, alone
    //    threads it back.
    dv.deliver(
        format!(
            "From: Ada Lovelace <ada@example.com>\r\nTo: {USER}\r\nSubject: one more thing\r\nDate: {}\r\nMessage-ID: <answer2@example.com>\r\nIn-Reply-To: {our_id}\r\n\r\nAlso, gift wrap please.\r\n",
            rfc2822(60)
        )
        .as_bytes(),
    );
    let mut polled = 0;
    for _ in 0..20 {
        polled += poll_into_hub(&app, poller.as_ref(), &mut cursor).await;
        if polled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(polled, 1);

    // 4. The customer answers again, quoting our reply, with full References.
    dv.deliver(
        format!(
            "From: Ada Lovelace <ada@example.com>\r\nTo: {USER}\r\nSubject: thanks!\r\nDate: {}\r\nMessage-ID: <answer@example.com>\r\nIn-Reply-To: {our_id}\r\nReferences: <first@example.com> {our_id}\r\n\r\nGreat, thank you.\r\n\r\nOn today, Shop Support wrote:\r\n> It left the warehouse today.\r\n",
            rfc2822(120)
        )
        .as_bytes(),
    );
    let mut polled = 0;
    for _ in 0..20 {
        polled += poll_into_hub(&app, poller.as_ref(), &mut cursor).await;
        if polled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(polled, 1);

    let list = app.get_json("/api/v1/conversations?limit=10").await;
    assert_eq!(
        list["items"].as_array().expect("items").len(),
        1,
        "one conversation: {list}"
    );
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let msgs: Vec<(String, String)> = c["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|e| e["kind"] == "message" || e["body"]["text"].is_string())
        .map(|e| {
            (
                e["direction"].as_str().unwrap_or("").to_string(),
                e["body"]["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        msgs,
        vec![
            (
                "inbound".to_string(),
                "Hello, where is my order?".to_string()
            ),
            (
                "outbound".to_string(),
                "It left the warehouse today.".to_string()
            ),
            ("inbound".to_string(), "Also, gift wrap please.".to_string()),
            ("inbound".to_string(), "Great, thank you.".to_string()),
        ],
        "{c}"
    );
    // Polling again brings nothing new.
    assert_eq!(poll_into_hub(&app, poller.as_ref(), &mut cursor).await, 0);
    app.stop().await;
}
on_both_backends!(
    mail_reply_answer_is_one_conversation_in_order,
    super::mail_reply_answer_is_one_conversation_in_order
);

//! The email connector end to end, on SQLite and PostgreSQL: a customer's mail delivered into a
//! real Dovecot is polled in, an agent replies through the API (SMTP to a real aiosmtpd), the
//! customer answers that reply (In-Reply-To/References naming our Message-ID), and the inbox
//! shows ONE conversation with the messages in order. The first answer names only our
//! Message-ID (In-Reply-To), so only the id recorded at send time can thread it.
//!
//! The hub's own poller runner polls the mailbox (IDLE on), stores pages with their cursor and
//! wakes the pipeline; the sender worker delivers the reply.

mod common;
#[path = "../connectors/email/tests/support/mod.rs"]
mod email_support;

use std::time::Duration;

use common::{spawn_app_with, Db};
use email_support::{Dovecot, Smtp, PASSWORD, USER};

fn config(imap_port: u16, smtp_port: u16) -> String {
    format!(
        "id = \"mail\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nimap_port = {imap_port}\nimap_tls = \"none\"\n\
         username = \"{USER}\"\npassword = \"{PASSWORD}\"\nidle_timeout_secs = 3\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {smtp_port}\nsmtp_tls = \"none\"\nsmtp_auth = false\nfrom_name = \"Shop Support\""
    )
}

/// Waits (bounded) until the hub's own poller runner has brought `n` inbound messages in.
async fn wait_inbound(app: &common::TestApp, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        app.drain().await;
        let list = app.get_json("/api/v1/conversations?limit=10").await;
        let mut inbound = 0;
        for c in list["items"].as_array().expect("items") {
            let id = c["id"].as_str().expect("id");
            let conv = app.get_json(&format!("/api/v1/conversations/{id}")).await;
            inbound += conv["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .filter(|m| m["direction"] == "inbound")
                .count();
        }
        if inbound >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{inbound} of {n} inbound messages arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        s.poller.min_interval_ms = 20;
        s.poller.base_backoff_ms = 50;
        s.poller.max_backoff_ms = 500;
    })
    .await
    else {
        return;
    };

    // 1. The customer writes.
    dv.deliver(
        format!(
            "From: Ada Lovelace <ada@example.com>\r\nTo: {USER}\r\nSubject: Where is order 5?\r\nDate: {}\r\nMessage-ID: <first@example.com>\r\n\r\nHello, where is my order?\r\n",
            rfc2822(-3600)
        )
        .as_bytes(),
    );
    wait_inbound(&app, 1).await;
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
    wait_inbound(&app, 2).await;

    // 4. The customer answers again, quoting our reply, with full References.
    dv.deliver(
        format!(
            "From: Ada Lovelace <ada@example.com>\r\nTo: {USER}\r\nSubject: thanks!\r\nDate: {}\r\nMessage-ID: <answer@example.com>\r\nIn-Reply-To: {our_id}\r\nReferences: <first@example.com> {our_id}\r\n\r\nGreat, thank you.\r\n\r\nOn today, Shop Support wrote:\r\n> It left the warehouse today.\r\n",
            rfc2822(120)
        )
        .as_bytes(),
    );
    wait_inbound(&app, 3).await;

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
    // The stored cursor: three mails seen in INBOX.
    let cursor = app
        .store
        .poll_cursor("mail")
        .await
        .expect("cursor")
        .expect("a cursor");
    let cursor: serde_json::Value = serde_json::from_str(&cursor).expect("json cursor");
    assert_eq!(cursor["mailboxes"]["INBOX"]["last_uid"], 3, "{cursor}");
    app.stop().await;
}
on_both_backends!(
    mail_reply_answer_is_one_conversation_in_order,
    super::mail_reply_answer_is_one_conversation_in_order
);

async fn an_attachment_is_listed_and_its_bytes_are_served_as_a_download(db: Db) {
    let name = "an_attachment_is_listed_and_its_bytes_are_served_as_a_download";
    let Some(dv) = Dovecot::start(name) else {
        return;
    };
    let cfg = config(dv.port, 9);
    let Some(app) = spawn_app_with(db, move |s| {
        s.connectors.push(toml::from_str(&cfg).expect("toml"));
        s.poller.min_interval_ms = 20;
    })
    .await
    else {
        return;
    };
    // A PDF-ish binary attachment, base64 in the mail, with bytes that are not valid UTF-8.
    let payload: Vec<u8> = (0u8..=255).cycle().take(3000).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&payload);
    let wrapped: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    dv.deliver(
        format!(
            "From: Ada <ada@example.com>\r\nTo: {USER}\r\nSubject: Invoice\r\nDate: {}\r\nMessage-ID: <att@example.com>\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe invoice is attached.\r\n\
             --b1\r\nContent-Type: application/pdf; name=\"invoice 42.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice 42.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
            rfc2822(-60),
            wrapped.join("\r\n")
        )
        .as_bytes(),
    );
    wait_inbound(&app, 1).await;
    let list = app.get_json("/api/v1/conversations?limit=10").await;
    let conv = list["items"][0]["id"].as_str().expect("id").to_string();
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let msg = c["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["direction"] == "inbound")
        .expect("inbound")
        .clone();
    let att = &msg["body"]["attachments"][0];
    assert_eq!(att["name"], "invoice 42.pdf", "{msg}");
    assert_eq!(att["content_type"], "application/pdf");
    assert_eq!(att["size"], 3000);
    let entry = msg["id"].as_i64().expect("entry id");

    let r = app
        .get(&format!("/api/v1/entries/{entry}/attachments/0"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"invoice 42.pdf\""
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.expect("bytes").to_vec(), payload);

    for missing in [
        format!("/api/v1/entries/{entry}/attachments/1"),
        "/api/v1/entries/999999/attachments/0".to_string(),
        "/api/v1/entries/nope/attachments/0".to_string(),
    ] {
        common::assert_problem(app.get(&missing).await, 404, "not_found").await;
    }
    app.stop().await;
}
on_both_backends!(
    an_attachment_is_listed_and_its_bytes_are_served_as_a_download,
    super::an_attachment_is_listed_and_its_bytes_are_served_as_a_download
);

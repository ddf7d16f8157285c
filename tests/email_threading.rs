//! Email threading through the hub, on SQLite and PostgreSQL: `References`/`In-Reply-To`
//! first (across batches and inside one batch, in any order), then the subject of the same
//! customer within the connector's window.

mod common;

use common::{spawn_app_with, Db};
use switchboard::store::NewRawEvent;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/connectors/email/tests/fixtures/email"
);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

async fn app(db: Db) -> Option<common::TestApp> {
    spawn_app_with(db, |s| {
        let t: toml::Value = toml::from_str(
            r#"
            id = "mail"
            kind = "email"
            imap_host = "127.0.0.1"
            imap_tls = "none"
            username = "support@shop.example"
            password = "unused"
            subject_window_days = 14
            "#,
        )
        .expect("toml");
        s.connectors.push(t);
        // Mail is stored directly below, as the poller runner would; no IMAP server here.
        s.poller.enabled = false;
    })
    .await
}

/// Stores raw emails as the IMAP poller does (one batch), then runs the pipeline.
async fn deliver(app: &common::TestApp, mails: &[Vec<u8>]) {
    let events: Vec<NewRawEvent> = mails
        .iter()
        .map(|m| NewRawEvent {
            connector_id: "mail".into(),
            provider_event_id: switchboard_email::mime::event_id(m),
            kind: "message".into(),
            occurred_at: None,
            received_at: 1_767_225_600_000,
            headers: "[]".into(),
            payload: bytes::Bytes::from(m.clone()),
        })
        .collect();
    app.store.insert_raw_events(&events).await.expect("insert");
    app.drain().await;
}

/// Conversations of the `mail` connector, each with its message texts in timeline order.
async fn threads(app: &common::TestApp) -> Vec<Vec<String>> {
    let list = app.get_json("/api/v1/conversations?limit=200").await;
    let mut out = Vec::new();
    for c in list["items"].as_array().expect("items") {
        let id = c["id"].as_str().expect("id");
        let conv = app.get_json(&format!("/api/v1/conversations/{id}")).await;
        let texts: Vec<String> = conv["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["body"]["text"].as_str().map(str::to_string))
            .collect();
        out.push(texts);
    }
    out.sort();
    out
}

fn mail(from: &str, subject: &str, date: &str, id: &str, extra: &str, text: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@shop.example\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n{extra}\r\n{text}\r\n"
    )
    .into_bytes()
}

async fn rfc5322_a2_thread_is_one_conversation_in_any_arrival_order(db: Db) {
    let Some(app) = app(db).await else { return };
    // The root alone, then the two replies in one batch, the last one first.
    deliver(&app, &[fixture("a2_1_hello.eml")]).await;
    deliver(
        &app,
        &[fixture("a2_3_reply.eml"), fixture("a2_2_reply.eml")],
    )
    .await;
    let t = threads(&app).await;
    assert_eq!(
        t,
        vec![vec![
            "This is a message just to say hello.\nSo, \"Hello\".".to_string(),
            "This is a reply to your hello.".to_string(),
            "This is a reply to your reply.".to_string(),
        ]],
        "{t:?}"
    );
    app.stop().await;
}
on_both_backends!(
    rfc5322_a2_thread_is_one_conversation_in_any_arrival_order,
    super::rfc5322_a2_thread_is_one_conversation_in_any_arrival_order
);

async fn a_reply_arriving_before_its_parent_still_shares_the_conversation(db: Db) {
    let Some(app) = app(db).await else { return };
    deliver(&app, &[fixture("a2_3_reply.eml")]).await;
    deliver(&app, &[fixture("a2_1_hello.eml")]).await;
    deliver(&app, &[fixture("a2_2_reply.eml")]).await;
    let t = threads(&app).await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].len(), 3, "{t:?}");
    app.stop().await;
}
on_both_backends!(
    a_reply_arriving_before_its_parent_still_shares_the_conversation,
    super::a_reply_arriving_before_its_parent_still_shares_the_conversation
);

async fn same_subject_same_customer_joins_within_the_window_only(db: Db) {
    let Some(app) = app(db).await else { return };
    let ada = "Ada <ada@example.com>";
    deliver(
        &app,
        &[mail(
            ada,
            "Order 5",
            "Mon, 03 Mar 2025 10:00:00 +0000",
            "s1@x",
            "",
            "first",
        )],
    )
    .await;
    // Two days later, no References (a client that drops them), prefixes added: joins.
    deliver(
        &app,
        &[mail(
            ada,
            "AW: Re: Order 5",
            "Wed, 05 Mar 2025 10:00:00 +0000",
            "s2@x",
            "",
            "second",
        )],
    )
    .await;
    // Another customer with the same subject: a conversation of their own.
    deliver(
        &app,
        &[mail(
            "Bob <bob@example.com>",
            "Order 5",
            "Wed, 05 Mar 2025 11:00:00 +0000",
            "s3@x",
            "",
            "bob",
        )],
    )
    .await;
    // Forty days after the last message: outside the 14-day window, a new conversation.
    deliver(
        &app,
        &[mail(
            ada,
            "Re: Order 5",
            "Mon, 14 Apr 2025 10:00:00 +0000",
            "s4@x",
            "",
            "much later",
        )],
    )
    .await;
    let t = threads(&app).await;
    assert_eq!(
        t,
        vec![
            vec!["bob".to_string()],
            vec!["first".to_string(), "second".to_string()],
            vec!["much later".to_string()],
        ],
        "{t:?}"
    );
    app.stop().await;
}
on_both_backends!(
    same_subject_same_customer_joins_within_the_window_only,
    super::same_subject_same_customer_joins_within_the_window_only
);

async fn references_win_over_a_different_subject_and_replay_changes_nothing(db: Db) {
    let Some(app) = app(db).await else { return };
    // The answer's root (first reference) is a mail we never saw and its subject differs, so
    // its own conversation key differs: only the ref to `r1` brings it into the thread.
    let ada = "Ada <ada@example.com>";
    deliver(
        &app,
        &[mail(
            ada,
            "Invoice",
            "Mon, 03 Mar 2025 10:00:00 +0000",
            "r1@x",
            "",
            "one",
        )],
    )
    .await;
    deliver(
        &app,
        &[mail(
            ada,
            "Something else entirely",
            "Mon, 03 Mar 2025 11:00:00 +0000",
            "r2@x",
            "In-Reply-To: <r1@x>\r\nReferences: <lost-root@y> <r1@x>\r\n",
            "two",
        )],
    )
    .await;
    // The same mail again (a resync): deduped, still one conversation of two.
    deliver(
        &app,
        &[mail(
            ada,
            "Something else entirely",
            "Mon, 03 Mar 2025 11:00:00 +0000",
            "r2@x",
            "In-Reply-To: <r1@x>\r\nReferences: <lost-root@y> <r1@x>\r\n",
            "two",
        )],
    )
    .await;
    let t = threads(&app).await;
    assert_eq!(t, vec![vec!["one".to_string(), "two".to_string()]], "{t:?}");
    app.stop().await;
}
on_both_backends!(
    references_win_over_a_different_subject_and_replay_changes_nothing,
    super::references_win_over_a_different_subject_and_replay_changes_nothing
);

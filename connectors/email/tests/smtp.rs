//! SMTP replies against a real SMTP server (aiosmtpd): threading headers, our Message-ID,
//! transient (4xx, connection) and permanent (5xx) failures.

mod support;

use support::Smtp;
use switchboard_core::{Connector, ConnectorError, OutboundMessage};
use switchboard_email::mime;
use switchboard_email::normalize::thread_key;

fn connector(smtp_port: u16) -> Box<dyn Connector> {
    let t: toml::Value = toml::from_str(&format!(
        "id = \"mail\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nimap_tls = \"none\"\n\
         username = \"support@shop.example\"\npassword = \"pw\"\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {smtp_port}\nsmtp_tls = \"none\"\nsmtp_auth = false\nfrom_name = \"Shop Support\""
    ))
    .expect("toml");
    match switchboard_email::build("email", "mail", "connectors[0]", t, &|_| None) {
        Some(Ok(c)) => c,
        Some(Err(e)) => panic!("config: {e}"),
        None => panic!("kind email unknown"),
    }
}

fn reply(id: &str) -> OutboundMessage {
    OutboundMessage {
        id: id.into(),
        idempotency_key: "k".into(),
        thread_key: thread_key(
            "ada@example.com",
            Some("<root@example.com>"),
            "Bestellung für Käse",
        ),
        text: "Ihr Paket ist unterwegs.".into(),
        attachment_urls: Vec::new(),
        in_reply_to: Some("<latest@example.com>".into()),
    }
}

#[tokio::test]
async fn reply_is_threaded_from_our_address_and_returns_our_message_id() {
    let Some(smtp) = Smtp::start(
        "reply_is_threaded_from_our_address_and_returns_our_message_id",
        "",
        0,
    ) else {
        return;
    };
    let c = connector(smtp.port);
    let sent = c
        .outbound()
        .expect("outbound")
        .send(&reply("0190-abc"))
        .await
        .expect("sent");
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some("<sb.0190-abc@shop.example>")
    );
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    let (bytes, envelope) = &got[0];
    assert_eq!(envelope["rcpt_tos"], serde_json::json!(["ada@example.com"]));
    assert_eq!(envelope["mail_from"], "support@shop.example");
    let m = mime::parse(bytes).expect("a parseable email");
    assert_eq!(m.message_id.as_deref(), Some("<sb.0190-abc@shop.example>"));
    assert_eq!(m.in_reply_to, vec!["<latest@example.com>".to_string()]);
    assert_eq!(
        m.references,
        vec![
            "<root@example.com>".to_string(),
            "<latest@example.com>".to_string()
        ]
    );
    assert_eq!(m.subject, "Re: Bestellung für Käse");
    assert_eq!(
        m.from.as_ref().map(|f| f.address.as_str()),
        Some("support@shop.example")
    );
    assert_eq!(
        m.from.as_ref().and_then(|f| f.name.as_deref()),
        Some("Shop Support")
    );
    assert_eq!(m.text_full.trim_end(), "Ihr Paket ist unterwegs.");
}

#[tokio::test]
async fn a_4xx_answer_is_transient_and_the_retry_goes_through() {
    let Some(smtp) = Smtp::start(
        "a_4xx_answer_is_transient_and_the_retry_goes_through",
        "451 4.3.0 try again later",
        1,
    ) else {
        return;
    };
    let c = connector(smtp.port);
    let out = c.outbound().expect("outbound");
    let err = out.send(&reply("r1")).await.expect_err("451");
    assert!(
        matches!(&err, ConnectorError::Transient(m) if m.contains("try again later")),
        "{err:?}"
    );
    let sent = out.send(&reply("r1")).await.expect("retry");
    // The same outbound message keeps its Message-ID across retries.
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some("<sb.r1@shop.example>")
    );
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn a_5xx_answer_is_permanent_with_the_servers_text() {
    let Some(smtp) = Smtp::start(
        "a_5xx_answer_is_permanent_with_the_servers_text",
        "550 5.1.1 mailbox unavailable",
        1,
    ) else {
        return;
    };
    let c = connector(smtp.port);
    let err = c
        .outbound()
        .expect("outbound")
        .send(&reply("r2"))
        .await
        .expect_err("550");
    assert!(
        matches!(&err, ConnectorError::Permanent(m) if m.contains("mailbox unavailable")),
        "{err:?}"
    );
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn no_server_listening_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let c = connector(port);
    let err = c
        .outbound()
        .expect("outbound")
        .send(&reply("r3"))
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn a_conversation_key_that_is_not_an_email_thread_is_permanent() {
    let c = connector(1);
    let mut m = reply("r4");
    m.thread_key = "telegram:42".into();
    let err = c
        .outbound()
        .expect("outbound")
        .send(&m)
        .await
        .expect_err("not email");
    assert!(matches!(err, ConnectorError::Permanent(_)), "{err:?}");
}

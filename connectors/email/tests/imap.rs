//! The IMAP poller against a real Dovecot: initial sync in pages, nothing twice, new mail
//! after the cursor, IDLE wake-up, a UIDVALIDITY change, a connection cut mid-FETCH, oversized
//! messages, a refused login.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{mail, Dovecot, PASSWORD, USER};
use switchboard_core::{Connector, ConnectorError, PollPage, RawEvent};

fn connector(port: u16, extra: &str) -> Box<dyn Connector> {
    let t: toml::Value = toml::from_str(&format!(
        "id = \"mail\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nimap_port = {port}\nimap_tls = \"none\"\n\
         username = \"{USER}\"\npassword = \"{PASSWORD}\"\n{extra}"
    ))
    .expect("toml");
    match switchboard_email::build("email", "mail", "connectors[0]", t, &|_| None) {
        Some(Ok(c)) => c,
        Some(Err(e)) => panic!("config: {e}"),
        None => panic!("kind email unknown"),
    }
}

async fn poll(c: &dyn Connector, cursor: &Option<String>) -> Result<PollPage, ConnectorError> {
    c.poller().expect("poller").poll(cursor.clone()).await
}

/// Polls until `more` is false (bounded); returns every event and the last cursor.
async fn sync(c: &dyn Connector, cursor: &mut Option<String>) -> Vec<RawEvent> {
    let mut all = Vec::new();
    for _ in 0..100 {
        let page = poll(c, cursor).await.expect("poll");
        all.extend(page.events);
        *cursor = page.next_cursor;
        if !page.more {
            return all;
        }
    }
    panic!("more never became false");
}

fn ids(evs: &[RawEvent]) -> Vec<String> {
    evs.iter().map(|e| e.provider_event_id.clone()).collect()
}

fn deliver_n(dv: &Dovecot, from: usize, n: usize) {
    for i in from..from + n {
        dv.deliver(&mail(
            "Ada <ada@example.com>",
            &format!("Mail {i}"),
            &format!("m{i}@example.com"),
            "",
            &format!("body {i}"),
        ));
    }
}

#[tokio::test]
async fn initial_sync_in_pages_then_nothing_twice_then_new_mail() {
    let Some(dv) = Dovecot::start("initial_sync_in_pages_then_nothing_twice_then_new_mail") else {
        return;
    };
    deliver_n(&dv, 0, 5);
    let c = connector(dv.port, "batch_size = 2\nidle = false");
    let mut cursor = None;
    // Pages of two: more while mail remains.
    let first = poll(c.as_ref(), &cursor).await.expect("poll");
    assert_eq!(first.events.len(), 2);
    assert!(first.more);
    cursor = first.next_cursor.clone();
    let mut all = first.events;
    all.extend(sync(c.as_ref(), &mut cursor).await);
    let got = ids(&all);
    assert_eq!(
        got,
        (0..5)
            .map(|i| format!("<m{i}@example.com>"))
            .collect::<Vec<_>>()
    );
    assert_eq!(all[0].kind, "message");
    assert!(all[0]
        .headers
        .iter()
        .any(|(k, v)| k == "x-sb-mailbox" && v == "INBOX"));
    assert!(
        all[0].payload.starts_with(b"From: Ada"),
        "exact RFC 5322 bytes"
    );
    assert!(all[0].occurred_at.is_some());
    // Nothing new: nothing again.
    let again = poll(c.as_ref(), &cursor).await.expect("poll");
    assert!(again.events.is_empty() && !again.more);
    cursor = again.next_cursor;
    // New mail after the cursor arrives, alone.
    deliver_n(&dv, 5, 1);
    let new = sync(c.as_ref(), &mut cursor).await;
    assert_eq!(ids(&new), vec!["<m5@example.com>".to_string()]);
}

#[tokio::test]
async fn idle_returns_early_when_mail_arrives() {
    let Some(dv) = Dovecot::start("idle_returns_early_when_mail_arrives") else {
        return;
    };
    let dv = Arc::new(dv);
    let c = connector(dv.port, "idle = true\nidle_timeout_secs = 20");
    let mut cursor = None;
    // The first poll learns that the server offers IDLE (and waits in it): bound it by delivering.
    let d2 = dv.clone();
    let deliver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        deliver_n(&d2, 0, 1);
    });
    let started = Instant::now();
    let page = poll(c.as_ref(), &cursor).await.expect("poll");
    deliver.await.expect("deliver");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "IDLE did not wake up: {:?}",
        started.elapsed()
    );
    assert!(page.events.is_empty());
    assert!(
        page.more,
        "a change seen in IDLE asks for an immediate poll"
    );
    cursor = page.next_cursor;
    assert_eq!(
        c.poller().expect("poller").interval(),
        Duration::from_secs(1)
    );
    let page = poll(c.as_ref(), &cursor).await.expect("poll");
    assert_eq!(ids(&page.events), vec!["<m0@example.com>".to_string()]);
}

#[tokio::test]
async fn uidvalidity_change_resyncs_with_the_same_event_ids() {
    let Some(mut dv) = Dovecot::start("uidvalidity_change_resyncs_with_the_same_event_ids") else {
        return;
    };
    deliver_n(&dv, 0, 3);
    let c = connector(dv.port, "idle = false");
    let mut cursor = None;
    let before = sync(c.as_ref(), &mut cursor).await;
    let old_cursor = cursor.clone().expect("cursor");
    dv.reset_uidvalidity();
    let after = sync(c.as_ref(), &mut cursor).await;
    let new_cursor = cursor.expect("cursor");
    assert_ne!(old_cursor, new_cursor, "UIDVALIDITY changed");
    // The resync brings the same messages with the same ids: the hub's dedupe stores none twice.
    assert_eq!(ids(&before), ids(&after));
    let again = sync(c.as_ref(), &mut Some(new_cursor)).await;
    assert!(again.is_empty());
}

/// A TCP proxy that cuts every connection after `limit` bytes from the server.
async fn cutting_proxy(upstream: u16, limit: Arc<AtomicU64>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let limit = limit.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                let mut sent = 0u64;
                let mut buf = vec![0u8; 4096];
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let n = n.min((limit - sent) as usize);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n as u64;
                    if sent >= limit {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    port
}

#[tokio::test]
async fn connection_cut_mid_fetch_is_transient_and_the_next_poll_loses_nothing() {
    let Some(dv) =
        Dovecot::start("connection_cut_mid_fetch_is_transient_and_the_next_poll_loses_nothing")
    else {
        return;
    };
    for i in 0..4 {
        let big = "x".repeat(20_000);
        dv.deliver(&mail(
            "Ada <ada@example.com>",
            "big",
            &format!("big{i}@example.com"),
            "",
            &big,
        ));
    }
    // Enough for greeting, login, select and search, not for four 20 KB bodies.
    let limit = Arc::new(AtomicU64::new(6_000));
    let port = cutting_proxy(dv.port, limit.clone()).await;
    let c = connector(port, "idle = false");
    let cursor = None;
    let err = poll(c.as_ref(), &cursor).await.expect_err("cut mid-FETCH");
    assert!(
        matches!(&err, ConnectorError::Transient(m) if m.contains("FETCH")),
        "{err:?}"
    );
    limit.store(u64::MAX, Ordering::SeqCst);
    let mut cursor = None;
    let all = sync(c.as_ref(), &mut cursor).await;
    let got: HashSet<String> = ids(&all).into_iter().collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(all.iter().all(|e| e.payload.len() > 20_000));
}

#[tokio::test]
async fn oversized_message_is_imported_with_headers_only_and_flagged() {
    let Some(dv) = Dovecot::start("oversized_message_is_imported_with_headers_only_and_flagged")
    else {
        return;
    };
    dv.deliver(&mail(
        "Ada <ada@example.com>",
        "huge",
        "huge@example.com",
        "",
        &"y".repeat(8_000),
    ));
    dv.deliver(&mail(
        "Ada <ada@example.com>",
        "small",
        "small@example.com",
        "",
        "tiny",
    ));
    let c = connector(dv.port, "idle = false\nmax_message_bytes = 4096");
    let mut cursor = None;
    let all = sync(c.as_ref(), &mut cursor).await;
    assert_eq!(
        ids(&all),
        vec![
            "<huge@example.com>".to_string(),
            "<small@example.com>".to_string()
        ]
    );
    let huge = &all[0];
    assert!(
        huge.payload.len() < 1024,
        "headers only: {}",
        huge.payload.len()
    );
    assert!(huge
        .headers
        .iter()
        .any(|(k, v)| k == "x-sb-truncated" && v.parse::<u64>().is_ok_and(|s| s > 8_000)));
    assert!(!all[1].headers.iter().any(|(k, _)| k == "x-sb-truncated"));
}

#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let Some(dv) = Dovecot::start("wrong_password_is_unauthorized") else {
        return;
    };
    let t: toml::Value = toml::from_str(&format!(
        "id = \"mail\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nimap_port = {}\nimap_tls = \"none\"\nusername = \"{USER}\"\npassword = \"wrong\"\nidle = false",
        dv.port
    ))
    .expect("toml");
    let c = switchboard_email::build("email", "mail", "connectors[0]", t, &|_| None)
        .expect("kind")
        .expect("config");
    let err = poll(c.as_ref(), &None).await.expect_err("refused");
    assert!(matches!(err, ConnectorError::Unauthorized(_)), "{err:?}");
    // The error names no secret.
    assert!(!format!("{err:?}").contains("wrong"));
}

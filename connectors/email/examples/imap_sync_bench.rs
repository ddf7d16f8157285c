//! Initial-sync throughput of the IMAP poller against a local Dovecot:
//! `cargo run --release -p switchboard-email --example imap_sync_bench -- 10000 500`
//! (messages, batch_size). Needs `dovecot` (apt-get install dovecot-imapd) and root.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let Some(dv) = support::Dovecot::start("imap_sync_bench") else {
        return;
    };
    let t = Instant::now();
    for i in 0..n {
        let body = format!(
            "Message number {i}.\r\n{}",
            "Lorem ipsum dolor sit amet. ".repeat(40)
        );
        dv.deliver(&support::mail(
            "Ada <ada@example.com>",
            &format!("Mail {i}"),
            &format!("bench{i}@example.com"),
            "",
            &body,
        ));
    }
    println!("delivered {n} messages in {:.1?}", t.elapsed());
    let table: toml::Value = toml::from_str(&format!(
        "id = \"mail\"\nkind = \"email\"\nimap_host = \"127.0.0.1\"\nimap_port = {}\nimap_tls = \"none\"\nusername = \"{}\"\npassword = \"{}\"\nidle = false\nbatch_size = {batch}",
        dv.port,
        support::USER,
        support::PASSWORD
    ))
    .expect("toml");
    let c = switchboard_email::build("email", "mail", "connectors[0]", table, &|_| None)
        .expect("kind")
        .expect("config");
    let p = c.poller().expect("poller");
    let mut cursor = None;
    let mut total = 0usize;
    let mut bytes = 0usize;
    let mut pages = 0usize;
    let t = Instant::now();
    loop {
        let page = p.poll(cursor.clone()).await.expect("poll");
        pages += 1;
        total += page.events.len();
        bytes += page.events.iter().map(|e| e.payload.len()).sum::<usize>();
        cursor = page.next_cursor;
        if !page.more || pages > 100_000 {
            break;
        }
    }
    let el = t.elapsed();
    println!(
        "initial sync: {total} messages ({:.1} MB) in {pages} pages, {:.2?} ({:.0} msg/s)",
        bytes as f64 / 1e6,
        el,
        total as f64 / el.as_secs_f64()
    );
}

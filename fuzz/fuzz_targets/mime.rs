#![no_main]
//! The MIME and threading path of the email connectors: `mime::parse` and attachment
//! extraction over raw RFC 5322 bytes, the message-id and address helpers, subject folding,
//! quote trimming, HTML sanitising, inbound-parse form decoding, and the conversation key
//! (`thread_key`), which must give back the address and subject a reply goes to.

use libfuzzer_sys::fuzz_target;
use switchboard_email::{inbound, mime, normalize};

fuzz_target!(|data: &[u8]| {
    if let Some(p) = mime::parse(data) {
        // What the normaliser does with a parsed mail: thread by the root reference.
        let root = p.references.first().or(p.in_reply_to.first()).cloned();
        let customer = p
            .from
            .as_ref()
            .map(|m| m.address.clone())
            .unwrap_or_default();
        let key = normalize::thread_key(
            &customer,
            root.as_deref(),
            &normalize::base_subject(&p.subject),
        );
        let _ = normalize::parse_thread_key(&key);
    }
    for i in 0..3 {
        let _ = mime::attachment(data, i);
    }
    let _ = mime::event_id(data);

    let text = String::from_utf8_lossy(data);
    let _ = mime::norm_id(&text);
    let _ = mime::ids_in(&text);
    let _ = mime::parse_address_header(&text);
    let _ = mime::is_noreply(&text);
    let _ = mime::trim_quoted(&text);
    let _ = mime::sanitize_html(&text);
    let subject = normalize::base_subject(&text);

    // The conversation key round-trips: a reply goes to the customer and subject it was made
    // from. Split the input into an address and a root id at the first two newlines.
    let mut parts = text.splitn(3, '\n');
    let (addr, root) = (parts.next().unwrap_or(""), parts.next());
    if let Some(m) = mime::mailbox(Some(addr), None) {
        let key = normalize::thread_key(&m.address, root, &subject);
        let back = normalize::parse_thread_key(&key).expect("a thread key parses back");
        assert_eq!(back.to, m.address, "thread key {key}");
        assert_eq!(back.subject, subject, "thread key {key}");
        assert_eq!(back.root, root.and_then(mime::norm_id), "thread key {key}");
    }

    // Inbound-parse bodies: the content type is the first line, the form the rest.
    if let Some(nl) = data.iter().position(|b| *b == b'\n') {
        let ct = String::from_utf8_lossy(&data[..nl]);
        let _ = inbound::parse_form(&ct, &data[nl + 1..]);
    }
});

//! The shared harness of the fuzz targets: builds a target's connectors from their example
//! configs and drives one fuzz input through every surface that takes outside bytes —
//! signature verification, webhook parsing, normalisation, and attachment extraction.
//!
//! One input is a small text frame, so that seeds can be written by hand or made from the
//! connectors' test fixtures (`fuzz/seed.py`) and libFuzzer's mutations stay meaningful:
//!
//! ```text
//! W POST /webhooks/x?a=b        <- mode line: W = a webhook request (method, path+query)
//! x-hub-signature-256: sha256=… <- header lines, up to the first empty line
//!
//! {"the": "body"}               <- everything after the empty line, as raw bytes
//! ```
//!
//! `N <event kind>` as the mode line instead makes the header lines the stored event's headers
//! and the body its payload, handed straight to each connector's normaliser (the path a
//! poller's events and `replay` take). Anything that does not start with `W` is normalise mode.

use std::collections::HashSet;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use switchboard_core::{
    ConfigResult, Connector, InboundRequest, Ingress, NormalizedEvent, StoredEvent, Verified,
};

/// The receipt time every request is checked against (unix seconds): seeds sign with it.
pub const NOW: i64 = 1_700_000_000;

/// One built connector of a target.
pub struct Instance {
    pub id: String,
    pub connector: Box<dyn Connector>,
}

/// Every secret a config names by `_env` reads as this.
fn env(_name: &str) -> Option<String> {
    Some("fuzz-secret".to_string())
}

/// Builds the `[[connectors]]` tables of the given kinds from the given TOML documents (the
/// repository's `config/examples/*.toml`, plus extra tables for verifier options the examples
/// leave out). Tables of other kinds are only there for `reply_via`. Panics on a config that
/// does not build: a target must fuzz the connectors it names.
pub fn connectors(kinds: &[&str], docs: &[&str]) -> Vec<Instance> {
    let mut tables = Vec::new();
    for doc in docs {
        let v: toml::Table = toml::from_str(doc).expect("fuzz config is valid TOML");
        if let Some(toml::Value::Array(list)) = v.get("connectors") {
            tables.extend(list.iter().cloned());
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, t) in tables.iter().enumerate() {
        let id = t["id"].as_str().expect("connector id").to_string();
        let kind = t["kind"].as_str().expect("connector kind").to_string();
        // The same example table may come from several documents (an `email` connector that
        // inbound-parse kinds reply through).
        if !kinds.contains(&kind.as_str()) || !seen.insert(id.clone()) {
            continue;
        }
        let path = format!("connectors[{i}]");
        // The hub's own keys, which the registry takes out before a connector sees its table.
        let mut t = t.clone();
        if let Some(table) = t.as_table_mut() {
            for k in ["send_rate_per_sec", "send_burst", "poll_rate_per_sec"] {
                table.remove(k);
            }
        }
        let built: ConfigResult<Box<dyn Connector>> = if kind == "generic" {
            switchboard_generic::build(&id, &path, t.clone(), &env)
                .map(|c| Box::new(c) as Box<dyn Connector>)
        } else {
            switchboard_social::build(&kind, &id, &path, t.clone(), &env)
                .or_else(|| {
                    switchboard_email::build_in(&kind, &id, &path, t.clone(), &env, &tables)
                })
                .or_else(|| switchboard_commerce::build(&kind, &id, &path, t.clone(), &env))
                .or_else(|| switchboard_erp::build(&kind, &id, &path, t.clone(), &env))
                .unwrap_or_else(|| panic!("unknown connector kind {kind}"))
        };
        let connector = built.unwrap_or_else(|e| panic!("fuzz config {id}: {e}"));
        out.push(Instance { id, connector });
    }
    out
}

/// A decoded fuzz input.
pub struct Frame {
    pub webhook: bool,
    pub method: Method,
    pub uri: Uri,
    /// The event kind in normalise mode.
    pub kind: String,
    pub headers: HeaderMap,
    /// The same headers as text (lower-case names), for stored events.
    pub header_pairs: Vec<(String, String)>,
    pub body: Bytes,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Frame {
    pub fn parse(data: &[u8]) -> Frame {
        let (head, body) = match find(data, b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => match find(data, b"\n") {
                Some(i) => (&data[..i], &data[i + 1..]),
                None => (data, &data[data.len()..]),
            },
        };
        let mut lines = head.split(|b| *b == b'\n');
        let mode = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
        let mut words = mode.split_whitespace();
        let webhook = words.next().is_some_and(|w| w == "W");
        let (method, uri, kind) = if webhook {
            let method = words
                .next()
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                .unwrap_or(Method::POST);
            let uri = words
                .next()
                .and_then(|u| u.parse::<Uri>().ok())
                .unwrap_or_else(|| Uri::from_static("/webhooks/fuzz"));
            (method, uri, String::new())
        } else {
            let kind = words.next().unwrap_or("").to_string();
            (Method::POST, Uri::from_static("/webhooks/fuzz"), kind)
        };
        let mut headers = HeaderMap::new();
        let mut header_pairs = Vec::new();
        for line in lines.take(64) {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let value = line[colon + 1..].trim_ascii();
            let (Ok(name), Ok(v)) = (
                HeaderName::from_bytes(line[..colon].trim_ascii()),
                HeaderValue::from_bytes(value),
            ) else {
                continue;
            };
            header_pairs.push((
                name.as_str().to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ));
            headers.append(name, v);
        }
        Frame {
            webhook,
            method,
            uri,
            kind,
            headers,
            header_pairs,
            body: Bytes::copy_from_slice(body),
        }
    }
}

/// What the hub does with a normaliser's output: it serialises each body onto the timeline.
fn consume(events: &[NormalizedEvent]) {
    for ev in events {
        let json = serde_json::to_vec(&ev.body).expect("an event body serialises");
        std::hint::black_box(json);
    }
}

fn stored(
    id: &str,
    kind: String,
    occurred_at: Option<i64>,
    headers: Vec<(String, String)>,
    payload: Bytes,
) -> StoredEvent {
    StoredEvent {
        id: 1,
        connector_id: id.to_string(),
        provider_event_id: "fuzz".to_string(),
        kind,
        occurred_at,
        received_at: NOW * 1000,
        headers,
        payload,
    }
}

/// Runs one input through every connector of a target. Errors are fine; panics, hangs and
/// runaway allocations are what the fuzzer looks for.
pub fn run(instances: &[Instance], data: &[u8]) {
    let f = Frame::parse(data);
    for inst in instances {
        let c = inst.connector.as_ref();
        if f.webhook {
            let Some(hook) = c.webhook() else { continue };
            let req = InboundRequest {
                method: &f.method,
                uri: &f.uri,
                headers: &f.headers,
                body: &f.body,
                now: NOW,
            };
            let _ = hook.verify(&req);
            let _ = hook.accepted_reply();
            // Parse as if the signature had passed: the parser must hold on its own, and a
            // fuzzer cannot forge an HMAC to get there.
            if let Ok(Ingress::Events(events)) = hook.parse(Verified::after_check(&req)) {
                for raw in events.into_iter().take(200) {
                    let ev = stored(
                        &inst.id,
                        raw.kind,
                        raw.occurred_at,
                        raw.headers,
                        raw.payload,
                    );
                    if let Ok(out) = c.normalizer().normalize(&ev) {
                        consume(&out);
                    }
                    for i in 0..2 {
                        let _ = c.attachment(&ev, i);
                    }
                }
            }
        } else {
            let ev = stored(
                &inst.id,
                f.kind.clone(),
                None,
                f.header_pairs.clone(),
                f.body.clone(),
            );
            if let Ok(out) = c.normalizer().normalize(&ev) {
                consume(&out);
            }
            for i in 0..2 {
                let _ = c.attachment(&ev, i);
            }
        }
    }
}

/// Declares a fuzz target over the connectors of the given kinds in the given config
/// documents: `connector_target!(["line"], include_str!("../../config/examples/line.toml"));`
#[macro_export]
macro_rules! connector_target {
    ([$($kind:expr),+ $(,)?], $($doc:expr),+ $(,)?) => {
        static INSTANCES: std::sync::OnceLock<Vec<$crate::Instance>> = std::sync::OnceLock::new();
        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            let instances =
                INSTANCES.get_or_init(|| $crate::connectors(&[$($kind),+], &[$($doc),+]));
            $crate::run(instances, data);
        });
    };
}

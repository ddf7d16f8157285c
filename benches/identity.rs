//! Identity benchmarks (issue 7 figures), on SQLite and (with `PG_URL`) PostgreSQL:
//!
//! * `resolve`: 1,000,000 events from 300,000 people through the real pipeline, reporting
//!   events/s for identity resolution and for the whole normalise step.
//! * `merge`: merge and unmerge of a customer with 100,000 timeline entries through the API.
//!
//! ```sh
//! cargo bench --bench identity                        # both, SQLite
//! EVENTS=100000 PEOPLE=30000 cargo bench --bench identity -- resolve   # a quick run
//! PG_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench identity
//! ```
//!
//! **Resolve workload.** Every person has an email; most have a phone (80% US numbers, the
//! rest UK, German and Brazilian mobiles), some a Telegram account, some a shop account.
//! Their events arrive through four connectors, each through its real webhook parser and
//! normaliser: a chat widget (`web`, generic connector: email, the phone as typed — `(415)
//! 555-0134`, `415.555.0134`, `+1 415 555 0134` … — and name; sometimes anonymous, then the
//! conversation decides), WhatsApp (`wa`: the number without formatting, the profile name),
//! Telegram (`tg`: the user id scoped by the bot) and Shopify (`shop`: orders and order
//! updates with the shop's customer id, email, phone; some guest checkouts without an id).
//! Each person's first event creates a customer; most later events link through an identity
//! the hub already knows; a person first seen on two channels without a shared identifier
//! is two customers until an event carries both (a web form with email and phone, an order),
//! which merges them. Activity is skewed: a few people write a lot. Event payloads are built
//! and stored before the clock starts (500 per insert); the clock covers only
//! `Pipeline::drain()`, with the default `pipeline.batch_size` (500).
//!
//! Reported: the drain rate (claim, load, normalise, identity, timeline write, commit = the
//! whole normalise step), and identity resolution alone: events ÷ time inside the pipeline
//! transaction spent looking up identities, conversations and guard counts, planning, and
//! writing customers, identities, merges and names (the `identity` stage of
//! `switchboard_pipeline_seconds_total`). Then the resulting counts; with the same `SEED`
//! they are the same on every run and on both backends, which is a check on any change to
//! the write path.
//!
//! **Merge workload.** Two customers, A and B, each with `MERGE_ENTRIES` (100,000) timeline
//! messages in `MERGE_ENTRIES / 100` conversations and `MERGE_ENTRIES / 500` external ids,
//! each grown from 50 customers merged by the pipeline (so each is a group of 50 customer
//! records), beside `MERGE_ENTRIES / 5` events of 5,000 other customers, all written by the
//! pipeline. Then the real app serves the API on 127.0.0.1 and the bench times
//! `POST /api/v1/customers/A/merge {"other": B}` and `POST /api/v1/customers/A/unmerge
//! {"merge_id"}`, `RUNS` times each, alternating, as the HTTP round trip seen by a client
//! (keep-alive). After the first merge and unmerge it checks that A's timeline holds both
//! customers' entries and then only its own.
//!
//! | env | default | meaning |
//! | --- | --- | --- |
//! | mode (argument after `--`) or `MODE` | `all` | `resolve`, `merge` or `all` |
//! | `EVENTS` | 1000000 | resolve: events |
//! | `PEOPLE` | 300000 | resolve: distinct people |
//! | `SEED` | 7 | generator seed |
//! | `PIPELINE_BATCH` | 500 | `pipeline.batch_size` |
//! | `MERGE_ENTRIES` | 100000 | merge: timeline entries of each of A and B |
//! | `RUNS` | 20 | merge: merges and unmerges timed |
//! | `SQLITE` | 1 | `0` skips SQLite |
//! | `PG_URL` | unset | also PostgreSQL: admin URL; a fresh `sb_bench_<random>` is created and dropped |

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, Executor};
use switchboard::app::{build_parts, Application};
use switchboard::auth::{create_token, Role};
use switchboard::config::{self, Settings};
use switchboard::domain::{parse_region, Phone};
use switchboard::metrics::Metrics;
use switchboard::pipeline::Pipeline;
use switchboard::registry::Registry;
use switchboard::store::{NewRawEvent, Store};
use switchboard_core::{InboundRequest, Ingress, Verified};

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn settings(url: &str) -> anyhow::Result<Settings> {
    let batch: usize = env_num("PIPELINE_BATCH", 500);
    let text = format!(
        r#"
[database]
url = "{url}"
[pipeline]
batch_size = {batch}
[[connectors]]
id = "web"
kind = "generic"
secret = "bench-secret"
event_id = "/id"
event_kind = "/type"
channel = "chat"
[connectors.mapping]
text = "/message/text"
thread = "/conversation/id"
occurred_at = "/created_at"
message_id = "/message/id"
customer_email = "/customer/email"
customer_phone = "/customer/phone"
customer_name = "/customer/name"
customer_external_id = "/customer/id"
[[connectors]]
id = "wa"
kind = "whatsapp"
app_secret = "bench-secret"
verify_token = "bench-verify"
phone_number_id = "106540352242922"
access_token = "bench-token"
[[connectors]]
id = "tg"
kind = "telegram"
bot_token = "123456789:bench-token"
secret_token = "bench-secret"
[[connectors]]
id = "shop"
kind = "shopify"
webhook_secret = "bench-secret"
access_token = "bench-token"
api_base = "http://127.0.0.1:9/admin/api/2025-01"
"#
    );
    config::from_str(&text, &[]).map_err(|e| anyhow::anyhow!("bench settings: {e}"))
}

/// A webhook request as the provider sends it, turned into stored raw events by the
/// connector's own parser (the signature check is the ingest benchmark's business).
fn received(
    registry: &Registry,
    connector: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    now: i64,
) -> anyhow::Result<Vec<NewRawEvent>> {
    let inst = registry
        .get(connector)
        .ok_or_else(|| anyhow::anyhow!("no connector {connector}"))?;
    let hook = inst
        .connector
        .webhook()
        .ok_or_else(|| anyhow::anyhow!("{connector} has no webhook"))?;
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            http::HeaderName::from_bytes(k.as_bytes())?,
            http::HeaderValue::from_str(v)?,
        );
    }
    let method = http::Method::POST;
    let uri: http::Uri = format!("/webhooks/{connector}").parse()?;
    let body = Bytes::from(body);
    let req = InboundRequest {
        method: &method,
        uri: &uri,
        headers: &map,
        body: &body,
        now: now / 1000,
    };
    match hook.parse(Verified::after_check(&req)) {
        Ok(Ingress::Events(evs)) => Ok(evs
            .into_iter()
            .map(|e| NewRawEvent::received(connector, e, now))
            .collect()),
        Ok(Ingress::Reply(_)) => anyhow::bail!("{connector}: a handshake, not an event"),
        Err(e) => anyhow::bail!("{connector}: {e}"),
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Linus", "Maria", "José", "Wei", "Aiko", "Fatima", "Olu", "Ingrid",
    "Pedro", "Chloé", "Raj", "Sven", "Lucía", "Tomás", "Emma", "Noah", "Mia", "Yusuf", "Hana",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Silva",
    "García",
    "Zhang",
    "Sato",
    "Khan",
    "Okafor",
    "Berg",
    "Santos",
    "Martin",
    "Patel",
    "Larsen",
    "Fernández",
    "Novak",
    "Smith",
    "Jones",
    "Rossi",
    "Yilmaz",
    "Kim",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "icloud.com",
    "proton.me",
    "gmx.de",
    "acme-corp.com",
    "example.org",
];
const US_AREAS: &[u32] = &[
    201, 212, 213, 305, 312, 404, 415, 512, 617, 646, 702, 718, 773, 808, 917,
];

#[derive(Clone, Copy, PartialEq, Default)]
enum Country {
    #[default]
    Us,
    Gb,
    De,
    Br,
}

struct Person {
    first: &'static str,
    last: &'static str,
    email: String,
    /// E.164 digits without `+`, and the country.
    phone: Option<(String, Country)>,
    tg: Option<i64>,
    wa: bool,
    shop: Option<u64>,
    web_session: u32,
    orders: u32,
}

fn phone_for(rng: &mut StdRng, us: phonenumber::country::Id) -> Option<(String, Country)> {
    for _ in 0..20 {
        let roll = rng.gen_range(0..100);
        let (digits, c) = if roll < 80 {
            let area = US_AREAS[rng.gen_range(0..US_AREAS.len())];
            let mut exch = rng.gen_range(200..1000);
            if exch == 555 || exch % 100 == 11 {
                exch += 1;
            }
            (
                format!("1{area}{exch}{:04}", rng.gen_range(0..10_000)),
                Country::Us,
            )
        } else if roll < 87 {
            (
                format!(
                    "447{}{:08}",
                    rng.gen_range(4..10),
                    rng.gen_range(0..100_000_000)
                ),
                Country::Gb,
            )
        } else if roll < 94 {
            (
                format!(
                    "4915{}{:08}",
                    rng.gen_range(1..8),
                    rng.gen_range(0..100_000_000)
                ),
                Country::De,
            )
        } else {
            (
                format!(
                    "55119{}{:07}",
                    rng.gen_range(6..10),
                    rng.gen_range(0..10_000_000)
                ),
                Country::Br,
            )
        };
        if Phone::parse(&format!("+{digits}"), us).is_some() {
            return Some((digits, c));
        }
    }
    None
}

/// The number as a person types it into a web form.
fn typed(digits: &str, c: Country, style: u32) -> String {
    match c {
        Country::Us => {
            let (a, e, s) = (&digits[1..4], &digits[4..7], &digits[7..]);
            match style % 6 {
                0 => format!("+1 ({a}) {e}-{s}"),
                1 => format!("({a}) {e}-{s}"),
                2 => format!("{a}.{e}.{s}"),
                3 => format!("{a}-{e}-{s}"),
                4 => format!("+{digits}"),
                _ => format!("1 {a} {e} {s}"),
            }
        }
        Country::Gb if style.is_multiple_of(2) => format!("+44 {} {}", &digits[2..6], &digits[6..]),
        Country::De if style.is_multiple_of(2) => format!("+49 {} {}", &digits[2..5], &digits[5..]),
        Country::Br if style.is_multiple_of(2) => {
            format!("+55 11 {}-{}", &digits[4..9], &digits[9..])
        }
        _ => format!("+{digits}"),
    }
}

struct Workload {
    rng: StdRng,
    people: Vec<Person>,
    /// Person of each event, in order.
    order: Vec<u32>,
    next_id: u64,
    t0: i64,
}

impl Workload {
    fn new(people: usize, events: usize, seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let us = parse_region("US").expect("US");
        let people: Vec<Person> = (0..people)
            .map(|p| {
                let first = FIRST[rng.gen_range(0..FIRST.len())];
                let last = LAST[rng.gen_range(0..LAST.len())];
                let domain = DOMAINS[rng.gen_range(0..DOMAINS.len())];
                let email = format!(
                    "{}.{}{p}@{domain}",
                    first.to_lowercase(),
                    last.to_lowercase()
                );
                let phone = if rng.gen_bool(0.8) {
                    phone_for(&mut rng, us)
                } else {
                    None
                };
                let wa = phone.is_some() && rng.gen_bool(0.45);
                Person {
                    first,
                    last,
                    email,
                    phone,
                    tg: rng.gen_bool(0.2).then(|| 5_000_000_000 + p as i64),
                    wa,
                    shop: rng.gen_bool(0.4).then(|| 7_000_000_000_000 + p as u64),
                    web_session: 0,
                    orders: 0,
                }
            })
            .collect();
        // Everyone once, the rest skewed towards a few busy people; then shuffled.
        let n = people.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        while order.len() < events.max(n) {
            let u: f64 = rng.gen();
            order.push(((n as f64) * u.powf(2.5)) as u32 % n as u32);
        }
        order.truncate(events);
        for i in (1..order.len()).rev() {
            let j = rng.gen_range(0..=i);
            order.swap(i, j);
        }
        Workload {
            rng,
            people,
            order,
            next_id: 1,
            t0: 1_767_225_600_000, // 2026-01-01
        }
    }

    /// The `i`-th event as stored raw events (WhatsApp and the others: one each).
    fn event(&mut self, registry: &Registry, i: usize) -> anyhow::Result<Vec<NewRawEvent>> {
        let p = self.order[i] as usize;
        let at_ms = self.t0 + i as i64 * 30_000;
        let at = at_ms / 1000;
        let id = self.next_id;
        self.next_id += 1;
        let rng = &mut self.rng;
        let person = &mut self.people[p];
        let mut channels = vec![("web", 40)];
        if person.wa {
            channels.push(("wa", 30));
        }
        if person.tg.is_some() {
            channels.push(("tg", 20));
        }
        if person.shop.is_some() {
            channels.push(("shop", 25));
        }
        let total: u32 = channels.iter().map(|c| c.1).sum();
        let mut roll = rng.gen_range(0..total);
        let channel = channels
            .iter()
            .find(|c| {
                if roll < c.1 {
                    true
                } else {
                    roll -= c.1;
                    false
                }
            })
            .map(|c| c.0)
            .unwrap_or("web");
        let name = format!("{} {}", person.first, person.last);
        let text = format!(
            "Hello, this is {} about my order {}. Could you tell me when it ships? {}",
            person.first,
            id,
            "Thanks! ".repeat(rng.gen_range(1..12))
        );
        match channel {
            "wa" => {
                let (digits, c) = person.phone.clone().unwrap_or_default();
                // WhatsApp sends older Brazilian mobiles without the ninth digit.
                let from = if c == Country::Br && p.is_multiple_of(3) {
                    format!("{}{}", &digits[..4], &digits[5..])
                } else {
                    digits
                };
                let body = serde_json::json!({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
                    "messaging_product":"whatsapp",
                    "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
                    "contacts":[{"profile":{"name": name},"wa_id": from}],
                    "messages":[{"from": from,"id": format!("wamid.bench{id}"),"timestamp": at.to_string(),"type":"text","text":{"body": text}}]}}]}]});
                received(registry, "wa", &[], serde_json::to_vec(&body)?, at_ms)
            }
            "tg" => {
                let uid = person.tg.unwrap_or_default();
                let who = serde_json::json!({"id": uid, "is_bot": false, "first_name": person.first, "last_name": person.last, "username": format!("{}{p}", person.first.to_lowercase())});
                let body = serde_json::json!({"update_id": id, "message": {"message_id": id, "from": who,
                    "chat": {"id": uid, "first_name": person.first, "last_name": person.last, "type": "private"},
                    "date": at, "text": text}});
                received(registry, "tg", &[], serde_json::to_vec(&body)?, at_ms)
            }
            "shop" => {
                let update = person.orders > 0 && rng.gen_bool(0.25);
                if !update {
                    person.orders += 1;
                }
                let order_id = (p as u64) * 1000 + u64::from(person.orders);
                let created = chrono::DateTime::from_timestamp(at - 3600, 0)
                    .unwrap_or_default()
                    .to_rfc3339();
                let updated = chrono::DateTime::from_timestamp(at, 0)
                    .unwrap_or_default()
                    .to_rfc3339();
                let guest = rng.gen_bool(0.1);
                let phone = person.phone.as_ref().map(|(d, _)| format!("+{d}"));
                let customer = (!guest).then(|| serde_json::json!({"id": person.shop, "email": person.email, "first_name": person.first, "last_name": person.last, "phone": phone}));
                let qty = rng.gen_range(1..4);
                let body = serde_json::json!({"id": order_id, "name": format!("#{order_id}"), "order_number": order_id,
                    "email": person.email, "phone": phone, "created_at": created, "updated_at": updated,
                    "currency": "USD", "total_price": format!("{}.00", 20 * qty), "subtotal_price": format!("{}.00", 20 * qty), "total_tax": "0.00",
                    "financial_status": if update { "paid" } else { "pending" }, "fulfillment_status": null, "customer": customer,
                    "line_items": [{"id": order_id * 10, "product_id": 632910392, "title": "Travel mug", "quantity": qty, "price": "20.00", "sku": "MUG"}],
                    "shipping_address": {"first_name": person.first, "last_name": person.last, "address1": format!("{} Main Street", p % 900 + 1), "city": "Springfield", "zip": "40003", "country_code": "US", "phone": phone},
                    "refunds": []});
                let topic = if update {
                    "orders/updated"
                } else {
                    "orders/create"
                };
                received(
                    registry,
                    "shop",
                    &[
                        ("x-shopify-topic", topic),
                        ("x-shopify-webhook-id", &format!("wh-{id}")),
                    ],
                    serde_json::to_vec(&body)?,
                    at_ms,
                )
            }
            _ => {
                if person.web_session == 0 || rng.gen_bool(0.3) {
                    person.web_session += 1;
                }
                let anonymous = person.web_session > 0 && rng.gen_bool(0.08);
                let email = if rng.gen_bool(0.3) {
                    // As typed: capitals, stray spaces.
                    let (l, d) = person.email.split_once('@').unwrap_or_default();
                    format!(" {}@{} ", capitalise(l), capitalise(d))
                } else {
                    person.email.clone()
                };
                let phone = person
                    .phone
                    .as_ref()
                    .filter(|_| rng.gen_bool(0.4))
                    .map(|(d, c)| typed(d, *c, rng.gen_range(0..6)));
                let customer = if anonymous {
                    serde_json::json!({"name": "Visitor"})
                } else {
                    serde_json::json!({"email": email, "phone": phone, "name": name})
                };
                let body = serde_json::json!({"id": format!("web-{id}"), "type": "message.created", "created_at": at,
                    "conversation": {"id": format!("w{p}-{}", person.web_session)},
                    "message": {"id": format!("m{id}"), "text": text}, "customer": customer});
                received(registry, "web", &[], serde_json::to_vec(&body)?, at_ms)
            }
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// One number from a query (counts).
async fn scalar(url: &str, q: &str) -> anyhow::Result<i64> {
    Ok(if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query_scalar(q).fetch_one(&mut c).await?
    } else {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query_scalar(q).fetch_one(&mut c).await?
    })
}

async fn resolve(label: &str, url: &str) -> anyhow::Result<()> {
    let events: usize = env_num("EVENTS", 1_000_000);
    let people: usize = env_num("PEOPLE", 300_000).min(events).max(1);
    let s = settings(url)?;
    let (registry, claims) = build_parts(&s, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::connect(&s.database).await?;
    store.migrate().await?;

    let t = Instant::now();
    let mut w = Workload::new(people, events, env_num("SEED", 7));
    let mut batch = Vec::with_capacity(500);
    let mut stored = 0usize;
    for i in 0..events {
        batch.extend(w.event(&registry, i)?);
        if batch.len() >= 500 || i + 1 == events {
            stored += batch.len();
            store.insert_raw_events(&batch).await?;
            batch.clear();
        }
    }
    drop(w);
    println!(
        "{label}: generated and stored {stored} raw events from {people} people in {:.1}s (not timed)",
        t.elapsed().as_secs_f64()
    );

    let metrics = Arc::new(Metrics::new(registry.iter().map(|c| c.id.as_str())));
    let pipeline = Pipeline::new(
        store.clone(),
        registry,
        claims,
        s.pipeline.clone(),
        metrics.clone(),
        Arc::new(tokio::sync::Notify::new()),
    );
    let t = Instant::now();
    let done = pipeline.drain().await?;
    let el = t.elapsed().as_secs_f64();
    let us = |v: &std::sync::atomic::AtomicU64| v.load(Relaxed) as f64 / 1e6;
    let (norm, ident, apply) = (
        us(&metrics.pipeline_us.normalize),
        us(&metrics.pipeline_us.identity),
        us(&metrics.pipeline_us.apply),
    );
    println!(
        "{label}: normalise step (drain) {done} events in {el:.2}s = {:.0} events/s; identity resolution {ident:.2}s = {:.0} events/s",
        done as f64 / el,
        done as f64 / ident.max(1e-9)
    );
    let (lookup, write) = (
        us(&metrics.pipeline_us.identity_lookup),
        us(&metrics.pipeline_us.identity_write),
    );
    println!(
        "{label}: time by stage: normalise {norm:.2}s, apply {apply:.2}s (identity {ident:.2}s = lookup {lookup:.2}s + plan {:.2}s + write {write:.2}s; the rest {:.2}s), claim/load/other {:.2}s",
        ident - lookup - write,
        apply - ident,
        el - norm - apply
    );
    println!(
        "{label}: counts: customers {} (canonical {}), merges {}, identities {} (linking {}), conversations {}, timeline entries {}, documents {}, dead jobs {}",
        scalar(url, "SELECT COUNT(*) FROM customers").await?,
        scalar(url, "SELECT COUNT(*) FROM customers WHERE id = canonical_id").await?,
        scalar(url, "SELECT COUNT(*) FROM customer_merges").await?,
        scalar(url, "SELECT COUNT(*) FROM identities").await?,
        scalar(url, "SELECT COUNT(*) FROM identities WHERE links = 1").await?,
        scalar(url, "SELECT COUNT(*) FROM conversations").await?,
        scalar(url, "SELECT COUNT(*) FROM timeline_entries").await?,
        scalar(url, "SELECT COUNT(*) FROM entities").await?,
        scalar(url, "SELECT COUNT(*) FROM jobs WHERE state = 'dead'").await?,
    );
    store.close().await;
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A generic-connector message from customer `ext` (with, now and then, a second id).
fn crm_event(
    registry: &Registry,
    n: u64,
    ext: &str,
    also: Option<&str>,
    conv: &str,
) -> anyhow::Result<Vec<NewRawEvent>> {
    let body = serde_json::json!({"id": format!("crm-{n}"), "type": "message.created", "created_at": 1_767_225_600 + n as i64,
        "conversation": {"id": conv}, "message": {"id": format!("m{n}"), "text": format!("message {n} {}", "x".repeat(200))},
        "customer": {"id": ext, "email": also, "name": ext}});
    received(
        registry,
        "web",
        &[],
        serde_json::to_vec(&body)?,
        1_767_225_600_000 + n as i64,
    )
}

async fn merge(label: &str, url: &str) -> anyhow::Result<()> {
    let entries: u64 = env_num("MERGE_ENTRIES", 100_000);
    let runs: usize = env_num("RUNS", 20);
    let mut s = settings(url)?;
    s.pipeline.enabled = false;
    let (registry, _) = build_parts(&s, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(s).await?;
    let store = app.store();
    let pipeline = app.pipeline();

    // Seed: A and B each grow from 50 customers (ids X-0 … X-49) that the pipeline merges by
    // events naming X and X-k together; then their messages; then everyone else's.
    let t = Instant::now();
    let mut n = 0u64;
    let mut buf: Vec<NewRawEvent> = Vec::new();
    let flush = |buf: &mut Vec<NewRawEvent>| {
        let b = std::mem::take(buf);
        let store = store.clone();
        async move { store.insert_raw_events(&b).await.map(|_| ()) }
    };
    for who in ["A", "B"] {
        for k in 0..50 {
            n += 1;
            buf.extend(crm_event(
                &registry,
                n,
                &format!("{who}-{k}"),
                None,
                &format!("{who}-c{k}"),
            )?);
        }
        flush(&mut buf).await?;
        pipeline.drain().await?;
        for k in 0..50 {
            n += 1;
            let body = serde_json::json!({"id": format!("crm-{n}"), "type": "message.created", "created_at": 1_767_225_600 + n as i64,
                "conversation": {"id": format!("{who}-c{k}")}, "message": {"id": format!("m{n}"), "text": "linking"},
                "customer": {"id": format!("{who}-{k}"), "email": format!("{}@example.com", who.to_lowercase())}});
            buf.extend(received(
                &registry,
                "web",
                &[],
                serde_json::to_vec(&body)?,
                1_767_225_600_000 + n as i64,
            )?);
        }
        flush(&mut buf).await?;
        pipeline.drain().await?;
        let convs = (entries / 100).max(1);
        let idents = (entries / 500).max(1);
        for i in 0..entries.saturating_sub(100) {
            n += 1;
            // Ids past the first 50 are new identities of the same person: the email links them.
            let ext = format!("{who}-{}", i % idents.max(50));
            let email = format!("{}@example.com", who.to_lowercase());
            buf.extend(crm_event(
                &registry,
                n,
                &ext,
                Some(&email),
                &format!("{who}-c{}", i % convs),
            )?);
            if buf.len() >= 500 {
                flush(&mut buf).await?;
            }
        }
        flush(&mut buf).await?;
        pipeline.drain().await?;
    }
    for i in 0..entries / 5 {
        n += 1;
        let ext = format!("other-{}", i % 5000);
        buf.extend(crm_event(
            &registry,
            n,
            &ext,
            None,
            &format!("o{}", i % 5000),
        )?);
        if buf.len() >= 500 {
            flush(&mut buf).await?;
        }
    }
    flush(&mut buf).await?;
    pipeline.drain().await?;
    let canonical_of = |ext: &'static str| {
        let url = url.to_string();
        async move {
            let q = format!("SELECT c.canonical_id FROM identities i JOIN customers c ON c.id = i.customer_id WHERE i.value = '{ext}' AND i.kind = 'external_id'");
            Ok::<String, anyhow::Error>(if url.starts_with("sqlite") {
                let mut c = sqlx::SqliteConnection::connect(&url).await?;
                sqlx::query_scalar(q.as_str()).fetch_one(&mut c).await?
            } else {
                let mut c = sqlx::PgConnection::connect(&url).await?;
                sqlx::query_scalar(q.as_str()).fetch_one(&mut c).await?
            })
        }
    };
    let (a, b) = (canonical_of("A-0").await?, canonical_of("B-0").await?);
    let count_of = |c: String| {
        let url = url.to_string();
        async move {
            scalar(&url, &format!("SELECT COUNT(*) FROM timeline_entries t JOIN customers c ON c.id = t.customer_id WHERE c.canonical_id = '{c}'")).await
        }
    };
    let group = |c: String| {
        let url = url.to_string();
        async move {
            scalar(
                &url,
                &format!("SELECT COUNT(*) FROM customers WHERE canonical_id = '{c}'"),
            )
            .await
        }
    };
    let (ea, eb) = (count_of(a.clone()).await?, count_of(b.clone()).await?);
    println!(
        "{label}: seeded in {:.1}s: A has {ea} entries ({} customer records, {} conversations), B {eb} ({} records); {} entries in all",
        t.elapsed().as_secs_f64(),
        group(a.clone()).await?,
        scalar(url, &format!("SELECT COUNT(*) FROM conversations v JOIN customers c ON c.id = v.customer_id WHERE c.canonical_id = '{a}'")).await?,
        group(b.clone()).await?,
        scalar(url, "SELECT COUNT(*) FROM timeline_entries").await?,
    );

    let base = format!("http://127.0.0.1:{}", app.port());
    let token = create_token(&store, "idbench", Role::Admin).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let post = |path: String, body: serde_json::Value| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let t = Instant::now();
            let r = client
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?;
            let status = r.status();
            let v: serde_json::Value = r.json().await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
            Ok::<_, anyhow::Error>((ms, v))
        }
    };
    let (mut merges, mut unmerges) = (Vec::new(), Vec::new());
    for run in 0..runs + 1 {
        let (ms, v) = post(
            format!("/api/v1/customers/{a}/merge"),
            serde_json::json!({"other": b}),
        )
        .await?;
        let merge_id = v["id"].as_str().unwrap_or_default().to_string();
        if run == 0 {
            let both = count_of(a.clone()).await?;
            anyhow::ensure!(
                both == ea + eb,
                "after merge A shows {both}, want {}",
                ea + eb
            );
        }
        let (ms2, _) = post(
            format!("/api/v1/customers/{a}/unmerge"),
            serde_json::json!({"merge_id": merge_id}),
        )
        .await?;
        if run == 0 {
            let (a2, b2) = (count_of(a.clone()).await?, count_of(b.clone()).await?);
            anyhow::ensure!(
                (a2, b2) == (ea, eb),
                "after unmerge A {a2}, B {b2}; want {ea}, {eb}"
            );
            continue; // the first pair warms the connection and the caches
        }
        merges.push(ms);
        unmerges.push(ms2);
    }
    let _ = stop_tx.send(());
    server.await??;
    for (what, v) in [("merge", &mut merges), ("unmerge", &mut unmerges)] {
        v.sort_by(f64::total_cmp);
        println!(
            "{label}: {what} of a customer with {ea} entries into/out of one with {eb}, API round trip over {} runs: p50 {:.2} ms, max {:.2} ms",
            v.len(),
            pct(v, 0.5),
            v.last().copied().unwrap_or(0.0)
        );
    }
    Ok(())
}

async fn run(what: &str, label: &str, url: &str) -> anyhow::Result<()> {
    match what {
        "resolve" => resolve(label, url).await,
        _ => merge(label, url).await,
    }
}

/// Each workload on a fresh database: a temp SQLite file, then (with `PG_URL`) a fresh
/// PostgreSQL database, dropped at the end.
async fn each_backend(mode: &str) -> anyhow::Result<()> {
    let wanted: Vec<&str> = ["resolve", "merge"]
        .into_iter()
        .filter(|w| mode == "all" || mode == *w)
        .collect();
    if env_num("SQLITE", 1) == 1 {
        let dir = tempfile::tempdir()?;
        for what in &wanted {
            let url = format!("sqlite://{}/{what}.db", dir.path().display());
            run(what, "sqlite", &url).await?;
        }
    }
    if let Ok(admin) = std::env::var("PG_URL") {
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        for what in &wanted {
            let name = format!("sb_bench_{}", uuid::Uuid::new_v4().simple());
            let mut c = sqlx::PgConnection::connect(&admin).await?;
            c.execute(format!("CREATE DATABASE {name}").as_str())
                .await?;
            let r = run(what, "postgres", &format!("{base}/{name}")).await;
            c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await?;
            r?;
        }
    }
    Ok(())
}

/// The shipped binary's allocator (src/main.rs), so in-process figures match `switchboard serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("MODE").ok())
        .unwrap_or_else(|| "all".into());
    anyhow::ensure!(
        ["all", "resolve", "merge"].contains(&mode.as_str()),
        "mode is resolve, merge or all, not `{mode}`"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(each_backend(&mode))
}

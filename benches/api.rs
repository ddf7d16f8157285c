//! Inbox API latency benchmark: seeds 200,000 customers, 100,000 conversations and 1,000,000
//! messages through the hub's own write path, then drives 32 concurrent keep-alive clients
//! against the real app on 127.0.0.1 and reports p50/p99 per endpoint, on SQLite and (with
//! PG_URL set) PostgreSQL.
//!
//!     cargo bench --bench api                                  # seed a temp SQLite db, measure
//!     SCALE=0.1 cargo bench --bench api                        # a tenth of the data, quick
//!     SEED_DB=/tmp/apibench.db cargo bench --bench api -- seed # seed once, keep
//!     SEED_DB=/tmp/apibench.db cargo bench --bench api -- measure
//!     PG_URL=postgres://postgres@127.0.0.1:5432/postgres PG_DB=sb_apibench_full \
//!         cargo bench --bench api                              # also PostgreSQL (kept: PG_DB)
//!
//! Seeding goes through `Store::insert_raw_events` (500 per call) and `Pipeline::drain()`, so
//! customers, identities, conversations and timeline entries are exactly what production
//! writes. Every customer has a name, a unique email and external id, 60% also a unique phone,
//! and every event carries the whole claim set of its customer, so nothing merges by accident
//! (checked after seeding: `customer_merges` must be empty). Message text follows a Zipf law
//! over a 30,000-word vocabulary, so search finds a few rows for most words and many for a
//! few. See bench/README.md for the knobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, Executor, Row};
use switchboard::app::{build_parts, Application};
use switchboard::auth::{create_token, Role};
use switchboard::config::{self, Settings};
use switchboard::metrics::Metrics;
use switchboard::pipeline::Pipeline;
use switchboard::store::{now_ms, NewRawEvent, Store};

const CONNECTOR: &str = "shop";
/// The two years the data spans end here (2026-01-01T00:00:00Z), fixed so reseeding is
/// reproducible.
const T_END: i64 = 1_767_225_600;
const SPAN: i64 = 2 * 365 * 86_400;

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    env_str(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The hub's settings for seeding (`suggester = true`: the seed never starts it anyway) and
/// for measuring. While measuring, the merge suggester is off unless `SUGGESTER=1`: seeding
/// feeds 1.2M events in minutes and leaves ~200,000 customers for it to score, a backlog of
/// over an hour here (the data set's names collide a lot), whose scoring and writes would run in
/// this process beside the API (CPU/req counts the whole process) for the whole measurement.
fn settings(url: &str, suggester: bool) -> Settings {
    let pool: u32 = env_num("POOL", 8);
    let batch: usize = env_num("PIPELINE_BATCH", 500);
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[database]
url = "{url}"
max_connections = {pool}
[pipeline]
batch_size = {batch}
[identity.suggestions]
enabled = {suggester}
[[connectors]]
id = "{CONNECTOR}"
kind = "generic"
secret = "bench-secret"
event_id = "/id"
event_kind = "/type"
[connectors.mapping]
text = "/message/text"
thread = "/conversation/id"
direction = "/message/direction"
occurred_at = "/created_at"
message_id = "/message/id"
customer_email = "/customer/email"
customer_phone = "/customer/phone"
customer_name = "/customer/name"
customer_external_id = "/customer/id"
order_id = "/order/id"
order_total = "/order/total"
order_currency = "/order/currency"
order_status = "/order/status"
"#
    );
    config::from_str(&text, &[]).expect("bench settings")
}

// ---------------------------------------------------------------------------------------------
// The data set

/// Bump when the generator changes what it writes, so an old seeded database is refused.
const GENERATOR: u32 = 1;

#[derive(Debug, Clone, Copy)]
struct Shape {
    customers: usize,
    conversations: usize,
    messages: usize,
    vocabulary: usize,
    seed: u64,
}

impl Shape {
    fn from_env() -> Shape {
        let scale: f64 = env_num("SCALE", 1.0);
        let n = |name: &str, full: f64| env_num(name, ((full * scale).round() as usize).max(1));
        let s = Shape {
            customers: n("CUSTOMERS", 200_000.0),
            conversations: n("CONVERSATIONS", 100_000.0),
            messages: n("MESSAGES", 1_000_000.0),
            vocabulary: env_num("VOCABULARY", 30_000),
            seed: env_num("SEED", 42),
        };
        assert!(
            s.customers > 0 && s.messages >= s.conversations,
            "every conversation needs a message: MESSAGES must be >= CONVERSATIONS"
        );
        s
    }

    /// Prefix of every seeded event id: names the generator and its parameters, so a
    /// database seeded differently is never mistaken for this one.
    fn tag(&self) -> String {
        let text = format!("{GENERATOR} {self:?}");
        let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        format!("seed-{:08x}-", h as u32)
    }
}

const FIRST: &str = "\
    Ada Alan Amara Ana Arjun Beatriz Ben Carla Chen Chloe Dana David Diego Elena Emma Farah \
    Felix Grace Hana Hugo Ines Ivan Jade James Jin Julia Kai Karim Lara Leo Lina Lucas Maya Mei \
    Mohamed Nadia Noah Olga Omar Paula Priya Rafael Rosa Sam Sara Sofia Tariq Tom Valentina Yuki \
    Zoe";
const LAST: &str = "\
    Abara Berg Costa Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Lovelace Martin \
    Nakamura Novak Okafor Petrov Quinn Rossi Schmidt Silva Tanaka Turing Usman Varga Wang Weber \
    Xu Yilmaz Zhang";
const DOMAINS: &str = "\
    example.com example.org example.net mail.test inbox.test shop.test";
/// Area codes libphonenumber accepts as valid US numbers.
const AREAS: &[u32] = &[
    201, 202, 206, 212, 213, 305, 312, 404, 415, 503, 512, 617, 646, 702, 713, 718, 801, 917,
];
/// Support-conversation words, the head of the vocabulary (most frequent first).
const WORDS: &str = "\
    the my order I is to a and it you for please hi thanks can not was have with on delivery \
    package still received refund help when will arrive hello tracking number item return \
    shipping address payment card invoice account today yesterday week change cancel wrong size \
    color damaged missing replacement exchange discount code coupon voucher price charged twice \
    subscription renewal password login email phone update status courier warehouse stock \
    available backorder preorder gift wrap receipt warranty repair broken screen battery charger \
    cable adapter headphones speaker keyboard mouse monitor laptop tablet camera lens tripod \
    backpack jacket shoes boots sneakers dress shirt trousers scarf gloves hat watch bracelet \
    necklace ring earrings sunglasses perfume shampoo blender kettle toaster espresso grinder \
    mug teapot pillow blanket mattress sofa lamp curtains rug shelf drawer wardrobe desk chair \
    bicycle helmet tent sleeping stove lantern compass kayak paddle skateboard scooter stroller \
    crib puzzle boardgame novel cookbook notebook pen ink printer toner router modem firmware \
    bluetooth pairing voltage fuse thermostat humidifier purifier filter vacuum mop detergent \
    customs duty import express overnight pickup locker signature doorstep neighbour reception \
    invoice vat receipt billing paypal klarna installment chargeback dispute fraud verification \
    loyalty points membership newsletter unsubscribe privacy gdpr erase export complaint manager \
    escalate urgent asap disappointed delighted awesome terrible quickly finally apparently \
    unfortunately honestly lisbon berlin madrid warsaw dublin oslo vienna zurich prague athens \
    tallinn riga vilnius sofia bucharest zagreb ljubljana";

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: a cheap, well-spread hash of the customer number.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn list(words: &'static str) -> Vec<&'static str> {
    words.split_whitespace().collect()
}

/// Every customer's claims. Every value that identifies (email, phone, external id) contains
/// the customer's number, so two customers never share one.
fn customers_json(n: usize) -> Vec<serde_json::Value> {
    let (first, last, domains) = (list(FIRST), list(LAST), list(DOMAINS));
    (0..n)
        .map(|i| customer_json(i, &first, &last, &domains))
        .collect()
}

fn customer_json(i: usize, first: &[&str], last: &[&str], domains: &[&str]) -> serde_json::Value {
    let h = mix(i as u64);
    let first = first[(h % first.len() as u64) as usize];
    let last = last[((h >> 16) % last.len() as u64) as usize];
    let domain = domains[((h >> 32) % domains.len() as u64) as usize];
    let mut c = serde_json::json!({
        "id": format!("cust-{i}"),
        "email": format!("{}.{}.{i}@{domain}", first.to_lowercase(), last.to_lowercase()),
        "name": format!("{first} {last}"),
    });
    if (h >> 48) % 10 < 6 {
        // +1 AAA EEE LLLL: exchange 200–999, line 0000–9999; unique for i < 18 × 8,000,000.
        let area = AREAS[i % AREAS.len()];
        let rest = i / AREAS.len();
        let exchange = 200 + (rest / 10_000) % 800;
        let line = rest % 10_000;
        c["phone"] = format!("+1 {area} {exchange} {line:04}").into();
    }
    c
}

/// Syllables for the vocabulary's long tail: pseudo-words that read like brand and product
/// names (`kelomi`, `zorvani`), unique by construction.
const SYLLABLES: &str = "\
    ka ke ki ko lu la lo mi ma mo ne na ni po pa ri ro ra sa se so ta te to va ve vi za zo dor \
    ban mel tin gar wen qui rex lys fen ost";

/// The vocabulary, most frequent first: the support words, then pseudo-words up to `size`.
/// Text draws rank r with probability ∝ 1/r (Zipf, s = 1), as natural language does, so a
/// few words are in most messages and most words are in a few.
fn vocabulary(size: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut v: Vec<String> = WORDS
        .split_whitespace()
        .map(|w| w.to_string())
        .filter(|w| seen.insert(w.clone()))
        .collect();
    let syllables = list(SYLLABLES);
    let n = syllables.len();
    let mut i = 0usize;
    while v.len() < size {
        // Three syllables from the digits of i in base n, then a fourth once those run out.
        let mut w = String::new();
        let mut x = i;
        for _ in 0..3 {
            w.push_str(syllables[x % n]);
            x /= n;
        }
        if x > 0 {
            w.push_str(syllables[x % n]);
        }
        i += 1;
        if seen.insert(w.clone()) {
            v.push(w);
        }
    }
    v.truncate(size.max(1));
    v
}

fn sentence(rng: &mut StdRng, vocab: &[String]) -> String {
    let n = rng.gen_range(6..40);
    let ln = (vocab.len() as f64 + 1.0).ln();
    let mut s = String::with_capacity(n * 7);
    for k in 0..n {
        // Inverse CDF of the continuous 1/r law on [1, V + 1).
        let r = (rng.gen::<f64>() * ln).exp() as usize;
        let w = &vocab[r.clamp(1, vocab.len()) - 1];
        if k > 0 {
            s.push(' ');
        }
        s.push_str(w);
        if rng.gen_ratio(1, 60) {
            s.push_str(&format!(" #A{}", rng.gen_range(10_000..99_999)));
        }
    }
    s.push(if rng.gen_bool(0.3) { '?' } else { '.' });
    s
}

#[derive(Clone, Copy)]
enum Ev {
    /// The customer's first order: every customer exists and has a timeline, also the ~60%
    /// who never wrote.
    Order(u32),
    Message(u32),
}

/// Every event of the data set, in the order they happened (seconds, event).
fn plan(s: &Shape) -> (Vec<u32>, Vec<(i64, Ev)>) {
    let mut rng = StdRng::seed_from_u64(s.seed);
    // Who each conversation belongs to: a fifth go to the 2% most frequent contacts.
    let heavy = (s.customers / 50).max(1);
    let conv_customer: Vec<u32> = (0..s.conversations)
        .map(|_| {
            if rng.gen_bool(0.2) {
                rng.gen_range(0..heavy) as u32
            } else {
                rng.gen_range(0..s.customers) as u32
            }
        })
        .collect();
    // Messages per conversation: one each, the rest skewed (most threads short, a few long).
    let mut per_conv = vec![1u32; s.conversations];
    let mut order: Vec<usize> = (0..s.conversations).collect();
    order.shuffle(&mut rng);
    for _ in 0..(s.messages - s.conversations) {
        let u: f64 = rng.gen();
        per_conv[order[((u * u) * s.conversations as f64) as usize]] += 1;
    }
    let mut events = Vec::with_capacity(s.customers + s.messages);
    for i in 0..s.customers {
        events.push((T_END - rng.gen_range(0..SPAN), Ev::Order(i as u32)));
    }
    for (j, &n) in per_conv.iter().enumerate() {
        let mut t = T_END - rng.gen_range(86_400..SPAN);
        for _ in 0..n {
            events.push((t.min(T_END), Ev::Message(j as u32)));
            // Replies minutes to a day apart (exponential, mean 3 h).
            let u: f64 = rng.gen_range(1e-9..1.0);
            t += (-u.ln() * 3.0 * 3600.0) as i64 + 30;
        }
    }
    events.sort_by_key(|e| e.0);
    (conv_customer, events)
}

async fn seed(store: &Store, s: &Settings, shape: &Shape) -> anyhow::Result<()> {
    let (registry, claims) = build_parts(s, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Arc::new(Metrics::new(registry.iter().map(|c| c.id.as_str())));
    let pipeline = Pipeline::new(
        store.clone(),
        registry,
        claims,
        s.pipeline.clone(),
        metrics,
        Arc::new(tokio::sync::Notify::new()),
    );
    let chunk: usize = env_num("SEED_CHUNK", 500).clamp(1, 1000);
    let round: usize = env_num("SEED_ROUND", 50_000).max(chunk);
    let t0 = Instant::now();
    let (conv_customer, events) = plan(shape);
    let customers = customers_json(shape.customers);
    let plan_time = t0.elapsed();
    let vocab = vocabulary(shape.vocabulary);
    let tag = shape.tag();
    let mut rng = StdRng::seed_from_u64(shape.seed ^ 0x5eed);
    let mut seq = vec![0u32; shape.conversations];
    let (mut insert_time, mut drain_time) = (Duration::ZERO, Duration::ZERO);
    let mut msg_n = 0usize;
    let mut last_report = Instant::now();
    for (r, round_events) in events.chunks(round).enumerate() {
        let t = Instant::now();
        for batch in round_events.chunks(chunk) {
            let mut rows = Vec::with_capacity(batch.len());
            for &(at, ev) in batch {
                let (id, kind, body) = match ev {
                    Ev::Order(i) => {
                        let id = format!("{tag}o-{i}");
                        let currency = ["EUR", "USD", "GBP"][(i % 3) as usize];
                        let body = serde_json::json!({
                            "id": id, "type": "order.created", "created_at": at,
                            "order": {
                                "id": format!("ORD-{}", 100_000 + i),
                                "total": format!("{}.{:02}", rng.gen_range(5..900), rng.gen_range(0..100)),
                                "currency": currency,
                                "status": "paid",
                            },
                            "customer": customers[i as usize],
                        });
                        (id, "order.created", body)
                    }
                    Ev::Message(j) => {
                        let k = &mut seq[j as usize];
                        let inbound = *k == 0 || rng.gen_bool(0.55);
                        *k += 1;
                        let id = format!("{tag}m-{msg_n}");
                        msg_n += 1;
                        let body = serde_json::json!({
                            "id": id, "type": "message.created", "created_at": at,
                            "conversation": {"id": format!("conv-{j}")},
                            "message": {
                                "id": format!("msg-{j}-{k}"),
                                "direction": if inbound { "inbound" } else { "outbound" },
                                "text": sentence(&mut rng, &vocab),
                            },
                            "customer": customers[conv_customer[j as usize] as usize],
                        });
                        (id, "message.created", body)
                    }
                };
                rows.push(NewRawEvent {
                    connector_id: CONNECTOR.into(),
                    provider_event_id: id,
                    kind: kind.into(),
                    occurred_at: Some(at * 1000),
                    received_at: now_ms(),
                    headers: "[]".into(),
                    payload: serde_json::to_vec(&body)?.into(),
                });
            }
            store.insert_raw_events(&rows).await?;
        }
        insert_time += t.elapsed();
        let t = Instant::now();
        pipeline.drain().await?;
        drain_time += t.elapsed();
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  … {} / {} events after {:.0}s",
                ((r + 1) * round).min(events.len()),
                events.len(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let total = t0.elapsed();
    println!(
        "  seeded {} raw events in {:.1}s ({:.0}/s): plan {:.1}s, insert_raw_events {:.1}s ({chunk} per call), Pipeline::drain {:.1}s ({:.0} events/s)",
        events.len(),
        total.as_secs_f64(),
        events.len() as f64 / total.as_secs_f64(),
        plan_time.as_secs_f64(),
        insert_time.as_secs_f64(),
        drain_time.as_secs_f64(),
        events.len() as f64 / drain_time.as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Direct database access (sizes, ids, ANALYZE): the bench's own connection, not the app's.

enum Db {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Db {
    async fn open(url: &str) -> anyhow::Result<Db> {
        Ok(if url.starts_with("sqlite") {
            Db::Sqlite(sqlx::SqliteConnection::connect(url).await?)
        } else {
            Db::Pg(sqlx::PgConnection::connect(url).await?)
        })
    }
    async fn scalar(&mut self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Db::Pg(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        })
    }
    async fn strings(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
            Db::Pg(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
        })
    }
    async fn execute(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(c) => {
                c.execute(sql).await?;
            }
            Db::Pg(c) => {
                c.execute(sql).await?;
            }
        }
        Ok(())
    }
    async fn close(self) {
        let _ = match self {
            Db::Sqlite(c) => c.close().await,
            Db::Pg(c) => c.close().await,
        };
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Seeded {
    Empty,
    Partial(String),
    Yes,
    Other(String),
}

async fn seeded(url: &str, shape: &Shape) -> anyhow::Result<Seeded> {
    let mut db = Db::open(url).await?;
    let has_schema = db
        .scalar(if url.starts_with("sqlite") {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'timeline_entries'"
        } else {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'timeline_entries'"
        })
        .await?
        > 0;
    if !has_schema {
        db.close().await;
        return Ok(Seeded::Empty);
    }
    let raw = db.scalar("SELECT COUNT(*) FROM raw_events").await?;
    let customers = db.scalar("SELECT COUNT(*) FROM customers").await?;
    let conversations = db.scalar("SELECT COUNT(*) FROM conversations").await?;
    let messages = db
        .scalar("SELECT COUNT(*) FROM timeline_entries WHERE kind = 'message'")
        .await?;
    let merges = db.scalar("SELECT COUNT(*) FROM customer_merges").await?;
    let foreign = db
        .scalar(&format!(
            "SELECT COUNT(*) FROM raw_events WHERE provider_event_id NOT LIKE '{}%'",
            shape.tag()
        ))
        .await?;
    let pending = db
        .scalar("SELECT COUNT(*) FROM jobs WHERE state <> 'done'")
        .await?;
    db.close().await;
    let found = format!(
        "{raw} raw events ({foreign} not from this generator and shape), {customers} customers, {conversations} conversations, {messages} messages, {merges} merges, {pending} jobs not done"
    );
    if raw == 0 {
        Ok(Seeded::Empty)
    } else if foreign == 0
        && customers == shape.customers as i64
        && conversations == shape.conversations as i64
        && messages == shape.messages as i64
        && merges == 0
        && pending == 0
    {
        Ok(Seeded::Yes)
    } else if foreign == 0 && merges == 0 && raw <= (shape.customers + shape.messages) as i64 {
        // An interrupted seed: the same events again are duplicates, the rest goes in.
        Ok(Seeded::Partial(found))
    } else {
        Ok(Seeded::Other(found))
    }
}

/// Seeds `url` unless it already holds this shape; refuses a database holding anything else.
async fn ensure_seeded(label: &str, url: &str, shape: &Shape) -> anyhow::Result<()> {
    let s = settings(url, true);
    let store = Store::connect(&s.database).await?;
    store.migrate().await?;
    match seeded(url, shape).await? {
        Seeded::Yes => println!("{label}: reusing the seeded database"),
        Seeded::Other(found) => anyhow::bail!(
            "{label}: the database holds other data ({found}); expected {shape:?} — use another SEED_DB / PG_DB"
        ),
        state @ (Seeded::Empty | Seeded::Partial(_)) => {
            if let Seeded::Partial(found) = state {
                println!("{label}: resuming an interrupted seed ({found})");
                // The interrupted run's claimed jobs hold a lease nobody will finish.
                store.requeue_expired(i64::MAX).await?;
            }
            println!(
                "{label}: seeding {} customers, {} conversations, {} messages",
                shape.customers, shape.conversations, shape.messages
            );
            seed(&store, &s, shape).await?;
            match seeded(url, shape).await? {
                Seeded::Yes => {}
                Seeded::Empty => anyhow::bail!("{label}: seeding wrote nothing"),
                Seeded::Other(found) | Seeded::Partial(found) => anyhow::bail!(
                    "{label}: seeding produced {found}, expected {shape:?} (accidental merges or invalid phones?)"
                ),
            }
            if !url.starts_with("sqlite") {
                // Fresh statistics, as autovacuum would have them after a while; otherwise
                // the planner runs on whatever it sampled mid-load.
                let t = Instant::now();
                let mut db = Db::open(url).await?;
                db.execute("VACUUM ANALYZE").await?;
                db.close().await;
                println!(
                    "{label}: VACUUM ANALYZE in {:.1}s",
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }
    store.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measurement

struct Sample {
    name: String,
    requests: usize,
    secs: f64,
    lat_us: Vec<u32>,
    non_200: usize,
    skipped: Option<String>,
    /// Share of all cores used by this process (hub + clients) and by everything else
    /// (PostgreSQL, other work on the machine) during the run, in percent.
    cpu_own: f64,
    cpu_rest: f64,
    /// CPU time of this process per request, in µs: the hub's cost (plus the client's),
    /// steadier than latency when other work shares the cores.
    cpu_us_per_req: f64,
}

/// CPU ticks (USER_HZ) used so far: (this process, whole machine busy, whole machine total).
fn cpu_ticks() -> (u64, u64, u64) {
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    let (busy, total) = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let v: Vec<u64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3)? + v.get(4)?;
            Some((total - idle, total))
        })
        .unwrap_or((0, 0));
    (own, busy, total)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

/// How many support words count as the common head of the vocabulary in the search mix.
const HEAD: usize = 300;

/// The search queries the clients draw from (URL-encoded `q=…`), a fixed list so every run
/// sends the same mix. `SEARCH_MIX=mixed` (the default) is what an agent types:
///
/// - 50% one word drawn uniformly from the vocabulary: mostly rare product-like names with a
///   few to a few hundred matches; about 3% of these are among the 1,000 most frequent words;
/// - 15% one of the 300 most frequent words (`the`, `order`, `refund`, `tracking`): tens to
///   hundreds of thousands of matches;
/// - 10% two words, a frequent one and a uniform one (`refund kelomi`): every word must match;
/// - 5% a quoted phrase of two frequent words (`"tracking number"`);
/// - 10% a customer's whole email address (`ada.lovelace.123@example.com`);
/// - 5% a customer's full name (`Ada Lovelace`: about 130 customers each);
/// - 5% a last name alone (`Lovelace`: about 6,700 customers, by name and by email).
///
/// `SEARCH_MIX=vocabulary` is the earlier mix: one word uniform over the vocabulary.
/// `SEARCH_MIX=rare|head|head+rare|phrase|email|name|last` sends one class of the mix alone,
/// in the order above, to see what each costs.
fn search_queries(shape: &Shape, mix: Option<&str>) -> anyhow::Result<Vec<String>> {
    let vocab = vocabulary(shape.vocabulary);
    let head = &vocab[..HEAD.min(vocab.len())];
    let mut rng = StdRng::seed_from_u64(shape.seed ^ 0x5ea4c4);
    let (first, last, domains) = (list(FIRST), list(LAST), list(DOMAINS));
    let n = 10_000;
    let queries: Vec<String> = match mix.unwrap_or("mixed") {
        "vocabulary" => (0..n)
            .map(|_| vocab[rng.gen_range(0..vocab.len())].clone())
            .collect(),
        kind @ ("mixed" | "rare" | "head" | "head+rare" | "phrase" | "email" | "name" | "last") => {
            (0..n)
                .map(|_| {
                    let pick =
                        |rng: &mut StdRng, v: &[String]| v[rng.gen_range(0..v.len())].clone();
                    let customer = |rng: &mut StdRng| {
                        let i = rng.gen_range(0..shape.customers);
                        customer_json(i, &first, &last, &domains)
                    };
                    // One class alone (the mix's share of it): what each kind of query costs.
                    let class = match kind {
                        "rare" => 0,
                        "head" => 50,
                        "head+rare" => 65,
                        "phrase" => 75,
                        "email" => 80,
                        "name" => 90,
                        "last" => 95,
                        _ => rng.gen_range(0..100),
                    };
                    match class {
                        0..50 => pick(&mut rng, &vocab),
                        50..65 => pick(&mut rng, head),
                        65..75 => format!("{} {}", pick(&mut rng, head), pick(&mut rng, &vocab)),
                        75..80 => format!("\"{} {}\"", pick(&mut rng, head), pick(&mut rng, head)),
                        80..90 => customer(&mut rng)["email"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        90..95 => customer(&mut rng)["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        _ => last[rng.gen_range(0..last.len())].to_string(),
                    }
                })
                .collect()
        }
        other => anyhow::bail!(
            "SEARCH_MIX `{other}`: mixed, vocabulary, or one class of the mix: rare, head, \
             head+rare, phrase, email, name, last"
        ),
    };
    Ok(queries
        .into_iter()
        .map(|q| {
            let mut u = reqwest::Url::parse("http://127.0.0.1/").expect("static url");
            u.query_pairs_mut().append_pair("q", &q);
            u.query().unwrap_or_default().to_string()
        })
        .collect())
}

#[derive(Clone)]
enum Target {
    Conversations,
    Timeline(Arc<Vec<String>>),
    Conversation(Arc<Vec<String>>),
    Search(Arc<Vec<String>>),
}

impl Target {
    fn path(&self, rng: &mut StdRng) -> String {
        match self {
            Target::Conversations => "/api/v1/conversations?status=open".into(),
            Target::Timeline(ids) => format!(
                "/api/v1/customers/{}/timeline",
                ids[rng.gen_range(0..ids.len())]
            ),
            Target::Conversation(ids) => {
                format!("/api/v1/conversations/{}", ids[rng.gen_range(0..ids.len())])
            }
            Target::Search(queries) => {
                format!(
                    "/api/v1/search?{}",
                    queries[rng.gen_range(0..queries.len())]
                )
            }
        }
    }
}

async fn drive(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    target: &Target,
    clients: usize,
    secs: f64,
) -> (Vec<u32>, usize, f64) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, token, target) = (
            client.clone(),
            base.to_string(),
            token.to_string(),
            target.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c as u64 ^ now_ms() as u64);
            let mut lat = Vec::new();
            let mut bad = 0usize;
            while Instant::now() < deadline {
                let url = format!("{base}{}", target.path(&mut rng));
                let t = Instant::now();
                let ok = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(r) => {
                        let status = r.status();
                        r.bytes().await.is_ok() && status == reqwest::StatusCode::OK
                    }
                    Err(_) => false,
                };
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !ok {
                    bad += 1;
                }
            }
            (lat, bad)
        }));
    }
    let mut all = Vec::new();
    let mut bad = 0;
    for t in tasks {
        let (l, b) = t.await.expect("client task");
        all.extend(l);
        bad += b;
    }
    let el = start.elapsed().as_secs_f64();
    all.sort_unstable();
    (all, bad, el)
}

async fn measure(label: &str, url: &str, shape: &Shape) -> anyhow::Result<Vec<Sample>> {
    let clients: usize = env_num("CLIENTS", 32);
    let secs: f64 = env_num("DURATION", 10.0);
    let warmup: f64 = env_num("WARMUP", 2.0);
    let only = env_str("ENDPOINTS");

    let mut db = Db::open(url).await?;
    let customers = Arc::new(
        db.strings("SELECT id FROM customers WHERE id = canonical_id")
            .await?,
    );
    let conversations = Arc::new(db.strings("SELECT id FROM conversations").await?);
    db.close().await;
    anyhow::ensure!(
        !customers.is_empty() && !conversations.is_empty(),
        "{label}: no data to read"
    );

    let suggester = env_str("SUGGESTER").is_some_and(|v| v == "1");
    let app = Application::build(settings(url, suggester)).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let token = create_token(&app.store(), "apibench", Role::Agent).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));

    // The load generator runs on its own single-threaded runtime, so the server's workers
    // are not also scheduling the clients' futures.
    let queries = search_queries(shape, env_str("SEARCH_MIX").as_deref())?;
    let targets = vec![
        ("GET /conversations?status=open", Target::Conversations),
        (
            "GET /customers/{id}/timeline",
            Target::Timeline(customers.clone()),
        ),
        (
            "GET /conversations/{id}",
            Target::Conversation(conversations.clone()),
        ),
        ("GET /search?q={query}", Target::Search(Arc::new(queries))),
    ];
    let (base2, token2) = (base.clone(), token.clone());
    let only2 = only.clone();
    let samples = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Sample>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(clients)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .build()?;
            let mut out = Vec::new();
            for (name, target) in targets {
                if let Some(o) = &only2 {
                    let key = match target {
                        Target::Conversations => "list",
                        Target::Timeline(_) => "timeline",
                        Target::Conversation(_) => "conversation",
                        Target::Search(_) => "search",
                    };
                    if !o.split(',').any(|x| x.trim() == key) {
                        continue;
                    }
                }
                if matches!(target, Target::Search(_)) {
                    let r = client
                        .get(format!("{base2}/api/v1/search?q=refund"))
                        .bearer_auth(&token2)
                        .send()
                        .await?;
                    if r.status() == reqwest::StatusCode::NOT_FOUND {
                        out.push(Sample {
                            name: name.into(),
                            requests: 0,
                            secs: 0.0,
                            lat_us: Vec::new(),
                            non_200: 0,
                            skipped: Some(
                                "skipped: /api/v1/search answers 404 (route not there yet)".into(),
                            ),
                            cpu_own: 0.0,
                            cpu_rest: 0.0,
                            cpu_us_per_req: 0.0,
                        });
                        continue;
                    }
                }
                if warmup > 0.0 {
                    drive(&client, &base2, &token2, &target, clients, warmup).await;
                }
                let (own0, busy0, total0) = cpu_ticks();
                let (lat_us, non_200, el) =
                    drive(&client, &base2, &token2, &target, clients, secs).await;
                let (own1, busy1, total1) = cpu_ticks();
                let total = (total1 - total0).max(1) as f64;
                let own = (own1 - own0) as f64;
                // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
                let cpu_us_per_req = own * 10_000.0 / lat_us.len().max(1) as f64;
                out.push(Sample {
                    name: name.into(),
                    requests: lat_us.len(),
                    secs: el,
                    lat_us,
                    non_200,
                    skipped: None,
                    cpu_own: 100.0 * own / total,
                    cpu_rest: 100.0 * ((busy1 - busy0) as f64 - own).max(0.0) / total,
                    cpu_us_per_req,
                });
            }
            Ok(out)
        })
    })
    .await??;

    let _ = stop_tx.send(());
    server.await??;
    Ok(samples)
}

fn report(label: &str, samples: &[Sample]) {
    let (target_ms, search_ms) = if label == "sqlite" {
        (10.0, 50.0)
    } else {
        (15.0, 50.0)
    };
    println!(
        "{:<9} {:<33} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>5} {:>7}  target",
        "backend",
        "endpoint",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "non-200",
        "cpu%",
        "rest%",
        "µs/req"
    );
    for s in samples {
        if let Some(why) = &s.skipped {
            println!("{label:<9} {:<33} {why}", s.name);
            continue;
        }
        let p99 = pct(&s.lat_us, 0.99);
        let target = if s.name.contains("search") {
            search_ms
        } else {
            target_ms
        };
        println!(
            "{label:<9} {:<33} {:>9} {:>8.0} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>5.0} {:>5.0} {:>7.0}  p99 ≤ {target} ms: {}",
            s.name,
            s.requests,
            s.requests as f64 / s.secs,
            pct(&s.lat_us, 0.50),
            p99,
            s.lat_us.last().copied().unwrap_or(0) as f64 / 1000.0,
            s.non_200,
            s.cpu_own,
            s.cpu_rest,
            s.cpu_us_per_req,
            if p99 <= target && s.non_200 == 0 {
                "ok"
            } else {
                "MISSED"
            }
        );
    }
}

/// One `@bench {json}` line per endpoint, the figures bench/all.sh reads.
fn machine_lines(label: &str, samples: &[Sample]) {
    for s in samples {
        let endpoint = if s.name.contains("search") {
            "search"
        } else if s.name.contains("timeline") {
            "timeline"
        } else if s.name.contains("{id}") {
            "conversation"
        } else {
            "list"
        };
        let line = match &s.skipped {
            Some(why) => serde_json::json!({
                "bench": "api", "backend": label, "endpoint": endpoint, "skipped": why,
            }),
            None => serde_json::json!({
                "bench": "api", "backend": label, "endpoint": endpoint,
                "requests": s.requests, "rps": s.requests as f64 / s.secs,
                "p50_ms": pct(&s.lat_us, 0.50), "p99_ms": pct(&s.lat_us, 0.99),
                "max_ms": s.lat_us.last().copied().unwrap_or(0) as f64 / 1000.0,
                "non_200": s.non_200, "cpu_own": s.cpu_own, "cpu_rest": s.cpu_rest,
                "cpu_us_per_req": s.cpu_us_per_req,
            }),
        };
        println!("@bench {line}");
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Seed,
    Measure,
    All,
}

async fn run_backend(label: &str, url: &str, shape: &Shape, mode: Mode) -> anyhow::Result<()> {
    if mode == Mode::Measure {
        match seeded(url, shape).await? {
            Seeded::Yes => {}
            other => anyhow::bail!(
                "{label}: measure needs a seeded database ({other:?}); run with `-- seed` first (same SCALE)"
            ),
        }
    } else {
        ensure_seeded(label, url, shape).await?;
    }
    merge_search_indexes(label, url).await?;
    if mode != Mode::Seed {
        let samples = measure(label, url, shape).await?;
        report(label, &samples);
        machine_lines(label, &samples);
    }
    Ok(())
}

/// What a hub does by itself after a quiet minute (`switchboard::maintain`): each search
/// index merged into one segment (SQLite; nothing to do on PostgreSQL). The reads are
/// measured on a quiet hub, so in that state.
async fn merge_search_indexes(label: &str, url: &str) -> anyhow::Result<()> {
    let store = Store::connect(&settings(url, false).database).await?;
    let t = Instant::now();
    let steps = store.merge_search_indexes(500, 1_000_000).await?;
    if steps > 0 {
        println!(
            "{label}: search indexes merged in {steps} steps, {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    store.close().await;
    Ok(())
}

/// The shipped binary's allocator (src/main.rs), so in-process figures match `switchboard serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a bare word picks the mode.
    let arg = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| env_str("MODE"));
    let mode = match arg.as_deref() {
        None | Some("all") => Mode::All,
        Some("seed") => Mode::Seed,
        Some("measure") => Mode::Measure,
        Some(other) => anyhow::bail!("unknown mode `{other}`: seed, measure or all"),
    };
    let shape = Shape::from_env();
    let keep = env_str("KEEP").is_some_and(|v| v == "1") || mode == Mode::Seed;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if env_str("SQLITE").as_deref() != Some("0") {
            let (path, dir) = match env_str("SEED_DB") {
                Some(p) => (std::path::PathBuf::from(p), None),
                None => {
                    anyhow::ensure!(
                        mode != Mode::Measure,
                        "measure needs SEED_DB pointing at a seeded SQLite file"
                    );
                    let dir = tempfile::tempdir()?;
                    (dir.path().join("apibench.db"), Some(dir))
                }
            };
            anyhow::ensure!(
                mode != Mode::Measure || path.exists(),
                "measure: SEED_DB {} does not exist; seed it first (`-- seed`)",
                path.display()
            );
            let url = format!("sqlite://{}", path.display());
            let r = run_backend("sqlite", &url, &shape, mode).await;
            if let Some(dir) = dir {
                if keep {
                    println!("sqlite: kept {} (SEED_DB=… to reuse it)", path.display());
                    let _ = dir.keep();
                }
            }
            r?;
        }
        if let Some(admin) = env_str("PG_URL") {
            let named = env_str("PG_DB");
            if let Some(n) = &named {
                anyhow::ensure!(
                    n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "PG_DB must be a plain identifier"
                );
            }
            let name = named
                .clone()
                .unwrap_or_else(|| format!("sb_apibench_{}", uuid::Uuid::new_v4().simple()));
            let mut c = sqlx::PgConnection::connect(&admin).await?;
            let exists: bool =
                sqlx::query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut c)
                    .await?
                    .try_get(0)?;
            if !exists {
                anyhow::ensure!(
                    mode != Mode::Measure,
                    "measure needs PG_DB naming a seeded database"
                );
                c.execute(format!("CREATE DATABASE {name}").as_str())
                    .await?;
            }
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(admin.clone());
            let r = run_backend("postgres", &format!("{base}/{name}"), &shape, mode).await;
            if named.is_none() && !keep {
                c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
            } else {
                println!("postgres: kept database {name} (PG_DB={name} to reuse it)");
            }
            r?;
        }
        Ok(())
    })
}

//! The FEBRL quality harness for merge suggestions. Run it with `bench/febrl.sh`, which
//! exports the data sets first (bench/README.md).
//!
//!     cargo run --release --example febrl -- DIR [SETS] [tune]
//!
//! DIR holds `febrlN.jsonl` and `febrlN_links.json` from `bench/febrl_export.py`; SETS is a
//! comma list (default `febrl1,febrl2,febrl3,febrl4`). For each set, on a fresh SQLite
//! database in a temp dir: every record becomes one webhook event of a generic connector
//! (records are spread over three connectors, `shop-a`, `shop-b` and `crm`; FEBRL 4's
//! file A goes to `shop-a`, file B to the other two), carrying the record id as the
//! connector's external customer id (strong, but unique per record: it never links two
//! records), the name as the display name, and the address, postcode, state and birth date
//! as a profile (weak). The real pipeline (normalise, identity, entities) runs, then the
//! suggester; the suggestions are compared with the true pairs.
//!
//! Printed: auto-merges and their precision, precision/recall at the configured threshold
//! and over a range of thresholds. With `tune`, also the m/u counts of each comparison level
//! over all blocked candidate pairs, and the log2(m/u) weights they give (how the weights in
//! src/suggest/score.rs were set; use FEBRL 1–3 only).
//! Environment: THRESHOLD (default: the built-in default), MAX_BLOCK (default 100).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sqlx::Row;
use switchboard::app::build_parts;
use switchboard::config::{self, SuggestSettings};
use switchboard::metrics::Metrics;
use switchboard::pipeline::Pipeline;
use switchboard::store::{now_ms, NewRawEvent, Store};
use switchboard::suggest::quality::{key, table};
use switchboard::suggest::score::{Field, Level, Reason};
use switchboard::suggest::{Suggester, DEFAULT_THRESHOLD};

const CONNECTORS: [&str; 3] = ["shop-a", "shop-b", "crm"];

fn settings(url: &str) -> anyhow::Result<config::Settings> {
    let mut text =
        format!("[database]\nurl = \"{url}\"\n[identity.suggestions]\nenabled = false\n");
    for c in CONNECTORS {
        text.push_str(&format!(
            r#"
[[connectors]]
id = "{c}"
kind = "generic"
secret = "febrl"
event_id = "/id"
[connectors.mapping]
text = "/text"
thread = "/id"
customer_external_id = "/id"
customer_name = "/name"
customer_address_line1 = "/street"
customer_address_line2 = "/line2"
customer_city = "/suburb"
customer_postal_code = "/postcode"
customer_region = "/state"
customer_birth_date = "/dob"
"#
        ));
    }
    config::from_str(&text, &[]).map_err(|e| anyhow::anyhow!("{e}"))
}

fn event(rec: &serde_json::Value, n: usize) -> NewRawEvent {
    let s = |k: &str| rec.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let id = s("rec_id");
    let name = format!("{} {}", s("given_name"), s("surname"));
    let street = format!("{} {}", s("street_number"), s("address_1"));
    let mut body = serde_json::json!({"id": id, "text": format!("record {id}")});
    for (k, v) in [
        ("name", name.trim()),
        ("street", street.trim()),
        ("line2", s("address_2")),
        ("suburb", s("suburb")),
        ("postcode", s("postcode")),
        ("state", s("state")),
        ("dob", s("date_of_birth")),
    ] {
        if !v.is_empty() {
            body[k] = serde_json::Value::String(v.to_string());
        }
    }
    let connector = match s("source") {
        "b" => CONNECTORS[1 + n % 2],
        _ => CONNECTORS[n % 3],
    };
    NewRawEvent {
        connector_id: connector.into(),
        provider_event_id: id.to_string(),
        kind: "record".into(),
        occurred_at: None,
        received_at: now_ms(),
        headers: "[]".into(),
        payload: serde_json::to_vec(&body).unwrap_or_default().into(),
    }
}

struct Outcome {
    /// (record pair, score, reasons) of every stored suggestion.
    scored: Vec<((String, String), f64, Vec<Reason>)>,
    truth: HashSet<(String, String)>,
    auto_merges: usize,
    auto_merges_true: usize,
}

async fn run_set(dir: &str, name: &str, floor: f64, max_block: usize) -> anyhow::Result<Outcome> {
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(format!("{dir}/{name}.jsonl"))
        .with_context(|| format!("reading {dir}/{name}.jsonl (run bench/febrl.sh)"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let links: Vec<(String, String)> = serde_json::from_str(&std::fs::read_to_string(format!(
        "{dir}/{name}_links.json"
    ))?)?;
    let truth: HashSet<(String, String)> = links.iter().map(|(a, b)| key(a, b)).collect();

    let tmp = std::env::temp_dir().join(format!("sb-febrl-{}-{}", name, std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let db = tmp.join("hub.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let s = settings(&url)?;
    let (registry, claims) = build_parts(&s, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::connect(&s.database).await?;
    store.migrate().await?;
    let metrics = Arc::new(Metrics::new(registry.iter().map(|c| c.id.as_str())));
    let pipeline = Pipeline::new(
        store.clone(),
        registry,
        claims,
        s.pipeline.clone(),
        metrics,
        Arc::new(tokio::sync::Notify::new()),
    );
    // FEBRL 4: file A through one connector, file B through the other two.
    let t = Instant::now();
    let events: Vec<NewRawEvent> = recs
        .iter()
        .enumerate()
        .map(|(n, r)| {
            let mut e = event(r, n);
            if r.get("source").and_then(|v| v.as_str()) == Some("a") && name == "febrl4" {
                e.connector_id = CONNECTORS[0].into();
            }
            e
        })
        .collect();
    for chunk in events.chunks(500) {
        store.insert_raw_events(chunk).await?;
    }
    let jobs = pipeline.drain().await?;
    let piped = t.elapsed();
    let t = Instant::now();
    let sugg = Suggester::new(
        store.clone(),
        SuggestSettings {
            threshold: floor,
            max_block,
            batch_size: 500,
            ..Default::default()
        },
    );
    let st = sugg.drain(1_000).await?;
    let scored_in = t.elapsed();
    eprintln!(
        "{name}: {} records, {jobs} events through the pipeline in {:.1}s; suggester: {} customers in {:.1}s",
        recs.len(),
        piped.as_secs_f64(),
        st.changed,
        scored_in.as_secs_f64()
    );

    // customer id → record id (each record's own external id).
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let mut rec_of: HashMap<String, String> = HashMap::new();
    for r in sqlx::query("SELECT customer_id, value FROM identities WHERE kind = 'external_id'")
        .fetch_all(&pool)
        .await?
    {
        rec_of.insert(r.try_get(0)?, r.try_get(1)?);
    }
    let mut scored = Vec::new();
    for r in
        sqlx::query("SELECT customer_a, customer_b, score_milli, reasons FROM merge_suggestions")
            .fetch_all(&pool)
            .await?
    {
        let (a, b): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let (Some(ra), Some(rb)) = (rec_of.get(&a), rec_of.get(&b)) else {
            continue;
        };
        let reasons: String = r.try_get(3)?;
        scored.push((
            key(ra, rb),
            r.try_get::<i64, _>(2)? as f64 / 1000.0,
            serde_json::from_str(&reasons).unwrap_or_default(),
        ));
    }
    // Automatic merges (strong identifiers only) and whether each joined a true pair.
    let mut auto_merges = 0;
    let mut auto_merges_true = 0;
    for r in
        sqlx::query("SELECT survivor_id, merged_id FROM customer_merges WHERE actor = 'pipeline'")
            .fetch_all(&pool)
            .await?
    {
        auto_merges += 1;
        let (a, b): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if let (Some(ra), Some(rb)) = (rec_of.get(&a), rec_of.get(&b)) {
            if truth.contains(&key(ra, rb)) {
                auto_merges_true += 1;
            }
        }
    }
    pool.close().await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Outcome {
        scored,
        truth,
        auto_merges,
        auto_merges_true,
    })
}

fn print_table(name: &str, o: &Outcome, threshold: f64) {
    let pairs: Vec<((String, String), f64)> =
        o.scored.iter().map(|(p, s, _)| (p.clone(), *s)).collect();
    let mut ts: Vec<f64> = (0..=14).map(|i| i as f64 * 2.0).collect();
    if !ts.contains(&threshold) {
        ts.push(threshold);
        ts.sort_by(f64::total_cmp);
    }
    let auto_p = if o.auto_merges == 0 {
        "n/a (none made)".to_string()
    } else {
        format!("{:.4}", o.auto_merges_true as f64 / o.auto_merges as f64)
    };
    println!(
        "\n{name}: {} true pairs; auto-merges {} (precision {auto_p})",
        o.truth.len(),
        o.auto_merges
    );
    println!("| threshold | suggested | true | precision | recall |");
    println!("|---:|---:|---:|---:|---:|");
    for r in table(&pairs, &o.truth, &ts) {
        let mark = if r.threshold == threshold {
            " **(configured)**"
        } else {
            ""
        };
        println!(
            "| {:.1}{mark} | {} | {} | {:.4} | {:.4} |",
            r.threshold, r.predicted, r.true_positives, r.precision, r.recall
        );
    }
}

/// Counts each field's levels over true pairs (m) and the other candidates (u).
fn tune(outcomes: &[(String, Outcome)]) {
    let mut m: BTreeMap<(Field, Level), f64> = BTreeMap::new();
    let mut u: BTreeMap<(Field, Level), f64> = BTreeMap::new();
    let (mut nm, mut nu) = (0.0, 0.0);
    for (_, o) in outcomes {
        for (p, _, reasons) in &o.scored {
            let is_match = o.truth.contains(p);
            let tgt = if is_match { &mut m } else { &mut u };
            if is_match {
                nm += 1.0;
            } else {
                nu += 1.0;
            }
            for f in Field::ALL {
                let level = reasons
                    .iter()
                    .find(|r| r.field == f.as_str())
                    .and_then(|r| Level::ALL.iter().copied().find(|l| l.as_str() == r.level))
                    .unwrap_or(Level::Missing);
                *tgt.entry((f, level)).or_default() += 1.0;
            }
        }
        let found = o
            .scored
            .iter()
            .filter(|(p, _, _)| o.truth.contains(p))
            .count();
        println!("blocking found {found} of {} true pairs", o.truth.len());
    }
    println!("\nm/u over {nm} true and {nu} other candidate pairs (add-one smoothing):");
    println!("| field | level | m | u | log2(m/u) |");
    println!("|---|---|---:|---:|---:|");
    for f in Field::ALL {
        for l in Level::ALL {
            let mc = m.get(&(f, l)).copied().unwrap_or(0.0);
            let uc = u.get(&(f, l)).copied().unwrap_or(0.0);
            let w = (((mc + 1.0) / (nm + 5.0)) / ((uc + 1.0) / (nu + 5.0))).log2();
            println!("| {} | {} | {mc} | {uc} | {w:.2} |", f.as_str(), l.as_str());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).context("usage: febrl DIR [SETS] [tune]")?;
    let sets: Vec<String> = args
        .get(2)
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| {
            ["febrl1", "febrl2", "febrl3", "febrl4"]
                .map(String::from)
                .to_vec()
        });
    let tuning = args.iter().any(|a| a == "tune");
    let threshold: f64 = std::env::var("THRESHOLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_THRESHOLD);
    let max_block: usize = std::env::var("MAX_BLOCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Tuning needs every blocked candidate pair; the table needs pairs down to 0.
    let floor = if tuning { -1000.0 } else { threshold.min(0.0) };
    let mut outcomes = Vec::new();
    for name in &sets {
        let o = run_set(dir, name, floor, max_block).await?;
        print_table(name, &o, threshold);
        outcomes.push((name.clone(), o));
    }
    if tuning {
        tune(&outcomes);
    }
    Ok(())
}

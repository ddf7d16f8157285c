//! Counters per connector, rendered in the Prometheus text format at `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::store::QueueStats;

#[derive(Default)]
pub struct ConnectorCounters {
    pub accepted: AtomicU64,
    pub duplicate: AtomicU64,
    pub normalized: AtomicU64,
    pub failed: AtomicU64,
    pub dead: AtomicU64,
    pub unsupported: AtomicU64,
    pub sent: AtomicU64,
    pub send_failed: AtomicU64,
    /// reason → count; rejections are rare, so a lock is fine here.
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Set when the provider refused our credentials (send or poll); cleared by the next
    /// success. Shown in `GET /api/v1/connectors` and as `switchboard_connector_up`.
    health: Mutex<Option<Unhealthy>>,
}

/// Why a connector is unhealthy, and since when (unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub reason: String,
    pub since: i64,
}

impl ConnectorCounters {
    /// Marks the connector unhealthy (keeps the first `since` while it stays so).
    pub fn mark_unhealthy(&self, reason: &str, now: i64) {
        if let Ok(mut h) = self.health.lock() {
            let since = h.as_ref().map(|u| u.since).unwrap_or(now);
            *h = Some(Unhealthy {
                reason: reason.chars().take(500).collect(),
                since,
            });
        }
    }

    pub fn mark_healthy(&self) {
        if let Ok(mut h) = self.health.lock() {
            *h = None;
        }
    }

    /// `None` when healthy.
    pub fn health(&self) -> Option<Unhealthy> {
        self.health.lock().ok().and_then(|h| h.clone())
    }

    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Metrics {
    per: HashMap<String, ConnectorCounters>,
    pub unknown_connector: AtomicU64,
    pub entries_written: AtomicU64,
    pub merges: AtomicU64,
    /// Group commits of webhook ingest, and the events they wrote (events per commit tells
    /// how well concurrent webhooks share commits).
    pub ingest_commits: AtomicU64,
    pub ingest_committed_events: AtomicU64,
    /// Pipeline time by stage, in microseconds: where a slow pipeline spends its time.
    pub pipeline_us: PipelineTimes,
}

/// Cumulative pipeline time per stage (µs). `apply` is the whole write transaction, which
/// includes `identity` (lookups, the plan and the customer/identity/merge writes).
#[derive(Debug, Default)]
pub struct PipelineTimes {
    pub normalize: AtomicU64,
    pub identity: AtomicU64,
    /// Parts of `identity`: the lookups before the plan, and the writes after it.
    pub identity_lookup: AtomicU64,
    pub identity_write: AtomicU64,
    pub apply: AtomicU64,
}

impl Metrics {
    pub fn new<'a>(connector_ids: impl IntoIterator<Item = &'a str>) -> Metrics {
        Metrics {
            per: connector_ids
                .into_iter()
                .map(|id| (id.to_string(), ConnectorCounters::default()))
                .collect(),
            ..Default::default()
        }
    }

    pub fn connector(&self, id: &str) -> Option<&ConnectorCounters> {
        self.per.get(id)
    }

    pub fn reject(&self, id: &str, reason: &'static str) {
        if let Some(c) = self.per.get(id) {
            if let Ok(mut m) = c.rejected.lock() {
                *m.entry(reason).or_default() += 1;
            }
        }
    }

    pub fn render(&self, q: &QueueStats) -> String {
        let mut out = String::with_capacity(4096);
        let mut ids: Vec<&String> = self.per.keys().collect();
        ids.sort();
        let _ = writeln!(
            out,
            "# HELP switchboard_ingest_total Webhook deliveries by connector and outcome."
        );
        let _ = writeln!(out, "# TYPE switchboard_ingest_total counter");
        for id in &ids {
            let c = &self.per[*id];
            let _ = writeln!(
                out,
                "switchboard_ingest_total{{connector=\"{id}\",outcome=\"accepted\"}} {}",
                c.accepted.load(Relaxed)
            );
            let _ = writeln!(
                out,
                "switchboard_ingest_total{{connector=\"{id}\",outcome=\"duplicate\"}} {}",
                c.duplicate.load(Relaxed)
            );
            if let Ok(m) = c.rejected.lock() {
                for (reason, n) in m.iter() {
                    let _ = writeln!(out, "switchboard_ingest_total{{connector=\"{id}\",outcome=\"rejected\",reason=\"{reason}\"}} {n}");
                }
            }
        }
        let _ = writeln!(out, "# HELP switchboard_ingest_unknown_connector_total Deliveries to a connector id that is not configured.");
        let _ = writeln!(
            out,
            "# TYPE switchboard_ingest_unknown_connector_total counter"
        );
        let _ = writeln!(
            out,
            "switchboard_ingest_unknown_connector_total {}",
            self.unknown_connector.load(Relaxed)
        );
        for (name, help, f) in [
            (
                "normalized",
                "Raw events normalised onto the timeline.",
                (|c: &ConnectorCounters| c.normalized.load(Relaxed))
                    as fn(&ConnectorCounters) -> u64,
            ),
            (
                "normalize_failed",
                "Normalise attempts that failed (retried).",
                |c| c.failed.load(Relaxed),
            ),
            ("normalize_dead", "Normalise jobs parked as dead.", |c| {
                c.dead.load(Relaxed)
            }),
            (
                "unsupported",
                "Events kept as unsupported timeline entries.",
                |c| c.unsupported.load(Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP switchboard_{name}_total {help}");
            let _ = writeln!(out, "# TYPE switchboard_{name}_total counter");
            for id in &ids {
                let _ = writeln!(
                    out,
                    "switchboard_{name}_total{{connector=\"{id}\"}} {}",
                    f(&self.per[*id])
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_connector_up 1 unless the provider refused the connector's credentials."
        );
        let _ = writeln!(out, "# TYPE switchboard_connector_up gauge");
        for id in &ids {
            let up = u8::from(self.per[*id].health().is_none());
            let _ = writeln!(out, "switchboard_connector_up{{connector=\"{id}\"}} {up}");
        }
        let _ = writeln!(out, "# HELP switchboard_timeline_entries_written_total Timeline entries written by the pipeline.");
        let _ = writeln!(
            out,
            "# TYPE switchboard_timeline_entries_written_total counter"
        );
        let _ = writeln!(
            out,
            "switchboard_timeline_entries_written_total {}",
            self.entries_written.load(Relaxed)
        );
        for (name, help, v) in [
            (
                "switchboard_ingest_commits_total",
                "Group commits of webhook ingest.",
                &self.ingest_commits,
            ),
            (
                "switchboard_ingest_committed_events_total",
                "Raw events written by ingest's group commits.",
                &self.ingest_committed_events,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_customer_merges_total Automatic customer merges."
        );
        let _ = writeln!(out, "# TYPE switchboard_customer_merges_total counter");
        let _ = writeln!(
            out,
            "switchboard_customer_merges_total {}",
            self.merges.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_pipeline_seconds_total Pipeline time by stage (apply includes identity, identity includes identity_lookup and identity_write)."
        );
        let _ = writeln!(out, "# TYPE switchboard_pipeline_seconds_total counter");
        for (stage, v) in [
            ("normalize", &self.pipeline_us.normalize),
            ("identity", &self.pipeline_us.identity),
            ("identity_lookup", &self.pipeline_us.identity_lookup),
            ("identity_write", &self.pipeline_us.identity_write),
            ("apply", &self.pipeline_us.apply),
        ] {
            let _ = writeln!(
                out,
                "switchboard_pipeline_seconds_total{{stage=\"{stage}\"}} {:.6}",
                v.load(Relaxed) as f64 / 1e6
            );
        }
        let _ = writeln!(out, "# HELP switchboard_jobs Jobs by state.");
        let _ = writeln!(out, "# TYPE switchboard_jobs gauge");
        let _ = writeln!(out, "switchboard_jobs{{state=\"queued\"}} {}", q.queued);
        let _ = writeln!(out, "switchboard_jobs{{state=\"running\"}} {}", q.running);
        let _ = writeln!(out, "switchboard_jobs{{state=\"dead\"}} {}", q.dead);
        let _ = writeln!(
            out,
            "# HELP switchboard_job_lag_seconds Age of the oldest queued job."
        );
        let _ = writeln!(out, "# TYPE switchboard_job_lag_seconds gauge");
        let _ = writeln!(
            out,
            "switchboard_job_lag_seconds {:.3}",
            q.oldest_queued_ms as f64 / 1000.0
        );
        out
    }
}

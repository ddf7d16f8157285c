//! Layered settings: the config file, then `SWITCHBOARD_<SECTION>__<KEY>` environment
//! variables. Every error names the exact key that is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use switchboard_core::config::parse_table;
use switchboard_core::ConfigError;

pub const DEFAULT_CONFIG: &str = "config/switchboard.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub pipeline: PipelineSettings,
    #[serde(default)]
    pub outbound: OutboundSettings,
    #[serde(default)]
    pub poller: PollerSettings,
    #[serde(default)]
    pub events: EventsSettings,
    #[serde(default)]
    pub webhooks: WebhooksSettings,
    #[serde(default)]
    pub identity: IdentitySettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub log: LogSettings,
    /// Each connector's own table; validated by the registry, which knows every kind.
    #[serde(default)]
    pub connectors: Vec<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Webhook bodies over this are refused with 413 before they are read in full.
    pub max_body_bytes: usize,
    /// How long a webhook waits for its raw event to be committed before answering 503.
    pub ingest_timeout_ms: u64,
    /// Requests waiting for a commit at once; past this, 503 so providers retry later.
    pub ingest_queue: usize,
    /// Events one group commit writes at most.
    pub ingest_batch: usize,
    /// What this node runs: `api`, `ingest`, `pipeline`, `sender`, `poller` (default all).
    /// A list, or a comma-separated string (`SWITCHBOARD_SERVER__ROLES=api,ingest`);
    /// `serve --roles` overrides it.
    pub roles: crate::node::Roles,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            ingest_timeout_ms: 5_000,
            ingest_queue: 16_384,
            ingest_batch: 512,
            roles: crate::node::Roles::all(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (embedded default) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// Concurrent group-commit writers on PostgreSQL (SQLite always has one).
    pub writers: usize,
    /// SQLite only: `full` (default) syncs the WAL at every commit, so an acknowledged event
    /// survives power loss; `normal` survives a crash of the process but not of the machine.
    pub sqlite_synchronous: SqliteSync,
    /// SQLite only: once nothing has been written for this many seconds, the search indexes
    /// are merged into one segment each, step by step (see `maintain`). 0: never.
    pub search_merge_idle_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    Full,
    Normal,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/switchboard.db".into(),
            max_connections: 8,
            writers: 4,
            sqlite_synchronous: SqliteSync::Full,
            search_merge_idle_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Run the pipeline worker on this node. Off for an ingest-only node; jobs wait in the
    /// store for a node that has it on.
    pub enabled: bool,
    /// Jobs one pipeline transaction claims at most.
    pub batch_size: usize,
    /// Attempts before a job is parked as dead.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt (with jitter), capped at `max_backoff_ms`.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A claimed job whose worker vanished is claimable again after this.
    pub lease_secs: u64,
    /// Poll interval when no wake-up arrives (jobs from other nodes or retries).
    pub idle_poll_ms: u64,
    /// SQLite, while webhooks wait for a commit: jobs per batch (ingest and the pipeline share
    /// one writer, and acknowledging providers comes first) …
    pub yield_batch: usize,
    /// … and the pause after each such batch that leaves the writer and the CPU to ingest.
    /// The pipeline's share under a flood is about `yield_batch` per pause; the backlog is
    /// normalised at full speed once the flood ends.
    pub yield_pause_ms: u64,
    /// A flood: at least this many webhook requests wait for a commit when a yielding batch
    /// ends (a steady trickle leaves a handful; a provider's burst over many connections
    /// leaves dozens). The pause after the batch is then `flood_pause_ms`: every writer hold
    /// of the pipeline's holds up all of them.
    pub flood_waiting: usize,
    /// The pause after a yielding batch during a flood. The pipeline still advances,
    /// `yield_batch` jobs per pause, and catches up at full speed when the flood ends.
    pub flood_pause_ms: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 500,
            max_attempts: 8,
            base_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            lease_secs: 60,
            idle_poll_ms: 250,
            yield_batch: 50,
            yield_pause_ms: 25,
            flood_waiting: 32,
            flood_pause_ms: 200,
        }
    }
}

/// The poller runner: one task per connector that polls (Telegram `getUpdates`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollerSettings {
    /// Run the pollers on this node. With several nodes on one PostgreSQL every node may run
    /// them: each connector is polled under a lease, by one node at a time.
    pub enabled: bool,
    /// How long a poll lease lasts without renewal. The owner renews it every third of this
    /// and stops polling before it runs out; a dead node's connectors pass to another node
    /// within about 1.33 × this (default 10 s → ≤ 14 s).
    pub lease_seconds: u64,
    /// Least pause between two polls that found nothing more, even when a connector's
    /// interval is zero (long polling), so a provider that fails fast cannot make us spin.
    pub min_interval_ms: u64,
    /// First retry delay after a failed poll; doubles per failure (with jitter), capped.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for PollerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            lease_seconds: 10,
            min_interval_ms: 200,
            base_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSettings {
    /// How long events are kept for SSE resumption (Last-Event-ID) and webhook delivery.
    pub retention_hours: u64,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            retention_hours: 72,
        }
    }
}

/// Outgoing webhooks (`/api/v1/webhook-subscriptions`): the dispatcher worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSettings {
    /// Run the webhook dispatcher on this node.
    pub enabled: bool,
    /// A delivery is retried for this long (hours, fractions allowed), then marked failed.
    pub retry_window_hours: f64,
    /// Consecutive failed attempts (no success between) that pause a subscription.
    pub pause_after_failures: u32,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Per-request timeout; a slower receiver is a failed attempt.
    pub request_timeout_ms: u64,
    /// First retry delay; doubles per attempt (with jitter), capped at `max_backoff_ms`.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A claimed delivery whose worker vanished is claimable again after this.
    pub lease_secs: u64,
    /// Poll interval for new events and due retries.
    pub idle_poll_ms: u64,
    /// Events one fan-out transaction reads at most.
    pub fanout_batch: usize,
}

impl Default for WebhooksSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            retry_window_hours: 24.0,
            pause_after_failures: 20,
            concurrency: 8,
            request_timeout_ms: 10_000,
            base_backoff_ms: 5_000,
            max_backoff_ms: 3_600_000,
            lease_secs: 60,
            idle_poll_ms: 500,
            fanout_batch: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// Run the sender worker on this node.
    pub enabled: bool,
    /// Sends in flight at once (a hanging provider holds one slot, not the queue).
    pub concurrency: usize,
    /// A send that takes longer counts as a transient failure.
    pub send_timeout_ms: u64,
    /// Attempts on transient errors before a message is marked failed.
    pub max_attempts: i32,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub lease_secs: u64,
    pub idle_poll_ms: u64,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 16,
            send_timeout_ms: 15_000,
            max_attempts: 8,
            base_backoff_ms: 2_000,
            max_backoff_ms: 600_000,
            lease_secs: 60,
            idle_poll_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    /// ISO 3166 region for phone numbers written without a country code.
    pub default_region: String,
    /// Values that never identify a person (lower-case; emails or E.164 phones). They are
    /// still recorded on the event's customer, but link nothing.
    pub blocklist: Vec<String>,
    /// `ada+shop@x.io` is `ada@x.io`. Off by default: not every mail system honours it.
    pub fold_plus_addressing: bool,
    /// Dots in Gmail local parts are ignored and googlemail.com is gmail.com.
    pub fold_gmail_dots: bool,
    /// Linking identities of one kind a customer may hold (`email`, `phone`, `platform_id`,
    /// `external_id`); a merge past it is refused, a new value past it does not link.
    /// Kinds not listed are uncapped.
    pub max_per_kind: std::collections::BTreeMap<String, usize>,
    /// A value carried by more than this many customers (a shop's phone, a shared inbox)
    /// no longer links events or merges customers.
    pub max_shared: usize,
    /// Identifier kinds from most to least trusted: when a guard refuses a merge, the event
    /// goes to the customer of its most trusted identifier.
    pub priority: Vec<String>,
    /// Scored merge suggestions from weak evidence (`[identity.suggestions]`).
    pub suggestions: SuggestSettings,
}

/// The background suggester (src/suggest): weak evidence never merges, it is scored and
/// offered to an agent above `threshold`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuggestSettings {
    /// Whether this node runs the suggester loop (customers are marked for it regardless).
    pub enabled: bool,
    /// The lowest score (log2 likelihood ratio, see src/suggest/score.rs) that becomes a
    /// suggestion.
    pub threshold: f64,
    /// A blocking key shared by more customers than this is too common to compare within
    /// (a frequent surname, a big postcode); the pair must share another key.
    pub max_block: usize,
    /// Customers scored per pass.
    pub batch_size: usize,
    /// Pause between passes when there is nothing to do.
    pub idle_poll_ms: u64,
}

impl Default for SuggestSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: crate::suggest::DEFAULT_THRESHOLD,
            max_block: 100,
            batch_size: 200,
            idle_poll_ms: 1000,
        }
    }
}

impl SuggestSettings {
    /// Checks the values, naming the key that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.threshold.is_finite() || !(-100.0..=100.0).contains(&self.threshold) {
            return Err(ConfigError::new(
                "identity.suggestions.threshold",
                "must be a number from -100 to 100 (log2 likelihood ratio)",
            ));
        }
        if !(2..=10_000).contains(&self.max_block) {
            return Err(ConfigError::new(
                "identity.suggestions.max_block",
                "must be from 2 to 10000",
            ));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(ConfigError::new(
                "identity.suggestions.batch_size",
                "must be from 1 to 10000",
            ));
        }
        if self.idle_poll_ms == 0 {
            return Err(ConfigError::new(
                "identity.suggestions.idle_poll_ms",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

impl Default for IdentitySettings {
    fn default() -> Self {
        let g = crate::pipeline::identity::Guards::default();
        Self {
            default_region: "US".into(),
            blocklist: Vec::new(),
            fold_plus_addressing: false,
            fold_gmail_dots: false,
            max_per_kind: g.max_per_kind,
            max_shared: g.max_shared,
            priority: g.priority.iter().map(|k| k.as_str().to_string()).collect(),
            suggestions: SuggestSettings::default(),
        }
    }
}

impl IdentitySettings {
    /// The guards, or the key that is wrong.
    pub fn guards(&self) -> Result<crate::pipeline::identity::Guards, ConfigError> {
        use switchboard_core::ClaimKind;
        let strong = |k: &str| ClaimKind::parse(k).filter(|k| k.is_strong());
        if let Some(k) = self.max_per_kind.keys().find(|k| strong(k).is_none()) {
            return Err(ConfigError::new(
                format!("identity.max_per_kind.{k}"),
                "not an identifier kind (email, phone, platform_id, external_id)",
            ));
        }
        if let Some((k, _)) = self.max_per_kind.iter().find(|(_, n)| **n == 0) {
            return Err(ConfigError::new(
                format!("identity.max_per_kind.{k}"),
                "must be at least 1",
            ));
        }
        if self.max_shared == 0 {
            return Err(ConfigError::new(
                "identity.max_shared",
                "must be at least 1",
            ));
        }
        let mut priority = Vec::new();
        for k in &self.priority {
            let kind = strong(k).ok_or_else(|| {
                ConfigError::new(
                    "identity.priority",
                    format!(
                        "`{k}` is not an identifier kind (email, phone, platform_id, external_id)"
                    ),
                )
            })?;
            if priority.contains(&kind) {
                return Err(ConfigError::new(
                    "identity.priority",
                    format!("`{k}` is listed twice"),
                ));
            }
            priority.push(kind);
        }
        Ok(crate::pipeline::identity::Guards {
            blocklist: crate::domain::Blocklist(
                self.blocklist
                    .iter()
                    .map(|s| s.trim().to_lowercase())
                    .collect(),
            ),
            max_per_kind: self.max_per_kind.clone(),
            max_shared: self.max_shared,
            priority,
        })
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Mint an admin token at `serve` start and print it (development only).
    pub print_dev_token: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `switchboard=debug,sqlx=warn`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Which config file: the flag, else `SWITCHBOARD_CONFIG`, else `config/switchboard.toml`.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SWITCHBOARD_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// Reads a config file and applies environment overrides.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    from_str(&text, &vars)
}

/// Parses config text with the given environment overrides (for tests and `load`).
pub fn from_str(text: &str, env: &[(String, String)]) -> Result<Settings, ConfigError> {
    let mut value: toml::Value = toml::from_str(text).map_err(|e| {
        let span = e
            .span()
            .map(|s| format!(" (at byte {})", s.start))
            .unwrap_or_default();
        ConfigError::new("", format!("not valid TOML{span}: {}", e.message()))
    })?;
    apply_env(&mut value, env)?;
    let settings: Settings = parse_table("", value).map_err(|mut e| {
        e.key = e.key.trim_start_matches('.').to_string();
        e
    })?;
    settings.validate()?;
    Ok(settings)
}

/// `SWITCHBOARD_DATABASE__URL=…` sets `database.url`. Values that parse as TOML scalars
/// (numbers, booleans) take that type; anything else is a string.
fn apply_env(value: &mut toml::Value, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("SWITCHBOARD_") else {
            continue;
        };
        if !rest.contains("__") {
            continue; // SWITCHBOARD_CONFIG and friends are not overrides
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::new(name.clone(), "empty path segment"));
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !matches!(v, toml::Value::Table(_) | toml::Value::Array(_)))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut cur = &mut *value;
        for (i, seg) in path.iter().enumerate() {
            let toml::Value::Table(t) = cur else {
                return Err(ConfigError::new(
                    path[..i].join("."),
                    format!("{name} overrides a key inside a value that is not a table"),
                ));
            };
            if i + 1 == path.len() {
                t.insert(seg.clone(), parsed.clone());
                break;
            }
            cur = t
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
        }
    }
    Ok(())
}

impl Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "database.url",
                format!("`{url}` must start with sqlite: or postgres://"),
            ));
        }
        if self.server.max_body_bytes == 0 {
            return Err(ConfigError::new(
                "server.max_body_bytes",
                "must be greater than 0",
            ));
        }
        if self.server.ingest_batch == 0 {
            return Err(ConfigError::new(
                "server.ingest_batch",
                "must be greater than 0",
            ));
        }
        if self.pipeline.batch_size == 0 || self.pipeline.batch_size > 5_000 {
            return Err(ConfigError::new(
                "pipeline.batch_size",
                "must be between 1 and 5000",
            ));
        }
        if self.pipeline.yield_batch == 0 || self.pipeline.yield_batch > 5_000 {
            return Err(ConfigError::new(
                "pipeline.yield_batch",
                "must be between 1 and 5000",
            ));
        }
        if self.pipeline.yield_pause_ms > 10_000 {
            return Err(ConfigError::new(
                "pipeline.yield_pause_ms",
                "must be at most 10000",
            ));
        }
        if self.pipeline.flood_pause_ms > 10_000 {
            return Err(ConfigError::new(
                "pipeline.flood_pause_ms",
                "must be at most 10000",
            ));
        }
        if self.pipeline.flood_waiting == 0 {
            return Err(ConfigError::new(
                "pipeline.flood_waiting",
                "must be at least 1",
            ));
        }
        if self.pipeline.max_attempts < 1 {
            return Err(ConfigError::new(
                "pipeline.max_attempts",
                "must be at least 1",
            ));
        }
        if self.outbound.max_attempts < 1 {
            return Err(ConfigError::new(
                "outbound.max_attempts",
                "must be at least 1",
            ));
        }
        if self.outbound.send_timeout_ms == 0 {
            return Err(ConfigError::new(
                "outbound.send_timeout_ms",
                "must be greater than 0",
            ));
        }
        if !(1..=3600).contains(&self.poller.lease_seconds) {
            return Err(ConfigError::new(
                "poller.lease_seconds",
                "must be between 1 and 3600",
            ));
        }
        if self.database.max_connections < 2 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 2",
            ));
        }
        if crate::domain::parse_region(&self.identity.default_region).is_none() {
            return Err(ConfigError::new(
                "identity.default_region",
                format!(
                    "`{}` is not an ISO 3166 region code",
                    self.identity.default_region
                ),
            ));
        }
        self.identity.guards()?;
        self.identity.suggestions.validate()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::new("log.level", e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_file_values_with_types() {
        let s = from_str(
            "[server]\nlisten = '127.0.0.1:1'\n[database]\nurl = 'sqlite://a.db'",
            &env(&[
                ("SWITCHBOARD_DATABASE__URL", "postgres://x@127.0.0.1/db"),
                ("SWITCHBOARD_SERVER__MAX_BODY_BYTES", "2048"),
                ("SWITCHBOARD_SERVER__LISTEN", "127.0.0.1:9999"),
                ("SWITCHBOARD_CONFIG", "ignored.toml"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.url, "postgres://x@127.0.0.1/db");
        assert_eq!(s.server.max_body_bytes, 2048);
        assert_eq!(s.server.listen.port(), 9999);
    }

    #[test]
    fn errors_name_the_key() {
        let e = from_str("[server]\nlisten = 'nowhere'", &[]).unwrap_err();
        assert_eq!(e.key, "server.listen");
        let e = from_str("[server]\nlisen = '127.0.0.1:1'", &[]).unwrap_err();
        assert!(e.to_string().contains("unknown field `lisen`"), "{e}");
        let e = from_str("[database]\nurl = 'mysql://x'", &[]).unwrap_err();
        assert_eq!(e.key, "database.url");
        let e = from_str("[identity]\ndefault_region = 'XX'", &[]).unwrap_err();
        assert_eq!(e.key, "identity.default_region");
        let e = from_str("[identity.max_per_kind]\nname = 3", &[]).unwrap_err();
        assert_eq!(e.key, "identity.max_per_kind.name");
        let e = from_str("[identity]\npriority = ['email', 'fax']", &[]).unwrap_err();
        assert_eq!(e.key, "identity.priority");
        let e = from_str("[identity]\nmax_shared = 0", &[]).unwrap_err();
        assert_eq!(e.key, "identity.max_shared");
        let e = from_str("[identity.suggestions]\nthreshold = 1e9", &[]).unwrap_err();
        assert_eq!(e.key, "identity.suggestions.threshold");
        let e = from_str("[identity.suggestions]\nmax_block = 1", &[]).unwrap_err();
        assert_eq!(e.key, "identity.suggestions.max_block");
        let e = from_str("[identity.suggestions]\nbatch_size = 0", &[]).unwrap_err();
        assert_eq!(e.key, "identity.suggestions.batch_size");
        let s = from_str(
            "[identity.suggestions]\nthreshold = 10",
            &env(&[("SWITCHBOARD_IDENTITY__SUGGESTIONS__ENABLED", "false")]),
        )
        .unwrap();
        assert_eq!(s.identity.suggestions.threshold, 10.0);
        assert!(!s.identity.suggestions.enabled);
        let e = from_str("", &env(&[("SWITCHBOARD_PIPELINE__BATCH_SIZE", "lots")])).unwrap_err();
        assert_eq!(e.key, "pipeline.batch_size");
        let e = from_str("[pipeline]\nyield_batch = 0", &[]).unwrap_err();
        assert_eq!(e.key, "pipeline.yield_batch");
        let e = from_str("[pipeline]\nyield_pause_ms = 60000", &[]).unwrap_err();
        assert_eq!(e.key, "pipeline.yield_pause_ms");
        let e = from_str("[pipeline]\nflood_pause_ms = 60000", &[]).unwrap_err();
        assert_eq!(e.key, "pipeline.flood_pause_ms");
        let e = from_str("[pipeline]\nflood_waiting = 0", &[]).unwrap_err();
        assert_eq!(e.key, "pipeline.flood_waiting");
        let s = from_str("", &env(&[("SWITCHBOARD_PIPELINE__YIELD_PAUSE_MS", "40")])).unwrap();
        assert_eq!(s.pipeline.yield_pause_ms, 40);
        let e = from_str("[poller]\nlease_seconds = 0", &[]).unwrap_err();
        assert_eq!(e.key, "poller.lease_seconds");
        let e = from_str("[server]\nroles = ['api', 'chef']", &[]).unwrap_err();
        assert_eq!(e.key, "server.roles");
        assert!(e.to_string().contains("`chef`"), "{e}");
    }

    #[test]
    fn roles_come_from_a_list_or_a_comma_separated_env_value() {
        use crate::node::Role;
        let s = from_str("[server]\nroles = ['api', 'ingest']", &[]).unwrap();
        assert!(s.server.roles.has(Role::Ingest) && !s.server.roles.has(Role::Pipeline));
        let s = from_str(
            "",
            &env(&[("SWITCHBOARD_SERVER__ROLES", "pipeline,sender")]),
        )
        .unwrap();
        assert!(s.server.roles.has(Role::Sender) && !s.server.roles.has(Role::Api));
        assert_eq!(
            from_str("", &[]).unwrap().server.roles,
            crate::node::Roles::all()
        );
    }
}

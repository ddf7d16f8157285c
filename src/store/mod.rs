//! Storage: one `Store` over two backends, SQLite (embedded default) and PostgreSQL, chosen
//! by the scheme of `database.url`. Both run the same logical schema and the same SQL where
//! the dialects agree; the few places they differ say so. Every behaviour is covered by the
//! conformance suite in `tests/store_conformance.rs`, run on both.
//!
//! Runtime queries only (`sqlx::query`), since compile-time macros cannot serve two backends.
//! Hot paths use one multi-row statement per batch: sqlx's SQLite driver pays a worker-thread
//! round trip per statement.

mod apply;
pub mod entities;
pub mod error;
pub mod events;
mod fts_rank;
pub mod identity;
pub mod inbox;
pub mod lease;
mod migrate;
pub mod model;
pub mod outbound;
mod poll;
mod read;
mod search;
mod sqlite_rows;
pub mod suggest;
mod threads;
pub mod webhooks;
mod writer_thread;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};
use switchboard_core::StoredEvent;

pub use apply::{ApplyStats, PreparedEvent};
pub use entities::DocumentRow;
pub use error::{is_unavailable, StoreError};
pub use events::{EventRecord, EVENT_KINDS};
pub use inbox::{AgentPatch, ConversationPatch};
pub use lease::{LeaseFence, LeaseLost, LeaseRecord};
pub use model::*;
pub use outbound::SendOutcome;
pub use read::{ConversationFilter, CustomerQuery};
pub use search::{
    SearchFilter, SearchHit, SearchTerms, CUSTOMERS_MAX, FTS_TABLES, NEWEST_MAX, RANKED_MAX,
};
pub use webhooks::{
    AttemptRecord, ClaimedDelivery, DeliveryOutcome, SubscriptionPatch, WebhookAttempt,
    WebhookDelivery, WebhookSubscription,
};

use crate::config::{DatabaseSettings, SqliteSync};

/// Rows per multi-row statement, well under both backends' bind-parameter limits.
const CHUNK: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
enum Pools {
    /// One writer connection (SQLite has one writer anyway; in-process queueing beats
    /// SQLITE_BUSY), and a reader pool for the API (WAL lets reads run beside the writer).
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

#[derive(Clone, Debug)]
pub struct Store {
    pools: Pools,
    tokens: Arc<TokenCache>,
    common_words: Arc<search::CommonWords>,
    /// SQLite: the writer thread that took the short scheduling slice (writer_thread.rs);
    /// 0 when none did, minus the OS error number when the kernel refused.
    writer_tid: Arc<std::sync::atomic::AtomicI64>,
}

/// Recently verified API tokens, so a request does not pay a database round trip just to
/// authenticate. Local writes that can change a token's standing (revocation, an agent's
/// role or activity) clear it at once; a write from another node or process is seen within
/// [`TokenCache::TTL`]. Only valid tokens are kept, at most [`TokenCache::MAX`] of them.
#[derive(Debug, Default)]
struct TokenCache {
    inner: std::sync::Mutex<TokenCacheInner>,
}

#[derive(Debug, Default)]
struct TokenCacheInner {
    /// Bumped by every invalidation, so a lookup that raced one does not store a stale answer.
    generation: u64,
    entries: std::collections::HashMap<String, (std::time::Instant, TokenRecord)>,
}

impl TokenCache {
    const TTL: Duration = Duration::from_secs(1);
    const MAX: usize = 4096;

    fn get(&self, hash: &str) -> Result<TokenRecord, u64> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match g.entries.get(hash) {
            Some((at, rec)) if at.elapsed() < Self::TTL => Ok(rec.clone()),
            _ => Err(g.generation),
        }
    }

    fn put(&self, generation: u64, hash: &str, rec: &TokenRecord) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.generation != generation {
            return;
        }
        if g.entries.len() >= Self::MAX {
            let now = std::time::Instant::now();
            g.entries
                .retain(|_, (at, _)| now.duration_since(*at) < Self::TTL);
            if g.entries.len() >= Self::MAX {
                g.entries.clear();
            }
        }
        g.entries
            .insert(hash.to_string(), (std::time::Instant::now(), rec.clone()));
    }

    fn clear(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.generation += 1;
        g.entries.clear();
    }
}

/// Runs `$body` with `$pool` bound to the backend's pool (`write` or `read` side) and `$pg`
/// telling the body which dialect it speaks. The body is compiled once per backend.
macro_rules! with_pool {
    ($store:expr, $side:ident, |$pool:ident, $pg:ident| $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { $side: $pool, .. } => {
                #[allow(unused_variables)]
                let $pg = false;
                $body
            }
            Pools::Postgres($pool) => {
                #[allow(unused_variables)]
                let $pg = true;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// Begins a write transaction: `BEGIN IMMEDIATE` on SQLite so that a transaction that reads
/// first never fails to upgrade to a writer.
macro_rules! begin_write {
    ($pool:expr, $pg:expr) => {
        if $pg {
            $pool.begin().await
        } else {
            $pool.begin_with("BEGIN IMMEDIATE").await
        }
    };
}
pub(crate) use begin_write;

/// Inserts raw events (and so, by trigger, their normalise jobs) on `$tx`: the caller's open
/// transaction (so a poller can advance its cursor in the same one), or a bare connection
/// when the items fit in one statement, which is atomic by itself. Evaluates to one `InsertOutcome` per
/// item, in order; a repeated (connector, event id) — stored or earlier in `$items` — is a
/// duplicate. Uses `?`: call it in a function returning `anyhow::Result`.
macro_rules! insert_raw_in_tx {
    ($tx:ident, $items:expr) => {{
        let items: &[$crate::store::NewRawEvent] = $items;
        let mut first: std::collections::HashMap<(&str, &str), usize> =
            std::collections::HashMap::with_capacity(items.len());
        let mut unique = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(e) =
                first.entry((&it.connector_id, &it.provider_event_id))
            {
                e.insert(i);
                unique.push(i);
            }
        }
        let mut inserted: std::collections::HashMap<usize, i64> =
            std::collections::HashMap::with_capacity(unique.len());
        for chunk in unique.chunks($crate::store::CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO raw_events (connector_id, provider_event_id, kind, occurred_at, received_at, headers, payload) ",
            );
            qb.push_values(chunk, |mut b, &i| {
                let it = &items[i];
                b.push_bind(it.connector_id.as_str())
                    .push_bind(it.provider_event_id.as_str())
                    .push_bind(it.kind.as_str())
                    .push_bind(it.occurred_at)
                    .push_bind(it.received_at)
                    .push_bind(it.headers.as_str())
                    .push_bind(&it.payload[..]);
            });
            qb.push(" ON CONFLICT (connector_id, provider_event_id) DO NOTHING RETURNING id, connector_id, provider_event_id");
            for row in qb.build().fetch_all(&mut *$tx).await? {
                let id: i64 = sqlx::Row::try_get(&row, 0)?;
                let c: String = sqlx::Row::try_get(&row, 1)?;
                let p: String = sqlx::Row::try_get(&row, 2)?;
                if let Some(&i) = first.get(&(c.as_str(), p.as_str())) {
                    inserted.insert(i, id);
                }
            }
        }
        // The normalise jobs come from the `raw_events_enqueue` trigger (migration 0013), in
        // the same statement.
        (0..items.len())
            .map(|i| match inserted.get(&i) {
                Some(id) => $crate::store::InsertOutcome::Accepted(*id),
                None => $crate::store::InsertOutcome::Duplicate,
            })
            .collect::<Vec<_>>()
    }};
}
pub(crate) use insert_raw_in_tx;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The file of a `sqlite:` URL; `None` for PostgreSQL and for an in-memory database.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Held by a serving node for its lifetime: SQLite is single-node, so a second `serve` on the
/// same file is refused with a clear error instead of two writers fighting over it.
#[derive(Debug)]
pub struct NodeLock {
    _file: std::fs::File,
}

impl NodeLock {
    /// Takes the node lock of a SQLite database (`<file>.node-lock`); `Ok(None)` for
    /// PostgreSQL, where any number of nodes may serve one database.
    pub fn acquire(url: &str) -> anyhow::Result<Option<NodeLock>> {
        let Some(db) = sqlite_file(url) else {
            return Ok(None);
        };
        if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut name = db.clone().into_os_string();
        name.push(".node-lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)
            .with_context(|| format!("opening {}", std::path::Path::new(&name).display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(NodeLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "database.url: another Switchboard node is already serving the SQLite database {}. \
                 SQLite is single-node; to run several nodes, point them all at one PostgreSQL \
                 (database.url = \"postgres://…\")",
                db.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(anyhow::Error::new(e).context(format!("locking {}", db.display())))
            }
        }
    }
}

/// SQLite allocates through the C allocator (glibc here; the hub's Rust allocations go to
/// mimalloc). Every temporary b-tree a statement opens (a materialised CTE, a sort, an
/// automatic index) allocates its page cache in a ~90 KB block and frees it at the end of the
/// statement; glibc then hands the top of that thread's arena back to the kernel (its trim
/// threshold is 128 KB), and the next statement takes a page fault for every 4 KB of it
/// again. perf on the 1M-message search bench: 5.9 % of all CPU in those faults; with the
/// arenas keeping up to 64 MB free at their top, none (the page faults left are first touches
/// of the memory map). The memory stays with the process for its next statements instead of
/// going back and forth.
fn keep_c_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets glibc allocator parameters; it is safe to call at
            // any time from any thread.
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
                libc::mallopt(libc::M_TOP_PAD, 1 << 20);
            }
        });
    }
}

impl Store {
    /// Connects (creating the SQLite file and its folder if needed). Does not migrate.
    pub async fn connect(db: &DatabaseSettings) -> anyhow::Result<Store> {
        let url = db.url.as_str();
        if url.starts_with("sqlite:") {
            keep_c_heap();
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            if path != ":memory:" {
                if let Some(parent) = std::path::Path::new(path).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("creating {}", parent.display()))?;
                    }
                }
            }
            let opts = SqliteConnectOptions::from_str(url)
                .context("database.url")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL (default): a commit is on disk before the webhook is acknowledged.
                .synchronous(match db.sqlite_synchronous {
                    SqliteSync::Full => SqliteSynchronous::Full,
                    SqliteSync::Normal => SqliteSynchronous::Normal,
                })
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("cache_size", "-32768")
                // Reads through a memory map of the whole file (up to 64 GiB of address space,
                // not memory; the build raises SQLite's 2 GB cap, .cargo/config.toml).
                .pragma("mmap_size", "68719476736")
                // Checkpoint (copy the WAL into the file) every 300 WAL pages instead of 1,000:
                // shorter stalls of the commit that does it, and a WAL that stays small.
                // bench/ingest.sh, alternating 300 / 1,000 four times: 28.2–32.1k against
                // 25.3–27.7k webhooks/s (BENCHMARKS.md).
                .pragma("wal_autocheckpoint", "300")
                // A whole API page (≤ 201 rows) fits the worker's row channel, so the worker
                // thread never parks mid-query waiting for the handler to drain it.
                .row_buffer_size(256);
            let writer_tid = Arc::new(std::sync::atomic::AtomicI64::new(0));
            let tid = writer_tid.clone();
            // A local file cannot go stale under the pool: no ping (a round trip to the
            // connection's worker thread) before every acquire.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                // Its statements run on the connection's worker thread, which asks for short
                // scheduling slices there (writer_thread.rs).
                .after_connect(move |conn, _| {
                    let tid = tid.clone();
                    Box::pin(async move {
                        {
                            let mut h = conn.lock_handle().await?;
                            writer_thread::register(h.as_raw_handle())
                                .map_err(|e| sqlx::Error::Configuration(e.into()))?;
                        }
                        let (r,): (i64,) = sqlx::query_as("SELECT sb_short_slice()")
                            .fetch_one(&mut *conn)
                            .await?;
                        if r < 0 {
                            tracing::debug!(
                                errno = -r,
                                "the SQLite writer thread keeps the default scheduling slice"
                            );
                        }
                        tid.store(r, std::sync::atomic::Ordering::Relaxed);
                        Ok(())
                    })
                })
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts.clone())
                .await
                .with_context(|| format!("opening {url}"))?;
            let read = SqlitePoolOptions::new()
                .max_connections(db.max_connections.max(2))
                // Search ranks messages with `quickrank` (fts_rank.rs).
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        let mut h = conn.lock_handle().await?;
                        fts_rank::register(h.as_raw_handle())
                            .map_err(|e| sqlx::Error::Configuration(e.into()))
                    })
                })
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts.read_only(false))
                .await?;
            Ok(Store {
                pools: Pools::Sqlite { write, read },
                tokens: Arc::default(),
                common_words: Arc::default(),
                writer_tid,
            })
        } else {
            let opts = PgConnectOptions::from_str(url).context("database.url")?;
            let pool = PgPoolOptions::new()
                .max_connections(db.max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(Store {
                pools: Pools::Postgres(pool),
                tokens: Arc::default(),
                common_words: Arc::default(),
                writer_tid: Arc::default(),
            })
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// SQLite: the id of the writer connection's thread if it took the short scheduling
    /// slice (writer_thread.rs), else the OS error number it got as `Err`; `None` before
    /// the writer connected, and on PostgreSQL.
    pub fn sqlite_writer_thread(&self) -> Option<Result<i64, i64>> {
        match self.writer_tid.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            t if t > 0 => Some(Ok(t)),
            e => Some(Err(-e)),
        }
    }

    /// The PostgreSQL pool (for LISTEN); `None` on SQLite.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.pools {
            Pools::Postgres(p) => Some(p),
            Pools::Sqlite { .. } => None,
        }
    }

    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }

    /// For `/readyz`: the database answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        with_pool!(self, read, |pool, pg| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Group commit: inserts raw events and their normalise jobs in one transaction.
    /// Returns one outcome per input, in order; a repeated (connector, event id) — in the
    /// store or earlier in the same batch — is a duplicate.
    pub async fn insert_raw_events(
        &self,
        items: &[NewRawEvent],
    ) -> anyhow::Result<Vec<InsertOutcome>> {
        let outcomes;
        with_pool!(self, write, |pool, pg| {
            if items.len() <= CHUNK {
                // One INSERT (the trigger adds the jobs): its own implicit transaction, one
                // round trip instead of BEGIN, INSERT, COMMIT.
                let mut conn = pool.acquire().await?;
                outcomes = insert_raw_in_tx!(conn, items);
            } else {
                let mut tx = begin_write!(pool, pg)?;
                outcomes = insert_raw_in_tx!(tx, items);
                tx.commit().await?;
            }
        });
        Ok(outcomes)
    }

    /// SQLite only, at start: the node lock proves no other process serves this file, so every
    /// claim still held (pipeline jobs, sends, outgoing-webhook deliveries) belongs to a
    /// previous run that was killed. Releases them at once instead of after their leases, so
    /// work resumes as soon as the node is back. A send that may have reached the provider is
    /// sent again with the same idempotency key. Returns how many claims were released.
    pub async fn release_claims_of_dead_run(&self) -> anyhow::Result<u64> {
        anyhow::ensure!(
            self.backend() == Backend::Sqlite,
            "only a single-node (SQLite) store can release every claim at start"
        );
        let mut released = 0;
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            for sql in [
                "UPDATE jobs SET state = 'queued', locked_until = NULL WHERE state = 'running'",
                "UPDATE outbound_messages SET state = 'queued', locked_until = NULL WHERE state = 'sending'",
                "UPDATE webhook_deliveries SET state = 'pending', locked_until = NULL WHERE state = 'sending'",
            ] {
                released += sqlx::query(sql).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(released)
    }

    /// Jobs whose worker vanished (lease expired) become claimable again.
    pub async fn requeue_expired(&self, now: i64) -> anyhow::Result<u64> {
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query(
                "UPDATE jobs SET state = 'queued', locked_until = NULL WHERE state = 'running' AND locked_until < $1",
            )
            .bind(now)
            .execute(pool)
            .await?;
            Ok(r.rows_affected())
        })
    }

    /// Gives back every job claimed with the lease ending at `locked_until` (the claim's
    /// token) that a database outage kept the worker from finishing, or whose claiming
    /// statement's answer it lost (the claim may have committed without the worker learning
    /// which jobs it took). Queued again at once with the attempt returned, instead of
    /// waiting out the lease; a job whose lease already passed to another claim (a different
    /// `locked_until`) is left alone.
    pub async fn release_claim(&self, locked_until: i64) -> anyhow::Result<u64> {
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query(
                "UPDATE jobs SET state = 'queued', locked_until = NULL, \
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
                 WHERE state = 'running' AND locked_until = $1",
            )
            .bind(locked_until)
            .execute(pool)
            .await?;
            Ok(r.rows_affected())
        })
    }

    /// Claims up to `limit` ready jobs for `lease_ms`, oldest first.
    pub async fn claim_jobs(
        &self,
        limit: usize,
        now: i64,
        lease_ms: i64,
    ) -> anyhow::Result<Vec<ClaimedJob>> {
        let mut jobs = with_pool!(self, write, |pool, pg| {
            let sql = if pg {
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_until = $1 \
                 WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $2 \
                 ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, raw_event_id, attempts, kind"
            } else {
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_until = $1 \
                 WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $2 \
                 ORDER BY run_at, id LIMIT $3) \
                 RETURNING id, raw_event_id, attempts, kind"
            };
            let rows = sqlx::query(sql)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(ClaimedJob {
                        id: r.try_get(0)?,
                        raw_event_id: r.try_get(1)?,
                        attempts: r.try_get(2)?,
                        replay: r.try_get::<String, _>(3)? == "replay",
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// The stored raw events with these ids (any order).
    /// The raw event a timeline entry came from (`None` for an unknown entry or one made by
    /// a person, which has no raw event).
    pub async fn entry_raw_event(&self, entry_id: i64) -> anyhow::Result<Option<StoredEvent>> {
        let raw: Option<Option<i64>> = with_pool!(self, read, |pool, pg| {
            sqlx::query_scalar("SELECT raw_event_id FROM timeline_entries WHERE id = $1")
                .bind(entry_id)
                .fetch_optional(pool)
                .await?
        });
        let Some(Some(raw)) = raw else {
            return Ok(None);
        };
        Ok(self.load_raw_events(&[raw]).await?.into_iter().next())
    }

    pub async fn load_raw_events(&self, ids: &[i64]) -> anyhow::Result<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(ids.len());
        with_pool!(self, read, |pool, pg| {
            for chunk in ids.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "SELECT id, connector_id, provider_event_id, kind, occurred_at, received_at, headers, payload FROM raw_events WHERE id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                for r in qb.build().fetch_all(pool).await? {
                    let headers: String = r.try_get(6)?;
                    let payload: Vec<u8> = r.try_get(7)?;
                    out.push(StoredEvent {
                        id: r.try_get(0)?,
                        connector_id: r.try_get(1)?,
                        provider_event_id: r.try_get(2)?,
                        kind: r.try_get(3)?,
                        occurred_at: r.try_get(4)?,
                        received_at: r.try_get(5)?,
                        headers: serde_json::from_str(&headers).unwrap_or_default(),
                        payload: payload.into(),
                    });
                }
            }
        });
        Ok(out)
    }

    /// A failed attempt: retry at `retry_at`, or park as dead when `None`.
    pub async fn fail_job(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> anyhow::Result<()> {
        let error: String = error.chars().take(2000).collect();
        with_pool!(self, write, |pool, pg| {
            match retry_at {
                Some(at) => sqlx::query(
                    "UPDATE jobs SET state = 'queued', run_at = $1, locked_until = NULL, last_error = $2 WHERE id = $3",
                )
                .bind(at)
                .bind(&error)
                .bind(id)
                .execute(pool)
                .await?,
                None => sqlx::query(
                    "UPDATE jobs SET state = 'dead', finished_at = $1, locked_until = NULL, last_error = $2 WHERE id = $3",
                )
                .bind(now_ms())
                .bind(&error)
                .bind(id)
                .execute(pool)
                .await?,
            };
        });
        Ok(())
    }

    pub async fn queue_stats(&self) -> anyhow::Result<QueueStats> {
        let now = now_ms();
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(
                "SELECT \
                 (SELECT COUNT(*) FROM jobs WHERE state = 'queued'), \
                 (SELECT COUNT(*) FROM jobs WHERE state = 'running'), \
                 (SELECT COUNT(*) FROM jobs WHERE state = 'dead'), \
                 (SELECT MIN(created_at) FROM jobs WHERE state = 'queued')",
            )
            .fetch_one(pool)
            .await?;
            let oldest: Option<i64> = r.try_get(3)?;
            Ok(QueueStats {
                queued: r.try_get(0)?,
                running: r.try_get(1)?,
                dead: r.try_get(2)?,
                oldest_queued_ms: oldest.map(|t| (now - t).max(0)).unwrap_or(0),
            })
        })
    }

    pub async fn dead_jobs(&self, limit: i64) -> anyhow::Result<Vec<DeadJob>> {
        with_pool!(self, read, |pool, pg| {
            let rows = sqlx::query(
                "SELECT j.id, j.raw_event_id, r.connector_id, r.provider_event_id, j.attempts, j.last_error, j.finished_at \
                 FROM jobs j JOIN raw_events r ON r.id = j.raw_event_id WHERE j.state = 'dead' ORDER BY j.id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(DeadJob {
                        id: r.try_get(0)?,
                        raw_event_id: r.try_get(1)?,
                        connector_id: r.try_get(2)?,
                        provider_event_id: r.try_get(3)?,
                        attempts: r.try_get(4)?,
                        last_error: r.try_get(5)?,
                        finished_at: r.try_get(6)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// Queues a normalise job for every stored raw event of `connector_id` received at or
    /// after `since` (unix ms). Returns how many.
    pub async fn enqueue_replay(&self, connector_id: &str, since: i64) -> anyhow::Result<u64> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query(
                "INSERT INTO jobs (kind, raw_event_id, state, attempts, run_at, created_at) \
                 SELECT 'replay', id, 'queued', 0, $1, $1 FROM raw_events \
                 WHERE connector_id = $2 AND received_at >= $3 ORDER BY id",
            )
            .bind(now)
            .bind(connector_id)
            .bind(since)
            .execute(pool)
            .await?;
            Ok(r.rows_affected())
        })
    }

    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        token_hash: &str,
    ) -> anyhow::Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        with_pool!(self, write, |pool, pg| {
            sqlx::query("INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&id)
                .bind(name)
                .bind(role)
                .bind(token_hash)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(id)
    }

    /// The live token with this hash, if any (served from a short-lived cache; see
    /// [`TokenCache`]).
    pub async fn find_token(&self, token_hash: &str) -> anyhow::Result<Option<TokenRecord>> {
        let generation = match self.tokens.get(token_hash) {
            Ok(rec) => return Ok(Some(rec)),
            Err(g) => g,
        };
        let found = self.find_token_uncached(token_hash).await?;
        if let Some(rec) = &found {
            self.tokens.put(generation, token_hash, rec);
        }
        Ok(found)
    }

    /// Forgets every cached token, after a write that may change one's standing.
    pub(crate) fn forget_tokens(&self) {
        self.tokens.clear();
    }

    async fn find_token_uncached(&self, token_hash: &str) -> anyhow::Result<Option<TokenRecord>> {
        with_pool!(self, read, |pool, pg| {
            // A token acting for an agent has that agent's current role, and stops working
            // when the agent is deactivated.
            let row = sqlx::query(
                "SELECT t.id, t.name, COALESCE(a.role, t.role), t.agent_id FROM api_tokens t LEFT JOIN agents a ON a.id = t.agent_id \
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.agent_id IS NULL OR a.active = 1)",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok(TokenRecord {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    role: r.try_get(2)?,
                    agent_id: r.try_get(3)?,
                })
            })
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
        })
    }

    /// Counts rows of a table, for tests and diagnostics. `table` must be a known table name.
    pub async fn count(&self, table: &str) -> anyhow::Result<i64> {
        const TABLES: &[&str] = &[
            "raw_events",
            "jobs",
            "customers",
            "identities",
            "customer_merges",
            "conversations",
            "timeline_entries",
            "api_tokens",
            "webhook_deliveries",
        ];
        anyhow::ensure!(TABLES.contains(&table), "unknown table {table}");
        with_pool!(self, read, |pool, pg| {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(pool)
                .await?
                .try_get(0)?;
            Ok(n)
        })
    }
}

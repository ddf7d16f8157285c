//! The poller runner: one task per connector whose `poller()` is `Some`. Each loop reads the
//! stored cursor, polls the provider, stores the page and the next cursor in one transaction
//! (`Store::insert_polled_fenced`), wakes the pipeline, and polls again at once when the
//! provider has more, else after the connector's interval (never less than `min_interval_ms`).
//! Failures back off exponentially with jitter, honour Retry-After, mark the connector
//! unhealthy when the provider refuses it, and never end the task: only shutdown does.
//!
//! Several nodes may run the runner on one PostgreSQL: a connector is polled only under its
//! poll lease (`poll_leases`, see `store::lease`), so one node polls it at a time. The holder
//! renews every third of `poller.lease_seconds`; when it cannot renew in time it stops —
//! cancelling a provider call in flight — a tenth of the lease before the lease runs out, so
//! it has stopped before another node can take over. The page write checks the lease's fence
//! in its own transaction, so a node that was paused past its lease commits nothing.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use switchboard_core::{ConnectorError, PollPage, Poller};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::PollerSettings;
use crate::metrics::Metrics;
use crate::registry::{ConnectorInstance, Registry};
use crate::store::{now_ms, Backend, InsertOutcome, LeaseFence, LeaseLost, NewRawEvent, Store};

/// Added to a connector's interval to bound one poll call: covers a long poll (Telegram's
/// `poll_timeout_secs` is at most 50) plus the network. A call that takes longer is a
/// transient failure.
pub const CALL_MARGIN: Duration = Duration::from_secs(70);

/// Empty pages that say "more" which are asked again at once, in a row, before the runner
/// waits its interval anyway.
const MAX_EMPTY_MORE: u32 = 2;

/// Why one poll iteration failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{0}")]
    Provider(ConnectorError),
    #[error("store: {0:#}")]
    Store(anyhow::Error),
    /// The page was not stored: another node holds the lease now.
    #[error("{0}")]
    LeaseLost(LeaseLost),
}

/// What one stored page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub accepted: usize,
    pub duplicate: usize,
    /// The provider said it has more right now.
    pub more: bool,
}

/// The bound on one poll call of `p`.
fn call_bound(p: &dyn Poller) -> Duration {
    p.interval().saturating_add(CALL_MARGIN)
}

/// Calls the provider once, bounded by `call_bound`.
async fn fetch(p: &dyn Poller, cursor: Option<String>) -> Result<PollPage, ConnectorError> {
    tokio::time::timeout(call_bound(p), p.poll(cursor))
        .await
        .unwrap_or_else(|_| Err(ConnectorError::Transient("poll timed out".into())))
}

/// Stores a page and its next cursor in one transaction. An empty page that leaves the
/// cursor where it was writes nothing.
async fn store_page(
    store: &Store,
    connector_id: &str,
    cursor: Option<&str>,
    page: PollPage,
    lease: Option<&LeaseFence>,
) -> anyhow::Result<Stored> {
    if page.events.is_empty() && page.next_cursor.as_deref() == cursor {
        return Ok(Stored {
            more: page.more,
            ..Stored::default()
        });
    }
    let now = now_ms();
    let rows: Vec<NewRawEvent> = page
        .events
        .into_iter()
        .map(|e| NewRawEvent::received(connector_id, e, now))
        .collect();
    let outcomes = match lease {
        Some(held) => {
            store
                .insert_polled_fenced(connector_id, &rows, page.next_cursor.as_deref(), held)
                .await?
        }
        None => {
            store
                .insert_polled(connector_id, &rows, page.next_cursor.as_deref())
                .await?
        }
    };
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, InsertOutcome::Accepted(_)))
        .count();
    Ok(Stored {
        accepted,
        duplicate: outcomes.len() - accepted,
        // An empty page that says "more" (IDLE saw new mail) is asked again at once; the
        // runner bounds how often that may happen in a row.
        more: page.more,
    })
}

/// One iteration for one connector (a test and tooling hook; the runner does the same under
/// its lease): read the cursor, poll, store the page with the next cursor. Returns whether the
/// provider has more right now. A connector without a poller returns `Ok(false)`.
pub async fn poll_once(store: &Store, instance: &ConnectorInstance) -> anyhow::Result<bool> {
    let Some(p) = instance.connector.poller() else {
        return Ok(false);
    };
    let cursor = store.poll_cursor(&instance.id).await?;
    let page = fetch(p, cursor.clone())
        .await
        .map_err(|e| anyhow::anyhow!("poll of connector `{}` failed: {e}", instance.id))?;
    Ok(
        store_page(store, &instance.id, cursor.as_deref(), page, None)
            .await?
            .more,
    )
}

/// A poll lease as this node sees it: held or not, and until when it may act on it.
struct Lease {
    store: Store,
    name: String,
    owner: String,
    ttl: Duration,
    /// SQLite: the node lock makes this the only node, so a lease left by a crashed
    /// predecessor is taken at once.
    force: bool,
    held: Option<LeaseFence>,
    /// After this the lease must be taken as lost: a tenth of the lease before the database
    /// would let another node have it (counted from when the last renewal was sent).
    valid_until: Instant,
    next_renew: Instant,
}

impl Lease {
    fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    fn granted(&mut self, fence: LeaseFence, sent: Instant) {
        self.held = Some(fence);
        self.valid_until = sent + self.ttl - self.ttl / 10;
        self.next_renew = sent + self.renew_every();
    }

    /// Tries to take the lease; true when this node holds it now.
    async fn acquire(&mut self) -> anyhow::Result<bool> {
        let sent = Instant::now();
        let fence = self
            .store
            .try_acquire_lease(&self.name, &self.owner, self.ttl_ms(), self.force)
            .await?;
        if let Some(fence) = fence {
            let held = LeaseFence {
                owner: self.owner.clone(),
                fence,
            };
            self.granted(held, sent);
            tracing::info!(connector_id = %self.name, node = %self.owner, fence, "poll lease taken");
        }
        Ok(self.held.is_some())
    }

    /// Renews the lease when a renewal is due; false when it is lost (taken over, or not
    /// renewed before `valid_until`).
    async fn renew_if_due(&mut self) -> bool {
        let Some(held) = self.held.clone() else {
            return false;
        };
        let sent = Instant::now();
        if sent >= self.valid_until {
            tracing::warn!(connector_id = %self.name, "poll lease not renewed in time; polling stops");
            self.held = None;
            return false;
        }
        if sent < self.next_renew {
            return true;
        }
        let renew = self.store.renew_lease(&self.name, &held, self.ttl_ms());
        match tokio::time::timeout(self.valid_until - sent, renew).await {
            Ok(Ok(true)) => self.granted(held, sent),
            Ok(Ok(false)) => {
                tracing::warn!(connector_id = %self.name, "poll lease taken over by another node; polling stops");
                self.held = None;
                return false;
            }
            Ok(Err(e)) => {
                tracing::warn!(connector_id = %self.name, error = %format!("{e:#}"), "could not renew the poll lease; retrying");
                self.next_renew = Instant::now() + (self.ttl / 20).max(Duration::from_millis(50));
            }
            Err(_) => {} // past valid_until: the next call gives the lease up
        }
        true
    }

    /// Keeps the lease renewed; resolves only when it is lost. Cancel-safe: a renewal cut
    /// short leaves `valid_until` as it was.
    async fn keep(&mut self) {
        while self.held.is_some() {
            tokio::time::sleep_until(self.next_renew.min(self.valid_until).into()).await;
            if !self.renew_if_due().await {
                return;
            }
        }
    }

    /// Gives the lease up at shutdown so another node takes over at once.
    async fn release(&mut self) {
        if let Some(held) = self.held.take() {
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                self.store.release_lease(&self.name, &held),
            )
            .await;
            if !matches!(r, Ok(Ok(()))) {
                tracing::warn!(connector_id = %self.name, "could not release the poll lease; it expires by itself");
            }
        }
    }
}

pub struct PollerRunner {
    store: Store,
    registry: Registry,
    cfg: PollerSettings,
    metrics: Arc<Metrics>,
    /// The pipeline's wake-up, notified after a page with new events is stored.
    wake: Arc<Notify>,
    /// This node's id: the owner written on the poll leases it holds.
    node_id: String,
}

impl PollerRunner {
    pub fn new(
        store: Store,
        registry: Registry,
        cfg: PollerSettings,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
        node_id: String,
    ) -> PollerRunner {
        PollerRunner {
            store,
            registry,
            cfg,
            metrics,
            wake,
            node_id,
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Starts one task per polling connector; each ends when `shutdown` turns true.
    pub fn spawn(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        self.registry
            .iter()
            .filter(|inst| inst.connector.poller().is_some())
            .map(|inst| tokio::spawn(self.clone().run_one(inst.clone(), shutdown.clone())))
            .collect()
    }

    async fn run_one(
        self: Arc<Self>,
        inst: Arc<ConnectorInstance>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(poller) = inst.connector.poller() else {
            return;
        };
        let id = inst.id.as_str();
        let floor = Duration::from_millis(self.cfg.min_interval_ms.max(10));
        let mut failures: u32 = 0;
        let mut empty_more: u32 = 0;
        // The provider's API budget is shared with nobody else here: `poll_rate_per_sec`.
        let limiter = crate::outbound::limiter(inst.poll_rate_per_sec, 1);
        let now = Instant::now();
        let mut lease = Lease {
            store: self.store.clone(),
            name: id.to_string(),
            owner: self.node_id.clone(),
            ttl: Duration::from_secs(self.cfg.lease_seconds.max(1)),
            force: self.store.backend() == Backend::Sqlite,
            held: None,
            valid_until: now,
            next_renew: now,
        };
        tracing::info!(connector_id = %id, node = %self.node_id, "poller started");
        while !*shutdown.borrow() {
            if lease.held.is_none() {
                if let Err(e) = lease.acquire().await {
                    tracing::warn!(connector_id = %id, error = %format!("{e:#}"), "could not take the poll lease; retrying");
                }
                if lease.held.is_none() {
                    tokio::select! {
                        _ = tokio::time::sleep(lease.renew_every()) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            }
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = lease.keep() => continue,
                _ = shutdown.changed() => break,
            }
            let result = self.iteration(id, poller, &mut lease, &mut shutdown).await;
            let wait = match result {
                None => continue, // shutdown or a lost lease while the provider call was in flight
                Some(Ok(s)) => {
                    failures = 0;
                    if let Some(c) = self.metrics.connector(id) {
                        c.accepted.fetch_add(s.accepted as u64, Relaxed);
                        c.duplicate.fetch_add(s.duplicate as u64, Relaxed);
                        c.mark_healthy();
                    }
                    if s.accepted > 0 {
                        self.wake.notify_one();
                        tracing::debug!(connector_id = %id, accepted = s.accepted, duplicate = s.duplicate, "polled page stored");
                    }
                    // "More" at once, but an empty page claiming more too often in a row
                    // waits like any other, so a confused provider cannot spin the loop.
                    empty_more = if s.more && s.accepted + s.duplicate == 0 {
                        empty_more + 1
                    } else {
                        0
                    };
                    if s.more && empty_more <= MAX_EMPTY_MORE {
                        continue;
                    }
                    poller.interval().max(floor)
                }
                Some(Err(PollError::LeaseLost(e))) => {
                    tracing::warn!(connector_id = %id, error = %e, "poll lease lost before the page was stored; another node polls now");
                    lease.held = None;
                    continue;
                }
                Some(Err(e)) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(&self.cfg, failures, &e).max(floor);
                    self.report(id, &e, failures, wait);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = lease.keep() => {}
                _ = shutdown.changed() => {}
            }
        }
        lease.release().await;
        tracing::info!(connector_id = %id, "poller stopped");
    }

    /// One poll and store under the lease; `None` when shutdown arrived or the lease was lost
    /// during the provider call (nothing is stored then, and the cursor stays where it was).
    async fn iteration(
        &self,
        id: &str,
        poller: &dyn Poller,
        lease: &mut Lease,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Result<Stored, PollError>> {
        let held = lease.held.clone()?;
        let cursor = match self.store.poll_cursor(id).await {
            Ok(c) => c,
            Err(e) => return Some(Err(PollError::Store(e))),
        };
        // A provider call starts only on a lease renewed on schedule, so it starts well before
        // the lease could pass to another node (the race below then cancels it in time).
        if !lease.renew_if_due().await {
            return None;
        }
        let page = tokio::select! {
            biased;
            _ = lease.keep() => return None,
            r = fetch(poller, cursor.clone()) => r,
            _ = shutdown.changed() => return None,
        };
        Some(match page {
            Err(e) => Err(PollError::Provider(e)),
            // Not raced with shutdown or the lease: the store write is short and atomic, and
            // its fence check refuses it when the lease has passed to another node.
            Ok(page) => store_page(&self.store, id, cursor.as_deref(), page, Some(&held))
                .await
                .map_err(|e| match e.downcast::<LeaseLost>() {
                    Ok(lost) => PollError::LeaseLost(lost),
                    Err(e) => PollError::Store(e),
                }),
        })
    }

    fn report(&self, id: &str, e: &PollError, failures: u32, wait: Duration) {
        let wait_ms = wait.as_millis() as u64;
        match e {
            PollError::Provider(
                ce @ (ConnectorError::Unauthorized(r) | ConnectorError::Permanent(r)),
            ) => {
                if let Some(c) = self.metrics.connector(id) {
                    c.mark_unhealthy(r, now_ms());
                }
                tracing::warn!(connector_id = %id, error = %ce, failures, wait_ms, "the provider refused the poll; retrying with backoff");
            }
            PollError::Provider(ce) => {
                tracing::warn!(connector_id = %id, error = %ce, failures, wait_ms, "poll failed; retrying");
            }
            PollError::Store(err) => {
                tracing::warn!(connector_id = %id, error = %format!("{err:#}"), failures, wait_ms, "could not store a polled page; retrying");
            }
            PollError::LeaseLost(err) => {
                tracing::warn!(connector_id = %id, error = %err, "poll lease lost");
            }
        }
    }
}

/// The wait after `failures` failed polls in a row: the provider's Retry-After when it gave
/// one, else `base_backoff_ms` doubled per failure, capped, with ±20 % jitter.
fn backoff(cfg: &PollerSettings, failures: u32, e: &PollError) -> Duration {
    if let PollError::Provider(ConnectorError::RateLimited {
        retry_after: Some(d),
    }) = e
    {
        return *d;
    }
    let exp = failures.saturating_sub(1).min(30);
    let base = cfg
        .base_backoff_ms
        .saturating_mul(1u64 << exp)
        .min(cfg.max_backoff_ms);
    Duration::from_millis((base as f64 * rand::thread_rng().gen_range(0.8..1.2)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PollerSettings {
        PollerSettings {
            base_backoff_ms: 1_000,
            max_backoff_ms: 10_000,
            ..PollerSettings::default()
        }
    }

    #[test]
    fn backoff_doubles_per_failure_with_jitter_and_is_capped() {
        let e = PollError::Provider(ConnectorError::Transient("x".into()));
        for (failures, base) in [
            (1, 1_000u64),
            (2, 2_000),
            (3, 4_000),
            (5, 10_000),
            (40, 10_000),
        ] {
            let ms = backoff(&cfg(), failures, &e).as_millis() as u64;
            assert!(
                ms >= base * 8 / 10 && ms <= base * 12 / 10,
                "{failures}: {ms}"
            );
        }
    }

    #[test]
    fn backoff_honours_the_providers_retry_after() {
        let e = PollError::Provider(ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(17)),
        });
        assert_eq!(backoff(&cfg(), 1, &e), Duration::from_secs(17));
        let no_hint = PollError::Provider(ConnectorError::RateLimited { retry_after: None });
        assert!(backoff(&cfg(), 1, &no_hint) <= Duration::from_millis(1_200));
    }
}

//! The poller runner: one task per connector whose `poller()` is `Some`. Each loop reads the
//! stored cursor, polls the provider, stores the page and the next cursor in one transaction
//! (`Store::insert_polled`), wakes the pipeline, and polls again at once when the provider has
//! more, else after the connector's interval (never less than `min_interval_ms`). Failures back
//! off exponentially with jitter, honour Retry-After, mark the connector unhealthy when the
//! provider refuses it, and never end the task: only shutdown does.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use switchboard_core::{ConnectorError, PollPage, Poller};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::PollerSettings;
use crate::metrics::Metrics;
use crate::registry::{ConnectorInstance, Registry};
use crate::store::{now_ms, InsertOutcome, NewRawEvent, Store};

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
    let outcomes = store
        .insert_polled(connector_id, &rows, page.next_cursor.as_deref())
        .await?;
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

/// One iteration for one connector (a test hook, and what the runner does): read the cursor,
/// poll, store the page with the next cursor. Returns whether the provider has more right now.
/// A connector without a poller returns `Ok(false)`.
pub async fn poll_once(store: &Store, instance: &ConnectorInstance) -> anyhow::Result<bool> {
    let Some(p) = instance.connector.poller() else {
        return Ok(false);
    };
    let cursor = store.poll_cursor(&instance.id).await?;
    let page = fetch(p, cursor.clone())
        .await
        .map_err(|e| anyhow::anyhow!("poll of connector `{}` failed: {e}", instance.id))?;
    Ok(store_page(store, &instance.id, cursor.as_deref(), page)
        .await?
        .more)
}

pub struct PollerRunner {
    store: Store,
    registry: Registry,
    cfg: PollerSettings,
    metrics: Arc<Metrics>,
    /// The pipeline's wake-up, notified after a page with new events is stored.
    wake: Arc<Notify>,
}

impl PollerRunner {
    pub fn new(
        store: Store,
        registry: Registry,
        cfg: PollerSettings,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> PollerRunner {
        PollerRunner {
            store,
            registry,
            cfg,
            metrics,
            wake,
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
        tracing::info!(connector_id = %id, "poller started");
        while !*shutdown.borrow() {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = shutdown.changed() => break,
            }
            let result = self.iteration(id, poller, &mut shutdown).await;
            let wait = match result {
                None => break, // shutdown while the provider call was in flight
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
                Some(Err(e)) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(&self.cfg, failures, &e).max(floor);
                    self.report(id, &e, failures, wait);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(connector_id = %id, "poller stopped");
    }

    /// One poll and store; `None` when shutdown arrived during the provider call (nothing is
    /// stored then, and the cursor stays where it was).
    async fn iteration(
        &self,
        id: &str,
        poller: &dyn Poller,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Result<Stored, PollError>> {
        let cursor = match self.store.poll_cursor(id).await {
            Ok(c) => c,
            Err(e) => return Some(Err(PollError::Store(e))),
        };
        let page = tokio::select! {
            r = fetch(poller, cursor.clone()) => r,
            _ = shutdown.changed() => return None,
        };
        Some(match page {
            Err(e) => Err(PollError::Provider(e)),
            // Not raced with shutdown: the store write is short and atomic either way.
            Ok(page) => store_page(&self.store, id, cursor.as_deref(), page)
                .await
                .map_err(PollError::Store),
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

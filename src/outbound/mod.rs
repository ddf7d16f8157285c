//! The sender worker: delivers queued replies through their conversation's connector,
//! limited per connector, retried with backoff and jitter, honouring Retry-After, and marked
//! failed with the provider's reason when retrying cannot help.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use switchboard_core::{ConnectorError, OutboundMessage};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::OutboundSettings;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::{now_ms, OutboundMessageRow, SendOutcome, Store};

pub struct Sender {
    store: Store,
    registry: Registry,
    cfg: OutboundSettings,
    metrics: Arc<Metrics>,
    limiters: HashMap<String, Arc<DefaultDirectRateLimiter>>,
    pub wake: Arc<Notify>,
    /// Housekeeping rides on this loop: events older than this are pruned.
    pub event_retention_hours: u64,
}

/// A per-connector rate limiter (sends, polls).
pub(crate) fn limiter(rate_per_sec: f64, burst: u32) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate_per_sec.max(0.001));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
    RateLimiter::direct(quota)
}

impl Sender {
    pub fn new(
        store: Store,
        registry: Registry,
        cfg: OutboundSettings,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Sender {
        let limiters = registry
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    Arc::new(limiter(c.send_rate_per_sec, c.send_burst)),
                )
            })
            .collect();
        Sender {
            store,
            registry,
            cfg,
            metrics,
            limiters,
            wake,
            event_retention_hours: 72,
        }
    }

    pub fn with_event_retention(mut self, hours: u64) -> Sender {
        self.event_retention_hours = hours;
        self
    }

    /// Runs until `shutdown`; sends in flight finish (each is bounded by the send timeout).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let idle = Duration::from_millis(self.cfg.idle_poll_ms.max(10));
        let sweep_every = Duration::from_secs((self.cfg.lease_secs / 2).max(1));
        let mut last_sweep = tokio::time::Instant::now() - sweep_every;
        let mut last_snooze_check = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            if last_sweep.elapsed() >= sweep_every {
                last_sweep = tokio::time::Instant::now();
                let now = now_ms();
                if let Ok(n) = self.store.requeue_expired_outbound(now).await {
                    if n > 0 {
                        tracing::warn!(messages = n, "requeued sends whose lease expired");
                    }
                }
                let keep_ms = (self.event_retention_hours * 3_600_000) as i64;
                if let Err(e) = self.store.prune_events(now - keep_ms).await {
                    tracing::warn!(error = %e, "event pruning failed");
                }
            }
            // Snoozes end on time (to the second), not on the slower housekeeping tick.
            if last_snooze_check.elapsed() >= Duration::from_secs(1) {
                last_snooze_check = tokio::time::Instant::now();
                if let Err(e) = self.store.reopen_due_snoozes(now_ms()).await {
                    tracing::warn!(error = %e, "snooze sweep failed");
                }
            }
            let free = permits.available_permits();
            let mut claimed = 0;
            if free > 0 {
                match self
                    .store
                    .claim_outbound(free, now_ms(), self.lease_ms())
                    .await
                {
                    Ok(msgs) => {
                        claimed = msgs.len();
                        for m in msgs {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                break;
                            };
                            let me = self.clone();
                            tasks.spawn(async move {
                                me.deliver(m).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming outbound messages failed"),
                }
            }
            while tasks.try_join_next().is_some() {}
            if claimed > 0 && claimed == free {
                // More may be waiting; look again once a slot frees up.
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    fn lease_ms(&self) -> i64 {
        // A lease must outlast the longest send, or a slow send would be sent twice.
        (self.cfg.lease_secs.max(self.cfg.send_timeout_ms / 1000 + 5) * 1000) as i64
    }

    async fn deliver(&self, m: OutboundMessageRow) {
        // The claim was taken just before; the outcome must be recorded before it lapses.
        let lease_end = tokio::time::Instant::now() + Duration::from_millis(self.lease_ms() as u64);
        let outcome = self.attempt(&m).await;
        let counters = self.metrics.connector(&m.connector_id);
        match &outcome {
            SendOutcome::Sent { .. } => {
                if let Some(c) = counters {
                    c.sent.fetch_add(1, Relaxed);
                    c.mark_healthy();
                }
                tracing::info!(outbound_id = %m.id, connector_id = %m.connector_id, attempts = m.attempts, "reply sent");
            }
            SendOutcome::Retry { error, .. } => {
                tracing::warn!(outbound_id = %m.id, connector_id = %m.connector_id, attempts = m.attempts, error, "send failed; will retry");
            }
            SendOutcome::Failed { error } => {
                if let Some(c) = counters {
                    c.send_failed.fetch_add(1, Relaxed);
                }
                tracing::warn!(outbound_id = %m.id, connector_id = %m.connector_id, attempts = m.attempts, error, "send failed for good");
            }
        }
        // The database may be away right now (the provider answered, the store did not):
        // keep trying while the claim lasts, so a reply the provider accepted is recorded as
        // sent rather than sent again after the lease.
        let mut pause = Duration::from_millis(100);
        loop {
            match self
                .store
                .finish_outbound_attempt(&m.id, Some(m.attempts), &outcome)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    let e = anyhow::Error::from(e);
                    if !crate::store::is_unavailable(&e)
                        || tokio::time::Instant::now() + pause >= lease_end
                    {
                        // The lease expires and the message is queued again (same
                        // idempotency key): not lost.
                        tracing::warn!(outbound_id = %m.id, error = %e, "could not record send outcome");
                        return;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// One send attempt, classified.
    pub async fn attempt(&self, m: &OutboundMessageRow) -> SendOutcome {
        let Some(inst) = self.registry.get(&m.connector_id) else {
            return SendOutcome::Failed {
                error: format!("connector `{}` is not configured", m.connector_id),
            };
        };
        let Some(out) = inst.connector.outbound() else {
            return SendOutcome::Failed {
                error: format!("connector `{}` cannot send replies", m.connector_id),
            };
        };
        if let Some(l) = self.limiters.get(&m.connector_id) {
            l.until_ready().await;
        }
        let in_reply_to = self
            .store
            .latest_inbound_message_id(&m.conversation_id)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(outbound_id = %m.id, error = %e, "could not look up the message replied to");
                None
            });
        let msg = OutboundMessage {
            in_reply_to,
            id: m.id.clone(),
            idempotency_key: m.idempotency_key.clone(),
            thread_key: m.thread_key.clone(),
            text: m.text.clone(),
            attachment_urls: m.attachments.clone(),
        };
        let result = tokio::time::timeout(
            Duration::from_millis(self.cfg.send_timeout_ms),
            out.send(&msg),
        )
        .await
        .unwrap_or_else(|_| Err(ConnectorError::Transient("timed out".into())));
        if let Err(ConnectorError::Unauthorized(reason)) = &result {
            if let Some(c) = self.metrics.connector(&m.connector_id) {
                c.mark_unhealthy(reason, now_ms());
            }
            tracing::warn!(connector_id = %m.connector_id, "the provider refused the connector's credentials; marked unhealthy");
        }
        self.classify(m.attempts, result)
    }

    fn classify(
        &self,
        attempts: i64,
        result: Result<switchboard_core::Sent, ConnectorError>,
    ) -> SendOutcome {
        let now = now_ms();
        let max = self.cfg.max_attempts as i64;
        match result {
            Ok(sent) => SendOutcome::Sent {
                provider_message_id: sent.provider_message_id,
            },
            // Being told to wait is not a failure of the message: it gets more tries.
            Err(ConnectorError::RateLimited { retry_after }) if attempts < max * 3 => {
                let wait = retry_after
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or_else(|| self.backoff_ms(attempts));
                SendOutcome::Retry {
                    at: now + wait as i64,
                    error: "rate limited by the provider".into(),
                }
            }
            Err(ConnectorError::RateLimited { .. }) => SendOutcome::Failed {
                error: "rate limited by the provider on every attempt".into(),
            },
            Err(ConnectorError::Transient(e)) if attempts < max => SendOutcome::Retry {
                at: now + self.backoff_ms(attempts) as i64,
                error: e,
            },
            Err(ConnectorError::Transient(e)) => SendOutcome::Failed {
                error: format!("gave up after {attempts} attempts: {e}"),
            },
            Err(ConnectorError::Unauthorized(e)) => SendOutcome::Failed {
                error: format!("the provider refused our credentials: {e}"),
            },
            Err(ConnectorError::Permanent(e)) => SendOutcome::Failed { error: e },
        }
    }

    fn backoff_ms(&self, attempts: i64) -> u64 {
        let exp = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let base = self
            .cfg
            .base_backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.cfg.max_backoff_ms);
        (base as f64 * rand::thread_rng().gen_range(0.8..1.2)) as u64
    }
}

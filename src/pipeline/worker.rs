use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{watch, Notify};

use crate::config::PipelineSettings;
use crate::domain::ClaimNormalizer;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::{is_unavailable, now_ms, ClaimedJob, PreparedEvent, Store};
use switchboard_core::EventBody;

/// The pause after a batch taken while ingest was active (`busy`), given how many webhook
/// requests wait for a commit when it ends: none (the writer is free), `yield_pause_ms` for
/// a few, `flood_pause_ms` from `flood_waiting` on. Each of the pipeline's writer holds
/// delays every waiting request's commit, so the more wait, the rarer the holds; the
/// pipeline still takes `yield_batch` jobs per pause and never starves.
fn yield_pause(cfg: &PipelineSettings, busy: bool, waiting: usize) -> Option<Duration> {
    if !busy || waiting == 0 {
        None
    } else if waiting >= cfg.flood_waiting {
        Some(Duration::from_millis(cfg.flood_pause_ms))
    } else {
        Some(Duration::from_millis(cfg.yield_pause_ms))
    }
}

pub struct Pipeline {
    store: Store,
    registry: Registry,
    claims: ClaimNormalizer,
    cfg: PipelineSettings,
    metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    /// Set on SQLite, where ingest and the pipeline share one writer: while ingest is active
    /// the pipeline takes small batches (`yield_batch`), and pauses (`yield_pause_ms`) after
    /// one whenever webhooks are waiting for a commit, so acknowledging providers comes first;
    /// it still gets a guaranteed share, so it never starves.
    ingest_pressure: Option<crate::ingest::IngestPressure>,
    /// The last claim's lease end (`lease_token`).
    last_lease: std::sync::atomic::AtomicI64,
}

impl Pipeline {
    pub fn new(
        store: Store,
        registry: Registry,
        claims: ClaimNormalizer,
        cfg: PipelineSettings,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Pipeline {
        Pipeline {
            store,
            registry,
            claims,
            cfg,
            metrics,
            wake,
            ingest_pressure: None,
            last_lease: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Makes the worker yield the writer to waiting webhooks (SQLite).
    pub fn yield_to_ingest(mut self, pressure: crate::ingest::IngestPressure) -> Pipeline {
        self.ingest_pressure = Some(pressure);
        self
    }

    /// The lease end for a claim, which doubles as the claim's token: strictly after the
    /// last one this worker used, plus up to a second at random so that workers on other
    /// nodes claiming in the same millisecond hardly ever share it (if they did, a release
    /// would only make the other's job run twice, which applying tolerates).
    fn lease_token(&self, lease_end: i64) -> i64 {
        let jitter = rand::thread_rng().gen_range(0..1000);
        let want = lease_end + jitter;
        let prev = self
            .last_lease
            .fetch_update(Relaxed, Relaxed, |last| Some(want.max(last + 1)))
            .unwrap_or_else(|last| last);
        want.max(prev + 1)
    }

    fn ingest_active(&self) -> bool {
        self.ingest_pressure.as_ref().is_some_and(|p| p.active())
    }

    /// Webhook requests waiting for a commit right now (0 without ingest on this node).
    fn ingest_waiting(&self) -> usize {
        self.ingest_pressure.as_ref().map_or(0, |p| p.waiting_now())
    }

    /// Whether this node runs the worker (`pipeline.enabled`).
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Runs until `shutdown` turns true; the batch in hand is finished first.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let idle = Duration::from_millis(self.cfg.idle_poll_ms.max(10));
        let sweep_every = Duration::from_secs((self.cfg.lease_secs / 2).max(1));
        let mut last_sweep = tokio::time::Instant::now() - sweep_every;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if last_sweep.elapsed() >= sweep_every {
                last_sweep = tokio::time::Instant::now();
                match self.store.requeue_expired(now_ms()).await {
                    Ok(n) if n > 0 => tracing::warn!(jobs = n, "requeued jobs whose lease expired"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "lease sweep failed"),
                }
            }
            let busy = self.ingest_active();
            let limit = if busy {
                self.cfg.yield_batch.min(self.cfg.batch_size)
            } else {
                self.cfg.batch_size
            };
            match self.run_batch(limit).await {
                Ok(n) if n > 0 => {
                    if let Some(pause) = yield_pause(&self.cfg, busy, self.ingest_waiting()) {
                        tokio::time::sleep(pause).await;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pipeline batch failed; will retry"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Processes batches until no job is ready and none is running elsewhere (another
    /// worker's batch in flight). Returns how many jobs this call handled. Gives up after
    /// 60 s, so a test or a replay never hangs on a job held by a dead worker's lease.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut total = 0;
        loop {
            let n = self.run_once().await?;
            total += n;
            if n > 0 {
                continue;
            }
            let q = self.store.queue_stats().await?;
            if q.running == 0 && q.queued == 0 {
                return Ok(total);
            }
            // Retries waiting for their backoff count as queued: wait for them too.
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "queue not drained within 60 s: {q:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Claims one batch and processes it. Returns how many jobs were claimed.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        self.run_batch(self.cfg.batch_size).await
    }

    async fn run_batch(&self, limit: usize) -> anyhow::Result<usize> {
        let now = now_ms();
        let lease_end = self.lease_token(now + self.cfg.lease_secs as i64 * 1000);
        let jobs = match self.store.claim_jobs(limit, now, lease_end - now).await {
            Ok(jobs) => jobs,
            Err(e) => {
                // The claim may have committed with its answer lost: its lease end is its
                // token, so whatever it took is given back without knowing the ids.
                self.release_on_outage(lease_end, &e).await;
                return Err(e);
            }
        };
        if jobs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.raw_event_id).collect();
        let raws: HashMap<i64, _> = match self.store.load_raw_events(&ids).await {
            Ok(raws) => raws.into_iter().map(|r| (r.id, r)).collect(),
            Err(e) => {
                self.release_on_outage(lease_end, &e).await;
                return Err(e);
            }
        };

        let started = std::time::Instant::now();
        let mut prepared = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let Some(raw) = raws.get(&job.raw_event_id) else {
                self.fail(job, "", "raw event not found").await;
                continue;
            };
            let Some(inst) = self.registry.get(&raw.connector_id) else {
                self.fail(
                    job,
                    &raw.connector_id,
                    &format!("connector `{}` is not configured", raw.connector_id),
                )
                .await;
                continue;
            };
            // A normaliser must not panic, but one that does must not take the worker down.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inst.connector.normalizer().normalize(raw)
            }));
            match result {
                Ok(Ok(mut items)) => {
                    for item in items.iter_mut() {
                        item.claims = item
                            .claims
                            .iter()
                            .filter_map(|c| self.claims.normalize(c))
                            .collect();
                        if matches!(item.body, EventBody::Unsupported { .. }) {
                            if let Some(c) = self.metrics.connector(&raw.connector_id) {
                                c.unsupported.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    prepared.push(PreparedEvent {
                        replay: job.replay,
                        job_id: job.id,
                        raw_event_id: raw.id,
                        connector_id: raw.connector_id.clone(),
                        items,
                    });
                }
                Ok(Err(e)) => {
                    self.fail(job, &raw.connector_id, &format!("normalize: {e}"))
                        .await
                }
                Err(_) => {
                    self.fail(job, &raw.connector_id, "normalize: the normaliser panicked")
                        .await
                }
            }
        }

        let times = &self.metrics.pipeline_us;
        times
            .normalize
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        let started = std::time::Instant::now();
        let applied = self
            .store
            .apply_batch_with(&prepared, &self.claims.guards)
            .await;
        times
            .apply
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        match applied {
            Ok(stats) => self.record(&prepared, stats),
            Err(e) if is_unavailable(&e) => {
                // The database went away mid-batch: no event is at fault, so no attempt is
                // spent, and the claims are given back as soon as the database answers.
                self.release_on_outage(lease_end, &e).await;
                return Err(e);
            }
            Err(e) if prepared.len() > 1 => {
                // Find the event that breaks the batch: apply one by one, fail only it.
                tracing::warn!(error = %e, jobs = prepared.len(), "batch failed; applying one by one");
                for p in &prepared {
                    let one = std::slice::from_ref(p);
                    match self.store.apply_batch_with(one, &self.claims.guards).await {
                        Ok(stats) => self.record(one, stats),
                        Err(e) => {
                            if let Some(job) = jobs.iter().find(|j| j.id == p.job_id) {
                                self.fail(job, &p.connector_id, &format!("apply: {e}"))
                                    .await;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                for p in &prepared {
                    if let Some(job) = jobs.iter().find(|j| j.id == p.job_id) {
                        self.fail(job, &p.connector_id, &format!("apply: {e}"))
                            .await;
                    }
                }
            }
        }
        Ok(jobs.len())
    }

    /// After a database outage interrupted a batch: gives the claims back (attempts returned)
    /// once the database answers again, retrying with backoff until their lease would end
    /// anyway. Without this they would sit claimed for the whole lease after the outage.
    /// The claim is found by its lease end (its token, see `lease_token`), so this works
    /// too when the claim itself failed and the worker never learnt which jobs it took.
    async fn release_on_outage(&self, lease_end: i64, e: &anyhow::Error) {
        if !is_unavailable(e) {
            return; // the lease sweep takes care of anything else
        }
        tracing::warn!(error = %e, "database unavailable mid-batch; releasing the claims when it is back");
        let mut pause = Duration::from_millis(100);
        while now_ms() + (pause.as_millis() as i64) < lease_end {
            match self.store.release_claim(lease_end).await {
                Ok(n) => {
                    tracing::info!(jobs = n, "claims released after a database outage");
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn record(&self, done: &[PreparedEvent], stats: crate::store::ApplyStats) {
        for p in done {
            if let Some(c) = self.metrics.connector(&p.connector_id) {
                c.normalized.fetch_add(1, Relaxed);
            }
        }
        self.metrics
            .entries_written
            .fetch_add(stats.entries as u64, Relaxed);
        self.metrics.merges.fetch_add(stats.merges as u64, Relaxed);
        self.metrics
            .pipeline_us
            .identity
            .fetch_add(stats.identity_us, Relaxed);
        let t = &self.metrics.pipeline_us;
        t.identity_lookup
            .fetch_add(stats.identity_lookup_us, Relaxed);
        t.identity_write.fetch_add(stats.identity_write_us, Relaxed);
    }

    /// Retries with exponential backoff and jitter, or parks the job as dead.
    async fn fail(&self, job: &ClaimedJob, connector_id: &str, error: &str) {
        let dead = job.attempts >= self.cfg.max_attempts as i64;
        let retry_at = (!dead).then(|| now_ms() + self.backoff_ms(job.attempts) as i64);
        if let Some(c) = self.metrics.connector(connector_id) {
            c.failed.fetch_add(1, Relaxed);
            if dead {
                c.dead.fetch_add(1, Relaxed);
            }
        }
        if dead {
            tracing::error!(
                job_id = job.id,
                connector_id,
                attempts = job.attempts,
                error,
                "job parked as dead"
            );
        } else {
            tracing::warn!(
                job_id = job.id,
                connector_id,
                attempts = job.attempts,
                error,
                "job failed; will retry"
            );
        }
        if let Err(e) = self.store.fail_job(job.id, error, retry_at).await {
            // The lease expires and the job is claimed again: nothing is lost.
            tracing::warn!(job_id = job.id, error = %e, "could not record job failure");
        }
    }

    fn backoff_ms(&self, attempts: i64) -> u64 {
        let exp = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let base = self
            .cfg
            .base_backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.cfg.max_backoff_ms);
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        (base as f64 * jitter) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_after_a_yielding_batch_grows_with_the_webhooks_waiting() {
        let cfg = PipelineSettings::default();
        let (few, flood) = (
            Some(Duration::from_millis(cfg.yield_pause_ms)),
            Some(Duration::from_millis(cfg.flood_pause_ms)),
        );
        // Ingest quiet, or nobody waiting: no pause.
        assert_eq!(yield_pause(&cfg, false, 64), None);
        assert_eq!(yield_pause(&cfg, true, 0), None);
        // A trickle: the short pause.
        assert_eq!(yield_pause(&cfg, true, 1), few);
        assert_eq!(yield_pause(&cfg, true, cfg.flood_waiting - 1), few);
        // A flood: the long one.
        assert_eq!(yield_pause(&cfg, true, cfg.flood_waiting), flood);
        assert_eq!(yield_pause(&cfg, true, 1_000), flood);
        assert!(cfg.flood_pause_ms > cfg.yield_pause_ms);
    }
}

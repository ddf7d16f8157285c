//! The outgoing webhook dispatcher: fans the event log out into deliveries for matching
//! subscriptions, then delivers each in the Standard Webhooks format (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), retried with
//! exponential backoff and jitter (Retry-After on 429) for `webhooks.retry_window_hours`, then
//! failed. Every attempt is logged; a subscription failing `webhooks.pause_after_failures`
//! times in a row is paused and its deliveries wait until it is resumed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::{Rng, RngCore};
use switchboard_core::http_client::{client, retry_after, status_error, transport_error};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::ConnectorError;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::WebhooksSettings;
use crate::store::{now_ms, AttemptRecord, ClaimedDelivery, DeliveryOutcome, Store};

pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key of a secret: base64-decoded after the `whsec_` prefix.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(b64).ok()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    HmacScheme::new(Algorithm::Sha256, Encoding::Base64, Some("v1,"))
        .sign(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body])
}

pub struct Dispatcher {
    store: Store,
    cfg: WebhooksSettings,
    http: reqwest::Client,
    pub wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(store: Store, cfg: WebhooksSettings) -> anyhow::Result<Dispatcher> {
        let http = client(Duration::from_millis(cfg.request_timeout_ms.max(1)))
            .map_err(|e| anyhow::anyhow!("webhooks: building the HTTP client: {e}"))?;
        Ok(Dispatcher {
            store,
            cfg,
            http,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Runs until `shutdown`; deliveries in flight finish (each is bounded by the timeout).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let idle = Duration::from_millis(self.cfg.idle_poll_ms.max(10));
        let sweep_every = Duration::from_secs((self.cfg.lease_secs / 2).max(1));
        let mut last_sweep = tokio::time::Instant::now() - sweep_every;
        while !*shutdown.borrow() {
            if last_sweep.elapsed() >= sweep_every {
                last_sweep = tokio::time::Instant::now();
                match self.store.requeue_expired_deliveries(now_ms()).await {
                    Ok(n) if n > 0 => {
                        tracing::warn!(
                            deliveries = n,
                            "requeued webhook deliveries whose lease expired"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "webhook lease sweep failed"),
                }
            }
            if let Err(e) = self.fan_out().await {
                tracing::warn!(error = %e, "webhook fan-out failed");
            }
            let free = permits.available_permits();
            let mut claimed = 0;
            // Claiming is a write; with no active subscription there is nothing to claim.
            if free > 0 && self.store.any_active_subscription().await.unwrap_or(true) {
                match self
                    .store
                    .claim_deliveries(free, now_ms(), self.lease_ms())
                    .await
                {
                    Ok(ds) => {
                        claimed = ds.len();
                        for d in ds {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                break;
                            };
                            let me = self.clone();
                            tasks.spawn(async move {
                                me.deliver(d).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
                }
            }
            while tasks.try_join_next().is_some() {}
            if claimed > 0 && claimed == free {
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

    /// Fans out every event not yet fanned out. Returns the deliveries created.
    pub async fn fan_out(&self) -> anyhow::Result<usize> {
        let mut created = 0;
        loop {
            let batch = self.cfg.fanout_batch.clamp(1, 5_000);
            let (consumed, n) = self.store.fan_out_events(batch).await?;
            created += n;
            if consumed < batch {
                return Ok(created);
            }
        }
    }

    fn lease_ms(&self) -> i64 {
        // A lease must outlast the longest request, or a slow one would be sent twice.
        (self
            .cfg
            .lease_secs
            .max(self.cfg.request_timeout_ms / 1000 + 5)
            * 1000) as i64
    }

    fn window_ms(&self) -> i64 {
        let h = self.cfg.retry_window_hours;
        if h.is_finite() && h > 0.0 {
            (h * 3_600_000.0) as i64
        } else {
            0
        }
    }

    async fn deliver(&self, d: ClaimedDelivery) {
        let (record, retry_after) = self.attempt(&d).await;
        let outcome = self.classify(&d, &record, retry_after);
        match &outcome {
            DeliveryOutcome::Delivered => {
                tracing::debug!(delivery_id = %d.id, attempt = d.attempt, "webhook delivered")
            }
            DeliveryOutcome::Retry { .. } => {
                tracing::info!(delivery_id = %d.id, attempt = d.attempt, error = record.error.as_deref().unwrap_or(""), "webhook delivery failed; will retry")
            }
            DeliveryOutcome::Failed => {
                tracing::warn!(delivery_id = %d.id, attempt = d.attempt, error = record.error.as_deref().unwrap_or(""), "webhook delivery failed for good")
            }
        }
        if let Err(e) = self
            .store
            .finish_delivery(&d, &record, &outcome, self.cfg.pause_after_failures)
            .await
        {
            // The lease expires and the delivery is due again: not lost.
            tracing::warn!(delivery_id = %d.id, error = %e, "could not record webhook attempt");
        }
    }

    /// One signed POST to the subscription's URL (and nowhere else: no redirects).
    async fn attempt(&self, d: &ClaimedDelivery) -> (AttemptRecord, Option<Duration>) {
        let at = now_ms();
        let started = Instant::now();
        let record = |status: Option<u16>, error: Option<String>| AttemptRecord {
            status_code: status,
            error,
            duration_ms: started.elapsed().as_millis() as i64,
            at,
        };
        let Some(key) = secret_key(&d.secret) else {
            return (
                record(None, Some("the signing secret is not valid base64".into())),
                None,
            );
        };
        let ts = at.div_euclid(1000);
        let signature = sign(&key, &d.id, ts, d.body.as_bytes());
        let sent = self
            .http
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                (record(Some(resp.status().as_u16()), None), None)
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let wait = retry_after(resp.headers(), at.div_euclid(1000));
                let body = read_some(resp, 500).await;
                let err = match status_error(status, wait, &body) {
                    ConnectorError::RateLimited { .. } => format!("HTTP {status}: rate limited"),
                    ConnectorError::Transient(r)
                    | ConnectorError::Unauthorized(r)
                    | ConnectorError::Permanent(r) => r,
                };
                (
                    record(Some(status), Some(err)),
                    (status == 429).then_some(wait).flatten(),
                )
            }
            Err(e) => {
                let err = match transport_error(&e) {
                    ConnectorError::Transient(r) => r,
                    other => other.to_string(),
                };
                (record(None, Some(err)), None)
            }
        }
    }

    /// 2xx is delivered; anything else is retried (Retry-After on 429, else backoff) while
    /// the next attempt falls inside the retry window, then failed.
    fn classify(
        &self,
        d: &ClaimedDelivery,
        r: &AttemptRecord,
        retry_after: Option<Duration>,
    ) -> DeliveryOutcome {
        if r.error.is_none() {
            return DeliveryOutcome::Delivered;
        }
        let wait = retry_after
            .map(|w| w.as_millis() as i64)
            .unwrap_or_else(|| self.backoff_ms(d.attempt) as i64);
        let at = now_ms() + wait;
        if at > d.window_start + self.window_ms() {
            DeliveryOutcome::Failed
        } else {
            DeliveryOutcome::Retry { at }
        }
    }

    fn backoff_ms(&self, attempt: i64) -> u64 {
        let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let base = self
            .cfg
            .base_backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.cfg.max_backoff_ms);
        (base as f64 * rand::thread_rng().gen_range(0.8..1.2)) as u64
    }
}

/// Up to `max` characters of a response body, for the attempt log.
async fn read_some(mut resp: reqwest::Response, max: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < max * 4 {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TEST VECTORS §A.8 (standard-webhooks `test_sign_function`).
    #[test]
    fn standard_webhooks_vector_signs() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let scheme = HmacScheme::new(Algorithm::Sha256, Encoding::Base64, Some("v1,"));
        let parts: [&[u8]; 5] = [
            b"msg_p5jXN8AQM9LWM0D4loKWxJek",
            b".",
            b"1614265330",
            b".",
            br#"{"test": 2432232314}"#,
        ];
        assert!(scheme
            .verify(
                &key,
                &parts,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
            )
            .is_ok());
        assert!(scheme
            .verify(
                &key,
                &parts,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
            )
            .is_err());
    }

    #[test]
    fn generated_secrets_carry_a_32_byte_key() {
        let s = generate_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        assert_ne!(s, generate_secret());
    }
}

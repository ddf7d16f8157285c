//! Outgoing webhooks: subscriptions, the fan-out of the event log into deliveries, the
//! delivery queue (claimed with a lease; `FOR UPDATE SKIP LOCKED` on PostgreSQL) and the log
//! of every attempt.
//!
//! Fan-out reads events after a stored cursor and inserts one delivery per matching
//! subscription, advancing the cursor in the same transaction: an event is neither skipped nor
//! doubled across restarts (and `UNIQUE (subscription_id, event_id)` guards the rest).

use serde::Serialize;
use sqlx::{QueryBuilder, Row};

use super::error::StoreError;
use super::model::rfc3339;
use super::{begin_write, now_ms, with_pool, Pools, Store};

use super::events::PG_GAP_GRACE_MS;

/// Whether any subscription is active (paused ones count: their deliveries wait).
const ANY_ACTIVE_SUBSCRIPTION: &str =
    "SELECT EXISTS (SELECT 1 FROM webhook_subscriptions WHERE active = 1)";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookSubscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    /// `active`, `paused` (by repeated failures; PATCH resumes) or `disabled`.
    pub state: &'static str,
    pub paused_at: Option<String>,
    pub pause_reason: Option<String>,
    pub consecutive_failures: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Signs deliveries; shown only in the answer to the create request.
    #[serde(skip)]
    pub secret: String,
}

/// A change to a subscription; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub active: Option<bool>,
    /// Clears a pause; its pending deliveries become due at once.
    pub resume: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct WebhookAttempt {
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    /// Also the `webhook-id` header: the same on every attempt, so receivers can dedupe.
    pub id: String,
    pub subscription_id: String,
    pub event_id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `sending`, `delivered` or `failed`.
    pub state: String,
    pub attempt_count: i64,
    pub next_attempt_at: Option<String>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The exact body sent on every attempt.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub attempts: Vec<WebhookAttempt>,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub subscription_id: String,
    pub url: String,
    pub secret: String,
    pub body: String,
    /// This attempt's number (1 for the first).
    pub attempt: i64,
    pub window_start: i64,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Delivered,
    Retry { at: i64 },
    Failed,
}

/// One attempt, as logged.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub at: i64,
}

const SUB_COLS: &str = "id, url, events, secret, active, consecutive_failures, paused_at, pause_reason, created_at, updated_at";

macro_rules! sub_from_row {
    ($r:expr) => {{
        let r = $r;
        let events: String = r.try_get(2)?;
        let active: i64 = r.try_get(4)?;
        let paused: Option<i64> = r.try_get(6)?;
        WebhookSubscription {
            id: r.try_get(0)?,
            url: r.try_get(1)?,
            events: serde_json::from_str(&events).unwrap_or_default(),
            secret: r.try_get(3)?,
            active: active == 1,
            state: if active != 1 {
                "disabled"
            } else if paused.is_some() {
                "paused"
            } else {
                "active"
            },
            consecutive_failures: r.try_get(5)?,
            paused_at: paused.map(rfc3339),
            pause_reason: r.try_get(7)?,
            created_at: rfc3339(r.try_get(8)?),
            updated_at: rfc3339(r.try_get(9)?),
        }
    }};
}

const DEL_COLS: &str = "id, subscription_id, event_id, kind, state, attempts, next_attempt_at, last_status, last_error, created_at, updated_at, body";

macro_rules! delivery_from_row {
    ($r:expr) => {{
        let r = $r;
        let state: String = r.try_get(4)?;
        let next: i64 = r.try_get(6)?;
        let body: String = r.try_get(11)?;
        WebhookDelivery {
            id: r.try_get(0)?,
            subscription_id: r.try_get(1)?,
            event_id: r.try_get(2)?,
            kind: r.try_get(3)?,
            next_attempt_at: (state == "pending").then(|| rfc3339(next)),
            state,
            attempt_count: r.try_get(5)?,
            last_status: r.try_get(7)?,
            last_error: r.try_get(8)?,
            created_at: rfc3339(r.try_get(9)?),
            updated_at: rfc3339(r.try_get(10)?),
            payload: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
            attempts: Vec::new(),
        }
    }};
}

/// The Standard Webhooks body of one event: `{"type", "timestamp", "data"}`, where `data` is
/// the event's payload with its ids.
pub fn delivery_body(
    event_id: i64,
    kind: &str,
    conversation_id: Option<&str>,
    customer_id: Option<&str>,
    payload: &serde_json::Value,
    created_at_ms: i64,
) -> String {
    let mut data = match payload {
        serde_json::Value::Object(m) => m.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("payload".into(), other.clone());
            m
        }
    };
    data.insert("event_id".into(), event_id.into());
    if let Some(c) = conversation_id {
        data.entry("conversation_id").or_insert(c.into());
    }
    if let Some(c) = customer_id {
        data.entry("customer_id").or_insert(c.into());
    }
    serde_json::json!({
        "type": kind,
        "timestamp": rfc3339(created_at_ms),
        "data": data,
    })
    .to_string()
}

fn new_delivery_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

impl Store {
    pub async fn create_subscription(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
    ) -> Result<WebhookSubscription, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let events_json = serde_json::to_string(events).map_err(anyhow::Error::from)?;
        with_pool!(self, write, |pool, pg| {
            // Only events after this moment are delivered to the new subscription.
            sqlx::query(
                "INSERT INTO webhook_subscriptions (id, url, events, secret, active, from_event_id, consecutive_failures, created_at, updated_at) \
                 SELECT $1, $2, $3, $4, 1, COALESCE(MAX(id), 0), 0, $5, $5 FROM events",
            )
            .bind(&id)
            .bind(url)
            .bind(&events_json)
            .bind(secret)
            .bind(now)
            .execute(pool)
            .await?;
        });
        self.get_subscription(&id)
            .await?
            .ok_or(StoreError::NotFound("webhook subscription"))
    }

    pub async fn get_subscription(
        &self,
        id: &str,
    ) -> Result<Option<WebhookSubscription>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(&format!(
                "SELECT {SUB_COLS} FROM webhook_subscriptions WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(match r {
                Some(r) => Some(sub_from_row!(&r)),
                None => None,
            })
        })
    }

    /// Subscriptions by id, after the keyset cursor `after`.
    pub async fn list_subscriptions(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let rows = sqlx::query(&format!(
                "SELECT {SUB_COLS} FROM webhook_subscriptions WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(sub_from_row!(r));
            }
            Ok(out)
        })
    }

    pub async fn update_subscription(
        &self,
        id: &str,
        patch: &SubscriptionPatch,
    ) -> Result<WebhookSubscription, StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let mut qb = QueryBuilder::new("UPDATE webhook_subscriptions SET updated_at = ");
            qb.push_bind(now);
            if let Some(u) = &patch.url {
                qb.push(", url = ").push_bind(u.as_str());
            }
            if let Some(e) = &patch.events {
                let json = serde_json::to_string(e).map_err(anyhow::Error::from)?;
                qb.push(", events = ").push_bind(json);
            }
            if let Some(a) = patch.active {
                qb.push(", active = ").push_bind(i64::from(a));
            }
            if patch.resume {
                qb.push(", paused_at = NULL, pause_reason = NULL, consecutive_failures = 0");
            }
            qb.push(" WHERE id = ").push_bind(id);
            if qb.build().execute(&mut *tx).await?.rows_affected() == 0 {
                return Err(StoreError::NotFound("webhook subscription"));
            }
            if patch.resume {
                // The backlog that waited out the pause is due now.
                sqlx::query(
                    "UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE subscription_id = $2 AND state = 'pending' AND next_attempt_at > $1",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.get_subscription(id)
            .await?
            .ok_or(StoreError::NotFound("webhook subscription"))
    }

    /// Deletes a subscription with its deliveries and their attempts.
    pub async fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            sqlx::query("DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE subscription_id = $1)")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM webhook_deliveries WHERE subscription_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let r = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound("webhook subscription"));
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The last event id fanned out.
    pub async fn webhook_fanout_cursor(&self) -> Result<i64, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query("SELECT last_event_id FROM webhook_fanout WHERE id = 1")
                .fetch_optional(pool)
                .await?;
            Ok(match r {
                Some(r) => r.try_get::<i64, _>(0)?,
                None => 0,
            })
        })
    }

    /// Whether any subscription is active (paused ones count: their deliveries wait).
    pub async fn any_active_subscription(&self) -> Result<bool, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(ANY_ACTIVE_SUBSCRIPTION).fetch_one(pool).await?;
            Ok(r.try_get::<bool, _>(0)?)
        })
    }

    /// Fans out up to `batch` events after the stored cursor into deliveries for matching
    /// active subscriptions (paused ones included: their deliveries wait), advancing the
    /// cursor in the same transaction. Returns (events consumed, deliveries created).
    ///
    /// With no active subscription nothing is delivered, and the events are not read: the
    /// cursor stays until it lags a whole `batch` behind, then jumps to the latest event in
    /// one small write. SQLite has one writer, shared with webhook ingest; a subscription
    /// created later starts after the latest event of its creation, so the jump skips
    /// nothing it would get, and the scan up to it is at most one batch.
    pub async fn fan_out_events(&self, batch: usize) -> Result<(usize, usize), StoreError> {
        // Cheap look first, on the read side: most ticks have nothing to do, and SQLite has
        // one writer.
        let cursor = self.webhook_fanout_cursor().await?;
        let latest = self.latest_event_id().await?;
        if latest <= cursor {
            return Ok((0, 0));
        }
        if !self.any_active_subscription().await? {
            if latest - cursor >= batch.max(1) as i64 {
                self.skip_fan_out_to_latest().await?;
            }
            return Ok((0, 0));
        }
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            // Locks the cursor row: one node fans out at a time.
            let lock = if pg { " FOR UPDATE" } else { "" };
            let cursor: i64 = match sqlx::query(&format!(
                "SELECT last_event_id FROM webhook_fanout WHERE id = 1{lock}"
            ))
            .fetch_optional(&mut *tx)
            .await?
            {
                Some(r) => r.try_get(0)?,
                None => {
                    sqlx::query("INSERT INTO webhook_fanout (id, last_event_id) VALUES (1, 0)")
                        .execute(&mut *tx)
                        .await?;
                    0
                }
            };
            let rows = sqlx::query(
                "SELECT id, kind, conversation_id, customer_id, payload, created_at FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(cursor)
            .bind(batch.max(1) as i64)
            .fetch_all(&mut *tx)
            .await?;
            let subs: Vec<(String, Vec<String>, i64)> = sqlx::query(
                "SELECT id, events, from_event_id FROM webhook_subscriptions WHERE active = 1",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                let events: String = r.try_get(1)?;
                Ok((
                    r.try_get(0)?,
                    serde_json::from_str(&events).unwrap_or_default(),
                    r.try_get(2)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
            let mut last = cursor;
            let mut consumed = 0;
            // (delivery id, subscription id, event id, kind, body)
            let mut new: Vec<(String, String, i64, String, String)> = Vec::new();
            for r in &rows {
                let id: i64 = r.try_get(0)?;
                let created_at: i64 = r.try_get(5)?;
                if pg && id != last + 1 && created_at > now - PG_GAP_GRACE_MS {
                    break; // an earlier id may still commit; look again later
                }
                last = id;
                consumed += 1;
                let kind: String = r.try_get(1)?;
                let matching: Vec<&String> = subs
                    .iter()
                    .filter(|(_, kinds, from)| id > *from && kinds.contains(&kind))
                    .map(|(sub, ..)| sub)
                    .collect();
                if matching.is_empty() {
                    continue;
                }
                let payload: String = r.try_get(4)?;
                let payload = serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null);
                let conversation: Option<String> = r.try_get(2)?;
                let customer: Option<String> = r.try_get(3)?;
                let body = delivery_body(
                    id,
                    &kind,
                    conversation.as_deref(),
                    customer.as_deref(),
                    &payload,
                    created_at,
                );
                for sub in matching {
                    new.push((
                        new_delivery_id(),
                        sub.clone(),
                        id,
                        kind.clone(),
                        body.clone(),
                    ));
                }
            }
            for chunk in new.chunks(super::CHUNK / 10) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO webhook_deliveries (id, subscription_id, event_id, kind, body, state, attempts, next_attempt_at, window_start, created_at, updated_at) ",
                );
                qb.push_values(chunk, |mut b, (id, sub, ev, kind, body)| {
                    b.push_bind(id.as_str())
                        .push_bind(sub.as_str())
                        .push_bind(*ev)
                        .push_bind(kind.as_str())
                        .push_bind(body.as_str())
                        .push_bind("pending")
                        .push_bind(0_i64)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.push(" ON CONFLICT (subscription_id, event_id) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            if last != cursor {
                sqlx::query("UPDATE webhook_fanout SET last_event_id = $1 WHERE id = 1")
                    .bind(last)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok((consumed, new.len()))
        })
    }

    /// Moves the fan-out cursor to the latest event, if still no subscription is active.
    /// The latest id is read before the subscriptions: one created after that read starts
    /// after an event at least that late (PostgreSQL reads each statement afresh).
    async fn skip_fan_out_to_latest(&self) -> Result<(), StoreError> {
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let latest: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            let active: bool = sqlx::query(ANY_ACTIVE_SUBSCRIPTION)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if !active {
                sqlx::query(
                    "INSERT INTO webhook_fanout (id, last_event_id) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET last_event_id = excluded.last_event_id \
                     WHERE webhook_fanout.last_event_id < excluded.last_event_id",
                )
                .bind(latest)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims up to `limit` due deliveries of active, unpaused subscriptions for `lease_ms`.
    pub async fn claim_deliveries(
        &self,
        limit: usize,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let claimed: Vec<(String, String, String, i64, i64)> = with_pool!(
            self,
            write,
            |pool, pg| {
                let lock = if pg {
                    " FOR UPDATE OF d SKIP LOCKED"
                } else {
                    ""
                };
                let sql = format!(
                    "UPDATE webhook_deliveries SET state = 'sending', attempts = attempts + 1, locked_until = $1, updated_at = $2 \
                     WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id \
                     WHERE d.state = 'pending' AND d.next_attempt_at <= $2 AND s.active = 1 AND s.paused_at IS NULL \
                     ORDER BY d.next_attempt_at LIMIT $3{lock}) \
                     RETURNING id, subscription_id, body, attempts, window_start"
                );
                sqlx::query(&sql)
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(limit as i64)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get(0)?,
                            r.try_get(1)?,
                            r.try_get(2)?,
                            r.try_get(3)?,
                            r.try_get(4)?,
                        ))
                    })
                    .collect::<Result<_, sqlx::Error>>()?
            }
        );
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut targets = std::collections::HashMap::new();
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(
                "SELECT id, url, secret FROM webhook_subscriptions WHERE id IN (",
            );
            let mut sep = qb.separated(", ");
            for (_, sub, ..) in &claimed {
                sep.push_bind(sub.as_str());
            }
            qb.push(")");
            for r in qb.build().fetch_all(pool).await? {
                let id: String = r.try_get(0)?;
                targets.insert(id, (r.try_get::<String, _>(1)?, r.try_get::<String, _>(2)?));
            }
        });
        let mut out: Vec<ClaimedDelivery> = claimed
            .into_iter()
            .filter_map(|(id, sub, body, attempt, window_start)| {
                // A subscription deleted meanwhile took its deliveries with it.
                let (url, secret) = targets.get(&sub)?.clone();
                Some(ClaimedDelivery {
                    id,
                    subscription_id: sub,
                    url,
                    secret,
                    body,
                    attempt,
                    window_start,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Records an attempt and its outcome (only while the delivery is still ours), and keeps
    /// the subscription's run of failures: `pause_after` failures in a row pause it.
    pub async fn finish_delivery(
        &self,
        d: &ClaimedDelivery,
        attempt: &AttemptRecord,
        outcome: &DeliveryOutcome,
        pause_after: u32,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let error: Option<String> = attempt
            .error
            .as_ref()
            .map(|e| e.chars().take(1000).collect());
        let status = attempt.status_code.map(i64::from);
        let (state, next) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", now),
            DeliveryOutcome::Retry { at } => ("pending", *at),
            DeliveryOutcome::Failed => ("failed", now),
        };
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let r = sqlx::query(
                "UPDATE webhook_deliveries SET state = $1, next_attempt_at = $2, locked_until = NULL, last_status = $3, last_error = $4, updated_at = $5 \
                 WHERE id = $6 AND state = 'sending' AND attempts = $7",
            )
            .bind(state)
            .bind(next)
            .bind(status)
            .bind(error.as_deref())
            .bind(now)
            .bind(&d.id)
            .bind(d.attempt)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                // The lease ran out (another worker has it) or the subscription was deleted.
                return Ok(());
            }
            sqlx::query(
                "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms, attempted_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&d.id)
            .bind(d.attempt)
            .bind(status)
            .bind(error.as_deref())
            .bind(attempt.duration_ms)
            .bind(attempt.at)
            .execute(&mut *tx)
            .await?;
            if *outcome == DeliveryOutcome::Delivered {
                sqlx::query(
                    "UPDATE webhook_subscriptions SET consecutive_failures = 0 WHERE id = $1 AND consecutive_failures <> 0",
                )
                .bind(&d.subscription_id)
                .execute(&mut *tx)
                .await?;
            } else {
                let reason = format!(
                    "paused after {pause_after} consecutive failed attempts; last: {}",
                    error.as_deref().unwrap_or("unknown error")
                );
                sqlx::query(
                    "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1, \
                     paused_at = CASE WHEN paused_at IS NULL AND consecutive_failures + 1 >= $1 THEN $2 ELSE paused_at END, \
                     pause_reason = CASE WHEN paused_at IS NULL AND consecutive_failures + 1 >= $1 THEN $3 ELSE pause_reason END, \
                     updated_at = $2 WHERE id = $4",
                )
                .bind(i64::from(pause_after.max(1)))
                .bind(now)
                .bind(&reason)
                .bind(&d.subscription_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deliveries whose worker vanished (lease expired) are due again; the attempt number it
    /// took stays used, and `webhook-id` stays the same so the receiver can drop a repeat.
    pub async fn requeue_expired_deliveries(&self, now: i64) -> Result<u64, StoreError> {
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending', locked_until = NULL WHERE state = 'sending' AND locked_until < $1",
            )
            .bind(now)
            .execute(pool)
            .await?;
            Ok(r.rows_affected())
        })
    }

    /// A subscription's deliveries, newest first, each with every attempt.
    pub async fn list_deliveries(
        &self,
        subscription_id: &str,
        state: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(format!(
                "SELECT {DEL_COLS} FROM webhook_deliveries WHERE subscription_id = "
            ));
            qb.push_bind(subscription_id);
            if let Some(s) = state {
                qb.push(" AND state = ").push_bind(s);
            }
            if let Some(b) = before {
                qb.push(" AND id < ").push_bind(b);
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            for r in qb.build().fetch_all(pool).await? {
                out.push(delivery_from_row!(&r));
            }
        });
        self.fill_attempts(&mut out).await?;
        Ok(out)
    }

    pub async fn get_delivery(
        &self,
        subscription_id: &str,
        id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(&format!(
                "SELECT {DEL_COLS} FROM webhook_deliveries WHERE id = $1 AND subscription_id = $2"
            ))
            .bind(id)
            .bind(subscription_id)
            .fetch_optional(pool)
            .await?;
            if let Some(r) = r {
                out.push(delivery_from_row!(&r));
            }
        });
        self.fill_attempts(&mut out).await?;
        Ok(out.pop())
    }

    async fn fill_attempts(&self, deliveries: &mut [WebhookDelivery]) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut by_id: std::collections::HashMap<String, Vec<WebhookAttempt>> =
            std::collections::HashMap::new();
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(
                "SELECT delivery_id, attempt, status_code, error, duration_ms, attempted_at FROM webhook_attempts WHERE delivery_id IN (",
            );
            let mut sep = qb.separated(", ");
            for d in deliveries.iter() {
                sep.push_bind(d.id.as_str());
            }
            qb.push(") ORDER BY id");
            for r in qb.build().fetch_all(pool).await? {
                let id: String = r.try_get(0)?;
                by_id.entry(id).or_default().push(WebhookAttempt {
                    attempt: r.try_get(1)?,
                    status_code: r.try_get(2)?,
                    error: r.try_get(3)?,
                    duration_ms: r.try_get(4)?,
                    at: rfc3339(r.try_get(5)?),
                });
            }
        });
        for d in deliveries {
            d.attempts = by_id.remove(&d.id).unwrap_or_default();
        }
        Ok(())
    }

    /// Queues a failed delivery again, due now, with a fresh retry window. Its `webhook-id`
    /// stays the same.
    pub async fn replay_delivery(
        &self,
        subscription_id: &str,
        id: &str,
    ) -> Result<WebhookDelivery, StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $1, window_start = $1, updated_at = $1 \
                 WHERE id = $2 AND subscription_id = $3 AND state = 'failed'",
            )
            .bind(now)
            .bind(id)
            .bind(subscription_id)
            .execute(pool)
            .await?;
            if r.rows_affected() == 0 {
                let state: Option<String> = sqlx::query(
                    "SELECT state FROM webhook_deliveries WHERE id = $1 AND subscription_id = $2",
                )
                .bind(id)
                .bind(subscription_id)
                .fetch_optional(pool)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
                return Err(match state {
                    None => StoreError::NotFound("delivery"),
                    Some(s) => StoreError::conflict(
                        "not_failed",
                        format!("only a failed delivery can be replayed; this one is {s}"),
                    ),
                });
            }
        });
        self.get_delivery(subscription_id, id)
            .await?
            .ok_or(StoreError::NotFound("delivery"))
    }
}

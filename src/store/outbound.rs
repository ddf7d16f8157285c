//! Outbound messages: agents' replies, queued durably with an idempotency key, claimed by the
//! sender worker, and moved on by send results and provider status updates.

use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Row};

use super::error::StoreError;
use super::inbox::{insert_entry, load_conv};
use super::model::*;
use super::{begin_write, now_ms, with_pool, Pools, Store};

/// Appends an `outbound.status` event with the message's current state.
macro_rules! announce {
    ($tx:expr, $id:expr, $now:expr) => {{
        let r = sqlx::query("SELECT o.conversation_id, o.state, o.error, o.provider_message_id, c.canonical_id FROM outbound_messages o \
             JOIN conversations v ON v.id = o.conversation_id JOIN customers c ON c.id = v.customer_id WHERE o.id = $1")
            .bind($id)
            .fetch_one(&mut *$tx)
            .await?;
        let conversation: String = r.try_get(0)?;
        let customer: String = r.try_get(4)?;
        let payload = serde_json::json!({
            "message_id": $id,
            "conversation_id": conversation,
            "state": r.try_get::<String, _>(1)?,
            "error": r.try_get::<Option<String>, _>(2)?,
            "provider_message_id": r.try_get::<Option<String>, _>(3)?,
        });
        crate::store::events::append_event!($tx, "outbound.status", Some(conversation.as_str()), Some(customer.as_str()), payload, $now);
    }};
}
pub(crate) use announce;

const OUT_COLS: &str = "id, conversation_id, connector_id, thread_key, text, attachments, idempotency_key, state, attempts, provider_message_id, error, next_attempt_at, created_by, created_at, updated_at";

macro_rules! outbound_from_row {
    ($r:expr) => {{
        let r = $r;
        let attachments: String = r.try_get(5)?;
        let state: String = r.try_get(7)?;
        let next: i64 = r.try_get(11)?;
        OutboundMessageRow {
            id: r.try_get(0)?,
            conversation_id: r.try_get(1)?,
            connector_id: r.try_get(2)?,
            thread_key: r.try_get(3)?,
            text: r.try_get(4)?,
            attachments: serde_json::from_str(&attachments).unwrap_or_default(),
            idempotency_key: r.try_get(6)?,
            next_attempt_at: (state == "queued").then(|| rfc3339(next)),
            state,
            attempts: r.try_get(8)?,
            provider_message_id: r.try_get(9)?,
            error: r.try_get(10)?,
            created_by: r.try_get(12)?,
            created_at: rfc3339(r.try_get(13)?),
            updated_at: rfc3339(r.try_get(14)?),
        }
    }};
}

/// What a send attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    Sent { provider_message_id: Option<String> },
    Retry { at: i64, error: String },
    Failed { error: String },
}

/// States a provider status may move a message out of: state only moves forward.
pub(crate) fn allowed_from(status: &str) -> &'static [&'static str] {
    match status {
        "sent" => &["queued", "sending"],
        "delivered" => &["queued", "sending", "sent"],
        "read" => &["queued", "sending", "sent", "delivered"],
        "failed" => &["queued", "sending", "sent", "delivered"],
        _ => &[],
    }
}

impl Store {
    /// The provider's id of the customer's latest message in a conversation, for channels
    /// that thread or quote replies.
    pub async fn latest_inbound_message_id(
        &self,
        conversation_id: &str,
    ) -> anyhow::Result<Option<String>> {
        let body: Option<String> = with_pool!(self, read, |pool, pg| {
            sqlx::query_scalar(
                "SELECT body FROM timeline_entries WHERE conversation_id = $1 AND kind = 'message' \
                 AND direction = 'inbound' ORDER BY occurred_at DESC, id DESC LIMIT 1",
            )
            .bind(conversation_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(body
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["message_id"].as_str().map(str::to_string)))
    }

    /// Queues a reply. The same idempotency key with the same request returns the message
    /// already queued (`false`); with a different request it is refused.
    pub async fn create_reply(
        &self,
        conversation_id: &str,
        text: &str,
        attachments: &[String],
        idempotency_key: &str,
        actor: &str,
    ) -> Result<(OutboundMessageRow, bool), StoreError> {
        let attachments_json = serde_json::to_string(attachments).map_err(anyhow::Error::from)?;
        let hash = hex::encode(Sha256::digest(
            format!("{conversation_id}\u{0}{text}\u{0}{attachments_json}").as_bytes(),
        ));
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let existing = sqlx::query(
                "SELECT request_hash FROM outbound_messages WHERE idempotency_key = $1",
            )
            .bind(idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some(r) => {
                    let h: String = r.try_get(0)?;
                    if h != hash {
                        return Err(StoreError::invalid(
                            "Idempotency-Key",
                            "idempotency_key_reused",
                            "this Idempotency-Key was used for a different request",
                        ));
                    }
                }
                None => {
                    let Some(c) = load_conv!(tx, conversation_id) else {
                        return Err(StoreError::NotFound("conversation"));
                    };
                    if let Some(m) = &c.merged_into {
                        return Err(StoreError::conflict(
                            "conversation_merged",
                            format!("merged into {m}; reply there"),
                        ));
                    }
                    let r = sqlx::query(
                        "INSERT INTO outbound_messages (id, conversation_id, connector_id, thread_key, text, attachments, idempotency_key, request_hash, state, attempts, next_attempt_at, created_by, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', 0, $9, $10, $9, $9) ON CONFLICT (idempotency_key) DO NOTHING",
                    )
                    .bind(&id)
                    .bind(conversation_id)
                    .bind(&c.connector_id)
                    .bind(&c.thread_key)
                    .bind(text)
                    .bind(&attachments_json)
                    .bind(idempotency_key)
                    .bind(&hash)
                    .bind(now)
                    .bind(actor)
                    .execute(&mut *tx)
                    .await?;
                    if r.rows_affected() == 1 {
                        let body = serde_json::json!({ "type": "message", "text": text, "attachments": attachments });
                        insert_entry!(
                            tx,
                            c,
                            "message",
                            "outbound",
                            body,
                            actor,
                            Some(id.as_str()),
                            now
                        );
                        sqlx::query("UPDATE conversations SET last_message_at = $1, updated_at = $1 WHERE id = $2 AND last_message_at < $1")
                            .bind(now)
                            .bind(conversation_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
        });
        let row = self
            .outbound_by_key(idempotency_key)
            .await?
            .ok_or(StoreError::NotFound("outbound message"))?;
        let fresh = row.id == id;
        if !fresh && row.conversation_id != conversation_id {
            return Err(StoreError::invalid(
                "Idempotency-Key",
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ));
        }
        Ok((row, fresh))
    }

    async fn outbound_by_key(&self, key: &str) -> Result<Option<OutboundMessageRow>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(&format!(
                "SELECT {OUT_COLS} FROM outbound_messages WHERE idempotency_key = $1"
            ))
            .bind(key)
            .fetch_optional(pool)
            .await?;
            Ok(match r {
                Some(r) => Some(outbound_from_row!(&r)),
                None => None,
            })
        })
    }

    pub async fn get_outbound(&self, id: &str) -> Result<Option<OutboundMessageRow>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(&format!(
                "SELECT {OUT_COLS} FROM outbound_messages WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(match r {
                Some(r) => Some(outbound_from_row!(&r)),
                None => None,
            })
        })
    }

    /// Claims messages due for a send attempt, for `lease_ms`.
    pub async fn claim_outbound(
        &self,
        limit: usize,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboundMessageRow>, StoreError> {
        with_pool!(self, write, |pool, pg| {
            let lock = if pg { " FOR UPDATE SKIP LOCKED" } else { "" };
            let sql = format!(
                "UPDATE outbound_messages SET state = 'sending', attempts = attempts + 1, locked_until = $1, updated_at = $2 \
                 WHERE id IN (SELECT id FROM outbound_messages WHERE state = 'queued' AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3{lock}) \
                 RETURNING {OUT_COLS}"
            );
            let rows = sqlx::query(&sql)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(outbound_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Records a send attempt's outcome (only while the message is still ours to send).
    pub async fn finish_outbound(&self, id: &str, outcome: &SendOutcome) -> Result<(), StoreError> {
        self.finish_outbound_attempt(id, None, outcome).await
    }

    /// `finish_outbound` fenced by the attempt number the claim returned: a worker whose
    /// lease ran out while it was sending (another node claimed the message again, which
    /// raised `attempts`) records nothing over the newer attempt.
    pub async fn finish_outbound_attempt(
        &self,
        id: &str,
        attempt: Option<i64>,
        outcome: &SendOutcome,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let q = match outcome {
                SendOutcome::Sent { provider_message_id } => sqlx::query(
                    "UPDATE outbound_messages SET state = 'sent', provider_message_id = $1, error = NULL, locked_until = NULL, updated_at = $2 WHERE id = $3 AND state = 'sending' AND ($4 IS NULL OR attempts = $4)",
                )
                .bind(provider_message_id.as_deref()),
                SendOutcome::Retry { at, .. } => sqlx::query(
                    "UPDATE outbound_messages SET state = 'queued', next_attempt_at = $1, error = $4, locked_until = NULL, updated_at = $2 WHERE id = $3 AND state = 'sending' AND ($5 IS NULL OR attempts = $5)",
                )
                .bind(*at),
                SendOutcome::Failed { error } => sqlx::query(
                    "UPDATE outbound_messages SET state = 'failed', error = $1, locked_until = NULL, updated_at = $2 WHERE id = $3 AND state = 'sending' AND ($4 IS NULL OR attempts = $4)",
                )
                .bind(error.as_str()),
            };
            let q = q.bind(now).bind(id);
            let q = match outcome {
                SendOutcome::Retry { error, .. } => q.bind(error.as_str()),
                _ => q,
            };
            let q = q.bind(attempt);
            let mut tx = begin_write!(pool, pg)?;
            if q.execute(&mut *tx).await?.rows_affected() > 0 {
                // The id of a sent reply names its conversation, so an answer that refers to it
                // (an email's In-Reply-To/References) threads back.
                if let SendOutcome::Sent {
                    provider_message_id: Some(pid),
                } = outcome
                {
                    sqlx::query(
                        "INSERT INTO conversation_refs (connector_id, ref, conversation_id, last_at) \
                         SELECT connector_id, $1, conversation_id, $2 FROM outbound_messages WHERE id = $3 \
                         ON CONFLICT (connector_id, ref) DO NOTHING",
                    )
                    .bind(pid.as_str())
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                announce!(tx, id, now);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Sends interrupted by a crash (lease expired) are queued again; the idempotency key
    /// travels with the retry so a receiver that got the first one can drop the repeat.
    pub async fn requeue_expired_outbound(&self, now: i64) -> Result<u64, StoreError> {
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query("UPDATE outbound_messages SET state = 'queued', locked_until = NULL WHERE state = 'sending' AND locked_until < $1")
                .bind(now)
                .execute(pool)
                .await?;
            Ok(r.rows_affected())
        })
    }

    /// Queues a failed message again.
    pub async fn retry_outbound(
        &self,
        conversation_id: &str,
        id: &str,
    ) -> Result<OutboundMessageRow, StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query(
                "SELECT state FROM outbound_messages WHERE id = $1 AND conversation_id = $2",
            )
            .bind(id)
            .bind(conversation_id)
            .fetch_optional(pool)
            .await?;
            let Some(r) = r else {
                return Err(StoreError::NotFound("message"));
            };
            let state: String = r.try_get(0)?;
            if state != "failed" {
                return Err(StoreError::conflict(
                    "not_failed",
                    format!("only a failed message can be retried; this one is {state}"),
                ));
            }
            let mut tx = begin_write!(pool, pg)?;
            sqlx::query("UPDATE outbound_messages SET state = 'queued', next_attempt_at = $1, attempts = 0, updated_at = $1 WHERE id = $2 AND state = 'failed'")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            announce!(tx, id, now);
            tx.commit().await?;
        });
        self.get_outbound(id)
            .await?
            .ok_or(StoreError::NotFound("message"))
    }

    pub async fn list_conversation_outbound(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<OutboundMessageRow>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(format!(
                "SELECT {OUT_COLS} FROM outbound_messages WHERE conversation_id = "
            ));
            qb.push_bind(conversation_id)
                .push(" ORDER BY created_at, id LIMIT 500");
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                out.push(outbound_from_row!(&r));
            }
            Ok(out)
        })
    }
}

/// Applies a provider status update inside the pipeline's transaction; returns whether a
/// message moved.
macro_rules! apply_status {
    ($tx:expr, $connector:expr, $message_id:expr, $status:expr, $reason:expr, $now:expr) => {{
        let allowed = crate::store::outbound::allowed_from($status);
        if allowed.is_empty() {
            false
        } else {
            let mut qb = sqlx::QueryBuilder::new("UPDATE outbound_messages SET state = ");
            qb.push_bind($status);
            if let Some(reason) = $reason {
                qb.push(", error = ").push_bind(reason);
            }
            qb.push(", updated_at = ")
                .push_bind($now)
                .push(" WHERE connector_id = ")
                .push_bind($connector)
                .push(" AND provider_message_id = ")
                .push_bind($message_id)
                .push(" AND state IN (");
            let mut sep = qb.separated(", ");
            for s in allowed {
                sep.push_bind(*s);
            }
            qb.push(") RETURNING id");
            let moved: Vec<String> = qb
                .build()
                .fetch_all(&mut *$tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
            for id in &moved {
                crate::store::outbound::announce!($tx, id.as_str(), $now);
            }
            !moved.is_empty()
        }
    }};
}
pub(crate) use apply_status;

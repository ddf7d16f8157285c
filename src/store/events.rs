//! The event log: every change the outside world may want to hear about, in order.

use serde::Serialize;
use sqlx::Row;

use super::error::StoreError;
use super::model::rfc3339;
use super::{with_pool, Pools, Store};

/// On PostgreSQL a sequence value is taken before its transaction commits, so with several
/// writers (nodes, or the sender beside the pipeline) a smaller event id can become visible
/// after a larger one. Readers that resume by id (webhook fan-out, SSE streams) stop at a gap
/// in the ids until the event after the gap is this old (a rolled-back insert leaves a gap
/// forever).
pub(crate) const PG_GAP_GRACE_MS: i64 = 5_000;

/// The kinds of event, as they appear on the SSE stream and in webhook subscriptions.
pub const EVENT_KINDS: &[&str] = &[
    "message.created",
    "conversation.updated",
    "outbound.status",
    "customer.merged",
    "customer.unmerged",
];

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EventRecord {
    pub id: i64,
    pub kind: String,
    pub conversation_id: Option<String>,
    pub customer_id: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: String,
}

/// Appends an event inside the caller's transaction.
macro_rules! append_event {
    ($tx:expr, $kind:expr, $conversation:expr, $customer:expr, $payload:expr, $now:expr) => {
        sqlx::query("INSERT INTO events (kind, conversation_id, customer_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind($kind)
            .bind($conversation)
            .bind($customer)
            .bind($payload.to_string())
            .bind($now)
            .execute(&mut *$tx)
            .await?
    };
}
pub(crate) use append_event;

impl Store {
    /// Events after `after`, oldest first, for a reader that resumes by id (an SSE stream):
    /// on PostgreSQL it stops before a gap in the ids whose next event is younger than
    /// `PG_GAP_GRACE_MS`, since the missing id may still commit.
    pub async fn events_after_settled(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut evs = self.events_after_raw(after, limit).await?;
        if self.backend() == super::Backend::Postgres {
            let now = super::now_ms();
            let mut last = after;
            let keep = evs
                .iter()
                .take_while(|(e, created)| {
                    let ok = e.id == last + 1 || *created <= now - PG_GAP_GRACE_MS;
                    last = e.id;
                    ok
                })
                .count();
            evs.truncate(keep);
        }
        Ok(evs.into_iter().map(|(e, _)| e).collect())
    }

    /// Events after `after`, oldest first.
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        Ok(self
            .events_after_raw(after, limit)
            .await?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    /// Events after `after` with their `created_at` in unix ms.
    async fn events_after_raw(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(EventRecord, i64)>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let rows = sqlx::query(
                "SELECT id, kind, conversation_id, customer_id, payload, created_at FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let payload: String = r.try_get(4)?;
                let created: i64 = r.try_get(5)?;
                out.push((
                    EventRecord {
                        id: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        conversation_id: r.try_get(2)?,
                        customer_id: r.try_get(3)?,
                        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                        created_at: rfc3339(created),
                    },
                    created,
                ));
            }
            Ok(out)
        })
    }

    /// The newest event id (0 when there is none): where a new live subscriber starts.
    pub async fn latest_event_id(&self) -> Result<i64, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(pool)
                .await?;
            Ok(r.try_get::<i64, _>(0)?)
        })
    }

    /// The oldest event id still kept (0 when there is none).
    pub async fn oldest_event_id(&self) -> Result<i64, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query("SELECT COALESCE(MIN(id), 0) FROM events")
                .fetch_one(pool)
                .await?;
            Ok(r.try_get::<i64, _>(0)?)
        })
    }

    /// Drops events created before `before` (unix ms).
    pub async fn prune_events(&self, before: i64) -> Result<u64, StoreError> {
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query("DELETE FROM events WHERE created_at < $1")
                .bind(before)
                .execute(pool)
                .await?;
            Ok(r.rows_affected())
        })
    }
}

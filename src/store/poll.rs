//! Poll cursors: where each polling connector resumes. A page of polled events and the cursor
//! after it are written in one transaction, so a restart neither skips nor repeats a page.

use sqlx::Row;

use super::{begin_write, insert_raw_in_tx, now_ms, with_pool, Pools, Store};
use super::{InsertOutcome, NewRawEvent};

impl Store {
    /// The stored cursor of `connector_id`; `None` before its first page.
    pub async fn poll_cursor(&self, connector_id: &str) -> anyhow::Result<Option<String>> {
        with_pool!(self, write, |pool, pg| {
            // The write side: on SQLite it is the connection that wrote the cursor, so a
            // poller always reads its own last write.
            let row = sqlx::query("SELECT cursor FROM poll_cursors WHERE connector_id = $1")
                .bind(connector_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
        })
    }

    /// Stores one polled page like `insert_raw_events` (raw events + normalise jobs, duplicates
    /// ignored) and, in the same transaction, moves the cursor to `next_cursor` (left as it
    /// is when `None`).
    pub async fn insert_polled(
        &self,
        connector_id: &str,
        events: &[NewRawEvent],
        next_cursor: Option<&str>,
    ) -> anyhow::Result<Vec<InsertOutcome>> {
        let outcomes;
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            outcomes = insert_raw_in_tx!(tx, events);
            if let Some(cursor) = next_cursor {
                sqlx::query(
                    "INSERT INTO poll_cursors (connector_id, cursor, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (connector_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                )
                .bind(connector_id)
                .bind(cursor)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(outcomes)
    }
}

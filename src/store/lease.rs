//! Poll leases: one node polls a connector at a time (`poll_leases`, migration 0012).
//!
//! Times are the database's clock, not the node's, so nodes whose clocks disagree still agree
//! on when a lease has expired. A lease changes owner only once it has expired (or its owner
//! gave it up), and every change of owner raises its `fence`; the write of a polled page checks
//! owner and fence in its own transaction (`Store::insert_polled_fenced`).

use sqlx::Row;

use super::{begin_write, insert_raw_in_tx, with_pool, Pools, Store};
use super::{InsertOutcome, NewRawEvent};

/// The database's clock in unix ms, as an SQL expression of each dialect.
fn db_now(pg: bool) -> &'static str {
    if pg {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    } else {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
    }
}

/// A held lease: who holds it and at which fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFence {
    pub owner: String,
    pub fence: i64,
}

/// A lease as stored (for `GET /api/v1/connectors` and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub name: String,
    pub owner: String,
    pub fence: i64,
    /// Unix ms, database clock.
    pub expires_at: i64,
    pub acquired_at: i64,
    /// The database's clock when this was read, so a reader can tell an expired lease.
    pub now: i64,
}

/// The page was not written: the lease is no longer ours (another node took it over, or we
/// gave it up). Nothing of the page was committed.
#[derive(Debug, thiserror::Error)]
#[error("poll lease `{name}` is no longer held by this node; the page was not stored")]
pub struct LeaseLost {
    pub name: String,
}

impl Store {
    /// Takes the lease `name` for `owner` for `ttl_ms` when it is free, expired or already
    /// `owner`'s — or in any case when `force` (SQLite, where the node lock already makes this
    /// the only node, so a crashed predecessor's lease need not run out first). Returns the
    /// fence on success, `None` while another node holds it.
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        force: bool,
    ) -> anyhow::Result<Option<i64>> {
        with_pool!(self, write, |pool, pg| {
            let now = db_now(pg);
            // On PostgreSQL a concurrent taker waits for the row lock, then re-checks the
            // WHERE on the new row: of two nodes racing for an expired lease, one wins.
            let sql = format!(
                "INSERT INTO poll_leases (name, owner, fence, expires_at, acquired_at, renewed_at) \
                 VALUES ($1, $2, 1, {now} + $3, {now}, {now}) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, fence = poll_leases.fence + 1, \
                 expires_at = excluded.expires_at, acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at \
                 WHERE $4 OR poll_leases.expires_at < {now} OR poll_leases.owner = excluded.owner \
                 RETURNING fence"
            );
            let row = sqlx::query(&sql)
                .bind(name)
                .bind(owner)
                .bind(ttl_ms)
                .bind(force)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
        })
    }

    /// Extends a held lease by `ttl_ms` from now. `false` when it is no longer ours.
    pub async fn renew_lease(
        &self,
        name: &str,
        held: &LeaseFence,
        ttl_ms: i64,
    ) -> anyhow::Result<bool> {
        with_pool!(self, write, |pool, pg| {
            let now = db_now(pg);
            let sql = format!(
                "UPDATE poll_leases SET expires_at = {now} + $1, renewed_at = {now} \
                 WHERE name = $2 AND owner = $3 AND fence = $4"
            );
            let r = sqlx::query(&sql)
                .bind(ttl_ms)
                .bind(name)
                .bind(&held.owner)
                .bind(held.fence)
                .execute(pool)
                .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    /// Gives a held lease up (a node stopping): another node may take it at once.
    pub async fn release_lease(&self, name: &str, held: &LeaseFence) -> anyhow::Result<()> {
        with_pool!(self, write, |pool, pg| {
            sqlx::query(
                "UPDATE poll_leases SET expires_at = 0 WHERE name = $1 AND owner = $2 AND fence = $3",
            )
            .bind(name)
            .bind(&held.owner)
            .bind(held.fence)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Every stored lease, by name.
    pub async fn leases(&self) -> anyhow::Result<Vec<LeaseRecord>> {
        with_pool!(self, read, |pool, pg| {
            let sql = format!(
                "SELECT name, owner, fence, expires_at, acquired_at, {} FROM poll_leases ORDER BY name",
                db_now(pg)
            );
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(LeaseRecord {
                        name: r.try_get(0)?,
                        owner: r.try_get(1)?,
                        fence: r.try_get(2)?,
                        expires_at: r.try_get(3)?,
                        acquired_at: r.try_get(4)?,
                        now: r.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// `insert_polled` under a lease: in the same transaction, checks that `held` still holds
    /// the lease named `connector_id` (locking its row, so a takeover waits for this commit or
    /// this commit sees the takeover). When it does not, nothing is written and the error is
    /// `LeaseLost`.
    pub async fn insert_polled_fenced(
        &self,
        connector_id: &str,
        events: &[NewRawEvent],
        next_cursor: Option<&str>,
        held: &LeaseFence,
    ) -> anyhow::Result<Vec<InsertOutcome>> {
        let outcomes;
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let lock = if pg { " FOR UPDATE" } else { "" };
            let ours = sqlx::query(&format!(
                "SELECT 1 FROM poll_leases WHERE name = $1 AND owner = $2 AND fence = $3{lock}"
            ))
            .bind(connector_id)
            .bind(&held.owner)
            .bind(held.fence)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if !ours {
                tx.rollback().await?;
                return Err(LeaseLost {
                    name: connector_id.to_string(),
                }
                .into());
            }
            outcomes = insert_raw_in_tx!(tx, events);
            if let Some(cursor) = next_cursor {
                sqlx::query(
                    "INSERT INTO poll_cursors (connector_id, cursor, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (connector_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                )
                .bind(connector_id)
                .bind(cursor)
                .bind(super::now_ms())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(outcomes)
    }
}

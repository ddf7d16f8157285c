//! Embedded migrations, one folder per backend, applied in order and recorded in
//! `schema_migrations`. Applied by `switchboard migrate` and at `serve` start.

use sqlx::Row;

use super::{now_ms, with_pool, Pools, Store};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "spine",
        sqlite: include_str!("../../migrations/sqlite/0001_spine.sql"),
        postgres: include_str!("../../migrations/postgres/0001_spine.sql"),
    },
    Migration {
        version: 2,
        name: "inbox",
        sqlite: include_str!("../../migrations/sqlite/0002_inbox.sql"),
        postgres: include_str!("../../migrations/postgres/0002_inbox.sql"),
    },
    Migration {
        version: 3,
        name: "search",
        sqlite: include_str!("../../migrations/sqlite/0003_search.sql"),
        postgres: include_str!("../../migrations/postgres/0003_search.sql"),
    },
    Migration {
        version: 5,
        name: "events",
        sqlite: include_str!("../../migrations/sqlite/0005_events.sql"),
        postgres: include_str!("../../migrations/postgres/0005_events.sql"),
    },
    Migration {
        version: 6,
        name: "webhooks",
        sqlite: include_str!("../../migrations/sqlite/0006_webhooks.sql"),
        postgres: include_str!("../../migrations/postgres/0006_webhooks.sql"),
    },
    Migration {
        version: 7,
        name: "poll",
        sqlite: include_str!("../../migrations/sqlite/0007_poll.sql"),
        postgres: include_str!("../../migrations/postgres/0007_poll.sql"),
    },
    Migration {
        version: 8,
        name: "threads",
        sqlite: include_str!("../../migrations/sqlite/0008_threads.sql"),
        postgres: include_str!("../../migrations/postgres/0008_threads.sql"),
    },
    Migration {
        version: 9,
        name: "entities",
        sqlite: include_str!("../../migrations/sqlite/0009_entities.sql"),
        postgres: include_str!("../../migrations/postgres/0009_entities.sql"),
    },
    Migration {
        version: 10,
        name: "identity",
        sqlite: include_str!("../../migrations/sqlite/0010_identity.sql"),
        postgres: include_str!("../../migrations/postgres/0010_identity.sql"),
    },
    Migration {
        version: 11,
        name: "suggestions",
        sqlite: include_str!("../../migrations/sqlite/0011_suggestions.sql"),
        postgres: include_str!("../../migrations/postgres/0011_suggestions.sql"),
    },
    Migration {
        version: 12,
        name: "leases",
        sqlite: include_str!("../../migrations/sqlite/0012_leases.sql"),
        postgres: include_str!("../../migrations/postgres/0012_leases.sql"),
    },
    Migration {
        version: 13,
        name: "enqueue",
        sqlite: include_str!("../../migrations/sqlite/0013_enqueue.sql"),
        postgres: include_str!("../../migrations/postgres/0013_enqueue.sql"),
    },
    Migration {
        version: 14,
        name: "identity_reads",
        sqlite: include_str!("../../migrations/sqlite/0014_identity_reads.sql"),
        postgres: include_str!("../../migrations/postgres/0014_identity_reads.sql"),
    },
    Migration {
        version: 15,
        name: "suggest_backfill",
        sqlite: include_str!("../../migrations/sqlite/0015_suggest_backfill.sql"),
        postgres: include_str!("../../migrations/postgres/0015_suggest_backfill.sql"),
    },
    Migration {
        version: 16,
        name: "conversation_list",
        sqlite: include_str!("../../migrations/sqlite/0016_conversation_list.sql"),
        postgres: include_str!("../../migrations/postgres/0016_conversation_list.sql"),
    },
];

impl Store {
    /// Applies every migration not yet applied; returns the versions applied now.
    pub async fn migrate(&self) -> anyhow::Result<Vec<i64>> {
        let mut applied_now = Vec::new();
        with_pool!(self, write, |pool, pg| {
            let mut conn = pool.acquire().await?;
            if !pg {
                // SQLite's documented way to rebuild a table others refer to (0014): foreign
                // keys off outside the transaction, checked by `foreign_key_check` before the
                // commit, on again after. A connection that fails half-way is closed rather
                // than returned to the pool with its checks off.
                sqlx::query("PRAGMA foreign_keys = OFF")
                    .execute(&mut *conn)
                    .await?;
            }
            let result = async {
                let mut tx = sqlx::Connection::begin_with(
                    &mut *conn,
                    if pg { "BEGIN" } else { "BEGIN IMMEDIATE" },
                )
                .await?;
                if pg {
                    // Several nodes starting at once: one migrates, the others wait and see it done.
                    sqlx::query("SELECT pg_advisory_xact_lock(7270001)")
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                )
                .execute(&mut *tx)
                .await?;
                let done: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<_, _>>()?;
                for m in MIGRATIONS {
                    if done.contains(&m.version) {
                        continue;
                    }
                    let sql = if pg { m.postgres } else { m.sqlite };
                    sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(|e| {
                        anyhow::anyhow!("migration {} ({}) failed: {e}", m.version, m.name)
                    })?;
                    sqlx::query(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    )
                    .bind(m.version)
                    .bind(m.name)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                    applied_now.push(m.version);
                }
                if !pg && !applied_now.is_empty() {
                    // Once for all of this run's migrations (it reads every referencing row).
                    let broken = sqlx::query("PRAGMA foreign_key_check")
                        .fetch_all(&mut *tx)
                        .await?;
                    anyhow::ensure!(
                        broken.is_empty(),
                        "migrations {applied_now:?} left {} rows whose foreign key points nowhere",
                        broken.len()
                    );
                }
                tx.commit().await?;
                anyhow::Ok(())
            }
            .await;
            if !pg {
                match &result {
                    Ok(()) => {
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Err(_) => conn.close_on_drop(),
                }
            }
            result?;
        });
        Ok(applied_now)
    }
}

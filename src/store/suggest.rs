//! Storage of the merge suggester (src/suggest): the customers to look at again, what the
//! scorer compares per customer, blocking keys, suggestions, and pairs never to suggest.
//!
//! Pairs are stored once, ordered (`customer_a < customer_b`). A suggestion refers to the
//! customers it was made for; when either is merged into another customer later, reads
//! follow the alias (`canonical_id`), and a suggestion whose two sides became one customer
//! is closed.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::{QueryBuilder, Row};

use super::error::StoreError;
use super::model::rfc3339;
use super::{begin_write, now_ms, with_pool, Pools, Store, CHUNK};
use crate::suggest::score::{Features, Reason};

/// Marks customers for the suggester inside the caller's transaction (one statement per
/// chunk). A customer marked again keeps one row, with the latest time.
macro_rules! mark_dirty {
    ($tx:expr, $ids:expr, $now:expr) => {{
        let ids: Vec<&str> = $ids;
        for chunk in ids.chunks($crate::store::CHUNK) {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO suggest_dirty (customer_id, since) ");
            qb.push_values(chunk, |mut b, id| {
                b.push_bind(*id).push_bind($now);
            });
            qb.push(" ON CONFLICT (customer_id) DO UPDATE SET since = excluded.since");
            qb.build().execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use mark_dirty;

/// Closes open suggestions whose two customers are one customer now (merged by other means).
macro_rules! close_joined {
    ($tx:expr, $now:expr) => {{
        sqlx::query(
            "UPDATE merge_suggestions SET status = 'closed', decided_by = 'system', decided_at = $1, updated_at = $1 \
             WHERE status = 'open' AND (SELECT canonical_id FROM customers WHERE id = merge_suggestions.customer_a) \
                 = (SELECT canonical_id FROM customers WHERE id = merge_suggestions.customer_b)",
        )
        .bind($now)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
    }};
}
pub(crate) use close_joined;

/// An ordered pair.
pub fn pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// What the suggester reads about one canonical customer to compute its features.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Display names, the canonical customer's first.
    pub names: Vec<String>,
    /// Phone identity values (E.164), most recently seen first.
    pub phones: Vec<String>,
    /// Profile and order bodies (timeline JSON), most recently updated first, at most 10.
    pub documents: Vec<serde_json::Value>,
}

/// A customer's features and blocking keys to store; `None` removes its rows.
pub type FeatureRow = (String, Option<(Features, Vec<String>)>);

/// A scored pair to offer.
#[derive(Debug, Clone)]
pub struct NewSuggestion {
    pub a: String,
    pub b: String,
    pub score: f64,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MergeSuggestion {
    pub id: String,
    /// The two customers (their current canonical ids: a suggestion follows merges).
    pub customer_id: String,
    pub other_customer_id: String,
    /// The customers the suggestion was made for.
    pub suggested_ids: [String; 2],
    /// log2 likelihood ratio: how much likelier the evidence is for one person than two.
    pub score: f64,
    pub reasons: Vec<Reason>,
    /// `open`, `accepted`, `rejected`, or `closed` (the two became one customer otherwise).
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// The merge an accepted suggestion made.
    pub merge_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SuggestionFilter {
    pub status: Option<String>,
    pub min_score: Option<f64>,
    /// Suggestions involving this canonical customer (or one of its aliases).
    pub customer: Option<String>,
    /// Keyset: (score × 1000, id) of the last item of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

const SUGGESTION_COLS: &str = "s.id, s.customer_a, s.customer_b, ca.canonical_id, cb.canonical_id, s.score_milli, s.reasons, s.status, s.created_at, s.updated_at, s.decided_by, s.decided_at, s.merge_id";

macro_rules! suggestion_from_row {
    ($r:expr) => {{
        let r = $r;
        let reasons: String = r.try_get(6)?;
        let milli: i64 = r.try_get(5)?;
        MergeSuggestion {
            id: r.try_get(0)?,
            suggested_ids: [r.try_get(1)?, r.try_get(2)?],
            customer_id: r.try_get(3)?,
            other_customer_id: r.try_get(4)?,
            score: milli as f64 / 1000.0,
            reasons: serde_json::from_str(&reasons).unwrap_or_default(),
            status: r.try_get(7)?,
            created_at: rfc3339(r.try_get(8)?),
            updated_at: rfc3339(r.try_get(9)?),
            decided_by: r.try_get(10)?,
            decided_at: r.try_get::<Option<i64>, _>(11)?.map(rfc3339),
            merge_id: r.try_get(12)?,
        }
    }};
}

/// Appends `(…)` with one bind per id.
macro_rules! in_list {
    ($qb:expr, $ids:expr) => {{
        $qb.push("(");
        let mut sep = $qb.separated(", ");
        for id in $ids {
            sep.push_bind(id.as_str());
        }
        $qb.push(")");
    }};
}
pub(crate) use in_list;

impl Store {
    /// Marks customers for the suggester (outside the pipeline: tests, backfills).
    pub async fn mark_suggest_dirty(&self, ids: &[String]) -> anyhow::Result<()> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let unique: std::collections::BTreeSet<&str> = ids.iter().map(String::as_str).collect();
            mark_dirty!(tx, unique.into_iter().collect(), now);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Up to `limit` customers to look at, oldest mark first, with their mark's time.
    pub async fn suggest_dirty(&self, limit: i64) -> anyhow::Result<Vec<(String, i64)>> {
        with_pool!(self, read, |pool, pg| {
            let rows = sqlx::query(
                "SELECT customer_id, since FROM suggest_dirty ORDER BY since, customer_id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    /// For each id: its canonical customer (`None` when the id is unknown).
    pub async fn canonical_map(&self, ids: &[String]) -> anyhow::Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            with_pool!(self, read, |pool, pg| {
                let mut qb =
                    QueryBuilder::new("SELECT id, canonical_id FROM customers WHERE id IN ");
                in_list!(qb, chunk);
                for r in qb.build().fetch_all(pool).await? {
                    out.insert(r.try_get(0)?, r.try_get(1)?);
                }
            });
        }
        Ok(out)
    }

    /// What the scorer needs of each canonical customer: names, phones, profiles, orders.
    pub async fn suggest_sources(
        &self,
        canonical: &[String],
    ) -> anyhow::Result<HashMap<String, Sources>> {
        let mut out: HashMap<String, Sources> = HashMap::new();
        for chunk in canonical.chunks(CHUNK) {
            with_pool!(self, read, |pool, pg| {
                let mut qb = QueryBuilder::new(
                    "SELECT canonical_id, display_name FROM customers WHERE display_name IS NOT NULL AND canonical_id IN ",
                );
                in_list!(qb, chunk);
                qb.push(" ORDER BY CASE WHEN id = canonical_id THEN 0 ELSE 1 END, created_at");
                for r in qb.build().fetch_all(pool).await? {
                    let c: String = r.try_get(0)?;
                    let n: String = r.try_get(1)?;
                    out.entry(c).or_default().names.push(n);
                }
                let mut qb = QueryBuilder::new(
                    "SELECT c.canonical_id, i.value FROM identities i JOIN customers c ON c.id = i.customer_id \
                     WHERE i.kind = 'phone' AND c.canonical_id IN ",
                );
                in_list!(qb, chunk);
                qb.push(" ORDER BY i.last_seen DESC");
                for r in qb.build().fetch_all(pool).await? {
                    let c: String = r.try_get(0)?;
                    let v: String = r.try_get(1)?;
                    let s = out.entry(c).or_default();
                    if !s.phones.contains(&v) {
                        s.phones.push(v);
                    }
                }
                // The latest few documents per customer: a customer with thousands of orders
                // is described by its recent ones.
                let mut qb = QueryBuilder::new(
                    "SELECT canonical_id, body FROM (SELECT c.canonical_id, e.body, \
                     ROW_NUMBER() OVER (PARTITION BY c.canonical_id ORDER BY CASE WHEN e.kind = 'profile' THEN 0 ELSE 1 END, e.updated_at DESC) AS n \
                     FROM entities e JOIN customers c ON c.id = e.customer_id \
                     WHERE e.kind IN ('profile', 'order') AND c.canonical_id IN ",
                );
                in_list!(qb, chunk);
                qb.push(") t WHERE n <= 10");
                for r in qb.build().fetch_all(pool).await? {
                    let c: String = r.try_get(0)?;
                    let body: String = r.try_get(1)?;
                    if let Ok(v) = serde_json::from_str(&body) {
                        out.entry(c).or_default().documents.push(v);
                    }
                }
            });
        }
        Ok(out)
    }

    /// The stored features of customers.
    pub async fn suggest_features(
        &self,
        ids: &[String],
    ) -> anyhow::Result<HashMap<String, Features>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            with_pool!(self, read, |pool, pg| {
                let mut qb = QueryBuilder::new(
                    "SELECT customer_id, features FROM suggest_features WHERE customer_id IN ",
                );
                in_list!(qb, chunk);
                for r in qb.build().fetch_all(pool).await? {
                    let f: String = r.try_get(1)?;
                    if let Ok(f) = serde_json::from_str(&f) {
                        out.insert(r.try_get(0)?, f);
                    }
                }
            });
        }
        Ok(out)
    }

    /// Writes new features and blocking keys (`None`: the customer is gone or merged away,
    /// its rows are removed) and clears the marks that were read at `since` or earlier.
    pub async fn suggest_save_features(
        &self,
        features: &[FeatureRow],
        done: &[(String, i64)],
    ) -> anyhow::Result<()> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let ids: Vec<String> = features.iter().map(|(id, _)| id.clone()).collect();
            for chunk in ids.chunks(CHUNK) {
                for table in ["suggest_blocks", "suggest_features"] {
                    let mut qb =
                        QueryBuilder::new(format!("DELETE FROM {table} WHERE customer_id IN "));
                    in_list!(qb, chunk);
                    qb.build().execute(&mut *tx).await?;
                }
            }
            let rows: Vec<(&String, String)> = features
                .iter()
                .filter_map(|(id, f)| {
                    f.as_ref()
                        .map(|(f, _)| (id, serde_json::to_string(f).unwrap_or_default()))
                })
                .collect();
            for chunk in rows.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO suggest_features (customer_id, features, updated_at) ",
                );
                qb.push_values(chunk, |mut b, (id, f)| {
                    b.push_bind(id.as_str())
                        .push_bind(f.as_str())
                        .push_bind(now);
                });
                qb.build().execute(&mut *tx).await?;
            }
            let keys: Vec<(&String, &String)> = features
                .iter()
                .filter_map(|(id, f)| f.as_ref().map(|(_, k)| (id, k)))
                .flat_map(|(id, ks)| ks.iter().map(move |k| (id, k)))
                .collect();
            for chunk in keys.chunks(CHUNK) {
                let mut qb =
                    QueryBuilder::new("INSERT INTO suggest_blocks (block_key, customer_id) ");
                qb.push_values(chunk, |mut b, (id, k)| {
                    b.push_bind(k.as_str()).push_bind(id.as_str());
                });
                qb.push(" ON CONFLICT DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            for (id, since) in done {
                sqlx::query("DELETE FROM suggest_dirty WHERE customer_id = $1 AND since <= $2")
                    .bind(id)
                    .bind(*since)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The canonical customers sharing each key, or `None` for a key shared by more than
    /// `max_block` customers (too common to say anything).
    pub async fn suggest_blocks(
        &self,
        keys: &[String],
        max_block: usize,
    ) -> anyhow::Result<HashMap<String, Option<Vec<String>>>> {
        let mut out = HashMap::new();
        for k in keys {
            with_pool!(self, read, |pool, pg| {
                let rows = sqlx::query(
                    "SELECT b.customer_id FROM suggest_blocks b JOIN customers c ON c.id = b.customer_id \
                     WHERE b.block_key = $1 AND c.canonical_id = c.id LIMIT $2",
                )
                .bind(k)
                .bind(max_block as i64 + 1)
                .fetch_all(pool)
                .await?;
                let ids: Vec<String> = rows
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                out.insert(k.clone(), (ids.len() <= max_block).then_some(ids));
            });
        }
        Ok(out)
    }

    /// Pairs among `ids` that must not be suggested: rejected, unmerged, or already decided.
    pub async fn suggest_excluded(
        &self,
        ids: &[String],
    ) -> anyhow::Result<HashSet<(String, String)>> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(CHUNK / 2) {
            with_pool!(self, read, |pool, pg| {
                for sql in [
                    "SELECT customer_a, customer_b FROM do_not_merge WHERE customer_a IN ",
                    "SELECT customer_a, customer_b FROM merge_suggestions WHERE status <> 'open' AND customer_a IN ",
                ] {
                    let mut qb = QueryBuilder::new(sql);
                    in_list!(qb, chunk);
                    qb.push(" OR customer_b IN ");
                    in_list!(qb, chunk);
                    for r in qb.build().fetch_all(pool).await? {
                        out.insert((r.try_get(0)?, r.try_get(1)?));
                    }
                }
            });
        }
        Ok(out)
    }

    /// Offers pairs (updating the score of a pair still open; a decided pair stays decided)
    /// and closes open suggestions whose customers became one. Returns how many are new.
    pub async fn suggest_upsert(&self, items: &[NewSuggestion]) -> anyhow::Result<u64> {
        let now = now_ms();
        let mut created = 0;
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            for chunk in items.chunks(CHUNK / 2) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO merge_suggestions (id, customer_a, customer_b, score_milli, reasons, status, created_at, updated_at) ",
                );
                qb.push_values(chunk, |mut b, s| {
                    let (a, c) = pair(&s.a, &s.b);
                    b.push_bind(uuid::Uuid::now_v7().to_string())
                        .push_bind(a)
                        .push_bind(c)
                        .push_bind((s.score * 1000.0).round() as i64)
                        .push_bind(serde_json::to_string(&s.reasons).unwrap_or_default())
                        .push_bind("open")
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (customer_a, customer_b) DO UPDATE SET score_milli = excluded.score_milli, \
                     reasons = excluded.reasons, updated_at = excluded.updated_at \
                     WHERE merge_suggestions.status = 'open' RETURNING created_at",
                );
                for r in qb.build().fetch_all(&mut *tx).await? {
                    if r.try_get::<i64, _>(0)? == now {
                        created += 1;
                    }
                }
            }
            close_joined!(tx, now);
            tx.commit().await?;
        });
        Ok(created)
    }

    /// One page of suggestions, highest score first.
    pub async fn list_suggestions(
        &self,
        f: &SuggestionFilter,
    ) -> anyhow::Result<Vec<MergeSuggestion>> {
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(format!(
                "SELECT {SUGGESTION_COLS} FROM merge_suggestions s \
                 JOIN customers ca ON ca.id = s.customer_a JOIN customers cb ON cb.id = s.customer_b WHERE 1 = 1"
            ));
            if let Some(st) = &f.status {
                qb.push(" AND s.status = ").push_bind(st.as_str());
            }
            if let Some(min) = f.min_score {
                qb.push(" AND s.score_milli >= ")
                    .push_bind((min * 1000.0).ceil() as i64);
            }
            if let Some(c) = &f.customer {
                qb.push(" AND (ca.canonical_id = ")
                    .push_bind(c.as_str())
                    .push(" OR cb.canonical_id = ")
                    .push_bind(c.as_str())
                    .push(")");
            }
            if let Some((score, id)) = &f.after {
                qb.push(" AND (s.score_milli < ")
                    .push_bind(*score)
                    .push(" OR (s.score_milli = ")
                    .push_bind(*score)
                    .push(" AND s.id < ")
                    .push_bind(id.as_str())
                    .push("))");
            }
            qb.push(" ORDER BY s.score_milli DESC, s.id DESC LIMIT ")
                .push_bind(f.limit);
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                out.push(suggestion_from_row!(&r));
            }
            Ok(out)
        })
    }

    pub async fn get_suggestion(&self, id: &str) -> anyhow::Result<Option<MergeSuggestion>> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(&format!(
                "SELECT {SUGGESTION_COLS} FROM merge_suggestions s \
                 JOIN customers ca ON ca.id = s.customer_a JOIN customers cb ON cb.id = s.customer_b WHERE s.id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(match r {
                Some(r) => Some(suggestion_from_row!(&r)),
                None => None,
            })
        })
    }

    /// Rejects an open suggestion: the pair is remembered and never suggested again.
    pub async fn reject_suggestion(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<MergeSuggestion, StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let Some(r) = sqlx::query(
                "SELECT customer_a, customer_b, status FROM merge_suggestions WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Err(StoreError::NotFound("merge suggestion"));
            };
            let (a, b, status): (String, String, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if status != "open" {
                return Err(StoreError::conflict(
                    "already_decided",
                    format!("this suggestion is already {status}"),
                ));
            }
            sqlx::query(
                "UPDATE merge_suggestions SET status = 'rejected', decided_by = $1, decided_at = $2, updated_at = $2 WHERE id = $3",
            )
            .bind(actor)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO do_not_merge (customer_a, customer_b, source, ref_id, actor, created_at) \
                 VALUES ($1, $2, 'rejected', $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&a)
            .bind(&b)
            .bind(id)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.get_suggestion(id)
            .await?
            .ok_or(StoreError::NotFound("merge suggestion"))
    }

    /// How many pairs were offered with at least each score, for metrics and the harness.
    pub async fn suggestion_pairs(&self) -> anyhow::Result<Vec<(String, String, f64, String)>> {
        with_pool!(self, read, |pool, pg| {
            let rows = sqlx::query(
                "SELECT customer_a, customer_b, score_milli, status FROM merge_suggestions",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get::<i64, _>(2)? as f64 / 1000.0,
                        r.try_get(3)?,
                    ))
                })
                .collect()
        })
    }
}

//! Manual merge and unmerge of customers, and their audit trail.
//!
//! A merge is an alias: the merged customer and its own aliases point their `canonical_id`
//! at the survivor, and the merge row records exactly which records moved. Conversations,
//! timeline entries and identities keep their original `customer_id`, so they follow the
//! alias both ways without a row being rewritten: merge and unmerge cost one indexed update
//! of the customer records, however long the timeline (not yet measured by a bench).
//! The pure model of these two statements is `pipeline::identity::Aliases`, property-tested.

use sqlx::Row;

use super::error::StoreError;
use super::events::append_event;
use super::model::{rfc3339, MergeRecord};
use super::suggest::{close_joined, mark_dirty};
use super::{begin_write, now_ms, with_pool, Pools, Store};

pub(crate) const MERGE_COLS: &str = "id, survivor_id, merged_id, actor, reason, evidence, raw_event_id, created_at, moved_ids, undone_at, undone_by, undo_reason";

macro_rules! merge_from_row {
    ($r:expr) => {{
        let r = $r;
        let evidence: String = r.try_get(5)?;
        let moved: String = r.try_get(8)?;
        MergeRecord {
            id: r.try_get(0)?,
            survivor_id: r.try_get(1)?,
            merged_id: r.try_get(2)?,
            actor: r.try_get(3)?,
            reason: r.try_get(4)?,
            evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::Null),
            raw_event_id: r.try_get(6)?,
            created_at: rfc3339(r.try_get(7)?),
            moved_ids: serde_json::from_str(&moved).unwrap_or_default(),
            undone_at: r.try_get::<Option<i64>, _>(9)?.map(rfc3339),
            undone_by: r.try_get(10)?,
            undo_reason: r.try_get(11)?,
        }
    }};
}
pub(crate) use merge_from_row;

/// Every merge that touched a canonical customer's records, oldest first.
macro_rules! merges_of {
    ($exec:expr, $canonical:expr) => {{
        let mut merges = Vec::new();
        for r in sqlx::query(&format!(
            "SELECT {} FROM customer_merges \
             WHERE survivor_id IN (SELECT id FROM customers WHERE canonical_id = $1) \
                OR merged_id IN (SELECT id FROM customers WHERE canonical_id = $1) ORDER BY created_at, id",
            $crate::store::identity::MERGE_COLS
        ))
        .bind($canonical)
        .fetch_all($exec)
        .await?
        {
            merges.push($crate::store::identity::merge_from_row!(&r));
        }
        merges
    }};
}
pub(crate) use merges_of;

impl Store {
    /// Merges `other`'s customer into `survivor`'s (either may be an alias; both resolve to
    /// their canonical customer). The agent chose the survivor, so no guard applies.
    pub async fn merge_customers(
        &self,
        survivor: &str,
        other: &str,
        actor: &str,
        reason: &str,
    ) -> Result<MergeRecord, StoreError> {
        let evidence = serde_json::json!({ "manual": true, "requested": [survivor, other] });
        self.merge_customers_with(survivor, other, actor, reason, evidence, None)
            .await
    }

    /// Accepts an open merge suggestion: merges its two customers (following any alias)
    /// with the suggestion as the evidence, and marks it accepted, in one transaction.
    pub async fn accept_suggestion(
        &self,
        suggestion_id: &str,
        actor: &str,
    ) -> Result<(MergeRecord, super::suggest::MergeSuggestion), StoreError> {
        let s = self
            .get_suggestion(suggestion_id)
            .await?
            .ok_or(StoreError::NotFound("merge suggestion"))?;
        if s.status != "open" {
            return Err(StoreError::conflict(
                "already_decided",
                format!("this suggestion is already {}", s.status),
            ));
        }
        let evidence = serde_json::json!({
            "suggestion_id": s.id,
            "score": s.score,
            "reasons": s.reasons,
            "suggested_ids": s.suggested_ids,
        });
        let rec = self
            .merge_customers_with(
                &s.customer_id,
                &s.other_customer_id,
                actor,
                "accepted merge suggestion",
                evidence,
                Some(suggestion_id),
            )
            .await?;
        let s = self
            .get_suggestion(suggestion_id)
            .await?
            .ok_or(StoreError::NotFound("merge suggestion"))?;
        Ok((rec, s))
    }

    async fn merge_customers_with(
        &self,
        survivor: &str,
        other: &str,
        actor: &str,
        reason: &str,
        evidence: serde_json::Value,
        suggestion: Option<&str>,
    ) -> Result<MergeRecord, StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            if pg {
                // The pipeline's identity lock: a batch must not link through a customer
                // while it moves.
                sqlx::query("SELECT pg_advisory_xact_lock(7270002)")
                    .execute(&mut *tx)
                    .await?;
            }
            let mut canon = Vec::new();
            for id in [survivor, other] {
                let c: Option<String> =
                    sqlx::query("SELECT canonical_id FROM customers WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.try_get(0))
                        .transpose()?;
                canon.push(c.ok_or(StoreError::NotFound("customer"))?);
            }
            let (s, m) = (canon[0].clone(), canon[1].clone());
            if s == m {
                return Err(StoreError::conflict(
                    "same_customer",
                    "both ids already are one customer",
                ));
            }
            let moved: Vec<String> = sqlx::query(
                "UPDATE customers SET canonical_id = $1, updated_at = $2 WHERE canonical_id = $3 RETURNING id",
            )
            .bind(&s)
            .bind(now)
            .bind(&m)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
            let id = uuid::Uuid::now_v7().to_string();
            if let Some(sid) = suggestion {
                let r = sqlx::query(
                    "UPDATE merge_suggestions SET status = 'accepted', decided_by = $1, decided_at = $2, updated_at = $2, merge_id = $3 \
                     WHERE id = $4 AND status = 'open'",
                )
                .bind(actor)
                .bind(now)
                .bind(&id)
                .bind(sid)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::conflict(
                        "already_decided",
                        "this suggestion was decided meanwhile",
                    ));
                }
            }
            // The survivor's weak attributes now include the merged customer's.
            mark_dirty!(tx, vec![s.as_str()], now);
            close_joined!(tx, now);
            sqlx::query(
                "INSERT INTO customer_merges (id, survivor_id, merged_id, actor, reason, evidence, raw_event_id, created_at, moved_ids) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)",
            )
            .bind(&id)
            .bind(&s)
            .bind(&m)
            .bind(actor)
            .bind(reason)
            .bind(evidence.to_string())
            .bind(now)
            .bind(serde_json::json!(moved).to_string())
            .execute(&mut *tx)
            .await?;
            let payload = serde_json::json!({ "merge_id": id, "survivor_id": s, "merged_id": m, "actor": actor, "reason": reason, "evidence": evidence, "moved_ids": moved });
            append_event!(
                tx,
                "customer.merged",
                None::<&str>,
                Some(s.as_str()),
                payload,
                now
            );
            let rec = sqlx::query(&format!(
                "SELECT {MERGE_COLS} FROM customer_merges WHERE id = $1"
            ))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            let rec = merge_from_row!(&rec);
            tx.commit().await?;
            Ok(rec)
        })
    }

    /// Undoes a merge of `customer_id`'s customer: the records it moved that are still with
    /// the survivor's group go back to the merged customer, with everything attached to them.
    pub async fn unmerge_customers(
        &self,
        customer_id: &str,
        merge_id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<MergeRecord, StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            if pg {
                sqlx::query("SELECT pg_advisory_xact_lock(7270002)")
                    .execute(&mut *tx)
                    .await?;
            }
            let Some(r) = sqlx::query(&format!(
                "SELECT {MERGE_COLS} FROM customer_merges WHERE id = $1"
            ))
            .bind(merge_id)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Err(StoreError::NotFound("merge"));
            };
            let rec = merge_from_row!(&r);
            let group: Option<String> =
                sqlx::query("SELECT canonical_id FROM customers WHERE id = $1")
                    .bind(&rec.survivor_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            let caller: Option<String> =
                sqlx::query("SELECT canonical_id FROM customers WHERE id = $1")
                    .bind(customer_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            let caller = caller.ok_or(StoreError::NotFound("customer"))?;
            if group.as_deref() != Some(caller.as_str()) {
                return Err(StoreError::NotFound("merge"));
            }
            if rec.undone_at.is_some() {
                return Err(StoreError::conflict(
                    "already_unmerged",
                    "this merge was already undone",
                ));
            }
            for chunk in rec.moved_ids.chunks(super::CHUNK) {
                let mut qb = sqlx::QueryBuilder::new("UPDATE customers SET canonical_id = ");
                qb.push_bind(rec.merged_id.as_str())
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(" WHERE canonical_id = ")
                    .push_bind(caller.as_str())
                    .push(" AND id IN (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(id.as_str());
                }
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
            }
            // An agent said these are two people: never suggest the pair again.
            let (a, b) = super::suggest::pair(&rec.survivor_id, &rec.merged_id);
            sqlx::query(
                "INSERT INTO do_not_merge (customer_a, customer_b, source, ref_id, actor, created_at) \
                 VALUES ($1, $2, 'unmerged', $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(a)
            .bind(b)
            .bind(merge_id)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            mark_dirty!(
                tx,
                vec![rec.survivor_id.as_str(), rec.merged_id.as_str()],
                now
            );
            sqlx::query(
                "UPDATE customer_merges SET undone_at = $1, undone_by = $2, undo_reason = $3 WHERE id = $4",
            )
            .bind(now)
            .bind(actor)
            .bind(reason)
            .bind(merge_id)
            .execute(&mut *tx)
            .await?;
            let payload = serde_json::json!({ "merge_id": rec.id, "survivor_id": rec.survivor_id, "merged_id": rec.merged_id, "actor": actor, "reason": reason, "restored_ids": rec.moved_ids });
            append_event!(
                tx,
                "customer.unmerged",
                None::<&str>,
                Some(rec.survivor_id.as_str()),
                payload,
                now
            );
            let r = sqlx::query(&format!(
                "SELECT {MERGE_COLS} FROM customer_merges WHERE id = $1"
            ))
            .bind(merge_id)
            .fetch_one(&mut *tx)
            .await?;
            let rec = merge_from_row!(&r);
            tx.commit().await?;
            Ok(rec)
        })
    }

    /// The merge audit trail of a canonical customer (merges and their undoing).
    pub async fn customer_merges(&self, canonical_id: &str) -> anyhow::Result<Vec<MergeRecord>> {
        with_pool!(self, read, |pool, pg| {
            let m = merges_of!(pool, canonical_id);
            Ok(m)
        })
    }
}

//! Business documents as entities: one current copy per (connector, kind, id). The first
//! version is a timeline entry; a newer version that differs updates that entry in place and
//! adds one compact `<kind>_changed` entry; an older or identical version changes nothing, so
//! the same document arriving by webhook and by poll, or replayed, is stored once.

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use super::{with_pool, Pools, Store};

/// The current copy of a document, as loaded inside the pipeline's transaction.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub entry_id: i64,
    pub version: Option<i64>,
    pub body: Value,
}

/// Is `new` a later version than `old`? A document without a version is taken as the latest.
pub(crate) fn newer(new: Option<i64>, old: Option<i64>) -> bool {
    match (new, old) {
        (Some(n), Some(o)) => n > o,
        _ => true,
    }
}

/// What changed between two copies: scalar fields as `[old, new]`, lists and objects (items,
/// addresses) as `"changed"`, so the entry stays compact. The version itself is not a change.
pub(crate) fn changes(old: &Value, new: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    let keys = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)));
    for k in keys {
        if k == "updated_at" {
            continue;
        }
        let (a, b) = (
            old.get(k).unwrap_or(&Value::Null),
            new.get(k).unwrap_or(&Value::Null),
        );
        if a == b {
            continue;
        }
        let v = if a.is_object() || a.is_array() || b.is_object() || b.is_array() {
            Value::String("changed".into())
        } else {
            Value::Array(vec![a.clone(), b.clone()])
        };
        out.insert(k.clone(), v);
    }
    out
}

/// Applies the document items of a batch inside its transaction. `$flat` is the batch's
/// `(event, item index, item)` list, `$rows` the `(flat index, customer, conversation)` of the
/// document items. Evaluates to the number of timeline entries written.
macro_rules! apply_documents {
    ($tx:expr, $flat:expr, $rows:expr, $now:expr) => {{
        let mut written = 0usize;
        let mut docs: Vec<(usize, &str, &'static str, &str, Option<i64>)> = $rows
            .iter()
            .filter_map(|(n, _, _)| {
                let (ev, _, item) = $flat[*n];
                item.body
                    .entity()
                    .map(|(kind, id, version)| (*n, ev.connector_id.as_str(), kind, id, version))
            })
            .collect();
        // Oldest version first, so a batch holding several versions ends on the latest.
        docs.sort_by(|a, b| (a.1, a.2, a.3, a.4).cmp(&(b.1, b.2, b.3, b.4)));
        let mut current: std::collections::HashMap<(String, String, String), crate::store::entities::Current> =
            std::collections::HashMap::new();
        for chunk in docs.chunks(crate::store::CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(
                "SELECT connector_id, kind, entity_id, entry_id, version, body FROM entities WHERE ",
            );
            let mut sep = qb.separated(" OR ");
            for (_, c, k, id, _) in chunk {
                sep.push("(connector_id = ")
                    .push_bind_unseparated(*c)
                    .push_unseparated(" AND kind = ")
                    .push_bind_unseparated(*k)
                    .push_unseparated(" AND entity_id = ")
                    .push_bind_unseparated(*id)
                    .push_unseparated(")");
            }
            for r in qb.build().fetch_all(&mut *$tx).await? {
                let body: String = r.try_get(5)?;
                current.insert(
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?),
                    crate::store::entities::Current {
                        entry_id: r.try_get(3)?,
                        version: r.try_get(4)?,
                        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                    },
                );
            }
        }
        let conv_of: std::collections::HashMap<usize, (&str, Option<&str>)> = $rows
            .iter()
            .map(|(n, customer, conv)| (*n, (customer.as_str(), *conv)))
            .collect();
        for (n, connector, kind, id, version) in docs {
            let (ev, idx, item) = $flat[n];
            let Some(&(customer, conv)) = conv_of.get(&n) else { continue };
            let body = serde_json::to_value(&item.body)?;
            let key = (connector.to_string(), kind.to_string(), id.to_string());
            match current.get_mut(&key) {
                None => {
                    let created = body["created_at"].as_i64().unwrap_or(item.occurred_at);
                    let entry_id: i64 = sqlx::query(
                        "INSERT INTO timeline_entries (raw_event_id, item_index, customer_id, conversation_id, connector_id, channel, kind, direction, occurred_at, body, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (raw_event_id, item_index) DO UPDATE SET body = excluded.body RETURNING id",
                    )
                    .bind(ev.raw_event_id)
                    .bind(idx as i64)
                    .bind(customer)
                    .bind(conv)
                    .bind(connector)
                    .bind(item.channel.as_str())
                    .bind(kind)
                    .bind(item.direction.as_str())
                    .bind(created)
                    .bind(body.to_string())
                    .bind($now)
                    .fetch_one(&mut *$tx)
                    .await?
                    .try_get(0)?;
                    sqlx::query(
                        "INSERT INTO entities (connector_id, kind, entity_id, customer_id, entry_id, version, body, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (connector_id, kind, entity_id) DO NOTHING",
                    )
                    .bind(connector)
                    .bind(kind)
                    .bind(id)
                    .bind(customer)
                    .bind(entry_id)
                    .bind(version)
                    .bind(body.to_string())
                    .bind(created)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                    written += 1;
                    current.insert(
                        key,
                        crate::store::entities::Current { entry_id, version, body },
                    );
                }
                Some(cur) => {
                    if !crate::store::entities::newer(version, cur.version) {
                        continue;
                    }
                    let changes = crate::store::entities::changes(&cur.body, &body);
                    if !changes.is_empty() {
                        sqlx::query("UPDATE timeline_entries SET body = $1 WHERE id = $2")
                            .bind(body.to_string())
                            .bind(cur.entry_id)
                            .execute(&mut *$tx)
                            .await?;
                        let changed = serde_json::json!({
                            "type": format!("{kind}_changed"),
                            format!("{kind}_id"): id,
                            "changes": changes,
                        });
                        sqlx::query(
                            "INSERT INTO timeline_entries (raw_event_id, item_index, customer_id, conversation_id, connector_id, channel, kind, direction, occurred_at, body, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (raw_event_id, item_index) DO NOTHING",
                        )
                        .bind(ev.raw_event_id)
                        .bind(idx as i64)
                        .bind(customer)
                        .bind(conv)
                        .bind(connector)
                        .bind(item.channel.as_str())
                        .bind(format!("{kind}_changed"))
                        .bind(item.direction.as_str())
                        .bind(version.unwrap_or(item.occurred_at))
                        .bind(changed.to_string())
                        .bind($now)
                        .execute(&mut *$tx)
                        .await?;
                        written += 1;
                    }
                    sqlx::query(
                        "UPDATE entities SET version = $1, body = $2, updated_at = $3 \
                         WHERE connector_id = $4 AND kind = $5 AND entity_id = $6",
                    )
                    .bind(version)
                    .bind(body.to_string())
                    .bind($now)
                    .bind(connector)
                    .bind(kind)
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                    cur.version = version;
                    cur.body = body;
                }
            }
        }
        written
    }};
}
pub(crate) use apply_documents;

/// One of a customer's documents, as the API lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DocumentRow {
    pub connector_id: String,
    pub kind: String,
    pub id: String,
    /// The current copy (the `order` / `payment` / … body).
    #[schema(value_type = Object)]
    pub body: Value,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    /// A customer's documents of `kind` (the customer and every alias merged into it),
    /// newest first; `after` is the `(created_at, connector_id, entity_id)` of the last row
    /// of the previous page.
    pub async fn customer_documents(
        &self,
        customer_id: &str,
        kind: &str,
        after: Option<(i64, String, String)>,
        limit: i64,
    ) -> anyhow::Result<Vec<(DocumentRow, (i64, String, String))>> {
        let mut out = Vec::new();
        with_pool!(self, read, |pool, pg| {
            let mut qb = sqlx::QueryBuilder::new(
                "SELECT e.connector_id, e.kind, e.entity_id, e.body, e.created_at, e.updated_at \
                 FROM entities e JOIN customers c ON c.id = e.customer_id \
                 WHERE c.canonical_id = (SELECT canonical_id FROM customers WHERE id = ",
            );
            qb.push_bind(customer_id)
                .push(") AND e.kind = ")
                .push_bind(kind);
            if let Some((at, c, id)) = &after {
                qb.push(" AND (e.created_at < ")
                    .push_bind(*at)
                    .push(" OR (e.created_at = ")
                    .push_bind(*at)
                    .push(" AND (e.connector_id < ")
                    .push_bind(c.as_str())
                    .push(" OR (e.connector_id = ")
                    .push_bind(c.as_str())
                    .push(" AND e.entity_id < ")
                    .push_bind(id.as_str())
                    .push("))))");
            }
            qb.push(" ORDER BY e.created_at DESC, e.connector_id DESC, e.entity_id DESC LIMIT ");
            qb.push(limit.clamp(1, 1000).to_string());
            for r in qb.build().fetch_all(pool).await? {
                let created: i64 = r.try_get(4)?;
                let updated: i64 = r.try_get(5)?;
                let connector_id: String = r.try_get(0)?;
                let id: String = r.try_get(2)?;
                let body: String = r.try_get(3)?;
                out.push((
                    DocumentRow {
                        connector_id: connector_id.clone(),
                        kind: r.try_get(1)?,
                        id: id.clone(),
                        body: serde_json::from_str(&body).unwrap_or(Value::Null),
                        created_at: super::model::rfc3339(created),
                        updated_at: super::model::rfc3339(updated),
                    },
                    (created, connector_id, id),
                ));
            }
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_name_scalar_fields_old_and_new_and_mark_lists_changed() {
        let old = json!({"type": "order", "order_id": "1", "status": "pending", "total_minor": 100,
                         "items": [{"name": "a", "quantity": 1}], "updated_at": 1});
        let new = json!({"type": "order", "order_id": "1", "status": "paid", "total_minor": 100,
                         "items": [{"name": "a", "quantity": 2}], "fulfillment_status": "fulfilled",
                         "updated_at": 2});
        let c = changes(&old, &new);
        assert_eq!(c["status"], json!(["pending", "paid"]));
        assert_eq!(c["items"], json!("changed"));
        assert_eq!(c["fulfillment_status"], json!([null, "fulfilled"]));
        assert!(!c.contains_key("total_minor"));
        assert!(!c.contains_key("updated_at"), "the version is not a change");
        assert!(changes(&old, &old).is_empty());
    }

    #[test]
    fn only_a_later_or_unversioned_copy_is_newer() {
        assert!(newer(Some(2), Some(1)));
        assert!(!newer(Some(1), Some(1)));
        assert!(!newer(Some(1), Some(2)));
        assert!(newer(None, Some(2)));
        assert!(newer(Some(1), None));
    }
}

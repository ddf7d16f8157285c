//! Business documents as entities: one current copy per (connector, kind, id). The first
//! version is a timeline entry; a newer version that differs updates that entry in place and
//! adds one compact `<kind>_changed` entry; an older or identical version changes nothing, so
//! the same document arriving by webhook and by poll, or replayed, is stored once.

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use super::{with_pool, Pools, Store};

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

/// Where a document's current copy lives while a batch is applied: a stored timeline entry,
/// or one the batch is about to insert.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EntryRef {
    Stored(i64),
    New(usize),
}

/// A timeline entry a document batch inserts: flat index, customer, conversation, kind,
/// occurred_at, body.
pub(crate) type NewEntry<'a> = (usize, &'a str, Option<&'a str>, String, i64, Value);

/// Applies the document items of a batch inside its transaction. `$flat` is the batch's
/// `(event, item index, item)` list, `$rows` the `(flat index, customer, conversation)` of the
/// document items. Evaluates to the number of timeline entries written.
///
/// The versions are worked out in memory first (a batch may hold a document's creation and
/// its updates), then written with a few multi-row statements per batch, never one per
/// document: new entries, new entities, change entries, rewritten entry bodies, and moved
/// entity versions.
macro_rules! apply_documents {
    ($tx:expr, $flat:expr, $rows:expr, $now:expr) => {{
        use crate::store::entities::{EntryRef, NewEntry};
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
        // key → (where its entry is, version, body)
        let mut current: std::collections::HashMap<
            (String, String, String),
            (EntryRef, Option<i64>, serde_json::Value),
        > = std::collections::HashMap::new();
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
                    (
                        EntryRef::Stored(r.try_get(3)?),
                        r.try_get(4)?,
                        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                    ),
                );
            }
        }
        let conv_of: std::collections::HashMap<usize, (&str, Option<&str>)> = $rows
            .iter()
            .map(|(n, customer, conv)| (*n, (customer.as_str(), *conv)))
            .collect();
        // What to write, worked out in order.
        let mut new_entries: Vec<NewEntry> = Vec::new();
        // (key, index in new_entries)
        let mut new_entities: Vec<((String, String, String), usize)> = Vec::new();
        let mut changed: Vec<NewEntry> = Vec::new();
        // stored entry id → its new body (the latest wins)
        let mut rewrites: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
        // stored entity → its new version and body (the latest wins)
        let mut moved: std::collections::HashMap<(String, String, String), (Option<i64>, String)> =
            std::collections::HashMap::new();
        for (n, connector, kind, id, version) in docs {
            let (_, _, item) = $flat[n];
            let Some(&(customer, conv)) = conv_of.get(&n) else { continue };
            let body = serde_json::to_value(&item.body)?;
            let key = (connector.to_string(), kind.to_string(), id.to_string());
            match current.get_mut(&key) {
                None => {
                    let created = body["created_at"].as_i64().unwrap_or(item.occurred_at);
                    new_entities.push((key.clone(), new_entries.len()));
                    current.insert(
                        key,
                        (EntryRef::New(new_entries.len()), version, body.clone()),
                    );
                    new_entries.push((n, customer, conv, kind.to_string(), created, body));
                    written += 1;
                }
                Some(cur) => {
                    if !crate::store::entities::newer(version, cur.1) {
                        continue;
                    }
                    let changes = crate::store::entities::changes(&cur.2, &body);
                    if !changes.is_empty() {
                        match cur.0 {
                            EntryRef::Stored(entry_id) => {
                                rewrites.insert(entry_id, body.to_string());
                            }
                            EntryRef::New(i) => new_entries[i].5 = body.clone(),
                        }
                        let change = serde_json::json!({
                            "type": format!("{kind}_changed"),
                            format!("{kind}_id"): id,
                            "changes": changes,
                        });
                        changed.push((
                            n,
                            customer,
                            conv,
                            format!("{kind}_changed"),
                            version.unwrap_or(item.occurred_at),
                            change,
                        ));
                        written += 1;
                    }
                    if let EntryRef::Stored(_) = cur.0 {
                        moved.insert(key.clone(), (version, body.to_string()));
                    }
                    cur.1 = version;
                    cur.2 = body;
                }
            }
        }

        // New documents: their first entries (a replay finds them and rewrites the body) …
        let mut entry_of: std::collections::HashMap<(i64, i64), i64> =
            std::collections::HashMap::new();
        for chunk in new_entries.chunks(crate::store::CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO timeline_entries (raw_event_id, item_index, customer_id, conversation_id, connector_id, channel, kind, direction, occurred_at, body, created_at) ",
            );
            qb.push_values(chunk, |mut b, (n, customer, conv, kind, at, body)| {
                let (ev, idx, item) = $flat[*n];
                b.push_bind(ev.raw_event_id)
                    .push_bind(idx as i64)
                    .push_bind(*customer)
                    .push_bind(*conv)
                    .push_bind(ev.connector_id.as_str())
                    .push_bind(item.channel.as_str())
                    .push_bind(kind.as_str())
                    .push_bind(item.direction.as_str())
                    .push_bind(*at)
                    .push_bind(body.to_string())
                    .push_bind($now);
            });
            qb.push(
                " ON CONFLICT (raw_event_id, item_index) DO UPDATE SET body = excluded.body \
                 RETURNING id, raw_event_id, item_index",
            );
            for r in qb.build().fetch_all(&mut *$tx).await? {
                entry_of.insert((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?);
            }
        }
        // … then the entities, carrying the batch's latest version.
        for chunk in new_entities.chunks(crate::store::CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO entities (connector_id, kind, entity_id, customer_id, entry_id, version, body, created_at, updated_at) ",
            );
            let mut missing = false;
            qb.push_values(chunk, |mut b, (key, i)| {
                let (n, customer, _, _, created, _) = &new_entries[*i];
                let (ev, idx, _) = $flat[*n];
                let entry_id = entry_of.get(&(ev.raw_event_id, idx as i64)).copied();
                missing |= entry_id.is_none();
                let (_, version, body) = &current[key];
                b.push_bind(key.0.as_str())
                    .push_bind(key.1.as_str())
                    .push_bind(key.2.as_str())
                    .push_bind(*customer)
                    .push_bind(entry_id.unwrap_or_default())
                    .push_bind(*version)
                    .push_bind(body.to_string())
                    .push_bind(*created)
                    .push_bind($now);
            });
            anyhow::ensure!(!missing, "a document entry was not returned by its insert");
            qb.push(" ON CONFLICT (connector_id, kind, entity_id) DO NOTHING");
            qb.build().execute(&mut *$tx).await?;
        }
        for chunk in changed.chunks(crate::store::CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO timeline_entries (raw_event_id, item_index, customer_id, conversation_id, connector_id, channel, kind, direction, occurred_at, body, created_at) ",
            );
            qb.push_values(chunk, |mut b, (n, customer, conv, kind, at, body)| {
                let (ev, idx, item) = $flat[*n];
                b.push_bind(ev.raw_event_id)
                    .push_bind(idx as i64)
                    .push_bind(*customer)
                    .push_bind(*conv)
                    .push_bind(ev.connector_id.as_str())
                    .push_bind(item.channel.as_str())
                    .push_bind(kind.as_str())
                    .push_bind(item.direction.as_str())
                    .push_bind(*at)
                    .push_bind(body.to_string())
                    .push_bind($now);
            });
            qb.push(" ON CONFLICT (raw_event_id, item_index) DO NOTHING");
            qb.build().execute(&mut *$tx).await?;
        }
        // Stored documents that moved on: their entry shows the latest copy.
        let rewrites: Vec<(i64, String)> = rewrites.into_iter().collect();
        for chunk in rewrites.chunks(crate::store::CHUNK) {
            let mut qb = sqlx::QueryBuilder::new("WITH v (id, body) AS (");
            qb.push_values(chunk, |mut b, (id, body)| {
                b.push_bind(*id).push_bind(body.as_str());
            });
            qb.push(") UPDATE timeline_entries SET body = v.body FROM v WHERE timeline_entries.id = v.id");
            qb.build().execute(&mut *$tx).await?;
        }
        let moved: Vec<((String, String, String), (Option<i64>, String))> =
            moved.into_iter().collect();
        for chunk in moved.chunks(crate::store::CHUNK) {
            let mut qb =
                sqlx::QueryBuilder::new("WITH v (connector_id, kind, entity_id, version, body) AS (");
            qb.push_values(chunk, |mut b, ((c, k, id), (version, body))| {
                b.push_bind(c.as_str())
                    .push_bind(k.as_str())
                    .push_bind(id.as_str())
                    .push_bind(*version)
                    .push_bind(body.as_str());
            });
            qb.push(") UPDATE entities SET version = v.version, body = v.body, updated_at = ");
            qb.push_bind($now);
            qb.push(
                " FROM v WHERE v.connector_id = entities.connector_id AND v.kind = entities.kind \
                 AND v.entity_id = entities.entity_id",
            );
            qb.build().execute(&mut *$tx).await?;
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

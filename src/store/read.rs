//! Reads for the inbox API. Every list is keyset-paginated: the caller passes the last row's
//! sort key back as the cursor, so pages stay stable while new rows arrive.

use sqlx::{QueryBuilder, Row};

use super::model::*;
use super::{with_pool, Pools, Store};

#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub status: Option<String>,
    pub connector_id: Option<String>,
    /// `Some(None)`: unassigned only.
    pub assignee: Option<Option<String>>,
    pub label: Option<String>,
    /// (last_message_at, id) of the last row seen; the list runs newest first.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub enum CustomerQuery {
    /// An identity key (kind, scope, normalised value).
    Identity(String),
    /// Substring of a name or identity value, lower-case.
    Text(String),
    All,
}

/// Conversation columns, the labels last (sorted, joined by U+001F, which a label never holds),
/// so a page needs one statement. `$labels` is the dialect's ordered string aggregate.
macro_rules! conv_cols {
    ($labels:literal) => {
        concat!(
            "v.id, v.connector_id, v.channel, v.thread_key, c.canonical_id, v.status, v.last_message_at, v.created_at, v.assignee_id, v.priority, v.snoozed_until, v.merged_into, \
             (SELECT ", $labels, " FROM conversation_labels l WHERE l.conversation_id = v.id)"
        )
    };
}
const CONV_COLS_SQLITE: &str = conv_cols!("group_concat(l.label, char(31) ORDER BY l.label)");
const CONV_COLS_PG: &str = conv_cols!("string_agg(l.label, chr(31) ORDER BY l.label)");

fn conv_cols(pg: bool) -> &'static str {
    if pg {
        CONV_COLS_PG
    } else {
        CONV_COLS_SQLITE
    }
}
/// The customer shown is the canonical one: `c.canonical_id` (every customer row names it).
const CONV_FROM: &str = " FROM conversations v JOIN customers c ON c.id = v.customer_id";
const ENTRY_COLS: &str = "t.id, c.canonical_id, t.conversation_id, t.connector_id, t.channel, t.kind, t.direction, t.occurred_at, t.raw_event_id, t.body, t.actor, t.outbound_id, o.state, o.error";
const ENTRY_FROM: &str = " FROM timeline_entries t JOIN customers c ON c.id = t.customer_id \
     LEFT JOIN outbound_messages o ON o.id = t.outbound_id";

macro_rules! conversation_from_row {
    ($r:expr) => {{
        let r = $r;
        Conversation {
            id: r.try_get(0)?,
            connector_id: r.try_get(1)?,
            channel: r.try_get(2)?,
            thread_key: r.try_get(3)?,
            customer_id: r.try_get(4)?,
            status: r.try_get(5)?,
            last_message_at: rfc3339(r.try_get(6)?),
            created_at: rfc3339(r.try_get(7)?),
            assignee_id: r.try_get(8)?,
            priority: r.try_get(9)?,
            snoozed_until: r.try_get::<Option<i64>, _>(10)?.map(rfc3339),
            merged_into: r.try_get(11)?,
            labels: r
                .try_get::<Option<String>, _>(12)?
                .map(|l| l.split('\u{1f}').map(str::to_string).collect())
                .unwrap_or_default(),
        }
    }};
}

macro_rules! entry_from_row {
    ($r:expr) => {{
        let r = $r;
        let body: String = r.try_get(9)?;
        let occurred: i64 = r.try_get(7)?;
        (
            occurred,
            TimelineEntry {
                id: r.try_get(0)?,
                customer_id: r.try_get(1)?,
                conversation_id: r.try_get(2)?,
                connector_id: r.try_get(3)?,
                channel: r.try_get(4)?,
                kind: r.try_get(5)?,
                direction: r.try_get(6)?,
                occurred_at: rfc3339(occurred),
                raw_event_id: r.try_get(8)?,
                body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                actor: r.try_get(10)?,
                outbound_id: r.try_get(11)?,
                delivery_state: r.try_get(12)?,
                delivery_error: r.try_get(13)?,
            },
        )
    }};
}

impl Store {
    /// Conversations with their labels, newest activity first. Returns rows with their raw
    /// sort time.
    pub async fn list_conversations(
        &self,
        f: &ConversationFilter,
    ) -> anyhow::Result<Vec<(i64, Conversation)>> {
        with_pool!(self, read, |pool, pg| {
            let mut qb =
                QueryBuilder::new(format!("SELECT {}{CONV_FROM} WHERE 1 = 1", conv_cols(pg)));
            // A known status is written as a literal: bound, it would match the partial index
            // on snoozed conversations (`WHERE status = 'snoozed'`), and SQLite re-prepares
            // such a statement whenever the parameter is bound anew (every request).
            match f.status.as_deref() {
                Some(s @ ("open" | "pending" | "snoozed" | "resolved")) => {
                    qb.push(format!(" AND v.status = '{s}'"));
                }
                Some(s) => {
                    qb.push(" AND v.status = ").push_bind(s);
                }
                None => {}
            }
            if let Some(c) = &f.connector_id {
                qb.push(" AND v.connector_id = ").push_bind(c.as_str());
            }
            match &f.assignee {
                Some(Some(a)) => {
                    qb.push(" AND v.assignee_id = ").push_bind(a.as_str());
                }
                Some(None) => {
                    qb.push(" AND v.assignee_id IS NULL");
                }
                None => {}
            }
            if let Some(l) = &f.label {
                qb.push(
                    " AND v.id IN (SELECT conversation_id FROM conversation_labels WHERE label = ",
                )
                .push_bind(l.as_str())
                .push(")");
            }
            if let Some((t, id)) = &f.after {
                qb.push(" AND (v.last_message_at < ")
                    .push_bind(*t)
                    .push(" OR (v.last_message_at = ")
                    .push_bind(*t)
                    .push(" AND v.id < ")
                    .push_bind(id.as_str())
                    .push("))");
            }
            qb.push(" ORDER BY v.last_message_at DESC, v.id DESC LIMIT ")
                .push(limit_literal(f.limit));
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                let t: i64 = r.try_get(6)?;
                out.push((t, conversation_from_row!(&r)));
            }
            Ok(out)
        })
    }

    pub async fn get_conversation(&self, id: &str) -> anyhow::Result<Option<Conversation>> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(&format!(
                "SELECT {}{CONV_FROM} WHERE v.id = $1",
                conv_cols(pg)
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match r {
                Some(r) => Ok(Some(conversation_from_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// A conversation's entries, oldest first: `occurred_at`, then arrival.
    pub async fn conversation_entries(
        &self,
        conversation_id: &str,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> anyhow::Result<Vec<(i64, TimelineEntry)>> {
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(format!(
                "SELECT {ENTRY_COLS}{ENTRY_FROM} WHERE t.conversation_id = "
            ));
            qb.push_bind(conversation_id);
            if let Some((t, id)) = after {
                qb.push(" AND (t.occurred_at > ")
                    .push_bind(t)
                    .push(" OR (t.occurred_at = ")
                    .push_bind(t)
                    .push(" AND t.id > ")
                    .push_bind(id)
                    .push("))");
            }
            qb.push(" ORDER BY t.occurred_at, t.id LIMIT ")
                .push(limit_literal(limit));
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                out.push(entry_from_row!(&r));
            }
            Ok(out)
        })
    }

    /// The whole timeline (every alias included), newest first, of the customer `id` is or
    /// was merged into; `None` if no such customer exists.
    pub async fn customer_timeline(
        &self,
        id: &str,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> anyhow::Result<Option<Vec<(i64, TimelineEntry)>>> {
        with_pool!(self, read, |pool, pg| {
            // The canonical customer's aliases (itself among them) in one statement. Then one
            // query per alias, each walking its own index in order, merged: a subquery
            // IN (...) makes PostgreSQL fetch and sort every entry of a heavy customer.
            let aliases: Vec<String> = sqlx::query(
                "SELECT a.id FROM customers c JOIN customers a ON a.canonical_id = c.canonical_id \
                 WHERE c.id = $1 ORDER BY a.id LIMIT 100",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
            if aliases.is_empty() {
                return Ok(None);
            }
            let mut qb = QueryBuilder::new("SELECT * FROM (");
            for (i, alias) in aliases.iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push(format!(
                    "SELECT * FROM (SELECT {ENTRY_COLS}{ENTRY_FROM} WHERE t.customer_id = "
                ));
                qb.push_bind(alias.as_str());
                if let Some((t, id)) = before {
                    qb.push(" AND (t.occurred_at < ")
                        .push_bind(t)
                        .push(" OR (t.occurred_at = ")
                        .push_bind(t)
                        .push(" AND t.id < ")
                        .push_bind(id)
                        .push("))");
                }
                qb.push(format!(
                    " ORDER BY t.occurred_at DESC, t.id DESC LIMIT {}) AS a{i}",
                    limit_literal(limit)
                ));
            }
            // Positions: 8 = occurred_at, 1 = entry id.
            qb.push(format!(
                ") AS u ORDER BY 8 DESC, 1 DESC LIMIT {}",
                limit_literal(limit)
            ));
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                out.push(entry_from_row!(&r));
            }
            Ok(Some(out))
        })
    }

    /// The canonical id a customer id resolves to (itself unless merged), if it exists.
    pub async fn canonical_customer(&self, id: &str) -> anyhow::Result<Option<String>> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query("SELECT canonical_id FROM customers WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(r.map(|r| r.try_get(0)).transpose()?)
        })
    }

    /// Canonical customer ids matching a query, ascending, after `after`.
    pub async fn find_customers(
        &self,
        q: &CustomerQuery,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<Customer>> {
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(
                "SELECT k.id, k.display_name, k.created_at FROM customers k WHERE k.id = k.canonical_id",
            );
            match q {
                CustomerQuery::Identity(key) => {
                    qb.push(
                        " AND k.id IN (SELECT c.canonical_id FROM identities i JOIN customers c ON c.id = i.customer_id WHERE i.ident_key = ",
                    )
                    .push_bind(key.as_str())
                    .push(")");
                }
                CustomerQuery::Text(text) => {
                    let pattern = format!("%{}%", like_escape(text));
                    qb.push(" AND k.id IN (SELECT c.canonical_id FROM customers c LEFT JOIN identities i ON i.customer_id = c.id WHERE LOWER(c.display_name) LIKE ")
                        .push_bind(pattern.clone())
                        .push(" ESCAPE '\\' OR LOWER(i.value) LIKE ")
                        .push_bind(pattern)
                        .push(" ESCAPE '\\')");
                }
                CustomerQuery::All => {}
            }
            if let Some(a) = after {
                qb.push(" AND k.id > ").push_bind(a);
            }
            qb.push(" ORDER BY k.id LIMIT ").push(limit_literal(limit));
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                out.push(Customer {
                    id: r.try_get(0)?,
                    display_name: r.try_get(1)?,
                    created_at: rfc3339(r.try_get(2)?),
                    aliases: Vec::new(),
                });
            }
            Ok(out)
        })
    }

    /// A canonical customer with every identity (and where it came from) and every merge.
    pub async fn customer_detail(
        &self,
        canonical_id: &str,
    ) -> anyhow::Result<Option<CustomerDetail>> {
        with_pool!(self, read, |pool, pg| {
            let Some(r) = sqlx::query("SELECT id, display_name, created_at FROM customers WHERE id = $1 AND canonical_id = id")
                .bind(canonical_id)
                .fetch_optional(pool)
                .await?
            else {
                return Ok(None);
            };
            let mut customer = Customer {
                id: r.try_get(0)?,
                display_name: r.try_get(1)?,
                created_at: rfc3339(r.try_get(2)?),
                aliases: Vec::new(),
            };
            for r in sqlx::query(
                "SELECT id FROM customers WHERE canonical_id = $1 AND id <> $1 ORDER BY id",
            )
            .bind(canonical_id)
            .fetch_all(pool)
            .await?
            {
                customer.aliases.push(r.try_get(0)?);
            }
            let mut identities = Vec::new();
            for r in sqlx::query(
                "SELECT i.kind, i.scope, i.value, i.connector_id, i.raw_event_id, i.first_seen, i.last_seen, i.customer_id, \
                 i.last_connector_id, i.last_raw_event_id, i.links, i.guard \
                 FROM identities i JOIN customers c ON c.id = i.customer_id WHERE c.canonical_id = $1 ORDER BY i.first_seen, i.id",
            )
            .bind(canonical_id)
            .fetch_all(pool)
            .await?
            {
                identities.push(Identity {
                    kind: r.try_get(0)?,
                    scope: r.try_get(1)?,
                    value: r.try_get(2)?,
                    connector_id: r.try_get(3)?,
                    raw_event_id: r.try_get(4)?,
                    first_seen: rfc3339(r.try_get(5)?),
                    last_seen: rfc3339(r.try_get(6)?),
                    via_customer_id: r.try_get(7)?,
                    last_connector_id: r.try_get(8)?,
                    last_raw_event_id: r.try_get(9)?,
                    links: r.try_get::<i64, _>(10)? == 1,
                    guard: r.try_get(11)?,
                });
            }
            let merges = super::identity::merges_of!(pool, canonical_id);
            Ok(Some(CustomerDetail {
                customer,
                identities,
                merges,
            }))
        })
    }
}

/// Escapes LIKE wildcards so a search for `50%` finds `50%`, not everything.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A LIMIT as SQL text: PostgreSQL caches a generic plan only when LIMIT is not a bind
/// parameter. The value is an integer the API already bounds, clamped again here.
fn limit_literal(limit: i64) -> String {
    limit.clamp(1, 10_000).to_string()
}

//! The pipeline's write: one transaction per batch that resolves identity, upserts
//! conversations, writes timeline entries and marks the jobs done.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row};
use switchboard_core::{Direction, EventBody, NormalizedEvent};

use super::entities::apply_documents;
use super::events::append_event;
use super::inbox::{insert_entry, load_conv};
use super::outbound::apply_status;
use super::sqlite_rows::{self, Val};
use super::threads::{self, KnownRefs};
use super::{begin_write, now_ms, with_pool, Pools, Store, CHUNK};
use crate::pipeline::identity::{
    self, conversation_key, identity_key, EventClaims, Guards, IdentityRow, Known,
};

/// One job's normalised output, claims already in matching form.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub job_id: i64,
    /// From `switchboard replay`: rewrites entries without announcing them again.
    pub replay: bool,
    pub raw_event_id: i64,
    pub connector_id: String,
    pub items: Vec<NormalizedEvent>,
}

/// The columns of an identity row as the pipeline writes it.
const IDENTITY_COLUMNS: &str =
    "ident_key, match_key, customer_id, kind, scope, value, connector_id, raw_event_id, \
     first_seen, last_seen, last_connector_id, last_raw_event_id, links, guard";
/// An identity row already stored only moves its last sighting on (never back).
const IDENTITY_UPSERT: &str = " ON CONFLICT (ident_key) DO UPDATE SET last_seen = excluded.last_seen, \
     last_connector_id = excluded.last_connector_id, last_raw_event_id = excluded.last_raw_event_id \
     WHERE excluded.last_seen >= identities.last_seen";

/// The SQLite connection under a transaction, for [`sqlite_rows`]; `None` on PostgreSQL.
trait RowByRow {
    fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection>;
}
impl RowByRow for sqlx::SqliteConnection {
    fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        Some(self)
    }
}
impl RowByRow for sqlx::PgConnection {
    fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        None
    }
}

/// A batch's lookup keys after `column IN`: bound one by one on SQLite (sqlx binds no arrays
/// there); on PostgreSQL one `text[]`, unnested, which the planner answers with one index
/// probe per key. A long bound `IN` list made it scan the whole identities table and
/// hash-join customers once they were large: 42-118 ms per 700 keys at 1M identities.
trait KeyList: sqlx::Connection {
    fn push_keys<'a>(qb: &mut QueryBuilder<'a, Self::Database>, keys: &'a [String]);
}
impl KeyList for sqlx::SqliteConnection {
    fn push_keys<'a>(qb: &mut QueryBuilder<'a, sqlx::Sqlite>, keys: &'a [String]) {
        super::suggest::in_list!(qb, keys);
    }
}
impl KeyList for sqlx::PgConnection {
    fn push_keys<'a>(qb: &mut QueryBuilder<'a, sqlx::Postgres>, keys: &'a [String]) {
        qb.push("(SELECT unnest(")
            .push_bind(keys)
            .push("::text[]))");
    }
}
/// [`KeyList::push_keys`] for the connection `conn` is (picks the backend).
fn push_keys<'a, C: KeyList>(
    _conn: &C,
    qb: &mut QueryBuilder<'a, C::Database>,
    keys: &'a [String],
) {
    C::push_keys(qb, keys)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub entries: usize,
    pub new_customers: usize,
    pub merges: usize,
    pub conversations: usize,
    /// Time spent resolving identity (lookups, plan, customer/identity/merge writes), µs.
    pub identity_us: u64,
    /// Of `identity_us`: reading what the store knows (owners, conversations, documents,
    /// guard counts), µs.
    pub identity_lookup_us: u64,
    /// Of `identity_us`: writing customers, identities, merges and names, µs.
    pub identity_write_us: u64,
}

/// One conversation touched by the batch, with its latest message time.
struct ConvTouch {
    id: String,
    connector_id: String,
    channel: String,
    thread_key: String,
    customer_id: String,
    last_message_at: i64,
    inbound: bool,
}

type Flat<'a> = Vec<(&'a PreparedEvent, usize, &'a NormalizedEvent)>;
/// A document's key: connector, kind, id.
type DocKey = (String, &'static str, String);
/// An item to write: its index in the flat batch, its customer, its conversation.
type EntryRow<'a> = (usize, String, Option<&'a str>);

impl Store {
    /// `(connector, provider message id)` of outbound-direction messages in the batch that
    /// are replies this hub sent (their echo).
    async fn our_sent_ids(&self, flat: &Flat<'_>) -> anyhow::Result<HashSet<(String, String)>> {
        let candidates: Vec<(&str, &str)> = flat
            .iter()
            .filter_map(|(ev, _, item)| match &item.body {
                EventBody::Message {
                    message_id: Some(id),
                    ..
                } if item.direction == Direction::Outbound => {
                    Some((ev.connector_id.as_str(), id.as_str()))
                }
                _ => None,
            })
            .collect();
        let mut found = HashSet::new();
        for chunk in candidates.chunks(CHUNK) {
            with_pool!(self, read, |pool, pg| {
                let mut qb = QueryBuilder::new(
                    "SELECT connector_id, provider_message_id FROM outbound_messages WHERE ",
                );
                let mut sep = qb.separated(" OR ");
                for (c, id) in chunk {
                    sep.push("(connector_id = ")
                        .push_bind_unseparated(*c)
                        .push_unseparated(" AND provider_message_id = ")
                        .push_bind_unseparated(*id)
                        .push_unseparated(")");
                }
                for r in qb.build().fetch_all(pool).await? {
                    found.insert((r.try_get(0)?, r.try_get(1)?));
                }
            });
        }
        Ok(found)
    }

    /// Applies a batch in one transaction. Idempotent: re-applying the same raw events (a
    /// replay, or a retry after a crash before the jobs were marked) rewrites the same
    /// timeline entries instead of adding new ones.
    pub async fn apply_batch(&self, events: &[PreparedEvent]) -> anyhow::Result<ApplyStats> {
        self.apply_batch_with(events, &Guards::default()).await
    }

    /// [`Store::apply_batch`] with the configured identity guards.
    pub async fn apply_batch_with(
        &self,
        events: &[PreparedEvent],
        guards: &Guards,
    ) -> anyhow::Result<ApplyStats> {
        let now = now_ms();
        // Flatten: one identity input per normalised item, in arrival order.
        let mut flat: Flat<'_> = Vec::new();
        // Provider status updates move our own outbound messages; they are not timeline entries.
        let mut statuses: Vec<(&str, &str, &str, Option<&str>)> = Vec::new();
        for ev in events {
            for (i, item) in ev.items.iter().enumerate() {
                if let EventBody::Status {
                    message_id,
                    status,
                    reason,
                } = &item.body
                {
                    statuses.push((&ev.connector_id, message_id, status, reason.as_deref()));
                    continue;
                }
                flat.push((ev, i, item));
            }
        }
        // Echoes: a provider reporting a message we sent ourselves is not a new message.
        let echoes = self.our_sent_ids(&flat).await?;
        if !echoes.is_empty() {
            flat.retain(|(ev, _, item)| match &item.body {
                EventBody::Message {
                    message_id: Some(id),
                    ..
                } if item.direction == Direction::Outbound => {
                    !echoes.contains(&(ev.connector_id.clone(), id.clone()))
                }
                _ => true,
            });
        }
        let mut inputs: Vec<EventClaims> = flat
            .iter()
            .map(|(ev, _, item)| EventClaims {
                connector_id: ev.connector_id.clone(),
                raw_event_id: ev.raw_event_id,
                claims: item.claims.clone(),
                conversation_key: item
                    .thread_key
                    .as_ref()
                    .map(|t| conversation_key(&ev.connector_id, t)),
                occurred_at: item.occurred_at,
            })
            .collect();
        let ident_keys: Vec<String> = {
            let mut s: HashSet<String> = HashSet::new();
            for i in &inputs {
                for c in i.claims.iter().filter(|c| c.kind.is_strong()) {
                    s.insert(identity_key(c));
                }
            }
            s.into_iter().collect()
        };
        let ref_keys = threads::lookup_keys(
            flat.iter()
                .map(|(ev, _, item)| (ev.connector_id.as_str(), *item)),
        );

        let mut stats = ApplyStats::default();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            if pg {
                // Identity resolution reads then writes; one pipeline transaction at a time
                // across all nodes keeps two batches from creating the same person twice.
                sqlx::query("SELECT pg_advisory_xact_lock(7270002)")
                    .execute(&mut *tx)
                    .await?;
            }

            // Threads: an event whose refs (email Message-IDs, a subject) name a conversation
            // joins it; its refs are recorded below for the conversation it lands in.
            let mut known_refs = KnownRefs::new();
            for chunk in ref_keys.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "SELECT r.connector_id, r.ref, v.conv_key, r.last_at FROM conversation_refs r \
                     JOIN conversations v ON v.id = r.conversation_id WHERE ",
                );
                let mut sep = qb.separated(" OR ");
                for (c, k) in chunk {
                    sep.push("(r.connector_id = ")
                        .push_bind_unseparated(c.as_str())
                        .push_unseparated(" AND r.ref = ")
                        .push_bind_unseparated(k.as_str())
                        .push_unseparated(")");
                }
                for r in qb.build().fetch_all(&mut *tx).await? {
                    known_refs.insert(
                        (r.try_get(0)?, r.try_get(1)?),
                        (r.try_get(2)?, r.try_get(3)?),
                    );
                }
            }
            let items: Vec<&NormalizedEvent> = flat.iter().map(|(_, _, item)| *item).collect();
            let ref_rows = threads::join(&items, &mut inputs, &mut known_refs);
            let conv_keys: Vec<String> = {
                let s: HashSet<String> = inputs
                    .iter()
                    .filter_map(|i| i.conversation_key.clone())
                    .collect();
                s.into_iter().collect()
            };

            let identity_started = std::time::Instant::now();
            let mut known = Known::default();
            let mut conv_ids: HashMap<String, String> = HashMap::new();
            // conversation key → (status of the conversation its messages land in, merged?)
            let mut conv_state: HashMap<String, (String, bool)> = HashMap::new();
            // Every stored row of each value, linked or not: the linking row (its key is the
            // value's key) names the owner; all of them count the value's holders (the
            // max_shared guard). One lookup for both.
            let mut holders: HashMap<String, HashSet<String>> = HashMap::new();
            // Row key → id of every identity row found, for the sighting updates below.
            let mut row_ids: HashMap<String, i64> = HashMap::new();
            for chunk in ident_keys.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "SELECT i.ident_key, i.match_key, k.id, k.display_name, i.id FROM identities i \
                     JOIN customers c ON c.id = i.customer_id JOIN customers k ON k.id = c.canonical_id \
                     WHERE i.match_key IN ",
                );
                push_keys(&*tx, &mut qb, chunk);
                for r in qb.build().fetch_all(&mut *tx).await? {
                    let key: String = r.try_get(0)?;
                    let match_key: String = r.try_get(1)?;
                    let customer: String = r.try_get(2)?;
                    let name: Option<String> = r.try_get(3)?;
                    if name.is_some() {
                        known.named.insert(customer.clone());
                    }
                    row_ids.insert(key.clone(), r.try_get(4)?);
                    holders
                        .entry(match_key.clone())
                        .or_default()
                        .insert(customer.clone());
                    if key == match_key {
                        known.identities.insert(key, customer);
                    }
                }
            }
            known.holders = holders.into_iter().map(|(k, v)| (k, v.len())).collect();
            for chunk in conv_keys.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "SELECT v.conv_key, COALESCE(m.id, v.id), k.id, k.display_name, COALESCE(m.status, v.status), v.merged_into FROM conversations v \
                     LEFT JOIN conversations m ON m.id = v.merged_into \
                     JOIN customers c ON c.id = v.customer_id JOIN customers k ON k.id = c.canonical_id \
                     WHERE v.conv_key IN ",
                );
                push_keys(&*tx, &mut qb, chunk);
                for r in qb.build().fetch_all(&mut *tx).await? {
                    let key: String = r.try_get(0)?;
                    let customer: String = r.try_get(2)?;
                    let name: Option<String> = r.try_get(3)?;
                    if name.is_some() {
                        known.named.insert(customer.clone());
                    }
                    let status: String = r.try_get(4)?;
                    let merged: Option<String> = r.try_get(5)?;
                    conv_state.insert(key.clone(), (status, merged.is_some()));
                    conv_ids.insert(key.clone(), r.try_get(1)?);
                    known.conversations.insert(key, customer);
                }
            }

            // A document update that names no customer (a Shopify refund, a WooCommerce
            // deletion) belongs to the customer of the document it updates, or of the order
            // it pays: it reaches that customer like a message reaches its conversation's.
            let mut doc_refs: Vec<(usize, Vec<DocKey>)> = Vec::new();
            for (n, (ev, _, item)) in flat.iter().enumerate() {
                let Some((kind, id, _)) = item.body.entity() else {
                    continue;
                };
                if item.claims.iter().any(|c| c.kind.is_strong()) {
                    continue;
                }
                let c = ev.connector_id.clone();
                let mut keys = vec![(c.clone(), kind, id.to_string())];
                let pays = match &item.body {
                    EventBody::Payment(p) => p.order_id.as_deref(),
                    EventBody::Invoice(i) => i.order_id.as_deref(),
                    _ => None,
                };
                if let Some(order) = pays {
                    keys.push((c, "order", order.to_string()));
                }
                doc_refs.push((n, keys));
            }
            let wanted: Vec<&DocKey> = doc_refs.iter().flat_map(|(_, k)| k.iter()).collect();
            let mut owners: HashMap<(String, String, String), String> = HashMap::new();
            for chunk in wanted.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "SELECT e.connector_id, e.kind, e.entity_id, c.canonical_id FROM entities e \
                     JOIN customers c ON c.id = e.customer_id WHERE ",
                );
                let mut sep = qb.separated(" OR ");
                for (c, k, id) in chunk {
                    sep.push("(e.connector_id = ")
                        .push_bind_unseparated(c.as_str())
                        .push_unseparated(" AND e.kind = ")
                        .push_bind_unseparated(*k)
                        .push_unseparated(" AND e.entity_id = ")
                        .push_bind_unseparated(id.as_str())
                        .push_unseparated(")");
                }
                for r in qb.build().fetch_all(&mut *tx).await? {
                    owners.insert((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?), r.try_get(3)?);
                }
            }
            for (n, keys) in &doc_refs {
                let owner = keys
                    .iter()
                    .find_map(|(c, k, id)| owners.get(&(c.clone(), k.to_string(), id.clone())));
                if let (Some(owner), Some((c, k, id))) = (owner, keys.first()) {
                    let key = format!("doc\u{1f}{c}\u{1f}{k}\u{1f}{id}");
                    known.conversations.insert(key.clone(), owner.clone());
                    inputs[*n].conversation_key = Some(key);
                }
            }

            // For the guards: how many linking identities of each kind the customers in
            // play hold. Loaded only for the customers a new identifier or a merge can reach;
            // if the plan needed another one, load the rest and plan again.
            macro_rules! load_counts {
                ($known:ident, $customers:expr) => {{
                    let customers: Vec<String> = $customers;
                    for chunk in customers.chunks(CHUNK) {
                        let mut qb = QueryBuilder::new(
                            "SELECT c.canonical_id, i.kind, COUNT(*) FROM identities i JOIN customers c ON c.id = i.customer_id \
                             WHERE i.links = 1 AND c.canonical_id IN (",
                        );
                        let mut sep = qb.separated(", ");
                        for k in chunk {
                            sep.push_bind(k.as_str());
                        }
                        qb.push(") GROUP BY c.canonical_id, i.kind");
                        for r in qb.build().fetch_all(&mut *tx).await? {
                            let kind: String = r.try_get(1)?;
                            if let Some(kind) = switchboard_core::ClaimKind::parse(&kind) {
                                let n: i64 = r.try_get(2)?;
                                $known
                                    .counts
                                    .insert((r.try_get(0)?, kind), usize::try_from(n).unwrap_or(0));
                            }
                        }
                    }
                    if let Some(counted) = $known.counted.as_mut() {
                        counted.extend(customers);
                    }
                }};
            }
            let needed = known.customers_needing_counts(&inputs);
            known.counted = Some(HashSet::new());
            load_counts!(known, needed.into_iter().collect());
            stats.identity_lookup_us = identity_started.elapsed().as_micros() as u64;
            // Plan; plan again when it needed counts that were not loaded (then all are), or
            // when it would merge customers an agent separated by an unmerge (then they are
            // kept apart). Each round adds what it lacked, so few rounds are ever needed; the
            // last resort refuses every merge of the batch.
            const PLAN_ROUNDS: usize = 8;
            let mut round = 0;
            let plan = loop {
                round += 1;
                let before = known.clone();
                let plan = identity::plan(&inputs, &mut known, guards, || {
                    uuid::Uuid::now_v7().to_string()
                });
                if !known.count_misses.is_empty() {
                    known = before;
                    let in_play: Vec<String> = known
                        .identities
                        .values()
                        .chain(known.conversations.values())
                        .filter(|c| !known.counted.as_ref().is_some_and(|l| l.contains(*c)))
                        .cloned()
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .collect();
                    load_counts!(known, in_play);
                    known.counted = None;
                    continue;
                }
                if plan.merges.is_empty() || known.refuse_all_merges {
                    break plan;
                }
                let ids: Vec<String> = plan
                    .merges
                    .iter()
                    .flat_map(|m| [m.survivor_id.clone(), m.merged_id.clone()])
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                let mut separated: HashSet<(String, String)> = HashSet::new();
                // Both sides in one list (a pair may span any two ids): 2 binds per id, far
                // below either database's limit for a batch's merges.
                anyhow::ensure!(ids.len() <= 10_000, "too many merges in one batch");
                let mut qb = QueryBuilder::new(
                    "SELECT ca.canonical_id, cb.canonical_id FROM do_not_merge d \
                     JOIN customers ca ON ca.id = d.customer_a JOIN customers cb ON cb.id = d.customer_b \
                     WHERE d.source = 'unmerged' AND ca.canonical_id IN ",
                );
                super::suggest::in_list!(qb, &ids);
                qb.push(" AND cb.canonical_id IN ");
                super::suggest::in_list!(qb, &ids);
                for r in qb.build().fetch_all(&mut *tx).await? {
                    let (a, b): (String, String) = (r.try_get(0)?, r.try_get(1)?);
                    if a != b {
                        let (a, b) = super::suggest::pair(&a, &b);
                        separated.insert((a.to_string(), b.to_string()));
                    }
                }
                separated.retain(|p| !before.apart.contains(p));
                if separated.is_empty() {
                    break plan;
                }
                known = before;
                known.apart.extend(separated);
                if round >= PLAN_ROUNDS {
                    known.refuse_all_merges = true;
                }
            };
            for r in &plan.refused {
                if r.apart {
                    tracing::info!(
                        customers = ?r.customers,
                        raw_event_id = r.raw_event_id,
                        "merge refused: an agent separated these customers"
                    );
                    continue;
                }
                tracing::info!(
                    customers = ?r.customers,
                    guard = r.kind.as_str(),
                    raw_event_id = r.raw_event_id,
                    "merge refused: it would exceed the identity cap"
                );
            }
            stats.new_customers = plan.new_customers.len();
            stats.merges = plan.merges.len();
            let write_started = std::time::Instant::now();

            for chunk in plan.new_customers.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO customers (id, canonical_id, display_name, created_at, updated_at) ",
                );
                qb.push_values(chunk, |mut b, c| {
                    b.push_bind(c.id.as_str())
                        .push_bind(c.id.as_str())
                        .push_bind(c.display_name.as_deref())
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.build().execute(&mut *tx).await?;
            }
            // Every identity seen: new ones are inserted, known ones move their last
            // sighting on. On SQLite, row by row in one hop to the connection (a known row
            // by its id: no unique-key search, no upsert); on PostgreSQL, one multi-row
            // upsert per chunk. Never a round trip per row.
            if let Some(conn) = RowByRow::sqlite(&mut *tx) {
                let mut sightings: Vec<Vec<Val<'_>>> = Vec::new();
                let mut new_rows: Vec<&IdentityRow> = Vec::new();
                for i in &plan.identities {
                    match row_ids.get(&i.key) {
                        Some(&id) => sightings.push(vec![
                            Val::Int(i.last.at),
                            Val::Text(&i.last.connector_id),
                            Val::Int(i.last.raw_event_id),
                            Val::Int(id),
                        ]),
                        None => new_rows.push(i),
                    }
                }
                sqlite_rows::execute_each(
                    conn,
                    "UPDATE identities SET last_seen = ?1, last_connector_id = ?2, last_raw_event_id = ?3 \
                     WHERE id = ?4 AND last_seen <= ?1",
                    &sightings,
                )
                .await?;
                let inserts: Vec<Vec<Val<'_>>> = new_rows
                    .iter()
                    .map(|i| {
                        vec![
                            Val::Text(&i.key),
                            Val::Text(&i.match_key),
                            Val::Text(&i.customer_id),
                            Val::Text(i.claim.kind.as_str()),
                            Val::Text(&i.claim.scope),
                            Val::Text(&i.claim.value),
                            Val::Text(&i.first.connector_id),
                            Val::Int(i.first.raw_event_id),
                            Val::Int(i.first.at),
                            Val::Int(i.last.at),
                            Val::Text(&i.last.connector_id),
                            Val::Int(i.last.raw_event_id),
                            Val::Int(i64::from(i.guard.is_none())),
                            Val::OptText(i.guard.map(|g| g.as_str())),
                        ]
                    })
                    .collect();
                // Identity ids only grow (AUTOINCREMENT) and this transaction is SQLite's only
                // writer: the rows above the largest id now are the ones inserted here, and
                // their values go to the search index in one statement (migration 0014).
                if !inserts.is_empty() {
                    let before: i64 =
                        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM identities")
                            .fetch_one(&mut *conn)
                            .await?;
                    sqlite_rows::execute_each(
                        conn,
                        &format!("INSERT INTO identities ({IDENTITY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14){IDENTITY_UPSERT}"),
                        &inserts,
                    )
                    .await?;
                    sqlx::query(
                        "INSERT INTO search_identities (rowid, value) SELECT id, value FROM identities WHERE id > $1",
                    )
                    .bind(before)
                    .execute(&mut *conn)
                    .await?;
                }
            } else {
                for chunk in plan.identities.chunks(CHUNK) {
                    let mut qb =
                        QueryBuilder::new(format!("INSERT INTO identities ({IDENTITY_COLUMNS}) "));
                    qb.push_values(chunk, |mut b, i| {
                        b.push_bind(i.key.as_str())
                            .push_bind(i.match_key.as_str())
                            .push_bind(i.customer_id.as_str())
                            .push_bind(i.claim.kind.as_str())
                            .push_bind(i.claim.scope.as_str())
                            .push_bind(i.claim.value.as_str())
                            .push_bind(i.first.connector_id.as_str())
                            .push_bind(i.first.raw_event_id)
                            .push_bind(i.first.at)
                            .push_bind(i.last.at)
                            .push_bind(i.last.connector_id.as_str())
                            .push_bind(i.last.raw_event_id)
                            .push_bind(i64::from(i.guard.is_none()))
                            .push_bind(i.guard.map(|g| g.as_str()));
                    });
                    qb.push(IDENTITY_UPSERT);
                    qb.build().execute(&mut *tx).await?;
                }
            }
            for m in &plan.merges {
                let moved: Vec<String> = sqlx::query(
                    "UPDATE customers SET canonical_id = $1, updated_at = $2 WHERE canonical_id = $3 RETURNING id",
                )
                .bind(&m.survivor_id)
                .bind(now)
                .bind(&m.merged_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
                let evidence = serde_json::json!({ "identities": m.evidence.iter().map(|k| k.replace('\u{1f}', ":")).collect::<Vec<_>>() });
                let merge_id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "INSERT INTO customer_merges (id, survivor_id, merged_id, actor, reason, evidence, raw_event_id, created_at, moved_ids) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&merge_id)
                .bind(&m.survivor_id)
                .bind(&m.merged_id)
                .bind("pipeline")
                .bind("an event carried identifiers of both customers")
                .bind(evidence.to_string())
                .bind(m.raw_event_id)
                .bind(now)
                .bind(serde_json::json!(moved).to_string())
                .execute(&mut *tx)
                .await?;
                let payload = serde_json::json!({ "merge_id": merge_id, "survivor_id": m.survivor_id, "merged_id": m.merged_id, "actor": "pipeline", "evidence": evidence });
                append_event!(
                    tx,
                    "customer.merged",
                    None::<&str>,
                    Some(m.survivor_id.as_str()),
                    payload,
                    now
                );
            }
            for (customer, name) in &plan.names {
                sqlx::query("UPDATE customers SET display_name = $1, updated_at = $2 WHERE id = $3 AND display_name IS NULL")
                    .bind(name)
                    .bind(now)
                    .bind(customer)
                    .execute(&mut *tx)
                    .await?;
            }
            stats.identity_write_us = write_started.elapsed().as_micros() as u64;
            stats.identity_us = identity_started.elapsed().as_micros() as u64;

            // The suggester (src/suggest) looks again, outside this transaction, at customers
            // whose weak evidence this batch changed: new customers, names set, new phones,
            // profiles and orders, merge survivors.
            let weak: HashSet<&str> = flat
                .iter()
                .zip(&plan.customers)
                .filter(|((_, _, item), _)| {
                    matches!(item.body, EventBody::Profile(_) | EventBody::Order(_))
                })
                .map(|(_, c)| c.as_str())
                .chain(plan.new_customers.iter().map(|c| c.id.as_str()))
                .chain(plan.names.iter().map(|(c, _)| c.as_str()))
                .chain(
                    plan.new_identities()
                        .filter(|i| i.claim.kind == switchboard_core::ClaimKind::Phone)
                        .map(|i| i.customer_id.as_str()),
                )
                .chain(plan.merges.iter().map(|m| m.survivor_id.as_str()))
                .collect();
            super::suggest::mark_dirty!(tx, weak.into_iter().collect(), now);

            // Conversations: one upsert row per key, carrying the batch's latest message time.
            let mut touched: HashMap<String, ConvTouch> = HashMap::new();
            for ((ev, _, item), (input, customer)) in
                flat.iter().zip(inputs.iter().zip(&plan.customers))
            {
                let (Some(key), Some(thread)) = (&input.conversation_key, &item.thread_key) else {
                    continue;
                };
                let t = touched.entry(key.clone()).or_insert_with(|| ConvTouch {
                    id: conv_ids
                        .get(key)
                        .cloned()
                        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                    connector_id: ev.connector_id.clone(),
                    channel: item.channel.clone(),
                    thread_key: thread.clone(),
                    customer_id: customer.clone(),
                    last_message_at: item.occurred_at,
                    inbound: false,
                });
                t.last_message_at = t.last_message_at.max(item.occurred_at);
                t.inbound |= item.direction == Direction::Inbound;
            }
            stats.conversations = touched.len();
            let touched: Vec<(&String, &ConvTouch)> = touched.iter().collect();
            for chunk in touched.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO conversations (id, conv_key, connector_id, channel, thread_key, customer_id, status, last_message_at, created_at, updated_at) ",
                );
                qb.push_values(chunk, |mut b, (key, t)| {
                    b.push_bind(t.id.as_str())
                        .push_bind(key.as_str())
                        .push_bind(t.connector_id.as_str())
                        .push_bind(t.channel.as_str())
                        .push_bind(t.thread_key.as_str())
                        .push_bind(t.customer_id.as_str())
                        .push_bind("open")
                        .push_bind(t.last_message_at)
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (conv_key) DO UPDATE SET last_message_at = CASE \
                     WHEN excluded.last_message_at > conversations.last_message_at THEN excluded.last_message_at \
                     ELSE conversations.last_message_at END, updated_at = excluded.updated_at",
                );
                qb.build().execute(&mut *tx).await?;
            }
            let conv_id_of: HashMap<&str, &str> = touched
                .iter()
                .map(|(k, t)| (k.as_str(), t.id.as_str()))
                .collect();
            for windowed in [false, true] {
                let rows: Vec<(&threads::RefRow, &str)> = ref_rows
                    .iter()
                    .filter(|r| r.windowed == windowed)
                    .filter_map(|r| conv_id_of.get(r.conv_key.as_str()).map(|id| (r, *id)))
                    .collect();
                for chunk in rows.chunks(CHUNK) {
                    let mut qb = QueryBuilder::new(
                        "INSERT INTO conversation_refs (connector_id, ref, conversation_id, last_at) ",
                    );
                    qb.push_values(chunk, |mut b, (r, conv)| {
                        b.push_bind(r.connector_id.as_str())
                            .push_bind(r.key.as_str())
                            .push_bind(*conv)
                            .push_bind(r.last_at);
                    });
                    // An exact ref keeps its first conversation; a windowed one (a subject)
                    // names the conversation that used it last.
                    qb.push(if windowed {
                        " ON CONFLICT (connector_id, ref) DO UPDATE SET conversation_id = excluded.conversation_id, \
                         last_at = excluded.last_at WHERE excluded.last_at >= conversation_refs.last_at"
                    } else {
                        " ON CONFLICT (connector_id, ref) DO UPDATE SET last_at = excluded.last_at \
                         WHERE excluded.last_at > conversation_refs.last_at"
                    });
                    qb.build().execute(&mut *tx).await?;
                }
            }

            // Business documents (orders, payments …) are entities kept as one current copy;
            // everything else is a timeline entry per item.
            let (documents, rows): (Vec<EntryRow>, Vec<EntryRow>) = flat
                .iter()
                .enumerate()
                .map(|(n, _)| {
                    let conv = inputs[n]
                        .conversation_key
                        .as_deref()
                        .and_then(|k| conv_id_of.get(k).copied());
                    (n, plan.customers[n].clone(), conv)
                })
                .partition(|(n, _, _)| flat[*n].2.body.entity().is_some());
            stats.entries = rows.len();
            stats.entries += apply_documents!(tx, flat, documents, now);
            let mut entry_ids: HashMap<(i64, i64), i64> = HashMap::new();
            for chunk in rows.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO timeline_entries (raw_event_id, item_index, customer_id, conversation_id, connector_id, channel, kind, direction, occurred_at, body, created_at) ",
                );
                qb.push_values(chunk, |mut b, (n, customer, conv)| {
                    let (ev, idx, item) = flat[*n];
                    b.push_bind(ev.raw_event_id)
                        .push_bind(idx as i64)
                        .push_bind(customer.clone())
                        .push_bind(*conv)
                        .push_bind(ev.connector_id.as_str())
                        .push_bind(item.channel.as_str())
                        .push_bind(item.body.kind())
                        .push_bind(item.direction.as_str())
                        .push_bind(item.occurred_at)
                        .push_bind(
                            serde_json::to_string(&item.body).unwrap_or_else(|_| "{}".into()),
                        )
                        .push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (raw_event_id, item_index) DO UPDATE SET kind = excluded.kind, \
                     direction = excluded.direction, channel = excluded.channel, \
                     occurred_at = excluded.occurred_at, body = excluded.body \
                     RETURNING id, raw_event_id, item_index",
                );
                for r in qb.build().fetch_all(&mut *tx).await? {
                    let raw: i64 = r.try_get(1)?;
                    let idx: i64 = r.try_get(2)?;
                    entry_ids.insert((raw, idx), r.try_get::<i64, _>(0)?);
                }
            }
            // Announce new messages (a replay rewrites history quietly), in order, one
            // multi-row insert per chunk.
            let mut announced: Vec<(Option<&str>, &str, String)> = Vec::new();
            for (n, customer, conv) in &rows {
                let (ev, idx, item) = flat[*n];
                if ev.replay || !matches!(item.body, EventBody::Message { .. }) {
                    continue;
                }
                let Some(entry_id) = entry_ids.get(&(ev.raw_event_id, idx as i64)) else {
                    continue;
                };
                let payload = serde_json::json!({
                    "entry_id": entry_id,
                    "conversation_id": conv,
                    "customer_id": customer,
                    "connector_id": ev.connector_id,
                    "channel": item.channel,
                    "direction": item.direction.as_str(),
                    "occurred_at": crate::store::model::rfc3339(item.occurred_at),
                    "body": item.body,
                });
                announced.push((*conv, customer.as_str(), payload.to_string()));
            }
            for chunk in announced.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO events (kind, conversation_id, customer_id, payload, created_at) ",
                );
                qb.push_values(chunk, |mut b, (conv, customer, payload)| {
                    b.push_bind("message.created")
                        .push_bind(*conv)
                        .push_bind(*customer)
                        .push_bind(payload.as_str())
                        .push_bind(now);
                });
                qb.build().execute(&mut *tx).await?;
            }

            // A merged thread's messages land in the survivor, which shows the activity; a
            // customer writing into a conversation that is not open reopens it.
            for (key, t) in &touched {
                let (status, merged) = conv_state
                    .get(*key)
                    .cloned()
                    .unwrap_or_else(|| ("open".into(), false));
                if merged {
                    sqlx::query("UPDATE conversations SET last_message_at = $1, updated_at = $2 WHERE id = $3 AND last_message_at < $1")
                        .bind(t.last_message_at)
                        .bind(now)
                        .bind(&t.id)
                        .execute(&mut *tx)
                        .await?;
                }
                if t.inbound && status != "open" {
                    let r = sqlx::query("UPDATE conversations SET status = 'open', snoozed_until = NULL, updated_at = $1 WHERE id = $2 AND status <> 'open'")
                        .bind(now)
                        .bind(&t.id)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() > 0 {
                        if let Some(c) = load_conv!(tx, t.id.as_str()) {
                            let body = serde_json::json!({ "type": "activity", "action": "status_changed", "from": status, "to": "open", "reason": "customer wrote" });
                            insert_entry!(
                                tx,
                                c,
                                "activity",
                                "internal",
                                body,
                                "system",
                                None::<String>,
                                now
                            );
                        }
                    }
                }
            }
            for (connector, message_id, status, reason) in &statuses {
                let status = status.to_ascii_lowercase();
                apply_status!(tx, *connector, *message_id, status.as_str(), *reason, now);
            }

            let job_ids: Vec<i64> = events.iter().map(|e| e.job_id).collect();
            for chunk in job_ids.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "UPDATE jobs SET state = 'done', locked_until = NULL, finished_at = ",
                );
                qb.push_bind(now);
                qb.push(" WHERE id IN (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(stats)
    }
}

//! Deterministic identity resolution, as a pure plan over one batch of events.
//!
//! The store looks up what it already knows (identity key → canonical customer, conversation
//! key → customer, per-customer identity counts, how many customers carry a value), this
//! module decides, and the store writes the plan in the same transaction. Keeping the
//! decision pure makes it testable without a database.
//!
//! Guards, in priority order (a guard always beats a merge):
//! 1. **Blocklist**: a blocked value (junk like `noreply@…`, or listed in config) never links.
//! 2. **Over-shared**: a value already carried by more than `max_shared` customers neither
//!    picks a customer nor merges.
//! 3. **Cap per kind**: a customer holds at most `max_per_kind[kind]` linking identities of a
//!    kind; a merge that would exceed it is refused, a new value past it does not link.
//! 4. **Unmerged**: customers an agent separated (an unmerge; `Known::apart`) are never
//!    merged again automatically, whatever identifiers a later event carries.
//! 5. **Merge**: the remaining identifiers that point at several customers merge them into
//!    the oldest.
//!
//! When a merge is refused the event goes to the customer of its highest-priority identifier
//! (`priority`, by kind, default platform id > external id > email > phone). A value that
//! links nothing is still recorded on the event's customer (`links = false`, with the guard
//! that stopped it), so agents see it and the sharing count stays true.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use switchboard_core::{ClaimKind, IdentityClaim};

use crate::domain::Blocklist;

/// The unique key of an identity: kind, scope and normalised value.
pub fn identity_key(c: &IdentityClaim) -> String {
    format!("{}\u{1f}{}\u{1f}{}", c.kind.as_str(), c.scope, c.value)
}

/// The row key of a value recorded on a customer without linking: one row per customer.
pub fn unlinked_key(match_key: &str, customer_id: &str) -> String {
    format!("{match_key}\u{1f}{customer_id}")
}

/// The unique key of a conversation: connector and thread.
pub fn conversation_key(connector_id: &str, thread_key: &str) -> String {
    format!("{connector_id}\u{1f}{thread_key}")
}

/// The guards of automatic linking (see the module doc for their order).
#[derive(Debug, Clone, PartialEq)]
pub struct Guards {
    pub blocklist: Blocklist,
    /// Linking identities of one kind a customer may hold; kinds not listed are uncapped.
    pub max_per_kind: BTreeMap<String, usize>,
    /// A value carried by more than this many customers no longer links or merges.
    pub max_shared: usize,
    /// Kinds from most to least trusted; decides where an event goes when a merge is refused.
    pub priority: Vec<ClaimKind>,
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            blocklist: Blocklist::default(),
            max_per_kind: [("email".to_string(), 5), ("phone".to_string(), 5)]
                .into_iter()
                .collect(),
            max_shared: 3,
            priority: vec![
                ClaimKind::PlatformId,
                ClaimKind::ExternalId,
                ClaimKind::Email,
                ClaimKind::Phone,
            ],
        }
    }
}

impl Guards {
    fn cap(&self, kind: ClaimKind) -> usize {
        self.max_per_kind
            .get(kind.as_str())
            .copied()
            .unwrap_or(usize::MAX)
    }
    fn rank(&self, kind: ClaimKind) -> usize {
        self.priority
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(self.priority.len())
    }
}

/// One event's identity input: its normalised claims and, if it has one, its conversation.
#[derive(Debug, Clone)]
pub struct EventClaims {
    pub connector_id: String,
    pub raw_event_id: i64,
    pub claims: Vec<IdentityClaim>,
    pub conversation_key: Option<String>,
    pub occurred_at: i64,
}

/// What the store already knows, canonicalised.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// identity key → canonical customer id
    pub identities: HashMap<String, String>,
    /// conversation key → canonical customer id of its customer
    pub conversations: HashMap<String, String>,
    /// Customers that already have a display name.
    pub named: HashSet<String>,
    /// (canonical customer, kind) → linking identities of that kind.
    pub counts: HashMap<(String, ClaimKind), usize>,
    /// identity key → how many canonical customers carry the value (linked or not).
    pub holders: HashMap<String, usize>,
    /// The existing customers whose `counts` were loaded; `None`: all that `plan` can need.
    /// With `Some`, `plan` notes in `count_misses` every existing customer whose counts it
    /// needed but that is not here; the caller then loads them and plans again.
    pub counted: Option<HashSet<String>>,
    /// Existing customers `plan` needed counts of and did not have (see `counted`).
    pub count_misses: HashSet<String>,
    /// Pairs of canonical customers (smaller id first) that an agent separated by an unmerge:
    /// never merged automatically again.
    pub apart: HashSet<(String, String)>,
    /// Refuse every merge (the caller's last resort; see `store::apply`).
    pub refuse_all_merges: bool,
}

impl Known {
    /// The existing customers whose guard counts `plan` may need: the known owners and the
    /// conversation customer of each event that brings an identifier not known yet (a new
    /// identity counts against its customer's cap) or whose identifiers point at two or more
    /// customers (a merge sums their counts). Events whose identifiers are all known and
    /// point at one customer need none, which is most events once a base is built. A miss
    /// (a customer reached only through the batch's own earlier events) is caught by `plan`.
    pub fn customers_needing_counts(&self, events: &[EventClaims]) -> HashSet<String> {
        let mut out = HashSet::new();
        for ev in events {
            let mut owners: Vec<&String> = Vec::new();
            let mut unknown = false;
            for c in ev.claims.iter().filter(|c| c.kind.is_strong()) {
                match self.identities.get(&identity_key(c)) {
                    Some(o) => owners.push(o),
                    None => unknown = true,
                }
            }
            owners.sort();
            owners.dedup();
            if unknown || owners.len() > 1 {
                out.extend(owners.into_iter().cloned());
                if let Some(c) = ev
                    .conversation_key
                    .as_ref()
                    .and_then(|k| self.conversations.get(k))
                {
                    out.insert(c.clone());
                }
            }
        }
        out
    }

    /// Notes a miss when the counts of existing customer `c` are needed but were not loaded.
    fn need_counts(&mut self, c: &str, fresh: &HashSet<String>) {
        if let Some(counted) = &self.counted {
            if !counted.contains(c) && !fresh.contains(c) {
                self.count_misses.insert(c.to_string());
            }
        }
    }
}

/// Why a value was recorded without linking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Blocked,
    Shared,
    Capped,
}

impl Guard {
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::Blocked => "blocked",
            Guard::Shared => "shared",
            Guard::Capped => "capped",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomer {
    pub id: String,
    pub display_name: Option<String>,
}

/// Where and when an identity was seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    pub connector_id: String,
    pub raw_event_id: i64,
    pub at: i64,
}

/// One identity row to upsert: inserted when new, else only its last sighting moves on.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityRow {
    /// The row's unique key: the identity key when it links, else per customer.
    pub key: String,
    pub match_key: String,
    pub customer_id: String,
    pub claim: IdentityClaim,
    /// `None`: a linking identity; else the guard that kept it from linking.
    pub guard: Option<Guard>,
    /// Whether the row already existed (only its last sighting is written).
    pub known: bool,
    pub first: Sighting,
    pub last: Sighting,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    pub survivor_id: String,
    pub merged_id: String,
    /// The identity keys of the event that linked the two.
    pub evidence: Vec<String>,
    pub raw_event_id: i64,
}

/// A merge a guard stopped, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedMerge {
    pub customers: Vec<String>,
    /// The kind over its cap; for a refusal because an agent separated two of the customers
    /// (`apart`), the kind of the event's most trusted identifier.
    pub kind: ClaimKind,
    /// Refused because two of the customers were separated by an unmerge.
    pub apart: bool,
    pub raw_event_id: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub new_customers: Vec<NewCustomer>,
    /// Every identity the batch saw, one row per key.
    pub identities: Vec<IdentityRow>,
    pub merges: Vec<Merge>,
    pub refused: Vec<RefusedMerge>,
    /// (customer id, name) to set where the customer has no display name yet.
    pub names: Vec<(String, String)>,
    /// The customer each event belongs to, by position in the input.
    pub customers: Vec<String>,
}

impl Plan {
    /// Identity rows that did not exist before the batch.
    pub fn new_identities(&self) -> impl Iterator<Item = &IdentityRow> {
        self.identities.iter().filter(|i| !i.known)
    }
}

/// Resolves every event to one customer. Strong claims that are already known pick the
/// customer; claims that point at several customers merge them into the oldest (ids are
/// time-ordered UUIDv7, so the smallest id is the oldest) unless a guard refuses; an event
/// without any known strong claim falls back to its conversation's customer, else a new
/// customer.
pub fn plan(
    events: &[EventClaims],
    known: &mut Known,
    guards: &Guards,
    mut new_id: impl FnMut() -> String,
) -> Plan {
    let mut p = Plan::default();
    // row key → index in p.identities
    let mut rows: HashMap<String, usize> = HashMap::new();
    // Customers this plan creates: no stored counts to load.
    let mut fresh: HashSet<String> = HashSet::new();
    for ev in events {
        let sighting = Sighting {
            connector_id: ev.connector_id.clone(),
            raw_event_id: ev.raw_event_id,
            at: ev.occurred_at,
        };
        let mut strong: Vec<(&IdentityClaim, String, Option<Guard>)> = Vec::new();
        for c in ev.claims.iter().filter(|c| c.kind.is_strong()) {
            let key = identity_key(c);
            if strong.iter().any(|(_, k, _)| *k == key) {
                continue;
            }
            let guard = if guards.blocklist.is_blocked(&c.value) {
                Some(Guard::Blocked)
            } else if known.holders.get(&key).copied().unwrap_or(0) > guards.max_shared {
                Some(Guard::Shared)
            } else {
                None
            };
            strong.push((c, key, guard));
        }
        let keys: Vec<String> = strong
            .iter()
            .filter(|(_, _, g)| g.is_none())
            .map(|(_, k, _)| k.clone())
            .collect();
        // Known linkable identifiers, most trusted kind first.
        let mut owners: Vec<(usize, String)> = strong
            .iter()
            .filter(|(_, _, g)| g.is_none())
            .filter_map(|(c, k, _)| {
                known
                    .identities
                    .get(k)
                    .map(|o| (guards.rank(c.kind), o.clone()))
            })
            .collect();
        owners.sort_by_key(|(r, _)| *r);
        let matched: BTreeSet<String> = owners.iter().map(|(_, o)| o.clone()).collect();
        let name = ev
            .claims
            .iter()
            .find(|c| c.kind == ClaimKind::Name)
            .map(|c| c.value.clone());

        let was_known: HashSet<&String> = strong
            .iter()
            .map(|(_, k, _)| k)
            .filter(|k| known.identities.contains_key(*k))
            .collect();
        let customer = match matched.len() {
            0 => match ev
                .conversation_key
                .as_ref()
                .and_then(|k| known.conversations.get(k))
            {
                Some(c) => c.clone(),
                None => {
                    let id = new_id();
                    fresh.insert(id.clone());
                    p.new_customers.push(NewCustomer {
                        id: id.clone(),
                        display_name: name.clone(),
                    });
                    id
                }
            },
            1 => matched.iter().next().cloned().unwrap_or_default(),
            _ => match separated(known, &matched)
                .then(|| strong.first().map(|(c, _, _)| c.kind))
                .flatten()
                .map(|k| (k, true))
                .or_else(|| {
                    over_cap_noting_misses(known, guards, &matched, &fresh).map(|k| (k, false))
                }) {
                Some((kind, apart)) => {
                    p.refused.push(RefusedMerge {
                        customers: matched.iter().cloned().collect(),
                        kind,
                        apart,
                        raw_event_id: ev.raw_event_id,
                    });
                    owners.first().map(|(_, o)| o.clone()).unwrap_or_default()
                }
                None => {
                    let mut it = matched.iter();
                    let survivor = it.next().cloned().unwrap_or_default();
                    for merged in it {
                        p.merges.push(Merge {
                            survivor_id: survivor.clone(),
                            merged_id: merged.clone(),
                            evidence: keys.clone(),
                            raw_event_id: ev.raw_event_id,
                        });
                        redirect(known, &mut p, merged, &survivor);
                    }
                    survivor
                }
            },
        };
        for (claim, key, guard) in &strong {
            let mut guard = *guard;
            match (guard, known.identities.get(key)) {
                // Known and linking: its owner is (now) this customer unless a merge was
                // refused, in which case it is shared by one more customer.
                (None, Some(owner)) if *owner != customer => guard = Some(Guard::Shared),
                (None, Some(_)) => {}
                (None, None) => {
                    known.need_counts(&customer, &fresh);
                    let n = known
                        .counts
                        .entry((customer.clone(), claim.kind))
                        .or_default();
                    if *n >= guards.cap(claim.kind) {
                        guard = Some(Guard::Capped);
                    } else {
                        *n += 1;
                        known.identities.insert(key.clone(), customer.clone());
                    }
                }
                (Some(_), _) => {}
            }
            let row_key = match guard {
                None => key.clone(),
                Some(_) => unlinked_key(key, &customer),
            };
            match rows.get(&row_key) {
                Some(&i) => {
                    if p.identities[i].last.at <= sighting.at {
                        p.identities[i].last = sighting.clone();
                    }
                }
                None => {
                    let known_row = guard.is_none() && was_known.contains(&key);
                    if guard.is_some() {
                        // One more customer carries the value.
                        *known.holders.entry(key.clone()).or_insert(1) += 1;
                    }
                    rows.insert(row_key.clone(), p.identities.len());
                    p.identities.push(IdentityRow {
                        key: row_key,
                        match_key: key.clone(),
                        customer_id: customer.clone(),
                        claim: (*claim).clone(),
                        guard,
                        known: known_row,
                        first: sighting.clone(),
                        last: sighting.clone(),
                    });
                }
            }
        }
        if let Some(k) = &ev.conversation_key {
            known
                .conversations
                .entry(k.clone())
                .or_insert_with(|| customer.clone());
        }
        if let Some(n) = name {
            if known.named.insert(customer.clone()) {
                match p.new_customers.iter_mut().find(|c| c.id == customer) {
                    Some(c) => c.display_name = Some(n),
                    None => p.names.push((customer.clone(), n)),
                }
            }
        }
        p.customers.push(customer);
    }
    p
}

/// Whether two of `customers` were separated by an unmerge (or every merge is refused).
fn separated(known: &Known, customers: &BTreeSet<String>) -> bool {
    known.refuse_all_merges
        || customers.iter().any(|a| {
            customers
                .range::<String, _>((
                    std::ops::Bound::Excluded(a.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .any(|b| known.apart.contains(&(a.clone(), b.clone())))
        })
}

/// [`over_cap`], after noting the customers whose counts were not loaded (see `Known::counted`).
fn over_cap_noting_misses(
    known: &mut Known,
    guards: &Guards,
    customers: &BTreeSet<String>,
    fresh: &HashSet<String>,
) -> Option<ClaimKind> {
    for c in customers {
        known.need_counts(c, fresh);
    }
    over_cap(known, guards, customers)
}

/// The first kind whose linking identities, summed over the customers, exceed its cap.
fn over_cap(known: &Known, guards: &Guards, customers: &BTreeSet<String>) -> Option<ClaimKind> {
    guards.priority.iter().copied().find(|kind| {
        let total: usize = customers
            .iter()
            .map(|c| known.counts.get(&(c.clone(), *kind)).copied().unwrap_or(0))
            .sum();
        total > guards.cap(*kind)
    })
}

/// After `merged` becomes an alias of `survivor`, everything that pointed at it points on.
fn redirect(known: &mut Known, p: &mut Plan, merged: &str, survivor: &str) {
    for v in known
        .identities
        .values_mut()
        .chain(known.conversations.values_mut())
    {
        if v == merged {
            *v = survivor.to_string();
        }
    }
    for v in p.customers.iter_mut() {
        if v == merged {
            *v = survivor.to_string();
        }
    }
    for i in p.identities.iter_mut() {
        if i.customer_id == merged && i.guard.is_none() {
            i.customer_id = survivor.to_string();
        }
    }
    let kinds: Vec<ClaimKind> = known
        .counts
        .keys()
        .filter(|(c, _)| c == merged)
        .map(|(_, k)| *k)
        .collect();
    for k in kinds {
        let n = known.counts.remove(&(merged.to_string(), k)).unwrap_or(0);
        *known.counts.entry((survivor.to_string(), k)).or_default() += n;
    }
}

/// The alias model of merges, as the store runs it in SQL: every customer record points at
/// its canonical customer. A merge moves the merged customer and its own aliases to the
/// survivor and returns them; an unmerge moves back exactly those of them that are still
/// with the survivor's group (a later unmerge of an inner merge may already have freed some).
/// Used by the property tests; the SQL in `store::identity` is the same two statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    pub canonical: BTreeMap<String, String>,
}

impl Aliases {
    pub fn add(&mut self, id: &str) {
        self.canonical.insert(id.to_string(), id.to_string());
    }
    pub fn canonical_of(&self, id: &str) -> Option<&String> {
        self.canonical.get(id)
    }
    /// `survivor` and `merged` must be canonical and different.
    pub fn merge(&mut self, survivor: &str, merged: &str) -> Vec<String> {
        let mut moved = Vec::new();
        for (id, c) in self.canonical.iter_mut() {
            if c == merged {
                *c = survivor.to_string();
                moved.push(id.clone());
            }
        }
        moved
    }
    pub fn unmerge(&mut self, survivor: &str, merged: &str, moved: &[String]) {
        let Some(group) = self.canonical.get(survivor).cloned() else {
            return;
        };
        for id in moved {
            if let Some(c) = self.canonical.get_mut(id) {
                if *c == group {
                    *c = merged.to_string();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(raw: i64, claims: Vec<IdentityClaim>, conv: Option<&str>) -> EventClaims {
        EventClaims {
            connector_id: "c".into(),
            raw_event_id: raw,
            claims,
            conversation_key: conv.map(str::to_string),
            occurred_at: raw,
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("cust-{n:03}")
        }
    }

    #[test]
    fn unknown_claims_create_one_customer_and_later_events_find_it() {
        let mut known = Known::default();
        let p = plan(
            &[
                ev(
                    1,
                    vec![IdentityClaim::email("a@x.io"), IdentityClaim::name("Ada")],
                    None,
                ),
                ev(
                    2,
                    vec![
                        IdentityClaim::email("a@x.io"),
                        IdentityClaim::phone("+14155552671"),
                    ],
                    None,
                ),
            ],
            &mut known,
            &Guards::default(),
            ids(),
        );
        assert_eq!(
            p.new_customers,
            vec![NewCustomer {
                id: "cust-001".into(),
                display_name: Some("Ada".into())
            }]
        );
        assert_eq!(p.customers, vec!["cust-001", "cust-001"]);
        assert_eq!(p.new_identities().count(), 2, "email once, phone once");
        assert!(p.merges.is_empty());
    }

    #[test]
    fn an_event_linking_two_customers_merges_into_the_oldest_with_evidence() {
        let mut known = Known::default();
        let p = plan(
            &[
                ev(1, vec![IdentityClaim::email("a@x.io")], None),
                ev(2, vec![IdentityClaim::phone("+14155552671")], None),
                ev(
                    3,
                    vec![
                        IdentityClaim::phone("+14155552671"),
                        IdentityClaim::email("a@x.io"),
                    ],
                    None,
                ),
                ev(4, vec![IdentityClaim::phone("+14155552671")], None),
            ],
            &mut known,
            &Guards::default(),
            ids(),
        );
        assert_eq!(p.new_customers.len(), 2);
        assert_eq!(p.merges.len(), 1);
        let m = &p.merges[0];
        assert_eq!(
            (m.survivor_id.as_str(), m.merged_id.as_str(), m.raw_event_id),
            ("cust-001", "cust-002", 3)
        );
        assert_eq!(m.evidence.len(), 2);
        assert_eq!(
            p.customers,
            vec!["cust-001", "cust-001", "cust-001", "cust-001"]
        );
        assert!(p.new_identities().all(|i| i.customer_id == "cust-001"));
    }

    #[test]
    fn weak_claims_never_match_and_anonymous_events_follow_their_conversation() {
        let mut known = Known::default();
        known
            .conversations
            .insert("c\u{1f}t1".into(), "cust-old".into());
        let p = plan(
            &[
                ev(1, vec![IdentityClaim::name("Ada")], Some("c\u{1f}t1")),
                ev(2, vec![IdentityClaim::name("Ada")], None),
                ev(3, vec![IdentityClaim::name("Ada")], None),
            ],
            &mut known,
            &Guards::default(),
            ids(),
        );
        assert_eq!(p.customers, vec!["cust-old", "cust-001", "cust-002"]);
        assert_eq!(p.names, vec![("cust-old".to_string(), "Ada".to_string())]);
    }

    #[test]
    fn platform_ids_in_different_scopes_are_different_people() {
        let mut known = Known::default();
        let p = plan(
            &[
                ev(
                    1,
                    vec![IdentityClaim::platform_id("messenger:page1", "123")],
                    None,
                ),
                ev(
                    2,
                    vec![IdentityClaim::platform_id("messenger:page2", "123")],
                    None,
                ),
            ],
            &mut known,
            &Guards::default(),
            ids(),
        );
        assert_eq!(p.new_customers.len(), 2);
        assert!(p.merges.is_empty());
    }

    fn guards(f: impl FnOnce(&mut Guards)) -> Guards {
        let mut g = Guards::default();
        f(&mut g);
        g
    }

    #[test]
    fn a_known_identity_seen_again_moves_its_last_sighting_only() {
        let mut known = Known::default();
        known
            .identities
            .insert(identity_key(&IdentityClaim::email("a@x.io")), "c0".into());
        let p = plan(
            &[
                ev(5, vec![IdentityClaim::email("a@x.io")], None),
                ev(9, vec![IdentityClaim::email("a@x.io")], None),
                ev(7, vec![IdentityClaim::email("a@x.io")], None),
            ],
            &mut known,
            &Guards::default(),
            ids(),
        );
        assert_eq!(p.identities.len(), 1, "one row per key per batch");
        let row = &p.identities[0];
        assert!(row.known);
        assert_eq!((row.first.raw_event_id, row.last.raw_event_id), (5, 9));
        assert_eq!(p.new_identities().count(), 0);
    }

    #[test]
    fn a_blocked_value_is_recorded_on_each_customer_but_links_nothing() {
        let mut known = Known::default();
        let g = guards(|g| g.blocklist = Blocklist(vec!["+14155550000".into()]));
        let p = plan(
            &[
                ev(
                    1,
                    vec![
                        IdentityClaim::email("a@x.io"),
                        IdentityClaim::phone("+14155550000"),
                    ],
                    None,
                ),
                ev(
                    2,
                    vec![
                        IdentityClaim::email("b@x.io"),
                        IdentityClaim::phone("+14155550000"),
                    ],
                    None,
                ),
            ],
            &mut known,
            &g,
            ids(),
        );
        assert_eq!(p.customers, vec!["cust-001", "cust-002"]);
        assert!(p.merges.is_empty());
        let blocked: Vec<&IdentityRow> = p
            .identities
            .iter()
            .filter(|i| i.guard == Some(Guard::Blocked))
            .collect();
        assert_eq!(blocked.len(), 2, "on both customers");
        assert_ne!(blocked[0].key, blocked[1].key);
    }

    #[test]
    fn a_merge_past_the_cap_is_refused_and_the_event_goes_to_the_most_trusted_identifier() {
        let mut known = Known::default();
        let g = guards(|g| {
            g.max_per_kind.insert("email".into(), 2);
        });
        let a = identity_key(&IdentityClaim::email("a@x.io"));
        let b = identity_key(&IdentityClaim::external_id("shop", "42"));
        known.identities.insert(a.clone(), "c-a".into());
        known.identities.insert(b.clone(), "c-b".into());
        known.counts.insert(("c-a".into(), ClaimKind::Email), 2);
        known.counts.insert(("c-b".into(), ClaimKind::Email), 1);
        let p = plan(
            &[ev(
                3,
                vec![
                    IdentityClaim::email("a@x.io"),
                    IdentityClaim::external_id("shop", "42"),
                ],
                None,
            )],
            &mut known,
            &g,
            ids(),
        );
        assert!(p.merges.is_empty());
        assert_eq!(p.refused.len(), 1);
        assert_eq!(p.refused[0].kind, ClaimKind::Email);
        assert_eq!(p.customers, vec!["c-b"], "external id outranks email");
        let shared = p.identities.iter().find(|i| i.match_key == a).unwrap();
        assert_eq!(shared.guard, Some(Guard::Shared));
        assert_eq!(shared.customer_id, "c-b");
        assert_eq!(known.holders.get(&a), Some(&2));
    }

    #[test]
    fn customers_kept_apart_are_not_merged_and_the_event_goes_to_the_most_trusted_identifier() {
        let mut known = Known::default();
        let a = identity_key(&IdentityClaim::email("a@x.io"));
        let b = identity_key(&IdentityClaim::phone("+14155550000"));
        known.identities.insert(a, "c-a".into());
        known.identities.insert(b.clone(), "c-b".into());
        known.apart.insert(("c-a".into(), "c-b".into()));
        let both = ev(
            3,
            vec![
                IdentityClaim::phone("+14155550000"),
                IdentityClaim::email("a@x.io"),
            ],
            None,
        );
        let p = plan(
            std::slice::from_ref(&both),
            &mut known,
            &Guards::default(),
            ids(),
        );
        assert!(p.merges.is_empty());
        assert_eq!(p.refused.len(), 1);
        assert!(p.refused[0].apart);
        assert_eq!(p.customers, vec!["c-a"], "email outranks phone");
        let phone = p.identities.iter().find(|i| i.match_key == b).unwrap();
        assert_eq!(phone.guard, Some(Guard::Shared));
        // Without the pair, the same event merges them.
        known.apart.clear();
        let p = plan(&[both], &mut known, &Guards::default(), ids());
        assert_eq!(p.merges.len(), 1);
    }

    #[test]
    fn counts_are_needed_only_for_customers_a_new_identifier_or_a_merge_can_reach() {
        let mut known = Known::default();
        let a = identity_key(&IdentityClaim::email("a@x.io"));
        let b = identity_key(&IdentityClaim::email("b@x.io"));
        known.identities.insert(a, "c-a".into());
        known.identities.insert(b, "c-b".into());
        known.conversations.insert("conv-c".into(), "c-c".into());
        known.conversations.insert("conv-d".into(), "c-d".into());
        let events = [
            // all known, one owner: no counts needed
            ev(1, vec![IdentityClaim::email("a@x.io")], Some("conv-d")),
            // a new phone on a known customer
            ev(
                2,
                vec![
                    IdentityClaim::email("b@x.io"),
                    IdentityClaim::phone("+14155550000"),
                ],
                None,
            ),
            // unknown email in a known conversation
            ev(3, vec![IdentityClaim::email("new@x.io")], Some("conv-c")),
            // weak claims only: nothing to count
            ev(4, vec![IdentityClaim::name("Ada")], Some("conv-d")),
        ];
        let need = known.customers_needing_counts(&events);
        let mut need: Vec<&str> = need.iter().map(String::as_str).collect();
        need.sort();
        assert_eq!(need, vec!["c-b", "c-c"]);
    }

    #[test]
    fn a_customer_reached_only_through_the_batch_itself_is_reported_as_a_count_miss() {
        let mut known = Known::default();
        let a = identity_key(&IdentityClaim::email("a@x.io"));
        known.identities.insert(a, "c-a".into());
        known.counted = Some(HashSet::new());
        // Event 1 (all known) puts conversation t on c-a; event 2 has only a new phone in
        // conversation t, so it lands on c-a and needs c-a's phone count.
        let events = [
            ev(1, vec![IdentityClaim::email("a@x.io")], Some("t")),
            ev(2, vec![IdentityClaim::phone("+14155550000")], Some("t")),
        ];
        assert!(known.customers_needing_counts(&events).is_empty());
        let p = plan(&events, &mut known, &Guards::default(), ids());
        assert_eq!(p.customers, vec!["c-a", "c-a"]);
        assert_eq!(
            known.count_misses.iter().collect::<Vec<_>>(),
            vec!["c-a"],
            "the caller must load c-a's counts and plan again"
        );
        // A customer the plan creates itself never misses.
        let mut fresh = Known {
            counted: Some(HashSet::new()),
            ..Known::default()
        };
        plan(
            &[ev(
                1,
                vec![
                    IdentityClaim::email("z@x.io"),
                    IdentityClaim::phone("+14155550001"),
                ],
                None,
            )],
            &mut fresh,
            &Guards::default(),
            ids(),
        );
        assert!(fresh.count_misses.is_empty());
    }

    #[test]
    fn a_new_value_past_the_cap_is_recorded_but_does_not_link() {
        let mut known = Known::default();
        let g = guards(|g| {
            g.max_per_kind.insert("phone".into(), 1);
        });
        let p = plan(
            &[ev(
                1,
                vec![
                    IdentityClaim::email("a@x.io"),
                    IdentityClaim::phone("+14155552671"),
                    IdentityClaim::phone("+14155552672"),
                ],
                None,
            )],
            &mut known,
            &g,
            ids(),
        );
        let guards: Vec<Option<Guard>> = p.identities.iter().map(|i| i.guard).collect();
        assert_eq!(guards, vec![None, None, Some(Guard::Capped)]);
        assert!(!known
            .identities
            .contains_key(&identity_key(&IdentityClaim::phone("+14155552672"))));
    }

    #[test]
    fn an_over_shared_value_neither_picks_a_customer_nor_merges() {
        let mut known = Known::default();
        let shop = identity_key(&IdentityClaim::phone("+14155552671"));
        known.identities.insert(shop.clone(), "c-shop".into());
        known.holders.insert(shop.clone(), 4);
        let a = identity_key(&IdentityClaim::email("a@x.io"));
        known.identities.insert(a, "c-a".into());
        let p = plan(
            &[
                ev(1, vec![IdentityClaim::phone("+14155552671")], None),
                ev(
                    2,
                    vec![
                        IdentityClaim::phone("+14155552671"),
                        IdentityClaim::email("a@x.io"),
                    ],
                    None,
                ),
            ],
            &mut known,
            &guards(|g| g.max_shared = 3),
            ids(),
        );
        assert!(p.merges.is_empty());
        assert_eq!(p.customers, vec!["cust-001", "c-a"]);
        assert!(p
            .identities
            .iter()
            .filter(|i| i.match_key == shop)
            .all(|i| i.guard == Some(Guard::Shared)));
    }

    /// A small deterministic generator (xorshift), so the property runs are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn property_undoing_any_merges_in_any_order_equals_never_having_made_them() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let n = 2 + rng.next(9);
            let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let mut g = Aliases::default();
            for id in &ids {
                g.add(id);
            }
            let original = g.clone();
            // Random merges between distinct groups, each recorded with what it moved.
            let mut merges: Vec<(String, String, Vec<String>)> = Vec::new();
            for _ in 0..rng.next(2 * n) {
                let roots: Vec<String> = g
                    .canonical
                    .iter()
                    .filter(|(k, v)| k == v)
                    .map(|(k, _)| k.clone())
                    .collect();
                if roots.len() < 2 {
                    break;
                }
                let s = roots[rng.next(roots.len())].clone();
                let m = roots[rng.next(roots.len())].clone();
                if s == m {
                    continue;
                }
                let moved = g.merge(&s, &m);
                merges.push((s, m, moved));
            }
            // Undo a random subset in a random order ...
            let mut undo: Vec<usize> = (0..merges.len()).filter(|_| rng.next(2) == 0).collect();
            for i in (1..undo.len()).rev() {
                undo.swap(i, rng.next(i + 1));
            }
            let mut after = g.clone();
            for &i in &undo {
                let (s, m, moved) = &merges[i];
                after.unmerge(s, m, moved);
            }
            // ... equals replaying only the merges that were kept, in their order.
            let mut replay = original.clone();
            for (i, (s, m, _)) in merges.iter().enumerate() {
                if !undo.contains(&i) {
                    replay.merge(s, m);
                }
            }
            assert_eq!(
                after, replay,
                "seed {seed}: merges {merges:?}, undone {undo:?}"
            );
            // Undoing everything restores the original state exactly.
            let mut all = g.clone();
            for (s, m, moved) in merges.iter().rev() {
                all.unmerge(s, m, moved);
            }
            assert_eq!(all, original, "seed {seed}");
        }
    }
}

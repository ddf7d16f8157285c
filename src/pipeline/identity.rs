//! Deterministic identity resolution, as a pure plan over one batch of events.
//!
//! The store looks up what it already knows (identity key → canonical customer, conversation
//! key → customer), this module decides, and the store writes the plan in the same
//! transaction. Keeping the decision pure makes it testable without a database.

use std::collections::{BTreeSet, HashMap, HashSet};

use switchboard_core::{ClaimKind, IdentityClaim};

/// The unique key of an identity: kind, scope and normalised value.
pub fn identity_key(c: &IdentityClaim) -> String {
    format!("{}\u{1f}{}\u{1f}{}", c.kind.as_str(), c.scope, c.value)
}

/// The unique key of a conversation: connector and thread.
pub fn conversation_key(connector_id: &str, thread_key: &str) -> String {
    format!("{connector_id}\u{1f}{thread_key}")
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomer {
    pub id: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewIdentity {
    pub key: String,
    pub customer_id: String,
    pub claim: IdentityClaim,
    pub connector_id: String,
    pub raw_event_id: i64,
    pub seen_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    pub survivor_id: String,
    pub merged_id: String,
    /// The identity keys of the event that linked the two.
    pub evidence: Vec<String>,
    pub raw_event_id: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub new_customers: Vec<NewCustomer>,
    pub new_identities: Vec<NewIdentity>,
    pub merges: Vec<Merge>,
    /// (customer id, name) to set where the customer has no display name yet.
    pub names: Vec<(String, String)>,
    /// The customer each event belongs to, by position in the input.
    pub customers: Vec<String>,
}

/// Resolves every event to one customer. Strong claims that are already known pick the
/// customer; claims that point at several customers merge them into the oldest (ids are
/// time-ordered UUIDv7, so the smallest id is the oldest); an event without any known strong
/// claim falls back to its conversation's customer, else a new customer.
pub fn plan(events: &[EventClaims], known: &mut Known, mut new_id: impl FnMut() -> String) -> Plan {
    let mut p = Plan::default();
    for ev in events {
        let strong: Vec<&IdentityClaim> = ev.claims.iter().filter(|c| c.kind.is_strong()).collect();
        let keys: Vec<String> = strong.iter().map(|c| identity_key(c)).collect();
        let matched: BTreeSet<String> = keys
            .iter()
            .filter_map(|k| known.identities.get(k).cloned())
            .collect();
        let name = ev
            .claims
            .iter()
            .find(|c| c.kind == ClaimKind::Name)
            .map(|c| c.value.clone());

        let customer = match matched.len() {
            0 => match ev
                .conversation_key
                .as_ref()
                .and_then(|k| known.conversations.get(k))
            {
                Some(c) => c.clone(),
                None => {
                    let id = new_id();
                    p.new_customers.push(NewCustomer {
                        id: id.clone(),
                        display_name: name.clone(),
                    });
                    id
                }
            },
            1 => matched.iter().next().cloned().unwrap_or_default(),
            _ => {
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
        };
        for (claim, key) in strong.iter().zip(&keys) {
            if !known.identities.contains_key(key) {
                known.identities.insert(key.clone(), customer.clone());
                p.new_identities.push(NewIdentity {
                    key: key.clone(),
                    customer_id: customer.clone(),
                    claim: (*claim).clone(),
                    connector_id: ev.connector_id.clone(),
                    raw_event_id: ev.raw_event_id,
                    seen_at: ev.occurred_at,
                });
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
    for i in p.new_identities.iter_mut() {
        if i.customer_id == merged {
            i.customer_id = survivor.to_string();
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
        assert_eq!(p.new_identities.len(), 2, "email once, phone once");
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
        assert!(p.new_identities.iter().all(|i| i.customer_id == "cust-001"));
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
            ids(),
        );
        assert_eq!(p.new_customers.len(), 2);
        assert!(p.merges.is_empty());
    }
}

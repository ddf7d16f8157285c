//! Threading by refs (`NormalizedEvent::thread_refs`): other keys a conversation is known by,
//! such as email Message-IDs. The pure half of it: which conversation each event of a batch
//! joins, and which refs to record. `apply_batch` reads and writes `conversation_refs`.

use std::collections::HashMap;

use switchboard_core::NormalizedEvent;

use crate::pipeline::identity::EventClaims;

/// Refs kept per event (a long References chain is already bounded by its connector).
const MAX_REFS: usize = 100;
const MAX_REF_LEN: usize = 1000;

/// `(connector_id, ref)` → `(conversation key, last_at)`.
pub(crate) type KnownRefs = HashMap<(String, String), (String, i64)>;

/// A ref and, for `window:<seconds>:<key>`, its window in milliseconds.
pub(crate) fn parse_ref(r: &str) -> Option<(&str, Option<i64>)> {
    if r.is_empty() || r.len() > MAX_REF_LEN {
        return None;
    }
    if let Some(rest) = r.strip_prefix("window:") {
        let (secs, key) = rest.split_once(':')?;
        let secs: i64 = secs.parse().ok().filter(|s| *s > 0)?;
        return (!key.is_empty()).then_some((key, Some(secs.saturating_mul(1000))));
    }
    Some((r, None))
}

/// The `(connector, ref)` pairs to look up for a batch.
pub(crate) fn lookup_keys<'a>(
    items: impl Iterator<Item = (&'a str, &'a NormalizedEvent)>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (connector, item) in items {
        if item.thread_key.is_none() {
            continue;
        }
        for r in item.thread_refs.iter().take(MAX_REFS) {
            if let Some((key, _)) = parse_ref(r) {
                if seen.insert((connector, key)) {
                    out.push((connector.to_string(), key.to_string()));
                }
            }
        }
    }
    out
}

/// One ref to record: the conversation (by key) it names now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefRow {
    pub connector_id: String,
    pub key: String,
    pub conv_key: String,
    pub last_at: i64,
    /// Windowed refs move to the conversation that used them last; exact ones never move.
    pub windowed: bool,
}

/// In batch order: an event whose exact ref (or, failing that, a windowed ref within its
/// window) names a known conversation joins it (its `conversation_key` is replaced); then all
/// its refs are recorded for the conversation it is in, so later events of the same batch find
/// them too. Returns the refs to write.
pub(crate) fn join(
    items: &[&NormalizedEvent],
    inputs: &mut [EventClaims],
    known: &mut KnownRefs,
) -> Vec<RefRow> {
    let mut touched: Vec<(String, String, bool)> = Vec::new();
    for (item, input) in items.iter().zip(inputs.iter_mut()) {
        let Some(own_key) = input.conversation_key.clone() else {
            continue;
        };
        if item.thread_refs.is_empty() {
            continue;
        }
        let at = item.occurred_at;
        let connector = input.connector_id.clone();
        let refs: Vec<(&str, Option<i64>)> = item
            .thread_refs
            .iter()
            .take(MAX_REFS)
            .filter_map(|r| parse_ref(r))
            .collect();
        let lookup = |k: &str| known.get(&(connector.clone(), k.to_string()));
        let exact = refs
            .iter()
            .filter(|(_, w)| w.is_none())
            .find_map(|(k, _)| lookup(k).map(|(c, _)| c.clone()));
        let found = exact.or_else(|| {
            refs.iter().find_map(|(k, w)| {
                let w = (*w)?;
                lookup(k)
                    .filter(|(_, last)| at.saturating_sub(*last).abs() <= w)
                    .map(|(c, _)| c.clone())
            })
        });
        let conv = found.unwrap_or(own_key);
        input.conversation_key = Some(conv.clone());
        for (k, w) in refs {
            let entry = known.entry((connector.clone(), k.to_string()));
            match (entry, w) {
                (std::collections::hash_map::Entry::Vacant(v), _) => {
                    v.insert((conv.clone(), at));
                }
                (std::collections::hash_map::Entry::Occupied(mut o), Some(_)) => {
                    if at >= o.get().1 {
                        o.insert((conv.clone(), at));
                    }
                }
                (std::collections::hash_map::Entry::Occupied(mut o), None) => {
                    if o.get().0 == conv && at > o.get().1 {
                        o.get_mut().1 = at;
                    }
                }
            }
            let t = (connector.clone(), k.to_string(), w.is_some());
            if !touched.contains(&t) {
                touched.push(t);
            }
        }
    }
    touched
        .into_iter()
        .filter_map(|(connector_id, key, windowed)| {
            let (conv_key, last_at) = known.get(&(connector_id.clone(), key.clone()))?.clone();
            Some(RefRow {
                connector_id,
                key,
                conv_key,
                last_at,
                windowed,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{Direction, EventBody};

    fn ev(thread: &str, refs: &[&str], at: i64) -> NormalizedEvent {
        NormalizedEvent {
            channel: "email".into(),
            direction: Direction::Inbound,
            thread_key: Some(thread.into()),
            claims: Vec::new(),
            occurred_at: at,
            body: EventBody::Note {
                text: String::new(),
            },
            thread_refs: refs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn input(thread: &str, at: i64) -> EventClaims {
        EventClaims {
            connector_id: "c".into(),
            raw_event_id: 0,
            claims: Vec::new(),
            conversation_key: Some(format!("c\u{1f}{thread}")),
            occurred_at: at,
        }
    }

    #[test]
    fn parse_ref_reads_windows_and_rejects_bad_ones() {
        assert_eq!(parse_ref("<a@b>"), Some(("<a@b>", None)));
        assert_eq!(
            parse_ref("window:60:subject:x"),
            Some(("subject:x", Some(60_000)))
        );
        assert_eq!(parse_ref("window:zero:x"), None);
        assert_eq!(parse_ref("window:0:x"), None);
        assert_eq!(parse_ref(""), None);
    }

    #[test]
    fn a_reply_in_the_same_batch_joins_its_parent_and_exact_refs_never_move() {
        let a = ev("t1", &["<1@x>"], 10);
        let b = ev("t2", &["<1@x>", "<2@x>"], 20);
        let c = ev("t3", &["<3@x>", "<2@x>", "<1@x>"], 30);
        let mut inputs = vec![input("t1", 10), input("t2", 20), input("t3", 30)];
        let mut known = KnownRefs::new();
        let rows = join(&[&a, &b, &c], &mut inputs, &mut known);
        for i in &inputs {
            assert_eq!(i.conversation_key.as_deref(), Some("c\u{1f}t1"));
        }
        assert_eq!(rows.len(), 3);
        assert!(rows
            .iter()
            .all(|r| r.conv_key == "c\u{1f}t1" && !r.windowed));
    }

    #[test]
    fn windowed_refs_match_only_inside_their_window() {
        let day = 86_400_000;
        let a = ev("t1", &["window:86400:subject:x"], 0);
        let b = ev("t2", &["window:86400:subject:x"], day / 2);
        let c = ev("t3", &["window:86400:subject:x"], 3 * day);
        let mut inputs = vec![input("t1", 0), input("t2", day / 2), input("t3", 3 * day)];
        let mut known = KnownRefs::new();
        let rows = join(&[&a, &b, &c], &mut inputs, &mut known);
        assert_eq!(inputs[1].conversation_key.as_deref(), Some("c\u{1f}t1"));
        assert_eq!(inputs[2].conversation_key.as_deref(), Some("c\u{1f}t3"));
        // The subject now names the newest conversation.
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].conv_key, "c\u{1f}t3");
        assert!(rows[0].windowed);
    }

    #[test]
    fn refs_of_another_connector_do_not_join() {
        let a = ev("t1", &["<1@x>"], 10);
        let mut inputs = vec![input("t1", 10)];
        let mut known = KnownRefs::new();
        known.insert(("other".into(), "<1@x>".into()), ("other\u{1f}z".into(), 1));
        join(&[&a], &mut inputs, &mut known);
        assert_eq!(inputs[0].conversation_key.as_deref(), Some("c\u{1f}t1"));
    }
}

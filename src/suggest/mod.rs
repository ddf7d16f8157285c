//! Merge suggestions from weak evidence, scored in the background.
//!
//! Strong identifiers (email, phone, platform and external ids) merge customers in the
//! pipeline. Weak evidence — similar names, one postal address, one birth date, a phone
//! suffix, an order shipped to the same name — never merges: the **suggester** scores it
//! ([`score`], a Fellegi–Sunter model) and offers pairs above `identity.suggestions.threshold`
//! at `GET /api/v1/merge-suggestions`, where an agent accepts (merges) or rejects them.
//!
//! It stays out of the pipeline's transaction: the pipeline only marks the customers whose
//! names, phones, profiles or orders it touched (`suggest_dirty`), and this loop picks them up
//! in batches:
//! 1. recompute each marked customer's [`score::Features`] from what the hub holds (display
//!    names, phone identities, the latest profile and order documents with their addresses
//!    and birth date) and its blocking keys; a customer whose features did not change is done;
//! 2. look up the customers sharing a blocking key (a key shared by more than `max_block`
//!    customers is skipped as too common), score each pair once, and store the ones at or
//!    above the threshold, unless the pair was rejected, unmerged or already decided.

pub mod quality;
pub mod score;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::EventBody;
use tokio::sync::{watch, Notify};

use crate::config::SuggestSettings;
use crate::store::suggest::{pair, FeatureRow, NewSuggestion, Sources};
use crate::store::Store;
use score::{blocking_keys, digits, norm, split_name, Features, MAX_PHONES};

/// The default threshold (log2 likelihood ratio), chosen on FEBRL 1–3 (see `score`).
pub const DEFAULT_THRESHOLD: f64 = 8.0;

/// A customer's features from what the hub holds about it.
pub fn features_of(src: &Sources) -> Features {
    let mut f = Features::default();
    let set = |slot: &mut Option<String>, v: Option<String>| {
        if slot.is_none() {
            *slot = v;
        }
    };
    // Documents first (a profile's name is the one the system of record keeps), then
    // display names.
    for doc in &src.documents {
        let Ok(body) = serde_json::from_value::<EventBody>(doc.clone()) else {
            continue;
        };
        let (name, address, birth) = match body {
            EventBody::Profile(p) => (p.name.clone(), p.address, p.birth_date),
            EventBody::Order(o) => {
                let a = o.shipping_address.or(o.billing_address);
                (a.as_ref().and_then(|a| a.name.clone()), a, None)
            }
            _ => continue,
        };
        if let Some(n) = name {
            if f.given.is_none() && f.surname.is_none() {
                let (g, s) = split_name(&n);
                f.given = g;
                f.surname = s;
            }
        }
        if let Some(a) = address {
            // Line 1 is the street; line 2 (a flat, a building name) is too often left out
            // on one side to compare.
            set(
                &mut f.street,
                a.line1.as_deref().or(a.line2.as_deref()).and_then(norm),
            );
            set(&mut f.city, a.city.as_deref().and_then(norm));
            set(&mut f.postcode, a.postal_code.as_deref().and_then(norm));
            set(&mut f.region, a.region.as_deref().and_then(norm));
        }
        set(&mut f.birth_date, birth.as_deref().and_then(digits));
    }
    if f.given.is_none() && f.surname.is_none() {
        if let Some(n) = src.names.first() {
            let (g, s) = split_name(n);
            f.given = g;
            f.surname = s;
        }
    }
    f.phones = src
        .phones
        .iter()
        .filter_map(|p| digits(p))
        .take(MAX_PHONES)
        .collect();
    f
}

/// Scores the candidates of `changed` customers. `features` holds every customer involved
/// (changed and candidates); `blocks` the members of each usable block. Pairs are scored
/// once, in a fixed order, and `excluded` pairs are skipped.
pub fn suggest_pairs(
    changed: &[String],
    features: &HashMap<String, Features>,
    keys: &HashMap<String, Vec<String>>,
    blocks: &HashMap<String, Option<Vec<String>>>,
    excluded: &HashSet<(String, String)>,
    threshold: f64,
) -> Vec<NewSuggestion> {
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out = Vec::new();
    for id in changed {
        let Some(fa) = features.get(id) else {
            continue;
        };
        for k in keys.get(id).into_iter().flatten() {
            for other in blocks.get(k).and_then(Option::as_ref).into_iter().flatten() {
                if other == id {
                    continue;
                }
                let (a, b) = pair(id, other);
                let key = (a.to_string(), b.to_string());
                if excluded.contains(&key) || !seen.insert(key) {
                    continue;
                }
                let Some(fb) = features.get(other) else {
                    continue;
                };
                let s = score::score(fa, fb);
                if s.score >= threshold {
                    out.push(NewSuggestion {
                        a: a.to_string(),
                        b: b.to_string(),
                        score: s.score,
                        reasons: s.reasons(),
                    });
                }
            }
        }
    }
    out
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// Marked customers looked at.
    pub customers: usize,
    /// Of those, customers whose features changed and were compared.
    pub changed: usize,
    /// Pairs scored at or above the threshold (new or updated).
    pub offered: usize,
}

pub struct Suggester {
    store: Store,
    cfg: SuggestSettings,
    pub wake: Arc<Notify>,
}

impl Suggester {
    pub fn new(store: Store, cfg: SuggestSettings) -> Suggester {
        Suggester {
            store,
            cfg,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// One batch of marked customers.
    pub async fn run_once(&self) -> anyhow::Result<PassStats> {
        let dirty = self.store.suggest_dirty(self.cfg.batch_size as i64).await?;
        let mut stats = PassStats {
            customers: dirty.len(),
            ..Default::default()
        };
        if dirty.is_empty() {
            return Ok(stats);
        }
        let ids: Vec<String> = dirty.iter().map(|(id, _)| id.clone()).collect();
        let canon = self.store.canonical_map(&ids).await?;
        // A marked alias stands for its canonical customer; its own rows go.
        let mut canonical: Vec<String> = canon
            .values()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        canonical.sort();
        let sources = self.store.suggest_sources(&canonical).await?;
        let stored = self
            .store
            .suggest_features(&ids.iter().chain(&canonical).cloned().collect::<Vec<_>>())
            .await?;
        let mut save: Vec<FeatureRow> = Vec::new();
        for id in &ids {
            if canon.get(id).is_none_or(|c| c != id) && stored.contains_key(id) {
                save.push((id.clone(), None));
            }
        }
        let mut changed: Vec<String> = Vec::new();
        let mut features: HashMap<String, Features> = HashMap::new();
        let mut keys: HashMap<String, Vec<String>> = HashMap::new();
        for c in &canonical {
            let f = features_of(sources.get(c).unwrap_or(&Sources::default()));
            if stored.get(c) == Some(&f) {
                continue;
            }
            if f.is_empty() {
                save.push((c.clone(), None));
                continue;
            }
            let k = blocking_keys(&f);
            save.push((c.clone(), Some((f.clone(), k.clone()))));
            changed.push(c.clone());
            features.insert(c.clone(), f);
            keys.insert(c.clone(), k);
        }
        // Features and keys first, so customers of one batch find each other.
        self.store.suggest_save_features(&save, &[]).await?;
        if !changed.is_empty() {
            let all_keys: Vec<String> = keys
                .values()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let blocks = self
                .store
                .suggest_blocks(&all_keys, self.cfg.max_block)
                .await?;
            let others: Vec<String> = blocks
                .values()
                .flatten()
                .flatten()
                .filter(|o| !features.contains_key(*o))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            features.extend(self.store.suggest_features(&others).await?);
            let excluded = self.store.suggest_excluded(&changed).await?;
            let offers = suggest_pairs(
                &changed,
                &features,
                &keys,
                &blocks,
                &excluded,
                self.cfg.threshold,
            );
            stats.offered = offers.len();
            self.store.suggest_upsert(&offers).await?;
        }
        stats.changed = changed.len();
        self.store.suggest_save_features(&[], &dirty).await?;
        Ok(stats)
    }

    /// Passes until no customer is marked; returns the totals. Bounded: at most `max_passes`.
    pub async fn drain(&self, max_passes: usize) -> anyhow::Result<PassStats> {
        let mut total = PassStats::default();
        for _ in 0..max_passes {
            let s = self.run_once().await?;
            if s.customers == 0 {
                break;
            }
            total.customers += s.customers;
            total.changed += s.changed;
            total.offered += s.offered;
        }
        Ok(total)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let idle = Duration::from_millis(self.cfg.idle_poll_ms.max(10));
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_once().await {
                Ok(s) if s.customers > 0 => {
                    if s.offered > 0 {
                        tracing::info!(
                            customers = s.customers,
                            changed = s.changed,
                            offered = s.offered,
                            "merge suggestions scored"
                        );
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "suggester pass failed; will retry"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_come_from_profiles_first_then_display_names_and_phones() {
        let src = Sources {
            names: vec!["Ada L".into()],
            phones: vec!["+61412345678".into()],
            documents: vec![serde_json::json!({
                "type": "profile", "external_id": "7", "name": "Ada Lovelace",
                "address": {"line1": "12 Kitchener St", "city": "Toowoomba", "postal_code": "4350", "region": "QLD"},
                "birth_date": "1975-03-02"
            })],
        };
        let f = features_of(&src);
        assert_eq!(f.given.as_deref(), Some("ada"));
        assert_eq!(f.surname.as_deref(), Some("lovelace"));
        assert_eq!(f.street.as_deref(), Some("12 kitchener st"));
        assert_eq!(f.postcode.as_deref(), Some("4350"));
        assert_eq!(f.birth_date.as_deref(), Some("19750302"));
        assert_eq!(f.phones, vec!["61412345678"]);
        let f = features_of(&Sources {
            names: vec!["Grace Hopper".into()],
            ..Default::default()
        });
        assert_eq!(f.surname.as_deref(), Some("hopper"));
    }

    #[test]
    fn an_order_contributes_its_shipping_name_and_address() {
        let src = Sources {
            documents: vec![serde_json::json!({
                "type": "order", "order_id": "1",
                "shipping_address": {"name": "Ada Lovelace", "line1": "12 Kitchener St", "postal_code": "4350"}
            })],
            ..Default::default()
        };
        let f = features_of(&src);
        assert_eq!(f.surname.as_deref(), Some("lovelace"));
        assert_eq!(f.postcode.as_deref(), Some("4350"));
    }

    #[test]
    fn pairs_are_scored_once_never_with_themselves_and_never_when_excluded() {
        let f = |g: &str| Features {
            given: norm(g),
            surname: norm("lovelace"),
            postcode: Some("4350".into()),
            birth_date: Some("19750302".into()),
            ..Default::default()
        };
        let features: HashMap<String, Features> = [
            ("a".to_string(), f("ada")),
            ("b".to_string(), f("ada")),
            ("c".to_string(), f("ada")),
        ]
        .into_iter()
        .collect();
        let keys: HashMap<String, Vec<String>> = ["a", "b", "c"]
            .iter()
            .map(|id| (id.to_string(), blocking_keys(&features[*id])))
            .collect();
        let mut blocks: HashMap<String, Option<Vec<String>>> = HashMap::new();
        for (id, ks) in &keys {
            for k in ks {
                blocks
                    .entry(k.clone())
                    .or_insert_with(|| Some(Vec::new()))
                    .as_mut()
                    .unwrap()
                    .push(id.clone());
            }
        }
        let changed = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let excluded: HashSet<(String, String)> = [("a".to_string(), "c".to_string())].into();
        let out = suggest_pairs(&changed, &features, &keys, &blocks, &excluded, 0.0);
        let pairs: BTreeSet<(String, String)> =
            out.iter().map(|s| (s.a.clone(), s.b.clone())).collect();
        assert_eq!(
            pairs,
            [("a".into(), "b".into()), ("b".into(), "c".into())].into()
        );
        assert_eq!(out.len(), 2, "each pair once");
        // A threshold above the score offers nothing; an over-full block is not used.
        assert!(suggest_pairs(&changed, &features, &keys, &blocks, &excluded, 1e6).is_empty());
        let none: HashMap<String, Option<Vec<String>>> =
            blocks.keys().map(|k| (k.clone(), None)).collect();
        assert!(suggest_pairs(&changed, &features, &keys, &none, &excluded, 0.0).is_empty());
    }
}

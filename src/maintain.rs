//! Idle-time upkeep of the SQLite search indexes.
//!
//! FTS5 writes one index segment per transaction and merges segments only in groups of four
//! of a size, so an index fed by thousands of pipeline batches keeps a dozen or more segments
//! (13 after seeding 1M messages), and every word of every search is looked up in each one.
//! Merged into one segment, the API benchmark's search mix cost about a fifth less CPU per
//! request (BENCHMARKS.md). Merging rewrites the whole index (3 s for 1M messages here), so it
//! is done only when the hub is quiet: once nothing has been written for
//! `database.search_merge_idle_secs`, in small steps (each its own short write transaction,
//! so a webhook arriving meanwhile waits for one step at most), stopping as soon as anything
//! is written again. Under steady traffic the indexes stay as FTS5 keeps them.
//!
//! A merge rewrites the largest segment too, so an index is merged only once its other
//! segments hold a tenth of the largest's pages ([`worth_merging`]): a hub that hears from a
//! customer every few minutes would otherwise rewrite its whole index after each quiet minute.
//! Between merges an index grows by a tenth, which FTS5 keeps in a few segments.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::{Backend, Store, FTS_TABLES};

/// Index pages written per step: a few milliseconds of the writer each.
const STEP_PAGES: i64 = 500;
/// Steps per quiet spell at most (a bound on the loop; 1M messages take about 40).
const MAX_STEPS: usize = 100_000;
/// Between steps, time for any other writer to take its turn.
const STEP_PAUSE: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct SearchUpkeep {
    store: Store,
    idle: Duration,
}

impl SearchUpkeep {
    pub fn new(store: Store, idle_secs: u64) -> SearchUpkeep {
        SearchUpkeep {
            store,
            idle: Duration::from_secs(idle_secs),
        }
    }

    /// On SQLite with a non-zero idle time.
    pub fn enabled(&self) -> bool {
        !self.idle.is_zero() && self.store.backend() == Backend::Sqlite
    }

    /// Watches for quiet spells until `stop` turns true (or its sender is gone).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let check = (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut last: Option<i64> = None;
        let mut quiet_since = Instant::now();
        // The write mark at which every index was last found merged: nothing to do until
        // something is written.
        let mut merged_at: Option<i64> = None;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(check) => {}
            }
            if *stop.borrow() {
                return;
            }
            let mark = match self.store.write_mark().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "search upkeep: reading the write mark failed");
                    continue;
                }
            };
            if last != Some(mark) {
                last = Some(mark);
                quiet_since = Instant::now();
                continue;
            }
            if quiet_since.elapsed() < self.idle || merged_at == Some(mark) {
                continue;
            }
            match self.merge_while_quiet(mark, &stop).await {
                Ok(Some(steps)) => {
                    merged_at = Some(mark);
                    if steps > 0 {
                        tracing::info!(steps, "search indexes merged while idle");
                    }
                }
                // Interrupted by new writes or by stopping: wait for the next quiet spell.
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "search upkeep: merging failed"),
            }
        }
    }

    /// Merges every index step by step while the write mark stays `mark`; `Some(steps)` when
    /// all are merged, `None` when interrupted.
    async fn merge_while_quiet(
        &self,
        mark: i64,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Option<usize>> {
        let mut steps = 0;
        for table in 0..FTS_TABLES.len() {
            if !worth_merging(&self.store.search_index_segments(table).await?) {
                continue;
            }
            loop {
                if *stop.borrow() || steps >= MAX_STEPS {
                    return Ok(None);
                }
                if !self.store.merge_search_step(table, STEP_PAGES).await? {
                    break;
                }
                steps += 1;
                if self.store.write_mark().await? != mark {
                    return Ok(None);
                }
                tokio::time::sleep(STEP_PAUSE).await;
            }
        }
        Ok(Some(steps))
    }
}

/// Whether an index with these segment sizes (leaf pages, any order) is worth merging into
/// one: more than one segment, and the ones besides the largest hold at least a tenth of its
/// pages (each merge then rewrites at most ~11 times what was added since the last one).
pub fn worth_merging(pages: &[i64]) -> bool {
    let largest = pages.iter().copied().max().unwrap_or(0);
    let rest: i64 = pages.iter().sum::<i64>() - largest;
    pages.len() > 1 && rest * 10 >= largest
}

#[cfg(test)]
mod tests {
    use super::worth_merging;

    #[test]
    fn an_index_is_merged_once_its_small_segments_hold_a_tenth_of_the_largest() {
        assert!(!worth_merging(&[]));
        assert!(!worth_merging(&[500]));
        assert!(worth_merging(&[3, 3, 3]));
        assert!(worth_merging(&[1000, 60, 40]));
        assert!(!worth_merging(&[1000, 60, 39]));
        assert!(!worth_merging(&[1000, 1]));
        assert!(worth_merging(&[1, 1000, 99, 1]));
    }
}

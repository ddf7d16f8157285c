//! Precision and recall of suggestions against known true pairs (the FEBRL harness,
//! `examples/febrl.rs`), kept here so the arithmetic is unit-tested.

use std::collections::HashSet;

/// An unordered pair of record ids, stored ordered.
pub fn key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub threshold: f64,
    pub predicted: usize,
    pub true_positives: usize,
    /// 1.0 when nothing was predicted (no false suggestion was made).
    pub precision: f64,
    pub recall: f64,
}

/// Precision and recall of `scored` pairs (record-id pairs with their score) at each
/// threshold, against `truth`. A pair scored twice counts once, with its best score.
pub fn table(
    scored: &[((String, String), f64)],
    truth: &HashSet<(String, String)>,
    thresholds: &[f64],
) -> Vec<Row> {
    let mut best: std::collections::HashMap<&(String, String), f64> = Default::default();
    for (p, s) in scored {
        let e = best.entry(p).or_insert(f64::NEG_INFINITY);
        *e = e.max(*s);
    }
    thresholds
        .iter()
        .map(|&t| {
            let predicted = best.values().filter(|s| **s >= t).count();
            let tp = best
                .iter()
                .filter(|(p, s)| **s >= t && truth.contains(**p))
                .count();
            Row {
                threshold: t,
                predicted,
                true_positives: tp,
                precision: if predicted == 0 {
                    1.0
                } else {
                    tp as f64 / predicted as f64
                },
                recall: if truth.is_empty() {
                    1.0
                } else {
                    tp as f64 / truth.len() as f64
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_and_recall_at_each_threshold_on_a_small_fixture() {
        let truth: HashSet<(String, String)> =
            [key("r1", "r2"), key("r3", "r4"), key("r5", "r6")].into();
        let scored = vec![
            (key("r2", "r1"), 20.0),
            (key("r1", "r2"), 5.0), // the same pair again: its best score counts
            (key("r3", "r4"), 12.0),
            (key("r1", "r3"), 15.0), // false
            (key("r7", "r8"), 2.0),  // false
        ];
        let t = table(&scored, &truth, &[0.0, 10.0, 16.0, 30.0]);
        assert_eq!(
            t.iter()
                .map(|r| (r.predicted, r.true_positives))
                .collect::<Vec<_>>(),
            vec![(4, 2), (3, 2), (1, 1), (0, 0)]
        );
        assert_eq!(t[0].precision, 0.5);
        assert!((t[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((t[1].recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((t[2].precision, t[3].precision), (1.0, 1.0));
        assert_eq!(t[3].recall, 0.0);
    }
}

//! Comparisons against ground truth and against the plan: the figures `smp demo` and
//! `smp eval` print. Pure, so tests and the CLI compute them the same way.

use serde::{Deserialize, Serialize};

use crate::map::FollicleKind;
use crate::spatial::PointGrid;

/// One-to-one matching of `found` to `truth` within `radius_mm`, closest pairs first.
/// Returns `(found_index, truth_index, distance_mm)`.
pub fn match_points(found: &[[f64; 3]], truth: &[[f64; 3]], radius_mm: f64) -> Vec<(usize, usize, f64)> {
    let grid = PointGrid::from_points(radius_mm.max(1e-6), truth.iter().copied());
    let mut candidates = Vec::new();
    for (i, p) in found.iter().enumerate() {
        grid.for_each_within(*p, radius_mm, |j, d| candidates.push((i, j as usize, d)));
    }
    candidates.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let mut used_found = vec![false; found.len()];
    let mut used_truth = vec![false; truth.len()];
    let mut out = Vec::new();
    for (i, j, d) in candidates {
        if !used_found[i] && !used_truth[j] {
            used_found[i] = true;
            used_truth[j] = true;
            out.push((i, j, d));
        }
    }
    out
}

/// Detection quality of found points against truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionScore {
    pub found: usize,
    pub truth: usize,
    pub matched: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// RMS distance of matched pairs.
    pub loc_rms_mm: f64,
}

pub fn detection_score(found: &[[f64; 3]], truth: &[[f64; 3]], radius_mm: f64) -> DetectionScore {
    let m = match_points(found, truth, radius_mm);
    let precision = if found.is_empty() { 1.0 } else { m.len() as f64 / found.len() as f64 };
    let recall = if truth.is_empty() { 1.0 } else { m.len() as f64 / truth.len() as f64 };
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    let loc_rms_mm =
        if m.is_empty() { 0.0 } else { (m.iter().map(|x| x.2 * x.2).sum::<f64>() / m.len() as f64).sqrt() };
    DetectionScore { found: found.len(), truth: truth.len(), matched: m.len(), precision, recall, f1, loc_rms_mm }
}

/// Needle entries against planned dots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementScore {
    pub dots_planned: usize,
    /// Dots with at least one entry within the radius.
    pub dots_executed: usize,
    /// Dots with more than one entry within the radius: tattooed twice.
    pub dots_doubled: usize,
    pub dots_missing: usize,
    /// Entries that match no planned dot.
    pub stray_entries: usize,
    pub placement_rms_mm: f64,
    pub placement_max_mm: f64,
}

/// Assigns every entry to its nearest planned dot within `radius_mm` and counts.
/// The radius should be well under the minimum spacing, so an entry cannot be credited to
/// a neighbour.
pub fn placement_score(planned: &[[f64; 3]], entries: &[[f64; 3]], radius_mm: f64) -> PlacementScore {
    let grid = PointGrid::from_points(radius_mm.max(1e-6), planned.iter().copied());
    let mut hits = vec![0usize; planned.len()];
    let mut best = vec![f64::INFINITY; planned.len()];
    let mut stray = 0;
    for e in entries {
        match grid.nearest_within(*e, radius_mm) {
            Some((j, d)) => {
                hits[j as usize] += 1;
                best[j as usize] = best[j as usize].min(d);
            }
            None => stray += 1,
        }
    }
    let executed: Vec<f64> = best.iter().copied().filter(|d| d.is_finite()).collect();
    let rms = if executed.is_empty() {
        0.0
    } else {
        (executed.iter().map(|d| d * d).sum::<f64>() / executed.len() as f64).sqrt()
    };
    PlacementScore {
        dots_planned: planned.len(),
        dots_executed: executed.len(),
        dots_doubled: hits.iter().filter(|h| **h > 1).count(),
        dots_missing: hits.iter().filter(|h| **h == 0).count(),
        stray_entries: stray,
        placement_rms_mm: rms,
        placement_max_mm: executed.iter().copied().fold(0.0, f64::max),
    }
}

/// Smallest distance between any two points of `a ∪ b` where at least one is from `a`
/// (dots against dots and dots against follicles; follicle pairs do not count).
pub fn min_spacing_mm(a: &[[f64; 3]], b: &[[f64; 3]], search_mm: f64) -> f64 {
    let grid_a = PointGrid::from_points(search_mm, a.iter().copied());
    let grid_b = PointGrid::from_points(search_mm, b.iter().copied());
    let mut best = f64::INFINITY;
    for (i, p) in a.iter().enumerate() {
        grid_a.for_each_within(*p, search_mm, |j, d| {
            if j as usize != i {
                best = best.min(d);
            }
        });
        grid_b.for_each_within(*p, search_mm, |_, d| best = best.min(d));
    }
    best
}

/// How well detections were told apart as natural follicles or earlier SMP dots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindScore {
    /// All detections against all truth items, kinds ignored.
    pub union: DetectionScore,
    /// Detections classified natural against the truth follicles.
    pub natural: DetectionScore,
    /// Detections classified as SMP dots against the truth dots.
    pub smp_dot: DetectionScore,
    /// Truth follicles / dots matched in the union matching, and how many of those were
    /// given the right kind.
    pub matched_natural: usize,
    pub matched_smp_dot: usize,
    pub correct_natural: usize,
    pub correct_smp_dot: usize,
    /// Share of matched truth items, follicles and dots alike, whose detection has the right
    /// kind (`smp eval vision`'s `dot_vs_follicle_accuracy`); 1 when nothing matched.
    pub dot_vs_follicle_accuracy: f64,
}

/// Scores kind classification: detections (`found`, with `found_kinds` in the same order)
/// are matched one-to-one to the union of truth follicles and truth dots within `radius_mm`
/// (as [`detection_score`] does), and each matched truth item counts as right when its
/// detection carries its kind. A `found_kinds` shorter than `found` counts the missing kinds
/// as natural.
pub fn kind_score(
    found: &[[f64; 3]],
    found_kinds: &[FollicleKind],
    truth_natural: &[[f64; 3]],
    truth_dots: &[[f64; 3]],
    radius_mm: f64,
) -> KindScore {
    let kind_of = |i: usize| found_kinds.get(i).copied().unwrap_or(FollicleKind::Natural);
    let truth: Vec<[f64; 3]> = truth_natural.iter().chain(truth_dots).copied().collect();
    let union = detection_score(found, &truth, radius_mm);
    let (mut matched_natural, mut matched_smp_dot, mut correct_natural, mut correct_smp_dot) = (0, 0, 0, 0);
    for (i, j, _) in match_points(found, &truth, radius_mm) {
        if j < truth_natural.len() {
            matched_natural += 1;
            correct_natural += usize::from(kind_of(i) == FollicleKind::Natural);
        } else {
            matched_smp_dot += 1;
            correct_smp_dot += usize::from(kind_of(i) == FollicleKind::SmpDot);
        }
    }
    let of_kind = |k: FollicleKind| -> Vec<[f64; 3]> {
        found.iter().enumerate().filter(|(i, _)| kind_of(*i) == k).map(|(_, p)| *p).collect()
    };
    let matched = matched_natural + matched_smp_dot;
    KindScore {
        union,
        natural: detection_score(&of_kind(FollicleKind::Natural), truth_natural, radius_mm),
        smp_dot: detection_score(&of_kind(FollicleKind::SmpDot), truth_dots, radius_mm),
        matched_natural,
        matched_smp_dot,
        correct_natural,
        correct_smp_dot,
        dot_vs_follicle_accuracy: if matched == 0 {
            1.0
        } else {
            (correct_natural + correct_smp_dot) as f64 / matched as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubled_and_missing_are_counted() {
        let planned = [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.0, 0.0, 0.0]];
        let entries = [[0.01, 0.0, 0.0], [0.02, 0.0, 0.0], [2.05, 0.0, 0.0], [9.0, 0.0, 0.0]];
        let s = placement_score(&planned, &entries, 0.3);
        assert_eq!((s.dots_executed, s.dots_doubled, s.dots_missing, s.stray_entries), (2, 1, 1, 1));
        assert!((s.placement_max_mm - 0.05).abs() < 1e-12);
    }

    #[test]
    fn detection_score_is_one_to_one() {
        let truth = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]];
        let found = [[0.05, 0.0, 0.0], [0.06, 0.0, 0.0], [5.0, 0.0, 0.0]];
        let s = detection_score(&found, &truth, 0.3);
        assert_eq!(s.matched, 1);
        assert!((s.precision - 1.0 / 3.0).abs() < 1e-12 && (s.recall - 0.5).abs() < 1e-12);
    }

    #[test]
    fn kind_score_counts_matched_items_with_the_right_kind() {
        use FollicleKind::{Natural, SmpDot};
        let follicles = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]];
        let dots = [[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]];
        // Follicle 0 right, follicle 1 called a dot, follicle 2 missed; dot 0 right, dot 1
        // called natural; one stray detection.
        let found = [[0.05, 0.0, 0.0], [1.0, 0.05, 0.0], [0.0, 1.02, 0.0], [1.0, 0.98, 0.0], [7.0, 7.0, 0.0]];
        let kinds = [Natural, SmpDot, SmpDot, Natural, Natural];
        let s = kind_score(&found, &kinds, &follicles, &dots, 0.3);
        assert_eq!((s.union.matched, s.union.found, s.union.truth), (4, 5, 5));
        assert_eq!((s.matched_natural, s.correct_natural, s.matched_smp_dot, s.correct_smp_dot), (2, 1, 2, 1));
        assert!((s.dot_vs_follicle_accuracy - 0.5).abs() < 1e-12);
        // Natural detections: 0 (right), 3 (a dot, wrong kind), 4 (stray) against 3 follicles.
        assert_eq!((s.natural.found, s.natural.matched), (3, 1));
        assert_eq!((s.smp_dot.found, s.smp_dot.matched), (2, 1));
        let none = kind_score(&[], &[], &follicles, &dots, 0.3);
        assert_eq!(none.dot_vs_follicle_accuracy, 1.0);
        // Missing kinds count as natural.
        assert_eq!(kind_score(&found[..1], &[], &follicles, &dots, 0.3).correct_natural, 1);
    }

    #[test]
    fn min_spacing_ignores_follicle_pairs() {
        let dots = [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]];
        let follicles = [[1.0, 0.0, 0.0], [1.1, 0.0, 0.0]];
        assert!((min_spacing_mm(&dots, &follicles, 5.0) - 1.0).abs() < 1e-12);
    }
}

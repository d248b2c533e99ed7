//! The first path: greedy nearest neighbour, or with a recovery rule the nearest *feasible*
//! neighbour, inserting the dots that get stuck where the path can take them.

use super::buckets::{bucket_cell, XyBuckets};
use super::Window;
use crate::geometry::dist3;

/// Greedy nearest-neighbour path from `start`.
pub(crate) fn nearest_neighbour(points: &[[f64; 3]], start: u32) -> Vec<u32> {
    let n = points.len();
    if n == 0 {
        return Vec::new();
    }
    let mut buckets = XyBuckets::new(points, bucket_cell(points));
    let mut order = Vec::with_capacity(n);
    let mut cur = start;
    buckets.remove(&points[cur as usize], cur);
    order.push(cur);
    while order.len() < n {
        let next = buckets.k_nearest(points, &points[cur as usize], 1, cur);
        let Some(&(_, q)) = next.first() else { break };
        buckets.remove(&points[q as usize], q);
        order.push(q);
        cur = q;
    }
    order
}

/// The cheapest place `k` (between `order[k - 1]` and `order[k]`, `1 <= k < len`) where
/// `q` makes no new pair within the window closer than the radius, with its extra length.
pub(super) fn cheapest_free_slot(points: &[[f64; 3]], order: &[u32], q: u32, w: &Window) -> Option<(f64, usize)> {
    let pq = points[q as usize];
    let near: Vec<bool> = order.iter().map(|&r| dist3(pq, points[r as usize]) < w.radius_mm).collect();
    // Conflicts among the `gap` dots on either side of place k, kept as a sliding count.
    let mut slot: Option<(f64, usize)> = None;
    let len = order.len();
    let mut count = near[..w.gap.min(len)].iter().filter(|&&c| c).count();
    for k in 1..len {
        // Window for place k: order[k - gap .. k + gap).
        if k + w.gap - 1 < len && near[k + w.gap - 1] {
            count += 1;
        }
        if k > w.gap && near[k - w.gap - 1] {
            count -= 1;
        }
        if count > 0 {
            continue;
        }
        let (a, b) = (points[order[k - 1] as usize], points[order[k] as usize]);
        let cost = dist3(a, pq) + dist3(pq, b) - dist3(a, b);
        if slot.is_none_or(|(c, _)| cost < c) {
            slot = Some((cost, k));
        }
    }
    slot
}

/// Greedy nearest *feasible* neighbour path from `start`: the nearest unvisited dot at
/// least `radius_mm` from each of the last `gap` dots. When none is left (the few dots left
/// all lie next to the last ones), each is inserted where the path so far can take it
/// without a conflict, at the least extra length: first among the places next to its
/// nearest ordered dots, then (within a budget) anywhere in the path; only a dot that fits
/// nowhere is appended with the fewest conflicts.
pub(super) fn nearest_feasible(points: &[[f64; 3]], start: u32, w: &Window) -> Vec<u32> {
    /// Already-ordered dots tried as insertion neighbours of a stuck dot.
    const INSERT_CANDIDATES: usize = 48;
    /// Path places examined, in all, by the full scans for stuck dots that fit nowhere
    /// near themselves: bounds the work on inputs that cannot hold the rule.
    const FULL_SCAN_PLACES: usize = 2_000_000;
    let mut full_scan_budget = FULL_SCAN_PLACES;
    let n = points.len();
    let cell = bucket_cell(points);
    let mut buckets = XyBuckets::new(points, cell);
    let all = XyBuckets::new(points, cell);
    let mut order: Vec<u32> = Vec::with_capacity(n);
    let mut pos = vec![usize::MAX; n];
    buckets.remove(&points[start as usize], start);
    order.push(start);
    pos[start as usize] = 0;
    let conflicts = |q: u32, order: &[u32], stop_at_first: bool| -> usize {
        let p = points[q as usize];
        let mut c = 0;
        for &o in order.iter().rev().take(w.gap) {
            if dist3(p, points[o as usize]) < w.radius_mm {
                c += 1;
                if stop_at_first {
                    break;
                }
            }
        }
        c
    };
    while order.len() < n {
        let cur = points[order[order.len() - 1] as usize];
        let (ci, cj) = buckets.ij(&cur);
        let left = n - order.len();
        let mut best: Option<(f64, u32)> = None;
        // Dots seen so far: once all that are left have been seen, no ring can add one
        // (so an all-conflicting remainder does not scan the whole grid).
        let mut seen = 0usize;
        for ring in 0..=buckets.max_ring() {
            buckets.ring(ci, cj, ring, |q| {
                seen += 1;
                let d = dist3(cur, points[q as usize]);
                if best.is_none_or(|(bd, bq)| d.total_cmp(&bd).then(q.cmp(&bq)).is_lt())
                    && conflicts(q, &order, true) == 0
                {
                    best = Some((d, q));
                }
            });
            if seen >= left || best.is_some_and(|(bd, _)| bd <= ring as f64 * buckets.cell) {
                break;
            }
        }
        if let Some((_, q)) = best {
            buckets.remove(&points[q as usize], q);
            pos[q as usize] = order.len();
            order.push(q);
            continue;
        }
        // Nothing feasible to append: the fewest conflicts, then the nearest.
        let mut stuck: Option<(usize, f64, u32)> = None;
        let mut seen = 0usize;
        for ring in 0..=buckets.max_ring() {
            buckets.ring(ci, cj, ring, |q| {
                seen += 1;
                let key = (conflicts(q, &order, false), dist3(cur, points[q as usize]), q);
                if stuck.is_none_or(|f| key.0.cmp(&f.0).then(key.1.total_cmp(&f.1)).then(key.2.cmp(&f.2)).is_lt()) {
                    stuck = Some(key);
                }
            });
            if seen >= left {
                break;
            }
        }
        let Some((_, _, q)) = stuck else { break };
        buckets.remove(&points[q as usize], q);
        let pq = points[q as usize];
        // Cheapest conflict-free insertion between order[k - 1] and order[k], 1 <= k < len.
        let mut slot: Option<(f64, usize)> = None;
        for (_, o) in all.k_nearest_beyond(points, &pq, INSERT_CANDIDATES, q, w.radius_mm) {
            let po = pos[o as usize];
            if po == usize::MAX {
                continue;
            }
            for k in [po, po + 1] {
                if k == 0 || k >= order.len() {
                    continue;
                }
                let (a, b) = (order[k - 1], order[k]);
                let cost = dist3(points[a as usize], pq) + dist3(pq, points[b as usize])
                    - dist3(points[a as usize], points[b as usize]);
                if slot.is_some_and(|(c, _)| c <= cost) {
                    continue;
                }
                // New pairs: q with up to `gap` dots on either side (other gaps only grow).
                let lo = k.saturating_sub(w.gap);
                let hi = (k + w.gap).min(order.len());
                if order[lo..hi].iter().all(|&r| dist3(pq, points[r as usize]) >= w.radius_mm) {
                    slot = Some((cost, k));
                }
            }
        }
        // None near it: every other place in the path, while the budget lasts (a dot
        // whose neighbourhood is full can often still go between two far-away dots).
        if slot.is_none() && full_scan_budget >= order.len() {
            full_scan_budget -= order.len();
            slot = cheapest_free_slot(points, &order, q, w);
        }
        match slot {
            Some((_, k)) => {
                order.insert(k, q);
                for (i, &r) in order.iter().enumerate().skip(k) {
                    pos[r as usize] = i;
                }
            }
            None => {
                pos[q as usize] = order.len();
                order.push(q);
            }
        }
    }
    order
}

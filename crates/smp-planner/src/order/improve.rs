//! Shortening a path in place: neighbour-list 2-opt and Or-opt from a work queue (moves that
//! would break the recovery rule's count window are refused), then iterated local search
//! with double-bridge kicks, each undone unless it pays off.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Window;
use crate::geometry::dist3;

/// Moves that gain less than this (mm) are ignored, so floating-point noise cannot cycle.
const MIN_GAIN_MM: f64 = 1e-7;

/// Effort spent and gained by [`improve`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ImproveStats {
    pub(crate) two_opt_moves: usize,
    pub(crate) or_opt_moves: usize,
    pub(crate) budget_exhausted: bool,
    /// Perturbation kicks that shortened the path (and were kept).
    pub(crate) kicks_kept: usize,
}

/// A candidate new order, as blocks of the current one: (start, length, reversed).
type Blocks = [(usize, usize, bool); 4];

/// A change to the order, kept so that a perturbation that does not pay off can be undone.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `order[lo..=hi]` was reversed.
    Reverse(usize, usize),
    /// A segment was moved to `order[at..at + len]` (reversed if `reversed`) from just
    /// after `back_after`.
    Move { at: usize, len: usize, back_after: u32, reversed: bool },
    /// `order[lo..hi]` was rotated left by `k`.
    Rotate { lo: usize, hi: usize, k: usize },
}

struct PathState<'a> {
    points: &'a [[f64; 3]],
    order: Vec<u32>,
    pos: Vec<usize>,
    window: Option<Window>,
    /// Sum of the gains (mm) of the moves applied since it was last reset.
    gain: f64,
    /// Moves applied since the log was last cleared, when `logging`.
    log: Vec<Op>,
    logging: bool,
    /// Longest reversal a 2-opt move, and longest shift an Or-opt move, may make, in dots
    /// (bounded during perturbation, where every move may have to be undone).
    max_reversal: usize,
}

impl PathState<'_> {
    fn d(&self, a: u32, b: u32) -> f64 {
        dist3(self.points[a as usize], self.points[b as usize])
    }

    /// Distance to an optional node: the free end of the path costs nothing.
    fn d_opt(&self, a: u32, b: Option<u32>) -> f64 {
        b.map_or(0.0, |b| self.d(a, b))
    }

    fn at(&self, i: usize) -> Option<u32> {
        self.order.get(i).copied()
    }

    fn reverse(&mut self, lo: usize, hi: usize) {
        self.order[lo..=hi].reverse();
        for i in lo..=hi {
            self.pos[self.order[i] as usize] = i;
        }
        if self.logging {
            self.log.push(Op::Reverse(lo, hi));
        }
    }

    fn rotate(&mut self, lo: usize, hi: usize, k: usize) {
        self.order[lo..hi].rotate_left(k);
        for i in lo..hi {
            self.pos[self.order[i] as usize] = i;
        }
        if self.logging {
            self.log.push(Op::Rotate { lo, hi, k });
        }
    }

    /// Undoes the logged moves, newest first, and clears the log.
    fn undo(&mut self) {
        let logging = std::mem::replace(&mut self.logging, false);
        while let Some(op) = self.log.pop() {
            match op {
                Op::Reverse(lo, hi) => self.reverse(lo, hi),
                Op::Move { at, len, back_after, reversed } => self.move_segment(at, len, back_after, reversed),
                Op::Rotate { lo, hi, k } => self.rotate(lo, hi, hi - lo - k),
            }
        }
        self.logging = logging;
    }

    /// True when the order made of `blocks` keeps the recovery rule on every pair that
    /// spans a block boundary (pairs inside a block keep their gap, so only those are new).
    fn blocks_ok(&self, blocks: &Blocks) -> bool {
        let Some(w) = self.window else { return true };
        let n = self.order.len();
        let new_at = |k: usize| -> u32 {
            let mut off = 0;
            for &(s, l, rev) in blocks {
                if k < off + l {
                    let t = k - off;
                    return self.order[if rev { s + l - 1 - t } else { s + t }];
                }
                off += l;
            }
            // Past the end (cannot happen: the blocks cover the whole order).
            self.order[n - 1]
        };
        // The dots within `gap` places of each join, in the new order.
        let mut around: Vec<(usize, Vec<[f64; 3]>)> = Vec::with_capacity(blocks.len());
        let mut join = 0;
        for &(_, l, _) in &blocks[..blocks.len() - 1] {
            join += l;
            if join == 0 || join >= n || l == 0 {
                continue;
            }
            let lo = join.saturating_sub(w.gap);
            let hi = (join + w.gap).min(n);
            around.push((join - lo, (lo..hi).map(|k| self.points[new_at(k) as usize]).collect()));
        }
        // Nearest places first: they are the likeliest to be close, so a bad move fails fast.
        for gap in 1..=w.gap {
            for (j, pts) in &around {
                for a in j.saturating_sub(gap)..*j {
                    if let Some(pb) = pts.get(a + gap) {
                        if dist3(pts[a], *pb) < w.radius_mm {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Would reversing `order[lo..=hi]` keep the recovery rule?
    fn reversal_ok(&self, lo: usize, hi: usize) -> bool {
        let n = self.order.len();
        self.window.is_none()
            || self.blocks_ok(&[(0, lo, false), (lo, hi + 1 - lo, true), (hi + 1, n - hi - 1, false), (n, 0, false)])
    }

    /// Would moving `order[i..i+len]` to just after node `u` keep the recovery rule?
    fn segment_move_ok(&self, i: usize, len: usize, u: u32, reversed: bool) -> bool {
        if self.window.is_none() {
            return true;
        }
        let n = self.order.len();
        let pu = self.pos[u as usize];
        let blocks = if pu < i {
            [(0, pu + 1, false), (i, len, reversed), (pu + 1, i - pu - 1, false), (i + len, n - i - len, false)]
        } else {
            [(0, i, false), (i + len, pu + 1 - i - len, false), (i, len, reversed), (pu + 1, n - pu - 1, false)]
        };
        self.blocks_ok(&blocks)
    }

    /// First improving (and rule-keeping) 2-opt move around `a`; returns the nodes whose
    /// edges changed.
    fn two_opt(&mut self, a: u32, nbrs: &[u32]) -> Option<[Option<u32>; 4]> {
        let n = self.order.len();
        let i = self.pos[a as usize];
        // Replace a's successor edge (a, b).
        if i + 1 < n {
            let b = self.order[i + 1];
            let dab = self.d(a, b);
            for &c in nbrs {
                let dac = self.d(a, c);
                if dac >= dab {
                    break;
                }
                let j = self.pos[c as usize];
                if j > i + 1 {
                    let dn = self.at(j + 1);
                    let gain = dab + self.d_opt(c, dn) - dac - dn.map_or(0.0, |dn| self.d(b, dn));
                    if gain > MIN_GAIN_MM && j - i - 1 <= self.max_reversal && self.reversal_ok(i + 1, j) {
                        self.reverse(i + 1, j);
                        self.gain += gain;
                        return Some([Some(a), Some(b), Some(c), dn]);
                    }
                } else if j < i {
                    let e = self.order[j + 1];
                    if e == a {
                        continue;
                    }
                    let gain = self.d(c, e) + dab - dac - self.d(e, b);
                    if gain > MIN_GAIN_MM && i - j - 1 <= self.max_reversal && self.reversal_ok(j + 1, i) {
                        self.reverse(j + 1, i);
                        self.gain += gain;
                        return Some([Some(a), Some(b), Some(c), Some(e)]);
                    }
                }
            }
        }
        // Replace a's predecessor edge (p, a); position 0 never moves.
        if i >= 1 {
            let p = self.order[i - 1];
            let dpa = self.d(p, a);
            for &c in nbrs {
                let dac = self.d(a, c);
                if dac >= dpa {
                    break;
                }
                let j = self.pos[c as usize];
                if j >= 1 && j + 1 < i {
                    let q = self.order[j - 1];
                    let gain = self.d(q, c) + dpa - self.d(q, p) - dac;
                    if gain > MIN_GAIN_MM && i - 1 - j <= self.max_reversal && self.reversal_ok(j, i - 1) {
                        self.reverse(j, i - 1);
                        self.gain += gain;
                        return Some([Some(a), Some(p), Some(c), Some(q)]);
                    }
                } else if j > i {
                    let q = self.order[j - 1];
                    if q == a {
                        continue;
                    }
                    let gain = dpa + self.d(q, c) - self.d(p, q) - dac;
                    if gain > MIN_GAIN_MM && j - 1 - i <= self.max_reversal && self.reversal_ok(i, j - 1) {
                        self.reverse(i, j - 1);
                        self.gain += gain;
                        return Some([Some(a), Some(p), Some(c), Some(q)]);
                    }
                }
            }
        }
        None
    }

    /// First improving (and rule-keeping) Or-opt move of a segment of 1-3 dots starting at
    /// `a` (kept or reversed) to between two neighbouring dots elsewhere.
    fn or_opt(&mut self, a: u32, nbr_lists: &[Vec<u32>]) -> Option<[Option<u32>; 6]> {
        let n = self.order.len();
        let i = self.pos[a as usize];
        if i == 0 {
            return None;
        }
        for len in 1..=3usize {
            if i + len > n {
                break;
            }
            let s0 = a;
            let sl = self.order[i + len - 1];
            let p = self.order[i - 1];
            let nx = self.at(i + len);
            let remove_gain = self.d(p, s0) + self.d_opt(sl, nx) - nx.map_or(0.0, |nx| self.d(p, nx));
            if remove_gain <= MIN_GAIN_MM {
                continue;
            }
            let in_seg = |q: u32, pos: &[usize]| (i..i + len).contains(&pos[q as usize]);
            for &end in &[s0, sl] {
                for &c in &nbr_lists[end as usize] {
                    if self.d(end, c) >= remove_gain {
                        break;
                    }
                    if in_seg(c, &self.pos) {
                        continue;
                    }
                    let j = self.pos[c as usize];
                    if j.abs_diff(i) > self.max_reversal {
                        continue;
                    }
                    // Candidate edges (u, v): (c, succ c) and (pred c, c).
                    let edges = [(Some(c), self.at(j + 1)), (if j >= 1 { self.at(j - 1) } else { None }, Some(c))];
                    for (u, v) in edges {
                        let Some(u) = u else { continue };
                        if in_seg(u, &self.pos) || v.is_some_and(|v| in_seg(v, &self.pos)) {
                            continue;
                        }
                        let base = v.map_or(0.0, |v| self.d(u, v));
                        let fwd = self.d(u, s0) + self.d_opt(sl, v) - base;
                        let rev = self.d(u, sl) + self.d_opt(s0, v) - base;
                        let (cost, reversed) = if rev < fwd { (rev, true) } else { (fwd, false) };
                        if remove_gain - cost > MIN_GAIN_MM && self.segment_move_ok(i, len, u, reversed) {
                            self.move_segment(i, len, u, reversed);
                            self.gain += remove_gain - cost;
                            return Some([Some(p), nx, Some(s0), Some(sl), Some(u), v]);
                        }
                    }
                }
            }
        }
        None
    }

    /// Moves order[i..i+len] (1 <= i) to just after node `u` (outside the segment),
    /// reversed if asked. Only the positions between the old and the new place shift.
    fn move_segment(&mut self, i: usize, len: usize, u: u32, reversed: bool) {
        let back_after = self.order[i - 1];
        let pu = self.pos[u as usize];
        let (lo, hi, at) = if pu > i {
            self.order[i..=pu].rotate_left(len);
            (i, pu + 1, pu + 1 - len)
        } else {
            self.order[pu + 1..i + len].rotate_right(len);
            (pu + 1, i + len, pu + 1)
        };
        if reversed {
            self.order[at..at + len].reverse();
        }
        for k in lo..hi {
            self.pos[self.order[k] as usize] = k;
        }
        if self.logging {
            self.log.push(Op::Move { at, len, back_after, reversed });
        }
    }

    /// Applies first-improvement 2-opt / Or-opt moves to the dots in `queue` (and those
    /// next to every change) until the queue is empty or `max_moves` moves were made.
    fn run_queue(
        &mut self,
        nbrs: &[Vec<u32>],
        queue: &mut VecDeque<u32>,
        queued: &mut [bool],
        max_moves: usize,
        stats: &mut ImproveStats,
    ) {
        let mut moves = 0;
        while let Some(a) = queue.pop_front() {
            queued[a as usize] = false;
            if moves >= max_moves {
                stats.budget_exhausted = true;
                break;
            }
            let touched: Vec<Option<u32>> = if let Some(t) = self.two_opt(a, &nbrs[a as usize]) {
                stats.two_opt_moves += 1;
                t.to_vec()
            } else if let Some(t) = self.or_opt(a, nbrs) {
                stats.or_opt_moves += 1;
                t.to_vec()
            } else {
                continue;
            };
            moves += 1;
            for q in touched.into_iter().flatten() {
                if !queued[q as usize] {
                    queued[q as usize] = true;
                    queue.push_back(q);
                }
            }
        }
        while let Some(a) = queue.pop_front() {
            queued[a as usize] = false;
        }
    }

    /// Iterated local search: `kicks` random double bridges (two adjacent segments of the
    /// path swapped, the open-path form of the double bridge), each followed by a local
    /// 2-opt / Or-opt repair; a kick is kept only when the path got shorter, otherwise it
    /// and its repair are undone. Kicks that would break the recovery rule are skipped.
    fn perturb(&mut self, nbrs: &[Vec<u32>], kicks: usize, seed: u64, stats: &mut ImproveStats) {
        /// Longest segment a kick swaps, in dots (kicks stay local on a coherent path).
        const MAX_SEGMENT: usize = 30;
        /// Repair moves allowed after one kick.
        const REPAIR_MOVES: usize = 50;
        /// Longest 2-opt reversal of a repair, in dots: a kick's repair stays local, and a
        /// kick that does not pay off is cheap to undo.
        const MAX_REPAIR_REVERSAL: usize = 1000;
        let n = self.order.len();
        if n < 5 {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut queue = VecDeque::new();
        let mut queued = vec![false; self.points.len()];
        let max_reversal = std::mem::replace(&mut self.max_reversal, MAX_REPAIR_REVERSAL);
        for _ in 0..kicks {
            let l1 = rng.random_range(1..=MAX_SEGMENT.min((n - 1) / 2));
            let l2 = rng.random_range(1..=MAX_SEGMENT.min((n - 1) / 2));
            // Position 0 (the start) never moves.
            let p = rng.random_range(1..=n - l1 - l2);
            let (x, a0, a1) = (self.order[p - 1], self.order[p], self.order[p + l1 - 1]);
            let (b0, b1, y) = (self.order[p + l1], self.order[p + l1 + l2 - 1], self.at(p + l1 + l2));
            let delta =
                self.d(x, b0) + self.d(b1, a0) + self.d_opt(a1, y) - self.d(x, a0) - self.d(a1, b0) - self.d_opt(b1, y);
            if self.window.is_some()
                && !self.blocks_ok(&[
                    (0, p, false),
                    (p + l1, l2, false),
                    (p, l1, false),
                    (p + l1 + l2, n - p - l1 - l2, false),
                ])
            {
                continue;
            }
            self.log.clear();
            self.logging = true;
            self.gain = 0.0;
            self.rotate(p, p + l1 + l2, l1);
            for q in [Some(x), Some(a0), Some(a1), Some(b0), Some(b1), y].into_iter().flatten() {
                if !queued[q as usize] {
                    queued[q as usize] = true;
                    queue.push_back(q);
                }
            }
            let mut local = ImproveStats::default();
            self.run_queue(nbrs, &mut queue, &mut queued, REPAIR_MOVES, &mut local);
            self.logging = false;
            if self.gain - delta > MIN_GAIN_MM {
                stats.two_opt_moves += local.two_opt_moves;
                stats.or_opt_moves += local.or_opt_moves;
                stats.kicks_kept += 1;
                self.log.clear();
            } else {
                self.undo();
            }
        }
        self.max_reversal = max_reversal;
    }
}

/// Improves an open path in place with neighbour-list 2-opt and Or-opt. At most
/// `max_moves` improving moves are applied, so the effort is bounded on any input.
#[cfg(test)]
pub(crate) fn improve(points: &[[f64; 3]], nbrs: &[Vec<u32>], order: &mut Vec<u32>, max_moves: usize) -> ImproveStats {
    improve_with(points, nbrs, order, max_moves, None, 0, 0)
}

/// [`improve`], accepting only moves that keep the recovery rule's count window, then
/// `kicks` perturbation rounds (see `PathState::perturb`) seeded by `seed`.
pub(super) fn improve_with(
    points: &[[f64; 3]],
    nbrs: &[Vec<u32>],
    order: &mut Vec<u32>,
    max_moves: usize,
    window: Option<Window>,
    kicks: usize,
    seed: u64,
) -> ImproveStats {
    let n = order.len();
    let mut pos = vec![0usize; points.len()];
    for (i, &q) in order.iter().enumerate() {
        pos[q as usize] = i;
    }
    let mut st = PathState {
        points,
        order: std::mem::take(order),
        pos,
        window,
        gain: 0.0,
        log: Vec::new(),
        logging: false,
        max_reversal: usize::MAX,
    };
    let mut stats = ImproveStats::default();
    let mut queue: VecDeque<u32> = st.order.iter().copied().collect();
    let mut queued = vec![true; points.len()];
    st.run_queue(nbrs, &mut queue, &mut queued, max_moves, &mut stats);
    if !stats.budget_exhausted && kicks > 0 {
        st.perturb(nbrs, kicks, seed, &mut stats);
    }
    debug_assert_eq!(st.order.len(), n);
    *order = st.order;
    stats
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::order::tests::random_points;

    #[test]
    fn undo_restores_the_order() {
        let pts = random_points(200, 8);
        let order: Vec<u32> = (0..200).collect();
        let pos: Vec<usize> = (0..200).collect();
        let mut st = PathState {
            points: &pts,
            order: order.clone(),
            pos,
            window: None,
            gain: 0.0,
            log: Vec::new(),
            logging: true,
            max_reversal: usize::MAX,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            match rng.random_range(0..3) {
                0 => {
                    let lo = rng.random_range(1..150);
                    st.reverse(lo, lo + rng.random_range(0..50));
                }
                1 => {
                    let i = rng.random_range(1..190);
                    let len = rng.random_range(1..=3);
                    let u = loop {
                        let u = rng.random_range(0..200u32);
                        if !(i..i + len).contains(&st.pos[u as usize]) {
                            break u;
                        }
                    };
                    st.move_segment(i, len, u, rng.random());
                }
                _ => {
                    let lo = rng.random_range(1..100);
                    st.rotate(lo, lo + 60, rng.random_range(1..60));
                }
            }
        }
        assert_ne!(st.order, order);
        st.undo();
        assert_eq!(st.order, order);
        assert!(st.order.iter().enumerate().all(|(i, &q)| st.pos[q as usize] == i));
    }
}

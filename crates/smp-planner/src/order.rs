//! Execution order: a short open path through the dots.
//!
//! A nearest-neighbour tour from a given start, then 2-opt and Or-opt moves restricted to
//! each dot's nearest neighbours (the usual candidate-list speed-up), processed from a work
//! queue until no improving move is left or a move budget is spent. The start dot stays
//! first (it is chosen near the edge of the area, where the arm arrives); the end is free.
//!
//! Points are given in a frame where the dots lie on a height field over (x, y) (the patch
//! frame): buckets over (x, y) give exact 3-D nearest neighbours, because the (x, y)
//! distance never exceeds the 3-D distance. The patch frame is a rigid transform of the head
//! frame, so path lengths are head-frame lengths.

use std::collections::VecDeque;

use crate::geometry::dist3;

/// Moves that gain less than this (mm) are ignored, so floating-point noise cannot cycle.
const MIN_GAIN_MM: f64 = 1e-7;

/// Buckets over (x, y) for nearest-neighbour queries, with removal.
struct XyBuckets {
    origin: [f64; 2],
    cell: f64,
    nx: usize,
    ny: usize,
    cells: Vec<Vec<u32>>,
}

impl XyBuckets {
    fn new(points: &[[f64; 3]], cell: f64) -> Self {
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in points {
            for a in 0..2 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        if points.is_empty() {
            lo = [0.0; 2];
            hi = [0.0; 2];
        }
        let nx = ((hi[0] - lo[0]) / cell).floor() as usize + 1;
        let ny = ((hi[1] - lo[1]) / cell).floor() as usize + 1;
        let mut b = XyBuckets { origin: lo, cell, nx, ny, cells: vec![Vec::new(); nx * ny] };
        for (i, p) in points.iter().enumerate() {
            let k = b.key(p);
            b.cells[k].push(i as u32);
        }
        b
    }

    fn ij(&self, p: &[f64; 3]) -> (usize, usize) {
        let i = (((p[0] - self.origin[0]) / self.cell).floor().max(0.0) as usize).min(self.nx - 1);
        let j = (((p[1] - self.origin[1]) / self.cell).floor().max(0.0) as usize).min(self.ny - 1);
        (i, j)
    }

    fn key(&self, p: &[f64; 3]) -> usize {
        let (i, j) = self.ij(p);
        j * self.nx + i
    }

    fn remove(&mut self, p: &[f64; 3], idx: u32) {
        let k = self.key(p);
        if let Some(slot) = self.cells[k].iter().position(|&q| q == idx) {
            self.cells[k].swap_remove(slot);
        }
    }

    /// Visits the cells at Chebyshev ring `ring` around cell (ci, cj).
    fn ring(&self, ci: usize, cj: usize, ring: usize, mut f: impl FnMut(u32)) {
        let (ci, cj, r) = (ci as i64, cj as i64, ring as i64);
        for j in (cj - r)..=(cj + r) {
            if j < 0 || j >= self.ny as i64 {
                continue;
            }
            let on_edge_row = j == cj - r || j == cj + r;
            let step = if on_edge_row || r == 0 { 1 } else { (2 * r) as usize };
            let mut i = ci - r;
            while i <= ci + r {
                if i >= 0 && i < self.nx as i64 {
                    for &q in &self.cells[j as usize * self.nx + i as usize] {
                        f(q);
                    }
                }
                i += step as i64;
            }
        }
    }

    /// The `k` nearest points to `p` (3-D distance), excluding `skip`, nearest first.
    fn k_nearest(&self, points: &[[f64; 3]], p: &[f64; 3], k: usize, skip: u32) -> Vec<(f64, u32)> {
        let (ci, cj) = self.ij(p);
        let max_ring = self.nx.max(self.ny);
        let mut found: Vec<(f64, u32)> = Vec::new();
        for ring in 0..=max_ring {
            self.ring(ci, cj, ring, |q| {
                if q != skip {
                    found.push((dist3(*p, points[q as usize]), q));
                }
            });
            if found.len() >= k {
                found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                found.truncate(k);
                // Anything in a later ring is at least `ring * cell` away in (x, y).
                if found[k - 1].0 <= ring as f64 * self.cell {
                    return found;
                }
            }
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        found.truncate(k);
        found
    }
}

/// Length of an open path, mm.
pub(crate) fn path_length(points: &[[f64; 3]], order: &[u32]) -> f64 {
    order.windows(2).map(|w| dist3(points[w[0] as usize], points[w[1] as usize])).sum()
}

/// Bucket size for a point set: about the mean spacing, so rings hold a few points each.
fn bucket_cell(points: &[[f64; 3]]) -> f64 {
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in points {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let area = ((hi[0] - lo[0]) * (hi[1] - lo[1])).max(1.0);
    (area / points.len().max(1) as f64).sqrt().clamp(0.5, 50.0)
}

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

/// Each point's `k` nearest neighbours, nearest first.
pub(crate) fn neighbour_lists(points: &[[f64; 3]], k: usize) -> Vec<Vec<u32>> {
    let buckets = XyBuckets::new(points, bucket_cell(points));
    (0..points.len())
        .map(|i| buckets.k_nearest(points, &points[i], k, i as u32).into_iter().map(|(_, q)| q).collect())
        .collect()
}

/// Effort spent and gained by [`improve`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ImproveStats {
    pub(crate) two_opt_moves: usize,
    pub(crate) or_opt_moves: usize,
    pub(crate) budget_exhausted: bool,
}

struct PathState<'a> {
    points: &'a [[f64; 3]],
    order: Vec<u32>,
    pos: Vec<usize>,
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
    }

    /// First improving 2-opt move around `a`; returns the nodes whose edges changed.
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
                    if gain > MIN_GAIN_MM {
                        self.reverse(i + 1, j);
                        return Some([Some(a), Some(b), Some(c), dn]);
                    }
                } else if j < i {
                    let e = self.order[j + 1];
                    if e == a {
                        continue;
                    }
                    let gain = self.d(c, e) + dab - dac - self.d(e, b);
                    if gain > MIN_GAIN_MM {
                        self.reverse(j + 1, i);
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
                    if gain > MIN_GAIN_MM {
                        self.reverse(j, i - 1);
                        return Some([Some(a), Some(p), Some(c), Some(q)]);
                    }
                } else if j > i {
                    let q = self.order[j - 1];
                    if q == a {
                        continue;
                    }
                    let gain = dpa + self.d(q, c) - self.d(p, q) - dac;
                    if gain > MIN_GAIN_MM {
                        self.reverse(i, j - 1);
                        return Some([Some(a), Some(p), Some(c), Some(q)]);
                    }
                }
            }
        }
        None
    }

    /// First improving Or-opt move of a segment of 1-3 dots starting at `a` (kept or
    /// reversed) to between two neighbouring dots elsewhere.
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
                        if remove_gain - cost > MIN_GAIN_MM {
                            self.move_segment(i, len, u, reversed);
                            return Some([Some(p), nx, Some(s0), Some(sl), Some(u), v]);
                        }
                    }
                }
            }
        }
        None
    }

    /// Moves order[i..i+len] to just after node `u`, reversed if asked.
    fn move_segment(&mut self, i: usize, len: usize, u: u32, reversed: bool) {
        let mut seg: Vec<u32> = self.order.drain(i..i + len).collect();
        if reversed {
            seg.reverse();
        }
        let pu = self.pos[u as usize];
        let pu = if pu > i { pu - len } else { pu };
        let at = pu + 1;
        self.order.splice(at..at, seg);
        let (lo, hi) = (i.min(at), (i + len).max(at + len).min(self.order.len()));
        for k in lo..hi {
            self.pos[self.order[k] as usize] = k;
        }
    }
}

/// Improves an open path in place with neighbour-list 2-opt and Or-opt. At most
/// `max_moves` improving moves are applied, so the effort is bounded on any input.
pub(crate) fn improve(points: &[[f64; 3]], nbrs: &[Vec<u32>], order: &mut Vec<u32>, max_moves: usize) -> ImproveStats {
    let n = order.len();
    let mut pos = vec![0usize; points.len()];
    for (i, &q) in order.iter().enumerate() {
        pos[q as usize] = i;
    }
    let mut st = PathState { points, order: std::mem::take(order), pos };
    let mut stats = ImproveStats::default();
    let mut queue: VecDeque<u32> = st.order.iter().copied().collect();
    let mut queued = vec![true; points.len()];
    while let Some(a) = queue.pop_front() {
        queued[a as usize] = false;
        if stats.two_opt_moves + stats.or_opt_moves >= max_moves {
            stats.budget_exhausted = true;
            break;
        }
        let touched: Vec<Option<u32>> = if let Some(t) = st.two_opt(a, &nbrs[a as usize]) {
            stats.two_opt_moves += 1;
            t.to_vec()
        } else if let Some(t) = st.or_opt(a, nbrs) {
            stats.or_opt_moves += 1;
            t.to_vec()
        } else {
            continue;
        };
        for q in touched.into_iter().flatten() {
            if !queued[q as usize] {
                queued[q as usize] = true;
                queue.push_back(q);
            }
        }
    }
    debug_assert_eq!(st.order.len(), n);
    *order = st.order;
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_points(n: usize, seed: u64) -> Vec<[f64; 3]> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| [rng.random::<f64>() * 60.0, rng.random::<f64>() * 60.0, rng.random::<f64>() * 2.0]).collect()
    }

    fn is_permutation(order: &[u32], n: usize) -> bool {
        let mut seen = vec![false; n];
        order.len() == n && order.iter().all(|&q| !std::mem::replace(&mut seen[q as usize], true))
    }

    #[test]
    fn neighbours_match_brute_force() {
        let pts = random_points(400, 1);
        let lists = neighbour_lists(&pts, 6);
        for (i, list) in lists.iter().enumerate() {
            let mut brute: Vec<(f64, u32)> =
                (0..pts.len()).filter(|&j| j != i).map(|j| (dist3(pts[i], pts[j]), j as u32)).collect();
            brute.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<u32> = brute.iter().take(6).map(|x| x.1).collect();
            assert_eq!(list, &want, "point {i}");
        }
    }

    #[test]
    fn nn_visits_everything_once_from_the_start() {
        let pts = random_points(500, 2);
        let order = nearest_neighbour(&pts, 17);
        assert!(is_permutation(&order, pts.len()));
        assert_eq!(order[0], 17);
    }

    #[test]
    fn improvement_shortens_and_keeps_a_permutation_and_the_start() {
        for seed in 0..5 {
            let pts = random_points(800, 10 + seed);
            let nn = nearest_neighbour(&pts, 0);
            let before = path_length(&pts, &nn);
            let mut order = nn.clone();
            let lists = neighbour_lists(&pts, 8);
            let stats = improve(&pts, &lists, &mut order, 100_000);
            let after = path_length(&pts, &order);
            assert!(is_permutation(&order, pts.len()));
            assert_eq!(order[0], 0);
            assert!(!stats.budget_exhausted);
            assert!(after < 0.95 * before, "seed {seed}: {before:.1} -> {after:.1} mm");
        }
    }

    #[test]
    fn budget_bounds_the_effort() {
        let pts = random_points(300, 5);
        let mut order = nearest_neighbour(&pts, 0);
        let lists = neighbour_lists(&pts, 8);
        let stats = improve(&pts, &lists, &mut order, 3);
        assert_eq!(stats.two_opt_moves + stats.or_opt_moves, 3);
        assert!(stats.budget_exhausted);
        assert!(is_permutation(&order, pts.len()));
    }
}

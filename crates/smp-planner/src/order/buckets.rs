//! Buckets over (x, y) for exact 3-D nearest-neighbour queries on a height field (the
//! (x, y) distance never exceeds the 3-D one), with removal; the candidate neighbour lists
//! of the improvement moves; path length.

use crate::geometry::dist3;

/// Buckets over (x, y) for nearest-neighbour queries, with removal.
pub(crate) struct XyBuckets {
    origin: [f64; 2],
    pub(crate) cell: f64,
    pub(super) nx: usize,
    pub(super) ny: usize,
    cells: Vec<Vec<u32>>,
}

impl XyBuckets {
    pub(crate) fn new(points: &[[f64; 3]], cell: f64) -> Self {
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
        // Never more cells than a few per point (far-flung outliers would otherwise ask
        // for a huge grid); queries stay exact at any cell size, only slower.
        let max_cells = (4 * points.len()).max(1024) as f64;
        let (w, h) = (hi[0] - lo[0], hi[1] - lo[1]);
        let mut cell = cell;
        while (w / cell + 1.0) * (h / cell + 1.0) > max_cells {
            cell *= 2.0;
        }
        let nx = (w / cell).floor() as usize + 1;
        let ny = (h / cell).floor() as usize + 1;
        let mut b = XyBuckets { origin: lo, cell, nx, ny, cells: vec![Vec::new(); nx * ny] };
        for (i, p) in points.iter().enumerate() {
            let k = b.key(p);
            b.cells[k].push(i as u32);
        }
        b
    }

    /// Buckets holding only the points `ids` (indices into `points`).
    pub(crate) fn with_ids(points: &[[f64; 3]], ids: &[u32], cell: f64) -> Self {
        let sub: Vec<[f64; 3]> = ids.iter().map(|&i| points[i as usize]).collect();
        let mut b = XyBuckets::new(&sub, cell);
        for c in &mut b.cells {
            for q in c.iter_mut() {
                *q = ids[*q as usize];
            }
        }
        b
    }

    pub(crate) fn ij(&self, p: &[f64; 3]) -> (usize, usize) {
        let i = (((p[0] - self.origin[0]) / self.cell).floor().max(0.0) as usize).min(self.nx - 1);
        let j = (((p[1] - self.origin[1]) / self.cell).floor().max(0.0) as usize).min(self.ny - 1);
        (i, j)
    }

    fn key(&self, p: &[f64; 3]) -> usize {
        let (i, j) = self.ij(p);
        j * self.nx + i
    }

    /// Largest ring index that can hold a cell.
    pub(crate) fn max_ring(&self) -> usize {
        self.nx.max(self.ny)
    }

    pub(super) fn remove(&mut self, p: &[f64; 3], idx: u32) {
        let k = self.key(p);
        if let Some(slot) = self.cells[k].iter().position(|&q| q == idx) {
            self.cells[k].swap_remove(slot);
        }
    }

    /// Visits the points in the cells at Chebyshev ring `ring` around cell (ci, cj). After
    /// rings `0..=r`, every point not yet visited is at least `r · cell` away in (x, y).
    pub(crate) fn ring(&self, ci: usize, cj: usize, ring: usize, mut f: impl FnMut(u32)) {
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

    /// The `k` nearest points to `p` (3-D distance) at least `min_d` away, excluding
    /// `skip`, nearest first.
    pub(super) fn k_nearest_beyond(
        &self,
        points: &[[f64; 3]],
        p: &[f64; 3],
        k: usize,
        skip: u32,
        min_d: f64,
    ) -> Vec<(f64, u32)> {
        let (ci, cj) = self.ij(p);
        let mut found: Vec<(f64, u32)> = Vec::new();
        if k == 0 {
            return found;
        }
        for ring in 0..=self.max_ring() {
            self.ring(ci, cj, ring, |q| {
                if q != skip {
                    let d = dist3(*p, points[q as usize]);
                    if d >= min_d {
                        found.push((d, q));
                    }
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

    /// The `k` nearest points to `p` (3-D distance), excluding `skip`, nearest first.
    pub(super) fn k_nearest(&self, points: &[[f64; 3]], p: &[f64; 3], k: usize, skip: u32) -> Vec<(f64, u32)> {
        self.k_nearest_beyond(points, p, k, skip, f64::NEG_INFINITY)
    }
}

/// Length of an open path, mm.
pub(crate) fn path_length(points: &[[f64; 3]], order: &[u32]) -> f64 {
    order.windows(2).map(|w| dist3(points[w[0] as usize], points[w[1] as usize])).sum()
}

/// Bucket size for a point set: about the mean spacing, so rings hold a few points each.
pub(crate) fn bucket_cell(points: &[[f64; 3]]) -> f64 {
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

/// Each point's `k` nearest neighbours, nearest first.
pub(crate) fn neighbour_lists(points: &[[f64; 3]], k: usize) -> Vec<Vec<u32>> {
    neighbour_lists_beyond(points, k, f64::NEG_INFINITY)
}

/// Each point's `k` nearest neighbours at least `min_d` away, nearest first.
pub(super) fn neighbour_lists_beyond(points: &[[f64; 3]], k: usize, min_d: f64) -> Vec<Vec<u32>> {
    let buckets = XyBuckets::new(points, bucket_cell(points));
    (0..points.len())
        .map(|i| buckets.k_nearest_beyond(points, &points[i], k, i as u32, min_d).into_iter().map(|(_, q)| q).collect())
        .collect()
}

//! A uniform grid over 3-D points for radius queries: follicle look-ups while rendering,
//! spacing checks while placing dots, and nearest matches while evaluating.

use std::collections::HashMap;

/// Buckets point indices by cell; cell size should be about the query radius.
#[derive(Debug, Clone)]
pub struct PointGrid {
    cell_mm: f64,
    cells: HashMap<(i64, i64, i64), Vec<u32>>,
    points: Vec<[f64; 3]>,
}

impl PointGrid {
    pub fn new(cell_mm: f64) -> Self {
        assert!(cell_mm > 0.0 && cell_mm.is_finite(), "cell size must be positive");
        PointGrid { cell_mm, cells: HashMap::new(), points: Vec::new() }
    }

    pub fn from_points(cell_mm: f64, points: impl IntoIterator<Item = [f64; 3]>) -> Self {
        let mut g = PointGrid::new(cell_mm);
        for p in points {
            g.insert(p);
        }
        g
    }

    fn key(&self, p: [f64; 3]) -> (i64, i64, i64) {
        let k = |v: f64| (v / self.cell_mm).floor() as i64;
        (k(p[0]), k(p[1]), k(p[2]))
    }

    /// Adds a point and returns its index.
    pub fn insert(&mut self, p: [f64; 3]) -> u32 {
        let idx = self.points.len() as u32;
        self.points.push(p);
        let key = self.key(p);
        self.cells.entry(key).or_default().push(idx);
        idx
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn point(&self, idx: u32) -> [f64; 3] {
        self.points[idx as usize]
    }

    /// Calls `f(index, distance)` for every point within `radius_mm` of `p`.
    pub fn for_each_within(&self, p: [f64; 3], radius_mm: f64, mut f: impl FnMut(u32, f64)) {
        let r = (radius_mm / self.cell_mm).ceil() as i64;
        let (kx, ky, kz) = self.key(p);
        let r2 = radius_mm * radius_mm;
        for dx in -r..=r {
            for dy in -r..=r {
                for dz in -r..=r {
                    if let Some(bucket) = self.cells.get(&(kx + dx, ky + dy, kz + dz)) {
                        for &i in bucket {
                            let q = self.points[i as usize];
                            let d2 = (q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2) + (q[2] - p[2]).powi(2);
                            if d2 <= r2 {
                                f(i, d2.sqrt());
                            }
                        }
                    }
                }
            }
        }
    }

    /// True when any point lies strictly closer than `radius_mm` to `p`.
    pub fn any_within(&self, p: [f64; 3], radius_mm: f64) -> bool {
        let mut hit = false;
        self.for_each_within(p, radius_mm, |_, d| hit |= d < radius_mm);
        hit
    }

    /// Nearest point within `radius_mm`, with its distance.
    pub fn nearest_within(&self, p: [f64; 3], radius_mm: f64) -> Option<(u32, f64)> {
        let mut best: Option<(u32, f64)> = None;
        self.for_each_within(p, radius_mm, |i, d| {
            if best.is_none_or(|(_, bd)| d < bd) {
                best = Some((i, d));
            }
        });
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_query_matches_brute_force() {
        let pts: Vec<[f64; 3]> = (0..500)
            .map(|i| {
                let f = i as f64;
                [(f * 0.37).sin() * 20.0, (f * 0.11).cos() * 20.0, (f * 0.05).sin() * 3.0]
            })
            .collect();
        let grid = PointGrid::from_points(1.0, pts.iter().copied());
        let q = [1.0, 2.0, 0.5];
        let mut found = Vec::new();
        grid.for_each_within(q, 4.0, |i, _| found.push(i));
        found.sort_unstable();
        let brute: Vec<u32> = pts
            .iter()
            .enumerate()
            .filter(|(_, p)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)).sqrt() <= 4.0)
            .map(|(i, _)| i as u32)
            .collect();
        assert_eq!(found, brute);
    }
}

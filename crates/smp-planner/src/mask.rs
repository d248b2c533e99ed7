//! The treatment mask: which cells of the map's region grid this session may plunge into.
//!
//! A cell is treated (`#`) when its region is one the spec names, its centre lies at least
//! `region_margin_mm` from every untreated cell, from unscanned (`Outside`) cells and from the
//! edge of the grid and of the surface domain, and the skin there is tilted no more than
//! `max_tilt_deg` from the vertical needle. The cell test is at the cell centre; dots are
//! checked again at their exact position (see [`TreatmentMask::allows`]), so a coarse grid
//! (vision uses 2 mm cells) never lets a dot sit inside the margin.

use smp_core::map::{CellGrid, RegionKind, ScalpMap};
use smp_core::plan::SessionSpec;

use crate::geometry::PatchGeometry;

/// A value larger than any squared distance on a grid, finite so that EDT arithmetic stays exact.
const FAR: f64 = 1e20;

/// Exact squared Euclidean distance transform in one dimension (Felzenszwalb & Huttenlocher).
/// `f[q]` is 0 at features and [`FAR`] elsewhere; output `d[q] = min_p (q - p)² + f[p]`.
fn edt_1d(f: &[f64], d: &mut [f64], v: &mut Vec<usize>, z: &mut Vec<f64>) {
    let n = f.len();
    if n == 0 {
        return;
    }
    v.clear();
    v.resize(n, 0);
    z.clear();
    z.resize(n + 1, 0.0);
    let mut k = 0usize;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let fq = f[q] + (q * q) as f64;
        // z[0] is -inf, so the search always stops at k = 0 at the latest.
        let mut s = (fq - (f[v[k]] + (v[k] * v[k]) as f64)) / (2.0 * q as f64 - 2.0 * v[k] as f64);
        while s <= z[k] {
            k -= 1;
            s = (fq - (f[v[k]] + (v[k] * v[k]) as f64)) / (2.0 * q as f64 - 2.0 * v[k] as f64);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, dq) in d.iter_mut().enumerate().take(n) {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *dq = (q as f64 - p as f64).powi(2) + f[p];
    }
}

/// Distance (in cells) from every cell centre to the nearest feature cell centre, on an
/// `nx` x `ny` grid in row-major order (row = y). Cells beyond the grid count as features
/// when `border_is_feature`, which is how "off the map" is treated as unscanned.
pub(crate) fn distance_transform(nx: usize, ny: usize, feature: &[bool], border_is_feature: bool) -> Vec<f64> {
    let pad = usize::from(border_is_feature);
    let (px, py) = (nx + 2 * pad, ny + 2 * pad);
    let mut g = vec![if border_is_feature { 0.0 } else { FAR }; px * py];
    for j in 0..ny {
        for i in 0..nx {
            g[(j + pad) * px + i + pad] = if feature[j * nx + i] { 0.0 } else { FAR };
        }
    }
    let (mut v, mut z) = (Vec::new(), Vec::new());
    let mut col = vec![0.0; py];
    let mut out = vec![0.0; py];
    for i in 0..px {
        for j in 0..py {
            col[j] = g[j * px + i];
        }
        edt_1d(&col, &mut out, &mut v, &mut z);
        for j in 0..py {
            g[j * px + i] = out[j].min(FAR);
        }
    }
    let mut row = vec![0.0; px];
    let mut out = vec![0.0; px];
    for j in 0..py {
        row.copy_from_slice(&g[j * px..(j + 1) * px]);
        edt_1d(&row, &mut out, &mut v, &mut z);
        g[j * px..(j + 1) * px].copy_from_slice(&out);
    }
    let mut d = vec![0.0; nx * ny];
    for j in 0..ny {
        for i in 0..nx {
            d[j * nx + i] = g[(j + pad) * px + i + pad].min(FAR).sqrt();
        }
    }
    d
}

/// Area bookkeeping of the mask, for estimates and warnings (surface areas, cm²).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct MaskStats {
    /// Cells whose region is one the spec treats (inside the surface domain).
    pub(crate) treat_cm2: f64,
    /// ... of which lie within the margin.
    pub(crate) margin_cm2: f64,
    /// ... of which (outside the margin) are steeper than `max_tilt_deg`.
    pub(crate) tilt_cm2: f64,
    /// What remains: the treatment mask.
    pub(crate) mask_cm2: f64,
    pub(crate) mask_cells: usize,
    /// Treatable skin left out because it lies in front of the designed hairline.
    pub(crate) front_cm2: f64,
}

/// The mask, with the fields dot placement needs to stay inside it.
#[derive(Debug, Clone)]
pub(crate) struct TreatmentMask {
    /// `#`/`.` on the map's region grid; goes into the plan as `SessionPlan::treatment`.
    pub(crate) grid: CellGrid,
    pub(crate) nx: usize,
    pub(crate) ny: usize,
    pub(crate) cell_mm: f64,
    pub(crate) origin: [f64; 2],
    /// Per cell: inside the mask.
    pub(crate) mask: Vec<bool>,
    /// Per cell: not a treated region (untreated, Outside, or off the surface domain).
    bad: Vec<bool>,
    /// Per cell: distance from the centre to the nearest bad cell centre, mm.
    dist_bad_mm: Vec<f64>,
    /// Per cell: distance from the centre to the mask's border, mm (0 outside the mask).
    pub(crate) border_mm: Vec<f64>,
    /// Per cell: surface area per parameter area at the centre.
    pub(crate) area_factor: Vec<f64>,
    /// Per cell: height and gradient (z, dz/dx, dz/dy) at the centre (inside the domain).
    pub(crate) surface_at: Vec<[f64; 3]>,
    /// Per cell: the region is scar.
    pub(crate) scar: Vec<bool>,
    margin_mm: f64,
    max_tilt_deg: f64,
    domain_x: [f64; 2],
    domain_y: [f64; 2],
    pub(crate) stats: MaskStats,
}

impl TreatmentMask {
    pub(crate) fn build(map: &ScalpMap, spec: &SessionSpec, geo: &PatchGeometry<'_>) -> Self {
        let g = &map.regions;
        let (nx, ny, c) = (g.nx, g.ny, g.cell_mm);
        let n = nx * ny;
        let surface = geo.surface;
        let mut treat = vec![false; n];
        let mut scar = vec![false; n];
        let mut tilt = vec![f64::INFINITY; n];
        let mut area_factor = vec![1.0; n];
        let mut surface_at = vec![[0.0; 3]; n];
        for (j, row) in g.rows.iter().enumerate() {
            for (i, code) in row.chars().enumerate() {
                let k = j * nx + i;
                let (x, y) = g.cell_centre(i, j);
                if !surface.contains_xy(x, y) {
                    continue;
                }
                let kind = RegionKind::from_code(code).unwrap_or(RegionKind::Outside);
                treat[k] = kind != RegionKind::Outside && spec.treat.contains(&kind);
                scar[k] = kind == RegionKind::Scar;
                let (z, gx, gy) = geo.height_and_gradient(x, y);
                tilt[k] = geo.tilt_from_gradient_deg(gx, gy);
                area_factor[k] = (1.0 + gx * gx + gy * gy).sqrt();
                surface_at[k] = [z, gx, gy];
            }
        }
        let bad: Vec<bool> = treat.iter().map(|t| !t).collect();
        let dist_bad_mm: Vec<f64> = distance_transform(nx, ny, &bad, true).into_iter().map(|d| d * c).collect();

        let mut me = TreatmentMask {
            grid: CellGrid::filled(g.origin_x_mm, g.origin_y_mm, c, nx, ny, '.'),
            nx,
            ny,
            cell_mm: c,
            origin: [g.origin_x_mm, g.origin_y_mm],
            mask: vec![false; n],
            bad,
            dist_bad_mm,
            border_mm: vec![0.0; n],
            area_factor,
            surface_at,
            scar,
            margin_mm: spec.region_margin_mm,
            max_tilt_deg: spec.max_tilt_deg,
            domain_x: surface.x_range_mm,
            domain_y: surface.y_range_mm,
            stats: MaskStats::default(),
        };
        let cell_cm2 = c * c / 100.0;
        let mut stats = MaskStats::default();
        for j in 0..ny {
            for i in 0..nx {
                let k = j * nx + i;
                if !treat[k] {
                    continue;
                }
                let a = cell_cm2 * me.area_factor[k];
                stats.treat_cm2 += a;
                let (x, y) = g.cell_centre(i, j);
                if me.distance_to_bad_mm(x, y) < me.margin_mm {
                    stats.margin_cm2 += a;
                } else if tilt[k] > me.max_tilt_deg {
                    stats.tilt_cm2 += a;
                } else {
                    me.mask[k] = true;
                    stats.mask_cm2 += a;
                    stats.mask_cells += 1;
                    me.grid.set(i, j, '#');
                }
            }
        }
        me.stats = stats;
        let outside: Vec<bool> = me.mask.iter().map(|m| !m).collect();
        me.border_mm = distance_transform(nx, ny, &outside, true)
            .into_iter()
            .zip(&me.mask)
            .map(|(d, m)| if *m { (d * c - 0.5 * c).max(0.0) } else { 0.0 })
            .collect();
        me
    }

    /// Removes cells from the mask (skin in front of the designed hairline) without moving
    /// the border feather (the hairline has its own ramp) and without counting them as
    /// untreated skin for the margin (the hairline itself is tested at each dot's exact
    /// position). Returns the skin area removed, cm².
    pub(crate) fn exclude(&mut self, mut drop: impl FnMut(usize) -> bool) -> f64 {
        let cell_cm2 = self.cell_mm * self.cell_mm / 100.0;
        let mut removed = 0.0;
        for k in 0..self.mask.len() {
            if self.mask[k] && drop(k) {
                self.mask[k] = false;
                self.grid.set(k % self.nx, k / self.nx, '.');
                removed += cell_cm2 * self.area_factor[k];
                self.stats.mask_cells -= 1;
            }
        }
        self.stats.mask_cm2 = (self.stats.mask_cm2 - removed).max(0.0);
        self.stats.front_cm2 += removed;
        removed
    }

    /// Cell index of a parameter point.
    pub(crate) fn cell_index(&self, x_mm: f64, y_mm: f64) -> Option<usize> {
        self.grid.cell_of(x_mm, y_mm).map(|(i, j)| j * self.nx + i)
    }

    /// Distance from a parameter point to the nearest part of the plane that is not a
    /// treated region: untreated cells (as squares), the grid edge and the surface domain edge.
    /// Exact whenever it is below the margin; above it, possibly a smaller value that is still
    /// at least the margin (callers only compare it with the margin).
    pub(crate) fn distance_to_bad_mm(&self, x: f64, y: f64) -> f64 {
        let c = self.cell_mm;
        let gx = [self.origin[0], self.origin[0] + self.nx as f64 * c];
        let gy = [self.origin[1], self.origin[1] + self.ny as f64 * c];
        let mut best = (x - gx[0])
            .min(gx[1] - x)
            .min(y - gy[0])
            .min(gy[1] - y)
            .min(x - self.domain_x[0])
            .min(self.domain_x[1] - x)
            .min(y - self.domain_y[0])
            .min(self.domain_y[1] - y)
            .max(0.0);
        let Some(k) = self.cell_index(x, y) else { return 0.0 };
        if self.bad[k] {
            return 0.0;
        }
        // Every point of a bad square is at least (centre distance - c·√2) away: when that
        // already clears the margin, the exact value does not matter to any caller.
        let lower = self.dist_bad_mm[k] - c * std::f64::consts::SQRT_2;
        if lower >= self.margin_mm {
            return best.min(lower);
        }
        let reach = ((self.margin_mm.max(c)) / c).ceil() as i64 + 2;
        let (ci, cj) = ((k % self.nx) as i64, (k / self.nx) as i64);
        for dj in -reach..=reach {
            for di in -reach..=reach {
                let (i, j) = (ci + di, cj + dj);
                if i < 0 || j < 0 || i >= self.nx as i64 || j >= self.ny as i64 {
                    continue;
                }
                let kk = j as usize * self.nx + i as usize;
                if !self.bad[kk] {
                    continue;
                }
                let cx = self.origin[0] + (i as f64 + 0.5) * c;
                let cy = self.origin[1] + (j as f64 + 0.5) * c;
                let dx = ((x - cx).abs() - 0.5 * c).max(0.0);
                let dy = ((y - cy).abs() - 0.5 * c).max(0.0);
                best = best.min((dx * dx + dy * dy).sqrt());
            }
        }
        best
    }

    /// True when a dot may be placed at this parameter point: inside a mask cell, inside the
    /// surface domain, at least the margin from untreated skin, and not too steep, all
    /// tested at the exact point rather than the cell centre.
    pub(crate) fn allows(&self, geo: &PatchGeometry<'_>, x: f64, y: f64) -> bool {
        self.allows_with_tilt(geo, x, y, geo.tilt_deg(x, y))
    }

    /// [`Self::allows`] with the tilt at the point already computed.
    pub(crate) fn allows_with_tilt(&self, geo: &PatchGeometry<'_>, x: f64, y: f64, tilt_deg: f64) -> bool {
        let Some(k) = self.cell_index(x, y) else { return false };
        self.mask[k]
            && geo.surface.contains_xy(x, y)
            && tilt_deg <= self.max_tilt_deg
            && self.distance_to_bad_mm(x, y) >= self.margin_mm
    }

    /// Bilinear weights of a parameter point over the cell centres around it, so several
    /// per-cell fields can be interpolated for the price of one lookup.
    pub(crate) fn bilinear(&self, x: f64, y: f64) -> Bilinear {
        let fx = ((x - self.origin[0]) / self.cell_mm - 0.5).clamp(0.0, (self.nx - 1) as f64);
        let fy = ((y - self.origin[1]) / self.cell_mm - 0.5).clamp(0.0, (self.ny - 1) as f64);
        let (i0, j0) = (fx as usize, fy as usize);
        let (i1, j1) = ((i0 + 1).min(self.nx - 1), (j0 + 1).min(self.ny - 1));
        let (tx, ty) = (fx - i0 as f64, fy - j0 as f64);
        Bilinear {
            idx: [j0 * self.nx + i0, j0 * self.nx + i1, j1 * self.nx + i0, j1 * self.nx + i1],
            w: [(1.0 - tx) * (1.0 - ty), tx * (1.0 - ty), (1.0 - tx) * ty, tx * ty],
        }
    }

    /// Bilinear interpolation of a per-cell field sampled at cell centres.
    pub(crate) fn interpolate(&self, field: &[f64], x: f64, y: f64) -> f64 {
        let fx = ((x - self.origin[0]) / self.cell_mm - 0.5).clamp(0.0, (self.nx - 1) as f64);
        let fy = ((y - self.origin[1]) / self.cell_mm - 0.5).clamp(0.0, (self.ny - 1) as f64);
        let (i0, j0) = (fx.floor() as usize, fy.floor() as usize);
        let (i1, j1) = ((i0 + 1).min(self.nx - 1), (j0 + 1).min(self.ny - 1));
        let (tx, ty) = (fx - i0 as f64, fy - j0 as f64);
        let at = |i: usize, j: usize| field[j * self.nx + i];
        let a = at(i0, j0) * (1.0 - tx) + at(i1, j0) * tx;
        let b = at(i0, j1) * (1.0 - tx) + at(i1, j1) * tx;
        a * (1.0 - ty) + b * ty
    }

    /// Distance of a parameter point from the mask's border, mm (interpolated).
    pub(crate) fn border_distance_mm(&self, x: f64, y: f64) -> f64 {
        self.interpolate(&self.border_mm, x, y)
    }
}

/// Cells and weights of one bilinear interpolation (see [`TreatmentMask::bilinear`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bilinear {
    idx: [usize; 4],
    w: [f64; 4],
}

impl Bilinear {
    /// Interpolates every component of a packed per-cell field.
    pub(crate) fn apply<const N: usize>(&self, field: &[[f64; N]]) -> [f64; N] {
        let mut out = [0.0; N];
        for (k, w) in self.idx.iter().zip(self.w) {
            let v = &field[*k];
            for c in 0..N {
                out[c] += w * v[c];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_transform_matches_brute_force() {
        let (nx, ny) = (13, 9);
        let feature: Vec<bool> = (0..nx * ny).map(|k| (k * 7919) % 23 == 0).collect();
        let d = distance_transform(nx, ny, &feature, false);
        for j in 0..ny {
            for i in 0..nx {
                let mut best = f64::INFINITY;
                for jj in 0..ny {
                    for ii in 0..nx {
                        if feature[jj * nx + ii] {
                            let dd = ((i as f64 - ii as f64).powi(2) + (j as f64 - jj as f64).powi(2)).sqrt();
                            best = best.min(dd);
                        }
                    }
                }
                assert!((d[j * nx + i] - best).abs() < 1e-9, "cell ({i},{j}): {} vs {best}", d[j * nx + i]);
            }
        }
    }

    #[test]
    fn border_counts_as_feature_when_asked() {
        let d = distance_transform(5, 5, &[false; 25], true);
        assert!((d[12] - 3.0).abs() < 1e-12, "centre is 3 cells from the padding: {}", d[12]);
        assert!((d[0] - 1.0).abs() < 1e-12);
    }
}

//! Dot placement: variable-density Poisson-disk sampling (Bridson's algorithm, then a fill
//! pass) on the skin, parametrised by the patch's (x, y) plane.
//!
//! Each dot gets a radius `r = max(min_spacing, sqrt(kappa / density))` in millimetres of
//! skin; two dots conflict when their 3-D distance is below the mean of their radii, so the
//! spacing follows the density smoothly and never drops below `min_spacing`. Candidates are
//! drawn in the tangent plane of the active dot (an annulus [r, 2r] of skin, mapped back to
//! the parameter plane), so the pattern is isotropic on the skin, also where the patch is
//! steep (a full head reaches 75° of tilt, where a parameter disc is a 4:1 ellipse on the
//! skin). Bridson gives up around a dot after a fixed number of failed candidates; a fill
//! pass over a jittered candidate grid then finds every hole a dot still fits in, so the
//! pattern is maximal. This matters most between the fixed points of later sessions: without
//! it, three layers on the full head jammed near 57 dots/cm² (Bridson leaves the small gaps
//! between healed dots unvisited); with it they reach 65-67.
//!
//! Fixed points are never moved and constrain every candidate in 3-D:
//! * map follicles (natural, and dots of earlier sessions the scan found): no dot closer
//!   than the *interleave radius* `max(min_spacing, factor × sqrt(0.62 / total))`, where
//!   `total` is the density the point carries once this session is done (follicles, earlier
//!   dots and this session's): the spacing of one even pattern at that combined density. New
//!   dots thus sit in the middle of the gaps between earlier ones, as layering between the
//!   healed session-1 dots should (DOMAIN), not wherever the hard spacing allows;
//! * needle entries of earlier sessions the scan may no longer see (faded away): no dot
//!   closer than `min_spacing` (the hard rule holds against every dot ever made).
//!
//! Parameter distances never exceed 3-D distances on a height field, so buckets over (x, y)
//! find every point within a 3-D radius.
//!
//! `kappa` is the packing constant (dots per r² the sampling reaches, about 0.62 with the fill
//! pass); the caller calibrates it so that the count matches the integral of the target
//! density.

use nalgebra::Vector3;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::density::DensityField;
use crate::geometry::PatchGeometry;
use crate::hairline::Hairline;
use crate::mask::TreatmentMask;

/// Interleave radii are capped at this multiple of `min_spacing` (a lone follicle in a
/// sparse area must not clear a large hole around itself).
const FIXED_RADIUS_CAP: f64 = 2.5;

/// Packing constant of the interleave radius: the union of fixed points and this session's
/// dots is spaced like one maximal pattern at its combined density (not calibrated with the
/// session's own `kappa`, which only sets how far this session's dots keep from each other).
const INTERLEAVE_KAPPA: f64 = 0.62;

/// One accepted sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) x: f64,
    pub(crate) y: f64,
    /// Skin height in the patch frame.
    pub(crate) z: f64,
    /// Height-field gradient here.
    gx: f64,
    gy: f64,
    /// Poisson-disk radius at this sample, mm of skin.
    pub(crate) r: f64,
    pub(crate) p_head: [f64; 3],
    pub(crate) n_head: [f64; 3],
}

/// Uniform buckets over the parameter plane holding point indices.
#[derive(Debug, Clone)]
pub(crate) struct PlaneBuckets {
    origin: [f64; 2],
    cell: f64,
    nx: usize,
    ny: usize,
    cells: Vec<Vec<u32>>,
}

impl PlaneBuckets {
    pub(crate) fn new(origin: [f64; 2], size: [f64; 2], cell: f64) -> Self {
        let nx = (size[0] / cell).ceil().clamp(1.0, 4096.0) as usize + 1;
        let ny = (size[1] / cell).ceil().clamp(1.0, 4096.0) as usize + 1;
        let cell = cell.max(size[0] / (nx - 1) as f64).max(size[1] / (ny - 1) as f64);
        PlaneBuckets { origin, cell, nx, ny, cells: vec![Vec::new(); nx * ny] }
    }

    fn key(&self, x: f64, y: f64) -> (i64, i64) {
        (((x - self.origin[0]) / self.cell).floor() as i64, ((y - self.origin[1]) / self.cell).floor() as i64)
    }

    pub(crate) fn insert(&mut self, x: f64, y: f64, idx: u32) {
        let (i, j) = self.key(x, y);
        let i = i.clamp(0, self.nx as i64 - 1) as usize;
        let j = j.clamp(0, self.ny as i64 - 1) as usize;
        self.cells[j * self.nx + i].push(idx);
    }

    /// Calls `f(index)` for every point whose bucket may lie within `reach` of (x, y);
    /// stops early when `f` returns true, and returns whether it did.
    pub(crate) fn any_near(&self, x: f64, y: f64, reach: f64, mut f: impl FnMut(u32) -> bool) -> bool {
        let span = (reach / self.cell).ceil() as i64;
        let (ci, cj) = self.key(x, y);
        // Points off the bucket grid were clamped into its edge cells.
        let (ci, cj) = (ci.clamp(-span - 1, self.nx as i64 + span), cj.clamp(-span - 1, self.ny as i64 + span));
        for j in (cj - span).max(0)..=(cj + span).min(self.ny as i64 - 1) {
            for i in (ci - span).max(0)..=(ci + span).min(self.nx as i64 - 1) {
                for &s in &self.cells[j as usize * self.nx + i as usize] {
                    if f(s) {
                        return true;
                    }
                }
            }
        }
        false
    }
}

/// Points that stay where they are, in the patch frame.
#[derive(Debug, Clone)]
pub(crate) struct FixedPoints {
    points: Vec<[f64; 3]>,
    /// Interleave (true: map follicles) or hard spacing only (false: earlier entries).
    interleave: Vec<bool>,
    buckets: PlaneBuckets,
}

impl FixedPoints {
    /// `interleave`: map follicles, head frame; `hard_only`: earlier needle entries, head frame.
    pub(crate) fn new(
        geo: &PatchGeometry<'_>,
        mask: &TreatmentMask,
        interleave: &[[f64; 3]],
        hard_only: &[[f64; 3]],
    ) -> Self {
        let size = [mask.nx as f64 * mask.cell_mm, mask.ny as f64 * mask.cell_mm];
        let mut buckets = PlaneBuckets::new(mask.origin, size, 1.0);
        let mut points = Vec::with_capacity(interleave.len() + hard_only.len());
        let mut flags = Vec::with_capacity(points.capacity());
        for (list, flag) in [(interleave, true), (hard_only, false)] {
            for p in list {
                let q = geo.to_patch(*p);
                if !(q.x.is_finite() && q.y.is_finite() && q.z.is_finite()) {
                    continue;
                }
                buckets.insert(q.x, q.y, points.len() as u32);
                points.push([q.x, q.y, q.z]);
                flags.push(flag);
            }
        }
        FixedPoints { points, interleave: flags, buckets }
    }

    /// True when a fixed point lies closer than its radius to a patch-frame point:
    /// `interleave_mm` for follicles, `hard_mm` for earlier entries.
    fn conflicts(&self, p: [f64; 3], interleave_mm: f64, hard_mm: f64) -> bool {
        let reach = interleave_mm.max(hard_mm);
        self.buckets.any_near(p[0], p[1], reach, |i| {
            let q = self.points[i as usize];
            let lim = if self.interleave[i as usize] { interleave_mm } else { hard_mm };
            (q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2) + (q[2] - p[2]).powi(2) < lim * lim
        })
    }
}

/// What one sampling run needs.
pub(crate) struct SamplerInput<'a> {
    pub(crate) mask: &'a TreatmentMask,
    pub(crate) density: &'a DensityField,
    pub(crate) geo: &'a PatchGeometry<'a>,
    pub(crate) fixed: &'a FixedPoints,
    /// Dots in front of the designed hairline are refused, tested at their exact position.
    pub(crate) hairline: Option<&'a Hairline>,
    pub(crate) min_spacing_mm: f64,
    /// Densities (per parameter mm²) below this get no dots.
    pub(crate) min_density: f64,
    /// Bridson candidates per active point.
    pub(crate) candidates: usize,
    /// Interleave radius factor against map follicles.
    pub(crate) fixed_radius_factor: f64,
    /// Spacing of the final fill pass's candidate grid, mm (0: no fill pass).
    pub(crate) fill_spacing_mm: f64,
}

struct Sampler<'a> {
    inp: &'a SamplerInput<'a>,
    kappa: f64,
    samples: Vec<Sample>,
    buckets: PlaneBuckets,
    r_max: f64,
}

impl Sampler<'_> {
    /// Tries to place a sample at (x, y); returns its index when every constraint holds.
    fn try_place(&mut self, x: f64, y: f64) -> Option<u32> {
        let inp = self.inp;
        let k = inp.mask.cell_index(x, y)?;
        if !inp.mask.mask[k] {
            return None;
        }
        let s = inp.min_spacing_mm;
        // Cheap rejection first: with the height extrapolated from the cell centre's tangent
        // plane and the smallest radius a candidate can have, a clear conflict with a placed
        // sample is seen without evaluating the surface or the density. (A wrong rejection
        // only costs a candidate; acceptance below is always exact.)
        let [zc, gxc, gyc] = inp.mask.surface_at[k];
        let (cx, cy) = inp.mask.grid.cell_centre(k % inp.mask.nx, k / inp.mask.nx);
        let z_est = zc + gxc * (x - cx) + gyc * (y - cy);
        let samples = &self.samples;
        if self.buckets.any_near(x, y, s, |i| {
            let q = &samples[i as usize];
            let lim = 0.97 * 0.5 * (s + q.r);
            (q.x - x).powi(2) + (q.y - y).powi(2) + (q.z - z_est).powi(2) < lim * lim
        }) {
            return None;
        }
        let (z, gx, gy) = inp.geo.height_and_gradient(x, y);
        let area = (1.0 + gx * gx + gy * gy).sqrt();
        let (density, total_skin) = inp.density.param_density(inp.mask, x, y, area);
        if density.is_nan() || density < inp.min_density {
            return None;
        }
        let r = (self.kappa * area / density).sqrt().max(s);
        if !r.is_finite() || !z.is_finite() {
            return None;
        }
        // Samples up to 1.5 r wide are checked with the mean rule; wider ones (rare: the
        // sparse fringe of a feather or a hairline) only with this candidate's radius. The
        // reach never falls below r >= min_spacing, so the hard spacing is always checked.
        let reach = (0.5 * (r + self.r_max)).min(1.25 * r);
        let samples = &self.samples;
        if self.buckets.any_near(x, y, reach, |i| {
            let q = &samples[i as usize];
            let lim = 0.5 * (r + q.r);
            (q.x - x).powi(2) + (q.y - y).powi(2) + (q.z - z).powi(2) < lim * lim
        }) {
            return None;
        }
        if !inp.mask.allows_with_tilt(inp.geo, x, y, inp.geo.tilt_from_gradient_deg(gx, gy)) {
            return None;
        }
        let interleave = if total_skin > 0.0 {
            (inp.fixed_radius_factor * (INTERLEAVE_KAPPA / total_skin).sqrt()).clamp(s, FIXED_RADIUS_CAP * s)
        } else {
            s
        };
        if inp.fixed.conflicts([x, y, z], interleave, s) {
            return None;
        }
        let (p, n) = inp.geo.head_point_and_normal(x, y, z, gx, gy);
        let p_head = [p.x, p.y, p.z];
        if !(p_head.iter().all(|v| v.is_finite()) && n.iter().all(|v| v.is_finite())) {
            return None;
        }
        if inp.hairline.is_some_and(|h| h.in_front(p_head)) {
            return None;
        }
        let idx = self.samples.len() as u32;
        self.samples.push(Sample { x, y, z, gx, gy, r, p_head, n_head: [n.x, n.y, n.z] });
        self.buckets.insert(x, y, idx);
        self.r_max = self.r_max.max(r);
        Some(idx)
    }

    /// Bridson growth from the active list until it is empty.
    fn grow(&mut self, active: &mut Vec<u32>, rng: &mut ChaCha8Rng) {
        while !active.is_empty() {
            let slot = rng.random_range(0..active.len());
            let a = self.samples[active[slot] as usize];
            // Orthonormal tangent basis at the active sample.
            let n = Vector3::new(-a.gx, -a.gy, 1.0).normalize();
            let e1 = Vector3::new(1.0, 0.0, a.gx).normalize();
            let e2 = n.cross(&e1);
            let mut placed = false;
            for _ in 0..self.inp.candidates {
                let theta = rng.random::<f64>() * std::f64::consts::TAU;
                // Uniform by area over the annulus [r, 2r] of skin.
                let rho = a.r * (1.0 + 3.0 * rng.random::<f64>()).sqrt();
                let off = (e1 * theta.cos() + e2 * theta.sin()) * rho;
                if let Some(idx) = self.try_place(a.x + off.x, a.y + off.y) {
                    active.push(idx);
                    placed = true;
                    break;
                }
            }
            if !placed {
                active.swap_remove(slot);
            }
        }
    }
}

/// One sampling run with a given packing constant. Seeds come from the mask cells in a
/// random order, so separate pieces of the mask (split by hair or by a steep band) are all
/// filled, not just the piece the first seed landed in.
pub(crate) fn sample(inp: &SamplerInput<'_>, kappa: f64, rng: &mut ChaCha8Rng) -> Vec<Sample> {
    let m = inp.mask;
    let size = [m.nx as f64 * m.cell_mm, m.ny as f64 * m.cell_mm];
    let nominal_r = (kappa / inp.density.nominal_per_mm2.max(1e-9)).sqrt();
    let cell = inp.min_spacing_mm.max(0.7 * nominal_r);
    let mut s = Sampler {
        inp,
        kappa,
        samples: Vec::new(),
        buckets: PlaneBuckets::new(m.origin, size, cell),
        r_max: inp.min_spacing_mm,
    };
    let mut cells: Vec<usize> = (0..m.mask.len()).filter(|&k| m.mask[k]).collect();
    cells.shuffle(rng);
    let mut active = Vec::new();
    for k in cells {
        let (i, j) = (k % m.nx, k / m.nx);
        for _ in 0..2 {
            let x = m.origin[0] + (i as f64 + rng.random::<f64>()) * m.cell_mm;
            let y = m.origin[1] + (j as f64 + rng.random::<f64>()) * m.cell_mm;
            if let Some(idx) = s.try_place(x, y) {
                active.push(idx);
                s.grow(&mut active, rng);
                break;
            }
        }
    }
    // Fill: Bridson stops around each dot after a fixed number of failed candidates, which
    // leaves holes (most where fixed points fragment the free space, as between the healed
    // dots of earlier sessions). A jittered grid of candidates over the whole mask, in random
    // order, finds every hole a dot still fits in, so the pattern is maximal for its radii.
    if inp.fill_spacing_mm > 0.0 {
        let h = inp.fill_spacing_mm.max(0.05);
        let per = (m.cell_mm / h).ceil().max(1.0) as usize;
        let step = m.cell_mm / per as f64;
        let mut cands: Vec<(f64, f64)> = Vec::new();
        for k in (0..m.mask.len()).filter(|&k| m.mask[k]) {
            let (i, j) = (k % m.nx, k / m.nx);
            for a in 0..per {
                for b in 0..per {
                    let x = m.origin[0] + i as f64 * m.cell_mm + (a as f64 + rng.random::<f64>()) * step;
                    let y = m.origin[1] + j as f64 * m.cell_mm + (b as f64 + rng.random::<f64>()) * step;
                    cands.push((x, y));
                }
            }
        }
        cands.shuffle(rng);
        for (x, y) in cands {
            if let Some(idx) = s.try_place(x, y) {
                active.push(idx);
                s.grow(&mut active, rng);
            }
        }
    }
    s.samples
}

/// Integral of the session's density over the mask cells `keep` selects, by `sub`×`sub`
/// midpoint sampling per cell, counting only points a dot may occupy (dots per the parameter
/// area = dots on the skin).
pub(crate) fn expected_count_where(inp: &SamplerInput<'_>, sub: usize, mut keep: impl FnMut(usize) -> bool) -> f64 {
    let m = inp.mask;
    let step = m.cell_mm / sub as f64;
    let mut total = 0.0;
    for k in (0..m.mask.len()).filter(|&k| m.mask[k]) {
        if !keep(k) {
            continue;
        }
        let (i, j) = (k % m.nx, k / m.nx);
        for a in 0..sub {
            for b in 0..sub {
                let x = m.origin[0] + i as f64 * m.cell_mm + (a as f64 + 0.5) * step;
                let y = m.origin[1] + j as f64 * m.cell_mm + (b as f64 + 0.5) * step;
                let (_, gx, gy) = inp.geo.height_and_gradient(x, y);
                let area = (1.0 + gx * gx + gy * gy).sqrt();
                let (d, _) = inp.density.param_density(m, x, y, area);
                if d >= inp.min_density && m.allows_with_tilt(inp.geo, x, y, inp.geo.tilt_from_gradient_deg(gx, gy)) {
                    total += d * step * step;
                }
            }
        }
    }
    total
}

/// Expected number of dots over the whole mask.
pub(crate) fn expected_count(inp: &SamplerInput<'_>, sub: usize) -> f64 {
    expected_count_where(inp, sub, |_| true)
}

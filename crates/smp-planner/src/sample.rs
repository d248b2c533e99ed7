//! Variable-density Poisson-disk sampling (Bridson's algorithm) in the patch's (x, y) plane.
//!
//! Each point gets a radius `r = max(min_spacing, sqrt(kappa / density))`; two points
//! conflict when their parameter distance is below the mean of their radii, so spacing
//! follows the density smoothly while never dropping below `min_spacing`. Because the patch
//! is a height field over (x, y), the parameter distance never exceeds the 3-D distance on
//! the skin, so that bound already holds in 3-D; every candidate is nevertheless checked in
//! the head frame against the dots placed so far and the map's follicles (all kinds), which
//! are not on the fitted surface.
//!
//! `kappa` is the packing constant (dots per r² that Bridson sampling reaches, about 0.65);
//! [`crate::plan_session`] calibrates it so that the count matches the integral of the
//! target density.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use smp_core::spatial::PointGrid;

use crate::density::DensityField;
use crate::geometry::PatchGeometry;
use crate::mask::TreatmentMask;

/// One accepted sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) x: f64,
    pub(crate) y: f64,
    /// Poisson-disk radius at this sample, parameter mm.
    pub(crate) r: f64,
    pub(crate) p_head: [f64; 3],
    pub(crate) n_head: [f64; 3],
}

/// What one sampling run needs.
pub(crate) struct SamplerInput<'a> {
    pub(crate) mask: &'a TreatmentMask,
    pub(crate) density: &'a DensityField,
    pub(crate) geo: &'a PatchGeometry<'a>,
    /// Map follicles and earlier dots in the head frame: hard spacing obstacles.
    pub(crate) obstacles_head: &'a [[f64; 3]],
    pub(crate) min_spacing_mm: f64,
    /// Densities (per parameter mm²) below this get no dots.
    pub(crate) min_density: f64,
    /// Bridson candidates per active point.
    pub(crate) candidates: usize,
}

/// Uniform buckets over the parameter plane holding sample indices.
struct PlaneBuckets {
    origin: [f64; 2],
    cell: f64,
    nx: usize,
    ny: usize,
    cells: Vec<Vec<u32>>,
}

impl PlaneBuckets {
    fn new(origin: [f64; 2], size: [f64; 2], cell: f64) -> Self {
        let nx = (size[0] / cell).ceil().max(1.0) as usize + 1;
        let ny = (size[1] / cell).ceil().max(1.0) as usize + 1;
        PlaneBuckets { origin, cell, nx, ny, cells: vec![Vec::new(); nx * ny] }
    }

    fn key(&self, x: f64, y: f64) -> (i64, i64) {
        (((x - self.origin[0]) / self.cell).floor() as i64, ((y - self.origin[1]) / self.cell).floor() as i64)
    }

    fn insert(&mut self, x: f64, y: f64, idx: u32) {
        let (i, j) = self.key(x, y);
        let i = i.clamp(0, self.nx as i64 - 1) as usize;
        let j = j.clamp(0, self.ny as i64 - 1) as usize;
        self.cells[j * self.nx + i].push(idx);
    }

    /// True when some sample conflicts with a candidate at (x, y) of radius `r`.
    fn conflicts(&self, samples: &[Sample], x: f64, y: f64, r: f64, r_max: f64) -> bool {
        let reach = 0.5 * (r + r_max);
        let span = (reach / self.cell).ceil() as i64;
        let (ci, cj) = self.key(x, y);
        for j in (cj - span).max(0)..=(cj + span).min(self.ny as i64 - 1) {
            for i in (ci - span).max(0)..=(ci + span).min(self.nx as i64 - 1) {
                for &s in &self.cells[j as usize * self.nx + i as usize] {
                    let q = &samples[s as usize];
                    let d2 = (q.x - x).powi(2) + (q.y - y).powi(2);
                    let lim = 0.5 * (r + q.r);
                    if d2 < lim * lim {
                        return true;
                    }
                }
            }
        }
        false
    }
}

struct Sampler<'a> {
    inp: &'a SamplerInput<'a>,
    kappa: f64,
    samples: Vec<Sample>,
    buckets: PlaneBuckets,
    head: PointGrid,
    r_max: f64,
}

impl Sampler<'_> {
    fn radius(&self, density: f64) -> f64 {
        (self.kappa / density).sqrt().max(self.inp.min_spacing_mm)
    }

    /// Tries to place a sample at (x, y); returns its index when every constraint holds.
    fn try_place(&mut self, x: f64, y: f64) -> Option<u32> {
        let inp = self.inp;
        let k = inp.mask.cell_index(x, y)?;
        if !inp.mask.mask[k] {
            return None;
        }
        let density = inp.density.param_density(inp.mask, inp.geo, x, y);
        if density.is_nan() || density < inp.min_density {
            return None;
        }
        let r = self.radius(density);
        if self.buckets.conflicts(&self.samples, x, y, r, self.r_max) {
            return None;
        }
        if !inp.mask.allows(inp.geo, x, y) {
            return None;
        }
        let (p, n) = inp.geo.sample_head(x, y);
        let p_head = [p.x, p.y, p.z];
        if !(p_head.iter().all(|v| v.is_finite()) && n.iter().all(|v| v.is_finite())) {
            return None;
        }
        if self.head.any_within(p_head, inp.min_spacing_mm) {
            return None;
        }
        let idx = self.samples.len() as u32;
        self.samples.push(Sample { x, y, r, p_head, n_head: [n.x, n.y, n.z] });
        self.buckets.insert(x, y, idx);
        self.head.insert(p_head);
        self.r_max = self.r_max.max(r);
        Some(idx)
    }

    /// Bridson growth from the active list until it is empty.
    fn grow(&mut self, active: &mut Vec<u32>, rng: &mut ChaCha8Rng) {
        while !active.is_empty() {
            let slot = rng.random_range(0..active.len());
            let a = self.samples[active[slot] as usize];
            let mut placed = false;
            for _ in 0..self.inp.candidates {
                let theta = rng.random::<f64>() * std::f64::consts::TAU;
                // Uniform by area over the annulus [r, 2r].
                let rho = a.r * (1.0 + 3.0 * rng.random::<f64>()).sqrt();
                let (x, y) = (a.x + rho * theta.cos(), a.y + rho * theta.sin());
                if let Some(idx) = self.try_place(x, y) {
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
    let mut head = PointGrid::new(inp.min_spacing_mm);
    for p in inp.obstacles_head {
        head.insert(*p);
    }
    let mut s = Sampler {
        inp,
        kappa,
        samples: Vec::new(),
        buckets: PlaneBuckets::new(m.origin, size, cell),
        head,
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
    s.samples
}

/// Expected number of dots: the integral of the parameter density over the mask, by
/// `sub`×`sub` midpoint sampling per cell, counting only points a dot may occupy.
pub(crate) fn expected_count(inp: &SamplerInput<'_>, sub: usize) -> f64 {
    let m = inp.mask;
    let step = m.cell_mm / sub as f64;
    let mut total = 0.0;
    for k in (0..m.mask.len()).filter(|&k| m.mask[k]) {
        let (i, j) = (k % m.nx, k / m.nx);
        for a in 0..sub {
            for b in 0..sub {
                let x = m.origin[0] + i as f64 * m.cell_mm + (a as f64 + 0.5) * step;
                let y = m.origin[1] + j as f64 * m.cell_mm + (b as f64 + 0.5) * step;
                let d = inp.density.param_density(m, inp.geo, x, y);
                if d >= inp.min_density && m.allows(inp.geo, x, y) {
                    total += d * step * step;
                }
            }
        }
    }
    total
}

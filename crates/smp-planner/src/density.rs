//! The density this session aims for at every point of the treatment mask.
//!
//! Per unit of skin area:
//!
//! `session(x) = share × max(0, target − natural(x)) × feather(x)`
//!
//! * `natural(x)`: natural follicles already there, counted toward the final look. Estimated
//!   from the map's natural follicles with a Gaussian kernel (σ = `natural_sigma_mm`) and
//!   corrected at the edge of the scanned area (the kernel is normalised by the scanned part
//!   it covers), so that a thinning area with 30 follicles/cm² gets SMP dots for the missing
//!   50/cm², of which session 1 places its share. Dots of earlier SMP sessions are not
//!   subtracted here: they are earlier sessions' shares; they only constrain spacing.
//! * `feather(x)`: ramps from `feather_floor` at the mask border to 1 over
//!   `feather_mm` (modulated ±40 % by smooth seeded value noise so that the ramp width, and
//!   with it the visible edge, wanders), smoothstep-shaped: DOMAIN asks for soft irregular
//!   edges, never a ruler line.
//!
//! Dot sampling works in the patch's (x, y) parameter plane, so the field is converted to
//! dots per parameter area by the surface area factor `sqrt(1 + |∇h|²)`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use smp_core::map::{FollicleKind, RegionKind, ScalpMap};
use smp_core::plan::SessionSpec;

use crate::geometry::PatchGeometry;
use crate::mask::TreatmentMask;
use crate::PlannerConfig;

/// Smooth value noise in [0, 1] over the plane: random values on a square lattice,
/// interpolated with smoothstep weights. Seeded, so plans replay.
#[derive(Debug, Clone)]
pub(crate) struct ValueNoise {
    origin: [f64; 2],
    spacing_mm: f64,
    nx: usize,
    ny: usize,
    values: Vec<f64>,
}

impl ValueNoise {
    pub(crate) fn new(origin: [f64; 2], size_mm: [f64; 2], spacing_mm: f64, rng: &mut ChaCha8Rng) -> Self {
        let nx = (size_mm[0] / spacing_mm).ceil().max(0.0) as usize + 2;
        let ny = (size_mm[1] / spacing_mm).ceil().max(0.0) as usize + 2;
        let values = (0..nx * ny).map(|_| rng.random::<f64>()).collect();
        ValueNoise { origin, spacing_mm, nx, ny, values }
    }

    pub(crate) fn at(&self, x: f64, y: f64) -> f64 {
        let fx = ((x - self.origin[0]) / self.spacing_mm).clamp(0.0, (self.nx - 1) as f64);
        let fy = ((y - self.origin[1]) / self.spacing_mm).clamp(0.0, (self.ny - 1) as f64);
        let (i0, j0) = (fx.floor() as usize, fy.floor() as usize);
        let (i1, j1) = ((i0 + 1).min(self.nx - 1), (j0 + 1).min(self.ny - 1));
        let s = |t: f64| t * t * (3.0 - 2.0 * t);
        let (tx, ty) = (s(fx - i0 as f64), s(fy - j0 as f64));
        let at = |i: usize, j: usize| self.values[j * self.nx + i];
        let a = at(i0, j0) * (1.0 - tx) + at(i1, j0) * tx;
        let b = at(i0, j1) * (1.0 - tx) + at(i1, j1) * tx;
        a * (1.0 - ty) + b * ty
    }
}

/// Separable Gaussian blur of a row-major field (σ in cells), zero beyond the edges.
fn gaussian_blur(nx: usize, ny: usize, field: &[f64], sigma_cells: f64) -> Vec<f64> {
    let radius = (3.0 * sigma_cells).ceil().max(1.0) as i64;
    let kernel: Vec<f64> =
        (-radius..=radius).map(|d| (-(d as f64).powi(2) / (2.0 * sigma_cells * sigma_cells)).exp()).collect();
    let mut tmp = vec![0.0; nx * ny];
    for j in 0..ny {
        for i in 0..nx {
            let mut acc = 0.0;
            for (t, w) in kernel.iter().enumerate() {
                let ii = i as i64 + t as i64 - radius;
                if ii >= 0 && (ii as usize) < nx {
                    acc += w * field[j * nx + ii as usize];
                }
            }
            tmp[j * nx + i] = acc;
        }
    }
    let mut out = vec![0.0; nx * ny];
    for j in 0..ny {
        for i in 0..nx {
            let mut acc = 0.0;
            for (t, w) in kernel.iter().enumerate() {
                let jj = j as i64 + t as i64 - radius;
                if jj >= 0 && (jj as usize) < ny {
                    acc += w * tmp[jj as usize * nx + i];
                }
            }
            out[j * nx + i] = acc;
        }
    }
    out
}

/// Target density of this session, sampled at the mask's cell centres.
#[derive(Debug, Clone)]
pub(crate) struct DensityField {
    /// Dots per mm² of skin before feathering: `share × max(0, target − natural)`.
    session_per_mm2: Vec<f64>,
    /// Nominal session density without follicles or feathering, per mm² of skin.
    pub(crate) nominal_per_mm2: f64,
    noise: ValueNoise,
    feather_mm: f64,
    feather_floor: f64,
}

impl DensityField {
    pub(crate) fn build(
        map: &ScalpMap,
        spec: &SessionSpec,
        mask: &TreatmentMask,
        geo: &PatchGeometry<'_>,
        cfg: &PlannerConfig,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let (nx, ny, c) = (mask.nx, mask.ny, mask.cell_mm);
        let target_per_mm2 = spec.target_density_per_cm2 / 100.0;
        // Natural follicles per cell, and which cells were scanned at all.
        let mut counts = vec![0.0; nx * ny];
        for f in map.follicles.iter().filter(|f| f.kind == FollicleKind::Natural) {
            let p = geo.to_patch(f.position());
            if let Some(k) = mask.cell_index(p.x, p.y) {
                counts[k] += 1.0;
            }
        }
        let mut scanned = vec![0.0; nx * ny];
        for (j, row) in map.regions.rows.iter().enumerate() {
            for (i, code) in row.chars().enumerate() {
                let (x, y) = map.regions.cell_centre(i, j);
                if code != RegionKind::Outside.code() && geo.surface.contains_xy(x, y) {
                    scanned[j * nx + i] = 1.0;
                }
            }
        }
        let sigma_cells = cfg.natural_sigma_mm / c;
        let counts_b = gaussian_blur(nx, ny, &counts, sigma_cells);
        let scanned_b = gaussian_blur(nx, ny, &scanned, sigma_cells);
        let cell_mm2 = c * c;
        let natural_per_mm2: Vec<f64> =
            (0..nx * ny)
                .map(|k| {
                    if scanned_b[k] > 1e-6 {
                        counts_b[k] / (scanned_b[k] * cell_mm2) / mask.area_factor[k]
                    } else {
                        0.0
                    }
                })
                .collect();
        let session_per_mm2 =
            natural_per_mm2.into_iter().map(|nat| spec.session_share * (target_per_mm2 - nat).max(0.0)).collect();
        let size = [nx as f64 * c, ny as f64 * c];
        DensityField {
            session_per_mm2,
            nominal_per_mm2: spec.session_share * target_per_mm2,
            noise: ValueNoise::new(mask.origin, size, cfg.feather_noise_mm, rng),
            feather_mm: cfg.feather_mm,
            feather_floor: cfg.feather_floor,
        }
    }

    /// Feather factor in [floor, 1] at a point `border_mm` inside the mask.
    pub(crate) fn feather(&self, x: f64, y: f64, border_mm: f64) -> f64 {
        if self.feather_mm <= 0.0 {
            return 1.0;
        }
        let width = self.feather_mm * (0.6 + 0.8 * self.noise.at(x, y));
        let t = (border_mm / width).clamp(0.0, 1.0);
        let s = t * t * (3.0 - 2.0 * t);
        self.feather_floor + (1.0 - self.feather_floor) * s
    }

    /// Unfeathered session density at a point, per mm² of skin.
    pub(crate) fn session_per_mm2(&self, mask: &TreatmentMask, x: f64, y: f64) -> f64 {
        mask.interpolate(&self.session_per_mm2, x, y)
    }

    /// Dots per mm² of parameter plane at a point: what the sampler aims for.
    pub(crate) fn param_density(&self, mask: &TreatmentMask, geo: &PatchGeometry<'_>, x: f64, y: f64) -> f64 {
        let skin = self.session_per_mm2(mask, x, y);
        if skin <= 0.0 {
            return 0.0;
        }
        skin * self.feather(x, y, mask.border_distance_mm(x, y)) * geo.area_factor(x, y)
    }

    /// Mask area (cm² of skin) where natural follicles already meet the target.
    pub(crate) fn saturated_cm2(&self, mask: &TreatmentMask, min_per_mm2: f64) -> f64 {
        let cell_cm2 = mask.cell_mm * mask.cell_mm / 100.0;
        (0..mask.mask.len())
            .filter(|&k| mask.mask[k] && self.session_per_mm2[k] < min_per_mm2)
            .map(|k| cell_cm2 * mask.area_factor[k])
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn blur_preserves_mass_inside() {
        let (nx, ny) = (31, 31);
        let mut f = vec![0.0; nx * ny];
        f[15 * nx + 15] = 1.0;
        let b = gaussian_blur(nx, ny, &f, 2.0);
        let total: f64 = b.iter().sum();
        // Discrete Gaussian (not normalised): mass = (sum of the 1-D kernel)².
        let k: f64 = (-6i64..=6).map(|d| (-(d as f64).powi(2) / 8.0).exp()).sum();
        assert!((total - k * k).abs() < 1e-9);
    }

    #[test]
    fn noise_is_bounded_and_deterministic() {
        let mut a = ChaCha8Rng::seed_from_u64(3);
        let mut b = ChaCha8Rng::seed_from_u64(3);
        let na = ValueNoise::new([0.0, 0.0], [50.0, 50.0], 6.0, &mut a);
        let nb = ValueNoise::new([0.0, 0.0], [50.0, 50.0], 6.0, &mut b);
        for k in 0..200 {
            let (x, y) = (k as f64 * 0.37 % 60.0 - 5.0, k as f64 * 0.71 % 60.0 - 5.0);
            let v = na.at(x, y);
            assert!((0.0..=1.0).contains(&v));
            assert_eq!(v, nb.at(x, y));
        }
    }
}

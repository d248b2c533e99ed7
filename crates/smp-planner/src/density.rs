//! The density this session aims for at every point of the treatment mask.
//!
//! Per unit of skin area, with `T` the final density of the point's zone, `N` the natural
//! follicles and `S` the dots of earlier SMP sessions already there (both estimated from the
//! map), `ρ` the hairline ramp and `f` the feather at the mask border:
//!
//! `session(x) = f × max(0, min(share × (T ρ_s − N), T ρ_f − N − S))`
//!
//! * `share × (T ρ_s − N)`: this session's share of what natural follicles leave missing.
//!   Session 1 uses the widened band `ρ_s` (the softer foundation hairline).
//! * `T ρ_f − N − S` (the *full* density: every dot still missing from the final look):
//!   never more than that. Earlier dots count toward the target (DOMAIN: layers), so a
//!   completing session (`share = 1`) fills exactly what the healed scalp still lacks,
//!   including where dots of session 1 faded away, and never stacks dots where the target is
//!   already reached.
//!
//! * `N`, `S`: Gaussian kernel estimates (σ = `natural_sigma_mm` / `smp_sigma_mm`),
//!   normalised by the scanned part of the kernel so that the edge of the scan does not read
//!   as sparse.
//! * `ρ(d)`: [`crate::HairlineParams::ramp`] of the distance `d` behind the designed line,
//!   minus a per-point jitter (value noise of ~2.5 mm wavelength, up to `jitter_mm`): the
//!   start of the band wanders so the outermost dots never line up. In front of the line:
//!   nothing. Inside the band `T` blends from the hairline target to the zone behind it.
//! * `f`: ramps from `feather_floor` at the mask border to 1 over `feather_mm` (modulated
//!   ±40 % by smooth seeded value noise), smoothstep-shaped: DOMAIN asks for soft irregular
//!   edges where the treatment meets hair, never a ruler line.
//!
//! Dot sampling works in the patch's (x, y) parameter plane, so the field is converted to
//! dots per parameter area by the surface area factor `sqrt(1 + |∇h|²)`: densities are per
//! cm² of skin, not of the plane.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use smp_core::map::{FollicleKind, RegionKind, ScalpMap};
use smp_core::plan::{SessionSpec, Zone};

use crate::geometry::{smoothstep, PatchGeometry};
use crate::hairline::Hairline;
use crate::mask::TreatmentMask;
use crate::zones::ZoneRules;
use crate::PlannerConfig;

/// Wavelength of the per-dot hairline jitter noise, mm.
const JITTER_WAVELENGTH_MM: f64 = 2.5;

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
        let (tx, ty) = (smoothstep(fx - i0 as f64), smoothstep(fy - j0 as f64));
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

/// Per-cell density of a follicle kind, per mm² of skin, from a Gaussian kernel normalised
/// by the scanned part it covers.
fn kernel_density(
    map: &ScalpMap,
    kind: FollicleKind,
    mask: &TreatmentMask,
    geo: &PatchGeometry<'_>,
    scanned_b: &[f64],
    sigma_mm: f64,
) -> Vec<f64> {
    let (nx, ny, c) = (mask.nx, mask.ny, mask.cell_mm);
    let mut counts = vec![0.0; nx * ny];
    let mut any = false;
    for f in map.follicles.iter().filter(|f| f.kind == kind) {
        let p = geo.to_patch(f.position());
        if let Some(k) = mask.cell_index(p.x, p.y) {
            counts[k] += 1.0;
            any = true;
        }
    }
    if !any {
        return vec![0.0; nx * ny];
    }
    let counts_b = gaussian_blur(nx, ny, &counts, sigma_mm / c);
    let cell_mm2 = c * c;
    (0..nx * ny)
        .map(|k| if scanned_b[k] > 1e-6 { counts_b[k] / (scanned_b[k] * cell_mm2) / mask.area_factor[k] } else { 0.0 })
        .collect()
}

/// The designed hairline as the density field sees it.
#[derive(Debug, Clone)]
pub(crate) struct HairlineField {
    pub(crate) line: Hairline,
    /// Per cell: signed distance behind the line (mm, negative in front), clamped to
    /// ±`cutoff_mm`.
    signed_mm: Vec<f64>,
    /// Band of this session and of the final design, mm.
    pub(crate) band_session_mm: f64,
    pub(crate) band_final_mm: f64,
    jitter: ValueNoise,
    /// Target the band ramps up to, per mm² (blends into the zone behind the band).
    hairline_target_per_mm2: f64,
    /// The line on the skin, head frame.
    pub(crate) polyline: Vec<Vec<[f64; 3]>>,
}

impl HairlineField {
    pub(crate) fn build(
        line: Hairline,
        session: u32,
        mask: &TreatmentMask,
        geo: &PatchGeometry<'_>,
        hairline_target_per_cm2: f64,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let p = &line.params;
        let band_session_mm = p.band_mm(session);
        let band_final_mm = p.band_mm(2);
        let cutoff_mm = 2.0 * band_session_mm.max(band_final_mm) + p.jitter_mm + 5.0;
        let polyline = line.polyline(geo.surface);
        let segments: Vec<([f64; 3], [f64; 3])> =
            polyline.iter().flat_map(|piece| piece.windows(2).map(|w| (w[0], w[1]))).collect();
        let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
        for (a, b) in &segments {
            for k in 0..3 {
                lo[k] = lo[k].min(a[k]).min(b[k]);
                hi[k] = hi[k].max(a[k]).max(b[k]);
            }
        }
        let (nx, ny) = (mask.nx, mask.ny);
        let mut signed_mm = vec![cutoff_mm; nx * ny];
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = mask.grid.cell_centre(i, j);
                let (q, _) = geo.sample_head(x, y);
                let q = [q.x, q.y, q.z];
                let sign = if line.in_front(q) { -1.0 } else { 1.0 };
                let near = (0..3).all(|k| q[k] >= lo[k] - cutoff_mm && q[k] <= hi[k] + cutoff_mm);
                let mut best = cutoff_mm;
                if near {
                    for (a, b) in &segments {
                        best = best.min(point_segment_distance(q, *a, *b));
                    }
                }
                signed_mm[j * nx + i] = sign * best;
            }
        }
        let size = [nx as f64 * mask.cell_mm, ny as f64 * mask.cell_mm];
        let jitter = ValueNoise::new(mask.origin, size, JITTER_WAVELENGTH_MM, rng);
        HairlineField {
            line,
            signed_mm,
            band_session_mm,
            band_final_mm,
            jitter,
            hairline_target_per_mm2: hairline_target_per_cm2 / 100.0,
            polyline,
        }
    }

    /// Distance behind the line at a point without jitter, mm (zone labels).
    pub(crate) fn distance_mm(&self, mask: &TreatmentMask, x: f64, y: f64) -> f64 {
        mask.interpolate(&self.signed_mm, x, y)
    }
}

/// Distance from a point to a segment in 3-D.
fn point_segment_distance(p: [f64; 3], a: [f64; 3], b: [f64; 3]) -> f64 {
    let ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    let ap = [p[0] - a[0], p[1] - a[1], p[2] - a[2]];
    let len2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2];
    let t = if len2 > 0.0 { ((ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / len2).clamp(0.0, 1.0) } else { 0.0 };
    let d = [ap[0] - t * ab[0], ap[1] - t * ab[1], ap[2] - t * ab[2]];
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// Densities at a point, per mm² of skin, before feathering.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Densities {
    /// This session's dots.
    pub(crate) session: f64,
    /// All dots still missing from the final look (this and later sessions).
    pub(crate) full: f64,
    /// Natural follicles, earlier dots and `full`: the final density.
    pub(crate) total: f64,
}

/// Packed per-cell fields, interpolated together: target, natural, earlier dots, signed
/// hairline distance, distance from the mask border.
const TARGET: usize = 0;
const NATURAL: usize = 1;
const SMP: usize = 2;
const HAIR: usize = 3;
const BORDER: usize = 4;

/// Target density of this session over the mask.
#[derive(Debug, Clone)]
pub(crate) struct DensityField {
    packed: Vec<[f64; 5]>,
    /// Per cell: the cell's zone (ignoring the hairline band).
    pub(crate) body_zone: Vec<Zone>,
    pub(crate) hairline: Option<HairlineField>,
    share: f64,
    /// Nominal session density without follicles or feathering (the densest zone), per mm²
    /// of skin.
    pub(crate) nominal_per_mm2: f64,
    noise: ValueNoise,
    feather_mm: f64,
    feather_floor: f64,
}

/// What building the density field needs besides the map and the mask.
pub(crate) struct DensityContext<'a> {
    pub(crate) spec: &'a SessionSpec,
    pub(crate) zones: &'a ZoneRules,
    pub(crate) hairline: Option<Hairline>,
    pub(crate) cfg: &'a PlannerConfig,
}

impl DensityField {
    pub(crate) fn build(
        map: &ScalpMap,
        ctx: DensityContext<'_>,
        mask: &TreatmentMask,
        geo: &PatchGeometry<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let (nx, ny) = (mask.nx, mask.ny);
        let cfg = ctx.cfg;
        let mut scanned = vec![0.0; nx * ny];
        let mut body_zone = vec![Zone::Crown; nx * ny];
        let mut target_per_mm2 = vec![0.0; nx * ny];
        for (j, row) in map.regions.rows.iter().enumerate() {
            for (i, code) in row.chars().enumerate() {
                let k = j * nx + i;
                let (x, y) = map.regions.cell_centre(i, j);
                if code != RegionKind::Outside.code() && geo.surface.contains_xy(x, y) {
                    scanned[k] = 1.0;
                }
                let (p, _) = geo.sample_head(x, y);
                let z = ctx.zones.zone([p.x, p.y, p.z], mask.scar[k], false);
                body_zone[k] = z;
                target_per_mm2[k] = ctx.zones.target_per_cm2(z) / 100.0;
            }
        }
        let scanned_b = gaussian_blur(nx, ny, &scanned, cfg.natural_sigma_mm / mask.cell_mm);
        let natural_per_mm2 = kernel_density(map, FollicleKind::Natural, mask, geo, &scanned_b, cfg.natural_sigma_mm);
        let scanned_b = if (cfg.smp_sigma_mm - cfg.natural_sigma_mm).abs() > 1e-9 {
            gaussian_blur(nx, ny, &scanned, cfg.smp_sigma_mm / mask.cell_mm)
        } else {
            scanned_b
        };
        let smp_per_mm2 = kernel_density(map, FollicleKind::SmpDot, mask, geo, &scanned_b, cfg.smp_sigma_mm);
        let size = [nx as f64 * mask.cell_mm, ny as f64 * mask.cell_mm];
        let noise = ValueNoise::new(mask.origin, size, cfg.feather_noise_mm, rng);
        let hairline = ctx.hairline.map(|line| {
            HairlineField::build(line, ctx.spec.session, mask, geo, ctx.zones.target_per_cm2(Zone::Hairline), rng)
        });
        let max_target = ctx.zones.target_per_cm2.iter().copied().fold(0.0, f64::max) / 100.0;
        let packed = (0..nx * ny)
            .map(|k| {
                let hair = hairline.as_ref().map_or(f64::INFINITY, |h| h.signed_mm[k]);
                [target_per_mm2[k], natural_per_mm2[k], smp_per_mm2[k], hair, mask.border_mm[k]]
            })
            .collect();
        DensityField {
            packed,
            body_zone,
            hairline,
            share: ctx.spec.session_share,
            nominal_per_mm2: ctx.spec.session_share * max_target,
            noise,
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
        self.feather_floor + (1.0 - self.feather_floor) * smoothstep(border_mm / width)
    }

    /// Densities at a point before feathering, per mm² of skin.
    pub(crate) fn densities(&self, mask: &TreatmentMask, x: f64, y: f64) -> Densities {
        self.densities_at(&mask.bilinear(x, y).apply(&self.packed), x, y)
    }

    fn densities_at(&self, v: &[f64; 5], x: f64, y: f64) -> Densities {
        let (t_body, n, s) = (v[TARGET], v[NATURAL], v[SMP]);
        let (goal_session, goal_final) = match &self.hairline {
            None => (t_body, t_body),
            Some(h) => {
                let d = v[HAIR] - h.line.params.jitter_mm * h.jitter.at(x, y);
                if d < 0.0 {
                    return Densities { session: 0.0, full: 0.0, total: n + s };
                }
                let t = if d < h.band_final_mm {
                    let w = smoothstep(d / h.band_final_mm);
                    h.hairline_target_per_mm2 * (1.0 - w) + t_body * w
                } else {
                    t_body
                };
                let p = &h.line.params;
                (t * p.ramp(d, h.band_session_mm), t * p.ramp(d, h.band_final_mm))
            }
        };
        let full = (goal_final - n - s).max(0.0);
        let session = (self.share * (goal_session - n)).min(full).max(0.0);
        Densities { session, full, total: n + s + full }
    }

    /// Dots per mm² of parameter plane at a point (what the sampler aims for), given the
    /// area factor there, and the skin density the point carries once this session is done
    /// (natural follicles, earlier dots and this session's; the interleave radius follows it).
    pub(crate) fn param_density(&self, mask: &TreatmentMask, x: f64, y: f64, area_factor: f64) -> (f64, f64) {
        let packed = mask.bilinear(x, y).apply(&self.packed);
        let d = self.densities_at(&packed, x, y);
        let before = d.total - d.full;
        if d.session <= 0.0 {
            return (0.0, before);
        }
        let session = d.session * self.feather(x, y, packed[BORDER]);
        (session * area_factor, before + session)
    }

    /// Mask area (cm² of skin) where natural follicles and earlier dots already meet the target.
    pub(crate) fn saturated_cm2(&self, mask: &TreatmentMask, min_per_mm2: f64) -> f64 {
        let cell_cm2 = mask.cell_mm * mask.cell_mm / 100.0;
        (0..mask.mask.len())
            .filter(|&k| mask.mask[k])
            .filter(|&k| {
                let (x, y) = mask.grid.cell_centre(k % mask.nx, k / mask.nx);
                let in_front = self.hairline.as_ref().is_some_and(|h| h.distance_mm(mask, x, y) < 0.0);
                !in_front && self.densities(mask, x, y).session < min_per_mm2
            })
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

    #[test]
    fn segment_distance_is_exact() {
        let (a, b) = ([0.0, 0.0, 0.0], [10.0, 0.0, 0.0]);
        assert!((point_segment_distance([5.0, 3.0, 4.0], a, b) - 5.0).abs() < 1e-12);
        assert!((point_segment_distance([-3.0, 4.0, 0.0], a, b) - 5.0).abs() < 1e-12);
        assert!((point_segment_distance([13.0, 0.0, 4.0], a, b) - 5.0).abs() < 1e-12);
    }
}

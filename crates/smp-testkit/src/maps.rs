//! Synthetic scalp maps for the planner's tests and benches (and other crates' tests):
//!
//! * [`synthetic_map`]: a small crown: a paraboloid (or flat) degree-2 surface patch,
//!   concentric crown regions and uniformly random natural follicles;
//! * [`full_head_map`]: the top of a whole head as one height field about head +z (tilt up
//!   to ~70°), Norwood-like bald top with a hair fringe at the sides and back, sized so that
//!   a full-head session 1 plans about 12,000 dots.
//!
//! Deterministic from the seed; no vision or simulator involved. (The healing model that
//! turns a session's plan into the next session's scan is part of the simulated world:
//! `smp_sim::healed_map`.)

use nalgebra::{DMatrix, DVector, Isometry3, Translation3, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smp_core::geometry::{monomial_count, monomials, Ellipsoid, PoseSpec, SurfacePatch};
use smp_core::map::{CellGrid, Follicle, FollicleKind, RegionKind, ScalpMap};
use smp_core::JSON_FORMAT_VERSION;

/// Layout of a synthetic crown map, in the patch's (x, y) plane centred on the crown.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticMapSpec {
    /// The grid and the surface domain cover `[-half_extent, half_extent]²`; cells farther
    /// than `half_extent` from the centre are `Outside` (unscanned corners).
    pub half_extent_mm: f64,
    pub cell_mm: f64,
    /// Radius of curvature of the paraboloid `z = -(x² + y²) / 2R`; `None` = flat.
    pub curvature_radius_mm: Option<f64>,
    /// Where the patch sits in the head frame (default: 100 mm above the centre, level).
    pub head_from_patch: Isometry3<f64>,
    /// Thinning out to this radius, hair beyond.
    pub thinning_radius_mm: f64,
    /// Bald inside this radius.
    pub bald_radius_mm: f64,
    /// A 4 mm wide scar strip across the bald area.
    pub scar: bool,
    /// Natural follicles per cm² in thinning and in hair cells.
    pub thinning_per_cm2: f64,
    pub hair_per_cm2: f64,
    pub seed: u64,
}

impl Default for SyntheticMapSpec {
    /// A crown of about 110 cm² (thinning radius 60 mm) on a 150 mm paraboloid.
    fn default() -> Self {
        SyntheticMapSpec {
            half_extent_mm: 70.0,
            cell_mm: 2.0,
            curvature_radius_mm: Some(150.0),
            head_from_patch: Isometry3::from_parts(Translation3::new(0.0, 0.0, 100.0), Default::default()),
            thinning_radius_mm: 60.0,
            bald_radius_mm: 30.0,
            scar: true,
            thinning_per_cm2: 15.0,
            hair_per_cm2: 75.0,
            seed: 7,
        }
    }
}

/// Region label of a parameter point under a spec.
pub fn synthetic_region(spec: &SyntheticMapSpec, x: f64, y: f64) -> RegionKind {
    let r = x.hypot(y);
    if r > spec.half_extent_mm {
        RegionKind::Outside
    } else if spec.scar && (y - 0.3 * spec.bald_radius_mm).abs() < 2.0 && x.abs() < 0.7 * spec.bald_radius_mm {
        RegionKind::Scar
    } else if r < spec.bald_radius_mm {
        RegionKind::Bald
    } else if r < spec.thinning_radius_mm {
        RegionKind::Thinning
    } else {
        RegionKind::Hair
    }
}

/// Builds the map: surface, regions and follicles, in the head frame.
pub fn synthetic_map(spec: &SyntheticMapSpec) -> ScalpMap {
    let h = spec.half_extent_mm;
    let k = spec.curvature_radius_mm.map_or(0.0, |r| -h * h / (2.0 * r));
    let surface = SurfacePatch {
        head_from_patch: spec.head_from_patch,
        degree: 2,
        coefficients: vec![0.0, 0.0, 0.0, k, 0.0, k],
        scale_mm: h,
        x_range_mm: [-h, h],
        y_range_mm: [-h, h],
        fit_rms_mm: 0.0,
    };
    let n = (2.0 * h / spec.cell_mm).ceil() as usize;
    let mut regions = CellGrid::filled(-h, -h, spec.cell_mm, n, n, '.');
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut follicles = Vec::new();
    for j in 0..n {
        for i in 0..n {
            let (x, y) = regions.cell_centre(i, j);
            let kind = synthetic_region(spec, x, y);
            regions.set(i, j, kind.code());
            let per_cm2 = match kind {
                RegionKind::Thinning => spec.thinning_per_cm2,
                RegionKind::Hair => spec.hair_per_cm2,
                _ => 0.0,
            };
            let expected = per_cm2 * spec.cell_mm * spec.cell_mm / 100.0;
            scatter_follicles(&mut rng, &surface, x, y, spec.cell_mm, expected, &mut follicles);
        }
    }
    ScalpMap {
        version: JSON_FORMAT_VERSION,
        base_from_head: PoseSpec::identity(),
        surface,
        regions,
        follicles,
        skin: None,
        warnings: Vec::new(),
    }
}

/// Layout of a synthetic full head: the top of the head as one height-field patch about
/// head +z (patch frame = head frame), a Norwood-6-like pattern: bald top and front down to
/// the natural frontal edge, a horseshoe fringe of hair at the sides and back with a thinning
/// band above it, an optional linear scar (a transplant strip) on the mid-scalp.
///
/// Directions on the head are (polar from the vertex, azimuth from the nose toward the left
/// ear), as in the simulator's patient files.
#[derive(Debug, Clone, PartialEq)]
pub struct FullHeadMapSpec {
    /// Head ellipsoid (front-back, left-right, height), mm. The default is deliberately
    /// larger than a real head (×1.2 of the simulator's 100/80/88 mm): one top-down patch of a
    /// real head reaches ~370 cm² below 75° of tilt, while a clinic's full head also covers the
    /// sides and back. Enlarged, the patch holds a full head's worth of treatable skin
    /// (~500 cm²), so that session 1 plans about 12,000 dots and sessions 1-3 about 30,000 at
    /// the default zone densities, the figures the targets are stated for.
    pub semi_axes_mm: [f64; 3],
    /// Skin steeper than this from head +z is left out (outside): what one top-down patch
    /// covers.
    pub max_tilt_deg: f64,
    pub cell_mm: f64,
    /// Degree of the fitted height field.
    pub degree: usize,
    /// Natural lower edge of the scalp at the front (polar angle, degrees): the forehead below
    /// it is outside. It falls toward the temples (`+4°` at 35° azimuth, `+18°` at 60°). The
    /// default puts it about 55 mm above the glabella, so the adult and older hairline presets
    /// lie on the bald scalp behind it.
    pub frontal_edge_polar_deg: f64,
    /// Upper edge of the hair fringe (polar angle) above the ears (azimuth 90°) and at the
    /// back (180°); the fringe fades out toward the temples (azimuth 50°).
    pub fringe_side_polar_deg: f64,
    pub fringe_back_polar_deg: f64,
    /// Width of the thinning band above the fringe, degrees of polar angle.
    pub thinning_band_deg: f64,
    /// The region edges wobble by up to this much, degrees.
    pub edge_irregularity_deg: f64,
    pub hair_per_cm2: f64,
    pub thinning_per_cm2: f64,
    /// A 5 mm wide, 50 mm long scar on the mid-scalp.
    pub scar: bool,
    pub seed: u64,
}

impl Default for FullHeadMapSpec {
    fn default() -> Self {
        FullHeadMapSpec {
            semi_axes_mm: [120.0, 100.0, 106.0],
            max_tilt_deg: 75.0,
            cell_mm: 2.0,
            degree: 10,
            frontal_edge_polar_deg: 68.0,
            fringe_side_polar_deg: 70.0,
            fringe_back_polar_deg: 78.0,
            thinning_band_deg: 7.0,
            edge_irregularity_deg: 1.5,
            hair_per_cm2: 70.0,
            thinning_per_cm2: 18.0,
            scar: true,
            seed: 11,
        }
    }
}

impl FullHeadMapSpec {
    /// The glabella of this head: 95° from the vertex toward the nose, on the ellipsoid (the
    /// same rule as the default `[hairline] glabella_head_mm` on the simulator's head).
    pub fn glabella_head_mm(&self) -> [f64; 3] {
        let e = Ellipsoid { semi_axes_mm: self.semi_axes_mm };
        let p = e.point_in_direction(&direction_deg(95.0, 0.0));
        [p.x, p.y, p.z]
    }

    /// Region of a head point (by its direction from the head centre), before the tilt cut.
    fn region_at(&self, p_head: [f64; 3], noise: &dyn Fn(f64, f64) -> f64) -> RegionKind {
        let [x, y, z] = p_head;
        let polar = x.hypot(y).atan2(z).to_degrees();
        let az = y.atan2(x).to_degrees();
        let a = az.abs();
        let wob = self.edge_irregularity_deg * (2.0 * noise(polar, az) - 1.0);
        let lower = self.frontal_edge_polar_deg + interp(&[(0.0, 0.0), (35.0, 4.0), (60.0, 18.0), (90.0, 40.0)], a);
        if a < 90.0 && polar > lower + wob {
            return RegionKind::Outside;
        }
        if self.scar {
            // Along the line through (-30, -15) at 30° in the (x, y) plane.
            let (dx, dy) = (x + 30.0, y + 15.0);
            let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
            let along = dx * c + dy * s;
            let across = -dx * s + dy * c;
            if along.abs() < 25.0 && across.abs() < 2.5 {
                return RegionKind::Scar;
            }
        }
        let fringe = if a <= 50.0 {
            f64::INFINITY
        } else if a <= 90.0 {
            let t = (a - 50.0) / 40.0;
            // From far below the patch at the temples up to the side value.
            self.fringe_side_polar_deg + (1.0 - t) * (1.0 - t) * 40.0
        } else {
            let t = (a - 90.0) / 90.0;
            self.fringe_side_polar_deg + (self.fringe_back_polar_deg - self.fringe_side_polar_deg) * t
        };
        if polar > fringe + wob {
            RegionKind::Hair
        } else if polar > fringe - self.thinning_band_deg + wob {
            RegionKind::Thinning
        } else {
            RegionKind::Bald
        }
    }
}

fn direction_deg(polar_deg: f64, azimuth_deg: f64) -> Vector3<f64> {
    let (t, p) = (polar_deg.to_radians(), azimuth_deg.to_radians());
    Vector3::new(t.sin() * p.cos(), t.sin() * p.sin(), t.cos())
}

/// Piecewise-linear interpolation in a table of increasing `x`, clamped at the ends.
fn interp(table: &[(f64, f64)], x: f64) -> f64 {
    match table.iter().position(|(tx, _)| *tx >= x) {
        Some(0) => table[0].1,
        Some(i) => {
            let ((x0, y0), (x1, y1)) = (table[i - 1], table[i]);
            y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        }
        None => table.last().map_or(0.0, |t| t.1),
    }
}

/// `expected` natural follicles (stochastically rounded) uniformly in the cell of side
/// `cell_mm` centred at (x, y), on the surface; points off the patch are dropped.
fn scatter_follicles(
    rng: &mut ChaCha8Rng,
    surface: &SurfacePatch,
    x: f64,
    y: f64,
    cell_mm: f64,
    expected: f64,
    out: &mut Vec<Follicle>,
) {
    let count = (expected + rng.random::<f64>()).floor() as usize;
    for _ in 0..count {
        let fx = x + (rng.random::<f64>() - 0.5) * cell_mm;
        let fy = y + (rng.random::<f64>() - 0.5) * cell_mm;
        if !surface.contains_xy(fx, fy) {
            continue;
        }
        let (p, nrm) = surface.sample_head(fx, fy);
        out.push(Follicle {
            x_mm: p.x,
            y_mm: p.y,
            z_mm: p.z,
            normal: [nrm.x, nrm.y, nrm.z],
            diameter_mm: 0.3,
            darkness: 0.8,
            kind: FollicleKind::Natural,
        });
    }
}

/// Height of the ellipsoid's upper half above (x, y), and the z component of its unit
/// outward normal.
fn ellipsoid_top(semi: [f64; 3], x: f64, y: f64) -> Option<(f64, f64)> {
    Ellipsoid { semi_axes_mm: semi }.upper_surface(x, y).map(|(z, n)| (z, n.z))
}

/// Builds the full-head map: a least-squares polynomial height field fitted to the
/// ellipsoid's top, regions, and natural follicles at their density per cm² of skin.
/// Deterministic from the seed.
pub fn full_head_map(spec: &FullHeadMapSpec) -> ScalpMap {
    let semi = spec.semi_axes_mm;
    let cos_max = spec.max_tilt_deg.to_radians().cos();
    let cos_fit = (spec.max_tilt_deg + 5.0).min(85.0).to_radians().cos();
    let step = 2.0;
    let (mut pts, mut lo, mut hi) = (Vec::new(), [f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    let (nx, ny) = ((semi[0] / step).ceil() as i64, (semi[1] / step).ceil() as i64);
    for j in -ny..=ny {
        for i in -nx..=nx {
            let (x, y) = (i as f64 * step, j as f64 * step);
            if let Some((z, nz)) = ellipsoid_top(semi, x, y) {
                if nz >= cos_fit {
                    pts.push([x, y, z]);
                }
                if nz >= cos_max {
                    lo = [lo[0].min(x), lo[1].min(y)];
                    hi = [hi[0].max(x), hi[1].max(y)];
                }
            }
        }
    }
    let degree = spec.degree.clamp(2, 12);
    let n_coef = monomial_count(degree);
    let scale_mm = semi[0].max(semi[1]);
    let mut a = DMatrix::zeros(pts.len(), n_coef);
    let mut rhs = DVector::zeros(pts.len());
    let mut row = Vec::with_capacity(n_coef);
    for (k, p) in pts.iter().enumerate() {
        monomials(degree, p[0] / scale_mm, p[1] / scale_mm, &mut row);
        for (c, v) in row.iter().enumerate() {
            a[(k, c)] = *v;
        }
        rhs[k] = p[2];
    }
    let coef = a.clone().svd(true, true).solve(&rhs, 1e-12).unwrap_or_else(|_| DVector::zeros(n_coef));
    let residual = &a * &coef - &rhs;
    let fit_rms_mm = (residual.norm_squared() / pts.len().max(1) as f64).sqrt();
    let margin = 2.0 * spec.cell_mm;
    let surface = SurfacePatch {
        head_from_patch: Isometry3::identity(),
        degree,
        coefficients: coef.iter().copied().collect(),
        scale_mm,
        x_range_mm: [lo[0] - margin, hi[0] + margin],
        y_range_mm: [lo[1] - margin, hi[1] + margin],
        fit_rms_mm,
    };

    let c = spec.cell_mm;
    let (gx0, gy0) = (surface.x_range_mm[0], surface.y_range_mm[0]);
    let nx = ((surface.x_range_mm[1] - gx0) / c).ceil() as usize;
    let ny = ((surface.y_range_mm[1] - gy0) / c).ceil() as usize;
    let mut regions = CellGrid::filled(gx0, gy0, c, nx, ny, '.');
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    // Edge wobble: smooth noise over (polar, azimuth) on a 6° lattice.
    let lattice: Vec<f64> = (0..(31 * 61)).map(|_| rng.random::<f64>()).collect();
    let noise = |polar: f64, az: f64| {
        let fx = (polar / 6.0).clamp(0.0, 29.999);
        let fy = ((az + 180.0) / 6.0).clamp(0.0, 59.999);
        let (i, j) = (fx.floor() as usize, fy.floor() as usize);
        let (tx, ty) = (fx - i as f64, fy - j as f64);
        let (tx, ty) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
        let at = |i: usize, j: usize| lattice[j * 31 + i];
        let top = at(i, j) * (1.0 - tx) + at(i + 1, j) * tx;
        let bottom = at(i, j + 1) * (1.0 - tx) + at(i + 1, j + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    };
    let mut follicles = Vec::new();
    for j in 0..ny {
        for i in 0..nx {
            let (x, y) = regions.cell_centre(i, j);
            let (z, gx, gy) = surface.height_and_gradient(x, y);
            let tilt_cos = 1.0 / (1.0 + gx * gx + gy * gy).sqrt();
            let on_head = ellipsoid_top(semi, x, y).is_some_and(|(_, nz)| nz >= cos_max);
            if !on_head || tilt_cos < cos_max || !surface.contains_xy(x, y) {
                continue;
            }
            let kind = spec.region_at([x, y, z], &noise);
            regions.set(i, j, kind.code());
            let per_cm2 = match kind {
                RegionKind::Thinning => spec.thinning_per_cm2,
                RegionKind::Hair => spec.hair_per_cm2,
                _ => 0.0,
            };
            let expected = per_cm2 * c * c / 100.0 / tilt_cos;
            scatter_follicles(&mut rng, &surface, x, y, c, expected, &mut follicles);
        }
    }
    ScalpMap {
        version: JSON_FORMAT_VERSION,
        base_from_head: PoseSpec::identity(),
        surface,
        regions,
        follicles,
        skin: Some(smp_core::color::skin_tone(smp_core::color::srgb_to_lab([222, 178, 152]))),
        warnings: Vec::new(),
    }
}

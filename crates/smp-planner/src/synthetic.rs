//! Small synthetic scalp maps for tests and benchmarks (here and in other crates' tests):
//! a paraboloid (or flat) degree-2 surface patch, concentric crown regions and uniformly
//! random natural follicles. Deterministic from the seed; no vision or simulator involved.

use nalgebra::{Isometry3, Translation3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smp_core::geometry::{PoseSpec, SurfacePatch};
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
            let count = (expected + rng.random::<f64>()).floor() as usize;
            for _ in 0..count {
                let fx = x + (rng.random::<f64>() - 0.5) * spec.cell_mm;
                let fy = y + (rng.random::<f64>() - 0.5) * spec.cell_mm;
                if !surface.contains_xy(fx, fy) {
                    continue;
                }
                let (p, nrm) = surface.sample_head(fx, fy);
                follicles.push(Follicle {
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

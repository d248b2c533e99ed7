//! A small synthetic scalp map and session plan, for tests and benches of smp-gcode and of
//! the crates downstream of it (the only way to get an `smp_gcode::VerifiedProgram` is to
//! verify one, so they compile and verify this case).
//!
//! The scalp is a degree-2 dome (radius of curvature 90 mm) in a patch frame slightly tilted
//! in the head frame; the treatment mask is a disc of radius 35 mm; dots sit on a hexagonal
//! lattice of 1 mm pitch inside radius 33 mm (up to about 3,900 dots), in serpentine order,
//! on the surface (steepest about 42 degrees from base vertical on the default rig, under the
//! plan's 45-degree tilt limit). Deterministic: no randomness at all.

use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion};
use smp_core::geometry::{PoseSpec, SurfacePatch};
use smp_core::map::{CellGrid, RegionKind, ScalpMap};
use smp_core::plan::{PlanEstimates, PlannedDot, SessionLimits, SessionPlan, SessionSpec, Zone};
use smp_core::rig::Rig;

/// Radius of the treatment disc, patch x/y, mm.
pub const MASK_RADIUS_MM: f64 = 35.0;
/// Dots are placed inside this radius, patch x/y, mm.
pub const DOT_RADIUS_MM: f64 = 33.0;
/// Half width of the square patch domain, mm.
pub const PATCH_HALF_MM: f64 = 50.0;
/// Radius of curvature of the dome, mm.
pub const DOME_RADIUS_MM: f64 = 90.0;

/// Everything `compile` and `verify` need.
#[derive(Debug, Clone)]
pub struct SyntheticCase {
    pub plan: SessionPlan,
    pub map: ScalpMap,
    pub rig: Rig,
    pub base_from_head: Isometry3<f64>,
}

/// The dome patch used by [`synthetic_case`].
pub fn dome_patch() -> SurfacePatch {
    let scale_mm = PATCH_HALF_MM;
    let k = -scale_mm * scale_mm / (2.0 * DOME_RADIUS_MM);
    SurfacePatch {
        // Slightly tilted and offset, so that frame mistakes show up as position errors.
        head_from_patch: Isometry3::from_parts(
            Translation3::new(4.0, -3.0, 98.0),
            UnitQuaternion::from_euler_angles(0.05, -0.08, 0.3),
        ),
        degree: 2,
        // 1, x, y, x², xy, y²
        coefficients: vec![0.0, 0.0, 0.0, k, 0.0, k],
        scale_mm,
        x_range_mm: [-PATCH_HALF_MM, PATCH_HALF_MM],
        y_range_mm: [-PATCH_HALF_MM, PATCH_HALF_MM],
        fit_rms_mm: 0.02,
    }
}

/// The session spec of the synthetic plan (DOMAIN.md defaults).
pub fn session_spec() -> SessionSpec {
    SessionSpec {
        version: 1,
        session: 1,
        zone: Zone::Crown,
        treat: vec![RegionKind::Bald, RegionKind::Thinning],
        target_density_per_cm2: 75.0,
        session_share: 0.4,
        min_spacing_mm: 0.9,
        depth_mm: 1.0,
        depth_limit_mm: 1.2,
        dwell_s: 0.05,
        hover_mm: 2.0,
        plunge_feed_mm_per_min: 600.0,
        retract_feed_mm_per_min: 1200.0,
        travel_feed_mm_per_min: 3000.0,
        max_feed_mm_per_min: 3000.0,
        cartridge_rpm: 9000.0,
        dilution_pct: 40.0,
        region_margin_mm: 1.0,
        max_tilt_deg: 45.0,
        max_dots: None,
        seed: 7,
        hairline: None,
        zones: None,
        recovery: None,
    }
}

/// A plan of `n_dots` dots (capped at what fits in the disc) on the default simulated rig.
pub fn synthetic_case(n_dots: usize) -> SyntheticCase {
    synthetic_case_for(n_dots, Rig::default_sim())
}

/// The same plan and map on another rig (its head rest places the head).
pub fn synthetic_case_for(n_dots: usize, rig: Rig) -> SyntheticCase {
    let base_from_head = rig.base_from_head_nominal();
    let surface = dome_patch();
    let cell_mm = 1.0;
    let n_cells = (2.0 * PATCH_HALF_MM / cell_mm) as usize;
    let mut treatment = CellGrid::filled(-PATCH_HALF_MM, -PATCH_HALF_MM, cell_mm, n_cells, n_cells, '.');
    for j in 0..n_cells {
        for i in 0..n_cells {
            let (x, y) = treatment.cell_centre(i, j);
            if x.hypot(y) <= MASK_RADIUS_MM {
                treatment.set(i, j, '#');
            }
        }
    }
    let regions = CellGrid::filled(-PATCH_HALF_MM, -PATCH_HALF_MM, cell_mm, n_cells, n_cells, 'B');
    let spec = session_spec();

    let pitch = 1.0;
    let row_step = pitch * 3f64.sqrt() / 2.0;
    let rows = (2.0 * DOT_RADIUS_MM / row_step) as i64;
    let mut dots = Vec::new();
    'rows: for r in 0..=rows {
        let y = -DOT_RADIUS_MM + r as f64 * row_step;
        let half = (DOT_RADIUS_MM * DOT_RADIUS_MM - y * y).max(0.0).sqrt();
        let offset = if r % 2 == 0 { 0.0 } else { pitch / 2.0 };
        let mut xs: Vec<f64> = Vec::new();
        let mut x = -half.floor() - offset;
        while x <= half {
            if x >= -half {
                xs.push(x);
            }
            x += pitch;
        }
        if r % 2 == 1 {
            xs.reverse();
        }
        for x in xs {
            if dots.len() >= n_dots {
                break 'rows;
            }
            let (p, n) = surface.sample_head(x, y);
            dots.push(PlannedDot {
                id: 1000 + dots.len() as u32,
                x_mm: p.x,
                y_mm: p.y,
                z_mm: p.z,
                normal: [n.x, n.y, n.z],
                layer: 1,
                zone: Zone::Crown,
                depth_mm: spec.depth_mm,
                dilution_pct: spec.dilution_pct,
                tone: None,
            });
        }
    }

    let plan = SessionPlan {
        session: spec.session,
        limits: SessionLimits::of(&spec),
        spec,
        treatment,
        dots,
        estimates: PlanEstimates { tour_mm: 0.0, arm_time_s: 0.0, treated_area_cm2: 0.0, tour_lower_bound_mm: None },
        warnings: Vec::new(),
    };
    let map = ScalpMap {
        version: smp_core::JSON_FORMAT_VERSION,
        base_from_head: PoseSpec::from_isometry(&base_from_head),
        surface,
        regions,
        follicles: Vec::new(),
        skin: None,
        warnings: Vec::new(),
    };
    SyntheticCase { plan, map, rig, base_from_head }
}

/// Head-frame point of the dome at patch (x, y): handy for tampering tests.
pub fn dome_point_head(x_mm: f64, y_mm: f64) -> Point3<f64> {
    dome_patch().sample_head(x_mm, y_mm).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_is_valid_and_sized() {
        let c = synthetic_case(3000);
        assert_eq!(c.plan.dots.len(), 3000);
        c.map.validate().expect("valid map");
        let file = smp_core::plan::PlanFile { version: 1, patient: "synthetic".into(), sessions: vec![c.plan.clone()] };
        file.validate().expect("valid plan");
        assert!(synthetic_case(100_000).plan.dots.len() > 3500);
    }
}

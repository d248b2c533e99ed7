//! Arm time and path estimates for the motion the G-code compiler emits per dot, in order:
//!
//! 1. travel from the previous dot's hover point to this dot's hover point (`hover_mm`
//!    straight above the skin point in the base frame) with `G1` at `travel_feed`;
//! 2. plunge straight down (the `xyz` needle is vertical) to `depth_mm` below the skin
//!    point at `plunge_feed`;
//! 3. dwell `dwell_s`;
//! 4. retract to the hover point at `retract_feed`.
//!
//! Each move is timed with [`smp_core::kinematics::MachineDynamics::move_time_s`] (rest to
//! rest, per-axis rate and acceleration limits), the model the simulated controller paces
//! itself with. Moving to the first hover point and away from the last one depend on where
//! the arm parks and are not included.

use nalgebra::{Isometry3, Point3};
use smp_core::geometry::SurfacePatch;
use smp_core::kinematics::MachineDynamics;
use smp_core::plan::{PlanEstimates, SessionSpec};

/// Tip positions (base frame) of one dot's motion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DotMotion {
    pub(crate) hover: [f64; 3],
    pub(crate) bottom: [f64; 3],
}

/// Hover and bottom tip positions of a dot at `p_head` in machine (= base) coordinates.
pub(crate) fn dot_motion(base_from_head: &Isometry3<f64>, p_head: [f64; 3], spec: &SessionSpec) -> DotMotion {
    let s = base_from_head * Point3::from(p_head);
    DotMotion { hover: [s.x, s.y, s.z + spec.hover_mm], bottom: [s.x, s.y, s.z - spec.depth_mm] }
}

fn delta(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [b[0] - a[0], b[1] - a[1], b[2] - a[2]]
}

fn norm(d: [f64; 3]) -> f64 {
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// Travel length (hover point to hover point, mm) and arm time (s) of an ordered dot list.
pub(crate) fn estimate(motions: &[DotMotion], spec: &SessionSpec, dynamics: &MachineDynamics) -> (f64, f64) {
    let mut tour_mm = 0.0;
    let mut time_s = 0.0;
    for (k, m) in motions.iter().enumerate() {
        if k > 0 {
            let d = delta(motions[k - 1].hover, m.hover);
            tour_mm += norm(d);
            time_s += dynamics.move_time_s(d, Some(spec.travel_feed_mm_per_min));
        }
        time_s += dynamics.move_time_s(delta(m.hover, m.bottom), Some(spec.plunge_feed_mm_per_min));
        time_s += spec.dwell_s;
        time_s += dynamics.move_time_s(delta(m.bottom, m.hover), Some(spec.retract_feed_mm_per_min));
    }
    (tour_mm, time_s)
}

/// Lowest clearance (mm) above the skin of the straight travel moves between consecutive
/// hover points, measured along the patch's z axis every 0.5 mm, with the index of the dot
/// the worst move arrives at, and the longest travel step (mm). On a curved head a long
/// straight move at hover height sags toward the skin (chord sag L²/8R): the G-code compiler
/// must lift for such moves; this figure tells it whether it has to.
pub(crate) fn travel_clearance(
    motions: &[DotMotion],
    patch_from_base: &Isometry3<f64>,
    surface: &SurfacePatch,
) -> (f64, usize, f64) {
    let mut worst = (f64::INFINITY, 0usize);
    let mut max_step = 0.0f64;
    for k in 1..motions.len() {
        let (a, b) = (Point3::from(motions[k - 1].hover), Point3::from(motions[k].hover));
        let len = (b - a).norm();
        max_step = max_step.max(len);
        let steps = (len / 0.5).ceil().max(1.0) as usize;
        for t in 0..=steps {
            let p = a + (b - a) * (t as f64 / steps as f64);
            let q = patch_from_base * p;
            if surface.contains_xy(q.x, q.y) {
                let c = q.z - surface.height(q.x, q.y);
                if c < worst.0 {
                    worst = (c, k);
                }
            }
        }
    }
    (worst.0, worst.1, max_step)
}

/// Assembles the plan's estimates.
pub(crate) fn plan_estimates(tour_mm: f64, arm_time_s: f64, treated_area_cm2: f64) -> PlanEstimates {
    PlanEstimates { tour_mm, arm_time_s, treated_area_cm2 }
}

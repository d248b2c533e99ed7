//! Arm time and path estimates for the motion the G-code compiler emits per dot, in order:
//!
//! 1. travel from the previous dot's hover point at [`travel_z_mm`] (`hover_mm` above the
//!    higher of the two skin points plus the skin's bulge between them) with `G1` at
//!    `travel_feed`, then approach straight down to this dot's hover point;
//! 2. plunge straight down (the `xyz` needle is vertical) to `depth_mm` below the skin
//!    point at `plunge_feed`;
//! 3. dwell `dwell_s`;
//! 4. retract to the hover point at `retract_feed`;
//!
//! framed by the lift to and from the session's safe height ([`safe_z_mm`]), as the program
//! is. Each move is timed with [`smp_core::kinematics::MachineDynamics::move_time_s`] (rest
//! to rest, per-axis rate and acceleration limits), the model the simulated controller paces
//! itself with, and the travel height comes from the same function the compiler calls.

use nalgebra::{Isometry3, Point3};
use smp_core::geometry::SurfacePatch;
use smp_core::kinematics::{safe_z_mm, travel_z_mm, MachineDynamics};
use smp_core::plan::{PlanEstimates, SessionSpec};

use crate::order::DotTiming;

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

/// Travel length (hover point to hover point, mm) and arm time (s) of an ordered dot list,
/// the arm starting at the safe height above the first dot.
#[cfg(test)]
pub(crate) fn estimate(motions: &[DotMotion], spec: &SessionSpec, dynamics: &MachineDynamics) -> (f64, f64) {
    estimate_from(motions, spec, dynamics, None)
}

/// Travel length (hover point to hover point, mm) and arm time (s) of the program the G-code
/// compiler emits for the ordered dots, move by move: lift to the session's safe height,
/// travel at [`travel_z_mm`] (raised over the skin's bulge), approach to hover, plunge, dwell,
/// retract, and the final lift to the safe height. `start_machine_mm` is where the arm is
/// when the program starts (the controller reports it); `None` starts at the safe height
/// above the first dot.
pub(crate) fn estimate_from(
    motions: &[DotMotion],
    spec: &SessionSpec,
    dynamics: &MachineDynamics,
    start_machine_mm: Option<[f64; 3]>,
) -> (f64, f64) {
    let Some(first) = motions.first() else { return (0.0, 0.0) };
    let entry = |m: &DotMotion| [m.hover[0], m.hover[1], m.hover[2] - spec.hover_mm];
    let top = motions.iter().map(|m| entry(m)[2]).fold(f64::NEG_INFINITY, f64::max);
    let safe = safe_z_mm(top, dynamics.z.max_mm);
    let travel = Some(spec.travel_feed_mm_per_min);
    let mut time_s = 0.0;
    let mut tour_mm = 0.0;
    let mut at = [first.hover[0], first.hover[1], safe];
    if let Some(s) = start_machine_mm {
        let up = [s[0], s[1], safe];
        time_s += dynamics.move_time_s(delta(s, up), travel) + dynamics.move_time_s(delta(up, at), travel);
    }
    for (k, m) in motions.iter().enumerate() {
        let travel_z = match k.checked_sub(1).map(|j| &motions[j]) {
            None => safe,
            Some(prev) => {
                tour_mm += norm(delta(prev.hover, m.hover));
                travel_z_mm(entry(prev), entry(m), spec.hover_mm, safe)
            }
        };
        let over = [m.hover[0], m.hover[1], travel_z];
        time_s += dynamics.move_time_s(delta(at, over), travel);
        time_s += dynamics.move_time_s(delta(over, m.hover), travel);
        time_s += dynamics.move_time_s(delta(m.hover, m.bottom), Some(spec.plunge_feed_mm_per_min));
        time_s += spec.dwell_s;
        time_s += dynamics.move_time_s(delta(m.bottom, m.hover), Some(spec.retract_feed_mm_per_min));
        at = m.hover;
    }
    time_s += dynamics.move_time_s(delta(at, [at[0], at[1], safe]), travel);
    (tour_mm, time_s)
}

/// The per-dot time model of the ordering's recovery rule, from the same trapezoid model
/// as [`estimate`]: `cycle_s` is the plunge from hover to depth, the dwell and the retract;
/// `travel_mm_per_s` is the travel feed capped by the X/Y rate limits (the best over the
/// axis and diagonal directions).
///
/// Short travel moves never reach that speed (they are limited by acceleration), so the
/// model's clock runs no faster than the arm's: a dot it places outside the recovery
/// window really is outside it, and the rule stays on the safe side.
pub fn dot_timing(spec: &SessionSpec, dynamics: &MachineDynamics) -> DotTiming {
    let plunge = [0.0, 0.0, -(spec.hover_mm + spec.depth_mm)];
    let retract = [0.0, 0.0, spec.hover_mm + spec.depth_mm];
    let cycle_s = dynamics.move_time_s(plunge, Some(spec.plunge_feed_mm_per_min))
        + spec.dwell_s
        + dynamics.move_time_s(retract, Some(spec.retract_feed_mm_per_min));
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let travel_mm_per_s = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [s, s, 0.0], [s, -s, 0.0]]
        .into_iter()
        .map(|dir| dynamics.block_limits(dir, Some(spec.travel_feed_mm_per_min)).0)
        .fold(0.0, f64::max);
    DotTiming { cycle_s, travel_mm_per_s }
}

/// Lowest clearance (mm) above the skin of the travel moves the compiler emits between
/// consecutive dots (from the previous hover point up to [`travel_z_mm`] over the next dot,
/// which lifts by the chord sag L²/8R of a head of radius `MIN_SCALP_RADIUS_MM`), measured
/// along the patch's z axis every 0.5 mm, with the index of the dot the worst move arrives
/// at, and the longest travel step (mm). A clearance below half the hover height means the
/// scalp curves more tightly than the compiler assumes there.
pub(crate) fn travel_clearance(
    motions: &[DotMotion],
    spec: &SessionSpec,
    z_max_mm: f64,
    patch_from_base: &Isometry3<f64>,
    surface: &SurfacePatch,
) -> (f64, usize, f64) {
    let entry = |m: &DotMotion| [m.hover[0], m.hover[1], m.hover[2] - spec.hover_mm];
    let top = motions.iter().map(|m| entry(m)[2]).fold(f64::NEG_INFINITY, f64::max);
    let safe = safe_z_mm(top, z_max_mm);
    let mut worst = (f64::INFINITY, 0usize);
    let mut max_step = 0.0f64;
    for k in 1..motions.len() {
        let (prev, m) = (&motions[k - 1], &motions[k]);
        let over = [m.hover[0], m.hover[1], travel_z_mm(entry(prev), entry(m), spec.hover_mm, safe)];
        let (a, b) = (Point3::from(prev.hover), Point3::from(over));
        let len = (b - a).norm();
        max_step = max_step.max((Point3::from(m.hover) - a).norm());
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
    PlanEstimates { tour_mm, arm_time_s, treated_area_cm2, tour_lower_bound_mm: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smp_core::rig::Rig;

    fn spec() -> SessionSpec {
        SessionSpec::from_toml_str(crate::DEFAULT_SESSION1_TOML).expect("default session parses")
    }

    #[test]
    fn dot_timing_matches_the_estimate_of_one_dot() {
        let (spec, rig) = (spec(), Rig::default_sim());
        let t = dot_timing(&spec, &rig.dynamics);
        // One dot alone: the cycle plus the approach from and the lift back to the safe height.
        let m = dot_motion(&Isometry3::identity(), [10.0, 0.0, 0.0], &spec);
        let (_, one_s) = estimate(&[m], &spec, &rig.dynamics);
        let lift = [0.0, 0.0, smp_core::kinematics::SAFE_ABOVE_DOTS_MM - spec.hover_mm];
        let up_down = 2.0 * rig.dynamics.move_time_s(lift, Some(spec.travel_feed_mm_per_min));
        assert!((t.cycle_s + up_down - one_s).abs() < 1e-12, "{} + {up_down} vs {one_s}", t.cycle_s);
        // Default crown session: 3 mm at 600 and 1200 mm/min plus 0.1 s dwell, about 0.56 s.
        assert!((0.5..0.6).contains(&t.cycle_s), "{}", t.cycle_s);
        assert!((t.travel_mm_per_s - spec.travel_feed_mm_per_min / 60.0).abs() < 1e-9);
        // The model's clock never runs faster than the estimate: a travel step takes at
        // least `d / travel_mm_per_s` in the trapezoid model.
        for d in [0.5, 1.0, 3.0, 30.0] {
            let a = dot_motion(&Isometry3::identity(), [0.0, 0.0, 0.0], &spec);
            let b = dot_motion(&Isometry3::identity(), [d, 0.0, 0.0], &spec);
            let (_, one_s) = estimate(&[a], &spec, &rig.dynamics);
            let (_, two_s) = estimate(&[a, b], &spec, &rig.dynamics);
            assert!(two_s - one_s - t.cycle_s >= d / t.travel_mm_per_s - 1e-12, "{d} mm");
        }
    }
}

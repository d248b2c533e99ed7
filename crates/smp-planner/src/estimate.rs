//! Arm time and path estimates for the motion the G-code compiler emits per dot, in order:
//!
//! 1. travel from the previous dot's hover point at [`travel_z_mm`] (`hover_mm` above the
//!    higher of the two skin points plus the skin's bulge between them) with `G1` at
//!    `travel_feed`, then approach straight down to this dot's hover point;
//! 2. plunge straight down (the `xyz` needle is vertical) to `depth_mm` below the skin
//!    point at `plunge_feed`;
//! 3. dwell `dwell_s` (optionally rounded up to the controller's dwell step: grbl dwells in
//!    50 ms steps, `G4 P0.06` lasts 0.1 s; see [`smp_core::kinematics::executed_dwell_s`]);
//! 4. retract to the hover point at `retract_feed`;
//!
//! framed by the lift to and from the session's safe height ([`safe_z_mm`]), as the program
//! is. The lines of the program that do not move take no time here: the setup, the cartridge
//! start and stop, and a grbl program's final `M2` (grbl synchronises on it, so its `ok` comes
//! when the last move has ended, but every move is already timed rest to rest). Each move is timed with [`smp_core::kinematics::MachineDynamics::move_time_s`] (rest
//! to rest, per-axis rate and acceleration limits), the model the simulated controller paces
//! itself with, and the travel height comes from the same function the compiler calls.
//!
//! The profiles that tilt the needle (`xyzab`, `joints`) are timed along the tool path the
//! compiler emits for them, built by the same function ([`smp_core::toolpath`]): travel
//! between clearance points with re-orientation, approach, plunge and retract along the
//! normal, dwell. Each move is timed as the simulated controller runs it: rest to rest, every
//! axis (X Y Z A B, or the six joints) within its own rate and acceleration
//! ([`smp_core::kinematics::axes_move_time_s`]), at the feed the program gives (lowered for the
//! rotaries in `xyzab`; the joint-space feed that caps the tip speed in `joints`, from the
//! inverse kinematics of every piece the program splits a move into).

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::arm::{ab_deg_for_direction, needle_pose, Arm, IkError, ARM_JOINTS};
use smp_core::geometry::SurfacePatch;
use smp_core::kinematics::{axes_move_time_s, executed_dwell_s, safe_z_mm, travel_z_mm, AxisLimits, MachineDynamics};
use smp_core::plan::{PlanEstimates, PlannedDot, SessionPlan, SessionSpec};
use smp_core::rig::{AxisProfile, Rig};
use smp_core::toolpath::{
    joint_feed_deg_per_min, joint_piece_targets, tilted_safe_z_mm, tilted_tool_path, xyzab_feed_mm_per_min, PathDot,
    PathRole, ToolPose,
};

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
    let e = estimate_xyz_detailed(motions, spec, dynamics, start_machine_mm, 0.0);
    (e.tour_mm, e.arm_time_s)
}

/// [`estimate_from`] with the time of each dot (the sum is accumulated exactly as before, so
/// the total is unchanged to the bit) and the controller's dwell step (0: exact).
fn estimate_xyz_detailed(
    motions: &[DotMotion],
    spec: &SessionSpec,
    dynamics: &MachineDynamics,
    start_machine_mm: Option<[f64; 3]>,
    dwell_step_s: f64,
) -> ArmTimeEstimate {
    let Some(first) = motions.first() else { return ArmTimeEstimate::default() };
    let mut per_dot_s = Vec::with_capacity(motions.len());
    let dwell_s = executed_dwell_s(spec.dwell_s, dwell_step_s);
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
    let lead_in_s = time_s;
    for (k, m) in motions.iter().enumerate() {
        let before_s = time_s;
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
        time_s += dwell_s;
        time_s += dynamics.move_time_s(delta(m.bottom, m.hover), Some(spec.retract_feed_mm_per_min));
        at = m.hover;
        per_dot_s.push(time_s - before_s);
    }
    let before_s = time_s;
    time_s += dynamics.move_time_s(delta(at, [at[0], at[1], safe]), travel);
    ArmTimeEstimate { tour_mm, arm_time_s: time_s, lead_in_s, per_dot_s, lead_out_s: time_s - before_s }
}

/// The per-dot time model of the ordering's recovery rule, from the same trapezoid model
/// as [`estimate_from`]: `cycle_s` is the plunge from hover to depth, the dwell and the retract;
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

/// The shortest dot cycle a session spec allows on a machine: plunge from hover to depth,
/// the dwell as the controller executes it, retract, with no travel at all (two dots at the
/// same place), each move rest to rest as the simulated controller runs it.
///
/// Why: the arm time of a full head is at least the dot count times this, whatever the
/// ordering or the travel, so it says whether a target such as "30,000 dots in an hour" is
/// reachable under a session's clinical feeds before any plan is made; `at_max_feed_s` is the
/// same cycle with plunge and retract at the session's feed limit, the best any feed choice
/// within that limit can do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleFloor {
    /// Plunge and retract at the spec's own feeds, s.
    pub at_session_feeds_s: f64,
    /// Plunge and retract at `max_feed_mm_per_min`, s.
    pub at_max_feed_s: f64,
}

/// [`CycleFloor`] of `spec` on `dynamics` (vertical needle, the Z axis: its acceleration is the
/// highest of the linear axes in every rig we ship), dwelling in steps of `dwell_step_s`.
pub fn cycle_floor(spec: &SessionSpec, dynamics: &MachineDynamics, dwell_step_s: f64) -> CycleFloor {
    let stroke_mm = spec.hover_mm + spec.depth_mm;
    let (down, up) = ([0.0, 0.0, -stroke_mm], [0.0, 0.0, stroke_mm]);
    let dwell_s = executed_dwell_s(spec.dwell_s, dwell_step_s);
    let cycle = |plunge: f64, retract: f64| {
        dynamics.move_time_s(down, Some(plunge)) + dwell_s + dynamics.move_time_s(up, Some(retract))
    };
    let max = spec.max_feed_mm_per_min;
    CycleFloor {
        at_session_feeds_s: cycle(spec.plunge_feed_mm_per_min, spec.retract_feed_mm_per_min),
        at_max_feed_s: cycle(max.max(spec.plunge_feed_mm_per_min), max.max(spec.retract_feed_mm_per_min)),
    }
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

/// Arm time of a program, split by dot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmTimeEstimate {
    /// Tip travel from hover point to hover point, mm.
    pub tour_mm: f64,
    /// The whole program, s: `lead_in_s + sum(per_dot_s) + lead_out_s`.
    pub arm_time_s: f64,
    /// From the start position to the first dot's travel (the lift to the safe height in
    /// `xyz` and `xyzab`; 0 in `joints`, which starts at home), s.
    pub lead_in_s: f64,
    /// Per dot, in execution order: from the end of the previous dot's retract (or the lead-in)
    /// to the end of this dot's retract (travel, approach, plunge, dwell, retract), s.
    pub per_dot_s: Vec<f64>,
    /// From the last retract to the end of the program (the rise to the safe height; in
    /// `joints` also the way back home), s.
    pub lead_out_s: f64,
}

impl ArmTimeEstimate {
    /// Mean dot cycle (s per dot) over the dots after the first (the first one's travel comes
    /// from the safe height, not from a neighbour); `None` with fewer than two dots.
    pub fn steady_cycle_s(&self) -> Option<f64> {
        (self.per_dot_s.len() >= 2).then(|| self.per_dot_s[1..].iter().sum::<f64>() / (self.per_dot_s.len() - 1) as f64)
    }
}

/// Why a tilted program could not be timed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimateError {
    #[error("rig `{rig}` has the `{profile}` profile but no `[{table}]` table; add it to the rig file")]
    MissingRigTable { rig: String, profile: &'static str, table: &'static str },
    #[error("dot {dot_id}: normal {normal:?} is not a finite unit vector; re-plan from a valid map")]
    BadNormal { dot_id: u32, normal: [f64; 3] },
    #[error("dot {dot_id:?}: no joint solution for the {what} move: {source}")]
    Ik {
        dot_id: Option<u32>,
        what: &'static str,
        #[source]
        source: IkError,
    },
}

/// Arm time of the program the G-code compiler emits for `plan` on `rig` (any profile), by
/// dot. `start_machine_mm` is the tip where the program starts (`xyz`, `xyzab`; the A/B
/// rotaries are taken at 0, as the compiler assumes); `None` starts at the safe height above
/// the first dot. A `joints` program always starts and ends at the rig's home pose.
/// `dwell_step_s` is the controller's dwell step: grbl and the simulated controller dwell in
/// whole steps of [`smp_core::kinematics::GRBL_DWELL_STEP_S`]; 0 times `G4` exactly.
pub fn estimate_arm_time(
    plan: &SessionPlan,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    start_machine_mm: Option<[f64; 3]>,
    dwell_step_s: f64,
) -> Result<ArmTimeEstimate, EstimateError> {
    estimate_dots(&plan.dots, &plan.spec, rig, base_from_head, start_machine_mm, dwell_step_s)
}

/// [`estimate_arm_time`] of ordered dots under a session spec.
pub(crate) fn estimate_dots(
    dots: &[PlannedDot],
    spec: &SessionSpec,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    start_machine_mm: Option<[f64; 3]>,
    dwell_step_s: f64,
) -> Result<ArmTimeEstimate, EstimateError> {
    match rig.axes {
        AxisProfile::Xyz => {
            let motions: Vec<DotMotion> = dots.iter().map(|d| dot_motion(base_from_head, d.position(), spec)).collect();
            Ok(estimate_xyz_detailed(&motions, spec, &rig.dynamics, start_machine_mm, dwell_step_s))
        }
        AxisProfile::Xyzab => {
            estimate_xyzab(&path_dots(dots, base_from_head)?, spec, rig, start_machine_mm, dwell_step_s)
        }
        AxisProfile::Joints => estimate_joints(&path_dots(dots, base_from_head)?, spec, rig, dwell_step_s),
    }
}

/// The dots in the base frame, as the compiler takes them (unit normals rotated).
fn path_dots(dots: &[PlannedDot], base_from_head: &Isometry3<f64>) -> Result<Vec<(u32, PathDot)>, EstimateError> {
    dots.iter()
        .map(|d| {
            PathDot::from_planned(d, base_from_head)
                .map(|p| (d.id, p))
                .ok_or(EstimateError::BadNormal { dot_id: d.id, normal: d.normal })
        })
        .collect()
}

/// Accumulates move times into the lead-in, the dots and the lead-out.
struct Tally {
    est: ArmTimeEstimate,
}

impl Tally {
    fn new(n: usize) -> Self {
        Tally { est: ArmTimeEstimate { per_dot_s: vec![0.0; n], ..ArmTimeEstimate::default() } }
    }

    fn add(&mut self, pose: &ToolPose, dt_s: f64) {
        match (pose.role, pose.dot) {
            (PathRole::Shutdown, _) | (_, None) => self.est.lead_out_s += dt_s,
            (_, Some(k)) => {
                if let Some(t) = self.est.per_dot_s.get_mut(k) {
                    *t += dt_s;
                }
            }
        }
    }

    fn finish(mut self, dots: &[(u32, PathDot)], hover_mm: f64) -> ArmTimeEstimate {
        let hover = |d: &PathDot| d.entry + d.normal * hover_mm;
        self.est.tour_mm = dots.windows(2).map(|w| (hover(&w[1].1) - hover(&w[0].1)).norm()).sum();
        self.est.arm_time_s = self.est.lead_in_s + self.est.per_dot_s.iter().sum::<f64>() + self.est.lead_out_s;
        self.est
    }
}

/// The `xyzab` program of `smp_gcode`'s tilted compiler, move by move (see the module docs).
fn estimate_xyzab(
    dots: &[(u32, PathDot)],
    spec: &SessionSpec,
    rig: &Rig,
    start_machine_mm: Option<[f64; 3]>,
    dwell_step_s: f64,
) -> Result<ArmTimeEstimate, EstimateError> {
    let five = rig.five_axis.ok_or_else(|| EstimateError::MissingRigTable {
        rig: rig.name.clone(),
        profile: "xyzab",
        table: "five_axis",
    })?;
    let pdots: Vec<PathDot> = dots.iter().map(|d| d.1).collect();
    let safe_z = tilted_safe_z_mm(&pdots, spec.hover_mm, rig.dynamics.z.max_mm);
    let path = tilted_tool_path(&pdots, spec, safe_z);
    let mut tally = Tally::new(dots.len());
    let Some(first) = path.first() else { return Ok(tally.finish(dots, spec.hover_mm)) };
    let mut limits: Vec<AxisLimits> = rig.dynamics.axes().to_vec();
    limits.extend(five.axis_limits());
    let ab_of = |w: &ToolPose| ab_deg_for_direction(&w.dir).unwrap_or([0.0, 0.0]);
    // Where the machine is: the start (then the program's straight rise to the safe Z), or
    // already at the first pose.
    let mut at: [f64; 5] = match start_machine_mm {
        Some(s) => {
            let up = [s[0], s[1], safe_z, 0.0, 0.0];
            let rise = [0.0, 0.0, safe_z - s[2], 0.0, 0.0];
            tally.est.lead_in_s += axes_move_time_s(&rise, rise[2].abs(), &limits, Some(spec.travel_feed_mm_per_min));
            up
        }
        None => {
            let [a, b] = ab_of(first);
            [first.tip.x, first.tip.y, first.tip.z, a, b]
        }
    };
    // The compiler's idea of the previous pose (for the F it writes).
    let mut prev: Option<(Point3<f64>, [f64; 2])> = None;
    for w in &path {
        let [a, b] = ab_of(w);
        let (p0, ab0) = prev.unwrap_or((Point3::new(w.tip.x, w.tip.y, safe_z), [0.0, 0.0]));
        let feed = xyzab_feed_mm_per_min((w.tip - p0).norm(), [a - ab0[0], b - ab0[1]], w.feed_mm_per_min, &five);
        let target = [w.tip.x, w.tip.y, w.tip.z, a, b];
        let d: [f64; 5] = std::array::from_fn(|i| target[i] - at[i]);
        let xyz = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        // The controller's feed length: the tip distance, or the A/B step for a pure turn.
        let length = if xyz > 1e-9 { xyz } else { (d[3] * d[3] + d[4] * d[4]).sqrt() };
        tally.add(w, axes_move_time_s(&d, length, &limits, Some(feed)));
        if w.role == PathRole::Plunge {
            tally.add(w, executed_dwell_s(spec.dwell_s, dwell_step_s));
        }
        at = target;
        prev = Some((w.tip, [a, b]));
    }
    Ok(tally.finish(dots, spec.hover_mm))
}

/// Degrees rounded to the 4 decimals of a joint program's words, back in radians.
fn rounded_joints(q: &[f64; ARM_JOINTS]) -> [f64; ARM_JOINTS] {
    std::array::from_fn(|i| ((q[i].to_degrees() * 1e4).round() / 1e4).to_radians())
}

/// The `joints` program of `smp_gcode`'s tilted compiler, piece by piece (see the module
/// docs): every pose solved by inverse kinematics seeded from the previous solution, every
/// piece timed in joint space at the program's joint feed.
fn estimate_joints(
    dots: &[(u32, PathDot)],
    spec: &SessionSpec,
    rig: &Rig,
    dwell_step_s: f64,
) -> Result<ArmTimeEstimate, EstimateError> {
    let missing = || EstimateError::MissingRigTable { rig: rig.name.clone(), profile: "joints", table: "arm" };
    let arm_spec = rig.arm.as_ref().ok_or_else(missing)?;
    let arm: Arm = rig.arm_model().ok_or_else(missing)?;
    let limits = arm_spec.axis_limits();
    let home: [f64; ARM_JOINTS] =
        std::array::from_fn(|i| arm_spec.home_deg.get(i).copied().unwrap_or(0.0).to_radians());
    let home_pose = arm.base_from_needle(&home);
    let pdots: Vec<PathDot> = dots.iter().map(|d| d.1).collect();
    let safe_z = tilted_safe_z_mm(&pdots, spec.hover_mm, rig.dynamics.z.max_mm)
        .max(home_pose.translation.z.min(rig.dynamics.z.max_mm));
    let mut path = tilted_tool_path(&pdots, spec, safe_z);
    if let Some(last) = path.last().copied() {
        path.push(ToolPose {
            tip: Point3::from(home_pose.translation.vector),
            dir: home_pose.rotation * Vector3::new(0.0, 0.0, -1.0),
            ..last
        });
    }
    let mut tally = Tally::new(dots.len());
    // The controller starts at home and the program's first line goes there.
    let mut q = rounded_joints(&home);
    let mut pose = home_pose;
    for w in &path {
        let dot_id = w.dot.and_then(|k| dots.get(k)).map(|d| d.0);
        let roll_ref = pose.rotation * Vector3::x();
        let target = needle_pose(&w.tip, &w.dir, &roll_ref)
            .ok_or(EstimateError::BadNormal { dot_id: dot_id.unwrap_or(0), normal: [w.dir.x, w.dir.y, w.dir.z] })?;
        for piece in joint_piece_targets(w.role, &pose, &target) {
            let what = match w.role {
                PathRole::Travel => "travel",
                PathRole::Approach => "approach",
                PathRole::Plunge => "plunge",
                PathRole::Retract => "retract",
                PathRole::Shutdown => "shutdown",
            };
            let sol = arm.solve_ik(&piece, &q).map_err(|source| EstimateError::Ik { dot_id, what, source })?;
            let sol = rounded_joints(&sol);
            let Some(f) = joint_feed_deg_per_min(&arm, &q, &sol, w.feed_mm_per_min) else { continue };
            // The program writes F rounded down to 0.001 deg/min.
            let f = ((f * 1000.0).floor() / 1000.0).max(0.001);
            let d: [f64; ARM_JOINTS] = std::array::from_fn(|i| (sol[i] - q[i]).to_degrees());
            let length = d.iter().map(|v| v * v).sum::<f64>().sqrt();
            tally.add(w, axes_move_time_s(&d, length, &limits, Some(f)));
            q = sol;
        }
        if w.role == PathRole::Plunge {
            tally.add(w, executed_dwell_s(spec.dwell_s, dwell_step_s));
        }
        pose = target;
    }
    Ok(tally.finish(dots, spec.hover_mm))
}

/// [`dot_timing`] for the rig's profile. `xyz`: exactly [`dot_timing`]. `xyzab` and `joints`:
/// a lower bound of the true cycle, since their tip never moves faster than the move's feed:
/// the plunge and retract at their feeds without the acceleration time, plus the dwell, and
/// the travel feed as the travel speed (X/Y-capped as in `xyz` for `xyzab`, whose X/Y are the
/// tip's). The ordering's recovery rule stays on the safe side.
pub fn dot_timing_for_rig(spec: &SessionSpec, rig: &Rig) -> DotTiming {
    match rig.axes {
        AxisProfile::Xyz => dot_timing(spec, &rig.dynamics),
        AxisProfile::Xyzab | AxisProfile::Joints => {
            let stroke_mm = spec.hover_mm + spec.depth_mm;
            let cycle_s = stroke_mm / (spec.plunge_feed_mm_per_min / 60.0)
                + spec.dwell_s
                + stroke_mm / (spec.retract_feed_mm_per_min / 60.0);
            let travel_mm_per_s = match rig.axes {
                AxisProfile::Xyzab => dot_timing(spec, &rig.dynamics).travel_mm_per_s,
                _ => spec.travel_feed_mm_per_min / 60.0,
            };
            DotTiming { cycle_s, travel_mm_per_s }
        }
    }
}

/// Assembles the plan's estimates.
pub(crate) fn plan_estimates(tour_mm: f64, arm_time_s: f64, treated_area_cm2: f64) -> PlanEstimates {
    PlanEstimates { tour_mm, arm_time_s, treated_area_cm2, tour_lower_bound_mm: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smp_core::kinematics::GRBL_DWELL_STEP_S;
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

    /// A 5 x 5 patch of dots 2 mm apart on a 60 mm sphere around the head's origin, centred
    /// 30 degrees from the vertex, with their outward normals.
    fn dome_dots(spec: &SessionSpec) -> Vec<PlannedDot> {
        let mut out = Vec::new();
        for i in 0..5 {
            for j in 0..5 {
                let polar = (30.0f64).to_radians() + (i as f64 - 2.0) * 2.0 / 60.0;
                let azim = (j as f64 - 2.0) * 2.0 / (60.0 * polar.sin());
                let n = [polar.sin() * azim.cos(), polar.sin() * azim.sin(), polar.cos()];
                out.push(PlannedDot {
                    id: 100_000 + out.len() as u32,
                    x_mm: 60.0 * n[0],
                    y_mm: 60.0 * n[1],
                    z_mm: 60.0 * n[2],
                    normal: n,
                    layer: 1,
                    zone: spec.zone,
                    depth_mm: spec.depth_mm,
                    dilution_pct: spec.dilution_pct,
                    tone: None,
                });
            }
        }
        out
    }

    fn tilted_rigs() -> [Rig; 2] {
        [
            Rig::from_toml_str(smp_core::rig::XYZAB_RIG_TOML).expect("xyzab rig"),
            Rig::from_toml_str(smp_core::rig::SIX_AXIS_RIG_TOML).expect("6-axis rig"),
        ]
    }

    #[test]
    fn tilted_estimates_add_up_and_bound_the_ordering_model() {
        let spec = spec();
        let dots = dome_dots(&spec);
        for rig in tilted_rigs() {
            let bfh = rig.base_from_head_nominal();
            let e = estimate_dots(&dots, &spec, &rig, &bfh, Some([100.0, 0.0, 300.0]), GRBL_DWELL_STEP_S)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.per_dot_s.len(), dots.len());
            let sum = e.lead_in_s + e.per_dot_s.iter().sum::<f64>() + e.lead_out_s;
            assert!((sum - e.arm_time_s).abs() < 1e-9, "{:?}: {sum} vs {}", rig.axes, e.arm_time_s);
            // The ordering's recovery model never runs faster than the arm.
            let t = dot_timing_for_rig(&spec, &rig);
            for (k, d) in e.per_dot_s.iter().enumerate() {
                assert!(*d >= t.cycle_s, "{:?} dot {k}: {d} s < model cycle {} s", rig.axes, t.cycle_s);
            }
            // A dot cycle of the crown session is plunge, dwell, retract (about 0.56 s) plus a
            // short hop: well under a second.
            let cycle = e.steady_cycle_s().unwrap_or(f64::NAN);
            assert!((0.56..0.9).contains(&cycle), "{:?}: {cycle} s/dot", rig.axes);
            // Rows of 2 mm hops, and four ~8 mm returns to the next row's start.
            assert!((60.0..90.0).contains(&e.tour_mm), "{:?}: {} mm", rig.axes, e.tour_mm);
        }
    }

    #[test]
    fn the_cycle_floor_bounds_every_dot_and_is_the_stroke_plus_dwell() {
        let full = SessionSpec::from_toml_str(crate::FULL_HEAD_SESSION1_TOML).expect("full-head session parses");
        let mut rigs = vec![Rig::default_sim()];
        rigs.extend(tilted_rigs());
        for spec in [spec(), full] {
            let dots = dome_dots(&spec);
            for rig in &rigs {
                let floor = cycle_floor(&spec, &rig.dynamics, GRBL_DWELL_STEP_S);
                let e = estimate_dots(&dots, &spec, rig, &rig.base_from_head_nominal(), None, GRBL_DWELL_STEP_S)
                    .unwrap_or_else(|e| panic!("{e}"));
                for (k, d) in e.per_dot_s.iter().enumerate() {
                    assert!(*d >= floor.at_session_feeds_s - 1e-9, "{:?} dot {k}: {d} < {:?}", rig.axes, floor);
                }
                assert!(floor.at_max_feed_s <= floor.at_session_feeds_s + 1e-12, "{floor:?}");
            }
        }
        // By hand, full-head session on the default rig (Z: 5000 mm/s², 2 mm stroke): the plunge at
        // 25 mm/s reaches its feed (ramps of 5 ms, 0.0625 mm each) and takes 2/25 + 0.005 s; the
        // retract at 50 mm/s takes 2/50 + 0.01 s; the 0.05 s dwell is one grbl step.
        let full = SessionSpec::from_toml_str(crate::FULL_HEAD_SESSION1_TOML).expect("parses");
        let f = cycle_floor(&full, &Rig::default_sim().dynamics, GRBL_DWELL_STEP_S);
        let by_hand = (2.0 / 25.0 + 0.005) + 0.05 + (2.0 / 50.0 + 0.01);
        assert!((f.at_session_feeds_s - by_hand).abs() < 1e-9, "{} vs {by_hand}", f.at_session_feeds_s);
        // At the 8000 mm/min limit the 2 mm stroke never reaches the feed: a triangle of
        // 2·sqrt(2/5000) s each way.
        let tri = 2.0 * (2.0f64 / 5000.0).sqrt();
        assert!((f.at_max_feed_s - (2.0 * tri + 0.05)).abs() < 1e-9, "{}", f.at_max_feed_s);
    }

    #[test]
    fn tilted_estimates_follow_the_rig_accelerations_and_rates() {
        let spec = spec();
        let dots = dome_dots(&spec);
        let [r5, r6] = tilted_rigs();
        let time = |rig: &Rig| {
            estimate_dots(&dots, &spec, rig, &rig.base_from_head_nominal(), None, 0.0)
                .unwrap_or_else(|e| panic!("{e}"))
                .arm_time_s
        };
        let base5 = time(&r5);
        let mut slow = r5.clone();
        slow.five_axis = slow.five_axis.map(|mut f| {
            f.accel_deg_per_s2 = 20.0;
            f
        });
        assert!(time(&slow) > base5 + 0.1, "A/B acceleration ignored: {} vs {base5}", time(&slow));
        let mut slow = r5.clone();
        slow.five_axis = slow.five_axis.map(|mut f| {
            f.a.max_rate_deg_per_min = 30.0;
            f.b.max_rate_deg_per_min = 30.0;
            f
        });
        assert!(time(&slow) > base5 + 0.1, "A/B rate ignored: {} vs {base5}", time(&slow));
        let base6 = time(&r6);
        let mut slow = r6.clone();
        if let Some(a) = slow.arm.as_mut() {
            a.accel_deg_per_s2 = 20.0;
        }
        assert!(time(&slow) > base6 + 0.1, "joint acceleration ignored: {} vs {base6}", time(&slow));
        // A rig without its table is named.
        let mut bare = r6.clone();
        bare.arm = None;
        let err = estimate_dots(&dots, &spec, &bare, &bare.base_from_head_nominal(), None, 0.0).expect_err("no arm");
        assert!(err.to_string().contains("[arm]"), "{err}");
    }

    #[test]
    fn xyz_detail_matches_the_plan_figure_and_dwells_in_grbl_steps() {
        let spec = spec();
        let dots = dome_dots(&spec);
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let motions: Vec<DotMotion> = dots.iter().map(|d| dot_motion(&bfh, d.position(), &spec)).collect();
        let (tour, total) = estimate_from(&motions, &spec, &rig.dynamics, Some([0.0, 0.0, 400.0]));
        let e = estimate_dots(&dots, &spec, &rig, &bfh, Some([0.0, 0.0, 400.0]), 0.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((e.tour_mm, e.arm_time_s), (tour, total));
        let sum = e.lead_in_s + e.per_dot_s.iter().sum::<f64>() + e.lead_out_s;
        assert!((sum - total).abs() < 1e-9);
        // grbl dwells in 50 ms steps: 0.06 s lasts as long as 0.1 s, 0.11 s as 0.15 s.
        let with = |dwell_s: f64, step_s: f64| {
            let s = SessionSpec { dwell_s, ..spec.clone() };
            estimate_dots(&dots, &s, &rig, &bfh, None, step_s).map(|e| e.arm_time_s).unwrap_or(f64::NAN)
        };
        let step = GRBL_DWELL_STEP_S;
        assert_eq!(with(0.1, step), with(0.1, 0.0));
        assert!((with(0.06, step) - with(0.1, 0.0)).abs() < 1e-9);
        assert!((with(0.11, step) - with(0.1, 0.0) - 0.05 * dots.len() as f64).abs() < 1e-9);
        assert!((with(0.06, 0.0) - with(0.1, 0.0) + 0.04 * dots.len() as f64).abs() < 1e-9);
    }
}

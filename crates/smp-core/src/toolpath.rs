//! The tool path of the profiles that tilt the needle (`xyzab`, `joints`), and the feed rules
//! their programs use.
//!
//! Why it lives in the core: the G-code compiler emits this path and the planner's arm-time
//! estimate times it (the planner does not depend on the compiler), so both must build it
//! from the same function or the estimate drifts from the program.
//!
//! Per dot (base frame, `n` = outward unit normal, `e` = entry point on the skin): travel from
//! the previous dot's clearance point `e' + n' c` to this dot's `e + n c` (re-orienting on the
//! way), approach along the normal to the hover point `e + n hover`, plunge along the normal
//! to `e - n depth` at the plunge feed, dwell, retract along the normal to the hover point.
//! The clearance `c = hover + d²/(8 R)` (d = distance between the two entries, R =
//! [`MIN_SCALP_RADIUS_MM`]) keeps the straight chord between the two clearance points outside
//! any scalp at least that round; for dots closer than about 0.6 mm it is the hover height.
//!
//! The path ends with the rise to the safe Z ([`PathRole::Shutdown`]). What the program writes
//! around it that is not a pose (the cartridge stop `M5` before it, and a grbl program's end
//! `M2` after it) adds no motion, so the path is all the estimate times.

use nalgebra::{Isometry3, Point3, Vector3};

use crate::arm::{Arm, FiveAxisSpec, ARM_JOINTS};
use crate::kinematics::{safe_z_mm, MIN_SCALP_RADIUS_MM};
use crate::plan::{PlannedDot, SessionSpec};

/// Joint programs split Cartesian moves longer than this into IK-solved pieces, mm.
pub const JOINT_STEP_MM: f64 = 5.0;
/// Joint programs split moves that turn the needle more than this into pieces, degrees.
pub const JOINT_STEP_DEG: f64 = 5.0;
/// Samples per joint move used to find the tip's peak speed.
pub const JOINT_SPEED_SAMPLES: usize = 16;
/// Factor by which a tilted program's move is slowed below its computed rate limit, so that
/// the verifier's finer sampling never finds it over the limit.
pub const FEED_MARGIN: f64 = 1.03;

/// What a pose of the path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRole {
    /// Air move between dots (or to the first one).
    Travel,
    /// Along the normal from a raised clearance point down to the hover point.
    Approach,
    /// Along the normal into the skin to depth.
    Plunge,
    /// Along the normal back to the hover point.
    Retract,
    /// The rise to the safe Z after the last dot.
    Shutdown,
}

/// One dot of a tilted program, base frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathDot {
    /// Entry point on the skin, mm.
    pub entry: Point3<f64>,
    /// Outward unit normal of the skin.
    pub normal: Vector3<f64>,
    /// Depth below the skin along the normal, mm.
    pub depth_mm: f64,
}

impl PathDot {
    /// A planned dot (head frame) in the base frame, its normal rotated; `None` when the plan's
    /// normal is not a finite unit vector (within 1e-3), which each caller reports by dot id.
    /// Shared so that the compiler and the planner's estimate read a plan's dots alike.
    pub fn from_planned(dot: &PlannedDot, base_from_head: &Isometry3<f64>) -> Option<PathDot> {
        let n = Vector3::from(dot.normal);
        if !(n.iter().all(|v| v.is_finite()) && (n.norm() - 1.0).abs() < 1e-3) {
            return None;
        }
        Some(PathDot {
            entry: base_from_head * Point3::from(dot.position()),
            normal: (base_from_head.rotation * n).normalize(),
            depth_mm: dot.depth_mm,
        })
    }
}

/// One tool pose of the path: tip and pointing direction (into the skin), base frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolPose {
    pub tip: Point3<f64>,
    /// Unit direction from the needle's hub towards its tip.
    pub dir: Vector3<f64>,
    pub role: PathRole,
    /// Index (in the slice given to [`tilted_tool_path`]) of the dot the move belongs to.
    pub dot: Option<usize>,
    /// Tip feed, mm/min.
    pub feed_mm_per_min: f64,
}

/// Safe Z (base, mm) of a tilted session: [`SAFE_ABOVE_DOTS_MM`](crate::kinematics::SAFE_ABOVE_DOTS_MM)
/// above the highest hover point, capped at `z_max_mm`; `z_max_mm` when there are no dots.
pub fn tilted_safe_z_mm(dots: &[PathDot], hover_mm: f64, z_max_mm: f64) -> f64 {
    let top = dots.iter().map(|d| (d.entry + d.normal * hover_mm).z).fold(f64::NEG_INFINITY, f64::max);
    if dots.is_empty() {
        z_max_mm
    } else {
        safe_z_mm(top, z_max_mm)
    }
}

/// The tool path of the module docs. The first pose is the rise to `safe_z_mm` above the
/// first dot (the caller adds how the machine gets there), the last the rise to `safe_z_mm`
/// after the last dot.
pub fn tilted_tool_path(dots: &[PathDot], spec: &SessionSpec, safe_z_mm: f64) -> Vec<ToolPose> {
    let hover = spec.hover_mm;
    let travel = spec.travel_feed_mm_per_min;
    let mut out = Vec::with_capacity(dots.len() * 5 + 2);
    let mut prev: Option<&PathDot> = None;
    for (k, d) in dots.iter().enumerate() {
        let dir = -d.normal;
        let pose = |tip: Point3<f64>, role, feed| ToolPose { tip, dir, role, dot: Some(k), feed_mm_per_min: feed };
        let hover_pt = d.entry + d.normal * hover;
        match prev {
            None => out.push(pose(Point3::new(hover_pt.x, hover_pt.y, safe_z_mm), PathRole::Travel, travel)),
            Some(p) => {
                let dist = (d.entry - p.entry).norm();
                let clear = hover + dist * dist / (8.0 * MIN_SCALP_RADIUS_MM);
                if clear - hover > 1e-3 {
                    out.push(ToolPose {
                        tip: p.entry + p.normal * clear,
                        dir: -p.normal,
                        role: PathRole::Travel,
                        dot: Some(k),
                        feed_mm_per_min: travel,
                    });
                    out.push(pose(d.entry + d.normal * clear, PathRole::Travel, travel));
                } else {
                    out.push(pose(hover_pt, PathRole::Travel, travel));
                }
            }
        }
        if (out.last().map_or(hover_pt, |w| w.tip) - hover_pt).norm() > 1e-6 {
            out.push(pose(hover_pt, PathRole::Approach, travel));
        }
        out.push(pose(d.entry - d.normal * d.depth_mm, PathRole::Plunge, spec.plunge_feed_mm_per_min));
        out.push(pose(hover_pt, PathRole::Retract, spec.retract_feed_mm_per_min));
        prev = Some(d);
    }
    if let Some(last) = out.last().copied() {
        out.push(ToolPose {
            tip: Point3::new(last.tip.x, last.tip.y, safe_z_mm),
            role: PathRole::Shutdown,
            dot: None,
            ..last
        });
    }
    out
}

/// Tip feed (mm/min) of an `xyzab` move of `len_mm` that turns A and B by `d_ab_deg`: the
/// role's `feed_mm_per_min`, lowered by [`FEED_MARGIN`] below the rate at which the faster
/// rotary would reach its rate limit. Unrounded (the program's F is rounded down to 0.001).
pub fn xyzab_feed_mm_per_min(len_mm: f64, d_ab_deg: [f64; 2], feed_mm_per_min: f64, five: &FiveAxisSpec) -> f64 {
    if len_mm <= 1e-9 {
        return feed_mm_per_min;
    }
    // Minutes the move takes at this feed; slow down if a rotary would be too fast.
    let t = len_mm / feed_mm_per_min;
    let ra = d_ab_deg[0].abs() / t;
    let rb = d_ab_deg[1].abs() / t;
    let scale = (five.a.max_rate_deg_per_min / ra.max(1e-300)).min(five.b.max_rate_deg_per_min / rb.max(1e-300));
    if scale < 1.0 {
        feed_mm_per_min * scale / FEED_MARGIN
    } else {
        feed_mm_per_min
    }
}

/// The joint-space feed (degrees/min of the joint step's norm) for the move `q0 -> q1`
/// (radians) that keeps the tip's peak speed (forward kinematics sampled
/// [`JOINT_SPEED_SAMPLES`] times) at or under `tip_feed_mm_per_min` and every joint under its
/// rate limit, lowered by [`FEED_MARGIN`]. `None` for a move that turns no joint. Unrounded
/// (the program's F is rounded down to 0.001).
pub fn joint_feed_deg_per_min(
    arm: &Arm,
    q0: &[f64; ARM_JOINTS],
    q1: &[f64; ARM_JOINTS],
    tip_feed_mm_per_min: f64,
) -> Option<f64> {
    let dq_deg: [f64; ARM_JOINTS] = std::array::from_fn(|i| (q1[i] - q0[i]).to_degrees());
    let norm_deg = dq_deg.iter().map(|d| d * d).sum::<f64>().sqrt();
    if norm_deg < 1e-9 {
        return None;
    }
    // Largest tip displacement per unit of the move parameter s in [0, 1].
    let mut peak = 0.0f64;
    let mut prev = arm.base_from_needle(q0).translation.vector;
    for k in 1..=JOINT_SPEED_SAMPLES {
        let s = k as f64 / JOINT_SPEED_SAMPLES as f64;
        let q: [f64; ARM_JOINTS] = std::array::from_fn(|i| q0[i] + (q1[i] - q0[i]) * s);
        let p = arm.base_from_needle(&q).translation.vector;
        peak = peak.max((p - prev).norm() * JOINT_SPEED_SAMPLES as f64);
        prev = p;
    }
    // Minutes the move must at least take.
    let mut t_min = peak / tip_feed_mm_per_min;
    for (j, d) in arm.joints().iter().zip(dq_deg) {
        t_min = t_min.max(d.abs() / (j.max_rate_deg_per_s * 60.0));
    }
    Some(norm_deg / (t_min * FEED_MARGIN).max(1e-12))
}

/// Number of IK-solved pieces a joint program splits a move into: one for a plunge (its one
/// line is what the dwell confirms), else enough that no piece moves the tip more than
/// [`JOINT_STEP_MM`] or turns the needle more than [`JOINT_STEP_DEG`].
pub fn joint_pieces(role: PathRole, dist_mm: f64, turn_deg: f64) -> usize {
    if role == PathRole::Plunge {
        1
    } else {
        ((dist_mm / JOINT_STEP_MM).max(turn_deg / JOINT_STEP_DEG).ceil() as usize).max(1)
    }
}

/// The IK targets of a joint program's move from `start` to `target` (needle poses, base
/// frame): [`joint_pieces`] poses evenly spaced along it (tip interpolated linearly, rotation
/// by slerp), the last being `target`. Shared so the estimate solves exactly the poses the
/// program's lines hold.
pub fn joint_piece_targets(
    role: PathRole,
    start: &Isometry3<f64>,
    target: &Isometry3<f64>,
) -> impl Iterator<Item = Isometry3<f64>> {
    let dist_mm = (target.translation.vector - start.translation.vector).norm();
    let turn_deg = (target.rotation * start.rotation.inverse()).angle().to_degrees();
    let pieces = joint_pieces(role, dist_mm, turn_deg);
    let (start, target) = (*start, *target);
    (1..=pieces).map(move |k| {
        let s = k as f64 / pieces as f64;
        Isometry3::from_parts(
            start.translation.vector.lerp(&target.translation.vector, s).into(),
            start.rotation.slerp(&target.rotation, s),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::RotaryAxis;

    fn spec() -> SessionSpec {
        SessionSpec::from_toml_str(include_str!("../../../sim/sessions/crown-s1.toml")).expect("crown-s1 parses")
    }

    #[test]
    fn path_moves_along_normals_and_clears_between_dots() {
        let spec = spec();
        let n = Vector3::new(0.0, 0.6, 0.8);
        let dots = [
            PathDot { entry: Point3::new(0.0, 0.0, 0.0), normal: Vector3::z(), depth_mm: 1.0 },
            PathDot { entry: Point3::new(10.0, 0.0, 0.0), normal: n, depth_mm: 1.0 },
        ];
        let safe = tilted_safe_z_mm(&dots, spec.hover_mm, 500.0);
        let path = tilted_tool_path(&dots, &spec, safe);
        let roles: Vec<PathRole> = path.iter().map(|p| p.role).collect();
        use PathRole::*;
        assert_eq!(roles, [Travel, Approach, Plunge, Retract, Travel, Travel, Approach, Plunge, Retract, Shutdown]);
        // The second dot's plunge ends `depth` inside along its normal, pointing along -n.
        let plunge = path[7];
        assert!((plunge.tip - (dots[1].entry - n)).norm() < 1e-12);
        assert!((plunge.dir + n).norm() < 1e-12);
        // Clearance over the 10 mm hop: hover + 100 / 320 mm.
        let up = path[4].tip;
        assert!((up.z - (spec.hover_mm + 100.0 / (8.0 * MIN_SCALP_RADIUS_MM))).abs() < 1e-12);
        assert_eq!(path[9].tip.z, safe);
    }

    #[test]
    fn rotary_feed_is_lowered_only_when_a_rotary_is_too_fast() {
        let r = RotaryAxis { min_deg: -70.0, max_deg: 70.0, max_rate_deg_per_min: 600.0 };
        let five = FiveAxisSpec { a: r, b: r, accel_deg_per_s2: 900.0 };
        assert_eq!(xyzab_feed_mm_per_min(600.0, [1.0, 0.0], 600.0, &five), 600.0);
        // 600 mm at 600 mm/min is 1 min; 1200 deg in 1 min is twice B's rate.
        let f = xyzab_feed_mm_per_min(600.0, [0.0, 1200.0], 600.0, &five);
        assert!((f - 300.0 / FEED_MARGIN).abs() < 1e-9, "{f}");
        assert_eq!(joint_pieces(PathRole::Plunge, 30.0, 30.0), 1);
        assert_eq!(joint_pieces(PathRole::Travel, 12.0, 1.0), 3);
        assert_eq!(joint_pieces(PathRole::Travel, 0.0, 0.0), 1);
    }

    #[test]
    fn joint_piece_targets_split_long_moves_and_end_on_the_target() {
        let start = Isometry3::translation(0.0, 0.0, 100.0);
        let target = Isometry3::new(Vector3::new(12.0, 0.0, 100.0), Vector3::new(0.0, 0.1, 0.0));
        let pieces: Vec<Isometry3<f64>> = joint_piece_targets(PathRole::Travel, &start, &target).collect();
        // 12 mm in 5 mm pieces: 3; 0.1 rad (5.7 deg) in 5 deg pieces: 2.
        assert_eq!(pieces.len(), 3);
        assert!((pieces[0].translation.vector.x - 4.0).abs() < 1e-12);
        assert!((pieces[2].translation.vector - target.translation.vector).norm() < 1e-12);
        assert!(pieces[2].rotation.angle_to(&target.rotation) < 1e-9);
        assert_eq!(joint_piece_targets(PathRole::Plunge, &start, &target).count(), 1);
    }
}

//! Session plan -> program for the rigs that tilt the needle: `xyzab` (5-axis, RTCP) and
//! `joints` (6-axis arm). The needle is kept along each dot's inward normal.
//!
//! Per dot (base frame, `n` = outward normal, `e` = entry point on the skin):
//! travel from the previous dot's clearance point `e' + n' c` to this dot's `e + n c`
//! (re-orienting on the way), approach along the normal to the hover point `e + n hover`,
//! plunge along the normal to `e - n depth` at the plunge feed, `G4` dwell, retract along the
//! normal to the hover point. The clearance `c = hover + d²/(8 R)` (d = distance between the
//! two entries, R = [`MIN_SCALP_RADIUS_MM`]) keeps the straight chord between the two
//! clearance points outside any scalp at least that round, as the `xyz` compiler's lift does;
//! for neighbouring dots it is the hover height itself, so air moves stay short. The
//! verifier checks the actual clearance against the map.
//!
//! Program conventions:
//! - `xyzab`: `G1 X Y Z A B F`, X Y Z the tip in the base frame (mm), A B in degrees
//!   (`smp_core::arm`), F the tip feed in mm/min, lowered where A/B would turn faster than
//!   their rate limit. The program starts with a straight rise to the safe Z, and moves at the
//!   safe Z above the first dot before descending to it.
//! - `joints`: `G1 X Y Z A B C F`, the six words being joints J1..J6 in degrees (4 decimals),
//!   F the joint-space feed in degrees/min of the Euclidean norm of the joint step. F is chosen
//!   per line so that the tip's peak speed along the joint-interpolated move (forward
//!   kinematics sampled) stays at or under the role's feed and no joint exceeds its rate. Long
//!   Cartesian moves are split into [`JOINT_STEP_MM`] pieces, each solved by inverse
//!   kinematics seeded from the previous solution. The program starts at the rig's home pose.

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::arm::{ab_deg_for_direction, needle_pose, Arm, FiveAxisSpec, ARM_JOINTS};
use smp_core::kinematics::{safe_z_mm, MIN_SCALP_RADIUS_MM};
use smp_core::plan::SessionPlan;
use smp_core::rig::Rig;

use crate::compile::{check_settings, CompileError};
use crate::program::{floor3, fmt3, fmt4, LineRole, Program, ProgramLine, MAX_JOINT_NC_LINE_CHARS};

/// The verifier accepts a needle this far (degrees) from the skin's inward normal while in the
/// skin, and a plunge whose motion is this far from the needle's axis.
pub const NORMAL_TOLERANCE_DEG: f64 = 2.0;
/// Joint programs split Cartesian moves longer than this into IK-solved pieces, mm.
pub const JOINT_STEP_MM: f64 = 5.0;
/// Joint programs split moves that turn the needle more than this into pieces, degrees.
pub const JOINT_STEP_DEG: f64 = 5.0;
/// Samples per joint move used to find the tip's peak speed (the verifier samples more finely;
/// the compiler leaves [`JOINT_FEED_MARGIN`] for the difference).
const JOINT_SPEED_SAMPLES: usize = 16;
/// Factor by which a joint move is slowed below the computed limit.
const JOINT_FEED_MARGIN: f64 = 1.03;

/// Longest G-code text of an `xyzab` or `joints` line: grbl-style controllers buffer 80 bytes
/// with the newline (the `.nc` line with its annotation may reach [`MAX_JOINT_NC_LINE_CHARS`]).
pub const MAX_JOINT_TEXT_CHARS: usize = 78;

/// One tool pose of the path: tip and pointing direction (into the skin) in the base frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waypoint {
    pub(crate) tip: Point3<f64>,
    pub(crate) dir: Vector3<f64>,
    pub(crate) role: LineRole,
    pub(crate) dot_id: Option<u32>,
    /// Tip feed, mm/min.
    pub(crate) feed_mm_per_min: f64,
}

pub(crate) struct Dot {
    id: u32,
    entry: Point3<f64>,
    /// Outward unit normal, base frame.
    normal: Vector3<f64>,
    depth_mm: f64,
}

fn dots(plan: &SessionPlan, base_from_head: &Isometry3<f64>) -> Result<Vec<Dot>, CompileError> {
    crate::compile::checked_dots(plan, |dot| {
        let n = Vector3::from(dot.normal);
        if !(n.iter().all(|v| v.is_finite()) && (n.norm() - 1.0).abs() < 1e-3) {
            return Err(CompileError::BadNormal { dot_id: dot.id, normal: dot.normal });
        }
        Ok(Dot {
            id: dot.id,
            entry: base_from_head * Point3::new(dot.x_mm, dot.y_mm, dot.z_mm),
            normal: (base_from_head.rotation * n).normalize(),
            depth_mm: dot.depth_mm,
        })
    })
}

/// The tool path of a plan, shared by both profiles. The first waypoint is the rise to the
/// safe Z above the first dot (the caller adds how the machine gets there), the last the rise
/// to the safe Z after the last dot.
pub(crate) fn tool_path(plan: &SessionPlan, dots: &[Dot], safe_z: f64) -> Vec<Waypoint> {
    let spec = &plan.spec;
    let hover = spec.hover_mm;
    let mut out = Vec::with_capacity(dots.len() * 6 + 2);
    let mut prev: Option<&Dot> = None;
    for d in dots {
        let dir = -d.normal;
        let wp = |tip: Point3<f64>, role, feed| Waypoint { tip, dir, role, dot_id: Some(d.id), feed_mm_per_min: feed };
        let travel = spec.travel_feed_mm_per_min;
        let hover_pt = d.entry + d.normal * hover;
        match prev {
            None => {
                let above = Point3::new(hover_pt.x, hover_pt.y, safe_z);
                out.push(wp(above, LineRole::Travel, travel));
            }
            Some(p) => {
                let dist = (d.entry - p.entry).norm();
                let clear = hover + dist * dist / (8.0 * MIN_SCALP_RADIUS_MM);
                if clear - hover > 1e-3 {
                    let up = p.entry + p.normal * clear;
                    out.push(Waypoint {
                        tip: up,
                        dir: -p.normal,
                        role: LineRole::Travel,
                        dot_id: Some(d.id),
                        feed_mm_per_min: travel,
                    });
                    out.push(wp(d.entry + d.normal * clear, LineRole::Travel, travel));
                } else {
                    out.push(wp(hover_pt, LineRole::Travel, travel));
                }
            }
        }
        if (out.last().map_or(hover_pt, |w| w.tip) - hover_pt).norm() > 1e-6 {
            out.push(wp(hover_pt, LineRole::Approach, travel));
        }
        out.push(wp(d.entry - d.normal * d.depth_mm, LineRole::Plunge, spec.plunge_feed_mm_per_min));
        out.push(wp(hover_pt, LineRole::Retract, spec.retract_feed_mm_per_min));
        prev = Some(d);
    }
    if let Some(last) = out.last().copied() {
        out.push(Waypoint {
            tip: Point3::new(last.tip.x, last.tip.y, safe_z),
            role: LineRole::Shutdown,
            dot_id: None,
            ..last
        });
    }
    out
}

fn header(plan: &SessionPlan, rig: &Rig, n_dots: usize, profile: &str) -> Vec<ProgramLine> {
    let setup = |text: String| ProgramLine { text, dot_id: None, role: LineRole::Setup };
    vec![
        setup(format!("(smp session {}, {} dots, generated by smp)", plan.session, n_dots)),
        setup(format!(
            "(limits: depth {} mm, feed {} mm/min)",
            fmt3(plan.limits.depth_limit_mm),
            fmt3(plan.limits.max_feed_mm_per_min)
        )),
        setup(format!("(rig {}, profile {profile}, units mm deg)", crate::compile::sanitize_comment(&rig.name, 36))),
        setup("G21 G90 G94".to_string()),
    ]
}

/// Session safe Z (base, mm) over the plan's hover points.
fn session_safe_z(plan: &SessionPlan, dots: &[Dot], z_max: f64) -> f64 {
    let top = dots.iter().map(|d| (d.entry + d.normal * plan.spec.hover_mm).z).fold(f64::NEG_INFINITY, f64::max);
    if dots.is_empty() {
        z_max
    } else {
        safe_z_mm(top, z_max)
    }
}

/// Checks every `.nc` line against `max_nc` and its G-code text against `max_text`.
fn check_lengths(lines: &[ProgramLine], max_nc: usize, max_text: usize) -> Result<(), CompileError> {
    for (i, l) in lines.iter().enumerate() {
        let nc = l.to_nc_line();
        if nc.len() > max_nc || l.text.len() > max_text {
            return Err(CompileError::LineTooLong { line: i + 1, len: nc.len(), text: nc });
        }
    }
    Ok(())
}

/// Compiles a plan for an `xyzab` rig (see the module docs).
pub fn compile_xyzab(plan: &SessionPlan, rig: &Rig, base_from_head: &Isometry3<f64>) -> Result<Program, CompileError> {
    let five: FiveAxisSpec = rig.five_axis.ok_or_else(|| CompileError::MissingRigTable {
        rig: rig.name.clone(),
        profile: "xyzab",
        table: "five_axis",
    })?;
    check_settings(plan)?;
    let dots = dots(plan, base_from_head)?;
    let safe_z = session_safe_z(plan, &dots, rig.dynamics.z.max_mm);
    let path = tool_path(plan, &dots, safe_z);

    let mut lines = header(plan, rig, dots.len(), "xyzab");
    let travel_f = fmt3(plan.spec.travel_feed_mm_per_min);
    lines.push(ProgramLine { text: format!("G1 Z{} F{travel_f}", fmt3(safe_z)), dot_id: None, role: LineRole::Setup });
    lines.push(ProgramLine {
        text: format!("M3 S{}", fmt3(plan.spec.cartridge_rpm)),
        dot_id: None,
        role: LineRole::Setup,
    });
    // The machine's A/B before the first move are unknown: the first travel sets them at the
    // safe Z. Its rotary rate is checked against the straight-down pose as the worst case.
    let mut prev: Option<(Point3<f64>, [f64; 2])> = None;
    let mut shutdown_started = false;
    for w in &path {
        let [a, b] = ab_deg_for_direction(&w.dir).unwrap_or([0.0, 0.0]);
        let dot_for_err = w.dot_id.unwrap_or(0);
        if !five.within_limits(a, b) {
            return Err(CompileError::RotaryLimit { dot_id: dot_for_err, a_deg: a, b_deg: b });
        }
        if !rig.dynamics.within_travel([w.tip.x, w.tip.y, w.tip.z]) {
            return Err(CompileError::OutOfTravel { dot_id: dot_for_err, position_mm: [w.tip.x, w.tip.y, w.tip.z] });
        }
        let (p0, ab0) = prev.unwrap_or((Point3::new(w.tip.x, w.tip.y, safe_z), [0.0, 0.0]));
        let len = (w.tip - p0).norm();
        let mut feed = w.feed_mm_per_min;
        if len > 1e-9 {
            // Minutes the move takes at this feed; slow down if a rotary would be too fast.
            let t = len / feed;
            let ra = (a - ab0[0]).abs() / t;
            let rb = (b - ab0[1]).abs() / t;
            let scale =
                (five.a.max_rate_deg_per_min / ra.max(1e-300)).min(five.b.max_rate_deg_per_min / rb.max(1e-300));
            if scale < 1.0 {
                feed = floor3(feed * scale / JOINT_FEED_MARGIN);
            }
        }
        if w.role == LineRole::Shutdown && !shutdown_started {
            lines.push(ProgramLine { text: "M5".to_string(), dot_id: None, role: LineRole::Shutdown });
            shutdown_started = true;
        }
        lines.push(ProgramLine {
            text: format!(
                "G1 X{} Y{} Z{} A{} B{} F{}",
                fmt3(w.tip.x),
                fmt3(w.tip.y),
                fmt3(w.tip.z),
                fmt3(a),
                fmt3(b),
                fmt3(feed)
            ),
            dot_id: w.dot_id,
            role: w.role,
        });
        if let (LineRole::Plunge, Some(id)) = (w.role, w.dot_id) {
            lines.push(ProgramLine {
                text: format!("G4 P{}", fmt3(plan.spec.dwell_s)),
                dot_id: Some(id),
                role: LineRole::Dwell,
            });
        }
        prev = Some((w.tip, [a, b]));
    }
    if !shutdown_started {
        lines.push(ProgramLine { text: "M5".to_string(), dot_id: None, role: LineRole::Shutdown });
    }
    check_lengths(&lines, MAX_JOINT_NC_LINE_CHARS, MAX_JOINT_TEXT_CHARS)?;
    Ok(Program { session: plan.session, lines })
}

/// The joint-space feed (degrees/min) for the move `q0 -> q1` (radians) that keeps the tip's
/// peak speed at or under `tip_feed_mm_per_min` and every joint under its rate limit.
pub(crate) fn joint_feed_deg_per_min(
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
    let f = floor3(norm_deg / (t_min * JOINT_FEED_MARGIN).max(1e-12));
    Some(f.max(0.001))
}

/// Compiles a plan for a `joints` rig (see the module docs).
pub fn compile_joints(plan: &SessionPlan, rig: &Rig, base_from_head: &Isometry3<f64>) -> Result<Program, CompileError> {
    let missing = || CompileError::MissingRigTable { rig: rig.name.clone(), profile: "joints", table: "arm" };
    let spec = rig.arm.as_ref().ok_or_else(missing)?;
    let arm = rig.arm_model().ok_or_else(missing)?;
    check_settings(plan)?;
    let dots = dots(plan, base_from_head)?;
    let home: [f64; ARM_JOINTS] = std::array::from_fn(|i| spec.home_deg.get(i).copied().unwrap_or(0.0).to_radians());
    let home_pose = arm.base_from_needle(&home);
    let safe_z =
        session_safe_z(plan, &dots, rig.dynamics.z.max_mm).max(home_pose.translation.z.min(rig.dynamics.z.max_mm));
    let mut path = tool_path(plan, &dots, safe_z);
    // Start at home, end back at home.
    let home_dir = home_pose.rotation * Vector3::new(0.0, 0.0, -1.0);
    let home_tip = Point3::from(home_pose.translation.vector);
    if let Some(last) = path.last().copied() {
        path.push(Waypoint { tip: home_tip, dir: home_dir, ..last });
    }

    let mut lines = header(plan, rig, dots.len(), "joints");
    let joint_words = |q: &[f64; ARM_JOINTS]| {
        let d: [String; ARM_JOINTS] = std::array::from_fn(|i| fmt4(q[i].to_degrees()));
        format!("X{} Y{} Z{} A{} B{} C{}", d[0], d[1], d[2], d[3], d[4], d[5])
    };
    // Rounded joints, as the controller and the verifier will see them.
    let rounded = |q: &[f64; ARM_JOINTS]| -> [f64; ARM_JOINTS] {
        std::array::from_fn(|i| fmt4(q[i].to_degrees()).parse::<f64>().unwrap_or(f64::NAN).to_radians())
    };
    let home_f = fmt3(home_feed_deg_per_min(&arm));
    lines.push(ProgramLine {
        text: format!("G1 {} F{home_f}", joint_words(&home)),
        dot_id: None,
        role: LineRole::Setup,
    });
    lines.push(ProgramLine {
        text: format!("M3 S{}", fmt3(plan.spec.cartridge_rpm)),
        dot_id: None,
        role: LineRole::Setup,
    });

    let mut q = rounded(&home);
    let mut pose = home_pose;
    let mut shutdown_started = false;
    for w in &path {
        let roll_ref = pose.rotation * Vector3::x();
        let target = needle_pose(&w.tip, &w.dir, &roll_ref)
            .ok_or(CompileError::BadNormal { dot_id: w.dot_id.unwrap_or(0), normal: [w.dir.x, w.dir.y, w.dir.z] })?;
        if !rig.dynamics.within_travel([w.tip.x, w.tip.y, w.tip.z]) {
            return Err(CompileError::OutOfTravel {
                dot_id: w.dot_id.unwrap_or(0),
                position_mm: [w.tip.x, w.tip.y, w.tip.z],
            });
        }
        // Split long moves so the joint-interpolated path stays near the straight one; the
        // plunge is never split (its one line is what the dwell confirms).
        let dist = (target.translation.vector - pose.translation.vector).norm();
        let turn = (target.rotation * pose.rotation.inverse()).angle().to_degrees();
        let pieces = if w.role == LineRole::Plunge {
            1
        } else {
            ((dist / JOINT_STEP_MM).max(turn / JOINT_STEP_DEG).ceil() as usize).max(1)
        };
        if w.role == LineRole::Shutdown && !shutdown_started {
            lines.push(ProgramLine { text: "M5".to_string(), dot_id: None, role: LineRole::Shutdown });
            shutdown_started = true;
        }
        let start = pose;
        for k in 1..=pieces {
            let s = k as f64 / pieces as f64;
            let piece = Isometry3::from_parts(
                start.translation.vector.lerp(&target.translation.vector, s).into(),
                start.rotation.slerp(&target.rotation, s),
            );
            let sol = arm.solve_ik(&piece, &q).map_err(|source| CompileError::Ik {
                dot_id: w.dot_id,
                what: w.role.as_str(),
                source,
            })?;
            let sol = rounded(&sol);
            let Some(f) = joint_feed_deg_per_min(&arm, &q, &sol, w.feed_mm_per_min) else {
                continue;
            };
            lines.push(ProgramLine {
                text: format!("G1 {} F{}", joint_words(&sol), fmt3(f)),
                dot_id: w.dot_id,
                role: w.role,
            });
            q = sol;
        }
        if w.role == LineRole::Plunge {
            if let Some(id) = w.dot_id {
                lines.push(ProgramLine {
                    text: format!("G4 P{}", fmt3(plan.spec.dwell_s)),
                    dot_id: Some(id),
                    role: LineRole::Dwell,
                });
            }
        }
        pose = target;
    }
    if !shutdown_started {
        lines.push(ProgramLine { text: "M5".to_string(), dot_id: None, role: LineRole::Shutdown });
    }
    check_lengths(&lines, MAX_JOINT_NC_LINE_CHARS, MAX_JOINT_TEXT_CHARS)?;
    Ok(Program { session: plan.session, lines })
}

/// The first line moves from an unknown pose to home; its feed is a modest joint-space rate.
fn home_feed_deg_per_min(arm: &Arm) -> f64 {
    // 10 % of the slowest joint's rate, in degrees/min.
    arm.joints().iter().map(|j| j.max_rate_deg_per_s * 60.0 * 0.1).fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::fixtures::{synthetic_case_for, SyntheticCase};
    use crate::verify::verify;
    use smp_core::rig::{SIX_AXIS_RIG_TOML, XYZAB_RIG_TOML};

    pub(crate) fn case5(n: usize) -> SyntheticCase {
        synthetic_case_for(n, Rig::from_toml_str(XYZAB_RIG_TOML).expect("xyzab rig"))
    }

    pub(crate) fn case6(n: usize) -> SyntheticCase {
        synthetic_case_for(n, Rig::from_toml_str(SIX_AXIS_RIG_TOML).expect("6-axis rig"))
    }

    #[test]
    fn xyzab_compiles_and_verifies() {
        let c = case5(200);
        let p = compile(&c.plan, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}"));
        let nc = p.to_nc();
        let v = verify(p, &c.plan, &c.map, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}\n{nc}"));
        assert_eq!(v.report().dots, 200);
        assert!((v.report().max_depth_mm - 1.0).abs() < 0.01, "{}", v.report().max_depth_mm);
    }

    /// A head pitched 45 degrees: the dome's far side is ~70 degrees from vertical. The xyz
    /// compiler refuses the plan by dot; the 5-axis program keeps the needle normal and the
    /// verifier proves every travel stays outside the scalp.
    #[test]
    fn steep_plan_refused_by_xyz_runs_on_xyzab() {
        let mut rig = Rig::from_toml_str(XYZAB_RIG_TOML).expect("xyzab rig");
        rig.head_rest.rpy_deg = [0.0, 45.0, 0.0];
        rig.five_axis = rig.five_axis.map(|mut f| {
            f.b.min_deg = -85.0;
            f.b.max_deg = 85.0;
            f.a.min_deg = -85.0;
            f.a.max_deg = 85.0;
            f
        });
        let c = synthetic_case_for(800, rig.clone());
        let mut xyz = rig;
        xyz.axes = smp_core::rig::AxisProfile::Xyz;
        let err = compile(&c.plan, &xyz, &c.base_from_head).expect_err("too steep for a vertical needle");
        assert!(matches!(err, CompileError::TooSteep { .. }), "{err}");
        let p = compile(&c.plan, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}"));
        let v = verify(p, &c.plan, &c.map, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.report().dots, 800);
        assert!(v.report().max_depth_mm <= c.plan.limits.depth_limit_mm);
    }

    #[test]
    fn rotary_limit_names_the_dot() {
        let mut c = case5(30);
        if let Some(f) = c.rig.five_axis.as_mut() {
            f.b.max_deg = 5.0;
        }
        let err = compile(&c.plan, &c.rig, &c.base_from_head).expect_err("beyond B");
        assert!(matches!(err, CompileError::RotaryLimit { dot_id: 1000, .. }), "{err}");
    }

    #[test]
    fn unreachable_dot_names_the_dot() {
        let mut c = case6(3);
        // The head moved 2 m away: no joint solution.
        c.base_from_head.translation.vector.x += 2000.0;
        c.rig.dynamics.x.max_mm = 5000.0;
        let err = compile(&c.plan, &c.rig, &c.base_from_head).expect_err("out of reach");
        assert!(matches!(err, CompileError::Ik { dot_id: Some(1000), .. }), "{err}");
        assert!(err.to_string().contains("dot 1000"), "{err}");
    }

    #[test]
    fn joints_compile_and_verify() {
        let c = case6(60);
        let p = compile(&c.plan, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}"));
        let nc = p.to_nc();
        let v = verify(p, &c.plan, &c.map, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}\n{nc}"));
        assert_eq!(v.report().dots, 60);
        assert!((v.report().max_depth_mm - 1.0).abs() < 0.01, "{}", v.report().max_depth_mm);
    }
}

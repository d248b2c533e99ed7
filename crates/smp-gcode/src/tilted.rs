//! Session plan -> program for the rigs that tilt the needle: `xyzab` (5-axis, RTCP) and
//! `joints` (6-axis arm). The needle is kept along each dot's inward normal.
//!
//! The tool path and its feed rules are [`smp_core::toolpath`]'s (the planner's arm-time
//! estimate times the same path, so both come from one function). Per dot (base frame, `n` =
//! outward normal, `e` = entry point on the skin): travel from the previous dot's clearance
//! point `e' + n' c` to this dot's `e + n c` (re-orienting on the way), approach along the
//! normal to the hover point `e + n hover`, plunge along the normal to `e - n depth` at the
//! plunge feed, `G4` dwell, retract along the normal to the hover point. The clearance
//! `c = hover + d²/(8 R)` (d = distance between the two entries, R =
//! [`MIN_SCALP_RADIUS_MM`](smp_core::kinematics::MIN_SCALP_RADIUS_MM)) keeps the straight chord
//! between the two clearance points outside any scalp at least that round, as the `xyz`
//! compiler's lift does; for neighbouring dots it is the hover height itself, so air moves
//! stay short. The verifier checks the actual clearance against the map.
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
//! - Every F a rule lowers is written rounded down to 0.001, so the program never exceeds the
//!   limit the rule computed.
//! - The header, dwells and program end follow the [`Dialect`] as in the `xyz` profile
//!   ([`crate::compile`]): a grbl program ends with `M2` after the cartridge stop and the final
//!   move (the rise to the safe Z, or the return home).

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::arm::{ab_deg_for_direction, needle_pose, Arm, FiveAxisSpec, ARM_JOINTS};
use smp_core::plan::SessionPlan;
use smp_core::rig::Rig;
use smp_core::toolpath::{
    joint_feed_deg_per_min, joint_piece_targets, tilted_safe_z_mm, tilted_tool_path, xyzab_feed_mm_per_min, PathDot,
    PathRole, ToolPose,
};
/// Re-exported from [`smp_core::toolpath`], where the compiler and the planner's estimate
/// share them.
pub use smp_core::toolpath::{FEED_MARGIN, JOINT_SPEED_SAMPLES, JOINT_STEP_DEG, JOINT_STEP_MM};

use crate::compile::{check_settings, header, push_program_end, CompileError};
use crate::dialect::Dialect;
use crate::program::{floor3, fmt3, fmt4, LineRole, Program, ProgramLine, MAX_JOINT_NC_LINE_CHARS};

/// The verifier accepts a needle this far (degrees) from the skin's inward normal while in the
/// skin, and a plunge whose motion is this far from the needle's axis.
pub const NORMAL_TOLERANCE_DEG: f64 = 2.0;

/// Longest G-code text of an `xyzab` or `joints` line: grbl-style controllers buffer 80 bytes
/// with the newline (the `.nc` line with its annotation may reach [`MAX_JOINT_NC_LINE_CHARS`]).
pub const MAX_JOINT_TEXT_CHARS: usize = 78;

/// The plan's dots in the base frame, each with its plan id.
fn dots(plan: &SessionPlan, base_from_head: &Isometry3<f64>) -> Result<Vec<(u32, PathDot)>, CompileError> {
    crate::compile::checked_dots(plan, |dot| {
        PathDot::from_planned(dot, base_from_head)
            .map(|d| (dot.id, d))
            .ok_or(CompileError::BadNormal { dot_id: dot.id, normal: dot.normal })
    })
}

/// Session safe Z (base, mm) and the shared tool path of the plan's dots (see the module docs);
/// `raise` may lift the safe Z (the `joints` program keeps it at least at the home height).
fn tool_path(
    plan: &SessionPlan,
    dots: &[(u32, PathDot)],
    rig: &Rig,
    raise: impl Fn(f64) -> f64,
) -> (Vec<ToolPose>, f64) {
    let path_dots: Vec<PathDot> = dots.iter().map(|d| d.1).collect();
    let safe_z = raise(tilted_safe_z_mm(&path_dots, plan.spec.hover_mm, rig.dynamics.z.max_mm));
    (tilted_tool_path(&path_dots, &plan.spec, safe_z), safe_z)
}

/// The program line role of a tool-path pose.
fn line_role(role: PathRole) -> LineRole {
    match role {
        PathRole::Travel => LineRole::Travel,
        PathRole::Approach => LineRole::Approach,
        PathRole::Plunge => LineRole::Plunge,
        PathRole::Retract => LineRole::Retract,
        PathRole::Shutdown => LineRole::Shutdown,
    }
}

/// Plan id of the dot a pose belongs to.
fn dot_id_of(pose: &ToolPose, dots: &[(u32, PathDot)]) -> Option<u32> {
    pose.dot.and_then(|k| dots.get(k)).map(|d| d.0)
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

/// Compiles a plan for an `xyzab` rig into a grbl program (see the module docs;
/// [`crate::compile_with`] chooses the dialect).
pub fn compile_xyzab(plan: &SessionPlan, rig: &Rig, base_from_head: &Isometry3<f64>) -> Result<Program, CompileError> {
    xyzab_program(plan, rig, base_from_head, Dialect::Grbl)
}

/// Compiles a plan for a `joints` rig into a grbl program (see the module docs;
/// [`crate::compile_with`] chooses the dialect).
pub fn compile_joints(plan: &SessionPlan, rig: &Rig, base_from_head: &Isometry3<f64>) -> Result<Program, CompileError> {
    joints_program(plan, rig, base_from_head, Dialect::Grbl)
}

/// The `xyzab` program in `dialect`.
pub(crate) fn xyzab_program(
    plan: &SessionPlan,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    dialect: Dialect,
) -> Result<Program, CompileError> {
    let five: FiveAxisSpec = rig.five_axis.ok_or_else(|| CompileError::MissingRigTable {
        rig: rig.name.clone(),
        profile: "xyzab",
        table: "five_axis",
    })?;
    check_settings(plan)?;
    let dots = dots(plan, base_from_head)?;
    let (path, safe_z) = tool_path(plan, &dots, rig, |z| z);

    let mut lines = header(plan, rig, dots.len(), dialect);
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
        let (role, dot_id) = (line_role(w.role), dot_id_of(w, &dots));
        let [a, b] = ab_deg_for_direction(&w.dir).unwrap_or([0.0, 0.0]);
        let dot_for_err = dot_id.unwrap_or(0);
        if !five.within_limits(a, b) {
            return Err(CompileError::RotaryLimit { dot_id: dot_for_err, a_deg: a, b_deg: b });
        }
        if !rig.dynamics.within_travel([w.tip.x, w.tip.y, w.tip.z]) {
            return Err(CompileError::OutOfTravel { dot_id: dot_for_err, position_mm: [w.tip.x, w.tip.y, w.tip.z] });
        }
        let (p0, ab0) = prev.unwrap_or((Point3::new(w.tip.x, w.tip.y, safe_z), [0.0, 0.0]));
        let ruled = xyzab_feed_mm_per_min((w.tip - p0).norm(), [a - ab0[0], b - ab0[1]], w.feed_mm_per_min, &five);
        let feed = if ruled < w.feed_mm_per_min { floor3(ruled) } else { w.feed_mm_per_min };
        if role == LineRole::Shutdown && !shutdown_started {
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
            dot_id,
            role,
        });
        if let (LineRole::Plunge, Some(id)) = (role, dot_id) {
            lines.push(ProgramLine { text: dialect.dwell(plan.spec.dwell_s), dot_id: Some(id), role: LineRole::Dwell });
        }
        prev = Some((w.tip, [a, b]));
    }
    if !shutdown_started {
        lines.push(ProgramLine { text: "M5".to_string(), dot_id: None, role: LineRole::Shutdown });
    }
    push_program_end(&mut lines, dialect);
    check_lengths(&lines, MAX_JOINT_NC_LINE_CHARS, MAX_JOINT_TEXT_CHARS)?;
    Ok(Program { session: plan.session, lines })
}

/// The `joints` program in `dialect`.
pub(crate) fn joints_program(
    plan: &SessionPlan,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    dialect: Dialect,
) -> Result<Program, CompileError> {
    let missing = || CompileError::MissingRigTable { rig: rig.name.clone(), profile: "joints", table: "arm" };
    let spec = rig.arm.as_ref().ok_or_else(missing)?;
    let arm = rig.arm_model().ok_or_else(missing)?;
    check_settings(plan)?;
    let dots = dots(plan, base_from_head)?;
    let home: [f64; ARM_JOINTS] = std::array::from_fn(|i| spec.home_deg.get(i).copied().unwrap_or(0.0).to_radians());
    let home_pose = arm.base_from_needle(&home);
    let z_max = rig.dynamics.z.max_mm;
    let (mut path, _) = tool_path(plan, &dots, rig, |z| z.max(home_pose.translation.z.min(z_max)));
    // Start at home, end back at home.
    if let Some(last) = path.last().copied() {
        path.push(ToolPose {
            tip: Point3::from(home_pose.translation.vector),
            dir: home_pose.rotation * Vector3::new(0.0, 0.0, -1.0),
            ..last
        });
    }

    let mut lines = header(plan, rig, dots.len(), dialect);
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
        let (role, dot_id) = (line_role(w.role), dot_id_of(w, &dots));
        let roll_ref = pose.rotation * Vector3::x();
        let target = needle_pose(&w.tip, &w.dir, &roll_ref)
            .ok_or(CompileError::BadNormal { dot_id: dot_id.unwrap_or(0), normal: [w.dir.x, w.dir.y, w.dir.z] })?;
        if !rig.dynamics.within_travel([w.tip.x, w.tip.y, w.tip.z]) {
            return Err(CompileError::OutOfTravel {
                dot_id: dot_id.unwrap_or(0),
                position_mm: [w.tip.x, w.tip.y, w.tip.z],
            });
        }
        // Split long moves so the joint-interpolated path stays near the straight one; the
        // plunge is never split (its one line is what the dwell confirms).
        if role == LineRole::Shutdown && !shutdown_started {
            lines.push(ProgramLine { text: "M5".to_string(), dot_id: None, role: LineRole::Shutdown });
            shutdown_started = true;
        }
        for piece in joint_piece_targets(w.role, &pose, &target) {
            let sol =
                arm.solve_ik(&piece, &q).map_err(|source| CompileError::Ik { dot_id, what: role.as_str(), source })?;
            let sol = rounded(&sol);
            let Some(f) = joint_feed_deg_per_min(&arm, &q, &sol, w.feed_mm_per_min) else {
                continue;
            };
            lines.push(ProgramLine {
                text: format!("G1 {} F{}", joint_words(&sol), fmt3(floor3(f).max(0.001))),
                dot_id,
                role,
            });
            q = sol;
        }
        if role == LineRole::Plunge {
            if let Some(id) = dot_id {
                lines.push(ProgramLine {
                    text: dialect.dwell(plan.spec.dwell_s),
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
    push_program_end(&mut lines, dialect);
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
    use crate::verify::verify;
    use smp_core::rig::{SIX_AXIS_RIG_TOML, XYZAB_RIG_TOML};
    use smp_testkit::{synthetic_case_for, SyntheticCase};

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

    /// FNV-1a (64-bit) of a program's `.nc` text: a stable fingerprint for the golden test.
    fn fnv1a(text: &str) -> u64 {
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
    }

    /// The exact bytes of an `xyzab` program (at the rig's rotary rates and with rotaries slow
    /// enough that the feed is lowered on many moves) and of a `joints` program. The first pair
    /// of figures was recorded before the tool path and feed rules moved to
    /// `smp_core::toolpath` (sharing them with the planner's estimate must not change a byte
    /// the controller receives), and still holds for the program without the two lines added
    /// since: the `(dialect grbl)` header and the final `M2`. The second pair is the whole
    /// program's.
    #[test]
    fn tilted_programs_match_their_golden_bytes() {
        let xyzab = case5(120);
        let mut slow = case5(120);
        if let Some(f) = slow.rig.five_axis.as_mut() {
            f.a.max_rate_deg_per_min = 40.0;
            f.b.max_rate_deg_per_min = 40.0;
        }
        let joints = case6(40);
        type Golden<'a> = (&'a str, &'a SyntheticCase, usize, u64, usize, u64);
        let golden: [Golden; 3] = [
            ("xyzab", &xyzab, 48070, 0xc863_7f4c_afa3_c45f, 48099, 0x5927_9e19_5dcc_62f7),
            ("xyzab slow rotaries", &slow, 47832, 0x6394_0c9a_813d_b3b8, 47861, 0xb96a_9a78_9c7f_c83c),
            ("joints", &joints, 35121, 0x435f_6556_b686_1110, 35150, 0x41d8_196c_cfc1_c03e),
        ];
        let mut got = Vec::new();
        for (name, c, ..) in golden {
            let nc = compile(&c.plan, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{name}: {e}")).to_nc();
            let before = nc.replacen("(dialect grbl)\n", "", 1);
            let before = before.strip_suffix("M2 (shutdown)\n").unwrap_or_else(|| panic!("{name}: no final M2"));
            got.push(format!(
                "{name}: {} bytes, fnv1a {:#018x}; {} bytes, fnv1a {:#018x}",
                before.len(),
                fnv1a(before),
                nc.len(),
                fnv1a(&nc)
            ));
            // To see what changed: SMP_GCODE_GOLDEN_DUMP=dir writes each program to dir, to diff.
            if let Some(dir) = std::env::var_os("SMP_GCODE_GOLDEN_DUMP") {
                let path = std::path::Path::new(&dir).join(format!("{}.nc", name.replace(' ', "_")));
                std::fs::write(&path, &nc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
        let want: Vec<String> = golden
            .iter()
            .map(|(name, _, len0, hash0, len, hash)| {
                format!("{name}: {len0} bytes, fnv1a {hash0:#018x}; {len} bytes, fnv1a {hash:#018x}")
            })
            .collect();
        assert_eq!(got, want);
    }

    /// The Marlin program of each profile is the grbl program with the dialect's lines
    /// changed and nothing else: the header, the modes one command a line, every dwell in
    /// `G4 S` seconds, no `M2`. Both verify, with the same figures.
    #[test]
    fn every_profile_compiles_both_dialects_alike() {
        let marlin_of = |grbl: &Program| -> Vec<ProgramLine> {
            let mut out = Vec::new();
            for l in &grbl.lines {
                let text = match l.text.as_str() {
                    "(dialect grbl)" => "(dialect marlin)".to_string(),
                    "M2" => continue,
                    "G21 G90 G94" => {
                        out.push(ProgramLine { text: "G21".into(), ..l.clone() });
                        "G90".to_string()
                    }
                    t => t.replacen("G4 P", "G4 S", 1),
                };
                out.push(ProgramLine { text, ..l.clone() });
            }
            out
        };
        let marlin = crate::compile::CompileOptions { dialect: Dialect::Marlin };
        for (name, c) in [("xyz", smp_testkit::synthetic_case(30)), ("xyzab", case5(30)), ("joints", case6(12))] {
            let g = compile(&c.plan, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{name}: {e}"));
            let m = crate::compile::compile_with(&c.plan, &c.rig, &c.base_from_head, &marlin)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(g.lines.last().map(|l| l.text.as_str()), Some("M2"), "{name}");
            assert!(g.lines.iter().any(|l| l.text.starts_with("G4 P")), "{name}");
            assert_eq!(m.lines, marlin_of(&g), "{name}");
            let vg = verify(g, &c.plan, &c.map, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{name}: {e}"));
            let vm = verify(m, &c.plan, &c.map, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((vg.report().dialect, vm.report().dialect), (Dialect::Grbl, Dialect::Marlin));
            assert_eq!(vg.report().dots, vm.report().dots, "{name}");
            assert!((vg.report().estimated_time_s - vm.report().estimated_time_s).abs() < 1e-9, "{name}");
        }
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

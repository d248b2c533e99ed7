//! Session plan -> G-code program. This file holds the `xyz` profile (vertical needle) and the
//! dispatch; `xyzab` and `joints` are in [`crate::tilted`].
//!
//! Every profile writes the controller's [`Dialect`] ([`CompileOptions::dialect`]; grbl by
//! default): its header records it (`(dialect grbl)`), the modal setup, the dwells and the
//! program end follow it. A grbl program ends, after the cartridge stop (`M5`) and the final
//! retract, with the program end `M2`, so that other interpreters (LinuxCNC's rs274) accept it;
//! grbl synchronises on `M2` (its `ok` comes once every move is done), stops the spindle and
//! says `[MSG:Pgm End]`. A Marlin program has no program end: Marlin has no `M2`.
//!
//! Every move is `G1` with an explicit feed: `G0` runs at the machine's maximum rate, which may
//! exceed the session's feed limit. Per dot: travel above it, descend to hover height if the
//! travel was higher, plunge, dwell (a `G4`, whose `ok` grbl only sends once the plunge has
//! finished), retract. The compiler trusts nothing the verifier would catch, but it fails
//! early on inputs that can only produce a rejected program (NaN, depth over the limit,
//! positions outside machine travel).

use nalgebra::{Isometry3, Point3};
use smp_core::plan::SessionPlan;
use smp_core::rig::{AxisProfile, Rig};
use thiserror::Error;

use crate::dialect::Dialect;
use crate::program::{fmt3, LineRole, Program, ProgramLine, MAX_NC_LINE_CHARS};

use smp_core::kinematics::{safe_z_mm, travel_z_mm};
pub use smp_core::kinematics::{MIN_SCALP_RADIUS_MM, SAFE_ABOVE_DOTS_MM};

/// A plan that cannot become a program; each variant names the dot or setting and the fix.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CompileError {
    #[error(
        "rig `{rig}` has axes profile `{profile}`; this compiler only handles `xyz` (vertical needle); \
         use an xyz rig or add a compiler for the profile"
    )]
    UnsupportedAxes { rig: String, profile: String },
    #[error("dot {dot_id}: `{field}` is {value}; the plan is corrupt, re-run the planner")]
    NonFinite { dot_id: u32, field: &'static str, value: f64 },
    #[error("session setting `{field}` is {value}; {problem}")]
    BadSetting { field: &'static str, value: f64, problem: &'static str },
    #[error("dot {dot_id}: depth {depth_mm} mm exceeds the session limit {limit_mm} mm; re-plan with a smaller depth")]
    DepthOverLimit { dot_id: u32, depth_mm: f64, limit_mm: f64 },
    #[error("dot {dot_id} appears twice in the plan; dot ids must be unique")]
    DuplicateDot { dot_id: u32 },
    #[error(
        "dot {dot_id}: machine position {position_mm:?} (base frame, mm) is outside the rig's travel; \
         check the head registration or the rig's soft limits"
    )]
    OutOfTravel { dot_id: u32, position_mm: [f64; 3] },
    #[error("line {line} would be {len} characters (limit {MAX_NC_LINE_CHARS}): `{text}`")]
    LineTooLong { line: usize, len: usize, text: String },
    #[error(
        "dot {dot_id}: the skin is tilted {tilt_deg:.1} deg from vertical, more than the {limit_deg:.1} deg a vertical \
         needle may enter (plan max_tilt_deg, rig xyz_max_tilt_deg); re-plan with the rig's limit, reposition the head, \
         or use an xyzab or joints rig"
    )]
    TooSteep { dot_id: u32, tilt_deg: f64, limit_deg: f64 },
    #[error("dot {dot_id}: normal {normal:?} is not a unit vector; the plan is corrupt, re-run the planner")]
    BadNormal { dot_id: u32, normal: [f64; 3] },
    #[error("rig `{rig}` has axes profile `{profile}` but no `[{table}]` table; add it to the rig file")]
    MissingRigTable { rig: String, profile: &'static str, table: &'static str },
    #[error(
        "dot {dot_id}: keeping the needle normal needs A {a_deg:.3} B {b_deg:.3} deg, outside the rig's rotary \
         limits; reposition the head or re-plan without that dot"
    )]
    RotaryLimit { dot_id: u32, a_deg: f64, b_deg: f64 },
    #[error("{}: no joint solution for the needle pose ({what}): {source}", dot_name(*.dot_id))]
    Ik { dot_id: Option<u32>, what: &'static str, source: smp_core::arm::IkError },
}

fn dot_name(id: Option<u32>) -> String {
    id.map_or_else(|| "program start/end".to_string(), |id| format!("dot {id}"))
}

/// The planner tests tilt at map-cell centres, so a dot may be this much steeper than its
/// cell; anything beyond is a plan the vertical needle cannot honour.
pub const XYZ_TILT_SLACK_DEG: f64 = 1.5;

/// Refuses dots whose skin is steeper (from base vertical) than the vertical needle allows.
fn check_xyz_tilt(plan: &SessionPlan, rig: &Rig, base_from_head: &Isometry3<f64>) -> Result<(), CompileError> {
    let limit = rig.xyz_max_tilt_deg.map_or(plan.limits.max_tilt_deg, |r| r.min(plan.limits.max_tilt_deg));
    if !limit.is_finite() {
        return Err(CompileError::BadSetting {
            field: "limits.max_tilt_deg",
            value: limit,
            problem: "it must be a finite angle in degrees",
        });
    }
    for dot in &plan.dots {
        let n = nalgebra::Vector3::from(dot.normal);
        if !(n.iter().all(|v| v.is_finite()) && (n.norm() - 1.0).abs() < 1e-3) {
            return Err(CompileError::BadNormal { dot_id: dot.id, normal: dot.normal });
        }
        let up = base_from_head.rotation * n;
        let tilt_deg = up.z.clamp(-1.0, 1.0).acos().to_degrees();
        if tilt_deg > limit + XYZ_TILT_SLACK_DEG {
            return Err(CompileError::TooSteep { dot_id: dot.id, tilt_deg, limit_deg: limit });
        }
    }
    Ok(())
}

/// A dot ready to emit: entry point in machine (= base) coordinates and plunge depth.
struct Target {
    id: u32,
    entry: [f64; 3],
    depth_mm: f64,
}

/// How to compile, beyond the plan and the rig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompileOptions {
    /// The controller firmware's G-code dialect (grbl by default).
    pub dialect: Dialect,
}

/// Compiles a session plan into a grbl program for the rig's axes profile: [`compile_with`]
/// with the default options.
pub fn compile(plan: &SessionPlan, rig: &Rig, base_from_head: &Isometry3<f64>) -> Result<Program, CompileError> {
    compile_with(plan, rig, base_from_head, &CompileOptions::default())
}

/// Compiles a session plan into a program in `options.dialect`.
///
/// Plan dots are in the head frame; `base_from_head` maps them to the base frame, whose
/// coordinates are the machine's in the `xyz` profile. Dots are emitted in plan order.
///
/// `xyzab` and `joints` rigs are compiled by [`crate::tilted`] (needle along the normal).
pub fn compile_with(
    plan: &SessionPlan,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    options: &CompileOptions,
) -> Result<Program, CompileError> {
    let dialect = options.dialect;
    match rig.axes {
        AxisProfile::Xyz => compile_xyz(plan, rig, base_from_head, dialect),
        AxisProfile::Xyzab => crate::tilted::xyzab_program(plan, rig, base_from_head, dialect),
        AxisProfile::Joints => crate::tilted::joints_program(plan, rig, base_from_head, dialect),
    }
}

/// The header every profile writes: session, limits, rig and profile, dialect, then the
/// dialect's modal setup (millimetres, absolute, feed per minute).
pub(crate) fn header(plan: &SessionPlan, rig: &Rig, n_dots: usize, dialect: Dialect) -> Vec<ProgramLine> {
    let setup = |text: String| ProgramLine { text, dot_id: None, role: LineRole::Setup };
    let units = if rig.axes == AxisProfile::Xyz { "mm" } else { "mm deg" };
    let profile = profile_name(rig.axes);
    let mut lines = vec![
        setup(format!("(smp session {}, {} dots, generated by smp)", plan.session, n_dots)),
        setup(format!(
            "(limits: depth {} mm, feed {} mm/min)",
            fmt3(plan.limits.depth_limit_mm),
            fmt3(plan.limits.max_feed_mm_per_min)
        )),
        setup(format!("(rig {}, profile {profile}, units {units})", rig_comment_name(rig))),
        setup(dialect.header()),
    ];
    lines.extend(dialect.modal_setup().iter().map(|t| setup(t.to_string())));
    lines
}

/// The dialect's program end after the shutdown lines (`M2` for grbl, nothing for Marlin).
pub(crate) fn push_program_end(lines: &mut Vec<ProgramLine>, dialect: Dialect) {
    if let Some(end) = dialect.program_end() {
        lines.push(ProgramLine { text: end.to_string(), dot_id: None, role: LineRole::Shutdown });
    }
}

/// Session settings every profile needs: positive finite feeds under the limit and so on.
pub(crate) fn check_settings(plan: &SessionPlan) -> Result<(), CompileError> {
    let spec = &plan.spec;
    let check = |field: &'static str, value: f64, positive: bool| {
        if !value.is_finite() || value < 0.0 || (positive && value == 0.0) {
            Err(CompileError::BadSetting {
                field,
                value,
                problem: if positive {
                    "it must be a positive finite number"
                } else {
                    "it must be a finite number >= 0"
                },
            })
        } else {
            Ok(())
        }
    };
    check("spec.hover_mm", spec.hover_mm, true)?;
    check("spec.dwell_s", spec.dwell_s, false)?;
    check("spec.cartridge_rpm", spec.cartridge_rpm, true)?;
    check("limits.depth_limit_mm", plan.limits.depth_limit_mm, true)?;
    check("limits.max_feed_mm_per_min", plan.limits.max_feed_mm_per_min, true)?;
    for (field, feed) in [
        ("spec.travel_feed_mm_per_min", spec.travel_feed_mm_per_min),
        ("spec.plunge_feed_mm_per_min", spec.plunge_feed_mm_per_min),
        ("spec.retract_feed_mm_per_min", spec.retract_feed_mm_per_min),
    ] {
        check(field, feed, true)?;
        if feed > plan.limits.max_feed_mm_per_min {
            return Err(CompileError::BadSetting {
                field,
                value: feed,
                problem: "it exceeds limits.max_feed_mm_per_min; lower it in the session spec",
            });
        }
    }
    Ok(())
}

fn compile_xyz(
    plan: &SessionPlan,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    dialect: Dialect,
) -> Result<Program, CompileError> {
    let spec = &plan.spec;
    check_settings(plan)?;
    check_xyz_tilt(plan, rig, base_from_head)?;
    let targets = targets(plan, rig, base_from_head)?;
    let hover = spec.hover_mm;
    let z_limit = rig.dynamics.z.max_mm;
    let top_entry = targets.iter().map(|t| t.entry[2]).fold(f64::NEG_INFINITY, f64::max);
    let safe_z = if targets.is_empty() { z_limit } else { safe_z_mm(top_entry, z_limit) };
    if let Some(t) = targets.iter().find(|t| t.entry[2] + hover > safe_z) {
        return Err(CompileError::OutOfTravel {
            dot_id: t.id,
            position_mm: [t.entry[0], t.entry[1], t.entry[2] + hover],
        });
    }

    let travel_f = fmt3(spec.travel_feed_mm_per_min);
    let plunge_f = fmt3(spec.plunge_feed_mm_per_min);
    let retract_f = fmt3(spec.retract_feed_mm_per_min);
    let mut lines = Vec::with_capacity(targets.len() * 5 + 12);
    let setup = |text: String| ProgramLine { text, dot_id: None, role: LineRole::Setup };
    lines.extend(header(plan, rig, targets.len(), dialect));
    lines.push(setup(format!("G1 Z{} F{travel_f}", fmt3(safe_z))));
    lines.push(setup(format!("M3 S{}", fmt3(spec.cartridge_rpm))));

    let mut prev: Option<&Target> = None;
    for t in &targets {
        let [x, y, z] = t.entry;
        let hover_z = z + hover;
        let travel_z = match prev {
            None => safe_z,
            Some(p) => travel_z_mm(p.entry, t.entry, hover, safe_z),
        };
        let dot = |text: String, role| ProgramLine { text, dot_id: Some(t.id), role };
        lines.push(dot(format!("G1 X{} Y{} Z{} F{travel_f}", fmt3(x), fmt3(y), fmt3(travel_z)), LineRole::Travel));
        if fmt3(travel_z) != fmt3(hover_z) {
            lines.push(dot(format!("G1 Z{} F{travel_f}", fmt3(hover_z)), LineRole::Approach));
        }
        lines.push(dot(format!("G1 Z{} F{plunge_f}", fmt3(z - t.depth_mm)), LineRole::Plunge));
        lines.push(dot(dialect.dwell(spec.dwell_s), LineRole::Dwell));
        lines.push(dot(format!("G1 Z{} F{retract_f}", fmt3(hover_z)), LineRole::Retract));
        prev = Some(t);
    }
    lines.push(ProgramLine { text: "M5".to_string(), dot_id: None, role: LineRole::Shutdown });
    lines.push(ProgramLine {
        text: format!("G1 Z{} F{travel_f}", fmt3(safe_z)),
        dot_id: None,
        role: LineRole::Shutdown,
    });
    push_program_end(&mut lines, dialect);

    for (i, l) in lines.iter().enumerate() {
        let nc = l.to_nc_line();
        if nc.len() > MAX_NC_LINE_CHARS {
            return Err(CompileError::LineTooLong { line: i + 1, len: nc.len(), text: nc });
        }
    }
    Ok(Program { session: plan.session, lines })
}

/// The checks every profile makes on each dot before compiling it: finite coordinates, depth
/// within the session limit, no id twice. Calls `f` on each dot that passes.
pub(crate) fn checked_dots<T>(
    plan: &SessionPlan,
    mut f: impl FnMut(&smp_core::plan::PlannedDot) -> Result<T, CompileError>,
) -> Result<Vec<T>, CompileError> {
    let mut seen = std::collections::HashSet::with_capacity(plan.dots.len());
    let mut out = Vec::with_capacity(plan.dots.len());
    for dot in &plan.dots {
        for (field, value) in [("x_mm", dot.x_mm), ("y_mm", dot.y_mm), ("z_mm", dot.z_mm), ("depth_mm", dot.depth_mm)] {
            if !value.is_finite() {
                return Err(CompileError::NonFinite { dot_id: dot.id, field, value });
            }
        }
        if dot.depth_mm > plan.limits.depth_limit_mm || dot.depth_mm < 0.0 {
            return Err(CompileError::DepthOverLimit {
                dot_id: dot.id,
                depth_mm: dot.depth_mm,
                limit_mm: plan.limits.depth_limit_mm,
            });
        }
        if !seen.insert(dot.id) {
            return Err(CompileError::DuplicateDot { dot_id: dot.id });
        }
        out.push(f(dot)?);
    }
    Ok(out)
}

/// Entry points in machine coordinates, with every per-dot check the compiler makes.
fn targets(plan: &SessionPlan, rig: &Rig, base_from_head: &Isometry3<f64>) -> Result<Vec<Target>, CompileError> {
    checked_dots(plan, |dot| {
        let p = base_from_head * Point3::new(dot.x_mm, dot.y_mm, dot.z_mm);
        let entry = [p.x, p.y, p.z];
        let bottom = [p.x, p.y, p.z - dot.depth_mm];
        let top = [p.x, p.y, p.z + plan.spec.hover_mm];
        if !rig.dynamics.within_travel(bottom) || !rig.dynamics.within_travel(top) {
            return Err(CompileError::OutOfTravel { dot_id: dot.id, position_mm: entry });
        }
        Ok(Target { id: dot.id, entry, depth_mm: dot.depth_mm })
    })
}

pub(crate) fn profile_name(p: AxisProfile) -> &'static str {
    match p {
        AxisProfile::Xyz => "xyz",
        AxisProfile::Xyzab => "xyzab",
        AxisProfile::Joints => "joints",
    }
}

/// The rig's name as the header comment `(rig NAME, profile P, units U)` writes it: made safe
/// for a comment and cut to fit the line (40 characters, 36 for the tilting profiles).
pub(crate) fn rig_comment_name(rig: &Rig) -> String {
    sanitize_comment(&rig.name, if rig.axes == AxisProfile::Xyz { 40 } else { 36 })
}

/// Keeps a name safe inside a G-code comment: printable ASCII, no parentheses, no grbl
/// realtime characters (`?`, `!`, `~`), at most `max` characters.
pub(crate) fn sanitize_comment(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() && !"()?!~;".contains(c) || c == ' ' { c } else { '_' })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smp_testkit::{synthetic_case, SyntheticCase};

    #[test]
    fn program_shape_for_two_dots() {
        let SyntheticCase { plan, rig, base_from_head, .. } = synthetic_case(2);
        let p = compile(&plan, &rig, &base_from_head).expect("compiles");
        let nc = p.to_nc();
        assert!(nc.starts_with("(smp session 1, 2 dots, generated by smp)\n"), "{nc}");
        let texts: Vec<&str> = p.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts[2], "(rig sim-xyz-default, profile xyz, units mm)");
        assert_eq!(texts[3], "(dialect grbl)");
        assert_eq!(texts[4], "G21 G90 G94");
        assert!(texts[5].starts_with("G1 Z"));
        assert!(texts[6].starts_with("M3 S"));
        // Cartridge stop, final rise, program end.
        assert_eq!(texts[texts.len() - 3], "M5");
        assert!(texts[texts.len() - 2].starts_with("G1 Z"));
        assert_eq!(texts[texts.len() - 1], "M2");
        assert_eq!(p.lines.last().map(|l| l.role), Some(LineRole::Shutdown));
        assert!(nc.ends_with("M2 (shutdown)\n"), "{nc}");
        assert!(!nc.contains("G0"), "never G0: {nc}");
        assert!(!nc.contains("-0.000"), "{nc}");
        for l in nc.lines() {
            assert!(l.len() <= MAX_NC_LINE_CHARS, "{l}");
        }
        let roles: Vec<LineRole> =
            p.lines.iter().filter(|l| l.dot_id == Some(plan.dots[0].id)).map(|l| l.role).collect();
        assert_eq!(roles, [LineRole::Travel, LineRole::Approach, LineRole::Plunge, LineRole::Dwell, LineRole::Retract]);
        // The plunge goes to the entry point minus the depth, in the base frame.
        let d = &plan.dots[0];
        let e = base_from_head * Point3::new(d.x_mm, d.y_mm, d.z_mm);
        let plunge = p.lines.iter().find(|l| l.role == LineRole::Plunge).expect("a plunge");
        assert_eq!(plunge.text, format!("G1 Z{} F{}", fmt3(e.z - d.depth_mm), fmt3(plan.spec.plunge_feed_mm_per_min)));
    }

    #[test]
    fn nan_names_the_dot() {
        let SyntheticCase { mut plan, rig, base_from_head, .. } = synthetic_case(5);
        plan.dots[3].y_mm = f64::NAN;
        let id = plan.dots[3].id;
        let err = compile(&plan, &rig, &base_from_head).expect_err("NaN rejected");
        assert!(
            matches!(err, CompileError::NonFinite { dot_id, field: "y_mm", value } if dot_id == id && value.is_nan())
        );
        assert!(err.to_string().contains(&format!("dot {id}")), "{err}");
    }

    #[test]
    fn other_profiles_need_their_rig_tables() {
        let SyntheticCase { plan, mut rig, base_from_head, .. } = synthetic_case(1);
        rig.axes = AxisProfile::Xyzab;
        let err = compile(&plan, &rig, &base_from_head).expect_err("refused");
        assert!(matches!(err, CompileError::MissingRigTable { profile: "xyzab", table: "five_axis", .. }), "{err}");
        assert!(err.to_string().contains("xyzab"));
        rig.axes = AxisProfile::Joints;
        let err = compile(&plan, &rig, &base_from_head).expect_err("refused");
        assert!(matches!(err, CompileError::MissingRigTable { table: "arm", .. }), "{err}");
    }

    #[test]
    fn too_steep_dot_is_named() {
        let SyntheticCase { mut plan, rig, base_from_head, .. } = synthetic_case(20);
        // Dot 1007's normal tilted 60 deg from base vertical, towards base +x.
        let up = nalgebra::Vector3::new(60f64.to_radians().sin(), 0.0, 60f64.to_radians().cos());
        let n = base_from_head.rotation.inverse() * up;
        plan.dots[7].normal = [n.x, n.y, n.z];
        let err = compile(&plan, &rig, &base_from_head).expect_err("too steep");
        assert!(matches!(err, CompileError::TooSteep { dot_id: 1007, .. }), "{err}");
        assert!(err.to_string().contains("dot 1007") && err.to_string().contains("60.0 deg"), "{err}");
        // A rig limit below the plan's applies too.
        let SyntheticCase { plan, mut rig, base_from_head, .. } = synthetic_case(20);
        rig.xyz_max_tilt_deg = Some(0.5);
        assert!(matches!(compile(&plan, &rig, &base_from_head), Err(CompileError::TooSteep { .. })));
    }

    #[test]
    fn synthetic_plan_is_within_the_vertical_needle_tilt() {
        let SyntheticCase { plan, rig, base_from_head, .. } = synthetic_case(5000);
        let worst = plan
            .dots
            .iter()
            .map(|d| (base_from_head.rotation * nalgebra::Vector3::from(d.normal)).z.acos().to_degrees())
            .fold(0.0, f64::max);
        assert!(worst <= plan.limits.max_tilt_deg, "worst tilt {worst}");
        compile(&plan, &rig, &base_from_head).expect("compiles");
    }
}

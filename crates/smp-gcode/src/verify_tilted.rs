//! The verifier for the profiles that tilt the needle (`xyzab`, `joints`).
//!
//! Like the `xyz` verifier it re-reads the G-code text with its own modal interpreter (G1 G4
//! G21 G90 G94 M3 M5 F S P and the profile's axis words; `G0` is refused because it runs at
//! the machine's maximum rate) and never trusts the compiler. Each motion line is
//! interpolated as the controller does (X Y Z A B linearly with RTCP for `xyzab`; joints
//! linearly for `joints`, the tip then following forward kinematics), sampled every
//! [`SAMPLE_STEP_MM`] of tip travel, and each sample's tip and needle direction are checked
//! against the scan's surface:
//!
//! - depth along the needle (from the tip back to where the needle's axis crosses the skin)
//!   never beyond the session's limit;
//! - in the skin only inside the treatment mask, with the cartridge running, with the needle
//!   within [`NORMAL_TOLERANCE_DEG`] of the skin's inward normal (`NotNormal`) and moving along
//!   its own axis within the same angle (`DragUnderSkin`);
//! - outside the surface's domain, the tip at or above the clearance height;
//! - feeds: `xyzab` tip feed F (mm/min) under the session limit and A/B rates under the rig's;
//!   `joints` the tip's peak speed (forward kinematics, finite differences over the samples)
//!   under the session limit and every joint's rate under its limit;
//! - positions: X Y Z inside the soft limits and A B inside theirs (`xyzab`); every joint
//!   inside its limits and the tip inside the rig's workspace box (`joints`);
//! - every planned dot entered exactly once within [`DOT_MATCH_TILTED_MM`] (3-D, base frame)
//!   and the executor's metadata (plunge line tagged with its dot, followed by its `G4`).

use std::collections::BTreeMap;

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::arm::{needle_direction_ab, Arm, FiveAxisSpec, ARM_JOINTS};
use smp_core::geometry::SurfacePatch;
use smp_core::map::{CellGrid, ScalpMap};
use smp_core::plan::SessionPlan;
use smp_core::rig::{AxisProfile, Rig};

use crate::compile::profile_name;
use crate::program::{LineRole, Program};
use crate::tilted::NORMAL_TOLERANCE_DEG;
use crate::verify::{
    at_line, finish, read_move, tokenize, Modal, Motion, PlannedDots, VerifiedProgram, VerifyError, Violation,
    ViolationKind, WalkFigures, CLEARANCE_MARGIN_MM, SAMPLE_STEP_MM,
};

/// A skin entry counts as a planned dot's plunge within this 3-D distance, mm: joint
/// interpolation and 4-decimal joint words move the tip by a few micrometres.
pub const DOT_MATCH_TILTED_MM: f64 = 0.05;
/// How far back along the needle the verifier looks for the skin crossing, mm.
const MAX_NEEDLE_IN_SKIN_MM: f64 = 20.0;

/// The machine model of the program's axis words.
enum Model {
    Ab(FiveAxisSpec),
    Arm(Box<Arm>),
}

impl Model {
    fn letters(&self) -> &'static [char] {
        match self {
            Model::Ab(_) => &['X', 'Y', 'Z', 'A', 'B'],
            Model::Arm(_) => &['X', 'Y', 'Z', 'A', 'B', 'C'],
        }
    }

    /// Tip and pointing direction (base frame) of a full machine state.
    fn pose(&self, s: &[f64; ARM_JOINTS]) -> (Point3<f64>, Vector3<f64>) {
        match self {
            Model::Ab(_) => (Point3::new(s[0], s[1], s[2]), needle_direction_ab(s[3], s[4])),
            Model::Arm(arm) => {
                let q: [f64; ARM_JOINTS] = std::array::from_fn(|i| s[i].to_radians());
                let t = arm.base_from_needle(&q);
                (Point3::from(t.translation.vector), t.rotation * Vector3::new(0.0, 0.0, -1.0))
            }
        }
    }
}

/// The scan's surface seen from the base frame.
struct SkinT<'a> {
    patch: &'a SurfacePatch,
    patch_from_base: Isometry3<f64>,
    base_from_patch: Isometry3<f64>,
    clearance_z: f64,
}

/// Where the needle's axis crosses the skin, for a tip in the skin.
struct Crossing {
    depth_mm: f64,
    patch_x: f64,
    patch_y: f64,
    /// Inward normal of the skin there, base frame.
    inward: Vector3<f64>,
}

impl<'a> SkinT<'a> {
    fn new(patch: &'a SurfacePatch, base_from_head: &Isometry3<f64>) -> Self {
        let base_from_patch = base_from_head * patch.head_from_patch;
        const N: usize = 64;
        let mut zmax = f64::NEG_INFINITY;
        for j in 0..=N {
            for i in 0..=N {
                let x = patch.x_range_mm[0] + (patch.x_range_mm[1] - patch.x_range_mm[0]) * i as f64 / N as f64;
                let y = patch.y_range_mm[0] + (patch.y_range_mm[1] - patch.y_range_mm[0]) * j as f64 / N as f64;
                zmax = zmax.max((base_from_patch * patch.point_patch(x, y)).z);
            }
        }
        SkinT {
            patch,
            patch_from_base: base_from_patch.inverse(),
            base_from_patch,
            clearance_z: zmax + CLEARANCE_MARGIN_MM,
        }
    }

    /// Height of a base point above the surface along the patch's z; `None` outside the domain.
    fn gap(&self, p: &Point3<f64>) -> Option<f64> {
        let q = self.patch_from_base * p;
        self.patch.contains_xy(q.x, q.y).then(|| q.z - self.patch.height(q.x, q.y))
    }

    /// For a tip below the skin: distance back along the needle (against `dir`) to the skin.
    fn crossing(&self, tip: &Point3<f64>, dir: &Vector3<f64>) -> Option<Crossing> {
        let back = -dir.normalize();
        let g = |t: f64| self.gap(&(tip + back * t));
        let step = 0.05;
        let mut t0 = 0.0;
        let mut t = step;
        while t <= MAX_NEEDLE_IN_SKIN_MM {
            match g(t) {
                None => return None,
                Some(v) if v >= 0.0 => {
                    let (mut lo, mut hi) = (t0, t);
                    for _ in 0..40 {
                        let mid = 0.5 * (lo + hi);
                        if g(mid).is_some_and(|v| v >= 0.0) {
                            hi = mid;
                        } else {
                            lo = mid;
                        }
                    }
                    let c = tip + back * hi;
                    let q = self.patch_from_base * c;
                    let inward = -(self.base_from_patch.rotation * self.patch.normal_patch(q.x, q.y));
                    return Some(Crossing { depth_mm: hi, patch_x: q.x, patch_y: q.y, inward });
                }
                Some(_) => {}
            }
            t0 = t;
            t += step;
        }
        None
    }
}

#[derive(Default)]
struct LineFindings {
    worst_depth_mm: Option<f64>,
    worst_below_clearance_mm: Option<f64>,
    worst_normal_deg: Option<f64>,
    worst_drag_deg: Option<f64>,
    outside_mask: bool,
    cartridge_off: bool,
    no_crossing: bool,
}

fn worst(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.map_or(v, |w| w.max(v)));
}

struct Entry {
    line: usize,
    point: Point3<f64>,
}

struct Tracer<'a> {
    skin: SkinT<'a>,
    treatment: &'a CellGrid,
    depth_limit_mm: f64,
    below: bool,
    max_depth_mm: f64,
    entries: Vec<Entry>,
}

impl Tracer<'_> {
    fn check(
        &mut self,
        tip: &Point3<f64>,
        dir: &Vector3<f64>,
        motion: Option<Vector3<f64>>,
        cartridge_on: bool,
        line: usize,
        f: &mut LineFindings,
    ) {
        match self.skin.gap(tip) {
            None => {
                self.below = false;
                let deficit = self.skin.clearance_z - tip.z;
                if deficit > 1e-9 {
                    worst(&mut f.worst_below_clearance_mm, deficit);
                }
            }
            Some(g) if g >= 0.0 => self.below = false,
            Some(_) => {
                f.cartridge_off |= !cartridge_on;
                if let Some(m) = motion {
                    let cos = (m.dot(dir) / (m.norm() * dir.norm())).abs().clamp(-1.0, 1.0);
                    let deg = cos.acos().to_degrees();
                    if deg > NORMAL_TOLERANCE_DEG {
                        worst(&mut f.worst_drag_deg, deg);
                    }
                }
                match self.skin.crossing(tip, dir) {
                    None => {
                        f.no_crossing = true;
                        self.max_depth_mm = f64::INFINITY;
                    }
                    Some(c) => {
                        self.max_depth_mm = self.max_depth_mm.max(c.depth_mm);
                        if c.depth_mm > self.depth_limit_mm + 1e-9 {
                            worst(&mut f.worst_depth_mm, c.depth_mm);
                        }
                        if self.treatment.code_at(c.patch_x, c.patch_y) != '#' {
                            f.outside_mask = true;
                        }
                        let cos = (dir.normalize().dot(&c.inward)).clamp(-1.0, 1.0);
                        let deg = cos.acos().to_degrees();
                        if deg > NORMAL_TOLERANCE_DEG {
                            worst(&mut f.worst_normal_deg, deg);
                        }
                        if !self.below {
                            let point = tip - dir.normalize() * c.depth_mm;
                            self.entries.push(Entry { line, point });
                        }
                    }
                }
                self.below = true;
            }
        }
    }
}

/// Verifies a program for an `xyzab` or `joints` rig; called by [`crate::verify::verify`].
pub(crate) fn verify_tilted(
    program: Program,
    plan: &SessionPlan,
    map: &ScalpMap,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
) -> Result<VerifiedProgram, VerifyError> {
    let unsupported = || VerifyError::UnsupportedAxes { rig: rig.name.clone(), profile: profile_name(rig.axes).into() };
    let model = match rig.axes {
        AxisProfile::Xyzab => Model::Ab(rig.five_axis.ok_or_else(unsupported)?),
        AxisProfile::Joints => Model::Arm(Box::new(rig.arm_model().ok_or_else(unsupported)?)),
        AxisProfile::Xyz => return Err(unsupported()),
    };
    crate::verify::check_rig(&program, rig)?;
    crate::verify::check_inputs(plan, map, base_from_head)?;
    let limits = plan.limits;
    let planned =
        PlannedDots::new(crate::verify::planned_base(plan, base_from_head)?, DOT_MATCH_TILTED_MM, |p| [p.x, p.y, p.z]);

    let letters = model.letters();
    let n_axes = letters.len();
    let mut tracer = Tracer {
        skin: SkinT::new(&map.surface, base_from_head),
        treatment: &plan.treatment,
        depth_limit_mm: limits.depth_limit_mm,
        below: false,
        max_depth_mm: 0.0,
        entries: Vec::new(),
    };
    let clearance_z = tracer.skin.clearance_z;
    let mut violations: Vec<Violation> = Vec::new();
    let dialect = crate::verify::read_dialect(&program, &mut violations);
    let mut push = |line: usize, kind: ViolationKind, detail: String| {
        violations.push(at_line(&program, line, kind, detail));
    };

    let mut pos: [Option<f64>; ARM_JOINTS] = [None; ARM_JOINTS];
    for p in pos.iter_mut().skip(n_axes) {
        *p = Some(0.0);
    }
    let mut modal = Modal::new(dialect);
    let mut max_feed = 0.0f64;
    let mut move_time_s = 0.0;

    for (idx, pl) in program.lines.iter().enumerate() {
        let line = idx + 1;
        let Some(block) = read_move(&pl.text, letters, &mut modal, |kind, detail| push(line, kind, detail)) else {
            continue;
        };
        if block.motion != Some(Motion::Linear) {
            // grbl keeps G1 modal, but the program must say so: G0 or an implicit mode would run
            // at the machine's maximum rate.
            push(
                line,
                ViolationKind::FeedTooHigh,
                "motion without `G1` (G0 or modal rapid) runs at the machine's maximum rate; use G1 with F".into(),
            );
        }
        let Some(f) = modal.feed_mm_per_min else {
            push(line, ViolationKind::FeedNotSet, "G1 with no feed rate set".into());
            continue;
        };
        let target: [Option<f64>; ARM_JOINTS] = std::array::from_fn(|i| block.axes[i].or(pos[i]));

        // Limits of what is known of the target.
        match &model {
            Model::Ab(five) => {
                let outside: Vec<&str> = ["X", "Y", "Z"]
                    .iter()
                    .zip(rig.dynamics.axes())
                    .zip(target)
                    .filter(|((_, lim), v)| v.is_some_and(|v| v < lim.min_mm - 1e-9 || v > lim.max_mm + 1e-9))
                    .map(|((n, _), _)| *n)
                    .collect();
                if !outside.is_empty() {
                    push(
                        line,
                        ViolationKind::OutOfTravel,
                        format!("target {} outside the machine's travel", outside.join(" ")),
                    );
                }
                for (name, ax, v) in [("A", five.a, target[3]), ("B", five.b, target[4])] {
                    if let Some(v) = v {
                        if v < ax.min_deg - 1e-9 || v > ax.max_deg + 1e-9 {
                            push(
                                line,
                                ViolationKind::JointLimit,
                                format!(
                                    "{name}{v:.3} outside the rotary's limits [{}, {}] deg",
                                    ax.min_deg, ax.max_deg
                                ),
                            );
                        }
                    }
                }
            }
            Model::Arm(arm) => {
                for (i, (j, v)) in arm.joints().iter().zip(target).enumerate() {
                    if let Some(v) = v {
                        if v < j.min_deg - 1e-9 || v > j.max_deg + 1e-9 {
                            push(
                                line,
                                ViolationKind::JointLimit,
                                format!(
                                    "joint J{} ({}) at {v:.4} deg outside [{}, {}] deg",
                                    i + 1,
                                    letters[i],
                                    j.min_deg,
                                    j.max_deg
                                ),
                            );
                        }
                    }
                }
            }
        }

        let cartridge_on = modal.cartridge_on();
        let mut findings = LineFindings::default();
        let full = |s: [Option<f64>; ARM_JOINTS]| -> Option<[f64; ARM_JOINTS]> {
            s.iter().all(Option::is_some).then(|| std::array::from_fn(|i| s[i].unwrap_or(0.0)))
        };
        match (full(pos), full(target)) {
            (Some(a), Some(b)) => {
                let (tip_a, _) = model.pose(&a);
                let (tip_b, _) = model.pose(&b);
                if matches!(model, Model::Arm(_)) && !rig.dynamics.within_travel([tip_b.x, tip_b.y, tip_b.z]) {
                    push(
                        line,
                        ViolationKind::OutOfTravel,
                        format!(
                            "tip at ({:.3}, {:.3}, {:.3}) outside the rig's workspace box",
                            tip_b.x, tip_b.y, tip_b.z
                        ),
                    );
                }
                let chord = (tip_b - tip_a).norm();
                let max_turn = (0..n_axes).skip(3).map(|i| (b[i] - a[i]).abs()).fold(0.0, f64::max);
                let max_joint = (0..n_axes).map(|i| (b[i] - a[i]).abs()).fold(0.0, f64::max);
                let n = match model {
                    Model::Ab(_) => (chord / SAMPLE_STEP_MM).max(max_turn / 0.5).ceil().max(1.0) as usize,
                    Model::Arm(_) => (chord / SAMPLE_STEP_MM).max(max_joint / 0.05).ceil().max(1.0) as usize,
                };
                // Minutes the move takes, and the rates it implies.
                let minutes = match &model {
                    Model::Ab(five) => {
                        let rot = ((b[3] - a[3]).powi(2) + (b[4] - a[4]).powi(2)).sqrt();
                        let minutes = if chord > 1e-9 {
                            if f > limits.max_feed_mm_per_min + 1e-9 {
                                push(
                                    line,
                                    ViolationKind::FeedTooHigh,
                                    format!(
                                        "tip feed {f} mm/min is above the session limit {} mm/min",
                                        limits.max_feed_mm_per_min
                                    ),
                                );
                            }
                            max_feed = max_feed.max(f);
                            chord / f
                        } else {
                            rot / f
                        };
                        for (name, ax, d) in [("A", five.a, b[3] - a[3]), ("B", five.b, b[4] - a[4])] {
                            let rate = d.abs() / minutes.max(1e-300);
                            if d.abs() > 1e-9 && rate > ax.max_rate_deg_per_min * (1.0 + 1e-6) {
                                push(
                                    line,
                                    ViolationKind::JointLimit,
                                    format!(
                                        "{name} turns at {rate:.1} deg/min, above its limit {} deg/min",
                                        ax.max_rate_deg_per_min
                                    ),
                                );
                            }
                        }
                        minutes
                    }
                    Model::Arm(arm) => {
                        let norm = (0..n_axes).map(|i| (b[i] - a[i]).powi(2)).sum::<f64>().sqrt();
                        let minutes = norm / f;
                        for (i, j) in arm.joints().iter().enumerate() {
                            let d = (b[i] - a[i]).abs();
                            let rate = d / minutes.max(1e-300);
                            if d > 1e-9 && rate > j.max_rate_deg_per_s * 60.0 * (1.0 + 1e-6) {
                                push(
                                    line,
                                    ViolationKind::JointLimit,
                                    format!(
                                        "joint J{} turns at {:.2} deg/s, above its limit {} deg/s",
                                        i + 1,
                                        rate / 60.0,
                                        j.max_rate_deg_per_s
                                    ),
                                );
                            }
                        }
                        minutes
                    }
                };
                move_time_s += minutes * 60.0;
                let mut prev_tip = tip_a;
                let mut peak_mm = 0.0f64;
                for k in 1..=n {
                    let t = k as f64 / n as f64;
                    let s: [f64; ARM_JOINTS] = std::array::from_fn(|i| a[i] + (b[i] - a[i]) * t);
                    let (tip, dir) = model.pose(&s);
                    let step = tip - prev_tip;
                    peak_mm = peak_mm.max(step.norm());
                    let motion = (step.norm() > 1e-9).then_some(step);
                    tracer.check(&tip, &dir, motion, cartridge_on, line, &mut findings);
                    prev_tip = tip;
                }
                if let Model::Arm(_) = model {
                    let peak_speed = peak_mm * n as f64 / minutes.max(1e-300);
                    if chord > 1e-9 {
                        max_feed = max_feed.max(peak_speed);
                    }
                    if peak_speed > limits.max_feed_mm_per_min * (1.0 + 1e-6) {
                        push(
                            line,
                            ViolationKind::FeedTooHigh,
                            format!(
                                "tip reaches {peak_speed:.1} mm/min (forward kinematics), above the session limit {} mm/min",
                                limits.max_feed_mm_per_min
                            ),
                        );
                    }
                }
            }
            (_, Some(b)) => {
                // From an unknown pose: only a move that ends high, from high, is accepted.
                let (tip_b, _) = model.pose(&b);
                let start_high = pos[2].is_some_and(|z| z >= clearance_z) || matches!(model, Model::Arm(_));
                if !(tip_b.z >= clearance_z && start_high) {
                    push(
                        line,
                        ViolationKind::UnknownPosition,
                        format!("moves from an unknown position; the first moves must end at the clearance height Z{clearance_z:.3} or above"),
                    );
                }
                tracer.below = false;
            }
            (_, None) => {
                let z_only = (0..n_axes).all(|i| i == 2 || block.axes[i].is_none());
                let ok = matches!(model, Model::Ab(_)) && z_only && target[2].is_some_and(|z| z >= clearance_z);
                if !ok {
                    push(
                        line,
                        ViolationKind::UnknownPosition,
                        format!("moves from an unknown position; the first move must rise straight to Z{clearance_z:.3} or above"),
                    );
                }
                tracer.below = false;
            }
        }
        pos = target;

        if let Some(d) = findings.worst_depth_mm {
            push(
                line,
                ViolationKind::TooDeep,
                format!("needle {d:.3} mm into the skin along its axis, limit {} mm", limits.depth_limit_mm),
            );
        }
        if findings.no_crossing {
            push(
                line,
                ViolationKind::TooDeep,
                format!(
                    "tip in the skin with no skin crossing within {MAX_NEEDLE_IN_SKIN_MM} mm back along the needle"
                ),
            );
        }
        if findings.outside_mask {
            push(line, ViolationKind::SkinOutsideMask, "needle in the skin outside the treatment mask".into());
        }
        if findings.cartridge_off {
            push(
                line,
                ViolationKind::SkinWithCartridgeOff,
                "tip below the skin with the cartridge off (M5 or S0)".into(),
            );
        }
        if let Some(d) = findings.worst_normal_deg {
            push(
                line,
                ViolationKind::NotNormal,
                format!("needle {d:.2} deg off the skin's normal in the skin (tolerance {NORMAL_TOLERANCE_DEG} deg)"),
            );
        }
        if let Some(d) = findings.worst_drag_deg {
            push(
                line,
                ViolationKind::DragUnderSkin,
                format!(
                    "tip moves {d:.2} deg off the needle's axis in the skin (tolerance {NORMAL_TOLERANCE_DEG} deg)"
                ),
            );
        }
        if let Some(d) = findings.worst_below_clearance_mm {
            push(
                line,
                ViolationKind::BelowClearance,
                format!("tip {d:.3} mm below the clearance height Z{clearance_z:.3} where the map has no surface"),
            );
        }
    }

    let entries = tracer.entries.iter().map(|e| (e.line, e.point));
    let (count, plunge_of) = planned.match_entries(&program, entries, &mut violations);
    let figures = WalkFigures {
        max_depth_mm: tracer.max_depth_mm,
        max_feed_mm_per_min: max_feed,
        estimated_time_s: move_time_s + modal.dwell_s,
        clearance_z_mm: clearance_z,
        dialect,
    };
    finish(program, plan, &count, &plunge_of, violations, figures)
}

/// The executor's metadata must say what the text does: each plunge line tagged with the dot
/// it enters and followed by a `G4` tagged with the same dot; no other line claims either.
/// Shared by every profile's verifier.
pub(crate) fn check_metadata(program: &Program, plunge_of: &BTreeMap<usize, u32>, violations: &mut Vec<Violation>) {
    let is_code = |i: usize| tokenize(&program.lines[i].text).map(|w| !w.is_empty()).unwrap_or(true);
    let mut dwell_of: BTreeMap<usize, u32> = BTreeMap::new();
    for (&line, &id) in plunge_of {
        let next = (line..program.lines.len()).find(|&i| is_code(i));
        let is_dwell = next.is_some_and(|i| {
            tokenize(&program.lines[i].text).is_ok_and(|w| w.iter().any(|w| w.letter == 'G' && w.value == 4.0))
        });
        match next {
            Some(i) if is_dwell => {
                dwell_of.insert(i + 1, id);
            }
            _ => violations.push(Violation {
                line: Some(line),
                text: program.lines[line - 1].text.clone(),
                kind: ViolationKind::MetadataMismatch,
                detail: format!(
                    "plunge of dot {id} is not followed by a G4 dwell, so its execution cannot be confirmed"
                ),
            }),
        }
    }
    for (idx, pl) in program.lines.iter().enumerate() {
        let line = idx + 1;
        let expected = match (plunge_of.get(&line), dwell_of.get(&line)) {
            (Some(&id), _) => Some((id, LineRole::Plunge)),
            (None, Some(&id)) => Some((id, LineRole::Dwell)),
            (None, None) => None,
        };
        let claims = matches!(pl.role, LineRole::Plunge | LineRole::Dwell);
        let ok = match expected {
            Some((id, role)) => pl.dot_id == Some(id) && pl.role == role,
            None => !claims,
        };
        if !ok {
            let said =
                pl.dot_id.map_or_else(|| pl.role.as_str().to_string(), |id| format!("dot {id} {}", pl.role.as_str()));
            let does = expected.map_or_else(
                || "no plunge or dwell of a planned dot".to_string(),
                |(id, role)| format!("dot {id} {}", role.as_str()),
            );
            violations.push(Violation {
                line: Some(line),
                text: pl.text.clone(),
                kind: ViolationKind::MetadataMismatch,
                detail: format!("metadata says `{said}` but the line does {does}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::program::parse_nc;
    use crate::tilted::tests::{case5, case6};
    use crate::verify::verify;
    use smp_core::arm::ab_deg_for_direction;
    use smp_testkit::{dome_patch, SyntheticCase};

    fn compiled(c: &SyntheticCase) -> Program {
        compile(&c.plan, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tamper(p: &Program, edit: impl FnOnce(&mut Vec<String>)) -> Program {
        let mut lines: Vec<String> = p.to_nc().lines().map(str::to_string).collect();
        edit(&mut lines);
        parse_nc(&(lines.join("\n") + "\n")).expect("tampered text still parses")
    }

    fn index_of(lines: &[String], annotation: &str) -> usize {
        lines.iter().position(|l| l.ends_with(annotation)).unwrap_or_else(|| panic!("no line {annotation}"))
    }

    fn word(line: &str, letter: char) -> f64 {
        line.split(' ').find_map(|w| w.strip_prefix(letter)?.parse().ok()).expect("word present")
    }

    fn set_word(line: &str, letter: char, value: f64) -> String {
        line.split(' ')
            .map(|w| if w.starts_with(letter) && w.len() > 1 { format!("{letter}{value:.4}") } else { w.to_string() })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn expect_kind(c: &SyntheticCase, p: Program, kind: ViolationKind) -> Vec<Violation> {
        let err = verify(p, &c.plan, &c.map, &c.rig, &c.base_from_head).expect_err("tampered program must fail");
        let v = err.violations().to_vec();
        assert!(v.iter().any(|x| x.kind == kind), "expected {kind:?}, got: {err}");
        for x in &v {
            let whole = matches!(x.kind, ViolationKind::MissedDot | ViolationKind::SessionMismatch);
            assert_eq!(x.line.is_none(), whole, "{x}");
            if let Some(l) = x.line {
                assert!(x.to_string().starts_with(&format!("line {l} ")), "{x}");
            }
        }
        v
    }

    /// Moves the end of a line `extra_mm` further along the line's own motion (xyzab).
    fn extend_xyz(lines: &mut [String], from: usize, to: usize, extra_mm: f64) {
        let a = Vector3::new(word(&lines[from], 'X'), word(&lines[from], 'Y'), word(&lines[from], 'Z'));
        let b = Vector3::new(word(&lines[to], 'X'), word(&lines[to], 'Y'), word(&lines[to], 'Z'));
        let e = b + (b - a).normalize() * extra_mm;
        lines[to] = set_word(&set_word(&set_word(&lines[to], 'X', e.x), 'Y', e.y), 'Z', e.z);
    }

    const N5: usize = 40;

    #[test]
    fn xyzab_deeper_plunge_is_too_deep() {
        let c = case5(N5);
        let t = tamper(&compiled(&c), |l| {
            let (a, p) = (index_of(l, "(dot 1005 approach)"), index_of(l, "(dot 1005 plunge)"));
            extend_xyz(l, a, p, 0.5);
        });
        let v = expect_kind(&c, t, ViolationKind::TooDeep);
        assert!(v.iter().any(|v| v.kind == ViolationKind::TooDeep && v.detail.contains("1.50")), "{v:?}");
    }

    #[test]
    fn xyzab_tilted_needle_is_not_normal() {
        let c = case5(N5);
        let t = tamper(&compiled(&c), |l| {
            let p = index_of(l, "(dot 1007 plunge)");
            let a = word(&l[p], 'A');
            l[p] = set_word(&l[p], 'A', a + 6.0);
        });
        expect_kind(&c, t, ViolationKind::NotNormal);
    }

    #[test]
    fn xyzab_sideways_plunge_is_drag() {
        let c = case5(N5);
        let t = tamper(&compiled(&c), |l| {
            let p = index_of(l, "(dot 1008 plunge)");
            let x = word(&l[p], 'X');
            l[p] = set_word(&l[p], 'X', x + 0.4);
        });
        expect_kind(&c, t, ViolationKind::DragUnderSkin);
    }

    #[test]
    fn xyzab_feed_and_rotary_limits() {
        let c = case5(N5);
        let p = compiled(&c);
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1010 travel)");
            l[i] = set_word(&l[i], 'F', 4000.0);
        });
        expect_kind(&c, t, ViolationKind::FeedTooHigh);
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1010 travel)");
            l[i] = l[i].replacen("G1 ", "G0 ", 1);
        });
        expect_kind(&c, t, ViolationKind::FeedTooHigh);
        let t = tamper(&p, |l| {
            let i = index_of(l, "(shutdown)") + 1;
            l[i] = set_word(&l[i], 'B', 75.0);
        });
        let v = expect_kind(&c, t, ViolationKind::JointLimit);
        assert!(v.iter().any(|v| v.detail.contains("B75.000 outside")), "{v:?}");
        // A quarter turn of A in a 0.1 mm move turns A far beyond its rate.
        let t = tamper(&p, |l| {
            let i = index_of(l, "(shutdown)") + 1;
            l.insert(i + 1, "G1 Z277.577 A-20.000 F3000.000".to_string());
        });
        let v = expect_kind(&c, t, ViolationKind::JointLimit);
        assert!(v.iter().any(|v| v.detail.contains("A turns at")), "{v:?}");
    }

    #[test]
    fn xyzab_positions_outside_travel_or_clearance() {
        let c = case5(N5);
        let p = compiled(&c);
        let t = tamper(&p, |l| {
            let i = index_of(l, "(shutdown)") + 1;
            l.insert(i + 1, "G1 X460.000 F3000.000".to_string());
        });
        expect_kind(&c, t, ViolationKind::OutOfTravel);
        // A travel swung 150 mm sideways at dot height leaves the surface's domain low.
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1012 retract)");
            let y = word(&l[i], 'Y');
            l.insert(i + 1, set_word(&l[i], 'Y', y + 150.0).replace("(dot 1012 retract)", ""));
        });
        expect_kind(&c, t, ViolationKind::BelowClearance);
    }

    /// Two dots 60 mm apart: the compiler lifts the chord between them to hover + d²/8R along
    /// the normals. Flattened to the hover points, the chord cuts through the dome, and the
    /// verifier must say so on the travel line.
    #[test]
    fn xyzab_travel_through_the_scalp_is_caught() {
        let mut c = case5(2000);
        let last = c.plan.dots.len() - 1;
        c.plan.dots = vec![c.plan.dots[0].clone(), c.plan.dots[last].clone()];
        let b = c.plan.dots[1].id;
        let p = compiled(&c);
        verify(p.clone(), &c.plan, &c.map, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}"));
        let t = tamper(&p, |l| {
            let first = index_of(l, &format!("(dot {b} travel)")) - 1;
            l.remove(first + 1);
            let approach = index_of(l, &format!("(dot {b} approach)"));
            l[first + 1] = l[approach].replace("approach)", "travel)");
            l.remove(approach);
        });
        let v = expect_kind(&c, t, ViolationKind::DragUnderSkin);
        let drag = v.iter().find(|v| v.kind == ViolationKind::DragUnderSkin).expect("drag");
        assert!(drag.text.starts_with("G1 X"), "{drag}");
    }

    #[test]
    fn xyzab_plunge_outside_the_mask() {
        let c = case5(N5);
        let (e, n) = dome_patch().sample_head(42.0, 0.0);
        let (e, n) = (c.base_from_head * e, c.base_from_head.rotation * n);
        let [a, b] = ab_deg_for_direction(&-n).expect("direction");
        let at = |p: Point3<f64>, f: f64| format!("G1 X{:.3} Y{:.3} Z{:.3} A{a:.3} B{b:.3} F{f:.3}", p.x, p.y, p.z);
        let t = tamper(&compiled(&c), |l| {
            let hover = e + n * 2.0;
            for (role, p, f) in [
                ("travel", e + n * 60.0, 3000.0),
                ("approach", hover, 3000.0),
                ("plunge", e - n, 600.0),
                ("retract", hover, 1200.0),
            ] {
                let i = index_of(l, &format!("(dot 1000 {role})"));
                l[i] = format!("{} (dot 1000 {role})", at(p, f));
            }
        });
        let v = expect_kind(&c, t, ViolationKind::SkinOutsideMask);
        let kinds: Vec<_> = v.iter().map(|v| v.kind).collect();
        assert!(
            kinds.contains(&ViolationKind::PlungeNotInPlan) && kinds.contains(&ViolationKind::MissedDot),
            "{kinds:?}"
        );
    }

    #[test]
    fn xyzab_program_rules_shared_with_xyz() {
        let c = case5(N5);
        let p = compiled(&c);
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1003 plunge)");
            l.insert(i, "M5".to_string());
        });
        expect_kind(&c, t, ViolationKind::SkinWithCartridgeOff);
        let t = tamper(&p, |l| l.insert(6, "G1 C10 F100".to_string()));
        expect_kind(&c, t, ViolationKind::UnknownWord);
        let t = tamper(&p, |l| l.retain(|x| !x.contains("(dot 1020 ")));
        expect_kind(&c, t, ViolationKind::MissedDot);
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1030 plunge)");
            let again: Vec<String> = l[i..i + 3].to_vec();
            for (k, x) in again.into_iter().enumerate() {
                l.insert(i + 3 + k, x);
            }
        });
        expect_kind(&c, t, ViolationKind::RepeatedDot);
        let t = tamper(&p, |l| l.retain(|x| !x.contains("(dot 1031 dwell)")));
        expect_kind(&c, t, ViolationKind::MetadataMismatch);
        // Without the initial rise (the first move after the modes) the first travel starts
        // from nowhere.
        let t = tamper(&p, |l| {
            let modes = l.iter().position(|x| x == "G21 G90 G94").expect("modes");
            l.remove(modes + 1);
        });
        expect_kind(&c, t, ViolationKind::UnknownPosition);
        let t = tamper(&p, |l| l.retain(|x| x != "G21 G90 G94"));
        expect_kind(&c, t, ViolationKind::ModalNotSet);
    }

    // --- joints ---

    const N6: usize = 12;

    fn joints_of(line: &str) -> [f64; ARM_JOINTS] {
        let l = ['X', 'Y', 'Z', 'A', 'B', 'C'];
        std::array::from_fn(|i| word(line, l[i]).to_radians())
    }

    fn with_joints(line: &str, q: &[f64; ARM_JOINTS]) -> String {
        let l = ['X', 'Y', 'Z', 'A', 'B', 'C'];
        let mut s = line.to_string();
        for i in 0..ARM_JOINTS {
            s = set_word(&s, l[i], q[i].to_degrees());
        }
        s
    }

    #[test]
    fn joints_deeper_plunge_is_too_deep() {
        let c = case6(N6);
        let arm = c.rig.arm_model().expect("arm");
        let t = tamper(&compiled(&c), |l| {
            let p = index_of(l, "(dot 1004 plunge)");
            let q = joints_of(&l[p]);
            let pose = arm.base_from_needle(&q);
            let dir = pose.rotation * Vector3::new(0.0, 0.0, -1.0);
            let deeper = Isometry3::from_parts((pose.translation.vector + dir * 0.5).into(), pose.rotation);
            let q2 = arm.solve_ik(&deeper, &q).expect("reachable");
            l[p] = with_joints(&l[p], &q2);
        });
        let v = expect_kind(&c, t, ViolationKind::TooDeep);
        assert!(v.iter().any(|v| v.kind == ViolationKind::TooDeep && v.detail.contains("1.50")), "{v:?}");
    }

    #[test]
    fn joints_wrist_tilt_is_not_normal() {
        let c = case6(N6);
        let arm = c.rig.arm_model().expect("arm");
        // The plunge ends at the same tip with the needle turned 5 degrees about it.
        let t = tamper(&compiled(&c), |l| {
            let p = index_of(l, "(dot 1005 plunge)");
            let q = joints_of(&l[p]);
            let pose = arm.base_from_needle(&q);
            let turn = nalgebra::UnitQuaternion::from_axis_angle(&Vector3::x_axis(), 5f64.to_radians());
            let tilted = Isometry3::from_parts(pose.translation, turn * pose.rotation);
            let q2 = arm.solve_ik(&tilted, &q).expect("reachable");
            l[p] = with_joints(&l[p], &q2);
        });
        expect_kind(&c, t, ViolationKind::NotNormal);
    }

    #[test]
    fn joints_speed_rates_and_limits() {
        let c = case6(N6);
        let p = compiled(&c);
        // Tripled joint-space feed: the tip goes ~3x the travel feed.
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1006 travel)");
            let f = word(&l[i], 'F');
            l[i] = set_word(&l[i], 'F', f * 3.0);
        });
        let v = expect_kind(&c, t, ViolationKind::FeedTooHigh);
        assert!(v.iter().any(|v| v.detail.contains("forward kinematics")), "{v:?}");
        // The last move (back home, before the program end): a joint at 200 deg is past J3's 180.
        let last_move = |l: &[String]| l.iter().rposition(|x| x.starts_with("G1 ")).expect("a move");
        let t = tamper(&p, |l| {
            let i = last_move(l);
            l[i] = set_word(&l[i], 'Z', 200.0);
        });
        let v = expect_kind(&c, t, ViolationKind::JointLimit);
        assert!(v.iter().any(|v| v.detail.contains("J3")), "{v:?}");
        // A joint turned faster than its rate: a large wrist move at a huge feed.
        let t = tamper(&p, |l| {
            let i = last_move(l);
            let cw = word(&l[i], 'C');
            let fast = set_word(&set_word(&l[i], 'C', cw + 90.0), 'F', 100_000.0).replace("(shutdown)", "");
            l.insert(i + 1, fast);
        });
        let v = expect_kind(&c, t, ViolationKind::JointLimit);
        assert!(v.iter().any(|v| v.detail.contains("J6 turns at")), "{v:?}");
    }

    #[test]
    fn joints_tip_outside_workspace_box() {
        let mut c = case6(N6);
        let p = compiled(&c);
        c.rig.dynamics.z.max_mm = 300.0;
        expect_kind(&c, p, ViolationKind::OutOfTravel);
    }

    #[test]
    fn joints_missing_dot_and_bad_words() {
        let c = case6(N6);
        let p = compiled(&c);
        let t = tamper(&p, |l| l.retain(|x| !x.contains("(dot 1003 ")));
        expect_kind(&c, t, ViolationKind::MissedDot);
        let t = tamper(&p, |l| l.insert(6, "G1 U10 F100".to_string()));
        expect_kind(&c, t, ViolationKind::UnknownWord);
    }
}

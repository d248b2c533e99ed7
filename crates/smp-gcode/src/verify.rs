//! The program verifier: an independent safety check between compiler and machine.
//!
//! It re-reads the G-code text of every line with its own small modal interpreter (G0 G1 G4
//! G21 G90 G94 M2 M3 M5 F S X Y Z P; anything else is a violation) and never looks at the
//! compiler's metadata to decide what the machine will do. The program's header must name the
//! rig it is verified against and the controller's dialect (`(dialect grbl)`: `G4 P` seconds
//! and a final `M2`; `(dialect marlin)`: `G4 S` seconds, one command per line, no `M2`; see
//! `verify/walk.rs`). It simulates the tip along every segment against the scan's surface and
//! collects every violation, each with its line:
//!
//! - feed above the session limit (`G0` counts as the machine's maximum rate);
//! - tip deeper below the skin than the session's depth limit, at any sample of any segment;
//! - tip below the skin at all outside the plan's treatment mask, with the cartridge off, or
//!   while moving sideways (a vertical needle must never be dragged through skin);
//! - tip below the clearance height where the map has no surface under it;
//! - targets outside the machine's travel; motion before `G21 G90 G94`; `G1` without feed;
//!   motion from an unknown position that is not a rise to clearance height;
//! - every planned dot entered exactly once, within 0.01 mm of its planned x/y; no entry
//!   that is not in the plan;
//! - a grbl program ends with `M2` alone on its line, and nothing follows it;
//! - finally the metadata the executor relies on: each plunge line must be tagged with the
//!   dot it actually enters and be followed by a `G4` tagged with the same dot (its `ok`
//!   marks the dot executed).
//!
//! A [`VerifiedProgram`] can only be made by [`verify`], so the executor's signature proves
//! the check ran. Programs for `xyzab` and `joints` rigs are checked by
//! [`crate::verify_tilted`] (the same rules along the needle's axis, plus needle-normal,
//! rotary/joint limits and rates).

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::geometry::SurfacePatch;
use smp_core::map::{CellGrid, ScalpMap};
use smp_core::plan::SessionPlan;
use smp_core::rig::{AxisProfile, Rig};
use thiserror::Error;

use crate::dialect::Dialect;
use crate::program::Program;

mod header;
mod walk;
pub(crate) use header::{check_rig, read_dialect};
pub(crate) use walk::{at_line, finish};
pub(crate) use walk::{read_move, Modal, Motion, PlannedDots, WalkFigures};

/// Largest distance between two samples along a segment that moves sideways, mm.
pub const SAMPLE_STEP_MM: f64 = 0.05;
/// Where the map has no surface under the tip, the tip must stay this far above the highest
/// point of the map's surface patch.
pub const CLEARANCE_MARGIN_MM: f64 = 5.0;
/// A skin entry counts as a planned dot's plunge within this x/y distance, mm.
pub const DOT_MATCH_MM: f64 = 0.01;

/// What rule a line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// A word the interpreter does not accept (`G2`, `M8`, `N10`, `$H`, `G91`...).
    UnknownWord,
    /// Unparseable number, repeated word, conflicting words, unclosed comment.
    Malformed,
    /// Motion before `G21 G90 G94` were all set by the program.
    ModalNotSet,
    /// `G1` with no feed rate set.
    FeedNotSet,
    /// Commanded (or rapid) rate above the session's feed limit.
    FeedTooHigh,
    /// Tip deeper below the skin than the session's depth limit.
    TooDeep,
    /// Tip below the skin outside the plan's treatment mask.
    SkinOutsideMask,
    /// Tip below the skin while the cartridge is not running.
    SkinWithCartridgeOff,
    /// Tip below the skin while moving sideways.
    DragUnderSkin,
    /// Tip below the clearance height where the map has no surface under it.
    BelowClearance,
    /// A target outside the machine's soft limits.
    OutOfTravel,
    /// Motion from an unknown position other than a rise to clearance height.
    UnknownPosition,
    /// A skin entry not within 0.01 mm of any planned dot.
    PlungeNotInPlan,
    /// A planned dot never entered.
    MissedDot,
    /// A planned dot entered more than once.
    RepeatedDot,
    /// Line metadata that disagrees with what the text does (or a plunge without its dwell).
    MetadataMismatch,
    /// The program was compiled for another session.
    SessionMismatch,
    /// `xyzab`/`joints`: needle not along the skin's normal within [`crate::tilted::NORMAL_TOLERANCE_DEG`]
    /// while in the skin.
    NotNormal,
    /// `xyzab`/`joints`: a rotary axis or joint outside its limits, or turning faster than
    /// its rate limit.
    JointLimit,
    /// A word the program's dialect reads otherwise (`G4 S` in a grbl program, `G4 P`, `M2`,
    /// `G94` or two commands on one line in a Marlin program), or no readable
    /// `(dialect ...)` header.
    Dialect,
    /// A grbl program that does not end with `M2` alone on its line, or a command after it.
    ProgramEnd,
    /// The program's header names another rig (or axes profile) than the one it is verified
    /// against, or none.
    RigMismatch,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// 1-based line of the program (= line of its `.nc` text); `None` for whole-program
    /// findings such as a dot never plunged.
    pub line: Option<usize>,
    /// The line's G-code text (empty for whole-program findings).
    pub text: String,
    pub kind: ViolationKind,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line} `{}`: {}", self.text, self.detail),
            None => write!(f, "program: {}", self.detail),
        }
    }
}

/// Why a program was not verified.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum VerifyError {
    #[error("{}", summarize(.0))]
    Violations(Vec<Violation>),
    #[error(
        "rig `{rig}` has axes profile `{profile}` but the verifier cannot model it: an `xyzab` rig needs its \
         `[five_axis]` table, a `joints` rig its `[arm]` table"
    )]
    UnsupportedAxes { rig: String, profile: String },
    #[error("cannot verify against the {what}: {problem}")]
    BadInput { what: &'static str, problem: String },
}

impl VerifyError {
    /// The violations, if that is why verification failed.
    pub fn violations(&self) -> &[Violation] {
        match self {
            VerifyError::Violations(v) => v,
            _ => &[],
        }
    }
}

fn summarize(v: &[Violation]) -> String {
    const SHOWN: usize = 8;
    let mut s = format!("program failed verification with {} violation(s): ", v.len());
    let parts: Vec<String> = v.iter().take(SHOWN).map(|x| x.to_string()).collect();
    s.push_str(&parts.join("; "));
    if v.len() > SHOWN {
        s.push_str(&format!("; and {} more", v.len() - SHOWN));
    }
    s.push_str(". Do not run it: re-compile from the plan, or fix the plan or limits that caused it");
    s
}

/// Figures of a verified program.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Deepest tip position below the map's surface anywhere in the program, mm.
    pub max_depth_mm: f64,
    /// Highest commanded feed, mm/min.
    pub max_feed_mm_per_min: f64,
    /// Planned dots entered (exactly once each).
    pub dots: usize,
    pub lines: usize,
    /// Sum of rest-to-rest move times (smp_core::kinematics) and dwells, seconds.
    pub estimated_time_s: f64,
    /// Height the tip kept above where the map has no surface, base z, mm.
    pub clearance_z_mm: f64,
    /// The controller dialect the program is written in (from its header): the text proved
    /// is the text to send, as it is, to a controller of this dialect.
    pub dialect: Dialect,
    /// What the program asks of the controller (axes, travel, cartridge speed), checked
    /// against the controller's own report before streaming.
    pub needs: MachineNeeds,
}

/// One axis a program moves, and the range of positions it commands (program units: mm for
/// linear axes, degrees for rotary ones; every position is absolute, G90 being the only mode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisRange {
    pub letter: char,
    pub min: f64,
    pub max: f64,
}

/// What a program asks of the controller that runs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MachineNeeds {
    /// Every axis the program names, in the order X Y Z A B C.
    pub axes: Vec<AxisRange>,
    /// Highest cartridge speed the program asks for (S word), rpm; 0 when it never starts it.
    pub max_spindle_rpm: f64,
    /// Lowest non-zero cartridge speed, rpm (0 when none).
    pub min_spindle_rpm: f64,
}

/// A program that passed [`verify`]; only `verify` builds one.
#[derive(Debug, Clone)]
pub struct VerifiedProgram {
    pub(crate) program: Program,
    pub(crate) report: VerifyReport,
}

impl VerifiedProgram {
    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn report(&self) -> &VerifyReport {
        &self.report
    }

    pub fn into_program(self) -> Program {
        self.program
    }
}

/// Skin under a vertical line of the base frame.
#[derive(Debug, Clone, Copy)]
struct SkinHit {
    z_base: f64,
    patch_x: f64,
    patch_y: f64,
}

/// The map's surface seen from the base frame: height of the skin under a vertical line.
struct Skin<'a> {
    patch: &'a SurfacePatch,
    patch_from_base: Isometry3<f64>,
    /// Base -z (the needle's direction) in patch coordinates.
    down_patch: Vector3<f64>,
    /// Rays start here (above the whole patch), base z.
    top_z: f64,
    /// Rays end here (below the whole patch), base z.
    bottom_z: f64,
    /// Bound on how fast the height gap closes per mm along the ray.
    closing_rate: f64,
    clearance_z: f64,
    cache: Option<(f64, f64, Option<SkinHit>)>,
}

impl<'a> Skin<'a> {
    fn new(patch: &'a SurfacePatch, base_from_head: &Isometry3<f64>) -> Self {
        let base_from_patch = base_from_head * patch.head_from_patch;
        let patch_from_base = base_from_patch.inverse();
        let down_patch = patch_from_base.rotation * Vector3::new(0.0, 0.0, -1.0);
        const N: usize = 64;
        let (mut zmin, mut zmax, mut gmax) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
        for j in 0..=N {
            for i in 0..=N {
                let x = patch.x_range_mm[0] + (patch.x_range_mm[1] - patch.x_range_mm[0]) * i as f64 / N as f64;
                let y = patch.y_range_mm[0] + (patch.y_range_mm[1] - patch.y_range_mm[0]) * j as f64 / N as f64;
                let (h, gx, gy) = patch.height_and_gradient(x, y);
                let z = (base_from_patch * Point3::new(x, y, h)).z;
                zmin = zmin.min(z);
                zmax = zmax.max(z);
                gmax = gmax.max(gx.hypot(gy));
            }
        }
        let horiz = down_patch.x.hypot(down_patch.y);
        // Polynomial heights can exceed the sampled bounds between samples; widen them.
        let span = (zmax - zmin).max(1.0);
        Skin {
            patch,
            patch_from_base,
            down_patch,
            top_z: zmax + 0.1 * span + 1.0,
            bottom_z: zmin - 0.1 * span - 1.0,
            closing_rate: down_patch.z.abs() + (1.25 * gmax + 0.05) * horiz,
            clearance_z: zmax + CLEARANCE_MARGIN_MM,
            cache: None,
        }
    }

    /// First crossing of the vertical base line at (x, y) with the patch from above, if it
    /// lies inside the patch's domain.
    fn at(&mut self, x: f64, y: f64) -> Option<SkinHit> {
        if let Some((cx, cy, hit)) = self.cache {
            if cx == x && cy == y {
                return hit;
            }
        }
        let hit = self.intersect(x, y);
        self.cache = Some((x, y, hit));
        hit
    }

    fn intersect(&self, x: f64, y: f64) -> Option<SkinHit> {
        let o = self.patch_from_base * Point3::new(x, y, self.top_z);
        let d = self.down_patch;
        // Gap along the patch's z between the ray point and the surface; t is the drop in base z.
        let gap = |t: f64| {
            let p = o + d * t;
            p.z - self.patch.height(p.x, p.y)
        };
        let t_end = self.top_z - self.bottom_z;
        const MIN_STEP: f64 = 0.2;
        let mut t = 0.0;
        let mut f = gap(t);
        if !f.is_finite() {
            return None;
        }
        while t < t_end {
            // A safe step while above (cannot jump past the first crossing if the gradient
            // bound holds), at least MIN_STEP with a sign check otherwise.
            let step = if f > 0.0 { (f / self.closing_rate).max(MIN_STEP) } else { MIN_STEP };
            let t_next = (t + step).min(t_end);
            let f_next = gap(t_next);
            if f > 0.0 && f_next <= 0.0 {
                let tc = refine_crossing(&gap, t, f, t_next, f_next);
                let p = o + d * tc;
                return self.patch.contains_xy(p.x, p.y).then_some(SkinHit {
                    z_base: self.top_z - tc,
                    patch_x: p.x,
                    patch_y: p.y,
                });
            }
            if t_next >= t_end {
                break;
            }
            t = t_next;
            f = f_next;
        }
        None
    }
}

/// Root of `gap` inside a bracket with `gap(a) > 0 >= gap(b)`, by the Illinois variant of
/// regula falsi: it keeps the bracket (so it cannot leave it, unlike Newton) and converges
/// superlinearly on the smooth gap of a polynomial patch.
fn refine_crossing(gap: &impl Fn(f64) -> f64, a: f64, fa: f64, b: f64, fb: f64) -> f64 {
    let (mut a, mut fa, mut b, mut fb) = (a, fa, b, fb);
    let mut side = 0i8;
    for _ in 0..100 {
        if b - a < 1e-7 {
            break;
        }
        let denom = fa - fb;
        let mut c = if denom > 0.0 { a + (b - a) * fa / denom } else { 0.5 * (a + b) };
        if !(c > a && c < b) {
            c = 0.5 * (a + b);
        }
        let fc = gap(c);
        if fc.abs() < 1e-10 {
            return c;
        }
        if fc > 0.0 {
            a = c;
            fa = fc;
            if side == 1 {
                fb *= 0.5;
            }
            side = 1;
        } else {
            b = c;
            fb = fc;
            if side == -1 {
                fa *= 0.5;
            }
            side = -1;
        }
    }
    0.5 * (a + b)
}

/// One word of a G-code line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Word {
    pub(crate) letter: char,
    pub(crate) value: f64,
}

/// Splits a line into words; comments `( )` and `;` are dropped.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Word>, (ViolationKind, String)> {
    let mut code = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                if !chars.by_ref().any(|c| c == ')') {
                    return Err((ViolationKind::Malformed, "has an unclosed `(` comment".to_string()));
                }
            }
            ';' => break,
            c if c.is_whitespace() => {}
            c => code.push(c.to_ascii_uppercase()),
        }
    }
    let bytes = code.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let letter = bytes[i] as char;
        if !letter.is_ascii_alphabetic() {
            return Err((
                ViolationKind::UnknownWord,
                format!("`{letter}` is not G-code (grbl `$` commands and other bytes are not allowed in a program)"),
            ));
        }
        let start = i + 1;
        let mut j = start;
        if j < bytes.len() && (bytes[j] == b'-' || bytes[j] == b'+') {
            j += 1;
        }
        let mut digits = 0;
        let mut dots = 0;
        while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
            if bytes[j] == b'.' {
                dots += 1;
            } else {
                digits += 1;
            }
            j += 1;
        }
        let number = &code[start..j];
        if digits == 0 || dots > 1 {
            return Err((
                ViolationKind::Malformed,
                format!("word `{letter}` has no valid number (`{letter}{number}`)"),
            ));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| (ViolationKind::Malformed, format!("word `{letter}{number}` has an invalid number")))?;
        words.push(Word { letter, value });
        i = j;
    }
    Ok(words)
}

/// Findings of one line, merged so each rule is reported once per line with its worst value.
#[derive(Default)]
struct LineFindings {
    worst_depth_mm: Option<f64>,
    worst_below_clearance_mm: Option<f64>,
    outside_mask: bool,
    cartridge_off: bool,
    drag: bool,
}

/// A place where the tip went from above the skin to below it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    line: usize,
    x: f64,
    y: f64,
    z: f64,
}

struct Tracer<'a> {
    skin: Skin<'a>,
    treatment: &'a CellGrid,
    depth_limit_mm: f64,
    below: bool,
    max_depth_mm: f64,
    entries: Vec<Entry>,
}

impl Tracer<'_> {
    /// Checks one sample. At a segment's start (`is_start`), position-only rules were already
    /// checked as the previous segment's end; only what this line changes (cartridge state,
    /// sideways motion) is checked again.
    fn check_point(
        &mut self,
        p: [f64; 3],
        is_start: bool,
        sideways: bool,
        cartridge_on: bool,
        line: usize,
        f: &mut LineFindings,
    ) {
        if is_start {
            if self.below {
                f.cartridge_off |= !cartridge_on;
                f.drag |= sideways;
            }
            return;
        }
        match self.skin.at(p[0], p[1]) {
            None => {
                self.below = false;
                let deficit = self.skin.clearance_z - p[2];
                if deficit > 1e-9 {
                    f.worst_below_clearance_mm = Some(f.worst_below_clearance_mm.map_or(deficit, |d| d.max(deficit)));
                }
            }
            Some(hit) => {
                let depth = hit.z_base - p[2];
                self.max_depth_mm = self.max_depth_mm.max(depth);
                if depth > 1e-9 {
                    if depth > self.depth_limit_mm + 1e-9 {
                        f.worst_depth_mm = Some(f.worst_depth_mm.map_or(depth, |d| d.max(depth)));
                    }
                    if self.treatment.code_at(hit.patch_x, hit.patch_y) != '#' {
                        f.outside_mask = true;
                    }
                    f.cartridge_off |= !cartridge_on;
                    f.drag |= sideways;
                    if !self.below {
                        self.entries.push(Entry { line, x: p[0], y: p[1], z: p[2] });
                    }
                    self.below = true;
                } else {
                    self.below = false;
                }
            }
        }
    }

    fn trace_segment(&mut self, a: [f64; 3], b: [f64; 3], cartridge_on: bool, line: usize, f: &mut LineFindings) {
        let h = (b[0] - a[0]).hypot(b[1] - a[1]);
        if h < 1e-9 {
            // Vertical: the skin height is the same all along, the depth is linear in z.
            self.check_point(a, true, false, cartridge_on, line, f);
            self.check_point(b, false, false, cartridge_on, line, f);
            return;
        }
        let n = (h / SAMPLE_STEP_MM).ceil().max(1.0) as usize;
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let p = [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
            self.check_point(p, i == 0, true, cartridge_on, line, f);
        }
    }
}

/// The inputs every profile's verifier needs sound before it reads a line: map surface,
/// treatment mask, positive limits, a finite registration.
pub(crate) fn check_inputs(
    plan: &SessionPlan,
    map: &ScalpMap,
    base_from_head: &Isometry3<f64>,
) -> Result<(), VerifyError> {
    map.surface.validate().map_err(|e| VerifyError::BadInput { what: "scalp map surface", problem: e.to_string() })?;
    plan.treatment
        .validate("plan", "treatment", ".#")
        .map_err(|e| VerifyError::BadInput { what: "plan treatment mask", problem: e.to_string() })?;
    let limits = plan.limits;
    for (name, v) in [("depth_limit_mm", limits.depth_limit_mm), ("max_feed_mm_per_min", limits.max_feed_mm_per_min)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(VerifyError::BadInput { what: "plan limits", problem: format!("`{name}` is {v}") });
        }
    }
    let iso_ok =
        base_from_head.translation.vector.iter().chain(base_from_head.rotation.coords.iter()).all(|v| v.is_finite());
    if !iso_ok {
        return Err(VerifyError::BadInput { what: "registration", problem: "base_from_head holds NaN".into() });
    }
    Ok(())
}

/// Planned entry points in the base frame, refusing a non-finite one.
pub(crate) fn planned_base(
    plan: &SessionPlan,
    base_from_head: &Isometry3<f64>,
) -> Result<Vec<(u32, Point3<f64>)>, VerifyError> {
    plan.dots
        .iter()
        .map(|d| {
            if ![d.x_mm, d.y_mm, d.z_mm].iter().all(|v| v.is_finite()) {
                return Err(VerifyError::BadInput {
                    what: "plan",
                    problem: format!("dot {} has a non-finite position; re-run the planner", d.id),
                });
            }
            Ok((d.id, base_from_head * Point3::new(d.x_mm, d.y_mm, d.z_mm)))
        })
        .collect()
}

/// Verifies `program` against the plan, the scan's map and the rig. See the module docs for
/// the rules. Every violation is collected before returning.
pub fn verify(
    program: Program,
    plan: &SessionPlan,
    map: &ScalpMap,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
) -> Result<VerifiedProgram, VerifyError> {
    if rig.axes != AxisProfile::Xyz {
        return crate::verify_tilted::verify_tilted(program, plan, map, rig, base_from_head);
    }
    check_rig(&program, rig)?;
    check_inputs(plan, map, base_from_head)?;
    let limits = plan.limits;

    // Planned entry points in the base frame.
    let planned = PlannedDots::new(planned_base(plan, base_from_head)?, DOT_MATCH_MM, |p| [p.x, p.y, 0.0]);

    let dynamics = rig.dynamics;
    let rapid_rate = dynamics.axes().iter().map(|a| a.max_rate_mm_per_min).fold(0.0, f64::max);
    let mut tracer = Tracer {
        skin: Skin::new(&map.surface, base_from_head),
        treatment: &plan.treatment,
        depth_limit_mm: limits.depth_limit_mm,
        below: false,
        max_depth_mm: 0.0,
        entries: Vec::new(),
    };
    let clearance_z = tracer.skin.clearance_z;

    let mut violations: Vec<Violation> = Vec::new();
    let dialect = read_dialect(&program, &mut violations);
    let mut push = |line: usize, kind: ViolationKind, detail: String| {
        violations.push(walk::at_line(&program, line, kind, detail));
    };
    let mut pos: [Option<f64>; 3] = [None; 3];
    let mut modal = Modal::new(dialect);
    let mut max_feed = 0.0f64;
    let mut move_time_s = 0.0;

    for (idx, pl) in program.lines.iter().enumerate() {
        let line = idx + 1;
        let Some(block) = read_move(&pl.text, &['X', 'Y', 'Z'], &mut modal, |kind, detail| push(line, kind, detail))
        else {
            continue;
        };
        let rate = match modal.motion {
            Motion::Rapid => {
                if rapid_rate > limits.max_feed_mm_per_min {
                    push(
                        line,
                        ViolationKind::FeedTooHigh,
                        format!(
                            "G0 moves at the machine's maximum rate (up to {rapid_rate} mm/min), above the session limit {} mm/min; use G1 with F",
                            limits.max_feed_mm_per_min
                        ),
                    );
                }
                Some(rapid_rate)
            }
            Motion::Linear => match modal.feed_mm_per_min {
                None => {
                    push(line, ViolationKind::FeedNotSet, "G1 with no feed rate set".into());
                    None
                }
                Some(f) => {
                    if f > limits.max_feed_mm_per_min + 1e-9 {
                        push(
                            line,
                            ViolationKind::FeedTooHigh,
                            format!("feed {f} mm/min is above the session limit {} mm/min", limits.max_feed_mm_per_min),
                        );
                    }
                    Some(f)
                }
            },
        };
        if let Some(r) = rate {
            max_feed = max_feed.max(r);
        }

        let target: [Option<f64>; 3] = std::array::from_fn(|i| block.axes[i].or(pos[i]));
        let outside: Vec<&str> = ["X", "Y", "Z"]
            .iter()
            .zip(dynamics.axes())
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

        let mut findings = LineFindings::default();
        match (pos, target) {
            ([Some(ax), Some(ay), Some(az)], [Some(bx), Some(by), Some(bz)]) => {
                let (a, b) = ([ax, ay, az], [bx, by, bz]);
                tracer.trace_segment(a, b, modal.cartridge_on(), line, &mut findings);
                let delta = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
                move_time_s += dynamics.move_time_s(delta, if modal.motion == Motion::Rapid { None } else { rate });
            }
            (start, end) => {
                let z_only = block.axes[0].is_none() && block.axes[1].is_none();
                let end_high = end[2].is_some_and(|z| z >= clearance_z);
                let start_high = start[2].is_some_and(|z| z >= clearance_z);
                if !(end_high && (z_only || start_high)) {
                    push(
                        line,
                        ViolationKind::UnknownPosition,
                        format!(
                            "moves from an unknown position; the first moves must rise straight to the clearance height Z{clearance_z:.3} or above"
                        ),
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
                format!("tip {d:.3} mm below the skin, limit {} mm", limits.depth_limit_mm),
            );
        }
        if findings.outside_mask {
            push(line, ViolationKind::SkinOutsideMask, "tip below the skin outside the treatment mask".into());
        }
        if findings.cartridge_off {
            push(
                line,
                ViolationKind::SkinWithCartridgeOff,
                "tip below the skin with the cartridge off (M5 or S0)".into(),
            );
        }
        if findings.drag {
            push(line, ViolationKind::DragUnderSkin, "tip below the skin while moving sideways".into());
        }
        if let Some(d) = findings.worst_below_clearance_mm {
            push(
                line,
                ViolationKind::BelowClearance,
                format!("tip {d:.3} mm below the clearance height Z{clearance_z:.3} where the map has no surface"),
            );
        }
    }

    // The 3-axis needle is vertical: an entry is a dot's when it is over it.
    let entries = tracer.entries.iter().map(|e| (e.line, Point3::new(e.x, e.y, e.z)));
    let (count, plunge_of) = planned.match_entries(&program, entries, &mut violations);
    let figures = WalkFigures {
        max_depth_mm: tracer.max_depth_mm,
        max_feed_mm_per_min: max_feed,
        estimated_time_s: move_time_s + modal.dwell_s,
        clearance_z_mm: clearance_z,
        dialect,
    };
    walk::finish(program, plan, &count, &plunge_of, violations, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, compile_with, CompileOptions};
    use crate::program::{parse_nc, LineRole};
    use smp_testkit::{dome_point_head, synthetic_case, SyntheticCase};

    const DOTS: usize = 200;

    fn case() -> (SyntheticCase, Program) {
        let c = synthetic_case(DOTS);
        let p = compile(&c.plan, &c.rig, &c.base_from_head).expect("compiles");
        (c, p)
    }

    fn run(c: &SyntheticCase, p: Program) -> Result<VerifiedProgram, VerifyError> {
        verify(p, &c.plan, &c.map, &c.rig, &c.base_from_head)
    }

    /// Edits the `.nc` text and reads it back, as an attacker or a careless edit would.
    fn tamper(p: &Program, edit: impl FnOnce(&mut Vec<String>)) -> Program {
        let mut lines: Vec<String> = p.to_nc().lines().map(str::to_string).collect();
        edit(&mut lines);
        parse_nc(&(lines.join("\n") + "\n")).expect("tampered text still parses")
    }

    fn index_of(lines: &[String], annotation: &str) -> usize {
        lines.iter().position(|l| l.ends_with(annotation)).unwrap_or_else(|| panic!("no line {annotation}"))
    }

    /// Rewrites the first `from` to `to` on the line that ends in `annotation`.
    fn rewrite(p: &Program, annotation: &str, from: &str, to: &str) -> Program {
        tamper(p, |l| {
            let i = index_of(l, annotation);
            l[i] = l[i].replacen(from, to, 1);
        })
    }

    /// Replaces the numeric value of `letter` in a line.
    fn set_word(line: &str, letter: char, value: f64) -> String {
        line.split(' ')
            .map(|w| {
                if w.starts_with(letter) && w.len() > 1 && !w.starts_with('(') {
                    format!("{letter}{value:.3}")
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn word(line: &str, letter: char) -> f64 {
        line.split(' ').find_map(|w| w.strip_prefix(letter)?.parse().ok()).expect("word present")
    }

    fn kinds(err: &VerifyError) -> Vec<ViolationKind> {
        err.violations().iter().map(|v| v.kind).collect()
    }

    fn expect_kind(c: &SyntheticCase, p: Program, kind: ViolationKind) -> Vec<Violation> {
        let err = run(c, p).expect_err("tampered program must fail");
        assert!(kinds(&err).contains(&kind), "expected {kind:?}, got: {err}");
        for v in err.violations() {
            let whole_program = matches!(v.kind, ViolationKind::MissedDot | ViolationKind::SessionMismatch);
            assert_eq!(v.line.is_none(), whole_program, "{v}");
        }
        err.violations().to_vec()
    }

    #[test]
    fn compiled_synthetic_plan_verifies() {
        let (c, p) = case();
        let n_lines = p.lines.len();
        let v = run(&c, p).unwrap_or_else(|e| panic!("{e}"));
        let r = v.report();
        assert_eq!(r.dots, DOTS);
        assert_eq!(r.lines, n_lines);
        assert!((r.max_depth_mm - 1.0).abs() < 0.01, "max depth {}", r.max_depth_mm);
        assert_eq!(r.max_feed_mm_per_min, 3000.0);
        assert!(r.estimated_time_s > DOTS as f64 * c.plan.spec.dwell_s, "{}", r.estimated_time_s);
        assert_eq!(v.program().session, 1);
        // What the controller must offer: the axes moved, over the ranges the words span.
        let letters: String = r.needs.axes.iter().map(|a| a.letter).collect();
        assert_eq!(letters, "XYZ");
        for a in &r.needs.axes {
            let values: Vec<f64> = v
                .program()
                .lines
                .iter()
                .filter_map(|l| l.text.split(' ').find_map(|w| w.strip_prefix(a.letter)?.parse().ok()))
                .collect();
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!((a.min, a.max), (lo, hi), "{}", a.letter);
        }
        assert!(r.needs.max_spindle_rpm > 0.0 && r.needs.min_spindle_rpm <= r.needs.max_spindle_rpm);
    }

    #[test]
    fn nc_round_trip_verifies_identically() {
        let (c, p) = case();
        let back = parse_nc(&p.to_nc()).expect("parses");
        assert_eq!(back, p);
        assert_eq!(back.to_nc(), p.to_nc());
        run(&c, back).expect("the parsed program verifies");
    }

    #[test]
    fn catches_deeper_plunge() {
        let (c, p) = case();
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1005 plunge)");
            let z = word(&l[i], 'Z');
            l[i] = set_word(&l[i], 'Z', z - 0.5);
        });
        let v = expect_kind(&c, t, ViolationKind::TooDeep);
        assert!(v.iter().any(|v| v.kind == ViolationKind::TooDeep && v.detail.contains("1.50")), "{v:?}");
        assert_eq!(v.len(), 1, "reported once, on the plunge line: {v:?}");
    }

    #[test]
    fn catches_higher_feed() {
        let (c, p) = case();
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1010 travel)");
            l[i] = set_word(&l[i], 'F', 4000.0);
        });
        expect_kind(&c, t, ViolationKind::FeedTooHigh);
    }

    #[test]
    fn catches_rapid_move() {
        let (c, p) = case();
        let t = rewrite(&p, "(dot 1010 travel)", "G1 ", "G0 ");
        let v = expect_kind(&c, t, ViolationKind::FeedTooHigh);
        assert!(v[0].detail.contains("G0"), "{}", v[0]);
    }

    #[test]
    fn catches_missing_dot() {
        let (c, p) = case();
        let t = tamper(&p, |l| l.retain(|line| !line.contains("(dot 1020 ")));
        let v = expect_kind(&c, t, ViolationKind::MissedDot);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("dot 1020"));
    }

    #[test]
    fn catches_doubled_plunge() {
        let (c, p) = case();
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1030 plunge)");
            let again: Vec<String> = l[i..i + 3].to_vec();
            for (k, line) in again.into_iter().enumerate() {
                l.insert(i + 3 + k, line);
            }
        });
        let v = expect_kind(&c, t, ViolationKind::RepeatedDot);
        assert!(v.iter().any(|v| v.kind == ViolationKind::RepeatedDot && v.detail.contains("dot 1030")), "{v:?}");
    }

    #[test]
    fn catches_plunge_outside_mask() {
        let (c, p) = case();
        // A point on the skin inside the patch but outside the treatment disc.
        let target = c.base_from_head * dome_point_head(42.0, 0.0);
        let t = tamper(&p, |l| {
            let travel = index_of(l, "(dot 1000 travel)");
            l[travel] = set_word(&set_word(&l[travel], 'X', target.x), 'Y', target.y);
            let approach = index_of(l, "(dot 1000 approach)");
            l[approach] = set_word(&l[approach], 'Z', target.z + 2.0);
            let plunge = index_of(l, "(dot 1000 plunge)");
            l[plunge] = set_word(&l[plunge], 'Z', target.z - 1.0);
            let retract = index_of(l, "(dot 1000 retract)");
            l[retract] = set_word(&l[retract], 'Z', target.z + 2.0);
        });
        let v = expect_kind(&c, t, ViolationKind::SkinOutsideMask);
        let kinds: Vec<_> = v.iter().map(|v| v.kind).collect();
        assert!(kinds.contains(&ViolationKind::PlungeNotInPlan), "{kinds:?}");
        assert!(kinds.contains(&ViolationKind::MissedDot), "{kinds:?}");
    }

    #[test]
    fn catches_cartridge_stopped_before_plunge() {
        let (c, p) = case();
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1000 plunge)");
            l.insert(i, "M5".to_string());
        });
        let v = expect_kind(&c, t, ViolationKind::SkinWithCartridgeOff);
        assert_eq!(
            v.iter().filter(|v| v.kind == ViolationKind::SkinWithCartridgeOff).count(),
            DOTS * 2,
            "every plunge and retract"
        );
    }

    #[test]
    fn catches_unknown_word() {
        let (c, p) = case();
        for bad in ["M7", "G91", "G2 X1 Y1 I1", "N10 G1 X1", "$H", "T1"] {
            let t = tamper(&p, |l| l.insert(6, bad.to_string()));
            let v = expect_kind(&c, t, ViolationKind::UnknownWord);
            assert_eq!(v[0].line, Some(7), "{bad}: {}", v[0]);
            assert_eq!(v[0].text, bad);
        }
    }

    #[test]
    fn catches_metadata_that_lies() {
        let (c, p) = case();
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1040 dwell)");
            l[i] = l[i].replace("(dot 1040 dwell)", "(dot 1041 dwell)");
        });
        expect_kind(&c, t, ViolationKind::MetadataMismatch);
        // A plunge without its dwell cannot be confirmed by the executor.
        let t = tamper(&p, |l| l.retain(|line| !line.contains("(dot 1050 dwell)")));
        expect_kind(&c, t, ViolationKind::MetadataMismatch);
    }

    #[test]
    fn catches_drag_out_of_travel_and_unknown_start() {
        let (c, p) = case();
        let t = tamper(&p, |l| {
            let i = index_of(l, "(dot 1060 travel)");
            let plunge_z = word(&l[index_of(l, "(dot 1060 plunge)")], 'Z');
            l[i] = set_word(&l[i], 'Z', plunge_z + 0.5);
        });
        expect_kind(&c, t, ViolationKind::DragUnderSkin);
        let t = tamper(&p, |l| {
            let i = index_of(l, "(shutdown)");
            l.insert(i, "G1 Z450.000 F3000.000".to_string());
        });
        expect_kind(&c, t, ViolationKind::OutOfTravel);
        // Without the initial rise the first travel starts from nowhere.
        let t = tamper(&p, |l| {
            let modes = l.iter().position(|x| x == "G21 G90 G94").expect("modes");
            l.remove(modes + 1);
        });
        expect_kind(&c, t, ViolationKind::UnknownPosition);
        // Without G21 G90 G94 the units are whatever the controller had.
        let t = tamper(&p, |l| l.retain(|x| x != "G21 G90 G94"));
        expect_kind(&c, t, ViolationKind::ModalNotSet);
    }

    #[test]
    fn wrong_rig_profile_or_session_is_refused() {
        let (mut c, p) = case();
        c.plan.session = 2;
        expect_kind(&c, p.clone(), ViolationKind::SessionMismatch);
        c.rig.axes = AxisProfile::Joints;
        assert!(matches!(run(&c, p), Err(VerifyError::UnsupportedAxes { .. })), "joints rig without an arm table");
    }

    #[test]
    fn program_for_another_rig_is_refused_by_its_header() {
        let (mut c, p) = case();
        c.rig.name = "bench-rig".into();
        let err = run(&c, p.clone()).expect_err("another rig");
        let v = err.violations();
        assert_eq!(v.len(), 1, "refused before the lines are walked: {err}");
        assert_eq!((v[0].kind, v[0].line), (ViolationKind::RigMismatch, Some(3)), "{err}");
        assert!(
            v[0].detail.contains("`sim-xyz-default` (profile xyz)") && v[0].detail.contains("`bench-rig`"),
            "{err}"
        );
        let t = tamper(&p, |l| l.retain(|x| !x.starts_with("(rig ")));
        let c = synthetic_case(DOTS);
        let err = run(&c, t).expect_err("no rig header");
        assert_eq!(err.violations()[0].kind, ViolationKind::RigMismatch, "{err}");
        assert!(err.to_string().contains("names no rig"), "{err}");
    }

    /// A grbl program that ends with `M2` alone, and the ways it may not.
    #[test]
    fn grbl_program_ends_with_m2_and_nothing_after_it() {
        let (c, p) = case();
        assert_eq!(p.lines.last().map(|l| l.text.as_str()), Some("M2"));
        // No M2: refused on the last command.
        let t = tamper(&p, |l| {
            l.pop();
        });
        let n = t.lines.len();
        let v = expect_kind(&c, t, ViolationKind::ProgramEnd);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].line, Some(n), "{}", v[0]);
        assert!(v[0].detail.contains("does not end with the program end `M2`"), "{}", v[0]);
        // Motion after M2 (the final rise again), M2 twice, anything after it.
        let lines: Vec<String> = p.to_nc().lines().map(str::to_string).collect();
        let rise = lines[lines.len() - 2].replace(" (shutdown)", "");
        for extra in [rise.as_str(), "M2", "M5"] {
            let t = tamper(&p, |l| l.push(extra.to_string()));
            let n = t.lines.len();
            let v = expect_kind(&c, t, ViolationKind::ProgramEnd);
            assert_eq!(v.len(), 1, "{extra}: {v:?}");
            assert_eq!(v[0].line, Some(n), "{extra}: {}", v[0]);
            assert!(v[0].detail.contains("after the program end `M2`"), "{}", v[0]);
        }
        // Comments and blank lines after it are not commands.
        let t = tamper(&p, |l| l.extend(["".to_string(), "(end of session)".to_string()]));
        run(&c, t).expect("comments may follow M2");
        // M2 shares no line, M30 is not it.
        let t = tamper(&p, |l| {
            if let Some(last) = l.last_mut() {
                *last = "M5 M2".into();
            }
        });
        expect_kind(&c, t, ViolationKind::Malformed);
        let t = tamper(&p, |l| {
            if let Some(last) = l.last_mut() {
                *last = "M2 F100".into();
            }
        });
        expect_kind(&c, t, ViolationKind::ProgramEnd);
        let t = tamper(&p, |l| {
            if let Some(last) = l.last_mut() {
                *last = "M30".into();
            }
        });
        expect_kind(&c, t, ViolationKind::UnknownWord);
    }

    fn marlin_case() -> (SyntheticCase, Program) {
        let c = synthetic_case(DOTS);
        let opts = CompileOptions { dialect: Dialect::Marlin };
        let p = compile_with(&c.plan, &c.rig, &c.base_from_head, &opts).expect("compiles");
        (c, p)
    }

    #[test]
    fn marlin_program_verifies_with_second_dwells_and_no_program_end() {
        let (c, p) = marlin_case();
        let dwells: Vec<&str> = p.lines.iter().filter(|l| l.role == LineRole::Dwell).map(|l| l.text.as_str()).collect();
        assert_eq!(dwells.len(), DOTS);
        assert!(dwells.iter().all(|d| *d == "G4 S0.050"), "{dwells:?}");
        assert!(!p.lines.iter().any(|l| l.text == "M2"));
        let v = run(&c, p.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.report().dialect, Dialect::Marlin);
        assert_eq!(v.report().dots, DOTS);
        // Same dwell time as the grbl program: S seconds are read as seconds.
        let grbl = run(&c, case().1).expect("grbl verifies");
        assert_eq!(grbl.report().dialect, Dialect::Grbl);
        assert!((v.report().estimated_time_s - grbl.report().estimated_time_s).abs() < 1e-9);
    }

    #[test]
    fn dwell_in_the_other_dialect_is_refused_with_the_reason() {
        // grbl program with Marlin's `G4 S`: grbl would read S as the cartridge speed.
        let (c, p) = case();
        let t = rewrite(&p, "(dot 1010 dwell)", "G4 P", "G4 S");
        let v = expect_kind(&c, t, ViolationKind::Dialect);
        let d = v.iter().find(|v| v.kind == ViolationKind::Dialect).expect("dialect violation");
        assert!(d.detail.contains("`G4 S`") && d.detail.contains("not a grbl program"), "{d}");
        // Marlin program with grbl's `G4 P`: Marlin would dwell milliseconds.
        let (c, p) = marlin_case();
        let t = rewrite(&p, "(dot 1010 dwell)", "G4 S", "G4 P");
        let v = expect_kind(&c, t, ViolationKind::Dialect);
        let d = v.iter().find(|v| v.kind == ViolationKind::Dialect).expect("dialect violation");
        assert!(d.detail.contains("`G4 P` is milliseconds to Marlin"), "{d}");
        assert!(run(&c, p).is_ok());
    }

    #[test]
    fn marlin_program_has_one_command_a_line_and_no_m2() {
        let (c, p) = marlin_case();
        let t = tamper(&p, |l| {
            let i = l.iter().position(|x| x == "G21").expect("G21");
            l[i] = "G21 G90 G94".into();
        });
        let v = expect_kind(&c, t, ViolationKind::Dialect);
        assert!(v.iter().any(|v| v.detail.contains("one command per line")), "{v:?}");
        assert!(v.iter().any(|v| v.detail.contains("no `G94`")), "{v:?}");
        let t = tamper(&p, |l| l.push("M2".into()));
        let v = expect_kind(&c, t, ViolationKind::Dialect);
        assert!(v[0].detail.contains("Marlin has no program end `M2`"), "{}", v[0]);
        // Without `G90` the coordinates may be relative.
        let t = tamper(&p, |l| l.retain(|x| x != "G90"));
        expect_kind(&c, t, ViolationKind::ModalNotSet);
    }

    #[test]
    fn the_dialect_header_is_required_and_read() {
        let (c, p) = case();
        let t = tamper(&p, |l| l.retain(|x| x != "(dialect grbl)"));
        let err = run(&c, t).expect_err("no dialect");
        let v = err.violations();
        assert!(v.iter().any(|v| v.kind == ViolationKind::Dialect && v.line.is_none()), "{err}");
        assert!(err.to_string().contains("names no dialect"), "{err}");
        // A grbl program relabelled Marlin is refused on every dwell and on its modes and end.
        let t = tamper(&p, |l| {
            let i = l.iter().position(|x| x == "(dialect grbl)").expect("header");
            l[i] = "(dialect marlin)".into();
        });
        let v = expect_kind(&c, t, ViolationKind::Dialect);
        assert!(v.iter().filter(|v| v.kind == ViolationKind::Dialect).count() >= DOTS, "{}", v.len());
    }

    #[test]
    fn skin_height_matches_the_patch() {
        let c = synthetic_case(1);
        let mut skin = Skin::new(&c.map.surface, &c.base_from_head);
        for (x, y) in [(0.0, 0.0), (20.0, -10.0), (-30.0, 25.0), (49.0, 49.0)] {
            let p = c.base_from_head * dome_point_head(x, y);
            let hit = skin.at(p.x, p.y).expect("inside the patch");
            assert!((hit.z_base - p.z).abs() < 1e-6, "({x}, {y}): {} vs {}", hit.z_base, p.z);
            assert!((hit.patch_x - x).abs() < 1e-5 && (hit.patch_y - y).abs() < 1e-5);
        }
        // Far outside the patch: no surface, clearance rules.
        assert!(skin.at(-500.0, 0.0).is_none());
    }
}

//! What every profile's verifier shares around its own geometry: the header (dialect, rig),
//! the block grammar in the program's dialect, the controller's modal state as the lines
//! change it, the match of skin entries to planned dots, and the closing checks (program end,
//! metadata, session, report). The profiles differ only in how a move is traced through the
//! skin, so that is all `verify` and `verify_tilted` keep apart.
//!
//! The dialect ([`Dialect`], read from the program's `(dialect ...)` header, never assumed)
//! decides what a word means: a grbl dwell is `G4 P<seconds>` and a `G4 S` is refused (grbl
//! would take S as the cartridge speed); a Marlin dwell is `G4 S<seconds>` and a `G4 P` is
//! refused (Marlin reads P as milliseconds), a Marlin line holds one command (Marlin runs the
//! first and reads the rest as its parameters) and feeds are per minute without `G94`. A grbl
//! program must end with `M2`, alone on its line, and nothing may follow it; Marlin has no
//! `M2`.

use std::collections::{BTreeMap, HashMap};

use nalgebra::Point3;
use smp_core::arm::ARM_JOINTS;
use smp_core::plan::SessionPlan;
use smp_core::spatial::PointGrid;

use crate::dialect::Dialect;
use crate::program::Program;
use crate::verify::{
    tokenize, AxisRange, MachineNeeds, VerifiedProgram, VerifyError, VerifyReport, Violation, ViolationKind,
};

/// G0 or G1, as a block sets it (modal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Motion {
    /// grbl powers up in G0: a program that never says G1 moves at the machine's maximum rate.
    #[default]
    Rapid,
    Linear,
}

/// One line's words, checked against the grammar every profile accepts.
#[derive(Default)]
pub(crate) struct Block {
    /// Words on the line (0 for a blank or comment line).
    pub(crate) words: usize,
    pub(crate) motion: Option<Motion>,
    pub(crate) dwell: bool,
    pub(crate) units_mm: bool,
    pub(crate) absolute: bool,
    pub(crate) per_min: bool,
    pub(crate) spindle: Option<bool>,
    /// `M2`, the program end.
    pub(crate) program_end: bool,
    pub(crate) f: Option<f64>,
    /// The cartridge speed (an S word that is not a Marlin dwell's).
    pub(crate) s: Option<f64>,
    /// The dwell's seconds, as the dialect writes them (grbl `G4 P`, Marlin `G4 S`).
    pub(crate) dwell_s: Option<f64>,
    /// By position in the profile's axis letters (X Y Z, then A B or the further joints).
    pub(crate) axes: [Option<f64>; ARM_JOINTS],
}

impl Block {
    /// True when the block names an axis (a move; a dwell never does).
    pub(crate) fn moves(&self) -> bool {
        !self.dwell && self.axes.iter().any(Option::is_some)
    }
}

/// Reads a line in `dialect`, returning every violation of the grammar (the block is unusable
/// if any). `letters` are the profile's axis letters, in the order of `Block::axes`.
pub(crate) fn read_block(
    text: &str,
    letters: &[char],
    dialect: Dialect,
) -> Result<Block, Vec<(ViolationKind, String)>> {
    let words = tokenize(text).map_err(|e| vec![e])?;
    let mut b = Block { words: words.len(), ..Block::default() };
    let mut problems = Vec::new();
    let mut seen: HashMap<char, usize> = HashMap::new();
    let mut motion_words = 0;
    let mut m_words = 0;
    let mut p_word = None;
    let marlin = dialect == Dialect::Marlin;
    for w in &words {
        let int = (w.value.fract() == 0.0 && w.value >= 0.0).then_some(w.value as u32);
        let letter = w.letter;
        if letter == 'G' {
            match int {
                Some(0) => {
                    b.motion = Some(Motion::Rapid);
                    motion_words += 1;
                }
                Some(1) => {
                    b.motion = Some(Motion::Linear);
                    motion_words += 1;
                }
                Some(4) => {
                    b.dwell = true;
                    motion_words += 1;
                }
                Some(21) => b.units_mm = true,
                Some(90) => b.absolute = true,
                Some(94) if !marlin => b.per_min = true,
                Some(94) => problems.push((
                    ViolationKind::Dialect,
                    "Marlin has no `G94` (it answers `Unknown command`; its feeds are always per minute)".to_string(),
                )),
                _ => problems.push((
                    ViolationKind::UnknownWord,
                    format!(
                        "`G{}` is not allowed (only G0 G1 G4 G21 G90{})",
                        w.value,
                        if marlin { "" } else { " G94" }
                    ),
                )),
            }
            continue;
        }
        if letter == 'M' {
            m_words += 1;
            match int {
                Some(3) => b.spindle = Some(true),
                Some(5) => b.spindle = Some(false),
                Some(2) if !marlin => b.program_end = true,
                Some(2) => problems.push((
                    ViolationKind::Dialect,
                    "Marlin has no program end `M2` (it answers `Unknown command`); a Marlin program ends with its \
                     last line"
                        .to_string(),
                )),
                _ => problems.push((
                    ViolationKind::UnknownWord,
                    format!("`M{}` is not allowed (only M3 M5{})", w.value, if marlin { "" } else { " M2" }),
                )),
            }
            continue;
        }
        let axis = letters.iter().position(|&c| c == letter);
        if !(matches!(letter, 'F' | 'S' | 'P') || axis.is_some()) {
            let allowed: String = letters.iter().map(|c| format!(" {c}")).collect();
            problems.push((
                ViolationKind::UnknownWord,
                format!("word `{letter}{}` is not allowed (only G M F S P{allowed})", w.value),
            ));
            continue;
        }
        let n = seen.entry(letter).or_insert(0);
        *n += 1;
        if *n > 1 {
            problems.push((ViolationKind::Malformed, format!("word `{letter}` appears twice")));
        }
        match (letter, axis) {
            ('F', _) => b.f = Some(w.value),
            ('S', _) => b.s = Some(w.value),
            ('P', _) => p_word = Some(w.value),
            (_, Some(i)) if i < ARM_JOINTS => b.axes[i] = Some(w.value),
            _ => {}
        }
    }
    if motion_words > 1 {
        problems.push((ViolationKind::Malformed, "more than one of G0, G1, G4".to_string()));
    }
    if m_words > 1 {
        problems.push((ViolationKind::Malformed, "more than one M word".to_string()));
    }
    let g_words = words.iter().filter(|w| w.letter == 'G').count();
    if marlin && g_words + m_words > 1 {
        problems.push((
            ViolationKind::Dialect,
            "Marlin runs one command per line (the first; it reads the others as its parameters): put each G or M \
             command on its own line"
                .to_string(),
        ));
    }
    if b.program_end && words.len() > 1 {
        problems.push((ViolationKind::ProgramEnd, "the program end `M2` must stand alone on its line".to_string()));
    }
    if b.dwell {
        if b.axes.iter().any(Option::is_some) {
            problems.push((ViolationKind::Malformed, "G4 with axis words".to_string()));
        }
        let (seconds, other) = match dialect {
            // grbl: S is the spindle (cartridge) speed, even on a G4 line.
            Dialect::Grbl => (p_word, b.s.take()),
            // Marlin: S is the dwell's seconds, P its milliseconds.
            Dialect::Marlin => (b.s.take(), p_word),
        };
        if other.is_some() {
            problems.push((
                ViolationKind::Dialect,
                match dialect {
                    Dialect::Grbl => "`G4 S` is Marlin's dwell in seconds; grbl reads S as the cartridge speed and \
                                      dwells `G4 P<seconds>`: this is not a grbl program"
                        .to_string(),
                    Dialect::Marlin => "`G4 P` is milliseconds to Marlin, so this dwell would last a thousandth of \
                                        the time; a Marlin program dwells `G4 S<seconds>`"
                        .to_string(),
                },
            ));
        }
        let word = if dialect == Dialect::Grbl { 'P' } else { 'S' };
        match seconds {
            Some(v) if v.is_finite() && v >= 0.0 => b.dwell_s = Some(v),
            _ if other.is_some() => {}
            _ => problems.push((ViolationKind::Malformed, format!("G4 needs a {word} word of seconds >= 0"))),
        }
    } else if p_word.is_some() {
        problems.push((ViolationKind::Malformed, "P word without G4".to_string()));
    }
    if let Some(f) = b.f {
        if !(f.is_finite() && f > 0.0) {
            problems.push((ViolationKind::Malformed, format!("feed F{f} must be positive")));
        }
    }
    if let Some(s) = b.s {
        if !(s.is_finite() && s >= 0.0) {
            problems.push((ViolationKind::Malformed, format!("speed S{s} must be >= 0")));
        }
    }
    if problems.is_empty() {
        Ok(b)
    } else {
        Err(problems)
    }
}

/// Reads line `text` in the modal state's dialect, applies it to `modal`, and returns it when
/// it moves; its grammar problems, a command after the program end and a move before the
/// modes are set go to `report`.
pub(crate) fn read_move(
    text: &str,
    letters: &[char],
    modal: &mut Modal,
    mut report: impl FnMut(ViolationKind, String),
) -> Option<Block> {
    let block = match read_block(text, letters, modal.dialect) {
        Ok(b) => b,
        Err(problems) => {
            for (kind, detail) in problems {
                report(kind, detail);
            }
            return None;
        }
    };
    if modal.ended && block.words > 0 {
        report(
            ViolationKind::ProgramEnd,
            "a command after the program end `M2`: grbl would run it as the start of another program; `M2` must \
             be the last command"
                .to_string(),
        );
    }
    modal.apply(&block);
    if !block.moves() {
        return None;
    }
    if let Some((kind, detail)) = modal.unset_modes() {
        report(kind, detail);
    }
    Some(block)
}

/// The controller's modal state as the program sets it, and the dwell time so far.
#[derive(Debug, Default)]
pub(crate) struct Modal {
    pub(crate) dialect: Dialect,
    pub(crate) motion: Motion,
    pub(crate) feed_mm_per_min: Option<f64>,
    spindle_on: bool,
    spindle_s: f64,
    units_mm: bool,
    absolute: bool,
    per_min: bool,
    /// The program end `M2` has been read.
    ended: bool,
    /// Seconds of `G4` so far (moves are timed by each profile).
    pub(crate) dwell_s: f64,
}

impl Modal {
    /// The power-up state of a controller speaking `dialect` (grbl: G0; Marlin's feeds are
    /// always per minute).
    pub(crate) fn new(dialect: Dialect) -> Self {
        Modal { dialect, per_min: dialect == Dialect::Marlin, ..Modal::default() }
    }

    /// Applies a block in grbl's order of execution (feed, spindle, dwell, modes, motion).
    pub(crate) fn apply(&mut self, b: &Block) {
        if b.f.is_some() {
            self.feed_mm_per_min = b.f;
        }
        if let Some(s) = b.s {
            self.spindle_s = s;
        }
        if let Some(on) = b.spindle {
            self.spindle_on = on;
        }
        if b.dwell {
            self.dwell_s += b.dwell_s.unwrap_or(0.0);
        }
        if b.program_end {
            // grbl's M2 stops the spindle (and resets the modes; nothing may follow it).
            self.spindle_on = false;
            self.ended = true;
        }
        self.units_mm |= b.units_mm;
        self.absolute |= b.absolute;
        self.per_min |= b.per_min;
        if let Some(m) = b.motion {
            self.motion = m;
        }
    }

    /// The cartridge runs only with M3 and a speed above zero.
    pub(crate) fn cartridge_on(&self) -> bool {
        self.spindle_on && self.spindle_s > 0.0
    }

    /// The violation of a move made before `G21 G90 G94` (Marlin: `G21` and `G90`): the
    /// numbers would mean something else.
    pub(crate) fn unset_modes(&self) -> Option<(ViolationKind, String)> {
        (!(self.units_mm && self.absolute && self.per_min)).then(|| {
            let detail = match self.dialect {
                Dialect::Grbl => "motion before `G21 G90 G94` set mm, absolute and mm/min",
                Dialect::Marlin => "motion before `G21` and `G90` set mm and absolute",
            };
            (ViolationKind::ModalNotSet, detail.to_string())
        })
    }
}

/// A violation of program line `line` (1-based), quoting its text.
pub(crate) fn at_line(program: &Program, line: usize, kind: ViolationKind, detail: String) -> Violation {
    Violation { line: Some(line), text: program.lines[line - 1].text.clone(), kind, detail }
}

/// A violation of the program as a whole.
pub(crate) fn whole(kind: ViolationKind, detail: String) -> Violation {
    Violation { line: None, text: String::new(), kind, detail }
}

/// Planned dots as the profile matches entries against them.
pub(crate) struct PlannedDots {
    /// Dot id and entry point in the base frame.
    dots: Vec<(u32, Point3<f64>)>,
    /// Entry points keyed as the profile compares them (the 3-axis profile ignores height).
    grid: PointGrid,
    match_mm: f64,
    key: fn(&Point3<f64>) -> [f64; 3],
}

impl PlannedDots {
    /// `key` maps a base-frame point to the coordinates entries are compared in; an entry
    /// within `match_mm` of a dot's key is that dot's plunge.
    pub(crate) fn new(dots: Vec<(u32, Point3<f64>)>, match_mm: f64, key: fn(&Point3<f64>) -> [f64; 3]) -> Self {
        let grid = PointGrid::from_points(0.5, dots.iter().map(|(_, p)| key(p)));
        PlannedDots { dots, grid, match_mm, key }
    }

    /// Matches skin entries `(line, base point)` to dots: a repeated or unplanned entry and a
    /// dot never entered are violations. Returns how often each dot was entered and the dot
    /// each plunge line enters.
    pub(crate) fn match_entries(
        &self,
        program: &Program,
        entries: impl IntoIterator<Item = (usize, Point3<f64>)>,
        violations: &mut Vec<Violation>,
    ) -> (Vec<usize>, BTreeMap<usize, u32>) {
        let mut count = vec![0usize; self.dots.len()];
        let mut plunge_of: BTreeMap<usize, u32> = BTreeMap::new();
        for (line, p) in entries {
            let key = (self.key)(&p);
            match self.grid.nearest_within(key, self.match_mm) {
                Some((i, _)) => {
                    let i = i as usize;
                    count[i] += 1;
                    if count[i] > 1 {
                        let detail = format!("enters dot {} again (entry number {})", self.dots[i].0, count[i]);
                        violations.push(at_line(program, line, ViolationKind::RepeatedDot, detail));
                    }
                    plunge_of.insert(line, self.dots[i].0);
                }
                None => {
                    let near = self
                        .grid
                        .nearest_within(key, 5.0)
                        .map(|(i, d)| format!("; nearest planned dot {} is {d:.3} mm away", self.dots[i as usize].0))
                        .unwrap_or_default();
                    let detail = format!(
                        "enters the skin at ({:.3}, {:.3}, {:.3}), where no dot is planned{near}",
                        p.x, p.y, p.z
                    );
                    violations.push(at_line(program, line, ViolationKind::PlungeNotInPlan, detail));
                }
            }
        }
        for (i, (id, p)) in self.dots.iter().enumerate() {
            if count[i] == 0 {
                let detail = format!("dot {id} (base {:.3}, {:.3}, {:.3}) is never entered", p.x, p.y, p.z);
                violations.push(whole(ViolationKind::MissedDot, detail));
            }
        }
        (count, plunge_of)
    }
}

/// What a profile's walk measured, for the report.
pub(crate) struct WalkFigures {
    /// The dialect the lines were read in.
    pub(crate) dialect: Dialect,
    pub(crate) max_depth_mm: f64,
    pub(crate) max_feed_mm_per_min: f64,
    pub(crate) estimated_time_s: f64,
    pub(crate) clearance_z_mm: f64,
}

/// The closing checks every profile makes once its lines are walked: the program ends with
/// its dialect's program end, the executor's metadata says what the text does, the program is
/// for this session, and no violation was found.
pub(crate) fn finish(
    program: Program,
    plan: &SessionPlan,
    count: &[usize],
    plunge_of: &BTreeMap<usize, u32>,
    mut violations: Vec<Violation>,
    figures: WalkFigures,
) -> Result<VerifiedProgram, VerifyError> {
    super::header::check_program_end(&program, figures.dialect, &mut violations);
    crate::verify_tilted::check_metadata(&program, plunge_of, &mut violations);
    if program.session != plan.session {
        let detail = format!("program is for session {}, the plan is session {}", program.session, plan.session);
        violations.push(whole(ViolationKind::SessionMismatch, detail));
    }
    if !violations.is_empty() {
        violations.sort_by_key(|v| (v.line.unwrap_or(usize::MAX), v.kind));
        return Err(VerifyError::Violations(violations));
    }
    let report = VerifyReport {
        max_depth_mm: figures.max_depth_mm.max(0.0),
        max_feed_mm_per_min: figures.max_feed_mm_per_min,
        dots: count.iter().filter(|&&c| c == 1).count(),
        lines: program.lines.len(),
        estimated_time_s: figures.estimated_time_s,
        clearance_z_mm: figures.clearance_z_mm,
        dialect: figures.dialect,
        needs: machine_needs(&program, figures.dialect),
    };
    Ok(VerifiedProgram { program, report })
}

/// Axis ranges and cartridge speeds of a verified program (every line reads; absolute mode).
fn machine_needs(program: &Program, dialect: Dialect) -> MachineNeeds {
    const LETTERS: [char; ARM_JOINTS] = ['X', 'Y', 'Z', 'A', 'B', 'C'];
    let mut ranges: [Option<(f64, f64)>; ARM_JOINTS] = [None; ARM_JOINTS];
    let mut needs = MachineNeeds::default();
    for line in &program.lines {
        let Ok(b) = read_block(&line.text, &LETTERS, dialect) else { continue };
        for (r, v) in ranges.iter_mut().zip(b.axes) {
            if let Some(v) = v {
                *r = Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
            }
        }
        if let Some(s) = b.s.filter(|s| *s > 0.0) {
            needs.max_spindle_rpm = needs.max_spindle_rpm.max(s);
            needs.min_spindle_rpm = if needs.min_spindle_rpm == 0.0 { s } else { needs.min_spindle_rpm.min(s) };
        }
    }
    needs.axes = LETTERS
        .iter()
        .zip(ranges)
        .filter_map(|(&letter, r)| r.map(|(min, max)| AxisRange { letter, min, max }))
        .collect();
    needs
}

#[cfg(test)]
mod tests {
    use super::*;

    const XYZ: [char; 3] = ['X', 'Y', 'Z'];

    #[test]
    fn grammar_problems_are_all_named() {
        let e = read_block("G1 G4 X1 X2 M3 M5 Q1", &XYZ, Dialect::Grbl).err().unwrap_or_default();
        let kinds: Vec<_> = e.iter().map(|(k, _)| *k).collect();
        assert!(kinds.contains(&ViolationKind::UnknownWord), "{e:?}");
        assert!(e.iter().any(|(_, d)| d.contains("appears twice")), "{e:?}");
        assert!(e.iter().any(|(_, d)| d.contains("more than one M word")), "{e:?}");
        assert!(e.iter().any(|(_, d)| d.contains("more than one of G0, G1, G4")), "{e:?}");
        assert!(e.iter().any(|(_, d)| d.contains("G4 with axis words")), "{e:?}");
    }

    #[test]
    fn a_letter_outside_the_profile_is_refused() {
        assert!(read_block("G1 A10", &XYZ, Dialect::Grbl).is_err());
        let b = read_block("G1 A10", &['X', 'Y', 'Z', 'A', 'B'], Dialect::Grbl).ok().map(|b| b.axes[3]);
        assert_eq!(b, Some(Some(10.0)));
    }

    #[test]
    fn modes_accumulate_and_dwell_is_timed() {
        let mut m = Modal::new(Dialect::Grbl);
        assert_eq!(m.motion, Motion::Rapid, "grbl powers up in G0");
        for line in ["G21 G90", "G94 M3 S1000", "G1 F600", "G4 P0.05", "G4 P0.1"] {
            let b = read_block(line, &XYZ, Dialect::Grbl).ok();
            assert!(b.is_some(), "{line}");
            if let Some(b) = b {
                m.apply(&b);
            }
        }
        assert!(m.unset_modes().is_none());
        assert!(m.cartridge_on());
        assert_eq!(m.motion, Motion::Linear);
        assert_eq!(m.feed_mm_per_min, Some(600.0));
        assert!((m.dwell_s - 0.15).abs() < 1e-12);
        let mut partial = Modal::new(Dialect::Grbl);
        if let Ok(b) = read_block("G21 G90", &XYZ, Dialect::Grbl) {
            partial.apply(&b);
        }
        assert!(partial.unset_modes().is_some(), "G94 missing");
    }

    /// The same dwell in each dialect, and each dialect's refusals.
    #[test]
    fn dwell_words_follow_the_dialect() {
        let kinds = |text: &str, d: Dialect| -> Vec<ViolationKind> {
            read_block(text, &XYZ, d).err().unwrap_or_default().into_iter().map(|(k, _)| k).collect()
        };
        let mut marlin = Modal::new(Dialect::Marlin);
        for line in ["G21", "G90", "M3 S1000", "G1 F600", "G4 S0.05", "G4 S0.1"] {
            match read_block(line, &XYZ, Dialect::Marlin) {
                Ok(b) => marlin.apply(&b),
                Err(e) => panic!("{line}: {e:?}"),
            }
        }
        assert!(marlin.unset_modes().is_none(), "Marlin's feeds are per minute without G94");
        assert!((marlin.dwell_s - 0.15).abs() < 1e-12);
        assert!(marlin.cartridge_on(), "a dwell's S is not the cartridge speed");
        assert_eq!(kinds("G4 P50", Dialect::Marlin), [ViolationKind::Dialect]);
        assert_eq!(kinds("G4 S0.05", Dialect::Grbl), [ViolationKind::Dialect]);
        assert_eq!(kinds("G4 P0.05 S9000", Dialect::Grbl), [ViolationKind::Dialect]);
        assert_eq!(kinds("G4", Dialect::Marlin), [ViolationKind::Malformed]);
        assert_eq!(kinds("G4", Dialect::Grbl), [ViolationKind::Malformed]);
        assert_eq!(kinds("G21 G90", Dialect::Marlin), [ViolationKind::Dialect]);
        assert_eq!(kinds("G94", Dialect::Marlin), [ViolationKind::Dialect]);
        assert_eq!(kinds("M2", Dialect::Marlin), [ViolationKind::Dialect]);
        assert!(kinds("M2", Dialect::Grbl).is_empty());
        assert!(kinds("G21 G90 G94", Dialect::Grbl).is_empty());
        let mut grbl = Modal::new(Dialect::Grbl);
        if let Ok(b) = read_block("M3 S1000", &XYZ, Dialect::Grbl) {
            grbl.apply(&b);
        }
        assert!(grbl.cartridge_on());
        if let Ok(b) = read_block("M2", &XYZ, Dialect::Grbl) {
            grbl.apply(&b);
        }
        assert!(!grbl.cartridge_on(), "grbl's M2 stops the spindle");
    }
}

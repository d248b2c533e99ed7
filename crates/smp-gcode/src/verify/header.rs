//! What frames the program's moves: the header comments that say which machine and dialect
//! the text is for, and the program end. The verifier reads both from the text, as it reads
//! everything else; the compiler's word is not taken.
//!
//! - `(rig NAME, profile P, units U)`: a program is proved against one rig's travel, limits
//!   and kinematics; one compiled for another rig (another name or axes profile) is refused
//!   before its lines are walked, since a 5-axis program read with a 3-axis model (or the
//!   other way round) proves nothing.
//! - `(dialect grbl)` / `(dialect marlin)`: what `G4 P`, `G4 S` and `M2` mean
//!   ([`crate::Dialect`]); without it the program is refused.
//! - a grbl program's last command is `M2`, alone on its line.

use smp_core::rig::Rig;

use crate::compile::{profile_name, rig_comment_name};
use crate::dialect::Dialect;
use crate::program::Program;
use crate::verify::{tokenize, VerifyError, Violation, ViolationKind};

use super::walk::{at_line, whole};

/// The header comment lines: every comment line before the first command, with its index.
fn header_lines(program: &Program) -> impl Iterator<Item = (usize, &str)> {
    program
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i, l.text.trim()))
        .filter(|(_, t)| !t.is_empty())
        .take_while(|(_, t)| t.starts_with('('))
}

/// Name and profile of a `(rig NAME, profile P, units U)` comment.
fn parse_rig_comment(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("(rig ")?.strip_suffix(')')?;
    let at = rest.rfind(", profile ")?;
    let profile = rest[at + ", profile ".len()..].split(',').next()?.trim();
    Some((&rest[..at], profile))
}

/// Refuses a program whose header names another rig than `rig` (name as the compiler writes
/// it, and axes profile), or no rig at all.
pub(crate) fn check_rig(program: &Program, rig: &Rig) -> Result<(), VerifyError> {
    let want_name = rig_comment_name(rig);
    let want_profile = profile_name(rig.axes);
    let found = header_lines(program).find_map(|(i, t)| parse_rig_comment(t).map(|r| (i, r)));
    let violation = match found {
        Some((_, (name, profile))) if name == want_name && profile == want_profile => return Ok(()),
        Some((i, (name, profile))) => at_line(
            program,
            i + 1,
            ViolationKind::RigMismatch,
            format!(
                "the program was compiled for rig `{name}` (profile {profile}), but is verified against rig \
                 `{want_name}` (profile {want_profile}); verify it against the rig it was compiled for"
            ),
        ),
        None => whole(
            ViolationKind::RigMismatch,
            format!(
                "the program's header names no rig (`(rig NAME, profile P, units U)`), so it cannot be checked \
                 against rig `{want_name}` (profile {want_profile}); re-compile it with smp"
            ),
        ),
    };
    Err(VerifyError::Violations(vec![violation]))
}

/// The program's dialect from its header. A missing or unreadable header is a violation, and
/// the lines are then read as grbl so that their other faults are still reported.
pub(crate) fn read_dialect(program: &Program, violations: &mut Vec<Violation>) -> Dialect {
    match program.dialect() {
        Ok(d) => d,
        Err(e) => {
            violations.push(match e.line {
                Some(line) => at_line(program, line, ViolationKind::Dialect, e.problem),
                None => whole(ViolationKind::Dialect, e.problem),
            });
            Dialect::Grbl
        }
    }
}

/// A dialect with a program end (grbl's `M2`) must have it as its last command. A program
/// already refused for a misplaced `M2` (a command after it, or words beside it) is not
/// refused twice.
pub(crate) fn check_program_end(program: &Program, dialect: Dialect, violations: &mut Vec<Violation>) {
    let Some(end) = dialect.program_end() else { return };
    if violations.iter().any(|v| v.kind == ViolationKind::ProgramEnd) {
        return;
    }
    let words = |i: usize| tokenize(&program.lines[i].text).ok();
    let last = (0..program.lines.len()).rev().find(|&i| words(i).is_none_or(|w| !w.is_empty()));
    let is_end = |i: usize| words(i).is_some_and(|w| matches!(w.as_slice(), [w] if w.letter == 'M' && w.value == 2.0));
    if last.is_some_and(is_end) {
        return;
    }
    let detail = format!(
        "the program does not end with the program end `{end}` (after the cartridge stop and the final \
         retract), which {dialect} programs must; re-compile it"
    );
    violations.push(match last {
        Some(i) => at_line(program, i + 1, ViolationKind::ProgramEnd, detail),
        None => whole(ViolationKind::ProgramEnd, detail),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rig_comments_are_read_by_their_last_profile_word() {
        assert_eq!(parse_rig_comment("(rig sim-xyz-default, profile xyz, units mm)"), Some(("sim-xyz-default", "xyz")));
        assert_eq!(
            parse_rig_comment("(rig a, profile b, c, profile joints, units mm deg)"),
            Some(("a, profile b, c", "joints"))
        );
        assert_eq!(parse_rig_comment("(rig x)"), None);
        assert_eq!(parse_rig_comment("(smp session 1)"), None);
    }
}

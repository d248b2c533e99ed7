//! The controller firmware's G-code dialect: what the compiler writes for it, and what the
//! verifier reads back from the program's header.
//!
//! The two dialects the executor streams differ in what the words mean:
//!
//! | | grbl 1.1 | Marlin 2.x |
//! | --- | --- | --- |
//! | dwell | `G4 P<seconds>` (`S` is the spindle speed) | `G4 S<seconds>` (`P` is **milliseconds**) |
//! | commands per line | any number (`G21 G90 G94`) | one: the first word is the command, the rest its parameters |
//! | feed per minute | `G94` | always (no `G94`: Marlin answers `Unknown command`) |
//! | program end | `M2` (synchronises, stops the spindle, `[MSG:Pgm End]`) | none (`M2` is an unknown command) |
//!
//! So a grbl dwell streamed to Marlin as it is would last a thousandth of its time, and
//! Marlin runs only `G21` of `G21 G90 G94`. The program records its dialect in a header
//! comment (`(dialect grbl)`, `(dialect marlin)`, see [`Dialect::header`]) so that the text
//! the verifier proves is the text that goes on the wire.

use serde::{Deserialize, Serialize};

use crate::program::Program;

/// The G-code dialect of the controller a program is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// grbl 1.1 (and grblHAL, FluidNC): `G4 P` seconds, ends with `M2`.
    #[default]
    Grbl,
    /// Marlin 2.x: `G4 S` seconds, one command per line, no program end.
    Marlin,
}

impl Dialect {
    pub const ALL: [Dialect; 2] = [Dialect::Grbl, Dialect::Marlin];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Grbl => "grbl",
            Dialect::Marlin => "marlin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Dialect::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The header comment that records the dialect: `(dialect grbl)`.
    pub fn header(self) -> String {
        format!("{HEADER_PREFIX}{})", self.as_str())
    }

    /// The lines that set millimetres, absolute coordinates and feed per minute.
    pub fn modal_setup(self) -> &'static [&'static str] {
        match self {
            Dialect::Grbl => &["G21 G90 G94"],
            // One command per line; Marlin's feeds are always per minute.
            Dialect::Marlin => &["G21", "G90"],
        }
    }

    /// The dwell line for `seconds` (written with 3 decimals).
    pub fn dwell(self, seconds: f64) -> String {
        let s = crate::program::fmt3(seconds);
        match self {
            Dialect::Grbl => format!("G4 P{s}"),
            Dialect::Marlin => format!("G4 S{s}"),
        }
    }

    /// The program end the dialect's last line must be, if it has one.
    pub fn program_end(self) -> Option<&'static str> {
        match self {
            Dialect::Grbl => Some("M2"),
            Dialect::Marlin => None,
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEADER_PREFIX: &str = "(dialect ";

/// Why a program's dialect cannot be read from its header, with the line (1-based) at fault
/// when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialectError {
    pub line: Option<usize>,
    pub problem: String,
}

impl Program {
    /// The dialect the program's header comment names (`(dialect grbl)` or
    /// `(dialect marlin)`, among the comment lines before the first command). There is no
    /// default: a program without the header is refused, since `G4 P` means seconds to grbl
    /// and milliseconds to Marlin.
    pub fn dialect(&self) -> Result<Dialect, DialectError> {
        let mut found: Option<(usize, Dialect)> = None;
        for (idx, line) in self.lines.iter().enumerate() {
            let text = line.text.trim();
            if text.is_empty() {
                continue;
            }
            if !text.starts_with('(') {
                break; // the header ends at the first command
            }
            let Some(rest) = text.strip_prefix(HEADER_PREFIX) else { continue };
            let name = rest.strip_suffix(')').unwrap_or(rest).trim();
            let Some(d) = Dialect::parse(name) else {
                return Err(DialectError {
                    line: Some(idx + 1),
                    problem: format!("names dialect `{name}`; smp writes `(dialect grbl)` or `(dialect marlin)`"),
                });
            };
            match found {
                Some((_, prev)) if prev != d => {
                    return Err(DialectError {
                        line: Some(idx + 1),
                        problem: format!("names dialect {d} after the header named {prev}"),
                    });
                }
                _ => found = Some((idx + 1, d)),
            }
        }
        found.map(|(_, d)| d).ok_or_else(|| DialectError {
            line: None,
            problem: "the program's header names no dialect (`(dialect grbl)` or `(dialect marlin)`): `G4 P` means \
                      seconds to grbl and milliseconds to Marlin; re-compile the program with smp"
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{LineRole, ProgramLine};

    fn program(texts: &[&str]) -> Program {
        let lines =
            texts.iter().map(|t| ProgramLine { text: t.to_string(), dot_id: None, role: LineRole::Setup }).collect();
        Program { session: 1, lines }
    }

    #[test]
    fn header_round_trips_and_is_read_only_before_the_first_command() {
        for d in Dialect::ALL {
            assert_eq!(Dialect::parse(d.as_str()), Some(d));
            assert_eq!(program(&["(smp session 1)", &d.header(), "G21"]).dialect(), Ok(d));
        }
        assert_eq!(Dialect::Grbl.header(), "(dialect grbl)");
        let late = program(&["(smp session 1)", "G21", "(dialect marlin)"]).dialect().expect_err("after a command");
        assert_eq!(late.line, None);
        assert!(late.problem.contains("names no dialect"), "{}", late.problem);
    }

    #[test]
    fn unknown_or_contradictory_dialects_name_the_line() {
        let e = program(&["(smp session 1)", "(dialect reprap)"]).dialect().expect_err("unknown");
        assert_eq!(e.line, Some(2));
        assert!(e.problem.contains("reprap"), "{}", e.problem);
        let e = program(&["(dialect grbl)", "(dialect marlin)"]).dialect().expect_err("two");
        assert_eq!(e.line, Some(2));
        assert_eq!(program(&["(dialect grbl)", "(dialect grbl)"]).dialect(), Ok(Dialect::Grbl));
    }

    #[test]
    fn dwell_and_setup_differ_by_dialect() {
        assert_eq!(Dialect::Grbl.dwell(0.05), "G4 P0.050");
        assert_eq!(Dialect::Marlin.dwell(0.05), "G4 S0.050");
        assert_eq!(Dialect::Grbl.modal_setup(), ["G21 G90 G94"]);
        assert_eq!(Dialect::Marlin.modal_setup(), ["G21", "G90"]);
        assert_eq!(Dialect::Grbl.program_end(), Some("M2"));
        assert_eq!(Dialect::Marlin.program_end(), None);
    }
}

//! A G-code program as lines with metadata, its `.nc` text form and the parser back.
//!
//! Each [`ProgramLine`] holds the exact G-code that goes on the wire (`text`) plus the dot it
//! belongs to and its role. The metadata is what the executor uses to journal dot states, so
//! it must survive a round trip through a file: [`Program::to_nc`] appends it as a trailing
//! comment (`(dot 17 plunge)`, `(shutdown)`), which grbl ignores, and [`parse_nc`] strips it
//! back off. Setup lines without a dot carry no annotation.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest `.nc` line (annotation included) the compiler writes; grbl's own limit is 80.
pub const MAX_NC_LINE_CHARS: usize = 70;
/// Programs of the tilting profiles (`xyzab`, `joints`) carry five or six axis words: their G-code text (what goes on
/// the wire) is held to [`MAX_NC_LINE_CHARS`] and the `.nc` line with its annotation to this.
pub const MAX_JOINT_NC_LINE_CHARS: usize = 100;
/// Longest G-code text (annotation excluded) [`parse_nc`] accepts: grbl's line buffer.
pub const MAX_CODE_CHARS: usize = 80;

/// What a line is for; the executor keys dot states off `Plunge` and `Dwell`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineRole {
    /// Header comments, modal setup, safe-height move, cartridge start.
    Setup,
    /// Move above the next dot at travel height.
    Travel,
    /// Vertical descent from travel height to the dot's hover height.
    Approach,
    /// Needle down through the skin to the planned depth.
    Plunge,
    /// `G4`: grbl synchronises the planner on it, so its `ok` means the plunge is done.
    Dwell,
    /// Needle back up to hover height.
    Retract,
    /// Cartridge stop and final safe-height move.
    Shutdown,
}

impl LineRole {
    pub const ALL: [LineRole; 7] = [
        LineRole::Setup,
        LineRole::Travel,
        LineRole::Approach,
        LineRole::Plunge,
        LineRole::Dwell,
        LineRole::Retract,
        LineRole::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LineRole::Setup => "setup",
            LineRole::Travel => "travel",
            LineRole::Approach => "approach",
            LineRole::Plunge => "plunge",
            LineRole::Dwell => "dwell",
            LineRole::Retract => "retract",
            LineRole::Shutdown => "shutdown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        LineRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// One line of a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramLine {
    /// The G-code sent to the controller, without the metadata annotation.
    pub text: String,
    /// The planned dot this line serves, if any.
    pub dot_id: Option<u32>,
    pub role: LineRole,
}

impl ProgramLine {
    /// The metadata annotation [`Program::to_nc`] appends, if this line needs one.
    pub fn annotation(&self) -> Option<String> {
        match (self.dot_id, self.role) {
            (Some(id), role) => Some(format!("(dot {id} {})", role.as_str())),
            (None, LineRole::Setup) => None,
            (None, role) => Some(format!("({})", role.as_str())),
        }
    }

    /// The line as written to a `.nc` file: text plus annotation.
    pub fn to_nc_line(&self) -> String {
        match self.annotation() {
            Some(a) if self.text.is_empty() => a,
            Some(a) => format!("{} {a}", self.text),
            None => self.text.clone(),
        }
    }
}

/// A compiled session program. Line `i` of the vector is line `i + 1` of the `.nc` text, so
/// line numbers in verifier reports and parse errors point at both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub session: u32,
    pub lines: Vec<ProgramLine>,
}

impl Program {
    /// The `.nc` text: one line per [`ProgramLine`], `\n`-terminated, metadata as comments.
    pub fn to_nc(&self) -> String {
        let mut out = String::with_capacity(self.lines.len() * 48);
        for line in &self.lines {
            out.push_str(&line.to_nc_line());
            out.push('\n');
        }
        out
    }

    /// Number of distinct dots the metadata names (plunge lines).
    pub fn dot_count(&self) -> usize {
        self.lines.iter().filter(|l| l.role == LineRole::Plunge && l.dot_id.is_some()).count()
    }
}

/// A `.nc` file that cannot be read back as a program; each variant names the line.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error(
        "line {line}: holds a non-ASCII or control character; grbl only takes printable ASCII, re-export the program"
    )]
    NonAscii { line: usize },
    #[error(
        "line {line}: {len} characters, more than grbl's 80 (or 100 with the annotation); the file was not written \
         by smp or was edited"
    )]
    LineTooLong { line: usize, len: usize },
    #[error("line {line}: annotation `{annotation}` {problem}")]
    BadAnnotation { line: usize, annotation: String, problem: String },
    #[error("no `(smp session N ...)` header comment; a program file must start with the header smp writes")]
    MissingSession,
}

/// Splits a trailing metadata annotation off a `.nc` line. Returns the G-code text and the
/// annotation's content (inside the parentheses) when the line ends in one that looks like
/// ours: `(dot <id> <role>)` or `(<role>)` for a known role.
fn split_annotation(line: &str) -> (&str, Option<&str>) {
    let trimmed = line.trim_end();
    if !trimmed.ends_with(')') {
        return (trimmed, None);
    }
    let Some(open) = trimmed.rfind('(') else {
        return (trimmed, None);
    };
    let inner = &trimmed[open + 1..trimmed.len() - 1];
    let looks_like_ours = inner.starts_with("dot ") || LineRole::parse(inner).is_some();
    if !looks_like_ours {
        return (trimmed, None);
    }
    (trimmed[..open].trim_end(), Some(inner))
}

/// Parses `.nc` text written by [`Program::to_nc`] back into a [`Program`].
///
/// The session number comes from the header comment `(smp session N ...)`. Lines without an
/// annotation are `Setup` lines with no dot.
pub fn parse_nc(text: &str) -> Result<Program, ParseError> {
    let mut lines = Vec::new();
    let mut session = None;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.bytes().any(|b| !(0x20..0x7f).contains(&b) && b != b'\t') {
            return Err(ParseError::NonAscii { line: line_no });
        }
        if raw.len() > MAX_JOINT_NC_LINE_CHARS {
            return Err(ParseError::LineTooLong { line: line_no, len: raw.len() });
        }
        let (code, annotation) = split_annotation(raw);
        if code.len() > MAX_CODE_CHARS {
            return Err(ParseError::LineTooLong { line: line_no, len: code.len() });
        }
        let (dot_id, role) = match annotation {
            None => (None, LineRole::Setup),
            Some(a) => parse_annotation(a).map_err(|problem| ParseError::BadAnnotation {
                line: line_no,
                annotation: format!("({a})"),
                problem,
            })?,
        };
        if session.is_none() && role == LineRole::Setup {
            session = header_session(code);
        }
        lines.push(ProgramLine { text: code.to_string(), dot_id, role });
    }
    let session = session.ok_or(ParseError::MissingSession)?;
    Ok(Program { session, lines })
}

fn parse_annotation(a: &str) -> Result<(Option<u32>, LineRole), String> {
    if let Some(rest) = a.strip_prefix("dot ") {
        let mut parts = rest.split(' ');
        let (Some(id), Some(role), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("is not of the form `(dot <id> <role>)`".to_string());
        };
        let id: u32 = id.parse().map_err(|_| format!("has dot id `{id}`, which is not a non-negative integer"))?;
        let role = LineRole::parse(role).ok_or_else(|| {
            format!("has role `{role}`; known roles are setup, travel, approach, plunge, dwell, retract, shutdown")
        })?;
        Ok((Some(id), role))
    } else {
        // split_annotation only hands over known roles here.
        LineRole::parse(a).map(|r| (None, r)).ok_or_else(|| "names no known role".to_string())
    }
}

/// Session number of a header comment `(smp session N ...)`.
pub(crate) fn header_session(code: &str) -> Option<u32> {
    let inner = code.strip_prefix('(')?;
    let rest = inner.strip_prefix("smp session ")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Formats a millimetre (or mm/min, or second) value with 3 decimals, never `-0.000`.
pub(crate) fn fmt3(v: f64) -> String {
    let s = format!("{v:.3}");
    if s == "-0.000" {
        "0.000".to_string()
    } else {
        s
    }
}

/// Formats a value with 4 decimals (joint angles in degrees), never `-0.0000`.
pub(crate) fn fmt4(v: f64) -> String {
    let s = format!("{v:.4}");
    if s == "-0.0000" {
        "0.0000".to_string()
    } else {
        s
    }
}

/// Rounds a positive feed down to 3 decimals, so that the written feed never exceeds the one
/// computed (a slower move is always the safe side).
pub(crate) fn floor3(v: f64) -> f64 {
    (v * 1000.0).floor() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt3_has_no_negative_zero() {
        assert_eq!(fmt3(-0.0001), "0.000");
        assert_eq!(fmt3(1.23456), "1.235");
        assert_eq!(fmt3(-12.0), "-12.000");
    }

    #[test]
    fn annotations_round_trip() {
        let p = Program {
            session: 3,
            lines: vec![
                ProgramLine { text: "(smp session 3, 1 dots)".into(), dot_id: None, role: LineRole::Setup },
                ProgramLine { text: "G21 G90 G94".into(), dot_id: None, role: LineRole::Setup },
                ProgramLine { text: "G1 Z1.000 F100.000".into(), dot_id: Some(17), role: LineRole::Plunge },
                ProgramLine { text: "M5".into(), dot_id: None, role: LineRole::Shutdown },
            ],
        };
        let nc = p.to_nc();
        assert!(nc.contains("G1 Z1.000 F100.000 (dot 17 plunge)\n"), "{nc}");
        assert!(nc.contains("M5 (shutdown)\n"), "{nc}");
        assert_eq!(parse_nc(&nc), Ok(p));
    }

    #[test]
    fn bad_annotation_names_the_line() {
        let nc = "(smp session 1)\nG1 Z1 F1 (dot x plunge)\n";
        match parse_nc(nc) {
            Err(ParseError::BadAnnotation { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a bad annotation on line 2, got {other:?}"),
        }
        let nc = "(smp session 1)\nG1 Z1 F1 (dot 4 stab)\n";
        assert!(matches!(parse_nc(nc), Err(ParseError::BadAnnotation { line: 2, .. })));
    }

    #[test]
    fn missing_header_and_non_ascii_are_errors() {
        assert_eq!(parse_nc("G21\n"), Err(ParseError::MissingSession));
        assert_eq!(parse_nc("(smp session 1)\nG1 X1é\n"), Err(ParseError::NonAscii { line: 2 }));
    }

    #[test]
    fn ordinary_trailing_comments_stay_in_the_text() {
        let p = parse_nc("(smp session 2)\nG1 X1 F5 (hello)\n").expect("parses");
        assert_eq!(p.session, 2);
        assert_eq!(p.lines[1].text, "G1 X1 F5 (hello)");
        assert_eq!(p.lines[1].role, LineRole::Setup);
    }
}

/// Why a line cannot go on a serial line to a controller as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineCharProblem {
    NonAscii,
    ControlCharacter,
}

/// The character check every streaming protocol makes before it queues a line: ASCII only,
/// no control characters but tab (a stray CR, LF or real-time byte would split or hijack it).
pub(crate) fn check_line_chars(line: &str) -> Result<(), LineCharProblem> {
    if !line.is_ascii() {
        return Err(LineCharProblem::NonAscii);
    }
    if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(LineCharProblem::ControlCharacter);
    }
    Ok(())
}

//! Errors of the executor. A refusal before the first byte (`MotionError` other than
//! `Fault`) leaves the journal untouched; a `Fault` happened mid-stream and carries the report
//! of what was done and which dots are uncertain.

use smp_core::plan::DotState;
use smp_store::StoreError;
use thiserror::Error;

use crate::executor::ExecutionReport;

/// Why a session run could not start or did not finish.
#[derive(Debug, Error)]
pub enum MotionError {
    #[error(
        "cannot open serial port {path} at {baud} baud: {source}; check the cable and device name, and that no \
         other program holds the port"
    )]
    Open { path: String, baud: u32, source: serialport::Error },
    #[error("serial port failed while {context}: {source}; check the cable and the controller's power")]
    Port { context: &'static str, source: std::io::Error },
    #[error(
        "no status report from the controller within {waited_s:.1} s; check its power, the port and the baud rate"
    )]
    NoController { waited_s: f64 },
    #[error(
        "the controller reports Alarm before streaming; nothing was sent. Inspect the machine, unlock it \
         deliberately ($X or homing), then start again"
    )]
    AlarmAtStart,
    #[error("the controller is in state {state} before streaming (expected Idle); nothing was sent")]
    NotIdleAtStart { state: String },
    #[error(
        "the controller's overrides are feed {feed_pct} %, rapid {rapid_pct} % before streaming; they must be 100 % \
         (the verifier proved the programmed feeds, an override scales them); nothing was sent. Reset them on the \
         controller (grbl realtime 0x90 feed, 0x95 rapid, or the pendant) and start again"
    )]
    OverrideActiveAtStart { feed_pct: u16, rapid_pct: u16 },
    #[error(
        "the program plunges {count} dot(s) the journal does not hold as planned (first: {examples}); nothing \
         was sent. Compile the program from Journal::resume_candidates() and resolve uncertain dots by looking"
    )]
    DotsNotPlanned { count: usize, examples: String },
    #[error("the program is for session {program}, the journal records session {journal}; use that session's journal")]
    SessionMismatch { program: u32, journal: u32 },
    #[error("program line {line_no} cannot be streamed: {problem}; nothing was sent")]
    BadProgram { line_no: usize, problem: String },
    #[error("journal failed before streaming: {0}; nothing was sent")]
    Journal(#[from] StoreError),
    #[error("the operator aborted the run before streaming started; nothing was sent, the journal is untouched")]
    AbortedBeforeStart,
    #[error("cannot start the executor runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Fault(Box<FaultReport>),
}

impl MotionError {
    /// The fault report, when streaming had started.
    pub fn fault(&self) -> Option<&FaultReport> {
        match self {
            MotionError::Fault(f) => Some(f),
            _ => None,
        }
    }
}

/// What stopped a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The controller answered `error:N` to a line (which it did not execute).
    Rejected { line_no: usize, text: String, code: u16 },
    /// `ALARM:N`, or a status report in Alarm.
    Alarm { code: Option<u16> },
    /// The controller restarted (banner mid-stream): the lines in its buffer were lost.
    ControllerReset,
    /// No answer to a line within the ack timeout.
    AckTimeout { line_no: usize, text: String },
    /// The protocol count is off (an `ok` or `error` with nothing in flight).
    Desync { detail: String },
    /// Reading or writing the port failed.
    PortIo { detail: String },
    /// A journal write failed; streaming stopped because a state could not be made durable.
    Journal { detail: String },
    /// The journal refused a transition the executor asked for (a bug or a tampered journal).
    JournalRefused { detail: String },
    /// The operator stopped the run: abort (hold, then reset or drain) or emergency stop
    /// (reset at once; Marlin `M112`).
    Aborted { emergency: bool },
    /// A status report showed a feed or rapid override other than 100 %: every feed the
    /// verifier proved (the plunge feed among them) would be scaled, so the run was held.
    OverrideActive { feed_pct: u16, rapid_pct: u16 },
    /// A status report's override field (`Ov:`) did not read: the overrides are unknown.
    OverrideUnreadable { field: String },
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultKind::Rejected { line_no, text, code } => {
                write!(f, "controller rejected line {line_no} `{text}` with error:{code}")
            }
            FaultKind::Alarm { code: Some(c) } => write!(f, "controller raised ALARM:{c}"),
            FaultKind::Alarm { code: None } => write!(f, "controller reports Alarm"),
            FaultKind::ControllerReset => write!(f, "controller reset mid-stream (banner received)"),
            FaultKind::AckTimeout { line_no, text } => write!(f, "no answer to line {line_no} `{text}` in time"),
            FaultKind::Desync { detail } => write!(f, "protocol out of step: {detail}"),
            FaultKind::PortIo { detail } => write!(f, "serial port I/O failed: {detail}"),
            FaultKind::Journal { detail } => write!(f, "journal write failed: {detail}"),
            FaultKind::JournalRefused { detail } => write!(f, "journal refused a state change: {detail}"),
            FaultKind::Aborted { emergency: false } => write!(f, "aborted by the operator"),
            FaultKind::Aborted { emergency: true } => write!(f, "emergency stop by the operator"),
            FaultKind::OverrideActive { feed_pct, rapid_pct } => write!(
                f,
                "controller override active (feed {feed_pct} %, rapid {rapid_pct} %; must be 100 %): it scales every \
                 feed the verifier proved, so the run was held. Reset the overrides on the controller (grbl realtime \
                 0x90 feed, 0x95 rapid, or the pendant), check the status shows Ov:100,100, then resume the session"
            ),
            FaultKind::OverrideUnreadable { field } => write!(
                f,
                "controller override field `{field}` did not read, so the feed override is unknown and the run was \
                 held. Check the serial link, make sure the overrides are 100 %, then resume the session"
            ),
        }
    }
}

/// A stream stopped by a fault: what happened and where every affected dot stands.
#[derive(Debug, Clone)]
pub struct FaultReport {
    pub kind: FaultKind,
    /// Dots that were in flight (sent or accepted, not confirmed executed): now `uncertain`
    /// in the journal, never resent automatically.
    pub uncertain: Vec<u32>,
    /// True when every uncertain dot was journaled as such; false if the journal failed too
    /// (then the journal holds them as sent/accepted, which a resume also never replans).
    pub uncertain_journaled: bool,
    /// Whether the executor held and flushed the controller (feed hold, then soft reset).
    pub controller_flushed: bool,
    pub report: ExecutionReport,
}

impl std::fmt::Display for FaultReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "streaming stopped: {}; {} dot(s) executed", self.kind, self.report.dots_executed)?;
        if self.uncertain.is_empty() {
            write!(f, ", no dot in flight")?;
        } else {
            let ids: Vec<String> = self.uncertain.iter().map(u32::to_string).collect();
            write!(
                f,
                ", dot(s) {} uncertain{} (never resent: check them with the camera or by eye, then resolve them in \
                 the journal)",
                ids.join(", "),
                if self.uncertain_journaled { "" } else { " (journal update FAILED)" }
            )?;
        }
        if !self.controller_flushed {
            write!(f, "; the controller may still hold buffered lines: do not resume it, reset it")?;
        }
        Ok(())
    }
}

/// Formats (dot, state) pairs for [`MotionError::DotsNotPlanned`].
pub(crate) fn dots_summary(dots: &[(u32, DotState)]) -> String {
    dots.iter().take(5).map(|(d, s)| format!("dot {d} is {}", s.as_str())).collect::<Vec<_>>().join(", ")
}

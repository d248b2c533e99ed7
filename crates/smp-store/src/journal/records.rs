//! The rows callers write and read: session metadata, dots, state events, runs and the
//! command log, and how hard a commit tries to survive a crash.

use smp_core::plan::{DotState, Zone};

/// What is known about a session when its journal is created.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionMeta {
    pub patient: String,
    /// Session number (1 = foundation).
    pub session: u32,
    pub rig_name: String,
    /// Seed of the run (planner, simulator), so the session can be replayed.
    pub seed: u64,
    /// The session plan as JSON, kept verbatim so the journal alone explains what was meant.
    pub plan_json: String,
}

/// The session row as stored, with the times the journal added.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub meta: SessionMeta,
    /// ISO 8601 UTC, written by SQLite when the journal was created.
    pub started_utc: String,
    pub ended_utc: Option<String>,
    pub outcome: Option<String>,
}

/// One planned dot and where it is in its life.
#[derive(Debug, Clone, PartialEq)]
pub struct DotRecord {
    pub dot_id: u32,
    /// Position in the plan's execution order.
    pub plan_order: u32,
    /// Head frame.
    pub position_head_mm: [f64; 3],
    pub layer: u32,
    pub zone: Zone,
    pub depth_mm: f64,
    pub state: DotState,
    /// Time of the last state change, seconds on the clock of the run that made it.
    pub updated_at_s: f64,
}

/// One row of the append-only state history.
#[derive(Debug, Clone, PartialEq)]
pub struct DotEvent {
    pub seq: i64,
    pub dot_id: u32,
    /// `None` for the initial `planned`.
    pub from: Option<DotState>,
    pub to: DotState,
    pub at_s: f64,
    pub reason: Option<String>,
}

/// Identifies one `execute` run inside a session journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub i64);

/// How the controller answered a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandResult {
    Ok,
    /// grbl `error:N`.
    Error(u32),
}

impl CommandResult {
    pub(super) fn to_text(self) -> String {
        match self {
            CommandResult::Ok => "ok".to_string(),
            CommandResult::Error(code) => format!("error:{code}"),
        }
    }

    pub(super) fn from_text(s: &str) -> Option<Self> {
        if s == "ok" {
            return Some(CommandResult::Ok);
        }
        s.strip_prefix("error:").and_then(|c| c.parse().ok()).map(CommandResult::Error)
    }
}

/// One streamed command as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandLog {
    pub line_no: u32,
    pub text: String,
    pub dot_id: Option<u32>,
    pub sent_at_s: Option<f64>,
    pub acked_at_s: Option<f64>,
    /// `None` while in flight, or when the run stopped before the controller answered.
    pub result: Option<CommandResult>,
}

/// How hard a commit tries to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: every commit is fsynced before it returns, so it survives a
    /// power cut. The only setting for a real patient.
    #[default]
    PowerLoss,
    /// `synchronous = NORMAL` (WAL): commits survive the process crashing, not the machine
    /// losing power, and cost no fsync. For simulations and tests, where the disk's fsync
    /// latency would otherwise dominate the run.
    ProcessCrash,
}

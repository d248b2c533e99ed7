//! Why the journal refused a request or could not be used: one error type whose every
//! message names the file or dot and what to do about it.

use std::path::PathBuf;

use thiserror::Error;

/// Why the journal refused a request or could not be used.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("journal {path} already exists; choose a new file name, or `open` it to resume that session")]
    AlreadyExists { path: PathBuf },
    #[error("journal {path} does not exist; check the path, or `create` a new journal")]
    NotFound { path: PathBuf },
    #[error("cannot open journal {path}: {source}; check the path and its permissions")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("{path} is not an SMP session journal ({detail}); pass the .sqlite journal written by a session run")]
    NotAJournal { path: PathBuf, detail: String },
    #[error(
        "journal {path} has schema version {found}, this build reads up to version {supported}; \
         open it with a newer build (never edit it by hand)"
    )]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },
    #[error("journal {path} is inconsistent: {detail}; keep the file for investigation and start a new journal")]
    Inconsistent { path: PathBuf, detail: String },
    #[error("dot {dot_id} cannot go from {from} to {to}: {hint}")]
    IllegalTransition { dot_id: u32, from: &'static str, to: &'static str, hint: &'static str },
    #[error("dot {dot_id} is not in this journal; insert the plan that contains it first")]
    UnknownDot { dot_id: u32 },
    #[error("the plan was already inserted into this journal ({dots} dots); a journal records one plan")]
    PlanAlreadyInserted { dots: usize },
    #[error("the plan is for session {plan}, the journal records session {journal}; use the journal of that session")]
    SessionMismatch { plan: u32, journal: u32 },
    #[error("dot id {dot_id} appears twice in the plan; dot ids must be unique")]
    DuplicateDot { dot_id: u32 },
    #[error("resolving uncertain dot {dot_id} needs a reason (who looked and what they saw)")]
    ReasonRequired { dot_id: u32 },
    #[error("time {at_s} s for dot {dot_id} is not a finite number; pass seconds since the run started")]
    BadTime { dot_id: u32, at_s: f64 },
    #[error("run {run_id} is not in this journal")]
    UnknownRun { run_id: i64 },
    #[error("journal stores an unknown {what} `{value}`; it was written by another build")]
    UnknownValue { what: &'static str, value: String },
    #[error("{timing} entry timings for {entries} needle entries; give one per entry, or none when the controller does not report them")]
    EntryTimingMismatch { entries: usize, timing: usize },
    #[error("journal SQL failed while {context}: {source}")]
    Sqlite { context: &'static str, source: rusqlite::Error },
    #[error("cannot encode {what} as JSON: {message}")]
    Json { what: &'static str, message: String },
}

impl StoreError {
    pub(super) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { context, source }
    }
}

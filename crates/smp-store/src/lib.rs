//! SQLite journal of one treatment session: its metadata, every planned dot and its state,
//! the append-only history of state changes, the needle entries the controller recorded,
//! and the commands streamed to the controller.
//!
//! Invariant: a dot's state only moves along the legal transitions of [`DotState`]
//! (`planned -> sent -> accepted -> executed -> verified`, `sent|accepted -> uncertain`,
//! `planned -> skipped`, and `uncertain -> executed|skipped` only through
//! [`Journal::resolve_uncertain`] with a reason). Every state change is committed (WAL,
//! `synchronous = FULL` unless a simulation lowers it with [`Journal::set_durability`]) before
//! the call returns, so that the executor can journal `sent` before the plunge line leaves
//! the host: after any crash, a dot that may have been tattooed is `sent`, `accepted`,
//! `executed` or `uncertain` on disk, never `planned`, and a resumed session never plunges it
//! again.
//!
//! The file is versioned twice over (`PRAGMA user_version` and a `schema_version` table) and
//! tagged with an `application_id`, so that a file from a newer build, or a file that is not a
//! journal at all, is refused with an error that says so instead of being reinterpreted.

mod journal;
mod schema;
mod transitions;

pub use journal::{
    program_sha256, CommandLog, CommandResult, DotEvent, DotRecord, Durability, Journal, NewProgram, ProgramReason,
    ProgramRecord, RunId, SessionMeta, SessionRecord, StoreError,
};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use transitions::{is_legal_transition, needs_reason};

/// Re-exported so callers name one type for dot states.
pub use smp_core::plan::DotState;

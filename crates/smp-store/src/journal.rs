//! The [`Journal`]: one SQLite file per session.
//!
//! Layout: this file holds the [`Journal`] handle and its one commit path; `open` creates,
//! opens and migrates the file and reads the session row; `dots` holds the plan's dots and
//! their guarded state changes; `entries` the needle entries; `commands` the runs and the
//! buffered command log; `records` the rows callers read; `error` why a request was refused.

mod commands;
mod dots;
mod entries;
mod error;
mod open;
mod programs;
mod records;

use std::path::PathBuf;

use rusqlite::{Connection, Transaction};

use commands::{write_commands, CommandOp};
pub use error::StoreError;
pub use programs::{program_sha256, NewProgram, ProgramReason, ProgramRecord};
pub use records::{CommandLog, CommandResult, DotEvent, DotRecord, Durability, RunId, SessionMeta, SessionRecord};

/// The SQLite journal of one session.
///
/// Dot state changes are committed (WAL, `synchronous = FULL`) before the call returns.
/// Command-log writes are buffered and ride along in the next commit (a state change, or a
/// flush once [`COMMAND_FLUSH_THRESHOLD`](commands::COMMAND_FLUSH_THRESHOLD) are waiting),
/// so logging every line costs the streaming pump no extra fsync.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    session: u32,
    pending_commands: Vec<CommandOp>,
    durability: Durability,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("session", &self.session)
            .field("pending_commands", &self.pending_commands.len())
            .field("durability", &self.durability)
            .finish()
    }
}

impl Journal {
    /// Runs `f` in a transaction together with the buffered command-log writes and commits.
    /// On error nothing is written and the buffer is kept.
    fn commit_with(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(StoreError::sql("starting a transaction"))?;
        f(&tx)?;
        write_commands(&tx, &self.pending_commands)?;
        tx.commit().map_err(StoreError::sql("committing"))?;
        self.pending_commands.clear();
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Best effort: the command log is a record, not a safety interlock (dot states are
        // always committed on the spot), so a failure here loses log rows, never safety.
        let _ = self.flush_commands();
    }
}

#[cfg(test)]
mod tests;

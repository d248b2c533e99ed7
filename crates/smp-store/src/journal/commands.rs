//! Runs of the executor and the log of every command streamed in them. Command-log writes
//! are buffered and ride along in the next commit, so logging every line costs the
//! streaming pump no extra fsync.

use rusqlite::{params, Transaction};

use super::{CommandLog, CommandResult, Journal, RunId, StoreError};

/// Command-log writes waiting for the next commit.
#[derive(Debug, Clone)]
pub(super) enum CommandOp {
    Sent { run: RunId, line_no: u32, text: String, dot_id: Option<u32>, at_s: f64 },
    Answered { run: RunId, line_no: u32, at_s: f64, result: CommandResult },
}

/// Command-log writes are flushed on their own once this many are waiting.
pub(super) const COMMAND_FLUSH_THRESHOLD: usize = 512;

impl Journal {
    /// Starts a run (one call of the executor) and returns its id.
    pub fn begin_run(&mut self) -> Result<RunId, StoreError> {
        let mut id = 0;
        self.commit_with(|tx| {
            // The run streams the program recorded last (none when a caller records none).
            tx.execute(
                "INSERT INTO runs(started_utc, program_seq) \
                 VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), (SELECT max(seq) FROM programs))",
                [],
            )
            .map_err(StoreError::sql("starting a run"))?;
            id = tx.last_insert_rowid();
            Ok(())
        })?;
        Ok(RunId(id))
    }

    /// Ends a run with its outcome; also flushes the command log.
    pub fn end_run(&mut self, run: RunId, outcome: &str) -> Result<(), StoreError> {
        self.commit_with(|tx| {
            let n = tx
                .execute(
                    "UPDATE runs SET ended_utc = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), outcome = ?2 WHERE run_id = ?1",
                    params![run.0, outcome],
                )
                .map_err(StoreError::sql("ending a run"))?;
            if n == 0 {
                return Err(StoreError::UnknownRun { run_id: run.0 });
            }
            Ok(())
        })
    }

    /// Logs that a program line was handed to the controller. Buffered: written with the next
    /// commit, so it never adds an fsync to the streaming loop.
    pub fn log_command_sent(&mut self, run: RunId, line_no: u32, text: &str, dot_id: Option<u32>, at_s: f64) {
        self.pending_commands.push(CommandOp::Sent { run, line_no, text: text.to_string(), dot_id, at_s });
        self.flush_if_large();
    }

    /// Logs the controller's answer to a line. Buffered like [`Journal::log_command_sent`].
    pub fn log_command_answer(&mut self, run: RunId, line_no: u32, result: CommandResult, at_s: f64) {
        self.pending_commands.push(CommandOp::Answered { run, line_no, at_s, result });
        self.flush_if_large();
    }

    /// Writes buffered command-log rows now.
    pub fn flush_commands(&mut self) -> Result<(), StoreError> {
        if self.pending_commands.is_empty() {
            return Ok(());
        }
        self.commit_with(|_| Ok(()))
    }

    /// Command-log writes not yet committed.
    pub fn pending_command_writes(&self) -> usize {
        self.pending_commands.len()
    }

    /// The command log of one run, by line number.
    pub fn commands(&self, run: RunId) -> Result<Vec<CommandLog>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT line_no, text, dot_id, sent_at_s, acked_at_s, result FROM commands \
                 WHERE run_id = ?1 ORDER BY line_no",
            )
            .map_err(StoreError::sql("reading the command log"))?;
        let rows = st
            .query_map(params![run.0], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<u32>>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(StoreError::sql("reading the command log"))?;
        let mut out = Vec::new();
        for row in rows {
            let (line_no, text, dot_id, sent_at_s, acked_at_s, result) =
                row.map_err(StoreError::sql("reading the command log"))?;
            let result = match result {
                None => None,
                Some(s) => Some(
                    CommandResult::from_text(&s)
                        .ok_or(StoreError::UnknownValue { what: "command result", value: s })?,
                ),
            };
            out.push(CommandLog { line_no, text, dot_id, sent_at_s, acked_at_s, result });
        }
        Ok(out)
    }

    fn flush_if_large(&mut self) {
        if self.pending_commands.len() >= COMMAND_FLUSH_THRESHOLD {
            // A failed flush keeps the rows buffered; the next commit retries and reports.
            let _ = self.flush_commands();
        }
    }
}

pub(super) fn write_commands(tx: &Transaction<'_>, ops: &[CommandOp]) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut sent = tx
        .prepare_cached(
            "INSERT INTO commands(run_id, line_no, text, dot_id, sent_at_s) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(run_id, line_no) DO UPDATE SET text = excluded.text, dot_id = excluded.dot_id, \
             sent_at_s = excluded.sent_at_s",
        )
        .map_err(StoreError::sql("preparing the command insert"))?;
    let mut answered = tx
        .prepare_cached(
            "INSERT INTO commands(run_id, line_no, text, acked_at_s, result) VALUES (?1, ?2, '', ?3, ?4) \
             ON CONFLICT(run_id, line_no) DO UPDATE SET acked_at_s = excluded.acked_at_s, result = excluded.result",
        )
        .map_err(StoreError::sql("preparing the command answer"))?;
    for op in ops {
        match op {
            CommandOp::Sent { run, line_no, text, dot_id, at_s } => {
                sent.execute(params![run.0, line_no, text, dot_id, at_s])
                    .map_err(StoreError::sql("logging a command"))?;
            }
            CommandOp::Answered { run, line_no, at_s, result } => {
                answered
                    .execute(params![run.0, line_no, at_s, result.to_text()])
                    .map_err(StoreError::sql("logging a command answer"))?;
            }
        }
    }
    Ok(())
}

//! The [`Journal`]: one SQLite file per session.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction};
use smp_core::entry::EntryTiming;
use smp_core::plan::{DotState, SessionPlan, Zone};
use smp_core::NeedleEntry;
use thiserror::Error;

use crate::schema::{APPLICATION_ID, SCHEMA_V1, SCHEMA_V2, SCHEMA_VERSION};
use crate::transitions::{is_legal_transition, needs_reason, ALL_STATES};

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
    fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { context, source }
    }
}

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
    fn to_text(self) -> String {
        match self {
            CommandResult::Ok => "ok".to_string(),
            CommandResult::Error(code) => format!("error:{code}"),
        }
    }

    fn from_text(s: &str) -> Option<Self> {
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

/// Command-log writes waiting for the next commit.
#[derive(Debug, Clone)]
enum CommandOp {
    Sent { run: RunId, line_no: u32, text: String, dot_id: Option<u32>, at_s: f64 },
    Answered { run: RunId, line_no: u32, at_s: f64, result: CommandResult },
}

/// Command-log writes are flushed on their own once this many are waiting.
const COMMAND_FLUSH_THRESHOLD: usize = 512;

/// The SQLite journal of one session.
///
/// Dot state changes are committed (WAL, `synchronous = FULL`) before the call returns.
/// Command-log writes are buffered and ride along in the next commit (a state change, or a
/// flush once [`COMMAND_FLUSH_THRESHOLD`] are waiting), so logging every line costs the
/// streaming pump no extra fsync.
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

fn zone_str(zone: Zone) -> &'static str {
    zone.as_str()
}

fn parse_zone(s: &str) -> Result<Zone, StoreError> {
    [Zone::Hairline, Zone::Frontal, Zone::MidScalp, Zone::Crown, Zone::Temple, Zone::Scar]
        .into_iter()
        .find(|z| zone_str(*z) == s)
        .ok_or_else(|| StoreError::UnknownValue { what: "zone", value: s.to_string() })
}

fn parse_state(s: &str) -> Result<DotState, StoreError> {
    DotState::parse(s).ok_or_else(|| StoreError::UnknownValue { what: "dot state", value: s.to_string() })
}

/// Is this SQLite error the library saying "that file is not a database (or is damaged)"?
fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Connection settings every journal runs with.
fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5)).map_err(StoreError::sql("setting the busy timeout"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| {
        if is_not_a_database(&e) {
            StoreError::NotAJournal { path: path.to_path_buf(), detail: e.to_string() }
        } else {
            StoreError::Sqlite { context: "switching to WAL mode", source: e }
        }
    })?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Inconsistent {
            path: path.to_path_buf(),
            detail: format!("SQLite refused WAL mode (journal_mode is {mode}); the file system may not support it"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(StoreError::sql("setting synchronous = FULL"))?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(StoreError::sql("enabling foreign keys"))?;
    Ok(())
}

impl Journal {
    /// Creates a new journal file for a session. Refuses to overwrite an existing file: a
    /// journal is the only record of which dots may already be in the skin.
    pub fn create(path: &Path, meta: &SessionMeta) -> Result<Self, StoreError> {
        if path.exists() {
            return Err(StoreError::AlreadyExists { path: path.to_path_buf() });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        configure(&conn, path)?;
        let tx = conn.transaction().map_err(StoreError::sql("starting the schema transaction"))?;
        tx.execute_batch(SCHEMA_V1).map_err(StoreError::sql("creating the schema"))?;
        tx.execute_batch(SCHEMA_V2).map_err(StoreError::sql("creating the schema"))?;
        tx.execute(
            "INSERT INTO schema_version(version, applied_utc, note) \
             VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'created')",
            params![SCHEMA_VERSION],
        )
        .map_err(StoreError::sql("recording the schema version"))?;
        tx.execute(
            "INSERT INTO session(id, patient, session_number, rig_name, seed, plan_json, started_utc) \
             VALUES (1, ?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            params![meta.patient, meta.session, meta.rig_name, meta.seed.to_string(), meta.plan_json],
        )
        .map_err(StoreError::sql("writing the session row"))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(StoreError::sql("setting user_version"))?;
        tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(StoreError::sql("setting application_id"))?;
        tx.commit().map_err(StoreError::sql("committing the new journal"))?;
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
            session: meta.session,
            pending_commands: Vec::new(),
            durability: Durability::PowerLoss,
        })
    }

    /// Opens an existing journal (to resume or inspect a session). Checks that it is a journal
    /// and that its schema is one this build reads, migrating older versions in place.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotFound { path: path.to_path_buf() });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let not_journal = |e: rusqlite::Error| {
            if is_not_a_database(&e) {
                StoreError::NotAJournal { path: path.to_path_buf(), detail: e.to_string() }
            } else {
                StoreError::Open { path: path.to_path_buf(), source: e }
            }
        };
        let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(not_journal)?;
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(not_journal)?;
        if app_id != APPLICATION_ID {
            return Err(StoreError::NotAJournal {
                path: path.to_path_buf(),
                detail: format!("SQLite application_id is {app_id:#x}, a journal has {APPLICATION_ID:#x}"),
            });
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == 0 {
            return Err(StoreError::NotAJournal {
                path: path.to_path_buf(),
                detail: "it carries the journal tag but no schema version".to_string(),
            });
        }
        configure(&conn, path)?;
        migrate(&mut conn, path, version)?;
        let recorded: Option<u32> = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(StoreError::sql("reading schema_version"))?;
        if recorded != Some(SCHEMA_VERSION) {
            return Err(StoreError::Inconsistent {
                path: path.to_path_buf(),
                detail: format!("user_version is {SCHEMA_VERSION} but schema_version records {recorded:?}"),
            });
        }
        let session: u32 = conn
            .query_row("SELECT session_number FROM session WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(StoreError::sql("reading the session row"))?
            .ok_or_else(|| StoreError::Inconsistent {
                path: path.to_path_buf(),
                detail: "the session row is missing".to_string(),
            })?;
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
            session,
            pending_commands: Vec::new(),
            durability: Durability::PowerLoss,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Chooses how commits are synced; a journal opens with [`Durability::PowerLoss`].
    pub fn set_durability(&mut self, durability: Durability) -> Result<(), StoreError> {
        let level = match durability {
            Durability::PowerLoss => "FULL",
            Durability::ProcessCrash => "NORMAL",
        };
        self.conn.pragma_update(None, "synchronous", level).map_err(StoreError::sql("setting synchronous"))?;
        self.durability = durability;
        Ok(())
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The session row.
    pub fn session(&self) -> Result<SessionRecord, StoreError> {
        self.conn
            .query_row(
                "SELECT patient, session_number, rig_name, seed, plan_json, started_utc, ended_utc, outcome \
                 FROM session WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                },
            )
            .map_err(StoreError::sql("reading the session row"))
            .and_then(|(patient, session, rig_name, seed, plan_json, started_utc, ended_utc, outcome)| {
                let seed = seed.parse().map_err(|_| StoreError::UnknownValue { what: "seed", value: seed.clone() })?;
                Ok(SessionRecord {
                    meta: SessionMeta { patient, session, rig_name, seed, plan_json },
                    started_utc,
                    ended_utc,
                    outcome,
                })
            })
    }

    /// Records how the session ended (for example "completed", "aborted: alarm 1").
    /// Flushes the command log and folds the write-ahead log into the main file, so that
    /// after the journal is dropped it is one self-contained `.sqlite` file (what QA copies,
    /// moves and signs off) with no `-wal`/`-shm` companions.
    pub fn checkpoint_and_close(mut self) -> Result<(), StoreError> {
        self.flush_commands()?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(StoreError::sql("checkpointing the write-ahead log"))?;
        let _mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .map_err(StoreError::sql("leaving WAL mode"))?;
        Ok(())
    }

    pub fn end_session(&mut self, outcome: &str) -> Result<(), StoreError> {
        self.commit_with(|tx| {
            tx.execute(
                "UPDATE session SET ended_utc = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), outcome = ?1 WHERE id = 1",
                params![outcome],
            )
            .map_err(StoreError::sql("ending the session"))?;
            Ok(())
        })
    }

    /// Inserts every dot of the plan in state `planned`, in the plan's order, in one
    /// transaction. A journal records one plan: a second call is refused.
    pub fn insert_plan(&mut self, plan: &SessionPlan) -> Result<(), StoreError> {
        if plan.session != self.session {
            return Err(StoreError::SessionMismatch { plan: plan.session, journal: self.session });
        }
        let existing: usize = self
            .conn
            .query_row("SELECT COUNT(*) FROM dots", [], |r| r.get(0))
            .map_err(StoreError::sql("counting dots"))?;
        if existing > 0 {
            return Err(StoreError::PlanAlreadyInserted { dots: existing });
        }
        let mut seen = std::collections::HashSet::new();
        for d in &plan.dots {
            if !seen.insert(d.id) {
                return Err(StoreError::DuplicateDot { dot_id: d.id });
            }
        }
        self.commit_with(|tx| {
            let mut dot = tx
                .prepare_cached(
                    "INSERT INTO dots(dot_id, plan_order, x_mm, y_mm, z_mm, layer, zone, depth_mm, state, updated_at_s) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'planned', 0.0)",
                )
                .map_err(StoreError::sql("preparing the dot insert"))?;
            let mut event = tx
                .prepare_cached(
                    "INSERT INTO dot_events(dot_id, from_state, to_state, at_s) VALUES (?1, NULL, 'planned', 0.0)",
                )
                .map_err(StoreError::sql("preparing the event insert"))?;
            for (order, d) in plan.dots.iter().enumerate() {
                dot.execute(params![d.id, order as i64, d.x_mm, d.y_mm, d.z_mm, d.layer, zone_str(d.zone), d.depth_mm])
                    .map_err(StoreError::sql("inserting a dot"))?;
                event.execute(params![d.id]).map_err(StoreError::sql("inserting a dot event"))?;
            }
            Ok(())
        })
    }

    /// Moves one dot to `state` and commits durably before returning.
    pub fn set_dot_state(&mut self, dot_id: u32, state: DotState, at_s: f64) -> Result<(), StoreError> {
        self.set_dot_states(&[(dot_id, state)], at_s)
    }

    /// Applies several transitions in one durable commit (one fsync), in order. All or none:
    /// if any is illegal, nothing is written and the error names that dot. The executor uses
    /// this to journal `sent` for every plunge it is about to queue at once.
    pub fn set_dot_states(&mut self, changes: &[(u32, DotState)], at_s: f64) -> Result<(), StoreError> {
        for &(dot_id, _) in changes {
            if !at_s.is_finite() {
                return Err(StoreError::BadTime { dot_id, at_s });
            }
        }
        self.commit_with(|tx| {
            for &(dot_id, to) in changes {
                apply_transition(tx, dot_id, to, at_s, None)?;
            }
            Ok(())
        })
    }

    /// Resolves an `uncertain` dot after a fault, as `executed` (the camera or the operator saw
    /// the dot) or `skipped` (it is not there, and will not be redone in this session).
    pub fn resolve_uncertain(&mut self, dot_id: u32, to: DotState, reason: &str, at_s: f64) -> Result<(), StoreError> {
        if !at_s.is_finite() {
            return Err(StoreError::BadTime { dot_id, at_s });
        }
        if reason.trim().is_empty() {
            return Err(StoreError::ReasonRequired { dot_id });
        }
        let from = self.dot_state(dot_id)?;
        if from != DotState::Uncertain || !needs_reason(from, to) {
            return Err(StoreError::IllegalTransition {
                dot_id,
                from: from.as_str(),
                to: to.as_str(),
                hint: "only an uncertain dot is resolved, and only to executed or skipped",
            });
        }
        self.commit_with(|tx| apply_transition(tx, dot_id, to, at_s, Some(reason)))
    }

    /// Resolves several `uncertain` dots in one durable commit, all or none: if any of them is
    /// not uncertain (or the target is not `executed`/`skipped`), nothing is written and the
    /// error names that dot. The operator resolves a batch of sites seen together this way.
    pub fn resolve_uncertain_many(
        &mut self,
        dot_ids: &[u32],
        to: DotState,
        reason: &str,
        at_s: f64,
    ) -> Result<(), StoreError> {
        for &dot_id in dot_ids {
            if !at_s.is_finite() {
                return Err(StoreError::BadTime { dot_id, at_s });
            }
            if reason.trim().is_empty() {
                return Err(StoreError::ReasonRequired { dot_id });
            }
            if !needs_reason(DotState::Uncertain, to) {
                return Err(StoreError::IllegalTransition {
                    dot_id,
                    from: DotState::Uncertain.as_str(),
                    to: to.as_str(),
                    hint: "only an uncertain dot is resolved, and only to executed or skipped",
                });
            }
        }
        self.commit_with(|tx| {
            for &dot_id in dot_ids {
                let from: Option<String> = tx
                    .prepare_cached("SELECT state FROM dots WHERE dot_id = ?1")
                    .and_then(|mut st| st.query_row(params![dot_id], |r| r.get(0)).optional())
                    .map_err(StoreError::sql("reading a dot state"))?;
                let from = parse_state(&from.ok_or(StoreError::UnknownDot { dot_id })?)?;
                if from != DotState::Uncertain {
                    return Err(StoreError::IllegalTransition {
                        dot_id,
                        from: from.as_str(),
                        to: to.as_str(),
                        hint: "only an uncertain dot is resolved, and only to executed or skipped",
                    });
                }
                apply_transition(tx, dot_id, to, at_s, Some(reason))?;
            }
            Ok(())
        })
    }

    /// Current state of one dot.
    pub fn dot_state(&self, dot_id: u32) -> Result<DotState, StoreError> {
        let s: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM dots WHERE dot_id = ?1")
            .and_then(|mut st| st.query_row(params![dot_id], |r| r.get(0)).optional())
            .map_err(StoreError::sql("reading a dot state"))?;
        parse_state(&s.ok_or(StoreError::UnknownDot { dot_id })?)
    }

    /// Number of dots in each state; every state is present, with 0 when no dot is in it.
    pub fn state_counts(&self) -> Result<BTreeMap<DotState, usize>, StoreError> {
        let mut counts: BTreeMap<DotState, usize> = ALL_STATES.iter().map(|s| (*s, 0)).collect();
        let mut st = self
            .conn
            .prepare_cached("SELECT state, COUNT(*) FROM dots GROUP BY state")
            .map_err(StoreError::sql("counting states"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, usize>(1)?)))
            .map_err(StoreError::sql("counting states"))?;
        for row in rows {
            let (s, n) = row.map_err(StoreError::sql("counting states"))?;
            counts.insert(parse_state(&s)?, n);
        }
        Ok(counts)
    }

    /// Ids of the dots in state `s`, in plan order.
    pub fn dots_in_state(&self, s: DotState) -> Result<Vec<u32>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT dot_id FROM dots WHERE state = ?1 ORDER BY plan_order")
            .map_err(StoreError::sql("listing dots by state"))?;
        let rows = st.query_map(params![s.as_str()], |r| r.get(0)).map_err(StoreError::sql("listing dots by state"))?;
        rows.collect::<Result<Vec<u32>, _>>().map_err(StoreError::sql("listing dots by state"))
    }

    /// Dots a resumed session may still plunge: those still `planned`, in plan order. Dots
    /// that are `sent`, `accepted` or `uncertain` are deliberately not candidates: they may be
    /// in the skin and must be resolved by looking first.
    pub fn resume_candidates(&self) -> Result<Vec<u32>, StoreError> {
        self.dots_in_state(DotState::Planned)
    }

    /// Every dot, in plan order.
    pub fn dots(&self) -> Result<Vec<DotRecord>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT dot_id, plan_order, x_mm, y_mm, z_mm, layer, zone, depth_mm, state, updated_at_s \
                 FROM dots ORDER BY plan_order",
            )
            .map_err(StoreError::sql("listing dots"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, u32>(1)?,
                    [r.get::<_, f64>(2)?, r.get::<_, f64>(3)?, r.get::<_, f64>(4)?],
                    r.get::<_, u32>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, f64>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, f64>(9)?,
                ))
            })
            .map_err(StoreError::sql("listing dots"))?;
        let mut out = Vec::new();
        for row in rows {
            let (dot_id, plan_order, position_head_mm, layer, zone, depth_mm, state, updated_at_s) =
                row.map_err(StoreError::sql("listing dots"))?;
            out.push(DotRecord {
                dot_id,
                plan_order,
                position_head_mm,
                layer,
                zone: parse_zone(&zone)?,
                depth_mm,
                state: parse_state(&state)?,
                updated_at_s,
            });
        }
        Ok(out)
    }

    /// The state history, oldest first; of one dot, or of all when `dot_id` is `None`.
    pub fn dot_events(&self, dot_id: Option<u32>) -> Result<Vec<DotEvent>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, dot_id, from_state, to_state, at_s, reason FROM dot_events \
                 WHERE ?1 IS NULL OR dot_id = ?1 ORDER BY seq",
            )
            .map_err(StoreError::sql("reading dot events"))?;
        let rows = st
            .query_map(params![dot_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, f64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(StoreError::sql("reading dot events"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, dot_id, from, to, at_s, reason) = row.map_err(StoreError::sql("reading dot events"))?;
            out.push(DotEvent {
                seq,
                dot_id,
                from: from.as_deref().map(parse_state).transpose()?,
                to: parse_state(&to)?,
                at_s,
                reason,
            });
        }
        Ok(out)
    }

    /// Appends needle entries (from the controller or the simulator) in one transaction, with
    /// each one's [`EntryTiming`] (same index) when the source knows it: `timing` is either
    /// empty or as long as `entries`.
    pub fn record_entries(&mut self, entries: &[NeedleEntry], timing: &[EntryTiming]) -> Result<(), StoreError> {
        if !timing.is_empty() && timing.len() != entries.len() {
            return Err(StoreError::EntryTimingMismatch { entries: entries.len(), timing: timing.len() });
        }
        self.commit_with(|tx| {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO entries(base_x_mm, base_y_mm, base_z_mm, head_x_mm, head_y_mm, head_z_mm, depth_mm, time_s, \
                     exit_time_s, in_skin_s, running_in_skin_s) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(StoreError::sql("preparing the entry insert"))?;
            for (i, e) in entries.iter().enumerate() {
                let t = timing.get(i);
                st.execute(params![
                    e.base_mm[0],
                    e.base_mm[1],
                    e.base_mm[2],
                    e.head_mm[0],
                    e.head_mm[1],
                    e.head_mm[2],
                    e.depth_mm,
                    e.time_s,
                    t.map(|t| t.exit_time_s),
                    t.map(|t| t.in_skin_s),
                    t.map(|t| t.running_in_skin_s),
                ])
                .map_err(StoreError::sql("inserting a needle entry"))?;
            }
            Ok(())
        })
    }

    /// Needle entries in the order recorded.
    pub fn entries(&self) -> Result<Vec<NeedleEntry>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT base_x_mm, base_y_mm, base_z_mm, head_x_mm, head_y_mm, head_z_mm, depth_mm, time_s \
                 FROM entries ORDER BY seq",
            )
            .map_err(StoreError::sql("reading needle entries"))?;
        let rows = st
            .query_map([], |r| {
                Ok(NeedleEntry {
                    base_mm: [r.get(0)?, r.get(1)?, r.get(2)?],
                    head_mm: [r.get(3)?, r.get(4)?, r.get(5)?],
                    depth_mm: r.get(6)?,
                    time_s: r.get(7)?,
                })
            })
            .map_err(StoreError::sql("reading needle entries"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(StoreError::sql("reading needle entries"))
    }

    /// Each needle entry's [`EntryTiming`], in the order of [`Journal::entries`]; `None` where
    /// it was not recorded (a real controller, or a journal from before schema version 2).
    pub fn entry_timing(&self) -> Result<Vec<Option<EntryTiming>>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT exit_time_s, in_skin_s, running_in_skin_s FROM entries ORDER BY seq")
            .map_err(StoreError::sql("reading entry timings"))?;
        let rows = st
            .query_map([], |r| {
                let (exit, in_skin, running): (Option<f64>, Option<f64>, Option<f64>) =
                    (r.get(0)?, r.get(1)?, r.get(2)?);
                Ok(match (exit, in_skin, running) {
                    (Some(exit_time_s), Some(in_skin_s), Some(running_in_skin_s)) => {
                        Some(EntryTiming { exit_time_s, in_skin_s, running_in_skin_s })
                    }
                    _ => None,
                })
            })
            .map_err(StoreError::sql("reading entry timings"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(StoreError::sql("reading entry timings"))
    }

    /// Starts a run (one call of the executor) and returns its id.
    pub fn begin_run(&mut self) -> Result<RunId, StoreError> {
        let mut id = 0;
        self.commit_with(|tx| {
            tx.execute("INSERT INTO runs(started_utc) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", [])
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

fn write_commands(tx: &Transaction<'_>, ops: &[CommandOp]) -> Result<(), StoreError> {
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

fn apply_transition(
    tx: &Transaction<'_>,
    dot_id: u32,
    to: DotState,
    at_s: f64,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let from: Option<String> = tx
        .prepare_cached("SELECT state FROM dots WHERE dot_id = ?1")
        .and_then(|mut st| st.query_row(params![dot_id], |r| r.get(0)).optional())
        .map_err(StoreError::sql("reading a dot state"))?;
    let from = parse_state(&from.ok_or(StoreError::UnknownDot { dot_id })?)?;
    if !is_legal_transition(from, to) {
        return Err(StoreError::IllegalTransition {
            dot_id,
            from: from.as_str(),
            to: to.as_str(),
            hint: hint(from, to),
        });
    }
    if needs_reason(from, to) && reason.is_none() {
        return Err(StoreError::IllegalTransition {
            dot_id,
            from: from.as_str(),
            to: to.as_str(),
            hint: "an uncertain dot is resolved with Journal::resolve_uncertain and a reason",
        });
    }
    tx.prepare_cached("UPDATE dots SET state = ?2, updated_at_s = ?3 WHERE dot_id = ?1")
        .and_then(|mut st| st.execute(params![dot_id, to.as_str(), at_s]))
        .map_err(StoreError::sql("updating a dot state"))?;
    tx.prepare_cached("INSERT INTO dot_events(dot_id, from_state, to_state, at_s, reason) VALUES (?1, ?2, ?3, ?4, ?5)")
        .and_then(|mut st| st.execute(params![dot_id, from.as_str(), to.as_str(), at_s, reason]))
        .map_err(StoreError::sql("appending a dot event"))?;
    Ok(())
}

/// Why a transition is refused, in words an operator can act on.
fn hint(from: DotState, to: DotState) -> &'static str {
    use DotState::*;
    match (from, to) {
        (a, b) if a == b => "the dot is already in that state (a repeated send would tattoo it twice)",
        (Executed | Verified, Sent) => "the dot was already executed; it must never be plunged again",
        (Uncertain, Sent) => "the dot may already be in the skin; resolve it by looking, never by resending",
        (Sent | Accepted, Sent) => "the dot is already in flight",
        (_, Planned) => "states never move back to planned",
        (Skipped, _) => "a skipped dot stays skipped in this session",
        _ => "that transition is not in the dot lifecycle",
    }
}

/// Brings an older schema up to [`SCHEMA_VERSION`], one version at a time: each step runs
/// in one transaction with the new `user_version`, and records itself in `schema_version`,
/// so a crash mid-way leaves the file at a version this build reads.
fn migrate(conn: &mut Connection, path: &Path, version: u32) -> Result<(), StoreError> {
    let mut at = version;
    while at < SCHEMA_VERSION {
        let (sql, note) = match at {
            1 => (SCHEMA_V2, "migrated from 1: entries keep their time in skin and the cartridge's running time"),
            other => {
                return Err(StoreError::Inconsistent {
                    path: path.to_path_buf(),
                    detail: format!("no migration from schema version {other}"),
                })
            }
        };
        let next = at + 1;
        let tx = conn.transaction().map_err(StoreError::sql("starting a migration"))?;
        tx.execute_batch(sql).map_err(StoreError::sql("migrating the schema"))?;
        tx.execute(
            "INSERT INTO schema_version(version, applied_utc, note) \
             VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?2)",
            params![next, note],
        )
        .map_err(StoreError::sql("recording the migration"))?;
        tx.pragma_update(None, "user_version", next).map_err(StoreError::sql("setting user_version"))?;
        tx.commit().map_err(StoreError::sql("committing a migration"))?;
        at = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

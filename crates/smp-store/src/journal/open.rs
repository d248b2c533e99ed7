//! Creating, opening and closing a journal file: the connection settings (WAL, synchronous),
//! the schema and its versions (refusing files that are not journals or are newer than
//! this build, migrating older ones in place), and the session row.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{Durability, Journal, SessionMeta, SessionRecord, StoreError};
use crate::schema::{APPLICATION_ID, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_VERSION};

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
        tx.execute_batch(SCHEMA_V3).map_err(StoreError::sql("creating the schema"))?;
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
}

/// Brings an older schema up to [`SCHEMA_VERSION`], one version at a time: each step runs
/// in one transaction with the new `user_version`, and records itself in `schema_version`,
/// so a crash mid-way leaves the file at a version this build reads.
fn migrate(conn: &mut Connection, path: &Path, version: u32) -> Result<(), StoreError> {
    let mut at = version;
    while at < SCHEMA_VERSION {
        let (sql, note) = match at {
            1 => (SCHEMA_V2, "migrated from 1: entries keep their time in skin and the cartridge's running time"),
            2 => (SCHEMA_V3, "migrated from 2: the programs streamed, and which run streamed which"),
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

//! Journal schema and its migrations.
//!
//! The version lives in two places on purpose: `PRAGMA user_version` is what SQLite tools show
//! and what we check first; the `schema_version` table keeps the history of migrations with
//! the time each was applied, so a file tells how it came to be.

/// Schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 3;

/// `PRAGMA application_id` of a journal: "SMPJ" in ASCII. Lets `open` tell a journal from any
/// other SQLite file before touching its tables.
pub const APPLICATION_ID: i32 = 0x534D_504A;

/// Statements creating schema version 1 from an empty database. Run inside one transaction.
pub(crate) const SCHEMA_V1: &str = r#"
CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    applied_utc TEXT NOT NULL,
    note        TEXT NOT NULL
);
-- Exactly one row: the session this journal records.
CREATE TABLE session (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    patient        TEXT NOT NULL,
    session_number INTEGER NOT NULL,
    rig_name       TEXT NOT NULL,
    seed           TEXT NOT NULL,          -- u64 as decimal text (SQLite integers are signed)
    plan_json      TEXT NOT NULL,
    started_utc    TEXT NOT NULL,
    ended_utc      TEXT,
    outcome        TEXT
);
CREATE TABLE dots (
    dot_id       INTEGER PRIMARY KEY,
    plan_order   INTEGER NOT NULL UNIQUE,  -- execution order in the plan
    x_mm         REAL NOT NULL,            -- head frame
    y_mm         REAL NOT NULL,
    z_mm         REAL NOT NULL,
    layer        INTEGER NOT NULL,
    zone         TEXT NOT NULL,
    depth_mm     REAL NOT NULL,
    state        TEXT NOT NULL CHECK (state IN
                   ('planned','sent','accepted','executed','verified','uncertain','skipped')),
    updated_at_s REAL NOT NULL
);
CREATE INDEX dots_by_state ON dots(state, plan_order);
-- Append-only: rows are only ever inserted (triggers below refuse updates and deletes).
CREATE TABLE dot_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    dot_id     INTEGER NOT NULL REFERENCES dots(dot_id),
    from_state TEXT,                       -- NULL for the initial `planned`
    to_state   TEXT NOT NULL,
    at_s       REAL NOT NULL,
    reason     TEXT
);
CREATE INDEX dot_events_by_dot ON dot_events(dot_id, seq);
CREATE TRIGGER dot_events_no_update BEFORE UPDATE ON dot_events
    BEGIN SELECT RAISE(ABORT, 'dot_events is append-only'); END;
CREATE TRIGGER dot_events_no_delete BEFORE DELETE ON dot_events
    BEGIN SELECT RAISE(ABORT, 'dot_events is append-only'); END;
-- One row per execute() call: a session may be resumed in several runs.
CREATE TABLE runs (
    run_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    started_utc TEXT NOT NULL,
    ended_utc   TEXT,
    outcome     TEXT
);
-- Needle entries recorded by the controller (or the simulator), in the order received.
CREATE TABLE entries (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    base_x_mm REAL NOT NULL, base_y_mm REAL NOT NULL, base_z_mm REAL NOT NULL,
    head_x_mm REAL NOT NULL, head_y_mm REAL NOT NULL, head_z_mm REAL NOT NULL,
    depth_mm  REAL NOT NULL,
    time_s    REAL NOT NULL
);
-- Every program line streamed, with when it went out and how the controller answered.
CREATE TABLE commands (
    run_id     INTEGER NOT NULL REFERENCES runs(run_id),
    line_no    INTEGER NOT NULL,
    text       TEXT NOT NULL,
    dot_id     INTEGER,
    sent_at_s  REAL,
    acked_at_s REAL,
    result     TEXT,                       -- 'ok', 'error:N', or NULL while in flight
    PRIMARY KEY (run_id, line_no)
);
"#;

/// Version 2: each needle entry may keep how long the tip was in the skin and how long the
/// cartridge ran meanwhile (the simulator knows; a real controller does not, so NULL), so
/// that what a paused dot deposited survives the run for the healing model and QA.
pub(crate) const SCHEMA_V2: &str = r#"
ALTER TABLE entries ADD COLUMN exit_time_s REAL;
ALTER TABLE entries ADD COLUMN in_skin_s REAL;
ALTER TABLE entries ADD COLUMN running_in_skin_s REAL;
"#;

/// Version 3: every program the session streamed, verified text and all (the first, one after
/// a resume, one after each re-registration), with the registration it was compiled for; each
/// run names the program it streamed. QA re-checks what actually ran from the journal alone.
pub(crate) const SCHEMA_V3: &str = r#"
CREATE TABLE programs (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_utc        TEXT NOT NULL,
    reason              TEXT NOT NULL,     -- 'first', 'resume' or 'reregistered'
    path                TEXT NOT NULL,     -- where the .nc file was written
    sha256              TEXT NOT NULL,     -- of the text below, lowercase hex
    lines               INTEGER NOT NULL,
    dots                INTEGER NOT NULL,
    max_depth_mm        REAL NOT NULL,
    base_from_head_json TEXT NOT NULL,     -- the registration it was compiled for
    text                TEXT NOT NULL
);
CREATE TRIGGER programs_no_update BEFORE UPDATE ON programs
    BEGIN SELECT RAISE(ABORT, 'programs is append-only'); END;
CREATE TRIGGER programs_no_delete BEFORE DELETE ON programs
    BEGIN SELECT RAISE(ABORT, 'programs is append-only'); END;
ALTER TABLE runs ADD COLUMN program_seq INTEGER REFERENCES programs(seq);
"#;

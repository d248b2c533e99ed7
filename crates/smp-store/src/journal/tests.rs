use proptest::prelude::*;
use rusqlite::Connection;
use smp_core::entry::EntryTiming;
use smp_core::map::{CellGrid, RegionKind};
use smp_core::plan::{DotState, PlanEstimates, PlannedDot, SessionLimits, SessionPlan, SessionSpec, Zone};
use smp_core::NeedleEntry;

use super::*;
use crate::schema::{APPLICATION_ID, SCHEMA_VERSION};
use crate::transitions::{is_legal_transition, needs_reason, ALL_STATES};

fn spec() -> SessionSpec {
    SessionSpec {
        version: 1,
        session: 1,
        zone: Zone::Crown,
        treat: vec![RegionKind::Bald],
        target_density_per_cm2: 70.0,
        session_share: 0.4,
        min_spacing_mm: 0.9,
        depth_mm: 1.0,
        depth_limit_mm: 1.2,
        dwell_s: 0.05,
        hover_mm: 2.0,
        plunge_feed_mm_per_min: 600.0,
        retract_feed_mm_per_min: 1200.0,
        travel_feed_mm_per_min: 6000.0,
        max_feed_mm_per_min: 9000.0,
        cartridge_rpm: 6000.0,
        dilution_pct: 40.0,
        region_margin_mm: 1.0,
        max_tilt_deg: 30.0,
        max_dots: None,
        seed: 7,
        hairline: None,
        zones: None,
        recovery: None,
    }
}

pub(super) fn plan(n: u32) -> SessionPlan {
    let dots = (0..n)
        .map(|i| PlannedDot {
            id: 100 + i,
            x_mm: i as f64,
            y_mm: -(i as f64),
            z_mm: 90.0,
            normal: [0.0, 0.0, 1.0],
            layer: 1,
            zone: Zone::Crown,
            depth_mm: 1.0,
            dilution_pct: 40.0,
            tone: None,
        })
        .collect();
    SessionPlan {
        session: 1,
        spec: spec(),
        limits: SessionLimits {
            depth_limit_mm: 1.2,
            max_feed_mm_per_min: 9000.0,
            min_spacing_mm: 0.9,
            max_tilt_deg: 30.0,
        },
        treatment: CellGrid::filled(-50.0, -50.0, 1.0, 100, 100, '#'),
        dots,
        estimates: PlanEstimates { tour_mm: 0.0, arm_time_s: 0.0, treated_area_cm2: 0.0, tour_lower_bound_mm: None },
        warnings: vec![],
    }
}

pub(crate) fn meta() -> SessionMeta {
    SessionMeta {
        patient: "p-001".into(),
        session: 1,
        rig_name: "sim-xyz-default".into(),
        seed: u64::MAX - 3,
        plan_json: "{\"session\":1}".into(),
    }
}

fn new_journal(dir: &tempfile::TempDir, n: u32) -> (Journal, PathBuf) {
    let path = dir.path().join("session.sqlite");
    let mut j = Journal::create(&path, &meta()).expect("create");
    j.insert_plan(&plan(n)).expect("insert plan");
    (j, path)
}

#[test]
fn create_insert_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = new_journal(&dir, 5);
    let rec = j.session().expect("session");
    assert_eq!(rec.meta, meta());
    assert!(rec.started_utc.ends_with('Z'), "{}", rec.started_utc);
    assert_eq!(rec.ended_utc, None);
    let counts = j.state_counts().expect("counts");
    assert_eq!(counts[&DotState::Planned], 5);
    assert_eq!(counts[&DotState::Executed], 0);
    assert_eq!(counts.len(), 7);
    assert_eq!(j.resume_candidates().expect("resume"), vec![100, 101, 102, 103, 104]);
    let dots = j.dots().expect("dots");
    assert_eq!(dots[3].position_head_mm, [3.0, -3.0, 90.0]);
    assert_eq!(dots[3].zone, Zone::Crown);
    assert_eq!(j.dot_events(Some(102)).expect("events").len(), 1);
}

#[test]
fn full_lifecycle_and_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, _) = new_journal(&dir, 3);
    for (s, t) in
        [(DotState::Sent, 1.0), (DotState::Accepted, 1.1), (DotState::Executed, 1.5), (DotState::Verified, 9.0)]
    {
        j.set_dot_state(100, s, t).expect("legal");
    }
    j.set_dot_state(101, DotState::Skipped, 2.0).expect("skip");
    assert_eq!(j.dot_state(100).expect("state"), DotState::Verified);
    let ev = j.dot_events(Some(100)).expect("events");
    let chain: Vec<_> = ev.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        chain,
        vec![
            (None, DotState::Planned),
            (Some(DotState::Planned), DotState::Sent),
            (Some(DotState::Sent), DotState::Accepted),
            (Some(DotState::Accepted), DotState::Executed),
            (Some(DotState::Executed), DotState::Verified),
        ]
    );
    assert_eq!(j.resume_candidates().expect("resume"), vec![102]);
}

#[test]
fn illegal_transition_names_dot_and_states_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, _) = new_journal(&dir, 3);
    j.set_dot_state(100, DotState::Sent, 1.0).expect("legal");
    let err = j.set_dot_state(100, DotState::Sent, 1.2).expect_err("double send");
    let msg = err.to_string();
    assert!(msg.contains("dot 100") && msg.contains("from sent to sent"), "{msg}");
    let err = j.set_dot_state(101, DotState::Executed, 1.0).expect_err("skips sent");
    assert!(err.to_string().contains("dot 101 cannot go from planned to executed"), "{err}");
    // Batch: all or none.
    let err = j.set_dot_states(&[(101, DotState::Sent), (102, DotState::Accepted)], 2.0).expect_err("second illegal");
    assert!(err.to_string().contains("dot 102"), "{err}");
    assert_eq!(j.dot_state(101).expect("state"), DotState::Planned, "batch rolled back");
    assert!(matches!(j.set_dot_state(999, DotState::Sent, 0.0), Err(StoreError::UnknownDot { dot_id: 999 })));
    assert!(matches!(j.set_dot_state(101, DotState::Sent, f64::NAN), Err(StoreError::BadTime { .. })));
}

#[test]
fn uncertain_is_resolved_only_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, _) = new_journal(&dir, 2);
    j.set_dot_states(&[(100, DotState::Sent), (101, DotState::Sent)], 1.0).expect("send");
    j.set_dot_state(100, DotState::Uncertain, 2.0).expect("fault");
    j.set_dot_state(101, DotState::Accepted, 2.0).expect("ack");
    j.set_dot_state(101, DotState::Uncertain, 2.0).expect("fault");
    let err = j.set_dot_state(100, DotState::Executed, 3.0).expect_err("needs reason");
    assert!(err.to_string().contains("resolve_uncertain"), "{err}");
    assert!(matches!(j.resolve_uncertain(100, DotState::Executed, "  ", 3.0), Err(StoreError::ReasonRequired { .. })));
    let err = j.resolve_uncertain(100, DotState::Sent, "operator", 3.0).expect_err("never resent");
    assert!(err.to_string().contains("uncertain to sent"), "{err}");
    j.resolve_uncertain(100, DotState::Executed, "camera: dot seen at planned spot", 3.0).expect("resolve");
    j.resolve_uncertain(101, DotState::Skipped, "operator: no mark visible", 3.0).expect("resolve");
    let ev = j.dot_events(Some(100)).expect("events");
    assert_eq!(ev.last().and_then(|e| e.reason.clone()).as_deref(), Some("camera: dot seen at planned spot"));
    assert!(j.resume_candidates().expect("resume").is_empty());
}

#[test]
fn batch_resolution_is_all_or_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, _path) = new_journal(&dir, 4);
    for id in [100, 101] {
        j.set_dot_state(id, DotState::Sent, 1.0).expect("sent");
        j.set_dot_state(id, DotState::Uncertain, 2.0).expect("fault");
    }
    // 102 is still planned: the batch names it, so nothing is written.
    let err = j.resolve_uncertain_many(&[100, 102, 101], DotState::Executed, "operator: seen", 3.0).expect_err("102");
    assert!(err.to_string().contains("102"), "{err}");
    assert_eq!(j.dot_state(100).expect("state"), DotState::Uncertain);
    assert_eq!(j.dot_state(101).expect("state"), DotState::Uncertain);
    let err = j.resolve_uncertain_many(&[100], DotState::Planned, "camera", 3.0).expect_err("never back to planned");
    assert!(err.to_string().contains("planned"), "{err}");
    assert!(matches!(
        j.resolve_uncertain_many(&[100], DotState::Skipped, " ", 3.0),
        Err(StoreError::ReasonRequired { .. })
    ));
    j.resolve_uncertain_many(&[100, 101], DotState::Skipped, "operator ana: no mark at either site", 3.0)
        .expect("resolve");
    assert_eq!(j.dot_state(100).expect("state"), DotState::Skipped);
    assert_eq!(j.dot_state(101).expect("state"), DotState::Skipped);
    let ev = j.dot_events(Some(101)).expect("events");
    assert_eq!(ev.last().and_then(|e| e.reason.clone()).as_deref(), Some("operator ana: no mark at either site"));
}

#[test]
fn state_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = {
        let (mut j, path) = new_journal(&dir, 4);
        j.set_dot_state(100, DotState::Sent, 1.0).expect("sent");
        j.set_dot_state(101, DotState::Sent, 1.0).expect("sent");
        j.set_dot_state(101, DotState::Accepted, 1.0).expect("acc");
        j.set_dot_state(101, DotState::Executed, 1.0).expect("exe");
        let run = j.begin_run().expect("run");
        j.log_command_sent(run, 1, "G1 Z1", Some(100), 0.5);
        path
        // dropped without an explicit flush: Drop flushes the command log
    };
    let mut j = Journal::open(&path).expect("reopen");
    assert_eq!(j.dot_state(100).expect("s"), DotState::Sent);
    assert_eq!(j.dot_state(101).expect("s"), DotState::Executed);
    assert_eq!(j.resume_candidates().expect("resume"), vec![102, 103]);
    assert_eq!(j.commands(RunId(1)).expect("log").len(), 1);
    // Crash-resume rule: the executed dot cannot be sent again, even after reopening.
    assert!(j.set_dot_state(101, DotState::Sent, 5.0).is_err());
    assert!(matches!(j.insert_plan(&plan(4)), Err(StoreError::PlanAlreadyInserted { dots: 4 })));
}

#[test]
fn create_refuses_to_overwrite_and_open_refuses_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_j, path) = new_journal(&dir, 1);
    assert!(matches!(Journal::create(&path, &meta()), Err(StoreError::AlreadyExists { .. })));
    let missing = dir.path().join("nope.sqlite");
    assert!(matches!(Journal::open(&missing), Err(StoreError::NotFound { .. })));
    assert!(!missing.exists(), "open must not create a file");
}

#[test]
fn non_sqlite_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.sqlite");
    std::fs::write(&path, b"this is a text file, not a database, but long enough to look like one ........")
        .expect("write");
    let err = Journal::open(&path).expect_err("not a db");
    assert!(matches!(err, StoreError::NotAJournal { .. }), "{err:?}");
    assert!(err.to_string().contains("is not an SMP session journal"), "{err}");
}

#[test]
fn corrupted_header_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, path) = new_journal(&dir, 3);
    drop(j);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&path, &bytes).expect("write");
    let err = Journal::open(&path).expect_err("corrupt");
    assert!(matches!(err, StoreError::NotAJournal { .. }), "{err:?}");
}

#[test]
fn other_sqlite_database_is_not_a_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.sqlite");
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);").expect("sql");
    drop(conn);
    let err = Journal::open(&path).expect_err("other db");
    assert!(err.to_string().contains("application_id"), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, path) = new_journal(&dir, 1);
    drop(j);
    let conn = Connection::open(&path).expect("open");
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).expect("bump");
    drop(conn);
    let err = Journal::open(&path).expect_err("newer");
    assert!(
        matches!(err, StoreError::NewerSchema { found, supported: SCHEMA_VERSION, .. } if found == SCHEMA_VERSION + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer build"), "{err}");
}

#[test]
fn dot_events_are_append_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = new_journal(&dir, 1);
    assert!(j.conn.execute("DELETE FROM dot_events", []).is_err());
    assert!(j.conn.execute("UPDATE dot_events SET to_state = 'executed'", []).is_err());
}

#[test]
fn plan_for_another_session_or_with_duplicates_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sqlite");
    let mut j = Journal::create(&path, &meta()).expect("create");
    let mut p = plan(2);
    p.session = 2;
    assert!(matches!(j.insert_plan(&p), Err(StoreError::SessionMismatch { plan: 2, journal: 1 })));
    let mut p = plan(2);
    p.dots[1].id = p.dots[0].id;
    assert!(matches!(j.insert_plan(&p), Err(StoreError::DuplicateDot { dot_id: 100 })));
}

#[test]
fn command_log_rides_along_with_state_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, _) = new_journal(&dir, 1);
    let run = j.begin_run().expect("run");
    j.log_command_sent(run, 1, "G0 X1", None, 0.1);
    j.log_command_sent(run, 2, "G1 Z-1 F600", Some(100), 0.2);
    assert_eq!(j.pending_command_writes(), 2);
    assert!(j.commands(run).expect("log").is_empty(), "buffered until the next commit");
    j.set_dot_state(100, DotState::Sent, 0.2).expect("sent");
    assert_eq!(j.pending_command_writes(), 0);
    j.log_command_answer(run, 1, CommandResult::Ok, 0.3);
    j.log_command_answer(run, 2, CommandResult::Error(9), 0.4);
    j.end_run(run, "aborted: error:9").expect("end");
    let log = j.commands(run).expect("log");
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].dot_id, Some(100));
    assert_eq!(log[1].result, Some(CommandResult::Error(9)));
    assert_eq!(log[0].acked_at_s, Some(0.3));
    assert!(matches!(j.end_run(RunId(77), "x"), Err(StoreError::UnknownRun { run_id: 77 })));
    j.end_session("aborted").expect("end session");
    assert_eq!(j.session().expect("s").outcome.as_deref(), Some("aborted"));
}

#[test]
fn entries_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, _) = new_journal(&dir, 1);
    let e = NeedleEntry { base_mm: [1.0, 2.0, 3.0], head_mm: [4.0, 5.0, 6.0], depth_mm: 0.98, time_s: 12.5 };
    j.record_entries(&[e, e], &[]).expect("record");
    assert_eq!(j.entries().expect("entries"), vec![e, e]);
    assert_eq!(j.entry_timing().expect("timing"), vec![None, None]);
    // The simulator knows each entry's time in skin: it is kept beside the entry.
    let t = EntryTiming { exit_time_s: 13.0, in_skin_s: 0.5, running_in_skin_s: 0.25 };
    j.record_entries(&[e], &[t]).expect("record timed");
    assert_eq!(j.entries().expect("entries").len(), 3);
    assert_eq!(j.entry_timing().expect("timing"), vec![None, None, Some(t)]);
    // One timing for two entries is a caller's mistake, named; nothing is written.
    let err = j.record_entries(&[e, e], &[t]).expect_err("mismatch");
    assert!(matches!(err, StoreError::EntryTimingMismatch { entries: 2, timing: 1 }), "{err:?}");
    assert!(err.to_string().contains("one per entry"), "{err}");
    assert_eq!(j.entries().expect("entries").len(), 3);
}

/// A journal written by a build with schema version 1 (entries without timing) opens, is
/// migrated in place to the current version with its history recorded, keeps its entries,
/// and takes timed entries afterwards.
#[test]
fn a_version_1_journal_is_migrated_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.sqlite");
    {
        let mut conn = Connection::open(&path).expect("open");
        let tx = conn.transaction().expect("tx");
        tx.execute_batch(crate::schema::SCHEMA_V1).expect("v1 schema");
        tx.execute(
            "INSERT INTO schema_version(version, applied_utc, note) VALUES (1, '2026-11-01T00:00:00Z', 'created')",
            [],
        )
        .expect("version row");
        tx.execute(
            "INSERT INTO session(id, patient, session_number, rig_name, seed, plan_json, started_utc) \
             VALUES (1, 'p', 1, 'rig', '7', '{}', '2026-11-01T00:00:00Z')",
            [],
        )
        .expect("session row");
        tx.execute(
            "INSERT INTO entries(base_x_mm, base_y_mm, base_z_mm, head_x_mm, head_y_mm, head_z_mm, depth_mm, time_s) \
             VALUES (1, 2, 3, 4, 5, 6, 0.9, 1.5)",
            [],
        )
        .expect("entry");
        tx.pragma_update(None, "user_version", 1).expect("user_version");
        tx.pragma_update(None, "application_id", APPLICATION_ID).expect("application_id");
        tx.commit().expect("commit");
    }
    let mut j = Journal::open(&path).expect("a version 1 journal opens");
    let e = NeedleEntry { base_mm: [1.0, 2.0, 3.0], head_mm: [4.0, 5.0, 6.0], depth_mm: 0.9, time_s: 1.5 };
    assert_eq!(j.entries().expect("entries"), vec![e]);
    assert_eq!(j.entry_timing().expect("timing"), vec![None]);
    let t = EntryTiming { exit_time_s: 2.0, in_skin_s: 0.3, running_in_skin_s: 0.3 };
    j.record_entries(&[e], &[t]).expect("record timed");
    assert_eq!(j.entry_timing().expect("timing"), vec![None, Some(t)]);
    let versions: Vec<u32> = {
        let mut st = j.conn.prepare("SELECT version FROM schema_version ORDER BY version").expect("sql");
        st.query_map([], |r| r.get(0)).expect("rows").collect::<Result<_, _>>().expect("read")
    };
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>(), "each migration recorded");
    assert!(j.programs().expect("programs").is_empty(), "an old journal has no recorded programs");
    drop(j);
    // Opened again: already current, nothing to migrate.
    let j = Journal::open(&path).expect("reopens");
    assert_eq!(j.entry_timing().expect("timing").len(), 2);
}

/// Times a durable commit; printed so the report can quote it (`--nocapture`).
#[test]
fn durable_commit_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, _) = new_journal(&dir, 200);
    let t0 = std::time::Instant::now();
    for id in 100..300 {
        j.set_dot_state(id, DotState::Sent, 0.0).expect("sent");
    }
    let per = t0.elapsed().as_secs_f64() / 200.0;
    println!("durable set_dot_state: {:.3} ms per commit", per * 1e3);
    assert!(per < 0.1, "a commit took {per} s");
}

fn any_state() -> impl Strategy<Value = DotState> {
    prop::sample::select(ALL_STATES.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random requests: the journal accepts exactly the legal ones, its state always matches
    /// a model that applies only legal moves, and the history is a legal chain.
    #[test]
    fn random_transitions_never_leave_the_lifecycle(
        ops in prop::collection::vec((0u32..4, any_state(), any::<bool>()), 1..40)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _) = new_journal(&dir, 4);
        let mut model = [DotState::Planned; 4];
        for (k, (i, to, with_reason)) in ops.iter().enumerate() {
            let id = 100 + i;
            let from = model[*i as usize];
            let result = if *with_reason {
                j.resolve_uncertain(id, *to, "camera", k as f64)
            } else {
                j.set_dot_state(id, *to, k as f64)
            };
            let legal = is_legal_transition(from, *to) && (needs_reason(from, *to) == *with_reason);
            prop_assert_eq!(result.is_ok(), legal, "{:?} -> {:?} reason={}", from, to, with_reason);
            if legal {
                model[*i as usize] = *to;
            }
            prop_assert_eq!(j.dot_state(id).expect("state"), model[*i as usize]);
        }
        for i in 0..4u32 {
            let ev = j.dot_events(Some(100 + i)).expect("events");
            prop_assert_eq!(ev[0].to, DotState::Planned);
            for w in ev.windows(2) {
                prop_assert_eq!(w[1].from, Some(w[0].to));
                prop_assert!(is_legal_transition(w[0].to, w[1].to));
            }
            prop_assert_eq!(ev.last().map(|e| e.to), Some(model[i as usize]));
            // A dot is sent at most once in its whole history.
            prop_assert!(ev.iter().filter(|e| e.to == DotState::Sent).count() <= 1);
        }
    }
}

#[test]
fn process_crash_durability_still_reopens_with_the_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, path) = new_journal(&dir, 2);
    assert_eq!(j.durability(), Durability::PowerLoss);
    j.set_durability(Durability::ProcessCrash).expect("normal");
    let mode: String =
        j.conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).map(|v| v.to_string()).expect("q");
    assert_eq!(mode, "1", "NORMAL");
    j.set_dot_state(100, DotState::Sent, 1.0).expect("sent");
    drop(j);
    let j = Journal::open(&path).expect("reopen");
    assert_eq!(j.dot_state(100).expect("s"), DotState::Sent);
    assert_eq!(j.durability(), Durability::PowerLoss, "a reopened journal is fully durable again");
}

#[test]
fn closed_journal_is_one_self_contained_file_that_moves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, path) = new_journal(&dir, 3);
    j.set_dot_state(100, DotState::Sent, 1.0).expect("sent");
    j.set_dot_state(100, DotState::Accepted, 1.1).expect("acc");
    j.set_dot_state(100, DotState::Executed, 1.2).expect("exe");
    j.checkpoint_and_close().expect("close");
    let wal = path.with_extension("sqlite-wal");
    assert!(!wal.exists(), "no write-ahead log left beside {}", path.display());
    // Moved alone (as a finished session is archived), it still holds everything.
    let moved = dir.path().join("archived.sqlite");
    std::fs::rename(&path, &moved).expect("move");
    let j = Journal::open(&moved).expect("reopen moved file");
    assert_eq!(j.dot_state(100).expect("s"), DotState::Executed);
    assert_eq!(j.dot_state(101).expect("s"), DotState::Planned);
}

/// A host that died mid-run left dots `sent` and `accepted`: the next session start makes them
/// uncertain (with the reason), so they are looked at, never resent and never stranded.
#[test]
fn dots_a_crashed_run_left_in_flight_become_uncertain_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, path) = new_journal(&dir, 5);
    j.set_dot_states(&[(100, DotState::Sent), (101, DotState::Sent), (103, DotState::Sent)], 1.0).expect("sent");
    j.set_dot_states(&[(100, DotState::Accepted), (100, DotState::Executed), (101, DotState::Accepted)], 2.0)
        .expect("acked");
    drop(j); // the host dies here
    let mut j = Journal::open(&path).expect("reopen");
    let moved = j.unfinished_to_uncertain("host stopped mid-run", 3.0).expect("mark");
    assert_eq!(moved, vec![101, 103], "accepted and sent, in plan order; executed stays");
    assert_eq!(j.dots_in_state(DotState::Uncertain).expect("uncertain"), vec![101, 103]);
    assert_eq!(j.resume_candidates().expect("resume"), vec![102, 104], "never resent blindly");
    let last = j.dot_events(Some(103)).expect("events").pop().expect("an event");
    assert_eq!(last.reason.as_deref(), Some("host stopped mid-run"));
    assert!(j.unfinished_to_uncertain("again", 4.0).expect("mark").is_empty(), "idempotent");
}

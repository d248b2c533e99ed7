//! The executor against the simulated grbl controller over a real pseudo-terminal: a small
//! synthetic plan is compiled, verified and streamed; the controller's record of needle
//! entries and the journal must agree that every dot went in exactly once, where planned.
//! A second scenario resets the controller mid-stream and checks that the dots in flight are
//! left uncertain, executed ones untouched, and nothing is entered twice.

use std::time::{Duration, Instant};

use serialport::TTYPort;
use smp_core::plan::DotState;
use smp_gcode::{compile, verify, LineRole, VerifiedProgram};
use smp_motion::{execute, ExecuteConfig, FaultKind, MotionError, Progress};
use smp_sim::controller::{ControllerConfig, Fault, FaultPlan, PatchSkin, SimController};
use smp_sim::pty::{PtyController, SimReport};
use smp_store::{Durability, Journal, SessionMeta};
use smp_testkit::{synthetic_case, SyntheticCase};

/// Simulated seconds per wall second (SMP_TIME_SCALE overrides it, to measure).
fn time_scale() -> f64 {
    std::env::var("SMP_TIME_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(100.0)
}

struct Setup {
    case: SyntheticCase,
    verified: VerifiedProgram,
    journal: Journal,
    _dir: tempfile::TempDir,
}

fn setup(n_dots: usize) -> Setup {
    let case = synthetic_case(n_dots);
    let program = compile(&case.plan, &case.rig, &case.base_from_head).expect("compiles");
    let verified = verify(program, &case.plan, &case.map, &case.rig, &case.base_from_head).expect("verifies");
    let dir = match std::env::var("SMP_TEST_TMP") {
        Ok(d) => tempfile::tempdir_in(d).expect("tempdir"),
        Err(_) => tempfile::tempdir().expect("tempdir"),
    };
    let meta = SessionMeta {
        patient: "synthetic".into(),
        session: case.plan.session,
        rig_name: case.rig.name.clone(),
        seed: case.plan.spec.seed,
        plan_json: serde_json::to_string(&case.plan).expect("plan json"),
    };
    let mut journal = Journal::create(&dir.path().join("session.sqlite"), &meta).expect("journal");
    journal.insert_plan(&case.plan).expect("insert plan");
    Setup { case, verified, journal, _dir: dir }
}

fn spawn_sim(case: &SyntheticCase, faults: FaultPlan) -> (TTYPort, PtyController) {
    let (host, device) = TTYPort::pair().expect("pty pair");
    let mut cfg = ControllerConfig::new(case.rig.dynamics);
    cfg.time_scale = time_scale();
    cfg.faults = faults;
    let skin = PatchSkin::new(case.map.surface.clone(), case.base_from_head);
    let controller = SimController::new(cfg, Box::new(skin)).expect("controller config");
    let sim = PtyController::spawn(device, controller).expect("spawn sim");
    (host, sim)
}

/// Checks that each entry lies on a distinct planned dot within 0.01 mm, in plan order,
/// no deeper than the limit; returns the ids entered.
fn match_entries(s: &Setup, report: &SimReport) -> Vec<u32> {
    let limit = s.case.plan.limits.depth_limit_mm;
    let mut entered = Vec::new();
    let mut next = 0;
    for e in &report.entries {
        let pos = s.case.plan.dots[next..]
            .iter()
            .position(|d| {
                let p = d.position();
                (0..3).map(|i| (p[i] - e.head_mm[i]).powi(2)).sum::<f64>().sqrt() < 0.01
            })
            .unwrap_or_else(|| panic!("entry at {:?} matches no remaining planned dot", e.head_mm));
        let dot = &s.case.plan.dots[next + pos];
        assert!(e.depth_mm <= limit + 1e-9, "dot {} entered {} mm deep, limit {limit}", dot.id, e.depth_mm);
        assert!(
            (e.depth_mm - dot.depth_mm).abs() < 0.02,
            "dot {} depth {} mm, planned {}",
            dot.id,
            e.depth_mm,
            dot.depth_mm
        );
        entered.push(dot.id);
        next += pos + 1;
    }
    entered
}

#[test]
fn every_dot_executed_exactly_once_over_a_pty() {
    // Size and durability can be changed to measure: SMP_STREAM_DOTS=1000 SMP_JOURNAL_DURABILITY=process.
    let n_dots = std::env::var("SMP_STREAM_DOTS").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    let mut s = setup(n_dots);
    if std::env::var("SMP_JOURNAL_DURABILITY").as_deref() == Ok("process") {
        s.journal.set_durability(Durability::ProcessCrash).expect("durability");
    }
    let (host, sim) = spawn_sim(&s.case, FaultPlan::default());
    let mut last = Progress { dots_done: 0, dots_total: 0, last_dot: None };
    let mut calls = 0;
    let t = Instant::now();
    let cfg = ExecuteConfig { record_transcript: true, ..ExecuteConfig::default() };
    let report = execute(&s.verified, host, &mut s.journal, &cfg, &mut |p| {
        calls += 1;
        last = p;
    })
    .unwrap_or_else(|e| {
        if let Some(f) = e.fault() {
            eprintln!("{}", f.report.transcript.join("\n"));
        }
        panic!("{e}")
    });
    let wall = t.elapsed().as_secs_f64();
    let sim_report = sim.shutdown();

    let n = s.case.plan.dots.len();
    assert_eq!(report.dots_executed, n);
    assert_eq!(calls, n);
    assert_eq!(last.dots_done, n);
    assert!(report.dots_uncertain.is_empty());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let counts = s.journal.state_counts().expect("counts");
    assert_eq!(counts[&DotState::Executed], n);
    assert_eq!(counts.values().sum::<usize>(), n);

    assert_eq!(sim_report.stats.rx_overflows, 0);
    assert_eq!(sim_report.stats.flow_violations, 0);
    assert_eq!(sim_report.stats.errors_sent, 0, "{:?}", sim_report.stats.error_codes);
    assert!(sim_report.stats.alarms.is_empty());
    assert!(sim_report.unpowered_contacts.is_empty(), "{:?}", sim_report.unpowered_contacts);
    assert_eq!(sim_report.stats.lines_received as usize, s.verified.program().lines.len());
    assert_eq!(sim_report.entries.len(), n, "one needle entry per dot");
    let entered = match_entries(&s, &sim_report);
    let planned: Vec<u32> = s.case.plan.dots.iter().map(|d| d.id).collect();
    assert_eq!(entered, planned);

    s.journal.record_entries(&sim_report.entries, &sim_report.entry_timing).expect("record entries");
    assert_eq!(s.journal.entries().expect("entries").len(), n);
    let timing = s.journal.entry_timing().expect("timing");
    assert_eq!(timing.iter().flatten().count(), n, "the simulator's timing is kept for every entry");

    let queries = report.transcript.iter().filter(|l| l.as_str() == "> ?").count();
    println!(
        "stream_pty: {n} dots, {} lines, time_scale {}: {:.2} s streaming ({wall:.2} s wall, verifier estimate {:.2} s), \
         {:.0} lines/s, {:.1} dots/s",
        report.lines_sent,
        time_scale(),
        report.stream_time_s,
        s.verified.report().estimated_time_s / time_scale(),
        report.lines_per_s(),
        report.dots_per_s(),
    );
    println!(
        "stream_pty: journal {} commits, mean {:.2} ms, max {:.2} ms; pump CPU {:.2} s; {queries} status queries",
        report.journal_commits,
        report.journal_commit_mean_s() * 1e3,
        report.journal_commit_max_s * 1e3,
        report.pump_cpu_s,
    );
    if std::env::var("SMP_DUMP").is_ok() {
        println!("{}", report.transcript.join("\n"));
    }
    // No busy spin: the pump sleeps between inputs (generous bound for loaded CI machines).
    assert!(report.pump_cpu_s < 0.8 * wall + 0.2, "pump CPU {} s over {wall} s wall", report.pump_cpu_s);
}

#[test]
fn controller_reset_mid_stream_leaves_in_flight_dots_uncertain() {
    let mut s = setup(40);
    let program = s.verified.program().clone();
    let plunges: Vec<(usize, u32)> = program
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.role == LineRole::Plunge)
        .map(|(i, l)| (i, l.dot_id.expect("plunge names its dot")))
        .collect();
    let k = 17;
    let (plunge_index, dot_k) = plunges[k];
    // The controller resets instead of executing dot k's plunge (lines are read 1-based).
    let faults = FaultPlan { faults: vec![Fault::ResetBeforeLine { line: plunge_index as u64 + 1 }] };
    let (host, sim) = spawn_sim(&s.case, faults);
    let t = Instant::now();
    let err = execute(&s.verified, host, &mut s.journal, &ExecuteConfig::default(), &mut |_| {})
        .expect_err("the reset must stop the run");
    assert!(t.elapsed() < Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(20));
    let sim_report = sim.shutdown();

    let MotionError::Fault(f) = &err else { panic!("expected a fault, got {err}") };
    assert!(
        matches!(f.kind, FaultKind::ControllerReset | FaultKind::Alarm { code: Some(3) }),
        "unexpected fault kind {:?}",
        f.kind
    );
    assert_eq!(sim_report.stats.soft_resets, 1);
    assert_eq!(sim_report.faults_fired.len(), 1);
    // The dot whose plunge was lost is uncertain, with at most one neighbour: the dot before
    // it when the reset interrupted its dwell (grbl answers the interrupted line `ok` after
    // ALARM:3, which confirms nothing), or the next one if its plunge was already buffered.
    assert!(f.uncertain.contains(&dot_k), "{:?}", f.uncertain);
    let near: Vec<u32> = plunges[k - 1..=k + 1].iter().map(|p| p.1).collect();
    assert!(f.uncertain.iter().all(|d| near.contains(d)), "{:?}", f.uncertain);
    assert!(f.uncertain.len() <= 2, "{:?}", f.uncertain);
    let done = k - usize::from(f.uncertain.contains(&plunges[k - 1].1));
    assert!(f.uncertain_journaled);
    assert_eq!(f.report.dots_executed, done);

    let executed = s.journal.dots_in_state(DotState::Executed).expect("executed");
    let expected: Vec<u32> = plunges[..done].iter().map(|p| p.1).collect();
    assert_eq!(executed, expected, "executed dots untouched");
    assert_eq!(s.journal.dots_in_state(DotState::Uncertain).expect("uncertain"), f.uncertain);
    let planned = s.journal.resume_candidates().expect("planned");
    assert_eq!(planned.len(), plunges.len() - done - f.uncertain.len());
    assert!(planned.iter().all(|d| !f.uncertain.contains(d) && !expected.contains(d)));

    // The needle entered the executed dots, each once, and at most the interrupted one
    // after them; the lost plunge never ran.
    let entered = match_entries(&s, &sim_report);
    let entered_ids: Vec<u32> = plunges[..k].iter().map(|p| p.1).collect();
    assert!(entered.len() >= done && entered.len() <= k, "{entered:?}");
    assert_eq!(entered[..], entered_ids[..entered.len()], "in plan order, each once");
    assert!(!entered.contains(&dot_k));
    assert_eq!(sim_report.stats.rx_overflows, 0);
    assert_eq!(sim_report.stats.flow_violations, 0);
    let msg = err.to_string();
    assert!(msg.contains(&dot_k.to_string()) && msg.contains("uncertain"), "{msg}");
}

//! The executor against the simulated controller over a real pseudo-terminal, for each host
//! protocol (grbl character counting, grbl send-response, Marlin), and under operator control
//! (pause then resume, abort, emergency stop). The simulator records where the needle entered
//! the skin; the journal, the executor's report and that record must agree: every dot entered
//! at most once, every executed dot entered, and no dot entered that the journal holds planned.
//!
//! The operator tests also stall the pump thread on purpose (the observer sleeps, as a slow
//! journal fsync would hold it) to show that a feed hold goes out during the stall, ahead of
//! any further line, and that status polling keeps its 5-10 Hz through stalls and long dwells.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serialport::TTYPort;
use smp_core::plan::DotState;
use smp_motion::{
    execute, execute_with_control, unbounded_channel, AppliedCommand, Control, ExecuteConfig, ExecutionReport,
    ExecutorState, ExecutorUpdate, FaultKind, MotionError, OperatorCommand, Protocol, UnboundedSender,
};
use smp_sim::pty::{PtyController, SimReport};
use smp_testkit::SyntheticCase;

const TIME_SCALE: f64 = 50.0;
const PROTOCOLS: [Protocol; 3] = [Protocol::Grbl, Protocol::GrblSendResponse, Protocol::Marlin];

use crate::common::{self, entered, setup, setup_with, Setup};

fn spawn_sim(case: &SyntheticCase, protocol: Protocol) -> (TTYPort, PtyController) {
    common::spawn_sim(case, protocol, TIME_SCALE, |_| {})
}

fn cfg(protocol: Protocol) -> ExecuteConfig {
    ExecuteConfig {
        protocol,
        record_transcript: true,
        status_interval: Duration::from_millis(100),
        ..ExecuteConfig::default()
    }
}

/// Journal, report and needle record agree; returns (executed, uncertain, planned) counts.
fn check_consistent(s: &Setup, sim: &SimReport, report: &ExecutionReport) -> (usize, usize, usize) {
    let ids = entered(s, sim);
    let unique: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a dot was entered twice: {ids:?}");
    let (mut executed, mut uncertain, mut planned) = (0, 0, 0);
    for d in &s.case.plan.dots {
        match s.journal.dot_state(d.id).expect("state") {
            DotState::Executed => {
                executed += 1;
                assert!(unique.contains(&d.id), "dot {} journaled executed but never entered", d.id);
            }
            DotState::Uncertain => uncertain += 1,
            DotState::Planned => {
                planned += 1;
                assert!(!unique.contains(&d.id), "dot {} entered but journaled planned", d.id);
            }
            other => panic!("dot {} left {}", d.id, other.as_str()),
        }
    }
    assert_eq!(executed, report.dots_executed);
    assert_eq!(uncertain, report.dots_uncertain.len());
    assert_eq!(sim.stats.rx_overflows, 0);
    (executed, uncertain, planned)
}

#[test]
fn every_protocol_executes_every_dot_exactly_once() {
    for protocol in PROTOCOLS {
        let mut s = setup(20);
        let (host, sim) = spawn_sim(&s.case, protocol);
        let mut calls = 0;
        let report = execute(
            if protocol == smp_motion::Protocol::Marlin { &s.verified_marlin } else { &s.verified },
            host,
            &mut s.journal,
            &cfg(protocol),
            &mut |_| calls += 1,
        )
        .unwrap_or_else(|e| {
            if let Some(f) = e.fault() {
                eprintln!("{}", f.report.transcript.join("\n"));
            }
            panic!("{protocol}: {e}")
        });
        let sim = sim.shutdown();
        let n = s.case.plan.dots.len();
        assert_eq!(report.protocol, protocol.as_str());
        assert_eq!((report.dots_executed, calls), (n, n), "{protocol}");
        assert!(report.errors.is_empty(), "{protocol}: {:?}", report.errors);
        assert_eq!(check_consistent(&s, &sim, &report), (n, 0, 0), "{protocol}");
        let ids = entered(&s, &sim);
        assert_eq!(ids, s.case.plan.dots.iter().map(|d| d.id).collect::<Vec<_>>(), "{protocol}: plan order");
        assert_eq!(sim.stats.errors_sent, 0, "{protocol}");
        if protocol == Protocol::Marlin {
            assert!(report.transcript.iter().any(|l| l.starts_with("> N1 ")), "numbered lines");
            assert!(report.transcript.iter().any(|l| l.contains("G4 S")), "dwell in Marlin seconds");
        } else {
            // grbl: the handshake saw the simulator's overrides (`Ov:` on its second report)
            // at 100 % before the first line, and no warning was needed.
            assert_eq!(report.last_overrides.map(|o| o.motion_as_programmed()), Some(true), "{protocol}");
            assert!(report.warnings.is_empty(), "{protocol}: {:?}", report.warnings);
            assert!(report.protocol_notes.is_empty(), "{protocol}: {:?}", report.protocol_notes);
        }
        println!(
            "{protocol}: {n} dots, {} lines, {:.0} lines/s, {} B written in {:.2} s",
            report.lines_sent,
            report.lines_per_s(),
            report.bytes_written,
            report.stream_time_s
        );
    }
}

/// Called from the observer with the dots done so far; may send operator commands.
type Script = Arc<dyn Fn(usize, &UnboundedSender<OperatorCommand>) + Send + Sync>;

/// Runs `execute_with_control` with `script`. Returns the result, the states seen, and the
/// sim record.
fn run_with(
    s: &mut Setup,
    protocol: Protocol,
    script: Script,
) -> (Result<ExecutionReport, MotionError>, Vec<ExecutorState>, SimReport) {
    let (host, sim) = spawn_sim(&s.case, protocol);
    let (tx, rx) = unbounded_channel();
    let states = Arc::new(Mutex::new(Vec::new()));
    let st = states.clone();
    let mut observer = move |u: ExecutorUpdate| match u {
        ExecutorUpdate::State(x) => st.lock().expect("lock").push(x),
        ExecutorUpdate::Progress(p) => script(p.dots_done, &tx),
        ExecutorUpdate::Command(_) => {}
    };
    let result = execute_with_control(
        if protocol == smp_motion::Protocol::Marlin { &s.verified_marlin } else { &s.verified },
        host,
        &mut s.journal,
        &cfg(protocol),
        Control { commands: Some(rx), observer: &mut observer },
    );
    std::thread::sleep(Duration::from_millis(50));
    let sim = sim.shutdown();
    let states = states.lock().expect("lock").clone();
    (result, states, sim)
}

#[test]
fn pause_then_resume_executes_every_dot_once() {
    for protocol in PROTOCOLS {
        let mut s = setup(16);
        let script: Script = Arc::new(|done, tx: &UnboundedSender<OperatorCommand>| {
            if done == 5 {
                let _ = tx.send(OperatorCommand::Pause);
                let tx = tx.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    let _ = tx.send(OperatorCommand::Resume);
                });
            }
        });
        let (result, states, sim) = run_with(&mut s, protocol, script);
        let report = result.unwrap_or_else(|e| panic!("{protocol}: {e}"));
        let n = s.case.plan.dots.len();
        assert_eq!(check_consistent(&s, &sim, &report), (n, 0, 0), "{protocol}");
        let paused = states.iter().position(|x| *x == ExecutorState::Paused).expect("paused");
        assert_eq!(states.get(paused + 1), Some(&ExecutorState::Running), "{protocol}: {states:?}");
        assert_eq!(states.last(), Some(&ExecutorState::Done));
        assert!(report.paused_s >= 0.25, "{protocol}: paused {} s", report.paused_s);
        assert_eq!(
            report.operator_commands,
            vec![(OperatorCommand::Pause, true), (OperatorCommand::Resume, true)],
            "{protocol}"
        );
        if protocol.has_realtime() {
            let hold = report.transcript.iter().position(|l| l == "> !").expect("feed hold written");
            assert!(report.transcript[hold..].iter().any(|l| l == "> ~"), "{protocol}: cycle start after hold");
            assert_eq!(sim.stats.errors_sent, 0);
        }
        println!("{protocol}: pause/resume ok, feed_hold_latency_s {:.6}", report.feed_hold_latency_max_s);
    }
}

#[test]
fn abort_mid_run_leaves_in_flight_dots_uncertain_and_the_rest_planned() {
    for (protocol, command) in [
        (Protocol::Grbl, OperatorCommand::Abort),
        (Protocol::GrblSendResponse, OperatorCommand::Abort),
        (Protocol::Marlin, OperatorCommand::Abort),
        (Protocol::Grbl, OperatorCommand::EmergencyStop),
        (Protocol::Marlin, OperatorCommand::EmergencyStop),
    ] {
        let mut s = setup(16);
        let script: Script = Arc::new(move |done, tx: &UnboundedSender<OperatorCommand>| {
            if done == 6 {
                let _ = tx.send(command);
            }
        });
        let (result, states, sim) = run_with(&mut s, protocol, script);
        let err = result.expect_err("aborted");
        let MotionError::Fault(f) = &err else { panic!("{protocol}: expected a fault, got {err}") };
        let emergency = command == OperatorCommand::EmergencyStop;
        assert_eq!(f.kind, FaultKind::Aborted { emergency }, "{protocol}");
        assert!(f.report.aborted && f.uncertain_journaled, "{protocol}");
        assert_eq!(states.last(), Some(&ExecutorState::Aborted), "{protocol}: {states:?}");
        let (executed, uncertain, planned) = check_consistent(&s, &sim, &f.report);
        assert!(executed >= 6, "{protocol}: {executed} executed");
        assert!(uncertain <= 2, "{protocol}: {uncertain} uncertain {:?}", f.uncertain);
        assert!(planned >= 16 - 6 - 4, "{protocol}: {planned} planned");
        assert_eq!(executed + uncertain + planned, 16);
        if protocol.has_realtime() {
            assert!(f.controller_flushed, "{protocol}: {f}");
            assert_eq!(sim.stats.soft_resets, 1, "{protocol}");
            let first = f.report.transcript.iter().position(|l| l == "> !" || l == "> ^X").expect("stop byte");
            let expect = if emergency { "> ^X" } else { "> !" };
            assert_eq!(f.report.transcript[first], expect, "{protocol}");
        } else {
            let m112 = f.report.transcript.iter().any(|l| l == "> M112");
            assert_eq!(m112, emergency, "{protocol}");
        }
        println!(
            "{protocol} {}: executed {executed}, uncertain {uncertain}, planned {planned}, latency {:.6} s",
            command.as_str(),
            f.report.feed_hold_latency_max_s
        );
    }
}

/// Runs with `cfg` and an observer that, on the progress `block_at`, stalls the pump thread for
/// `block` (standing in for a slow journal fsync) while `commands` go out from another thread,
/// each after its delay from the start of the stall.
struct Stall {
    block_at: usize,
    block: Duration,
    commands: Vec<(Duration, OperatorCommand)>,
}

struct StallRun {
    result: Result<ExecutionReport, MotionError>,
    sim: SimReport,
    applied: Vec<AppliedCommand>,
    blocked: Option<(Instant, Instant)>,
}

fn run_stalled(s: &mut Setup, protocol: Protocol, cfg: &ExecuteConfig, stall: Stall) -> StallRun {
    let (host, sim) = spawn_sim(&s.case, protocol);
    let (tx, rx) = unbounded_channel();
    let mut applied = Vec::new();
    let mut blocked = None;
    let mut sender = None;
    let mut observer = |u: ExecutorUpdate| match u {
        ExecutorUpdate::Progress(p) if p.dots_done == stall.block_at && blocked.is_none() => {
            let (tx, commands) = (tx.clone(), stall.commands.clone());
            let from = Instant::now();
            sender = Some(std::thread::spawn(move || {
                for (at, c) in commands {
                    std::thread::sleep((from + at).saturating_duration_since(Instant::now()));
                    let _ = tx.send(c);
                }
            }));
            std::thread::sleep(stall.block);
            blocked = Some((from, Instant::now()));
        }
        ExecutorUpdate::Command(a) => applied.push(a),
        _ => {}
    };
    let result = execute_with_control(
        if protocol == smp_motion::Protocol::Marlin { &s.verified_marlin } else { &s.verified },
        host,
        &mut s.journal,
        cfg,
        Control { commands: Some(rx), observer: &mut observer },
    );
    if let Some(h) = sender {
        let _ = h.join();
    }
    std::thread::sleep(Duration::from_millis(50));
    StallRun { result, sim: sim.shutdown(), applied, blocked }
}

/// Line bytes (newline included) in transcript entries `from..to` (realtime bytes excluded).
fn line_bytes(t: &[String], from: usize, to: usize) -> usize {
    t[from..to]
        .iter()
        .filter_map(|l| l.strip_prefix("> "))
        .filter(|l| !matches!(*l, "!" | "?" | "~" | "^X"))
        .map(|l| l.len() + 1)
        .sum()
}

#[test]
fn pause_goes_out_while_the_pump_is_stalled_and_ahead_of_further_lines() {
    for protocol in [Protocol::Grbl, Protocol::GrblSendResponse] {
        let mut s = setup(14);
        let stall = Stall {
            block_at: 5,
            block: Duration::from_millis(250),
            commands: vec![
                (Duration::from_millis(60), OperatorCommand::Pause),
                (Duration::from_millis(500), OperatorCommand::Resume),
            ],
        };
        let block = stall.block;
        let r = run_stalled(&mut s, protocol, &cfg(protocol), stall);
        let report = r.result.unwrap_or_else(|e| panic!("{protocol}: {e}"));
        let n = s.case.plan.dots.len();
        assert_eq!(check_consistent(&s, &r.sim, &report), (n, 0, 0), "{protocol}");
        let (from, until) = r.blocked.expect("stalled");
        let pause = r.applied.iter().find(|a| a.command == OperatorCommand::Pause).expect("pause");
        let t0 = report.started.expect("a live run has a start");
        let written = t0 + pause.written_at.expect("hold written");
        // The hold did not wait for the stalled pump: it went out during the stall.
        assert!(from < written && written < until, "{protocol}: hold written after the stall ended");
        // How fast is measured by the bench (`cargo bench -p smp-motion`), not here: a loaded
        // machine may deschedule the sender. The property is that it did not wait for the pump.
        let latency = written.duration_since(t0 + pause.received_at);
        assert!(latency < block, "{protocol}: hold latency {latency:?}");
        // On the wire: one hold, then at most the batch the pump had already taken off its
        // queue (and journaled) before it saw the pause, then nothing but realtime bytes
        // until the resume.
        let t = &report.transcript;
        assert_eq!(t.iter().filter(|l| *l == "> !").count(), 1, "{protocol}");
        let hold = t.iter().position(|l| l == "> !").expect("hold");
        let resume = t.iter().position(|l| l == "> ~").expect("resume");
        assert!(hold < resume, "{protocol}: resume overtook the hold");
        let held_bytes = line_bytes(t, hold, resume);
        let bound = if protocol == Protocol::Grbl { 128 } else { 80 };
        assert!(held_bytes <= bound, "{protocol}: {held_bytes} line bytes written while held");
        assert_eq!(r.sim.stats.errors_sent, 0, "{protocol}");
        println!(
            "{protocol}: hold written {:.3} ms after the command, pump stalled; {held_bytes} B behind it",
            latency.as_secs_f64() * 1e3
        );
    }
}

#[test]
fn no_dot_is_entered_twice_across_pause_resume_then_abort_or_emergency_stop() {
    for protocol in PROTOCOLS {
        for last in [OperatorCommand::Abort, OperatorCommand::EmergencyStop] {
            let mut s = setup(24);
            let stall = Stall {
                block_at: 4,
                block: Duration::from_millis(120),
                commands: vec![
                    (Duration::from_millis(30), OperatorCommand::Pause),
                    (Duration::from_millis(200), OperatorCommand::Resume),
                    (Duration::from_millis(210), OperatorCommand::Pause),
                    (Duration::from_millis(400), OperatorCommand::Resume),
                    (Duration::from_millis(430), last),
                ],
            };
            let r = run_stalled(&mut s, protocol, &cfg(protocol), stall);
            let report = match &r.result {
                Ok(_) => panic!("{protocol}: the run ended before the {} arrived", last.as_str()),
                Err(MotionError::Fault(f)) => {
                    assert_eq!(f.kind, FaultKind::Aborted { emergency: last == OperatorCommand::EmergencyStop });
                    assert!(f.uncertain_journaled, "{protocol}");
                    &f.report
                }
                Err(e) => panic!("{protocol} {}: {e}", last.as_str()),
            };
            let (executed, uncertain, planned) = check_consistent(&s, &r.sim, report);
            assert_eq!(executed + uncertain + planned, 24);
            assert!(planned > 0, "{protocol}: stopped mid-run");
            let applied: Vec<(OperatorCommand, bool)> = report.operator_commands.clone();
            assert_eq!(
                &applied[..4],
                &[
                    (OperatorCommand::Pause, true),
                    (OperatorCommand::Resume, true),
                    (OperatorCommand::Pause, true),
                    (OperatorCommand::Resume, true),
                ],
                "{protocol}"
            );
            if protocol.has_realtime() {
                let t = &report.transcript;
                let order: Vec<&str> =
                    t.iter().map(String::as_str).filter(|l| matches!(*l, "> !" | "> ~")).take(4).collect();
                assert_eq!(order, ["> !", "> ~", "> !", "> ~"], "{protocol}: realtime bytes in command order");
            }
            println!(
                "{protocol} then {}: executed {executed}, uncertain {uncertain}, planned {planned}",
                last.as_str()
            );
        }
    }
}

#[test]
fn status_polling_keeps_its_rate_through_a_long_dwell_and_a_stalled_pump() {
    let mut s = setup_with(4, |spec| spec.dwell_s = 40.0); // 0.8 s of wall time per dwell
    let cfg = ExecuteConfig { record_transcript: true, ..ExecuteConfig::default() };
    let hz = 1.0 / cfg.status_interval.as_secs_f64();
    assert!((5.0..=10.0).contains(&hz), "default status rate {hz} Hz");
    // The pump stalls for 0.6 s right after the first dot: inside the second dot's dwell.
    let stall = Stall { block_at: 1, block: Duration::from_millis(600), commands: Vec::new() };
    let r = run_stalled(&mut s, Protocol::Grbl, &cfg, stall);
    let report = r.result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check_consistent(&s, &r.sim, &report), (4, 0, 0));
    let rate = report.status_queries_streaming as f64 / report.stream_time_s;
    println!(
        "status: {} queries in {:.2} s streaming = {rate:.1} Hz, longest gap {:.0} ms, {} reports",
        report.status_queries_streaming,
        report.stream_time_s,
        report.status_query_gap_max_s * 1e3,
        report.status_reports
    );
    assert!(report.stream_time_s > 2.5, "the dwells did not last: {} s", report.stream_time_s);
    assert!((5.0..=10.5).contains(&rate), "{rate} Hz");
    // Generous for a loaded machine; the period is 125 ms.
    assert!(report.status_query_gap_max_s < 0.3, "gap {} s", report.status_query_gap_max_s);
    assert!(report.status_reports as f64 >= 0.8 * report.status_queries_streaming as f64);
}

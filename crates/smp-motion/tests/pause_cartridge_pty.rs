//! The cartridge during an operator's pause, against the simulated grbl over a real pty.
//!
//! A feed hold stops the arm, not the cartridge: a pause landing in a dwell used to leave the
//! needle at depth, running, for the whole pause (a blown-out dot). The executor now stops the
//! cartridge with grbl's spindle stop override (0x9E) once the hold is complete, and grbl
//! restores it on the resume. The simulator records how long the cartridge ran while each
//! entry was in the skin, so the test measures exactly what the patient would get.
//!
//! Also: a resume sent while the hold is still decelerating (`Hold:1`, which grbl answers by
//! dropping the `~`) still resumes the run, and the spindle stop waits for `Hold:0` however
//! long the deceleration lasts.

use std::collections::HashSet;
use std::time::Duration;

use smp_core::plan::DotState;
use smp_motion::{
    execute_with_control, unbounded_channel, CartridgeEventKind, Control, ExecuteConfig, ExecutionReport,
    ExecutorUpdate, MotionError, OperatorCommand, Protocol, UnboundedSender,
};
use smp_sim::controller::{ControllerConfig, MachineState};
use smp_sim::pty::{PtyController, SimReport};

/// Machine seconds per wall second: slow enough that one status period is a small part of a
/// dwell, fast enough to keep the test short.
const TIME_SCALE: f64 = 2.0;
/// Status period, wall (0.1 s of machine time).
const STATUS_WALL: Duration = Duration::from_millis(50);

use crate::common::{self, wait_for, Setup};

fn setup(n_dots: usize, dwell_s: f64) -> Setup {
    common::setup_with(n_dots, |spec| spec.dwell_s = dwell_s)
}

fn exec_cfg(protocol: Protocol) -> ExecuteConfig {
    ExecuteConfig { protocol, record_transcript: true, status_interval: STATUS_WALL, ..ExecuteConfig::default() }
}

/// Runs the program against the simulator (its config edited by `edit`) while `script` runs
/// on its own thread with the live simulator and the operator's sender.
fn run_scripted(
    s: &mut Setup,
    protocol: Protocol,
    edit: impl FnOnce(&mut ControllerConfig),
    script: impl FnOnce(&PtyController, &UnboundedSender<OperatorCommand>) + Send,
) -> (Result<ExecutionReport, MotionError>, SimReport) {
    let (host, sim) = common::spawn_sim(&s.case, protocol, TIME_SCALE, edit);
    let (tx, rx) = unbounded_channel();
    let result = std::thread::scope(|scope| {
        let (sim_ref, tx_ref) = (&sim, &tx);
        scope.spawn(move || {
            // A failed check must not leave the run held forever: abort it, then fail.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| script(sim_ref, tx_ref)));
            if let Err(panic) = outcome {
                let _ = tx_ref.send(OperatorCommand::Abort);
                std::panic::resume_unwind(panic);
            }
        });
        let mut observer = |_: ExecutorUpdate| {};
        execute_with_control(
            if protocol == smp_motion::Protocol::Marlin { &s.verified_marlin } else { &s.verified },
            host,
            &mut s.journal,
            &exec_cfg(protocol),
            Control { commands: Some(rx), observer: &mut observer },
        )
    });
    std::thread::sleep(Duration::from_millis(50));
    (result, sim.shutdown())
}

/// Each powered entry matched to its planned dot (within 0.01 mm); every dot executed once.
fn entered_once(s: &Setup, sim: &SimReport, report: &ExecutionReport) -> Vec<u32> {
    let ids = common::entered(s, sim);
    let unique: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a dot was entered twice: {ids:?}");
    for d in &s.case.plan.dots {
        assert_eq!(s.journal.dot_state(d.id).expect("state"), DotState::Executed, "dot {}", d.id);
    }
    assert_eq!(ids.len(), s.case.plan.dots.len(), "every dot entered");
    assert_eq!(report.dots_executed, s.case.plan.dots.len());
    assert!(sim.unpowered_contacts.is_empty(), "{:?}", sim.unpowered_contacts);
    assert_eq!(sim.entry_timing.len(), ids.len());
    ids
}

fn position(t: &[String], pred: impl Fn(&str) -> bool) -> Option<usize> {
    t.iter().position(|l| pred(l))
}

#[test]
fn a_pause_mid_dwell_stops_the_cartridge_so_the_dot_gets_its_normal_running_time_in_skin() {
    for protocol in [Protocol::Grbl, Protocol::GrblSendResponse] {
        pause_mid_dwell(protocol);
    }
}

/// The cartridge events' kinds without repeated cycle starts: a repeated `~` is harmless and
/// depends on scheduling (a `Hold:0` report that grbl printed before it acted on the `~` can
/// reach a loaded host late).
fn kinds_but_repeats(report: &ExecutionReport) -> Vec<CartridgeEventKind> {
    report.cartridge_events.iter().map(|e| e.kind).filter(|k| *k != CartridgeEventKind::CycleStartRepeated).collect()
}

fn pause_mid_dwell(protocol: Protocol) {
    let mut s = setup(4, 1.0);
    let pause_s = 2.0; // of machine time
    let before_resume = std::sync::Mutex::new(None);
    let (result, sim) = run_scripted(
        &mut s,
        protocol,
        |_| {},
        |sim, tx| {
            // The second dwell: 0.3 s (machine) into it, pause; resume 2 s of machine time later.
            let mut dwells = 0;
            let mut was = false;
            let found = wait_for(sim, Duration::from_secs(30), |l| {
                if l.dwelling && !was {
                    dwells += 1;
                }
                was = l.dwelling;
                dwells == 2
            });
            assert!(found, "the second dwell never started");
            let start = sim.machine_time_s();
            assert!(wait_for(sim, Duration::from_secs(5), |l| l.machine_time_s >= start + 0.3));
            let live = sim.live();
            assert!(live.dwelling && live.needle_in_skin && live.cartridge_running, "{live:?}");
            tx.send(OperatorCommand::Pause).expect("pause");
            let paused_at = sim.machine_time_s();
            assert!(wait_for(sim, Duration::from_secs(5), |l| l.machine_time_s >= paused_at + pause_s));
            *before_resume.lock().expect("lock") = Some(sim.live());
            tx.send(OperatorCommand::Resume).expect("resume");
        },
    );
    let report = result.unwrap_or_else(|e| panic!("{e}"));
    let ids = entered_once(&s, &sim, &report);
    let paused_dot = ids[1];
    let timing = &sim.entry_timing;
    let others: Vec<f64> =
        timing.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, t)| t.running_in_skin_s).collect();
    let normal = others.iter().sum::<f64>() / others.len() as f64;
    let spread = others.iter().map(|r| (r - normal).abs()).fold(0.0, f64::max);
    let paused = timing[1];
    let status_period_s = STATUS_WALL.as_secs_f64() * TIME_SCALE;
    println!(
        "{protocol}: running time in skin: unpaused dots {normal:.3} s (spread {spread:.3} s); paused dot {paused_dot}: {:.3} s \
         running of {:.3} s in skin; status period {status_period_s:.3} s of machine time",
        paused.running_in_skin_s, paused.in_skin_s
    );
    for e in &report.cartridge_events {
        println!("  {:?} at {:.3} s: {}", e.kind, e.at_s, e.message);
    }
    assert!(paused.in_skin_s > normal + 0.9 * pause_s, "the needle stayed in the skin through the pause");
    let live = before_resume.lock().expect("lock").expect("resumed");
    assert!(live.needle_in_skin, "held in the skin: {live:?}");
    // The fix: the extra running time is the wait for the next status report (one period) and
    // the serial round trip, not the pause.
    let extra = paused.running_in_skin_s - normal;
    assert!(
        extra.abs() <= status_period_s + spread + 0.1,
        "the paused dot ran {extra:.3} s longer in the skin than an unpaused one (status period {status_period_s} s)"
    );
    // What the skin model deposits for: the session's dwell, not the pause.
    let deposit = sim.deposit_dwell_s(s.case.plan.spec.dwell_s);
    assert!((deposit[1] - s.case.plan.spec.dwell_s).abs() <= status_period_s + spread + 0.1, "{deposit:?}");
    // Events: stop sent, confirmed for the dot at depth, restored by grbl on the resume.
    assert!(!live.cartridge_running, "the cartridge was stopped during the pause: {live:?}");
    let kinds = kinds_but_repeats(&report);
    assert_eq!(
        kinds,
        [CartridgeEventKind::StopSent, CartridgeEventKind::Stopped, CartridgeEventKind::Restored],
        "{:?}",
        report.cartridge_events
    );
    let stopped =
        report.cartridge_events.iter().find(|e| e.kind == CartridgeEventKind::Stopped).expect("a Stopped event");
    assert_eq!(stopped.dot, Some(paused_dot));
    let above = stopped.tip_above_plunge_bottom_mm.expect("xyz program: tip height known");
    assert!(above.abs() < 0.01, "held at the plunge bottom: {above} mm");
    // On the wire: hold, a complete hold reported, then the spindle stop, then the resume.
    let t = &report.transcript;
    let hold = position(t, |l| l == "> !").expect("feed hold");
    let hold0 = hold + position(&t[hold..], |l| l.starts_with("< <Hold:0")).expect("Hold:0 reported");
    let stop = position(t, |l| l == "> SpindleStop").expect("spindle stop");
    let resume = position(t, |l| l == "> ~").expect("cycle start");
    assert!(hold < hold0 && hold0 < stop && stop < resume, "order: ! {hold}, Hold:0 {hold0}, 0x9E {stop}, ~ {resume}");
    assert!(report.controller_messages.iter().any(|m| m == "Restoring spindle"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

/// Slow X/Y deceleration, so that a hold during the long first travel stays in `Hold:1` for
/// seconds of machine time.
fn slow_xy(cfg: &mut ControllerConfig) {
    cfg.dynamics.x.accel_mm_per_s2 = 15.0;
    cfg.dynamics.y.accel_mm_per_s2 = 15.0;
}

/// Pauses once the machine runs the first travel at speed; returns the machine time of the
/// pause.
fn pause_in_first_travel(sim: &PtyController, tx: &UnboundedSender<OperatorCommand>) -> f64 {
    // `M3` synchronises: the cartridge starts once the first Z move is done, just before the
    // travel to the first dot (about 250 mm, accelerating for over 3 s at 15 mm/s²).
    assert!(wait_for(sim, Duration::from_secs(30), |l| l.state == MachineState::Run && l.cartridge_running));
    let started = sim.machine_time_s();
    assert!(wait_for(sim, Duration::from_secs(5), |l| l.machine_time_s >= started + 1.5));
    assert_eq!(sim.live().state, MachineState::Run, "still travelling");
    tx.send(OperatorCommand::Pause).expect("pause");
    sim.machine_time_s()
}

#[test]
fn a_resume_while_the_hold_still_decelerates_still_resumes_the_run() {
    let mut s = setup(3, 0.05);
    let (result, sim) = run_scripted(&mut s, Protocol::Grbl, slow_xy, |sim, tx| {
        let at = pause_in_first_travel(sim, tx);
        assert!(wait_for(sim, Duration::from_secs(5), |l| l.machine_time_s >= at + 0.2));
        let live = sim.live();
        assert_eq!(live.state, MachineState::Hold { complete: false }, "resume lands in Hold:1: {live:?}");
        tx.send(OperatorCommand::Resume).expect("resume");
    });
    let report = result.unwrap_or_else(|e| panic!("{e}"));
    entered_once(&s, &sim, &report);
    let kinds: Vec<CartridgeEventKind> = report.cartridge_events.iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&CartridgeEventKind::CycleStartRepeated), "{:?}", report.cartridge_events);
    assert!(!kinds.contains(&CartridgeEventKind::StopSent), "resumed before the hold completed: no stop");
    let t = &report.transcript;
    let cycle_starts = t.iter().filter(|l| *l == "> ~").count();
    assert!(cycle_starts >= 2, "the dropped `~` was sent again: {cycle_starts}");
}

#[test]
fn the_spindle_stop_waits_for_a_complete_hold_however_long_it_decelerates() {
    let mut s = setup(3, 0.05);
    let (result, sim) = run_scripted(&mut s, Protocol::Grbl, slow_xy, |sim, tx| {
        let at = pause_in_first_travel(sim, tx);
        // Hold:1 for seconds; the cartridge must still run until the machine has stopped.
        assert!(wait_for(sim, Duration::from_secs(5), |l| l.machine_time_s >= at + 1.0));
        let live = sim.live();
        assert_eq!(live.state, MachineState::Hold { complete: false }, "{live:?}");
        assert!(live.cartridge_running, "no stop while decelerating");
        assert!(wait_for(sim, Duration::from_secs(20), |l| l.state == MachineState::Hold { complete: true }));
        assert!(wait_for(sim, Duration::from_secs(2), |l| !l.cartridge_running), "stopped once held");
        // Long enough for the executor to see a report confirming it.
        std::thread::sleep(STATUS_WALL * 6);
        tx.send(OperatorCommand::Resume).expect("resume");
    });
    let report = result.unwrap_or_else(|e| panic!("{e}"));
    entered_once(&s, &sim, &report);
    let t = &report.transcript;
    let hold = position(t, |l| l == "> !").expect("feed hold");
    let hold1 = hold + position(&t[hold..], |l| l.starts_with("< <Hold:1")).expect("Hold:1 reported");
    let hold0 = hold + position(&t[hold..], |l| l.starts_with("< <Hold:0")).expect("Hold:0 reported");
    let stop = position(t, |l| l == "> SpindleStop").expect("spindle stop");
    assert!(hold1 < hold0 && hold0 < stop, "Hold:1 {hold1}, Hold:0 {hold0}, 0x9E {stop}");
    let hold1_reports = t[hold..stop].iter().filter(|l| l.starts_with("< <Hold:1")).count();
    assert!(hold1_reports >= 5, "a long deceleration: {hold1_reports} Hold:1 reports before the stop");
    let kinds = kinds_but_repeats(&report);
    assert_eq!(
        kinds,
        [CartridgeEventKind::StopSent, CartridgeEventKind::Stopped, CartridgeEventKind::Restored],
        "{:?}",
        report.cartridge_events
    );
    // Held in the air on the way to the first dot (its plunge already in grbl's buffer): the
    // tip far above that plunge's bottom.
    let above = report.cartridge_events[1].tip_above_plunge_bottom_mm.expect("xyz program");
    assert!(above > 10.0, "{above} mm");
}

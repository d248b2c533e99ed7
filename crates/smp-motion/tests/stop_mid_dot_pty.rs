//! A stop in the middle of a dot, against the simulated grbl over a real pty (issue 20).
//!
//! Found against real grbl 1.1h firmware: an abort (`!`, wait for `Hold:0`, then 0x18) during
//! a plunge interrupts the dwell that waits behind it, and grbl still answers that dwell `ok`
//! just before its reset banner (protocol.c returns from the buffer synchronisation on abort,
//! gcode.c returns `STATUS_OK`). The executor used to take that `ok` as proof the dwell ran
//! and journalled the dot `executed`, although the needle stopped short of the skin. The
//! simulator now answers as grbl does, and the dot in flight must end `uncertain`.

use std::time::Duration;

use smp_core::plan::DotState;
use smp_motion::{
    execute_with_control, unbounded_channel, Control, ExecuteConfig, ExecutionReport, ExecutorUpdate, FaultKind,
    MotionError, OperatorCommand, Protocol,
};
use smp_sim::pty::{LiveState, SimReport};

use crate::common::{self, wait_for, Setup};

/// Machine seconds per wall second.
const TIME_SCALE: f64 = 2.0;

/// Where in the second dot the operator aborts.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// The plunge is moving down, the needle still above the skin; the dwell waits behind it.
    Plunging,
    /// The needle is at depth and the dwell counts down.
    Dwelling,
}

fn abort_at(moment: Moment, protocol: Protocol) -> (Setup, Result<ExecutionReport, MotionError>, SimReport) {
    // A slow plunge (30 mm/min through a 2 mm hover) and a long dwell give the test room.
    let mut s = common::setup_with(4, |spec| {
        spec.plunge_feed_mm_per_min = 30.0;
        spec.dwell_s = 1.0;
    });
    let (host, sim) = common::spawn_sim(&s.case, protocol, TIME_SCALE, |_| {});
    let (tx, rx) = unbounded_channel();
    let cfg = ExecuteConfig {
        protocol,
        record_transcript: true,
        status_interval: Duration::from_millis(50),
        ..ExecuteConfig::default()
    };
    // Dots whose `executed` the host has committed: the abort waits for the first, so that a
    // host slowed by a loaded machine cannot leave the first dot's `ok` unread at the stop
    // (which rightly makes it uncertain too, but is not the case under test).
    let committed = std::sync::atomic::AtomicUsize::new(0);
    let result = std::thread::scope(|scope| {
        let (sim_ref, tx_ref, committed_ref) = (&sim, &tx, &committed);
        scope.spawn(move || {
            // The plunge is the only move straight down (the `xyz` profile's needle is
            // vertical): Z falling, X and Y still, since the last sample that moved.
            let mut last: Option<[f64; 3]> = None;
            let at = |l: &LiveState| {
                let p = l.position_mm;
                let descending = last
                    .is_some_and(|q| p[2] < q[2] - 1e-6 && (p[0] - q[0]).abs() < 1e-9 && (p[1] - q[1]).abs() < 1e-9);
                if last != Some(p) {
                    last = Some(p);
                }
                l.entries == 1
                    && committed_ref.load(std::sync::atomic::Ordering::SeqCst) >= 1
                    && match moment {
                        Moment::Plunging => descending && l.cartridge_running && !l.needle_in_skin,
                        Moment::Dwelling => l.dwelling && l.needle_in_skin,
                    }
            };
            // Past the first dot's dwell, in the second dot's plunge (or dwell).
            let found = wait_for(sim_ref, Duration::from_secs(60), at);
            // Either way the run must end: abort now.
            let _ = tx_ref.send(OperatorCommand::Abort);
            assert!(found, "the moment {moment:?} never came: {:?}", sim_ref.live());
        });
        let mut observer = |u: ExecutorUpdate| {
            if let ExecutorUpdate::Progress(p) = u {
                committed.store(p.dots_done, std::sync::atomic::Ordering::SeqCst);
            }
        };
        execute_with_control(
            &s.verified,
            host,
            &mut s.journal,
            &cfg,
            Control { commands: Some(rx), observer: &mut observer },
        )
    });
    std::thread::sleep(Duration::from_millis(50));
    let report = sim.shutdown();
    (s, result, report)
}

fn check(moment: Moment, protocol: Protocol) {
    let (s, result, sim) = abort_at(moment, protocol);
    let Err(MotionError::Fault(f)) = result else {
        panic!("{protocol} {moment:?}: an abort ends in a fault: {result:?}")
    };
    assert_eq!(f.kind, FaultKind::Aborted { emergency: false });
    let ids: Vec<u32> = s.case.plan.dots.iter().map(|d| d.id).collect();
    let states: Vec<DotState> = ids.iter().map(|&d| s.journal.dot_state(d).expect("state")).collect();
    // The first dot ran to the end before the abort; the second was in flight.
    assert_eq!(states[0], DotState::Executed, "{protocol} {moment:?}: {states:?}");
    assert_eq!(states[1], DotState::Uncertain, "{protocol} {moment:?}: the dot in flight: {states:?}");
    assert!(states[2..].iter().all(|st| matches!(st, DotState::Planned | DotState::Uncertain)), "{states:?}");
    assert!(!states[2..].contains(&DotState::Executed), "{states:?}");
    // What grbl said: the interrupted dwell's `ok` came after the reset went out.
    let t = &f.report.transcript;
    let reset = t.iter().position(|l| l == "> ^X").unwrap_or_else(|| panic!("no reset: {t:#?}"));
    let banner = reset + t[reset..].iter().position(|l| l.contains("Grbl 1.1h")).expect("banner after the reset");
    let ok_between = t[reset..banner].iter().any(|l| l == "< ok");
    assert!(
        ok_between,
        "{protocol} {moment:?}: grbl answers the interrupted dwell before its banner: {:#?}",
        &t[reset..=banner]
    );
    assert!(sim.stats.oks_after_reset >= 1);
    assert!(
        f.report.errors.iter().any(|e| e.contains("answered after the stop began")),
        "{protocol} {moment:?}: the report names the ignored answer: {:?}",
        f.report.errors
    );
    match moment {
        // The needle never reached the skin for the second dot.
        Moment::Plunging => assert_eq!(sim.entries.len(), 1, "{protocol}: {:?}", sim.entries),
        // It did, but the dwell was cut short: looking decides (camera or operator).
        Moment::Dwelling => assert_eq!(sim.entries.len(), 2, "{protocol}: {:?}", sim.entries),
    }
}

#[test]
fn an_abort_during_a_plunge_leaves_the_dot_uncertain_though_grbl_answers_its_dwell() {
    for protocol in [Protocol::Grbl, Protocol::GrblSendResponse] {
        check(Moment::Plunging, protocol);
    }
}

#[test]
fn an_abort_during_a_dwell_leaves_the_dot_uncertain_though_grbl_answers_its_dwell() {
    for protocol in [Protocol::Grbl, Protocol::GrblSendResponse] {
        check(Moment::Dwelling, protocol);
    }
}

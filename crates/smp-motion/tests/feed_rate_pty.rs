//! The feed rate percentage against the simulated controller over a real pty: Marlin's
//! `M220` (queried in the handshake and between lines while streaming) and grbl's feed
//! override (`Ov:`), both changed from the simulator side by the `feed_rate_at_time` fault as
//! an operator's knob would. A percentage other than 100 scales every feed the verifier proved
//! (the plunge among them): the run is refused at start, or stopped, with the dots in flight
//! uncertain and none entered twice.

use std::collections::HashSet;
use std::time::Duration;

use smp_core::plan::DotState;
use smp_motion::{execute, ExecuteConfig, FaultKind, MotionError, Protocol};
use smp_sim::controller::{Fault, FaultPlan};
use smp_sim::pty::SimReport;

const TIME_SCALE: f64 = 10.0;

use crate::common::{self, setup, Setup};

fn run(
    s: &mut Setup,
    protocol: Protocol,
    faults: Vec<Fault>,
) -> (Result<smp_motion::ExecutionReport, MotionError>, SimReport) {
    let (host, sim) = common::spawn_sim(&s.case, protocol, TIME_SCALE, |cfg| cfg.faults = FaultPlan { faults });
    let exec = ExecuteConfig {
        protocol,
        record_transcript: true,
        status_interval: Duration::from_millis(50),
        marlin_feed_rate_query: Duration::from_millis(100),
        ..ExecuteConfig::default()
    };
    let result = execute(
        if protocol == smp_motion::Protocol::Marlin { &s.verified_marlin } else { &s.verified },
        host,
        &mut s.journal,
        &exec,
        &mut |_| {},
    );
    std::thread::sleep(Duration::from_millis(50));
    (result, sim.shutdown())
}

/// Dots entered at most once, and only dots the journal does not hold as planned.
fn entered_at_most_once(s: &Setup, sim: &SimReport) -> usize {
    let mut seen = HashSet::new();
    for id in common::entered(s, sim) {
        assert!(seen.insert(id), "dot {id} entered twice");
        assert_ne!(s.journal.dot_state(id).expect("state"), DotState::Planned, "dot {id} entered but planned");
    }
    seen.len()
}

#[test]
fn marlin_refuses_to_start_unless_the_feed_rate_is_100_percent() {
    let mut s = setup(4);
    let (result, sim) = run(&mut s, Protocol::Marlin, vec![Fault::FeedRateAtTime { time_s: 0.0, percent: 50 }]);
    match result {
        Err(MotionError::OverrideActiveAtStart { feed_pct: 50, rapid_pct: 50 }) => {}
        other => panic!("expected a refusal at start, got {other:?}"),
    }
    assert!(sim.entries.is_empty());
    assert_eq!(entered_at_most_once(&s, &sim), 0);
}

#[test]
fn a_feed_rate_change_mid_run_stops_the_run_for_marlin_and_grbl() {
    for protocol in [Protocol::Marlin, Protocol::Grbl] {
        let mut s = setup(30);
        // 12 s of machine time in: past the first travel (about 9.7 s), a few dots done.
        let (result, sim) = run(&mut s, protocol, vec![Fault::FeedRateAtTime { time_s: 12.0, percent: 150 }]);
        let fault = match result {
            Err(MotionError::Fault(f)) => f,
            other => panic!("{protocol}: expected a fault, got {other:?}"),
        };
        // Marlin's M220 scales rapids too; grbl's feed override leaves its rapid override alone.
        let rapid_pct = if protocol == Protocol::Marlin { 150 } else { 100 };
        assert_eq!(fault.kind, FaultKind::OverrideActive { feed_pct: 150, rapid_pct }, "{protocol}");
        let r = &fault.report;
        let entered = entered_at_most_once(&s, &sim);
        let fired_s = sim.faults_fired.first().expect("fault fired").time_s;
        // Entries after the change ran at the changed feed: at most the lines already in the
        // controller when it was seen.
        let after = sim.entries.iter().filter(|e| e.time_s > fired_s).count();
        println!(
            "{protocol}: feed rate changed at {fired_s:.2} s machine time; {} dots executed, {} uncertain, {entered} \
             entered, {after} entered after the change; {} feed rate queries",
            r.dots_executed,
            r.dots_uncertain.len(),
            r.transcript.iter().filter(|l| l.contains("M220")).count()
        );
        assert!(r.dots_executed >= 1 && r.dots_executed < s.case.plan.dots.len(), "{protocol}: stopped mid-run");
        assert!(after <= 2, "{protocol}: {after} dots entered after the change");
        assert_eq!(r.last_overrides.map(|o| o.feed_pct), Some(150), "{protocol}");
        if protocol == Protocol::Marlin {
            assert!(
                r.transcript.iter().any(|l| l.starts_with("> N") && l.contains(" M220*")),
                "queried while streaming"
            );
            assert!(r.transcript.iter().any(|l| l == "< FR:150%"));
        }
    }
}

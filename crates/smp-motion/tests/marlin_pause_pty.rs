//! What an operator's pause does on Marlin, against the simulated Marlin over a real pty.
//!
//! Without `REALTIME_REPORTING_COMMANDS` Marlin has no feed hold: a pause only stops sending,
//! and the lines already sent run on (the run's report says how far, in the warnings). With
//! it, the executor sends a numbered `P000`, which Marlin's emergency parser acts on as it
//! arrives: the steppers stop at once. Either way the resume completes the run with every dot
//! executed once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use smp_core::plan::DotState;
use smp_motion::{
    execute_with_control, unbounded_channel, Control, ExecuteConfig, ExecutionReport, ExecutorUpdate, MotionError,
    OperatorCommand, Protocol, UnboundedSender,
};
use smp_sim::controller::MachineState;
use smp_sim::pty::{PtyController, SimReport};

const TIME_SCALE: f64 = 2.0;

use crate::common::{self, setup, wait_for, Setup};

/// What the script saw: how far the tip moved in the second of machine time after the
/// pause, and how long (wall) until the steppers were suspended, if they were.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    moved_after_pause_mm: f64,
    suspended_after: Option<Duration>,
}

fn run(s: &mut Setup, realtime: bool) -> (Result<ExecutionReport, MotionError>, SimReport, Seen) {
    let (host, sim) =
        common::spawn_sim(&s.case, Protocol::Marlin, TIME_SCALE, |cfg| cfg.marlin_realtime_commands = realtime);
    let exec = ExecuteConfig {
        protocol: Protocol::Marlin,
        record_transcript: true,
        marlin_realtime_commands: realtime,
        ..ExecuteConfig::default()
    };
    let (tx, rx) = unbounded_channel();
    let seen = std::sync::Mutex::new(Seen::default());
    let result = std::thread::scope(|scope| {
        let (sim_ref, tx_ref, seen_ref): (&PtyController, &UnboundedSender<OperatorCommand>, _) = (&sim, &tx, &seen);
        scope.spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // The first travel (about 250 mm at 50 mm/s) starts once the cartridge runs.
                let ok =
                    wait_for(sim_ref, Duration::from_secs(30), |l| l.state == MachineState::Run && l.cartridge_running);
                assert!(ok, "the first travel never started");
                let t = sim_ref.machine_time_s();
                assert!(wait_for(sim_ref, Duration::from_secs(5), |l| l.machine_time_s >= t + 1.0));
                let sent_at = Instant::now();
                tx_ref.send(OperatorCommand::Pause).expect("pause");
                let suspended_after =
                    wait_for(sim_ref, Duration::from_millis(500), |l| l.steppers_suspended).then(|| sent_at.elapsed());
                let p0 = sim_ref.live();
                assert!(wait_for(sim_ref, Duration::from_secs(5), |l| l.machine_time_s >= p0.machine_time_s + 1.0));
                let p1 = sim_ref.live();
                let moved = (0..3).map(|i| (p1.position_mm[i] - p0.position_mm[i]).powi(2)).sum::<f64>().sqrt();
                *seen_ref.lock().expect("lock") = Seen { moved_after_pause_mm: moved, suspended_after };
                tx_ref.send(OperatorCommand::Resume).expect("resume");
            }));
            if let Err(panic) = outcome {
                let _ = tx_ref.send(OperatorCommand::EmergencyStop);
                std::panic::resume_unwind(panic);
            }
        });
        let mut observer = |_: ExecutorUpdate| {};
        execute_with_control(
            &s.verified_marlin,
            host,
            &mut s.journal,
            &exec,
            Control { commands: Some(rx), observer: &mut observer },
        )
    });
    std::thread::sleep(Duration::from_millis(50));
    let seen = *seen.lock().expect("lock");
    (result, sim.shutdown(), seen)
}

fn every_dot_once(s: &Setup, sim: &SimReport, report: &ExecutionReport) {
    let mut ids = HashSet::new();
    for id in common::entered(s, sim) {
        assert!(ids.insert(id), "dot {id} entered twice");
    }
    for d in &s.case.plan.dots {
        assert_eq!(s.journal.dot_state(d.id).expect("state"), DotState::Executed, "dot {}", d.id);
    }
    assert_eq!(ids.len(), s.case.plan.dots.len());
    assert_eq!(report.dots_executed, s.case.plan.dots.len());
}

#[test]
fn a_marlin_pause_runs_on_without_realtime_commands_and_stops_at_once_with_p000() {
    for realtime in [false, true] {
        let mut s = setup(3);
        let (result, sim, seen) = run(&mut s, realtime);
        let report = result.unwrap_or_else(|e| panic!("realtime {realtime}: {e}"));
        every_dot_once(&s, &sim, &report);
        println!(
            "Marlin, realtime commands {realtime}: tip moved {:.1} mm in the second after the pause; steppers \
             suspended after {:?}; warnings {:?}",
            seen.moved_after_pause_mm, seen.suspended_after, report.warnings
        );
        let t = &report.transcript;
        if realtime {
            let latency = seen.suspended_after.expect("P000 suspended the steppers");
            assert!(latency < Duration::from_millis(100), "{latency:?}");
            assert!(seen.moved_after_pause_mm < 1e-6, "frozen: {} mm", seen.moved_after_pause_mm);
            let p = t.iter().position(|l| l.starts_with("> N") && l.contains(" P000*")).expect("P000 sent");
            assert!(t[p..].iter().any(|l| l.starts_with("> N") && l.contains(" R000*")), "R000 after it");
            assert!(report.warnings.iter().any(|w| w.contains("P000")), "{:?}", report.warnings);
        } else {
            assert!(seen.suspended_after.is_none());
            assert!(seen.moved_after_pause_mm > 10.0, "ran on: {} mm", seen.moved_after_pause_mm);
            assert!(!t.iter().any(|l| l.contains("P000")));
            let run_on = report.pause_run_on.expect("stated");
            assert!(run_on.seconds > 1.0 && run_on.travel_mm > 10.0, "{run_on:?}");
            assert!(report.warnings.iter().any(|w| w.contains("no feed hold")), "{:?}", report.warnings);
        }
    }
}

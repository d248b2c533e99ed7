//! The executor against the simulated controller over a real pseudo-terminal, for each host
//! protocol (grbl character counting, grbl send-response, Marlin), and under operator control
//! (pause then resume, abort, emergency stop). The simulator records where the needle entered
//! the skin; the journal, the executor's report and that record must agree: every dot entered
//! at most once, every executed dot entered, and no dot entered that the journal holds planned.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nalgebra::{Isometry3, Point3};
use serialport::TTYPort;
use smp_core::geometry::SurfacePatch;
use smp_core::plan::DotState;
use smp_gcode::fixtures::{synthetic_case, SyntheticCase};
use smp_gcode::{compile, verify, VerifiedProgram};
use smp_motion::{
    execute, execute_with_control, unbounded_channel, Control, ExecuteConfig, ExecutionReport, ExecutorState,
    ExecutorUpdate, FaultKind, MotionError, OperatorCommand, Protocol, UnboundedSender,
};
use smp_sim::controller::{ControllerConfig, FaultPlan, ProtocolMode, SimController, Skin};
use smp_sim::pty::{PtyController, SimReport};
use smp_store::{Durability, Journal, SessionMeta};

const TIME_SCALE: f64 = 50.0;
const PROTOCOLS: [Protocol; 3] = [Protocol::Grbl, Protocol::GrblSendResponse, Protocol::Marlin];

/// The synthetic case's dome scalp seen from the base (Newton on the base z).
struct DomeSkin {
    patch: SurfacePatch,
    base_from_patch: Isometry3<f64>,
    patch_from_base: Isometry3<f64>,
    head_from_base: Isometry3<f64>,
}

impl DomeSkin {
    fn new(patch: SurfacePatch, base_from_head: Isometry3<f64>) -> Self {
        let base_from_patch = base_from_head * patch.head_from_patch;
        DomeSkin {
            patch,
            base_from_patch,
            patch_from_base: base_from_patch.inverse(),
            head_from_base: base_from_head.inverse(),
        }
    }

    fn gap(&self, x: f64, y: f64, z: f64) -> (f64, Point3<f64>) {
        let p = self.patch_from_base * Point3::new(x, y, z);
        (p.z - self.patch.height(p.x, p.y), p)
    }
}

impl Skin for DomeSkin {
    fn surface_z_base(&self, x_mm: f64, y_mm: f64) -> Option<f64> {
        let mut z = self.base_from_patch.translation.vector.z;
        for _ in 0..40 {
            let (f, p) = self.gap(x_mm, y_mm, z);
            let (f2, _) = self.gap(x_mm, y_mm, z + 1e-3);
            let slope = (f2 - f) / 1e-3;
            if !slope.is_finite() || slope.abs() < 1e-6 {
                return None;
            }
            let step = f / slope;
            z -= step;
            if step.abs() < 1e-10 {
                return self.patch.contains_xy(p.x, p.y).then_some(z);
            }
        }
        None
    }

    fn head_from_base(&self) -> Isometry3<f64> {
        self.head_from_base
    }
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
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = SessionMeta {
        patient: "synthetic".into(),
        session: case.plan.session,
        rig_name: case.rig.name.clone(),
        seed: case.plan.spec.seed,
        plan_json: "{}".into(),
    };
    let mut journal = Journal::create(&dir.path().join("session.sqlite"), &meta).expect("journal");
    journal.insert_plan(&case.plan).expect("insert plan");
    journal.set_durability(Durability::ProcessCrash).expect("durability");
    Setup { case, verified, journal, _dir: dir }
}

fn spawn_sim(case: &SyntheticCase, protocol: Protocol) -> (TTYPort, PtyController) {
    let (host, device) = TTYPort::pair().expect("pty pair");
    let mut cfg = ControllerConfig::new(case.rig.dynamics);
    cfg.time_scale = TIME_SCALE;
    cfg.faults = FaultPlan::default();
    if protocol == Protocol::Marlin {
        cfg.protocol = ProtocolMode::Marlin;
    }
    let skin = DomeSkin::new(case.map.surface.clone(), case.base_from_head);
    let controller = SimController::new(cfg, Box::new(skin)).expect("controller config");
    (host, PtyController::spawn(device, controller).expect("spawn sim"))
}

fn cfg(protocol: Protocol) -> ExecuteConfig {
    ExecuteConfig {
        protocol,
        record_transcript: true,
        status_interval: Duration::from_millis(100),
        ..ExecuteConfig::default()
    }
}

/// Planned dot ids entered by the simulated needle, in order (each entry matched to the
/// nearest planned dot within 0.01 mm).
fn entered(s: &Setup, sim: &SimReport) -> Vec<u32> {
    sim.entries
        .iter()
        .map(|e| {
            let d = s
                .case
                .plan
                .dots
                .iter()
                .find(|d| {
                    let p = d.position();
                    (0..3).map(|i| (p[i] - e.head_mm[i]).powi(2)).sum::<f64>().sqrt() < 0.01
                })
                .unwrap_or_else(|| panic!("entry at {:?} matches no planned dot", e.head_mm));
            d.id
        })
        .collect()
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
        let report =
            execute(&s.verified, host, &mut s.journal, &cfg(protocol), &mut |_| calls += 1).unwrap_or_else(|e| {
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
        &s.verified,
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

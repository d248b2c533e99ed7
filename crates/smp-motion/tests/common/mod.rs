//! Set-up the pty tests share: a verified program for a synthetic case with its journal, and
//! the simulated controller on the other end of a real pseudo-terminal.
#![allow(dead_code)] // each test binary uses its own part

use std::time::{Duration, Instant};

use serialport::TTYPort;
use smp_gcode::{compile, compile_with, verify, CompileOptions, Dialect, VerifiedProgram};
use smp_motion::Protocol;
use smp_sim::controller::{ControllerConfig, PatchSkin, ProtocolMode, SimController};
use smp_sim::pty::{LiveState, PtyController, SimReport};
use smp_store::{Durability, Journal, SessionMeta};
use smp_testkit::{synthetic_case, SyntheticCase};

pub(crate) struct Setup {
    pub(crate) case: SyntheticCase,
    /// The program in grbl's dialect, and in Marlin's (the verified text goes on the wire as
    /// it is, so each controller gets a program compiled for it).
    pub(crate) verified: VerifiedProgram,
    pub(crate) verified_marlin: VerifiedProgram,
    pub(crate) journal: Journal,
    _dir: tempfile::TempDir,
}

pub(crate) fn setup(n_dots: usize) -> Setup {
    setup_with(n_dots, |_| {})
}

/// [`setup`] with the session spec changed before compiling (e.g. a long dwell).
pub(crate) fn setup_with(n_dots: usize, edit: impl FnOnce(&mut smp_core::plan::SessionSpec)) -> Setup {
    let mut case = synthetic_case(n_dots);
    edit(&mut case.plan.spec);
    let program = compile(&case.plan, &case.rig, &case.base_from_head).expect("compiles");
    let verified = verify(program, &case.plan, &case.map, &case.rig, &case.base_from_head).expect("verifies");
    let marlin = CompileOptions { dialect: Dialect::Marlin };
    let program = compile_with(&case.plan, &case.rig, &case.base_from_head, &marlin).expect("compiles");
    let verified_marlin = verify(program, &case.plan, &case.map, &case.rig, &case.base_from_head).expect("verifies");
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
    Setup { case, verified, verified_marlin, journal, _dir: dir }
}

/// The simulated controller for `case` speaking `protocol` at `time_scale`, its config edited
/// by `edit` (faults, real-time commands), behind a real pty; the host end is returned.
pub(crate) fn spawn_sim(
    case: &SyntheticCase,
    protocol: Protocol,
    time_scale: f64,
    edit: impl FnOnce(&mut ControllerConfig),
) -> (TTYPort, PtyController) {
    let (host, device) = TTYPort::pair().expect("pty pair");
    let mut cfg = ControllerConfig::new(case.rig.dynamics);
    cfg.time_scale = time_scale;
    if protocol == Protocol::Marlin {
        cfg.protocol = ProtocolMode::Marlin;
    }
    edit(&mut cfg);
    let skin = PatchSkin::new(case.map.surface.clone(), case.base_from_head);
    let controller = SimController::new(cfg, Box::new(skin)).expect("controller config");
    (host, PtyController::spawn(device, controller).expect("spawn sim"))
}

/// Polls the live simulator until `until` holds (or `limit` of wall time passes).
pub(crate) fn wait_for(sim: &PtyController, limit: Duration, mut until: impl FnMut(&LiveState) -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if until(&sim.live()) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Planned dot ids entered by the simulated needle, in order (each entry matched to the
/// nearest planned dot within 0.01 mm).
pub(crate) fn entered(s: &Setup, sim: &SimReport) -> Vec<u32> {
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

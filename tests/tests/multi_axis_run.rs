//! `smp run --sim` on the 5-axis (`xyzab`) and 6-axis (`joints`) rigs: the plan is compiled
//! for the rig's profile, verified, streamed over a real pty to the simulated controller,
//! which moves A/B or the six joints; every dot is entered once, on its planned point.

use smp_cli::run_cmd::{run, RunArgs, Target};
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::truth_map::{truth_map, TruthMapSettings};

fn rig_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../calibration")).join(name)
}

fn run_on(rig_file: &str, dots: usize) -> smp_cli::run_cmd::RunReport {
    let tmp = tempfile::tempdir().unwrap();
    let rig_p = rig_path(rig_file);
    let rig = smp_core::rig::Rig::from_toml_str(&std::fs::read_to_string(&rig_p).unwrap()).unwrap();
    let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).unwrap();
    let settings = TruthMapSettings { base_from_head: rig.base_from_head_nominal(), ..Default::default() };
    let map = truth_map(&SyntheticPatient::generate(&spec), &settings).unwrap().map;
    let map_p = tmp.path().join("map.json");
    std::fs::write(&map_p, serde_json::to_string(&map).unwrap()).unwrap();
    let patient_p = tmp.path().join("patient.toml");
    std::fs::write(&patient_p, DEFAULT_PATIENT_TOML).unwrap();
    let spec_p = tmp.path().join("s1.toml");
    std::fs::write(
        &spec_p,
        smp_planner::DEFAULT_SESSION1_TOML.replace("# max_dots = 300", &format!("max_dots = {dots}")),
    )
    .unwrap();
    let plan_p = tmp.path().join("plan.json");
    let pa = smp_cli::planning::PlanArgs {
        map: map_p.clone(),
        patient: patient_p,
        session: 1,
        out: plan_p.clone(),
        spec: Some(spec_p),
        rig: Some(rig_p.clone()),
    };
    let planned = smp_cli::planning::plan(&pa).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint)).dots;
    assert_eq!(planned, dots);
    let a = RunArgs {
        plan: plan_p,
        map: map_p,
        session: None,
        target: Target::Sim { patient: None, faults: None, time_scale: 50.0 },
        rig: Some(rig_p),
        journal: tmp.path().join("session.sqlite"),
        resume: false,
        protocol: smp_motion::Protocol::Grbl,
        bus: None,
        tracking_hz: 5.0,
    };
    let r = run(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    eprintln!("{rig_file}: {}", smp_cli::run_cmd::summary(&r));
    r
}

#[test]
fn a_five_axis_rig_runs_a_session_end_to_end() {
    let r = run_on("rig-xyzab.toml", 40);
    assert_eq!(r.dots_executed, 40, "{r:?}");
    assert_eq!(r.dots_doubled, Some(0));
    assert_eq!(r.stray_entries, Some(0));
    assert!(r.placement_max_mm.unwrap() < 0.05, "{r:?}");
    assert!(r.faults.is_empty(), "{:?}", r.faults);
    assert!(r.warnings.iter().any(|w| w.contains("head not tracked")), "{:?}", r.warnings);
}

#[test]
fn a_six_axis_arm_runs_a_session_end_to_end() {
    let r = run_on("rig-6axis.toml", 30);
    assert_eq!(r.dots_executed, 30, "{r:?}");
    assert_eq!(r.dots_doubled, Some(0));
    assert_eq!(r.stray_entries, Some(0));
    assert!(r.placement_max_mm.unwrap() < 0.05, "{r:?}");
}

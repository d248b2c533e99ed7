//! `smp run --sim` on the 5-axis (`xyzab`) and 6-axis (`joints`) rigs: the plan is compiled
//! for the rig's profile, verified, streamed over a real pty to the simulated controller,
//! which moves A/B or the six joints; every dot is entered once, on its planned point.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed set-up step stops the test there

use smp_cli::run_cmd::run;
use smp_sim::patient::DEFAULT_PATIENT_TOML;

fn run_on(rig_file: &str, dots: usize) -> smp_cli::run_cmd::RunReport {
    let tmp = tempfile::tempdir().unwrap();
    let case = smp_tests::plan_case(
        tmp.path(),
        DEFAULT_PATIENT_TOML,
        Some(&format!("calibration/{rig_file}")),
        smp_planner::DEFAULT_SESSION1_TOML,
        dots,
    );
    let r = run(&case.sim_run(tmp.path().join("session.sqlite"), 50.0, None, false))
        .unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    eprintln!("{rig_file}: {}", smp_cli::run_cmd::summary(&r));
    r
}

#[test]
fn a_five_axis_rig_runs_a_session_end_to_end() {
    let r = run_on("rig-xyzab.toml", 40);
    assert_eq!(r.session.dots_executed, 40, "{r:?}");
    assert_eq!(r.score.as_ref().map(|s| s.dots_doubled), Some(0));
    assert_eq!(r.score.as_ref().map(|s| s.stray_entries), Some(0));
    assert!(r.score.as_ref().map(|s| s.placement_max_mm).unwrap() < 0.05, "{r:?}");
    assert!(r.session.faults.is_empty(), "{:?}", r.session.faults);
    assert!(r.session.warnings.iter().any(|w| w.contains("head not tracked")), "{:?}", r.session.warnings);
}

#[test]
fn a_six_axis_arm_runs_a_session_end_to_end() {
    let r = run_on("rig-6axis.toml", 30);
    assert_eq!(r.session.dots_executed, 30, "{r:?}");
    assert_eq!(r.score.as_ref().map(|s| s.dots_doubled), Some(0));
    assert_eq!(r.score.as_ref().map(|s| s.stray_entries), Some(0));
    assert!(r.score.as_ref().map(|s| s.placement_max_mm).unwrap() < 0.05, "{r:?}");
}

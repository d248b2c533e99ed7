//! `smp plan` and `smp eval planner` through the CLI's library functions, on maps made from
//! the simulator's ground truth: layered sessions in one plan file, the intake gate, and
//! the figures the eval prints.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed set-up step stops the test there

use smp_cli::eval::planner::{eval_planner, EvalPlannerArgs};
use smp_cli::planning::{plan, PlanArgs};
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::truth_map::{truth_map, TruthMapSettings};

fn write_truth_map(dir: &std::path::Path) -> std::path::PathBuf {
    let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).unwrap();
    let rig = smp_core::rig::Rig::default_sim();
    let settings = TruthMapSettings { base_from_head: rig.base_from_head_nominal(), ..Default::default() };
    let t = truth_map(&SyntheticPatient::generate(&spec), &settings).unwrap();
    let p = dir.join("map.json");
    std::fs::write(&p, serde_json::to_string(&t.map).unwrap()).unwrap();
    p
}

#[test]
fn sessions_one_and_two_share_a_plan_file_and_keep_the_spacing() {
    let tmp = tempfile::tempdir().unwrap();
    let map = write_truth_map(tmp.path());
    let patient = tmp.path().join("patient.toml");
    std::fs::write(&patient, DEFAULT_PATIENT_TOML).unwrap();
    let out = tmp.path().join("plan.json");
    // The full-head spec with a tilt the default xyz rig at the tilted head rest can reach.
    let spec = tmp.path().join("s1.toml");
    let text = smp_planner::FULL_HEAD_SESSION1_TOML.replace("max_tilt_deg = 72.0", "max_tilt_deg = 30.0");
    std::fs::write(&spec, text).unwrap();
    let args = |n| PlanArgs {
        map: map.clone(),
        patient: patient.clone(),
        session: n,
        out: out.clone(),
        spec: Some(spec.clone()),
        rig: None,
    };
    let f1 = plan(&args(1)).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    let f2 = plan(&args(2)).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert!(f1.dots > 100 && f2.dots > 100, "{} / {}", f1.dots, f2.dots);
    assert!(f1.min_spacing_mm >= 0.9 - 1e-9 && f2.min_spacing_mm >= 0.9 - 1e-9);
    assert!(f1.tour_lower_bound_mm > 0.0 && f1.tour_lower_bound_mm <= f1.tour_mm);
    let pf = smp_core::plan::PlanFile::from_json_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(pf.sessions.iter().map(|s| s.session).collect::<Vec<_>>(), vec![1, 2]);
    // Session 2 keeps clear of every session-1 dot.
    let s1: Vec<[f64; 3]> = pf.sessions[0].dots.iter().map(|d| d.position()).collect();
    let s2: Vec<[f64; 3]> = pf.sessions[1].dots.iter().map(|d| d.position()).collect();
    assert!(smp_planner::metrics::min_spacing_mm(&s2, &s1) >= 0.9 - 1e-9);
    // Every dot carries its pigment from the ladder; session 2 is darker (less dilution).
    assert!(pf.sessions.iter().all(|s| s.dots.iter().all(|d| d.tone.is_some())));
    let mean =
        |i: usize| pf.sessions[i].dots.iter().map(|d| d.dilution_pct).sum::<f64>() / pf.sessions[i].dots.len() as f64;
    assert!(mean(1) < mean(0), "session 2 dilution {} vs session 1 {}", mean(1), mean(0));
}

#[test]
fn an_unresolved_contraindication_refuses_the_plan_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let map = write_truth_map(tmp.path());
    let patient = tmp.path().join("patient.toml");
    let text = DEFAULT_PATIENT_TOML
        .replace("{ name = \"keloid scarring\", resolved = true }", "{ name = \"keloid scarring\", resolved = false }");
    assert_ne!(text, DEFAULT_PATIENT_TOML);
    std::fs::write(&patient, text).unwrap();
    let out = tmp.path().join("plan.json");
    let a = PlanArgs { map, patient, session: 1, out: out.clone(), spec: None, rig: None };
    let e = plan(&a).unwrap_err();
    assert!(e.message.contains("keloid scarring"), "{}", e.message);
    assert!(!out.exists(), "no plan file on refusal");
}

#[test]
fn eval_planner_reports_every_session_and_holds_the_spacing() {
    let a = EvalPlannerArgs { patient: None, dots: Some(400), sessions: 2, spec: None };
    let r = eval_planner(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert_eq!(r.sessions.len(), 2);
    assert!(r.min_spacing_all_mm >= 0.9 - 1e-9, "{}", r.min_spacing_all_mm);
    for s in &r.sessions {
        assert!(s.dots > 0 && s.dots <= 400);
        assert!(s.tour_lower_bound_mm <= s.tour_mm + 1e-9);
        assert!(s.est_arm_time_s > 0.0);
        assert!(!s.density_err_by_zone.is_empty());
    }
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "dots",
        "min_spacing_mm",
        "density_err_by_zone",
        "largest_gap_mm",
        "tour_mm",
        "tour_lower_bound_mm",
        "est_arm_time_s",
        "plan_wall_s",
    ] {
        assert!(json.get(key).is_some(), "key {key} in {json}");
    }
}

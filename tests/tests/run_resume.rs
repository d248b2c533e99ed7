//! `smp run` on the simulated controller over a real pty: a controller reset mid-session
//! stops the run with the dot in flight uncertain; `smp run --resume` sends only the dots
//! still planned, and across both runs no dot is entered twice.

use smp_cli::run_cmd::{run, RunArgs, Target};
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::truth_map::{truth_map, TruthMapSettings};

#[test]
fn a_reset_leaves_one_dot_uncertain_and_resume_finishes_the_rest_once() {
    let tmp = tempfile::tempdir().unwrap();
    let rig = smp_core::rig::Rig::default_sim();
    let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).unwrap();
    let settings = TruthMapSettings { base_from_head: rig.base_from_head_nominal(), ..Default::default() };
    let map = truth_map(&SyntheticPatient::generate(&spec), &settings).unwrap().map;
    let map_p = tmp.path().join("map.json");
    std::fs::write(&map_p, serde_json::to_string(&map).unwrap()).unwrap();
    let patient_p = tmp.path().join("patient.toml");
    std::fs::write(&patient_p, DEFAULT_PATIENT_TOML).unwrap();
    let spec_p = tmp.path().join("s1.toml");
    std::fs::write(&spec_p, smp_planner::DEFAULT_SESSION1_TOML.replace("# max_dots = 300", "max_dots = 120")).unwrap();
    let plan_p = tmp.path().join("plan.json");
    let pa = smp_cli::planning::PlanArgs {
        map: map_p.clone(),
        patient: patient_p,
        session: 1,
        out: plan_p.clone(),
        spec: Some(spec_p),
        rig: None,
    };
    let planned = smp_cli::planning::plan(&pa).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint)).dots;
    assert_eq!(planned, 120);

    let faults_p = tmp.path().join("reset.toml");
    std::fs::write(&faults_p, "version = 1\nseed = 3\n[[controller]]\nkind = \"reset_before_line\"\nline = 250\n")
        .unwrap();
    let journal = tmp.path().join("session.sqlite");
    let args = |faults: Option<std::path::PathBuf>, resume| RunArgs {
        plan: plan_p.clone(),
        map: map_p.clone(),
        session: None,
        target: Target::Sim { patient: None, faults, time_scale: 100.0 },
        rig: None,
        journal: journal.clone(),
        resume,
    };
    let first = run(&args(Some(faults_p), false)).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    eprintln!("{}", smp_cli::run_cmd::summary(&first));
    assert!(first.faults.iter().any(|f| f.contains("ResetBeforeLine")), "{:?}", first.faults);
    assert!(first.dots_executed > 0 && first.dots_executed < planned);
    assert_eq!(first.dots_uncertain, 1, "exactly the dot in flight");
    assert_eq!(first.dots_executed + first.dots_uncertain + first.dots_still_planned, planned);
    assert_eq!(first.dots_doubled, Some(0));

    // A new run on an existing journal is refused: it would start the session over.
    let e = run(&args(None, false)).unwrap_err();
    assert!(e.message.contains("already exists"), "{}", e.message);

    let second = run(&args(None, true)).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    eprintln!("{}", smp_cli::run_cmd::summary(&second));
    assert_eq!(second.dots_streamed, first.dots_still_planned, "only the dots still planned were sent");
    assert_eq!(second.dots_still_planned, 0);
    assert_eq!(second.dots_uncertain, 1, "the uncertain dot is not resent");
    assert_eq!(second.dots_executed, planned - 1);
    assert_eq!(second.dots_doubled, Some(0), "no dot entered twice across both runs");
    assert_eq!(second.stray_entries, Some(0));

    // A head movement the rig does not track puts later entries off their dots: the run
    // reports them (tracking and re-registration, issue 4, must prevent it).
    let moved = tmp.path().join("move.toml");
    std::fs::write(&moved, "version = 1\nseed = 1\n[[head_moves]]\ntime_s = 20.0\ntranslation_mm = [2.0, 0.0, 0.0]\n")
        .unwrap();
    let mut a = args(Some(moved), false);
    a.journal = tmp.path().join("moved.sqlite");
    let r = run(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert!(r.stray_entries.unwrap_or(0) > 0, "{}", smp_cli::run_cmd::summary(&r));
}

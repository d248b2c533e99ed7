//! A two-session course through every real stage: session 1 is executed on the simulated
//! arm, the simulated skin takes the pigment of each needle entry and heals six weeks, the
//! healed scalp is rendered and scanned again, vision tells the healed dots from follicles,
//! and session 2 is planned on that new scan and executed — never on top of a session-1 dot.

use smp_cli::demo::{run_course, DemoConfig};

#[test]
fn session_two_is_planned_on_the_healed_scan_and_keeps_clear_of_session_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = DemoConfig {
        out_dir: tmp.path().join("course"),
        max_dots: Some(250),
        time_scale: 100.0,
        progress: false,
        verbose: false,
        ..DemoConfig::default()
    };
    let reports = run_course(&cfg, 2, 6.0).unwrap_or_else(|e| panic!("course failed: {e} ({:?})", e.hint));
    assert_eq!(reports.len(), 2);
    let (r1, r2) = (&reports[0], &reports[1]);
    eprintln!("{}\n{}", smp_cli::demo::summary(r1), smp_cli::demo::summary(r2));
    for r in &reports {
        assert_eq!(r.dots_executed, r.dots_planned, "every dot of session {} entered", r.session);
        assert_eq!((r.dots_doubled, r.dots_missing, r.stray_entries), (0, 0, 0));
        assert!(r.max_depth_mm <= r.depth_limit_mm);
    }
    assert_eq!((r1.session, r2.session), (1, 2));
    // The healed session-1 dots are on the skin, in view, and vision calls them dots.
    assert!(r2.prior_dots_in_view > 100, "{} earlier dots in view", r2.prior_dots_in_view);
    assert!(r2.dot_vs_follicle_accuracy >= 0.95, "kind accuracy {}", r2.dot_vs_follicle_accuracy);
    assert!(r2.follicle_f1 >= 0.9, "natural follicle F1 {}", r2.follicle_f1);
    assert!(r2.min_spacing_to_earlier_mm >= 0.9 - 1e-9, "{}", r2.min_spacing_to_earlier_mm);

    // The needle entries themselves: no session-2 entry lands on a session-1 entry.
    let entries = |k: u32| {
        let p = smp_sim::world_record::WorldRecord::path_for(&cfg.out_dir.join(format!("session-{k}/session.sqlite")));
        smp_sim::world_record::WorldRecord::load_or_default(&p)
            .unwrap()
            .entries()
            .iter()
            .map(|e| e.head_mm)
            .collect::<Vec<_>>()
    };
    let (e1, e2) = (entries(1), entries(2));
    // Each entry keeps how long the needle was in the skin with the cartridge running, for
    // the healing between sessions (no pause here: every dot about the same).
    let world1 = smp_sim::world_record::WorldRecord::load_or_default(&smp_sim::world_record::WorldRecord::path_for(
        &cfg.out_dir.join("session-1/session.sqlite"),
    ))
    .unwrap();
    let timing: Vec<_> = world1.entry_timing().into_iter().flatten().collect();
    assert_eq!(timing.len(), e1.len(), "every entry timed");
    assert!(timing.iter().all(|t| t.running_in_skin_s > 0.0 && t.running_in_skin_s <= t.in_skin_s + 1e-9));
    assert_eq!((e1.len(), e2.len()), (r1.dots_planned, r2.dots_planned));
    let closest = e2
        .iter()
        .flat_map(|a| {
            e1.iter().map(move |b| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt())
        })
        .fold(f64::INFINITY, f64::min);
    assert!(closest >= 0.85, "a session-2 entry {closest:.3} mm from a session-1 entry");

    // The session-2 scan holds the earlier dots as SMP dots; its plan file holds the course.
    let map_text = std::fs::read_to_string(cfg.out_dir.join("session-2/map.json")).unwrap();
    let map = smp_core::map::ScalpMap::from_json_str(&map_text).unwrap();
    let dots = map.follicles.iter().filter(|f| f.kind == smp_core::map::FollicleKind::SmpDot).count();
    assert!(dots > 100, "{dots} SMP dots in the new scan");
    let plan = std::fs::read_to_string(cfg.out_dir.join("session-2/plan.json")).unwrap();
    let pf = smp_core::plan::PlanFile::from_json_str(&plan).unwrap();
    assert_eq!(pf.sessions.iter().map(|s| s.session).collect::<Vec<_>>(), vec![1, 2]);

    // The same healing as a tool: `smp sim heal` writes the healed patient as a file.
    let patient = tmp.path().join("patient.toml");
    std::fs::write(&patient, smp_sim::patient::DEFAULT_PATIENT_TOML).unwrap();
    let healed = tmp.path().join("healed.toml");
    let a = smp_cli::sim::cmd::SimHealArgs {
        patient,
        journal: cfg.out_dir.join("session-1/session.sqlite"),
        weeks: 6.0,
        out: healed.clone(),
    };
    let msg = smp_cli::sim::cmd::heal(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    let spec = smp_sim::patient::PatientSpec::from_toml_str(&std::fs::read_to_string(&healed).unwrap()).unwrap();
    let n = spec.prior_dots.len();
    assert!(n * 10 >= r1.dots_planned * 9 && n <= r1.dots_planned, "{n} healed dots of {}: {msg}", r1.dots_planned);
    assert!(spec.prior_dots.iter().all(|d| d.session == 1 && (d.weeks_healed - 6.0).abs() < 1e-9));
}

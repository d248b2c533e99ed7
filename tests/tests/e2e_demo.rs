//! End to end: a small demo (a few hundred dots) through every real stage — rendered
//! images, OpenCV vision, planner, verified G-code, a real pty to the simulated grbl
//! controller, SQLite journal and .rrd recording — checked against the simulator's truth.

use smp_cli::demo::{run, DemoConfig, DEMO_FILES};

#[test]
fn small_demo_executes_every_dot_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let cfg = DemoConfig {
        out_dir: out.clone(),
        max_dots: Some(300),
        // Slow enough that pty latency (scaled up with the clock) stays out of the arm time.
        time_scale: 20.0,
        progress: false,
        verbose: false,
        ..DemoConfig::default()
    };
    let r = run(&cfg).unwrap_or_else(|e| panic!("demo failed: {e} ({:?})", e.hint));
    // Every check the demo prints passed (`smp demo` exits non-zero otherwise).
    assert!(smp_cli::demo::passed(&r), "{}", smp_cli::demo::summary(&r));
    eprintln!("{}", smp_cli::demo::summary(&r));

    assert!(r.dots_planned >= 200 && r.dots_planned <= 300, "a small plan: {}", r.dots_planned);
    assert_eq!(r.dots_executed, r.dots_planned, "every dot entered");
    assert_eq!(r.dots_doubled, 0, "no dot entered twice");
    assert_eq!(r.dots_missing, 0);
    assert_eq!(r.stray_entries, 0, "no entry away from a planned dot");
    assert_eq!(r.unpowered_contacts, 0, "never touched the skin with the cartridge off");
    assert_eq!(r.journal_executed, r.dots_planned, "the journal agrees");
    assert_eq!(r.journal_uncertain, 0);
    assert!(r.placement_rms_mm < 0.1, "placement rms {}", r.placement_rms_mm);
    assert!(r.max_depth_mm > 0.5, "the needle went in: {}", r.max_depth_mm);
    assert!(r.max_depth_mm <= r.depth_limit_mm, "depth {} over limit {}", r.max_depth_mm, r.depth_limit_mm);
    assert!(r.min_spacing_mm >= 0.9 - 1e-9, "spacing {}", r.min_spacing_mm);

    for f in DEMO_FILES {
        let p = out.join(f);
        assert!(p.is_file() && std::fs::metadata(&p).unwrap().len() > 0, "{f} written");
    }
    // The journal is a real SQLite file that a fresh connection opens and agrees with.
    let db = rusqlite::Connection::open(out.join("session.sqlite")).unwrap();
    let executed: i64 =
        db.query_row("SELECT COUNT(*) FROM dots WHERE state = 'executed'", [], |row| row.get(0)).unwrap();
    assert_eq!(executed as usize, r.dots_planned);
    // The recording is a rerun .rrd stream (magic bytes at the start).
    let rrd = std::fs::read(out.join("session.rrd")).unwrap();
    assert!(rrd.len() > 1000 && rrd.starts_with(b"RR"), "rrd header {:?}", &rrd[..4.min(rrd.len())]);
    // The plan on disk is the plan that ran.
    let plan =
        smp_core::plan::PlanFile::from_json_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan.sessions[0].dots.len(), r.dots_planned);

    // QA's view of the same files: the journal reads back, the program re-verifies, and a
    // program tampered one millimetre deeper is rejected.
    let journal = smp_cli::inspect::journal(&out.join("session.sqlite")).unwrap();
    assert!(journal.contains(&format!("executed   {:>6}", r.dots_planned)), "{journal}");
    // No pause in the demo: every entry is timed and none ran long.
    assert!(!journal.contains("blowout"), "{journal}");
    assert!(journal.contains(&format!("({} of {} entries timed)", r.dots_planned, r.dots_planned)), "{journal}");
    // The planner's arm-time estimate (same dynamics model, same moves as the program) holds
    // against the simulated controller's clock within 5 % (issue 5), once the time the machine
    // waited for the host is taken out: at x20 on a loaded test machine the host's latency,
    // multiplied by 20, is not the arm's (the demo prints both figures).
    let busy_s = r.arm_time_s - r.arm_waiting_for_host_s;
    assert!(r.arm_waiting_for_host_s >= 0.0 && busy_s > 0.0, "{r:?}");
    let rel = (r.estimated_arm_time_s - busy_s).abs() / busy_s;
    assert!(
        rel <= 0.05,
        "estimate {} s vs simulated {} s, of which {} s waiting for the host ({:.1} %)",
        r.estimated_arm_time_s,
        r.arm_time_s,
        r.arm_waiting_for_host_s,
        100.0 * rel
    );

    let (nc, plan_p, map_p) = (out.join("program.nc"), out.join("plan.json"), out.join("map.json"));
    // The consultation mock-up from the demo's own files reproduces the demo's mockup.png.
    let mock = tmp.path().join("mock.png");
    let a = smp_cli::planning::MockupArgs {
        plan: plan_p.clone(),
        photo: out.join("overview.png"),
        out: mock.clone(),
        rig: None,
        map: Some(map_p.clone()),
        sessions: vec![],
        patient: None,
    };
    smp_cli::planning::mockup(&a).unwrap();
    let (drawn, photo) =
        (smp_cli::files::read_png(&mock).unwrap(), smp_cli::files::read_png(&out.join("overview.png")).unwrap());
    let changed = drawn.data.chunks(3).zip(photo.data.chunks(3)).filter(|(a, b)| a != b).count();
    assert!(changed >= r.dots_planned, "{changed} pixels changed for {} dots", r.dots_planned);
    assert_eq!(std::fs::read(&mock).unwrap(), std::fs::read(out.join("mockup.png")).unwrap());
    smp_cli::inspect::verify(&nc, &plan_p, &map_p, None).unwrap();
    let text = std::fs::read_to_string(&nc).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = lines.iter().position(|l| l.contains("plunge")).unwrap();
    let z_word = lines[i].split_whitespace().find(|w| w.starts_with('Z')).unwrap().to_string();
    let z: f64 = z_word[1..].parse().unwrap();
    lines[i] = lines[i].replace(&z_word, &format!("Z{:.3}", z - 1.0));
    let bad = tmp.path().join("deeper.nc");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let err = smp_cli::inspect::verify(&bad, &plan_p, &map_p, None).unwrap_err();
    assert_eq!(err.exit_code, smp_cli::error::EXIT_FAILURE);
    assert!(err.message.contains("below the skin"), "{}", err.message);
}

//! Head tracking during `smp run --sim`: the patient wears the head band, the simulator moves
//! the head 2 mm in the middle of the session, the band cameras see it, the run stops (feed
//! hold, queued moves dropped), re-registers once the head is still, and finishes the rest on
//! the new pose. The same move without a band is not seen and misplaces the later dots.

use smp_cli::run_cmd::{run, RunArgs, Target};
use smp_sim::patient::{PatientSpec, SyntheticPatient};
use smp_sim::truth_map::{truth_map, TruthMapSettings};

const BANDED: &str = include_str!("../../sim/patients/norwood3-fitz3-brown-donor-strip.toml");

/// A `dots`-dot session-1 plan on the banded patient's truth map: (map, plan, patient).
fn plan_on_banded(tmp: &std::path::Path, dots: usize) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let rig = smp_core::rig::Rig::default_sim();
    let spec = PatientSpec::from_toml_str(BANDED).unwrap();
    let settings = TruthMapSettings { base_from_head: rig.base_from_head_nominal(), ..Default::default() };
    let map = truth_map(&SyntheticPatient::generate(&spec), &settings).unwrap().map;
    let map_p = tmp.join("map.json");
    std::fs::write(&map_p, serde_json::to_string(&map).unwrap()).unwrap();
    let patient_p = tmp.join("patient.toml");
    std::fs::write(&patient_p, BANDED).unwrap();
    let spec_p = tmp.join("s1.toml");
    std::fs::write(
        &spec_p,
        smp_planner::DEFAULT_SESSION1_TOML.replace("# max_dots = 300", &format!("max_dots = {dots}")),
    )
    .unwrap();
    let plan_p = tmp.join("plan.json");
    let pa = smp_cli::planning::PlanArgs {
        map: map_p.clone(),
        patient: patient_p.clone(),
        session: 1,
        out: plan_p.clone(),
        spec: Some(spec_p),
        rig: None,
    };
    let planned = smp_cli::planning::plan(&pa).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint)).dots;
    assert_eq!(planned, dots);
    (map_p, plan_p, patient_p)
}

#[test]
fn a_head_move_is_tracked_the_run_stops_re_registers_and_finishes_on_the_new_pose() {
    let tmp = tempfile::tempdir().unwrap();
    let dots = 20;
    let (map_p, plan_p, patient_p) = plan_on_banded(tmp.path(), dots);
    let moved = tmp.path().join("move.toml");
    // A hand over the band from 5 s to 7.5 s, then the head moves 2 mm at 10 s.
    std::fs::write(
        &moved,
        "version = 1\nseed = 1\n[[band_occlusions]]\nfrom_s = 5.0\nto_s = 7.5\n\
         [[head_moves]]\ntime_s = 10.0\ntranslation_mm = [2.0, 0.0, 0.0]\n",
    )
    .unwrap();
    let a = RunArgs {
        plan: plan_p,
        map: map_p,
        session: None,
        target: Target::Sim { patient: Some(patient_p), faults: Some(moved), time_scale: 1.0 },
        rig: None,
        journal: std::env::var("KEEP").map(std::path::PathBuf::from).unwrap_or(tmp.path().join("session.sqlite")),
        resume: false,
        protocol: smp_motion::Protocol::Grbl,
        bus: None,
        tracking_hz: 2.0,
    };
    let t0 = std::time::Instant::now();
    let r = run(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    eprintln!("{}\n{:?}\nwall {:.1} s", smp_cli::run_cmd::summary(&r), r.tracking, t0.elapsed().as_secs_f64());
    let tracking = r.tracking.clone().expect("a banded patient is tracked");
    assert_eq!(tracking.drifts, 1, "{r:?}");
    // The hidden band held the arm: lost after the tracker's 0.5 s timeout, resumed when seen.
    assert_eq!(tracking.fiducial_loss_holds, 1, "{r:?}");
    assert!(r.faults.iter().any(|f| f.contains("fiducials lost")), "{:?}", r.faults);
    assert!(r.faults.iter().any(|f| f.contains("fiducials recovered")), "{:?}", r.faults);
    assert!(r.faults.iter().any(|f| f.contains("re-registered")), "{:?}", r.faults);
    assert!(!r.aborted, "a drift is not an operator abort");
    assert_eq!(r.dots_doubled, Some(0), "no dot entered twice");
    // The dots in flight at the hold were looked at by the flange camera before the run went on.
    assert!(r.faults.iter().any(|f| f.contains("camera check of")), "{:?}", r.faults);
    assert_eq!(r.dots_uncertain, 0, "{r:?}");
    assert_eq!(r.dots_executed + r.dots_skipped, dots, "{r:?}");
    // The frame at the move sees it; the plunge under way then may land off its dot (the
    // head jumped under the needle), nothing after it does.
    assert!(r.stray_entries.unwrap_or(99) <= 1, "{r:?}");
    let j = smp_store::Journal::open(&a.journal).unwrap();
    let planned: Vec<[f64; 3]> = j.dots().unwrap().iter().map(|d| d.position_head_mm).collect();
    let after = tracking.reregistered_at_s[0];
    let mut checked = 0;
    let entries = j.entries().unwrap();
    // Nothing entered the skin while nobody knew where the head was (after the loss was
    // noticed and the hold had taken effect, until the band was seen again).
    assert!(!entries.iter().any(|e| e.time_s > 6.1 && e.time_s < 7.5), "an entry while the band was hidden");
    for e in entries.iter().filter(|e| e.time_s < 10.0 || e.time_s > after) {
        let nearest = planned
            .iter()
            .map(|p| {
                ((p[0] - e.head_mm[0]).powi(2) + (p[1] - e.head_mm[1]).powi(2) + (p[2] - e.head_mm[2]).powi(2)).sqrt()
            })
            .fold(f64::INFINITY, f64::min);
        assert!(nearest < 0.05, "entry at {:.2} s is {nearest:.3} mm from its dot", e.time_s);
        checked += 1;
    }
    assert!(checked >= dots - 3, "{checked} entries placed before the move or after the re-registration");
}

#[test]
#[ignore]
fn debug_entries() {
    let p = std::env::var("J").unwrap();
    let j = smp_store::Journal::open(std::path::Path::new(&p)).unwrap();
    let dots = j.dots().unwrap();
    for e in j.entries().unwrap() {
        let d = dots
            .iter()
            .map(|d| {
                let v = [
                    d.position_head_mm[0] - e.head_mm[0],
                    d.position_head_mm[1] - e.head_mm[1],
                    d.position_head_mm[2] - e.head_mm[2],
                ];
                ((v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt(), d.dot_id)
            })
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a });
        eprintln!("t {:8.2} nearest dot {:4} at {:.3} mm depth {:.3}", e.time_s, d.1, d.0, e.depth_mm);
    }
}

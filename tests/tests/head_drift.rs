//! Head tracking during `smp run --sim`: the patient wears the head band, the simulator moves
//! the head 2 mm in the middle of the session, the band cameras see it, the run stops (feed
//! hold, queued moves dropped), re-registers once the head is still, and finishes the rest on
//! the new pose. The same move without a band is not seen and misplaces the later dots.

use smp_cli::run_cmd::run;

const BANDED: &str = include_str!("../../sim/patients/norwood3-fitz3-brown-donor-strip.toml");

#[test]
fn a_head_move_is_tracked_the_run_stops_re_registers_and_finishes_on_the_new_pose() {
    let tmp = tempfile::tempdir().unwrap();
    let dots = 20;
    let case = smp_tests::plan_case(tmp.path(), BANDED, None, smp_planner::DEFAULT_SESSION1_TOML, dots);
    let moved = tmp.path().join("move.toml");
    // A hand over the band from 5 s to 7.5 s, then the head moves 2 mm at 10 s.
    std::fs::write(
        &moved,
        "version = 1\nseed = 1\n[[band_occlusions]]\nfrom_s = 5.0\nto_s = 7.5\n\
         [[head_moves]]\ntime_s = 10.0\ntranslation_mm = [2.0, 0.0, 0.0]\n",
    )
    .unwrap();
    let mut a = case.sim_run(tmp.path().join("session.sqlite"), 1.0, Some(moved), false);
    a.tracking_hz = 2.0;
    let t0 = std::time::Instant::now();
    let r = run(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    eprintln!("{}\n{:?}\nwall {:.1} s", smp_cli::run_cmd::summary(&r), r.session.tracking, t0.elapsed().as_secs_f64());
    let tracking = r.session.tracking.clone().expect("a banded patient is tracked");
    assert_eq!(tracking.drifts, 1, "{r:?}");
    // The hidden band held the arm: lost after the tracker's 0.5 s timeout, resumed when seen.
    assert_eq!(tracking.fiducial_loss_holds, 1, "{r:?}");
    assert!(
        r.session.faults.iter().chain(&r.session.notes).any(|f| f.contains("fiducials lost")),
        "{:?}",
        r.session.faults
    );
    assert!(
        r.session.faults.iter().chain(&r.session.notes).any(|f| f.contains("fiducials recovered")),
        "{:?}",
        r.session.faults
    );
    assert!(
        r.session.faults.iter().chain(&r.session.notes).any(|f| f.contains("re-registered")),
        "{:?}",
        r.session.faults
    );
    assert!(!r.session.aborted, "a drift is not an operator abort");
    assert_eq!(r.score.as_ref().map(|s| s.dots_doubled), Some(0), "no dot entered twice");
    // The dots in flight at the hold were looked at by the flange camera before the run went on.
    assert!(
        r.session.faults.iter().chain(&r.session.notes).any(|f| f.contains("camera check of")),
        "{:?}",
        r.session.faults
    );
    assert_eq!(r.session.dots_uncertain, 0, "{r:?}");
    assert_eq!(r.session.dots_executed + r.session.dots_skipped, dots, "{r:?}");
    // The frame at the move sees it; the plunge under way then may land off its dot (the
    // head jumped under the needle), nothing after it does.
    assert!(r.score.as_ref().map(|s| s.stray_entries).unwrap_or(99) <= 1, "{r:?}");
    let j = smp_store::Journal::open(&a.journal).unwrap();
    // The recompiled program was verified, written beside the first and journalled, text and
    // hash, with the registration it was compiled for; the second run names it.
    let programs = j.programs().unwrap();
    assert_eq!(programs.len(), 2, "{programs:#?}");
    assert_eq!(programs[0].reason, smp_store::ProgramReason::First);
    assert_eq!(programs[1].reason, smp_store::ProgramReason::Reregistered);
    assert_ne!(programs[0].base_from_head_json, programs[1].base_from_head_json, "compiled for the new pose");
    for (p, summary) in programs.iter().zip(&r.session.programs) {
        assert_eq!(std::fs::read_to_string(&p.path).unwrap(), p.text, "the file beside the journal is what ran");
        assert_eq!(smp_store::program_sha256(&p.text), p.sha256);
        assert_eq!(summary.sha256, p.sha256);
    }
    assert_eq!(j.program_of_run(smp_store::RunId(2)).unwrap(), Some(programs[1].seq));
    let streamed: Vec<String> = j.commands(smp_store::RunId(2)).unwrap().into_iter().map(|c| c.text).collect();
    let recorded = smp_gcode::parse_nc(&programs[1].text).unwrap();
    let lines: Vec<&str> = recorded.lines.iter().map(|l| l.text.as_str()).filter(|t| !t.is_empty()).collect();
    assert_eq!(streamed, lines, "the second run streamed the recorded program");
    let planned: Vec<[f64; 3]> = j.dots().unwrap().iter().map(|d| d.position_head_mm).collect();
    let after = tracking.reregistered_at_s[0];
    let mut checked = 0;
    let entries =
        smp_sim::world_record::WorldRecord::load_or_default(&smp_sim::world_record::WorldRecord::path_for(&a.journal))
            .unwrap()
            .entries();
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

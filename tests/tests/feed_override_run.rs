//! `smp run --sim` with the shipped scenario `sim/faults/feed_rate_change.toml`: someone sets
//! the feed rate to 150 % at 10 s of machine time (grbl's feed override, Marlin's `M220`). Every
//! feed the verifier proved is then 1.5 times faster, so the run must stop as a fault, with
//! nothing doubled; `smp run --resume` on a controller at 100 % finishes the session, each dot
//! once. Both host protocols that can see the change: grbl through `Ov:` in the status
//! reports, Marlin through the executor's periodic `M220` query.

use smp_cli::run_cmd::run;
use smp_motion::Protocol;
use smp_sim::patient::DEFAULT_PATIENT_TOML;

#[test]
fn a_feed_override_mid_run_stops_the_run_and_resume_finishes_it_once() {
    let planned = 40;
    for protocol in [Protocol::Grbl, Protocol::Marlin] {
        let tmp = tempfile::tempdir().unwrap();
        let case =
            smp_tests::plan_case(tmp.path(), DEFAULT_PATIENT_TOML, None, smp_planner::DEFAULT_SESSION1_TOML, planned);
        let journal = tmp.path().join("session.sqlite");
        let scenario = smp_tests::repo_path("sim/faults/feed_rate_change.toml");
        let mut first_args = case.sim_run(journal.clone(), 10.0, Some(scenario), false);
        first_args.protocol = protocol;
        let first = run(&first_args).unwrap_or_else(|e| panic!("{protocol:?}: {e} ({:?})", e.hint));
        eprintln!("{protocol:?}: {}", smp_cli::run_cmd::summary(&first));
        assert!(
            first.session.faults.iter().any(|f| f.contains("override active (feed 150 %")),
            "{protocol:?}: {:?}",
            first.session.faults
        );
        // 10 s into a crown session of about 0.6 s per dot (after the lift from home): stopped early.
        assert!(
            first.session.dots_executed > 0 && first.session.dots_executed < planned / 2,
            "{protocol:?}: {first:?}"
        );
        assert_eq!(first.score.as_ref().map(|s| s.dots_doubled), Some(0), "{protocol:?}");

        let mut again = case.sim_run(journal.clone(), 10.0, None, true);
        again.protocol = protocol;
        let second = run(&again).unwrap_or_else(|e| panic!("{protocol:?}: {e} ({:?})", e.hint));
        eprintln!("{protocol:?} resumed: {}", smp_cli::run_cmd::summary(&second));
        assert!(
            second.session.faults.iter().all(|f| !f.contains("override")),
            "{protocol:?}: {:?}",
            second.session.faults
        );
        assert_eq!(second.session.dots_uncertain, 0, "{protocol:?}: {:?}", second.session.faults);
        assert_eq!(second.session.dots_executed + second.session.dots_skipped, planned, "{protocol:?}: {second:?}");
        // Across both runs each dot's needle went in at most once.
        let entries = smp_sim::world_record::WorldRecord::load_or_default(
            &smp_sim::world_record::WorldRecord::path_for(&journal),
        )
        .unwrap()
        .entries();
        assert_eq!(entries.len(), second.session.dots_executed, "{protocol:?}");
        assert_eq!(second.score.as_ref().map(|s| s.dots_doubled), Some(0), "{protocol:?}");
    }
}

//! `smp eval motion` on the default rig: the simulator agrees with the estimate over the dots
//! it runs, the floor bounds the cycle, and the verdict follows the target it is given.

use std::path::PathBuf;

use smp_cli::eval::motion::{eval_motion, EvalMotionArgs};

fn args(target_min: f64) -> EvalMotionArgs {
    EvalMotionArgs {
        patient: None,
        spec: None,
        rigs: vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../calibration/rig.toml"))],
        sim_dots: 12,
        target_dots: 30_000,
        target_min,
    }
}

#[test]
fn dot_cycle_figures_agree_and_the_verdict_follows_the_target() {
    let r = eval_motion(&args(60.0)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.profiles.len(), 1);
    let p = &r.profiles[0];
    assert_eq!(p.axes, "xyz");
    assert!(p.dots_planned > 100, "{p:?}");
    assert_eq!(p.sim_dots, 12, "{p:?}");
    assert_eq!(p.sim_dots_doubled, Some(0), "{p:?}");
    // The simulator runs the estimate's model: never faster beyond rounding, at most a few
    // per cent slower when the streaming host falls behind on a loaded machine.
    let pct = p.sim_vs_est_pct.unwrap_or(f64::NAN);
    assert!((-0.1..5.0).contains(&pct), "simulator vs estimate {pct} %");
    assert!(p.floor_cycle_at_max_feed_s <= p.floor_cycle_s && p.floor_cycle_s < p.est_cycle_s, "{p:?}");
    let minutes = 30_000.0 * p.est_cycle_s / 60.0;
    assert!((p.target_dots_est_min - minutes).abs() < 1e-9);
    // 60 min for 30,000 dots is below even the floor at the feed limit (0.13 s/dot, 65 min).
    assert!(!r.target_met && r.target_below_floor, "{r:?}");

    // A budget above the estimate is met; one between the floors is neither met nor ruled out.
    let lenient = eval_motion(&EvalMotionArgs { sim_dots: 0, ..args(minutes + 1.0) }).unwrap_or_else(|e| panic!("{e}"));
    assert!(lenient.target_met && !lenient.target_below_floor, "{lenient:?}");
    assert_eq!(lenient.profiles[0].sim_cycle_s, None);
    let between = p.target_dots_floor_at_max_feed_min + 1.0;
    let open = eval_motion(&EvalMotionArgs { sim_dots: 0, ..args(between) }).unwrap_or_else(|e| panic!("{e}"));
    assert!(!open.target_met && !open.target_below_floor, "{open:?}");
}

#[test]
fn a_nonsense_target_is_refused_with_the_fix() {
    let e = eval_motion(&EvalMotionArgs { target_dots: 0, ..args(60.0) }).err();
    let hint = e.and_then(|e| e.hint).unwrap_or_default();
    assert!(hint.contains("--target-dots"), "{hint}");
}

//! Planning a full session-1 crown (~3000 dots) on a synthetic map: sampling, ordering and
//! estimates together. Target: well under 2 s in release.

use criterion::{criterion_group, criterion_main, Criterion};
use nalgebra::{Isometry3, Translation3, UnitQuaternion};
use smp_core::plan::SessionSpec;
use smp_core::rig::Rig;
use smp_planner::synthetic::{synthetic_map, SyntheticMapSpec};
use smp_planner::{plan_session_with, PlannerConfig, DEFAULT_SESSION1_TOML};

fn crown(c: &mut Criterion) {
    let map = synthetic_map(&SyntheticMapSpec::default());
    let spec = match SessionSpec::from_toml_str(DEFAULT_SESSION1_TOML) {
        Ok(s) => s,
        Err(e) => panic!("embedded session spec: {e}"),
    };
    let rig = Rig::default_sim();
    let base_from_head = Isometry3::from_parts(Translation3::new(250.0, 0.0, 100.0), UnitQuaternion::identity());
    let cfg = PlannerConfig::default();
    match plan_session_with(&map, &spec, &rig, &base_from_head, &cfg) {
        Ok(o) => eprintln!(
            "crown: {} dots over {:.1} cm² (target {:.0} dots, {} sampling runs, kappa {:.3}), tour {:.0} mm \
             (NN {:.0} mm, -{:.1} %, {} 2-opt + {} Or-opt moves, longest step {:.1} mm, travel clearance {:.2} mm), \
             arm time {:.0} s",
            o.plan.dots.len(),
            o.stats.mask_area_cm2,
            o.stats.target_dots,
            o.stats.sampling_runs,
            o.stats.kappa,
            o.stats.tour_mm,
            o.stats.nn_tour_mm,
            100.0 * (1.0 - o.stats.tour_mm / o.stats.nn_tour_mm),
            o.stats.two_opt_moves,
            o.stats.or_opt_moves,
            o.stats.max_step_mm,
            o.stats.min_travel_clearance_mm,
            o.plan.estimates.arm_time_s
        ),
        Err(e) => panic!("crown plan failed: {e}"),
    }
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.bench_function("crown_session1", |b| {
        b.iter(|| plan_session_with(&map, &spec, &rig, &base_from_head, &cfg).map(|o| o.plan.dots.len()))
    });
    g.finish();
}

criterion_group!(benches, crown);
criterion_main!(benches);

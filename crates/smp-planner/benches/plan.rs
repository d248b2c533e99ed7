//! Planner benchmarks (release, criterion):
//!
//! * `crown_session1`: a session-1 crown (~2,900 dots) on the small synthetic map: placement,
//!   ordering and estimates together;
//! * `full_head_placement_30k`: every dot of a full head at once (~30,000 dots: intake-free
//!   validation, mask, hairline, density, calibrated Bridson with the fill pass), the issue's
//!   "30,000 dots placed in under 1 s" target;
//! * `full_head_session1_placement`: session 1 of the full head (~12,000 dots).

use criterion::{criterion_group, criterion_main, Criterion};
use nalgebra::{Isometry3, Translation3, UnitQuaternion};
use smp_core::plan::{HairlineSpec, SessionSpec, ZonesSpec};
use smp_core::rig::Rig;
use smp_planner::{
    layered_session_spec, metrics, place_session, plan_session_full, plan_session_with, PlanRequest, PlannerConfig,
    DEFAULT_SESSION1_TOML,
};
use smp_testkit::{full_head_map, synthetic_map, FullHeadMapSpec, SyntheticMapSpec};

fn session1() -> SessionSpec {
    match SessionSpec::from_toml_str(DEFAULT_SESSION1_TOML) {
        Ok(s) => s,
        Err(e) => panic!("embedded session spec: {e}"),
    }
}

fn base_from_head() -> Isometry3<f64> {
    Isometry3::from_parts(Translation3::new(250.0, 0.0, 100.0), UnitQuaternion::identity())
}

fn crown(c: &mut Criterion) {
    let map = synthetic_map(&SyntheticMapSpec::default());
    let spec = session1();
    let rig = Rig::default_sim();
    let base_from_head = base_from_head();
    let cfg = PlannerConfig::default();
    match plan_session_with(&map, &spec, &rig, &base_from_head, &cfg) {
        Ok(o) => eprintln!(
            "crown: {} dots over {:.1} cm² (target {:.0}, {} runs, kappa {:.3}), tour {:.0} mm, arm time {:.0} s",
            o.plan.dots.len(),
            o.stats.mask_area_cm2,
            o.stats.target_dots,
            o.stats.sampling_runs,
            o.stats.kappa,
            o.stats.tour_mm,
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

/// The full-head spec the tests use: every zone, the mature hairline on this head's glabella.
fn full_head_spec(fh: &FullHeadMapSpec) -> SessionSpec {
    SessionSpec {
        treat: vec![
            smp_core::map::RegionKind::Bald,
            smp_core::map::RegionKind::Thinning,
            smp_core::map::RegionKind::Scar,
        ],
        max_tilt_deg: 80.0,
        hairline: Some(HairlineSpec {
            preset: Some(smp_core::plan::HairlinePreset::Mature),
            glabella_head_mm: Some(fh.glabella_head_mm()),
            ..HairlineSpec::default()
        }),
        zones: Some(ZonesSpec::default()),
        ..session1()
    }
}

fn full_head(c: &mut Criterion) {
    let fh = FullHeadMapSpec::default();
    let map = full_head_map(&fh);
    let rig = Rig::default_sim();
    let base_from_head = base_from_head();
    let s1 = full_head_spec(&fh);
    // All dots at once (session_share 1): the 30,000-dot pattern alone.
    let all = SessionSpec { session_share: 1.0, ..layered_session_spec(&s1, 3) };
    for (name, spec) in [("all", &all), ("session 1", &s1)] {
        let req = PlanRequest::new(&map, spec, &rig, &base_from_head);
        let t0 = std::time::Instant::now();
        match place_session(&req) {
            Ok(p) => eprintln!(
                "full head, {name}: {} dots (target {:.0}, {} runs, kappa {:.3}) placed in {:.3} s",
                p.points_head.len(),
                p.target_dots,
                p.sampling_runs,
                p.kappa,
                t0.elapsed().as_secs_f64()
            ),
            Err(e) => panic!("full-head placement failed: {e}"),
        }
    }
    // For the report: the whole session-1 pipeline (placement, ordering, tone, estimates)
    // and the metrics `smp eval planner` prints, timed once.
    let req = PlanRequest::new(&map, &s1, &rig, &base_from_head);
    let t0 = std::time::Instant::now();
    match plan_session_full(&req) {
        Ok(o) => {
            let plan_s = t0.elapsed().as_secs_f64();
            let t1 = std::time::Instant::now();
            match metrics::evaluate(&req, &o.plan) {
                Ok(m) => eprintln!(
                    "full head, session 1 planned in {plan_s:.3} s ({} dots, tour {:.0} mm, arm time {:.0} min); \
                     metrics in {:.3} s: min spacing {:.3} mm, largest gap {:.2} mm, density error by zone {:?}",
                    o.plan.dots.len(),
                    o.stats.tour_mm,
                    o.plan.estimates.arm_time_s / 60.0,
                    t1.elapsed().as_secs_f64(),
                    m.min_spacing_mm,
                    m.largest_gap_mm,
                    m.density_err_by_zone
                ),
                Err(e) => panic!("metrics failed: {e}"),
            }
        }
        Err(e) => panic!("full-head plan failed: {e}"),
    }
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    let req_all = PlanRequest::new(&map, &all, &rig, &base_from_head);
    g.bench_function("full_head_placement_30k", |b| b.iter(|| place_session(&req_all).map(|p| p.points_head.len())));
    let req_s1 = PlanRequest::new(&map, &s1, &rig, &base_from_head);
    g.bench_function("full_head_session1_placement", |b| {
        b.iter(|| place_session(&req_s1).map(|p| p.points_head.len()))
    });
    g.finish();
}

criterion_group!(benches, crown, full_head);
criterion_main!(benches);

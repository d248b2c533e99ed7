//! Ordering 30,000 dots (issue 5 target: under 2 s on the 2-core machine), with and without
//! the clinic skin-recovery rule (R = 3 mm, T = 2 s at 0.25 s per dot), and the lower bound
//! alone. The dots are made here, independent of the planner's sampler: seeded dart
//! throwing at 0.9 mm minimum spacing over a 194 mm square (376 cm², about 80 dots per cm²)
//! lifted onto a dome of radius 110 mm, so the points are a curved height field like a
//! scalp patch. The tour/bound ratio is printed once (stderr).

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smp_planner::{order_dots, tour_lower_bound_with, BoundParams, DotTiming, OrderOutcome, OrderParams, RecoveryRule};

const SIDE_MM: f64 = 194.0;
const MIN_SPACING_MM: f64 = 0.9;
const DOME_RADIUS_MM: f64 = 110.0;
const TARGET_DOTS: usize = 30_000;

/// Dart throwing: uniform candidates, kept when `MIN_SPACING_MM` from every kept dot (in
/// (x, y), hence also in 3-D), until `TARGET_DOTS` are kept or the tries run out.
fn blue_noise_dome(seed: u64) -> Vec<[f64; 3]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cell = MIN_SPACING_MM / std::f64::consts::SQRT_2; // at most one dot per cell
    let nx = (SIDE_MM / cell).ceil() as usize + 1;
    let mut grid: Vec<u32> = vec![u32::MAX; nx * nx];
    let mut pts: Vec<[f64; 3]> = Vec::with_capacity(TARGET_DOTS);
    for _ in 0..5_000_000 {
        if pts.len() == TARGET_DOTS {
            break;
        }
        let (x, y) = (rng.random::<f64>() * SIDE_MM, rng.random::<f64>() * SIDE_MM);
        let (ci, cj) = ((x / cell) as usize, (y / cell) as usize);
        let mut free = true;
        'scan: for j in cj.saturating_sub(2)..(cj + 3).min(nx) {
            for i in ci.saturating_sub(2)..(ci + 3).min(nx) {
                let q = grid[j * nx + i];
                if q != u32::MAX {
                    let p = pts[q as usize];
                    if (p[0] - x).hypot(p[1] - y) < MIN_SPACING_MM {
                        free = false;
                        break 'scan;
                    }
                }
            }
        }
        if free {
            grid[cj * nx + ci] = pts.len() as u32;
            let (u, v) = (x - SIDE_MM / 2.0, y - SIDE_MM / 2.0);
            pts.push([x, y, (DOME_RADIUS_MM * DOME_RADIUS_MM - u * u - v * v).max(0.0).sqrt()]);
        }
    }
    pts
}

fn clinic() -> (RecoveryRule, DotTiming) {
    (RecoveryRule { radius_mm: 3.0, window_s: 2.0 }, DotTiming { cycle_s: 0.25, travel_mm_per_s: 100.0 })
}

fn run(pts: &[[f64; 3]], params: &OrderParams) -> OrderOutcome {
    match order_dots(pts, 0, params) {
        Ok(o) => o,
        Err(e) => panic!("ordering failed: {e}"),
    }
}

fn order(c: &mut Criterion) {
    let pts = blue_noise_dome(1);
    let area_cm2 = SIDE_MM * SIDE_MM / 100.0;
    let plain_params = OrderParams::default();
    let (rule, timing) = clinic();
    let rule_params = OrderParams { recovery: Some(rule), timing, ..OrderParams::default() };

    let plain = run(&pts, &plain_params);
    let ruled = run(&pts, &rule_params);
    eprintln!(
        "order: {} dots ({:.1} per cm²); tour {:.0} mm (NN {:.0} mm, {} 2-opt + {} Or-opt moves); \
         lower bound {:.0} mm (MST {:.0} mm); tour/bound = {:.4}",
        pts.len(),
        pts.len() as f64 / area_cm2,
        plain.tour_mm,
        plain.nn_tour_mm,
        plain.two_opt_moves,
        plain.or_opt_moves,
        plain.lower_bound_mm,
        plain.mst_bound_mm,
        plain.tour_mm / plain.lower_bound_mm
    );
    eprintln!(
        "order with recovery R {} mm, T {} s at {} s per dot: tour {:.0} mm = {:.3} x the plain tour, \
         {:.3} x the rule's floor (n-1)R; {} violations",
        rule.radius_mm,
        rule.window_s,
        timing.cycle_s,
        ruled.tour_mm,
        ruled.tour_mm / plain.tour_mm,
        ruled.tour_mm / ruled.recovery_floor_mm.unwrap_or(f64::NAN),
        ruled.recovery_violations
    );

    let mut g = c.benchmark_group("order");
    g.sample_size(10);
    g.bench_function("dots_30k", |b| b.iter(|| run(&pts, &plain_params).tour_mm));
    g.bench_function("dots_30k_recovery_rule", |b| b.iter(|| run(&pts, &rule_params).tour_mm));
    g.bench_function("lower_bound_30k", |b| {
        b.iter(|| {
            tour_lower_bound_with(
                &pts,
                Some(0),
                &BoundParams { upper_bound_mm: Some(plain.tour_mm), ..BoundParams::default() },
            )
            .map(|lb| lb.bound_mm)
        })
    });
    g.finish();
}

criterion_group!(benches, order);
criterion_main!(benches);

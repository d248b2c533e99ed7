//! Tests of the ordering: neighbour queries, path construction, improvement moves, the
//! recovery rule and its window, input errors; a large timing run by hand.

use super::construct::cheapest_free_slot;
use super::improve::improve;
use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(super) fn random_points(n: usize, seed: u64) -> Vec<[f64; 3]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| [rng.random::<f64>() * 60.0, rng.random::<f64>() * 60.0, rng.random::<f64>() * 2.0]).collect()
}

/// Dart-throwing blue noise: `n` tries over a `side` square, kept when `min_mm` from
/// every kept point; lifted onto a dome of radius `dome_mm` (a height field).
pub(crate) fn blue_noise(side: f64, min_mm: f64, tries: usize, dome_mm: f64, seed: u64) -> Vec<[f64; 3]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cell = min_mm / std::f64::consts::SQRT_2;
    let nx = (side / cell).ceil() as usize + 1;
    let mut grid: Vec<Option<u32>> = vec![None; nx * nx];
    let mut pts: Vec<[f64; 3]> = Vec::new();
    for _ in 0..tries {
        let (x, y) = (rng.random::<f64>() * side, rng.random::<f64>() * side);
        let (ci, cj) = ((x / cell) as usize, (y / cell) as usize);
        let mut ok = true;
        'scan: for j in cj.saturating_sub(2)..(cj + 3).min(nx) {
            for i in ci.saturating_sub(2)..(ci + 3).min(nx) {
                if let Some(q) = grid[j * nx + i] {
                    let p: [f64; 3] = pts[q as usize];
                    if (p[0] - x).hypot(p[1] - y) < min_mm {
                        ok = false;
                        break 'scan;
                    }
                }
            }
        }
        if ok {
            grid[cj * nx + ci] = Some(pts.len() as u32);
            let (u, v) = (x - side / 2.0, y - side / 2.0);
            pts.push([x, y, (dome_mm * dome_mm - u * u - v * v).max(0.0).sqrt()]);
        }
    }
    pts
}

fn is_permutation(order: &[u32], n: usize) -> bool {
    let mut seen = vec![false; n];
    order.len() == n && order.iter().all(|&q| (q as usize) < n && !std::mem::replace(&mut seen[q as usize], true))
}

fn clinic_rule() -> (RecoveryRule, DotTiming) {
    (RecoveryRule { radius_mm: 3.0, window_s: 2.0 }, DotTiming { cycle_s: 0.25, travel_mm_per_s: 100.0 })
}

#[test]
fn neighbours_match_brute_force() {
    let pts = random_points(400, 1);
    let lists = neighbour_lists(&pts, 6);
    let beyond = neighbour_lists_beyond(&pts, 6, 3.0);
    for (i, list) in lists.iter().enumerate() {
        let mut brute: Vec<(f64, u32)> =
            (0..pts.len()).filter(|&j| j != i).map(|j| (dist3(pts[i], pts[j]), j as u32)).collect();
        brute.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<u32> = brute.iter().take(6).map(|x| x.1).collect();
        assert_eq!(list, &want, "point {i}");
        let want: Vec<u32> = brute.iter().filter(|x| x.0 >= 3.0).take(6).map(|x| x.1).collect();
        assert_eq!(beyond[i], want, "point {i} beyond 3 mm");
    }
}

#[test]
fn far_outliers_do_not_blow_up_the_grid() {
    let mut pts = random_points(200, 4);
    pts.push([1e7, -1e7, 0.0]);
    let b = XyBuckets::new(&pts, bucket_cell(&pts));
    assert!(b.nx * b.ny <= 4 * pts.len().max(256), "{} x {}", b.nx, b.ny);
    let out = order_dots(&pts, 0, &OrderParams::default()).expect("orders");
    assert!(is_permutation(&out.order, pts.len()));
    assert!(out.lower_bound_mm <= out.tour_mm);
}

#[test]
fn nn_visits_everything_once_from_the_start() {
    let pts = random_points(500, 2);
    let order = nearest_neighbour(&pts, 17);
    assert!(is_permutation(&order, pts.len()));
    assert_eq!(order[0], 17);
}

#[test]
fn improvement_shortens_and_keeps_a_permutation_and_the_start() {
    for seed in 0..5 {
        let pts = random_points(800, 10 + seed);
        let nn = nearest_neighbour(&pts, 0);
        let before = path_length(&pts, &nn);
        let mut order = nn.clone();
        let lists = neighbour_lists(&pts, 8);
        let stats = improve(&pts, &lists, &mut order, 100_000);
        let after = path_length(&pts, &order);
        assert!(is_permutation(&order, pts.len()));
        assert_eq!(order[0], 0);
        assert!(!stats.budget_exhausted);
        assert!(after < 0.95 * before, "seed {seed}: {before:.1} -> {after:.1} mm");
    }
}

#[test]
fn kicks_shorten_the_local_optimum() {
    let pts = blue_noise(40.0, 0.9, 20_000, 90.0, 2);
    let lists = neighbour_lists(&pts, 10);
    let mut local = nearest_neighbour(&pts, 0);
    improve(&pts, &lists, &mut local, usize::MAX);
    let mut kicked = nearest_neighbour(&pts, 0);
    let stats = improve_with(&pts, &lists, &mut kicked, usize::MAX, None, 2 * pts.len(), 1);
    assert!(is_permutation(&kicked, pts.len()));
    assert_eq!(kicked[0], 0);
    assert!(stats.kicks_kept > 0);
    let (a, b) = (path_length(&pts, &local), path_length(&pts, &kicked));
    assert!(b < 0.99 * a, "local optimum {a:.1} mm, with kicks {b:.1} mm");
}

#[test]
fn budget_bounds_the_effort() {
    let pts = random_points(300, 5);
    let mut order = nearest_neighbour(&pts, 0);
    let lists = neighbour_lists(&pts, 8);
    let stats = improve(&pts, &lists, &mut order, 3);
    assert_eq!(stats.two_opt_moves + stats.or_opt_moves, 3);
    assert!(stats.budget_exhausted);
    assert!(is_permutation(&order, pts.len()));
}

#[test]
fn order_dots_reports_a_consistent_outcome() {
    let pts = blue_noise(40.0, 0.9, 20_000, 90.0, 7);
    assert!(pts.len() > 1000, "{}", pts.len());
    let out = order_dots(&pts, 5, &OrderParams::default()).expect("orders");
    assert!(is_permutation(&out.order, pts.len()));
    assert_eq!(out.order[0], 5);
    assert!((out.tour_mm - path_length(&pts, &out.order)).abs() < 1e-6);
    assert!(out.tour_mm <= out.nn_tour_mm);
    assert!(out.mst_bound_mm <= out.lower_bound_mm && out.lower_bound_mm <= out.tour_mm);
    // Blue noise at 0.9 mm: the improved path is within 10 % of the bound even at the
    // debug build's effort (the 5 % figure is measured by the bench on 30 000 dots).
    assert!(out.tour_mm < 1.10 * out.lower_bound_mm, "tour {} bound {}", out.tour_mm, out.lower_bound_mm);
    assert_eq!((out.recovery_violations, out.recovery_note.as_deref()), (0, None));
}

#[test]
fn clinic_rule_holds_on_a_blue_noise_patch() {
    let pts = blue_noise(30.0, 0.9, 10_000, 90.0, 3);
    let (rule, timing) = clinic_rule();
    let params = OrderParams { recovery: Some(rule), timing, ..OrderParams::default() };
    let out = order_dots(&pts, 0, &params).expect("orders");
    assert!(is_permutation(&out.order, pts.len()));
    assert_eq!(out.order[0], 0);
    assert_eq!(out.recovery_violations, 0, "{:?}", out.recovery_note);
    assert_eq!(recovery_violations(&pts, &out.order, &rule, &timing), 0);
    // Every step is at least the radius: the tour is at least (n - 1) R.
    let floor = out.recovery_floor_mm.expect("the clinic rule binds consecutive dots");
    assert_eq!(floor, (pts.len() - 1) as f64 * rule.radius_mm);
    assert!(out.tour_mm >= floor && out.tour_mm < 1.3 * floor, "tour {} floor {floor}", out.tour_mm);
    assert!(out.tour_mm <= out.nn_tour_mm);
    // Without the rule the plain order breaks it many times.
    let plain = order_dots(&pts, 0, &OrderParams { timing, ..OrderParams::default() }).expect("orders");
    assert!(recovery_violations(&pts, &plain.order, &rule, &timing) > pts.len() / 2);
}

#[test]
fn stuck_dots_are_inserted_earlier_instead_of_breaking_the_rule() {
    // Found by proptest: the greedy path ends next to its last few dots; they fit
    // conflict-free further back in the path.
    let pts = blue_noise(19.37451226684298, 0.9, 3000, 90.0, 11455);
    let (rule, timing) = clinic_rule();
    let params = OrderParams { recovery: Some(rule), timing, ..OrderParams::default() };
    let out = order_dots(&pts, 0, &params).expect("orders");
    assert!(is_permutation(&out.order, pts.len()));
    assert_eq!(out.recovery_violations, 0, "{:?}", out.recovery_note);
}

#[test]
fn the_free_slot_scan_agrees_with_brute_force() {
    for seed in 0..40u64 {
        let pts = random_points(60, seed);
        let order: Vec<u32> = (0..59).collect();
        for gap in [1usize, 3, 7, 70] {
            let w = Window { radius_mm: 2.5, gap };
            let want = (1..order.len())
                .filter(|&k| {
                    order[k.saturating_sub(gap)..(k + gap).min(order.len())]
                        .iter()
                        .all(|&r| dist3(pts[59], pts[r as usize]) >= w.radius_mm)
                })
                .map(|k| {
                    let (a, b) = (pts[order[k - 1] as usize], pts[order[k] as usize]);
                    (dist3(a, pts[59]) + dist3(pts[59], b) - dist3(a, b), k)
                })
                .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            assert_eq!(cheapest_free_slot(&pts, &order, 59, &w), want, "seed {seed} gap {gap}");
        }
    }
}

#[test]
fn infeasible_rule_is_reported_not_looped_on() {
    // 12 dots within 2 mm: every pair is closer than R = 3 mm.
    let pts: Vec<[f64; 3]> = (0..12).map(|i| [(i % 4) as f64 * 0.6, (i / 4) as f64 * 0.6, 0.0]).collect();
    let (rule, timing) = clinic_rule();
    let params = OrderParams { recovery: Some(rule), timing, ..OrderParams::default() };
    let out = order_dots(&pts, 0, &params).expect("orders");
    assert!(is_permutation(&out.order, pts.len()));
    assert_eq!(out.recovery_violations, 11);
    let note = out.recovery_note.expect("a note says why");
    assert!(note.contains("11 of 12 dots"), "{note}");
}

#[test]
fn dense_infeasible_input_finishes() {
    // 1500 dots in a 4 mm square: at most 4 dots are pairwise 3 mm apart, the rule asks
    // for 8, so it fails at nearly every step; the ordering still ends quickly, visits
    // every dot, and reports the violations.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let pts: Vec<[f64; 3]> = (0..1500).map(|_| [rng.random::<f64>() * 4.0, rng.random::<f64>() * 4.0, 0.0]).collect();
    let (rule, timing) = clinic_rule();
    let params = OrderParams { recovery: Some(rule), timing, ..OrderParams::default() };
    let out = order_dots(&pts, 0, &params).expect("orders");
    assert!(is_permutation(&out.order, pts.len()));
    assert!(out.recovery_violations > 1200, "{}", out.recovery_violations);
    assert_eq!(out.recovery_violations, recovery_violations(&pts, &out.order, &rule, &timing));
    assert!(out.recovery_note.is_some());
}

#[test]
fn violations_follow_the_time_model() {
    let pts = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [1.0, 0.0, 0.0]];
    let rule = RecoveryRule { radius_mm: 2.0, window_s: 1.0 };
    // Dot 2 comes 2 cycles after dot 0 plus 19 mm of travel.
    let fast = DotTiming { cycle_s: 0.25, travel_mm_per_s: 100.0 }; // 0.69 s: violation
    let slow = DotTiming { cycle_s: 0.25, travel_mm_per_s: 30.0 }; // 1.13 s: fine
    assert_eq!(recovery_violations(&pts, &[0, 1, 2], &rule, &fast), 1);
    assert_eq!(recovery_violations(&pts, &[0, 1, 2], &rule, &slow), 0);
    assert_eq!(recovery_violations(&pts, &[0, 2, 1], &rule, &slow), 1);
    // Out-of-range indices are skipped.
    assert_eq!(recovery_violations(&pts, &[0, 9, 1], &rule, &fast), 0);
}

#[test]
fn window_counts_cycles() {
    let w = |window_s, cycle_s| {
        Window::new(&RecoveryRule { radius_mm: 3.0, window_s }, &DotTiming { cycle_s, travel_mm_per_s: 1.0 }, 100)
            .map(|w| w.gap)
    };
    assert_eq!(w(2.0, 0.25), Some(7)); // 8 cycles take exactly 2 s: out of the window
    assert_eq!(w(2.1, 0.25), Some(8));
    assert_eq!(w(0.2, 0.25), None);
    assert_eq!(w(1e9, 0.25), Some(100));
}

#[test]
fn bad_input_is_named() {
    let p = OrderParams::default();
    assert_eq!(order_dots(&[], 0, &p), Err(OrderError::Empty));
    let pts = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, f64::NAN, 0.0]];
    match order_dots(&pts, 0, &p) {
        Err(e @ OrderError::NonFinite { index: 2, axis: 'y', .. }) => {
            assert!(e.to_string().contains("point 2"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(order_dots(&pts[..2], 2, &p), Err(OrderError::StartOutOfRange { start: 2, len: 2 }));
    let bad = OrderParams { neighbours: 0, ..p };
    assert!(matches!(order_dots(&pts[..2], 0, &bad), Err(OrderError::InvalidParam { name: "neighbours", .. })));
    let bad = OrderParams {
        recovery: Some(RecoveryRule { radius_mm: 3.0, window_s: 2.0 }),
        timing: DotTiming { cycle_s: 0.0, travel_mm_per_s: 100.0 },
        ..p
    };
    assert!(matches!(order_dots(&pts[..2], 0, &bad), Err(OrderError::InvalidParam { name: "timing.cycle_s", .. })));
    // One point: a path of length 0.
    let one = order_dots(&pts[..1], 0, &p).expect("one point");
    assert_eq!((one.order, one.tour_mm, one.lower_bound_mm), (vec![0], 0.0, 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any input: the order is a permutation from the start, improvement never
    /// lengthens the path, and the bound stays below the tour.
    #[test]
    fn order_is_a_permutation_and_bounded(seed in 0u64..100_000, n in 1usize..300, start_frac in 0.0f64..1.0) {
        let pts = random_points(n, seed);
        let start = ((n as f64 * start_frac) as u32).min(n as u32 - 1);
        let out = order_dots(&pts, start, &OrderParams::default()).expect("orders");
        prop_assert!(is_permutation(&out.order, n));
        prop_assert_eq!(out.order[0], start);
        prop_assert!(out.tour_mm <= out.nn_tour_mm + 1e-9);
        prop_assert!(out.lower_bound_mm <= out.tour_mm + 1e-9, "bound {} tour {}", out.lower_bound_mm, out.tour_mm);
    }

    /// With the clinic rule on a patch large enough to hold it, the order keeps it
    /// (counted by the exact time model), and the improvement never lengthens it.
    #[test]
    fn rule_holds_when_feasible(seed in 0u64..100_000, side in 15.0f64..30.0) {
        let pts = blue_noise(side, 0.9, 3000, 90.0, seed);
        let (rule, timing) = clinic_rule();
        let params = OrderParams { recovery: Some(rule), timing, bound_iterations: 0, ..OrderParams::default() };
        let out = order_dots(&pts, 0, &params).expect("orders");
        prop_assert!(is_permutation(&out.order, pts.len()));
        prop_assert_eq!(out.recovery_violations, 0);
        prop_assert_eq!(recovery_violations(&pts, &out.order, &rule, &timing), 0);
        prop_assert!(out.tour_mm <= out.nn_tour_mm + 1e-9);
    }

    /// Infeasible inputs (tiny areas): the improvement never adds a violation.
    #[test]
    fn improvement_never_adds_violations(seed in 0u64..100_000, n in 2usize..60, side in 1.0f64..8.0) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pts: Vec<[f64; 3]> = (0..n).map(|_| [rng.random::<f64>() * side, rng.random::<f64>() * side, 0.0]).collect();
        let w = Window { radius_mm: 3.0, gap: 7 };
        let count = |o: &[u32]| (1..o.len()).filter(|&m| (m.saturating_sub(w.gap)..m).any(|k| dist3(pts[o[k] as usize], pts[o[m] as usize]) < w.radius_mm)).count();
        let mut order = nearest_feasible(&pts, 0, &w);
        let before = (count(&order), path_length(&pts, &order));
        let lists = neighbour_lists_beyond(&pts, 8, w.radius_mm);
        improve_with(&pts, &lists, &mut order, 10_000, Some(w), 200, seed);
        prop_assert!(is_permutation(&order, n));
        prop_assert!(count(&order) <= before.0);
        prop_assert!(path_length(&pts, &order) <= before.1 + 1e-9);
    }
}

/// Timing and quality on 30 000 blue-noise dots, for development (the bench
/// `benches/order.rs` is the reference):
/// `cargo test -p smp-planner --release --lib order::tests::large -- --ignored --nocapture`.
#[test]
#[ignore]
fn large() {
    let t = std::time::Instant::now();
    let pts = blue_noise(194.0, 0.9, 3_000_000, 110.0, 1);
    eprintln!("{} dots in {:.3} s", pts.len(), t.elapsed().as_secs_f64());
    let mut out = None;
    for kicks_per_dot in [0.0, 1.0, 3.0, 10.0] {
        let t = std::time::Instant::now();
        let o = order_dots(&pts, 0, &OrderParams { kicks_per_dot, ..OrderParams::default() }).expect("orders");
        eprintln!(
            "order + bound, {kicks_per_dot} kicks per dot: {:.3} s, nn {:.0} tour {:.0} mst {:.0} bound {:.0} \
             tour/bound {:.4} moves {}+{} kicks kept {}",
            t.elapsed().as_secs_f64(),
            o.nn_tour_mm,
            o.tour_mm,
            o.mst_bound_mm,
            o.lower_bound_mm,
            o.tour_mm / o.lower_bound_mm,
            o.two_opt_moves,
            o.or_opt_moves,
            o.kicks_kept,
        );
        out = out.or(Some(o));
    }
    let out = out.expect("ran");
    let (rule, timing) = clinic_rule();
    let t = std::time::Instant::now();
    let r =
        order_dots(&pts, 0, &OrderParams { recovery: Some(rule), timing, ..OrderParams::default() }).expect("orders");
    eprintln!(
        "rule: {:.3} s, nn {:.0} tour {:.0} ({:.3} x plain, {:.3} x floor) violations {} moves {}+{}",
        t.elapsed().as_secs_f64(),
        r.nn_tour_mm,
        r.tour_mm,
        r.tour_mm / out.tour_mm,
        r.tour_mm / r.recovery_floor_mm.unwrap_or(f64::NAN),
        r.recovery_violations,
        r.two_opt_moves,
        r.or_opt_moves
    );
}

//! Tests of the whole planner on synthetic maps (no vision, no simulator).

use nalgebra::{Isometry3, Point2, Translation3, UnitQuaternion, Vector3};
use proptest::prelude::*;
use smp_core::camera::CameraIntrinsics;
use smp_core::geometry::PoseSpec;
use smp_core::image::{CameraView, RgbImage};
use smp_core::map::{Follicle, FollicleKind, RegionKind, ScalpMap};
use smp_core::plan::{PlanFile, SessionSpec, Zone};

use super::*;
use crate::test_support::{base_from_head, rig, session1 as spec};
use smp_testkit::{synthetic_map, synthetic_region, SyntheticMapSpec};

fn small_map() -> SyntheticMapSpec {
    SyntheticMapSpec {
        half_extent_mm: 25.0,
        cell_mm: 1.0,
        curvature_radius_mm: Some(120.0),
        thinning_radius_mm: 22.0,
        bald_radius_mm: 12.0,
        ..SyntheticMapSpec::default()
    }
}

fn brute_min_distance(a: &[[f64; 3]], b: &[[f64; 3]], same: bool) -> f64 {
    let mut best = f64::INFINITY;
    for (i, p) in a.iter().enumerate() {
        for (j, q) in b.iter().enumerate() {
            if same && i >= j {
                continue;
            }
            best = best.min(geometry::dist3(*p, *q));
        }
    }
    best
}

#[test]
fn default_session_file_parses_with_the_brief_values() {
    let s = spec();
    assert_eq!(s.session, 1);
    assert_eq!(s.zone, Zone::Crown);
    assert_eq!(s.treat, vec![RegionKind::Thinning, RegionKind::Bald, RegionKind::Scar]);
    assert_eq!(s.target_density_per_cm2, 80.0);
    assert_eq!(s.session_share, 0.4);
    assert_eq!(s.min_spacing_mm, 0.9);
    assert_eq!((s.depth_mm, s.depth_limit_mm, s.dwell_s, s.hover_mm), (1.0, 1.2, 0.1, 2.0));
    assert_eq!(
        (s.plunge_feed_mm_per_min, s.retract_feed_mm_per_min, s.travel_feed_mm_per_min, s.max_feed_mm_per_min),
        (600.0, 1200.0, 6000.0, 8000.0)
    );
    assert_eq!((s.cartridge_rpm, s.dilution_pct, s.region_margin_mm, s.max_tilt_deg), (9000.0, 50.0, 1.0, 35.0));
    assert_eq!((s.seed, s.max_dots), (1, None));
}

#[test]
fn crown_plan_is_valid_and_passes_plan_file_validation() {
    let map = synthetic_map(&small_map());
    let out = plan_session_with(&map, &spec(), &rig(), &base_from_head(), &PlannerConfig::default()).expect("plans");
    let plan = &out.plan;
    assert!(plan.dots.len() > 100, "{} dots", plan.dots.len());
    let file =
        PlanFile { version: smp_core::JSON_FORMAT_VERSION, patient: "synthetic".into(), sessions: vec![plan.clone()] };
    file.validate().expect("plan file validates");
    assert_eq!(plan.treatment.nx, map.regions.nx);
    assert_eq!(plan.treatment.ny, map.regions.ny);
    assert_eq!(plan.limits.depth_limit_mm, 1.2);
    assert!(plan.dots.iter().all(|d| d.depth_mm == 1.0 && d.layer == 1 && d.dilution_pct == 50.0));
    // Ids follow execution order.
    for (k, d) in plan.dots.iter().enumerate() {
        assert_eq!(d.id, DOT_ID_STRIDE + k as u32);
    }
    // Scar dots are labelled scar, the others crown.
    let patch_from_head = map.surface.head_from_patch.inverse();
    for d in &plan.dots {
        let p = patch_from_head * nalgebra::Point3::from(d.position());
        let scar = map.regions.code_at(p.x, p.y) == RegionKind::Scar.code();
        assert_eq!(d.zone, if scar { Zone::Scar } else { Zone::Crown }, "dot {}", d.id);
    }
    assert!(plan.dots.iter().any(|d| d.zone == Zone::Scar));
}

#[test]
fn spacing_holds_on_the_crown_with_natural_follicles() {
    let map = synthetic_map(&small_map());
    let plan = plan_session(&map, &spec(), &rig(), &base_from_head()).expect("plans");
    let dots: Vec<[f64; 3]> = plan.dots.iter().map(|d| d.position()).collect();
    let follicles: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    assert!(brute_min_distance(&dots, &dots, true) >= 0.9);
    assert!(brute_min_distance(&dots, &follicles, false) >= 0.9);
}

fn flat_bald_map(half: f64) -> ScalpMap {
    synthetic_map(&SyntheticMapSpec {
        half_extent_mm: half,
        cell_mm: 1.0,
        curvature_radius_mm: None,
        thinning_radius_mm: half + 10.0,
        bald_radius_mm: half + 10.0,
        scar: false,
        seed: 3,
        ..SyntheticMapSpec::default()
    })
}

#[test]
fn density_is_within_15_percent_of_target_on_a_flat_map() {
    // A square bald map (corners beyond the radius are unscanned): the interior, more than
    // the feather width plus its noise from the border, must carry the session density.
    let map = flat_bald_map(40.0);
    assert!(map.follicles.is_empty());
    for seed in [1, 2] {
        let s = SessionSpec { seed, ..spec() };
        let out = plan_session_with(&map, &s, &rig(), &base_from_head(), &PlannerConfig::default()).expect("plans");
        let target = 80.0 * 0.4; // per cm²
                                 // Interior: within 25 mm of the centre (the mask border is at ~39 mm).
        let r_in = 25.0;
        let inside = out.plan.dots.iter().filter(|d| d.x_mm.hypot(d.y_mm) < r_in).count() as f64;
        let area_cm2 = std::f64::consts::PI * r_in * r_in / 100.0;
        let density = inside / area_cm2;
        assert!((density / target - 1.0).abs() <= 0.15, "seed {seed}: interior {density:.1}/cm² vs {target}");
        // And the whole plan matches the density integral closely.
        let ratio = out.stats.sampled_dots as f64 / out.stats.target_dots;
        assert!((ratio - 1.0).abs() < 0.05, "count ratio {ratio}");
    }
}

#[test]
fn density_feathers_down_at_the_border() {
    let map = flat_bald_map(40.0);
    let plan = plan_session(&map, &spec(), &rig(), &base_from_head()).expect("plans");
    // Border of the mask: radius 40 minus the 1 mm margin.
    let ring = |lo: f64, hi: f64| {
        let n = plan.dots.iter().filter(|d| (lo..hi).contains(&d.x_mm.hypot(d.y_mm))).count() as f64;
        n / (std::f64::consts::PI * (hi * hi - lo * lo) / 100.0)
    };
    let edge = ring(36.0, 39.0);
    let interior = ring(10.0, 25.0);
    assert!(edge < 0.6 * interior, "edge {edge:.1}/cm² vs interior {interior:.1}/cm²");
    assert!(edge > 0.0, "the feather keeps a sparse fringe, not a cut edge");
}

#[test]
fn natural_follicles_count_toward_the_target() {
    // Thinning with 40 natural follicles/cm²: the session fills 0.4 × (80 − 40) = 16/cm².
    let mut m = SyntheticMapSpec {
        half_extent_mm: 40.0,
        cell_mm: 1.0,
        curvature_radius_mm: None,
        thinning_radius_mm: 50.0,
        bald_radius_mm: 0.0,
        scar: false,
        thinning_per_cm2: 40.0,
        seed: 5,
        ..SyntheticMapSpec::default()
    };
    let map = synthetic_map(&m);
    let plan = plan_session(&map, &spec(), &rig(), &base_from_head()).expect("plans");
    let inside = plan.dots.iter().filter(|d| d.x_mm.hypot(d.y_mm) < 25.0).count() as f64;
    let density = inside / (std::f64::consts::PI * 6.25);
    assert!((density / 16.0 - 1.0).abs() < 0.2, "{density:.1}/cm² vs 16");
    // Follicles at the target: nothing to add, a clear error.
    m.thinning_per_cm2 = 120.0;
    let err = plan_session(&synthetic_map(&m), &spec(), &rig(), &base_from_head()).expect_err("nothing to add");
    assert!(matches!(err, PlanError::NoDots { .. }), "{err}");
}

#[test]
fn mask_respects_margin_and_tilt() {
    // Strongly curved: tilt exceeds 25° beyond r = R·tan 25° ≈ 28 mm on R = 60 mm.
    let m = SyntheticMapSpec {
        half_extent_mm: 45.0,
        cell_mm: 1.0,
        curvature_radius_mm: Some(60.0),
        thinning_radius_mm: 40.0,
        bald_radius_mm: 10.0,
        scar: false,
        ..SyntheticMapSpec::default()
    };
    let map = synthetic_map(&m);
    let s = SessionSpec { region_margin_mm: 3.0, treat: vec![RegionKind::Bald], ..spec() };
    let bald = plan_session(&map, &s, &rig(), &base_from_head()).expect("plans");
    let g = &bald.treatment;
    let mut marked = 0;
    for j in 0..g.ny {
        for i in 0..g.nx {
            let (x, y) = g.cell_centre(i, j);
            if g.code_at_cell(i, j) == '#' {
                marked += 1;
                assert_eq!(synthetic_region(&m, x, y), RegionKind::Bald);
                // Margin: the bald disc has radius 10 (cells whose centre is inside): the
                // nearest untreated cell edge is at least 3 mm from a treated centre.
                assert!(x.hypot(y) <= 10.0 - 3.0 + 0.01, "cell ({x}, {y}) inside the margin");
            }
        }
    }
    assert!(marked > 50);
    let patch_from_head = map.surface.head_from_patch.inverse();
    for d in &bald.dots {
        let p = patch_from_head * nalgebra::Point3::from(d.position());
        assert!(p.x.hypot(p.y) <= 10.0 - 3.0 + 1e-6, "dot {} inside the margin", d.id);
    }
    // Tilt: treating the thinning ring too, no dot beyond the 25° circle.
    let s = SessionSpec { treat: vec![RegionKind::Thinning, RegionKind::Bald], max_tilt_deg: 25.0, ..spec() };
    let out = plan_session_with(&map, &s, &rig(), &base_from_head(), &PlannerConfig::default()).expect("plans");
    let r_limit = 60.0 * 25f64.to_radians().tan();
    for d in &out.plan.dots {
        let p = patch_from_head * nalgebra::Point3::from(d.position());
        assert!(p.x.hypot(p.y) <= r_limit + 1e-6, "dot {} at r {:.2} > {r_limit:.2}", d.id, p.x.hypot(p.y));
        let n = Vector3::from(d.normal);
        assert!(n.z.acos().to_degrees() <= 25.0 + 1e-6);
    }
    for j in 0..out.plan.treatment.ny {
        for i in 0..out.plan.treatment.nx {
            let (x, y) = out.plan.treatment.cell_centre(i, j);
            if out.plan.treatment.code_at_cell(i, j) == '#' {
                assert!(x.hypot(y) <= r_limit + 1e-6);
            }
        }
    }
    assert!(
        out.plan.warnings.iter().any(|w| w.contains("steeper than max_tilt_deg")),
        "warns about the lost area: {:?}",
        out.plan.warnings
    );
    // The dots came close to the tilt limit: the mask is not needlessly small.
    let r_max = out.plan.dots.iter().map(|d| d.x_mm.hypot(d.y_mm)).fold(0.0, f64::max);
    assert!(r_max > r_limit - 3.0, "{r_max}");
}

#[test]
fn the_same_seed_gives_a_byte_identical_plan_and_another_seed_does_not() {
    let map = synthetic_map(&small_map());
    let a =
        serde_json::to_string(&plan_session(&map, &spec(), &rig(), &base_from_head()).expect("plans")).expect("json");
    let b =
        serde_json::to_string(&plan_session(&map, &spec(), &rig(), &base_from_head()).expect("plans")).expect("json");
    assert_eq!(a, b);
    let s2 = SessionSpec { seed: 2, ..spec() };
    let c = serde_json::to_string(&plan_session(&map, &s2, &rig(), &base_from_head()).expect("plans")).expect("json");
    assert_ne!(a, c);
}

#[test]
fn ordering_improves_over_nearest_neighbour() {
    let map = synthetic_map(&small_map());
    let out = plan_session_with(&map, &spec(), &rig(), &base_from_head(), &PlannerConfig::default()).expect("plans");
    let s = &out.stats;
    assert!(s.tour_mm < 0.95 * s.nn_tour_mm, "NN {:.0} mm -> {:.0} mm", s.nn_tour_mm, s.tour_mm);
    assert!(s.two_opt_moves + s.or_opt_moves > 0);
    // Mean step is close to the mean spacing: no long jumps across the patch.
    let steps = out.plan.dots.len() as f64 - 1.0;
    let mean_step = s.tour_mm / steps;
    assert!(mean_step < 2.5, "mean step {mean_step:.2} mm");
    // Short steps on a gently curved patch keep the travel well above the skin.
    assert!(s.max_step_mm > 0.9 && s.max_step_mm < 30.0, "{}", s.max_step_mm);
    assert!(
        s.min_travel_clearance_mm > 1.5 && s.min_travel_clearance_mm <= 2.0 + 1e-9,
        "{}",
        s.min_travel_clearance_mm
    );
}

#[test]
fn estimates_are_positive_and_consistent() {
    let map = synthetic_map(&small_map());
    let sp = spec();
    let r = rig();
    let plan = plan_session(&map, &sp, &r, &base_from_head()).expect("plans");
    let e = &plan.estimates;
    assert!(e.tour_mm > 0.0 && e.arm_time_s > 0.0 && e.treated_area_cm2 > 0.0);
    // The tour is the sum of head-frame steps (hover points are the skin points shifted).
    let steps: f64 = plan.dots.windows(2).map(|w| geometry::dist3(w[0].position(), w[1].position())).sum();
    assert!((steps - e.tour_mm).abs() < 1e-6 * steps.max(1.0));
    // Arm time: each dot needs at least its dwell and a plunge/retract of hover + depth at
    // the plunge/retract feeds, and travel at no more than the travel feed.
    let n = plan.dots.len() as f64;
    let stroke = sp.hover_mm + sp.depth_mm;
    let lower = n
        * (sp.dwell_s + stroke / (sp.plunge_feed_mm_per_min / 60.0) + stroke / (sp.retract_feed_mm_per_min / 60.0))
        + e.tour_mm / (sp.travel_feed_mm_per_min / 60.0);
    assert!(e.arm_time_s >= lower, "{} < {lower}", e.arm_time_s);
    assert!(e.arm_time_s < 3.0 * lower, "{} vs {lower}", e.arm_time_s);
    // Treated area matches the mask cell count (flat-ish patch: area factor near 1).
    let cells_cm2 = plan.treatment.count('#') as f64 * plan.treatment.cell_mm.powi(2) / 100.0;
    assert!(e.treated_area_cm2 >= cells_cm2 && e.treated_area_cm2 < 1.1 * cells_cm2);
}

#[test]
fn max_dots_keeps_a_compact_patch() {
    let map = synthetic_map(&small_map());
    let s = SessionSpec { max_dots: Some(150), ..spec() };
    let plan = plan_session(&map, &s, &rig(), &base_from_head()).expect("plans");
    assert_eq!(plan.dots.len(), 150);
    // Compact: all within a disc whose area is about 150 dots at the session density.
    let (cx, cy) = plan.dots.iter().fold((0.0, 0.0), |a, d| (a.0 + d.x_mm / 150.0, a.1 + d.y_mm / 150.0));
    let r = plan.dots.iter().map(|d| (d.x_mm - cx).hypot(d.y_mm - cy)).fold(0.0, f64::max);
    let disc_r_mm = (150.0 / (80.0 * 0.4) * 100.0 / std::f64::consts::PI).sqrt();
    assert!(r < 1.5 * disc_r_mm, "radius {r:.1} mm vs {disc_r_mm:.1}");
    assert!(plan.warnings.iter().any(|w| w.contains("max_dots 150")));
}

#[test]
fn nan_inputs_are_rejected_naming_the_field() {
    let good = synthetic_map(&small_map());
    let check = |map: &ScalpMap, field: &str| {
        let err = plan_session(map, &spec(), &rig(), &base_from_head()).expect_err("NaN must be rejected");
        assert!(err.to_string().contains(field), "`{err}` should name `{field}`");
    };
    let mut m = good.clone();
    m.follicles[3].y_mm = f64::NAN;
    check(&m, "follicles[3].y_mm");
    let mut m = good.clone();
    m.surface.coefficients[3] = f64::NAN;
    check(&m, "surface.coefficients");
    let mut m = good.clone();
    m.surface.head_from_patch.translation.vector.x = f64::NAN;
    check(&m, "surface.head_from_patch.translation[0]");
    let mut m = good.clone();
    m.follicles[0].normal[2] = f64::INFINITY;
    check(&m, "follicles[0].normal[2]");
    let mut m = good.clone();
    m.regions.cell_mm = f64::NAN;
    check(&m, "regions.cell_mm");
    let mut m = good.clone();
    m.base_from_head = PoseSpec { translation_mm: [0.0, f64::NAN, 0.0], rpy_deg: [0.0; 3] };
    check(&m, "base_from_head.translation_mm[1]");
    // The registration argument and the spec.
    let mut reg = base_from_head();
    reg.translation.vector.z = f64::NAN;
    let err = plan_session(&good, &spec(), &rig(), &reg).expect_err("NaN registration");
    assert!(err.to_string().contains("base_from_head.translation[2]"), "{err}");
    let s = SessionSpec { depth_mm: f64::NAN, ..spec() };
    let err = plan_session(&good, &s, &rig(), &base_from_head()).expect_err("NaN spec");
    assert!(err.to_string().contains("depth_mm"), "{err}");
}

#[test]
fn nothing_to_treat_is_an_error_that_says_why() {
    let map = synthetic_map(&small_map());
    let s = SessionSpec { treat: vec![RegionKind::Outside], ..spec() };
    let err = plan_session(&map, &s, &rig(), &base_from_head()).expect_err("empty");
    assert!(matches!(err, PlanError::EmptyTreatment { .. }), "{err}");
    let s = SessionSpec { region_margin_mm: 40.0, ..spec() };
    let err = plan_session(&map, &s, &rig(), &base_from_head()).expect_err("all in the margin");
    assert!(err.to_string().contains("region_margin_mm"), "{err}");
}

#[test]
fn earlier_session_dots_are_obstacles() {
    let mut map = synthetic_map(&small_map());
    let first = plan_session(&map, &spec(), &rig(), &base_from_head()).expect("plans");
    for d in &first.dots {
        map.follicles.push(Follicle {
            x_mm: d.x_mm,
            y_mm: d.y_mm,
            z_mm: d.z_mm,
            normal: d.normal,
            diameter_mm: 0.4,
            darkness: 0.5,
            kind: FollicleKind::SmpDot,
        });
    }
    let s2 = SessionSpec { session: 2, seed: 9, session_share: 0.35, dilution_pct: 30.0, ..spec() };
    let second = plan_session(&map, &s2, &rig(), &base_from_head()).expect("plans");
    assert!(second.dots.len() > first.dots.len() / 2, "{} vs {}", second.dots.len(), first.dots.len());
    let a: Vec<[f64; 3]> = first.dots.iter().map(|d| d.position()).collect();
    let b: Vec<[f64; 3]> = second.dots.iter().map(|d| d.position()).collect();
    assert!(brute_min_distance(&a, &b, false) >= 0.9);
    assert!(second.dots.iter().all(|d| d.id >= 2 * DOT_ID_STRIDE && d.layer == 2));
    let file = PlanFile { version: 1, patient: "p".into(), sessions: vec![first, second] };
    file.validate().expect("ids unique across sessions");
}

fn overview(width: u32, height: u32) -> CameraView {
    // 150 mm above the top of the synthetic patch (head z 100 → base z 200), looking down.
    let base_from_camera = Isometry3::from_parts(
        Translation3::new(250.0, 0.0, 350.0),
        UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
    );
    CameraView {
        label: "overview".into(),
        intrinsics: CameraIntrinsics {
            width_px: width,
            height_px: height,
            fx_px: 1500.0,
            fy_px: 1500.0,
            cx_px: width as f64 / 2.0,
            cy_px: height as f64 / 2.0,
            distortion: [0.0; 5],
        },
        base_from_camera,
        image: RgbImage::new(width, height, [205, 165, 140]),
        depth: None,
    }
}

#[test]
fn mockup_draws_dots_where_they_project() {
    let map = synthetic_map(&small_map());
    let s = SessionSpec { max_dots: Some(40), ..spec() };
    let plan = plan_session(&map, &s, &rig(), &base_from_head()).expect("plans");
    let photo = overview(800, 800);
    let img = render_mockup(&photo, &base_from_head(), &[&plan]);
    assert_eq!((img.width, img.height), (800, 800));
    let camera_from_head = photo.base_from_camera.inverse() * base_from_head();
    let mut drawn = 0;
    for d in &plan.dots {
        let p = camera_from_head * nalgebra::Point3::from(d.position());
        let px: Point2<f64> = photo.intrinsics.project(&p).expect("in front");
        let (x, y) = (px.x.round() as u32, px.y.round() as u32);
        let c = img.get(x, y);
        // Darker than skin, lighter than undiluted pigment (50 % dilution).
        assert!(c[0] < 205 && c[0] > PIGMENT_RGB[0], "dot {} pixel {c:?}", d.id);
        drawn += 1;
    }
    assert_eq!(drawn, 40);
    let changed = img.data.chunks(3).filter(|p| p != &[205, 165, 140]).count();
    // ~0.4 mm at 10 px/mm: a disc of ~2 px radius: 10-25 pixels per dot.
    assert!(changed > 40 * 6 && changed < 40 * 40, "{changed} pixels changed");
    // Far from every dot the photo is untouched.
    assert_eq!(img.get(5, 5), [205, 165, 140]);
    // A camera behind the head sees nothing.
    let mut back = overview(200, 200);
    back.base_from_camera = Isometry3::translation(250.0, 0.0, -300.0);
    let img = render_mockup(&back, &base_from_head(), &[&plan]);
    assert_eq!(img, back.image);
}

#[test]
fn mockup_session_one_is_lighter_than_a_darker_session() {
    let map = synthetic_map(&small_map());
    let s1 =
        plan_session(&map, &SessionSpec { max_dots: Some(30), ..spec() }, &rig(), &base_from_head()).expect("plans");
    let mut dark = s1.clone();
    for d in &mut dark.dots {
        d.dilution_pct = 10.0;
    }
    let photo = overview(800, 800);
    let sum = |img: &RgbImage| img.data.iter().map(|&v| v as u64).sum::<u64>();
    let a = sum(&render_mockup(&photo, &base_from_head(), &[&s1]));
    let b = sum(&render_mockup(&photo, &base_from_head(), &[&dark]));
    assert!(a > b, "session 1 (50 % dilution) must read lighter");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Hard spacing invariant: for random follicle sets (on and off the surface), random
    /// seeds, densities up to the spacing limit and flat or curved skin, no two dots and no
    /// dot and follicle are closer than min_spacing_mm in 3-D.
    #[test]
    fn spacing_invariant_holds(
        seed in 0u64..1_000_000,
        follicles in prop::collection::vec((-14.0f64..14.0, -14.0f64..14.0, -0.4f64..0.4), 0..80),
        density in 20.0f64..200.0,
        spacing in 0.6f64..1.5,
        curved in any::<bool>(),
    ) {
        let m = SyntheticMapSpec {
            half_extent_mm: 15.0,
            cell_mm: 1.0,
            curvature_radius_mm: if curved { Some(40.0) } else { None },
            thinning_radius_mm: 14.0,
            bald_radius_mm: 7.0,
            scar: false,
            thinning_per_cm2: 0.0,
            hair_per_cm2: 0.0,
            seed,
            ..SyntheticMapSpec::default()
        };
        let mut map = synthetic_map(&m);
        for (x, y, dz) in &follicles {
            let (p, n) = map.surface.sample_head(*x, *y);
            map.follicles.push(Follicle {
                x_mm: p.x, y_mm: p.y, z_mm: p.z + dz, normal: [n.x, n.y, n.z],
                diameter_mm: 0.3, darkness: 0.8, kind: FollicleKind::Natural,
            });
        }
        let s = SessionSpec {
            seed,
            target_density_per_cm2: density,
            session_share: 1.0,
            min_spacing_mm: spacing,
            max_tilt_deg: 60.0,
            ..spec()
        };
        match plan_session(&map, &s, &rig(), &base_from_head()) {
            Ok(plan) => {
                let dots: Vec<[f64; 3]> = plan.dots.iter().map(|d| d.position()).collect();
                let fol: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
                prop_assert!(brute_min_distance(&dots, &dots, true) >= spacing);
                prop_assert!(brute_min_distance(&dots, &fol, false) >= spacing);
            }
            Err(PlanError::NoDots { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error: {e}"),
        }
    }
}

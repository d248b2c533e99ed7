//! Tests of a generated patient: follicles, regions, truth queries and prior dots.

use std::collections::BTreeMap;

use nalgebra::Point3;
use proptest::prelude::*;
use smp_core::map::RegionKind;
use smp_core::rig::Rig;
use smp_core::spatial::PointGrid;
use smp_core::SpecError;

use super::regions::SurfaceFrame;
use super::*;
use crate::skin::DepositInput;

fn default_patient() -> &'static SyntheticPatient {
    static P: std::sync::OnceLock<SyntheticPatient> = std::sync::OnceLock::new();
    P.get_or_init(|| SyntheticPatient::generate(&default_spec()))
}

proptest! {
    #[test]
    fn region_depends_only_on_the_direction(polar in 0.0f64..180.0, az in -180.0f64..180.0, r in 1.0f64..300.0) {
        let p = default_patient();
        let d = direction_from_angles_deg(polar, az);
        prop_assert_eq!(p.region_at_head(&Point3::from(d * r)), p.region_at_head(&Point3::from(d * 50.0)));
    }

    #[test]
    fn a_vertical_needle_meets_the_skin_first_at_surface_z(dx in -120.0f64..120.0, dy in -100.0f64..100.0) {
        let p = default_patient();
        let bfh = Rig::default_sim().base_from_head_nominal();
        let (x, y) = (bfh.translation.vector.x + dx, bfh.translation.vector.y + dy);
        if let Some(z) = p.surface_z_base(&bfh, x, y) {
            let on = bfh.inverse() * Point3::new(x, y, z);
            prop_assert!(p.ellipsoid().implicit(&on).abs() < 1e-9);
            for k in 1..20 {
                let above = bfh.inverse() * Point3::new(x, y, z + k as f64 * 10.0);
                prop_assert!(p.ellipsoid().implicit(&above) > 0.0, "skin above the reported surface");
            }
        } else {
            for k in 0..40 {
                let q = bfh.inverse() * Point3::new(x, y, bfh.translation.vector.z - 200.0 + k as f64 * 10.0);
                prop_assert!(p.ellipsoid().implicit(&q) > 0.0, "missed a head that is there");
            }
        }
    }
}

fn default_spec() -> PatientSpec {
    PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient parses")
}

#[test]
fn generation_is_deterministic_and_seed_dependent() {
    let spec = default_spec();
    let a = SyntheticPatient::generate(&spec);
    let b = SyntheticPatient::generate(&spec);
    assert_eq!(a.truth_follicles(), b.truth_follicles());
    assert!(a.truth_follicles_head().len() > 10_000, "{} follicles", a.truth_follicles_head().len());
    let mut other = spec.clone();
    other.seed += 1;
    let c = SyntheticPatient::generate(&other);
    assert_ne!(a.truth_follicles_head(), c.truth_follicles_head());
}

#[test]
fn follicles_keep_min_spacing_and_sit_on_hair_bearing_skin() {
    let spec = default_spec();
    let p = SyntheticPatient::generate(&spec);
    let s = spec.follicles.min_spacing_mm;
    let grid = PointGrid::from_points(s, p.truth_follicles_head().iter().copied());
    for (i, f) in p.truth_follicles_head().iter().enumerate() {
        grid.for_each_within(*f, s - 1e-9, |j, d| {
            assert!(j as usize == i, "follicles {i} and {j} are {d} mm apart (< {s})");
        });
        let q = Point3::from(*f);
        assert!(p.ellipsoid().implicit(&q).abs() < 1e-9, "follicle {i} off the surface");
        let r = p.region_at_head(&q);
        assert!(!matches!(r, RegionKind::Outside | RegionKind::Scar), "follicle {i} in {r:?}");
    }
}

#[test]
fn densities_follow_the_regions() {
    let spec = default_spec();
    let p = SyntheticPatient::generate(&spec);
    let mut counts: BTreeMap<RegionKind, usize> = BTreeMap::new();
    for f in p.truth_follicles_head() {
        *counts.entry(p.region_at_head(&Point3::from(*f))).or_insert(0) += 1;
    }
    let all = p.region_areas_cm2(&Vector3::z(), 180.0);
    let hair = counts.get(&RegionKind::Hair).copied().unwrap_or(0) as f64 / all[&RegionKind::Hair];
    // Soft edges move a little density across labels; the bulk is at the requested level.
    assert!((hair - spec.follicles.hair_per_cm2).abs() < 0.1 * spec.follicles.hair_per_cm2, "hair {hair}/cm²");
    let thin = counts.get(&RegionKind::Thinning).copied().unwrap_or(0) as f64 / all[&RegionKind::Thinning];
    assert!(
        thin > 0.6 * spec.follicles.thinning_per_cm2 && thin < 2.0 * spec.follicles.thinning_per_cm2,
        "thinning {thin}/cm²"
    );
    let bald = counts.get(&RegionKind::Bald).copied().unwrap_or(0) as f64 / all[&RegionKind::Bald];
    assert!(bald < 0.25 * spec.follicles.thinning_per_cm2, "bald {bald}/cm²");
    assert_eq!(counts.get(&RegionKind::Scar), None);
}

#[test]
fn regions_are_where_the_spec_puts_them() {
    let spec = default_spec();
    let p = SyntheticPatient::generate(&spec);
    let at = |polar: f64, az: f64| p.region_at_head(&Point3::from(direction_from_angles_deg(polar, az) * 50.0));
    // Face, ear level, neck: not scalp.
    assert_eq!(at(90.0, 0.0), RegionKind::Outside);
    assert_eq!(at(110.0, 90.0), RegionKind::Outside);
    assert_eq!(at(150.0, 180.0), RegionKind::Outside);
    // Crown centre is bald; the fringe at the back and sides is hair.
    let c = &spec.crown;
    assert_eq!(at(c.centre_polar_deg, c.centre_azimuth_deg), RegionKind::Bald);
    assert_eq!(at(90.0, 180.0), RegionKind::Hair);
    assert_eq!(at(75.0, 90.0), RegionKind::Hair);
    assert_eq!(at(75.0, -90.0), RegionKind::Hair);
    // Frontal recession: just below the natural front edge is receded (bald) skin.
    let natural = spec.scalp.lower_edge_deg[0][1];
    assert_eq!(at(natural - 2.0, 0.0), RegionKind::Bald);
    // The scar centre is scar.
    let ScarSpec::Ellipse(s) = &spec.scars[0] else { panic!("the default scar is an ellipse") };
    assert_eq!(at(s.centre_polar_deg, s.centre_azimuth_deg), RegionKind::Scar);
    // No point: outside.
    assert_eq!(p.region_at_head(&Point3::origin()), RegionKind::Outside);
}

#[test]
fn up_facing_crown_is_treatable_and_holds_scar_and_follicles() {
    let spec = default_spec();
    let p = SyntheticPatient::generate(&spec);
    let rig = Rig::default_sim();
    let up = up_direction_head(&rig.base_from_head_nominal());
    let areas = p.region_areas_cm2(&up, 25.0);
    let get = |r| areas.get(&r).copied().unwrap_or(0.0);
    let treatable = get(RegionKind::Thinning) + get(RegionKind::Bald) + get(RegionKind::Scar);
    assert!(treatable > 30.0, "treatable {treatable} cm² ({areas:?})");
    assert!(get(RegionKind::Scar) > 0.5, "scar {areas:?}");
    assert!(get(RegionKind::Outside) == 0.0, "{areas:?}");
    let cos25 = 25f64.to_radians().cos();
    let up_follicles = p.truth_follicles().iter().filter(|f| Vector3::from(f.normal_head).dot(&up) >= cos25).count();
    assert!(up_follicles > 150, "{up_follicles} follicles face up");
}

const FOLLOWUP_TOML: &str = include_str!("../../../../sim/patients/followup-s2.toml");

fn followup() -> &'static SyntheticPatient {
    static P: std::sync::OnceLock<SyntheticPatient> = std::sync::OnceLock::new();
    P.get_or_init(|| SyntheticPatient::generate(&PatientSpec::from_toml_str(FOLLOWUP_TOML).expect("parses")))
}

#[test]
fn followup_patient_carries_healed_session_one_dots_between_its_follicles() {
    let spec = PatientSpec::from_toml_str(FOLLOWUP_TOML).expect("follow-up patient parses");
    let back = PatientSpec::from_toml_str(&spec.to_toml_string().expect("serialises")).expect("re-parses");
    assert_eq!(spec, back);
    let p = followup();
    // Same follicles as the default patient: the prior dots come on top (stream 4).
    assert_eq!(p.truth_follicles(), default_patient().truth_follicles());
    assert!(default_patient().truth_prior_dots().is_empty());
    let dots = p.truth_prior_dots();
    let ps = &spec.prior_sessions[0];
    // ~25/cm² over the bald and thinning part of a 40 mm disc (~50 cm²), less the lost 2 %.
    assert!(dots.len() > 600 && dots.len() < 1400, "{} prior dots", dots.len());
    assert_eq!(p.truth_prior_dots_head().len(), dots.len());
    let follicles = PointGrid::from_points(1.0, p.truth_follicles_head().iter().copied());
    let generated = &dots[..dots.len() - spec.prior_dots.len()];
    let grid = PointGrid::from_points(1.0, generated.iter().map(|d| d.position_head_mm));
    let within = ps.within.as_ref().expect("disc");
    let frame = SurfaceFrame::new(p.ellipsoid(), within.centre_polar_deg, within.centre_azimuth_deg, 0.0);
    for (i, d) in generated.iter().enumerate() {
        let q = Point3::from(d.position_head_mm);
        assert!(p.ellipsoid().implicit(&q).abs() < 1e-9, "dot {i} off the surface");
        assert!(!follicles.any_within(d.position_head_mm, ps.min_spacing_mm), "dot {i} crowds a follicle");
        grid.for_each_within(d.position_head_mm, ps.min_spacing_mm - 1e-9, |j, dist| {
            assert!(j as usize == i, "dots {i} and {j} are {dist} mm apart");
        });
        assert!(ps.regions.contains(&p.region_at_head(&q)), "dot {i} in {:?}", p.region_at_head(&q));
        let (u, v) = frame.local_mm(&q);
        assert!(u.hypot(v) <= within.radius_mm + 1e-9);
        assert_eq!((d.session, d.weeks_healed), (1, 6.0));
        // Healed: 0.3-0.6 mm, lighter than the follicles (0.85), blue-grey.
        assert!(d.diameter_mm > 0.3 && d.diameter_mm < 0.6, "dot {i}: {d:?}");
        assert!(d.darkness < 0.75, "dot {i}: {d:?}");
        assert!(d.srgb[2] > d.srgb[0], "dot {i}: {d:?}");
    }
    // The hand-listed blowout is wider than any generated dot.
    let blowout = dots.last().expect("listed dots");
    assert!(blowout.blowout && blowout.diameter_mm > 0.7, "{blowout:?}");
    // Deterministic.
    let again = SyntheticPatient::generate(&spec);
    assert_eq!(again.truth_prior_dots(), dots);
}

#[test]
fn session_deposits_attach_fresh_dots_to_a_copy() {
    let patient = SyntheticPatient::generate(&default_spec());
    let before = patient.truth_prior_dots().len();
    let at = |p: [f64; 3]| smp_core::NeedleEntry { base_mm: [f64::NAN; 3], head_mm: p, depth_mm: 1.0, time_s: 0.0 };
    let entries = [at([-30.0, 5.0, 82.0]), at([f64::NAN, 0.0, 0.0]), at([-30.0, 8.0, 82.0])];
    let inputs = DepositInput::for_session(&entries, 0.1, 2, 40.0);
    let (with, deposit) = patient.with_session_deposits(&inputs).expect("deposit");
    assert_eq!((deposit.dots.len(), deposit.skipped), (2, 1));
    assert_eq!(patient.truth_prior_dots().len(), before, "the original is untouched");
    let added = &with.truth_prior_dots()[before..];
    assert_eq!(added.len(), 2);
    for d in added {
        assert_eq!((d.weeks_healed, d.session), (0.0, 2));
        assert_eq!(d.srgb, patient.spec().skin_response.ink_srgb);
        // Projected onto the head surface.
        assert!(patient.ellipsoid().implicit(&Point3::from(d.position_head_mm)).abs() < 1e-6);
    }
}

#[test]
fn listed_prior_dots_take_their_given_look() {
    let mut spec = default_spec();
    spec.prior_dots.push(PriorDotSpec {
        position_head_mm: [-37.0, 0.0, 80.0],
        session: 2,
        weeks_healed: 3.0,
        diameter_mm: Some(0.5),
        darkness: Some(0.4),
        dwell_s: 0.1,
        depth_mm: 1.0,
        dilution_pct: 30.0,
    });
    spec.validate().expect("valid");
    let p = SyntheticPatient::generate(&spec);
    let d = p.truth_prior_dots()[0];
    assert_eq!((d.diameter_mm, d.darkness, d.session, d.weeks_healed), (0.5, 0.4, 2, 3.0));
    assert!(p.ellipsoid().implicit(&Point3::from(d.position_head_mm)).abs() < 1e-9, "projected onto the skin");
    // Healing on from the given look keeps fading it.
    let mut later = p.clone();
    // (Later healing applies the full model, loss included; this dot's seeded fate keeps it.)
    assert_eq!(later.heal_prior_dots(8.0), 0);
    let h = later.truth_prior_dots()[0];
    assert!(h.darkness < 0.4 && h.darkness > 0.25, "{h:?}");
}

#[test]
fn simulated_session_dots_attach_and_heal() {
    let p = default_patient().clone();
    let up = up_direction_head(&Rig::default_sim().base_from_head_nominal());
    let centre = p.ellipsoid().point_in_direction(&up);
    let entries: Vec<smp_core::NeedleEntry> = (0..50)
        .map(|k| {
            let q = p.ellipsoid().point_in_direction(&(centre.coords + Vector3::new(k as f64 * 1.1, 0.0, 0.0)));
            smp_core::NeedleEntry { base_mm: [0.0; 3], head_mm: [q.x, q.y, q.z], depth_mm: 1.0, time_s: k as f64 }
        })
        .collect();
    let fresh = p.deposit(&DepositInput::for_session(&entries, 0.1, 1, 50.0));
    assert_eq!((fresh.dots.len(), fresh.merged.len()), (50, 0));
    let mut p = p.with_prior_dots(fresh.dots.clone()).expect("attach");
    assert_eq!(p.truth_prior_dots_head().len(), 50);
    let lost = p.heal_prior_dots(4.0);
    assert_eq!(p.truth_prior_dots().len() + lost, 50);
    assert_eq!(p.truth_prior_dots_head().len(), p.truth_prior_dots().len());
    assert!(p.truth_prior_dots().iter().all(|d| d.weeks_healed == 4.0 && d.darkness < 0.7));
    let mut bad = fresh.dots[0];
    bad.position_head_mm = [f64::NAN, 0.0, 0.0];
    let err = p.clone().with_prior_dots(vec![fresh.dots[1], bad]).expect_err("NaN position");
    assert!(matches!(&err, SpecError::Invalid { field, .. } if field == "[1].position_head_mm"), "{err}");
    assert_eq!(p.truth_prior_dots().len() + lost, 50, "nothing attached on error");
}

#[test]
fn surface_height_under_a_vertical_line() {
    let spec = default_spec();
    let p = SyntheticPatient::generate(&spec);
    let rig = Rig::default_sim();
    let bfh = rig.base_from_head_nominal();
    let c = bfh.translation.vector;
    let z = p.surface_z_base(&bfh, c.x, c.y).expect("hits the head");
    let top = bfh * p.ellipsoid().point_in_direction(&up_direction_head(&bfh));
    assert!(z > c.z + 80.0 && z <= top.z + 1e-6, "z {z}, top {}", top.z);
    let hit = bfh.inverse() * Point3::new(c.x, c.y, z);
    assert!(p.ellipsoid().implicit(&hit).abs() < 1e-9);
    assert_eq!(p.surface_z_base(&bfh, c.x + 500.0, c.y), None);
    assert_eq!(p.surface_z_base(&bfh, f64::NAN, c.y), None);
}

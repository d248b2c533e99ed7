//! Tests of the clinical presets, scar shapes and fiducials as they reach a generated patient.

use std::collections::BTreeMap;

use nalgebra::{Point3, Vector3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smp_core::geometry::Ellipsoid;
use smp_core::map::RegionKind;
use smp_core::SpecError;

use super::regions::{region_areas_cm2, RegionModel};
use super::*;

fn file(name: &str) -> PatientSpec {
    let path = format!("{}/../../sim/patients/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("patient file readable");
    PatientSpec::from_toml_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Bit-level fingerprint of the generated truth (follicles, prior dots).
fn fingerprint(p: &SyntheticPatient) -> u64 {
    let mut h: u64 = 0;
    for f in p.truth_follicles() {
        for v in f.position_head_mm.iter().chain(&f.normal_head).chain([&f.diameter_mm, &f.darkness]) {
            h = h.wrapping_mul(0x100_0000_01b3).wrapping_add(v.to_bits());
        }
    }
    for d in p.truth_prior_dots() {
        for v in d.position_head_mm.iter().chain([&d.diameter_mm, &d.darkness]) {
            h = h.wrapping_mul(0x100_0000_01b3).wrapping_add(v.to_bits());
        }
    }
    h
}

/// Pinned from the code before the clinical presets existed: tests/ and the demo depend
/// on these patients bit for bit.
#[test]
fn existing_patients_are_unchanged() {
    let p = SyntheticPatient::generate(&file("default.toml"));
    let f = p.truth_follicles();
    assert_eq!(f.len(), 26535);
    assert_eq!(f[0].position_head_mm, [0.3011990909851754, -1.2437406316468698, 87.98896526225751]);
    assert_eq!(f[0].diameter_mm, 0.31852805937069406);
    assert_eq!(f[0].darkness, 0.8565833997276455);
    assert_eq!(f[1].position_head_mm, [0.369840757722991, -0.27820623639988035, 87.9988660349441]);
    assert_eq!(f[f.len() - 1].position_head_mm, [-84.62365896043079, 0.23131449837223544, -46.88635326156424]);
    assert_eq!(fingerprint(&p), 0xc2ff_ec21_c2fa_b81e);
    let p = SyntheticPatient::generate(&file("followup-s2.toml"));
    assert_eq!((p.truth_follicles().len(), p.truth_prior_dots().len()), (26535, 1099));
    assert_eq!(fingerprint(&p), 0x6307_8d31_1474_1b28);
    let p = SyntheticPatient::generate(&file("norwood6.toml"));
    assert_eq!(p.truth_follicles().len(), 5795);
    assert_eq!(fingerprint(&p), 0x8529_b5dc_bb78_47a2);
}

#[test]
fn every_shipped_patient_parses_generates_and_round_trips() {
    let dir = format!("{}/../../sim/patients", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("sim/patients")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 9, "{names:?}");
    for name in &names {
        let spec = file(name);
        let back = PatientSpec::from_toml_str(&spec.to_toml_string().expect("serialises")).expect("re-parses");
        assert_eq!(spec, back, "{name}");
        assert!(spec.intake.is_some(), "{name} has an [intake]");
        let p = SyntheticPatient::generate(&spec);
        assert!(p.truth_follicles().len() > 1000, "{name}: {} follicles", p.truth_follicles().len());
        assert_eq!(p.truth_fiducials().len(), spec.fiducials.len(), "{name}");
    }
}

fn minimal(extra: &str) -> String {
    format!("version = 1\nname = \"t\"\nseed = 7\n{extra}\n[head]\nsemi_axes_mm = [100.0, 80.0, 88.0]\n")
}

fn clinical(norwood: u8, fitzpatrick: u8) -> PatientSpec {
    let text = minimal(&format!("norwood = {norwood}"))
        + &format!("[skin]\nfitzpatrick = {fitzpatrick}\n[hair]\ncolor = \"black\"\ndensity_per_cm2 = 70.0\nthinning_density_per_cm2 = 18.0\n");
    PatientSpec::from_toml_str(&text).unwrap_or_else(|e| panic!("norwood {norwood}: {e}"))
}

fn areas(spec: &PatientSpec) -> BTreeMap<RegionKind, f64> {
    let ell = Ellipsoid { semi_axes_mm: spec.head.semi_axes_mm };
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(1);
    region_areas_cm2(&RegionModel::new(spec, &ell, &mut rng), &ell, &Vector3::z(), 180.0)
}

#[test]
fn bald_area_grows_with_the_norwood_stage() {
    let mut last = -1.0;
    let mut report = Vec::new();
    for stage in 1..=7u8 {
        let a = areas(&clinical(stage, 3));
        let bald = a.get(&RegionKind::Bald).copied().unwrap_or(0.0);
        let hair = a.get(&RegionKind::Hair).copied().unwrap_or(0.0);
        report.push((stage, bald.round(), hair.round()));
        assert!(bald > last, "stage {stage}: bald {bald} cm² not above {last} ({report:?})");
        last = bald;
    }
    // Stage 7 leaves a fringe only: more bald than hair-bearing scalp.
    let a = areas(&clinical(7, 3));
    let get = |r| a.get(&r).copied().unwrap_or(0.0);
    println!("areas by stage (stage, bald, hair): {report:?}; stage 7 {a:?}");
    assert!(get(RegionKind::Hair) > 80.0 && get(RegionKind::Bald) > get(RegionKind::Hair), "{a:?}");
    // The shipped files follow the same order.
    let shipped = ["norwood2-fitz1-blond.toml", "norwood5-fitz5-black.toml", "norwood7-fitz6-grey.toml"];
    let bald: Vec<f64> =
        shipped.iter().map(|n| areas(&file(n)).get(&RegionKind::Bald).copied().unwrap_or(0.0)).collect();
    assert!(bald.windows(2).all(|w| w[1] > w[0]), "{bald:?}");
}

#[test]
fn skin_lightness_falls_with_the_fitzpatrick_type() {
    let l: Vec<f64> = (1..=6).map(|k| smp_core::color::srgb_to_lab(clinical(4, k).tone.skin_srgb)[0]).collect();
    assert!(l.windows(2).all(|w| w[1] < w[0] - 5.0), "{l:?}");
    for k in 1..=6u8 {
        let t = clinical(4, k).tone;
        assert!(smp_core::color::srgb_to_lab(t.scar_srgb)[0] > smp_core::color::srgb_to_lab(t.skin_srgb)[0]);
    }
}

#[test]
fn hair_colour_sets_the_follicle_look_and_densities() {
    let blond = file("norwood2-fitz1-blond.toml");
    let black = file("norwood5-fitz5-black.toml");
    assert!(blond.follicles.darkness < black.follicles.darkness);
    assert!(blond.tone.follicle_srgb[0] > black.tone.follicle_srgb[0]);
    assert_eq!((blond.follicles.hair_per_cm2, blond.follicles.thinning_per_cm2), (80.0, 30.0));
    assert_eq!(blond.follicles.diameter_mm, 0.30, "default when neither table gives it");
}

#[test]
fn explicit_low_level_values_override_the_presets() {
    let spec = file("norwood4-fitz2-red-scar.toml");
    let preset = crate::patient_presets::norwood_preset(4).expect("stage 4").crown();
    assert_eq!(spec.crown.centre_polar_deg, 20.0);
    assert_eq!(spec.crown.bald_radii_mm, preset.bald_radii_mm);
    assert_eq!(file("norwood6-fitz4-light-brown-lab.toml").tone.mottling, 0.05);
}

#[test]
fn the_donor_strip_is_scar_and_the_polyline_scar_too() {
    let spec = file("norwood3-fitz3-brown-donor-strip.toml");
    let ScarSpec::Polyline(strip) = &spec.scars[0] else { panic!("preset resolves to a polyline") };
    let p = SyntheticPatient::generate(&spec);
    for (k, q) in strip.points_head_mm.iter().enumerate() {
        assert_eq!(p.region_at_head(&Point3::from(*q)), RegionKind::Scar, "strip point {k}");
    }
    // 5 mm above the strip's middle is the fringe again.
    let mid = Vector3::from(strip.points_head_mm[strip.points_head_mm.len() / 2]);
    let above = mid + Vector3::z() * 5.0;
    assert_ne!(p.region_at_head(&Point3::from(above)), RegionKind::Scar);
    let a = p.region_areas_cm2(&Vector3::z(), 180.0);
    // 200 mm x 4 mm = 8 cm², plus the rounded ends.
    assert!((a[&RegionKind::Scar] - 8.0).abs() < 1.0, "{a:?}");
    // No follicle grows in it.
    assert!(p.truth_follicles_head().iter().all(|f| p.region_at_head(&Point3::from(*f)) != RegionKind::Scar));

    let spec = file("norwood4-fitz2-red-scar.toml");
    let ScarSpec::Polyline(line) = &spec.scars[0] else { panic!("polyline") };
    let p = SyntheticPatient::generate(&spec);
    assert_eq!(p.region_at_head(&Point3::from(line.points_head_mm[1])), RegionKind::Scar);
    let s = p.sample_surface(&p.ellipsoid().point_in_direction(&Vector3::from(line.points_head_mm[1]).normalize()));
    assert!((s.scar_sd_mm + 1.25).abs() < 1e-6, "on the line: -half width, {s:?}");
}

#[test]
fn fiducial_corners_are_exposed_in_head_frame() {
    let p = SyntheticPatient::generate(&file("norwood3-fitz3-brown-donor-strip.toml"));
    let corners = p.truth_fiducial_corners_head();
    assert_eq!(corners.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    for (id, c) in &corners {
        let side = (Vector3::from(c[1]) - Vector3::from(c[0])).norm();
        assert!((side - 16.0).abs() < 1e-9, "marker {id}");
        for q in c {
            assert!(p.ellipsoid().implicit(&Point3::from(*q)) > 0.0, "marker {id} corner inside the head");
        }
    }
}

fn field_of(text: &str) -> (String, String) {
    match PatientSpec::from_toml_str(text) {
        Err(SpecError::Invalid { field, problem, .. }) => (field, problem),
        other => (format!("{other:?}"), String::new()),
    }
}

#[test]
fn missing_or_bad_clinical_fields_name_both_ways() {
    let hair = "[hair]\ncolor = \"brown\"\ndensity_per_cm2 = 70.0\nthinning_density_per_cm2 = 18.0\n";
    let (f, msg) = field_of(&(minimal("norwood = 3") + hair));
    assert_eq!(f, "tone.skin_srgb");
    assert!(msg.contains("fitzpatrick") && msg.contains("lab"), "{msg}");
    let (f, msg) = field_of(&(minimal("") + "[skin]\nfitzpatrick = 2\n" + hair));
    assert_eq!(f, "hairline.front_recession_deg");
    assert!(msg.contains("norwood"), "{msg}");
    let (f, _) = field_of(&(minimal("norwood = 8") + "[skin]\nfitzpatrick = 2\n" + hair));
    assert_eq!(f, "norwood");
    let (f, _) = field_of(&(minimal("norwood = 2") + "[skin]\nfitzpatrick = 7\n" + hair));
    assert_eq!(f, "skin.fitzpatrick");
    let (f, _) = field_of(&(minimal("norwood = 2") + "[skin]\nfitzpatrick = 2\nlab = [60.0, 10.0, 20.0]\n" + hair));
    assert_eq!(f, "skin");
    let (f, msg) = field_of(&(minimal("norwood = 2") + "[skin]\nfitzpatrick = 2\n[hair]\ncolor = \"brown\"\n"));
    assert_eq!(f, "follicles.hair_per_cm2");
    assert!(msg.contains("density_per_cm2"), "{msg}");
    let ok = minimal("norwood = 2") + "[skin]\nfitzpatrick = 2\n" + hair;
    PatientSpec::from_toml_str(&ok).expect("complete clinical spec");
    let (f, _) = field_of(&format!("{ok}[[scars]]\npreset = \"donor_strip\"\nhalf_width_mm = 2.0\n"));
    assert_eq!(f, "scars[0]");
    let (f, _) = field_of(&format!("{ok}[[scars]]\npoints_head_mm = [[0.0, 0.0, 88.0], [-10.0, 0.0, 87.0]]\n"));
    assert_eq!(f, "scars[0].width_mm");
    let (f, _) =
        field_of(&format!("{ok}[[scars]]\npoints_head_mm = [[0.0, 0.0, 88.0], [0.0, 0.0, 40.0]]\nwidth_mm = 2.0\n"));
    assert_eq!(f, "scars[0].points_head_mm[1]");
    let marker = "[[fiducials]]\nid = 4\nsize_mm = 15.0\nazimuth_deg = 0.0\nheight_mm = 20.0\n";
    let (f, _) = field_of(&format!("{ok}{marker}{marker}"));
    assert_eq!(f, "fiducials[1].id");
}

//! Skin tone (CIELAB, ΔE2000 against the patient's true skin colour) on random patients, the
//! same scan as `smp eval vision --random 5 --seed 1000` (overview, serpentine flange tiles at
//! 35° maximum tilt, labels `tile000..`, render seed = patient seed), so the figures match the
//! CLI's `skin_delta_e2000`. Norwood 2 patients show only hair-bearing skin: the root shadow
//! must be divided out for the tone to come within the target of 3.
//!
//! `cargo test -p smp-vision --test on_sim tone_on_sim:: -- --ignored --nocapture` prints the figures.

use smp_core::color::{delta_e2000, srgb_to_lab};
use smp_core::rig::Rig;
use smp_sim::patient::SyntheticPatient;
use smp_sim::random_patient::random_patient_spec;
use smp_sim::render::{render_flange_view, render_overview, RenderConfig};
use smp_vision::{build_map, find_scalp, scan_positions, VisionConfig};

/// ΔE2000 of the scanned skin tone for the random patient of `seed`, with its name.
fn skin_delta_e(seed: u64) -> (String, f64, [f64; 3], [f64; 3]) {
    skin_delta_e_with_shadow(seed, None)
}

/// As [`skin_delta_e`], with the patient's root shadow (`tone.hair_shadow`) replaced.
fn skin_delta_e_with_shadow(seed: u64, hair_shadow: Option<f64>) -> (String, f64, [f64; 3], [f64; 3]) {
    let mut spec = random_patient_spec(seed).expect("random patient");
    if let Some(s) = hair_shadow {
        spec.tone.hair_shadow = s;
    }
    let patient = SyntheticPatient::generate(&spec);
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let render = RenderConfig { seed: spec.seed, ..RenderConfig::default() };
    let cfg = VisionConfig::default();
    let overview = render_overview(&patient, &rig, &base_from_head, &render);
    let outline = find_scalp(&overview, &cfg).expect("head in the overview");
    let positions = scan_positions(&rig, &outline, 35.0, &cfg);
    let tiles: Vec<_> = positions
        .iter()
        .enumerate()
        .map(|(i, m)| render_flange_view(&patient, &rig, &base_from_head, *m, &format!("tile{i:03}"), &render))
        .collect();
    let out = build_map(&tiles, Some(&overview), &base_from_head, &cfg).expect("map");
    let truth = srgb_to_lab(spec.tone.skin_srgb);
    let found = out.map.skin.expect("skin tone").lab;
    (spec.name.clone(), delta_e2000(found, truth), found, truth)
}

/// The five patients of `smp eval vision --random 5 --seed 1000` (two of them Norwood 2).
#[test]
#[ignore = "renders five full scans (~minutes in debug); run with --ignored to measure"]
fn skin_tone_within_target_on_the_eval_patients() {
    let mut worst: f64 = 0.0;
    for seed in 1000..1005 {
        let (name, de, found, truth) = skin_delta_e(seed);
        eprintln!(
            "{name}: ΔE2000 {de:.2} (found L {:.1} a {:.1} b {:.1}, true L {:.1} a {:.1} b {:.1})",
            found[0], found[1], found[2], truth[0], truth[1], truth[2]
        );
        worst = worst.max(de);
    }
    eprintln!("worst ΔE2000 {worst:.2}");
    assert!(worst <= 3.0, "skin ΔE2000 {worst:.2} above the target of 3");
}

/// A Norwood 2 patient (only hair-bearing skin in the scan).
#[test]
#[ignore = "renders a full scan; run with --ignored"]
fn skin_tone_of_a_hair_bearing_only_scan() {
    let (name, de, found, truth) = skin_delta_e(1001);
    eprintln!("{name}: ΔE2000 {de:.2} found {found:?} true {truth:?}");
    assert!(de <= 3.0, "{name}: skin ΔE2000 {de:.2} above 3");
}

/// How much the tone depends on the root-shadow prior: patients whose roots darken the skin by
/// 10 % or 30 % instead of the model's 20 %. The Norwood 2 scan (hair-bearing skin only) must
/// assume the model's value; the Norwood 3 scan measures it from its thinning against its
/// hair-bearing skin.
#[test]
#[ignore = "renders two full scans; run with --ignored to measure"]
fn sensitivity_to_the_patients_root_shadow() {
    for seed in [1001, 1000] {
        for shadow in [0.1, 0.3] {
            let (name, de, found, truth) = skin_delta_e_with_shadow(seed, Some(shadow));
            eprintln!("{name} with hair_shadow {shadow}: ΔE2000 {de:.2} found {found:.1?} true {truth:.1?}");
        }
    }
}

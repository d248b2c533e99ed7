//! The two-sided follicle detector on single rendered tiles: light stubble is found on dark
//! skin, and on dark hair the light pass adds nothing (the skin between dense dark follicles
//! is lighter than the top-hat's opening but not lighter than the skin around it).

use smp_core::image::CameraView;
use smp_core::rig::Rig;
use smp_sim::patient::{up_direction_head, SyntheticPatient};
use smp_sim::random_patient::random_patient_spec;
use smp_sim::render::{render_flange_view, RenderConfig};
use smp_vision::follicles::{detect_dots_with, FolliclePolarity, Polarity};
use smp_vision::VisionConfig;

/// A flange tile over the top of random patient `seed`'s head.
fn crown_tile(seed: u64) -> (CameraView, f64) {
    let spec = match random_patient_spec(seed) {
        Ok(s) => s,
        Err(e) => panic!("random patient {seed}: {e}"),
    };
    let rig = Rig::default_sim();
    let bfh = rig.base_from_head_nominal();
    let patient = SyntheticPatient::generate(&spec);
    let up = up_direction_head(&bfh);
    let top = bfh * patient.ellipsoid().point_in_direction(&up);
    // Toward the front of the crown, where a Norwood 2-3 patient still has hair.
    let m = rig.machine_for_camera_over_xyz([top.x + 25.0, top.y, top.z]);
    let render = RenderConfig { seed, ..RenderConfig::default() };
    let view = render_flange_view(&patient, &rig, &bfh, m, "crown", &render);
    let d_px = VisionConfig::default().follicle_diameter_mm * view.intrinsics.fx_px / rig.flange_camera.standoff_mm;
    (view, d_px)
}

fn count(view: &CameraView, d_px: f64, p: FolliclePolarity) -> (usize, usize, bool) {
    let det = detect_dots_with(&view.image.to_gray(), d_px, &VisionConfig::default(), p, &view.label).expect("detect");
    let light = det.dots.iter().filter(|d| d.polarity == Polarity::Light).count();
    (det.dots.len() - light, light, det.light_kept)
}

#[test]
fn dark_hair_gives_no_light_detections() {
    // Seeds 1000 (brown on Fitzpatrick II) and 1004 (brown on IV).
    for seed in [1000, 1004] {
        let (view, d_px) = crown_tile(seed);
        let (dark, light, _) = count(&view, d_px, FolliclePolarity::Both);
        println!("seed {seed}: {dark} dark, {light} light");
        assert!(dark > 100, "seed {seed}: only {dark} dark follicles in the tile");
        assert!(light * 100 <= dark, "seed {seed}: {light} light detections for {dark} dark");
        let (_, _, kept) = count(&view, d_px, FolliclePolarity::Auto);
        assert!(!kept, "seed {seed}: auto kept the light pass on dark hair");
    }
}

#[test]
fn blond_on_dark_skin_is_detected_light() {
    let (view, d_px) = crown_tile(1003);
    let (dark, light, kept) = count(&view, d_px, FolliclePolarity::Auto);
    println!("seed 1003: {dark} dark, {light} light");
    assert!(kept);
    assert!(light > 100, "{light} light follicles");
    assert!(dark * 50 <= light, "{dark} dark detections for {light} light");
    let (dark_only, _, _) = count(&view, d_px, FolliclePolarity::Dark);
    assert!(dark_only * 10 < light, "the dark-only detector should miss blond stubble: {dark_only}");
}

/// A 3x magnified close-up (2400 x 1800, follicle ~22 px): the detector works on a 2x
/// downsampled copy, running both polarities on two threads. Its detections match the
/// full-resolution single-threaded pass and the truth.
#[test]
fn downsampled_threaded_detection_matches_the_full_resolution_pass() {
    // Random patient 1004: Norwood 2, brown hair, dense over the front of the crown.
    let spec = match random_patient_spec(1004) {
        Ok(s) => s,
        Err(e) => panic!("random patient 1004: {e}"),
    };
    let rig = Rig::default_sim();
    let bfh = rig.base_from_head_nominal();
    let patient = SyntheticPatient::generate(&spec);
    let up = up_direction_head(&bfh);
    let top = bfh * patient.ellipsoid().point_in_direction(&up);
    let m = rig.machine_for_camera_over_xyz([top.x + 25.0, top.y, top.z]);
    let mut big = rig.flange_camera.intrinsics;
    (big.width_px, big.height_px) = (2400, 1800);
    (big.fx_px, big.fy_px, big.cx_px, big.cy_px) = (big.fx_px * 3.0, big.fy_px * 3.0, 1200.0, 900.0);
    let view = smp_sim::render::render_view(
        &patient,
        &big,
        &rig.base_from_flange_camera_xyz(m),
        &bfh,
        "x3",
        &RenderConfig::default(),
    );
    let gray = view.image.to_gray();
    let cfg = VisionConfig::default();
    let d_px = cfg.follicle_diameter_mm * big.fx_px / rig.flange_camera.standoff_mm;
    let fast = detect_dots_with(&gray, d_px, &cfg, FolliclePolarity::Both, "x3").expect("detect");
    // The same polarities one at a time (no threads), and at full resolution.
    let dark = detect_dots_with(&gray, d_px, &cfg, FolliclePolarity::Dark, "x3").expect("detect");
    let light = detect_dots_with(&gray, d_px, &cfg, FolliclePolarity::Light, "x3").expect("detect");
    let mut sequential: Vec<[f64; 2]> = dark.dots.iter().chain(&light.dots).map(|d| d.pixel).collect();
    sequential.sort_by(|a, b| a[1].total_cmp(&b[1]).then(a[0].total_cmp(&b[0])));
    let threaded: Vec<[f64; 2]> = fast.dots.iter().map(|d| d.pixel).collect();
    assert_eq!(threaded, sequential, "threaded and sequential passes differ");

    let full_cfg = VisionConfig { detect_max_diameter_px: 1000.0, ..cfg.clone() };
    let full = detect_dots_with(&gray, d_px, &full_cfg, FolliclePolarity::Both, "x3").expect("detect");
    assert!(full.dots.len() > 100, "{} follicles in the close-up", full.dots.len());
    let (mut matched, mut sq) = (0usize, 0.0);
    for d in &full.dots {
        let best = fast
            .dots
            .iter()
            .map(|e| (e.pixel[0] - d.pixel[0]).hypot(e.pixel[1] - d.pixel[1]))
            .fold(f64::INFINITY, f64::min);
        if best < 0.25 * d_px {
            matched += 1;
            sq += best * best;
        }
    }
    let rms_px = (sq / matched.max(1) as f64).sqrt();
    let mm_per_px = rig.flange_camera.standoff_mm / big.fx_px;
    println!(
        "full resolution {} dots, downsampled {} dots, {matched} matched, rms difference {rms_px:.3} px = {:.4} mm",
        full.dots.len(),
        fast.dots.len(),
        rms_px * mm_per_px
    );
    assert!(matched as f64 >= 0.99 * full.dots.len() as f64, "{matched} of {} matched", full.dots.len());
    assert!(fast.dots.len() as f64 <= 1.01 * full.dots.len() as f64 + 1.0);
    assert!(rms_px * mm_per_px < 0.01, "downsampling moved centroids by {rms_px:.3} px rms");
}

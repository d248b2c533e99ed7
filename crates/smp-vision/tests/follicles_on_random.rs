//! Follicle detection on patients that are not in the repository, scored as `smp eval
//! vision --random` scores them: the patient is rendered through the default rig (scan up
//! to 35° tilt, render seed = patient seed), vision maps it from the pixels alone, and the
//! natural follicles of the map are matched to the truth within 0.3 mm.
//!
//! The two patients below are the ones issue 4's measurement on seeds 1000-1004 failed:
//! blond stubble on Fitzpatrick VI skin (lighter than the skin, which a dark-dot detector
//! cannot see) and a near-bald Norwood 7 crown.
//!
//! The Norwood 7 patient's misses are not the detector's: every truth follicle the scan
//! "sees" there is on the fringe at the silhouette of a tile, 76-90° from the view direction
//! (the crown itself is bald), where a 0.3 mm follicle is a sliver no detector finds and no
//! depth frame places. The figures are printed both as `smp eval vision` counts them and
//! counting only follicles some tile sees within [`MAX_VIEW_DEG`] of their normal.
//!
//! `cargo test -p smp-vision --release --test on_sim follicles_on_random:: -- --nocapture` prints the
//! figures; `-- --ignored --nocapture random_patients_report` prints seeds 1000-1004.

use nalgebra::{Isometry3, Point3};
use smp_core::eval::{kind_score, KindScore};
use smp_core::image::CameraView;
use smp_core::map::{FollicleKind, RegionKind, ScalpMap};
use smp_core::rig::Rig;
use smp_sim::patient::{PatientSpec, SyntheticPatient};
use smp_sim::random_patient::random_patient_spec;
use smp_sim::render::{render_flange_view, render_overview, RenderConfig};
use smp_vision::{build_map, find_scalp, scan_positions, VisionConfig};

/// The match radius of issue 4's follicle figures.
const MATCH_RADIUS_MM: f64 = 0.3;

struct Figures {
    name: String,
    truth: usize,
    score: KindScore,
    /// The same, counting only truth follicles some tile sees within
    /// [`MAX_VIEW_DEG`] of their normal (beyond, a 0.3 mm follicle is a sliver).
    truth_visible: usize,
    score_visible: KindScore,
}

/// Steepest viewing angle (from the skin normal) at which a follicle counts as visible in
/// the `score_visible` figures.
const MAX_VIEW_DEG: f64 = 70.0;

/// Best (smallest) angle between a follicle's normal and the direction to a tile camera that
/// images it, degrees.
fn best_view_deg(p: &[f64; 3], n: &[f64; 3], tiles: &[CameraView], base_from_head: &Isometry3<f64>) -> f64 {
    tiles
        .iter()
        .filter_map(|t| {
            let head_from_camera = base_from_head.inverse() * t.base_from_camera;
            let px = t.intrinsics.project(&(head_from_camera.inverse() * Point3::from(*p)))?;
            let inside = px.x >= 3.0
                && px.y >= 3.0
                && px.x <= t.intrinsics.width_px as f64 - 4.0
                && px.y <= t.intrinsics.height_px as f64 - 4.0;
            let to_cam = (head_from_camera.translation.vector - nalgebra::Vector3::from(*p)).normalize();
            inside.then(|| nalgebra::Vector3::from(*n).dot(&to_cam).clamp(-1.0, 1.0).acos().to_degrees())
        })
        .fold(f64::INFINITY, f64::min)
}

/// Truth the scan could have seen, exactly as `smp eval vision` counts it: inside at least
/// one tile image (3 px margin) and over a mapped cell.
fn truth_in_view(
    truth_head: &[[f64; 3]],
    tiles: &[CameraView],
    map: &ScalpMap,
    base_from_head: &Isometry3<f64>,
) -> Vec<[f64; 3]> {
    let patch_from_head = map.surface.head_from_patch.inverse();
    truth_head
        .iter()
        .copied()
        .filter(|p| {
            let p_head = Point3::from(*p);
            let p_patch = patch_from_head * p_head;
            if map.regions.code_at(p_patch.x, p_patch.y) == RegionKind::Outside.code() {
                return false;
            }
            let p_base = base_from_head * p_head;
            tiles.iter().any(|t| {
                let p_cam = t.base_from_camera.inverse() * p_base;
                t.intrinsics.project(&p_cam).is_some_and(|px| {
                    px.x >= 3.0
                        && px.y >= 3.0
                        && px.x <= t.intrinsics.width_px as f64 - 4.0
                        && px.y <= t.intrinsics.height_px as f64 - 4.0
                })
            })
        })
        .collect()
}

fn evaluate(spec: &PatientSpec) -> Figures {
    evaluate_with(spec, &VisionConfig::default())
}

fn evaluate_with(spec: &PatientSpec, cfg: &VisionConfig) -> Figures {
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let patient = SyntheticPatient::generate(spec);
    let render = RenderConfig { seed: spec.seed, ..RenderConfig::default() };
    let overview = render_overview(&patient, &rig, &base_from_head, &render);
    let outline = find_scalp(&overview, cfg).expect("head found in the overview");
    let positions = scan_positions(&rig, &outline, 35.0, cfg);
    assert!(!positions.is_empty(), "no scan positions");
    let tiles: Vec<CameraView> = positions
        .iter()
        .enumerate()
        .map(|(i, m)| render_flange_view(&patient, &rig, &base_from_head, *m, &format!("tile{i:03}"), &render))
        .collect();
    let out = build_map(&tiles, Some(&overview), &base_from_head, cfg).expect("map");
    let map = &out.map;
    let found: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let kinds: Vec<FollicleKind> = map.follicles.iter().map(|f| f.kind).collect();
    let truth = truth_in_view(patient.truth_follicles_head(), &tiles, map, &base_from_head);
    let dots = truth_in_view(patient.truth_prior_dots_head(), &tiles, map, &base_from_head);
    let score = kind_score(&found, &kinds, &truth, &dots, MATCH_RADIUS_MM);
    let in_view: std::collections::HashSet<[u64; 3]> = truth.iter().map(|p| p.map(f64::to_bits)).collect();
    let visible: Vec<[f64; 3]> = patient
        .truth_follicles()
        .iter()
        .filter(|f| in_view.contains(&f.position_head_mm.map(f64::to_bits)))
        .filter(|f| best_view_deg(&f.position_head_mm, &f.normal_head, &tiles, &base_from_head) <= MAX_VIEW_DEG)
        .map(|f| f.position_head_mm)
        .collect();
    // Detections of follicles seen only at grazing angles are neither credited nor blamed.
    let grazing: Vec<[f64; 3]> = truth.iter().filter(|p| !visible.contains(p)).copied().collect();
    let found_fair: Vec<usize> = (0..found.len())
        .filter(|&i| {
            let q = found[i];
            !grazing.iter().any(|g| {
                (g[0] - q[0]).powi(2) + (g[1] - q[1]).powi(2) + (g[2] - q[2]).powi(2)
                    < MATCH_RADIUS_MM * MATCH_RADIUS_MM
            })
        })
        .collect();
    let ff: Vec<[f64; 3]> = found_fair.iter().map(|&i| found[i]).collect();
    let fk: Vec<FollicleKind> = found_fair.iter().map(|&i| kinds[i]).collect();
    let score_visible = kind_score(&ff, &fk, &visible, &dots, MATCH_RADIUS_MM);
    Figures { name: spec.name.clone(), truth: truth.len(), score, truth_visible: visible.len(), score_visible }
}

fn print(f: &Figures) {
    let s = &f.score;
    println!(
        "{}: truth {} follicles + {} dots; natural F1 {:.4} (P {:.4} R {:.4}, found {}) loc {:.4} mm; dots found {}; \
         dot_vs_follicle {:.4}",
        f.name,
        f.truth,
        s.smp_dot.truth,
        s.natural.f1,
        s.natural.precision,
        s.natural.recall,
        s.natural.found,
        s.natural.loc_rms_mm,
        s.smp_dot.found,
        s.dot_vs_follicle_accuracy
    );
    let v = &f.score_visible;
    println!(
        "    seen within {MAX_VIEW_DEG}° of the normal: truth {}; natural F1 {:.4} (P {:.4} R {:.4}) loc {:.4} mm",
        f.truth_visible, v.natural.f1, v.natural.precision, v.natural.recall, v.natural.loc_rms_mm
    );
}

fn random(seed: u64) -> PatientSpec {
    match random_patient_spec(seed) {
        Ok(s) => s,
        Err(e) => panic!("random patient {seed}: {e}"),
    }
}

/// Issue 4's figures on the five random patients of `smp eval vision --random 5 --seed 1000`.
#[test]
#[ignore]
fn random_patients_report() {
    // POLARITY=both|dark|light|auto overrides the detector's polarity choice.
    let mut cfg = VisionConfig::default();
    if let Ok(p) = std::env::var("POLARITY") {
        cfg.follicle_polarity = match p.as_str() {
            "both" => smp_vision::FolliclePolarity::Both,
            "dark" => smp_vision::FolliclePolarity::Dark,
            "light" => smp_vision::FolliclePolarity::Light,
            _ => smp_vision::FolliclePolarity::Auto,
        };
    }
    // FIRST_SEED and COUNT override the patients (default: 1000, 5).
    let first: u64 = std::env::var("FIRST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let count: u64 = std::env::var("COUNT").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    for seed in first..first + count {
        let f = evaluate_with(&random(seed), &cfg);
        print(&f);
    }
}

/// Blond stubble on Fitzpatrick VI skin is lighter than the skin: the light pass finds it.
#[test]
fn blond_stubble_on_fitzpatrick_vi_is_found() {
    let spec = random(1003);
    assert!(
        spec.name.contains("fitz6-blond"),
        "seed 1003 is no longer the blond Fitzpatrick VI patient: {}",
        spec.name
    );
    let f = evaluate(&spec);
    print(&f);
    let s = &f.score.natural;
    assert!(f.truth > 5000, "{} truth follicles", f.truth);
    assert!(s.f1 >= 0.97, "natural F1 {:.4}", s.f1);
    assert!(s.loc_rms_mm <= 0.05, "loc {:.4} mm", s.loc_rms_mm);
    // No gap between blond follicles is reported as a (dark) pigment dot.
    assert!(f.score.smp_dot.found <= 5, "{} SMP dots on a first-session patient", f.score.smp_dot.found);
}

/// The near-bald Norwood 7 crown: nothing the tiles see face-on is missed, and the fringe
/// seen at grazing angles yields no flood of false follicles.
#[test]
fn norwood_7_crown_has_no_visible_misses() {
    let spec = random(1002);
    assert!(spec.name.contains("norwood7"), "seed 1002 is no longer the Norwood 7 patient: {}", spec.name);
    let f = evaluate(&spec);
    print(&f);
    assert!(f.truth > 0, "the fringe at the tiles' silhouette counts as in view");
    assert_eq!(f.truth_visible, 0, "follicles seen face-on on a Norwood 7 crown");
    assert!(f.score.natural.found <= 3, "{} natural follicles on a bald crown", f.score.natural.found);
}

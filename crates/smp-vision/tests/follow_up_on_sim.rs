//! Follow-up scans in the simulator: patients are rendered through the default rig's
//! cameras, vision maps them from the pixels alone, and every detection's kind (natural
//! follicle or earlier SMP dot) is scored against the simulator's truth with
//! [`smp_core::eval::kind_score`] (the `dot_vs_follicle_accuracy` of `smp eval vision`).
//!
//! Truth counts as in tests/vision_on_sim.rs: items (follicles and dots) that face and
//! project inside at least one tile, over a map cell that is not `Outside`.
//!
//! `cargo test -p smp-vision --release --test on_sim follow_up_on_sim:: -- --nocapture` prints the
//! figures.

use std::time::Instant;

use nalgebra::{Point3, Vector3};
use smp_core::eval::{kind_score, KindScore};
use smp_core::image::CameraView;
use smp_core::map::{FollicleKind, RegionKind};
use smp_core::rig::Rig;
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::render::{render_flange_view, render_overview, RenderConfig};
use smp_vision::{build_map, find_scalp, scan_positions, MapOutput, VisionConfig};

const FOLLOWUP_TOML: &str = include_str!("../../../sim/patients/followup-s2.toml");

struct Run {
    patient: SyntheticPatient,
    tiles: Vec<CameraView>,
    out: MapOutput,
    render_s: f64,
}

fn run(patient: SyntheticPatient, render: &RenderConfig) -> Run {
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let cfg = VisionConfig::default();
    let t0 = Instant::now();
    let overview = render_overview(&patient, &rig, &base_from_head, render);
    let outline = find_scalp(&overview, &cfg).expect("head found in the overview");
    let positions = scan_positions(&rig, &outline, 25.0, &cfg);
    assert!(!positions.is_empty(), "no scan positions");
    let tiles: Vec<CameraView> = positions
        .iter()
        .enumerate()
        .map(|(i, m)| render_flange_view(&patient, &rig, &base_from_head, *m, &format!("flange-{i:02}"), render))
        .collect();
    let render_s = t0.elapsed().as_secs_f64();
    let out = build_map(&tiles, Some(&overview), &base_from_head, &cfg).expect("map");
    Run { patient, tiles, out, render_s }
}

/// Truth positions vision could have seen: facing and inside a tile, over a mapped cell.
fn in_scan(run: &Run, items: impl Iterator<Item = ([f64; 3], [f64; 3])>) -> Vec<[f64; 3]> {
    let base_from_head = Rig::default_sim().base_from_head_nominal();
    let map = &run.out.map;
    let patch_from_head = map.surface.head_from_patch.inverse();
    items
        .filter(|(pos, normal)| {
            let p = Point3::from(*pos);
            let n = Vector3::from(*normal);
            let imaged = run.tiles.iter().any(|t| {
                let head_from_camera = base_from_head.inverse() * t.base_from_camera;
                let cam = Point3::from(head_from_camera.translation.vector);
                if n.dot(&(cam - p)) <= 0.0 {
                    return false;
                }
                let (w, h) = (t.intrinsics.width_px as f64, t.intrinsics.height_px as f64);
                t.intrinsics
                    .project(&(head_from_camera.inverse() * p))
                    .is_some_and(|px| px.x >= 0.0 && px.y >= 0.0 && px.x <= w - 1.0 && px.y <= h - 1.0)
            });
            let q = patch_from_head * p;
            imaged && map.regions.code_at(q.x, q.y) != RegionKind::Outside.code()
        })
        .map(|(pos, _)| pos)
        .collect()
}

fn score(run: &Run) -> KindScore {
    let follicles = in_scan(run, run.patient.truth_follicles().iter().map(|f| (f.position_head_mm, f.normal_head)));
    let ell = *run.patient.ellipsoid();
    let dots = in_scan(
        run,
        run.patient.truth_prior_dots().iter().map(|d| {
            let n = ell.normal(&Point3::from(d.position_head_mm));
            (d.position_head_mm, [n.x, n.y, n.z])
        }),
    );
    let found: Vec<[f64; 3]> = run.out.map.follicles.iter().map(|f| f.position()).collect();
    let kinds: Vec<FollicleKind> = run.out.map.follicles.iter().map(|f| f.kind).collect();
    kind_score(&found, &kinds, &follicles, &dots, 0.3)
}

fn print(label: &str, run: &Run, s: &KindScore) {
    println!(
        "{label}: {} tiles rendered in {:.2} s; truth {} follicles + {} dots; found {} ({} natural, {} dots)",
        run.tiles.len(),
        run.render_s,
        s.natural.truth,
        s.smp_dot.truth,
        s.union.found,
        s.natural.found,
        s.smp_dot.found
    );
    println!(
        "  union F1 {:.4} (P {:.4} R {:.4})  natural F1 {:.4}  dot F1 {:.4}  dot_vs_follicle_accuracy {:.4}  (follicles right {}/{}, dots right {}/{})",
        s.union.f1,
        s.union.precision,
        s.union.recall,
        s.natural.f1,
        s.smp_dot.f1,
        s.dot_vs_follicle_accuracy,
        s.correct_natural,
        s.matched_natural,
        s.correct_smp_dot,
        s.matched_smp_dot
    );
}

#[test]
fn follow_up_scan_tells_earlier_dots_from_follicles() {
    let spec = PatientSpec::from_toml_str(FOLLOWUP_TOML).expect("follow-up patient");
    let run = run(SyntheticPatient::generate(&spec), &RenderConfig::default());
    let s = score(&run);
    print("follow-up (session 1, 6 weeks healed)", &run, &s);
    assert!(s.smp_dot.truth >= 300, "the scan should image a few hundred earlier dots, got {}", s.smp_dot.truth);
    assert!(s.natural.truth >= 1000, "and over a thousand follicles, got {}", s.natural.truth);
    assert!(s.union.f1 >= 0.9, "union F1 {:.3}", s.union.f1);
    assert!(s.dot_vs_follicle_accuracy >= 0.95, "dot_vs_follicle_accuracy {:.3}", s.dot_vs_follicle_accuracy);
    // Earlier dots are not hair: the treated crown stays bald / thinning in the region map.
    let map = &run.out.map;
    let patch_from_head = map.surface.head_from_patch.inverse();
    let c = &spec.crown;
    let crown = run
        .patient
        .ellipsoid()
        .point_in_direction(&smp_sim::patient::direction_from_angles_deg(c.centre_polar_deg, c.centre_azimuth_deg));
    let q = patch_from_head * crown;
    assert_eq!(map.regions.code_at(q.x, q.y), RegionKind::Bald.code(), "crown centre");
}

#[test]
fn first_session_scan_keeps_follicles_natural() {
    let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient");
    let run = run(SyntheticPatient::generate(&spec), &RenderConfig::default());
    let s = score(&run);
    print("default patient (no earlier dots)", &run, &s);
    assert_eq!(s.smp_dot.truth, 0);
    assert!(s.natural.f1 >= 0.95, "natural-follicle F1 {:.3}", s.natural.f1);
    assert!(s.dot_vs_follicle_accuracy >= 0.98, "follicles called dots: {:.3}", s.dot_vs_follicle_accuracy);
}

/// A follow-up patient with three times the default sensor noise.
#[test]
fn classification_survives_sensor_noise() {
    let spec = PatientSpec::from_toml_str(FOLLOWUP_TOML).expect("follow-up patient");
    let render = RenderConfig { seed: 99, noise_sigma_levels: 6.0, ..RenderConfig::default() };
    let run = run(SyntheticPatient::generate(&spec), &render);
    let s = score(&run);
    print("follow-up, noise 6 levels", &run, &s);
    assert!(s.union.f1 >= 0.9, "union F1 {:.3}", s.union.f1);
    assert!(s.dot_vs_follicle_accuracy >= 0.9, "dot_vs_follicle_accuracy {:.3}", s.dot_vs_follicle_accuracy);
}

/// Which features carry the classification: the follow-up scan re-mapped with one feature
/// at a time. Run by hand: `cargo test -p smp-vision --release --test on_sim follow_up_on_sim:: --
/// --ignored --nocapture feature_ablation`.
#[test]
#[ignore]
fn feature_ablation() {
    let spec = PatientSpec::from_toml_str(FOLLOWUP_TOML).expect("follow-up patient");
    let mut r = run(SyntheticPatient::generate(&spec), &RenderConfig::default());
    let base_from_head = Rig::default_sim().base_from_head_nominal();
    let d = smp_vision::DotClassifier::default();
    let only = |b: f64, e: f64, s: f64| smp_vision::DotClassifier {
        blue_red_weight: b,
        edge_weight: e,
        diameter_weight: s,
        ..d.clone()
    };
    for (label, c) in [
        ("all features", d.clone()),
        ("hue only", only(1.0, 0.0, 0.0)),
        ("edge only", only(0.0, 1.0, 0.0)),
        ("size only", only(0.0, 0.0, 1.0)),
        ("edge + size", only(0.0, 1.0, 0.5)),
    ] {
        let cfg = VisionConfig { dot_classifier: c, ..VisionConfig::default() };
        let t0 = Instant::now();
        r.out = build_map(&r.tiles, None, &base_from_head, &cfg).expect("map");
        let s = score(&r);
        println!(
            "{label:>14}: dot_vs_follicle_accuracy {:.4} (follicles right {}/{}, dots right {}/{}), build_map {:.2} s",
            s.dot_vs_follicle_accuracy,
            s.correct_natural,
            s.matched_natural,
            s.correct_smp_dot,
            s.matched_smp_dot,
            t0.elapsed().as_secs_f64()
        );
    }
    // Feature ranges per true kind, from the owned detections of every tile.
    let camera_from_head: Vec<_> = r.tiles.iter().map(|t| t.base_from_camera.inverse() * base_from_head).collect();
    let mut stats: std::collections::BTreeMap<&str, Vec<[f64; 4]>> = Default::default();
    for (ti, td) in r.out.tile_detections.iter().enumerate() {
        let t = &r.tiles[ti];
        let near = |p: [f64; 3], px: [f64; 2]| {
            t.intrinsics
                .project(&(camera_from_head[ti] * Point3::from(p)))
                .is_some_and(|q| (q.x - px[0]).hypot(q.y - px[1]) < 3.0)
        };
        for (k, px) in td.pixels.iter().enumerate() {
            let f = td.features[k];
            let row = [
                f.blue_red_absorbance.unwrap_or(f64::NAN),
                f.edge_sigma_mm.unwrap_or(f64::NAN),
                f.diameter_mm,
                f.elongation,
            ];
            if r.patient.truth_prior_dots().iter().any(|d| near(d.position_head_mm, *px)) {
                stats.entry("dot").or_default().push(row);
            } else if r.patient.truth_follicles().iter().any(|f| near(f.position_head_mm, *px)) {
                stats.entry("follicle").or_default().push(row);
            }
        }
    }
    for (kind, rows) in &stats {
        for (i, name) in ["blue/red", "edge sigma mm", "diameter mm", "elongation"].iter().enumerate() {
            let mut v: Vec<f64> = rows.iter().map(|r| r[i]).filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            let q = |p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
            println!(
                "{kind:>9} {name:>14}: n {:5}  min {:.3}  1% {:.3}  50% {:.3}  99% {:.3}  max {:.3}",
                v.len(),
                q(0.0),
                q(0.01),
                q(0.5),
                q(0.99),
                q(1.0)
            );
        }
    }
}

/// The follow-up patient with other skin and hair colours, where hue alone misleads (light
/// hair on warm skin absorbs blue less than red, as healed pigment does).
#[test]
fn classification_holds_across_skin_and_hair_colours() {
    let base = PatientSpec::from_toml_str(FOLLOWUP_TOML).expect("follow-up patient");
    // Measured by hand as well, all at accuracy 1.000: skin I with dark hair, skin IV with
    // dark hair, skin II with dark-blond hair.
    let variants: [(&str, [u8; 3], [u8; 3]); 2] =
        [("skin V, black hair", [141, 95, 70], [30, 26, 26]), ("skin II, grey hair", [222, 178, 152], [105, 105, 108])];
    for (label, skin, hair) in variants {
        let mut spec = base.clone();
        spec.tone.skin_srgb = skin;
        spec.tone.follicle_srgb = hair;
        let run = run(SyntheticPatient::generate(&spec), &RenderConfig::default());
        let s = score(&run);
        print(label, &run, &s);
        assert!(s.union.f1 >= 0.9, "{label}: union F1 {:.3}", s.union.f1);
        assert!(s.dot_vs_follicle_accuracy >= 0.95, "{label}: accuracy {:.3}", s.dot_vs_follicle_accuracy);
    }
}

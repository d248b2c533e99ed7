//! Vision against the simulator: the default patient is rendered through the default rig's
//! cameras, vision maps it from the pixels alone, and the map is scored against the
//! simulator's ground truth (which vision never sees).
//!
//! Which truth follicles count. Vision can only report what its scan imaged, so the truth
//! set is every truth follicle that (1) faces and projects inside at least one tile image
//! (anywhere in the frame, no margin: follicles cut by a tile border and seen by no other tile
//! count as misses), and (2) lies over a cell of the map's region grid that is not
//! `Outside` (the area the map claims to describe). Every detection counts toward precision,
//! with no filtering of the found set.
//!
//! Run with `cargo test -p smp-tests --release --test scenarios vision_on_sim:: -- --nocapture` to see
//! the figures.

use std::time::Instant;

use nalgebra::{Point3, Vector3};
use smp_core::eval::detection_score;
use smp_core::image::CameraView;
use smp_core::map::RegionKind;
use smp_core::rig::Rig;
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::render::{render_flange_view, render_overview, RenderConfig};
use smp_vision::{build_map, find_scalp, scan_positions, MapOutput, VisionConfig};

struct Run {
    patient: SyntheticPatient,
    tiles: Vec<CameraView>,
    out: MapOutput,
    build_map_s: f64,
}

fn run(render: &RenderConfig) -> Run {
    let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient");
    let patient = SyntheticPatient::generate(&spec);
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let cfg = VisionConfig::default();

    let overview = render_overview(&patient, &rig, &base_from_head, render);
    let outline = find_scalp(&overview, &cfg).expect("head found in the overview");
    let positions = scan_positions(&rig, &outline, 25.0, &cfg);
    assert!(!positions.is_empty(), "no scan positions");
    for m in &positions {
        assert!(rig.dynamics.within_travel(*m), "scan position {m:?} outside the machine's travel");
    }
    let tiles: Vec<CameraView> = positions
        .iter()
        .enumerate()
        .map(|(i, m)| render_flange_view(&patient, &rig, &base_from_head, *m, &format!("flange-{i:02}"), render))
        .collect();
    let t0 = Instant::now();
    let out = build_map(&tiles, Some(&overview), &base_from_head, &cfg).expect("map");
    let build_map_s = t0.elapsed().as_secs_f64();
    Run { patient, tiles, out, build_map_s }
}

/// Truth follicles vision could have seen (see the module doc): projecting inside a tile
/// image at least `margin_px` from its border.
fn truth_in_scan(run: &Run, margin_px: f64) -> Vec<[f64; 3]> {
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let map = &run.out.map;
    let patch_from_head = map.surface.head_from_patch.inverse();
    run.patient
        .truth_follicles()
        .iter()
        .filter(|f| {
            let p = Point3::from(f.position_head_mm);
            let n = Vector3::from(f.normal_head);
            let imaged = run.tiles.iter().any(|t| {
                let head_from_camera = base_from_head.inverse() * t.base_from_camera;
                let cam = Point3::from(head_from_camera.translation.vector);
                if n.dot(&(cam - p)) <= 0.0 {
                    return false;
                }
                let pc = head_from_camera.inverse() * p;
                let (w, h) = (t.intrinsics.width_px as f64, t.intrinsics.height_px as f64);
                t.intrinsics.project(&pc).is_some_and(|px| {
                    px.x >= margin_px && px.y >= margin_px && px.x <= w - 1.0 - margin_px && px.y <= h - 1.0 - margin_px
                })
            });
            let q = patch_from_head * p;
            imaged && map.regions.code_at(q.x, q.y) != RegionKind::Outside.code()
        })
        .map(|f| f.position_head_mm)
        .collect()
}

#[test]
fn vision_maps_the_default_patient_from_pixels() {
    let run = run(&RenderConfig::default());
    let map = &run.out.map;
    map.validate().expect("the map validates");
    let found: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let truth = truth_in_scan(&run, 0.0);
    let score = detection_score(&found, &truth, 0.3);
    // The same with follicles cut by the frame border left out of the truth: a follicle
    // centre within 8 px (0.32 mm) of the border is not wholly in the picture.
    let truth_whole = truth_in_scan(&run, 8.0);
    let score_whole = detection_score(&found, &truth_whole, 0.3);

    // Surface error against the true ellipsoid, over the mapped cells.
    let ell = *run.patient.ellipsoid();
    let grid = &map.regions;
    let (mut ss, mut n, mut worst) = (0.0, 0usize, 0.0f64);
    let (mut ss_t, mut n_t, mut worst_t) = (0.0, 0usize, 0.0f64);
    let up_head = Rig::default_sim().base_from_head_nominal().inverse().rotation * Vector3::z();
    let mut agree = 0usize;
    let mut confusion = std::collections::BTreeMap::new();
    for j in 0..grid.ny {
        for i in 0..grid.nx {
            let code = grid.code_at_cell(i, j);
            if code == RegionKind::Outside.code() {
                continue;
            }
            let (x, y) = grid.cell_centre(i, j);
            let (p, normal) = map.surface.sample_head(x, y);
            // First-order distance to the implicit surface.
            let [a, b, c] = ell.semi_axes_mm;
            let g = Vector3::new(2.0 * p.x / (a * a), 2.0 * p.y / (b * b), 2.0 * p.z / (c * c));
            let d = ell.implicit(&p) / g.norm();
            ss += d * d;
            n += 1;
            worst = worst.max(d.abs());
            if normal.angle(&up_head) <= 25f64.to_radians() {
                ss_t += d * d;
                n_t += 1;
                worst_t = worst_t.max(d.abs());
            }
            let truth_kind = run.patient.region_at_head(&p);
            if truth_kind.code() == code {
                agree += 1;
            }
            *confusion.entry((truth_kind.code(), code)).or_insert(0usize) += 1;
        }
    }
    let surface_rms = (ss / n.max(1) as f64).sqrt();
    let surface_rms_t = (ss_t / n_t.max(1) as f64).sqrt();
    let tone = map.skin.as_ref().expect("skin tone");

    println!("tiles: {}, build_map: {:.2} s", run.tiles.len(), run.build_map_s);
    println!(
        "follicles: found {} truth-in-scan {} matched {}  precision {:.3} recall {:.3} F1 {:.3}  loc RMS {:.3} mm",
        score.found, score.truth, score.matched, score.precision, score.recall, score.f1, score.loc_rms_mm
    );
    println!(
        "  (follicles wholly inside a frame: truth {} recall {:.3}; precision against them {:.3} counts edge detections as false)",
        score_whole.truth, score_whole.recall, score_whole.precision
    );
    println!(
        "surface: fit RMS {:.4} mm (depth noise included), error vs truth RMS {:.4} mm max {:.4} mm over {} cells; {} depth points, {} rejected",
        map.surface.fit_rms_mm, surface_rms, worst, n, run.out.surface_points_used, run.out.surface_points_rejected
    );
    println!(
        "surface within 25° tilt (treatable): error RMS {surface_rms_t:.4} mm max {worst_t:.4} mm over {n_t} cells"
    );
    println!("regions: {agree}/{n} cells agree with truth; (truth, vision) -> cells: {confusion:?}");
    println!("skin: Lab {:.1?} ITA {:.1} Fitzpatrick {}", tone.lab, tone.ita_deg, tone.fitzpatrick);
    for w in &map.warnings {
        println!("warning: {w}");
    }

    assert!(score.truth > 1000, "the scan should image over a thousand follicles, got {}", score.truth);
    assert!(score.f1 >= 0.9, "follicle F1 {:.3} < 0.9", score.f1);
    assert!(score_whole.recall >= 0.97, "recall of wholly imaged follicles {:.3}", score_whole.recall);
    assert!(score.loc_rms_mm < 0.1, "localisation RMS {:.3} mm", score.loc_rms_mm);
    assert!(surface_rms < 0.05, "surface error RMS {surface_rms:.3} mm");
    assert!(
        n_t > 500 && worst_t < 0.1,
        "surface error within the treatable area: max {worst_t:.3} mm over {n_t} cells"
    );
    assert!(agree as f64 >= 0.8 * n as f64, "regions agree on {agree}/{n} cells");
    assert!(grid.count(RegionKind::Scar.code()) > 0, "the crown scar is found");
    assert!((2..=3).contains(&tone.fitzpatrick), "light-medium skin, got class {}", tone.fitzpatrick);
    // Dedup: every detection is owned by at most one tile and the owned ones are the map.
    let owned: usize = run.out.tile_detections.iter().map(|t| t.owned.iter().filter(|o| **o).count()).sum();
    assert_eq!(owned, map.follicles.len());
}

/// Three times the default sensor noise and depth noise: detection degrades gracefully.
#[test]
fn vision_is_robust_to_sensor_noise() {
    let render =
        RenderConfig { seed: 99, noise_sigma_levels: 6.0, depth_noise_sigma_mm: 0.1, ..RenderConfig::default() };
    let run = run(&render);
    let found: Vec<[f64; 3]> = run.out.map.follicles.iter().map(|f| f.position()).collect();
    let score = detection_score(&found, &truth_in_scan(&run, 0.0), 0.3);
    println!(
        "noisy (6 levels, 0.1 mm depth): found {} truth {} precision {:.3} recall {:.3} F1 {:.3} loc RMS {:.3} mm, fit RMS {:.3} mm",
        score.found, score.truth, score.precision, score.recall, score.f1, score.loc_rms_mm, run.out.map.surface.fit_rms_mm
    );
    assert!(score.f1 >= 0.9, "F1 {:.3} with noise", score.f1);
}

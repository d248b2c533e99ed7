//! `smp eval vision`: render, scan, score against the simulator's truth.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use nalgebra::Isometry3;
use smp_core::rig::Rig;
use smp_sim::patient::SyntheticPatient;

use crate::error::{stage, CliError};
use crate::files::read_text;
use crate::scan_cmd::megapixels;
use crate::sim::scan::{capture_sim, OVERVIEW_LABEL};

/// `smp eval vision` arguments.
#[derive(Debug, Clone)]
pub struct EvalVisionArgs {
    pub patient: Option<PathBuf>,
    pub faults: Option<PathBuf>,
    pub max_tilt_deg: f64,
    /// Score this many random patients (not in the repository) instead of `patient`.
    pub random: Option<u32>,
    /// First seed of the random patients.
    pub seed: u64,
}

/// `smp eval vision --random N`: every patient's figures and the worst of each over them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalVisionCourse {
    pub patients: Vec<EvalVisionReport>,
    /// Each figure at its worst over the patients (min of precision, recall, F1, accuracy,
    /// IoU and speed; max of the errors), keyed as in a single report.
    pub worst: BTreeMap<String, f64>,
}

/// The figures of `smp eval vision`, each against the simulator's truth.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalVisionReport {
    pub patient: String,
    pub tiles: usize,
    pub views_lost: Vec<String>,
    pub truth_follicles_in_view: usize,
    /// Follicle figures; `None` when the scan shows no truth follicle (a bald top), where
    /// they are undefined rather than zero.
    pub follicle_precision: Option<f64>,
    pub follicle_recall: Option<f64>,
    pub follicle_f1: Option<f64>,
    pub follicle_loc_rms_mm: Option<f64>,
    pub truth_dots_in_view: usize,
    pub dot_vs_follicle_accuracy: f64,
    /// Frequency-weighted IoU: each class's IoU weighted by its share of the truth cells, so
    /// that a sliver of a class along a soft border does not swing the figure.
    pub region_iou: f64,
    /// Unweighted mean IoU over the classes present in truth or map (stricter on slivers).
    pub region_miou: f64,
    pub region_iou_by_class: BTreeMap<String, f64>,
    /// Truth cells (mapped scalp) per class, for reading the per-class figures.
    pub region_cells_by_class: BTreeMap<String, usize>,
    /// CIEDE2000 between the map's skin tone and the patient's true skin colour.
    pub skin_delta_e2000: f64,
    pub skin_lab_estimated: Option<[f64; 3]>,
    pub skin_lab_true: [f64; 3],
    pub fitzpatrick_estimated: Option<u8>,
    /// RMS distance of the fitted surface from the true skin over the mapped cells.
    pub surface_rms_mm: f64,
    /// Head registration from the band's ArUco markers (overview + band cameras): the worst
    /// error over the markers' corners, mm, and the rotation error, degrees. `None` when the
    /// patient wears no band.
    pub fiducial_err_mm: Option<f64>,
    pub fiducial_rot_err_deg: Option<f64>,
    pub fiducial_markers_used: Option<usize>,
    pub mpix_per_s: f64,
    pub vision_wall_s: f64,
}

/// Match radius of the follicle figures (the 0.3 mm).
pub use smp_sim::score::FOLLICLE_MATCH_RADIUS_MM;

/// `smp eval vision --patient FILE`: render, scan and score.
pub fn eval_vision(a: &EvalVisionArgs) -> Result<EvalVisionReport, CliError> {
    let (spec, _) = crate::sim::read_sim_patient(a.patient.as_deref())?;
    eval_vision_on(&spec, a)
}

/// `smp eval vision --random N [--seed S]`: patients seeded S, S+1, ... none of which is in
/// the repository.
pub fn eval_vision_random(a: &EvalVisionArgs, n: u32) -> Result<EvalVisionCourse, CliError> {
    if n == 0 || n > 200 {
        return Err(CliError::input(format!("--random {n} is out of range"), "give 1 to 200 patients"));
    }
    let mut patients = Vec::with_capacity(n as usize);
    for k in 0..n as u64 {
        let seed = a.seed.wrapping_add(k);
        let spec = smp_sim::random_patient::random_patient_spec(seed)
            .map_err(|e| CliError::failure(format!("random patient {seed}: {e}")))?;
        patients.push(eval_vision_on(&spec, a)?);
    }
    let min = |f: fn(&EvalVisionReport) -> f64| patients.iter().map(f).fold(f64::INFINITY, f64::min);
    let max = |f: fn(&EvalVisionReport) -> f64| patients.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
    // Follicle figures over the patients whose scan shows follicles at all.
    let min_opt = |f: fn(&EvalVisionReport) -> Option<f64>| patients.iter().filter_map(f).fold(f64::INFINITY, f64::min);
    let max_opt =
        |f: fn(&EvalVisionReport) -> Option<f64>| patients.iter().filter_map(f).fold(f64::NEG_INFINITY, f64::max);
    let worst = BTreeMap::from([
        ("follicle_precision".to_string(), min_opt(|r| r.follicle_precision)),
        ("follicle_recall".to_string(), min_opt(|r| r.follicle_recall)),
        ("follicle_f1".to_string(), min_opt(|r| r.follicle_f1)),
        ("follicle_loc_rms_mm".to_string(), max_opt(|r| r.follicle_loc_rms_mm)),
        ("dot_vs_follicle_accuracy".to_string(), min(|r| r.dot_vs_follicle_accuracy)),
        ("region_iou".to_string(), min(|r| r.region_iou)),
        ("region_miou".to_string(), min(|r| r.region_miou)),
        ("skin_delta_e2000".to_string(), max(|r| r.skin_delta_e2000)),
        ("surface_rms_mm".to_string(), max(|r| r.surface_rms_mm)),
        ("fiducial_err_mm".to_string(), max_opt(|r| r.fiducial_err_mm)),
        ("mpix_per_s".to_string(), min(|r| r.mpix_per_s)),
    ]);
    Ok(EvalVisionCourse { patients, worst })
}

/// Lines of `smp eval vision --random`.
pub fn eval_vision_course_summary(c: &EvalVisionCourse) -> String {
    let mut s = String::new();
    for r in &c.patients {
        s.push_str(&format!(
            "{:<44} F1 {}  loc {} mm  IoU {:.3}  ΔE00 {:.2}  surface {:.3} mm  {:.1} Mpx/s\n",
            r.patient,
            fmt_opt(r.follicle_f1),
            fmt_opt(r.follicle_loc_rms_mm),
            r.region_iou,
            r.skin_delta_e2000,
            r.surface_rms_mm,
            r.mpix_per_s
        ));
    }
    let w: Vec<String> = c.worst.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
    s.push_str(&format!("worst over {} patients: {}\n", c.patients.len(), w.join(", ")));
    s
}

fn eval_vision_on(spec: &smp_sim::patient::PatientSpec, a: &EvalVisionArgs) -> Result<EvalVisionReport, CliError> {
    if !(a.max_tilt_deg.is_finite() && (0.0..=80.0).contains(&a.max_tilt_deg)) {
        return Err(CliError::input(format!("--max-tilt-deg {} is out of range", a.max_tilt_deg), "give 0 to 80"));
    }
    let drops = match &a.faults {
        Some(p) => {
            let t = read_text(p, "fault scenario", "faults")?;
            smp_sim::faults::FaultScenario::from_toml_str(&t)
                .map_err(|e| CliError::input(format!("{}: {e}", p.display()), "see sim/faults/ for valid scenarios"))?
                .camera_drops
        }
        None => Vec::new(),
    };
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let patient = Arc::new(SyntheticPatient::generate(spec));
    let cfg = smp_sim::render::RenderConfig { seed: spec.seed, ..Default::default() };
    let scan = capture_sim(&patient, &rig, &base_from_head, a.max_tilt_deg, &cfg, &drops)?;
    let tiles = scan.tiles();
    if tiles.is_empty() {
        return Err(CliError::failure("every close-up frame was lost: nothing to evaluate"));
    }
    let t0 = Instant::now();
    let out = smp_vision::build_map(&tiles, scan.overview(), &base_from_head, &smp_vision::VisionConfig::default())
        .map_err(stage("vision (map)"))?;
    let wall = t0.elapsed().as_secs_f64();
    let map = out.map;

    let detections = smp_sim::score::score_detections(&patient, &map, &tiles, &base_from_head);
    let kind = detections.kind;
    let regions = smp_sim::score::region_iou(&map, &patient);
    let fiducial = fiducial_registration(&patient, &rig, &base_from_head, &cfg)?;
    let scored = detections.truth_natural > 0;
    let true_lab = smp_core::color::srgb_to_lab(spec.tone.skin_srgb);
    let (skin_delta_e2000, fitzpatrick_estimated) = match &map.skin {
        Some(s) => (smp_core::color::delta_e2000(s.lab, true_lab), Some(s.fitzpatrick)),
        None => (f64::NAN, None),
    };
    Ok(EvalVisionReport {
        patient: spec.name.clone(),
        tiles: tiles.len(),
        views_lost: scan.lost_views(),
        truth_follicles_in_view: detections.truth_natural,
        follicle_precision: scored.then_some(kind.natural.precision),
        follicle_recall: scored.then_some(kind.natural.recall),
        follicle_f1: scored.then_some(kind.natural.f1),
        follicle_loc_rms_mm: scored.then_some(kind.natural.loc_rms_mm),
        truth_dots_in_view: detections.truth_dots,
        dot_vs_follicle_accuracy: kind.dot_vs_follicle_accuracy,
        region_iou: regions.weighted,
        region_miou: regions.mean,
        region_iou_by_class: regions.by_class,
        region_cells_by_class: regions.cells,
        skin_delta_e2000,
        skin_lab_estimated: map.skin.as_ref().map(|s| s.lab),
        skin_lab_true: true_lab,
        fitzpatrick_estimated,
        surface_rms_mm: smp_sim::score::surface_rms_mm(&map, &patient),
        fiducial_err_mm: fiducial.map(|f| f.0),
        fiducial_rot_err_deg: fiducial.map(|f| f.1),
        fiducial_markers_used: fiducial.map(|f| f.2),
        mpix_per_s: megapixels(&tiles) / wall.max(1e-9),
        vision_wall_s: wall,
    })
}

/// Registers the head from the band's markers seen by the overview and band cameras and
/// scores it against the true pose: (worst corner error mm, rotation error deg, markers).
fn fiducial_registration(
    patient: &SyntheticPatient,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    cfg: &smp_sim::render::RenderConfig,
) -> Result<Option<(f64, f64, usize)>, CliError> {
    let Some(layout) = smp_sim::band_cameras::measured_layout(patient).map_err(stage("fiducial layout"))? else {
        return Ok(None);
    };
    let mut cams = vec![smp_sim::band_cameras::FixedCamera {
        label: OVERVIEW_LABEL.into(),
        intrinsics: rig.overview_camera.intrinsics,
        base_from_camera: rig.overview_camera.base_from_camera.to_isometry(),
    }];
    cams.extend(smp_sim::band_cameras::band_cameras(rig));
    let views: Vec<_> = cams
        .iter()
        .map(|c| {
            smp_sim::render::render_view(patient, &c.intrinsics, &c.base_from_camera, base_from_head, &c.label, cfg)
        })
        .collect();
    let reg = smp_session::register::register_views(&views, &layout)
        .map_err(|e| CliError::failure(format!("fiducials (register): {e}")))?;
    let mut worst: f64 = 0.0;
    for m in &layout.markers {
        for c in m.corners_head().iter().flatten() {
            worst = worst.max((reg.base_from_head * c - base_from_head * c).norm());
        }
    }
    let rot = reg.base_from_head.rotation.angle_to(&base_from_head.rotation).to_degrees();
    Ok(Some((worst, rot, reg.markers_used.len())))
}

/// A figure to 3 decimals, or `n/a` where it is undefined.
fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
}

/// The figures of `smp eval vision` as lines.
pub fn eval_vision_summary(r: &EvalVisionReport) -> String {
    let classes: Vec<String> = r
        .region_iou_by_class
        .iter()
        .map(|(k, v)| format!("{k} {v:.3} over {} cells", r.region_cells_by_class.get(k).copied().unwrap_or(0)))
        .collect();
    format!(
        "vision on {} ({} tiles{}):\n  follicles: precision {}, recall {}, F1 {}, loc rms {} mm ({} in view)\n  \
         dot vs follicle accuracy {:.3} ({} earlier dots in view)\n  region IoU {:.3} weighted, {:.3} mean ({})\n  skin ΔE2000 {:.2} \
         (Fitzpatrick estimate {})\n  surface rms {:.3} mm\n  fiducial registration {}\n  {:.1} Mpx/s ({:.2} s)\n",
        r.patient,
        r.tiles,
        if r.views_lost.is_empty() { String::new() } else { format!(", views lost: {}", r.views_lost.join(", ")) },
        fmt_opt(r.follicle_precision),
        fmt_opt(r.follicle_recall),
        fmt_opt(r.follicle_f1),
        fmt_opt(r.follicle_loc_rms_mm),
        r.truth_follicles_in_view,
        r.dot_vs_follicle_accuracy,
        r.truth_dots_in_view,
        r.region_iou,
        r.region_miou,
        classes.join(", "),
        r.skin_delta_e2000,
        r.fitzpatrick_estimated.map_or("-".to_string(), |f| f.to_string()),
        r.surface_rms_mm,
        match (r.fiducial_err_mm, r.fiducial_rot_err_deg, r.fiducial_markers_used) {
            (Some(e), Some(d), Some(n)) => format!("{e:.3} mm, {d:.3} deg ({n} markers)"),
            _ => "n/a (no head band)".to_string(),
        },
        r.mpix_per_s,
        r.vision_wall_s,
    )
}

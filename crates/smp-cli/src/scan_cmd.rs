//! Scans on disk and in simulation: the capture loop with lost-frame retries, `smp scan`
//! (a directory of frames -> map.json) and `smp eval vision` (render, scan, score against
//! the simulator's truth).
//!
//! Why the capture loop lives here: a lost camera frame is an I/O event of the session (the
//! simulator's fault scenario says which frames never arrive), and the policy (retry a view a
//! few times, then leave it out and say so) is the host's, not vision's. Vision maps what it
//! is given; the warning names every view it was not given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use nalgebra::{Isometry3, Point3};
use smp_core::capture::{CameraRole, ScanManifest, ViewOutcome, ViewRecord, SCAN_MANIFEST_FILE, SCAN_MANIFEST_VERSION};
use smp_core::geometry::PoseSpec;
use smp_core::image::{CameraView, DepthImage};
use smp_core::map::{RegionKind, ScalpMap};
use smp_core::rig::Rig;
use smp_sim::faults::CameraFrameDrop;
use smp_sim::patient::SyntheticPatient;

use crate::error::{stage, CliError};
use crate::files::{read_rig, read_text, to_json, write_png, write_text};

/// Attempts per view before it is given up (the first and two retries).
pub const MAX_CAPTURE_ATTEMPTS: usize = 3;
/// The overview camera's view label.
pub const OVERVIEW_LABEL: &str = "overview";

/// One capture attempt of a simulated scan.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub label: String,
    pub camera: CameraRole,
    pub frame_index: u64,
    /// The frame, or `None` when it was lost.
    pub view: Option<CameraView>,
}

/// What a simulated scan captured, attempt by attempt.
#[derive(Debug, Clone)]
pub struct SimScan {
    pub attempts: Vec<Attempt>,
    pub base_from_head: Isometry3<f64>,
}

impl SimScan {
    /// The overview frame, if it arrived.
    pub fn overview(&self) -> Option<&CameraView> {
        self.attempts.iter().filter(|a| a.camera == CameraRole::Overview).find_map(|a| a.view.as_ref())
    }

    /// The flange tiles that arrived, one per view.
    pub fn tiles(&self) -> Vec<CameraView> {
        self.attempts.iter().filter(|a| a.camera == CameraRole::Flange).filter_map(|a| a.view.clone()).collect()
    }

    /// Views whose every attempt was lost.
    pub fn lost_views(&self) -> Vec<String> {
        let mut labels: Vec<&str> = Vec::new();
        for a in &self.attempts {
            if !labels.contains(&a.label.as_str()) {
                labels.push(&a.label);
            }
        }
        labels
            .into_iter()
            .filter(|l| self.attempts.iter().filter(|a| a.label == *l).all(|a| a.view.is_none()))
            .map(str::to_string)
            .collect()
    }

    /// Frames lost in all (including those a retry replaced).
    pub fn frames_lost(&self) -> usize {
        self.attempts.iter().filter(|a| a.view.is_none()).count()
    }
}

/// Hands out frame indices and says which frames the fault scenario loses.
struct FrameCounter<'a> {
    drops: &'a [CameraFrameDrop],
    next: u64,
}

impl FrameCounter<'_> {
    /// The next frame index and whether that frame arrives.
    fn take(&mut self, label: &str) -> (u64, bool) {
        let index = self.next;
        self.next += 1;
        (index, !self.drops.iter().any(|d| d.matches(label, index)))
    }
}

/// A simulated scan: the overview, then a flange tile over each scan position vision asks
/// for; frames the scenario's `camera_drops` name are lost and retried up to
/// [`MAX_CAPTURE_ATTEMPTS`] times each. Fails only when the overview never arrives (tiles
/// cannot be placed without it).
pub fn capture_sim(
    patient: &Arc<SyntheticPatient>,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    max_tilt_deg: f64,
    cfg: &smp_sim::render::RenderConfig,
    drops: &[CameraFrameDrop],
) -> Result<SimScan, CliError> {
    let mut frames = FrameCounter { drops, next: 0 };
    let mut attempts = Vec::new();
    let mut overview = None;
    for _ in 0..MAX_CAPTURE_ATTEMPTS {
        let (frame_index, arrives) = frames.take(OVERVIEW_LABEL);
        let view = arrives.then(|| smp_sim::render::render_overview(patient, rig, base_from_head, cfg));
        overview.clone_from(&view);
        attempts.push(Attempt { label: OVERVIEW_LABEL.into(), camera: CameraRole::Overview, frame_index, view });
        if overview.is_some() {
            break;
        }
    }
    let Some(overview) = overview else {
        let tried: Vec<String> = attempts.iter().map(|a| a.frame_index.to_string()).collect();
        return Err(CliError::failure(format!(
            "overview camera: no frame arrived in {MAX_CAPTURE_ATTEMPTS} attempts (frames {}); the scan cannot place \
             its close-ups without it. Check the overview camera's cable and trigger, then scan again",
            tried.join(", ")
        )));
    };
    let vision = smp_vision::VisionConfig::default();
    let outline = smp_vision::find_scalp(&overview, &vision).map_err(stage("vision (overview)"))?;
    let positions = smp_vision::scan_positions(rig, &outline, max_tilt_deg, &vision);
    if positions.is_empty() {
        return Err(CliError::failure("vision: no scan positions: the overview shows no scalp within the rig's reach"));
    }
    // Decide every attempt's fate first (frame indices are handed out in capture order, a
    // retry straight after its loss), then render the frames that arrive on both cores.
    let mut wanted: Vec<(String, [f64; 3])> = Vec::new();
    let mut tile_attempts: Vec<(String, u64, bool)> = Vec::new();
    for (i, p) in positions.iter().enumerate() {
        let label = format!("tile{i:03}");
        for _ in 0..MAX_CAPTURE_ATTEMPTS {
            let (frame_index, arrives) = frames.take(&label);
            tile_attempts.push((label.clone(), frame_index, arrives));
            if arrives {
                wanted.push((label.clone(), *p));
                break;
            }
        }
    }
    let mut rendered: BTreeMap<String, CameraView> =
        crate::demo::render_labelled_tiles(patient, rig, base_from_head, &wanted, cfg)
            .into_iter()
            .map(|v| (v.label.clone(), v))
            .collect();
    for (label, frame_index, arrives) in tile_attempts {
        let view = if arrives { rendered.remove(&label) } else { None };
        attempts.push(Attempt { label, camera: CameraRole::Flange, frame_index, view });
    }
    Ok(SimScan { attempts, base_from_head: *base_from_head })
}

/// Writes a scan as files: PNG per arrived frame, `.npy` per depth frame and `views.json`.
/// Returns the manifest.
pub fn write_scan(scan: &SimScan, dir: &Path) -> Result<ScanManifest, CliError> {
    let mut views = Vec::with_capacity(scan.attempts.len());
    for a in &scan.attempts {
        let (image, depth, intrinsics, base_from_camera) = match &a.view {
            Some(v) => {
                let image = format!("{}.png", v.label);
                write_png(&dir.join(&image), &v.image)?;
                let depth = match &v.depth {
                    Some(d) => {
                        let file = format!("{}.depth.npy", v.label);
                        crate::files::write_atomically(&dir.join(&file), &d.to_npy())?;
                        Some(file)
                    }
                    None => None,
                };
                (Some(image), depth, v.intrinsics, PoseSpec::from_isometry(&v.base_from_camera))
            }
            // A lost frame still has the pose the arm was at and the camera it used: what
            // the rig knew, so a re-scan knows where to go.
            None => match scan.attempts.iter().find(|b| b.label == a.label && b.view.is_some()) {
                Some(Attempt { view: Some(v), .. }) => {
                    (None, None, v.intrinsics, PoseSpec::from_isometry(&v.base_from_camera))
                }
                _ => (None, None, lost_intrinsics(a.camera), PoseSpec::identity()),
            },
        };
        views.push(ViewRecord {
            label: a.label.clone(),
            camera: a.camera,
            frame_index: a.frame_index,
            image,
            depth,
            intrinsics,
            base_from_camera,
        });
    }
    let manifest = ScanManifest {
        version: SCAN_MANIFEST_VERSION,
        base_from_head: PoseSpec::from_isometry(&scan.base_from_head),
        views,
    };
    manifest.validate().map_err(stage("scan manifest"))?;
    write_text(&dir.join(SCAN_MANIFEST_FILE), &to_json(&manifest)?)?;
    Ok(manifest)
}

/// The rig's camera for a view all of whose frames were lost (recorded for completeness).
fn lost_intrinsics(role: CameraRole) -> smp_core::camera::CameraIntrinsics {
    let rig = Rig::default_sim();
    match role {
        CameraRole::Overview => rig.overview_camera.intrinsics,
        CameraRole::Flange => rig.flange_camera.intrinsics,
    }
}

/// A scan read back from a directory.
#[derive(Debug, Clone)]
pub struct LoadedScan {
    pub overview: Option<CameraView>,
    pub tiles: Vec<CameraView>,
    pub base_from_head: Isometry3<f64>,
    /// Views none of whose frames arrived.
    pub lost_views: Vec<String>,
    /// Frames lost in all, including those a retry replaced.
    pub frames_lost: usize,
}

/// Reads `DIR/views.json` and every frame it lists. A listed file that is missing or
/// unreadable is an error naming it; a view whose every frame was lost is reported, not an
/// error.
pub fn read_scan(dir: &Path) -> Result<LoadedScan, CliError> {
    let manifest_path = dir.join(SCAN_MANIFEST_FILE);
    let text = read_text(&manifest_path, "scan manifest", "images")?;
    let manifest = ScanManifest::from_json_str(&text).map_err(|e| {
        CliError::input(
            format!("{}: {e}", manifest_path.display()),
            "give --images a directory written by a capture (`smp sim render --out DIR` writes one)",
        )
    })?;
    let mut loaded = LoadedScan {
        overview: None,
        tiles: Vec::new(),
        base_from_head: manifest.base_from_head.to_isometry(),
        lost_views: Vec::new(),
        frames_lost: manifest.views.iter().filter(|v| v.image.is_none()).count(),
    };
    for outcome in manifest.outcomes() {
        let record = match outcome {
            ViewOutcome::Lost { label, .. } => {
                loaded.lost_views.push(label.to_string());
                continue;
            }
            ViewOutcome::Arrived { record, .. } => record,
        };
        let Some(image_file) = &record.image else { continue };
        let image_path = dir.join(image_file);
        if !image_path.is_file() {
            return Err(CliError::input(
                format!("view {} (frame {}): {} is missing", record.label, record.frame_index, image_path.display()),
                "copy the whole scan directory, or re-capture that view",
            ));
        }
        let image = crate::files::read_png(&image_path)?;
        if (image.width, image.height) != (record.intrinsics.width_px, record.intrinsics.height_px) {
            return Err(CliError::input(
                format!(
                    "view {}: {} is {}x{} px but its camera is {}x{} px",
                    record.label,
                    image_path.display(),
                    image.width,
                    image.height,
                    record.intrinsics.width_px,
                    record.intrinsics.height_px
                ),
                "the manifest and the frames come from different captures; re-capture",
            ));
        }
        let depth = match &record.depth {
            Some(f) => Some(read_depth(&dir.join(f), &record.label, image.width, image.height)?),
            None => None,
        };
        let view = CameraView {
            label: record.label.clone(),
            intrinsics: record.intrinsics,
            base_from_camera: record.base_from_camera.to_isometry(),
            image,
            depth,
        };
        match record.camera {
            CameraRole::Overview => loaded.overview = Some(view),
            CameraRole::Flange => loaded.tiles.push(view),
        }
    }
    Ok(loaded)
}

fn read_depth(path: &PathBuf, label: &str, width: u32, height: u32) -> Result<DepthImage, CliError> {
    let bytes = std::fs::read(path).map_err(|e| {
        CliError::input(
            format!("view {label}: cannot read depth frame {}: {e}", path.display()),
            "re-capture that view",
        )
    })?;
    let d = DepthImage::from_npy(&bytes).map_err(|e| {
        CliError::input(format!("view {label}: depth frame {}: {e}", path.display()), "re-capture that view")
    })?;
    if (d.width, d.height) != (width, height) {
        return Err(CliError::input(
            format!(
                "view {label}: depth frame {} is {}x{}, the image {width}x{height}",
                path.display(),
                d.width,
                d.height
            ),
            "the depth and colour frames come from different captures; re-capture",
        ));
    }
    Ok(d)
}

/// `smp scan` arguments.
#[derive(Debug, Clone)]
pub struct ScanArgs {
    pub images: PathBuf,
    pub rig: Option<PathBuf>,
    pub out: PathBuf,
}

/// What `smp scan` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanReport {
    pub tiles_used: usize,
    pub overview_used: bool,
    pub views_lost: Vec<String>,
    pub frames_lost: usize,
    pub follicles: usize,
    pub smp_dots: usize,
    pub surface_fit_rms_mm: f64,
    pub skin_lab: Option<[f64; 3]>,
    pub fitzpatrick: Option<u8>,
    pub warnings: Vec<String>,
    pub map: String,
    pub vision_wall_s: f64,
    pub mpix_per_s: f64,
}

/// `smp scan --images DIR --out map.json`: the scalp map from a captured scan.
pub fn scan(a: &ScanArgs) -> Result<ScanReport, CliError> {
    // The rig is read so that a bad --rig is refused; the poses in the manifest already
    // carry its kinematics and calibration.
    let _rig = read_rig(a.rig.as_deref())?;
    let loaded = read_scan(&a.images)?;
    if loaded.tiles.is_empty() {
        return Err(CliError::input(
            format!("{}: no close-up frame arrived (views lost: {})", a.images.display(), loaded.lost_views.join(", ")),
            "re-capture the scan",
        ));
    }
    let t0 = Instant::now();
    let out = smp_vision::build_map(
        &loaded.tiles,
        loaded.overview.as_ref(),
        &loaded.base_from_head,
        &smp_vision::VisionConfig::default(),
    )
    .map_err(stage("vision (map)"))?;
    let wall = t0.elapsed().as_secs_f64();
    let mut map = out.map;
    add_lost_view_warnings(&mut map, &loaded.lost_views, loaded.overview.is_none());
    crate::files::write_atomically(&a.out, to_json(&map)?.as_bytes())?;
    Ok(ScanReport {
        tiles_used: loaded.tiles.len(),
        overview_used: loaded.overview.is_some(),
        views_lost: loaded.lost_views.clone(),
        frames_lost: loaded.frames_lost,
        follicles: map.follicles.iter().filter(|f| f.kind == smp_core::map::FollicleKind::Natural).count(),
        smp_dots: map.follicles.iter().filter(|f| f.kind == smp_core::map::FollicleKind::SmpDot).count(),
        surface_fit_rms_mm: map.surface.fit_rms_mm,
        skin_lab: map.skin.as_ref().map(|s| s.lab),
        fitzpatrick: map.skin.as_ref().map(|s| s.fitzpatrick),
        warnings: map.warnings.clone(),
        map: a.out.display().to_string(),
        vision_wall_s: wall,
        mpix_per_s: megapixels(&loaded.tiles) / wall.max(1e-9),
    })
}

/// Says in the map which views vision never got, so the planner's user sees the hole.
fn add_lost_view_warnings(map: &mut ScalpMap, lost: &[String], overview_missing: bool) {
    if !lost.is_empty() {
        map.warnings.push(format!(
            "camera frames never arrived for {} view(s) ({}) after {MAX_CAPTURE_ATTEMPTS} attempts each: the scalp \
             they cover is not mapped and will not be planned; re-scan those views",
            lost.len(),
            lost.join(", ")
        ));
    }
    if overview_missing {
        map.warnings.push("no overview frame: the scan was not checked against the overview's depth".into());
    }
}

fn megapixels(views: &[CameraView]) -> f64 {
    views.iter().map(|v| v.image.width as f64 * v.image.height as f64).sum::<f64>() / 1e6
}

/// One-line summary of `smp scan`.
pub fn scan_summary(r: &ScanReport) -> String {
    let lost =
        if r.views_lost.is_empty() { String::new() } else { format!("; views lost: {}", r.views_lost.join(", ")) };
    let mut s = format!(
        "map -> {}: {} tiles ({} frames lost{lost}), {} follicles, {} earlier SMP dots, surface fit rms {:.3} mm, \
         {:.1} Mpx/s\n",
        r.map, r.tiles_used, r.frames_lost, r.follicles, r.smp_dots, r.surface_fit_rms_mm, r.mpix_per_s
    );
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

/// `smp eval vision` arguments.
#[derive(Debug, Clone)]
pub struct EvalVisionArgs {
    pub patient: Option<PathBuf>,
    pub faults: Option<PathBuf>,
    pub max_tilt_deg: f64,
}

/// The figures of `smp eval vision`, each against the simulator's truth.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalVisionReport {
    pub patient: String,
    pub tiles: usize,
    pub views_lost: Vec<String>,
    pub truth_follicles_in_view: usize,
    pub follicle_precision: f64,
    pub follicle_recall: f64,
    pub follicle_f1: f64,
    pub follicle_loc_rms_mm: f64,
    pub truth_dots_in_view: usize,
    pub dot_vs_follicle_accuracy: f64,
    /// Mean over the region classes present in truth or map.
    pub region_iou: f64,
    pub region_iou_by_class: BTreeMap<String, f64>,
    /// CIEDE2000 between the map's skin tone and the patient's true skin colour.
    pub skin_delta_e2000: f64,
    pub fitzpatrick_estimated: Option<u8>,
    /// RMS distance of the fitted surface from the true skin over the mapped cells.
    pub surface_rms_mm: f64,
    pub mpix_per_s: f64,
    pub vision_wall_s: f64,
}

/// Match radius of the follicle figures (the 0.3 mm).
pub const FOLLICLE_MATCH_RADIUS_MM: f64 = 0.3;

/// `smp eval vision --patient FILE`: render, scan and score.
pub fn eval_vision(a: &EvalVisionArgs) -> Result<EvalVisionReport, CliError> {
    let (spec, _) = crate::files::read_sim_patient(a.patient.as_deref())?;
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
    let patient = Arc::new(SyntheticPatient::generate(&spec));
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

    let found: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let kinds: Vec<smp_core::map::FollicleKind> = map.follicles.iter().map(|f| f.kind).collect();
    let truth = crate::demo::truth_in_view(patient.truth_follicles_head(), &tiles, &map, &base_from_head);
    let truth_dots = crate::demo::truth_in_view(patient.truth_prior_dots_head(), &tiles, &map, &base_from_head);
    let kind = smp_core::eval::kind_score(&found, &kinds, &truth, &truth_dots, FOLLICLE_MATCH_RADIUS_MM);
    let (region_iou, region_iou_by_class) = region_iou(&map, &patient);
    let true_lab = smp_core::color::srgb_to_lab(spec.tone.skin_srgb);
    let (skin_delta_e2000, fitzpatrick_estimated) = match &map.skin {
        Some(s) => (smp_core::color::delta_e2000(s.lab, true_lab), Some(s.fitzpatrick)),
        None => (f64::NAN, None),
    };
    Ok(EvalVisionReport {
        patient: spec.name.clone(),
        tiles: tiles.len(),
        views_lost: scan.lost_views(),
        truth_follicles_in_view: truth.len(),
        follicle_precision: kind.natural.precision,
        follicle_recall: kind.natural.recall,
        follicle_f1: kind.natural.f1,
        follicle_loc_rms_mm: kind.natural.loc_rms_mm,
        truth_dots_in_view: truth_dots.len(),
        dot_vs_follicle_accuracy: kind.dot_vs_follicle_accuracy,
        region_iou,
        region_iou_by_class,
        skin_delta_e2000,
        fitzpatrick_estimated,
        surface_rms_mm: surface_rms_mm(&map, &patient),
        mpix_per_s: megapixels(&tiles) / wall.max(1e-9),
        vision_wall_s: wall,
    })
}

/// The head point on the map's surface at a region cell's centre.
fn cell_head_point(map: &ScalpMap, i: usize, j: usize) -> Point3<f64> {
    let (x, y) = map.regions.cell_centre(i, j);
    map.surface.sample_head(x, y).0
}

/// Intersection over union of each region class, over the cells the map labels as scalp,
/// with the truth label of the skin point under each cell; the mean over classes present.
fn region_iou(map: &ScalpMap, patient: &SyntheticPatient) -> (f64, BTreeMap<String, f64>) {
    let outside = RegionKind::Outside.code();
    let mut inter: BTreeMap<char, usize> = BTreeMap::new();
    let mut union: BTreeMap<char, usize> = BTreeMap::new();
    for j in 0..map.regions.ny {
        for i in 0..map.regions.nx {
            let found = map.regions.code_at_cell(i, j);
            if found == outside {
                continue;
            }
            let truth = patient.region_at_head(&cell_head_point(map, i, j)).code();
            if truth == outside {
                continue;
            }
            *union.entry(found).or_default() += 1;
            if found == truth {
                *inter.entry(found).or_default() += 1;
            } else {
                *union.entry(truth).or_default() += 1;
            }
        }
    }
    let by_class: BTreeMap<String, f64> = union
        .iter()
        .map(|(code, u)| {
            let name =
                RegionKind::from_code(*code).map_or_else(|| code.to_string(), |k| format!("{k:?}").to_lowercase());
            (name, inter.get(code).copied().unwrap_or(0) as f64 / *u as f64)
        })
        .collect();
    let mean = if by_class.is_empty() { f64::NAN } else { by_class.values().sum::<f64>() / by_class.len() as f64 };
    (mean, by_class)
}

/// RMS distance (mm) from the map's fitted surface to the true skin (the patient's
/// ellipsoid) at the centres of the cells the map labels as scalp. First-order distance
/// `f / |∇f|` of the implicit function: exact to well under a micrometre at these errors.
fn surface_rms_mm(map: &ScalpMap, patient: &SyntheticPatient) -> f64 {
    let ell = patient.ellipsoid();
    let [a, b, c] = ell.semi_axes_mm;
    let outside = RegionKind::Outside.code();
    let (mut sum, mut n) = (0.0, 0usize);
    for j in 0..map.regions.ny {
        for i in 0..map.regions.nx {
            if map.regions.code_at_cell(i, j) == outside {
                continue;
            }
            let p = cell_head_point(map, i, j);
            let grad = nalgebra::Vector3::new(2.0 * p.x / (a * a), 2.0 * p.y / (b * b), 2.0 * p.z / (c * c));
            let d = ell.implicit(&p) / grad.norm();
            sum += d * d;
            n += 1;
        }
    }
    if n == 0 {
        f64::NAN
    } else {
        (sum / n as f64).sqrt()
    }
}

/// The figures of `smp eval vision` as lines.
pub fn eval_vision_summary(r: &EvalVisionReport) -> String {
    let classes: Vec<String> = r.region_iou_by_class.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
    format!(
        "vision on {} ({} tiles{}):\n  follicles: precision {:.3}, recall {:.3}, F1 {:.3}, loc rms {:.3} mm ({} in view)\n  \
         dot vs follicle accuracy {:.3} ({} earlier dots in view)\n  region IoU {:.3} ({})\n  skin ΔE2000 {:.2} \
         (Fitzpatrick estimate {})\n  surface rms {:.3} mm\n  {:.1} Mpx/s ({:.2} s)\n",
        r.patient,
        r.tiles,
        if r.views_lost.is_empty() { String::new() } else { format!(", views lost: {}", r.views_lost.join(", ")) },
        r.follicle_precision,
        r.follicle_recall,
        r.follicle_f1,
        r.follicle_loc_rms_mm,
        r.truth_follicles_in_view,
        r.dot_vs_follicle_accuracy,
        r.truth_dots_in_view,
        r.region_iou,
        classes.join(", "),
        r.skin_delta_e2000,
        r.fitzpatrick_estimated.map_or("-".to_string(), |f| f.to_string()),
        r.surface_rms_mm,
        r.mpix_per_s,
        r.vision_wall_s,
    )
}

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
    /// Where the rig believes the head is (its nominal rest), as the manifest records it.
    pub base_from_head: Isometry3<f64>,
    /// The patient's head band as measured, when one is worn (the band views register it).
    pub fiducial_layout: Option<smp_core::fiducial_layout::FiducialLayout>,
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

    /// The band cameras' frames that arrived.
    pub fn band_views(&self) -> Vec<CameraView> {
        self.attempts.iter().filter(|a| a.camera == CameraRole::Band).filter_map(|a| a.view.clone()).collect()
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
/// for, then (when the patient wears a head band) a frame from each band camera; frames the
/// scenario's `camera_drops` name are lost and retried up to [`MAX_CAPTURE_ATTEMPTS`] times
/// each. Fails only when the overview never arrives (tiles cannot be placed without it).
/// The head is rendered at `base_from_head` (where the simulator holds it); the scan records
/// the rig's nominal rest as its belief, and a reader registers the head from the band.
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
        smp_sim::tiles::render_labelled_tiles(patient, rig, base_from_head, &wanted, cfg)
            .into_iter()
            .map(|v| (v.label.clone(), v))
            .collect();
    for (label, frame_index, arrives) in tile_attempts {
        let view = if arrives { rendered.remove(&label) } else { None };
        attempts.push(Attempt { label, camera: CameraRole::Flange, frame_index, view });
    }
    let fiducial_layout = smp_sim::band_cameras::measured_layout(patient).map_err(stage("fiducial layout"))?;
    if fiducial_layout.is_some() {
        for c in smp_sim::band_cameras::band_cameras(rig) {
            for _ in 0..MAX_CAPTURE_ATTEMPTS {
                let (frame_index, arrives) = frames.take(&c.label);
                let view = arrives.then(|| {
                    smp_sim::render::render_view(
                        patient,
                        &c.intrinsics,
                        &c.base_from_camera,
                        base_from_head,
                        &c.label,
                        cfg,
                    )
                });
                attempts.push(Attempt { label: c.label.clone(), camera: CameraRole::Band, frame_index, view });
                if arrives {
                    break;
                }
            }
        }
    }
    Ok(SimScan { attempts, base_from_head: rig.base_from_head_nominal(), fiducial_layout })
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
        fiducial_layout: scan.fiducial_layout.clone(),
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
        CameraRole::Band => {
            smp_sim::band_cameras::band_cameras(&rig).first().map_or(rig.overview_camera.intrinsics, |c| c.intrinsics)
        }
    }
}

/// A scan read back from a directory.
#[derive(Debug, Clone)]
pub struct LoadedScan {
    pub overview: Option<CameraView>,
    pub tiles: Vec<CameraView>,
    /// The band cameras' frames.
    pub band: Vec<CameraView>,
    /// The head band's layout, when the capture recorded one.
    pub fiducial_layout: Option<smp_core::fiducial_layout::FiducialLayout>,
    /// The rig's belief from the manifest; [`register_head`] replaces it from the band.
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
        band: Vec::new(),
        fiducial_layout: manifest.fiducial_layout.clone(),
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
            CameraRole::Band => loaded.band.push(view),
        }
    }
    Ok(loaded)
}

/// How a scan's head frame was registered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanRegistration {
    /// `fiducials` (from the band's markers) or `nominal` (the rig's head rest, unverified).
    pub method: String,
    pub markers_used: usize,
    pub reprojection_rms_px: Option<f64>,
    /// How far the registered head is from where the rig's rest put it (head centre), mm.
    pub offset_from_nominal_mm: Option<f64>,
}

/// Registers the scan's head frame from the band markers its band (and overview) frames show,
/// replacing the manifest's nominal pose; without a band, keeps the nominal pose and says so
/// in `warnings`.
pub fn register_head(loaded: &mut LoadedScan, warnings: &mut Vec<String>) -> Result<ScanRegistration, CliError> {
    let nominal = ScanRegistration {
        method: "nominal".into(),
        markers_used: 0,
        reprojection_rms_px: None,
        offset_from_nominal_mm: None,
    };
    let Some(layout) = &loaded.fiducial_layout else {
        warnings.push(
            "no head band in this scan: the head is assumed at the rig's nominal rest, unverified; fit the band and \
             re-scan for a registered map"
                .into(),
        );
        return Ok(nominal);
    };
    let mut views = loaded.band.clone();
    views.extend(loaded.overview.iter().cloned());
    if loaded.band.is_empty() {
        warnings.push("the band cameras' frames never arrived: the head is registered from the overview alone".into());
    }
    let reg = smp_session::register::register_views(&views, layout).map_err(|e| {
        CliError::input(
            format!("registering the head from the band markers: {e}"),
            "check that the band is on and the band cameras see it, then re-scan",
        )
    })?;
    warnings.extend(reg.warnings.iter().cloned());
    let offset = (reg.base_from_head.translation.vector - loaded.base_from_head.translation.vector).norm();
    loaded.base_from_head = reg.base_from_head;
    Ok(ScanRegistration {
        method: "fiducials".into(),
        markers_used: reg.markers_used.len(),
        reprojection_rms_px: Some(reg.reprojection_rms_px),
        offset_from_nominal_mm: Some(offset),
    })
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
    /// How the head frame was registered.
    pub registration: ScanRegistration,
}

/// `smp scan --images DIR --out map.json`: the scalp map from a captured scan.
pub fn scan(a: &ScanArgs) -> Result<ScanReport, CliError> {
    // The rig is read so that a bad --rig is refused; the poses in the manifest already
    // carry its kinematics and calibration.
    let _rig = read_rig(a.rig.as_deref())?;
    let mut loaded = read_scan(&a.images)?;
    let mut reg_warnings = Vec::new();
    let registration = register_head(&mut loaded, &mut reg_warnings)?;
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
    map.warnings.extend(reg_warnings);
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
        registration,
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
    let reg = &r.registration;
    match (reg.reprojection_rms_px, reg.offset_from_nominal_mm) {
        (Some(rms), Some(off)) => s.push_str(&format!(
            "head registered from {} band markers ({rms:.2} px rms), {off:.2} mm from the rig's nominal rest\n",
            reg.markers_used
        )),
        _ => s.push_str("head at the rig's nominal rest (no band: not registered)\n"),
    }
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
    let regions = region_iou(&map, &patient);
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
        surface_rms_mm: surface_rms_mm(&map, &patient),
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

/// The head point on the map's surface at a region cell's centre.
fn cell_head_point(map: &ScalpMap, i: usize, j: usize) -> Point3<f64> {
    let (x, y) = map.regions.cell_centre(i, j);
    map.surface.sample_head(x, y).0
}

/// Region agreement of a map with the truth.
struct RegionIou {
    weighted: f64,
    mean: f64,
    by_class: BTreeMap<String, f64>,
    cells: BTreeMap<String, usize>,
}

/// Intersection over union of each region class, over the cells the map labels as scalp,
/// with the truth label of the skin point under each cell.
fn region_iou(map: &ScalpMap, patient: &SyntheticPatient) -> RegionIou {
    let outside = RegionKind::Outside.code();
    let mut inter: BTreeMap<char, usize> = BTreeMap::new();
    let mut union: BTreeMap<char, usize> = BTreeMap::new();
    let mut truth_cells: BTreeMap<char, usize> = BTreeMap::new();
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
            *truth_cells.entry(truth).or_default() += 1;
            *union.entry(found).or_default() += 1;
            if found == truth {
                *inter.entry(found).or_default() += 1;
            } else {
                *union.entry(truth).or_default() += 1;
            }
        }
    }
    let name =
        |code: char| RegionKind::from_code(code).map_or_else(|| code.to_string(), |k| format!("{k:?}").to_lowercase());
    let iou = |code: &char| inter.get(code).copied().unwrap_or(0) as f64 / union[code].max(1) as f64;
    let by_class: BTreeMap<String, f64> = union.keys().map(|c| (name(*c), iou(c))).collect();
    let total: usize = truth_cells.values().sum();
    let weighted = if total == 0 {
        f64::NAN
    } else {
        truth_cells.iter().map(|(c, n)| iou(c) * *n as f64).sum::<f64>() / total as f64
    };
    let mean = if by_class.is_empty() { f64::NAN } else { by_class.values().sum::<f64>() / by_class.len() as f64 };
    let cells = truth_cells.iter().map(|(c, n)| (name(*c), *n)).collect();
    RegionIou { weighted, mean, by_class, cells }
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

//! `smp scan`: a directory of captured frames -> map.json.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nalgebra::Isometry3;
use smp_core::capture::{CameraRole, ScanManifest, ViewOutcome, MAX_CAPTURE_ATTEMPTS, SCAN_MANIFEST_FILE};
use smp_core::image::{CameraView, DepthImage};
use smp_core::map::ScalpMap;

use crate::error::{stage, CliError};
use crate::files::{read_rig, read_text, to_json};

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

pub(crate) fn megapixels(views: &[CameraView]) -> f64 {
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

//! `smp calibrate`: camera intrinsics, hand-eye and needle-tip calibration from image
//! directories (`intrinsics`, `hand-eye`, `tcp`). The algorithms are `smp_vision::calibrate`;
//! `smp calibrate sim` (in `crate::sim::calibrate`) writes views these commands can be run on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use smp_core::calib_board::CharucoBoard;
use smp_core::geometry::PoseSpec;
use smp_vision::calibrate::{
    calibrate_hand_eye_from_views, calibrate_intrinsics, detect_charuco, CalibrationFile, CharucoDetection,
    HandEyeConfig, HandEyeFile, IntrinsicsConfig, IntrinsicsFile, TcpConfig, TcpFile,
};

use crate::error::{stage, CliError};
use crate::files::{read_png, read_text};

/// The poses file of a hand-eye image directory: which flange pose each image was taken from.
pub(crate) const POSES_FILE: &str = "poses.toml";
pub(crate) const POSES_VERSION: u32 = 1;

/// `poses.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PosesFile {
    pub version: u32,
    pub views: Vec<PoseRecord>,
}

/// One image and the arm's flange pose (from its kinematics) when it was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoseRecord {
    pub image: String,
    pub base_from_flange: PoseSpec,
}

/// A pivot file for needle-tip calibration: flange poses with the tip held on one point.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PivotFile {
    pub version: u32,
    pub poses: Vec<PoseSpec>,
}

/// `smp calibrate tcp --poses FILE --out FILE`: the needle tip in the flange frame from flange
/// poses holding the tip on one fixed point (pivot calibration).
pub fn tcp(poses: &Path, out: &Path) -> Result<String, CliError> {
    let text = read_text(poses, "pivot poses file", "poses")?;
    let f: PivotFile = smp_core::error::parse_toml("pivot poses file", &text).map_err(|e| {
        CliError::input(format!("{}: {e}", poses.display()), "one [[poses]] per arm pose: translation_mm, rpy_deg")
    })?;
    if f.version != POSES_VERSION {
        return Err(CliError::input(
            format!("{}: version {} (this build reads {POSES_VERSION})", poses.display(), f.version),
            "write the pivot file in the current format",
        ));
    }
    let mut flange = Vec::with_capacity(f.poses.len());
    for (i, p) in f.poses.iter().enumerate() {
        p.validate("pivot poses file", &format!("poses[{i}]"))
            .map_err(|e| CliError::input(format!("{}: {e}", poses.display()), "fix the pose"))?;
        flange.push(p.to_isometry());
    }
    let cal = smp_vision::calibrate::calibrate_tcp(&flange, &TcpConfig::default())
        .map_err(|e| CliError::failure(format!("needle tip from {}: {e}", poses.display())))?;
    let text = TcpFile::from_calibration(&cal, flange.len(), &today()).to_toml_string().map_err(stage("tcp file"))?;
    crate::files::write_atomically(out, text.as_bytes())?;
    let t = cal.flange_from_needle_tip_mm;
    Ok(format!(
        "needle tip -> {}: [{:.3}, {:.3}, {:.3}] mm in the flange frame, pivot rms {:.3} mm over {} poses ({:.0} deg spread)\n",
        out.display(),
        t.x,
        t.y,
        t.z,
        cal.rms_mm,
        flange.len(),
        cal.spread_deg
    ))
}

/// Today's date (UTC) as `YYYY-MM-DD`, for the calibration files (the library owns no clock).
pub(crate) fn today() -> String {
    let days =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0)
            as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

pub(crate) fn read_board(path: Option<&Path>) -> Result<CharucoBoard, CliError> {
    match path {
        None => CharucoBoard::default_board().map_err(|e| CliError::failure(format!("embedded board: {e}"))),
        Some(p) => {
            let text = read_text(p, "calibration board", "board")?;
            CharucoBoard::from_toml_str(&text).map_err(|e| {
                CliError::input(format!("{}: {e}", p.display()), "see calibration/charuco.toml for a valid board")
            })
        }
    }
}

/// The PNG files of a directory, sorted by name.
fn png_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CliError::input(format!("cannot read image directory {}: {e}", dir.display()), "check --images")
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()).is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CliError::input(
            format!("{} holds no PNG images", dir.display()),
            "give the directory of board views",
        ));
    }
    Ok(files)
}

fn detect_file(path: &Path, board: &CharucoBoard) -> Result<CharucoDetection, CliError> {
    let image = read_png(path)?;
    let label = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().to_string());
    detect_charuco(&image, board, &label).map_err(|e| CliError::failure(format!("{}: {e}", path.display())))
}

/// `smp calibrate intrinsics` arguments.
#[derive(Debug, Clone)]
pub struct IntrinsicsArgs {
    pub images: PathBuf,
    pub board: Option<PathBuf>,
    pub out: PathBuf,
}

/// What `smp calibrate intrinsics` found.
#[derive(Debug, Clone, Serialize)]
pub struct IntrinsicsReport {
    pub file: String,
    pub views_used: usize,
    /// Each rejected view with the reason (blurred, partial, degenerate...).
    pub views_rejected: Vec<String>,
    pub reprojection_rms_px: f64,
    /// Per used view: label and reprojection RMS.
    pub per_view_rms_px: Vec<(String, f64)>,
    pub intrinsics: smp_core::camera::CameraIntrinsics,
}

/// `smp calibrate intrinsics --images DIR [--board FILE] --out FILE`.
pub fn intrinsics(a: &IntrinsicsArgs) -> Result<IntrinsicsReport, CliError> {
    let board = read_board(a.board.as_deref())?;
    let detections: Vec<CharucoDetection> =
        png_files(&a.images)?.iter().map(|p| detect_file(p, &board)).collect::<Result<_, _>>()?;
    let cal = calibrate_intrinsics(&detections, &board, &IntrinsicsConfig::default())
        .map_err(|e| CliError::failure(format!("intrinsics from {}: {e}", a.images.display())))?;
    let file = IntrinsicsFile::from_calibration(&cal, &today());
    let text = file.to_toml_string().map_err(stage("intrinsics file"))?;
    crate::files::write_atomically(&a.out, text.as_bytes())?;
    Ok(IntrinsicsReport {
        file: a.out.display().to_string(),
        views_used: cal.views.len(),
        views_rejected: cal.rejected.iter().map(|r| format!("{}: {}", r.label, r.reason)).collect(),
        reprojection_rms_px: cal.rms_px,
        per_view_rms_px: cal.views.iter().map(|v| (v.label.clone(), v.rms_px)).collect(),
        intrinsics: cal.intrinsics,
    })
}

/// One-line summary of `smp calibrate intrinsics`.
pub fn intrinsics_summary(r: &IntrinsicsReport) -> String {
    let i = &r.intrinsics;
    let mut s = format!(
        "intrinsics -> {}: fx {:.2} fy {:.2} cx {:.2} cy {:.2} px, k {:?}; reprojection rms {:.3} px over {} views\n",
        r.file, i.fx_px, i.fy_px, i.cx_px, i.cy_px, i.distortion, r.reprojection_rms_px, r.views_used
    );
    for v in &r.views_rejected {
        s.push_str(&format!("rejected: {v}\n"));
    }
    s
}

/// `smp calibrate hand-eye` arguments.
#[derive(Debug, Clone)]
pub struct HandEyeArgs {
    pub images: PathBuf,
    pub poses: PathBuf,
    pub intrinsics: PathBuf,
    pub board: Option<PathBuf>,
    pub out: PathBuf,
}

/// What `smp calibrate hand-eye` found.
#[derive(Debug, Clone, Serialize)]
pub struct HandEyeReport {
    pub file: String,
    pub views: usize,
    pub method: String,
    pub rotation_residual_deg: f64,
    pub translation_residual_mm: f64,
    pub reprojection_rms_px: Option<f64>,
    pub flange_from_camera: PoseSpec,
}

/// `smp calibrate hand-eye --images DIR --poses FILE --intrinsics FILE --out FILE`.
pub fn hand_eye(a: &HandEyeArgs) -> Result<HandEyeReport, CliError> {
    let board = read_board(a.board.as_deref())?;
    let intr_text = read_text(&a.intrinsics, "intrinsics file", "intrinsics")?;
    let intr = IntrinsicsFile::from_toml_str(&intr_text).map_err(|e| {
        CliError::input(format!("{}: {e}", a.intrinsics.display()), "give the file `smp calibrate intrinsics` wrote")
    })?;
    let poses_text = read_text(&a.poses, "poses file", "poses")?;
    let poses: PosesFile = smp_core::error::parse_toml("poses file", &poses_text).map_err(|e| {
        CliError::input(format!("{}: {e}", a.poses.display()), "one [[views]] per image: image, base_from_flange")
    })?;
    if poses.version != POSES_VERSION {
        return Err(CliError::input(
            format!("{}: version {} (this build reads {POSES_VERSION})", a.poses.display(), poses.version),
            "write the poses file in the current format",
        ));
    }
    let mut flange = Vec::with_capacity(poses.views.len());
    let mut detections = Vec::with_capacity(poses.views.len());
    for (i, v) in poses.views.iter().enumerate() {
        v.base_from_flange.validate("poses file", &format!("views[{i}].base_from_flange")).map_err(|e| {
            CliError::input(format!("{}: {e}", a.poses.display()), "fix the pose (translation_mm, rpy_deg)")
        })?;
        flange.push(v.base_from_flange.to_isometry());
        detections.push(detect_file(&a.images.join(&v.image), &board)?);
    }
    let cal = calibrate_hand_eye_from_views(&flange, &detections, &intr.intrinsics, &HandEyeConfig::default())
        .map_err(|e| CliError::failure(format!("hand-eye from {}: {e}", a.images.display())))?;
    let file = HandEyeFile::from_calibration(&cal, flange.len(), &today());
    let text = file.to_toml_string().map_err(stage("hand-eye file"))?;
    crate::files::write_atomically(&a.out, text.as_bytes())?;
    Ok(HandEyeReport {
        file: a.out.display().to_string(),
        views: flange.len(),
        method: cal.method.clone(),
        rotation_residual_deg: cal.rotation_residual_deg,
        translation_residual_mm: cal.translation_residual_mm,
        reprojection_rms_px: cal.reprojection_rms_px,
        flange_from_camera: PoseSpec::from_isometry(&cal.flange_from_camera),
    })
}

/// One-line summary of `smp calibrate hand-eye`.
pub fn hand_eye_summary(r: &HandEyeReport) -> String {
    format!(
        "hand-eye -> {} ({}, {} views): translation {:?} mm, rpy {:?} deg; residuals {:.3} deg, {:.3} mm{}\n",
        r.file,
        r.method,
        r.views,
        r.flange_from_camera.translation_mm.map(|v| (v * 1000.0).round() / 1000.0),
        r.flange_from_camera.rpy_deg.map(|v| (v * 1000.0).round() / 1000.0),
        r.rotation_residual_deg,
        r.translation_residual_mm,
        r.reprojection_rms_px.map_or(String::new(), |p| format!(", reprojection {p:.3} px")),
    )
}

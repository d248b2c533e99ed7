//! `smp calibrate`: camera intrinsics, hand-eye and needle-tip calibration, from image
//! directories (`intrinsics`, `hand-eye`) or end to end in the simulator (`sim`), which also
//! writes its views so that the file-based commands can be run on them.
//!
//! The algorithms are `smp_vision::calibrate`; the simulated scene is
//! `smp_sim::calib_scene`, the same one the vision crate's tests score.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nalgebra::{Isometry3, Point3};
use serde::{Deserialize, Serialize};
use smp_core::calib_board::CharucoBoard;
use smp_core::geometry::PoseSpec;
use smp_core::image::RgbImage;
use smp_core::rig::Rig;
use smp_sim::calib_scene;
use smp_vision::calibrate::{
    calibrate_hand_eye_from_views, calibrate_intrinsics, detect_charuco, intrinsics_error_px, pivot_poses, pose_error,
    run_calibration, CalibrationFile, CalibrationInput, CharucoDetection, HandEyeConfig, HandEyeFile, IntrinsicsConfig,
    IntrinsicsFile, TcpConfig, TcpFile,
};

use crate::error::{stage, CliError};
use crate::files::{read_png, read_text, write_png, write_text};

/// The poses file of a hand-eye image directory: which flange pose each image was taken from.
pub const POSES_FILE: &str = "poses.toml";
const POSES_VERSION: u32 = 1;

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
fn today() -> String {
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

fn read_board(path: Option<&Path>) -> Result<CharucoBoard, CliError> {
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

/// `smp calibrate sim` arguments.
#[derive(Debug, Clone)]
pub struct CalibrateSimArgs {
    /// Hand-eye views (arm poses).
    pub views: usize,
    /// Corner noise on the hand-eye views, px.
    pub noise_px: f64,
    /// Corner noise on the intrinsics views, px.
    pub intrinsics_noise_px: f64,
    pub seed: u64,
    /// Write the views, poses and calibration files here.
    pub out: Option<PathBuf>,
}

/// `smp calibrate sim` figures against the simulated rig's truth.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrateSimReport {
    pub intrinsic_views: usize,
    pub intrinsic_views_rejected: Vec<String>,
    pub hand_eye_views: usize,
    pub noise_px: f64,
    pub intrinsics_noise_px: f64,
    /// Overall reprojection RMS of the intrinsics calibration.
    pub reprojection_rms_px: f64,
    /// RMS over the image of the pixel displacement between estimated and true intrinsics.
    pub intrinsics_err_px: f64,
    pub hand_eye_err_mm: f64,
    pub hand_eye_err_deg: f64,
    pub hand_eye_method: String,
    pub hand_eye_rotation_residual_deg: f64,
    pub hand_eye_translation_residual_mm: f64,
    pub tcp_err_mm: f64,
    pub tcp_rms_mm: f64,
    pub wall_s: f64,
    /// Where the views and calibration files went, with --out.
    pub files: Vec<String>,
}

/// Pivot poses for the needle tip: 10 tilts on the divot, 0.02 mm arm repeatability.
const PIVOT_POSES: usize = 10;
const ARM_REPEATABILITY_MM: f64 = 0.02;

/// `smp calibrate sim [--views N] [--noise-px S] [--out DIR]`: the whole calibration in the
/// simulator, scored against the rig's true parameters.
pub fn sim(a: &CalibrateSimArgs) -> Result<CalibrateSimReport, CliError> {
    if !(3..=200).contains(&a.views) {
        return Err(CliError::input(format!("--views {} is out of range", a.views), "give 3 to 200 hand-eye views"));
    }
    for (flag, v) in [("--noise-px", a.noise_px), ("--intrinsics-noise-px", a.intrinsics_noise_px)] {
        if !(v.is_finite() && (0.0..=5.0).contains(&v)) {
            return Err(CliError::input(format!("{flag} {v} is out of range"), "give 0 to 5 pixels"));
        }
    }
    let t0 = Instant::now();
    let rig = Rig::default_sim();
    let board = read_board(None)?;
    let intr_views = calib_scene::intrinsic_views(&rig, &board).map_err(stage("intrinsics views"))?;
    let he_views = calib_scene::hand_eye_views(&rig, &board, a.views).map_err(stage("hand-eye views"))?;
    let truth_intr = rig.flange_camera.intrinsics;
    let truth_x = rig.flange_camera.flange_from_camera.to_isometry();
    let truth_tip = rig.flange_from_needle.to_isometry().translation.vector;
    let tcp_poses = calib_scene::with_repeatability(
        pivot_poses(&truth_tip, &Point3::from(calib_scene::PIVOT_BASE_MM), &calib_scene::pivot_tilts(PIVOT_POSES)),
        ARM_REPEATABILITY_MM,
    );
    let intr_images: Vec<RgbImage> = intr_views.iter().map(|v| v.image.clone()).collect();
    let he: Vec<(Isometry3<f64>, RgbImage)> = he_views.iter().map(|v| (v.base_from_flange, v.image.clone())).collect();
    let (ic, hc, tc) = (IntrinsicsConfig::default(), HandEyeConfig::default(), TcpConfig::default());
    let report = run_calibration(&CalibrationInput {
        board: &board,
        intrinsic_images: &intr_images,
        hand_eye_views: &he,
        tcp_base_from_flange: &tcp_poses,
        intrinsics_noise_px: a.intrinsics_noise_px,
        hand_eye_noise_px: a.noise_px,
        seed: a.seed,
        intrinsics: &ic,
        hand_eye: &hc,
        tcp: &tc,
    })
    .map_err(stage("calibration"))?;
    let (he_mm, he_deg) = pose_error(&report.hand_eye.flange_from_camera, &truth_x);
    let mut files = Vec::new();
    if let Some(dir) = &a.out {
        files = write_sim_calibration(dir, &intr_images, &he, &report, &tcp_poses)?;
    }
    Ok(CalibrateSimReport {
        intrinsic_views: report.intrinsics.views.len(),
        intrinsic_views_rejected: report
            .intrinsics
            .rejected
            .iter()
            .map(|r| format!("{}: {}", r.label, r.reason))
            .collect(),
        hand_eye_views: report.hand_eye_views,
        noise_px: a.noise_px,
        intrinsics_noise_px: a.intrinsics_noise_px,
        reprojection_rms_px: report.intrinsics.rms_px,
        intrinsics_err_px: intrinsics_error_px(&report.intrinsics.intrinsics, &truth_intr),
        hand_eye_err_mm: he_mm,
        hand_eye_err_deg: he_deg,
        hand_eye_method: report.hand_eye.method.clone(),
        hand_eye_rotation_residual_deg: report.hand_eye.rotation_residual_deg,
        hand_eye_translation_residual_mm: report.hand_eye.translation_residual_mm,
        tcp_err_mm: (report.tcp.flange_from_needle_tip_mm - truth_tip).norm(),
        tcp_rms_mm: report.tcp.rms_mm,
        wall_s: t0.elapsed().as_secs_f64(),
        files,
    })
}

/// Writes `DIR/intrinsics/*.png`, `DIR/hand-eye/*.png` + `poses.toml`, and the three
/// calibration files; returns what was written.
fn write_sim_calibration(
    dir: &Path,
    intr_images: &[RgbImage],
    he: &[(Isometry3<f64>, RgbImage)],
    report: &smp_vision::calibrate::CalibrationReport,
    tcp: &[Isometry3<f64>],
) -> Result<Vec<String>, CliError> {
    let mk = |d: &Path| {
        std::fs::create_dir_all(d).map_err(|e| {
            CliError::input(format!("cannot create {}: {e}", d.display()), "choose a writable --out directory")
        })
    };
    let (intr_dir, he_dir) = (dir.join("intrinsics"), dir.join("hand-eye"));
    mk(&intr_dir)?;
    mk(&he_dir)?;
    for (i, img) in intr_images.iter().enumerate() {
        write_png(&intr_dir.join(format!("view{i:02}.png")), img)?;
    }
    let mut views = Vec::with_capacity(he.len());
    for (i, (pose, img)) in he.iter().enumerate() {
        let image = format!("view{i:02}.png");
        write_png(&he_dir.join(&image), img)?;
        views.push(PoseRecord { image, base_from_flange: PoseSpec::from_isometry(pose) });
    }
    let poses = toml::to_string(&PosesFile { version: POSES_VERSION, views })
        .map_err(|e| CliError::failure(format!("cannot write the poses file: {e}")))?;
    write_text(&he_dir.join(POSES_FILE), &poses)?;
    let date = today();
    let intr = IntrinsicsFile::from_calibration(&report.intrinsics, &date).to_toml_string().map_err(stage("file"))?;
    let hand_eye = HandEyeFile::from_calibration(&report.hand_eye, report.hand_eye_views, &date)
        .to_toml_string()
        .map_err(stage("file"))?;
    let tcp_text = TcpFile::from_calibration(&report.tcp, tcp.len(), &date).to_toml_string().map_err(stage("file"))?;
    let pivot = PivotFile { version: POSES_VERSION, poses: tcp.iter().map(PoseSpec::from_isometry).collect() };
    let pivot = toml::to_string(&pivot).map_err(|e| CliError::failure(format!("cannot write the pivot file: {e}")))?;
    write_text(&dir.join("tcp-poses.toml"), &pivot)?;
    let mut written = vec![
        intr_dir.display().to_string(),
        he_dir.display().to_string(),
        dir.join("tcp-poses.toml").display().to_string(),
    ];
    for (name, text) in
        [("flange-intrinsics.toml", intr), ("flange-hand-eye.toml", hand_eye), ("needle-tcp.toml", tcp_text)]
    {
        let p = dir.join(name);
        write_text(&p, &text)?;
        written.push(p.display().to_string());
    }
    Ok(written)
}

/// Lines of `smp calibrate sim`.
pub fn sim_summary(r: &CalibrateSimReport) -> String {
    let mut s = format!(
        "calibration in the simulator ({} intrinsics views, {} hand-eye views, corner noise {} px hand-eye / {} px \
         intrinsics):\n  intrinsics: reprojection rms {:.3} px, error vs truth {:.3} px\n  hand-eye ({}): {:.3} mm, \
         {:.3} deg vs truth (residuals {:.3} deg, {:.3} mm)\n  needle tip: {:.3} mm vs truth (pivot rms {:.3} mm)\n  \
         {:.1} s\n",
        r.intrinsic_views,
        r.hand_eye_views,
        r.noise_px,
        r.intrinsics_noise_px,
        r.reprojection_rms_px,
        r.intrinsics_err_px,
        r.hand_eye_method,
        r.hand_eye_err_mm,
        r.hand_eye_err_deg,
        r.hand_eye_rotation_residual_deg,
        r.hand_eye_translation_residual_mm,
        r.tcp_err_mm,
        r.tcp_rms_mm,
        r.wall_s
    );
    for v in &r.intrinsic_views_rejected {
        s.push_str(&format!("  rejected: {v}\n"));
    }
    for f in &r.files {
        s.push_str(&format!("  wrote {f}\n"));
    }
    s
}

/// `smp testdots` arguments.
#[derive(Debug, Clone)]
pub struct TestDotsArgs {
    pub patient: Option<PathBuf>,
    pub session: Option<PathBuf>,
    pub site: String,
    pub target_mm: f64,
    /// Write the session spec with the chosen dwell and depth here.
    pub out: Option<PathBuf>,
}

/// What `smp testdots` measured, fitted and chose, with the simulator's truth beside it.
#[derive(Debug, Clone, Serialize)]
pub struct TestDotsReport {
    pub patient: String,
    pub site: smp_core::test_dots::ConcealedSite,
    pub report: smp_vision::skin_response::TestDotReport,
    /// The patient's true dot diameter at the chosen dwell and depth (the simulator's model).
    pub truth_diameter_at_choice_mm: f64,
    /// Predicted minus true diameter at the choice.
    pub choice_err_mm: f64,
    /// Measured minus deposited diameter over the clean dots: RMS and max.
    pub measure_err_rms_mm: f64,
    pub measure_err_max_mm: f64,
    pub session_out: Option<String>,
}

/// `smp testdots --patient P [--spec S] [--site nape] [--target-mm 0.45] [--out S2]`: a
/// grid of test dots at a concealed site in the simulator, imaged, measured and fitted; the
/// session's dwell and depth chosen from this patient's fit.
pub fn test_dots(a: &TestDotsArgs) -> Result<TestDotsReport, CliError> {
    use smp_core::test_dots::{ConcealedSite, ParameterLimits};
    let site = match a.site.as_str() {
        "nape" => ConcealedSite::Nape,
        "behind_left_ear" => ConcealedSite::BehindLeftEar,
        "behind_right_ear" => ConcealedSite::BehindRightEar,
        other => {
            return Err(CliError::input(
                format!("--site {other:?} is not a concealed site"),
                "give nape, behind_left_ear or behind_right_ear",
            ))
        }
    };
    let cfg = crate::demo::DemoConfig { patient: a.patient.clone(), session: a.session.clone(), ..Default::default() };
    let (spec, mut session, name) = crate::demo::load_inputs(&cfg)?;
    let rig = Rig::default_sim();
    let patient = smp_sim::patient::SyntheticPatient::generate(&spec);
    let plan = smp_sim::test_dots::grid_at_site(&patient, site, session.depth_limit_mm)
        .plan(session.depth_limit_mm)
        .map_err(stage("test-dot grid"))?;
    let run = smp_sim::test_dots::run_test_dots(&patient, &rig, &plan, &smp_sim::render::RenderConfig::default())
        .map_err(stage("test dots (simulator)"))?;
    let limits = ParameterLimits::for_session(&session, a.target_mm);
    let report = smp_vision::skin_response::skin_response_from_test_dots(
        &run.view,
        &run.base_from_head,
        &plan,
        &limits,
        &smp_vision::skin_response::TestDotConfig::default(),
    )
    .map_err(stage("test dots (vision)"))?;
    let truth_at = spec.skin_response.diameter_mm(report.chosen.dwell_s, report.chosen.depth_mm);
    let errs: Vec<f64> = report
        .dots
        .iter()
        .filter_map(|m| {
            let t = run.truth.iter().find(|t| t.index == m.index)?;
            (!t.blowout).then_some(m.diameter_mm - t.diameter_mm)
        })
        .collect();
    let rms = (errs.iter().map(|e| e * e).sum::<f64>() / errs.len().max(1) as f64).sqrt();
    let max = errs.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    let mut session_out = None;
    if let Some(out) = &a.out {
        session.dwell_s = report.chosen.dwell_s;
        session.depth_mm = report.chosen.depth_mm;
        session.validate().map_err(|e| CliError::failure(format!("the chosen parameters do not validate: {e}")))?;
        let text =
            toml::to_string(&session).map_err(|e| CliError::failure(format!("cannot write the session: {e}")))?;
        crate::files::write_atomically(out, text.as_bytes())?;
        session_out = Some(out.display().to_string());
    }
    Ok(TestDotsReport {
        patient: name,
        site,
        truth_diameter_at_choice_mm: truth_at,
        choice_err_mm: report.chosen.predicted_diameter_mm - truth_at,
        measure_err_rms_mm: rms,
        measure_err_max_mm: max,
        report,
        session_out,
    })
}

/// Lines of `smp testdots`.
pub fn test_dots_summary(r: &TestDotsReport) -> String {
    let f = &r.report.fit;
    let c = &r.report.chosen;
    format!(
        "test dots on {} at {}: {} dots measured (error vs truth rms {:.4} mm, max {:.4} mm)\n  fit: d = {:.3} + {:.3}·dwell \
         + {:.3}·depth mm (rms {:.4} mm){}\n  chosen: dwell {:.2} s, depth {:.3} mm -> {:.3} mm predicted, {:.3} mm true \
         (target {:.2} mm, depth ceiling {:.2} mm){}\n",
        r.patient,
        r.site.as_str(),
        r.report.dots.len(),
        r.measure_err_rms_mm,
        r.measure_err_max_mm,
        f.d0_mm,
        f.per_dwell_mm_per_s,
        f.per_depth_mm_per_mm,
        f.residual_rms_mm,
        f.blowout_onset_depth_mm.map_or(String::new(), |d| format!(", blowout from {d:.2} mm")),
        c.dwell_s,
        c.depth_mm,
        c.predicted_diameter_mm,
        r.truth_diameter_at_choice_mm,
        c.target_diameter_mm,
        c.depth_ceiling_mm,
        r.session_out.as_ref().map_or(String::new(), |p| format!("\n  session -> {p}")),
    )
}

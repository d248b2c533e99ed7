//! `smp calibrate sim`: the whole calibration in the simulator (`smp_sim::calib_scene`, the same
//! scene the vision crate's tests score), scored against the rig's true parameters.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nalgebra::{Isometry3, Point3};
use serde::Serialize;
use smp_core::geometry::PoseSpec;
use smp_core::image::RgbImage;
use smp_core::rig::Rig;
use smp_sim::calib_scene;
use smp_vision::calibrate::{
    intrinsics_error_px, pivot_poses, pose_error, run_calibration, CalibrationFile, CalibrationInput, HandEyeConfig,
    HandEyeFile, IntrinsicsConfig, IntrinsicsFile, TcpConfig, TcpFile,
};

use crate::calibrate_cmd::{read_board, today, PivotFile, PoseRecord, PosesFile, POSES_FILE, POSES_VERSION};
use crate::error::{stage, CliError};
use crate::files::{write_png, write_text};

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

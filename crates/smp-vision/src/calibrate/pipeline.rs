//! The whole calibration from images and arm poses, as `smp calibrate sim` runs it, and the
//! helpers that score a calibration against a known truth (the caller holds the truth).

use nalgebra::{Isometry3, Point2, Point3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smp_core::calib_board::CharucoBoard;
use smp_core::camera::CameraIntrinsics;
use smp_core::image::RgbImage;

use super::intrinsics::RejectReason;
use super::{
    calibrate_hand_eye_from_views, calibrate_intrinsics, calibrate_tcp, detect_charuco, CalibError, CharucoDetection,
    HandEyeCalibration, HandEyeConfig, IntrinsicsCalibration, IntrinsicsConfig, RejectedView, TcpCalibration,
    TcpConfig,
};

/// Everything a full calibration run needs.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationInput<'a> {
    pub board: &'a CharucoBoard,
    /// Board views for the intrinsics (board at several tilts and distances).
    pub intrinsic_images: &'a [RgbImage],
    /// Board views for hand-eye, each with the flange pose it was taken from. The board
    /// must stay put between these views.
    pub hand_eye_views: &'a [(Isometry3<f64>, RgbImage)],
    /// Flange poses with the needle tip held on one fixed point.
    pub tcp_base_from_flange: &'a [Isometry3<f64>],
    /// Gaussian noise (σ, px) added to every corner detected in the intrinsics views, to
    /// test the calibration against a worse detector than the clean renders give; 0 for
    /// real images.
    pub intrinsics_noise_px: f64,
    /// The same for the hand-eye views (the target case is 0.2 px here).
    pub hand_eye_noise_px: f64,
    /// Seeds the corner noise.
    pub seed: u64,
    pub intrinsics: &'a IntrinsicsConfig,
    pub hand_eye: &'a HandEyeConfig,
    pub tcp: &'a TcpConfig,
}

/// The result of [`run_calibration`]. JSON keys of `smp calibrate sim` map as:
/// `reprojection_rms_px` = `intrinsics.rms_px`; `intrinsics_err_px` =
/// [`intrinsics_error_px`]`(&intrinsics.intrinsics, &truth)`; `hand_eye_err_mm`/`_deg` =
/// [`pose_error`]`(&hand_eye.flange_from_camera, &truth)`; `tcp_err_mm` = distance of
/// `tcp.flange_from_needle_tip_mm` from the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationReport {
    pub intrinsics: IntrinsicsCalibration,
    pub hand_eye: HandEyeCalibration,
    /// Hand-eye views left out (too few corners to solve a pose), with why.
    pub hand_eye_rejected: Vec<RejectedView>,
    /// Hand-eye views used.
    pub hand_eye_views: usize,
    pub tcp: TcpCalibration,
}

/// Runs detection, intrinsics, hand-eye (with the calibrated intrinsics) and the needle-tip
/// pivot calibration. Pure: no files, no clock, no simulator.
pub fn run_calibration(input: &CalibrationInput<'_>) -> Result<CalibrationReport, CalibError> {
    for (field, v) in
        [("intrinsics_noise_px", input.intrinsics_noise_px), ("hand_eye_noise_px", input.hand_eye_noise_px)]
    {
        if !(v.is_finite() && v >= 0.0) {
            return Err(CalibError::Config { field, problem: format!("is {v}; use a non-negative number of pixels") });
        }
    }
    let mut intr_det: Vec<CharucoDetection> = input
        .intrinsic_images
        .iter()
        .enumerate()
        .map(|(i, img)| detect_charuco(img, input.board, &format!("intrinsics view {i}")))
        .collect::<Result<_, _>>()?;
    add_corner_noise(&mut intr_det, input.intrinsics_noise_px, input.seed);
    let intrinsics = calibrate_intrinsics(&intr_det, input.board, input.intrinsics)?;

    let mut he_det: Vec<CharucoDetection> = input
        .hand_eye_views
        .iter()
        .enumerate()
        .map(|(i, (_, img))| detect_charuco(img, input.board, &format!("hand-eye view {i}")))
        .collect::<Result<_, _>>()?;
    add_corner_noise(&mut he_det, input.hand_eye_noise_px, input.seed.wrapping_add(0x9e37_79b9));
    let mut poses = Vec::new();
    let mut used = Vec::new();
    let mut hand_eye_rejected = Vec::new();
    for (index, (d, (pose, _))) in he_det.into_iter().zip(input.hand_eye_views).enumerate() {
        if d.corners.len() < input.intrinsics.min_corners {
            hand_eye_rejected.push(RejectedView {
                index,
                label: d.label.clone(),
                reason: RejectReason::TooFewCorners { found: d.corners.len(), needed: input.intrinsics.min_corners },
            });
            continue;
        }
        poses.push(*pose);
        used.push(d);
    }
    let hand_eye = calibrate_hand_eye_from_views(&poses, &used, &intrinsics.intrinsics, input.hand_eye)?;
    let tcp = calibrate_tcp(input.tcp_base_from_flange, input.tcp)?;
    Ok(CalibrationReport { intrinsics, hand_eye, hand_eye_rejected, hand_eye_views: used.len(), tcp })
}

/// Adds seeded Gaussian noise (σ = `sigma_px`) to every corner of every detection.
pub fn add_corner_noise(detections: &mut [CharucoDetection], sigma_px: f64, seed: u64) {
    if !(sigma_px.is_finite() && sigma_px > 0.0) {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut gauss = move || {
        // Box-Muller; 1 - u keeps the logarithm finite.
        let u: f64 = 1.0 - rng.random::<f64>();
        let v: f64 = rng.random::<f64>();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    for d in detections {
        for c in &mut d.corners {
            c.pixel.x += sigma_px * gauss();
            c.pixel.y += sigma_px * gauss();
        }
    }
}

/// How far apart two cameras' pixel maps are: every 10th pixel of `truth`'s image (borders
/// included) is back-projected with `truth` and projected with `estimated`; the RMS of the
/// pixel differences. Independent of any pose, so it measures the intrinsics alone.
pub fn intrinsics_error_px(estimated: &CameraIntrinsics, truth: &CameraIntrinsics) -> f64 {
    let (w, h) = (f64::from(truth.width_px), f64::from(truth.height_px));
    let mut sum = 0.0;
    let mut n = 0usize;
    let step = 10.0;
    let mut y = 0.0;
    while y <= h - 1.0 {
        let mut x = 0.0;
        while x <= w - 1.0 {
            let ray = truth.ray(&Point2::new(x, y));
            let e = estimated.project(&Point3::from(ray)).map_or(f64::INFINITY, |p| (p - Point2::new(x, y)).norm());
            sum += e * e;
            n += 1;
            x += step;
        }
        y += step;
    }
    (sum / n.max(1) as f64).sqrt()
}

/// Translation (mm) and rotation (deg) between two poses: `|t(a⁻¹b)|` and the angle of `a⁻¹b`.
pub fn pose_error(a: &Isometry3<f64>, b: &Isometry3<f64>) -> (f64, f64) {
    let d = a.inverse() * b;
    (d.translation.vector.norm(), d.rotation.angle().to_degrees())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_helpers_measure_what_they_say() {
        let truth = CameraIntrinsics {
            width_px: 800,
            height_px: 600,
            fx_px: 2000.0,
            fy_px: 2000.0,
            cx_px: 400.0,
            cy_px: 300.0,
            distortion: [-0.05, 0.01, 0.0, 0.0, 0.0],
        };
        assert!(intrinsics_error_px(&truth, &truth) < 1e-9);
        let shifted = CameraIntrinsics { cx_px: 401.0, ..truth };
        assert!((intrinsics_error_px(&shifted, &truth) - 1.0).abs() < 1e-6);
        let a = Isometry3::translation(1.0, 2.0, 3.0);
        let b = a * Isometry3::new(nalgebra::Vector3::new(0.3, 0.4, 0.0), nalgebra::Vector3::new(0.0, 0.0, 0.01));
        let (mm, deg) = pose_error(&a, &b);
        assert!((mm - 0.5).abs() < 1e-12 && (deg - 0.01f64.to_degrees()).abs() < 1e-9);
    }
}

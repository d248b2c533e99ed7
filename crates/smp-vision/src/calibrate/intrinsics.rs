//! Flange-camera intrinsics from ChArUco views: pinhole + OpenCV `k1 k2 p1 p2 k3`, with
//! per-view and overall reprojection RMS, and each unusable view rejected with its reason.

use std::fmt;

use nalgebra::{Isometry3, Matrix2, Translation3, UnitQuaternion, Vector3};
use opencv::calib3d;
use opencv::core::{Mat, Point2f, Point3f, Size, TermCriteria, TermCriteria_Type, Vector};
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use smp_core::calib_board::CharucoBoard;
use smp_core::camera::CameraIntrinsics;

use super::{ocv, CalibError, CharucoDetection};

/// Tuning of view rejection and the solve. Defaults suit the default rig's flange camera
/// (800 × 600 px, 2000 px focal length) and the repository board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntrinsicsConfig {
    /// Fewest corners a view needs (fewer: the board is mostly out of frame or hidden).
    pub min_corners: usize,
    /// Smallest variance of the Laplacian over the board; below it the view is blurred.
    /// Measured on the default rig: sharp views 26 000-113 000, a 3 px defocus blur about
    /// 5 500, 5 px about 1 700 (with the render's default lighting and noise).
    pub min_sharpness: f64,
    /// Smallest `sqrt(λmin / λmax)` of the corners' pixel covariance; below it the corners
    /// are nearly collinear and pin down nothing across the line.
    pub min_spread_ratio: f64,
    /// Smallest area of the corners' bounding box as a fraction of the image; below it the
    /// board is too small in frame to constrain distortion.
    pub min_area_fraction: f64,
    /// Fewest usable views a calibration needs.
    pub min_views: usize,
    /// A view whose reprojection RMS after the first solve exceeds this is an outlier
    /// (mis-detection, motion blur) and is dropped before the final solve.
    pub max_view_rms_px: f64,
    /// Hold k3 at zero. Why it may help: a narrow lens (the default flange camera sees
    /// ±11°) barely exercises r⁶, so k3 is poorly determined and can make the model swing
    /// at the image corners where few board corners fall.
    pub fix_k3: bool,
    /// Hold p1 and p2 at zero. Why it may help: over a narrow field, tangential distortion
    /// trades against the principal point, which is then poorly determined (on the default
    /// rig at 0.2 px corner noise, OpenCV's own σ for cx was 5.6 px with p1, p2 free and
    /// 2.0 px with them held); a well-centred lens has negligible p1, p2.
    pub fix_tangential: bool,
}

impl Default for IntrinsicsConfig {
    fn default() -> Self {
        IntrinsicsConfig {
            min_corners: 12,
            min_sharpness: 3000.0,
            min_spread_ratio: 0.15,
            min_area_fraction: 0.04,
            min_views: 6,
            max_view_rms_px: 1.0,
            fix_k3: false,
            fix_tangential: false,
        }
    }
}

impl IntrinsicsConfig {
    fn validate(&self) -> Result<(), CalibError> {
        let bad = |field: &'static str, problem: String| Err(CalibError::Config { field, problem });
        if self.min_corners < 6 {
            return bad(
                "min_corners",
                format!("is {}; use at least 6 (a pose needs 4, plus margin)", self.min_corners),
            );
        }
        if self.min_views < 3 {
            return bad("min_views", format!("is {}; Zhang's method needs at least 3 views", self.min_views));
        }
        for (field, v) in [
            ("min_sharpness", self.min_sharpness),
            ("min_spread_ratio", self.min_spread_ratio),
            ("min_area_fraction", self.min_area_fraction),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("is {v}; it must be a non-negative number"));
            }
        }
        if !(self.max_view_rms_px.is_finite() && self.max_view_rms_px > 0.0) {
            return bad("max_view_rms_px", format!("is {}; it must be positive", self.max_view_rms_px));
        }
        Ok(())
    }
}

/// Why a view took no part in the calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    /// Partial: too little of the board is visible or detected.
    TooFewCorners { found: usize, needed: usize },
    /// Out of focus or moving.
    Blurred { sharpness: f64, min: f64 },
    /// Corners nearly on one line.
    Collinear { spread_ratio: f64, min: f64 },
    /// The board covers too little of the frame.
    TooSmall { area_fraction: f64, min: f64 },
    /// Reprojection error far above the others after the first solve.
    HighResidual { rms_px: f64, max: f64 },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TooFewCorners { found, needed } => {
                write!(f, "partial: {found} corners, need {needed} (bring more of the board into frame)")
            }
            RejectReason::Blurred { sharpness, min } => {
                write!(f, "blurred: focus measure {sharpness:.0} below {min:.0} (refocus, hold still)")
            }
            RejectReason::Collinear { spread_ratio, min } => {
                write!(f, "degenerate: corners nearly collinear (spread {spread_ratio:.3} < {min})")
            }
            RejectReason::TooSmall { area_fraction, min } => write!(
                f,
                "degenerate: board covers {:.1} % of the frame, need {:.1} % (move closer)",
                100.0 * area_fraction,
                100.0 * min
            ),
            RejectReason::HighResidual { rms_px, max } => {
                write!(f, "outlier: reprojection RMS {rms_px:.2} px above {max} px (mis-detection or motion)")
            }
        }
    }
}

/// A view left out, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedView {
    /// Index in the input.
    pub index: usize,
    pub label: String,
    pub reason: RejectReason,
}

/// A view used in the final solve.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewResidual {
    /// Index in the input.
    pub index: usize,
    pub label: String,
    pub corners: usize,
    pub rms_px: f64,
    /// The board's pose in this view, from the solve.
    pub camera_from_board: Isometry3<f64>,
}

/// The result of [`calibrate_intrinsics`].
#[derive(Debug, Clone, PartialEq)]
pub struct IntrinsicsCalibration {
    pub intrinsics: CameraIntrinsics,
    /// Overall reprojection RMS over every corner of every used view, px.
    pub rms_px: f64,
    pub views: Vec<ViewResidual>,
    pub rejected: Vec<RejectedView>,
    /// What was solved, for the calibration file.
    pub method: String,
}

/// The first reason a view is unusable for calibration (partial, blurred, collinear, too
/// small), if any: what [`calibrate_intrinsics`] checks before solving, exposed so a tool
/// can tell the operator at capture time.
pub fn screen_view(d: &CharucoDetection, cfg: &IntrinsicsConfig) -> Option<RejectReason> {
    let n = d.corners.len();
    if n < cfg.min_corners {
        return Some(RejectReason::TooFewCorners { found: n, needed: cfg.min_corners });
    }
    if d.sharpness < cfg.min_sharpness {
        return Some(RejectReason::Blurred { sharpness: d.sharpness, min: cfg.min_sharpness });
    }
    let spread = corner_spread_ratio(d);
    if spread < cfg.min_spread_ratio {
        return Some(RejectReason::Collinear { spread_ratio: spread, min: cfg.min_spread_ratio });
    }
    let area = corner_area_fraction(d);
    if area < cfg.min_area_fraction {
        return Some(RejectReason::TooSmall { area_fraction: area, min: cfg.min_area_fraction });
    }
    None
}

/// `sqrt(λmin / λmax)` of the corners' pixel covariance: 0 on a line, 1 for an isotropic spread.
pub(crate) fn corner_spread_ratio(d: &CharucoDetection) -> f64 {
    let n = d.corners.len() as f64;
    if n < 3.0 {
        return 0.0;
    }
    let (sx, sy) = d.corners.iter().fold((0.0, 0.0), |(a, b), c| (a + c.pixel.x, b + c.pixel.y));
    let (mx, my) = (sx / n, sy / n);
    let mut cov = Matrix2::zeros();
    for c in &d.corners {
        let v = nalgebra::Vector2::new(c.pixel.x - mx, c.pixel.y - my);
        cov += v * v.transpose();
    }
    let eig = cov.symmetric_eigen();
    let (lo, hi) = (eig.eigenvalues.min(), eig.eigenvalues.max());
    if hi <= 0.0 {
        return 0.0;
    }
    (lo.max(0.0) / hi).sqrt()
}

/// Area of the corners' bounding box over the image area.
fn corner_area_fraction(d: &CharucoDetection) -> f64 {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for c in &d.corners {
        x0 = x0.min(c.pixel.x);
        y0 = y0.min(c.pixel.y);
        x1 = x1.max(c.pixel.x);
        y1 = y1.max(c.pixel.y);
    }
    let area = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    area / (f64::from(d.width_px) * f64::from(d.height_px)).max(1.0)
}

/// Calibrates the camera from board detections (see [`super::detect_charuco`]).
///
/// Views are screened (partial, blurred, collinear, too small), solved with OpenCV's
/// `calibrateCamera` (Zhang + Levenberg-Marquardt over `fx fy cx cy k1 k2 p1 p2 k3`), views
/// with a reprojection RMS above `cfg.max_view_rms_px` are dropped and the rest solved again.
/// Fails when fewer than `cfg.min_views` usable views remain. Note that views must show the
/// board at several tilts: fronto-parallel views alone do not separate focal length from
/// distance.
pub fn calibrate_intrinsics(
    detections: &[CharucoDetection],
    board: &CharucoBoard,
    cfg: &IntrinsicsConfig,
) -> Result<IntrinsicsCalibration, CalibError> {
    const STEP: &str = "intrinsics calibration";
    board.validate()?;
    cfg.validate()?;
    let Some(first) = detections.first() else {
        return Err(CalibError::TooFewViews { step: STEP, usable: 0, needed: cfg.min_views, rejected: "none".into() });
    };
    for d in detections {
        if d.width_px != first.width_px || d.height_px != first.height_px {
            return Err(CalibError::ImageSize {
                label: d.label.clone(),
                width: d.width_px,
                height: d.height_px,
                expected_w: first.width_px,
                expected_h: first.height_px,
            });
        }
    }
    let mut rejected = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    for (index, d) in detections.iter().enumerate() {
        match screen_view(d, cfg) {
            Some(reason) => rejected.push(RejectedView { index, label: d.label.clone(), reason }),
            None => used.push(index),
        }
    }
    let too_few = |used: usize, rejected: &[RejectedView]| CalibError::TooFewViews {
        step: STEP,
        usable: used,
        needed: cfg.min_views,
        rejected: summarise(rejected),
    };
    if used.len() < cfg.min_views {
        return Err(too_few(used.len(), &rejected));
    }
    let size = (first.width_px, first.height_px);
    let mut solved = solve(detections, &used, size, cfg)?;
    let outliers: Vec<(usize, f64)> =
        solved.per_view.iter().zip(&used).filter(|(e, _)| **e > cfg.max_view_rms_px).map(|(e, i)| (*i, *e)).collect();
    if !outliers.is_empty() {
        for (index, rms_px) in &outliers {
            rejected.push(RejectedView {
                index: *index,
                label: detections[*index].label.clone(),
                reason: RejectReason::HighResidual { rms_px: *rms_px, max: cfg.max_view_rms_px },
            });
        }
        used.retain(|i| !outliers.iter().any(|(o, _)| o == i));
        if used.len() < cfg.min_views {
            return Err(too_few(used.len(), &rejected));
        }
        solved = solve(detections, &used, size, cfg)?;
    }
    rejected.sort_by_key(|r| r.index);
    let views = used
        .iter()
        .zip(solved.per_view.iter().zip(&solved.poses))
        .map(|(&index, (&rms_px, pose))| ViewResidual {
            index,
            label: detections[index].label.clone(),
            corners: detections[index].corners.len(),
            rms_px,
            camera_from_board: *pose,
        })
        .collect();
    let method = format!(
        "opencv calibrateCamera (Zhang + LM), {} ChArUco views, model k1 k2 {} {}",
        used.len(),
        if cfg.fix_tangential { "(p1 p2 fixed at 0)" } else { "p1 p2" },
        if cfg.fix_k3 { "(k3 fixed at 0)" } else { "k3" }
    );
    Ok(IntrinsicsCalibration { intrinsics: solved.intrinsics, rms_px: solved.rms_px, views, rejected, method })
}

fn summarise(rejected: &[RejectedView]) -> String {
    if rejected.is_empty() {
        return "none".into();
    }
    rejected.iter().map(|r| format!("`{}`: {}", r.label, r.reason)).collect::<Vec<_>>().join("; ")
}

struct Solved {
    intrinsics: CameraIntrinsics,
    rms_px: f64,
    per_view: Vec<f64>,
    poses: Vec<Isometry3<f64>>,
}

fn solve(
    detections: &[CharucoDetection],
    used: &[usize],
    (w, h): (u32, u32),
    cfg: &IntrinsicsConfig,
) -> Result<Solved, CalibError> {
    let mut object: Vector<Vector<Point3f>> = Vector::new();
    let mut image: Vector<Vector<Point2f>> = Vector::new();
    for &i in used {
        let d = &detections[i];
        object.push(d.corners.iter().map(|c| Point3f::new(c.board_mm.x as f32, c.board_mm.y as f32, 0.0)).collect());
        image.push(d.corners.iter().map(|c| Point2f::new(c.pixel.x as f32, c.pixel.y as f32)).collect());
    }
    let mut k = Mat::default();
    let mut dist = Mat::default();
    let mut rvecs: Vector<Mat> = Vector::new();
    let mut tvecs: Vector<Mat> = Vector::new();
    let mut std_in = Mat::default();
    let mut std_ex = Mat::default();
    let mut per_view = Mat::default();
    let flags = if cfg.fix_k3 { calib3d::CALIB_FIX_K3 } else { 0 }
        | if cfg.fix_tangential { calib3d::CALIB_ZERO_TANGENT_DIST } else { 0 };
    let criteria = TermCriteria::new(TermCriteria_Type::COUNT as i32 + TermCriteria_Type::EPS as i32, 200, 1e-12)
        .map_err(ocv("termination criteria"))?;
    let rms_px = calib3d::calibrate_camera_extended(
        &object,
        &image,
        Size::new(w as i32, h as i32),
        &mut k,
        &mut dist,
        &mut rvecs,
        &mut tvecs,
        &mut std_in,
        &mut std_ex,
        &mut per_view,
        flags,
        criteria,
    )
    .map_err(ocv("calibrateCamera"))?;
    let at = |m: &Mat, r: i32, c: i32| -> Result<f64, CalibError> {
        m.at_2d::<f64>(r, c).copied().map_err(ocv("reading the calibration result"))
    };
    let flat = |m: &Mat, i: i32| -> Result<f64, CalibError> {
        m.at::<f64>(i).copied().map_err(ocv("reading the calibration result"))
    };
    let mut distortion = [0.0; 5];
    for (i, d) in distortion.iter_mut().enumerate() {
        *d = flat(&dist, i as i32)?;
    }
    let intrinsics = CameraIntrinsics {
        width_px: w,
        height_px: h,
        fx_px: at(&k, 0, 0)?,
        fy_px: at(&k, 1, 1)?,
        cx_px: at(&k, 0, 2)?,
        cy_px: at(&k, 1, 2)?,
        distortion,
    };
    let mut errs = Vec::with_capacity(used.len());
    let mut poses = Vec::with_capacity(used.len());
    for v in 0..used.len() {
        errs.push(flat(&per_view, v as i32)?);
        let r = rvecs.get(v).map_err(ocv("reading rvecs"))?;
        let t = tvecs.get(v).map_err(ocv("reading tvecs"))?;
        poses.push(pose_from_rt(
            &Vector3::new(flat(&r, 0)?, flat(&r, 1)?, flat(&r, 2)?),
            &Vector3::new(flat(&t, 0)?, flat(&t, 1)?, flat(&t, 2)?),
        ));
    }
    let all = [intrinsics.fx_px, intrinsics.fy_px, intrinsics.cx_px, intrinsics.cy_px, rms_px];
    if !all.iter().chain(distortion.iter()).all(|v| v.is_finite()) {
        return Err(CalibError::NotFinite { step: "intrinsics calibration", what: "the camera matrix".into() });
    }
    Ok(Solved { intrinsics, rms_px, per_view: errs, poses })
}

/// An OpenCV rotation vector and translation as an isometry.
pub(crate) fn pose_from_rt(rvec: &Vector3<f64>, tvec: &Vector3<f64>) -> Isometry3<f64> {
    Isometry3::from_parts(Translation3::from(*tvec), UnitQuaternion::from_scaled_axis(*rvec))
}

//! Head-band fiducials: ArUco detection (OpenCV) and registration of the head frame in the
//! arm's base frame from one or more calibrated cameras.
//!
//! Why: the plan lives in the head frame, the needle in the base frame. The head rest gives
//! only a nominal `base_from_head`; the markers on the band, measured once against the head
//! ([`FiducialLayout`]), give the real one at camera rate, which is what tracking compares
//! against the registration a session started from.
//!
//! How: [`detect_markers`] returns each marker's id and 4 sub-pixel corners. Then
//! [`estimate_base_from_head`] seeds a pose per camera with OpenCV's `solvePnP` (IPPE per
//! marker for both planar solutions, then ITERATIVE on every corner that camera saw), keeps
//! the seed with the lowest reprojection over all cameras, and refines it by Levenberg-
//! Marquardt over the 6-dof pose minimising the reprojection of every corner in every camera
//! through the core camera model (distortion included). Pixels follow OpenCV's convention
//! (integer coordinates at pixel centres), as the simulator's do.

use nalgebra::{Isometry3, Matrix6, Point2, Point3, Translation3, UnitQuaternion, Vector3, Vector6};
use opencv::aruco;
use opencv::calib3d;
use opencv::core::{no_array, Mat, Point2d, Point2f, Point3d, Scalar, Vector, CV_64F};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use smp_core::camera::CameraIntrinsics;
use smp_core::fiducial_layout::{ArucoDictionary, FiducialLayout};
use smp_core::image::{GrayImage, RgbImage};
use smp_core::SpecError;
use thiserror::Error;

use crate::cv::{gray_mat, rgb_mat};
use crate::error::{cv_err, VisionError};

/// Why fiducial detection or registration could not give a pose.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FiducialError {
    #[error("fiducial registration was given no camera; pass the detections of at least one calibrated camera")]
    NoCameras,
    #[error(
        "no marker of the band's layout was seen by camera(s) {cameras} ({unknown} detection(s) with ids not in the \
         layout ignored); check that the head band is on, faces the camera(s) and is lit, and that the layout file \
         belongs to this band"
    )]
    NoMarkers { cameras: String, unknown: usize },
    #[error(
        "only {found} layout marker(s) ({corners} corners) seen across cameras {cameras}, the registration needs \
         {needed}; turn the head or move a camera so more of the band is in view, or lower min_markers"
    )]
    TooFewMarkers { found: usize, corners: usize, needed: usize, cameras: String },
    #[error("camera `{label}`: marker {id} has a non-finite corner {corner:?}; the detection is corrupt")]
    BadDetection { label: String, id: u32, corner: [f64; 2] },
    #[error(
        "camera `{label}`: a layout corner projects behind the camera at the estimated pose; check the camera's \
         base_from_camera and the layout"
    )]
    BehindCamera { label: String },
    #[error(
        "fiducial registration residual {rms_px:.2} px RMS exceeds {max_px:.2} px (worst camera `{worst}`); check that \
         camera's calibration and the band layout (a marker moved on the band?)"
    )]
    PoorFit { rms_px: f64, max_px: f64, worst: String },
    #[error("fiducial layout: {0}")]
    Layout(#[from] SpecError),
    #[error("fiducial config: field `{field}` {problem}")]
    Config { field: &'static str, problem: String },
    #[error(transparent)]
    Vision(#[from] VisionError),
}

/// OpenCV detector tuning. The defaults are OpenCV's, with sub-pixel corner refinement on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FiducialDetectConfig {
    /// Half size of the corner refinement window, px (OpenCV `cornerRefinementWinSize`).
    pub corner_refine_win_px: i32,
    /// Iterations of `cornerSubPix`.
    pub corner_refine_max_iterations: i32,
    /// Stop refining when a corner moves less than this, px.
    pub corner_refine_min_accuracy_px: f64,
    /// Detect on linear light (the 8-bit frame decoded from sRGB) rather than on the encoded
    /// levels. Why: an edge pixel half covered by black toner is linear 50 % but sRGB ~74 %,
    /// so on encoded levels the black square looks thinner and `cornerSubPix` pulls every
    /// corner ~0.3 px toward the marker's centre (measured on the simulator's renders:
    /// 0.45-0.52 px worst corner error encoded, see tests/fiducials_on_sim.rs). Set false
    /// for a camera that already delivers linear frames.
    pub linearize_srgb: bool,
}

impl Default for FiducialDetectConfig {
    fn default() -> Self {
        FiducialDetectConfig {
            corner_refine_win_px: 5,
            corner_refine_max_iterations: 50,
            corner_refine_min_accuracy_px: 0.01,
            linearize_srgb: true,
        }
    }
}

impl FiducialDetectConfig {
    pub fn validate(&self) -> Result<(), FiducialError> {
        if !(1..=50).contains(&self.corner_refine_win_px) {
            return Err(FiducialError::Config {
                field: "corner_refine_win_px",
                problem: format!("is {}; use 1..=50 px", self.corner_refine_win_px),
            });
        }
        if !(1..=1000).contains(&self.corner_refine_max_iterations) {
            return Err(FiducialError::Config {
                field: "corner_refine_max_iterations",
                problem: format!("is {}; use 1..=1000", self.corner_refine_max_iterations),
            });
        }
        if !(self.corner_refine_min_accuracy_px.is_finite() && self.corner_refine_min_accuracy_px > 0.0) {
            return Err(FiducialError::Config {
                field: "corner_refine_min_accuracy_px",
                problem: format!("is {}; use a small positive number such as 0.01", self.corner_refine_min_accuracy_px),
            });
        }
        Ok(())
    }
}

/// One ArUco marker found in an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkerDetection {
    pub dictionary: ArucoDictionary,
    pub id: u32,
    /// Sub-pixel corners in ArUco order (top-left, top-right, bottom-right, bottom-left of
    /// the printed pattern), OpenCV pixel-centre convention.
    pub corners_px: [[f64; 2]; 4],
}

/// Finds every marker of the given dictionaries in `image` (`label` names the view in
/// errors). Sorted by dictionary then id. An image without markers gives an empty list.
pub fn detect_markers(
    image: &RgbImage,
    label: &str,
    dictionaries: &[ArucoDictionary],
    cfg: &FiducialDetectConfig,
) -> Result<Vec<MarkerDetection>, FiducialError> {
    cfg.validate()?;
    let expected = image.width as usize * image.height as usize * 3;
    if image.width == 0 || image.height == 0 {
        return Err(
            VisionError::EmptyImage { label: label.to_string(), width: image.width, height: image.height }.into()
        );
    }
    if image.data.len() != expected {
        return Err(VisionError::BufferSize {
            label: label.to_string(),
            what: "RGB",
            width: image.width,
            height: image.height,
            found: image.data.len(),
            expected,
        }
        .into());
    }
    let mut gray = Mat::default();
    if cfg.linearize_srgb {
        let lut = srgb_to_linear_lut();
        let data: Vec<u8> = image
            .data
            .chunks_exact(3)
            .map(|p| {
                let y = 0.2126 * lut[p[0] as usize] + 0.7152 * lut[p[1] as usize] + 0.0722 * lut[p[2] as usize];
                (255.0 * y).round().clamp(0.0, 255.0) as u8
            })
            .collect();
        let lin = GrayImage { width: image.width, height: image.height, data };
        let m = gray_mat(&lin, label)?;
        m.copy_to(&mut gray).map_err(cv_err("copying the linear grey frame", label))?;
    } else {
        let rgb = rgb_mat(image, label)?;
        imgproc::cvt_color(&rgb, &mut gray, imgproc::COLOR_RGB2GRAY, 0).map_err(cv_err("RGB to grey", label))?;
    }
    let mut params = aruco::DetectorParameters::create().map_err(cv_err("ArUco detector parameters", label))?;
    params.set_corner_refinement_method(aruco::CORNER_REFINE_SUBPIX);
    params.set_corner_refinement_win_size(cfg.corner_refine_win_px);
    params.set_corner_refinement_max_iterations(cfg.corner_refine_max_iterations);
    params.set_corner_refinement_min_accuracy(cfg.corner_refine_min_accuracy_px);

    let mut dicts = dictionaries.to_vec();
    dicts.sort();
    dicts.dedup();
    let mut out = Vec::new();
    for d in dicts {
        let dict = aruco::get_predefined_dictionary_i32(d.opencv_code())
            .map_err(cv_err("loading the ArUco dictionary", label))?;
        let mut corners: Vector<Vector<Point2f>> = Vector::new();
        let mut ids: Vector<i32> = Vector::new();
        let mut rejected: Vector<Vector<Point2f>> = Vector::new();
        aruco::detect_markers(&gray, &dict, &mut corners, &mut ids, &params, &mut rejected)
            .map_err(cv_err("detecting ArUco markers", label))?;
        for (c, id) in corners.iter().zip(ids.iter()) {
            let Ok(id) = u32::try_from(id) else { continue };
            if c.len() != 4 {
                continue;
            }
            let mut corners_px = [[0.0; 2]; 4];
            for (k, p) in c.iter().enumerate() {
                corners_px[k] = [f64::from(p.x), f64::from(p.y)];
            }
            out.push(MarkerDetection { dictionary: d, id, corners_px });
        }
    }
    out.sort_by_key(|a| (a.dictionary, a.id));
    Ok(out)
}

/// sRGB 8-bit level to linear light in [0, 1] (IEC 61966-2-1).
fn srgb_to_linear_lut() -> [f64; 256] {
    let mut lut = [0.0; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        let c = i as f64 / 255.0;
        *v = if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) };
    }
    lut
}

/// Detects the markers of the layout's dictionaries (ids outside the layout are kept: the
/// registration counts and ignores them).
pub fn detect_layout_markers(
    image: &RgbImage,
    label: &str,
    layout: &FiducialLayout,
    cfg: &FiducialDetectConfig,
) -> Result<Vec<MarkerDetection>, FiducialError> {
    detect_markers(image, label, &layout.dictionaries(), cfg)
}

/// What one calibrated camera saw at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraMarkers {
    /// The camera's name, for messages ("overview", "flange").
    pub label: String,
    pub intrinsics: CameraIntrinsics,
    pub base_from_camera: Isometry3<f64>,
    pub markers: Vec<MarkerDetection>,
}

/// Registration tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Fewest layout markers (over all cameras, each counted once per camera) to accept.
    pub min_markers: usize,
    /// A fit worse than this (RMS over all corners) is an error, not a pose.
    pub max_reprojection_rms_px: f64,
    /// Levenberg-Marquardt iterations of the multi-camera refinement.
    pub max_iterations: usize,
    /// A marker whose corners reproject worse than this (RMS) at the joint fit is dropped
    /// (with a warning) and the pose refitted, while more than `min_markers` remain, px.
    pub max_marker_rms_px: f64,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig { min_markers: 1, max_reprojection_rms_px: 2.0, max_iterations: 50, max_marker_rms_px: 1.0 }
    }
}

/// Residual of one camera at the registered pose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraResidual {
    pub label: String,
    /// Layout marker ids this camera contributed, sorted.
    pub marker_ids: Vec<u32>,
    pub rms_px: f64,
}

/// The head frame registered in the base frame from the band's markers.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadRegistration {
    pub base_from_head: Isometry3<f64>,
    /// Layout marker ids used (over all cameras), sorted, unique.
    pub markers_used: Vec<u32>,
    /// RMS over every corner of every camera of the reprojection error, px.
    pub reprojection_rms_px: f64,
    /// Per camera that contributed, in input order.
    pub cameras: Vec<CameraResidual>,
    /// Detections whose id is not in the layout (another band, a stray print), ignored.
    pub unknown_markers: usize,
    /// Usable-but-odd input (a marker id seen twice in one view, dropped).
    pub warnings: Vec<String>,
}

/// One corner: which camera saw it, where it is on the head, where it was seen.
#[derive(Debug, Clone, Copy)]
struct Obs {
    cam: usize,
    id: u32,
    head: Point3<f64>,
    px: Point2<f64>,
}

/// Registers the head frame in the base frame from the markers seen by calibrated cameras
/// (module doc for the method). Unknown ids are ignored and counted; a camera that saw no
/// layout marker contributes nothing (an error only when no camera saw one).
pub fn estimate_base_from_head(
    cameras: &[CameraMarkers],
    layout: &FiducialLayout,
    cfg: &RegistrationConfig,
) -> Result<HeadRegistration, FiducialError> {
    layout.validate()?;
    if !(cfg.max_reprojection_rms_px.is_finite() && cfg.max_reprojection_rms_px > 0.0) {
        return Err(FiducialError::Config {
            field: "max_reprojection_rms_px",
            problem: format!("is {}; use a positive number of pixels such as 2", cfg.max_reprojection_rms_px),
        });
    }
    if cfg.max_marker_rms_px.is_nan() || cfg.max_marker_rms_px <= 0.0 {
        return Err(FiducialError::Config {
            field: "max_marker_rms_px",
            problem: format!("is {}; use a positive number of pixels such as 1", cfg.max_marker_rms_px),
        });
    }
    if cameras.is_empty() {
        return Err(FiducialError::NoCameras);
    }
    let names = || cameras.iter().map(|c| format!("`{}`", c.label)).collect::<Vec<_>>().join(", ");
    let mut obs: Vec<Obs> = Vec::new();
    let mut unknown = 0usize;
    let mut warnings = Vec::new();
    let mut per_cam_ids: Vec<Vec<u32>> = vec![Vec::new(); cameras.len()];
    for (ci, cam) in cameras.iter().enumerate() {
        cam.intrinsics.validate("camera", &cam.label)?;
        for det in &cam.markers {
            if let Some(bad) = det.corners_px.iter().find(|c| !(c[0].is_finite() && c[1].is_finite())) {
                return Err(FiducialError::BadDetection { label: cam.label.clone(), id: det.id, corner: *bad });
            }
            let Some(marker) = layout.marker(det.dictionary, det.id) else {
                unknown += 1;
                continue;
            };
            let twice = cam.markers.iter().filter(|o| o.dictionary == det.dictionary && o.id == det.id).count() > 1;
            if twice {
                let w = format!("camera `{}`: marker {} seen more than once; both dropped", cam.label, det.id);
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
                continue;
            }
            let Some(head) = marker.corners_head() else { continue };
            for (h, p) in head.iter().zip(&det.corners_px) {
                obs.push(Obs { cam: ci, id: det.id, head: *h, px: Point2::new(p[0], p[1]) });
            }
            per_cam_ids[ci].push(det.id);
        }
    }
    let found: usize = per_cam_ids.iter().map(Vec::len).sum();
    if found == 0 {
        return Err(FiducialError::NoMarkers { cameras: names(), unknown });
    }
    if found < cfg.min_markers.max(1) {
        return Err(FiducialError::TooFewMarkers {
            found,
            corners: obs.len(),
            needed: cfg.min_markers,
            cameras: names(),
        });
    }

    // Seeds: per camera, OpenCV's PnP.
    let mut seeds: Vec<Isometry3<f64>> = Vec::new();
    for (ci, cam) in cameras.iter().enumerate() {
        let mine: Vec<Obs> = obs.iter().filter(|o| o.cam == ci).copied().collect();
        if mine.is_empty() {
            continue;
        }
        for camera_from_head in pnp_seeds(&cam.label, &cam.intrinsics, &mine)? {
            seeds.push(cam.base_from_camera * camera_from_head);
        }
    }
    let camera_from_base: Vec<Isometry3<f64>> = cameras.iter().map(|c| c.base_from_camera.inverse()).collect();
    let intr: Vec<CameraIntrinsics> = cameras.iter().map(|c| c.intrinsics).collect();
    let cost = |pose: &Isometry3<f64>| -> f64 {
        residuals(pose, &obs, &camera_from_base, &intr).map_or(f64::INFINITY, |r| r.iter().map(|v| v * v).sum())
    };
    let mut best: Option<(f64, Isometry3<f64>)> = None;
    for s in seeds {
        let c = cost(&s);
        if c.is_finite() && best.is_none_or(|(bc, _)| c < bc) {
            best = Some((c, s));
        }
    }
    let Some((_, seed)) = best else {
        let label = cameras.first().map(|c| c.label.clone()).unwrap_or_default();
        return Err(FiducialError::BehindCamera { label });
    };
    let mut base_from_head = refine(seed, &obs, &camera_from_base, &intr, cfg.max_iterations);

    // A marker seen nearly edge-on, smudged, or shifted on the band disagrees with the others:
    // drop the worst one while it is off by more than `max_marker_rms_px`, and refit.
    while let Some(res) = residuals(&base_from_head, &obs, &camera_from_base, &intr) {
        let mut worst: Option<(f64, usize, u32)> = None;
        for (ci, ids) in per_cam_ids.iter().enumerate() {
            for id in ids {
                let (sq, n) = obs
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.cam == ci && o.id == *id)
                    .fold((0.0, 0usize), |(s, n), (k, _)| (s + res[2 * k].powi(2) + res[2 * k + 1].powi(2), n + 1));
                let rms = (sq / n.max(1) as f64).sqrt();
                if worst.is_none_or(|(w, _, _)| rms > w) {
                    worst = Some((rms, ci, *id));
                }
            }
        }
        let remaining: usize = per_cam_ids.iter().map(Vec::len).sum();
        match worst {
            Some((rms, ci, id)) if rms > cfg.max_marker_rms_px && remaining > cfg.min_markers.max(1) => {
                obs.retain(|o| !(o.cam == ci && o.id == id));
                per_cam_ids[ci].retain(|i| *i != id);
                let label = cameras.get(ci).map_or("?", |c| c.label.as_str());
                warnings.push(format!(
                    "camera `{label}`: marker {id} reprojects {rms:.2} px RMS off the others and was dropped \
                     (seen edge-on, smudged, or moved on the band?)"
                ));
                base_from_head = refine(base_from_head, &obs, &camera_from_base, &intr, cfg.max_iterations);
            }
            _ => break,
        }
    }

    let res = residuals(&base_from_head, &obs, &camera_from_base, &intr).ok_or_else(|| {
        FiducialError::BehindCamera { label: cameras.first().map(|c| c.label.clone()).unwrap_or_default() }
    })?;
    let total_sq: f64 = res.iter().map(|v| v * v).sum();
    let reprojection_rms_px = (total_sq / obs.len() as f64).sqrt();
    let mut cams = Vec::new();
    for (ci, cam) in cameras.iter().enumerate() {
        let n = obs.iter().filter(|o| o.cam == ci).count();
        if n == 0 {
            continue;
        }
        let sq: f64 = obs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.cam == ci)
            .map(|(k, _)| res[2 * k].powi(2) + res[2 * k + 1].powi(2))
            .sum();
        let mut ids = per_cam_ids[ci].clone();
        ids.sort_unstable();
        cams.push(CameraResidual { label: cam.label.clone(), marker_ids: ids, rms_px: (sq / n as f64).sqrt() });
    }
    if reprojection_rms_px > cfg.max_reprojection_rms_px {
        let worst =
            cams.iter().max_by(|a, b| a.rms_px.total_cmp(&b.rms_px)).map(|c| c.label.clone()).unwrap_or_default();
        return Err(FiducialError::PoorFit { rms_px: reprojection_rms_px, max_px: cfg.max_reprojection_rms_px, worst });
    }
    let mut markers_used: Vec<u32> = per_cam_ids.concat();
    markers_used.sort_unstable();
    markers_used.dedup();
    Ok(HeadRegistration {
        base_from_head,
        markers_used,
        reprojection_rms_px,
        cameras: cams,
        unknown_markers: unknown,
        warnings,
    })
}

/// Pixel residuals `[dx0, dy0, dx1, ...]` of every corner at `base_from_head`; `None` when a
/// corner falls behind its camera.
fn residuals(
    base_from_head: &Isometry3<f64>,
    obs: &[Obs],
    camera_from_base: &[Isometry3<f64>],
    intr: &[CameraIntrinsics],
) -> Option<Vec<f64>> {
    let mut r = Vec::with_capacity(2 * obs.len());
    for o in obs {
        let p = intr[o.cam].project(&(camera_from_base[o.cam] * (base_from_head * o.head)))?;
        r.push(p.x - o.px.x);
        r.push(p.y - o.px.y);
    }
    Some(r)
}

/// `pose * Exp(delta)`: rotation vector `delta[0..3]` (rad) and translation `delta[3..6]`
/// (mm), both in the head frame, so the rotation turns about the head centre (well
/// conditioned; a base-frame rotation would swing the head about the arm's base).
fn perturb(pose: &Isometry3<f64>, delta: &Vector6<f64>) -> Isometry3<f64> {
    let d = Isometry3::from_parts(
        Translation3::new(delta[3], delta[4], delta[5]),
        UnitQuaternion::from_scaled_axis(Vector3::new(delta[0], delta[1], delta[2])),
    );
    pose * d
}

/// Levenberg-Marquardt on the 6-dof pose with a central-difference Jacobian (a few dozen
/// corners: cheap, and it goes through exactly the camera model the cost uses).
fn refine(
    seed: Isometry3<f64>,
    obs: &[Obs],
    camera_from_base: &[Isometry3<f64>],
    intr: &[CameraIntrinsics],
    max_iterations: usize,
) -> Isometry3<f64> {
    let sq = |r: &[f64]| r.iter().map(|v| v * v).sum::<f64>();
    let mut pose = seed;
    let Some(mut r) = residuals(&pose, obs, camera_from_base, intr) else { return pose };
    let mut lambda = 1e-3;
    for _ in 0..max_iterations {
        let mut jac: Vec<Vector6<f64>> = vec![Vector6::zeros(); r.len()];
        let mut ok = true;
        for k in 0..6 {
            let h = if k < 3 { 1e-7 } else { 1e-5 };
            let mut d = Vector6::zeros();
            d[k] = h;
            let plus = residuals(&perturb(&pose, &d), obs, camera_from_base, intr);
            d[k] = -h;
            let minus = residuals(&perturb(&pose, &d), obs, camera_from_base, intr);
            let (Some(p), Some(m)) = (plus, minus) else {
                ok = false;
                break;
            };
            for (row, (a, b)) in jac.iter_mut().zip(p.iter().zip(&m)) {
                row[k] = (a - b) / (2.0 * h);
            }
        }
        if !ok {
            break;
        }
        let mut jtj = Matrix6::zeros();
        let mut jtr = Vector6::zeros();
        for (row, v) in jac.iter().zip(&r) {
            jtj += row * row.transpose();
            jtr += row * *v;
        }
        let before = sq(&r);
        let mut improved = false;
        for _ in 0..10 {
            let mut a = jtj;
            for i in 0..6 {
                a[(i, i)] += lambda * jtj[(i, i)].max(1e-12);
            }
            let Some(delta) = a.cholesky().map(|c| c.solve(&(-jtr))) else {
                lambda *= 10.0;
                continue;
            };
            let cand = perturb(&pose, &delta);
            if let Some(rc) = residuals(&cand, obs, camera_from_base, intr) {
                if sq(&rc) < before {
                    pose = cand;
                    r = rc;
                    lambda = (lambda * 0.1).max(1e-9);
                    improved = true;
                    if delta.norm() < 1e-10 {
                        return pose;
                    }
                    break;
                }
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    pose
}

/// OpenCV PnP seeds of `camera_from_head` from one camera's corners: both IPPE solutions of
/// each marker, then ITERATIVE over all corners from the best of those.
fn pnp_seeds(label: &str, intr: &CameraIntrinsics, obs: &[Obs]) -> Result<Vec<Isometry3<f64>>, FiducialError> {
    let k = mat_from(3, 3, &[intr.fx_px, 0.0, intr.cx_px, 0.0, intr.fy_px, intr.cy_px, 0.0, 0.0, 1.0], label)?;
    let dist = mat_from(1, 5, &intr.distortion, label)?;
    let mut seeds = Vec::new();
    for quad in obs.chunks(4) {
        if quad.len() < 4 {
            continue;
        }
        let object: Vector<Point3d> = quad.iter().map(|o| Point3d::new(o.head.x, o.head.y, o.head.z)).collect();
        let image: Vector<Point2d> = quad.iter().map(|o| Point2d::new(o.px.x, o.px.y)).collect();
        let mut rvecs: Vector<Mat> = Vector::new();
        let mut tvecs: Vector<Mat> = Vector::new();
        let n = calib3d::solve_pnp_generic(
            &object,
            &image,
            &k,
            &dist,
            &mut rvecs,
            &mut tvecs,
            false,
            calib3d::SolvePnPMethod::SOLVEPNP_IPPE,
            &no_array(),
            &no_array(),
            &mut no_array(),
        )
        .map_err(cv_err("solvePnP (IPPE) on one marker", label))?;
        for i in 0..usize::try_from(n).unwrap_or(0).min(rvecs.len()) {
            let (Ok(r), Ok(t)) = (rvecs.get(i), tvecs.get(i)) else { continue };
            if let Some(p) = iso_from(&r, &t) {
                seeds.push(p);
            }
        }
    }
    // All corners of this camera together, from the best single-marker seed.
    let cost = |p: &Isometry3<f64>| -> f64 {
        obs.iter().map(|o| intr.project(&(p * o.head)).map_or(f64::INFINITY, |q| (q - o.px).norm_squared())).sum()
    };
    let best = seeds.iter().copied().min_by(|a, b| cost(a).total_cmp(&cost(b)));
    if let (Some(b), true) = (best, obs.len() >= 8) {
        let object: Vector<Point3d> = obs.iter().map(|o| Point3d::new(o.head.x, o.head.y, o.head.z)).collect();
        let image: Vector<Point2d> = obs.iter().map(|o| Point2d::new(o.px.x, o.px.y)).collect();
        let rv = b.rotation.scaled_axis();
        let tv = b.translation.vector;
        let mut rvec = mat_from(3, 1, &[rv.x, rv.y, rv.z], label)?;
        let mut tvec = mat_from(3, 1, &[tv.x, tv.y, tv.z], label)?;
        let ok =
            calib3d::solve_pnp(&object, &image, &k, &dist, &mut rvec, &mut tvec, true, calib3d::SOLVEPNP_ITERATIVE)
                .map_err(cv_err("solvePnP (ITERATIVE) on all markers", label))?;
        if ok {
            if let Some(p) = iso_from(&rvec, &tvec) {
                seeds.push(p);
            }
        }
    }
    Ok(seeds)
}

fn mat_from(rows: i32, cols: i32, values: &[f64], label: &str) -> Result<Mat, FiducialError> {
    let mut m = Mat::new_rows_cols_with_default(rows, cols, CV_64F, Scalar::all(0.0))
        .map_err(cv_err("allocating a matrix", label))?;
    for (i, v) in values.iter().enumerate() {
        *m.at_mut::<f64>(i as i32).map_err(cv_err("filling a matrix", label))? = *v;
    }
    Ok(m)
}

/// Rodrigues vector + translation (3x1 CV_64F) to an isometry; `None` for a malformed Mat.
fn iso_from(rvec: &Mat, tvec: &Mat) -> Option<Isometry3<f64>> {
    let g = |m: &Mat, i: i32| m.at::<f64>(i).ok().copied().filter(|v| v.is_finite());
    let r = Vector3::new(g(rvec, 0)?, g(rvec, 1)?, g(rvec, 2)?);
    let t = Translation3::new(g(tvec, 0)?, g(tvec, 1)?, g(tvec, 2)?);
    Some(Isometry3::from_parts(t, UnitQuaternion::from_scaled_axis(r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Rng;
    use proptest::test_runner::{RngAlgorithm, TestRng};
    use smp_core::fiducial_layout::LayoutMarker;
    use smp_core::geometry::PoseSpec;

    fn intr() -> CameraIntrinsics {
        CameraIntrinsics {
            width_px: 1280,
            height_px: 960,
            fx_px: 1500.0,
            fy_px: 1500.0,
            cx_px: 640.0,
            cy_px: 480.0,
            distortion: [-0.05, 0.01, 0.0, 0.0, 0.0],
        }
    }

    /// Four 16 mm markers at ±30° and ±60° around the front of a 100 mm head.
    fn layout() -> FiducialLayout {
        let markers = [(0u32, 30.0f64), (1, -30.0), (2, 60.0), (3, -60.0)]
            .map(|(id, az)| {
                let a = az.to_radians();
                // Marker +z outward (head x/y), +y up (head z).
                let z = Vector3::new(a.cos(), a.sin(), 0.0);
                let y = Vector3::z();
                let x = y.cross(&z);
                let rot = nalgebra::Rotation3::from_basis_unchecked(&[x, y, z]);
                let pose = Isometry3::from_parts(
                    Translation3::from(z * 100.0 + Vector3::new(0.0, 0.0, 20.0)),
                    UnitQuaternion::from_rotation_matrix(&rot),
                );
                LayoutMarker::from_pose(id, ArucoDictionary::Dict4x4_50, 16.0, &pose)
            })
            .to_vec();
        FiducialLayout::new("test", markers).expect("valid layout")
    }

    /// A camera `dist` mm in front of the head looking back at it (+z camera = -x head).
    fn camera(base_from_head: &Isometry3<f64>, yaw_deg: f64, dist: f64) -> Isometry3<f64> {
        let a = yaw_deg.to_radians();
        let z = -Vector3::new(a.cos(), a.sin(), 0.0);
        let y = -Vector3::z();
        let x = y.cross(&z);
        let rot = nalgebra::Rotation3::from_basis_unchecked(&[x, y, z]);
        base_from_head
            * Isometry3::from_parts(
                Translation3::from(-z * dist + Vector3::new(0.0, 0.0, 20.0)),
                UnitQuaternion::from_rotation_matrix(&rot),
            )
    }

    fn observe(
        label: &str,
        bfc: Isometry3<f64>,
        bfh: &Isometry3<f64>,
        layout: &FiducialLayout,
        noise_px: f64,
        seed: u64,
    ) -> CameraMarkers {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
        let cfh = bfc.inverse() * bfh;
        let markers = layout
            .markers
            .iter()
            .filter_map(|m| {
                let c = m.corners_head()?;
                let mut corners_px = [[0.0; 2]; 4];
                for (k, p) in c.iter().enumerate() {
                    let q = intr().project(&(cfh * p))?;
                    let mut n =
                        || noise_px * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 3f64.sqrt();
                    corners_px[k] = [q.x + n(), q.y + n()];
                }
                Some(MarkerDetection { dictionary: m.dictionary, id: m.id, corners_px })
            })
            .collect();
        CameraMarkers { label: label.into(), intrinsics: intr(), base_from_camera: bfc, markers }
    }

    fn head_pose() -> Isometry3<f64> {
        PoseSpec { translation_mm: [250.0, 3.0, 150.0], rpy_deg: [2.0, 25.0, -4.0] }.to_isometry()
    }

    #[test]
    fn exact_corners_give_the_exact_pose_single_and_multi_camera() {
        let l = layout();
        let bfh = head_pose();
        // A camera whose view is slightly off from where the seed would be exact.
        let cams = [observe("front", camera(&bfh, 5.0, 400.0), &bfh, &l, 0.0, 1)];
        let reg = estimate_base_from_head(&cams, &l, &RegistrationConfig::default()).expect("registers");
        let err = (reg.base_from_head.translation.vector - bfh.translation.vector).norm();
        assert!(err < 1e-6, "translation error {err} mm");
        assert!(reg.base_from_head.rotation.angle_to(&bfh.rotation) < 1e-8);
        assert_eq!(reg.markers_used, vec![0, 1, 2, 3]);
        assert!(reg.reprojection_rms_px < 1e-6);
        let two = [
            observe("left", camera(&bfh, 40.0, 400.0), &bfh, &l, 0.0, 2),
            observe("right", camera(&bfh, -40.0, 400.0), &bfh, &l, 0.0, 3),
        ];
        let reg = estimate_base_from_head(&two, &l, &RegistrationConfig::default()).expect("registers");
        assert!((reg.base_from_head.translation.vector - bfh.translation.vector).norm() < 1e-6);
        assert_eq!(reg.cameras.len(), 2);
    }

    #[test]
    fn two_cameras_beat_one_under_noise() {
        let l = layout();
        let bfh = head_pose();
        let mut one_sq = 0.0;
        let mut two_sq = 0.0;
        for seed in 0..10u64 {
            let a = observe("left", camera(&bfh, 30.0, 400.0), &bfh, &l, 0.3, seed * 2);
            let b = observe("right", camera(&bfh, -30.0, 400.0), &bfh, &l, 0.3, seed * 2 + 1);
            let cfg = RegistrationConfig::default();
            let r1 = estimate_base_from_head(std::slice::from_ref(&a), &l, &cfg).expect("one");
            let r2 = estimate_base_from_head(&[a, b], &l, &cfg).expect("two");
            one_sq += (r1.base_from_head.translation.vector - bfh.translation.vector).norm_squared();
            two_sq += (r2.base_from_head.translation.vector - bfh.translation.vector).norm_squared();
        }
        let (one, two) = ((one_sq / 10.0).sqrt(), (two_sq / 10.0).sqrt());
        assert!(two < one, "two cameras {two} mm vs one {one} mm");
        assert!(two < 0.5, "two cameras {two} mm");
    }

    #[test]
    fn unknown_ids_are_counted_and_missing_markers_named() {
        let l = layout();
        let bfh = head_pose();
        let mut cam = observe("overview", camera(&bfh, 0.0, 400.0), &bfh, &l, 0.0, 4);
        let mut stray = cam.markers[0].clone();
        stray.id = 42;
        cam.markers.push(stray.clone());
        let reg = estimate_base_from_head(std::slice::from_ref(&cam), &l, &RegistrationConfig::default()).expect("ok");
        assert_eq!(reg.unknown_markers, 1);
        // Nothing from the layout: the error names the camera and the count of strays.
        let empty = CameraMarkers { markers: vec![stray], ..cam.clone() };
        let err = estimate_base_from_head(&[empty], &l, &RegistrationConfig::default()).expect_err("no markers");
        let msg = err.to_string();
        assert!(msg.contains("`overview`") && msg.contains("1 detection"), "{msg}");
        assert!(matches!(
            estimate_base_from_head(&[], &l, &RegistrationConfig::default()),
            Err(FiducialError::NoCameras)
        ));
        let cfg = RegistrationConfig { min_markers: 5, ..RegistrationConfig::default() };
        assert!(matches!(
            estimate_base_from_head(std::slice::from_ref(&cam), &l, &cfg),
            Err(FiducialError::TooFewMarkers { found: 4, .. })
        ));
        // Corrupt corners are an error naming the camera, never a panic.
        let mut bad = cam.clone();
        bad.markers[1].corners_px[2][0] = f64::NAN;
        assert!(matches!(
            estimate_base_from_head(&[bad], &l, &RegistrationConfig::default()),
            Err(FiducialError::BadDetection { id: 1, .. })
        ));
        // A moved marker makes a poor fit, reported as such.
        let mut moved = cam;
        for c in &mut moved.markers[0].corners_px {
            c[0] += 25.0;
        }
        let r =
            estimate_base_from_head(std::slice::from_ref(&moved), &l, &RegistrationConfig::default()).expect("refits");
        assert_eq!(r.markers_used, vec![1, 2, 3]);
        assert!(r.warnings.iter().any(|w| w.contains("marker 0")), "{:?}", r.warnings);
        assert!((r.base_from_head.translation.vector - bfh.translation.vector).norm() < 1e-6);
        // Without the outlier rejection the same input is a poor fit, reported as such.
        let cfg = RegistrationConfig {
            max_reprojection_rms_px: 1.0,
            max_marker_rms_px: 1e3,
            ..RegistrationConfig::default()
        };
        assert!(matches!(estimate_base_from_head(&[moved], &l, &cfg), Err(FiducialError::PoorFit { .. })));
    }

    #[test]
    fn detector_finds_nothing_in_a_blank_frame_and_refuses_bad_buffers() {
        let img = RgbImage::new(64, 48, [128, 128, 128]);
        let dets = detect_markers(&img, "blank", &[ArucoDictionary::Dict4x4_50], &FiducialDetectConfig::default())
            .expect("runs");
        assert!(dets.is_empty());
        let bad = RgbImage { width: 64, height: 48, data: vec![0; 10] };
        assert!(detect_markers(&bad, "cut", &[ArucoDictionary::Dict4x4_50], &FiducialDetectConfig::default()).is_err());
        let cfg = FiducialDetectConfig { corner_refine_win_px: 0, ..FiducialDetectConfig::default() };
        assert!(matches!(detect_markers(&img, "x", &[], &cfg), Err(FiducialError::Config { .. })));
    }
}

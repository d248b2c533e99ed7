//! Hand-eye calibration: `flange_from_camera` (X) from arm poses `base_from_flange` (A_i)
//! and board poses `camera_from_board` (B_i), the board fixed in the base frame (Z):
//! `A_i X B_i = Z` for every view (AX = XB between view pairs).
//!
//! OpenCV's five closed-form methods (Tsai, Park, Horaud, Andreff, Daniilidis) each give a
//! start; the one most consistent with the views is refined by Levenberg-Marquardt over X
//! and Z together, on the board-pose consistency ([`calibrate_hand_eye`]) or, when the
//! corners are at hand, on their reprojection error ([`calibrate_hand_eye_from_views`]),
//! which weights each view by what the image actually measured.

use nalgebra::{DVector, Isometry3, Matrix3, Point2, Translation3, UnitQuaternion, Vector3};
use opencv::calib3d;
use opencv::core::{Mat, Point2f, Point3f, TermCriteria, TermCriteria_Type, Vector};
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use smp_core::camera::CameraIntrinsics;

use super::intrinsics::{corner_spread_ratio, pose_from_rt};
use super::lm::{levenberg_marquardt, perturb, pose_delta};
use super::{ocv, CalibError, CharucoDetection};

/// Tuning of the motion checks and the refinement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandEyeConfig {
    /// Fewest views (arm poses with a board view).
    pub min_views: usize,
    /// A relative motion counts as a rotation when it turns by at least this much.
    pub min_rotation_deg: f64,
    /// The rotation axes must include two at least this far apart (else the rotation about
    /// the common axis and the translation along it are unobservable).
    pub min_axis_separation_deg: f64,
    /// Length that converts a rotation residual (rad) to mm in the pose-consistency cost:
    /// about the board's distance from the camera.
    pub lever_mm: f64,
}

impl Default for HandEyeConfig {
    fn default() -> Self {
        HandEyeConfig { min_views: 5, min_rotation_deg: 3.0, min_axis_separation_deg: 20.0, lever_mm: 80.0 }
    }
}

/// One of OpenCV's closed-form solutions and how consistent it is with the views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandEyeCandidate {
    pub method: String,
    pub rotation_residual_deg: f64,
    pub translation_residual_mm: f64,
}

/// The result of a hand-eye calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct HandEyeCalibration {
    pub flange_from_camera: Isometry3<f64>,
    /// Where the board was, a by-product of the solve.
    pub base_from_board: Isometry3<f64>,
    /// RMS over views of the angle of `Z⁻¹ A_i X B_i` (identity when consistent), degrees.
    pub rotation_residual_deg: f64,
    /// RMS over views of its translation, mm.
    pub translation_residual_mm: f64,
    /// Corner reprojection RMS with the refined X and Z, when refined on corners.
    pub reprojection_rms_px: Option<f64>,
    /// The closed-form start chosen and the refinement, e.g. `park + LM(reprojection)`.
    pub method: String,
    /// Every closed-form method tried, as a record for the engineer.
    pub candidates: Vec<HandEyeCandidate>,
}

const STEP: &str = "hand-eye calibration";

/// The board's pose in one view, by OpenCV's IPPE (planar) and a Levenberg-Marquardt polish.
pub fn board_pose(d: &CharucoDetection, intrinsics: &CameraIntrinsics) -> Result<Isometry3<f64>, CalibError> {
    let fail = |reason: String| CalibError::Pose { label: d.label.clone(), reason };
    if d.corners.len() < 4 {
        return Err(fail(format!("{} corners, need at least 4", d.corners.len())));
    }
    if corner_spread_ratio(d) < 0.05 {
        return Err(fail("the corners are nearly collinear; the pose is undetermined".into()));
    }
    let object: Vector<Point3f> =
        d.corners.iter().map(|c| Point3f::new(c.board_mm.x as f32, c.board_mm.y as f32, 0.0)).collect();
    let image: Vector<Point2f> = d.corners.iter().map(|c| Point2f::new(c.pixel.x as f32, c.pixel.y as f32)).collect();
    let k = Mat::from_slice_2d(&[
        [intrinsics.fx_px, 0.0, intrinsics.cx_px],
        [0.0, intrinsics.fy_px, intrinsics.cy_px],
        [0.0, 0.0, 1.0],
    ])
    .map_err(ocv("camera matrix"))?;
    let dist = Mat::from_slice(&intrinsics.distortion).map_err(ocv("distortion"))?;
    let mut rvec = Mat::default();
    let mut tvec = Mat::default();
    let ok = calib3d::solve_pnp(&object, &image, &k, &dist, &mut rvec, &mut tvec, false, calib3d::SOLVEPNP_IPPE)
        .map_err(ocv("solvePnP"))?;
    if !ok {
        return Err(fail("solvePnP found no pose".into()));
    }
    let criteria = TermCriteria::new(TermCriteria_Type::COUNT as i32 + TermCriteria_Type::EPS as i32, 50, 1e-12)
        .map_err(ocv("termination criteria"))?;
    calib3d::solve_pnp_refine_lm(&object, &image, &k, &dist, &mut rvec, &mut tvec, criteria)
        .map_err(ocv("solvePnPRefineLM"))?;
    let v = |m: &Mat, i: i32| m.at::<f64>(i).copied().map_err(ocv("reading the pose"));
    let r = Vector3::new(v(&rvec, 0)?, v(&rvec, 1)?, v(&rvec, 2)?);
    let t = Vector3::new(v(&tvec, 0)?, v(&tvec, 1)?, v(&tvec, 2)?);
    if !(r.iter().chain(t.iter()).all(|x| x.is_finite()) && t.z > 0.0) {
        return Err(fail("the solved pose is not finite or lies behind the camera".into()));
    }
    Ok(pose_from_rt(&r, &t))
}

/// Rejects motion sets that cannot determine X: fewer than `cfg.min_views` poses, no
/// relative rotations of at least `cfg.min_rotation_deg`, or all rotation axes parallel
/// (within `cfg.min_axis_separation_deg`). A 3-axis (`xyz`) rig always fails here.
pub fn check_motion_diversity(base_from_flange: &[Isometry3<f64>], cfg: &HandEyeConfig) -> Result<(), CalibError> {
    if base_from_flange.len() < cfg.min_views {
        return Err(CalibError::TooFewViews {
            step: STEP,
            usable: base_from_flange.len(),
            needed: cfg.min_views,
            rejected: "none".into(),
        });
    }
    let mut axes: Vec<Vector3<f64>> = Vec::new();
    for (i, a) in base_from_flange.iter().enumerate() {
        for b in &base_from_flange[i + 1..] {
            let rel = a.rotation.inverse() * b.rotation;
            if rel.angle().to_degrees() >= cfg.min_rotation_deg {
                if let Some(axis) = rel.axis() {
                    axes.push(axis.into_inner());
                }
            }
        }
    }
    if axes.is_empty() {
        return Err(CalibError::DegenerateMotion {
            step: STEP,
            detail: format!(
                "no two arm poses differ in orientation by {}° or more (pure translations, as on an xyz rig, leave \
                 the camera's offset unobservable); tilt the flange about two different axes between views",
                cfg.min_rotation_deg
            ),
        });
    }
    let sep = cfg.min_axis_separation_deg.to_radians().sin();
    let spread = axes.iter().enumerate().any(|(i, u)| axes[i + 1..].iter().any(|v| u.cross(v).norm() >= sep));
    if !spread {
        return Err(CalibError::DegenerateMotion {
            step: STEP,
            detail: format!(
                "every relative rotation turns about nearly the same axis (within {}°); the rotation about it and \
                 the offset along it are unobservable: tilt the flange about a second, non-parallel axis",
                cfg.min_axis_separation_deg
            ),
        });
    }
    Ok(())
}

fn check_inputs(a: &[Isometry3<f64>], n_views: usize, what: &'static str) -> Result<(), CalibError> {
    if a.len() != n_views {
        return Err(CalibError::LengthMismatch {
            step: STEP,
            left_what: "base_from_flange",
            left: a.len(),
            right_what: what,
            right: n_views,
        });
    }
    for (i, p) in a.iter().enumerate() {
        if !p.to_homogeneous().iter().all(|v| v.is_finite()) {
            return Err(CalibError::NotFinite { step: STEP, what: format!("base_from_flange[{i}]") });
        }
    }
    Ok(())
}

/// Hand-eye calibration from arm poses and board poses (e.g. from [`board_pose`]), refined
/// on board-pose consistency.
pub fn calibrate_hand_eye(
    base_from_flange: &[Isometry3<f64>],
    camera_from_board: &[Isometry3<f64>],
    cfg: &HandEyeConfig,
) -> Result<HandEyeCalibration, CalibError> {
    check_inputs(base_from_flange, camera_from_board.len(), "camera_from_board")?;
    for (i, p) in camera_from_board.iter().enumerate() {
        if !p.to_homogeneous().iter().all(|v| v.is_finite()) {
            return Err(CalibError::NotFinite { step: STEP, what: format!("camera_from_board[{i}]") });
        }
    }
    check_motion_diversity(base_from_flange, cfg)?;
    let (start, candidates) = closed_form(base_from_flange, camera_from_board, cfg)?;
    let z0 = mean_board_pose(base_from_flange, &start.x, camera_from_board);
    let lever = cfg.lever_mm;
    let f = |p: &DVector<f64>| {
        let x = perturb(&start.x, p, 0);
        let z = perturb(&z0, p, 6);
        let mut r = Vec::with_capacity(6 * base_from_flange.len());
        for (a, b) in base_from_flange.iter().zip(camera_from_board) {
            let (rv, t) = pose_delta(&z, &(a * x * b));
            r.extend((rv * lever).iter());
            r.extend(t.iter());
        }
        DVector::from_vec(r)
    };
    let sol = levenberg_marquardt(DVector::zeros(12), f, 100)
        .ok_or(CalibError::NotFinite { step: STEP, what: "the pose-consistency residuals".into() })?;
    let x = perturb(&start.x, &sol.x, 0);
    let z = perturb(&z0, &sol.x, 6);
    let (rot, trans) = consistency(base_from_flange, &x, camera_from_board, &z);
    Ok(HandEyeCalibration {
        flange_from_camera: x,
        base_from_board: z,
        rotation_residual_deg: rot,
        translation_residual_mm: trans,
        reprojection_rms_px: None,
        method: format!("{} + LM(pose consistency)", start.method),
        candidates,
    })
}

/// Hand-eye calibration from arm poses and the board's detected corners: board poses by
/// [`board_pose`] with the calibrated `intrinsics`, OpenCV's closed forms, then
/// Levenberg-Marquardt over X and Z on the corners' reprojection error.
pub fn calibrate_hand_eye_from_views(
    base_from_flange: &[Isometry3<f64>],
    detections: &[CharucoDetection],
    intrinsics: &CameraIntrinsics,
    cfg: &HandEyeConfig,
) -> Result<HandEyeCalibration, CalibError> {
    check_inputs(base_from_flange, detections.len(), "board views")?;
    let poses: Vec<Isometry3<f64>> = detections.iter().map(|d| board_pose(d, intrinsics)).collect::<Result<_, _>>()?;
    let init = calibrate_hand_eye(base_from_flange, &poses, cfg)?;
    let (x0, z0) = (init.flange_from_camera, init.base_from_board);
    let n_res: usize = detections.iter().map(|d| 2 * d.corners.len()).sum();
    let f = |p: &DVector<f64>| {
        let x = perturb(&x0, p, 0);
        let z = perturb(&z0, p, 6);
        let mut r = Vec::with_capacity(n_res);
        for (a, d) in base_from_flange.iter().zip(detections) {
            let camera_from_board = (a * x).inverse() * z;
            for c in &d.corners {
                let px = intrinsics.project(&(camera_from_board * c.board_mm)).unwrap_or(Point2::new(1e6, 1e6));
                r.push(px.x - c.pixel.x);
                r.push(px.y - c.pixel.y);
            }
        }
        DVector::from_vec(r)
    };
    let sol = levenberg_marquardt(DVector::zeros(12), f, 100)
        .ok_or(CalibError::NotFinite { step: STEP, what: "the reprojection residuals".into() })?;
    let x = perturb(&x0, &sol.x, 0);
    let z = perturb(&z0, &sol.x, 6);
    let rms = (sol.cost / (sol.residuals as f64 / 2.0).max(1.0)).sqrt();
    let (rot, trans) = consistency(base_from_flange, &x, &poses, &z);
    let start = init.method.split(" + ").next().unwrap_or("opencv").to_string();
    Ok(HandEyeCalibration {
        flange_from_camera: x,
        base_from_board: z,
        rotation_residual_deg: rot,
        translation_residual_mm: trans,
        reprojection_rms_px: Some(rms),
        method: format!("{start} + LM(reprojection)"),
        candidates: init.candidates,
    })
}

struct Start {
    x: Isometry3<f64>,
    method: String,
}

/// OpenCV's five closed forms, each scored by consistency; the best is the start.
fn closed_form(
    a: &[Isometry3<f64>],
    b: &[Isometry3<f64>],
    cfg: &HandEyeConfig,
) -> Result<(Start, Vec<HandEyeCandidate>), CalibError> {
    let rot_mat = |q: &UnitQuaternion<f64>| -> Result<Mat, CalibError> {
        let m = q.to_rotation_matrix().into_inner();
        Mat::from_slice_2d(&[
            [m[(0, 0)], m[(0, 1)], m[(0, 2)]],
            [m[(1, 0)], m[(1, 1)], m[(1, 2)]],
            [m[(2, 0)], m[(2, 1)], m[(2, 2)]],
        ])
        .map_err(ocv("rotation matrix"))
    };
    let t_mat = |t: &Vector3<f64>| Mat::from_slice_2d(&[[t.x], [t.y], [t.z]]).map_err(ocv("translation"));
    let mut ra: Vector<Mat> = Vector::new();
    let mut ta: Vector<Mat> = Vector::new();
    let mut rb: Vector<Mat> = Vector::new();
    let mut tb: Vector<Mat> = Vector::new();
    for (p, q) in a.iter().zip(b) {
        ra.push(rot_mat(&p.rotation)?);
        ta.push(t_mat(&p.translation.vector)?);
        rb.push(rot_mat(&q.rotation)?);
        tb.push(t_mat(&q.translation.vector)?);
    }
    use calib3d::HandEyeCalibrationMethod as M;
    let methods = [
        ("tsai", M::CALIB_HAND_EYE_TSAI),
        ("park", M::CALIB_HAND_EYE_PARK),
        ("horaud", M::CALIB_HAND_EYE_HORAUD),
        ("andreff", M::CALIB_HAND_EYE_ANDREFF),
        ("daniilidis", M::CALIB_HAND_EYE_DANIILIDIS),
    ];
    let mut candidates = Vec::new();
    let mut best: Option<(f64, Start)> = None;
    for (name, method) in methods {
        let mut r = Mat::default();
        let mut t = Mat::default();
        if calib3d::calibrate_hand_eye(&ra, &ta, &rb, &tb, &mut r, &mut t, method).is_err() {
            continue;
        }
        let Some(x) = isometry_from_mats(&r, &t) else { continue };
        let z = mean_board_pose(a, &x, b);
        let (rot, trans) = consistency(a, &x, b, &z);
        if !(rot.is_finite() && trans.is_finite()) {
            continue;
        }
        candidates.push(HandEyeCandidate {
            method: name.to_string(),
            rotation_residual_deg: rot,
            translation_residual_mm: trans,
        });
        let score = trans + rot.to_radians() * cfg.lever_mm;
        if best.as_ref().is_none_or(|(s, _)| score < *s) {
            best = Some((score, Start { x, method: name.to_string() }));
        }
    }
    match best {
        Some((_, start)) => Ok((start, candidates)),
        None => Err(CalibError::NotFinite { step: STEP, what: "every OpenCV hand-eye method's result".into() }),
    }
}

fn isometry_from_mats(r: &Mat, t: &Mat) -> Option<Isometry3<f64>> {
    let g = |m: &Mat, i: i32, j: i32| m.at_2d::<f64>(i, j).ok().copied();
    let mut m = Matrix3::zeros();
    for i in 0..3 {
        for j in 0..3 {
            m[(i, j)] = g(r, i as i32, j as i32)?;
        }
    }
    let tv = Vector3::new(g(t, 0, 0)?, g(t, 1, 0)?, g(t, 2, 0)?);
    if !(m.iter().chain(tv.iter()).all(|v| v.is_finite())) {
        return None;
    }
    let rot = UnitQuaternion::from_matrix(&m);
    Some(Isometry3::from_parts(Translation3::from(tv), rot))
}

/// The board pose each view implies, `A_i X B_i`, averaged (translations by mean,
/// rotations by the mean rotation vector about the first).
fn mean_board_pose(a: &[Isometry3<f64>], x: &Isometry3<f64>, b: &[Isometry3<f64>]) -> Isometry3<f64> {
    let zs: Vec<Isometry3<f64>> = a.iter().zip(b).map(|(p, q)| p * x * q).collect();
    let Some(first) = zs.first() else { return Isometry3::identity() };
    let n = zs.len() as f64;
    let mut rv = Vector3::zeros();
    let mut t = Vector3::zeros();
    for z in &zs {
        rv += (first.rotation.inverse() * z.rotation).scaled_axis();
        t += z.translation.vector;
    }
    let rot = first.rotation * UnitQuaternion::from_scaled_axis(rv / n);
    Isometry3::from_parts(Translation3::from(t / n), rot)
}

/// RMS rotation (deg) and translation (mm) of `Z⁻¹ A_i X B_i` over the views.
fn consistency(a: &[Isometry3<f64>], x: &Isometry3<f64>, b: &[Isometry3<f64>], z: &Isometry3<f64>) -> (f64, f64) {
    let n = a.len().max(1) as f64;
    let (mut r2, mut t2) = (0.0, 0.0);
    for (p, q) in a.iter().zip(b) {
        let (rv, t) = pose_delta(z, &(p * x * q));
        r2 += rv.norm_squared();
        t2 += t.norm_squared();
    }
    ((r2 / n).sqrt().to_degrees(), (t2 / n).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rig_truth() -> (Isometry3<f64>, Isometry3<f64>) {
        let x = Isometry3::new(Vector3::new(40.0, 2.0, -60.0), Vector3::new(3.1, 0.05, -0.02));
        let z = Isometry3::new(Vector3::new(200.0, 10.0, 50.0), Vector3::new(3.0, 0.0, 0.1));
        (x, z)
    }

    /// Flange poses that put the camera about 80 mm above the board, tilted about `axes`.
    fn poses(tilts: &[(f64, f64, f64)]) -> Vec<Isometry3<f64>> {
        let (x, z) = rig_truth();
        tilts
            .iter()
            .map(|&(rx, ry, rz)| {
                let camera_from_board = Isometry3::new(Vector3::new(-15.0, -12.0, 80.0), Vector3::new(rx, ry, rz));
                z * camera_from_board.inverse() * x.inverse()
            })
            .collect()
    }

    #[test]
    fn recovers_x_from_exact_poses_and_rejects_degenerate_motion() {
        let (x, z) = rig_truth();
        let tilts = [(0.0, 0.0, 0.0), (0.2, 0.0, 0.1), (0.0, 0.25, -0.2), (-0.15, 0.1, 0.3), (0.1, -0.2, 0.0)];
        let a = poses(&tilts);
        let b: Vec<Isometry3<f64>> = a.iter().map(|p| (p * x).inverse() * z).collect();
        let cal = calibrate_hand_eye(&a, &b, &HandEyeConfig::default()).expect("solves");
        let (rv, t) = pose_delta(&x, &cal.flange_from_camera);
        assert!(t.norm() < 1e-6 && rv.norm() < 1e-8, "{t:?} {rv:?}");
        assert!(cal.translation_residual_mm < 1e-6);
        assert_eq!(cal.candidates.len(), 5);

        // Pure translations (an xyz rig).
        let shifted: Vec<Isometry3<f64>> =
            (0..6).map(|i| Isometry3::translation(f64::from(i) * 5.0, f64::from(i % 2) * 3.0, 0.0) * a[0]).collect();
        let bs: Vec<Isometry3<f64>> = shifted.iter().map(|p| (p * x).inverse() * z).collect();
        assert!(matches!(
            calibrate_hand_eye(&shifted, &bs, &HandEyeConfig::default()),
            Err(CalibError::DegenerateMotion { .. })
        ));
        // Rotations about one axis only.
        let one_axis = poses(&[(0.0, 0.0, 0.0), (0.0, 0.0, 0.2), (0.0, 0.0, 0.4), (0.0, 0.0, -0.3), (0.0, 0.0, 0.6)]);
        let bo: Vec<Isometry3<f64>> = one_axis.iter().map(|p| (p * x).inverse() * z).collect();
        assert!(matches!(
            calibrate_hand_eye(&one_axis, &bo, &HandEyeConfig::default()),
            Err(CalibError::DegenerateMotion { .. })
        ));
        // Mismatched lengths.
        assert!(matches!(
            calibrate_hand_eye(&a, &b[1..], &HandEyeConfig::default()),
            Err(CalibError::LengthMismatch { .. })
        ));
    }
}

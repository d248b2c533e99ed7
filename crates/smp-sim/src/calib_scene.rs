//! A complete calibration session in the simulator: board views for intrinsics, a 6-axis
//! arm's views for hand-eye, and needle-tip pivot poses, with the rig's true parameters.
//!
//! Why one place: `smp calibrate sim` and the vision crate's calibration tests must score
//! the same scene, so that a figure printed by the command is the figure the tests assert.
//! The choices (board placements, pose spreads) are documented where they are made: each
//! was found necessary by measurement (see the calibration test's notes).

use nalgebra::{Isometry3, Point3, Translation3, Unit, UnitQuaternion, Vector3};
use smp_core::calib_board::CharucoBoard;
use smp_core::rig::Rig;

use crate::calib_views::{board_views, board_views_with_poses, BoardView, CalibViewsError};
use crate::render::RenderConfig;

/// The golden angle (rad): consecutive axes spread evenly around a circle.
const GOLDEN_ANGLE_RAD: f64 = 2.399_963;

/// The board lying printed side up with its centre at (200, 0, 50) in the base frame,
/// tilted by `tilt_x_deg` / `tilt_y_deg` about the base's x / y axes through its centre.
pub fn board_on_table(b: &CharucoBoard, tilt_x_deg: f64, tilt_y_deg: f64) -> Isometry3<f64> {
    let (bw, bh) = b.size_mm();
    let tilt = UnitQuaternion::from_euler_angles(tilt_x_deg.to_radians(), tilt_y_deg.to_radians(), 0.0);
    Isometry3::from_parts(Translation3::new(200.0, 0.0, 50.0), tilt)
        * Isometry3::rotation(Vector3::x() * std::f64::consts::PI)
        * Isometry3::translation(-0.5 * bw, -0.5 * bh, 0.0)
}

/// Intrinsics views: the board propped at nine placements (flat, then tilted 25° about
/// axes spread around the table and turned in its plane), three camera positions each, from
/// the rig's own (straight-down) flange camera. Why turned too: tilts only about the
/// camera's x and y axes leave the principal point poorly determined (measured: 5 px error
/// at 0.05 px detection noise, 0.3 px when turned).
pub fn intrinsic_views(rig: &Rig, b: &CharucoBoard) -> Result<Vec<BoardView>, CalibViewsError> {
    let (bw, bh) = b.size_mm();
    let mut views = Vec::new();
    for k in 0..9u32 {
        let fk = f64::from(k);
        let azimuth = fk * GOLDEN_ANGLE_RAD;
        let tilt_deg: f64 = if k == 0 { 0.0 } else { 25.0 };
        let axis = Unit::new_normalize(Vector3::new(azimuth.cos(), azimuth.sin(), 0.0));
        let rot = UnitQuaternion::from_axis_angle(&axis, tilt_deg.to_radians())
            * UnitQuaternion::from_axis_angle(&Vector3::z_axis(), (37.0 * fk).to_radians());
        let base_from_board = Isometry3::from_parts(Translation3::new(200.0, 0.0, 50.0), rot)
            * Isometry3::rotation(Vector3::x() * std::f64::consts::PI)
            * Isometry3::translation(-0.5 * bw, -0.5 * bh, 0.0);
        let cfg = RenderConfig { seed: 100 + 10 * u64::from(k), ..RenderConfig::default() };
        views.extend(board_views(rig, b, base_from_board, 3, 7 + u64::from(k), &cfg)?);
    }
    Ok(views)
}

/// `n` camera poses of a 6-axis arm around the board's centre: tilted 12-30° about axes
/// spread around the horizontal plane, rolled about the optical axis, 75-95 mm away.
pub fn hand_eye_camera_poses(b: &CharucoBoard, base_from_board: &Isometry3<f64>, n: usize) -> Vec<Isometry3<f64>> {
    let (bw, bh) = b.size_mm();
    let centre = base_from_board * Point3::new(0.5 * bw, 0.5 * bh, 0.0);
    let down = UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0);
    (0..n)
        .map(|i| {
            let fi = i as f64;
            let azimuth = fi * GOLDEN_ANGLE_RAD;
            let axis = Unit::new_normalize(Vector3::new(azimuth.cos(), azimuth.sin(), 0.0));
            let tilt_deg = 12.0 + 18.0 * ((fi * 0.618_034) % 1.0);
            let roll_deg = -30.0 + 60.0 * ((fi * 0.381_966 + 0.2) % 1.0);
            let dist = 75.0 + 20.0 * ((fi * 0.723_607 + 0.1) % 1.0);
            let rot = UnitQuaternion::from_axis_angle(&axis, tilt_deg.to_radians())
                * down
                * UnitQuaternion::from_axis_angle(&Vector3::z_axis(), roll_deg.to_radians());
            let eye = centre - rot * Vector3::z() * dist;
            Isometry3::from_parts(Translation3::from(eye.coords), rot)
        })
        .collect()
}

/// Hand-eye views: the board flat on the table, seen from [`hand_eye_camera_poses`].
pub fn hand_eye_views(rig: &Rig, b: &CharucoBoard, n: usize) -> Result<Vec<BoardView>, CalibViewsError> {
    let base_from_board = board_on_table(b, 0.0, 0.0);
    let poses = hand_eye_camera_poses(b, &base_from_board, n);
    board_views_with_poses(rig, b, base_from_board, &poses, &RenderConfig { seed: 500, ..RenderConfig::default() })
}

/// The needle-tip rotations for pivot calibration: `n` tilts of 8-25° about varied axes.
pub fn pivot_tilts(n: usize) -> Vec<Vector3<f64>> {
    (0..n)
        .map(|i| {
            let fi = i as f64;
            let a = fi * GOLDEN_ANGLE_RAD;
            let t = (8.0 + 17.0 * ((fi * 0.618_034) % 1.0)).to_radians();
            (UnitQuaternion::from_axis_angle(&Unit::new_normalize(Vector3::new(a.cos(), a.sin(), 0.0)), t)
                * UnitQuaternion::from_axis_angle(&Vector3::z_axis(), 0.3 * fi))
            .scaled_axis()
        })
        .collect()
}

/// The divot the needle tip is held on for pivot calibration, base frame, mm.
pub const PIVOT_BASE_MM: [f64; 3] = [200.0, 0.0, 30.0];

/// Adds the arm's repeatability to pivot poses: a deterministic offset of up to
/// `repeatability_mm` per axis (the arm never returns exactly).
pub fn with_repeatability(poses: Vec<Isometry3<f64>>, repeatability_mm: f64) -> Vec<Isometry3<f64>> {
    poses
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let fi = i as f64;
            let jitter = Vector3::new((fi * 1.7).sin(), (fi * 2.3).cos(), (fi * 3.1).sin()) * repeatability_mm;
            Isometry3::from_parts(Translation3::from(p.translation.vector + jitter), p.rotation)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poses_look_at_the_board_from_the_stated_distances() {
        let b = match CharucoBoard::default_board() {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let bfb = board_on_table(&b, 0.0, 0.0);
        let (bw, bh) = b.size_mm();
        let centre = bfb * Point3::new(0.5 * bw, 0.5 * bh, 0.0);
        for p in hand_eye_camera_poses(&b, &bfb, 15) {
            let to_centre = centre - Point3::from(p.translation.vector);
            let d = to_centre.norm();
            assert!((75.0..=95.0).contains(&d), "{d} mm");
            // The optical axis (+z of the camera) points at the centre.
            assert!((p.rotation * Vector3::z()).dot(&to_centre.normalize()) > 0.999);
        }
        assert_eq!(pivot_tilts(10).len(), 10);
    }
}

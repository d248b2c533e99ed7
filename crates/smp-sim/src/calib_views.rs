//! Views of the ChArUco calibration board from arm poses, with the rig's true camera
//! parameters as ground truth: the data set intrinsics and hand-eye calibration are developed
//! and scored on in simulation.
//!
//! Why two entry points: the default rig is a 3-axis (`xyz`) positioner whose flange camera
//! always looks straight down, so [`board_views`] can only vary where the camera is (over
//! the board and at what distance), never how it is turned. That is enough for intrinsics
//! (the board's corners fill different parts of the image at different scales) but NOT for
//! hand-eye calibration: solving `flange_from_camera` needs motions with rotation about at
//! least two non-parallel axes, which a 3-axis rig cannot give (pure translations leave the
//! camera's translation on the flange unobservable). [`board_views_with_poses`] renders any
//! camera poses, as a 6-axis arm could reach, for hand-eye work and its tests.

use nalgebra::{Isometry3, Point3, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smp_core::camera::CameraIntrinsics;
use smp_core::image::RgbImage;
use smp_core::rig::Rig;
use thiserror::Error;

use crate::charuco::{render_board, BoardTruth, CharucoBoard, CharucoError};
use crate::render::RenderConfig;

/// Fewest ChArUco corners a view must show to be useful (OpenCV's pose from a ChArUco board
/// needs at least 4; 6 leaves margin for a detector missing a few).
pub const MIN_CORNERS_PER_VIEW: usize = 6;

/// Candidate poses tried per requested view before giving up.
const ATTEMPTS_PER_VIEW: usize = 40;

/// Why board views cannot be produced.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CalibViewsError {
    /// The board spec is invalid.
    #[error(transparent)]
    Board(#[from] CharucoError),
    /// Too few poses showed enough of the board: it is probably out of the camera's reach.
    #[error(
        "board views: only {found} of {wanted} views show at least {MIN_CORNERS_PER_VIEW} corners; place \
         base_from_board under the flange camera's reach (board face down, printed side up toward the camera)"
    )]
    TooFewViews { found: usize, wanted: usize },
    /// A camera pose given to `board_views_with_poses` sees too little of the board.
    #[error(
        "board views: pose {index} shows {corners} corners, fewer than {MIN_CORNERS_PER_VIEW}; aim it at the board"
    )]
    PoseMissesBoard { index: usize, corners: usize },
}

/// One rendered view of the board, with its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardView {
    /// Machine position (`xyz` profile) when the view came from [`board_views`]; `None` for
    /// arbitrary camera poses.
    pub machine_mm: Option<[f64; 3]>,
    /// True flange pose in the base frame.
    pub base_from_flange: Isometry3<f64>,
    /// True camera pose in the base frame (`base_from_flange * flange_from_camera`).
    pub base_from_camera: Isometry3<f64>,
    /// The flange camera's image.
    pub image: RgbImage,
    /// Corner ids and pixels (and markers) as rendered.
    pub truth: BoardTruth,
    /// Ground truth of the calibration: the rig's true intrinsics ...
    pub intrinsics: CameraIntrinsics,
    /// ... and its true hand-eye transform.
    pub flange_from_camera: Isometry3<f64>,
}

/// `n` views of `board` (placed at `base_from_board`) from machine positions of the `xyz`
/// profile, deterministic by `seed`: the camera over points spread across the board (up to
/// 35 % of its size off centre) at 85-120 % of the rig's stand-off. Only views with at least
/// [`MIN_CORNERS_PER_VIEW`] corners are kept. The camera cannot tilt on this profile: see the
/// module doc for why these views suit intrinsics but not hand-eye calibration.
///
/// Each view's noise is seeded from `cfg.seed` and the view's index, so views differ.
pub fn board_views(
    rig: &Rig,
    board: &CharucoBoard,
    base_from_board: Isometry3<f64>,
    n: usize,
    seed: u64,
    cfg: &RenderConfig,
) -> Result<Vec<BoardView>, CalibViewsError> {
    board.validate()?;
    let (bw, bh) = board.size_mm();
    let centre = base_from_board * Point3::new(0.5 * bw, 0.5 * bh, 0.0);
    let ex = base_from_board * Vector3::x();
    let ey = base_from_board * Vector3::y();
    let standoff = rig.flange_camera.standoff_mm;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut views = Vec::with_capacity(n);
    for _ in 0..n.saturating_mul(ATTEMPTS_PER_VIEW) {
        if views.len() >= n {
            break;
        }
        let (fx, fy): (f64, f64) = (rng.random_range(-0.35..=0.35), rng.random_range(-0.35..=0.35));
        let dist = standoff * rng.random_range(0.85..=1.2);
        let target = centre + ex * (fx * bw) + ey * (fy * bh);
        let mut machine = rig.machine_for_camera_over_xyz([target.x, target.y, target.z]);
        machine[2] += dist - standoff;
        let base_from_camera = rig.base_from_flange_camera_xyz(machine);
        let view_cfg = RenderConfig { seed: cfg.seed.wrapping_add(views.len() as u64), ..cfg.clone() };
        let mut view = render_one(rig, board, &base_from_board, base_from_camera, &view_cfg)?;
        if view.truth.corners.len() >= MIN_CORNERS_PER_VIEW {
            view.machine_mm = Some(machine);
            views.push(view);
        }
    }
    if views.len() < n {
        return Err(CalibViewsError::TooFewViews { found: views.len(), wanted: n });
    }
    Ok(views)
}

/// Views of `board` from arbitrary flange-camera poses (`base_from_camera`), as a 6-axis arm
/// could reach them: the input hand-eye calibration needs. Fails if a pose shows fewer than
/// [`MIN_CORNERS_PER_VIEW`] corners, since a caller choosing poses by hand wants to know.
pub fn board_views_with_poses(
    rig: &Rig,
    board: &CharucoBoard,
    base_from_board: Isometry3<f64>,
    base_from_camera: &[Isometry3<f64>],
    cfg: &RenderConfig,
) -> Result<Vec<BoardView>, CalibViewsError> {
    board.validate()?;
    base_from_camera
        .iter()
        .enumerate()
        .map(|(index, pose)| {
            let view_cfg = RenderConfig { seed: cfg.seed.wrapping_add(index as u64), ..cfg.clone() };
            let view = render_one(rig, board, &base_from_board, *pose, &view_cfg)?;
            let corners = view.truth.corners.len();
            if corners < MIN_CORNERS_PER_VIEW {
                return Err(CalibViewsError::PoseMissesBoard { index, corners });
            }
            Ok(view)
        })
        .collect()
}

fn render_one(
    rig: &Rig,
    board: &CharucoBoard,
    base_from_board: &Isometry3<f64>,
    base_from_camera: Isometry3<f64>,
    cfg: &RenderConfig,
) -> Result<BoardView, CalibViewsError> {
    let intrinsics = rig.flange_camera.intrinsics;
    let flange_from_camera = rig.flange_camera.flange_from_camera.to_isometry();
    let camera_from_board = base_from_camera.inverse() * base_from_board;
    let (image, truth) = render_board(board, &intrinsics, &camera_from_board, cfg)?;
    Ok(BoardView {
        machine_mm: None,
        base_from_flange: base_from_camera * flange_from_camera.inverse(),
        base_from_camera,
        image,
        truth,
        intrinsics,
        flange_from_camera,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion};

    /// The board lying printed side up under the flange camera: board +z (into the board)
    /// points down the base's -z, its centre at `(200, 0, 50)` in the base frame.
    fn board_on_table(b: &CharucoBoard) -> Isometry3<f64> {
        let (bw, bh) = b.size_mm();
        Isometry3::from_parts(
            Translation3::new(200.0 - 0.5 * bw, 0.5 * bh, 50.0),
            UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
        )
    }

    fn quiet() -> RenderConfig {
        RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() }
    }

    fn check_reprojection(views: &[BoardView], base_from_board: &Isometry3<f64>) {
        for (k, v) in views.iter().enumerate() {
            assert!(v.truth.corners.len() >= MIN_CORNERS_PER_VIEW, "view {k}: {}", v.truth.corners.len());
            // The true camera pose is the true flange pose times the true hand-eye transform.
            let composed = v.base_from_flange * v.flange_from_camera;
            assert!((composed.to_homogeneous() - v.base_from_camera.to_homogeneous()).norm() < 1e-9);
            let camera_from_board = v.base_from_camera.inverse() * base_from_board;
            for c in &v.truth.corners {
                let px = v.intrinsics.project(&(camera_from_board * Point3::from(c.board_mm))).expect("in front");
                let e = ((px.x - c.pixel[0]).powi(2) + (px.y - c.pixel[1]).powi(2)).sqrt();
                assert!(e < 1e-6, "view {k} corner {}: {e} px", c.id);
            }
        }
    }

    #[test]
    fn xyz_views_see_the_board_and_their_truth_reprojects() {
        let rig = Rig::default_sim();
        let b = CharucoBoard::default_board().expect("board");
        let bfb = board_on_table(&b);
        let views = board_views(&rig, &b, bfb, 6, 11, &quiet()).expect("views");
        assert_eq!(views.len(), 6);
        check_reprojection(&views, &bfb);
        for v in &views {
            let m = v.machine_mm.expect("machine position");
            let expected = rig.base_from_flange_camera_xyz(m);
            assert!((expected.to_homogeneous() - v.base_from_camera.to_homogeneous()).norm() < 1e-9);
        }
        // Spread: positions and distances differ between views.
        let zs: Vec<f64> = views.iter().map(|v| v.base_from_camera.translation.z).collect();
        let spread = zs.iter().copied().fold(f64::MIN, f64::max) - zs.iter().copied().fold(f64::MAX, f64::min);
        assert!(spread > 5.0, "distance spread {spread} mm");
        // Deterministic by seed.
        let again = board_views(&rig, &b, bfb, 6, 11, &quiet()).expect("views");
        assert_eq!(views, again);
    }

    #[test]
    fn a_board_out_of_reach_is_an_error() {
        let rig = Rig::default_sim();
        let b = CharucoBoard::default_board().expect("board");
        // Face down: the camera sees the back of the board, never a corner.
        let turned = Isometry3::translation(200.0, 0.0, 50.0);
        match board_views(&rig, &b, turned, 2, 1, &quiet()) {
            Err(CalibViewsError::TooFewViews { found: 0, wanted: 2 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tilted_poses_render_with_exact_truth() {
        let rig = Rig::default_sim();
        let b = CharucoBoard::default_board().expect("board");
        let bfb = board_on_table(&b);
        let centre = bfb * Point3::new(0.5 * b.size_mm().0, 0.5 * b.size_mm().1, 0.0);
        // A camera 85 mm from the board centre, tilted about two axes, looking at it.
        let poses: Vec<Isometry3<f64>> = [(0.0, 0.0), (12.0, 0.0), (0.0, -12.0), (-10.0, 8.0)]
            .iter()
            .map(|&(ax, ay): &(f64, f64)| {
                let tilt = UnitQuaternion::from_euler_angles(ax.to_radians(), ay.to_radians(), 0.2);
                let down = UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0);
                let rot = tilt * down;
                let eye = centre - rot * Vector3::z() * 85.0;
                Isometry3::from_parts(Translation3::from(eye.coords), rot)
            })
            .collect();
        let views = board_views_with_poses(&rig, &b, bfb, &poses, &quiet()).expect("views");
        assert_eq!(views.len(), poses.len());
        check_reprojection(&views, &bfb);
        let away = [Isometry3::translation(500.0, 0.0, 300.0)];
        assert!(matches!(
            board_views_with_poses(&rig, &b, bfb, &away, &quiet()),
            Err(CalibViewsError::PoseMissesBoard { index: 0, .. })
        ));
    }
}

//! ChArUco calibration boards: their spec (`calibration/charuco.toml`), OpenCV's DICT_4X4_50
//! marker patterns, and rendering a board into a camera view with exact corner truth.
//!
//! Why: intrinsics and hand-eye calibration (issue 4) are developed and scored in the
//! simulator, so the simulator must draw the same board OpenCV expects to detect, with every
//! inner chessboard corner's id and pixel known exactly (projected through the camera's own
//! distortion), and the rig's true parameters as ground truth.
//!
//! Board frame (OpenCV 4.6 `cv::aruco::CharucoBoard::create`, checked against Debian's
//! libopencv-contrib 4.6.0): origin at the outer corner of the first square, +x along a row
//! of `squares_x` squares, +y down the printed page along `squares_y` squares, +z = x × y,
//! into the board; the printed face is seen from z < 0. Square (col, row) is white and holds
//! a marker when `col + row` is odd (the square at the origin is black); markers take ids
//! 0, 1, 2, ... row by row. Inner corner id `row * (squares_x - 1) + col` lies at
//! `((col + 1) * square_mm, (row + 1) * square_mm, 0)`.

use nalgebra::{Isometry3, Point2, Point3, Vector2, Vector3};
use smp_core::camera::CameraIntrinsics;
use smp_core::image::RgbImage;
#[cfg(test)]
use smp_core::SpecError;

// The pure board definition lives in the core so vision can calibrate from it without the
// simulator; these re-exports keep this module's public names working.
pub use smp_core::calib_board::{
    aruco_4x4_is_white, CharucoBoard, CharucoError, CHARUCO_VERSION, DEFAULT_CHARUCO_TOML, DICT_4X4_50,
};

use crate::render::{develop, lambert, ray_table, RenderConfig};

/// One inner chessboard corner seen in a render.
#[derive(Debug, Clone, PartialEq)]
pub struct CornerTruth {
    /// ChArUco corner id (module doc).
    pub id: u32,
    /// Position in the board frame, mm.
    pub board_mm: [f64; 3],
    /// Pixel position, projected with the camera's distortion (OpenCV pixel centres).
    pub pixel: [f64; 2],
}

/// One marker whose four corners are all in the image.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkerTruth {
    pub id: u32,
    /// Pixels of the corners in ArUco order: top-left, top-right, bottom-right, bottom-left.
    pub corners_px: [[f64; 2]; 4],
}

/// Ground truth of a board render.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardTruth {
    pub camera_from_board: Isometry3<f64>,
    /// Inner corners in the image, seen from the printed side, sorted by id.
    pub corners: Vec<CornerTruth>,
    /// Markers fully in the image, seen from the printed side, sorted by id.
    pub markers: Vec<MarkerTruth>,
}

/// Extent of the white paper margin around the squares, in squares: what the render shows
/// of the sheet the board is printed on.
const PAPER_MARGIN_SQUARES: f64 = 1.0;
/// Linear reflectance of the paper and of the toner.
pub(crate) const PAPER_WHITE: f32 = 0.8;
pub(crate) const TONER_BLACK: f32 = 0.03;
/// Sub-samples per pixel side where an edge crosses the pixel: 16 × 16 places an edge to
/// 1/32 px, well under the 0.05 px a calibration test must resolve.
const SUPERSAMPLE: usize = 16;

/// Share of the pixel footprint (centre `p` on the board, one pixel step `du`, `dv`) that is
/// printed white. A 3 × 3 probe over the footprint finds the pixels an edge crosses (the
/// smallest printed feature, a marker bit, spans several pixels in any usable view); only
/// those are supersampled, which keeps a 0.5 Mpx board render near 0.1 s.
fn white_fraction(board: &CharucoBoard, p: &Point2<f64>, du: &Vector2<f64>, dv: &Vector2<f64>) -> f32 {
    white_fraction_of(|s| board.is_white(s.x, s.y), p, du, dv)
}

/// [`white_fraction`] for any printed pattern `is_white` (a board, a head-band marker).
pub(crate) fn white_fraction_of(
    is_white: impl Fn(&Point2<f64>) -> bool,
    p: &Point2<f64>,
    du: &Vector2<f64>,
    dv: &Vector2<f64>,
) -> f32 {
    let probe = |a: f64, b: f64| is_white(&(p + du * a + dv * b));
    let first = probe(0.0, 0.0);
    let uniform = [-0.5, 0.0, 0.5].iter().all(|&a| [-0.5, 0.0, 0.5].iter().all(|&b| probe(a, b) == first));
    if uniform {
        return if first { 1.0 } else { 0.0 };
    }
    let mut white = 0usize;
    for sy in 0..SUPERSAMPLE {
        for sx in 0..SUPERSAMPLE {
            let a = (sx as f64 + 0.5) / SUPERSAMPLE as f64 - 0.5;
            let b = (sy as f64 + 0.5) / SUPERSAMPLE as f64 - 0.5;
            if probe(a, b) {
                white += 1;
            }
        }
    }
    white as f32 / (SUPERSAMPLE * SUPERSAMPLE) as f32
}

/// Renders `board` at `camera_from_board` into a camera with `intrinsics`, lit and exposed
/// as `cfg` says (ring light, exposure, noise, defocus; the noise is seeded from `cfg.seed`
/// and the label "charuco"), with the truth of every corner and marker in view.
///
/// Each pixel's ray comes from the same table as patient renders (exact distortion); the
/// board is a plane, so the ray's hit is exact and the pixel is supersampled through the
/// local map from pixel to board (from the neighbouring rays), which keeps edges straight
/// in the undistorted sense and anti-aliased. Beyond the paper the backdrop is seen; the
/// back of the board is plain grey (no corners, no truth).
pub fn render_board(
    board: &CharucoBoard,
    intrinsics: &CameraIntrinsics,
    camera_from_board: &Isometry3<f64>,
    cfg: &RenderConfig,
) -> Result<(RgbImage, BoardTruth), CharucoError> {
    board.validate()?;
    let cfg = cfg.sanitised();
    let (w, h) = (intrinsics.width_px as usize, intrinsics.height_px as usize);
    let n = w * h;
    let board_from_camera = camera_from_board.inverse();
    let origin = Point3::from(board_from_camera.translation.vector);
    let rot = board_from_camera.rotation;
    let lamps: Vec<Point3<f64>> = cfg.lamps_in_camera_mm().iter().map(|l| board_from_camera * l).collect();
    let front = origin.z < 0.0;
    // The normal facing the camera's side.
    let normal = if front { -Vector3::z() } else { Vector3::z() };
    let (bw, bh) = board.size_mm();
    let pad = PAPER_MARGIN_SQUARES * board.square_mm;
    let rays = ray_table(intrinsics);

    let hit_of = |i: usize| -> Option<(Point2<f64>, f64)> {
        let r = rays.rays.get(i)?;
        let ray = Vector3::new(f64::from(r[0]), f64::from(r[1]), f64::from(r[2]));
        let d = rot * ray;
        if d.z.abs() < 1e-12 {
            return None;
        }
        let t = -origin.z / d.z;
        if t <= 0.0 {
            return None;
        }
        let q = origin + d * t;
        Some((Point2::new(q.x, q.y), t * ray.z))
    };

    let mut linear = vec![[0f32; 3]; n];
    let mut hit = vec![false; n];
    let mut depth = vec![f32::NAN; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let Some((p, z)) = hit_of(i) else { continue };
            if !(p.x >= -pad && p.y >= -pad && p.x <= bw + pad && p.y <= bh + pad) {
                continue;
            }
            // Pixel-to-board Jacobian from the neighbouring rays (one-sided at the border).
            let step = |j: Option<usize>, sign: f64| -> Vector2<f64> {
                j.and_then(hit_of).map_or(Vector2::zeros(), |(q, _)| (q - p) * sign)
            };
            let du = if x + 1 < w { step(Some(i + 1), 1.0) } else { step(i.checked_sub(1), -1.0) };
            let dv = if y + 1 < h { step(Some(i + w), 1.0) } else { step(i.checked_sub(w), -1.0) };
            let q3 = Point3::new(p.x, p.y, 0.0);
            let lit = (cfg.ambient + (1.0 - cfg.ambient) * lambert(&normal, &q3, &lamps)) as f32;
            let albedo = if front {
                let f = white_fraction(board, &p, &du, &dv);
                TONER_BLACK + (PAPER_WHITE - TONER_BLACK) * f
            } else {
                0.5 * PAPER_WHITE
            };
            linear[i] = [albedo * lit; 3];
            hit[i] = true;
            depth[i] = z as f32;
        }
    }
    let no_depth_noise = RenderConfig { depth_noise_sigma_mm: 0.0, ..cfg.clone() };
    let data = develop(&mut linear, &mut hit, &mut depth, intrinsics, "charuco", &no_depth_noise);
    let image = RgbImage { width: w as u32, height: h as u32, data };

    let to_px = |p: &Point3<f64>| -> Option<[f64; 2]> {
        let px = intrinsics.project(&(camera_from_board * p))?;
        intrinsics.contains(&px).then_some([px.x, px.y])
    };
    let (corners, markers) = if front {
        let corners = board
            .inner_corners()
            .into_iter()
            .filter_map(|(id, p)| to_px(&p).map(|pixel| CornerTruth { id, board_mm: [p.x, p.y, p.z], pixel }))
            .collect();
        let markers = board
            .markers()
            .into_iter()
            .filter_map(|(id, c)| {
                let px = [to_px(&c[0])?, to_px(&c[1])?, to_px(&c[2])?, to_px(&c[3])?];
                Some(MarkerTruth { id, corners_px: px })
            })
            .collect();
        (corners, markers)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok((image, BoardTruth { camera_from_board: *camera_from_board, corners, markers }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion};
    use smp_core::rig::Rig;

    fn board() -> CharucoBoard {
        CharucoBoard::default_board().expect("repository board parses")
    }

    /// The flange camera looking at the board's centre from `dist_mm`, tilted a little.
    fn pose(b: &CharucoBoard, dist_mm: f64, roll_deg: f64, pitch_deg: f64) -> Isometry3<f64> {
        let (bw, bh) = b.size_mm();
        let rot = UnitQuaternion::from_euler_angles(roll_deg.to_radians(), pitch_deg.to_radians(), 0.1);
        // camera_from_board = T(0,0,dist) * R * T(-centre)
        Isometry3::from_parts(Translation3::new(0.0, 0.0, dist_mm), rot)
            * Isometry3::translation(-0.5 * bw, -0.5 * bh, 0.0)
    }

    fn quiet() -> RenderConfig {
        RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() }
    }

    #[test]
    fn repository_board_parses_and_bad_specs_are_rejected() {
        let b = board();
        assert_eq!(b.dictionary, "DICT_4X4_50");
        assert!(b.marker_count() <= 50);
        let bad = |from: &str, to: &str| CharucoBoard::from_toml_str(&DEFAULT_CHARUCO_TOML.replace(from, to));
        assert!(matches!(bad("\"DICT_4X4_50\"", "\"DICT_6X6_250\""), Err(CharucoError::Dictionary(_))));
        assert!(matches!(bad("version = 1", "version = 2"), Err(CharucoError::Spec(SpecError::Version { .. }))));
        let too_big = format!("squares_x = 20\nsquares_y = 20\n{}", strip(&["squares_x", "squares_y"]));
        assert!(matches!(CharucoBoard::from_toml_str(&too_big), Err(CharucoError::TooManyMarkers { needed: 200 })));
        let fat = format!("marker_mm = 50.0\n{}", strip(&["marker_mm"]));
        assert!(matches!(CharucoBoard::from_toml_str(&fat), Err(CharucoError::Spec(_))));
        assert!(CharucoBoard::from_toml_str("version = 1").is_err());
    }

    fn strip(keys: &[&str]) -> String {
        DEFAULT_CHARUCO_TOML
            .lines()
            .filter(|l| !keys.iter().any(|k| l.trim_start().starts_with(k)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn layout_matches_opencv_4_6() {
        // Values printed by OpenCV 4.6's CharucoBoard::create(5, 4, 10, 7, DICT_4X4_50).
        let b = CharucoBoard {
            version: 1,
            squares_x: 5,
            squares_y: 4,
            square_mm: 10.0,
            marker_mm: 7.0,
            dictionary: "DICT_4X4_50".into(),
        };
        let m = b.markers();
        assert_eq!(m.len(), 10);
        let first = [(11.5, 1.5), (18.5, 1.5), (18.5, 8.5), (11.5, 8.5)];
        for (c, e) in m[0].1.iter().zip(first) {
            assert!((c.x - e.0).abs() < 1e-12 && (c.y - e.1).abs() < 1e-12, "{c:?} vs {e:?}");
        }
        assert!((m[2].1[0].x - 1.5).abs() < 1e-12 && (m[2].1[0].y - 11.5).abs() < 1e-12);
        assert!((m[9].1[0].x - 41.5).abs() < 1e-12 && (m[9].1[0].y - 31.5).abs() < 1e-12);
        let c = b.inner_corners();
        assert_eq!(c.len(), 12);
        assert_eq!((c[5].0, c[5].1.x, c[5].1.y), (5, 20.0, 20.0));
        assert_eq!((c[11].0, c[11].1.x, c[11].1.y), (11, 40.0, 30.0));
        // Marker 0's top-left bit cell is bit 15 of 0xb532 = 1 (white), its border black.
        let cell = 7.0 / 6.0;
        assert!(b.is_white(11.5 + 1.5 * cell, 1.5 + 1.5 * cell));
        assert!(!b.is_white(11.5 + 0.5 * cell, 1.5 + 1.5 * cell));
        assert!(!b.is_white(5.0, 5.0), "the origin square is black");
        assert!(b.is_white(10.5, 0.5), "the rim of a white square");
    }

    #[test]
    fn dictionary_ids_are_distinct_under_rotation() {
        // A property of any ArUco dictionary: no id equals another id (or itself) rotated.
        let rot = |v: u16| -> u16 {
            let mut r = 0u16;
            for y in 0..4 {
                for x in 0..4 {
                    let bit = (v >> (15 - (y * 4 + x))) & 1;
                    // (x, y) -> (3 - y, x)
                    let (nx, ny) = (3 - y, x);
                    r |= bit << (15 - (ny * 4 + nx));
                }
            }
            r
        };
        for (i, a) in DICT_4X4_50.iter().enumerate() {
            let (r1, r2, r3) = (rot(*a), rot(rot(*a)), rot(rot(rot(*a))));
            assert_ne!(*a, r1, "id {i} is rotation-symmetric");
            for (j, b) in DICT_4X4_50.iter().enumerate() {
                if i != j {
                    assert!(![*a, r1, r2, r3].contains(b), "ids {i} and {j} collide");
                }
            }
        }
    }

    /// Sub-pixel corner near `(u, v)` as OpenCV's cornerSubPix finds it: the point `q` to
    /// which every image gradient in an 11 × 11 window is perpendicular (`g · (p - q) = 0`),
    /// solved by least squares, with the window re-centred twice. Also returns -1 if the
    /// grey level around it is a saddle (two dark and two bright sectors), else +1.
    fn saddle(img: &RgbImage, u: f64, v: f64) -> Option<(f64, f64, f64)> {
        let g = img.to_gray();
        let at = |x: i64, y: i64| f64::from(g.get(x as u32, y as u32));
        let (mut qx, mut qy) = (u, v);
        for _ in 0..3 {
            let (cx, cy) = (qx.round() as i64, qy.round() as i64);
            let mut m = nalgebra::Matrix2::<f64>::zeros();
            let mut rhs = nalgebra::Vector2::<f64>::zeros();
            for dy in -5i64..=5 {
                for dx in -5i64..=5 {
                    let (x, y) = (cx + dx, cy + dy);
                    if x < 1 || y < 1 || x + 1 >= g.width as i64 || y + 1 >= g.height as i64 {
                        return None;
                    }
                    let gr = nalgebra::Vector2::new(
                        0.5 * (at(x + 1, y) - at(x - 1, y)),
                        0.5 * (at(x, y + 1) - at(x, y - 1)),
                    );
                    let ggt = gr * gr.transpose();
                    m += ggt;
                    rhs += ggt * nalgebra::Vector2::new(x as f64, y as f64);
                }
            }
            let q = m.lu().solve(&rhs)?;
            (qx, qy) = (q.x, q.y);
        }
        // A saddle: going round a 5-px circle, the grey level crosses its mean four times
        // (two dark, two bright sectors), with print-like contrast.
        let ring: Vec<f64> = (0..32)
            .map(|k| {
                let t = k as f64 * std::f64::consts::PI / 16.0;
                at((qx + 5.0 * t.cos()).round() as i64, (qy + 5.0 * t.sin()).round() as i64)
            })
            .collect();
        let mean = ring.iter().sum::<f64>() / ring.len() as f64;
        let crossings = (0..ring.len()).filter(|&k| (ring[k] > mean) != (ring[(k + 1) % ring.len()] > mean)).count();
        let contrast = ring.iter().copied().fold(f64::MIN, f64::max) - ring.iter().copied().fold(f64::MAX, f64::min);
        let saddle_score = if crossings == 4 && contrast > 60.0 { -1.0 } else { 1.0 };
        Some((qx, qy, saddle_score))
    }

    #[test]
    fn rendered_corners_sit_on_the_visible_saddles() {
        let b = board();
        let rig = Rig::default_sim();
        let intr = rig.flange_camera.intrinsics; // with the rig's radial distortion
                                                 // A little defocus (about 1.2 px sigma), as in a real close-up: sharp 1-px edges make any
                                                 // sub-pixel corner finder lock to the pixel grid.
        let cfg = RenderConfig { aperture_mm: 2.0, focus_distance_mm: Some(85.0), ..quiet() };
        let (img, truth) = render_board(&b, &intr, &pose(&b, 95.0, 12.0, -8.0), &cfg).expect("renders");
        assert!(truth.corners.len() >= 20, "{} corners in view", truth.corners.len());
        let mut ids: Vec<u32> = truth.corners.iter().map(|c| c.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), truth.corners.len(), "ids unique and sorted");
        let mut worst: f64 = 0.0;
        let mut sum2 = 0.0;
        let mut checked = 0;
        for c in &truth.corners {
            let Some((x, y, det)) = saddle(&img, c.pixel[0], c.pixel[1]) else { continue };
            assert!(det < 0.0, "corner {} is not a saddle", c.id);
            let e = ((x - c.pixel[0]).powi(2) + (y - c.pixel[1]).powi(2)).sqrt();
            worst = worst.max(e);
            sum2 += e * e;
            checked += 1;
        }
        assert!(checked >= 20, "{checked}");
        let rms = (sum2 / checked as f64).sqrt();
        eprintln!("{checked} corners: rms {rms:.4} px, worst {worst:.4} px");
        // The bound is the finder's own pixel-locking (OpenCV's cornerSubPix, run on a dump
        // of this view, moves the true corners by 0.10 px rms too); the edges themselves lie
        // within 0.07 px of the projected board lines.
        assert!(rms < 0.1, "rms corner offset {rms:.3} px");
        assert!(worst < 0.2, "worst corner offset {worst:.3} px");
    }

    #[test]
    fn a_board_behind_the_camera_or_seen_from_the_back_yields_no_corners() {
        let b = board();
        let intr = Rig::default_sim().flange_camera.intrinsics;
        let (bw, bh) = b.size_mm();
        let behind = Isometry3::translation(-0.5 * bw, -0.5 * bh, -90.0);
        let (img, truth) = render_board(&b, &intr, &behind, &quiet()).expect("renders");
        assert!(truth.corners.is_empty() && truth.markers.is_empty());
        let bg = RenderConfig::default().background_srgb;
        assert!(img.data.chunks_exact(3).all(|p| p == bg), "only backdrop");
        // Turned over (camera on the +z side): the plain back, no truth.
        let back = Isometry3::from_parts(
            Translation3::new(0.0, 0.0, 90.0),
            UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
        ) * Isometry3::translation(-0.5 * bw, -0.5 * bh, 0.0);
        let (_, truth) = render_board(&b, &intr, &back, &quiet()).expect("renders");
        assert!(truth.corners.is_empty());
    }

    #[test]
    fn board_renders_are_deterministic_by_seed() {
        let b = board();
        let intr = Rig::default_sim().flange_camera.intrinsics;
        let p = pose(&b, 100.0, 5.0, 5.0);
        let cfg = RenderConfig { full_well_electrons: 8000.0, ..RenderConfig::default() };
        let (a, ta) = render_board(&b, &intr, &p, &cfg).expect("renders");
        let (a2, _) = render_board(&b, &intr, &p, &cfg).expect("renders");
        let (c, tc) = render_board(&b, &intr, &p, &RenderConfig { seed: 3, ..cfg.clone() }).expect("renders");
        assert_eq!(a, a2);
        assert_ne!(a, c);
        assert_eq!(ta, tc, "truth does not depend on noise");
        assert!(!ta.markers.is_empty());
    }

    /// Writes a board view as PGM for checking with OpenCV by hand:
    /// `SMP_SIM_DUMP=/tmp cargo test -p smp-sim --lib -- --ignored dump_board`.
    #[test]
    #[ignore]
    fn dump_board() {
        let Ok(dir) = std::env::var("SMP_SIM_DUMP") else { return };
        let b = board();
        let mut intr = Rig::default_sim().flange_camera.intrinsics;
        let mut p = pose(&b, 95.0, 12.0, -8.0);
        let mut cfg = RenderConfig::default();
        if std::env::var("SMP_BOARD_PLAIN").is_ok() {
            intr.distortion = [0.0; 5];
            p = pose(&b, 95.0, 0.0, 0.0);
            cfg.noise_sigma_levels = 0.0;
        }
        let (img, truth) = render_board(&b, &intr, &p, &cfg).expect("r");
        let g = img.to_gray();
        let mut bytes = format!("P5\n{} {}\n255\n", g.width, g.height).into_bytes();
        bytes.extend_from_slice(&g.data);
        std::fs::write(format!("{dir}/board.pgm"), bytes).expect("write");
        let lines: Vec<String> =
            truth.corners.iter().map(|c| format!("{} {:.4} {:.4}", c.id, c.pixel[0], c.pixel[1])).collect();
        std::fs::write(format!("{dir}/board_truth.txt"), lines.join("\n")).expect("write");
    }
}

//! ChArUco detection: ArUco markers (DICT_4X4_50) and the chessboard corners between them,
//! interpolated and refined to sub-pixel by OpenCV 4.6's `aruco` module.

use nalgebra::{Point2, Point3};
use opencv::aruco;
use opencv::core::{no_array, Mat, Point2f, Rect, Size, TermCriteria, TermCriteria_Type, Vector, CV_64F};
use opencv::imgproc;
use opencv::prelude::*;
use smp_core::calib_board::CharucoBoard;
use smp_core::image::RgbImage;

use super::CalibError;
use crate::cv::rgb_mat;
use crate::error::{cv_err, VisionError};

/// One ChArUco corner found in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct CornerObservation {
    /// ChArUco corner id (see `smp_core::calib_board`).
    pub id: u32,
    /// Sub-pixel position, OpenCV pixel-centre convention.
    pub pixel: Point2<f64>,
    /// The corner's position in the board frame, mm.
    pub board_mm: Point3<f64>,
}

/// What one image shows of the board.
#[derive(Debug, Clone, PartialEq)]
pub struct CharucoDetection {
    /// The view's name, for messages.
    pub label: String,
    pub width_px: u32,
    pub height_px: u32,
    /// ArUco markers of the board found.
    pub markers: usize,
    /// Interpolated corners, sorted by id.
    pub corners: Vec<CornerObservation>,
    /// Variance of the Laplacian over the corners' bounding box (whole image without
    /// corners): a focus measure, low when the view is blurred.
    pub sharpness: f64,
}

/// Finds the board's markers and corners in `image`.
///
/// An image that shows no board is not an error (the detection is empty and the
/// calibration rejects it with the reason); only an unreadable buffer or an OpenCV failure is.
pub fn detect_charuco(image: &RgbImage, board: &CharucoBoard, label: &str) -> Result<CharucoDetection, CalibError> {
    board.validate()?;
    check_rgb(image, label)?;
    let rgb = rgb_mat(image, label)?;
    let mut gray = Mat::default();
    imgproc::cvt_color(&rgb, &mut gray, imgproc::COLOR_RGB2GRAY, 0).map_err(cv_err("RGB to grey", label))?;

    let dict = aruco::get_predefined_dictionary(aruco::PREDEFINED_DICTIONARY_NAME::DICT_4X4_50)
        .map_err(cv_err("loading DICT_4X4_50", label))?;
    let cv_board = aruco::CharucoBoard::create(
        board.squares_x as i32,
        board.squares_y as i32,
        board.square_mm as f32,
        board.marker_mm as f32,
        &dict,
    )
    .map_err(cv_err("creating the ChArUco board", label))?;
    let mut params = aruco::DetectorParameters::create().map_err(cv_err("detector parameters", label))?;
    params.set_corner_refinement_method(aruco::CORNER_REFINE_SUBPIX);

    let mut marker_corners: Vector<Vector<Point2f>> = Vector::new();
    let mut marker_ids: Vector<i32> = Vector::new();
    let mut rejected: Vector<Vector<Point2f>> = Vector::new();
    aruco::detect_markers(&gray, &dict, &mut marker_corners, &mut marker_ids, &params, &mut rejected)
        .map_err(cv_err("detecting ArUco markers", label))?;
    // Markers whose id the board does not hold belong to something else in view.
    let max_id = board.marker_count() as i32;
    let mut mc: Vector<Vector<Point2f>> = Vector::new();
    let mut mi: Vector<i32> = Vector::new();
    for (c, id) in marker_corners.iter().zip(marker_ids.iter()) {
        if (0..max_id).contains(&id) {
            mc.push(c);
            mi.push(id);
        }
    }

    let mut corners = Vec::new();
    if !mi.is_empty() {
        let mut ch_corners: Vector<Point2f> = Vector::new();
        let mut ch_ids: Vector<i32> = Vector::new();
        aruco::interpolate_corners_charuco(
            &mc,
            &mi,
            &gray,
            &cv_board,
            &mut ch_corners,
            &mut ch_ids,
            &no_array(),
            &no_array(),
            2,
        )
        .map_err(cv_err("interpolating ChArUco corners", label))?;
        refine_corners(&gray, &mut ch_corners, label)?;
        for (p, id) in ch_corners.iter().zip(ch_ids.iter()) {
            let Ok(id) = u32::try_from(id) else { continue };
            let Some(board_mm) = board.corner_mm(id) else { continue };
            corners.push(CornerObservation { id, pixel: Point2::new(f64::from(p.x), f64::from(p.y)), board_mm });
        }
        corners.sort_by_key(|c| c.id);
        corners.dedup_by_key(|c| c.id);
    }
    let sharpness = laplacian_variance(&gray, &corners, label)?;
    Ok(CharucoDetection {
        label: label.to_string(),
        width_px: image.width,
        height_px: image.height,
        markers: mi.len(),
        corners,
        sharpness,
    })
}

/// Refines the interpolated corners with `cornerSubPix` once more, to convergence.
///
/// Why: OpenCV 4.6's `interpolateCornersCharuco` returned corners offset by (+0.5, +0.5) px
/// from the true saddles on simulator renders (measured: mean offset 0.49, 0.51 px over 63
/// corners), while `cornerSubPix` itself, started there, converges to within 0.01 px of the
/// truth. A half-pixel shift moves the principal point and, through it, the hand-eye
/// rotation by ~0.015° per 0.5 px, so it is removed here. The window is a third of the
/// smallest spacing between corners (2-8 px half-size) so it never reaches a neighbour.
fn refine_corners(gray: &Mat, corners: &mut Vector<Point2f>, label: &str) -> Result<(), CalibError> {
    if corners.is_empty() {
        return Ok(());
    }
    let pts: Vec<Point2f> = corners.to_vec();
    let mut min_d2 = f32::MAX;
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            min_d2 = min_d2.min((a.x - b.x).powi(2) + (a.y - b.y).powi(2));
        }
    }
    let half = if min_d2 == f32::MAX { 5 } else { ((min_d2.sqrt() / 3.0).floor() as i32).clamp(2, 8) };
    let criteria = TermCriteria::new(TermCriteria_Type::COUNT as i32 + TermCriteria_Type::EPS as i32, 100, 1e-4)
        .map_err(cv_err("termination criteria", label))?;
    imgproc::corner_sub_pix(gray, corners, Size::new(half, half), Size::new(-1, -1), criteria)
        .map_err(cv_err("refining ChArUco corners", label))?;
    Ok(())
}

/// Variance of the Laplacian over the corners' bounding box: sharp edges give large values,
/// defocus removes them. Measured over the board only, so a plain background does not make
/// a sharp view look blurred.
fn laplacian_variance(gray: &Mat, corners: &[CornerObservation], label: &str) -> Result<f64, CalibError> {
    let (w, h) = (gray.cols(), gray.rows());
    let rect = if corners.len() >= 2 {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for c in corners {
            x0 = x0.min(c.pixel.x);
            y0 = y0.min(c.pixel.y);
            x1 = x1.max(c.pixel.x);
            y1 = y1.max(c.pixel.y);
        }
        let x0 = (x0.floor() as i32).clamp(0, w - 1);
        let y0 = (y0.floor() as i32).clamp(0, h - 1);
        let x1 = (x1.ceil() as i32).clamp(x0 + 1, w);
        let y1 = (y1.ceil() as i32).clamp(y0 + 1, h);
        Rect::new(x0, y0, x1 - x0, y1 - y0)
    } else {
        Rect::new(0, 0, w, h)
    };
    let roi = Mat::roi(gray, rect).map_err(cv_err("cropping the board", label))?;
    let mut lap = Mat::default();
    imgproc::laplacian(&roi, &mut lap, CV_64F, 3, 1.0, 0.0, opencv::core::BORDER_REPLICATE)
        .map_err(cv_err("Laplacian", label))?;
    let mut mean = Mat::default();
    let mut std = Mat::default();
    opencv::core::mean_std_dev(&lap, &mut mean, &mut std, &no_array()).map_err(cv_err("focus measure", label))?;
    let s = *std.at::<f64>(0).map_err(cv_err("reading the focus measure", label))?;
    Ok(s * s)
}

/// Size and buffer checks, so a truncated frame is an error naming the view, never a panic.
fn check_rgb(image: &RgbImage, label: &str) -> Result<(), VisionError> {
    if image.width == 0 || image.height == 0 {
        return Err(VisionError::EmptyImage { label: label.to_string(), width: image.width, height: image.height });
    }
    let expected = image.width as usize * image.height as usize * 3;
    if image.data.len() != expected {
        return Err(VisionError::BufferSize {
            label: label.to_string(),
            what: "RGB",
            width: image.width,
            height: image.height,
            found: image.data.len(),
            expected,
        });
    }
    Ok(())
}

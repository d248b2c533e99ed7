//! Bridges between the core image buffers and OpenCV `Mat`s, plus input checks shared by
//! every stage (so a truncated frame is an error with the view's name, never a panic).

use opencv::core::{Mat, Scalar, Vec3b, CV_32FC3};
use opencv::prelude::*;
use smp_core::image::{CameraView, DepthImage, GrayImage, RgbImage};

use crate::error::{cv_err, VisionError};

/// Checks size and buffer length of a view's image (and depth, when present).
pub(crate) fn check_view(view: &CameraView) -> Result<(), VisionError> {
    let img = &view.image;
    if img.width == 0 || img.height == 0 {
        return Err(VisionError::EmptyImage { label: view.label.clone(), width: img.width, height: img.height });
    }
    let expected = img.width as usize * img.height as usize * 3;
    if img.data.len() != expected {
        return Err(VisionError::BufferSize {
            label: view.label.clone(),
            what: "RGB",
            width: img.width,
            height: img.height,
            found: img.data.len(),
            expected,
        });
    }
    if let Some(d) = &view.depth {
        check_depth(&view.label, d, img.width, img.height)?;
    }
    Ok(())
}

pub(crate) fn check_depth(label: &str, d: &DepthImage, width: u32, height: u32) -> Result<(), VisionError> {
    if d.width != width || d.height != height {
        return Err(VisionError::DepthSize {
            label: label.to_string(),
            depth_w: d.width,
            depth_h: d.height,
            image_w: width,
            image_h: height,
        });
    }
    let expected = d.width as usize * d.height as usize;
    if d.z_mm.len() != expected {
        return Err(VisionError::BufferSize {
            label: label.to_string(),
            what: "depth",
            width: d.width,
            height: d.height,
            found: d.z_mm.len(),
            expected,
        });
    }
    Ok(())
}

/// Borrowed CV_8UC3 view of an RGB buffer (channel order r g b).
pub(crate) fn rgb_mat<'a>(img: &'a RgbImage, label: &str) -> Result<opencv::boxed_ref::BoxedRef<'a, Mat>, VisionError> {
    Mat::new_rows_cols_with_bytes::<Vec3b>(img.height as i32, img.width as i32, &img.data)
        .map_err(cv_err("wrapping the RGB frame", label))
}

/// Borrowed CV_8UC1 view of a grey buffer.
pub(crate) fn gray_mat<'a>(
    img: &'a GrayImage,
    label: &str,
) -> Result<opencv::boxed_ref::BoxedRef<'a, Mat>, VisionError> {
    Mat::new_rows_cols_with_data::<u8>(img.height as i32, img.width as i32, &img.data)
        .map_err(cv_err("wrapping the grey frame", label))
}

/// Copies a continuous CV_8UC1 `Mat` into a [`GrayImage`].
pub(crate) fn mat_to_gray(m: &Mat, label: &str) -> Result<GrayImage, VisionError> {
    let data = m.data_typed::<u8>().map_err(cv_err("reading a grey Mat", label))?.to_vec();
    Ok(GrayImage { width: m.cols() as u32, height: m.rows() as u32, data })
}

/// CIE L*a*b* (L in 0..100, a/b signed) of an RGB image as a CV_32FC3 `Mat`, via OpenCV's
/// float conversion (sRGB companding, D65), so tone figures are comparable across rigs.
pub(crate) fn lab_f32(img: &RgbImage, label: &str) -> Result<Mat, VisionError> {
    let rgb = rgb_mat(img, label)?;
    let mut f = Mat::default();
    rgb.convert_to(&mut f, CV_32FC3, 1.0 / 255.0, 0.0).map_err(cv_err("converting to float", label))?;
    let mut lab = Mat::default();
    opencv::imgproc::cvt_color(&f, &mut lab, opencv::imgproc::COLOR_RGB2Lab, 0).map_err(cv_err("RGB to Lab", label))?;
    Ok(lab)
}

/// A zero-filled CV_8UC1 `Mat`.
pub(crate) fn zeros_u8(rows: i32, cols: i32, label: &str) -> Result<Mat, VisionError> {
    Mat::new_rows_cols_with_default(rows, cols, opencv::core::CV_8UC1, Scalar::all(0.0))
        .map_err(cv_err("allocating a mask", label))
}

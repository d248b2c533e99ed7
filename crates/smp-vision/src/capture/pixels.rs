//! OpenCV frames (BGR, BGRA or grey, 8-bit) to the core's RGB buffers and back.

use opencv::core::{Mat, Vec3b, CV_16F, CV_16S, CV_16U, CV_32F, CV_32S, CV_64F, CV_8U};
use opencv::prelude::*;
use smp_core::image::RgbImage;

use super::error::{cv_step, CaptureError};

/// Channel order of an 8-bit interleaved frame as OpenCV hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Gray,
    Bgr,
    Bgra,
}

impl Layout {
    fn channels(self) -> usize {
        match self {
            Layout::Gray => 1,
            Layout::Bgr => 3,
            Layout::Bgra => 4,
        }
    }
}

/// RGB from interleaved OpenCV pixels, row-major without padding; `None` when `bytes` is
/// not exactly `width * height` pixels of `layout`.
pub(crate) fn to_rgb(width: u32, height: u32, layout: Layout, bytes: &[u8]) -> Option<RgbImage> {
    let n = width as usize * height as usize;
    let ch = layout.channels();
    if bytes.len() != n * ch {
        return None;
    }
    let mut data = Vec::with_capacity(n * 3);
    for p in bytes.chunks_exact(ch) {
        match layout {
            Layout::Gray => data.extend_from_slice(&[p[0], p[0], p[0]]),
            Layout::Bgr | Layout::Bgra => data.extend_from_slice(&[p[2], p[1], p[0]]),
        }
    }
    Some(RgbImage { width, height, data })
}

/// BGR bytes of an RGB image (the same swap, for OpenCV's writers).
pub(crate) fn to_bgr(image: &RgbImage) -> Vec<u8> {
    image.data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect()
}

/// A BGR `Mat` (owned copy) of an RGB image, for `imwrite` and `VideoWriter`.
pub(crate) fn bgr_mat(image: &RgbImage, input: &str) -> Result<Mat, CaptureError> {
    let bgr = to_bgr(image);
    let m = Mat::new_rows_cols_with_bytes::<Vec3b>(image.height as i32, image.width as i32, &bgr)
        .map_err(cv_step("wrapping a frame to write", input))?;
    m.try_clone().map_err(cv_step("copying a frame to write", input))
}

/// The size every frame of a stream must have, and why (for the error).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameSize {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) hint: &'static str,
}

/// Refuses an empty frame, or one whose size differs from `size` (set from this frame, with
/// `hint`, when still unset).
pub(crate) fn check_size(
    size: &mut Option<FrameSize>,
    hint: &'static str,
    image: &RgbImage,
    input: &str,
    index: u64,
) -> Result<(), CaptureError> {
    let want = *size.get_or_insert(FrameSize { width: image.width, height: image.height, hint });
    if (image.width, image.height) == (want.width, want.height) && image.width > 0 && image.height > 0 {
        return Ok(());
    }
    Err(CaptureError::FrameSize {
        input: input.to_string(),
        index,
        width: image.width,
        height: image.height,
        expected_width: want.width,
        expected_height: want.height,
        hint: want.hint,
    })
}

fn depth_bits(depth: i32) -> u32 {
    match depth {
        CV_8U => 8,
        CV_16U | CV_16S | CV_16F => 16,
        CV_32S | CV_32F => 32,
        CV_64F => 64,
        _ => 8, // CV_8S
    }
}

/// Copies a decoded frame into an [`RgbImage`]; `index` names the frame in errors.
pub(crate) fn mat_to_rgb(m: &impl MatTraitConst, input: &str, index: u64) -> Result<RgbImage, CaptureError> {
    let (depth, channels) = (m.depth(), m.channels());
    let layout = match (depth, channels) {
        (CV_8U, 1) => Layout::Gray,
        (CV_8U, 3) => Layout::Bgr,
        (CV_8U, 4) => Layout::Bgra,
        _ => {
            return Err(CaptureError::PixelFormat {
                input: input.to_string(),
                index,
                channels,
                depth_bits: depth_bits(depth),
            })
        }
    };
    let (width, height) = (u32::try_from(m.cols()).unwrap_or(0), u32::try_from(m.rows()).unwrap_or(0));
    let owned;
    let bytes = if m.is_continuous() {
        m.data_bytes()
    } else {
        owned = m.try_clone().map_err(cv_step("copying a padded frame", input))?;
        owned.data_bytes()
    }
    .map_err(cv_step("reading the frame's pixels", input))?;
    to_rgb(width, height, layout, bytes).ok_or_else(|| CaptureError::OpenCv {
        input: input.to_string(),
        step: "reading the frame's pixels",
        message: format!("{} bytes for a {width}x{height} frame of {channels} channel(s)", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgr_becomes_rgb_and_back() {
        // Two pixels: pure blue and an orange, in OpenCV's order.
        let bgr = [255, 0, 0, 0, 128, 255];
        let rgb = to_rgb(2, 1, Layout::Bgr, &bgr).expect("2 pixels");
        assert_eq!(rgb.get(0, 0), [0, 0, 255]);
        assert_eq!(rgb.get(1, 0), [255, 128, 0]);
        assert_eq!(to_bgr(&rgb), bgr.to_vec());
    }

    #[test]
    fn grey_and_bgra_are_read_and_short_buffers_refused() {
        let g = to_rgb(2, 1, Layout::Gray, &[7, 200]).expect("grey");
        assert_eq!(g.data, vec![7, 7, 7, 200, 200, 200]);
        let a = to_rgb(1, 1, Layout::Bgra, &[1, 2, 3, 0]).expect("bgra");
        assert_eq!(a.data, vec![3, 2, 1]);
        assert!(to_rgb(2, 2, Layout::Bgr, &[0; 11]).is_none());
        assert!(to_rgb(2, 2, Layout::Bgr, &[0; 13]).is_none());
    }

    #[test]
    fn a_mat_round_trips_and_a_16_bit_frame_is_named() {
        let mut img = RgbImage::new(3, 2, [10, 20, 30]);
        img.put(2, 1, [250, 0, 5]);
        let m = bgr_mat(&img, "test").expect("mat");
        assert_eq!(*m.at_2d::<Vec3b>(1, 2).expect("pixel"), Vec3b::from([5, 0, 250]));
        assert_eq!(mat_to_rgb(&m, "test", 0).expect("back"), img);
        // A region of interest is not continuous: it is copied, not misread.
        let roi = Mat::roi(&m, opencv::core::Rect::new(1, 0, 2, 2)).expect("roi");
        let sub = mat_to_rgb(&roi, "test", 0).expect("roi back");
        assert_eq!((sub.width, sub.height, sub.get(1, 1)), (2, 2, [250, 0, 5]));
        let deep = Mat::new_rows_cols_with_default(2, 2, opencv::core::CV_16UC3, opencv::core::Scalar::all(0.0))
            .expect("16-bit");
        let e = mat_to_rgb(&deep, "video file `x.avi`", 4).expect_err("16-bit");
        assert!(matches!(e, CaptureError::PixelFormat { index: 4, channels: 3, depth_bits: 16, .. }), "{e:?}");
    }
}

//! Why vision could not produce an answer; each variant names the view and what to check.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum VisionError {
    #[error("view `{label}`: the image is empty ({width}x{height} px); check that the camera delivered a frame")]
    EmptyImage { label: String, width: u32, height: u32 },
    #[error(
        "view `{label}`: image buffer has {found} bytes but {width}x{height} {what} needs {expected}; the frame is truncated or its size is mislabelled"
    )]
    BufferSize { label: String, what: &'static str, width: u32, height: u32, found: usize, expected: usize },
    #[error("view `{label}`: the frame is black (brightest pixel {max_level}/255); check the lights, the exposure and the lens cap")]
    BlackImage { label: String, max_level: u8 },
    #[error("view `{label}`: no depth frame; switch the camera's structured-light depth mode on for scanning")]
    NoDepth { label: String },
    #[error("view `{label}`: depth frame is {depth_w}x{depth_h} px but the image is {image_w}x{image_h}; both must come from the same exposure")]
    DepthSize { label: String, depth_w: u32, depth_h: u32, image_w: u32, image_h: u32 },
    #[error(
        "view `{label}`: no head found against the backdrop (largest bright region {area_px} px, need {min_px}); check that the patient is in the head rest, in frame and lit, and the backdrop is dark"
    )]
    NoHead { label: String, area_px: usize, min_px: usize },
    #[error(
        "view `{label}`: the head region has only {valid} valid depth pixels (need {needed}); check the depth projector and that the head is within the depth range"
    )]
    NoDepthOnHead { label: String, valid: usize, needed: usize },
    #[error("no scan tiles were given; plan them with scan_positions and capture one view per position")]
    NoTiles,
    #[error("surface fit failed with {points} depth points: {reason}; check that the scan tiles have depth and overlap the scalp")]
    SurfaceFit { points: usize, reason: String },
    #[error("OpenCV failed in {step} on view `{label}`: {message}")]
    OpenCv { step: &'static str, label: String, message: String },
    #[error("vision config: field `{field}` {problem}")]
    Config { field: &'static str, problem: String },
}

/// Attaches the step and view to an OpenCV error.
pub(crate) fn cv_err<'a>(step: &'static str, label: &'a str) -> impl Fn(opencv::Error) -> VisionError + 'a {
    move |e| VisionError::OpenCv { step, label: label.to_string(), message: e.message }
}

//! Camera and tool calibration: ChArUco detection, flange-camera intrinsics, hand-eye
//! (`flange_from_camera`), needle-tip (TCP) pivot calibration, and the versioned TOML files
//! that record them.
//!
//! Why here: calibration is the foundation every millimetre the arm places rests on; it is
//! done from images and arm poses only (never simulator truth), so the figures the tests and
//! `smp calibrate sim` measure against the simulator are honest.
//!
//! Pipeline ([`run_calibration`] runs all of it):
//! 1. [`detect_charuco`]: image -> markers and interpolated, sub-pixel ChArUco corners.
//! 2. [`calibrate_intrinsics`]: detections -> camera matrix + `k1 k2 p1 p2 k3`, rejecting
//!    partial, blurred and degenerate views with the reason.
//! 3. [`board_pose`] + [`calibrate_hand_eye_from_views`]: arm poses and board views ->
//!    `flange_from_camera` (OpenCV's five AX = XB methods, the best refined by
//!    Levenberg-Marquardt on the corners' reprojection error).
//! 4. [`calibrate_tcp`]: flange poses pivoting about one point -> `flange_from_needle_tip`.
//! 5. [`IntrinsicsFile`], [`HandEyeFile`], [`TcpFile`]: versioned TOML with date, method and
//!    residuals.

mod detect;
mod files;
mod hand_eye;
mod intrinsics;
mod lm;
mod pipeline;
mod tcp;

pub use detect::{detect_charuco, CharucoDetection, CornerObservation};
pub use files::{CalibrationFile, HandEyeFile, IntrinsicsFile, TcpFile, CALIBRATION_FILE_VERSION};
pub use hand_eye::{
    board_pose, calibrate_hand_eye, calibrate_hand_eye_from_views, check_motion_diversity, HandEyeCalibration,
    HandEyeCandidate, HandEyeConfig,
};
pub use intrinsics::{
    calibrate_intrinsics, screen_view, IntrinsicsCalibration, IntrinsicsConfig, RejectReason, RejectedView,
    ViewResidual,
};
pub use pipeline::{
    add_corner_noise, intrinsics_error_px, pose_error, run_calibration, CalibrationInput, CalibrationReport,
};
pub use tcp::{calibrate_tcp, pivot_poses, TcpCalibration, TcpConfig};

use smp_core::calib_board::CharucoError;
use smp_core::SpecError;
use thiserror::Error;

use crate::error::VisionError;

/// Why a calibration step could not produce a result; each variant says what to change.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CalibError {
    /// The board spec is invalid.
    #[error(transparent)]
    Board(#[from] CharucoError),
    /// An image cannot be read (empty, truncated) or OpenCV failed on it.
    #[error(transparent)]
    Vision(#[from] VisionError),
    /// OpenCV failed in a step that is not tied to one view.
    #[error("OpenCV failed in {step}: {message}")]
    OpenCv { step: &'static str, message: String },
    /// Too few views survived the checks.
    #[error(
        "{step}: only {usable} usable views, need at least {needed}; rejected: {rejected}. Capture more sharp views \
         that show most of the board at varied tilts and positions"
    )]
    TooFewViews { step: &'static str, usable: usize, needed: usize, rejected: String },
    /// Two inputs that must pair up one to one have different lengths.
    #[error("{step}: {left_what} has {left} entries but {right_what} has {right}; give one of each per view")]
    LengthMismatch { step: &'static str, left_what: &'static str, left: usize, right_what: &'static str, right: usize },
    /// The arm motions cannot determine the unknown (e.g. pure translations, one rotation axis).
    #[error("{step}: degenerate motion: {detail}")]
    DegenerateMotion { step: &'static str, detail: String },
    /// Views of one calibration must come from one camera mode.
    #[error("view `{label}` is {width}x{height} px but the first view is {expected_w}x{expected_h}; calibrate one camera mode at a time")]
    ImageSize { label: String, width: u32, height: u32, expected_w: u32, expected_h: u32 },
    /// A view's board pose could not be solved.
    #[error("board pose of view `{label}`: {reason}")]
    Pose { label: String, reason: String },
    /// A number in the input or the result is NaN or infinite.
    #[error("{step}: {what} is not finite; check the input poses and detections")]
    NotFinite { step: &'static str, what: String },
    /// A tuning value is out of range.
    #[error("calibration config: field `{field}` {problem}")]
    Config { field: &'static str, problem: String },
    /// A calibration file cannot be read or written.
    #[error(transparent)]
    File(#[from] SpecError),
}

/// Attaches the step to an OpenCV error.
pub(crate) fn ocv(step: &'static str) -> impl Fn(opencv::Error) -> CalibError {
    move |e| CalibError::OpenCv { step, message: e.message }
}

//! Why a capture could not deliver a frame; each variant names the input and what to do.

use std::path::PathBuf;

use thiserror::Error;

/// A capture failure. `input` is the source as [`super::CaptureSource`] displays it
/// ("camera device 0", "video file `a.avi`", "image sequence `dir/frame_%04d.png`").
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CaptureError {
    #[error("{input}: `{path}` does not exist; check the path (and that the recording was copied whole)")]
    FileMissing { input: String, path: PathBuf },
    #[error(
        "{input}: no first frame: neither `{first0}` nor `{first1}` exists; an image sequence starts at index 0 or 1 \
         and its pattern names the frames printf-style, e.g. `dir/frame_%04d.png`"
    )]
    SequenceMissing { input: String, first0: String, first1: String },
    #[error(
        "cannot open camera device {index}: OpenCV has no backend that opened it; check that the camera is plugged \
         in (`/dev/video{index}` exists), that no other program holds it, and that this user may read it"
    )]
    DeviceNotOpened { index: u32 },
    #[error(
        "{input}: OpenCV could not open it ({detail}); check that it is a video or image file this OpenCV build can \
         decode (FFmpeg/GStreamer backends, PNG/JPEG codecs)"
    )]
    NotOpened { input: String, detail: String },
    #[error("{input}: end of stream after {frames} frame(s)")]
    EndOfStream { input: String, frames: u64 },
    #[error(
        "{input}: the camera delivered no frame after {frames} frame(s); check the cable and the camera's power, then \
         reopen it"
    )]
    DeviceRead { input: String, frames: u64 },
    #[error(
        "{input}: frame {index} is {width}x{height} px but {expected_width}x{expected_height} px was expected; {hint}"
    )]
    FrameSize {
        input: String,
        index: u64,
        width: u32,
        height: u32,
        expected_width: u32,
        expected_height: u32,
        hint: &'static str,
    },
    #[error(
        "{input}: frame {index} has {channels} channel(s) of {depth_bits}-bit samples; only 8-bit grey, BGR or BGRA \
         frames are read (set the camera to an 8-bit mode or convert the recording)"
    )]
    PixelFormat { input: String, index: u64, channels: i32, depth_bits: u32 },
    #[error(
        "timestamp file `{path}` line {line}: {problem}; the file holds one time in seconds a line, in frame order"
    )]
    TimestampFile { path: PathBuf, line: usize, problem: String },
    #[error("timestamp file `{path}`: cannot read it: {message}")]
    TimestampRead { path: PathBuf, message: String },
    #[error(
        "{input}: frame {index} has no timestamp: `{path}` lists only {listed}; the sidecar and the frames do not \
         belong together (re-record, or remove the sidecar to time frames by the frame rate)"
    )]
    TimestampsShort { input: String, path: PathBuf, listed: usize, index: u64 },
    #[error(
        "{input}: the sequence ended after {frames} frame(s) but `{path}` lists {listed}; a frame file is missing \
         (OpenCV stops at the first gap in the numbering)"
    )]
    SequenceShort { input: String, path: PathBuf, listed: usize, frames: u64 },
    #[error(
        "{input}: frame {index} has timestamp {time_s} s, not after the previous frame's {previous_s} s; frames must \
         come in time order (a damaged file or a wrong timestamp sidecar)"
    )]
    OutOfOrder { input: String, index: u64, time_s: f64, previous_s: f64 },
    #[error("{input}: frame {index} has time {time_s} s, not a finite, non-negative time; check the source's clock")]
    BadTime { input: String, index: u64, time_s: f64 },
    #[error("{input}: {what} is {value}; {hint}")]
    Setting { input: String, what: &'static str, value: String, hint: &'static str },
    #[error("{input}: OpenCV failed in {step}: {message}")]
    OpenCv { input: String, step: &'static str, message: String },
    #[error("{input}: cannot write `{path}`: {message}")]
    Write { input: String, path: PathBuf, message: String },
}

/// Attaches the step and input to an OpenCV error.
pub(crate) fn cv_step<'a>(step: &'static str, input: &'a str) -> impl Fn(opencv::Error) -> CaptureError + 'a {
    move |e| CaptureError::OpenCv { input: input.to_string(), step, message: e.message }
}

//! Where frames come from and how each gets its time: OpenCV's `VideoCapture` over a
//! camera device, a video file or a numbered image sequence.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};
use smp_core::image::RgbImage;

use super::error::{cv_step, CaptureError};
use super::pixels::{check_size, mat_to_rgb, FrameSize};
use super::timestamps::{check_time, parse_timestamps, TIMESTAMPS_FILE};

/// A source of frames.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptureSource {
    /// A camera by OpenCV device index (`/dev/video<index>` with V4L2). Frames are timed by
    /// the host's monotonic clock since the capture was opened, read when the frame was grabbed.
    Device(u32),
    /// A video file (any container and codec this OpenCV build decodes). Frames are timed by
    /// the stream's presentation time (`CAP_PROP_POS_MSEC`).
    VideoFile(PathBuf),
    /// Numbered image files named by a printf pattern (`dir/frame_%04d.png`; numbering
    /// starts at 0 or 1 and stops at the first gap). Frames are timed by the sidecar
    /// `timestamps.txt` in the pattern's directory when it exists (see
    /// [`super::timestamps`]), else as frame index / `fps` (`None`: the sidecar is required).
    ImageSequence { pattern: PathBuf, fps: Option<f64> },
}

impl fmt::Display for CaptureSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureSource::Device(i) => write!(f, "camera device {i}"),
            CaptureSource::VideoFile(p) => write!(f, "video file `{}`", p.display()),
            CaptureSource::ImageSequence { pattern, .. } => write!(f, "image sequence `{}`", pattern.display()),
        }
    }
}

/// One decoded frame and its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// 0-based position in the stream (the k-th frame read).
    pub index: u64,
    /// Seconds on the source's clock (see [`CaptureSource`] per kind); strictly increasing.
    pub time_s: f64,
    pub image: RgbImage,
}

impl Frame {
    /// The time as a [`Duration`], as [`crate::tracking::HeadTracker::update`] takes it.
    pub fn time(&self) -> Duration {
        Duration::try_from_secs_f64(self.time_s).unwrap_or_default()
    }
}

/// How frames of an open source get their times.
#[derive(Debug)]
enum Clock {
    Wall(Instant),
    StreamPosition,
    Sidecar { path: PathBuf, times_s: Vec<f64> },
    Rate(f64),
}

/// An open source: read frames with [`Capture::read`] or iterate (the iterator ends at the
/// end of the stream and after the first error).
pub struct Capture {
    source: CaptureSource,
    input: String,
    cap: VideoCapture,
    clock: Clock,
    mat: Mat,
    frames: u64,
    last_time_s: Option<f64>,
    /// Every frame's size: the calibrated one, or the first frame's.
    size: Option<FrameSize>,
    /// Frames in an image sequence (OpenCV counts them when it opens one): reading stops
    /// there rather than asking OpenCV for the next file, which it warns about on stderr.
    length: Option<u64>,
    done: bool,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture").field("source", &self.source).field("frames", &self.frames).finish_non_exhaustive()
    }
}

/// The file a printf pattern (`%d`, `%4d`, `%04d`) names for `index`; `None` when the
/// pattern has no such field (a single file name).
pub(crate) fn sequence_file(pattern: &str, index: u32) -> Option<String> {
    let start = pattern.find('%')?;
    let rest = &pattern[start + 1..];
    let spec_len = rest.find(|c: char| !c.is_ascii_digit())?;
    if !rest[spec_len..].starts_with('d') {
        return None;
    }
    let spec = &rest[..spec_len];
    let width: usize = if spec.is_empty() { 0 } else { spec.parse().ok()? };
    let number = if spec.starts_with('0') { format!("{index:0width$}") } else { format!("{index:>width$}") };
    Some(format!("{}{number}{}", &pattern[..start], &rest[spec_len + 1..]))
}

fn path_str<'a>(path: &'a Path, input: &str) -> Result<&'a str, CaptureError> {
    path.to_str().ok_or_else(|| CaptureError::Setting {
        input: input.to_string(),
        what: "the path",
        value: path.display().to_string(),
        hint: "OpenCV takes UTF-8 paths only; rename the file or its directory",
    })
}

fn opened(cap: VideoCapture, input: &str, detail: &str) -> Result<VideoCapture, CaptureError> {
    if cap.is_opened().map_err(cv_step("checking the capture is open", input))? {
        Ok(cap)
    } else {
        Err(CaptureError::NotOpened { input: input.to_string(), detail: detail.to_string() })
    }
}

/// The timing of an image sequence: its sidecar when present, else `fps`.
fn sequence_clock(pattern: &Path, fps: Option<f64>, input: &str) -> Result<Clock, CaptureError> {
    let sidecar = pattern.parent().unwrap_or(Path::new("")).join(TIMESTAMPS_FILE);
    match std::fs::read_to_string(&sidecar) {
        Ok(text) => Ok(Clock::Sidecar { times_s: parse_timestamps(&text, &sidecar)?, path: sidecar }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(fps) = fps.filter(|f| f.is_finite() && *f > 0.0 && *f <= 1.0e4) else {
                return Err(CaptureError::Setting {
                    input: input.to_string(),
                    what: "the frame rate",
                    value: fps.map_or("not given".into(), |f| format!("{f} fps")),
                    hint: "without a timestamps.txt beside the frames, give the rate they were taken at (0 < fps <= 10000)",
                });
            };
            Ok(Clock::Rate(fps))
        }
        Err(e) => Err(CaptureError::TimestampRead { path: sidecar, message: e.to_string() }),
    }
}

fn open_sequence(pattern: &Path, input: &str) -> Result<VideoCapture, CaptureError> {
    let pat = path_str(pattern, input)?;
    match (sequence_file(pat, 0), sequence_file(pat, 1)) {
        (Some(first0), Some(first1)) => {
            if !Path::new(&first0).is_file() && !Path::new(&first1).is_file() {
                return Err(CaptureError::SequenceMissing { input: input.to_string(), first0, first1 });
            }
        }
        _ => {
            if !pattern.is_file() {
                return Err(CaptureError::FileMissing { input: input.to_string(), path: pattern.to_path_buf() });
            }
        }
    }
    let cap =
        VideoCapture::from_file(pat, videoio::CAP_IMAGES).map_err(cv_step("opening the image sequence", input))?;
    opened(cap, input, "the image reader refused the first frame")
}

impl Capture {
    /// Opens `source`. Errors name the source and the fix: a missing file, a device no
    /// backend opens, a malformed timestamp sidecar, an image sequence without a frame rate.
    pub fn open(source: CaptureSource) -> Result<Capture, CaptureError> {
        let input = source.to_string();
        let (cap, clock) = match &source {
            CaptureSource::Device(index) => {
                // OpenCV reads an index from 100 up as a backend code plus a camera number.
                let i = i32::try_from(*index).ok().filter(|i| *i < 100).ok_or_else(|| CaptureError::Setting {
                    input: input.clone(),
                    what: "the device index",
                    value: index.to_string(),
                    hint: "use the number N (0 to 99) of /dev/videoN",
                })?;
                let cap = VideoCapture::new(i, videoio::CAP_ANY).map_err(cv_step("opening the camera", &input))?;
                let cap = opened(cap, &input, "").map_err(|_| CaptureError::DeviceNotOpened { index: *index })?;
                (cap, Clock::Wall(Instant::now()))
            }
            CaptureSource::VideoFile(path) => {
                if !path.is_file() {
                    return Err(CaptureError::FileMissing { input, path: path.clone() });
                }
                let p = path_str(path, &input)?;
                let cap =
                    VideoCapture::from_file(p, videoio::CAP_ANY).map_err(cv_step("opening the video file", &input))?;
                (opened(cap, &input, "no backend could read the container or codec")?, Clock::StreamPosition)
            }
            CaptureSource::ImageSequence { pattern, fps } => {
                // The frames first: a wrong path is a missing sequence, not a missing sidecar.
                let cap = open_sequence(pattern, &input)?;
                (cap, sequence_clock(pattern, *fps, &input)?)
            }
        };
        let length = match source {
            CaptureSource::ImageSequence { .. } => {
                let n = cap.get(videoio::CAP_PROP_FRAME_COUNT).map_err(cv_step("counting the frames", &input))?;
                (n.is_finite() && n >= 1.0).then_some(n as u64)
            }
            _ => None,
        };
        Ok(Capture {
            source,
            input,
            cap,
            clock,
            mat: Mat::default(),
            frames: 0,
            last_time_s: None,
            size: None,
            length,
            done: false,
        })
    }

    pub fn source(&self) -> &CaptureSource {
        &self.source
    }

    /// From now on every frame must be `width` x `height` (`hint` says why, in the error),
    /// and errors name the source as `input`.
    pub(crate) fn require_size(&mut self, input: String, width: u32, height: u32, hint: &'static str) {
        self.input = input;
        self.size = Some(FrameSize { width, height, hint });
    }

    /// Frames delivered so far.
    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// The next frame. At the end of a file or sequence: [`CaptureError::EndOfStream`] (or
    /// [`CaptureError::SequenceShort`] when the sidecar lists more frames than were read); a
    /// device that stops delivering: [`CaptureError::DeviceRead`].
    pub fn read(&mut self) -> Result<Frame, CaptureError> {
        let input = self.input.as_str();
        let index = self.frames;
        if self.length.is_some_and(|n| index >= n) {
            return Err(self.end_of_stream());
        }
        let grabbed = self.cap.grab().map_err(cv_step("grabbing a frame", input))?;
        let grabbed_at = Instant::now();
        if !grabbed {
            return Err(self.end_of_stream());
        }
        let time_s = match &self.clock {
            Clock::Wall(opened) => grabbed_at.duration_since(*opened).as_secs_f64(),
            Clock::StreamPosition => {
                self.cap.get(videoio::CAP_PROP_POS_MSEC).map_err(cv_step("reading the frame's time", input))? / 1000.0
            }
            Clock::Rate(fps) => index as f64 / fps,
            Clock::Sidecar { path, times_s } => {
                *times_s.get(index as usize).ok_or_else(|| CaptureError::TimestampsShort {
                    input: input.to_string(),
                    path: path.clone(),
                    listed: times_s.len(),
                    index,
                })?
            }
        };
        check_time(self.last_time_s, time_s, input, index)?;
        let ok = self.cap.retrieve(&mut self.mat, 0).map_err(cv_step("decoding a frame", input))?;
        if !ok || self.mat.empty() {
            return Err(self.end_of_stream());
        }
        let image = mat_to_rgb(&self.mat, input, index)?;
        check_size(
            &mut self.size,
            "the stream changed resolution part-way; record at one resolution",
            &image,
            input,
            index,
        )?;
        self.frames += 1;
        self.last_time_s = Some(time_s);
        Ok(Frame { index, time_s, image })
    }

    fn end_of_stream(&self) -> CaptureError {
        let (input, frames) = (self.input.clone(), self.frames);
        match &self.clock {
            Clock::Wall(_) => CaptureError::DeviceRead { input, frames },
            Clock::Sidecar { path, times_s } if (times_s.len() as u64) > frames => {
                CaptureError::SequenceShort { input, path: path.clone(), listed: times_s.len(), frames }
            }
            _ => CaptureError::EndOfStream { input, frames },
        }
    }
}

impl Iterator for Capture {
    type Item = Result<Frame, CaptureError>;

    /// Ends at the end of the stream and after the first error.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.read();
        self.done = r.is_err();
        match r {
            Err(CaptureError::EndOfStream { .. }) => None,
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_patterns_expand_like_opencv() {
        assert_eq!(sequence_file("d/frame_%04d.png", 7).as_deref(), Some("d/frame_0007.png"));
        assert_eq!(sequence_file("d/f%d.png", 12).as_deref(), Some("d/f12.png"));
        assert_eq!(sequence_file("f%3d.png", 1).as_deref(), Some("f  1.png"));
        assert_eq!(sequence_file("frame_0000.png", 1), None);
        assert_eq!(sequence_file("f%s.png", 1), None);
        assert_eq!(sequence_file("f%", 1), None);
    }

    #[test]
    fn a_missing_video_file_is_named_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("band+30.avi");
        let e = Capture::open(CaptureSource::VideoFile(path.clone())).expect_err("missing");
        assert_eq!(e, CaptureError::FileMissing { input: format!("video file `{}`", path.display()), path });
        let msg = e.to_string();
        assert!(
            msg.contains("band+30.avi") && msg.contains("does not exist") && msg.contains("check the path"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_sequence_names_the_first_frames_it_looked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pattern = dir.path().join("frame_%04d.png");
        let e = Capture::open(CaptureSource::ImageSequence { pattern, fps: None }).expect_err("missing");
        let msg = e.to_string();
        assert!(matches!(e, CaptureError::SequenceMissing { .. }), "{e:?}");
        assert!(msg.contains("frame_0000.png") && msg.contains("frame_0001.png"), "{msg}");
    }

    #[test]
    fn a_file_that_is_no_video_is_refused_not_panicked_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notes.avi");
        std::fs::write(&path, "not a video").expect("write");
        let e = Capture::open(CaptureSource::VideoFile(path)).expect_err("garbage");
        assert!(matches!(e, CaptureError::NotOpened { .. }), "{e:?}");
    }

    #[test]
    fn a_device_that_is_absent_is_named() {
        // No test machine has 100 cameras: OpenCV opens nothing, and the error says which index.
        let e = Capture::open(CaptureSource::Device(99)).expect_err("no such camera");
        assert_eq!(e, CaptureError::DeviceNotOpened { index: 99 });
        assert!(e.to_string().contains("/dev/video99"), "{e}");
        let e = Capture::open(CaptureSource::Device(150)).expect_err("not an index OpenCV takes");
        assert!(matches!(e, CaptureError::Setting { what: "the device index", .. }), "{e:?}");
    }
}

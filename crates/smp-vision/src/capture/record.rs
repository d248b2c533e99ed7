//! Recording frames in the forms [`super::Capture`] reads back: a PNG image sequence with
//! its timestamp sidecar, or a video file through OpenCV's `VideoWriter`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use opencv::core::{Size, Vector};
use opencv::prelude::*;
use opencv::videoio::VideoWriter;
use smp_core::image::RgbImage;

use super::error::{cv_step, CaptureError};
use super::pixels::{bgr_mat, check_size, FrameSize};
use super::source::CaptureSource;
use super::timestamps::{check_time, format_timestamps, timestamp_line, to_microseconds, TIMESTAMPS_FILE};

/// Why a recorder refuses a frame of another size.
const ONE_SIZE: &str = "a recording holds frames of one size (and none empty)";

/// The file pattern a [`SequenceRecorder`] writes in its directory.
pub const SEQUENCE_PATTERN: &str = "frame_%05d.png";

/// Writes `frame_00000.png`, `frame_00001.png`, ... (lossless) and `timestamps.txt`, one
/// line per frame as each frame is written, so a recording cut short stays readable.
#[derive(Debug)]
pub struct SequenceRecorder {
    dir: PathBuf,
    input: String,
    sidecar: File,
    times_s: Vec<f64>,
    size: Option<FrameSize>,
}

fn write_err(input: &str, path: &Path) -> impl Fn(std::io::Error) -> CaptureError {
    let (input, path) = (input.to_string(), path.to_path_buf());
    move |e| CaptureError::Write { input: input.clone(), path: path.clone(), message: e.to_string() }
}

impl SequenceRecorder {
    /// Creates `dir` (and its parents) and an empty sidecar in it.
    pub fn create(dir: &Path) -> Result<SequenceRecorder, CaptureError> {
        let input = format!("image sequence `{}`", dir.join(SEQUENCE_PATTERN).display());
        std::fs::create_dir_all(dir).map_err(write_err(&input, dir))?;
        let path = dir.join(TIMESTAMPS_FILE);
        let mut sidecar = File::create(&path).map_err(write_err(&input, &path))?;
        sidecar.write_all(format_timestamps(&[]).as_bytes()).map_err(write_err(&input, &path))?;
        Ok(SequenceRecorder { dir: dir.to_path_buf(), input, sidecar, times_s: Vec::new(), size: None })
    }

    /// Writes the next frame, taken at `time_s` (kept to the microsecond; after the previous
    /// frame's time).
    pub fn write(&mut self, time_s: f64, image: &RgbImage) -> Result<(), CaptureError> {
        let index = self.times_s.len() as u64;
        let time_s = to_microseconds(time_s);
        check_time(self.times_s.last().copied(), time_s, &self.input, index)?;
        check_size(&mut self.size, ONE_SIZE, image, &self.input, index)?;
        let path = self.dir.join(format!("frame_{index:05}.png"));
        let name = path.to_string_lossy().into_owned();
        let m = bgr_mat(image, &self.input)?;
        let ok =
            opencv::imgcodecs::imwrite(&name, &m, &Vector::new()).map_err(cv_step("writing a PNG", &self.input))?;
        if !ok {
            return Err(CaptureError::Write {
                input: self.input.clone(),
                path,
                message: "OpenCV's PNG writer refused it".into(),
            });
        }
        let sidecar = self.dir.join(TIMESTAMPS_FILE);
        self.sidecar.write_all(timestamp_line(time_s).as_bytes()).map_err(write_err(&self.input, &sidecar))?;
        self.times_s.push(time_s);
        Ok(())
    }

    /// Flushes the sidecar and returns the source that reads the recording back.
    pub fn finish(self) -> Result<CaptureSource, CaptureError> {
        let sidecar = self.dir.join(TIMESTAMPS_FILE);
        self.sidecar.sync_all().map_err(write_err(&self.input, &sidecar))?;
        // The sidecar times the frames; without it the recording is incomplete.
        Ok(CaptureSource::ImageSequence { pattern: self.dir.join(SEQUENCE_PATTERN), fps: None })
    }
}

/// Writes a video file through OpenCV's `VideoWriter` at a fixed frame rate: frame k is
/// stamped k / fps in the stream, so a video keeps time only for evenly spaced frames.
pub struct VideoRecorder {
    writer: VideoWriter,
    path: PathBuf,
    input: String,
    frames: u64,
    size: Option<FrameSize>,
}

impl std::fmt::Debug for VideoRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoRecorder").field("path", &self.path).field("frames", &self.frames).finish_non_exhaustive()
    }
}

impl VideoRecorder {
    /// Opens `path` for `width` x `height` colour frames with the codec `fourcc` (four
    /// characters: `MJPG`, `FFV1`, `png `, ...; the container follows the file's extension).
    pub fn create(path: &Path, fourcc: &str, fps: f64, width: u32, height: u32) -> Result<VideoRecorder, CaptureError> {
        let input = format!("video file `{}`", path.display());
        let setting = |what, value: String, hint| CaptureError::Setting { input: input.clone(), what, value, hint };
        let code: Vec<char> = fourcc.chars().collect();
        let [a, b, c, d] = code[..] else {
            return Err(setting("the codec", format!("`{fourcc}`"), "give four characters, e.g. `MJPG` or `FFV1`"));
        };
        if !(fps.is_finite() && fps > 0.0 && fps <= 1.0e4) {
            return Err(setting("the frame rate", format!("{fps} fps"), "use 0 < fps <= 10000"));
        }
        let (Ok(w), Ok(h)) = (i32::try_from(width), i32::try_from(height)) else {
            return Err(setting("the frame size", format!("{width}x{height}"), "use a size below 2^31 px"));
        };
        if w == 0 || h == 0 {
            return Err(setting("the frame size", format!("{width}x{height}"), "frames must have pixels"));
        }
        let name = path.to_str().ok_or_else(|| {
            setting("the path", path.display().to_string(), "OpenCV takes UTF-8 paths only; rename the file")
        })?;
        let code = VideoWriter::fourcc(a, b, c, d).map_err(cv_step("encoding the codec's fourcc", &input))?;
        let writer = VideoWriter::new(name, code, fps, Size::new(w, h), true)
            .map_err(cv_step("opening the video writer", &input))?;
        if !writer.is_opened().map_err(cv_step("checking the video writer", &input))? {
            return Err(CaptureError::Write {
                input: input.clone(),
                path: path.to_path_buf(),
                message: format!(
                    "OpenCV has no writer for codec `{fourcc}` in this container; try another codec (MJPG in .avi is \
                     the most widely available) or extension"
                ),
            });
        }
        let size = Some(FrameSize { width, height, hint: ONE_SIZE });
        Ok(VideoRecorder { writer, path: path.to_path_buf(), input, frames: 0, size })
    }

    /// Appends a frame of the size the recorder was opened for.
    pub fn write(&mut self, image: &RgbImage) -> Result<(), CaptureError> {
        check_size(&mut self.size, ONE_SIZE, image, &self.input, self.frames)?;
        let m = bgr_mat(image, &self.input)?;
        self.writer.write(&m).map_err(cv_step("writing a video frame", &self.input))?;
        self.frames += 1;
        Ok(())
    }

    /// Closes the file and returns the source that reads it back.
    pub fn finish(mut self) -> Result<CaptureSource, CaptureError> {
        self.writer.release().map_err(cv_step("closing the video file", &self.input))?;
        Ok(CaptureSource::VideoFile(self.path))
    }
}

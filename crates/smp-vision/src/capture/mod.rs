//! Frames from real cameras and recordings, with timestamps, through OpenCV's
//! `videoio::VideoCapture`.
//!
//! Why: vision works on [`CameraView`](smp_core::image::CameraView)s (an RGB image, the
//! camera's intrinsics and its pose); the tracker on times. This module is where frames
//! from outside come in: a camera device, a video file, or a numbered image sequence.
//!
//! How each frame is timed ([`CaptureSource`]): a device by the host's monotonic clock
//! since it was opened (read when the frame is grabbed); a video file by the stream's
//! presentation time (`CAP_PROP_POS_MSEC`); an image sequence by its sidecar
//! `timestamps.txt` ([`timestamps`]) when there is one, else by frame index / fps. Times
//! must increase strictly, frame after frame: anything else is an error naming the frame.
//!
//! A [`CameraCapture`] reads a source as one [`CalibratedCamera`] (label, intrinsics,
//! `base_from_camera` from the rig and calibration files) and yields [`TimedView`]s; a frame
//! not of the calibrated size is an error, not a view. [`SequenceRecorder`] and
//! [`VideoRecorder`] write recordings in the forms the captures read back.
//!
//! Errors ([`CaptureError`]) name the source and the fix; nothing here panics on bad input.
//! OpenCV frames are BGR (or grey, or BGRA); views are RGB.

mod camera;
mod error;
mod pixels;
mod record;
mod source;
pub mod timestamps;

pub use camera::{CalibratedCamera, CameraCapture, TimedView};
pub use error::CaptureError;
pub use record::{SequenceRecorder, VideoRecorder, SEQUENCE_PATTERN};
pub use source::{Capture, CaptureSource, Frame};

#[cfg(test)]
mod tests {
    use super::*;
    use smp_core::camera::CameraIntrinsics;
    use smp_core::image::RgbImage;
    use std::path::Path;

    /// A small frame whose pixels say which frame it is.
    fn frame(k: u8) -> RgbImage {
        let mut img = RgbImage::new(8, 6, [10, 20, 30]);
        img.put(1, 2, [k, 255 - k, 7]);
        img
    }

    fn record(dir: &Path, times: &[f64]) -> CaptureSource {
        let mut rec = SequenceRecorder::create(dir).expect("create");
        for (k, t) in times.iter().enumerate() {
            rec.write(*t, &frame(k as u8)).expect("write");
        }
        rec.finish().expect("finish")
    }

    fn read_all(source: CaptureSource) -> Result<Vec<Frame>, CaptureError> {
        Capture::open(source)?.collect()
    }

    #[test]
    fn a_recorded_sequence_reads_back_with_its_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Uneven times (a dropped frame at 0.3 s): the sidecar keeps them, a rate would not.
        let times = [0.0, 0.1, 0.2, 0.4, 0.5];
        let frames = read_all(record(dir.path(), &times)).expect("reads");
        assert_eq!(frames.len(), times.len());
        for (k, f) in frames.iter().enumerate() {
            assert_eq!((f.index, f.time_s), (k as u64, times[k]));
            assert_eq!(f.image, frame(k as u8), "frame {k} is lossless and in order");
        }
        assert_eq!(frames[3].time(), std::time::Duration::from_millis(400));
    }

    #[test]
    fn without_a_sidecar_frames_are_timed_by_the_rate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = record(dir.path(), &[0.0, 0.5, 0.7]);
        let CaptureSource::ImageSequence { pattern, fps: None } = source.clone() else { panic!("a sequence") };
        std::fs::remove_file(dir.path().join(timestamps::TIMESTAMPS_FILE)).expect("rm");
        // The recorder's own source needs its sidecar.
        let e = Capture::open(source).expect_err("no sidecar, no rate");
        assert!(e.to_string().contains("the frame rate is not given"), "{e}");
        let frames =
            read_all(CaptureSource::ImageSequence { pattern: pattern.clone(), fps: Some(4.0) }).expect("reads");
        let times: Vec<f64> = frames.iter().map(|f| f.time_s).collect();
        assert_eq!(times, vec![0.0, 0.25, 0.5]);
        let e = Capture::open(CaptureSource::ImageSequence { pattern, fps: Some(0.0) }).expect_err("no rate");
        assert!(matches!(e, CaptureError::Setting { what: "the frame rate", .. }), "{e:?}");
    }

    #[test]
    fn sidecar_and_frames_that_disagree_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = record(dir.path(), &[0.0, 0.1, 0.2, 0.3]);
        let sidecar = dir.path().join(timestamps::TIMESTAMPS_FILE);
        // A frame file lost in the middle: OpenCV stops at the gap; the sidecar tells.
        std::fs::remove_file(dir.path().join("frame_00002.png")).expect("rm");
        let e = read_all(source.clone()).expect_err("gap");
        assert_eq!(
            e,
            CaptureError::SequenceShort { input: source.to_string(), path: sidecar.clone(), listed: 4, frames: 2 }
        );
        // More frames than times.
        std::fs::write(&sidecar, "0.0\n").expect("write");
        let e = read_all(source.clone()).expect_err("short sidecar");
        assert!(matches!(e, CaptureError::TimestampsShort { listed: 1, index: 1, .. }), "{e:?}");
        // A malformed sidecar is refused at open, by line.
        std::fs::write(&sidecar, "0.0\n0.1\n0.05\n").expect("write");
        let e = Capture::open(source).expect_err("out of order");
        assert!(matches!(e, CaptureError::TimestampFile { line: 3, .. }), "{e:?}");
    }

    #[test]
    fn a_camera_capture_refuses_frames_of_another_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = record(dir.path(), &[0.0, 0.1]);
        let optics = smp_core::rig::Rig::default_sim().overview_camera.intrinsics;
        let intrinsics = CameraIntrinsics { width_px: 8, height_px: 6, cx_px: 4.0, cy_px: 3.0, ..optics };
        let camera =
            CalibratedCamera { label: "band+30".into(), intrinsics, base_from_camera: nalgebra::Isometry3::identity() };
        let views: Vec<TimedView> =
            CameraCapture::open(camera.clone(), source.clone()).expect("open").collect::<Result<_, _>>().expect("ok");
        assert_eq!(views.len(), 2);
        assert_eq!(views[1].view.label, "band+30 frame 1");
        assert_eq!((views[1].time_s, &views[1].view.image), (0.1, &frame(1)));
        let wide =
            CalibratedCamera { intrinsics: CameraIntrinsics { width_px: 16, cx_px: 8.0, ..intrinsics }, ..camera };
        let mut cap = CameraCapture::open(wide, source).expect("open");
        let e = cap.next().expect("an item").expect_err("wrong size");
        assert!(matches!(e, CaptureError::FrameSize { index: 0, width: 8, expected_width: 16, .. }), "{e:?}");
        assert!(e.to_string().contains("camera `band+30`"), "{e}");
        assert!(cap.next().is_none(), "the iterator ends after an error");
    }

    #[test]
    fn a_video_reads_back_timed_by_its_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = VideoRecorder::create(&dir.path().join("v.avi"), "FFV1", 5.0, 8, 6).expect("FFV1 writer");
        for k in 0..3 {
            rec.write(&frame(k)).expect("write");
        }
        let frames = read_all(rec.finish().expect("finish")).expect("reads");
        assert_eq!(frames.len(), 3);
        for (k, f) in frames.iter().enumerate() {
            assert!((f.time_s - 0.2 * k as f64).abs() < 1e-9, "frame {k} at {} s", f.time_s);
            assert_eq!(f.image, frame(k as u8), "FFV1 is lossless");
        }
    }

    #[test]
    fn the_rig_file_names_the_cameras_and_a_calibration_file_replaces_intrinsics() {
        let rig = smp_core::rig::Rig::default_sim();
        let band = CalibratedCamera::band_cameras(&rig);
        let labels: Vec<&str> = band.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["band+30", "band-30", "band+120", "band-120"]);
        let overview = CalibratedCamera::overview(&rig);
        assert_eq!((overview.label.as_str(), overview.intrinsics), ("overview", rig.overview_camera.intrinsics));
        let calibrated = crate::calibrate::IntrinsicsFile {
            version: crate::calibrate::CALIBRATION_FILE_VERSION,
            date: "2026-12-07".into(),
            method: "test".into(),
            reprojection_rms_px: 0.2,
            views_used: 12,
            views_rejected: Vec::new(),
            intrinsics: CameraIntrinsics { fx_px: 1510.0, ..band[0].intrinsics },
        };
        let cam = band[0].clone().with_intrinsics(&calibrated);
        assert_eq!((cam.intrinsics.fx_px, cam.base_from_camera), (1510.0, band[0].base_from_camera));
    }

    #[test]
    fn recorders_refuse_what_would_not_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = SequenceRecorder::create(dir.path()).expect("create");
        rec.write(0.2, &frame(0)).expect("first");
        assert!(matches!(rec.write(0.2, &frame(1)), Err(CaptureError::OutOfOrder { index: 1, .. })));
        assert!(matches!(rec.write(f64::NAN, &frame(1)), Err(CaptureError::BadTime { .. })));
        let e = rec.write(0.3, &RgbImage::new(4, 4, [0; 3])).expect_err("another size");
        assert!(matches!(e, CaptureError::FrameSize { .. }), "{e:?}");
        let e = VideoRecorder::create(&dir.path().join("a.avi"), "MJPEG", 10.0, 8, 6).expect_err("5 chars");
        assert!(matches!(e, CaptureError::Setting { what: "the codec", .. }), "{e:?}");
        let e = VideoRecorder::create(&dir.path().join("a.avi"), "MJPG", 0.0, 8, 6).expect_err("no rate");
        assert!(matches!(e, CaptureError::Setting { what: "the frame rate", .. }), "{e:?}");
    }
}

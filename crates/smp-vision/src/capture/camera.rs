//! A calibrated fixed camera and its frames as [`CameraView`]s.

use nalgebra::Isometry3;
use smp_core::camera::CameraIntrinsics;
use smp_core::image::CameraView;
use smp_core::rig::Rig;

use super::error::CaptureError;
use super::source::{Capture, CaptureSource, Frame};
use crate::calibrate::IntrinsicsFile;

/// A camera fixed in the base frame, as the rig file and the calibration files describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibratedCamera {
    /// The rig's name for it (`band+30`, `overview`), used in every message.
    pub label: String,
    pub intrinsics: CameraIntrinsics,
    pub base_from_camera: Isometry3<f64>,
}

impl CalibratedCamera {
    /// The rig's band cameras (`[[band_cameras]]`), in file order.
    pub fn band_cameras(rig: &Rig) -> Vec<CalibratedCamera> {
        rig.band_cameras
            .iter()
            .map(|c| CalibratedCamera {
                label: c.label.clone(),
                intrinsics: c.intrinsics,
                base_from_camera: c.base_from_camera.to_isometry(),
            })
            .collect()
    }

    /// The rig's overview camera, labelled `overview`.
    pub fn overview(rig: &Rig) -> CalibratedCamera {
        CalibratedCamera {
            label: "overview".into(),
            intrinsics: rig.overview_camera.intrinsics,
            base_from_camera: rig.overview_camera.base_from_camera.to_isometry(),
        }
    }

    /// The same camera with the intrinsics of a calibration file in place of the rig's.
    pub fn with_intrinsics(self, file: &IntrinsicsFile) -> CalibratedCamera {
        CalibratedCamera { intrinsics: file.intrinsics, ..self }
    }
}

/// A frame as vision takes it: the calibrated view and when it was exposed.
#[derive(Debug, Clone)]
pub struct TimedView {
    /// 0-based position in the camera's stream.
    pub index: u64,
    /// Seconds on the source's clock (see [`CaptureSource`]).
    pub time_s: f64,
    /// Labelled `<camera> frame <index>`.
    pub view: CameraView,
}

impl TimedView {
    /// The time as a [`std::time::Duration`], for [`crate::tracking::HeadTracker::update`].
    pub fn time(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.time_s).unwrap_or_default()
    }
}

/// A source read as one calibrated camera: every frame must have the calibrated size, and
/// every error names the camera.
#[derive(Debug)]
pub struct CameraCapture {
    camera: CalibratedCamera,
    capture: Capture,
}

impl CameraCapture {
    pub fn open(camera: CalibratedCamera, source: CaptureSource) -> Result<CameraCapture, CaptureError> {
        let mut capture = Capture::open(source)?;
        let (w, h) = (camera.intrinsics.width_px, camera.intrinsics.height_px);
        capture.require_size(
            format!("{} (camera `{}`)", capture.source(), camera.label),
            w,
            h,
            "the calibration is for another resolution: set the camera to the calibrated mode, or calibrate it at \
             this one",
        );
        Ok(CameraCapture { camera, capture })
    }

    pub fn camera(&self) -> &CalibratedCamera {
        &self.camera
    }

    pub fn source(&self) -> &CaptureSource {
        self.capture.source()
    }

    /// The next frame as a view; errors as [`Capture::read`]'s, and
    /// [`CaptureError::FrameSize`] for a frame not of the calibrated size.
    pub fn read(&mut self) -> Result<TimedView, CaptureError> {
        self.capture.read().map(|f| self.timed_view(f))
    }

    fn timed_view(&self, Frame { index, time_s, image }: Frame) -> TimedView {
        let view = CameraView {
            label: format!("{} frame {index}", self.camera.label),
            intrinsics: self.camera.intrinsics,
            base_from_camera: self.camera.base_from_camera,
            image,
            depth: None,
        };
        TimedView { index, time_s, view }
    }
}

impl Iterator for CameraCapture {
    type Item = Result<TimedView, CaptureError>;

    /// Ends at the end of the stream and after the first error.
    fn next(&mut self) -> Option<Self::Item> {
        let frame = self.capture.next()?;
        Some(frame.map(|f| self.timed_view(f)))
    }
}

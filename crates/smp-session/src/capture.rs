//! The real band cameras: OpenCV `VideoCapture` sources (a device index, a recorded video or
//! an image sequence, [`smp_vision::capture`]) with the rig file's camera models and the
//! band's measured layout, behind the engine's [`BandCameras`] trait. A recording replays
//! through exactly the code a live camera goes through, which makes tracking testable here.

use nalgebra::Isometry3;
use smp_core::fiducial_layout::FiducialLayout;
use smp_core::rig::Rig;
use smp_vision::capture::{CalibratedCamera, CameraCapture, CaptureError, CaptureSource};

use crate::world::{BandCameras, BandFrames, CameraError};

/// One exposure is the next frame of every camera; frames of one exposure further apart than
/// this are reported (unsynchronised cameras register a moving head wrongly), s.
pub const MAX_EXPOSURE_SPREAD_S: f64 = 0.02;

/// The rig's band cameras, each read from its own source.
#[derive(Debug)]
pub struct CaptureBandCameras {
    cameras: Vec<CameraCapture>,
    layout: FiducialLayout,
    /// Exposures whose frames were further apart than [`MAX_EXPOSURE_SPREAD_S`].
    pub unsynchronised_exposures: u64,
}

impl CaptureBandCameras {
    /// Opens one source per band camera of `rig`, in the rig file's order (`[[band_cameras]]`),
    /// each with the rig's camera model; `layout` is the band as the clinic measured it.
    pub fn open(
        rig: &Rig,
        layout: FiducialLayout,
        sources: Vec<CaptureSource>,
    ) -> Result<CaptureBandCameras, CameraError> {
        let models = CalibratedCamera::band_cameras(rig);
        if models.len() != sources.len() {
            return Err(CameraError::Failed {
                camera: "band".into(),
                detail: format!(
                    "the rig file {} lists {} band camera(s) but {} source(s) were given; give one source per \
                     `[[band_cameras]]` entry, in the file's order",
                    rig.name,
                    models.len(),
                    sources.len()
                ),
            });
        }
        let cameras = models
            .into_iter()
            .zip(sources)
            .map(|(model, source)| {
                let label = model.label.clone();
                CameraCapture::open(model, source).map_err(|e| failed(&label, &e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CaptureBandCameras { cameras, layout, unsynchronised_exposures: 0 })
    }

    /// The next frame of every camera; `None` at the end of any recording.
    fn exposure(&mut self) -> Result<Option<BandFrames>, CameraError> {
        let mut views = Vec::with_capacity(self.cameras.len());
        let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
        for c in &mut self.cameras {
            match c.read() {
                Ok(f) => {
                    first = first.min(f.time_s);
                    last = last.max(f.time_s);
                    views.push(f.view);
                }
                Err(CaptureError::EndOfStream { .. }) => return Ok(None),
                Err(e) => return Err(failed(&c.camera().label, &e)),
            }
        }
        if last - first > MAX_EXPOSURE_SPREAD_S {
            self.unsynchronised_exposures += 1;
        }
        Ok(Some(BandFrames { t_s: if views.is_empty() { 0.0 } else { last }, views }))
    }
}

fn failed(camera: &str, e: &CaptureError) -> CameraError {
    CameraError::Failed { camera: camera.to_string(), detail: e.to_string() }
}

impl BandCameras for CaptureBandCameras {
    fn layout(&self) -> &FiducialLayout {
        &self.layout
    }

    /// A live camera delivers whole frames: the prediction is not needed to read them.
    fn next_frames(&mut self, _predicted_base_from_head: &Isometry3<f64>) -> Result<Option<BandFrames>, CameraError> {
        self.exposure()
    }

    fn frames_now(&mut self) -> Result<BandFrames, CameraError> {
        self.exposure()?.ok_or_else(|| CameraError::Failed {
            camera: "band".into(),
            detail: "the recording ended before the head could be registered".into(),
        })
    }
}

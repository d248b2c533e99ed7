//! The head frame from the head band: registration from one exposure of the band cameras,
//! tracking during a run (a thread that feeds registrations to smp-vision's `HeadTracker` and
//! hands its events to the session), and re-registration once the head has settled after a
//! drift.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nalgebra::{Isometry3, Point3};
use serde::Serialize;
use smp_core::fiducial_layout::FiducialLayout;
use smp_core::image::CameraView;
use smp_vision::fiducials::{detect_layout_markers, estimate_base_from_head, CameraMarkers, HeadRegistration};
use smp_vision::tracking::{HeadTracker, TrackEvent, TrackerConfig};

use crate::world::{BandCameras, CameraError};

/// Why the band gave no registration.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("band camera: {0}")]
    Camera(#[from] CameraError),
    #[error("head band: {0}")]
    Fiducials(String),
    #[error(
        "the head did not settle within {waited_s:.0} s after a drift ({frames} consistent registrations needed within \
         {tolerance_mm} mm); the session stays stopped: check the patient and the head band, then resume"
    )]
    NotSettled { waited_s: f64, frames: usize, tolerance_mm: f64 },
}

/// Registers the head frame from the band markers seen in `views` (calibrated cameras at
/// known poses): the one registration path for tracking, re-registration and scans.
pub fn register_views(views: &[CameraView], layout: &FiducialLayout) -> Result<HeadRegistration, RegistrationError> {
    let mut seen = Vec::with_capacity(views.len());
    for v in views {
        let markers = detect_layout_markers(&v.image, &v.label, layout, &Default::default())
            .map_err(|e| RegistrationError::Fiducials(e.to_string()))?;
        seen.push(CameraMarkers {
            label: v.label.clone(),
            intrinsics: v.intrinsics,
            base_from_camera: v.base_from_camera,
            markers,
        });
    }
    estimate_base_from_head(&seen, layout, &Default::default()).map_err(|e| RegistrationError::Fiducials(e.to_string()))
}

/// How tracking went during a session.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TrackingReport {
    /// Exposures the tracker used.
    pub frames: u64,
    /// Exposures without a usable registration.
    pub frames_missing: u64,
    /// Drifts that stopped a run.
    pub drifts: u32,
    /// Holds for lost fiducials.
    pub fiducial_loss_holds: u32,
    /// Machine times of the re-registrations after drifts, s.
    pub reregistered_at_s: Vec<f64>,
}

/// What the tracking thread tells the session: the tracker's events of one exposure. The
/// thread waits for `done` before it takes the next exposure, so that on a machine whose clock
/// waits for the cameras (the simulator) the session's answer (a feed hold) is on the wire
/// before the machine moves on.
#[derive(Debug)]
pub(crate) struct TrackBatch {
    /// Which run of the session the exposure belongs to (a late batch of an ended run is
    /// ignored).
    pub(crate) run: usize,
    pub(crate) events: Vec<TrackEvent>,
    pub(crate) done: mpsc::Sender<()>,
}

/// The tracking thread's body: exposures until `stop`, the end of the stream, or a camera
/// failure. `send` hands a batch to the session (false: nobody listens). Returns the cameras
/// and the counts.
pub(crate) fn track(
    mut band: Box<dyn BandCameras>,
    tracker_cfg: TrackerConfig,
    reference: Isometry3<f64>,
    stop: Arc<AtomicBool>,
    run: usize,
    mut send: impl FnMut(TrackBatch) -> bool,
) -> (Box<dyn BandCameras>, TrackingReport, Option<String>) {
    let mut report = TrackingReport::default();
    let mut tracker = match HeadTracker::new(tracker_cfg, reference) {
        Ok(t) => t,
        Err(e) => return (band, report, Some(format!("head tracking not started: {e}"))),
    };
    let mut last_pose = reference;
    let mut problem = None;
    while !stop.load(Ordering::SeqCst) {
        let frames = match band.next_frames(&last_pose) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                problem = Some(format!("head tracking stopped: {e}"));
                break;
            }
        };
        let reg = if frames.views.is_empty() { None } else { register_views(&frames.views, band.layout()).ok() };
        if let Some(r) = &reg {
            last_pose = r.base_from_head;
        }
        let t = Duration::from_secs_f64(frames.t_s.max(0.0));
        let events = tracker.update(t, reg.as_ref());
        report.frames += 1;
        report.frames_missing += u64::from(reg.is_none());
        if events.is_empty() {
            continue;
        }
        let (done, wait) = mpsc::channel();
        if !send(TrackBatch { run, events, done }) {
            break;
        }
        // The answer, or the end of the run (whose loop may no longer answer).
        while !stop.load(Ordering::SeqCst) {
            match wait.recv_timeout(Duration::from_millis(20)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
    }
    band.release();
    (band, report, problem)
}

/// After a drift: registers the head until `settle_frames` consecutive registrations agree
/// within `tolerance_mm` (at the scalp: the head centre and points 100 mm out), and returns the
/// last with its machine time; gives up after `timeout` of wall time.
pub fn reregister_when_settled(
    band: &mut dyn BandCameras,
    settle_frames: usize,
    tolerance_mm: f64,
    timeout: Duration,
) -> Result<(HeadRegistration, f64), RegistrationError> {
    let started = Instant::now();
    let mut recent: Vec<Isometry3<f64>> = Vec::new();
    loop {
        let frames = band.frames_now()?;
        match register_views(&frames.views, band.layout()) {
            Ok(reg) => {
                recent.push(reg.base_from_head);
                if recent.len() > settle_frames {
                    recent.remove(0);
                }
                if recent.len() == settle_frames && pose_spread_mm(&recent) <= tolerance_mm {
                    return Ok((reg, frames.t_s));
                }
            }
            Err(_) => recent.clear(),
        }
        if started.elapsed() > timeout {
            return Err(RegistrationError::NotSettled {
                waited_s: timeout.as_secs_f64(),
                frames: settle_frames,
                tolerance_mm,
            });
        }
    }
}

/// Largest distance between any two poses, over the head centre and points 100 mm out on
/// each head axis (where the scalp is), mm.
pub fn pose_spread_mm(poses: &[Isometry3<f64>]) -> f64 {
    let probes =
        [Point3::origin(), Point3::new(100.0, 0.0, 0.0), Point3::new(0.0, 100.0, 0.0), Point3::new(0.0, 0.0, 100.0)];
    let mut worst: f64 = 0.0;
    for a in poses {
        for b in poses {
            for p in &probes {
                worst = worst.max(((a * p) - (b * p)).norm());
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_sees_a_turn_at_the_scalp() {
        let a = Isometry3::identity();
        let b = Isometry3::rotation(nalgebra::Vector3::z() * 0.01_f64);
        // 0.01 rad at 100 mm is 1 mm at the scalp, though the centre does not move.
        let s = pose_spread_mm(&[a, b]);
        assert!((s - 1.0).abs() < 0.01, "{s}");
        assert_eq!(pose_spread_mm(&[a, a, a]), 0.0);
    }
}

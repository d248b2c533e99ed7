//! Head registration and tracking from the head band's ArUco markers, for the simulated rig:
//! the fixed band cameras image the patient where the simulator really holds the head, the
//! vision crate detects the markers and registers the head frame, and during a run a watcher
//! thread feeds those registrations to [`smp_vision::tracking::HeadTracker`] at camera rate.
//!
//! On a drift the watcher stops the run as an abort does (feed hold at once, then a soft reset
//! that drops the moves queued for the old pose); `smp run` then waits for the head to settle,
//! re-registers, checks the dots left uncertain with the flange camera, recompiles and
//! re-verifies what is left against the new pose, and carries on. Dots entered between the
//! move and the hold are reported (stray entries), never hidden.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::fiducial_layout::FiducialLayout;
use smp_core::image::CameraView;
use smp_core::rig::Rig;
use smp_motion::OperatorCommand;
use smp_sim::band_cameras::FixedCamera;
use smp_sim::motion_model::HeadMotion;
use smp_sim::patient::SyntheticPatient;
use smp_sim::pty::SimClock;
use smp_sim::render::RenderConfig;
use smp_vision::fiducials::{detect_layout_markers, estimate_base_from_head, CameraMarkers, HeadRegistration};
use smp_vision::tracking::{HeadTracker, TrackEvent, TrackerConfig};

use crate::error::{stage, CliError};

/// The head band's layout and the cameras that watch it.
#[derive(Clone)]
pub struct BandRig {
    pub layout: FiducialLayout,
    pub cameras: Vec<FixedCamera>,
}

impl BandRig {
    /// The band cameras of the rig and the band as the clinic measured it; `None` when the
    /// patient wears no band (the head is then not tracked, and the run says so).
    pub fn for_patient(patient: &SyntheticPatient, rig: &Rig) -> Result<Option<BandRig>, CliError> {
        let Some(layout) = smp_sim::band_cameras::measured_layout(patient).map_err(stage("fiducial layout"))? else {
            return Ok(None);
        };
        Ok(Some(BandRig { layout, cameras: smp_sim::band_cameras::band_cameras(rig) }))
    }
}

/// Pixels around each predicted marker that a tracking frame renders and searches: the
/// marker's own size plus this margin, which covers a head movement of several millimetres
/// between frames at the band cameras' scale (about 4 px/mm).
const WINDOW_MARGIN_PX: f64 = 60.0;

/// A marker is expected in view only when the camera sees its face within about 80 degrees
/// of its outward direction; the detector rejects more oblique ones anyway.
const MIN_FACING_COS: f64 = 0.17;

/// The pixel window of `camera` that holds every layout marker it should see with the head at
/// `predicted_base_from_head` (the last registration), or `None` when it should see none.
fn marker_window(band: &BandRig, camera: &FixedCamera, predicted_base_from_head: &Isometry3<f64>) -> Option<[u32; 4]> {
    let camera_from_head = camera.base_from_camera.inverse() * predicted_base_from_head;
    let camera_in_head = camera_from_head.inverse() * Point3::origin();
    let (w, h) = (f64::from(camera.intrinsics.width_px), f64::from(camera.intrinsics.height_px));
    let (mut x0, mut y0, mut x1, mut y1) = (f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
    for m in &band.layout.markers {
        let Some(corners) = m.corners_head() else { continue };
        // Band markers face out from the head (whose frame's origin is its centre): one on
        // the far side projects into the image but is hidden by the head, and rendering its
        // window would only cost time.
        let centre = Point3::from(corners.iter().map(|c| c.coords).sum::<Vector3<f64>>() / 4.0);
        let (outward, to_camera) = (centre.coords.normalize(), (camera_in_head - centre).normalize());
        if outward.dot(&to_camera) < MIN_FACING_COS {
            continue;
        }
        let px: Vec<_> = corners.iter().filter_map(|c| camera.intrinsics.project(&(camera_from_head * c))).collect();
        if px.len() < 4 || px.iter().any(|p| p.x < 0.0 || p.y < 0.0 || p.x >= w || p.y >= h) {
            continue; // not wholly in view: the detector would not use it anyway
        }
        for p in px {
            (x0, y0, x1, y1) = (x0.min(p.x), y0.min(p.y), x1.max(p.x), y1.max(p.y));
        }
    }
    if !x0.is_finite() {
        return None;
    }
    let clamp = |v: f64, hi: f64| v.clamp(0.0, hi) as u32;
    Some([
        clamp(x0 - WINDOW_MARGIN_PX, w),
        clamp(y0 - WINDOW_MARGIN_PX, h),
        clamp(x1 + WINDOW_MARGIN_PX + 1.0, w),
        clamp(y1 + WINDOW_MARGIN_PX + 1.0, h),
    ])
}

/// Images the band from every camera with the head at `true_base_from_head` (where the
/// simulator holds it; the vision side never sees this pose) and registers the head. With
/// `predicted_base_from_head` (tracking), each camera renders only the window around the
/// markers it expects there, as a tracking camera reads only its regions of interest.
pub fn register_from_band(
    patient: &SyntheticPatient,
    band: &BandRig,
    true_base_from_head: &Isometry3<f64>,
    predicted_base_from_head: Option<&Isometry3<f64>>,
    cfg: &RenderConfig,
) -> Result<HeadRegistration, CliError> {
    let mut views = Vec::with_capacity(band.cameras.len());
    for c in &band.cameras {
        let window = match predicted_base_from_head {
            Some(p) => match marker_window(band, c, p) {
                Some(w) => Some(w),
                None => continue,
            },
            None => None,
        };
        let cfg = RenderConfig { window_px: window, ..cfg.clone() };
        views.push(smp_sim::render::render_view(
            patient,
            &c.intrinsics,
            &c.base_from_camera,
            true_base_from_head,
            &c.label,
            &cfg,
        ));
    }
    register_views(&views, &band.layout)
}

/// Registers the head frame from the band markers seen in `views` (calibrated cameras at
/// known poses): the one registration path for live tracking and for a scan read from disk.
pub fn register_views(views: &[CameraView], layout: &FiducialLayout) -> Result<HeadRegistration, CliError> {
    let mut seen = Vec::with_capacity(views.len());
    for v in views {
        let markers = detect_layout_markers(&v.image, &v.label, layout, &Default::default())
            .map_err(stage("fiducials (detect)"))?;
        seen.push(CameraMarkers {
            label: v.label.clone(),
            intrinsics: v.intrinsics,
            base_from_camera: v.base_from_camera,
            markers,
        });
    }
    estimate_base_from_head(&seen, layout, &Default::default()).map_err(stage("fiducials (register)"))
}

/// What the watcher saw; read by the run after the executor returns.
#[derive(Debug, Default, Clone)]
pub struct WatchLog {
    /// Registrations fed to the tracker.
    pub frames: u64,
    /// Frames without a usable registration.
    pub frames_missing: u64,
    /// The drift that stopped the run: (machine time s, mm, degrees).
    pub drift: Option<(f64, f64, f64)>,
    /// Feed holds for lost fiducials.
    pub pauses: u32,
    /// Tracker events other than the drift, as text for the run's fault list.
    pub events: Vec<String>,
}

/// A thread that tracks the head during one executor run and stops the run on a drift.
pub struct HeadWatch {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WatchLog>>,
    thread: Option<JoinHandle<()>>,
    clock: SimClock,
}

/// Wall time the watcher waits after asking for a stop before it lets the machine run: the
/// executor writes the feed hold within milliseconds of the request.
const HOLD_DELIVERY: Duration = Duration::from_millis(50);

impl HeadWatch {
    /// Starts watching at `frame_period_s` of machine time per frame, gating the simulated
    /// machine's `clock` so that it never runs more than one frame ahead of the last frame
    /// processed (a camera that delivers each frame's registration before the next exposure).
    /// `command` reaches the executor: an abort on the first drift (feed hold at once, then a
    /// soft reset that drops the queued moves), a pause when the fiducials are lost (nobody
    /// knows where the head is) and a resume when they are back where they were. During the
    /// times `band_hidden_at` says, the band cameras see no marker.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        patient: Arc<SyntheticPatient>,
        band: BandRig,
        motion: HeadMotion,
        base_from_head_registered: Isometry3<f64>,
        tracker_cfg: TrackerConfig,
        clock: SimClock,
        frame_period_s: f64,
        band_hidden_at: Box<dyn Fn(f64) -> bool + Send>,
        command: Box<dyn Fn(OperatorCommand) -> bool + Send>,
    ) -> Result<HeadWatch, CliError> {
        if !(frame_period_s.is_finite() && frame_period_s > 0.0 && frame_period_s <= 10.0) {
            return Err(CliError::input(
                format!("tracking frame period {frame_period_s} s is not usable"),
                "give a camera rate between 0.1 and 100 Hz",
            ));
        }
        let mut tracker = HeadTracker::new(tracker_cfg, base_from_head_registered)
            .map_err(|e| CliError::input(e.to_string(), "fix the tracker settings"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WatchLog::default()));
        let (t_stop, t_log, t_clock) = (Arc::clone(&stop), Arc::clone(&log), clock.clone());
        let thread = std::thread::Builder::new()
            .name("smp-head-watch".into())
            .spawn(move || {
                let cfg = RenderConfig::default();
                let mut held_for_loss = false;
                let mut last_pose: Option<Isometry3<f64>> = None;
                let mut k = (t_clock.now_s() / frame_period_s).ceil() as u64;
                while !t_stop.load(Ordering::SeqCst) {
                    let t_s = k as f64 * frame_period_s;
                    // The machine may run on to the next exposure while this frame is read.
                    t_clock.set_gate(Some(t_s + frame_period_s));
                    while t_clock.now_s() < t_s && !t_stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if t_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // The camera exposes the head where the simulator holds it at this instant.
                    let truth = motion.base_delta(t_s) * motion.registered_base_from_head;
                    let predicted = last_pose.unwrap_or(base_from_head_registered);
                    let reg = if band_hidden_at(t_s) {
                        None
                    } else {
                        register_from_band(&patient, &band, &truth, Some(&predicted), &cfg).ok()
                    };
                    if let Some(r) = &reg {
                        last_pose = Some(r.base_from_head);
                    }
                    let events = tracker.update(Duration::from_secs_f64(t_s.max(0.0)), reg.as_ref());
                    let Ok(mut log) = t_log.lock() else { break };
                    log.frames += 1;
                    log.frames_missing += u64::from(reg.is_none());
                    for ev in events {
                        match ev {
                            TrackEvent::Drift { translation_mm, rotation_deg, .. } => {
                                log.drift = Some((t_s, translation_mm, rotation_deg));
                                let _ = command(OperatorCommand::Abort);
                            }
                            TrackEvent::FiducialsLost { since, .. } => {
                                // Only a hold of a running session is ours to lift later.
                                held_for_loss = command(OperatorCommand::Pause);
                                log.pauses += u32::from(held_for_loss);
                                log.events.push(format!(
                                    "head band fiducials lost since {:.2} s: feed hold at {t_s:.2} s (machine time)",
                                    since.as_secs_f64()
                                ));
                            }
                            TrackEvent::FiducialsRecovered { .. } => {
                                log.events.push(format!("head band fiducials recovered at {t_s:.2} s"));
                                // Back where it was: carry on. Moved: the drift above (same
                                // frame) has already asked for the stop instead.
                                if held_for_loss && !tracker.is_drifted() {
                                    let _ = command(OperatorCommand::Resume);
                                }
                                held_for_loss = false;
                            }
                            TrackEvent::Returned { .. } | TrackEvent::Settled { .. } => {}
                        }
                    }
                    if log.drift.is_some() {
                        // The feed hold reaches the controller while the machine stands at the
                        // gate; then the machine runs free to decelerate and be reset.
                        drop(log);
                        std::thread::sleep(HOLD_DELIVERY);
                        break;
                    }
                    k += 1;
                }
                t_clock.set_gate(None);
            })
            .map_err(|e| CliError::failure(format!("cannot start the head tracking thread: {e}")))?;
        Ok(HeadWatch { stop, log, thread: Some(thread), clock })
    }

    /// Stops the thread and returns what it saw.
    pub fn finish(mut self) -> WatchLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
        self.clock.set_gate(None);
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for HeadWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
        self.clock.set_gate(None);
    }
}

/// After a drift: registers the head until `settle_frames` consecutive registrations agree
/// within `tolerance_mm` (corner-free: head-centre and a point 100 mm out), and returns the
/// last; gives up after `timeout` of wall time with an error that says so.
pub fn reregister_when_settled(
    patient: &SyntheticPatient,
    band: &BandRig,
    motion: &HeadMotion,
    clock: &SimClock,
    tolerance_mm: f64,
    timeout: Duration,
) -> Result<(HeadRegistration, f64), CliError> {
    const SETTLE_FRAMES: usize = 3;
    let cfg = RenderConfig::default();
    let started = Instant::now();
    let mut recent: Vec<Isometry3<f64>> = Vec::new();
    loop {
        let t_s = clock.now_s();
        let truth = motion.base_delta(t_s) * motion.registered_base_from_head;
        match register_from_band(patient, band, &truth, None, &cfg) {
            Ok(reg) => {
                recent.push(reg.base_from_head);
                if recent.len() > SETTLE_FRAMES {
                    recent.remove(0);
                }
                if recent.len() == SETTLE_FRAMES && pose_spread_mm(&recent) <= tolerance_mm {
                    return Ok((reg, t_s));
                }
            }
            Err(_) => recent.clear(),
        }
        if started.elapsed() > timeout {
            return Err(CliError::failure(format!(
                "the head did not settle within {:.0} s after a drift ({} consistent registrations needed within {tolerance_mm} mm); \
                 the session stays paused: check the patient and the head band, then `smp run --resume`",
                timeout.as_secs_f64(),
                SETTLE_FRAMES
            )));
        }
    }
}

/// Largest distance between any two poses, over the head centre and points 100 mm out on
/// each head axis (where the scalp is), mm.
fn pose_spread_mm(poses: &[Isometry3<f64>]) -> f64 {
    let probes = [
        nalgebra::Point3::origin(),
        nalgebra::Point3::new(100.0, 0.0, 0.0),
        nalgebra::Point3::new(0.0, 100.0, 0.0),
        nalgebra::Point3::new(0.0, 0.0, 100.0),
    ];
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

#[cfg(test)]
mod timing {
    use super::*;

    #[test]
    #[ignore]
    fn time_one_band_frame() {
        let spec = smp_sim::patient::PatientSpec::from_toml_str(include_str!(
            "../../../sim/patients/norwood3-fitz3-brown-donor-strip.toml"
        ))
        .unwrap();
        let patient = SyntheticPatient::generate(&spec);
        let rig = Rig::default_sim();
        let band = BandRig::for_patient(&patient, &rig).unwrap().unwrap();
        let bfh = rig.base_from_head_nominal();
        let cfg = RenderConfig::default();
        for c in &band.cameras {
            let t = Instant::now();
            let win = marker_window(&band, c, &bfh);
            let view = smp_sim::render::render_view(
                &patient,
                &c.intrinsics,
                &c.base_from_camera,
                &bfh,
                &c.label,
                &RenderConfig { window_px: win, ..cfg.clone() },
            );
            let r = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let m = detect_layout_markers(&view.image, &c.label, &band.layout, &Default::default()).unwrap();
            eprintln!(
                "{} {win:?}: render {r:.3} s, detect {:.3} s, {} markers",
                c.label,
                t.elapsed().as_secs_f64(),
                m.len()
            );
        }
    }
}

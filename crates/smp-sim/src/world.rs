//! The simulated world behind a session's traits (smp-session's `world`): the machine is the
//! simulated controller on a real pseudo-terminal, the band cameras and the flange camera are
//! rendered from the patient where the world really holds the head at that machine time.
//!
//! The host's side only ever gets what a real rig gives: a port, images with the rig's camera
//! model, the machine clock. Everything the world knows besides (the true head pose, every
//! needle entry) stays here and leaves through [`SimWorld::finish`], for scoring.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nalgebra::{Isometry3, Point3};
use serialport::TTYPort;
use smp_core::fiducial_layout::FiducialLayout;
use smp_core::image::CameraView;
use smp_core::rig::Rig;
use smp_core::NeedleEntry;
use smp_motion::{ExecuteConfig, Protocol};
use smp_session::{BandCameras, BandFrames, CameraError, Cameras, Clock, FlangeCamera, Machine, MachineError};

use crate::band_cameras::FixedCamera;
use crate::controller::{ControllerConfig, ProtocolMode, SimController, SimReport, Skin};
use crate::dot_site::DotSiteScene;
use crate::faults::FaultScenario;
use crate::motion_model::{HeadMotion, MovingSkin};
use crate::patient::SyntheticPatient;
use crate::pty::{PtyController, SimClock};
use crate::render::RenderConfig;

/// Wall-clock timeouts of the executor when the simulated machine waits for rendered camera
/// frames (machine-time behaviour is unchanged).
const TRACKED_SIM_TIMEOUT: Duration = Duration::from_secs(300);

/// Wall time the band cameras wait after the last exposure before the machine runs free: the
/// session's answer to that exposure (a feed hold) is read by the controller while the machine
/// still stands at the exposure.
const HOLD_DELIVERY: Duration = Duration::from_millis(50);

/// Why the world could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("patient motion: {0}; fix [motion] in the patient file or [[head_moves]] in the fault scenario")]
    Motion(String),
    #[error("head band: {0}")]
    Band(String),
    #[error("simulated controller: {0}")]
    Controller(String),
    #[error("tracking rate {0} Hz is not usable; give a camera rate between 0.1 and 100 Hz")]
    TrackingRate(f64),
}

/// What the world is made of.
#[derive(Clone)]
pub struct WorldSpec {
    pub patient: Arc<SyntheticPatient>,
    /// The rig as built (renders the cameras, moves the arm).
    pub rig: Rig,
    /// Where the head rests at machine time 0 (the world's truth).
    pub base_from_head: Isometry3<f64>,
    /// Faults, head moves and band occlusions.
    pub scenario: Option<FaultScenario>,
    /// The simulated controller (dynamics, protocol, time scale, injected faults).
    pub controller: ControllerConfig,
    /// Band camera rate, frames per second of machine time (the machine waits for each).
    pub tracking_hz: f64,
    /// Needle entries earlier runs of this session left in the skin (a resume): the flange
    /// camera sees their pigment.
    pub earlier_entries: Vec<NeedleEntry>,
    /// The session's dwell, number and dilution: how the skin takes this session's pigment.
    pub pigment: SessionPigment,
}

/// How the session's needle entries deposit pigment (for the flange camera's view).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionPigment {
    pub dwell_s: f64,
    pub session: u32,
    pub dilution_pct: f64,
}

/// The patient's true skin at rest, as the simulated controller feels it.
pub struct PatientSkin {
    pub patient: Arc<SyntheticPatient>,
    pub base_from_head: Isometry3<f64>,
}

impl Skin for PatientSkin {
    fn surface_z_base(&self, x_mm: f64, y_mm: f64) -> Option<f64> {
        self.patient.surface_z_base(&self.base_from_head, x_mm, y_mm)
    }
    fn head_from_base(&self) -> Isometry3<f64> {
        self.base_from_head.inverse()
    }
}

/// How the world moves the patient's head: the patient file's `[motion]` (breathing, drift)
/// and the scenario's head moves, from `base_from_head`.
pub fn patient_motion(
    patient: &SyntheticPatient,
    base_from_head: Isometry3<f64>,
    scenario: Option<&FaultScenario>,
) -> Result<HeadMotion, WorldError> {
    let spec = patient.spec();
    let motion = match &spec.motion {
        Some(m) => m.head_motion(spec.seed).map_err(|e| WorldError::Motion(e.to_string()))?,
        None => HeadMotion::default(),
    };
    match scenario {
        Some(sc) => motion.with_scenario(sc, &base_from_head).map_err(|e| WorldError::Motion(e.to_string())),
        None => Ok(HeadMotion { registered_base_from_head: base_from_head, ..motion }),
    }
}

/// The skin under the needle: the patient moving by `motion`. A still patient gets the plain
/// skin, so runs without motion are unchanged bit for bit.
pub fn moving_patient_skin(
    patient: Arc<SyntheticPatient>,
    base_from_head: Isometry3<f64>,
    motion: &HeadMotion,
) -> Result<Box<dyn Skin>, WorldError> {
    let skin = PatientSkin { patient, base_from_head };
    if motion.is_still() {
        return Ok(Box::new(skin));
    }
    let moving = MovingSkin::new(skin, motion.clone()).map_err(|e| WorldError::Motion(e.to_string()))?;
    Ok(Box::new(moving))
}

struct Shared {
    spec: WorldSpec,
    motion: HeadMotion,
    clock: SimClock,
    /// The controller and the host's end of its pty, once connected.
    controller: Mutex<Option<(PtyController, TTYPort)>>,
}

impl Shared {
    /// Where the head truly is at machine time `t_s`.
    fn true_base_from_head(&self, t_s: f64) -> Isometry3<f64> {
        self.motion.base_delta(t_s) * self.motion.registered_base_from_head
    }

    fn entries_so_far(&self) -> Vec<NeedleEntry> {
        let mut all = self.spec.earlier_entries.clone();
        if let Ok(g) = self.controller.lock() {
            if let Some((c, _)) = g.as_ref() {
                all.extend(c.entries_so_far());
            }
        }
        all
    }
}

/// The simulated world of one session. Hand [`SimWorld::machine`] and [`SimWorld::cameras`]
/// to the session engine; [`SimWorld::finish`] returns the world's record for scoring.
pub struct SimWorld {
    shared: Arc<Shared>,
    machine: SimMachine,
}

impl SimWorld {
    pub fn new(spec: WorldSpec) -> Result<SimWorld, WorldError> {
        if !(spec.tracking_hz.is_finite() && (0.1..=100.0).contains(&spec.tracking_hz)) {
            return Err(WorldError::TrackingRate(spec.tracking_hz));
        }
        spec.controller.validate().map_err(|e| WorldError::Controller(e.to_string()))?;
        let motion = patient_motion(&spec.patient, spec.base_from_head, spec.scenario.as_ref())?;
        let clock = SimClock::new(spec.controller.time_scale);
        let shared = Arc::new(Shared { spec, motion, clock, controller: Mutex::new(None) });
        let machine = SimMachine { shared: shared.clone() };
        Ok(SimWorld { shared, machine })
    }

    /// Whether the patient wears a head band the band cameras can track.
    pub fn tracked(&self) -> bool {
        !self.shared.spec.patient.truth_fiducials().is_empty()
    }

    pub fn machine(&mut self) -> &mut SimMachine {
        &mut self.machine
    }

    /// The rig's cameras as the world renders them: band cameras when the patient wears a
    /// band, and the flange camera.
    pub fn cameras(&self) -> Result<Cameras, WorldError> {
        let layout = crate::band_cameras::measured_layout(&self.shared.spec.patient)
            .map_err(|e| WorldError::Band(e.to_string()))?;
        let band = layout.map(|layout| {
            Box::new(SimBandCameras {
                shared: self.shared.clone(),
                cameras: crate::band_cameras::band_cameras(&self.shared.spec.rig),
                layout,
                period_s: 1.0 / self.shared.spec.tracking_hz,
                next: None,
            }) as Box<dyn BandCameras>
        });
        let flange = Some(Box::new(SimFlangeCamera { shared: self.shared.clone() }) as Box<dyn FlangeCamera>);
        Ok(Cameras { band, flange })
    }

    /// Machine time now, s.
    pub fn now_s(&self) -> f64 {
        self.shared.clock.now_s()
    }

    /// Stops the controller and returns the world's record of the session: every needle entry
    /// (truth), the faults it injected, its machine time.
    pub fn finish(self) -> SimReport {
        let taken = self.shared.controller.lock().ok().and_then(|mut g| g.take());
        match taken {
            Some((c, _host)) => c.shutdown(),
            None => SimReport::default(),
        }
    }
}

/// The simulated controller behind a real pseudo-terminal.
pub struct SimMachine {
    shared: Arc<Shared>,
}

struct SimClockAdapter(SimClock);

impl Clock for SimClockAdapter {
    fn now_s(&self) -> f64 {
        self.0.now_s()
    }
}

impl Machine for SimMachine {
    fn describe(&self) -> String {
        let c = &self.shared.spec.controller;
        let proto = match c.protocol {
            ProtocolMode::Grbl => "grbl 1.1h",
            ProtocolMode::Marlin => "Marlin",
        };
        format!("simulated {proto} on a pseudo-terminal, {}x machine time", c.time_scale)
    }

    fn protocol(&self) -> Protocol {
        match self.shared.spec.controller.protocol {
            ProtocolMode::Grbl => Protocol::Grbl,
            ProtocolMode::Marlin => Protocol::Marlin,
        }
    }

    fn connect(&mut self) -> Result<TTYPort, MachineError> {
        let mut g = self.shared.controller.lock().map_err(|_| MachineError::Open {
            what: "the simulated controller".into(),
            detail: "its lock was poisoned".into(),
            hint: "start the session again".into(),
        })?;
        if g.is_none() {
            let spec = &self.shared.spec;
            let skin = moving_patient_skin(spec.patient.clone(), spec.base_from_head, &self.shared.motion)
                .map_err(|e| open_error(e.to_string()))?;
            let controller =
                SimController::new(spec.controller.clone(), skin).map_err(|e| open_error(e.to_string()))?;
            let (host, device) = TTYPort::pair().map_err(|e| open_error(format!("pseudo-terminal pair: {e}")))?;
            // Machine time 0 is the controller's power-up, as for a controller of its own.
            self.shared.clock.restart();
            let sim = PtyController::spawn_with_clock(device, controller, self.shared.clock.clone())
                .map_err(|e| open_error(e.to_string()))?;
            *g = Some((sim, host));
        }
        let (_, host) = g.as_ref().ok_or_else(|| open_error("not started".into()))?;
        host.try_clone_native().map_err(|e| open_error(format!("cannot share the pseudo-terminal: {e}")))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SimClockAdapter(self.shared.clock.clone()))
    }

    fn tune(&self, cfg: &mut ExecuteConfig) {
        let scale = self.shared.spec.controller.time_scale.max(1.0);
        if cfg.protocol == Protocol::Marlin {
            // The host's clock is wall time; the query period is meant in machine time.
            cfg.marlin_feed_rate_query = cfg.marlin_feed_rate_query.div_f64(scale);
        }
        if !self.shared.spec.patient.truth_fiducials().is_empty() {
            // The machine waits for each camera frame, which the renderer takes seconds of
            // wall time to draw: the executor's wall-clock timeouts must allow for that.
            cfg.ack_timeout = cfg.ack_timeout.max(TRACKED_SIM_TIMEOUT);
            cfg.fault_settle = cfg.fault_settle.max(TRACKED_SIM_TIMEOUT);
            cfg.final_idle_timeout = cfg.final_idle_timeout.max(TRACKED_SIM_TIMEOUT);
        }
    }
}

fn open_error(detail: String) -> MachineError {
    MachineError::Open {
        what: "the simulated controller".into(),
        detail,
        hint: "check the rig's dynamics and the fault scenario".into(),
    }
}

/// The fixed band cameras, rendering the head where the world holds it at each exposure. The
/// machine's clock waits at the next exposure until the session has taken this one.
struct SimBandCameras {
    shared: Arc<Shared>,
    cameras: Vec<FixedCamera>,
    layout: FiducialLayout,
    period_s: f64,
    /// Index of the next exposure (from the clock at the first call).
    next: Option<u64>,
}

/// Pixels around each predicted marker that a tracking frame renders: the marker's own size
/// plus this margin, which covers a head movement of several millimetres between frames at
/// the band cameras' scale (about 4 px/mm).
const WINDOW_MARGIN_PX: f64 = 60.0;
/// A marker is expected in view only when the camera sees its face within about 80 degrees.
const MIN_FACING_COS: f64 = 0.17;

impl SimBandCameras {
    /// The pixel window of `camera` holding every marker it should see with the head at
    /// `predicted`, or `None` when it should see none.
    fn window(&self, camera: &FixedCamera, predicted: &Isometry3<f64>) -> Option<[u32; 4]> {
        let camera_from_head = camera.base_from_camera.inverse() * predicted;
        let camera_in_head = camera_from_head.inverse() * Point3::origin();
        let (w, h) = (f64::from(camera.intrinsics.width_px), f64::from(camera.intrinsics.height_px));
        let (mut x0, mut y0, mut x1, mut y1) = (f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
        for m in &self.layout.markers {
            let Some(corners) = m.corners_head() else { continue };
            // Band markers face out from the head centre: one on the far side is hidden.
            let centre = Point3::from(corners.iter().map(|c| c.coords).sum::<nalgebra::Vector3<f64>>() / 4.0);
            let (outward, to_camera) = (centre.coords.normalize(), (camera_in_head - centre).normalize());
            if outward.dot(&to_camera) < MIN_FACING_COS {
                continue;
            }
            let px: Vec<_> =
                corners.iter().filter_map(|c| camera.intrinsics.project(&(camera_from_head * c))).collect();
            if px.len() < 4 || px.iter().any(|p| p.x < 0.0 || p.y < 0.0 || p.x >= w || p.y >= h) {
                continue;
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

    /// Renders every camera at machine time `t_s` (windowed around `predicted` when given);
    /// no view while the scenario hides the band.
    fn render(&self, t_s: f64, predicted: Option<&Isometry3<f64>>) -> Vec<CameraView> {
        let hidden = self.shared.spec.scenario.as_ref().is_some_and(|s| s.band_hidden_at(t_s));
        if hidden {
            return Vec::new();
        }
        let truth = self.shared.true_base_from_head(t_s);
        let cfg = RenderConfig::default();
        let mut views = Vec::with_capacity(self.cameras.len());
        for c in &self.cameras {
            let window = match predicted {
                Some(p) => match self.window(c, p) {
                    Some(w) => Some(w),
                    None => continue,
                },
                None => None,
            };
            let cfg = RenderConfig { window_px: window, ..cfg.clone() };
            views.push(crate::render::render_view(
                &self.shared.spec.patient,
                &c.intrinsics,
                &c.base_from_camera,
                &truth,
                &c.label,
                &cfg,
            ));
        }
        views
    }
}

impl BandCameras for SimBandCameras {
    fn layout(&self) -> &FiducialLayout {
        &self.layout
    }

    fn next_frames(&mut self, predicted: &Isometry3<f64>) -> Result<Option<BandFrames>, CameraError> {
        let clock = &self.shared.clock;
        let k = *self.next.get_or_insert_with(|| (clock.now_s() / self.period_s).ceil() as u64);
        self.next = Some(k + 1);
        let t_s = k as f64 * self.period_s;
        // The machine may run on to the next exposure while this frame is read.
        clock.set_gate(Some(t_s + self.period_s));
        while clock.now_s() < t_s {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Some(BandFrames { t_s, views: self.render(t_s, Some(predicted)) }))
    }

    fn frames_now(&mut self) -> Result<BandFrames, CameraError> {
        let t_s = self.shared.clock.now_s();
        Ok(BandFrames { t_s, views: self.render(t_s, None) })
    }

    fn release(&mut self) {
        std::thread::sleep(HOLD_DELIVERY);
        self.shared.clock.set_gate(None);
        self.next = None;
    }
}

/// The flange camera, rendering the skin with the pigment of every needle entry so far, with
/// the arm at the machine position the host asked for and the head where it truly is.
struct SimFlangeCamera {
    shared: Arc<Shared>,
}

impl FlangeCamera for SimFlangeCamera {
    fn capture_at(
        &mut self,
        machine_pos: &[f64],
        crop_px: Option<(u32, u32)>,
        label: &str,
    ) -> Result<CameraView, CameraError> {
        let fail = |detail: String| CameraError::Failed { camera: "flange".into(), detail };
        let [x, y, z] = match machine_pos {
            [x, y, z, ..] => [*x, *y, *z],
            _ => return Err(fail(format!("machine position {machine_pos:?} has fewer than 3 axes"))),
        };
        let spec = &self.shared.spec;
        let truth = self.shared.true_base_from_head(self.shared.clock.now_s());
        let entries = self.shared.entries_so_far();
        let p = spec.pigment;
        let scene = DotSiteScene::from_entries(&spec.patient, &entries, p.dwell_s, p.session, p.dilution_pct, truth)
            .map_err(|e| fail(e.to_string()))?;
        let cfg = RenderConfig { seed: spec.patient.spec().seed, ..RenderConfig::default() };
        scene.render_at_machine(&spec.rig, [x, y, z], crop_px, label, &cfg).map(|v| v.view).map_err(|e| match e {
            crate::dot_site::DotSiteError::OutOfTravel { .. } => {
                CameraError::OutOfReach { camera: "flange".into(), detail: e.to_string() }
            }
            other => fail(other.to_string()),
        })
    }
}

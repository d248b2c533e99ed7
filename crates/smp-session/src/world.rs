//! Where a session meets the world: the machine (a controller behind a serial port or a pty),
//! the cameras (head band, flange), the operator and the observers. The engine knows only
//! these traits; a real rig and the simulator (smp-sim's `world` module) implement them, so
//! the same code runs a session on either. Everything that crosses them is what the host can
//! know: bytes, images with the host's own camera model, machine positions it commanded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nalgebra::Isometry3;
use serialport::TTYPort;
use smp_core::fiducial_layout::FiducialLayout;
use smp_core::image::CameraView;
use smp_core::operator::OperatorCommand;
use smp_motion::{ExecuteConfig, Protocol};
use thiserror::Error;

/// The machine's clock, seconds: the wall clock for a real arm, the simulator's scaled clock.
pub trait Clock: Send + Sync {
    fn now_s(&self) -> f64;
}

/// Wall-clock seconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    t0: Instant,
}

impl WallClock {
    pub fn new() -> WallClock {
        WallClock { t0: Instant::now() }
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new()
    }
}

impl Clock for WallClock {
    fn now_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
}

/// Why the machine could not be reached.
#[derive(Debug, Error)]
pub enum MachineError {
    #[error("cannot open {what}: {detail}; {hint}")]
    Open { what: String, detail: String, hint: String },
    #[error("the controller cannot run this program: {0}")]
    Unsuitable(String),
    #[error("asking the controller what it is (`$I`, `$$`): {0}")]
    Survey(String),
}

/// The arm's controller, whatever is behind the port.
pub trait Machine {
    /// One line for reports ("serial /dev/ttyUSB0 at 115200 baud", "simulated grbl 1.1h").
    fn describe(&self) -> String;
    /// The host protocol to speak.
    fn protocol(&self) -> Protocol;
    /// A port to the controller, for one executor run (called again after a drift).
    fn connect(&mut self) -> Result<TTYPort, MachineError>;
    /// The machine's clock (journal and tracking times).
    fn clock(&self) -> Arc<dyn Clock>;
    /// Adjusts the executor's settings to this machine (a simulated machine whose clock waits
    /// for camera frames needs longer wall-clock timeouts; a scaled clock shortens periods
    /// meant in machine time).
    fn tune(&self, cfg: &mut ExecuteConfig) {
        let _ = cfg;
    }
}

/// Why a camera gave no image.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CameraError {
    #[error("camera {camera}: {detail}")]
    Failed { camera: String, detail: String },
    #[error("camera {camera}: the site is out of the machine's reach ({detail})")]
    OutOfReach { camera: String, detail: String },
    #[error("no {0} camera on this rig")]
    Missing(&'static str),
}

/// One exposure of the head-band cameras.
#[derive(Debug, Clone)]
pub struct BandFrames {
    /// When the frames were exposed, machine time, s.
    pub t_s: f64,
    /// One view per camera that delivered a frame (image with the host's camera model).
    pub views: Vec<CameraView>,
}

/// The fixed cameras that watch the head band.
pub trait BandCameras: Send {
    /// The band as the clinic measured it (marker corners in the head frame).
    fn layout(&self) -> &FiducialLayout;
    /// The frames of the next exposure, waiting for it. `predicted_base_from_head` is where
    /// the tracker expects the head (a tracking camera reads only the regions around the
    /// markers there). `None` when the stream has ended.
    fn next_frames(&mut self, predicted_base_from_head: &Isometry3<f64>) -> Result<Option<BandFrames>, CameraError>;
    /// Frames as of now, for a registration outside tracking (after a drift).
    fn frames_now(&mut self) -> Result<BandFrames, CameraError>;
    /// Tracking is over: a simulated machine whose clock waits for the frames runs free.
    fn release(&mut self) {}
}

/// The camera on the flange, for looking at dot sites.
pub trait FlangeCamera {
    /// An image with the machine at `machine_pos` (the arm is brought there first), cropped
    /// to `crop_px` around the centre; the view carries the host's camera model at that
    /// position.
    fn capture_at(
        &mut self,
        machine_pos: &[f64],
        crop_px: Option<(u32, u32)>,
        label: &str,
    ) -> Result<CameraView, CameraError>;
}

/// What the cameras of a rig offer a session (any of them may be missing).
#[derive(Default)]
pub struct Cameras {
    pub band: Option<Box<dyn BandCameras>>,
    pub flange: Option<Box<dyn FlangeCamera>>,
}

impl std::fmt::Debug for Cameras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cameras").field("band", &self.band.is_some()).field("flange", &self.flange.is_some()).finish()
    }
}

/// Operator commands in (from the console, the bus, a signal handler). What became of each
/// (applied or refused by the controller's gate) goes to the observers
/// ([`SessionEvent::Command`]), where a bus or console adapter acknowledges it.
pub trait Operator: Send {
    /// The next command, waiting at most `timeout`; `None` when none came.
    fn next_command(&mut self, timeout: Duration) -> Option<OperatorCommand>;
}

/// What observers hear of a session (journal writes are not observers: the engine owns them).
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// The session's state changed.
    State(SessionState),
    /// A dot's state is durable in the journal (executed, uncertain, resolved...).
    Dot { id: u32, state: smp_core::plan::DotState, position_head_mm: [f64; 3], t_s: f64 },
    /// Progress of the run in flight.
    Progress { done: usize, total: usize },
    /// A line for the operator (faults, tracking, camera checks).
    Note(String),
    /// An operator command as applied (or refused).
    Command { command: OperatorCommand, applied: bool },
    /// The head's registration changed (after a drift), base frame.
    Registered { base_from_head: Isometry3<f64>, t_s: f64 },
}

/// The session's coarse state, for telemetry and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    Connecting,
    Running,
    Paused,
    /// Stopped by a drift of the head; waiting for it to settle.
    Reregistering,
    /// Looking at uncertain dots with the flange camera.
    Checking,
    Faulted,
    Aborted,
    Done,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Connecting => "connecting",
            SessionState::Running => "running",
            SessionState::Paused => "paused",
            SessionState::Reregistering => "reregistering",
            SessionState::Checking => "checking",
            SessionState::Faulted => "faulted",
            SessionState::Aborted => "aborted",
            SessionState::Done => "done",
        }
    }
}

/// Hears the session (recording, telemetry, progress bar). Called on the engine's threads:
/// must not block (forward into a bounded channel; drop and count when full).
pub trait Observer: Send {
    fn on_event(&mut self, event: &SessionEvent);
    /// The session is over: flush (the last telemetry, the recording).
    fn finish(&mut self) {}
}

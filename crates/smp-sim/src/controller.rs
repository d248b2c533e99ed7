//! A simulated grbl 1.1h controller as a pure, sans-I/O state machine.
//!
//! [`SimController`] implements the controller side of grbl's serial protocol on its own (it
//! never reuses smp-gcode's host state machine, so a protocol bug cannot hide on both sides),
//! paces motion with the trapezoid model of `smp_core::kinematics`, and records every needle
//! passage through the simulated skin as a [`NeedleEntry`]. It owns no port and no clock:
//! callers hand in received bytes and the current *machine* time (`now`, a `Duration` since
//! the controller was created), and take out bytes to send and the next deadline
//! (quinn-proto's `handle_*`/`poll_*` shape). [`crate::pty`] runs it behind a pseudo-terminal.
//!
//! grbl behaviour reproduced (see the report of [`SimController`] for the deviations):
//! - serial: a 128-byte RX ring; real-time bytes (`?`, `!`, `~`, 0x18) are picked out of the
//!   stream anywhere and never enter it; other bytes above 0x7F are dropped, as grbl's ISR
//!   does; a byte arriving on a full ring is lost and counted in `rx_overflows`;
//! - line assembly as grbl's protocol loop: `\n` or `\r` ends a line, whitespace and control
//!   bytes (NUL included) are dropped, `(...)` and `;` comments removed, letters upper-cased,
//!   a line of 80 or more kept characters answers `error:11`, an empty line `ok`;
//! - the main loop reads the next line only when the previous one has finished executing: a
//!   motion line waits for room in the 15-block planner before its `ok`; G4, M3/M4/M5, S
//!   changes with the spindle on, M0, M2/M30 wait for the planner to drain first (grbl's
//!   `protocol_buffer_synchronize`), and G4's `ok` comes only after its dwell, rounded up to
//!   grbl's 50 ms dwell step;
//! - soft limits: a target outside the travel raises `ALARM:2` (after a controlled stop if
//!   moving) and `[MSG:Reset to continue]`; nothing but status and reset is served until a
//!   soft reset; the offending line gets no response;
//! - soft reset (0x18): motion stops at once where it is, the planner, the RX ring and the
//!   line in progress are flushed, the spindle stops, the parser is re-initialised at the
//!   current position, and the banner is sent; a reset while moving (or decelerating in a
//!   hold) raises `ALARM:3` first and leaves the controller in Alarm (`[MSG:'$H'|'$X' to
//!   unlock]`), where g-code lines answer `error:9` until `$X`;
//! - feed hold decelerates to a stop inside the current block (`Hold:1`, then `Hold:0`) and
//!   blocks the main loop; cycle start resumes from rest; a dwell pauses during a hold;
//! - the spindle stop override (0x9E, grbl 1.1 protocol.c): taken only in Hold; once the hold
//!   is complete it stops a running spindle (`FS:` speed 0, `A:` without `S`/`C`, overrides
//!   reported on the next status); a cycle start then restores the spindle at its speed with
//!   `[MSG:Restoring spindle]` and resumes, a second 0x9E restores it without resuming;
//! - `$`, `$$`, `$#`, `$G`, `$I`, `$N`, `$C`, `$X`, `$H` (homing disabled: `error:5`),
//!   `$RST=`, `$n=value`; status reports `<State|MPos:..|FS:..>` with grbl's `WCO:`/`Ov:`
//!   refresh counters (optional `Bf:` with `$10=3`).
//!
//! Axes ([`MachineAxes`], built from a rig by [`ControllerConfig::for_rig`]): stock grbl's
//! X Y Z with a vertical needle (`xyz`, the default, where A/B/C words stay `error:20`), a
//! 5-axis RTCP head (`xyzab`: X Y Z the tip, A B degrees) or a 6-axis arm (`joints`: X Y Z A B
//! C = J1..J6 degrees, forward kinematics from the rig's DH table). Every move is linear in
//! machine coordinates, rest to rest, its speed and acceleration limited per axis (the slowest
//! governs); soft limits cover every axis and, for the arm, the tip's Cartesian workspace;
//! status reports print one coordinate per axis, as grbl/grblHAL built for that many axes.
//! The contact detector follows the needle's tip *and* direction along each move (the tip
//! moving at most `sample_step_mm` between samples, through the forward kinematics for joint
//! moves) and records the depth along the needle and the entry angle ([`EntryGeometry`]).
//!
//! Faults ([`FaultPlan`], loaded from `sim/faults/*.toml` by [`crate::faults`]) are injected
//! inside the state machine, so a fault run is as deterministic as a clean one.//!
//! Layout: this file holds [`SimController`], its public interface (`handle_*`, `poll_*`,
//! truth and report) and the grbl codes; `config` what a controller is built from; `report`
//! what it tells afterwards; `fault_plan` the faults and where they fire; `advance` machine
//! time (events in order, motion and skin contact integrated); `realtime` the bytes as they
//! arrive and the real-time commands (status, hold, resume, spindle stop, reset, alarms);
//! `main_loop` line assembly, execution and responses; `system` the `$` commands; `marlin`
//! the Marlin protocol; `gcode`, `motion`, `axes`, `contact` and `settings` the parser,
//! planner blocks, axes, skin contact and `$` settings.

mod advance;
mod axes;
mod config;
mod contact;
mod fault_plan;
mod gcode;
mod main_loop;
mod marlin;
mod motion;
mod realtime;
mod report;
mod settings;
mod system;

use std::collections::VecDeque;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smp_core::kinematics::AxisLimits;
use smp_core::NeedleEntry;

pub use axes::{
    MachineAxes, MachinePos, AXIS_LETTERS, DEFAULT_JOINT_ACCEL_DEG_PER_S2, DEFAULT_JOINT_STEPS_PER_DEG,
    DEFAULT_ROTARY_ACCEL_DEG_PER_S2, DEFAULT_ROTARY_STEPS_PER_DEG, MAX_AXES,
};
pub use contact::{EntryGeometry, EntryTiming, FlatSkin, FnSkin, NoSkin, PatchSkin, Skin, LINE_SEARCH_MM};
pub use gcode::SpindleDir;
pub use marlin::{marlin_checksum, MarlinExecuted, MARLIN_BUFSIZE, MARLIN_MAX_CMD_SIZE, MARLIN_START};

use axes::Kinematics;
use config::invalid;
pub use config::{ControllerConfig, ControllerError, ProtocolMode};
use contact::ContactTracker;
pub use fault_plan::{Fault, FaultPlan, FiredFault, MAX_ALARM_CODE};
use gcode::{AxisWords, GcState};
use main_loop::{Assembler, LineExec};
use motion::{Block, Leg};
pub use report::{ControllerStats, MachineState, SimReport};
use settings::Settings;

/// grbl 1.1 status (`error:N`) and alarm (`ALARM:N`) codes used by the simulator.
pub mod codes {
    pub const ERROR_EXPECTED_COMMAND_LETTER: u8 = 1;
    pub const ERROR_BAD_NUMBER_FORMAT: u8 = 2;
    pub const ERROR_INVALID_STATEMENT: u8 = 3;
    pub const ERROR_NEGATIVE_VALUE: u8 = 4;
    pub const ERROR_SETTING_DISABLED: u8 = 5;
    pub const ERROR_SETTING_STEP_PULSE_MIN: u8 = 6;
    pub const ERROR_IDLE_ERROR: u8 = 8;
    pub const ERROR_SYSTEM_GC_LOCK: u8 = 9;
    pub const ERROR_OVERFLOW: u8 = 11;
    pub const ERROR_UNSUPPORTED_COMMAND: u8 = 20;
    pub const ERROR_MODAL_GROUP_VIOLATION: u8 = 21;
    pub const ERROR_UNDEFINED_FEED_RATE: u8 = 22;
    pub const ERROR_COMMAND_VALUE_NOT_INTEGER: u8 = 23;
    pub const ERROR_AXIS_COMMAND_CONFLICT: u8 = 24;
    pub const ERROR_WORD_REPEATED: u8 = 25;
    pub const ERROR_INVALID_LINE_NUMBER: u8 = 27;
    pub const ERROR_VALUE_WORD_MISSING: u8 = 28;
    pub const ERROR_G53_INVALID_MOTION_MODE: u8 = 30;
    pub const ERROR_AXIS_WORDS_EXIST: u8 = 31;
    pub const ERROR_UNUSED_WORDS: u8 = 36;
    pub const ERROR_MAX_VALUE_EXCEEDED: u8 = 38;
    /// Hard limit switch triggered: position lost, reset required.
    pub const ALARM_HARD_LIMIT: u8 = 1;
    /// Soft limit: a target outside the machine travel.
    pub const ALARM_SOFT_LIMIT: u8 = 2;
    /// Reset while in motion: position may be lost on a real machine.
    pub const ALARM_ABORT_CYCLE: u8 = 3;
}

/// The welcome banner, sent at power-up and after every soft reset.
pub const GRBL_BANNER: &str = "\r\nGrbl 1.1h ['$' for help]\r\n";
const GRBL_BUILD: &str = "1.1h.20190825";
const MSG_ALARM_LOCK: &str = "[MSG:'$H'|'$X' to unlock]";
const MSG_CRITICAL: &str = "[MSG:Reset to continue]";
/// grbl 1.1's `CMD_SPINDLE_OVR_STOP`: toggles the spindle stop override during a feed hold.
pub const REALTIME_SPINDLE_STOP: u8 = 0x9E;
const MSG_SPINDLE_RESTORE: &str = "[MSG:Restoring spindle]";
/// Slack when comparing machine times: event times are computed in f64 seconds.
const TIME_EPS_S: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dwell {
    Running { end_s: f64 },
    Paused { remaining_s: f64 },
}

/// grbl 1.1's spindle stop override (`sys.spindle_stop_ovr`, protocol.c): 0x9E in Hold
/// initiates it, the suspend loop stops the spindle once the hold is complete, and a cycle
/// start (or a second 0x9E) restores the spindle at the speed it had.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum SpindleStopOvr {
    /// `SPINDLE_STOP_OVR_DISABLED`.
    #[default]
    Disabled,
    /// `SPINDLE_STOP_OVR_INITIATE`: asked for during `Hold:1`, acted on at `Hold:0`.
    Initiate,
    /// `SPINDLE_STOP_OVR_ENABLED`: the spindle is stopped; it restores to `dir` at `rpm`.
    Enabled { dir: SpindleDir, rpm: f64 },
}

/// The simulated grbl controller. See the module documentation for the behaviour.
///
/// Deviations from real grbl 1.1h, all deliberate:
/// - blocks start and end at rest (no junction speeds), and a feed hold decelerates inside
///   the current block (a rest-to-rest block always leaves room to stop);
/// - a line's bytes are counted in the RX buffer until the controller reads the line, not
///   only until the ISR hands them to the line buffer; occupancy never exceeds the host's
///   own count, so a correct host never overflows either controller;
/// - not simulated: arcs, probing, jogging (`$J=` answers `error:20`), homing (`$22=0`, so
///   `$H` is `error:5` as on grbl with homing off), G10/G28/G30/G92/G93/G43.1 (`error:20`),
///   startup blocks (`$Nx=` answers `error:20`), sleep (`$SLP`: `error:20`), feed, rapid and
///   spindle speed overrides and the safety door (their real-time bytes are ignored; the
///   spindle stop override 0x9E is modelled), the `Pn:` field;
/// - soft limits apply with homing disabled (real grbl refuses `$20=1` without `$22=1`) and
///   the travel is the rig's `[min, max]` rather than grbl's `[-$13x, 0]`;
/// - numbers are parsed into f64 (grbl: f32) with grbl's 8-significant-digit truncation;
/// - rotary axes never wrap (absolute degrees, like grblHAL's default), and inverse-time or
///   RTCP-specific G-codes (G93, G43.4) are not needed: RTCP is always on in `xyzab`.
pub struct SimController {
    cfg: ControllerConfig,
    settings: Settings,
    /// Rate, acceleration and travel of the driven axes (from the `$` settings).
    limits: [AxisLimits; MAX_AXES],
    skin: Box<dyn Skin>,
    /// Machine position -> needle pose, for the profile.
    kin: Kinematics,
    /// Axis words the parser accepts.
    axis_words: AxisWords,
    now_s: f64,
    tx: Vec<u8>,
    // serial and line handling
    rx: VecDeque<u8>,
    asm: Assembler,
    current: Option<LineExec>,
    unacked_bytes: usize,
    lines_read: u64,
    bytes_seen: u64,
    // machine
    state: MachineState,
    critical: bool,
    soft_limit_pending: bool,
    gc: GcState,
    blocks: VecDeque<Block>,
    leg: Option<Leg>,
    /// Distance done along the front block while it has no leg (held).
    s_held_mm: f64,
    /// Time up to which motion (and skin contact) has been integrated.
    motion_time_s: f64,
    /// Where the tool is when the planner is empty.
    rest_mm: MachinePos,
    /// End of the last queued block: start of the next one.
    planner_end_mm: MachinePos,
    spindle: SpindleDir,
    /// grbl's `sys.spindle_speed`: the speed actually set, clamped to $30/$31.
    spindle_rpm: f64,
    dwell: Option<Dwell>,
    /// grbl's `sys.spindle_stop_ovr` (0x9E, the spindle stop override of a feed hold).
    spindle_stop: SpindleStopOvr,
    /// Feed rate percentage: grbl's feed override, Marlin's `M220` (100 = as programmed).
    feed_pct: u16,
    /// Marlin's `P000`: the stepper interrupt is suspended, motion frozen where it is.
    steppers_suspended: bool,
    contacts: ContactTracker,
    wco_counter: u8,
    ovr_counter: u8,
    build_info: String,
    stats: ControllerStats,
    fault_fired: Vec<bool>,
    faults_fired: Vec<FiredFault>,
    /// The rate faults' random stream, seeded from [`ControllerConfig::fault_seed`].
    fault_rng: ChaCha8Rng,
    /// A `disconnect_at_line` fault fired: no input is taken, no output produced.
    disconnected: bool,
    /// Marlin serial state; `Some` exactly when the protocol is [`ProtocolMode::Marlin`].
    marlin: Option<marlin::MarlinState>,
}

impl SimController {
    /// A controller at power-up (time 0) with the banner queued for sending.
    pub fn new(cfg: ControllerConfig, skin: Box<dyn Skin>) -> Result<Self, ControllerError> {
        cfg.validate()?;
        let settings = Settings::from_config(&cfg);
        let limits = settings.axis_limits();
        let kin = Kinematics::new(&cfg.axes).ok_or_else(|| invalid("axes.arm", "needs exactly six joints"))?;
        let n_axes = cfg.axes.count();
        let axis_words =
            AxisWords { count: n_axes, linear: std::array::from_fn(|i| i < n_axes && cfg.axes.is_linear(i)) };
        let p = cfg.initial_machine_position();
        let mut c = SimController {
            kin,
            axis_words,
            contacts: ContactTracker::new(cfg.sample_step_mm),
            fault_fired: vec![false; cfg.faults.faults.len()],
            settings,
            limits,
            skin,
            now_s: 0.0,
            tx: Vec::new(),
            rx: VecDeque::with_capacity(cfg.rx_buffer_bytes),
            asm: Assembler::default(),
            current: None,
            unacked_bytes: 0,
            lines_read: 0,
            bytes_seen: 0,
            state: MachineState::Idle,
            critical: false,
            soft_limit_pending: false,
            gc: GcState::new(p),
            blocks: VecDeque::new(),
            leg: None,
            s_held_mm: 0.0,
            motion_time_s: 0.0,
            rest_mm: p,
            planner_end_mm: p,
            spindle: SpindleDir::Off,
            spindle_rpm: 0.0,
            dwell: None,
            spindle_stop: SpindleStopOvr::default(),
            feed_pct: 100,
            steppers_suspended: false,
            wco_counter: 0,
            ovr_counter: 0,
            build_info: String::new(),
            stats: ControllerStats::default(),
            faults_fired: Vec::new(),
            fault_rng: ChaCha8Rng::seed_from_u64(cfg.fault_seed),
            disconnected: false,
            marlin: (cfg.protocol == ProtocolMode::Marlin).then(marlin::MarlinState::default),
            cfg,
        };
        if c.marlin.is_some() {
            c.emit(MARLIN_START);
        } else {
            c.send_raw(GRBL_BANNER.as_bytes());
        }
        // A tool parked inside the skin at power-up is a contact from time 0.
        let skin = c.skin.as_ref();
        let needle = c.kin.needle(&p);
        c.contacts.sample_needle_path(skin, |_| needle, |_| 0.0, 0.0, 0.0, 1.0, false);
        Ok(c)
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// Bytes received from the host at machine time `now`.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Duration) {
        let t = self.advance_to(now.as_secs_f64());
        for &b in bytes {
            self.handle_byte(b, t);
        }
    }

    /// Advances machine time to `now` (call at or after [`SimController::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Duration) {
        self.advance_to(now.as_secs_f64());
    }

    /// The next machine time at which something happens without new input (a block or a
    /// dwell ends, a timed fault fires), or `None` when nothing will.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.next_event_s().map(|t| {
            // Round up so that handle_timeout(poll_timeout) always reaches the event.
            let ns = (t.max(0.0) * 1e9).ceil();
            Duration::from_nanos(if ns >= u64::MAX as f64 { u64::MAX } else { ns as u64 })
        })
    }

    /// Appends every byte the controller has to send to `buf`.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) {
        buf.append(&mut self.tx);
    }

    /// Powered needle entries recorded so far (contacts still open are not included).
    pub fn entries(&self) -> &[NeedleEntry] {
        &self.contacts.entries
    }

    /// Contacts made with the cartridge off, recorded so far.
    pub fn unpowered_contacts(&self) -> &[NeedleEntry] {
        &self.contacts.unpowered
    }

    /// How the needle met the skin at each of [`SimController::entries`] (same index).
    pub fn entry_geometry(&self) -> &[EntryGeometry] {
        &self.contacts.geometry
    }

    /// How long the needle stayed in the skin at each of [`SimController::entries`], and how
    /// long the cartridge ran meanwhile (same index).
    pub fn entry_timing(&self) -> &[EntryTiming] {
        &self.contacts.timing
    }

    /// The needle tip is below the skin now (as of the last motion integrated).
    pub fn needle_in_skin(&self) -> bool {
        self.contacts.is_open()
    }

    /// A `G4` dwell is under way (running, or paused by a feed hold).
    pub fn dwelling(&self) -> bool {
        self.dwell.is_some()
    }

    /// The cartridge (spindle) runs now.
    pub fn cartridge_running(&self) -> bool {
        self.powered()
    }

    /// Sets the feed rate percentage (grbl's feed override, Marlin's `M220 S`): moves planned
    /// from now on run at `percent` of their programmed feed; grbl reports it in the next
    /// status report's `Ov:`, Marlin in its answer to `M220`. For tests and fault scenarios.
    pub fn set_feed_rate_percent(&mut self, percent: u16) {
        self.feed_pct = percent;
        self.ovr_counter = 0; // grbl reports an override change on the next report
    }

    /// The feed rate percentage in force (100 = as programmed).
    pub fn feed_rate_percent(&self) -> u16 {
        self.feed_pct
    }

    /// Machine time reached, seconds since power-up.
    pub fn machine_time_s(&self) -> f64 {
        self.now_s
    }

    pub fn state(&self) -> MachineState {
        self.state
    }

    pub fn stats(&self) -> &ControllerStats {
        &self.stats
    }

    /// Current position of machine axes X Y Z (continuous, not rounded to steps): the tip in
    /// mm in `xyz` and `xyzab`, joints J1..J3 in degrees in `joints`.
    pub fn position_mm(&self) -> [f64; 3] {
        let p = self.machine_pos();
        [p[0], p[1], p[2]]
    }

    /// Current position of every driven axis (3, 5 or 6 values), continuous.
    pub fn machine_position(&self) -> Vec<f64> {
        self.machine_pos()[..self.axis_words.count].to_vec()
    }

    /// Where the needle tip is now, base frame, mm (the forward kinematics in `joints`).
    pub fn needle_tip_base_mm(&self) -> [f64; 3] {
        self.kin.needle(&self.machine_pos()).tip_mm
    }

    /// Where the needle points now (hub to tip, unit), base frame.
    pub fn needle_direction_base(&self) -> [f64; 3] {
        self.kin.needle(&self.machine_pos()).dir
    }

    fn machine_pos(&self) -> MachinePos {
        match (self.blocks.front(), self.leg) {
            (Some(b), Some(leg)) => b.point_at(leg.s_at(self.motion_time_s)),
            (Some(b), None) => b.point_at(self.s_held_mm),
            (None, _) => self.rest_mm,
        }
    }

    /// True when nothing is moving, dwelling, executing or buffered.
    pub fn is_quiescent(&self) -> bool {
        self.blocks.is_empty()
            && self.current.is_none()
            && self.dwell.is_none()
            && self.rx.is_empty()
            && self.asm.is_empty()
            && self.marlin.as_ref().is_none_or(|m| m.is_idle())
    }

    /// Advances to `now`, closes a contact still open and returns the run's record.
    pub fn finish(mut self, now: Duration) -> SimReport {
        let t = self.advance_to(now.as_secs_f64());
        self.contacts.close(t);
        self.report()
    }

    /// The record so far (a contact still open is not included).
    pub fn report(&self) -> SimReport {
        SimReport {
            entries: self.contacts.entries.clone(),
            unpowered_contacts: self.contacts.unpowered.clone(),
            machine_time_s: self.now_s,
            stats: self.stats.clone(),
            faults_fired: self.faults_fired.clone(),
            final_position_mm: self.position_mm(),
            final_machine_position: self.machine_position(),
            entry_geometry: self.contacts.geometry.clone(),
            unpowered_geometry: self.contacts.unpowered_geometry.clone(),
            entry_timing: self.contacts.timing.clone(),
            unpowered_timing: self.contacts.unpowered_timing.clone(),
            runner_errors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod axes_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod spindle_stop_tests;
#[cfg(test)]
mod test_io;
#[cfg(test)]
mod tests;

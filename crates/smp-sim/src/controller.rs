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
//! inside the state machine, so a fault run is as deterministic as a clean one.

mod axes;
mod contact;
mod gcode;
mod marlin;
mod motion;
mod settings;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use smp_core::kinematics::{executed_dwell_s, AxisLimits, MachineDynamics};
use smp_core::rig::{AxisProfile, Rig};
use smp_core::{NeedleEntry, SpecError};
use thiserror::Error;

pub use axes::{
    MachineAxes, MachinePos, AXIS_LETTERS, DEFAULT_JOINT_ACCEL_DEG_PER_S2, DEFAULT_JOINT_STEPS_PER_DEG,
    DEFAULT_ROTARY_ACCEL_DEG_PER_S2, DEFAULT_ROTARY_STEPS_PER_DEG, MAX_AXES,
};
pub use contact::{EntryGeometry, EntryTiming, FlatSkin, FnSkin, NoSkin, PatchSkin, Skin, LINE_SEARCH_MM};
pub use gcode::SpindleDir;
pub use marlin::{marlin_checksum, MarlinExecuted, MARLIN_BUFSIZE, MARLIN_MAX_CMD_SIZE, MARLIN_START};

use axes::Kinematics;
use contact::ContactTracker;
use gcode::{fmt0, fmt3, AxisWords, GcState, Op};
use motion::{Block, Leg, LegKind};
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

/// A controller configuration that cannot run.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ControllerError {
    #[error("controller config: `{field}` {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("controller config: {0}")]
    Dynamics(#[from] SpecError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ControllerError {
    ControllerError::Invalid { field, problem: problem.into() }
}

/// Which serial protocol the simulated controller speaks.
///
/// grbl is the default so that every existing configuration keeps its behaviour; Marlin mode
/// exists so that the host's numbered-line/checksum/resend protocol can be tested against a
/// controller that really refuses bad lines (see `controller/marlin.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolMode {
    /// grbl 1.1h: character counting, `ok`/`error:N`, real-time bytes.
    #[default]
    Grbl,
    /// Marlin 2.x: `N<n> ...*<checksum>` lines, `Resend: N`, a 4-command queue.
    Marlin,
}

/// Configuration of the simulated controller. Defaults follow grbl 1.1h on an Uno.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// Axis rates, accelerations and travel of X Y Z (grbl $110-$132) in `xyz` and `xyzab`;
    /// in `joints`, the Cartesian workspace the needle tip must stay in (a soft limit).
    pub dynamics: MachineDynamics,
    /// The driven axes (`xyz` unless set): `xyzab` adds A/B, `joints` drives six joints.
    #[serde(default)]
    pub axes: MachineAxes,
    /// Simulated seconds per wall-clock second, used by the pty runner (1.0 = real time).
    pub time_scale: f64,
    /// Serial RX buffer, bytes (grbl: 128).
    pub rx_buffer_bytes: usize,
    /// Planner blocks, including the one executing (grbl on an Uno: 15).
    pub planner_blocks: usize,
    /// grbl's `LINE_BUFFER_SIZE`: a line keeping this many characters or more is `error:11`.
    pub line_buffer_chars: usize,
    /// Steps per mm of X Y Z (grbl $100-$102): positions are whole steps, as on a stepper.
    /// Rotary axes take theirs from [`MachineAxes`] (unused in `joints`).
    pub steps_per_mm: [f64; 3],
    /// Longest tip travel between two skin-contact samples, mm (any profile; a joint move is
    /// sampled finely enough through the forward kinematics to keep it).
    pub sample_step_mm: f64,
    /// grbl's `DWELL_TIME_STEP`: a G4 lasts a whole number of these (0 = exact).
    pub dwell_quantum_s: f64,
    /// grbl $20.
    pub soft_limits: bool,
    /// grbl $30/$31: the spindle speed reported is clamped to this range (grbl's defaults are
    /// 1000/0; the default here fits a rotary tattoo cartridge).
    pub spindle_max_rpm: f64,
    pub spindle_min_rpm: f64,
    /// grbl $10: bit 0 MPos (else WPos, identical here), bit 1 adds `Bf:` to status reports.
    pub status_report_mask: u8,
    /// Add grbl's periodic `|WCO:` and `|Ov:` fields to status reports, as grbl 1.1h does.
    pub report_wco_and_overrides: bool,
    /// Where the tool is at power-up: machine X Y Z, mm (`joints`: J1..J3, degrees).
    pub initial_position_mm: [f64; 3],
    /// The other axes at power-up, degrees: A B (`xyzab`) or J4..J6 (`joints`); ignored in `xyz`.
    #[serde(default)]
    pub initial_rotary_deg: [f64; 3],
    /// Faults to inject (none by default).
    pub faults: FaultPlan,
    /// Seed of the rate faults' random stream (a scenario's `seed`).
    #[serde(default)]
    pub fault_seed: u64,
    /// Serial protocol (grbl unless set).
    #[serde(default)]
    pub protocol: ProtocolMode,
    /// Marlin only: built with `REALTIME_REPORTING_COMMANDS` (and `EMERGENCY_PARSER`), so
    /// that `P000` (quick pause) and `R000` (resume) act as they arrive (see
    /// `controller/marlin.rs`). Off by default, as in Marlin's default configuration.
    #[serde(default)]
    pub marlin_realtime_commands: bool,
}

impl ControllerConfig {
    /// grbl defaults around the given dynamics; the tool starts at X min, Y 0 (or the nearest
    /// travel), Z max: parked high, like a machine homed to the top.
    pub fn new(dynamics: MachineDynamics) -> Self {
        // Not f64::clamp: it panics on an inverted range, which validate() reports instead.
        let y = if dynamics.y.min_mm > 0.0 {
            dynamics.y.min_mm
        } else if dynamics.y.max_mm < 0.0 {
            dynamics.y.max_mm
        } else {
            0.0
        };
        let initial_position_mm = [dynamics.x.min_mm, y, dynamics.z.max_mm];
        ControllerConfig {
            dynamics,
            time_scale: 1.0,
            rx_buffer_bytes: 128,
            planner_blocks: 15,
            line_buffer_chars: 80,
            steps_per_mm: [250.0; 3],
            sample_step_mm: 0.02,
            dwell_quantum_s: 0.05,
            soft_limits: true,
            spindle_max_rpm: 30_000.0,
            spindle_min_rpm: 0.0,
            status_report_mask: 1,
            report_wco_and_overrides: true,
            initial_position_mm,
            initial_rotary_deg: [0.0; 3],
            axes: MachineAxes::Xyz,
            faults: FaultPlan::default(),
            fault_seed: 0,
            protocol: ProtocolMode::Grbl,
            marlin_realtime_commands: false,
        }
    }

    /// The controller for a rig's axes profile: its dynamics, the A/B table (`xyzab`) or the
    /// arm (`joints`), with the default rotary accelerations and step counts (the rig gives
    /// rates only). The tool starts as [`ControllerConfig::new`] places it, A = B = 0
    /// (`xyzab`), or at the arm's `home_deg` (`joints`, where the compiled program starts).
    pub fn for_rig(rig: &Rig) -> Result<Self, ControllerError> {
        let mut cfg = ControllerConfig::new(rig.dynamics);
        match rig.axes {
            AxisProfile::Xyz => {}
            AxisProfile::Xyzab => {
                let five_axis = rig.five_axis.ok_or_else(|| {
                    invalid("axes", format!("rig `{}` is xyzab but has no [five_axis] table; add it", rig.name))
                })?;
                cfg.axes = MachineAxes::Xyzab {
                    five_axis,
                    rotary_accel_deg_per_s2: five_axis.accel_deg_per_s2,
                    rotary_steps_per_deg: DEFAULT_ROTARY_STEPS_PER_DEG,
                };
            }
            AxisProfile::Joints => {
                let arm = rig.arm.clone().ok_or_else(|| {
                    invalid("axes", format!("rig `{}` is joints but has no [arm] table; add it", rig.name))
                })?;
                let home = |i: usize| arm.home_deg.get(i).copied().unwrap_or(0.0);
                cfg.initial_position_mm = [home(0), home(1), home(2)];
                cfg.initial_rotary_deg = [home(3), home(4), home(5)];
                let joint_accel_deg_per_s2 = arm.accel_deg_per_s2;
                cfg.axes = MachineAxes::Joints {
                    arm,
                    flange_from_needle: rig.flange_from_needle,
                    joint_accel_deg_per_s2,
                    joint_steps_per_deg: DEFAULT_JOINT_STEPS_PER_DEG,
                };
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Machine position at power-up, all axes (unused ones 0).
    pub fn initial_machine_position(&self) -> MachinePos {
        let p = self.initial_position_mm;
        let r = self.initial_rotary_deg;
        let mut out = [p[0], p[1], p[2], r[0], r[1], r[2]];
        for v in out.iter_mut().skip(self.axes.count()) {
            *v = 0.0;
        }
        out
    }

    /// Where the needle tip is at power-up, base frame, mm: the machine X Y Z in `xyz` and
    /// `xyzab`, the forward kinematics of the initial joints in `joints` (e.g. where a plan's
    /// time estimate starts). `None` for a `joints` arm table without six joints.
    pub fn initial_tip_base_mm(&self) -> Option<[f64; 3]> {
        Kinematics::new(&self.axes).map(|k| k.needle(&self.initial_machine_position()).tip_mm)
    }

    pub fn validate(&self) -> Result<(), ControllerError> {
        self.dynamics.validate("controller config")?;
        self.axes.validate().map_err(|(field, problem)| invalid(field, problem))?;
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(invalid("time_scale", format!("is {}; use a positive number such as 1.0", self.time_scale)));
        }
        if !(1..=65_535).contains(&self.rx_buffer_bytes) {
            return Err(invalid("rx_buffer_bytes", format!("is {}; grbl uses 128", self.rx_buffer_bytes)));
        }
        if !(1..=255).contains(&self.planner_blocks) {
            return Err(invalid("planner_blocks", format!("is {}; grbl uses 15", self.planner_blocks)));
        }
        if !(2..=256).contains(&self.line_buffer_chars) {
            return Err(invalid("line_buffer_chars", format!("is {}; grbl uses 80", self.line_buffer_chars)));
        }
        if self.steps_per_mm.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(invalid(
                "steps_per_mm",
                format!("is {:?}; each must be positive (grbl default 250)", self.steps_per_mm),
            ));
        }
        if !(self.sample_step_mm.is_finite() && self.sample_step_mm > 0.0 && self.sample_step_mm <= 1.0) {
            return Err(invalid("sample_step_mm", format!("is {}; use (0, 1] mm, e.g. 0.02", self.sample_step_mm)));
        }
        if !(self.dwell_quantum_s.is_finite() && self.dwell_quantum_s >= 0.0) {
            return Err(invalid("dwell_quantum_s", format!("is {}; use 0.05 (grbl) or 0", self.dwell_quantum_s)));
        }
        let rpm_ok = |r: f64| r.is_finite() && r >= 0.0;
        if !(rpm_ok(self.spindle_max_rpm) && rpm_ok(self.spindle_min_rpm)) {
            return Err(invalid("spindle_max_rpm/spindle_min_rpm", "must be finite and non-negative"));
        }
        let p = self.initial_position_mm;
        let limits = self.axes.axis_limits(&self.dynamics);
        let start = self.initial_machine_position();
        let inside = limits.iter().zip(start).all(|(a, v)| v >= a.min_mm - 1e-9 && v <= a.max_mm + 1e-9);
        if p.iter().chain(&self.initial_rotary_deg).any(|v| !v.is_finite()) || !inside {
            return Err(invalid(
                "initial_position_mm/initial_rotary_deg",
                format!(
                    "is {p:?}/{:?}; it must lie inside the travel of every axis ({} profile)",
                    self.initial_rotary_deg,
                    self.axes.name()
                ),
            ));
        }
        self.faults.validate("controller config")?;
        Ok(())
    }
}

impl Default for ControllerConfig {
    /// The default simulated rig's dynamics (calibration/rig.toml).
    fn default() -> Self {
        ControllerConfig::new(Rig::default_sim().dynamics)
    }
}

/// Faults the controller injects on purpose, to test the host's recovery.
///
/// Each [`Fault`] is one event or one rate; `sim/faults/*.toml` scenarios
/// ([`crate::faults::FaultScenario`]) list them as `[[controller]]` tables. The rate faults
/// draw from one ChaCha8 stream seeded by [`ControllerConfig::fault_seed`], one draw per
/// received byte and rate fault in list order, so a run is reproduced exactly by the same
/// bytes, plan and seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// Highest grbl 1.1h alarm code (9: homing failed to find the switch).
pub const MAX_ALARM_CODE: u8 = 9;

impl FaultPlan {
    /// Checks every fault's parameters; `what` names the document in the error.
    pub fn validate(&self, what: &'static str) -> Result<(), SpecError> {
        for (i, fault) in self.faults.iter().enumerate() {
            let field = |name: &str| format!("controller[{i}].{name}");
            match *fault {
                Fault::ResetAtTime { time_s } => {
                    if !(time_s.is_finite() && time_s >= 0.0) {
                        return Err(SpecError::invalid(
                            what,
                            field("time_s"),
                            format!("is {time_s}; use a machine time >= 0 s"),
                        ));
                    }
                }
                Fault::ByteLoss { rate } | Fault::ByteCorruption { rate } => {
                    if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
                        return Err(SpecError::invalid(
                            what,
                            field("rate"),
                            format!("is {rate}; use a probability per byte in [0, 1], e.g. 0.001"),
                        ));
                    }
                }
                Fault::ResetBeforeLine { line }
                | Fault::DisconnectAtLine { line }
                | Fault::LostOk { line }
                | Fault::AlarmAtLine { line, .. } => {
                    if line == 0 {
                        return Err(SpecError::invalid(what, field("line"), "is 0; lines count from 1"));
                    }
                    if let Fault::AlarmAtLine { code, .. } = *fault {
                        if !(1..=MAX_ALARM_CODE).contains(&code) {
                            return Err(SpecError::invalid(
                                what,
                                field("code"),
                                format!("is {code}; grbl 1.1 alarms are 1-{MAX_ALARM_CODE} (2 = soft limit)"),
                            ));
                        }
                    }
                }
                Fault::FeedRateAtTime { time_s, percent } => {
                    if !(time_s.is_finite() && time_s >= 0.0) {
                        return Err(SpecError::invalid(
                            what,
                            field("time_s"),
                            format!("is {time_s}; use a machine time >= 0 s"),
                        ));
                    }
                    if !(10..=200).contains(&percent) {
                        return Err(SpecError::invalid(
                            what,
                            field("percent"),
                            format!("is {percent}; grbl and Marlin take 10-200 % (100 = as programmed)"),
                        ));
                    }
                }
                Fault::DropByte { .. } | Fault::CorruptByte { .. } => {}
            }
        }
        Ok(())
    }
}

/// One injected fault. The one-shot kinds fire at most once; the rate kinds act on every
/// received byte with their probability.
///
/// Lines are counted as the controller reads them (1-based, blank lines included), so
/// `line = N` is the N-th line of the stream the host sent since power-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Fault {
    /// A soft reset (as if 0x18 arrived, ALARM:3 if moving) instead of executing the
    /// `line`-th line the controller reads: that line is lost without a response, as are all
    /// lines buffered after it.
    ResetBeforeLine { line: u64 },
    /// A soft reset at machine time `time_s`.
    ResetAtTime { time_s: f64 },
    /// The `index`-th received byte (0-based, every byte counted) is lost on the wire.
    DropByte { index: u64 },
    /// The `index`-th received byte is XORed with `xor` before the controller sees it.
    CorruptByte { index: u64, xor: u8 },
    /// Each received byte is lost on the wire with probability `rate`.
    ByteLoss { rate: f64 },
    /// Each received byte has one random bit flipped with probability `rate`, before the
    /// controller sees it (so a flip can also forge a real-time byte, as on a real wire).
    ByteCorruption { rate: f64 },
    /// The link dies when the controller is about to read the `line`-th line: that line and
    /// everything after it is lost, nothing more is sent, and the pty runner closes its end
    /// (the host reads EOF/EIO or silence). Motion already planned runs to its end, as a
    /// grbl whose USB cable is pulled keeps executing its planner.
    DisconnectAtLine { line: u64 },
    /// The `line`-th line is executed but its response (`ok` or `error:N`) is never sent:
    /// a character-counting host waits forever for it.
    LostOk { line: u64 },
    /// At machine time `time_s` the feed rate percentage becomes `percent`, as an operator
    /// turning the feed override knob would set it: grbl's feed override (reported in `Ov:`),
    /// Marlin's `M220 S<percent>`. Moves planned from then on run at that percentage of their
    /// programmed feed (the simulator does not rescale blocks already planned).
    FeedRateAtTime { time_s: f64, percent: u16 },
    /// `ALARM:code` is raised instead of executing the `line`-th line, which gets no
    /// response. Code 2 (soft limit) stops under control like a real soft limit; code 1
    /// (hard limit) stops at once; both lock the controller until a reset ("Reset to
    /// continue"). Other codes stop at once and lock until `$X` or a reset.
    AlarmAtLine { line: u64, code: u8 },
}

/// A fault that fired, for the report. Rate faults appear once, at their first firing; their
/// totals are in [`ControllerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FiredFault {
    /// Index in [`FaultPlan::faults`].
    pub fault: usize,
    pub time_s: f64,
}

/// Machine state as grbl reports it in `<State|...>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MachineState {
    Idle,
    Run,
    /// `complete` is false while decelerating (`Hold:1`), true once stopped (`Hold:0`).
    Hold {
        complete: bool,
    },
    Alarm,
    Check,
}

/// Counters of the serial protocol, for tests and the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControllerStats {
    /// Line terminators that entered the RX buffer.
    pub lines_received: u64,
    pub oks_sent: u64,
    pub errors_sent: u64,
    /// Count of each `error:N` sent, by N.
    pub error_codes: BTreeMap<u8, u64>,
    /// Every `ALARM:N` raised, in order.
    pub alarms: Vec<u8>,
    /// Bytes lost because the RX buffer was full (a host flow-control bug, or a controller
    /// blocked long enough for an unchecked host to fill it).
    pub rx_overflows: u64,
    /// Bytes that arrived while more than `rx_buffer_bytes` bytes were unacknowledged: exactly
    /// the host's character-counting invariant, checked even when grbl would have coped.
    pub flow_violations: u64,
    /// Highest RX buffer fill seen, bytes.
    pub rx_high_water_bytes: usize,
    pub soft_resets: u64,
    /// `ok`s grbl prints for the line a soft reset interrupted (a dwell cut short, a motion
    /// line waiting for planner room), before its banner.
    pub oks_after_reset: u64,
    /// Bytes lost to the `byte_loss` and `drop_byte` faults.
    pub bytes_dropped_by_fault: u64,
    /// Bytes altered by the `byte_corruption` and `corrupt_byte` faults.
    pub bytes_corrupted_by_fault: u64,
    /// Responses withheld by the `lost_ok` fault.
    pub responses_withheld: u64,
    /// Bytes that arrived after a `disconnect_at_line` fault cut the link.
    pub bytes_after_disconnect: u64,
}

/// What a simulated run did: the needle's record and the protocol's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Needle entries with the cartridge running, in time order.
    pub entries: Vec<NeedleEntry>,
    /// Skin contacts with the cartridge off (M5 or S0): collisions, always a defect.
    pub unpowered_contacts: Vec<NeedleEntry>,
    pub machine_time_s: f64,
    /// The serial protocol's counters at the end of the run.
    pub stats: ControllerStats,
    pub faults_fired: Vec<FiredFault>,
    pub final_position_mm: [f64; 3],
    /// Final position of every driven axis (3, 5 or 6 values; degrees for rotary axes).
    #[serde(default)]
    pub final_machine_position: Vec<f64>,
    /// How the needle met the skin at each of `entries` (same index).
    #[serde(default)]
    pub entry_geometry: Vec<EntryGeometry>,
    /// The same for each of `unpowered_contacts`.
    #[serde(default)]
    pub unpowered_geometry: Vec<EntryGeometry>,
    /// How long the needle stayed in the skin at each of `entries`, and how long the cartridge
    /// ran meanwhile (same index): a pause with a running needle at depth shows here as a
    /// longer running time; one with the cartridge stopped does not.
    #[serde(default)]
    pub entry_timing: Vec<EntryTiming>,
    /// The same for each of `unpowered_contacts`.
    #[serde(default)]
    pub unpowered_timing: Vec<EntryTiming>,
    /// I/O problems of the runner (the pure controller never sets these).
    pub runner_errors: Vec<String>,
}

impl SimReport {
    /// The time at depth each of `entries` deposits pigment for, seconds, for the skin model:
    /// [`crate::skin::deposit_dwell_s`] of `entry_timing`.
    pub fn deposit_dwell_s(&self, session_dwell_s: f64) -> Vec<f64> {
        let timing: Vec<Option<EntryTiming>> = self.entry_timing.iter().copied().map(Some).collect();
        crate::skin::deposit_dwell_s(self.entries.len(), &timing, session_dwell_s)
    }

    /// [`crate::skin::DepositInput`]s for every entry, with [`SimReport::deposit_dwell_s`]:
    /// use instead of `DepositInput::for_session` so that a blown-out dot shows in the skin.
    pub fn deposit_inputs(
        &self,
        session_dwell_s: f64,
        session: u32,
        dilution_pct: f64,
    ) -> Vec<crate::skin::DepositInput> {
        self.entries
            .iter()
            .zip(self.deposit_dwell_s(session_dwell_s))
            .map(|(e, dwell_s)| crate::skin::DepositInput { entry: *e, dwell_s, session, dilution_pct })
            .collect()
    }
}

/// grbl's protocol-loop line filter: one line being assembled from raw bytes.
#[derive(Debug, Clone, Default)]
struct Assembler {
    chars: Vec<u8>,
    overflow: bool,
    paren: bool,
    semicolon: bool,
    raw_len: usize,
}

/// A complete line as grbl's parser receives it.
struct AssembledLine {
    text: Vec<u8>,
    overflow: bool,
    raw_len: usize,
}

impl Assembler {
    fn push(&mut self, c: u8, max_chars: usize) -> Option<AssembledLine> {
        self.raw_len += 1;
        if c == b'\n' || c == b'\r' {
            let done = std::mem::take(self);
            return Some(AssembledLine { text: done.chars, overflow: done.overflow, raw_len: done.raw_len });
        }
        if self.overflow || self.paren || self.semicolon {
            if c == b')' {
                self.paren = false;
            }
        } else if c <= b' ' || c == b'/' {
            // whitespace, control bytes (NUL included) and block delete are thrown away
        } else if c == b'(' {
            self.paren = true;
        } else if c == b';' {
            self.semicolon = true;
        } else if self.chars.len() >= max_chars - 1 {
            self.overflow = true;
        } else {
            self.chars.push(c.to_ascii_uppercase());
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.raw_len == 0
    }
}

/// The line the main loop is executing: its remaining physical effects.
struct LineExec {
    ops: VecDeque<Op>,
    raw_len: usize,
    /// The soft-limit check of the front `Line` op has passed.
    front_checked: bool,
}

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

    // ----- time -------------------------------------------------------------------------

    fn next_event_s(&self) -> Option<f64> {
        let mut next: Option<f64> = None;
        let mut consider = |t: f64| next = Some(next.map_or(t, |n: f64| n.min(t)));
        if let Some(leg) = self.leg {
            consider(leg.end_s());
        }
        if let Some(Dwell::Running { end_s }) = self.dwell {
            consider(end_s);
        }
        for (i, f) in self.cfg.faults.faults.iter().enumerate() {
            if let (Fault::ResetAtTime { time_s } | Fault::FeedRateAtTime { time_s, .. }, false) =
                (f, self.fault_fired[i])
            {
                consider(time_s.max(self.now_s));
            }
        }
        next
    }

    /// Runs every internal event up to `now_s` at its own time, then settles at `now_s`.
    /// Returns the time reached (time never goes backwards).
    fn advance_to(&mut self, now_s: f64) -> f64 {
        let target = if now_s.is_finite() { now_s.max(self.now_s) } else { self.now_s };
        // Bounded: each event completes a leg, a dwell or a fault; a run has far fewer.
        for _ in 0..10_000_000u32 {
            let Some(te) = self.next_event_s() else { break };
            if te > target + TIME_EPS_S {
                break;
            }
            let te = te.max(self.now_s);
            self.advance_motion(te);
            self.now_s = te;
            self.fire_timed_faults(te);
            self.pump(te);
        }
        self.advance_motion(target);
        self.now_s = target;
        self.pump(target);
        target
    }

    fn fire_timed_faults(&mut self, t: f64) {
        for i in 0..self.cfg.faults.faults.len() {
            match (self.cfg.faults.faults[i], self.fault_fired[i]) {
                (Fault::ResetAtTime { time_s }, false) if time_s <= t + TIME_EPS_S => {
                    self.mark_fired(i, t);
                    self.soft_reset(t);
                }
                (Fault::FeedRateAtTime { time_s, percent }, false) if time_s <= t + TIME_EPS_S => {
                    self.mark_fired(i, t);
                    self.set_feed_rate_percent(percent);
                }
                _ => {}
            }
        }
    }

    /// A rate fault is reported once, at its first firing.
    fn mark_rate_fired(&mut self, i: usize, t: f64) {
        if !self.fault_fired[i] {
            self.mark_fired(i, t);
        }
    }

    fn mark_fired(&mut self, i: usize, t: f64) {
        self.fault_fired[i] = true;
        self.faults_fired.push(FiredFault { fault: i, time_s: t });
    }

    fn powered(&self) -> bool {
        self.spindle != SpindleDir::Off && self.spindle_rpm > 0.0
    }

    /// Integrates motion (and skin contact) from `motion_time_s` to `t`, completing legs.
    fn advance_motion(&mut self, t: f64) {
        for _ in 0..1_000_000u32 {
            let (Some(block), Some(leg)) = (self.blocks.front().copied(), self.leg) else { break };
            let end = leg.end_s();
            let t_to = t.min(end);
            if t_to > self.motion_time_s {
                let s_from = leg.s_at(self.motion_time_s);
                let s_to = if t_to >= end { leg.s0_mm + leg.length_mm() } else { leg.s_at(t_to) };
                let powered = self.powered();
                let kin = &self.kin;
                self.contacts.sample_needle_path(
                    self.skin.as_ref(),
                    |s| kin.needle(&block.point_at(s)),
                    |s| leg.time_at_s(s),
                    s_from,
                    s_to,
                    block.sample_step,
                    powered,
                );
                self.motion_time_s = t_to;
            }
            if end <= t + TIME_EPS_S {
                self.motion_time_s = self.motion_time_s.max(end);
                self.complete_leg(block, leg, end);
            } else {
                break;
            }
        }
        self.motion_time_s = self.motion_time_s.max(t);
    }

    fn complete_leg(&mut self, block: Block, leg: Leg, end_s: f64) {
        self.leg = None;
        match leg.kind {
            LegKind::Trapezoid { .. } => {
                self.blocks.pop_front();
                self.rest_mm = block.end_mm;
                self.s_held_mm = 0.0;
                if self.state == MachineState::Run {
                    self.start_front_leg(end_s);
                }
            }
            LegKind::Decel { .. } => {
                self.s_held_mm = leg.s0_mm + leg.length_mm();
                self.complete_hold(end_s);
            }
        }
    }

    /// Starts (or resumes, from rest) the front block at time `t`; Idle when none is left.
    fn start_front_leg(&mut self, t: f64) {
        while let Some(block) = self.blocks.front().copied() {
            let remaining = block.length_mm - self.s_held_mm;
            if remaining <= 1e-9 {
                self.blocks.pop_front();
                self.rest_mm = block.end_mm;
                self.s_held_mm = 0.0;
                continue;
            }
            self.leg = Some(Leg {
                kind: LegKind::Trapezoid { len_mm: remaining, v: block.speed_mm_s, a: block.accel_mm_s2 },
                s0_mm: self.s_held_mm,
                t0_s: t,
            });
            self.motion_time_s = t;
            self.state = MachineState::Run;
            return;
        }
        self.state = MachineState::Idle;
    }

    fn complete_hold(&mut self, t: f64) {
        self.leg = None;
        if let Some(block) = self.blocks.front().copied() {
            if self.s_held_mm >= block.length_mm - 1e-9 {
                self.blocks.pop_front();
                self.rest_mm = block.end_mm;
                self.s_held_mm = 0.0;
            }
        }
        self.state = MachineState::Hold { complete: true };
        if self.soft_limit_pending {
            self.soft_limit_alarm(t);
            return;
        }
        self.suspend_spindle_step(t);
    }

    // ----- real-time commands -----------------------------------------------------------

    fn handle_byte(&mut self, b: u8, t: f64) {
        let index = self.bytes_seen;
        self.bytes_seen += 1;
        if self.disconnected {
            self.stats.bytes_after_disconnect += 1;
            return;
        }
        let mut b = b;
        for i in 0..self.cfg.faults.faults.len() {
            match self.cfg.faults.faults[i] {
                Fault::DropByte { index: n } if n == index && !self.fault_fired[i] => {
                    self.mark_fired(i, t);
                    self.stats.bytes_dropped_by_fault += 1;
                    return;
                }
                Fault::CorruptByte { index: n, xor } if n == index && !self.fault_fired[i] => {
                    self.mark_fired(i, t);
                    self.stats.bytes_corrupted_by_fault += 1;
                    b ^= xor;
                }
                // The guards draw from the stream: exactly one draw per byte and rate fault.
                Fault::ByteLoss { rate } if self.fault_rng.random::<f64>() < rate => {
                    self.mark_rate_fired(i, t);
                    self.stats.bytes_dropped_by_fault += 1;
                    return;
                }
                Fault::ByteCorruption { rate } if self.fault_rng.random::<f64>() < rate => {
                    self.mark_rate_fired(i, t);
                    self.stats.bytes_corrupted_by_fault += 1;
                    b ^= 1u8 << self.fault_rng.random_range(0..8u32);
                }
                _ => {}
            }
        }
        if self.marlin.is_some() {
            self.marlin_byte(b, t);
            return;
        }
        match b {
            0x18 => self.soft_reset(t),
            b'?' => self.status_report(),
            b'!' => self.feed_hold(t),
            b'~' => self.cycle_start(t),
            REALTIME_SPINDLE_STOP => self.spindle_stop_override(t),
            0x80..=0xFF => {} // other extended real-time commands (overrides, door): not simulated
            _ => {
                if self.rx.len() >= self.cfg.rx_buffer_bytes {
                    self.stats.rx_overflows += 1;
                    return;
                }
                self.rx.push_back(b);
                self.stats.rx_high_water_bytes = self.stats.rx_high_water_bytes.max(self.rx.len());
                self.unacked_bytes += 1;
                if self.unacked_bytes > self.cfg.rx_buffer_bytes {
                    self.stats.flow_violations += 1;
                }
                if b == b'\n' || b == b'\r' {
                    self.stats.lines_received += 1;
                }
            }
        }
        self.pump(t);
    }

    fn feed_hold(&mut self, t: f64) {
        match self.state {
            MachineState::Run => {
                let (Some(block), Some(leg)) = (self.blocks.front().copied(), self.leg) else {
                    self.complete_hold(t);
                    return;
                };
                let v0 = leg.speed_at(t);
                let s = leg.s_at(t);
                self.state = MachineState::Hold { complete: false };
                if v0 <= 1e-9 {
                    self.s_held_mm = s;
                    self.complete_hold(t);
                } else {
                    self.leg = Some(Leg { kind: LegKind::Decel { v0, a: block.accel_mm_s2 }, s0_mm: s, t0_s: t });
                    self.motion_time_s = t;
                }
            }
            MachineState::Idle => {
                self.state = MachineState::Hold { complete: true };
                if let Some(Dwell::Running { end_s }) = self.dwell {
                    self.dwell = Some(Dwell::Paused { remaining_s: (end_s - t).max(0.0) });
                }
                self.suspend_spindle_step(t);
            }
            _ => {}
        }
    }

    /// 0x9E, grbl's `EXEC_SPINDLE_OVR_STOP`: allowed only in Hold (either sub-state). The
    /// first initiates the stop (acted on once the hold is complete), a second one while
    /// stopped restores the spindle without resuming; ignored in any other state.
    fn spindle_stop_override(&mut self, t: f64) {
        if !matches!(self.state, MachineState::Hold { .. }) {
            return;
        }
        match self.spindle_stop {
            SpindleStopOvr::Disabled => self.spindle_stop = SpindleStopOvr::Initiate,
            SpindleStopOvr::Enabled { .. } => {
                self.restore_spindle(t);
                return;
            }
            SpindleStopOvr::Initiate => {}
        }
        self.suspend_spindle_step(t);
    }

    /// The feed hold manager of grbl's `protocol_exec_rt_suspend`, once the hold is complete:
    /// an initiated spindle stop de-energises the spindle (remembering how it ran), or clears
    /// itself when the spindle is already off.
    fn suspend_spindle_step(&mut self, t: f64) {
        if self.state != (MachineState::Hold { complete: true }) || self.spindle_stop != SpindleStopOvr::Initiate {
            return;
        }
        if self.spindle == SpindleDir::Off {
            self.spindle_stop = SpindleStopOvr::Disabled;
            return;
        }
        self.spindle_stop = SpindleStopOvr::Enabled { dir: self.spindle, rpm: self.spindle_rpm };
        self.spindle = SpindleDir::Off;
        self.spindle_rpm = 0.0;
        self.contacts.power_changed(t, false);
        self.ovr_counter = 0; // grbl's spindle_set_state: report the change at once
    }

    /// `SPINDLE_STOP_OVR_RESTORE`: the spindle runs again as it did before the stop, with
    /// grbl's feedback message; the override is cleared.
    fn restore_spindle(&mut self, t: f64) {
        if let SpindleStopOvr::Enabled { dir, rpm } = self.spindle_stop {
            self.emit(MSG_SPINDLE_RESTORE);
            self.spindle = dir;
            self.spindle_rpm = rpm;
            self.contacts.power_changed(t, self.powered());
            self.ovr_counter = 0;
        }
        self.spindle_stop = SpindleStopOvr::Disabled;
    }

    fn cycle_start(&mut self, t: f64) {
        if self.state != (MachineState::Hold { complete: true }) {
            return; // grbl ignores cycle start unless a hold has completed
        }
        // `SPINDLE_STOP_OVR_RESTORE_CYCLE`: restore the spindle first, then resume.
        if self.spindle_stop != SpindleStopOvr::Disabled {
            self.restore_spindle(t);
        }
        if let Some(Dwell::Paused { remaining_s }) = self.dwell {
            self.dwell = Some(Dwell::Running { end_s: t + remaining_s });
        }
        self.start_front_leg(t);
    }

    /// Position rounded to whole steps, as a stepper machine can only be.
    fn step_rounded(&self, p: MachinePos) -> MachinePos {
        let spu = self.settings.steps_per_unit();
        std::array::from_fn(|i| (p[i] * spu[i]).round() / spu[i])
    }

    /// Soft limits: every driven axis inside its travel, and in `joints` the tip inside the
    /// Cartesian workspace (the rig's dynamics table).
    fn within_limits(&self, p: &MachinePos) -> bool {
        let axes_ok = self.limits[..self.axis_words.count]
            .iter()
            .zip(p)
            .all(|(a, v)| *v >= a.min_mm - 1e-9 && *v <= a.max_mm + 1e-9);
        axes_ok && (!self.kin.tip_workspace_applies() || self.cfg.dynamics.within_travel(self.kin.needle(p).tip_mm))
    }

    /// grbl's `mc_reset` followed by the re-initialisation in `main()`.
    ///
    /// The line the main loop was executing (a dwell or M-code waiting in
    /// `protocol_buffer_synchronize`, a dwell counting down, a motion line waiting in
    /// `mc_line` for planner room, the line a soft limit stopped) returns on `sys.abort` and
    /// `gc_execute_line` still reports `STATUS_OK`: grbl prints that line's `ok` after the
    /// `ALARM:3` of a reset in motion and before the banner (protocol.c, motion_control.c,
    /// gcode.c of grbl 1.1h). A host must not read that `ok` as "the dwell ran".
    fn soft_reset(&mut self, t: f64) {
        let in_motion = matches!(self.state, MachineState::Run | MachineState::Hold { complete: false });
        let was_alarm = self.state == MachineState::Alarm;
        let interrupted = if self.marlin.is_none() { self.current.take() } else { None };
        let p = self.step_rounded(self.machine_pos());
        self.blocks.clear();
        self.leg = None;
        self.s_held_mm = 0.0;
        self.motion_time_s = t;
        self.rest_mm = p;
        self.planner_end_mm = p;
        self.dwell = None;
        self.current = None;
        self.rx.clear();
        self.asm = Assembler::default();
        self.unacked_bytes = 0;
        self.spindle = SpindleDir::Off;
        self.spindle_rpm = 0.0;
        self.spindle_stop = SpindleStopOvr::Disabled;
        self.contacts.power_changed(t, false);
        self.feed_pct = 100; // grbl's overrides and Marlin's feedrate_percentage start at 100
        self.steppers_suspended = false;
        self.critical = false;
        self.soft_limit_pending = false;
        self.gc = GcState::new(p);
        self.wco_counter = 0;
        self.ovr_counter = 0;
        self.stats.soft_resets += 1;
        if self.marlin.is_some() {
            self.marlin_reset();
            return;
        }
        if in_motion {
            self.alarm(codes::ALARM_ABORT_CYCLE);
        }
        if let Some(line) = interrupted {
            // (the host's count of this line's bytes is already reset above)
            self.respond(Ok(()), line.raw_len);
            self.stats.oks_after_reset += 1;
        }
        self.state = if in_motion || was_alarm { MachineState::Alarm } else { MachineState::Idle };
        self.send_raw(GRBL_BANNER.as_bytes());
        if self.state == MachineState::Alarm {
            self.emit(MSG_ALARM_LOCK);
        }
    }

    /// The `disconnect_at_line` fault: the line being read and everything buffered is lost,
    /// no further byte is taken or sent; the planner runs out on its own.
    fn disconnect(&mut self) {
        self.disconnected = true;
        self.rx.clear();
        self.asm = Assembler::default();
        self.unacked_bytes = 0;
    }

    /// True once a `disconnect_at_line` fault has cut the link: the pty runner then closes
    /// its end of the pty.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    /// The `alarm_at_line` fault, raised instead of executing a line (no response to it).
    fn injected_alarm(&mut self, code: u8, raw_len: usize, t: f64) {
        self.unacked_bytes = self.unacked_bytes.saturating_sub(raw_len);
        if code == codes::ALARM_SOFT_LIMIT {
            self.soft_limit_violation(t);
            return;
        }
        // Any other alarm stops the machine where it is, as grbl's mc_reset does.
        self.stop_in_place(t);
        self.state = MachineState::Alarm;
        self.alarm(code);
        if code == codes::ALARM_HARD_LIMIT {
            self.critical = true;
            self.emit(MSG_CRITICAL);
        }
    }

    /// Stops the machine where it is now (step-rounded), as grbl's `mc_reset` does on an
    /// alarm: the planner and any dwell are dropped and the spindle is off.
    fn stop_in_place(&mut self, t: f64) {
        let p = self.step_rounded(self.machine_pos());
        self.blocks.clear();
        self.leg = None;
        self.s_held_mm = 0.0;
        self.motion_time_s = t;
        self.rest_mm = p;
        self.planner_end_mm = p;
        self.dwell = None;
        self.spindle = SpindleDir::Off;
        self.spindle_rpm = 0.0;
        self.spindle_stop = SpindleStopOvr::Disabled;
        self.contacts.power_changed(t, false);
    }

    fn alarm(&mut self, code: u8) {
        self.emit(&format!("ALARM:{code}"));
        self.stats.alarms.push(code);
    }

    fn soft_limit_violation(&mut self, t: f64) {
        if self.state == MachineState::Run {
            self.soft_limit_pending = true;
            self.feed_hold(t); // a controlled stop first, so the position is kept
        } else {
            self.soft_limit_alarm(t);
        }
    }

    fn soft_limit_alarm(&mut self, t: f64) {
        self.stop_in_place(t);
        self.soft_limit_pending = false;
        self.state = MachineState::Alarm;
        self.critical = true;
        self.alarm(codes::ALARM_SOFT_LIMIT);
        self.emit(MSG_CRITICAL);
    }

    fn status_report(&mut self) {
        let p = self.step_rounded(self.machine_pos());
        let state = match self.state {
            MachineState::Idle => "Idle",
            MachineState::Run => "Run",
            MachineState::Hold { complete: true } => "Hold:0",
            MachineState::Hold { complete: false } => "Hold:1",
            MachineState::Alarm => "Alarm",
            MachineState::Check => "Check",
        };
        let mask = self.settings.status_report_mask();
        // grbl prints one value per configured axis.
        let coords: Vec<String> = p[..self.axis_words.count].iter().map(|v| fmt3(*v)).collect();
        let mut s = format!("<{state}|{}:{}", if mask & 1 != 0 { "MPos" } else { "WPos" }, coords.join(","));
        if mask & 2 != 0 {
            let blocks_free = self.cfg.planner_blocks.saturating_sub(self.blocks.len());
            let rx_free = self.cfg.rx_buffer_bytes.saturating_sub(self.rx.len());
            s.push_str(&format!("|Bf:{blocks_free},{rx_free}"));
        }
        let speed_mm_per_min = self.leg.map_or(0.0, |l| l.speed_at(self.motion_time_s) * 60.0);
        s.push_str(&format!("|FS:{},{}", fmt0(speed_mm_per_min), fmt0(self.spindle_rpm)));
        if self.cfg.report_wco_and_overrides {
            let busy = matches!(self.state, MachineState::Run | MachineState::Hold { .. });
            if self.wco_counter > 0 {
                self.wco_counter -= 1;
            } else {
                self.wco_counter = if busy { 29 } else { 9 };
                if self.ovr_counter == 0 {
                    self.ovr_counter = 1;
                }
                s.push_str("|WCO:0.000,0.000,0.000");
            }
            if self.ovr_counter > 0 {
                self.ovr_counter -= 1;
            } else {
                self.ovr_counter = if busy { 19 } else { 9 };
                s.push_str(&format!("|Ov:{},100,100", self.feed_pct));
                match self.spindle {
                    SpindleDir::Cw => s.push_str("|A:S"),
                    SpindleDir::Ccw => s.push_str("|A:C"),
                    SpindleDir::Off => {}
                }
            }
        }
        s.push('>');
        self.emit(&s);
    }

    // ----- the main loop ----------------------------------------------------------------

    fn emit(&mut self, line: &str) {
        self.send_raw(line.as_bytes());
        // Marlin ends lines with `\n` alone; grbl with `\r\n`.
        self.send_raw(if self.marlin.is_some() { b"\n" } else { b"\r\n" });
    }

    /// Every byte to the host goes through here, so that a cut link sends nothing.
    fn send_raw(&mut self, bytes: &[u8]) {
        if !self.disconnected {
            self.tx.extend_from_slice(bytes);
        }
    }

    /// Sends the line's response and releases its bytes from the host's count.
    fn respond(&mut self, result: Result<(), u8>, raw_len: usize) {
        self.unacked_bytes = self.unacked_bytes.saturating_sub(raw_len);
        let lost = self.one_shot_line_fault(|f| matches!(f, Fault::LostOk { .. }));
        if let Some(i) = lost {
            let t = self.now_s;
            self.mark_fired(i, t);
            self.stats.responses_withheld += 1;
            return;
        }
        match result {
            Ok(()) => {
                self.emit("ok");
                self.stats.oks_sent += 1;
            }
            Err(code) => {
                self.emit(&format!("error:{code}"));
                self.stats.errors_sent += 1;
                *self.stats.error_codes.entry(code).or_insert(0) += 1;
            }
        }
    }

    /// Index of the first unfired fault matching `kind` whose `line` is the line being read.
    fn one_shot_line_fault(&self, kind: impl Fn(&Fault) -> bool) -> Option<usize> {
        self.cfg.faults.faults.iter().enumerate().position(|(i, f)| {
            let line = match *f {
                Fault::ResetBeforeLine { line }
                | Fault::DisconnectAtLine { line }
                | Fault::LostOk { line }
                | Fault::AlarmAtLine { line, .. } => line,
                _ => return false,
            };
            !self.fault_fired[i] && line == self.lines_read && kind(f)
        })
    }

    /// grbl's main loop: runs the current line as far as it can, then reads and runs further
    /// lines, until something blocks (planner full, sync, dwell, hold, critical alarm).
    fn pump(&mut self, t: f64) {
        if self.marlin.is_some() {
            self.marlin_pump(t);
            return;
        }
        loop {
            if self.critical || matches!(self.state, MachineState::Hold { .. }) {
                return;
            }
            if self.current.is_some() {
                if !self.step_current(t) {
                    return;
                }
                continue;
            }
            let Some(line) = self.read_line() else { return };
            self.start_line(line, t);
        }
    }

    fn read_line(&mut self) -> Option<AssembledLine> {
        while let Some(b) = self.rx.pop_front() {
            if let Some(line) = self.asm.push(b, self.cfg.line_buffer_chars) {
                return Some(line);
            }
        }
        None
    }

    /// Counts a line read and plays the line-numbered faults that stop it from being
    /// executed (a disconnect or a reset before it); `true` when one fired.
    pub(crate) fn line_read_faults(&mut self, t: f64) -> bool {
        self.lines_read += 1;
        if let Some(i) = self.one_shot_line_fault(|f| matches!(f, Fault::DisconnectAtLine { .. })) {
            self.mark_fired(i, t);
            self.disconnect();
            return true;
        }
        if let Some(i) = self.one_shot_line_fault(|f| matches!(f, Fault::ResetBeforeLine { .. })) {
            self.mark_fired(i, t);
            self.soft_reset(t);
            return true;
        }
        false
    }

    fn start_line(&mut self, line: AssembledLine, t: f64) {
        if self.line_read_faults(t) {
            return;
        }
        if let Some(i) = self.one_shot_line_fault(|f| matches!(f, Fault::AlarmAtLine { .. })) {
            self.mark_fired(i, t);
            if let Fault::AlarmAtLine { code, .. } = self.cfg.faults.faults[i] {
                self.injected_alarm(code, line.raw_len, t);
            }
            return;
        }
        if line.overflow {
            self.respond(Err(codes::ERROR_OVERFLOW), line.raw_len);
        } else if line.text.is_empty() {
            self.respond(Ok(()), line.raw_len);
        } else if line.text[0] == b'$' {
            let (result, then_reset) = self.system_command(&line.text);
            self.respond(result, line.raw_len);
            if then_reset {
                self.soft_reset(t);
            }
        } else if self.state == MachineState::Alarm {
            self.respond(Err(codes::ERROR_SYSTEM_GC_LOCK), line.raw_len);
        } else {
            match gcode::execute_line(&mut self.gc, &line.text, self.axis_words) {
                Err(code) => self.respond(Err(code), line.raw_len),
                Ok(ops) if ops.is_empty() => self.respond(Ok(()), line.raw_len),
                Ok(ops) => {
                    self.current = Some(LineExec { ops: ops.into(), raw_len: line.raw_len, front_checked: false });
                }
            }
        }
    }

    /// Executes the current line's ops in order. Returns true when the line has finished
    /// (its `ok` is sent), false when it is blocked.
    fn step_current(&mut self, t: f64) -> bool {
        let Some(mut exec) = self.current.take() else { return true };
        let check_mode = self.state == MachineState::Check;
        loop {
            let Some(op) = exec.ops.front().cloned() else {
                self.respond(Ok(()), exec.raw_len);
                return true;
            };
            let synchronising = !matches!(op, Op::Line { .. });
            if synchronising && !check_mode && !self.blocks.is_empty() {
                self.current = Some(exec);
                return false; // protocol_buffer_synchronize: wait for the planner to drain
            }
            match op {
                Op::Spindle { dir, rpm } => {
                    if !check_mode {
                        self.set_spindle(dir, rpm, t);
                    }
                }
                Op::Coolant => {}
                Op::Dwell { seconds } => {
                    if !check_mode {
                        match self.dwell {
                            None => {
                                // Marlin dwells exactly; grbl in whole DWELL_TIME_STEPs.
                                let q = if self.marlin.is_some() { 0.0 } else { self.cfg.dwell_quantum_s };
                                let d = executed_dwell_s(seconds, q);
                                if d > 0.0 {
                                    self.dwell = Some(Dwell::Running { end_s: t + d });
                                    self.current = Some(exec);
                                    return false;
                                }
                            }
                            Some(Dwell::Running { end_s }) if end_s <= t + TIME_EPS_S => self.dwell = None,
                            Some(_) => {
                                self.current = Some(exec);
                                return false;
                            }
                        }
                    }
                }
                Op::Pause => {
                    exec.ops.pop_front();
                    if !check_mode {
                        self.state = MachineState::Hold { complete: true };
                        self.current = Some(exec);
                        return false;
                    }
                    continue;
                }
                Op::ProgramEnd => {
                    if !check_mode {
                        self.set_spindle(SpindleDir::Off, 0.0, t);
                    }
                    self.emit("[MSG:Pgm End]");
                }
                Op::Line { target_mm, feed_mm_per_min } => {
                    // Marlin's software endstops clamp the target silently instead of alarming.
                    let target_mm = if self.marlin.is_some() {
                        marlin::clamp_to_travel(&self.limits[..self.axis_words.count], target_mm)
                    } else {
                        target_mm
                    };
                    if !exec.front_checked && self.marlin.is_none() {
                        if self.settings.soft_limits() && !self.within_limits(&target_mm) {
                            self.current = Some(exec);
                            self.soft_limit_violation(t);
                            return false;
                        }
                        exec.front_checked = true;
                    }
                    if !check_mode {
                        if self.blocks.len() >= self.cfg.planner_blocks {
                            self.current = Some(exec);
                            return false; // planner full: the ok waits for room
                        }
                        let feed = feed_mm_per_min.map(|f| f * f64::from(self.feed_pct) / 100.0);
                        self.queue_block(target_mm, feed, t);
                    }
                    exec.front_checked = false;
                }
            }
            exec.ops.pop_front();
        }
    }

    fn set_spindle(&mut self, dir: SpindleDir, rpm: f64, t: f64) {
        self.spindle = dir;
        let (max, min) = (self.settings.rpm_max(), self.settings.rpm_min());
        // grbl's spindle_compute_pwm_value, for the speed it reports.
        self.spindle_rpm = match dir {
            SpindleDir::Off => 0.0,
            _ if min >= max || rpm >= max => max,
            _ if rpm <= min => {
                if rpm == 0.0 {
                    0.0
                } else {
                    min
                }
            }
            _ => rpm,
        };
        self.contacts.power_changed(t, self.powered());
    }

    fn queue_block(&mut self, target_mm: MachinePos, feed_mm_per_min: Option<f64>, t: f64) {
        let end = self.step_rounded(target_mm);
        let limits = &self.limits[..self.axis_words.count];
        let step = self.cfg.sample_step_mm;
        let Some(block) = Block::new(&self.kin, limits, self.planner_end_mm, end, feed_mm_per_min, step) else {
            return; // empty block: nothing to move
        };
        self.planner_end_mm = end;
        self.blocks.push_back(block);
        if self.state == MachineState::Idle && self.blocks.len() == 1 && !self.steppers_suspended {
            self.s_held_mm = 0.0;
            self.start_front_leg(t);
        }
    }

    // ----- `$` system commands -----------------------------------------------------------

    /// grbl's `system_execute_line`. Returns the status and whether a reset must follow the
    /// response (`$C` leaving check mode, `$RST=`).
    fn system_command(&mut self, line: &[u8]) -> (Result<(), u8>, bool) {
        let idle_or_alarm = matches!(self.state, MachineState::Idle | MachineState::Alarm);
        match line.get(1).copied() {
            None => {
                self.emit("[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]");
                (Ok(()), false)
            }
            Some(b'J') => {
                if self.state != MachineState::Idle {
                    return (Err(codes::ERROR_IDLE_ERROR), false);
                }
                if line.get(2) != Some(&b'=') {
                    return (Err(codes::ERROR_INVALID_STATEMENT), false);
                }
                (Err(codes::ERROR_UNSUPPORTED_COMMAND), false) // jogging is not simulated
            }
            Some(c @ (b'$' | b'G' | b'C' | b'X')) => {
                if line.len() != 2 {
                    return (Err(codes::ERROR_INVALID_STATEMENT), false);
                }
                match c {
                    b'$' => {
                        if matches!(self.state, MachineState::Run | MachineState::Hold { .. }) {
                            return (Err(codes::ERROR_IDLE_ERROR), false);
                        }
                        for l in self.settings.report_lines() {
                            self.emit(&l);
                        }
                        (Ok(()), false)
                    }
                    b'G' => {
                        let modes = self.gc.modes_report();
                        self.emit(&modes);
                        (Ok(()), false)
                    }
                    b'C' => {
                        if self.state == MachineState::Check {
                            self.emit("[MSG:Disabled]");
                            (Ok(()), true)
                        } else if self.state != MachineState::Idle {
                            (Err(codes::ERROR_IDLE_ERROR), false)
                        } else {
                            self.state = MachineState::Check;
                            self.emit("[MSG:Enabled]");
                            (Ok(()), false)
                        }
                    }
                    _ => {
                        if self.state == MachineState::Alarm {
                            self.emit("[MSG:Caution: Unlocked]");
                            self.state = MachineState::Idle;
                        }
                        (Ok(()), false)
                    }
                }
            }
            Some(c) => {
                if !idle_or_alarm {
                    return (Err(codes::ERROR_IDLE_ERROR), false);
                }
                match c {
                    b'#' => {
                        if line.len() != 2 {
                            return (Err(codes::ERROR_INVALID_STATEMENT), false);
                        }
                        for wcs in 54..=59 {
                            self.emit(&format!("[G{wcs}:0.000,0.000,0.000]"));
                        }
                        self.emit("[G28:0.000,0.000,0.000]");
                        self.emit("[G30:0.000,0.000,0.000]");
                        self.emit("[G92:0.000,0.000,0.000]");
                        self.emit("[TLO:0.000]");
                        self.emit("[PRB:0.000,0.000,0.000:0]");
                        (Ok(()), false)
                    }
                    b'H' => (Err(codes::ERROR_SETTING_DISABLED), false), // homing disabled ($22=0)
                    b'S' => {
                        if line == b"$SLP" {
                            (Err(codes::ERROR_UNSUPPORTED_COMMAND), false) // sleep is not simulated
                        } else {
                            (Err(codes::ERROR_INVALID_STATEMENT), false)
                        }
                    }
                    b'I' => {
                        if line.len() == 2 {
                            let ver = format!("[VER:{GRBL_BUILD}:{}]", self.build_info);
                            let opt = format!("[OPT:V,{},{}]", self.cfg.planner_blocks, self.cfg.rx_buffer_bytes);
                            self.emit(&ver);
                            self.emit(&opt);
                            (Ok(()), false)
                        } else if line[2] != b'=' {
                            (Err(codes::ERROR_INVALID_STATEMENT), false)
                        } else {
                            self.build_info = String::from_utf8_lossy(&line[3..]).into_owned();
                            (Ok(()), false)
                        }
                    }
                    b'R' => {
                        if line.len() != 6 || &line[2..5] != b"ST=" {
                            return (Err(codes::ERROR_INVALID_STATEMENT), false);
                        }
                        match line[5] {
                            b'$' | b'*' => {
                                self.settings = Settings::from_config(&self.cfg);
                                self.limits = self.settings.axis_limits();
                            }
                            b'#' => {} // offsets are always zero
                            _ => return (Err(codes::ERROR_INVALID_STATEMENT), false),
                        }
                        self.emit("[MSG:Restoring defaults]");
                        (Ok(()), true)
                    }
                    b'N' => {
                        if line.len() == 2 {
                            self.emit("$N0=");
                            self.emit("$N1=");
                            (Ok(()), false)
                        } else if self.state != MachineState::Idle {
                            (Err(codes::ERROR_IDLE_ERROR), false)
                        } else {
                            (Err(codes::ERROR_UNSUPPORTED_COMMAND), false) // startup blocks are not simulated
                        }
                    }
                    _ => (self.store_setting(line), false),
                }
            }
        }
    }

    /// `$n=value`, parsed as grbl does.
    fn store_setting(&mut self, line: &[u8]) -> Result<(), u8> {
        let mut i = 1;
        let n = gcode::read_float(line, &mut i).ok_or(codes::ERROR_BAD_NUMBER_FORMAT)?;
        if line.get(i) != Some(&b'=') {
            return Err(codes::ERROR_INVALID_STATEMENT);
        }
        i += 1;
        let value = gcode::read_float(line, &mut i).ok_or(codes::ERROR_BAD_NUMBER_FORMAT)?;
        if i != line.len() || n > 255.0 {
            return Err(codes::ERROR_INVALID_STATEMENT);
        }
        self.settings.store(n, value)?;
        self.limits = self.settings.axis_limits();
        Ok(())
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

//! What a simulated controller is built from: its dynamics and axes (from a rig), protocol,
//! buffers, timing and fault plan, checked before it runs.

use serde::{Deserialize, Serialize};
use smp_core::kinematics::MachineDynamics;
use smp_core::rig::{AxisProfile, Rig};
use smp_core::SpecError;
use thiserror::Error;

use super::axes::{Kinematics, MachineAxes, MachinePos, DEFAULT_JOINT_STEPS_PER_DEG, DEFAULT_ROTARY_STEPS_PER_DEG};
use super::FaultPlan;

/// A controller configuration that cannot run.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ControllerError {
    #[error("controller config: `{field}` {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("controller config: {0}")]
    Dynamics(#[from] SpecError),
}

pub(super) fn invalid(field: &'static str, problem: impl Into<String>) -> ControllerError {
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

//! grbl's `$` settings table, as `$$` prints it and `$n=value` writes it.
//!
//! The axis settings ($100-$132) are the controller's dynamics; the others are kept only so
//! that `$$` looks like grbl's and writes are answered as grbl answers them. Writes last until
//! `$RST=$`/`$RST=*` or the controller is rebuilt (there is no EEPROM to survive a power cycle).

use std::collections::BTreeMap;

use smp_core::kinematics::AxisLimits;

use super::axes::{padded_limits, MachinePos, MAX_AXES};
use super::codes;
use super::gcode::{fmt0, fmt3};
use super::ControllerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Printed as an integer (grbl's uint8 settings and booleans).
    Int,
    /// Printed with three decimals.
    Float,
    /// Printed with no decimals (spindle rpm).
    Rpm,
}

/// True for an axis setting ($100-$13x) of one of the `n_axes` driven axes.
fn is_axis_setting(n: u16, n_axes: usize) -> bool {
    (100..140).contains(&n) && usize::from(n % 10) < n_axes
}

fn kind_of(n: u16, n_axes: usize) -> Option<Kind> {
    match n {
        0..=6 | 10 | 13 | 20..=23 | 26 | 32 => Some(Kind::Int),
        11 | 12 | 24 | 25 | 27 => Some(Kind::Float),
        30 | 31 => Some(Kind::Rpm),
        _ if is_axis_setting(n, n_axes) => Some(Kind::Float),
        _ => None,
    }
}

/// The `$` settings, keyed by number. Axis settings exist for the driven axes only, as on a
/// grbl (or grblHAL) built for that many axes: `$100`-`$102` in `xyz`, `$100`-`$104` in
/// `xyzab`, `$100`-`$105` in `joints` (rotary axes in degrees, deg/min, deg/s²).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    values: BTreeMap<u16, f64>,
    /// Lower travel limit of each axis, mm: grbl's volume is `[-$13x, 0]`, ours is
    /// `[min, min + $13x]` with `min` from the rig, so the rig's coordinates are kept.
    min_mm: MachinePos,
    n_axes: usize,
}

impl Settings {
    pub(crate) fn from_config(cfg: &ControllerConfig) -> Self {
        let mut v = BTreeMap::new();
        // grbl 1.1h defaults, except where the rig says otherwise.
        for (n, x) in [
            (0u16, 10.0),
            (1, 25.0),
            (2, 0.0),
            (3, 0.0),
            (4, 0.0),
            (5, 0.0),
            (6, 0.0),
            (10, f64::from(cfg.status_report_mask)),
            (11, 0.010),
            (12, 0.002),
            (13, 0.0),
            (20, if cfg.soft_limits { 1.0 } else { 0.0 }),
            (21, 0.0),
            (22, 0.0),
            (23, 0.0),
            (24, 25.0),
            (25, 500.0),
            (26, 250.0),
            (27, 1.0),
            (30, cfg.spindle_max_rpm),
            (31, cfg.spindle_min_rpm),
            (32, 0.0),
        ] {
            v.insert(n, x);
        }
        let limits = cfg.axes.axis_limits(&cfg.dynamics);
        let steps = cfg.axes.steps_per_unit(cfg.steps_per_mm);
        for (i, (axis, spu)) in limits.iter().zip(&steps).enumerate() {
            let i = i as u16;
            v.insert(100 + i, *spu);
            v.insert(110 + i, axis.max_rate_mm_per_min);
            v.insert(120 + i, axis.accel_mm_per_s2);
            v.insert(130 + i, axis.max_mm - axis.min_mm);
        }
        let min_mm = std::array::from_fn(|i| limits.get(i).map_or(0.0, |a| a.min_mm));
        Settings { values: v, min_mm, n_axes: limits.len().min(MAX_AXES) }
    }

    fn get(&self, n: u16) -> f64 {
        self.values.get(&n).copied().unwrap_or(0.0)
    }

    /// The lines of `$$`, without line endings.
    pub(crate) fn report_lines(&self) -> Vec<String> {
        self.values
            .iter()
            .map(|(&n, &x)| match kind_of(n, self.n_axes) {
                Some(Kind::Float) => format!("${n}={}", fmt3(x)),
                _ => format!("${n}={}", fmt0(x)),
            })
            .collect()
    }

    /// grbl's `settings_store_global_setting`: `Err(status)` as grbl would answer.
    pub(crate) fn store(&mut self, n: f64, value: f64) -> Result<(), u8> {
        if value < 0.0 {
            return Err(codes::ERROR_NEGATIVE_VALUE);
        }
        let n = n.trunc();
        if !(0.0..=255.0).contains(&n) {
            return Err(codes::ERROR_INVALID_STATEMENT);
        }
        let n = n as u16;
        let kind = kind_of(n, self.n_axes).ok_or(codes::ERROR_INVALID_STATEMENT)?;
        let stored = match kind {
            Kind::Int => value.trunc(),
            Kind::Float | Kind::Rpm => value,
        };
        if n == 0 && stored < 3.0 {
            return Err(codes::ERROR_SETTING_STEP_PULSE_MIN);
        }
        // Axis settings of zero would make the dynamics meaningless (division by zero).
        if is_axis_setting(n, self.n_axes) && n < 130 && stored <= 0.0 {
            return Err(codes::ERROR_INVALID_STATEMENT);
        }
        self.values.insert(n, stored);
        Ok(())
    }

    pub(crate) fn soft_limits(&self) -> bool {
        self.get(20) != 0.0
    }

    pub(crate) fn status_report_mask(&self) -> u8 {
        self.get(10).clamp(0.0, 255.0) as u8
    }

    pub(crate) fn rpm_max(&self) -> f64 {
        self.get(30)
    }

    pub(crate) fn rpm_min(&self) -> f64 {
        self.get(31)
    }

    /// Steps per unit (mm or degree) of each axis; unused axes 1.
    pub(crate) fn steps_per_unit(&self) -> MachinePos {
        std::array::from_fn(|i| if i < self.n_axes { self.get(100 + i as u16) } else { 1.0 })
    }

    /// Number of driven axes.
    pub(crate) fn n_axes(&self) -> usize {
        self.n_axes
    }

    /// Rate, acceleration and travel of the driven axes, padded to [`MAX_AXES`].
    pub(crate) fn axis_limits(&self) -> [AxisLimits; MAX_AXES] {
        let axis = |i: u16| AxisLimits {
            max_rate_mm_per_min: self.get(110 + i),
            accel_mm_per_s2: self.get(120 + i),
            min_mm: self.min_mm[i as usize],
            max_mm: self.min_mm[i as usize] + self.get(130 + i),
        };
        let v: Vec<AxisLimits> = (0..self.n_axes as u16).map(axis).collect();
        padded_limits(&v)
    }
}

//! Motion time of straight moves under per-axis rate and acceleration limits.
//!
//! Both the simulated controller (to pace execution) and the planner's estimate use this
//! model, so an estimate and a simulated run disagree only where the controller's state
//! machine does (buffer starvation, dwells, faults), which is what we want to measure.

use serde::{Deserialize, Serialize};

use crate::error::{check_range, SpecError};

/// Height above the highest entry point of a session at which a program starts and ends
/// (capped at the Z soft limit). The verifier requires the tip to stay 5 mm above the top of
/// the map's surface wherever it has no surface under the tip (and at unknown x/y), and a
/// scan's patch can reach well above the highest dot of a session, hence the generous margin;
/// it costs two short moves per session.
pub const SAFE_ABOVE_DOTS_MM: f64 = 50.0;

/// Smallest radius of curvature assumed for the scalp when a travel move between two dots
/// is raised to clear the skin bulging between them (sagitta d²/8R). A real head's is about
/// 60 mm; the verifier checks the actual clearance against the map.
pub const MIN_SCALP_RADIUS_MM: f64 = 40.0;

/// Z (machine, mm) at which the `xyz` program travels from the dot entered at `prev_entry`
/// to the one at `entry` (tip positions on the skin, machine frame): `hover_mm` above the
/// higher of the two plus the sagitta of the skin between them, never above `safe_z_mm`.
/// The G-code compiler emits this move and the planner's arm-time estimate times it, so the
/// two cannot drift apart.
pub fn travel_z_mm(prev_entry: [f64; 3], entry: [f64; 3], hover_mm: f64, safe_z_mm: f64) -> f64 {
    let d = (entry[0] - prev_entry[0]).hypot(entry[1] - prev_entry[1]);
    let sagitta = d * d / (8.0 * MIN_SCALP_RADIUS_MM);
    (prev_entry[2].max(entry[2]) + hover_mm + sagitta).min(safe_z_mm)
}

/// Safe Z of a session whose highest entry point is at `top_entry_z_mm`.
pub fn safe_z_mm(top_entry_z_mm: f64, z_max_mm: f64) -> f64 {
    (top_entry_z_mm + SAFE_ABOVE_DOTS_MM).min(z_max_mm)
}

/// Limits of one linear axis, in the units grbl uses in its `$` settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AxisLimits {
    /// grbl `$110`-`$112`: maximum rate, mm/min.
    pub max_rate_mm_per_min: f64,
    /// grbl `$120`-`$122`: acceleration, mm/s².
    pub accel_mm_per_s2: f64,
    /// Soft-limit travel in machine coordinates, mm.
    pub min_mm: f64,
    pub max_mm: f64,
}

/// Dynamics of the X, Y, Z axes (the `xyz` profile).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MachineDynamics {
    pub x: AxisLimits,
    pub y: AxisLimits,
    pub z: AxisLimits,
}

impl MachineDynamics {
    pub fn axes(&self) -> [AxisLimits; 3] {
        [self.x, self.y, self.z]
    }

    pub fn validate(&self, what: &'static str) -> Result<(), SpecError> {
        for (name, a) in [("x", self.x), ("y", self.y), ("z", self.z)] {
            check_range(what, &format!("dynamics.{name}.max_rate_mm_per_min"), a.max_rate_mm_per_min, 1.0, 1e6)?;
            check_range(what, &format!("dynamics.{name}.accel_mm_per_s2"), a.accel_mm_per_s2, 1.0, 1e6)?;
            check_range(what, &format!("dynamics.{name}.min_mm"), a.min_mm, -1e4, 1e4)?;
            check_range(what, &format!("dynamics.{name}.max_mm"), a.max_mm, a.min_mm, 1e4)?;
        }
        Ok(())
    }

    /// True when the point lies inside every axis' soft limits.
    pub fn within_travel(&self, p: [f64; 3]) -> bool {
        self.axes().iter().zip(p).all(|(a, v)| v >= a.min_mm - 1e-9 && v <= a.max_mm + 1e-9)
    }

    /// Nominal speed (mm/s) and acceleration (mm/s²) of a straight move along `delta`,
    /// limited per axis as grbl does: each axis' share of the motion must respect its limit.
    /// `feed_mm_per_min` is `None` for a rapid (G0), which runs at the axes' maximum.
    pub fn block_limits(&self, delta: [f64; 3], feed_mm_per_min: Option<f64>) -> (f64, f64) {
        let len = (delta[0] * delta[0] + delta[1] * delta[1] + delta[2] * delta[2]).sqrt();
        if len <= 0.0 {
            return (0.0, 0.0);
        }
        let mut speed = feed_mm_per_min.map(|f| f / 60.0).unwrap_or(f64::INFINITY);
        let mut accel = f64::INFINITY;
        for (axis, d) in self.axes().iter().zip(delta) {
            let share = d.abs() / len;
            if share > 1e-12 {
                speed = speed.min(axis.max_rate_mm_per_min / 60.0 / share);
                accel = accel.min(axis.accel_mm_per_s2 / share);
            }
        }
        (speed, accel)
    }

    /// Time (s) of a straight move that starts and ends at rest.
    pub fn move_time_s(&self, delta: [f64; 3], feed_mm_per_min: Option<f64>) -> f64 {
        let len = (delta[0] * delta[0] + delta[1] * delta[1] + delta[2] * delta[2]).sqrt();
        let (v, a) = self.block_limits(delta, feed_mm_per_min);
        trapezoid_time_s(len, v, a)
    }
}

/// Nominal speed and acceleration (feed units/s, /s²) of a straight move in machine
/// coordinates of any number of axes (mm or degrees each), limited per axis as grbl does:
/// each axis' share `|delta_i| / length` of the motion must respect its own rate and
/// acceleration. `length` is the move's length in its feed units (the tip distance in `xyz`
/// and `xyzab`, the joint step's norm in `joints`): the simulated controller's block model,
/// shared so that the planner's estimate of a tilted program times it identically.
/// `(0, 0)` for an empty move.
pub fn axes_block_limits(delta: &[f64], length: f64, limits: &[AxisLimits], feed_per_min: Option<f64>) -> (f64, f64) {
    if !(length > 0.0 && length.is_finite()) {
        return (0.0, 0.0);
    }
    let mut speed = feed_per_min.map(|f| f / 60.0).unwrap_or(f64::INFINITY);
    let mut accel = f64::INFINITY;
    for (axis, d) in limits.iter().zip(delta) {
        let share = d.abs() / length;
        if share > 1e-12 {
            speed = speed.min(axis.max_rate_mm_per_min / 60.0 / share);
            accel = accel.min(axis.accel_mm_per_s2 / share);
        }
    }
    if !(speed.is_finite() && accel.is_finite()) {
        return (0.0, 0.0);
    }
    (speed, accel)
}

/// Rest-to-rest time (s) of the move of [`axes_block_limits`].
pub fn axes_move_time_s(delta: &[f64], length: f64, limits: &[AxisLimits], feed_per_min: Option<f64>) -> f64 {
    let (v, a) = axes_block_limits(delta, length, limits, feed_per_min);
    trapezoid_time_s(length, v, a)
}

/// grbl's `DWELL_TIME_STEP`: grbl executes a `G4` dwell in whole steps of 50 ms, so
/// `G4 P0.06` lasts 0.1 s. The simulated controller does the same (its `dwell_quantum_s`).
pub const GRBL_DWELL_STEP_S: f64 = 0.05;

/// How long a controller that dwells in whole steps of `step_s` (0: exactly) dwells for a
/// `G4` of `seconds`: rounded up to the next whole step (a step's worth of 1e-9 of slack
/// keeps an exact multiple from rounding up).
pub fn executed_dwell_s(seconds: f64, step_s: f64) -> f64 {
    if step_s > 0.0 {
        (seconds / step_s - 1e-9).ceil().max(0.0) * step_s
    } else {
        seconds
    }
}

/// Time to travel `distance_mm` from rest to rest with cruise speed `v` (mm/s) and
/// acceleration `a` (mm/s²): a trapezoid, or a triangle when the move is too short to cruise.
pub fn trapezoid_time_s(distance_mm: f64, v: f64, a: f64) -> f64 {
    if distance_mm <= 0.0 || v <= 0.0 || a <= 0.0 {
        return 0.0;
    }
    let d_accel = v * v / a; // accelerate and decelerate together
    if distance_mm >= d_accel {
        distance_mm / v + v / a
    } else {
        2.0 * (distance_mm / a).sqrt()
    }
}

/// Distance travelled after `t` seconds along a rest-to-rest trapezoid of length `distance_mm`;
/// used by the simulator to report positions mid-move.
pub fn trapezoid_distance_at(distance_mm: f64, v: f64, a: f64, t: f64) -> f64 {
    let total = trapezoid_time_s(distance_mm, v, a);
    if t <= 0.0 || total <= 0.0 {
        return 0.0;
    }
    if t >= total {
        return distance_mm;
    }
    let v_peak = if distance_mm >= v * v / a { v } else { (distance_mm * a).sqrt() };
    let t_acc = v_peak / a;
    let d_acc = 0.5 * a * t_acc * t_acc;
    if t < t_acc {
        0.5 * a * t * t
    } else if t < total - t_acc {
        d_acc + v_peak * (t - t_acc)
    } else {
        let td = total - t;
        distance_mm - 0.5 * a * td * td
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    #[test]
    fn trapezoid_and_triangle() {
        // 100 mm at 50 mm/s with 500 mm/s²: accel distance 5 mm, 2 s cruise-equivalent + 0.1 s.
        assert_relative_eq!(trapezoid_time_s(100.0, 50.0, 500.0), 2.1, epsilon = 1e-12);
        // 1 mm: triangle, peak sqrt(500) < 50.
        assert_relative_eq!(trapezoid_time_s(1.0, 50.0, 500.0), 2.0 * (1.0f64 / 500.0).sqrt(), epsilon = 1e-12);
    }

    #[test]
    fn axes_model_matches_the_xyz_model() {
        let d = MachineDynamics {
            x: AxisLimits { max_rate_mm_per_min: 6000.0, accel_mm_per_s2: 500.0, min_mm: -1.0, max_mm: 1.0 },
            y: AxisLimits { max_rate_mm_per_min: 3000.0, accel_mm_per_s2: 800.0, min_mm: -1.0, max_mm: 1.0 },
            z: AxisLimits { max_rate_mm_per_min: 1200.0, accel_mm_per_s2: 200.0, min_mm: -1.0, max_mm: 1.0 },
        };
        for delta in [[3.0f64, 4.0, 0.0], [0.0, 0.0, -2.0], [10.0, -7.0, 3.0]] {
            let len = (delta[0] * delta[0] + delta[1] * delta[1] + delta[2] * delta[2]).sqrt();
            for feed in [None, Some(100.0), Some(5000.0)] {
                assert_relative_eq!(
                    axes_move_time_s(&delta, len, &d.axes(), feed),
                    d.move_time_s(delta, feed),
                    epsilon = 1e-12
                );
            }
        }
        assert_eq!(axes_move_time_s(&[0.0; 3], 0.0, &d.axes(), Some(100.0)), 0.0);
    }

    #[test]
    fn dwell_rounds_up_to_grbl_steps() {
        assert_eq!(executed_dwell_s(0.1, GRBL_DWELL_STEP_S), 0.1);
        assert_relative_eq!(executed_dwell_s(0.06, GRBL_DWELL_STEP_S), 0.1, epsilon = 1e-15);
        assert_relative_eq!(executed_dwell_s(0.11, GRBL_DWELL_STEP_S), 0.15, epsilon = 1e-15);
        assert_eq!(executed_dwell_s(0.0, GRBL_DWELL_STEP_S), 0.0);
        assert_eq!(executed_dwell_s(0.06, 0.0), 0.06);
    }

    proptest! {
        #[test]
        fn distance_profile_is_monotone_and_ends_at_length(d in 0.01f64..300.0, v in 1.0f64..200.0, a in 10.0f64..5000.0) {
            let total = trapezoid_time_s(d, v, a);
            let mut prev = 0.0;
            for k in 0..=50 {
                let s = trapezoid_distance_at(d, v, a, total * k as f64 / 50.0);
                prop_assert!(s + 1e-9 >= prev);
                prev = s;
            }
            prop_assert!((prev - d).abs() < 1e-9);
        }
    }
}

//! Planner blocks and their velocity profiles.
//!
//! Every block starts and ends at rest on a trapezoid (or triangle) from
//! `smp_core::kinematics`: there is no junction-speed optimisation, unlike grbl's planner,
//! which blends consecutive blocks through corners. The SMP programs stop at every dot
//! anyway (plunge, dwell, retract), so the difference is small and on the slow side; it is
//! the same model the planner's time estimate uses.
//!
//! A block is executed as one or more *legs*: a rest-to-rest trapezoid over the remaining
//! distance, or, after a feed hold, a deceleration at the block's acceleration from the
//! current speed to rest. Resuming after a hold starts a new trapezoid over what is left.

use smp_core::kinematics::{axes_block_limits, trapezoid_distance_at, trapezoid_time_s, AxisLimits};

use super::axes::{Kinematics, MachinePos, MAX_AXES};

/// One straight move queued in the planner, in machine coordinates (mm or degrees per axis).
///
/// `s` runs from 0 to `length_mm` in the move's feed units (see
/// [`Kinematics::feed_length`]): millimetres of tip travel in `xyz`, and in `xyzab` unless only
/// A/B turn, degrees of joint step in `joints`. Every axis moves linearly with `s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Block {
    pub(crate) start_mm: MachinePos,
    pub(crate) end_mm: MachinePos,
    /// Change of each axis per unit of `s` (a unit vector when `s` is the norm of all axes).
    pub(crate) dir: MachinePos,
    pub(crate) length_mm: f64,
    /// Nominal (cruise) speed, feed units/s, after the per-axis limits.
    pub(crate) speed_mm_s: f64,
    /// Acceleration along the move, feed units/s², after the per-axis limits.
    pub(crate) accel_mm_s2: f64,
    /// Longest step of `s` between two skin-contact samples.
    pub(crate) sample_step: f64,
}

impl Block {
    /// A block from `start` to `end`, or `None` when they coincide (grbl's empty block).
    /// `limits` holds the driven axes (3, 5 or 6); the others never move.
    pub(crate) fn new(
        kin: &Kinematics,
        limits: &[AxisLimits],
        start_mm: MachinePos,
        end_mm: MachinePos,
        feed_mm_per_min: Option<f64>,
        tip_sample_step_mm: f64,
    ) -> Option<Block> {
        let delta: MachinePos = std::array::from_fn(|i| end_mm[i] - start_mm[i]);
        let length_mm = kin.feed_length(&delta);
        if length_mm <= 1e-9 || !length_mm.is_finite() {
            return None;
        }
        // grbl's per-axis limits: each axis' share of the motion must respect its own rate and
        // acceleration. The core's function, so the planner's estimate times blocks the same.
        let (speed_mm_s, accel_mm_s2) = axes_block_limits(&delta, length_mm, limits, feed_mm_per_min);
        // (0, 0) for an unlimited move; a zero or negative feed is no block either.
        if !(speed_mm_s > 0.0 && accel_mm_s2 > 0.0) {
            return None;
        }
        let dir: MachinePos = std::array::from_fn(|i| delta[i] / length_mm);
        let sample_step = kin.sample_step(&start_mm, &end_mm, length_mm, tip_sample_step_mm);
        Some(Block { start_mm, end_mm, dir, length_mm, speed_mm_s, accel_mm_s2, sample_step })
    }

    /// Point at distance `s_mm` along the block; the exact end point at (or past) the end.
    pub(crate) fn point_at(&self, s_mm: f64) -> MachinePos {
        if s_mm >= self.length_mm {
            return self.end_mm;
        }
        let s = s_mm.max(0.0);
        let mut p = [0.0; MAX_AXES];
        for (i, v) in p.iter_mut().enumerate() {
            *v = self.start_mm[i] + self.dir[i] * s;
        }
        p
    }
}

/// The shape of one leg of a block's motion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LegKind {
    /// Rest to rest over `len_mm` at cruise speed `v` and acceleration `a`.
    Trapezoid { len_mm: f64, v: f64, a: f64 },
    /// From speed `v0` to rest at deceleration `a` (a feed hold).
    Decel { v0: f64, a: f64 },
}

/// One leg: where along the block it starts and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Leg {
    pub(crate) kind: LegKind,
    /// Distance along the block at the start of the leg, mm.
    pub(crate) s0_mm: f64,
    /// Machine time at the start of the leg, s.
    pub(crate) t0_s: f64,
}

impl Leg {
    pub(crate) fn duration_s(&self) -> f64 {
        match self.kind {
            LegKind::Trapezoid { len_mm, v, a } => trapezoid_time_s(len_mm, v, a),
            LegKind::Decel { v0, a } => v0 / a,
        }
    }

    pub(crate) fn end_s(&self) -> f64 {
        self.t0_s + self.duration_s()
    }

    /// Length of the leg, mm.
    pub(crate) fn length_mm(&self) -> f64 {
        match self.kind {
            LegKind::Trapezoid { len_mm, .. } => len_mm,
            LegKind::Decel { v0, a } => v0 * v0 / (2.0 * a),
        }
    }

    /// Distance along the block at time `t_s` (clamped to the leg).
    pub(crate) fn s_at(&self, t_s: f64) -> f64 {
        let tau = (t_s - self.t0_s).clamp(0.0, self.duration_s());
        let along = match self.kind {
            LegKind::Trapezoid { len_mm, v, a } => trapezoid_distance_at(len_mm, v, a, tau),
            LegKind::Decel { v0, a } => v0 * tau - 0.5 * a * tau * tau,
        };
        self.s0_mm + along
    }

    /// Speed at time `t_s`, mm/s.
    pub(crate) fn speed_at(&self, t_s: f64) -> f64 {
        let total = self.duration_s();
        let tau = t_s - self.t0_s;
        if tau <= 0.0 && matches!(self.kind, LegKind::Trapezoid { .. }) || tau >= total {
            return 0.0;
        }
        let tau = tau.max(0.0);
        match self.kind {
            LegKind::Trapezoid { len_mm, v, a } => {
                let v_peak = if len_mm >= v * v / a { v } else { (len_mm * a).sqrt() };
                let t_acc = v_peak / a;
                if tau < t_acc {
                    a * tau
                } else if tau < total - t_acc {
                    v_peak
                } else {
                    a * (total - tau)
                }
            }
            LegKind::Decel { v0, a } => (v0 - a * tau).max(0.0),
        }
    }

    /// Machine time at which the leg reaches distance `s_mm` along the block (inverse of
    /// [`Leg::s_at`]); used to time-stamp skin crossings found by position.
    pub(crate) fn time_at_s(&self, s_mm: f64) -> f64 {
        let d = (s_mm - self.s0_mm).clamp(0.0, self.length_mm());
        match self.kind {
            LegKind::Trapezoid { len_mm, v, a } => {
                // The distance profile is monotone: bisection to well below a nanosecond.
                let (mut lo, mut hi) = (0.0, trapezoid_time_s(len_mm, v, a));
                for _ in 0..64 {
                    let mid = 0.5 * (lo + hi);
                    if trapezoid_distance_at(len_mm, v, a, mid) < d {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                self.t0_s + 0.5 * (lo + hi)
            }
            LegKind::Decel { v0, a } => {
                let disc = (v0 * v0 - 2.0 * a * d).max(0.0);
                self.t0_s + (v0 - disc.sqrt()) / a
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn limits() -> [AxisLimits; 3] {
        [AxisLimits { max_rate_mm_per_min: 6000.0, accel_mm_per_s2: 500.0, min_mm: -500.0, max_mm: 500.0 }; 3]
    }

    fn at(p: [f64; 3]) -> MachinePos {
        [p[0], p[1], p[2], 0.0, 0.0, 0.0]
    }

    #[test]
    fn empty_block_is_dropped() {
        assert!(Block::new(&Kinematics::Xyz, &limits(), at([1.0; 3]), at([1.0; 3]), Some(100.0), 0.02).is_none());
    }

    #[test]
    fn trapezoid_leg_matches_core_and_inverts() {
        let b =
            Block::new(&Kinematics::Xyz, &limits(), at([0.0; 3]), at([100.0, 0.0, 0.0]), Some(3000.0), 0.02).unwrap();
        assert_relative_eq!(b.speed_mm_s, 50.0);
        let leg = Leg { kind: LegKind::Trapezoid { len_mm: 100.0, v: 50.0, a: 500.0 }, s0_mm: 0.0, t0_s: 1.0 };
        assert_relative_eq!(leg.end_s(), 1.0 + 2.1, epsilon = 1e-12);
        assert_relative_eq!(leg.speed_at(2.0), 50.0);
        assert_relative_eq!(leg.speed_at(1.05), 25.0, epsilon = 1e-9);
        for s in [0.0, 0.1, 2.5, 50.0, 97.5, 99.99, 100.0] {
            assert_relative_eq!(leg.s_at(leg.time_at_s(s)), s, epsilon = 1e-9);
        }
    }

    #[test]
    fn decel_leg_stops_within_the_distance_left() {
        let trap = Leg { kind: LegKind::Trapezoid { len_mm: 100.0, v: 50.0, a: 500.0 }, s0_mm: 0.0, t0_s: 0.0 };
        for t in [0.01, 0.05, 1.0, 2.0, 2.08] {
            let v0 = trap.speed_at(t);
            let s = trap.s_at(t);
            let decel = Leg { kind: LegKind::Decel { v0, a: 500.0 }, s0_mm: s, t0_s: t };
            assert!(decel.s_at(decel.end_s()) <= 100.0 + 1e-9, "hold at {t} overruns the block");
            assert_relative_eq!(decel.speed_at(decel.end_s()), 0.0);
            let mid = decel.s_at(t + 0.5 * decel.duration_s());
            assert_relative_eq!(decel.s_at(decel.time_at_s(mid)), mid, epsilon = 1e-9);
        }
    }
}

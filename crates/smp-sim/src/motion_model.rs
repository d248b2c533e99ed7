//! Patient micro-motion: breathing, slow drift and sudden head movements, as a pure function
//! of machine time, and a [`MovingSkin`] that makes the simulated controller meet the head
//! where it really is.
//!
//! Why: the arm registers the head once and then aims at planned head-frame points through
//! that registration. If the head moves afterwards, the needle lands where the registered
//! head *was*. [`MovingSkin`] records each entry on the head it actually hit, so the
//! placement error an evaluation measures equals the head's motion: the observable a tracking
//! system must catch.
//!
//! Invariant: the default [`HeadMotion`] is no motion at all, and a [`MovingSkin`] around a
//! still motion behaves exactly like its inner skin (same entries, bit for bit).

use std::f64::consts::TAU;

use nalgebra::{Isometry3, Translation3, UnitQuaternion, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::controller::Skin;
use crate::faults::{FaultScenario, HeadMove, MAX_HEAD_MOVE_MM, MAX_HEAD_TURN_DEG};

/// Largest breathing amplitude accepted, mm. Breathing moves a resting head by well under a
/// millimetre; centimetres mean a unit mistake or a patient who is not at rest.
pub const MAX_BREATHING_AMPLITUDE_MM: f64 = 10.0;
/// Largest drift accepted, mm per minute (same reasoning as the amplitude).
pub const MAX_DRIFT_MM_PER_MIN: f64 = 10.0;
/// Largest tilt of a seeded breathing axis away from base z, rad (about 11 degrees): breathing
/// lifts the head mostly vertically on a supine or reclined rest.
const BREATHING_TILT_MAX_RAD: f64 = 0.2;

/// A head-motion description that cannot be simulated.
#[derive(Debug, Error, PartialEq)]
pub enum MotionError {
    #[error("head motion: {field} is {value}; it must be a finite number")]
    NonFinite { field: &'static str, value: f64 },
    #[error(
        "head motion: breathing_amplitude_mm {amplitude_mm} is outside [0, {MAX_BREATHING_AMPLITUDE_MM}] mm; \
         give the peak displacement in millimetres"
    )]
    BreathingAmplitude { amplitude_mm: f64 },
    #[error(
        "head motion: breathing_period_s {period_s} must be > 0 when breathing_amplitude_mm > 0; a breath lasts ~4 s"
    )]
    BreathingPeriod { period_s: f64 },
    #[error("head motion: breathing_axis_base has zero length; give a direction such as [0, 0, 1]")]
    BreathingAxis,
    #[error(
        "head motion: drift of {rate_mm_per_min} mm/min exceeds {MAX_DRIFT_MM_PER_MIN} mm/min; \
         check drift_mm_per_min is per minute, in millimetres"
    )]
    Drift { rate_mm_per_min: f64 },
    #[error("head motion: step {index} at time_s {time_s} must be at a finite time >= 0 s")]
    StepTime { index: usize, time_s: f64 },
    #[error(
        "head motion: step {index} moves {distance_mm} mm, more than {MAX_HEAD_MOVE_MM} mm; \
         check translation_mm is in millimetres"
    )]
    StepDistance { index: usize, distance_mm: f64 },
    #[error(
        "head motion: step {index} turns the head by {turn_deg} degrees, more than {MAX_HEAD_TURN_DEG}; \
         check rotation_deg is in degrees"
    )]
    StepTurn { index: usize, turn_deg: f64 },
}

/// How the patient's head moves relative to where it was registered, over machine time
/// (seconds since the controller started; a fault scenario's session time is taken as that).
///
/// Breathing and drift translate the whole head in the base frame; the steps (sudden head
/// moves) are pose changes in the registered head frame and may turn the head about its
/// centre. At time `t` the true pose is `base_from_head(t) = base_delta(t) * base_from_head(0)`
/// ([`HeadMotion::base_delta`]). Breathing and drift carry no rotation: at their millimetre
/// scale a translation is what moves the needle's landing point, while a head that turns on
/// the rest (a step with `rotation_deg`) moves points far from its centre further than the
/// centre itself, which tracking must see.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadMotion {
    /// Peak breathing displacement along [`HeadMotion::breathing_axis_base`], mm (0 = none).
    pub breathing_amplitude_mm: f64,
    /// Duration of one breath, s.
    pub breathing_period_s: f64,
    /// Phase of the breathing sinusoid at time 0, rad.
    pub breathing_phase_rad: f64,
    /// Direction of the breathing displacement in the base frame (normalised when used).
    pub breathing_axis_base: [f64; 3],
    /// Constant slow drift of the head in the base frame, mm per minute, from time 0.
    pub drift_mm_per_min: [f64; 3],
    /// Sudden movements, in the head frame as in a fault scenario: each applies from its
    /// `time_s` on and they add up.
    pub steps: Vec<HeadMove>,
    /// The registered `base_from_head`, to turn the steps' head-frame motions into the base
    /// frame (a turn is about the head centre).
    pub registered_base_from_head: Isometry3<f64>,
}

impl Default for HeadMotion {
    /// No motion: every existing result stays as it was.
    fn default() -> Self {
        HeadMotion {
            breathing_amplitude_mm: 0.0,
            breathing_period_s: 4.0,
            breathing_phase_rad: 0.0,
            breathing_axis_base: [0.0, 0.0, 1.0],
            drift_mm_per_min: [0.0; 3],
            steps: Vec::new(),
            registered_base_from_head: Isometry3::identity(),
        }
    }
}

impl HeadMotion {
    /// Breathing only, with phase and a slight tilt of the axis away from base z drawn from
    /// `seed`: two patients breathing out of step, reproducibly.
    pub fn breathing(amplitude_mm: f64, period_s: f64, seed: u64) -> Result<Self, MotionError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let phase = rng.random_range(0.0..TAU);
        let tilt = rng.random_range(0.0..BREATHING_TILT_MAX_RAD);
        let azimuth = rng.random_range(0.0..TAU);
        let motion = HeadMotion {
            breathing_amplitude_mm: amplitude_mm,
            breathing_period_s: period_s,
            breathing_phase_rad: phase,
            breathing_axis_base: [tilt.sin() * azimuth.cos(), tilt.sin() * azimuth.sin(), tilt.cos()],
            ..HeadMotion::default()
        };
        motion.validate()?;
        Ok(motion)
    }

    /// The head moves of a fault scenario as a motion; `base_from_head` is the registered
    /// (true at time 0) head pose, whose rotation carries the head-frame steps to the base.
    pub fn from_scenario(scenario: &FaultScenario, base_from_head: &Isometry3<f64>) -> Result<Self, MotionError> {
        let motion = HeadMotion {
            steps: scenario.head_moves.clone(),
            registered_base_from_head: *base_from_head,
            ..HeadMotion::default()
        };
        motion.validate()?;
        Ok(motion)
    }

    /// True when the head never moves (then a [`MovingSkin`] costs nothing extra).
    pub fn is_still(&self) -> bool {
        self.breathing_amplitude_mm == 0.0 && self.drift_mm_per_min == [0.0; 3] && self.steps.is_empty()
    }

    /// Checks every field; errors name the field and the fix.
    pub fn validate(&self) -> Result<(), MotionError> {
        let finite = |field: &'static str, value: f64| {
            if value.is_finite() {
                Ok(())
            } else {
                Err(MotionError::NonFinite { field, value })
            }
        };
        finite("breathing_amplitude_mm", self.breathing_amplitude_mm)?;
        finite("breathing_period_s", self.breathing_period_s)?;
        finite("breathing_phase_rad", self.breathing_phase_rad)?;
        for v in self.breathing_axis_base {
            finite("breathing_axis_base", v)?;
        }
        for v in self.drift_mm_per_min {
            finite("drift_mm_per_min", v)?;
        }
        if !(0.0..=MAX_BREATHING_AMPLITUDE_MM).contains(&self.breathing_amplitude_mm) {
            return Err(MotionError::BreathingAmplitude { amplitude_mm: self.breathing_amplitude_mm });
        }
        if self.breathing_amplitude_mm > 0.0 && self.breathing_period_s <= 0.0 {
            return Err(MotionError::BreathingPeriod { period_s: self.breathing_period_s });
        }
        if Vector3::from(self.breathing_axis_base).norm() == 0.0 {
            return Err(MotionError::BreathingAxis);
        }
        let rate = Vector3::from(self.drift_mm_per_min).norm();
        if rate > MAX_DRIFT_MM_PER_MIN {
            return Err(MotionError::Drift { rate_mm_per_min: rate });
        }
        for (index, step) in self.steps.iter().enumerate() {
            if !(step.time_s.is_finite() && step.time_s >= 0.0) {
                return Err(MotionError::StepTime { index, time_s: step.time_s });
            }
            let distance_mm = step.distance_mm();
            if distance_mm.is_nan() || distance_mm > MAX_HEAD_MOVE_MM {
                return Err(MotionError::StepDistance { index, distance_mm });
            }
            let turn_deg = step.turn_deg();
            if step.rotation_deg.iter().any(|v| !v.is_finite()) || turn_deg.is_nan() || turn_deg > MAX_HEAD_TURN_DEG {
                return Err(MotionError::StepTurn { index, turn_deg });
            }
        }
        Ok(())
    }

    /// Translation of the head from its registered pose at machine time `t_s`, base frame,
    /// mm. Breathing is bounded by its amplitude; drift grows linearly from 0; each step
    /// applies from its time on (inclusive), exactly like the head-move fault.
    pub fn head_offset_base_mm(&self, t_s: f64) -> Vector3<f64> {
        let mut offset = Vector3::zeros();
        if self.breathing_amplitude_mm > 0.0 && self.breathing_period_s > 0.0 {
            let axis = Vector3::from(self.breathing_axis_base);
            let norm = axis.norm();
            if norm > 0.0 {
                let s = (TAU * t_s / self.breathing_period_s + self.breathing_phase_rad).sin();
                offset += axis * (self.breathing_amplitude_mm * s / norm);
            }
        }
        offset += Vector3::from(self.drift_mm_per_min) * (t_s / 60.0);
        let steps = self.steps_head_delta(t_s);
        offset += self.registered_base_from_head.rotation * steps.translation.vector;
        offset
    }

    /// The steps that have happened by `t_s`, composed in time order, as a pose change of the
    /// registered head frame (`head_registered_from_head_now`).
    fn steps_head_delta(&self, t_s: f64) -> Isometry3<f64> {
        let mut ordered: Vec<&HeadMove> = self.steps.iter().filter(|m| m.time_s <= t_s).collect();
        ordered.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
        // Translations stay in the registered head frame (as a fault file states them) and
        // turns compose about the head centre.
        let mut translation = Vector3::zeros();
        let mut rotation = UnitQuaternion::identity();
        for m in ordered {
            translation += Vector3::from(m.translation_mm);
            rotation = m.rotation() * rotation;
        }
        Isometry3::from_parts(Translation3::from(translation), rotation)
    }

    /// True when some step turns the head (the skin then needs the general surface search).
    pub fn turns(&self) -> bool {
        self.steps.iter().any(|m| m.rotation_deg != [0.0; 3])
    }

    /// The rigid motion of the head at `t_s` in the base frame: the true pose is
    /// `base_delta(t_s) * base_from_head(0)`.
    pub fn base_delta(&self, t_s: f64) -> Isometry3<f64> {
        let b0 = &self.registered_base_from_head;
        let steps = self.steps_head_delta(t_s);
        // The turn about the head centre, seen from the base; then the head-centre offset.
        let turn_base =
            Isometry3::from_parts(Translation3::identity(), b0.rotation * steps.rotation * b0.rotation.inverse());
        let centre = b0.translation.vector;
        let about_centre = Translation3::from(centre) * turn_base * Translation3::from(-centre);
        Translation3::from(self.head_offset_base_mm(t_s)) * about_centre
    }
}

/// The `[motion]` table of a patient file: how the patient moves at rest while the arm works.
/// The breathing phase and the slight tilt of its axis are drawn from the patient's seed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicroMotionSpec {
    /// Peak breathing displacement, mm (0.1-0.5 mm for a head on a rest).
    #[serde(default)]
    pub breathing_amplitude_mm: f64,
    /// Duration of one breath, s.
    #[serde(default = "default_breath_s")]
    pub breathing_period_s: f64,
    /// Slow drift of the head in the base frame, mm per minute.
    #[serde(default)]
    pub drift_mm_per_min: [f64; 3],
}

/// A resting adult breathes about 15 times a minute.
fn default_breath_s() -> f64 {
    4.0
}

impl MicroMotionSpec {
    /// The motion this table describes, seeded by the patient's seed; errors name the field.
    pub fn head_motion(&self, seed: u64) -> Result<HeadMotion, MotionError> {
        let mut motion = if self.breathing_amplitude_mm > 0.0 {
            HeadMotion::breathing(self.breathing_amplitude_mm, self.breathing_period_s, seed)?
        } else {
            HeadMotion { breathing_period_s: self.breathing_period_s, ..HeadMotion::default() }
        };
        motion.drift_mm_per_min = self.drift_mm_per_min;
        motion.validate()?;
        Ok(motion)
    }
}

impl HeadMotion {
    /// This motion with the head moves of a fault scenario added, registered at
    /// `base_from_head` (what a session with a moving patient and a fault scenario runs).
    pub fn with_scenario(
        mut self,
        scenario: &FaultScenario,
        base_from_head: &Isometry3<f64>,
    ) -> Result<Self, MotionError> {
        self.steps.extend(scenario.head_moves.iter().copied());
        self.registered_base_from_head = *base_from_head;
        self.validate()?;
        Ok(self)
    }
}

/// Secant iterations and tolerance of the surface search under a turned head.
const SURFACE_ITERATIONS: usize = 12;
const SURFACE_TOLERANCE_MM: f64 = 1e-6;

/// A skin whose patient moves by a [`HeadMotion`]: the surface and the head frame are both
/// translated by the offset at the queried machine time.
pub struct MovingSkin<S> {
    inner: S,
    motion: HeadMotion,
}

impl<S: Skin> MovingSkin<S> {
    /// Wraps `inner` (the skin at the registered pose) after checking `motion`.
    pub fn new(inner: S, motion: HeadMotion) -> Result<Self, MotionError> {
        motion.validate()?;
        Ok(MovingSkin { inner, motion })
    }

    /// The scenario's head moves applied to `inner`; the steps' head frame is the inner
    /// skin's head frame.
    pub fn from_scenario(inner: S, scenario: &FaultScenario) -> Result<Self, MotionError> {
        let motion = HeadMotion::from_scenario(scenario, &inner.head_from_base().inverse())?;
        Ok(MovingSkin { inner, motion })
    }

    pub fn motion(&self) -> &HeadMotion {
        &self.motion
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Skin> Skin for MovingSkin<S> {
    /// The surface at machine time 0.
    fn surface_z_base(&self, x_mm: f64, y_mm: f64) -> Option<f64> {
        self.surface_z_base_at(x_mm, y_mm, 0.0)
    }

    /// The head frame at machine time 0.
    fn head_from_base(&self) -> Isometry3<f64> {
        self.head_from_base_at(0.0)
    }

    fn moves(&self) -> bool {
        !self.motion.is_still() || self.inner.moves()
    }

    fn surface_z_base_at(&self, x_mm: f64, y_mm: f64, t_s: f64) -> Option<f64> {
        let o = self.motion.head_offset_base_mm(t_s);
        let shifted = self.inner.surface_z_base_at(x_mm - o.x, y_mm - o.y, t_s).map(|z| z + o.z);
        if !self.motion.turns() {
            return shifted;
        }
        // A turned head: find z where the vertical line meets the moved surface, i.e. where
        // `base_delta⁻¹ (x, y, z)` lies on the inner surface (secant iterations from the
        // translated guess; the turn is a few degrees, so a handful converge to micrometres).
        let inv = self.motion.base_delta(t_s).inverse();
        let gap = |z: f64| {
            let q = inv * nalgebra::Point3::new(x_mm, y_mm, z);
            self.inner.surface_z_base_at(q.x, q.y, t_s).map(|s| s - q.z)
        };
        let mut z0 = shifted?;
        let mut g0 = gap(z0)?;
        if g0.abs() < SURFACE_TOLERANCE_MM {
            return Some(z0);
        }
        let mut z1 = z0 + g0;
        for _ in 0..SURFACE_ITERATIONS {
            let g1 = gap(z1)?;
            if g1.abs() < SURFACE_TOLERANCE_MM {
                return Some(z1);
            }
            // g(z) = s(q(z)) - q.z falls by about 1 per mm of z under a small turn, so `z + g`
            // is the fallback step; the secant refines it where the surface is steep.
            let slope = (g1 - g0) / (z1 - z0);
            let candidate = if slope.is_finite() && slope.abs() > 1e-9 { z1 - g1 / slope } else { z1 + g1 };
            (z0, g0, z1) = (z1, g1, candidate);
        }
        let g = gap(z1)?;
        (g.abs() < SURFACE_TOLERANCE_MM).then_some(z1)
    }

    fn head_from_base_at(&self, t_s: f64) -> Isometry3<f64> {
        if !self.motion.turns() {
            let o = self.motion.head_offset_base_mm(t_s);
            return self.inner.head_from_base_at(t_s) * Translation3::from(-o);
        }
        self.inner.head_from_base_at(t_s) * self.motion.base_delta(t_s).inverse()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::controller::{ControllerConfig, FlatSkin, FnSkin, SimController};
    use approx::assert_relative_eq;
    use nalgebra::Translation3;
    use proptest::prelude::*;
    use smp_core::kinematics::{AxisLimits, MachineDynamics};
    use smp_core::NeedleEntry;

    /// `unwrap` that the crate's clippy settings accept in tests, with the error shown.
    trait Must<T> {
        fn must(self) -> T;
    }
    impl<T, E: std::fmt::Display> Must<T> for Result<T, E> {
        fn must(self) -> T {
            match self {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            }
        }
    }
    impl<T> Must<T> for Option<T> {
        fn must(self) -> T {
            match self {
                Some(v) => v,
                None => panic!("expected a value"),
            }
        }
    }
    trait MustErr<E> {
        fn must_err(self) -> E;
    }
    impl<T: std::fmt::Debug, E> MustErr<E> for Result<T, E> {
        fn must_err(self) -> E {
            match self {
                Ok(v) => panic!("accepted: {v:?}"),
                Err(e) => e,
            }
        }
    }

    fn config() -> ControllerConfig {
        let axis = |max| AxisLimits { max_rate_mm_per_min: 6000.0, accel_mm_per_s2: 1000.0, min_mm: 0.0, max_mm: max };
        let mut cfg = ControllerConfig::new(MachineDynamics { x: axis(200.0), y: axis(200.0), z: axis(100.0) });
        cfg.initial_position_mm = [0.0, 0.0, 50.0];
        cfg
    }

    /// A head rotated 90 degrees about base z, so that head-frame steps must be rotated.
    fn flat() -> FlatSkin {
        let base_from_head = Isometry3::from_parts(
            Translation3::new(100.0, 50.0, 10.0),
            UnitQuaternion::from_axis_angle(&Vector3::z_axis(), std::f64::consts::FRAC_PI_2),
        );
        FlatSkin { z_mm: 10.0, head_from_base: base_from_head.inverse() }
    }

    /// Eight plunges, 1 mm deep, at distinct points; the program runs to completion.
    fn run(skin: Box<dyn Skin>) -> Vec<NeedleEntry> {
        let mut c = match SimController::new(config(), skin) {
            Ok(c) => c,
            Err(e) => panic!("test config rejected: {e}"),
        };
        let mut prog = String::from("M3S12000\n");
        for k in 0..8 {
            prog.push_str(&format!("G0X{}Y{}Z12\nG1Z9F300\nG4P0.1\nG0Z12\n", 20.0 + 3.0 * k as f64, 30.0));
        }
        prog.push_str("M5\n");
        // Send-response streaming: each line waits for the previous `ok` (rx buffer is 128 bytes).
        let mut now = Duration::ZERO;
        for line in prog.lines() {
            c.handle_bytes(format!("{line}\n").as_bytes(), now);
            let mut buf = Vec::new();
            for _ in 0..100_000 {
                c.poll_transmit(&mut buf);
                if String::from_utf8_lossy(&buf).contains("ok") {
                    break;
                }
                match c.poll_timeout() {
                    Some(d) => {
                        now = now.max(d);
                        c.handle_timeout(now);
                    }
                    None => panic!("no ok for {line}: {}", String::from_utf8_lossy(&buf)),
                }
            }
        }
        while let Some(d) = c.poll_timeout() {
            now = now.max(d);
            c.handle_timeout(now);
        }
        c.finish(now + Duration::from_secs(1)).entries
    }

    fn step_at(time_s: f64, translation_mm: [f64; 3]) -> FaultScenario {
        FaultScenario {
            version: 1,
            seed: 7,
            description: String::new(),
            controller: Vec::new(),
            camera_drops: Vec::new(),
            head_moves: vec![HeadMove::shift(time_s, translation_mm)],
            band_occlusions: Vec::new(),
        }
    }

    #[test]
    fn no_motion_gives_identical_entries() {
        let still = run(Box::new(flat()));
        assert_eq!(still.len(), 8);
        let moving = run(Box::new(MovingSkin::new(flat(), HeadMotion::default()).must()));
        assert_eq!(still, moving);
        assert!(HeadMotion::default().is_still());
        assert_eq!(HeadMotion::default().head_offset_base_mm(123.0), Vector3::zeros());
    }

    #[test]
    fn a_step_offsets_later_entries_by_the_motion_in_head_frame() {
        let still = run(Box::new(flat()));
        let t_step = 0.5 * (still[3].time_s + still[4].time_s);
        let translation = [1.0, 0.0, 0.0];
        let skin = MovingSkin::from_scenario(flat(), &step_at(t_step, translation)).must();
        let moved = run(Box::new(skin));
        assert_eq!(moved.len(), still.len());
        for (k, (a, b)) in still.iter().zip(&moved).enumerate() {
            // Same base point and time: the arm does not know the head moved.
            assert_relative_eq!(a.base_mm[0], b.base_mm[0], epsilon = 1e-9);
            assert_relative_eq!(a.base_mm[1], b.base_mm[1], epsilon = 1e-9);
            assert_relative_eq!(a.time_s, b.time_s, epsilon = 1e-9);
            let d = Vector3::from(b.head_mm) - Vector3::from(a.head_mm);
            if k < 4 {
                assert!(d.norm() < 1e-9, "entry {k} before the step moved by {d}");
            } else {
                // The needle lands 1 mm behind the planned point on the moved head.
                assert_relative_eq!(d, -Vector3::from(translation), epsilon = 1e-6);
            }
        }
    }

    #[test]
    fn a_vertical_step_moves_the_surface_and_the_depth_stays_relative_to_it() {
        let still = run(Box::new(flat()));
        let skin = MovingSkin::from_scenario(flat(), &step_at(0.0, [0.0, 0.0, 0.5])).must();
        let moved = run(Box::new(skin));
        for (a, b) in still.iter().zip(&moved) {
            assert_relative_eq!(b.base_mm[2], a.base_mm[2] + 0.5, epsilon = 1e-6);
            assert_relative_eq!(b.depth_mm, a.depth_mm + 0.5, epsilon = 1e-6);
            assert_relative_eq!(Vector3::from(b.head_mm), Vector3::from(a.head_mm), epsilon = 1e-6);
        }
    }

    #[test]
    fn breathing_bounds_the_entry_offset() {
        let still = run(Box::new(flat()));
        let amplitude_mm = 0.4;
        let motion = HeadMotion::breathing(amplitude_mm, 3.7, 11).must();
        let moved = run(Box::new(MovingSkin::new(flat(), motion).must()));
        assert_eq!(moved.len(), still.len());
        let mut largest: f64 = 0.0;
        for (a, b) in still.iter().zip(&moved) {
            let d = (Vector3::from(b.head_mm) - Vector3::from(a.head_mm)).norm();
            assert!(d <= amplitude_mm + 1e-6, "{d}");
            largest = largest.max(d);
        }
        assert!(largest > 1e-4, "a tilted breathing axis shows in the head frame: {largest}");
    }

    #[test]
    fn runs_are_deterministic_by_seed() {
        let a = HeadMotion::breathing(0.3, 4.0, 5).must();
        assert_eq!(a, HeadMotion::breathing(0.3, 4.0, 5).must());
        assert_ne!(a, HeadMotion::breathing(0.3, 4.0, 6).must());
        let e1 = run(Box::new(MovingSkin::new(flat(), a.clone()).must()));
        let e2 = run(Box::new(MovingSkin::new(flat(), a).must()));
        assert_eq!(e1, e2);
    }

    #[test]
    fn steps_are_rotated_into_the_base_and_accumulate() {
        let skin = MovingSkin::from_scenario(flat(), &step_at(2.0, [1.0, 0.0, 0.0])).must();
        let m = skin.motion();
        assert_eq!(m.head_offset_base_mm(1.999), Vector3::zeros());
        // Head +x is base +y under the 90 degree rotation.
        assert_relative_eq!(m.head_offset_base_mm(2.0), Vector3::new(0.0, 1.0, 0.0), epsilon = 1e-12);
        let mut two = m.clone();
        two.steps.push(HeadMove::shift(3.0, [0.0, 0.0, 2.0]));
        assert_relative_eq!(two.head_offset_base_mm(5.0), Vector3::new(0.0, 1.0, 2.0), epsilon = 1e-12);
    }

    #[test]
    fn drift_is_linear_per_minute() {
        let m = HeadMotion { drift_mm_per_min: [0.6, 0.0, -0.3], ..HeadMotion::default() };
        assert!(!m.is_still());
        assert_relative_eq!(m.head_offset_base_mm(30.0), Vector3::new(0.3, 0.0, -0.15), epsilon = 1e-12);
    }

    #[test]
    fn bad_motions_are_rejected_with_the_field() {
        let bad = |m: HeadMotion| m.validate().must_err();
        assert!(matches!(
            bad(HeadMotion { breathing_amplitude_mm: f64::NAN, ..HeadMotion::default() }),
            MotionError::NonFinite { field: "breathing_amplitude_mm", .. }
        ));
        assert!(matches!(
            bad(HeadMotion { breathing_amplitude_mm: 0.5, breathing_period_s: 0.0, ..HeadMotion::default() }),
            MotionError::BreathingPeriod { .. }
        ));
        assert!(matches!(
            bad(HeadMotion { breathing_amplitude_mm: 50.0, ..HeadMotion::default() }),
            MotionError::BreathingAmplitude { .. }
        ));
        assert!(matches!(
            bad(HeadMotion { breathing_axis_base: [0.0; 3], ..HeadMotion::default() }),
            MotionError::BreathingAxis
        ));
        assert!(matches!(
            bad(HeadMotion { drift_mm_per_min: [20.0, 0.0, 0.0], ..HeadMotion::default() }),
            MotionError::Drift { .. }
        ));
        let step =
            |time_s, x| HeadMotion { steps: vec![HeadMove::shift(time_s, [x, 0.0, 0.0])], ..HeadMotion::default() };
        assert!(matches!(bad(step(-1.0, 1.0)), MotionError::StepTime { index: 0, .. }));
        assert!(matches!(bad(step(1.0, 80.0)), MotionError::StepDistance { index: 0, .. }));
        assert!(matches!(bad(step(1.0, f64::NAN)), MotionError::StepDistance { .. }));
        assert!(MovingSkin::new(flat(), step(1.0, 80.0)).is_err());
        let msg = MotionError::BreathingPeriod { period_s: 0.0 }.to_string();
        assert!(msg.contains("breathing_period_s"), "{msg}");
    }

    proptest! {
        #[test]
        fn breathing_offset_never_exceeds_the_amplitude(
            amplitude in 0.0f64..5.0, period in 0.5f64..10.0, seed in any::<u64>(), t in 0.0f64..1.0e4,
        ) {
            let m = HeadMotion::breathing(amplitude, period, seed).must();
            prop_assert!(m.head_offset_base_mm(t).norm() <= amplitude * (1.0 + 1e-12) + 1e-12);
        }

        #[test]
        fn moving_skin_surface_is_the_inner_surface_translated(
            x in -50.0f64..50.0, y in -50.0f64..50.0, t in 0.0f64..100.0, seed in any::<u64>(),
        ) {
            let mut m = HeadMotion::breathing(0.5, 4.0, seed).must();
            m.drift_mm_per_min = [0.1, -0.2, 0.05];
            let inner = FnSkin::new(Isometry3::identity(), |x: f64, y: f64| Some(0.01 * x * x - 0.02 * y));
            let skin = MovingSkin::new(inner, m.clone()).must();
            let o = m.head_offset_base_mm(t);
            let z = skin.surface_z_base_at(x + o.x, y + o.y, t).must();
            prop_assert!((z - (0.01 * x * x - 0.02 * y + o.z)).abs() < 1e-9);
            // A point on the moved surface maps back to the same head point as before moving.
            let p = nalgebra::Point3::new(x + o.x, y + o.y, z);
            let h = skin.head_from_base_at(t) * p;
            let h0 = nalgebra::Point3::new(x, y, 0.01 * x * x - 0.02 * y);
            prop_assert!((h - h0).norm() < 1e-9);
        }

        /// A head that turns on the rest: every point of the inner surface, carried by the
        /// head's motion, lies on the moved surface and maps back to the same head point.
        #[test]
        fn turned_head_carries_its_surface_and_frame(
            x in -30.0f64..30.0, y in -30.0f64..30.0,
            roll in -5.0f64..5.0, pitch in -5.0f64..5.0, yaw in -10.0f64..10.0,
            tx in -2.0f64..2.0, ty in -2.0f64..2.0, tz in -2.0f64..2.0,
        ) {
            let base_from_head = Isometry3::from_parts(
                Translation3::new(100.0, 20.0, 150.0),
                UnitQuaternion::from_euler_angles(0.0, 25f64.to_radians(), 0.0),
            );
            let surface = |x: f64, y: f64| Some(150.0 + 40.0 - 0.004 * ((x - 100.0).powi(2) + (y - 20.0).powi(2)));
            let inner = FnSkin::new(base_from_head.inverse(), surface);
            let step = HeadMove { time_s: 1.0, translation_mm: [tx, ty, tz], rotation_deg: [roll, pitch, yaw] };
            let motion = HeadMotion { steps: vec![step], registered_base_from_head: base_from_head, ..HeadMotion::default() };
            let skin = MovingSkin::new(inner, motion.clone()).must();
            // Before the step nothing moved.
            let z_before = skin.surface_z_base_at(100.0 + x, 20.0 + y, 0.5).must();
            prop_assert!((z_before - surface(100.0 + x, 20.0 + y).must()).abs() < 1e-12);
            let p_inner = nalgebra::Point3::new(100.0 + x, 20.0 + y, surface(100.0 + x, 20.0 + y).must());
            let p_true = motion.base_delta(2.0) * p_inner;
            let z = skin.surface_z_base_at(p_true.x, p_true.y, 2.0).must();
            prop_assert!((z - p_true.z).abs() < 1e-5, "surface {z} vs carried point {}", p_true.z);
            let h = skin.head_from_base_at(2.0) * p_true;
            let h0 = base_from_head.inverse() * p_inner;
            prop_assert!((h - h0).norm() < 1e-9);
            // The head centre moves by exactly the step's translation (registered head frame).
            let c = motion.base_delta(2.0) * nalgebra::Point3::from(base_from_head.translation.vector);
            let expect = base_from_head * nalgebra::Point3::new(tx, ty, tz);
            prop_assert!((c - expect).norm() < 1e-9);
        }
    }
}

//! The axes the simulated controller drives, and what they mean for the needle.
//!
//! Three profiles, as the rig's `axes` (see `smp_core::arm` for the conventions):
//! - `xyz`: X Y Z are the needle tip in the base frame, mm; the needle points straight down.
//!   Exactly stock grbl 1.1: an A, B or C word is `error:20`.
//! - `xyzab`: X Y Z the tip (RTCP), A B degrees; the needle points along
//!   `Rx(A) Ry(B) (0, 0, -1)`. F is the tip feed (mm/min) and, for a move that only turns A/B,
//!   degrees/min of the A/B step (LinuxCNC's rule, as the rig file says).
//! - `joints`: X Y Z A B C are joints J1..J6 in degrees; the needle is the forward kinematics
//!   of the DH arm. F is degrees/min of the Euclidean norm of the joint step.
//!
//! Every move is interpolated linearly in machine coordinates (grbl/grblHAL and LinuxCNC
//! joint mode do the same): a straight tip line in `xyz`/`xyzab`, a curved tip path in
//! `joints`, which the contact detector follows through the forward kinematics.

use nalgebra::Vector3;
use serde::{Deserialize, Serialize};
use smp_core::arm::{needle_direction_ab, Arm, ArmSpec, FiveAxisSpec, ARM_JOINTS};
use smp_core::geometry::PoseSpec;
use smp_core::kinematics::{AxisLimits, MachineDynamics};

/// Most axes any profile drives (the 6-axis arm).
pub const MAX_AXES: usize = 6;
/// A machine position: X Y Z A B C in the profile's units; unused axes stay 0.
pub type MachinePos = [f64; MAX_AXES];
/// grbl's axis letters, in axis order.
pub const AXIS_LETTERS: [u8; MAX_AXES] = *b"XYZABC";

/// Acceleration of the A/B rotaries when the rig file gives none, deg/s²: the default of the
/// rig's `[five_axis] accel_deg_per_s2` ([`ControllerConfig::for_rig`] reads the rig's value).
///
/// [`ControllerConfig::for_rig`]: super::ControllerConfig::for_rig
pub const DEFAULT_ROTARY_ACCEL_DEG_PER_S2: f64 = smp_core::arm::DEFAULT_ROTARY_ACCEL_DEG_PER_S2;
/// Acceleration of the arm's joints when the rig file gives none, deg/s²: the default of the
/// rig's `[arm] accel_deg_per_s2` ([`ControllerConfig::for_rig`] reads the rig's value).
///
/// [`ControllerConfig::for_rig`]: super::ControllerConfig::for_rig
pub const DEFAULT_JOINT_ACCEL_DEG_PER_S2: f64 = smp_core::arm::DEFAULT_JOINT_ACCEL_DEG_PER_S2;
/// Steps per degree of the A/B rotaries: 0.001 deg, under a micron at the tip (RTCP).
pub const DEFAULT_ROTARY_STEPS_PER_DEG: f64 = 1000.0;
/// Steps per degree of the arm's joints: 1e-5 deg is 0.2 µm at a 1 m reach, well under the
/// 4-decimal joint words of the compiled programs.
pub const DEFAULT_JOINT_STEPS_PER_DEG: f64 = 100_000.0;

/// Which axes the controller drives, with the tables of the rig that define them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "profile", rename_all = "snake_case", deny_unknown_fields)]
pub enum MachineAxes {
    /// Stock grbl 1.1: X Y Z, needle vertical.
    #[default]
    Xyz,
    /// X Y Z A B with RTCP.
    Xyzab {
        five_axis: FiveAxisSpec,
        /// Acceleration of A and B, deg/s² (grbl `$123`, `$124`).
        rotary_accel_deg_per_s2: f64,
        /// Steps per degree of A and B (grbl `$103`, `$104`).
        rotary_steps_per_deg: f64,
    },
    /// Six joints of a DH arm, degrees.
    Joints {
        arm: ArmSpec,
        /// The needle on the flange (the rig's `flange_from_needle`).
        flange_from_needle: PoseSpec,
        /// Acceleration of every joint, deg/s² (grbl `$120`-`$125`).
        joint_accel_deg_per_s2: f64,
        /// Steps per degree of every joint (grbl `$100`-`$105`).
        joint_steps_per_deg: f64,
    },
}

impl MachineAxes {
    /// Number of axes: 3, 5 or 6.
    pub fn count(&self) -> usize {
        match self {
            MachineAxes::Xyz => 3,
            MachineAxes::Xyzab { .. } => 5,
            MachineAxes::Joints { .. } => ARM_JOINTS,
        }
    }

    /// True for an axis in millimetres (scaled by G20), false for one in degrees.
    pub fn is_linear(&self, axis: usize) -> bool {
        match self {
            MachineAxes::Xyz | MachineAxes::Xyzab { .. } => axis < 3,
            MachineAxes::Joints { .. } => false,
        }
    }

    /// The profile's name as the rig file spells it.
    pub fn name(&self) -> &'static str {
        match self {
            MachineAxes::Xyz => "xyz",
            MachineAxes::Xyzab { .. } => "xyzab",
            MachineAxes::Joints { .. } => "joints",
        }
    }

    /// Rate, acceleration and travel of each axis, in axis order (`count()` entries; rotary
    /// axes in degrees, deg/min and deg/s² in the `_mm` fields, as grbl's `$` table holds them).
    pub(crate) fn axis_limits(&self, dynamics: &MachineDynamics) -> Vec<AxisLimits> {
        match self {
            MachineAxes::Xyz => dynamics.axes().to_vec(),
            MachineAxes::Xyzab { five_axis, rotary_accel_deg_per_s2, .. } => {
                let mut v = dynamics.axes().to_vec();
                for r in [five_axis.a, five_axis.b] {
                    v.push(AxisLimits {
                        max_rate_mm_per_min: r.max_rate_deg_per_min,
                        accel_mm_per_s2: *rotary_accel_deg_per_s2,
                        min_mm: r.min_deg,
                        max_mm: r.max_deg,
                    });
                }
                v
            }
            MachineAxes::Joints { arm, joint_accel_deg_per_s2, .. } => arm
                .joints
                .iter()
                .map(|j| AxisLimits {
                    max_rate_mm_per_min: j.max_rate_deg_per_s * 60.0,
                    accel_mm_per_s2: *joint_accel_deg_per_s2,
                    min_mm: j.min_deg,
                    max_mm: j.max_deg,
                })
                .collect(),
        }
    }

    /// Steps per unit of each axis (`count()` entries): `steps_per_mm` for linear axes.
    pub(crate) fn steps_per_unit(&self, steps_per_mm: [f64; 3]) -> Vec<f64> {
        match self {
            MachineAxes::Xyz => steps_per_mm.to_vec(),
            MachineAxes::Xyzab { rotary_steps_per_deg, .. } => {
                let mut v = steps_per_mm.to_vec();
                v.extend([*rotary_steps_per_deg; 2]);
                v
            }
            MachineAxes::Joints { joint_steps_per_deg, .. } => vec![*joint_steps_per_deg; ARM_JOINTS],
        }
    }

    /// Checks the tables; `Err((field, problem))` names what to fix.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        match self {
            MachineAxes::Xyz => Ok(()),
            MachineAxes::Xyzab { five_axis, rotary_accel_deg_per_s2, rotary_steps_per_deg } => {
                five_axis.validate("controller config").map_err(|e| ("axes.five_axis", e.to_string()))?;
                if !positive(*rotary_accel_deg_per_s2) {
                    return Err((
                        "axes.rotary_accel_deg_per_s2",
                        format!("is {rotary_accel_deg_per_s2}; use a positive rate such as 900"),
                    ));
                }
                if !positive(*rotary_steps_per_deg) {
                    return Err((
                        "axes.rotary_steps_per_deg",
                        format!("is {rotary_steps_per_deg}; use a positive count such as 1000"),
                    ));
                }
                Ok(())
            }
            MachineAxes::Joints { arm, flange_from_needle, joint_accel_deg_per_s2, joint_steps_per_deg } => {
                arm.validate("controller config").map_err(|e| ("axes.arm", e.to_string()))?;
                flange_from_needle
                    .validate("controller config", "axes.flange_from_needle")
                    .map_err(|e| ("axes.flange_from_needle", e.to_string()))?;
                if !positive(*joint_accel_deg_per_s2) {
                    return Err((
                        "axes.joint_accel_deg_per_s2",
                        format!("is {joint_accel_deg_per_s2}; use a positive rate such as 800"),
                    ));
                }
                if !positive(*joint_steps_per_deg) {
                    return Err((
                        "axes.joint_steps_per_deg",
                        format!("is {joint_steps_per_deg}; use a positive count such as 100000"),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The needle at one machine position: tip and pointing direction (hub to tip, into the
/// skin), base frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NeedlePose {
    pub(crate) tip_mm: [f64; 3],
    /// Unit vector.
    pub(crate) dir: [f64; 3],
}

/// The vertical needle of the `xyz` profile, pointing down.
pub(crate) const DOWN: [f64; 3] = [0.0, 0.0, -1.0];

/// The runtime form of [`MachineAxes`]: what turns a machine position into a needle.
#[derive(Debug, Clone)]
pub(crate) enum Kinematics {
    Xyz,
    Xyzab,
    Joints(Box<Arm>),
}

/// Largest needle turn between two contact samples, degrees: depth along a turning needle is
/// followed to a few microns.
const MAX_SAMPLE_TURN_DEG: f64 = 0.25;
/// FK samples per block used to bound the tip's speed along a joint move.
const JOINT_RATE_SAMPLES: usize = 32;
/// Safety factor on that bound (the sampled chord under-estimates the peak speed).
const JOINT_RATE_MARGIN: f64 = 1.5;

impl Kinematics {
    /// `None` when a `joints` arm table does not have six joints (validated before).
    pub(crate) fn new(axes: &MachineAxes) -> Option<Self> {
        Some(match axes {
            MachineAxes::Xyz => Kinematics::Xyz,
            MachineAxes::Xyzab { .. } => Kinematics::Xyzab,
            MachineAxes::Joints { arm, flange_from_needle, .. } => {
                Kinematics::Joints(Box::new(Arm::new(arm, flange_from_needle.to_isometry())?))
            }
        })
    }

    pub(crate) fn needle(&self, p: &MachinePos) -> NeedlePose {
        match self {
            Kinematics::Xyz => NeedlePose { tip_mm: [p[0], p[1], p[2]], dir: DOWN },
            Kinematics::Xyzab => {
                let d = needle_direction_ab(p[3], p[4]);
                NeedlePose { tip_mm: [p[0], p[1], p[2]], dir: [d.x, d.y, d.z] }
            }
            Kinematics::Joints(arm) => {
                let q: [f64; ARM_JOINTS] = std::array::from_fn(|i| p[i].to_radians());
                let pose = arm.base_from_needle(&q);
                let t = pose.translation.vector;
                let d = pose.rotation * Vector3::new(0.0, 0.0, -1.0);
                NeedlePose { tip_mm: [t.x, t.y, t.z], dir: [d.x, d.y, d.z] }
            }
        }
    }

    /// Length of a move in its feed units (the `s` of the block): the tip distance in `xyz`,
    /// in `xyzab` unless only A/B turn (then their step in degrees), the joint step's norm in
    /// `joints`. The `xyz` sum is written exactly as before so its timing is bit-identical.
    pub(crate) fn feed_length(&self, d: &MachinePos) -> f64 {
        let xyz = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        match self {
            Kinematics::Xyz => xyz,
            Kinematics::Xyzab => {
                if xyz > 1e-9 {
                    xyz
                } else {
                    (d[3] * d[3] + d[4] * d[4]).sqrt()
                }
            }
            Kinematics::Joints(_) => d.iter().map(|v| v * v).sum::<f64>().sqrt(),
        }
    }

    /// Step along a block's `s` between two contact samples, so that the tip moves at most
    /// `tip_step_mm` and the needle turns at most [`MAX_SAMPLE_TURN_DEG`] between samples.
    pub(crate) fn sample_step(&self, start: &MachinePos, end: &MachinePos, length: f64, tip_step_mm: f64) -> f64 {
        if length.is_nan() || length <= 0.0 {
            return tip_step_mm;
        }
        match self {
            Kinematics::Xyz => tip_step_mm,
            Kinematics::Xyzab => {
                let xyz =
                    ((end[0] - start[0]).powi(2) + (end[1] - start[1]).powi(2) + (end[2] - start[2]).powi(2)).sqrt();
                let turn = ((end[3] - start[3]).powi(2) + (end[4] - start[4]).powi(2)).sqrt();
                // Per unit of s: the tip moves xyz/length mm and A/B turn turn/length degrees
                // (the needle turns no faster than the A/B step's norm).
                let tip_rate = xyz / length;
                let turn_rate = turn / length;
                let mut step = length;
                if tip_rate > 1e-12 {
                    step = step.min(tip_step_mm / tip_rate);
                }
                if turn_rate > 1e-12 {
                    step = step.min(MAX_SAMPLE_TURN_DEG / turn_rate);
                }
                step
            }
            Kinematics::Joints(_) => {
                let mut tip_peak = 0.0f64;
                let mut turn_peak = 0.0f64;
                let lerp = |u: f64| -> MachinePos { std::array::from_fn(|i| start[i] + (end[i] - start[i]) * u) };
                let mut prev = self.needle(start);
                for k in 1..=JOINT_RATE_SAMPLES {
                    let u = k as f64 / JOINT_RATE_SAMPLES as f64;
                    let cur = self.needle(&lerp(u));
                    let dt = dist(cur.tip_mm, prev.tip_mm);
                    let dot = (cur.dir[0] * prev.dir[0] + cur.dir[1] * prev.dir[1] + cur.dir[2] * prev.dir[2])
                        .clamp(-1.0, 1.0);
                    tip_peak = tip_peak.max(dt);
                    turn_peak = turn_peak.max(dot.acos().to_degrees());
                    prev = cur;
                }
                // Per unit of s (the chord of one sample interval covers length/N of s).
                let per_s = JOINT_RATE_SAMPLES as f64 * JOINT_RATE_MARGIN / length;
                // Every joint turns the needle at most by its own step: bound the turn too.
                let turn_rate = (turn_peak * per_s).max(1e-12);
                let tip_rate = (tip_peak * per_s).max(1e-12);
                (tip_step_mm / tip_rate).min(MAX_SAMPLE_TURN_DEG / turn_rate).min(length)
            }
        }
    }

    /// The Cartesian tip workspace applies (`joints`: the rig's dynamics table bounds the tip).
    pub(crate) fn tip_workspace_applies(&self) -> bool {
        matches!(self, Kinematics::Joints(_))
    }
}

pub(crate) fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// The axis limits padded to [`MAX_AXES`] (unused axes unlimited, never checked).
pub(crate) fn padded_limits(v: &[AxisLimits]) -> [AxisLimits; MAX_AXES] {
    let free = AxisLimits { max_rate_mm_per_min: 1.0, accel_mm_per_s2: 1.0, min_mm: 0.0, max_mm: 0.0 };
    std::array::from_fn(|i| v.get(i).copied().unwrap_or(free))
}

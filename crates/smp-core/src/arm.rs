//! Kinematics of the profiles that tilt the needle: the 5-axis (`xyzab`) head-type table and
//! the 6-axis arm (`joints`, standard Denavit-Hartenberg), with forward and inverse kinematics.
//!
//! Why it lives in the core: the G-code compiler and its independent verifier both need the
//! same machine model (the verifier re-derives every tip pose from the program text), and the
//! simulator's controller must execute the same convention.
//!
//! # `xyzab` convention (RTCP / tool-centre-point controlled)
//! Machine X Y Z are the needle tip in the base frame, mm, whatever A and B are (the
//! controller compensates the pivot, as LinuxCNC `TCP` kinematics or a Fanuc `G43.4` do).
//! A rotates about base +x, B about base +y, applied to the needle as
//! `base_R_needle = Rx(A) * Ry(B)`; at A = B = 0 the needle points straight down (base -z), as
//! in the `xyz` profile. The needle's pointing direction (from the hub towards the skin) is
//! therefore `Rx(A) Ry(B) (0, 0, -1) = (-sin B, cos B sin A, -cos B cos A)`.
//!
//! # `joints` convention
//! Joint i moves the DH frame i-1 -> i by `Rz(q_i + theta_offset) Tz(d) Tx(a) Rx(alpha)`
//! (standard DH); the product of the six is `base_from_flange`, the base frame being DH frame
//! 0. The needle tip is `base_from_flange * rig.flange_from_needle`, and the needle points
//! along its frame's -z (as in the other profiles).

use nalgebra::{Isometry3, Matrix6, Point3, Translation3, UnitQuaternion, Vector3, Vector6};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{check_range, SpecError};
use crate::kinematics::AxisLimits;

/// Limits of one rotary axis of the 5-axis head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RotaryAxis {
    pub min_deg: f64,
    pub max_deg: f64,
    /// Fastest rotation the axis makes, degrees per minute (grbl/LinuxCNC unit for rotaries).
    pub max_rate_deg_per_min: f64,
}

/// Acceleration of the A/B rotaries when the rig file gives none, deg/s²: 900 deg/s² takes
/// the default 90 deg/s in 0.1 s. Rig files written before the field existed keep this value.
pub const DEFAULT_ROTARY_ACCEL_DEG_PER_S2: f64 = 900.0;
/// Acceleration of the arm's joints when the rig file gives none, deg/s² (a UR5e-class arm is
/// specified for about 800 deg/s²).
pub const DEFAULT_JOINT_ACCEL_DEG_PER_S2: f64 = 800.0;

fn default_rotary_accel_deg_per_s2() -> f64 {
    DEFAULT_ROTARY_ACCEL_DEG_PER_S2
}

fn default_joint_accel_deg_per_s2() -> f64 {
    DEFAULT_JOINT_ACCEL_DEG_PER_S2
}

/// The `[five_axis]` table of an `xyzab` rig: limits of A (about base x) and B (about base y).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FiveAxisSpec {
    pub a: RotaryAxis,
    pub b: RotaryAxis,
    /// Acceleration of A and B, deg/s² (grbl `$123`, `$124`). The simulated controller paces
    /// the rotaries with it and the planner's arm-time estimate times re-orientations with it.
    #[serde(default = "default_rotary_accel_deg_per_s2")]
    pub accel_deg_per_s2: f64,
}

impl FiveAxisSpec {
    pub fn validate(&self, what: &'static str) -> Result<(), SpecError> {
        for (name, ax) in [("a", self.a), ("b", self.b)] {
            // |B| = 90 leaves A undefined (gimbal lock); A beyond 90 is a needle pointing up.
            check_range(what, &format!("five_axis.{name}.min_deg"), ax.min_deg, -89.0, 0.0)?;
            check_range(what, &format!("five_axis.{name}.max_deg"), ax.max_deg, 0.0, 89.0)?;
            check_range(what, &format!("five_axis.{name}.max_rate_deg_per_min"), ax.max_rate_deg_per_min, 1.0, 1e6)?;
        }
        check_range(what, "five_axis.accel_deg_per_s2", self.accel_deg_per_s2, 1.0, 1e6)?;
        Ok(())
    }

    /// Rate, acceleration and travel of A and B as grbl's `$` table holds them (degrees,
    /// deg/min and deg/s² in the `_mm` fields), for the per-axis block model
    /// ([`crate::kinematics::axes_block_limits`]).
    pub fn axis_limits(&self) -> [AxisLimits; 2] {
        [self.a, self.b].map(|r| AxisLimits {
            max_rate_mm_per_min: r.max_rate_deg_per_min,
            accel_mm_per_s2: self.accel_deg_per_s2,
            min_mm: r.min_deg,
            max_mm: r.max_deg,
        })
    }

    /// True when A and B (degrees) lie inside the axes' limits.
    pub fn within_limits(&self, a_deg: f64, b_deg: f64) -> bool {
        let eps = 1e-9;
        a_deg >= self.a.min_deg - eps
            && a_deg <= self.a.max_deg + eps
            && b_deg >= self.b.min_deg - eps
            && b_deg <= self.b.max_deg + eps
    }
}

/// Needle orientation (needle frame into base frame) for rotary positions A, B in degrees.
pub fn base_rotation_needle_ab(a_deg: f64, b_deg: f64) -> UnitQuaternion<f64> {
    UnitQuaternion::from_axis_angle(&Vector3::x_axis(), a_deg.to_radians())
        * UnitQuaternion::from_axis_angle(&Vector3::y_axis(), b_deg.to_radians())
}

/// Pointing direction of the needle (hub to tip, into the skin) for A, B in degrees, base frame.
pub fn needle_direction_ab(a_deg: f64, b_deg: f64) -> Vector3<f64> {
    base_rotation_needle_ab(a_deg, b_deg) * Vector3::new(0.0, 0.0, -1.0)
}

/// A and B (degrees, |B| < 90) that point the needle along `direction` (base frame, any
/// length); `None` for a zero or non-finite direction.
pub fn ab_deg_for_direction(direction: &Vector3<f64>) -> Option<[f64; 2]> {
    let n = direction.norm();
    if !(n.is_finite() && n > 1e-12) {
        return None;
    }
    let d = direction / n;
    let b = (-d.x).clamp(-1.0, 1.0).asin();
    let a = if d.y.hypot(d.z) < 1e-12 { 0.0 } else { d.y.atan2(-d.z) };
    Some([a.to_degrees(), b.to_degrees()])
}

/// One joint of the `[[arm.joints]]` table: standard DH parameters and limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DhJoint {
    pub a_mm: f64,
    pub alpha_deg: f64,
    pub d_mm: f64,
    #[serde(default)]
    pub theta_offset_deg: f64,
    pub min_deg: f64,
    pub max_deg: f64,
    /// Fastest rotation of the joint, degrees per second.
    pub max_rate_deg_per_s: f64,
}

/// The `[arm]` table of a `joints` rig.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSpec {
    /// Exactly six joints, base to flange.
    pub joints: Vec<DhJoint>,
    /// Joint positions (degrees) where a program starts and ends, and the inverse
    /// kinematics' first seed: choose one with the needle above the head, pointing down.
    pub home_deg: Vec<f64>,
    /// Acceleration of every joint, deg/s² (grbl `$120`-`$125` of a joint-space controller).
    /// The simulated controller paces the joints with it and the planner's arm-time estimate
    /// times joint moves with it.
    #[serde(default = "default_joint_accel_deg_per_s2")]
    pub accel_deg_per_s2: f64,
}

/// Number of joints of the arm.
pub const ARM_JOINTS: usize = 6;

impl ArmSpec {
    /// Rate, acceleration and travel of each joint as grbl's `$` table holds them (degrees,
    /// deg/min and deg/s² in the `_mm` fields), base to flange.
    pub fn axis_limits(&self) -> Vec<AxisLimits> {
        self.joints
            .iter()
            .map(|j| AxisLimits {
                max_rate_mm_per_min: j.max_rate_deg_per_s * 60.0,
                accel_mm_per_s2: self.accel_deg_per_s2,
                min_mm: j.min_deg,
                max_mm: j.max_deg,
            })
            .collect()
    }

    pub fn validate(&self, what: &'static str) -> Result<(), SpecError> {
        if self.joints.len() != ARM_JOINTS {
            return Err(SpecError::invalid(
                what,
                "arm.joints",
                format!("has {} joints; give exactly six `[[arm.joints]]` tables", self.joints.len()),
            ));
        }
        if self.home_deg.len() != ARM_JOINTS {
            return Err(SpecError::invalid(what, "arm.home_deg", "must hold six joint angles in degrees"));
        }
        check_range(what, "arm.accel_deg_per_s2", self.accel_deg_per_s2, 1.0, 1e6)?;
        for (i, j) in self.joints.iter().enumerate() {
            let f = |name: &str| format!("arm.joints[{i}].{name}");
            check_range(what, &f("a_mm"), j.a_mm, -5000.0, 5000.0)?;
            check_range(what, &f("d_mm"), j.d_mm, -5000.0, 5000.0)?;
            check_range(what, &f("alpha_deg"), j.alpha_deg, -360.0, 360.0)?;
            check_range(what, &f("theta_offset_deg"), j.theta_offset_deg, -360.0, 360.0)?;
            check_range(what, &f("min_deg"), j.min_deg, -720.0, 720.0)?;
            check_range(what, &f("max_deg"), j.max_deg, j.min_deg, 720.0)?;
            check_range(what, &f("max_rate_deg_per_s"), j.max_rate_deg_per_s, 0.1, 10_000.0)?;
            check_range(what, &format!("arm.home_deg[{i}]"), self.home_deg[i], j.min_deg, j.max_deg)?;
        }
        Ok(())
    }
}

/// Why the inverse kinematics found no joint solution.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum IkError {
    #[error(
        "pose not reached: {residual_mm:.4} mm and {residual_deg:.4} deg off after {iterations} iterations; \
         it is out of the arm's reach or at a singularity, reposition the head or the arm base"
    )]
    Unreachable { residual_mm: f64, residual_deg: f64, iterations: usize },
    #[error(
        "joint {joint} would be at {value_deg:.3} deg, outside its limits [{min_deg}, {max_deg}] deg; \
         reposition the head, or widen the limit in the rig file if the arm allows it"
    )]
    JointLimit { joint: usize, value_deg: f64, min_deg: f64, max_deg: f64 },
    #[error("IK input is not finite (seed or target holds NaN)")]
    NonFinite,
}

/// A 6-axis arm built from an [`ArmSpec`] and the needle's mounting on the flange.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    joints: [DhJoint; ARM_JOINTS],
    flange_from_needle: Isometry3<f64>,
}

/// Orientation residual is weighted as this many mm per radian in the IK's least squares, so
/// that a 1 mrad error counts like 0.1 mm at the needle.
const IK_ORIENTATION_WEIGHT_MM: f64 = 100.0;
/// IK converges when the tip is this close, mm, ...
pub const IK_TOL_MM: f64 = 1e-8;
/// ... and the orientation this close, rad.
pub const IK_TOL_RAD: f64 = 1e-10;
const IK_MAX_ITERATIONS: usize = 200;

impl Arm {
    /// `None` unless the spec has exactly six joints (validate the rig first).
    pub fn new(spec: &ArmSpec, flange_from_needle: Isometry3<f64>) -> Option<Self> {
        let joints: [DhJoint; ARM_JOINTS] = spec.joints.clone().try_into().ok()?;
        Some(Arm { joints, flange_from_needle })
    }

    pub fn joints(&self) -> &[DhJoint; ARM_JOINTS] {
        &self.joints
    }

    /// Transforms of DH frames 1..=6 in the base frame, for joint angles in radians.
    fn frames(&self, q_rad: &[f64; ARM_JOINTS]) -> [Isometry3<f64>; ARM_JOINTS] {
        let mut t = Isometry3::identity();
        let mut out = [Isometry3::identity(); ARM_JOINTS];
        for (i, (j, q)) in self.joints.iter().zip(q_rad).enumerate() {
            let theta = q + j.theta_offset_deg.to_radians();
            let link = Isometry3::from_parts(
                Translation3::new(0.0, 0.0, j.d_mm),
                UnitQuaternion::from_axis_angle(&Vector3::z_axis(), theta),
            ) * Isometry3::from_parts(
                Translation3::new(j.a_mm, 0.0, 0.0),
                UnitQuaternion::from_axis_angle(&Vector3::x_axis(), j.alpha_deg.to_radians()),
            );
            t *= link;
            out[i] = t;
        }
        out
    }

    /// Flange pose for joint angles in radians.
    pub fn base_from_flange(&self, q_rad: &[f64; ARM_JOINTS]) -> Isometry3<f64> {
        self.frames(q_rad)[ARM_JOINTS - 1]
    }

    /// Needle pose (tip at the origin, pointing along its -z) for joint angles in radians.
    pub fn base_from_needle(&self, q_rad: &[f64; ARM_JOINTS]) -> Isometry3<f64> {
        self.base_from_flange(q_rad) * self.flange_from_needle
    }

    /// Geometric Jacobian at the needle tip: rows 0-2 tip velocity (mm/rad), rows 3-5 angular
    /// velocity (rad/rad), base frame.
    pub fn jacobian(&self, q_rad: &[f64; ARM_JOINTS]) -> Matrix6<f64> {
        let frames = self.frames(q_rad);
        let tip = (frames[ARM_JOINTS - 1] * self.flange_from_needle).translation.vector;
        let mut jac = Matrix6::zeros();
        for i in 0..ARM_JOINTS {
            let (z, o) = if i == 0 {
                (Vector3::z(), Vector3::zeros())
            } else {
                (frames[i - 1].rotation * Vector3::z(), frames[i - 1].translation.vector)
            };
            let v = z.cross(&(tip - o));
            jac.fixed_view_mut::<3, 1>(0, i).copy_from(&v);
            jac.fixed_view_mut::<3, 1>(3, i).copy_from(&z);
        }
        jac
    }

    /// First joint (0-based) outside its limits, with its value in degrees.
    pub fn limit_violation(&self, q_rad: &[f64; ARM_JOINTS]) -> Option<(usize, f64)> {
        self.joints.iter().zip(q_rad).enumerate().find_map(|(i, (j, q))| {
            let d = q.to_degrees();
            (d < j.min_deg - 1e-9 || d > j.max_deg + 1e-9).then_some((i, d))
        })
    }

    /// Weighted 6-vector residual `target - current` (position mm, orientation as a rotation
    /// vector scaled by [`IK_ORIENTATION_WEIGHT_MM`]) and its unweighted parts.
    fn residual(&self, target: &Isometry3<f64>, q: &[f64; ARM_JOINTS]) -> (Vector6<f64>, f64, f64) {
        let cur = self.base_from_needle(q);
        let dp = target.translation.vector - cur.translation.vector;
        let dr = (target.rotation * cur.rotation.inverse()).scaled_axis();
        let mut e = Vector6::zeros();
        e.fixed_view_mut::<3, 1>(0, 0).copy_from(&dp);
        e.fixed_view_mut::<3, 1>(3, 0).copy_from(&(dr * IK_ORIENTATION_WEIGHT_MM));
        (e, dp.norm(), dr.norm())
    }

    /// Joint angles (radians) that put the needle at `base_from_needle`, by damped least
    /// squares (Levenberg-Marquardt) from `seed_rad`. Seeding from the previous waypoint's
    /// solution keeps consecutive solutions on the same branch (no elbow or wrist flips).
    /// The result is checked against the joint limits, never silently clamped.
    pub fn solve_ik(
        &self,
        base_from_needle: &Isometry3<f64>,
        seed_rad: &[f64; ARM_JOINTS],
    ) -> Result<[f64; ARM_JOINTS], IkError> {
        let finite = seed_rad.iter().all(|v| v.is_finite())
            && base_from_needle.translation.vector.iter().all(|v| v.is_finite())
            && base_from_needle.rotation.coords.iter().all(|v| v.is_finite());
        if !finite {
            return Err(IkError::NonFinite);
        }
        let mut q = *seed_rad;
        let (mut e, mut ep, mut er) = self.residual(base_from_needle, &q);
        let mut cost = e.norm_squared();
        let mut lambda = 1e-2;
        let mut iterations = 0;
        while iterations < IK_MAX_ITERATIONS && !(ep < IK_TOL_MM && er < IK_TOL_RAD) {
            iterations += 1;
            let mut jac = self.jacobian(&q);
            for r in 3..6 {
                for c in 0..ARM_JOINTS {
                    jac[(r, c)] *= IK_ORIENTATION_WEIGHT_MM;
                }
            }
            let jtj = jac.transpose() * jac;
            let jte = jac.transpose() * e;
            let mut improved = false;
            for _ in 0..12 {
                let mut a = jtj;
                for k in 0..ARM_JOINTS {
                    a[(k, k)] += lambda * (1.0 + jtj[(k, k)]);
                }
                let Some(dq) = a.lu().solve(&jte) else {
                    lambda *= 10.0;
                    continue;
                };
                let cand: [f64; ARM_JOINTS] = std::array::from_fn(|k| q[k] + dq[k]);
                let (e2, ep2, er2) = self.residual(base_from_needle, &cand);
                let cost2 = e2.norm_squared();
                if cost2.is_finite() && cost2 < cost {
                    (q, e, ep, er, cost) = (cand, e2, ep2, er2, cost2);
                    lambda = (lambda / 10.0).max(1e-12);
                    improved = true;
                    break;
                }
                lambda *= 10.0;
            }
            if !improved {
                break;
            }
        }
        if !(ep < IK_TOL_MM && er < IK_TOL_RAD) {
            return Err(IkError::Unreachable { residual_mm: ep, residual_deg: er.to_degrees(), iterations });
        }
        if let Some((joint, value_deg)) = self.limit_violation(&q) {
            let j = self.joints[joint];
            return Err(IkError::JointLimit { joint: joint + 1, value_deg, min_deg: j.min_deg, max_deg: j.max_deg });
        }
        Ok(q)
    }
}

/// Needle pose with the tip at `tip` pointing along `direction` (into the skin). The roll about
/// the needle is free for a round needle; it is fixed by putting the needle frame's x axis as
/// close as possible to `roll_reference` (any vector not parallel to the needle), so that
/// consecutive targets differ by the least wrist motion.
pub fn needle_pose(
    tip: &Point3<f64>,
    direction: &Vector3<f64>,
    roll_reference: &Vector3<f64>,
) -> Option<Isometry3<f64>> {
    let z = -direction.try_normalize(1e-12)?;
    let mut x = roll_reference - z * z.dot(roll_reference);
    if x.norm() < 1e-6 {
        // Reference along the needle: any perpendicular will do.
        let other = if z.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
        x = other - z * z.dot(&other);
    }
    let x = x.normalize();
    let y = z.cross(&x);
    let m = nalgebra::Matrix3::from_columns(&[x, y, z]);
    let rot = UnitQuaternion::from_matrix(&m);
    Some(Isometry3::from_parts(Translation3::new(tip.x, tip.y, tip.z), rot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    /// A UR5e-like arm, as in calibration/rig-6axis.toml.
    pub(crate) fn test_arm() -> Arm {
        let j = |a_mm: f64, alpha_deg: f64, d_mm: f64, min_deg: f64, max_deg: f64| DhJoint {
            a_mm,
            alpha_deg,
            d_mm,
            theta_offset_deg: 0.0,
            min_deg,
            max_deg,
            max_rate_deg_per_s: 180.0,
        };
        let spec = ArmSpec {
            joints: vec![
                j(0.0, 90.0, 162.5, -360.0, 360.0),
                j(-425.0, 0.0, 0.0, -360.0, 360.0),
                j(-392.2, 0.0, 0.0, -180.0, 180.0),
                j(0.0, 90.0, 133.3, -360.0, 360.0),
                j(0.0, -90.0, 99.7, -360.0, 360.0),
                j(0.0, 0.0, 99.6, -360.0, 360.0),
            ],
            home_deg: vec![0.0, -90.0, 90.0, -90.0, -90.0, 0.0],
            accel_deg_per_s2: DEFAULT_JOINT_ACCEL_DEG_PER_S2,
        };
        let flange_from_needle = Isometry3::from_parts(
            Translation3::new(0.0, 0.0, 120.0),
            UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
        );
        Arm::new(&spec, flange_from_needle).expect("six joints")
    }

    #[test]
    fn ab_round_trip_and_zero_points_down() {
        let d = needle_direction_ab(0.0, 0.0);
        assert_relative_eq!(d, Vector3::new(0.0, 0.0, -1.0), epsilon = 1e-12);
        for (a, b) in [(10.0, -20.0), (-45.0, 30.0), (60.0, 60.0), (0.0, -80.0)] {
            let d = needle_direction_ab(a, b);
            let [a2, b2] = ab_deg_for_direction(&d).expect("direction");
            assert_relative_eq!(a, a2, epsilon = 1e-9);
            assert_relative_eq!(b, b2, epsilon = 1e-9);
        }
        assert!(ab_deg_for_direction(&Vector3::zeros()).is_none());
    }

    #[test]
    fn jacobian_matches_finite_differences() {
        let arm = test_arm();
        let q = [0.3, -1.2, 1.4, -1.7, -1.5, 0.4];
        let jac = arm.jacobian(&q);
        let h = 1e-6;
        for i in 0..6 {
            let mut qp = q;
            qp[i] += h;
            let mut qm = q;
            qm[i] -= h;
            let dp = (arm.base_from_needle(&qp).translation.vector - arm.base_from_needle(&qm).translation.vector)
                / (2.0 * h);
            for r in 0..3 {
                assert_relative_eq!(jac[(r, i)], dp[r], epsilon = 1e-4);
            }
        }
    }

    #[test]
    fn unreachable_and_joint_limit_are_named() {
        let arm = test_arm();
        let home =
            [0.0, -90.0f64.to_radians(), 90.0f64.to_radians(), -90.0f64.to_radians(), -90.0f64.to_radians(), 0.0];
        let far = needle_pose(&Point3::new(3000.0, 0.0, 0.0), &-Vector3::z(), &Vector3::x()).expect("pose");
        let err = arm.solve_ik(&far, &home).expect_err("out of reach");
        assert!(matches!(err, IkError::Unreachable { .. }), "{err}");
        // Joint 3 limited to [-10, 10] deg: a pose that needs ~90 deg is refused by joint.
        let mut tight = arm.clone();
        tight.joints[2].min_deg = -10.0;
        tight.joints[2].max_deg = 10.0;
        let target = arm.base_from_needle(&home);
        let err = tight.solve_ik(&target, &home).expect_err("beyond the limit");
        assert!(matches!(err, IkError::JointLimit { joint: 3, .. }), "{err}");
        assert!(err.to_string().contains("joint 3"), "{err}");
    }

    fn joint_config() -> impl Strategy<Value = [f64; 6]> {
        // Away from the elbow (q3 = 0) and wrist (q5 = 0) singularities.
        (
            -2.5f64..2.5,
            -2.8f64..-0.4,
            prop_oneof![0.3f64..2.6, -2.6f64..-0.3],
            -3.0f64..3.0,
            prop_oneof![0.3f64..2.8, -2.8f64..-0.3],
            -3.0f64..3.0,
        )
            .prop_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn fk_of_ik_is_the_pose(q in joint_config(), noise in proptest::array::uniform6(-0.1f64..0.1)) {
            let arm = test_arm();
            let target = arm.base_from_needle(&q);
            let seed: [f64; 6] = std::array::from_fn(|i| q[i] + noise[i]);
            let sol = arm.solve_ik(&target, &seed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let got = arm.base_from_needle(&sol);
            let dp = (got.translation.vector - target.translation.vector).norm();
            let dr = (got.rotation * target.rotation.inverse()).angle();
            prop_assert!(dp < 1e-6, "position off by {dp} mm");
            prop_assert!(dr < 1e-6, "orientation off by {dr} rad");
            prop_assert!(arm.limit_violation(&sol).is_none());
        }
    }
}

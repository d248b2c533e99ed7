//! The rig: arm profile, dynamics, tool and cameras (calibration/rig.toml).

use nalgebra::{Isometry3, Translation3, Vector3};
use serde::{Deserialize, Serialize};

use crate::arm::{Arm, ArmSpec, FiveAxisSpec};
use crate::camera::CameraIntrinsics;
use crate::error::{check_range, check_version, parse_toml, SpecError};
use crate::geometry::PoseSpec;
use crate::kinematics::MachineDynamics;
use crate::TOML_FORMAT_VERSION;

/// Which axes the controller drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AxisProfile {
    /// Needle kept vertical: 3-axis controllers such as stock grbl 1.1.
    Xyz,
    /// 5-axis: X Y Z plus A/B rotaries keeping the needle normal to the scalp.
    Xyzab,
    /// 6-axis arm driven in joint space.
    Joints,
}

/// The close-up camera on the flange.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlangeCamera {
    pub intrinsics: CameraIntrinsics,
    pub flange_from_camera: PoseSpec,
    /// Distance from camera to skin when scanning, mm.
    pub standoff_mm: f64,
}

/// The fixed overview camera that takes the patient photo.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OverviewCamera {
    pub intrinsics: CameraIntrinsics,
    pub base_from_camera: PoseSpec,
}

/// Where a calibration came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    pub date: String,
    pub method: String,
    #[serde(default)]
    pub reprojection_rms_px: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SerialSpec {
    pub baud: u32,
}

/// The clinic's hard caps for this machine and needle, above any session spec: a plan (or an
/// edited plan.json) asking for more is refused before a line is compiled. `[limits]` in the
/// rig file; absent, the defaults below (the clinical ranges of ../shared/DOMAIN.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RigLimits {
    /// Deepest depth limit a session may set, mm (upper to mid dermis: 1.5 mm).
    pub max_depth_limit_mm: f64,
    /// Longest dwell a session may set, s.
    pub max_dwell_s: f64,
    /// Fastest feed a session may allow, mm/min.
    pub max_feed_mm_per_min: f64,
}

impl Default for RigLimits {
    fn default() -> Self {
        RigLimits { max_depth_limit_mm: 1.5, max_dwell_s: 1.0, max_feed_mm_per_min: 12_000.0 }
    }
}

impl RigLimits {
    /// The first of a session's settings above these caps: (field, session's, cap).
    pub fn exceeded_by(&self, spec: &crate::plan::SessionSpec) -> Option<(&'static str, f64, f64)> {
        [
            ("depth_limit_mm", spec.depth_limit_mm, self.max_depth_limit_mm),
            ("dwell_s", spec.dwell_s, self.max_dwell_s),
            ("max_feed_mm_per_min", spec.max_feed_mm_per_min, self.max_feed_mm_per_min),
        ]
        .into_iter()
        .find(|&(_, v, cap)| !v.le(&cap)) // NaN is within no cap
    }
}

/// Everything about the hardware that the software must know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rig {
    pub version: u32,
    pub name: String,
    pub axes: AxisProfile,
    pub serial: SerialSpec,
    pub dynamics: MachineDynamics,
    /// Needle tip (tool centre point) in the flange frame.
    pub flange_from_needle: PoseSpec,
    pub flange_camera: FlangeCamera,
    pub overview_camera: OverviewCamera,
    /// Where the head rest holds the patient's head frame: the nominal registration used
    /// until fiducial registration refines it.
    pub head_rest: PoseSpec,
    pub calibration: CalibrationInfo,
    /// `xyz` only: steepest skin (angle between its outward normal and base +z, degrees) the
    /// vertical needle may enter; a plan's own `max_tilt_deg` applies too. None: the plan's.
    #[serde(default)]
    pub xyz_max_tilt_deg: Option<f64>,
    /// `xyzab` only (required there): limits of the A/B rotaries; see [`crate::arm`] for the
    /// kinematic convention.
    #[serde(default)]
    pub five_axis: Option<FiveAxisSpec>,
    /// `joints` only (required there): DH parameters and joint limits of the 6-axis arm.
    #[serde(default)]
    pub arm: Option<ArmSpec>,
    /// Fixed cameras facing the head band's markers, for registering and tracking the head
    /// (the overview camera sees the band nearly edge-on). Empty in rig files without them.
    #[serde(default)]
    pub band_cameras: Vec<BandCamera>,
    /// Hard caps on what a session may ask of this machine.
    #[serde(default)]
    pub limits: RigLimits,
}

/// A calibrated camera fixed in the base frame, facing the head band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandCamera {
    /// Unique name, used in logs and frame files.
    pub label: String,
    pub intrinsics: CameraIntrinsics,
    pub base_from_camera: PoseSpec,
}

impl Rig {
    pub const WHAT: &'static str = "rig";

    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        let rig: Rig = parse_toml(Self::WHAT, text)?;
        rig.validate()?;
        Ok(rig)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        const W: &str = Rig::WHAT;
        let mut labels = std::collections::BTreeSet::new();
        for (k, c) in self.band_cameras.iter().enumerate() {
            let field = format!("band_cameras[{k}]");
            if c.label.trim().is_empty() || !labels.insert(c.label.as_str()) {
                return Err(SpecError::invalid(
                    W,
                    format!("{field}.label"),
                    "give each band camera a unique, non-empty label",
                ));
            }
            c.intrinsics.validate(W, &format!("{field}.intrinsics"))?;
            c.base_from_camera.validate(W, &format!("{field}.base_from_camera"))?;
        }
        check_version(W, self.version, TOML_FORMAT_VERSION)?;
        if !matches!(self.serial.baud, 9600 | 19200 | 38400 | 57600 | 115200 | 230400 | 250000 | 460800 | 921600) {
            return Err(SpecError::invalid(
                W,
                "serial.baud",
                format!("is {}; use a standard rate such as 115200", self.serial.baud),
            ));
        }
        self.dynamics.validate(W)?;
        self.flange_from_needle.validate(W, "flange_from_needle")?;
        self.flange_camera.intrinsics.validate(W, "flange_camera.intrinsics")?;
        self.flange_camera.flange_from_camera.validate(W, "flange_camera.flange_from_camera")?;
        check_range(W, "flange_camera.standoff_mm", self.flange_camera.standoff_mm, 5.0, 1000.0)?;
        check_range(W, "limits.max_depth_limit_mm", self.limits.max_depth_limit_mm, 0.1, 2.0)?;
        check_range(W, "limits.max_dwell_s", self.limits.max_dwell_s, 0.0, 5.0)?;
        check_range(W, "limits.max_feed_mm_per_min", self.limits.max_feed_mm_per_min, 1.0, 60_000.0)?;
        self.overview_camera.intrinsics.validate(W, "overview_camera.intrinsics")?;
        self.overview_camera.base_from_camera.validate(W, "overview_camera.base_from_camera")?;
        self.head_rest.validate(W, "head_rest")?;
        if let Some(t) = self.xyz_max_tilt_deg {
            check_range(W, "xyz_max_tilt_deg", t, 0.0, 90.0)?;
        }
        if let Some(f) = &self.five_axis {
            f.validate(W)?;
        } else if self.axes == AxisProfile::Xyzab {
            return Err(SpecError::invalid(
                W,
                "five_axis",
                "is missing; an `xyzab` rig needs `[five_axis.a]` and `[five_axis.b]`",
            ));
        }
        if let Some(a) = &self.arm {
            a.validate(W)?;
        } else if self.axes == AxisProfile::Joints {
            return Err(SpecError::invalid(
                W,
                "arm",
                "is missing; a `joints` rig needs `[arm]` with six `[[arm.joints]]`",
            ));
        }
        Ok(())
    }

    pub fn base_from_head_nominal(&self) -> Isometry3<f64> {
        self.head_rest.to_isometry()
    }

    /// Needle pose for a machine position in the `xyz` profile: the tip at `machine_mm`
    /// (machine coordinates are the tip in the base frame), needle vertical.
    pub fn base_from_needle_xyz(&self, machine_mm: [f64; 3]) -> Isometry3<f64> {
        Isometry3::from_parts(Translation3::new(machine_mm[0], machine_mm[1], machine_mm[2]), Default::default())
    }

    /// Flange-camera pose for a machine position in the `xyz` profile.
    pub fn base_from_flange_camera_xyz(&self, machine_mm: [f64; 3]) -> Isometry3<f64> {
        let needle_from_flange = self.flange_from_needle.to_isometry().inverse();
        self.base_from_needle_xyz(machine_mm) * needle_from_flange * self.flange_camera.flange_from_camera.to_isometry()
    }

    /// Machine position that puts the flange camera's optical centre `standoff_mm` straight
    /// above `target_base` (base frame), looking down, in the `xyz` profile.
    pub fn machine_for_camera_over_xyz(&self, target_base: [f64; 3]) -> [f64; 3] {
        let camera_at_zero = self.base_from_flange_camera_xyz([0.0; 3]);
        let offset: Vector3<f64> = camera_at_zero.translation.vector;
        let camera = Vector3::new(target_base[0], target_base[1], target_base[2] + self.flange_camera.standoff_mm);
        let m = camera - offset;
        [m.x, m.y, m.z]
    }

    /// The 6-axis arm model of a `joints` rig (None for other rigs or an invalid arm table).
    pub fn arm_model(&self) -> Option<Arm> {
        Arm::new(self.arm.as_ref()?, self.flange_from_needle.to_isometry())
    }

    /// Needle pose for machine position X Y Z A B of the `xyzab` profile (TCP convention of
    /// [`crate::arm`]): tip at X Y Z, needle rotated by `Rx(A) Ry(B)`.
    pub fn base_from_needle_xyzab(&self, machine: [f64; 5]) -> Isometry3<f64> {
        Isometry3::from_parts(
            Translation3::new(machine[0], machine[1], machine[2]),
            crate::arm::base_rotation_needle_ab(machine[3], machine[4]),
        )
    }

    /// The default simulated rig shipped in `calibration/rig.toml`.
    pub fn default_sim() -> Self {
        // The file is part of the build: a broken default is a build-time bug, caught by a test.
        Rig::from_toml_str(DEFAULT_RIG_TOML).unwrap_or_else(|e| panic!("embedded calibration/rig.toml is invalid: {e}"))
    }
}

/// The default rig, embedded so that `smp demo` needs no files.
pub const DEFAULT_RIG_TOML: &str = include_str!("../../../calibration/rig.toml");
/// The simulated 5-axis rig (`xyzab`), for tests and `--rig`.
pub const XYZAB_RIG_TOML: &str = include_str!("../../../calibration/rig-xyzab.toml");
/// The simulated 6-axis arm rig (`joints`), for tests and `--rig`.
pub const SIX_AXIS_RIG_TOML: &str = include_str!("../../../calibration/rig-6axis.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn default_rig_parses_and_camera_looks_down() {
        let rig = Rig::default_sim();
        let cam = rig.base_from_flange_camera_xyz([100.0, 0.0, 50.0]);
        let optical_axis = cam.rotation * Vector3::z();
        assert_relative_eq!(optical_axis.z, -1.0, epsilon = 1e-9);
        let m = rig.machine_for_camera_over_xyz([10.0, 20.0, 30.0]);
        let cam = rig.base_from_flange_camera_xyz(m);
        assert_relative_eq!(cam.translation.vector.x, 10.0, epsilon = 1e-9);
        assert_relative_eq!(cam.translation.vector.z, 30.0 + rig.flange_camera.standoff_mm, epsilon = 1e-9);
    }

    #[test]
    fn tilting_rigs_parse_and_need_their_tables() {
        let r5 = Rig::from_toml_str(XYZAB_RIG_TOML).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r5.axes, AxisProfile::Xyzab);
        assert!(r5.five_axis.is_some());
        let r6 = Rig::from_toml_str(SIX_AXIS_RIG_TOML).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r6.axes, AxisProfile::Joints);
        assert!(r6.arm_model().is_some());
        let no_table = XYZAB_RIG_TOML.replace("[five_axis.", "[unused_five_axis.");
        let err = Rig::from_toml_str(&no_table).expect_err("five_axis required");
        assert!(err.to_string().contains("five_axis"), "{err}");
        // The default rig has none of the new tables and keeps parsing.
        assert!(Rig::default_sim().five_axis.is_none());
    }

    #[test]
    fn rotary_and_joint_accelerations_default_and_are_validated() {
        use crate::arm::{DEFAULT_JOINT_ACCEL_DEG_PER_S2, DEFAULT_ROTARY_ACCEL_DEG_PER_S2};
        let r5 = Rig::from_toml_str(XYZAB_RIG_TOML).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r5.five_axis.map(|f| f.accel_deg_per_s2), Some(900.0));
        let r6 = Rig::from_toml_str(SIX_AXIS_RIG_TOML).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r6.arm.as_ref().map(|a| a.accel_deg_per_s2), Some(800.0));
        // Rig files written before the fields existed parse with the defaults.
        let old5 = XYZAB_RIG_TOML.replace("accel_deg_per_s2 = 900.0", "");
        let r = Rig::from_toml_str(&old5).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.five_axis.map(|f| f.accel_deg_per_s2), Some(DEFAULT_ROTARY_ACCEL_DEG_PER_S2));
        let old6 = SIX_AXIS_RIG_TOML.replace("accel_deg_per_s2 = 800.0", "");
        let r = Rig::from_toml_str(&old6).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.arm.as_ref().map(|a| a.accel_deg_per_s2), Some(DEFAULT_JOINT_ACCEL_DEG_PER_S2));
        for (text, bad, field) in [
            (XYZAB_RIG_TOML, "accel_deg_per_s2 = -5.0", "five_axis.accel_deg_per_s2"),
            (XYZAB_RIG_TOML, "accel_deg_per_s2 = nan", "five_axis.accel_deg_per_s2"),
            (SIX_AXIS_RIG_TOML, "accel_deg_per_s2 = 0.0", "arm.accel_deg_per_s2"),
            (SIX_AXIS_RIG_TOML, "accel_deg_per_s2 = inf", "arm.accel_deg_per_s2"),
        ] {
            let good = if text == XYZAB_RIG_TOML { "accel_deg_per_s2 = 900.0" } else { "accel_deg_per_s2 = 800.0" };
            let err = Rig::from_toml_str(&text.replace(good, bad)).expect_err(bad);
            assert!(err.to_string().contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn nan_in_rig_names_the_field() {
        let bad = DEFAULT_RIG_TOML.replacen("fx_px = 2000.0", "fx_px = nan", 1);
        let err = Rig::from_toml_str(&bad).expect_err("NaN must be rejected");
        assert!(err.to_string().contains("flange_camera.intrinsics.fx_px"), "{err}");
    }

    #[test]
    fn the_rigs_hard_caps_stand_above_the_session_spec() {
        let rig = Rig::default_sim();
        assert_eq!(rig.limits, RigLimits::default(), "absent [limits]: the defaults");
        let spec = crate::plan::SessionSpec::from_toml_str(include_str!("../../../sim/sessions/crown-s1.toml"))
            .expect("the demo's spec");
        assert_eq!(rig.limits.exceeded_by(&spec), None);
        let deep = crate::plan::SessionSpec { depth_limit_mm: 1.8, ..spec.clone() };
        assert_eq!(rig.limits.exceeded_by(&deep), Some(("depth_limit_mm", 1.8, 1.5)));
        let slow = crate::plan::SessionSpec { dwell_s: f64::NAN, ..spec };
        assert!(rig.limits.exceeded_by(&slow).is_some(), "NaN is not within a cap");
        let text = DEFAULT_RIG_TOML;
        assert!(text.contains("max_depth_limit_mm = 1.5"), "the shipped rig states its caps");
        let e = Rig::from_toml_str(&text.replace("max_depth_limit_mm = 1.5", "max_depth_limit_mm = 9.0"));
        assert!(e.expect_err("a cap beyond 2 mm").to_string().contains("limits.max_depth_limit_mm"));
        let e = Rig::from_toml_str(&text.replace("max_depth_limit_mm = 1.5", "max_depht_limit_mm = 1.0"));
        assert!(e.is_err(), "typos refused");
    }
}

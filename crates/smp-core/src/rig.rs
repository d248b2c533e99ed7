//! The rig: arm profile, dynamics, tool and cameras (calibration/rig.toml).

use nalgebra::{Isometry3, Translation3, Vector3};
use serde::{Deserialize, Serialize};

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
        self.overview_camera.intrinsics.validate(W, "overview_camera.intrinsics")?;
        self.overview_camera.base_from_camera.validate(W, "overview_camera.base_from_camera")?;
        self.head_rest.validate(W, "head_rest")?;
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

    /// The default simulated rig shipped in `calibration/rig.toml`.
    pub fn default_sim() -> Self {
        // The file is part of the build: a broken default is a build-time bug, caught by a test.
        Rig::from_toml_str(DEFAULT_RIG_TOML).unwrap_or_else(|e| panic!("embedded calibration/rig.toml is invalid: {e}"))
    }
}

/// The default rig, embedded so that `smp demo` needs no files.
pub const DEFAULT_RIG_TOML: &str = include_str!("../../../calibration/rig.toml");

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
    fn nan_in_rig_names_the_field() {
        let bad = DEFAULT_RIG_TOML.replacen("fx_px = 2000.0", "fx_px = nan", 1);
        let err = Rig::from_toml_str(&bad).expect_err("NaN must be rejected");
        assert!(err.to_string().contains("flange_camera.intrinsics.fx_px"), "{err}");
    }
}

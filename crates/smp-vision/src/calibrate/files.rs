//! Calibration files: versioned TOML in `calibration/`, each with the date, the method and
//! the residuals, so an engineer can tell how good a calibration was and when it was made.
//!
//! The date is handed in by the caller (the library owns no clock). Parsing reports the
//! field at fault: serde names a missing or mistyped field, `validate` names a value out of
//! range.

use nalgebra::{Isometry3, Point3, Vector3};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use smp_core::camera::CameraIntrinsics;
use smp_core::error::{check_range, check_version, parse_toml};
use smp_core::geometry::PoseSpec;
use smp_core::SpecError;

use super::{HandEyeCalibration, IntrinsicsCalibration, TcpCalibration};

/// Version of the calibration files this build writes and reads.
pub const CALIBRATION_FILE_VERSION: u32 = 1;

/// A versioned calibration file: read and written only when its values pass `validate`,
/// so a file on disk always holds what a session may use.
pub trait CalibrationFile: Serialize + DeserializeOwned {
    /// What the file is, for error messages.
    const WHAT: &'static str;

    /// Checks the version, date, method and every value's range, naming the field.
    fn validate(&self) -> Result<(), SpecError>;

    fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        let f: Self = parse_toml(Self::WHAT, text)?;
        f.validate()?;
        Ok(f)
    }

    fn to_toml_string(&self) -> Result<String, SpecError> {
        self.validate()?;
        toml::to_string_pretty(self)
            .map_err(|e| SpecError::Parse { what: Self::WHAT, message: format!("cannot write: {e}") })
    }
}

fn check_common(what: &'static str, version: u32, date: &str, method: &str) -> Result<(), SpecError> {
    check_version(what, version, CALIBRATION_FILE_VERSION)?;
    if date.trim().is_empty() {
        return Err(SpecError::invalid(what, "date", "is empty; write when the calibration was made (ISO 8601)"));
    }
    if method.trim().is_empty() {
        return Err(SpecError::invalid(what, "method", "is empty; say how the calibration was made"));
    }
    Ok(())
}

fn check_non_negative(what: &'static str, field: &str, v: f64) -> Result<(), SpecError> {
    check_range(what, field, v, 0.0, 1e6)
}

/// `calibration/flange_camera_intrinsics.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrinsicsFile {
    pub version: u32,
    /// When the calibration was made, ISO 8601.
    pub date: String,
    pub method: String,
    /// Overall reprojection RMS, px.
    pub reprojection_rms_px: f64,
    pub views_used: usize,
    /// Each rejected view as `label: reason`.
    #[serde(default)]
    pub views_rejected: Vec<String>,
    pub intrinsics: CameraIntrinsics,
}

impl IntrinsicsFile {
    pub fn from_calibration(cal: &IntrinsicsCalibration, date: &str) -> IntrinsicsFile {
        IntrinsicsFile {
            version: CALIBRATION_FILE_VERSION,
            date: date.to_string(),
            method: cal.method.clone(),
            reprojection_rms_px: cal.rms_px,
            views_used: cal.views.len(),
            views_rejected: cal.rejected.iter().map(|r| format!("{}: {}", r.label, r.reason)).collect(),
            intrinsics: cal.intrinsics,
        }
    }
}

impl CalibrationFile for IntrinsicsFile {
    const WHAT: &'static str = "intrinsics calibration file";

    fn validate(&self) -> Result<(), SpecError> {
        check_common(Self::WHAT, self.version, &self.date, &self.method)?;
        check_non_negative(Self::WHAT, "reprojection_rms_px", self.reprojection_rms_px)?;
        self.intrinsics.validate(Self::WHAT, "intrinsics")
    }
}

/// `calibration/hand_eye.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandEyeFile {
    pub version: u32,
    pub date: String,
    pub method: String,
    pub rotation_residual_deg: f64,
    pub translation_residual_mm: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprojection_rms_px: Option<f64>,
    pub views: usize,
    /// The camera's pose on the flange, as `rig.toml`'s `[flange_camera.flange_from_camera]`.
    pub flange_from_camera: PoseSpec,
}

impl HandEyeFile {
    pub fn from_calibration(cal: &HandEyeCalibration, views: usize, date: &str) -> HandEyeFile {
        HandEyeFile {
            version: CALIBRATION_FILE_VERSION,
            date: date.to_string(),
            method: cal.method.clone(),
            rotation_residual_deg: cal.rotation_residual_deg,
            translation_residual_mm: cal.translation_residual_mm,
            reprojection_rms_px: cal.reprojection_rms_px,
            views,
            flange_from_camera: PoseSpec::from_isometry(&cal.flange_from_camera),
        }
    }

    pub fn flange_from_camera(&self) -> Isometry3<f64> {
        self.flange_from_camera.to_isometry()
    }
}

impl CalibrationFile for HandEyeFile {
    const WHAT: &'static str = "hand-eye calibration file";

    fn validate(&self) -> Result<(), SpecError> {
        check_common(Self::WHAT, self.version, &self.date, &self.method)?;
        check_non_negative(Self::WHAT, "rotation_residual_deg", self.rotation_residual_deg)?;
        check_non_negative(Self::WHAT, "translation_residual_mm", self.translation_residual_mm)?;
        if let Some(r) = self.reprojection_rms_px {
            check_non_negative(Self::WHAT, "reprojection_rms_px", r)?;
        }
        self.flange_from_camera.validate(Self::WHAT, "flange_from_camera")
    }
}

/// `calibration/needle_tip.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFile {
    pub version: u32,
    pub date: String,
    pub method: String,
    pub rms_mm: f64,
    pub poses: usize,
    pub spread_deg: f64,
    /// The needle tip in the flange frame.
    pub flange_from_needle_tip_mm: [f64; 3],
    /// The pivot point in the base frame (a by-product, useful to check the fixture).
    pub base_pivot_mm: [f64; 3],
}

impl TcpFile {
    pub fn from_calibration(cal: &TcpCalibration, poses: usize, date: &str) -> TcpFile {
        let t = cal.flange_from_needle_tip_mm;
        let p = cal.base_pivot_mm;
        TcpFile {
            version: CALIBRATION_FILE_VERSION,
            date: date.to_string(),
            method: "pivot, linear least squares".into(),
            rms_mm: cal.rms_mm,
            poses,
            spread_deg: cal.spread_deg,
            flange_from_needle_tip_mm: [t.x, t.y, t.z],
            base_pivot_mm: [p.x, p.y, p.z],
        }
    }

    pub fn flange_from_needle_tip(&self) -> Vector3<f64> {
        Vector3::from(self.flange_from_needle_tip_mm)
    }

    pub fn base_pivot(&self) -> Point3<f64> {
        Point3::from(self.base_pivot_mm)
    }
}

impl CalibrationFile for TcpFile {
    const WHAT: &'static str = "needle tip calibration file";

    fn validate(&self) -> Result<(), SpecError> {
        check_common(Self::WHAT, self.version, &self.date, &self.method)?;
        check_non_negative(Self::WHAT, "rms_mm", self.rms_mm)?;
        check_range(Self::WHAT, "spread_deg", self.spread_deg, 0.0, 180.0)?;
        for (i, v) in self.flange_from_needle_tip_mm.iter().enumerate() {
            check_range(Self::WHAT, &format!("flange_from_needle_tip_mm[{i}]"), *v, -2000.0, 2000.0)?;
        }
        for (i, v) in self.base_pivot_mm.iter().enumerate() {
            check_range(Self::WHAT, &format!("base_pivot_mm[{i}]"), *v, -10_000.0, 10_000.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp() -> TcpFile {
        TcpFile {
            version: 1,
            date: "2026-11-26T01:00:00Z".into(),
            method: "pivot, linear least squares".into(),
            rms_mm: 0.02,
            poses: 8,
            spread_deg: 40.0,
            flange_from_needle_tip_mm: [0.0, 0.0, -100.0],
            base_pivot_mm: [200.0, 0.0, 30.0],
        }
    }

    #[test]
    fn files_round_trip_and_errors_name_the_field() {
        let t = tcp();
        let text = t.to_toml_string().expect("writes");
        assert_eq!(TcpFile::from_toml_str(&text).expect("reads"), t);
        let missing = text.lines().filter(|l| !l.starts_with("rms_mm")).collect::<Vec<_>>().join("\n");
        let e = TcpFile::from_toml_str(&missing).expect_err("missing field").to_string();
        assert!(e.contains("rms_mm"), "{e}");
        let bad = text.replace("rms_mm = 0.02", "rms_mm = -1.0");
        let e = TcpFile::from_toml_str(&bad).expect_err("negative").to_string();
        assert!(e.contains("rms_mm"), "{e}");
        let v2 = text.replace("version = 1", "version = 2");
        assert!(matches!(TcpFile::from_toml_str(&v2), Err(SpecError::Version { .. })));

        let he = HandEyeFile {
            version: 1,
            date: "2026-11-26".into(),
            method: "park + LM(reprojection)".into(),
            rotation_residual_deg: 0.01,
            translation_residual_mm: 0.02,
            reprojection_rms_px: Some(0.2),
            views: 15,
            flange_from_camera: PoseSpec { translation_mm: [40.0, 0.0, -60.0], rpy_deg: [180.0, 0.0, 0.0] },
        };
        let text = he.to_toml_string().expect("writes");
        assert_eq!(HandEyeFile::from_toml_str(&text).expect("reads"), he);
        let e = HandEyeFile::from_toml_str(&text.replace("date = \"2026-11-26\"", "date = \"\"")).expect_err("date");
        assert!(e.to_string().contains("date"), "{e}");

        let intr = IntrinsicsFile {
            version: 1,
            date: "2026-11-26".into(),
            method: "opencv calibrateCamera".into(),
            reprojection_rms_px: 0.1,
            views_used: 20,
            views_rejected: vec!["view 3: blurred".into()],
            intrinsics: CameraIntrinsics {
                width_px: 800,
                height_px: 600,
                fx_px: 2000.0,
                fy_px: 2000.0,
                cx_px: 400.0,
                cy_px: 300.0,
                distortion: [-0.05, 0.01, 0.0, 0.0, 0.0],
            },
        };
        let text = intr.to_toml_string().expect("writes");
        assert_eq!(IntrinsicsFile::from_toml_str(&text).expect("reads"), intr);
        let e = IntrinsicsFile::from_toml_str(&text.replace("fx_px = 2000.0", "fx_px = -3.0")).expect_err("fx");
        assert!(e.to_string().contains("fx_px"), "{e}");
    }
}

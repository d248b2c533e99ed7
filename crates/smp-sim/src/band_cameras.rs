//! The fixed cameras that watch the head band's ArUco markers, and the band's layout as the
//! clinic would measure it, for registering and tracking the head in simulation.
//!
//! Why extra cameras: the overview camera looks down on the crown and sees the band's
//! markers nearly edge-on (tens of pixels of corner error), and the flange camera looks at
//! the scalp. Registration to a few hundredths of a millimetre needs cameras facing the
//! band with markers on both sides in view. The default rig file lists them
//! (`[[band_cameras]]`); for rig files that do not, they are placed here relative to the
//! rig's nominal head rest. Their poses are known exactly, as every camera of the simulated
//! rig is.

use nalgebra::{Isometry3, Point3, Rotation3, Translation3, UnitQuaternion, Vector3};
use smp_core::camera::CameraIntrinsics;
use smp_core::fiducial_layout::{ArucoDictionary, FiducialLayout, LayoutMarker};
use smp_core::rig::Rig;
use smp_core::SpecError;

use crate::patient::SyntheticPatient;

/// A camera fixed in the base frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedCamera {
    pub label: String,
    pub intrinsics: CameraIntrinsics,
    pub base_from_camera: Isometry3<f64>,
}

/// A camera at `eye` (head frame) looking at `target` (head frame), image +y toward the
/// base's -z, fixed in the base at `base_from_head` (it does not follow the head).
pub fn look_at(
    label: &str,
    intrinsics: CameraIntrinsics,
    base_from_head: &Isometry3<f64>,
    eye: Point3<f64>,
    target: Point3<f64>,
) -> FixedCamera {
    let (eye_b, target_b) = (base_from_head * eye, base_from_head * target);
    let z = (target_b - eye_b).normalize();
    let down = -Vector3::z();
    let y = (down - z * down.dot(&z)).normalize();
    let x = y.cross(&z);
    let rot = Rotation3::from_basis_unchecked(&[x, y, z]);
    FixedCamera {
        label: label.to_string(),
        intrinsics,
        base_from_camera: Isometry3::from_parts(
            Translation3::from(eye_b.coords),
            UnitQuaternion::from_rotation_matrix(&rot),
        ),
    }
}

/// The rig's band cameras (`[[band_cameras]]` in the rig file), or [`default_band_cameras`]
/// for a rig file that lists none.
pub fn band_cameras(rig: &Rig) -> Vec<FixedCamera> {
    if !rig.band_cameras.is_empty() {
        return rig
            .band_cameras
            .iter()
            .map(|c| FixedCamera {
                label: c.label.clone(),
                intrinsics: c.intrinsics,
                base_from_camera: c.base_from_camera.to_isometry(),
            })
            .collect();
    }
    default_band_cameras(rig)
}

/// Four band cameras at ±30° and ±120° around the nominal head, 350 mm out and a little
/// above the band, with the overview camera's optics cropped to 800 x 600 (a 190 x 140 mm
/// field at 350 mm, so renders stay fast). `calibration/rig.toml` lists exactly these.
pub fn default_band_cameras(rig: &Rig) -> Vec<FixedCamera> {
    let bfh = rig.base_from_head_nominal();
    let intr = rig.overview_camera.intrinsics;
    let band = CameraIntrinsics { width_px: 800, height_px: 600, cx_px: 400.0, cy_px: 300.0, ..intr };
    [30.0f64, -30.0, 120.0, -120.0]
        .iter()
        .map(|az| {
            let a = az.to_radians();
            let dir = Vector3::new(a.cos(), a.sin(), 0.25).normalize();
            let target = Point3::new(0.0, 0.0, 20.0) + Vector3::new(a.cos(), a.sin(), 0.0) * 60.0;
            look_at(&format!("band{az:+.0}"), band, &bfh, Point3::from(dir * 350.0), target)
        })
        .collect()
}

/// The band as the clinic would have measured it when strapping it on: each marker's pose
/// and corners in the head frame. `None` when the patient wears no band.
pub fn measured_layout(patient: &SyntheticPatient) -> Result<Option<FiducialLayout>, SpecError> {
    if patient.truth_fiducials().is_empty() {
        return Ok(None);
    }
    let mut markers = Vec::new();
    for f in patient.truth_fiducials() {
        let dict = ArucoDictionary::from_name(&f.dictionary).ok_or_else(|| {
            SpecError::invalid("fiducial layout", "dictionary", format!("{} is not a known dictionary", f.dictionary))
        })?;
        markers.push(LayoutMarker {
            corners_head_mm: Some(f.corners_head_mm),
            ..LayoutMarker::from_pose(f.id, dict, f.size_mm, &f.head_from_marker)
        });
    }
    FiducialLayout::new("simulated band", markers).map(Some)
}

#[cfg(test)]
mod rig_file_tests {
    use super::*;

    #[test]
    fn the_default_rig_file_lists_the_default_band_cameras() {
        let rig = Rig::default_sim();
        assert_eq!(rig.band_cameras.len(), 4);
        let listed = band_cameras(&rig);
        let placed = default_band_cameras(&rig);
        for (a, b) in listed.iter().zip(&placed) {
            assert_eq!(a.label, b.label);
            assert_eq!(a.intrinsics, b.intrinsics);
            let d = a.base_from_camera.inverse() * b.base_from_camera;
            assert!(d.translation.vector.norm() < 1e-6 && d.rotation.angle() < 1e-9, "{}: {d:?}", a.label);
        }
    }
}

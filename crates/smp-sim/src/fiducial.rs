//! ArUco fiducials on a head band: their spec in the patient file, validation, and their
//! ground-truth pose and corners in the head frame.
//!
//! Why: the real clinic straps a band with printed ArUco markers around the head so that
//! vision can track head motion between the overview and flange cameras. The simulator must
//! know exactly where each marker corner is to score that tracking. This module gives their
//! truth; `render` draws them (DICT_4X4_50 patterns through `charuco::aruco_4x4_is_white`)
//! and `render::fiducial_corners_px` gives their corners in a view's pixels.
//!
//! Marker frame (OpenCV's ArUco convention, as `cv::aruco::estimatePoseSingleMarkers`
//! returns it): origin at the marker centre, +z out of the printed face (away from the head),
//! +y toward the top of the printed pattern, +x to its right; corners in ArUco order
//! top-left, top-right, bottom-right, bottom-left at `(∓s/2, ±s/2, 0)`.

use nalgebra::{Isometry3, Point3, Rotation3, Translation3, UnitQuaternion, Vector3};
use serde::{Deserialize, Serialize};
use smp_core::error::check_range;
use smp_core::geometry::Ellipsoid;
use smp_core::SpecError;

/// One marker on the head band, as written in `[[fiducials]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiducialSpec {
    /// Marker id in `dictionary`.
    pub id: u32,
    /// OpenCV predefined dictionary name, e.g. "DICT_4X4_50" (the default).
    #[serde(default = "default_dictionary")]
    pub dictionary: String,
    /// Side length of the black square (outer border of the code), mm.
    pub size_mm: f64,
    /// Where on the band: azimuth from the nose toward the patient's left, degrees.
    pub azimuth_deg: f64,
    /// Height of the band at the marker: head-frame z of the marker centre, mm.
    pub height_mm: f64,
    /// Band thickness under the marker: the face sits this far out along the skin normal, mm.
    #[serde(default = "default_standoff_mm")]
    pub standoff_mm: f64,
    /// Turn of the printed pattern about its outward normal, degrees (0 = top toward the
    /// vertex, positive counter-clockwise seen from outside).
    #[serde(default)]
    pub rotation_deg: f64,
}

fn default_dictionary() -> String {
    "DICT_4X4_50".to_string()
}
/// A printed label on an elastic band: about 2 mm.
fn default_standoff_mm() -> f64 {
    2.0
}

/// OpenCV's predefined ArUco dictionaries and how many markers each holds.
const DICTIONARIES: [(&str, u32); 17] = [
    ("DICT_4X4_50", 50),
    ("DICT_4X4_100", 100),
    ("DICT_4X4_250", 250),
    ("DICT_4X4_1000", 1000),
    ("DICT_5X5_50", 50),
    ("DICT_5X5_100", 100),
    ("DICT_5X5_250", 250),
    ("DICT_5X5_1000", 1000),
    ("DICT_6X6_50", 50),
    ("DICT_6X6_100", 100),
    ("DICT_6X6_250", 250),
    ("DICT_6X6_1000", 1000),
    ("DICT_7X7_50", 50),
    ("DICT_7X7_100", 100),
    ("DICT_7X7_250", 250),
    ("DICT_7X7_1000", 1000),
    ("DICT_ARUCO_ORIGINAL", 1024),
];

/// Ground truth of one marker.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthFiducial {
    pub id: u32,
    pub dictionary: String,
    pub size_mm: f64,
    /// Pose of the marker frame (module doc) in the head frame.
    pub head_from_marker: Isometry3<f64>,
    /// Corners in ArUco order (top-left, top-right, bottom-right, bottom-left), head frame, mm.
    pub corners_head_mm: [[f64; 3]; 4],
}

impl FiducialSpec {
    /// Checks the numbers against this head, naming the field (`prefix` like "fiducials[0]").
    pub fn validate(&self, what: &'static str, prefix: &str, ell: &Ellipsoid) -> Result<(), SpecError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let Some((_, n)) = DICTIONARIES.iter().find(|(d, _)| *d == self.dictionary) else {
            let names: Vec<&str> = DICTIONARIES.iter().map(|d| d.0).collect();
            return Err(SpecError::invalid(
                what,
                field("dictionary"),
                format!("is \"{}\"; use one of {}", self.dictionary, names.join(", ")),
            ));
        };
        if self.id >= *n {
            return Err(SpecError::invalid(
                what,
                field("id"),
                format!("is {}; {} holds ids 0 to {}", self.id, self.dictionary, n - 1),
            ));
        }
        check_range(what, &field("size_mm"), self.size_mm, 3.0, 60.0)?;
        check_range(what, &field("azimuth_deg"), self.azimuth_deg, -360.0, 360.0)?;
        let c = ell.semi_axes_mm[2];
        // A band stays on the side of the head: not over the vertex, not below the skull.
        check_range(what, &field("height_mm"), self.height_mm, -0.5 * c, 0.8 * c)?;
        check_range(what, &field("standoff_mm"), self.standoff_mm, 0.0, 20.0)?;
        check_range(what, &field("rotation_deg"), self.rotation_deg, -360.0, 360.0)?;
        Ok(())
    }

    /// Pose and corners on this head. The marker centre is the skin point at `azimuth_deg`
    /// and `height_mm`, moved out by `standoff_mm` along the skin normal; the marker is flat,
    /// tangent to the skin there, its top toward the vertex (then turned by `rotation_deg`).
    /// `None` if the height leaves no skin at that azimuth (validation prevents it).
    pub fn truth(&self, ell: &Ellipsoid) -> Option<TruthFiducial> {
        let [a, b, c] = ell.semi_axes_mm;
        let ring = 1.0 - (self.height_mm / c).powi(2);
        if !(ring > 0.0 && ring.is_finite()) {
            return None;
        }
        let (sa, ca) = self.azimuth_deg.to_radians().sin_cos();
        let r = ring.sqrt() / ((ca / a).powi(2) + (sa / b).powi(2)).sqrt();
        let skin = Point3::new(r * ca, r * sa, self.height_mm);
        let z = ell.normal(&skin);
        let up = Vector3::z() - z * z.dot(&Vector3::z());
        let y0 = if up.norm() > 1e-9 { up.normalize() } else { Vector3::x() };
        let x0 = y0.cross(&z);
        let (s, co) = self.rotation_deg.to_radians().sin_cos();
        let x = x0 * co + y0 * s;
        let y = z.cross(&x);
        let rot = Rotation3::from_basis_unchecked(&[x, y, z]);
        let centre = skin + z * self.standoff_mm;
        let head_from_marker =
            Isometry3::from_parts(Translation3::from(centre.coords), UnitQuaternion::from_rotation_matrix(&rot));
        let h = 0.5 * self.size_mm;
        let corners = [(-h, h), (h, h), (h, -h), (-h, -h)].map(|(u, v)| {
            let p = head_from_marker * Point3::new(u, v, 0.0);
            [p.x, p.y, p.z]
        });
        Some(TruthFiducial {
            id: self.id,
            dictionary: self.dictionary.clone(),
            size_mm: self.size_mm,
            head_from_marker,
            corners_head_mm: corners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(az: f64) -> FiducialSpec {
        FiducialSpec {
            id: 7,
            dictionary: default_dictionary(),
            size_mm: 20.0,
            azimuth_deg: az,
            height_mm: 30.0,
            standoff_mm: 2.0,
            rotation_deg: 0.0,
        }
    }

    #[test]
    fn front_marker_faces_forward_with_its_top_up() {
        let ell = Ellipsoid { semi_axes_mm: [100.0, 80.0, 88.0] };
        let t = spec(0.0).truth(&ell).expect("on the head");
        let m = t.head_from_marker;
        let z = m * Vector3::z();
        assert!(z.x > 0.8, "faces the nose: {z:?}");
        assert!((m * Vector3::y()).z > 0.5, "top toward the vertex");
        // Seen from the front the patient's left (+y head) is to the viewer's right: +x marker.
        assert!((m * Vector3::x()).y > 0.99);
        let [tl, tr, br, bl] = t.corners_head_mm.map(Vector3::from);
        approx::assert_abs_diff_eq!((tr - tl).norm(), 20.0, epsilon = 1e-9);
        approx::assert_abs_diff_eq!((br - tr).norm(), 20.0, epsilon = 1e-9);
        approx::assert_abs_diff_eq!((bl - tl).norm(), 20.0, epsilon = 1e-9);
        assert!(tl.z > bl.z);
        // The centre is 2 mm outside the skin.
        let centre = Point3::from(m.translation.vector);
        assert!(ell.implicit(&centre) > 0.0);
        let skin = centre - z * 2.0;
        assert!(ell.implicit(&skin).abs() < 1e-9);
        approx::assert_abs_diff_eq!(skin.z, 30.0, epsilon = 1e-9);
    }

    #[test]
    fn validation_names_the_field() {
        let ell = Ellipsoid { semi_axes_mm: [100.0, 80.0, 88.0] };
        spec(90.0).validate("patient", "fiducials[0]", &ell).expect("valid");
        let field = |s: FiducialSpec| match s.validate("patient", "fiducials[0]", &ell) {
            Err(SpecError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        };
        assert_eq!(field(FiducialSpec { id: 50, ..spec(0.0) }), "fiducials[0].id");
        assert_eq!(field(FiducialSpec { dictionary: "4x4".into(), ..spec(0.0) }), "fiducials[0].dictionary");
        assert_eq!(field(FiducialSpec { height_mm: 87.0, ..spec(0.0) }), "fiducials[0].height_mm");
        assert_eq!(field(FiducialSpec { size_mm: f64::NAN, ..spec(0.0) }), "fiducials[0].size_mm");
    }
}

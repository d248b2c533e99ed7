//! Layout of the ArUco markers on a patient's head band, in the head frame.
//!
//! Why here: vision registers the head from these markers, and it must never see the
//! simulator. In the clinic the layout is measured once when the band is registered to the
//! head (and saved as TOML or JSON); in tests it is built from the simulator's truth. Both
//! sides meet in this type.
//!
//! Marker frame (OpenCV's ArUco convention): origin at the centre of the black square, +z out
//! of the printed face, +y toward the top of the pattern, +x to its right; corners in ArUco
//! order top-left, top-right, bottom-right, bottom-left at `(∓s/2, ±s/2, 0)`.

use nalgebra::{Isometry3, Point3};
use serde::{Deserialize, Serialize};

use crate::error::{check_range, check_version, parse_json, parse_toml, SpecError};
use crate::geometry::PoseSpec;
use crate::TOML_FORMAT_VERSION;

/// OpenCV's predefined ArUco dictionaries (names as in `cv::aruco::PREDEFINED_DICTIONARY_NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum ArucoDictionary {
    #[default]
    #[serde(rename = "DICT_4X4_50")]
    Dict4x4_50,
    #[serde(rename = "DICT_4X4_100")]
    Dict4x4_100,
    #[serde(rename = "DICT_4X4_250")]
    Dict4x4_250,
    #[serde(rename = "DICT_4X4_1000")]
    Dict4x4_1000,
    #[serde(rename = "DICT_5X5_50")]
    Dict5x5_50,
    #[serde(rename = "DICT_5X5_100")]
    Dict5x5_100,
    #[serde(rename = "DICT_5X5_250")]
    Dict5x5_250,
    #[serde(rename = "DICT_5X5_1000")]
    Dict5x5_1000,
    #[serde(rename = "DICT_6X6_50")]
    Dict6x6_50,
    #[serde(rename = "DICT_6X6_100")]
    Dict6x6_100,
    #[serde(rename = "DICT_6X6_250")]
    Dict6x6_250,
    #[serde(rename = "DICT_6X6_1000")]
    Dict6x6_1000,
    #[serde(rename = "DICT_7X7_50")]
    Dict7x7_50,
    #[serde(rename = "DICT_7X7_100")]
    Dict7x7_100,
    #[serde(rename = "DICT_7X7_250")]
    Dict7x7_250,
    #[serde(rename = "DICT_7X7_1000")]
    Dict7x7_1000,
    #[serde(rename = "DICT_ARUCO_ORIGINAL")]
    ArucoOriginal,
}

impl ArucoDictionary {
    /// Every dictionary, in OpenCV's enum order (the index is OpenCV's `DICT_*` value).
    pub const ALL: [ArucoDictionary; 17] = [
        ArucoDictionary::Dict4x4_50,
        ArucoDictionary::Dict4x4_100,
        ArucoDictionary::Dict4x4_250,
        ArucoDictionary::Dict4x4_1000,
        ArucoDictionary::Dict5x5_50,
        ArucoDictionary::Dict5x5_100,
        ArucoDictionary::Dict5x5_250,
        ArucoDictionary::Dict5x5_1000,
        ArucoDictionary::Dict6x6_50,
        ArucoDictionary::Dict6x6_100,
        ArucoDictionary::Dict6x6_250,
        ArucoDictionary::Dict6x6_1000,
        ArucoDictionary::Dict7x7_50,
        ArucoDictionary::Dict7x7_100,
        ArucoDictionary::Dict7x7_250,
        ArucoDictionary::Dict7x7_1000,
        ArucoDictionary::ArucoOriginal,
    ];

    /// OpenCV's `cv::aruco::DICT_*` value.
    pub fn opencv_code(self) -> i32 {
        self as i32
    }

    /// The name used in files and by OpenCV, e.g. "DICT_4X4_50".
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 17] = [
            "DICT_4X4_50",
            "DICT_4X4_100",
            "DICT_4X4_250",
            "DICT_4X4_1000",
            "DICT_5X5_50",
            "DICT_5X5_100",
            "DICT_5X5_250",
            "DICT_5X5_1000",
            "DICT_6X6_50",
            "DICT_6X6_100",
            "DICT_6X6_250",
            "DICT_6X6_1000",
            "DICT_7X7_50",
            "DICT_7X7_100",
            "DICT_7X7_250",
            "DICT_7X7_1000",
            "DICT_ARUCO_ORIGINAL",
        ];
        NAMES[self as usize]
    }

    /// Looks a dictionary up by its name ("DICT_4X4_50"); `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<ArucoDictionary> {
        ArucoDictionary::ALL.into_iter().find(|d| d.name() == name)
    }

    /// How many markers the dictionary holds (valid ids are `0..marker_count`).
    pub fn marker_count(self) -> u32 {
        match self {
            ArucoDictionary::ArucoOriginal => 1024,
            d => [50, 100, 250, 1000][d as usize % 4],
        }
    }
}

/// One marker of the band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutMarker {
    /// Marker id in `dictionary`.
    pub id: u32,
    #[serde(default)]
    pub dictionary: ArucoDictionary,
    /// Side of the black square (outer border of the code), mm.
    pub size_mm: f64,
    /// Pose of the marker frame (module doc) in the head frame. Give this, or
    /// `corners_head_mm`, or both (they must then agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_from_marker: Option<PoseSpec>,
    /// Measured corners in ArUco order (top-left, top-right, bottom-right, bottom-left), head
    /// frame, mm. When given they are used as they are (a measured band is never a perfect
    /// square); otherwise they follow from `head_from_marker` and `size_mm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corners_head_mm: Option<[[f64; 3]; 4]>,
}

/// Tolerance of a measured marker against its nominal square: side length relative error.
pub const MAX_SIDE_RELATIVE_ERROR: f64 = 0.05;
/// Largest distance of a measured corner from the plane of the other three: the marker is
/// printed flat, so more than this means a mis-measured corner, mm.
pub const MAX_CORNER_NONPLANARITY_MM: f64 = 0.5;
/// Largest disagreement between `head_from_marker` and `corners_head_mm` when both are given, mm.
pub const MAX_POSE_CORNER_DISAGREEMENT_MM: f64 = 0.5;

impl LayoutMarker {
    /// Builds a marker from its pose (the simulator's truth, or a CAD band).
    pub fn from_pose(id: u32, dictionary: ArucoDictionary, size_mm: f64, head_from_marker: &Isometry3<f64>) -> Self {
        LayoutMarker {
            id,
            dictionary,
            size_mm,
            head_from_marker: Some(PoseSpec::from_isometry(head_from_marker)),
            corners_head_mm: None,
        }
    }

    /// Corners in ArUco order in the head frame, mm: the measured ones when given, else from
    /// the pose. `None` when neither is given (validation rejects that).
    pub fn corners_head(&self) -> Option<[Point3<f64>; 4]> {
        if let Some(c) = &self.corners_head_mm {
            return Some(c.map(Point3::from));
        }
        let pose = self.head_from_marker?.to_isometry();
        let h = 0.5 * self.size_mm;
        Some([(-h, h), (h, h), (h, -h), (-h, -h)].map(|(u, v)| pose * Point3::new(u, v, 0.0)))
    }

    fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        const W: &str = FiducialLayout::WHAT;
        let field = |name: &str| format!("{prefix}.{name}");
        let n = self.dictionary.marker_count();
        if self.id >= n {
            return Err(SpecError::invalid(
                W,
                field("id"),
                format!("is {}; {} holds ids 0 to {}", self.id, self.dictionary.name(), n - 1),
            ));
        }
        check_range(W, &field("size_mm"), self.size_mm, 3.0, 60.0)?;
        if let Some(p) = &self.head_from_marker {
            p.validate(W, &field("head_from_marker"))?;
        }
        let Some(measured) = &self.corners_head_mm else {
            if self.head_from_marker.is_none() {
                return Err(SpecError::invalid(
                    W,
                    prefix.to_string(),
                    "has neither head_from_marker nor corners_head_mm; give the marker's measured pose or corners",
                ));
            }
            return Ok(());
        };
        for (k, c) in measured.iter().enumerate() {
            for (i, v) in c.iter().enumerate() {
                check_range(W, &format!("{prefix}.corners_head_mm[{k}][{i}]"), *v, -1000.0, 1000.0)?;
            }
        }
        let c = measured.map(Point3::from);
        for k in 0..4 {
            let side = (c[(k + 1) % 4] - c[k]).norm();
            if (side / self.size_mm - 1.0).abs() > MAX_SIDE_RELATIVE_ERROR {
                return Err(SpecError::invalid(
                    W,
                    field("corners_head_mm"),
                    format!(
                        "side {k}-{} is {side:.2} mm but size_mm is {}; check the measurement and the corner order \
                         (top-left, top-right, bottom-right, bottom-left)",
                        (k + 1) % 4,
                        self.size_mm
                    ),
                ));
            }
        }
        let normal = (c[1] - c[0]).cross(&(c[3] - c[0]));
        let off = normal.try_normalize(1e-12).map_or(f64::INFINITY, |n| (c[2] - c[0]).dot(&n).abs());
        if off > MAX_CORNER_NONPLANARITY_MM {
            return Err(SpecError::invalid(
                W,
                field("corners_head_mm"),
                format!(
                    "corner 2 lies {off:.2} mm off the plane of the others; a printed marker is flat, re-measure it"
                ),
            ));
        }
        if let Some(p) = &self.head_from_marker {
            let from_pose = LayoutMarker { corners_head_mm: None, ..self.clone() }.corners_head();
            if let Some(fp) = from_pose {
                let worst = fp.iter().zip(&c).map(|(a, b)| (a - b).norm()).fold(0.0, f64::max);
                if worst > MAX_POSE_CORNER_DISAGREEMENT_MM {
                    return Err(SpecError::invalid(
                        W,
                        field("head_from_marker"),
                        format!(
                            "puts a corner {worst:.2} mm from corners_head_mm (pose {:?}); give one of the two, or \
                             make them agree",
                            p.translation_mm
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The markers of one head band in the head frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiducialLayout {
    pub version: u32,
    /// Free text: which band, when and how it was measured.
    #[serde(default)]
    pub description: String,
    pub markers: Vec<LayoutMarker>,
}

impl FiducialLayout {
    pub const WHAT: &'static str = "fiducial layout";

    /// A validated layout from markers (version set to this build's).
    pub fn new(description: impl Into<String>, markers: Vec<LayoutMarker>) -> Result<Self, SpecError> {
        let layout = FiducialLayout { version: TOML_FORMAT_VERSION, description: description.into(), markers };
        layout.validate()?;
        Ok(layout)
    }

    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        let layout: FiducialLayout = parse_toml(Self::WHAT, text)?;
        layout.validate()?;
        Ok(layout)
    }

    pub fn from_json_str(text: &str) -> Result<Self, SpecError> {
        let layout: FiducialLayout = parse_json(Self::WHAT, text)?;
        layout.validate()?;
        Ok(layout)
    }

    pub fn to_toml_string(&self) -> Result<String, SpecError> {
        toml::to_string_pretty(self).map_err(|e| SpecError::Parse { what: Self::WHAT, message: e.to_string() })
    }

    pub fn to_json_string(&self) -> Result<String, SpecError> {
        serde_json::to_string_pretty(self).map_err(|e| SpecError::Parse { what: Self::WHAT, message: e.to_string() })
    }

    /// Checks the version, each marker, and that no (dictionary, id) appears twice.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_version(Self::WHAT, self.version, TOML_FORMAT_VERSION)?;
        if self.markers.is_empty() {
            return Err(SpecError::invalid(
                Self::WHAT,
                "markers",
                "is empty; list each marker of the band with its id, size_mm and pose or corners",
            ));
        }
        for (i, m) in self.markers.iter().enumerate() {
            m.validate(&format!("markers[{i}]"))?;
            if let Some(j) = self.markers[..i].iter().position(|o| o.id == m.id && o.dictionary == m.dictionary) {
                return Err(SpecError::invalid(
                    Self::WHAT,
                    format!("markers[{i}].id"),
                    format!("{} of {} is also markers[{j}]; each marker id must be unique", m.id, m.dictionary.name()),
                ));
            }
        }
        Ok(())
    }

    /// The marker with this id in this dictionary.
    pub fn marker(&self, dictionary: ArucoDictionary, id: u32) -> Option<&LayoutMarker> {
        self.markers.iter().find(|m| m.id == id && m.dictionary == dictionary)
    }

    /// The distinct dictionaries of the band, sorted.
    pub fn dictionaries(&self) -> Vec<ArucoDictionary> {
        let mut d: Vec<ArucoDictionary> = self.markers.iter().map(|m| m.dictionary).collect();
        d.sort();
        d.dedup();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion, Vector3};

    fn pose() -> Isometry3<f64> {
        Isometry3::from_parts(Translation3::new(95.0, 10.0, 20.0), UnitQuaternion::from_euler_angles(0.3, 1.2, -0.4))
    }

    #[test]
    fn pose_and_corners_agree_and_round_trip() {
        let m = LayoutMarker::from_pose(7, ArucoDictionary::Dict4x4_50, 20.0, &pose());
        let c = m.corners_head().expect("pose given");
        assert!(((c[1] - c[0]).norm() - 20.0).abs() < 1e-9);
        // Top-left is at (-s/2, +s/2) in the marker frame.
        let tl = pose().inverse() * c[0];
        assert!((tl.coords - Vector3::new(-10.0, 10.0, 0.0)).norm() < 1e-9);
        let both = LayoutMarker { corners_head_mm: Some(c.map(|p| [p.x, p.y, p.z])), ..m.clone() };
        let layout = FiducialLayout::new("test band", vec![m, LayoutMarker { id: 8, ..both }]).expect("valid");
        let toml = layout.to_toml_string().expect("toml");
        assert_eq!(FiducialLayout::from_toml_str(&toml).expect("reads back").markers.len(), 2);
        let json = layout.to_json_string().expect("json");
        let back = FiducialLayout::from_json_str(&json).expect("reads back");
        assert!(toml.contains("DICT_4X4_50"));
        let c8 = back.marker(ArucoDictionary::Dict4x4_50, 8).and_then(LayoutMarker::corners_head).expect("8");
        assert!((c8[2] - c[2]).norm() < 1e-9);
        assert_eq!(back.dictionaries(), vec![ArucoDictionary::Dict4x4_50]);
    }

    #[test]
    fn validation_names_the_field() {
        let good = LayoutMarker::from_pose(7, ArucoDictionary::Dict4x4_50, 20.0, &pose());
        let field = |markers: Vec<LayoutMarker>| match FiducialLayout::new("", markers) {
            Err(SpecError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        };
        assert_eq!(field(vec![]), "markers");
        assert_eq!(field(vec![LayoutMarker { id: 50, ..good.clone() }]), "markers[0].id");
        assert_eq!(field(vec![good.clone(), good.clone()]), "markers[1].id");
        assert_eq!(field(vec![LayoutMarker { size_mm: f64::NAN, ..good.clone() }]), "markers[0].size_mm");
        assert_eq!(field(vec![LayoutMarker { head_from_marker: None, ..good.clone() }]), "markers[0]");
        let mut c = good.corners_head().expect("pose").map(|p| [p.x, p.y, p.z]);
        c[2][0] += 3.0;
        let skewed = LayoutMarker { corners_head_mm: Some(c), head_from_marker: None, ..good.clone() };
        assert_eq!(field(vec![skewed]), "markers[0].corners_head_mm");
        // Corners that disagree with the pose by 1 mm.
        let mut c = good.corners_head().expect("pose").map(|p| [p.x, p.y, p.z]);
        for p in &mut c {
            p[2] += 1.0;
        }
        assert_eq!(
            field(vec![LayoutMarker { corners_head_mm: Some(c), ..good.clone() }]),
            "markers[0].head_from_marker"
        );
        // ids above 50 are fine in a larger dictionary; a wrong version is refused.
        let big = LayoutMarker { id: 500, dictionary: ArucoDictionary::Dict5x5_1000, ..good };
        let mut layout = FiducialLayout::new("", vec![big]).expect("valid");
        layout.version = 99;
        assert!(matches!(layout.validate(), Err(SpecError::Version { .. })));
    }

    #[test]
    fn dictionary_names_and_codes_match_opencv() {
        assert_eq!(ArucoDictionary::Dict4x4_50.opencv_code(), 0);
        assert_eq!(ArucoDictionary::Dict7x7_1000.opencv_code(), 15);
        assert_eq!(ArucoDictionary::ArucoOriginal.opencv_code(), 16);
        assert_eq!(ArucoDictionary::Dict6x6_250.marker_count(), 250);
        for d in ArucoDictionary::ALL {
            assert_eq!(ArucoDictionary::from_name(d.name()), Some(d));
        }
        let text = "version = 1\n[[markers]]\nid = 3\nsize_mm = 16.0\ndictionary = \"DICT_5X5_50\"\n\
                    head_from_marker = { translation_mm = [90.0, 0.0, 20.0], rpy_deg = [0.0, 90.0, 0.0] }\n";
        let l = FiducialLayout::from_toml_str(text).expect("parses");
        assert_eq!(l.markers[0].dictionary, ArucoDictionary::Dict5x5_50);
        assert!(matches!(
            FiducialLayout::from_toml_str(&text.replace("DICT_5X5_50", "4x4")),
            Err(SpecError::Parse { .. })
        ));
    }
}

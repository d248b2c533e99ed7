//! A scan on disk: the manifest (`views.json`) that says which camera frames were taken from
//! where, and the depth-frame file format (NumPy `.npy`, float32).
//!
//! Why a manifest: `smp scan` must work from a directory of images a capture wrote, real or
//! simulated, without knowing how they were made. Each record carries what the rig knew when
//! the frame was taken (camera, intrinsics, pose from kinematics and calibration), never any
//! ground truth. A frame that never arrived is recorded as such (`image: None`), so a reader
//! can say exactly which view is missing instead of silently mapping less.

use serde::{Deserialize, Serialize};

use crate::camera::CameraIntrinsics;
use crate::error::{check_version, SpecError};
use crate::geometry::PoseSpec;
use crate::image::DepthImage;

/// The file name of a scan's manifest inside its directory.
pub const SCAN_MANIFEST_FILE: &str = "views.json";
/// The manifest format this build reads.
pub const SCAN_MANIFEST_VERSION: u32 = 1;

/// Attempts per view before a capture gives it up (the first and two retries): the host's
/// policy for a lost frame, shared by the capture that retries and the reader that warns of
/// the views it never got.
pub const MAX_CAPTURE_ATTEMPTS: usize = 3;

/// The overview camera's view label in a manifest.
pub const OVERVIEW_LABEL: &str = "overview";
const WHAT: &str = "scan manifest";

/// Which camera took a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraRole {
    /// The fixed camera that sees the whole head (segmentation, photo).
    Overview,
    /// The close-up camera on the arm's flange (follicles, surface).
    Flange,
    /// A fixed camera facing the head band's markers (registration of the head frame).
    Band,
}

/// One capture attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewRecord {
    /// The view's label (e.g. `tile003`); retries of a view share it.
    pub label: String,
    pub camera: CameraRole,
    /// 0-based index of the frame among the session's captures.
    pub frame_index: u64,
    /// The PNG file, relative to the scan directory; `None` when the frame never arrived.
    pub image: Option<String>,
    /// The depth frame (`.npy`, float32 mm along the optical axis, NaN = no return).
    #[serde(default)]
    pub depth: Option<String>,
    pub intrinsics: CameraIntrinsics,
    /// Camera pose when the frame was taken (arm kinematics and calibration).
    pub base_from_camera: PoseSpec,
}

/// `views.json`: every capture attempt of a scan, in the order they were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanManifest {
    pub version: u32,
    /// The head's registration when the scan was taken (the rig's nominal rest, or a fiducial
    /// registration).
    pub base_from_head: PoseSpec,
    pub views: Vec<ViewRecord>,
    /// The head band's markers as measured on this patient, when a band is worn: with `band`
    /// (and overview) views, a reader registers the head from them instead of trusting
    /// `base_from_head`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fiducial_layout: Option<crate::fiducial_layout::FiducialLayout>,
}

/// What a manifest says about one view label once retries are folded.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewOutcome<'a> {
    /// A frame arrived (the first that did); `lost_before` frames of it were lost first.
    Arrived { record: &'a ViewRecord, lost_before: usize },
    /// Every attempt was lost: the indices tried.
    Lost { label: &'a str, frame_indices: Vec<u64> },
}

impl ScanManifest {
    /// Parses and checks a manifest; errors name the field and the fix.
    pub fn from_json_str(text: &str) -> Result<Self, SpecError> {
        let m: ScanManifest = crate::error::parse_json(WHAT, text)?;
        m.validate()?;
        Ok(m)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        check_version(WHAT, self.version, SCAN_MANIFEST_VERSION)?;
        self.base_from_head.validate(WHAT, "base_from_head")?;
        if let Some(layout) = &self.fiducial_layout {
            layout.validate()?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, v) in self.views.iter().enumerate() {
            if v.label.trim().is_empty() {
                return Err(SpecError::invalid(WHAT, format!("views[{i}].label"), "is empty; name the view"));
            }
            if !seen.insert(v.frame_index) {
                return Err(SpecError::invalid(
                    WHAT,
                    format!("views[{i}].frame_index"),
                    format!("{} is used twice; every capture has its own index", v.frame_index),
                ));
            }
            v.base_from_camera.validate(WHAT, &format!("views[{i}].base_from_camera"))?;
            for (field, file) in [("image", &v.image), ("depth", &v.depth)] {
                if let Some(f) = file {
                    if f.contains("..") || f.starts_with('/') {
                        return Err(SpecError::invalid(
                            WHAT,
                            format!("views[{i}].{field}"),
                            format!("{f:?} leaves the scan directory; give a file name inside it"),
                        ));
                    }
                }
            }
            if v.image.is_none() && v.depth.is_some() {
                return Err(SpecError::invalid(
                    WHAT,
                    format!("views[{i}].depth"),
                    "is given for a frame that never arrived (image is null)",
                ));
            }
        }
        Ok(())
    }

    /// One outcome per view label, in the order of each label's first attempt.
    pub fn outcomes(&self) -> Vec<ViewOutcome<'_>> {
        let mut order: Vec<&str> = Vec::new();
        for v in &self.views {
            if !order.contains(&v.label.as_str()) {
                order.push(&v.label);
            }
        }
        order
            .into_iter()
            .map(|label| {
                let attempts: Vec<&ViewRecord> = self.views.iter().filter(|v| v.label == label).collect();
                match attempts.iter().position(|v| v.image.is_some()) {
                    Some(k) => ViewOutcome::Arrived { record: attempts[k], lost_before: k },
                    None => {
                        ViewOutcome::Lost { label, frame_indices: attempts.iter().map(|v| v.frame_index).collect() }
                    }
                }
            })
            .collect()
    }
}

/// Why a depth file cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpyError {
    #[error("not a NumPy .npy file (bad magic); write depth frames as float32 .npy")]
    Magic,
    #[error("unsupported .npy version {0}.x; version 1.0 or 2.0 expected")]
    Version(u8),
    #[error("truncated .npy file: {0}")]
    Truncated(&'static str),
    #[error("unsupported .npy header {0:?}: a C-order little-endian float32 2-D array ('<f4') is expected")]
    Header(String),
    #[error(".npy data holds {got} bytes, the {height}x{width} float32 header needs {want}")]
    Size { got: usize, want: usize, width: usize, height: usize },
}

impl DepthImage {
    /// The frame as a NumPy `.npy` (version 1.0, `<f4`, C order, shape (height, width)):
    /// a format every analysis tool opens.
    pub fn to_npy(&self) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", self.height, self.width);
        // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + self.z_mm.len() * 4);
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for v in &self.z_mm {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads what [`DepthImage::to_npy`] writes (and any C-order `<f4` 2-D array).
    pub fn from_npy(bytes: &[u8]) -> Result<DepthImage, NpyError> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(NpyError::Magic);
        }
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 => {
                let b = bytes.get(8..12).ok_or(NpyError::Truncated("header length"))?;
                (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
            }
            v => return Err(NpyError::Version(v)),
        };
        let header = bytes.get(start..start + header_len).ok_or(NpyError::Truncated("header"))?;
        let header = String::from_utf8_lossy(header).to_string();
        let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
        if !compact.contains("'descr':'<f4'") || !compact.contains("'fortran_order':False") {
            return Err(NpyError::Header(header.trim().to_string()));
        }
        let shape = compact
            .split("'shape':(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .ok_or_else(|| NpyError::Header(header.trim().to_string()))?;
        let dims: Vec<usize> = shape.split(',').filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect();
        let [height, width] = dims[..] else {
            return Err(NpyError::Header(header.trim().to_string()));
        };
        let data = &bytes[start + header_len..];
        let want = width * height * 4;
        if data.len() != want {
            return Err(NpyError::Size { got: data.len(), want, width, height });
        }
        let z_mm = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(DepthImage { width: width as u32, height: height as u32, z_mm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: &str, frame_index: u64, arrived: bool) -> ViewRecord {
        ViewRecord {
            label: label.to_string(),
            camera: CameraRole::Flange,
            frame_index,
            image: arrived.then(|| format!("{label}.png")),
            depth: None,
            intrinsics: CameraIntrinsics {
                width_px: 8,
                height_px: 6,
                fx_px: 10.0,
                fy_px: 10.0,
                cx_px: 4.0,
                cy_px: 3.0,
                distortion: [0.0; 5],
            },
            base_from_camera: PoseSpec::identity(),
        }
    }

    #[test]
    fn depth_round_trips_through_npy_with_nan() {
        let d = DepthImage { width: 3, height: 2, z_mm: vec![1.0, f32::NAN, 80.25, -0.0, 1e6, 7.5] };
        let bytes = d.to_npy();
        assert_eq!((bytes.len() - d.z_mm.len() * 4) % 64, 0, "header padded to 64 bytes");
        let back = DepthImage::from_npy(&bytes).map_err(|e| e.to_string());
        let back = match back {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        assert_eq!((back.width, back.height), (3, 2));
        for (a, b) in d.z_mm.iter().zip(&back.z_mm) {
            assert!(a.to_bits() == b.to_bits(), "{a} vs {b}");
        }
    }

    #[test]
    fn bad_npy_is_refused_with_the_reason() {
        assert_eq!(DepthImage::from_npy(b"PNG....."), Err(NpyError::Magic));
        let mut bytes = DepthImage { width: 2, height: 2, z_mm: vec![0.0; 4] }.to_npy();
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(DepthImage::from_npy(&bytes), Err(NpyError::Size { .. })));
        let mut f8 = DepthImage { width: 2, height: 2, z_mm: vec![0.0; 4] }.to_npy();
        let at = f8.windows(3).position(|w| w == b"<f4");
        let Some(at) = at else { panic!("no dtype in the header") };
        f8[at + 2] = b'8';
        assert!(matches!(DepthImage::from_npy(&f8), Err(NpyError::Header(_))));
    }

    #[test]
    fn retries_fold_into_one_outcome_per_view() {
        let m = ScanManifest {
            version: SCAN_MANIFEST_VERSION,
            base_from_head: PoseSpec::identity(),
            views: vec![
                record("a", 0, true),
                record("b", 1, false),
                record("c", 2, false),
                record("b", 3, true),
                record("c", 4, false),
            ],
            fiducial_layout: None,
        };
        assert!(m.validate().is_ok());
        let o = m.outcomes();
        assert_eq!(o.len(), 3);
        assert!(matches!(&o[0], ViewOutcome::Arrived { lost_before: 0, .. }));
        assert!(matches!(&o[1], ViewOutcome::Arrived { record, lost_before: 1 } if record.frame_index == 3));
        assert_eq!(o[2], ViewOutcome::Lost { label: "c", frame_indices: vec![2, 4] });
    }

    #[test]
    fn manifest_errors_name_the_field() {
        let mut m = ScanManifest {
            version: SCAN_MANIFEST_VERSION,
            base_from_head: PoseSpec::identity(),
            views: vec![record("a", 0, true), record("b", 0, true)],
            fiducial_layout: None,
        };
        let e = m.validate().map(|_| ()).map_err(|e| e.to_string());
        assert!(matches!(&e, Err(s) if s.contains("views[1].frame_index")), "{e:?}");
        m.views[1].frame_index = 1;
        m.views[1].image = Some("../etc/passwd".into());
        let e = m.validate().map(|_| ()).map_err(|e| e.to_string());
        assert!(matches!(&e, Err(s) if s.contains("views[1].image")), "{e:?}");
        let garbage =
            ScanManifest::from_json_str("{\"version\": 1, \"views\": [}").map(|_| ()).map_err(|e| e.to_string());
        assert!(garbage.is_err());
    }
}

//! Head-band markers as the ray caster sees them (flat printed ArUco labels standing off the
//! skin) and their corners' pixel truth in a view, through the same camera model.

use nalgebra::{Isometry3, Point2, Point3, Vector3};
use smp_core::camera::CameraIntrinsics;

use crate::charuco::aruco_4x4_is_white;
use crate::fiducial::TruthFiducial;
use crate::patient::SyntheticPatient;

/// White label paper around a head-band marker's black square, in marker cells (a sixth of
/// the square): ArUco detection needs a light quiet zone around the border, and a printed
/// label gives one whatever the skin tone.
pub(super) const LABEL_MARGIN_CELLS: f64 = 1.0;

/// A head-band marker as the ray caster sees it: a flat printed label in the marker's plane.
pub(super) struct MarkerPlane {
    id: u32,
    size_mm: f64,
    marker_from_head: Isometry3<f64>,
    centre: Point3<f64>,
    /// Outward normal (marker +z) in the head frame.
    pub(super) normal: Vector3<f64>,
    /// Half side of the label (black square plus white margin), mm.
    half_label_mm: f64,
}

impl MarkerPlane {
    /// Only DICT_4X4_50 patterns are compiled in; markers of other dictionaries are not
    /// drawn (their truth still exists), rather than drawn with a wrong pattern.
    pub(super) fn new(f: &TruthFiducial) -> Option<MarkerPlane> {
        if f.dictionary != "DICT_4X4_50" || !(f.size_mm.is_finite() && f.size_mm > 0.0) {
            return None;
        }
        Some(MarkerPlane {
            id: f.id,
            size_mm: f.size_mm,
            marker_from_head: f.head_from_marker.inverse(),
            centre: Point3::from(f.head_from_marker.translation.vector),
            normal: f.head_from_marker * Vector3::z(),
            half_label_mm: 0.5 * f.size_mm * (1.0 + 2.0 * LABEL_MARGIN_CELLS / 6.0),
        })
    }

    /// Where the ray meets the label's plane from its printed side: ray parameter and the
    /// point in marker coordinates (x right, y up), whether on the label or not.
    pub(super) fn local_hit(&self, origin: &Point3<f64>, dir: &Vector3<f64>) -> Option<(f64, Point2<f64>)> {
        let denom = self.normal.dot(dir);
        if denom >= -1e-12 {
            return None; // seen edge-on or from behind (against the head)
        }
        let t = self.normal.dot(&(self.centre - origin)) / denom;
        if t.is_nan() || t <= 1e-9 {
            return None;
        }
        let l = self.marker_from_head * (origin + dir * t);
        Some((t, Point2::new(l.x, l.y)))
    }

    /// Whether the label is white at marker coordinates `p` (x right, y up, mm).
    pub(super) fn is_white(&self, p: &Point2<f64>) -> bool {
        let h = 0.5 * self.size_mm;
        let (u, v) = ((p.x + h) / self.size_mm, (h - p.y) / self.size_mm);
        aruco_4x4_is_white(self.id, u, v).unwrap_or(true)
    }
}

/// The nearest label the ray meets: `(t, index, point in marker coordinates)`.
pub(super) fn nearest_marker(
    markers: &[MarkerPlane],
    origin: &Point3<f64>,
    dir: &Vector3<f64>,
) -> Option<(f64, usize, Point2<f64>)> {
    let mut best: Option<(f64, usize, Point2<f64>)> = None;
    for (k, m) in markers.iter().enumerate() {
        let Some((t, p)) = m.local_hit(origin, dir) else { continue };
        if p.x.abs() > m.half_label_mm || p.y.abs() > m.half_label_mm {
            continue;
        }
        if best.is_none_or(|(tb, _, _)| t < tb) {
            best = Some((t, k, p));
        }
    }
    best
}

/// Pixel truth of the head-band markers in a view: `(id, corners in ArUco order)` for each
/// marker whose printed face turns toward the camera and whose four corners project into
/// the image, sorted by id. Why here: the truth must use the same camera model (distortion
/// included) as the render, so that a detector's corners can be scored to sub-pixel.
/// Occlusion by the head itself is not tested (a marker facing the camera on a convex head
/// is not hidden by it).
pub fn fiducial_corners_px(
    patient: &SyntheticPatient,
    intrinsics: &CameraIntrinsics,
    base_from_camera: &Isometry3<f64>,
    base_from_head: &Isometry3<f64>,
) -> Vec<(u32, [[f64; 2]; 4])> {
    let camera_from_head = base_from_camera.inverse() * base_from_head;
    let head_from_camera = camera_from_head.inverse();
    let eye = Point3::from(head_from_camera.translation.vector);
    let mut out: Vec<(u32, [[f64; 2]; 4])> = patient
        .truth_fiducials()
        .iter()
        .filter(|f| {
            let n = f.head_from_marker * Vector3::z();
            n.dot(&(eye - Point3::from(f.head_from_marker.translation.vector))) > 0.0
        })
        .filter_map(|f| {
            let px = |c: &[f64; 3]| -> Option<[f64; 2]> {
                let p = intrinsics.project(&(camera_from_head * Point3::from(*c)))?;
                intrinsics.contains(&p).then_some([p.x, p.y])
            };
            let c = &f.corners_head_mm;
            Some((f.id, [px(&c[0])?, px(&c[1])?, px(&c[2])?, px(&c[3])?]))
        })
        .collect();
    out.sort_by_key(|(id, _)| *id);
    out
}

//! Scoring against the world's truth: which truth items a scan could have seen, and the
//! detections scored on the same points. Only evaluation code calls this (the demo's figures,
//! `smp eval vision`); the host never does.

use nalgebra::{Isometry3, Point3};
use smp_core::image::CameraView;
use smp_core::map::{RegionKind, ScalpMap};

/// Match radius for detected follicles against the simulator's truth.
pub const FOLLICLE_MATCH_RADIUS_MM: f64 = 0.3;
/// Radius within which a needle entry is credited to a planned dot: well under the 0.9 mm
/// minimum spacing, so an entry can never be credited to a neighbour.
pub const PLACEMENT_MATCH_RADIUS_MM: f64 = 0.4;

/// Truth follicles the scan could have seen: inside at least one tile image and on the
/// mapped part of the scalp. Follicles outside every image cannot count against vision.
pub fn truth_in_view(
    truth_head: &[[f64; 3]],
    normals_head: &[[f64; 3]],
    tiles: &[CameraView],
    map: &ScalpMap,
    base_from_head: &Isometry3<f64>,
) -> Vec<[f64; 3]> {
    truth_head
        .iter()
        .zip(normals_head)
        .filter(|(p, n)| seen_face_on(p, n, tiles, map, base_from_head))
        .map(|(p, _)| *p)
        .collect()
}

/// The map's detections (positions and kinds) on the points [`seen_face_on`] keeps.
pub fn scored_detections(
    map: &ScalpMap,
    tiles: &[CameraView],
    base_from_head: &Isometry3<f64>,
) -> (Vec<[f64; 3]>, Vec<smp_core::map::FollicleKind>) {
    map.follicles
        .iter()
        .filter(|f| seen_face_on(&f.position(), &f.normal, tiles, map, base_from_head))
        .map(|f| (f.position(), f.kind))
        .unzip()
}

/// The map's detections scored against the truth the scan could have seen: natural
/// follicles and earlier sessions' dots, told apart by kind.
#[derive(Debug, Clone)]
pub struct DetectionScore {
    pub kind: smp_core::eval::KindScore,
    /// Truth natural follicles in view.
    pub truth_natural: usize,
    /// Truth earlier-session dots in view.
    pub truth_dots: usize,
}

/// Scores `map`'s detections against `patient`'s truth in view of `tiles`.
pub fn score_detections(
    patient: &crate::patient::SyntheticPatient,
    map: &ScalpMap,
    tiles: &[CameraView],
    base_from_head: &Isometry3<f64>,
) -> DetectionScore {
    let normals: Vec<[f64; 3]> = patient.truth_follicles().iter().map(|f| f.normal_head).collect();
    let natural = truth_in_view(patient.truth_follicles_head(), &normals, tiles, map, base_from_head);
    let dots = truth_in_view(patient.truth_prior_dots_head(), patient.prior_dot_normals(), tiles, map, base_from_head);
    let (found, kinds) = scored_detections(map, tiles, base_from_head);
    let kind = smp_core::eval::kind_score(&found, &kinds, &natural, &dots, FOLLICLE_MATCH_RADIUS_MM);
    DetectionScore { kind, truth_natural: natural.len(), truth_dots: dots.len() }
}

/// True when the point (head frame, outward normal `n`) lies in the map's scalp and some
/// tile images it, 3 px inside the border, within [`TRUTH_MAX_VIEW_ANGLE_DEG`] of its normal.
/// Truth and detections are scored on the same points.
pub fn seen_face_on(
    p: &[f64; 3],
    n: &[f64; 3],
    tiles: &[CameraView],
    map: &ScalpMap,
    base_from_head: &Isometry3<f64>,
) -> bool {
    let cos_max = TRUTH_MAX_VIEW_ANGLE_DEG.to_radians().cos();
    let p_head = Point3::from(*p);
    let p_patch = map.surface.head_from_patch.inverse() * p_head;
    if map.regions.code_at(p_patch.x, p_patch.y) == RegionKind::Outside.code() {
        return false;
    }
    let p_base = base_from_head * p_head;
    let n_base = base_from_head.rotation * nalgebra::Vector3::from(*n);
    tiles.iter().any(|t| {
        let to_camera = t.base_from_camera.translation.vector - p_base.coords;
        let facing = n_base.dot(&to_camera) >= cos_max * n_base.norm() * to_camera.norm();
        let p_cam = t.base_from_camera.inverse() * p_base;
        facing
            && t.intrinsics.project(&p_cam).is_some_and(|px| {
                // A margin of 3 px: a follicle cut by the border is not a fair miss.
                px.x >= 3.0
                    && px.y >= 3.0
                    && px.x <= t.intrinsics.width_px as f64 - 4.0
                    && px.y <= t.intrinsics.height_px as f64 - 4.0
            })
    })
}

/// A follicle or dot (truth or detection) is scored only where some tile sees it within this
/// angle of its skin normal: seen more obliquely (the fringe of the head's outline in a tile)
/// a 0.3 mm follicle is a sliver no camera resolves, and no plan treats skin that steep.
const TRUTH_MAX_VIEW_ANGLE_DEG: f64 = 70.0;

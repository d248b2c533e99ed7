//! Scoring against the world's truth: which truth items a scan could have seen, and the
//! detections scored on the same points. Only evaluation code calls this (the demo's figures,
//! `smp eval vision`); the host never does.

use std::collections::BTreeMap;

use nalgebra::{Isometry3, Point3};
use smp_core::image::CameraView;
use smp_core::map::{RegionKind, ScalpMap};

use crate::patient::SyntheticPatient;

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

/// The head point on the map's surface at a region cell's centre.
fn cell_head_point(map: &ScalpMap, i: usize, j: usize) -> Point3<f64> {
    let (x, y) = map.regions.cell_centre(i, j);
    map.surface.sample_head(x, y).0
}

/// Region agreement of a map with the truth.
#[derive(Debug, Clone)]
pub struct RegionIou {
    /// Frequency-weighted IoU: each class's IoU weighted by its share of the truth cells, so
    /// that a sliver of a class along a soft border does not swing the figure.
    pub weighted: f64,
    /// Unweighted mean IoU over the classes present in truth or map (stricter on slivers).
    pub mean: f64,
    pub by_class: BTreeMap<String, f64>,
    /// Truth cells (mapped scalp) per class, for reading the per-class figures.
    pub cells: BTreeMap<String, usize>,
}

/// Intersection over union of each region class, over the cells the map labels as scalp,
/// with the truth label of the skin point under each cell. Only cells the map calls scalp
/// count: what vision left unmapped is the coverage's business, not the labelling's.
pub fn region_iou(map: &ScalpMap, patient: &SyntheticPatient) -> RegionIou {
    let outside = RegionKind::Outside.code();
    let mut inter: BTreeMap<char, usize> = BTreeMap::new();
    let mut union: BTreeMap<char, usize> = BTreeMap::new();
    let mut truth_cells: BTreeMap<char, usize> = BTreeMap::new();
    for j in 0..map.regions.ny {
        for i in 0..map.regions.nx {
            let found = map.regions.code_at_cell(i, j);
            if found == outside {
                continue;
            }
            let truth = patient.region_at_head(&cell_head_point(map, i, j)).code();
            if truth == outside {
                continue;
            }
            *truth_cells.entry(truth).or_default() += 1;
            *union.entry(found).or_default() += 1;
            if found == truth {
                *inter.entry(found).or_default() += 1;
            } else {
                *union.entry(truth).or_default() += 1;
            }
        }
    }
    let name =
        |code: char| RegionKind::from_code(code).map_or_else(|| code.to_string(), |k| format!("{k:?}").to_lowercase());
    let iou = |code: &char| inter.get(code).copied().unwrap_or(0) as f64 / union[code].max(1) as f64;
    let by_class: BTreeMap<String, f64> = union.keys().map(|c| (name(*c), iou(c))).collect();
    let total: usize = truth_cells.values().sum();
    let weighted = if total == 0 {
        f64::NAN
    } else {
        truth_cells.iter().map(|(c, n)| iou(c) * *n as f64).sum::<f64>() / total as f64
    };
    let mean = if by_class.is_empty() { f64::NAN } else { by_class.values().sum::<f64>() / by_class.len() as f64 };
    let cells = truth_cells.iter().map(|(c, n)| (name(*c), *n)).collect();
    RegionIou { weighted, mean, by_class, cells }
}

/// RMS distance (mm) from the map's fitted surface to the true skin (the patient's
/// ellipsoid) at the centres of the cells the map labels as scalp. First-order distance
/// `f / |∇f|` of the implicit function: exact to well under a micrometre at these errors.
pub fn surface_rms_mm(map: &ScalpMap, patient: &SyntheticPatient) -> f64 {
    let ell = patient.ellipsoid();
    let [a, b, c] = ell.semi_axes_mm;
    let outside = RegionKind::Outside.code();
    let (mut sum, mut n) = (0.0, 0usize);
    for j in 0..map.regions.ny {
        for i in 0..map.regions.nx {
            if map.regions.code_at_cell(i, j) == outside {
                continue;
            }
            let p = cell_head_point(map, i, j);
            let grad = nalgebra::Vector3::new(2.0 * p.x / (a * a), 2.0 * p.y / (b * b), 2.0 * p.z / (c * c));
            let d = ell.implicit(&p) / grad.norm();
            sum += d * d;
            n += 1;
        }
    }
    if n == 0 {
        f64::NAN
    } else {
        (sum / n as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::PatientSpec;
    use crate::truth_map::{truth_map, TruthMapSettings};

    /// A map made from the truth itself scores (nearly) perfectly, and a map whose labels are
    /// all wrong scores zero: the figures measure agreement with the truth and nothing else.
    #[test]
    fn the_truth_map_agrees_with_the_truth_and_a_mislabelled_map_does_not() {
        let spec = PatientSpec::default_patient().expect("embedded default patient parses");
        let patient = SyntheticPatient::generate(&spec);
        let truth = truth_map(&patient, &TruthMapSettings::default()).expect("truth map").map;
        let r = region_iou(&truth, &patient);
        assert!(r.weighted > 0.95, "weighted IoU {}", r.weighted);
        assert!(r.cells.values().sum::<usize>() > 100, "{:?}", r.cells);
        let rms = surface_rms_mm(&truth, &patient);
        assert!(rms < 0.05, "surface rms {rms} mm");
        // Every scalp cell relabelled as scar, which the default patient mostly is not.
        let mut wrong = truth.clone();
        let scar = RegionKind::Scar.code();
        let outside = RegionKind::Outside.code();
        for j in 0..wrong.regions.ny {
            for i in 0..wrong.regions.nx {
                if wrong.regions.code_at_cell(i, j) != outside {
                    wrong.regions.set(i, j, scar);
                }
            }
        }
        let w = region_iou(&wrong, &patient);
        assert!(w.weighted < 0.2, "weighted IoU of a mislabelled map {}", w.weighted);
    }
}

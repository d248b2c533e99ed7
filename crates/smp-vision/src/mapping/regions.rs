//! The region grid over the patch: unseen, scar, hair, thinning or bald from the skin's
//! colour and the natural-follicle density per area of skin, counted only over skin a tile
//! saw face-on enough for the detector to find its follicles.

use nalgebra::{Isometry3, Point3};
use smp_core::geometry::SurfacePatch;
use smp_core::map::{CellGrid, Follicle, FollicleKind, RegionKind};

use super::TileWork;
use crate::VisionConfig;

/// Region grid over the patch: Outside where no tile saw the skin; Scar where the skin is
/// clearly lighter or redder than the median skin and follicles are sparse; otherwise Hair,
/// Thinning or Bald by natural-follicle density within `density_radius_mm`, per area of
/// skin, counted only over skin some tile saw within [`MAX_DENSITY_VIEW_DEG`] of its normal
/// (`cameras`: intrinsics and camera_from_patch of the usable tiles). Seen more obliquely,
/// follicles are slivers the detector cannot find, so such skin would read bald whatever
/// grows there (the hair-bearing sides of the head of random patient 1009, Norwood 2); a
/// cell with too little such skin around it takes the class of the nearest cell that has.
pub(super) fn classify_regions(
    patch: &SurfacePatch,
    patch_from_head: &Isometry3<f64>,
    work: &[TileWork],
    cameras: &[(&smp_core::camera::CameraIntrinsics, Isometry3<f64>)],
    follicles: &[Follicle],
    skin_median: Option<[f64; 3]>,
    cfg: &VisionConfig,
) -> (CellGrid, Vec<f64>) {
    let c = cfg.cell_mm;
    let ox = (patch.x_range_mm[0] / c).floor() * c;
    let oy = (patch.y_range_mm[0] / c).floor() * c;
    let nx = (((patch.x_range_mm[1] - ox) / c).ceil() as usize).max(1);
    let ny = (((patch.y_range_mm[1] - oy) / c).ceil() as usize).max(1);
    let mut grid = CellGrid::filled(ox, oy, c, nx, ny, RegionKind::Outside.code());
    let mut count = vec![0usize; nx * ny];
    let mut lab_sum = vec![[0.0f64; 3]; nx * ny];
    let mut lab_n = vec![0usize; nx * ny];
    for w in work {
        for s in &w.samples {
            let p = patch_from_head * s.p_head;
            if let Some((i, j)) = grid.cell_of(p.x, p.y) {
                let k = j * nx + i;
                count[k] += 1;
                if !s.dark {
                    for (acc, v) in lab_sum[k].iter_mut().zip(s.lab) {
                        *acc += v as f64;
                    }
                    lab_n[k] += 1;
                }
            }
        }
    }
    let covered: Vec<bool> = count.iter().map(|n| *n >= cfg.min_cell_samples).collect();
    // Skin area of each cell, cm²: the grid is square in the patch's plane, and skin tilted
    // from that plane holds more area over the same square (twice as much at 60°).
    let area_cm2 = cell_skin_area_cm2(patch, &grid);
    let view_deg = best_view_deg(patch, &grid, &covered, cameras);
    let observed: Vec<bool> = view_deg.iter().map(|a| *a <= MAX_DENSITY_VIEW_DEG).collect();
    // Natural follicles in patch coordinates, bucketed by cell. Earlier SMP dots do not
    // count: a treated bald crown is still bald of hair, and the planner fills by region.
    let mut buckets: Vec<Vec<(f64, f64)>> = vec![Vec::new(); nx * ny];
    for f in follicles.iter().filter(|f| f.kind == FollicleKind::Natural) {
        let p = patch_from_head * Point3::new(f.x_mm, f.y_mm, f.z_mm);
        if let Some((i, j)) = grid.cell_of(p.x, p.y) {
            buckets[j * nx + i].push((p.x, p.y));
        }
    }
    let r = cfg.density_radius_mm;
    let rc = (r / c).ceil() as i64 + 1;
    let disc_cm2 = std::f64::consts::PI * r * r / 100.0;
    // Density class per covered cell; None where too little of its disc was seen face-on.
    let mut kinds: Vec<Option<RegionKind>> = vec![None; nx * ny];
    for j in 0..ny {
        for i in 0..nx {
            if !covered[j * nx + i] {
                continue;
            }
            let (cx, cy) = grid.cell_centre(i, j);
            let (mut n_f, mut cov_cm2, mut seen_cm2, mut n_seen) = (0usize, 0.0f64, 0.0f64, 0usize);
            for dj in -rc..=rc {
                for di in -rc..=rc {
                    let (ii, jj) = (i as i64 + di, j as i64 + dj);
                    if ii < 0 || jj < 0 || ii >= nx as i64 || jj >= ny as i64 {
                        continue;
                    }
                    let k = jj as usize * nx + ii as usize;
                    let (qx, qy) = grid.cell_centre(ii as usize, jj as usize);
                    if covered[k] && (qx - cx).hypot(qy - cy) <= r {
                        cov_cm2 += area_cm2[k];
                        if observed[k] {
                            seen_cm2 += area_cm2[k];
                            n_seen += buckets[k].iter().filter(|(x, y)| (x - cx).hypot(y - cy) <= r).count();
                        }
                    }
                    n_f += buckets[k].iter().filter(|(x, y)| (x - cx).hypot(y - cy) <= r).count();
                }
            }
            let density = if seen_cm2 >= MIN_SEEN_DISC_SHARE * disc_cm2 {
                n_seen as f64 / seen_cm2
            } else if observed.iter().any(|o| *o) {
                continue; // decided from the nearest cell seen face-on, below
            } else if cov_cm2 > 0.0 {
                n_f as f64 / cov_cm2
            } else {
                0.0
            };
            kinds[j * nx + i] = Some(if density >= cfg.hair_min_per_cm2 {
                RegionKind::Hair
            } else if density >= cfg.thinning_min_per_cm2 {
                RegionKind::Thinning
            } else {
                RegionKind::Bald
            });
        }
    }
    // Covered cells without a class take the nearest classified cell's (breadth first over
    // covered cells, so the class spreads over the skin, not across gaps).
    let mut queue: std::collections::VecDeque<usize> = (0..nx * ny).filter(|k| kinds[*k].is_some()).collect();
    while let Some(k) = queue.pop_front() {
        let (i, j) = (k % nx, k / nx);
        let neighbours = [(i.wrapping_sub(1), j), (i + 1, j), (i, j.wrapping_sub(1)), (i, j + 1)];
        for (ii, jj) in neighbours {
            if ii < nx && jj < ny {
                let q = jj * nx + ii;
                if covered[q] && kinds[q].is_none() {
                    kinds[q] = kinds[k];
                    queue.push_back(q);
                }
            }
        }
    }
    for j in 0..ny {
        for i in 0..nx {
            let k = j * nx + i;
            let Some(mut kind) = kinds[k] else { continue };
            if let (Some(m), true) = (skin_median, lab_n[k] > 0) {
                let n = lab_n[k] as f64;
                let (dl, da, db) = (lab_sum[k][0] / n - m[0], lab_sum[k][1] / n - m[1], lab_sum[k][2] / n - m[2]);
                if kind != RegionKind::Hair && da - db >= cfg.scar_chroma_shift && dl >= -cfg.scar_max_darker_l {
                    kind = RegionKind::Scar;
                }
            }
            grid.set(i, j, kind.code());
        }
    }
    (grid, view_deg)
}

/// Smallest angle, degrees, between each covered cell's surface normal and the line of
/// sight of a camera (intrinsics, camera_from_patch) whose image holds the cell's centre;
/// infinity for cells no camera sees (or not covered).
pub(super) fn best_view_deg(
    patch: &SurfacePatch,
    grid: &CellGrid,
    covered: &[bool],
    cameras: &[(&smp_core::camera::CameraIntrinsics, Isometry3<f64>)],
) -> Vec<f64> {
    let eyes: Vec<Point3<f64>> = cameras.iter().map(|(_, c)| c.inverse() * Point3::origin()).collect();
    (0..grid.nx * grid.ny)
        .map(|k| {
            if !covered.get(k).copied().unwrap_or(false) {
                return f64::INFINITY;
            }
            let (x, y) = grid.cell_centre(k % grid.nx, k / grid.nx);
            let (p, n) = (patch.point_patch(x, y), patch.normal_patch(x, y));
            cameras
                .iter()
                .zip(&eyes)
                .filter(|((intr, camera_from_patch), _)| {
                    intr.project(&(camera_from_patch * p)).is_some_and(|px| {
                        px.x >= 0.0 && px.y >= 0.0 && px.x < intr.width_px as f64 && px.y < intr.height_px as f64
                    })
                })
                .map(|(_, eye)| {
                    let to_eye = eye - p;
                    (n.dot(&to_eye) / (n.norm() * to_eye.norm()).max(1e-12)).clamp(-1.0, 1.0).acos().to_degrees()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

/// Skin seen by no tile within this angle of its normal does not count in the follicle
/// density: beyond it a 0.3 mm follicle is a sliver the detector does not find. On random
/// patients 1006, 1009 and 1012, 65° spread a fringe's neighbours too far, 75° kept more
/// of the unseen fringe as bald; 70° is also where `smp eval vision` stops scoring.
const MAX_DENSITY_VIEW_DEG: f64 = 70.0;
/// A cell's density is measured when at least this share of its disc was seen face-on
/// enough; otherwise it takes the nearest measured cell's class.
const MIN_SEEN_DISC_SHARE: f64 = 0.4;

/// Steepest skin, against the patch's plane, whose cell area is scaled up: beyond it (the
/// side of the head seen from above) a cell's skin area is taken as at this tilt.
const MIN_CELL_NORMAL_Z: f64 = 0.2;

/// Skin area under each cell of `grid`, cm²: the cell's square in the patch's plane divided
/// by the cosine of the skin's tilt from that plane (floored at [`MIN_CELL_NORMAL_Z`]).
/// Follicle densities are per area of skin: on random patient 1012 (Norwood 5) the thinning
/// band down the sides, counted per area of the plane, read as hair (0.45 IoU).
pub(super) fn cell_skin_area_cm2(patch: &SurfacePatch, grid: &CellGrid) -> Vec<f64> {
    let cell_cm2 = grid.cell_mm * grid.cell_mm / 100.0;
    let mut out = Vec::with_capacity(grid.nx * grid.ny);
    for j in 0..grid.ny {
        for i in 0..grid.nx {
            let (x, y) = grid.cell_centre(i, j);
            let nz = patch.normal_patch(x, y).z.abs();
            let nz = if nz.is_finite() { nz.max(MIN_CELL_NORMAL_Z) } else { 1.0 };
            out.push(cell_cm2 / nz);
        }
    }
    out
}

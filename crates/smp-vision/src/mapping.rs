//! From scan tiles to a [`ScalpMap`]: surface fit from the depth frames, follicle detection
//! in every tile (on grey, and on the tile's learnt colour projection where that separates
//! its hair better: [`crate::projection`]), each follicle placed where its pixel's ray meets
//! the skin fitted locally to the tile's depth frame (or the fitted surface where the depth
//! frame has a hole), deduplication across overlapping tiles, region classification and
//! skin tone.
//!
//! Layout: this file holds the map's outputs and [`build_map`], which runs the stages and
//! places and deduplicates the follicles; `tile` detects the dots and lifts the depth of one
//! tile; `local_skin` fits the skin around a detection to the depth frame; `regions` labels
//! the region grid by follicle density per area of skin; `skin_tone` measures the skin under
//! the rig's known light.

mod local_skin;
mod regions;
mod skin_tone;
mod tile;

use nalgebra::{Isometry3, Point2, Point3, Vector3};
use smp_core::geometry::{PoseSpec, SurfacePatch};
use smp_core::image::CameraView;
use smp_core::map::{CellGrid, Follicle, FollicleKind, RegionKind, ScalpMap};
use smp_core::spatial::PointGrid;

use local_skin::LocalPlane;
use regions::classify_regions;
use skin_tone::skin_under_light;
use tile::{median_depth_mm, process_tile};

use crate::classify::DotFeatures;
use crate::cv::check_view;
use crate::error::VisionError;
use crate::follicles::DotDetection;
use crate::follicles_contrast::seen_too_obliquely;
use crate::surface::{fit_surface, SurfaceFitSettings};
use crate::tone::{median_lab, skin_tone};
use crate::VisionConfig;

/// Detections of one tile, in its own pixels, with the deduplication verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct TileDetections {
    pub label: String,
    /// Sub-pixel centroids (distorted pixel coordinates) of every accepted dark dot.
    pub pixels: Vec<[f64; 2]>,
    /// `owned[i]`: detection `i` became a map follicle from this tile (it lies nearest this
    /// tile's centre among the tiles that image it, and landed on the surface).
    pub owned: Vec<bool>,
    /// Robust noise of the tile's black-hat image and the threshold used, grey levels.
    pub noise_sigma: f64,
    pub threshold_levels: f64,
    /// Natural follicle or earlier SMP dot, per detection, and what that was decided from.
    pub kinds: Vec<FollicleKind>,
    pub features: Vec<DotFeatures>,
}

/// The map plus what produced it, for the viewer and for diagnosing a poor scan.
#[derive(Debug, Clone, PartialEq)]
pub struct MapOutput {
    pub map: ScalpMap,
    pub tile_detections: Vec<TileDetections>,
    /// Depth points used by / rejected from the surface fit.
    pub surface_points_used: usize,
    pub surface_points_rejected: usize,
    /// Skin pixels behind the tone estimate.
    pub skin_samples: usize,
}

/// A depth pixel lifted to the head frame, with its colour.
#[derive(Debug, Clone, Copy)]
struct Sample {
    p_head: Point3<f64>,
    lab: [f32; 3],
    /// On or next to a dark dot: not skin.
    dark: bool,
}

/// What one tile contributes before the surface is known.
struct TileWork {
    samples: Vec<Sample>,
    dots: Vec<DotDetection>,
    /// Classifier features and verdict per dot.
    features: Vec<DotFeatures>,
    kinds: Vec<FollicleKind>,
    /// The skin around each dot fitted to the tile's depth frame (camera frame), when it has
    /// enough valid pixels there.
    dot_depth: Vec<Option<LocalPlane>>,
    noise_sigma: f64,
    threshold_levels: f64,
    /// Whether the tile is usable at all (not black).
    usable: bool,
    /// Where the camera's lamp was, head frame (for the skin tone under the known light).
    lamp_head: Point3<f64>,
}

/// Builds the scalp map from the scan tiles (flange-camera views with depth). `overview`
/// is optional: when given, its depth is used to check the scan against the photo (a
/// registration or calibration error shows up as a height disagreement, reported as a
/// warning). `base_from_head` is the registration of the head in the base frame.
pub fn build_map(
    tiles: &[CameraView],
    overview: Option<&CameraView>,
    base_from_head: &Isometry3<f64>,
    cfg: &VisionConfig,
) -> Result<MapOutput, VisionError> {
    cfg.validate()?;
    if tiles.is_empty() {
        return Err(VisionError::NoTiles);
    }
    for t in tiles {
        check_view(t)?;
    }
    let head_from_base = base_from_head.inverse();
    let mut warnings = Vec::new();

    // Expected follicle size in pixels needs the working distance: the median depth of the
    // tiles that have one.
    let mut tile_depths: Vec<Option<f64>> = tiles.iter().map(median_depth_mm).collect();
    let known: Vec<f64> = tile_depths.iter().flatten().copied().collect();
    let fallback_depth = median_f64(&known);
    for (t, d) in tiles.iter().zip(tile_depths.iter_mut()) {
        if d.is_none() {
            warnings.push(format!(
                "tile `{}` has no depth; its follicles are placed on the surface fitted from the other tiles (check the depth projector)",
                t.label
            ));
            *d = fallback_depth;
        }
    }
    let Some(_) = fallback_depth else {
        return Err(VisionError::SurfaceFit { points: 0, reason: "no tile has a depth frame".into() });
    };

    // Per-tile work: two threads, tiles interleaved, results in tile order.
    let works: Vec<Result<TileWork, VisionError>> = {
        let n_threads = 2usize.min(tiles.len());
        let mut slots: Vec<Option<Result<TileWork, VisionError>>> = (0..tiles.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n_threads)
                .map(|k| {
                    let tile_depths = &tile_depths;
                    scope.spawn(move || {
                        (k..tiles.len())
                            .step_by(n_threads)
                            .map(|i| (i, process_tile(&tiles[i], tile_depths[i], &head_from_base, cfg)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(results) => {
                        for (i, r) in results {
                            slots[i] = Some(r);
                        }
                    }
                    Err(_) => {
                        // A panicking worker is a bug; report it as an error, not a crash.
                    }
                }
            }
        });
        slots
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.unwrap_or_else(|| {
                    Err(VisionError::OpenCv {
                        step: "tile worker",
                        label: tiles[i].label.clone(),
                        message: "worker thread panicked".into(),
                    })
                })
            })
            .collect()
    };
    let mut work = Vec::with_capacity(works.len());
    for (t, w) in tiles.iter().zip(works) {
        let w = w?;
        if !w.usable {
            warnings.push(format!("tile `{}` is black; it was skipped (check the ring light and exposure)", t.label));
        }
        work.push(w);
    }

    // (a) Surface.
    let points: Vec<Point3<f64>> = work.iter().flat_map(|w| w.samples.iter().map(|s| s.p_head)).collect();
    let outward_hint = {
        let centroid = points.iter().fold(Vector3::zeros(), |a, p| a + p.coords) / points.len().max(1) as f64;
        let cams =
            tiles.iter().fold(Vector3::zeros(), |a, t| a + (head_from_base * t.base_from_camera).translation.vector);
        cams / tiles.len() as f64 - centroid
    };
    let fit = fit_surface(
        &points,
        &outward_hint,
        &SurfaceFitSettings {
            degree: cfg.surface_degree,
            outlier_sigma: cfg.outlier_sigma,
            outlier_min_mm: cfg.outlier_min_mm,
        },
    )?;
    let patch = fit.patch;
    let patch_from_head = patch.head_from_patch.inverse();
    if fit.points_rejected * 20 > points.len() {
        warnings.push(format!(
            "surface fit rejected {} of {} depth points as outliers; check for hair, fingers or reflections in the tiles",
            fit.points_rejected,
            points.len()
        ));
    }

    // (b) Follicles: every detection on the surface, then ownership.
    let base_from_patch = base_from_head * patch.head_from_patch;
    let tile_centres_base: Vec<[f64; 2]> = tiles
        .iter()
        .map(|t| {
            let c = Point2::new(t.intrinsics.cx_px, t.intrinsics.cy_px);
            match ray_on_patch(&patch, &(base_from_patch.inverse() * t.base_from_camera), &t.intrinsics.ray(&c)) {
                Some(p) => {
                    let b = base_from_patch * p;
                    [b.x, b.y]
                }
                None => [t.base_from_camera.translation.x, t.base_from_camera.translation.y],
            }
        })
        .collect();
    struct Candidate {
        tile: usize,
        index: usize,
        p_patch: Point3<f64>,
        p_base: Point3<f64>,
        diameter_mm: f64,
        darkness: f64,
        kind: FollicleKind,
        measured: bool,
        /// The depth frame's local normal (patch frame) and its weight against the surface's.
        local_normal: Option<(Vector3<f64>, f64)>,
    }
    let mut candidates = Vec::new();
    let mut missed = vec![0usize; tiles.len()];
    for (ti, (t, w)) in tiles.iter().zip(&work).enumerate() {
        let patch_from_camera = base_from_patch.inverse() * t.base_from_camera;
        for (di, d) in w.dots.iter().enumerate() {
            let ray = t.intrinsics.ray(&Point2::new(d.pixel[0], d.pixel[1]));
            // The measured depth places the follicle where the skin really is; the fitted
            // surface (smooth, but a polynomial) only when the depth frame has a hole there.
            let local = w.dot_depth[di].and_then(|l| l.point_and_normal(&t.intrinsics, d.pixel));
            let measured = local.map(|l| patch_from_camera * l.point);
            let local_normal = local.map(|l| (patch_from_camera.rotation * l.normal, l.normal_weight()));
            match measured.or_else(|| ray_on_patch(&patch, &patch_from_camera, &ray)) {
                // A view grazing the skin places a follicle poorly (follicles_contrast.rs).
                Some(p) if seen_too_obliquely(&patch, &patch_from_camera, &p) => {}
                Some(p) => {
                    let range_mm = (patch_from_camera.inverse() * p).z;
                    candidates.push(Candidate {
                        tile: ti,
                        index: di,
                        p_patch: p,
                        p_base: base_from_patch * p,
                        diameter_mm: d.diameter_px * range_mm / t.intrinsics.fx_px,
                        darkness: d.darkness,
                        kind: w.kinds.get(di).copied().unwrap_or(FollicleKind::Natural),
                        measured: measured.is_some(),
                        local_normal,
                    });
                }
                None => missed[ti] += 1,
            }
        }
    }
    for (t, m) in tiles.iter().zip(&missed) {
        if *m > 0 {
            warnings.push(format!(
                "tile `{}`: {m} detections did not land on the fitted surface and were dropped",
                t.label
            ));
        }
    }
    let camera_from_base: Vec<Isometry3<f64>> = tiles.iter().map(|t| t.base_from_camera.inverse()).collect();
    let patch_from_cameras: Vec<Isometry3<f64>> =
        tiles.iter().map(|t| base_from_patch.inverse() * t.base_from_camera).collect();
    let mut owned: Vec<Vec<bool>> = work.iter().map(|w| vec![false; w.dots.len()]).collect();
    let mut kept: Vec<usize> = Vec::new();
    for (ci, c) in candidates.iter().enumerate() {
        let d_px = tile_depths[c.tile].map_or(10.0, |z| cfg.follicle_diameter_mm * tiles[c.tile].intrinsics.fx_px / z);
        let margin = cfg.border_px as f64 + 0.5 * d_px + 1.0;
        let dist = |ti: usize| (tile_centres_base[ti][0] - c.p_base.x).hypot(tile_centres_base[ti][1] - c.p_base.y);
        let owner = (0..tiles.len())
            .filter(|&ti| {
                ti == c.tile
                    || (work[ti].usable
                        && images_point(&tiles[ti], &camera_from_base[ti], &c.p_base, margin)
                        && !seen_too_obliquely(&patch, &patch_from_cameras[ti], &c.p_patch))
            })
            .min_by(|a, b| dist(*a).total_cmp(&dist(*b)).then(a.cmp(b)));
        if owner == Some(c.tile) {
            kept.push(ci);
        }
    }
    // Near a tie between two tiles, both detections of one follicle can survive: merge them.
    let merge_mm = 0.5 * cfg.follicle_diameter_mm;
    let mut grid = PointGrid::new(merge_mm.max(1e-3));
    let mut grid_tile = Vec::new();
    let mut follicles = Vec::new();
    for ci in kept {
        let c = &candidates[ci];
        let p = [c.p_base.x, c.p_base.y, c.p_base.z];
        let mut dup = false;
        grid.for_each_within(p, merge_mm, |gi, _| dup |= grid_tile[gi as usize] != c.tile);
        if dup {
            continue;
        }
        grid.insert(p);
        grid_tile.push(c.tile);
        owned[c.tile][c.index] = true;
        // Where the depth frame measured the skin under the dot, the follicle stays there: the
        // fitted surface is smooth but a polynomial, 0.1-0.15 mm off at a steep fringe.
        let (ph_s, nh) = patch.sample_head(c.p_patch.x, c.p_patch.y);
        let ph = if c.measured { patch.head_from_patch * c.p_patch } else { ph_s };
        let nh = match c.local_normal {
            Some((n, wl)) => {
                let nl = patch.head_from_patch.rotation * n;
                (nh * (1.0 - wl) + nl * wl).try_normalize(1e-9).unwrap_or(nh)
            }
            _ => nh,
        };
        follicles.push(Follicle {
            x_mm: ph.x,
            y_mm: ph.y,
            z_mm: ph.z,
            normal: [nh.x, nh.y, nh.z],
            diameter_mm: c.diameter_mm.clamp(0.0, 10.0),
            darkness: c.darkness.clamp(0.0, 1.0),
            kind: c.kind,
        });
    }

    // (d) Skin tone from skin pixels (not on or next to a dot).
    // The median as imaged is the reference for telling scar tissue apart (a relative test).
    let skin_lab: Vec<[f32; 3]> =
        work.iter().flat_map(|w| w.samples.iter().filter(|s| !s.dark).map(|s| s.lab)).collect();
    let skin_median = median_lab(&skin_lab);

    // (c) Regions.
    let cameras: Vec<(&smp_core::camera::CameraIntrinsics, Isometry3<f64>)> = tiles
        .iter()
        .zip(&work)
        .filter(|(_, w)| w.usable)
        .map(|(t, _)| (&t.intrinsics, t.base_from_camera.inverse() * base_from_patch))
        .collect();
    let (regions, cell_view_deg) =
        classify_regions(&patch, &patch_from_head, &work, &cameras, &follicles, skin_median, cfg);

    // (d') The skin's own colour: shading under the rig's known light divided out, from the
    // least hair-covered skin there is, and the root shadow of the hair measured there
    // (roots under the skin darken hair-bearing scalp) divided out too.
    let skin =
        skin_under_light(&work, &patch, &patch_from_head, &regions, &cell_view_deg, &follicles, cfg).map(skin_tone);
    if skin.is_none() {
        warnings.push("no skin pixels found for the skin tone; check the exposure of the tiles".into());
    }

    if let Some(ov) = overview {
        if let Some(w) = overview_disagreement(ov, &head_from_base, &patch, &patch_from_head, &regions) {
            warnings.push(w);
        }
    }

    let tile_detections = tiles
        .iter()
        .zip(&work)
        .zip(owned)
        .map(|((t, w), owned)| TileDetections {
            label: t.label.clone(),
            pixels: w.dots.iter().map(|d| d.pixel).collect(),
            owned,
            noise_sigma: w.noise_sigma,
            threshold_levels: w.threshold_levels,
            kinds: w.kinds.clone(),
            features: w.features.clone(),
        })
        .collect();
    let map = ScalpMap {
        version: smp_core::JSON_FORMAT_VERSION,
        base_from_head: PoseSpec::from_isometry(base_from_head),
        surface: patch,
        regions,
        follicles,
        skin,
        warnings,
    };
    Ok(MapOutput {
        map,
        tile_detections,
        surface_points_used: fit.points_used,
        surface_points_rejected: fit.points_rejected,
        skin_samples: skin_lab.len(),
    })
}

/// Intersection of a camera ray (camera frame) with the patch, in patch coordinates.
fn ray_on_patch(
    patch: &SurfacePatch,
    patch_from_camera: &Isometry3<f64>,
    ray_camera: &Vector3<f64>,
) -> Option<Point3<f64>> {
    let origin = patch_from_camera * Point3::origin();
    let dir = patch_from_camera.rotation * ray_camera;
    crate::surface::intersect_ray(patch, &origin, &dir)
}

/// Whether `p_base` projects inside the tile's image at least `margin_px` from the border.
fn images_point(t: &CameraView, camera_from_base: &Isometry3<f64>, p_base: &Point3<f64>, margin_px: f64) -> bool {
    let pc = camera_from_base * p_base;
    match t.intrinsics.project(&pc) {
        Some(px) => {
            px.x >= margin_px
                && px.y >= margin_px
                && px.x <= t.intrinsics.width_px as f64 - 1.0 - margin_px
                && px.y <= t.intrinsics.height_px as f64 - 1.0 - margin_px
        }
        None => false,
    }
}

fn median_f64(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    Some(*m)
}

/// Median height of the overview's depth points over the patch, relative to the patch; a
/// warning when it exceeds 2 mm (registration or calibration is off).
fn overview_disagreement(
    ov: &CameraView,
    head_from_base: &Isometry3<f64>,
    patch: &SurfacePatch,
    patch_from_head: &Isometry3<f64>,
    regions: &CellGrid,
) -> Option<String> {
    if check_view(ov).is_err() {
        return Some(format!("overview `{}` is malformed; it was not used to check the scan", ov.label));
    }
    let depth = ov.depth.as_ref()?;
    let (w, h) = (ov.image.width as usize, ov.image.height as usize);
    let patch_from_camera = patch_from_head * head_from_base * ov.base_from_camera;
    let mut res = Vec::new();
    for y in (0..h).step_by(8) {
        for x in (0..w).step_by(8) {
            let z = depth.z_mm[y * w + x] as f64;
            if !(z.is_finite() && z > 0.0) {
                continue;
            }
            let r = ov.intrinsics.ray(&Point2::new(x as f64, y as f64));
            let p = patch_from_camera * Point3::from(r * (z / r.z));
            if regions.code_at(p.x, p.y) != RegionKind::Outside.code() {
                res.push(p.z - patch.height(p.x, p.y));
            }
        }
    }
    let m = median_f64(&res)?;
    (m.abs() > 2.0).then(|| {
        format!(
            "overview `{}` and the scan tiles disagree by {m:.1} mm in height over the scanned area; check the head registration and the overview camera calibration",
            ov.label
        )
    })
}

#[cfg(test)]
mod tests;

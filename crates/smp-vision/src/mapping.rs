//! From scan tiles to a [`ScalpMap`]: surface fit from the depth frames, follicle detection
//! in every tile (on grey, and on the tile's learnt colour projection where that separates
//! its hair better: [`crate::projection`]), each follicle placed where its pixel's ray meets
//! the skin fitted locally to the tile's depth frame (or the fitted surface where the depth
//! frame has a hole), deduplication across overlapping tiles, region classification and
//! skin tone.

use nalgebra::{Isometry3, Point2, Point3, Vector3};
use opencv::core::Vec3f;
use opencv::prelude::*;
use smp_core::geometry::{PoseSpec, SurfacePatch};
use smp_core::image::CameraView;
use smp_core::map::{CellGrid, Follicle, FollicleKind, RegionKind, ScalpMap};
use smp_core::spatial::PointGrid;

use crate::classify::{dot_features, DotFeatures};
use crate::cv::{check_view, lab_f32};
use crate::error::{cv_err, VisionError};
use crate::follicles::{detect_dark_dots, detect_dots, DotDetection, DotDetections};
use crate::follicles_contrast::seen_too_obliquely;
use crate::surface::{fit_surface, SurfaceFitSettings};
use crate::tone::{median_lab, skin_tone, RootShadow};
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

fn median_depth_mm(t: &CameraView) -> Option<f64> {
    let d = t.depth.as_ref()?;
    let vals: Vec<f64> = d.z_mm.iter().step_by(97).filter(|z| z.is_finite() && **z > 0.0).map(|z| *z as f64).collect();
    median_f64(&vals)
}

/// Depth samples (lifted to the head frame, with colour) and dot detections of one tile.
fn process_tile(
    t: &CameraView,
    depth_mm: Option<f64>,
    head_from_base: &Isometry3<f64>,
    cfg: &VisionConfig,
) -> Result<TileWork, VisionError> {
    let label = t.label.as_str();
    let lamp_head = head_from_base * t.base_from_camera * Point3::from(cfg.flange_light.lamp_in_camera_mm);
    let gray = t.image.to_gray();
    let max_level = gray.data.iter().copied().max().unwrap_or(0);
    if max_level <= cfg.backdrop_max_level / 2 {
        return Ok(TileWork {
            samples: Vec::new(),
            dots: Vec::new(),
            features: Vec::new(),
            kinds: Vec::new(),
            dot_depth: Vec::new(),
            noise_sigma: 0.0,
            threshold_levels: 0.0,
            usable: false,
            lamp_head,
        });
    }
    let z = depth_mm.unwrap_or(100.0);
    let d_px = cfg.follicle_diameter_mm * t.intrinsics.fx_px / z;
    let mut det = detect_dots(&gray, d_px, cfg, label)?;
    if cfg.colour_projection {
        if let Some(p) = crate::projection::learn_projection(&t.image, &det.dots, &det.dark_mask, d_px) {
            let more = detect_dark_dots(&p.apply(&t.image), d_px, cfg, label)?;
            merge_detections(&mut det, more, d_px);
        }
    }
    // The tile's working distance sets the scale on the skin (a few % off at the tile's
    // corners, which the classifier's size evidence tolerates).
    let features = dot_features(&t.image, &det.dark_mask, &det.dots, z / t.intrinsics.fx_px);
    let kinds = features.iter().map(|f| cfg.dot_classifier.classify(f)).collect();
    let lab = lab_f32(&t.image, label)?;
    let lab_px = lab.data_typed::<Vec3f>().map_err(cv_err("reading Lab pixels", label))?;

    let mut samples = Vec::new();
    if let Some(depth) = &t.depth {
        let head_from_camera = head_from_base * t.base_from_camera;
        let (w, h) = (t.image.width as usize, t.image.height as usize);
        let s = cfg.depth_stride_px;
        let intr = &t.intrinsics;
        for y in (s / 2..h).step_by(s) {
            for x in (s / 2..w).step_by(s) {
                let i = y * w + x;
                let zc = depth.z_mm[i] as f64;
                if !(zc.is_finite() && zc > 0.0) {
                    continue;
                }
                let (xn, yn) = intr
                    .undistort_normalized((x as f64 - intr.cx_px) / intr.fx_px, (y as f64 - intr.cy_px) / intr.fy_px);
                let p = head_from_camera * Point3::new(xn * zc, yn * zc, zc);
                let l = lab_px[i];
                samples.push(Sample { p_head: p, lab: [l[0], l[1], l[2]], dark: det.dark_mask.data[i] != 0 });
            }
        }
    }
    let dot_depth = det
        .dots
        .iter()
        .map(|d| {
            t.depth.as_ref().and_then(|depth| local_skin_fit(&t.intrinsics, depth, d.pixel, cfg.local_depth_half_px))
        })
        .collect();
    Ok(TileWork {
        samples,
        dots: det.dots,
        features,
        kinds,
        dot_depth,
        noise_sigma: det.noise_sigma,
        threshold_levels: det.threshold_levels,
        usable: true,
        lamp_head,
    })
}

/// Adds to `det` the dark dots of a second pass (on the tile's colour projection) that the
/// first did not find: a dot within half a follicle of one already found is the same dot
/// and keeps the first pass's figures. The dot masks are united (the skin samples and the
/// classifier's skin rings must avoid the new dots too), and the list is put back in
/// reading order.
fn merge_detections(det: &mut DotDetections, more: DotDetections, d_px: f64) {
    let near = (0.5 * d_px).max(1.0);
    let first = det.dots.len();
    for d in more.dots {
        let dup = det.dots[..first].iter().any(|e| (e.pixel[0] - d.pixel[0]).hypot(e.pixel[1] - d.pixel[1]) < near);
        if !dup {
            det.dots.push(d);
        }
    }
    if det.dark_mask.data.len() == more.dark_mask.data.len() {
        for (m, v) in det.dark_mask.data.iter_mut().zip(&more.dark_mask.data) {
            *m |= *v;
        }
    }
    det.dots.sort_by(|a, b| {
        a.pixel[1]
            .total_cmp(&b.pixel[1])
            .then(a.pixel[0].total_cmp(&b.pixel[0]))
            .then((a.polarity as u8).cmp(&(b.polarity as u8)))
    });
}

/// The skin around a pixel as fitted to the depth frame's 3-D points there, camera frame:
/// a quadric height field `w = f(u, v)` over the points' best plane (origin at their mean,
/// axes `e_u`, `e_v` in the plane and `n` its normal towards the camera).
#[derive(Debug, Clone, Copy, PartialEq)]
struct LocalPlane {
    origin: Point3<f64>,
    e_u: Vector3<f64>,
    e_v: Vector3<f64>,
    normal: Vector3<f64>,
    /// `f(u, v) = c0 + c1 u + c2 v + c3 u² + c4 uv + c5 v²`, mm.
    coef: [f64; 6],
}

impl LocalPlane {
    fn height(&self, u: f64, v: f64) -> f64 {
        let c = &self.coef;
        c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v
    }

    /// Where the ray through `pixel` meets the fitted skin, and the skin's unit normal there
    /// (towards the camera): the skin point under a detection and the skin's own orientation
    /// there, which at a steep fringe the smooth polynomial surface only approximates (there
    /// it sat 0.1-0.15 mm below the skin, and its normals were 0.3° off, on random patient
    /// 1011). The curvature terms keep the normal that of the point itself rather than the
    /// mean over a window that perspective makes lopsided.
    fn point_and_normal(&self, intr: &smp_core::camera::CameraIntrinsics, pixel: [f64; 2]) -> Option<LocalSkin> {
        let r = intr.ray(&Point2::new(pixel[0], pixel[1]));
        let (ru, rv, rn) = (r.dot(&self.e_u), r.dot(&self.e_v), r.dot(&self.normal));
        // A ray grazing the skin (beyond ~85°) gives no usable point.
        if rn.abs() < 0.08 {
            return None;
        }
        let o = -self.origin.coords;
        let (ou, ov, on) = (o.dot(&self.e_u), o.dot(&self.e_v), o.dot(&self.normal));
        // Ray point at t in the local frame: (ou + t ru, ov + t rv, on + t rn); solve
        // on + t rn = f(ou + t ru, ov + t rv) by Newton from the plane's intersection.
        let mut t = (self.coef[0] - on) / rn;
        for _ in 0..6 {
            let (u, v) = (ou + t * ru, ov + t * rv);
            let c = &self.coef;
            let (fu, fv) = (c[1] + 2.0 * c[3] * u + c[4] * v, c[2] + c[4] * u + 2.0 * c[5] * v);
            let g = on + t * rn - self.height(u, v);
            let dg = rn - fu * ru - fv * rv;
            if dg.abs() < 1e-9 {
                return None;
            }
            let step = g / dg;
            t -= step;
            if step.abs() < 1e-7 {
                break;
            }
        }
        let (u, v) = (ou + t * ru, ov + t * rv);
        let c = &self.coef;
        let (fu, fv) = (c[1] + 2.0 * c[3] * u + c[4] * v, c[2] + c[4] * u + 2.0 * c[5] * v);
        let n = (self.normal - self.e_u * fu - self.e_v * fv).try_normalize(1e-12)?;
        let p = r * t;
        // The Newton step must stay on the fitted window, not run off along the quadric.
        let near = (p - self.origin.coords).norm() < 10.0;
        (t > 0.0 && near && p.iter().chain(n.iter()).all(|x| x.is_finite()))
            .then_some(LocalSkin { point: Point3::from(p), normal: n })
    }
}

/// The skin under a detection from the depth frame, camera frame.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LocalSkin {
    point: Point3<f64>,
    /// Unit normal, towards the camera.
    normal: Vector3<f64>,
}

impl LocalSkin {
    /// Weight of this normal against the fitted surface's, from the angle between the normal
    /// and the line of sight: 0 up to [`LOCAL_NORMAL_FROM_DEG`], 1 from
    /// [`LOCAL_NORMAL_FULL_DEG`], linear between.
    fn normal_weight(&self) -> f64 {
        let to_camera = -self.point.coords;
        let cos = self.normal.dot(&to_camera) / to_camera.norm().max(1e-12);
        let deg = cos.clamp(-1.0, 1.0).acos().to_degrees();
        ((deg - LOCAL_NORMAL_FROM_DEG) / (LOCAL_NORMAL_FULL_DEG - LOCAL_NORMAL_FROM_DEG)).clamp(0.0, 1.0)
    }
}

/// A follicle's normal is the fitted surface's where its tile sees the skin within this angle
/// of the line of sight, the depth frame's local fit's beyond [`LOCAL_NORMAL_FULL_DEG`], and
/// a blend between. Measured on random patients 1006, 1009 and 1011 (RMS error against the
/// truth by viewing angle): the local fit's error falls from 0.5° face-on to 0.16° at 60-70°
/// (the skin's slope spans more depth across the window there), the surface's rises from
/// 0.12° to 0.4° at 60-70° (the fringe is the edge of its polynomial's domain); they cross
/// at 50-60°.
const LOCAL_NORMAL_FROM_DEG: f64 = 45.0;
const LOCAL_NORMAL_FULL_DEG: f64 = 65.0;

/// The depth frame's skin around a sub-pixel position as a plane: the valid depth pixels of
/// a square window lifted to 3-D (rays from a first-order model of the lens around the
/// pixel) and fitted by total least squares. Fitting in 3-D rather than depth against pixel
/// keeps an oblique plane exact (its depth is not linear in the pixel), averages the
/// structured-light noise and bridges holes (a dark follicle may return no depth on a real
/// sensor). `None` when fewer than a third of the window's pixels are valid.
fn local_skin_fit(
    intr: &smp_core::camera::CameraIntrinsics,
    depth: &smp_core::image::DepthImage,
    pixel: [f64; 2],
    half_px: i32,
) -> Option<LocalPlane> {
    let (w, h) = (depth.width as i64, depth.height as i64);
    let (cx, cy) = (pixel[0].round() as i64, pixel[1].round() as i64);
    let half = half_px.max(1) as i64;
    // Normalised ray (z = 1) at the window's centre pixel and its change per pixel.
    let ray1 = |u: f64, v: f64| {
        let r = intr.ray(&Point2::new(u, v));
        r / r.z
    };
    let (c0x, c0y) = (cx as f64, cy as f64);
    let r0 = ray1(c0x, c0y);
    let ju = ray1(c0x + 1.0, c0y) - r0;
    let jv = ray1(c0x, c0y + 1.0) - r0;
    let mut sum = Vector3::<f64>::zeros();
    let mut pts: Vec<Vector3<f64>> = Vec::with_capacity(((2 * half + 1) * (2 * half + 1)) as usize);
    for y in (cy - half).max(0)..=(cy + half).min(h - 1) {
        for x in (cx - half).max(0)..=(cx + half).min(w - 1) {
            let z = depth.z_mm[(y * w + x) as usize] as f64;
            if !(z.is_finite() && z > 0.0) {
                continue;
            }
            let p = (r0 + ju * (x - cx) as f64 + jv * (y - cy) as f64) * z;
            sum += p;
            pts.push(p);
        }
    }
    let side = (2 * half + 1) as usize;
    if pts.len() * 3 < side * side {
        return None;
    }
    let mean = sum / pts.len() as f64;
    let mut cov = nalgebra::Matrix3::<f64>::zeros();
    for p in &pts {
        let d = p - mean;
        cov += d * d.transpose();
    }
    let eig = cov.symmetric_eigen();
    let k = eig.eigenvalues.imin();
    let mut n: Vector3<f64> = eig.eigenvectors.column(k).into_owned();
    // A degenerate window (a line of valid pixels) has two small eigenvalues.
    let mut ev: Vec<f64> = eig.eigenvalues.iter().copied().collect();
    ev.sort_by(f64::total_cmp);
    if !(ev[1] > 4.0 * ev[0].max(0.0) && ev[1] > 0.0) {
        return None;
    }
    if n.dot(&mean) > 0.0 {
        n = -n;
    }
    let n = n.try_normalize(1e-12)?;
    let e_u = n.cross(&Vector3::x()).try_normalize(1e-6).or_else(|| n.cross(&Vector3::y()).try_normalize(1e-6))?;
    let e_v = n.cross(&e_u);
    // Quadric height over the plane, least squares.
    let mut ata = nalgebra::Matrix6::<f64>::zeros();
    let mut atb = nalgebra::Vector6::<f64>::zeros();
    for p in &pts {
        let d = p - mean;
        let (u, v, wn) = (d.dot(&e_u), d.dot(&e_v), d.dot(&n));
        let row = nalgebra::Vector6::new(1.0, u, v, u * u, u * v, v * v);
        ata += row * row.transpose();
        atb += row * wn;
    }
    let c = ata.cholesky()?.solve(&atb);
    let coef = [c[0], c[1], c[2], c[3], c[4], c[5]];
    coef.iter().chain(mean.iter()).all(|v| v.is_finite()).then_some(LocalPlane {
        origin: Point3::from(mean),
        e_u,
        e_v,
        normal: n,
        coef,
    })
}

/// Region grid over the patch: Outside where no tile saw the skin; Scar where the skin is
/// clearly lighter or redder than the median skin and follicles are sparse; otherwise Hair,
/// Thinning or Bald by natural-follicle density within `density_radius_mm`, per area of
/// skin, counted only over skin some tile saw within [`MAX_DENSITY_VIEW_DEG`] of its normal
/// (`cameras`: intrinsics and camera_from_patch of the usable tiles). Seen more obliquely,
/// follicles are slivers the detector cannot find, so such skin would read bald whatever
/// grows there (the hair-bearing sides of the head of random patient 1009, Norwood 2); a
/// cell with too little such skin around it takes the class of the nearest cell that has.
fn classify_regions(
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
fn best_view_deg(
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
fn cell_skin_area_cm2(patch: &SurfacePatch, grid: &CellGrid) -> Vec<f64> {
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

/// The skin tone and the follicle densities that set its root-shadow correction are read
/// only from cells some tile saw within this angle of their normal: there every follicle is
/// found, so a cell's class and density are its own. Seen more obliquely, hair-bearing skin
/// whose follicles the detector partly misses reads as thinning, and its root shadow went
/// under-corrected (ΔE00 3.8-4.0 on random patient 1009, Norwood 2).
const TONE_MAX_VIEW_DEG: f64 = 55.0;

/// Fewest skin samples of one region class for the tone to be taken from that class.
const MIN_TONE_SAMPLES: usize = 400;
/// Samples lit by less than this share of full light are left out of the tone (grazing light
/// amplifies noise and model error when divided out).
const MIN_LIT_FRACTION: f64 = 0.6;

/// Median Lab of the skin with the shading of `cfg.flange_light` divided out, from the bald
/// cells if there are enough samples there, else thinning, else hair-bearing ones; scar and
/// unmapped cells never count. The root shadow of the chosen cells' hair is then divided out
/// ([`RootShadow`]), at their natural-follicle density relative to the hair-bearing cells'
/// (or to the nominal full density when the scan saw no hair-bearing skin): a Norwood 2 scan
/// sees only hair-bearing skin, which reads ~5 ΔE00 too dark without it. The shadow's
/// strength is measured from the scan when it holds both thinner and full-hair skin, else
/// the model's value ([`RootShadow::default`]) is assumed.
fn skin_under_light(
    work: &[TileWork],
    patch: &SurfacePatch,
    patch_from_head: &Isometry3<f64>,
    regions: &CellGrid,
    cell_view_deg: &[f64],
    follicles: &[Follicle],
    cfg: &VisionConfig,
) -> Option<[f64; 3]> {
    let classes = [RegionKind::Bald, RegionKind::Thinning, RegionKind::Hair];
    let mut by_class: [Vec<[f32; 3]>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for w in work {
        for s in w.samples.iter().filter(|s| !s.dark) {
            let p = patch_from_head * s.p_head;
            let face_on = regions
                .cell_of(p.x, p.y)
                .is_some_and(|(i, j)| cell_view_deg.get(j * regions.nx + i).is_some_and(|a| *a <= TONE_MAX_VIEW_DEG));
            if !face_on {
                continue;
            }
            let code = regions.code_at(p.x, p.y);
            let Some(k) = classes.iter().position(|c| c.code() == code) else { continue };
            let (_, n) = patch.sample_head(p.x, p.y);
            let lit = cfg.flange_light.lit_fraction(n.into(), s.p_head.coords.into(), w.lamp_head.coords.into());
            if lit < MIN_LIT_FRACTION {
                continue;
            }
            let lab = smp_core::color::relight_lab(s.lab.map(f64::from), 1.0 / lit);
            by_class[k].push(lab.map(|v| v as f32));
        }
    }
    let chosen = (0..classes.len())
        .find(|&k| by_class[k].len() >= MIN_TONE_SAMPLES)
        .or_else(|| (0..classes.len()).filter(|&k| !by_class[k].is_empty()).max_by_key(|&k| by_class[k].len()))?;
    let lab = median_lab(&by_class[chosen])?;
    let density = class_density_per_cm2(patch, regions, cell_view_deg, patch_from_head, follicles, &classes);
    let shadow = RootShadow::default();
    let full = match density[2] {
        Some(d) if d > 0.0 => d,
        _ => shadow.nominal_full_density_per_cm2,
    };
    let relative = density[chosen].map_or(0.0, |d| d / full);
    // Where the scan saw both the chosen (less hairy) skin and full hair, the shadow is
    // measured rather than assumed: red light kept under full hair against the chosen cells,
    // q = (1 - s) / (1 - s * relative), solved for s.
    let measured = match (chosen, density[2]) {
        (k, Some(_)) if k != 2 && by_class[2].len() >= MIN_TONE_SAMPLES && relative <= 0.5 => median_lab(&by_class[2])
            .and_then(|hair| {
                let q = crate::tone::lab_to_linear_srgb(hair)[0] / crate::tone::lab_to_linear_srgb(lab)[0];
                let s = (1.0 - q) / (1.0 - q * relative);
                (s.is_finite() && (0.0..=MAX_MEASURED_ROOT_SHADOW).contains(&s)).then_some(s)
            }),
        _ => None,
    };
    let shadow = RootShadow { at_full_density: measured.unwrap_or(shadow.at_full_density), ..shadow };
    Some(shadow.remove(lab, relative))
}

/// Largest root shadow taken from a scan's own hair-bearing against thinner skin; beyond it
/// the difference is something else (a scar, a tan line) and the model's value is used.
const MAX_MEASURED_ROOT_SHADOW: f64 = 0.6;

/// Fewest cells of a region class for its follicle density to be measured (1 cm² at 2 mm).
const MIN_DENSITY_CELLS: usize = 25;

/// Natural-follicle density of each class's cells together, per cm² (`None` for a class with
/// fewer than [`MIN_DENSITY_CELLS`] cells).
fn class_density_per_cm2(
    patch: &SurfacePatch,
    regions: &CellGrid,
    cell_view_deg: &[f64],
    patch_from_head: &Isometry3<f64>,
    follicles: &[Follicle],
    classes: &[RegionKind; 3],
) -> [Option<f64>; 3] {
    let area = cell_skin_area_cm2(patch, regions);
    let mut cells = [0usize; 3];
    let mut cm2 = [0.0f64; 3];
    for j in 0..regions.ny {
        for i in 0..regions.nx {
            if !cell_view_deg.get(j * regions.nx + i).is_some_and(|a| *a <= TONE_MAX_VIEW_DEG) {
                continue;
            }
            let code = regions.code_at_cell(i, j);
            if let Some(k) = classes.iter().position(|c| c.code() == code) {
                cells[k] += 1;
                cm2[k] += area[j * regions.nx + i];
            }
        }
    }
    let mut count = [0usize; 3];
    for f in follicles.iter().filter(|f| f.kind == FollicleKind::Natural) {
        let p = patch_from_head * Point3::new(f.x_mm, f.y_mm, f.z_mm);
        let face_on = regions
            .cell_of(p.x, p.y)
            .is_some_and(|(i, j)| cell_view_deg.get(j * regions.nx + i).is_some_and(|a| *a <= TONE_MAX_VIEW_DEG));
        if let (true, Some(k)) = (face_on, classes.iter().position(|c| c.code() == regions.code_at(p.x, p.y))) {
            count[k] += 1;
        }
    }
    let mut out = [None; 3];
    for k in 0..3 {
        if cells[k] >= MIN_DENSITY_CELLS && cm2[k] > 0.0 {
            out[k] = Some(count[k] as f64 / cm2[k]);
        }
    }
    out
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
mod tests {
    use super::*;
    use crate::follicles::DotDetections;
    use nalgebra::{Translation3, UnitQuaternion};
    use smp_core::camera::CameraIntrinsics;
    use smp_core::image::{DepthImage, RgbImage};

    const SKIN: [f64; 3] = [222.0, 178.0, 152.0];
    const SCAR: [f64; 3] = [238.0, 200.0, 192.0];
    const DOT: [f64; 3] = [42.0, 34.0, 32.0];
    const DOT_R_MM: f64 = 0.15;
    const DARKNESS: f64 = 0.8;

    fn intrinsics() -> CameraIntrinsics {
        CameraIntrinsics {
            width_px: 800,
            height_px: 600,
            fx_px: 2000.0,
            fy_px: 2000.0,
            cx_px: 400.0,
            cy_px: 300.0,
            distortion: [-0.05, 0.01, 0.0, 0.0, 0.0],
        }
    }

    fn base_from_head() -> Isometry3<f64> {
        Isometry3::from_parts(Translation3::new(250.0, 10.0, 150.0), UnitQuaternion::identity())
    }

    /// Flat skin (head z = 0) with three bands along head x: hair (x < -10, ~70/cm²),
    /// thinning (-10..10, ~17/cm²), bald (> 10) with a scar strip at 16..22.
    struct Scene {
        dots: Vec<[f64; 2]>,
    }

    impl Scene {
        fn new() -> Self {
            let mut dots = Vec::new();
            let mut k = 12_345u32;
            let mut jitter = || {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((k >> 8) % 1000) as f64 / 1000.0 - 0.5
            };
            let mut y: f64 = -14.0;
            while y < 14.0 {
                let mut x = -32.0;
                while x < 10.0 {
                    let (step, band) = if x < -10.0 { (1.2, true) } else { (2.4, false) };
                    let (jx, jy) = (jitter() * 0.3 * step, jitter() * 0.3 * step);
                    if band || ((y + 14.0) / 1.2).round() as i64 % 2 == 0 {
                        dots.push([x + jx, y + jy]);
                    }
                    x += step;
                }
                y += 1.2;
            }
            Scene { dots }
        }

        /// Dense 0.5 mm buckets of dot indices over the scene (x, y in -40..40).
        fn buckets(&self) -> Vec<Vec<usize>> {
            let mut b = vec![Vec::new(); 160 * 160];
            for (i, d) in self.dots.iter().enumerate() {
                let (bx, by) = (((d[0] + 40.0) * 2.0) as usize, ((d[1] + 40.0) * 2.0) as usize);
                b[by.min(159) * 160 + bx.min(159)].push(i);
            }
            b
        }

        fn colour_at(&self, buckets: &[Vec<usize>], x: f64, y: f64) -> [f64; 3] {
            let mut c = if (16.0..22.0).contains(&x) { SCAR } else { SKIN };
            let (bx, by) = (((x + 40.0) * 2.0) as i64, ((y + 40.0) * 2.0) as i64);
            for j in (by - 1).max(0)..=(by + 1).min(159) {
                for i in (bx - 1).max(0)..=(bx + 1).min(159) {
                    for &k in &buckets[j as usize * 160 + i as usize] {
                        let d = self.dots[k];
                        if (d[0] - x).hypot(d[1] - y) < DOT_R_MM {
                            for ch in 0..3 {
                                c[ch] += (DOT[ch] - c[ch]) * DARKNESS;
                            }
                        }
                    }
                }
            }
            c
        }

        /// A tile looking straight down from 80 mm above head (cx, cy, 0), 4x4 supersampled.
        fn tile(&self, cx: f64, cy: f64, label: &str, with_depth: bool) -> CameraView {
            let intr = intrinsics();
            let head_from_camera = Isometry3::from_parts(
                Translation3::new(cx, cy, 80.0),
                UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
            );
            let buckets = self.buckets();
            let mut image = RgbImage::new(800, 600, [0, 0, 0]);
            let mut depth = DepthImage { width: 800, height: 600, z_mm: vec![f32::NAN; 800 * 600] };
            let ss = 4;
            for py in 0..600u32 {
                for px in 0..800u32 {
                    let mut acc = [0.0; 3];
                    for sy in 0..ss {
                        for sx in 0..ss {
                            let u = px as f64 - 0.5 + (sx as f64 + 0.5) / ss as f64;
                            let v = py as f64 - 0.5 + (sy as f64 + 0.5) / ss as f64;
                            let r = head_from_camera.rotation * intr.ray(&Point2::new(u, v));
                            let t = -80.0 / r.z;
                            let c = self.colour_at(&buckets, cx + r.x * t, cy + r.y * t);
                            for k in 0..3 {
                                acc[k] += c[k];
                            }
                        }
                    }
                    let n = (ss * ss) as f64;
                    image.put(px, py, acc.map(|a| (a / n).round() as u8));
                    depth.z_mm[(py * 800 + px) as usize] = 80.0;
                }
            }
            CameraView {
                label: label.into(),
                intrinsics: intr,
                base_from_camera: base_from_head() * head_from_camera,
                image,
                depth: with_depth.then_some(depth),
            }
        }
    }

    fn scene_and_tiles() -> &'static (Scene, Vec<CameraView>) {
        static S: std::sync::OnceLock<(Scene, Vec<CameraView>)> = std::sync::OnceLock::new();
        S.get_or_init(|| {
            let scene = Scene::new();
            let tiles = vec![scene.tile(-12.0, 0.0, "left", true), scene.tile(12.0, 0.0, "right", true)];
            (scene, tiles)
        })
    }

    #[test]
    fn two_overlapping_tiles_map_every_dot_once_with_regions() {
        let (scene, tiles) = scene_and_tiles();
        let out = build_map(tiles, None, &base_from_head(), &VisionConfig::default()).expect("map");
        let map = &out.map;
        map.validate().expect("valid map");
        // Every dot whose disc lies well inside a frame is found; every detection is a dot.
        let found: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
        let head_from_base = base_from_head().inverse();
        let margin_px = 8.0;
        let must_find: Vec<[f64; 3]> = scene
            .dots
            .iter()
            .map(|d| [d[0], d[1], 0.0])
            .filter(|d| {
                tiles.iter().any(|t| {
                    let pc = (head_from_base * t.base_from_camera).inverse() * Point3::from(*d);
                    t.intrinsics.project(&pc).is_some_and(|px| {
                        px.x >= margin_px && px.y >= margin_px && px.x <= 799.0 - margin_px && px.y <= 599.0 - margin_px
                    })
                })
            })
            .collect();
        let all: Vec<[f64; 3]> = scene.dots.iter().map(|d| [d[0], d[1], 0.0]).collect();
        let recall = smp_core::eval::detection_score(&found, &must_find, 0.05);
        assert_eq!(recall.matched, must_find.len(), "{recall:?}");
        let precision = smp_core::eval::detection_score(&found, &all, 0.05);
        assert_eq!(precision.matched, found.len(), "{precision:?}");
        assert!(precision.loc_rms_mm < 0.01, "{precision:?}");
        // The overlap (-4..4 mm) holds dots detected by both tiles: each is owned once.
        let detected: usize = out.tile_detections.iter().map(|t| t.pixels.len()).sum();
        assert!(detected > map.follicles.len() + 5, "overlap gives double detections: {detected}");
        for f in &map.follicles {
            assert!(f.z_mm.abs() < 0.01 && f.normal[2] > 0.999, "{f:?}");
            assert!((f.diameter_mm - 0.3).abs() < 0.06, "diameter {}", f.diameter_mm);
            // Darkness is contrast against the skin on a skin-to-black scale: 0.8 of the way
            // from skin (grey ~188) to the dot colour (grey ~36) is 0.65 of the way to black.
            assert!((f.darkness - 0.65).abs() < 0.08, "darkness {}", f.darkness);
        }
        assert!(map.surface.fit_rms_mm < 0.01);

        // Regions, away from band edges (the density disc is 5 mm).
        let patch_from_head = map.surface.head_from_patch.inverse();
        let code = |x: f64, y: f64| {
            let p = patch_from_head * Point3::new(x, y, 0.0);
            map.regions.code_at(p.x, p.y)
        };
        for y in [-6.0, 0.0, 6.0] {
            assert_eq!(code(-20.0, y), 'H', "hair at y {y}");
            assert_eq!(code(0.0, y), 'T', "thinning at y {y}");
            assert_eq!(code(26.0, y), 'B', "bald at y {y}");
            assert_eq!(code(19.0, y), 'S', "scar at y {y}");
            assert_eq!(code(0.0, 40.0), '.', "not imaged");
        }
        // Skin tone from the skin colour (sRGB 222,178,152 -> L* ~76, ITA ~50°).
        let tone = map.skin.as_ref().expect("tone");
        assert!((tone.lab[0] - 75.8).abs() < 1.5 && (tone.lab[2] - 19.4).abs() < 1.5, "{tone:?}");
        assert_eq!(tone.fitzpatrick, 2);
        assert!(map.warnings.is_empty(), "{:?}", map.warnings);
    }

    #[test]
    fn a_tile_without_depth_still_places_its_follicles_with_a_warning() {
        let (scene, tiles) = scene_and_tiles();
        let mut tiles = tiles.clone();
        tiles[1].depth = None;
        let out = build_map(&tiles, None, &base_from_head(), &VisionConfig::default()).expect("map");
        assert!(
            out.map.warnings.iter().any(|w| w.contains("`right`") && w.contains("no depth")),
            "{:?}",
            out.map.warnings
        );
        // Dots in the overlap are still mapped (on the plane fitted from the left tile's
        // depth); beyond the left tile's depth the surface is unknown and they are dropped.
        assert!(
            out.map.warnings.iter().any(|w| w.contains("`right`") && w.contains("did not land")),
            "{:?}",
            out.map.warnings
        );
        let overlap: Vec<[f64; 3]> =
            scene.dots.iter().filter(|d| d[0].abs() < 3.0 && d[1].abs() < 11.0).map(|d| [d[0], d[1], 0.0]).collect();
        let found: Vec<[f64; 3]> = out.map.follicles.iter().map(|f| f.position()).collect();
        let s = smp_core::eval::detection_score(&found, &overlap, 0.05);
        assert_eq!(s.matched, overlap.len(), "{s:?}");
        assert!(out.map.follicles.iter().all(|f| f.z_mm.abs() < 0.01));
    }

    #[test]
    fn bad_input_is_an_error_or_a_warning() {
        let cfg = VisionConfig::default();
        assert!(matches!(build_map(&[], None, &base_from_head(), &cfg), Err(VisionError::NoTiles)));
        let (_, tiles) = scene_and_tiles();
        let mut bad = tiles.clone();
        bad[0].image.data.truncate(10);
        let e = build_map(&bad, None, &base_from_head(), &cfg).expect_err("truncated");
        assert!(e.to_string().contains("`left`"), "{e}");
        let mut black = tiles.clone();
        black[0].image = RgbImage::new(800, 600, [0, 0, 0]);
        let out = build_map(&black, None, &base_from_head(), &cfg).expect("one good tile is enough");
        assert!(out.map.warnings.iter().any(|w| w.contains("`left`") && w.contains("black")), "{:?}", out.map.warnings);
        let mut none = tiles.clone();
        none.iter_mut().for_each(|t| t.depth = None);
        assert!(matches!(build_map(&none, None, &base_from_head(), &cfg), Err(VisionError::SurfaceFit { .. })));
    }

    /// A depth frame of `intrinsics()` looking at the surface `hit(ray) -> t` (range along
    /// the unit ray), NaN where it misses.
    fn depth_of(hit: impl Fn(&Vector3<f64>) -> Option<f64>) -> DepthImage {
        let intr = intrinsics();
        let mut depth = DepthImage { width: 800, height: 600, z_mm: vec![f32::NAN; 800 * 600] };
        for y in 0..600u32 {
            for x in 0..800u32 {
                let r = intr.ray(&Point2::new(f64::from(x), f64::from(y)));
                if let Some(t) = hit(&r) {
                    depth.z_mm[(y * 800 + x) as usize] = (t * r.z) as f32;
                }
            }
        }
        depth
    }

    #[test]
    fn the_local_fit_places_a_follicle_on_oblique_and_curved_skin() {
        let intr = intrinsics();
        let pixel = [430.3, 281.7];
        let ray = intr.ray(&Point2::new(pixel[0], pixel[1]));
        // A plane seen 65° from its normal, 80 mm away: depth is not linear in the pixel
        // there, so a depth-against-pixel fit is off; a 3-D fit is exact.
        let tilt = 65f64.to_radians();
        let n = Vector3::new(tilt.sin(), 0.0, -tilt.cos());
        let p0 = Vector3::new(0.0, 0.0, 80.0);
        let plane = depth_of(|r| Some(n.dot(&p0) / n.dot(r)));
        let skin = local_skin_fit(&intr, &plane, pixel, 10).and_then(|l| l.point_and_normal(&intr, pixel));
        let skin = skin.expect("a fit");
        let truth = ray * (n.dot(&p0) / n.dot(&ray));
        assert!((skin.point.coords - truth).norm() < 1e-4, "{:?} vs {truth:?}", skin.point);
        assert!(skin.normal.angle(&n).to_degrees() < 0.01, "{:?}", skin.normal);
        assert!((skin.normal_weight() - 1.0).abs() < 1e-9, "seen at 65°: the local normal counts fully");
        // A 60 mm sphere (a head) seen near its rim: the curvature terms keep the normal that
        // of the point itself, not of the window's lopsided mean.
        let centre = Vector3::new(-52.0, 0.0, 115.0);
        let sphere = depth_of(|r| {
            let b = r.dot(&centre);
            let disc = b * b - (centre.norm_squared() - 60.0 * 60.0);
            (disc >= 0.0).then(|| b - disc.sqrt())
        });
        let fit = local_skin_fit(&intr, &sphere, pixel, 10).expect("a fit");
        let skin = fit.point_and_normal(&intr, pixel).expect("the ray meets it");
        let b = ray.dot(&centre);
        let truth = ray * (b - (b * b - (centre.norm_squared() - 3600.0)).sqrt());
        let true_n = (truth - centre).normalize();
        let view_deg = true_n.angle(&(-truth)).to_degrees();
        assert!(view_deg > 55.0, "an oblique view: {view_deg}°");
        assert!((skin.point.coords - truth).norm() < 2e-3, "{:?} vs {truth:?}", skin.point);
        let err_deg = skin.normal.angle(&true_n).to_degrees();
        assert!(err_deg < 0.05, "normal off by {err_deg}°");
        assert!(err_deg < fit.normal.angle(&true_n).to_degrees(), "better than the window's plane");
        // Too few valid pixels: no fit.
        assert!(local_skin_fit(&intr, &depth_of(|_| None), pixel, 10).is_none());
    }

    #[test]
    fn densities_are_per_area_of_skin_and_a_second_pass_adds_only_new_dots() {
        // A plane tilted 60° from the patch's: each 2 mm cell holds 0.08 cm² of skin.
        let slope = 60f64.to_radians().tan();
        let patch = SurfacePatch {
            head_from_patch: Isometry3::identity(),
            degree: 1,
            coefficients: vec![0.0, slope, 0.0],
            scale_mm: 1.0,
            x_range_mm: [0.0, 10.0],
            y_range_mm: [0.0, 10.0],
            fit_rms_mm: 0.0,
        };
        let grid = CellGrid::filled(0.0, 0.0, 2.0, 5, 5, 'B');
        for a in cell_skin_area_cm2(&patch, &grid) {
            assert!((a - 0.08).abs() < 1e-9, "{a}");
        }
        // Seen straight down by a camera 80 mm above the plane's (0, 0): 60° from the normal.
        let cam = Isometry3::from_parts(
            Translation3::new(5.0, 5.0, 80.0 + slope * 5.0),
            UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
        );
        let intr = intrinsics();
        let views = best_view_deg(&patch, &grid, &[true; 25], &[(&intr, cam.inverse())]);
        // 60° under the camera, a few degrees either way across the 10 mm (perspective).
        assert!((views[12] - 60.0).abs() < 1e-6, "{views:?}");
        assert!(views.iter().all(|v| (v - 60.0).abs() < 4.0), "{views:?}");
        let not_covered = best_view_deg(&patch, &grid, &[false; 25], &[(&intr, cam.inverse())]);
        assert!(not_covered.iter().all(|v| v.is_infinite()));

        let dot = |x: f64, y: f64| DotDetection {
            pixel: [x, y],
            diameter_px: 7.5,
            contrast_levels: 20.0,
            darkness: 0.3,
            polarity: crate::follicles::Polarity::Dark,
        };
        let mask = |on: usize| {
            let mut m = smp_core::image::GrayImage { width: 4, height: 1, data: vec![0; 4] };
            m.data[on] = 255;
            m
        };
        let with = |dots: Vec<DotDetection>, on: usize| DotDetections {
            dots,
            noise_sigma: 1.0,
            threshold_levels: 12.0,
            dark_mask: mask(on),
            mean_skin_level: 100.0,
            light_kept: false,
        };
        let mut first = with(vec![dot(50.0, 40.0), dot(10.0, 10.0)], 0);
        let second = with(vec![dot(51.0, 40.5), dot(30.0, 5.0)], 2);
        merge_detections(&mut first, second, 7.5);
        let pixels: Vec<[f64; 2]> = first.dots.iter().map(|d| d.pixel).collect();
        assert_eq!(pixels, vec![[30.0, 5.0], [10.0, 10.0], [50.0, 40.0]], "the same dot is kept once");
        assert_eq!(first.dark_mask.data, vec![255, 0, 255, 0]);
    }
}

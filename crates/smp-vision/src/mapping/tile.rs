//! One scan tile's contribution before the surface is known: its depth pixels lifted to the
//! head frame with their colour (skin samples), and its dark dots detected (on grey, and on
//! the tile's learnt colour projection where that separates its hair better), classified
//! and given the skin fitted around them.

use nalgebra::{Isometry3, Point3};
use opencv::core::Vec3f;
use opencv::prelude::*;
use smp_core::image::CameraView;

use super::local_skin::local_skin_fit;
use super::{median_f64, Sample, TileWork};
use crate::classify::dot_features;
use crate::cv::lab_f32;
use crate::error::{cv_err, VisionError};
use crate::follicles::{detect_dark_dots, detect_dots, DotDetections};
use crate::VisionConfig;

pub(super) fn median_depth_mm(t: &CameraView) -> Option<f64> {
    let d = t.depth.as_ref()?;
    let vals: Vec<f64> = d.z_mm.iter().step_by(97).filter(|z| z.is_finite() && **z > 0.0).map(|z| *z as f64).collect();
    median_f64(&vals)
}

/// Depth samples (lifted to the head frame, with colour) and dot detections of one tile.
pub(super) fn process_tile(
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
pub(super) fn merge_detections(det: &mut DotDetections, more: DotDetections, d_px: f64) {
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

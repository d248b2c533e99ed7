//! This patient's skin response from a close-up of the test dots: each dot's diameter,
//! a fit of diameter against dwell and depth, blowout detection, and the session's dwell and
//! depth chosen through [`smp_core::test_dots::choose_parameters`].
//!
//! Measuring one dot (the camera pose and the plan are known, so each planned dot is looked
//! for where it should be, never searched for in the whole frame):
//! 1. Project the planned point; cut a window half a grid spacing around it.
//! 2. Work in linear light (pigment over skin multiplies the light, and the dot's soft edge is
//!    a blend in linear light): contrast `c = 1 - L / L_skin`, the skin level and noise from
//!    the window's rim (median and MAD, so follicles there do not move them).
//! 3. Threshold the contrast, take the OpenCV contour that holds the planned point (or the
//!    nearest one within the association radius), its moments give the centre.
//! 4. Peak contrast from the dot's core; along 72 rays from the centre, the sub-pixel radius
//!    where the contrast falls to half the peak, and the 90 %-10 % edge width.
//! 5. Edge points back-projected through the camera model onto the skin's tangent plane at
//!    the planned point (its distance is known from the pose), a robust circle fit in mm:
//!    rays that run into a follicle touching the dot are outliers and dropped. The half-height
//!    radius is turned into the equal-area radius with the measured edge width (a soft edge
//!    moves the half-height inward by `pi² s² / 6 r` for a logistic edge of scale `s`).
//!
//! Fit: `d = d0 + a * dwell + b * depth`, least squares, depth rows added shallow to deep; a
//! row whose diameters jump above the fit of the shallower rows, or whose edges are much
//! softer, is the blowout onset and is left out (with everything deeper).

use nalgebra::{Isometry3, Matrix3, Point2, Point3, Vector3};
use opencv::core::{Point, Point2f, Vector};
use opencv::imgproc;
use serde::{Deserialize, Serialize};
use smp_core::image::CameraView;
use smp_core::test_dots::{
    choose_parameters, ChosenParameters, ParameterLimits, SkinResponseFit, TestDotError, TestDotPlan,
};
use thiserror::Error;

use crate::cv::{check_view, gray_mat};
use crate::error::{cv_err, VisionError};

/// Tuning of the test-dot measurement and fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestDotConfig {
    /// Dot pixels are darker than the skin by this many noise sigmas (of the contrast) ...
    pub detect_sigma: f64,
    /// ... and by at least this contrast (0 = skin, 1 = black).
    pub min_contrast: f64,
    /// Largest distance of a dot's centre from its planned point on the skin, mm
    /// (registration error plus placement error).
    pub association_radius_mm: f64,
    /// Rays cast from each dot's centre to find its edge.
    pub rays: usize,
    /// A ray whose edge lies this far (mm) or 3 robust sigmas beyond the median radius ran
    /// into something touching the dot (a follicle) and is dropped.
    pub outlier_ray_mm: f64,
    /// A depth row is a blowout when its median diameter exceeds the fit of the shallower
    /// rows by more than this (mm) and `blowout_jump_sigma` residual RMS ...
    pub blowout_jump_mm: f64,
    pub blowout_jump_sigma: f64,
    /// ... or when its median edge width is this many times that of the clean rows.
    pub blowout_edge_factor: f64,
    /// Fewest clean dots the fit accepts (three parameters plus redundancy).
    pub min_fit_dots: usize,
}

impl Default for TestDotConfig {
    fn default() -> Self {
        TestDotConfig {
            detect_sigma: 5.0,
            min_contrast: 0.06,
            association_radius_mm: 0.35,
            rays: 72,
            outlier_ray_mm: 0.03,
            blowout_jump_mm: 0.06,
            blowout_jump_sigma: 4.0,
            blowout_edge_factor: 2.0,
            min_fit_dots: 6,
        }
    }
}

/// Why the test dots gave no skin response.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SkinResponseError {
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error("test-dot config: field `{field}` {problem}")]
    Config { field: &'static str, problem: String },
    #[error(
        "test dot {index} (dwell {dwell_s:.3} s, depth {depth_mm:.3} mm) projects to pixel ({px:.1}, {py:.1}), too near the edge of view `{label}` or behind the camera; centre the camera over the grid"
    )]
    DotOutsideImage { index: usize, dwell_s: f64, depth_mm: f64, px: f64, py: f64, label: String },
    #[error(
        "test dot {index} (dwell {dwell_s:.3} s, depth {depth_mm:.3} mm) not found within {radius_mm} mm of its planned point (pixel {px:.1}, {py:.1}) in view `{label}`: {why}; check that it was placed (needle powered, pigment loaded), the registration, and the lighting"
    )]
    DotNotFound {
        index: usize,
        dwell_s: f64,
        depth_mm: f64,
        px: f64,
        py: f64,
        radius_mm: f64,
        label: String,
        why: String,
    },
    #[error(
        "too few test dots to fit: {clean} clean dots over {dwells} dwell times and {depths} depths ({blown} blowouts left out); the fit needs at least {needed} over 2 dwell times and 2 depths, so test more shallow dots"
    )]
    TooFewDots { clean: usize, dwells: usize, depths: usize, blown: usize, needed: usize },
    #[error("skin-response fit failed: {0}; the measured diameters are degenerate (all dwell or depth values equal?)")]
    Singular(String),
    #[error(transparent)]
    Choice(#[from] TestDotError),
}

/// One test dot as measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasuredDot {
    /// Index of the planned dot.
    pub index: usize,
    pub dwell_s: f64,
    pub depth_mm: f64,
    /// Centre, distorted pixel coordinates.
    pub centre_px: [f64; 2],
    /// Distance of the centre from the planned point on the skin plane, mm.
    pub offset_mm: f64,
    /// Equal-area diameter on the skin, mm.
    pub diameter_mm: f64,
    /// 90 %-10 % edge width (median over the rays), mm: soft for a blowout.
    pub edge_width_mm: f64,
    /// Peak contrast against the skin (0 = skin, 1 = black).
    pub contrast: f64,
    /// RMS of the kept edge radii about the fitted circle over its radius: 0 = round.
    pub roundness: f64,
    /// Share of rays dropped (ran into something touching the dot, or found no edge).
    pub dropped_rays: f64,
}

/// Everything a test-dot run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestDotReport {
    pub dots: Vec<MeasuredDot>,
    pub fit: SkinResponseFit,
    pub chosen: ChosenParameters,
}

/// Measures, fits and chooses: the whole test-dot step from one close-up of the grid.
pub fn skin_response_from_test_dots(
    view: &CameraView,
    base_from_head: &Isometry3<f64>,
    plan: &TestDotPlan,
    limits: &ParameterLimits,
    cfg: &TestDotConfig,
) -> Result<TestDotReport, SkinResponseError> {
    let dots = measure_test_dots(view, base_from_head, plan, cfg)?;
    let fit = fit_skin_response(&dots, cfg)?;
    let limits = ParameterLimits { depth_limit_mm: limits.depth_limit_mm.min(plan.depth_limit_mm), ..limits.clone() };
    let chosen = choose_parameters(&fit, &limits)?;
    Ok(TestDotReport { dots, fit, chosen })
}

fn validate(cfg: &TestDotConfig) -> Result<(), SkinResponseError> {
    let bad = |field: &'static str, v: f64| SkinResponseError::Config {
        field,
        problem: format!("is {v}; it must be a positive finite number"),
    };
    for (field, v) in [
        ("detect_sigma", cfg.detect_sigma),
        ("min_contrast", cfg.min_contrast),
        ("association_radius_mm", cfg.association_radius_mm),
        ("outlier_ray_mm", cfg.outlier_ray_mm),
        ("blowout_jump_mm", cfg.blowout_jump_mm),
        ("blowout_jump_sigma", cfg.blowout_jump_sigma),
        ("blowout_edge_factor", cfg.blowout_edge_factor),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(bad(field, v));
        }
    }
    if !(8..=720).contains(&cfg.rays) {
        return Err(SkinResponseError::Config { field: "rays", problem: format!("is {}; use 8-720", cfg.rays) });
    }
    if cfg.min_fit_dots < 4 {
        return Err(SkinResponseError::Config {
            field: "min_fit_dots",
            problem: format!("is {}; three parameters need at least 4 dots", cfg.min_fit_dots),
        });
    }
    Ok(())
}

/// Measures every planned dot in `view` (the close-up over the grid, with its pose), in plan
/// order. A dot that cannot be found is an error naming it.
pub fn measure_test_dots(
    view: &CameraView,
    base_from_head: &Isometry3<f64>,
    plan: &TestDotPlan,
    cfg: &TestDotConfig,
) -> Result<Vec<MeasuredDot>, SkinResponseError> {
    validate(cfg)?;
    check_view(view)?;
    let lin = linear_luma(&view.image.data);
    let camera_from_head = (base_from_head.inverse() * view.base_from_camera).inverse();
    let normal_c = camera_from_head.rotation * Vector3::from(plan.normal_head);
    let normal_c = normal_c.try_normalize(1e-9).ok_or_else(|| SkinResponseError::Config {
        field: "plan.normal_head",
        problem: "is not a direction; rebuild the plan".into(),
    })?;
    let mut out = Vec::with_capacity(plan.dots.len());
    for d in &plan.dots {
        let pc = camera_from_head * Point3::from(d.position_head_mm);
        out.push(measure_one(view, &lin, &pc, &normal_c, plan.spacing_mm, d.index, d.dwell_s, d.depth_mm, cfg)?);
    }
    Ok(out)
}

/// Linear-light luma (Rec. 709 weights on linearised sRGB) of interleaved RGB bytes.
fn linear_luma(rgb: &[u8]) -> Vec<f32> {
    let lut: Vec<f32> = (0..256)
        .map(|v| {
            let c = v as f64 / 255.0;
            (if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }) as f32
        })
        .collect();
    rgb.chunks_exact(3)
        .map(|p| 0.2126 * lut[p[0] as usize] + 0.7152 * lut[p[1] as usize] + 0.0722 * lut[p[2] as usize])
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Window of contrast values around a dot, `size` x `size`, origin at pixel (`x0`, `y0`).
struct Window {
    x0: i64,
    y0: i64,
    size: usize,
    c: Vec<f64>,
}

impl Window {
    fn at(&self, x: f64, y: f64) -> Option<f64> {
        let (fx, fy) = (x - self.x0 as f64, y - self.y0 as f64);
        let (ix, iy) = (fx.floor(), fy.floor());
        if ix < 0.0 || iy < 0.0 || ix + 1.0 >= self.size as f64 || iy + 1.0 >= self.size as f64 {
            return None;
        }
        let (ix, iy) = (ix as usize, iy as usize);
        let (ax, ay) = (fx - ix as f64, fy - iy as f64);
        let s = self.size;
        let v = |x: usize, y: usize| self.c[y * s + x];
        Some(
            (1.0 - ay) * ((1.0 - ax) * v(ix, iy) + ax * v(ix + 1, iy))
                + ay * ((1.0 - ax) * v(ix, iy + 1) + ax * v(ix + 1, iy + 1)),
        )
    }
}

/// Where the ray through a pixel meets the skin's tangent plane (point `p`, unit normal `n`,
/// camera frame).
fn on_plane(view: &CameraView, px: f64, py: f64, p: &Point3<f64>, n: &Vector3<f64>) -> Option<Point3<f64>> {
    let ray = view.intrinsics.ray(&Point2::new(px, py));
    let denom = ray.dot(n);
    if denom.abs() < 1e-6 {
        return None;
    }
    let t = p.coords.dot(n) / denom;
    (t > 0.0).then(|| Point3::from(ray * t))
}

/// Algebraic (Kåsa) circle fit: centre and radius of 2-D points.
fn circle_fit(pts: &[[f64; 2]]) -> Option<([f64; 2], f64)> {
    if pts.len() < 3 {
        return None;
    }
    let mut a = Matrix3::zeros();
    let mut b = Vector3::zeros();
    for p in pts {
        let row = Vector3::new(p[0], p[1], 1.0);
        let rhs = -(p[0] * p[0] + p[1] * p[1]);
        a += row * row.transpose();
        b += row * rhs;
    }
    let s = a.lu().solve(&b)?;
    let (cx, cy) = (-0.5 * s[0], -0.5 * s[1]);
    let r2 = cx * cx + cy * cy - s[2];
    (r2 > 0.0 && r2.is_finite()).then(|| ([cx, cy], r2.sqrt()))
}

/// Least-median-of-squares circle: the circle through three edge points (spread around the
/// dot) whose median radial residual over all points is smallest. Robust while fewer than
/// half the rays ran into something touching the dot (a follicle), where a plain fit would
/// be pulled toward it.
fn robust_circle(pts: &[[f64; 2]]) -> Option<([f64; 2], f64)> {
    let n = pts.len();
    if n < 6 {
        return circle_fit(pts);
    }
    let mut best: Option<(f64, [f64; 2], f64)> = None;
    for step in [n / 3, n / 4, n / 5] {
        let step = step.max(1);
        for i in 0..n {
            let tri = [pts[i], pts[(i + step) % n], pts[(i + 2 * step) % n]];
            let Some((c, r)) = circle_fit(&tri) else { continue };
            let mut res: Vec<f64> = pts.iter().map(|p| ((p[0] - c[0]).hypot(p[1] - c[1]) - r).abs()).collect();
            let m = median(&mut res);
            if m.is_finite() && best.is_none_or(|b| m < b.0) {
                best = Some((m, c, r));
            }
        }
    }
    best.map(|(_, c, r)| (c, r))
}

#[allow(clippy::too_many_arguments)]
fn measure_one(
    view: &CameraView,
    lin: &[f32],
    pc: &Point3<f64>,
    normal_c: &Vector3<f64>,
    spacing_mm: f64,
    index: usize,
    dwell_s: f64,
    depth_mm: f64,
    cfg: &TestDotConfig,
) -> Result<MeasuredDot, SkinResponseError> {
    let label = view.label.clone();
    let (w, h) = (view.image.width as i64, view.image.height as i64);
    let k = &view.intrinsics;
    let proj = k.project(pc);
    let outside = |px: f64, py: f64| SkinResponseError::DotOutsideImage {
        index,
        dwell_s,
        depth_mm,
        px,
        py,
        label: label.clone(),
    };
    let Some(proj) = proj else { return Err(outside(f64::NAN, f64::NAN)) };
    let mm_per_px = pc.z / k.fx_px.max(1e-9);
    let half = (0.5 * spacing_mm / mm_per_px).ceil() as i64;
    let (cxi, cyi) = (proj.x.round() as i64, proj.y.round() as i64);
    if half < 4 || cxi - half < 0 || cyi - half < 0 || cxi + half >= w || cyi + half >= h {
        return Err(outside(proj.x, proj.y));
    }
    let size = (2 * half + 1) as usize;
    let (x0, y0) = (cxi - half, cyi - half);
    let mut l = vec![0f64; size * size];
    for y in 0..size {
        for x in 0..size {
            l[y * size + x] = f64::from(lin[(y0 as usize + y) * w as usize + x0 as usize + x]);
        }
    }
    // Skin level and noise from the window's rim.
    let rim_r = 0.75 * half as f64;
    let mut rim: Vec<f64> = Vec::new();
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f64 - half as f64, y as f64 - half as f64);
            if (dx * dx + dy * dy).sqrt() >= rim_r {
                rim.push(l[y * size + x]);
            }
        }
    }
    let skin = median(&mut rim.clone());
    let not_found = |why: String| SkinResponseError::DotNotFound {
        index,
        dwell_s,
        depth_mm,
        px: proj.x,
        py: proj.y,
        radius_mm: cfg.association_radius_mm,
        label: label.clone(),
        why,
    };
    if !(skin.is_finite() && skin > 1e-4) {
        return Err(not_found("the skin around it is black".into()));
    }
    let c: Vec<f64> = l.iter().map(|v| 1.0 - v / skin).collect();
    let mut dev: Vec<f64> = rim.iter().map(|v| (1.0 - v / skin).abs()).collect();
    let sigma = 1.4826 * median(&mut dev);
    // Dark skin lowers a dot's contrast and raises the relative noise: the threshold is the
    // noise bound, but never above half of what lies where the dot should be (so a real dot
    // is always cut at its half height or lower); a guess within 3 sigma of the skin is noise.
    let assoc_px = cfg.association_radius_mm / mm_per_px;
    let (lx, ly) = (proj.x - x0 as f64, proj.y - y0 as f64);
    let mut near: Vec<f64> = Vec::new();
    for y in 0..size {
        for x in 0..size {
            if (x as f64 - lx).hypot(y as f64 - ly) <= assoc_px {
                near.push(c[y * size + x]);
            }
        }
    }
    near.sort_by(f64::total_cmp);
    let guess = near.get((near.len() as f64 * 0.9) as usize).copied().unwrap_or(0.0);
    if !(guess > 3.0 * sigma && guess > cfg.min_contrast) {
        return Err(not_found(format!(
            "the darkest part there has contrast {guess:.3}, within the skin's noise ({sigma:.3})"
        )));
    }
    let thr = (cfg.detect_sigma * sigma).min(0.5 * guess).max(cfg.min_contrast);
    let bin: Vec<u8> = c.iter().map(|v| if *v > thr { 255 } else { 0 }).collect();
    let bin_img = smp_core::image::GrayImage { width: size as u32, height: size as u32, data: bin };
    let bin_mat = gray_mat(&bin_img, &label)?;
    let mut contours: Vector<Vector<Point>> = Vector::new();
    imgproc::find_contours(
        &bin_mat,
        &mut contours,
        imgproc::RETR_EXTERNAL,
        imgproc::CHAIN_APPROX_NONE,
        Point::new(0, 0),
    )
    .map_err(cv_err("test-dot contours", &label))?;
    let mut chosen: Option<(f64, f64, f64, f64)> = None; // (distance, cx, cy, area)
    for contour in contours.iter() {
        let m = imgproc::moments(&contour, false).map_err(cv_err("test-dot moments", &label))?;
        let area = imgproc::contour_area(&contour, false).map_err(cv_err("test-dot contour area", &label))?;
        if m.m00 <= 0.0 {
            continue;
        }
        let (mx, my) = (m.m10 / m.m00, m.m01 / m.m00);
        let inside = imgproc::point_polygon_test(&contour, Point2f::new(lx as f32, ly as f32), false)
            .map_err(cv_err("test-dot association", &label))?
            >= 0.0;
        let dist = if inside { 0.0 } else { (mx - lx).hypot(my - ly) };
        if dist <= assoc_px && chosen.is_none_or(|c| dist < c.0 || (dist == c.0 && area > c.3)) {
            chosen = Some((dist, mx, my, area));
        }
    }
    let Some((_, mut cx, mut cy, area)) = chosen else {
        return Err(not_found(format!("nothing darker than the skin by {thr:.3} there")));
    };
    // Peak contrast from the core of the dot.
    let r_eq = (area.max(1.0) / std::f64::consts::PI).sqrt();
    let win = Window { x0: 0, y0: 0, size, c };
    let peak_of = |cx: f64, cy: f64, r: f64| -> f64 {
        let mut core: Vec<f64> = Vec::new();
        let rc = (0.4 * r).max(1.0);
        for y in 0..size {
            for x in 0..size {
                if (x as f64 - cx).hypot(y as f64 - cy) <= rc {
                    core.push(win.c[y * size + x]);
                }
            }
        }
        median(&mut core)
    };
    let mut peak = peak_of(cx, cy, r_eq);
    if !(peak.is_finite() && peak > thr) {
        return Err(not_found(format!("its core contrast {peak:.3} is below the threshold {thr:.3}")));
    }
    let pcp = on_plane(view, proj.x, proj.y, pc, normal_c).unwrap_or(*pc);
    // Plane basis for 2-D fitting.
    let e1 =
        normal_c.cross(&Vector3::y()).try_normalize(1e-9).unwrap_or_else(|| normal_c.cross(&Vector3::x()).normalize());
    let e2 = normal_c.cross(&e1);
    let to2 = |p: &Point3<f64>| [(p - pcp).dot(&e1), (p - pcp).dot(&e2)];
    let rays = cfg.rays;
    let max_s = half as f64 - 1.0;
    let mut result = None;
    for _pass in 0..3 {
        let mut edges: Vec<[f64; 2]> = Vec::with_capacity(rays);
        let mut widths: Vec<f64> = Vec::with_capacity(rays);
        for r in 0..rays {
            let th = 2.0 * std::f64::consts::PI * r as f64 / rays as f64;
            let (dx, dy) = (th.cos(), th.sin());
            // The profile along the ray, then the edge searched from the outside in: the
            // outermost half-height crossing is the dot's rim even when a hair drawn over the
            // dot (lighter than the pigment on dark skin) breaks its plateau.
            const STEP: f64 = 0.25;
            let profile: Vec<f64> = (0..)
                .map(|k| k as f64 * STEP)
                .take_while(|s| *s <= max_s)
                .map_while(|s| win.at(cx + s * dx, cy + s * dy))
                .collect();
            let inward = |level: f64, from: usize| -> Option<usize> {
                (1..=from.min(profile.len().saturating_sub(1)))
                    .rev()
                    .find(|k| profile[*k - 1] >= level && profile[*k] < level)
            };
            let at = |k: usize, level: f64| -> f64 {
                let (a, b) = (profile[k - 1], profile[k]);
                (k as f64 - (level - b) / (a - b).max(1e-12)) * STEP
            };
            let Some(k50) = inward(0.5 * peak, profile.len().saturating_sub(1)) else { continue };
            let r50 = Some(at(k50, 0.5 * peak));
            let r90 = inward(0.9 * peak, k50).map(|k| at(k, 0.9 * peak));
            let r10 =
                (k50..profile.len()).find(|k| profile[*k] < 0.1 * peak).filter(|k| *k > 0).map(|k| at(k, 0.1 * peak));
            let Some(r50) = r50 else { continue };
            let (ex, ey) = (x0 as f64 + cx + r50 * dx, y0 as f64 + cy + r50 * dy);
            if let Some(q) = on_plane(view, ex, ey, pc, normal_c) {
                edges.push(to2(&q));
                if let (Some(a), Some(b)) = (r90, r10) {
                    widths.push((b - a).max(0.0));
                } else {
                    widths.push(f64::NAN);
                }
            }
        }
        let Some((mut centre, mut radius)) = robust_circle(&edges) else {
            return Err(not_found("no edge found around it".into()));
        };
        let mut keep: Vec<bool> = vec![true; edges.len()];
        for _ in 0..3 {
            let radii: Vec<f64> = edges.iter().map(|e| (e[0] - centre[0]).hypot(e[1] - centre[1])).collect();
            let mut dev: Vec<f64> = radii.iter().map(|r| (r - radius).abs()).collect();
            let tol = (3.0 * 1.4826 * median(&mut dev)).max(cfg.outlier_ray_mm);
            for (i, r) in radii.iter().enumerate() {
                keep[i] = (*r - radius).abs() <= tol;
            }
            let kept: Vec<[f64; 2]> = edges.iter().zip(&keep).filter(|(_, k)| **k).map(|(e, _)| *e).collect();
            if let Some((c2, r2)) = circle_fit(&kept) {
                centre = c2;
                radius = r2;
            }
        }
        let kept: Vec<usize> = (0..edges.len()).filter(|i| keep[*i]).collect();
        if kept.len() < rays / 4 {
            return Err(not_found(format!("only {} of {rays} rays found a clean edge", kept.len())));
        }
        let mut w: Vec<f64> = kept.iter().map(|i| widths[*i]).filter(|v| v.is_finite()).collect();
        let width_px = median(&mut w);
        let resid: f64 = kept
            .iter()
            .map(|i| ((edges[*i][0] - centre[0]).hypot(edges[*i][1] - centre[1]) - radius).powi(2))
            .sum::<f64>()
            / kept.len() as f64;
        // Move the centre to the fitted one (in pixels) and measure again with its peak.
        let cpt = pcp + e1 * centre[0] + e2 * centre[1];
        let cpx = k.project(&cpt).unwrap_or(proj);
        cx = cpx.x - x0 as f64;
        cy = cpx.y - y0 as f64;
        let offset = (cpt - *pc).norm();
        result = Some((radius, width_px, resid.sqrt() / radius, 1.0 - kept.len() as f64 / rays as f64, offset, cpx));
        let rpx = radius / mm_per_px;
        let p2 = peak_of(cx, cy, rpx);
        if p2.is_finite() && p2 > thr {
            peak = p2;
        }
    }
    let Some((r_half, width_px, roundness, dropped, offset, cpx)) = result else {
        return Err(not_found("no edge found around it".into()));
    };
    if offset > cfg.association_radius_mm {
        return Err(not_found(format!("the nearest dark disc is {offset:.2} mm away")));
    }
    let width_mm = if width_px.is_finite() { width_px * mm_per_px } else { 0.0 };
    // Logistic edge of scale s: 10-90 % width = 2 ln 9 s; equal-area radius² = r_half² + pi² s² / 3.
    let s = width_mm / (2.0 * 9f64.ln());
    let r_area = (r_half * r_half + std::f64::consts::PI.powi(2) * s * s / 3.0).sqrt();
    Ok(MeasuredDot {
        index,
        dwell_s,
        depth_mm,
        centre_px: [cpx.x, cpx.y],
        offset_mm: offset,
        diameter_mm: 2.0 * r_area,
        edge_width_mm: width_mm,
        contrast: peak,
        roundness,
        dropped_rays: dropped,
    })
}

/// Least-squares `d = d0 + a dwell + b depth` over `dots`; `(coefficients, rms)`.
fn lsq(dots: &[&MeasuredDot]) -> Result<([f64; 3], f64), SkinResponseError> {
    let mut a = Matrix3::zeros();
    let mut b = Vector3::zeros();
    for d in dots {
        let row = Vector3::new(1.0, d.dwell_s, d.depth_mm);
        a += row * row.transpose();
        b += row * d.diameter_mm;
    }
    let s = a.lu().solve(&b).ok_or_else(|| SkinResponseError::Singular(format!("{} dots", dots.len())))?;
    let coef = [s[0], s[1], s[2]];
    let ssr: f64 = dots.iter().map(|d| (predict(&coef, d) - d.diameter_mm).powi(2)).sum();
    Ok((coef, (ssr / dots.len().max(1) as f64).sqrt()))
}

fn predict(c: &[f64; 3], d: &MeasuredDot) -> f64 {
    c[0] + c[1] * d.dwell_s + c[2] * d.depth_mm
}

fn distinct(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut out: Vec<f64> = v.collect();
    out.sort_by(f64::total_cmp);
    out.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    out
}

/// Fits this patient's response to measured dots, detecting the blowout onset (rows added
/// from the shallowest; the first row that jumps above the shallower rows' fit, or whose
/// edges are much softer, and everything deeper, is left out).
pub fn fit_skin_response(dots: &[MeasuredDot], cfg: &TestDotConfig) -> Result<SkinResponseFit, SkinResponseError> {
    validate(cfg)?;
    let depths = distinct(dots.iter().map(|d| d.depth_mm));
    let too_few = |clean: &[&MeasuredDot], blown: usize| SkinResponseError::TooFewDots {
        clean: clean.len(),
        dwells: distinct(clean.iter().map(|d| d.dwell_s)).len(),
        depths: distinct(clean.iter().map(|d| d.depth_mm)).len(),
        blown,
        needed: cfg.min_fit_dots,
    };
    let row = |depth: f64| -> Vec<&MeasuredDot> { dots.iter().filter(|d| (d.depth_mm - depth).abs() < 1e-9).collect() };
    let mut clean: Vec<&MeasuredDot> = depths.iter().take(2).flat_map(|d| row(*d)).collect();
    let mut onset = None;
    for depth in depths.iter().skip(2) {
        let usable = clean.len() >= 4 && distinct(clean.iter().map(|d| d.dwell_s)).len() >= 2;
        if !usable {
            break;
        }
        let (coef, rms) = lsq(&clean)?;
        let next = row(*depth);
        let mut jumps: Vec<f64> = next.iter().map(|d| d.diameter_mm - predict(&coef, d)).collect();
        let jump = median(&mut jumps);
        let mut clean_w: Vec<f64> = clean.iter().map(|d| d.edge_width_mm).collect();
        let mut next_w: Vec<f64> = next.iter().map(|d| d.edge_width_mm).collect();
        let (cw, nw) = (median(&mut clean_w), median(&mut next_w));
        let soft = cw > 0.0 && nw > cfg.blowout_edge_factor * cw.max(0.01);
        if jump > cfg.blowout_jump_mm.max(cfg.blowout_jump_sigma * rms) || soft {
            onset = Some(*depth);
            break;
        }
        clean.extend(next);
    }
    let blowout_dots: Vec<usize> = match onset {
        Some(o) => dots.iter().filter(|d| d.depth_mm >= o - 1e-9).map(|d| d.index).collect(),
        None => Vec::new(),
    };
    let blown = blowout_dots.len();
    let n_dwell = distinct(clean.iter().map(|d| d.dwell_s)).len();
    let n_depth = distinct(clean.iter().map(|d| d.depth_mm)).len();
    if clean.len() < cfg.min_fit_dots || n_dwell < 2 || n_depth < 2 {
        return Err(too_few(&clean, blown));
    }
    let (coef, rms) = lsq(&clean)?;
    let range = |f: fn(&MeasuredDot) -> f64| {
        let v = distinct(clean.iter().map(|d| f(d)));
        [v[0], v[v.len() - 1]]
    };
    let depth_range_mm = range(|d| d.depth_mm);
    let mut blowout_dots = blowout_dots;
    blowout_dots.sort_unstable();
    Ok(SkinResponseFit {
        d0_mm: coef[0],
        per_dwell_mm_per_s: coef[1],
        per_depth_mm_per_mm: coef[2],
        residual_rms_mm: rms,
        n: clean.len(),
        dwell_range_s: range(|d| d.dwell_s),
        depth_range_mm,
        blowout_onset_depth_mm: onset,
        max_clean_depth_mm: depth_range_mm[1],
        blowout_dots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(index: usize, dwell_s: f64, depth_mm: f64, diameter_mm: f64, edge_width_mm: f64) -> MeasuredDot {
        MeasuredDot {
            index,
            dwell_s,
            depth_mm,
            centre_px: [0.0, 0.0],
            offset_mm: 0.0,
            diameter_mm,
            edge_width_mm,
            contrast: 0.5,
            roundness: 0.01,
            dropped_rays: 0.0,
        }
    }

    fn grid(truth: impl Fn(f64, f64) -> (f64, f64)) -> Vec<MeasuredDot> {
        let mut out = Vec::new();
        for depth in [0.6, 0.8, 1.0, 1.2] {
            for dwell in [0.05, 0.1, 0.2, 0.3] {
                let (d, w) = truth(dwell, depth);
                out.push(dot(out.len(), dwell, depth, d, w));
            }
        }
        out
    }

    #[test]
    fn a_linear_response_is_recovered_exactly() {
        let dots = grid(|dw, dp| (0.18 + 0.6 * dw + 0.2 * dp, 0.05));
        let fit = fit_skin_response(&dots, &TestDotConfig::default()).expect("fit");
        assert!((fit.d0_mm - 0.18).abs() < 1e-9 && (fit.per_dwell_mm_per_s - 0.6).abs() < 1e-9);
        assert!((fit.per_depth_mm_per_mm - 0.2).abs() < 1e-9 && fit.residual_rms_mm < 1e-9);
        assert_eq!((fit.n, fit.blowout_onset_depth_mm), (16, None));
        assert_eq!(fit.max_clean_depth_mm, 1.2);
    }

    #[test]
    fn a_diameter_jump_or_a_soft_edge_marks_the_blowout_onset() {
        let dots = grid(|dw, dp| (0.2 + 0.5 * dw + 0.15 * dp + if dp > 1.1 { 0.15 } else { 0.0 }, 0.05));
        let fit = fit_skin_response(&dots, &TestDotConfig::default()).expect("fit");
        assert_eq!(fit.blowout_onset_depth_mm, Some(1.2));
        assert_eq!(fit.blowout_dots, (12..16).collect::<Vec<_>>());
        assert_eq!((fit.n, fit.max_clean_depth_mm), (12, 1.0));
        let dots = grid(|dw, dp| (0.2 + 0.5 * dw + 0.15 * dp, if dp > 0.9 { 0.2 } else { 0.05 }));
        let fit = fit_skin_response(&dots, &TestDotConfig::default()).expect("fit");
        assert_eq!(fit.blowout_onset_depth_mm, Some(1.0));
        assert_eq!(fit.n, 8);
    }

    #[test]
    fn too_few_dots_is_an_error_that_counts_them() {
        let dots: Vec<MeasuredDot> = grid(|dw, dp| (0.2 + 0.5 * dw + 0.15 * dp, 0.05)).into_iter().take(5).collect();
        let err = fit_skin_response(&dots, &TestDotConfig::default()).expect_err("5 dots");
        assert!(matches!(err, SkinResponseError::TooFewDots { clean: 5, depths: 2, .. }), "{err}");
        assert!(err.to_string().contains("at least 6"), "{err}");
    }
}

//! Camera check of one dot site: is there fresh pigment where a dot was planned?
//!
//! Why: after a crash, a serial fault, a controller reset or an abort the journal may hold
//! dots whose fate is unknown. Such a dot must never be tattooed twice, nor silently left
//! out: the executor puts the flange camera over the site and asks this module. The answer
//! is `Present` (resolve as executed), `Absent` (the site is untouched: it may be planned
//! again) or `Unclear` with the reason (the operator decides). Only a clear answer resolves
//! a dot, so every doubt (site out of view, facing away, seen too obliquely, contrast between
//! the two thresholds) is `Unclear`, never a guess.
//!
//! The decision is local and relative, so that it holds on every skin tone: the darkness of
//! a dot-sized core at the projected site against the skin in an annulus around it, as the
//! ratio of linear luminances (`contrast = 1 - core / skin`). Ink multiplies the light the
//! skin returns by much the same factor on light and on dark skin, so one threshold serves
//! Fitzpatrick I to VI. Robust statistics keep a neighbour out of the answer: the core's
//! value is the *median* of its pixels (a follicle or an earlier dot 0.5-0.7 mm away
//! reaches at most the core's edge), the skin's a percentile of the annulus (a neighbour
//! covers a minority of it). The core may move by up to `max_offset_mm` (the deposited dot
//! sits up to ~0.1 mm off its plan), and the darkest such core is the one judged.
//!
//! Pure: an image, a camera model and poses in, an answer out. Occlusion by another part of
//! the head is not modelled (the scalp is convex where it is treated); a site facing away
//! from the camera or seen beyond `max_view_angle_deg` is `Unclear`.

use nalgebra::{Isometry3, Matrix2, Point2, Point3, Vector2, Vector3};
use serde::{Deserialize, Serialize};
use smp_core::camera::CameraIntrinsics;
use smp_core::image::RgbImage;
use thiserror::Error;

/// Tuning of the dot-site check. The defaults suit the default rig's flange camera (~25 px/mm)
/// and the session dots of DOMAIN.md (0.2-0.6 mm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DotCheckConfig {
    /// How far the deposited dot's centre may sit from the planned site, mm: the core is
    /// searched within this radius.
    pub max_offset_mm: f64,
    /// Radius of the judged core as a fraction of the expected dot radius: well inside the
    /// dot, so that its blurred edge does not lighten the median.
    pub core_fraction: f64,
    /// Smallest core radius, pixels (tiny dots on a coarse view still get a few pixels).
    pub min_core_radius_px: f64,
    /// Gap between the largest possible dot (expected radius plus `max_offset_mm`) and the
    /// skin annulus, mm: room for the dot's soft edge.
    pub annulus_gap_mm: f64,
    /// Width of the skin annulus, mm.
    pub annulus_width_mm: f64,
    /// Percentile (0..1) of the annulus luminances taken as the skin: above the median,
    /// because everything that disturbs skin (follicles, earlier dots, shadow) is darker.
    pub skin_percentile: f64,
    /// At or above this contrast the dot is `Present`. Measured on the simulator
    /// (tests/dot_check_on_sim.rs, Fitzpatrick I-VI): fresh dots at 50 % dilution 0.49 and
    /// more; at 100 % dilution through a noisy, defocused camera 0.33 and more.
    pub present_min_contrast: f64,
    /// At or below this contrast the site is `Absent`; between the two it is `Unclear`.
    /// Untouched sites next to follicles and earlier dots measured 0.10 at most.
    pub absent_max_contrast: f64,
    /// Largest angle between the skin normal and the line of sight, degrees.
    pub max_view_angle_deg: f64,
    /// Pixels kept clear of the image border around the annulus.
    pub border_margin_px: f64,
    /// Skin darker than this linear luminance (0..1) is not skin (backdrop, shadow, lens cap).
    pub min_skin_luminance: f64,
}

impl Default for DotCheckConfig {
    fn default() -> Self {
        DotCheckConfig {
            max_offset_mm: 0.12,
            core_fraction: 0.6,
            min_core_radius_px: 1.0,
            annulus_gap_mm: 0.1,
            annulus_width_mm: 0.3,
            skin_percentile: 0.6,
            present_min_contrast: 0.25,
            absent_max_contrast: 0.15,
            max_view_angle_deg: 60.0,
            border_margin_px: 2.0,
            min_skin_luminance: 0.01,
        }
    }
}

impl DotCheckConfig {
    /// Rejects settings that make the check meaningless, naming the field.
    pub fn validate(&self) -> Result<(), DotCheckError> {
        let bad = |field: &'static str, problem: String| Err(DotCheckError::Config { field, problem });
        for (field, v) in [
            ("core_fraction", self.core_fraction),
            ("min_core_radius_px", self.min_core_radius_px),
            ("annulus_width_mm", self.annulus_width_mm),
            ("max_view_angle_deg", self.max_view_angle_deg),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("is {v}; it must be a positive number"));
            }
        }
        for (field, v) in [
            ("max_offset_mm", self.max_offset_mm),
            ("annulus_gap_mm", self.annulus_gap_mm),
            ("border_margin_px", self.border_margin_px),
            ("min_skin_luminance", self.min_skin_luminance),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("is {v}; it must be zero or a positive number"));
            }
        }
        if !(self.skin_percentile > 0.0 && self.skin_percentile < 1.0) {
            return bad("skin_percentile", format!("is {}; use a fraction in (0, 1)", self.skin_percentile));
        }
        if !(self.absent_max_contrast.is_finite()
            && self.present_min_contrast.is_finite()
            && self.absent_max_contrast < self.present_min_contrast
            && self.present_min_contrast < 1.0)
        {
            return bad(
                "absent_max_contrast/present_min_contrast",
                format!(
                    "are {} and {}; absent must be below present, and present below 1",
                    self.absent_max_contrast, self.present_min_contrast
                ),
            );
        }
        if self.max_view_angle_deg >= 90.0 {
            return bad("max_view_angle_deg", format!("is {}; use less than 90", self.max_view_angle_deg));
        }
        Ok(())
    }
}

/// Why a site could not be judged; the operator resolves such a dot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UnclearReason {
    /// The site is behind the camera.
    BehindCamera,
    /// The skin at the site faces away from the camera (angle to the line of sight).
    FacingAway { view_angle_deg: f64 },
    /// The site is seen too obliquely to judge a dot.
    TooOblique { view_angle_deg: f64 },
    /// The site projects outside the image.
    OutOfView { pixel: [f64; 2] },
    /// The site is in the image but its skin annulus is cut by the border.
    AtImageBorder { pixel: [f64; 2] },
    /// The annulus is not lit skin (too dark): backdrop, shadow or a covered lens.
    NoSkin { skin_luminance: f64 },
    /// The contrast lies between the absent and present thresholds.
    Ambiguous { contrast: f64 },
}

impl std::fmt::Display for UnclearReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnclearReason::BehindCamera => write!(f, "the site is behind the camera"),
            UnclearReason::FacingAway { view_angle_deg } => {
                write!(f, "the skin faces away from the camera ({view_angle_deg:.0}° from the line of sight)")
            }
            UnclearReason::TooOblique { view_angle_deg } => {
                write!(f, "the skin is seen too obliquely ({view_angle_deg:.0}° from the line of sight)")
            }
            UnclearReason::OutOfView { pixel } => {
                write!(f, "the site projects outside the image at ({:.0}, {:.0}) px", pixel[0], pixel[1])
            }
            UnclearReason::AtImageBorder { pixel } => {
                write!(f, "the site at ({:.0}, {:.0}) px is too close to the image border", pixel[0], pixel[1])
            }
            UnclearReason::NoSkin { skin_luminance } => {
                write!(f, "no lit skin around the site (luminance {skin_luminance:.3})")
            }
            UnclearReason::Ambiguous { contrast } => {
                write!(f, "contrast {contrast:.2} is between the absent and present thresholds")
            }
        }
    }
}

/// The answer for one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DotSiteCheck {
    /// Pigment at the site: the dot was tattooed.
    Present {
        /// Distance of the found dot centre from the planned site, on the skin, mm.
        offset_mm: f64,
        /// Found dot centre, head frame (on the tangent plane at the site), mm.
        found_head_mm: [f64; 3],
        /// `1 - core / skin` (linear luminance).
        contrast: f64,
    },
    /// Skin only at the site: it was not tattooed.
    Absent { contrast: f64 },
    /// No safe answer: the operator decides.
    Unclear { reason: UnclearReason },
}

impl DotSiteCheck {
    pub fn is_present(&self) -> bool {
        matches!(self, DotSiteCheck::Present { .. })
    }
    pub fn is_absent(&self) -> bool {
        matches!(self, DotSiteCheck::Absent { .. })
    }
    pub fn is_unclear(&self) -> bool {
        matches!(self, DotSiteCheck::Unclear { .. })
    }
}

/// Inputs the check cannot work with; each names the input and the fix.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DotCheckError {
    #[error("dot check: image is {width}x{height} px with {found} bytes but the camera model is {cam_w}x{cam_h} px RGB; pass the frame that matches the intrinsics (a crop needs cropped intrinsics)")]
    ImageSize { width: u32, height: u32, found: usize, cam_w: u32, cam_h: u32 },
    #[error("dot check: {what} is not finite; pass the planned site, its unit normal and the poses of this view")]
    NotFinite { what: &'static str },
    #[error("dot check: the expected normal {normal:?} has no direction; pass the planned dot's unit surface normal")]
    ZeroNormal { normal: [f64; 3] },
    #[error("dot check: dot diameter {diameter_mm} mm is not in (0, 5] mm; pass the session's expected dot diameter")]
    BadDiameter { diameter_mm: f64 },
    #[error("dot check config: field `{field}` {problem}")]
    Config { field: &'static str, problem: String },
}

/// Checks one planned dot site in one view.
///
/// `view_image` with its `intrinsics` (distorted pixels, as delivered), taken at
/// `base_from_camera`; the head at `base_from_head`; the planned site `expected_head_mm` with
/// its outward unit normal `expected_normal_head` (head frame); `dot_diameter_mm` the dot the
/// session makes (from the test-dot fit). `Err` only for inputs that cannot be right; every
/// doubt about the picture is `Ok(Unclear)`.
#[allow(clippy::too_many_arguments)]
pub fn check_dot_site(
    view_image: &RgbImage,
    intrinsics: &CameraIntrinsics,
    base_from_camera: &Isometry3<f64>,
    base_from_head: &Isometry3<f64>,
    expected_head_mm: [f64; 3],
    expected_normal_head: [f64; 3],
    dot_diameter_mm: f64,
    cfg: &DotCheckConfig,
) -> Result<DotSiteCheck, DotCheckError> {
    cfg.validate()?;
    let (w, h) = (view_image.width, view_image.height);
    if w != intrinsics.width_px
        || h != intrinsics.height_px
        || view_image.data.len() != (w as usize) * (h as usize) * 3
        || w == 0
        || h == 0
    {
        return Err(DotCheckError::ImageSize {
            width: w,
            height: h,
            found: view_image.data.len(),
            cam_w: intrinsics.width_px,
            cam_h: intrinsics.height_px,
        });
    }
    if !expected_head_mm.iter().all(|v| v.is_finite()) {
        return Err(DotCheckError::NotFinite { what: "expected_head_mm" });
    }
    if !expected_normal_head.iter().all(|v| v.is_finite()) {
        return Err(DotCheckError::NotFinite { what: "expected_normal_head" });
    }
    let pose_finite = |p: &Isometry3<f64>| {
        p.translation.vector.iter().all(|v| v.is_finite()) && p.rotation.coords.iter().all(|v| v.is_finite())
    };
    if !pose_finite(base_from_camera) {
        return Err(DotCheckError::NotFinite { what: "base_from_camera" });
    }
    if !pose_finite(base_from_head) {
        return Err(DotCheckError::NotFinite { what: "base_from_head" });
    }
    if !(dot_diameter_mm.is_finite() && dot_diameter_mm > 0.0 && dot_diameter_mm <= 5.0) {
        return Err(DotCheckError::BadDiameter { diameter_mm: dot_diameter_mm });
    }
    let normal_head = Vector3::from(expected_normal_head)
        .try_normalize(1e-9)
        .ok_or(DotCheckError::ZeroNormal { normal: expected_normal_head })?;

    // Geometry in the camera frame.
    let camera_from_head = base_from_camera.inverse() * base_from_head;
    let site = camera_from_head * Point3::from(expected_head_mm);
    let normal = camera_from_head * normal_head;
    if site.z <= 1e-6 {
        return Ok(unclear(UnclearReason::BehindCamera));
    }
    let to_camera = -site.coords.normalize();
    let cos_view = normal.dot(&to_camera).clamp(-1.0, 1.0);
    let view_angle_deg = cos_view.acos().to_degrees();
    if cos_view <= 0.0 {
        return Ok(unclear(UnclearReason::FacingAway { view_angle_deg }));
    }
    if view_angle_deg > cfg.max_view_angle_deg {
        return Ok(unclear(UnclearReason::TooOblique { view_angle_deg }));
    }
    let Some(centre_px) = intrinsics.project(&site) else {
        return Ok(unclear(UnclearReason::BehindCamera));
    };
    let pixel = [centre_px.x, centre_px.y];
    if !intrinsics.contains(&centre_px) {
        return Ok(unclear(UnclearReason::OutOfView { pixel }));
    }

    // Tangent plane at the site (camera frame) and the local map skin mm -> pixels.
    let (t1, t2) = tangent_basis(&normal);
    let step_mm = 0.05;
    let proj = |u: f64, v: f64| intrinsics.project(&(site + t1 * u + t2 * v));
    let (Some(pu0), Some(pu1), Some(pv0), Some(pv1)) =
        (proj(-step_mm, 0.0), proj(step_mm, 0.0), proj(0.0, -step_mm), proj(0.0, step_mm))
    else {
        return Ok(unclear(UnclearReason::BehindCamera));
    };
    let jac = Matrix2::from_columns(&[(pu1 - pu0) / (2.0 * step_mm), (pv1 - pv0) / (2.0 * step_mm)]);
    let Some(jac_inv) = jac.try_inverse() else {
        return Ok(unclear(UnclearReason::TooOblique { view_angle_deg }));
    };
    // Smallest scale of the map (px per mm), for the pixel floor of the core radius.
    let px_per_mm_min = jac.singular_values().min();
    if !(px_per_mm_min.is_finite() && px_per_mm_min > 0.0) {
        return Ok(unclear(UnclearReason::TooOblique { view_angle_deg }));
    }

    let radius_mm = 0.5 * dot_diameter_mm;
    let core_mm = (cfg.core_fraction * radius_mm).max(cfg.min_core_radius_px / px_per_mm_min);
    let ann_in_mm = radius_mm + cfg.max_offset_mm + cfg.annulus_gap_mm;
    let ann_out_mm = ann_in_mm + cfg.annulus_width_mm;
    // Pixels any searched core or the centroid refinement below may use.
    let centroid_mm = radius_mm + 0.05;
    let reach_mm = cfg.max_offset_mm + core_mm.max(centroid_mm);

    // Pixel window holding the annulus: the image of the square of half side ann_out_mm.
    let corners = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
        .map(|(a, b)| centre_px.coords + jac * Vector2::new(a * ann_out_mm, b * ann_out_mm));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for c in corners {
        x0 = x0.min(c.x);
        x1 = x1.max(c.x);
        y0 = y0.min(c.y);
        y1 = y1.max(c.y);
    }
    let m = cfg.border_margin_px;
    if x0 - m < 0.0 || y0 - m < 0.0 || x1 + m > f64::from(w) - 1.0 || y1 + m > f64::from(h) - 1.0 {
        return Ok(unclear(UnclearReason::AtImageBorder { pixel }));
    }
    let (x0, x1, y0, y1) = (x0.floor() as u32, x1.ceil() as u32, y0.floor() as u32, y1.ceil() as u32);

    // Every pixel of the window: skin coordinates (mm) and linear luminance.
    let mut pixels: Vec<(Vector2<f64>, f64)> = Vec::with_capacity(((x1 - x0 + 1) * (y1 - y0 + 1)) as usize);
    let mut annulus: Vec<f64> = Vec::new();
    for y in y0..=y1 {
        for x in x0..=x1 {
            let uv = jac_inv * (Point2::new(f64::from(x), f64::from(y)) - centre_px);
            let lum = luminance(view_image.get(x, y));
            let r = uv.norm();
            if r >= ann_in_mm && r <= ann_out_mm {
                annulus.push(lum);
            }
            if r <= reach_mm {
                pixels.push((uv, lum));
            }
        }
    }
    let Some(skin) = percentile(&mut annulus, cfg.skin_percentile) else {
        return Ok(unclear(UnclearReason::AtImageBorder { pixel }));
    };
    if skin.is_nan() || skin < cfg.min_skin_luminance {
        return Ok(unclear(UnclearReason::NoSkin { skin_luminance: skin }));
    }

    // The darkest core within max_offset_mm of the site (median of its pixels).
    let search_step_mm = (0.5 / px_per_mm_min).min(0.5 * core_mm).max(1e-3);
    let n_steps = (cfg.max_offset_mm / search_step_mm).floor() as i64;
    let mut best: Option<(f64, Vector2<f64>)> = None;
    let mut core: Vec<f64> = Vec::with_capacity(pixels.len());
    for i in -n_steps..=n_steps {
        for j in -n_steps..=n_steps {
            let c = Vector2::new(i as f64 * search_step_mm, j as f64 * search_step_mm);
            if c.norm() > cfg.max_offset_mm + 1e-9 {
                continue;
            }
            core.clear();
            core.extend(pixels.iter().filter(|(uv, _)| (uv - c).norm() <= core_mm).map(|(_, l)| *l));
            let Some(med) = percentile(&mut core, 0.5) else { continue };
            if best.is_none_or(|(b, _)| med < b) {
                best = Some((med, c));
            }
        }
    }
    let Some((core_lum, core_at)) = best else {
        return Ok(unclear(UnclearReason::AtImageBorder { pixel }));
    };
    let contrast = 1.0 - core_lum / skin;
    if contrast <= cfg.absent_max_contrast {
        return Ok(DotSiteCheck::Absent { contrast });
    }
    if contrast < cfg.present_min_contrast {
        return Ok(unclear(UnclearReason::Ambiguous { contrast }));
    }

    // Refine the centre: darkness-weighted centroid of the pixels within the dot's radius
    // (plus a little for its soft edge) of the darkest core (pixels lighter than half the core's darkness do not count).
    let half = 0.5 * contrast;
    let (mut sw, mut su) = (0.0, Vector2::zeros());
    for (uv, lum) in &pixels {
        if (uv - core_at).norm() <= centroid_mm {
            let wgt = (1.0 - lum / skin - half).max(0.0);
            sw += wgt;
            su += uv * wgt;
        }
    }
    let found_uv = if sw > 0.0 { su / sw } else { core_at };
    let found_camera = site + t1 * found_uv.x + t2 * found_uv.y;
    let found_head = camera_from_head.inverse() * found_camera;
    Ok(DotSiteCheck::Present {
        offset_mm: found_uv.norm(),
        found_head_mm: [found_head.x, found_head.y, found_head.z],
        contrast,
    })
}

fn unclear(reason: UnclearReason) -> DotSiteCheck {
    DotSiteCheck::Unclear { reason }
}

/// Two unit vectors spanning the plane normal to `n` (unit).
fn tangent_basis(n: &Vector3<f64>) -> (Vector3<f64>, Vector3<f64>) {
    let helper = if n.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
    let t1 = n.cross(&helper).normalize();
    let t2 = n.cross(&t1);
    (t1, t2)
}

/// Linear luminance (Rec. 709 weights of linearised sRGB), 0..1.
fn luminance(rgb: [u8; 3]) -> f64 {
    let lin = |c: u8| {
        let v = f64::from(c) / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(rgb[0]) + 0.7152 * lin(rgb[1]) + 0.0722 * lin(rgb[2])
}

/// The `q` quantile (nearest rank) of `v`, reordering it; `None` when empty.
fn percentile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let k = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, m, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    Some(*m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion};

    /// A synthetic top-down view: camera 80 mm above a flat skin at head z = 0, 25 px/mm,
    /// skin of `skin` grey with dark discs `(u, v, diameter, grey)` drawn on it.
    fn scene(skin: u8, discs: &[(f64, f64, f64, u8)]) -> (RgbImage, CameraIntrinsics, Isometry3<f64>) {
        let k = CameraIntrinsics {
            width_px: 81,
            height_px: 81,
            fx_px: 2000.0,
            fy_px: 2000.0,
            cx_px: 40.0,
            cy_px: 40.0,
            distortion: [0.0; 5],
        };
        // Camera at z = 80 looking down (-z head): rotation of 180° about x.
        let base_from_camera = Isometry3::from_parts(
            Translation3::new(0.0, 0.0, 80.0),
            UnitQuaternion::from_axis_angle(&Vector3::x_axis(), std::f64::consts::PI),
        );
        let mut img = RgbImage::new(81, 81, [skin; 3]);
        for y in 0..81u32 {
            for x in 0..81u32 {
                // Pixel -> head (x right = +x head, y down = -y head), 0.04 mm per px.
                let (u, v) = ((f64::from(x) - 40.0) * 0.04, -(f64::from(y) - 40.0) * 0.04);
                for &(du, dv, d, g) in discs {
                    if (u - du).hypot(v - dv) <= 0.5 * d {
                        img.put(x, y, [g; 3]);
                    }
                }
            }
        }
        (img, k, base_from_camera)
    }

    fn check(img: &RgbImage, k: &CameraIntrinsics, bfc: &Isometry3<f64>, site: [f64; 3]) -> DotSiteCheck {
        check_dot_site(img, k, bfc, &Isometry3::identity(), site, [0.0, 0.0, 1.0], 0.4, &DotCheckConfig::default())
            .expect("valid input")
    }

    #[test]
    fn a_dot_at_the_site_is_present_and_its_offset_measured() {
        let (img, k, bfc) = scene(200, &[(0.08, -0.04, 0.4, 40)]);
        match check(&img, &k, &bfc, [0.0, 0.0, 0.0]) {
            DotSiteCheck::Present { offset_mm, found_head_mm, contrast } => {
                assert!((offset_mm - 0.089).abs() < 0.03, "offset {offset_mm}");
                assert!((found_head_mm[0] - 0.08).abs() < 0.03 && (found_head_mm[1] + 0.04).abs() < 0.03);
                assert!(contrast > 0.8, "{contrast}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bare_skin_and_a_neighbour_half_a_millimetre_away_are_absent() {
        let (img, k, bfc) = scene(120, &[(0.5, 0.0, 0.45, 30), (-0.2, 0.55, 0.25, 20)]);
        let r = check(&img, &k, &bfc, [0.0, 0.0, 0.0]);
        assert!(r.is_absent(), "{r:?}");
    }

    #[test]
    fn the_same_dot_on_dark_skin_is_present() {
        // Fitzpatrick VI-like grey 70 with ink at 25.
        let (img, k, bfc) = scene(70, &[(0.0, 0.0, 0.4, 25)]);
        assert!(check(&img, &k, &bfc, [0.0, 0.0, 0.0]).is_present());
    }

    #[test]
    fn a_faint_mark_is_unclear_not_guessed() {
        let (img, k, bfc) = scene(200, &[(0.0, 0.0, 0.4, 180)]);
        let r = check(&img, &k, &bfc, [0.0, 0.0, 0.0]);
        assert!(matches!(r, DotSiteCheck::Unclear { reason: UnclearReason::Ambiguous { .. } }), "{r:?}");
    }

    #[test]
    fn sites_the_camera_cannot_judge_are_unclear_with_the_reason() {
        let (img, k, bfc) = scene(200, &[]);
        let r = check(&img, &k, &bfc, [5.0, 0.0, 0.0]);
        assert!(matches!(r, DotSiteCheck::Unclear { reason: UnclearReason::OutOfView { .. } }), "{r:?}");
        let r = check(&img, &k, &bfc, [1.4, 0.0, 0.0]);
        assert!(matches!(r, DotSiteCheck::Unclear { reason: UnclearReason::AtImageBorder { .. } }), "{r:?}");
        let cfg = DotCheckConfig::default();
        let id = Isometry3::identity();
        let away = check_dot_site(&img, &k, &bfc, &id, [0.0; 3], [0.0, 0.0, -1.0], 0.4, &cfg).expect("ok");
        assert!(matches!(away, DotSiteCheck::Unclear { reason: UnclearReason::FacingAway { .. } }), "{away:?}");
        let steep = check_dot_site(&img, &k, &bfc, &id, [0.0; 3], [1.0, 0.0, 0.3], 0.4, &cfg).expect("ok");
        assert!(matches!(steep, DotSiteCheck::Unclear { reason: UnclearReason::TooOblique { .. } }), "{steep:?}");
        let behind = check_dot_site(&img, &k, &bfc, &id, [0.0, 0.0, 100.0], [0.0, 0.0, 1.0], 0.4, &cfg).expect("ok");
        assert!(matches!(behind, DotSiteCheck::Unclear { reason: UnclearReason::BehindCamera }), "{behind:?}");
        let (black, _, _) = scene(3, &[]);
        let r = check(&black, &k, &bfc, [0.0, 0.0, 0.0]);
        assert!(matches!(r, DotSiteCheck::Unclear { reason: UnclearReason::NoSkin { .. } }), "{r:?}");
    }

    proptest::proptest! {
        /// On any skin grey, a dot of the expected size with ink at a fifth of the skin's light
        /// anywhere within 0.1 mm of the plan is present; the same skin without it is absent,
        /// also with a follicle-sized neighbour 0.55-0.7 mm away.
        #[test]
        fn present_and_absent_hold_across_tones_offsets_and_neighbours(
            skin in 40u8..=240,
            off_r in 0.0f64..0.1,
            off_a in 0.0f64..std::f64::consts::TAU,
            d in 0.3f64..0.5,
            nb_r in 0.55f64..0.7,
            nb_a in 0.0f64..std::f64::consts::TAU,
        ) {
            let ink = (f64::from(skin) * 0.45) as u8; // ~0.2 of the light in linear terms
            let cfg = DotCheckConfig::default();
            let id = Isometry3::identity();
            let neighbour = (nb_r * nb_a.cos(), nb_r * nb_a.sin(), 0.3, ink);
            let (img, k, bfc) = scene(skin, &[(off_r * off_a.cos(), off_r * off_a.sin(), d, ink), neighbour]);
            let r = check_dot_site(&img, &k, &bfc, &id, [0.0; 3], [0.0, 0.0, 1.0], d, &cfg).expect("ok");
            proptest::prop_assert!(r.is_present(), "{:?}", r);
            let (img, k, bfc) = scene(skin, &[neighbour]);
            let r = check_dot_site(&img, &k, &bfc, &id, [0.0; 3], [0.0, 0.0, 1.0], d, &cfg).expect("ok");
            proptest::prop_assert!(r.is_absent(), "{:?}", r);
        }
    }

    #[test]
    fn bad_inputs_are_errors_naming_them() {
        let (img, k, bfc) = scene(200, &[]);
        let cfg = DotCheckConfig::default();
        let id = Isometry3::identity();
        let small = RgbImage::new(10, 10, [0; 3]);
        assert!(matches!(
            check_dot_site(&small, &k, &bfc, &id, [0.0; 3], [0.0, 0.0, 1.0], 0.4, &cfg),
            Err(DotCheckError::ImageSize { .. })
        ));
        assert!(matches!(
            check_dot_site(&img, &k, &bfc, &id, [f64::NAN, 0.0, 0.0], [0.0, 0.0, 1.0], 0.4, &cfg),
            Err(DotCheckError::NotFinite { what: "expected_head_mm" })
        ));
        assert!(matches!(
            check_dot_site(&img, &k, &bfc, &id, [0.0; 3], [0.0; 3], 0.4, &cfg),
            Err(DotCheckError::ZeroNormal { .. })
        ));
        assert!(matches!(
            check_dot_site(&img, &k, &bfc, &id, [0.0; 3], [0.0, 0.0, 1.0], 0.0, &cfg),
            Err(DotCheckError::BadDiameter { .. })
        ));
        let bad = DotCheckConfig { absent_max_contrast: 0.5, ..DotCheckConfig::default() };
        assert!(matches!(
            check_dot_site(&img, &k, &bfc, &id, [0.0; 3], [0.0, 0.0, 1.0], 0.4, &bad),
            Err(DotCheckError::Config { .. })
        ));
    }
}

//! The head in the overview photo: segmentation against the dark backdrop and 3-D points of
//! the visible scalp from the overview's depth frame, in the base frame.

use nalgebra::Point3;
use opencv::core::{Mat, Point, Scalar, Size, Vector, BORDER_CONSTANT};
use opencv::imgproc;
use smp_core::image::{CameraView, GrayImage};

use crate::cv::{check_view, gray_mat, mat_to_gray, zeros_u8};
use crate::error::{cv_err, VisionError};
use crate::VisionConfig;

/// What the overview photo shows of the head.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalpOutline {
    /// Label of the overview view this came from.
    pub label: String,
    /// Subsampled 3-D points of the visible head surface, base frame, mm.
    pub points_base: Vec<[f64; 3]>,
    /// Highest point of the head (robust: the mean of the top half-percent of points).
    pub top_base_mm: [f64; 3],
    /// Head mask in overview pixels, 255 = head.
    pub mask: GrayImage,
    /// Head pixels in the mask.
    pub mask_area_px: usize,
    /// Partial problems (holes in the depth frame...).
    pub warnings: Vec<String>,
}

/// Segments the head in the overview photo and lifts its pixels to 3-D with the depth frame.
///
/// The head (skin and hair) is brighter than the dark backdrop: a grey-level threshold (the
/// larger of Otsu's and `backdrop_max_level`), a closing that fills the darker hair and
/// shadows, an opening that drops specks, then the largest external contour filled.
pub fn find_scalp(overview: &CameraView, cfg: &VisionConfig) -> Result<ScalpOutline, VisionError> {
    cfg.validate()?;
    check_view(overview)?;
    let label = overview.label.as_str();
    let depth = overview.depth.as_ref().ok_or_else(|| VisionError::NoDepth { label: label.to_string() })?;
    let gray = overview.image.to_gray();
    let max_level = gray.data.iter().copied().max().unwrap_or(0);
    if max_level <= cfg.backdrop_max_level {
        return Err(VisionError::BlackImage { label: label.to_string(), max_level });
    }
    let (w, h) = (gray.width as i32, gray.height as i32);
    let src = gray_mat(&gray, label)?;
    let mut bin = Mat::default();
    let otsu = imgproc::threshold(&src, &mut bin, 0.0, 255.0, imgproc::THRESH_BINARY | imgproc::THRESH_OTSU)
        .map_err(cv_err("Otsu threshold", label))?;
    if otsu < cfg.backdrop_max_level as f64 {
        imgproc::threshold(&src, &mut bin, cfg.backdrop_max_level as f64, 255.0, imgproc::THRESH_BINARY)
            .map_err(cv_err("backdrop threshold", label))?;
    }
    let k = cfg.mask_close_px.max(1) | 1;
    let close_k = imgproc::get_structuring_element(imgproc::MORPH_ELLIPSE, Size::new(k, k), Point::new(-1, -1))
        .map_err(cv_err("mask kernel", label))?;
    let open_k = imgproc::get_structuring_element(imgproc::MORPH_ELLIPSE, Size::new(5, 5), Point::new(-1, -1))
        .map_err(cv_err("mask kernel", label))?;
    let border = imgproc::morphology_default_border_value().map_err(cv_err("mask border", label))?;
    let mut closed = Mat::default();
    imgproc::morphology_ex(
        &bin,
        &mut closed,
        imgproc::MORPH_CLOSE,
        &close_k,
        Point::new(-1, -1),
        1,
        BORDER_CONSTANT,
        border,
    )
    .map_err(cv_err("closing the head mask", label))?;
    let mut opened = Mat::default();
    imgproc::morphology_ex(
        &closed,
        &mut opened,
        imgproc::MORPH_OPEN,
        &open_k,
        Point::new(-1, -1),
        1,
        BORDER_CONSTANT,
        border,
    )
    .map_err(cv_err("opening the head mask", label))?;

    let mut contours: Vector<Vector<Point>> = Vector::new();
    imgproc::find_contours(
        &opened,
        &mut contours,
        imgproc::RETR_EXTERNAL,
        imgproc::CHAIN_APPROX_SIMPLE,
        Point::new(0, 0),
    )
    .map_err(cv_err("finding the head contour", label))?;
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in contours.iter().enumerate() {
        let a = imgproc::contour_area(&c, false).map_err(cv_err("contour area", label))?;
        if best.is_none_or(|(_, ba)| a > ba) {
            best = Some((i, a));
        }
    }
    let min_px = (cfg.min_head_area_fraction * (w as f64) * (h as f64)).ceil() as usize;
    let (best_i, best_area) = best.unwrap_or((0, 0.0));
    if best.is_none() || (best_area as usize) < min_px {
        return Err(VisionError::NoHead { label: label.to_string(), area_px: best_area as usize, min_px });
    }
    let mut mask = zeros_u8(h, w, label)?;
    imgproc::draw_contours(
        &mut mask,
        &contours,
        best_i as i32,
        Scalar::all(255.0),
        -1,
        imgproc::LINE_8,
        &opencv::core::no_array(),
        i32::MAX,
        Point::new(0, 0),
    )
    .map_err(cv_err("filling the head mask", label))?;
    let mask = mat_to_gray(&mask, label)?;
    let mask_area_px = mask.data.iter().filter(|v| **v > 0).count();

    // Lift the head pixels to 3-D.
    let intr = &overview.intrinsics;
    let stride = cfg.overview_stride_px;
    let mut points = Vec::new();
    let mut head_samples = 0usize;
    for y in (0..h as usize).step_by(stride) {
        for x in (0..w as usize).step_by(stride) {
            let i = y * w as usize + x;
            if mask.data[i] == 0 {
                continue;
            }
            head_samples += 1;
            let z = depth.z_mm[i] as f64;
            if !(z.is_finite() && z > 0.0) {
                continue;
            }
            let ray = intr.ray(&nalgebra::Point2::new(x as f64, y as f64));
            let p_cam = Point3::from(ray * (z / ray.z));
            let p = overview.base_from_camera * p_cam;
            points.push([p.x, p.y, p.z]);
        }
    }
    let needed = (head_samples / 10).max(50);
    if points.len() < needed {
        return Err(VisionError::NoDepthOnHead { label: label.to_string(), valid: points.len(), needed });
    }
    let mut warnings = Vec::new();
    if points.len() * 10 < head_samples * 8 {
        warnings.push(format!(
            "overview `{label}`: only {} of {} head samples have depth; the head outline may be incomplete (check the depth projector)",
            points.len(),
            head_samples
        ));
    }
    let mut zs: Vec<f64> = points.iter().map(|p| p[2]).collect();
    zs.sort_by(f64::total_cmp);
    let top_n = (zs.len() / 200).max(1);
    let z_cut = zs[zs.len() - top_n];
    let top: Vec<&[f64; 3]> = points.iter().filter(|p| p[2] >= z_cut).collect();
    let inv = 1.0 / top.len() as f64;
    let top_base_mm = top.iter().fold([0.0; 3], |a, p| [a[0] + p[0] * inv, a[1] + p[1] * inv, a[2] + p[2] * inv]);

    Ok(ScalpOutline { label: label.to_string(), points_base: points, top_base_mm, mask, mask_area_px, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Isometry3, Translation3, UnitQuaternion};
    use smp_core::camera::CameraIntrinsics;
    use smp_core::geometry::Ellipsoid;
    use smp_core::image::{DepthImage, RgbImage};

    fn intrinsics() -> CameraIntrinsics {
        CameraIntrinsics {
            width_px: 320,
            height_px: 240,
            fx_px: 300.0,
            fy_px: 300.0,
            cx_px: 160.0,
            cy_px: 120.0,
            distortion: [0.0; 5],
        }
    }

    /// A sphere of radius 60 mm centred 300 mm in front of a camera looking down from above.
    fn sphere_view() -> CameraView {
        let intr = intrinsics();
        let base_from_camera = Isometry3::from_parts(
            Translation3::new(0.0, 0.0, 400.0),
            UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
        );
        let centre_base = Point3::new(0.0, 0.0, 100.0);
        let e = Ellipsoid { semi_axes_mm: [60.0, 60.0, 60.0] };
        let mut image = RgbImage::new(320, 240, [12, 12, 14]);
        let mut depth = DepthImage { width: 320, height: 240, z_mm: vec![f32::NAN; 320 * 240] };
        let camera_from_base = base_from_camera.inverse();
        let origin = base_from_camera * Point3::origin() - centre_base.coords;
        for y in 0..240u32 {
            for x in 0..320u32 {
                let r_cam = intr.ray(&nalgebra::Point2::new(x as f64, y as f64));
                let r = base_from_camera * r_cam;
                if let Some(t) = e.intersect_ray(&origin, &r) {
                    let p = origin + r * t + centre_base.coords;
                    let pc = camera_from_base * p;
                    depth.z_mm[(y * 320 + x) as usize] = pc.z as f32;
                    image.put(x, y, [200, 160, 140]);
                }
            }
        }
        CameraView { label: "overview".into(), intrinsics: intr, base_from_camera, image, depth: Some(depth) }
    }

    #[test]
    fn sphere_is_found_with_its_top() {
        let view = sphere_view();
        let out = find_scalp(&view, &VisionConfig::default()).expect("scalp");
        assert!((out.top_base_mm[2] - 160.0).abs() < 0.5, "top {:?}", out.top_base_mm);
        assert!(out.top_base_mm[0].abs() < 3.0 && out.top_base_mm[1].abs() < 3.0);
        for p in &out.points_base {
            let r = (p[0].powi(2) + p[1].powi(2) + (p[2] - 100.0).powi(2)).sqrt();
            assert!((r - 60.0).abs() < 1e-3, "point off the sphere: {r}");
        }
        assert!(out.mask_area_px > 10_000);
    }

    #[test]
    fn black_empty_and_depthless_frames_are_errors_naming_the_view() {
        let mut v = sphere_view();
        v.image = RgbImage::new(320, 240, [0, 0, 0]);
        let e = find_scalp(&v, &VisionConfig::default()).expect_err("black");
        assert!(matches!(e, VisionError::BlackImage { .. }) && e.to_string().contains("overview"), "{e}");

        let mut v = sphere_view();
        v.image = RgbImage { width: 0, height: 0, data: vec![] };
        v.depth = None;
        assert!(matches!(find_scalp(&v, &VisionConfig::default()), Err(VisionError::EmptyImage { .. })));

        let mut v = sphere_view();
        v.depth = None;
        let e = find_scalp(&v, &VisionConfig::default()).expect_err("no depth");
        assert!(e.to_string().contains("depth"), "{e}");

        let mut v = sphere_view();
        if let Some(d) = v.depth.as_mut() {
            d.z_mm.iter_mut().for_each(|z| *z = f32::NAN);
        }
        assert!(matches!(find_scalp(&v, &VisionConfig::default()), Err(VisionError::NoDepthOnHead { .. })));

        let mut v = sphere_view();
        v.image.data.truncate(100);
        assert!(matches!(find_scalp(&v, &VisionConfig::default()), Err(VisionError::BufferSize { .. })));
    }
}

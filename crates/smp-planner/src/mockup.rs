//! The consultation mock-up: the patient's overview photo with every planned dot drawn
//! where it will be, at its size on the skin, in its pigment tone (the ladder's shade when
//! the dot has one, else the clinic's standard pigment), and optionally the designed
//! hairline drawn as a thin line.

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::image::{CameraView, RgbImage};
use smp_core::plan::SessionPlan;

/// Dot diameter drawn on the skin, mm (DOMAIN: 0.3-0.6 mm).
pub const MOCKUP_DOT_DIAMETER_MM: f64 = 0.4;
/// Undiluted pigment: a dark, slightly warm grey-brown (never tattoo black).
pub const PIGMENT_RGB: [u8; 3] = [58, 50, 46];
/// Sub-samples per pixel side for the disc coverage (anti-aliasing).
const SUPERSAMPLE: usize = 4;
/// Colour of the designed hairline on the mock-up (a clinician's marker, not pigment).
pub const HAIRLINE_RGB: [u8; 3] = [40, 140, 220];

pub use smp_core::color::lab_to_srgb;

/// Opacity of a dot over the skin: diluted pigment lets more skin through, so session 1
/// (about 50 % dilution) reads lighter than later sessions.
pub fn pigment_opacity(dilution_pct: f64) -> f64 {
    let d = if dilution_pct.is_finite() { dilution_pct.clamp(0.0, 100.0) } else { 100.0 };
    0.92 * (1.0 - 0.6 * d / 100.0)
}

/// Draws an anti-aliased filled disc (centre and radius in pixels, OpenCV convention: pixel
/// (x, y) covers [x - 0.5, x + 0.5]) blended over the image with the given opacity.
/// Returns the number of pixels changed.
pub fn draw_disc(img: &mut RgbImage, cx: f64, cy: f64, radius_px: f64, rgb: [u8; 3], opacity: f64) -> usize {
    if !(cx.is_finite() && cy.is_finite() && radius_px.is_finite()) || radius_px <= 0.0 || opacity <= 0.0 {
        return 0;
    }
    let x0 = (cx - radius_px - 1.0).floor().max(0.0);
    let y0 = (cy - radius_px - 1.0).floor().max(0.0);
    let x1 = (cx + radius_px + 1.0).ceil().min(img.width as f64 - 1.0);
    let y1 = (cy + radius_px + 1.0).ceil().min(img.height as f64 - 1.0);
    if x1 < x0 || y1 < y0 {
        return 0;
    }
    let r2 = radius_px * radius_px;
    let n = SUPERSAMPLE as f64;
    let mut changed = 0;
    for py in (y0 as u32)..=(y1 as u32) {
        for px in (x0 as u32)..=(x1 as u32) {
            let mut inside = 0usize;
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    let x = px as f64 - 0.5 + (sx as f64 + 0.5) / n;
                    let y = py as f64 - 0.5 + (sy as f64 + 0.5) / n;
                    if (x - cx).powi(2) + (y - cy).powi(2) <= r2 {
                        inside += 1;
                    }
                }
            }
            if inside == 0 {
                continue;
            }
            let a = opacity.clamp(0.0, 1.0) * inside as f64 / (n * n);
            let old = img.get(px, py);
            let mut new = old;
            for c in 0..3 {
                new[c] = (old[c] as f64 * (1.0 - a) + rgb[c] as f64 * a).round().clamp(0.0, 255.0) as u8;
            }
            if new != old {
                img.put(px, py, new);
                changed += 1;
            }
        }
    }
    changed
}

/// The overview photo with every planned dot of every plan drawn on it, in plan order
/// (draw session 1 first). Dots facing away from the camera are not drawn (they are on the
/// far side of the head); occlusion by other parts of the head is not modelled.
pub fn render_mockup(photo: &CameraView, base_from_head: &Isometry3<f64>, plans: &[&SessionPlan]) -> RgbImage {
    let mut img = photo.image.clone();
    let expected = img.width as usize * img.height as usize * 3;
    if img.data.len() != expected {
        // A malformed buffer cannot be drawn on safely; hand back the photo as it is.
        return img;
    }
    let camera_from_head = photo.base_from_camera.inverse() * base_from_head;
    let k = &photo.intrinsics;
    let f_px = 0.5 * (k.fx_px + k.fy_px);
    for plan in plans {
        for dot in &plan.dots {
            let opacity = pigment_opacity(dot.dilution_pct);
            let rgb = dot.tone.as_ref().map_or(PIGMENT_RGB, |t| lab_to_srgb(t.lab));
            let p_cam = camera_from_head * Point3::new(dot.x_mm, dot.y_mm, dot.z_mm);
            let n_cam = camera_from_head * Vector3::new(dot.normal[0], dot.normal[1], dot.normal[2]);
            if p_cam.z <= 1e-6 || n_cam.dot(&p_cam.coords) >= 0.0 {
                continue;
            }
            let Some(px) = k.project(&p_cam) else { continue };
            let radius_px = 0.5 * MOCKUP_DOT_DIAMETER_MM * f_px / p_cam.z;
            draw_disc(&mut img, px.x, px.y, radius_px, rgb, opacity);
        }
    }
    img
}

/// [`render_mockup`] with the designed hairline (head-frame pieces, e.g. from
/// [`crate::hairline_polyline`]) drawn over the dots.
pub fn render_mockup_with_hairline(
    photo: &CameraView,
    base_from_head: &Isometry3<f64>,
    plans: &[&SessionPlan],
    hairline_head: &[Vec<[f64; 3]>],
) -> RgbImage {
    let mut img = render_mockup(photo, base_from_head, plans);
    draw_hairline(&mut img, photo, base_from_head, hairline_head);
    img
}

/// Draws a head-frame polyline through the camera model as a chain of small discs (about
/// 0.6 mm wide on the skin, at least 1.5 px). Returns the pixels changed.
pub fn draw_hairline(
    img: &mut RgbImage,
    photo: &CameraView,
    base_from_head: &Isometry3<f64>,
    pieces: &[Vec<[f64; 3]>],
) -> usize {
    if img.data.len() != img.width as usize * img.height as usize * 3 {
        return 0;
    }
    let camera_from_head = photo.base_from_camera.inverse() * base_from_head;
    let k = &photo.intrinsics;
    let f_px = 0.5 * (k.fx_px + k.fy_px);
    let mut changed = 0;
    for piece in pieces {
        for w in piece.windows(2) {
            let (a, b) = (Point3::from(w[0]), Point3::from(w[1]));
            let len = (b - a).norm();
            let steps = (len / 0.25).ceil().clamp(1.0, 4000.0) as usize;
            for s in 0..=steps {
                let p = camera_from_head * (a + (b - a) * (s as f64 / steps as f64));
                if p.z <= 1e-6 {
                    continue;
                }
                let Some(px) = k.project(&p) else { continue };
                let radius_px = (0.3 * f_px / p.z).max(0.75);
                changed += draw_disc(img, px.x, px.y, radius_px, HAIRLINE_RGB, 0.9);
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disc_coverage_is_antialiased_and_bounded() {
        let mut img = RgbImage::new(20, 20, [200, 170, 150]);
        let changed = draw_disc(&mut img, 10.0, 10.0, 3.0, PIGMENT_RGB, 1.0);
        assert!(changed > 20 && changed < 50, "{changed}");
        assert_eq!(img.get(10, 10), PIGMENT_RGB, "centre fully covered");
        // A pixel on the rim is partly covered: between skin and pigment.
        let rim = img.get(13, 10);
        assert!(rim[0] > PIGMENT_RGB[0] && rim[0] < 200, "{rim:?}");
        assert_eq!(img.get(0, 0), [200, 170, 150]);
        // Off-image discs are clipped, not a panic.
        assert_eq!(draw_disc(&mut img, -50.0, 5.0, 2.0, PIGMENT_RGB, 1.0), 0);
        draw_disc(&mut img, 19.9, 19.9, 4.0, PIGMENT_RGB, 1.0);
    }

    #[test]
    fn lab_round_trips_through_srgb() {
        for rgb in [[0u8, 0, 0], [255, 255, 255], [58, 50, 46], [222, 178, 152], [40, 140, 220]] {
            let back = lab_to_srgb(smp_core::color::srgb_to_lab(rgb));
            for c in 0..3 {
                assert!((back[c] as i32 - rgb[c] as i32).abs() <= 1, "{rgb:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn dilution_lightens() {
        assert!(pigment_opacity(50.0) < pigment_opacity(20.0));
        assert!(pigment_opacity(100.0) > 0.0);
        assert!(pigment_opacity(f64::NAN) > 0.0);
    }
}

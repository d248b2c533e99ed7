//! A grey image matched to one tile's colours: the RGB projection that best separates the
//! tile's follicles from its skin, for hair whose grey contrast is poor.
//!
//! The detector works on grey (luma), which is right for brown-black hair and pigment: they
//! absorb all three channels alike, as the skin's own shading and mottling do. Red hair on
//! dark (Fitzpatrick V-VI) skin does not: it absorbs green and blue but hardly any red, so
//! luma keeps only part of its contrast, while the red channel adds the skin's texture and
//! no signal. Faint red follicles then fall under the detector's contrast floor.
//!
//! The projection is learnt from the tile itself (no assumption about hair colours):
//! - the follicles' colour difference `delta` (core minus skin ring, per channel, median over
//!   the dots the grey pass already found confidently);
//! - the skin's texture covariance `sigma` at the follicle's scale (pixel minus the mean of
//!   its four neighbours one follicle away, over pixels off every dot);
//! - Fisher's direction `w = sigma⁻¹ delta`, which maximises contrast over texture.
//!
//! The direction is then kept a grey image: negative weights are dropped (a colour-opponent
//! image would turn the skin's own hue variations into dots) and the weights sum to one like
//! luma's, so black stays 0, white 255, and the detector's contrast floor and darkness mean
//! the same on it. It is used only when it raises the dots' contrast over luma's by
//! [`MIN_CONTRAST_GAIN`] without losing contrast-to-texture ([`MIN_SNR_GAIN`]); the map
//! then adds its dark detections to the grey pass's.

use nalgebra::{Matrix3, Vector3};
use smp_core::image::{GrayImage, RgbImage};

use crate::follicles::{DotDetection, Polarity};

/// Luma weights of [`RgbImage::to_gray`] (ITU-R BT.601).
const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// The projection is used only when the dots' contrast on it is at least this many times
/// their contrast on luma (both grey images with weights summing to one). Brown-black hair
/// absorbs every channel alike and gains nothing (0.99 on random patients 1007 and 1012);
/// red hair on Fitzpatrick V skin (random patient 1009) gains 1.2-1.25.
pub const MIN_CONTRAST_GAIN: f64 = 1.1;
/// ... and its contrast-to-texture ratio at least this many times luma's (it must not buy
/// contrast with texture).
pub const MIN_SNR_GAIN: f64 = 1.05;

/// Fewest dark detections the hair colour is learnt from.
pub const MIN_DOTS_FOR_COLOUR: usize = 8;

/// Texture samples are taken every this many pixels in x and y.
const TEXTURE_STRIDE_PX: usize = 3;

/// A colour projection `weights · rgb` (8-bit sRGB levels in, grey levels out; the weights
/// are non-negative and sum to one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourProjection {
    pub weights: [f64; 3],
    /// Contrast-to-texture ratio of the follicles' colour on this projection over luma's.
    pub gain_over_grey: f64,
    /// The follicles' contrast on this projection over their contrast on luma.
    pub contrast_gain: f64,
    /// The follicles' mean colour difference from the skin it was learnt from, 8-bit levels.
    pub dot_minus_skin: [f64; 3],
}

impl ColourProjection {
    /// The projected image, rounded and clamped to 0..255.
    pub fn apply(&self, rgb: &RgbImage) -> GrayImage {
        let [a, b, c] = self.weights;
        let o = 0.5;
        let data = rgb
            .data
            .chunks_exact(3)
            .map(|p| (o + a * f64::from(p[0]) + b * f64::from(p[1]) + c * f64::from(p[2])).clamp(0.0, 255.0) as u8)
            .collect();
        GrayImage { width: rgb.width, height: rgb.height, data }
    }
}

/// Learns the tile's colour projection from its RGB image, the grey pass's dark detections
/// and its dot mask (non-zero on and next to dots); `d_px` is the expected follicle diameter
/// in pixels. `None` when there are too few dark dots to learn the hair colour from, the
/// skin has no texture to measure, or the projection would not beat luma by
/// [`MIN_CONTRAST_GAIN`] and [`MIN_SNR_GAIN`].
pub fn learn_projection(
    rgb: &RgbImage,
    dots: &[DotDetection],
    dot_mask: &GrayImage,
    d_px: f64,
) -> Option<ColourProjection> {
    let (w, h) = (rgb.width as usize, rgb.height as usize);
    if rgb.data.len() != w * h * 3 || dot_mask.data.len() != w * h || !(d_px.is_finite() && d_px > 0.0) {
        return None;
    }
    let dark: Vec<&DotDetection> = dots.iter().filter(|d| d.polarity == Polarity::Dark).collect();
    if dark.len() < MIN_DOTS_FOR_COLOUR {
        return None;
    }
    let delta = dot_colour_difference(rgb, dot_mask, &dark, d_px)?;
    let sigma = texture_covariance(rgb, dot_mask, d_px)?;
    let g = Vector3::from(LUMA);
    let snr = |v: &Vector3<f64>| {
        let n = (v.transpose() * sigma * v)[0];
        (n > 0.0).then(|| v.dot(&delta).abs() / n.sqrt())
    };
    // Fisher's direction, signed so the dots come out darker, then kept a grey image: no
    // channel weighs negatively (a colour-opponent image would turn the skin's own hue
    // variations into dots) and the weights sum to one, like luma's, so black stays 0,
    // white 255 and the detector's contrast floor and darkness keep their meaning.
    let fisher = -(sigma.try_inverse()? * delta);
    let clipped = fisher.map(|v| v.max(0.0));
    let sum = clipped.sum();
    if !(sum.is_finite() && sum > 0.0) {
        return None;
    }
    let wv = clipped / sum;
    let (snr_w, snr_g) = (snr(&wv)?, snr(&g)?);
    let gain = snr_w / snr_g.max(1e-12);
    let contrast_gain = wv.dot(&delta) / g.dot(&delta);
    if !(gain.is_finite() && gain >= MIN_SNR_GAIN && contrast_gain.is_finite() && contrast_gain >= MIN_CONTRAST_GAIN) {
        return None;
    }
    let weights = [wv.x, wv.y, wv.z];
    weights.iter().all(|v| v.is_finite()).then_some(ColourProjection {
        weights,
        gain_over_grey: gain,
        contrast_gain,
        dot_minus_skin: [delta.x, delta.y, delta.z],
    })
}

/// Per-channel median over the dots of (mean of the core) minus (median of a skin ring).
fn dot_colour_difference(rgb: &RgbImage, mask: &GrayImage, dots: &[&DotDetection], d_px: f64) -> Option<Vector3<f64>> {
    let (w, h) = (rgb.width as i64, rgb.height as i64);
    let r = 0.5 * d_px;
    let core_r = (0.4 * r).max(1.0);
    let (ring_in, ring_out) = (r + 2.0, r + 2.0 + (0.5 * d_px).max(3.0));
    let reach = ring_out.ceil() as i64;
    let mut diffs: [Vec<f64>; 3] = Default::default();
    let mut ring: [Vec<u8>; 3] = Default::default();
    for d in dots {
        let (cx, cy) = (d.pixel[0], d.pixel[1]);
        if !(cx.is_finite() && cy.is_finite()) {
            continue;
        }
        let (xi, yi) = (cx.round() as i64, cy.round() as i64);
        if xi - reach < 0 || yi - reach < 0 || xi + reach >= w || yi + reach >= h {
            continue;
        }
        let mut core = [0.0f64; 3];
        let mut n_core = 0usize;
        ring.iter_mut().for_each(Vec::clear);
        for y in yi - reach..=yi + reach {
            for x in xi - reach..=xi + reach {
                let rho = (x as f64 - cx).hypot(y as f64 - cy);
                let i = (y * w + x) as usize;
                let p = &rgb.data[i * 3..i * 3 + 3];
                if rho <= core_r {
                    for k in 0..3 {
                        core[k] += f64::from(p[k]);
                    }
                    n_core += 1;
                } else if rho >= ring_in && rho <= ring_out && mask.data[i] == 0 {
                    for k in 0..3 {
                        ring[k].push(p[k]);
                    }
                }
            }
        }
        if n_core == 0 || ring[0].len() < 8 {
            continue;
        }
        for k in 0..3 {
            let mid = ring[k].len() / 2;
            let (_, m, _) = ring[k].select_nth_unstable(mid);
            diffs[k].push(core[k] / n_core as f64 - f64::from(*m));
        }
    }
    if diffs[0].len() < MIN_DOTS_FOR_COLOUR {
        return None;
    }
    let med = diffs.map(|mut v| {
        let mid = v.len() / 2;
        let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
        *m
    });
    let delta = Vector3::from(med);
    (delta.norm() > 0.0).then_some(delta)
}

/// Covariance of the skin's texture at the follicle's scale (each pixel minus the mean of
/// its four neighbours `d_px` away, over pixels whose whole cross is off the dots), plus a
/// small floor for 8-bit quantisation.
fn texture_covariance(rgb: &RgbImage, mask: &GrayImage, d_px: f64) -> Option<Matrix3<f64>> {
    let (w, h) = (rgb.width as usize, rgb.height as usize);
    let s = d_px.round().max(1.0) as usize;
    if w <= 2 * s || h <= 2 * s {
        return None;
    }
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        Vector3::new(f64::from(rgb.data[i]), f64::from(rgb.data[i + 1]), f64::from(rgb.data[i + 2]))
    };
    let off = |x: usize, y: usize| mask.data[y * w + x] == 0;
    let mut cov = Matrix3::<f64>::zeros();
    let mut n = 0usize;
    for y in (s..h - s).step_by(TEXTURE_STRIDE_PX) {
        for x in (s..w - s).step_by(TEXTURE_STRIDE_PX) {
            if !(off(x, y) && off(x - s, y) && off(x + s, y) && off(x, y - s) && off(x, y + s)) {
                continue;
            }
            let c = px(x, y);
            // Backdrop and deep shadow are not skin.
            if c.x + c.y + c.z < 60.0 {
                continue;
            }
            let r = c - (px(x - s, y) + px(x + s, y) + px(x, y - s) + px(x, y + s)) * 0.25;
            cov += r * r.transpose();
            n += 1;
        }
    }
    if n < 100 {
        return None;
    }
    // The residual of a pixel against four neighbours has 1.25 times the pixel's variance.
    Some(cov / (1.25 * n as f64) + Matrix3::identity() * (1.0 / 12.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follicles::detect_dark_dots;
    use crate::VisionConfig;

    /// Skin of colour `skin` with a deterministic texture that brightens and darkens all
    /// channels together (shading, mottling) plus a little independent noise per channel,
    /// and discs of colour `dot` mixed in at `strength` (anti-aliased, 4x supersampled).
    fn scene(skin: [f64; 3], dot: [f64; 3], dots: &[(f64, f64, f64)], w: u32, h: u32) -> RgbImage {
        let mut img = RgbImage::new(w, h, [0, 0, 0]);
        let mut s = 0x9e37_79b9_u64;
        let mut noise = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 1000) as f64 / 1000.0 - 0.5
        };
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (f64::from(x), f64::from(y));
                let shade = 1.0 + 0.03 * (fx / 5.0).sin() * (fy / 7.0).cos() + 0.02 * (fx / 23.0 + fy / 17.0).sin();
                let mut cover = 0.0;
                for (cx, cy, strength) in dots {
                    let mut c = 0.0;
                    for sy in 0..4 {
                        for sx in 0..4 {
                            let (u, v) =
                                (fx + (f64::from(sx) + 0.5) / 4.0 - 0.5, fy + (f64::from(sy) + 0.5) / 4.0 - 0.5);
                            if (u - cx).hypot(v - cy) <= 3.75 {
                                c += 1.0 / 16.0;
                            }
                        }
                    }
                    cover += c * strength;
                }
                let mut p = [0u8; 3];
                for k in 0..3 {
                    let v = (skin[k] + (dot[k] - skin[k]) * cover.min(1.0)) * shade + 1.5 * noise();
                    p[k] = v.round().clamp(0.0, 255.0) as u8;
                }
                img.put(x, y, p);
            }
        }
        img
    }

    /// A field of dots, every third one strong (what the grey pass finds), the others faint.
    fn field(w: u32, h: u32) -> Vec<(f64, f64, f64)> {
        let mut out = Vec::new();
        let mut k = 0u32;
        let mut y = 20.0;
        while y < f64::from(h) - 20.0 {
            let mut x = 20.0;
            while x < f64::from(w) - 20.0 {
                k += 1;
                out.push((
                    x + f64::from(k % 5) * 0.3,
                    y + f64::from(k % 7) * 0.2,
                    if k.is_multiple_of(3) { 0.9 } else { 0.35 },
                ));
                x += 26.0;
            }
            y += 26.0;
        }
        out
    }

    fn found(dots: &[DotDetection], truth: &[(f64, f64, f64)]) -> usize {
        truth.iter().filter(|t| dots.iter().any(|d| (d.pixel[0] - t.0).hypot(d.pixel[1] - t.1) < 1.5)).count()
    }

    #[test]
    fn red_hair_on_dark_skin_is_found_on_the_learnt_projection() {
        // Fitzpatrick V skin, red hair: green and blue absorbed, red hardly at all.
        let (w, h) = (400u32, 300u32);
        let truth = field(w, h);
        let img = scene([138.0, 98.0, 70.0], [128.0, 58.0, 36.0], &truth, w, h);
        // The fixed grey floor (no scaling with the skin's brightness, follicles_contrast.rs,
        // which finds these faint dots on its own): what the projection adds, by itself.
        let cfg = VisionConfig { min_contrast_fraction: 1.0, ..VisionConfig::default() };
        let gray = img.to_gray();
        let grey = detect_dark_dots(&gray, 7.5, &cfg, "red").expect("detect");
        let n_grey = found(&grey.dots, &truth);
        assert!(n_grey >= MIN_DOTS_FOR_COLOUR, "the grey pass finds the strong dots: {n_grey}");
        assert!(n_grey < truth.len() * 2 / 3, "but misses the faint ones: {n_grey} of {}", truth.len());
        let p = learn_projection(&img, &grey.dots, &grey.dark_mask, 7.5).expect("a projection beats luma");
        assert!(p.gain_over_grey >= MIN_SNR_GAIN && p.contrast_gain >= MIN_CONTRAST_GAIN, "{p:?}");
        // Red carries texture and no signal: the projection leans on green and blue.
        assert!(p.weights[0] < p.weights[1].min(p.weights[2]), "{p:?}");
        let proj = detect_dark_dots(&p.apply(&img), 7.5, &cfg, "red").expect("detect");
        let n_proj = found(&proj.dots, &truth);
        assert_eq!(n_proj, truth.len(), "every dot on the projection ({n_grey} on grey)");
        assert!(proj.dots.len() <= truth.len() + 1, "false detections: {} for {}", proj.dots.len(), truth.len());
    }

    #[test]
    fn brown_black_hair_keeps_luma() {
        // Hair that absorbs every channel alike: luma is already the best direction.
        let (w, h) = (400u32, 300u32);
        let truth = field(w, h);
        let img = scene([198.0, 154.0, 124.0], [80.0, 62.0, 50.0], &truth, w, h);
        let gray = img.to_gray();
        let det = detect_dark_dots(&gray, 7.5, &VisionConfig::default(), "brown").expect("detect");
        assert_eq!(found(&det.dots, &truth), truth.len());
        assert_eq!(learn_projection(&img, &det.dots, &det.dark_mask, 7.5), None);
    }

    #[test]
    fn too_few_dots_or_bad_buffers_learn_nothing() {
        let img = scene([138.0, 98.0, 70.0], [128.0, 58.0, 36.0], &[], 200, 150);
        let mask = GrayImage { width: 200, height: 150, data: vec![0; 200 * 150] };
        assert_eq!(learn_projection(&img, &[], &mask, 7.5), None);
        let short = GrayImage { width: 200, height: 150, data: vec![0; 10] };
        assert_eq!(learn_projection(&img, &[], &short, 7.5), None);
    }
}

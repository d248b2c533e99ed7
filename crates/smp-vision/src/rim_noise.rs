//! Noise bias of the classifier's rim width at low contrast, and its correction.
//!
//! The rim feature ([`crate::classify`]) counts the pixels whose absorbance lies between 15 %
//! and 85 % of the dot's core. Sensor noise puts pixels in that band that are not rim: skin
//! pixels around the dot that read above 15 % of the core, and core pixels that read below
//! 85 %. On fair skin with dark hair the core is ~60 grey levels deep and 15 % of it is far
//! above the noise, so nothing changes. On Fitzpatrick VI skin with brown hair the core is
//! ~14 levels in red (random patient 2005, `cargo run --release -p smp-vision --example
//! dark_skin_probe -- 2005`): 15 % of it is ~2 levels, about one noise sigma, so a tenth of
//! the skin around every follicle joins the band. The follicles' rims then read
//! 0.03-0.04 mm instead of the ~0.02 mm the same renderer's follicles read on fair skin
//! (patient 2000), right at the classifier's neutral point (0.035 mm), and 5,249 of 9,459
//! detected follicles of patient 2005 were called earlier SMP dots.
//!
//! The correction needs no noise model: the skin ring the classifier already measures (outside
//! every dot) shows how often noise alone crosses each level. The expected spurious count,
//! that rate times the pixels outside the 50 % contour (for the 15 % level) and inside it
//! (for the 85 % level), is taken off the band. At high contrast both rates are zero and the
//! band is unchanged.

/// Rim band (pixels between the 15 % and 85 % levels) minus what noise alone puts there.
///
/// `band_px`: the measured band; `inside_px`: pixels at or above the 50 % level;
/// `outside_px`: profile pixels below it. `ring_absorbance`: the skin ring's absorbance
/// (`sign x (1 - pixel / skin)`, same channel and sign as the profile), `core_absorbance` the
/// dot's. Never negative; the measured band when the ring is empty or the core is not
/// positive.
pub(crate) fn noise_corrected_band_px(
    band_px: usize,
    inside_px: usize,
    outside_px: usize,
    ring_absorbance: impl ExactSizeIterator<Item = f64>,
    core_absorbance: f64,
) -> f64 {
    let n = ring_absorbance.len();
    if n == 0 || !(core_absorbance.is_finite() && core_absorbance > 0.0) {
        return band_px as f64;
    }
    let (lo, hi) = (0.15 * core_absorbance, 0.85 * core_absorbance);
    // Skin that reads inside the band, and skin that reads as far below zero as a core pixel
    // must fall to leave the 85 % level.
    let (mut in_band, mut deep_low) = (0usize, 0usize);
    for a in ring_absorbance {
        in_band += usize::from(a >= lo && a < hi);
        deep_low += usize::from(a <= -lo);
    }
    let spurious = (in_band as f64 * outside_px as f64 + deep_low as f64 * inside_px as f64) / n as f64;
    (band_px as f64 - spurious).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::dot_features;
    use crate::follicles::{DotDetection, Polarity};
    use smp_core::image::{GrayImage, RgbImage};

    #[test]
    fn no_noise_no_change_and_pure_noise_is_removed() {
        // A quiet ring: the band stands.
        assert_eq!(noise_corrected_band_px(20, 30, 60, [0.0; 50].into_iter(), 0.5), 20.0);
        // Half the ring in the band: half the outside pixels were noise.
        let ring: Vec<f64> = (0..50).map(|i| if i % 2 == 0 { 0.2 } else { 0.0 }).collect();
        assert_eq!(noise_corrected_band_px(40, 30, 60, ring.iter().copied(), 0.5), 10.0);
        // Never negative; degenerate inputs leave the band alone.
        assert_eq!(noise_corrected_band_px(5, 30, 60, ring.iter().copied(), 0.5), 0.0);
        assert_eq!(noise_corrected_band_px(7, 30, 60, std::iter::empty(), 0.5), 7.0);
        assert_eq!(noise_corrected_band_px(7, 30, 60, ring.iter().copied(), 0.0), 7.0);
    }

    fn to_linear(v: f64) -> f64 {
        let c = v / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    }

    fn to_srgb(l: f64) -> f64 {
        255.0 * if l <= 0.003_130_8 { 12.92 * l } else { 1.055 * l.max(0.0).powf(1.0 / 2.4) - 0.055 }
    }

    /// Skin `skin` with one disc of `hair` at `darkness` (radius `r_px`, Gaussian rim of
    /// `blur_px`, mixed in linear light), plus deterministic per-channel noise.
    fn scene(skin: [u8; 3], hair: [u8; 3], darkness: f64, r_px: f64, blur_px: f64, noise: f64) -> RgbImage {
        let (w, h) = (64usize, 64usize);
        let (cx, cy) = (31.3, 32.6);
        let mut data = vec![0u8; w * h * 3];
        let mut s = 0x2545_f491_4f6c_dd1d_u64;
        let k = noise / (4.0f64 / 12.0).sqrt();
        for y in 0..h {
            for x in 0..w {
                // Coverage of a blurred disc: 4x4 supersampled edge, logistic approximation of
                // the Gaussian (sigma -> scale 0.588 sigma).
                let mut cover = 0.0;
                for sy in 0..4 {
                    for sx in 0..4 {
                        let px = x as f64 + (sx as f64 + 0.5) / 4.0 - 0.5;
                        let py = y as f64 + (sy as f64 + 0.5) / 4.0 - 0.5;
                        let rho = (px - cx).hypot(py - cy);
                        cover += 1.0 / (1.0 + ((rho - r_px) / (0.588 * blur_px).max(1e-3)).exp());
                    }
                }
                let m = darkness * cover / 16.0;
                for c in 0..3 {
                    let l = (1.0 - m) * to_linear(f64::from(skin[c])) + m * to_linear(f64::from(hair[c]));
                    let acc = crate::test_noise::sum_of_four_uniforms(&mut s, 10_000);
                    data[(y * w + x) * 3 + c] = (to_srgb(l) + acc * k).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        RgbImage { width: w as u32, height: h as u32, data }
    }

    fn rim_mm(img: &RgbImage, r_px: f64) -> f64 {
        let mask = GrayImage { width: img.width, height: img.height, data: vec![0; (img.width * img.height) as usize] };
        let d = DotDetection {
            pixel: [31.3, 32.6],
            diameter_px: 2.0 * r_px,
            contrast_levels: 10.0,
            darkness: 0.2,
            polarity: Polarity::Dark,
        };
        let f = dot_features(img, &mask, &[d], 0.04);
        f[0].edge_sigma_mm.unwrap_or(0.0)
    }

    /// Brown stubble on Fitzpatrick VI skin (colours as the scan of random patient 2005
    /// shows them: skin sRGB ~(91, 65, 49), follicle core ~14 levels darker in red) with a
    /// sharp rim (0.5 px = 0.02 mm) reads the same rim with or without sensor noise, well
    /// under the classifier's neutral 0.035 mm; without the correction the noisy one reads
    /// ~0.035 mm and is a coin toss between follicle and SMP dot.
    #[test]
    fn a_sharp_faint_follicle_on_dark_skin_keeps_a_sharp_rim_under_noise() {
        let (skin, hair) = ([91u8, 65, 49], [62u8, 46, 38]);
        let clean = rim_mm(&scene(skin, hair, 0.8, 3.0, 0.5, 0.0), 3.0);
        // Average over a few noise draws (the scene's seed is fixed, so shift the disc's
        // noise by drawing several scenes of different noise level).
        let mut noisy = Vec::new();
        for n in [1.6, 1.8, 2.0, 2.2] {
            noisy.push(rim_mm(&scene(skin, hair, 0.8, 3.0, 0.5, n), 3.0));
        }
        let mean = noisy.iter().sum::<f64>() / noisy.len() as f64;
        assert!(clean < 0.03, "clean rim {clean}");
        assert!(mean < 0.03, "noisy rims {noisy:?} (clean {clean})");
        // And a soft (pigment-like) rim of 1.5 px = 0.06 mm still reads soft.
        let soft = rim_mm(&scene(skin, [40, 40, 60], 0.8, 4.0, 1.5, 2.0), 4.0);
        assert!(soft > 0.045, "soft rim {soft}");
    }
}

//! Optics and sensor: from linear radiance to the 8-bit frame a camera delivers (defocus
//! blur, exposure, shot and read noise, sRGB encoding) and the depth frame's noise, all
//! seeded from the config and the view's label so that every image replays exactly.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use smp_core::camera::CameraIntrinsics;

use super::config::RenderConfig;

/// From linear radiance to the 8-bit frame a camera delivers: defocus blur (optics), exposure,
/// shot noise and read noise (sensor), sRGB encoding; plus the depth frame's noise.
///
/// `linear` is scene radiance where `hit` is set; elsewhere the backdrop is seen. `depth` is
/// along the optical axis (NaN = no return) and gets `depth_noise_sigma_mm` in place. With
/// the default config (no blur, exposure 1, no shot noise) the backdrop keeps its exact sRGB
/// value and the random draws are in the same order as before these options existed, so
/// images replay bit for bit across this change.
pub(crate) fn develop(
    linear: &mut [[f32; 3]],
    hit: &mut [bool],
    depth: &mut [f32],
    intrinsics: &CameraIntrinsics,
    label: &str,
    cfg: &RenderConfig,
) -> Vec<u8> {
    let n = linear.len().min(hit.len()).min(depth.len());
    let w = intrinsics.width_px as usize;
    if cfg.aperture_mm > 0.0 && w > 0 {
        let back = srgb_to_linear3(cfg.background_srgb);
        for i in 0..n {
            if !hit[i] {
                linear[i] = back;
                hit[i] = true; // the blurred backdrop is now part of the radiance image
            }
        }
        defocus(&mut linear[..n], &depth[..n], w, intrinsics.fx_px, cfg);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(view_seed(cfg.seed, label));
    let lut = srgb_encode_lut();
    let sigma = cfg.noise_sigma_levels as f32;
    let depth_sigma = cfg.depth_noise_sigma_mm as f32;
    let gain = cfg.exposure_gain as f32;
    let full_well = cfg.full_well_electrons as f32;
    let background = cfg.background_srgb.map(f32::from);
    let mut data = vec![0u8; n * 3];
    // A windowed render (tracking) develops only its window: the sensor noise of the pixels
    // nobody reads is the largest cost of a small window. The rest stays the plain backdrop.
    let inside = |i: usize| match cfg.window_px {
        Some([x0, y0, x1, y1]) if w > 0 => {
            let (x, y) = ((i % w) as u32, (i / w) as u32);
            x >= x0 && x < x1 && y >= y0 && y < y1
        }
        _ => true,
    };
    for i in 0..n {
        if !inside(i) {
            let px = cfg.background_srgb;
            data[i * 3..i * 3 + 3].copy_from_slice(&px);
            continue;
        }
        let base = if hit[i] {
            let mut c = linear[i];
            for v in &mut c {
                *v *= gain;
                if full_well > 0.0 {
                    // Poisson photon count, Gaussian for the counts a pixel sees (> 50 e-).
                    *v += (v.max(0.0) / full_well).sqrt() * sample_normal(&mut rng);
                }
            }
            [encode(&lut, c[0]), encode(&lut, c[1]), encode(&lut, c[2])]
        } else {
            background
        };
        for k in 0..3 {
            let noise = if sigma > 0.0 { sigma * sample_normal(&mut rng) } else { 0.0 };
            data[i * 3 + k] = (base[k] + noise).round().clamp(0.0, 255.0) as u8;
        }
        if depth_sigma > 0.0 && depth[i].is_finite() {
            depth[i] += depth_sigma * sample_normal(&mut rng);
        }
    }
    data
}

/// Circle-of-confusion diameter in pixels of a point at depth `z_mm` (thin lens): the pupil
/// `aperture_mm` seen from the sensor, scaled by the defocus `|1/focus - 1/z|`. A point with
/// no depth (the far backdrop) is at infinity.
pub fn circle_of_confusion_px(aperture_mm: f64, fx_px: f64, focus_mm: f64, z_mm: f64) -> f64 {
    let inv_z = if z_mm.is_finite() && z_mm > 0.0 { 1.0 / z_mm } else { 0.0 };
    (aperture_mm * fx_px * (1.0 / focus_mm - inv_z)).abs()
}

/// Blurs each pixel by its own circle of confusion (a Gaussian of sigma = diameter / 4, the
/// standard deviation of a uniform disc), separably: rows, then columns. A gather with the
/// receiving pixel's sigma, which is exact on planes of constant depth and close enough on
/// the smooth scalp; sharp depth edges (head against backdrop) bleed slightly, as the
/// simulator's stand-in for partial occlusion.
fn defocus(linear: &mut [[f32; 3]], depth: &[f32], w: usize, fx_px: f64, cfg: &RenderConfig) {
    const MAX_SIGMA_PX: f64 = 24.0;
    let n = linear.len();
    if w == 0 || n == 0 {
        return;
    }
    let h = n / w;
    let focus = cfg.focus_distance_mm.unwrap_or_else(|| autofocus_mm(depth, w, h));
    let sigma: Vec<f32> = depth
        .iter()
        .map(|z| (circle_of_confusion_px(cfg.aperture_mm, fx_px, focus, f64::from(*z)) / 4.0).min(MAX_SIGMA_PX) as f32)
        .collect();
    let mut tmp = vec![[0f32; 3]; n];
    let pass = |src: &[[f32; 3]], dst: &mut [[f32; 3]], along_rows: bool| {
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let s = sigma[i];
                if s < 0.05 {
                    dst[i] = src[i];
                    continue;
                }
                let r = (3.0 * s).ceil() as isize;
                let inv = -0.5 / (s * s);
                let (mut acc, mut wsum) = ([0f32; 3], 0f32);
                for d in -r..=r {
                    let (xx, yy) = if along_rows { (x as isize + d, y as isize) } else { (x as isize, y as isize + d) };
                    if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize {
                        continue;
                    }
                    let wt = (inv * (d * d) as f32).exp();
                    let c = src[yy as usize * w + xx as usize];
                    for k in 0..3 {
                        acc[k] += wt * c[k];
                    }
                    wsum += wt;
                }
                dst[i] = acc.map(|a| a / wsum.max(1e-12));
            }
        }
    };
    pass(linear, &mut tmp, true);
    pass(&tmp, linear, false);
}

/// The autofocus distance: the centre pixel's depth, else the median of all returns, else
/// 100 mm (nothing in view: any focus will do).
fn autofocus_mm(depth: &[f32], w: usize, h: usize) -> f64 {
    let centre = depth.get((h / 2) * w + w / 2).copied().unwrap_or(f32::NAN);
    if centre.is_finite() && centre > 0.0 {
        return f64::from(centre);
    }
    let mut z: Vec<f32> = depth.iter().copied().filter(|z| z.is_finite() && *z > 0.0).collect();
    if z.is_empty() {
        return 100.0;
    }
    z.sort_by(f32::total_cmp);
    f64::from(z[z.len() / 2])
}

pub(super) fn sample_normal(rng: &mut ChaCha8Rng) -> f32 {
    let v: f64 = StandardNormal.sample(rng);
    v as f32
}

/// Per-view noise seed: the config seed mixed with the label (FNV-1a, stable across builds).
fn view_seed(seed: u64, label: &str) -> u64 {
    let mut hsh: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        hsh ^= u64::from(b);
        hsh = hsh.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hsh ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

pub(super) fn srgb_to_linear(v: u8) -> f32 {
    let c = f32::from(v) / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

pub(crate) fn srgb_to_linear3(c: [u8; 3]) -> [f32; 3] {
    c.map(srgb_to_linear)
}

const LUT_SIZE: usize = 4096;

/// Linear [0, 1] -> sRGB [0, 255] (not rounded, so noise is added before quantising).
fn srgb_encode_lut() -> Vec<f32> {
    (0..LUT_SIZE)
        .map(|i| {
            let l = i as f32 / (LUT_SIZE - 1) as f32;
            let s = if l <= 0.003_130_8 { 12.92 * l } else { 1.055 * l.powf(1.0 / 2.4) - 0.055 };
            s * 255.0
        })
        .collect()
}

fn encode(lut: &[f32], linear: f32) -> f32 {
    let idx = (linear.clamp(0.0, 1.0) * (LUT_SIZE - 1) as f32 + 0.5) as usize;
    lut[idx.min(LUT_SIZE - 1)]
}

//! Dot detection in one grey tile: follicles of shaved hair and earlier pigment dots are
//! small discs whose brightness differs from the skin around them.
//!
//! Dark hair (and pigment, always) is darker than the skin; blond or grey stubble on dark
//! skin is lighter. The detector therefore has two polarities: a black-hat (closing minus
//! image) finds dark dots, a top-hat (image minus opening) light ones. Either flattens the
//! skin's shading and texture with an elliptical kernel a few times the follicle size and
//! leaves each dot as a positive peak whose height is its contrast; a noise-relative
//! threshold, connected components with an area/shape filter, and an intensity-weighted
//! centroid give sub-pixel positions. Which polarities run is
//! [`VisionConfig::follicle_polarity`]; `auto` runs both and keeps the light pass only when
//! its blobs look like a follicle population (see [`detect_dots`]).
//!
//! Speed: follicles much larger than the kernel needs (close-ups at high magnification) are
//! detected on an area-downsampled copy (integer factor, so centroids map back exactly;
//! area averaging preserves a blob's first moments); the two polarities of a large image
//! run on two threads.

use opencv::core::{Mat, Point, Rect, Size, BORDER_REPLICATE, CV_32S};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use smp_core::image::GrayImage;

use crate::cv::gray_mat;
#[cfg(test)]
use crate::cv::mat_to_gray;
use crate::error::{cv_err, VisionError};
use crate::follicles_contrast::{FaintBlob, ThresholdLut};
use crate::VisionConfig;

/// Which way a dot's contrast goes against the skin around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Polarity {
    /// Darker than the skin: dark hair, and every pigment dot.
    Dark,
    /// Lighter than the skin: blond, grey or red stubble on darker skin. Never pigment.
    Light,
}

/// Which polarities the follicle detector searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FolliclePolarity {
    /// Both, keeping the light detections only when they form a follicle population (so
    /// noise on dark-haired patients adds nothing).
    #[default]
    Auto,
    Dark,
    Light,
    /// Both, every detection kept.
    Both,
}

/// One dot found in an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DotDetection {
    /// Intensity-weighted centroid, pixels (distorted image coordinates, x right, y down).
    pub pixel: [f64; 2],
    /// Equivalent disc diameter from the contrast mass over its peak, pixels.
    pub diameter_px: f64,
    /// Peak contrast against the surrounding skin, grey levels (positive for either
    /// polarity).
    pub contrast_levels: f64,
    /// Contrast relative to how far the skin could go: for a dark dot 0 = skin, 1 = black;
    /// for a light one 0 = skin, 1 = white.
    pub darkness: f64,
    /// Darker or lighter than the skin.
    pub polarity: Polarity,
}

/// Detections of one image plus the figures a caller reports when they look wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct DotDetections {
    pub dots: Vec<DotDetection>,
    /// Robust noise of the contrast image (1.4826 MAD) of the dark pass (the light pass's
    /// when only that ran), grey levels.
    pub noise_sigma: f64,
    /// Threshold used by that pass, grey levels.
    pub threshold_levels: f64,
    /// Pixels that differ from their surroundings by half the threshold in a kept polarity
    /// (dots and their rims), 255 = on a dot; used to keep follicles out of skin-colour
    /// samples and out of the classifier's skin ring.
    pub dark_mask: GrayImage,
    /// Brightness of the skin with the dots filtered away (the closing, or the opening when
    /// only the light pass ran), mean grey level.
    pub mean_skin_level: f64,
    /// Whether the light pass ran and its detections were kept.
    pub light_kept: bool,
}

/// Dark dots only: [`detect_dots`] with the dark polarity.
pub fn detect_dark_dots(
    gray: &GrayImage,
    diameter_px: f64,
    cfg: &VisionConfig,
    label: &str,
) -> Result<DotDetections, VisionError> {
    detect_dots_with(gray, diameter_px, cfg, FolliclePolarity::Dark, label)
}

/// Detects dots of about `diameter_px` in `gray` in the polarities of
/// `cfg.follicle_polarity`. `label` names the view in errors.
///
/// With `auto`, the light pass's detections are kept when there are at least
/// [`LIGHT_MIN_DOTS`] of them: light stubble on darker skin gives a population of light
/// blobs, while on a patient whose hair is darker than the skin the light pass finds a stray
/// peak or two at most (every light blob must also stand out from its skin ring, which the
/// gaps between dense dark follicles do not). The dark pass's count does not enter: a
/// treated crown of a blond patient holds many dark pigment dots and few light follicles,
/// and both must be found.
pub fn detect_dots(
    gray: &GrayImage,
    diameter_px: f64,
    cfg: &VisionConfig,
    label: &str,
) -> Result<DotDetections, VisionError> {
    detect_dots_with(gray, diameter_px, cfg, cfg.follicle_polarity, label)
}

/// [`detect_dots`] with an explicit polarity choice.
pub fn detect_dots_with(
    gray: &GrayImage,
    diameter_px: f64,
    cfg: &VisionConfig,
    polarity: FolliclePolarity,
    label: &str,
) -> Result<DotDetections, VisionError> {
    if gray.width == 0 || gray.height == 0 {
        return Err(VisionError::EmptyImage { label: label.to_string(), width: gray.width, height: gray.height });
    }
    if gray.data.len() != gray.width as usize * gray.height as usize {
        return Err(VisionError::BufferSize {
            label: label.to_string(),
            what: "grey",
            width: gray.width,
            height: gray.height,
            found: gray.data.len(),
            expected: gray.width as usize * gray.height as usize,
        });
    }
    let (w, h) = (gray.width as usize, gray.height as usize);
    let d_px = if diameter_px.is_finite() { diameter_px.max(1.0) } else { 1.0 };

    // Downsampling factor: the largest integer that keeps the follicle at least
    // `detect_max_diameter_px` wide, and the image at least 16 px.
    let max_d = if cfg.detect_max_diameter_px.is_finite() { cfg.detect_max_diameter_px.max(3.0) } else { f64::MAX };
    let mut f = ((d_px / max_d).floor() as usize).max(1);
    while f > 1 && (w / f < 16 || h / f < 16) {
        f -= 1;
    }
    let src = gray_mat(gray, label)?;
    let (ws, hs) = (w / f, h / f);
    let small = if f == 1 {
        None
    } else {
        let roi = Mat::roi(&src, Rect::new(0, 0, (ws * f) as i32, (hs * f) as i32))
            .map_err(cv_err("cropping for downsampling", label))?;
        let mut s = Mat::default();
        imgproc::resize(&roi, &mut s, Size::new(ws as i32, hs as i32), 0.0, 0.0, imgproc::INTER_AREA)
            .map_err(cv_err("downsampling", label))?;
        Some(s)
    };
    let d_s = d_px / f as f64;
    let border_s = (cfg.border_px as f64 / f as f64).ceil() as i32;
    let geometry = PassGeometry { w: ws, h: hs, d_px: d_s, border_px: border_s };
    let run_dark = polarity != FolliclePolarity::Light;
    let run_light = polarity != FolliclePolarity::Dark;
    let (dark, light) = match &small {
        Some(m) => run_passes(m, &geometry, cfg, run_dark, run_light, label)?,
        None => run_passes(&src, &geometry, cfg, run_dark, run_light, label)?,
    };

    let light_kept = match (&light, polarity) {
        (None, _) => false,
        (Some(_), FolliclePolarity::Light | FolliclePolarity::Both) => true,
        (Some(l), _) => l.dots.len() >= LIGHT_MIN_DOTS,
    };
    let primary = dark.as_ref().or(light.as_ref());
    let (noise_sigma, threshold_levels, mean_skin_level) =
        primary.map_or((0.0, 0.0, 0.0), |p| (p.sigma, p.threshold, p.mean_skin));

    let scale = f as f64;
    let to_full = |mut d: DotDetection| {
        d.pixel = [(d.pixel[0] + 0.5) * scale - 0.5, (d.pixel[1] + 0.5) * scale - 0.5];
        d.diameter_px *= scale;
        d
    };
    let mut dots: Vec<DotDetection> = Vec::new();
    let mut mask_s = vec![0u8; ws * hs];
    if let Some(d) = &dark {
        dots.extend(d.dots.iter().copied().map(to_full));
        mask_s.copy_from_slice(&d.mask);
    }
    if let (true, Some(l)) = (light_kept, &light) {
        dots.extend(l.dots.iter().copied().map(to_full));
        for (m, v) in mask_s.iter_mut().zip(&l.mask) {
            *m |= *v;
        }
    }
    // Reading order (then polarity): the same image gives the same list whichever pass ran
    // on which thread.
    dots.sort_by(|a, b| {
        a.pixel[1]
            .total_cmp(&b.pixel[1])
            .then(a.pixel[0].total_cmp(&b.pixel[0]))
            .then((a.polarity as u8).cmp(&(b.polarity as u8)))
    });

    // Grow the mask by a pixel so the anti-aliased rims of dots are excluded too, then back
    // to full resolution.
    let mask_img = GrayImage { width: ws as u32, height: hs as u32, data: mask_s };
    let mask_mat = gray_mat(&mask_img, label)?;
    let border = imgproc::morphology_default_border_value().map_err(cv_err("mask border", label))?;
    let mut grown = Mat::default();
    let k3 = imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(3, 3), Point::new(-1, -1))
        .map_err(cv_err("building the mask kernel", label))?;
    imgproc::dilate(&mask_mat, &mut grown, &k3, Point::new(-1, -1), 1, BORDER_REPLICATE, border)
        .map_err(cv_err("dilating the dot mask", label))?;
    let dark_mask = if f == 1 {
        GrayImage {
            width: gray.width,
            height: gray.height,
            data: grown.data_bytes().map_err(cv_err("reading the dot mask", label))?.to_vec(),
        }
    } else {
        let mut up = Mat::default();
        imgproc::resize(&grown, &mut up, Size::new(w as i32, h as i32), 0.0, 0.0, imgproc::INTER_NEAREST)
            .map_err(cv_err("upsampling the dot mask", label))?;
        GrayImage {
            width: gray.width,
            height: gray.height,
            data: up.data_bytes().map_err(cv_err("reading the dot mask", label))?.to_vec(),
        }
    };

    Ok(DotDetections { dots, noise_sigma, threshold_levels, dark_mask, mean_skin_level, light_kept })
}

/// `auto` keeps the light pass of an image when it found at least this many dots. On random
/// patients 1000, 1001 and 1004 (dark hair), keeping every light detection
/// (`FolliclePolarity::Both`) changed the map's natural follicles by at most 6 over a whole
/// scan of some 12,000: a stray light peak per tile at most, which this gate drops.
pub const LIGHT_MIN_DOTS: usize = 3;

/// Images with at least this many pixels (after downsampling) run their two polarities on
/// two threads.
const PARALLEL_MIN_PX: usize = 1_000_000;

/// Size, follicle diameter and border margin of the image a pass works on, pixels.
struct PassGeometry {
    w: usize,
    h: usize,
    d_px: f64,
    border_px: i32,
}

/// The requested polarities over one image; on two threads when the image is large (a tile
/// map already runs tiles on both cores, so small images stay on the caller's thread).
fn run_passes<M: MatTraitConst + opencv::core::ToInputArray>(
    m: &M,
    g: &PassGeometry,
    cfg: &VisionConfig,
    run_dark: bool,
    run_light: bool,
    label: &str,
) -> Result<(Option<Pass>, Option<Pass>), VisionError> {
    if run_dark && run_light && g.w * g.h >= PARALLEL_MIN_PX {
        let data = m.data_bytes().map_err(cv_err("reading the frame", label))?;
        let (dark, light) = std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let mm = Mat::new_rows_cols_with_data::<u8>(g.h as i32, g.w as i32, data)
                    .map_err(cv_err("wrapping the frame", label))?;
                detect_pass(&mm, g, cfg, Polarity::Light, label)
            });
            let dark = detect_pass(m, g, cfg, Polarity::Dark, label);
            let light = worker.join().unwrap_or_else(|_| {
                Err(VisionError::OpenCv {
                    step: "light-dot pass",
                    label: label.to_string(),
                    message: "worker thread panicked".into(),
                })
            });
            (dark, light)
        });
        return Ok((Some(dark?), Some(light?)));
    }
    let dark = if run_dark { Some(detect_pass(m, g, cfg, Polarity::Dark, label)?) } else { None };
    let light = if run_light { Some(detect_pass(m, g, cfg, Polarity::Light, label)?) } else { None };
    Ok((dark, light))
}

/// One polarity's result, in the pass's (possibly downsampled) pixels.
struct Pass {
    dots: Vec<DotDetection>,
    sigma: f64,
    threshold: f64,
    /// Pixels above half the threshold, 255; not grown.
    mask: Vec<u8>,
    mean_skin: f64,
}

/// One polarity over a continuous CV_8UC1 image of `g.w` x `g.h`.
fn detect_pass<M: MatTraitConst + opencv::core::ToInputArray>(
    src: &M,
    g: &PassGeometry,
    cfg: &VisionConfig,
    polarity: Polarity,
    label: &str,
) -> Result<Pass, VisionError> {
    let (w, h, d_px, border_px) = (g.w, g.h, g.d_px, g.border_px);
    let gray = src.data_bytes().map_err(cv_err("reading the frame", label))?;
    let mut k = (cfg.blackhat_kernel_factor * d_px).round() as i32;
    k = k.max(3) | 1;
    let kernel = imgproc::get_structuring_element(imgproc::MORPH_ELLIPSE, Size::new(k, k), Point::new(-1, -1))
        .map_err(cv_err("building the black-hat kernel", label))?;
    let mut filtered = Mat::default();
    let border = imgproc::morphology_default_border_value().map_err(cv_err("black-hat border", label))?;
    let op = match polarity {
        Polarity::Dark => imgproc::MORPH_CLOSE,
        Polarity::Light => imgproc::MORPH_OPEN,
    };
    imgproc::morphology_ex(src, &mut filtered, op, &kernel, Point::new(-1, -1), 1, BORDER_REPLICATE, border)
        .map_err(cv_err("closing/opening (black-hat/top-hat)", label))?;
    let bg = filtered.data_bytes().map_err(cv_err("reading the closing", label))?;
    // Contrast image: how far each pixel is from the skin in the pass's direction.
    let bh: Vec<u8> = match polarity {
        Polarity::Dark => bg.iter().zip(gray).map(|(c, g)| c.saturating_sub(*g)).collect(),
        Polarity::Light => gray.iter().zip(bg).map(|(g, o)| g.saturating_sub(*o)).collect(),
    };

    // Robust noise: median and MAD from the histogram.
    let mut hist = [0usize; 256];
    for v in &bh {
        hist[*v as usize] += 1;
    }
    let median = hist_quantile(&hist, 0.5);
    let mut dev_hist = [0usize; 256];
    for (v, c) in hist.iter().enumerate() {
        dev_hist[(v as i32 - median as i32).unsigned_abs() as usize] += c;
    }
    let mad = hist_quantile(&dev_hist, 0.5) as f64;
    let sigma = 1.4826 * mad;
    // Threshold per skin level: the noise threshold, floored by a fraction of the skin's
    // brightness (follicles_contrast.rs: dark skin has fewer grey levels of contrast).
    let lut = ThresholdLut::new(median as f64 + cfg.detect_sigma * sigma, cfg);
    let threshold = lut.at_median_skin(bg);
    // Weights start at the noise floor so that noise around a dot does not pull its centroid.
    let floor = median as f64 + sigma;

    let (bin_data, mask): (Vec<u8>, Vec<u8>) = bh
        .iter()
        .zip(bg)
        .map(|(&v, &b)| {
            let b = b as usize;
            (if v > lut.hi[b] { 255u8 } else { 0 }, if v > lut.lo[b] { 255u8 } else { 0 })
        })
        .unzip();
    let bin_mat = Mat::new_rows_cols_with_data::<u8>(h as i32, w as i32, &bin_data)
        .map_err(cv_err("wrapping the binary image", label))?;
    let mut labels = Mat::default();
    let mut stats = Mat::default();
    let mut centroids = Mat::default();
    let n = imgproc::connected_components_with_stats(&bin_mat, &mut labels, &mut stats, &mut centroids, 8, CV_32S)
        .map_err(cv_err("connected components", label))?;
    let labels_px = labels.data_typed::<i32>().map_err(cv_err("reading labels", label))?;
    let stats_px = stats.data_typed::<i32>().map_err(cv_err("reading component stats", label))?;

    let expected_area = std::f64::consts::PI * 0.25 * d_px * d_px;
    let (min_area, max_area) = (cfg.min_area_factor * expected_area, cfg.max_area_factor * expected_area);
    let pad = (0.5 * d_px).ceil() as i32 + 1;
    let mut dots = Vec::new();
    for lab in 1..n {
        let s = &stats_px[lab as usize * 5..lab as usize * 5 + 5];
        let (bx, by, bw, bhh, area) = (s[0], s[1], s[2], s[3], s[4] as f64);
        if area > max_area {
            continue;
        }
        // A faint follicle is judged by its extent at half the threshold, not by the sliver
        // above it (follicles_contrast.rs).
        if area < min_area.max(1.0) {
            let box_px = [bx, by, bw, bhh];
            let faint = FaintBlob {
                contrast: &bh,
                background: bg,
                labels: labels_px,
                stats: stats_px,
                min_area_px: min_area.max(1.0),
                w,
                h,
            };
            if (faint.area_at_half_threshold(lab, box_px, d_px, &lut) as f64) < min_area.max(1.0) {
                continue;
            }
        }
        let b = border_px;
        if bx < b || by < b || bx + bw > w as i32 - b || by + bhh > h as i32 - b {
            continue;
        }
        let aspect = bw.max(bhh) as f64 / bw.min(bhh).max(1) as f64;
        if aspect > cfg.max_aspect {
            continue;
        }
        let x0 = (bx - pad).max(0) as usize;
        let y0 = (by - pad).max(0) as usize;
        let x1 = ((bx + bw + pad) as usize).min(w);
        let y1 = ((by + bhh + pad) as usize).min(h);
        // Weights over the blob grown by two pixels (its anti-aliased rim), minus the noise
        // floor: skin texture further out, which the black-hat does not remove entirely,
        // must not pull the centroid.
        let (ww, wh) = (x1 - x0, y1 - y0);
        let mut near = vec![false; ww * wh];
        for y in y0..y1 {
            for x in x0..x1 {
                if labels_px[y * w + x] == lab {
                    for yy in y.saturating_sub(2).max(y0)..(y + 3).min(y1) {
                        for xx in x.saturating_sub(2).max(x0)..(x + 3).min(x1) {
                            near[(yy - y0) * ww + (xx - x0)] = true;
                        }
                    }
                }
            }
        }
        let (mut sw, mut sx, mut sy, mut peak) = (0.0, 0.0, 0.0, 0.0f64);
        for y in y0..y1 {
            for x in x0..x1 {
                let i = y * w + x;
                let l = labels_px[i];
                if !near[(y - y0) * ww + (x - x0)] || (l != 0 && l != lab) {
                    continue;
                }
                let v = bh[i] as f64;
                if l == lab {
                    peak = peak.max(v);
                }
                let wgt = v - floor;
                if wgt > 0.0 {
                    sw += wgt;
                    sx += wgt * x as f64;
                    sy += wgt * y as f64;
                }
            }
        }
        if sw <= 0.0 || peak <= floor {
            continue;
        }
        let cx = sx / sw;
        let cy = sy / sw;
        let area_eq = sw / (peak - floor);
        // The blob must stand out from the skin ring around it, not only from the
        // morphological background: between dense dots of the other polarity the skin itself
        // reads as a dot of this one (a gap between dark follicles is "lighter than its
        // opening"), but it is no lighter than its surroundings.
        let r_blob = (area_eq / std::f64::consts::PI).sqrt();
        let ci = (cy.round() as usize).min(h - 1) * w + (cx.round() as usize).min(w - 1);
        if let Some(ring_contrast) = ring_contrast(gray, labels_px, w, h, lab, [cx, cy], r_blob, d_px, polarity) {
            if ring_contrast < RING_CONTRAST_FRACTION * lut.levels[bg[ci] as usize] {
                continue;
            }
        }
        // Room the skin has toward black (dark dots) or white (light ones).
        let room = match polarity {
            Polarity::Dark => bg[ci] as f64,
            Polarity::Light => 255.0 - bg[ci] as f64,
        };
        let darkness = if room > 0.0 { (peak / room).clamp(0.0, 1.0) } else { 0.0 };
        dots.push(DotDetection {
            pixel: [cx, cy],
            diameter_px: 2.0 * (area_eq / std::f64::consts::PI).sqrt(),
            contrast_levels: peak,
            darkness,
            polarity,
        });
    }
    let mean_skin = bg.iter().map(|v| *v as f64).sum::<f64>() / (w * h).max(1) as f64;
    Ok(Pass { dots, sigma, threshold, mask, mean_skin })
}

/// Contrast a blob must have against the median of its skin ring, as a fraction of the
/// detection threshold (the ring test reads one extreme pixel, so a real dot near the
/// threshold can read a little under it).
const RING_CONTRAST_FRACTION: f64 = 0.75;
/// Fewest ring pixels for the ring test; with fewer (image border, backdrop) it is skipped.
const MIN_RING_PX: usize = 8;
/// Ring pixels darker than this are backdrop or shadow, not skin.
const MIN_RING_LEVEL: u8 = 30;

/// Contrast of blob `lab` (centroid `c`, equivalent radius `r_px`) against the median of a
/// skin ring just outside it, in the pass's direction, grey levels: its most extreme pixel
/// minus the ring median. Pixels of other blobs of the same pass are left out of the ring.
/// `None` when the ring has too few pixels.
#[allow(clippy::too_many_arguments)]
fn ring_contrast(
    gray: &[u8],
    labels: &[i32],
    w: usize,
    h: usize,
    lab: i32,
    c: [f64; 2],
    r_px: f64,
    d_px: f64,
    polarity: Polarity,
) -> Option<f64> {
    let r_in = r_px + 2.0;
    let r_out = r_in + (0.5 * d_px).max(3.0);
    let reach = r_out.ceil() as i64 + 1;
    let (cxi, cyi) = (c[0].round() as i64, c[1].round() as i64);
    let mut ring: Vec<u8> = Vec::with_capacity(64);
    let mut extreme: Option<u8> = None;
    for y in (cyi - reach).max(0)..(cyi + reach + 1).min(h as i64) {
        for x in (cxi - reach).max(0)..(cxi + reach + 1).min(w as i64) {
            let i = y as usize * w + x as usize;
            let l = labels[i];
            let v = gray[i];
            if l == lab {
                extreme = Some(match (extreme, polarity) {
                    (None, _) => v,
                    (Some(e), Polarity::Dark) => e.min(v),
                    (Some(e), Polarity::Light) => e.max(v),
                });
                continue;
            }
            let rho = (x as f64 - c[0]).hypot(y as f64 - c[1]);
            if l == 0 && rho >= r_in && rho <= r_out && v >= MIN_RING_LEVEL {
                ring.push(v);
            }
        }
    }
    let e = f64::from(extreme?);
    if ring.len() < MIN_RING_PX {
        return None;
    }
    let mid = ring.len() / 2;
    let (_, m, _) = ring.select_nth_unstable(mid);
    let m = f64::from(*m);
    Some(match polarity {
        Polarity::Dark => m - e,
        Polarity::Light => e - m,
    })
}

/// Value at quantile `q` of a 256-bin histogram.
fn hist_quantile(hist: &[usize; 256], q: f64) -> u8 {
    let total: usize = hist.iter().sum();
    let target = (q * total as f64).ceil().max(1.0) as usize;
    let mut acc = 0;
    for (v, c) in hist.iter().enumerate() {
        acc += c;
        if acc >= target {
            return v as u8;
        }
    }
    255
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, CV_8UC1};

    const SS: i32 = 8; // supersampling for exact anti-aliasing
    const SHIFT: i32 = 4; // fractional bits of cv::circle centres

    /// Skin-like textured background with dark discs drawn by OpenCV at 8x and area-resized,
    /// so every edge pixel carries its exact coverage.
    fn synth(w: i32, h: i32, dots: &[(f64, f64, f64, u8)], texture: bool) -> GrayImage {
        synth_on(w, h, dots, texture, 170.0)
    }

    /// [`synth`] on skin of grey level `skin` (texture scaled with it).
    fn synth_on(w: i32, h: i32, dots: &[(f64, f64, f64, u8)], texture: bool, skin: f64) -> GrayImage {
        let mut big = Mat::new_rows_cols_with_default(h * SS, w * SS, CV_8UC1, Scalar::all(skin)).expect("alloc");
        if texture {
            // Smooth shading plus soft pores: large, faint features the black-hat must ignore.
            let data = big.data_typed_mut::<u8>().expect("data");
            for y in 0..(h * SS) as usize {
                for x in 0..(w * SS) as usize {
                    let (fx, fy) = (x as f64 / SS as f64, y as f64 / SS as f64);
                    let k = skin / 170.0;
                    let v =
                        skin + k * (25.0 * (fx / 90.0).sin() * (fy / 70.0).cos() + 4.0 * (fx / 9.0 + fy / 13.0).sin());
                    data[y * (w * SS) as usize + x] = v.clamp(0.0, 255.0) as u8;
                }
            }
        }
        for (cx, cy, r, level) in dots {
            let scale = (SS << SHIFT) as f64;
            let c = Point::new(
                ((cx + 0.5) * scale - (1 << SHIFT) as f64 * 0.5).round() as i32,
                ((cy + 0.5) * scale - (1 << SHIFT) as f64 * 0.5).round() as i32,
            );
            imgproc::circle(
                &mut big,
                c,
                (r * scale).round() as i32,
                Scalar::all(*level as f64),
                -1,
                imgproc::LINE_8,
                SHIFT,
            )
            .expect("circle");
        }
        let mut small = Mat::default();
        imgproc::resize(&big, &mut small, Size::new(w, h), 0.0, 0.0, imgproc::INTER_AREA).expect("resize");
        mat_to_gray(&small, "synthetic").expect("gray")
    }

    /// Dot centres on a jittered grid, deterministic.
    fn dot_field(w: i32, h: i32, spacing: f64, r: f64) -> Vec<(f64, f64, f64, u8)> {
        crate::test_noise::jittered_grid(f64::from(w), f64::from(h), spacing, 0)
            .into_iter()
            .map(|[x, y]| (x, y, r, 60))
            .collect()
    }

    fn match_error(found: &[DotDetection], truth: &[(f64, f64, f64, u8)]) -> (usize, f64) {
        let mut matched = 0;
        let mut worst = 0.0f64;
        for t in truth {
            let best = found
                .iter()
                .map(|d| ((d.pixel[0] - t.0).powi(2) + (d.pixel[1] - t.1).powi(2)).sqrt())
                .fold(f64::INFINITY, f64::min);
            if best < 1.0 {
                matched += 1;
                worst = worst.max(best);
            }
        }
        (matched, worst)
    }

    #[test]
    fn clean_dots_are_found_with_subpixel_accuracy() {
        let truth = dot_field(400, 300, 28.0, 3.75);
        let img = synth(400, 300, &truth, true);
        let cfg = VisionConfig::default();
        let det = detect_dark_dots(&img, 7.5, &cfg, "synthetic").expect("detect");
        assert_eq!(det.dots.len(), truth.len(), "one detection per dot");
        let (matched, worst) = match_error(&det.dots, &truth);
        assert_eq!(matched, truth.len());
        assert!(worst < 0.1, "worst centroid error {worst} px");
        for d in &det.dots {
            assert!((d.diameter_px - 7.5).abs() < 1.0, "diameter {}", d.diameter_px);
            assert!(d.darkness > 0.4 && d.darkness < 0.8, "darkness {}", d.darkness);
        }
    }

    #[test]
    fn noisy_dots_are_found_robustly() {
        let truth = dot_field(400, 300, 28.0, 3.75);
        let img = synth(400, 300, &truth, true);
        // Deterministic noise, sigma ~ 6 grey levels.
        let mut noisy = img.clone();
        let mut s = 0x2545_f491_u64;
        for p in noisy.data.iter_mut() {
            let acc = crate::test_noise::sum_of_four_uniforms(&mut s, 1000);
            *p = (*p as f64 + acc * 21.0).round().clamp(0.0, 255.0) as u8;
        }
        let det = detect_dark_dots(&noisy, 7.5, &VisionConfig::default(), "noisy").expect("detect");
        let (matched, worst) = match_error(&det.dots, &truth);
        assert!(matched as f64 >= 0.98 * truth.len() as f64, "matched {matched}/{}", truth.len());
        assert!(det.dots.len() <= truth.len() + 2, "false positives: {} found for {}", det.dots.len(), truth.len());
        assert!(worst < 0.5, "worst {worst}");
    }

    #[test]
    fn blank_skin_has_no_dots_and_empty_image_is_an_error() {
        let img = synth(200, 150, &[], true);
        let det = detect_dark_dots(&img, 7.5, &VisionConfig::default(), "blank").expect("detect");
        assert!(det.dots.is_empty(), "{:?}", det.dots);
        let empty = GrayImage { width: 0, height: 0, data: vec![] };
        let err = detect_dark_dots(&empty, 7.5, &VisionConfig::default(), "tile 3").expect_err("empty");
        assert!(err.to_string().contains("tile 3"), "{err}");
    }

    #[test]
    fn cut_dots_at_the_border_and_long_strands_are_rejected() {
        let mut img = synth(200, 150, &[(1.0, 70.0, 3.75, 60), (100.0, 75.0, 3.75, 60)], false);
        // A hair strand (line) is not a follicle.
        let mut m = Mat::new_rows_cols_with_data::<u8>(150, 200, &img.data).expect("wrap").try_clone().expect("clone");
        imgproc::line(&mut m, Point::new(20, 20), Point::new(80, 30), Scalar::all(60.0), 3, imgproc::LINE_8, 0)
            .expect("line");
        img = mat_to_gray(&m, "strand").expect("gray");
        let det = detect_dark_dots(&img, 7.5, &VisionConfig::default(), "border").expect("detect");
        assert_eq!(det.dots.len(), 1, "{:?}", det.dots);
        assert!((det.dots[0].pixel[0] - 100.0).abs() < 0.1);
    }

    /// Dot field with every dot drawn at grey `level`.
    fn with_level(dots: Vec<(f64, f64, f64, u8)>, level: u8) -> Vec<(f64, f64, f64, u8)> {
        dots.into_iter().map(|(x, y, r, _)| (x, y, r, level)).collect()
    }

    #[test]
    fn light_stubble_on_dark_skin_is_found_and_pigment_stays_dark() {
        // Blond stubble (lighter) on Fitzpatrick VI-like skin, and a row of pigment dots
        // (darker) in between.
        let light = with_level(dot_field(400, 300, 28.0, 3.75), 125);
        let dark: Vec<_> = (0..6).map(|k| (34.0 + 56.0 * k as f64, 148.0, 3.75, 25u8)).collect();
        let all: Vec<_> = light.iter().chain(&dark).copied().collect();
        let img = synth_on(400, 300, &all, true, 75.0);
        let cfg = VisionConfig::default();
        let det = detect_dots(&img, 7.5, &cfg, "blond").expect("detect");
        assert!(det.light_kept);
        let lights: Vec<DotDetection> = det.dots.iter().filter(|d| d.polarity == Polarity::Light).copied().collect();
        let darks: Vec<DotDetection> = det.dots.iter().filter(|d| d.polarity == Polarity::Dark).copied().collect();
        let (matched, worst) = match_error(&lights, &light);
        assert_eq!(matched, light.len(), "light dots found {} of {}", lights.len(), light.len());
        assert!(worst < 0.1, "worst light centroid error {worst} px");
        let (matched, worst) = match_error(&darks, &dark);
        assert_eq!((matched, darks.len()), (dark.len(), dark.len()), "{darks:?}");
        // Light neighbours within the kernel lift the closing a little.
        assert!(worst < 0.2, "worst dark centroid error {worst} px");
        for d in &lights {
            assert!((d.diameter_px - 7.5).abs() < 1.0, "diameter {}", d.diameter_px);
        }
        // The dark-only detector does not see the stubble at all.
        let dark_only = detect_dark_dots(&img, 7.5, &cfg, "blond").expect("detect");
        assert_eq!(dark_only.dots.len(), dark.len());
        assert!(dark_only.dots.iter().all(|d| d.polarity == Polarity::Dark));
    }

    #[test]
    fn gaps_between_dense_dark_follicles_are_not_light_dots() {
        // Dense dark hair: follicles 16 px apart with a 19 px kernel, so the skin between
        // them is lighter than the opening (a light blob to the top-hat), but no lighter
        // than the skin around it.
        let truth = dot_field(400, 300, 16.0, 3.75);
        let img = synth(400, 300, &truth, true);
        let det =
            detect_dots_with(&img, 7.5, &VisionConfig::default(), FolliclePolarity::Both, "dense").expect("detect");
        let lights = det.dots.iter().filter(|d| d.polarity == Polarity::Light).count();
        assert_eq!(lights, 0, "gaps reported as light dots");
        let (matched, _) = match_error(&det.dots, &truth);
        assert!(matched as f64 >= 0.95 * truth.len() as f64, "matched {matched}/{}", truth.len());
        // And `auto` keeps the light pass off on such an image.
        let auto = detect_dots(&img, 7.5, &VisionConfig::default(), "dense").expect("detect");
        assert!(!auto.light_kept);
    }

    #[test]
    fn downsampled_detection_of_a_magnified_close_up_matches_the_truth() {
        // The same dot field at 4x magnification: the detector works on a 4x smaller copy
        // (follicle 30 px > detect_max_diameter_px) and maps centroids back.
        let truth: Vec<_> = dot_field(400, 300, 28.0, 3.75)
            .into_iter()
            .map(|(x, y, r, l)| (4.0 * x + 1.5, 4.0 * y + 1.5, 4.0 * r, l))
            .collect();
        let img = synth_on(1600, 1200, &truth, false, 170.0);
        let det = detect_dots(&img, 30.0, &VisionConfig::default(), "magnified").expect("detect");
        assert_eq!(det.dots.len(), truth.len());
        let (matched, worst) = match_error(&det.dots, &truth);
        assert_eq!(matched, truth.len());
        // 0.1 px of the 4x smaller image.
        assert!(worst < 0.4, "worst centroid error {worst} px (a follicle is 30 px)");
        for d in &det.dots {
            assert!((d.diameter_px - 30.0).abs() < 4.0, "diameter {}", d.diameter_px);
        }
        assert_eq!((det.dark_mask.width, det.dark_mask.height), (1600, 1200));
    }

    #[test]
    fn a_few_light_follicles_among_many_pigment_dots_are_kept() {
        // A treated crown of a blond patient on dark skin: forty pigment dots, five follicles.
        let mut dots: Vec<_> = with_level(dot_field(400, 300, 28.0, 3.75), 25).into_iter().take(40).collect();
        let light: Vec<_> = (0..5).map(|k| (48.0 + 70.0 * k as f64, 262.0, 3.75, 125u8)).collect();
        dots.extend(&light);
        let img = synth_on(400, 300, &dots, true, 75.0);
        let det = detect_dots(&img, 7.5, &VisionConfig::default(), "treated").expect("detect");
        assert!(det.light_kept);
        let lights: Vec<DotDetection> = det.dots.iter().filter(|d| d.polarity == Polarity::Light).copied().collect();
        let (matched, _) = match_error(&lights, &light);
        assert_eq!((matched, lights.len()), (5, 5), "{lights:?}");
        assert_eq!(det.dots.len() - lights.len(), 40);
    }
}

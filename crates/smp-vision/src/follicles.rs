//! Dark-dot detection in one grey tile: follicles of shaved hair (and earlier pigment dots)
//! are small dark discs on lighter skin.
//!
//! Black-hat (closing minus image) with an elliptical kernel a few times the follicle size
//! flattens the skin's shading and texture and leaves each dot as a positive peak whose
//! height is its contrast; a noise-relative threshold, connected components with an
//! area/shape filter, and an intensity-weighted centroid give sub-pixel positions.

use opencv::core::{Mat, Point, Size, BORDER_REPLICATE, CV_32S};
use opencv::imgproc;
use opencv::prelude::*;
use smp_core::image::GrayImage;

use crate::cv::{gray_mat, mat_to_gray};
use crate::error::{cv_err, VisionError};
use crate::VisionConfig;

/// One dark dot found in an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DotDetection {
    /// Intensity-weighted centroid, pixels (distorted image coordinates, x right, y down).
    pub pixel: [f64; 2],
    /// Equivalent disc diameter from the black-hat mass over its peak, pixels.
    pub diameter_px: f64,
    /// Peak black-hat value: how much darker than the surrounding skin, grey levels.
    pub contrast_levels: f64,
    /// Contrast relative to the surrounding skin brightness: 0 = skin, 1 = black.
    pub darkness: f64,
}

/// Detections of one image plus the figures a caller reports when they look wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct DotDetections {
    pub dots: Vec<DotDetection>,
    /// Robust noise of the black-hat image (1.4826 MAD), grey levels.
    pub noise_sigma: f64,
    /// Threshold used, grey levels.
    pub threshold_levels: f64,
    /// Pixels darker than their surroundings by half the threshold (dots and their rims),
    /// 255 = dark; used to keep follicles out of skin-colour samples.
    pub dark_mask: GrayImage,
    /// Brightness of the skin with the dots closed away (the closing), mean grey level.
    pub mean_skin_level: f64,
}

/// Detects dark dots of about `diameter_px` in `gray`. `label` names the view in errors.
pub fn detect_dark_dots(
    gray: &GrayImage,
    diameter_px: f64,
    cfg: &VisionConfig,
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
    let d_px = diameter_px.max(1.0);
    let src = gray_mat(gray, label)?;

    let mut k = (cfg.blackhat_kernel_factor * d_px).round() as i32;
    k = k.max(3) | 1;
    let kernel = imgproc::get_structuring_element(imgproc::MORPH_ELLIPSE, Size::new(k, k), Point::new(-1, -1))
        .map_err(cv_err("building the black-hat kernel", label))?;
    let mut closed = Mat::default();
    let border = imgproc::morphology_default_border_value().map_err(cv_err("black-hat border", label))?;
    imgproc::morphology_ex(
        &src,
        &mut closed,
        imgproc::MORPH_CLOSE,
        &kernel,
        Point::new(-1, -1),
        1,
        BORDER_REPLICATE,
        border,
    )
    .map_err(cv_err("closing (black-hat)", label))?;
    let closed_px = closed.data_typed::<u8>().map_err(cv_err("reading the closing", label))?;
    let bh: Vec<u8> = closed_px.iter().zip(&gray.data).map(|(c, g)| c.saturating_sub(*g)).collect();

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
    let threshold = (median as f64 + cfg.detect_sigma * sigma).max(cfg.min_contrast_levels);
    // Weights start at the noise floor so that noise around a dot does not pull its centroid.
    let floor = median as f64 + sigma;

    let mut bin_data = vec![0u8; w * h];
    let mut dark = vec![0u8; w * h];
    for i in 0..w * h {
        let v = bh[i] as f64;
        if v > threshold {
            bin_data[i] = 255;
        }
        if v > 0.5 * threshold {
            dark[i] = 255;
        }
    }
    let bin = GrayImage { width: gray.width, height: gray.height, data: bin_data };
    let bin_mat = gray_mat(&bin, label)?;
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
        if area < min_area.max(1.0) || area > max_area {
            continue;
        }
        let aspect = bw.max(bhh) as f64 / bw.min(bhh).max(1) as f64;
        if aspect > cfg.max_aspect {
            continue;
        }
        let b = cfg.border_px;
        if bx < b || by < b || bx + bw > w as i32 - b || by + bhh > h as i32 - b {
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
        let ci = (cy.round() as usize).min(h - 1) * w + (cx.round() as usize).min(w - 1);
        let skin = closed_px[ci] as f64;
        let darkness = if skin > 0.0 { (peak / skin).clamp(0.0, 1.0) } else { 0.0 };
        dots.push(DotDetection {
            pixel: [cx, cy],
            diameter_px: 2.0 * (area_eq / std::f64::consts::PI).sqrt(),
            contrast_levels: peak,
            darkness,
        });
    }
    let mean_skin_level = closed_px.iter().map(|v| *v as f64).sum::<f64>() / (w * h) as f64;

    // Grow the dark mask by a pixel so the anti-aliased rims of dots are excluded too.
    let dark_img = GrayImage { width: gray.width, height: gray.height, data: dark };
    let dark_mat = gray_mat(&dark_img, label)?;
    let mut grown = Mat::default();
    let k3 = imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(3, 3), Point::new(-1, -1))
        .map_err(cv_err("building the mask kernel", label))?;
    imgproc::dilate(&dark_mat, &mut grown, &k3, Point::new(-1, -1), 1, BORDER_REPLICATE, border)
        .map_err(cv_err("dilating the dark mask", label))?;
    let dark_mask = mat_to_gray(&grown, label)?;

    Ok(DotDetections { dots, noise_sigma: sigma, threshold_levels: threshold, dark_mask, mean_skin_level })
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
        let mut big = Mat::new_rows_cols_with_default(h * SS, w * SS, CV_8UC1, Scalar::all(170.0)).expect("alloc");
        if texture {
            // Smooth shading plus soft pores: large, faint features the black-hat must ignore.
            let data = big.data_typed_mut::<u8>().expect("data");
            for y in 0..(h * SS) as usize {
                for x in 0..(w * SS) as usize {
                    let (fx, fy) = (x as f64 / SS as f64, y as f64 / SS as f64);
                    let v = 170.0 + 25.0 * (fx / 90.0).sin() * (fy / 70.0).cos() + 4.0 * (fx / 9.0 + fy / 13.0).sin();
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
        let mut out = Vec::new();
        let mut k = 0u32;
        let mut y = 20.0;
        while y < h as f64 - 20.0 {
            let mut x = 20.0;
            while x < w as f64 - 20.0 {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let jx = ((k >> 8) % 1000) as f64 / 1000.0 * 6.0 - 3.0;
                let jy = ((k >> 18) % 1000) as f64 / 1000.0 * 6.0 - 3.0;
                out.push((x + jx, y + jy, r, 60));
                x += spacing;
            }
            y += spacing;
        }
        out
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
            let mut acc = 0.0;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                acc += (s % 1000) as f64 / 1000.0 - 0.5;
            }
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
}

//! Detection threshold of a follicle pass, per skin level: the noise threshold, with a
//! floor that is a fixed *fraction* of the skin's brightness rather than a fixed number of
//! grey levels.
//!
//! Why: a follicle's contrast is a reflectance ratio, so in grey levels it scales with the
//! brightness of the skin around it. The detector's floor of `min_contrast_levels` (12) is
//! 7 % of fair skin (grey ~170) but 20 % of Fitzpatrick VI skin (grey ~60). Measured on
//! random patient 2005 (Fitzpatrick VI, brown hair; `cargo run --release -p smp-vision
//! --example dark_skin_probe -- 2005`): the follicles' ring-minus-centre contrast is
//! 10.4 ± 1.0 grey levels (R 14.7, G 9.3, B 5.0) on skin of grey 60, their black-hat peak
//! 16.1 ± 1.2 (detected) and 14.3 ± 1.0 (missed), while the black-hat image's robust noise
//! is 1.48 levels (5 sigma = 7.4). The fixed floor of 12 cut each faint follicle down to a
//! few pixels, which the area gate then dropped: 1,659 of the 9,503 follicles seen face-on
//! failed on area, 46 on the threshold itself; with this floor 44 do, and no detection
//! appears that matches no true follicle.
//!
//! The floor is `min(min_contrast_levels, min_contrast_fraction x skin)`: it never rises
//! above the fixed floor (fair skin detects exactly as before) and drops with the skin, until
//! the noise threshold (`median + detect_sigma x sigma` of the contrast image) takes over.
//! The skin level is the pass's own morphological background (the closing for dark dots,
//! the opening for light ones) at each pixel, so shading across a tile is followed too.
//! Below [`BACKDROP_MAX_LEVEL`] the background is backdrop or deep shadow, not skin, and
//! keeps the fixed floor.

use crate::VisionConfig;

/// Background levels below this are backdrop or shadow (no skin to scale by); they keep
/// the fixed floor `min_contrast_levels`.
pub(crate) const BACKDROP_MAX_LEVEL: u8 = 30;

/// Thresholds of one pass for every background (skin) level 0-255.
pub(crate) struct ThresholdLut {
    /// A contrast pixel `v` over background `b` is on a dot when `v > hi[b]`.
    pub hi: [u8; 256],
    /// ... and on a dot or its rim (the pass's mask) when `v > lo[b]` (half the threshold).
    pub lo: [u8; 256],
    /// Threshold (grey levels, unrounded) at each background level.
    pub levels: [f64; 256],
}

impl ThresholdLut {
    /// `noise_threshold_levels`: the pass's noise threshold (median + k sigma of its
    /// contrast image), grey levels.
    pub(crate) fn new(noise_threshold_levels: f64, cfg: &VisionConfig) -> ThresholdLut {
        let fixed = cfg.min_contrast_levels;
        let fraction = if cfg.min_contrast_fraction.is_finite() { cfg.min_contrast_fraction.max(0.0) } else { 0.0 };
        let mut levels = [0.0; 256];
        let mut hi = [0u8; 256];
        let mut lo = [0u8; 256];
        for b in 0..256usize {
            let floor = if b < usize::from(BACKDROP_MAX_LEVEL) { fixed } else { fixed.min(fraction * b as f64) };
            let t = noise_threshold_levels.max(floor);
            levels[b] = t;
            // v > t  <=>  v > floor(t) for integer v.
            hi[b] = t.floor().clamp(0.0, 255.0) as u8;
            lo[b] = (0.5 * t).floor().clamp(0.0, 255.0) as u8;
        }
        ThresholdLut { hi, lo, levels }
    }

    /// Threshold at the median skin level of `background` (levels at or above
    /// [`BACKDROP_MAX_LEVEL`]; the fixed-floor threshold when there is no skin), for reports.
    pub(crate) fn at_median_skin(&self, background: &[u8]) -> f64 {
        let mut hist = [0usize; 256];
        for b in background {
            hist[*b as usize] += 1;
        }
        let skin: usize = hist[usize::from(BACKDROP_MAX_LEVEL)..].iter().sum();
        if skin == 0 {
            return self.levels[0];
        }
        let mut acc = 0;
        for (b, c) in hist.iter().enumerate().skip(usize::from(BACKDROP_MAX_LEVEL)) {
            acc += c;
            if 2 * acc >= skin {
                return self.levels[b];
            }
        }
        self.levels[255]
    }
}

/// A connected component of a pass's above-threshold pixels, read back in the contrast image.
///
/// The area gate compares a blob's above-threshold area with the expected follicle area.
/// A follicle whose peak clears the threshold by little (dark skin, a follicle seen at 50-70°
/// from its normal, foreshortened and in the lamp's fall-off) keeps only its few brightest
/// pixels above it: on patient 2005 at up to 70° (`MAX_VIEW_DEG=70` for the probe), 454 of
/// 11,041 follicles failed the area gate with a black-hat peak of 12.7 levels against a
/// threshold of 10.4 (contrast against the skin ring 6.7 levels). Their extent at half the
/// threshold (the pass's mask level) is their real size. Noise does not pass this way: a
/// noise peak above the threshold is a pixel or two, and the pixels around it exceed half
/// the threshold (~2.5 sigma) only a percent of the time.
pub(crate) struct FaintBlob<'a> {
    /// The pass's contrast image (black-hat or top-hat), grey levels.
    pub contrast: &'a [u8],
    /// Its morphological background (the skin level), which selects the threshold.
    pub background: &'a [u8],
    /// Connected-component labels of the above-threshold pixels (0 = none).
    pub labels: &'a [i32],
    /// Their OpenCV stats (5 per label; the area is the last).
    pub stats: &'a [i32],
    /// Smallest area (pixels) a blob passes the area gate with on its own.
    pub min_area_px: f64,
    pub w: usize,
    pub h: usize,
}

impl FaintBlob<'_> {
    /// Pixels within a follicle radius (half of `d_px`, plus one) of the centre of blob
    /// `lab`'s bounding box `[x, y, w, h]` that exceed half the local threshold and belong
    /// to no other blob; 0 when, within a follicle diameter, another blob passes the area gate
    /// on its own or holds a higher contrast (a follicle split in two above the threshold
    /// is claimed once: by its large part, else by its peak's).
    pub(crate) fn area_at_half_threshold(&self, lab: i32, box_px: [i32; 4], d_px: f64, lut: &ThresholdLut) -> usize {
        let [bx, by, bw, bh] = box_px;
        let (cx, cy) = (f64::from(bx) + 0.5 * f64::from(bw - 1), f64::from(by) + 0.5 * f64::from(bh - 1));
        let r = 0.5 * d_px + 1.0;
        let r_claim = d_px.max(r);
        let window = |radius: f64| {
            let reach = radius.ceil() as i64;
            let (x0, x1) = ((cx.round() as i64 - reach).max(0), (cx.round() as i64 + reach).min(self.w as i64 - 1));
            let (y0, y1) = ((cy.round() as i64 - reach).max(0), (cy.round() as i64 + reach).min(self.h as i64 - 1));
            (x0, x1, y0, y1)
        };
        // First the area (cheap, and most noise blobs stop here), then the claim.
        let (x0, x1, y0, y1) = window(r);
        let mut n = 0;
        for y in y0..=y1 {
            for x in x0..=x1 {
                let i = y as usize * self.w + x as usize;
                let l = self.labels[i];
                if (l == 0 || l == lab)
                    && self.contrast[i] > lut.lo[self.background[i] as usize]
                    && (x as f64 - cx).hypot(y as f64 - cy) <= r
                {
                    n += 1;
                }
            }
        }
        if (n as f64) < self.min_area_px {
            return n;
        }
        let (mut peak, mut peak_label) = (0u8, lab);
        let (x0, x1, y0, y1) = window(r_claim);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let i = y as usize * self.w + x as usize;
                let (l, v) = (self.labels[i], self.contrast[i]);
                if l == 0 || (x as f64 - cx).hypot(y as f64 - cy) > r_claim {
                    continue;
                }
                if l != lab && self.area(l) >= self.min_area_px {
                    return 0;
                }
                if v > peak || (v == peak && l < peak_label) {
                    (peak, peak_label) = (v, l);
                }
            }
        }
        if peak_label == lab {
            n
        } else {
            0
        }
    }

    fn area(&self, l: i32) -> f64 {
        self.stats.get(l as usize * 5 + 4).map_or(0.0, |a| f64::from(*a))
    }
}

/// Steepest view (angle between the skin normal and the direction to the camera) from
/// which a tile's detection is placed on the map, degrees. Beyond it a 0.3 mm follicle is a
/// sliver a pixel or two wide whose depth and position are unreliable: with the thresholds
/// above, the detector finds such slivers at the silhouette of a tile, and on random
/// patients 1002 (Norwood 7) and 2004 (Norwood 6) every natural follicle of the map farther
/// than 0.3 mm from any true follicle (11 and 4; each one a true follicle in its tile) was
/// seen at 75-82° (`MAP=1` with the probe). `smp eval vision` scores follicles seen within
/// 70°, so this drops nothing it counts; a tile that sees a point this obliquely does not
/// own it either, so a better view of the same follicle places it. The cut trades the
/// Norwood 7 crown's strays (0 at 77°, 4 at 78°, 9 at 80°) against the density the region
/// grid sees at the scan's edge (region IoU of patient 1012: 0.7945 without the cut, 0.7942
/// at 80°, 0.7912 at 78°, 0.7881 at 77°, 0.7805 at 75°).
pub(crate) const MAX_PLACEMENT_VIEW_DEG: f64 = 77.0;

/// Whether the camera at `patch_from_camera` sees the skin point `p_patch` (patch frame)
/// more obliquely than [`MAX_PLACEMENT_VIEW_DEG`] from the fitted surface's normal.
pub(crate) fn seen_too_obliquely(
    patch: &smp_core::geometry::SurfacePatch,
    patch_from_camera: &nalgebra::Isometry3<f64>,
    p_patch: &nalgebra::Point3<f64>,
) -> bool {
    let n = patch.normal_patch(p_patch.x, p_patch.y);
    match (patch_from_camera.translation.vector - p_patch.coords).try_normalize(1e-9) {
        Some(to_camera) => n.dot(&to_camera) < MAX_PLACEMENT_VIEW_DEG.to_radians().cos(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follicles::{detect_dark_dots, detect_dots};
    use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion};
    use smp_core::geometry::SurfacePatch;
    use smp_core::image::GrayImage;

    #[test]
    fn a_grazing_view_does_not_place_follicles() {
        // Flat skin z = 0 (degree 1: 3 coefficients, all zero).
        let patch = SurfacePatch {
            head_from_patch: Isometry3::identity(),
            degree: 1,
            coefficients: vec![0.0; 3],
            scale_mm: 10.0,
            x_range_mm: [-50.0, 50.0],
            y_range_mm: [-50.0, 50.0],
            fit_rms_mm: 0.0,
        };
        let p = Point3::origin();
        let camera_at = |deg: f64| {
            let d = deg.to_radians();
            Isometry3::from_parts(Translation3::new(80.0 * d.sin(), 0.0, 80.0 * d.cos()), UnitQuaternion::identity())
        };
        assert!(!seen_too_obliquely(&patch, &camera_at(0.0), &p));
        assert!(!seen_too_obliquely(&patch, &camera_at(70.0), &p));
        assert!(seen_too_obliquely(&patch, &camera_at(78.0), &p));
        // From below the skin: not a view at all.
        assert!(seen_too_obliquely(&patch, &camera_at(180.0), &p));
    }

    #[test]
    fn floor_scales_with_the_skin_and_never_rises_above_the_fixed_one() {
        let cfg = VisionConfig::default();
        let lut = ThresholdLut::new(7.0, &cfg);
        // Fair skin: the fixed floor, as before.
        assert_eq!(lut.levels[200], cfg.min_contrast_levels);
        assert_eq!(lut.levels[180], cfg.min_contrast_levels);
        // Fitzpatrick VI skin: the noise threshold.
        assert_eq!(lut.levels[60], 7.0);
        // Backdrop: the fixed floor.
        assert_eq!(lut.levels[10], cfg.min_contrast_levels);
        // Monotonic in the skin level above the backdrop.
        for b in usize::from(BACKDROP_MAX_LEVEL)..255 {
            assert!(lut.levels[b] <= lut.levels[b + 1]);
            assert!(lut.lo[b] <= lut.hi[b]);
        }
        // A quiet image: the fraction of the skin, not zero.
        let quiet = ThresholdLut::new(0.0, &cfg);
        assert!((quiet.levels[60] - cfg.min_contrast_fraction * 60.0).abs() < 1e-12);
        assert_eq!(quiet.at_median_skin(&[60; 100]), quiet.levels[60]);
        assert_eq!(quiet.at_median_skin(&[0; 10]), cfg.min_contrast_levels);
    }

    /// Deterministic Gaussian-like noise (sum of four uniforms), standard deviation
    /// `sigma_levels`.
    fn add_noise(img: &mut GrayImage, sigma_levels: f64, seed: u64) {
        let mut s = seed | 1;
        // Sum of 4 uniforms on [-0.5, 0.5] has sigma sqrt(4/12) = 0.577.
        let k = sigma_levels / (4.0f64 / 12.0).sqrt();
        for p in img.data.iter_mut() {
            let acc = crate::test_noise::sum_of_four_uniforms(&mut s, 10_000);
            *p = (f64::from(*p) + acc * k).round().clamp(0.0, 255.0) as u8;
        }
    }

    /// Skin of grey `skin` with soft discs (radius `r_px`, Gaussian-ish rim of about a
    /// pixel) `contrast` levels darker at their centre, on a jittered grid `spacing` apart.
    fn faint_field(
        w: usize,
        h: usize,
        skin: f64,
        contrast: f64,
        r_px: f64,
        spacing: f64,
    ) -> (GrayImage, Vec<[f64; 2]>) {
        let centres = crate::test_noise::jittered_grid(w as f64, h as f64, spacing, 7);
        let mut data = vec![0u8; w * h];
        for yy in 0..h {
            for xx in 0..w {
                // Slow shading of +-4 % of the skin.
                let (fx, fy) = (xx as f64, yy as f64);
                let mut v = skin * (1.0 + 0.04 * (fx / 90.0).sin() * (fy / 70.0).cos());
                for c in &centres {
                    let rho = (fx - c[0]).hypot(fy - c[1]);
                    if rho < r_px + 3.0 {
                        // Logistic edge of ~1 px width.
                        let cover = 1.0 / (1.0 + ((rho - r_px) / 0.6).exp());
                        v -= contrast * cover;
                    }
                }
                data[yy * w + xx] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        (GrayImage { width: w as u32, height: h as u32, data }, centres)
    }

    /// Match radius: 0.1 mm at the rig's ~25 px/mm (a third of the evaluation's 0.3 mm).
    const MATCH_PX: f64 = 2.5;

    fn matched(found: &[[f64; 2]], truth: &[[f64; 2]], radius_px: f64) -> usize {
        truth.iter().filter(|t| found.iter().any(|f| (f[0] - t[0]).hypot(f[1] - t[1]) < radius_px)).count()
    }

    /// Brown stubble on Fitzpatrick VI skin as measured on random patient 2005: skin grey
    /// 60, follicles ~8 levels darker at their centre (the faint end), sensor noise ~1.5
    /// levels. With a
    /// fixed floor of 12 levels most are cut to a sliver and dropped; scaled with the skin,
    /// every one is found and nothing else is.
    #[test]
    fn faint_follicles_on_dark_skin_are_found_without_false_positives() {
        let (mut img, truth) = faint_field(400, 300, 60.0, 8.0, 3.0, 24.0);
        add_noise(&mut img, 1.5, 0x9e37_79b9_7f4a_7c15);
        let cfg = VisionConfig::default();
        let det = detect_dark_dots(&img, 6.0, &cfg, "fitz6").expect("detect");
        let found: Vec<[f64; 2]> = det.dots.iter().map(|d| d.pixel).collect();
        let m = matched(&found, &truth, MATCH_PX);
        // The fixed floor alone (a fraction that never binds) misses most of them.
        let fixed = VisionConfig { min_contrast_fraction: 1.0, ..VisionConfig::default() };
        let det_fixed = detect_dark_dots(&img, 6.0, &fixed, "fitz6").expect("detect");
        let found_fixed: Vec<[f64; 2]> = det_fixed.dots.iter().map(|d| d.pixel).collect();
        let m_fixed = matched(&found_fixed, &truth, MATCH_PX);
        let n = truth.len() as f64;
        assert!(m as f64 >= 0.95 * n && (m_fixed as f64) < 0.8 * n, "found {m} (fixed floor {m_fixed}) of {n}");
        let extra: Vec<_> = det
            .dots
            .iter()
            .filter(|d| !truth.iter().any(|t| (d.pixel[0] - t[0]).hypot(d.pixel[1] - t[1]) < MATCH_PX))
            .collect();
        assert!(det.dots.len() <= m, "{} detections for {m} matched follicles: {extra:?}", det.dots.len());
        assert!(det.threshold_levels < cfg.min_contrast_levels, "threshold {}", det.threshold_levels);

        // The same skin without follicles: nothing.
        let (mut blank, _) = faint_field(400, 300, 60.0, 0.0, 3.0, 24.0);
        add_noise(&mut blank, 1.5, 0x1234_5678);
        let det = detect_dots(&blank, 6.0, &cfg, "fitz6 blank").expect("detect");
        assert!(
            det.dots.is_empty(),
            "{} dots on blank dark skin: {:?}",
            det.dots.len(),
            &det.dots[..3.min(det.dots.len())]
        );
    }

    /// Fair skin keeps the fixed floor, and noisy blank skin (fair or dark) yields nothing
    /// through the faint-blob area test.
    #[test]
    fn fair_skin_keeps_the_fixed_floor_and_noise_is_no_dot() {
        let cfg = VisionConfig::default();
        for (skin, noise, seed) in
            [(180.0, 1.5, 0x5555), (180.0, 2.5, 0x7777), (60.0, 2.5, 0x9999), (110.0, 2.0, 0x4242)]
        {
            let (mut img, _) = faint_field(400, 300, skin, 0.0, 3.0, 24.0);
            add_noise(&mut img, noise, seed);
            let det = detect_dots(&img, 6.0, &cfg, "blank").expect("detect");
            if skin > 170.0 {
                assert!(det.threshold_levels >= cfg.min_contrast_levels, "{}", det.threshold_levels);
            }
            assert!(det.dots.is_empty(), "skin {skin} noise {noise}: {} dots", det.dots.len());
        }
    }

    /// A faint follicle split in two above the threshold by noise is reported once.
    #[test]
    fn a_split_faint_follicle_is_one_dot() {
        let (mut img, truth) = faint_field(400, 300, 60.0, 9.0, 3.0, 24.0);
        add_noise(&mut img, 1.5, 0x0bad_cafe);
        let det = detect_dark_dots(&img, 6.0, &VisionConfig::default(), "split").expect("detect");
        for t in &truth {
            let near = det.dots.iter().filter(|d| (d.pixel[0] - t[0]).hypot(d.pixel[1] - t[1]) < 4.0).count();
            let ds: Vec<_> = det.dots.iter().filter(|d| (d.pixel[0] - t[0]).hypot(d.pixel[1] - t[1]) < 4.0).collect();
            assert!(near <= 1, "{near} detections on the follicle at {t:?}: {ds:?}");
        }
        assert!(det.dots.len() <= truth.len(), "{} detections for {} follicles", det.dots.len(), truth.len());
    }
}

//! Natural follicle or earlier SMP dot: each dark dot the detector found is classified from
//! its pixels, so that a follow-up session is planned around the dots already in the skin.
//!
//! What tells them apart (and why these features):
//! - **Hue against the local skin.** A shaved follicle is a hair shaft and its pigment at the
//!   surface: brown-black, absorbing red and blue alike relative to the skin. Healed SMP
//!   pigment sits under the new epidermis, which scatters blue back (the Tyndall effect), so
//!   a dot absorbs much less blue than red. The feature is the ratio of blue to red
//!   absorbance `1 - pixel / skin` in linear light, with the skin measured in a ring around
//!   the dot. For a pigment mixed into the skin it does not depend on how dark the dot is,
//!   which matters because dots fade by very different amounts.
//! - **Edge softness.** A follicle has a sharp rim; pigment diffused in the dermis has none.
//!   The feature is the Gaussian-equivalent blur of the rim, from the width of the band
//!   where the contrast crosses 15-85 % of the dot's core, in mm.
//! - **Diameter.** Follicles are 0.25-0.35 mm; dots 0.3-0.6 mm. Weak alone (they overlap),
//!   useful as a tie-breaker.
//! - **Elongation** (second moments) is measured and reported: hair stubs cut at an angle are
//!   elongated along their growth direction, dots are round. It votes only when clearly
//!   elongated, toward natural.
//!
//! - **Polarity.** Pigment absorbs light: an SMP dot is always darker than the skin. A dot
//!   the detector found *lighter* than the skin (blond or grey stubble on darker skin) is a
//!   follicle whatever its other features say.
//!
//! The evidence is a weighted sum of the features' distances from their decision points
//! ([`DotClassifier`]); positive means SMP dot. Vision never sees the simulator's truth: the
//! decision points follow from the physics above and are checked against the simulator in
//! the tests.

use serde::{Deserialize, Serialize};
use smp_core::image::{GrayImage, RgbImage};
use smp_core::map::FollicleKind;

use crate::follicles::{DotDetection, Polarity};
use crate::rim_noise;

/// Decision points and weights of the follicle / SMP dot classifier.
///
/// Why these defaults: in the simulator's renders of the follow-up patient (feature ranges
/// printed by `cargo test -p smp-vision --release --test on_sim follow_up_on_sim:: -- --ignored
/// --nocapture feature_ablation`) follicles have rims of 0.009-0.026 mm and blue/red
/// ratios of 0.88-1.06, healed dots rims of 0.044-0.076 mm and ratios of 0.59-0.98. The rim
/// is the cue that holds whatever the skin and hair colour, so it carries the most weight;
/// hue is capped at half of it, because a light (grey or blond) hair absorbs blue less than
/// red on warm skin and would read as a dot on hue alone. Elongation votes only beyond what
/// foreshortening makes of a round dot at the scan's most oblique views (~55°).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DotClassifier {
    /// Off: every detection is reported as a natural follicle (first sessions, where there
    /// are no earlier dots to find and a misclassified follicle would only cost spacing).
    pub enabled: bool,
    /// Blue/red absorbance ratio at which the hue evidence is neutral; below it, a dot.
    pub blue_red_neutral: f64,
    /// Ratio change worth one unit of evidence.
    pub blue_red_scale: f64,
    pub blue_red_weight: f64,
    /// Largest evidence for "natural" the hue gives, in units of `blue_red_scale` (on the
    /// "dot" side it is 3). Above the neutral ratio the hue is physics, not a tendency:
    /// pigment under the epidermis absorbs blue *less* than red (Tyndall), so a dot that
    /// absorbs blue far more than red is hair (red or auburn, pheomelanin), however soft its
    /// faint rim reads.
    pub blue_red_natural_max_units: f64,
    /// Rim blur (Gaussian sigma) at which the edge evidence is neutral, mm; above it, a dot.
    pub edge_sigma_neutral_mm: f64,
    pub edge_sigma_scale_mm: f64,
    pub edge_weight: f64,
    /// Diameter at which the size evidence is neutral, mm; above it, a dot.
    pub diameter_neutral_mm: f64,
    pub diameter_scale_mm: f64,
    pub diameter_weight: f64,
    /// Elongation (ratio of the principal axes) above which a blob votes natural (a hair
    /// stub cut at an angle), with this weight per unit above it.
    pub elongation_natural_above: f64,
    pub elongation_weight: f64,
}

impl Default for DotClassifier {
    fn default() -> Self {
        DotClassifier {
            enabled: true,
            blue_red_neutral: 0.9,
            blue_red_scale: 0.05,
            blue_red_weight: 0.5,
            blue_red_natural_max_units: 8.0,
            edge_sigma_neutral_mm: 0.035,
            edge_sigma_scale_mm: 0.008,
            edge_weight: 1.0,
            diameter_neutral_mm: 0.38,
            diameter_scale_mm: 0.05,
            diameter_weight: 0.5,
            elongation_natural_above: 2.5,
            elongation_weight: 1.0,
        }
    }
}

impl DotClassifier {
    /// Rejects scales that would divide by zero and non-finite numbers, naming the field.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let scales = [
            ("dot_classifier.blue_red_scale", self.blue_red_scale),
            ("dot_classifier.edge_sigma_scale_mm", self.edge_sigma_scale_mm),
            ("dot_classifier.diameter_scale_mm", self.diameter_scale_mm),
        ];
        for (field, v) in scales {
            if !(v.is_finite() && v > 0.0) {
                return Err((field, format!("is {v}; it must be a positive number")));
            }
        }
        let finite = [
            ("dot_classifier.blue_red_neutral", self.blue_red_neutral),
            ("dot_classifier.blue_red_weight", self.blue_red_weight),
            ("dot_classifier.blue_red_natural_max_units", self.blue_red_natural_max_units),
            ("dot_classifier.edge_sigma_neutral_mm", self.edge_sigma_neutral_mm),
            ("dot_classifier.edge_weight", self.edge_weight),
            ("dot_classifier.diameter_neutral_mm", self.diameter_neutral_mm),
            ("dot_classifier.diameter_weight", self.diameter_weight),
            ("dot_classifier.elongation_natural_above", self.elongation_natural_above),
            ("dot_classifier.elongation_weight", self.elongation_weight),
        ];
        for (field, v) in finite {
            if !v.is_finite() {
                return Err((field, format!("is {v}; it must be a finite number")));
            }
        }
        Ok(())
    }

    /// Evidence for "SMP dot" (positive) against "natural follicle" (negative). Features
    /// that could not be measured contribute nothing.
    pub fn evidence(&self, f: &DotFeatures) -> f64 {
        let mut e = 0.0;
        if let Some(r) = f.blue_red_absorbance {
            let natural_max = self.blue_red_natural_max_units.max(3.0);
            e += self.blue_red_weight * ((self.blue_red_neutral - r) / self.blue_red_scale).clamp(-natural_max, 3.0);
        }
        if let Some(s) = f.edge_sigma_mm {
            e += self.edge_weight * ((s - self.edge_sigma_neutral_mm) / self.edge_sigma_scale_mm).clamp(-4.0, 4.0);
        }
        if f.diameter_mm.is_finite() {
            e += self.diameter_weight
                * ((f.diameter_mm - self.diameter_neutral_mm) / self.diameter_scale_mm).clamp(-3.0, 3.0);
        }
        if f.elongation.is_finite() && f.elongation > self.elongation_natural_above {
            e -= self.elongation_weight * (f.elongation - self.elongation_natural_above);
        }
        e
    }

    /// The kind the evidence points to; natural when the classifier is off or the dot is
    /// lighter than the skin (pigment never is).
    pub fn classify(&self, f: &DotFeatures) -> FollicleKind {
        if self.enabled && f.polarity == Polarity::Dark && self.evidence(f) > 0.0 {
            FollicleKind::SmpDot
        } else {
            FollicleKind::Natural
        }
    }
}

/// What the classifier measured about one detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DotFeatures {
    /// Blue over red absorbance against the local skin, linear light (about 1 for a
    /// brown-black follicle on fair skin, well below for blue-grey healed pigment); `None`
    /// when the dot is too faint or the skin ring is hidden.
    pub blue_red_absorbance: Option<f64>,
    /// Gaussian-equivalent blur of the rim (band between the 15 % and 85 % contrast levels
    /// over the rim's length), mm; `None` when the rim has too few pixels.
    pub edge_sigma_mm: Option<f64>,
    /// Equivalent disc diameter from the detector, mm.
    pub diameter_mm: f64,
    /// Ratio of the principal axes of the contrast's second moments (1 = round).
    pub elongation: f64,
    /// Darker or lighter than the skin, from the detector.
    pub polarity: Polarity,
}

/// Linear-light value of every 8-bit sRGB level.
fn linear_lut() -> [f32; 256] {
    let mut t = [0f32; 256];
    for (v, out) in t.iter_mut().enumerate() {
        let c = v as f32 / 255.0;
        *out = if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) };
    }
    t
}

/// Fewest skin-ring pixels for a usable skin reference.
const MIN_RING_PX: usize = 12;
/// Fewest rim pixels for an edge estimate.
const MIN_RIM_PX: usize = 8;
/// Red absorbance below which a dot is too faint for a hue ratio (and the absorbance of the
/// rim's channel below which it is too faint for a rim or shape).
const MIN_RED_ABSORBANCE: f64 = 0.04;
/// Largest blue/red absorbance ratio reported.
const MAX_BLUE_RED: f64 = 10.0;
/// The rim and shape are read in the channel of the dot's largest absorbance when it exceeds
/// red's by this factor, else in red (brown-black hair and pigment: ratios 0.6-1.1).
const RIM_CHANNEL_SWITCH: f64 = 1.5;

/// Measures the classifier's features for every detection of one image. `dark_mask` is the
/// detector's mask of pixels darker than their surroundings (dots and rims), kept out of the
/// skin reference; `mm_per_px` is the scale on the skin at the tile's working distance.
pub fn dot_features(rgb: &RgbImage, dark_mask: &GrayImage, dots: &[DotDetection], mm_per_px: f64) -> Vec<DotFeatures> {
    let lut = linear_lut();
    let (w, h) = (rgb.width as i64, rgb.height as i64);
    let sane = rgb.data.len() == (w * h * 3) as usize && dark_mask.data.len() == (w * h) as usize;
    dots.iter()
        .map(|d| {
            let diameter_mm = d.diameter_px * mm_per_px;
            let empty = DotFeatures {
                blue_red_absorbance: None,
                edge_sigma_mm: None,
                diameter_mm,
                elongation: f64::NAN,
                polarity: d.polarity,
            };
            if !(sane && d.pixel[0].is_finite() && d.pixel[1].is_finite() && d.diameter_px.is_finite()) {
                return empty;
            }
            measure(rgb, dark_mask, &lut, d, mm_per_px).unwrap_or(empty)
        })
        .collect()
}

fn measure(
    rgb: &RgbImage,
    mask: &GrayImage,
    lut: &[f32; 256],
    d: &DotDetection,
    mm_per_px: f64,
) -> Option<DotFeatures> {
    let (w, h) = (rgb.width as i64, rgb.height as i64);
    let (cx, cy) = (d.pixel[0], d.pixel[1]);
    let r = (0.5 * d.diameter_px).max(1.0);
    // "Absorbance" of a light dot is its excess over the skin, so the rim and shape
    // measurements below read it the same way.
    let sign = match d.polarity {
        Polarity::Dark => 1.0,
        Polarity::Light => -1.0,
    };
    // Skin ring beyond the softest rim the dots have (a few pixels of blur at ~25 px/mm).
    let (ring_in, ring_out) = (r + 5.0, r + 9.0);
    let reach = ring_out.ceil() as i64 + 1;
    let (x0, x1) = ((cx.round() as i64 - reach).max(0), (cx.round() as i64 + reach).min(w - 1));
    let (y0, y1) = ((cy.round() as i64 - reach).max(0), (cy.round() as i64 + reach).min(h - 1));
    let px = |x: i64, y: i64| {
        let i = ((y * w + x) * 3) as usize;
        [lut[rgb.data[i] as usize], lut[rgb.data[i + 1] as usize], lut[rgb.data[i + 2] as usize]]
    };

    // Skin: per-channel median of the ring, other dots masked out.
    let mut ring: [Vec<f32>; 3] = Default::default();
    for y in y0..=y1 {
        for x in x0..=x1 {
            let rho = (x as f64 - cx).hypot(y as f64 - cy);
            if rho < ring_in || rho > ring_out || mask.data[(y * w + x) as usize] != 0 {
                continue;
            }
            let p = px(x, y);
            for k in 0..3 {
                ring[k].push(p[k]);
            }
        }
    }
    if ring[0].len() < MIN_RING_PX {
        return None;
    }
    let skin = ring.each_mut().map(|v| {
        let mid = v.len() / 2;
        let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
        f64::from(*m)
    });
    if skin.iter().any(|s| *s <= 1e-4) {
        return None;
    }

    // Core: the inner part of the disc, where a follicle covers the pixel fully.
    let core_r = (0.6 * r).max(1.5);
    let (mut core, mut n_core) = ([0.0f64; 3], 0usize);
    // Offsets and per-channel absorbance of every pixel out to just past the rim.
    let mut profile: Vec<(f64, f64, [f64; 3])> = Vec::new();
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let rho = dx.hypot(dy);
            // Out to just past the softest rim: a neighbour 0.5 mm away stays out.
            if rho >= r + 4.0 {
                continue;
            }
            let p = px(x, y);
            let a = [0, 1, 2].map(|k| sign * (1.0 - f64::from(p[k]) / skin[k]));
            if rho <= core_r {
                for k in 0..3 {
                    core[k] += f64::from(p[k]);
                }
                n_core += 1;
            }
            profile.push((dx, dy, a));
        }
    }
    if n_core == 0 {
        return None;
    }
    let absorb = [0, 1, 2].map(|k| sign * (1.0 - core[k] / n_core as f64 / skin[k]));
    // Hue is a pigment cue; a light dot is no pigment.
    // A dot that absorbs blue but hardly any red (red hair on dark skin) has a ratio capped
    // at MAX_BLUE_RED rather than none.
    let blue_red_absorbance = (d.polarity == Polarity::Dark
        && (absorb[0] >= MIN_RED_ABSORBANCE || absorb[2] >= MIN_RED_ABSORBANCE))
        .then(|| (absorb[2] / absorb[0].max(absorb[2] / MAX_BLUE_RED)).min(MAX_BLUE_RED));
    // Rim and shape are read in red (where pigment and brown-black hair absorb most) unless
    // another channel holds clearly more of the dot's contrast: red hair on dark skin
    // absorbs blue two to six times as much as red, and its faint red profile is mostly
    // noise, which reads as a soft (pigment-like) rim.
    let ch = match (0..3).max_by(|a, b| absorb[*a].total_cmp(&absorb[*b])) {
        Some(k) if absorb[k] > RIM_CHANNEL_SWITCH * absorb[0] => k,
        _ => 0,
    };
    let a_core = absorb[ch];

    // Rim: with the profile normalised by the core, the pixels between the 15 % and 85 %
    // levels form a band whose width is 2.07 sigma for a disc blurred by a Gaussian of sigma
    // s. Band area over the 50 % contour's length gives the width whatever the blob's shape
    // (a radial profile would read an elongated stub as a soft rim).
    let edge_sigma_mm = if a_core >= MIN_RED_ABSORBANCE {
        let (mut n15, mut n50, mut n85) = (0usize, 0usize, 0usize);
        for (_, _, a) in &profile {
            let f = a[ch] / a_core;
            n15 += usize::from(f >= 0.15);
            n50 += usize::from(f >= 0.5);
            n85 += usize::from(f >= 0.85);
        }
        let band = n15.saturating_sub(n85);
        let perimeter = 2.0 * (std::f64::consts::PI * n50 as f64).sqrt();
        // Less what noise alone puts in the band (faint dots on dark skin; rim_noise.rs).
        // (in the channel the rim is read in)
        let ring_a = ring[ch].iter().map(|v| sign * (1.0 - f64::from(*v) / skin[ch]));
        let band_clean = rim_noise::noise_corrected_band_px(band, n50, profile.len() - n50, ring_a, a_core);
        (band >= MIN_RIM_PX && perimeter > 0.0).then(|| band_clean / (2.07 * perimeter) * mm_per_px)
    } else {
        None
    };

    // Shape: second moments of the blob proper (above half the core's contrast), so that
    // noise and a neighbour's rim do not make a round dot look elongated.
    let (mut m0, mut mx, mut my, mut mxx, mut myy, mut mxy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (dx, dy, a) in &profile {
        let a = a[ch];
        if a >= 0.5 * a_core {
            m0 += a;
            mx += a * dx;
            my += a * dy;
            mxx += a * dx * dx;
            myy += a * dy * dy;
            mxy += a * dx * dy;
        }
    }
    let elongation = if m0 > 0.0 && a_core >= MIN_RED_ABSORBANCE {
        // Central moments: about the blob's own centroid.
        let (ux, uy) = (mx / m0, my / m0);
        let (a, b, c) = (mxx / m0 - ux * ux, myy / m0 - uy * uy, mxy / m0 - ux * uy);
        let tr = 0.5 * (a + b);
        let disc = (0.25 * (a - b) * (a - b) + c * c).sqrt();
        let (l1, l2) = (tr + disc, (tr - disc).max(1e-9));
        (l1 / l2).sqrt()
    } else {
        f64::NAN
    };
    Some(DotFeatures {
        blue_red_absorbance,
        edge_sigma_mm,
        diameter_mm: d.diameter_px * mm_per_px,
        elongation,
        polarity: d.polarity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(cx, cy, r_px, blur_px, darkness, colour)` of a drawn disc.
    type Disc = (f64, f64, f64, f64, f64, [u8; 3]);

    /// Skin with discs drawn analytically (4x supersampled), mixed in linear light.
    fn scene(w: u32, h: u32, dots: &[Disc]) -> RgbImage {
        let lut = linear_lut();
        let skin = [222u8, 178, 152].map(|v| f64::from(lut[v as usize]));
        let enc = |l: f64| {
            let s = if l <= 0.003_130_8 { 12.92 * l } else { 1.055 * l.powf(1.0 / 2.4) - 0.055 };
            (s * 255.0).round().clamp(0.0, 255.0) as u8
        };
        let mut img = RgbImage::new(w, h, [0, 0, 0]);
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0; 3];
                for sy in 0..4 {
                    for sx in 0..4 {
                        let (u, v) =
                            (x as f64 + (sx as f64 + 0.5) / 4.0 - 0.5, y as f64 + (sy as f64 + 0.5) / 4.0 - 0.5);
                        let mut c = skin;
                        for (cx, cy, r, blur, dark, col) in dots {
                            let rho = (u - cx).hypot(v - cy);
                            let cov = if *blur > 0.0 {
                                1.0 / (1.0 + ((rho - r) / (0.55 * blur)).exp())
                            } else if rho <= *r {
                                1.0
                            } else {
                                0.0
                            };
                            let a = cov * dark;
                            for k in 0..3 {
                                c[k] = c[k] * (1.0 - a) + f64::from(lut[col[k] as usize]) * a;
                            }
                        }
                        for k in 0..3 {
                            acc[k] += c[k] / 16.0;
                        }
                    }
                }
                img.put(x, y, acc.map(enc));
            }
        }
        img
    }

    fn det(x: f64, y: f64, d_px: f64) -> DotDetection {
        DotDetection {
            pixel: [x, y],
            diameter_px: d_px,
            contrast_levels: 50.0,
            darkness: 0.5,
            polarity: Polarity::Dark,
        }
    }

    #[test]
    fn a_sharp_brown_follicle_and_a_soft_blue_grey_dot_are_told_apart() {
        let follicle = (30.0, 30.0, 3.75, 0.0, 0.85, [42, 34, 32]);
        let dot = (80.0, 30.0, 5.5, 1.5, 0.4, [56, 64, 86]);
        let faint = (130.0, 30.0, 5.0, 1.5, 0.15, [56, 64, 86]);
        let img = scene(160, 60, &[follicle, dot, faint]);
        let mask = GrayImage::new(160, 60, 0);
        let dets = [det(30.0, 30.0, 7.5), det(80.0, 30.0, 11.0), det(130.0, 30.0, 10.0)];
        let f = dot_features(&img, &mask, &dets, 0.04);
        let c = DotClassifier::default();
        let br = |i: usize| f[i].blue_red_absorbance.expect("hue");
        let edge = |i: usize| f[i].edge_sigma_mm.expect("edge");
        assert!(br(0) > 0.95, "follicle hue {:?}", f[0]);
        assert!(br(1) < 0.8 && br(2) < 0.85, "dot hue {:?} {:?}", f[1], f[2]);
        assert!(edge(0) < 0.025, "follicle rim {:?}", f[0]);
        assert!((edge(1) - 0.06).abs() < 0.015, "dot rim {:?}", f[1]);
        assert!(f.iter().all(|x| x.elongation < 1.15), "{f:?}");
        assert_eq!(c.classify(&f[0]), FollicleKind::Natural);
        assert_eq!(c.classify(&f[1]), FollicleKind::SmpDot);
        assert_eq!(c.classify(&f[2]), FollicleKind::SmpDot);
        assert_eq!(DotClassifier { enabled: false, ..c }.classify(&f[1]), FollicleKind::Natural);
    }

    #[test]
    fn an_angled_hair_stub_votes_natural_and_bad_input_measures_nothing() {
        // Elongated: three overlapping discs in a row.
        let stub: Vec<_> = (0..3).map(|k| (40.0 + 2.5 * k as f64, 30.0, 3.5, 0.0, 0.85, [42u8, 34, 32])).collect();
        let img = scene(100, 60, &stub);
        let f = dot_features(&img, &GrayImage::new(100, 60, 0), &[det(42.5, 30.0, 9.0)], 0.04);
        assert!(f[0].elongation > 1.5, "{:?}", f[0]);
        assert_eq!(DotClassifier::default().classify(&f[0]), FollicleKind::Natural);
        // A truncated buffer or a NaN position gives empty features, never a panic.
        let mut short = img.clone();
        short.data.truncate(10);
        let f = dot_features(&short, &GrayImage::new(100, 60, 0), &[det(42.5, 30.0, 9.0)], 0.04);
        assert_eq!(f[0].blue_red_absorbance, None);
        let f = dot_features(&img, &GrayImage::new(100, 60, 0), &[det(f64::NAN, 30.0, 9.0)], 0.04);
        assert_eq!(f[0].edge_sigma_mm, None);
        // A detection at the very corner still measures what it can.
        let f = dot_features(&img, &GrayImage::new(100, 60, 0), &[det(0.0, 0.0, 7.0)], 0.04);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn a_dot_lighter_than_the_skin_is_never_pigment() {
        // A soft, large, light disc: size and rim alone would call it a dot.
        let light = (40.0, 30.0, 6.0, 1.5, 0.6, [250u8, 240, 225]);
        let img = scene(80, 60, &[light]);
        let mut d = det(40.0, 30.0, 12.0);
        d.polarity = Polarity::Light;
        let f = dot_features(&img, &GrayImage::new(80, 60, 0), &[d], 0.04);
        assert_eq!(f[0].polarity, Polarity::Light);
        assert_eq!(f[0].blue_red_absorbance, None, "hue is a pigment cue");
        let edge = f[0].edge_sigma_mm.expect("the rim of a light dot is measured too");
        assert!(edge > 0.04, "soft rim {edge}");
        let c = DotClassifier::default();
        assert!(c.evidence(&f[0]) > 0.0, "the features alone point to a dot: {:?}", f[0]);
        assert_eq!(c.classify(&f[0]), FollicleKind::Natural);
    }

    #[test]
    fn a_dot_that_absorbs_blue_but_not_red_is_red_hair_not_pigment() {
        // Red stubble: green and blue absorbed, red not at all. Its hue used to go unmeasured
        // (red absorbance under the floor) and its rim was read in the red channel's noise.
        let red = (40.0, 30.0, 3.75, 0.0, 0.6, [224u8, 110, 60]);
        let img = scene(80, 60, &[red]);
        let f = dot_features(&img, &GrayImage::new(80, 60, 0), &[det(40.0, 30.0, 7.5)], 0.04);
        let br = f[0].blue_red_absorbance.expect("hue from blue when red is not absorbed");
        assert!(br >= 5.0, "{:?}", f[0]);
        let edge = f[0].edge_sigma_mm.expect("rim read in the channel that holds the contrast");
        assert!(edge < 0.025, "sharp rim {edge}");
        let c = DotClassifier::default();
        assert_eq!(c.classify(&f[0]), FollicleKind::Natural);
        // Hue far above the neutral ratio outweighs a rim that reads soft (faint red hair on
        // Fitzpatrick V skin, random patient 1009: ratio ~6, rim ~0.055 mm); the same rim on
        // a blue-grey (pigment) hue is still a dot.
        let soft = DotFeatures {
            blue_red_absorbance: Some(6.0),
            edge_sigma_mm: Some(0.055),
            diameter_mm: 0.3,
            elongation: 1.1,
            polarity: Polarity::Dark,
        };
        assert_eq!(c.classify(&soft), FollicleKind::Natural, "evidence {}", c.evidence(&soft));
        let pigment = DotFeatures { blue_red_absorbance: Some(0.7), ..soft };
        assert_eq!(c.classify(&pigment), FollicleKind::SmpDot);
    }
}

//! Skin tone: median CIE L*a*b* of skin pixels, individual typology angle (ITA°) and the
//! Fitzpatrick class commonly read from it. The pigment choice starts from these figures.
//!
//! Hair-bearing scalp is darker than the same skin bald: the roots under it absorb light,
//! red more than blue, in proportion to how dense the hair is. A scan that sees only
//! hair-bearing skin (Norwood 2) would read the tone several ΔE00 too dark; [`RootShadow`]
//! divides that shadow out given the hair density vision measured there.

use serde::{Deserialize, Serialize};

pub use smp_core::color::{fitzpatrick_from_ita, ita_deg, skin_tone};

/// How the roots under hair-bearing skin darken it: the share of linear light lost at the
/// patient's full hair density, per linear sRGB channel as `at_full_density * tint[k]`,
/// scaling with the density relative to full hair.
///
/// The default is the simulator's model (`smp-sim` render: 20 % at full density, red lost
/// most). On real patients it is a calibration figure (bald against hair-bearing skin of the
/// same patients, e.g. a Norwood 3-5 population), like the rig's light.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RootShadow {
    /// Share of the light (red channel) lost at full hair density, 0..1.
    pub at_full_density: f64,
    /// Relative loss per linear sRGB channel (red, green, blue).
    pub tint: [f64; 3],
    /// Full hair density assumed when the scan saw no hair-bearing skin to measure it on,
    /// follicles per cm².
    pub nominal_full_density_per_cm2: f64,
}

impl Default for RootShadow {
    fn default() -> Self {
        RootShadow { at_full_density: 0.20, tint: [1.0, 0.95, 0.8], nominal_full_density_per_cm2: 75.0 }
    }
}

impl RootShadow {
    /// The Lab of the same skin without the root shadow of hair at `relative_density`
    /// (0 bald, 1 the patient's full hair; clamped to 0..1). Non-finite input or a shadow
    /// that would leave no light returns `lab` unchanged.
    pub fn remove(&self, lab: [f64; 3], relative_density: f64) -> [f64; 3] {
        if !(relative_density.is_finite() && lab.iter().all(|v| v.is_finite())) {
            return lab;
        }
        let d = relative_density.clamp(0.0, 1.0);
        if d == 0.0 {
            return lab; // bald: nothing to divide out (and no round-trip error)
        }
        let rgb = lab_to_linear_srgb(lab);
        let mut out = [0.0; 3];
        for k in 0..3 {
            let kept = 1.0 - self.at_full_density * d * self.tint[k];
            if !(kept.is_finite() && kept > 0.05) {
                return lab;
            }
            out[k] = rgb[k] / kept;
        }
        linear_srgb_to_lab(out)
    }
}

pub use smp_core::color::{lab_to_linear_srgb, linear_srgb_to_lab};

/// Per-channel median of Lab samples; `None` when there are none.
pub fn median_lab(samples: &[[f32; 3]]) -> Option<[f64; 3]> {
    if samples.is_empty() {
        return None;
    }
    let mut out = [0.0; 3];
    let mut ch: Vec<f32> = Vec::with_capacity(samples.len());
    for (c, o) in out.iter_mut().enumerate() {
        ch.clear();
        ch.extend(samples.iter().map(|s| s[c]).filter(|v| v.is_finite()));
        if ch.is_empty() {
            return None;
        }
        let mid = ch.len() / 2;
        let (_, m, _) = ch.select_nth_unstable_by(mid, f32::total_cmp);
        *o = *m as f64;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ita_classes_follow_lightness() {
        // Light skin: L 70, b 15 -> ITA ~53° -> class 2; dark: L 35, b 20 -> ~ -37° -> 6.
        assert_eq!(skin_tone([70.0, 10.0, 15.0]).fitzpatrick, 2);
        assert_eq!(skin_tone([35.0, 10.0, 20.0]).fitzpatrick, 6);
        assert!((ita_deg([60.0, 0.0, 10.0]) - 45.0).abs() < 1e-9);
        let classes: Vec<u8> = [80.0, 50.0, 30.0, 20.0, 0.0, -60.0].iter().map(|a| fitzpatrick_from_ita(*a)).collect();
        assert_eq!(classes, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn lab_and_linear_srgb_round_trip_and_match_the_8_bit_conversion() {
        for rgb in [[222u8, 178, 152], [90, 60, 45], [10, 200, 30], [255, 255, 255]] {
            let lab = smp_core::color::srgb_to_lab(rgb);
            let lin = lab_to_linear_srgb(lab);
            let back = linear_srgb_to_lab(lin);
            for k in 0..3 {
                // The two published matrices are inverses to ~6 digits.
                assert!((back[k] - lab[k]).abs() < 1e-4, "{rgb:?}: {back:?} vs {lab:?}");
            }
            assert_eq!(smp_core::color::lab_to_srgb(lab), rgb);
        }
    }

    #[test]
    fn the_root_shadow_is_divided_out_in_proportion_to_the_density() {
        let shadow = RootShadow::default();
        let skin = smp_core::color::srgb_to_lab([222, 178, 152]);
        // The skin under full hair, as the simulator renders it.
        let lin = lab_to_linear_srgb(skin);
        let dark: Vec<f64> = (0..3).map(|k| lin[k] * (1.0 - 0.2 * shadow.tint[k])).collect();
        let dark_lab = linear_srgb_to_lab([dark[0], dark[1], dark[2]]);
        assert!(smp_core::color::delta_e2000(dark_lab, skin) > 4.0);
        let fixed = shadow.remove(dark_lab, 1.0);
        assert!(smp_core::color::delta_e2000(fixed, skin) < 1e-3, "{fixed:?} vs {skin:?}");
        // Bald skin is left alone; half density is half the correction in linear light.
        assert_eq!(shadow.remove(skin, 0.0), skin);
        let half = shadow.remove(dark_lab, 0.5);
        assert!(half[0] > dark_lab[0] && half[0] < skin[0]);
        assert_eq!(shadow.remove([f64::NAN, 0.0, 0.0], 1.0)[1], 0.0);
    }

    #[test]
    fn median_ignores_outliers() {
        let s = [[60.0, 10.0, 15.0], [61.0, 11.0, 16.0], [10.0, 0.0, 0.0], [62.0, 12.0, 17.0], [59.0, 9.0, 14.0]];
        assert_eq!(median_lab(&s), Some([60.0, 10.0, 15.0]));
        assert_eq!(median_lab(&[]), None);
    }
}

//! Skin tone: median CIE L*a*b* of skin pixels, individual typology angle (ITA°) and the
//! Fitzpatrick class commonly read from it. The pigment choice starts from these figures.

pub use smp_core::color::{fitzpatrick_from_ita, ita_deg, skin_tone};

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
    fn median_ignores_outliers() {
        let s = [[60.0, 10.0, 15.0], [61.0, 11.0, 16.0], [10.0, 0.0, 0.0], [62.0, 12.0, 17.0], [59.0, 9.0, 14.0]];
        assert_eq!(median_lab(&s), Some([60.0, 10.0, 15.0]));
        assert_eq!(median_lab(&[]), None);
    }
}

//! Colour science shared by the simulator, vision and the planner: sRGB to CIE L*a*b*
//! (D65), the individual typology angle (ITA°) and the Fitzpatrick class read from it.
//! One implementation, so that a skin tone the simulator states and one vision measures
//! are comparable number for number.

use crate::map::SkinTone;

/// sRGB (0-255, gamma encoded) to CIE L*a*b* under D65, the standard formulas.
pub fn srgb_to_lab(rgb: [u8; 3]) -> [f64; 3] {
    let lin = |c: u8| {
        let v = c as f64 / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]));
    let x = 0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
    let z = 0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b;
    // D65 reference white.
    let (xn, yn, zn) = (0.950_47, 1.0, 1.088_83);
    let f = |t: f64| {
        const E: f64 = 216.0 / 24389.0;
        const K: f64 = 24389.0 / 27.0;
        if t > E {
            t.cbrt()
        } else {
            (K * t + 16.0) / 116.0
        }
    };
    let (fx, fy, fz) = (f(x / xn), f(y / yn), f(z / zn));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// CIE L*a*b* (D65) to gamma-encoded sRGB, clamped to the gamut: the inverse of
/// [`srgb_to_lab`]; non-finite input reads as 0.
pub fn lab_to_srgb(lab: [f64; 3]) -> [u8; 3] {
    let [l, a, b] = lab.map(|v| if v.is_finite() { v } else { 0.0 });
    let fy = (l + 16.0) / 116.0;
    let fx = fy + a / 500.0;
    let fz = fy - b / 200.0;
    let inv = |t: f64| {
        const E: f64 = 6.0 / 29.0;
        if t > E {
            t * t * t
        } else {
            3.0 * E * E * (t - 4.0 / 29.0)
        }
    };
    let (x, y, z) = (0.950_47 * inv(fx), inv(fy), 1.088_83 * inv(fz));
    let r = 3.240_454_2 * x - 1.537_138_5 * y - 0.498_531_4 * z;
    let g = -0.969_266_0 * x + 1.876_010_8 * y + 0.041_556_0 * z;
    let bl = 0.055_643_4 * x - 0.204_025_9 * y + 1.057_225_2 * z;
    let enc = |c: f64| {
        let c = c.clamp(0.0, 1.0);
        let v = if c <= 0.003_130_8 { 12.92 * c } else { 1.055 * c.powf(1.0 / 2.4) - 0.055 };
        (v * 255.0).round().clamp(0.0, 255.0) as u8
    };
    [enc(r), enc(g), enc(bl)]
}

/// ITA° = atan((L* - 50) / b*) in degrees. `atan2` keeps the angle defined for b* ≈ 0.
pub fn ita_deg(lab: [f64; 3]) -> f64 {
    (lab[0] - 50.0).atan2(lab[2]).to_degrees()
}

/// Fitzpatrick class (1..=6) from ITA° (Chardon's skin colour categories: very light > 55°,
/// light > 41°, intermediate > 28°, tan > 10°, brown > -30°, dark below).
pub fn fitzpatrick_from_ita(ita_deg: f64) -> u8 {
    match ita_deg {
        x if x > 55.0 => 1,
        x if x > 41.0 => 2,
        x if x > 28.0 => 3,
        x if x > 10.0 => 4,
        x if x > -30.0 => 5,
        _ => 6,
    }
}

/// Tone from a Lab value.
pub fn skin_tone(lab: [f64; 3]) -> SkinTone {
    let ita = ita_deg(lab);
    SkinTone { lab, ita_deg: ita, fitzpatrick: fitzpatrick_from_ita(ita) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn white_black_and_a_reference_red() {
        let w = srgb_to_lab([255, 255, 255]);
        assert_abs_diff_eq!(w[0], 100.0, epsilon = 0.01);
        assert_abs_diff_eq!(w[1], 0.0, epsilon = 0.01);
        assert_abs_diff_eq!(w[2], 0.0, epsilon = 0.01);
        let k = srgb_to_lab([0, 0, 0]);
        assert_abs_diff_eq!(k[0], 0.0, epsilon = 1e-9);
        // sRGB (255, 0, 0) is L* 53.24, a* 80.09, b* 67.20 (D65).
        let r = srgb_to_lab([255, 0, 0]);
        assert_abs_diff_eq!(r[0], 53.24, epsilon = 0.05);
        assert_abs_diff_eq!(r[1], 80.09, epsilon = 0.1);
        assert_abs_diff_eq!(r[2], 67.20, epsilon = 0.1);
    }

    #[test]
    fn lighter_skin_has_a_larger_ita_and_a_lower_class() {
        let light = skin_tone(srgb_to_lab([236, 200, 180]));
        let dark = skin_tone(srgb_to_lab([96, 62, 46]));
        assert!(light.ita_deg > dark.ita_deg);
        assert!(light.fitzpatrick < dark.fitzpatrick);
        assert_eq!(fitzpatrick_from_ita(60.0), 1);
        assert_eq!(fitzpatrick_from_ita(-40.0), 6);
    }
}

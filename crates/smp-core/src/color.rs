//! Colour science shared by the simulator, vision and the planner: sRGB to CIE L*a*b*
//! (D65), the individual typology angle (ITA°) and the Fitzpatrick class read from it.
//! One implementation, so that a skin tone the simulator states and one vision measures
//! are comparable number for number.

use crate::map::SkinTone;

/// D65 reference white (XYZ, Y = 1).
const WHITE: [f64; 3] = [0.950_47, 1.0, 1.088_83];

/// CIE's f(t) of the L*a*b* definition.
fn lab_f(t: f64) -> f64 {
    const E: f64 = 216.0 / 24389.0;
    const K: f64 = 24389.0 / 27.0;
    if t > E {
        t.cbrt()
    } else {
        (K * t + 16.0) / 116.0
    }
}

/// The inverse of [`lab_f`].
fn lab_f_inv(t: f64) -> f64 {
    const E: f64 = 6.0 / 29.0;
    if t > E {
        t * t * t
    } else {
        3.0 * E * E * (t - 4.0 / 29.0)
    }
}

/// XYZ relative to the white point (each coordinate divided by the white's) to L*a*b*.
fn lab_from_relative_xyz([x, y, z]: [f64; 3]) -> [f64; 3] {
    let (fx, fy, fz) = (lab_f(x), lab_f(y), lab_f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// L*a*b* to XYZ relative to the white point.
fn relative_xyz_from_lab([l, a, b]: [f64; 3]) -> [f64; 3] {
    let fy = (l + 16.0) / 116.0;
    [lab_f_inv(fy + a / 500.0), lab_f_inv(fy), lab_f_inv(fy - b / 200.0)]
}

/// Linear sRGB (unclamped) to CIE L*a*b* under D65.
pub fn linear_srgb_to_lab([r, g, b]: [f64; 3]) -> [f64; 3] {
    let x = 0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
    let z = 0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b;
    lab_from_relative_xyz([x / WHITE[0], y / WHITE[1], z / WHITE[2]])
}

/// CIE L*a*b* (D65) to linear sRGB (unclamped): the inverse of [`linear_srgb_to_lab`].
pub fn lab_to_linear_srgb(lab: [f64; 3]) -> [f64; 3] {
    let [xr, yr, zr] = relative_xyz_from_lab(lab);
    let (x, y, z) = (WHITE[0] * xr, WHITE[1] * yr, WHITE[2] * zr);
    [
        3.240_454_2 * x - 1.537_138_5 * y - 0.498_531_4 * z,
        -0.969_266_0 * x + 1.876_010_8 * y + 0.041_556_0 * z,
        0.055_643_4 * x - 0.204_025_9 * y + 1.057_225_2 * z,
    ]
}

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
    linear_srgb_to_lab([lin(rgb[0]), lin(rgb[1]), lin(rgb[2])])
}

/// CIE L*a*b* (D65) to gamma-encoded sRGB, clamped to the gamut: the inverse of
/// [`srgb_to_lab`]; non-finite input reads as 0.
pub fn lab_to_srgb(lab: [f64; 3]) -> [u8; 3] {
    let rgb = lab_to_linear_srgb(lab.map(|v| if v.is_finite() { v } else { 0.0 }));
    let enc = |c: f64| {
        let c = c.clamp(0.0, 1.0);
        let v = if c <= 0.003_130_8 { 12.92 * c } else { 1.055 * c.powf(1.0 / 2.4) - 0.055 };
        (v * 255.0).round().clamp(0.0, 255.0) as u8
    };
    rgb.map(enc)
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

/// The close-up camera's light as vision models it: one lamp fixed to the camera plus an
/// ambient share. Shading of a surface point is `ambient + (1 - ambient) * cos` of the angle
/// between its normal and the direction to the lamp: the rig's light is known, so the skin's
/// own colour can be recovered from a shaded pixel ("skin tone under the known light").
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Illumination {
    /// The lamp's position in the camera frame, mm.
    pub lamp_in_camera_mm: [f64; 3],
    /// Share of the light that reaches every surface whatever its orientation (0..1).
    pub ambient: f64,
}

impl Default for Illumination {
    /// The default rig's flange light (the simulator renders with the same values).
    fn default() -> Self {
        Illumination { lamp_in_camera_mm: [15.0, -15.0, 0.0], ambient: 0.3 }
    }
}

impl Illumination {
    /// Fraction of full light (0..1) reaching a surface point with `normal` (unit) from a lamp
    /// at `lamp` (same frame as `point`).
    pub fn lit_fraction(&self, normal: [f64; 3], point: [f64; 3], lamp: [f64; 3]) -> f64 {
        let d = [lamp[0] - point[0], lamp[1] - point[1], lamp[2] - point[2]];
        let len = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let cos = if len > 1e-9 { (normal[0] * d[0] + normal[1] * d[1] + normal[2] * d[2]) / len } else { 1.0 };
        self.ambient + (1.0 - self.ambient) * cos.max(0.0)
    }
}

/// A Lab colour with its linear light multiplied by `gain` (XYZ scaled, D65 white kept):
/// what the same surface would look like under `gain` times the light.
pub fn relight_lab(lab: [f64; 3], gain: f64) -> [f64; 3] {
    // Relative to the white point, so the white point cancels.
    lab_from_relative_xyz(relative_xyz_from_lab(lab).map(|v| v * gain))
}

/// CIEDE2000 colour difference between two CIELAB values (Sharma, Wu and Dalal 2005, with
/// kL = kC = kH = 1). The skin-tone target is stated in it: ΔE00 ≈ 1 is a just-noticeable
/// difference, and pigment choice needs the scan within a few units of the true skin.
pub fn delta_e2000(lab1: [f64; 3], lab2: [f64; 3]) -> f64 {
    use std::f64::consts::PI;
    let [l1, a1, b1] = lab1;
    let [l2, a2, b2] = lab2;
    let c1 = a1.hypot(b1);
    let c2 = a2.hypot(b2);
    let c_mean = 0.5 * (c1 + c2);
    let c7 = c_mean.powi(7);
    let g = 0.5 * (1.0 - (c7 / (c7 + 25f64.powi(7))).sqrt());
    let (a1p, a2p) = ((1.0 + g) * a1, (1.0 + g) * a2);
    let (c1p, c2p) = (a1p.hypot(b1), a2p.hypot(b2));
    let hue = |b: f64, a: f64| {
        if a == 0.0 && b == 0.0 {
            0.0
        } else {
            let h = b.atan2(a).to_degrees();
            if h < 0.0 {
                h + 360.0
            } else {
                h
            }
        }
    };
    let (h1p, h2p) = (hue(b1, a1p), hue(b2, a2p));
    let dl = l2 - l1;
    let dc = c2p - c1p;
    let dh_deg = if c1p * c2p == 0.0 {
        0.0
    } else if (h2p - h1p).abs() <= 180.0 {
        h2p - h1p
    } else if h2p - h1p > 180.0 {
        h2p - h1p - 360.0
    } else {
        h2p - h1p + 360.0
    };
    let dh = 2.0 * (c1p * c2p).sqrt() * (dh_deg.to_radians() / 2.0).sin();
    let l_mean = 0.5 * (l1 + l2);
    let cp_mean = 0.5 * (c1p + c2p);
    let hp_mean = if c1p * c2p == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        0.5 * (h1p + h2p)
    } else if h1p + h2p < 360.0 {
        0.5 * (h1p + h2p + 360.0)
    } else {
        0.5 * (h1p + h2p - 360.0)
    };
    let rad = |d: f64| d * PI / 180.0;
    let t = 1.0 - 0.17 * rad(hp_mean - 30.0).cos()
        + 0.24 * rad(2.0 * hp_mean).cos()
        + 0.32 * rad(3.0 * hp_mean + 6.0).cos()
        - 0.20 * rad(4.0 * hp_mean - 63.0).cos();
    let d_theta = 30.0 * (-((hp_mean - 275.0) / 25.0).powi(2)).exp();
    let cp7 = cp_mean.powi(7);
    let rc = 2.0 * (cp7 / (cp7 + 25f64.powi(7))).sqrt();
    let sl = 1.0 + 0.015 * (l_mean - 50.0).powi(2) / (20.0 + (l_mean - 50.0).powi(2)).sqrt();
    let sc = 1.0 + 0.045 * cp_mean;
    let sh = 1.0 + 0.015 * cp_mean * t;
    let rt = -rad(2.0 * d_theta).sin() * rc;
    ((dl / sl).powi(2) + (dc / sc).powi(2) + (dh / sh).powi(2) + rt * (dc / sc) * (dh / sh)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    /// Pairs from Sharma, Wu and Dalal's CIEDE2000 test data (their table 1), including the
    /// hue wrap-around and near-neutral cases implementations get wrong.
    #[test]
    fn delta_e2000_matches_the_published_test_data() {
        let pairs: [([f64; 3], [f64; 3], f64); 8] = [
            ([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], 2.0425),
            ([50.0, 3.1571, -77.2803], [50.0, 0.0, -82.7485], 2.8615),
            ([50.0, 2.5, 0.0], [50.0, 0.0, -2.5], 4.3065),
            ([50.0, 2.5, 0.0], [73.0, 25.0, -18.0], 27.1492),
            ([50.0, -0.001, 2.49], [50.0, 0.0011, -2.49], 4.7461),
            ([60.2574, -34.0099, 36.2677], [60.4626, -34.1751, 39.4387], 1.2644),
            ([22.7233, 20.0904, -46.694], [23.0331, 14.973, -42.5619], 2.0373),
            ([90.9257, -0.5406, -0.9208], [88.6381, -0.8985, -0.7239], 1.5381),
        ];
        for (a, b, expect) in pairs {
            assert_abs_diff_eq!(delta_e2000(a, b), expect, epsilon = 1e-4);
            assert_abs_diff_eq!(delta_e2000(b, a), expect, epsilon = 1e-4);
        }
        assert_eq!(delta_e2000([40.0, 10.0, 20.0], [40.0, 10.0, 20.0]), 0.0);
    }

    #[test]
    fn relighting_undoes_a_darkening_in_linear_light() {
        let skin = srgb_to_lab([222, 178, 152]);
        let lin = |c: u8| ((c as f64 / 255.0 + 0.055) / 1.055).powf(2.4);
        let enc = |v: f64| ((1.055 * v.powf(1.0 / 2.4) - 0.055) * 255.0).round() as u8;
        let shaded = [222u8, 178, 152].map(|c| enc(lin(c) * 0.6));
        let back = relight_lab(srgb_to_lab(shaded), 1.0 / 0.6);
        assert!(delta_e2000(back, skin) < 0.5, "{back:?} vs {skin:?}");
        assert_abs_diff_eq!(relight_lab(skin, 1.0)[0], skin[0], epsilon = 1e-9);
        let light = Illumination::default();
        assert_abs_diff_eq!(light.lit_fraction([0.0, 0.0, 1.0], [0.0; 3], [0.0, 0.0, 10.0]), 1.0, epsilon = 1e-12);
        assert_abs_diff_eq!(light.lit_fraction([0.0, 0.0, -1.0], [0.0; 3], [0.0, 0.0, 10.0]), 0.3, epsilon = 1e-12);
    }

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

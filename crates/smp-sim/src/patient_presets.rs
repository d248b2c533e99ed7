//! Clinical presets that fill the low-level patient tables from the words a clinic uses:
//! a Norwood-Hamilton stage, a Fitzpatrick skin type (or a measured CIELAB colour), a hair
//! colour, and named scars such as the FUT donor strip.
//!
//! Why presets: a person writing a test patient thinks "Norwood 5, skin type IV, black hair",
//! not in recession degrees and follicle sRGB. The presets turn those words into the numbers
//! the region model and the renderer read ([`crate::patient`]); explicit low-level values in
//! the file always win, so a preset is a starting point, never a cage.
//!
//! Invariant: every function here is pure and deterministic (no randomness): the same words
//! give the same numbers, and the patient's seed alone decides the irregular edges.

use nalgebra::Vector3;
use smp_core::color::srgb_to_lab;
use smp_core::geometry::Ellipsoid;
use smp_core::intake::HairColor;

use crate::patient::{direction_from_angles_deg, CrownSpec, HairlineSpec};

/// One row of the Norwood-Hamilton preset table: what stage N does to the frontal hairline
/// and to the crown. Angles are degrees of polar angle (about 1.6 mm each on an adult head),
/// crown radii are mm along the surface `[front-back, left-right]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NorwoodPreset {
    pub stage: u8,
    pub front_recession_deg: f64,
    pub recession_fade_azimuth_deg: f64,
    pub temple_recession_deg: f64,
    pub crown_centre_polar_deg: f64,
    pub crown_thinning_radii_mm: [f64; 2],
    pub crown_bald_radii_mm: [f64; 2],
}

/// The Norwood-Hamilton table (stages 1-7). Stage 1: a juvenile hairline, barely touched at
/// the temples. 2: temples recede (the "M"). 3: deep temples, the front follows; a thinning
/// spot appears at the vertex (the common "III vertex" form). 4: the front recedes further and
/// the crown has a bald core, separated from the front by a band of hair. 5: both grow and the
/// band thins. 6: the band is gone: one bald top with a thinning rim. 7: only the horseshoe
/// fringe over the ears and at the back keeps hair. (`sim/patients/norwood6.toml`, written before the
/// presets, is balder than stage 6: its crown ellipse reaches into the fringe.)
pub const NORWOOD_PRESETS: [NorwoodPreset; 7] = [
    NorwoodPreset {
        stage: 1,
        front_recession_deg: 0.0,
        recession_fade_azimuth_deg: 60.0,
        temple_recession_deg: 3.0,
        crown_centre_polar_deg: 24.0,
        crown_thinning_radii_mm: [0.0, 0.0],
        crown_bald_radii_mm: [0.0, 0.0],
    },
    NorwoodPreset {
        stage: 2,
        front_recession_deg: 3.0,
        recession_fade_azimuth_deg: 60.0,
        temple_recession_deg: 9.0,
        crown_centre_polar_deg: 24.0,
        crown_thinning_radii_mm: [0.0, 0.0],
        crown_bald_radii_mm: [0.0, 0.0],
    },
    NorwoodPreset {
        stage: 3,
        front_recession_deg: 8.0,
        recession_fade_azimuth_deg: 65.0,
        temple_recession_deg: 14.0,
        crown_centre_polar_deg: 24.0,
        crown_thinning_radii_mm: [35.0, 30.0],
        crown_bald_radii_mm: [0.0, 0.0],
    },
    NorwoodPreset {
        stage: 4,
        front_recession_deg: 14.0,
        recession_fade_azimuth_deg: 70.0,
        temple_recession_deg: 14.0,
        crown_centre_polar_deg: 24.0,
        crown_thinning_radii_mm: [62.0, 50.0],
        crown_bald_radii_mm: [30.0, 24.0],
    },
    NorwoodPreset {
        stage: 5,
        front_recession_deg: 20.0,
        recession_fade_azimuth_deg: 75.0,
        temple_recession_deg: 12.0,
        crown_centre_polar_deg: 20.0,
        crown_thinning_radii_mm: [90.0, 72.0],
        crown_bald_radii_mm: [55.0, 45.0],
    },
    NorwoodPreset {
        stage: 6,
        front_recession_deg: 30.0,
        recession_fade_azimuth_deg: 85.0,
        temple_recession_deg: 10.0,
        crown_centre_polar_deg: 12.0,
        crown_thinning_radii_mm: [125.0, 98.0],
        crown_bald_radii_mm: [105.0, 82.0],
    },
    NorwoodPreset {
        stage: 7,
        front_recession_deg: 36.0,
        recession_fade_azimuth_deg: 95.0,
        temple_recession_deg: 8.0,
        crown_centre_polar_deg: 12.0,
        crown_thinning_radii_mm: [132.0, 104.0],
        crown_bald_radii_mm: [120.0, 94.0],
    },
];

/// The preset row for a stage; `None` outside 1-7.
pub fn norwood_preset(stage: u8) -> Option<&'static NorwoodPreset> {
    NORWOOD_PRESETS.iter().find(|p| p.stage == stage)
}

impl NorwoodPreset {
    /// The full `[hairline]` table of this stage. The shape parameters shared by all stages
    /// (temple position and width, transition band, wobble) are those of the default patient,
    /// whose hairline clinicians judged natural; the wobble makes the border irregular.
    pub fn hairline(&self) -> HairlineSpec {
        HairlineSpec {
            front_recession_deg: self.front_recession_deg,
            recession_fade_azimuth_deg: self.recession_fade_azimuth_deg,
            temple_azimuth_deg: 38.0,
            temple_recession_deg: self.temple_recession_deg,
            temple_width_deg: 13.0,
            transition_deg: 5.0,
            irregularity_deg: 1.5,
        }
    }

    /// The full `[crown]` table of this stage: soft (8 mm ramp) and irregular (5 mm wobble)
    /// edges, as in the default patient.
    pub fn crown(&self) -> CrownSpec {
        CrownSpec {
            centre_polar_deg: self.crown_centre_polar_deg,
            centre_azimuth_deg: 180.0,
            rotation_deg: 0.0,
            thinning_radii_mm: self.crown_thinning_radii_mm,
            bald_radii_mm: self.crown_bald_radii_mm,
            edge_softness_mm: 8.0,
            edge_irregularity_mm: 5.0,
        }
    }
}

/// CIELAB (D65) of each Fitzpatrick type I-VI as the rig's camera sees it under its ring
/// light (brighter than a dermatology colorimeter reads, which is why type II-III is the
/// default patient's `[222, 178, 152]`). Chosen so that `smp_core::color::fitzpatrick_from_ita`
/// reads each row back as its own type.
pub const FITZPATRICK_LAB: [[f64; 3]; 6] = [
    [80.0, 8.0, 14.0],  // I: very light, burns
    [74.0, 10.0, 18.0], // II: light
    [67.0, 12.0, 22.0], // III: intermediate
    [58.0, 13.0, 24.0], // IV: tan / olive
    [45.0, 13.0, 22.0], // V: brown
    [30.0, 9.0, 14.0],  // VI: dark brown to black
];

/// Lab of a Fitzpatrick type (1-6); `None` outside.
pub fn fitzpatrick_lab(fitzpatrick: u8) -> Option<[f64; 3]> {
    FITZPATRICK_LAB.get(usize::from(fitzpatrick).checked_sub(1)?).copied()
}

pub use smp_core::color::lab_to_srgb;

/// Scar tissue for a skin colour: lighter, pinker and less yellow than the skin around it
/// (mature scars lose melanin and keep more visible vessels), as the default patient's
/// `[238, 200, 192]` is to `[222, 178, 152]`.
pub fn scar_srgb_for_skin(skin_srgb: [u8; 3]) -> [u8; 3] {
    let [l, a, b] = srgb_to_lab(skin_srgb);
    lab_to_srgb([(l + 8.0).min(95.0), a + 3.0, (b - 8.0).max(0.0)])
}

/// Colour and mean darkness of a shaved follicle for a hair colour. Darkness is how far the
/// follicle pixel goes from skin toward that colour: light hair leaves faint stubble, which
/// is what makes blond and grey patients hard for the follicle detector.
pub fn follicle_look(color: HairColor) -> ([u8; 3], f64) {
    match color {
        HairColor::Black => ([20, 18, 18], 0.90),
        HairColor::DarkBrown => ([42, 34, 32], 0.85),
        HairColor::Brown => ([62, 46, 38], 0.80),
        HairColor::LightBrown => ([92, 70, 52], 0.70),
        HairColor::Blond => ([140, 112, 78], 0.55),
        HairColor::Red => ([120, 58, 36], 0.65),
        HairColor::Grey => ([110, 108, 106], 0.50),
        HairColor::White => ([190, 188, 185], 0.35),
    }
}

/// The FUT donor-strip scar: the line left where a strip of scalp was cut from the back of
/// the head for follicular-unit transplantation, running from behind one ear to behind the
/// other across the occipital fringe. Points on the surface (head frame, mm), 1° of azimuth
/// apart, centred at azimuth 180 and `centre_polar_deg`, the ends rising toward the ears (the
/// strip follows the fringe, which is higher above the ears), until the polyline is
/// `length_mm` long along the surface.
pub fn donor_strip_points(ell: &Ellipsoid, centre_polar_deg: f64, length_mm: f64) -> Vec<[f64; 3]> {
    let at = |offset_deg: f64| {
        let rise = 8.0 * (offset_deg / 60.0).powi(2);
        let d: Vector3<f64> = direction_from_angles_deg(centre_polar_deg - rise, 180.0 + offset_deg);
        ell.point_in_direction(&d)
    };
    let half = 0.5 * length_mm.max(0.0);
    let side = |sign: f64| {
        let mut pts = Vec::new();
        let (mut len, mut prev, mut k) = (0.0, at(0.0), 1.0);
        while len < half && k <= 170.0 {
            let q = at(sign * k);
            len += (q - prev).norm();
            pts.push([q.x, q.y, q.z]);
            prev = q;
            k += 1.0;
        }
        pts
    };
    let right = side(-1.0);
    let left = side(1.0);
    let c = at(0.0);
    right.into_iter().rev().chain(std::iter::once([c.x, c.y, c.z])).chain(left).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smp_core::color::{fitzpatrick_from_ita, ita_deg};

    #[test]
    fn lab_round_trips_through_srgb() {
        for rgb in [[222u8, 178, 152], [160, 112, 84], [0, 0, 0], [255, 255, 255], [20, 200, 90]] {
            assert_eq!(lab_to_srgb(srgb_to_lab(rgb)), rgb);
        }
    }

    #[test]
    fn fitzpatrick_rows_read_back_as_their_type_and_darken() {
        let mut last_l = f64::INFINITY;
        for k in 1..=6u8 {
            let lab = fitzpatrick_lab(k).expect("row");
            // Through sRGB bytes, as the renderer and vision see it.
            let seen = srgb_to_lab(lab_to_srgb(lab));
            assert_eq!(fitzpatrick_from_ita(ita_deg(seen)), k, "type {k}: {seen:?}");
            assert!(seen[0] < last_l);
            last_l = seen[0];
        }
        assert_eq!(fitzpatrick_lab(0), None);
        assert_eq!(fitzpatrick_lab(7), None);
    }

    #[test]
    fn scar_is_lighter_and_pinker_than_skin() {
        for k in 1..=6u8 {
            let skin = lab_to_srgb(fitzpatrick_lab(k).expect("row"));
            let (s, c) = (srgb_to_lab(skin), srgb_to_lab(scar_srgb_for_skin(skin)));
            assert!(c[0] > s[0] + 5.0 && c[1] > s[1] && c[2] < s[2], "type {k}: skin {s:?} scar {c:?}");
        }
    }

    #[test]
    fn norwood_table_grows_monotonically() {
        for w in NORWOOD_PRESETS.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            assert_eq!(b.stage, a.stage + 1);
            assert!(b.front_recession_deg >= a.front_recession_deg);
            assert!(b.crown_bald_radii_mm[0] >= a.crown_bald_radii_mm[0]);
            assert!(b.crown_thinning_radii_mm[0] >= a.crown_thinning_radii_mm[0]);
        }
        assert!(norwood_preset(0).is_none() && norwood_preset(8).is_none());
    }

    #[test]
    fn donor_strip_is_about_as_long_as_asked_and_on_the_skin() {
        let ell = Ellipsoid { semi_axes_mm: [100.0, 80.0, 88.0] };
        let pts = donor_strip_points(&ell, 100.0, 200.0);
        let len: f64 = pts.windows(2).map(|w| (Vector3::from(w[1]) - Vector3::from(w[0])).norm()).sum();
        assert!((len - 200.0).abs() < 6.0, "{len} mm");
        for p in &pts {
            assert!(ell.implicit(&nalgebra::Point3::from(*p)).abs() < 1e-9);
            assert!(p[0] < 0.0, "the strip is at the back: {p:?}");
        }
    }
}

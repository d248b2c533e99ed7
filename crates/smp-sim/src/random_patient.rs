//! Patients that are not in the repository: drawn from a seed across Norwood stages 2-7,
//! Fitzpatrick types I-VI, hair colours, head sizes and scars.
//!
//! Why: vision's targets are stated "on patients not in the repository". Tuning against the
//! shipped files alone would overfit them; `smp eval vision --random N` scores vision on
//! patients no one has looked at, reproducibly by seed. The patient is written as a patient
//! file (TOML) and parsed like any other, so it goes through the same presets and checks.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smp_core::SpecError;

use crate::patient::PatientSpec;

/// Hair colours a random patient draws from (as written in `[hair] color`).
const HAIR_COLOURS: [&str; 7] = ["black", "dark_brown", "brown", "light_brown", "blond", "red", "grey"];

/// A random patient's file text, deterministic by `seed`.
pub fn random_patient_toml(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a11_e47e_0000_0001);
    let norwood: u8 = rng.random_range(2..=7);
    let fitzpatrick: u8 = rng.random_range(1..=6);
    let colour = HAIR_COLOURS[rng.random_range(0..HAIR_COLOURS.len())];
    let axes = [rng.random_range(92.0..104.0f64), rng.random_range(74.0..84.0f64), rng.random_range(82.0..92.0f64)];
    let density: f64 = rng.random_range(60.0..90.0);
    let thinning: f64 = rng.random_range(12.0..35.0);
    let age: u32 = rng.random_range(22..70);
    let mut text = format!(
        "version = 1\nname = \"random-{seed}-norwood{norwood}-fitz{fitzpatrick}-{colour}\"\nseed = {seed}\n\
         norwood = {norwood}\n\n[head]\nsemi_axes_mm = [{:.1}, {:.1}, {:.1}]\n\n[skin]\nfitzpatrick = {fitzpatrick}\n\n\
         [hair]\ncolor = \"{colour}\"\ndensity_per_cm2 = {density:.1}\nthinning_density_per_cm2 = {thinning:.1}\n",
        axes[0], axes[1], axes[2]
    );
    match rng.random_range(0..4u8) {
        // A surgical scar across the crown.
        0 => {
            let az: f64 = rng.random_range(0.0..360.0f64).to_radians();
            let (c, s) = (az.cos(), az.sin());
            let z = axes[2] * 0.93;
            text.push_str(&format!(
                "\n[[scars]]\npoints_head_mm = [[{:.1}, {:.1}, {z:.1}], [{:.1}, {:.1}, {z:.1}]]\nwidth_mm = {:.1}\n",
                -18.0 * c - 10.0,
                -18.0 * s,
                18.0 * c - 10.0,
                18.0 * s,
                rng.random_range(1.5..3.5f64)
            ));
        }
        // A FUT donor strip.
        1 => text.push_str("\n[[scars]]\npreset = \"donor_strip\"\nwidth_mm = 4.0\n"),
        _ => {}
    }
    // The head band every session wears (four markers, as in the shipped banded patient).
    for (id, az, h) in [(0, 30.0, 25.0), (1, -30.0, 25.0), (2, 120.0, 20.0), (3, -120.0, 20.0)] {
        text.push_str(&format!(
            "\n[[fiducials]]\nid = {id}\nsize_mm = 16.0\nazimuth_deg = {az:.1}\nheight_mm = {h:.1}\n"
        ));
    }
    text.push_str(&format!(
        "\n[intake]\nage_years = {age}\nhair_color = \"{colour}\"\nfitzpatrick = {fitzpatrick}\ncontraindications = []\n"
    ));
    text
}

/// A random patient, parsed and checked like a patient file.
pub fn random_patient_spec(seed: u64) -> Result<PatientSpec, SpecError> {
    PatientSpec::from_toml_str(&random_patient_toml(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_patients_parse_and_span_stages_skins_and_colours() {
        let (mut stages, mut skins, mut colours, mut scarred) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for seed in 0..60u64 {
            let spec = match random_patient_spec(seed) {
                Ok(s) => s,
                Err(e) => panic!("seed {seed}: {e}\n{}", random_patient_toml(seed)),
            };
            stages.push(spec.norwood.unwrap_or(0));
            skins.push(spec.skin.as_ref().map(|s| format!("{s:?}")).unwrap_or_default());
            colours.push(spec.hair.as_ref().map(|h| format!("{:?}", h.color)).unwrap_or_default());
            scarred += usize::from(!spec.scars.is_empty());
        }
        for n in 2..=7u8 {
            assert!(stages.contains(&n), "stage {n} never drawn");
        }
        skins.sort();
        skins.dedup();
        colours.sort();
        colours.dedup();
        assert!(skins.len() >= 6, "{skins:?}");
        assert!(colours.len() >= 6, "{colours:?}");
        assert!((10..50).contains(&scarred), "{scarred} of 60 with scars");
        assert_eq!(random_patient_toml(7), random_patient_toml(7), "deterministic by seed");
    }
}

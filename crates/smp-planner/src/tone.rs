//! The pigment ladder: shade and dilution per session and zone, from the patient's skin tone
//! (Fitzpatrick class, from the map's measured ITA° or the intake) and hair colour.
//!
//! The ladder is configuration (`data/pigment_ladder.toml`, embedded; a clinic may parse and
//! pass its own). A dot's shade is the patient's base shade (first matching `[[base]]` row)
//! moved along the lightest-to-darkest shade list by the session's and the zone's steps, or
//! the zone's fixed shade; its dilution is the session's plus the zone's addition, clamped
//! to [0, 95] %.

use serde::{Deserialize, Serialize};
use smp_core::error::{check_range, check_version, parse_toml};
use smp_core::intake::HairColor;
use smp_core::plan::{PigmentTone, Zone};
use smp_core::{SpecError, TOML_FORMAT_VERSION};

/// The embedded default ladder.
pub const DEFAULT_LADDER_TOML: &str = include_str!("../data/pigment_ladder.toml");

/// A pigment shade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shade {
    pub name: String,
    pub lab: [f64; 3],
}

/// Base shade for a range of Fitzpatrick classes and a set of hair colours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseRule {
    /// Inclusive range of classes, 1-6.
    pub fitzpatrick: [u8; 2],
    pub hair: Vec<HairColor>,
    pub shade: String,
}

/// Dilution and shade step of one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStep {
    pub session: u32,
    pub dilution_pct: f64,
    #[serde(default)]
    pub shade_step: i32,
}

/// What a zone changes on top of its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneStep {
    pub zone: Zone,
    #[serde(default)]
    pub dilution_add_pct: f64,
    #[serde(default)]
    pub shade_step: i32,
    /// A fixed shade for this zone, instead of the stepped base shade.
    #[serde(default)]
    pub shade: Option<String>,
}

/// The whole ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PigmentLadder {
    pub version: u32,
    /// Lightest to darkest.
    pub shade: Vec<Shade>,
    pub base: Vec<BaseRule>,
    pub session: Vec<SessionStep>,
    #[serde(default)]
    pub zone: Vec<ZoneStep>,
}

/// The tone a dot gets.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneChoice {
    pub tone: PigmentTone,
    pub dilution_pct: f64,
}

impl PigmentLadder {
    pub const WHAT: &'static str = "pigment ladder";

    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        let l: PigmentLadder = parse_toml(Self::WHAT, text)?;
        l.validate()?;
        Ok(l)
    }

    /// The ladder shipped with the planner.
    pub fn embedded() -> Result<Self, SpecError> {
        Self::from_toml_str(DEFAULT_LADDER_TOML)
    }

    /// Rejects unknown shade names, bad numbers, and skin/hair combinations no base row
    /// covers (every patient must get a shade), naming the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        const W: &str = PigmentLadder::WHAT;
        check_version(W, self.version, TOML_FORMAT_VERSION)?;
        if self.shade.is_empty() {
            return Err(SpecError::invalid(W, "shade", "is empty; list the shades from lightest to darkest"));
        }
        for (i, s) in self.shade.iter().enumerate() {
            check_range(W, &format!("shade[{i}].lab[0]"), s.lab[0], 0.0, 100.0)?;
            for k in 1..3 {
                check_range(W, &format!("shade[{i}].lab[{k}]"), s.lab[k], -128.0, 128.0)?;
            }
            if self.shade[..i].iter().any(|o| o.name == s.name) {
                return Err(SpecError::invalid(W, format!("shade[{i}].name"), format!("{:?} is listed twice", s.name)));
            }
        }
        let known = |field: String, name: &str| {
            if self.shade.iter().any(|s| s.name == name) {
                Ok(())
            } else {
                Err(SpecError::invalid(W, field, format!("names shade {name:?}, which is not in [[shade]]")))
            }
        };
        for (i, b) in self.base.iter().enumerate() {
            known(format!("base[{i}].shade"), &b.shade)?;
            let [lo, hi] = b.fitzpatrick;
            if !(1..=6).contains(&lo) || !(1..=6).contains(&hi) || lo > hi {
                return Err(SpecError::invalid(
                    W,
                    format!("base[{i}].fitzpatrick"),
                    format!("is [{lo}, {hi}]; give an increasing range within 1-6"),
                ));
            }
        }
        for f in 1..=6u8 {
            for h in HairColor::ALL {
                if self.base_shade_index(f, h).is_none() {
                    return Err(SpecError::invalid(
                        W,
                        "base",
                        format!(
                            "has no row for Fitzpatrick {f} with {} hair; add one (or a catch-all row)",
                            h.as_str()
                        ),
                    ));
                }
            }
        }
        if self.session.is_empty() {
            return Err(SpecError::invalid(W, "session", "is empty; give at least the session 1 dilution"));
        }
        for (i, s) in self.session.iter().enumerate() {
            check_range(W, &format!("session[{i}].dilution_pct"), s.dilution_pct, 0.0, 95.0)?;
            check_range(W, &format!("session[{i}].shade_step"), s.shade_step as f64, -5.0, 5.0)?;
        }
        for (i, z) in self.zone.iter().enumerate() {
            check_range(W, &format!("zone[{i}].dilution_add_pct"), z.dilution_add_pct, -50.0, 50.0)?;
            check_range(W, &format!("zone[{i}].shade_step"), z.shade_step as f64, -5.0, 5.0)?;
            if let Some(s) = &z.shade {
                known(format!("zone[{i}].shade"), s)?;
            }
        }
        Ok(())
    }

    fn base_shade_index(&self, fitzpatrick: u8, hair: HairColor) -> Option<usize> {
        let rule = self
            .base
            .iter()
            .find(|b| (b.fitzpatrick[0]..=b.fitzpatrick[1]).contains(&fitzpatrick) && b.hair.contains(&hair))?;
        self.shade.iter().position(|s| s.name == rule.shade)
    }

    /// The session row: the exact session, else the last row at or below it, else the first.
    fn session_step(&self, session: u32) -> Option<&SessionStep> {
        self.session
            .iter()
            .filter(|s| s.session <= session)
            .max_by_key(|s| s.session)
            .or_else(|| self.session.iter().min_by_key(|s| s.session))
    }

    /// Shade and dilution of a dot. `None` only for a ladder that failed validation.
    pub fn pick(&self, session: u32, zone: Zone, fitzpatrick: u8, hair: HairColor) -> Option<ToneChoice> {
        let f = fitzpatrick.clamp(1, 6);
        let base = self.base_shade_index(f, hair)?;
        let s = self.session_step(session)?;
        let z = self.zone.iter().find(|z| z.zone == zone);
        let last = self.shade.len() as i64 - 1;
        let idx = match z.and_then(|z| z.shade.as_ref()) {
            Some(name) => self.shade.iter().position(|sh| &sh.name == name)?,
            None => {
                let step = s.shade_step as i64 + z.map_or(0, |z| z.shade_step as i64);
                (base as i64 + step).clamp(0, last) as usize
            }
        };
        let dilution = (s.dilution_pct + z.map_or(0.0, |z| z.dilution_add_pct)).clamp(0.0, 95.0);
        let shade = &self.shade[idx];
        Some(ToneChoice { tone: PigmentTone { shade: shade.name.clone(), lab: shade.lab }, dilution_pct: dilution })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> PigmentLadder {
        PigmentLadder::embedded().expect("embedded ladder is valid")
    }

    #[test]
    fn the_embedded_ladder_covers_every_patient_and_never_uses_black() {
        let l = ladder();
        for s in &l.shade {
            assert!(s.lab[0] >= 18.0, "{} is too close to tattoo black", s.name);
        }
        // Lightest to darkest.
        assert!(l.shade.windows(2).all(|w| w[0].lab[0] > w[1].lab[0]));
    }

    #[test]
    fn picks_follow_skin_hair_session_and_zone() {
        let l = ladder();
        let pick = |s, z, f, h| l.pick(s, z, f, h).expect("pick");
        // Light skin, grey hair: a light shade; dark skin, black hair: a deep one.
        let light = pick(1, Zone::Crown, 2, HairColor::Grey);
        let deep = pick(1, Zone::Crown, 6, HairColor::Black);
        assert_eq!(light.tone.shade, "ash-grey");
        assert_eq!(deep.tone.shade, "deep-charcoal");
        assert!(light.tone.lab[0] > deep.tone.lab[0]);
        // Session 1 lightest; session 3 darker shade and less dilution.
        let s1 = pick(1, Zone::Frontal, 3, HairColor::DarkBrown);
        let s2 = pick(2, Zone::Frontal, 3, HairColor::DarkBrown);
        let s3 = pick(3, Zone::Frontal, 3, HairColor::DarkBrown);
        assert_eq!((s1.dilution_pct, s2.dilution_pct, s3.dilution_pct), (50.0, 40.0, 30.0));
        assert_eq!(s1.tone.shade, "charcoal-warm");
        assert!(s3.tone.lab[0] < s1.tone.lab[0], "session 3 may darken");
        // Sessions past the last row use the last row.
        assert_eq!(pick(9, Zone::Frontal, 3, HairColor::DarkBrown), pick(4, Zone::Frontal, 3, HairColor::DarkBrown));
        // Hairline lighter; scar its own, lighter tone.
        let hl = pick(1, Zone::Hairline, 3, HairColor::DarkBrown);
        assert!(hl.dilution_pct > s1.dilution_pct);
        let scar = pick(1, Zone::Scar, 3, HairColor::DarkBrown);
        assert_ne!(scar.tone.shade, s1.tone.shade);
        assert!(scar.tone.lab[0] > s1.tone.lab[0]);
        // The darkest end clamps.
        assert_eq!(pick(3, Zone::Crown, 6, HairColor::Black).tone.shade, "deep-charcoal");
    }

    #[test]
    fn a_ladder_with_a_gap_or_an_unknown_shade_is_rejected_naming_it() {
        let gap = DEFAULT_LADDER_TOML.replace(
            "hair = [\"dark_brown\", \"black\"]\nshade = \"deep-charcoal\"",
            "hair = [\"black\"]\nshade = \"deep-charcoal\"",
        );
        let e = PigmentLadder::from_toml_str(&gap).expect_err("gap").to_string();
        assert!(e.contains("Fitzpatrick 5") && e.contains("dark_brown"), "{e}");
        let unknown = DEFAULT_LADDER_TOML.replace("shade = \"espresso\"", "shade = \"jet-black\"");
        let e = PigmentLadder::from_toml_str(&unknown).expect_err("unknown").to_string();
        assert!(e.contains("jet-black"), "{e}");
        // A clinic's own ladder with a fixed scar shade.
        let own = format!("{DEFAULT_LADDER_TOML}\n[[zone]]\nzone = \"temple\"\nshade = \"soft-taupe\"\n");
        let l = PigmentLadder::from_toml_str(&own).expect("valid");
        assert_eq!(l.pick(2, Zone::Temple, 4, HairColor::Black).expect("pick").tone.shade, "soft-taupe");
    }
}

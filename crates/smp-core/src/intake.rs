//! Patient intake: what the clinic asks before any session (DOMAIN: contraindications such
//! as allergies or keloid scarring; age, hair colour and skin for the hairline and pigment).
//!
//! The intake is the `[intake]` table of the patient file (sim/patients/*.toml), read from the
//! whole document so that the other tables (the simulator's head, tone, regions...) are left
//! to their own readers. The planner refuses to plan for a patient with an unresolved
//! contraindication unless a clinician override is on record ([`PatientIntake::clearance`]).
//!
//! ```toml
//! [intake]
//! age_years = 42
//! hair_color = "dark_brown"
//! fitzpatrick = 3                  # optional: clinician's skin type, used when the scan has none
//! contraindications = [
//!     { name = "keloid scarring", resolved = false },
//!     { name = "pigment allergy (patch test)", resolved = true, note = "negative 2026-01-10" },
//! ]
//! [intake.clinician_override]      # optional: only with a documented clinical decision
//! clinician = "Dr A. Example"
//! reason = "keloid history on the chest only; test patch on the scalp healed flat"
//! date = "2026-02-01"
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{check_range, parse_toml, SpecError};

/// Colour of the patient's remaining hair; the pigment ladder matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HairColor {
    Black,
    DarkBrown,
    Brown,
    LightBrown,
    Blond,
    Red,
    Grey,
    White,
}

impl HairColor {
    pub const ALL: [HairColor; 8] = [
        HairColor::Black,
        HairColor::DarkBrown,
        HairColor::Brown,
        HairColor::LightBrown,
        HairColor::Blond,
        HairColor::Red,
        HairColor::Grey,
        HairColor::White,
    ];

    /// The serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            HairColor::Black => "black",
            HairColor::DarkBrown => "dark_brown",
            HairColor::Brown => "brown",
            HairColor::LightBrown => "light_brown",
            HairColor::Blond => "blond",
            HairColor::Red => "red",
            HairColor::Grey => "grey",
            HairColor::White => "white",
        }
    }
}

/// One condition asked about at intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contraindication {
    pub name: String,
    /// True once the clinic has cleared it (treated, tested negative, not applicable).
    pub resolved: bool,
    #[serde(default)]
    pub note: Option<String>,
}

/// A clinician's recorded decision to treat despite an unresolved contraindication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicianOverride {
    pub clinician: String,
    pub reason: String,
    /// ISO date, `YYYY-MM-DD`.
    pub date: String,
}

/// `[intake]` of a patient file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientIntake {
    pub age_years: f64,
    pub hair_color: HairColor,
    /// Clinician-assessed Fitzpatrick skin type (1-6); the scan's measured tone wins when
    /// the map has one.
    #[serde(default)]
    pub fitzpatrick: Option<u8>,
    #[serde(default)]
    pub contraindications: Vec<Contraindication>,
    #[serde(default)]
    pub clinician_override: Option<ClinicianOverride>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// Whether the intake lets a session be planned.
#[derive(Debug, Clone, PartialEq)]
pub enum Clearance<'a> {
    /// No unresolved contraindication.
    Clear,
    /// Unresolved contraindications, overridden by a clinician on record.
    Overridden { unresolved: Vec<&'a Contraindication>, by: &'a ClinicianOverride },
    /// Unresolved contraindications and no override: no plan may be made.
    Refused { unresolved: Vec<&'a Contraindication> },
}

/// The patient document as far as the intake is concerned: every other table is ignored.
#[derive(Debug, Deserialize)]
struct PatientDocument {
    #[serde(default)]
    intake: Option<PatientIntake>,
}

impl PatientIntake {
    pub const WHAT: &'static str = "patient intake";

    /// Reads `[intake]` from a whole patient TOML document (other tables are ignored).
    pub fn from_patient_toml(text: &str) -> Result<Self, SpecError> {
        let doc: PatientDocument = parse_toml(Self::WHAT, text)?;
        let Some(intake) = doc.intake else {
            return Err(SpecError::invalid(
                Self::WHAT,
                "intake",
                "is missing from the patient file; add an [intake] table with age_years, hair_color and \
                 contraindications (each { name, resolved }) before planning",
            ));
        };
        intake.validate()?;
        Ok(intake)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        const W: &str = PatientIntake::WHAT;
        check_range(W, "intake.age_years", self.age_years, 0.0, 130.0)?;
        if let Some(f) = self.fitzpatrick {
            if !(1..=6).contains(&f) {
                return Err(SpecError::invalid(W, "intake.fitzpatrick", format!("is {f}; it must be 1 to 6")));
            }
        }
        for (i, c) in self.contraindications.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err(SpecError::invalid(
                    W,
                    format!("intake.contraindications[{i}].name"),
                    "is empty; name the condition",
                ));
            }
        }
        if let Some(o) = &self.clinician_override {
            for (name, v) in [("clinician", &o.clinician), ("reason", &o.reason)] {
                if v.trim().is_empty() {
                    return Err(SpecError::invalid(
                        W,
                        format!("intake.clinician_override.{name}"),
                        "is empty; an override needs the clinician's name and the clinical reason on record",
                    ));
                }
            }
            if !is_iso_date(&o.date) {
                return Err(SpecError::invalid(
                    W,
                    "intake.clinician_override.date",
                    format!("is {:?}; write the date of the decision as YYYY-MM-DD", o.date),
                ));
            }
        }
        Ok(())
    }

    /// Contraindications not yet resolved, in intake order.
    pub fn unresolved(&self) -> Vec<&Contraindication> {
        self.contraindications.iter().filter(|c| !c.resolved).collect()
    }

    /// Whether a session may be planned for this patient.
    pub fn clearance(&self) -> Clearance<'_> {
        let unresolved = self.unresolved();
        match (&self.clinician_override, unresolved.is_empty()) {
            (_, true) => Clearance::Clear,
            (Some(by), false) => Clearance::Overridden { unresolved, by },
            (None, false) => Clearance::Refused { unresolved },
        }
    }
}

/// `YYYY-MM-DD` with a plausible month and day.
fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok());
    match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => (1900..=2200).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT: &str = r#"
version = 1
name = "x"
[head]
semi_axes_mm = [100.0, 80.0, 88.0]

[intake]
age_years = 42
hair_color = "dark_brown"
contraindications = [
    { name = "keloid scarring", resolved = false },
    { name = "pigment allergy", resolved = true, note = "patch test negative" },
]
"#;

    #[test]
    fn intake_is_read_from_a_whole_patient_file() {
        let i = PatientIntake::from_patient_toml(PATIENT).expect("parses");
        assert_eq!(i.age_years, 42.0);
        assert_eq!(i.hair_color, HairColor::DarkBrown);
        assert_eq!(i.unresolved().len(), 1);
        assert!(matches!(i.clearance(), Clearance::Refused { unresolved } if unresolved[0].name == "keloid scarring"));
    }

    #[test]
    fn an_override_on_record_clears_and_must_be_complete() {
        let text = format!(
            "{PATIENT}\n[intake.clinician_override]\nclinician = \"Dr A\"\nreason = \"test patch healed flat\"\ndate = \"2026-02-01\"\n"
        );
        let i = PatientIntake::from_patient_toml(&text).expect("parses");
        assert!(matches!(i.clearance(), Clearance::Overridden { by, .. } if by.clinician == "Dr A"));
        let bad = text.replace("2026-02-01", "1 Feb");
        let e = PatientIntake::from_patient_toml(&bad).expect_err("date").to_string();
        assert!(e.contains("clinician_override.date"), "{e}");
        let bad = text.replace("Dr A", " ");
        assert!(PatientIntake::from_patient_toml(&bad).is_err());
    }

    #[test]
    fn a_missing_intake_names_the_fix_and_bad_values_name_the_field() {
        let e = PatientIntake::from_patient_toml("version = 1\n[head]\nx = 1\n").expect_err("missing").to_string();
        assert!(e.contains("[intake]"), "{e}");
        let e = PatientIntake::from_patient_toml("[intake]\nage_years = 30\nhair_color = \"purple\"\n")
            .expect_err("colour")
            .to_string();
        assert!(e.contains("purple") || e.contains("hair_color"), "{e}");
        let e = PatientIntake::from_patient_toml("[intake]\nage_years = -3\nhair_color = \"grey\"\n")
            .expect_err("age")
            .to_string();
        assert!(e.contains("age_years"), "{e}");
        let ok = PatientIntake::from_patient_toml("[intake]\nage_years = 30\nhair_color = \"grey\"\n").expect("ok");
        assert_eq!(ok.clearance(), Clearance::Clear);
    }
}

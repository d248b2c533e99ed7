//! Tests of the patient file: parsing, validation by field name, round trips.

use smp_core::SpecError;

use super::*;

fn default_spec() -> PatientSpec {
    PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient parses")
}

fn field_of(err: &SpecError) -> String {
    match err {
        SpecError::Invalid { field, .. } => field.clone(),
        other => format!("{other}"),
    }
}

#[test]
fn default_round_trips_through_toml() {
    let spec = default_spec();
    let text = spec.to_toml_string().expect("serialises");
    let back = PatientSpec::from_toml_str(&text).expect("re-parses");
    assert_eq!(spec, back);
}

#[test]
fn validation_names_the_field() {
    let nan = DEFAULT_PATIENT_TOML.replacen("hair_per_cm2 = 70.0", "hair_per_cm2 = nan", 1);
    let err = PatientSpec::from_toml_str(&nan).expect_err("NaN rejected");
    assert_eq!(field_of(&err), "follicles.hair_per_cm2", "{err}");
    assert!(err.to_string().contains("finite"), "{err}");

    let neg = DEFAULT_PATIENT_TOML.replacen("thinning_per_cm2 = 18.0", "thinning_per_cm2 = -1.0", 1);
    let err = PatientSpec::from_toml_str(&neg).expect_err("negative density rejected");
    assert_eq!(field_of(&err), "follicles.thinning_per_cm2", "{err}");

    let unknown = DEFAULT_PATIENT_TOML.replacen("[head]", "[head]\nradius_mm = 3.0", 1);
    let err = PatientSpec::from_toml_str(&unknown).expect_err("unknown key rejected");
    assert!(matches!(err, SpecError::Parse { .. }) && err.to_string().contains("radius_mm"), "{err}");

    let version = DEFAULT_PATIENT_TOML.replacen("version = 1", "version = 2", 1);
    let err = PatientSpec::from_toml_str(&version).expect_err("wrong version rejected");
    assert!(matches!(err, SpecError::Version { found: 2, expected: 1, .. }), "{err}");

    let mut spec = default_spec();
    spec.crown.bald_radii_mm[0] = spec.crown.thinning_radii_mm[0] + 1.0;
    assert_eq!(field_of(&spec.validate().expect_err("bald wider than thinning")), "crown.bald_radii_mm[0]");

    let mut spec = default_spec();
    spec.scalp.lower_edge_deg.swap(1, 2);
    assert_eq!(field_of(&spec.validate().expect_err("unsorted table")), "scalp.lower_edge_deg[2][0]");

    let mut spec = default_spec();
    spec.follicles.min_spacing_mm = 0.2;
    assert_eq!(field_of(&spec.validate().expect_err("spacing below diameter")), "follicles.min_spacing_mm");

    let mut spec = default_spec();
    spec.follicles.min_spacing_mm = 1.2;
    assert_eq!(field_of(&spec.validate().expect_err("unreachable packing")), "follicles.hair_per_cm2");

    let mut spec = default_spec();
    let ScarSpec::Ellipse(scar) = &mut spec.scars[0] else { panic!("the default scar is an ellipse") };
    scar.half_width_mm = f64::INFINITY;
    assert_eq!(field_of(&spec.validate().expect_err("inf")), "scars[0].half_width_mm");

    let mut spec = default_spec();
    spec.head.semi_axes_mm[2] = -92.0;
    assert_eq!(field_of(&spec.validate().expect_err("negative axis")), "head.semi_axes_mm[2]");
}

#[test]
fn prior_dot_fields_are_validated_by_name() {
    let with = |extra: &str| format!("{}\n{extra}", DEFAULT_PATIENT_TOML);
    let session = "[[prior_sessions]]\nsession = 1\nweeks_healed = 4.0\ndensity_per_cm2 = 20.0\n";
    PatientSpec::from_toml_str(&with(session)).expect("minimal prior session parses");

    let err = PatientSpec::from_toml_str(&with(&session.replace("20.0", "nan"))).expect_err("nan");
    assert_eq!(field_of(&err), "prior_sessions[0].density_per_cm2", "{err}");
    let err = PatientSpec::from_toml_str(&with(&session.replace("20.0", "150.0"))).expect_err("too dense");
    assert_eq!(field_of(&err), "prior_sessions[0].density_per_cm2", "{err}");
    let err = PatientSpec::from_toml_str(&with(&format!("{session}regions = [\"outside\"]\n"))).expect_err("outside");
    assert_eq!(field_of(&err), "prior_sessions[0].regions", "{err}");
    let err = PatientSpec::from_toml_str(&with(&format!("{session}depth_mm = 9.0\n"))).expect_err("deep");
    assert_eq!(field_of(&err), "prior_sessions[0].depth_mm", "{err}");
    let err = PatientSpec::from_toml_str(&with(&format!(
        "{session}within = {{ centre_polar_deg = 20.0, centre_azimuth_deg = 180.0, radius_mm = -1.0 }}\n"
    )))
    .expect_err("negative radius");
    assert_eq!(field_of(&err), "prior_sessions[0].within.radius_mm", "{err}");
    let err = PatientSpec::from_toml_str(&with(&format!("{session}colour = \"blue\"\n"))).expect_err("unknown");
    assert!(matches!(err, SpecError::Parse { .. }) && err.to_string().contains("colour"), "{err}");

    let dot = "[[prior_dots]]\nposition_head_mm = [0.0, 0.0, 88.0]\nsession = 1\nweeks_healed = 4.0\n";
    PatientSpec::from_toml_str(&with(dot)).expect("a dot on the vertex parses");
    let err = PatientSpec::from_toml_str(&with(&dot.replace("88.0", "40.0"))).expect_err("inside the head");
    assert_eq!(field_of(&err), "prior_dots[0].position_head_mm", "{err}");
    let err = PatientSpec::from_toml_str(&with(&format!("{dot}darkness = 1.5\n"))).expect_err("darkness");
    assert_eq!(field_of(&err), "prior_dots[0].darkness", "{err}");
    let err = PatientSpec::from_toml_str(&with(&dot.replace("session = 1", "session = 0"))).expect_err("session");
    assert_eq!(field_of(&err), "prior_dots[0].session", "{err}");

    let err = PatientSpec::from_toml_str(&with("[skin_response]\nblowout_depth_mm = -1.0\n")).expect_err("skin");
    assert_eq!(field_of(&err), "skin_response.blowout_depth_mm", "{err}");
    let err = PatientSpec::from_toml_str(&with("[healing]\nlost_fraction = 2.0\n")).expect_err("healing");
    assert_eq!(field_of(&err), "healing.lost_fraction", "{err}");
    let err = PatientSpec::from_toml_str(&with("[healing]\nfade = 2.0\n")).expect_err("unknown healing key");
    assert!(err.to_string().contains("fade"), "{err}");
}

//! The patient file once resolved ([`PatientSpec`] and its tables) and its validation: the
//! one place that says which numbers a synthetic patient may have, naming the field that is
//! off. Parsing goes through [`crate::patient_file`], which fills the low-level tables from
//! the clinical presets.

use std::f64::consts::PI;

use nalgebra::Vector3;
use serde::{Deserialize, Serialize};
use smp_core::error::{check_range, check_version, parse_toml};
use smp_core::geometry::Ellipsoid;
use smp_core::map::RegionKind;
use smp_core::{SpecError, TOML_FORMAT_VERSION};

use crate::fiducial::FiducialSpec;
use crate::motion_model::MicroMotionSpec;
use crate::patient_file::{HairSpec, SkinSpec};
use crate::skin::{HealModel, SkinResponse};

/// The default synthetic patient: crown thinning plus frontal recession, one scar.
pub const DEFAULT_PATIENT_TOML: &str = include_str!("../../../../sim/patients/default.toml");

/// A synthetic patient, fully resolved: what `sim/patients/*.toml` says once the clinical
/// presets (`norwood`, `[skin]`, `[hair]`, scar presets) have filled the low-level tables
/// (see [`crate::patient_file`]). Every consumer reads the low-level fields; the clinical
/// ones are kept so that the spec serialises back to a file that says what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "crate::patient_file::PatientFile")]
pub struct PatientSpec {
    /// Format of the file ([`TOML_FORMAT_VERSION`]).
    pub version: u32,
    pub name: String,
    /// Seeds the region edges, the skin texture and every follicle: the same seed gives the
    /// same patient, bit for bit.
    pub seed: u64,
    /// Norwood-Hamilton stage 1-7 the `[hairline]` and `[crown]` presets came from (see
    /// [`crate::patient_presets::NORWOOD_PRESETS`]); explicit table values override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norwood: Option<u8>,
    pub head: HeadSpec,
    /// Skin in clinical terms (Fitzpatrick type or CIELAB), if the file gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skin: Option<SkinSpec>,
    /// Hair colour and densities in clinical terms, if the file gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hair: Option<HairSpec>,
    pub tone: ToneSpec,
    pub follicles: FollicleSpec,
    pub scalp: ScalpSpec,
    pub hairline: HairlineSpec,
    pub crown: CrownSpec,
    /// Scar tissue: lighter, pinker, no follicles. Any number, usually one.
    #[serde(default)]
    pub scars: Vec<ScarSpec>,
    /// ArUco markers on a head band (ground truth only; not rendered yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fiducials: Vec<FiducialSpec>,
    /// The clinic's intake (age, hair colour, contraindications): not simulated, carried so
    /// that one patient file serves the simulator and `smp plan` (the planner's gate reads it).
    #[serde(default)]
    pub intake: Option<smp_core::intake::PatientIntake>,
    /// How this patient's skin takes pigment (dot diameter against dwell and depth,
    /// blowout); defaults when left out.
    #[serde(default)]
    pub skin_response: SkinResponse,
    /// How dots fade between sessions; defaults when left out.
    #[serde(default)]
    pub healing: HealModel,
    /// Micro-motion of the patient at rest (breathing, slow drift) while the arm works;
    /// none when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion: Option<MicroMotionSpec>,
    /// Earlier sessions whose dots are generated over regions of the scalp (follow-up
    /// scenarios). Placed in order, each keeping its spacing from follicles and earlier dots.
    #[serde(default)]
    pub prior_sessions: Vec<PriorSessionSpec>,
    /// Earlier-session dots listed one by one (present at generation whatever the healing
    /// model's loss rate; later healing treats them like any other dot).
    #[serde(default)]
    pub prior_dots: Vec<PriorDotSpec>,
}

/// An earlier session whose dots the generator places: what a clinic did some weeks ago.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorSessionSpec {
    /// Session layer (1 = foundation).
    pub session: u32,
    /// Weeks since that session (0 = just done).
    pub weeks_healed: f64,
    /// Dot density the session placed, per cm².
    pub density_per_cm2: f64,
    /// Region labels it covered; default `["bald", "thinning"]`.
    #[serde(default = "default_prior_regions")]
    pub regions: Vec<RegionKind>,
    /// Optional disc on the surface the session was limited to; the whole scalp without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<SurfaceDiscSpec>,
    /// No two dots (of any session) and no dot and follicle closer than this, mm.
    #[serde(default = "default_prior_spacing_mm")]
    pub min_spacing_mm: f64,
    /// Needle time at depth, s; depth, mm; pigment dilution, percent water.
    #[serde(default = "default_dwell_s")]
    pub dwell_s: f64,
    #[serde(default = "default_depth_mm")]
    pub depth_mm: f64,
    #[serde(default = "default_dilution_pct")]
    pub dilution_pct: f64,
}

/// A disc on the head surface: centre direction and radius measured along the surface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurfaceDiscSpec {
    pub centre_polar_deg: f64,
    pub centre_azimuth_deg: f64,
    pub radius_mm: f64,
}

/// One earlier-session dot given explicitly. Its look follows the skin and healing models
/// from the dwell, depth and dilution, unless `diameter_mm` or `darkness` fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorDotSpec {
    /// Head frame, mm; projected radially onto the head surface (must lie within 10 mm of it).
    pub position_head_mm: [f64; 3],
    pub session: u32,
    pub weeks_healed: f64,
    /// Healed diameter, mm (default: from the models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diameter_mm: Option<f64>,
    /// Healed darkness 0..1 (default: from the models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub darkness: Option<f64>,
    #[serde(default = "default_dwell_s")]
    pub dwell_s: f64,
    #[serde(default = "default_depth_mm")]
    pub depth_mm: f64,
    #[serde(default = "default_dilution_pct")]
    pub dilution_pct: f64,
}

fn default_prior_regions() -> Vec<RegionKind> {
    vec![RegionKind::Bald, RegionKind::Thinning]
}
/// DOMAIN.md: minimum centre spacing of any two dots, follicles included.
fn default_prior_spacing_mm() -> f64 {
    0.9
}
/// The session spec defaults (sim/sessions/crown-s1.toml).
fn default_dwell_s() -> f64 {
    0.1
}
fn default_depth_mm() -> f64 {
    1.0
}
fn default_dilution_pct() -> f64 {
    50.0
}

/// Shape of the head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// Semi-axes of the head ellipsoid along head x (nose), y (left ear), z (vertex), mm.
    pub semi_axes_mm: [f64; 3],
}

/// Colours under the rig's light.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToneSpec {
    /// Skin colour (sRGB) of a surface facing the light squarely.
    pub skin_srgb: [u8; 3],
    /// Scar tissue colour (sRGB): lighter and pinker than the skin.
    pub scar_srgb: [u8; 3],
    /// Colour (sRGB) of a follicle of darkness 1.
    pub follicle_srgb: [u8; 3],
    /// Relative amplitude of low-frequency skin mottling (0.04 = ±4 % brightness).
    pub mottling: f64,
    /// Darkening of the skin where hair grows at full density (roots seen through the skin
    /// make a shaved scalp look grey-blue); scaled by the local follicle density.
    pub hair_shadow: f64,
}

/// Follicles (shaved stubble) and their density per region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollicleSpec {
    /// Mean visible diameter of a follicle, mm.
    pub diameter_mm: f64,
    /// Standard deviation of the per-follicle diameter, mm.
    pub diameter_sd_mm: f64,
    /// Mean darkness: 0 = skin colour, 1 = `tone.follicle_srgb`.
    pub darkness: f64,
    /// Standard deviation of the per-follicle darkness.
    pub darkness_sd: f64,
    /// No two follicles are closer than this (centre to centre), mm.
    pub min_spacing_mm: f64,
    pub hair_per_cm2: f64,
    pub thinning_per_cm2: f64,
    pub bald_per_cm2: f64,
}

/// Where hair can grow at all: above an edge that runs from the forehead over the temples
/// and ears to the nape. Below it (face, ears, neck) is skin without follicles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalpSpec {
    /// `[azimuth_deg, polar_deg]` pairs: at each azimuth (0 = nose, 90 = ear, 180 = nape)
    /// the polar angle of the natural lower edge of the hair. Azimuths rise from 0 to 180;
    /// both sides of the head use the same table; values between rows are interpolated.
    pub lower_edge_deg: Vec<[f64; 2]>,
    /// Amplitude of the irregularity of that edge, degrees.
    pub edge_irregularity_deg: f64,
}

/// Frontal recession: how far the front hairline has moved back from the natural edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HairlineSpec {
    /// Recession at the midline, degrees of polar angle (about 1.6 mm per degree).
    pub front_recession_deg: f64,
    /// Azimuth beyond which the frontal recession has faded out, degrees.
    pub recession_fade_azimuth_deg: f64,
    /// Azimuth of the temple corners that recede further (the "M" shape), degrees.
    pub temple_azimuth_deg: f64,
    /// Extra recession at the temple corners, degrees.
    pub temple_recession_deg: f64,
    /// Width (standard deviation) of the temple recession, degrees of azimuth.
    pub temple_width_deg: f64,
    /// Width of the sparse transition zone just behind the hairline, degrees.
    pub transition_deg: f64,
    /// Amplitude of the hairline's irregularity, degrees (a real hairline is never a ruler edge).
    pub irregularity_deg: f64,
}

/// Crown thinning: an ellipse on the surface with a bald core, soft irregular edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrownSpec {
    pub centre_polar_deg: f64,
    pub centre_azimuth_deg: f64,
    /// Rotation of the first axis from front-back toward left-right, degrees.
    pub rotation_deg: f64,
    /// Semi-axes of the thinning area on the surface `[front-back, left-right]`, mm; `[0, 0]`
    /// for none.
    pub thinning_radii_mm: [f64; 2],
    /// Semi-axes of the bald core, mm; each at most the thinning semi-axis.
    pub bald_radii_mm: [f64; 2],
    /// Width over which the density ramps across each edge, mm.
    pub edge_softness_mm: f64,
    /// Amplitude of the edges' irregularity, mm.
    pub edge_irregularity_mm: f64,
}

/// One scar: lighter, pinker skin without follicles. Written in `[[scars]]` as an ellipse,
/// a polyline or a preset (presets resolve to polylines on the patient's head).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ScarSpec {
    Ellipse(EllipseScarSpec),
    Polyline(PolylineScarSpec),
}

/// A linear scar along a polyline on the skin (e.g. a FUT donor strip): every point within
/// `width_mm / 2` of the line is scar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolylineScarSpec {
    /// Vertices, head frame, mm; each projected radially onto the skin (must lie within
    /// 10 mm of it).
    pub points_head_mm: Vec<[f64; 3]>,
    /// Full width of the scar, mm (FUT strips: 2-5 mm).
    pub width_mm: f64,
    /// Width of the blend between scar and skin colour, mm.
    pub edge_softness_mm: f64,
}

/// An elongated ellipse scar on the surface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EllipseScarSpec {
    pub centre_polar_deg: f64,
    pub centre_azimuth_deg: f64,
    /// Rotation of the long axis from front-back toward left-right, degrees.
    pub rotation_deg: f64,
    pub half_length_mm: f64,
    pub half_width_mm: f64,
    /// Width of the blend between scar and skin colour, mm.
    pub edge_softness_mm: f64,
}

impl PatientSpec {
    pub const WHAT: &'static str = "patient";

    /// Parses and validates a patient file.
    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        // Through the file layer (not `PatientSpec`'s own `Deserialize`) so that an error in
        // a preset keeps its field name instead of becoming a parser message.
        let file: crate::patient_file::PatientFile = parse_toml(Self::WHAT, text)?;
        let spec = file.resolve()?;
        spec.validate()?;
        Ok(spec)
    }

    /// The embedded default patient.
    pub fn default_patient() -> Result<Self, SpecError> {
        Self::from_toml_str(DEFAULT_PATIENT_TOML)
    }

    /// Serialises back to TOML (for `smp` to write the patient it used next to its outputs).
    pub fn to_toml_string(&self) -> Result<String, SpecError> {
        toml::to_string(self).map_err(|e| SpecError::Parse { what: Self::WHAT, message: e.to_string() })
    }

    /// Checks every number, naming the field that is off.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(intake) = &self.intake {
            intake.validate()?;
        }
        const W: &str = PatientSpec::WHAT;
        check_version(W, self.version, TOML_FORMAT_VERSION)?;
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(SpecError::invalid(W, "name", "must be 1 to 200 characters, e.g. \"default-crown-frontal\""));
        }
        for (i, v) in self.head.semi_axes_mm.iter().enumerate() {
            check_range(W, &format!("head.semi_axes_mm[{i}]"), *v, 30.0, 200.0)?;
        }

        let t = &self.tone;
        check_range(W, "tone.mottling", t.mottling, 0.0, 0.5)?;
        check_range(W, "tone.hair_shadow", t.hair_shadow, 0.0, 0.8)?;

        let f = &self.follicles;
        check_range(W, "follicles.diameter_mm", f.diameter_mm, 0.05, 2.0)?;
        check_range(W, "follicles.diameter_sd_mm", f.diameter_sd_mm, 0.0, 0.5 * f.diameter_mm)?;
        check_range(W, "follicles.darkness", f.darkness, 0.0, 1.0)?;
        check_range(W, "follicles.darkness_sd", f.darkness_sd, 0.0, 0.5)?;
        check_range(W, "follicles.min_spacing_mm", f.min_spacing_mm, 0.1, 5.0)?;
        if f.min_spacing_mm < f.diameter_mm {
            return Err(SpecError::invalid(
                W,
                "follicles.min_spacing_mm",
                format!(
                    "is {} mm, below follicles.diameter_mm = {} mm; follicles would merge into blobs no detector can split",
                    f.min_spacing_mm, f.diameter_mm
                ),
            ));
        }
        check_range(W, "follicles.hair_per_cm2", f.hair_per_cm2, 0.0, 300.0)?;
        check_range(W, "follicles.thinning_per_cm2", f.thinning_per_cm2, 0.0, f.hair_per_cm2)?;
        check_range(W, "follicles.bald_per_cm2", f.bald_per_cm2, 0.0, f.thinning_per_cm2)?;
        // Random sequential placement jams at about 55 % disc coverage; stay well below it so
        // the requested density is actually reached.
        let coverage = f.hair_per_cm2 / 100.0 * PI * f.min_spacing_mm * f.min_spacing_mm / 4.0;
        if coverage > MAX_PACKING {
            return Err(SpecError::invalid(
                W,
                "follicles.hair_per_cm2",
                format!(
                    "is {} per cm², too dense for follicles.min_spacing_mm = {} mm (packing {coverage:.2} > {MAX_PACKING}); lower one of them",
                    f.hair_per_cm2, f.min_spacing_mm
                ),
            ));
        }

        let s = &self.scalp;
        if s.lower_edge_deg.len() < 2 {
            return Err(SpecError::invalid(
                W,
                "scalp.lower_edge_deg",
                "needs at least two [azimuth_deg, polar_deg] rows, from azimuth 0 to 180",
            ));
        }
        for (i, [az, polar]) in s.lower_edge_deg.iter().enumerate() {
            check_range(W, &format!("scalp.lower_edge_deg[{i}][0]"), *az, 0.0, 180.0)?;
            check_range(W, &format!("scalp.lower_edge_deg[{i}][1]"), *polar, 5.0, 175.0)?;
            if i > 0 && *az <= s.lower_edge_deg[i - 1][0] {
                return Err(SpecError::invalid(
                    W,
                    format!("scalp.lower_edge_deg[{i}][0]"),
                    "azimuths must rise strictly from row to row",
                ));
            }
        }
        let (first, last) = (s.lower_edge_deg[0][0], s.lower_edge_deg[s.lower_edge_deg.len() - 1][0]);
        if first != 0.0 || last != 180.0 {
            return Err(SpecError::invalid(
                W,
                "scalp.lower_edge_deg",
                format!("runs from azimuth {first} to {last}; it must run from 0 to 180"),
            ));
        }
        check_range(W, "scalp.edge_irregularity_deg", s.edge_irregularity_deg, 0.0, 10.0)?;

        let h = &self.hairline;
        check_range(W, "hairline.front_recession_deg", h.front_recession_deg, 0.0, 60.0)?;
        check_range(W, "hairline.recession_fade_azimuth_deg", h.recession_fade_azimuth_deg, 1.0, 180.0)?;
        check_range(W, "hairline.temple_azimuth_deg", h.temple_azimuth_deg, 0.0, 90.0)?;
        check_range(W, "hairline.temple_recession_deg", h.temple_recession_deg, 0.0, 60.0)?;
        check_range(W, "hairline.temple_width_deg", h.temple_width_deg, 1.0, 60.0)?;
        check_range(W, "hairline.transition_deg", h.transition_deg, 0.0, 30.0)?;
        check_range(W, "hairline.irregularity_deg", h.irregularity_deg, 0.0, 10.0)?;

        let c = &self.crown;
        check_range(W, "crown.centre_polar_deg", c.centre_polar_deg, 0.0, 120.0)?;
        check_range(W, "crown.centre_azimuth_deg", c.centre_azimuth_deg, -360.0, 360.0)?;
        check_range(W, "crown.rotation_deg", c.rotation_deg, -360.0, 360.0)?;
        for i in 0..2 {
            check_range(W, &format!("crown.thinning_radii_mm[{i}]"), c.thinning_radii_mm[i], 0.0, 150.0)?;
            check_range(W, &format!("crown.bald_radii_mm[{i}]"), c.bald_radii_mm[i], 0.0, c.thinning_radii_mm[i])?;
        }
        for (name, r) in [("crown.thinning_radii_mm", c.thinning_radii_mm), ("crown.bald_radii_mm", c.bald_radii_mm)] {
            if (r[0] == 0.0) != (r[1] == 0.0) {
                return Err(SpecError::invalid(
                    W,
                    name,
                    format!("is {r:?}; give both semi-axes, or [0.0, 0.0] for none"),
                ));
            }
        }
        check_range(W, "crown.edge_softness_mm", c.edge_softness_mm, 0.0, 50.0)?;
        check_range(W, "crown.edge_irregularity_mm", c.edge_irregularity_mm, 0.0, 20.0)?;

        let ell = Ellipsoid { semi_axes_mm: self.head.semi_axes_mm };
        for (i, scar) in self.scars.iter().enumerate() {
            let field = |name: &str| format!("scars[{i}].{name}");
            match scar {
                ScarSpec::Ellipse(sc) => {
                    check_range(W, &field("centre_polar_deg"), sc.centre_polar_deg, 0.0, 150.0)?;
                    check_range(W, &field("centre_azimuth_deg"), sc.centre_azimuth_deg, -360.0, 360.0)?;
                    check_range(W, &field("rotation_deg"), sc.rotation_deg, -360.0, 360.0)?;
                    check_range(W, &field("half_length_mm"), sc.half_length_mm, 0.5, 100.0)?;
                    check_range(W, &field("half_width_mm"), sc.half_width_mm, 0.2, sc.half_length_mm)?;
                    check_range(W, &field("edge_softness_mm"), sc.edge_softness_mm, 0.0, 5.0)?;
                }
                ScarSpec::Polyline(sc) => {
                    if sc.points_head_mm.len() < 2 || sc.points_head_mm.len() > MAX_SCAR_POINTS {
                        return Err(SpecError::invalid(
                            W,
                            field("points_head_mm"),
                            format!(
                                "has {} points; a polyline scar needs 2 to {MAX_SCAR_POINTS} [x, y, z] points, head frame, mm",
                                sc.points_head_mm.len()
                            ),
                        ));
                    }
                    for (k, p) in sc.points_head_mm.iter().enumerate() {
                        check_on_skin(&ell, &format!("scars[{i}].points_head_mm[{k}]"), *p)?;
                    }
                    check_range(W, &field("width_mm"), sc.width_mm, 0.4, 30.0)?;
                    check_range(W, &field("edge_softness_mm"), sc.edge_softness_mm, 0.0, 5.0)?;
                }
            }
        }
        if let Some(n) = self.norwood {
            check_range(W, "norwood", f64::from(n), 1.0, 7.0)?;
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, fd) in self.fiducials.iter().enumerate() {
            fd.validate(W, &format!("fiducials[{i}]"), &ell)?;
            if !ids.insert((fd.dictionary.as_str(), fd.id)) {
                return Err(SpecError::invalid(
                    W,
                    format!("fiducials[{i}].id"),
                    format!("{} is used twice in {}; give every marker its own id", fd.id, fd.dictionary),
                ));
            }
        }

        self.skin_response.validate(W, "skin_response")?;
        self.healing.validate(W, "healing")?;
        if let Some(m) = &self.motion {
            m.head_motion(self.seed).map_err(|e| SpecError::invalid(W, "motion", e.to_string()))?;
        }
        let check_needle = |prefix: &str, dwell_s: f64, depth_mm: f64, dilution_pct: f64| {
            check_range(W, &format!("{prefix}.dwell_s"), dwell_s, 0.0, 5.0)?;
            // Beyond the 1.2 mm session limit on purpose: a file may describe a blowout.
            check_range(W, &format!("{prefix}.depth_mm"), depth_mm, 0.0, 4.0)?;
            check_range(W, &format!("{prefix}.dilution_pct"), dilution_pct, 0.0, 95.0)
        };
        for (i, ps) in self.prior_sessions.iter().enumerate() {
            let prefix = format!("prior_sessions[{i}]");
            let field = |name: &str| format!("{prefix}.{name}");
            check_range(W, &field("session"), f64::from(ps.session), 1.0, 10.0)?;
            check_range(W, &field("weeks_healed"), ps.weeks_healed, 0.0, 520.0)?;
            check_range(W, &field("min_spacing_mm"), ps.min_spacing_mm, 0.3, 5.0)?;
            check_range(W, &field("density_per_cm2"), ps.density_per_cm2, 0.0, 200.0)?;
            let coverage = ps.density_per_cm2 / 100.0 * PI * ps.min_spacing_mm * ps.min_spacing_mm / 4.0;
            if coverage > MAX_PACKING {
                return Err(SpecError::invalid(
                    W,
                    field("density_per_cm2"),
                    format!(
                        "is {} per cm², too dense for min_spacing_mm = {} mm (packing {coverage:.2} > {MAX_PACKING}); lower one of them",
                        ps.density_per_cm2, ps.min_spacing_mm
                    ),
                ));
            }
            if ps.regions.is_empty() || ps.regions.contains(&RegionKind::Outside) {
                return Err(SpecError::invalid(
                    W,
                    field("regions"),
                    "must list at least one of \"hair\", \"thinning\", \"bald\", \"scar\" (never \"outside\")",
                ));
            }
            if let Some(d) = &ps.within {
                check_range(W, &field("within.centre_polar_deg"), d.centre_polar_deg, 0.0, 150.0)?;
                check_range(W, &field("within.centre_azimuth_deg"), d.centre_azimuth_deg, -360.0, 360.0)?;
                check_range(W, &field("within.radius_mm"), d.radius_mm, 0.5, 200.0)?;
            }
            check_needle(&prefix, ps.dwell_s, ps.depth_mm, ps.dilution_pct)?;
        }
        for (i, pd) in self.prior_dots.iter().enumerate() {
            let prefix = format!("prior_dots[{i}]");
            let field = |name: &str| format!("{prefix}.{name}");
            check_on_skin(&ell, &field("position_head_mm"), pd.position_head_mm)?;
            check_range(W, &field("session"), f64::from(pd.session), 1.0, 10.0)?;
            check_range(W, &field("weeks_healed"), pd.weeks_healed, 0.0, 520.0)?;
            if let Some(d) = pd.diameter_mm {
                check_range(W, &field("diameter_mm"), d, 0.05, 3.0)?;
            }
            if let Some(k) = pd.darkness {
                check_range(W, &field("darkness"), k, 0.0, 1.0)?;
            }
            check_needle(&prefix, pd.dwell_s, pd.depth_mm, pd.dilution_pct)?;
        }
        Ok(())
    }
}

/// Checks that a head-frame point lies on the skin (within
/// [`MAX_PRIOR_DOT_OFF_SURFACE_MM`]), naming `field` (indices of the point appended).
fn check_on_skin(ell: &Ellipsoid, field: &str, p: [f64; 3]) -> Result<(), SpecError> {
    const W: &str = PatientSpec::WHAT;
    for (k, v) in p.iter().enumerate() {
        check_range(W, &format!("{field}[{k}]"), *v, -1000.0, 1000.0)?;
    }
    let p = Vector3::from(p);
    let r = p.norm();
    let off_mm = if r > 1e-9 { r - ell.point_in_direction(&(p / r)).coords.norm() } else { f64::INFINITY };
    if off_mm.abs() > MAX_PRIOR_DOT_OFF_SURFACE_MM {
        return Err(SpecError::invalid(
            W,
            field,
            format!(
                "is {off_mm:.1} mm off the head surface; give a point on the skin (within {MAX_PRIOR_DOT_OFF_SURFACE_MM} mm), head frame"
            ),
        ));
    }
    Ok(())
}

/// Most vertices a polyline scar may have (the donor strip preset uses about 130).
const MAX_SCAR_POINTS: usize = 2000;

/// `what` of errors about dots handed to [`SyntheticPatient::with_prior_dots`](super::SyntheticPatient::with_prior_dots).
pub(super) const PRIOR_DOTS_WHAT: &str = "prior dots";

/// How far an explicit prior dot may lie from the head surface before it is taken for a typo.
const MAX_PRIOR_DOT_OFF_SURFACE_MM: f64 = 10.0;

/// Largest disc coverage `density * pi * spacing² / 4` the follicle sampler is asked to reach.
const MAX_PACKING: f64 = 0.35;

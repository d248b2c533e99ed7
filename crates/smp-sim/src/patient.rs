//! Synthetic patients: a head ellipsoid with hair regions, skin tone and ground-truth
//! follicles, generated deterministically from a person-edited TOML file.
//!
//! Why a model this simple: the pipeline under test (vision -> planner -> G-code -> controller)
//! needs a scalp whose truth is known exactly, that looks like a shaved scalp to a camera, and
//! that has the features a clinic treats (a receding frontal hairline, a thinning crown, a
//! scar). An ellipsoid with regions decided by position on it gives all of that, renders fast
//! and keeps every number in one readable file (`sim/patients/*.toml`).
//!
//! Angles on the head: a direction from the head centre is given by its *polar* angle from
//! the vertex (+z head) and its *azimuth* from the nose (+x head) toward the patient's left
//! (+y head). Polar 25°, azimuth 180° is 25° behind the vertex: the part of the head that
//! faces up on the default rig's head rest.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use nalgebra::{Isometry3, Point3, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use smp_core::error::{check_range, check_version, parse_toml};
use smp_core::geometry::Ellipsoid;
use smp_core::map::RegionKind;
use smp_core::spatial::PointGrid;
use smp_core::{SpecError, TOML_FORMAT_VERSION};

pub use crate::fiducial::{FiducialSpec, TruthFiducial};
use crate::motion_model::MicroMotionSpec;
pub use crate::patient_file::{HairSpec, SkinSpec};
use crate::skin::{deposit, heal, Deposit, DepositInput, HealModel, PriorDot, SkinResponse};

/// The default synthetic patient: crown thinning plus frontal recession, one scar.
pub const DEFAULT_PATIENT_TOML: &str = include_str!("../../../sim/patients/default.toml");

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

/// `what` of errors about dots handed to [`SyntheticPatient::with_prior_dots`].
const PRIOR_DOTS_WHAT: &str = "prior dots";

/// How far an explicit prior dot may lie from the head surface before it is taken for a typo.
const MAX_PRIOR_DOT_OFF_SURFACE_MM: f64 = 10.0;

/// Largest disc coverage `density * pi * spacing² / 4` the follicle sampler is asked to reach.
const MAX_PACKING: f64 = 0.35;

/// Unit direction from polar (from +z) and azimuth (from +x toward +y) angles in degrees.
pub fn direction_from_angles_deg(polar_deg: f64, azimuth_deg: f64) -> Vector3<f64> {
    let (t, p) = (polar_deg.to_radians(), azimuth_deg.to_radians());
    Vector3::new(t.sin() * p.cos(), t.sin() * p.sin(), t.cos())
}

/// The head direction that points straight up (+z base) for a given head pose: the centre
/// of the part of the scalp a vertical needle can reach.
pub fn up_direction_head(base_from_head: &Isometry3<f64>) -> Vector3<f64> {
    base_from_head.rotation.inverse() * Vector3::z()
}

/// A smooth periodic wobble `sum a_k cos(k psi + phase_k)`, evaluated from the unit vector
/// `(cos psi, sin psi)` by complex powers so that no trigonometric call is needed per pixel.
#[derive(Debug, Clone, Default)]
struct Harmonics {
    /// `(k, re, im)` of `a_k e^{i phase_k}`, k ascending.
    terms: Vec<(u32, f64, f64)>,
    /// Bound on the absolute value: the sum of the amplitudes.
    max_abs: f64,
}

impl Harmonics {
    /// Random harmonics k in `k_min..=k_max` whose absolute amplitudes sum to `amplitude`
    /// (so the wobble never exceeds it); higher harmonics are weaker.
    fn random(rng: &mut ChaCha8Rng, k_min: u32, k_max: u32, amplitude: f64) -> Self {
        if amplitude <= 0.0 || k_max < k_min {
            return Harmonics::default();
        }
        let mut raw: Vec<(u32, f64, f64)> = (k_min..=k_max)
            .map(|k| {
                let a = rng.random_range(0.3..1.0) / k as f64;
                let ph = rng.random_range(0.0..2.0 * PI);
                (k, a, ph)
            })
            .collect();
        let total: f64 = raw.iter().map(|t| t.1).sum();
        for t in &mut raw {
            t.1 *= amplitude / total;
        }
        Harmonics {
            terms: raw.into_iter().map(|(k, a, ph)| (k, a * ph.cos(), a * ph.sin())).collect(),
            max_abs: amplitude,
        }
    }

    fn eval_unit(&self, c: f64, s: f64) -> f64 {
        let (mut zr, mut zi, mut k) = (1.0, 0.0, 0u32);
        let mut sum = 0.0;
        for &(kk, re, im) in &self.terms {
            while k < kk {
                (zr, zi) = (zr * c - zi * s, zr * s + zi * c);
                k += 1;
            }
            sum += re * zr - im * zi;
        }
        sum
    }
}

/// A tangent frame at a point of the head surface, for shapes measured in mm on the surface.
#[derive(Debug, Clone)]
struct SurfaceFrame {
    centre: Point3<f64>,
    normal: Vector3<f64>,
    /// First axis of the shape (front-back rotated by `rotation_deg`).
    e1: Vector3<f64>,
    e2: Vector3<f64>,
}

impl SurfaceFrame {
    fn new(ell: &Ellipsoid, polar_deg: f64, azimuth_deg: f64, rotation_deg: f64) -> Self {
        let centre = ell.point_in_direction(&direction_from_angles_deg(polar_deg, azimuth_deg));
        let normal = ell.normal(&centre);
        // Front-back axis: the nose direction projected into the tangent plane; the vertex
        // direction where the normal is along x (the face), so the frame is always defined.
        let reference = if normal.x.abs() > 0.95 { Vector3::z() } else { Vector3::x() };
        let front = (reference - normal * normal.dot(&reference)).normalize();
        let left = normal.cross(&front);
        let r = rotation_deg.to_radians();
        let e1 = front * r.cos() + left * r.sin();
        let e2 = normal.cross(&e1);
        SurfaceFrame { centre, normal, e1, e2 }
    }

    /// Coordinates of a surface point in the frame, mm: the tangent direction scaled to the
    /// chord length (within a few % of the distance along the surface at these sizes).
    fn local_mm(&self, p: &Point3<f64>) -> (f64, f64) {
        let d = p - self.centre;
        let chord = d.norm();
        let t = d - self.normal * d.dot(&self.normal);
        let tn = t.norm();
        if tn < 1e-12 {
            return (0.0, 0.0);
        }
        let scale = chord / tn;
        (t.dot(&self.e1) * scale, t.dot(&self.e2) * scale)
    }
}

/// Approximate signed distance (mm, negative inside) from `(u, v)` to the ellipse with
/// semi-axes `ra, rb`, plus the unit vector of the point's elliptic angle (for wobbles).
fn ellipse_sd(u: f64, v: f64, ra: f64, rb: f64) -> (f64, f64, f64) {
    let (nu, nv) = (u / ra, v / rb);
    let f = nu * nu + nv * nv - 1.0;
    let (gu, gv) = (u / (ra * ra), v / (rb * rb));
    let g = 2.0 * (gu * gu + gv * gv).sqrt();
    let rho = (nu * nu + nv * nv).sqrt();
    let (c, s) = if rho > 1e-12 { (nu / rho, nv / rho) } else { (1.0, 0.0) };
    let floor = -ra.min(rb);
    let sd = if g > 1e-12 { (f / g).max(floor) } else { floor };
    (sd, c, s)
}

/// Weight of "inside" across a soft edge: 1 well inside (sd < 0), 0 well outside.
pub(crate) fn inside_weight(sd_mm: f64, softness_mm: f64) -> f64 {
    if softness_mm <= 1e-9 {
        return if sd_mm < 0.0 { 1.0 } else { 0.0 };
    }
    let s = (0.5 - sd_mm / softness_mm).clamp(0.0, 1.0);
    s * s * (3.0 - 2.0 * s)
}

/// How little hair a label means, for combining the frontal and crown models.
fn severity(r: RegionKind) -> u8 {
    match r {
        RegionKind::Hair => 0,
        RegionKind::Thinning => 1,
        RegionKind::Bald => 2,
        RegionKind::Scar => 3,
        RegionKind::Outside => 4,
    }
}

/// What the skin is at one surface point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SurfaceSample {
    pub(crate) region: RegionKind,
    /// Expected follicle density, per mm².
    pub(crate) density_per_mm2: f64,
    /// Signed distance to the nearest scar's edge, mm (negative inside); +inf without scars.
    pub(crate) scar_sd_mm: f64,
    /// Blend width of that scar's edge, mm.
    pub(crate) scar_softness_mm: f64,
}

/// A scar's shape, ready for per-pixel evaluation.
#[derive(Debug, Clone)]
enum ScarModel {
    Ellipse {
        frame: SurfaceFrame,
        half_length_mm: f64,
        half_width_mm: f64,
        softness_mm: f64,
    },
    /// Vertices on the skin; `bound` is a sphere holding every point within reach of the line
    /// (half width plus softness), so that pixels far from the scar cost one distance.
    Polyline {
        points: Vec<Point3<f64>>,
        half_width_mm: f64,
        softness_mm: f64,
        bound: (Point3<f64>, f64),
    },
}

impl ScarModel {
    fn new(spec: &ScarSpec, ell: &Ellipsoid) -> Self {
        match spec {
            ScarSpec::Ellipse(s) => ScarModel::Ellipse {
                frame: SurfaceFrame::new(ell, s.centre_polar_deg, s.centre_azimuth_deg, s.rotation_deg),
                half_length_mm: s.half_length_mm,
                half_width_mm: s.half_width_mm,
                softness_mm: s.edge_softness_mm,
            },
            ScarSpec::Polyline(s) => {
                let points: Vec<Point3<f64>> = s
                    .points_head_mm
                    .iter()
                    .filter_map(|p| {
                        let v = Vector3::from(*p);
                        let n = v.norm();
                        (n.is_finite() && n > 1e-9).then(|| ell.point_in_direction(&(v / n)))
                    })
                    .collect();
                let half_width_mm = 0.5 * s.width_mm;
                let centre = if points.is_empty() {
                    Point3::origin()
                } else {
                    Point3::from(points.iter().map(|p| p.coords).sum::<Vector3<f64>>() / points.len() as f64)
                };
                let reach =
                    points.iter().map(|p| (p - centre).norm()).fold(0.0, f64::max) + half_width_mm + s.edge_softness_mm;
                ScarModel::Polyline { points, half_width_mm, softness_mm: s.edge_softness_mm, bound: (centre, reach) }
            }
        }
    }

    /// Signed distance from a surface point to the scar's edge (mm, negative inside) and the
    /// scar's edge softness. Polylines use the straight-line (chord) distance to each
    /// segment: within 0.1 % of the distance along the skin at scar widths.
    fn signed_distance(&self, p: &Point3<f64>) -> (f64, f64) {
        match self {
            ScarModel::Ellipse { frame, half_length_mm, half_width_mm, softness_mm } => {
                let (u, v) = frame.local_mm(p);
                (ellipse_sd(u, v, *half_length_mm, *half_width_mm).0, *softness_mm)
            }
            ScarModel::Polyline { points, half_width_mm, softness_mm, bound } => {
                if points.len() < 2 {
                    return (f64::INFINITY, *softness_mm);
                }
                let far = (p - bound.0).norm() - bound.1;
                if far > POLYLINE_SKIP_MM {
                    // The true distance is at least `far` beyond the blend: far enough that
                    // neither region nor colour (any pixel footprint under 40 mm) depends on it.
                    return (far, *softness_mm);
                }
                let d =
                    points.windows(2).map(|w| point_segment_distance(p, &w[0], &w[1])).fold(f64::INFINITY, f64::min);
                (d - half_width_mm, *softness_mm)
            }
        }
    }
}

/// Beyond this distance from a polyline scar's bound its exact distance is not computed.
const POLYLINE_SKIP_MM: f64 = 20.0;

/// Distance from `p` to the segment `a`-`b` (a point if `a == b`).
fn point_segment_distance(p: &Point3<f64>, a: &Point3<f64>, b: &Point3<f64>) -> f64 {
    let ab = b - a;
    let len2 = ab.norm_squared();
    let t = if len2 > 1e-18 { ((p - a).dot(&ab) / len2).clamp(0.0, 1.0) } else { 0.0 };
    (p - (a + ab * t)).norm()
}

#[derive(Debug, Clone)]
struct CrownModel {
    frame: SurfaceFrame,
    thinning: [f64; 2],
    bald: [f64; 2],
    thinning_wobble: Harmonics,
    bald_wobble: Harmonics,
}

/// The region geometry of one patient, with its seeded irregularities.
#[derive(Debug, Clone)]
struct RegionModel {
    lower_edge_deg: Vec<[f64; 2]>,
    lower_wobble: Harmonics,
    hairline: HairlineSpec,
    hairline_wobble: Harmonics,
    crown: Option<CrownModel>,
    crown_softness_mm: f64,
    scars: Vec<ScarModel>,
    hair_per_mm2: f64,
    thinning_per_mm2: f64,
    bald_per_mm2: f64,
}

impl RegionModel {
    fn new(spec: &PatientSpec, ell: &Ellipsoid, rng: &mut ChaCha8Rng) -> Self {
        let lower_wobble = Harmonics::random(rng, 3, 14, spec.scalp.edge_irregularity_deg);
        let hairline_wobble = Harmonics::random(rng, 4, 24, spec.hairline.irregularity_deg);
        let c = &spec.crown;
        let crown_wobble_t = Harmonics::random(rng, 2, 7, c.edge_irregularity_mm);
        let bald_scale = if c.thinning_radii_mm[0] > 0.0 {
            (c.bald_radii_mm[0] + c.bald_radii_mm[1]) / (c.thinning_radii_mm[0] + c.thinning_radii_mm[1])
        } else {
            0.0
        };
        let crown_wobble_b = Harmonics::random(rng, 2, 7, c.edge_irregularity_mm * bald_scale.max(0.3));
        let crown = (c.thinning_radii_mm[0] > 0.0).then(|| CrownModel {
            frame: SurfaceFrame::new(ell, c.centre_polar_deg, c.centre_azimuth_deg, c.rotation_deg),
            thinning: c.thinning_radii_mm,
            bald: c.bald_radii_mm,
            thinning_wobble: crown_wobble_t,
            bald_wobble: crown_wobble_b,
        });
        let scars = spec.scars.iter().map(|s| ScarModel::new(s, ell)).collect();
        RegionModel {
            lower_edge_deg: spec.scalp.lower_edge_deg.clone(),
            lower_wobble,
            hairline: spec.hairline.clone(),
            hairline_wobble,
            crown,
            crown_softness_mm: c.edge_softness_mm,
            scars,
            hair_per_mm2: spec.follicles.hair_per_cm2 / 100.0,
            thinning_per_mm2: spec.follicles.thinning_per_cm2 / 100.0,
            bald_per_mm2: spec.follicles.bald_per_cm2 / 100.0,
        }
    }

    /// Lower edge of hair-bearing scalp at |azimuth| in degrees (table interpolation).
    fn lower_edge_at(&self, abs_azimuth_deg: f64) -> f64 {
        let t = &self.lower_edge_deg;
        for w in t.windows(2) {
            let ([a0, p0], [a1, p1]) = (w[0], w[1]);
            if abs_azimuth_deg <= a1 {
                let f = ((abs_azimuth_deg - a0) / (a1 - a0)).clamp(0.0, 1.0);
                return p0 + f * (p1 - p0);
            }
        }
        t.last().map_or(90.0, |r| r[1])
    }

    /// Classifies a point on (or very near) the head surface.
    fn sample(&self, p: &Point3<f64>) -> SurfaceSample {
        // Scars first: they override everything and carry no follicles.
        let mut scar_sd_mm = f64::INFINITY;
        let mut scar_softness_mm = 0.0;
        for s in &self.scars {
            let (sd, softness_mm) = s.signed_distance(p);
            if sd < scar_sd_mm {
                scar_sd_mm = sd;
                scar_softness_mm = softness_mm;
            }
        }
        if scar_sd_mm < 0.0 {
            return SurfaceSample { region: RegionKind::Scar, density_per_mm2: 0.0, scar_sd_mm, scar_softness_mm };
        }

        // Position on the head: polar angle from the vertex and azimuth from the nose.
        let rxy = (p.x * p.x + p.y * p.y).sqrt();
        let polar_deg = rxy.atan2(p.z).to_degrees();
        let (ca, sa) = if rxy > 1e-12 { (p.x / rxy, p.y / rxy) } else { (1.0, 0.0) };
        let abs_az_deg = sa.abs().atan2(ca).to_degrees();

        // Frontal recession: the hairline sits `recession` degrees above the natural edge.
        let h = &self.hairline;
        let fade = if abs_az_deg < h.recession_fade_azimuth_deg {
            0.5 * (1.0 + (PI * abs_az_deg / h.recession_fade_azimuth_deg).cos())
        } else {
            0.0
        };
        let z = (abs_az_deg - h.temple_azimuth_deg) / h.temple_width_deg;
        let temple = if z.abs() < 8.0 { (-0.5 * z * z).exp() } else { 0.0 };
        let recession = h.front_recession_deg * fade + h.temple_recession_deg * temple;
        // Where there is no recession, the hairline is the natural edge: no wobble, no band.
        let engaged = (recession / 3.0).clamp(0.0, 1.0);
        let transition = h.transition_deg * engaged;
        let table_lower = self.lower_edge_at(abs_az_deg);
        // Well above every edge (most of the scalp): full hair, no wobble to evaluate. The
        // bound is the exact path's hairline minus transition at its lowest.
        let clear =
            table_lower - self.lower_wobble.max_abs - recession - engaged * self.hairline_wobble.max_abs - transition;
        let (front_region, front_density) = if polar_deg < clear {
            (RegionKind::Hair, self.hair_per_mm2)
        } else {
            let lower = table_lower + self.lower_wobble.eval_unit(ca, sa);
            if polar_deg > lower {
                return SurfaceSample {
                    region: RegionKind::Outside,
                    density_per_mm2: 0.0,
                    scar_sd_mm,
                    scar_softness_mm,
                };
            }
            let hairline = lower - (recession + engaged * self.hairline_wobble.eval_unit(ca, sa)).max(0.0);
            if polar_deg > hairline {
                (RegionKind::Bald, self.bald_per_mm2)
            } else if polar_deg > hairline - transition {
                let t = ((hairline - polar_deg) / transition.max(1e-9)).clamp(0.0, 1.0);
                (RegionKind::Thinning, self.thinning_per_mm2 + (self.hair_per_mm2 - self.thinning_per_mm2) * t)
            } else {
                (RegionKind::Hair, self.hair_per_mm2)
            }
        };

        // Crown thinning with a bald core.
        let (crown_region, crown_density) = match &self.crown {
            None => (RegionKind::Hair, self.hair_per_mm2),
            Some(c) => {
                let (u, v) = c.frame.local_mm(p);
                let (sd_t, ct, st) = ellipse_sd(u, v, c.thinning[0], c.thinning[1]);
                let sd_t = sd_t - c.thinning_wobble.eval_unit(ct, st);
                let sd_b = if c.bald[0] > 0.0 {
                    let (sd, cb, sb) = ellipse_sd(u, v, c.bald[0], c.bald[1]);
                    sd - c.bald_wobble.eval_unit(cb, sb)
                } else {
                    f64::INFINITY
                };
                let w_t = inside_weight(sd_t, self.crown_softness_mm);
                let w_b = if sd_b.is_finite() { inside_weight(sd_b, self.crown_softness_mm) } else { 0.0 };
                let mut d = self.hair_per_mm2 + (self.thinning_per_mm2 - self.hair_per_mm2) * w_t;
                d += (self.bald_per_mm2 - d) * w_b;
                let region = if sd_b < 0.0 {
                    RegionKind::Bald
                } else if sd_t < 0.0 {
                    RegionKind::Thinning
                } else {
                    RegionKind::Hair
                };
                (region, d)
            }
        };

        let region = if severity(front_region) >= severity(crown_region) { front_region } else { crown_region };
        // Follicles stop exactly at a scar's edge.
        let density_per_mm2 = front_density.min(crown_density);
        SurfaceSample { region, density_per_mm2, scar_sd_mm, scar_softness_mm }
    }
}

/// Low-frequency brightness variation of the skin, fixed per patient.
#[derive(Debug, Clone)]
struct SkinTexture {
    amplitude: f64,
    /// `(wave vector in rad/mm, phase)`.
    waves: Vec<(Vector3<f64>, f64)>,
}

impl SkinTexture {
    fn new(amplitude: f64, rng: &mut ChaCha8Rng) -> Self {
        let waves = (0..5)
            .map(|_| {
                let wavelength_mm: f64 = (rng.random_range(6f64.ln()..35f64.ln())).exp();
                let dir = Vector3::new(
                    rng.sample::<f64, _>(StandardNormal),
                    rng.sample::<f64, _>(StandardNormal),
                    rng.sample::<f64, _>(StandardNormal),
                );
                let dir = if dir.norm() > 1e-6 { dir.normalize() } else { Vector3::x() };
                (dir * (2.0 * PI / wavelength_mm), rng.random_range(0.0..2.0 * PI))
            })
            .collect();
        SkinTexture { amplitude, waves }
    }

    fn factor(&self, p: &Point3<f64>) -> f64 {
        if self.amplitude <= 0.0 {
            return 1.0;
        }
        let sum: f64 = self.waves.iter().map(|(k, ph)| (k.dot(&p.coords) + ph).sin()).sum();
        let n = self.waves.len().max(1) as f64;
        1.0 + self.amplitude * (2.0 * sum / n).clamp(-1.0, 1.0)
    }
}

/// Region areas of [`SyntheticPatient::region_areas_cm2`] from the region model alone (no
/// follicles needed: tests compare many region layouts cheaply).
fn region_areas_cm2(
    regions: &RegionModel,
    ell: &Ellipsoid,
    up_head: &Vector3<f64>,
    max_tilt_deg: f64,
) -> BTreeMap<RegionKind, f64> {
    let mut out = BTreeMap::new();
    let n_up = up_head.norm();
    if !(n_up.is_finite() && n_up > 0.0 && max_tilt_deg.is_finite()) {
        return out;
    }
    let up = up_head / n_up;
    let cos_max = max_tilt_deg.to_radians().cos();
    let semi = ell.semi_axes_mm;
    let step = 0.5f64.to_radians();
    let n_theta = (PI / step).round() as usize;
    let n_phi = (2.0 * PI / step).round() as usize;
    for i in 0..n_theta {
        let t = (i as f64 + 0.5) * step;
        for j in 0..n_phi {
            let p = -PI + (j as f64 + 0.5) * step;
            let q = param_point(semi, t, p);
            if ell.normal(&q).dot(&up) < cos_max {
                continue;
            }
            let area_cm2 = area_element(semi, t, p) * step * step / 100.0;
            *out.entry(regions.sample(&q).region).or_insert(0.0) += area_cm2;
        }
    }
    out
}

/// One natural follicle of the ground truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthFollicle {
    pub position_head_mm: [f64; 3],
    /// Outward unit normal of the skin there.
    pub normal_head: [f64; 3],
    pub diameter_mm: f64,
    /// 0 = skin colour, 1 = the patient's follicle colour.
    pub darkness: f64,
}

/// A generated patient: head, regions, skin and ground-truth follicles.
///
/// Ground truth (follicles, regions) is for rendering and evaluation only; the code under
/// test must learn the scalp from rendered images.
#[derive(Debug, Clone)]
pub struct SyntheticPatient {
    spec: PatientSpec,
    ellipsoid: Ellipsoid,
    regions: RegionModel,
    texture: SkinTexture,
    follicles: Vec<TruthFollicle>,
    positions: Vec<[f64; 3]>,
    /// Earlier SMP dots on the skin (generated from the spec, then any attached), with their
    /// positions and outward normals in parallel vectors for the renderer and for truth.
    prior_dots: Vec<PriorDot>,
    prior_positions: Vec<[f64; 3]>,
    prior_normals: Vec<[f64; 3]>,
    /// Head-band markers (ground truth; not rendered yet).
    fiducials: Vec<TruthFiducial>,
}

/// Parametric step of the sampling grid, degrees.
const SAMPLE_CELL_DEG: f64 = 1.0;
/// Placement attempts per follicle before a slot is given up (the spacing rejects it).
const MAX_ATTEMPTS: usize = 30;

/// Point on the ellipsoid at parametric angles (theta from +z, phi from +x).
fn param_point(semi: [f64; 3], theta: f64, phi: f64) -> Point3<f64> {
    let (st, ct, sp, cp) = (theta.sin(), theta.cos(), phi.sin(), phi.cos());
    Point3::new(semi[0] * st * cp, semi[1] * st * sp, semi[2] * ct)
}

/// Area element |dP/dtheta x dP/dphi| of the parametrisation, mm² per rad².
fn area_element(semi: [f64; 3], theta: f64, phi: f64) -> f64 {
    let [a, b, c] = semi;
    let (st, ct, sp, cp) = (theta.sin(), theta.cos(), phi.sin(), phi.cos());
    let dt = Vector3::new(a * ct * cp, b * ct * sp, -c * st);
    let dp = Vector3::new(-a * st * sp, b * st * cp, 0.0);
    dt.cross(&dp).norm()
}

/// Area of the parametric cell [t0, t1] x [p0, p1] (mm²) and an upper bound of its area
/// element (for rejection sampling uniformly by area inside the cell).
fn cell_area(semi: [f64; 3], t0: f64, t1: f64, p0: f64, p1: f64) -> (f64, f64) {
    let (tc, pc) = (0.5 * (t0 + t1), 0.5 * (p0 + p1));
    let area = area_element(semi, tc, pc) * (t1 - t0) * (p1 - p0);
    let elem_max = [(t0, p0), (t0, p1), (t1, p0), (t1, p1), (tc, pc)]
        .iter()
        .map(|(t, p)| area_element(semi, *t, *p))
        .fold(0.0, f64::max)
        * 1.02;
    (area, elem_max)
}

/// `expected` rounded up or down at random so that the mean is `expected`.
fn stochastic_round(rng: &mut ChaCha8Rng, expected: f64) -> usize {
    let mut n = expected.floor() as usize;
    if rng.random::<f64>() < expected - expected.floor() {
        n += 1;
    }
    n
}

/// A point uniform by surface area inside the parametric cell (rejection sampling).
fn sample_in_cell(
    rng: &mut ChaCha8Rng,
    semi: [f64; 3],
    t0: f64,
    t1: f64,
    p0: f64,
    p1: f64,
    elem_max: f64,
) -> (f64, f64) {
    loop {
        let t = rng.random_range(t0..t1);
        let p = rng.random_range(p0..p1);
        if rng.random::<f64>() * elem_max <= area_element(semi, t, p) {
            return (t, p);
        }
    }
}

impl SyntheticPatient {
    /// Builds the patient deterministically from `spec.seed`.
    ///
    /// Follicles are placed cell by cell on a 1° parametric grid over the hair-bearing scalp:
    /// each cell gets `max density x area` slots (stochastically rounded), each slot keeps a
    /// follicle with probability `local density / max density`, and a kept slot retries its
    /// position until it is at least `min_spacing_mm` from every earlier follicle. The result
    /// is Poisson-disk-like and follows the region densities, including their soft edges.
    /// `spec` is expected to be validated (as `from_toml_str` does); an unvalidated spec with
    /// nonsense numbers gives a patient with fewer or no follicles, never a panic.
    pub fn generate(spec: &PatientSpec) -> Self {
        let ellipsoid = Ellipsoid { semi_axes_mm: spec.head.semi_axes_mm };
        let mut region_rng = ChaCha8Rng::seed_from_u64(spec.seed);
        region_rng.set_stream(1);
        let regions = RegionModel::new(spec, &ellipsoid, &mut region_rng);
        let mut texture_rng = ChaCha8Rng::seed_from_u64(spec.seed);
        texture_rng.set_stream(2);
        let texture = SkinTexture::new(spec.tone.mottling, &mut texture_rng);
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(3);

        let f = &spec.follicles;
        let semi = spec.head.semi_axes_mm;
        let d_max = (f.hair_per_cm2.max(f.thinning_per_cm2).max(f.bald_per_cm2) / 100.0).max(0.0);
        let spacing = if f.min_spacing_mm.is_finite() && f.min_spacing_mm > 0.0 { f.min_spacing_mm } else { 0.5 };
        let mut grid = PointGrid::new(spacing);
        let mut follicles = Vec::new();

        // Cells further than this polar angle (plus margin) from the vertex hold no scalp.
        let max_lower =
            spec.scalp.lower_edge_deg.iter().map(|r| r[1]).fold(0.0, f64::max) + spec.scalp.edge_irregularity_deg + 5.0;
        let step = SAMPLE_CELL_DEG.to_radians();
        let n_theta = (180.0 / SAMPLE_CELL_DEG).round() as usize;
        let n_phi = (360.0 / SAMPLE_CELL_DEG).round() as usize;
        if d_max > 0.0 && d_max.is_finite() {
            for i in 0..n_theta {
                let (t0, t1) = (i as f64 * step, (i + 1) as f64 * step);
                for j in 0..n_phi {
                    let (p0, p1) = (-PI + j as f64 * step, -PI + (j + 1) as f64 * step);
                    let (tc, pc) = (0.5 * (t0 + t1), 0.5 * (p0 + p1));
                    let centre = param_point(semi, tc, pc);
                    let polar = (centre.x.hypot(centre.y)).atan2(centre.z).to_degrees();
                    if polar > max_lower {
                        continue;
                    }
                    let (area, elem_max) = cell_area(semi, t0, t1, p0, p1);
                    let slots = stochastic_round(&mut rng, d_max * area);
                    for _ in 0..slots {
                        for _ in 0..MAX_ATTEMPTS {
                            let (t, p) = sample_in_cell(&mut rng, semi, t0, t1, p0, p1, elem_max);
                            let q = param_point(semi, t, p);
                            let s = regions.sample(&q);
                            if rng.random::<f64>() * d_max >= s.density_per_mm2 {
                                break; // this slot is empty at the local density
                            }
                            let pos = [q.x, q.y, q.z];
                            if grid.any_within(pos, spacing) {
                                continue; // too close: try another spot in the cell
                            }
                            grid.insert(pos);
                            let n = ellipsoid.normal(&q);
                            let dn: f64 = rng.sample(StandardNormal);
                            let kn: f64 = rng.sample(StandardNormal);
                            let diameter_mm = (f.diameter_mm + f.diameter_sd_mm * dn)
                                .clamp(0.5 * f.diameter_mm, (1.5 * f.diameter_mm).min(spacing));
                            let darkness = (f.darkness + f.darkness_sd * kn).clamp(0.05, 1.0);
                            follicles.push(TruthFollicle {
                                position_head_mm: pos,
                                normal_head: [n.x, n.y, n.z],
                                diameter_mm,
                                darkness,
                            });
                            break;
                        }
                    }
                }
            }
        }
        let positions = follicles.iter().map(|f| f.position_head_mm).collect();
        let fiducials = spec.fiducials.iter().filter_map(|f| f.truth(&ellipsoid)).collect();
        let mut patient = SyntheticPatient {
            spec: spec.clone(),
            ellipsoid,
            regions,
            texture,
            follicles,
            positions,
            prior_dots: Vec::new(),
            prior_positions: Vec::new(),
            prior_normals: Vec::new(),
            fiducials,
        };
        let dots = patient.generate_prior_dots();
        // Generated dots lie on the surface by construction, so attaching cannot fail; a
        // failure would mean a bug, and the patient then simply has no prior dots.
        let _ = patient.attach_prior_dots(dots);
        patient
    }

    /// The spec's earlier-session dots: each `prior_sessions` entry placed over its regions
    /// (Poisson-disk-like at its density, `min_spacing_mm` from follicles and from every dot
    /// placed before), deposited by the skin model at its dwell, depth and dilution and healed
    /// for its weeks; then the explicit `prior_dots`. Seeded from `spec.seed` (stream 4).
    fn generate_prior_dots(&self) -> Vec<PriorDot> {
        let spec = &self.spec;
        let mut out = Vec::new();
        if spec.prior_sessions.is_empty() && spec.prior_dots.is_empty() {
            return out;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(4);
        let deposit_seed = spec.seed ^ 0xd0e5_1b5e_0000_0001;
        let heal_seed = spec.seed ^ 0x4ea1_0000_0000_0002;
        let follicle_grid = PointGrid::from_points(1.0, self.positions.iter().copied());
        let mut dot_grid = PointGrid::new(1.0);
        for ps in &spec.prior_sessions {
            let placed = self.place_prior_session(ps, &mut rng, &follicle_grid, &mut dot_grid);
            let inputs: Vec<DepositInput> = placed
                .iter()
                .map(|p| DepositInput {
                    entry: smp_core::NeedleEntry {
                        // No arm placed these: the base frame is unknown.
                        base_mm: [f64::NAN; 3],
                        head_mm: *p,
                        depth_mm: ps.depth_mm,
                        time_s: 0.0,
                    },
                    dwell_s: ps.dwell_s,
                    session: ps.session,
                    dilution_pct: ps.dilution_pct,
                })
                .collect();
            let fresh = deposit(&inputs, &spec.skin_response, deposit_seed).dots;
            out.extend(heal(&fresh, ps.weeks_healed, &spec.healing, heal_seed).dots);
        }
        // Listed dots are kept whatever the loss rate: the file says they are there.
        let keep_all = HealModel { lost_fraction: 0.0, ..spec.healing.clone() };
        for pd in &spec.prior_dots {
            let Some((q, _)) = self.project_to_surface(pd.position_head_mm) else { continue };
            let input = DepositInput {
                entry: smp_core::NeedleEntry {
                    base_mm: [f64::NAN; 3],
                    head_mm: [q.x, q.y, q.z],
                    depth_mm: pd.depth_mm,
                    time_s: 0.0,
                },
                dwell_s: pd.dwell_s,
                session: pd.session,
                dilution_pct: pd.dilution_pct,
            };
            let fresh = deposit(&[input], &spec.skin_response, deposit_seed).dots;
            for mut d in heal(&fresh, pd.weeks_healed, &keep_all, heal_seed).dots {
                if let Some(k) = pd.darkness {
                    let kept = if d.fresh_darkness > 0.0 { d.darkness / d.fresh_darkness } else { 1.0 };
                    d.darkness = k;
                    d.fresh_darkness = if kept > 0.0 { (k / kept).min(1.0) } else { k };
                }
                if let Some(dia) = pd.diameter_mm {
                    let grown = if d.fresh_diameter_mm > 0.0 { d.diameter_mm / d.fresh_diameter_mm } else { 1.0 };
                    d.diameter_mm = dia;
                    d.fresh_diameter_mm = dia / grown.max(1e-6);
                }
                out.push(d);
            }
        }
        out
    }

    /// Positions of one generated prior session (see [`Self::generate_prior_dots`]).
    fn place_prior_session(
        &self,
        ps: &PriorSessionSpec,
        rng: &mut ChaCha8Rng,
        follicles: &PointGrid,
        dots: &mut PointGrid,
    ) -> Vec<[f64; 3]> {
        let mut out = Vec::new();
        let density_per_mm2 = ps.density_per_cm2 / 100.0;
        let spacing = ps.min_spacing_mm;
        if !(density_per_mm2 > 0.0 && density_per_mm2.is_finite() && spacing > 0.0 && spacing.is_finite()) {
            return out;
        }
        let ell = &self.ellipsoid;
        let semi = ell.semi_axes_mm;
        let disc = ps
            .within
            .as_ref()
            .map(|d| (SurfaceFrame::new(ell, d.centre_polar_deg, d.centre_azimuth_deg, 0.0), d.radius_mm));
        let in_disc = |q: &Point3<f64>| {
            disc.as_ref().is_none_or(|(frame, r)| {
                // Only the near side: the tangent-plane coordinates fold over behind the head.
                let (u, v) = frame.local_mm(q);
                (q - frame.centre).dot(&frame.normal) > -*r && u.hypot(v) <= *r
            })
        };
        let step = SAMPLE_CELL_DEG.to_radians();
        let n_theta = (180.0 / SAMPLE_CELL_DEG).round() as usize;
        let n_phi = (360.0 / SAMPLE_CELL_DEG).round() as usize;
        for i in 0..n_theta {
            let (t0, t1) = (i as f64 * step, (i + 1) as f64 * step);
            for j in 0..n_phi {
                let (p0, p1) = (-PI + j as f64 * step, -PI + (j + 1) as f64 * step);
                let (tc, pc) = (0.5 * (t0 + t1), 0.5 * (p0 + p1));
                let centre = param_point(semi, tc, pc);
                if let Some((frame, r)) = &disc {
                    // A cell is at most ~3 mm across on a head: skip cells clearly outside.
                    if (centre - frame.centre).norm() > r + 4.0 {
                        continue;
                    }
                }
                let (area, elem_max) = cell_area(semi, t0, t1, p0, p1);
                let slots = stochastic_round(rng, density_per_mm2 * area);
                for _ in 0..slots {
                    for _ in 0..MAX_ATTEMPTS {
                        let (t, p) = sample_in_cell(rng, semi, t0, t1, p0, p1, elem_max);
                        let q = param_point(semi, t, p);
                        if !in_disc(&q) || !ps.regions.contains(&self.regions.sample(&q).region) {
                            break; // this slot falls outside the treated area
                        }
                        let pos = [q.x, q.y, q.z];
                        if follicles.any_within(pos, spacing) || dots.any_within(pos, spacing) {
                            continue;
                        }
                        dots.insert(pos);
                        out.push(pos);
                        break;
                    }
                }
            }
        }
        out
    }

    /// Radial projection onto the head surface with the outward normal there; `None` for
    /// the origin or a non-finite point.
    fn project_to_surface(&self, p: [f64; 3]) -> Option<(Point3<f64>, Vector3<f64>)> {
        let v = Vector3::from(p);
        let n = v.norm();
        if !(n.is_finite() && n > 1e-9) {
            return None;
        }
        let q = self.ellipsoid.point_in_direction(&(v / n));
        Some((q, self.ellipsoid.normal(&q)))
    }

    fn attach_prior_dots(&mut self, dots: Vec<PriorDot>) -> Result<(), SpecError> {
        let mut placed = Vec::with_capacity(dots.len());
        for (i, mut d) in dots.into_iter().enumerate() {
            let Some((q, n)) = self.project_to_surface(d.position_head_mm) else {
                return Err(SpecError::invalid(
                    PRIOR_DOTS_WHAT,
                    format!("[{i}].position_head_mm"),
                    format!("is {:?}; it must be a finite point away from the head centre", d.position_head_mm),
                ));
            };
            let sane = [d.diameter_mm, d.darkness, d.edge_softness_mm].iter().all(|v| v.is_finite() && *v >= 0.0);
            if !sane {
                return Err(SpecError::invalid(
                    PRIOR_DOTS_WHAT,
                    format!("[{i}]"),
                    "has a non-finite or negative diameter_mm, darkness or edge_softness_mm",
                ));
            }
            d.position_head_mm = [q.x, q.y, q.z];
            placed.push((d, [n.x, n.y, n.z]));
        }
        for (d, n) in placed {
            self.prior_positions.push(d.position_head_mm);
            self.prior_normals.push(n);
            self.prior_dots.push(d);
        }
        Ok(())
    }

    /// The patient with more earlier-session dots on the skin, e.g. the healed dots of a
    /// simulated session (`deposit` then `heal`): appended to those the spec generated.
    /// Each position is projected radially onto the head surface. A dot with a non-finite
    /// position or look is an error naming its index, and then none of `dots` is attached.
    pub fn with_prior_dots(mut self, dots: Vec<PriorDot>) -> Result<Self, SpecError> {
        self.attach_prior_dots(dots)?;
        Ok(self)
    }

    /// A copy of the patient with a session's needle entries deposited as fresh (unhealed)
    /// dots through its own skin response ([`Self::deposit`]), plus the deposit itself (its
    /// `dots` are the ones attached, in entry order). Why fresh: a dot left uncertain by a
    /// crash or a controller reset is checked by the camera minutes later, not weeks.
    /// Entries with a non-finite position deposit nothing (counted in `Deposit::skipped`).
    pub fn with_session_deposits(&self, inputs: &[DepositInput]) -> Result<(Self, Deposit), SpecError> {
        let deposit = self.deposit(inputs);
        let with = self.clone().with_prior_dots(deposit.dots.clone())?;
        Ok((with, deposit))
    }

    /// What the needle entries of a session leave in this patient's skin (the spec's
    /// `skin_response`, seeded from the patient's seed). Attach the result, healed, with
    /// [`Self::with_prior_dots`].
    pub fn deposit(&self, inputs: &[DepositInput]) -> Deposit {
        deposit(inputs, &self.spec.skin_response, self.spec.seed ^ 0xd0e5_1b5e_0000_0001)
    }

    /// Lets every prior dot heal for `weeks` more weeks (the spec's `healing` model, seeded
    /// from the patient's seed): what `smp sim heal --weeks N` does between sessions.
    /// Returns how many dots healing took.
    pub fn heal_prior_dots(&mut self, weeks: f64) -> usize {
        let healed = heal(&self.prior_dots, weeks, &self.spec.healing, self.spec.seed ^ 0x4ea1_0000_0000_0002);
        let lost: std::collections::BTreeSet<usize> = healed.lost.iter().copied().collect();
        let keep = |v: &Vec<[f64; 3]>| {
            v.iter().enumerate().filter(|(i, _)| !lost.contains(i)).map(|(_, p)| *p).collect::<Vec<_>>()
        };
        self.prior_positions = keep(&self.prior_positions);
        self.prior_normals = keep(&self.prior_normals);
        self.prior_dots = healed.dots;
        lost.len()
    }

    /// Ground-truth earlier SMP dots (position, session, healed look), for rendering and
    /// evaluation only.
    pub fn truth_prior_dots(&self) -> &[PriorDot] {
        &self.prior_dots
    }

    /// Ground-truth earlier SMP dot positions, head frame.
    pub fn truth_prior_dots_head(&self) -> &[[f64; 3]] {
        &self.prior_positions
    }

    /// Outward normals of the prior dots, parallel to [`Self::truth_prior_dots`].
    pub fn prior_dot_normals(&self) -> &[[f64; 3]] {
        &self.prior_normals
    }

    /// Ground-truth head-band markers (pose and corners, head frame), in spec order. A
    /// validated spec gives every marker; the simulator does not render them yet.
    pub fn truth_fiducials(&self) -> &[TruthFiducial] {
        &self.fiducials
    }

    /// Ground-truth marker corners `(id, [top-left, top-right, bottom-right, bottom-left])`,
    /// head frame, mm, in ArUco corner order, sorted by id.
    pub fn truth_fiducial_corners_head(&self) -> Vec<(u32, [[f64; 3]; 4])> {
        let mut out: Vec<_> = self.fiducials.iter().map(|f| (f.id, f.corners_head_mm)).collect();
        out.sort_by_key(|c| c.0);
        out
    }

    pub fn spec(&self) -> &PatientSpec {
        &self.spec
    }

    /// The head surface in the head frame.
    pub fn ellipsoid(&self) -> &Ellipsoid {
        &self.ellipsoid
    }

    /// Ground-truth natural follicles (positions, head frame), for rendering and evaluation.
    pub fn truth_follicles_head(&self) -> &[[f64; 3]] {
        &self.positions
    }

    /// Ground-truth follicles with normal, diameter and darkness.
    pub fn truth_follicles(&self) -> &[TruthFollicle] {
        &self.follicles
    }

    /// Region of the scalp at a point (projected radially onto the head surface first).
    /// Face, ears and neck are `Outside`: skin that is not scalp.
    pub fn region_at_head(&self, p_head: &Point3<f64>) -> RegionKind {
        match self.surface_point_toward(p_head) {
            Some(q) => self.regions.sample(&q).region,
            None => RegionKind::Outside,
        }
    }

    /// Expected follicle density at a point (projected radially onto the surface), per cm².
    pub fn density_per_cm2_at_head(&self, p_head: &Point3<f64>) -> f64 {
        self.surface_point_toward(p_head).map_or(0.0, |q| self.regions.sample(&q).density_per_mm2 * 100.0)
    }

    fn surface_point_toward(&self, p_head: &Point3<f64>) -> Option<Point3<f64>> {
        let n = p_head.coords.norm();
        if !n.is_finite() || n < 1e-9 {
            return None;
        }
        Some(self.ellipsoid.point_in_direction(&(p_head.coords / n)))
    }

    /// Height (base z) of the skin under the vertical line (x, y) in the base frame, if it
    /// hits the head: what a vertical needle descending there would touch first.
    pub fn surface_z_base(&self, base_from_head: &Isometry3<f64>, x_mm: f64, y_mm: f64) -> Option<f64> {
        let reach = self.ellipsoid.semi_axes_mm.iter().fold(0.0, |m: f64, v| m.max(*v));
        let top = base_from_head.translation.vector.z + 2.0 * reach + 10.0;
        let head_from_base = base_from_head.inverse();
        let origin = head_from_base * Point3::new(x_mm, y_mm, top);
        let dir = head_from_base * -Vector3::z();
        let t = self.ellipsoid.intersect_ray(&origin, &dir)?;
        Some(top - t)
    }

    /// Area (cm²) of each region over the part of the scalp whose outward normal is within
    /// `max_tilt_deg` of `up_head` (e.g. [`up_direction_head`]): what a vertical needle can
    /// treat. Integrated on a 0.5° grid; for reports and tests.
    pub fn region_areas_cm2(&self, up_head: &Vector3<f64>, max_tilt_deg: f64) -> BTreeMap<RegionKind, f64> {
        region_areas_cm2(&self.regions, &self.ellipsoid, up_head, max_tilt_deg)
    }

    /// Skin sample for the renderer.
    pub(crate) fn sample_surface(&self, p_head: &Point3<f64>) -> SurfaceSample {
        self.regions.sample(p_head)
    }

    /// Mottling brightness factor for the renderer.
    pub(crate) fn mottle(&self, p_head: &Point3<f64>) -> f64 {
        self.texture.factor(p_head)
    }

    /// Hair density at which `tone.hair_shadow` applies in full, per mm².
    pub(crate) fn full_density_per_mm2(&self) -> f64 {
        self.regions.hair_per_mm2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use smp_core::rig::Rig;

    fn default_patient() -> &'static SyntheticPatient {
        static P: std::sync::OnceLock<SyntheticPatient> = std::sync::OnceLock::new();
        P.get_or_init(|| SyntheticPatient::generate(&default_spec()))
    }

    proptest! {
        #[test]
        fn region_depends_only_on_the_direction(polar in 0.0f64..180.0, az in -180.0f64..180.0, r in 1.0f64..300.0) {
            let p = default_patient();
            let d = direction_from_angles_deg(polar, az);
            prop_assert_eq!(p.region_at_head(&Point3::from(d * r)), p.region_at_head(&Point3::from(d * 50.0)));
        }

        #[test]
        fn a_vertical_needle_meets_the_skin_first_at_surface_z(dx in -120.0f64..120.0, dy in -100.0f64..100.0) {
            let p = default_patient();
            let bfh = Rig::default_sim().base_from_head_nominal();
            let (x, y) = (bfh.translation.vector.x + dx, bfh.translation.vector.y + dy);
            if let Some(z) = p.surface_z_base(&bfh, x, y) {
                let on = bfh.inverse() * Point3::new(x, y, z);
                prop_assert!(p.ellipsoid().implicit(&on).abs() < 1e-9);
                for k in 1..20 {
                    let above = bfh.inverse() * Point3::new(x, y, z + k as f64 * 10.0);
                    prop_assert!(p.ellipsoid().implicit(&above) > 0.0, "skin above the reported surface");
                }
            } else {
                for k in 0..40 {
                    let q = bfh.inverse() * Point3::new(x, y, bfh.translation.vector.z - 200.0 + k as f64 * 10.0);
                    prop_assert!(p.ellipsoid().implicit(&q) > 0.0, "missed a head that is there");
                }
            }
        }
    }

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
    fn generation_is_deterministic_and_seed_dependent() {
        let spec = default_spec();
        let a = SyntheticPatient::generate(&spec);
        let b = SyntheticPatient::generate(&spec);
        assert_eq!(a.truth_follicles(), b.truth_follicles());
        assert!(a.truth_follicles_head().len() > 10_000, "{} follicles", a.truth_follicles_head().len());
        let mut other = spec.clone();
        other.seed += 1;
        let c = SyntheticPatient::generate(&other);
        assert_ne!(a.truth_follicles_head(), c.truth_follicles_head());
    }

    #[test]
    fn follicles_keep_min_spacing_and_sit_on_hair_bearing_skin() {
        let spec = default_spec();
        let p = SyntheticPatient::generate(&spec);
        let s = spec.follicles.min_spacing_mm;
        let grid = PointGrid::from_points(s, p.truth_follicles_head().iter().copied());
        for (i, f) in p.truth_follicles_head().iter().enumerate() {
            grid.for_each_within(*f, s - 1e-9, |j, d| {
                assert!(j as usize == i, "follicles {i} and {j} are {d} mm apart (< {s})");
            });
            let q = Point3::from(*f);
            assert!(p.ellipsoid().implicit(&q).abs() < 1e-9, "follicle {i} off the surface");
            let r = p.region_at_head(&q);
            assert!(!matches!(r, RegionKind::Outside | RegionKind::Scar), "follicle {i} in {r:?}");
        }
    }

    #[test]
    fn densities_follow_the_regions() {
        let spec = default_spec();
        let p = SyntheticPatient::generate(&spec);
        let mut counts: BTreeMap<RegionKind, usize> = BTreeMap::new();
        for f in p.truth_follicles_head() {
            *counts.entry(p.region_at_head(&Point3::from(*f))).or_insert(0) += 1;
        }
        let all = p.region_areas_cm2(&Vector3::z(), 180.0);
        let hair = counts.get(&RegionKind::Hair).copied().unwrap_or(0) as f64 / all[&RegionKind::Hair];
        // Soft edges move a little density across labels; the bulk is at the requested level.
        assert!((hair - spec.follicles.hair_per_cm2).abs() < 0.1 * spec.follicles.hair_per_cm2, "hair {hair}/cm²");
        let thin = counts.get(&RegionKind::Thinning).copied().unwrap_or(0) as f64 / all[&RegionKind::Thinning];
        assert!(
            thin > 0.6 * spec.follicles.thinning_per_cm2 && thin < 2.0 * spec.follicles.thinning_per_cm2,
            "thinning {thin}/cm²"
        );
        let bald = counts.get(&RegionKind::Bald).copied().unwrap_or(0) as f64 / all[&RegionKind::Bald];
        assert!(bald < 0.25 * spec.follicles.thinning_per_cm2, "bald {bald}/cm²");
        assert_eq!(counts.get(&RegionKind::Scar), None);
    }

    #[test]
    fn regions_are_where_the_spec_puts_them() {
        let spec = default_spec();
        let p = SyntheticPatient::generate(&spec);
        let at = |polar: f64, az: f64| p.region_at_head(&Point3::from(direction_from_angles_deg(polar, az) * 50.0));
        // Face, ear level, neck: not scalp.
        assert_eq!(at(90.0, 0.0), RegionKind::Outside);
        assert_eq!(at(110.0, 90.0), RegionKind::Outside);
        assert_eq!(at(150.0, 180.0), RegionKind::Outside);
        // Crown centre is bald; the fringe at the back and sides is hair.
        let c = &spec.crown;
        assert_eq!(at(c.centre_polar_deg, c.centre_azimuth_deg), RegionKind::Bald);
        assert_eq!(at(90.0, 180.0), RegionKind::Hair);
        assert_eq!(at(75.0, 90.0), RegionKind::Hair);
        assert_eq!(at(75.0, -90.0), RegionKind::Hair);
        // Frontal recession: just below the natural front edge is receded (bald) skin.
        let natural = spec.scalp.lower_edge_deg[0][1];
        assert_eq!(at(natural - 2.0, 0.0), RegionKind::Bald);
        // The scar centre is scar.
        let ScarSpec::Ellipse(s) = &spec.scars[0] else { panic!("the default scar is an ellipse") };
        assert_eq!(at(s.centre_polar_deg, s.centre_azimuth_deg), RegionKind::Scar);
        // No point: outside.
        assert_eq!(p.region_at_head(&Point3::origin()), RegionKind::Outside);
    }

    #[test]
    fn up_facing_crown_is_treatable_and_holds_scar_and_follicles() {
        let spec = default_spec();
        let p = SyntheticPatient::generate(&spec);
        let rig = Rig::default_sim();
        let up = up_direction_head(&rig.base_from_head_nominal());
        let areas = p.region_areas_cm2(&up, 25.0);
        let get = |r| areas.get(&r).copied().unwrap_or(0.0);
        let treatable = get(RegionKind::Thinning) + get(RegionKind::Bald) + get(RegionKind::Scar);
        assert!(treatable > 30.0, "treatable {treatable} cm² ({areas:?})");
        assert!(get(RegionKind::Scar) > 0.5, "scar {areas:?}");
        assert!(get(RegionKind::Outside) == 0.0, "{areas:?}");
        let cos25 = 25f64.to_radians().cos();
        let up_follicles =
            p.truth_follicles().iter().filter(|f| Vector3::from(f.normal_head).dot(&up) >= cos25).count();
        assert!(up_follicles > 150, "{up_follicles} follicles face up");
    }

    const FOLLOWUP_TOML: &str = include_str!("../../../sim/patients/followup-s2.toml");

    fn followup() -> &'static SyntheticPatient {
        static P: std::sync::OnceLock<SyntheticPatient> = std::sync::OnceLock::new();
        P.get_or_init(|| SyntheticPatient::generate(&PatientSpec::from_toml_str(FOLLOWUP_TOML).expect("parses")))
    }

    #[test]
    fn followup_patient_carries_healed_session_one_dots_between_its_follicles() {
        let spec = PatientSpec::from_toml_str(FOLLOWUP_TOML).expect("follow-up patient parses");
        let back = PatientSpec::from_toml_str(&spec.to_toml_string().expect("serialises")).expect("re-parses");
        assert_eq!(spec, back);
        let p = followup();
        // Same follicles as the default patient: the prior dots come on top (stream 4).
        assert_eq!(p.truth_follicles(), default_patient().truth_follicles());
        assert!(default_patient().truth_prior_dots().is_empty());
        let dots = p.truth_prior_dots();
        let ps = &spec.prior_sessions[0];
        // ~25/cm² over the bald and thinning part of a 40 mm disc (~50 cm²), less the lost 2 %.
        assert!(dots.len() > 600 && dots.len() < 1400, "{} prior dots", dots.len());
        assert_eq!(p.truth_prior_dots_head().len(), dots.len());
        let follicles = PointGrid::from_points(1.0, p.truth_follicles_head().iter().copied());
        let generated = &dots[..dots.len() - spec.prior_dots.len()];
        let grid = PointGrid::from_points(1.0, generated.iter().map(|d| d.position_head_mm));
        let within = ps.within.as_ref().expect("disc");
        let frame = SurfaceFrame::new(p.ellipsoid(), within.centre_polar_deg, within.centre_azimuth_deg, 0.0);
        for (i, d) in generated.iter().enumerate() {
            let q = Point3::from(d.position_head_mm);
            assert!(p.ellipsoid().implicit(&q).abs() < 1e-9, "dot {i} off the surface");
            assert!(!follicles.any_within(d.position_head_mm, ps.min_spacing_mm), "dot {i} crowds a follicle");
            grid.for_each_within(d.position_head_mm, ps.min_spacing_mm - 1e-9, |j, dist| {
                assert!(j as usize == i, "dots {i} and {j} are {dist} mm apart");
            });
            assert!(ps.regions.contains(&p.region_at_head(&q)), "dot {i} in {:?}", p.region_at_head(&q));
            let (u, v) = frame.local_mm(&q);
            assert!(u.hypot(v) <= within.radius_mm + 1e-9);
            assert_eq!((d.session, d.weeks_healed), (1, 6.0));
            // Healed: 0.3-0.6 mm, lighter than the follicles (0.85), blue-grey.
            assert!(d.diameter_mm > 0.3 && d.diameter_mm < 0.6, "dot {i}: {d:?}");
            assert!(d.darkness < 0.75, "dot {i}: {d:?}");
            assert!(d.srgb[2] > d.srgb[0], "dot {i}: {d:?}");
        }
        // The hand-listed blowout is wider than any generated dot.
        let blowout = dots.last().expect("listed dots");
        assert!(blowout.blowout && blowout.diameter_mm > 0.7, "{blowout:?}");
        // Deterministic.
        let again = SyntheticPatient::generate(&spec);
        assert_eq!(again.truth_prior_dots(), dots);
    }

    #[test]
    fn session_deposits_attach_fresh_dots_to_a_copy() {
        let patient = SyntheticPatient::generate(&default_spec());
        let before = patient.truth_prior_dots().len();
        let at = |p: [f64; 3]| smp_core::NeedleEntry { base_mm: [f64::NAN; 3], head_mm: p, depth_mm: 1.0, time_s: 0.0 };
        let entries = [at([-30.0, 5.0, 82.0]), at([f64::NAN, 0.0, 0.0]), at([-30.0, 8.0, 82.0])];
        let inputs = DepositInput::for_session(&entries, 0.1, 2, 40.0);
        let (with, deposit) = patient.with_session_deposits(&inputs).expect("deposit");
        assert_eq!((deposit.dots.len(), deposit.skipped), (2, 1));
        assert_eq!(patient.truth_prior_dots().len(), before, "the original is untouched");
        let added = &with.truth_prior_dots()[before..];
        assert_eq!(added.len(), 2);
        for d in added {
            assert_eq!((d.weeks_healed, d.session), (0.0, 2));
            assert_eq!(d.srgb, patient.spec().skin_response.ink_srgb);
            // Projected onto the head surface.
            assert!(patient.ellipsoid().implicit(&Point3::from(d.position_head_mm)).abs() < 1e-6);
        }
    }

    #[test]
    fn listed_prior_dots_take_their_given_look() {
        let mut spec = default_spec();
        spec.prior_dots.push(PriorDotSpec {
            position_head_mm: [-37.0, 0.0, 80.0],
            session: 2,
            weeks_healed: 3.0,
            diameter_mm: Some(0.5),
            darkness: Some(0.4),
            dwell_s: 0.1,
            depth_mm: 1.0,
            dilution_pct: 30.0,
        });
        spec.validate().expect("valid");
        let p = SyntheticPatient::generate(&spec);
        let d = p.truth_prior_dots()[0];
        assert_eq!((d.diameter_mm, d.darkness, d.session, d.weeks_healed), (0.5, 0.4, 2, 3.0));
        assert!(p.ellipsoid().implicit(&Point3::from(d.position_head_mm)).abs() < 1e-9, "projected onto the skin");
        // Healing on from the given look keeps fading it.
        let mut later = p.clone();
        // (Later healing applies the full model, loss included; this dot's seeded fate keeps it.)
        assert_eq!(later.heal_prior_dots(8.0), 0);
        let h = later.truth_prior_dots()[0];
        assert!(h.darkness < 0.4 && h.darkness > 0.25, "{h:?}");
    }

    #[test]
    fn simulated_session_dots_attach_and_heal() {
        let p = default_patient().clone();
        let up = up_direction_head(&Rig::default_sim().base_from_head_nominal());
        let centre = p.ellipsoid().point_in_direction(&up);
        let entries: Vec<smp_core::NeedleEntry> = (0..50)
            .map(|k| {
                let q = p.ellipsoid().point_in_direction(&(centre.coords + Vector3::new(k as f64 * 1.1, 0.0, 0.0)));
                smp_core::NeedleEntry { base_mm: [0.0; 3], head_mm: [q.x, q.y, q.z], depth_mm: 1.0, time_s: k as f64 }
            })
            .collect();
        let fresh = p.deposit(&DepositInput::for_session(&entries, 0.1, 1, 50.0));
        assert_eq!((fresh.dots.len(), fresh.merged.len()), (50, 0));
        let mut p = p.with_prior_dots(fresh.dots.clone()).expect("attach");
        assert_eq!(p.truth_prior_dots_head().len(), 50);
        let lost = p.heal_prior_dots(4.0);
        assert_eq!(p.truth_prior_dots().len() + lost, 50);
        assert_eq!(p.truth_prior_dots_head().len(), p.truth_prior_dots().len());
        assert!(p.truth_prior_dots().iter().all(|d| d.weeks_healed == 4.0 && d.darkness < 0.7));
        let mut bad = fresh.dots[0];
        bad.position_head_mm = [f64::NAN, 0.0, 0.0];
        let err = p.clone().with_prior_dots(vec![fresh.dots[1], bad]).expect_err("NaN position");
        assert!(matches!(&err, SpecError::Invalid { field, .. } if field == "[1].position_head_mm"), "{err}");
        assert_eq!(p.truth_prior_dots().len() + lost, 50, "nothing attached on error");
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
        let err =
            PatientSpec::from_toml_str(&with(&format!("{session}regions = [\"outside\"]\n"))).expect_err("outside");
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

    #[test]
    fn surface_height_under_a_vertical_line() {
        let spec = default_spec();
        let p = SyntheticPatient::generate(&spec);
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let c = bfh.translation.vector;
        let z = p.surface_z_base(&bfh, c.x, c.y).expect("hits the head");
        let top = bfh * p.ellipsoid().point_in_direction(&up_direction_head(&bfh));
        assert!(z > c.z + 80.0 && z <= top.z + 1e-6, "z {z}, top {}", top.z);
        let hit = bfh.inverse() * Point3::new(c.x, c.y, z);
        assert!(p.ellipsoid().implicit(&hit).abs() < 1e-9);
        assert_eq!(p.surface_z_base(&bfh, c.x + 500.0, c.y), None);
        assert_eq!(p.surface_z_base(&bfh, f64::NAN, c.y), None);
    }
}

/// Tests of the clinical presets, scar shapes and fiducials as they reach a generated patient.
#[cfg(test)]
mod preset_tests {
    use super::*;

    fn file(name: &str) -> PatientSpec {
        let path = format!("{}/../../sim/patients/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("patient file readable");
        PatientSpec::from_toml_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Bit-level fingerprint of the generated truth (follicles, prior dots).
    fn fingerprint(p: &SyntheticPatient) -> u64 {
        let mut h: u64 = 0;
        for f in p.truth_follicles() {
            for v in f.position_head_mm.iter().chain(&f.normal_head).chain([&f.diameter_mm, &f.darkness]) {
                h = h.wrapping_mul(0x100_0000_01b3).wrapping_add(v.to_bits());
            }
        }
        for d in p.truth_prior_dots() {
            for v in d.position_head_mm.iter().chain([&d.diameter_mm, &d.darkness]) {
                h = h.wrapping_mul(0x100_0000_01b3).wrapping_add(v.to_bits());
            }
        }
        h
    }

    /// Pinned from the code before the clinical presets existed: tests/ and the demo depend
    /// on these patients bit for bit.
    #[test]
    fn existing_patients_are_unchanged() {
        let p = SyntheticPatient::generate(&file("default.toml"));
        let f = p.truth_follicles();
        assert_eq!(f.len(), 26535);
        assert_eq!(f[0].position_head_mm, [0.3011990909851754, -1.2437406316468698, 87.98896526225751]);
        assert_eq!(f[0].diameter_mm, 0.31852805937069406);
        assert_eq!(f[0].darkness, 0.8565833997276455);
        assert_eq!(f[1].position_head_mm, [0.369840757722991, -0.27820623639988035, 87.9988660349441]);
        assert_eq!(f[f.len() - 1].position_head_mm, [-84.62365896043079, 0.23131449837223544, -46.88635326156424]);
        assert_eq!(fingerprint(&p), 0xc2ff_ec21_c2fa_b81e);
        let p = SyntheticPatient::generate(&file("followup-s2.toml"));
        assert_eq!((p.truth_follicles().len(), p.truth_prior_dots().len()), (26535, 1099));
        assert_eq!(fingerprint(&p), 0x6307_8d31_1474_1b28);
        let p = SyntheticPatient::generate(&file("norwood6.toml"));
        assert_eq!(p.truth_follicles().len(), 5795);
        assert_eq!(fingerprint(&p), 0x8529_b5dc_bb78_47a2);
    }

    #[test]
    fn every_shipped_patient_parses_generates_and_round_trips() {
        let dir = format!("{}/../../sim/patients", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("sim/patients")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        assert!(names.len() >= 9, "{names:?}");
        for name in &names {
            let spec = file(name);
            let back = PatientSpec::from_toml_str(&spec.to_toml_string().expect("serialises")).expect("re-parses");
            assert_eq!(spec, back, "{name}");
            assert!(spec.intake.is_some(), "{name} has an [intake]");
            let p = SyntheticPatient::generate(&spec);
            assert!(p.truth_follicles().len() > 1000, "{name}: {} follicles", p.truth_follicles().len());
            assert_eq!(p.truth_fiducials().len(), spec.fiducials.len(), "{name}");
        }
    }

    fn minimal(extra: &str) -> String {
        format!("version = 1\nname = \"t\"\nseed = 7\n{extra}\n[head]\nsemi_axes_mm = [100.0, 80.0, 88.0]\n")
    }

    fn clinical(norwood: u8, fitzpatrick: u8) -> PatientSpec {
        let text = minimal(&format!("norwood = {norwood}"))
            + &format!("[skin]\nfitzpatrick = {fitzpatrick}\n[hair]\ncolor = \"black\"\ndensity_per_cm2 = 70.0\nthinning_density_per_cm2 = 18.0\n");
        PatientSpec::from_toml_str(&text).unwrap_or_else(|e| panic!("norwood {norwood}: {e}"))
    }

    fn areas(spec: &PatientSpec) -> BTreeMap<RegionKind, f64> {
        let ell = Ellipsoid { semi_axes_mm: spec.head.semi_axes_mm };
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(1);
        region_areas_cm2(&RegionModel::new(spec, &ell, &mut rng), &ell, &Vector3::z(), 180.0)
    }

    #[test]
    fn bald_area_grows_with_the_norwood_stage() {
        let mut last = -1.0;
        let mut report = Vec::new();
        for stage in 1..=7u8 {
            let a = areas(&clinical(stage, 3));
            let bald = a.get(&RegionKind::Bald).copied().unwrap_or(0.0);
            let hair = a.get(&RegionKind::Hair).copied().unwrap_or(0.0);
            report.push((stage, bald.round(), hair.round()));
            assert!(bald > last, "stage {stage}: bald {bald} cm² not above {last} ({report:?})");
            last = bald;
        }
        // Stage 7 leaves a fringe only: more bald than hair-bearing scalp.
        let a = areas(&clinical(7, 3));
        let get = |r| a.get(&r).copied().unwrap_or(0.0);
        println!("areas by stage (stage, bald, hair): {report:?}; stage 7 {a:?}");
        assert!(get(RegionKind::Hair) > 80.0 && get(RegionKind::Bald) > get(RegionKind::Hair), "{a:?}");
        // The shipped files follow the same order.
        let shipped = ["norwood2-fitz1-blond.toml", "norwood5-fitz5-black.toml", "norwood7-fitz6-grey.toml"];
        let bald: Vec<f64> =
            shipped.iter().map(|n| areas(&file(n)).get(&RegionKind::Bald).copied().unwrap_or(0.0)).collect();
        assert!(bald.windows(2).all(|w| w[1] > w[0]), "{bald:?}");
    }

    #[test]
    fn skin_lightness_falls_with_the_fitzpatrick_type() {
        let l: Vec<f64> = (1..=6).map(|k| smp_core::color::srgb_to_lab(clinical(4, k).tone.skin_srgb)[0]).collect();
        assert!(l.windows(2).all(|w| w[1] < w[0] - 5.0), "{l:?}");
        for k in 1..=6u8 {
            let t = clinical(4, k).tone;
            assert!(smp_core::color::srgb_to_lab(t.scar_srgb)[0] > smp_core::color::srgb_to_lab(t.skin_srgb)[0]);
        }
    }

    #[test]
    fn hair_colour_sets_the_follicle_look_and_densities() {
        let blond = file("norwood2-fitz1-blond.toml");
        let black = file("norwood5-fitz5-black.toml");
        assert!(blond.follicles.darkness < black.follicles.darkness);
        assert!(blond.tone.follicle_srgb[0] > black.tone.follicle_srgb[0]);
        assert_eq!((blond.follicles.hair_per_cm2, blond.follicles.thinning_per_cm2), (80.0, 30.0));
        assert_eq!(blond.follicles.diameter_mm, 0.30, "default when neither table gives it");
    }

    #[test]
    fn explicit_low_level_values_override_the_presets() {
        let spec = file("norwood4-fitz2-red-scar.toml");
        let preset = crate::patient_presets::norwood_preset(4).expect("stage 4").crown();
        assert_eq!(spec.crown.centre_polar_deg, 20.0);
        assert_eq!(spec.crown.bald_radii_mm, preset.bald_radii_mm);
        assert_eq!(file("norwood6-fitz4-light-brown-lab.toml").tone.mottling, 0.05);
    }

    #[test]
    fn the_donor_strip_is_scar_and_the_polyline_scar_too() {
        let spec = file("norwood3-fitz3-brown-donor-strip.toml");
        let ScarSpec::Polyline(strip) = &spec.scars[0] else { panic!("preset resolves to a polyline") };
        let p = SyntheticPatient::generate(&spec);
        for (k, q) in strip.points_head_mm.iter().enumerate() {
            assert_eq!(p.region_at_head(&Point3::from(*q)), RegionKind::Scar, "strip point {k}");
        }
        // 5 mm above the strip's middle is the fringe again.
        let mid = Vector3::from(strip.points_head_mm[strip.points_head_mm.len() / 2]);
        let above = mid + Vector3::z() * 5.0;
        assert_ne!(p.region_at_head(&Point3::from(above)), RegionKind::Scar);
        let a = p.region_areas_cm2(&Vector3::z(), 180.0);
        // 200 mm x 4 mm = 8 cm², plus the rounded ends.
        assert!((a[&RegionKind::Scar] - 8.0).abs() < 1.0, "{a:?}");
        // No follicle grows in it.
        assert!(p.truth_follicles_head().iter().all(|f| p.region_at_head(&Point3::from(*f)) != RegionKind::Scar));

        let spec = file("norwood4-fitz2-red-scar.toml");
        let ScarSpec::Polyline(line) = &spec.scars[0] else { panic!("polyline") };
        let p = SyntheticPatient::generate(&spec);
        assert_eq!(p.region_at_head(&Point3::from(line.points_head_mm[1])), RegionKind::Scar);
        let s = p.sample_surface(&p.ellipsoid().point_in_direction(&Vector3::from(line.points_head_mm[1]).normalize()));
        assert!((s.scar_sd_mm + 1.25).abs() < 1e-6, "on the line: -half width, {s:?}");
    }

    #[test]
    fn fiducial_corners_are_exposed_in_head_frame() {
        let p = SyntheticPatient::generate(&file("norwood3-fitz3-brown-donor-strip.toml"));
        let corners = p.truth_fiducial_corners_head();
        assert_eq!(corners.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        for (id, c) in &corners {
            let side = (Vector3::from(c[1]) - Vector3::from(c[0])).norm();
            assert!((side - 16.0).abs() < 1e-9, "marker {id}");
            for q in c {
                assert!(p.ellipsoid().implicit(&Point3::from(*q)) > 0.0, "marker {id} corner inside the head");
            }
        }
    }

    fn field_of(text: &str) -> (String, String) {
        match PatientSpec::from_toml_str(text) {
            Err(SpecError::Invalid { field, problem, .. }) => (field, problem),
            other => (format!("{other:?}"), String::new()),
        }
    }

    #[test]
    fn missing_or_bad_clinical_fields_name_both_ways() {
        let hair = "[hair]\ncolor = \"brown\"\ndensity_per_cm2 = 70.0\nthinning_density_per_cm2 = 18.0\n";
        let (f, msg) = field_of(&(minimal("norwood = 3") + hair));
        assert_eq!(f, "tone.skin_srgb");
        assert!(msg.contains("fitzpatrick") && msg.contains("lab"), "{msg}");
        let (f, msg) = field_of(&(minimal("") + "[skin]\nfitzpatrick = 2\n" + hair));
        assert_eq!(f, "hairline.front_recession_deg");
        assert!(msg.contains("norwood"), "{msg}");
        let (f, _) = field_of(&(minimal("norwood = 8") + "[skin]\nfitzpatrick = 2\n" + hair));
        assert_eq!(f, "norwood");
        let (f, _) = field_of(&(minimal("norwood = 2") + "[skin]\nfitzpatrick = 7\n" + hair));
        assert_eq!(f, "skin.fitzpatrick");
        let (f, _) = field_of(&(minimal("norwood = 2") + "[skin]\nfitzpatrick = 2\nlab = [60.0, 10.0, 20.0]\n" + hair));
        assert_eq!(f, "skin");
        let (f, msg) = field_of(&(minimal("norwood = 2") + "[skin]\nfitzpatrick = 2\n[hair]\ncolor = \"brown\"\n"));
        assert_eq!(f, "follicles.hair_per_cm2");
        assert!(msg.contains("density_per_cm2"), "{msg}");
        let ok = minimal("norwood = 2") + "[skin]\nfitzpatrick = 2\n" + hair;
        PatientSpec::from_toml_str(&ok).expect("complete clinical spec");
        let (f, _) = field_of(&format!("{ok}[[scars]]\npreset = \"donor_strip\"\nhalf_width_mm = 2.0\n"));
        assert_eq!(f, "scars[0]");
        let (f, _) = field_of(&format!("{ok}[[scars]]\npoints_head_mm = [[0.0, 0.0, 88.0], [-10.0, 0.0, 87.0]]\n"));
        assert_eq!(f, "scars[0].width_mm");
        let (f, _) = field_of(&format!(
            "{ok}[[scars]]\npoints_head_mm = [[0.0, 0.0, 88.0], [0.0, 0.0, 40.0]]\nwidth_mm = 2.0\n"
        ));
        assert_eq!(f, "scars[0].points_head_mm[1]");
        let marker = "[[fiducials]]\nid = 4\nsize_mm = 15.0\nazimuth_deg = 0.0\nheight_mm = 20.0\n";
        let (f, _) = field_of(&format!("{ok}{marker}{marker}"));
        assert_eq!(f, "fiducials[1].id");
    }
}

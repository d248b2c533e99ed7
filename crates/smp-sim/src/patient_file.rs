//! The patient file as people write it, before presets are applied: every low-level table
//! (`[tone]`, `[follicles]`, `[scalp]`, `[hairline]`, `[crown]`) may be partial or absent
//! when the clinical words (`norwood`, `[skin]`, `[hair]`) provide its numbers.
//!
//! Why a separate layer: the rest of the simulator reads one fully resolved
//! [`PatientSpec`], so that the renderer, the truth map and the CLI never need to know which
//! way a number was given. Resolution happens once, here, field by field: an explicit
//! low-level value wins, then the preset, then (only for the shape parameters that no
//! clinical word describes) the default patient's value. A number that none of them gives is
//! an error that names both ways of giving it.
//!
//! Invariant: a file that gives every low-level table in full (as `sim/patients/default.toml`
//! does) resolves to exactly the spec it spells out, so old files generate the same patient
//! bit for bit.

use serde::{Deserialize, Serialize};
use smp_core::error::check_version;
use smp_core::geometry::Ellipsoid;
use smp_core::intake::{HairColor, PatientIntake};
use smp_core::{SpecError, TOML_FORMAT_VERSION};

use crate::fiducial::FiducialSpec;
use crate::motion_model::MicroMotionSpec;
use crate::patient::{
    CrownSpec, EllipseScarSpec, FollicleSpec, HairlineSpec, HeadSpec, PatientSpec, PolylineScarSpec, PriorDotSpec,
    PriorSessionSpec, ScalpSpec, ScarSpec, ToneSpec,
};
use crate::patient_presets::{
    donor_strip_points, fitzpatrick_lab, follicle_look, lab_to_srgb, norwood_preset, scar_srgb_for_skin,
};
use crate::skin::{HealModel, SkinResponse};

const W: &str = PatientSpec::WHAT;

/// Skin colour in clinical terms: a Fitzpatrick type or a measured CIELAB colour (exactly
/// one). Fills `tone.skin_srgb` and, unless given, `tone.scar_srgb`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkinSpec {
    /// Fitzpatrick type 1-6 (I-VI); see [`crate::patient_presets::FITZPATRICK_LAB`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitzpatrick: Option<u8>,
    /// CIELAB (D65) `[L, a, b]` of the skin under the rig's light.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<[f64; 3]>,
}

/// Hair in clinical terms. Fills `tone.follicle_srgb`, `follicles.darkness` and the
/// follicle densities unless `[tone]` / `[follicles]` give them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HairSpec {
    /// The intake's hair colour names (black, dark_brown, brown, light_brown, blond, red,
    /// grey, white).
    pub color: HairColor,
    /// Follicular units per cm² where hair grows fully (-> `follicles.hair_per_cm2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density_per_cm2: Option<f64>,
    /// What remains in thinning regions, per cm² (-> `follicles.thinning_per_cm2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinning_density_per_cm2: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialTone {
    skin_srgb: Option<[u8; 3]>,
    scar_srgb: Option<[u8; 3]>,
    follicle_srgb: Option<[u8; 3]>,
    mottling: Option<f64>,
    hair_shadow: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialFollicles {
    diameter_mm: Option<f64>,
    diameter_sd_mm: Option<f64>,
    darkness: Option<f64>,
    darkness_sd: Option<f64>,
    min_spacing_mm: Option<f64>,
    hair_per_cm2: Option<f64>,
    thinning_per_cm2: Option<f64>,
    bald_per_cm2: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialHairline {
    front_recession_deg: Option<f64>,
    recession_fade_azimuth_deg: Option<f64>,
    temple_azimuth_deg: Option<f64>,
    temple_recession_deg: Option<f64>,
    temple_width_deg: Option<f64>,
    transition_deg: Option<f64>,
    irregularity_deg: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialCrown {
    centre_polar_deg: Option<f64>,
    centre_azimuth_deg: Option<f64>,
    rotation_deg: Option<f64>,
    thinning_radii_mm: Option<[f64; 2]>,
    bald_radii_mm: Option<[f64; 2]>,
    edge_softness_mm: Option<f64>,
    edge_irregularity_mm: Option<f64>,
}

/// Named scar shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ScarPreset {
    /// FUT donor strip across the back of the head (see
    /// [`crate::patient_presets::donor_strip_points`]).
    DonorStrip,
}

/// One `[[scars]]` entry as written: an ellipse (centre, rotation, half length and width), a
/// polyline (`points_head_mm`, `width_mm`) or a preset (`preset`, optional `width_mm`,
/// `length_mm`, `centre_polar_deg`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScarFile {
    preset: Option<ScarPreset>,
    centre_polar_deg: Option<f64>,
    centre_azimuth_deg: Option<f64>,
    rotation_deg: Option<f64>,
    half_length_mm: Option<f64>,
    half_width_mm: Option<f64>,
    points_head_mm: Option<Vec<[f64; 3]>>,
    width_mm: Option<f64>,
    length_mm: Option<f64>,
    edge_softness_mm: Option<f64>,
}

/// Default blend width of a scar's edge, mm (the default patient's).
const SCAR_EDGE_SOFTNESS_MM: f64 = 0.3;
/// Donor strip defaults: ~20 cm long, 3 mm wide (2-5 mm typical), 100° from the vertex at
/// the back (well inside the occipital fringe of the default scalp edge).
const DONOR_STRIP_LENGTH_MM: f64 = 200.0;
const DONOR_STRIP_WIDTH_MM: f64 = 3.0;
const DONOR_STRIP_POLAR_DEG: f64 = 100.0;

/// The natural lower edge of hair-bearing scalp used when `[scalp]` is left out (the default
/// patient's: Norwood stages move the hairline, not this edge).
fn default_scalp() -> ScalpSpec {
    ScalpSpec {
        lower_edge_deg: vec![
            [0.0, 62.0],
            [35.0, 66.0],
            [60.0, 80.0],
            [75.0, 98.0],
            [90.0, 90.0],
            [120.0, 100.0],
            [180.0, 120.0],
        ],
        edge_irregularity_deg: 1.0,
    }
}

/// A patient file as written (see the module doc). Deserialized, then [`Self::resolve`]d.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientFile {
    version: u32,
    name: String,
    seed: u64,
    head: HeadSpec,
    #[serde(default)]
    norwood: Option<u8>,
    #[serde(default)]
    skin: Option<SkinSpec>,
    #[serde(default)]
    hair: Option<HairSpec>,
    #[serde(default)]
    tone: PartialTone,
    /// `[follicle]` (the name) is accepted for `[follicles]`.
    #[serde(default, alias = "follicle")]
    follicles: PartialFollicles,
    #[serde(default)]
    scalp: Option<ScalpSpec>,
    #[serde(default)]
    hairline: PartialHairline,
    #[serde(default)]
    crown: PartialCrown,
    #[serde(default)]
    scars: Vec<ScarFile>,
    #[serde(default)]
    fiducials: Vec<FiducialSpec>,
    #[serde(default)]
    intake: Option<PatientIntake>,
    #[serde(default)]
    skin_response: SkinResponse,
    #[serde(default)]
    healing: HealModel,
    #[serde(default)]
    motion: Option<MicroMotionSpec>,
    #[serde(default)]
    prior_sessions: Vec<PriorSessionSpec>,
    #[serde(default)]
    prior_dots: Vec<PriorDotSpec>,
}

/// `explicit`, else `preset`, else an error naming the field and both ways to give it.
fn pick<T>(explicit: Option<T>, preset: Option<T>, field: &str, high_level: &str) -> Result<T, SpecError> {
    explicit.or(preset).ok_or_else(|| {
        SpecError::invalid(W, field, format!("is missing; give `{field}` in its table, or {high_level}"))
    })
}

impl PatientFile {
    /// Applies the presets (see the module doc) and returns the fully resolved spec, not yet
    /// validated ([`PatientSpec::validate`] checks the numbers).
    pub fn resolve(self) -> Result<PatientSpec, SpecError> {
        check_version(W, self.version, TOML_FORMAT_VERSION)?;
        for (i, v) in self.head.semi_axes_mm.iter().enumerate() {
            // Presets place points on the head: check it before they do.
            smp_core::error::check_range(W, &format!("head.semi_axes_mm[{i}]"), *v, 30.0, 200.0)?;
        }
        let norwood = match self.norwood {
            None => None,
            Some(n) => Some(norwood_preset(n).ok_or_else(|| {
                SpecError::invalid(W, "norwood", format!("is {n}; the Norwood-Hamilton stage must be 1 to 7"))
            })?),
        };
        let skin_srgb = match &self.skin {
            None => None,
            Some(s) => Some(resolve_skin(s)?),
        };
        let hair = self.hair.as_ref();
        let look = hair.map(|h| follicle_look(h.color));

        let t = self.tone;
        let skin_srgb = pick(t.skin_srgb, skin_srgb, "tone.skin_srgb", "[skin] fitzpatrick = 1..6 or lab = [L, a, b]")?;
        let tone = ToneSpec {
            skin_srgb,
            scar_srgb: t.scar_srgb.unwrap_or_else(|| scar_srgb_for_skin(skin_srgb)),
            follicle_srgb: pick(t.follicle_srgb, look.map(|l| l.0), "tone.follicle_srgb", "[hair] color = \"...\"")?,
            mottling: t.mottling.unwrap_or(0.04),
            hair_shadow: t.hair_shadow.unwrap_or(0.20),
        };
        let f = self.follicles;
        let follicles = FollicleSpec {
            diameter_mm: f.diameter_mm.unwrap_or(0.30),
            diameter_sd_mm: f.diameter_sd_mm.unwrap_or(0.03),
            darkness: pick(f.darkness, look.map(|l| l.1), "follicles.darkness", "[hair] color = \"...\"")?,
            darkness_sd: f.darkness_sd.unwrap_or(0.05),
            min_spacing_mm: f.min_spacing_mm.unwrap_or(0.50),
            hair_per_cm2: pick(
                f.hair_per_cm2,
                hair.and_then(|h| h.density_per_cm2),
                "follicles.hair_per_cm2",
                "[hair] density_per_cm2",
            )?,
            thinning_per_cm2: pick(
                f.thinning_per_cm2,
                hair.and_then(|h| h.thinning_density_per_cm2),
                "follicles.thinning_per_cm2",
                "[hair] thinning_density_per_cm2",
            )?,
            bald_per_cm2: f.bald_per_cm2.unwrap_or(0.0),
        };

        let nw = "norwood = 1..7";
        let ph = norwood.map(|n| n.hairline());
        let h = self.hairline;
        let hairline = HairlineSpec {
            front_recession_deg: pick(
                h.front_recession_deg,
                ph.as_ref().map(|p| p.front_recession_deg),
                "hairline.front_recession_deg",
                nw,
            )?,
            recession_fade_azimuth_deg: pick(
                h.recession_fade_azimuth_deg,
                ph.as_ref().map(|p| p.recession_fade_azimuth_deg),
                "hairline.recession_fade_azimuth_deg",
                nw,
            )?,
            temple_azimuth_deg: pick(
                h.temple_azimuth_deg,
                ph.as_ref().map(|p| p.temple_azimuth_deg),
                "hairline.temple_azimuth_deg",
                nw,
            )?,
            temple_recession_deg: pick(
                h.temple_recession_deg,
                ph.as_ref().map(|p| p.temple_recession_deg),
                "hairline.temple_recession_deg",
                nw,
            )?,
            temple_width_deg: pick(
                h.temple_width_deg,
                ph.as_ref().map(|p| p.temple_width_deg),
                "hairline.temple_width_deg",
                nw,
            )?,
            transition_deg: pick(
                h.transition_deg,
                ph.as_ref().map(|p| p.transition_deg),
                "hairline.transition_deg",
                nw,
            )?,
            irregularity_deg: pick(
                h.irregularity_deg,
                ph.as_ref().map(|p| p.irregularity_deg),
                "hairline.irregularity_deg",
                nw,
            )?,
        };
        let pc = norwood.map(|n| n.crown());
        let c = self.crown;
        let crown = CrownSpec {
            centre_polar_deg: pick(
                c.centre_polar_deg,
                pc.as_ref().map(|p| p.centre_polar_deg),
                "crown.centre_polar_deg",
                nw,
            )?,
            centre_azimuth_deg: pick(
                c.centre_azimuth_deg,
                pc.as_ref().map(|p| p.centre_azimuth_deg),
                "crown.centre_azimuth_deg",
                nw,
            )?,
            rotation_deg: pick(c.rotation_deg, pc.as_ref().map(|p| p.rotation_deg), "crown.rotation_deg", nw)?,
            thinning_radii_mm: pick(
                c.thinning_radii_mm,
                pc.as_ref().map(|p| p.thinning_radii_mm),
                "crown.thinning_radii_mm",
                nw,
            )?,
            bald_radii_mm: pick(c.bald_radii_mm, pc.as_ref().map(|p| p.bald_radii_mm), "crown.bald_radii_mm", nw)?,
            edge_softness_mm: pick(
                c.edge_softness_mm,
                pc.as_ref().map(|p| p.edge_softness_mm),
                "crown.edge_softness_mm",
                nw,
            )?,
            edge_irregularity_mm: pick(
                c.edge_irregularity_mm,
                pc.as_ref().map(|p| p.edge_irregularity_mm),
                "crown.edge_irregularity_mm",
                nw,
            )?,
        };

        let ell = Ellipsoid { semi_axes_mm: self.head.semi_axes_mm };
        let scars =
            self.scars.into_iter().enumerate().map(|(i, s)| resolve_scar(i, s, &ell)).collect::<Result<_, _>>()?;

        Ok(PatientSpec {
            version: self.version,
            name: self.name,
            seed: self.seed,
            norwood: self.norwood,
            head: self.head,
            skin: self.skin,
            hair: self.hair,
            tone,
            follicles,
            scalp: self.scalp.unwrap_or_else(default_scalp),
            hairline,
            crown,
            scars,
            fiducials: self.fiducials,
            intake: self.intake,
            skin_response: self.skin_response,
            healing: self.healing,
            motion: self.motion,
            prior_sessions: self.prior_sessions,
            prior_dots: self.prior_dots,
        })
    }
}

impl TryFrom<PatientFile> for PatientSpec {
    type Error = SpecError;

    /// Resolution and validation, for code that deserializes a [`PatientSpec`] directly.
    fn try_from(file: PatientFile) -> Result<Self, SpecError> {
        let spec = file.resolve()?;
        spec.validate()?;
        Ok(spec)
    }
}

/// sRGB of a `[skin]` table.
fn resolve_skin(s: &SkinSpec) -> Result<[u8; 3], SpecError> {
    match (s.fitzpatrick, s.lab) {
        (Some(_), Some(_)) => {
            Err(SpecError::invalid(W, "skin", "gives both fitzpatrick and lab; keep one (lab is the measured colour)"))
        }
        (None, None) => Err(SpecError::invalid(W, "skin", "is empty; give fitzpatrick = 1..6 or lab = [L, a, b]")),
        (Some(k), None) => fitzpatrick_lab(k).map(lab_to_srgb).ok_or_else(|| {
            SpecError::invalid(W, "skin.fitzpatrick", format!("is {k}; the Fitzpatrick type must be 1 (I) to 6 (VI)"))
        }),
        (None, Some(lab)) => {
            let ranges = [(0.0, 100.0), (-60.0, 60.0), (-60.0, 60.0)];
            for (k, (v, (lo, hi))) in lab.iter().zip(ranges).enumerate() {
                smp_core::error::check_range(W, &format!("skin.lab[{k}]"), *v, lo, hi)?;
            }
            Ok(lab_to_srgb(lab))
        }
    }
}

/// One `[[scars]]` entry to its resolved shape; presets become polylines on this head.
fn resolve_scar(i: usize, s: ScarFile, ell: &Ellipsoid) -> Result<ScarSpec, SpecError> {
    let field = |name: &str| format!("scars[{i}].{name}");
    let softness = s.edge_softness_mm.unwrap_or(SCAR_EDGE_SOFTNESS_MM);
    let ellipse_keys = [s.centre_azimuth_deg, s.rotation_deg, s.half_length_mm, s.half_width_mm];
    let has_ellipse = ellipse_keys.iter().any(Option::is_some);
    let shapes = usize::from(s.preset.is_some()) + usize::from(s.points_head_mm.is_some()) + usize::from(has_ellipse);
    if shapes != 1 {
        return Err(SpecError::invalid(
            W,
            format!("scars[{i}]"),
            "must be exactly one shape: an ellipse (centre_polar_deg, centre_azimuth_deg, rotation_deg, half_length_mm, half_width_mm), a polyline (points_head_mm, width_mm) or a preset (preset = \"donor_strip\")",
        ));
    }
    if let Some(ScarPreset::DonorStrip) = s.preset {
        if s.centre_azimuth_deg.is_some() {
            return Err(SpecError::invalid(
                W,
                field("centre_azimuth_deg"),
                "is not used by preset \"donor_strip\" (always at the back); remove it",
            ));
        }
        let polar = s.centre_polar_deg.unwrap_or(DONOR_STRIP_POLAR_DEG);
        smp_core::error::check_range(W, &field("centre_polar_deg"), polar, 60.0, 130.0)?;
        let length = s.length_mm.unwrap_or(DONOR_STRIP_LENGTH_MM);
        smp_core::error::check_range(W, &field("length_mm"), length, 10.0, 400.0)?;
        return Ok(ScarSpec::Polyline(PolylineScarSpec {
            points_head_mm: donor_strip_points(ell, polar, length),
            width_mm: s.width_mm.unwrap_or(DONOR_STRIP_WIDTH_MM),
            edge_softness_mm: softness,
        }));
    }
    if s.length_mm.is_some() {
        return Err(SpecError::invalid(W, field("length_mm"), "only applies to a preset scar; remove it"));
    }
    if let Some(points) = s.points_head_mm {
        if s.centre_polar_deg.is_some() {
            return Err(SpecError::invalid(
                W,
                field("centre_polar_deg"),
                "does not apply to a polyline scar (points_head_mm); remove it",
            ));
        }
        let width_mm = s.width_mm.ok_or_else(|| {
            SpecError::invalid(W, field("width_mm"), "is missing; a polyline scar needs its full width, mm (e.g. 3.0)")
        })?;
        return Ok(ScarSpec::Polyline(PolylineScarSpec {
            points_head_mm: points,
            width_mm,
            edge_softness_mm: softness,
        }));
    }
    if s.width_mm.is_some() {
        return Err(SpecError::invalid(W, field("width_mm"), "does not apply to an ellipse scar; use half_width_mm"));
    }
    let need = |v: Option<f64>, name: &str| {
        v.ok_or_else(|| SpecError::invalid(W, field(name), "is missing; an ellipse scar needs centre_polar_deg, centre_azimuth_deg, rotation_deg, half_length_mm and half_width_mm"))
    };
    Ok(ScarSpec::Ellipse(EllipseScarSpec {
        centre_polar_deg: need(s.centre_polar_deg, "centre_polar_deg")?,
        centre_azimuth_deg: need(s.centre_azimuth_deg, "centre_azimuth_deg")?,
        rotation_deg: need(s.rotation_deg, "rotation_deg")?,
        half_length_mm: need(s.half_length_mm, "half_length_mm")?,
        half_width_mm: need(s.half_width_mm, "half_width_mm")?,
        edge_softness_mm: softness,
    }))
}

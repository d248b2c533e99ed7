//! Session specs (TOML, edited by people) and session plans (plan.json, written by the planner).

use serde::{Deserialize, Serialize};

use crate::error::{check_range, check_version, parse_json, parse_toml, SpecError};
use crate::map::{CellGrid, RegionKind};
use crate::{JSON_FORMAT_VERSION, TOML_FORMAT_VERSION};

/// Anatomical zone a dot belongs to; density and tone are configured per zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    Hairline,
    Frontal,
    MidScalp,
    Crown,
    Temple,
    Scar,
}

impl Zone {
    /// Every zone, in the order viewers and reports list them.
    pub const ALL: [Zone; 6] = [Zone::Hairline, Zone::Frontal, Zone::MidScalp, Zone::Crown, Zone::Temple, Zone::Scar];

    /// The serde name, for SQL columns and viewer labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Hairline => "hairline",
            Zone::Frontal => "frontal",
            Zone::MidScalp => "mid_scalp",
            Zone::Crown => "crown",
            Zone::Temple => "temple",
            Zone::Scar => "scar",
        }
    }
}

/// What one session should do, as a clinician sets it. Defaults follow DOMAIN.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    pub version: u32,
    /// 1 = foundation, 2 = layering, 3 = density, 4 = top-up.
    pub session: u32,
    pub zone: Zone,
    /// Region labels this session fills.
    pub treat: Vec<RegionKind>,
    /// Final density of all sessions together, follicular units per cm², existing follicles included.
    pub target_density_per_cm2: f64,
    /// Share of the final dots this session places (session 1 about 0.4).
    pub session_share: f64,
    /// Hard minimum centre spacing between any two dots, and between a dot and a follicle.
    pub min_spacing_mm: f64,
    pub depth_mm: f64,
    /// Never exceeded; enforced by the program verifier.
    pub depth_limit_mm: f64,
    pub dwell_s: f64,
    /// Height above the skin at which the needle travels between dots.
    pub hover_mm: f64,
    pub plunge_feed_mm_per_min: f64,
    pub retract_feed_mm_per_min: f64,
    pub travel_feed_mm_per_min: f64,
    /// No commanded feed may exceed this.
    pub max_feed_mm_per_min: f64,
    /// Cartridge speed (the `S` word of M3).
    pub cartridge_rpm: f64,
    /// Pigment dilution, percent of water; session 1 lightest.
    pub dilution_pct: f64,
    /// Distance kept from the border of the treated region, mm.
    pub region_margin_mm: f64,
    /// Largest surface tilt from the needle axis a 3-axis rig may plunge at, degrees.
    pub max_tilt_deg: f64,
    /// Stop after this many dots (small demos and tests); all when absent.
    #[serde(default)]
    pub max_dots: Option<u32>,
    pub seed: u64,
    /// The designed frontal hairline (`[hairline]`): skin in front of it is never treated and
    /// the density ramps up across a feathered band behind it. Absent: no hairline (a crown
    /// session, or a map that does not reach the front).
    #[serde(default)]
    pub hairline: Option<HairlineSpec>,
    /// Per-zone target densities and zone boundaries (`[zones]`). Absent: every dot is
    /// labelled `zone` (scar cells `scar`) and aims for `target_density_per_cm2`.
    #[serde(default)]
    pub zones: Option<ZonesSpec>,
    /// Skin-recovery rule for the execution order (`[recovery]`): no dot within `radius_mm`
    /// of one tattooed in the last `window_s` seconds. Absent: the shortest order.
    #[serde(default)]
    pub recovery: Option<RecoverySpec>,
}

/// `[recovery]` of a session spec: let freshly punctured skin settle before the needle
/// works next to it again (less swelling and bleeding under the next dot, so it takes the
/// pigment evenly). Costs travel; the plan reports by how much.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySpec {
    /// No dot within this distance (mm, head frame) ...
    pub radius_mm: f64,
    /// ... of one tattooed within the last this many seconds.
    pub window_s: f64,
}

impl RecoverySpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        check_range(SessionSpec::WHAT, "recovery.radius_mm", self.radius_mm, 0.0, 50.0)?;
        check_range(SessionSpec::WHAT, "recovery.window_s", self.window_s, 0.0, 600.0)
    }
}

impl SessionSpec {
    pub const WHAT: &'static str = "session spec";

    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        let spec: SessionSpec = parse_toml(Self::WHAT, text)?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        const W: &str = SessionSpec::WHAT;
        check_version(W, self.version, TOML_FORMAT_VERSION)?;
        check_range(W, "session", self.session as f64, 1.0, 10.0)?;
        check_range(W, "target_density_per_cm2", self.target_density_per_cm2, 1.0, 200.0)?;
        check_range(W, "session_share", self.session_share, 0.01, 1.0)?;
        check_range(W, "min_spacing_mm", self.min_spacing_mm, 0.3, 5.0)?;
        check_range(W, "depth_limit_mm", self.depth_limit_mm, 0.1, 2.0)?;
        check_range(W, "depth_mm", self.depth_mm, 0.05, self.depth_limit_mm)?;
        check_range(W, "dwell_s", self.dwell_s, 0.0, 5.0)?;
        check_range(W, "hover_mm", self.hover_mm, 0.5, 20.0)?;
        check_range(W, "max_feed_mm_per_min", self.max_feed_mm_per_min, 1.0, 60_000.0)?;
        for (name, v) in [
            ("plunge_feed_mm_per_min", self.plunge_feed_mm_per_min),
            ("retract_feed_mm_per_min", self.retract_feed_mm_per_min),
            ("travel_feed_mm_per_min", self.travel_feed_mm_per_min),
        ] {
            check_range(W, name, v, 1.0, self.max_feed_mm_per_min)?;
        }
        check_range(W, "cartridge_rpm", self.cartridge_rpm, 0.0, 20_000.0)?;
        check_range(W, "dilution_pct", self.dilution_pct, 0.0, 100.0)?;
        check_range(W, "region_margin_mm", self.region_margin_mm, 0.0, 50.0)?;
        check_range(W, "max_tilt_deg", self.max_tilt_deg, 0.0, 90.0)?;
        if self.treat.is_empty() {
            return Err(SpecError::invalid(
                W,
                "treat",
                "is empty; name the regions to fill, e.g. [\"bald\", \"thinning\"]",
            ));
        }
        if self.max_dots == Some(0) {
            return Err(SpecError::invalid(W, "max_dots", "is 0; remove it to plan every dot"));
        }
        if let Some(h) = &self.hairline {
            h.validate()?;
        }
        if let Some(z) = &self.zones {
            z.validate()?;
        }
        if let Some(r) = &self.recovery {
            r.validate()?;
        }
        Ok(())
    }
}

/// Age-appropriate hairline shapes. A preset fills every `[hairline]` value the spec does
/// not set; DOMAIN: a hairline is designed from age, skin tone and extent of loss, and an
/// older patient gets a higher, more receded, softer line (a juvenile line on a 60-year-old
/// reads as fake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HairlinePreset {
    /// Low, nearly straight, little corner recession (under 25).
    Juvenile,
    /// Mature adult line with a slight "M" (25-39).
    Adult,
    /// Higher, with clear fronto-temporal recession (40-59).
    Mature,
    /// High and deeply receded corners, widest transition (60 and over).
    Receded,
}

impl HairlinePreset {
    pub const ALL: [HairlinePreset; 4] =
        [HairlinePreset::Juvenile, HairlinePreset::Adult, HairlinePreset::Mature, HairlinePreset::Receded];

    /// The preset for a patient's age when the spec does not name one.
    pub fn for_age(age_years: f64) -> Self {
        match age_years {
            a if a < 25.0 => HairlinePreset::Juvenile,
            a if a < 40.0 => HairlinePreset::Adult,
            a if a < 60.0 => HairlinePreset::Mature,
            _ => HairlinePreset::Receded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HairlinePreset::Juvenile => "juvenile",
            HairlinePreset::Adult => "adult",
            HairlinePreset::Mature => "mature",
            HairlinePreset::Receded => "receded",
        }
    }
}

/// `[hairline]` of a session spec. Every value is optional: unset values come from the
/// preset (the spec's, else the one the patient's age picks, else `adult`). Heights are
/// measured along head +z above the glabella (a clinician's ruler held upright on the
/// forehead); lateral offsets along head ±y from the midline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HairlineSpec {
    #[serde(default)]
    pub preset: Option<HairlinePreset>,
    /// Glabella (the point between the brows) in the head frame, mm. Default: the
    /// simulator's default head (`sim/patients/default.toml`, semi-axes 100/80/88 mm) at
    /// 95° from the vertex toward the nose: [99.5, 0.0, -8.7].
    #[serde(default)]
    pub glabella_head_mm: Option<[f64; 3]>,
    /// Frontal point (midline) height above the glabella, mm.
    #[serde(default)]
    pub frontal_height_mm: Option<f64>,
    /// Temporal points: lateral offset from the midline (mm, both sides) ...
    #[serde(default)]
    pub temporal_offset_mm: Option<f64>,
    /// ... and height above the glabella, mm.
    #[serde(default)]
    pub temporal_height_mm: Option<f64>,
    /// How far the fronto-temporal corners rise above the line joining frontal and temporal
    /// points, mm (the "M" of a mature hairline; 0 = none).
    #[serde(default)]
    pub corner_recession_mm: Option<f64>,
    /// Width of the transition band behind the line over which density ramps from sparse to
    /// full, mm on the skin (DOMAIN: 5-10).
    #[serde(default)]
    pub transition_mm: Option<f64>,
    /// Density at the very front of the band, as a fraction of the full density.
    #[serde(default)]
    pub edge_density: Option<f64>,
    /// Low-frequency wobble of the line: amplitude (mm) ...
    #[serde(default)]
    pub wobble_mm: Option<f64>,
    /// ... and wavelength along the line (mm).
    #[serde(default)]
    pub wobble_wavelength_mm: Option<f64>,
    /// Per-dot jitter: where each dot "sees" the start of the band moves back by up to this
    /// much, mm, so the outermost dots never line up.
    #[serde(default)]
    pub jitter_mm: Option<f64>,
    /// Session 1 (foundation) uses a band this many times wider: the softer first hairline.
    #[serde(default)]
    pub session1_widening: Option<f64>,
    /// Seeds the wobble. Kept separate from the session seed so that every session of a
    /// patient sees the same designed line.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl HairlineSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        const W: &str = SessionSpec::WHAT;
        let opt = |name: &str, v: Option<f64>, lo: f64, hi: f64| match v {
            Some(v) => check_range(W, &format!("hairline.{name}"), v, lo, hi),
            None => Ok(()),
        };
        if let Some(g) = self.glabella_head_mm {
            for (i, v) in g.iter().enumerate() {
                check_range(W, &format!("hairline.glabella_head_mm[{i}]"), *v, -300.0, 300.0)?;
            }
        }
        opt("frontal_height_mm", self.frontal_height_mm, 10.0, 150.0)?;
        opt("temporal_offset_mm", self.temporal_offset_mm, 10.0, 120.0)?;
        opt("temporal_height_mm", self.temporal_height_mm, -20.0, 150.0)?;
        opt("corner_recession_mm", self.corner_recession_mm, 0.0, 60.0)?;
        opt("transition_mm", self.transition_mm, 2.0, 25.0)?;
        opt("edge_density", self.edge_density, 0.0, 1.0)?;
        opt("wobble_mm", self.wobble_mm, 0.0, 10.0)?;
        opt("wobble_wavelength_mm", self.wobble_wavelength_mm, 5.0, 300.0)?;
        opt("jitter_mm", self.jitter_mm, 0.0, 5.0)?;
        opt("session1_widening", self.session1_widening, 1.0, 3.0)?;
        Ok(())
    }
}

/// `[zones]` of a session spec: the final density each zone aims for (natural follicles and
/// every session's dots together, per cm² of skin) and where the zones meet. Unset values
/// take the defaults listed on each field. Zones are assigned from the direction of a point
/// seen from the head centre: the sagittal angle `atan2(x, z)` (0 at the vertex, positive
/// toward the nose) and the lateral angle `atan2(|y|, z)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonesSpec {
    /// Full density the hairline band ramps up to (default: the frontal density).
    #[serde(default)]
    pub hairline_per_cm2: Option<f64>,
    /// Default 70 (DOMAIN: natural scalp 65-85 follicular units per cm²; the planner's
    /// defaults sit low because the 0.9 mm spacing caps layered dots near 70 per cm²).
    #[serde(default)]
    pub frontal_per_cm2: Option<f64>,
    /// Default 68.
    #[serde(default)]
    pub mid_scalp_per_cm2: Option<f64>,
    /// Default 65: the vertex whorl is naturally a little sparser.
    #[serde(default)]
    pub crown_per_cm2: Option<f64>,
    /// Default 65.
    #[serde(default)]
    pub temple_per_cm2: Option<f64>,
    /// Default 45: scar tissue takes pigment unevenly and spreads it; fewer, lighter dots.
    #[serde(default)]
    pub scar_per_cm2: Option<f64>,
    /// Points whose sagittal angle exceeds this are frontal (default 30°).
    #[serde(default)]
    pub frontal_from_deg: Option<f64>,
    /// Points whose sagittal angle is below this (behind the vertex) are crown (default -15°).
    #[serde(default)]
    pub crown_from_deg: Option<f64>,
    /// Points in the front half whose lateral angle exceeds this are temple (default 50°).
    #[serde(default)]
    pub temple_from_deg: Option<f64>,
}

impl ZonesSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        const W: &str = SessionSpec::WHAT;
        for (name, v) in [
            ("hairline_per_cm2", self.hairline_per_cm2),
            ("frontal_per_cm2", self.frontal_per_cm2),
            ("mid_scalp_per_cm2", self.mid_scalp_per_cm2),
            ("crown_per_cm2", self.crown_per_cm2),
            ("temple_per_cm2", self.temple_per_cm2),
            ("scar_per_cm2", self.scar_per_cm2),
        ] {
            if let Some(v) = v {
                check_range(W, &format!("zones.{name}"), v, 1.0, 200.0)?;
            }
        }
        for (name, v) in [
            ("frontal_from_deg", self.frontal_from_deg),
            ("crown_from_deg", self.crown_from_deg),
            ("temple_from_deg", self.temple_from_deg),
        ] {
            if let Some(v) = v {
                check_range(W, &format!("zones.{name}"), v, -120.0, 120.0)?;
            }
        }
        if let (Some(f), Some(c)) = (self.frontal_from_deg, self.crown_from_deg) {
            if c >= f {
                return Err(SpecError::invalid(
                    W,
                    "zones.crown_from_deg",
                    format!("is {c}, not below frontal_from_deg {f}; the mid-scalp lies between them"),
                ));
            }
        }
        Ok(())
    }
}

/// A pigment shade chosen for a dot: its name in the pigment ladder and its colour
/// (CIE L*a*b*, D65) undiluted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PigmentTone {
    pub shade: String,
    pub lab: [f64; 3],
}

/// One planned needle entry, in the head frame, in execution order within its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedDot {
    /// Unique within the plan; the journal keys dot states by it.
    pub id: u32,
    pub x_mm: f64,
    pub y_mm: f64,
    pub z_mm: f64,
    /// Outward surface normal, unit length; the needle enters against it.
    pub normal: [f64; 3],
    /// Session layer (1 = foundation).
    pub layer: u32,
    pub zone: Zone,
    pub depth_mm: f64,
    pub dilution_pct: f64,
    /// Pigment shade from the tone ladder; absent in plans made without one (the pigment of
    /// the session then is the spec's `dilution_pct` of the clinic's standard pigment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tone: Option<PigmentTone>,
}

impl PlannedDot {
    pub fn position(&self) -> [f64; 3] {
        [self.x_mm, self.y_mm, self.z_mm]
    }
}

/// The hard limits a program for this session is verified against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SessionLimits {
    pub depth_limit_mm: f64,
    pub max_feed_mm_per_min: f64,
    pub min_spacing_mm: f64,
    pub max_tilt_deg: f64,
}

impl SessionLimits {
    /// The limits a session spec sets (the planner's; a plan's own may only be stricter).
    pub fn of(spec: &SessionSpec) -> SessionLimits {
        SessionLimits {
            depth_limit_mm: spec.depth_limit_mm,
            max_feed_mm_per_min: spec.max_feed_mm_per_min,
            min_spacing_mm: spec.min_spacing_mm,
            max_tilt_deg: spec.max_tilt_deg,
        }
    }

    /// A limit looser than `spec`'s, named (an edited plan.json cannot raise its own limits
    /// past the spec it carries, which is itself range-checked).
    fn looser_than(&self, spec: &SessionSpec) -> Option<(&'static str, f64, f64)> {
        let s = SessionLimits::of(spec);
        // NaN fits no bound.
        let at_most = |v: f64, bound: f64| v <= bound + 1e-9;
        if !at_most(self.depth_limit_mm, s.depth_limit_mm) {
            Some(("depth_limit_mm", self.depth_limit_mm, s.depth_limit_mm))
        } else if !at_most(self.max_feed_mm_per_min, s.max_feed_mm_per_min) {
            Some(("max_feed_mm_per_min", self.max_feed_mm_per_min, s.max_feed_mm_per_min))
        } else if !at_most(-self.min_spacing_mm, -s.min_spacing_mm) {
            Some(("min_spacing_mm", self.min_spacing_mm, s.min_spacing_mm))
        } else if !at_most(self.max_tilt_deg, s.max_tilt_deg) {
            Some(("max_tilt_deg", self.max_tilt_deg, s.max_tilt_deg))
        } else {
            None
        }
    }
}

/// What the planner predicts for a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEstimates {
    pub tour_mm: f64,
    pub arm_time_s: f64,
    pub treated_area_cm2: f64,
    /// A proven lower bound on any open path through the dots from the same start (Held-Karp
    /// style); `tour_mm / tour_lower_bound_mm` bounds how far the order is from optimal.
    #[serde(default)]
    pub tour_lower_bound_mm: Option<f64>,
}

/// One session's ordered dots and the region they may occupy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPlan {
    pub session: u32,
    pub spec: SessionSpec,
    pub limits: SessionLimits,
    /// Cells of the map's surface domain where plunges are allowed (`#`), others `.`.
    pub treatment: CellGrid,
    pub dots: Vec<PlannedDot>,
    pub estimates: PlanEstimates,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// plan.json: the plan of one or more sessions for one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    pub version: u32,
    pub patient: String,
    pub sessions: Vec<SessionPlan>,
}

impl PlanFile {
    pub const WHAT: &'static str = "plan";

    pub fn from_json_str(text: &str) -> Result<Self, SpecError> {
        let plan: PlanFile = parse_json(Self::WHAT, text)?;
        plan.validate()?;
        Ok(plan)
    }

    /// Rejects non-finite numbers, depths beyond the limit, unnormalised normals and
    /// duplicate ids, naming the dot, so a corrupted plan never reaches the compiler.
    pub fn validate(&self) -> Result<(), SpecError> {
        const W: &str = PlanFile::WHAT;
        check_version(W, self.version, JSON_FORMAT_VERSION)?;
        let mut ids = std::collections::HashSet::new();
        for (s, session) in self.sessions.iter().enumerate() {
            session.spec.validate()?;
            if let Some((name, plan, spec)) = session.limits.looser_than(&session.spec) {
                return Err(SpecError::invalid(
                    W,
                    format!("sessions[{s}].limits.{name}"),
                    format!(
                        "is {plan}, looser than the session spec's {spec}: a plan's limits may only be stricter than \
                         its spec (plan the session again instead of editing plan.json)"
                    ),
                ));
            }
            session.treatment.validate(W, &format!("sessions[{s}].treatment"), ".#")?;
            for dot in &session.dots {
                let field = |name: &str| format!("sessions[{s}].dots(id {}).{name}", dot.id);
                for (name, v) in [("x_mm", dot.x_mm), ("y_mm", dot.y_mm), ("z_mm", dot.z_mm)] {
                    check_range(W, &field(name), v, -1e4, 1e4)?;
                }
                check_range(W, &field("depth_mm"), dot.depth_mm, 0.0, session.limits.depth_limit_mm)?;
                let n = dot.normal;
                let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
                if !len.is_finite() || (len - 1.0).abs() > 1e-3 {
                    return Err(SpecError::invalid(
                        W,
                        field("normal"),
                        format!("has length {len}; it must be a unit vector"),
                    ));
                }
                if let Some(t) = &dot.tone {
                    for (i, v) in t.lab.iter().enumerate() {
                        check_range(W, &field(&format!("tone.lab[{i}]")), *v, -200.0, 200.0)?;
                    }
                }
                if !ids.insert(dot.id) {
                    return Err(SpecError::invalid(
                        W,
                        field("id"),
                        "is used twice; dot ids must be unique across the plan",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where a planned dot is in its life. Transitions only move forward, except that a fault
/// may turn `Sent`/`Accepted` into `Uncertain`, resolved later by looking, never by
/// re-tattooing blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DotState {
    Planned,
    /// Its plunge line has been written to the controller (journaled before the write).
    Sent,
    /// The controller acknowledged the plunge line.
    Accepted,
    /// Confirmed done (the synchronising dwell after the plunge was acknowledged).
    Executed,
    /// Seen by the camera afterwards.
    Verified,
    /// A fault hit while it was in flight: it may or may not have been tattooed.
    Uncertain,
    /// Deliberately not done (operator, abort); never sent.
    Skipped,
}

impl DotState {
    pub fn as_str(self) -> &'static str {
        match self {
            DotState::Planned => "planned",
            DotState::Sent => "sent",
            DotState::Accepted => "accepted",
            DotState::Executed => "executed",
            DotState::Verified => "verified",
            DotState::Uncertain => "uncertain",
            DotState::Skipped => "skipped",
        }
    }

    /// Every state, in lifecycle order.
    pub const ALL: [DotState; 7] = [
        DotState::Planned,
        DotState::Sent,
        DotState::Accepted,
        DotState::Executed,
        DotState::Verified,
        DotState::Uncertain,
        DotState::Skipped,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
version = 1
session = 1
zone = "crown"
treat = ["thinning", "bald", "scar"]
target_density_per_cm2 = 80.0
session_share = 0.4
min_spacing_mm = 0.9
depth_mm = 1.0
depth_limit_mm = 1.2
dwell_s = 0.1
hover_mm = 2.0
plunge_feed_mm_per_min = 600.0
retract_feed_mm_per_min = 1200.0
travel_feed_mm_per_min = 6000.0
max_feed_mm_per_min = 8000.0
cartridge_rpm = 9000.0
dilution_pct = 50.0
region_margin_mm = 1.0
max_tilt_deg = 35.0
seed = 1
"#;

    #[test]
    fn a_spec_without_the_new_tables_still_parses() {
        let s = SessionSpec::from_toml_str(BASE).expect("parses");
        assert_eq!((s.hairline.clone(), s.zones.clone()), (None, None));
    }

    #[test]
    fn hairline_and_zones_tables_parse_and_validate() {
        let text = format!(
            "{BASE}\n[hairline]\npreset = \"mature\"\nfrontal_height_mm = 64.0\ntransition_mm = 8.0\n\n[zones]\nscar_per_cm2 = 40.0\ncrown_from_deg = -20.0\n"
        );
        let s = SessionSpec::from_toml_str(&text).expect("parses");
        let h = s.hairline.expect("hairline");
        assert_eq!(h.preset, Some(HairlinePreset::Mature));
        assert_eq!(h.frontal_height_mm, Some(64.0));
        assert_eq!(s.zones.expect("zones").scar_per_cm2, Some(40.0));
        // Typos and out-of-range values name the field.
        let bad = format!("{BASE}\n[hairline]\nfrontal_heigth_mm = 64.0\n");
        assert!(SessionSpec::from_toml_str(&bad).is_err());
        let bad = format!("{BASE}\n[hairline]\ntransition_mm = 60.0\n");
        let e = SessionSpec::from_toml_str(&bad).expect_err("range").to_string();
        assert!(e.contains("hairline.transition_mm"), "{e}");
        let bad = format!("{BASE}\n[zones]\nfrontal_from_deg = 10.0\ncrown_from_deg = 20.0\n");
        let e = SessionSpec::from_toml_str(&bad).expect_err("order").to_string();
        assert!(e.contains("zones.crown_from_deg"), "{e}");
    }

    #[test]
    fn presets_follow_age() {
        assert_eq!(HairlinePreset::for_age(19.0), HairlinePreset::Juvenile);
        assert_eq!(HairlinePreset::for_age(30.0), HairlinePreset::Adult);
        assert_eq!(HairlinePreset::for_age(45.0), HairlinePreset::Mature);
        assert_eq!(HairlinePreset::for_age(70.0), HairlinePreset::Receded);
    }

    /// One crown dot, 1 mm deep, without a tone.
    fn crown_dot() -> PlannedDot {
        PlannedDot {
            id: 1,
            x_mm: 0.0,
            y_mm: 0.0,
            z_mm: 1.0,
            normal: [0.0, 0.0, 1.0],
            layer: 1,
            zone: Zone::Crown,
            depth_mm: 1.0,
            dilution_pct: 50.0,
            tone: None,
        }
    }

    #[test]
    fn dots_without_a_tone_round_trip_and_omit_it() {
        let d = crown_dot();
        let j = serde_json::to_string(&d).expect("json");
        assert!(!j.contains("tone"));
        assert_eq!(serde_json::from_str::<PlannedDot>(&j).expect("back"), d);
        let t = PlannedDot { tone: Some(PigmentTone { shade: "graphite".into(), lab: [30.0, 1.0, 2.0] }), ..d };
        let j = serde_json::to_string(&t).expect("json");
        assert_eq!(serde_json::from_str::<PlannedDot>(&j).expect("back"), t);
    }

    /// An edited plan.json cannot raise its own limits: each looser than the spec it carries
    /// is refused naming the field; stricter ones pass. (The spec itself is range-checked:
    /// depth limit at most 2 mm, dwell at most 5 s.)
    #[test]
    fn a_plan_cannot_raise_its_own_limits() {
        let spec = SessionSpec::from_toml_str(BASE).expect("parses");
        let dot = crown_dot();
        let file = |limits: SessionLimits| PlanFile {
            version: crate::JSON_FORMAT_VERSION,
            patient: "p".into(),
            sessions: vec![SessionPlan {
                session: 1,
                spec: spec.clone(),
                limits,
                treatment: CellGrid::filled(-5.0, -5.0, 1.0, 10, 10, '#'),
                dots: vec![dot.clone()],
                estimates: PlanEstimates {
                    tour_mm: 0.0,
                    arm_time_s: 0.0,
                    treated_area_cm2: 0.0,
                    tour_lower_bound_mm: None,
                },
                warnings: vec![],
            }],
        };
        let own = SessionLimits::of(&spec);
        assert!(file(own).validate().is_ok());
        assert!(file(SessionLimits { depth_limit_mm: 1.1, max_tilt_deg: 20.0, ..own }).validate().is_ok(), "stricter");
        for (edited, field) in [
            (SessionLimits { depth_limit_mm: 3.0, ..own }, "limits.depth_limit_mm"),
            (SessionLimits { max_feed_mm_per_min: 20_000.0, ..own }, "limits.max_feed_mm_per_min"),
            (SessionLimits { min_spacing_mm: 0.5, ..own }, "limits.min_spacing_mm"),
            (SessionLimits { max_tilt_deg: 80.0, ..own }, "limits.max_tilt_deg"),
            (SessionLimits { depth_limit_mm: f64::NAN, ..own }, "limits.depth_limit_mm"),
        ] {
            let e = file(edited).validate().expect_err("looser limits refused").to_string();
            assert!(e.contains(field) && e.contains("looser than the session spec"), "{e}");
        }
        let mut deep = file(own);
        deep.sessions[0].spec.depth_limit_mm = 2.5;
        deep.sessions[0].limits.depth_limit_mm = 2.5;
        assert!(deep.validate().is_err(), "the spec's own depth limit is capped");
    }
}

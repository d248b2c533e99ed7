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
        Ok(())
    }
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

/// What the planner predicts for a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEstimates {
    pub tour_mm: f64,
    pub arm_time_s: f64,
    pub treated_area_cm2: f64,
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

//! Pure session planning: patient gate, designed hairline, zone densities, layered dot
//! placement, pigment tone, execution order, estimates, and the consultation mock-up.
//!
//! Invariant: `smp-planner` never performs I/O, owns no clock and draws randomness only from
//! the seeds in its inputs (`SessionSpec::seed`, the hairline's own seed; ChaCha8), so the
//! same inputs give a byte-identical plan. Every plan it returns has been checked against
//! its own hard constraints before it leaves: no two dots, and no dot and map follicle or
//! earlier needle entry, closer than `min_spacing_mm` in the head frame; no dot in front of
//! the designed hairline; every dot inside the treatment mask, at least `region_margin_mm`
//! from untreated skin and no steeper than `max_tilt_deg`; depth within the limit. It refuses
//! to plan for a patient whose intake has an unresolved contraindication without a
//! clinician's override on record.
//!
//! Pipeline of [`plan_session_full`] (and of [`plan_session`], which is the same without
//! intake, pigment ladder or earlier entries):
//! 1. validate every input (a NaN names its field); the intake gate;
//! 2. `mask`: treatment mask on the map's region grid (regions, margin, tilt), minus the skin
//!    in front of the designed hairline (`hairline`);
//! 3. `density`: target density per point: the zone's final density (`zones`), ramped across
//!    the hairline band, minus what natural follicles and healed dots of earlier sessions
//!    already provide, this session's share of it, feathered at the mask border;
//! 4. `sample`: variable-density Poisson-disk dots on the skin (Bridson plus a fill pass that
//!    makes the pattern maximal), with follicles and earlier dots as fixed points, the
//!    packing constant calibrated so that the count matches the density integral;
//! 5. order: nearest-neighbour path from the edge, improved by 2-opt and Or-opt (one call,
//!    [`order_points`]);
//! 6. tone (`tone`): shade and dilution per dot from the pigment ladder, by session, zone,
//!    skin tone and hair colour;
//! 7. `estimate`: travel length and arm time of the per-dot motion the compiler emits.
//!
//! Layered sessions (DOMAIN): session 1 places about 40 % of the final dots with the softer,
//! wider hairline band; session 2 is planned from a new scan of the healed scalp, where the
//! session-1 dots are `SmpDot` follicles: they count toward the target and new dots
//! interleave between them; session 3 (`session_share = 1`) completes what is still missing.
//! [`layered_session_spec`] derives the specs; [`synthetic::heal_map`] imitates the healed scan.
//!
//! Conventions: millimetres and seconds inside; `a_from_b` maps frame b into frame a; the
//! plan is in the head frame; the needle is vertical in the base frame (`xyz` rigs).

mod bound;
mod density;
mod error;
mod estimate;
mod geometry;
pub mod hairline;
mod mask;
pub mod metrics;
mod mockup;
mod order;
mod sample;
pub mod synthetic;
pub mod tone;
mod validate;
pub mod zones;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use nalgebra::Isometry3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smp_core::intake::{Clearance, HairColor, PatientIntake};
use smp_core::map::{RegionKind, ScalpMap};
use smp_core::plan::{PlanEstimates, PlannedDot, SessionLimits, SessionPlan, SessionSpec, Zone};
use smp_core::rig::{AxisProfile, Rig};
use smp_core::spatial::PointGrid;
use smp_core::SpecError;

pub use bound::{tour_lower_bound_mm, tour_lower_bound_with, BoundParams, LowerBound};
pub use error::PlanError;
pub use estimate::{
    cycle_floor, dot_timing, dot_timing_for_rig, estimate_arm_time, ArmTimeEstimate, CycleFloor, EstimateError,
};
pub use hairline::{Hairline, HairlineParams};
pub use mockup::{
    draw_disc, draw_hairline, lab_to_srgb, pigment_opacity, render_mockup, render_mockup_with_hairline, HAIRLINE_RGB,
    MOCKUP_DOT_DIAMETER_MM, PIGMENT_RGB,
};
pub use order::{order_dots, recovery_violations, DotTiming, OrderError, OrderOutcome, OrderParams, RecoveryRule};
pub use tone::{PigmentLadder, ToneChoice, DEFAULT_LADDER_TOML};
pub use zones::ZoneRules;

/// The default session: session 1 of the crown (`sim/sessions/crown-s1.toml`), embedded so
/// that `smp demo` needs no files.
pub const DEFAULT_SESSION1_TOML: &str = include_str!("../../../sim/sessions/crown-s1.toml");

/// Session 1 of a full head (`sim/sessions/full-s1.toml`): hairline, zones, recovery rule.
/// Sessions 2 and 3 derive from it with [`layered_session_spec`].
pub const FULL_HEAD_SESSION1_TOML: &str = include_str!("../../../sim/sessions/full-s1.toml");

/// Dot ids are `session * DOT_ID_STRIDE + index in execution order`, so the ids of different
/// sessions of one patient never collide (a `PlanFile` requires ids unique across sessions).
pub const DOT_ID_STRIDE: u32 = 100_000;

/// Skin type assumed for the pigment ladder when neither the map nor the intake has one.
const FALLBACK_FITZPATRICK: u8 = 3;
/// Hair colour assumed for the pigment ladder without an intake.
const FALLBACK_HAIR: HairColor = HairColor::DarkBrown;

/// Planner tuning that is not a clinical choice (those live in `SessionSpec`). The defaults
/// are what [`plan_session`] uses.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConfig {
    /// Width of the density ramp at the mask border, mm (DOMAIN: transition zone 5-10 mm).
    pub feather_mm: f64,
    /// Density at the very border, as a fraction of the interior density.
    pub feather_floor: f64,
    /// Lattice spacing of the noise that makes the ramp width wander (±40 %), mm.
    pub feather_noise_mm: f64,
    /// σ of the Gaussian kernel estimating natural follicle density, mm.
    pub natural_sigma_mm: f64,
    /// σ of the kernel estimating the density of earlier sessions' healed dots, mm (wider:
    /// their pattern is regular, and the estimate decides what a completing session adds).
    pub smp_sigma_mm: f64,
    /// Below this fraction of the nominal session density no dot is placed (where natural
    /// follicles nearly reach the target).
    pub min_density_fraction: f64,
    /// Bridson candidates per active sample.
    pub bridson_candidates: usize,
    /// Candidate grid spacing of the fill pass that makes the pattern maximal, as a fraction
    /// of `min_spacing_mm` (0: Bridson alone).
    pub fill_spacing_fraction: f64,
    /// Initial Poisson-disk packing constant (dots per radius²).
    pub kappa_initial: f64,
    /// Sampling runs at most, recalibrating the packing constant between runs.
    pub calibration_runs: usize,
    /// Stop calibrating when the dot count is within this fraction of the target count.
    pub count_tolerance: f64,
    /// New dots keep `factor × sqrt(0.62 / density after the session)` from map follicles
    /// (natural and healed dots), so layers interleave; never less than `min_spacing_mm`.
    /// 1.0 spaces the union like one fresh pattern but leaves session 3 less room (the full
    /// head then ends near 60 instead of 65 dots/cm²); 0.85 keeps most of the interleaving
    /// (session-2 dots within 1 mm of a session-1 dot: 24 %, random placement 35 %).
    pub fixed_radius_factor: f64,
    /// Candidate neighbours per dot for 2-opt / Or-opt.
    pub neighbours: usize,
    /// Improving moves allowed per dot (bounds the ordering effort on any input).
    pub max_moves_per_dot: usize,
    /// Dwell step (s) of the controller the arm-time estimate assumes: grbl, and the
    /// simulated controller, dwell in whole steps of 50 ms
    /// ([`smp_core::kinematics::GRBL_DWELL_STEP_S`], rounded up), so `G4 P0.06` lasts 0.1 s.
    /// The default; 0 times the dwell exactly (a controller with a finer dwell).
    pub dwell_step_s: f64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            feather_mm: 5.0,
            feather_floor: 0.15,
            feather_noise_mm: 6.0,
            natural_sigma_mm: 3.0,
            smp_sigma_mm: 4.0,
            min_density_fraction: 0.05,
            bridson_candidates: 30,
            fill_spacing_fraction: 0.4,
            kappa_initial: 0.62,
            calibration_runs: 3,
            count_tolerance: 0.03,
            fixed_radius_factor: 0.85,
            neighbours: 10,
            max_moves_per_dot: 40,
            dwell_step_s: smp_core::kinematics::GRBL_DWELL_STEP_S,
        }
    }
}

/// Figures about how a plan was made, for reports, tests and benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStats {
    /// Dots the density integral asks for over the mask.
    pub target_dots: f64,
    /// Dots the sampler placed (before travel-limit and `max_dots` filtering).
    pub sampled_dots: usize,
    /// Packing constant of the run that was kept.
    pub kappa: f64,
    pub sampling_runs: usize,
    /// Travel of the nearest-neighbour path, and of the improved one, mm.
    pub nn_tour_mm: f64,
    pub tour_mm: f64,
    pub two_opt_moves: usize,
    pub or_opt_moves: usize,
    /// Proven lower bound on any path through the dots from the same start, mm.
    pub tour_lower_bound_mm: f64,
    /// Dot pairs that break the spec's skin-recovery rule in the final order (0 unless the
    /// rule cannot be met; the plan then warns).
    pub recovery_violations: usize,
    /// Longest travel step between consecutive dots, mm.
    pub max_step_mm: f64,
    /// Lowest height above the skin of any straight travel move between hover points, mm
    /// (along the patch z axis; `hover_mm` when the skin were flat). Below `hover_mm / 2`
    /// the plan carries a warning: the compiler must lift for long moves.
    pub min_travel_clearance_mm: f64,
    /// Mask area (cm² of skin) and the nominal session density (per cm²) it was planned for.
    pub mask_area_cm2: f64,
    pub nominal_density_per_cm2: f64,
    /// Treatable skin left untreated because it lies in front of the designed hairline, cm².
    pub front_of_hairline_cm2: f64,
    /// Mask area by zone (cell centres), cm² of skin.
    pub zone_area_cm2: BTreeMap<Zone, f64>,
    /// The hairline as resolved (preset, values), when the spec has one.
    pub hairline: Option<HairlineParams>,
    /// Skin type and hair colour the pigment ladder used (absent without a ladder).
    pub fitzpatrick: Option<u8>,
    pub hair_color: Option<HairColor>,
}

/// A plan together with how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    pub plan: SessionPlan,
    pub stats: PlanStats,
}

/// Everything one session's plan depends on. Build it with [`PlanRequest::new`] and set the
/// optional parts.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// The (new) scan: for sessions 2+ the healed scalp, earlier dots as `SmpDot` follicles.
    pub map: &'a ScalpMap,
    pub spec: &'a SessionSpec,
    pub rig: &'a Rig,
    /// Registration the plan is made for (tilt limits, reach and estimates).
    pub base_from_head: Isometry3<f64>,
    pub cfg: PlannerConfig,
    /// The patient's intake: the contraindication gate, the age for the hairline preset and
    /// the hair colour for the pigment. Without it the gate cannot run (the plan warns).
    pub intake: Option<&'a PatientIntake>,
    /// Pigment ladder; `None`: the embedded default ([`PigmentLadder::embedded`]).
    pub ladder: Option<&'a PigmentLadder>,
    /// Needle entries of earlier sessions (head frame), from their plans: kept at
    /// `min_spacing_mm` even where the new scan no longer sees them (faded away). They do not
    /// count toward the density; only what the scan sees does.
    pub prior_dots_head: &'a [[f64; 3]],
    /// Where the arm is (machine coordinates, mm) when the session's program starts, for the
    /// arm-time estimate; `None`: at the safe height above the first dot.
    pub start_machine_mm: Option<[f64; 3]>,
}

impl<'a> PlanRequest<'a> {
    pub fn new(map: &'a ScalpMap, spec: &'a SessionSpec, rig: &'a Rig, base_from_head: &Isometry3<f64>) -> Self {
        PlanRequest {
            map,
            spec,
            rig,
            base_from_head: *base_from_head,
            cfg: PlannerConfig::default(),
            intake: None,
            ladder: None,
            prior_dots_head: &[],
            start_machine_mm: None,
        }
    }
}

/// Dots placed but not yet ordered or toned: what the placement benchmark measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Head-frame positions and outward normals, in placement order.
    pub points_head: Vec<[f64; 3]>,
    pub normals_head: Vec<[f64; 3]>,
    pub target_dots: f64,
    pub kappa: f64,
    pub sampling_runs: usize,
    pub warnings: Vec<String>,
}

/// Plans one session over a scalp map, for a rig registered to the head by `base_from_head`
/// (used for the needle's tilt against the skin and for the arm-time estimate; the plan
/// itself is in the head frame). See the crate docs for the steps and guarantees. Every dot
/// gets the spec's `dilution_pct` and no ladder tone (the issue-2 behaviour).
pub fn plan_session(
    map: &ScalpMap,
    spec: &SessionSpec,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
) -> Result<SessionPlan, PlanError> {
    plan_session_with(map, spec, rig, base_from_head, &PlannerConfig::default()).map(|o| o.plan)
}

/// [`plan_session`] with explicit tuning, returning the statistics too.
pub fn plan_session_with(
    map: &ScalpMap,
    spec: &SessionSpec,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    cfg: &PlannerConfig,
) -> Result<PlanOutcome, PlanError> {
    let req = PlanRequest { cfg: cfg.clone(), ..PlanRequest::new(map, spec, rig, base_from_head) };
    plan_internal(&req, ToneMode::Spec)
}

/// Plans one session with everything: the intake gate (and age for the hairline preset),
/// the pigment ladder (given, or the embedded one) and earlier sessions' entries.
pub fn plan_session_full(req: &PlanRequest<'_>) -> Result<PlanOutcome, PlanError> {
    let ladder = match req.ladder {
        Some(l) => {
            l.validate()?;
            l
        }
        None => embedded_ladder()?,
    };
    plan_internal(req, ToneMode::Ladder(ladder))
}

/// Places the dots of a session (steps 1-4 of the pipeline, with the intake gate) without
/// ordering, toning or estimating them.
pub fn place_session(req: &PlanRequest<'_>) -> Result<Placement, PlanError> {
    let prep = prepare(req, true)?;
    let placed = place(req, &prep)?;
    let mut warnings = prep.warnings.clone();
    warnings.extend(placed.warnings);
    Ok(Placement {
        points_head: placed.samples.iter().map(|s| s.p_head).collect(),
        normals_head: placed.samples.iter().map(|s| s.n_head).collect(),
        target_dots: placed.target_dots,
        kappa: placed.kappa,
        sampling_runs: placed.runs,
        warnings,
    })
}

/// The designed hairline of a spec on a map's skin (head frame, pieces), for the mock-up and
/// the viewer; `None` when the spec has no `[hairline]`. The intake's age picks the preset
/// when the spec names none.
pub fn hairline_polyline(
    map: &ScalpMap,
    spec: &SessionSpec,
    intake: Option<&PatientIntake>,
) -> Option<Vec<Vec<[f64; 3]>>> {
    let h = spec.hairline.as_ref()?;
    let params = HairlineParams::resolve(h, intake.map(|i| i.age_years));
    Some(Hairline::new(params).polyline(&map.surface))
}

/// The spec of session `session` of a layered treatment, derived from session 1's: session
/// 1 places about 40 % of the final dots; session 2 about 35 % more, between the healed
/// session-1 dots; session 3 and later complete what the healed scan still lacks
/// (`session_share = 1`). Dilution follows the embedded ladder's session rows (50/40/30 %);
/// each session gets its own seed (the hairline keeps its own). Plan sessions 2+ from a new
/// scan of the healed scalp.
pub fn layered_session_spec(session1: &SessionSpec, session: u32) -> SessionSpec {
    let session = session.max(1);
    let (share, dilution) = match session {
        1 => (session1.session_share, session1.dilution_pct),
        2 => (0.35, (session1.dilution_pct - 10.0).max(0.0)),
        _ => (1.0, (session1.dilution_pct - 20.0).max(0.0)),
    };
    SessionSpec {
        session,
        session_share: share,
        dilution_pct: dilution,
        seed: session1.seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(session as u64 - 1)),
        ..session1.clone()
    }
}

/// The embedded ladder, parsed once.
fn embedded_ladder() -> Result<&'static PigmentLadder, PlanError> {
    static LADDER: OnceLock<Result<PigmentLadder, SpecError>> = OnceLock::new();
    match LADDER.get_or_init(PigmentLadder::embedded) {
        Ok(l) => Ok(l),
        Err(e) => Err(PlanError::Input(e.clone())),
    }
}

/// How dots get their pigment.
#[derive(Debug, Clone, Copy)]
enum ToneMode<'a> {
    /// The spec's `dilution_pct`, no shade (issue-2 behaviour).
    Spec,
    Ladder(&'a PigmentLadder),
}

fn region_name(kind: RegionKind) -> &'static str {
    match kind {
        RegionKind::Outside => "outside",
        RegionKind::Hair => "hair",
        RegionKind::Thinning => "thinning",
        RegionKind::Bald => "bald",
        RegionKind::Scar => "scar",
    }
}

/// Mask, fields and fixed points of a request, before any dot is placed.
pub(crate) struct Prepared<'a> {
    pub(crate) geo: geometry::PatchGeometry<'a>,
    pub(crate) mask: mask::TreatmentMask,
    pub(crate) density: density::DensityField,
    pub(crate) zones: ZoneRules,
    pub(crate) fixed: sample::FixedPoints,
    /// Map follicles (all kinds) and earlier entries, head frame: the hard spacing set.
    pub(crate) obstacles_head: Vec<[f64; 3]>,
    /// Densities (per parameter mm²) below this get no dots.
    pub(crate) min_density: f64,
    pub(crate) warnings: Vec<String>,
}

impl Prepared<'_> {
    /// Zone of a mask cell (its centre), as the plan's zone areas and the metrics count it.
    pub(crate) fn cell_zone(&self, k: usize) -> Zone {
        let z = self.density.body_zone[k];
        if z == Zone::Scar {
            return z;
        }
        if let Some(h) = &self.density.hairline {
            let (x, y) = self.mask.grid.cell_centre(k % self.mask.nx, k / self.mask.nx);
            let d = h.distance_mm(&self.mask, x, y);
            if (0.0..h.band_final_mm).contains(&d) {
                return Zone::Hairline;
            }
        }
        z
    }

    /// Zone of a dot at a parameter point and head position.
    fn dot_zone(&self, x: f64, y: f64, p_head: [f64; 3]) -> Zone {
        let scar = self.mask.cell_index(x, y).is_some_and(|c| self.mask.scar[c]);
        let band = self.density.hairline.as_ref().is_some_and(|h| h.distance_mm(&self.mask, x, y) < h.band_final_mm);
        self.zones.zone(p_head, scar, band)
    }

    pub(crate) fn sampler_input(&self, cfg: &PlannerConfig, spec: &SessionSpec) -> sample::SamplerInput<'_> {
        sample::SamplerInput {
            mask: &self.mask,
            density: &self.density,
            geo: &self.geo,
            fixed: &self.fixed,
            hairline: self.density.hairline.as_ref().map(|h| &h.line),
            min_spacing_mm: spec.min_spacing_mm,
            min_density: self.min_density,
            candidates: cfg.bridson_candidates.max(1),
            fixed_radius_factor: cfg.fixed_radius_factor,
            fill_spacing_mm: cfg.fill_spacing_fraction * spec.min_spacing_mm,
        }
    }

    /// Mask area by zone, cm² of skin.
    fn zone_areas(&self) -> BTreeMap<Zone, f64> {
        let cell_cm2 = self.mask.cell_mm * self.mask.cell_mm / 100.0;
        let mut out = BTreeMap::new();
        for k in (0..self.mask.mask.len()).filter(|&k| self.mask.mask[k]) {
            *out.entry(self.cell_zone(k)).or_insert(0.0) += cell_cm2 * self.mask.area_factor[k];
        }
        out
    }
}

/// Steps 1-3: validation, gate, mask, hairline, density, fixed points.
pub(crate) fn prepare<'a>(req: &PlanRequest<'a>, gate: bool) -> Result<Prepared<'a>, PlanError> {
    let (map, spec, rig, base_from_head, cfg) = (req.map, req.spec, req.rig, &req.base_from_head, &req.cfg);
    validate::inputs(map, spec, rig, base_from_head)?;
    validate::extras(req)?;
    let mut warnings = Vec::new();
    if gate {
        if let Some(intake) = req.intake {
            match intake.clearance() {
                Clearance::Clear => {}
                Clearance::Overridden { unresolved, by } => warnings.push(format!(
                    "planned despite unresolved contraindication(s) {} on the override of {} ({}): {}",
                    names(&unresolved),
                    by.clinician,
                    by.date,
                    by.reason
                )),
                Clearance::Refused { unresolved } => {
                    return Err(PlanError::Contraindicated { names: names(&unresolved) });
                }
            }
        }
    }
    let treat_names = spec.treat.iter().map(|k| region_name(*k)).collect::<Vec<_>>().join("/");

    if rig.axes != AxisProfile::Xyz {
        warnings.push(format!(
            "the rig's axes profile is {:?}; this planner assumes a vertical needle (xyz) for tilt limits and estimates",
            rig.axes
        ));
    }
    let map_reg = map.base_from_head.to_isometry();
    let shift_mm = (map_reg.translation.vector - base_from_head.translation.vector).norm();
    let turn_deg = map_reg.rotation.angle_to(&base_from_head.rotation).to_degrees();
    if shift_mm > 1.0 || turn_deg > 0.5 {
        warnings.push(format!(
            "the map was scanned with a registration {shift_mm:.1} mm / {turn_deg:.1}° away from the one planned for; \
             tilt limits and estimates use the one planned for"
        ));
    }

    // 2. Mask.
    let geo = geometry::PatchGeometry::new(&map.surface, base_from_head);
    let mut mask = mask::TreatmentMask::build(map, spec, &geo);
    let ms = mask.stats;
    if ms.mask_cells == 0 {
        let reason = if ms.treat_cm2 <= 0.0 {
            format!("the map has no {treat_names} cells inside the scanned surface; check `treat` or re-scan")
        } else {
            format!(
                "all {:.1} cm² of {treat_names} lies within region_margin_mm {} of untreated skin ({:.1} cm²) or is steeper \
                 than max_tilt_deg {} ({:.1} cm²); lower the margin, or reposition the head",
                ms.treat_cm2, spec.region_margin_mm, ms.margin_cm2, spec.max_tilt_deg, ms.tilt_cm2
            )
        };
        return Err(PlanError::EmptyTreatment { reason });
    }
    if ms.mask_cm2 < 0.95 * ms.treat_cm2 {
        let mut why = Vec::new();
        let margin_pct = 100.0 * ms.margin_cm2 / ms.treat_cm2;
        let tilt_pct = 100.0 * ms.tilt_cm2 / ms.treat_cm2;
        if margin_pct >= 0.5 {
            why.push(format!(
                "{margin_pct:.0} % lies within region_margin_mm {} of untreated or unscanned skin",
                spec.region_margin_mm
            ));
        }
        if tilt_pct >= 0.5 {
            why.push(format!("{tilt_pct:.0} % is steeper than max_tilt_deg {}", spec.max_tilt_deg));
        }
        warnings.push(format!(
            "treatment area {:.1} cm² is smaller than the map's {treat_names} area {:.1} cm² because {}",
            ms.mask_cm2,
            ms.treat_cm2,
            why.join(" and ")
        ));
    }

    // 3. Zones, hairline, density.
    let zones = ZoneRules::from_spec(spec);
    let hairline =
        spec.hairline.as_ref().map(|h| Hairline::new(HairlineParams::resolve(h, req.intake.map(|i| i.age_years))));
    let mut noise_rng = ChaCha8Rng::seed_from_u64(spec.seed);
    noise_rng.set_stream(1);
    let density = density::DensityField::build(
        map,
        density::DensityContext { spec, zones: &zones, hairline, cfg },
        &mask,
        &geo,
        &mut noise_rng,
    );
    if let Some(h) = &density.hairline {
        // Cells wholly in front of the line leave the treatment grid (the verifier's mask);
        // cells the line crosses stay, and each dot is tested at its exact position.
        let half_diagonal = mask.cell_mm * std::f64::consts::FRAC_1_SQRT_2;
        let cells: Vec<bool> = (0..mask.mask.len())
            .map(|k| {
                let (x, y) = mask.grid.cell_centre(k % mask.nx, k / mask.nx);
                h.distance_mm(&mask, x, y) < -half_diagonal
            })
            .collect();
        let front = mask.exclude(|k| cells[k]);
        if front > 0.05 {
            warnings.push(format!(
                "{front:.1} cm² of treatable skin lies in front of the designed hairline ({} preset, frontal point {:.0} mm \
                 above the glabella) and is left untreated",
                h.line.params.preset.as_str(),
                h.line.params.frontal_height_mm
            ));
        }
        if h.polyline.is_empty() {
            warnings.push(
                "the designed hairline does not cross the scanned surface: check [hairline] glabella_head_mm and \
                 frontal_height_mm against the scan"
                    .into(),
            );
        }
        if mask.stats.mask_cells == 0 {
            return Err(PlanError::EmptyTreatment {
                reason: format!(
                    "all {:.1} cm² of the treatment area lies in front of the designed hairline; raise the hairline \
                     ([hairline] frontal_height_mm) or check glabella_head_mm",
                    front
                ),
            });
        }
    }
    let min_density = cfg.min_density_fraction * density.nominal_per_mm2;
    let saturated = density.saturated_cm2(&mask, min_density);
    if saturated > 0.05 {
        warnings.push(format!(
            "{saturated:.1} cm² of the treatment area already has natural follicles or earlier dots at or near the \
             target density; no dots there"
        ));
    }

    // Fixed points: every map follicle (natural and earlier dots the scan sees) interleaves;
    // earlier entries from the plans keep the hard spacing.
    let follicles: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let fixed = sample::FixedPoints::new(&geo, &mask, &follicles, req.prior_dots_head);
    let mut obstacles_head = follicles;
    obstacles_head.extend_from_slice(req.prior_dots_head);
    Ok(Prepared { geo, mask, density, zones, fixed, obstacles_head, min_density, warnings })
}

fn names(list: &[&smp_core::intake::Contraindication]) -> String {
    list.iter().map(|c| format!("`{}`", c.name)).collect::<Vec<_>>().join(", ")
}

/// Placed dots of a request.
struct Placed {
    samples: Vec<sample::Sample>,
    target_dots: f64,
    sampled_dots: usize,
    kappa: f64,
    runs: usize,
    subset_centre: Option<(f64, f64)>,
    warnings: Vec<String>,
}

/// Step 4: sampling with calibration, reach and `max_dots`.
fn place(req: &PlanRequest<'_>, prep: &Prepared<'_>) -> Result<Placed, PlanError> {
    let (spec, cfg, base_from_head) = (req.spec, &req.cfg, &req.base_from_head);
    let mask = &prep.mask;
    let ms = mask.stats;
    let mut warnings = Vec::new();
    let inp = prep.sampler_input(cfg, spec);
    let target_dots = sample::expected_count(&inp, 3);
    if target_dots < 0.5 {
        return Err(PlanError::NoDots {
            reason: format!(
                "the density target asks for {target_dots:.1} dots over {:.1} cm²: natural follicles and earlier dots \
                 already reach the target there; nothing for this session to add",
                ms.mask_cm2
            ),
        });
    }
    let mut kappa = cfg.kappa_initial;
    let mut best: Option<(f64, f64, Vec<sample::Sample>)> = None;
    let mut runs = 0;
    let mut last_count = 0usize;
    for run in 0..cfg.calibration_runs.max(1) {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(100 + run as u64);
        let samples = sample::sample(&inp, kappa, &mut rng);
        runs += 1;
        let count = samples.len();
        let ratio = count as f64 / target_dots;
        let err = (ratio - 1.0).abs();
        if best.as_ref().is_none_or(|(e, _, _)| err < *e) {
            best = Some((err, kappa, samples));
        }
        // Done when close enough, or when a tighter packing no longer adds dots (the
        // spacing, not the packing constant, limits the count).
        let saturated = run > 0 && ratio < 1.0 && (count as f64) < 1.01 * last_count as f64;
        if err <= cfg.count_tolerance || ratio <= 0.0 || saturated {
            break;
        }
        last_count = count;
        // The sampling reaches about kappa_true / r² dots, and r² = kappa / density.
        kappa = (kappa * ratio).clamp(0.2, 1.5);
    }
    let Some((_, kappa, samples)) = best else {
        return Err(PlanError::SelfCheck("no sampling run was made".into()));
    };
    let sampled_dots = samples.len();
    if sampled_dots == 0 {
        return Err(PlanError::NoDots {
            reason: format!(
                "no point of the {:.1} cm² treatment area is at least min_spacing_mm {} from every follicle",
                ms.mask_cm2, spec.min_spacing_mm
            ),
        });
    }
    if (sampled_dots as f64) < 0.85 * target_dots {
        warnings.push(format!(
            "placed {sampled_dots} dots where the density target asks for {target_dots:.0}: min_spacing_mm {} and the \
             existing follicles leave no room for more",
            spec.min_spacing_mm
        ));
    }

    // Drop dots the machine cannot reach (soft limits), with a warning.
    let mut reachable = Vec::with_capacity(samples.len());
    let mut unreachable = 0usize;
    for s in samples {
        let m = estimate::dot_motion(base_from_head, s.p_head, spec);
        if req.rig.dynamics.within_travel(m.hover) && req.rig.dynamics.within_travel(m.bottom) {
            reachable.push(s);
        } else {
            unreachable += 1;
        }
    }
    if unreachable > 0 {
        warnings.push(format!(
            "{unreachable} dots lie outside the machine's travel limits (rig dynamics min_mm/max_mm) and were left out"
        ));
    }
    if reachable.is_empty() {
        return Err(PlanError::NoDots {
            reason: "every dot lies outside the machine's travel limits; check the head rest pose (rig head_rest)"
                .into(),
        });
    }

    // max_dots: keep a compact disc of dots around the deepest interior point of the mask,
    // so a short demo still treats one contiguous patch rather than a stripe of the path.
    let mut subset_centre: Option<(f64, f64)> = None;
    if let Some(max) = spec.max_dots.map(|m| m as usize) {
        if reachable.len() > max {
            let deepest = (0..mask.mask.len())
                .filter(|&k| mask.mask[k])
                .max_by(|&a, &b| mask.border_mm[a].total_cmp(&mask.border_mm[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            let (cx, cy) = mask.grid.cell_centre(deepest % mask.nx, deepest / mask.nx);
            let total = reachable.len();
            let mut keyed: Vec<(f64, usize)> =
                reachable.iter().enumerate().map(|(i, s)| ((s.x - cx).hypot(s.y - cy), i)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let radius = keyed[max - 1].0;
            let mut keep: Vec<usize> = keyed[..max].iter().map(|k| k.1).collect();
            keep.sort_unstable();
            reachable = keep.into_iter().map(|i| reachable[i]).collect();
            subset_centre = Some((cx, cy));
            warnings.push(format!(
                "max_dots {max} keeps {max} of {total} planned dots: a patch of radius {radius:.1} mm around \
                 ({cx:.1}, {cy:.1}) mm on the surface patch"
            ));
        }
    }
    Ok(Placed { samples: reachable, target_dots, sampled_dots, kappa, runs, subset_centre, warnings })
}

/// Figures of the ordering step.
struct OrderFigures {
    nn_tour_mm: f64,
    two_opt_moves: usize,
    or_opt_moves: usize,
    lower_bound_mm: f64,
    recovery_violations: usize,
    recovery_note: Option<String>,
}

/// Step 5, in one place: the execution order of `points` (patch frame) from `start`, under
/// the spec's skin-recovery rule when it has one (timed with the rig's dynamics).
fn order_points(
    points: &[[f64; 3]],
    start: u32,
    cfg: &PlannerConfig,
    spec: &SessionSpec,
    rig: &Rig,
) -> Result<(Vec<u32>, OrderFigures), PlanError> {
    let params = OrderParams {
        neighbours: cfg.neighbours.max(1),
        max_moves_per_dot: cfg.max_moves_per_dot.max(1),
        recovery: spec.recovery.map(|r| RecoveryRule { radius_mm: r.radius_mm, window_s: r.window_s }),
        timing: estimate::dot_timing_for_rig(spec, rig),
        seed: spec.seed,
        ..OrderParams::default()
    };
    let o = order_dots(points, start, &params).map_err(|e| PlanError::SelfCheck(format!("ordering: {e}")))?;
    let figures = OrderFigures {
        nn_tour_mm: o.nn_tour_mm,
        two_opt_moves: o.two_opt_moves,
        or_opt_moves: o.or_opt_moves,
        lower_bound_mm: o.lower_bound_mm,
        recovery_violations: o.recovery_violations,
        recovery_note: o.recovery_note,
    };
    Ok((o.order, figures))
}

/// The whole pipeline.
fn plan_internal(req: &PlanRequest<'_>, tone: ToneMode<'_>) -> Result<PlanOutcome, PlanError> {
    let (map, spec, rig, base_from_head, cfg) = (req.map, req.spec, req.rig, &req.base_from_head, &req.cfg);
    let prep = prepare(req, true)?;
    let mut warnings = prep.warnings.clone();
    let placed = place(req, &prep)?;
    warnings.extend(placed.warnings.iter().cloned());
    let reachable = &placed.samples;
    let mask = &prep.mask;
    let geo = &prep.geo;
    let n = reachable.len();
    if n >= DOT_ID_STRIDE as usize {
        return Err(PlanError::TooManyDots { dots: n, max: DOT_ID_STRIDE - 1 });
    }

    // 5. Order, in the patch frame (a rigid copy of the head frame).
    let points: Vec<[f64; 3]> = reachable.iter().map(|s| [s.x, s.y, s.z]).collect();
    let start = match placed.subset_centre {
        // The disc's rim, farthest from its centre.
        Some((cx, cy)) => (0..n)
            .max_by(|&a, &b| {
                let da = (reachable[a].x - cx).hypot(reachable[a].y - cy);
                let db = (reachable[b].x - cx).hypot(reachable[b].y - cy);
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0),
        // The dot closest to the mask border.
        None => (0..n)
            .min_by(|&a, &b| {
                let da = mask.border_distance_mm(reachable[a].x, reachable[a].y);
                let db = mask.border_distance_mm(reachable[b].x, reachable[b].y);
                da.total_cmp(&db).then(a.cmp(&b))
            })
            .unwrap_or(0),
    };
    let (order, figures) = order_points(&points, start as u32, cfg, spec, rig)?;
    if figures.recovery_violations > 0 {
        warnings.push(format!(
            "the skin-recovery rule could not be kept for {} dot pair(s){}",
            figures.recovery_violations,
            figures.recovery_note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
        ));
    }
    if order.len() != n {
        return Err(PlanError::SelfCheck(format!("ordering returned {} of {n} dots", order.len())));
    }

    // 6. Zones and tone.
    let (fitzpatrick, hair) = match tone {
        ToneMode::Spec => (None, None),
        ToneMode::Ladder(_) => {
            let from_map = map.skin.as_ref().map(|s| s.fitzpatrick).filter(|f| (1..=6).contains(f));
            let f = match (from_map, req.intake.and_then(|i| i.fitzpatrick)) {
                (Some(f), _) | (None, Some(f)) => f,
                (None, None) => {
                    warnings.push(format!(
                        "the map has no skin tone and the intake no Fitzpatrick type: the pigment ladder assumed type \
                         {FALLBACK_FITZPATRICK}; scan under the rig's light or set [intake] fitzpatrick"
                    ));
                    FALLBACK_FITZPATRICK
                }
            };
            let h = match req.intake {
                Some(i) => i.hair_color,
                None => {
                    warnings.push(format!(
                        "no patient intake: contraindications were not checked and the pigment ladder assumed {} hair; \
                         pass the patient's [intake]",
                        FALLBACK_HAIR.as_str()
                    ));
                    FALLBACK_HAIR
                }
            };
            (Some(f), Some(h))
        }
    };
    let mut dots = Vec::with_capacity(n);
    for (k, &i) in order.iter().enumerate() {
        let s = &reachable[i as usize];
        let zone = prep.dot_zone(s.x, s.y, s.p_head);
        let (tone_choice, dilution_pct) = match (tone, fitzpatrick, hair) {
            (ToneMode::Ladder(l), Some(f), Some(h)) => match l.pick(spec.session, zone, f, h) {
                Some(c) => (Some(c.tone), c.dilution_pct),
                None => return Err(PlanError::SelfCheck("the validated pigment ladder gave no shade".into())),
            },
            _ => (None, spec.dilution_pct),
        };
        dots.push(PlannedDot {
            id: spec.session * DOT_ID_STRIDE + k as u32,
            x_mm: s.p_head[0],
            y_mm: s.p_head[1],
            z_mm: s.p_head[2],
            normal: s.n_head,
            layer: spec.session,
            zone,
            depth_mm: spec.depth_mm,
            dilution_pct,
            tone: tone_choice,
        });
    }

    // 7. Estimates.
    let motions: Vec<estimate::DotMotion> =
        dots.iter().map(|d| estimate::dot_motion(base_from_head, d.position(), spec)).collect();
    let (mut tour_mm, mut arm_time_s) = estimate::estimate_from(&motions, spec, &rig.dynamics, req.start_machine_mm);
    if rig.axes != AxisProfile::Xyz || cfg.dwell_step_s > 0.0 {
        // The tilted profiles' own path and axes (and the controller's dwell step); the
        // vertical-needle figure stays if the program cannot be timed (the compiler will then
        // refuse it with the same reason).
        match estimate::estimate_dots(&dots, spec, rig, base_from_head, req.start_machine_mm, cfg.dwell_step_s) {
            Ok(e) => (tour_mm, arm_time_s) = (e.tour_mm, e.arm_time_s),
            Err(e) => warnings.push(format!(
                "arm-time estimate: the {} program could not be timed ({e}); the vertical-needle estimate is given",
                match rig.axes {
                    AxisProfile::Xyzab => "xyzab",
                    _ => "joints",
                }
            )),
        }
    }
    let (clearance_mm, worst_k, max_step_mm) =
        estimate::travel_clearance(&motions, spec, rig.dynamics.z.max_mm, &geo.base_from_patch.inverse(), geo.surface);
    let min_travel_clearance_mm = if clearance_mm.is_finite() { clearance_mm } else { spec.hover_mm };
    if min_travel_clearance_mm < 0.5 * spec.hover_mm {
        warnings.push(format!(
            "the travel move to dot {} passes {min_travel_clearance_mm:.2} mm above the skin (hover_mm {}): the scalp \
             curves more tightly there than the compiler's lift assumes",
            dots[worst_k].id, spec.hover_mm
        ));
    }

    let xy: Vec<(f64, f64)> = order.iter().map(|&i| (reachable[i as usize].x, reachable[i as usize].y)).collect();
    self_check(&dots, &xy, &prep, spec)?;

    let ms = mask.stats;
    let plan = SessionPlan {
        session: spec.session,
        spec: spec.clone(),
        limits: SessionLimits {
            depth_limit_mm: spec.depth_limit_mm,
            max_feed_mm_per_min: spec.max_feed_mm_per_min,
            min_spacing_mm: spec.min_spacing_mm,
            max_tilt_deg: spec.max_tilt_deg,
        },
        treatment: mask.grid.clone(),
        dots,
        estimates: PlanEstimates {
            tour_lower_bound_mm: figures.lower_bound_mm.is_finite().then_some(figures.lower_bound_mm),
            ..estimate::plan_estimates(tour_mm, arm_time_s, ms.mask_cm2)
        },
        warnings,
    };
    Ok(PlanOutcome {
        plan,
        stats: PlanStats {
            target_dots: placed.target_dots,
            sampled_dots: placed.sampled_dots,
            kappa: placed.kappa,
            sampling_runs: placed.runs,
            nn_tour_mm: figures.nn_tour_mm,
            tour_mm,
            two_opt_moves: figures.two_opt_moves,
            or_opt_moves: figures.or_opt_moves,
            tour_lower_bound_mm: figures.lower_bound_mm,
            recovery_violations: figures.recovery_violations,
            max_step_mm,
            min_travel_clearance_mm,
            mask_area_cm2: ms.mask_cm2,
            nominal_density_per_cm2: prep.density.nominal_per_mm2 * 100.0,
            front_of_hairline_cm2: ms.front_cm2,
            zone_area_cm2: prep.zone_areas(),
            hairline: prep.density.hairline.as_ref().map(|h| h.line.params.clone()),
            fitzpatrick,
            hair_color: hair,
        },
    })
}

/// Re-checks the hard constraints on the finished dots, independently of how they were
/// made: a violation is a planner bug and must never reach the compiler.
fn self_check(
    dots: &[PlannedDot],
    xy: &[(f64, f64)],
    prep: &Prepared<'_>,
    spec: &SessionSpec,
) -> Result<(), PlanError> {
    let s = spec.min_spacing_mm;
    let fixed = PointGrid::from_points(s, prep.obstacles_head.iter().copied());
    let own = PointGrid::from_points(s, dots.iter().map(|d| d.position()));
    let hairline = prep.density.hairline.as_ref().map(|h| &h.line);
    for (i, d) in dots.iter().enumerate() {
        let p = d.position();
        if let Some((_, dist)) = fixed.nearest_within(p, s) {
            if dist < s {
                return Err(PlanError::SelfCheck(format!(
                    "dot {} is {dist:.3} mm from a follicle or an earlier dot",
                    d.id
                )));
            }
        }
        let mut close = None;
        own.for_each_within(p, s, |j, dist| {
            if j as usize != i && dist < s {
                close = Some((j, dist));
            }
        });
        if let Some((j, dist)) = close {
            return Err(PlanError::SelfCheck(format!(
                "dots {} and {} are {dist:.3} mm apart",
                d.id, dots[j as usize].id
            )));
        }
        let (x, y) = xy[i];
        let q = prep.geo.to_patch(p);
        if (q.x - x).abs() > 1e-6 || (q.y - y).abs() > 1e-6 || !prep.mask.allows(&prep.geo, x, y) {
            return Err(PlanError::SelfCheck(format!("dot {} lies outside the treatment mask", d.id)));
        }
        if hairline.is_some_and(|h| h.in_front(p)) {
            return Err(PlanError::SelfCheck(format!("dot {} lies in front of the designed hairline", d.id)));
        }
        if !d.depth_mm.is_finite() || d.depth_mm > spec.depth_limit_mm {
            return Err(PlanError::SelfCheck(format!("dot {} is deeper than the limit", d.id)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_full;

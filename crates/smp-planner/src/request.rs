//! What the pipeline takes and gives: the request (map, spec, rig, registration and the
//! optional intake, ladder and earlier entries), the tuning that is not a clinical choice,
//! and the results with the figures of how they were made.

use std::collections::BTreeMap;

use nalgebra::Isometry3;
use smp_core::intake::{HairColor, PatientIntake};
use smp_core::map::ScalpMap;
use smp_core::plan::{SessionPlan, SessionSpec, Zone};
use smp_core::rig::Rig;

use crate::{HairlineParams, PigmentLadder};

/// Planner tuning that is not a clinical choice (those live in `SessionSpec`). The defaults
/// are what [`plan_session`](crate::plan_session) uses.
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

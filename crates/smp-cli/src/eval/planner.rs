//! `smp eval planner`: the planner measured on a full head made from the simulator's ground truth.

use std::path::PathBuf;
use std::time::Instant;

use nalgebra::{Isometry3, UnitQuaternion};
use serde::Serialize;
use smp_core::plan::SessionPlan;
use smp_core::rig::AxisProfile;
use smp_planner::PlanRequest;
use smp_sim::healed_map::{heal_map, HealingModel};
use smp_sim::patient::SyntheticPatient;
use smp_sim::truth_map::{truth_map, TruthMapSettings};

use crate::error::{stage, CliError};
use crate::planning::{figures, planner_error, session_spec, session_summary, SessionFigures};

/// `smp mockup` arguments.
/// Skin up to this tilt from the vertex is mapped for `smp eval planner`: the part of the
/// head a full-head session treats (a 5-axis rig keeps the needle normal there).
pub const EVAL_MAX_TILT_DEG: f64 = 72.0;

/// `smp eval planner` arguments.
#[derive(Debug, Clone)]
pub struct EvalPlannerArgs {
    /// Sim patient file (its `[intake]` too); the embedded default when absent.
    pub patient: Option<PathBuf>,
    /// Cap on dots per session (a quick run).
    pub dots: Option<u32>,
    /// Sessions to plan in a row (1-3), each on the healed map of the ones before.
    pub sessions: u32,
    pub spec: Option<PathBuf>,
}

/// What `smp eval planner --json` prints: the last session's keys at the top level (the
/// finished course), and every session's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EvalPlannerReport {
    pub patient: String,
    #[serde(flatten)]
    pub last: SessionFigures,
    pub dots_total: usize,
    pub min_spacing_all_mm: f64,
    pub max_session_arm_time_s: f64,
    pub truth_surface_rms_mm: f64,
    pub sessions: Vec<SessionFigures>,
}

/// `smp eval planner`: the planner on a full head made from the simulator's ground truth
/// (vision is measured by its own eval): sessions 1..=N, each planned on the map healed
/// after the ones before, on a 5-axis rig with the head upright.
pub fn eval_planner(a: &EvalPlannerArgs) -> Result<EvalPlannerReport, CliError> {
    let (spec, name) = crate::sim::read_sim_patient(a.patient.as_deref())?;
    if !(1..=3).contains(&a.sessions) {
        return Err(CliError::input(format!("--sessions {} is out of range", a.sessions), "plan 1 to 3 sessions"));
    }
    let mut rig = smp_core::rig::Rig::default_sim();
    rig.axes = AxisProfile::Xyzab;
    // The rotary axes of the shipped 5-axis rig (the planner checks the rig is complete).
    rig.five_axis = smp_core::rig::Rig::from_toml_str(include_str!("../../../../calibration/rig-xyzab.toml"))
        .map_err(|e| CliError::failure(format!("the embedded 5-axis rig: {e}")))?
        .five_axis;
    // Head upright at the head rest: the whole top of the head faces the needle's reach.
    let base_from_head = Isometry3::from_parts(rig.base_from_head_nominal().translation, UnitQuaternion::identity());
    let patient = SyntheticPatient::generate(&spec);
    let settings = TruthMapSettings { base_from_head, max_tilt_deg: EVAL_MAX_TILT_DEG, ..TruthMapSettings::default() };
    let truth = truth_map(&patient, &settings).map_err(stage("truth map"))?;
    let mut plans: Vec<SessionPlan> = Vec::new();
    let mut out = Vec::new();
    for n in 1..=a.sessions {
        let mut s = session_spec(a.spec.as_deref(), n)?;
        if let Some(d) = a.dots {
            s.max_dots = Some(d);
        }
        let refs: Vec<&SessionPlan> = plans.iter().collect();
        let map = if refs.is_empty() {
            truth.map.clone()
        } else {
            heal_map(&truth.map, &refs, &HealingModel::default(), spec.seed.wrapping_add(n as u64))
        };
        let prior: Vec<[f64; 3]> = plans.iter().flat_map(|p| p.dots.iter().map(|d| d.position())).collect();
        let mut req = PlanRequest::new(&map, &s, &rig, &base_from_head);
        req.intake = spec.intake.as_ref();
        req.prior_dots_head = &prior;
        let t0 = Instant::now();
        let o = smp_planner::plan_session_full(&req).map_err(planner_error)?;
        let wall_s = t0.elapsed().as_secs_f64();
        out.push(figures(&req, &o, wall_s)?);
        plans.push(o.plan);
    }
    let all: Vec<[f64; 3]> = plans.iter().flat_map(|p| p.dots.iter().map(|d| d.position())).collect();
    let natural: Vec<[f64; 3]> = truth.map.follicles.iter().map(|f| f.position()).collect();
    let min_all = smp_planner::metrics::min_spacing_mm(&all, &natural);
    let last = out.last().cloned().ok_or_else(|| CliError::failure("no session was planned"))?;
    Ok(EvalPlannerReport {
        patient: name,
        last,
        dots_total: all.len(),
        min_spacing_all_mm: if min_all.is_finite() { min_all } else { -1.0 },
        max_session_arm_time_s: out.iter().map(|f| f.est_arm_time_s).fold(0.0, f64::max),
        truth_surface_rms_mm: truth.surface_rms_mm,
        sessions: out,
    })
}

/// The readable report of `smp eval planner`.
pub fn eval_summary(r: &EvalPlannerReport) -> String {
    let mut s = format!("planner on {} (truth map, surface rms {:.3} mm)\n", r.patient, r.truth_surface_rms_mm);
    for f in &r.sessions {
        s.push_str(&session_summary(f));
    }
    s.push_str(&format!(
        "course: {} dots, min spacing over all sessions and follicles {:.3} mm, longest session {:.1} min\n",
        r.dots_total,
        r.min_spacing_all_mm,
        r.max_session_arm_time_s / 60.0
    ));
    s
}

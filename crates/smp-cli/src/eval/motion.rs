//! `smp eval motion`: the dot cycle each rig profile reaches at its default dynamics on a
//! full-head session, measured two ways, against the shortest cycle the session's feeds allow.
//!
//! - The planner's estimate over the whole session (every dot: travel, approach, plunge,
//!   dwell, retract, in the planned order), which models the simulated controller's motion.
//! - The simulated controller itself over the session's first dots: `smp run --sim` on a real
//!   pty, timed between the first and the last needle entry it records (the run's own
//!   `arm_time_s` also counts the connection handshake and the journal set-up).
//! - The cycle floor ([`smp_planner::cycle_floor`]): plunge, dwell and retract with no travel,
//!   at the session's feeds and at its feed limit. Dots times the floor is a bound no ordering
//!   or blending can beat, which says whether a target like 30,000 dots an hour is reachable.

use std::path::{Path, PathBuf};

use serde::Serialize;
use smp_core::plan::{PlanFile, SessionPlan};
use smp_core::rig::Rig;
use smp_planner::PlanRequest;
use smp_sim::controller::ControllerConfig;
use smp_sim::patient::SyntheticPatient;
use smp_sim::truth_map::{truth_map, TruthMapSettings};

use crate::error::CliError;
use crate::files::{to_json, write_atomically};
use crate::planning::{planner_error, session_spec};
use crate::run_cmd::{run, RunArgs, Target};
use crate::sim::read_sim_patient;

/// `smp eval motion` arguments.
#[derive(Debug, Clone)]
pub struct EvalMotionArgs {
    /// Sim patient file; the embedded default when absent.
    pub patient: Option<PathBuf>,
    /// Session-1 spec; the embedded full-head session when absent.
    pub spec: Option<PathBuf>,
    /// Rig files; the three shipped profiles (`xyz`, `xyzab`, `joints`) when empty.
    pub rigs: Vec<PathBuf>,
    /// Dots of each plan to run on the simulated controller (0: estimate only).
    pub sim_dots: usize,
    /// The head the target speaks of, in dots, and its arm-time budget, minutes.
    pub target_dots: u32,
    pub target_min: f64,
}

/// The simulator's time scale: low enough that the streaming host keeps grbl's buffer fed, so
/// the machine is never starved (see `tests/tests/estimate_vs_sim.rs`).
const SIM_TIME_SCALE: f64 = 2.0;

/// One rig profile's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileFigures {
    pub rig: String,
    pub axes: String,
    pub dots_planned: usize,
    /// The planner's estimate of the whole session, s.
    pub est_arm_time_s: f64,
    /// Mean estimated cycle over the session's dots after the first, s/dot.
    pub est_cycle_s: f64,
    /// Dots run on the simulated controller (0: not run).
    pub sim_dots: usize,
    /// Simulated cycle: first to last needle entry over `sim_dots - 1`, s/dot.
    pub sim_cycle_s: Option<f64>,
    /// The estimate of the same stretch, s/dot, and how much slower the simulator was, %.
    pub sim_stretch_est_cycle_s: Option<f64>,
    pub sim_vs_est_pct: Option<f64>,
    /// Needle entries the simulator saw on a dot already entered (must be 0).
    pub sim_dots_doubled: Option<usize>,
    /// The shortest cycle the session's feeds allow (no travel), s/dot, and at its feed limit.
    pub floor_cycle_s: f64,
    pub floor_cycle_at_max_feed_s: f64,
    /// `target_dots` at the estimated cycle, and at the two floors, minutes.
    pub target_dots_est_min: f64,
    pub target_dots_floor_min: f64,
    pub target_dots_floor_at_max_feed_min: f64,
}

/// What `smp eval motion --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct EvalMotionReport {
    pub patient: String,
    pub spec: String,
    pub target_dots: u32,
    pub target_min: f64,
    pub profiles: Vec<ProfileFigures>,
    /// Some profile's estimated cycle fits `target_dots` in `target_min`.
    pub target_met: bool,
    /// Even with no travel and plunge and retract at the session's feed limit, no profile can.
    pub target_below_floor: bool,
}

/// `smp eval motion`.
pub fn eval_motion(a: &EvalMotionArgs) -> Result<EvalMotionReport, CliError> {
    if !(a.target_min.is_finite() && a.target_min > 0.0 && a.target_dots > 0) {
        return Err(CliError::input(
            format!("target of {} dots in {} min", a.target_dots, a.target_min),
            "give --target-dots above 0 and --target-min above 0",
        ));
    }
    let (patient_spec, patient_name) = read_sim_patient(a.patient.as_deref())?;
    let spec = session_spec(a.spec.as_deref(), 1)?;
    let spec_name =
        a.spec.as_ref().map_or("sim/sessions/full-s1.toml (embedded)".to_string(), |p| p.display().to_string());
    // Each rig with its text: the simulated run reads the rig from a file, as `smp run` does.
    let rigs: Vec<(String, String)> = if a.rigs.is_empty() {
        [
            ("calibration/rig.toml", smp_core::rig::DEFAULT_RIG_TOML),
            ("calibration/rig-xyzab.toml", smp_core::rig::XYZAB_RIG_TOML),
            ("calibration/rig-6axis.toml", smp_core::rig::SIX_AXIS_RIG_TOML),
        ]
        .into_iter()
        .map(|(name, text)| (format!("{name} (embedded)"), text.to_string()))
        .collect()
    } else {
        a.rigs
            .iter()
            .map(|p| Ok((p.display().to_string(), crate::files::read_text(p, "rig", "rig")?)))
            .collect::<Result<_, CliError>>()?
    };
    let patient = SyntheticPatient::generate(&patient_spec);
    let mut profiles = Vec::new();
    for (rig_name, rig_text) in rigs {
        let rig = Rig::from_toml_str(&rig_text)
            .map_err(|e| CliError::input(format!("{rig_name}: {e}"), "fix the rig file (see calibration/rig.toml)"))?;
        let src = RigSource { name: &rig_name, text: &rig_text, rig: &rig };
        profiles.push(profile(a, &patient, &patient_spec, &patient_name, &spec, &src)?);
    }
    let minutes_ok = |m: f64| m <= a.target_min;
    Ok(EvalMotionReport {
        patient: patient_name,
        spec: spec_name,
        target_dots: a.target_dots,
        target_min: a.target_min,
        target_met: profiles.iter().any(|p| minutes_ok(p.target_dots_est_min)),
        target_below_floor: !profiles.iter().any(|p| minutes_ok(p.target_dots_floor_at_max_feed_min)),
        profiles,
    })
}

/// A rig, its file's text and the name it is reported by.
struct RigSource<'a> {
    name: &'a str,
    text: &'a str,
    rig: &'a Rig,
}

fn profile(
    a: &EvalMotionArgs,
    patient: &SyntheticPatient,
    patient_spec: &smp_sim::patient::PatientSpec,
    patient_name: &str,
    spec: &smp_core::plan::SessionSpec,
    src: &RigSource<'_>,
) -> Result<ProfileFigures, CliError> {
    let (rig_name, rig) = (src.name, src.rig);
    let stage = |what: &'static str| move |e: String| CliError::failure(format!("{rig_name}: {what}: {e}"));
    let base_from_head = rig.base_from_head_nominal();
    let settings = TruthMapSettings { base_from_head, ..TruthMapSettings::default() };
    let map = truth_map(patient, &settings).map_err(|e| stage("truth map")(e.to_string()))?.map;
    let mut req = PlanRequest::new(&map, spec, rig, &base_from_head);
    req.intake = patient_spec.intake.as_ref();
    let plan = smp_planner::plan_session_full(&req).map_err(planner_error)?.plan;
    let dwell_step_s =
        ControllerConfig::for_rig(rig).map_err(|e| stage("simulated controller")(e.to_string()))?.dwell_quantum_s;
    let est = smp_planner::estimate_arm_time(&plan, rig, &base_from_head, None, dwell_step_s)
        .map_err(|e| stage("arm-time estimate")(e.to_string()))?;
    let est_cycle_s = est.steady_cycle_s().ok_or_else(|| stage("plan")("fewer than two dots".into()))?;
    let floor = smp_planner::cycle_floor(spec, &rig.dynamics, dwell_step_s);

    let mut fig = ProfileFigures {
        rig: rig_name.to_string(),
        axes: format!("{:?}", rig.axes).to_lowercase(),
        dots_planned: plan.dots.len(),
        est_arm_time_s: est.arm_time_s,
        est_cycle_s,
        sim_dots: 0,
        sim_cycle_s: None,
        sim_stretch_est_cycle_s: None,
        sim_vs_est_pct: None,
        sim_dots_doubled: None,
        floor_cycle_s: floor.at_session_feeds_s,
        floor_cycle_at_max_feed_s: floor.at_max_feed_s,
        target_dots_est_min: f64::from(a.target_dots) * est_cycle_s / 60.0,
        target_dots_floor_min: f64::from(a.target_dots) * floor.at_session_feeds_s / 60.0,
        target_dots_floor_at_max_feed_min: f64::from(a.target_dots) * floor.at_max_feed_s / 60.0,
    };
    let n = a.sim_dots.min(plan.dots.len());
    if n >= 2 {
        let mut head = plan.clone();
        head.dots.truncate(n);
        let stretch = smp_planner::estimate_arm_time(&head, rig, &base_from_head, None, dwell_step_s)
            .map_err(|e| stage("arm-time estimate")(e.to_string()))?;
        let est_stretch_s: f64 = stretch.per_dot_s[1..].iter().sum();
        let dir = tempfile::tempdir()
            .map_err(|e| CliError::failure(format!("a temporary directory for the simulated run: {e}")))?;
        let (entries_s, doubled) = run_on_sim(dir.path(), a, patient_name, &map, src.text, head)?;
        let span_s = entries_s.last().copied().unwrap_or(0.0) - entries_s.first().copied().unwrap_or(0.0);
        fig.sim_dots = entries_s.len();
        if entries_s.len() == n {
            fig.sim_cycle_s = Some(span_s / (n - 1) as f64);
            fig.sim_stretch_est_cycle_s = Some(est_stretch_s / (n - 1) as f64);
            fig.sim_vs_est_pct = Some((span_s - est_stretch_s) / est_stretch_s * 100.0);
        }
        fig.sim_dots_doubled = doubled;
    }
    Ok(fig)
}

/// Runs `plan` on the simulated controller (real pty, grbl character counting) and returns the
/// machine times of the needle entries, sorted, and the doubled-dot count.
fn run_on_sim(
    dir: &Path,
    a: &EvalMotionArgs,
    patient_name: &str,
    map: &smp_core::map::ScalpMap,
    rig_text: &str,
    plan: SessionPlan,
) -> Result<(Vec<f64>, Option<usize>), CliError> {
    let map_p = dir.join("map.json");
    write_atomically(&map_p, to_json(map)?.as_bytes())?;
    let plan_p = dir.join("plan.json");
    let pf =
        PlanFile { version: smp_core::JSON_FORMAT_VERSION, patient: patient_name.to_string(), sessions: vec![plan] };
    write_atomically(&plan_p, to_json(&pf)?.as_bytes())?;
    let rig_p = dir.join("rig.toml");
    write_atomically(&rig_p, rig_text.as_bytes())?;
    let journal = dir.join("session.sqlite");
    let args = RunArgs {
        plan: plan_p,
        map: map_p,
        session: None,
        target: Target::Sim { patient: a.patient.clone(), faults: None, time_scale: SIM_TIME_SCALE },
        rig: Some(rig_p),
        journal: journal.clone(),
        resume: false,
        protocol: smp_motion::Protocol::Grbl,
        bus: None,
        tracking_hz: 5.0,
        marlin_realtime: false,
    };
    let report = run(&args)?;
    // The world's record of the run (the journal holds no needle entries).
    let record =
        smp_sim::world_record::WorldRecord::load_or_default(&smp_sim::world_record::WorldRecord::path_for(&journal))
            .map_err(|e| CliError::failure(e.to_string()))?;
    let mut entries_s: Vec<f64> = record.entries().iter().map(|e| e.time_s).collect();
    entries_s.sort_by(f64::total_cmp);
    Ok((entries_s, report.score.map(|s| s.dots_doubled)))
}

/// The readable report.
pub fn eval_motion_summary(r: &EvalMotionReport) -> String {
    let mut s = format!(
        "dot cycle on {} with {} (target: {} dots in {:.0} min, {:.3} s/dot)\n",
        r.patient,
        r.spec,
        r.target_dots,
        r.target_min,
        r.target_min * 60.0 / f64::from(r.target_dots)
    );
    for p in &r.profiles {
        s.push_str(&format!(
            "{} ({}): {} dots, estimated {:.1} min, {:.4} s/dot -> {} dots in {:.1} min\n",
            p.rig,
            p.axes,
            p.dots_planned,
            p.est_arm_time_s / 60.0,
            p.est_cycle_s,
            r.target_dots,
            p.target_dots_est_min
        ));
        if let (Some(sim), Some(est), Some(pct)) = (p.sim_cycle_s, p.sim_stretch_est_cycle_s, p.sim_vs_est_pct) {
            s.push_str(&format!(
                "  simulator, first {} dots: {sim:.4} s/dot (estimate of the same dots {est:.4}, {pct:+.2} %), doubled {}\n",
                p.sim_dots,
                p.sim_dots_doubled.map_or("-".to_string(), |d| d.to_string())
            ));
        } else if p.sim_dots > 0 {
            s.push_str(&format!("  simulator: only {} needle entries recorded\n", p.sim_dots));
        }
        s.push_str(&format!(
            "  floor (no travel): {:.4} s/dot at the session's feeds -> {:.1} min; {:.4} s/dot at its feed limit -> {:.1} min\n",
            p.floor_cycle_s, p.target_dots_floor_min, p.floor_cycle_at_max_feed_s, p.target_dots_floor_at_max_feed_min
        ));
    }
    s.push_str(if r.target_met {
        "target met by the estimate of at least one profile\n"
    } else if r.target_below_floor {
        "target NOT met, and below the floor of every profile: no ordering, blending or feed within the session's limit reaches it\n"
    } else {
        "target NOT met by any profile\n"
    });
    s
}

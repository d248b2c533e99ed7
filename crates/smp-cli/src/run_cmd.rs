//! `smp run`: executes one session of a plan on an arm (a serial port) or on the simulated
//! controller over a pty, journalling every dot, and `smp run --resume` after a crash or a
//! fault: only dots the journal still holds as planned are streamed again; dots left
//! uncertain are reported for a camera check or the operator, never tattooed twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use smp_core::plan::{DotState, PlanFile, SessionPlan};
use smp_sim::patient::SyntheticPatient;

use crate::error::{stage, CliError};
use crate::files::{read_map, read_plan, read_rig, read_text, to_json, write_atomically};

/// Where the program goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A serial device (the arm's controller) at a baud rate.
    Port { path: String, baud: u32 },
    /// The simulated grbl controller on a pty, with a patient on the head rest and an
    /// optional fault scenario.
    Sim { patient: Option<PathBuf>, faults: Option<PathBuf>, time_scale: f64 },
}

/// `smp run` arguments.
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub plan: PathBuf,
    pub map: PathBuf,
    /// Session of the plan file (default: its last).
    pub session: Option<u32>,
    pub target: Target,
    pub rig: Option<PathBuf>,
    /// The session journal: created for a new run; with `resume`, the existing one.
    pub journal: PathBuf,
    pub resume: bool,
}

/// What `smp run --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub session: u32,
    pub dots_planned: usize,
    /// Dots streamed by this run.
    pub dots_streamed: usize,
    /// Dots the journal holds as executed after this run (earlier runs included).
    pub dots_executed: usize,
    /// Needle entries the simulator saw on a dot already entered (`null` on a real port).
    pub dots_doubled: Option<usize>,
    /// Simulator only: needle entries farther than 0.4 mm from every planned dot (the head
    /// moved, or the registration is off), and the worst placement error of the others, mm.
    pub stray_entries: Option<usize>,
    pub placement_max_mm: Option<f64>,
    pub dots_uncertain: usize,
    pub dots_still_planned: usize,
    /// What stopped or disturbed the run: the executor's fault and the simulator's injected ones.
    pub faults: Vec<String>,
    /// Machine time (simulator's clock), or wall time on a real port.
    pub arm_time_s: f64,
    pub journal: String,
}

fn session_of(pf: &PlanFile, session: Option<u32>, path: &Path) -> Result<SessionPlan, CliError> {
    let found = match session {
        Some(n) => pf.sessions.iter().find(|s| s.session == n),
        None => pf.sessions.last(),
    };
    found.cloned().ok_or_else(|| {
        CliError::input(
            format!("plan {} has no session {}", path.display(), session.map_or("at all".into(), |n| n.to_string())),
            format!("sessions in the plan: {:?}", pf.sessions.iter().map(|s| s.session).collect::<Vec<_>>()),
        )
    })
}

/// `smp run`. Returns the report also when the run stopped on a fault (the journal then
/// holds exactly what happened); the error is reserved for runs that could not start.
pub fn run(a: &RunArgs) -> Result<RunReport, CliError> {
    let pf = read_plan(&a.plan)?;
    let mut plan = session_of(&pf, a.session, &a.plan)?;
    let map = read_map(&a.map)?;
    let rig = read_rig(a.rig.as_deref())?;
    let base_from_head = map.base_from_head.to_isometry();
    let dots_planned = plan.dots.len();

    // The journal: a new one, or the one being resumed (whose dots decide what is sent).
    let mut journal = if a.resume {
        if !a.journal.is_file() {
            return Err(CliError::input(
                format!("journal {} does not exist", a.journal.display()),
                "give the session.sqlite of the run to resume",
            ));
        }
        let j = smp_store::Journal::open(&a.journal).map_err(|e| {
            CliError::input(format!("{}: {e}", a.journal.display()), "give the session.sqlite of the run to resume")
        })?;
        let rec = j.session().map_err(stage("journal"))?;
        if rec.meta.session != plan.session {
            return Err(CliError::input(
                format!("journal {} records session {}, not {}", a.journal.display(), rec.meta.session, plan.session),
                "give the journal of this session, or --session N",
            ));
        }
        let todo: std::collections::BTreeSet<u32> =
            j.resume_candidates().map_err(stage("journal"))?.into_iter().collect();
        plan.dots.retain(|d| todo.contains(&d.id));
        j
    } else {
        if a.journal.exists() {
            return Err(CliError::input(
                format!("journal {} already exists", a.journal.display()),
                "resume it with --resume, or give a new --journal path",
            ));
        }
        let mut j = smp_store::Journal::create(
            &a.journal,
            &smp_store::SessionMeta {
                patient: pf.patient.clone(),
                session: plan.session,
                rig_name: rig.name.clone(),
                seed: plan.spec.seed,
                plan_json: to_json(&plan)?,
            },
        )
        .map_err(|e| CliError::input(format!("{}: {e}", a.journal.display()), "choose a writable --journal path"))?;
        j.insert_plan(&plan).map_err(stage("journal"))?;
        j
    };

    let mut faults = Vec::new();
    let mut streamed = 0;
    let mut arm_time_s = 0.0;
    let mut doubled = None;
    let mut stray = None;
    let mut placement_max = None;
    if !plan.dots.is_empty() {
        let program = smp_gcode::compile(&plan, &rig, &base_from_head).map_err(stage("G-code compile"))?;
        let verified =
            smp_gcode::verify(program, &plan, &map, &rig, &base_from_head).map_err(stage("G-code verify"))?;
        let nc = a.journal.with_extension("nc");
        write_atomically(&nc, verified.program().to_nc().as_bytes())?;
        let cfg = smp_motion::ExecuteConfig::default();
        let mut progress = |_p: smp_motion::Progress| {};
        match &a.target {
            Target::Port { path, baud } => {
                let port = serialport::new(path, *baud).open_native().map_err(|e| {
                    CliError::input(
                        format!("cannot open serial port {path} at {baud} baud: {e}"),
                        "check the cable, the device name and that no other program holds the port",
                    )
                })?;
                let t0 = std::time::Instant::now();
                let r = smp_motion::execute(&verified, port, &mut journal, &cfg, &mut progress);
                arm_time_s = t0.elapsed().as_secs_f64();
                match r {
                    Ok(rep) => {
                        streamed = rep.dots_executed;
                        faults.extend(rep.errors);
                    }
                    Err(e) => faults.push(e.to_string()),
                }
            }
            Target::Sim { patient, faults: scenario, time_scale } => {
                let (spec, _) = crate::files::read_sim_patient(patient.as_deref())?;
                let mut ccfg = smp_sim::controller::ControllerConfig {
                    time_scale: *time_scale,
                    ..smp_sim::controller::ControllerConfig::new(rig.dynamics)
                };
                let mut parsed = None;
                if let Some(p) = scenario {
                    let t = read_text(p, "fault scenario", "faults")?;
                    let s = smp_sim::faults::FaultScenario::from_toml_str(&t).map_err(|e| {
                        CliError::input(format!("{}: {e}", p.display()), "see sim/faults/ for valid scenarios")
                    })?;
                    s.apply_to(&mut ccfg);
                    parsed = Some(s);
                }
                let injected = ccfg.faults.faults.clone();
                // The patient's micro-motion and the scenario's head moves shift the skin under
                // the needle (tracking must catch them).
                let skin = crate::demo::moving_patient_skin(
                    Arc::new(SyntheticPatient::generate(&spec)),
                    base_from_head,
                    parsed.as_ref(),
                )?;
                let controller =
                    smp_sim::controller::SimController::new(ccfg, skin).map_err(stage("simulated controller"))?;
                let (host, device) = serialport::TTYPort::pair()
                    .map_err(|e| CliError::failure(format!("cannot open a pseudo-terminal pair: {e}")))?;
                let sim = smp_sim::pty::PtyController::spawn(device, controller)
                    .map_err(|e| CliError::failure(format!("cannot start the simulated controller: {e}")))?;
                let r = smp_motion::execute(&verified, host, &mut journal, &cfg, &mut progress);
                let report = sim.shutdown();
                journal.record_entries(&report.entries).map_err(stage("journal"))?;
                arm_time_s = report.machine_time_s;
                faults.extend(report.faults_fired.iter().map(|f| match injected.get(f.fault) {
                    Some(k) => format!("simulator injected {k:?} at {:.2} s", f.time_s),
                    None => format!("simulator injected fault #{} at {:.2} s", f.fault, f.time_s),
                }));
                match r {
                    Ok(rep) => {
                        streamed = rep.dots_executed;
                        faults.extend(rep.errors);
                    }
                    Err(e) => faults.push(e.to_string()),
                }
                // Entries on a dot that had one already: counted against every entry of
                // this session in the journal (earlier runs included).
                let planned: Vec<[f64; 3]> =
                    session_of(&pf, Some(plan.session), &a.plan)?.dots.iter().map(|d| d.position()).collect();
                let entries: Vec<[f64; 3]> =
                    journal.entries().map_err(stage("journal"))?.iter().map(|e| e.head_mm).collect();
                let score = smp_core::eval::placement_score(&planned, &entries, crate::demo::PLACEMENT_MATCH_RADIUS_MM);
                doubled = Some(score.dots_doubled);
                stray = Some(score.stray_entries);
                placement_max = Some(score.placement_max_mm);
            }
        }
    }
    let counts = journal.state_counts().map_err(stage("journal"))?;
    let count = |s| counts.get(&s).copied().unwrap_or(0);
    let (executed, uncertain, still) =
        (count(DotState::Executed), count(DotState::Uncertain), count(DotState::Planned));
    let outcome = if executed == dots_planned { "completed" } else { "incomplete" };
    journal.end_session(outcome).map_err(stage("journal"))?;
    journal.checkpoint_and_close().map_err(stage("journal"))?;
    Ok(RunReport {
        session: plan.session,
        dots_planned,
        dots_streamed: streamed,
        dots_executed: executed,
        dots_doubled: doubled,
        stray_entries: stray,
        placement_max_mm: placement_max,
        dots_uncertain: uncertain,
        dots_still_planned: still,
        faults,
        arm_time_s,
        journal: a.journal.display().to_string(),
    })
}

/// The readable summary of `smp run`.
pub fn summary(r: &RunReport) -> String {
    let mut s = format!(
        "session {}: {} of {} dots executed ({} by this run), {} uncertain, {} still planned, doubled {}, arm time \
         {:.1} s\n  journal {}\n",
        r.session,
        r.dots_executed,
        r.dots_planned,
        r.dots_streamed,
        r.dots_uncertain,
        r.dots_still_planned,
        r.dots_doubled.map_or("unknown (real port)".to_string(), |d| d.to_string()),
        r.arm_time_s,
        r.journal
    );
    if let (Some(stray), Some(max)) = (r.stray_entries, r.placement_max_mm) {
        s.push_str(&format!(
            "  simulator: {stray} needle entries away from every planned dot; worst placement {max:.3} mm\n"
        ));
    }
    for f in &r.faults {
        s.push_str(&format!("  fault: {f}\n"));
    }
    if r.dots_uncertain > 0 {
        s.push_str(
            "  uncertain dots are never sent again automatically: check them with the camera or mark them by the \
             operator, then `smp run --resume`\n",
        );
    }
    s
}

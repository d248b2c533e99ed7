//! `smp run`: one session of a plan through smp-session's engine, on the arm (a serial port)
//! or on the simulated world (`--sim`, see `sim/run.rs`), and `smp run --resume` after a fault
//! or a crash. The CLI only loads the inputs, picks the world and prints the report.

use std::path::{Path, PathBuf};

use serde::Serialize;
use smp_core::plan::{PlanFile, SessionPlan};
use smp_core::rig::Rig;
use smp_session::{Cameras, JournalTarget, Observer, Operator, SessionInputs, SessionReport, World};

use crate::error::CliError;
use crate::files::{read_map, read_plan, read_rig};

/// Where the program goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A serial device (the arm's controller); the baud rate from `--baud` or the rig file.
    Port { path: String, baud: Option<u32> },
    /// The simulated world: a patient on the head rest, an optional fault scenario.
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
    /// Host protocol: grbl character counting, grbl send-response or Marlin.
    pub protocol: smp_motion::Protocol,
    /// Listen for operator commands and publish telemetry on this zenoh endpoint.
    pub bus: Option<String>,
    /// Head-band camera rate while tracking (simulator with a banded patient), Hz.
    pub tracking_hz: f64,
    /// Marlin only: the firmware has `REALTIME_REPORTING_COMMANDS` (`P000` pauses at once).
    pub marlin_realtime: bool,
}

/// The simulator's score of a run against the world's truth (`--sim` only).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SimScore {
    /// Needle entries on a dot already entered (every run of the session).
    pub dots_doubled: usize,
    /// Needle entries farther than 0.4 mm from every planned dot (the head moved, or the
    /// registration is off).
    pub stray_entries: usize,
    /// Worst and RMS placement error of the entries matched to a dot, mm.
    pub placement_max_mm: f64,
    pub placement_rms_mm: f64,
    /// Powered needle entries, all runs.
    pub entries: usize,
    /// The world's record (never read by the host).
    pub world_record: String,
    /// The faults the simulator injected, with their machine times.
    pub faults_injected: Vec<String>,
    /// Machine time the simulated controller had nothing to do, waiting for the host, s.
    pub arm_waiting_for_host_s: f64,
}

/// What `smp run --json` prints: the session's report, the bus id, and on the simulator the
/// score against the world's truth.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub session: SessionReport,
    /// The bus session id operators address (`smp operator pause --session-id ID`).
    pub bus_session: Option<String>,
    /// `--sim` only.
    pub score: Option<SimScore>,
}

pub(crate) fn session_of(pf: &PlanFile, session: Option<u32>, path: &Path) -> Result<SessionPlan, CliError> {
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

/// The session's inputs from the files `smp run` names.
pub(crate) fn inputs(a: &RunArgs, rig: Rig) -> Result<(SessionInputs, String), CliError> {
    let pf = read_plan(&a.plan)?;
    let plan = session_of(&pf, a.session, &a.plan)?;
    let map = read_map(&a.map)?;
    let journal =
        if a.resume { JournalTarget::Resume(a.journal.clone()) } else { JournalTarget::New(a.journal.clone()) };
    let execute = smp_motion::ExecuteConfig {
        protocol: a.protocol,
        marlin_realtime_commands: a.marlin_realtime,
        ..smp_motion::ExecuteConfig::default()
    };
    let inputs = SessionInputs {
        base_from_head: map.base_from_head.to_isometry(),
        plan,
        map,
        rig,
        patient_id: pf.patient.clone(),
        journal,
        program: a.journal.with_extension("nc"),
        execute,
        tracking: Default::default(),
        core: Default::default(),
        expected_dot_mm: smp_core::test_dots::ParameterLimits::default().target_diameter_mm,
    };
    Ok((inputs, pf.patient))
}

/// The operator (over the bus, if any), the observers, and the bus session id.
type OperatorAndObservers = (Option<Box<dyn Operator>>, Vec<Box<dyn Observer>>, Option<String>);

/// The operator's link and observers of a run: the bus when `--bus` is given.
pub(crate) fn operator_and_observers(
    a: &RunArgs,
    patient: &str,
    inputs: &SessionInputs,
) -> Result<OperatorAndObservers, CliError> {
    let Some(endpoint) = &a.bus else { return Ok((None, Vec::new(), None)) };
    let id = crate::bus_link::session_id(patient, inputs.plan.session);
    let (op, obs) = crate::bus_link::open(endpoint, &id, &inputs.rig.name, inputs.plan.dots.len())?;
    Ok((Some(Box::new(op)), vec![Box::new(obs)], Some(id)))
}

/// `smp run`. Returns the report also when the session stopped on a fault (the journal then
/// holds exactly what happened); the error is reserved for sessions that could not start.
pub fn run(a: &RunArgs) -> Result<RunReport, CliError> {
    crate::files::check_time_scale(match &a.target {
        Target::Sim { time_scale, .. } => *time_scale,
        Target::Port { .. } => 1.0,
    })?;
    match &a.target {
        Target::Sim { .. } => crate::sim::run::run(a),
        Target::Port { path, baud } => {
            // A real port moves a real arm: the rig must be the one on the bench, named.
            let Some(rig_path) = &a.rig else {
                return Err(CliError::input(
                    format!("a run on the serial port {path} needs the rig file of the arm behind it"),
                    "give --rig FILE (e.g. calibration/rig.toml for the reference rig); its serial.baud is used unless --baud is given",
                ));
            };
            let rig = read_rig(Some(rig_path))?;
            let baud = baud.unwrap_or(rig.serial.baud);
            let (inputs, patient) = inputs(a, rig)?;
            let (operator, observers, bus_session) = operator_and_observers(a, &patient, &inputs)?;
            let mut machine = smp_session::serial::SerialMachine::new(path.clone(), baud, a.protocol);
            let world = World { machine: &mut machine, cameras: Cameras::default(), operator, observers };
            let session = smp_session::run_session(&inputs, world).map_err(session_error)?;
            Ok(RunReport { session, bus_session, score: None })
        }
    }
}

/// A session that could not start, for the terminal.
pub(crate) fn session_error(e: smp_session::SessionError) -> CliError {
    use smp_session::SessionError as E;
    match e {
        E::JournalExists(_) => CliError::input(e.to_string(), "resume it with --resume, or give a new --journal path"),
        E::NoJournal(_) => CliError::input(e.to_string(), "give the session.sqlite of the run to resume"),
        E::SessionMismatch { .. } => CliError::input(e.to_string(), "give the journal of this session, or --session N"),
        E::Journal { .. } => {
            CliError::input(e.to_string(), "choose a writable --journal path, or the journal of this session")
        }
        E::BeyondRig { .. } => CliError::input(
            e.to_string(),
            "plan the session again with a spec within the rig's limits (a clinic raises them only in the rig file)",
        ),
        E::Write { .. } | E::Internal(_) => CliError::failure(e.to_string()),
    }
}

/// The readable summary of `smp run`.
pub fn summary(r: &RunReport) -> String {
    let mut s = r.session.summary();
    if let Some(score) = &r.score {
        s.push_str(&format!(
            "  simulator (the world's truth): {} entries, doubled {}, {} away from every planned dot; placement rms \
             {:.3} mm, worst {:.3} mm; the machine waited {:.1} s of its arm time for the host\n",
            score.entries,
            score.dots_doubled,
            score.stray_entries,
            score.placement_rms_mm,
            score.placement_max_mm,
            score.arm_waiting_for_host_s
        ));
    }
    s
}

/// Seconds since the Unix epoch: the clock of journal writes made outside a run (operator
/// resolutions), so their order against each other is kept.
pub fn wall_clock_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

//! `smp run`: executes one session of a plan on an arm (a serial port) or on the simulated
//! controller over a pty, journalling every dot, and `smp run --resume` after a crash or a
//! fault: only dots the journal still holds as planned are streamed again. Dots left
//! uncertain are never tattooed twice: on the simulator the flange camera checks them
//! ([`crate::camera_check`]); on a real port the operator resolves them (`smp resolve`).
//! With a banded patient in the simulator the head is tracked and a drift re-registers it
//! mid-run ([`crate::head_track`]).

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
    /// Host protocol: grbl character counting, grbl send-response or Marlin.
    pub protocol: smp_motion::Protocol,
    /// Listen for operator commands and publish telemetry on this zenoh endpoint.
    pub bus: Option<String>,
    /// Head-band camera rate while tracking (simulator with a banded patient), Hz.
    pub tracking_hz: f64,
    /// Marlin only: the firmware has `REALTIME_REPORTING_COMMANDS` (`P000` pauses at once);
    /// on the simulator, the simulated Marlin gets it too.
    pub marlin_realtime: bool,
}

/// A run re-registers after at most this many drifts; one more leaves the session paused
/// for the operator (a patient who keeps moving is not treated by the robot).
const MAX_REREGISTRATIONS: u32 = 3;
/// Consecutive band registrations must agree this closely (mm, at the scalp) before the
/// head counts as settled after a drift.
const SETTLE_TOLERANCE_MM: f64 = 0.05;

/// Wall-clock timeouts of the executor on a tracked simulated run (the machine waits for
/// rendered camera frames).
const TRACKED_SIM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Head tracking during a simulated run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrackingReport {
    /// Band registrations the tracker used.
    pub frames: u64,
    /// Frames without a usable registration.
    pub frames_missing: u64,
    /// Camera rate in machine time, Hz (the simulated machine waits for each frame).
    pub rate_hz: f64,
    /// Drifts that stopped the run (each followed by a re-registration).
    pub drifts: u32,
    /// Feed holds while the band's markers were out of sight.
    pub fiducial_loss_holds: u32,
    /// Machine times of the re-registrations after drifts, s.
    pub reregistered_at_s: Vec<f64>,
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
    /// Dots resolved as not in the skin (camera or operator): left for the next layer.
    pub dots_skipped: usize,
    pub dots_still_planned: usize,
    /// What stopped or disturbed the run: the executor's fault and the simulator's injected ones.
    pub faults: Vec<String>,
    /// What the operator should know that did not disturb the run (e.g. an untracked head).
    pub warnings: Vec<String>,
    /// What happened to the cartridge around operator pauses (stopped in the hold, restored).
    pub cartridge_events: Vec<String>,
    /// Machine time (simulator's clock), or wall time on a real port.
    pub arm_time_s: f64,
    pub journal: String,
    pub protocol: String,
    /// Stopped by the operator (abort or emergency stop).
    pub aborted: bool,
    /// Operator commands applied during the run (over the bus).
    pub operator_commands: usize,
    /// Longest time from an operator's pause to the feed hold on the wire, s.
    pub feed_hold_latency_max_s: Option<f64>,
    /// The bus session id operators address (`smp operator pause --session ID`).
    pub bus_session: Option<String>,
    /// Head tracking from the band (simulator with a banded patient), else `null`.
    pub tracking: Option<TrackingReport>,
}

/// Seconds since the Unix epoch: the clock of journal writes made outside a run (operator
/// resolutions, camera checks between runs), so their order against each other is kept.
pub fn wall_clock_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
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
    // Every dot of the session, also those a resume does not send (the camera check looks
    // at uncertain ones).
    let full_plan = plan.clone();
    let expected_dot_mm = smp_core::test_dots::ParameterLimits::default().target_diameter_mm;
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
    let mut warnings = Vec::new();
    let mut cartridge = Vec::new();
    // Resuming on the simulator: the flange camera looks at the dots the last run left
    // uncertain before anything else moves (on a real port the operator does, `smp resolve`).
    if let (true, Target::Sim { patient, .. }) = (a.resume, &a.target) {
        if !journal.dots_in_state(DotState::Uncertain).map_err(stage("journal"))?.is_empty() {
            let (spec, _) = crate::files::read_sim_patient(patient.as_deref())?;
            let sim_patient = SyntheticPatient::generate(&spec);
            let entries = journal.entries().map_err(stage("journal"))?;
            let checked = crate::camera_check::resolve_uncertain_by_camera(
                &mut journal,
                &sim_patient,
                &rig,
                &base_from_head,
                &base_from_head,
                &entries,
                &full_plan,
                expected_dot_mm,
            )?;
            faults.push(checked.summary());
        }
    }
    let mut streamed = 0;
    let mut arm_time_s = 0.0;
    let mut doubled = None;
    let mut stray = None;
    let mut placement_max = None;
    let (mut aborted, mut latency, mut operator_commands, mut bus_session) = (false, None, 0, None);
    let mut tracking = TrackingReport::default();
    let mut tracked = false;
    if !plan.dots.is_empty() {
        let program = smp_gcode::compile(&plan, &rig, &base_from_head).map_err(stage("G-code compile"))?;
        let verified =
            smp_gcode::verify(program, &plan, &map, &rig, &base_from_head).map_err(stage("G-code verify"))?;
        let nc = a.journal.with_extension("nc");
        write_atomically(&nc, verified.program().to_nc().as_bytes())?;
        let mut cfg = smp_motion::ExecuteConfig {
            protocol: a.protocol,
            marlin_realtime_commands: a.marlin_realtime,
            ..smp_motion::ExecuteConfig::default()
        };
        let mut operator = OperatorLink::open(a, &pf.patient, plan.session, &rig.name, dots_planned)?;
        bus_session = operator.session_id.clone();
        match &a.target {
            Target::Port { path, baud } => {
                let port = serialport::new(path, *baud).open_native().map_err(|e| {
                    CliError::input(
                        format!("cannot open serial port {path} at {baud} baud: {e}"),
                        "check the cable, the device name and that no other program holds the port",
                    )
                })?;
                let t0 = std::time::Instant::now();
                let commands = operator.begin_run();
                let r = operator.execute(&verified, port, &mut journal, &cfg, commands);
                arm_time_s = t0.elapsed().as_secs_f64();
                (streamed, aborted, latency) = outcome_of(r, &mut faults, &mut warnings, &mut cartridge);
            }
            Target::Sim { patient, faults: scenario, time_scale } => {
                let (spec, _) = crate::files::read_sim_patient(patient.as_deref())?;
                let mut ccfg = smp_sim::controller::ControllerConfig {
                    time_scale: *time_scale,
                    marlin_realtime_commands: a.marlin_realtime,
                    ..smp_sim::controller::ControllerConfig::for_rig(&rig).map_err(stage("simulated controller"))?
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
                if a.protocol == smp_motion::Protocol::Marlin {
                    ccfg.protocol = smp_sim::controller::ProtocolMode::Marlin;
                    // The host's clock is wall time; the query period is meant in machine time.
                    cfg.marlin_feed_rate_query = cfg.marlin_feed_rate_query.div_f64(time_scale.max(1.0));
                }
                let injected = ccfg.faults.faults.clone();
                // The patient's micro-motion and the scenario's head moves shift the skin under
                // the needle; the band cameras track them when the patient wears a band.
                let patient = Arc::new(SyntheticPatient::generate(&spec));
                let motion = crate::demo::patient_motion(&patient, base_from_head, parsed.as_ref())?;
                let skin = crate::demo::moving_patient_skin(Arc::clone(&patient), base_from_head, parsed.as_ref())?;
                let controller =
                    smp_sim::controller::SimController::new(ccfg, skin).map_err(stage("simulated controller"))?;
                let (host, device) = serialport::TTYPort::pair()
                    .map_err(|e| CliError::failure(format!("cannot open a pseudo-terminal pair: {e}")))?;
                let clock = smp_sim::pty::SimClock::new(*time_scale);
                let sim = smp_sim::pty::PtyController::spawn_with_clock(device, controller, clock.clone())
                    .map_err(|e| CliError::failure(format!("cannot start the simulated controller: {e}")))?;
                let band = crate::head_track::BandRig::for_patient(&patient, &rig)?;
                tracked = band.is_some();
                if tracked {
                    // The simulated machine waits for each camera frame, which the renderer
                    // takes seconds of wall time to draw: the executor's wall-clock timeouts
                    // must allow for that (machine-time behaviour is unchanged).
                    cfg.ack_timeout = cfg.ack_timeout.max(TRACKED_SIM_TIMEOUT);
                    cfg.fault_settle = cfg.fault_settle.max(TRACKED_SIM_TIMEOUT);
                    cfg.final_idle_timeout = cfg.final_idle_timeout.max(TRACKED_SIM_TIMEOUT);
                }
                tracking.rate_hz = a.tracking_hz;
                if band.is_none() {
                    warnings.push(
                        "head not tracked: the patient wears no head band (any head movement goes unseen)".into(),
                    );
                }
                let mut registered = base_from_head;
                let mut verified = verified;
                let r = loop {
                    let port = host
                        .try_clone_native()
                        .map_err(|e| CliError::failure(format!("cannot share the simulator's pseudo-terminal: {e}")))?;
                    let commands = operator.begin_run();
                    let watch = match &band {
                        Some(b) => Some(crate::head_track::HeadWatch::start(
                            Arc::clone(&patient),
                            b.clone(),
                            motion.clone(),
                            registered,
                            smp_vision::tracking::TrackerConfig::default(),
                            clock.clone(),
                            1.0 / a.tracking_hz,
                            {
                                let scenario = parsed.clone();
                                Box::new(move |t| scenario.as_ref().is_some_and(|s| s.band_hidden_at(t)))
                            },
                            operator.commander(),
                        )?),
                        None => None,
                    };
                    let r = operator.execute(&verified, port, &mut journal, &cfg, commands);
                    let log = watch.map(crate::head_track::HeadWatch::finish);
                    if let Some(l) = &log {
                        faults.extend(l.events.iter().cloned());
                        tracking.frames += l.frames;
                        tracking.frames_missing += l.frames_missing;
                        tracking.fiducial_loss_holds += l.pauses;
                    }
                    let Some((t_s, mm, deg)) = log.and_then(|l| l.drift) else { break r };
                    // Stopped by the tracker, not by the operator: re-register and carry on.
                    let (done, _, _) = outcome_of(r, &mut Vec::new(), &mut warnings, &mut cartridge);
                    streamed += done;
                    faults.push(format!(
                        "head drift of {mm:.2} mm / {deg:.2} deg at {t_s:.2} s (machine time): feed hold, queued moves dropped"
                    ));
                    tracking.drifts += 1;
                    if tracking.drifts > MAX_REREGISTRATIONS {
                        faults.push(format!(
                            "the head moved {} times in one run: the session stays paused for the operator",
                            tracking.drifts
                        ));
                        break Ok(smp_motion::ExecutionReport::default());
                    }
                    let Some(b) = &band else { break Ok(smp_motion::ExecutionReport::default()) };
                    let (reg, at_s) = crate::head_track::reregister_when_settled(
                        &patient,
                        b,
                        &motion,
                        &clock,
                        SETTLE_TOLERANCE_MM,
                        std::time::Duration::from_secs(120),
                    )?;
                    let moved = (reg.base_from_head.translation.vector - registered.translation.vector).norm();
                    faults.push(format!(
                        "re-registered from {} band markers at {at_s:.2} s (head centre moved {moved:.2} mm, fit {:.2} px)",
                        reg.markers_used.len(),
                        reg.reprojection_rms_px
                    ));
                    registered = reg.base_from_head;
                    tracking.reregistered_at_s.push(at_s);
                    // The sites a fault left uncertain are looked at before anything moves again.
                    // Earlier runs' entries (journalled) and this run's so far.
                    let mut entries = journal.entries().map_err(stage("journal"))?;
                    entries.extend(sim.entries_so_far());
                    let truth_now = motion.base_delta(clock.now_s()) * motion.registered_base_from_head;
                    let checked = crate::camera_check::resolve_uncertain_by_camera(
                        &mut journal,
                        &patient,
                        &rig,
                        &truth_now,
                        &registered,
                        &entries,
                        &full_plan,
                        expected_dot_mm,
                    )?;
                    if checked.checked > 0 {
                        faults.push(checked.summary());
                    }
                    let todo: std::collections::BTreeSet<u32> =
                        journal.resume_candidates().map_err(stage("journal"))?.into_iter().collect();
                    let mut rest = plan.clone();
                    rest.dots.retain(|d| todo.contains(&d.id));
                    if rest.dots.is_empty() {
                        break Ok(smp_motion::ExecutionReport::default());
                    }
                    let program = smp_gcode::compile(&rest, &rig, &registered)
                        .map_err(stage("G-code compile (re-registered)"))?;
                    verified = smp_gcode::verify(program, &rest, &map, &rig, &registered)
                        .map_err(stage("G-code verify (re-registered)"))?;
                };
                let report = sim.shutdown();
                journal.record_entries(&report.entries, &report.entry_timing).map_err(stage("journal"))?;
                arm_time_s = report.machine_time_s;
                faults.extend(report.faults_fired.iter().map(|f| match injected.get(f.fault) {
                    Some(k) => format!("simulator injected {k:?} at {:.2} s", f.time_s),
                    None => format!("simulator injected fault #{} at {:.2} s", f.fault, f.time_s),
                }));
                let (more, stopped, lat) = outcome_of(r, &mut faults, &mut warnings, &mut cartridge);
                (streamed, aborted, latency) = (streamed + more, stopped, lat);
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
        operator_commands = operator.commands_applied();
        operator.finish(&journal_counts(&journal)?);
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
        dots_skipped: count(DotState::Skipped),
        dots_still_planned: still,
        faults,
        warnings,
        cartridge_events: cartridge,
        arm_time_s,
        journal: a.journal.display().to_string(),
        protocol: a.protocol.as_str().to_string(),
        aborted,
        operator_commands,
        feed_hold_latency_max_s: latency,
        bus_session,
        tracking: tracked.then_some(tracking),
    })
}

/// Dots executed by a run, whether the operator stopped it, and the worst feed-hold latency;
/// problems go into `faults`, the executor's warnings (e.g. a spindle override) into `warnings`.
fn outcome_of(
    r: Result<smp_motion::ExecutionReport, smp_motion::MotionError>,
    faults: &mut Vec<String>,
    warnings: &mut Vec<String>,
    cartridge: &mut Vec<String>,
) -> (usize, bool, Option<f64>) {
    match r {
        Ok(rep) => {
            faults.extend(rep.errors);
            warnings.extend(rep.warnings);
            cartridge.extend(cartridge_lines(&rep.cartridge_events));
            let latency = (rep.feed_hold_latency_max_s > 0.0).then_some(rep.feed_hold_latency_max_s);
            (rep.dots_executed, rep.aborted, latency)
        }
        Err(e) => {
            let (executed, aborted, latency) = match e.fault() {
                Some(f) => {
                    warnings.extend(f.report.warnings.iter().cloned());
                    cartridge.extend(cartridge_lines(&f.report.cartridge_events));
                    (
                        f.report.dots_executed,
                        f.report.aborted || matches!(f.kind, smp_motion::FaultKind::Aborted { .. }),
                        (f.report.feed_hold_latency_max_s > 0.0).then_some(f.report.feed_hold_latency_max_s),
                    )
                }
                None => (0, false, None),
            };
            faults.push(e.to_string());
            (executed, aborted, latency)
        }
    }
}

/// The cartridge events of a run as report lines.
fn cartridge_lines(events: &[smp_motion::CartridgeEvent]) -> Vec<String> {
    events.iter().map(|e| format!("{:.2} s: {}", e.at_s, e.message)).collect()
}

fn journal_counts(journal: &smp_store::Journal) -> Result<(u32, u32), CliError> {
    let counts = journal.state_counts().map_err(stage("journal"))?;
    let executed = counts.get(&DotState::Executed).copied().unwrap_or(0) as u32;
    Ok((executed, counts.values().sum::<usize>() as u32))
}

/// The bus's session state for the executor's.
fn session_state(s: smp_motion::ExecutorState) -> smp_bus::SessionState {
    use smp_bus::SessionState as B;
    use smp_motion::ExecutorState as E;
    match s {
        E::Connecting => B::Connecting,
        E::Running => B::Running,
        E::Paused => B::Paused,
        E::Fault => B::Faulted,
        E::Aborted => B::Aborted,
        E::Done => B::Done,
    }
}

/// The operator's link to a run: with `--bus`, a zenoh controller bus whose admitted
/// commands reach the executor and to which every state change and dot is published.
/// Without it, a run that takes no operator input (the arm's hardware stop still works).
struct OperatorLink {
    bus: Option<std::sync::Arc<smp_bus::ControllerBus>>,
    session_id: Option<String>,
    state: std::sync::Arc<std::sync::Mutex<smp_bus::SessionState>>,
    /// The command channel of the executor run in progress (`None` between runs): the bus's
    /// admitted commands and the head tracker's stop go there.
    live: LiveCommands,
    applied: usize,
    dots_total: u32,
    t0: std::time::Instant,
    forwarder: Option<std::thread::JoinHandle<()>>,
}

type LiveCommands = std::sync::Arc<std::sync::Mutex<Option<smp_motion::UnboundedSender<smp_motion::OperatorCommand>>>>;

impl OperatorLink {
    fn open(a: &RunArgs, patient: &str, session: u32, rig: &str, dots_total: usize) -> Result<Self, CliError> {
        let state = std::sync::Arc::new(std::sync::Mutex::new(smp_bus::SessionState::Connecting));
        let mut link = OperatorLink {
            bus: None,
            session_id: None,
            state,
            live: std::sync::Arc::new(std::sync::Mutex::new(None)),
            applied: 0,
            dots_total: dots_total as u32,
            t0: std::time::Instant::now(),
            forwarder: None,
        };
        let Some(endpoint) = &a.bus else { return Ok(link) };
        // Session ids are restricted to [A-Za-z0-9._-] on the bus.
        let clean: String =
            patient.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        let id = format!("{clean}-s{session}");
        let cfg = smp_bus::BusConfig { rig: rig.to_string(), ..smp_bus::BusConfig::listening(endpoint.clone()) };
        let mut bus = smp_bus::ControllerBus::open(&cfg, &id).map_err(|e| {
            CliError::input(
                format!("bus on {endpoint}: {e}"),
                "give a free local endpoint, e.g. --bus tcp/127.0.0.1:7447",
            )
        })?;
        eprintln!(
            "operator control: smp operator pause|resume|abort|estop --session {id} --connect {endpoint} --rig {rig}"
        );
        let mut events = bus.commands().map_err(|e| CliError::failure(format!("bus: {e}")))?;
        let bus = std::sync::Arc::new(bus);
        // Weak: the run keeps the only strong handle, so closing the bus at the end ends this
        // thread (its event channel closes). Admits each command against the executor's
        // state, acknowledges it, and passes the admitted ones to the run in progress.
        let (weak, state, live) =
            (std::sync::Arc::downgrade(&bus), std::sync::Arc::clone(&link.state), std::sync::Arc::clone(&link.live));
        link.forwarder = Some(std::thread::spawn(move || {
            while let Some(ev) = events.blocking_recv() {
                let smp_bus::ControlEvent::Command(c) = ev else { continue };
                let Some(bus) = weak.upgrade() else { break };
                let now = state.lock().map(|s| *s).unwrap_or(smp_bus::SessionState::Faulted);
                if let Ok(smp_bus::AckResult::Accepted) = bus.decide(&c, now) {
                    // The bus and the executor share smp_core's command type.
                    if let Ok(slot) = live.lock() {
                        if let Some(tx) = slot.as_ref() {
                            let _ = tx.send(c.command);
                        }
                    }
                }
            }
        }));
        link.bus = Some(bus);
        link.session_id = Some(id);
        Ok(link)
    }

    /// Opens the command channel of the next executor run; commands sent before the run
    /// starts wait in it.
    fn begin_run(&self) -> smp_motion::UnboundedReceiver<smp_motion::OperatorCommand> {
        let (tx, rx) = smp_motion::unbounded_channel();
        if let Ok(mut slot) = self.live.lock() {
            *slot = Some(tx);
        }
        rx
    }

    /// The head tracker's line to the run in progress: an abort on a drift (feed hold at
    /// once, then a soft reset that drops the queued moves), a pause and a resume around lost
    /// fiducials. Returns whether the command was passed on: a pause only while the run is
    /// running, so that the tracker never resumes a pause the operator made.
    fn commander(&self) -> Box<dyn Fn(smp_motion::OperatorCommand) -> bool + Send> {
        let (live, state) = (std::sync::Arc::clone(&self.live), std::sync::Arc::clone(&self.state));
        Box::new(move |cmd| {
            if cmd == smp_motion::OperatorCommand::Pause
                && state.lock().map(|s| *s != smp_bus::SessionState::Running).unwrap_or(true)
            {
                return false;
            }
            live.lock().ok().and_then(|slot| slot.as_ref().map(|tx| tx.send(cmd).is_ok())).unwrap_or(false)
        })
    }

    /// Runs the executor with the bus's commands and telemetry wired in.
    fn execute(
        &mut self,
        verified: &smp_gcode::VerifiedProgram,
        port: serialport::TTYPort,
        journal: &mut smp_store::Journal,
        cfg: &smp_motion::ExecuteConfig,
        commands: smp_motion::UnboundedReceiver<smp_motion::OperatorCommand>,
    ) -> Result<smp_motion::ExecutionReport, smp_motion::MotionError> {
        let commands = Some(commands);
        let (bus, state, t0, total) = (self.bus.clone(), std::sync::Arc::clone(&self.state), self.t0, self.dots_total);
        let mut applied = 0usize;
        let mut done = 0u32;
        let mut last_dot = None;
        let mut observer = |u: smp_motion::ExecutorUpdate| {
            match u {
                smp_motion::ExecutorUpdate::State(s) => {
                    if let Ok(mut g) = state.lock() {
                        *g = session_state(s);
                    }
                }
                smp_motion::ExecutorUpdate::Progress(p) => {
                    done = p.dots_done as u32;
                    last_dot = p.last_dot;
                }
                smp_motion::ExecutorUpdate::Command(c) => applied += usize::from(c.applied),
            }
            if let Some(bus) = &bus {
                let now = state.lock().map(|s| *s).unwrap_or(smp_bus::SessionState::Faulted);
                bus.publish_telemetry(&smp_bus::Telemetry {
                    state: now,
                    dots_done: done,
                    dots_total: total,
                    last_dot,
                    machine: None,
                    fault: None,
                    t_s: t0.elapsed().as_secs_f64(),
                    dropped_before: 0,
                });
            }
        };
        let r = smp_motion::execute_with_control(
            verified,
            port,
            journal,
            cfg,
            smp_motion::Control { commands, observer: &mut observer },
        );
        if let Ok(mut slot) = self.live.lock() {
            *slot = None;
        }
        self.applied += applied;
        r
    }

    fn commands_applied(&self) -> usize {
        self.applied
    }

    /// Publishes the final state and closes the bus.
    fn finish(mut self, (executed, _total): &(u32, u32)) {
        if let Some(bus) = self.bus.take() {
            let state = self.state.lock().map(|s| *s).unwrap_or(smp_bus::SessionState::Done);
            bus.publish_telemetry(&smp_bus::Telemetry {
                state,
                dots_done: *executed,
                dots_total: self.dots_total,
                last_dot: None,
                machine: None,
                fault: None,
                t_s: self.t0.elapsed().as_secs_f64(),
                dropped_before: 0,
            });
            // The forwarder may hold a strong handle for the instant of a decision: wait it out.
            let mut bus = bus;
            for _ in 0..100 {
                match std::sync::Arc::try_unwrap(bus) {
                    Ok(b) => {
                        b.close();
                        if let Some(h) = self.forwarder.take() {
                            let _ = h.join();
                        }
                        return;
                    }
                    Err(shared) => {
                        bus = shared;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            }
            // Still shared after a second: leave the forwarder detached rather than hang.
        }
    }
}

/// The readable summary of `smp run`.
pub fn summary(r: &RunReport) -> String {
    let mut s = format!(
        "session {}: {} of {} dots executed ({} by this run), {} uncertain, {} skipped, {} still planned, doubled {}, \
         arm time {:.1} s\n  journal {}\n",
        r.session,
        r.dots_executed,
        r.dots_planned,
        r.dots_streamed,
        r.dots_uncertain,
        r.dots_skipped,
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
    for w in &r.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    for c in &r.cartridge_events {
        s.push_str(&format!("  cartridge: {c}\n"));
    }
    if r.dots_uncertain > 0 {
        s.push_str(
            "  uncertain dots are never sent again automatically: on the simulator `smp run --resume` checks them \
             with the flange camera first; on the arm, look at the sites and `smp resolve` them, then resume\n",
        );
    }
    s
}

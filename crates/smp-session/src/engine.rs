//! The engine: runs one session from loaded inputs to its report, on whatever [`World`] it is
//! given (a serial port and real cameras, or the simulator). It opens the journal, asks the
//! [`SessionCore`] what to do, and does it: compiles and verifies what is left, streams it
//! with smp-motion's executor on a thread of its own, tracks the head on another, relays the
//! operator's commands, looks at uncertain dots, re-registers after a drift. Everything it
//! decides is the core's; here only threads, channels, files and the journal.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nalgebra::Isometry3;
use smp_core::map::ScalpMap;
use smp_core::operator::OperatorCommand;
use smp_core::plan::{DotState, SessionPlan};
use smp_core::rig::Rig;
use smp_gcode::{SurveyConfig, VerifiedProgram};
use smp_motion::{
    execute_with_control, unbounded_channel, Control, ExecuteConfig, ExecutionReport, ExecutorState, ExecutorUpdate,
    FaultKind, MotionError, Protocol, UnboundedSender,
};
use smp_store::{Journal, NewProgram, ProgramReason, SessionMeta};
use smp_vision::tracking::TrackerConfig;

use crate::check::resolve_uncertain_by_camera;
use crate::core::{Action, CoreConfig, Input, Outcome, RunEnd, SessionCore};
use crate::register::{reregister_when_settled, track, TrackBatch, TrackingReport};
use crate::report::{ProgramSummary, SessionReport};
use crate::survey::check_controller;
use crate::world::{BandCameras, Cameras, Machine, Observer, Operator, SessionEvent, SessionState};

/// Settings of head tracking and re-registration.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingSettings {
    pub tracker: TrackerConfig,
    /// Consecutive registrations that must agree before the head counts as settled.
    pub settle_frames: usize,
    /// How closely they must agree, mm at the scalp.
    pub settle_tolerance_mm: f64,
    /// Longest wait for the head to settle, wall clock.
    pub settle_timeout: Duration,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        TrackingSettings {
            tracker: TrackerConfig::default(),
            settle_frames: 3,
            settle_tolerance_mm: 0.05,
            settle_timeout: Duration::from_secs(120),
        }
    }
}

/// The journal of the session: a new one, or the one a resume continues.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalTarget {
    New(PathBuf),
    Resume(PathBuf),
}

impl JournalTarget {
    pub fn path(&self) -> &Path {
        match self {
            JournalTarget::New(p) | JournalTarget::Resume(p) => p,
        }
    }
}

/// Everything a session is run from, loaded and validated by the caller.
#[derive(Debug, Clone)]
pub struct SessionInputs {
    /// The whole session's plan (a resume streams only what the journal still holds as planned).
    pub plan: SessionPlan,
    /// The map the plan was made on: the verifier checks every plunge against it.
    pub map: ScalpMap,
    pub rig: Rig,
    /// The head's registration at the start (the host's belief).
    pub base_from_head: Isometry3<f64>,
    /// The patient's pseudonymous id, as the journal records it.
    pub patient_id: String,
    pub journal: JournalTarget,
    /// Where the first program is written (those after a re-registration go beside it,
    /// `NAME.rereg-K.nc`), so that QA can re-check what actually ran.
    pub program: PathBuf,
    pub execute: ExecuteConfig,
    pub tracking: TrackingSettings,
    pub core: CoreConfig,
    /// The dot diameter the session aims at, for the camera check, mm.
    pub expected_dot_mm: f64,
}

/// The world a session runs in (see `world.rs`).
pub struct World<'a> {
    pub machine: &'a mut dyn Machine,
    pub cameras: Cameras,
    pub operator: Option<Box<dyn Operator + 'a>>,
    pub observers: Vec<Box<dyn Observer + 'a>>,
}

/// Why a session could not start (nothing was sent; the journal is untouched or, for a
/// resume, unchanged).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("journal {path}: {source}")]
    Journal { path: String, source: smp_store::StoreError },
    #[error("journal {0} already exists; resume it, or give a new journal path")]
    JournalExists(String),
    #[error("journal {0} does not exist; give the journal of the session to resume")]
    NoJournal(String),
    #[error("journal {path} records session {journal}, not {plan}; give the journal of this session")]
    SessionMismatch { path: String, journal: u32, plan: u32 },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error(
        "the plan's session asks for {field} = {plan}, above the rig {rig}'s hard cap {cap} ([limits] in the rig file)"
    )]
    BeyondRig { field: &'static str, plan: f64, cap: f64, rig: String },
    #[error("{0}")]
    Internal(String),
}

/// What the engine's threads tell its loop.
enum Event {
    Exec(ExecutorUpdate),
    /// The executor thread returned (its result is in its handle).
    RunDone,
    Track(TrackBatch),
    /// `taken`: the run in flight already has it.
    Operator {
        command: OperatorCommand,
        taken: bool,
    },
}

/// Operator commands reach the run in flight from the operator's own thread, without waiting
/// for the engine's loop (the executor's gate writes a feed hold's byte inside `send`); the
/// loop hears of them too, for the core's bookkeeping.
#[derive(Clone, Default)]
struct Relay {
    live: Arc<Mutex<Option<UnboundedSender>>>,
}

impl Relay {
    fn set(&self, tx: Option<UnboundedSender>) {
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = tx;
    }

    /// Sends to the run in flight; false when there is none.
    fn send(&self, c: OperatorCommand) -> bool {
        let guard = self.live.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_some_and(|tx| tx.send(c).is_ok())
    }
}

/// What the tracker thread hands back: the band cameras, its figures, why it stopped early.
type TrackerEnd = (Box<dyn BandCameras>, TrackingReport, Option<String>);

/// A run in flight: the executor's and the tracker's threads.
struct Live<'scope> {
    exec: std::thread::ScopedJoinHandle<'scope, (Journal, Result<ExecutionReport, MotionError>)>,
    tracker: Option<std::thread::ScopedJoinHandle<'scope, TrackerEnd>>,
    stop_tracking: Arc<AtomicBool>,
    dots: usize,
}

/// Runs the session. Returns its report also when the session stopped on a fault or for the
/// operator (the journal then holds exactly what happened); `Err` only when it could not
/// start.
pub fn run_session(inputs: &SessionInputs, world: World<'_>) -> Result<SessionReport, SessionError> {
    // The rig's hard caps stand above any session spec (an edited plan cannot raise them).
    if let Some((field, plan, cap)) = inputs.rig.limits.exceeded_by(&inputs.plan.spec) {
        return Err(SessionError::BeyondRig { field, plan, cap, rig: inputs.rig.name.clone() });
    }
    let World { machine, cameras, mut operator, mut observers } = world;
    let Cameras { mut band, mut flange } = cameras;
    let journal_path = inputs.journal.path().to_path_buf();
    let mut journal = Some(open_journal(inputs)?);
    let clock = machine.clock();
    let t_start = clock.now_s();
    let mut report = SessionReport::new(inputs, machine.describe());
    let notify = |observers: &mut Vec<Box<dyn Observer + '_>>, e: SessionEvent| {
        for o in observers.iter_mut() {
            o.on_event(&e);
        }
    };
    // A run that ended without recording its dots' outcome (the host died mid-run) left them
    // `sent` or `accepted`: they are uncertain now, looked at before anything is resent.
    if let Some(j) = journal.as_mut() {
        let reason = "the run that sent it ended without recording its outcome (the host stopped mid-run)";
        let stranded =
            j.unfinished_to_uncertain(reason, clock.now_s()).map_err(|source| journal_error(&journal_path, source))?;
        if !stranded.is_empty() {
            report.notes.push(format!(
                "{} dot(s) an earlier run left in flight without an outcome are uncertain: {}",
                stranded.len(),
                stranded.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ));
        }
    }
    let uncertain = journal.as_ref().map_or(Ok(Vec::new()), |j| j.dots_in_state(DotState::Uncertain));
    let uncertain = uncertain.map_err(|source| journal_error(&journal_path, source))?.len();
    if band.is_none() {
        report
            .warnings
            .push("head not tracked: no band cameras see a head band (any head movement goes unseen)".into());
    }
    let mut core = SessionCore::new(inputs.core);
    core.handle(Input::Start { uncertain, flange_camera: flange.is_some(), band_cameras: band.is_some() });
    let mut registered = inputs.base_from_head;
    let relay = Relay::default();
    let (tx, rx) = mpsc::channel::<Event>();
    let operator_stop = Arc::new(AtomicBool::new(false));
    // Commands the operator's thread already handed to the run in flight (not sent twice).
    let mut sent_by_operator: Vec<OperatorCommand> = Vec::new();
    let positions: std::collections::HashMap<u32, [f64; 3]> =
        inputs.plan.dots.iter().map(|d| (d.id, d.position())).collect();
    std::thread::scope(|scope| {
        if let Some(mut op) = operator.take() {
            let (relay, tx, stop) = (relay.clone(), tx.clone(), operator_stop.clone());
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(c) = op.next_command(Duration::from_millis(100)) {
                        // To the run in flight at once (the gate writes a hold inside `send`),
                        // then to the loop for the core's bookkeeping.
                        let taken = relay.send(c);
                        if tx.send(Event::Operator { command: c, taken }).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        let mut live: Option<Live<'_>> = None;
        let mut run_index = 0usize;
        let outcome = loop {
            let Some(action) = core.poll_action() else {
                let Ok(ev) = rx.recv() else { break Outcome::Faulted("the engine's event channel closed".into()) };
                match ev {
                    Event::Exec(u) => match &u {
                        ExecutorUpdate::State(s) => {
                            core.handle(Input::Executor(*s));
                            notify(&mut observers, SessionEvent::State(session_state(*s)));
                        }
                        ExecutorUpdate::Progress(p) => {
                            if let Some(id) = p.last_dot {
                                notify(
                                    &mut observers,
                                    SessionEvent::Dot {
                                        id,
                                        state: DotState::Executed,
                                        position_head_mm: positions.get(&id).copied().unwrap_or([f64::NAN; 3]),
                                        t_s: clock.now_s(),
                                    },
                                );
                            }
                            notify(&mut observers, SessionEvent::Progress { done: p.dots_done, total: p.dots_total });
                        }
                        ExecutorUpdate::Command(a) => {
                            report.operator_commands += usize::from(a.applied);
                            notify(&mut observers, SessionEvent::Command { command: a.command, applied: a.applied });
                        }
                    },
                    Event::RunDone => {
                        let Some(run) = live.take() else { continue };
                        relay.set(None);
                        run.stop_tracking.store(true, Ordering::SeqCst);
                        let (j, result) = match run.exec.join() {
                            Ok(r) => r,
                            Err(_) => break Outcome::Faulted("the executor thread panicked".into()),
                        };
                        journal = Some(j);
                        if let Some(t) = run.tracker {
                            // It stops at its next look at the flag (a batch it waits on is
                            // abandoned: the run it was for is over).
                            if let Ok((cams, tr, problem)) = t.join() {
                                band = Some(cams);
                                report.absorb_tracking(&tr);
                                if let Some(p) = problem {
                                    report.warnings.push(p);
                                }
                            }
                        }
                        let end = report.absorb_run(result, run.dots);
                        core.handle(Input::RunEnded(end));
                    }
                    Event::Track(batch) => {
                        if live.is_none() || batch.run != run_index {
                            let _ = batch.done.send(()); // a late exposure of an ended run
                            continue;
                        }
                        for e in batch.events.clone() {
                            core.handle(Input::Track(e));
                        }
                        // The core's answer goes out before the tracker takes the next exposure.
                        while let Some(a) = core.poll_action() {
                            match a {
                                Action::Executor(c) => {
                                    if c == OperatorCommand::Pause {
                                        report.fiducial_loss_holds += 1;
                                    }
                                    relay.send(c);
                                }
                                Action::StopTracking => {
                                    if let Some(l) = &live {
                                        l.stop_tracking.store(true, Ordering::SeqCst);
                                    }
                                }
                                Action::Note(n) => {
                                    notify(&mut observers, SessionEvent::Note(n.clone()));
                                    report.notes.push(n);
                                }
                                other => {
                                    // Only run actions come from tracking; anything else waits.
                                    report.notes.push(format!("(deferred) {other:?}"));
                                }
                            }
                        }
                        let _ = batch.done.send(());
                    }
                    Event::Operator { command, taken } => {
                        if taken && core.streaming() {
                            sent_by_operator.push(command);
                        }
                        core.handle(Input::Operator(command));
                    }
                }
                continue;
            };
            match action {
                Action::Note(n) => {
                    notify(&mut observers, SessionEvent::Note(n.clone()));
                    report.notes.push(n);
                }
                Action::Refuse { command, reason } => {
                    notify(&mut observers, SessionEvent::Command { command, applied: false });
                    report.notes.push(format!("operator {}: refused, {reason}", command.as_str()));
                }
                Action::Executor(c) => {
                    if let Some(i) = sent_by_operator.iter().position(|s| *s == c) {
                        sent_by_operator.remove(i); // the operator's thread already sent it
                    } else {
                        relay.send(c);
                    }
                }
                Action::StopTracking => {
                    if let Some(l) = &live {
                        l.stop_tracking.store(true, Ordering::SeqCst);
                    }
                }
                Action::CheckUncertain => {
                    notify(&mut observers, SessionEvent::State(SessionState::Checking));
                    if let (Some(cam), Some(j)) = (flange.as_mut(), journal.as_mut()) {
                        match resolve_uncertain_by_camera(
                            j,
                            cam.as_mut(),
                            &inputs.rig,
                            &registered,
                            &inputs.plan,
                            inputs.expected_dot_mm,
                            clock.now_s(),
                        ) {
                            Ok(r) => {
                                if r.checked > 0 {
                                    report.notes.push(r.summary());
                                    notify(&mut observers, SessionEvent::Note(r.summary()));
                                }
                                report.camera_checks.push(r);
                            }
                            Err(e) => report.faults.push(format!("camera check: {e}")),
                        }
                    }
                    core.handle(Input::Checked);
                }
                Action::Reregister => {
                    notify(&mut observers, SessionEvent::State(SessionState::Reregistering));
                    let s = &inputs.tracking;
                    let result = match band.as_mut() {
                        Some(b) => reregister_when_settled(
                            b.as_mut(),
                            s.settle_frames,
                            s.settle_tolerance_mm,
                            s.settle_timeout,
                        )
                        .map_err(|e| e.to_string()),
                        None => Err("no band cameras".to_string()),
                    };
                    match result {
                        Ok((reg, at_s)) => {
                            let moved = (reg.base_from_head.translation.vector - registered.translation.vector).norm();
                            registered = reg.base_from_head;
                            report.reregistered_at_s.push(at_s);
                            notify(&mut observers, SessionEvent::Registered { base_from_head: registered, t_s: at_s });
                            core.handle(Input::Reregistered(Some(format!(
                                "re-registered from {} band markers at {at_s:.2} s (head centre moved {moved:.2} mm, fit \
                                 {:.2} px)",
                                reg.markers_used.len(),
                                reg.reprojection_rms_px
                            ))));
                        }
                        Err(e) => {
                            report.faults.push(e);
                            core.handle(Input::Reregistered(None));
                        }
                    }
                }
                Action::Stream => {
                    let Some(mut j) = journal.take() else { break Outcome::Faulted("journal lost".into()) };
                    let prepared = prepare_run(inputs, &mut j, &registered, run_index);
                    let (verified, dots, summary) = match prepared {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            journal = Some(j);
                            core.handle(Input::RunEnded(RunEnd::NothingToDo));
                            continue;
                        }
                        Err(e) => {
                            journal = Some(j);
                            report.faults.push(e.clone());
                            core.handle(Input::RunEnded(RunEnd::NotStarted(e)));
                            continue;
                        }
                    };
                    run_index += 1;
                    report.programs.push(summary);
                    let needs = &verified.report().needs;
                    let connected = machine.connect().and_then(|mut p| {
                        let profile = check_controller(&mut p, machine.protocol(), needs, SurveyConfig::default())?;
                        Ok((p, profile))
                    });
                    let port = match connected {
                        Ok((p, profile)) => {
                            if let Some(c) = profile.filter(|_| run_index == 1) {
                                let note = format!(
                                    "controller {} drives {}; spindle maximum $30={}: the program fits it",
                                    c.version.as_deref().unwrap_or("(no version)"),
                                    c.axis_letters,
                                    c.settings.get(&30).map_or("?".into(), |v| format!("{v}")),
                                );
                                report.notes.push(note);
                            }
                            p
                        }
                        Err(e) => {
                            journal = Some(j);
                            report.faults.push(e.to_string());
                            core.handle(Input::RunEnded(RunEnd::NotStarted(e.to_string())));
                            continue;
                        }
                    };
                    let mut cfg = inputs.execute.clone();
                    machine.tune(&mut cfg);
                    let (ctl_tx, ctl_rx) = unbounded_channel();
                    relay.set(Some(ctl_tx));
                    let stop_tracking = Arc::new(AtomicBool::new(false));
                    let tracker = band.take().map(|b| {
                        let (tx, stop, tcfg, reference) =
                            (tx.clone(), stop_tracking.clone(), inputs.tracking.tracker.clone(), registered);
                        let run = run_index;
                        scope.spawn(move || {
                            track(b, tcfg, reference, stop, run, |batch| tx.send(Event::Track(batch)).is_ok())
                        })
                    });
                    let exec_tx = tx.clone();
                    let exec = scope.spawn(move || {
                        let obs_tx = exec_tx.clone();
                        let mut observer = |u: ExecutorUpdate| {
                            let _ = obs_tx.send(Event::Exec(u));
                        };
                        let r = execute_with_control(
                            &verified,
                            port,
                            &mut j,
                            &cfg,
                            Control { commands: Some(ctl_rx), observer: &mut observer },
                        );
                        let _ = exec_tx.send(Event::RunDone);
                        (j, r)
                    });
                    notify(&mut observers, SessionEvent::State(SessionState::Connecting));
                    live = Some(Live { exec, tracker, stop_tracking, dots });
                }
                Action::Finish(o) => break o,
            }
        };
        operator_stop.store(true, Ordering::SeqCst);
        report.finish(&outcome);
        notify(
            &mut observers,
            SessionEvent::State(match &outcome {
                Outcome::Completed => SessionState::Done,
                Outcome::Aborted { .. } => SessionState::Aborted,
                Outcome::Faulted(_) | Outcome::HeldForOperator(_) => SessionState::Faulted,
            }),
        );
        for o in observers.iter_mut() {
            o.finish();
        }
    });
    let mut journal = journal.ok_or_else(|| {
        SessionError::Internal(format!("the journal {} was lost with a panicked thread", journal_path.display()))
    })?;
    report.arm_time_s = clock.now_s() - t_start;
    report.tracking = report.tracking.take().map(|mut t| {
        t.drifts = core.drifts();
        t
    });
    report.read_journal(&journal).map_err(|source| journal_error(&journal_path, source))?;
    let outcome = report.outcome.clone();
    journal.end_session(&outcome).map_err(|source| journal_error(&journal_path, source))?;
    journal.checkpoint_and_close().map_err(|source| journal_error(&journal_path, source))?;
    Ok(report)
}

fn journal_error(path: &Path, source: smp_store::StoreError) -> SessionError {
    SessionError::Journal { path: path.display().to_string(), source }
}

fn session_state(s: ExecutorState) -> SessionState {
    match s {
        ExecutorState::Connecting => SessionState::Connecting,
        ExecutorState::Running => SessionState::Running,
        ExecutorState::Paused => SessionState::Paused,
        ExecutorState::Fault => SessionState::Faulted,
        ExecutorState::Aborted => SessionState::Aborted,
        ExecutorState::Done => SessionState::Running,
    }
}

/// Opens (resume) or creates the journal.
fn open_journal(inputs: &SessionInputs) -> Result<Journal, SessionError> {
    let plan = &inputs.plan;
    match &inputs.journal {
        JournalTarget::Resume(path) => {
            if !path.is_file() {
                return Err(SessionError::NoJournal(path.display().to_string()));
            }
            let j = Journal::open(path).map_err(|source| journal_error(path, source))?;
            let rec = j.session().map_err(|source| journal_error(path, source))?;
            if rec.meta.session != plan.session {
                return Err(SessionError::SessionMismatch {
                    path: path.display().to_string(),
                    journal: rec.meta.session,
                    plan: plan.session,
                });
            }
            Ok(j)
        }
        JournalTarget::New(path) => {
            if path.exists() {
                return Err(SessionError::JournalExists(path.display().to_string()));
            }
            let plan_json = serde_json::to_string(plan).unwrap_or_default();
            let meta = SessionMeta {
                patient: inputs.patient_id.clone(),
                session: plan.session,
                rig_name: inputs.rig.name.clone(),
                seed: plan.spec.seed,
                plan_json,
            };
            let mut j = Journal::create(path, &meta).map_err(|source| journal_error(path, source))?;
            j.insert_plan(plan).map_err(|source| journal_error(path, source))?;
            Ok(j)
        }
    }
}

/// The program for what the journal still holds as planned, on `registered`: compiled,
/// verified, written (the first to `inputs.program`, then `NAME.rereg-K.nc` after drifts) and
/// recorded in the journal, text and hash, before the run that streams it. `None` when
/// nothing is left.
fn prepare_run(
    inputs: &SessionInputs,
    journal: &mut Journal,
    registered: &Isometry3<f64>,
    run_index: usize,
) -> Result<Option<(VerifiedProgram, usize, ProgramSummary)>, String> {
    let stage = if run_index == 0 { "" } else { " (re-registered)" };
    let Some((verified, dots)) =
        program_for_planned(&inputs.plan, &inputs.map, &inputs.rig, registered, inputs.execute.protocol, journal)
            .map_err(|e| format!("{e}{stage}"))?
    else {
        return Ok(None);
    };
    let path = if run_index == 0 {
        inputs.program.clone()
    } else {
        inputs.program.with_extension(format!("rereg-{run_index}.nc"))
    };
    let text = verified.program().to_nc();
    write_atomically(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let vr = verified.report();
    let reason = match (run_index, &inputs.journal) {
        (0, JournalTarget::New(_)) => ProgramReason::First,
        (0, JournalTarget::Resume(_)) => ProgramReason::Resume,
        _ => ProgramReason::Reregistered,
    };
    let path_text = path.display().to_string();
    let registration = serde_json::to_string(registered).map_err(|e| format!("registration: {e}"))?;
    journal
        .record_program(&NewProgram {
            reason,
            path: &path_text,
            lines: vr.lines,
            dots,
            max_depth_mm: vr.max_depth_mm,
            base_from_head_json: &registration,
            text: &text,
        })
        .map_err(|e| format!("journal: recording the program {path_text}: {e}"))?;
    let summary = ProgramSummary {
        path: path_text,
        lines: vr.lines,
        dots,
        max_depth_mm: vr.max_depth_mm,
        sha256: smp_store::program_sha256(&text),
    };
    Ok(Some((verified, dots, summary)))
}

/// The session's rule for what a run streams: the dots the journal still holds as planned,
/// compiled on the current registration in the controller's dialect (the verified text is
/// what goes on the wire) and verified. `None` when nothing is left; else the program and its
/// dot count.
pub fn program_for_planned(
    plan: &SessionPlan,
    map: &ScalpMap,
    rig: &Rig,
    registered: &Isometry3<f64>,
    protocol: Protocol,
    journal: &Journal,
) -> Result<Option<(VerifiedProgram, usize)>, String> {
    let todo: std::collections::BTreeSet<u32> =
        journal.resume_candidates().map_err(|e| format!("journal: {e}"))?.into_iter().collect();
    let mut rest = plan.clone();
    rest.dots.retain(|d| todo.contains(&d.id));
    if rest.dots.is_empty() {
        return Ok(None);
    }
    let options = smp_gcode::CompileOptions { dialect: protocol.dialect() };
    let program =
        smp_gcode::compile_with(&rest, rig, registered, &options).map_err(|e| format!("G-code compile: {e}"))?;
    let verified =
        smp_gcode::verify(program, &rest, map, rig, registered).map_err(|e| format!("G-code verify: {e}"))?;
    Ok(Some((verified, rest.dots.len())))
}

/// Writes through a temporary file and a rename, so a reader never sees half a program.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// What an executor run's result says, for the report and the core.
pub fn run_end(result: &Result<ExecutionReport, MotionError>) -> RunEnd {
    match result {
        Ok(_) => RunEnd::Completed,
        Err(MotionError::AbortedBeforeStart) => RunEnd::Aborted { emergency: false },
        Err(MotionError::Fault(f)) => match f.kind {
            FaultKind::Aborted { emergency } => RunEnd::Aborted { emergency },
            _ => RunEnd::Faulted(f.to_string()),
        },
        Err(e) => RunEnd::NotStarted(e.to_string()),
    }
}

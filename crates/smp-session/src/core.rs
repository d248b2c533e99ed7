//! The session's decisions, sans-I/O: what the session does when the executor changes state
//! or ends, when the head tracker reports a drift or lost fiducials, when the operator sends a
//! command, when a re-registration or a camera check is done. Inputs in
//! ([`SessionCore::handle`]), actions out ([`SessionCore::poll_action`]); no camera, port,
//! thread or clock here, so every rule is tested by feeding inputs (`core/tests.rs`) and the
//! golden transcripts run it under virtual time.
//!
//! The rules:
//! - at the start, dots a fault left uncertain are looked at first when a flange camera is
//!   there (a resume); then whatever the journal still holds as planned is streamed;
//! - a drift of the head stops the run as an abort does (feed hold at once, then a reset that
//!   drops the moves queued for the old pose); once the run has ended the head is
//!   re-registered, the dots in flight are looked at, and what is left is streamed again on
//!   the new pose; after `max_reregistrations` drifts the session stops for the operator;
//! - lost band fiducials hold a running session (nobody knows where the head is) and their
//!   return resumes it, unless the operator paused it meanwhile or the head moved;
//! - operator commands pass to the run in flight; between runs an abort or emergency stop
//!   ends the session, a pause or resume has nothing to act on and is refused.

use smp_core::operator::OperatorCommand;
use smp_motion::ExecutorState;
use smp_vision::tracking::TrackEvent;

/// How an executor run ended, in the session's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Every line answered.
    Completed,
    /// Stopped by an abort (the tracker's after a drift, or the operator's).
    Aborted { emergency: bool },
    /// A fault stopped it (its description).
    Faulted(String),
    /// It never started (the controller refused, the port failed...).
    NotStarted(String),
    /// The journal holds nothing left to stream.
    NothingToDo,
}

/// What the session core hears.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The session begins; `uncertain` dots in the journal (a resume), a flange camera to
    /// look at them, band cameras to track the head.
    Start {
        uncertain: usize,
        flange_camera: bool,
        band_cameras: bool,
    },
    /// The run in flight changed state.
    Executor(ExecutorState),
    RunEnded(RunEnd),
    Track(TrackEvent),
    Operator(OperatorCommand),
    /// The re-registration after a drift: `None` when the head did not settle.
    Reregistered(Option<String>),
    /// The camera check of uncertain dots is done.
    Checked,
}

/// What the session does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Look at the uncertain dots with the flange camera (with the current registration).
    CheckUncertain,
    /// Compile, verify and stream what the journal still holds as planned, on the current
    /// registration.
    Stream,
    /// Pass this to the run in flight.
    Executor(OperatorCommand),
    /// Stop tracking: the run in flight is being stopped.
    StopTracking,
    /// Wait for the head to settle and register it again.
    Reregister,
    /// Tell the operator this (the session's log).
    Note(String),
    /// The operator's command could not be acted on.
    Refuse { command: OperatorCommand, reason: String },
    /// The session is over.
    Finish(Outcome),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The last run completed (the journal says whether every dot is executed).
    Completed,
    /// The operator stopped it.
    Aborted { emergency: bool },
    /// A fault stopped it; uncertain dots are resolved by looking before a resume.
    Faulted(String),
    /// The session stopped and waits for the operator (a head that keeps moving, a head that
    /// did not settle).
    HeldForOperator(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Checking,
    Streaming,
    Reregistering,
    Done,
}

/// Settings of the rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoreConfig {
    /// A session re-registers after at most this many drifts; one more stops it for the
    /// operator (a patient who keeps moving is not treated by the robot).
    pub max_reregistrations: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig { max_reregistrations: 3 }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct SessionCore {
    cfg: CoreConfig,
    phase: Phase,
    flange_camera: bool,
    band_cameras: bool,
    exec: ExecutorState,
    /// The run in flight is being stopped because the head moved.
    stopping_for_drift: bool,
    /// The tracker held the run for lost fiducials (and may lift that hold).
    held_for_loss: bool,
    /// The operator paused the run in flight (the tracker never lifts that).
    operator_paused: bool,
    /// The operator asked to stop (abort or emergency stop).
    operator_stop: Option<bool>,
    drifts: u32,
    actions: std::collections::VecDeque<Action>,
}

impl SessionCore {
    pub fn new(cfg: CoreConfig) -> SessionCore {
        SessionCore {
            cfg,
            phase: Phase::Idle,
            flange_camera: false,
            band_cameras: false,
            exec: ExecutorState::Connecting,
            stopping_for_drift: false,
            held_for_loss: false,
            operator_paused: false,
            operator_stop: None,
            drifts: 0,
            actions: std::collections::VecDeque::new(),
        }
    }

    /// Drifts that stopped a run so far.
    pub fn drifts(&self) -> u32 {
        self.drifts
    }

    /// Whether a run is in flight (operator commands go to it).
    pub fn streaming(&self) -> bool {
        self.phase == Phase::Streaming
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn act(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.phase != Phase::Done {
            self.phase = Phase::Done;
            self.act(Action::Finish(outcome));
        }
    }

    fn stream(&mut self) {
        self.phase = Phase::Streaming;
        self.exec = ExecutorState::Connecting;
        self.stopping_for_drift = false;
        self.held_for_loss = false;
        self.operator_paused = false;
        self.act(Action::Stream);
    }

    /// Looks at uncertain dots first when a camera can, else streams.
    fn check_then_stream(&mut self, uncertain: bool) {
        if uncertain && self.flange_camera {
            self.phase = Phase::Checking;
            self.act(Action::CheckUncertain);
        } else {
            self.stream();
        }
    }

    pub fn handle(&mut self, input: Input) {
        match input {
            Input::Start { uncertain, flange_camera, band_cameras } => {
                if self.phase != Phase::Idle {
                    return;
                }
                self.flange_camera = flange_camera;
                self.band_cameras = band_cameras;
                if let Some(emergency) = self.operator_stop {
                    self.finish(Outcome::Aborted { emergency });
                    return;
                }
                if uncertain > 0 && !flange_camera {
                    self.act(Action::Note(format!(
                        "{uncertain} uncertain dot(s) from an earlier run are left for the operator (no flange camera \
                         to look at them): `smp resolve` them after looking; they are never sent again"
                    )));
                }
                self.check_then_stream(uncertain > 0);
            }
            Input::Checked => {
                if self.phase == Phase::Checking {
                    if let Some(emergency) = self.operator_stop {
                        self.finish(Outcome::Aborted { emergency });
                    } else {
                        self.stream();
                    }
                }
            }
            Input::Executor(s) => {
                if self.phase == Phase::Streaming {
                    self.exec = s;
                }
            }
            Input::Track(ev) => self.on_track(ev),
            Input::Operator(c) => self.on_operator(c),
            Input::RunEnded(end) => self.on_run_end(end),
            Input::Reregistered(None) => {
                if self.phase == Phase::Reregistering {
                    self.finish(Outcome::HeldForOperator(
                        "the head did not settle after a drift: check the patient and the head band, then resume"
                            .into(),
                    ));
                }
            }
            Input::Reregistered(Some(how)) => {
                if self.phase == Phase::Reregistering {
                    self.act(Action::Note(how));
                    if let Some(emergency) = self.operator_stop {
                        self.finish(Outcome::Aborted { emergency });
                    } else {
                        // The dots in flight at the drift are looked at before anything moves.
                        self.check_then_stream(true);
                    }
                }
            }
        }
    }

    fn on_track(&mut self, ev: TrackEvent) {
        if self.phase != Phase::Streaming || self.stopping_for_drift || self.operator_stop.is_some() {
            return;
        }
        match ev {
            TrackEvent::Drift { at, translation_mm, rotation_deg, .. } => {
                self.stopping_for_drift = true;
                self.drifts += 1;
                self.act(Action::Executor(OperatorCommand::Abort));
                self.act(Action::StopTracking);
                self.act(Action::Note(format!(
                    "head drift of {translation_mm:.2} mm / {rotation_deg:.2} deg at {:.2} s (machine time): feed \
                     hold, queued moves dropped",
                    at.as_secs_f64()
                )));
            }
            TrackEvent::FiducialsLost { at, since } => {
                // Only a hold of a running session is the tracker's to lift later.
                if self.exec == ExecutorState::Running && !self.held_for_loss {
                    self.held_for_loss = true;
                    self.act(Action::Executor(OperatorCommand::Pause));
                    self.act(Action::Note(format!(
                        "head band fiducials lost since {:.2} s: feed hold at {:.2} s (machine time)",
                        since.as_secs_f64(),
                        at.as_secs_f64()
                    )));
                }
            }
            TrackEvent::FiducialsRecovered { at, .. } => {
                self.act(Action::Note(format!("head band fiducials recovered at {:.2} s", at.as_secs_f64())));
                // Back where it was: carry on. Moved: a drift in the same frame came first.
                if self.held_for_loss && !self.operator_paused {
                    self.act(Action::Executor(OperatorCommand::Resume));
                }
                self.held_for_loss = false;
            }
            TrackEvent::Returned { .. } | TrackEvent::Settled { .. } => {}
        }
    }

    fn on_operator(&mut self, c: OperatorCommand) {
        let stop = match c {
            OperatorCommand::Abort => Some(false),
            OperatorCommand::EmergencyStop => Some(true),
            _ => None,
        };
        match self.phase {
            Phase::Streaming => {
                match c {
                    OperatorCommand::Pause => self.operator_paused = true,
                    OperatorCommand::Resume => {
                        self.operator_paused = false;
                        self.held_for_loss = false;
                    }
                    _ => {}
                }
                if let Some(e) = stop {
                    self.operator_stop = Some(e || self.operator_stop == Some(true));
                }
                self.act(Action::Executor(c));
            }
            Phase::Checking | Phase::Reregistering | Phase::Idle => match stop {
                // Acted on when the step in progress (a camera look, a registration) returns.
                Some(e) => self.operator_stop = Some(e || self.operator_stop == Some(true)),
                None => self.act(Action::Refuse {
                    command: c,
                    reason: "no run in flight (the session is looking at dots or re-registering the head)".into(),
                }),
            },
            Phase::Done => {
                self.act(Action::Refuse { command: c, reason: "the session is over".into() });
            }
        }
    }

    fn on_run_end(&mut self, end: RunEnd) {
        if self.phase != Phase::Streaming {
            return;
        }
        let drift_stop = self.stopping_for_drift && end == RunEnd::Aborted { emergency: false };
        if drift_stop && self.operator_stop.is_none() {
            if self.drifts > self.cfg.max_reregistrations {
                self.finish(Outcome::HeldForOperator(format!(
                    "the head moved {} times in one session: the session stays stopped for the operator",
                    self.drifts
                )));
                return;
            }
            if !self.band_cameras {
                self.finish(Outcome::HeldForOperator("the head moved and no band camera can register it".into()));
                return;
            }
            self.phase = Phase::Reregistering;
            self.act(Action::Reregister);
            return;
        }
        let outcome = match end {
            RunEnd::Completed | RunEnd::NothingToDo => match self.operator_stop {
                // An abort after the last answer: the run is the operator's.
                Some(emergency) => Outcome::Aborted { emergency },
                None => Outcome::Completed,
            },
            RunEnd::Aborted { emergency } => {
                Outcome::Aborted { emergency: emergency || self.operator_stop == Some(true) }
            }
            RunEnd::Faulted(f) => Outcome::Faulted(f),
            RunEnd::NotStarted(why) => Outcome::Faulted(why),
        };
        self.finish(outcome);
    }
}

#[cfg(test)]
mod tests;

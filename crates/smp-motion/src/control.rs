//! Operator control of a running executor, and what it reports back.
//!
//! Commands come in over a tokio unbounded channel (the sender is usable from any thread,
//! without a runtime: the bus or a TUI pushes into it); the pump waits on it together with
//! the port and its deadlines, so a command is acted on as soon as it arrives, between two
//! journal commits at worst. State changes, progress and the timing of every command applied
//! go out through one observer callback, which must not block (DESIGN: observers never slow
//! the hot path; forward into a bounded channel and drop when full).

use std::time::Instant;

pub use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::executor::Progress;

/// What the operator can ask of a running session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorCommand {
    /// Feed hold now (grbl `!` written at once); no further line is sent until `Resume`.
    /// Marlin has no feed hold: no new line is sent and the (at most 4) lines already in the
    /// controller run to completion.
    Pause,
    /// Cycle start (grbl `~`) and lines flow again.
    Resume,
    /// Feed hold, wait for the machine to stop, soft reset (grbl) or drain (Marlin); the
    /// dots in flight become uncertain, the rest stay planned; the run ends `aborted`.
    Abort,
    /// Soft reset now (grbl Ctrl-X; Marlin `M112`), no deceleration; then as `Abort`.
    EmergencyStop,
}

impl OperatorCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorCommand::Pause => "pause",
            OperatorCommand::Resume => "resume",
            OperatorCommand::Abort => "abort",
            OperatorCommand::EmergencyStop => "emergency-stop",
        }
    }
}

/// The executor's coarse state, for telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutorState {
    /// Handshake with the controller; nothing sent yet.
    Connecting,
    Running,
    /// Held by the operator.
    Paused,
    /// A fault stopped the stream (the run's error says which).
    Fault,
    /// Stopped by the operator (abort or emergency stop).
    Aborted,
    /// Every line answered and the controller idle.
    Done,
}

impl ExecutorState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorState::Connecting => "connecting",
            ExecutorState::Running => "running",
            ExecutorState::Paused => "paused",
            ExecutorState::Fault => "fault",
            ExecutorState::Aborted => "aborted",
            ExecutorState::Done => "done",
        }
    }
}

/// An operator command as the executor applied it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppliedCommand {
    pub command: OperatorCommand,
    /// When the pump took the command off the channel.
    pub received_at: Instant,
    /// When the bytes it caused (feed hold, cycle start, reset, `M112`) were written to the
    /// port; `None` when it wrote nothing (ignored in this state, or Marlin's pause).
    pub written_at: Option<Instant>,
    /// False when the command did not apply in the current state (e.g. `Resume` while running).
    pub applied: bool,
}

/// What the observer receives.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorUpdate {
    State(ExecutorState),
    /// After each dot is durably journaled as executed.
    Progress(Progress),
    Command(AppliedCommand),
}

/// Operator input and telemetry output of [`crate::execute_with_control`].
pub struct Control<'a> {
    /// Commands from the operator; `None` (or a closed channel) means no operator input.
    pub commands: Option<UnboundedReceiver<OperatorCommand>>,
    pub observer: &'a mut dyn FnMut(ExecutorUpdate),
}

/// Waits for the next command, forever when there is no channel.
pub(crate) async fn next_command(rx: &mut Option<UnboundedReceiver<OperatorCommand>>) -> Option<OperatorCommand> {
    match rx.as_mut() {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

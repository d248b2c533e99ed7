//! Operator control of a running executor, and what it reports back.
//!
//! Commands come in over [`unbounded_channel`] (the sender is usable from any thread, without
//! a runtime: the bus or a TUI pushes into it). While a run is on, `send` writes the command's
//! byte itself (feed hold, cycle start, soft reset; Marlin `M112`) through the executor's
//! shared writer, never behind a journal commit nor a thread wake-up; the pump applies the
//! bookkeeping at its next turn. Before the run, commands wait in the channel. State changes, progress and the timing of every command applied go out through
//! one observer callback, called on the caller's thread, which must not block (DESIGN:
//! observers never slow the hot path; forward into a bounded channel and drop when full).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendError;

use crate::executor::Progress;

/// Where a running executor takes operator commands directly, in the sender's thread: it
/// admits the command and writes its realtime byte before `send` returns (see `wire.rs`).
pub(crate) type DirectSink = Arc<dyn Fn(OperatorCommand, Instant) + Send + Sync>;

/// Shared by the two ends of one channel.
#[derive(Default)]
struct Direct {
    sink: Mutex<Option<DirectSink>>,
}

impl Direct {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<DirectSink>> {
        // A panicking sender must not disable the operator's stop: take a poisoned lock over.
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The operator's end of the command channel. Cheap to clone; usable from any thread, without
/// a runtime.
///
/// While an executor runs with the matching [`UnboundedReceiver`], [`UnboundedSender::send`]
/// hands the command to it directly: the feed hold (or cycle start, soft reset, `M112`) is on
/// the wire when `send` returns, a few tens of microseconds later, with no thread wake-up in
/// between. Before the run starts, commands wait in the channel and are applied, in order,
/// as it starts. (The type parameter is kept for source compatibility with the tokio channel
/// this replaces; only `OperatorCommand` is carried.)
pub struct UnboundedSender<T = OperatorCommand> {
    tx: mpsc::UnboundedSender<T>,
    direct: Arc<Direct>,
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        UnboundedSender { tx: self.tx.clone(), direct: self.direct.clone() }
    }
}

impl<T> std::fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnboundedSender").field("closed", &self.tx.is_closed()).finish()
    }
}

impl UnboundedSender<OperatorCommand> {
    /// Sends a command; see the type's docs for when it takes effect. Fails, returning the
    /// command, once the receiver is gone (the run is over or never started).
    pub fn send(&self, command: OperatorCommand) -> Result<(), SendError<OperatorCommand>> {
        let direct = self.direct.lock();
        if let Some(sink) = direct.as_ref() {
            sink(command, Instant::now());
            return Ok(());
        }
        // Still under the lock: a run attaching now drains the channel first, so commands keep
        // their order across the switch.
        self.tx.send(command)
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The executor's end of the command channel; hand it over in [`Control::commands`].
pub struct UnboundedReceiver<T = OperatorCommand> {
    rx: mpsc::UnboundedReceiver<T>,
    direct: Arc<Direct>,
}

impl<T> std::fmt::Debug for UnboundedReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnboundedReceiver").finish_non_exhaustive()
    }
}

impl UnboundedReceiver<OperatorCommand> {
    /// The next command waiting in the channel (not those taken directly by a running executor).
    pub async fn recv(&mut self) -> Option<OperatorCommand> {
        self.rx.recv().await
    }

    /// From now on, senders call `sink` directly; commands already waiting go to it first, in
    /// order.
    pub(crate) fn attach(&mut self, sink: DirectSink) {
        let mut direct = self.direct.lock();
        while let Ok(c) = self.rx.try_recv() {
            sink(c, Instant::now());
        }
        *direct = Some(sink);
    }

    /// Senders go back to the channel (the run is ending).
    pub(crate) fn detach(&mut self) {
        *self.direct.lock() = None;
    }
}

impl<T> Drop for UnboundedReceiver<T> {
    fn drop(&mut self) {
        // Never leave senders writing to a finished run's port.
        *self.direct.lock() = None;
    }
}

/// A command channel for [`Control::commands`] (see [`UnboundedSender`]).
pub fn unbounded_channel() -> (UnboundedSender<OperatorCommand>, UnboundedReceiver<OperatorCommand>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let direct = Arc::new(Direct::default());
    (UnboundedSender { tx, direct: direct.clone() }, UnboundedReceiver { rx, direct })
}

pub use smp_core::operator::OperatorCommand;

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
    /// When the executor took the command, since the run started: inside `send` while the run
    /// is on, or as the run started for a command sent before.
    pub received_at: std::time::Duration,
    /// When the bytes it caused (feed hold, cycle start, reset, `M112`) were written to the
    /// port, by `send` itself, since the run started; `None` when it wrote nothing (ignored in
    /// this state, or Marlin's pause).
    pub written_at: Option<std::time::Duration>,
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

/// Waits for the next command, forever when there is no channel (the relay's wait).
pub(crate) async fn next_command(rx: &mut Option<UnboundedReceiver<OperatorCommand>>) -> Option<OperatorCommand> {
    match rx.as_mut() {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

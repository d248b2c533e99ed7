//! The executor core's only contact with the world: an inbox the driver fills (received
//! bytes, operator commands, journal answers, the time) and an outbox it drains ([`Action`]s).
//!
//! The core's logic is one `async` function (`pump.rs`) because a run is a sequence of phases
//! with waits in them, which reads best as straight-line code. It never awaits a runtime, a
//! socket or a clock: every `.await` below resolves from this inbox, and the driver polls the
//! future by hand after each input (`ExecutorCore::poll_action`). So the core is sans-I/O in
//! the quinn-proto sense (bytes and time in, bytes, journal writes and events out), runs the
//! same under a real serial port and under virtual time, and is deterministic.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use smp_core::plan::DotState;
use smp_store::{CommandResult, StoreError};

use crate::control::ExecutorUpdate;
use crate::wire::Forwarded;

/// A journal write the core needs done, in order, before it goes on.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalOp {
    /// Start a run record (the driver keeps its id for the log lines and `EndRun`).
    BeginRun,
    /// Commit these dot transitions (and the buffered command log) in one transaction.
    SetStates { changes: Vec<(u32, DotState)>, at_s: f64 },
    /// Close the run record.
    EndRun { outcome: String },
}

/// A command-log line (buffered by the journal, flushed with the next commit; never fails).
#[derive(Debug, Clone, PartialEq)]
pub enum LogLine {
    Sent { line_no: u32, text: String, dot: Option<u32>, at_s: f64 },
    Answer { line_no: u32, result: CommandResult, at_s: f64 },
}

/// Which state of the operator gate a guarded write needs (see `wire.rs`): the spindle stop of
/// a pause only while that pause is in force, a repeated cycle start only while resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateNeed {
    Paused,
    Running,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write these bytes to the controller (lines already journaled, or the core's own
    /// realtime bytes). A failed write is reported with `ExecutorCore::handle_port_failed`.
    Write(Vec<u8>),
    /// Write through the operator gate, only in the state it names; answer with
    /// `ExecutorCore::handle_guarded_write`.
    GuardedWrite { bytes: Vec<u8>, need: GateNeed },
    /// Do this journal write and answer with `ExecutorCore::handle_journal` (after handing in
    /// whatever input arrived meanwhile, so that a plunge waiting on this commit is held back
    /// by a fault that arrived during it).
    Journal(JournalOp),
    /// Append a command-log line (no answer).
    Log(LogLine),
    /// Send grbl's status query `?` at this period while streaming (`None`: stop); the relay
    /// does it in a live run, so status keeps its period through journal commits.
    StatusPeriod(Option<Duration>),
    /// The core is stopping after a fault: the gate admits only an emergency stop from now on.
    GateFaultStopping,
    /// The run is over: close the operator gate, hand in every command it handled since the
    /// core last looked (`handle_forwarded`), then answer `handle_gate_closed`.
    CloseGate,
    /// For the observer (state, progress, commands applied).
    Update(ExecutorUpdate),
}

/// What the driver hands in from the port.
#[derive(Debug)]
pub(crate) enum Input {
    Bytes(Vec<u8>),
    Failed(String),
}

/// The answer the future waits for, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaiting {
    Nothing,
    /// Input, a forwarded command or the deadline.
    Input {
        deadline: Option<Duration>,
    },
    Journal,
    GuardedWrite,
    GateClosed,
}

/// Shared between the core's future and its driver-facing face; never borrowed across an
/// `.await`.
#[derive(Debug)]
pub(crate) struct Io {
    pub(crate) now: Duration,
    pub(crate) inbox: VecDeque<Input>,
    pub(crate) forwarded: VecDeque<Forwarded>,
    pub(crate) outbox: VecDeque<Action>,
    pub(crate) awaiting: Awaiting,
    pub(crate) journal_answer: Option<Result<(), StoreError>>,
    pub(crate) guarded_answer: Option<Option<Result<Duration, String>>>,
    pub(crate) gate_closed: bool,
    /// The gate's view of the operator's stop, as the driver last saw it: `Some(emergency)`
    /// once an abort or emergency stop was admitted (its bytes may be out before the core
    /// applied it).
    pub(crate) operator_stop: Option<bool>,
}

impl Io {
    pub(crate) fn new() -> Self {
        Io {
            now: Duration::ZERO,
            inbox: VecDeque::new(),
            forwarded: VecDeque::new(),
            outbox: VecDeque::new(),
            awaiting: Awaiting::Nothing,
            journal_answer: None,
            guarded_answer: None,
            gate_closed: false,
            operator_stop: None,
        }
    }
}

/// The core's handle on [`Io`].
#[derive(Debug, Clone)]
pub(crate) struct Ctx(pub(crate) Rc<RefCell<Io>>);

impl Ctx {
    pub(crate) fn now(&self) -> Duration {
        self.0.borrow().now
    }

    pub(crate) fn push(&self, a: Action) {
        self.0.borrow_mut().outbox.push_back(a);
    }

    pub(crate) fn take_input(&self) -> Option<Input> {
        self.0.borrow_mut().inbox.pop_front()
    }

    pub(crate) fn take_forwarded(&self) -> Vec<Forwarded> {
        self.0.borrow_mut().forwarded.drain(..).collect()
    }

    pub(crate) fn operator_stop(&self) -> Option<bool> {
        self.0.borrow().operator_stop
    }

    /// Waits until input or a forwarded command is there, or `deadline` has come. Always
    /// hands control back to the driver once unless input is already waiting: the core's time
    /// only moves between steps, so a deadline already due must not make the core loop on
    /// without the driver's fresh input and time.
    pub(crate) fn wait(&self, deadline: Option<Duration>) -> Wait<'_> {
        Wait { ctx: self, deadline, yielded: false }
    }

    /// Has the journal write done; its result.
    pub(crate) async fn journal(&self, op: JournalOp) -> Result<(), StoreError> {
        {
            let mut io = self.0.borrow_mut();
            io.journal_answer = None;
            io.outbox.push_back(Action::Journal(op));
        }
        Answer { ctx: self, awaiting: Awaiting::Journal }.await;
        self.0.borrow_mut().journal_answer.take().unwrap_or(Ok(()))
    }

    /// Writes through the operator gate: `None` when the gate said no.
    pub(crate) async fn guarded_write(&self, bytes: Vec<u8>, need: GateNeed) -> Option<Result<Duration, String>> {
        {
            let mut io = self.0.borrow_mut();
            io.guarded_answer = None;
            io.outbox.push_back(Action::GuardedWrite { bytes, need });
        }
        Answer { ctx: self, awaiting: Awaiting::GuardedWrite }.await;
        self.0.borrow_mut().guarded_answer.take().flatten()
    }

    /// Closes the operator gate; the commands it handled meanwhile are in the forwarded queue
    /// when this returns.
    pub(crate) async fn close_gate(&self) {
        {
            let mut io = self.0.borrow_mut();
            io.gate_closed = false;
            io.outbox.push_back(Action::CloseGate);
        }
        Answer { ctx: self, awaiting: Awaiting::GateClosed }.await;
    }
}

/// See [`Ctx::wait`].
pub(crate) struct Wait<'a> {
    ctx: &'a Ctx,
    deadline: Option<Duration>,
    yielded: bool,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let yielded = std::mem::replace(&mut self.yielded, true);
        let mut io = self.ctx.0.borrow_mut();
        let due = yielded && deadline.is_some_and(|d| io.now >= d);
        if due || !io.inbox.is_empty() || !io.forwarded.is_empty() {
            io.awaiting = Awaiting::Nothing;
            Poll::Ready(())
        } else {
            io.awaiting = Awaiting::Input { deadline: self.deadline };
            Poll::Pending
        }
    }
}

/// Waits for the driver's answer to the last action of its kind.
struct Answer<'a> {
    ctx: &'a Ctx,
    awaiting: Awaiting,
}

impl Future for Answer<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let mut io = self.ctx.0.borrow_mut();
        let ready = match self.awaiting {
            Awaiting::Journal => io.journal_answer.is_some(),
            Awaiting::GuardedWrite => io.guarded_answer.is_some(),
            Awaiting::GateClosed => io.gate_closed,
            Awaiting::Nothing | Awaiting::Input { .. } => true,
        };
        if ready {
            io.awaiting = Awaiting::Nothing;
            Poll::Ready(())
        } else {
            io.awaiting = self.awaiting;
            Poll::Pending
        }
    }
}

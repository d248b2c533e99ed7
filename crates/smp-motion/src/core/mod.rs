//! The executor's decisions as a sans-I/O core: received bytes, operator commands, journal
//! answers and the time go in; bytes to write, journal writes, status-period changes and
//! observer updates come out ([`Action`]); [`ExecutorCore::step`] says what to do next or how
//! long to wait. No port, no clock, no thread, no runtime: the live driver (`driver.rs`) moves
//! the bytes of a serial port or pty, a test or the session engine drives it under virtual
//! time against the simulated controller and gets the same decisions byte for byte.
//!
//! The driver's contract, in order:
//! - call [`ExecutorCore::step`] with the current time until it says [`Step::Wait`]; do each
//!   [`Step::Act`] at once: [`Action::Write`] (report a failed write with
//!   [`ExecutorCore::handle_port_failed`]), [`Action::Journal`] (hand in whatever input arrived
//!   meanwhile, then the result with [`ExecutorCore::handle_journal`]),
//!   [`Action::GuardedWrite`] ([`ExecutorCore::handle_guarded_write`]), [`Action::CloseGate`]
//!   (the commands it still held with [`ExecutorCore::handle_forwarded`], then
//!   [`ExecutorCore::handle_gate_closed`]);
//! - on [`Step::Wait`] wait for received bytes, an operator command or the deadline, and hand
//!   them in ([`ExecutorCore::handle_received`], [`ExecutorCore::handle_forwarded`]);
//! - [`Step::Done`] carries the run's result; the driver adds the figures it measured (wall
//!   time, bytes written, its transcript, journal commit times).

mod events;
mod io;
mod operator;
mod pump;
mod stop;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use smp_gcode::marlin::MarlinConfig;
use smp_gcode::{new_streamer, GrblConfig, LineRole, Program};
use smp_store::StoreError;

pub use self::io::{Action, GateNeed, JournalOp, LogLine};
use self::io::{Awaiting, Ctx, Input, Io};
use self::pump::Pump;
use crate::error::MotionError;
use crate::executor::{ExecuteConfig, ExecutionReport};
use crate::wire::Forwarded;

/// What the driver does next.
#[derive(Debug)]
pub enum Step {
    /// Do this now (see the module docs for the answers some actions need).
    Act(Action),
    /// Wait for input, an operator command, or this time (`None`: no deadline).
    Wait(Option<Duration>),
    /// The run is over (boxed: a report is large beside the other steps).
    Done(Box<Result<ExecutionReport, MotionError>>),
}

type RunFuture = Pin<Box<dyn Future<Output = Result<ExecutionReport, MotionError>>>>;

/// See the module docs.
pub struct ExecutorCore {
    io: Rc<RefCell<Io>>,
    run: Option<RunFuture>,
    result: Option<Result<ExecutionReport, MotionError>>,
}

impl std::fmt::Debug for ExecutorCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorCore").field("io", &self.io.borrow()).field("done", &self.result.is_some()).finish()
    }
}

impl ExecutorCore {
    /// A core for `program`, checked and queued (nothing is sent before the handshake). Refuses
    /// a program whose dots are not each plunged once and confirmed by a dwell, or whose lines
    /// the protocol cannot carry.
    pub fn new(program: &Program, cfg: &ExecuteConfig) -> Result<ExecutorCore, MotionError> {
        let plunges = check_program(program)?;
        // The verified text is sent as it is: a program written for another controller's
        // dialect (grbl's `G4 P` is seconds, Marlin's milliseconds) is refused, never rewritten.
        let dialect = program
            .dialect()
            .map_err(|e| MotionError::BadProgram { line_no: e.line.unwrap_or(1), problem: e.problem })?;
        if dialect != cfg.protocol.dialect() {
            return Err(MotionError::BadProgram {
                line_no: 1,
                problem: format!(
                    "the program is written in {}'s dialect but the controller speaks {}: compile and verify it for {}",
                    dialect.as_str(),
                    cfg.protocol,
                    cfg.protocol.dialect().as_str()
                ),
            });
        }
        let feed_rate_query = Some(cfg.marlin_feed_rate_query).filter(|p| !p.is_zero());
        let mut streamer = new_streamer(cfg.protocol, grbl_config(cfg), marlin_config(cfg), feed_rate_query);
        for (i, line) in program.lines.iter().enumerate() {
            let bad = |problem: String| MotionError::BadProgram { line_no: i + 1, problem };
            match streamer.translate(&line.text).map_err(bad)? {
                Some(wire) => streamer.queue_line(&wire, i as u64).map_err(bad)?,
                None if matches!(line.role, LineRole::Plunge | LineRole::Dwell) => {
                    return Err(bad(format!("the {} line has no command for {}", line.role.as_str(), cfg.protocol)));
                }
                None => {}
            }
        }
        // Marlin: an `M400` after the last line; its `ok` says every move is done.
        let sync_tag = (!cfg.protocol.has_realtime()).then_some(program.lines.len() as u64);
        if let Some(tag) = sync_tag {
            streamer
                .queue_line("M400", tag)
                .map_err(|problem| MotionError::BadProgram { line_no: program.lines.len() + 1, problem })?;
        }
        let io = Rc::new(RefCell::new(Io::new()));
        let mut pump = Pump::new(Ctx(io.clone()), program.clone(), cfg.clone(), streamer, sync_tag, plunges);
        pump.plunge_bottoms = operator::plunge_bottoms(program);
        Ok(ExecutorCore { io, run: Some(Box::pin(pump.run())), result: None })
    }

    /// Dots of the program, in plunge order.
    pub fn plunge_order(program: &Program) -> Result<Vec<u32>, MotionError> {
        check_program(program)
    }

    /// What to do next at time `now` (since the run started).
    pub fn step(&mut self, now: Duration) -> Step {
        self.io.borrow_mut().now = now;
        if let Some(a) = self.io.borrow_mut().outbox.pop_front() {
            return Step::Act(a);
        }
        if let Some(run) = self.run.as_mut() {
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(r) = run.as_mut().poll(&mut cx) {
                self.run = None;
                self.result = Some(r);
            }
            if let Some(a) = self.io.borrow_mut().outbox.pop_front() {
                return Step::Act(a);
            }
        }
        if let Some(r) = self.result.take() {
            return Step::Done(Box::new(r));
        }
        match self.io.borrow().awaiting {
            Awaiting::Input { deadline } => Step::Wait(deadline),
            // An answer is owed by the driver (a contract breach): nothing to do until it comes.
            _ => Step::Wait(None),
        }
    }

    /// Bytes the controller sent.
    pub fn handle_received(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.io.borrow_mut().inbox.push_back(Input::Bytes(bytes.to_vec()));
        }
    }

    /// The port failed (read or write): no input will come any more.
    pub fn handle_port_failed(&mut self, detail: impl Into<String>) {
        self.io.borrow_mut().inbox.push_back(Input::Failed(detail.into()));
    }

    /// An operator command the gate handled (admitted or refused, its bytes written).
    pub fn handle_forwarded(&mut self, f: Forwarded) {
        self.io.borrow_mut().forwarded.push_back(f);
    }

    /// The gate's view of the operator's stop (`Some(emergency)` once admitted), so that the
    /// controller's echo of a stop written from the operator's thread is read as that stop.
    pub fn set_operator_stop(&mut self, stop: Option<bool>) {
        self.io.borrow_mut().operator_stop = stop;
    }

    /// The result of the last [`Action::Journal`].
    pub fn handle_journal(&mut self, result: Result<(), StoreError>) {
        self.io.borrow_mut().journal_answer = Some(result);
    }

    /// The result of the last [`Action::GuardedWrite`]: `None` when the gate refused it, else
    /// the write's time (since the run started) or its error.
    pub fn handle_guarded_write(&mut self, result: Option<Result<Duration, String>>) {
        self.io.borrow_mut().guarded_answer = Some(result);
    }

    /// The gate is closed and its last commands handed in.
    pub fn handle_gate_closed(&mut self) {
        self.io.borrow_mut().gate_closed = true;
    }
}

pub(crate) fn grbl_config(cfg: &ExecuteConfig) -> GrblConfig {
    GrblConfig {
        rx_buffer_bytes: cfg.rx_buffer_bytes,
        ack_timeout: cfg.ack_timeout,
        pause_on_error: true,
        wait_for_welcome: false,
        // The transcript is kept by the driver, where the operator's bytes are seen too.
        record_transcript: false,
    }
}

pub(crate) fn marlin_config(cfg: &ExecuteConfig) -> MarlinConfig {
    // The resend probe must not fire inside a long command: the ack timeout bounds those.
    MarlinConfig {
        max_in_flight: cfg.marlin_max_in_flight.max(1),
        resend_timeout: cfg.ack_timeout,
        realtime_commands: cfg.marlin_realtime_commands,
    }
}

/// Dots of the program in plunge order; checks that each is plunged once and followed by its
/// dwell before the next plunge (the dwell's `ok` is how execution is confirmed).
fn check_program(program: &Program) -> Result<Vec<u32>, MotionError> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut open: Option<(u32, usize)> = None;
    for (i, line) in program.lines.iter().enumerate() {
        let bad = |problem: String| MotionError::BadProgram { line_no: i + 1, problem };
        match (line.role, line.dot_id) {
            (LineRole::Plunge, None) | (LineRole::Dwell, None) => {
                return Err(bad(format!("a {} line names no dot", line.role.as_str())));
            }
            (LineRole::Plunge, Some(d)) => {
                if let Some((prev, at)) = open {
                    return Err(bad(format!(
                        "dot {d} is plunged before dot {prev} (plunged at line {at}) has its dwell"
                    )));
                }
                if !seen.insert(d) {
                    return Err(bad(format!("dot {d} is plunged twice")));
                }
                order.push(d);
                open = Some((d, i + 1));
            }
            (LineRole::Dwell, Some(d)) => match open {
                Some((p, _)) if p == d => open = None,
                _ => return Err(bad(format!("dwell for dot {d} does not follow its plunge"))),
            },
            _ => {}
        }
    }
    if let Some((d, at)) = open {
        return Err(MotionError::BadProgram { line_no: at, problem: format!("dot {d} has no dwell after its plunge") });
    }
    Ok(order)
}

//! The pump: one loop that reads, hands bytes to the streamer, journals, writes and sleeps.
//!
//! Journal rules, in the order the bytes flow:
//! - every line is queued in the (paused) streamer up front, so a line grbl cannot take is
//!   refused before the first byte goes out;
//! - the streamer reports `Sent { tag }` for the lines it put into the transmit buffer; for a
//!   `Plunge` line the dot becomes `sent`, and that is committed (`synchronous = FULL`) before
//!   the plunge line's bytes are written to the port (the lines before it in the same batch
//!   go out first, so the fsync overlaps the controller's work). Should the commit fail,
//!   nothing from the plunge on is written;
//! - the plunge's `ok` makes the dot `accepted`. That state is informational (the dot is in
//!   grbl's planner, which a fault treats exactly like `sent`), so it is not committed on its
//!   own: it rides along with the next durable commit, saving one fsync per dot;
//! - the `ok` of the dot's `Dwell` line (a `G4`, which grbl answers only after the plunge has
//!   finished) makes it `executed`, committed before the next byte is written; the progress
//!   callback then fires;
//! - all changes of one loop turn go in one transaction: typically one commit per dot
//!   (`executed` of one dot together with `sent` of the next).
//!
//! On a fault the queue is dropped, the controller is held (`!`), once stopped soft-reset so
//! that no buffered line can run later, answers that arrive meanwhile are still journaled,
//! and every dot still `sent`/`accepted` becomes `uncertain`.
//!
//! Overrides (grbl, patient safety): the verifier proved the programmed feeds, and a feed or
//! rapid override other than 100 % scales them (200 % doubles the plunge feed). The handshake
//! waits (bounded) for a status report carrying `Ov:` and refuses to start unless feed and
//! rapid are 100 % ([`MotionError::OverrideActiveAtStart`]). While streaming, a report showing
//! otherwise, or an unreadable `Ov:` field, is a fault ([`FaultKind::OverrideActive`],
//! [`FaultKind::OverrideUnreadable`]): the stream stops, the controller is held and flushed as
//! for any fault. Input that arrived during the journal commit before a plunge is read before
//! the plunge is written, so a report already received never lets one more plunge out. Honest
//! limit: grbl reports `Ov:` on the status report after a change, so a change is seen within
//! one status period (125 ms) plus the serial latency; a plunge already in grbl's buffer
//! then may run at the overridden feed before the hold. A spindle (cartridge speed) override
//! is a warning in [`ExecutionReport::warnings`]. Marlin's feed percentage (`M220 S<n>`,
//! which scales every move the same way) is read in the handshake (`M220` answered
//! `FR:<n>%`; the run is refused unless it is 100 %) and, while streaming, by a numbered
//! `M220` put between the lines every [`ExecuteConfig::marlin_feed_rate_query`]; an answer
//! other than 100 % is the same [`FaultKind::OverrideActive`] (feed and rapid both that
//! percentage). Honest limit: Marlin scales a move when it plans it, so lines already in its
//! 4-line queue when the percentage changed run scaled before the next query sees it. A
//! firmware that does not answer `M220` starts with a warning.
//!
//! Protocols ([`Protocol`]): the rules above hold for all three. grbl send-response only
//! changes how many lines are unanswered (one). For Marlin the program's lines are translated
//! by [`smp_gcode::grbl_to_marlin`] (`G4 P` seconds become `G4 S` seconds); Marlin answers a
//! `G4` only after synchronising (all moves done) and dwelling, so its `ok` confirms the
//! plunge exactly as grbl's does. A `Resend: N` acknowledges the lines below N only as
//! *queued*: a dwell acknowledged that way leaves its dot `accepted` until a later dwell, or
//! the `M400` appended after the last line, is answered `ok` (commands run in order). Marlin
//! has no status report: the handshake is an unnumbered `M400` answered `ok`, and the end of
//! the run is the appended `M400`'s `ok`. It has no feed hold nor soft reset either: a pause
//! or an abort stops feeding and lets the (at most 4) lines in the controller drain; an
//! emergency stop writes `M112`.
//!
//! Operator commands ([`OperatorCommand`], see [`execute_with_control`]) never wait for the
//! pump: the operator's `send` writes their bytes itself (`wire.rs`), even while the pump is
//! inside a journal commit, and forwards them; the pump applies the bookkeeping (pauses its
//! streamer, records the command) at its next turn. A pause therefore stops the line stream at
//! the next batch the pump would poll; a batch it had already taken off the queue (and
//! journaled) still goes out behind the `!`, and waits in grbl's buffer, held. The relay also
//! sends the status queries while streaming, so they keep their period through commits and
//! long dwells.
//!
//! The cartridge during a pause (grbl, patient safety; `cartridge.rs`): a feed hold stops the
//! arm, not the cartridge, so a pause in a plunge or a dwell would hold a running needle in
//! the skin. At the first status report showing the hold complete (`Hold:0`) with the
//! cartridge running, the pump sends grbl's spindle stop override (0x9E) through the operator
//! gate (never after the `~` of that pause); the resume's `~` makes grbl restore the cartridge
//! at its speed before it resumes. A `~` grbl dropped because it came before the hold was
//! complete is sent again at `Hold:0`. Each step is in [`ExecutionReport::cartridge_events`],
//! with the dot in flight and the tip's height above its plunge bottom. The extra running time
//! in the skin is about one status period at most (measured: 0.02 s of machine time for a 2 s
//! pause mid-dwell, against 2.0 s without the stop).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use smp_core::plan::DotState;
use smp_gcode::marlin::MarlinConfig;
use smp_gcode::{GrblConfig, LineRole, MachineState, Overrides, Program, Realtime, StatusReport, VerifiedProgram};
use smp_store::{CommandResult, Journal, RunId, StoreError};
use tokio::sync::mpsc;

use crate::cartridge::{CartridgeEvent, CartridgeEventKind, GuardAction, PauseGuard};
use crate::control::{AppliedCommand, Control, ExecutorState, ExecutorUpdate, OperatorCommand};
use crate::error::{dots_summary, FaultKind, FaultReport, MotionError};
use crate::link::{Input, Link, Reader};
use crate::protocol::{new_streamer, HostEvent, HostStreamer, Protocol};
use crate::wire::{relay, Forwarded, Wire};

/// Received lines nobody interprets kept verbatim in the report (the rest are counted).
const MAX_UNKNOWN_LINES_KEPT: usize = 200;

/// Protocol notes kept in the report (the rest are counted): a controller that sends one bad
/// status field at 8 Hz must not grow the report without bound.
const MAX_PROTOCOL_NOTES_KEPT: usize = 200;

/// Status query period while the handshake waits for a report with overrides (`Ov:`).
const OVERRIDE_QUERY_PERIOD: Duration = Duration::from_millis(25);

/// Settings of a run. Times are wall-clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteConfig {
    /// The controller's serial receive buffer (grbl: 128).
    pub rx_buffer_bytes: usize,
    /// Longest wait for the answer to the oldest line in flight before the run is stopped.
    /// Must exceed the longest single block at the controller's real speed.
    pub ack_timeout: Duration,
    /// Period of `?` status queries while streaming (`Duration::ZERO` disables them). The
    /// default, 125 ms, is 8 Hz: inside the 5-10 Hz the operator's display and a stall check
    /// want, with room for jitter either way.
    pub status_interval: Duration,
    /// How long to wait for the controller's first status report before refusing to start.
    pub handshake_timeout: Duration,
    /// Soft-reset the controller before streaming (clears a stale buffer; an Arduino reboots
    /// on port open anyway).
    pub soft_reset_at_start: bool,
    /// After a fault: how long to wait for the machine to stop under feed hold, and then for
    /// the banner after the soft reset that flushes its buffer.
    pub fault_settle: Duration,
    /// After the last line's answer: how long to wait for the controller to report Idle.
    pub final_idle_timeout: Duration,
    /// Read timeout of the reader thread (how fast it notices it should stop).
    pub read_poll: Duration,
    /// Write timeout of the port.
    pub write_timeout: Duration,
    /// Keep a transcript of the bytes exchanged in the report (tests, fault analysis).
    pub record_transcript: bool,
    /// Host protocol spoken to the controller.
    pub protocol: Protocol,
    /// Marlin only: lines unanswered at most (Marlin's `BUFSIZE`).
    pub marlin_max_in_flight: usize,
    /// grbl: after the first Idle status, how long the handshake keeps querying for a report
    /// that carries the overrides (`Ov:`, which grbl sends only every 10 to 20 reports) so that
    /// an override other than 100 % refuses the run before any line goes out. When none comes
    /// (a build without override reports) the run starts with a warning in the report; an `Ov:`
    /// seen later still stops it. `Duration::ZERO` skips the wait.
    pub override_report_wait: Duration,
    /// Marlin: period of the feed rate percentage queries (`M220`) while streaming
    /// (`Duration::ZERO`: only the handshake's). The default, about one dot cycle, bounds the
    /// dots that may run at a changed feed before the run stops; each query costs one line.
    pub marlin_feed_rate_query: Duration,
    /// Marlin: the firmware has `REALTIME_REPORTING_COMMANDS` (and `EMERGENCY_PARSER`): a
    /// pause also sends `P000` (the steppers stop at once, without deceleration) and the
    /// resume `R000`. Off: a pause only stops sending (the lines already sent run on).
    pub marlin_realtime_commands: bool,
}

impl Default for ExecuteConfig {
    fn default() -> Self {
        ExecuteConfig {
            rx_buffer_bytes: 128,
            ack_timeout: Duration::from_secs(20),
            status_interval: Duration::from_millis(125),
            handshake_timeout: Duration::from_secs(5),
            soft_reset_at_start: false,
            fault_settle: Duration::from_secs(2),
            final_idle_timeout: Duration::from_secs(30),
            read_poll: Duration::from_millis(20),
            write_timeout: Duration::from_secs(1),
            record_transcript: false,
            protocol: Protocol::Grbl,
            marlin_max_in_flight: 4,
            override_report_wait: Duration::from_secs(1),
            marlin_feed_rate_query: Duration::from_millis(500),
            marlin_realtime_commands: false,
        }
    }
}

impl ExecuteConfig {
    fn grbl(&self) -> GrblConfig {
        GrblConfig {
            rx_buffer_bytes: self.rx_buffer_bytes,
            ack_timeout: self.ack_timeout,
            pause_on_error: true,
            wait_for_welcome: false,
            // The transcript is kept at the wire, where the relay's bytes are seen too.
            record_transcript: false,
        }
    }

    fn marlin(&self) -> MarlinConfig {
        // The resend probe must not fire inside a long command: the ack timeout bounds those.
        MarlinConfig {
            max_in_flight: self.marlin_max_in_flight.max(1),
            resend_timeout: self.ack_timeout,
            realtime_commands: self.marlin_realtime_commands,
        }
    }
}

/// Handed to the progress callback after each dot is durably journaled as executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub dots_done: usize,
    pub dots_total: usize,
    pub last_dot: Option<u32>,
}

/// What a run did, with the figures to judge its speed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionReport {
    pub dots_executed: usize,
    /// Dots left uncertain by a fault (empty on success).
    pub dots_uncertain: Vec<u32>,
    /// Lines written to the controller.
    pub lines_sent: usize,
    pub wall_time_s: f64,
    /// Problems that did not stop the run (unparsed replies, late errors after a fault...).
    pub errors: Vec<String>,
    pub dots_total: usize,
    pub lines_total: usize,
    /// Lines the controller answered `ok`.
    pub lines_acked: usize,
    /// From the first line written to the last answer.
    pub stream_time_s: f64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub status_reports: u64,
    /// Feedback from the controller: `[MSG:...]` texts, typed feedback lines verbatim
    /// (`[GC:...]`, `[PRB:...]`, `$N=...`, `>G21:ok`...), and the text of textual alarms.
    pub controller_messages: Vec<String>,
    /// Version from the controller's banner, when one was seen.
    pub controller_version: Option<String>,
    pub journal_commits: u64,
    pub journal_commit_total_s: f64,
    pub journal_commit_max_s: f64,
    /// CPU time of the pump thread (Linux; 0 elsewhere), to show it does not spin.
    pub pump_cpu_s: f64,
    /// The bytes exchanged, when [`ExecuteConfig::record_transcript`] is set.
    pub transcript: Vec<String>,
    /// Protocol spoken (`grbl`, `grbl-sr`, `marlin`).
    pub protocol: String,
    /// True when the operator stopped the run (abort or emergency stop).
    pub aborted: bool,
    /// Received lines no protocol rule interprets (debug output, unknown reports), verbatim,
    /// at most 200; they are tolerated, never fatal.
    pub unknown_lines: Vec<String>,
    /// Count of all such lines (also those beyond the 200 kept).
    pub unknown_lines_total: u64,
    /// Protocol housekeeping (Marlin resend requests and line errors, resend probes, status
    /// report fields that did not parse), at most 200.
    pub protocol_notes: Vec<String>,
    /// Count of all protocol notes (also those beyond the 200 kept).
    pub protocol_notes_total: u64,
    /// Conditions that did not stop the run but the operator should know of (a spindle, i.e.
    /// cartridge speed, override other than 100 %; overrides the controller never reported).
    pub warnings: Vec<String>,
    /// The last overrides the controller reported, when it reported any.
    pub last_overrides: Option<Overrides>,
    /// Operator commands in the order received, with whether they applied.
    pub operator_commands: Vec<(OperatorCommand, bool)>,
    /// Longest time from taking a pause, abort or emergency stop off the channel to its bytes
    /// written to the port, seconds (0 when none).
    pub feed_hold_latency_max_s: f64,
    /// Status queries the realtime relay sent while streaming.
    pub status_queries_streaming: u64,
    /// Longest gap between two of those queries, seconds: shows status kept its period
    /// through journal commits and long dwells.
    pub status_query_gap_max_s: f64,
    /// Time spent paused by the operator, seconds.
    pub paused_s: f64,
    /// What happened to the cartridge around operator pauses (grbl: the spindle stop of a
    /// complete hold, its confirmation, grbl's restore on resume), in order.
    pub cartridge_events: Vec<CartridgeEvent>,
    /// Marlin: how far a pause can run on (it stops feeding lines; those already sent still
    /// run), worst case of this program. Also stated in `warnings`. `None` for grbl.
    pub pause_run_on: Option<crate::PauseRunOn>,
}

impl ExecutionReport {
    pub fn lines_per_s(&self) -> f64 {
        rate(self.lines_sent, self.stream_time_s)
    }

    pub fn dots_per_s(&self) -> f64 {
        rate(self.dots_executed, self.stream_time_s)
    }

    pub fn journal_commit_mean_s(&self) -> f64 {
        if self.journal_commits == 0 {
            0.0
        } else {
            self.journal_commit_total_s / self.journal_commits as f64
        }
    }
}

fn rate(n: usize, t: f64) -> f64 {
    if t > 0.0 {
        n as f64 / t
    } else {
        0.0
    }
}

/// Streams a verified program over a serial port (real device or a pty end), journaling dot
/// states. Blocks until the program is done or a fault stopped it.
///
/// Refuses to start (nothing sent, journal untouched) when the journal does not hold every
/// dot of the program as `planned`, when the controller does not answer, or when it is not
/// Idle (an Alarm is for the operator to clear, never the executor).
pub fn execute(
    program: &VerifiedProgram,
    port: TTYPort,
    journal: &mut Journal,
    cfg: &ExecuteConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<ExecutionReport, MotionError> {
    let mut observer = |u: ExecutorUpdate| {
        if let ExecutorUpdate::Progress(p) = u {
            progress(p);
        }
    };
    execute_with_control(program, port, journal, cfg, Control { commands: None, observer: &mut observer })
}

/// [`execute`] with operator commands in and state, progress and command timing out (see
/// [`Control`]). An abort or emergency stop ends in `Err(MotionError::Fault)` whose kind is
/// [`FaultKind::Aborted`] and whose report has `aborted` set; before streaming started it is
/// [`MotionError::AbortedBeforeStart`].
pub fn execute_with_control(
    program: &VerifiedProgram,
    port: TTYPort,
    journal: &mut Journal,
    cfg: &ExecuteConfig,
    control: Control<'_>,
) -> Result<ExecutionReport, MotionError> {
    let mut port = port;
    port.set_timeout(cfg.write_timeout).map_err(|e| MotionError::Port {
        context: "setting the write timeout",
        source: std::io::Error::other(e.to_string()),
    })?;
    let (tx, rx) = mpsc::channel(256);
    let reader = Reader::spawn(&port, cfg.read_poll, tx)?;
    // `run` owns `rx` and drops it on return, so a reader blocked on a full channel wakes up.
    let result = run_controlled(program.program(), port, rx, journal, cfg, control);
    reader.stop();
    result
}

/// The executor over any [`Link`] without operator input; `rx` carries what the controller sends.
#[cfg(test)]
pub(crate) fn run<L: Link + Send + 'static>(
    program: &Program,
    link: L,
    rx: mpsc::Receiver<Input>,
    journal: &mut Journal,
    cfg: &ExecuteConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<ExecutionReport, MotionError> {
    let mut observer = |u: ExecutorUpdate| {
        if let ExecutorUpdate::Progress(p) = u {
            progress(p);
        }
    };
    run_controlled(program, link, rx, journal, cfg, Control { commands: None, observer: &mut observer })
}

/// Closes the wire when the pump is done, however it ends, so the relay thread exits and
/// the scope that joins it cannot hang.
struct CloseOnDrop<'a, L: Link>(&'a Wire<L>);

impl<L: Link> Drop for CloseOnDrop<'_, L> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The executor over any [`Link`], with operator control: the pump on this thread, the
/// realtime relay on a scoped thread of its own (both on current-thread tokio runtimes).
pub(crate) fn run_controlled<L: Link + Send + 'static>(
    program: &Program,
    link: L,
    rx: mpsc::Receiver<Input>,
    journal: &mut Journal,
    cfg: &ExecuteConfig,
    control: Control<'_>,
) -> Result<ExecutionReport, MotionError> {
    let cpu0 = thread_cpu_s();
    let plunges = check_program(program)?;
    check_journal(program, journal, &plunges)?;
    let feed_rate_query = Some(cfg.marlin_feed_rate_query).filter(|p| !p.is_zero());
    let mut streamer = new_streamer(cfg.protocol, cfg.grbl(), cfg.marlin(), feed_rate_query);
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
    let Control { mut commands, observer } = control;
    let pump_rt = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(MotionError::Runtime)?;
    let relay_rt = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(MotionError::Runtime)?;
    let wire = Arc::new(Wire::new(link, cfg.protocol.has_realtime(), cfg.record_transcript));
    // Senders write to the wire from the start, not only once the relay thread is scheduled (a
    // loaded machine may start it late, and a pause must not wait for it).
    if let Some(rx) = commands.as_mut() {
        crate::wire::attach_direct(&wire, rx);
    }
    std::thread::scope(|scope| {
        let w = &wire;
        let _close = CloseOnDrop(w);
        let relay_thread = std::thread::Builder::new()
            .name("smp-motion-realtime".into())
            .spawn_scoped(scope, move || relay_rt.block_on(relay(w, commands)))
            .map_err(MotionError::Runtime)?;
        let result =
            pump_rt.block_on(run_pump(program, w, rx, journal, cfg, observer, streamer, sync_tag, plunges, cpu0));
        w.close();
        if relay_thread.join().is_err() {
            // Only reachable through a bug; the run's own result still stands.
            return result.map(|mut r| {
                r.errors.push("the realtime relay thread panicked".into());
                r
            });
        }
        result
    })
}

/// The pump's part of [`run_controlled`].
#[allow(clippy::too_many_arguments)]
async fn run_pump<L: Link>(
    program: &Program,
    wire: &Wire<L>,
    rx: mpsc::Receiver<Input>,
    journal: &mut Journal,
    cfg: &ExecuteConfig,
    observer: &mut dyn FnMut(ExecutorUpdate),
    streamer: Box<dyn HostStreamer>,
    sync_tag: Option<u64>,
    plunges: Vec<u32>,
    cpu0: f64,
) -> Result<ExecutionReport, MotionError> {
    let mut pump = Pump {
        program,
        wire,
        rx,
        journal,
        cfg,
        observer,
        streamer,
        sync_tag,
        sync_done: false,
        awaiting_sync: Vec::new(),
        sent_once: HashSet::new(),
        stop_request: None,
        operator_paused_at: None,
        guard: PauseGuard::default(),
        estop_during_stop: false,
        exec_state: ExecutorState::Connecting,
        t0: Instant::now(),
        cpu0,
        run: None,
        plunge_order: plunges,
        states: HashMap::new(),
        pending: Vec::new(),
        pending_durable: false,
        executed_pending: Vec::new(),
        report: ExecutionReport {
            lines_total: program.lines.len(),
            dots_total: 0,
            protocol: cfg.protocol.as_str().to_string(),
            ..ExecutionReport::default()
        },
        phase: Phase::Handshake,
        fault: None,
        port_dead: false,
        reset_seen: false,
        last_state: None,
        first_write: None,
        last_answer: None,
        txbuf: Vec::with_capacity(256),
        batch_lines: Vec::new(),
    };
    pump.report.dots_total = pump.plunge_order.len();
    (pump.observer)(ExecutorUpdate::State(ExecutorState::Connecting));
    let outcome = pump.run_all().await;
    pump.finalize_report();
    let end = match &outcome {
        Ok(()) => ExecutorState::Done,
        Err(MotionError::AbortedBeforeStart) => ExecutorState::Aborted,
        Err(MotionError::Fault(f)) if matches!(f.kind, FaultKind::Aborted { .. }) => ExecutorState::Aborted,
        Err(_) => ExecutorState::Fault,
    };
    pump.set_state(end);
    outcome.map(|()| pump.report)
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

fn check_journal(program: &Program, journal: &Journal, plunges: &[u32]) -> Result<(), MotionError> {
    let session = journal.session()?.meta.session;
    if session != program.session {
        return Err(MotionError::SessionMismatch { program: program.session, journal: session });
    }
    let mut not_planned = Vec::new();
    for &d in plunges {
        match journal.dot_state(d) {
            Ok(DotState::Planned) => {}
            Ok(s) => not_planned.push((d, s)),
            Err(StoreError::UnknownDot { .. }) => {
                return Err(MotionError::DotsNotPlanned {
                    count: 1,
                    examples: format!("dot {d} is not in the journal"),
                })
            }
            Err(e) => return Err(MotionError::Journal(e)),
        }
    }
    if !not_planned.is_empty() {
        return Err(MotionError::DotsNotPlanned { count: not_planned.len(), examples: dots_summary(&not_planned) });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first status report; nothing but realtime bytes goes out.
    Handshake,
    Streaming,
    /// Every line answered; waiting for Idle.
    Finishing,
    /// A fault stopped the stream; holding and flushing the controller.
    Stopping,
}

struct Pump<'a, L> {
    program: &'a Program,
    /// The write side, shared with the realtime relay.
    wire: &'a Wire<L>,
    rx: mpsc::Receiver<Input>,
    journal: &'a mut Journal,
    cfg: &'a ExecuteConfig,
    observer: &'a mut dyn FnMut(ExecutorUpdate),
    streamer: Box<dyn HostStreamer>,
    /// Tag of the appended `M400` (Marlin).
    sync_tag: Option<u64>,
    /// The appended `M400` was answered `ok`.
    sync_done: bool,
    /// Dots whose dwell was acknowledged as queued only (Marlin resend): confirmed by the next
    /// processed dwell or the final `M400`.
    awaiting_sync: Vec<u32>,
    /// Tags sent at least once (a Marlin resend sends a line again).
    sent_once: HashSet<u64>,
    /// Abort or emergency stop asked by the operator, acted on by the loop.
    stop_request: Option<FaultKind>,
    /// Since when the operator holds the run.
    operator_paused_at: Option<Instant>,
    /// The cartridge during operator pauses (grbl protocols; see `cartridge.rs`).
    guard: PauseGuard,
    /// An emergency stop arrived while stopping after a fault or abort (reset already sent).
    estop_during_stop: bool,
    exec_state: ExecutorState,
    t0: Instant,
    /// Thread CPU time at the start, for [`ExecutionReport::pump_cpu_s`].
    cpu0: f64,
    run: Option<RunId>,
    plunge_order: Vec<u32>,
    /// States of this program's dots as journaled (or about to be, see `pending`).
    states: HashMap<u32, DotState>,
    /// Transitions not committed yet, in order.
    pending: Vec<(u32, DotState)>,
    /// `pending` holds a `sent` or `executed`: commit before writing.
    pending_durable: bool,
    executed_pending: Vec<u32>,
    report: ExecutionReport,
    phase: Phase,
    fault: Option<FaultKind>,
    /// The reader reported a failure or stopped: no input will come any more.
    port_dead: bool,
    reset_seen: bool,
    last_state: Option<MachineState>,
    first_write: Option<Instant>,
    last_answer: Option<Instant>,
    txbuf: Vec<u8>,
    /// Lines put into `txbuf` by the last `poll_transmit`: (bytes with newline, the dot when
    /// it is that dot's plunge).
    batch_lines: Vec<(usize, Option<u32>)>,
}

/// Marlin's feed rate percentage as overrides: `M220` scales every move, rapids included;
/// Marlin has no spindle override in this sense.
fn marlin_overrides(percent: u16) -> Overrides {
    Overrides { feed_pct: percent, rapid_pct: percent, spindle_pct: 100 }
}

fn is_alarm(state: &MachineState) -> bool {
    matches!(state, MachineState::Alarm)
}

/// Removes the first occurrence of `bytes` from `buf` (bytes the operator path already wrote).
fn strip_once(buf: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() || bytes.len() > buf.len() {
        return;
    }
    if let Some(i) = buf.windows(bytes.len()).position(|w| w == bytes) {
        buf.drain(i..i + bytes.len());
    }
}

impl<L: Link> Pump<'_, L> {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn set_state(&mut self, state: ExecutorState) {
        if self.exec_state != state {
            self.exec_state = state;
            (self.observer)(ExecutorUpdate::State(state));
        }
    }

    fn progress(&mut self, dot: u32) {
        let p =
            Progress { dots_done: self.report.dots_executed, dots_total: self.report.dots_total, last_dot: Some(dot) };
        (self.observer)(ExecutorUpdate::Progress(p));
    }

    /// Fills the report's closing figures (idempotent: the transcript accumulates).
    fn finalize_report(&mut self) {
        self.report.wall_time_s = self.t0.elapsed().as_secs_f64();
        self.report.pump_cpu_s = (thread_cpu_s() - self.cpu0).max(0.0);
        self.report.transcript.extend(self.streamer.take_transcript());
        self.report.transcript.extend(self.wire.take_transcript());
        self.report.bytes_written = self.wire.bytes_written();
        let status = self.wire.status_figures();
        self.report.status_queries_streaming = status.queries;
        self.report.status_query_gap_max_s = status.max_gap_s;
    }

    fn now_s(&self) -> f64 {
        self.now().as_secs_f64()
    }

    async fn run_all(&mut self) -> Result<(), MotionError> {
        self.handshake().await?;
        if !self.cfg.protocol.has_realtime() {
            // Marlin: say what a pause is here rather than pretend to hold.
            let r = crate::run_on::pause_run_on(self.program, self.cfg.marlin_max_in_flight.max(1));
            self.report.pause_run_on = Some(r);
            if self.cfg.marlin_realtime_commands {
                self.warn(
                    "Marlin pause is P000 (quick pause): the steppers stop at once without deceleration (a needle in \
                     the skin stays there), a dwell already counting runs on, and the cartridge keeps running (Marlin \
                     has no realtime spindle stop)"
                        .into(),
                );
            } else {
                self.warn(format!(
                    "Marlin has no feed hold here: a pause stops sending, but the up to {} lines already sent run on \
                     (worst case in this program: {:.1} s and {:.1} mm of motion from line {}, with up to {} \
                     plunge(s){}), the cartridge running",
                    r.lines,
                    r.seconds,
                    r.travel_mm,
                    r.worst_line,
                    r.plunges,
                    if r.first_moves_uncounted {
                        "; not counting the first moves, from wherever the arm starts, which may run on longer"
                    } else {
                        ""
                    }
                ));
            }
        }
        let run = self.journal.begin_run().map_err(MotionError::Journal)?;
        self.run = Some(run);
        self.phase = Phase::Streaming;
        self.wire.set_status_period(Some(self.cfg.status_interval));
        if self.operator_paused_at.is_none() {
            self.streamer.resume();
            self.set_state(ExecutorState::Running);
        } else {
            // Paused during the handshake: lines wait for the operator's resume.
            self.set_state(ExecutorState::Paused);
        }
        if let Err(kind) = self.stream().await {
            return Err(self.stop_after_fault(kind).await);
        }
        self.finish().await;
        // No operator command is admitted from here on; those the operator path handled meanwhile are
        // applied now (an abort still flushes the controller, through the pump's writes).
        for f in self.wire.close() {
            self.apply_forwarded(f);
        }
        if let Some(kind) = self.stop_request.take() {
            // Aborted after the last answer: nothing is in flight, but the run is the operator's.
            return Err(self.stop_after_fault(kind).await);
        }
        self.end_operator_pause();
        let outcome = self.unconfirmed_to_uncertain();
        self.commit().map_err(|kind| self.fault_error_after_success(kind))?;
        if let Err(e) = self.journal.end_run(run, &outcome) {
            return Err(self.fault_error_after_success(FaultKind::Journal { detail: e.to_string() }));
        }
        Ok(())
    }

    /// A journal failure after every dot was executed: still a fault, nothing uncertain.
    fn fault_error_after_success(&mut self, kind: FaultKind) -> MotionError {
        self.finalize_report();
        MotionError::Fault(Box::new(FaultReport {
            kind,
            uncertain: Vec::new(),
            uncertain_journaled: false,
            controller_flushed: true,
            report: self.report.clone(),
        }))
    }

    /// Waits for a status report (optionally after a soft reset) and checks the state; for
    /// grbl then waits (bounded, [`ExecuteConfig::override_report_wait`]) for a report with the
    /// overrides and refuses to start unless feed and rapid are at 100 %.
    async fn handshake(&mut self) -> Result<(), MotionError> {
        let deadline = Instant::now() + self.cfg.handshake_timeout;
        if self.cfg.soft_reset_at_start {
            self.streamer.realtime(Realtime::SoftReset);
        }
        let mut next_query = Instant::now();
        // Set once the controller reported Idle: the end of the wait for its overrides.
        let mut override_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            match override_deadline {
                Some(d) if now >= d => {
                    self.warn(format!(
                        "no status report with overrides (Ov:) within {:.1} s of the handshake: overrides unchecked \
                         until the controller reports them",
                        self.cfg.override_report_wait.as_secs_f64()
                    ));
                    return Ok(());
                }
                None if now >= deadline => {
                    return Err(MotionError::NoController { waited_s: self.cfg.handshake_timeout.as_secs_f64() });
                }
                _ => {}
            }
            if now >= next_query {
                self.streamer.realtime(Realtime::StatusQuery);
                let period =
                    if override_deadline.is_some() { OVERRIDE_QUERY_PERIOD } else { Duration::from_millis(200) };
                next_query = now + period;
            }
            self.transmit_raw().map_err(|source| MotionError::Port { context: "handshake", source })?;
            let wake = next_query.min(override_deadline.unwrap_or(deadline));
            self.wait_input(Some(wake)).await;
            if let Some(FaultKind::PortIo { detail }) = self.fault.take() {
                return Err(MotionError::Port { context: "handshake", source: std::io::Error::other(detail) });
            }
            if self.stop_request.is_some() {
                // Written at once by the command handler: an emergency stop's reset byte.
                let _ = self.transmit_raw();
                self.report.aborted = true;
                return Err(MotionError::AbortedBeforeStart);
            }
            while let Some(ev) = self.streamer.poll_event() {
                match ev {
                    HostEvent::Ready => {
                        if self.report.last_overrides.is_none() {
                            self.warn(
                                "the controller did not report its feed rate percentage (M220) in the handshake: \
                                 unchecked until it does"
                                    .into(),
                            );
                        }
                        return Ok(());
                    }
                    HostEvent::FeedRate { percent } => {
                        self.record_overrides(marlin_overrides(percent));
                        if percent != 100 {
                            return Err(MotionError::OverrideActiveAtStart { feed_pct: percent, rapid_pct: percent });
                        }
                    }
                    HostEvent::Status(s) => {
                        self.report.status_reports += 1;
                        self.note_bad_fields(&s);
                        match s.state {
                            MachineState::Idle => {}
                            MachineState::Alarm => return Err(MotionError::AlarmAtStart),
                            other => return Err(MotionError::NotIdleAtStart { state: format!("{other:?}") }),
                        }
                        if let Some(o) = s.overrides {
                            self.record_overrides(o);
                            if !o.motion_as_programmed() {
                                return Err(MotionError::OverrideActiveAtStart {
                                    feed_pct: o.feed_pct,
                                    rapid_pct: o.rapid_pct,
                                });
                            }
                            return Ok(());
                        }
                        if self.cfg.override_report_wait.is_zero() {
                            return Ok(());
                        }
                        override_deadline.get_or_insert_with(|| Instant::now() + self.cfg.override_report_wait);
                    }
                    HostEvent::Alarm { text, .. } => {
                        if let Some(t) = text {
                            self.report.controller_messages.push(format!("ALARM:{t}"));
                        }
                        return Err(MotionError::AlarmAtStart);
                    }
                    HostEvent::Welcome { version } => self.report.controller_version = Some(version),
                    HostEvent::Message(m) => self.report.controller_messages.push(m),
                    HostEvent::Feedback { line, .. } => self.report.controller_messages.push(line),
                    HostEvent::Reset { .. } => {} // our own soft reset, or a reboot: nothing was sent
                    HostEvent::Unparsed(s) => self.unknown_line(s),
                    HostEvent::Note(n) => self.note(n),
                    other => self.report.errors.push(format!("before streaming: {other:?}")),
                }
            }
        }
    }

    /// Writes whatever the streamer wants to send, with no journal involvement (only valid
    /// while no line can be sent: handshake).
    fn transmit_raw(&mut self) -> std::io::Result<()> {
        self.txbuf.clear();
        let now = self.now();
        self.streamer.poll_transmit(now, &mut self.txbuf);
        if self.txbuf.is_empty() {
            return Ok(());
        }
        self.wire.write(&self.txbuf)?;
        Ok(())
    }

    /// The main loop; returns the first fault. Status queries are the relay's (see `wire.rs`).
    async fn stream(&mut self) -> Result<(), FaultKind> {
        loop {
            let now = self.now();
            self.streamer.handle_timeout(now);
            // A command the operator path wrote while this thread was busy (a commit) is applied
            // before the next poll, so a paused streamer gives out no further line.
            self.apply_all_forwarded();
            self.drain_events();
            if let Some(kind) = self.fault.take() {
                return Err(kind);
            }
            if let Some(kind) = self.stop_request.take() {
                return Err(kind);
            }
            self.transmit()?;
            if self.streamer.pending() == 0 {
                return Ok(());
            }
            let deadline = self.streamer.poll_timeout().map(|d| self.t0 + d);
            self.wait_input(deadline).await;
        }
    }

    /// poll_transmit, journal the lines it put in the buffer, and write. Bytes before the
    /// first plunge line of the batch go out at once (travel and approach lines depend on no
    /// journal state, and the controller may be starving for them); the rest, from that plunge
    /// on, only after the commit that makes its dot's `sent` durable. A batch without a plunge
    /// is written first and committed after (an `executed` gates no byte).
    fn transmit(&mut self) -> Result<(), FaultKind> {
        self.txbuf.clear();
        self.batch_lines.clear();
        let now = self.now();
        self.streamer.poll_transmit(now, &mut self.txbuf);
        self.drain_events();
        if let Some(kind) = self.fault.take() {
            return Err(kind);
        }
        // The buffer is the realtime bytes, then the lines of the `Sent` events, in order.
        let lines_bytes: usize = self.batch_lines.iter().map(|(len, _)| len).sum();
        if lines_bytes > self.txbuf.len() {
            // Inconsistent accounting: commit before writing anything (never a plunge early).
            if self.pending_durable {
                self.commit()?;
            }
            return self.write_range(0, self.txbuf.len());
        }
        let mut split = self.txbuf.len() - lines_bytes;
        let mut plunge_at = None;
        for (len, plunge) in &self.batch_lines {
            if let Some(d) = plunge {
                plunge_at = Some((split, *d));
                break;
            }
            split += len;
        }
        let split_at = plunge_at.map_or(self.txbuf.len(), |(at, _)| at).min(self.txbuf.len());
        self.write_range(0, split_at)?;
        if self.pending_durable {
            self.commit()?;
        }
        if let Some((_, dot)) = plunge_at {
            // The commit took time: what the controller said meanwhile (an override, an alarm)
            // is acted on before the plunge goes out, not after.
            self.poll_input_now();
            self.drain_events();
            if let Some(kind) = self.fault.take() {
                self.report.errors.push(format!(
                    "dot {dot}: its plunge line was held back by the fault and never written (journaled sent, so it \
                     is uncertain by rule; it did not run)"
                ));
                return Err(kind);
            }
        }
        self.write_range(split_at, self.txbuf.len())
    }

    fn write_range(&mut self, from: usize, to: usize) -> Result<(), FaultKind> {
        if from >= to {
            return Ok(());
        }
        if let Err(e) = self.wire.write(&self.txbuf[from..to]) {
            return Err(FaultKind::PortIo { detail: e.to_string() });
        }
        self.first_write.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Commits pending transitions (and the buffered command log) in one transaction, then
    /// reports progress for the dots that became executed.
    fn commit(&mut self) -> Result<(), FaultKind> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at_s = self.now_s();
        let t = Instant::now();
        let result = self.journal.set_dot_states(&self.pending, at_s);
        let dt = t.elapsed().as_secs_f64();
        self.report.journal_commits += 1;
        self.report.journal_commit_total_s += dt;
        self.report.journal_commit_max_s = self.report.journal_commit_max_s.max(dt);
        match result {
            Ok(()) => {
                self.pending.clear();
                self.pending_durable = false;
                for d in std::mem::take(&mut self.executed_pending) {
                    self.report.dots_executed += 1;
                    self.progress(d);
                }
                Ok(())
            }
            Err(e) => {
                // Dots whose `sent` was in the failed batch were never written: they stay
                // planned, in the journal and here. The rest of the batch is retried when the
                // fault is journaled.
                let failed = std::mem::take(&mut self.pending);
                for (d, s) in failed {
                    if s == DotState::Sent {
                        self.states.remove(&d);
                    } else {
                        self.pending.push((d, s));
                    }
                }
                let detail = e.to_string();
                Err(match e {
                    StoreError::IllegalTransition { .. } | StoreError::UnknownDot { .. } => {
                        FaultKind::JournalRefused { detail }
                    }
                    _ => FaultKind::Journal { detail },
                })
            }
        }
    }

    fn push(&mut self, dot: u32, state: DotState, durable: bool) {
        self.states.insert(dot, state);
        self.pending.push((dot, state));
        self.pending_durable |= durable;
    }

    /// Sets the fault unless one is already set (the first cause is the one reported).
    fn set_fault(&mut self, kind: FaultKind) {
        if self.phase == Phase::Stopping || self.fault.is_some() {
            self.report.errors.push(format!("after the fault: {kind}"));
        } else if self.wire.operator_stop() == Some(true) {
            // The operator's emergency stop went out from the operator's thread (grbl Ctrl-X,
            // Marlin `M112`), perhaps before this pump took the command: what the controller
            // says next (`ALARM:3`, the reset banner, lost answers) is that stop's echo, and
            // the stop is the fault.
            self.report.errors.push(format!("after the emergency stop: {kind}"));
            self.stop_request = Some(FaultKind::Aborted { emergency: true });
        } else {
            self.fault = Some(kind);
        }
    }

    /// A reset nobody asked for (a reset from elsewhere, a controller that restarted): grbl
    /// prints the `ok` of the dwell it interrupted just before its banner, so a dwell answered
    /// in the same read as the banner may have been cut short. Its `executed`, not yet
    /// committed, is taken back: the dot stays in flight and the fault journals it uncertain.
    /// (An `executed` committed before the banner arrived stays; the note names the limit.)
    fn revoke_uncommitted_executions(&mut self) {
        if !self.cfg.protocol.has_realtime() {
            return;
        }
        for d in std::mem::take(&mut self.executed_pending) {
            self.pending.retain(|&(p, s)| !(p == d && s == DotState::Executed));
            self.states.insert(d, DotState::Accepted);
            self.report.errors.push(format!(
                "dot {d}: its dwell was answered in the same read as the controller's reset banner; not taken as \
                 executed (uncertain, resolved by looking)"
            ));
        }
    }

    /// A stop has begun: a fault is set or being handled, the operator's abort or emergency
    /// stop was admitted (its bytes may be on the wire before this pump applied it), or the
    /// soft reset went out. From then on no answer confirms a dot executed (issue 20): on grbl
    /// the stop's feed hold and reset interrupt a dwell, which grbl still answers `ok`.
    /// Marlin's abort only stops feeding and lets the lines it holds run to completion, so
    /// there an `ok` keeps its meaning until an emergency stop (`M112`) kills the firmware.
    fn stop_begun(&self) -> bool {
        let operator = self.wire.operator_stop();
        if !self.cfg.protocol.has_realtime() {
            return operator == Some(true) || self.estop_during_stop;
        }
        self.phase == Phase::Stopping || self.fault.is_some() || self.stop_request.is_some() || operator.is_some()
    }

    fn line_text(&self, tag: u64) -> (usize, String) {
        let i = tag as usize;
        (i + 1, self.program.lines.get(i).map(|l| l.text.clone()).unwrap_or_default())
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.streamer.poll_event() {
            self.on_event(ev);
        }
    }

    fn unknown_line(&mut self, s: String) {
        self.report.unknown_lines_total += 1;
        if self.report.unknown_lines.len() < MAX_UNKNOWN_LINES_KEPT {
            self.report.unknown_lines.push(s);
        }
    }

    /// Dots whose dwell was only queued are confirmed by a later processed dwell or `M400`
    /// (the controller runs commands in order).
    fn confirm_awaiting(&mut self) {
        for d in std::mem::take(&mut self.awaiting_sync) {
            if self.states.get(&d) == Some(&DotState::Accepted) {
                self.push(d, DotState::Executed, true);
                self.executed_pending.push(d);
            }
        }
    }

    /// At the end of a run: a dot never confirmed executed (Marlin: dwell queued only, final
    /// `M400` not processed) is journaled uncertain, not executed. Returns the run outcome.
    fn unconfirmed_to_uncertain(&mut self) -> String {
        let open: Vec<u32> = self
            .plunge_order
            .iter()
            .copied()
            .filter(|d| matches!(self.states.get(d), Some(DotState::Sent | DotState::Accepted)))
            .collect();
        if open.is_empty() {
            return "completed".to_string();
        }
        self.report.errors.push(format!("{} dot(s) acknowledged but never confirmed executed: uncertain", open.len()));
        for &d in &open {
            self.push(d, DotState::Uncertain, true);
        }
        self.report.dots_uncertain = open;
        "completed with unconfirmed dots".to_string()
    }

    fn on_event(&mut self, ev: HostEvent) {
        let now_s = self.now_s();
        match ev {
            HostEvent::Sent { tag, wire_bytes } => {
                self.report.lines_sent += 1;
                let Some(line) = self.program.lines.get(tag as usize) else {
                    self.batch_lines.push((wire_bytes, None));
                    return;
                };
                let first = self.sent_once.insert(tag);
                let plunge = match (line.role, line.dot_id) {
                    (LineRole::Plunge, Some(d)) if first && !self.states.contains_key(&d) => Some(d),
                    _ => None,
                };
                self.batch_lines.push((wire_bytes, plunge));
                if let (Some(run), true) = (self.run, first) {
                    self.journal.log_command_sent(run, tag as u32 + 1, &line.text, line.dot_id, now_s);
                }
                if let Some(d) = plunge {
                    self.push(d, DotState::Sent, true);
                }
            }
            HostEvent::Accepted { tag } | HostEvent::Queued { tag } => {
                let processed = matches!(ev, HostEvent::Accepted { .. });
                self.last_answer = Some(Instant::now());
                if Some(tag) == self.sync_tag {
                    if processed {
                        self.sync_done = true;
                        self.confirm_awaiting();
                    }
                    return;
                }
                self.report.lines_acked += 1;
                if let Some(run) = self.run {
                    self.journal.log_command_answer(run, tag as u32 + 1, CommandResult::Ok, now_s);
                }
                let Some(line) = self.program.lines.get(tag as usize) else { return };
                match (line.role, line.dot_id) {
                    (LineRole::Plunge, Some(d)) if self.states.get(&d) == Some(&DotState::Sent) => {
                        self.push(d, DotState::Accepted, false);
                    }
                    (LineRole::Dwell, Some(d)) => {
                        if self.stop_begun() {
                            // grbl answers `ok` to a dwell that a soft reset cut short
                            // (protocol.c: the buffer synchronisation returns on abort and the
                            // line's `ok` is still printed), and a dwell held by the stop's feed
                            // hold never finished: after a stop has begun an `ok` proves nothing.
                            // The dot stays in flight and the stop journals it uncertain.
                            self.report.errors.push(format!(
                                "dot {d}: its dwell was answered after the stop began; not taken as executed \
                                 (uncertain, resolved by looking)"
                            ));
                        } else if self.states.get(&d) != Some(&DotState::Accepted) {
                            let state = self.states.get(&d).map_or("unknown", |s| s.as_str());
                            self.set_fault(FaultKind::Desync {
                                detail: format!("dwell of dot {d} answered while the dot is {state}"),
                            });
                        } else if processed {
                            self.confirm_awaiting();
                            self.push(d, DotState::Executed, true);
                            self.executed_pending.push(d);
                        } else {
                            self.awaiting_sync.push(d);
                        }
                    }
                    _ => {}
                }
            }
            HostEvent::Rejected { tag, code } => {
                self.last_answer = Some(Instant::now());
                if let Some(run) = self.run {
                    self.journal.log_command_answer(run, tag as u32 + 1, CommandResult::Error(code.into()), now_s);
                }
                let (line_no, text) = self.line_text(tag);
                self.set_fault(FaultKind::Rejected { line_no, text, code });
            }
            HostEvent::Alarm { code, text } => {
                if let Some(t) = text {
                    self.report.controller_messages.push(format!("ALARM:{t}"));
                }
                self.set_fault(FaultKind::Alarm { code });
            }
            HostEvent::Status(s) => {
                self.report.status_reports += 1;
                self.note_bad_fields(&s);
                self.check_overrides(&s);
                self.guard_cartridge(&s);
                if is_alarm(&s.state) && self.phase == Phase::Streaming {
                    self.set_fault(FaultKind::Alarm { code: None });
                }
                self.last_state = Some(s.state);
            }
            HostEvent::Ready => {}
            HostEvent::FeedRate { percent } => {
                // Marlin's M220 scales feeds and rapids alike: the same fault as grbl's `Ov:`.
                let o = marlin_overrides(percent);
                self.record_overrides(o);
                if percent != 100 && matches!(self.phase, Phase::Streaming | Phase::Finishing) {
                    self.streamer.pause();
                    self.set_fault(FaultKind::OverrideActive { feed_pct: percent, rapid_pct: percent });
                }
            }
            HostEvent::Message(m) => {
                if m == "Restoring spindle" {
                    self.cartridge_event(
                        CartridgeEventKind::Restored,
                        None,
                        "the controller restored the cartridge on the cycle start".into(),
                    );
                }
                self.report.controller_messages.push(m)
            }
            HostEvent::Feedback { line, .. } => self.report.controller_messages.push(line),
            HostEvent::Welcome { version } => {
                self.report.controller_version = Some(version);
                // A banner mid-stream is a restart even with nothing in flight (the core then
                // reports no `Reset`): position and modal state are gone.
                if matches!(self.phase, Phase::Streaming | Phase::Finishing) && !self.reset_seen {
                    self.reset_seen = true;
                    self.revoke_uncommitted_executions();
                    self.set_fault(FaultKind::ControllerReset);
                }
            }
            HostEvent::Reset { lost_tags } => {
                if !self.reset_seen && self.phase != Phase::Stopping {
                    self.revoke_uncommitted_executions();
                }
                self.reset_seen = true;
                if self.phase != Phase::Stopping {
                    self.set_fault(FaultKind::ControllerReset);
                } else if !lost_tags.is_empty() {
                    self.report.errors.push(format!("flushed {} line(s) from the controller", lost_tags.len()));
                }
            }
            HostEvent::AckTimeout { tag } => {
                let (line_no, text) = self.line_text(tag);
                self.set_fault(FaultKind::AckTimeout { line_no, text });
            }
            HostEvent::UnexpectedOk => {
                self.set_fault(FaultKind::Desync { detail: "`ok` with no line in flight".into() })
            }
            HostEvent::UnexpectedError { code } => {
                self.set_fault(FaultKind::Desync { detail: format!("`error:{code}` with no line in flight") })
            }
            HostEvent::Desync(detail) => self.set_fault(FaultKind::Desync { detail }),
            HostEvent::Note(n) => self.note(n),
            HostEvent::Unparsed(s) => self.unknown_line(s),
        }
    }

    /// The cartridge during an operator's pause: the pump's side of [`PauseGuard`] (see
    /// `cartridge.rs`). The bytes go through the operator gate, so a spindle stop never follows
    /// the `~` of its pause, and a repeated `~` never follows a new pause.
    fn guard_cartridge(&mut self, s: &StatusReport) {
        if !self.cfg.protocol.has_realtime() || self.phase == Phase::Stopping {
            return;
        }
        match self.guard.on_status(s, Instant::now()) {
            GuardAction::None => {}
            GuardAction::SendSpindleStop => match self.wire.write_if_paused(&[smp_gcode::SPINDLE_STOP_BYTE]) {
                Some(Ok(at)) => {
                    self.guard.stop_written(at);
                    let msg = "hold complete with the cartridge running: spindle stop (0x9E) sent".to_string();
                    self.cartridge_event(CartridgeEventKind::StopSent, Some(s), msg);
                }
                Some(Err(e)) => {
                    self.port_dead = true;
                    self.set_fault(FaultKind::PortIo { detail: e.to_string() });
                }
                None => self.guard.stop_not_sent(),
            },
            GuardAction::Stopped => {
                let msg = "cartridge stopped during the pause".to_string();
                self.cartridge_event(CartridgeEventKind::Stopped, Some(s), msg);
            }
            GuardAction::StillRunning => {
                let msg = format!(
                    "the cartridge still runs {:.1} s after the spindle stop: stop it by hand (the needle may be in \
                     the skin)",
                    crate::cartridge::STOP_CONFIRM_WINDOW.as_secs_f64()
                );
                self.warn(msg.clone());
                self.cartridge_event(CartridgeEventKind::StillRunning, Some(s), msg);
            }
            GuardAction::SendCycleStart => match self.wire.write_if_running(b"~") {
                Some(Ok(_)) => {
                    let msg = "controller still held after the resume (grbl drops a cycle start before the hold \
                               completes): cycle start sent again"
                        .to_string();
                    self.cartridge_event(CartridgeEventKind::CycleStartRepeated, Some(s), msg);
                }
                Some(Err(e)) => {
                    self.port_dead = true;
                    self.set_fault(FaultKind::PortIo { detail: e.to_string() });
                }
                None => {}
            },
        }
    }

    /// Records a cartridge event with the dot in flight and, for `xyz` programs, how far the
    /// tip is above that dot's plunge bottom.
    fn cartridge_event(&mut self, kind: CartridgeEventKind, s: Option<&StatusReport>, message: String) {
        // The oldest dot sent and not confirmed executed is the one the machine is at; later
        // plunges may already wait in the controller's buffer.
        let dot = self
            .plunge_order
            .iter()
            .copied()
            .find(|d| matches!(self.states.get(d), Some(DotState::Sent | DotState::Accepted)));
        let pos = s.and_then(|s| s.mpos.as_ref().or(s.wpos.as_ref())).map(|p| p.as_slice().to_vec());
        let above = match (dot, &pos) {
            (Some(d), Some(p)) if self.program_is_xyz() => {
                self.plunge_bottom_z(d).and_then(|z| p.get(2).map(|tip| tip - z))
            }
            _ => None,
        };
        let mut message = message;
        if let Some(d) = dot {
            message.push_str(&format!("; dot {d} in flight"));
        }
        match (above, &pos) {
            (Some(a), Some(p)) => {
                message.push_str(&format!(", tip at Z {:.3} mm, {a:.3} mm above its plunge bottom", p[2]));
            }
            (None, Some(p)) => message.push_str(&format!(", machine position {p:?}")),
            _ => {}
        }
        self.report.cartridge_events.push(CartridgeEvent {
            at_s: self.now_s(),
            kind,
            dot,
            machine_pos: pos,
            tip_above_plunge_bottom_mm: above,
            message,
        });
    }

    /// The program drives the needle tip in machine X Y Z (the `xyz` profile's header).
    fn program_is_xyz(&self) -> bool {
        self.program.lines.iter().take(8).any(|l| l.text.contains("profile xyz,"))
    }

    /// Machine Z of the dot's plunge line (its `Z` word).
    fn plunge_bottom_z(&self, dot: u32) -> Option<f64> {
        let line = self.program.lines.iter().find(|l| l.role == LineRole::Plunge && l.dot_id == Some(dot))?;
        let z = line.text.split_whitespace().find_map(|w| w.strip_prefix('Z'))?;
        z.parse().ok()
    }

    fn note(&mut self, n: String) {
        self.report.protocol_notes_total += 1;
        if self.report.protocol_notes.len() < MAX_PROTOCOL_NOTES_KEPT {
            self.report.protocol_notes.push(n);
        }
    }

    fn warn(&mut self, w: String) {
        if !self.report.warnings.contains(&w) {
            self.report.warnings.push(w);
        }
    }

    /// Status fields that did not parse: a protocol note each (the report's other fields
    /// were used).
    fn note_bad_fields(&mut self, s: &StatusReport) {
        for f in &s.bad_fields {
            self.note(format!("status report field unreadable: {f}"));
        }
    }

    /// Remembers the overrides and warns once per spindle override value other than 100 %.
    fn record_overrides(&mut self, o: Overrides) {
        let before = self.report.last_overrides.replace(o);
        if o.spindle_pct != 100 && before.map(|b| b.spindle_pct) != Some(o.spindle_pct) {
            self.warn(format!(
                "spindle (cartridge speed) override at {} % on the controller; the programmed speed is 100 %",
                o.spindle_pct
            ));
        }
    }

    /// Patient safety: the verifier proved the programmed feeds, and a feed or rapid override
    /// other than 100 % scales them (200 % doubles the plunge feed). Seen while lines flow,
    /// it stops the stream at once (the fault path holds, then flushes, the controller); an
    /// unreadable `Ov:` field is treated the same, the override being unknown.
    fn check_overrides(&mut self, s: &StatusReport) {
        if self.phase == Phase::Stopping {
            return;
        }
        let flowing = matches!(self.phase, Phase::Streaming | Phase::Finishing);
        if s.overrides_unreadable() && flowing {
            let field = s.bad_fields.iter().find(|f| f.starts_with("Ov:")).cloned().unwrap_or_default();
            self.streamer.pause();
            self.set_fault(FaultKind::OverrideUnreadable { field });
            return;
        }
        let Some(o) = s.overrides else { return };
        self.record_overrides(o);
        if !o.motion_as_programmed() && flowing {
            self.streamer.pause();
            self.set_fault(FaultKind::OverrideActive { feed_pct: o.feed_pct, rapid_pct: o.rapid_pct });
        }
    }

    /// Waits for input, a forwarded operator command or the deadline; hands received bytes to
    /// the streamer and applies forwarded commands.
    async fn wait_input(&mut self, deadline: Option<Instant>) {
        enum Woke {
            Input(Option<Input>),
            Command,
            Deadline,
        }
        let wire = self.wire;
        if self.port_dead {
            // No input will come; still honour the deadline's pacing for commands.
            if let Some(d) = deadline {
                tokio::select! {
                    _ = wire.forwarded_ready() => {}
                    _ = tokio::time::sleep_until(d.into()) => {}
                };
            }
            self.apply_all_forwarded();
            return;
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let d = deadline.unwrap_or(far);
        let woke = tokio::select! {
            biased;
            _ = wire.forwarded_ready() => Woke::Command,
            m = self.rx.recv() => Woke::Input(m),
            _ = tokio::time::sleep_until(d.into()) => Woke::Deadline,
        };
        let first = match woke {
            Woke::Deadline => return,
            Woke::Command => {
                self.apply_all_forwarded();
                return;
            }
            Woke::Input(m) => m,
        };
        if self.take_input(first) {
            self.poll_input_now();
        }
    }

    /// Hands what the reader sent to the streamer; false once the port is dead.
    fn take_input(&mut self, m: Option<Input>) -> bool {
        match m {
            Some(Input::Bytes(b)) => {
                self.report.bytes_read += b.len() as u64;
                self.wire.log_received(&b);
                let now = self.now();
                self.streamer.handle_received(&b, now);
                true
            }
            Some(Input::Failed(e)) => {
                self.port_dead = true;
                self.set_fault(FaultKind::PortIo { detail: e.to_string() });
                false
            }
            None => {
                self.port_dead = true;
                self.set_fault(FaultKind::PortIo { detail: "the port reader stopped".into() });
                false
            }
        }
    }

    /// Takes whatever input already arrived, without waiting.
    fn poll_input_now(&mut self) {
        if self.port_dead {
            return;
        }
        while let Ok(m) = self.rx.try_recv() {
            if !self.take_input(Some(m)) {
                return;
            }
        }
    }

    fn end_operator_pause(&mut self) {
        if let Some(at) = self.operator_paused_at.take() {
            self.report.paused_s += at.elapsed().as_secs_f64();
        }
    }

    /// Applies every command the operator path has handled since the last look, in order.
    fn apply_all_forwarded(&mut self) {
        for f in self.wire.take_forwarded() {
            self.apply_forwarded(f);
        }
    }

    /// The pump's side of an operator command the operator path (`wire.rs`) admitted (or refused) and whose bytes
    /// it already wrote: the streamer's bookkeeping (its own copy of those bytes is dropped,
    /// any other realtime byte it holds is written), state, report and observer.
    fn apply_forwarded(&mut self, f: Forwarded) {
        let Forwarded { command: cmd, received_at, applied, bytes, written_at, write_error } = f;
        if let Some(detail) = write_error {
            self.port_dead = true;
            self.set_fault(FaultKind::PortIo { detail });
        }
        if applied {
            // Once stopping, a pause or resume admitted just before can change nothing: the
            // pump is flushing the controller.
            let stopping = self.phase == Phase::Stopping;
            match cmd {
                OperatorCommand::Pause if !stopping => {
                    self.streamer.pause();
                    self.streamer.realtime(Realtime::FeedHold);
                    self.operator_paused_at = Some(received_at);
                    if self.cfg.protocol.has_realtime() {
                        self.guard.on_pause();
                    }
                    if self.phase != Phase::Handshake {
                        self.set_state(ExecutorState::Paused);
                    }
                    self.write_bookkeeping(&bytes);
                }
                OperatorCommand::Resume if !stopping => {
                    // The streamer learns of `~` while still paused, so no line rides along
                    // before the journal rules see it; lines flow from the next turn.
                    self.streamer.realtime(Realtime::CycleStart);
                    self.write_bookkeeping(&bytes);
                    self.end_operator_pause();
                    if self.cfg.protocol.has_realtime() {
                        self.guard.on_resume(written_at.unwrap_or(received_at));
                    }
                    if self.phase != Phase::Handshake {
                        self.streamer.resume();
                        self.set_state(ExecutorState::Running);
                    }
                }
                OperatorCommand::Pause | OperatorCommand::Resume => {}
                OperatorCommand::Abort => {
                    self.streamer.pause();
                    if self.cfg.protocol.has_realtime() {
                        // (Marlin: an abort drains the lines in flight, so no `P000`.)
                        self.streamer.realtime(Realtime::FeedHold);
                    }
                    if self.stop_request.is_none() {
                        self.stop_request = Some(FaultKind::Aborted { emergency: false });
                    }
                    self.write_bookkeeping(&bytes);
                }
                OperatorCommand::EmergencyStop => {
                    self.streamer.emergency_stop();
                    self.stop_request = Some(FaultKind::Aborted { emergency: true });
                    if self.phase == Phase::Stopping {
                        self.estop_during_stop = true;
                    }
                    self.write_bookkeeping(&bytes);
                }
            }
            if cmd != OperatorCommand::Resume {
                if let Some(w) = written_at {
                    let latency = w.duration_since(received_at).as_secs_f64();
                    self.report.feed_hold_latency_max_s = self.report.feed_hold_latency_max_s.max(latency);
                }
            }
        }
        self.record_command(cmd, received_at, written_at, applied);
    }

    fn record_command(
        &mut self,
        command: OperatorCommand,
        received_at: Instant,
        written_at: Option<Instant>,
        applied: bool,
    ) {
        self.report.operator_commands.push((command, applied));
        (self.observer)(ExecutorUpdate::Command(AppliedCommand { command, received_at, written_at, applied }));
    }

    /// Polls a paused streamer after an operator command's bookkeeping and writes what it
    /// emits (realtime bytes or their stand-ins, never a new line) except `already`, the bytes
    /// the operator path wrote for that command.
    fn write_bookkeeping(&mut self, already: &[u8]) {
        let mut buf = Vec::new();
        let now = self.now();
        self.streamer.poll_transmit(now, &mut buf);
        // Events of a paused poll (a Marlin resend probe's `Sent`) are journal-neutral, but
        // drained here so their bookkeeping stays in order.
        self.drain_events();
        strip_once(&mut buf, already);
        if buf.is_empty() {
            return;
        }
        if let Err(e) = self.wire.write(&buf) {
            self.port_dead = true;
            self.set_fault(FaultKind::PortIo { detail: e.to_string() });
        }
    }

    /// After the last answer: wait (bounded) for the controller to report Idle.
    async fn finish(&mut self) {
        self.phase = Phase::Finishing;
        // The wait for Idle polls faster on its own.
        self.wire.set_status_period(None);
        self.report.stream_time_s = match (self.first_write, self.last_answer) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        if self.sync_tag.is_some() {
            // Marlin: the appended M400 was the last line; its `ok` means every move is done.
            if !self.sync_done {
                self.report.errors.push("the final M400 was acknowledged only as queued, not processed".into());
            }
            return;
        }
        let mut deadline = Instant::now() + self.cfg.final_idle_timeout;
        self.last_state = None;
        // Polled at a fixed pace: waking on every reply would turn it into a ping-pong.
        let period = Duration::from_millis(50);
        let mut next_query = Instant::now();
        loop {
            if self.stop_request.is_some() {
                return;
            }
            if self.operator_paused_at.is_some() {
                // Held by the operator: the wait for Idle starts again at the resume.
                deadline = Instant::now() + self.cfg.final_idle_timeout;
            }
            if Instant::now() >= next_query {
                self.streamer.realtime(Realtime::StatusQuery);
                next_query = Instant::now() + period;
            }
            if let Err(kind) = self.transmit() {
                self.report.errors.push(format!("while waiting for Idle: {kind}"));
                return;
            }
            self.wait_input(Some(next_query.min(deadline))).await;
            self.drain_events();
            if let Some(kind) = self.fault.take() {
                self.report.errors.push(format!("after the last line: {kind}"));
                return;
            }
            match &self.last_state {
                Some(MachineState::Idle) => return,
                Some(MachineState::Alarm) => {
                    self.report.errors.push("controller in Alarm after the last line".into());
                    return;
                }
                _ => {}
            }
            if self.port_dead {
                self.report.errors.push("port failed while waiting for Idle".into());
                return;
            }
            if Instant::now() >= deadline {
                self.report.errors.push(format!(
                    "controller not Idle {:.1} s after the last line (last state {:?})",
                    self.cfg.final_idle_timeout.as_secs_f64(),
                    self.last_state
                ));
                return;
            }
        }
    }

    /// Holds and flushes the controller where it still listens, journals the dots in flight
    /// as uncertain, and builds the error.
    async fn stop_after_fault(&mut self, kind: FaultKind) -> MotionError {
        self.phase = Phase::Stopping;
        // From here only an emergency stop is admitted (never a resume of a controller being
        // flushed), and the relay's status queries stop: the flush polls on its own.
        self.wire.set_fault_stopping();
        self.apply_all_forwarded();
        self.end_operator_pause();
        let aborted = matches!(kind, FaultKind::Aborted { .. });
        self.report.aborted = aborted;
        self.report.stream_time_s = match (self.first_write, self.last_answer) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let dropped = self.streamer.clear_queue();
        self.streamer.pause();
        if !dropped.is_empty() {
            self.report.errors.push(format!("{} queued line(s) not sent", dropped.len()));
        }
        let port_alive = !matches!(kind, FaultKind::PortIo { .. });
        let mut flushed = matches!(kind, FaultKind::ControllerReset) && self.streamer.in_flight() == 0;
        if port_alive && !flushed {
            flushed = if self.cfg.protocol.has_realtime() {
                let emergency = kind == FaultKind::Aborted { emergency: true };
                self.hold_and_flush(emergency).await
            } else {
                self.drain_in_flight().await
            };
        }
        // Journal what is known: answers that arrived, then every dot still in flight.
        let mut uncertain = Vec::new();
        for &d in &self.plunge_order {
            if matches!(self.states.get(&d), Some(DotState::Sent | DotState::Accepted)) {
                uncertain.push(d);
            }
        }
        let mut changes = std::mem::take(&mut self.pending);
        let executed_now = std::mem::take(&mut self.executed_pending);
        changes.extend(uncertain.iter().map(|&d| (d, DotState::Uncertain)));
        let at_s = self.now_s();
        let journaled = match self.journal.set_dot_states(&changes, at_s) {
            Ok(()) => {
                for d in executed_now {
                    self.report.dots_executed += 1;
                    self.progress(d);
                }
                true
            }
            Err(e) => {
                self.report.errors.push(format!("journaling the fault failed: {e}"));
                false
            }
        };
        if let Some(run) = self.run {
            let outcome = if aborted { format!("aborted: {kind}") } else { format!("stopped: {kind}") };
            if let Err(e) = self.journal.end_run(run, &outcome) {
                self.report.errors.push(format!("ending the run in the journal failed: {e}"));
            }
        }
        self.report.dots_uncertain = uncertain.clone();
        self.finalize_report();
        MotionError::Fault(Box::new(FaultReport {
            kind,
            uncertain,
            uncertain_journaled: journaled,
            controller_flushed: flushed,
            report: self.report.clone(),
        }))
    }

    /// Feed hold, wait until the machine stopped, then soft reset to flush the controller's
    /// buffers so that nothing of this program can run later. Returns whether the banner
    /// confirmed the reset. With `emergency` the soft reset already went out (no hold first).
    async fn hold_and_flush(&mut self, emergency: bool) -> bool {
        let settle = self.cfg.fault_settle;
        if !emergency {
            self.streamer.realtime(Realtime::FeedHold);
        }
        self.last_state = None;
        let deadline = Instant::now() + settle;
        let period = Duration::from_millis(20);
        let mut next_query = Instant::now();
        while !emergency && !self.estop_during_stop {
            // (an operator's emergency stop meanwhile has already sent the reset)
            if Instant::now() >= next_query {
                self.streamer.realtime(Realtime::StatusQuery);
                next_query = Instant::now() + period;
            }
            if self.send_during_stop().is_err() {
                return false;
            }
            self.wait_input(Some(next_query.min(deadline))).await;
            self.drain_events();
            if self.port_dead {
                return false;
            }
            let stopped =
                matches!(self.last_state, Some(MachineState::Hold(0) | MachineState::Idle | MachineState::Alarm))
                    || self.last_state.as_ref().is_some_and(is_alarm);
            if stopped || self.reset_seen || Instant::now() >= deadline {
                break;
            }
        }
        if !self.reset_seen && !emergency && !self.estop_during_stop {
            self.streamer.realtime(Realtime::SoftReset);
            if self.send_during_stop().is_err() {
                return false;
            }
        }
        let deadline = Instant::now() + settle;
        while !self.reset_seen && Instant::now() < deadline {
            self.wait_input(Some(deadline)).await;
            self.drain_events();
            if self.port_dead {
                return false;
            }
        }
        // Answers that raced the reset are in; commit them with the fault below.
        self.reset_seen
    }

    /// Marlin has neither feed hold nor soft reset: with nothing more fed, wait (bounded) for
    /// the lines in the controller to be answered. Returns whether all were.
    async fn drain_in_flight(&mut self) -> bool {
        let deadline = Instant::now() + self.cfg.fault_settle.max(self.cfg.ack_timeout);
        while self.streamer.in_flight() > 0 && Instant::now() < deadline {
            if self.send_during_stop().is_err() {
                return false;
            }
            self.wait_input(Some(deadline)).await;
            self.drain_events();
            if self.port_dead {
                return false;
            }
        }
        self.streamer.in_flight() == 0
    }

    /// Transmit while stopping: only realtime bytes can go out (the queue is empty and paused).
    fn send_during_stop(&mut self) -> Result<(), ()> {
        self.txbuf.clear();
        let now = self.now();
        self.streamer.poll_transmit(now, &mut self.txbuf);
        if self.txbuf.is_empty() {
            return Ok(());
        }
        match self.wire.write(&self.txbuf) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.report.errors.push(format!("writing to the controller after the fault failed: {e}"));
                Err(())
            }
        }
    }
}

/// CPU time of the calling thread, seconds (Linux `/proc/thread-self/stat`; 0 elsewhere).
fn thread_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return 0.0 };
    // Fields after the `(comm)` part: state is field 3; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 Hz on every Linux this runs on (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests;

//! The executor's public face: [`execute`] streams a verified program over a serial port (or
//! pty), with the sans-I/O [`crate::core::ExecutorCore`] deciding and the live driver
//! (`driver.rs`) moving bytes. The rules the core keeps:
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use smp_core::plan::DotState;
use smp_gcode::{Overrides, Program, VerifiedProgram};
use smp_store::{Journal, StoreError};
use tokio::sync::mpsc;

use crate::cartridge::CartridgeEvent;
use crate::control::{Control, ExecutorUpdate, OperatorCommand};
use crate::core::ExecutorCore;
use crate::error::{dots_summary, MotionError};
use crate::link::{Input, Link, Reader};
use crate::protocol::Protocol;
use crate::wire::{relay, Wire};

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
    /// When the run started on the wall clock (live runs): the times in [`AppliedCommand`] and
    /// in the core are measured from here.
    ///
    /// [`AppliedCommand`]: crate::AppliedCommand
    pub started: Option<Instant>,
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

/// The executor over any [`Link`], with operator control: the core driven on this thread,
/// the realtime relay (operator commands, status queries) on a scoped thread of its own (both
/// on current-thread tokio runtimes).
pub(crate) fn run_controlled<L: Link + Send + 'static>(
    program: &Program,
    link: L,
    rx: mpsc::Receiver<Input>,
    journal: &mut Journal,
    cfg: &ExecuteConfig,
    control: Control<'_>,
) -> Result<ExecutionReport, MotionError> {
    let cpu0 = thread_cpu_s();
    let plunges = ExecutorCore::plunge_order(program)?;
    check_journal(program, journal, &plunges)?;
    let core = ExecutorCore::new(program, cfg)?;
    let Control { mut commands, observer } = control;
    let pump_rt = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(MotionError::Runtime)?;
    let relay_rt = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(MotionError::Runtime)?;
    let t0 = Instant::now();
    let wire = Arc::new(Wire::new(link, cfg.protocol.has_realtime(), cfg.record_transcript, t0));
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
        let (mut result, figures) = pump_rt.block_on(crate::driver::drive(core, w, rx, journal, observer, t0));
        w.close();
        crate::driver::add_figures(&mut result, &figures, w, t0, (thread_cpu_s() - cpu0).max(0.0));
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

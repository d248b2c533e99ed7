//! The run, phase by phase: handshake, streaming with the journal rules, finishing, and (in
//! `stop.rs`) the stop after a fault. Written as one async function over [`Ctx`]: every wait
//! is for the core's own inbox (see `io.rs`), so this is pure logic.
//!
//! Journal rules, in the order the bytes flow:
//! - every line is queued in the (paused) streamer up front, so a line the controller cannot
//!   take is refused before the first byte goes out;
//! - the streamer reports `Sent { tag }` for the lines it put into the transmit buffer; for a
//!   `Plunge` line the dot becomes `sent`, and that is committed (`synchronous = FULL`) before
//!   the plunge line's bytes are written (the lines before it in the same batch go out first,
//!   so the fsync overlaps the controller's work). Should the commit fail, nothing from the
//!   plunge on is written;
//! - the plunge's `ok` makes the dot `accepted`. That state is informational (the dot is in
//!   the controller's planner, which a fault treats exactly like `sent`), so it is not
//!   committed on its own: it rides along with the next durable commit;
//! - the `ok` of the dot's `Dwell` line (a `G4`, answered only after the plunge finished)
//!   makes it `executed`, committed before the next byte is written; progress is reported
//!   then. Once a stop has begun no answer confirms a dot (see [`Pump::stop_begun`]);
//! - all changes of one turn go in one transaction: typically one commit per dot.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use smp_core::plan::DotState;
use smp_gcode::{HostEvent, HostStreamer, MachineState, Overrides, Program, Realtime};
use smp_store::StoreError;

use super::io::{Action, Ctx, Input, JournalOp};
use crate::cartridge::{GuardAction, PauseGuard};
use crate::control::{ExecutorState, ExecutorUpdate};
use crate::error::{FaultKind, FaultReport, MotionError};
use crate::executor::{ExecuteConfig, ExecutionReport, Progress};

/// Received lines nobody interprets kept verbatim in the report (the rest are counted).
const MAX_UNKNOWN_LINES_KEPT: usize = 200;
/// Protocol notes kept in the report (the rest are counted): a controller that sends one bad
/// status field at 8 Hz must not grow the report without bound.
const MAX_PROTOCOL_NOTES_KEPT: usize = 200;
/// Status query period while the handshake waits for a report with overrides (`Ov:`).
const OVERRIDE_QUERY_PERIOD: Duration = Duration::from_millis(25);
/// Status query period of the handshake before the first report.
const HANDSHAKE_QUERY_PERIOD: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the first status report; nothing but realtime bytes goes out.
    Handshake,
    Streaming,
    /// Every line answered; waiting for Idle.
    Finishing,
    /// A fault stopped the stream; holding and flushing the controller.
    Stopping,
}

/// The run's state. Fields are shared by the `impl` blocks of this module's siblings.
pub(super) struct Pump {
    pub(super) ctx: Ctx,
    pub(super) program: Program,
    pub(super) cfg: ExecuteConfig,
    pub(super) streamer: Box<dyn HostStreamer>,
    /// Tag of the appended `M400` (Marlin).
    pub(super) sync_tag: Option<u64>,
    /// The appended `M400` was answered `ok`.
    pub(super) sync_done: bool,
    /// Dots whose dwell was acknowledged as queued only (Marlin resend): confirmed by the next
    /// processed dwell or the final `M400`.
    pub(super) awaiting_sync: Vec<u32>,
    /// Tags sent at least once (a Marlin resend sends a line again).
    pub(super) sent_once: HashSet<u64>,
    /// Abort or emergency stop asked by the operator, acted on by the loop.
    pub(super) stop_request: Option<FaultKind>,
    /// Since when the operator holds the run.
    pub(super) operator_paused_at: Option<Duration>,
    /// The cartridge during operator pauses (grbl protocols; see `cartridge.rs`).
    pub(super) guard: PauseGuard,
    /// Guard actions decided while reading events, done at the next await point.
    pub(super) guard_pending: Vec<(GuardAction, smp_gcode::StatusReport)>,
    /// An emergency stop arrived while stopping after a fault or abort (reset already sent).
    pub(super) estop_during_stop: bool,
    pub(super) exec_state: ExecutorState,
    /// A run record is open in the journal.
    pub(super) run_open: bool,
    pub(super) plunge_order: Vec<u32>,
    /// States of this program's dots as journaled (or about to be, see `pending`).
    pub(super) states: HashMap<u32, DotState>,
    /// Transitions not committed yet, in order.
    pub(super) pending: Vec<(u32, DotState)>,
    /// `pending` holds a `sent` or `executed`: commit before writing.
    pub(super) pending_durable: bool,
    pub(super) executed_pending: Vec<u32>,
    pub(super) report: ExecutionReport,
    pub(super) phase: Phase,
    pub(super) fault: Option<FaultKind>,
    /// The port failed: no input will come any more.
    pub(super) port_dead: bool,
    pub(super) reset_seen: bool,
    pub(super) last_state: Option<MachineState>,
    pub(super) first_write: Option<Duration>,
    pub(super) last_answer: Option<Duration>,
    pub(super) txbuf: Vec<u8>,
    /// `xyz` programs: each dot's plunge bottom in machine X Y Z (cartridge events).
    pub(super) plunge_bottoms: HashMap<u32, [f64; 3]>,
    /// Lines put into `txbuf` by the last `poll_transmit`: (bytes with newline, the dot when
    /// it is that dot's plunge).
    pub(super) batch_lines: Vec<(usize, Option<u32>)>,
}

/// Marlin's feed rate percentage as overrides: `M220` scales every move, rapids included;
/// Marlin has no spindle override in this sense.
pub(super) fn marlin_overrides(percent: u16) -> Overrides {
    Overrides { feed_pct: percent, rapid_pct: percent, spindle_pct: 100 }
}

impl Pump {
    pub(super) fn new(
        ctx: Ctx,
        program: Program,
        cfg: ExecuteConfig,
        streamer: Box<dyn HostStreamer>,
        sync_tag: Option<u64>,
        plunges: Vec<u32>,
    ) -> Pump {
        let report = ExecutionReport {
            lines_total: program.lines.len(),
            dots_total: plunges.len(),
            protocol: cfg.protocol.as_str().to_string(),
            ..ExecutionReport::default()
        };
        Pump {
            ctx,
            program,
            cfg,
            streamer,
            sync_tag,
            sync_done: false,
            awaiting_sync: Vec::new(),
            sent_once: HashSet::new(),
            stop_request: None,
            operator_paused_at: None,
            guard: PauseGuard::default(),
            guard_pending: Vec::new(),
            estop_during_stop: false,
            exec_state: ExecutorState::Connecting,
            run_open: false,
            plunge_order: plunges,
            states: HashMap::new(),
            pending: Vec::new(),
            pending_durable: false,
            executed_pending: Vec::new(),
            report,
            phase: Phase::Handshake,
            fault: None,
            port_dead: false,
            reset_seen: false,
            last_state: None,
            first_write: None,
            last_answer: None,
            txbuf: Vec::with_capacity(256),
            batch_lines: Vec::new(),
            plunge_bottoms: HashMap::new(),
        }
    }

    /// The whole run: its report, or why it did not start or did not finish.
    pub(super) async fn run(mut self) -> Result<ExecutionReport, MotionError> {
        self.update(ExecutorUpdate::State(ExecutorState::Connecting));
        let outcome = self.run_all().await;
        self.finalize_report();
        let end = match &outcome {
            Ok(()) => ExecutorState::Done,
            Err(MotionError::AbortedBeforeStart) => ExecutorState::Aborted,
            Err(MotionError::Fault(f)) if matches!(f.kind, FaultKind::Aborted { .. }) => ExecutorState::Aborted,
            Err(_) => ExecutorState::Fault,
        };
        self.set_state(end);
        outcome.map(|()| self.report)
    }

    pub(super) fn now(&self) -> Duration {
        self.ctx.now()
    }

    pub(super) fn now_s(&self) -> f64 {
        self.now().as_secs_f64()
    }

    pub(super) fn update(&self, u: ExecutorUpdate) {
        self.ctx.push(Action::Update(u));
    }

    pub(super) fn set_state(&mut self, state: ExecutorState) {
        if self.exec_state != state {
            self.exec_state = state;
            self.update(ExecutorUpdate::State(state));
        }
    }

    fn progress(&mut self, dot: u32) {
        let p =
            Progress { dots_done: self.report.dots_executed, dots_total: self.report.dots_total, last_dot: Some(dot) };
        self.update(ExecutorUpdate::Progress(p));
    }

    /// Counts the dots whose `executed` is now durable and reports their progress.
    pub(super) fn executed_committed(&mut self, dots: Vec<u32>) {
        for d in dots {
            self.report.dots_executed += 1;
            self.progress(d);
        }
    }

    /// The core's part of the closing figures (the driver adds the wire's).
    pub(super) fn finalize_report(&mut self) {
        self.report.transcript.extend(self.streamer.take_transcript());
    }

    /// Writes bytes (the driver reports a failed write as port input).
    pub(super) fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.ctx.push(Action::Write(bytes.to_vec()));
    }

    async fn run_all(&mut self) -> Result<(), MotionError> {
        self.handshake().await?;
        if !self.cfg.protocol.has_realtime() {
            self.warn_marlin_pause();
        }
        self.ctx.journal(JournalOp::BeginRun).await.map_err(MotionError::Journal)?;
        self.run_open = true;
        self.phase = Phase::Streaming;
        self.ctx.push(Action::StatusPeriod(Some(self.cfg.status_interval)));
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
        // No operator command is admitted from here on; those the operator path handled
        // meanwhile are applied now (an abort still flushes the controller, through the core's
        // writes).
        self.ctx.close_gate().await;
        self.apply_all_forwarded();
        if let Some(kind) = self.stop_request.take() {
            // Aborted after the last answer: nothing is in flight, but the run is the operator's.
            return Err(self.stop_after_fault(kind).await);
        }
        self.end_operator_pause();
        let outcome = self.unconfirmed_to_uncertain();
        if let Err(kind) = self.commit().await {
            return Err(self.fault_error_after_success(kind));
        }
        if let Err(e) = self.ctx.journal(JournalOp::EndRun { outcome }).await {
            return Err(self.fault_error_after_success(FaultKind::Journal { detail: e.to_string() }));
        }
        Ok(())
    }

    /// Marlin: say what a pause is here rather than pretend to hold.
    fn warn_marlin_pause(&mut self) {
        let r = crate::run_on::pause_run_on(&self.program, self.cfg.marlin_max_in_flight.max(1));
        self.report.pause_run_on = Some(r);
        if self.cfg.marlin_realtime_commands {
            self.warn(
                "Marlin pause is P000 (quick pause): the steppers stop at once without deceleration (a needle in the \
                 skin stays there), a dwell already counting runs on, and the cartridge keeps running (Marlin has no \
                 realtime spindle stop)"
                    .into(),
            );
        } else {
            self.warn(format!(
                "Marlin has no feed hold here: a pause stops sending, but the up to {} lines already sent run on \
                 (worst case in this program: {:.1} s and {:.1} mm of motion from line {}, with up to {} plunge(s){}), \
                 the cartridge running",
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
        let deadline = self.now() + self.cfg.handshake_timeout;
        if self.cfg.soft_reset_at_start {
            self.streamer.realtime(Realtime::SoftReset);
        }
        let mut next_query = self.now();
        // Set once the controller reported Idle: the end of the wait for its overrides.
        let mut override_deadline: Option<Duration> = None;
        loop {
            let now = self.now();
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
                let period = if override_deadline.is_some() { OVERRIDE_QUERY_PERIOD } else { HANDSHAKE_QUERY_PERIOD };
                next_query = now + period;
            }
            self.transmit_raw();
            let wake = next_query.min(override_deadline.unwrap_or(deadline));
            self.wait_input(Some(wake)).await;
            if let Some(FaultKind::PortIo { detail }) = self.fault.take() {
                return Err(MotionError::Port { context: "handshake", source: std::io::Error::other(detail) });
            }
            if self.stop_request.is_some() {
                // Written at once by the command handler: an emergency stop's reset byte.
                self.transmit_raw();
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
                        let now = self.now();
                        override_deadline.get_or_insert(now + self.cfg.override_report_wait);
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
    /// while no line can be sent: handshake, stopping).
    pub(super) fn transmit_raw(&mut self) {
        self.txbuf.clear();
        let now = self.now();
        self.streamer.poll_transmit(now, &mut self.txbuf);
        let bytes = std::mem::take(&mut self.txbuf);
        self.write(&bytes);
        self.txbuf = bytes;
    }

    /// The main loop; returns the first fault. Status queries are the relay's (see `wire.rs`).
    async fn stream(&mut self) -> Result<(), FaultKind> {
        loop {
            let now = self.now();
            self.streamer.handle_timeout(now);
            // A command the operator path wrote while the driver was busy (a commit) is applied
            // before the next poll, so a paused streamer gives out no further line.
            self.apply_all_forwarded();
            self.drain().await;
            if let Some(kind) = self.fault.take() {
                return Err(kind);
            }
            if let Some(kind) = self.stop_request.take() {
                return Err(kind);
            }
            self.transmit().await?;
            if self.streamer.pending() == 0 {
                return Ok(());
            }
            let deadline = self.streamer.poll_timeout();
            self.wait_input(deadline).await;
        }
    }

    /// poll_transmit, journal the lines it put in the buffer, and write. Bytes before the
    /// first plunge line of the batch go out at once (travel and approach lines depend on no
    /// journal state, and the controller may be starving for them); the rest, from that plunge
    /// on, only after the commit that makes its dot's `sent` durable. A batch without a plunge
    /// is written first and committed after (an `executed` gates no byte).
    pub(super) async fn transmit(&mut self) -> Result<(), FaultKind> {
        self.txbuf.clear();
        self.batch_lines.clear();
        let now = self.now();
        self.streamer.poll_transmit(now, &mut self.txbuf);
        self.drain().await;
        if let Some(kind) = self.fault.take() {
            return Err(kind);
        }
        let buf = std::mem::take(&mut self.txbuf);
        let result = self.transmit_batch(&buf).await;
        self.txbuf = buf;
        result
    }

    async fn transmit_batch(&mut self, buf: &[u8]) -> Result<(), FaultKind> {
        // The buffer is the realtime bytes, then the lines of the `Sent` events, in order.
        let lines_bytes: usize = self.batch_lines.iter().map(|(len, _)| len).sum();
        if lines_bytes > buf.len() {
            // Inconsistent accounting: commit before writing anything (never a plunge early).
            if self.pending_durable {
                self.commit().await?;
            }
            self.write_lines(buf);
            return Ok(());
        }
        let mut split = buf.len() - lines_bytes;
        let mut plunge_at = None;
        for (len, plunge) in &self.batch_lines {
            if let Some(d) = plunge {
                plunge_at = Some((split, *d));
                break;
            }
            split += len;
        }
        let split_at = plunge_at.map_or(buf.len(), |(at, _)| at).min(buf.len());
        self.write_lines(&buf[..split_at]);
        if self.pending_durable {
            self.commit().await?;
        }
        if let Some((_, dot)) = plunge_at {
            // The commit took time: what the controller said meanwhile (an override, an alarm)
            // is acted on before the plunge goes out, not after.
            self.poll_input_now();
            self.drain().await;
            if let Some(kind) = self.fault.take() {
                self.report.errors.push(format!(
                    "dot {dot}: its plunge line was held back by the fault and never written (journaled sent, so it \
                     is uncertain by rule; it did not run)"
                ));
                return Err(kind);
            }
        }
        self.write_lines(&buf[split_at..]);
        Ok(())
    }

    fn write_lines(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.write(bytes);
        let now = self.now();
        self.first_write.get_or_insert(now);
    }

    /// Commits pending transitions (and the buffered command log) in one transaction, then
    /// reports progress for the dots that became executed.
    pub(super) async fn commit(&mut self) -> Result<(), FaultKind> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at_s = self.now_s();
        let changes = self.pending.clone();
        match self.ctx.journal(JournalOp::SetStates { changes, at_s }).await {
            Ok(()) => {
                self.pending.clear();
                self.pending_durable = false;
                let done = std::mem::take(&mut self.executed_pending);
                self.executed_committed(done);
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

    pub(super) fn push(&mut self, dot: u32, state: DotState, durable: bool) {
        self.states.insert(dot, state);
        self.pending.push((dot, state));
        self.pending_durable |= durable;
    }

    /// Waits for input, a forwarded operator command or the deadline; hands received bytes to
    /// the streamer and applies forwarded commands (commands first: a feed hold is booked
    /// before the answers that arrived with it).
    pub(super) async fn wait_input(&mut self, deadline: Option<Duration>) {
        if self.port_dead && deadline.is_none() {
            // No input will come and nothing to wait for: only pick up commands.
            self.apply_all_forwarded();
            return;
        }
        self.ctx.wait(deadline).await;
        self.apply_all_forwarded();
        self.poll_input_now();
    }

    /// Hands one input to the streamer; false once the port is dead.
    fn take_input(&mut self, m: Input) -> bool {
        match m {
            Input::Bytes(b) => {
                self.report.bytes_read += b.len() as u64;
                let now = self.now();
                self.streamer.handle_received(&b, now);
                true
            }
            Input::Failed(detail) => {
                self.port_dead = true;
                self.set_fault(FaultKind::PortIo { detail });
                false
            }
        }
    }

    /// Takes whatever input already arrived, without waiting.
    pub(super) fn poll_input_now(&mut self) {
        if self.port_dead {
            // Drop what a dead port still delivered: nothing more is read.
            while self.ctx.take_input().is_some() {}
            return;
        }
        while let Some(m) = self.ctx.take_input() {
            if !self.take_input(m) {
                return;
            }
        }
    }

    /// Reads the streamer's events, then does what they decided that needs an answer (the
    /// cartridge guard's gated writes).
    pub(super) async fn drain(&mut self) {
        self.drain_events();
        self.run_guard().await;
    }

    pub(super) fn drain_events(&mut self) {
        while let Some(ev) = self.streamer.poll_event() {
            self.on_event(ev);
        }
    }

    pub(super) fn end_operator_pause(&mut self) {
        if let Some(at) = self.operator_paused_at.take() {
            let now = self.now();
            self.report.paused_s += now.saturating_sub(at).as_secs_f64();
        }
    }

    pub(super) fn unknown_line(&mut self, s: String) {
        self.report.unknown_lines_total += 1;
        if self.report.unknown_lines.len() < MAX_UNKNOWN_LINES_KEPT {
            self.report.unknown_lines.push(s);
        }
    }

    pub(super) fn note(&mut self, n: String) {
        self.report.protocol_notes_total += 1;
        if self.report.protocol_notes.len() < MAX_PROTOCOL_NOTES_KEPT {
            self.report.protocol_notes.push(n);
        }
    }

    pub(super) fn warn(&mut self, w: String) {
        if !self.report.warnings.contains(&w) {
            self.report.warnings.push(w);
        }
    }
}

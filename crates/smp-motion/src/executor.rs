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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use smp_core::plan::DotState;
use smp_gcode::{GrblConfig, GrblEvent, GrblStreamer, LineRole, MachineState, Program, Realtime, VerifiedProgram};
use smp_store::{CommandResult, Journal, RunId, StoreError};
use tokio::sync::mpsc;

use crate::error::{dots_summary, FaultKind, FaultReport, MotionError};
use crate::link::{Input, Link, Reader};

/// Settings of a run. Times are wall-clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteConfig {
    /// The controller's serial receive buffer (grbl: 128).
    pub rx_buffer_bytes: usize,
    /// Longest wait for the answer to the oldest line in flight before the run is stopped.
    /// Must exceed the longest single block at the controller's real speed.
    pub ack_timeout: Duration,
    /// Period of `?` status queries while streaming (`Duration::ZERO` disables them).
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
}

impl Default for ExecuteConfig {
    fn default() -> Self {
        ExecuteConfig {
            rx_buffer_bytes: 128,
            ack_timeout: Duration::from_secs(20),
            status_interval: Duration::from_millis(250),
            handshake_timeout: Duration::from_secs(5),
            soft_reset_at_start: false,
            fault_settle: Duration::from_secs(2),
            final_idle_timeout: Duration::from_secs(30),
            read_poll: Duration::from_millis(20),
            write_timeout: Duration::from_secs(1),
            record_transcript: false,
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
            record_transcript: self.record_transcript,
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
    /// `[MSG:...]` lines from the controller.
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
    let mut port = port;
    port.set_timeout(cfg.write_timeout).map_err(|e| MotionError::Port {
        context: "setting the write timeout",
        source: std::io::Error::other(e.to_string()),
    })?;
    let (tx, rx) = mpsc::channel(256);
    let reader = Reader::spawn(&port, cfg.read_poll, tx)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(MotionError::Runtime)?;
    // `run` owns `rx` and drops it on return, so a reader blocked on a full channel wakes up.
    let result = runtime.block_on(run(program.program(), &mut port, rx, journal, cfg, progress));
    reader.stop();
    result
}

/// The executor over any [`Link`]; `rx` carries what the controller sends.
pub(crate) async fn run<L: Link>(
    program: &Program,
    link: &mut L,
    rx: mpsc::Receiver<Input>,
    journal: &mut Journal,
    cfg: &ExecuteConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<ExecutionReport, MotionError> {
    let cpu0 = thread_cpu_s();
    let plunges = check_program(program)?;
    check_journal(program, journal, &plunges)?;
    let mut streamer = GrblStreamer::new(cfg.grbl());
    streamer.pause();
    for (i, line) in program.lines.iter().enumerate() {
        streamer
            .queue_line(&line.text, i as u64)
            .map_err(|e| MotionError::BadProgram { line_no: i + 1, problem: e.to_string() })?;
    }
    let mut pump = Pump {
        program,
        link,
        rx,
        journal,
        cfg,
        progress,
        streamer,
        t0: Instant::now(),
        cpu0,
        run: None,
        plunge_order: plunges,
        states: HashMap::new(),
        pending: Vec::new(),
        pending_durable: false,
        executed_pending: Vec::new(),
        report: ExecutionReport { lines_total: program.lines.len(), dots_total: 0, ..ExecutionReport::default() },
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
    let outcome = pump.run_all().await;
    pump.finalize_report();
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
    link: &'a mut L,
    rx: mpsc::Receiver<Input>,
    journal: &'a mut Journal,
    cfg: &'a ExecuteConfig,
    progress: &'a mut dyn FnMut(Progress),
    streamer: GrblStreamer,
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
    /// Lines put into `txbuf` by the last `poll_transmit`: (bytes with newline, is a plunge).
    batch_lines: Vec<(usize, bool)>,
}

impl<L: Link> Pump<'_, L> {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Fills the report's closing figures (idempotent: the transcript accumulates).
    fn finalize_report(&mut self) {
        self.report.wall_time_s = self.t0.elapsed().as_secs_f64();
        self.report.pump_cpu_s = (thread_cpu_s() - self.cpu0).max(0.0);
        self.report.transcript.extend(self.streamer.take_transcript());
    }

    fn now_s(&self) -> f64 {
        self.now().as_secs_f64()
    }

    async fn run_all(&mut self) -> Result<(), MotionError> {
        self.handshake().await?;
        let run = self.journal.begin_run().map_err(MotionError::Journal)?;
        self.run = Some(run);
        self.phase = Phase::Streaming;
        self.streamer.resume();
        if let Err(kind) = self.stream().await {
            return Err(self.stop_after_fault(kind).await);
        }
        self.finish().await;
        let outcome = "completed".to_string();
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

    /// Waits for a status report (optionally after a soft reset) and checks the state.
    async fn handshake(&mut self) -> Result<(), MotionError> {
        let deadline = Instant::now() + self.cfg.handshake_timeout;
        if self.cfg.soft_reset_at_start {
            self.streamer.realtime(Realtime::SoftReset);
        }
        let mut next_query = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(MotionError::NoController { waited_s: self.cfg.handshake_timeout.as_secs_f64() });
            }
            if now >= next_query {
                self.streamer.realtime(Realtime::StatusQuery);
                next_query = now + Duration::from_millis(200);
            }
            self.transmit_raw().map_err(|source| MotionError::Port { context: "handshake", source })?;
            self.wait_input(Some(next_query.min(deadline))).await;
            if let Some(FaultKind::PortIo { detail }) = self.fault.take() {
                return Err(MotionError::Port { context: "handshake", source: std::io::Error::other(detail) });
            }
            while let Some(ev) = self.streamer.poll_event() {
                match ev {
                    GrblEvent::Status(s) => {
                        self.report.status_reports += 1;
                        return match s.state {
                            MachineState::Idle => Ok(()),
                            MachineState::Alarm => Err(MotionError::AlarmAtStart),
                            other => Err(MotionError::NotIdleAtStart { state: format!("{other:?}") }),
                        };
                    }
                    GrblEvent::Alarm { .. } => return Err(MotionError::AlarmAtStart),
                    GrblEvent::Welcome { version } => self.report.controller_version = Some(version),
                    GrblEvent::Message(m) => self.report.controller_messages.push(m),
                    GrblEvent::Reset { .. } => {} // our own soft reset, or a reboot: nothing was sent
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
        self.link.send(&self.txbuf)?;
        self.report.bytes_written += self.txbuf.len() as u64;
        Ok(())
    }

    /// The main loop; returns the first fault.
    async fn stream(&mut self) -> Result<(), FaultKind> {
        let mut next_status = (self.cfg.status_interval > Duration::ZERO).then(Instant::now);
        loop {
            let now = self.now();
            self.streamer.handle_timeout(now);
            if let Some(at) = next_status {
                if Instant::now() >= at {
                    self.streamer.realtime(Realtime::StatusQuery);
                    next_status = Some(Instant::now() + self.cfg.status_interval);
                }
            }
            self.drain_events();
            if let Some(kind) = self.fault.take() {
                return Err(kind);
            }
            self.transmit()?;
            if self.streamer.pending() == 0 {
                return Ok(());
            }
            let deadline = [self.streamer.poll_timeout().map(|d| self.t0 + d), next_status].into_iter().flatten().min();
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
        let mut split = self.txbuf.len().saturating_sub(lines_bytes);
        let mut plunge_at = None;
        for (len, plunge) in &self.batch_lines {
            if *plunge {
                plunge_at = Some(split);
                break;
            }
            split += len;
        }
        let split = plunge_at.unwrap_or(self.txbuf.len()).min(self.txbuf.len());
        self.write_range(0, split)?;
        if self.pending_durable {
            self.commit()?;
        }
        self.write_range(split, self.txbuf.len())
    }

    fn write_range(&mut self, from: usize, to: usize) -> Result<(), FaultKind> {
        if from >= to {
            return Ok(());
        }
        if let Err(e) = self.link.send(&self.txbuf[from..to]) {
            return Err(FaultKind::PortIo { detail: e.to_string() });
        }
        self.first_write.get_or_insert_with(Instant::now);
        self.report.bytes_written += (to - from) as u64;
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
                    (self.progress)(Progress {
                        dots_done: self.report.dots_executed,
                        dots_total: self.report.dots_total,
                        last_dot: Some(d),
                    });
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
        } else {
            self.fault = Some(kind);
        }
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

    fn on_event(&mut self, ev: GrblEvent) {
        let now_s = self.now_s();
        match ev {
            GrblEvent::Sent { tag } => {
                let Some(line) = self.program.lines.get(tag as usize) else { return };
                self.report.lines_sent += 1;
                let is_plunge = line.role == LineRole::Plunge && line.dot_id.is_some();
                self.batch_lines.push((line.text.len() + 1, is_plunge));
                if let Some(run) = self.run {
                    self.journal.log_command_sent(run, tag as u32 + 1, &line.text, line.dot_id, now_s);
                }
                if let (LineRole::Plunge, Some(d)) = (line.role, line.dot_id) {
                    self.push(d, DotState::Sent, true);
                }
            }
            GrblEvent::Accepted { tag } => {
                self.last_answer = Some(Instant::now());
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
                        if self.states.get(&d) == Some(&DotState::Accepted) {
                            self.push(d, DotState::Executed, true);
                            self.executed_pending.push(d);
                        } else {
                            let state = self.states.get(&d).map_or("unknown", |s| s.as_str());
                            self.set_fault(FaultKind::Desync {
                                detail: format!("dwell of dot {d} answered while the dot is {state}"),
                            });
                        }
                    }
                    _ => {}
                }
            }
            GrblEvent::Rejected { tag, code } => {
                self.last_answer = Some(Instant::now());
                if let Some(run) = self.run {
                    self.journal.log_command_answer(run, tag as u32 + 1, CommandResult::Error(code.into()), now_s);
                }
                let (line_no, text) = self.line_text(tag);
                self.set_fault(FaultKind::Rejected { line_no, text, code });
            }
            GrblEvent::Alarm { code } => self.set_fault(FaultKind::Alarm { code: Some(code) }),
            GrblEvent::Status(s) => {
                self.report.status_reports += 1;
                if s.state == MachineState::Alarm && self.phase == Phase::Streaming {
                    self.set_fault(FaultKind::Alarm { code: None });
                }
                self.last_state = Some(s.state);
            }
            GrblEvent::Message(m) => self.report.controller_messages.push(m),
            GrblEvent::Welcome { version } => self.report.controller_version = Some(version),
            GrblEvent::Reset { lost_tags } => {
                self.reset_seen = true;
                if self.phase != Phase::Stopping {
                    self.set_fault(FaultKind::ControllerReset);
                } else if !lost_tags.is_empty() {
                    self.report.errors.push(format!("flushed {} line(s) from the controller", lost_tags.len()));
                }
            }
            GrblEvent::AckTimeout { tag } => {
                let (line_no, text) = self.line_text(tag);
                self.set_fault(FaultKind::AckTimeout { line_no, text });
            }
            GrblEvent::UnexpectedOk => {
                self.set_fault(FaultKind::Desync { detail: "`ok` with no line in flight".into() })
            }
            GrblEvent::UnexpectedError { code } => {
                self.set_fault(FaultKind::Desync { detail: format!("`error:{code}` with no line in flight") })
            }
            GrblEvent::Unparsed(s) => self.report.errors.push(format!("unparsed reply `{s}`")),
        }
    }

    /// Waits for input or the deadline; hands received bytes to the streamer.
    async fn wait_input(&mut self, deadline: Option<Instant>) {
        if self.port_dead {
            return;
        }
        let msg = match deadline {
            Some(d) => {
                tokio::select! {
                    m = self.rx.recv() => Some(m),
                    _ = tokio::time::sleep_until(d.into()) => None,
                }
            }
            None => Some(self.rx.recv().await),
        };
        let Some(first) = msg else { return };
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Some(Input::Bytes(b)) => {
                    self.report.bytes_read += b.len() as u64;
                    let now = self.now();
                    self.streamer.handle_received(&b, now);
                }
                Some(Input::Failed(e)) => {
                    self.port_dead = true;
                    self.set_fault(FaultKind::PortIo { detail: e.to_string() });
                    return;
                }
                None => {
                    self.port_dead = true;
                    self.set_fault(FaultKind::PortIo { detail: "the port reader stopped".into() });
                    return;
                }
            }
            next = self.rx.try_recv().ok().map(Some);
        }
    }

    /// After the last answer: wait (bounded) for the controller to report Idle.
    async fn finish(&mut self) {
        self.phase = Phase::Finishing;
        self.report.stream_time_s = match (self.first_write, self.last_answer) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let deadline = Instant::now() + self.cfg.final_idle_timeout;
        self.last_state = None;
        // Polled at a fixed pace: waking on every reply would turn it into a ping-pong.
        let period = Duration::from_millis(50);
        let mut next_query = Instant::now();
        loop {
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
            flushed = self.hold_and_flush().await;
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
                self.report.dots_executed += executed_now.len();
                for d in executed_now {
                    (self.progress)(Progress {
                        dots_done: self.report.dots_executed,
                        dots_total: self.report.dots_total,
                        last_dot: Some(d),
                    });
                }
                true
            }
            Err(e) => {
                self.report.errors.push(format!("journaling the fault failed: {e}"));
                false
            }
        };
        if let Some(run) = self.run {
            if let Err(e) = self.journal.end_run(run, &format!("stopped: {kind}")) {
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
    /// confirmed the reset.
    async fn hold_and_flush(&mut self) -> bool {
        let settle = self.cfg.fault_settle;
        self.streamer.realtime(Realtime::FeedHold);
        self.last_state = None;
        let deadline = Instant::now() + settle;
        let period = Duration::from_millis(20);
        let mut next_query = Instant::now();
        loop {
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
                matches!(self.last_state, Some(MachineState::Hold(0) | MachineState::Idle | MachineState::Alarm));
            if stopped || self.reset_seen || Instant::now() >= deadline {
                break;
            }
        }
        if !self.reset_seen {
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

    /// Transmit while stopping: only realtime bytes can go out (the queue is empty and paused).
    fn send_during_stop(&mut self) -> Result<(), ()> {
        self.txbuf.clear();
        let now = self.now();
        self.streamer.poll_transmit(now, &mut self.txbuf);
        if self.txbuf.is_empty() {
            return Ok(());
        }
        match self.link.send(&self.txbuf) {
            Ok(()) => {
                self.report.bytes_written += self.txbuf.len() as u64;
                Ok(())
            }
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

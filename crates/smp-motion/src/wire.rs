//! The write side of the link, shared by the pump and the realtime relay, and the relay itself.
//!
//! Why: the pump commits the journal (an SQLite fsync, up to tens of milliseconds) before it
//! writes a plunge line. An operator's feed hold taken by the pump would wait behind that
//! commit. So operator commands never go to the pump first: the operator's
//! [`crate::UnboundedSender::send`] itself admits the command and writes its realtime byte,
//! in the sender's thread (no thread wake-up, which on a loaded machine costs milliseconds),
//! and only then forwards it to the pump, which does the bookkeeping (pauses its streamer,
//! records the command) whenever it next looks. Commands sent before the run starts wait in
//! the channel; the relay thread applies them, in order, as it attaches.
//!
//! Writers ([`Wire`]): the pump writes lines (and its own realtime bytes) through the port
//! handle under the `lines` lock, held for that one write only, never across a journal
//! commit. grbl realtime bytes from the operator and the relay's status queries go through a
//! second handle on the same port (`try_clone`) under their own lock, so they never wait for
//! a line write, nor for a pump thread preempted in the middle of one; the kernel puts them
//! between two writes, which grbl allows (its serial interrupt picks realtime bytes out of the
//! stream anywhere). Marlin's `M112` is a line, so it takes the `lines` lock and can never land
//! inside another line. The transcript records each write once it completed: realtime bytes
//! in their exact order, and relative to a line written in the same microseconds, in the order
//! of logging.
//!
//! Ordering guarantees, as grbl expects of realtime bytes:
//! - a feed hold `!` (or soft reset 0x18) from the operator may overtake line bytes the pump
//!   has queued or is about to write: grbl takes realtime bytes off the wire in its serial
//!   interrupt, ahead of its line buffer, so lines behind it wait in the buffer, held;
//! - operator commands are admitted and written one at a time, under the state lock, in the
//!   order `send` was called: a resume `~` never overtakes the hold it ends, and nothing is
//!   resumed once the pump is stopping after a fault (the admission [`Gate`] refuses it);
//! - line bytes are written only by the pump, after their journal commit (unchanged).
//!
//! The relay also sends the periodic status query `?` while streaming, so status keeps flowing
//! at the configured rate while the pump is busy in a commit or waiting through a long dwell.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::control::{next_command, DirectSink, OperatorCommand, UnboundedReceiver};
use crate::link::Link;

/// Longest received line kept in the transcript while waiting for its newline.
const MAX_LOG_LINE_BYTES: usize = 512;

/// Who may still act, decided under the state lock so that the operator and the pump agree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Held by the operator (a pause admitted and no resume yet).
    pub paused: bool,
    /// The operator asked to stop: `Some(emergency)`.
    pub stop: Option<bool>,
    /// The pump is stopping after a fault (holds and flushes the controller itself).
    pub fault_stopping: bool,
    /// The run is over: no operator command is admitted any more.
    pub closed: bool,
}

impl Gate {
    /// Whether `cmd` applies now, updating the gate when it does.
    pub fn admit(&mut self, cmd: OperatorCommand) -> bool {
        if self.closed {
            return false;
        }
        let stopping = self.stop.is_some() || self.fault_stopping;
        let ok = match cmd {
            OperatorCommand::Pause => !stopping && !self.paused,
            OperatorCommand::Resume => !stopping && self.paused,
            OperatorCommand::Abort => !stopping,
            OperatorCommand::EmergencyStop => self.stop != Some(true),
        };
        if ok {
            match cmd {
                OperatorCommand::Pause => self.paused = true,
                OperatorCommand::Resume => self.paused = false,
                OperatorCommand::Abort => self.stop = Some(false),
                OperatorCommand::EmergencyStop => self.stop = Some(true),
            }
        }
        ok
    }
}

/// An operator command as the gate handled it, waiting for the core's bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    pub command: OperatorCommand,
    /// When the operator's command reached the gate, since the run started.
    pub received_at: Duration,
    pub applied: bool,
    /// The bytes the relay wrote for it (empty when none: not applied, or Marlin pause).
    pub bytes: Vec<u8>,
    /// When those bytes were written, since the run started.
    pub written_at: Option<Duration>,
    /// The write failed: the port is gone.
    pub write_error: Option<String>,
}

/// The bytes that carry `cmd` on the wire: grbl's realtime bytes; for Marlin only the
/// emergency stop (`M112`, a whole line) has any (see `protocol.rs`).
pub fn command_bytes(cmd: OperatorCommand, realtime: bool) -> &'static [u8] {
    match (cmd, realtime) {
        (OperatorCommand::Pause | OperatorCommand::Abort, true) => b"!",
        (OperatorCommand::Resume, true) => b"~",
        (OperatorCommand::EmergencyStop, true) => b"\x18",
        (OperatorCommand::EmergencyStop, false) => b"M112\n",
        (_, false) => b"",
    }
}

fn realtime_name(b: u8) -> Option<&'static str> {
    match b {
        b'?' => Some("?"),
        b'!' => Some("!"),
        b'~' => Some("~"),
        0x18 => Some("^X"),
        smp_gcode::SPINDLE_STOP_BYTE => Some("SpindleStop"),
        _ => None,
    }
}

/// The transcript of the bytes exchanged: `> ` lines and realtime bytes (by name) in wire
/// order, `< ` lines as the pump took them.
#[derive(Debug, Default)]
struct WireLog {
    entries: Vec<String>,
    tx_partial: Vec<u8>,
    rx_partial: Vec<u8>,
}

impl WireLog {
    fn sent(&mut self, bytes: &[u8], realtime: bool) {
        for &b in bytes {
            match (b, realtime.then(|| realtime_name(b)).flatten()) {
                (_, Some(name)) => self.entries.push(format!("> {name}")),
                (b'\n', None) => {
                    let line = std::mem::take(&mut self.tx_partial);
                    self.entries.push(format!("> {}", String::from_utf8_lossy(&line).trim_end()));
                }
                (_, None) => self.tx_partial.push(b),
            }
        }
    }

    fn received(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' || self.rx_partial.len() >= MAX_LOG_LINE_BYTES {
                let line = std::mem::take(&mut self.rx_partial);
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if !text.is_empty() {
                    self.entries.push(format!("< {text}"));
                }
                if b == b'\n' {
                    continue;
                }
            }
            self.rx_partial.push(b);
        }
    }
}

/// Figures of the status queries the relay sent while streaming.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct StatusFigures {
    pub(crate) queries: u64,
    pub(crate) max_gap_s: f64,
}

/// Everything but the ports; never held across a line write.
struct State {
    /// Whether the protocol has grbl's realtime bytes.
    realtime: bool,
    gate: Gate,
    forwarded: VecDeque<Forwarded>,
    /// Period of the relay's `?` queries; `None`: the relay sends none.
    status_period: Option<Duration>,
    status: StatusFigures,
    last_status_at: Option<Instant>,
    log: Option<WireLog>,
    bytes_written: u64,
}

impl State {
    fn wrote(&mut self, bytes: &[u8]) {
        self.bytes_written += bytes.len() as u64;
        if let Some(log) = &mut self.log {
            log.sent(bytes, self.realtime);
        }
    }
}

/// The shared write side; see the module docs.
pub(crate) struct Wire<L> {
    state: Mutex<State>,
    /// The pump's port handle (lines, and its own realtime bytes).
    lines: Mutex<L>,
    /// A second handle on the same port for grbl's realtime bytes from the operator and the
    /// relay, so that they never wait for a line write (nor for a pump thread preempted in the
    /// middle of one). `None` when the link cannot be cloned: then they share `lines`.
    rt: Option<Mutex<Box<dyn Link + Send>>>,
    /// Wakes the pump: a forwarded command is waiting.
    pump_wake: Notify,
    /// Wakes the relay: the status period changed, or the run is over.
    relay_wake: Notify,
    /// `forwarded` is not empty (checked without the lock).
    has_forwarded: AtomicBool,
    /// A transcript is kept (checked without the lock).
    recording: bool,
    /// When the run started: operator times are handed to the core relative to it.
    t0: Instant,
}

/// Takes a lock over when poisoned: a writer that panicked leaves the port usable, and a feed
/// hold must still go out.
fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<L: Link> Wire<L> {
    pub(crate) fn new(link: L, realtime: bool, record: bool, t0: Instant) -> Self {
        let rt = if realtime { link.realtime_clone().map(Mutex::new) } else { None };
        Wire {
            state: Mutex::new(State {
                realtime,
                gate: Gate::default(),
                forwarded: VecDeque::new(),
                status_period: None,
                status: StatusFigures::default(),
                last_status_at: None,
                log: record.then(WireLog::default),
                bytes_written: 0,
            }),
            lines: Mutex::new(link),
            rt,
            pump_wake: Notify::new(),
            relay_wake: Notify::new(),
            has_forwarded: AtomicBool::new(false),
            recording: record,
            t0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Writes operator or relay bytes: grbl realtime bytes on the realtime handle; Marlin's
    /// `M112`, a whole line, through the line handle so that it can never land inside another
    /// line. The port's lock is taken while `st` (the state lock) is still held and the state
    /// lock is released for the write itself (lock coupling): writes keep the order in which
    /// they were decided, and the pump never waits on the state lock for a write syscall.
    fn write_urgent(&self, st: MutexGuard<'_, State>, bytes: &[u8]) -> std::io::Result<Instant> {
        let realtime = st.realtime;
        let result = match (&self.rt, realtime) {
            (Some(rt), true) => {
                let mut port = lock(rt);
                drop(st);
                port.send(bytes)
            }
            _ => {
                let mut port = lock(&self.lines);
                drop(st);
                port.send(bytes)
            }
        };
        let at = Instant::now();
        result?;
        self.lock().wrote(bytes);
        Ok(at)
    }

    /// Writes bytes for the pump (lines already journaled, or realtime bytes of its own).
    pub(crate) fn write(&self, bytes: &[u8]) -> std::io::Result<Instant> {
        lock(&self.lines).send(bytes)?;
        let at = Instant::now();
        self.lock().wrote(bytes);
        Ok(at)
    }

    /// Records received bytes in the transcript.
    pub(crate) fn log_received(&self, bytes: &[u8]) {
        if !self.recording {
            return;
        }
        if let Some(log) = &mut self.lock().log {
            log.received(bytes);
        }
    }

    pub(crate) fn take_transcript(&self) -> Vec<String> {
        self.lock().log.as_mut().map(|l| std::mem::take(&mut l.entries)).unwrap_or_default()
    }

    pub(crate) fn bytes_written(&self) -> u64 {
        self.lock().bytes_written
    }

    pub(crate) fn status_figures(&self) -> StatusFigures {
        self.lock().status
    }

    /// Commands the relay has written (or refused) and the pump has not yet applied.
    pub(crate) fn take_forwarded(&self) -> Vec<Forwarded> {
        if !self.has_forwarded.load(Ordering::Acquire) {
            return Vec::new(); // the pump's hot path: no lock taken when nothing waits
        }
        let mut g = self.lock();
        self.has_forwarded.store(false, Ordering::Release);
        g.forwarded.drain(..).collect()
    }

    pub(crate) async fn forwarded_ready(&self) {
        self.pump_wake.notified().await;
    }

    /// Starts (or stops, with `None`) the relay's periodic status queries.
    pub(crate) fn set_status_period(&self, period: Option<Duration>) {
        let mut g = self.lock();
        g.status_period = period.filter(|p| !p.is_zero() && g.realtime);
        g.last_status_at = None;
        drop(g);
        self.relay_wake.notify_one();
    }

    /// The pump stops after a fault: from now on only an emergency stop is admitted.
    pub(crate) fn set_fault_stopping(&self) {
        let mut g = self.lock();
        g.gate.fault_stopping = true;
        g.status_period = None;
        drop(g);
        self.relay_wake.notify_one();
    }

    /// Ends the run: nothing more is written, the relay exits. Returns the commands that were
    /// handled after the pump last looked.
    pub(crate) fn close(&self) -> Vec<Forwarded> {
        let mut g = self.lock();
        g.gate.closed = true;
        g.status_period = None;
        let left = g.forwarded.drain(..).collect();
        drop(g);
        self.relay_wake.notify_one();
        left
    }

    /// The relay's handling of an operator command: admit, write its bytes at once, forward.
    pub(crate) fn operator_command(&self, command: OperatorCommand, received_at: Instant) {
        let mut g = self.lock();
        if g.gate.closed {
            return;
        }
        let applied = g.gate.admit(command);
        let bytes = if applied { command_bytes(command, g.realtime).to_vec() } else { Vec::new() };
        let (written_at, write_error, mut g) = if bytes.is_empty() {
            (None, None, g)
        } else {
            // The state lock is released for the write (see `write_urgent`) and taken again.
            let result = self.write_urgent(g, &bytes);
            let (at, err) = match result {
                Ok(at) => (Some(at), None),
                Err(e) => (None, Some(e.to_string())),
            };
            (at, err, self.lock())
        };
        let since = |t: Instant| t.saturating_duration_since(self.t0);
        let (received_at, written_at) = (since(received_at), written_at.map(since));
        g.forwarded.push_back(Forwarded { command, received_at, applied, bytes, written_at, write_error });
        self.has_forwarded.store(true, Ordering::Release);
        drop(g);
        self.pump_wake.notify_one();
    }

    /// Writes the pump's realtime `bytes` only while the operator's pause is in force (admitted,
    /// no resume yet, nothing stopping), decided under the state lock like an operator command:
    /// the spindle stop of a pause can then never follow the `~` that ends that pause.
    /// `None` when the gate said no (nothing written).
    pub(crate) fn write_if_paused(&self, bytes: &[u8]) -> Option<std::io::Result<Instant>> {
        let g = self.lock();
        let gate = g.gate;
        if !(g.realtime && gate.paused && gate.stop.is_none() && !gate.fault_stopping && !gate.closed) {
            return None;
        }
        Some(self.write_urgent(g, bytes))
    }

    /// Writes the pump's realtime `bytes` only while the run is not paused nor stopping (e.g. a
    /// cycle start again after a resume that grbl dropped because its hold was not complete).
    pub(crate) fn write_if_running(&self, bytes: &[u8]) -> Option<std::io::Result<Instant>> {
        let g = self.lock();
        let gate = g.gate;
        if !(g.realtime && !gate.paused && gate.stop.is_none() && !gate.fault_stopping && !gate.closed) {
            return None;
        }
        Some(self.write_urgent(g, bytes))
    }

    /// Sends a status query if one is due; returns when the next one is.
    fn status_tick(&self, now: Instant) -> Option<Instant> {
        let g = self.lock();
        let period = g.status_period?;
        if g.gate.closed {
            return None;
        }
        let due = g.last_status_at.map_or(now, |t| t + period);
        if now < due {
            return Some(due);
        }
        let sent = self.write_urgent(g, b"?");
        let mut g = self.lock();
        if sent.is_err() {
            // The pump sees the port fail on its own next write or read.
            g.status_period = None;
            return None;
        }
        if let Some(prev) = g.last_status_at {
            g.status.max_gap_s = g.status.max_gap_s.max(now.duration_since(prev).as_secs_f64());
        }
        g.status.queries += 1;
        g.last_status_at = Some(now);
        Some(now + period)
    }

    fn closed(&self) -> bool {
        self.lock().gate.closed
    }

    /// The operator's stop as admitted (and its bytes written): `Some(emergency)`.
    pub(crate) fn operator_stop(&self) -> Option<bool> {
        self.lock().gate.stop
    }
}

/// From now on the operator's senders write to `wire` from their own thread (commands already
/// waiting are applied first, in order). Attaching again is harmless.
pub(crate) fn attach_direct<L: Link + Send + 'static>(
    wire: &Arc<Wire<L>>,
    rx: &mut UnboundedReceiver<OperatorCommand>,
) {
    let w = wire.clone();
    let sink: DirectSink = Arc::new(move |cmd, at| w.operator_command(cmd, at));
    rx.attach(sink);
}

/// The relay's loop: attaches the wire to the command channel (so senders write directly),
/// takes any command that still comes through the channel, and sends status queries on their
/// period. Ends, detached, when the wire is closed.
pub(crate) async fn relay<L: Link + Send + 'static>(
    wire: &Arc<Wire<L>>,
    mut commands: Option<UnboundedReceiver<OperatorCommand>>,
) {
    if let Some(rx) = commands.as_mut() {
        attach_direct(wire, rx);
    }
    loop {
        if wire.closed() {
            if let Some(rx) = commands.as_mut() {
                rx.detach();
            }
            return;
        }
        let next_status = wire.status_tick(Instant::now());
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            c = next_command(&mut commands) => match c {
                Some(cmd) => wire.operator_command(cmd, Instant::now()),
                None => commands = None, // every sender dropped: no operator input any more
            },
            _ = wire.relay_wake.notified() => {}
            _ = tokio::time::sleep_until(next_status.unwrap_or(far).into()) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Link for Sink {
        fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(())
        }
    }

    #[test]
    fn gate_admits_as_the_operator_contract_says() {
        let mut g = Gate::default();
        assert!(!g.admit(OperatorCommand::Resume), "resume while running");
        assert!(g.admit(OperatorCommand::Pause));
        assert!(!g.admit(OperatorCommand::Pause), "already paused");
        assert!(g.admit(OperatorCommand::Resume));
        assert!(g.admit(OperatorCommand::Abort));
        assert!(!g.admit(OperatorCommand::Pause) && !g.admit(OperatorCommand::Abort));
        assert!(g.admit(OperatorCommand::EmergencyStop), "an estop may follow an abort");
        assert!(!g.admit(OperatorCommand::EmergencyStop));
        let mut g = Gate { fault_stopping: true, paused: true, ..Gate::default() };
        assert!(!g.admit(OperatorCommand::Resume), "never resume a controller being flushed");
        assert!(g.admit(OperatorCommand::EmergencyStop));
        let mut g = Gate { closed: true, ..Gate::default() };
        assert!(!g.admit(OperatorCommand::EmergencyStop));
    }

    #[test]
    fn relay_writes_in_order_and_forwards_with_timing() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let wire = Wire::new(Sink(out.clone()), true, true, Instant::now());
        wire.write(b"G1 X1\n").unwrap();
        let t = Instant::now();
        for c in [OperatorCommand::Pause, OperatorCommand::Resume, OperatorCommand::Resume, OperatorCommand::Abort] {
            wire.operator_command(c, t);
        }
        wire.set_fault_stopping();
        wire.operator_command(OperatorCommand::EmergencyStop, t);
        assert_eq!(out.lock().unwrap().as_slice(), b"G1 X1\n!~!\x18");
        let f = wire.take_forwarded();
        let applied: Vec<bool> = f.iter().map(|x| x.applied).collect();
        assert_eq!(applied, [true, true, false, true, true]);
        assert!(f[0].written_at.is_some() && f[2].written_at.is_none());
        assert_eq!(wire.take_transcript(), ["> G1 X1", "> !", "> ~", "> !", "> ^X"]);
        assert!(wire.close().is_empty());
        wire.operator_command(OperatorCommand::EmergencyStop, t);
        assert_eq!(out.lock().unwrap().len(), 10, "nothing written after close");
    }

    #[test]
    fn pump_realtime_bytes_follow_the_operator_gate() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let wire = Wire::new(Sink(out.clone()), true, true, Instant::now());
        let t = Instant::now();
        assert!(wire.write_if_paused(&[0x9E]).is_none(), "not paused");
        assert!(wire.write_if_running(b"~").is_some());
        wire.operator_command(OperatorCommand::Pause, t);
        assert!(wire.write_if_paused(&[0x9E]).is_some());
        assert!(wire.write_if_running(b"~").is_none(), "paused: no cycle start of the pump's");
        wire.operator_command(OperatorCommand::Resume, t);
        assert!(wire.write_if_paused(&[0x9E]).is_none(), "resumed: the stop would come after the ~");
        wire.operator_command(OperatorCommand::Pause, t);
        wire.set_fault_stopping();
        assert!(wire.write_if_paused(&[0x9E]).is_none() && wire.write_if_running(b"~").is_none());
        assert_eq!(out.lock().unwrap().as_slice(), b"~!\x9e~!");
        assert_eq!(wire.take_transcript(), ["> ~", "> !", "> SpindleStop", "> ~", "> !"]);
        let marlin = Wire::new(Sink::default(), false, false, Instant::now());
        marlin.operator_command(OperatorCommand::Pause, t);
        assert!(marlin.write_if_paused(&[0x9E]).is_none(), "Marlin has no realtime bytes");
    }

    #[test]
    fn marlin_has_no_realtime_bytes_but_m112_is_a_whole_line() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let wire = Wire::new(Sink(out.clone()), false, true, Instant::now());
        let t = Instant::now();
        wire.operator_command(OperatorCommand::Pause, t);
        wire.operator_command(OperatorCommand::EmergencyStop, t);
        assert_eq!(out.lock().unwrap().as_slice(), b"M112\n");
        wire.log_received(b"ok\r\n\r\nstart\n");
        assert_eq!(wire.take_transcript(), ["> M112", "< ok", "< start"]);
        wire.set_status_period(Some(Duration::from_millis(10)));
        assert_eq!(wire.status_tick(Instant::now()), None, "Marlin has no status query");
    }

    #[test]
    fn status_queries_keep_their_period() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let wire = Wire::new(Sink(out.clone()), true, false, Instant::now());
        let t0 = Instant::now();
        assert_eq!(wire.status_tick(t0), None, "off until the pump sets a period");
        wire.set_status_period(Some(Duration::from_millis(100)));
        assert_eq!(wire.status_tick(t0), Some(t0 + Duration::from_millis(100)));
        assert_eq!(wire.status_tick(t0 + Duration::from_millis(50)), Some(t0 + Duration::from_millis(100)));
        wire.status_tick(t0 + Duration::from_millis(130));
        assert_eq!(out.lock().unwrap().as_slice(), b"??");
        let f = wire.status_figures();
        assert_eq!(f.queries, 2);
        assert!((f.max_gap_s - 0.13).abs() < 1e-9);
    }

    #[test]
    fn relay_thread_writes_a_hold_while_the_pump_is_busy() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let wire = Arc::new(Wire::new(Sink(out.clone()), true, false, Instant::now()));
        let (tx, rx) = crate::control::unbounded_channel();
        // Sent before the run: waits in the channel, applied in order when the relay attaches.
        tx.send(OperatorCommand::Pause).unwrap();
        tx.send(OperatorCommand::Resume).unwrap();
        std::thread::scope(|s| {
            let w = &wire;
            let relay = s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
                rt.block_on(relay(w, Some(rx)));
            });
            let t = Instant::now();
            while out.lock().unwrap().len() < 2 && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Attached: `send` writes before it returns, with nobody else running.
            tx.send(OperatorCommand::Pause).unwrap();
            assert_eq!(out.lock().unwrap().as_slice(), b"!~!");
            assert_eq!(wire.close().len(), 3, "handled, waiting for the pump");
            relay.join().unwrap();
        });
        // Detached at the end: the command waits in a channel nobody reads, and fails once the
        // receiver is gone.
        assert!(tx.send(OperatorCommand::Resume).is_err());
        assert_eq!(out.lock().unwrap().as_slice(), b"!~!");
    }
}

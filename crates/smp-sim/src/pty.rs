//! Runs a [`SimController`] on the device end of a pseudo-terminal, in its own thread.
//!
//! The runner is the only place where the simulator meets a clock and a port: it reads with a
//! short timeout, hands the bytes to the controller with `now` = wall time since spawn ×
//! `time_scale`, writes whatever the controller has to send, and sleeps until the
//! controller's next deadline or new input. The controller itself stays pure, so everything
//! it does under a pty can be replayed without one.
//!
//! The runner never panics on what the host sends (the controller accepts any bytes) and
//! never blocks on a host that stops reading: unsent output is kept and retried.
//!
//! A pty has no baud rate: bytes cross it as fast as the kernel copies them. With a
//! [`LinkRate`] ([`PtyController::spawn_with_clock_and_link`]) the runner paces both
//! directions like a UART at 10 bits per byte (8N1): a byte the host wrote reaches the
//! controller only once the wire would have carried it, and the controller's answers leave no
//! faster either. That is what makes link utilisation (bytes streamed ÷ what the link
//! carries) measurable against the simulator. The runner then reads only a small UART-sized
//! buffer ahead ([`PACED_RX_BUFFER_BYTES`]), so the rest queues in the pty as it would in the
//! host's serial driver.
//!
//! When the controller's `disconnect_at_line` fault fires, the runner flushes what was sent
//! before the cut and closes its end of the pty, so the host sees what a pulled cable gives
//! it (EOF/EIO on Linux, or silence); machine time keeps running for the final report.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

pub use crate::controller::SimReport;
use crate::controller::{MachineState, SimController};
use smp_core::NeedleEntry;

/// Longest sleep between checks of the stop flag, wall time.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// Wait while output is pending, so that a slow reader is retried soon.
const WRITE_RETRY_WAIT: Duration = Duration::from_millis(1);
/// Timeout of one write attempt on a full pty.
const WRITE_TIMEOUT: Duration = Duration::from_millis(5);
/// After a `disconnect_at_line` fault the pty stays open (silent) this long before it is
/// closed: a Linux pty master loses unread bytes when the device end closes, and the answers
/// sent before the cut must still reach the host.
const DISCONNECT_LINGER: Duration = Duration::from_millis(200);
/// At most this many distinct runner errors are kept for the report.
const MAX_ERRORS_KEPT: usize = 16;
/// On a paced link, the runner reads at most this many bytes ahead of the wire (a UART FIFO
/// plus a driver buffer); the rest waits in the pty, as in the host's serial driver.
pub const PACED_RX_BUFFER_BYTES: usize = 64;
/// On a paced link, the shortest sleep between deliveries: about one byte at 115200 baud.
/// Delivery follows the wire's schedule whatever the wake-ups, so this bounds the runner's
/// wake-up rate, not the link's rate.
const MIN_PACE_WAIT: Duration = Duration::from_micros(100);

/// A serial link's rate, for pacing a pty like a UART (8N1: 10 bits on the wire per byte).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkRate {
    /// Bits per second on the wire, e.g. 115200.
    pub baud: u32,
}

impl LinkRate {
    /// Bits on the wire per byte: start bit, 8 data bits, stop bit.
    pub const BITS_PER_BYTE: u32 = 10;

    /// Bytes per second the link carries in each direction (11 520 at 115200 baud).
    pub fn bytes_per_s(&self) -> f64 {
        f64::from(self.baud) / f64::from(Self::BITS_PER_BYTE)
    }

    /// Wire time of one byte; `None` for a zero baud rate (no link to pace).
    fn byte_time(&self) -> Option<Duration> {
        (self.baud > 0).then(|| Duration::from_secs_f64(1.0 / self.bytes_per_s()))
    }
}

/// One direction of a paced link: bytes queue here and come out when the wire has carried
/// them, one byte time apart, never sooner than they went in plus one byte time.
struct Wire {
    byte_time: Duration,
    queue: std::collections::VecDeque<u8>,
    /// When the byte at the head of the queue has fully crossed the wire.
    head_done_at: Option<Instant>,
    /// When the last byte taken off the wire had crossed it: the wire is busy until then.
    last_done_at: Option<Instant>,
}

impl Wire {
    fn new(byte_time: Duration) -> Wire {
        Wire { byte_time, queue: std::collections::VecDeque::new(), head_done_at: None, last_done_at: None }
    }

    /// Bytes handed to the wire at wall time `at`.
    fn push(&mut self, bytes: &[u8], at: Instant) {
        if bytes.is_empty() {
            return;
        }
        if self.queue.is_empty() {
            let start = self.last_done_at.map_or(at, |l| l.max(at));
            self.head_done_at = Some(start + self.byte_time);
        }
        self.queue.extend(bytes);
    }

    /// Moves the bytes that have crossed the wire by `now` into `out`.
    fn take_due(&mut self, now: Instant, out: &mut Vec<u8>) {
        let Some(head) = self.head_done_at else { return };
        if now < head || self.queue.is_empty() {
            return;
        }
        let nanos = self.byte_time.as_nanos().max(1);
        let extra = now.duration_since(head).as_nanos() / nanos;
        let k = usize::try_from(extra).unwrap_or(usize::MAX).saturating_add(1).min(self.queue.len());
        out.extend(self.queue.drain(..k));
        let last = head + self.byte_time * u32::try_from(k - 1).unwrap_or(u32::MAX);
        self.last_done_at = Some(last);
        self.head_done_at = (!self.queue.is_empty()).then(|| last + self.byte_time);
    }

    /// When the next byte will have crossed the wire, if any is queued.
    fn next_due(&self) -> Option<Instant> {
        self.head_done_at.filter(|_| !self.queue.is_empty())
    }

    /// Everything still on the wire, at once (the runner is stopping or the line was cut).
    fn drain_all(&mut self, out: &mut Vec<u8>) {
        out.extend(self.queue.drain(..));
        self.head_done_at = None;
    }
}

/// Both directions of a paced link.
struct Pacing {
    /// Host → controller.
    rx: Wire,
    /// Controller → host.
    tx: Wire,
}

/// What the simulated machine is doing, as of the serving thread's last turn: for tests that
/// act at a given moment of a dot (e.g. a pause in the middle of a dwell).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveState {
    /// Machine time of the snapshot, seconds.
    pub machine_time_s: f64,
    pub state: MachineState,
    /// The needle tip is below the skin.
    pub needle_in_skin: bool,
    /// A `G4` dwell is under way (running or paused by a hold).
    pub dwelling: bool,
    /// The cartridge (spindle) runs.
    pub cartridge_running: bool,
    /// Powered needle entries completed so far.
    pub entries: usize,
    /// Machine X Y Z now (continuous).
    pub position_mm: [f64; 3],
    /// Marlin's steppers are suspended by `P000`.
    pub steppers_suspended: bool,
}

impl LiveState {
    fn of(c: &SimController) -> LiveState {
        LiveState {
            machine_time_s: c.machine_time_s(),
            state: c.state(),
            needle_in_skin: c.needle_in_skin(),
            dwelling: c.dwelling(),
            cartridge_running: c.cartridge_running(),
            entries: c.entries().len(),
            position_mm: c.position_mm(),
            steppers_suspended: c.marlin_steppers_suspended(),
        }
    }
}

/// A simulated controller served on a pty device end by a background thread.
pub struct PtyController {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(SimController, Vec<String>)>>,
    clock: SimClock,
    /// Needle entries recorded so far, copied out by the serving thread as they happen.
    entries: Arc<Mutex<Vec<NeedleEntry>>>,
    /// The machine as of the serving thread's last turn.
    live: Arc<Mutex<LiveState>>,
}

impl PtyController {
    /// Starts serving `controller` on `device` (one end of `TTYPort::pair()`; the host uses
    /// the other). Machine time starts at 0 now and runs `time_scale` times faster than the
    /// wall clock.
    pub fn spawn(device: TTYPort, controller: SimController) -> io::Result<Self> {
        let clock = SimClock::new(controller.config().time_scale);
        Self::spawn_with_clock(device, controller, clock)
    }

    /// As [`PtyController::spawn`], on a machine clock the caller shares: a simulated camera
    /// gates it ([`SimClock::set_gate`]) so that the machine never runs ahead of the frames
    /// the camera has processed, whatever the renderer's speed.
    pub fn spawn_with_clock(device: TTYPort, controller: SimController, clock: SimClock) -> io::Result<Self> {
        Self::spawn_with_clock_and_link(device, controller, clock, None)
    }

    /// As [`PtyController::spawn_with_clock`], with the pty paced like a serial link at `link`
    /// (`None`, or a zero baud rate: unpaced, as a bare pty). Pacing uses wall time, not
    /// machine time: the wire does not speed up with `time_scale`.
    pub fn spawn_with_clock_and_link(
        device: TTYPort,
        controller: SimController,
        clock: SimClock,
        link: Option<LinkRate>,
    ) -> io::Result<Self> {
        let pacing = link.and_then(|l| l.byte_time()).map(|t| Pacing { rx: Wire::new(t), tx: Wire::new(t) });
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let entries = Arc::new(Mutex::new(Vec::new()));
        let thread_entries = Arc::clone(&entries);
        let live = Arc::new(Mutex::new(LiveState::of(&controller)));
        let thread_live = Arc::clone(&live);
        let thread_clock = clock.clone();
        let thread = thread::Builder::new().name("smp-sim-grbl".to_string()).spawn(move || {
            let shared = Shared { entries: &thread_entries, live: &thread_live };
            serve(device, controller, pacing, &thread_clock, &thread_stop, shared)
        })?;
        Ok(PtyController { stop, thread: Some(thread), clock, entries, live })
    }

    /// What the machine is doing, as of the serving thread's last turn (it turns at least
    /// every few milliseconds, and at every input and event).
    pub fn live(&self) -> LiveState {
        *self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Machine time now, seconds.
    pub fn machine_time_s(&self) -> f64 {
        self.clock.now_s()
    }

    /// The powered needle entries recorded so far (a contact still open is not included):
    /// what the skin holds now, for a camera check between runs of one session.
    pub fn entries_so_far(&self) -> Vec<NeedleEntry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Stops the thread and returns the run's record (a contact still open is closed at the
    /// current machine time).
    pub fn shutdown(mut self) -> SimReport {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> SimReport {
        self.stop.store(true, Ordering::SeqCst);
        let Some(handle) = self.thread.take() else {
            return SimReport::default();
        };
        match handle.join() {
            Ok((controller, errors)) => {
                let now = self.clock.now();
                let mut report = controller.finish(now);
                report.runner_errors = errors;
                report
            }
            Err(_) => SimReport {
                runner_errors: vec!["the simulated controller thread panicked; its record is lost".to_string()],
                ..SimReport::default()
            },
        }
    }
}

impl Drop for PtyController {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop_thread();
        }
    }
}

/// The simulated machine's clock: wall time scaled by `time_scale`, optionally held at a gate.
///
/// Why a gate: a simulated camera takes far longer to render a frame than a real one takes to
/// expose it. Gating the machine at the next frame's time makes the simulated world wait for
/// the camera, so tracking latency is measured in machine time, as on the rig. Time never
/// goes backwards; while gated, machine time stands still at the gate.
#[derive(Clone)]
pub struct SimClock {
    inner: Arc<Mutex<ClockState>>,
}

struct ClockState {
    scale: f64,
    wall_at: Instant,
    machine_at_s: f64,
    gate_s: Option<f64>,
}

impl SimClock {
    /// A clock at machine time 0 now, running `time_scale` times faster than the wall clock.
    pub fn new(time_scale: f64) -> SimClock {
        let scale = if time_scale.is_finite() && time_scale > 0.0 { time_scale } else { 1.0 };
        SimClock {
            inner: Arc::new(Mutex::new(ClockState { scale, wall_at: Instant::now(), machine_at_s: 0.0, gate_s: None })),
        }
    }

    /// Machine time now, seconds.
    pub fn now_s(&self) -> f64 {
        let Ok(mut s) = self.inner.lock() else { return 0.0 };
        let wall = Instant::now();
        let mut m = s.machine_at_s + wall.duration_since(s.wall_at).as_secs_f64() * s.scale;
        if let Some(g) = s.gate_s {
            m = m.min(g.max(s.machine_at_s));
        }
        s.machine_at_s = m;
        s.wall_at = wall;
        m
    }

    /// Machine time starts again at 0 now: the controller powers up. Until then the world's
    /// clock must not count, or the host's set-up (journal, compile, verify) would show as arm
    /// time, scaled by `time_scale`.
    pub fn restart(&self) {
        if let Ok(mut s) = self.inner.lock() {
            s.wall_at = Instant::now();
            s.machine_at_s = 0.0;
            s.gate_s = None;
        }
    }

    /// Machine time now.
    pub fn now(&self) -> Duration {
        Duration::try_from_secs_f64(self.now_s()).unwrap_or(Duration::MAX)
    }

    /// Holds machine time at `gate_s` once it gets there (`None` lets it run free).
    pub fn set_gate(&self, gate_s: Option<f64>) {
        let _ = self.now_s();
        if let Ok(mut s) = self.inner.lock() {
            s.gate_s = gate_s.filter(|g| g.is_finite());
        }
    }

    /// Wall time for `machine_s` seconds of machine time to pass (ignoring the gate).
    fn wall_for(&self, machine_s: f64) -> f64 {
        self.inner.lock().map_or(machine_s, |s| machine_s / s.scale)
    }
}

fn note(errors: &mut Vec<String>, message: String) {
    if errors.len() < MAX_ERRORS_KEPT && !errors.contains(&message) {
        errors.push(message);
    }
}

/// The thread body: read, hand over, write, sleep until the next deadline or input. With
/// `pacing`, bytes read go onto the receive wire and reach the controller when due, and the
/// controller's output goes onto the transmit wire before the pty.
/// What the serving thread shares with its [`PtyController`] while it runs.
struct Shared<'a> {
    entries: &'a Mutex<Vec<NeedleEntry>>,
    live: &'a Mutex<LiveState>,
}

fn serve(
    device: TTYPort,
    mut controller: SimController,
    mut pacing: Option<Pacing>,
    clock: &SimClock,
    stop: &AtomicBool,
    shared: Shared<'_>,
) -> (SimController, Vec<String>) {
    let Shared { entries, live } = shared;
    let mut errors = Vec::new();
    // Bytes ready for the pty (already across the wire when paced).
    let mut pending_out: Vec<u8> = Vec::new();
    // Paced only: what the controller just sent, and what just crossed the receive wire.
    let mut produced: Vec<u8> = Vec::new();
    let mut delivered: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    let mut port = Some(device);
    let mut cut_at: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let now = clock.now();
        controller.handle_timeout(now);
        if let Some(p) = pacing.as_mut() {
            delivered.clear();
            p.rx.take_due(Instant::now(), &mut delivered);
            if !delivered.is_empty() {
                controller.handle_bytes(&delivered, clock.now());
            }
        }
        let recorded = controller.entries();
        if let Ok(mut shared) = entries.lock() {
            if shared.len() < recorded.len() {
                let from = shared.len();
                shared.extend_from_slice(&recorded[from..]);
            }
        }
        if let Ok(mut l) = live.lock() {
            *l = LiveState::of(&controller);
        }
        if let Some(p) = pacing.as_mut() {
            produced.clear();
            controller.poll_transmit(&mut produced);
            let wall = Instant::now();
            p.tx.push(&produced, wall);
            p.tx.take_due(wall, &mut pending_out);
        } else {
            controller.poll_transmit(&mut pending_out);
        }
        if controller.is_disconnected() {
            // What was sent before the cut still reaches the host, unpaced: it is the last.
            if let Some(p) = pacing.as_mut() {
                p.tx.drain_all(&mut pending_out);
            }
            let cut = *cut_at.get_or_insert_with(Instant::now);
            if let Some(device) = port.as_mut() {
                // Bytes sent before the cut still reach the host; then the line goes dead.
                let _ = device.set_timeout(WRITE_TIMEOUT);
                if !pending_out.is_empty() && device.write_all(&pending_out).is_ok() {
                    pending_out.clear();
                }
                // Swallow the host's writes so that it never blocks on a full pty.
                let _ = device.set_timeout(MAX_WAIT);
                let _ = device.read(&mut buf);
                if cut.elapsed() >= DISCONNECT_LINGER {
                    port = None; // closing the device end: the host reads EOF/EIO
                }
            } else {
                thread::sleep(MAX_WAIT);
            }
            continue;
        }
        let Some(device) = port.as_mut() else { break };
        if !pending_out.is_empty() {
            let _ = device.set_timeout(WRITE_TIMEOUT);
            match device.write(&pending_out) {
                Ok(n) => {
                    pending_out.drain(..n.min(pending_out.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => {
                    note(&mut errors, format!("writing to the pty failed: {e}"));
                    thread::sleep(WRITE_RETRY_WAIT);
                }
            }
        }
        // Sleep in the read until input arrives or the next deadline passes.
        let mut wait = MAX_WAIT;
        if let Some(deadline) = controller.poll_timeout() {
            let now = clock.now();
            let wall = clock.wall_for(deadline.saturating_sub(now).as_secs_f64());
            wait = wait.min(Duration::try_from_secs_f64(wall).unwrap_or(MAX_WAIT));
        }
        if !pending_out.is_empty() {
            wait = wait.min(WRITE_RETRY_WAIT);
        }
        // Paced: wake when the next byte has crossed either wire, and read only as far ahead
        // as a UART buffer holds.
        let mut room = buf.len();
        if let Some(p) = pacing.as_ref() {
            let wall = Instant::now();
            for due in [p.rx.next_due(), p.tx.next_due()].into_iter().flatten() {
                wait = wait.min(due.saturating_duration_since(wall).max(MIN_PACE_WAIT));
            }
            room = room.min(PACED_RX_BUFFER_BYTES.saturating_sub(p.rx.queue.len()));
        }
        if room == 0 {
            thread::sleep(wait);
            continue;
        }
        let _ = device.set_timeout(wait);
        match device.read(&mut buf[..room]) {
            Ok(0) => thread::sleep(wait.max(WRITE_RETRY_WAIT)), // end of file: the host side is gone
            Ok(n) => match pacing.as_mut() {
                Some(p) => p.rx.push(&buf[..n], Instant::now()),
                None => {
                    let now = clock.now();
                    controller.handle_bytes(&buf[..n], now);
                }
            },
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => {
                // A closed host end reports an error at once: sleep so as not to spin.
                note(&mut errors, format!("reading from the pty failed: {e}"));
                thread::sleep(wait.max(WRITE_RETRY_WAIT));
            }
        }
    }
    // Last words (e.g. the reply to the final line) still go out if the host reads them.
    if let Some(p) = pacing.as_mut() {
        p.tx.drain_all(&mut pending_out);
    }
    controller.poll_transmit(&mut pending_out);
    if let (Some(device), false) = (port.as_mut(), pending_out.is_empty()) {
        let _ = device.set_timeout(WRITE_TIMEOUT);
        let _ = device.write_all(&pending_out);
    }
    (controller, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{ControllerConfig, FlatSkin};
    use approx::assert_relative_eq;
    use nalgebra::Isometry3;
    use smp_core::kinematics::{AxisLimits, MachineDynamics};

    #[test]
    fn a_gated_clock_stands_still_at_the_gate_and_then_runs_on_without_a_jump() {
        let clock = SimClock::new(1000.0);
        clock.set_gate(Some(5.0));
        thread::sleep(Duration::from_millis(20)); // 20 s of machine time, were it free
        let held = clock.now_s();
        assert!((held - 5.0).abs() < 1e-9, "held at {held}");
        thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now_s(), held, "still held");
        clock.set_gate(None);
        thread::sleep(Duration::from_millis(2));
        let free = clock.now_s();
        // It runs on from the gate (about 2 s later), not from where the wall clock says.
        assert!(free > 5.0 && free < 5.0 + 10.0, "{free}");
        // A gate below the present never turns time back.
        clock.set_gate(Some(1.0));
        assert!(clock.now_s() >= free);
    }

    /// Reads complete lines from the host end until `want` responses (ok/error) arrived.
    struct Host {
        port: TTYPort,
        pending: Vec<u8>,
        lines: Vec<String>,
    }

    impl Host {
        fn read_some(&mut self) {
            let mut buf = [0u8; 512];
            let _ = self.port.set_timeout(Duration::from_millis(5));
            if let Ok(n) = self.port.read(&mut buf) {
                self.pending.extend_from_slice(&buf[..n]);
            }
            while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if !text.is_empty() {
                    self.lines.push(text);
                }
            }
        }
    }

    #[test]
    fn streams_a_program_over_a_real_pty_with_character_counting() {
        let (host_port, device) = match TTYPort::pair() {
            Ok(pair) => pair,
            Err(e) => panic!("cannot open a pty pair: {e}"),
        };
        let axis = |max| AxisLimits { max_rate_mm_per_min: 6000.0, accel_mm_per_s2: 1000.0, min_mm: 0.0, max_mm: max };
        let mut cfg = ControllerConfig::new(MachineDynamics { x: axis(200.0), y: axis(200.0), z: axis(100.0) });
        cfg.time_scale = 100.0;
        cfg.initial_position_mm = [0.0, 0.0, 50.0];
        let skin = FlatSkin { z_mm: 10.0, head_from_base: Isometry3::identity() };
        let controller = match SimController::new(cfg, Box::new(skin)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let sim = match PtyController::spawn(device, controller) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let mut host = Host { port: host_port, pending: Vec::new(), lines: Vec::new() };

        // The program: setup, 8 dots (travel, approach, plunge, dwell, retract), shutdown.
        let mut program = vec!["G21 G90 G94".to_string(), "G1 Z20 F6000".to_string(), "M3 S12000".to_string()];
        let dots: Vec<[f64; 2]> = (0..8).map(|k| [20.0 + 3.0 * k as f64, 30.0 + 1.5 * (k % 3) as f64]).collect();
        for d in &dots {
            program.push(format!("G1 X{:.3} Y{:.3} Z12 F6000", d[0], d[1]));
            program.push("G1 Z11 F3000".to_string());
            program.push("G1 Z9 F600".to_string());
            program.push("G4 P0.1".to_string());
            program.push("G1 Z11 F3000".to_string());
        }
        program.push("M5".to_string());
        program.push("G1 Z20 F6000".to_string());

        // Wait for the banner, as a host does before streaming.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !host.lines.iter().any(|l| l.starts_with("Grbl 1.1h")) {
            assert!(Instant::now() < deadline, "no banner: {:?}", host.lines);
            host.read_some();
        }
        host.lines.clear();

        // grbl's character counting: never more than 128 unacknowledged bytes in flight.
        let mut in_flight: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
        let mut next = 0;
        let mut answers = 0;
        let mut statuses = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while answers < program.len() {
            assert!(Instant::now() < deadline, "stream stalled after {answers} answers: {:?}", host.lines);
            while next < program.len() && in_flight.iter().sum::<usize>() + program[next].len() < 128 {
                let line = format!("{}\n", program[next]);
                if let Err(e) = host.port.write_all(line.as_bytes()) {
                    panic!("write failed: {e}");
                }
                in_flight.push_back(line.len());
                next += 1;
            }
            if next % 10 == 5 {
                let _ = host.port.write_all(b"?");
            }
            host.read_some();
            for l in host.lines.drain(..) {
                if l == "ok" || l.starts_with("error:") {
                    assert_eq!(l, "ok", "line {} rejected", answers);
                    in_flight.pop_front();
                    answers += 1;
                } else if l.starts_with('<') {
                    statuses += 1;
                    assert!(l.contains("|MPos:") && l.contains("|FS:"), "{l}");
                } else {
                    panic!("unexpected line {l:?}");
                }
            }
        }
        // The last G1 ends after its ok: give the machine time to finish.
        std::thread::sleep(Duration::from_millis(50));
        let report = sim.shutdown();
        assert!(statuses > 0);
        assert_eq!(report.stats.lines_received, program.len() as u64);
        assert_eq!(report.stats.oks_sent, program.len() as u64);
        assert_eq!(report.stats.errors_sent, 0);
        assert_eq!(report.stats.rx_overflows, 0);
        assert_eq!(report.stats.flow_violations, 0);
        assert!(report.unpowered_contacts.is_empty());
        assert_eq!(report.entries.len(), dots.len(), "{:?}", report.entries);
        for (e, d) in report.entries.iter().zip(&dots) {
            assert_relative_eq!(e.base_mm[0], d[0], epsilon = 1e-9);
            assert_relative_eq!(e.base_mm[1], d[1], epsilon = 1e-9);
            assert_relative_eq!(e.base_mm[2], 10.0, epsilon = 1e-6);
            assert_relative_eq!(e.depth_mm, 1.0, epsilon = 1e-6);
        }
        assert!(report.entries.windows(2).all(|w| w[0].time_s < w[1].time_s));
        assert!(report.runner_errors.is_empty(), "{:?}", report.runner_errors);
        assert_relative_eq!(report.final_position_mm[2], 20.0, epsilon = 1e-9);
    }

    #[test]
    fn a_wire_releases_bytes_one_byte_time_apart_and_never_early() {
        let t = Duration::from_micros(100);
        let t0 = Instant::now();
        let mut w = Wire::new(t);
        let mut out = Vec::new();
        w.push(b"abcdef", t0);
        w.take_due(t0, &mut out);
        assert!(out.is_empty(), "nothing crosses in zero time");
        w.take_due(t0 + t * 2 + t / 2, &mut out);
        assert_eq!(out, b"ab");
        assert_eq!(w.next_due(), Some(t0 + t * 3));
        // Late wake-ups catch up on the wire's schedule, without drift.
        w.take_due(t0 + t * 5, &mut out);
        assert_eq!(out, b"abcde");
        w.take_due(t0 + t * 100, &mut out);
        assert_eq!(out, b"abcdef");
        assert_eq!(w.next_due(), None);
        // An idle wire starts the next byte when it is pushed, not back when it went idle.
        let t1 = t0 + t * 200;
        w.push(b"g", t1);
        assert_eq!(w.next_due(), Some(t1 + t));
        // A byte pushed while the wire is still busy waits for it.
        let mut busy = Wire::new(t);
        busy.push(b"xy", t0);
        busy.take_due(t0 + t, &mut out);
        busy.take_due(t0 + t + t / 2, &mut out);
        busy.push(b"z", t0 + t + t / 2);
        busy.take_due(t0 + t * 2, &mut out);
        assert_eq!(busy.next_due(), Some(t0 + t * 3), "z follows y on the wire");
    }

    /// Sends `lines` one at a time, each after the previous one's `ok` (send-response), and
    /// returns the wall time from the first write to the last `ok`.
    fn send_response_time(link: Option<LinkRate>, lines: &[&str]) -> Duration {
        let (host_port, device) = match TTYPort::pair() {
            Ok(pair) => pair,
            Err(e) => panic!("cannot open a pty pair: {e}"),
        };
        let cfg = ControllerConfig { time_scale: 1e6, ..ControllerConfig::default() };
        let controller = match SimController::new(cfg, Box::new(crate::controller::NoSkin)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let clock = SimClock::new(controller.config().time_scale);
        let sim = match PtyController::spawn_with_clock_and_link(device, controller, clock, link) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let mut host = Host { port: host_port, pending: Vec::new(), lines: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !host.lines.iter().any(|l| l.starts_with("Grbl 1.1h")) {
            assert!(Instant::now() < deadline, "no banner: {:?}", host.lines);
            host.read_some();
        }
        host.lines.clear();
        let start = Instant::now();
        for line in lines {
            if let Err(e) = host.port.write_all(format!("{line}\n").as_bytes()) {
                panic!("write failed: {e}");
            }
            while !host.lines.iter().any(|l| l == "ok" || l.starts_with("error:")) {
                assert!(Instant::now() < deadline, "no answer to {line:?}: {:?}", host.lines);
                host.read_some();
            }
            assert_eq!(host.lines, vec!["ok".to_string()], "answer to {line:?}");
            host.lines.clear();
        }
        let elapsed = start.elapsed();
        let report = sim.shutdown();
        assert_eq!(report.stats.oks_sent, lines.len() as u64);
        assert!(report.runner_errors.is_empty(), "{:?}", report.runner_errors);
        elapsed
    }

    #[test]
    fn a_paced_pty_carries_no_more_than_baud_over_ten_bytes_per_second_each_way() {
        let lines = ["G90"; 40];
        let baud = 9600;
        let link = LinkRate { baud };
        assert_relative_eq!(link.bytes_per_s(), 960.0);
        // Send-response is sequential: each line crosses, then its "ok\r\n" crosses back.
        let bytes_on_wire: usize = lines.iter().map(|l| l.len() + 1 + "ok\r\n".len()).sum();
        let floor_s = bytes_on_wire as f64 * 10.0 / f64::from(baud); // 320 bytes: 0.333 s
        let paced = send_response_time(Some(link), &lines).as_secs_f64();
        assert!(paced >= floor_s * 0.99, "paced: {paced:.3} s < the wire's {floor_s:.3} s");
        assert!(paced < floor_s * 10.0, "paced: {paced:.3} s, far beyond the wire's {floor_s:.3} s");
        // The same exchange on a bare pty is far faster: the pacing is what made it slow.
        let bare = send_response_time(None, &lines).as_secs_f64();
        assert!(bare < floor_s / 3.0, "bare pty: {bare:.3} s, wire: {floor_s:.3} s");
        // A zero baud rate means no link to pace, not a stalled one.
        let zero = send_response_time(Some(LinkRate { baud: 0 }), &lines).as_secs_f64();
        assert!(zero < floor_s / 3.0, "zero baud: {zero:.3} s");
    }

    #[test]
    fn shutdown_survives_a_vanished_host_and_garbage() {
        let (mut host, device) = match TTYPort::pair() {
            Ok(pair) => pair,
            Err(e) => panic!("cannot open a pty pair: {e}"),
        };
        let cfg = ControllerConfig { time_scale: 100.0, ..ControllerConfig::default() };
        let controller = match SimController::new(cfg, Box::new(crate::controller::NoSkin)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let sim = match PtyController::spawn(device, controller) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let garbage: Vec<u8> =
            (0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).filter(|&b| b != 0x18).collect();
        let _ = host.write_all(&garbage);
        let _ = host.write_all(b"\n");
        std::thread::sleep(Duration::from_millis(50));
        drop(host);
        std::thread::sleep(Duration::from_millis(50));
        let report = sim.shutdown();
        assert!(report.machine_time_s > 0.0);
        assert!(report.stats.lines_received > 0);
    }
}

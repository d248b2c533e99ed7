//! Every controller fault kind, exercised through a real pty by a small character-counting
//! host, using the shipped `sim/faults/*.toml` scenarios: each must produce the effect a host
//! sees on real hardware.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use approx::assert_relative_eq;
use serialport::{SerialPort, TTYPort};
use smp_core::kinematics::{AxisLimits, MachineDynamics};

use super::*;
use crate::faults::FaultScenario;
use crate::pty::PtyController;

/// grbl's RX buffer: the host keeps fewer unacknowledged bytes than this in flight.
const RX_BYTES: usize = 128;
/// The host gives up after this long without a byte from the controller.
const QUIET: Duration = Duration::from_millis(400);

fn scenario(name: &str) -> FaultScenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sim/faults").join(name);
    match FaultScenario::from_path(&path) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// 6000 mm/min, 1000 mm/s² on every axis; X, Y in [0, 200], Z in [0, 100].
fn config(time_scale: f64) -> ControllerConfig {
    let axis = |max| AxisLimits { max_rate_mm_per_min: 6000.0, accel_mm_per_s2: 1000.0, min_mm: 0.0, max_mm: max };
    let mut cfg = ControllerConfig::new(MachineDynamics { x: axis(200.0), y: axis(200.0), z: axis(100.0) });
    cfg.initial_position_mm = [0.0, 0.0, 50.0];
    cfg.report_wco_and_overrides = false;
    cfg.time_scale = time_scale;
    cfg
}

/// `n` lines: a modal header, then 3 mm hops between (10..40, 10..40) (0.11 s each).
fn program(n: usize) -> Vec<String> {
    let mut p = vec!["G21 G90 G94 F6000".to_string()];
    for k in 1..n {
        let x = 10.0 + 3.0 * (k % 10) as f64;
        let y = 10.0 + 3.0 * ((k / 10) % 10) as f64;
        p.push(format!("G1 X{x:.3} Y{y:.3}"));
    }
    p
}

/// The test's G-code sender: writes with grbl's character counting and keeps a transcript.
struct Host {
    port: TTYPort,
    pending: Vec<u8>,
    /// Every non-empty line received, in order.
    transcript: Vec<String>,
    /// The read side failed or hit end of file (the controller closed the pty).
    eof: bool,
    last_byte: Instant,
}

impl Host {
    fn start(cfg: ControllerConfig) -> (Host, PtyController) {
        let (port, device) = match TTYPort::pair() {
            Ok(pair) => pair,
            Err(e) => panic!("cannot open a pty pair: {e}"),
        };
        let controller = match SimController::new(cfg, Box::new(NoSkin)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let sim = match PtyController::spawn(device, controller) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let mut host =
            Host { port, pending: Vec::new(), transcript: Vec::new(), eof: false, last_byte: Instant::now() };
        assert!(host.wait_for(|l| l.starts_with("Grbl 1.1h"), Duration::from_secs(5)), "no banner");
        (host, sim)
    }

    /// Reads what is there (waiting up to 5 ms); returns the complete lines that arrived.
    fn read_some(&mut self) -> Vec<String> {
        let mut buf = [0u8; 512];
        if self.eof {
            std::thread::sleep(Duration::from_millis(5));
            return Vec::new();
        }
        let _ = self.port.set_timeout(Duration::from_millis(5));
        match self.port.read(&mut buf) {
            Ok(0) => self.eof = true,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.last_byte = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => self.eof = true, // EIO: the other end of the pty is closed
        }
        let mut lines = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line).trim().to_string();
            if !text.is_empty() {
                self.transcript.push(text.clone());
                lines.push(text);
            }
        }
        lines
    }

    fn wait_for(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.read_some().iter().any(|l| pred(l)) {
                return true;
            }
        }
        false
    }

    /// Streams `program` with character counting until every line is answered, or the
    /// controller falls silent for [`QUIET`], or the link dies. Returns the responses read.
    fn stream(&mut self, program: &[String]) -> usize {
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let (mut next, mut answers) = (0, 0);
        self.last_byte = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(30);
        while answers < program.len() && !self.eof && self.last_byte.elapsed() < QUIET {
            assert!(Instant::now() < deadline, "stream ran too long: {:?}", self.transcript);
            while next < program.len() && in_flight.iter().sum::<usize>() + program[next].len() + 1 < RX_BYTES {
                let line = format!("{}\n", program[next]);
                if self.port.write_all(line.as_bytes()).is_err() {
                    self.eof = true;
                    break;
                }
                in_flight.push_back(line.len());
                next += 1;
            }
            for l in self.read_some() {
                if l == "ok" || l.starts_with("error:") {
                    in_flight.pop_front();
                    answers += 1;
                }
            }
        }
        answers
    }

    /// Reads until the controller has been quiet for [`QUIET`].
    fn drain(&mut self) {
        self.last_byte = Instant::now();
        while self.last_byte.elapsed() < QUIET && !self.eof {
            self.read_some();
        }
    }

    fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.transcript.iter().filter(|l| pred(l)).count()
    }
}

fn target_of(line: &str) -> [f64; 2] {
    let word = |c: char| {
        line.split_whitespace().find_map(|w| w.strip_prefix(c)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN)
    };
    [word('X'), word('Y')]
}

fn run_scenario(name: &str, time_scale: f64, lines: usize) -> (Host, SimReport, Vec<String>) {
    let mut cfg = config(time_scale);
    scenario(name).apply_to(&mut cfg);
    let (mut host, sim) = Host::start(cfg);
    let prog = program(lines);
    host.stream(&prog);
    host.drain();
    let report = sim.shutdown();
    (host, report, prog)
}

#[test]
fn clean_run_answers_every_line_and_ends_on_target() {
    // The baseline the fault tests deviate from.
    let (host, report, prog) = run_scenario("camera_frame_drop.toml", 20.0, 200);
    assert_eq!(host.count(|l| l == "ok"), prog.len(), "{:?}", host.transcript);
    let [x, y] = target_of(&prog[prog.len() - 1]);
    assert_relative_eq!(report.final_position_mm[0], x, epsilon = 1e-9);
    assert_relative_eq!(report.final_position_mm[1], y, epsilon = 1e-9);
    assert!(report.faults_fired.is_empty());
}

#[test]
fn byte_loss_over_the_pty_breaks_lines_observably() {
    let (host, report, prog) = run_scenario("byte_loss.toml", 20.0, 200);
    let dropped = report.stats.bytes_dropped_by_fault;
    assert!(dropped >= 1, "the shipped rate must drop something over ~3 kB");
    let oks = host.count(|l| l == "ok");
    let errors = host.count(|l| l.starts_with("error:"));
    let [x, y] = target_of(&prog[prog.len() - 1]);
    let off_target = (report.final_position_mm[0] - x).abs() > 1e-6 || (report.final_position_mm[1] - y).abs() > 1e-6;
    // A lost newline merges two lines (error or a missing response), a lost digit moves the
    // tool elsewhere: at least one of these shows.
    assert!(errors > 0 || oks + errors < prog.len() || off_target, "{dropped} bytes lost without a trace");
    assert_eq!(report.faults_fired.len(), 1, "a rate fault is reported once");
    // Deterministic by seed: the same stream loses the same bytes.
    let (_, again, _) = run_scenario("byte_loss.toml", 20.0, 200);
    assert_eq!(again.stats.bytes_dropped_by_fault, dropped);
}

#[test]
fn byte_corruption_over_the_pty_gives_an_error_or_a_recovered_line() {
    let (host, report, prog) = run_scenario("byte_corruption.toml", 20.0, 200);
    let corrupted = report.stats.bytes_corrupted_by_fault;
    assert!(corrupted >= 1, "the shipped rate must corrupt something over ~3 kB");
    let errors = host.count(|l| l.starts_with("error:"));
    let answered = host.count(|l| l == "ok") + errors;
    let [x, y] = target_of(&prog[prog.len() - 1]);
    let off_target = (report.final_position_mm[0] - x).abs() > 1e-6 || (report.final_position_mm[1] - y).abs() > 1e-6;
    // The controller's counters agree with what the host read.
    assert_eq!(report.stats.errors_sent as usize, errors);
    // With the shipped seed the modal header loses its F word: every move then answers
    // error:22. Any of an error, a missing answer or a wrong end point is a visible effect.
    assert!(
        errors > 0 || answered < prog.len() || off_target,
        "{corrupted} corrupted bytes left no trace: {:?}",
        report.stats
    );
}

#[test]
fn disconnect_closes_the_pty_after_the_last_answer() {
    let mut cfg = config(20.0);
    scenario("disconnect.toml").apply_to(&mut cfg);
    let (mut host, sim) = Host::start(cfg);
    host.stream(&program(80));
    // Poll the dead link: no status report may come back.
    let _ = host.port.write_all(b"?");
    host.drain();
    let report = sim.shutdown();
    assert_eq!(host.count(|l| l == "ok"), 39, "lines 1-39 answered, 40 on lost: {:?}", host.transcript);
    assert_eq!(host.count(|l| l.starts_with('<')), 0, "no status after the cut");
    assert!(host.eof, "the host sees EOF/EIO once the controller closes its end");
    assert_eq!(report.faults_fired.len(), 1);
    assert_eq!(report.stats.oks_sent, 39);
}

#[test]
fn reset_before_line_gives_alarm_3_and_the_banner_mid_motion() {
    let (host, report, _) = run_scenario("reset_at_line.toml", 20.0, 60);
    let t = &host.transcript;
    let alarm = t.iter().position(|l| l == "ALARM:3").unwrap_or_else(|| panic!("no ALARM:3: {t:?}"));
    assert_eq!(t[..alarm].iter().filter(|l| *l == "ok").count(), 19, "{t:?}");
    assert_eq!(t[alarm + 1], "Grbl 1.1h ['$' for help]");
    assert_eq!(t[alarm + 2], "[MSG:'$H'|'$X' to unlock]");
    assert_eq!(report.stats.soft_resets, 1);
    assert_eq!(report.stats.alarms, vec![codes::ALARM_ABORT_CYCLE]);
}

#[test]
fn reset_at_time_gives_alarm_3_and_the_banner_mid_motion() {
    // 1.0 s of machine time into a ~6.5 s program.
    let (host, report, prog) = run_scenario("reset_at_time.toml", 5.0, 60);
    let t = &host.transcript;
    let alarm = t.iter().position(|l| l == "ALARM:3").unwrap_or_else(|| panic!("no ALARM:3: {t:?}"));
    // The line grbl was executing (waiting in `mc_line` for planner room) returns on the abort
    // and is answered `ok` after the `ALARM:3` and before the banner, as grbl 1.1h does.
    let banner = alarm + 1 + report.stats.oks_after_reset as usize;
    assert!(report.stats.oks_after_reset <= 1, "{t:?}");
    assert!(t[alarm + 1..banner].iter().all(|l| l == "ok"), "{t:?}");
    assert_eq!(t[banner], "Grbl 1.1h ['$' for help]");
    assert_eq!(report.faults_fired.len(), 1);
    assert_relative_eq!(report.faults_fired[0].time_s, 1.0, epsilon = 1e-6);
    assert!(t.iter().filter(|l| *l == "ok").count() < prog.len());
}

#[test]
fn lost_ok_executes_the_line_but_never_answers_it() {
    let (host, report, prog) = run_scenario("lost_ok.toml", 20.0, 60);
    assert_eq!(host.count(|l| l == "ok"), prog.len() - 1, "{:?}", host.transcript);
    assert_eq!(report.stats.responses_withheld, 1);
    assert_eq!(report.stats.lines_received, prog.len() as u64);
    // Every line ran: the tool ends on the last target.
    let [x, y] = target_of(&prog[prog.len() - 1]);
    assert_relative_eq!(report.final_position_mm[0], x, epsilon = 1e-9);
    assert_relative_eq!(report.final_position_mm[1], y, epsilon = 1e-9);
}

#[test]
fn alarm_at_line_locks_until_reset_and_unlock() {
    let mut cfg = config(20.0);
    scenario("alarm.toml").apply_to(&mut cfg);
    let (mut host, sim) = Host::start(cfg);
    host.stream(&program(60));
    let t = host.transcript.clone();
    let alarm = t.iter().position(|l| l == "ALARM:2").unwrap_or_else(|| panic!("no ALARM:2: {t:?}"));
    assert_eq!(t[..alarm].iter().filter(|l| *l == "ok").count(), 29, "{t:?}");
    assert_eq!(t[alarm + 1], "[MSG:Reset to continue]");
    assert_eq!(t.len(), alarm + 2, "nothing answered after a critical alarm: {t:?}");
    let _ = host.port.write_all(b"?");
    assert!(host.wait_for(|l| l.starts_with("<Alarm|MPos:"), Duration::from_secs(2)));
    let _ = host.port.write_all(b"\x18");
    assert!(host.wait_for(|l| l == "[MSG:'$H'|'$X' to unlock]", Duration::from_secs(2)), "{:?}", host.transcript);
    let _ = host.port.write_all(b"G1X0\n");
    assert!(host.wait_for(|l| l == "error:9", Duration::from_secs(2)));
    let _ = host.port.write_all(b"$X\n");
    assert!(host.wait_for(|l| l == "ok", Duration::from_secs(2)), "{:?}", host.transcript);
    let n = host.transcript.len();
    assert_eq!(host.transcript[n - 2..], ["[MSG:Caution: Unlocked]", "ok"]);
    let report = sim.shutdown();
    assert_eq!(report.stats.alarms, vec![codes::ALARM_SOFT_LIMIT]);
}

#[test]
fn hard_limit_and_other_alarms_without_a_pty() {
    // Alarm kinds the shipped file does not use: code 1 is critical, code 4 unlocks with $X.
    for (code, critical) in [(codes::ALARM_HARD_LIMIT, true), (4, false)] {
        let mut cfg = config(1.0);
        cfg.faults = FaultPlan { faults: vec![Fault::AlarmAtLine { line: 2, code }] };
        let mut c = match SimController::new(cfg, Box::new(NoSkin)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        out.clear();
        c.handle_bytes(b"G1F600X10\n", Duration::ZERO);
        c.handle_bytes(b"G1X20\nG1X30\n", Duration::from_millis(500));
        c.poll_transmit(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        if critical {
            assert_eq!(text, "ok\r\nALARM:1\r\n[MSG:Reset to continue]\r\n");
        } else {
            assert_eq!(text, "ok\r\nALARM:4\r\nerror:9\r\n");
        }
        assert_eq!(c.state(), MachineState::Alarm);
        assert!(c.poll_timeout().is_none(), "stopped at once");
        assert!(c.position_mm()[0] > 0.0 && c.position_mm()[0] < 10.0);
    }
}

#[test]
fn combined_scenario_runs_deterministically() {
    let run = || {
        let mut cfg = config(50.0);
        scenario("combined.toml").apply_to(&mut cfg);
        let (mut host, sim) = Host::start(cfg);
        host.stream(&program(200));
        host.drain();
        (host.transcript, sim.shutdown())
    };
    let (t1, r1) = run();
    let (t2, r2) = run();
    assert!(!r1.faults_fired.is_empty());
    assert_eq!(r1.stats.bytes_dropped_by_fault, r2.stats.bytes_dropped_by_fault);
    assert_eq!(r1.stats.bytes_corrupted_by_fault, r2.stats.bytes_corrupted_by_fault);
    assert_eq!(r1.stats.responses_withheld, 1);
    assert_eq!(
        t1.iter().filter(|l| l.starts_with("error:")).count(),
        t2.iter().filter(|l| l.starts_with("error:")).count()
    );
}

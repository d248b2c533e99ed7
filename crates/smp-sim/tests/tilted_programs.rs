//! The simulated controller executes compiled `xyzab` (5-axis, RTCP) and `joints` (6-axis arm)
//! programs end to end over a real pseudo-terminal, streamed with grbl character counting, and
//! its needle record proves the programs do what the plan says: every planned dot entered
//! exactly once, at its planned point, at the planned depth, with the needle along the normal.
//!
//! The skin is the synthetic case's dome as a plain height field (only `surface_z_base`), so
//! the tilted-needle answers come from the `Skin` trait's defaults, exactly as for the CLI's
//! patient skin.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nalgebra::{Point3, Vector3};
use serialport::{SerialPort, TTYPort};
use smp_core::rig::{Rig, SIX_AXIS_RIG_TOML, XYZAB_RIG_TOML};
use smp_gcode::compile;
use smp_sim::controller::{ControllerConfig, PatchSkin, SimController};
use smp_sim::pty::{PtyController, SimReport};
use smp_testkit::{synthetic_case_for, SyntheticCase};

/// Simulated seconds per wall second. Modest: the host's reads on the pty add wall latency
/// that the time scale multiplies; timing is measured without the pty (see `drive`).
const TIME_SCALE: f64 = 20.0;

/// A character-counting grbl host on the other end of the pty.
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

/// What the stream saw: every answer and status line.
struct Streamed {
    report: SimReport,
    answers: Vec<String>,
    statuses: Vec<String>,
}

/// Streams `program` (G-code lines) with grbl character counting and a status poll now and
/// then; waits for the machine to finish; returns the simulator's record.
fn stream(controller: SimController, program: &[String]) -> Streamed {
    let (host_port, device) = TTYPort::pair().expect("pty pair");
    let sim = PtyController::spawn(device, controller).expect("spawn");
    let mut host = Host { port: host_port, pending: Vec::new(), lines: Vec::new() };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host.lines.iter().any(|l| l.starts_with("Grbl 1.1h")) {
        assert!(Instant::now() < deadline, "no banner: {:?}", host.lines);
        host.read_some();
    }
    host.lines.clear();
    let mut in_flight: VecDeque<usize> = VecDeque::new();
    let mut next = 0;
    let mut answers = Vec::new();
    let mut statuses = Vec::new();
    let mut polls = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while answers.len() < program.len() {
        assert!(Instant::now() < deadline, "stream stalled after {} answers: {:?}", answers.len(), host.lines);
        while next < program.len() && in_flight.iter().sum::<usize>() + program[next].len() < 128 {
            let line = format!("{}\n", program[next]);
            host.port.write_all(line.as_bytes()).expect("write");
            in_flight.push_back(line.len());
            next += 1;
        }
        polls += 1;
        if polls % 7 == 0 {
            host.port.write_all(b"?").expect("write");
        }
        host.read_some();
        for l in host.lines.drain(..) {
            if l == "ok" || l.starts_with("error:") {
                in_flight.pop_front();
                answers.push(l);
            } else if l.starts_with('<') {
                statuses.push(l);
            } else if !l.starts_with("[MSG") {
                panic!("unexpected line {l:?}");
            }
        }
    }
    // The last moves end after their ok: wait until the machine reports Idle.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "machine never went idle");
        host.port.write_all(b"?").expect("write");
        std::thread::sleep(Duration::from_millis(10));
        host.read_some();
        let idle = host.lines.iter().any(|l| l.starts_with("<Idle"));
        statuses.extend(host.lines.drain(..).filter(|l| l.starts_with('<')));
        if idle {
            break;
        }
    }
    Streamed { report: sim.shutdown(), answers, statuses }
}

fn program_lines(case: &SyntheticCase) -> Vec<String> {
    let program = compile(&case.plan, &case.rig, &case.base_from_head).unwrap_or_else(|e| panic!("{e}"));
    program.lines.iter().map(|l| l.text.clone()).filter(|t| !t.starts_with('(')).collect()
}

/// Every planned dot entered exactly once, within 0.05 mm of its planned point, at depth
/// within 0.02 mm of the spec, with the needle within 2 degrees of the normal.
fn assert_every_dot_once(case: &SyntheticCase, report: &SimReport) {
    assert!(report.unpowered_contacts.is_empty(), "unpowered contacts: {:?}", report.unpowered_contacts);
    assert_eq!(report.entries.len(), case.plan.dots.len(), "one entry per dot: {:?}", report.entries);
    assert_eq!(report.entry_geometry.len(), report.entries.len());
    let mut hits = vec![0usize; case.plan.dots.len()];
    for (e, g) in report.entries.iter().zip(&report.entry_geometry) {
        let entry = Point3::from(e.base_mm);
        let (i, d) = case
            .plan
            .dots
            .iter()
            .enumerate()
            .map(|(i, dot)| (i, (case.base_from_head * Point3::new(dot.x_mm, dot.y_mm, dot.z_mm) - entry).norm()))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("dots");
        let dot = &case.plan.dots[i];
        hits[i] += 1;
        assert!(d < 0.05, "dot {} entered {d} mm from its planned point", dot.id);
        assert!(
            (e.depth_mm - dot.depth_mm).abs() < 0.02,
            "dot {} depth {} mm, planned {}",
            dot.id,
            e.depth_mm,
            dot.depth_mm
        );
        let angle = g.needle_to_normal_deg.expect("the dome answers its normal");
        assert!(angle < 2.0, "dot {}: needle {angle} deg from the normal", dot.id);
        // The needle really was tilted along this dot's normal, not vertical.
        let n = case.base_from_head.rotation * Vector3::from(dot.normal);
        let needle = Vector3::from(g.needle_dir_base);
        assert!((needle + n).norm() < 0.035, "dot {}: needle {needle:?}, normal {n:?}", dot.id);
        // Reported in the head frame too.
        let head = case.base_from_head.inverse() * entry;
        assert!((head - Point3::from(e.head_mm)).norm() < 1e-6);
    }
    assert!(hits.iter().all(|&h| h == 1), "entries per dot: {hits:?}");
    assert!(report.entries.windows(2).all(|w| w[0].time_s < w[1].time_s));
    assert!(report.runner_errors.is_empty(), "{:?}", report.runner_errors);
}

fn run_case(case: &SyntheticCase, axes: usize) -> Streamed {
    let program = program_lines(case);
    let mut cfg = ControllerConfig::for_rig(&case.rig).unwrap_or_else(|e| panic!("{e}"));
    cfg.time_scale = TIME_SCALE;
    let skin = PatchSkin::new(case.map.surface.clone(), case.base_from_head);
    let controller = SimController::new(cfg, Box::new(skin)).unwrap_or_else(|e| panic!("{e}"));
    let out = stream(controller, &program);
    assert!(out.answers.iter().all(|a| a == "ok"), "{:?}", out.answers);
    assert_eq!(out.report.stats.errors_sent, 0);
    assert_eq!(out.report.stats.alarms, Vec::<u8>::new());
    assert_eq!(out.report.stats.flow_violations, 0);
    assert!(!out.statuses.is_empty());
    for s in &out.statuses {
        let mpos = s.split('|').find_map(|f| f.strip_prefix("MPos:")).expect("MPos");
        assert_eq!(mpos.split(',').count(), axes, "one value per axis: {s}");
    }
    assert_eq!(out.report.final_machine_position.len(), axes);
    assert_every_dot_once(case, &out.report);
    out
}

/// Arm time per dot from the first entry to the last.
fn dot_cycle_s(report: &SimReport) -> f64 {
    let n = report.entries.len();
    (report.entries[n - 1].time_s - report.entries[0].time_s) / (n - 1) as f64
}

/// Runs the pure controller with an ideal character-counting host (no pty, no wall clock):
/// the RX buffer is refilled the instant an `ok` frees room, so the machine never waits for
/// the host and the machine time is the arm time of the program at the rig's dynamics.
fn drive(mut c: SimController, program: &[String]) -> SimReport {
    let mut now = Duration::ZERO;
    let mut in_flight: VecDeque<usize> = VecDeque::new();
    let (mut next, mut answers) = (0, 0);
    let mut out = Vec::new();
    c.poll_transmit(&mut out); // the banner
    out.clear();
    for _ in 0..10_000_000u32 {
        let mut progressed = false;
        while next < program.len() && in_flight.iter().sum::<usize>() + program[next].len() < 128 {
            let line = format!("{}\n", program[next]);
            c.handle_bytes(line.as_bytes(), now);
            in_flight.push_back(line.len());
            next += 1;
            progressed = true;
        }
        c.poll_transmit(&mut out);
        for l in String::from_utf8_lossy(&out).lines() {
            if l == "ok" || l.starts_with("error:") {
                assert_eq!(l, "ok", "line {answers} rejected");
                in_flight.pop_front();
                answers += 1;
                progressed = true;
            }
        }
        out.clear();
        if answers == program.len() && c.is_quiescent() {
            break;
        }
        if !progressed {
            match c.poll_timeout() {
                Some(t) => {
                    now = now.max(t);
                    c.handle_timeout(now);
                }
                None => break,
            }
        }
    }
    assert_eq!(answers, program.len(), "every line answered");
    c.finish(now)
}

fn timed_case(case: &SyntheticCase, what: &str) -> (f64, f64) {
    let program = program_lines(case);
    let cfg = ControllerConfig::for_rig(&case.rig).unwrap_or_else(|e| panic!("{e}"));
    let skin = PatchSkin::new(case.map.surface.clone(), case.base_from_head);
    let report = drive(SimController::new(cfg, Box::new(skin)).unwrap_or_else(|e| panic!("{e}")), &program);
    assert_every_dot_once(case, &report);
    let cycle = dot_cycle_s(&report);
    eprintln!(
        "{what}: {} dots, dot cycle {cycle:.3} s, program {:.2} s of arm time",
        case.plan.dots.len(),
        report.machine_time_s
    );
    (cycle, report.machine_time_s)
}

#[test]
fn xyzab_program_enters_every_dot_once_along_the_normal() {
    let rig = Rig::from_toml_str(XYZAB_RIG_TOML).expect("xyzab rig");
    let case = synthetic_case_for(24, rig);
    run_case(&case, 5);
}

#[test]
fn joints_program_enters_every_dot_once_along_the_normal() {
    let rig = Rig::from_toml_str(SIX_AXIS_RIG_TOML).expect("6-axis rig");
    let case = synthetic_case_for(16, rig);
    run_case(&case, 6);
}

/// The dot cycle at the rig's dynamics, with a host that never makes the machine wait: the
/// plunge (3 mm at 600 mm/min), the 50 ms dwell and the retract dominate; a 30,000-dot head
/// must fit in 60 minutes of arm time (0.12 s per dot is the floor set by the plunge feed).
#[test]
fn dot_cycle_time_at_the_rig_dynamics() {
    let (c5, _) = timed_case(&synthetic_case_for(60, Rig::from_toml_str(XYZAB_RIG_TOML).expect("rig")), "xyzab");
    let (c6, _) = timed_case(&synthetic_case_for(40, Rig::from_toml_str(SIX_AXIS_RIG_TOML).expect("rig")), "joints");
    // The same plan on the default xyz rig, for comparison (vertical needle: no angle check).
    let case = synthetic_case_for(60, Rig::default_sim());
    let cfg = ControllerConfig::for_rig(&case.rig).unwrap_or_else(|e| panic!("{e}"));
    let skin = PatchSkin::new(case.map.surface.clone(), case.base_from_head);
    let report =
        drive(SimController::new(cfg, Box::new(skin)).unwrap_or_else(|e| panic!("{e}")), &program_lines(&case));
    assert_eq!(report.entries.len(), 60);
    eprintln!(
        "xyz: 60 dots, dot cycle {:.3} s, program {:.2} s of arm time",
        dot_cycle_s(&report),
        report.machine_time_s
    );
    for (what, c) in [("xyzab", c5), ("joints", c6)] {
        assert!(c > 0.3 && c < 1.5, "{what}: dot cycle {c} s");
    }
}

#[test]
fn stock_grbl_xyz_still_rejects_an_a_word_over_the_pty() {
    let rig = Rig::default_sim();
    let mut cfg = ControllerConfig::for_rig(&rig).expect("xyz rig");
    cfg.time_scale = TIME_SCALE;
    assert_eq!(cfg, ControllerConfig { time_scale: TIME_SCALE, ..ControllerConfig::new(rig.dynamics) });
    let controller = SimController::new(cfg, Box::new(smp_sim::controller::NoSkin)).expect("controller");
    let program = ["G21 G90 G94".to_string(), "G1 X10 Y0 Z300 A5 F3000".to_string(), "G1 X10 F3000".to_string()];
    let out = stream(controller, &program);
    assert_eq!(out.answers, vec!["ok", "error:20", "ok"]);
    for s in &out.statuses {
        let mpos = s.split('|').find_map(|f| f.strip_prefix("MPos:")).expect("MPos");
        assert_eq!(mpos.split(',').count(), 3, "{s}");
    }
}

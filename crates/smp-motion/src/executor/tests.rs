//! The journaling rules against a scripted fake controller on an in-memory link: it answers
//! every line at once (`ok`, or what the script says), answers `?`, `!` and Ctrl-X as grbl
//! does, and checks from a second connection to the journal that each plunge line arrives
//! only after its dot is durably `sent`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use smp_gcode::{compile, verify, ProgramLine};
use smp_store::SessionMeta;
use smp_testkit::synthetic_case;

use super::*;
use crate::control::{Control, ExecutorState, ExecutorUpdate, OperatorCommand};
use crate::core::ExecutorCore;
use crate::error::FaultKind;
use smp_gcode::LineRole;

#[derive(Debug, Clone, Copy)]
enum Reply {
    Error(u16),
    Alarm(u16),
    /// The controller resets instead of executing the line; the rest of the chunk is lost.
    Reset,
    /// No answer to this line nor to any later line.
    Silence,
    /// The write of the chunk holding this line fails.
    FailIo,
}

#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    realtime: Vec<u8>,
    /// Plunge lines that arrived while the journal did not hold their dot as sent.
    violations: Vec<String>,
    plunges_checked: usize,
    /// For each line in `lines`, the `send` call that carried it.
    line_send_call: Vec<usize>,
    /// The `send` call during which the overrides changed.
    override_send_call: Option<usize>,
}

struct FakeGrbl {
    tx: mpsc::Sender<Input>,
    program: Vec<ProgramLine>,
    script: HashMap<usize, Reply>,
    state: &'static str,
    answers_status: bool,
    silent: bool,
    partial: Vec<u8>,
    journal: Option<Journal>,
    seen: Arc<Mutex<Seen>>,
    /// Precede every answer with lines no protocol rule knows (debug output, odd reports).
    junk: bool,
    /// Sent once, before the first line's answer.
    feedback: Option<&'static str>,
    /// The `Ov:` field of its status reports (`None`: reports carry none, like grbl 0.9).
    overrides: Option<&'static str>,
    /// After receiving this line (1-based), the overrides become the second value and a
    /// status report saying so goes out before the line's answer.
    override_change: Option<(usize, &'static str)>,
    /// Index of the `send` call being handled, and the call in which `override_change` fired.
    send_calls: usize,
}

impl FakeGrbl {
    fn new(program: &Program, journal_path: Option<&PathBuf>) -> (Self, mpsc::Receiver<Input>, Arc<Mutex<Seen>>) {
        let (tx, rx) = mpsc::channel(100_000);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let fake = FakeGrbl {
            tx,
            program: program.lines.clone(),
            script: HashMap::new(),
            state: "Idle",
            answers_status: true,
            silent: false,
            partial: Vec::new(),
            journal: journal_path.map(|p| Journal::open(p).expect("second connection")),
            seen: seen.clone(),
            junk: false,
            feedback: None,
            overrides: Some("100,100,100"),
            override_change: None,
            send_calls: 0,
        };
        (fake, rx, seen)
    }

    fn reply(&self, text: &str) {
        self.tx.try_send(Input::Bytes(text.as_bytes().to_vec())).expect("test channel has room");
    }

    fn status(&self) -> String {
        let ov = self.overrides.map(|o| format!("|Ov:{o}")).unwrap_or_default();
        format!("<{}|MPos:0.000,0.000,0.000|FS:0,0{ov}>\r\n", self.state)
    }
}

impl Link for FakeGrbl {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut seen = self.seen.lock().expect("lock");
        self.send_calls += 1;
        for &b in bytes {
            match b {
                b'?' => {
                    seen.realtime.push(b);
                    if self.answers_status {
                        self.reply(&self.status());
                    }
                }
                b'!' => {
                    seen.realtime.push(b);
                    self.state = "Hold:0";
                }
                b'~' => seen.realtime.push(b),
                0x18 => {
                    seen.realtime.push(b);
                    self.state = "Idle";
                    self.silent = false;
                    self.reply("\r\nGrbl 1.1h ['$' for help]\r\n");
                }
                b'\n' => {
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
                    seen.lines.push(line.clone());
                    seen.line_send_call.push(self.send_calls);
                    let idx = seen.lines.len() - 1;
                    if let (Some(j), Some(pl)) = (&self.journal, self.program.get(idx)) {
                        if let (LineRole::Plunge, Some(d)) = (pl.role, pl.dot_id) {
                            seen.plunges_checked += 1;
                            let s = j.dot_state(d).expect("state");
                            if s != DotState::Sent {
                                seen.violations.push(format!("plunge of dot {d} written while it is {}", s.as_str()));
                            }
                        }
                    }
                    if self.silent {
                        continue;
                    }
                    if let Some(f) = self.feedback.take() {
                        self.reply(f);
                    }
                    if let Some((at, ov)) = self.override_change {
                        if at == idx + 1 {
                            self.overrides = Some(ov);
                            self.state = "Run";
                            self.reply(&self.status());
                            seen.override_send_call = Some(self.send_calls);
                        }
                    }
                    if self.junk {
                        self.reply(
                            "[MSG:debug 1]\r\n>>> stepper isr 42us\r\n<Run|MPos:0.000,0.000,0.000|Zz:1|FS:0,0>\r\n",
                        );
                    }
                    match self.script.get(&(idx + 1)) {
                        None => self.reply("ok\r\n"),
                        Some(Reply::Error(c)) => self.reply(&format!("error:{c}\r\n")),
                        Some(Reply::Alarm(c)) => {
                            self.state = "Alarm";
                            self.reply(&format!("ALARM:{c}\r\n"));
                            self.silent = true;
                        }
                        Some(Reply::Reset) => {
                            self.reply("\r\nGrbl 1.1h ['$' for help]\r\n");
                            return Ok(()); // the rest of this chunk is lost with the buffer
                        }
                        Some(Reply::Silence) => self.silent = true,
                        Some(Reply::FailIo) => {
                            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "cable pulled"))
                        }
                    }
                }
                _ => self.partial.push(b),
            }
        }
        Ok(())
    }
}

struct Case {
    _dir: tempfile::TempDir,
    path: PathBuf,
    journal: Journal,
    verified: VerifiedProgram,
    plan: smp_core::plan::SessionPlan,
}

fn case(n: usize) -> Case {
    case_in(n, smp_gcode::Dialect::Grbl)
}

/// [`case`] compiled for a controller of `dialect`.
fn case_in(n: usize, dialect: smp_gcode::Dialect) -> Case {
    let c = synthetic_case(n);
    let options = smp_gcode::CompileOptions { dialect };
    let program = smp_gcode::compile_with(&c.plan, &c.rig, &c.base_from_head, &options).expect("compiles");
    let verified = verify(program, &c.plan, &c.map, &c.rig, &c.base_from_head).expect("verifies");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal.sqlite");
    let meta = SessionMeta {
        patient: "synthetic".into(),
        session: c.plan.session,
        rig_name: c.rig.name.clone(),
        seed: 7,
        plan_json: "{}".into(),
    };
    let mut journal = Journal::create(&path, &meta).expect("journal");
    journal.insert_plan(&c.plan).expect("plan");
    Case { _dir: dir, path, journal, verified, plan: c.plan }
}

fn test_cfg() -> ExecuteConfig {
    ExecuteConfig {
        ack_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(500),
        fault_settle: Duration::from_millis(300),
        final_idle_timeout: Duration::from_millis(500),
        record_transcript: true,
        ..ExecuteConfig::default()
    }
}

fn run_blocking(
    program: &Program,
    fake: FakeGrbl,
    rx: mpsc::Receiver<Input>,
    journal: &mut Journal,
    cfg: &ExecuteConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<ExecutionReport, MotionError> {
    run(program, fake, rx, journal, cfg, progress)
}

/// Line number (1-based) of the first line of `role` for dot index `k` of the program.
fn line_of(program: &Program, k: usize, role: LineRole) -> usize {
    let d = program.lines.iter().filter(|l| l.role == LineRole::Plunge).nth(k).and_then(|l| l.dot_id).expect("dot");
    program.lines.iter().position(|l| l.dot_id == Some(d) && l.role == role).expect("line") + 1
}

fn dot_ids(program: &Program) -> Vec<u32> {
    program.lines.iter().filter(|l| l.role == LineRole::Plunge).filter_map(|l| l.dot_id).collect()
}

#[test]
fn every_dot_is_executed_once_and_journaled_before_its_plunge() {
    let mut c = case(25);
    let program = c.verified.program().clone();
    let (fake, rx, seen) = FakeGrbl::new(&program, Some(&c.path));
    let mut calls = Vec::new();
    let report =
        run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |p| calls.push(p)).expect("clean run");
    assert_eq!(report.dots_executed, 25);
    assert_eq!(report.dots_total, 25);
    assert_eq!(report.lines_sent, program.lines.len());
    assert_eq!(report.lines_acked, program.lines.len());
    assert!(report.dots_uncertain.is_empty());
    assert_eq!(calls.len(), 25);
    assert!(calls.iter().enumerate().all(|(i, p)| p.dots_done == i + 1 && p.dots_total == 25));
    assert_eq!(calls.iter().filter_map(|p| p.last_dot).collect::<Vec<_>>(), dot_ids(&program));
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.plunges_checked, 25);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.lines.len(), program.lines.len(), "each line written exactly once");
    let counts = c.journal.state_counts().expect("counts");
    assert_eq!(counts[&DotState::Executed], 25);
    for d in dot_ids(&program) {
        let chain: Vec<_> = c.journal.dot_events(Some(d)).expect("events").iter().map(|e| e.to).collect();
        assert_eq!(chain, [DotState::Planned, DotState::Sent, DotState::Accepted, DotState::Executed]);
    }
    // About one durable commit per dot (executed of one dot with sent of the next).
    assert!(report.journal_commits <= 25 + 3, "{} commits", report.journal_commits);
    let log = c.journal.commands(smp_store::RunId(1)).expect("log");
    assert_eq!(log.len(), program.lines.len());
    assert!(log.iter().all(|l| l.result == Some(smp_store::CommandResult::Ok) && l.sent_at_s.is_some()));
    assert_eq!(c.journal.dots_in_state(DotState::Planned).expect("planned"), Vec::<u32>::new());
}

#[test]
fn rejected_line_stops_holds_flushes_and_leaves_in_flight_dots_uncertain() {
    let mut c = case(12);
    let program = c.verified.program().clone();
    let (mut fake, rx, seen) = FakeGrbl::new(&program, Some(&c.path));
    let k = 5;
    fake.script.insert(line_of(&program, k, LineRole::Dwell), Reply::Error(20));
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("fault");
    let f = err.fault().expect("a fault report");
    assert!(matches!(f.kind, FaultKind::Rejected { code: 20, .. }), "{:?}", f.kind);
    let ids = dot_ids(&program);
    assert!(f.uncertain.contains(&ids[k]), "{:?}", f.uncertain);
    assert!(f.uncertain_journaled && f.controller_flushed, "{f}");
    assert_eq!(f.report.dots_executed, k);
    for d in &ids[..k] {
        assert_eq!(c.journal.dot_state(*d).expect("s"), DotState::Executed);
    }
    for d in &f.uncertain {
        assert_eq!(c.journal.dot_state(*d).expect("s"), DotState::Uncertain);
    }
    // Dots after the fault were never sent; their plunge lines were not written.
    let untouched: Vec<u32> =
        ids.iter().copied().filter(|d| !f.uncertain.contains(d) && !ids[..k].contains(d)).collect();
    assert!(!untouched.is_empty());
    for d in &untouched {
        assert_eq!(c.journal.dot_state(*d).expect("s"), DotState::Planned);
    }
    let seen = seen.lock().expect("lock");
    let hold = seen.realtime.iter().position(|b| *b == b'!').expect("feed hold sent");
    let reset = seen.realtime.iter().position(|b| *b == 0x18).expect("soft reset sent");
    assert!(hold < reset);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    let msg = err.to_string();
    assert!(msg.contains("error:20") && msg.contains("uncertain") && msg.contains("never resent"), "{msg}");
}

#[test]
fn resume_after_a_fault_plunges_only_planned_dots() {
    let mut c = case(10);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, None);
    fake.script.insert(line_of(&program, 3, LineRole::Plunge), Reply::Error(33));
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("fault");
    let uncertain = err.fault().expect("fault").uncertain.clone();
    assert!(!uncertain.is_empty());

    // Re-running the same program is refused: it would plunge executed and uncertain dots.
    let (fake, rx, seen) = FakeGrbl::new(&program, None);
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("refused");
    assert!(matches!(err, MotionError::DotsNotPlanned { .. }), "{err}");
    assert!(seen.lock().expect("lock").lines.is_empty());

    // A program for the resume candidates runs, and no dot is plunged twice overall.
    let remaining = c.journal.resume_candidates().expect("candidates");
    let cc = synthetic_case(10);
    let mut plan = c.plan.clone();
    plan.dots.retain(|d| remaining.contains(&d.id));
    let p2 = compile(&plan, &cc.rig, &cc.base_from_head).expect("compiles");
    let v2 = verify(p2, &plan, &cc.map, &cc.rig, &cc.base_from_head).expect("verifies");
    let (fake, rx, _) = FakeGrbl::new(v2.program(), Some(&c.path));
    let report = run_blocking(v2.program(), fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect("resume");
    assert_eq!(report.dots_executed, remaining.len());
    let counts = c.journal.state_counts().expect("counts");
    assert_eq!(counts[&DotState::Executed] + counts[&DotState::Uncertain], 10);
    assert_eq!(counts[&DotState::Uncertain], uncertain.len());
    for e in c.journal.dots().expect("dots") {
        let sends = c.journal.dot_events(Some(e.dot_id)).expect("ev").iter().filter(|v| v.to == DotState::Sent).count();
        assert_eq!(sends, 1, "dot {} sent {sends} times", e.dot_id);
    }
}

#[test]
fn alarm_at_start_refuses_and_sends_no_line() {
    let mut c = case(3);
    let program = c.verified.program().clone();
    let (mut fake, rx, seen) = FakeGrbl::new(&program, None);
    fake.state = "Alarm";
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("refused");
    assert!(matches!(err, MotionError::AlarmAtStart), "{err}");
    assert!(err.to_string().contains("$X"), "{err}");
    assert!(seen.lock().expect("lock").lines.is_empty());
    assert_eq!(c.journal.state_counts().expect("c")[&DotState::Planned], 3);
}

#[test]
fn silent_controller_is_refused_after_the_handshake_timeout() {
    let mut c = case(2);
    let program = c.verified.program().clone();
    let (mut fake, rx, seen) = FakeGrbl::new(&program, None);
    fake.answers_status = false;
    let t = Instant::now();
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("refused");
    assert!(matches!(err, MotionError::NoController { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let seen = seen.lock().expect("lock");
    assert!(seen.lines.is_empty());
    assert!(seen.realtime.len() <= 5, "status queries paced, not spun: {}", seen.realtime.len());
}

#[test]
fn controller_reset_mid_stream_is_a_fault_with_the_dot_uncertain() {
    let mut c = case(8);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, Some(&c.path));
    let k = 4;
    fake.script.insert(line_of(&program, k, LineRole::Plunge), Reply::Reset);
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("fault");
    let f = err.fault().expect("fault");
    assert_eq!(f.kind, FaultKind::ControllerReset);
    let ids = dot_ids(&program);
    assert_eq!(f.uncertain, vec![ids[k]]);
    assert!(f.controller_flushed);
    assert_eq!(c.journal.state_counts().expect("c")[&DotState::Executed], k);
}

#[test]
fn alarm_mid_stream_is_a_fault() {
    let mut c = case(6);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, None);
    fake.script.insert(line_of(&program, 2, LineRole::Approach), Reply::Alarm(2));
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("fault");
    let f = err.fault().expect("fault");
    assert_eq!(f.kind, FaultKind::Alarm { code: Some(2) });
    assert_eq!(c.journal.state_counts().expect("c")[&DotState::Executed], 2);
}

#[test]
fn ack_timeout_stops_and_marks_the_dot_uncertain() {
    let mut c = case(5);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, None);
    fake.script.insert(line_of(&program, 1, LineRole::Dwell), Reply::Silence);
    let t = Instant::now();
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("fault");
    let f = err.fault().expect("fault");
    assert!(matches!(f.kind, FaultKind::AckTimeout { .. }), "{:?}", f.kind);
    // The dot whose dwell went unanswered, and the next one if its plunge fit in the buffer.
    let ids = dot_ids(&program);
    assert_eq!(f.uncertain[0], ids[1], "{:?}", f.uncertain);
    assert!(f.uncertain.len() <= 2 && f.uncertain.iter().all(|d| ids[1..3].contains(d)), "{:?}", f.uncertain);
    assert!(t.elapsed() < Duration::from_secs(3));
    // No busy spin while waiting: the pump slept through the timeout.
    assert!(f.report.pump_cpu_s < 0.25, "pump used {} s CPU", f.report.pump_cpu_s);
}

#[test]
fn port_failure_is_a_fault_and_the_controller_is_not_assumed_flushed() {
    let mut c = case(6);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, None);
    fake.script.insert(line_of(&program, 3, LineRole::Retract), Reply::FailIo);
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("fault");
    let f = err.fault().expect("fault");
    assert!(matches!(f.kind, FaultKind::PortIo { .. }), "{:?}", f.kind);
    assert!(!f.controller_flushed);
    assert!(err.to_string().contains("reset it"), "{err}");
    for d in &f.uncertain {
        assert_eq!(c.journal.dot_state(*d).expect("s"), DotState::Uncertain);
    }
}

#[test]
fn malformed_programs_are_refused_before_any_byte() {
    let c = case(3);
    let mut program = c.verified.program().clone();
    let dwell = program.lines.iter().position(|l| l.role == LineRole::Dwell).expect("dwell");
    program.lines.remove(dwell);
    let err = ExecutorCore::plunge_order(&program).expect_err("no dwell");
    assert!(err.to_string().contains("dwell"), "{err}");

    let mut program = c.verified.program().clone();
    let plunge = program.lines.iter().position(|l| l.role == LineRole::Plunge).expect("p");
    program.lines[plunge].text.push_str(" (why?)");
    let mut c = c;
    let (fake, rx, seen) = FakeGrbl::new(&program, None);
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("bad line");
    assert!(matches!(err, MotionError::BadProgram { .. }), "{err}");
    assert!(seen.lock().expect("lock").realtime.is_empty());
}

#[test]
fn journal_of_another_session_is_refused() {
    let mut c = case(2);
    let mut program = c.verified.program().clone();
    program.session = 2;
    let (fake, rx, _) = FakeGrbl::new(&program, None);
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("refused");
    assert!(matches!(err, MotionError::SessionMismatch { program: 2, journal: 1 }), "{err}");
}

/// A Marlin stand-in: answers every line `ok` (the handshake's `M220` and `M400` too), after junk when
/// asked, and records the commands it received with their numbers.
struct FakeMarlin {
    tx: mpsc::Sender<Input>,
    partial: Vec<u8>,
    junk: bool,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Link for FakeMarlin {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        for &b in bytes {
            if b != b'\n' {
                self.partial.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            self.lines.lock().expect("lock").push(line);
            let mut reply = String::new();
            if self.junk {
                reply += "echo:debug on\nX:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0\nT:21.3 /0.0 B:20.9\n";
            }
            reply += "ok\n";
            self.tx.try_send(Input::Bytes(reply.into_bytes())).expect("room");
        }
        Ok(())
    }
}

#[test]
fn unknown_controller_lines_are_logged_and_tolerated_for_every_protocol() {
    for protocol in [Protocol::Grbl, Protocol::GrblSendResponse] {
        let mut c = case(6);
        let program = c.verified.program().clone();
        let (mut fake, rx, _) = FakeGrbl::new(&program, Some(&c.path));
        fake.junk = true;
        let cfg = ExecuteConfig { protocol, ..test_cfg() };
        let report = run_blocking(&program, fake, rx, &mut c.journal, &cfg, &mut |_| {}).expect("clean run");
        assert_eq!(report.dots_executed, 6, "{protocol}");
        assert!(report.unknown_lines.iter().any(|l| l == ">>> stepper isr 42us"), "{protocol}");
        assert!(report.unknown_lines_total >= program.lines.len() as u64, "{protocol}");
        assert!(report.controller_messages.iter().any(|m| m == "debug 1"), "{protocol}");
        assert!(report.errors.is_empty(), "{protocol}: {:?}", report.errors);
    }
    let mut c = case_in(6, smp_gcode::Dialect::Marlin);
    let program = c.verified.program().clone();
    let (tx, rx) = mpsc::channel(100_000);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeMarlin { tx, partial: Vec::new(), junk: true, lines: lines.clone() };
    let cfg = ExecuteConfig { protocol: Protocol::Marlin, ..test_cfg() };
    let report = run(&program, fake, rx, &mut c.journal, &cfg, &mut |_| {}).expect("clean run");
    assert_eq!(report.dots_executed, 6);
    assert!(report.unknown_lines.iter().any(|l| l.starts_with("T:21.3")), "{:?}", report.unknown_lines);
    assert!(report.controller_messages.iter().any(|m| m == "echo:debug on"));
    let lines = lines.lock().expect("lock");
    assert_eq!(lines[..2], ["M220", "M400"], "handshake: feed rate percentage, then all moves done");
    assert!(lines[2].starts_with("N0 M110 N0*"));
    assert_eq!(lines.last().map(|l| l.starts_with(&format!("N{} M400*", lines.len() - 3))), Some(true), "{lines:?}");
    // This stand-in never answers `FR:`: the run says the percentage went unchecked.
    assert!(report.warnings.iter().any(|w| w.contains("feed rate percentage")), "{:?}", report.warnings);
    assert!(report.warnings.iter().any(|w| w.contains("no feed hold")), "{:?}", report.warnings);
    assert!(report.pause_run_on.is_some_and(|r| r.lines == 4 && r.plunges >= 1 && r.seconds > 0.0));
    // Dwells went out in Marlin's dialect (seconds), as the verified text has them.
    assert!(lines.iter().any(|l| l.contains(" G4 S")) && !lines.iter().any(|l| l.contains("G4 P")));
}

#[test]
fn operator_commands_on_an_in_memory_grbl() {
    let mut c = case(10);
    let program = c.verified.program().clone();
    let (fake, rx, seen) = FakeGrbl::new(&program, Some(&c.path));
    let (ctl_tx, ctl_rx) = crate::control::unbounded_channel();
    // Resume before any pause is ignored (and reported not applied).
    ctl_tx.send(OperatorCommand::Resume).expect("send");
    let mut states = Vec::new();
    let mut observer = |u: ExecutorUpdate| match u {
        ExecutorUpdate::State(s) => states.push(s),
        ExecutorUpdate::Progress(p) if p.dots_done == 3 => {
            let _ = ctl_tx.send(OperatorCommand::Abort);
        }
        _ => {}
    };
    let control = Control { commands: Some(ctl_rx), observer: &mut observer };
    let err = run_controlled(&program, fake, rx, &mut c.journal, &test_cfg(), control).expect_err("aborted");
    let f = err.fault().expect("fault report");
    assert_eq!(f.kind, FaultKind::Aborted { emergency: false });
    assert!(f.report.aborted);
    assert_eq!(f.report.operator_commands, vec![(OperatorCommand::Resume, false), (OperatorCommand::Abort, true)]);
    assert_eq!(states.first(), Some(&ExecutorState::Connecting));
    assert_eq!(states.last(), Some(&ExecutorState::Aborted));
    let seen = seen.lock().expect("lock");
    let hold = seen.realtime.iter().position(|b| *b == b'!').expect("feed hold");
    assert!(seen.realtime[hold..].contains(&0x18), "soft reset after the hold");
    assert!(seen.violations.is_empty());
    // Nothing beyond the dots in flight was touched.
    let counts = c.journal.state_counts().expect("counts");
    assert_eq!(counts.get(&DotState::Executed).copied().unwrap_or(0), f.report.dots_executed);
    assert_eq!(counts.get(&DotState::Uncertain).copied().unwrap_or(0), f.uncertain.len());
    assert!(counts.get(&DotState::Planned).copied().unwrap_or(0) >= 10 - 3 - 3);
}

/// The structural property behind "feed hold within 5 ms": the hold goes out while the pump
/// thread is stuck (here in the observer, standing in for a long journal fsync), and the
/// resume never overtakes it.
#[test]
fn feed_hold_is_written_while_the_pump_is_blocked() {
    let mut c = case(8);
    let program = c.verified.program().clone();
    let (fake, rx, seen) = FakeGrbl::new(&program, Some(&c.path));
    let (ctl_tx, ctl_rx) = crate::control::unbounded_channel();
    let block = Duration::from_millis(300);
    let mut blocked: Option<(Instant, Instant)> = None;
    let mut applied = Vec::new();
    let mut observer = |u: ExecutorUpdate| match u {
        ExecutorUpdate::Progress(p) if p.dots_done == 3 => {
            let tx = ctl_tx.clone();
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                let _ = tx.send(OperatorCommand::Pause);
                std::thread::sleep(Duration::from_millis(300));
                let _ = tx.send(OperatorCommand::Resume);
            });
            let from = Instant::now();
            std::thread::sleep(block);
            blocked = Some((from, Instant::now()));
            drop(sender);
        }
        ExecutorUpdate::Command(a) => applied.push(a),
        _ => {}
    };
    let control = Control { commands: Some(ctl_rx), observer: &mut observer };
    let report = run_controlled(&program, fake, rx, &mut c.journal, &test_cfg(), control).expect("run");
    assert_eq!(report.dots_executed, 8);
    let (from, until) = blocked.expect("observer blocked");
    let pause = applied.iter().find(|a| a.command == OperatorCommand::Pause).expect("pause applied");
    let t0 = report.started.expect("a live run has a start");
    let written = t0 + pause.written_at.expect("hold written");
    assert!(written > from && written < until, "the `!` went out while the pump was blocked");
    // The figure itself is the bench's; here only that the hold did not wait for the pump.
    let latency = written.duration_since(t0 + pause.received_at);
    assert!(latency < block, "hold latency {latency:?}");
    assert!(report.feed_hold_latency_max_s < block.as_secs_f64());
    let seen = seen.lock().expect("lock");
    let hold = seen.realtime.iter().position(|b| *b == b'!').expect("hold");
    let resume = seen.realtime.iter().position(|b| *b == b'~').expect("resume");
    assert!(hold < resume, "the resume never overtakes the hold");
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    // The wire transcript has the hold exactly once, before the resume.
    let t = &report.transcript;
    assert_eq!(t.iter().filter(|l| *l == "> !").count(), 1, "{t:?}");
    let (h, r) = (t.iter().position(|l| l == "> !"), t.iter().position(|l| l == "> ~"));
    assert!(h < r, "{t:?}");
}

/// Every grbl 1.1 response form is mapped: typed feedback goes with the controller's messages,
/// status reports with every field parse, only real noise is "unknown", and an alarm the
/// protocol core could not number is still an alarm. (The parsing itself is tested in
/// smp-gcode's `grbl.rs`; this is the executor's use of it.)
#[test]
fn every_grbl_response_form_is_mapped() {
    let mut c = case(4);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, Some(&c.path));
    fake.feedback = Some(
        "[MSG:Caution: Unlocked]\r\n[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]\r\n[PRB:0.000,0.000,1.492:1]\r\n\
         [echo:G1X1]\r\n[VER:1.1h.20190825:]\r\n[OPT:V,15,128]\r\n[G54:0.000,0.000,0.000]\r\n[TLO:0.000]\r\n\
         $110=3000.000\r\n>G21:ok\r\n\
         <Run|WPos:1.000,2.000,3.000|Bf:15,128|FS:600,9000|Ov:100,100,100|WCO:0.000,0.000,0.000|Ln:7|Pn:XZ|A:S>\r\n\
         debug: stepper isr 42us\r\n",
    );
    let report = run(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect("clean run");
    assert_eq!(report.dots_executed, 4);
    assert_eq!(report.unknown_lines, vec!["debug: stepper isr 42us".to_string()], "only noise is unknown");
    for m in
        ["Caution: Unlocked", "[GC:G0 G54", "[PRB:", "[echo:", "[VER:", "[OPT:", "[G54:", "[TLO:", "$110=", ">G21:ok"]
    {
        assert!(report.controller_messages.iter().any(|x| x.starts_with(m)), "{m}: {:?}", report.controller_messages);
    }
    assert!(report.status_reports > 0);

    // A grbl derivative's banner mid-stream is a controller reset: the dot in flight is
    // uncertain, never assumed done.
    let mut c = case(6);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, Some(&c.path));
    fake.feedback = Some("\r\nGrblHAL 1.1f ['$' or '$HELP' for help]\r\n");
    let err = run(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("reset");
    let f = err.fault().expect("fault");
    assert_eq!(f.kind, FaultKind::ControllerReset, "{err}");
    assert!(f.report.dots_executed < 6);

    // A textual alarm mid-stream stops the run like a numbered one.
    let mut c = case(6);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, Some(&c.path));
    fake.feedback = Some("ALARM: Hard/soft limit\r\n");
    let err = run(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("alarm");
    assert_eq!(err.fault().map(|f| f.kind.clone()), Some(FaultKind::Alarm { code: None }), "{err}");
    let f = err.fault().expect("fault");
    assert!(f.report.controller_messages.iter().any(|m| m == "ALARM:Hard/soft limit"), "{:?}", f.report);

    // A status report with one malformed field: the rest is used, the field becomes a note.
    let mut c = case(3);
    let program = c.verified.program().clone();
    let (mut fake, rx, _) = FakeGrbl::new(&program, Some(&c.path));
    fake.feedback = Some("<Run|MPos:1.000,2.000|FS:600,9000|Ln:x>\r\n");
    let report = run(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect("clean run");
    assert_eq!(report.dots_executed, 3);
    assert_eq!(report.protocol_notes_total, 2, "{:?}", report.protocol_notes);
    assert!(report.protocol_notes.iter().any(|n| n.contains("MPos:1.000,2.000")), "{:?}", report.protocol_notes);
    assert!(report.unknown_lines.is_empty(), "{:?}", report.unknown_lines);
}

/// Patient safety: a feed override of 200 % would double the plunge feed the verifier proved.
/// The status report that shows it stops the run with a named fault before any further plunge
/// line is written; the controller is held, then flushed; dots in flight are uncertain.
#[test]
fn feed_override_mid_stream_stops_before_the_next_plunge() {
    // The report arrives after a dot's dwell, or after an approach: then the next plunge is
    // usually in the same batch, behind the journal commit, and must still not go out.
    for (k, role) in [(2, LineRole::Dwell), (1, LineRole::Approach), (2, LineRole::Approach), (3, LineRole::Approach)] {
        let mut c = case(8);
        let program = c.verified.program().clone();
        let (mut fake, rx, seen) = FakeGrbl::new(&program, Some(&c.path));
        fake.override_change = Some((line_of(&program, k, role), "200,100,100"));
        let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("fault");
        let f = err.fault().expect("fault report");
        assert_eq!(f.kind, FaultKind::OverrideActive { feed_pct: 200, rapid_pct: 100 });
        let msg = err.to_string();
        assert!(msg.contains("200 %") && msg.contains("0x90") && msg.contains("resume"), "{msg}");
        assert!(f.controller_flushed && f.uncertain_journaled, "{f}");
        let seen = seen.lock().expect("lock");
        let call = seen.override_send_call.expect("override changed");
        // Lines the pump wrote after the report existed: none of them is a plunge.
        let late: Vec<&String> = (0..seen.lines.len())
            .filter(|i| seen.line_send_call[*i] > call && program.lines[*i].role == LineRole::Plunge)
            .map(|i| &seen.lines[i])
            .collect();
        assert!(late.is_empty(), "{role:?} of dot {k}: plunge written after the override report: {late:?}");
        // The hold went out after the override, then the reset.
        let hold = seen.realtime.iter().position(|b| *b == b'!').expect("feed hold");
        assert!(seen.realtime[hold..].contains(&0x18));
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        // Nothing after the next dot was touched; what was journaled sent is uncertain.
        let ids = dot_ids(&program);
        for d in &ids[k + 2..] {
            assert_eq!(c.journal.dot_state(*d).expect("s"), DotState::Planned, "dot {d}");
        }
        for d in &f.uncertain {
            assert_eq!(c.journal.dot_state(*d).expect("s"), DotState::Uncertain);
        }
        assert_eq!(f.report.last_overrides.map(|o| o.feed_pct), Some(200));
    }
}

#[test]
fn overrides_at_start_refuse_and_spindle_override_is_a_warning() {
    // Feed 100 %, rapid 50 %: refused before any line.
    let mut c = case(3);
    let program = c.verified.program().clone();
    let (mut fake, rx, seen) = FakeGrbl::new(&program, None);
    fake.overrides = Some("100,50,100");
    let err = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("refused");
    assert!(matches!(err, MotionError::OverrideActiveAtStart { feed_pct: 100, rapid_pct: 50 }), "{err}");
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    assert!(seen.lock().expect("lock").lines.is_empty());
    assert_eq!(c.journal.state_counts().expect("c")[&DotState::Planned], 3);

    // Spindle at 80 %: the run goes ahead with a warning.
    let mut c = case(3);
    let (mut fake, rx, _) = FakeGrbl::new(&program, None);
    fake.overrides = Some("100,100,80");
    let report = run_blocking(&program, fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect("runs");
    assert_eq!(report.dots_executed, 3);
    assert!(report.warnings.iter().any(|w| w.contains("80 %")), "{:?}", report.warnings);

    // A controller that never reports overrides: the run starts after the bounded wait.
    let mut c = case(3);
    let (mut fake, rx, _) = FakeGrbl::new(&program, None);
    fake.overrides = None;
    let cfg = ExecuteConfig { override_report_wait: Duration::from_millis(100), ..test_cfg() };
    let report = run_blocking(&program, fake, rx, &mut c.journal, &cfg, &mut |_| {}).expect("runs");
    assert_eq!(report.dots_executed, 3);
    assert!(report.warnings.iter().any(|w| w.contains("Ov:")), "{:?}", report.warnings);

    // An unreadable override field mid-stream stops the run too.
    let mut c = case(6);
    let (mut fake, rx, _) = FakeGrbl::new(&program_of(&c), None);
    let at = line_of(&program_of(&c), 1, LineRole::Dwell);
    fake.override_change = Some((at, "1x0,100,100"));
    let err = run_blocking(&program_of(&c), fake, rx, &mut c.journal, &test_cfg(), &mut |_| {}).expect_err("fault");
    assert!(matches!(err.fault().map(|f| &f.kind), Some(FaultKind::OverrideUnreadable { .. })), "{err}");
}

fn program_of(c: &Case) -> Program {
    c.verified.program().clone()
}

#[test]
fn a_program_in_another_controllers_dialect_is_refused_not_rewritten() {
    let c = case(2);
    let cfg = ExecuteConfig { protocol: Protocol::Marlin, ..test_cfg() };
    let e = ExecutorCore::new(c.verified.program(), &cfg).expect_err("grbl text on Marlin");
    assert!(
        e.to_string().contains("grbl's dialect") && e.to_string().contains("compile and verify it for marlin"),
        "{e}"
    );
    let m = case_in(2, smp_gcode::Dialect::Marlin);
    let grbl = ExecuteConfig { protocol: Protocol::Grbl, ..test_cfg() };
    assert!(ExecutorCore::new(m.verified.program(), &grbl).is_err());
    assert!(ExecutorCore::new(m.verified.program(), &cfg).is_ok());
}

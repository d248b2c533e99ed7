//! Golden transcripts, as Klipper's batch tests do: a few scenarios run the session's sans-I/O
//! cores (`SessionCore`, `ExecutorCore`) against the sans-I/O simulated controller under
//! virtual time, and write what happened as text: the bytes each way with their times, the
//! journal's dot transitions, the executor's states and the session's decisions. Each is
//! compared byte for byte with `tests/golden/NAME.txt`; a refactor that changes no behaviour
//! leaves them unchanged.
//!
//! A change of behaviour that is meant: `SMP_BLESS=1 cargo test -p smp-tests --test scenarios
//! golden_transcripts::` rewrites the files, and the diff goes into review with the change.
//!
//! No threads, no pty, no wall clock: the same inputs give the same bytes on any machine, so
//! the figures here are exact and a loaded CI machine cannot change them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nalgebra::Isometry3;
use smp_core::plan::DotState;
use smp_motion::core::{Action, ExecutorCore, GateNeed, JournalOp, LogLine, Step};
use smp_motion::wire::{command_bytes, Forwarded, Gate};
use smp_motion::{ExecuteConfig, ExecutionReport, ExecutorUpdate, MotionError, OperatorCommand, Protocol};
use smp_session::core::{Action as SessionAction, CoreConfig, Input as SessionInput, SessionCore};
use smp_sim::controller::{ControllerConfig, Fault, PatchSkin, ProtocolMode, SimController};
use smp_store::{Durability, Journal, RunId, SessionMeta};
use smp_testkit::{synthetic_case, SyntheticCase};
use smp_vision::tracking::TrackEvent;

/// Longest virtual time a scenario may take before it is called stuck.
const VIRTUAL_LIMIT: Duration = Duration::from_secs(600);

/// When the harness steps in (operator commands, a head drift): at a time, or once the
/// simulated needle has entered the skin this many times (plus a delay).
#[derive(Debug, Clone, Copy)]
enum When {
    AfterEntries { entries: usize, delay: Duration },
}

#[derive(Debug, Clone)]
enum Intervention {
    Operator(OperatorCommand),
    Drift,
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    dots: usize,
    protocol: Protocol,
    faults: Vec<Fault>,
    dwell_s: Option<f64>,
    /// Each intervention's trigger counts from the previous one's.
    script: Vec<(When, Intervention)>,
}

/// One run of an executor core against the controller, with the operator gate.
struct Harness {
    ctl: SimController,
    now: Duration,
    out: String,
    journal: Journal,
    run: Option<RunId>,
    status_period: Option<Duration>,
    next_status: Option<Duration>,
    gate: Gate,
    /// Pending interventions and the time the current one fires (once triggered).
    script: Vec<(When, Intervention)>,
    armed_at: Option<Duration>,
    entries_seen: usize,
    /// The protocol has real-time bytes (grbl).
    realtime: bool,
}

fn secs(d: Duration) -> String {
    format!("{:>11.6}", d.as_secs_f64())
}

impl Harness {
    fn log(&mut self, what: impl AsRef<str>) {
        let _ = writeln!(self.out, "{} {}", secs(self.now), what.as_ref());
    }

    /// What the controller has sent, handed to `core` and logged.
    fn deliver(&mut self, core: &mut ExecutorCore) -> bool {
        let mut buf = Vec::new();
        self.ctl.poll_transmit(&mut buf);
        if buf.is_empty() {
            return false;
        }
        self.log(format!("ctl> \"{}\"", escaped(&buf)));
        core.handle_received(&buf);
        true
    }

    fn write(&mut self, bytes: &[u8]) {
        self.log(format!("host> \"{}\"", escaped(bytes)));
        self.ctl.handle_bytes(bytes, self.now);
    }

    /// The next intervention, when its trigger has been met: arms it, and returns it once due.
    fn due_intervention(&mut self) -> Option<Intervention> {
        let (when, what) = self.script.first().cloned()?;
        let When::AfterEntries { entries, delay } = when;
        if self.armed_at.is_none() && self.ctl.entries().len() >= self.entries_seen + entries {
            self.armed_at = Some(self.now + delay);
        }
        match self.armed_at {
            Some(t) if t <= self.now => {
                self.script.remove(0);
                self.armed_at = None;
                self.entries_seen = self.ctl.entries().len();
                Some(what)
            }
            _ => None,
        }
    }

    /// An operator command through the gate, as the live relay writes it.
    fn operator(&mut self, core: &mut ExecutorCore, cmd: OperatorCommand, realtime: bool, t0: Duration) {
        let applied = self.gate.admit(cmd);
        let bytes = if applied { command_bytes(cmd, realtime).to_vec() } else { Vec::new() };
        self.log(format!("operator {cmd:?} {}", if applied { "admitted" } else { "refused" }));
        if !bytes.is_empty() {
            self.write(&bytes);
        }
        let at = self.now - t0;
        core.set_operator_stop(self.gate.stop);
        core.handle_forwarded(Forwarded {
            command: cmd,
            received_at: at,
            applied,
            written_at: (!bytes.is_empty()).then_some(at),
            bytes,
            write_error: None,
        });
    }

    /// Runs `core` to its end; `session` hears the executor's states and decides on drifts.
    fn run(
        &mut self,
        mut core: ExecutorCore,
        protocol: Protocol,
        mut session: Option<&mut SessionCore>,
    ) -> Result<ExecutionReport, MotionError> {
        let t0 = self.now;
        self.gate = Gate::default();
        // Waits that found nothing to do at the same virtual time: a core that keeps asking to
        // wait for a time already past would spin here.
        let mut idle_at_same_time = 0u32;
        loop {
            assert!(self.now < VIRTUAL_LIMIT, "stuck: {}", tail(&self.out));
            if let Some(what) = self.due_intervention() {
                match what {
                    Intervention::Operator(cmd) => self.operator(&mut core, cmd, protocol.has_realtime(), t0),
                    Intervention::Drift => {
                        self.log("tracker: drift 2.0 mm");
                        let s = session.as_deref_mut().expect("a drift needs the session core");
                        s.handle(SessionInput::Track(TrackEvent::Drift {
                            at: self.now,
                            translation_mm: 2.0,
                            rotation_deg: 0.5,
                            base_from_head: Isometry3::identity(),
                        }));
                        while let Some(a) = s.poll_action() {
                            self.log(format!("session: {a:?}"));
                            if let SessionAction::Executor(cmd) = a {
                                self.operator(&mut core, cmd, protocol.has_realtime(), t0);
                            }
                        }
                    }
                }
            }
            match core.step(self.now - t0) {
                Step::Act(action) => self.act(&mut core, action, &mut session),
                Step::Wait(deadline) => {
                    if self.deliver(&mut core) {
                        continue;
                    }
                    // The next thing that happens: the core's deadline, the controller's next
                    // event, a status query, an armed intervention, or a needle entry.
                    let candidates = [
                        deadline.map(|d| t0 + d),
                        self.ctl.poll_timeout(),
                        self.status_period.and(self.next_status),
                        self.armed_at,
                    ];
                    let Some(next) = candidates.into_iter().flatten().min() else {
                        panic!("nothing will happen: {}", tail(&self.out));
                    };
                    if next <= self.now {
                        idle_at_same_time += 1;
                        assert!(
                            idle_at_same_time < 10_000,
                            "the core spins at {:?} (its deadline {deadline:?} from {t0:?}, the controller's {:?}): {}",
                            self.now,
                            self.ctl.poll_timeout(),
                            tail(&self.out)
                        );
                    } else {
                        idle_at_same_time = 0;
                    }
                    self.now = self.now.max(next);
                    if self.ctl.poll_timeout().is_some_and(|t| t <= self.now) {
                        self.ctl.handle_timeout(self.now);
                    }
                    if let (Some(p), Some(t)) = (self.status_period, self.next_status) {
                        if t <= self.now {
                            self.write(b"?");
                            self.next_status = Some(self.now + p);
                        }
                    }
                }
                Step::Done(result) => {
                    let _ = self.deliver(&mut core);
                    return *result;
                }
            }
        }
    }

    fn act(&mut self, core: &mut ExecutorCore, action: Action, session: &mut Option<&mut SessionCore>) {
        match action {
            Action::Write(bytes) => self.write(&bytes),
            Action::GuardedWrite { bytes, need } => {
                let open = match need {
                    GateNeed::Paused => self.gate.paused && self.gate.stop.is_none() && !self.gate.closed,
                    GateNeed::Running => !self.gate.paused && self.gate.stop.is_none() && !self.gate.closed,
                };
                if open {
                    self.write(&bytes);
                    core.handle_guarded_write(Some(Ok(self.now)));
                } else {
                    self.log(format!("gate refuses {:?} ({need:?} needed)", String::from_utf8_lossy(&bytes)));
                    core.handle_guarded_write(None);
                }
            }
            Action::Journal(op) => {
                let r = match op {
                    JournalOp::BeginRun => {
                        self.log("journal: run begins");
                        self.journal.begin_run().map(|id| self.run = Some(id))
                    }
                    JournalOp::SetStates { changes, at_s } => {
                        let text: Vec<String> = changes.iter().map(|(d, s)| format!("{d}:{}", s.as_str())).collect();
                        self.log(format!("journal: {}", text.join(" ")));
                        self.journal.set_dot_states(&changes, at_s)
                    }
                    JournalOp::EndRun { outcome } => {
                        self.log(format!("journal: run ends {outcome:?}"));
                        match self.run {
                            Some(id) => self.journal.end_run(id, &outcome),
                            None => Ok(()),
                        }
                    }
                };
                let _ = self.deliver(core);
                core.handle_journal(r);
            }
            Action::Log(line) => {
                if let Some(run) = self.run {
                    match line {
                        LogLine::Sent { line_no, text, dot, at_s } => {
                            self.journal.log_command_sent(run, line_no, &text, dot, at_s)
                        }
                        LogLine::Answer { line_no, result, at_s } => {
                            self.journal.log_command_answer(run, line_no, result, at_s)
                        }
                    }
                }
            }
            Action::StatusPeriod(p) => {
                // As the live wire: `?` is grbl's real-time byte; Marlin has none.
                self.status_period = p.filter(|p| !p.is_zero() && self.realtime);
                self.next_status = self.status_period.map(|p| self.now + p);
            }
            Action::GateFaultStopping => {
                self.gate.fault_stopping = true;
                self.status_period = None;
                self.log("gate: fault stopping");
            }
            Action::CloseGate => {
                self.gate.closed = true;
                self.status_period = None;
                core.handle_gate_closed();
            }
            Action::Update(ExecutorUpdate::State(s)) => {
                self.log(format!("executor: {}", s.as_str()));
                if let Some(sc) = session.as_deref_mut() {
                    sc.handle(SessionInput::Executor(s));
                    while let Some(a) = sc.poll_action() {
                        self.log(format!("session: {a:?}"));
                    }
                }
            }
            Action::Update(ExecutorUpdate::Command(c)) => {
                self.log(format!("executor applied {:?} (applied {})", c.command, c.applied));
            }
            Action::Update(ExecutorUpdate::Progress(_)) => {}
        }
    }

    fn states(&self) -> String {
        let mut out = String::new();
        for state in [DotState::Executed, DotState::Uncertain, DotState::Planned] {
            let ids = self.journal.dots_in_state(state).expect("journal states");
            let _ = write!(out, "{} {:?}; ", state.as_str(), ids);
        }
        out
    }
}

/// Bytes as ASCII text with escapes (`\r`, `\n`, `\x9e` for grbl's real-time bytes).
fn escaped(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect()
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn result_line(r: &Result<ExecutionReport, MotionError>) -> String {
    match r {
        Ok(rep) => format!("run completed: {} lines sent, {} dots executed", rep.lines_sent, rep.dots_executed),
        Err(e) => format!("run ended: {e}"),
    }
}

struct Built {
    case: SyntheticCase,
    harness: Harness,
    exec: ExecuteConfig,
    _dir: tempfile::TempDir,
}

fn build(s: &Scenario) -> Built {
    let mut case = synthetic_case(s.dots);
    if let Some(d) = s.dwell_s {
        case.plan.spec.dwell_s = d;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = SessionMeta {
        patient: "golden".into(),
        session: case.plan.session,
        rig_name: case.rig.name.clone(),
        seed: case.plan.spec.seed,
        plan_json: "{}".into(),
    };
    let mut journal = Journal::create(&dir.path().join("session.sqlite"), &meta).expect("journal");
    journal.insert_plan(&case.plan).expect("plan");
    journal.set_durability(Durability::ProcessCrash).expect("durability");
    let mut cfg = ControllerConfig::new(case.rig.dynamics);
    if s.protocol == Protocol::Marlin {
        cfg.protocol = ProtocolMode::Marlin;
    }
    cfg.faults.faults.extend(s.faults.iter().copied());
    let skin = PatchSkin::new(case.map.surface.clone(), case.base_from_head);
    let ctl = SimController::new(cfg, Box::new(skin)).expect("controller");
    let harness = Harness {
        ctl,
        now: Duration::ZERO,
        out: String::new(),
        journal,
        run: None,
        status_period: None,
        next_status: None,
        gate: Gate::default(),
        script: s.script.clone(),
        armed_at: None,
        entries_seen: 0,
        realtime: s.protocol.has_realtime(),
    };
    let exec = ExecuteConfig { protocol: s.protocol, ..ExecuteConfig::default() };
    Built { case, harness, exec, _dir: dir }
}

/// The program for what the journal still holds as planned (the session engine's own rule).
fn core_for_planned(b: &Built) -> Option<ExecutorCore> {
    let c = &b.case;
    let (verified, _) = smp_session::program_for_planned(
        &c.plan,
        &c.map,
        &c.rig,
        &c.base_from_head,
        b.exec.protocol,
        &b.harness.journal,
    )
    .expect("compiles and verifies")?;
    Some(ExecutorCore::new(verified.program(), &b.exec).expect("core"))
}

/// Runs one executor core over the scenario's plan.
fn executor_transcript(s: &Scenario) -> String {
    let mut b = build(s);
    let _ = writeln!(b.harness.out, "# {}: {}", s.name, s.what);
    let core = core_for_planned(&b).expect("dots to stream");
    let r = b.harness.run(core, s.protocol, None);
    let line = result_line(&r);
    b.harness.log(line);
    let states = b.harness.states();
    b.harness.log(format!("dots: {states}"));
    b.harness.log(format!("needle entries: {}", b.harness.ctl.entries().len()));
    b.harness.out
}

/// The session core decides; each `Stream` runs an executor core on what is still planned.
fn session_transcript(s: &Scenario) -> String {
    let mut b = build(s);
    let _ = writeln!(b.harness.out, "# {}: {}", s.name, s.what);
    let mut sc = SessionCore::new(CoreConfig::default());
    sc.handle(SessionInput::Start { uncertain: 0, flange_camera: false, band_cameras: true });
    let mut pending: Vec<SessionAction> = std::iter::from_fn(|| sc.poll_action()).collect();
    let mut runs = 0;
    loop {
        let Some(a) = (!pending.is_empty()).then(|| pending.remove(0)) else {
            panic!("the session core stopped deciding: {}", tail(&b.harness.out));
        };
        b.harness.log(format!("session: {a:?}"));
        match a {
            SessionAction::Stream => {
                runs += 1;
                assert!(runs <= 5, "too many runs");
                match core_for_planned(&b) {
                    Some(core) => {
                        let r = b.harness.run(core, s.protocol, Some(&mut sc));
                        let line = result_line(&r);
                        b.harness.log(line);
                        sc.handle(SessionInput::RunEnded(smp_session::run_end(&r)));
                    }
                    None => sc.handle(SessionInput::RunEnded(smp_session::core::RunEnd::NothingToDo)),
                }
            }
            SessionAction::Reregister => {
                b.harness.log("registration: the head settled where it was");
                sc.handle(SessionInput::Reregistered(Some("0.0 mm from the last registration".into())));
            }
            SessionAction::CheckUncertain => sc.handle(SessionInput::Checked),
            SessionAction::Finish(_) => break,
            _ => {}
        }
        pending.extend(std::iter::from_fn(|| sc.poll_action()));
    }
    let states = b.harness.states();
    b.harness.log(format!("dots: {states}"));
    b.harness.log(format!("needle entries: {}", b.harness.ctl.entries().len()));
    b.harness.out
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(format!("{name}.txt"))
}

fn check(name: &str, text: &str) {
    let path = golden_path(name);
    if std::env::var_os("SMP_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("golden dir");
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with SMP_BLESS=1 cargo test -p smp-tests --test scenarios golden_transcripts::",
            path.display()
        )
    });
    if want != text {
        let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), text.lines().collect());
        let at = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(w.len().min(g.len()));
        panic!(
            "{} differs from this run at line {}:\n  golden: {:?}\n  now:    {:?}\n(golden {} lines, now {}); if the change \
             is meant, SMP_BLESS=1 cargo test -p smp-tests --test scenarios golden_transcripts:: and review the diff",
            path.display(),
            at + 1,
            w.get(at),
            g.get(at),
            w.len(),
            g.len()
        );
    }
}

fn scenario(name: &'static str, what: &'static str, protocol: Protocol) -> Scenario {
    Scenario { name, what, dots: 4, protocol, faults: Vec::new(), dwell_s: None, script: Vec::new() }
}

#[test]
fn clean_run() {
    let s = scenario("clean_run", "four dots on grbl, nothing goes wrong", Protocol::Grbl);
    let t = executor_transcript(&s);
    assert!(t.contains("run completed"), "{t}");
    check(s.name, &t);
}

#[test]
fn reset_mid_stream() {
    let mut s = scenario("reset_mid_stream", "the controller resets instead of reading line 14", Protocol::Grbl);
    s.faults.push(Fault::ResetBeforeLine { line: 14 });
    let t = executor_transcript(&s);
    assert!(t.contains("ALARM:3") || t.contains("Grbl 1.1h"), "{t}");
    assert!(t.contains(":uncertain"), "a reset mid-stream leaves the dots in flight uncertain: {t}");
    check(s.name, &t);
}

#[test]
fn pause_with_the_cartridge_running() {
    let mut s = scenario(
        "pause_cartridge_running",
        "the operator pauses while the needle dwells in the second dot (0.4 s dwell), resumes 1.5 s later",
        Protocol::Grbl,
    );
    s.dwell_s = Some(0.4);
    let after = |entries, ms| When::AfterEntries { entries, delay: Duration::from_millis(ms) };
    s.script = vec![
        (after(2, 100), Intervention::Operator(OperatorCommand::Pause)),
        (after(0, 1500), Intervention::Operator(OperatorCommand::Resume)),
    ];
    let t = executor_transcript(&s);
    assert!(t.contains("operator Pause admitted") && t.contains("executor: paused"), "{t}");
    assert!(t.contains("run completed"), "{t}");
    check(s.name, &t);
}

#[test]
fn head_drift_and_reregistration() {
    let mut s = scenario(
        "head_drift_reregistration",
        "the tracker reports a drift after the second entry; the run is stopped, the head re-registered and the rest streamed",
        Protocol::Grbl,
    );
    s.dots = 6;
    s.script = vec![(When::AfterEntries { entries: 2, delay: Duration::from_millis(20) }, Intervention::Drift)];
    let t = session_transcript(&s);
    assert!(t.contains("session: Reregister"), "{t}");
    assert!(t.matches("session: Stream").count() >= 2, "{t}");
    check(s.name, &t);
}

#[test]
fn marlin_resend() {
    let mut s = scenario("marlin_resend", "one byte of a numbered line is corrupted on the wire", Protocol::Marlin);
    s.faults.push(Fault::CorruptByte { index: 120, xor: 0x02 });
    let t = executor_transcript(&s);
    assert!(t.contains("Resend:"), "{t}");
    assert!(t.contains("run completed"), "{t}");
    check(s.name, &t);
}

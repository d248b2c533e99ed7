//! One engine for the simulator and a real port: the same plan run by `smp run --sim` and by
//! `smp run --port` on the device path `smp sim controller` prints gives the same dot states
//! and the same commands in both journals. Before streaming on a port, the controller is
//! asked what it is (`$I`, `$$`) and a program it cannot run is refused with the setting to
//! change, as an engineer at a bench would meet it.
#![allow(clippy::unwrap_used)] // test set-up: a failed step stops the test there

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use smp_core::plan::DotState;
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::truth_map::{truth_map, TruthMapSettings};
use smp_store::{Journal, RunId};

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(relative)
}

struct Case {
    map: PathBuf,
    plan: PathBuf,
    patient: PathBuf,
}

/// Session 1 of the default session on the default patient's truth map, `dots` dots, for `rig`.
fn plan(dir: &Path, rig: &str, dots: usize) -> Case {
    let rig_v = smp_core::rig::Rig::from_toml_str(&std::fs::read_to_string(repo(rig)).unwrap()).unwrap();
    let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).unwrap();
    let settings = TruthMapSettings { base_from_head: rig_v.base_from_head_nominal(), ..Default::default() };
    let map = truth_map(&SyntheticPatient::generate(&spec), &settings).unwrap().map;
    let case = Case { map: dir.join("map.json"), plan: dir.join("plan.json"), patient: dir.join("patient.toml") };
    std::fs::write(&case.map, serde_json::to_string(&map).unwrap()).unwrap();
    std::fs::write(&case.patient, DEFAULT_PATIENT_TOML).unwrap();
    let spec_text = smp_planner::DEFAULT_SESSION1_TOML.replacen("\nseed =", &format!("\nmax_dots = {dots}\nseed ="), 1);
    let spec_p = dir.join("s1.toml");
    std::fs::write(&spec_p, spec_text).unwrap();
    let out = smp(&[
        "plan",
        "--map",
        p(&case.map),
        "--patient",
        p(&case.patient),
        "--spec",
        p(&spec_p),
        "--rig",
        p(&repo(rig)),
        "--out",
        p(&case.plan),
    ]);
    assert!(out.status.success(), "plan: {}", String::from_utf8_lossy(&out.stderr));
    case
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn smp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smp")).args(args).output().expect("smp runs")
}

/// `smp sim controller` for `rig`, with the patient on its head rest; returns the child, its
/// stdout and the printed device path.
fn sim_controller(rig: &str, patient: &Path) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smp"))
        .args(["sim", "controller", "--time-scale", "50", "--rig", p(&repo(rig)), "--patient", p(patient)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("smp runs");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut path = String::new();
    stdout.read_line(&mut path).expect("the path line");
    let path = path.trim().to_string();
    assert!(path.starts_with("/dev/"), "printed {path:?}");
    (child, stdout, path)
}

fn stop(mut child: Child, mut stdout: BufReader<ChildStdout>) -> String {
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the summary");
    assert!(child.wait().expect("exit").success(), "{rest}");
    rest
}

/// Types `line` into the controller as an engineer would in a terminal, and waits for its `ok`.
fn type_line(path: &str, line: &str) {
    let mut port = serialport::new(path, 115_200).timeout(Duration::from_millis(50)).open().expect("open the pty");
    port.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline && !seen.contains("ok\r\n") {
        if let Ok(n) = port.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(seen.contains("ok\r\n"), "{line}: {seen:?}");
}

fn run_args<'a>(case: &'a Case, journal: &'a Path) -> Vec<&'a str> {
    vec!["run", "--plan", p(&case.plan), "--map", p(&case.map), "--journal", p(journal), "--time-scale", "50"]
}

/// Dot states and the text of every command sent, from a finished journal.
fn journal_facts(path: &Path) -> (Vec<(u32, DotState)>, Vec<String>) {
    let j = Journal::open(path).unwrap();
    let states = j.dots().unwrap().into_iter().map(|d| (d.dot_id, d.state)).collect();
    let commands = j.commands(RunId(1)).unwrap().into_iter().map(|c| c.text).collect();
    (states, commands)
}

#[test]
fn the_same_plan_on_the_simulator_and_through_the_sim_controllers_port_journals_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let rig = "calibration/rig.toml";
    let case = plan(tmp.path(), rig, 25);

    let sim_journal = tmp.path().join("sim.sqlite");
    let mut args = run_args(&case, &sim_journal);
    args.extend(["--sim", "--patient", p(&case.patient), "--rig"]);
    let rig_path = repo(rig);
    args.push(p(&rig_path));
    let out = smp(&args);
    assert!(out.status.success(), "run --sim: {}", String::from_utf8_lossy(&out.stderr));

    let (child, stdout, device) = sim_controller(rig, &case.patient);
    let port_journal = tmp.path().join("port.sqlite");
    let mut args = run_args(&case, &port_journal);
    args.extend(["--port", &device, "--rig", p(&rig_path)]);
    let out = smp(&args);
    let summary = stop(child, stdout);
    assert!(
        out.status.success(),
        "run --port: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("controller 1.1h") && said.contains("drives XYZ"), "the controller was asked: {said}");

    let (sim_states, sim_commands) = journal_facts(&sim_journal);
    let (port_states, port_commands) = journal_facts(&port_journal);
    assert_eq!(sim_states.len(), 25);
    assert!(sim_states.iter().all(|(_, s)| *s == DotState::Executed), "{sim_states:?}");
    assert_eq!(sim_states, port_states, "dot states");
    assert!(sim_commands.len() > 25 * 3, "{}", sim_commands.len());
    assert_eq!(sim_commands, port_commands, "commands sent");
    // The controller received the program and the two questions (`$I`, `$$`), nothing else.
    assert!(summary.contains(&format!("{} lines received", sim_commands.len() + 2)), "{summary}");
    assert!(summary.contains("25 needle entries"), "{summary}");
}

#[test]
fn a_controller_that_cannot_run_the_program_is_refused_before_a_line_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    // A spindle maximum below the cartridge speed: grbl would cap S silently.
    let case = plan(tmp.path(), "calibration/rig.toml", 5);
    let (child, stdout, device) = sim_controller("calibration/rig.toml", &case.patient);
    type_line(&device, "$30=1000");
    let journal = tmp.path().join("low-rpm.sqlite");
    let mut args = run_args(&case, &journal);
    let rig_path = repo("calibration/rig.toml");
    args.extend(["--port", &device, "--rig", p(&rig_path)]);
    let out = smp(&args);
    let summary = stop(child, stdout);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("`$30=1000`") && said.contains("set `$30="), "{said}");
    assert!(
        summary.contains("3 lines received") && summary.contains(" 0 needle entries"),
        "only $30=, $I, $$: {summary}"
    );
    let states = Journal::open(&journal).unwrap().dots().unwrap();
    assert!(states.iter().all(|d| d.state == DotState::Planned), "no dot touched: {states:?}");

    // A 5-axis program on a controller built for X Y Z.
    let tmp5 = tmp.path().join("five");
    std::fs::create_dir_all(&tmp5).unwrap();
    let case5 = plan(&tmp5, "calibration/rig-xyzab.toml", 5);
    let (child, stdout, device) = sim_controller("calibration/rig.toml", &case5.patient);
    let journal = tmp5.join("axes.sqlite");
    let mut args = run_args(&case5, &journal);
    let rig5 = repo("calibration/rig-xyzab.toml");
    args.extend(["--port", &device, "--rig", p(&rig5)]);
    let out = smp(&args);
    stop(child, stdout);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("moves axis A, B") && said.contains("drives only X, Y, Z"), "{said}");
}

/// The host is killed (SIGKILL) mid-session while the controller, a process of its own, keeps
/// its world: the resumed session makes the dots the dead run left `sent` or `accepted`
/// uncertain (left for the operator: no flange camera on a port), never resends them, and
/// finishes the rest; the controller's own count of needle entries shows no dot entered twice.
#[test]
fn a_host_killed_mid_run_leaves_no_dot_stranded_or_doubled_after_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let rig = "calibration/rig.toml";
    let rig_path = repo(rig);
    let dots = 30;
    let case = plan(tmp.path(), rig, dots);
    let (child, stdout, device) = sim_controller(rig, &case.patient);
    let journal = tmp.path().join("killed.sqlite");
    let mut args = run_args(&case, &journal);
    args.extend(["--port", &device, "--rig", p(&rig_path)]);
    let mut host = Command::new(env!("CARGO_BIN_EXE_smp")).args(&args).stdout(Stdio::null()).spawn().unwrap();
    // Kill the host once a few dots are durable.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done =
            Journal::open(&journal).and_then(|j| j.dots_in_state(DotState::Executed)).map(|d| d.len()).unwrap_or(0);
        if done >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the host never executed 5 dots");
        assert!(host.try_wait().unwrap().is_none(), "the host ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    host.kill().unwrap(); // SIGKILL: no handler runs, nothing is flushed
    host.wait().unwrap();
    let (in_flight, executed_before) = {
        let j = Journal::open(&journal).unwrap();
        let mut f = j.dots_in_state(DotState::Sent).unwrap();
        f.extend(j.dots_in_state(DotState::Accepted).unwrap());
        (f, j.dots_in_state(DotState::Executed).unwrap().len())
    };
    eprintln!("killed with {executed_before} executed and {in_flight:?} in flight");
    // The controller finishes what it had buffered before the operator restarts the host.
    std::thread::sleep(Duration::from_secs(2));
    let mut args = run_args(&case, &journal);
    args.extend(["--port", &device, "--rig", p(&rig_path), "--resume", "--json"]);
    let out = smp(&args);
    let summary = stop(child, stdout);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let j = Journal::open(&journal).unwrap();
    let executed = j.dots_in_state(DotState::Executed).unwrap();
    let uncertain = j.dots_in_state(DotState::Uncertain).unwrap();
    assert!(
        j.dots_in_state(DotState::Sent).unwrap().is_empty() && j.dots_in_state(DotState::Accepted).unwrap().is_empty()
    );
    assert!(j.resume_candidates().unwrap().is_empty(), "every dot had its turn: {report}");
    for d in &in_flight {
        assert!(uncertain.contains(d), "dot {d} was in flight when the host died: uncertain, not resent");
    }
    assert_eq!(executed.len() + uncertain.len(), dots, "{report}");
    // Each planned dot was entered at most once: no more entries than dots that may hold one.
    let entries: usize = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" needle entries")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("entries in {summary}"));
    assert!(executed.len() <= entries && entries <= executed.len() + uncertain.len(), "{entries} entries: {summary}");
    let notes = report["notes"].to_string();
    if !in_flight.is_empty() {
        assert!(notes.contains("left in flight without an outcome"), "{notes}");
    }
}

/// The rig file's hard caps stand above the plan: a session asking for a deeper limit than
/// the rig allows is refused before anything is compiled or journalled (exit status 2).
#[test]
fn a_plan_beyond_the_rigs_hard_caps_is_refused_before_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let case = plan(tmp.path(), "calibration/rig.toml", 5);
    let strict = tmp.path().join("strict-rig.toml");
    let text = std::fs::read_to_string(repo("calibration/rig.toml")).unwrap();
    assert!(text.contains("max_depth_limit_mm = 1.5"));
    std::fs::write(&strict, text.replace("max_depth_limit_mm = 1.5", "max_depth_limit_mm = 1.0")).unwrap();
    let journal = tmp.path().join("never.sqlite");
    let mut args = run_args(&case, &journal);
    args.extend(["--sim", "--patient", p(&case.patient), "--rig", p(&strict)]);
    let out = smp(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("depth_limit_mm = 1.2") && err.contains("hard cap 1"), "{err}");
    assert!(!journal.exists(), "nothing journalled");
}

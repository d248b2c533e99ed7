//! `smp sim controller` as an engineer uses it: the binary prints a pty path, a G-code
//! sender opens that path, streams lines and polls status, and the controller answers as
//! grbl 1.1 does; closing stdin stops it and prints the run's figures.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `smp sim controller` with extra arguments; returns the child and its stdout.
fn start(extra: &[&str]) -> (std::process::Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smp"))
        .args(["sim", "controller", "--time-scale", "100"])
        .args(extra)
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

#[test]
fn a_sender_streams_through_the_printed_pty_and_reads_oks_and_a_status_report() {
    let (mut child, mut stdout, path) = start(&[]);

    let mut port = serialport::new(&path, 115_200).timeout(Duration::from_millis(50)).open().expect("open the pty");
    for line in ["G21 G90 G94\n", "G1 Z100 F3000\n", "G1 X10 Y5 F3000\n"] {
        port.write_all(line.as_bytes()).expect("write");
    }
    port.write_all(b"?").expect("status query");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline && !(seen.matches("ok\r\n").count() >= 3 && seen.contains("MPos:")) {
        match port.read(&mut buf) {
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(seen.matches("ok\r\n").count() >= 3, "three oks in {seen:?}");
    let status = seen.lines().find(|l| l.starts_with('<')).unwrap_or_else(|| panic!("a status report in {seen:?}"));
    assert!(status.ends_with('>') && status.contains("|MPos:") && status.contains("|FS:"), "{status}");
    assert!(["<Idle", "<Run"].iter().any(|s| status.starts_with(s)), "{status}");

    drop(port);
    drop(child.stdin.take()); // end of stdin: stop
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the summary");
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status:?}");
    assert!(rest.contains("3 lines received") && rest.contains("3 ok"), "{rest}");
}

#[test]
fn a_fault_scenario_file_withholds_the_ok_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("lost.toml");
    std::fs::write(&scenario, "version = 1\nseed = 1\n[[controller]]\nkind = \"lost_ok\"\nline = 2\n").unwrap();
    let (mut child, mut stdout, path) = start(&["--faults", scenario.to_str().unwrap()]);
    let mut port = serialport::new(&path, 115_200).timeout(Duration::from_millis(50)).open().expect("open the pty");
    for line in ["G21 G90 G94\n", "G1 Z100 F3000\n", "G1 X10 Y5 F3000\n"] {
        port.write_all(line.as_bytes()).expect("write");
    }
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match port.read(&mut buf) {
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(seen.matches("ok\r\n").count(), 2, "line 2's ok is lost: {seen:?}");
    drop(port);
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the summary");
    assert!(child.wait().expect("exit").success());
    assert!(rest.contains("3 lines received") && rest.contains("2 ok"), "{rest}");
}

#[test]
fn marlin_mode_answers_numbered_lines_and_asks_for_a_resend_of_a_bad_checksum() {
    let (mut child, mut stdout, path) = start(&["--protocol", "marlin"]);
    let mut port = serialport::new(&path, 250_000).timeout(Duration::from_millis(50)).open().expect("open the pty");
    let line = |n: u32, cmd: &str| {
        let body = format!("N{n} {cmd}");
        let sum = body.bytes().fold(0u8, |a, b| a ^ b);
        format!("{body}*{sum}\n")
    };
    port.write_all(line(0, "M110 N0").as_bytes()).unwrap();
    port.write_all(line(1, "G1 Z100 F3000").as_bytes()).unwrap();
    port.write_all(b"N2 G1 X10 F3000*0\n").unwrap(); // wrong checksum
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline && !seen.contains("Resend: 2") {
        match port.read(&mut buf) {
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(seen.contains("Error:checksum mismatch, Last Line: 1"), "{seen:?}");
    assert!(seen.contains("Resend: 2"), "{seen:?}");
    assert!(seen.matches("ok").count() >= 2, "{seen:?}");
    drop(port);
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the summary");
    assert!(child.wait().expect("exit").success(), "{rest}");
}

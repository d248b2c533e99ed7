//! The `smp` binary's behaviour on bad input: one clear line, exit status 2, nothing written.

use std::process::Command;

fn smp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smp"))
}

#[test]
fn missing_patient_file_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = smp().args(["demo", "--json", "--patient", "missing.toml", "--out"]).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: ") && first.contains("missing.toml"), "stderr: {err}");
    assert!(o.stdout.is_empty(), "nothing on stdout");
    assert!(!out.exists(), "no output directory for bad input");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing half-written");
}

#[test]
fn malformed_patient_file_names_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, smp_sim::patient::DEFAULT_PATIENT_TOML.replacen("seed", "seed_typo", 1)).unwrap();
    let out = tmp.path().join("demo");
    let o = smp().args(["demo", "--patient"]).arg(&bad).arg("--out").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.lines().next().unwrap_or_default().contains("bad.toml"), "stderr: {err}");
    assert!(err.contains("seed"), "names the offending key: {err}");
    assert!(!out.exists());
}

#[test]
fn garbage_patient_file_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("garbage.toml");
    std::fs::write(&bad, [0xffu8, 0xfe, b'[', b'x']).unwrap();
    let out = tmp.path().join("demo");
    let o = smp().args(["demo", "--patient"]).arg(&bad).arg("--out").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("garbage.toml"));
    assert!(!out.exists());
}

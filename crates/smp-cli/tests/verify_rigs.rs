//! `smp verify --rig`: 5-axis (`xyzab`) and 6-axis (`joints`) programs are verified through the
//! rig they were compiled for (the tilted verifier, that rig's travel), and refused, naming the
//! mismatch, against the default 3-axis rig or another rig.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use smp_core::plan::PlanFile;
use smp_core::rig::{Rig, SIX_AXIS_RIG_TOML, XYZAB_RIG_TOML};
use smp_testkit::synthetic_case_for;

fn calibration(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../calibration").join(file)
}

/// Compiles a small plan for the rig and writes program.nc, plan.json and map.json into `dir`.
fn write_case(dir: &Path, rig_toml: &str, dots: usize) -> [PathBuf; 3] {
    let rig = Rig::from_toml_str(rig_toml).expect("rig");
    let c = synthetic_case_for(dots, rig);
    let program = smp_gcode::compile(&c.plan, &c.rig, &c.base_from_head).unwrap_or_else(|e| panic!("{e}"));
    let plan = PlanFile { version: smp_core::JSON_FORMAT_VERSION, patient: "synthetic".into(), sessions: vec![c.plan] };
    let paths = [dir.join("program.nc"), dir.join("plan.json"), dir.join("map.json")];
    std::fs::write(&paths[0], program.to_nc()).expect("write program");
    std::fs::write(&paths[1], serde_json::to_string(&plan).expect("plan json")).expect("write plan");
    std::fs::write(&paths[2], serde_json::to_string(&c.map).expect("map json")).expect("write map");
    paths
}

fn smp_verify(files: &[PathBuf; 3], rig: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smp"));
    cmd.arg("verify").arg(&files[0]).arg("--plan").arg(&files[1]).arg("--map").arg(&files[2]);
    if let Some(r) = rig {
        cmd.arg("--rig").arg(r);
    }
    cmd.output().expect("runs smp")
}

#[test]
fn tilted_programs_verify_with_their_rig_and_are_refused_without_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, toml, file, dots, profile) in [
        ("xyzab", XYZAB_RIG_TOML, "rig-xyzab.toml", 12, "profile xyzab"),
        ("joints", SIX_AXIS_RIG_TOML, "rig-6axis.toml", 6, "profile joints"),
    ] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        let files = write_case(&dir, toml, dots);
        let rig_file = calibration(file);

        let o = smp_verify(&files, Some(&rig_file));
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {out}{err}");
        assert!(out.starts_with("verified for rig "), "{name}: {out}");
        assert!(out.contains(&format!("({name}, grbl dialect): {dots} dots")), "{name}: {out}");

        // The default rig is the 3-axis one: the header names the rig the program is for.
        let o = smp_verify(&files, None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: refused without --rig");
        assert!(o.stdout.is_empty(), "{name}: {}", String::from_utf8_lossy(&o.stdout));
        assert!(err.contains("REJECTED"), "{name}: {err}");
        assert!(err.contains(&format!("compiled for rig `{}` ({profile})", rig_name(toml))), "{name}: {err}");
        assert!(err.contains("(profile xyz)"), "{name}: {err}");
        assert!(err.contains("--rig"), "the hint says how to give the rig: {err}");
        assert!(err.contains("with 1 violation(s)"), "one violation, not one per line: {err}");
    }
    // A 5-axis program against the 6-axis rig is refused the same way.
    let five =
        [tmp.path().join("xyzab/program.nc"), tmp.path().join("xyzab/plan.json"), tmp.path().join("xyzab/map.json")];
    let o = smp_verify(&five, Some(&calibration("rig-6axis.toml")));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("(profile xyzab)") && err.contains("(profile joints)"), "{err}");
}

fn rig_name(toml: &str) -> String {
    Rig::from_toml_str(toml).expect("rig").name
}

//! End-to-end scenarios live in `tests/*.rs`; this library holds the set-up they share: a
//! planned session on a simulated patient's truth map, as the files `smp run` reads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up: a failed step stops the test where it happened

use std::path::{Path, PathBuf};

use smp_cli::run_cmd::{RunArgs, Target};
use smp_sim::patient::{PatientSpec, SyntheticPatient};
use smp_sim::truth_map::{truth_map, TruthMapSettings};

/// The files of one planned session: scalp map, plan, patient and rig (`None`: the default).
#[derive(Debug, Clone)]
pub struct PlannedCase {
    pub map: PathBuf,
    pub plan: PathBuf,
    pub patient: PathBuf,
    pub rig: Option<PathBuf>,
}

impl PlannedCase {
    /// `smp run` arguments for this case on the simulator (grbl, no bus, tracking at 5 Hz),
    /// journalled at `journal`, with an optional fault scenario, new or resumed.
    pub fn sim_run(&self, journal: PathBuf, time_scale: f64, faults: Option<PathBuf>, resume: bool) -> RunArgs {
        RunArgs {
            plan: self.plan.clone(),
            map: self.map.clone(),
            session: None,
            target: Target::Sim { patient: Some(self.patient.clone()), faults, time_scale },
            rig: self.rig.clone(),
            journal,
            resume,
            protocol: smp_motion::Protocol::Grbl,
            bus: None,
            tracking_hz: 5.0,
            marlin_realtime: false,
        }
    }
}

/// A repository file by its path from the repository root.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// Plans session 1 of `session_toml`, limited to `dots` dots, on the truth map of the patient
/// `patient_toml` for the rig file `rig` (repository path; `None`: the default rig), writing
/// the files into `dir`. Panics unless exactly `dots` dots are planned.
pub fn plan_case(dir: &Path, patient_toml: &str, rig: Option<&str>, session_toml: &str, dots: usize) -> PlannedCase {
    let rig_p = rig.map(repo_path);
    let rig_v = match &rig_p {
        Some(p) => smp_core::rig::Rig::from_toml_str(&std::fs::read_to_string(p).unwrap()).unwrap(),
        None => smp_core::rig::Rig::default_sim(),
    };
    let spec = PatientSpec::from_toml_str(patient_toml).unwrap();
    let settings = TruthMapSettings { base_from_head: rig_v.base_from_head_nominal(), ..Default::default() };
    let map = truth_map(&SyntheticPatient::generate(&spec), &settings).unwrap().map;
    let map_p = dir.join("map.json");
    std::fs::write(&map_p, serde_json::to_string(&map).unwrap()).unwrap();
    let patient_p = dir.join("patient.toml");
    std::fs::write(&patient_p, patient_toml).unwrap();
    let text = if session_toml.contains("# max_dots = 300") {
        session_toml.replace("# max_dots = 300", &format!("max_dots = {dots}"))
    } else {
        // Top-level keys come before the first table.
        session_toml.replacen("\nseed =", &format!("\nmax_dots = {dots}\nseed ="), 1)
    };
    let spec_p = dir.join("s1.toml");
    std::fs::write(&spec_p, text).unwrap();
    let plan_p = dir.join("plan.json");
    let pa = smp_cli::planning::PlanArgs {
        map: map_p.clone(),
        patient: patient_p.clone(),
        session: 1,
        out: plan_p.clone(),
        spec: Some(spec_p),
        rig: rig_p.clone(),
    };
    let planned = smp_cli::planning::plan(&pa).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint)).dots;
    assert_eq!(planned, dots, "planned dots");
    PlannedCase { map: map_p, plan: plan_p, patient: patient_p, rig: rig_p }
}

//! The CLI's simulator side: everything that builds or reads the simulated world (`smp run
//! --sim`, `smp sim controller|render|heal` in `cmd`, `smp calibrate sim`, `smp testdots`, a
//! simulated scan, the world record `smp journal` lists). Only this module, `demo` and `eval`
//! import smp-sim.

pub mod calibrate;
pub mod cmd;
pub mod journal;
pub mod run;
pub mod scan;
pub mod testdots;

use std::path::Path;

use crate::error::CliError;
use crate::files::read_text;

/// A simulated patient file and the name it is reported by, or the embedded
/// `sim/patients/default.toml` when none is given.
pub fn read_sim_patient(path: Option<&Path>) -> Result<(smp_sim::patient::PatientSpec, String), CliError> {
    let (text, name) = match path {
        Some(p) => (read_text(p, "patient", "patient")?, p.display().to_string()),
        None => {
            (smp_sim::patient::DEFAULT_PATIENT_TOML.to_string(), "sim/patients/default.toml (embedded)".to_string())
        }
    };
    let spec = smp_sim::patient::PatientSpec::from_toml_str(&text).map_err(|e| {
        CliError::input(format!("{name}: {e}"), "fix the patient file; sim/patients/default.toml is a valid example")
    })?;
    Ok((spec, name))
}

/// A fault scenario file (sim/faults/*.toml).
pub fn read_scenario(path: &Path) -> Result<smp_sim::faults::FaultScenario, CliError> {
    let t = read_text(path, "fault scenario", "faults")?;
    smp_sim::faults::FaultScenario::from_toml_str(&t)
        .map_err(|e| CliError::input(format!("{}: {e}", path.display()), "see sim/faults/ for valid scenarios"))
}

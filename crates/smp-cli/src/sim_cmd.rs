//! `smp sim ...`: the simulator as a tool for engineers. `smp sim controller` serves the
//! simulated grbl 1.1h controller on a pseudo-terminal and prints the device path, so any
//! G-code sender (ours with `--port`, or a third-party one) can connect to it.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use smp_sim::controller::{ControllerConfig, SimController};
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::pty::{PtyController, SimReport};

use crate::demo::PatientSkin;
use crate::error::{stage, CliError};
use crate::files::{read_rig, read_text};

/// `smp sim controller` arguments.
#[derive(Debug, Clone)]
pub struct SimControllerArgs {
    pub rig: Option<PathBuf>,
    /// Patient on the head rest whose skin the needle meets (default: the embedded default).
    pub patient: Option<PathBuf>,
    /// Simulated seconds per wall second.
    pub time_scale: f64,
    /// Stop after this many wall seconds instead of waiting for Enter / end of stdin.
    pub seconds: Option<f64>,
}

/// A controller being served, and the device path a sender opens.
pub struct ServedController {
    pub path: String,
    runner: PtyController,
    /// The device end is held open so the pty does not hang up between senders.
    _device: TTYPort,
}

impl ServedController {
    /// Stops serving and returns what the controller recorded.
    pub fn stop(self) -> SimReport {
        self.runner.shutdown()
    }
}

/// Starts the simulated controller on the host end of a new pty pair.
pub fn serve_controller(a: &SimControllerArgs) -> Result<ServedController, CliError> {
    let rig = read_rig(a.rig.as_deref())?;
    let (text, name) = match &a.patient {
        Some(p) => (read_text(p, "patient", "patient")?, p.display().to_string()),
        None => (DEFAULT_PATIENT_TOML.to_string(), "sim/patients/default.toml (embedded)".to_string()),
    };
    let spec = PatientSpec::from_toml_str(&text).map_err(|e| {
        CliError::input(format!("{name}: {e}"), "fix the patient file; sim/patients/default.toml is a valid example")
    })?;
    if !(a.time_scale.is_finite() && a.time_scale > 0.0 && a.time_scale <= 10_000.0) {
        return Err(CliError::input(
            format!("--time-scale {} is not usable", a.time_scale),
            "give a simulated-seconds-per-wall-second factor in (0, 10000]",
        ));
    }
    let skin = PatientSkin {
        patient: Arc::new(SyntheticPatient::generate(&spec)),
        base_from_head: rig.base_from_head_nominal(),
    };
    let cfg = ControllerConfig { time_scale: a.time_scale, ..ControllerConfig::new(rig.dynamics) };
    let controller = SimController::new(cfg, Box::new(skin)).map_err(stage("simulated controller"))?;
    let (host, device) =
        TTYPort::pair().map_err(|e| CliError::failure(format!("cannot open a pseudo-terminal pair: {e}")))?;
    let path = device.name().ok_or_else(|| CliError::failure("the pseudo-terminal has no device path to print"))?;
    let runner = PtyController::spawn(host, controller)
        .map_err(|e| CliError::failure(format!("cannot start the simulated controller: {e}")))?;
    Ok(ServedController { path, runner, _device: device })
}

/// One line per figure of a finished run.
pub fn report_summary(r: &SimReport) -> String {
    format!(
        "simulated controller stopped: {} lines received, {} ok, {} errors, alarms {:?}, {} soft resets, \
         {} needle entries, {} unpowered contacts, machine time {:.1} s, flow violations {}\n",
        r.stats.lines_received,
        r.stats.oks_sent,
        r.stats.errors_sent,
        r.stats.alarms,
        r.stats.soft_resets,
        r.entries.len(),
        r.unpowered_contacts.len(),
        r.machine_time_s,
        r.stats.flow_violations,
    )
}

/// `smp sim controller`: prints the device path on stdout (first line, flushed), serves
/// until Enter, end of stdin, or `--seconds`, then prints the run's figures.
pub fn controller(a: &SimControllerArgs) -> Result<String, CliError> {
    let served = serve_controller(a)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", served.path).and_then(|_| out.flush()).map_err(|e| CliError::failure(e.to_string()))?;
    drop(out);
    eprintln!(
        "simulated grbl 1.1h on {} (115200 baud is accepted and ignored; time x{}); press Enter or close stdin to stop",
        served.path, a.time_scale
    );
    match a.seconds {
        Some(s) if s.is_finite() && s >= 0.0 => std::thread::sleep(Duration::from_secs_f64(s)),
        Some(s) => return Err(CliError::input(format!("--seconds {s} is not usable"), "give a duration >= 0")),
        None => {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        }
    }
    Ok(report_summary(&served.stop()))
}

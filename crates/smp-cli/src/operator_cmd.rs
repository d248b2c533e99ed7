//! `smp operator`: the operator's side of the session bus (zenoh). Sends pause, resume,
//! abort or emergency stop to the controller running a session and waits for its answer;
//! `watch` prints the session's telemetry.

use std::time::{Duration, Instant};

use smp_bus::{AckResult, BusConfig, OperatorBus, OperatorCommand, TelemetryEvent};

use crate::error::CliError;

/// Where the chair's controller listens by default (`smp run --bus`).
pub const DEFAULT_BUS_ENDPOINT: &str = "tcp/127.0.0.1:7447";

/// `smp operator` arguments.
#[derive(Debug, Clone)]
pub struct OperatorArgs {
    pub session: String,
    pub connect: String,
    pub rig: String,
    pub operator: String,
    pub timeout_s: f64,
}

fn bus_config(a: &OperatorArgs) -> Result<BusConfig, CliError> {
    if !(a.timeout_s.is_finite() && (0.1..=60.0).contains(&a.timeout_s)) {
        return Err(CliError::input(format!("--timeout {} is out of range", a.timeout_s), "give 0.1 to 60 seconds"));
    }
    let cfg = BusConfig { rig: a.rig.clone(), ack_timeout_s: a.timeout_s, ..BusConfig::connecting(a.connect.clone()) };
    cfg.validate()
        .map_err(|e| CliError::input(format!("bus: {e}"), "check --connect (e.g. tcp/10.0.0.5:7447) and --rig"))?;
    Ok(cfg)
}

/// Sends one command and waits for the controller's acknowledgement. A refusal or no answer
/// is an error (exit status non-zero): the operator must know the arm did not obey.
pub fn send(a: &OperatorArgs, command: OperatorCommand) -> Result<String, CliError> {
    let cfg = bus_config(a)?;
    let bus = OperatorBus::open(&cfg, &a.session, &a.operator)
        .map_err(|e| CliError::input(format!("bus: {e}"), "check --session-id, --operator (letters, digits, . _ -)"))?;
    let r = bus.send(command);
    bus.close();
    match r {
        Ok(AckResult::Accepted) => Ok(format!("{command:?}: accepted by session {}\n", a.session)),
        Ok(AckResult::Refused { reason }) => Err(CliError {
            exit_code: crate::error::EXIT_REFUSED,
            ..CliError::failure(format!("{command:?}: refused by session {}: {reason}", a.session))
        }),
        Err(e) => Err(CliError {
            exit_code: crate::error::EXIT_NO_ANSWER,
            ..CliError::failure(format!(
                "{command:?}: {e}. The arm may not have obeyed: use the hardware emergency stop if in doubt"
            ))
        }),
    }
}

/// Prints telemetry of a session for `seconds` (or until it is done or aborted).
pub fn watch(a: &OperatorArgs, seconds: f64) -> Result<String, CliError> {
    let cfg = bus_config(a)?;
    let mut bus = OperatorBus::open(&cfg, &a.session, &a.operator)
        .map_err(|e| CliError::input(format!("bus: {e}"), "check --session-id and --operator"))?;
    let mut rx = bus.telemetry().map_err(|e| CliError::failure(format!("bus: {e}")))?;
    let until = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.1, 86_400.0));
    let mut samples = 0usize;
    while Instant::now() < until {
        match rx.try_recv() {
            Ok(TelemetryEvent::Sample(t)) => {
                samples += 1;
                println!(
                    "{:>8.1} s  {:?}  {}/{} dots{}",
                    t.t_s,
                    t.state,
                    t.dots_done,
                    t.dots_total,
                    t.fault.as_ref().map_or(String::new(), |f| format!("  fault: {f}"))
                );
                if matches!(
                    t.state,
                    smp_bus::SessionState::Done
                        | smp_bus::SessionState::Aborted
                        | smp_bus::SessionState::EmergencyStopped
                ) {
                    break;
                }
            }
            Ok(TelemetryEvent::Malformed(e)) => eprintln!("warning: malformed telemetry: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    bus.close();
    Ok(format!("{samples} telemetry samples from session {}\n", a.session))
}

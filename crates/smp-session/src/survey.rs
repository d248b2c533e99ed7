//! Before a program streams to a grbl controller, the controller is asked what it is (`$I`,
//! `$$`) and a program it cannot run is refused with the setting to change. The questions and
//! the rules are smp-gcode's ([`smp_gcode::Survey`], [`smp_gcode::ControllerProfile::check`]);
//! this module only moves their bytes.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use smp_gcode::{ControllerProfile, MachineNeeds, Survey, SurveyConfig};
use smp_motion::Protocol;

use crate::world::MachineError;

/// How long the port is read for between the survey's deadlines.
const READ_SLICE: Duration = Duration::from_millis(10);

/// Asks the controller behind `port` and checks `needs` against its answer. Marlin has no
/// `$I`/`$$` (its firmware is built for its axes): `Ok(None)`, nothing asked.
pub fn check_controller(
    port: &mut TTYPort,
    protocol: Protocol,
    needs: &MachineNeeds,
    cfg: SurveyConfig,
) -> Result<Option<ControllerProfile>, MachineError> {
    if protocol == Protocol::Marlin {
        return Ok(None);
    }
    let profile = survey(port, cfg)?;
    let problems = profile.check(needs);
    if problems.is_empty() {
        Ok(Some(profile))
    } else {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(MachineError::Unsuitable(listed.join("; ")))
    }
}

/// Runs a [`Survey`] over `port`, restoring the port's timeout afterwards.
pub fn survey(port: &mut TTYPort, cfg: SurveyConfig) -> Result<ControllerProfile, MachineError> {
    let saved = port.timeout();
    let r = survey_inner(port, cfg);
    let _ = port.set_timeout(saved);
    r
}

fn survey_inner(port: &mut TTYPort, cfg: SurveyConfig) -> Result<ControllerProfile, MachineError> {
    let io = |e: std::io::Error| MachineError::Open {
        what: "the controller's port".into(),
        detail: e.to_string(),
        hint: "check the cable and that no other program holds the port".into(),
    };
    port.set_timeout(READ_SLICE).map_err(|e| io(e.into()))?;
    let t0 = Instant::now();
    let mut s = Survey::new(cfg);
    let mut buf = [0u8; 512];
    loop {
        if let Some(bytes) = s.poll_transmit(t0.elapsed()) {
            port.write_all(&bytes).map_err(io)?;
        }
        if let Some(outcome) = s.take_outcome() {
            let profile = outcome.map_err(|e| MachineError::Survey(e.to_string()))?;
            if s.asked_twice() {
                // The repeated question's answer may follow: read it off before the executor starts.
                let until = Instant::now() + cfg.answer_timeout / 4;
                while Instant::now() < until {
                    let _ = port.read(&mut buf);
                }
            }
            return Ok(profile);
        }
        match port.read(&mut buf) {
            Ok(n) => s.handle_bytes(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {}
            Err(e) => return Err(io(e)),
        }
    }
}

//! What the pure controller's unit tests share: a small machine, and driving the controller
//! by bytes and time as the pty pump does.

use std::time::Duration;

use smp_core::kinematics::{AxisLimits, MachineDynamics};

use super::{ControllerConfig, SimController, Skin};

/// 6000 mm/min (100 mm/s) and 1000 mm/s² on every axis; X, Y in [0, 200], Z in [0, 100].
pub(super) fn dynamics() -> MachineDynamics {
    let axis = |max| AxisLimits { max_rate_mm_per_min: 6000.0, accel_mm_per_s2: 1000.0, min_mm: 0.0, max_mm: max };
    MachineDynamics { x: axis(200.0), y: axis(200.0), z: axis(100.0) }
}

/// The small machine, starting at Z50, with status reports free of `WCO` and `Ov` fields.
pub(super) fn config() -> ControllerConfig {
    let mut cfg = ControllerConfig::new(dynamics());
    cfg.initial_position_mm = [0.0, 0.0, 50.0];
    cfg.report_wco_and_overrides = false;
    cfg
}

pub(super) fn controller(cfg: ControllerConfig, skin: Box<dyn Skin>) -> SimController {
    SimController::new(cfg, skin).unwrap_or_else(|e| panic!("test config rejected: {e}"))
}

pub(super) fn t(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// What the controller has sent since the last call.
pub(super) fn take(c: &mut SimController) -> String {
    let mut buf = Vec::new();
    c.poll_transmit(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `bytes` at `now` and returns what the controller answered straight away.
pub(super) fn send_bytes(c: &mut SimController, bytes: &[u8], now: f64) -> String {
    c.handle_bytes(bytes, t(now));
    take(c)
}

/// Sends `text` (as UTF-8) at `now` and returns what the controller answered straight away.
pub(super) fn send(c: &mut SimController, text: &str, now: f64) -> String {
    send_bytes(c, text.as_bytes(), now)
}

/// Runs every pending event; returns what was sent meanwhile.
pub(super) fn run_to_quiet(c: &mut SimController) -> String {
    let mut out = String::new();
    for _ in 0..100_000 {
        match c.poll_timeout() {
            Some(d) => {
                c.handle_timeout(d);
                out.push_str(&take(c));
            }
            None => break,
        }
    }
    out
}

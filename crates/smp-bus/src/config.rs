//! Bus configuration and the key expressions of a session.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{zenoh_err, BusError};

/// How this process joins the zenoh network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusMode {
    /// Talks directly to the other side (controller PC and operator station on one LAN).
    #[default]
    Peer,
    /// Goes through a zenoh router given in `connect`; fails at open if none is reachable.
    Client,
}

/// Settings for one bus endpoint (controller or operator side). Serde-friendly so it can sit
/// in a TOML file; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BusConfig {
    /// First key chunk after `smp/`: which chair. Several rigs can share one network.
    pub rig: String,
    /// Peer or client.
    pub mode: BusMode,
    /// Endpoints to listen on, e.g. `tcp/0.0.0.0:7447`. Empty: listen on nothing (an operator
    /// station that only connects out).
    pub listen: Vec<String>,
    /// Endpoints to connect to, e.g. `tcp/192.168.1.20:7447`. In peer mode unreachable
    /// endpoints are retried in the background.
    pub connect: Vec<String>,
    /// Zenoh multicast scouting. Off by default so that tests and clinics are hermetic: only
    /// the endpoints written here are ever contacted.
    pub multicast_scouting: bool,
    /// How long an operator waits for the controller's acknowledgement, seconds.
    pub ack_timeout_s: f64,
    /// How often an unacknowledged command is re-sent (same seq; the controller de-duplicates),
    /// seconds. Covers the moment when the two sides have just connected.
    pub resend_interval_s: f64,
    /// Telemetry samples queued on the controller side before new ones are dropped.
    pub telemetry_queue: usize,
    /// Operator commands queued for the executor before new ones are refused.
    pub command_queue: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            rig: "default".to_owned(),
            mode: BusMode::Peer,
            listen: Vec::new(),
            connect: Vec::new(),
            multicast_scouting: false,
            ack_timeout_s: 2.0,
            resend_interval_s: 0.1,
            telemetry_queue: 64,
            command_queue: 64,
        }
    }
}

impl BusConfig {
    /// A peer listening on `endpoint` (the chair's usual setting).
    pub fn listening(endpoint: impl Into<String>) -> Self {
        Self { listen: vec![endpoint.into()], ..Self::default() }
    }

    /// A peer connecting to `endpoint` (the operator station's usual setting).
    pub fn connecting(endpoint: impl Into<String>) -> Self {
        Self { connect: vec![endpoint.into()], ..Self::default() }
    }

    /// Check the values that zenoh would not check for us.
    pub fn validate(&self) -> Result<(), BusError> {
        check_chunk("rig", &self.rig)?;
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(BusError::Config { what: format!("{name} must be a positive number of seconds, got {v}") })
            }
        };
        positive("ack_timeout_s", self.ack_timeout_s)?;
        positive("resend_interval_s", self.resend_interval_s)?;
        if self.telemetry_queue == 0 || self.command_queue == 0 {
            return Err(BusError::Config { what: "telemetry_queue and command_queue must be at least 1".to_owned() });
        }
        if self.mode == BusMode::Client && self.connect.is_empty() {
            return Err(BusError::Config {
                what: "client mode needs at least one `connect` endpoint (a router)".to_owned(),
            });
        }
        if self.mode == BusMode::Client && !self.listen.is_empty() {
            return Err(BusError::Config { what: "client mode cannot `listen`; use peer mode".to_owned() });
        }
        Ok(())
    }

    pub(crate) fn ack_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.ack_timeout_s)
    }

    pub(crate) fn resend_interval(&self) -> Duration {
        Duration::from_secs_f64(self.resend_interval_s)
    }

    /// The zenoh configuration for these settings. Everything not set here is zenoh's
    /// default, except the listen list, which is always written: zenoh's peer default would
    /// listen on every interface on a random port.
    pub fn to_zenoh(&self) -> Result<zenoh::Config, BusError> {
        self.validate()?;
        let mut cfg = zenoh::Config::default();
        let mode = match self.mode {
            BusMode::Peer => "\"peer\"",
            BusMode::Client => "\"client\"",
        };
        cfg.insert_json5("mode", mode).map_err(|e| zenoh_err("config mode", e))?;
        cfg.insert_json5("listen/endpoints", &endpoints_json(&self.listen)?)
            .map_err(|e| config_err("listen", &self.listen, e))?;
        cfg.insert_json5("connect/endpoints", &endpoints_json(&self.connect)?)
            .map_err(|e| config_err("connect", &self.connect, e))?;
        cfg.insert_json5("scouting/multicast/enabled", if self.multicast_scouting { "true" } else { "false" })
            .map_err(|e| zenoh_err("config scouting", e))?;
        Ok(cfg)
    }
}

fn endpoints_json(endpoints: &[String]) -> Result<String, BusError> {
    serde_json::to_string(endpoints).map_err(|e| BusError::Config { what: format!("endpoint list: {e}") })
}

fn config_err(field: &str, endpoints: &[String], e: impl std::fmt::Display) -> BusError {
    BusError::Config {
        what: format!("{field} endpoints {endpoints:?} rejected by zenoh ({e}); write them as tcp/HOST:PORT"),
    }
}

/// Reject names that would change the meaning of a key expression.
pub(crate) fn check_chunk(field: &'static str, value: &str) -> Result<(), BusError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value != "."
        && value != "..";
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidName { field, value: value.to_owned() })
    }
}

/// The key expressions of one session: `smp/<rig>/session/<id>/{telemetry,control,control/ack}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Telemetry from the chair.
    pub telemetry: String,
    /// Operator commands to the chair.
    pub control: String,
    /// The chair's acknowledgements.
    pub ack: String,
}

impl SessionKeys {
    /// Keys of `session_id` on `rig`; both must be plain key chunks.
    pub fn new(rig: &str, session_id: &str) -> Result<Self, BusError> {
        check_chunk("rig", rig)?;
        check_chunk("session id", session_id)?;
        let base = format!("smp/{rig}/session/{session_id}");
        Ok(Self {
            telemetry: format!("{base}/telemetry"),
            control: format!("{base}/control"),
            ack: format!("{base}/control/ack"),
        })
    }

    /// The control keys of every session on `rig`: the chair listens to all of them so that a
    /// command for a stale session is refused out loud instead of timing out.
    pub fn all_control(rig: &str) -> String {
        format!("smp/{rig}/session/*/control")
    }

    /// The ack key of `session_id` on `rig` (used to refuse commands for other sessions).
    pub(crate) fn ack_for(rig: &str, session_id: &str) -> String {
        format!("smp/{rig}/session/{session_id}/control/ack")
    }

    /// The session id chunk of a control key of `rig`, if `key` is one.
    pub(crate) fn session_of_control_key<'k>(rig: &str, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix("smp/")?.strip_prefix(rig)?.strip_prefix("/session/")?;
        let id = rest.strip_suffix("/control")?;
        (!id.contains('/')).then_some(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        let k = SessionKeys::new("chair-1", "2026-11-26_a").unwrap();
        assert_eq!(k.telemetry, "smp/chair-1/session/2026-11-26_a/telemetry");
        assert_eq!(k.control, "smp/chair-1/session/2026-11-26_a/control");
        assert_eq!(k.ack, "smp/chair-1/session/2026-11-26_a/control/ack");
        assert_eq!(SessionKeys::session_of_control_key("chair-1", &k.control), Some("2026-11-26_a"));
        assert_eq!(SessionKeys::session_of_control_key("chair-1", &k.ack), None);
        assert_eq!(SessionKeys::session_of_control_key("chair-2", &k.control), None);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a/b", "*", "a b", "x$", "..", "a?b", "#"] {
            assert!(matches!(SessionKeys::new("rig", bad), Err(BusError::InvalidName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn config_validation() {
        assert!(BusConfig::default().validate().is_ok());
        assert!(BusConfig { ack_timeout_s: 0.0, ..BusConfig::default() }.validate().is_err());
        assert!(BusConfig { ack_timeout_s: f64::NAN, ..BusConfig::default() }.validate().is_err());
        assert!(BusConfig { mode: BusMode::Client, ..BusConfig::default() }.validate().is_err());
        assert!(BusConfig { rig: "a/b".into(), ..BusConfig::default() }.validate().is_err());
    }

    #[test]
    fn zenoh_config_is_hermetic() {
        let cfg = BusConfig::listening("tcp/127.0.0.1:7447").to_zenoh().unwrap();
        assert_eq!(cfg.get_json("scouting/multicast/enabled").unwrap(), "false");
        assert!(cfg.get_json("listen/endpoints").unwrap().contains("tcp/127.0.0.1:7447"));
        assert_eq!(cfg.get_json("mode").unwrap(), "\"peer\"");
        let bad = BusConfig::listening("not an endpoint").to_zenoh();
        assert!(matches!(bad, Err(BusError::Config { .. })), "{bad:?}");
    }

    #[test]
    fn toml_like_partial_config_gets_defaults() {
        let c: BusConfig = serde_json::from_str(r#"{"rig":"chair-1","connect":["tcp/10.0.0.2:7447"]}"#).unwrap();
        assert_eq!(c.rig, "chair-1");
        assert!(!c.multicast_scouting);
        assert_eq!(c.ack_timeout_s, 2.0);
    }
}

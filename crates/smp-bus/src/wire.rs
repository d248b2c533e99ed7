//! Wire types: what travels on the zenoh keys, as versioned JSON.
//!
//! Every payload is a JSON object with a `v` field ([`WIRE_VERSION`]) and the session id it
//! belongs to, so a message read out of context (a capture, a log) says what it is. Unknown
//! fields are ignored so that a newer peer may add optional fields without breaking older ones;
//! a different `v` is refused with [`DecodeError::Version`].

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// Version of every payload this build writes and the only one it reads.
pub const WIRE_VERSION: u32 = 1;

/// Where a session stands, as the controller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Opening the port, waiting for the controller's banner.
    Connecting,
    /// Homing and unlocking.
    Homing,
    /// Registering the head (fiducials).
    Registering,
    /// Streaming dots.
    Running,
    /// Feed hold by the operator; may resume.
    Paused,
    /// Stopped by a fault (alarm, disconnect); needs resolution before resuming.
    Faulted,
    /// Coming back from a pause or a fault.
    Resuming,
    /// Every planned dot handled.
    Done,
    /// Stopped for good by the operator or the executor.
    Aborted,
    /// Stopped by an emergency stop (soft reset sent); the session must be resumed explicitly
    /// with `smp run --resume` after the cause is cleared.
    EmergencyStopped,
}

impl SessionState {
    /// True once the session can no longer move the arm (done, aborted, emergency-stopped).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Aborted | Self::EmergencyStopped)
    }
}

/// Machine position as the controller reports it (grbl `MPos`/`WPos`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachinePosition {
    /// Axis letters in order, e.g. `"XYZ"` or `"XYZAB"`, or `"J1J2J3J4J5J6"` for joints.
    pub axes: String,
    /// One value per axis: millimetres for linear axes, degrees for rotary axes and joints,
    /// as the controller reports them.
    pub values: Vec<f64>,
}

/// One telemetry sample from the chair, published at the executor's pace and on every state
/// change. Lossy by design: the operator side shows the latest one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Session state.
    pub state: SessionState,
    /// Dots confirmed executed so far.
    pub dots_done: u32,
    /// Dots planned in this session.
    pub dots_total: u32,
    /// Index (in plan order) of the last dot confirmed executed, if any.
    #[serde(default)]
    pub last_dot: Option<u32>,
    /// Latest machine position, if a status report has been seen.
    #[serde(default)]
    pub machine: Option<MachinePosition>,
    /// Text of the current fault while `state` is `faulted` (or the last one otherwise).
    #[serde(default)]
    pub fault: Option<String>,
    /// Seconds since the session started (the executor's clock).
    pub t_s: f64,
    /// Telemetry samples the controller side dropped before this one because the bus was slow
    /// (filled in by the bus when publishing).
    #[serde(default)]
    pub dropped_before: u64,
}

pub use smp_core::operator::OperatorCommand;

/// Who sent a command and its place in that operator's sequence. Acknowledgements are matched
/// on this pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommandId {
    /// Operator name as given at the station.
    pub operator: String,
    /// Strictly increasing per operator.
    pub seq: u64,
}

/// The payload on `.../control`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlMessage {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The session the operator means; a different one than the running session is refused.
    pub session_id: String,
    /// Operator name.
    pub operator: String,
    /// Strictly increasing per operator.
    pub seq: u64,
    /// What to do.
    pub command: OperatorCommand,
}

impl ControlMessage {
    /// The (operator, seq) pair of this message.
    pub fn id(&self) -> CommandId {
        CommandId { operator: self.operator.clone(), seq: self.seq }
    }
}

/// The controller's answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AckResult {
    /// The executor will act (or has acted) on the command.
    Accepted,
    /// The command was not acted upon.
    Refused {
        /// Why, in words for the operator.
        reason: String,
    },
}

impl AckResult {
    /// Shorthand for a refusal.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self::Refused { reason: reason.into() }
    }

    /// True for [`AckResult::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted)
    }
}

/// The payload on `.../control/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckMessage {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The session the acknowledged command was addressed to.
    pub session_id: String,
    /// Operator of the acknowledged command.
    pub operator: String,
    /// Sequence number of the acknowledged command.
    pub seq: u64,
    /// The answer.
    pub result: AckResult,
}

/// The payload on `.../telemetry`: a [`Telemetry`] sample with its envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryMessage {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The session the sample describes.
    pub session_id: String,
    /// The sample, flattened into the same object.
    #[serde(flatten)]
    pub telemetry: Telemetry,
}

/// Serialise a wire message. serde_json cannot fail on these types (string keys, no maps with
/// non-string keys), but a failure is still an error rather than a panic.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(msg)
}

/// Decode a payload of kind `kind` received on `key`: the version is checked first so that a
/// newer peer's message is reported as a version mismatch rather than as garbage.
pub fn decode<T: serde::de::DeserializeOwned>(key: &str, kind: &'static str, payload: &[u8]) -> Result<T, DecodeError> {
    let malformed = |message: String| DecodeError::Malformed { key: key.to_owned(), kind, message };
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
    match value.get("v").map(|v| v.as_u64()) {
        None => return Err(malformed("missing the version field `v`".to_owned())),
        Some(None) => return Err(malformed("the version field `v` is not an unsigned integer".to_owned())),
        Some(Some(found)) if found != u64::from(WIRE_VERSION) => {
            return Err(DecodeError::Version { key: key.to_owned(), found, expected: WIRE_VERSION })
        }
        Some(Some(_)) => {}
    }
    serde_json::from_value(value).map_err(|e| malformed(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_telemetry() -> Telemetry {
        Telemetry {
            state: SessionState::Running,
            dots_done: 12,
            dots_total: 300,
            last_dot: Some(11),
            machine: Some(MachinePosition { axes: "XYZ".into(), values: vec![1.5, -2.0, 30.25] }),
            fault: None,
            t_s: 4.5,
            dropped_before: 0,
        }
    }

    #[test]
    fn telemetry_round_trips_flat_with_version() {
        let msg = TelemetryMessage { v: WIRE_VERSION, session_id: "s1".into(), telemetry: sample_telemetry() };
        let bytes = encode(&msg).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"v\":1") && text.contains("\"state\":\"running\"") && text.contains("\"dots_done\":12")
        );
        let back: TelemetryMessage = decode("k", "telemetry", &bytes).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn control_and_ack_wire_form_is_stable() {
        let c = ControlMessage {
            v: 1,
            session_id: "s1".into(),
            operator: "ana".into(),
            seq: 7,
            command: OperatorCommand::EmergencyStop,
        };
        assert_eq!(
            String::from_utf8(encode(&c).unwrap()).unwrap(),
            r#"{"v":1,"session_id":"s1","operator":"ana","seq":7,"command":"emergency_stop"}"#
        );
        let a = AckMessage {
            v: 1,
            session_id: "s1".into(),
            operator: "ana".into(),
            seq: 7,
            result: AckResult::refused("no"),
        };
        assert_eq!(
            String::from_utf8(encode(&a).unwrap()).unwrap(),
            r#"{"v":1,"session_id":"s1","operator":"ana","seq":7,"result":{"status":"refused","reason":"no"}}"#
        );
    }

    #[test]
    fn garbage_and_wrong_version_are_errors() {
        assert!(matches!(
            decode::<ControlMessage>("k", "control", b"\xff\x00garbage"),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(decode::<ControlMessage>("k", "control", b"{}"), Err(DecodeError::Malformed { .. })));
        assert!(matches!(
            decode::<ControlMessage>("k", "control", b"{\"v\":\"one\"}"),
            Err(DecodeError::Malformed { .. })
        ));
        let v2 = br#"{"v":2,"session_id":"s1","operator":"ana","seq":7,"command":"pause"}"#;
        assert_eq!(
            decode::<ControlMessage>("k", "control", v2),
            Err(DecodeError::Version { key: "k".into(), found: 2, expected: 1 })
        );
        let unknown_cmd = br#"{"v":1,"session_id":"s1","operator":"ana","seq":7,"command":"dance"}"#;
        let err = decode::<ControlMessage>("k", "control", unknown_cmd).unwrap_err();
        assert!(err.to_string().contains("dance"), "{err}");
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let extra = br#"{"v":1,"session_id":"s1","operator":"ana","seq":7,"command":"pause","note":"new"}"#;
        assert_eq!(decode::<ControlMessage>("k", "control", extra).unwrap().command, OperatorCommand::Pause);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<ControlMessage>("k", "control", &bytes);
            let _ = decode::<TelemetryMessage>("k", "telemetry", &bytes);
            let _ = decode::<AckMessage>("k", "ack", &bytes);
        }

        #[test]
        fn control_round_trips(seq in any::<u64>(), op in "[a-z]{1,12}", c in 0usize..4) {
            let command = [OperatorCommand::Pause, OperatorCommand::Resume, OperatorCommand::Abort, OperatorCommand::EmergencyStop][c];
            let m = ControlMessage { v: WIRE_VERSION, session_id: "s".into(), operator: op, seq, command };
            let back: ControlMessage = decode("k", "control", &encode(&m).unwrap()).unwrap();
            prop_assert_eq!(back, m);
        }
    }
}

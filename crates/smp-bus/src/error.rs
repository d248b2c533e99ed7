//! Errors of the bus: configuration, zenoh, wire decoding and operator round trips.

use std::time::Duration;

/// Everything that can go wrong between the chair's controller and an operator station.
///
/// Messages name the thing that failed and the fix, because the CLI prints them to an operator
/// standing next to a patient.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A `BusConfig` value is unusable.
    #[error("bus configuration: {what}; fix the [bus] settings or the --bus flags")]
    Config {
        /// What is wrong, naming the field.
        what: String,
    },
    /// The rig name, session id or operator name cannot be a zenoh key chunk.
    #[error(
        "bus {field} {value:?} is not a valid key chunk: use letters, digits, '-', '_' or '.', \
         without '/', '*', '$', '?', '#' or spaces"
    )]
    InvalidName {
        /// Which name (`rig`, `session id`, `operator`).
        field: &'static str,
        /// The rejected value.
        value: String,
    },
    /// Zenoh refused an operation (open, declare, put).
    #[error("zenoh {during} failed: {message}; check the endpoints and that the port is free or reachable")]
    Zenoh {
        /// What the bus was doing.
        during: &'static str,
        /// Zenoh's own message.
        message: String,
    },
    /// The bus worker thread could not be started or has stopped.
    #[error("bus worker {what}; reopen the bus")]
    Worker {
        /// What happened to the worker.
        what: String,
    },
    /// The controller did not acknowledge a command in time.
    #[error(
        "no acknowledgement for {command} (seq {seq}) from session {session_id} within {:.1} s; \
         is the controller running that session and reachable at the configured endpoints?",
        timeout.as_secs_f64()
    )]
    AckTimeout {
        /// The command that went unanswered (wire name).
        command: String,
        /// Its sequence number.
        seq: u64,
        /// The session it was addressed to.
        session_id: String,
        /// How long the operator side waited.
        timeout: Duration,
    },
    /// The command receiver was already taken by an earlier call.
    #[error("the {what} receiver was already taken; keep the first one")]
    ReceiverTaken {
        /// Which receiver.
        what: &'static str,
    },
}

/// A payload that could not be decoded into a wire message. Never a panic: garbage on a key
/// becomes one of these, and the bus reports it as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("payload on {key} is not a valid {kind} message: {message}")]
    Malformed {
        /// The key expression it arrived on.
        key: String,
        /// The expected message kind (`control`, `ack`, `telemetry`).
        kind: &'static str,
        /// serde_json's description.
        message: String,
    },
    /// Well-formed but of a wire version this build does not speak.
    #[error("payload on {key} has wire version {found}; this build speaks {expected}: upgrade the older side")]
    Version {
        /// The key expression it arrived on.
        key: String,
        /// The `v` it carried.
        found: u64,
        /// [`crate::WIRE_VERSION`].
        expected: u32,
    },
}

pub(crate) fn zenoh_err(during: &'static str, e: impl std::fmt::Display) -> BusError {
    BusError::Zenoh { during, message: e.to_string() }
}

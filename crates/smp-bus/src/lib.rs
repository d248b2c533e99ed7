//! Zenoh telemetry out and operator control in, between the chair's controller PC and
//! operator stations or QA viewers.
//!
//! smp-bus owns the key expressions (`smp/<rig>/session/<id>/telemetry`, `.../control`,
//! `.../control/ack`), the versioned JSON wire types, the safety rules for operator commands
//! ([`admit`], [`SeqFilter`]) and the two endpoints, [`ControllerBus`] and [`OperatorBus`].
//!
//! Invariants:
//! - the bus never stalls the executor: telemetry and acknowledgements are handed over through
//!   channels whose send side never blocks; when telemetry backs up it is dropped and counted;
//! - a payload that does not decode becomes an error event, never a panic and never a command;
//! - a command reaches the executor at most once (duplicates and replays are ignored, their
//!   cached acknowledgement re-sent), and only if addressed to the running session;
//! - `emergency_stop` and `pause` are always accepted, `resume` only from `paused`.
//!
//! Zenoh runs on a thread owned by each bus object (zenoh 1.x cannot run its blocking calls on
//! the executor's current-thread runtime), so the API is the same for sync and async callers.
//! Multicast scouting is off unless configured: only the endpoints in [`BusConfig`] are used.

mod config;
mod controller;
mod error;
mod operator;
mod policy;
mod wire;
mod worker;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod loopback_tests;

pub use config::{BusConfig, BusMode, SessionKeys};
pub use controller::{ControlEvent, ControllerBus, ReceivedCommand};
pub use error::{BusError, DecodeError};
pub use operator::{OperatorBus, TelemetryEvent};
pub use policy::{admit, SeqFilter, SeqVerdict};
pub use wire::{
    decode, encode, AckMessage, AckResult, CommandId, ControlMessage, MachinePosition, OperatorCommand, SessionState,
    Telemetry, TelemetryMessage, WIRE_VERSION,
};
pub use worker::BusStats;

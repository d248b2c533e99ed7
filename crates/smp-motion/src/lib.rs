//! The session executor: streams a verified program to a grbl or Marlin controller over a
//! serial port (a real device, or the simulator on a pty) and journals every dot's state as it
//! goes; takes pause, resume, abort and emergency stop from the operator.
//!
//! Owns the port and the clock. The protocols themselves are smp-gcode's sans-I/O cores
//! (grbl character counting, grbl send-response, Marlin numbered lines; [`Protocol`]); this
//! crate only reads bytes (a blocking reader thread forwards
//! them over a channel), hands them and `now` to the streamer, drains its events, writes what
//! it wants to transmit, and sleeps until the next input or deadline on a current-thread
//! tokio runtime.
//!
//! Operator commands take a separate path that never waits on the journal nor on the pump:
//! [`UnboundedSender::send`] writes their byte itself (feed hold `!`, cycle start `~`, soft
//! reset 0x18; Marlin `M112`) on a second handle of the port, and a small relay thread sends
//! the periodic status query `?` while streaming; the pump catches up with the bookkeeping
//! afterwards (see `wire.rs` for the ordering rules).
//!
//! Invariant (the reason this crate exists): a dot's `sent` state is committed durably to
//! the journal before any byte of its plunge line is written to the port, and a dot is never
//! plunged unless the journal holds it as `planned`. After any fault (controller error,
//! alarm, reset, ack timeout, I/O or journal failure) streaming stops, the controller is held
//! and flushed where it still listens, every dot that was in flight is journaled `uncertain`,
//! and nothing is ever resent automatically: uncertain dots are resolved by looking.

mod cartridge;
mod control;
pub mod core;
mod driver;
mod error;
mod executor;
mod link;
mod protocol;
mod run_on;
pub mod wire;

pub use cartridge::{CartridgeEvent, CartridgeEventKind};
pub use control::{
    unbounded_channel, AppliedCommand, Control, ExecutorState, ExecutorUpdate, OperatorCommand, UnboundedReceiver,
    UnboundedSender,
};
pub use error::{FaultKind, FaultReport, MotionError};
pub use executor::{execute, execute_with_control, ExecuteConfig, ExecutionReport, Progress};
pub use link::open_serial;
pub use protocol::{Protocol, UnknownProtocol};
pub use run_on::{pause_run_on, PauseRunOn};

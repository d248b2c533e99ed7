//! Sans-I/O G-code for the SMP controller: the compiler from session plans to grbl or Marlin
//! programs ([`Dialect`]), the independent safety verifier, the `.nc` file format, and the
//! host protocols as state machines: grbl character counting, grbl send-response and Marlin
//! numbered lines.
//!
//! Invariant: `smp-gcode` never owns a port or a clock. Programs are values; the protocol
//! core takes received bytes and `now` and hands back bytes to write, events and deadlines
//! (`smp-motion` does the I/O). The verifier never trusts the compiler: it re-reads the
//! G-code text and simulates the tip against the scan's surface, and a [`VerifiedProgram`]
//! can only come out of [`verify`].
//!
//! Conventions (see ARCHITECTURE.md): millimetres, mm/min and seconds; machine coordinates of
//! the `xyz` profile are the needle tip in the base frame; `a_from_b` maps b into a.

pub mod compile;
pub mod dialect;
pub mod grbl;
pub mod grbl_sr;
pub mod host;
pub mod marlin;
pub mod program;
pub mod tilted;
pub mod verify;
pub mod verify_tilted;

pub use compile::{compile, compile_with, CompileError, CompileOptions};
pub use dialect::{Dialect, DialectError};
pub use grbl::{
    parse_response, AccessoryState, AxisValues, Feedback, GrblConfig, GrblEvent, GrblStreamer, MachineState, Overrides,
    PinState, ProtocolError, Realtime, Response, StatusReport, SPINDLE_STOP_BYTE,
};
pub use grbl_sr::GrblSrStreamer;
pub use host::survey::{ControllerProfile, Survey, SurveyConfig, SurveyError, Unsuitable};
pub use host::{new_streamer, HostEvent, HostStreamer, Protocol, UnknownProtocol};
pub use marlin::{feed_rate_percent, grbl_to_marlin, MarlinConfig, MarlinError, MarlinEvent, MarlinStreamer};
pub use program::{parse_nc, LineRole, ParseError, Program, ProgramLine};
pub use verify::{
    verify, AxisRange, MachineNeeds, VerifiedProgram, VerifyError, VerifyReport, Violation, ViolationKind,
};

//! grbl 1.1 character-counting host protocol, sans-I/O (in the manner of quinn-proto).
//!
//! grbl has a serial receive buffer of `rx_buffer_bytes` (128). The host keeps track of the
//! bytes of every line it has sent but not yet seen answered (`ok` or `error:N`, one answer
//! per line, in order) and only sends the next line when it fits: that keeps the buffer full
//! (so short moves never starve the planner) and never overflows it (an overflow silently
//! drops bytes, i.e. corrupts G-code). Realtime commands (`?`, `!`, `~`, Ctrl-X) are taken off
//! the wire by grbl's interrupt handler, never enter the buffer, and so jump the queue here too.
//!
//! Inputs: [`GrblStreamer::queue_line`], [`GrblStreamer::realtime`],
//! [`GrblStreamer::handle_received`] (any chunking of the byte stream), and
//! [`GrblStreamer::handle_timeout`]. Outputs: [`GrblStreamer::poll_transmit`] (bytes to write),
//! [`GrblStreamer::poll_event`] (in order) and [`GrblStreamer::poll_timeout`] (next deadline).
//! The caller owns the port and the clock; `now` is a [`Duration`] since any fixed origin.
//!
//! Safety defaults: after an `ALARM` (numbered or with text), a controller reset, or (with
//! `pause_on_error`) an `error:N`, no further queued line is sent until the caller calls
//! [`GrblStreamer::resume`] (or drops the rest with [`GrblStreamer::clear_queue`]): a medical
//! program is never continued past a fault without a decision.
//!
//! Every received line goes through [`parse_response`], the one place that knows grbl's
//! response forms (grbl 1.1, grbl 0.9, grblHAL): answers, alarms, status reports with every
//! field typed (positions of 3 to 6 axes, overrides, work offset, line number, pins,
//! accessories), `[...]` feedback and settings, banners. It is total: a line it does not know
//! becomes [`GrblEvent::Unparsed`] (logged, never fatal), and a status report is read field
//! by field, so one malformed field is listed in [`StatusReport::bad_fields`] and the others
//! are kept. A malformed line never answers a line: only an exact `ok` or `error:` does.
//!
//! The module is split by job: `streamer` is the character-counting state machine
//! ([`GrblStreamer`], its settings and events), `response` parses one received line
//! ([`parse_response`]), `status` reads the fields of a status report ([`StatusReport`]) and
//! `realtime` names the realtime bytes. Everything public is re-exported here, so the paths
//! `smp_gcode::grbl::X` and `smp_gcode::X` stay what they were.

mod realtime;
mod response;
mod status;
mod streamer;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod streamer_props;

pub use realtime::{Realtime, SPINDLE_STOP_BYTE};
pub use response::{parse_response, Feedback, Response};
pub use status::{AccessoryState, AxisValues, MachineState, Overrides, PinState, StatusReport, MAX_AXES};
pub use streamer::{GrblConfig, GrblEvent, GrblStreamer, ProtocolError, MAX_LINE_CHARS};

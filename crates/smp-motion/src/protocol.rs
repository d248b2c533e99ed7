//! The host protocols live in smp-gcode (`smp_gcode::host`, sans-I/O); this crate only
//! drives them.

pub use smp_gcode::host::{Protocol, UnknownProtocol};

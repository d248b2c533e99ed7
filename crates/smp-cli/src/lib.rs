//! The `smp` command line: subcommands that drive the other crates, progress bars, and
//! the one place where errors become one clear line, a hint and an exit status.
//!
//! Invariant: no domain logic lives here; every figure it prints is computed by a library
//! crate (or by `smp_core::eval` against the simulator's ground truth).

pub mod bus_link;
pub mod calibrate_cmd;
pub mod demo;
pub mod error;
pub mod eval;
pub mod files;
pub mod inspect;
pub mod observe;
pub mod operator_cmd;
pub mod outdir;
pub mod planning;
pub mod resolve_cmd;
pub mod run_cmd;
pub mod scan_cmd;
pub mod sim;

//! The `smp` binary and the CLI library, as people use them.
//!
//! One test binary: one build and link, and libtest runs the files' tests side by side. Each
//! file below was a test target of its own; `cargo test -p smp-cli --test cli FILE::`
//! runs one of them.

#[path = "calibrate.rs"]
mod calibrate;
#[path = "cli_errors.rs"]
mod cli_errors;
#[path = "eval_motion.rs"]
mod eval_motion;
#[path = "operator_exit.rs"]
mod operator_exit;
#[path = "planning.rs"]
mod planning;
#[path = "port_and_sim.rs"]
mod port_and_sim;
#[path = "scan_registration.rs"]
mod scan_registration;
#[path = "sim_controller.rs"]
mod sim_controller;
#[path = "sim_render.rs"]
mod sim_render;
#[path = "verify_rigs.rs"]
mod verify_rigs;

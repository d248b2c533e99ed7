//! The executor against the simulated controllers over real pseudo-terminals.
//!
//! One test binary: one build and link, and libtest runs the files' tests side by side. Each
//! file below was a test target of its own; `cargo test -p smp-motion --test pty FILE::`
//! runs one of them.

mod common;

#[path = "feed_rate_pty.rs"]
mod feed_rate_pty;
#[path = "marlin_pause_pty.rs"]
mod marlin_pause_pty;
#[path = "pause_cartridge_pty.rs"]
mod pause_cartridge_pty;
#[path = "protocols_pty.rs"]
mod protocols_pty;
#[path = "stop_mid_dot_pty.rs"]
mod stop_mid_dot_pty;

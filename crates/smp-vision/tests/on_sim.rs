//! Vision against the simulator's renders and truth.
//!
//! One test binary: one build and link, and libtest runs the files' tests side by side. Each
//! file below was a test target of its own; `cargo test -p smp-vision --test on_sim FILE::`
//! runs one of them.

#[path = "band_tracking_replay.rs"]
mod band_tracking_replay;
#[path = "calibrate_on_sim.rs"]
mod calibrate_on_sim;
#[path = "dot_check_on_sim.rs"]
mod dot_check_on_sim;
#[path = "fiducials_on_sim.rs"]
mod fiducials_on_sim;
#[path = "follicles_on_random.rs"]
mod follicles_on_random;
#[path = "follow_up_on_sim.rs"]
mod follow_up_on_sim;
#[path = "test_dots_on_sim.rs"]
mod test_dots_on_sim;
#[path = "tone_on_sim.rs"]
mod tone_on_sim;
#[path = "two_sided_detection.rs"]
mod two_sided_detection;

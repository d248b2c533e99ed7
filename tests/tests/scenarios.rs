//! Cross-crate scenarios.
//!
//! One test binary: one build and link, and libtest runs the files' tests side by side. Each
//! file below was a test target of its own; `cargo test -p smp-tests --test scenarios FILE::`
//! runs one of them.

#[path = "band_capture_session.rs"]
mod band_capture_session;
#[path = "e2e_demo.rs"]
mod e2e_demo;
#[path = "estimate_vs_sim.rs"]
mod estimate_vs_sim;
#[path = "feed_override_run.rs"]
mod feed_override_run;
#[path = "followup_course.rs"]
mod followup_course;
#[path = "golden_transcripts.rs"]
mod golden_transcripts;
#[path = "head_drift.rs"]
mod head_drift;
#[path = "multi_axis_run.rs"]
mod multi_axis_run;
#[path = "run_resume.rs"]
mod run_resume;
#[path = "stream_pty.rs"]
mod stream_pty;
#[path = "vision_on_sim.rs"]
mod vision_on_sim;

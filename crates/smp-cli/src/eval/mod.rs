//! `smp eval vision|planner|motion`: components measured against the simulator's ground truth.

pub mod motion;
pub mod planner;
pub mod vision;

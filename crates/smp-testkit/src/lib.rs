//! Test support only: synthetic inputs for the tests and benches of the other crates, never
//! used by production code (it is a `[dev-dependencies]` entry everywhere).
//!
//! Owns: a small dome-shaped scalp case with a session plan ready to compile and verify
//! (`dome_case`: [`synthetic_case`], [`SyntheticCase`]) and synthetic scalp maps for the
//! planner (`maps`: [`synthetic_map`], [`full_head_map`]).
//!
//! Invariant: deterministic (seeded or free of randomness), and dependent only on
//! `smp-core` and small pure crates: never on the crates it serves (smp-gcode, smp-planner,
//! smp-sim, ...), so no dev-dependency cycle can form, and never on opencv, rerun, zenoh or
//! tokio.

pub mod dome_case;
pub mod maps;

pub use dome_case::{dome_patch, dome_point_head, session_spec, synthetic_case, synthetic_case_for, SyntheticCase};
pub use maps::{full_head_map, synthetic_map, synthetic_region, FullHeadMapSpec, SyntheticMapSpec};

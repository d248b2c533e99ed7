//! Domain types of the SMP controller: frames, units, geometry, camera model, scalp map,
//! session plan, rig, needle entries, and the pure evaluation helpers that compare them.
//!
//! Invariant: `smp-core` performs no I/O and owns no clock. Files are parsed from strings
//! handed in by the caller, so every crate can share these types without pulling in a port,
//! a camera or a database.
//!
//! Conventions (see ARCHITECTURE.md): millimetres and seconds inside, degrees only in files
//! people edit; a transform `a_from_b` maps points in frame `b` into frame `a`; frames are
//! `head` (registered to the patient), `camera`, `base` (arm base), `flange`, `needle` (tip).

pub mod arm;
pub mod calib_board;
pub mod camera;
pub mod capture;
pub mod color;
pub mod entry;
pub mod error;
pub mod eval;
pub mod fiducial_layout;
pub mod geometry;
pub mod image;
pub mod intake;
pub mod kinematics;
pub mod map;
pub mod operator;
pub mod plan;
pub mod rig;
pub mod spatial;
pub mod test_dots;
pub mod toolpath;

pub use entry::NeedleEntry;
pub use error::SpecError;

/// Version of every machine-written JSON file (map, plan, report) this build writes and reads.
pub const JSON_FORMAT_VERSION: u32 = 1;
/// Version of every person-edited TOML file (patient, rig, session spec) this build reads.
pub const TOML_FORMAT_VERSION: u32 = 1;

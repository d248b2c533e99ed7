//! The simulated world that stands in for the patient, the cameras and the arm.
//!
//! Owns: synthetic patients with ground truth (`patient`), camera rendering of them
//! (`render`), the skin's response to the needle and its healing between sessions (`skin`,
//! and `healed_map` for the healed scan of a map straight from its plans),
//! a grbl-compatible controller behind a pseudo-terminal (`controller`,
//! `pty`) that records every needle entry, patient micro-motion (`motion_model`), and the
//! session's machine and cameras as smp-session's traits (`world`).
//!
//! Invariant: ground truth leaves this crate only through explicit `truth` accessors used by
//! evaluation; images and controller replies are the only channel to the code under test.
//! The controller implements grbl's side of the protocol itself and never reuses smp-gcode's
//! host state machine, so that a protocol bug cannot hide on both sides.

pub mod band_cameras;
pub mod calib_scene;
pub mod calib_views;
pub mod charuco;
pub mod controller;
pub mod dot_site;
pub mod faults;
pub mod fiducial;
pub mod healed_map;
pub mod motion_model;
pub mod patient;
pub mod patient_file;
pub mod patient_presets;
pub mod pty;
pub mod random_patient;
pub mod render;
pub mod scan;
pub mod score;
pub mod skin;
pub mod test_dots;
pub mod tiles;
pub mod truth_map;
pub mod world;
pub mod world_record;

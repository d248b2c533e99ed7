//! One session, from loaded inputs to its report, for the real arm and the simulator alike.
//!
//! Owns: the session's decisions ([`core`], sans-I/O: when to hold, what becomes uncertain,
//! when to re-register, what to recompile, when it is done), the engine that carries them out
//! ([`run_session`]: journal, compile and verify, stream with smp-motion's executor, track the
//! head, relay the operator, look at uncertain dots), and the traits through which it meets
//! the world ([`world`]: machine, cameras, operator, observers). A real rig implements them
//! here ([`serial`] for the controller, [`capture`] for the band cameras over OpenCV's
//! `VideoCapture`); the simulator implements them in smp-sim. Before a program streams, the
//! controller is asked what it is ([`survey`]).
//!
//! Invariant: no clap, no zenoh, no simulator types; nothing here reads the world's truth.
//! The engine decides nothing the core did not decide.

pub mod capture;
pub mod check;
pub mod core;
mod engine;
pub mod register;
mod report;
pub mod serial;
pub mod survey;
pub mod world;

pub use engine::{
    program_for_planned, run_end, run_session, JournalTarget, SessionError, SessionInputs, TrackingSettings, World,
};
pub use report::{ProgramSummary, SessionReport};
pub use world::{
    BandCameras, BandFrames, CameraError, Cameras, Clock, FlangeCamera, Machine, MachineError, Observer, Operator,
    SessionEvent, SessionState, WallClock,
};

//! Errors of the planner: only where no usable plan can be made. Partial results (a smaller
//! area, a density the spacing cannot reach) are warnings on the plan instead.

use smp_core::SpecError;
use thiserror::Error;

/// Why a session could not be planned. Every message names the input and what would fix it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PlanError {
    /// A map, spec, rig or registration value is out of range or not finite (names the field).
    #[error("invalid planner input: {0}")]
    Input(#[from] SpecError),
    /// The treatment mask is empty: no cell is both a treated region and reachable.
    #[error("nothing to treat: {reason}")]
    EmptyTreatment { reason: String },
    /// The mask is not empty, but not a single dot fits (follicles or spacing fill it).
    #[error("no dot could be placed: {reason}")]
    NoDots { reason: String },
    /// More dots than the dot id scheme can number within one session.
    #[error("the session has {dots} dots; at most {max} fit one session's id range; split it into zones or sessions")]
    TooManyDots { dots: usize, max: u32 },
    /// The patient's intake lists a contraindication that is not resolved and no clinician
    /// has overridden it on record: no session may be planned (DOMAIN).
    #[error(
        "the patient intake lists unresolved contraindication(s) {names}: no session may be planned; resolve them in \
         the patient file's [intake] (resolved = true) after clinical review, or record a clinician override \
         ([intake.clinician_override] with clinician, reason and date)"
    )]
    Contraindicated { names: String },
    /// A post-condition the planner checks on its own output failed: a planner bug, never
    /// silently passed on to the G-code compiler.
    #[error("planner self-check failed: {0}; this is a planner bug: report it with the map and the session spec")]
    SelfCheck(String),
}

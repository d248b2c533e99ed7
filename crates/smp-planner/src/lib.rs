//! Pure session planning: patient gate, designed hairline, zone densities, layered dot
//! placement, pigment tone, execution order, estimates, and the consultation mock-up.
//!
//! Invariant: `smp-planner` never performs I/O, owns no clock and draws randomness only from
//! the seeds in its inputs (`SessionSpec::seed`, the hairline's own seed; ChaCha8), so the
//! same inputs give a byte-identical plan. Every plan it returns has been checked against
//! its own hard constraints before it leaves: no two dots, and no dot and map follicle or
//! earlier needle entry, closer than `min_spacing_mm` in the head frame; no dot in front of
//! the designed hairline; every dot inside the treatment mask, at least `region_margin_mm`
//! from untreated skin and no steeper than `max_tilt_deg`; depth within the limit. It refuses
//! to plan for a patient whose intake has an unresolved contraindication without a
//! clinician's override on record.
//!
//! Pipeline of [`plan_session_full`] (and of [`plan_session`], which is the same without
//! intake, pigment ladder or earlier entries):
//! 1. validate every input (a NaN names its field); the intake gate;
//! 2. `mask`: treatment mask on the map's region grid (regions, margin, tilt), minus the skin
//!    in front of the designed hairline (`hairline`);
//! 3. `density`: target density per point: the zone's final density (`zones`), ramped across
//!    the hairline band, minus what natural follicles and healed dots of earlier sessions
//!    already provide, this session's share of it, feathered at the mask border;
//! 4. `sample`: variable-density Poisson-disk dots on the skin (Bridson plus a fill pass that
//!    makes the pattern maximal), with follicles and earlier dots as fixed points, the
//!    packing constant calibrated so that the count matches the density integral;
//! 5. order: nearest-neighbour path from the edge, improved by 2-opt and Or-opt (one call,
//!    `order_points` in `pipeline`);
//! 6. tone (`tone`): shade and dilution per dot from the pigment ladder, by session, zone,
//!    skin tone and hair colour;
//! 7. `estimate`: travel length and arm time of the per-dot motion the compiler emits.
//!
//! Layered sessions (DOMAIN): session 1 places about 40 % of the final dots with the softer,
//! wider hairline band; session 2 is planned from a new scan of the healed scalp, where the
//! session-1 dots are `SmpDot` follicles: they count toward the target and new dots
//! interleave between them; session 3 (`session_share = 1`) completes what is still missing.
//! [`layered_session_spec`] derives the specs; `smp_sim::healed_map::heal_map` imitates the healed scan.
//!
//! Conventions: millimetres and seconds inside; `a_from_b` maps frame b into frame a; the
//! plan is in the head frame; the needle is vertical in the base frame (`xyz` rigs).//!
//! Layout: `request` holds the pipeline's inputs, tuning and results; `prepare` runs steps
//! 1-3, `place` step 4, and `pipeline` the whole of it with ordering, tone, estimates and
//! the final self-check; the other modules are the steps themselves.

mod bound;
mod density;
mod error;
mod estimate;
mod geometry;
pub mod hairline;
mod mask;
pub mod metrics;
mod mockup;
mod order;
mod pipeline;
mod place;
mod prepare;
mod request;
mod sample;
pub mod tone;
mod validate;
pub mod zones;

pub use bound::{tour_lower_bound_mm, tour_lower_bound_with, BoundParams, LowerBound};
pub use error::PlanError;
pub use estimate::{
    cycle_floor, dot_timing, dot_timing_for_rig, estimate_arm_time, ArmTimeEstimate, CycleFloor, EstimateError,
};
pub use hairline::{Hairline, HairlineParams};
pub use mockup::{
    draw_disc, draw_hairline, lab_to_srgb, pigment_opacity, render_mockup, render_mockup_with_hairline, HAIRLINE_RGB,
    MOCKUP_DOT_DIAMETER_MM, PIGMENT_RGB,
};
pub use order::{order_dots, recovery_violations, DotTiming, OrderError, OrderOutcome, OrderParams, RecoveryRule};
pub use pipeline::{
    hairline_polyline, layered_session_spec, place_session, plan_session, plan_session_full, plan_session_with,
};
pub(crate) use prepare::prepare;
pub use request::{Placement, PlanOutcome, PlanRequest, PlanStats, PlannerConfig};
pub use tone::{PigmentLadder, ToneChoice, DEFAULT_LADDER_TOML};
pub use zones::ZoneRules;

/// The default session: session 1 of the crown (`sim/sessions/crown-s1.toml`), embedded so
/// that `smp demo` needs no files.
pub const DEFAULT_SESSION1_TOML: &str = include_str!("../../../sim/sessions/crown-s1.toml");

/// Session 1 of a full head (`sim/sessions/full-s1.toml`): hairline, zones, recovery rule.
/// Sessions 2 and 3 derive from it with [`layered_session_spec`].
pub const FULL_HEAD_SESSION1_TOML: &str = include_str!("../../../sim/sessions/full-s1.toml");

/// Dot ids are `session * DOT_ID_STRIDE + index in execution order`, so the ids of different
/// sessions of one patient never collide (a `PlanFile` requires ids unique across sessions).
pub const DOT_ID_STRIDE: u32 = 100_000;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_full;

//! Fixtures the planner's whole-planner tests share.

use nalgebra::{Isometry3, Translation3, UnitQuaternion};
use smp_core::plan::SessionSpec;
use smp_core::rig::Rig;

use crate::DEFAULT_SESSION1_TOML;

/// The demo's crown session 1.
pub(crate) fn session1() -> SessionSpec {
    SessionSpec::from_toml_str(DEFAULT_SESSION1_TOML).expect("default session parses")
}

pub(crate) fn rig() -> Rig {
    Rig::default_sim()
}

/// Level registration in the middle of the work area: synthetic maps are level in the head
/// frame, so patch +z is the vertical needle axis and every point stays inside the rig's travel.
pub(crate) fn base_from_head() -> Isometry3<f64> {
    Isometry3::from_parts(Translation3::new(250.0, 0.0, 100.0), UnitQuaternion::identity())
}

//! Synthetic patients: a head ellipsoid with hair regions, skin tone and ground-truth
//! follicles, generated deterministically from a person-edited TOML file.
//!
//! Why a model this simple: the pipeline under test (vision -> planner -> G-code -> controller)
//! needs a scalp whose truth is known exactly, that looks like a shaved scalp to a camera, and
//! that has the features a clinic treats (a receding frontal hairline, a thinning crown, a
//! scar). An ellipsoid with regions decided by position on it gives all of that, renders fast
//! and keeps every number in one readable file (`sim/patients/*.toml`).
//!
//! Angles on the head: a direction from the head centre is given by its *polar* angle from
//! the vertex (+z head) and its *azimuth* from the nose (+x head) toward the patient's left
//! (+y head). Polar 25°, azimuth 180° is 25° behind the vertex: the part of the head that
//! faces up on the default rig's head rest.
//!
//! Layout: `spec` is the resolved patient file and its validation; `regions` says what
//! the skin is at each point of the head (hair region, follicle density, scars, mottling);
//! `sampling` parametrises the ellipsoid and samples it uniformly by area; `generate`
//! builds the [`SyntheticPatient`] (follicles) and answers the truth queries; `prior_dots`
//! places, attaches and heals the earlier sessions' SMP dots.

mod generate;
mod prior_dots;
mod regions;
mod sampling;
mod spec;

use nalgebra::{Isometry3, Vector3};

pub use crate::fiducial::{FiducialSpec, TruthFiducial};
pub use crate::patient_file::{HairSpec, SkinSpec};
pub use generate::{SyntheticPatient, TruthFollicle};
pub(crate) use regions::inside_weight;
pub use spec::{
    CrownSpec, EllipseScarSpec, FollicleSpec, HairlineSpec, HeadSpec, PatientSpec, PolylineScarSpec, PriorDotSpec,
    PriorSessionSpec, ScalpSpec, ScarSpec, SurfaceDiscSpec, ToneSpec, DEFAULT_PATIENT_TOML,
};

/// Unit direction from polar (from +z) and azimuth (from +x toward +y) angles in degrees.
pub fn direction_from_angles_deg(polar_deg: f64, azimuth_deg: f64) -> Vector3<f64> {
    let (t, p) = (polar_deg.to_radians(), azimuth_deg.to_radians());
    Vector3::new(t.sin() * p.cos(), t.sin() * p.sin(), t.cos())
}

/// The head direction that points straight up (+z base) for a given head pose: the centre
/// of the part of the scalp a vertical needle can reach.
pub fn up_direction_head(base_from_head: &Isometry3<f64>) -> Vector3<f64> {
    base_from_head.rotation.inverse() * Vector3::z()
}

#[cfg(test)]
mod preset_tests;
#[cfg(test)]
mod spec_tests;
#[cfg(test)]
mod tests;

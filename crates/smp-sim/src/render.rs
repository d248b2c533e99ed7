//! Camera images of a synthetic patient: the flange camera's close-up tiles and the fixed
//! overview camera's photo, each with a structured-light depth frame.
//!
//! Why per-pixel ray casting through
//! [`CameraIntrinsics::ray`](smp_core::camera::CameraIntrinsics::ray): the image must be
//! what a real camera with that lens distortion would see, so that vision's undistortion
//! (through the same core camera model, or OpenCV with the same coefficients) is exercised
//! for real.
//! Follicles are splatted with analytic coverage (a disc convolved with the pixel's
//! footprint on the skin), which anti-aliases the 7-px discs of a close-up and keeps the
//! sub-pixel follicles of the overview photo area-correct, so hair there reads as a grey
//! tint as in a real photo. Earlier SMP dots (the patient's prior dots) are drawn under the
//! follicles with a soft, area-preserving profile in their healed blue-grey colour, because
//! that is how pigment under the epidermis looks and what vision must tell from a follicle's
//! sharp brown-black rim. Sensor and depth noise are seeded from the config and the view's
//! label: every image replays exactly.
//!
//! Layout: `config` holds [`RenderConfig`] and the lamps' Lambert shading; `view` casts the
//! rays and draws skin, prior dots and follicles ([`render_view`] and the two fixed views);
//! `splat` is the anti-aliased coverage of a dot or follicle; `markers` draws the head-band
//! labels and gives their pixel truth; `scars` gives the scar outlines' truth; `rays` caches
//! each camera model's per-pixel rays; `develop` turns radiance into the 8-bit frame
//! (defocus, exposure, noise, sRGB).

mod config;
mod develop;
mod markers;
mod rays;
mod scars;
mod splat;
mod view;

pub(crate) use config::lambert;
pub use config::RenderConfig;
pub use develop::circle_of_confusion_px;
pub(crate) use develop::develop;
pub use markers::fiducial_corners_px;
pub(crate) use rays::ray_table;
pub use scars::scar_outlines_head_mm;
pub use view::{render_flange_view, render_overview, render_view};

#[cfg(test)]
mod marker_tests;
#[cfg(test)]
mod tests;

//! Geometry the planner needs on top of the surface patch: tilt from the vertical needle,
//! surface area factor, and the head/patch/base transforms bundled once.

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::geometry::SurfacePatch;

/// The surface patch together with the registration the plan is made for.
#[derive(Debug, Clone)]
pub(crate) struct PatchGeometry<'a> {
    pub(crate) surface: &'a SurfacePatch,
    pub(crate) patch_from_head: Isometry3<f64>,
    pub(crate) base_from_patch: Isometry3<f64>,
}

impl<'a> PatchGeometry<'a> {
    pub(crate) fn new(surface: &'a SurfacePatch, base_from_head: &Isometry3<f64>) -> Self {
        PatchGeometry {
            surface,
            patch_from_head: surface.head_from_patch.inverse(),
            base_from_patch: base_from_head * surface.head_from_patch,
        }
    }

    /// Angle (degrees) between the outward surface normal and base +z, i.e. between the
    /// skin and the vertical needle of an `xyz` rig. Above 90 the skin faces downwards.
    pub(crate) fn tilt_deg(&self, x_mm: f64, y_mm: f64) -> f64 {
        let n_base = self.base_from_patch.rotation * self.surface.normal_patch(x_mm, y_mm);
        n_base.z.clamp(-1.0, 1.0).acos().to_degrees()
    }

    /// Surface area per unit of (x, y) parameter area: `sqrt(1 + |grad h|²)` (>= 1).
    pub(crate) fn area_factor(&self, x_mm: f64, y_mm: f64) -> f64 {
        let (_, gx, gy) = self.surface.height_and_gradient(x_mm, y_mm);
        (1.0 + gx * gx + gy * gy).sqrt()
    }

    /// Surface point and outward unit normal in the head frame.
    pub(crate) fn sample_head(&self, x_mm: f64, y_mm: f64) -> (Point3<f64>, Vector3<f64>) {
        self.surface.sample_head(x_mm, y_mm)
    }

    /// Head-frame point into the patch frame (x, y = parameter coordinates).
    pub(crate) fn to_patch(&self, p_head: [f64; 3]) -> Point3<f64> {
        self.patch_from_head * Point3::from(p_head)
    }
}

/// Euclidean distance of two 3-D points.
pub(crate) fn dist3(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

//! Geometry the planner needs on top of the surface patch: tilt from the vertical needle,
//! surface area factor, and the head/patch/base transforms bundled once.
//!
//! Placement evaluates the height field about a million times for a full head, so the
//! polynomial is evaluated here from power tables ([`FastSurface`]) rather than with
//! `powi` per monomial; it computes the same polynomial as
//! [`SurfacePatch::height_and_gradient`] (checked by a test).

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::geometry::SurfacePatch;

/// Highest degree [`FastSurface`] evaluates from its fixed power tables (the validator
/// allows up to 12).
const MAX_DEGREE: usize = 12;

/// The patch polynomial as (i, j, coefficient) terms of `u^i v^j`, with `u = x / scale`.
#[derive(Debug, Clone)]
pub(crate) struct FastSurface {
    terms: Vec<(usize, usize, f64)>,
    degree: usize,
    inv_scale: f64,
}

impl FastSurface {
    pub(crate) fn new(s: &SurfacePatch) -> Self {
        let mut terms = Vec::with_capacity(s.coefficients.len());
        let mut k = 0;
        for total in 0..=s.degree.min(MAX_DEGREE) {
            for i in (0..=total).rev() {
                let c = s.coefficients.get(k).copied().unwrap_or(0.0);
                k += 1;
                if c != 0.0 {
                    terms.push((i, total - i, c));
                }
            }
        }
        FastSurface { terms, degree: s.degree.min(MAX_DEGREE), inv_scale: 1.0 / s.scale_mm }
    }

    /// Height and gradient (dz/dx, dz/dy) at patch coordinates.
    pub(crate) fn height_and_gradient(&self, x: f64, y: f64) -> (f64, f64, f64) {
        let (u, v) = (x * self.inv_scale, y * self.inv_scale);
        let mut pu = [1.0; MAX_DEGREE + 1];
        let mut pv = [1.0; MAX_DEGREE + 1];
        for n in 1..=self.degree {
            pu[n] = pu[n - 1] * u;
            pv[n] = pv[n - 1] * v;
        }
        let (mut z, mut du, mut dv) = (0.0, 0.0, 0.0);
        for &(i, j, c) in &self.terms {
            z += c * pu[i] * pv[j];
            if i > 0 {
                du += c * i as f64 * pu[i - 1] * pv[j];
            }
            if j > 0 {
                dv += c * j as f64 * pu[i] * pv[j - 1];
            }
        }
        (z, du * self.inv_scale, dv * self.inv_scale)
    }
}

/// The surface patch together with the registration the plan is made for.
#[derive(Debug, Clone)]
pub(crate) struct PatchGeometry<'a> {
    pub(crate) surface: &'a SurfacePatch,
    pub(crate) fast: FastSurface,
    pub(crate) patch_from_head: Isometry3<f64>,
    pub(crate) base_from_patch: Isometry3<f64>,
    /// Base +z expressed in the patch frame: the needle axis of an `xyz` rig.
    up_patch: Vector3<f64>,
}

impl<'a> PatchGeometry<'a> {
    pub(crate) fn new(surface: &'a SurfacePatch, base_from_head: &Isometry3<f64>) -> Self {
        let base_from_patch = base_from_head * surface.head_from_patch;
        PatchGeometry {
            surface,
            fast: FastSurface::new(surface),
            patch_from_head: surface.head_from_patch.inverse(),
            base_from_patch,
            up_patch: base_from_patch.rotation.inverse() * Vector3::z(),
        }
    }

    /// Height and gradient at patch coordinates.
    pub(crate) fn height_and_gradient(&self, x_mm: f64, y_mm: f64) -> (f64, f64, f64) {
        self.fast.height_and_gradient(x_mm, y_mm)
    }

    /// Tilt (degrees) of the skin whose height-field gradient is (gx, gy): the angle between
    /// the outward normal and base +z, i.e. between the skin and the vertical needle of an
    /// `xyz` rig. Above 90 the skin faces downwards.
    pub(crate) fn tilt_from_gradient_deg(&self, gx: f64, gy: f64) -> f64 {
        let n = Vector3::new(-gx, -gy, 1.0);
        (n.dot(&self.up_patch) / n.norm()).clamp(-1.0, 1.0).acos().to_degrees()
    }

    /// Tilt at a parameter point, degrees.
    pub(crate) fn tilt_deg(&self, x_mm: f64, y_mm: f64) -> f64 {
        let (_, gx, gy) = self.height_and_gradient(x_mm, y_mm);
        self.tilt_from_gradient_deg(gx, gy)
    }

    /// Surface point and outward unit normal in the head frame.
    pub(crate) fn sample_head(&self, x_mm: f64, y_mm: f64) -> (Point3<f64>, Vector3<f64>) {
        let (z, gx, gy) = self.height_and_gradient(x_mm, y_mm);
        self.head_point_and_normal(x_mm, y_mm, z, gx, gy)
    }

    /// Head-frame point and normal from an already evaluated height and gradient.
    pub(crate) fn head_point_and_normal(
        &self,
        x_mm: f64,
        y_mm: f64,
        z_mm: f64,
        gx: f64,
        gy: f64,
    ) -> (Point3<f64>, Vector3<f64>) {
        let h = &self.surface.head_from_patch;
        (h * Point3::new(x_mm, y_mm, z_mm), h * Vector3::new(-gx, -gy, 1.0).normalize())
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

/// `t² (3 - 2t)` on [0, 1], clamped outside.
pub(crate) fn smoothstep(t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_surface_matches_the_core_evaluation() {
        for degree in [0usize, 2, 5, 10] {
            let n = smp_core::geometry::monomial_count(degree);
            let patch = SurfacePatch {
                head_from_patch: Isometry3::identity(),
                degree,
                coefficients: (0..n).map(|k| ((k * 37 % 11) as f64 - 5.0) * 0.7).collect(),
                scale_mm: 80.0,
                x_range_mm: [-80.0, 80.0],
                y_range_mm: [-80.0, 80.0],
                fit_rms_mm: 0.0,
            };
            let fast = FastSurface::new(&patch);
            for (x, y) in [(0.0, 0.0), (13.0, -41.0), (-77.0, 66.0), (50.0, 5.0)] {
                let a = patch.height_and_gradient(x, y);
                let b = fast.height_and_gradient(x, y);
                for (p, q) in [(a.0, b.0), (a.1, b.1), (a.2, b.2)] {
                    assert!((p - q).abs() <= 1e-9 * (1.0 + p.abs()), "degree {degree} at ({x}, {y}): {a:?} vs {b:?}");
                }
            }
        }
    }
}

//! Frames, poses and surfaces.
//!
//! Head frame: origin at the centre of the head, +x toward the nose, +y toward the patient's
//! left, +z toward the vertex. Base frame: the arm base, +z up. Camera frames follow OpenCV
//! (+z along the optical axis, +x right, +y down in the image). Needle frame: origin at the
//! tip, +z pointing back along the needle, so the needle advances along its own -z.

use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};
use serde::{Deserialize, Serialize};

use crate::error::{check_range, SpecError};

/// A rigid transform as people write it in TOML: translation in millimetres and
/// roll/pitch/yaw in degrees (rotation about x, then y, then z, fixed axes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoseSpec {
    pub translation_mm: [f64; 3],
    #[serde(default)]
    pub rpy_deg: [f64; 3],
}

impl PoseSpec {
    pub fn identity() -> Self {
        PoseSpec { translation_mm: [0.0; 3], rpy_deg: [0.0; 3] }
    }

    pub fn to_isometry(&self) -> Isometry3<f64> {
        let [r, p, y] = self.rpy_deg.map(f64::to_radians);
        Isometry3::from_parts(
            Translation3::new(self.translation_mm[0], self.translation_mm[1], self.translation_mm[2]),
            UnitQuaternion::from_euler_angles(r, p, y),
        )
    }

    pub fn from_isometry(iso: &Isometry3<f64>) -> Self {
        let (r, p, y) = iso.rotation.euler_angles();
        let t = iso.translation.vector;
        PoseSpec { translation_mm: [t.x, t.y, t.z], rpy_deg: [r.to_degrees(), p.to_degrees(), y.to_degrees()] }
    }

    pub fn validate(&self, what: &'static str, field: &str) -> Result<(), SpecError> {
        for (i, v) in self.translation_mm.iter().enumerate() {
            check_range(what, &format!("{field}.translation_mm[{i}]"), *v, -10_000.0, 10_000.0)?;
        }
        for (i, v) in self.rpy_deg.iter().enumerate() {
            check_range(what, &format!("{field}.rpy_deg[{i}]"), *v, -360.0, 360.0)?;
        }
        Ok(())
    }
}

/// An axis-aligned ellipsoid in its own frame (the synthetic head, or a coarse fit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ellipsoid {
    pub semi_axes_mm: [f64; 3],
}

impl Ellipsoid {
    /// Height and outward unit normal of the upper half (z >= 0) above (x, y), head frame;
    /// `None` outside the ellipsoid's footprint. The top of a head as a height field.
    pub fn upper_surface(&self, x: f64, y: f64) -> Option<(f64, Vector3<f64>)> {
        let [a, b, c] = self.semi_axes_mm;
        let r2 = (x / a).powi(2) + (y / b).powi(2);
        if r2.is_nan() || r2 >= 1.0 {
            return None;
        }
        let z = c * (1.0 - r2).sqrt();
        Some((z, Vector3::new(x / (a * a), y / (b * b), z / (c * c)).normalize()))
    }

    /// Implicit value: < 0 inside, 0 on the surface, > 0 outside.
    pub fn implicit(&self, p: &Point3<f64>) -> f64 {
        let [a, b, c] = self.semi_axes_mm;
        (p.x / a).powi(2) + (p.y / b).powi(2) + (p.z / c).powi(2) - 1.0
    }

    /// Outward unit normal at (or near) a surface point.
    pub fn normal(&self, p: &Point3<f64>) -> Vector3<f64> {
        let [a, b, c] = self.semi_axes_mm;
        Vector3::new(p.x / (a * a), p.y / (b * b), p.z / (c * c)).normalize()
    }

    /// First intersection of the ray `origin + t * dir` (t > 0) with the surface, from outside.
    pub fn intersect_ray(&self, origin: &Point3<f64>, dir: &Vector3<f64>) -> Option<f64> {
        let [a, b, c] = self.semi_axes_mm;
        let s = Vector3::new(1.0 / a, 1.0 / b, 1.0 / c);
        let o = origin.coords.component_mul(&s);
        let d = dir.component_mul(&s);
        let qa = d.dot(&d);
        let qb = 2.0 * o.dot(&d);
        let qc = o.dot(&o) - 1.0;
        let disc = qb * qb - 4.0 * qa * qc;
        if disc < 0.0 || qa <= 0.0 {
            return None;
        }
        let sq = disc.sqrt();
        let t0 = (-qb - sq) / (2.0 * qa);
        let t1 = (-qb + sq) / (2.0 * qa);
        if t0 > 1e-9 {
            Some(t0)
        } else if t1 > 1e-9 {
            Some(t1)
        } else {
            None
        }
    }

    /// Point on the surface along the direction `dir` from the centre.
    pub fn point_in_direction(&self, dir: &Vector3<f64>) -> Point3<f64> {
        let t = self.intersect_ray(&Point3::origin(), dir).unwrap_or(0.0);
        Point3::from(dir * t)
    }
}

/// Number of monomials x^i y^j with i + j <= degree.
pub fn monomial_count(degree: usize) -> usize {
    (degree + 1) * (degree + 2) / 2
}

/// Monomials x^i y^j (i + j <= degree) in a fixed order: by total degree, then by i descending.
pub fn monomials(degree: usize, x: f64, y: f64, out: &mut Vec<f64>) {
    out.clear();
    for total in 0..=degree {
        for i in (0..=total).rev() {
            let j = total - i;
            out.push(x.powi(i as i32) * y.powi(j as i32));
        }
    }
}

/// A smooth scalp surface fitted by vision: a polynomial height field `z = f(x, y)` in a
/// patch frame, valid over a rectangular domain. The planner samples it, the verifier
/// checks plunges against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurfacePatch {
    /// Maps patch coordinates into the head frame.
    pub head_from_patch: Isometry3<f64>,
    pub degree: usize,
    /// Coefficients in the order of [`monomials`]; x and y are scaled by `scale_mm` first.
    pub coefficients: Vec<f64>,
    /// Coordinates are divided by this before evaluating monomials (conditioning).
    pub scale_mm: f64,
    pub x_range_mm: [f64; 2],
    pub y_range_mm: [f64; 2],
    /// RMS of the fit residual, from the points it was fitted to.
    pub fit_rms_mm: f64,
}

impl SurfacePatch {
    pub fn validate(&self) -> Result<(), SpecError> {
        const WHAT: &str = "scalp map surface";
        if self.coefficients.len() != monomial_count(self.degree) {
            return Err(SpecError::invalid(
                WHAT,
                "surface.coefficients",
                format!(
                    "has {} values; degree {} needs {}",
                    self.coefficients.len(),
                    self.degree,
                    monomial_count(self.degree)
                ),
            ));
        }
        if self.coefficients.iter().any(|c| !c.is_finite()) {
            return Err(SpecError::invalid(
                WHAT,
                "surface.coefficients",
                "contains a non-finite value; re-run the scan",
            ));
        }
        check_range(WHAT, "surface.scale_mm", self.scale_mm, 1e-3, 1e4)?;
        for (name, r) in [("surface.x_range_mm", self.x_range_mm), ("surface.y_range_mm", self.y_range_mm)] {
            if !(r[0].is_finite() && r[1].is_finite() && r[0] < r[1]) {
                return Err(SpecError::invalid(WHAT, name, format!("is {r:?}; it must be an increasing finite pair")));
            }
        }
        Ok(())
    }

    pub fn contains_xy(&self, x: f64, y: f64) -> bool {
        x >= self.x_range_mm[0] && x <= self.x_range_mm[1] && y >= self.y_range_mm[0] && y <= self.y_range_mm[1]
    }

    /// Height and gradient (dz/dx, dz/dy) at patch coordinates.
    pub fn height_and_gradient(&self, x: f64, y: f64) -> (f64, f64, f64) {
        let s = self.scale_mm;
        let (u, v) = (x / s, y / s);
        let mut z = 0.0;
        let mut dzdu = 0.0;
        let mut dzdv = 0.0;
        let mut k = 0;
        for total in 0..=self.degree {
            for i in (0..=total).rev() {
                let j = total - i;
                let c = self.coefficients[k];
                k += 1;
                z += c * u.powi(i as i32) * v.powi(j as i32);
                if i > 0 {
                    dzdu += c * i as f64 * u.powi(i as i32 - 1) * v.powi(j as i32);
                }
                if j > 0 {
                    dzdv += c * j as f64 * u.powi(i as i32) * v.powi(j as i32 - 1);
                }
            }
        }
        (z, dzdu / s, dzdv / s)
    }

    pub fn height(&self, x: f64, y: f64) -> f64 {
        self.height_and_gradient(x, y).0
    }

    /// Surface point in patch coordinates.
    pub fn point_patch(&self, x: f64, y: f64) -> Point3<f64> {
        Point3::new(x, y, self.height(x, y))
    }

    /// Upward unit normal in patch coordinates.
    pub fn normal_patch(&self, x: f64, y: f64) -> Vector3<f64> {
        let (_, gx, gy) = self.height_and_gradient(x, y);
        Vector3::new(-gx, -gy, 1.0).normalize()
    }

    /// Surface point and outward normal in the head frame.
    pub fn sample_head(&self, x: f64, y: f64) -> (Point3<f64>, Vector3<f64>) {
        (self.head_from_patch * self.point_patch(x, y), self.head_from_patch * self.normal_patch(x, y))
    }

    /// Intersection of a ray given in patch coordinates with the height field, by marching
    /// then bisection; `None` when the ray leaves the domain without crossing.
    pub fn intersect_ray_patch(&self, origin: &Point3<f64>, dir: &Vector3<f64>) -> Option<Point3<f64>> {
        let dir = dir.normalize();
        let above = |t: f64| {
            let p = origin + dir * t;
            p.z - self.height(p.x, p.y)
        };
        let f0 = above(0.0);
        if !f0.is_finite() {
            return None;
        }
        let step = 0.5;
        let mut t_prev = 0.0;
        let mut f_prev = f0;
        let mut t = step;
        while t < 2_000.0 {
            let f = above(t);
            if f.signum() != f_prev.signum() {
                let (mut lo, mut hi, mut flo) = (t_prev, t, f_prev);
                for _ in 0..60 {
                    let mid = 0.5 * (lo + hi);
                    let fm = above(mid);
                    if fm.signum() == flo.signum() {
                        lo = mid;
                        flo = fm;
                    } else {
                        hi = mid;
                    }
                }
                let p = origin + dir * (0.5 * (lo + hi));
                return if self.contains_xy(p.x, p.y) { Some(p) } else { None };
            }
            t_prev = t;
            f_prev = f;
            t += step;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn pose_round_trips_through_isometry() {
        let p = PoseSpec { translation_mm: [10.0, -20.0, 30.0], rpy_deg: [10.0, 25.0, -40.0] };
        let q = PoseSpec::from_isometry(&p.to_isometry());
        for i in 0..3 {
            assert_relative_eq!(p.translation_mm[i], q.translation_mm[i], epsilon = 1e-9);
            assert_relative_eq!(p.rpy_deg[i], q.rpy_deg[i], epsilon = 1e-9);
        }
    }

    #[test]
    fn ray_hits_ellipsoid_on_its_surface() {
        let e = Ellipsoid { semi_axes_mm: [98.0, 78.0, 100.0] };
        let o = Point3::new(5.0, 3.0, 300.0);
        let d = Vector3::new(0.01, 0.0, -1.0).normalize();
        let t = e.intersect_ray(&o, &d).expect("hits");
        let p = o + d * t;
        assert_relative_eq!(e.implicit(&p), 0.0, epsilon = 1e-9);
        assert!(p.z > 0.0, "first hit is the top");
    }

    #[test]
    fn patch_gradient_matches_finite_difference() {
        let patch = SurfacePatch {
            head_from_patch: Isometry3::identity(),
            degree: 3,
            coefficients: vec![1.0, 0.2, -0.3, 0.5, 0.1, -0.4, 0.05, 0.02, -0.03, 0.07],
            scale_mm: 10.0,
            x_range_mm: [-20.0, 20.0],
            y_range_mm: [-20.0, 20.0],
            fit_rms_mm: 0.0,
        };
        let (x, y, h) = (3.0, -4.0, 1e-5);
        let (_, gx, gy) = patch.height_and_gradient(x, y);
        assert_relative_eq!(gx, (patch.height(x + h, y) - patch.height(x - h, y)) / (2.0 * h), epsilon = 1e-6);
        assert_relative_eq!(gy, (patch.height(x, y + h) - patch.height(x, y - h)) / (2.0 * h), epsilon = 1e-6);
        let p = patch.intersect_ray_patch(&Point3::new(x, y, 50.0), &Vector3::new(0.0, 0.0, -1.0)).expect("hit");
        assert_relative_eq!(p.z, patch.height(x, y), epsilon = 1e-9);
    }
}

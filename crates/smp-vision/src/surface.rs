//! Least-squares fit of a polynomial height field ([`SurfacePatch`]) to scalp points.
//!
//! The patch frame is chosen so that its z axis is the mean outward normal of the points and
//! its x/y plane spans them: the height field is then single-valued and flat-ish over the
//! scanned area, which keeps a low-degree polynomial accurate and the ray intersection simple.

use nalgebra::{DMatrix, DVector, Isometry3, Matrix3, Point3, Rotation3, Translation3, UnitQuaternion, Vector3};
use smp_core::geometry::{monomial_count, SurfacePatch};

use crate::error::VisionError;

/// Settings of [`fit_surface`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurfaceFitSettings {
    pub degree: usize,
    /// Residuals beyond `outlier_sigma * rms` (and beyond `outlier_min_mm`) are dropped
    /// before one re-fit.
    pub outlier_sigma: f64,
    pub outlier_min_mm: f64,
}

/// A fitted patch and how many points it used.
#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceFit {
    pub patch: SurfacePatch,
    pub points_used: usize,
    pub points_rejected: usize,
}

/// Fits a height field to `points_head` (head frame). `outward_hint_head` only chooses the
/// sign of the normal (e.g. the direction toward the cameras); the normal itself comes from
/// the points.
pub fn fit_surface(
    points_head: &[Point3<f64>],
    outward_hint_head: &Vector3<f64>,
    s: &SurfaceFitSettings,
) -> Result<SurfaceFit, VisionError> {
    let n_coef = monomial_count(s.degree);
    let finite: Vec<Point3<f64>> =
        points_head.iter().copied().filter(|p| p.coords.iter().all(|v| v.is_finite())).collect();
    if finite.len() < 3 * n_coef {
        return Err(VisionError::SurfaceFit {
            points: finite.len(),
            reason: format!("a degree-{} surface needs at least {} points", s.degree, 3 * n_coef),
        });
    }
    // Plane fit for the first frame.
    let n = finite.len() as f64;
    let centroid = Point3::from(finite.iter().fold(Vector3::zeros(), |a, p| a + p.coords) / n);
    let mut cov = Matrix3::zeros();
    for p in &finite {
        let d = p - centroid;
        cov += d * d.transpose();
    }
    let eig = cov.symmetric_eigen();
    let imin = eig.eigenvalues.imin();
    let mut normal: Vector3<f64> = eig.eigenvectors.column(imin).into_owned();
    if normal.dot(outward_hint_head) < 0.0 {
        normal = -normal;
    }

    // The frame is settled on a subsample (hundreds of thousands of depth points carry no
    // more direction information than tens of thousands); the final fit uses every inlier.
    let step = (finite.len() / 60_000).max(1);
    let sub: Vec<Point3<f64>> = finite.iter().step_by(step).copied().collect();
    let mut frame = patch_frame(&centroid, &normal);
    let first = fit_in_frame(&sub, &frame, s.degree, None)?;
    // Re-aim z at the mean normal of the fitted surface over the points (the plane normal
    // of an asymmetric cap is not its mean normal).
    let mean_normal = {
        let mut acc: Vector3<f64> = Vector3::zeros();
        let poly = Poly::new(&first.patch);
        for (u, v) in first.uv.iter() {
            let (_, gx, gy) = poly.height_and_gradient(*u, *v);
            acc += Vector3::new(-gx, -gy, 1.0).normalize();
        }
        (first.patch.head_from_patch.rotation * acc).normalize()
    };
    let mut rms = first.patch.fit_rms_mm;
    if mean_normal.iter().all(|v| v.is_finite()) && mean_normal.angle(&normal) > 1e-4 {
        frame = patch_frame(&centroid, &mean_normal);
        rms = fit_in_frame(&sub, &frame, s.degree, None)?.patch.fit_rms_mm;
    }
    // Outliers against a fit of all points in the settled frame, then one re-fit without them.
    let mut fit = fit_in_frame(&finite, &frame, s.degree, None)?;
    rms = rms.max(fit.patch.fit_rms_mm);
    let limit = (s.outlier_sigma * rms).max(s.outlier_min_mm);
    let keep: Vec<bool> = fit.residuals.iter().map(|r| r.abs() <= limit).collect();
    let rejected = keep.iter().filter(|k| !**k).count();
    if rejected > 0 {
        fit = fit_in_frame(&finite, &frame, s.degree, Some(&keep))?;
    }
    Ok(SurfaceFit { points_used: finite.len() - rejected, points_rejected: rejected, patch: fit.patch })
}

/// Patch frame with origin `origin` and z along `normal`; x is the head's +x (toward the
/// nose) projected into the plane, so the patch axes read the same way as the head's.
fn patch_frame(origin: &Point3<f64>, normal: &Vector3<f64>) -> Isometry3<f64> {
    let z = normal.normalize();
    let mut x = Vector3::x() - z * z.x;
    if x.norm() < 1e-6 {
        x = Vector3::y() - z * z.y;
    }
    let x = x.normalize();
    let y = z.cross(&x);
    let rot = Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[x, y, z]));
    Isometry3::from_parts(Translation3::from(origin.coords), UnitQuaternion::from_rotation_matrix(&rot))
}

/// Evaluates a patch's polynomial with the same monomial order and scaling as
/// [`SurfacePatch::height_and_gradient`], from power tables instead of `powi` (the fit and
/// the ray casts evaluate it millions of times).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Poly<'a> {
    coefficients: &'a [f64],
    degree: usize,
    inv_scale: f64,
}

const MAX_DEGREE: usize = 8;

impl<'a> Poly<'a> {
    pub(crate) fn new(patch: &'a SurfacePatch) -> Self {
        Poly {
            coefficients: &patch.coefficients,
            degree: patch.degree.min(MAX_DEGREE),
            inv_scale: 1.0 / patch.scale_mm,
        }
    }

    /// Height and gradient (dz/dx, dz/dy) at patch coordinates.
    pub(crate) fn height_and_gradient(&self, x: f64, y: f64) -> (f64, f64, f64) {
        let (u, v) = (x * self.inv_scale, y * self.inv_scale);
        let mut up = [1.0; MAX_DEGREE + 1];
        let mut vp = [1.0; MAX_DEGREE + 1];
        for k in 1..=self.degree {
            up[k] = up[k - 1] * u;
            vp[k] = vp[k - 1] * v;
        }
        let (mut z, mut du, mut dv) = (0.0, 0.0, 0.0);
        let mut k = 0;
        for total in 0..=self.degree {
            for i in (0..=total).rev() {
                let j = total - i;
                let c = self.coefficients[k];
                k += 1;
                z += c * up[i] * vp[j];
                if i > 0 {
                    du += c * i as f64 * up[i - 1] * vp[j];
                }
                if j > 0 {
                    dv += c * j as f64 * up[i] * vp[j - 1];
                }
            }
        }
        (z, du * self.inv_scale, dv * self.inv_scale)
    }

    pub(crate) fn height(&self, x: f64, y: f64) -> f64 {
        let (u, v) = (x * self.inv_scale, y * self.inv_scale);
        let mut up = [1.0; MAX_DEGREE + 1];
        let mut vp = [1.0; MAX_DEGREE + 1];
        for k in 1..=self.degree {
            up[k] = up[k - 1] * u;
            vp[k] = vp[k - 1] * v;
        }
        let mut z = 0.0;
        let mut k = 0;
        for total in 0..=self.degree {
            for i in (0..=total).rev() {
                z += self.coefficients[k] * up[i] * vp[total - i];
                k += 1;
            }
        }
        z
    }
}

/// Monomials of [`monomials`] from power tables.
fn monomials_fast(degree: usize, u: f64, v: f64, out: &mut [f64]) {
    let mut up = [1.0; MAX_DEGREE + 1];
    let mut vp = [1.0; MAX_DEGREE + 1];
    for k in 1..=degree {
        up[k] = up[k - 1] * u;
        vp[k] = vp[k - 1] * v;
    }
    let mut k = 0;
    for total in 0..=degree {
        for i in (0..=total).rev() {
            out[k] = up[i] * vp[total - i];
            k += 1;
        }
    }
}

/// Intersection of a ray (patch coordinates) with the height field by Newton's method from
/// the ray's crossing of the patch plane, falling back to the core's march-and-bisect when
/// Newton does not settle. `None` when the hit lies outside the patch domain.
pub(crate) fn intersect_ray(patch: &SurfacePatch, origin: &Point3<f64>, dir: &Vector3<f64>) -> Option<Point3<f64>> {
    let poly = Poly::new(patch);
    let dir = dir.normalize();
    if dir.z.abs() > 1e-6 {
        let mut t = -origin.z / dir.z;
        for _ in 0..30 {
            let p = origin + dir * t;
            let (h, gx, gy) = poly.height_and_gradient(p.x, p.y);
            let f = p.z - h;
            let df = dir.z - gx * dir.x - gy * dir.y;
            if df.abs() < 1e-9 || !f.is_finite() {
                break;
            }
            let step = f / df;
            t -= step;
            if step.abs() < 1e-9 {
                let p = origin + dir * t;
                return (t > 0.0 && patch.contains_xy(p.x, p.y)).then_some(p);
            }
        }
    }
    patch.intersect_ray_patch(origin, &dir)
}

struct FrameFit {
    patch: SurfacePatch,
    /// Patch (x, y) of every input point (all of them, kept or not).
    uv: Vec<(f64, f64)>,
    /// Height residual of every input point.
    residuals: Vec<f64>,
}

fn fit_in_frame(
    points_head: &[Point3<f64>],
    head_from_patch: &Isometry3<f64>,
    degree: usize,
    keep: Option<&[bool]>,
) -> Result<FrameFit, VisionError> {
    let patch_from_head = head_from_patch.inverse();
    let local: Vec<Point3<f64>> = points_head.iter().map(|p| patch_from_head * p).collect();
    let used = |i: usize| keep.is_none_or(|k| k[i]);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for (i, p) in local.iter().enumerate() {
        if used(i) {
            x0 = x0.min(p.x);
            x1 = x1.max(p.x);
            y0 = y0.min(p.y);
            y1 = y1.max(p.y);
        }
    }
    if !(x1 > x0 && y1 > y0) {
        return Err(VisionError::SurfaceFit { points: local.len(), reason: "the points span no area".into() });
    }
    let scale = [x0.abs(), x1.abs(), y0.abs(), y1.abs()].into_iter().fold(1e-3, f64::max);
    let n_coef = monomial_count(degree);
    let inv_scale = 1.0 / scale;
    let mut ata_flat = vec![0.0f64; n_coef * n_coef];
    let mut atb = DVector::<f64>::zeros(n_coef);
    let mut row = vec![0.0f64; n_coef];
    let mut count = 0usize;
    for (i, p) in local.iter().enumerate() {
        if !used(i) {
            continue;
        }
        monomials_fast(degree, p.x * inv_scale, p.y * inv_scale, &mut row);
        for a in 0..n_coef {
            let ra = row[a];
            atb[a] += ra * p.z;
            let dst = &mut ata_flat[a * n_coef..(a + 1) * n_coef];
            for b in a..n_coef {
                dst[b] += ra * row[b];
            }
        }
        count += 1;
    }
    let ata = DMatrix::<f64>::from_fn(n_coef, n_coef, |a, b| {
        if a <= b {
            ata_flat[a * n_coef + b]
        } else {
            ata_flat[b * n_coef + a]
        }
    });
    let coef = match ata.clone().cholesky() {
        Some(ch) => ch.solve(&atb),
        None => ata.svd(true, true).solve(&atb, 1e-12).map_err(|e| VisionError::SurfaceFit {
            points: count,
            reason: format!("least squares is singular ({e})"),
        })?,
    };
    let mut patch = SurfacePatch {
        head_from_patch: *head_from_patch,
        degree,
        coefficients: coef.iter().copied().collect(),
        scale_mm: scale,
        x_range_mm: [x0, x1],
        y_range_mm: [y0, y1],
        fit_rms_mm: 0.0,
    };
    let poly = Poly::new(&patch);
    let residuals: Vec<f64> = local.iter().map(|p| p.z - poly.height(p.x, p.y)).collect();
    let ss: f64 = residuals.iter().enumerate().filter(|(i, _)| used(*i)).map(|(_, r)| r * r).sum();
    patch.fit_rms_mm = (ss / count.max(1) as f64).sqrt();
    if !patch.coefficients.iter().all(|c| c.is_finite()) {
        return Err(VisionError::SurfaceFit {
            points: count,
            reason: "the fit produced non-finite coefficients".into(),
        });
    }
    let uv = local.iter().map(|p| (p.x, p.y)).collect();
    Ok(FrameFit { patch, uv, residuals })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smp_core::geometry::Ellipsoid;

    fn settings() -> SurfaceFitSettings {
        SurfaceFitSettings { degree: 4, outlier_sigma: 4.0, outlier_min_mm: 0.05 }
    }

    /// Points of an ellipsoid cap around direction `axis`, within `half_angle` of it.
    fn cap(e: &Ellipsoid, axis: Vector3<f64>, half_angle_deg: f64, n: usize) -> Vec<Point3<f64>> {
        let axis = axis.normalize();
        let a = if axis.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
        let u = axis.cross(&a).normalize();
        let v = axis.cross(&u);
        let mut out = Vec::new();
        let ha = half_angle_deg.to_radians();
        for i in 0..n {
            for j in 0..n {
                let s = (i as f64 / (n - 1) as f64 * 2.0 - 1.0) * ha;
                let t = (j as f64 / (n - 1) as f64 * 2.0 - 1.0) * ha;
                if s * s + t * t > ha * ha {
                    continue;
                }
                let dir = axis + u * s.tan() + v * t.tan();
                out.push(e.point_in_direction(&dir));
            }
        }
        out
    }

    #[test]
    fn sphere_cap_fits_to_micrometres() {
        let e = Ellipsoid { semi_axes_mm: [100.0, 100.0, 100.0] };
        let pts = cap(&e, Vector3::new(-0.3, 0.1, 1.0), 17.0, 120);
        let fit = fit_surface(&pts, &Vector3::z(), &settings()).expect("fit");
        assert!(fit.patch.fit_rms_mm < 0.01, "rms {}", fit.patch.fit_rms_mm);
        // Independent check: the surface at the points' patch (x, y) lies on the sphere.
        let patch_from_head = fit.patch.head_from_patch.inverse();
        let mut worst = 0.0f64;
        for p in pts.iter().step_by(37) {
            let l = patch_from_head * p;
            let (q, n) = fit.patch.sample_head(l.x, l.y);
            worst = worst.max((q.coords.norm() - 100.0).abs());
            assert!(n.dot(&q.coords.normalize()) > 0.999, "normal points outward");
        }
        assert!(worst < 0.02, "worst radial error {worst}");
        let z = fit.patch.head_from_patch.rotation * Vector3::z();
        assert!(z.angle(&Vector3::new(-0.3, 0.1, 1.0)) < 0.02, "patch z is the cap's mean normal, {z:?}");
    }

    #[test]
    fn ellipsoid_cap_fits_and_outliers_are_dropped() {
        let e = Ellipsoid { semi_axes_mm: [98.0, 78.0, 100.0] };
        let mut pts = cap(&e, Vector3::new(-0.2, 0.0, 1.0), 15.0, 100);
        let clean = pts.len();
        for k in 0..40 {
            let i = (k * 97) % clean;
            let p = pts[i];
            pts.push(p + p.coords.normalize() * 3.0);
        }
        let fit = fit_surface(&pts, &Vector3::z(), &settings()).expect("fit");
        assert!(fit.points_rejected >= 40, "rejected {}", fit.points_rejected);
        assert!(fit.patch.fit_rms_mm < 0.01, "rms {}", fit.patch.fit_rms_mm);
        fit.patch.validate().expect("valid patch");
    }

    #[test]
    fn fast_evaluation_matches_the_core_patch() {
        let patch = SurfacePatch {
            head_from_patch: Isometry3::identity(),
            degree: 4,
            coefficients: (0..15).map(|k| ((k * 7 % 11) as f64 - 5.0) * 0.3).collect(),
            scale_mm: 40.0,
            x_range_mm: [-40.0, 40.0],
            y_range_mm: [-40.0, 40.0],
            fit_rms_mm: 0.0,
        };
        let poly = Poly::new(&patch);
        for (x, y) in [(0.0, 0.0), (12.5, -30.0), (-39.0, 21.0)] {
            let (a, b) = (poly.height_and_gradient(x, y), patch.height_and_gradient(x, y));
            assert!((a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12 && (a.2 - b.2).abs() < 1e-12);
            assert!((poly.height(x, y) - b.0).abs() < 1e-12);
            let o = Point3::new(x + 3.0, y - 2.0, 80.0);
            let d = Vector3::new(-0.03, 0.02, -1.0);
            let p = intersect_ray(&patch, &o, &d).expect("hit");
            let q = patch.intersect_ray_patch(&o, &d).expect("hit");
            assert!((p - q).norm() < 1e-6, "{p:?} vs {q:?}");
        }
    }

    #[test]
    fn too_few_points_is_an_error() {
        let pts = vec![Point3::new(0.0, 0.0, 0.0); 10];
        assert!(matches!(fit_surface(&pts, &Vector3::z(), &settings()), Err(VisionError::SurfaceFit { .. })));
    }
}

//! A small Levenberg-Marquardt solver with a numerical Jacobian, and the pose
//! parametrisation the refinements use.
//!
//! Why our own: the refinements have 6-12 unknowns and a few thousand residuals; a dense
//! normal-equation solve with nalgebra is exact enough, fast, and keeps the dependency list
//! short.

use nalgebra::{DMatrix, DVector, Isometry3, Translation3, UnitQuaternion, Vector3};

/// Result of a minimisation.
pub(crate) struct LmResult {
    pub x: DVector<f64>,
    /// Sum of squared residuals at `x`.
    pub cost: f64,
    pub residuals: usize,
}

/// Minimises `|f(x)|²` from `x0`. `None` when `f` gives non-finite residuals at `x0` or the
/// normal equations cannot be solved at all.
pub(crate) fn levenberg_marquardt<F>(x0: DVector<f64>, f: F, max_iter: usize) -> Option<LmResult>
where
    F: Fn(&DVector<f64>) -> DVector<f64>,
{
    let mut x = x0;
    let mut r = f(&x);
    if !r.iter().all(|v| v.is_finite()) {
        return None;
    }
    let mut cost = r.norm_squared();
    let mut lambda = 1e-3;
    let n = x.len();
    for _ in 0..max_iter {
        let j = jacobian(&f, &x, &r);
        let jtj = j.transpose() * &j;
        let jtr = j.transpose() * &r;
        let mut improved = false;
        for _ in 0..12 {
            let mut a = jtj.clone();
            for k in 0..n {
                a[(k, k)] += lambda * jtj[(k, k)].max(1e-12);
            }
            let Some(chol) = a.cholesky() else {
                lambda *= 10.0;
                continue;
            };
            let step = chol.solve(&(-&jtr));
            let candidate = &x + &step;
            let rc = f(&candidate);
            let cc = rc.norm_squared();
            if cc.is_finite() && cc < cost {
                let converged = (cost - cc) <= 1e-14 * cost.max(1e-300) || step.norm() < 1e-12;
                x = candidate;
                r = rc;
                cost = cc;
                lambda = (lambda / 10.0).max(1e-12);
                improved = true;
                if converged {
                    return Some(LmResult { x, cost, residuals: r.len() });
                }
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    Some(LmResult { x, cost, residuals: r.len() })
}

/// Central-difference Jacobian.
fn jacobian<F>(f: &F, x: &DVector<f64>, r: &DVector<f64>) -> DMatrix<f64>
where
    F: Fn(&DVector<f64>) -> DVector<f64>,
{
    let mut j = DMatrix::zeros(r.len(), x.len());
    for k in 0..x.len() {
        let h = 1e-6 * x[k].abs().max(1.0);
        let mut xp = x.clone();
        xp[k] += h;
        let mut xm = x.clone();
        xm[k] -= h;
        let col = (f(&xp) - f(&xm)) / (2.0 * h);
        j.set_column(k, &col);
    }
    j
}

/// `pose * exp(delta)`: a small right perturbation, `delta = [rotation vector (rad); translation (mm)]`
/// read from `p[offset..offset + 6]`.
pub(crate) fn perturb(pose: &Isometry3<f64>, p: &DVector<f64>, offset: usize) -> Isometry3<f64> {
    let rv = Vector3::new(p[offset], p[offset + 1], p[offset + 2]);
    let t = Vector3::new(p[offset + 3], p[offset + 4], p[offset + 5]);
    pose * Isometry3::from_parts(Translation3::from(t), UnitQuaternion::from_scaled_axis(rv))
}

/// Rotation vector (rad) and translation (mm) of `a⁻¹ b`: the pose difference as six numbers.
pub(crate) fn pose_delta(a: &Isometry3<f64>, b: &Isometry3<f64>) -> (Vector3<f64>, Vector3<f64>) {
    let d = a.inverse() * b;
    (d.rotation.scaled_axis(), d.translation.vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_line_and_a_pose() {
        let xs: Vec<f64> = (0..20).map(f64::from).collect();
        let f =
            |p: &DVector<f64>| DVector::from_iterator(xs.len(), xs.iter().map(|x| p[0] * x + p[1] - (3.0 * x - 2.0)));
        let r = levenberg_marquardt(DVector::from_vec(vec![0.0, 0.0]), f, 50).expect("solves");
        assert!((r.x[0] - 3.0).abs() < 1e-9 && (r.x[1] + 2.0).abs() < 1e-9, "{:?}", r.x);

        let target = Isometry3::new(Vector3::new(1.0, -2.0, 3.0), Vector3::new(0.2, -0.1, 0.3));
        let start = Isometry3::identity();
        let g = |p: &DVector<f64>| {
            let (rv, t) = pose_delta(&target, &perturb(&start, p, 0));
            DVector::from_iterator(6, rv.iter().chain(t.iter()).copied())
        };
        let r = levenberg_marquardt(DVector::zeros(6), g, 100).expect("solves");
        let got = perturb(&start, &r.x, 0);
        assert!((got.to_homogeneous() - target.to_homogeneous()).norm() < 1e-8);
    }
}

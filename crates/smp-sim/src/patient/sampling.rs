//! The head ellipsoid's parametrisation (polar and azimuth angles) and area-uniform random
//! points on it: what the follicle and prior-dot generators and the region areas integrate
//! over.

use nalgebra::{Point3, Vector3};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Parametric step of the sampling grid, degrees.
pub(super) const SAMPLE_CELL_DEG: f64 = 1.0;
/// Placement attempts per follicle before a slot is given up (the spacing rejects it).
pub(super) const MAX_ATTEMPTS: usize = 30;

/// Point on the ellipsoid at parametric angles (theta from +z, phi from +x).
pub(super) fn param_point(semi: [f64; 3], theta: f64, phi: f64) -> Point3<f64> {
    let (st, ct, sp, cp) = (theta.sin(), theta.cos(), phi.sin(), phi.cos());
    Point3::new(semi[0] * st * cp, semi[1] * st * sp, semi[2] * ct)
}

/// Area element |dP/dtheta x dP/dphi| of the parametrisation, mm² per rad².
pub(super) fn area_element(semi: [f64; 3], theta: f64, phi: f64) -> f64 {
    let [a, b, c] = semi;
    let (st, ct, sp, cp) = (theta.sin(), theta.cos(), phi.sin(), phi.cos());
    let dt = Vector3::new(a * ct * cp, b * ct * sp, -c * st);
    let dp = Vector3::new(-a * st * sp, b * st * cp, 0.0);
    dt.cross(&dp).norm()
}

/// Area of the parametric cell [t0, t1] x [p0, p1] (mm²) and an upper bound of its area
/// element (for rejection sampling uniformly by area inside the cell).
pub(super) fn cell_area(semi: [f64; 3], t0: f64, t1: f64, p0: f64, p1: f64) -> (f64, f64) {
    let (tc, pc) = (0.5 * (t0 + t1), 0.5 * (p0 + p1));
    let area = area_element(semi, tc, pc) * (t1 - t0) * (p1 - p0);
    let elem_max = [(t0, p0), (t0, p1), (t1, p0), (t1, p1), (tc, pc)]
        .iter()
        .map(|(t, p)| area_element(semi, *t, *p))
        .fold(0.0, f64::max)
        * 1.02;
    (area, elem_max)
}

/// `expected` rounded up or down at random so that the mean is `expected`.
pub(super) fn stochastic_round(rng: &mut ChaCha8Rng, expected: f64) -> usize {
    let mut n = expected.floor() as usize;
    if rng.random::<f64>() < expected - expected.floor() {
        n += 1;
    }
    n
}

/// A point uniform by surface area inside the parametric cell (rejection sampling).
pub(super) fn sample_in_cell(
    rng: &mut ChaCha8Rng,
    semi: [f64; 3],
    t0: f64,
    t1: f64,
    p0: f64,
    p1: f64,
    elem_max: f64,
) -> (f64, f64) {
    loop {
        let t = rng.random_range(t0..t1);
        let p = rng.random_range(p0..p1);
        if rng.random::<f64>() * elem_max <= area_element(semi, t, p) {
            return (t, p);
        }
    }
}

//! Needle-tip (tool centre point) calibration by pivoting: the arm holds the tip on one
//! fixed point (a divot) in several orientations; every flange pose then satisfies
//! `R_i t + p_i = pivot`, linear in the tip offset `t` (flange frame) and the pivot (base
//! frame), solved by least squares.

use nalgebra::{DMatrix, DVector, Isometry3, Point3, Vector3};
use serde::{Deserialize, Serialize};

use super::CalibError;

/// Tuning of the orientation checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// Fewest flange poses.
    pub min_poses: usize,
    /// Largest angle between any two orientations must reach this: small tilts make the
    /// tip offset ill-conditioned (its error grows as 1 / angle).
    pub min_spread_deg: f64,
    /// Smallest ratio of the least to the largest singular value of the stacked system;
    /// below it the tilts are about one axis only and the offset along it is unobservable.
    pub min_condition: f64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig { min_poses: 4, min_spread_deg: 15.0, min_condition: 0.02 }
    }
}

/// The result of [`calibrate_tcp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcpCalibration {
    /// The needle tip in the flange frame, mm.
    pub flange_from_needle_tip_mm: Vector3<f64>,
    /// The fixed point the tip pivoted about, base frame, mm.
    pub base_pivot_mm: Point3<f64>,
    /// RMS distance of `R_i t + p_i` from the pivot, mm.
    pub rms_mm: f64,
    /// Largest angle between two of the orientations, degrees.
    pub spread_deg: f64,
}

const STEP: &str = "needle tip calibration";

/// Solves the pivot from flange poses taken with the needle tip held on one point.
/// Refuses fewer than `cfg.min_poses` poses, orientations spread less than
/// `cfg.min_spread_deg`, and tilts about a single axis.
pub fn calibrate_tcp(base_from_flange: &[Isometry3<f64>], cfg: &TcpConfig) -> Result<TcpCalibration, CalibError> {
    let n = base_from_flange.len();
    if n < cfg.min_poses.max(3) {
        return Err(CalibError::TooFewViews {
            step: STEP,
            usable: n,
            needed: cfg.min_poses.max(3),
            rejected: "none".into(),
        });
    }
    for (i, p) in base_from_flange.iter().enumerate() {
        if !p.to_homogeneous().iter().all(|v| v.is_finite()) {
            return Err(CalibError::NotFinite { step: STEP, what: format!("base_from_flange[{i}]") });
        }
    }
    let mut spread = 0.0f64;
    for (i, a) in base_from_flange.iter().enumerate() {
        for b in &base_from_flange[i + 1..] {
            spread = spread.max(a.rotation.angle_to(&b.rotation));
        }
    }
    let spread_deg = spread.to_degrees();
    if spread_deg < cfg.min_spread_deg {
        return Err(CalibError::DegenerateMotion {
            step: STEP,
            detail: format!(
                "the orientations differ by at most {spread_deg:.1}°, need {}°; tilt the needle further about the pivot",
                cfg.min_spread_deg
            ),
        });
    }
    // [R_i  -I] [t; pivot] = -p_i
    let mut a = DMatrix::zeros(3 * n, 6);
    let mut b = DVector::zeros(3 * n);
    for (i, pose) in base_from_flange.iter().enumerate() {
        let r = pose.rotation.to_rotation_matrix().into_inner();
        for row in 0..3 {
            for col in 0..3 {
                a[(3 * i + row, col)] = r[(row, col)];
            }
            a[(3 * i + row, 3 + row)] = -1.0;
            b[3 * i + row] = -pose.translation.vector[row];
        }
    }
    let svd = a.clone().svd(true, true);
    let (lo, hi) = (svd.singular_values.min(), svd.singular_values.max());
    if !(hi > 0.0 && lo / hi >= cfg.min_condition) {
        return Err(CalibError::DegenerateMotion {
            step: STEP,
            detail: format!(
                "the tilts turn about a single axis (condition {:.4} < {}); the tip offset along it is unobservable: \
                 tilt about a second axis too",
                lo / hi.max(1e-300),
                cfg.min_condition
            ),
        });
    }
    let x = svd
        .solve(&b, 1e-12)
        .map_err(|e| CalibError::NotFinite { step: STEP, what: format!("the least-squares solution ({e})") })?;
    let t = Vector3::new(x[0], x[1], x[2]);
    let pivot = Point3::new(x[3], x[4], x[5]);
    let r2: f64 = base_from_flange.iter().map(|p| (p * Point3::from(t) - pivot).norm_squared()).sum();
    let rms_mm = (r2 / n as f64).sqrt();
    if !(rms_mm.is_finite() && t.iter().all(|v| v.is_finite())) {
        return Err(CalibError::NotFinite { step: STEP, what: "the tip offset".into() });
    }
    Ok(TcpCalibration { flange_from_needle_tip_mm: t, base_pivot_mm: pivot, rms_mm, spread_deg })
}

/// Flange poses pivoting about `pivot` with the tip at `tip` (flange frame), tilted by
/// `tilts` (rotation vectors, rad): the synthetic input the tests and the simulated
/// calibration use.
pub fn pivot_poses(tip: &Vector3<f64>, pivot: &Point3<f64>, tilts: &[Vector3<f64>]) -> Vec<Isometry3<f64>> {
    tilts
        .iter()
        .map(|rv| {
            let rot = nalgebra::UnitQuaternion::from_scaled_axis(*rv);
            // R t + p = pivot  =>  p = pivot - R t
            let p = pivot.coords - rot * tip;
            Isometry3::from_parts(nalgebra::Translation3::from(p), rot)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tilts() -> Vec<Vector3<f64>> {
        vec![
            Vector3::new(std::f64::consts::PI, 0.0, 0.0),
            Vector3::new(2.9, 0.3, 0.0),
            Vector3::new(2.9, -0.3, 0.2),
            Vector3::new(3.1, 0.0, 0.4),
            Vector3::new(3.3, 0.25, -0.3),
            Vector3::new(3.0, -0.2, -0.5),
        ]
    }

    proptest! {
        #[test]
        fn recovers_tip_and_pivot_exactly(tx in -20.0f64..20.0, ty in -20.0f64..20.0, tz in -150.0f64..-20.0,
                                          px in 100.0f64..300.0, py in -100.0f64..100.0, pz in 0.0f64..100.0) {
            let tip = Vector3::new(tx, ty, tz);
            let pivot = Point3::new(px, py, pz);
            let cal = calibrate_tcp(&pivot_poses(&tip, &pivot, &tilts()), &TcpConfig::default()).expect("solves");
            prop_assert!((cal.flange_from_needle_tip_mm - tip).norm() < 1e-8);
            prop_assert!((cal.base_pivot_mm - pivot).norm() < 1e-8);
            prop_assert!(cal.rms_mm < 1e-8);
        }
    }

    #[test]
    fn refuses_too_few_or_too_similar_orientations() {
        let tip = Vector3::new(0.0, 0.0, -100.0);
        let pivot = Point3::new(200.0, 0.0, 30.0);
        let few = pivot_poses(&tip, &pivot, &tilts()[..2]);
        assert!(matches!(calibrate_tcp(&few, &TcpConfig::default()), Err(CalibError::TooFewViews { .. })));
        let similar: Vec<Vector3<f64>> =
            (0..6).map(|i| Vector3::new(std::f64::consts::PI + 0.01 * f64::from(i), 0.0, 0.0)).collect();
        let s = pivot_poses(&tip, &pivot, &similar);
        assert!(matches!(calibrate_tcp(&s, &TcpConfig::default()), Err(CalibError::DegenerateMotion { .. })));
        // Tilted a lot, but about the x axis only.
        let one_axis: Vec<Vector3<f64>> = (0..6).map(|i| Vector3::new(2.7 + 0.15 * f64::from(i), 0.0, 0.0)).collect();
        let o = pivot_poses(&tip, &pivot, &one_axis);
        assert!(matches!(calibrate_tcp(&o, &TcpConfig::default()), Err(CalibError::DegenerateMotion { .. })));
    }
}

//! Where the scar tissue is, as head-frame outlines on the skin: the render truth that
//! vision's scar masking is scored against.

use nalgebra::Vector3;

use crate::patient::{direction_from_angles_deg, ScarSpec, SyntheticPatient};

/// Outline of each scar of the patient as head-frame points on the skin, in the order of
/// `spec().scars`, each a closed loop (first point not repeated) of about one point per
/// `step_mm` of boundary.
///
/// Why: render truth reports where scar tissue is so that vision's scar masking can be
/// scored; the outline is the edge the patient model blends across (`inside_weight` is 0.5
/// there). Ellipse scars sample their ellipse on the surface; polyline scars the boundary of
/// the band `width_mm / 2` around the line (two offset sides joined by half-circle caps).
/// Points are projected radially onto the head ellipsoid, as the patient model does.
pub fn scar_outlines_head_mm(patient: &SyntheticPatient, step_mm: f64) -> Vec<Vec<[f64; 3]>> {
    let step = if step_mm.is_finite() && step_mm > 1e-3 { step_mm } else { 0.5 };
    let ell = patient.ellipsoid();
    let on_skin = |p: Vector3<f64>| -> Option<[f64; 3]> {
        let n = p.norm();
        if !(n > 1e-9 && n.is_finite()) {
            return None;
        }
        let q = ell.point_in_direction(&(p / n));
        Some([q.x, q.y, q.z])
    };
    patient
        .spec()
        .scars
        .iter()
        .map(|scar| match scar {
            ScarSpec::Ellipse(e) => {
                let c = ell.point_in_direction(&direction_from_angles_deg(e.centre_polar_deg, e.centre_azimuth_deg));
                let nrm = ell.normal(&c);
                // The patient's scar frame: front-back is the nose direction in the tangent
                // plane (the vertex direction on the face), turned by rotation_deg to the left.
                let reference = if nrm.x.abs() > 0.95 { Vector3::z() } else { Vector3::x() };
                let front = (reference - nrm * nrm.dot(&reference)).normalize();
                let left = nrm.cross(&front);
                let (sr, cr) = e.rotation_deg.to_radians().sin_cos();
                let long = front * cr + left * sr;
                let wide = nrm.cross(&long);
                let (a, b) = (e.half_length_mm, e.half_width_mm);
                let perimeter = std::f64::consts::PI * (3.0 * (a + b) - ((3.0 * a + b) * (a + 3.0 * b)).sqrt());
                let k = ((perimeter / step).ceil() as usize).clamp(8, 100_000);
                (0..k)
                    .filter_map(|j| {
                        let th = 2.0 * std::f64::consts::PI * j as f64 / k as f64;
                        on_skin(c.coords + long * (a * th.cos()) + wide * (b * th.sin()))
                    })
                    .collect()
            }
            ScarSpec::Polyline(l) => polyline_outline(&l.points_head_mm, 0.5 * l.width_mm, step, &on_skin),
        })
        .collect()
}

/// Boundary of the band of half width `r` around a polyline: the left offsets forward, a
/// half-circle cap, the right offsets backward, the other cap. Offsets are taken in the plane
/// tangent to the head (normal = radial direction), which is close enough for scars a few
/// mm wide on a head 80 mm in radius.
fn polyline_outline(
    points: &[[f64; 3]],
    r: f64,
    step: f64,
    on_skin: &dyn Fn(Vector3<f64>) -> Option<[f64; 3]>,
) -> Vec<[f64; 3]> {
    // The vertices on the skin first, as the patient's scar model places them.
    let pts: Vec<Vector3<f64>> = points.iter().filter_map(|p| on_skin(Vector3::from(*p))).map(Vector3::from).collect();
    if pts.len() < 2 || r.is_nan() || r <= 0.0 {
        return Vec::new();
    }
    let side = |a: &Vector3<f64>, b: &Vector3<f64>| -> Vector3<f64> {
        let up = (a + b).normalize();
        (b - a).cross(&up).try_normalize(1e-12).unwrap_or_else(Vector3::zeros)
    };
    let mut left = Vec::new();
    let mut right = Vec::new();
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let s = side(&a, &b);
        let k = (((b - a).norm() / step).ceil() as usize).clamp(1, 100_000);
        for j in 0..=k {
            let p = a + (b - a) * (j as f64 / k as f64);
            left.push(p + s * r);
            right.push(p - s * r);
        }
    }
    // Half circle about `centre` from `from` (at distance r) to its mirror, bulging along
    // `out`, away from the line.
    let cap = |centre: Vector3<f64>, from: Vector3<f64>, out: Vector3<f64>| -> Vec<Vector3<f64>> {
        let u = from - centre;
        let k = ((std::f64::consts::PI * r / step).ceil() as usize).clamp(2, 10_000);
        (1..k)
            .map(|j| {
                let th = std::f64::consts::PI * j as f64 / k as f64;
                centre + u * th.cos() + out * (r * th.sin())
            })
            .collect()
    };
    let n = pts.len();
    let (first, last) = (pts[0], pts[n - 1]);
    let dir = |a: Vector3<f64>, b: Vector3<f64>| (b - a).try_normalize(1e-12).unwrap_or_else(Vector3::zeros);
    let mut ring: Vec<Vector3<f64>> = left.clone();
    if let Some(&lf) = left.last() {
        ring.extend(cap(last, lf, dir(pts[n - 2], last)));
    }
    ring.extend(right.iter().rev());
    if let Some(&rf) = right.first() {
        ring.extend(cap(first, rf, dir(pts[1], first)));
    }
    ring.into_iter().filter_map(on_skin).collect()
}

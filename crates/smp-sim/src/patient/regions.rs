//! What the skin is at each point of the head surface: the hair region (natural lower edge,
//! frontal recession, crown thinning, scars) with its follicle density and soft edges, and
//! the skin's low-frequency mottling. Seeded per patient, evaluated per pixel by the
//! renderer, so everything here is cheap to call.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use nalgebra::{Point3, Vector3};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use smp_core::geometry::Ellipsoid;
use smp_core::map::RegionKind;

use super::direction_from_angles_deg;
use super::sampling::{area_element, param_point};
use super::spec::{HairlineSpec, PatientSpec, ScarSpec};

/// A smooth periodic wobble `sum a_k cos(k psi + phase_k)`, evaluated from the unit vector
/// `(cos psi, sin psi)` by complex powers so that no trigonometric call is needed per pixel.
#[derive(Debug, Clone, Default)]
struct Harmonics {
    /// `(k, re, im)` of `a_k e^{i phase_k}`, k ascending.
    terms: Vec<(u32, f64, f64)>,
    /// Bound on the absolute value: the sum of the amplitudes.
    max_abs: f64,
}

impl Harmonics {
    /// Random harmonics k in `k_min..=k_max` whose absolute amplitudes sum to `amplitude`
    /// (so the wobble never exceeds it); higher harmonics are weaker.
    fn random(rng: &mut ChaCha8Rng, k_min: u32, k_max: u32, amplitude: f64) -> Self {
        if amplitude <= 0.0 || k_max < k_min {
            return Harmonics::default();
        }
        let mut raw: Vec<(u32, f64, f64)> = (k_min..=k_max)
            .map(|k| {
                let a = rng.random_range(0.3..1.0) / k as f64;
                let ph = rng.random_range(0.0..2.0 * PI);
                (k, a, ph)
            })
            .collect();
        let total: f64 = raw.iter().map(|t| t.1).sum();
        for t in &mut raw {
            t.1 *= amplitude / total;
        }
        Harmonics {
            terms: raw.into_iter().map(|(k, a, ph)| (k, a * ph.cos(), a * ph.sin())).collect(),
            max_abs: amplitude,
        }
    }

    fn eval_unit(&self, c: f64, s: f64) -> f64 {
        let (mut zr, mut zi, mut k) = (1.0, 0.0, 0u32);
        let mut sum = 0.0;
        for &(kk, re, im) in &self.terms {
            while k < kk {
                (zr, zi) = (zr * c - zi * s, zr * s + zi * c);
                k += 1;
            }
            sum += re * zr - im * zi;
        }
        sum
    }
}

/// A tangent frame at a point of the head surface, for shapes measured in mm on the surface.
#[derive(Debug, Clone)]
pub(super) struct SurfaceFrame {
    pub(super) centre: Point3<f64>,
    pub(super) normal: Vector3<f64>,
    /// First axis of the shape (front-back rotated by `rotation_deg`).
    e1: Vector3<f64>,
    e2: Vector3<f64>,
}

impl SurfaceFrame {
    pub(super) fn new(ell: &Ellipsoid, polar_deg: f64, azimuth_deg: f64, rotation_deg: f64) -> Self {
        let centre = ell.point_in_direction(&direction_from_angles_deg(polar_deg, azimuth_deg));
        let normal = ell.normal(&centre);
        // Front-back axis: the nose direction projected into the tangent plane; the vertex
        // direction where the normal is along x (the face), so the frame is always defined.
        let reference = if normal.x.abs() > 0.95 { Vector3::z() } else { Vector3::x() };
        let front = (reference - normal * normal.dot(&reference)).normalize();
        let left = normal.cross(&front);
        let r = rotation_deg.to_radians();
        let e1 = front * r.cos() + left * r.sin();
        let e2 = normal.cross(&e1);
        SurfaceFrame { centre, normal, e1, e2 }
    }

    /// Coordinates of a surface point in the frame, mm: the tangent direction scaled to the
    /// chord length (within a few % of the distance along the surface at these sizes).
    pub(super) fn local_mm(&self, p: &Point3<f64>) -> (f64, f64) {
        let d = p - self.centre;
        let chord = d.norm();
        let t = d - self.normal * d.dot(&self.normal);
        let tn = t.norm();
        if tn < 1e-12 {
            return (0.0, 0.0);
        }
        let scale = chord / tn;
        (t.dot(&self.e1) * scale, t.dot(&self.e2) * scale)
    }
}

/// Approximate signed distance (mm, negative inside) from `(u, v)` to the ellipse with
/// semi-axes `ra, rb`, plus the unit vector of the point's elliptic angle (for wobbles).
fn ellipse_sd(u: f64, v: f64, ra: f64, rb: f64) -> (f64, f64, f64) {
    let (nu, nv) = (u / ra, v / rb);
    let f = nu * nu + nv * nv - 1.0;
    let (gu, gv) = (u / (ra * ra), v / (rb * rb));
    let g = 2.0 * (gu * gu + gv * gv).sqrt();
    let rho = (nu * nu + nv * nv).sqrt();
    let (c, s) = if rho > 1e-12 { (nu / rho, nv / rho) } else { (1.0, 0.0) };
    let floor = -ra.min(rb);
    let sd = if g > 1e-12 { (f / g).max(floor) } else { floor };
    (sd, c, s)
}

/// Weight of "inside" across a soft edge: 1 well inside (sd < 0), 0 well outside.
pub(crate) fn inside_weight(sd_mm: f64, softness_mm: f64) -> f64 {
    if softness_mm <= 1e-9 {
        return if sd_mm < 0.0 { 1.0 } else { 0.0 };
    }
    let s = (0.5 - sd_mm / softness_mm).clamp(0.0, 1.0);
    s * s * (3.0 - 2.0 * s)
}

/// How little hair a label means, for combining the frontal and crown models.
fn severity(r: RegionKind) -> u8 {
    match r {
        RegionKind::Hair => 0,
        RegionKind::Thinning => 1,
        RegionKind::Bald => 2,
        RegionKind::Scar => 3,
        RegionKind::Outside => 4,
    }
}

/// What the skin is at one surface point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SurfaceSample {
    pub(crate) region: RegionKind,
    /// Expected follicle density, per mm².
    pub(crate) density_per_mm2: f64,
    /// Signed distance to the nearest scar's edge, mm (negative inside); +inf without scars.
    pub(crate) scar_sd_mm: f64,
    /// Blend width of that scar's edge, mm.
    pub(crate) scar_softness_mm: f64,
}

/// A scar's shape, ready for per-pixel evaluation.
#[derive(Debug, Clone)]
enum ScarModel {
    Ellipse {
        frame: SurfaceFrame,
        half_length_mm: f64,
        half_width_mm: f64,
        softness_mm: f64,
    },
    /// Vertices on the skin; `bound` is a sphere holding every point within reach of the line
    /// (half width plus softness), so that pixels far from the scar cost one distance.
    Polyline {
        points: Vec<Point3<f64>>,
        half_width_mm: f64,
        softness_mm: f64,
        bound: (Point3<f64>, f64),
    },
}

impl ScarModel {
    fn new(spec: &ScarSpec, ell: &Ellipsoid) -> Self {
        match spec {
            ScarSpec::Ellipse(s) => ScarModel::Ellipse {
                frame: SurfaceFrame::new(ell, s.centre_polar_deg, s.centre_azimuth_deg, s.rotation_deg),
                half_length_mm: s.half_length_mm,
                half_width_mm: s.half_width_mm,
                softness_mm: s.edge_softness_mm,
            },
            ScarSpec::Polyline(s) => {
                let points: Vec<Point3<f64>> = s
                    .points_head_mm
                    .iter()
                    .filter_map(|p| {
                        let v = Vector3::from(*p);
                        let n = v.norm();
                        (n.is_finite() && n > 1e-9).then(|| ell.point_in_direction(&(v / n)))
                    })
                    .collect();
                let half_width_mm = 0.5 * s.width_mm;
                let centre = if points.is_empty() {
                    Point3::origin()
                } else {
                    Point3::from(points.iter().map(|p| p.coords).sum::<Vector3<f64>>() / points.len() as f64)
                };
                let reach =
                    points.iter().map(|p| (p - centre).norm()).fold(0.0, f64::max) + half_width_mm + s.edge_softness_mm;
                ScarModel::Polyline { points, half_width_mm, softness_mm: s.edge_softness_mm, bound: (centre, reach) }
            }
        }
    }

    /// Signed distance from a surface point to the scar's edge (mm, negative inside) and the
    /// scar's edge softness. Polylines use the straight-line (chord) distance to each
    /// segment: within 0.1 % of the distance along the skin at scar widths.
    fn signed_distance(&self, p: &Point3<f64>) -> (f64, f64) {
        match self {
            ScarModel::Ellipse { frame, half_length_mm, half_width_mm, softness_mm } => {
                let (u, v) = frame.local_mm(p);
                (ellipse_sd(u, v, *half_length_mm, *half_width_mm).0, *softness_mm)
            }
            ScarModel::Polyline { points, half_width_mm, softness_mm, bound } => {
                if points.len() < 2 {
                    return (f64::INFINITY, *softness_mm);
                }
                let far = (p - bound.0).norm() - bound.1;
                if far > POLYLINE_SKIP_MM {
                    // The true distance is at least `far` beyond the blend: far enough that
                    // neither region nor colour (any pixel footprint under 40 mm) depends on it.
                    return (far, *softness_mm);
                }
                let d =
                    points.windows(2).map(|w| point_segment_distance(p, &w[0], &w[1])).fold(f64::INFINITY, f64::min);
                (d - half_width_mm, *softness_mm)
            }
        }
    }
}

/// Beyond this distance from a polyline scar's bound its exact distance is not computed.
const POLYLINE_SKIP_MM: f64 = 20.0;

/// Distance from `p` to the segment `a`-`b` (a point if `a == b`).
fn point_segment_distance(p: &Point3<f64>, a: &Point3<f64>, b: &Point3<f64>) -> f64 {
    let ab = b - a;
    let len2 = ab.norm_squared();
    let t = if len2 > 1e-18 { ((p - a).dot(&ab) / len2).clamp(0.0, 1.0) } else { 0.0 };
    (p - (a + ab * t)).norm()
}

#[derive(Debug, Clone)]
struct CrownModel {
    frame: SurfaceFrame,
    thinning: [f64; 2],
    bald: [f64; 2],
    thinning_wobble: Harmonics,
    bald_wobble: Harmonics,
}

/// The region geometry of one patient, with its seeded irregularities.
#[derive(Debug, Clone)]
pub(super) struct RegionModel {
    lower_edge_deg: Vec<[f64; 2]>,
    lower_wobble: Harmonics,
    hairline: HairlineSpec,
    hairline_wobble: Harmonics,
    crown: Option<CrownModel>,
    crown_softness_mm: f64,
    scars: Vec<ScarModel>,
    pub(super) hair_per_mm2: f64,
    thinning_per_mm2: f64,
    bald_per_mm2: f64,
}

impl RegionModel {
    pub(super) fn new(spec: &PatientSpec, ell: &Ellipsoid, rng: &mut ChaCha8Rng) -> Self {
        let lower_wobble = Harmonics::random(rng, 3, 14, spec.scalp.edge_irregularity_deg);
        let hairline_wobble = Harmonics::random(rng, 4, 24, spec.hairline.irregularity_deg);
        let c = &spec.crown;
        let crown_wobble_t = Harmonics::random(rng, 2, 7, c.edge_irregularity_mm);
        let bald_scale = if c.thinning_radii_mm[0] > 0.0 {
            (c.bald_radii_mm[0] + c.bald_radii_mm[1]) / (c.thinning_radii_mm[0] + c.thinning_radii_mm[1])
        } else {
            0.0
        };
        let crown_wobble_b = Harmonics::random(rng, 2, 7, c.edge_irregularity_mm * bald_scale.max(0.3));
        let crown = (c.thinning_radii_mm[0] > 0.0).then(|| CrownModel {
            frame: SurfaceFrame::new(ell, c.centre_polar_deg, c.centre_azimuth_deg, c.rotation_deg),
            thinning: c.thinning_radii_mm,
            bald: c.bald_radii_mm,
            thinning_wobble: crown_wobble_t,
            bald_wobble: crown_wobble_b,
        });
        let scars = spec.scars.iter().map(|s| ScarModel::new(s, ell)).collect();
        RegionModel {
            lower_edge_deg: spec.scalp.lower_edge_deg.clone(),
            lower_wobble,
            hairline: spec.hairline.clone(),
            hairline_wobble,
            crown,
            crown_softness_mm: c.edge_softness_mm,
            scars,
            hair_per_mm2: spec.follicles.hair_per_cm2 / 100.0,
            thinning_per_mm2: spec.follicles.thinning_per_cm2 / 100.0,
            bald_per_mm2: spec.follicles.bald_per_cm2 / 100.0,
        }
    }

    /// Lower edge of hair-bearing scalp at |azimuth| in degrees (table interpolation).
    fn lower_edge_at(&self, abs_azimuth_deg: f64) -> f64 {
        let t = &self.lower_edge_deg;
        for w in t.windows(2) {
            let ([a0, p0], [a1, p1]) = (w[0], w[1]);
            if abs_azimuth_deg <= a1 {
                let f = ((abs_azimuth_deg - a0) / (a1 - a0)).clamp(0.0, 1.0);
                return p0 + f * (p1 - p0);
            }
        }
        t.last().map_or(90.0, |r| r[1])
    }

    /// Classifies a point on (or very near) the head surface.
    pub(super) fn sample(&self, p: &Point3<f64>) -> SurfaceSample {
        // Scars first: they override everything and carry no follicles.
        let mut scar_sd_mm = f64::INFINITY;
        let mut scar_softness_mm = 0.0;
        for s in &self.scars {
            let (sd, softness_mm) = s.signed_distance(p);
            if sd < scar_sd_mm {
                scar_sd_mm = sd;
                scar_softness_mm = softness_mm;
            }
        }
        if scar_sd_mm < 0.0 {
            return SurfaceSample { region: RegionKind::Scar, density_per_mm2: 0.0, scar_sd_mm, scar_softness_mm };
        }

        // Position on the head: polar angle from the vertex and azimuth from the nose.
        let rxy = (p.x * p.x + p.y * p.y).sqrt();
        let polar_deg = rxy.atan2(p.z).to_degrees();
        let (ca, sa) = if rxy > 1e-12 { (p.x / rxy, p.y / rxy) } else { (1.0, 0.0) };
        let abs_az_deg = sa.abs().atan2(ca).to_degrees();

        // Frontal recession: the hairline sits `recession` degrees above the natural edge.
        let h = &self.hairline;
        let fade = if abs_az_deg < h.recession_fade_azimuth_deg {
            0.5 * (1.0 + (PI * abs_az_deg / h.recession_fade_azimuth_deg).cos())
        } else {
            0.0
        };
        let z = (abs_az_deg - h.temple_azimuth_deg) / h.temple_width_deg;
        let temple = if z.abs() < 8.0 { (-0.5 * z * z).exp() } else { 0.0 };
        let recession = h.front_recession_deg * fade + h.temple_recession_deg * temple;
        // Where there is no recession, the hairline is the natural edge: no wobble, no band.
        let engaged = (recession / 3.0).clamp(0.0, 1.0);
        let transition = h.transition_deg * engaged;
        let table_lower = self.lower_edge_at(abs_az_deg);
        // Well above every edge (most of the scalp): full hair, no wobble to evaluate. The
        // bound is the exact path's hairline minus transition at its lowest.
        let clear =
            table_lower - self.lower_wobble.max_abs - recession - engaged * self.hairline_wobble.max_abs - transition;
        let (front_region, front_density) = if polar_deg < clear {
            (RegionKind::Hair, self.hair_per_mm2)
        } else {
            let lower = table_lower + self.lower_wobble.eval_unit(ca, sa);
            if polar_deg > lower {
                return SurfaceSample {
                    region: RegionKind::Outside,
                    density_per_mm2: 0.0,
                    scar_sd_mm,
                    scar_softness_mm,
                };
            }
            let hairline = lower - (recession + engaged * self.hairline_wobble.eval_unit(ca, sa)).max(0.0);
            if polar_deg > hairline {
                (RegionKind::Bald, self.bald_per_mm2)
            } else if polar_deg > hairline - transition {
                let t = ((hairline - polar_deg) / transition.max(1e-9)).clamp(0.0, 1.0);
                (RegionKind::Thinning, self.thinning_per_mm2 + (self.hair_per_mm2 - self.thinning_per_mm2) * t)
            } else {
                (RegionKind::Hair, self.hair_per_mm2)
            }
        };

        // Crown thinning with a bald core.
        let (crown_region, crown_density) = match &self.crown {
            None => (RegionKind::Hair, self.hair_per_mm2),
            Some(c) => {
                let (u, v) = c.frame.local_mm(p);
                let (sd_t, ct, st) = ellipse_sd(u, v, c.thinning[0], c.thinning[1]);
                let sd_t = sd_t - c.thinning_wobble.eval_unit(ct, st);
                let sd_b = if c.bald[0] > 0.0 {
                    let (sd, cb, sb) = ellipse_sd(u, v, c.bald[0], c.bald[1]);
                    sd - c.bald_wobble.eval_unit(cb, sb)
                } else {
                    f64::INFINITY
                };
                let w_t = inside_weight(sd_t, self.crown_softness_mm);
                let w_b = if sd_b.is_finite() { inside_weight(sd_b, self.crown_softness_mm) } else { 0.0 };
                let mut d = self.hair_per_mm2 + (self.thinning_per_mm2 - self.hair_per_mm2) * w_t;
                d += (self.bald_per_mm2 - d) * w_b;
                let region = if sd_b < 0.0 {
                    RegionKind::Bald
                } else if sd_t < 0.0 {
                    RegionKind::Thinning
                } else {
                    RegionKind::Hair
                };
                (region, d)
            }
        };

        let region = if severity(front_region) >= severity(crown_region) { front_region } else { crown_region };
        // Follicles stop exactly at a scar's edge.
        let density_per_mm2 = front_density.min(crown_density);
        SurfaceSample { region, density_per_mm2, scar_sd_mm, scar_softness_mm }
    }
}

/// Low-frequency brightness variation of the skin, fixed per patient.
#[derive(Debug, Clone)]
pub(super) struct SkinTexture {
    amplitude: f64,
    /// `(wave vector in rad/mm, phase)`.
    waves: Vec<(Vector3<f64>, f64)>,
}

impl SkinTexture {
    pub(super) fn new(amplitude: f64, rng: &mut ChaCha8Rng) -> Self {
        let waves = (0..5)
            .map(|_| {
                let wavelength_mm: f64 = (rng.random_range(6f64.ln()..35f64.ln())).exp();
                let dir = Vector3::new(
                    rng.sample::<f64, _>(StandardNormal),
                    rng.sample::<f64, _>(StandardNormal),
                    rng.sample::<f64, _>(StandardNormal),
                );
                let dir = if dir.norm() > 1e-6 { dir.normalize() } else { Vector3::x() };
                (dir * (2.0 * PI / wavelength_mm), rng.random_range(0.0..2.0 * PI))
            })
            .collect();
        SkinTexture { amplitude, waves }
    }

    pub(super) fn factor(&self, p: &Point3<f64>) -> f64 {
        if self.amplitude <= 0.0 {
            return 1.0;
        }
        let sum: f64 = self.waves.iter().map(|(k, ph)| (k.dot(&p.coords) + ph).sin()).sum();
        let n = self.waves.len().max(1) as f64;
        1.0 + self.amplitude * (2.0 * sum / n).clamp(-1.0, 1.0)
    }
}

/// Region areas of [`SyntheticPatient::region_areas_cm2`](super::SyntheticPatient::region_areas_cm2) from the region model alone (no
/// follicles needed: tests compare many region layouts cheaply).
pub(super) fn region_areas_cm2(
    regions: &RegionModel,
    ell: &Ellipsoid,
    up_head: &Vector3<f64>,
    max_tilt_deg: f64,
) -> BTreeMap<RegionKind, f64> {
    let mut out = BTreeMap::new();
    let n_up = up_head.norm();
    if !(n_up.is_finite() && n_up > 0.0 && max_tilt_deg.is_finite()) {
        return out;
    }
    let up = up_head / n_up;
    let cos_max = max_tilt_deg.to_radians().cos();
    let semi = ell.semi_axes_mm;
    let step = 0.5f64.to_radians();
    let n_theta = (PI / step).round() as usize;
    let n_phi = (2.0 * PI / step).round() as usize;
    for i in 0..n_theta {
        let t = (i as f64 + 0.5) * step;
        for j in 0..n_phi {
            let p = -PI + (j as f64 + 0.5) * step;
            let q = param_point(semi, t, p);
            if ell.normal(&q).dot(&up) < cos_max {
                continue;
            }
            let area_cm2 = area_element(semi, t, p) * step * step / 100.0;
            *out.entry(regions.sample(&q).region).or_insert(0.0) += area_cm2;
        }
    }
    out
}

//! The designed frontal hairline: a parametric line on the scalp in the head frame, and the
//! feathered band behind it where the dot density ramps from sparse to full.
//!
//! # Model
//! A point of the head frame is seen in a chart of (azimuth φ = `atan2(y, x)` about the head
//! z axis, height z). Over the front sector `|φ| <= FRONT_SECTOR` the line is a height
//! `z_line(φ) = glabella.z + H(|φ|) + wobble(φ)`:
//!
//! * `H(0)` = `frontal_height_mm` (the frontal point above the glabella);
//! * `H` runs smoothly to `temporal_height_mm` at the temporal points' azimuth
//!   `φ_t = asin(temporal_offset_mm / r_g)` (the lateral offset read on a circle of the
//!   glabella's radius `r_g` from the head z axis);
//! * the fronto-temporal corners rise by `corner_recession_mm` (a Gaussian bump centred at
//!   0.72 φ_t: the "M" of a mature line);
//! * beyond φ_t the line drops down the temple toward the sideburn (`TEMPLE_DROP_MM` over
//!   `TEMPLE_SPAN_DEG`);
//! * `wobble(φ)`: seeded 1-D value noise of amplitude `wobble_mm` and wavelength
//!   `wobble_wavelength_mm` along the line, on the signed azimuth so that the two sides
//!   differ, as real hairlines do.
//!
//! A point is in front of the line (forehead: never treated) when `z < z_line(φ)` inside the
//! front sector; everything else is behind it. The line on the skin is where the map's surface
//! meets `z = z_line(φ)` ([`Hairline::polyline`]); the distance behind the line used for the
//! density ramp is the 3-D distance to that polyline (close to the geodesic over the few
//! millimetres of the band), signed by the chart test.
//!
//! # Why a height chart
//! Clinicians design a hairline from the face: the frontal point so many centimetres above
//! the glabella, the temporal points so far to each side. Heights above the glabella are
//! those numbers, they do not depend on the scan, and every session of a patient sees the
//! same line (the wobble has its own seed).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use smp_core::geometry::SurfacePatch;
use smp_core::plan::{HairlinePreset, HairlineSpec};

use crate::geometry::{smoothstep, FastSurface};

/// Half-width of the front sector the line spans, radians (100°: from the midline down each
/// temple to in front of the ear).
const FRONT_SECTOR: f64 = 100.0 * std::f64::consts::PI / 180.0;
/// How far the line falls below the temporal point down the temple, mm.
const TEMPLE_DROP_MM: f64 = 60.0;
/// Azimuth over which it falls, degrees.
const TEMPLE_SPAN_DEG: f64 = 22.0;
/// Default glabella: the simulator's default head (semi-axes 100/80/88 mm) 95° from the
/// vertex toward the nose.
pub const DEFAULT_GLABELLA_HEAD_MM: [f64; 3] = [99.5, 0.0, -8.7];

/// Every hairline value, resolved from the spec, its preset and the patient's age.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HairlineParams {
    pub preset: HairlinePreset,
    pub glabella_head_mm: [f64; 3],
    pub frontal_height_mm: f64,
    pub temporal_offset_mm: f64,
    pub temporal_height_mm: f64,
    pub corner_recession_mm: f64,
    pub transition_mm: f64,
    pub edge_density: f64,
    pub wobble_mm: f64,
    pub wobble_wavelength_mm: f64,
    pub jitter_mm: f64,
    pub session1_widening: f64,
    pub seed: u64,
}

impl HairlineParams {
    /// The preset's values (heights above the glabella in mm, head frame). On the default
    /// simulated head the natural hairline sits about 54 mm above the glabella and the
    /// patient's receded one about 69 mm; older presets sit higher and recede more at the
    /// corners, with a wider, softer band (DOMAIN: 5-10 mm).
    pub fn preset(p: HairlinePreset) -> Self {
        let (frontal, t_off, t_h, corner, band, wobble, jitter) = match p {
            HairlinePreset::Juvenile => (50.0, 58.0, 36.0, 2.0, 5.0, 1.5, 1.2),
            HairlinePreset::Adult => (56.0, 60.0, 38.0, 8.0, 7.0, 2.0, 1.5),
            HairlinePreset::Mature => (62.0, 62.0, 42.0, 14.0, 8.0, 2.5, 1.8),
            HairlinePreset::Receded => (70.0, 64.0, 48.0, 20.0, 10.0, 3.0, 2.0),
        };
        HairlineParams {
            preset: p,
            glabella_head_mm: DEFAULT_GLABELLA_HEAD_MM,
            frontal_height_mm: frontal,
            temporal_offset_mm: t_off,
            temporal_height_mm: t_h,
            corner_recession_mm: corner,
            transition_mm: band,
            edge_density: 0.12,
            wobble_mm: wobble,
            wobble_wavelength_mm: 35.0,
            jitter_mm: jitter,
            session1_widening: 1.5,
            seed: 1,
        }
    }

    /// Spec values over the preset: the spec's preset, else the one the patient's age picks,
    /// else `adult`.
    pub fn resolve(spec: &HairlineSpec, age_years: Option<f64>) -> Self {
        let preset = spec.preset.or(age_years.map(HairlinePreset::for_age)).unwrap_or(HairlinePreset::Adult);
        let d = HairlineParams::preset(preset);
        HairlineParams {
            preset,
            glabella_head_mm: spec.glabella_head_mm.unwrap_or(d.glabella_head_mm),
            frontal_height_mm: spec.frontal_height_mm.unwrap_or(d.frontal_height_mm),
            temporal_offset_mm: spec.temporal_offset_mm.unwrap_or(d.temporal_offset_mm),
            temporal_height_mm: spec.temporal_height_mm.unwrap_or(d.temporal_height_mm),
            corner_recession_mm: spec.corner_recession_mm.unwrap_or(d.corner_recession_mm),
            transition_mm: spec.transition_mm.unwrap_or(d.transition_mm),
            edge_density: spec.edge_density.unwrap_or(d.edge_density),
            wobble_mm: spec.wobble_mm.unwrap_or(d.wobble_mm),
            wobble_wavelength_mm: spec.wobble_wavelength_mm.unwrap_or(d.wobble_wavelength_mm),
            jitter_mm: spec.jitter_mm.unwrap_or(d.jitter_mm),
            session1_widening: spec.session1_widening.unwrap_or(d.session1_widening),
            seed: spec.seed.unwrap_or(d.seed),
        }
    }

    /// Band width for a session: session 1 is widened (the softer foundation line).
    pub fn band_mm(&self, session: u32) -> f64 {
        if session <= 1 {
            self.transition_mm * self.session1_widening
        } else {
            self.transition_mm
        }
    }

    /// Density factor across the band at `d_mm` behind the line for a band of `band_mm`:
    /// `edge_density` at the line, 1 at the back of the band, smoothstep between; 0 in front.
    pub fn ramp(&self, d_mm: f64, band_mm: f64) -> f64 {
        if d_mm < 0.0 {
            return 0.0;
        }
        let e = self.edge_density;
        e + (1.0 - e) * smoothstep(d_mm / band_mm.max(1e-9))
    }
}

/// Seeded 1-D value noise in [0, 1], smoothstep-interpolated between lattice values.
#[derive(Debug, Clone)]
struct Noise1 {
    start: f64,
    spacing: f64,
    values: Vec<f64>,
}

impl Noise1 {
    fn new(start: f64, end: f64, spacing: f64, rng: &mut ChaCha8Rng) -> Self {
        let n = ((end - start) / spacing).ceil().max(0.0) as usize + 2;
        Noise1 { start, spacing, values: (0..n).map(|_| rng.random::<f64>()).collect() }
    }

    fn at(&self, s: f64) -> f64 {
        let f = ((s - self.start) / self.spacing).clamp(0.0, (self.values.len() - 1) as f64);
        let i = f.floor() as usize;
        let j = (i + 1).min(self.values.len() - 1);
        let t = smoothstep(f - i as f64);
        self.values[i] * (1.0 - t) + self.values[j] * t
    }
}

/// A resolved hairline, ready to test points and to be drawn.
#[derive(Debug, Clone)]
pub struct Hairline {
    pub params: HairlineParams,
    /// Radius of the glabella from the head z axis, mm (converts lateral offsets and arc
    /// lengths to azimuths).
    r_g: f64,
    phi_t: f64,
    wobble: Noise1,
}

impl Hairline {
    pub fn new(params: HairlineParams) -> Self {
        let g = params.glabella_head_mm;
        let r_g = g[0].hypot(g[1]).max(30.0);
        let phi_t = (params.temporal_offset_mm / r_g).clamp(0.05, 0.95).asin();
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        rng.set_stream(7);
        let reach = r_g * FRONT_SECTOR;
        let wobble = Noise1::new(-reach, reach, params.wobble_wavelength_mm.max(1.0), &mut rng);
        Hairline { params, r_g, phi_t, wobble }
    }

    /// Azimuth of the temporal points, radians.
    pub fn temporal_azimuth_rad(&self) -> f64 {
        self.phi_t
    }

    /// Height (head z, mm) of the line at an azimuth (radians from +x toward +y), or `None`
    /// outside the front sector, where there is no frontal hairline.
    pub fn line_z_mm(&self, azimuth_rad: f64) -> Option<f64> {
        let a = azimuth_rad.abs();
        if a > FRONT_SECTOR {
            return None;
        }
        let p = &self.params;
        let t = self.phi_t;
        let mut h = if a <= t {
            p.frontal_height_mm + (p.temporal_height_mm - p.frontal_height_mm) * smoothstep(a / t)
        } else {
            p.temporal_height_mm - TEMPLE_DROP_MM * smoothstep((a - t) / TEMPLE_SPAN_DEG.to_radians())
        };
        let c = (a - 0.72 * t) / (0.22 * t);
        h += p.corner_recession_mm * (-c * c).exp();
        h += p.wobble_mm * (2.0 * self.wobble.at(self.r_g * azimuth_rad) - 1.0);
        Some(p.glabella_head_mm[2] + h)
    }

    /// Height of a head point above the line at its azimuth, mm (negative: in front of the
    /// line, on the forehead). `+inf` outside the front sector.
    pub fn height_above_line_mm(&self, p_head: [f64; 3]) -> f64 {
        if p_head[0].hypot(p_head[1]) < 1e-9 {
            return f64::INFINITY;
        }
        match self.line_z_mm(p_head[1].atan2(p_head[0])) {
            Some(z) => p_head[2] - z,
            None => f64::INFINITY,
        }
    }

    /// True when a head point lies in front of the line (never treated).
    pub fn in_front(&self, p_head: [f64; 3]) -> bool {
        self.height_above_line_mm(p_head) < 0.0
    }

    /// The line on the map's skin, in the head frame, as pieces (the line leaves the scanned
    /// surface at its ends, and may leave and re-enter it). Points about every millimetre.
    pub fn polyline(&self, surface: &SurfacePatch) -> Vec<Vec<[f64; 3]>> {
        let fast = FastSurface::new(surface);
        let steps = (2.0 * FRONT_SECTOR * self.r_g).ceil() as usize;
        let mut pieces: Vec<Vec<[f64; 3]>> = Vec::new();
        let mut current: Vec<[f64; 3]> = Vec::new();
        let mut last: Option<[f64; 3]> = None;
        for k in 0..=steps {
            let phi = -FRONT_SECTOR + 2.0 * FRONT_SECTOR * k as f64 / steps as f64;
            let hit = self.line_point(surface, &fast, phi);
            match (hit, last) {
                (Some(p), Some(q)) => {
                    // Where the line runs steeply down the temple one degree of azimuth spans
                    // a few millimetres: fill in so the pieces stay dense.
                    let gap = crate::geometry::dist3(p, q);
                    if gap > 1.5 {
                        let prev_phi = -FRONT_SECTOR + 2.0 * FRONT_SECTOR * (k as f64 - 1.0) / steps as f64;
                        let sub = (gap / 1.0).ceil().min(64.0) as usize;
                        for s in 1..sub {
                            let f = prev_phi + (phi - prev_phi) * s as f64 / sub as f64;
                            if let Some(m) = self.line_point(surface, &fast, f) {
                                current.push(m);
                            }
                        }
                    }
                    current.push(p);
                }
                (Some(p), None) => current.push(p),
                (None, _) => {
                    if current.len() > 1 {
                        pieces.push(std::mem::take(&mut current));
                    } else {
                        current.clear();
                    }
                }
            }
            last = hit;
        }
        if current.len() > 1 {
            pieces.push(current);
        }
        pieces
    }

    /// Where the horizontal ray from the head z axis at the line's height, in direction φ,
    /// leaves the head through the map's surface (inside to outside), if it does so on the
    /// surface's domain.
    fn line_point(&self, surface: &SurfacePatch, fast: &FastSurface, phi: f64) -> Option<[f64; 3]> {
        let z = self.line_z_mm(phi)?;
        let patch_from_head = surface.head_from_patch.inverse();
        let at = |t: f64| {
            let q = patch_from_head * nalgebra::Point3::new(t * phi.cos(), t * phi.sin(), z);
            if surface.contains_xy(q.x, q.y) {
                Some(q.z - fast.height_and_gradient(q.x, q.y).0)
            } else {
                None
            }
        };
        let step = 1.0;
        let mut prev: Option<(f64, f64)> = None;
        let mut t = 0.0;
        while t <= 400.0 {
            let g = at(t);
            if let (Some(g), Some((tp, gp))) = (g, prev) {
                if gp < 0.0 && g >= 0.0 {
                    let (mut lo, mut hi) = (tp, t);
                    for _ in 0..40 {
                        let mid = 0.5 * (lo + hi);
                        match at(mid) {
                            Some(v) if v < 0.0 => lo = mid,
                            _ => hi = mid,
                        }
                    }
                    let tt = 0.5 * (lo + hi);
                    return Some([tt * phi.cos(), tt * phi.sin(), z]);
                }
            }
            prev = g.map(|g| (t, g));
            t += step;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_rise_and_widen_with_age() {
        let mut last: Option<HairlineParams> = None;
        for p in HairlinePreset::ALL {
            let h = HairlineParams::preset(p);
            assert!((5.0..=10.0).contains(&h.transition_mm), "DOMAIN band 5-10 mm: {p:?}");
            if let Some(l) = &last {
                assert!(h.frontal_height_mm > l.frontal_height_mm);
                assert!(h.corner_recession_mm > l.corner_recession_mm);
                assert!(h.transition_mm >= l.transition_mm);
            }
            last = Some(h);
        }
    }

    #[test]
    fn spec_values_override_the_preset_and_age_picks_it() {
        let spec = HairlineSpec { frontal_height_mm: Some(66.0), ..HairlineSpec::default() };
        let h = HairlineParams::resolve(&spec, Some(65.0));
        assert_eq!(h.preset, HairlinePreset::Receded);
        assert_eq!(h.frontal_height_mm, 66.0);
        assert_eq!(h.transition_mm, HairlineParams::preset(HairlinePreset::Receded).transition_mm);
        let spec = HairlineSpec { preset: Some(HairlinePreset::Juvenile), ..HairlineSpec::default() };
        assert_eq!(HairlineParams::resolve(&spec, Some(65.0)).preset, HairlinePreset::Juvenile);
        assert_eq!(HairlineParams::resolve(&HairlineSpec::default(), None).preset, HairlinePreset::Adult);
    }

    #[test]
    fn line_passes_the_frontal_point_and_recedes_at_the_corners() {
        let p = HairlineParams { wobble_mm: 0.0, ..HairlineParams::preset(HairlinePreset::Mature) };
        let h = Hairline::new(p.clone());
        let g = p.glabella_head_mm[2];
        let front = h.line_z_mm(0.0).expect("midline");
        assert!((front - (g + p.frontal_height_mm)).abs() < 0.01, "{front}");
        let t = h.temporal_azimuth_rad();
        let corner = h.line_z_mm(0.72 * t).expect("corner");
        let straight = g + p.frontal_height_mm + (p.temporal_height_mm - p.frontal_height_mm) * smoothstep(0.72);
        assert!((corner - straight - p.corner_recession_mm).abs() < 0.01);
        // Symmetric without wobble; in front below the line, behind above it.
        assert_eq!(h.line_z_mm(0.3), h.line_z_mm(-0.3));
        assert!(h.in_front([90.0, 0.0, front - 1.0]));
        assert!(!h.in_front([90.0, 0.0, front + 1.0]));
        assert!(!h.in_front([-90.0, 0.0, -50.0]), "the back of the head has no frontal hairline");
        // Down the temple, and no line beyond the sector.
        assert!(h.line_z_mm(t + 0.5).expect("temple") < p.temporal_height_mm + g - 30.0);
        assert_eq!(h.line_z_mm(2.0), None);
    }

    #[test]
    fn wobble_is_bounded_seeded_and_differs_between_sides() {
        let base = HairlineParams::preset(HairlinePreset::Adult);
        let flat = Hairline::new(HairlineParams { wobble_mm: 0.0, ..base.clone() });
        let a = Hairline::new(base.clone());
        let b = Hairline::new(base.clone());
        let mut differs = false;
        for k in -50..=50 {
            let phi = k as f64 * 0.02;
            let (za, zb, z0) = (a.line_z_mm(phi), b.line_z_mm(phi), flat.line_z_mm(phi));
            assert_eq!(za, zb);
            let (za, z0) = (za.expect("in sector"), z0.expect("in sector"));
            assert!((za - z0).abs() <= base.wobble_mm + 1e-9);
            let mirror = a.line_z_mm(-phi).expect("in sector");
            differs |= (za - mirror).abs() > 0.2;
        }
        assert!(differs, "the two sides of a natural line are not mirror images");
    }
}

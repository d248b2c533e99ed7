//! Drawing a round mark onto the image with analytic, area-preserving coverage: hard discs
//! for follicles ([`disc_coverage`]) and soft-edged pigment for earlier SMP dots
//! ([`SoftDot`]), blended over the pixels that see skin ([`Splat`]).

use nalgebra::Point3;

/// What splatting a dot or follicle onto the image reads per pixel: the skin point the pixel
/// sees (NaN: none), its shading, and whether a head-band marker covers it.
pub(super) struct Splat<'a> {
    pub(super) hit: &'a [[f64; 3]],
    pub(super) shade: &'a [f32],
    pub(super) on_marker: &'a [bool],
    pub(super) width: usize,
}

impl Splat<'_> {
    /// Blends `colour` (linear RGB, shaded) over the pixels of `bounds` (x0, x1, y0, y1,
    /// inclusive) by the opacity `alpha(pixel index, distance on the skin from centre, mm)`
    /// returns; pixels without skin, under a marker, or with no opacity are left alone.
    pub(super) fn blend(
        &self,
        linear: &mut [[f32; 3]],
        bounds: (usize, usize, usize, usize),
        centre: &Point3<f64>,
        colour: [f32; 3],
        alpha: impl Fn(usize, f64) -> Option<f32>,
    ) {
        let (x0, x1, y0, y1) = bounds;
        for yy in y0..=y1 {
            for xx in x0..=x1 {
                let i = yy * self.width + xx;
                let q = self.hit[i];
                if q[0].is_nan() || self.on_marker.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let d = ((q[0] - centre.x).powi(2) + (q[1] - centre.y).powi(2) + (q[2] - centre.z).powi(2)).sqrt();
                let Some(a) = alpha(i, d) else { continue };
                let s = self.shade[i];
                let c = &mut linear[i];
                for k in 0..3 {
                    c[k] = c[k] * (1.0 - a) + colour[k] * s * a;
                }
            }
        }
    }
}

/// Coverage (0..1) of a pixel whose centre lies `d_mm` from the centre of a disc of radius
/// `r_mm`, for a pixel `w_mm` wide on the skin: a linear ramp one pixel wide across the
/// edge, and for discs smaller than a pixel a lower, wider profile with the same integral
/// (pi r²), so that sub-pixel follicles darken the photo by their true area.
pub(super) fn disc_coverage(d_mm: f64, r_mm: f64, w_mm: f64) -> f64 {
    let w = w_mm.max(1e-6);
    let rr = r_mm.max(0.5 * w);
    let peak = (r_mm * r_mm / (rr * rr + w * w / 12.0)).min(1.0);
    peak * (0.5 + (rr - d_mm) / w).clamp(0.0, 1.0)
}

/// Radial profile of a soft-edged dot on the skin: a logistic step (the shape of a disc
/// blurred by a Gaussian, to within a few %) whose blur combines the pigment's own edge
/// softness with the pixel's footprint, scaled so that its integral is the disc's area. That
/// keeps the 2-px dots of the overview photo as dark, in total, as the 15-px dots of a
/// close-up, just as [`disc_coverage`] does for follicles.
#[derive(Debug, Clone, Copy)]
pub(super) struct SoftDot {
    /// Radius of the logistic's half-height, mm.
    mid_mm: f64,
    /// Logistic scale, mm.
    scale_mm: f64,
    /// Coverage at the centre (below 1 when blur spreads a small dot).
    peak: f64,
}

impl SoftDot {
    pub(super) fn new(r_mm: f64, sigma_mm: f64, footprint_mm: f64) -> Self {
        use std::f64::consts::PI;
        let r = if r_mm.is_finite() { r_mm.max(1e-4) } else { 1e-4 };
        let sigma = if sigma_mm.is_finite() { sigma_mm.max(0.0) } else { 0.0 };
        let w = if footprint_mm.is_finite() { footprint_mm.max(1e-6) } else { 1e-6 };
        // Gaussian edge and pixel box (variance w²/12) add; a logistic of scale s has the
        // standard deviation s·pi/sqrt(3).
        let s = ((sigma * sigma + w * w / 12.0).sqrt() * 3f64.sqrt() / PI).max(1e-6);
        // Sommerfeld: a logistic step at R has integral ~ pi (R² + pi² s² / 3). Start from
        // the R that gives the disc's area, refine it by Newton steps on the exact integral
        // (whose derivative in R is about the circumference), and where even R = 0 is too
        // much (a small dot under a wide blur) lower the peak instead.
        let area = PI * r * r;
        let mut dot = SoftDot { mid_mm: (r * r - PI * PI * s * s / 3.0).max(0.0).sqrt(), scale_mm: s, peak: 1.0 };
        for _ in 0..4 {
            let excess = dot.integral() - area;
            let slope = 2.0 * PI * dot.mid_mm.max(s);
            dot.mid_mm = (dot.mid_mm - excess / slope).clamp(0.0, r);
        }
        let integral = dot.integral();
        dot.peak = if integral > 0.0 { (area / integral).min(1.0) } else { 0.0 };
        dot
    }

    /// Integral of the coverage over the plane, mm² (midpoint rule out to the reach).
    fn integral(&self) -> f64 {
        let n = 96;
        let step = self.reach_mm() / n as f64;
        (0..n)
            .map(|k| (k as f64 + 0.5) * step)
            .map(|rho| 2.0 * std::f64::consts::PI * rho * self.coverage(rho) * step)
            .sum()
    }

    /// Distance beyond which the coverage is negligible (< 0.05 %), mm.
    pub(super) fn reach_mm(&self) -> f64 {
        self.mid_mm + 8.0 * self.scale_mm
    }

    pub(super) fn coverage(&self, d_mm: f64) -> f64 {
        let z = (d_mm - self.mid_mm) / self.scale_mm;
        if z > 30.0 {
            0.0
        } else {
            self.peak / (1.0 + z.exp())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_dots_keep_their_area_and_reach() {
        for (r, sigma, w) in [(0.2, 0.06, 0.04), (0.2, 0.02, 0.2), (0.25, 0.06, 0.5), (0.1, 0.1, 0.04)] {
            let dot = SoftDot::new(r, sigma, w);
            let step = 1e-3;
            let mut total = 0.0;
            let mut d = step / 2.0;
            while d < dot.reach_mm() + 0.5 {
                total += dot.coverage(d) * 2.0 * std::f64::consts::PI * d * step;
                d += step;
            }
            let area = std::f64::consts::PI * r * r;
            assert!((total - area).abs() < 0.02 * area, "r {r} sigma {sigma} w {w}: {total} vs {area}");
            assert!(dot.coverage(dot.reach_mm()) < 1e-3 && dot.coverage(0.0) <= 1.0);
        }
        // A dot well above the blur is opaque in the middle.
        assert!(SoftDot::new(0.2, 0.03, 0.04).coverage(0.0) > 0.99);
    }

    proptest::proptest! {
        #[test]
        fn coverage_is_a_fraction_that_falls_with_distance(
            r in 0.01f64..1.0, w in 0.005f64..1.0, d in 0.0f64..2.0, dd in 0.0f64..0.5,
        ) {
            let c = disc_coverage(d, r, w);
            proptest::prop_assert!((0.0..=1.0).contains(&c));
            proptest::prop_assert!(disc_coverage(d + dd, r, w) <= c);
        }
    }

    #[test]
    fn small_discs_keep_their_area() {
        // Integral of the coverage profile over the plane equals the disc area, in pixels.
        for (r, w) in [(0.15, 0.04), (0.15, 0.18), (0.15, 0.5)] {
            let step = w / 20.0;
            let mut total = 0.0;
            let mut d = step / 2.0;
            while d < r + w {
                total += disc_coverage(d, r, w) * 2.0 * std::f64::consts::PI * d * step;
                d += step;
            }
            let area = std::f64::consts::PI * r * r;
            assert!((total - area).abs() < 0.05 * area, "r {r} w {w}: {total} vs {area}");
        }
    }
}

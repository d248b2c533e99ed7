//! How the simulated cameras render ([`RenderConfig`], sanitised so that rendering never
//! fails) and how its lamps light a surface (point lamp or ring light, Lambert shading).

use nalgebra::{Point3, Vector3};

/// How the simulated cameras render. Non-finite or out-of-range values fall back to the
/// defaults (rendering never fails).
///
/// The defaults reproduce the images vision was tuned on (a point lamp, read noise only, a
/// pinhole's infinite depth of field); the camera-realism fields below are off by default
/// and are switched on by calibration and robustness tests that need them.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderConfig {
    /// Seeds sensor and depth noise (mixed with each view's label).
    pub seed: u64,
    /// Standard deviation of the sensor's read noise, 8-bit grey levels per channel.
    pub noise_sigma_levels: f64,
    /// Standard deviation of the structured-light depth noise, mm.
    pub depth_noise_sigma_mm: f64,
    /// The dark neutral backdrop seen where a ray misses the head.
    pub background_srgb: [u8; 3],
    /// Share of light that reaches surfaces facing away from the lamp (0..1).
    pub ambient: f64,
    /// Position of the lamp in the camera frame, mm, used when `ring_light_radius_mm` is 0.
    pub light_in_camera_mm: [f64; 3],
    /// Exposure: multiplies the light collected (linear), before the sensor clips at white.
    /// More exposure also lowers the relative shot noise, as a longer shutter does. 1 = today.
    pub exposure_gain: f64,
    /// Electrons a pixel holds at full white (linear 1 at exposure 1); 0 disables shot noise.
    /// Why: photon noise grows as the square root of the signal, so bright skin is noisier
    /// in absolute terms than dark follicles; read noise alone would hide that. Typical
    /// machine-vision sensors hold 5 000-20 000 e-.
    pub full_well_electrons: f64,
    /// Radius of a ring light around the lens, mm (its lamps lie in the camera's z = 0 plane,
    /// centred on the optical axis). 0 = the single lamp at `light_in_camera_mm`. A ring
    /// lights the skin from the camera's own direction, so shading follows the surface
    /// normal's angle to the view (Lambert) without the side lamp's gradient.
    pub ring_light_radius_mm: f64,
    /// Diameter of the lens's entrance pupil, mm; 0 = pinhole (everything sharp). With a
    /// pupil, a point at depth z blurs to a circle of confusion of
    /// `aperture_mm * fx_px * |1/focus - 1/z|` pixels (thin lens), so curved skin away from
    /// the focus plane softens as in a real close-up at f/2-f/8.
    pub aperture_mm: f64,
    /// Distance of the plane in focus along the optical axis, mm; `None` focuses at the depth
    /// seen by the centre pixel (autofocus), or at the median depth if the centre misses.
    pub focus_distance_mm: Option<f64>,
    /// Render only this pixel window `[x0, y0, x1, y1)`; the rest of the image is the
    /// backdrop. `None` renders the whole image. Why: a tracking camera only needs the pixels
    /// around the markers it expects, and the skin behind every other pixel costs the most.
    pub window_px: Option<[u32; 4]>,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            seed: 0,
            noise_sigma_levels: 2.0,
            depth_noise_sigma_mm: 0.03,
            background_srgb: [34, 36, 40],
            // The rig's flange light as vision models it (one source for both).
            ambient: smp_core::color::Illumination::default().ambient,
            light_in_camera_mm: smp_core::color::Illumination::default().lamp_in_camera_mm,
            exposure_gain: 1.0,
            full_well_electrons: 0.0,
            ring_light_radius_mm: 0.0,
            aperture_mm: 0.0,
            focus_distance_mm: None,
            window_px: None,
        }
    }
}

impl RenderConfig {
    pub(crate) fn sanitised(&self) -> RenderConfig {
        let d = RenderConfig::default();
        let pick =
            |v: f64, lo: f64, hi: f64, default: f64| if v.is_finite() && v >= lo && v <= hi { v } else { default };
        RenderConfig {
            seed: self.seed,
            noise_sigma_levels: pick(self.noise_sigma_levels, 0.0, 64.0, d.noise_sigma_levels),
            depth_noise_sigma_mm: pick(self.depth_noise_sigma_mm, 0.0, 10.0, d.depth_noise_sigma_mm),
            background_srgb: self.background_srgb,
            ambient: pick(self.ambient, 0.0, 1.0, d.ambient),
            light_in_camera_mm: if self.light_in_camera_mm.iter().all(|v| v.is_finite()) {
                self.light_in_camera_mm
            } else {
                d.light_in_camera_mm
            },
            exposure_gain: pick(self.exposure_gain, 0.0, 1e3, d.exposure_gain),
            full_well_electrons: pick(self.full_well_electrons, 0.0, 1e9, d.full_well_electrons),
            ring_light_radius_mm: pick(self.ring_light_radius_mm, 0.0, 1e3, d.ring_light_radius_mm),
            aperture_mm: pick(self.aperture_mm, 0.0, 200.0, d.aperture_mm),
            focus_distance_mm: self.focus_distance_mm.filter(|f| f.is_finite() && *f > 1e-3),
            window_px: self.window_px,
        }
    }

    /// Lamp positions in the camera frame: the point lamp, or 12 lamps spread on the ring.
    pub(crate) fn lamps_in_camera_mm(&self) -> Vec<Point3<f64>> {
        if self.ring_light_radius_mm > 0.0 {
            (0..RING_LAMPS)
                .map(|k| {
                    let a = 2.0 * std::f64::consts::PI * k as f64 / RING_LAMPS as f64;
                    Point3::new(self.ring_light_radius_mm * a.cos(), self.ring_light_radius_mm * a.sin(), 0.0)
                })
                .collect()
        } else {
            vec![Point3::from(self.light_in_camera_mm)]
        }
    }
}

/// Lamps a ring light is sampled with: enough that the shading has no visible facets.
pub(super) const RING_LAMPS: usize = 12;

/// Mean Lambert factor (0..1) at a surface point `q` with unit `normal` under `lamps` (same
/// frame). A lamp at the point itself counts as fully facing.
pub(crate) fn lambert(normal: &Vector3<f64>, q: &Point3<f64>, lamps: &[Point3<f64>]) -> f64 {
    if lamps.is_empty() {
        return 1.0;
    }
    let sum: f64 = lamps
        .iter()
        .map(|l| {
            let to_light = l - q;
            if to_light.norm() > 1e-9 {
                normal.dot(&to_light.normalize()).max(0.0)
            } else {
                1.0
            }
        })
        .sum();
    sum / lamps.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_realism_settings_fall_back_to_defaults() {
        let bad = RenderConfig {
            exposure_gain: f64::NAN,
            full_well_electrons: -1.0,
            ring_light_radius_mm: f64::INFINITY,
            aperture_mm: -3.0,
            focus_distance_mm: Some(f64::NAN),
            ..RenderConfig::default()
        };
        assert_eq!(bad.sanitised(), RenderConfig::default().sanitised());
    }
}

//! Camera images of a synthetic patient: the flange camera's close-up tiles and the fixed
//! overview camera's photo, each with a structured-light depth frame.
//!
//! Why per-pixel ray casting through [`CameraIntrinsics::ray`]: the image must be what a real
//! camera with that lens distortion would see, so that vision's undistortion (through the
//! same core camera model, or OpenCV with the same coefficients) is exercised for real.
//! Follicles are splatted with analytic coverage (a disc convolved with the pixel's
//! footprint on the skin), which anti-aliases the 7-px discs of a close-up and keeps the
//! sub-pixel follicles of the overview photo area-correct, so hair there reads as a grey
//! tint as in a real photo. Earlier SMP dots (the patient's prior dots) are drawn under the
//! follicles with a soft, area-preserving profile in their healed blue-grey colour, because
//! that is how pigment under the epidermis looks and what vision must tell from a follicle's
//! sharp brown-black rim. Sensor and depth noise are seeded from the config and the view's
//! label: every image replays exactly.

use std::sync::{Arc, Mutex, OnceLock};

use nalgebra::{Isometry3, Point2, Point3, Vector2, Vector3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use smp_core::camera::CameraIntrinsics;
use smp_core::image::{CameraView, DepthImage, RgbImage};
use smp_core::rig::Rig;

use crate::charuco::{aruco_4x4_is_white, white_fraction_of, PAPER_WHITE, TONER_BLACK};
use crate::fiducial::TruthFiducial;
use crate::patient::{direction_from_angles_deg, inside_weight, ScarSpec, SyntheticPatient};

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
const RING_LAMPS: usize = 12;

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

/// The flange camera's frame with the machine at `machine_mm` (`xyz` profile).
pub fn render_flange_view(
    p: &SyntheticPatient,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    machine_mm: [f64; 3],
    label: &str,
    cfg: &RenderConfig,
) -> CameraView {
    let base_from_camera = rig.base_from_flange_camera_xyz(machine_mm);
    render_view(p, &rig.flange_camera.intrinsics, &base_from_camera, base_from_head, label, cfg)
}

/// The fixed overview camera's photo (label `overview`).
pub fn render_overview(
    p: &SyntheticPatient,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    cfg: &RenderConfig,
) -> CameraView {
    let base_from_camera = rig.overview_camera.base_from_camera.to_isometry();
    render_view(p, &rig.overview_camera.intrinsics, &base_from_camera, base_from_head, "overview", cfg)
}

/// Renders any camera at any pose: the building block of the two views above.
pub fn render_view(
    patient: &SyntheticPatient,
    intrinsics: &CameraIntrinsics,
    base_from_camera: &Isometry3<f64>,
    base_from_head: &Isometry3<f64>,
    label: &str,
    cfg: &RenderConfig,
) -> CameraView {
    let cfg = cfg.sanitised();
    let w = intrinsics.width_px as usize;
    let h = intrinsics.height_px as usize;
    let n = w * h;
    let head_from_camera = base_from_head.inverse() * base_from_camera;
    let origin = Point3::from(head_from_camera.translation.vector);
    let rotation = head_from_camera.rotation;
    let lamps: Vec<Point3<f64>> = cfg.lamps_in_camera_mm().iter().map(|l| head_from_camera * l).collect();
    let ell = patient.ellipsoid();

    let tone = &patient.spec().tone;
    let skin = srgb_to_linear3(tone.skin_srgb);
    let scar = srgb_to_linear3(tone.scar_srgb);
    let follicle = srgb_to_linear3(tone.follicle_srgb);
    // Roots under the skin absorb more red than blue: hair-bearing skin turns grey-blue.
    const SHADOW_TINT: [f32; 3] = [1.0, 0.95, 0.8];
    let hair_shadow = tone.hair_shadow as f32;
    let full_density = patient.full_density_per_mm2();

    // Pass 1: geometry and skin shading per pixel.
    let mut hit: Vec<[f64; 3]> = vec![[f64::NAN; 3]; n];
    let mut footprint_mm = vec![0f32; n];
    let mut shade = vec![0f32; n];
    let mut linear = vec![[0f32; 3]; n];
    let mut depth = vec![f32::NAN; n];
    let fx = intrinsics.fx_px.max(1e-9);
    let rays = ray_table(intrinsics);
    // Head-band markers: flat labels standing off the skin, drawn where a ray meets one
    // before the skin. Without fiducials this list is empty and the image is unchanged.
    let markers: Vec<MarkerPlane> = patient.truth_fiducials().iter().filter_map(MarkerPlane::new).collect();
    let mut on_marker = vec![false; if markers.is_empty() { 0 } else { n }];
    let ray_dir = |j: usize| -> Option<Vector3<f64>> {
        let r = rays.rays.get(j)?;
        Some(rotation * Vector3::new(f64::from(r[0]), f64::from(r[1]), f64::from(r[2])))
    };
    let [wx0, wy0, wx1, wy1] = match cfg.window_px {
        Some([x0, y0, x1, y1]) => {
            let (x1, y1) = ((x1 as usize).min(w), (y1 as usize).min(h));
            [(x0 as usize).min(x1), (y0 as usize).min(y1), x1, y1]
        }
        None => [0, 0, w, h],
    };
    for y in wy0..wy1 {
        for x in wx0..wx1 {
            let i = y * w + x;
            let [rx, ry, rz] = rays.rays[i];
            let ray = Vector3::new(f64::from(rx), f64::from(ry), f64::from(rz));
            let dir = rotation * ray;
            let skin_t = ell.intersect_ray(&origin, &dir);
            if let Some((t_m, k, local)) = nearest_marker(&markers, &origin, &dir) {
                if skin_t.is_none_or(|ts| t_m < ts) {
                    let m = &markers[k];
                    let q = origin + dir * t_m;
                    let cos_view = -m.normal.dot(&dir);
                    let z_mm = t_m * ray.z;
                    depth[i] = z_mm as f32;
                    footprint_mm[i] = (z_mm / fx / cos_view.max(0.2)) as f32;
                    // Pixel-to-label Jacobian from the neighbouring rays, for anti-aliasing.
                    let step = |j: Option<usize>, sign: f64| -> Vector2<f64> {
                        j.and_then(ray_dir)
                            .and_then(|d| m.local_hit(&origin, &d))
                            .map_or(Vector2::zeros(), |(_, p)| (p - local) * sign)
                    };
                    let du = if x + 1 < w { step(Some(i + 1), 1.0) } else { step(i.checked_sub(1), -1.0) };
                    let dv = if y + 1 < h { step(Some(i + w), 1.0) } else { step(i.checked_sub(w), -1.0) };
                    let f = white_fraction_of(|p| m.is_white(p), &local, &du, &dv);
                    let albedo = TONER_BLACK + (PAPER_WHITE - TONER_BLACK) * f;
                    let lit = (cfg.ambient + (1.0 - cfg.ambient) * lambert(&m.normal, &q, &lamps)) as f32;
                    linear[i] = [albedo * lit; 3];
                    shade[i] = lit;
                    hit[i] = [q.x, q.y, q.z];
                    if let Some(o) = on_marker.get_mut(i) {
                        *o = true;
                    }
                    continue;
                }
            }
            let Some(t) = skin_t else { continue };
            let q = origin + dir * t;
            let normal = ell.normal(&q);
            let cos_view = -normal.dot(&dir);
            if cos_view <= 0.0 {
                continue; // camera inside the head: no sensible image of the skin
            }
            let z_mm = t * ray.z;
            depth[i] = z_mm as f32;
            let foot = z_mm / fx / cos_view.max(0.2);
            footprint_mm[i] = foot as f32;
            let lit = (cfg.ambient + (1.0 - cfg.ambient) * lambert(&normal, &q, &lamps)) as f32;
            let s = patient.sample_surface(&q);
            let dens = if full_density > 0.0 { (s.density_per_mm2 / full_density).clamp(0.0, 1.0) as f32 } else { 0.0 };
            let mut c = [0f32; 3];
            for k in 0..3 {
                c[k] = skin[k] * (1.0 - hair_shadow * dens * SHADOW_TINT[k]);
            }
            if s.scar_sd_mm.is_finite() {
                let ws = inside_weight(s.scar_sd_mm, s.scar_softness_mm.max(foot)) as f32;
                if ws > 0.0 {
                    for k in 0..3 {
                        c[k] += (scar[k] - c[k]) * ws;
                    }
                }
            }
            let m = lit * patient.mottle(&q) as f32;
            linear[i] = [c[0] * m, c[1] * m, c[2] * m];
            shade[i] = lit;
            hit[i] = [q.x, q.y, q.z];
        }
    }

    let camera_from_head = head_from_camera.inverse();
    let scale_px = intrinsics.fx_px.max(intrinsics.fy_px);

    // Pass 2a: earlier SMP dots, pigment under the epidermis: round, soft-edged, their own
    // (healed blue-grey) colour. Before the follicles, which sit on top of the skin.
    for (dot, normal) in patient.truth_prior_dots().iter().zip(patient.prior_dot_normals()) {
        let pf = Point3::from(dot.position_head_mm);
        if Vector3::from(*normal).dot(&(origin - pf)) <= 0.0 {
            continue; // faces away from the camera
        }
        let pc = camera_from_head * pf;
        let Some(px) = intrinsics.project(&pc) else { continue };
        let (cx, cy) = (px.x.round(), px.y.round());
        if !(cx >= 0.0 && cy >= 0.0 && cx <= w as f64 - 1.0 && cy <= h as f64 - 1.0) {
            continue; // centre off the image (or NaN): at most a sliver would show
        }
        let foot = f64::from(footprint_mm[cy as usize * w + cx as usize]);
        if foot <= 0.0 {
            continue; // the centre pixel does not see the skin
        }
        let profile = SoftDot::new(0.5 * dot.diameter_mm, dot.edge_softness_mm, foot);
        let r_px = profile.reach_mm() * scale_px / pc.z + 1.5;
        let (x0, x1) = ((px.x - r_px).floor().max(0.0) as usize, ((px.x + r_px).ceil().min(w as f64 - 1.0)) as usize);
        let (y0, y1) = ((px.y - r_px).floor().max(0.0) as usize, ((px.y + r_px).ceil().min(h as f64 - 1.0)) as usize);
        let pigment = srgb_to_linear3(dot.srgb);
        let darkness = dot.darkness.clamp(0.0, 1.0) as f32;
        let px = Splat { hit: &hit, shade: &shade, on_marker: &on_marker, width: w };
        px.blend(&mut linear, (x0, x1, y0, y1), &pf, pigment, |_, d| {
            let a = profile.coverage(d) as f32 * darkness;
            (a > 1e-4).then_some(a)
        });
    }

    // Pass 2b: follicles, splatted with analytic coverage over their pixel footprint.
    for f in patient.truth_follicles() {
        let pf = Point3::from(f.position_head_mm);
        if Vector3::from(f.normal_head).dot(&(origin - pf)) <= 0.0 {
            continue; // faces away from the camera (the head is convex: hidden)
        }
        let pc = camera_from_head * pf;
        let Some(px) = intrinsics.project(&pc) else { continue };
        let r = 0.5 * f.diameter_mm;
        let r_px = r * scale_px / pc.z * 1.3 + 2.5;
        let (x0, x1) = ((px.x - r_px).floor(), (px.x + r_px).ceil());
        let (y0, y1) = ((px.y - r_px).floor(), (px.y + r_px).ceil());
        if !(x1 >= 0.0 && y1 >= 0.0 && x0 <= (w as f64 - 1.0) && y0 <= (h as f64 - 1.0)) {
            continue; // off the image (or NaN)
        }
        let (x0, x1) = (x0.max(0.0) as usize, x1.min(w as f64 - 1.0) as usize);
        let (y0, y1) = (y0.max(0.0) as usize, y1.min(h as f64 - 1.0) as usize);
        let darkness = f.darkness as f32;
        let px = Splat { hit: &hit, shade: &shade, on_marker: &on_marker, width: w };
        px.blend(&mut linear, (x0, x1, y0, y1), &pf, follicle, |i, d| {
            let cov = disc_coverage(d, r, footprint_mm[i] as f64) as f32;
            (cov > 0.0).then_some(cov * darkness)
        });
    }

    // Pass 3: optics and sensor.
    let mut hit_mask: Vec<bool> = hit.iter().map(|q| !q[0].is_nan()).collect();
    let data = develop(&mut linear, &mut hit_mask, &mut depth, intrinsics, label, &cfg);
    CameraView {
        label: label.to_string(),
        intrinsics: *intrinsics,
        base_from_camera: *base_from_camera,
        image: RgbImage { width: w as u32, height: h as u32, data },
        depth: Some(DepthImage { width: w as u32, height: h as u32, z_mm: depth }),
    }
}

/// White label paper around a head-band marker's black square, in marker cells (a sixth of
/// the square): ArUco detection needs a light quiet zone around the border, and a printed
/// label gives one whatever the skin tone.
const LABEL_MARGIN_CELLS: f64 = 1.0;

/// A head-band marker as the ray caster sees it: a flat printed label in the marker's plane.
struct MarkerPlane {
    id: u32,
    size_mm: f64,
    marker_from_head: Isometry3<f64>,
    centre: Point3<f64>,
    /// Outward normal (marker +z) in the head frame.
    normal: Vector3<f64>,
    /// Half side of the label (black square plus white margin), mm.
    half_label_mm: f64,
}

impl MarkerPlane {
    /// Only DICT_4X4_50 patterns are compiled in; markers of other dictionaries are not
    /// drawn (their truth still exists), rather than drawn with a wrong pattern.
    fn new(f: &TruthFiducial) -> Option<MarkerPlane> {
        if f.dictionary != "DICT_4X4_50" || !(f.size_mm.is_finite() && f.size_mm > 0.0) {
            return None;
        }
        Some(MarkerPlane {
            id: f.id,
            size_mm: f.size_mm,
            marker_from_head: f.head_from_marker.inverse(),
            centre: Point3::from(f.head_from_marker.translation.vector),
            normal: f.head_from_marker * Vector3::z(),
            half_label_mm: 0.5 * f.size_mm * (1.0 + 2.0 * LABEL_MARGIN_CELLS / 6.0),
        })
    }

    /// Where the ray meets the label's plane from its printed side: ray parameter and the
    /// point in marker coordinates (x right, y up), whether on the label or not.
    fn local_hit(&self, origin: &Point3<f64>, dir: &Vector3<f64>) -> Option<(f64, Point2<f64>)> {
        let denom = self.normal.dot(dir);
        if denom >= -1e-12 {
            return None; // seen edge-on or from behind (against the head)
        }
        let t = self.normal.dot(&(self.centre - origin)) / denom;
        if t.is_nan() || t <= 1e-9 {
            return None;
        }
        let l = self.marker_from_head * (origin + dir * t);
        Some((t, Point2::new(l.x, l.y)))
    }

    /// Whether the label is white at marker coordinates `p` (x right, y up, mm).
    fn is_white(&self, p: &Point2<f64>) -> bool {
        let h = 0.5 * self.size_mm;
        let (u, v) = ((p.x + h) / self.size_mm, (h - p.y) / self.size_mm);
        aruco_4x4_is_white(self.id, u, v).unwrap_or(true)
    }
}

/// The nearest label the ray meets: `(t, index, point in marker coordinates)`.
fn nearest_marker(
    markers: &[MarkerPlane],
    origin: &Point3<f64>,
    dir: &Vector3<f64>,
) -> Option<(f64, usize, Point2<f64>)> {
    let mut best: Option<(f64, usize, Point2<f64>)> = None;
    for (k, m) in markers.iter().enumerate() {
        let Some((t, p)) = m.local_hit(origin, dir) else { continue };
        if p.x.abs() > m.half_label_mm || p.y.abs() > m.half_label_mm {
            continue;
        }
        if best.is_none_or(|(tb, _, _)| t < tb) {
            best = Some((t, k, p));
        }
    }
    best
}

/// Pixel truth of the head-band markers in a view: `(id, corners in ArUco order)` for each
/// marker whose printed face turns toward the camera and whose four corners project into
/// the image, sorted by id. Why here: the truth must use the same camera model (distortion
/// included) as the render, so that a detector's corners can be scored to sub-pixel.
/// Occlusion by the head itself is not tested (a marker facing the camera on a convex head
/// is not hidden by it).
pub fn fiducial_corners_px(
    patient: &SyntheticPatient,
    intrinsics: &CameraIntrinsics,
    base_from_camera: &Isometry3<f64>,
    base_from_head: &Isometry3<f64>,
) -> Vec<(u32, [[f64; 2]; 4])> {
    let camera_from_head = base_from_camera.inverse() * base_from_head;
    let head_from_camera = camera_from_head.inverse();
    let eye = Point3::from(head_from_camera.translation.vector);
    let mut out: Vec<(u32, [[f64; 2]; 4])> = patient
        .truth_fiducials()
        .iter()
        .filter(|f| {
            let n = f.head_from_marker * Vector3::z();
            n.dot(&(eye - Point3::from(f.head_from_marker.translation.vector))) > 0.0
        })
        .filter_map(|f| {
            let px = |c: &[f64; 3]| -> Option<[f64; 2]> {
                let p = intrinsics.project(&(camera_from_head * Point3::from(*c)))?;
                intrinsics.contains(&p).then_some([p.x, p.y])
            };
            let c = &f.corners_head_mm;
            Some((f.id, [px(&c[0])?, px(&c[1])?, px(&c[2])?, px(&c[3])?]))
        })
        .collect();
    out.sort_by_key(|(id, _)| *id);
    out
}

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

/// From linear radiance to the 8-bit frame a camera delivers: defocus blur (optics), exposure,
/// shot noise and read noise (sensor), sRGB encoding; plus the depth frame's noise.
///
/// `linear` is scene radiance where `hit` is set; elsewhere the backdrop is seen. `depth` is
/// along the optical axis (NaN = no return) and gets `depth_noise_sigma_mm` in place. With
/// the default config (no blur, exposure 1, no shot noise) the backdrop keeps its exact sRGB
/// value and the random draws are in the same order as before these options existed, so
/// images replay bit for bit across this change.
pub(crate) fn develop(
    linear: &mut [[f32; 3]],
    hit: &mut [bool],
    depth: &mut [f32],
    intrinsics: &CameraIntrinsics,
    label: &str,
    cfg: &RenderConfig,
) -> Vec<u8> {
    let n = linear.len().min(hit.len()).min(depth.len());
    let w = intrinsics.width_px as usize;
    if cfg.aperture_mm > 0.0 && w > 0 {
        let back = srgb_to_linear3(cfg.background_srgb);
        for i in 0..n {
            if !hit[i] {
                linear[i] = back;
                hit[i] = true; // the blurred backdrop is now part of the radiance image
            }
        }
        defocus(&mut linear[..n], &depth[..n], w, intrinsics.fx_px, cfg);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(view_seed(cfg.seed, label));
    let lut = srgb_encode_lut();
    let sigma = cfg.noise_sigma_levels as f32;
    let depth_sigma = cfg.depth_noise_sigma_mm as f32;
    let gain = cfg.exposure_gain as f32;
    let full_well = cfg.full_well_electrons as f32;
    let background = cfg.background_srgb.map(f32::from);
    let mut data = vec![0u8; n * 3];
    // A windowed render (tracking) develops only its window: the sensor noise of the pixels
    // nobody reads is the largest cost of a small window. The rest stays the plain backdrop.
    let inside = |i: usize| match cfg.window_px {
        Some([x0, y0, x1, y1]) if w > 0 => {
            let (x, y) = ((i % w) as u32, (i / w) as u32);
            x >= x0 && x < x1 && y >= y0 && y < y1
        }
        _ => true,
    };
    for i in 0..n {
        if !inside(i) {
            let px = cfg.background_srgb;
            data[i * 3..i * 3 + 3].copy_from_slice(&px);
            continue;
        }
        let base = if hit[i] {
            let mut c = linear[i];
            for v in &mut c {
                *v *= gain;
                if full_well > 0.0 {
                    // Poisson photon count, Gaussian for the counts a pixel sees (> 50 e-).
                    *v += (v.max(0.0) / full_well).sqrt() * sample_normal(&mut rng);
                }
            }
            [encode(&lut, c[0]), encode(&lut, c[1]), encode(&lut, c[2])]
        } else {
            background
        };
        for k in 0..3 {
            let noise = if sigma > 0.0 { sigma * sample_normal(&mut rng) } else { 0.0 };
            data[i * 3 + k] = (base[k] + noise).round().clamp(0.0, 255.0) as u8;
        }
        if depth_sigma > 0.0 && depth[i].is_finite() {
            depth[i] += depth_sigma * sample_normal(&mut rng);
        }
    }
    data
}

/// Circle-of-confusion diameter in pixels of a point at depth `z_mm` (thin lens): the pupil
/// `aperture_mm` seen from the sensor, scaled by the defocus `|1/focus - 1/z|`. A point with
/// no depth (the far backdrop) is at infinity.
pub fn circle_of_confusion_px(aperture_mm: f64, fx_px: f64, focus_mm: f64, z_mm: f64) -> f64 {
    let inv_z = if z_mm.is_finite() && z_mm > 0.0 { 1.0 / z_mm } else { 0.0 };
    (aperture_mm * fx_px * (1.0 / focus_mm - inv_z)).abs()
}

/// Blurs each pixel by its own circle of confusion (a Gaussian of sigma = diameter / 4, the
/// standard deviation of a uniform disc), separably: rows, then columns. A gather with the
/// receiving pixel's sigma, which is exact on planes of constant depth and close enough on
/// the smooth scalp; sharp depth edges (head against backdrop) bleed slightly, as the
/// simulator's stand-in for partial occlusion.
fn defocus(linear: &mut [[f32; 3]], depth: &[f32], w: usize, fx_px: f64, cfg: &RenderConfig) {
    const MAX_SIGMA_PX: f64 = 24.0;
    let n = linear.len();
    if w == 0 || n == 0 {
        return;
    }
    let h = n / w;
    let focus = cfg.focus_distance_mm.unwrap_or_else(|| autofocus_mm(depth, w, h));
    let sigma: Vec<f32> = depth
        .iter()
        .map(|z| (circle_of_confusion_px(cfg.aperture_mm, fx_px, focus, f64::from(*z)) / 4.0).min(MAX_SIGMA_PX) as f32)
        .collect();
    let mut tmp = vec![[0f32; 3]; n];
    let pass = |src: &[[f32; 3]], dst: &mut [[f32; 3]], along_rows: bool| {
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let s = sigma[i];
                if s < 0.05 {
                    dst[i] = src[i];
                    continue;
                }
                let r = (3.0 * s).ceil() as isize;
                let inv = -0.5 / (s * s);
                let (mut acc, mut wsum) = ([0f32; 3], 0f32);
                for d in -r..=r {
                    let (xx, yy) = if along_rows { (x as isize + d, y as isize) } else { (x as isize, y as isize + d) };
                    if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize {
                        continue;
                    }
                    let wt = (inv * (d * d) as f32).exp();
                    let c = src[yy as usize * w + xx as usize];
                    for k in 0..3 {
                        acc[k] += wt * c[k];
                    }
                    wsum += wt;
                }
                dst[i] = acc.map(|a| a / wsum.max(1e-12));
            }
        }
    };
    pass(linear, &mut tmp, true);
    pass(&tmp, linear, false);
}

/// The autofocus distance: the centre pixel's depth, else the median of all returns, else
/// 100 mm (nothing in view: any focus will do).
fn autofocus_mm(depth: &[f32], w: usize, h: usize) -> f64 {
    let centre = depth.get((h / 2) * w + w / 2).copied().unwrap_or(f32::NAN);
    if centre.is_finite() && centre > 0.0 {
        return f64::from(centre);
    }
    let mut z: Vec<f32> = depth.iter().copied().filter(|z| z.is_finite() && *z > 0.0).collect();
    if z.is_empty() {
        return 100.0;
    }
    z.sort_by(f32::total_cmp);
    f64::from(z[z.len() / 2])
}

fn sample_normal(rng: &mut ChaCha8Rng) -> f32 {
    let v: f64 = StandardNormal.sample(rng);
    v as f32
}

/// The unit ray (camera frame) of every pixel of one camera model, row-major.
#[derive(Debug)]
pub(crate) struct RayTable {
    intrinsics: CameraIntrinsics,
    pub(crate) rays: Vec<[f32; 3]>,
}

/// Rays for `intrinsics`, computed with [`CameraIntrinsics::ray`] (which undistorts each
/// pixel by fixed-point iteration, the costliest step of a render) once per camera model
/// and shared by every tile of that camera. f32 is ample: 1e-7 rad is 0.03 µm at 300 mm.
pub(crate) fn ray_table(intrinsics: &CameraIntrinsics) -> Arc<RayTable> {
    static CACHE: OnceLock<Mutex<Vec<Arc<RayTable>>>> = OnceLock::new();
    const KEEP: usize = 4;
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    if let Ok(tables) = cache.lock() {
        if let Some(t) = tables.iter().find(|t| t.intrinsics == *intrinsics) {
            return Arc::clone(t);
        }
    }
    // Built outside the lock: two threads may both build the first table, which is harmless.
    let (w, h) = (intrinsics.width_px as usize, intrinsics.height_px as usize);
    let mut rays = Vec::with_capacity(w * h);
    // Without distortion the undistortion is the identity (bit for bit): skip its iterations.
    let pinhole = intrinsics.distortion.iter().all(|k| *k == 0.0);
    for y in 0..h {
        for x in 0..w {
            let r = if pinhole {
                let xn = (x as f64 - intrinsics.cx_px) / intrinsics.fx_px;
                let yn = (y as f64 - intrinsics.cy_px) / intrinsics.fy_px;
                Vector3::new(xn, yn, 1.0).normalize()
            } else {
                intrinsics.ray(&Point2::new(x as f64, y as f64))
            };
            rays.push([r.x as f32, r.y as f32, r.z as f32]);
        }
    }
    let table = Arc::new(RayTable { intrinsics: *intrinsics, rays });
    if let Ok(mut tables) = cache.lock() {
        if tables.len() >= KEEP {
            tables.remove(0);
        }
        tables.push(Arc::clone(&table));
    }
    table
}

/// What splatting a dot or follicle onto the image reads per pixel: the skin point the pixel
/// sees (NaN: none), its shading, and whether a head-band marker covers it.
struct Splat<'a> {
    hit: &'a [[f64; 3]],
    shade: &'a [f32],
    on_marker: &'a [bool],
    width: usize,
}

impl Splat<'_> {
    /// Blends `colour` (linear RGB, shaded) over the pixels of `bounds` (x0, x1, y0, y1,
    /// inclusive) by the opacity `alpha(pixel index, distance on the skin from centre, mm)`
    /// returns; pixels without skin, under a marker, or with no opacity are left alone.
    fn blend(
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
fn disc_coverage(d_mm: f64, r_mm: f64, w_mm: f64) -> f64 {
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
struct SoftDot {
    /// Radius of the logistic's half-height, mm.
    mid_mm: f64,
    /// Logistic scale, mm.
    scale_mm: f64,
    /// Coverage at the centre (below 1 when blur spreads a small dot).
    peak: f64,
}

impl SoftDot {
    fn new(r_mm: f64, sigma_mm: f64, footprint_mm: f64) -> Self {
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
    fn reach_mm(&self) -> f64 {
        self.mid_mm + 8.0 * self.scale_mm
    }

    fn coverage(&self, d_mm: f64) -> f64 {
        let z = (d_mm - self.mid_mm) / self.scale_mm;
        if z > 30.0 {
            0.0
        } else {
            self.peak / (1.0 + z.exp())
        }
    }
}

/// Per-view noise seed: the config seed mixed with the label (FNV-1a, stable across builds).
fn view_seed(seed: u64, label: &str) -> u64 {
    let mut hsh: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        hsh ^= u64::from(b);
        hsh = hsh.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hsh ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn srgb_to_linear(v: u8) -> f32 {
    let c = f32::from(v) / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

pub(crate) fn srgb_to_linear3(c: [u8; 3]) -> [f32; 3] {
    c.map(srgb_to_linear)
}

const LUT_SIZE: usize = 4096;

/// Linear [0, 1] -> sRGB [0, 255] (not rounded, so noise is added before quantising).
fn srgb_encode_lut() -> Vec<f32> {
    (0..LUT_SIZE)
        .map(|i| {
            let l = i as f32 / (LUT_SIZE - 1) as f32;
            let s = if l <= 0.003_130_8 { 12.92 * l } else { 1.055 * l.powf(1.0 / 2.4) - 0.055 };
            s * 255.0
        })
        .collect()
}

fn encode(lut: &[f32], linear: f32) -> f32 {
    let idx = (linear.clamp(0.0, 1.0) * (LUT_SIZE - 1) as f32 + 0.5) as usize;
    lut[idx.min(LUT_SIZE - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::{up_direction_head, PatientSpec, DEFAULT_PATIENT_TOML};
    use smp_core::map::RegionKind;
    use std::sync::OnceLock;

    fn patient() -> &'static SyntheticPatient {
        static P: OnceLock<SyntheticPatient> = OnceLock::new();
        P.get_or_init(|| {
            SyntheticPatient::generate(&PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient"))
        })
    }

    fn luma(img: &RgbImage, x: i64, y: i64) -> f64 {
        let [r, g, b] = img.get(x as u32, y as u32);
        0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64
    }

    /// The machine position of [`crown_tile`].
    fn crown_machine(rig: &Rig, bfh: &Isometry3<f64>) -> [f64; 3] {
        let p = patient();
        let up = up_direction_head(bfh);
        let centre = p
            .truth_follicles()
            .iter()
            .find(|f| {
                Vector3::from(f.normal_head).dot(&up) > 15f64.to_radians().cos()
                    && p.region_at_head(&Point3::from(f.position_head_mm)) == RegionKind::Thinning
            })
            .expect("a thinning follicle faces up");
        let target = bfh * Point3::from(centre.position_head_mm);
        rig.machine_for_camera_over_xyz([target.x, target.y, target.z])
    }

    /// A tile over the up-facing crown centred on a thinning-area follicle.
    fn crown_tile(cfg: &RenderConfig) -> (CameraView, Isometry3<f64>) {
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let machine = crown_machine(&rig, &bfh);
        (render_flange_view(patient(), &rig, &bfh, machine, "crown", cfg), bfh)
    }

    #[test]
    fn truth_follicles_are_darker_than_the_skin_around_them() {
        let (view, bfh) = crown_tile(&RenderConfig::default());
        let p = patient();
        let camera_from_head = view.base_from_camera.inverse() * bfh;
        let (w, h) = (view.intrinsics.width_px as f64, view.intrinsics.height_px as f64);
        let mut checked = 0;
        for f in p.truth_follicles() {
            let Some(px) = view.intrinsics.project(&(camera_from_head * Point3::from(f.position_head_mm))) else {
                continue;
            };
            if px.x < 30.0 || px.y < 30.0 || px.x > w - 31.0 || px.y > h - 31.0 {
                continue;
            }
            let (cx, cy) = (px.x.round() as i64, px.y.round() as i64);
            let centre = luma(&view.image, cx, cy);
            // Skin 0.9 mm away (about 22 px), median of a ring so a neighbour does not count.
            let mut ring: Vec<f64> = (0..16)
                .map(|k| {
                    let a = k as f64 * std::f64::consts::PI / 8.0;
                    luma(&view.image, cx + (22.0 * a.cos()).round() as i64, cy + (22.0 * a.sin()).round() as i64)
                })
                .collect();
            ring.sort_by(f64::total_cmp);
            let skin = ring[8];
            assert!(centre < skin - 0.4 * f.darkness * skin, "follicle at {px:?}: luma {centre} vs skin {skin}");
            checked += 1;
        }
        assert!(checked >= 3, "only {checked} follicles in the tile");
    }

    fn followup() -> &'static SyntheticPatient {
        static P: OnceLock<SyntheticPatient> = OnceLock::new();
        P.get_or_init(|| {
            let text = include_str!("../../../sim/patients/followup-s2.toml");
            SyntheticPatient::generate(&PatientSpec::from_toml_str(text).expect("follow-up patient"))
        })
    }

    /// Per-channel absorbance `1 - pixel / skin` (linear light) at a truth position: the
    /// centre 3x3 pixels against the median of a ring 0.6-0.8 mm out.
    fn absorbance(view: &CameraView, px: Point2<f64>) -> [f64; 3] {
        let lin = |v: u8| f64::from(srgb_to_linear(v));
        let (cx, cy) = (px.x.round() as i64, px.y.round() as i64);
        let mut centre = [0.0; 3];
        for dy in -1..=1 {
            for dx in -1..=1 {
                let c = view.image.get((cx + dx) as u32, (cy + dy) as u32);
                for k in 0..3 {
                    centre[k] += lin(c[k]) / 9.0;
                }
            }
        }
        let mut ring: [Vec<f64>; 3] = Default::default();
        for k in 0..32 {
            let a = k as f64 * std::f64::consts::PI / 16.0;
            for rad in [16.0, 20.0] {
                let c = view
                    .image
                    .get((cx + (rad * a.cos()).round() as i64) as u32, (cy + (rad * a.sin()).round() as i64) as u32);
                for ch in 0..3 {
                    ring[ch].push(lin(c[ch]));
                }
            }
        }
        [0, 1, 2].map(|k| {
            ring[k].sort_by(f64::total_cmp);
            1.0 - centre[k] / ring[k][ring[k].len() / 2]
        })
    }

    #[test]
    fn prior_dots_render_lighter_and_bluer_than_follicles() {
        let p = followup();
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let up = up_direction_head(&bfh);
        let dot = p
            .truth_prior_dots()
            .iter()
            .find(|d| Vector3::from(d.position_head_mm).normalize().dot(&up) > 10f64.to_radians().cos())
            .expect("a prior dot faces up");
        let target = bfh * Point3::from(dot.position_head_mm);
        let machine = rig.machine_for_camera_over_xyz([target.x, target.y, target.z]);
        let cfg = RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let view = render_flange_view(p, &rig, &bfh, machine, "followup", &cfg);
        let camera_from_head = view.base_from_camera.inverse() * bfh;
        let (w, h) = (view.intrinsics.width_px as f64, view.intrinsics.height_px as f64);
        let inside = |q: [f64; 3]| {
            view.intrinsics
                .project(&(camera_from_head * Point3::from(q)))
                .filter(|px| px.x > 30.0 && px.y > 30.0 && px.x < w - 31.0 && px.y < h - 31.0)
        };
        // Neighbours within 1 mm would stain the ring: only isolated items count.
        let all: Vec<[f64; 3]> = p.truth_follicles_head().iter().chain(p.truth_prior_dots_head()).copied().collect();
        let grid = smp_core::spatial::PointGrid::from_points(1.0, all.iter().copied());
        let isolated = |q: [f64; 3]| {
            let mut n = 0;
            grid.for_each_within(q, 1.0, |_, _| n += 1);
            n == 1
        };
        let mut dots = Vec::new();
        for d in p.truth_prior_dots() {
            if let Some(px) = inside(d.position_head_mm).filter(|_| isolated(d.position_head_mm)) {
                dots.push((absorbance(&view, px), d));
            }
        }
        let mut follicles = Vec::new();
        for f in p.truth_follicles() {
            if let Some(px) = inside(f.position_head_mm).filter(|_| isolated(f.position_head_mm)) {
                follicles.push(absorbance(&view, px));
            }
        }
        assert!(dots.len() >= 20 && follicles.len() >= 3, "{} dots, {} follicles", dots.len(), follicles.len());
        for (a, d) in &dots {
            // Darker than the skin, by about its darkness in red; lighter than a follicle.
            assert!(a[0] > 0.5 * d.darkness && a[0] < 0.8, "dot {d:?}: absorbance {a:?}");
            // Blue-grey: absorbs much less blue than red, relative to the skin.
            assert!(a[2] < 0.85 * a[0], "dot {d:?}: absorbance {a:?}");
        }
        for a in &follicles {
            assert!(a[0] > 0.7, "follicle absorbance {a:?}");
            assert!(a[2] > 0.9 * a[0], "follicle absorbance {a:?}");
        }
    }

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

    #[test]
    fn depth_at_the_centre_is_the_ray_distance() {
        let exact = RenderConfig { depth_noise_sigma_mm: 0.0, noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let (view, bfh) = crown_tile(&exact);
        let (u, v) = (view.intrinsics.cx_px.round(), view.intrinsics.cy_px.round());
        let ray = view.intrinsics.ray(&Point2::new(u, v));
        let head_from_camera = bfh.inverse() * view.base_from_camera;
        let o = Point3::from(head_from_camera.translation.vector);
        let t = patient().ellipsoid().intersect_ray(&o, &(head_from_camera.rotation * ray)).expect("hits");
        let depth = view.depth.as_ref().expect("depth frame");
        let z = depth.z_mm[v as usize * depth.width as usize + u as usize] as f64;
        assert!((z - t * ray.z).abs() < 1e-3, "depth {z} vs {}", t * ray.z);
        // The camera is over the skin at its stand-off.
        let rig = Rig::default_sim();
        assert!((z - rig.flange_camera.standoff_mm).abs() < 3.0, "depth {z}");

        // With noise, still within a few sigma, and noisy (not constant).
        let (noisy, _) = crown_tile(&RenderConfig::default());
        let d = noisy.depth.as_ref().expect("depth frame");
        let zn = d.z_mm[v as usize * d.width as usize + u as usize] as f64;
        assert!((zn - z).abs() < 0.2, "noisy depth {zn} vs {z}");
        assert_ne!(d.z_mm, depth.z_mm);
    }

    #[test]
    fn rendering_is_deterministic_and_label_seeded() {
        let (a, _) = crown_tile(&RenderConfig::default());
        let (b, _) = crown_tile(&RenderConfig::default());
        assert_eq!(a.image, b.image);
        assert_eq!(
            a.depth.as_ref().map(|d| d.z_mm.iter().map(|z| z.to_bits()).collect::<Vec<_>>()),
            b.depth.as_ref().map(|d| d.z_mm.iter().map(|z| z.to_bits()).collect::<Vec<_>>())
        );
        let (c, _) = crown_tile(&RenderConfig { seed: 7, ..RenderConfig::default() });
        assert_ne!(a.image, c.image, "noise follows the seed");
    }

    #[test]
    fn overview_shows_head_on_a_dark_backdrop() {
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let cfg = RenderConfig::default();
        let view = render_overview(patient(), &rig, &bfh, &cfg);
        let d = view.depth.as_ref().expect("depth");
        let (w, h) = (view.image.width, view.image.height);
        for (x, y) in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)] {
            assert!(d.z_mm[(y * w + x) as usize].is_nan(), "corner {x},{y} has depth");
            let [r, g, b] = view.image.get(x, y);
            assert!(r < 60 && g < 60 && b < 60, "corner {x},{y} is {r},{g},{b}");
        }
        // The head centre is in view, skin-coloured (red over blue), and at a plausible range.
        let c = bfh * Point3::from(up_direction_head(&bfh) * 90.0);
        let px = view.intrinsics.project(&(view.base_from_camera.inverse() * c)).expect("in front");
        let i = px.y.round() as usize * w as usize + px.x.round() as usize;
        assert!(d.z_mm[i].is_finite() && d.z_mm[i] > 200.0 && d.z_mm[i] < 350.0, "{}", d.z_mm[i]);
        let [r, _, b] = view.image.get(px.x.round() as u32, px.y.round() as u32);
        assert!(r as i32 > b as i32 + 30, "skin {r} vs {b}");
    }

    #[test]
    fn hair_darkens_the_overview_photo() {
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let cfg = RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let mut full = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient");
        full.crown.thinning_radii_mm = [0.0, 0.0];
        full.crown.bald_radii_mm = [0.0, 0.0];
        full.hairline.front_recession_deg = 0.0;
        full.hairline.temple_recession_deg = 0.0;
        full.scars.clear();
        let mut bare = full.clone();
        bare.follicles.hair_per_cm2 = 0.0;
        bare.follicles.thinning_per_cm2 = 0.0;
        let hairy = render_overview(&SyntheticPatient::generate(&full), &rig, &bfh, &cfg);
        let bald = render_overview(&SyntheticPatient::generate(&bare), &rig, &bfh, &cfg);
        let mean = |v: &CameraView| {
            let g = v.image.to_gray();
            let (mut s, mut n) = (0.0, 0usize);
            for (i, z) in v.depth.as_ref().expect("depth").z_mm.iter().enumerate() {
                if z.is_finite() {
                    s += g.data[i] as f64;
                    n += 1;
                }
            }
            s / n.max(1) as f64
        };
        let (mh, mb) = (mean(&hairy), mean(&bald));
        assert!(mh < 0.96 * mb, "hair {mh} vs bare {mb}");
    }

    #[test]
    fn a_camera_that_misses_the_head_sees_only_backdrop() {
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let machine = rig.machine_for_camera_over_xyz([30.0, 150.0, 100.0]);
        let cfg = RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let view = render_flange_view(patient(), &rig, &bfh, machine, "miss", &cfg);
        assert!(view.depth.as_ref().expect("depth").z_mm.iter().all(|z| z.is_nan()));
        assert!(view.image.data.chunks_exact(3).all(|p| p == cfg.background_srgb));
    }

    #[test]
    fn a_window_renders_the_same_pixels_and_only_those() {
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let p = SyntheticPatient::generate(&PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).unwrap());
        let cfg = RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let full = render_overview(&p, &rig, &bfh, &cfg);
        let (w, h) = (full.image.width, full.image.height);
        let win = [w / 4, h / 3, w / 2, h / 2];
        let part = render_overview(&p, &rig, &bfh, &RenderConfig { window_px: Some(win), ..cfg.clone() });
        let bg = cfg.background_srgb;
        let (mut same, mut differs) = (0usize, 0usize);
        for y in 0..h {
            for x in 0..w {
                let i = 3 * (y * w + x) as usize;
                let (a, b) = (&full.image.data[i..i + 3], &part.image.data[i..i + 3]);
                let inside = x >= win[0] + 3 && x + 3 < win[2] && y >= win[1] + 3 && y + 3 < win[3];
                let outside = x + 3 < win[0] || x >= win[2] + 3 || y + 3 < win[1] || y >= win[3] + 3;
                if inside {
                    if a == b {
                        same += 1
                    } else {
                        differs += 1
                    }
                } else if outside {
                    assert_eq!(b, &bg[..], "pixel ({x}, {y}) outside the window is backdrop");
                }
            }
        }
        // Inside (away from the window's edge, where blur and splats reach across) every
        // pixel is rendered exactly as in the full image.
        assert!(same > 1000 && differs == 0, "{same} same, {differs} differ");
    }

    #[test]
    fn ray_table_matches_the_core_camera_model() {
        let rig = Rig::default_sim();
        for intr in [rig.flange_camera.intrinsics, rig.overview_camera.intrinsics] {
            let table = ray_table(&intr);
            let (w, h) = (intr.width_px as usize, intr.height_px as usize);
            assert_eq!(table.rays.len(), w * h);
            for (x, y) in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (w / 2, h / 2), (123, 77)] {
                let r = intr.ray(&Point2::new(x as f64, y as f64));
                let q = table.rays[y * w + x];
                let err = (r - Vector3::new(f64::from(q[0]), f64::from(q[1]), f64::from(q[2]))).norm();
                assert!(err < 1e-6, "pixel {x},{y}: {err}");
            }
            assert!(Arc::ptr_eq(&table, &ray_table(&intr)), "cached");
        }
    }

    fn mean_skin_grey(v: &CameraView) -> f64 {
        let g = v.image.to_gray();
        let d = v.depth.as_ref().expect("depth");
        let (mut s, mut n) = (0.0, 0usize);
        for (i, z) in d.z_mm.iter().enumerate() {
            if z.is_finite() {
                s += f64::from(g.data[i]);
                n += 1;
            }
        }
        s / n.max(1) as f64
    }

    /// Mean absolute difference between horizontal neighbours: falls as an image blurs.
    fn sharpness(img: &RgbImage) -> f64 {
        let g = img.to_gray();
        let w = g.width as usize;
        let mut s = 0.0;
        for row in g.data.chunks_exact(w) {
            for p in row.windows(2) {
                s += (f64::from(p[0]) - f64::from(p[1])).abs();
            }
        }
        s / g.data.len() as f64
    }

    #[test]
    fn rendered_rays_follow_the_intrinsics_projection() {
        // Every pixel's ray, projected back through CameraIntrinsics::project (distortion
        // included), lands on that pixel: the render samples the world exactly where the
        // camera model says each pixel looks.
        let rig = Rig::default_sim();
        let mut strong = rig.flange_camera.intrinsics;
        strong.distortion = [-0.3, 0.15, 0.002, -0.001, -0.02];
        for intr in [rig.flange_camera.intrinsics, strong] {
            let table = ray_table(&intr);
            let w = intr.width_px as usize;
            let mut worst: f64 = 0.0;
            for (i, r) in table.rays.iter().enumerate().step_by(37) {
                let p = Point3::new(f64::from(r[0]), f64::from(r[1]), f64::from(r[2])) * 80.0;
                let px = intr.project(&p).expect("in front");
                worst = worst.max((px.x - (i % w) as f64).abs().max((px.y - (i / w) as f64).abs()));
            }
            assert!(worst < 0.05, "{:?}: worst {worst} px", intr.distortion);
        }
    }

    #[test]
    fn exposure_brightens_monotonically_and_clips() {
        let base = RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let mut last = 0.0;
        for gain in [0.5, 1.0, 1.5, 3.0] {
            let (v, _) = crown_tile(&RenderConfig { exposure_gain: gain, ..base.clone() });
            let m = mean_skin_grey(&v);
            assert!(m > last, "gain {gain}: {m} after {last}");
            last = m;
        }
        let (v, _) = crown_tile(&RenderConfig { exposure_gain: 50.0, ..base.clone() });
        assert!(mean_skin_grey(&v) > 250.0, "saturates");
        // The default exposure is the image vision was tuned on.
        let (a, _) = crown_tile(&base);
        let (b, _) = crown_tile(&RenderConfig { exposure_gain: 1.0, full_well_electrons: 0.0, ..base.clone() });
        assert_eq!(a.image, b.image);
    }

    #[test]
    fn shot_noise_grows_with_signal_and_replays_by_seed() {
        let quiet = RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let shot = RenderConfig { full_well_electrons: 2000.0, ..quiet.clone() };
        let (clean, _) = crown_tile(&quiet);
        let (noisy, _) = crown_tile(&shot);
        let (again, _) = crown_tile(&shot);
        let (other, _) = crown_tile(&RenderConfig { seed: 9, ..shot.clone() });
        assert_eq!(noisy.image, again.image);
        assert_ne!(noisy.image, other.image);
        let rms = |a: &RgbImage, b: &RgbImage| {
            let s: f64 = a.data.iter().zip(&b.data).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum();
            (s / a.data.len() as f64).sqrt()
        };
        let weak = rms(&clean.image, &noisy.image);
        assert!(weak > 0.5, "shot noise visible: {weak}");
        let (fewer, _) = crown_tile(&RenderConfig { full_well_electrons: 500.0, ..quiet.clone() });
        assert!(rms(&clean.image, &fewer.image) > 1.5 * weak, "a smaller well is noisier");
    }

    #[test]
    fn a_ring_light_shades_by_the_angle_to_the_camera() {
        let cfg = RenderConfig { ring_light_radius_mm: 20.0, ..RenderConfig::default() };
        let lamps = cfg.lamps_in_camera_mm();
        assert_eq!(lamps.len(), RING_LAMPS);
        // A surface 80 mm in front of the camera, turned ever further from it.
        let q = Point3::new(0.0, 0.0, 80.0);
        let mut last = f64::INFINITY;
        for tilt_deg in [0.0f64, 20.0, 40.0, 60.0, 80.0] {
            let t = tilt_deg.to_radians();
            let n = Vector3::new(t.sin(), 0.0, -t.cos());
            let l = lambert(&n, &q, &lamps);
            assert!(l < last, "tilt {tilt_deg}: {l}");
            if tilt_deg <= 40.0 {
                // Light from (nearly) the camera: Lambert in the view angle, within the
                // ring's spread (atan(20 / 80) = 14 degrees).
                assert!((l - t.cos()).abs() < 0.05, "tilt {tilt_deg}: {l} vs {}", t.cos());
            }
            last = l;
        }
        // Symmetric: tilting left or right is the same under a ring, not under a side lamp.
        let (nl, nr) = (Vector3::new(0.5f64, 0.0, -0.75f64.sqrt()), Vector3::new(-0.5f64, 0.0, -0.75f64.sqrt()));
        assert!((lambert(&nl, &q, &lamps) - lambert(&nr, &q, &lamps)).abs() < 1e-9);
        let side = RenderConfig::default().lamps_in_camera_mm();
        assert!((lambert(&nl, &q, &side) - lambert(&nr, &q, &side)).abs() > 0.05);
        // Renders, and changes the image.
        let (a, _) = crown_tile(&RenderConfig { noise_sigma_levels: 0.0, ..cfg.clone() });
        let (b, _) = crown_tile(&RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() });
        assert_ne!(a.image, b.image);
    }

    #[test]
    fn defocus_grows_with_distance_from_the_focus_plane() {
        // Thin lens: zero at focus, growing either side, proportional to the aperture.
        assert_eq!(circle_of_confusion_px(2.0, 2000.0, 80.0, 80.0), 0.0);
        let near = circle_of_confusion_px(2.0, 2000.0, 80.0, 70.0);
        let far = circle_of_confusion_px(2.0, 2000.0, 80.0, 95.0);
        assert!(near > 0.0 && far > 0.0 && circle_of_confusion_px(2.0, 2000.0, 80.0, 100.0) > far);
        assert!((circle_of_confusion_px(4.0, 2000.0, 80.0, 95.0) - 2.0 * far).abs() < 1e-12);
        assert!((far - 2.0 * 2000.0 * (1.0 / 80.0 - 1.0 / 95.0)).abs() < 1e-12);

        let quiet = RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let (sharp, _) = crown_tile(&quiet);
        let (in_focus, _) = crown_tile(&RenderConfig { aperture_mm: 2.0, ..quiet.clone() });
        let s0 = sharpness(&sharp.image);
        let s1 = sharpness(&in_focus.image);
        assert!(s1 > 0.8 * s0, "autofocused: {s1} vs pinhole {s0}");
        let mut last = s1;
        for focus in [70.0, 60.0, 45.0] {
            let (v, _) =
                crown_tile(&RenderConfig { aperture_mm: 2.0, focus_distance_mm: Some(focus), ..quiet.clone() });
            let s = sharpness(&v.image);
            assert!(s < last, "focus {focus}: {s} after {last}");
            last = s;
        }
        let (a, _) =
            crown_tile(&RenderConfig { aperture_mm: 2.0, focus_distance_mm: Some(60.0), ..RenderConfig::default() });
        let (b, _) =
            crown_tile(&RenderConfig { aperture_mm: 2.0, focus_distance_mm: Some(60.0), ..RenderConfig::default() });
        assert_eq!(a.image, b.image, "deterministic");
    }

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

    /// CPU time of this thread (ns), so timings mean something on a loaded machine.
    fn thread_cpu_s() -> f64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
            .map_or(f64::NAN, |ns| ns * 1e-9)
    }

    /// Timing, run by hand: `cargo test -p smp-sim --release --lib -- --ignored --nocapture render_timing`.
    #[test]
    #[ignore]
    fn render_timing() {
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient");
        let (t, c) = (std::time::Instant::now(), thread_cpu_s());
        let p = SyntheticPatient::generate(&spec);
        println!(
            "generate: {:.3} s wall, {:.3} s cpu, {} follicles",
            t.elapsed().as_secs_f64(),
            thread_cpu_s() - c,
            p.truth_follicles().len()
        );
        let intr = rig.flange_camera.intrinsics;
        let c = thread_cpu_s();
        let mut acc = 0.0;
        for y in 0..600 {
            for x in 0..800 {
                acc += intr.ray(&Point2::new(x as f64, y as f64)).x;
            }
        }
        println!("480k rays: {:.3} s cpu ({acc})", thread_cpu_s() - c);
        let c = thread_cpu_s();
        let q0 = p.ellipsoid().point_in_direction(&up_direction_head(&bfh));
        for k in 0..480_000 {
            let q = Point3::new(q0.x + (k % 800) as f64 * 0.04, q0.y + (k / 800) as f64 * 0.04, q0.z);
            acc += p.sample_surface(&q).density_per_mm2;
        }
        println!("480k samples: {:.3} s cpu ({acc})", thread_cpu_s() - c);
        let c = thread_cpu_s();
        for k in 0..480_000 {
            let q = Point3::new(q0.x + (k % 800) as f64 * 0.04, q0.y + (k / 800) as f64 * 0.04, q0.z);
            acc += p.mottle(&q);
        }
        println!("480k mottles: {:.3} s cpu ({acc})", thread_cpu_s() - c);
        let c = thread_cpu_s();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..(4 * 480_000) {
            acc += sample_normal(&mut rng) as f64;
        }
        println!("1.9M normals: {:.3} s cpu ({acc})", thread_cpu_s() - c);
        let cfg = RenderConfig::default();
        let (_, _) = crown_tile(&cfg);
        let (t, c) = (std::time::Instant::now(), thread_cpu_s());
        let reps = 5;
        for _ in 0..reps {
            let (v, _) = crown_tile(&cfg);
            std::hint::black_box(v);
        }
        println!(
            "flange tile: {:.3} s wall, {:.3} s cpu",
            t.elapsed().as_secs_f64() / reps as f64,
            (thread_cpu_s() - c) / reps as f64
        );
        let (t, c) = (std::time::Instant::now(), thread_cpu_s());
        let v = render_overview(&p, &rig, &bfh, &cfg);
        std::hint::black_box(v);
        println!("overview: {:.3} s wall, {:.3} s cpu", t.elapsed().as_secs_f64(), thread_cpu_s() - c);
        // The same views of the follow-up patient (the default plus ~1000 healed dots).
        let f = followup();
        let (t, c) = (std::time::Instant::now(), thread_cpu_s());
        for _ in 0..reps {
            std::hint::black_box(render_flange_view(f, &rig, &bfh, crown_machine(&rig, &bfh), "crown", &cfg));
        }
        println!(
            "follow-up flange tile ({} prior dots): {:.3} s wall, {:.3} s cpu",
            f.truth_prior_dots().len(),
            t.elapsed().as_secs_f64() / reps as f64,
            (thread_cpu_s() - c) / reps as f64
        );
        let (t, c) = (std::time::Instant::now(), thread_cpu_s());
        std::hint::black_box(render_overview(f, &rig, &bfh, &cfg));
        println!("follow-up overview: {:.3} s wall, {:.3} s cpu", t.elapsed().as_secs_f64(), thread_cpu_s() - c);
        let up = up_direction_head(&bfh);
        for tilt in [25.0, 30.0, 35.0, 40.0] {
            println!("areas within {tilt}° (cm²): {:?}", p.region_areas_cm2(&up, tilt));
        }
        println!("areas whole head (cm²): {:?}", p.region_areas_cm2(&up, 180.0));
        let mut up_facing = std::collections::BTreeMap::new();
        for f in p.truth_follicles() {
            if Vector3::from(f.normal_head).dot(&up) >= 25f64.to_radians().cos() {
                *up_facing.entry(p.region_at_head(&Point3::from(f.position_head_mm))).or_insert(0usize) += 1;
            }
        }
        println!("truth follicles within 25° tilt, by region: {up_facing:?}");
        if let Ok(dir) = std::env::var("SMP_SIM_DUMP") {
            let write_ppm = |name: &str, img: &RgbImage| {
                let mut bytes = format!("P6\n{} {}\n255\n", img.width, img.height).into_bytes();
                bytes.extend_from_slice(&img.data);
                std::fs::write(format!("{dir}/{name}.ppm"), bytes).expect("write ppm");
            };
            write_ppm("overview", &v_overview_for_dump(&p, &rig, &bfh, &cfg).image);
            let (tile, _) = crown_tile(&cfg);
            write_ppm("crown_tile", &tile.image);
            let c = bfh * Point3::from(up_direction_head(&bfh) * 92.0);
            let m = rig.machine_for_camera_over_xyz([c.x, c.y, c.z]);
            write_ppm("up_tile", &render_flange_view(&p, &rig, &bfh, m, "up", &cfg).image);
            write_ppm(
                "followup_tile",
                &render_flange_view(f, &rig, &bfh, crown_machine(&rig, &bfh), "crown", &cfg).image,
            );
            write_ppm("followup_overview", &render_overview(f, &rig, &bfh, &cfg).image);
        }
    }

    fn v_overview_for_dump(p: &SyntheticPatient, rig: &Rig, bfh: &Isometry3<f64>, cfg: &RenderConfig) -> CameraView {
        render_overview(p, rig, bfh, cfg)
    }
}

/// Tests of the head-band markers in renders and of the scar outlines.
#[cfg(test)]
mod marker_tests {
    use super::*;
    use crate::charuco::DICT_4X4_50;
    use crate::patient::{PatientSpec, DEFAULT_PATIENT_TOML};
    use nalgebra::{Rotation3, Translation3, UnitQuaternion};

    const BANDED: &str = include_str!("../../../sim/patients/norwood6-fitz4-light-brown-lab.toml");
    const STRIP: &str = include_str!("../../../sim/patients/norwood3-fitz3-brown-donor-strip.toml");

    fn grey(img: &RgbImage, p: &Point2<f64>) -> f64 {
        let [r, g, b] = img.get(p.x.round() as u32, p.y.round() as u32);
        (f64::from(r) + f64::from(g) + f64::from(b)) / 3.0
    }

    /// A flange-type camera `dist_mm` straight out from the marker, upright on its pattern.
    fn camera_facing(f: &TruthFiducial, bfh: &Isometry3<f64>, dist_mm: f64) -> Isometry3<f64> {
        let m = f.head_from_marker;
        let (x, y, z) = (m * Vector3::x(), m * Vector3::y(), m * Vector3::z());
        let rot = Rotation3::from_basis_unchecked(&[x, -y, -z]);
        let eye = Point3::from(m.translation.vector) + z * dist_mm;
        bfh * Isometry3::from_parts(Translation3::from(eye.coords), UnitQuaternion::from_rotation_matrix(&rot))
    }

    #[test]
    fn markers_are_drawn_with_their_border_and_bits() {
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let spec = PatientSpec::from_toml_str(BANDED).expect("banded patient");
        let p = SyntheticPatient::generate(&spec);
        let f = p.truth_fiducials().iter().find(|f| f.id == 10).expect("marker 10");
        let intr = rig.flange_camera.intrinsics;
        let bfc = camera_facing(f, &bfh, 150.0);
        let cfg = RenderConfig::default();
        let v = render_view(&p, &intr, &bfc, &bfh, "marker", &cfg);
        let camera_from_head = bfc.inverse() * bfh;
        let at = |u: f64, v: f64| -> Point2<f64> {
            // (u, v) across the black square, left to right and top to bottom.
            let s = f.size_mm;
            let q = f.head_from_marker * Point3::new((u - 0.5) * s, (0.5 - v) * s, 0.0);
            intr.project(&(camera_from_head * q)).expect("in front")
        };
        // Corner pixel truth agrees with the projection used here, in ArUco order.
        let truth = fiducial_corners_px(&p, &intr, &bfc, &bfh);
        let (_, corners) = truth.iter().find(|(id, _)| *id == 10).expect("marker 10 in view");
        for (c, (u, vv)) in corners.iter().zip([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]) {
            let q = at(u, vv);
            assert!((q.x - c[0]).abs() < 1e-9 && (q.y - c[1]).abs() < 1e-9);
        }
        // White label paper just outside the square, black border just inside each corner.
        let white = grey(&v.image, &at(-0.08, 0.5));
        for (u, vv) in [(0.04, 0.04), (0.96, 0.04), (0.96, 0.96), (0.04, 0.96)] {
            let g = grey(&v.image, &at(u, vv));
            assert!(g < 0.3 * white, "corner region ({u}, {vv}): {g} vs paper {white}");
        }
        // Every bit cell's centre matches DICT_4X4_50 (the centre cells included).
        let bits = DICT_4X4_50[10];
        for cy in 0..4 {
            for cx in 0..4 {
                let g = grey(&v.image, &at((cx as f64 + 1.5) / 6.0, (cy as f64 + 1.5) / 6.0));
                let is_white = (bits >> (15 - (cy * 4 + cx))) & 1 == 1;
                assert_eq!(g > 0.5 * white, is_white, "cell ({cx}, {cy}): {g} vs paper {white}");
            }
        }
        // The back marker (id 11) faces away from this camera: no pixel truth for it.
        assert!(truth.iter().all(|(id, _)| *id != 11));
    }

    #[test]
    fn markers_change_only_their_own_pixels() {
        // The same patient without its band renders identically outside the labels: a patient
        // without fiducials goes through exactly the code path it went through before.
        let rig = Rig::default_sim();
        let bfh = rig.base_from_head_nominal();
        let spec = PatientSpec::from_toml_str(BANDED).expect("banded patient");
        let with = SyntheticPatient::generate(&spec);
        let without = SyntheticPatient::generate(&PatientSpec { fiducials: Vec::new(), ..spec.clone() });
        assert_eq!(with.truth_follicles(), without.truth_follicles());
        let f = with.truth_fiducials().iter().find(|f| f.id == 10).expect("marker 10");
        let intr = rig.flange_camera.intrinsics;
        let bfc = camera_facing(f, &bfh, 150.0);
        let cfg = RenderConfig::default();
        let a = render_view(&with, &intr, &bfc, &bfh, "band", &cfg);
        let b = render_view(&without, &intr, &bfc, &bfh, "band", &cfg);
        // Label outline in pixels (the square plus its white margin), with a pixel of slack.
        let camera_from_head = bfc.inverse() * bfh;
        let hl = 0.5 * f.size_mm * (1.0 + 2.0 * LABEL_MARGIN_CELLS / 6.0);
        let px: Vec<Point2<f64>> = [(-hl, -hl), (hl, -hl), (hl, hl), (-hl, hl)]
            .iter()
            .map(|&(x, y)| {
                intr.project(&(camera_from_head * (f.head_from_marker * Point3::new(x, y, 0.0)))).expect("front")
            })
            .collect();
        let (x0, x1) = px.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
        let (y0, y1) = px.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.y), b.max(p.y)));
        let w = intr.width_px as usize;
        let (mut inside_diff, mut outside_diff) = (0usize, 0usize);
        for (i, (pa, pb)) in a.image.data.chunks_exact(3).zip(b.image.data.chunks_exact(3)).enumerate() {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            let inside = x >= x0 - 1.0 && x <= x1 + 1.0 && y >= y0 - 1.0 && y <= y1 + 1.0;
            if pa != pb {
                if inside {
                    inside_diff += 1;
                } else {
                    outside_diff += 1;
                }
            }
        }
        assert_eq!(outside_diff, 0, "pixels changed outside the label");
        assert!(inside_diff > 10_000, "the label is drawn: {inside_diff} pixels");
        // The default patient has no band: its overview matches the band-less code path.
        let d = SyntheticPatient::generate(&PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default"));
        assert!(d.truth_fiducials().is_empty());
        assert!(fiducial_corners_px(&d, &intr, &bfc, &bfh).is_empty());
    }

    #[test]
    fn scar_outlines_lie_on_the_scar_edges() {
        for text in [DEFAULT_PATIENT_TOML, STRIP] {
            let p = SyntheticPatient::generate(&PatientSpec::from_toml_str(text).expect("patient"));
            let outlines = scar_outlines_head_mm(&p, 0.5);
            assert_eq!(outlines.len(), p.spec().scars.len());
            assert!(!outlines.is_empty(), "both patients have a scar");
            for (k, ring) in outlines.iter().enumerate() {
                assert!(ring.len() >= 8, "scar {k}: {} points", ring.len());
                let mut worst: f64 = 0.0;
                for q in ring {
                    let q = Point3::from(*q);
                    assert!(p.ellipsoid().implicit(&q).abs() < 1e-6, "on the skin");
                    worst = worst.max(p.sample_surface(&q).scar_sd_mm.abs());
                }
                // Within a few % of the scar's size: the patient model measures in tangent-plane
                // chords, the outline is drawn in the tangent plane and pressed onto the head.
                assert!(worst < 0.35, "scar {k}: edge off by {worst} mm");
                // Consecutive points about step_mm apart (closed loop).
                for w in ring.windows(2) {
                    let d = (Vector3::from(w[0]) - Vector3::from(w[1])).norm();
                    assert!(d < 1.5, "scar {k}: gap {d} mm");
                }
            }
        }
    }
}

//! The ray caster: for every pixel of a camera, the skin or head-band label it sees, shaded
//! and coloured by the patient's regions, scars and mottling; then the earlier SMP dots and
//! the follicles splatted on top; then optics and sensor ([`super::develop()`]).

use nalgebra::{Isometry3, Point3, Vector2, Vector3};
use smp_core::camera::CameraIntrinsics;
use smp_core::image::{CameraView, DepthImage, RgbImage};
use smp_core::rig::Rig;

use super::config::{lambert, RenderConfig};
use super::develop::{develop, srgb_to_linear3};
use super::markers::{nearest_marker, MarkerPlane};
use super::rays::ray_table;
use super::splat::{disc_coverage, SoftDot, Splat};
use crate::charuco::{white_fraction_of, PAPER_WHITE, TONER_BLACK};
use crate::patient::{inside_weight, SyntheticPatient};

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

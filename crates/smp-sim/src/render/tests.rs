//! Renders of the default and follow-up patients: follicles, prior dots, depth, overview,
//! windows, exposure, noise, lighting, defocus, and a timing run by hand.

use std::sync::OnceLock;

use nalgebra::{Isometry3, Point2, Point3, Vector3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smp_core::image::{CameraView, RgbImage};
use smp_core::map::RegionKind;
use smp_core::rig::Rig;

use super::config::RING_LAMPS;
use super::develop::{sample_normal, srgb_to_linear};
use super::*;
use crate::patient::{up_direction_head, PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};

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
        let text = include_str!("../../../../sim/patients/followup-s2.toml");
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
        let (v, _) = crown_tile(&RenderConfig { aperture_mm: 2.0, focus_distance_mm: Some(focus), ..quiet.clone() });
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
        write_ppm("followup_tile", &render_flange_view(f, &rig, &bfh, crown_machine(&rig, &bfh), "crown", &cfg).image);
        write_ppm("followup_overview", &render_overview(f, &rig, &bfh, &cfg).image);
    }
}

fn v_overview_for_dump(p: &SyntheticPatient, rig: &Rig, bfh: &Isometry3<f64>, cfg: &RenderConfig) -> CameraView {
    render_overview(p, rig, bfh, cfg)
}

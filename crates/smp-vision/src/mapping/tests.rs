//! Tests of the map builder on rendered synthetic tiles: placement, deduplication, regions,
//! densities, the local skin fit and the second detection pass.

use super::local_skin::local_skin_fit;
use super::regions::{best_view_deg, cell_skin_area_cm2};
use super::tile::merge_detections;
use super::*;
use crate::follicles::DotDetections;
use nalgebra::{Translation3, UnitQuaternion};
use smp_core::camera::CameraIntrinsics;
use smp_core::image::{DepthImage, RgbImage};

const SKIN: [f64; 3] = [222.0, 178.0, 152.0];
const SCAR: [f64; 3] = [238.0, 200.0, 192.0];
const DOT: [f64; 3] = [42.0, 34.0, 32.0];
const DOT_R_MM: f64 = 0.15;
const DARKNESS: f64 = 0.8;

fn intrinsics() -> CameraIntrinsics {
    CameraIntrinsics {
        width_px: 800,
        height_px: 600,
        fx_px: 2000.0,
        fy_px: 2000.0,
        cx_px: 400.0,
        cy_px: 300.0,
        distortion: [-0.05, 0.01, 0.0, 0.0, 0.0],
    }
}

fn base_from_head() -> Isometry3<f64> {
    Isometry3::from_parts(Translation3::new(250.0, 10.0, 150.0), UnitQuaternion::identity())
}

/// Flat skin (head z = 0) with three bands along head x: hair (x < -10, ~70/cm²),
/// thinning (-10..10, ~17/cm²), bald (> 10) with a scar strip at 16..22.
struct Scene {
    dots: Vec<[f64; 2]>,
}

impl Scene {
    fn new() -> Self {
        let mut dots = Vec::new();
        let mut k = 12_345u32;
        let mut jitter = || {
            k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((k >> 8) % 1000) as f64 / 1000.0 - 0.5
        };
        let mut y: f64 = -14.0;
        while y < 14.0 {
            let mut x = -32.0;
            while x < 10.0 {
                let (step, band) = if x < -10.0 { (1.2, true) } else { (2.4, false) };
                let (jx, jy) = (jitter() * 0.3 * step, jitter() * 0.3 * step);
                if band || ((y + 14.0) / 1.2).round() as i64 % 2 == 0 {
                    dots.push([x + jx, y + jy]);
                }
                x += step;
            }
            y += 1.2;
        }
        Scene { dots }
    }

    /// Dense 0.5 mm buckets of dot indices over the scene (x, y in -40..40).
    fn buckets(&self) -> Vec<Vec<usize>> {
        let mut b = vec![Vec::new(); 160 * 160];
        for (i, d) in self.dots.iter().enumerate() {
            let (bx, by) = (((d[0] + 40.0) * 2.0) as usize, ((d[1] + 40.0) * 2.0) as usize);
            b[by.min(159) * 160 + bx.min(159)].push(i);
        }
        b
    }

    fn colour_at(&self, buckets: &[Vec<usize>], x: f64, y: f64) -> [f64; 3] {
        let mut c = if (16.0..22.0).contains(&x) { SCAR } else { SKIN };
        let (bx, by) = (((x + 40.0) * 2.0) as i64, ((y + 40.0) * 2.0) as i64);
        for j in (by - 1).max(0)..=(by + 1).min(159) {
            for i in (bx - 1).max(0)..=(bx + 1).min(159) {
                for &k in &buckets[j as usize * 160 + i as usize] {
                    let d = self.dots[k];
                    if (d[0] - x).hypot(d[1] - y) < DOT_R_MM {
                        for ch in 0..3 {
                            c[ch] += (DOT[ch] - c[ch]) * DARKNESS;
                        }
                    }
                }
            }
        }
        c
    }

    /// A tile looking straight down from 80 mm above head (cx, cy, 0), 4x4 supersampled.
    fn tile(&self, cx: f64, cy: f64, label: &str, with_depth: bool) -> CameraView {
        let intr = intrinsics();
        let head_from_camera = Isometry3::from_parts(
            Translation3::new(cx, cy, 80.0),
            UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
        );
        let buckets = self.buckets();
        let mut image = RgbImage::new(800, 600, [0, 0, 0]);
        let mut depth = DepthImage { width: 800, height: 600, z_mm: vec![f32::NAN; 800 * 600] };
        let ss = 4;
        for py in 0..600u32 {
            for px in 0..800u32 {
                let mut acc = [0.0; 3];
                for sy in 0..ss {
                    for sx in 0..ss {
                        let u = px as f64 - 0.5 + (sx as f64 + 0.5) / ss as f64;
                        let v = py as f64 - 0.5 + (sy as f64 + 0.5) / ss as f64;
                        let r = head_from_camera.rotation * intr.ray(&Point2::new(u, v));
                        let t = -80.0 / r.z;
                        let c = self.colour_at(&buckets, cx + r.x * t, cy + r.y * t);
                        for k in 0..3 {
                            acc[k] += c[k];
                        }
                    }
                }
                let n = (ss * ss) as f64;
                image.put(px, py, acc.map(|a| (a / n).round() as u8));
                depth.z_mm[(py * 800 + px) as usize] = 80.0;
            }
        }
        CameraView {
            label: label.into(),
            intrinsics: intr,
            base_from_camera: base_from_head() * head_from_camera,
            image,
            depth: with_depth.then_some(depth),
        }
    }
}

fn scene_and_tiles() -> &'static (Scene, Vec<CameraView>) {
    static S: std::sync::OnceLock<(Scene, Vec<CameraView>)> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let scene = Scene::new();
        let tiles = vec![scene.tile(-12.0, 0.0, "left", true), scene.tile(12.0, 0.0, "right", true)];
        (scene, tiles)
    })
}

#[test]
fn two_overlapping_tiles_map_every_dot_once_with_regions() {
    let (scene, tiles) = scene_and_tiles();
    let out = build_map(tiles, None, &base_from_head(), &VisionConfig::default()).expect("map");
    let map = &out.map;
    map.validate().expect("valid map");
    // Every dot whose disc lies well inside a frame is found; every detection is a dot.
    let found: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let head_from_base = base_from_head().inverse();
    let margin_px = 8.0;
    let must_find: Vec<[f64; 3]> = scene
        .dots
        .iter()
        .map(|d| [d[0], d[1], 0.0])
        .filter(|d| {
            tiles.iter().any(|t| {
                let pc = (head_from_base * t.base_from_camera).inverse() * Point3::from(*d);
                t.intrinsics.project(&pc).is_some_and(|px| {
                    px.x >= margin_px && px.y >= margin_px && px.x <= 799.0 - margin_px && px.y <= 599.0 - margin_px
                })
            })
        })
        .collect();
    let all: Vec<[f64; 3]> = scene.dots.iter().map(|d| [d[0], d[1], 0.0]).collect();
    let recall = smp_core::eval::detection_score(&found, &must_find, 0.05);
    assert_eq!(recall.matched, must_find.len(), "{recall:?}");
    let precision = smp_core::eval::detection_score(&found, &all, 0.05);
    assert_eq!(precision.matched, found.len(), "{precision:?}");
    assert!(precision.loc_rms_mm < 0.01, "{precision:?}");
    // The overlap (-4..4 mm) holds dots detected by both tiles: each is owned once.
    let detected: usize = out.tile_detections.iter().map(|t| t.pixels.len()).sum();
    assert!(detected > map.follicles.len() + 5, "overlap gives double detections: {detected}");
    for f in &map.follicles {
        assert!(f.z_mm.abs() < 0.01 && f.normal[2] > 0.999, "{f:?}");
        assert!((f.diameter_mm - 0.3).abs() < 0.06, "diameter {}", f.diameter_mm);
        // Darkness is contrast against the skin on a skin-to-black scale: 0.8 of the way
        // from skin (grey ~188) to the dot colour (grey ~36) is 0.65 of the way to black.
        assert!((f.darkness - 0.65).abs() < 0.08, "darkness {}", f.darkness);
    }
    assert!(map.surface.fit_rms_mm < 0.01);

    // Regions, away from band edges (the density disc is 5 mm).
    let patch_from_head = map.surface.head_from_patch.inverse();
    let code = |x: f64, y: f64| {
        let p = patch_from_head * Point3::new(x, y, 0.0);
        map.regions.code_at(p.x, p.y)
    };
    for y in [-6.0, 0.0, 6.0] {
        assert_eq!(code(-20.0, y), 'H', "hair at y {y}");
        assert_eq!(code(0.0, y), 'T', "thinning at y {y}");
        assert_eq!(code(26.0, y), 'B', "bald at y {y}");
        assert_eq!(code(19.0, y), 'S', "scar at y {y}");
        assert_eq!(code(0.0, 40.0), '.', "not imaged");
    }
    // Skin tone from the skin colour (sRGB 222,178,152 -> L* ~76, ITA ~50°).
    let tone = map.skin.as_ref().expect("tone");
    assert!((tone.lab[0] - 75.8).abs() < 1.5 && (tone.lab[2] - 19.4).abs() < 1.5, "{tone:?}");
    assert_eq!(tone.fitzpatrick, 2);
    assert!(map.warnings.is_empty(), "{:?}", map.warnings);
}

#[test]
fn a_tile_without_depth_still_places_its_follicles_with_a_warning() {
    let (scene, tiles) = scene_and_tiles();
    let mut tiles = tiles.clone();
    tiles[1].depth = None;
    let out = build_map(&tiles, None, &base_from_head(), &VisionConfig::default()).expect("map");
    assert!(out.map.warnings.iter().any(|w| w.contains("`right`") && w.contains("no depth")), "{:?}", out.map.warnings);
    // Dots in the overlap are still mapped (on the plane fitted from the left tile's
    // depth); beyond the left tile's depth the surface is unknown and they are dropped.
    assert!(
        out.map.warnings.iter().any(|w| w.contains("`right`") && w.contains("did not land")),
        "{:?}",
        out.map.warnings
    );
    let overlap: Vec<[f64; 3]> =
        scene.dots.iter().filter(|d| d[0].abs() < 3.0 && d[1].abs() < 11.0).map(|d| [d[0], d[1], 0.0]).collect();
    let found: Vec<[f64; 3]> = out.map.follicles.iter().map(|f| f.position()).collect();
    let s = smp_core::eval::detection_score(&found, &overlap, 0.05);
    assert_eq!(s.matched, overlap.len(), "{s:?}");
    assert!(out.map.follicles.iter().all(|f| f.z_mm.abs() < 0.01));
}

#[test]
fn bad_input_is_an_error_or_a_warning() {
    let cfg = VisionConfig::default();
    assert!(matches!(build_map(&[], None, &base_from_head(), &cfg), Err(VisionError::NoTiles)));
    let (_, tiles) = scene_and_tiles();
    let mut bad = tiles.clone();
    bad[0].image.data.truncate(10);
    let e = build_map(&bad, None, &base_from_head(), &cfg).expect_err("truncated");
    assert!(e.to_string().contains("`left`"), "{e}");
    let mut black = tiles.clone();
    black[0].image = RgbImage::new(800, 600, [0, 0, 0]);
    let out = build_map(&black, None, &base_from_head(), &cfg).expect("one good tile is enough");
    assert!(out.map.warnings.iter().any(|w| w.contains("`left`") && w.contains("black")), "{:?}", out.map.warnings);
    let mut none = tiles.clone();
    none.iter_mut().for_each(|t| t.depth = None);
    assert!(matches!(build_map(&none, None, &base_from_head(), &cfg), Err(VisionError::SurfaceFit { .. })));
}

/// A depth frame of `intrinsics()` looking at the surface `hit(ray) -> t` (range along
/// the unit ray), NaN where it misses.
fn depth_of(hit: impl Fn(&Vector3<f64>) -> Option<f64>) -> DepthImage {
    let intr = intrinsics();
    let mut depth = DepthImage { width: 800, height: 600, z_mm: vec![f32::NAN; 800 * 600] };
    for y in 0..600u32 {
        for x in 0..800u32 {
            let r = intr.ray(&Point2::new(f64::from(x), f64::from(y)));
            if let Some(t) = hit(&r) {
                depth.z_mm[(y * 800 + x) as usize] = (t * r.z) as f32;
            }
        }
    }
    depth
}

#[test]
fn the_local_fit_places_a_follicle_on_oblique_and_curved_skin() {
    let intr = intrinsics();
    let pixel = [430.3, 281.7];
    let ray = intr.ray(&Point2::new(pixel[0], pixel[1]));
    // A plane seen 65° from its normal, 80 mm away: depth is not linear in the pixel
    // there, so a depth-against-pixel fit is off; a 3-D fit is exact.
    let tilt = 65f64.to_radians();
    let n = Vector3::new(tilt.sin(), 0.0, -tilt.cos());
    let p0 = Vector3::new(0.0, 0.0, 80.0);
    let plane = depth_of(|r| Some(n.dot(&p0) / n.dot(r)));
    let skin = local_skin_fit(&intr, &plane, pixel, 10).and_then(|l| l.point_and_normal(&intr, pixel));
    let skin = skin.expect("a fit");
    let truth = ray * (n.dot(&p0) / n.dot(&ray));
    assert!((skin.point.coords - truth).norm() < 1e-4, "{:?} vs {truth:?}", skin.point);
    assert!(skin.normal.angle(&n).to_degrees() < 0.01, "{:?}", skin.normal);
    assert!((skin.normal_weight() - 1.0).abs() < 1e-9, "seen at 65°: the local normal counts fully");
    // A 60 mm sphere (a head) seen near its rim: the curvature terms keep the normal that
    // of the point itself, not of the window's lopsided mean.
    let centre = Vector3::new(-52.0, 0.0, 115.0);
    let sphere = depth_of(|r| {
        let b = r.dot(&centre);
        let disc = b * b - (centre.norm_squared() - 60.0 * 60.0);
        (disc >= 0.0).then(|| b - disc.sqrt())
    });
    let fit = local_skin_fit(&intr, &sphere, pixel, 10).expect("a fit");
    let skin = fit.point_and_normal(&intr, pixel).expect("the ray meets it");
    let b = ray.dot(&centre);
    let truth = ray * (b - (b * b - (centre.norm_squared() - 3600.0)).sqrt());
    let true_n = (truth - centre).normalize();
    let view_deg = true_n.angle(&(-truth)).to_degrees();
    assert!(view_deg > 55.0, "an oblique view: {view_deg}°");
    assert!((skin.point.coords - truth).norm() < 2e-3, "{:?} vs {truth:?}", skin.point);
    let err_deg = skin.normal.angle(&true_n).to_degrees();
    assert!(err_deg < 0.05, "normal off by {err_deg}°");
    assert!(err_deg < fit.normal.angle(&true_n).to_degrees(), "better than the window's plane");
    // Too few valid pixels: no fit.
    assert!(local_skin_fit(&intr, &depth_of(|_| None), pixel, 10).is_none());
}

#[test]
fn densities_are_per_area_of_skin_and_a_second_pass_adds_only_new_dots() {
    // A plane tilted 60° from the patch's: each 2 mm cell holds 0.08 cm² of skin.
    let slope = 60f64.to_radians().tan();
    let patch = SurfacePatch {
        head_from_patch: Isometry3::identity(),
        degree: 1,
        coefficients: vec![0.0, slope, 0.0],
        scale_mm: 1.0,
        x_range_mm: [0.0, 10.0],
        y_range_mm: [0.0, 10.0],
        fit_rms_mm: 0.0,
    };
    let grid = CellGrid::filled(0.0, 0.0, 2.0, 5, 5, 'B');
    for a in cell_skin_area_cm2(&patch, &grid) {
        assert!((a - 0.08).abs() < 1e-9, "{a}");
    }
    // Seen straight down by a camera 80 mm above the plane's (0, 0): 60° from the normal.
    let cam = Isometry3::from_parts(
        Translation3::new(5.0, 5.0, 80.0 + slope * 5.0),
        UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
    );
    let intr = intrinsics();
    let views = best_view_deg(&patch, &grid, &[true; 25], &[(&intr, cam.inverse())]);
    // 60° under the camera, a few degrees either way across the 10 mm (perspective).
    assert!((views[12] - 60.0).abs() < 1e-6, "{views:?}");
    assert!(views.iter().all(|v| (v - 60.0).abs() < 4.0), "{views:?}");
    let not_covered = best_view_deg(&patch, &grid, &[false; 25], &[(&intr, cam.inverse())]);
    assert!(not_covered.iter().all(|v| v.is_infinite()));

    let dot = |x: f64, y: f64| DotDetection {
        pixel: [x, y],
        diameter_px: 7.5,
        contrast_levels: 20.0,
        darkness: 0.3,
        polarity: crate::follicles::Polarity::Dark,
    };
    let mask = |on: usize| {
        let mut m = smp_core::image::GrayImage { width: 4, height: 1, data: vec![0; 4] };
        m.data[on] = 255;
        m
    };
    let with = |dots: Vec<DotDetection>, on: usize| DotDetections {
        dots,
        noise_sigma: 1.0,
        threshold_levels: 12.0,
        dark_mask: mask(on),
        mean_skin_level: 100.0,
        light_kept: false,
    };
    let mut first = with(vec![dot(50.0, 40.0), dot(10.0, 10.0)], 0);
    let second = with(vec![dot(51.0, 40.5), dot(30.0, 5.0)], 2);
    merge_detections(&mut first, second, 7.5);
    let pixels: Vec<[f64; 2]> = first.dots.iter().map(|d| d.pixel).collect();
    assert_eq!(pixels, vec![[30.0, 5.0], [10.0, 10.0], [50.0, 40.0]], "the same dot is kept once");
    assert_eq!(first.dark_mask.data, vec![255, 0, 255, 0]);
}

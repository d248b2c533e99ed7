//! Diagnostic: renders one random patient as `smp eval vision --random 1 --seed S` does and,
//! for every true follicle a tile sees face-on, measures its contrast against its skin ring
//! (grey and per channel), the tile's noise, and which gate of the dark pass drops it.
//!
//! `cargo run --release -p smp-vision --example dark_skin_probe -- SEED [MAX_TILES]`
//!
//! Environment: `MAX_VIEW_DEG` (default 50) limits the follicles measured to those a tile
//! sees within that angle of their normal; `MIN_CONTRAST`, `MIN_FRACTION`, `DETECT_SIGMA`
//! and `MIN_AREA` override the detector's `min_contrast_levels`, `min_contrast_fraction`,
//! `detect_sigma` and `min_area_factor`; `MAP=1` also builds the map and lists its natural
//! follicles farther than 0.3 mm from every true follicle, with the best view angle.
//! The gate tally replicates the dark pass with the fixed thresholds of the tile's report
//! (it names the gate a missed follicle fails; "detected" is the real detector's answer).
//!
//! The truth is used here only to score and to measure; the detector never sees it.

use nalgebra::{Isometry3, Point3, Vector3};
use opencv::core::{Mat, Point, Size, BORDER_REPLICATE, CV_32S};
use opencv::imgproc;
use opencv::prelude::*;
use smp_core::image::CameraView;
use smp_core::map::FollicleKind;
use smp_core::rig::Rig;
use smp_sim::patient::SyntheticPatient;
use smp_sim::random_patient::random_patient_spec;
use smp_sim::render::{render_flange_view, render_overview, RenderConfig};
use smp_vision::{build_map, detect_dots, dot_features, find_scalp, scan_positions, VisionConfig};

#[derive(Default, Clone)]
struct Stats {
    n: usize,
    sum: f64,
    sum2: f64,
}
impl Stats {
    fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.sum2 += v * v;
    }
    fn show(&self) -> String {
        if self.n == 0 {
            return "-".into();
        }
        let m = self.sum / self.n as f64;
        let sd = (self.sum2 / self.n as f64 - m * m).max(0.0).sqrt();
        format!("{m:.2}±{sd:.2}")
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2005);
    let max_tiles: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    let spec = match random_patient_spec(seed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("random patient {seed}: {e}");
            return;
        }
    };
    println!("{} skin {:?} hair {:?}", spec.name, spec.tone.skin_srgb, spec.tone.follicle_srgb);
    let mut cfg = VisionConfig::default();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = env("MIN_CONTRAST") {
        cfg.min_contrast_levels = v;
    }
    if let Some(v) = env("MIN_FRACTION") {
        cfg.min_contrast_fraction = v;
    }
    if let Some(v) = env("MIN_AREA") {
        cfg.min_area_factor = v;
    }
    if let Some(v) = env("DETECT_SIGMA") {
        cfg.detect_sigma = v;
    }
    let max_view_deg = env("MAX_VIEW_DEG").unwrap_or(50.0);
    let (mut fp_total, mut det_total) = (0usize, 0usize);
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let patient = SyntheticPatient::generate(&spec);
    let render = RenderConfig { seed: spec.seed, ..RenderConfig::default() };
    let overview = render_overview(&patient, &rig, &base_from_head, &render);
    let Ok(outline) = find_scalp(&overview, &cfg) else {
        eprintln!("no head");
        return;
    };
    let positions = scan_positions(&rig, &outline, 35.0, &cfg);
    let tiles: Vec<CameraView> = positions
        .iter()
        .enumerate()
        .take(max_tiles)
        .map(|(i, m)| render_flange_view(&patient, &rig, &base_from_head, *m, &format!("tile{i:03}"), &render))
        .collect();
    let mut reasons: std::collections::BTreeMap<&'static str, usize> = Default::default();
    let (mut c_det, mut c_miss) = (Stats::default(), Stats::default());
    let (mut bh_det, mut bh_miss) = (Stats::default(), Stats::default());
    let mut rgb_det = [Stats::default(), Stats::default(), Stats::default()];
    let mut rgb_miss = [Stats::default(), Stats::default(), Stats::default()];
    let mut ring_miss = Stats::default();
    let mut ring_det = Stats::default();
    let mut dark_sum = Stats::default();
    let mut feat_stats: [[Stats; 7]; 2] = Default::default();
    for t in &tiles {
        let gray = t.image.to_gray();
        let mut zs: Vec<f64> = t
            .depth
            .as_ref()
            .map(|d| d.z_mm.iter().map(|z| *z as f64).filter(|z| z.is_finite() && *z > 0.0).collect())
            .unwrap_or_default();
        let z = if zs.is_empty() { 100.0 } else { median(&mut zs) };
        let d_px = cfg.follicle_diameter_mm * t.intrinsics.fx_px / z;
        let Ok(det) = detect_dots(&gray, d_px, &cfg, &t.label) else { continue };
        let feats = dot_features(&t.image, &det.dark_mask, &det.dots, z / t.intrinsics.fx_px);
        let (w, h) = (gray.width as usize, gray.height as usize);
        // Replicate the dark pass to name the gate.
        let src = Mat::new_rows_cols_with_data::<u8>(h as i32, w as i32, &gray.data).expect("wrap");
        let k = ((cfg.blackhat_kernel_factor * d_px).round() as i32).max(3) | 1;
        let kernel =
            imgproc::get_structuring_element(imgproc::MORPH_ELLIPSE, Size::new(k, k), Point::new(-1, -1)).expect("k");
        let mut closed = Mat::default();
        let bv = imgproc::morphology_default_border_value().expect("b");
        imgproc::morphology_ex(
            &src,
            &mut closed,
            imgproc::MORPH_CLOSE,
            &kernel,
            Point::new(-1, -1),
            1,
            BORDER_REPLICATE,
            bv,
        )
        .expect("close");
        let bg = closed.data_bytes().expect("bg").to_vec();
        let bh: Vec<u8> = bg.iter().zip(&gray.data).map(|(c, g)| c.saturating_sub(*g)).collect();
        let thr = det.threshold_levels;
        // Interpolated median and MAD of the black-hat image (integer bins spread uniformly).
        let iq = |v: &[f64]| {
            let mut hist = [0usize; 512];
            for x in v {
                hist[(x.round() as usize).min(511)] += 1;
            }
            let half = v.len() as f64 / 2.0;
            let mut acc = 0.0;
            for (b, c) in hist.iter().enumerate() {
                if acc + *c as f64 >= half && *c > 0 {
                    return b as f64 - 0.5 + (half - acc) / *c as f64;
                }
                acc += *c as f64;
            }
            511.0
        };
        let bhf: Vec<f64> = bg.iter().zip(&gray.data).map(|(c, g)| f64::from(c.saturating_sub(*g))).collect();
        let med_i = iq(&bhf);
        let dev: Vec<f64> = bhf.iter().map(|v| (v - med_i).abs()).collect();
        let mad_i = iq(&dev);
        // Noise of the image itself: MAD of the difference of horizontal neighbours / sqrt 2.
        let dn: Vec<f64> = gray.data.windows(2).map(|p| (f64::from(p[1]) - f64::from(p[0])).abs()).collect();
        let sig_pix = 1.4826 * iq(&dn) / std::f64::consts::SQRT_2;
        println!(
            "{} bh median {med_i:.2} MAD {mad_i:.2} sigma {:.2}; pixel-difference sigma {sig_pix:.2}",
            t.label,
            1.4826 * mad_i
        );
        let bin: Vec<u8> = bh.iter().map(|v| if (*v as f64) > thr.floor() { 255 } else { 0 }).collect();
        let bin_m = Mat::new_rows_cols_with_data::<u8>(h as i32, w as i32, &bin).expect("wrap");
        let (mut labels, mut stats, mut cents) = (Mat::default(), Mat::default(), Mat::default());
        imgproc::connected_components_with_stats(&bin_m, &mut labels, &mut stats, &mut cents, 8, CV_32S).expect("cc");
        let lab = labels.data_typed::<i32>().expect("l");
        let st = stats.data_typed::<i32>().expect("s");
        let expected_area = std::f64::consts::PI * 0.25 * d_px * d_px;
        let mut skin_levels: Vec<f64> = bg.iter().map(|v| *v as f64).collect();
        let skin_med = median(&mut skin_levels);
        let mut n_seen = 0;
        let mut n_found = 0;
        let head_from_camera = base_from_head.inverse() * t.base_from_camera;
        let camera_from_head: Isometry3<f64> = head_from_camera.inverse();
        let cam_pos = head_from_camera.translation.vector;
        for f in patient.truth_follicles() {
            let p = Point3::from(f.position_head_mm);
            let to_cam = (cam_pos - p.coords).normalize();
            if Vector3::from(f.normal_head).dot(&to_cam) < max_view_deg.to_radians().cos() {
                continue;
            }
            let Some(px) = t.intrinsics.project(&(camera_from_head * p)) else { continue };
            let m = 12.0;
            if px.x < m || px.y < m || px.x > w as f64 - m || px.y > h as f64 - m {
                continue;
            }
            // depth check: visible surface at that pixel
            let (xi, yi) = (px.x.round() as usize, px.y.round() as usize);
            let pc = camera_from_head * p;
            if let Some(d) = &t.depth {
                let zd = d.z_mm[yi * w + xi] as f64;
                if !(zd.is_finite() && (zd - pc.z).abs() < 1.0) {
                    continue;
                }
            }
            n_seen += 1;
            let hit = det
                .dots
                .iter()
                .position(|d| (d.pixel[0] - px.x).hypot(d.pixel[1] - px.y) < 0.3 / (z / t.intrinsics.fx_px));
            let found = hit.is_some();
            if let Some(i) = hit {
                let f = &feats[i];
                let kind = cfg.dot_classifier.classify(f);
                let e = cfg.dot_classifier.evidence(f);
                let k = if kind == FollicleKind::Natural { 0 } else { 1 };
                feat_stats[k][0].add(f.blue_red_absorbance.unwrap_or(f64::NAN));
                feat_stats[k][1].add(f.edge_sigma_mm.unwrap_or(f64::NAN));
                feat_stats[k][2].add(f.diameter_mm);
                feat_stats[k][3].add(f.elongation);
                feat_stats[k][4].add(e);
                feat_stats[k][5].add(f.blue_red_absorbance.is_none() as u8 as f64);
                feat_stats[k][6].add(f.edge_sigma_mm.is_none() as u8 as f64);
            }
            // Contrast: the darkest pixel within r of centre vs the ring median.
            let r = 0.5 * f.diameter_mm * t.intrinsics.fx_px / z;
            let (r_in, r_out) = (r + 2.0, r + 2.0 + (0.5 * d_px).max(3.0));
            let reach = r_out.ceil() as i64 + 1;
            let mut ring: [Vec<f64>; 4] = Default::default();
            let mut centre: [Vec<f64>; 4] = Default::default();
            let mut best_bh = 0u8;
            let mut best_i = 0usize;
            for y in (yi as i64 - reach)..=(yi as i64 + reach) {
                for x in (xi as i64 - reach)..=(xi as i64 + reach) {
                    if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
                        continue;
                    }
                    let i = y as usize * w + x as usize;
                    let rho = (x as f64 - px.x).hypot(y as f64 - px.y);
                    let vals = [
                        gray.data[i] as f64,
                        t.image.data[3 * i] as f64,
                        t.image.data[3 * i + 1] as f64,
                        t.image.data[3 * i + 2] as f64,
                    ];
                    if rho <= (0.5 * r).max(0.8) {
                        for c in 0..4 {
                            centre[c].push(vals[c]);
                        }
                    }
                    if rho <= r.max(1.0) && bh[i] > best_bh {
                        best_bh = bh[i];
                        best_i = i;
                    }
                    if rho >= r_in && rho <= r_out {
                        for c in 0..4 {
                            ring[c].push(vals[c]);
                        }
                    }
                }
            }
            let con: Vec<f64> = (0..4)
                .map(|c| {
                    let rm = median(&mut ring[c]);
                    let cm = centre[c].iter().sum::<f64>() / centre[c].len().max(1) as f64;
                    rm - cm
                })
                .collect();
            let ringm = median(&mut ring[0]);
            dark_sum.add(f.darkness);
            if found {
                n_found += 1;
                c_det.add(con[0]);
                bh_det.add(best_bh as f64);
                ring_det.add(ringm);
                for c in 0..3 {
                    rgb_det[c].add(con[c + 1]);
                }
                *reasons.entry("detected").or_default() += 1;
            } else {
                c_miss.add(con[0]);
                bh_miss.add(best_bh as f64);
                ring_miss.add(ringm);
                for c in 0..3 {
                    rgb_miss[c].add(con[c + 1]);
                }
                let l = lab[best_i];
                let reason = if l == 0 {
                    "below threshold"
                } else {
                    let s = &st[l as usize * 5..l as usize * 5 + 5];
                    let area = s[4] as f64;
                    let aspect = s[2].max(s[3]) as f64 / s[2].min(s[3]).max(1) as f64;
                    if area < (cfg.min_area_factor * expected_area).max(1.0) {
                        "area too small"
                    } else if area > cfg.max_area_factor * expected_area {
                        "area too large (merged)"
                    } else if aspect > cfg.max_aspect {
                        "aspect"
                    } else {
                        "ring contrast / centroid / other"
                    }
                };
                *reasons.entry(reason).or_default() += 1;
            }
        }
        // Precision of this tile's detections against every truth follicle it images.
        let mut truth_px: Vec<[f64; 2]> = Vec::new();
        for f in patient.truth_follicles() {
            let p = Point3::from(f.position_head_mm);
            if Vector3::from(f.normal_head).dot(&(cam_pos - p.coords)) <= 0.0 {
                continue;
            }
            if let Some(px) = t.intrinsics.project(&(camera_from_head * p)) {
                truth_px.push([px.x, px.y]);
            }
        }
        let r_px = 0.3 / (z / t.intrinsics.fx_px);
        let fp = det
            .dots
            .iter()
            .filter(|d| !truth_px.iter().any(|q| (d.pixel[0] - q[0]).hypot(d.pixel[1] - q[1]) < r_px))
            .count();
        fp_total += fp;
        det_total += det.dots.len();
        println!(
            "{} fp {fp} z {:.1} d_px {:.2} k {} noise sigma {:.2} thr {:.2} skin(closing) median {:.0} seen {} found {} dets {}",
            t.label,
            z,
            d_px,
            k,
            det.noise_sigma,
            thr,
            skin_med,
            n_seen,
            n_found,
            det.dots.len()
        );
    }
    println!("gate tally: {reasons:?}");
    println!("tile detections {det_total}, unmatched to any truth {fp_total}");
    for (k, name) in ["natural", "smp_dot"].iter().enumerate() {
        let f = &feat_stats[k];
        println!(
            "matched classified {name}: n {} blue/red {} edge_sigma_mm {} diameter_mm {} elongation {} evidence {} no-hue {} no-edge {}",
            f[0].n,
            f[0].show(),
            f[1].show(),
            f[2].show(),
            f[3].show(),
            f[4].show(),
            f[5].show(),
            f[6].show()
        );
    }
    println!("truth darkness {}", dark_sum.show());
    println!(
        "detected: grey ring-centre contrast {} black-hat peak {} ring grey {}  R {} G {} B {}",
        c_det.show(),
        bh_det.show(),
        ring_det.show(),
        rgb_det[0].show(),
        rgb_det[1].show(),
        rgb_det[2].show()
    );
    println!(
        "missed:   grey ring-centre contrast {} black-hat peak {} ring grey {}  R {} G {} B {}",
        c_miss.show(),
        bh_miss.show(),
        ring_miss.show(),
        rgb_miss[0].show(),
        rgb_miss[1].show(),
        rgb_miss[2].show()
    );
    // Map-level: natural follicles of the map farther than 0.3 mm from every true follicle,
    // with their distance to the nearest one and the angle the best tile saw it at.
    if std::env::var("MAP").is_ok() {
        let Ok(out) = build_map(&tiles, Some(&overview), &base_from_head, &cfg) else {
            eprintln!("map failed");
            return;
        };
        let truth = patient.truth_follicles();
        let mut far = Vec::new();
        for f in out.map.follicles.iter().filter(|f| f.kind == FollicleKind::Natural) {
            let p = f.position();
            let (best, _) = truth.iter().fold((f64::INFINITY, 0usize), |(b, bi), t| {
                let d = ((t.position_head_mm[0] - p[0]).powi(2)
                    + (t.position_head_mm[1] - p[1]).powi(2)
                    + (t.position_head_mm[2] - p[2]).powi(2))
                .sqrt();
                if d < b {
                    (d, 0)
                } else {
                    (b, bi)
                }
            });
            if best > 0.3 {
                let view = tiles
                    .iter()
                    .map(|t| {
                        let c = (base_from_head.inverse() * t.base_from_camera).translation.vector;
                        let to = (c - Vector3::from(p)).normalize();
                        Vector3::from(f.normal).dot(&to).clamp(-1.0, 1.0).acos().to_degrees()
                    })
                    .fold(f64::INFINITY, f64::min);
                far.push((best, view));
            }
        }
        println!(
            "map natural follicles {}, farther than 0.3 mm from any truth {}:",
            out.map.follicles.len(),
            far.len()
        );
        for (d, v) in far.iter().take(40) {
            println!("  nearest truth {d:.3} mm, best view {v:.0} deg");
        }
    }
}

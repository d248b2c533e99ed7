//! Diagnoses vision on one random patient against the simulator's truth, the way `smp eval
//! vision --random 1 --seed SEED` scores it, and prints where the errors come from: the
//! worst-localised follicles (with the owning tile's view angle and the error split along
//! and across the skin normal), the missed follicles (view angle, darkness), the false
//! detections, the skin-tone estimate and the region confusion.
//!
//! `cargo run -p smp-vision --example diagnose_patient -- SEED`

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::image::CameraView;
use smp_core::map::{FollicleKind, RegionKind, ScalpMap};
use smp_core::rig::Rig;
use smp_sim::patient::SyntheticPatient;
use smp_sim::random_patient::random_patient_spec;
use smp_sim::render::{render_flange_view, render_overview, RenderConfig};
use smp_vision::{build_map, find_scalp, scan_positions, VisionConfig};

const MATCH_MM: f64 = 0.3;
const MAX_VIEW_DEG: f64 = 70.0;

/// Smallest angle between `n` and the direction to a tile camera imaging `p` (3 px margin).
fn view_deg(p: &[f64; 3], n: &[f64; 3], t: &CameraView, base_from_head: &Isometry3<f64>) -> Option<f64> {
    let p_base = base_from_head * Point3::from(*p);
    let n_base = base_from_head.rotation * Vector3::from(*n);
    let px = t.intrinsics.project(&(t.base_from_camera.inverse() * p_base))?;
    let inside = px.x >= 3.0
        && px.y >= 3.0
        && px.x <= t.intrinsics.width_px as f64 - 4.0
        && px.y <= t.intrinsics.height_px as f64 - 4.0;
    let to_cam = (t.base_from_camera.translation.vector - p_base.coords).normalize();
    inside.then(|| n_base.normalize().dot(&to_cam).clamp(-1.0, 1.0).acos().to_degrees())
}

fn best_view(p: &[f64; 3], n: &[f64; 3], tiles: &[CameraView], bfh: &Isometry3<f64>) -> Option<(usize, f64)> {
    tiles
        .iter()
        .enumerate()
        .filter_map(|(i, t)| view_deg(p, n, t, bfh).map(|a| (i, a)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn in_map(p: &[f64; 3], map: &ScalpMap) -> bool {
    let q = map.surface.head_from_patch.inverse() * Point3::from(*p);
    map.regions.code_at(q.x, q.y) != RegionKind::Outside.code()
}

fn main() {
    let seed: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1005);
    let spec = match random_patient_spec(seed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("random patient {seed}: {e}");
            return;
        }
    };
    println!(
        "patient {} (seed {seed}); skin {:?} follicle {:?}",
        spec.name, spec.tone.skin_srgb, spec.tone.follicle_srgb
    );
    let rig = Rig::default_sim();
    let bfh = rig.base_from_head_nominal();
    let patient = SyntheticPatient::generate(&spec);
    let render = RenderConfig { seed: spec.seed, ..RenderConfig::default() };
    let cfg = VisionConfig::default();
    let overview = render_overview(&patient, &rig, &bfh, &render);
    let Ok(outline) = find_scalp(&overview, &cfg) else {
        eprintln!("no head in the overview");
        return;
    };
    let positions = scan_positions(&rig, &outline, 35.0, &cfg);
    let mut tiles: Vec<Option<CameraView>> = vec![None; positions.len()];
    let per = positions.len().div_ceil(2).max(1);
    std::thread::scope(|s| {
        for (w, chunk) in tiles.chunks_mut(per).enumerate() {
            let (patient, rig, positions, render) = (&patient, &rig, &positions, &render);
            s.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let i = w * per + k;
                    *slot = Some(render_flange_view(patient, rig, &bfh, positions[i], &format!("tile{i:03}"), render));
                }
            });
        }
    });
    let tiles: Vec<CameraView> = tiles.into_iter().flatten().collect();
    let t0 = std::time::Instant::now();
    let out = match build_map(&tiles, Some(&overview), &bfh, &cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("map: {e}");
            return;
        }
    };
    println!("{} tiles, map in {:.1} s", tiles.len(), t0.elapsed().as_secs_f64());
    let map = &out.map;
    // DIAG_CROP=tile,x,y: a 4x enlarged 64 px crop of that tile around (x, y) to crop.png.
    if let Some((ti, x, y)) = std::env::var("DIAG_CROP").ok().and_then(|v| {
        let p: Vec<f64> = v.split(',').filter_map(|s| s.parse().ok()).collect();
        (p.len() == 3).then(|| (p[0] as usize, p[1], p[2]))
    }) {
        use opencv::prelude::*;
        let t = &tiles[ti];
        let (w, h) = (t.image.width as i32, t.image.height as i32);
        let mut bgr: Vec<u8> = Vec::with_capacity(t.image.data.len());
        for c in t.image.data.chunks(3) {
            bgr.extend([c[2], c[1], c[0]]);
        }
        let flat = opencv::core::Mat::new_rows_cols_with_data::<u8>(h, w * 3, &bgr)
            .and_then(|m| m.reshape(3, h).and_then(|r| r.try_clone()));
        if let Ok(m) = flat {
            let x0 = ((x as i32) - 32).clamp(0, w - 64);
            let y0 = ((y as i32) - 32).clamp(0, h - 64);
            if let Ok(roi) = opencv::core::Mat::roi(&m, opencv::core::Rect::new(x0, y0, 64, 64)) {
                let mut big = opencv::core::Mat::default();
                let _ = opencv::imgproc::resize(
                    &roi,
                    &mut big,
                    opencv::core::Size::new(256, 256),
                    0.0,
                    0.0,
                    opencv::imgproc::INTER_NEAREST,
                );
                let _ = opencv::imgcodecs::imwrite("/tmp/h4/crop.png", &big, &opencv::core::Vector::new());
            }
        }
        let td = &out.tile_detections[ti];
        println!("tile {ti}: noise {:.2} threshold {:.2}", td.noise_sigma, td.threshold_levels);
    }
    // Owning tile per map follicle (follicles are pushed in tile, then detection order).
    let mut owner: Vec<(usize, [f64; 2])> = Vec::new();
    let mut owner_det: Vec<usize> = Vec::new();
    for (ti, td) in out.tile_detections.iter().enumerate() {
        for (di, o) in td.owned.iter().enumerate() {
            if *o {
                owner.push((ti, td.pixels[di]));
                owner_det.push(di);
            }
        }
    }
    let truth: Vec<_> = patient
        .truth_follicles()
        .iter()
        .filter(|f| in_map(&f.position_head_mm, map))
        .filter(|f| best_view(&f.position_head_mm, &f.normal_head, &tiles, &bfh).is_some_and(|v| v.1 <= MAX_VIEW_DEG))
        .collect();
    let found: Vec<usize> = (0..map.follicles.len())
        .filter(|&i| map.follicles[i].kind == FollicleKind::Natural)
        .filter(|&i| {
            let f = &map.follicles[i];
            in_map(&f.position(), map)
                && best_view(&f.position(), &f.normal, &tiles, &bfh).is_some_and(|v| v.1 <= MAX_VIEW_DEG)
        })
        .collect();
    // Greedy nearest matching.
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (ti, t) in truth.iter().enumerate() {
        for &fi in &found {
            let d = (Vector3::from(map.follicles[fi].position()) - Vector3::from(t.position_head_mm)).norm();
            if d <= MATCH_MM {
                pairs.push((d, ti, fi));
            }
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut t_used, mut f_used) = (vec![false; truth.len()], vec![false; map.follicles.len()]);
    let mut matched = Vec::new();
    for (d, ti, fi) in pairs {
        if !t_used[ti] && !f_used[fi] {
            t_used[ti] = true;
            f_used[fi] = true;
            matched.push((d, ti, fi));
        }
    }
    let rms = (matched.iter().map(|m| m.0 * m.0).sum::<f64>() / matched.len().max(1) as f64).sqrt();
    let (p, r) = (matched.len() as f64 / found.len().max(1) as f64, matched.len() as f64 / truth.len().max(1) as f64);
    println!(
        "truth {} found {} matched {}: P {p:.3} R {r:.3} F1 {:.3} loc rms {rms:.4} mm",
        truth.len(),
        found.len(),
        matched.len(),
        2.0 * p * r / (p + r).max(1e-9)
    );
    // Localisation: worst matches.
    matched.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("worst matches: err mm (along normal, tangential) owner tile / its view deg / best view deg, pixel");
    for (d, ti, fi) in matched.iter().take(25) {
        let t = truth[*ti];
        let f = &map.follicles[*fi];
        let e = Vector3::from(f.position()) - Vector3::from(t.position_head_mm);
        let n = Vector3::from(t.normal_head).normalize();
        let en = e.dot(&n);
        let et = (e - n * en).norm();
        let (ot, px) = owner.get(*fi).copied().unwrap_or((usize::MAX, [0.0, 0.0]));
        let ov = tiles.get(ot).and_then(|tt| view_deg(&t.position_head_mm, &t.normal_head, tt, &bfh));
        let bv = best_view(&t.position_head_mm, &t.normal_head, &tiles, &bfh);
        println!(
            "  {d:.3} ({en:+.3}, {et:.3}) tile {ot} {:.1}° best {:?} px [{:.1},{:.1}] diam {:.2} dark {:.2}",
            ov.unwrap_or(f64::NAN),
            bv.map(|b| (b.0, (b.1 * 10.0).round() / 10.0)),
            px[0],
            px[1],
            t.diameter_mm,
            t.darkness
        );
    }
    // Normal error of the matches.
    let mut nerr: Vec<f64> = matched
        .iter()
        .map(|(_, ti, fi)| {
            let a = Vector3::from(truth[*ti].normal_head).normalize();
            let b = Vector3::from(map.follicles[*fi].normal).normalize();
            a.dot(&b).clamp(-1.0, 1.0).acos().to_degrees()
        })
        .collect();
    nerr.sort_by(f64::total_cmp);
    // Signed: view angle from the detection's normal minus from the truth normal, owner tile.
    let signed: Vec<f64> = matched
        .iter()
        .filter_map(|(_, ti, fi)| {
            let t = truth[*ti];
            let f = &map.follicles[*fi];
            let tile = tiles.get(owner.get(*fi)?.0)?;
            Some(
                view_deg(&f.position(), &f.normal, tile, &bfh)?
                    - view_deg(&t.position_head_mm, &t.normal_head, tile, &bfh)?,
            )
        })
        .collect();
    if !signed.is_empty() {
        let m = signed.iter().sum::<f64>() / signed.len() as f64;
        let sd = (signed.iter().map(|v| (v - m).powi(2)).sum::<f64>() / signed.len() as f64).sqrt();
        println!("view angle (detected - truth) deg: mean {m:+.3} sd {sd:.3}");
    }
    if !nerr.is_empty() {
        println!(
            "normal error deg: median {:.3} p90 {:.3} max {:.3}",
            nerr[nerr.len() / 2],
            nerr[nerr.len() * 9 / 10],
            nerr[nerr.len() - 1]
        );
    }
    // Error by owner view angle.
    let mut bins = [(0usize, 0.0f64, 0.0f64); 8];
    for (d, ti, fi) in &matched {
        let t = truth[*ti];
        let (ot, _) = owner.get(*fi).copied().unwrap_or((0, [0.0, 0.0]));
        let a = view_deg(&t.position_head_mm, &t.normal_head, &tiles[ot], &bfh).unwrap_or(89.0);
        let b = ((a / 10.0) as usize).min(7);
        let ne = Vector3::from(t.normal_head)
            .normalize()
            .dot(&Vector3::from(map.follicles[*fi].normal).normalize())
            .clamp(-1.0, 1.0)
            .acos()
            .to_degrees();
        bins[b].0 += 1;
        bins[b].1 += d * d;
        bins[b].2 += ne * ne;
    }
    for (k, (n, s, e)) in bins.iter().enumerate() {
        if *n > 0 {
            println!(
                "  owner view {:>2}-{:>2}°: {n:>5} matches, rms {:.4} mm, normal rms {:.3}°",
                k * 10,
                k * 10 + 10,
                (s / *n as f64).sqrt(),
                (e / *n as f64).sqrt()
            );
        }
    }
    println!("misses (truth not matched): best view tile/deg, diam, darkness, nearest any detection mm");
    for (ti, t) in truth.iter().enumerate() {
        if t_used[ti] {
            continue;
        }
        let (near, near_i) = map
            .follicles
            .iter()
            .enumerate()
            .map(|(i, f)| ((Vector3::from(f.position()) - Vector3::from(t.position_head_mm)).norm(), i))
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a });
        let why = if near < MATCH_MM {
            let f = &map.follicles[near_i];
            let (ot, _) = owner[near_i];
            let feat = &out.tile_detections[ot].features[owner_det[near_i]];
            format!(
                " kind {:?} face-on {} feat {:?}",
                f.kind,
                best_view(&f.position(), &f.normal, &tiles, &bfh).is_some_and(|v| v.1 <= MAX_VIEW_DEG),
                feat
            )
        } else {
            String::new()
        };
        let bv = best_view(&t.position_head_mm, &t.normal_head, &tiles, &bfh);
        let proj = bv.and_then(|(i, _)| {
            let tt = &tiles[i];
            tt.intrinsics.project(&(tt.base_from_camera.inverse() * (bfh * Point3::from(t.position_head_mm))))
        });
        let colour = bv.zip(proj).map(|((i, _), p)| core_and_ring(&tiles[i], [p.x, p.y]));
        println!(
            "  {:?} best {:?} px {:?} diam {:.2} dark {:.2} nearest {near:.3}{why} core/ring {colour:?}",
            t.position_head_mm.map(|v| (v * 100.0).round() / 100.0),
            bv.map(|b| (b.0, (b.1 * 10.0).round() / 10.0)),
            proj.map(|p| [(p.x * 10.0).round() / 10.0, (p.y * 10.0).round() / 10.0]),
            t.diameter_mm,
            t.darkness
        );
    }
    println!("false detections: position, owner tile, pixel, nearest truth mm");
    for &fi in &found {
        if f_used[fi] {
            continue;
        }
        let f = &map.follicles[fi];
        let near = patient
            .truth_follicles()
            .iter()
            .map(|t| (Vector3::from(f.position()) - Vector3::from(t.position_head_mm)).norm())
            .fold(f64::INFINITY, f64::min);
        let (ot, px) = owner.get(fi).copied().unwrap_or((usize::MAX, [0.0, 0.0]));
        println!(
            "  {:?} tile {ot} px [{:.1},{:.1}] diam {:.2} dark {:.2} nearest truth {near:.3}",
            f.position().map(|v| (v * 100.0).round() / 100.0),
            px[0],
            px[1],
            f.diameter_mm,
            f.darkness
        );
    }
    // Skin tone.
    let true_lab = smp_core::color::srgb_to_lab(spec.tone.skin_srgb);
    if let Some(s) = &map.skin {
        println!(
            "skin: estimated {:?} true {:?} dE00 {:.2}",
            s.lab.map(|v| (v * 100.0).round() / 100.0),
            true_lab.map(|v| (v * 100.0).round() / 100.0),
            smp_core::color::delta_e2000(s.lab, true_lab)
        );
    }
    // Regions: confusion (truth -> found) over mapped cells.
    let mut conf: std::collections::BTreeMap<(char, char), usize> = std::collections::BTreeMap::new();
    for j in 0..map.regions.ny {
        for i in 0..map.regions.nx {
            let fc = map.regions.code_at_cell(i, j);
            if fc == RegionKind::Outside.code() {
                continue;
            }
            let (x, y) = map.regions.cell_centre(i, j);
            let tc = patient.region_at_head(&map.surface.sample_head(x, y).0).code();
            if tc == RegionKind::Outside.code() {
                continue;
            }
            *conf.entry((tc, fc)).or_default() += 1;
            if tc != fc && std::env::var("DIAG_CELLS").is_ok() {
                let (ph, nh) = map.surface.sample_head(x, y);
                let tn = patient
                    .truth_follicles()
                    .iter()
                    .min_by(|a, b| {
                        let da = (Vector3::from(a.position_head_mm) - ph.coords).norm();
                        let db = (Vector3::from(b.position_head_mm) - ph.coords).norm();
                        da.total_cmp(&db)
                    })
                    .map(|f| {
                        let d = (Vector3::from(f.position_head_mm) - ph.coords).norm();
                        let a = Vector3::from(f.normal_head).angle(&nh).to_degrees();
                        (d, a)
                    });
                let bv = tiles
                    .iter()
                    .filter_map(|t| view_deg(&[ph.x, ph.y, ph.z], &[nh.x, nh.y, nh.z], t, &bfh))
                    .fold(f64::INFINITY, f64::min);
                println!(
                    "cell {tc}->{fc} patch ({x:.0},{y:.0}) head ({:.0},{:.0},{:.0}) best view {bv:.1} nearest truth (dist, normal angle) {tn:?} normal z {:.2}",
                    ph.x, ph.y, ph.z, nh.z
                );
            }
        }
    }
    println!("regions truth->found cells: {conf:?}");
    if std::env::var("DIAG_DENSITY").is_ok() {
        // Density (per cm²) of the truth follicles within 5 mm of each mapped cell, and of the
        // map's natural follicles, by truth class: percentiles 10/50/90.
        let truth_pts: Vec<[f64; 3]> = patient.truth_follicles_head().to_vec();
        let mine: Vec<[f64; 3]> =
            map.follicles.iter().filter(|f| f.kind == FollicleKind::Natural).map(|f| f.position()).collect();
        let mut by: std::collections::BTreeMap<(char, char), (Vec<f64>, Vec<f64>)> = std::collections::BTreeMap::new();
        for j in (0..map.regions.ny).step_by(2) {
            for i in (0..map.regions.nx).step_by(2) {
                let fc = map.regions.code_at_cell(i, j);
                if fc == RegionKind::Outside.code() {
                    continue;
                }
                let (x, y) = map.regions.cell_centre(i, j);
                let c = map.surface.sample_head(x, y).0;
                let tc = patient.region_at_head(&c).code();
                let count = |v: &[[f64; 3]]| {
                    v.iter().filter(|p| (Vector3::from(**p) - c.coords).norm() <= 5.0).count() as f64
                        / (std::f64::consts::PI * 0.25)
                };
                let e = by.entry((tc, fc)).or_default();
                e.0.push(count(&truth_pts));
                e.1.push(count(&mine));
            }
        }
        for ((tc, fc), (mut a, mut b)) in by {
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f) as usize];
            println!(
                "density {tc}->{fc} n {}: truth {:.0}/{:.0}/{:.0} map {:.0}/{:.0}/{:.0}",
                a.len(),
                q(&a, 0.1),
                q(&a, 0.5),
                q(&a, 0.9),
                q(&b, 0.1),
                q(&b, 0.5),
                q(&b, 0.9)
            );
        }
    }
    for w in &map.warnings {
        println!("warning: {w}");
    }
}

/// Mean RGB of the 3x3 pixels at `c` and median RGB of the ring 6-9 px out.
fn core_and_ring(t: &CameraView, c: [f64; 2]) -> ([f64; 3], [f64; 3]) {
    let (w, h) = (t.image.width as i64, t.image.height as i64);
    let (cx, cy) = (c[0].round() as i64, c[1].round() as i64);
    let mut core = [0.0; 3];
    let mut n = 0.0f64;
    let mut ring: [Vec<u8>; 3] = Default::default();
    for y in (cy - 9).max(0)..=(cy + 9).min(h - 1) {
        for x in (cx - 9).max(0)..=(cx + 9).min(w - 1) {
            let i = ((y * w + x) * 3) as usize;
            let rho = ((x - cx) as f64).hypot((y - cy) as f64);
            if rho <= 1.5 {
                for (c, v) in core.iter_mut().zip(&t.image.data[i..i + 3]) {
                    *c += f64::from(*v);
                }
                n += 1.0;
            } else if (6.0..=9.0).contains(&rho) {
                for (r, v) in ring.iter_mut().zip(&t.image.data[i..i + 3]) {
                    r.push(*v);
                }
            }
        }
    }
    let med = ring.map(|mut v| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().map_or(f64::NAN, f64::from)
    });
    (core.map(|v| (v / n.max(1.0)).round()), med)
}

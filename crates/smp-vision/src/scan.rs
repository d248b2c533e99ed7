//! Scan planning: which flange-camera positions image the treatable part of the scalp.
//!
//! The overview's 3-D points are binned into a base-frame height map (the overview looks
//! down, so what it sees is a height field); normals come from local plane fits; cells whose
//! tilt from vertical is within the limit (plus a margin), connected to the top of the head,
//! are covered row by row with overlapping tiles in serpentine order.

use nalgebra::{Matrix3, Point2, Vector3};
use smp_core::rig::Rig;

use crate::scalp::ScalpOutline;
use crate::VisionConfig;

/// Size (base x, base y) in mm of what the flange camera sees at its standoff, looking down:
/// the largest axis-aligned rectangle centred on the optical axis inside the image border
/// (distortion included).
pub fn tile_footprint_mm(rig: &Rig) -> [f64; 2] {
    let intr = &rig.flange_camera.intrinsics;
    let rot = rig.base_from_flange_camera_xyz([0.0; 3]).rotation;
    let standoff = rig.flange_camera.standoff_mm;
    let (w, h) = (intr.width_px as f64 - 1.0, intr.height_px as f64 - 1.0);
    let at_standoff = |x: f64, y: f64| {
        let r = rot * intr.ray(&Point2::new(x, y));
        r * (standoff / r.z.abs().max(1e-9))
    };
    let centre = at_standoff(intr.cx_px, intr.cy_px);
    // Which image axis runs along base x decides which edges bound the footprint's x extent.
    let image_x_along_base_x = {
        let ex = rot * Vector3::x();
        ex.x.abs() >= ex.y.abs()
    };
    let n = 16;
    let (mut half_u, mut half_v) = (f64::INFINITY, f64::INFINITY);
    for k in 0..=n {
        let t = k as f64 / n as f64;
        for (x, y) in [(0.0, t * h), (w, t * h)] {
            let p = at_standoff(x, y) - centre;
            half_u = half_u.min(if image_x_along_base_x { p.x.abs() } else { p.y.abs() });
        }
        for (x, y) in [(t * w, 0.0), (t * w, h)] {
            let p = at_standoff(x, y) - centre;
            half_v = half_v.min(if image_x_along_base_x { p.y.abs() } else { p.x.abs() });
        }
    }
    if image_x_along_base_x {
        [2.0 * half_u, 2.0 * half_v]
    } else {
        [2.0 * half_v, 2.0 * half_u]
    }
}

/// A cell of the overview height map.
#[derive(Debug, Clone, Copy)]
struct Cell {
    z_mm: f64,
    count: usize,
}

/// Machine positions (xyz profile) of flange-camera tiles covering the part of the scalp
/// whose surface tilt from vertical is `<= max_tilt_deg` (plus `cfg.tilt_margin_deg`), with
/// `cfg.tile_overlap` overlap. Rows run along base y, tiles along base x, serpentine.
/// Empty when the outline holds no such area.
pub fn scan_positions(rig: &Rig, outline: &ScalpOutline, max_tilt_deg: f64, cfg: &VisionConfig) -> Vec<[f64; 3]> {
    let cell = 2.0_f64;
    let pts: Vec<&[f64; 3]> = outline.points_base.iter().filter(|p| p.iter().all(|v| v.is_finite())).collect();
    if pts.is_empty() {
        return Vec::new();
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
    for p in &pts {
        x0 = x0.min(p[0]);
        y0 = y0.min(p[1]);
        x1 = x1.max(p[0]);
        y1 = y1.max(p[1]);
    }
    let nx = ((x1 - x0) / cell).floor() as usize + 1;
    let ny = ((y1 - y0) / cell).floor() as usize + 1;
    if nx * ny > 4_000_000 {
        return Vec::new();
    }
    // Height map: highest z per cell (the overview sees the top surface).
    let mut grid: Vec<Option<Cell>> = vec![None; nx * ny];
    for p in &pts {
        let i = (((p[0] - x0) / cell) as usize).min(nx - 1);
        let j = (((p[1] - y0) / cell) as usize).min(ny - 1);
        let c = grid[j * nx + i].get_or_insert(Cell { z_mm: 0.0, count: 0 });
        c.z_mm += p[2];
        c.count += 1;
    }
    for c in grid.iter_mut().flatten() {
        c.z_mm /= c.count as f64;
    }
    let centre = |i: usize, j: usize| (x0 + (i as f64 + 0.5) * cell, y0 + (j as f64 + 0.5) * cell);

    // Normals by local plane fit over cells within the radius.
    let r_cells = (cfg.normal_radius_mm / cell).ceil() as i64;
    let cos_limit = (max_tilt_deg + cfg.tilt_margin_deg).clamp(0.0, 89.0).to_radians().cos();
    let mut flat = vec![false; nx * ny];
    for j in 0..ny {
        for i in 0..nx {
            let Some(c) = grid[j * nx + i] else { continue };
            let (cx, cy) = centre(i, j);
            let mut nbrs = Vec::new();
            for dj in -r_cells..=r_cells {
                for di in -r_cells..=r_cells {
                    let (ii, jj) = (i as i64 + di, j as i64 + dj);
                    if ii < 0 || jj < 0 || ii >= nx as i64 || jj >= ny as i64 {
                        continue;
                    }
                    if let Some(n) = grid[jj as usize * nx + ii as usize] {
                        let (px, py) = centre(ii as usize, jj as usize);
                        if (px - cx).hypot(py - cy) <= cfg.normal_radius_mm {
                            nbrs.push(Vector3::new(px - cx, py - cy, n.z_mm - c.z_mm));
                        }
                    }
                }
            }
            // A plane needs neighbours on all sides: cells at the silhouette are not judged.
            let full = std::f64::consts::PI * (cfg.normal_radius_mm / cell).powi(2);
            if (nbrs.len() as f64) < 0.6 * full {
                continue;
            }
            let mean = nbrs.iter().fold(Vector3::zeros(), |a, v| a + v) / nbrs.len() as f64;
            let mut cov = Matrix3::zeros();
            for v in &nbrs {
                let d = v - mean;
                cov += d * d.transpose();
            }
            let eig = cov.symmetric_eigen();
            let n = eig.eigenvectors.column(eig.eigenvalues.imin()).into_owned();
            flat[j * nx + i] = n.z.abs() >= cos_limit;
        }
    }

    // Keep the flat region connected to the top of the head (not a flat spot on the face).
    let top_i = (((outline.top_base_mm[0] - x0) / cell).max(0.0) as usize).min(nx - 1);
    let top_j = (((outline.top_base_mm[1] - y0) / cell).max(0.0) as usize).min(ny - 1);
    let seed = (0..nx * ny).filter(|k| flat[*k]).min_by(|a, b| {
        let d = |k: usize| ((k % nx) as f64 - top_i as f64).hypot((k / nx) as f64 - top_j as f64);
        d(*a).total_cmp(&d(*b)).then(a.cmp(b))
    });
    let Some(seed) = seed else { return Vec::new() };
    let mut selected = vec![false; nx * ny];
    let mut stack = vec![seed];
    selected[seed] = true;
    while let Some(k) = stack.pop() {
        let (i, j) = ((k % nx) as i64, (k / nx) as i64);
        for (di, dj) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
            let (ii, jj) = (i + di, j + dj);
            if ii < 0 || jj < 0 || ii >= nx as i64 || jj >= ny as i64 {
                continue;
            }
            let kk = jj as usize * nx + ii as usize;
            if flat[kk] && !selected[kk] {
                selected[kk] = true;
                stack.push(kk);
            }
        }
    }

    // Extent of the selection, grown by the margin.
    let margin = cfg.coverage_margin_mm + 0.5 * cell;
    let sel: Vec<(f64, f64)> = (0..nx * ny).filter(|k| selected[*k]).map(|k| centre(k % nx, k / nx)).collect();
    let fp = tile_footprint_mm(rig);
    let (step_x, step_y) = (fp[0] * (1.0 - cfg.tile_overlap), fp[1] * (1.0 - cfg.tile_overlap));
    let ys0 = sel.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) - margin;
    let ys1 = sel.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max) + margin;
    let n_rows = tiles_needed(ys1 - ys0, fp[1], step_y);
    let row0 = 0.5 * (ys0 + ys1) - 0.5 * (n_rows - 1) as f64 * step_y;

    let mut out = Vec::new();
    for r in 0..n_rows {
        let yc = row0 + r as f64 * step_y;
        let in_band: Vec<f64> = sel.iter().filter(|p| (p.1 - yc).abs() <= 0.5 * fp[1] + margin).map(|p| p.0).collect();
        if in_band.is_empty() {
            continue;
        }
        let xs0 = in_band.iter().copied().fold(f64::INFINITY, f64::min) - margin;
        let xs1 = in_band.iter().copied().fold(f64::NEG_INFINITY, f64::max) + margin;
        let n_cols = tiles_needed(xs1 - xs0, fp[0], step_x);
        let col0 = 0.5 * (xs0 + xs1) - 0.5 * (n_cols - 1) as f64 * step_x;
        let mut row: Vec<[f64; 3]> = (0..n_cols)
            .map(|c| {
                let xc = col0 + c as f64 * step_x;
                let z = local_height(&grid, nx, ny, x0, y0, cell, xc, yc, fp).unwrap_or(outline.top_base_mm[2]);
                rig.machine_for_camera_over_xyz([xc, yc, z])
            })
            .collect();
        if r % 2 == 1 {
            row.reverse();
        }
        out.extend(row);
    }
    out
}

/// Tiles of size `size` at pitch `step` needed to cover `span`.
fn tiles_needed(span: f64, size: f64, step: f64) -> usize {
    if span <= size {
        1
    } else {
        ((span - size) / step).ceil() as usize + 1
    }
}

/// Surface height under a tile centre: the mean of the height map within 4 mm, else the
/// mean over the tile's footprint (a tile hanging over the edge of the head).
#[allow(clippy::too_many_arguments)]
fn local_height(
    grid: &[Option<Cell>],
    nx: usize,
    ny: usize,
    x0: f64,
    y0: f64,
    cell: f64,
    xc: f64,
    yc: f64,
    fp: [f64; 2],
) -> Option<f64> {
    let mean_in = |hx: f64, hy: f64, round: bool| {
        let i0 = (((xc - hx - x0) / cell).floor().max(0.0)) as usize;
        let i1 = (((xc + hx - x0) / cell).ceil().max(0.0) as usize).min(nx);
        let j0 = (((yc - hy - y0) / cell).floor().max(0.0)) as usize;
        let j1 = (((yc + hy - y0) / cell).ceil().max(0.0) as usize).min(ny);
        let (mut s, mut n) = (0.0, 0usize);
        for j in j0..j1 {
            for i in i0..i1 {
                if let Some(c) = grid[j * nx + i] {
                    let (px, py) = (x0 + (i as f64 + 0.5) * cell, y0 + (j as f64 + 0.5) * cell);
                    let inside = if round {
                        (px - xc).hypot(py - yc) <= hx
                    } else {
                        (px - xc).abs() <= hx && (py - yc).abs() <= hy
                    };
                    if inside {
                        s += c.z_mm;
                        n += 1;
                    }
                }
            }
        }
        (n > 0).then(|| s / n as f64)
    };
    mean_in(4.0, 4.0, true).or_else(|| mean_in(0.5 * fp[0], 0.5 * fp[1], false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smp_core::image::GrayImage;

    /// Outline of a sphere cap (radius 100, centre at base z 150) sampled every 1 mm.
    fn sphere_outline() -> ScalpOutline {
        let mut pts = Vec::new();
        let r = 100.0;
        let mut x = -95.0;
        while x <= 95.0 {
            let mut y = -95.0;
            while y <= 95.0 {
                let d2: f64 = x * x + y * y;
                if d2 < r * r * 0.95 {
                    pts.push([250.0 + x, y, 150.0 + (r * r - d2).sqrt()]);
                }
                y += 1.0;
            }
            x += 1.0;
        }
        ScalpOutline {
            label: "overview".into(),
            points_base: pts,
            top_base_mm: [250.0, 0.0, 250.0],
            mask: GrayImage::new(1, 1, 255),
            mask_area_px: 1,
            warnings: vec![],
        }
    }

    #[test]
    fn footprint_matches_intrinsics() {
        let rig = Rig::default_sim();
        let fp = tile_footprint_mm(&rig);
        // 800 x 600 px at f = 2000 px, 80 mm: 32 x 24 mm (barrel distortion widens slightly).
        assert!((fp[0] - 32.0).abs() < 1.5 && (fp[1] - 24.0).abs() < 1.5, "{fp:?}");
    }

    #[test]
    fn tiles_cover_the_flat_cap_with_overlap_and_standoff() {
        let rig = Rig::default_sim();
        let outline = sphere_outline();
        let cfg = VisionConfig::default();
        let tiles = scan_positions(&rig, &outline, 25.0, &cfg);
        assert!(tiles.len() >= 9 && tiles.len() <= 40, "{} tiles", tiles.len());
        let fp = tile_footprint_mm(&rig);
        let cams: Vec<_> = tiles.iter().map(|m| rig.base_from_flange_camera_xyz(*m).translation.vector).collect();
        // Every point of the cap within 25 degrees of vertical lies in some tile's footprint.
        let r_limit = 100.0 * 25f64.to_radians().sin();
        for p in &outline.points_base {
            let (dx, dy) = (p[0] - 250.0, p[1]);
            if dx.hypot(dy) > r_limit {
                continue;
            }
            let covered = cams.iter().any(|c| (c.x - p[0]).abs() <= 0.5 * fp[0] && (c.y - p[1]).abs() <= 0.5 * fp[1]);
            assert!(covered, "point {p:?} not imaged");
        }
        // Cameras sit the standoff above the surface under them (within the cap's sag).
        for c in &cams {
            let d2 = (c.x - 250.0).powi(2) + c.y.powi(2);
            let surface = 150.0 + (100.0f64 * 100.0 - d2).max(0.0).sqrt();
            assert!((c.z - surface - rig.flange_camera.standoff_mm).abs() < 1.5, "camera {c:?}");
        }
        // Serpentine: consecutive tiles are neighbours.
        for pair in cams.windows(2) {
            assert!((pair[0] - pair[1]).norm() < 1.5 * fp[0], "jump between tiles {pair:?}");
        }
        // Deterministic.
        assert_eq!(tiles, scan_positions(&rig, &outline, 25.0, &cfg));
        // Narrower limit, fewer tiles.
        assert!(scan_positions(&rig, &outline, 10.0, &cfg).len() < tiles.len());
    }

    #[test]
    fn empty_outline_gives_no_tiles() {
        let mut o = sphere_outline();
        o.points_base.clear();
        assert!(scan_positions(&Rig::default_sim(), &o, 25.0, &VisionConfig::default()).is_empty());
    }
}

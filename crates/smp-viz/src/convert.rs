//! Pure conversions from domain types to the plain buffers rerun archetypes are built from.
//!
//! Kept free of rerun so that the geometry (mesh triangulation, image downsampling, pinhole
//! scaling, progressive snapshots) is unit-tested without writing a recording.

use std::collections::BTreeMap;

use smp_core::camera::CameraIntrinsics;
use smp_core::image::{DepthImage, RgbImage};
use smp_core::map::{CellGrid, FollicleKind, RegionKind, ScalpMap};
use smp_core::plan::{DotState, Zone};

/// Every zone, in class-id order (class id = index + 1; 0 is rerun's "no class").
pub(crate) const ZONES: [Zone; 6] = Zone::ALL;

/// Every dot state, in class-id order (class id = index + 1).
pub(crate) const DOT_STATES: [DotState; 7] = DotState::ALL;

pub(crate) fn zone_name(zone: Zone) -> &'static str {
    zone.as_str()
}

pub(crate) fn zone_class(zone: Zone) -> u16 {
    ZONES.iter().position(|z| *z == zone).map_or(0, |i| i as u16 + 1)
}

/// Warm colours at the front, cool at the back, magenta for scars.
pub(crate) fn zone_rgb(zone: Zone) -> [u8; 3] {
    match zone {
        Zone::Hairline => [255, 200, 0],
        Zone::Frontal => [255, 128, 0],
        Zone::MidScalp => [0, 170, 255],
        Zone::Crown => [50, 90, 255],
        Zone::Temple => [160, 80, 255],
        Zone::Scar => [255, 0, 160],
    }
}

pub(crate) fn dot_state_class(state: DotState) -> u16 {
    DOT_STATES.iter().position(|s| *s == state).map_or(0, |i| i as u16 + 1)
}

/// Traffic-light colours: done is green, a dot that may or may not be tattooed is red.
pub(crate) fn dot_state_rgb(state: DotState) -> [u8; 3] {
    match state {
        DotState::Planned => [150, 150, 150],
        DotState::Sent => [255, 230, 0],
        DotState::Accepted => [255, 150, 0],
        DotState::Executed => [0, 200, 60],
        DotState::Verified => [0, 200, 200],
        DotState::Uncertain => [255, 0, 0],
        DotState::Skipped => [90, 90, 90],
    }
}

/// Natural follicles dark brown, earlier SMP dots blue-black, so QA tells them apart.
pub(crate) fn follicle_rgb(kind: FollicleKind) -> [u8; 3] {
    match kind {
        FollicleKind::Natural => [70, 40, 20],
        FollicleKind::SmpDot => [30, 60, 160],
    }
}

/// `None` for `Outside`, which is never drawn.
pub(crate) fn region_rgb(region: RegionKind) -> Option<[u8; 3]> {
    match region {
        RegionKind::Outside => None,
        RegionKind::Hair => Some([110, 75, 50]),
        RegionKind::Thinning => Some([215, 160, 115]),
        RegionKind::Bald => Some([245, 205, 175]),
        RegionKind::Scar => Some([205, 95, 125]),
    }
}

pub(crate) fn f32x3(p: [f64; 3]) -> [f32; 3] {
    [p[0] as f32, p[1] as f32, p[2] as f32]
}

/// A triangle mesh with one colour per vertex, in the head frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MeshBuffers {
    pub positions: Vec<[f32; 3]>,
    pub normals: Vec<[f32; 3]>,
    pub colors: Vec<[u8; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

/// Triangulates the map's surface patch over its region grid, one flat-coloured quad per
/// (coarsened) non-`Outside` cell, clipped to the patch's x/y range where the polynomial is
/// valid (it extrapolates wildly outside). Cells are merged `stride x stride` so that at
/// most about `max_quads` quads are emitted; a merged cell takes its most frequent region.
pub(crate) fn surface_mesh(map: &ScalpMap, max_quads: usize) -> MeshBuffers {
    let grid = &map.regions;
    let surface = &map.surface;
    let mut mesh = MeshBuffers::default();
    if grid.nx == 0 || grid.ny == 0 || !grid.cell_mm.is_finite() || grid.cell_mm <= 0.0 || grid.rows.len() != grid.ny {
        return mesh;
    }
    let stride = mesh_stride(grid, max_quads);
    let [xmin, xmax] = surface.x_range_mm;
    let [ymin, ymax] = surface.y_range_mm;
    for cj in 0..grid.ny.div_ceil(stride) {
        for ci in 0..grid.nx.div_ceil(stride) {
            let (i0, i1) = (ci * stride, ((ci + 1) * stride).min(grid.nx));
            let (j0, j1) = (cj * stride, ((cj + 1) * stride).min(grid.ny));
            let Some(region) = dominant_region(grid, i0..i1, j0..j1) else { continue };
            let Some(rgb) = region_rgb(region) else { continue };
            let x0 = (grid.origin_x_mm + i0 as f64 * grid.cell_mm).max(xmin);
            let x1 = (grid.origin_x_mm + i1 as f64 * grid.cell_mm).min(xmax);
            let y0 = (grid.origin_y_mm + j0 as f64 * grid.cell_mm).max(ymin);
            let y1 = (grid.origin_y_mm + j1 as f64 * grid.cell_mm).min(ymax);
            if !(x1 > x0 && y1 > y0) {
                continue;
            }
            let base = mesh.positions.len() as u32;
            // Counter-clockwise seen from the patch's +z (outward), so faces point out of the head.
            for (x, y) in [(x0, y0), (x1, y0), (x1, y1), (x0, y1)] {
                let (p, n) = surface.sample_head(x, y);
                if !(p.coords.iter().all(|v| v.is_finite()) && n.iter().all(|v| v.is_finite())) {
                    // A broken fit must not poison the whole mesh; drop the quad's vertices.
                    mesh.positions.truncate(base as usize);
                    mesh.normals.truncate(base as usize);
                    mesh.colors.truncate(base as usize);
                    break;
                }
                mesh.positions.push([p.x as f32, p.y as f32, p.z as f32]);
                mesh.normals.push([n.x as f32, n.y as f32, n.z as f32]);
                mesh.colors.push(rgb);
            }
            if mesh.positions.len() == base as usize + 4 {
                mesh.triangles.push([base, base + 1, base + 2]);
                mesh.triangles.push([base, base + 2, base + 3]);
            }
        }
    }
    mesh
}

/// Smallest merge factor that keeps the quad count at or under `max_quads`.
///
/// Starts from the bound given by the number of inside cells and counts the blocks that
/// actually hold an inside cell, since scattered cells fill more blocks than their number
/// divided by the block area.
fn mesh_stride(grid: &CellGrid, max_quads: usize) -> usize {
    let max_quads = max_quads.max(1);
    let inside_cells = grid.nx * grid.ny - grid.count('.');
    let mut stride = 1usize;
    while inside_cells.div_ceil(stride * stride) > max_quads {
        stride += 1;
    }
    while occupied_blocks(grid, stride) > max_quads {
        stride += 1;
    }
    stride
}

/// Number of `stride x stride` blocks holding at least one non-`Outside` cell.
fn occupied_blocks(grid: &CellGrid, stride: usize) -> usize {
    let bx = grid.nx.div_ceil(stride);
    let mut occupied = vec![false; bx * grid.ny.div_ceil(stride)];
    for (j, row) in grid.rows.iter().enumerate().take(grid.ny) {
        for (i, c) in row.bytes().enumerate().take(grid.nx) {
            if c != b'.' {
                occupied[(j / stride) * bx + i / stride] = true;
            }
        }
    }
    occupied.iter().filter(|o| **o).count()
}

/// Most frequent non-`Outside` region among the cells; ties go to the first in enum order.
fn dominant_region(grid: &CellGrid, is: std::ops::Range<usize>, js: std::ops::Range<usize>) -> Option<RegionKind> {
    let mut counts: BTreeMap<RegionKind, usize> = BTreeMap::new();
    for j in js {
        let row = grid.rows.get(j)?.as_bytes();
        for i in is.clone() {
            let code = *row.get(i)? as char;
            match RegionKind::from_code(code) {
                Some(RegionKind::Outside) | None => {}
                Some(r) => *counts.entry(r).or_default() += 1,
            }
        }
    }
    let best = counts.values().copied().max()?;
    counts.into_iter().find(|(_, c)| *c == best).map(|(r, _)| r)
}

/// Integer factor that brings the longer side of a `width x height` image to at most
/// `max_side_px` (0 keeps full resolution).
pub(crate) fn downsample_factor(width: u32, height: u32, max_side_px: u32) -> u32 {
    if max_side_px == 0 {
        return 1;
    }
    width.max(height).div_ceil(max_side_px).max(1)
}

/// Box-filters an image by an integer factor (the right/bottom remainder is cropped), so that
/// viz files stay small; returns the input unchanged for factor 1 or a malformed buffer.
pub(crate) fn downsample(img: &RgbImage, factor: u32) -> RgbImage {
    let expected = img.width as usize * img.height as usize * 3;
    if factor <= 1 || img.data.len() != expected || img.width < factor || img.height < factor {
        return img.clone();
    }
    let (w, h) = (img.width / factor, img.height / factor);
    let k = factor as usize;
    let src_w = img.width as usize;
    let mut data = Vec::with_capacity(w as usize * h as usize * 3);
    let area = (k * k) as u32;
    for y in 0..h as usize {
        for x in 0..w as usize {
            let mut acc = [0u32; 3];
            for dy in 0..k {
                let row = (y * k + dy) * src_w;
                for dx in 0..k {
                    let i = (row + x * k + dx) * 3;
                    acc[0] += img.data[i] as u32;
                    acc[1] += img.data[i + 1] as u32;
                    acc[2] += img.data[i + 2] as u32;
                }
            }
            data.extend(acc.map(|a| ((a + area / 2) / area) as u8));
        }
    }
    RgbImage { width: w, height: h, data }
}

/// Pinhole parameters in rerun's convention for an image downsampled by `factor`.
///
/// OpenCV puts pixel centres at integer coordinates, rerun at half-integers, hence the
/// `+ 0.5`; dividing the shifted principal point by the factor is exact for box downsampling.
/// Distortion is dropped: rerun's pinhole has none, which only bends the frustum picture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PinholeParams {
    pub focal_px: [f32; 2],
    pub principal_px: [f32; 2],
    pub resolution_px: [f32; 2],
}

pub(crate) fn pinhole_params(k: &CameraIntrinsics, factor: u32, width: u32, height: u32) -> PinholeParams {
    let f = factor.max(1) as f64;
    PinholeParams {
        focal_px: [(k.fx_px / f) as f32, (k.fy_px / f) as f32],
        principal_px: [((k.cx_px + 0.5) / f) as f32, ((k.cy_px + 0.5) / f) as f32],
        resolution_px: [width as f32, height as f32],
    }
}

/// Median of the finite depths (sampled on a sparse lattice: this only places the image
/// plane of the frustum near the skin), `None` without any return.
pub(crate) fn median_depth_mm(depth: &DepthImage) -> Option<f32> {
    const STEP: usize = 7;
    let mut samples: Vec<f32> =
        depth.z_mm.iter().step_by(STEP).copied().filter(|z| z.is_finite() && *z > 0.0).collect();
    if samples.is_empty() {
        return None;
    }
    let mid = samples.len() / 2;
    let (_, m, _) = samples.select_nth_unstable_by(mid, f32::total_cmp);
    Some(*m)
}

/// Entity-path-safe version of a free-form label: keeps `[A-Za-z0-9_-]`, maps the rest to `_`.
pub(crate) fn sanitize_label(label: &str) -> String {
    let s: String =
        label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.is_empty() {
        "unnamed".to_owned()
    } else {
        s
    }
}

/// Decides when a growing point set is re-logged as a whole.
///
/// Rerun shows the latest value of an entity at the time cursor, so a set that should grow
/// over time (executed dots, needle entries) has to be logged as cumulative snapshots.
/// Snapshotting after every change would cost O(n^2) bytes; waiting for
/// `max(min_step, len / 32)` changes keeps the total O(n) (at most ~32 snapshots per
/// doubling) while the picture still advances in steps of about 3 %.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotPacer {
    min_step: usize,
    pending: usize,
}

impl SnapshotPacer {
    pub(crate) fn new(min_step: usize) -> Self {
        SnapshotPacer { min_step: min_step.max(1), pending: 0 }
    }

    /// Records one change to a set now holding `len` items; true when a snapshot is due.
    pub(crate) fn record(&mut self, len: usize) -> bool {
        self.pending += 1;
        self.pending >= self.min_step.max(len / 32)
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.pending > 0
    }

    pub(crate) fn snapshot_taken(&mut self) {
        self.pending = 0;
    }
}

/// Latest known state and position of every dot that left `Planned`, keyed by id so that
/// snapshots list dots in a stable order.
#[derive(Debug, Clone, Default)]
pub(crate) struct DotBoard {
    dots: BTreeMap<u32, (DotState, [f32; 3])>,
}

impl DotBoard {
    pub(crate) fn update(&mut self, dot_id: u32, state: DotState, p_head: [f32; 3]) {
        self.dots.insert(dot_id, (state, p_head));
    }

    pub(crate) fn len(&self) -> usize {
        self.dots.len()
    }

    pub(crate) fn snapshot(&self) -> (Vec<[f32; 3]>, Vec<u16>) {
        self.dots.values().map(|(s, p)| (*p, dot_state_class(*s))).unzip()
    }
}

/// Time on the `session_time` timeline; rerun rejects negative or non-finite durations.
pub(crate) fn clamp_time_s(t: f64) -> f64 {
    if t.is_finite() && t > 0.0 {
        t
    } else {
        0.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nalgebra::{Isometry3, Vector3};
    use smp_core::geometry::{PoseSpec, SurfacePatch};

    /// A dome `z = 90 - (x^2 + y^2) / 200` over [-50, 50]^2, patch frame == head frame.
    pub(crate) fn dome_map(nx: usize, ny: usize, cell_mm: f64) -> ScalpMap {
        let mut regions = CellGrid::filled(-50.0, -50.0, cell_mm, nx, ny, 'B');
        for j in 0..ny {
            regions.set(0, j, '.');
            regions.set(1.min(nx - 1), j, 'H');
        }
        ScalpMap {
            version: 1,
            base_from_head: PoseSpec::identity(),
            surface: SurfacePatch {
                head_from_patch: Isometry3::identity(),
                degree: 2,
                coefficients: vec![90.0, 0.0, 0.0, -50.0, 0.0, -50.0],
                scale_mm: 100.0,
                x_range_mm: [-50.0, 50.0],
                y_range_mm: [-50.0, 50.0],
                fit_rms_mm: 0.01,
            },
            regions,
            follicles: vec![],
            skin: None,
            warnings: vec![],
        }
    }

    #[test]
    fn mesh_covers_inside_cells_only_and_lies_on_the_surface() {
        let map = dome_map(10, 10, 10.0);
        let mesh = surface_mesh(&map, 10_000);
        // column 0 is outside: 9 columns x 10 rows of quads
        assert_eq!(mesh.triangles.len(), 2 * 90);
        assert_eq!(mesh.positions.len(), 4 * 90);
        for (p, n) in mesh.positions.iter().zip(&mesh.normals) {
            assert!(p[0] >= -40.0 - 1e-4, "vertex {p:?} lies in the outside column");
            let z = 90.0 - (p[0] as f64 * p[0] as f64 + p[1] as f64 * p[1] as f64) / 200.0;
            assert!((p[2] as f64 - z).abs() < 1e-3, "vertex {p:?} off the surface (z {z})");
            assert!(n[2] > 0.0, "normal {n:?} points into the head");
        }
        for t in &mesh.triangles {
            assert!(t.iter().all(|i| (*i as usize) < mesh.positions.len()));
            // winding: geometric normal agrees with the outward vertex normal
            let [a, b, c] = t.map(|i| Vector3::from(mesh.positions[i as usize]).cast::<f64>());
            let face = (b - a).cross(&(c - a));
            assert!(face.z > 0.0, "triangle {t:?} faces inward");
        }
        let hair = region_rgb(RegionKind::Hair).expect("colour");
        assert_eq!(mesh.colors.iter().filter(|c| **c == hair).count(), 4 * 10);
    }

    #[test]
    fn mesh_coarsens_to_respect_the_quad_budget() {
        let map = dome_map(100, 100, 1.0);
        let mesh = surface_mesh(&map, 500);
        assert!(mesh.triangles.len() / 2 <= 500, "{} quads", mesh.triangles.len() / 2);
        assert!(mesh.triangles.len() / 2 >= 250, "coarsened too much: {} quads", mesh.triangles.len() / 2);
    }

    #[test]
    fn mesh_is_clipped_to_the_patch_range_and_empty_for_an_outside_map() {
        let mut map = dome_map(10, 10, 10.0);
        map.regions.origin_x_mm = -70.0; // grid extends 20 mm beyond the patch on -x
        let mesh = surface_mesh(&map, 10_000);
        assert!(mesh.positions.iter().all(|p| p[0] >= -50.0 - 1e-4));
        map.regions = CellGrid::filled(-50.0, -50.0, 10.0, 10, 10, '.');
        assert!(surface_mesh(&map, 10_000).triangles.is_empty());
    }

    proptest::proptest! {
        /// Any region raster and budget: indices valid, four vertices per quad, budget kept,
        /// every vertex inside the patch range and on the surface.
        #[test]
        fn mesh_invariants(
            nx in 1usize..30,
            ny in 1usize..30,
            codes in proptest::collection::vec(0usize..5, 900),
            max_quads in 1usize..400,
            curvature in -0.02f64..0.02,
        ) {
            let mut map = dome_map(nx, ny, 100.0 / nx.max(ny) as f64);
            map.surface.coefficients = vec![90.0, 0.0, 0.0, curvature * 1e4, 0.0, -50.0];
            for j in 0..ny {
                for i in 0..nx {
                    map.regions.set(i, j, ['.', 'H', 'T', 'B', 'S'][codes[j * nx + i]]);
                }
            }
            let mesh = surface_mesh(&map, max_quads);
            let quads = mesh.triangles.len() / 2;
            proptest::prop_assert!(quads <= max_quads);
            proptest::prop_assert_eq!(mesh.positions.len(), 4 * quads);
            proptest::prop_assert_eq!(mesh.normals.len(), mesh.positions.len());
            proptest::prop_assert_eq!(mesh.colors.len(), mesh.positions.len());
            let inside = map.regions.nx * map.regions.ny - map.regions.count('.');
            proptest::prop_assert_eq!(inside == 0, quads == 0);
            for t in &mesh.triangles {
                proptest::prop_assert!(t.iter().all(|i| (*i as usize) < mesh.positions.len()));
            }
            for p in &mesh.positions {
                let (x, y) = (p[0] as f64, p[1] as f64);
                proptest::prop_assert!((-50.001..=50.001).contains(&x) && (-50.001..=50.001).contains(&y));
                proptest::prop_assert!((p[2] as f64 - map.surface.height(x, y)).abs() < 1e-3);
            }
        }

        /// A point projects onto the same spot of the downsampled image through the scaled
        /// pinhole as through the original intrinsics (OpenCV pixel centres -> rerun's).
        #[test]
        fn scaled_pinhole_projects_consistently(
            fx in 100.0f64..5000.0,
            cx in 0.0f64..1000.0,
            factor in 1u32..5,
            x in -0.5f64..0.5,
        ) {
            let k = CameraIntrinsics {
                width_px: 1000, height_px: 1000, fx_px: fx, fy_px: fx, cx_px: cx, cy_px: cx, distortion: [0.0; 5],
            };
            let u_cv = fx * x + cx; // x is the normalised coordinate X/Z
            let p = pinhole_params(&k, factor, 1000 / factor, 1000 / factor);
            let u_rr = p.focal_px[0] as f64 * x + p.principal_px[0] as f64;
            // rerun puts the centre of downsampled pixel i at i + 0.5, covering source pixels
            // i*k .. i*k + k - 1 whose centres average to i*k + (k - 1) / 2 in OpenCV terms.
            let expected = (u_cv + 0.5) / factor as f64;
            proptest::prop_assert!((u_rr - expected).abs() < 1e-3);
        }
    }

    #[test]
    fn stride_is_minimal() {
        let full = |n: usize| CellGrid::filled(0.0, 0.0, 1.0, n, n, 'B');
        assert_eq!(mesh_stride(&CellGrid::filled(0.0, 0.0, 1.0, 9, 9, '.'), 10), 1);
        assert_eq!(mesh_stride(&full(3), 9), 1);
        assert_eq!(mesh_stride(&full(3), 8), 2); // 2x2 blocks over 3x3 cells: 4 quads
        assert_eq!(mesh_stride(&full(6), 9), 2);
        assert_eq!(mesh_stride(&full(6), 8), 3);
        assert_eq!(mesh_stride(&full(4), 0), 4);
        // 4 corner cells of a 4x4 grid land in 4 separate blocks at strides 2 and 3
        let mut sparse = CellGrid::filled(0.0, 0.0, 1.0, 4, 4, '.');
        for (i, j) in [(0, 0), (3, 0), (0, 3), (3, 3)] {
            sparse.set(i, j, 'B');
        }
        assert_eq!(mesh_stride(&sparse, 4), 1);
        assert_eq!(mesh_stride(&sparse, 3), 4);
        assert_eq!(mesh_stride(&sparse, 1), 4);
    }

    #[test]
    fn downsample_averages_blocks_and_pinhole_follows() {
        let mut img = RgbImage::new(5, 4, [0, 0, 0]);
        img.put(0, 0, [100, 0, 0]);
        img.put(1, 1, [100, 0, 0]);
        img.put(2, 0, [10, 20, 30]);
        let d = downsample(&img, 2);
        assert_eq!((d.width, d.height), (2, 2));
        assert_eq!(d.get(0, 0), [50, 0, 0]);
        assert_eq!(d.get(1, 0), [3, 5, 8]); // (10+2)/4 = 3, (20+2)/4 = 5, (30+2)/4 = 8
        assert_eq!(downsample(&img, 1), img);
        assert_eq!(downsample_factor(800, 600, 400), 2);
        assert_eq!(downsample_factor(1280, 960, 1280), 1);
        assert_eq!(downsample_factor(1281, 960, 1280), 2);
        assert_eq!(downsample_factor(800, 600, 0), 1);

        let k = CameraIntrinsics {
            width_px: 800,
            height_px: 600,
            fx_px: 2000.0,
            fy_px: 1900.0,
            cx_px: 399.5,
            cy_px: 299.5,
            distortion: [0.0; 5],
        };
        let p = pinhole_params(&k, 2, 400, 300);
        assert_eq!(p.focal_px, [1000.0, 950.0]);
        // the optical centre stays at the image centre after downsampling
        assert_eq!(p.principal_px, [200.0, 150.0]);
        assert_eq!(p.resolution_px, [400.0, 300.0]);
    }

    #[test]
    fn median_depth_ignores_holes() {
        let mut z = vec![f32::NAN; 700];
        for (i, v) in z.iter_mut().enumerate().step_by(7) {
            if i % 2 == 0 {
                *v = 80.0 + (i % 3) as f32;
            }
        }
        let depth = DepthImage { width: 700, height: 1, z_mm: z };
        let m = median_depth_mm(&depth).expect("has returns");
        assert!((80.0..=82.0).contains(&m));
        let empty = DepthImage { width: 2, height: 1, z_mm: vec![f32::NAN; 2] };
        assert_eq!(median_depth_mm(&empty), None);
    }

    #[test]
    fn labels_become_single_path_parts() {
        assert_eq!(sanitize_label("flange 003/a"), "flange_003_a");
        assert_eq!(sanitize_label("tile-7_b"), "tile-7_b");
        assert_eq!(sanitize_label(""), "unnamed");
    }

    #[test]
    fn pacer_bounds_total_snapshot_volume() {
        let mut pacer = SnapshotPacer::new(64);
        let mut board = DotBoard::default();
        let mut volume = 0usize;
        let n = 30_000u32;
        for id in 0..n {
            board.update(id, DotState::Executed, [0.0; 3]);
            if pacer.record(board.len()) {
                volume += board.len();
                pacer.snapshot_taken();
            }
        }
        // O(n): bounded by ~32 * 2 * n in theory, far less in practice
        assert!(volume < 40 * n as usize, "snapshot volume {volume}");
        assert!(volume > n as usize, "too few snapshots to show progress: {volume}");
        let (pos, classes) = board.snapshot();
        assert_eq!(pos.len(), n as usize);
        assert!(classes.iter().all(|c| *c == dot_state_class(DotState::Executed)));
    }

    #[test]
    fn class_ids_are_distinct_and_nonzero() {
        let mut zones: Vec<u16> = ZONES.iter().map(|z| zone_class(*z)).collect();
        zones.dedup();
        assert_eq!(zones, vec![1, 2, 3, 4, 5, 6]);
        let states: Vec<u16> = DOT_STATES.iter().map(|s| dot_state_class(*s)).collect();
        assert_eq!(states, vec![1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(clamp_time_s(f64::NAN), 0.0);
        assert_eq!(clamp_time_s(-1.0), 0.0);
        assert_eq!(clamp_time_s(2.5), 2.5);
    }
}

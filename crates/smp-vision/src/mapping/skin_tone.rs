//! The patient's skin tone from the scan: the least hair-covered skin seen face-on, with the
//! rig light's shading and the hair roots' shadow divided out.

use nalgebra::{Isometry3, Point3};
use smp_core::geometry::SurfacePatch;
use smp_core::map::{CellGrid, Follicle, FollicleKind, RegionKind};

use super::regions::cell_skin_area_cm2;
use super::TileWork;
use crate::tone::{median_lab, RootShadow};
use crate::VisionConfig;

/// The skin tone and the follicle densities that set its root-shadow correction are read
/// only from cells some tile saw within this angle of their normal: there every follicle is
/// found, so a cell's class and density are its own. Seen more obliquely, hair-bearing skin
/// whose follicles the detector partly misses reads as thinning, and its root shadow went
/// under-corrected (ΔE00 3.8-4.0 on random patient 1009, Norwood 2).
const TONE_MAX_VIEW_DEG: f64 = 55.0;

/// Fewest skin samples of one region class for the tone to be taken from that class.
const MIN_TONE_SAMPLES: usize = 400;
/// Samples lit by less than this share of full light are left out of the tone (grazing light
/// amplifies noise and model error when divided out).
const MIN_LIT_FRACTION: f64 = 0.6;

/// Median Lab of the skin with the shading of `cfg.flange_light` divided out, from the bald
/// cells if there are enough samples there, else thinning, else hair-bearing ones; scar and
/// unmapped cells never count. The root shadow of the chosen cells' hair is then divided out
/// ([`RootShadow`]), at their natural-follicle density relative to the hair-bearing cells'
/// (or to the nominal full density when the scan saw no hair-bearing skin): a Norwood 2 scan
/// sees only hair-bearing skin, which reads ~5 ΔE00 too dark without it. The shadow's
/// strength is measured from the scan when it holds both thinner and full-hair skin, else
/// the model's value ([`RootShadow::default`]) is assumed.
pub(super) fn skin_under_light(
    work: &[TileWork],
    patch: &SurfacePatch,
    patch_from_head: &Isometry3<f64>,
    regions: &CellGrid,
    cell_view_deg: &[f64],
    follicles: &[Follicle],
    cfg: &VisionConfig,
) -> Option<[f64; 3]> {
    let classes = [RegionKind::Bald, RegionKind::Thinning, RegionKind::Hair];
    let mut by_class: [Vec<[f32; 3]>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for w in work {
        for s in w.samples.iter().filter(|s| !s.dark) {
            let p = patch_from_head * s.p_head;
            let face_on = regions
                .cell_of(p.x, p.y)
                .is_some_and(|(i, j)| cell_view_deg.get(j * regions.nx + i).is_some_and(|a| *a <= TONE_MAX_VIEW_DEG));
            if !face_on {
                continue;
            }
            let code = regions.code_at(p.x, p.y);
            let Some(k) = classes.iter().position(|c| c.code() == code) else { continue };
            let (_, n) = patch.sample_head(p.x, p.y);
            let lit = cfg.flange_light.lit_fraction(n.into(), s.p_head.coords.into(), w.lamp_head.coords.into());
            if lit < MIN_LIT_FRACTION {
                continue;
            }
            let lab = smp_core::color::relight_lab(s.lab.map(f64::from), 1.0 / lit);
            by_class[k].push(lab.map(|v| v as f32));
        }
    }
    let chosen = (0..classes.len())
        .find(|&k| by_class[k].len() >= MIN_TONE_SAMPLES)
        .or_else(|| (0..classes.len()).filter(|&k| !by_class[k].is_empty()).max_by_key(|&k| by_class[k].len()))?;
    let lab = median_lab(&by_class[chosen])?;
    let density = class_density_per_cm2(patch, regions, cell_view_deg, patch_from_head, follicles, &classes);
    let shadow = RootShadow::default();
    let full = match density[2] {
        Some(d) if d > 0.0 => d,
        _ => shadow.nominal_full_density_per_cm2,
    };
    let relative = density[chosen].map_or(0.0, |d| d / full);
    // Where the scan saw both the chosen (less hairy) skin and full hair, the shadow is
    // measured rather than assumed: red light kept under full hair against the chosen cells,
    // q = (1 - s) / (1 - s * relative), solved for s.
    let measured = match (chosen, density[2]) {
        (k, Some(_)) if k != 2 && by_class[2].len() >= MIN_TONE_SAMPLES && relative <= 0.5 => median_lab(&by_class[2])
            .and_then(|hair| {
                let q = crate::tone::lab_to_linear_srgb(hair)[0] / crate::tone::lab_to_linear_srgb(lab)[0];
                let s = (1.0 - q) / (1.0 - q * relative);
                (s.is_finite() && (0.0..=MAX_MEASURED_ROOT_SHADOW).contains(&s)).then_some(s)
            }),
        _ => None,
    };
    let shadow = RootShadow { at_full_density: measured.unwrap_or(shadow.at_full_density), ..shadow };
    Some(shadow.remove(lab, relative))
}

/// Largest root shadow taken from a scan's own hair-bearing against thinner skin; beyond it
/// the difference is something else (a scar, a tan line) and the model's value is used.
const MAX_MEASURED_ROOT_SHADOW: f64 = 0.6;

/// Fewest cells of a region class for its follicle density to be measured (1 cm² at 2 mm).
const MIN_DENSITY_CELLS: usize = 25;

/// Natural-follicle density of each class's cells together, per cm² (`None` for a class with
/// fewer than [`MIN_DENSITY_CELLS`] cells).
fn class_density_per_cm2(
    patch: &SurfacePatch,
    regions: &CellGrid,
    cell_view_deg: &[f64],
    patch_from_head: &Isometry3<f64>,
    follicles: &[Follicle],
    classes: &[RegionKind; 3],
) -> [Option<f64>; 3] {
    let area = cell_skin_area_cm2(patch, regions);
    let mut cells = [0usize; 3];
    let mut cm2 = [0.0f64; 3];
    for j in 0..regions.ny {
        for i in 0..regions.nx {
            if !cell_view_deg.get(j * regions.nx + i).is_some_and(|a| *a <= TONE_MAX_VIEW_DEG) {
                continue;
            }
            let code = regions.code_at_cell(i, j);
            if let Some(k) = classes.iter().position(|c| c.code() == code) {
                cells[k] += 1;
                cm2[k] += area[j * regions.nx + i];
            }
        }
    }
    let mut count = [0usize; 3];
    for f in follicles.iter().filter(|f| f.kind == FollicleKind::Natural) {
        let p = patch_from_head * Point3::new(f.x_mm, f.y_mm, f.z_mm);
        let face_on = regions
            .cell_of(p.x, p.y)
            .is_some_and(|(i, j)| cell_view_deg.get(j * regions.nx + i).is_some_and(|a| *a <= TONE_MAX_VIEW_DEG));
        if let (true, Some(k)) = (face_on, classes.iter().position(|c| c.code() == regions.code_at(p.x, p.y))) {
            count[k] += 1;
        }
    }
    let mut out = [None; 3];
    for k in 0..3 {
        if cells[k] >= MIN_DENSITY_CELLS && cm2[k] > 0.0 {
            out[k] = Some(count[k] as f64 / cm2[k]);
        }
    }
    out
}

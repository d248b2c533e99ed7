//! Steps 1-3 of the pipeline: every input validated, the intake gate, the treatment mask
//! (minus the skin in front of the designed hairline), the density field and the fixed
//! points new dots keep their spacing from; with the warnings that explain what was left out.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smp_core::intake::Clearance;
use smp_core::map::RegionKind;
use smp_core::plan::{SessionSpec, Zone};
use smp_core::rig::AxisProfile;

use crate::{density, geometry, mask, sample, validate};
use crate::{Hairline, HairlineParams, PlanError, PlanRequest, PlannerConfig, ZoneRules};

fn region_name(kind: RegionKind) -> &'static str {
    match kind {
        RegionKind::Outside => "outside",
        RegionKind::Hair => "hair",
        RegionKind::Thinning => "thinning",
        RegionKind::Bald => "bald",
        RegionKind::Scar => "scar",
    }
}

/// Mask, fields and fixed points of a request, before any dot is placed.
pub(crate) struct Prepared<'a> {
    pub(crate) geo: geometry::PatchGeometry<'a>,
    pub(crate) mask: mask::TreatmentMask,
    pub(crate) density: density::DensityField,
    pub(crate) zones: ZoneRules,
    pub(crate) fixed: sample::FixedPoints,
    /// Map follicles (all kinds) and earlier entries, head frame: the hard spacing set.
    pub(crate) obstacles_head: Vec<[f64; 3]>,
    /// Densities (per parameter mm²) below this get no dots.
    pub(crate) min_density: f64,
    pub(crate) warnings: Vec<String>,
}

impl Prepared<'_> {
    /// Zone of a mask cell (its centre), as the plan's zone areas and the metrics count it.
    pub(crate) fn cell_zone(&self, k: usize) -> Zone {
        let z = self.density.body_zone[k];
        if z == Zone::Scar {
            return z;
        }
        if let Some(h) = &self.density.hairline {
            let (x, y) = self.mask.grid.cell_centre(k % self.mask.nx, k / self.mask.nx);
            let d = h.distance_mm(&self.mask, x, y);
            if (0.0..h.band_final_mm).contains(&d) {
                return Zone::Hairline;
            }
        }
        z
    }

    /// Zone of a dot at a parameter point and head position.
    pub(crate) fn dot_zone(&self, x: f64, y: f64, p_head: [f64; 3]) -> Zone {
        let scar = self.mask.cell_index(x, y).is_some_and(|c| self.mask.scar[c]);
        let band = self.density.hairline.as_ref().is_some_and(|h| h.distance_mm(&self.mask, x, y) < h.band_final_mm);
        self.zones.zone(p_head, scar, band)
    }

    pub(crate) fn sampler_input(&self, cfg: &PlannerConfig, spec: &SessionSpec) -> sample::SamplerInput<'_> {
        sample::SamplerInput {
            mask: &self.mask,
            density: &self.density,
            geo: &self.geo,
            fixed: &self.fixed,
            hairline: self.density.hairline.as_ref().map(|h| &h.line),
            min_spacing_mm: spec.min_spacing_mm,
            min_density: self.min_density,
            candidates: cfg.bridson_candidates.max(1),
            fixed_radius_factor: cfg.fixed_radius_factor,
            fill_spacing_mm: cfg.fill_spacing_fraction * spec.min_spacing_mm,
        }
    }

    /// Mask area by zone, cm² of skin.
    pub(crate) fn zone_areas(&self) -> BTreeMap<Zone, f64> {
        let cell_cm2 = self.mask.cell_mm * self.mask.cell_mm / 100.0;
        let mut out = BTreeMap::new();
        for k in (0..self.mask.mask.len()).filter(|&k| self.mask.mask[k]) {
            *out.entry(self.cell_zone(k)).or_insert(0.0) += cell_cm2 * self.mask.area_factor[k];
        }
        out
    }
}

/// Steps 1-3: validation, gate, mask, hairline, density, fixed points.
pub(crate) fn prepare<'a>(req: &PlanRequest<'a>, gate: bool) -> Result<Prepared<'a>, PlanError> {
    let (map, spec, rig, base_from_head, cfg) = (req.map, req.spec, req.rig, &req.base_from_head, &req.cfg);
    validate::inputs(map, spec, rig, base_from_head)?;
    validate::extras(req)?;
    let mut warnings = Vec::new();
    if gate {
        if let Some(intake) = req.intake {
            match intake.clearance() {
                Clearance::Clear => {}
                Clearance::Overridden { unresolved, by } => warnings.push(format!(
                    "planned despite unresolved contraindication(s) {} on the override of {} ({}): {}",
                    names(&unresolved),
                    by.clinician,
                    by.date,
                    by.reason
                )),
                Clearance::Refused { unresolved } => {
                    return Err(PlanError::Contraindicated { names: names(&unresolved) });
                }
            }
        }
    }
    let treat_names = spec.treat.iter().map(|k| region_name(*k)).collect::<Vec<_>>().join("/");

    if rig.axes != AxisProfile::Xyz {
        warnings.push(format!(
            "the rig's axes profile is {:?}; this planner assumes a vertical needle (xyz) for tilt limits and estimates",
            rig.axes
        ));
    }
    let map_reg = map.base_from_head.to_isometry();
    let shift_mm = (map_reg.translation.vector - base_from_head.translation.vector).norm();
    let turn_deg = map_reg.rotation.angle_to(&base_from_head.rotation).to_degrees();
    if shift_mm > 1.0 || turn_deg > 0.5 {
        warnings.push(format!(
            "the map was scanned with a registration {shift_mm:.1} mm / {turn_deg:.1}° away from the one planned for; \
             tilt limits and estimates use the one planned for"
        ));
    }

    // 2. Mask.
    let geo = geometry::PatchGeometry::new(&map.surface, base_from_head);
    let mut mask = mask::TreatmentMask::build(map, spec, &geo);
    let ms = mask.stats;
    if ms.mask_cells == 0 {
        let reason = if ms.treat_cm2 <= 0.0 {
            format!("the map has no {treat_names} cells inside the scanned surface; check `treat` or re-scan")
        } else {
            format!(
                "all {:.1} cm² of {treat_names} lies within region_margin_mm {} of untreated skin ({:.1} cm²) or is steeper \
                 than max_tilt_deg {} ({:.1} cm²); lower the margin, or reposition the head",
                ms.treat_cm2, spec.region_margin_mm, ms.margin_cm2, spec.max_tilt_deg, ms.tilt_cm2
            )
        };
        return Err(PlanError::EmptyTreatment { reason });
    }
    if ms.mask_cm2 < 0.95 * ms.treat_cm2 {
        let mut why = Vec::new();
        let margin_pct = 100.0 * ms.margin_cm2 / ms.treat_cm2;
        let tilt_pct = 100.0 * ms.tilt_cm2 / ms.treat_cm2;
        if margin_pct >= 0.5 {
            why.push(format!(
                "{margin_pct:.0} % lies within region_margin_mm {} of untreated or unscanned skin",
                spec.region_margin_mm
            ));
        }
        if tilt_pct >= 0.5 {
            why.push(format!("{tilt_pct:.0} % is steeper than max_tilt_deg {}", spec.max_tilt_deg));
        }
        warnings.push(format!(
            "treatment area {:.1} cm² is smaller than the map's {treat_names} area {:.1} cm² because {}",
            ms.mask_cm2,
            ms.treat_cm2,
            why.join(" and ")
        ));
    }

    // 3. Zones, hairline, density.
    let zones = ZoneRules::from_spec(spec);
    let hairline =
        spec.hairline.as_ref().map(|h| Hairline::new(HairlineParams::resolve(h, req.intake.map(|i| i.age_years))));
    let mut noise_rng = ChaCha8Rng::seed_from_u64(spec.seed);
    noise_rng.set_stream(1);
    let density = density::DensityField::build(
        map,
        density::DensityContext { spec, zones: &zones, hairline, cfg },
        &mask,
        &geo,
        &mut noise_rng,
    );
    if let Some(h) = &density.hairline {
        // Cells wholly in front of the line leave the treatment grid (the verifier's mask);
        // cells the line crosses stay, and each dot is tested at its exact position.
        let half_diagonal = mask.cell_mm * std::f64::consts::FRAC_1_SQRT_2;
        let cells: Vec<bool> = (0..mask.mask.len())
            .map(|k| {
                let (x, y) = mask.grid.cell_centre(k % mask.nx, k / mask.nx);
                h.distance_mm(&mask, x, y) < -half_diagonal
            })
            .collect();
        let front = mask.exclude(|k| cells[k]);
        if front > 0.05 {
            warnings.push(format!(
                "{front:.1} cm² of treatable skin lies in front of the designed hairline ({} preset, frontal point {:.0} mm \
                 above the glabella) and is left untreated",
                h.line.params.preset.as_str(),
                h.line.params.frontal_height_mm
            ));
        }
        if h.polyline.is_empty() {
            warnings.push(
                "the designed hairline does not cross the scanned surface: check [hairline] glabella_head_mm and \
                 frontal_height_mm against the scan"
                    .into(),
            );
        }
        if mask.stats.mask_cells == 0 {
            return Err(PlanError::EmptyTreatment {
                reason: format!(
                    "all {:.1} cm² of the treatment area lies in front of the designed hairline; raise the hairline \
                     ([hairline] frontal_height_mm) or check glabella_head_mm",
                    front
                ),
            });
        }
    }
    let min_density = cfg.min_density_fraction * density.nominal_per_mm2;
    let saturated = density.saturated_cm2(&mask, min_density);
    if saturated > 0.05 {
        warnings.push(format!(
            "{saturated:.1} cm² of the treatment area already has natural follicles or earlier dots at or near the \
             target density; no dots there"
        ));
    }

    // Fixed points: every map follicle (natural and earlier dots the scan sees) interleaves;
    // earlier entries from the plans keep the hard spacing.
    let follicles: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let fixed = sample::FixedPoints::new(&geo, &mask, &follicles, req.prior_dots_head);
    let mut obstacles_head = follicles;
    obstacles_head.extend_from_slice(req.prior_dots_head);
    Ok(Prepared { geo, mask, density, zones, fixed, obstacles_head, min_density, warnings })
}

fn names(list: &[&smp_core::intake::Contraindication]) -> String {
    list.iter().map(|c| format!("`{}`", c.name)).collect::<Vec<_>>().join(", ")
}

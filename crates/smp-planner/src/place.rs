//! Step 4 of the pipeline: Poisson-disk sampling with the packing constant calibrated to
//! the density integral, then the dots the machine cannot reach and those beyond
//! `max_dots` left out.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::prepare::Prepared;
use crate::{estimate, sample, PlanError, PlanRequest};

/// Placed dots of a request.
pub(crate) struct Placed {
    pub(crate) samples: Vec<sample::Sample>,
    pub(crate) target_dots: f64,
    pub(crate) sampled_dots: usize,
    pub(crate) kappa: f64,
    pub(crate) runs: usize,
    pub(crate) subset_centre: Option<(f64, f64)>,
    pub(crate) warnings: Vec<String>,
}

/// Step 4: sampling with calibration, reach and `max_dots`.
pub(crate) fn place(req: &PlanRequest<'_>, prep: &Prepared<'_>) -> Result<Placed, PlanError> {
    let (spec, cfg, base_from_head) = (req.spec, &req.cfg, &req.base_from_head);
    let mask = &prep.mask;
    let ms = mask.stats;
    let mut warnings = Vec::new();
    let inp = prep.sampler_input(cfg, spec);
    let target_dots = sample::expected_count(&inp, 3);
    if target_dots < 0.5 {
        return Err(PlanError::NoDots {
            reason: format!(
                "the density target asks for {target_dots:.1} dots over {:.1} cm²: natural follicles and earlier dots \
                 already reach the target there; nothing for this session to add",
                ms.mask_cm2
            ),
        });
    }
    let mut kappa = cfg.kappa_initial;
    let mut best: Option<(f64, f64, Vec<sample::Sample>)> = None;
    let mut runs = 0;
    let mut last_count = 0usize;
    for run in 0..cfg.calibration_runs.max(1) {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(100 + run as u64);
        let samples = sample::sample(&inp, kappa, &mut rng);
        runs += 1;
        let count = samples.len();
        let ratio = count as f64 / target_dots;
        let err = (ratio - 1.0).abs();
        if best.as_ref().is_none_or(|(e, _, _)| err < *e) {
            best = Some((err, kappa, samples));
        }
        // Done when close enough, or when a tighter packing no longer adds dots (the
        // spacing, not the packing constant, limits the count).
        let saturated = run > 0 && ratio < 1.0 && (count as f64) < 1.01 * last_count as f64;
        if err <= cfg.count_tolerance || ratio <= 0.0 || saturated {
            break;
        }
        last_count = count;
        // The sampling reaches about kappa_true / r² dots, and r² = kappa / density.
        kappa = (kappa * ratio).clamp(0.2, 1.5);
    }
    let Some((_, kappa, samples)) = best else {
        return Err(PlanError::SelfCheck("no sampling run was made".into()));
    };
    let sampled_dots = samples.len();
    if sampled_dots == 0 {
        return Err(PlanError::NoDots {
            reason: format!(
                "no point of the {:.1} cm² treatment area is at least min_spacing_mm {} from every follicle",
                ms.mask_cm2, spec.min_spacing_mm
            ),
        });
    }
    if (sampled_dots as f64) < 0.85 * target_dots {
        warnings.push(format!(
            "placed {sampled_dots} dots where the density target asks for {target_dots:.0}: min_spacing_mm {} and the \
             existing follicles leave no room for more",
            spec.min_spacing_mm
        ));
    }

    // Drop dots the machine cannot reach (soft limits), with a warning.
    let mut reachable = Vec::with_capacity(samples.len());
    let mut unreachable = 0usize;
    for s in samples {
        let m = estimate::dot_motion(base_from_head, s.p_head, spec);
        if req.rig.dynamics.within_travel(m.hover) && req.rig.dynamics.within_travel(m.bottom) {
            reachable.push(s);
        } else {
            unreachable += 1;
        }
    }
    if unreachable > 0 {
        warnings.push(format!(
            "{unreachable} dots lie outside the machine's travel limits (rig dynamics min_mm/max_mm) and were left out"
        ));
    }
    if reachable.is_empty() {
        return Err(PlanError::NoDots {
            reason: "every dot lies outside the machine's travel limits; check the head rest pose (rig head_rest)"
                .into(),
        });
    }

    // max_dots: keep a compact disc of dots around the deepest interior point of the mask,
    // so a short demo still treats one contiguous patch rather than a stripe of the path.
    let mut subset_centre: Option<(f64, f64)> = None;
    if let Some(max) = spec.max_dots.map(|m| m as usize) {
        if reachable.len() > max {
            let deepest = (0..mask.mask.len())
                .filter(|&k| mask.mask[k])
                .max_by(|&a, &b| mask.border_mm[a].total_cmp(&mask.border_mm[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            let (cx, cy) = mask.grid.cell_centre(deepest % mask.nx, deepest / mask.nx);
            let total = reachable.len();
            let mut keyed: Vec<(f64, usize)> =
                reachable.iter().enumerate().map(|(i, s)| ((s.x - cx).hypot(s.y - cy), i)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let radius = keyed[max - 1].0;
            let mut keep: Vec<usize> = keyed[..max].iter().map(|k| k.1).collect();
            keep.sort_unstable();
            reachable = keep.into_iter().map(|i| reachable[i]).collect();
            subset_centre = Some((cx, cy));
            warnings.push(format!(
                "max_dots {max} keeps {max} of {total} planned dots: a patch of radius {radius:.1} mm around \
                 ({cx:.1}, {cy:.1}) mm on the surface patch"
            ));
        }
    }
    Ok(Placed { samples: reachable, target_dots, sampled_dots, kappa, runs, subset_centre, warnings })
}

//! Pure session planning: treatment mask, dot density and placement, execution order,
//! estimates, and the consultation mock-up.
//!
//! Invariant: `smp-planner` never performs I/O, owns no clock and draws randomness only from
//! `SessionSpec::seed` (ChaCha8), so the same map and spec give a byte-identical plan. Every
//! plan it returns has been checked against its own hard constraints before it leaves:
//! no two dots, and no dot and map follicle, closer than `min_spacing_mm` in the head frame;
//! every dot inside the treatment mask, at least `region_margin_mm` from untreated skin and
//! no steeper than `max_tilt_deg`; depth within the limit.
//!
//! Pipeline of [`plan_session`]:
//! 1. validate every input (a NaN names its field);
//! 2. `mask`: treatment mask on the map's region grid (regions, margin, tilt);
//! 3. `density`: target density per point (session share of what natural follicles do not
//!    already provide, feathered over ~5 mm at the mask border);
//! 4. `sample`: variable-density Poisson-disk dots (Bridson) in the patch's (x, y) plane,
//!    with the packing constant calibrated so the count matches the density integral;
//! 5. `order`: nearest-neighbour path from the edge, improved by 2-opt and Or-opt;
//! 6. `estimate`: travel length and arm time of the per-dot motion the compiler emits.
//!
//! Conventions: millimetres and seconds inside; `a_from_b` maps frame b into frame a; the
//! plan is in the head frame; the needle is vertical in the base frame (`xyz` rigs).

mod density;
mod error;
mod estimate;
mod geometry;
mod mask;
mod mockup;
mod order;
mod sample;
pub mod synthetic;
mod validate;

use nalgebra::Isometry3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smp_core::map::{RegionKind, ScalpMap};
use smp_core::plan::{PlannedDot, SessionLimits, SessionPlan, SessionSpec, Zone};
use smp_core::rig::{AxisProfile, Rig};
use smp_core::spatial::PointGrid;

pub use error::PlanError;
pub use mockup::{draw_disc, pigment_opacity, render_mockup, MOCKUP_DOT_DIAMETER_MM, PIGMENT_RGB};

/// The default session: session 1 of the crown (`sim/sessions/crown-s1.toml`), embedded so
/// that `smp demo` needs no files.
pub const DEFAULT_SESSION1_TOML: &str = include_str!("../../../sim/sessions/crown-s1.toml");

/// Dot ids are `session * DOT_ID_STRIDE + index in execution order`, so the ids of different
/// sessions of one patient never collide (a `PlanFile` requires ids unique across sessions).
pub const DOT_ID_STRIDE: u32 = 100_000;

/// Planner tuning that is not a clinical choice (those live in `SessionSpec`). The defaults
/// are what [`plan_session`] uses.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConfig {
    /// Width of the density ramp at the mask border, mm (DOMAIN: transition zone 5-10 mm).
    pub feather_mm: f64,
    /// Density at the very border, as a fraction of the interior density.
    pub feather_floor: f64,
    /// Lattice spacing of the noise that makes the ramp width wander (±40 %), mm.
    pub feather_noise_mm: f64,
    /// σ of the Gaussian kernel estimating natural follicle density, mm.
    pub natural_sigma_mm: f64,
    /// Below this fraction of the nominal session density no dot is placed (where natural
    /// follicles nearly reach the target).
    pub min_density_fraction: f64,
    /// Bridson candidates per active sample.
    pub bridson_candidates: usize,
    /// Initial Poisson-disk packing constant (dots per radius²).
    pub kappa_initial: f64,
    /// Sampling runs at most, recalibrating the packing constant between runs.
    pub calibration_runs: usize,
    /// Stop calibrating when the dot count is within this fraction of the target count.
    pub count_tolerance: f64,
    /// Candidate neighbours per dot for 2-opt / Or-opt.
    pub neighbours: usize,
    /// Improving moves allowed per dot (bounds the ordering effort on any input).
    pub max_moves_per_dot: usize,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            feather_mm: 5.0,
            feather_floor: 0.15,
            feather_noise_mm: 6.0,
            natural_sigma_mm: 3.0,
            min_density_fraction: 0.05,
            bridson_candidates: 30,
            kappa_initial: 0.65,
            calibration_runs: 3,
            count_tolerance: 0.03,
            neighbours: 10,
            max_moves_per_dot: 40,
        }
    }
}

/// Figures about how a plan was made, for reports, tests and benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStats {
    /// Dots the density integral asks for over the mask.
    pub target_dots: f64,
    /// Dots the sampler placed (before travel-limit and `max_dots` filtering).
    pub sampled_dots: usize,
    /// Packing constant of the run that was kept.
    pub kappa: f64,
    pub sampling_runs: usize,
    /// Travel of the nearest-neighbour path, and of the improved one, mm.
    pub nn_tour_mm: f64,
    pub tour_mm: f64,
    pub two_opt_moves: usize,
    pub or_opt_moves: usize,
    /// Longest travel step between consecutive dots, mm.
    pub max_step_mm: f64,
    /// Lowest height above the skin of any straight travel move between hover points, mm
    /// (along the patch z axis; `hover_mm` when the skin were flat). Below `hover_mm / 2`
    /// the plan carries a warning: the compiler must lift for long moves.
    pub min_travel_clearance_mm: f64,
    /// Mask area (cm² of skin) and the nominal session density (per cm²) it was planned for.
    pub mask_area_cm2: f64,
    pub nominal_density_per_cm2: f64,
}

/// A plan together with how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    pub plan: SessionPlan,
    pub stats: PlanStats,
}

/// Plans one session over a scalp map, for a rig registered to the head by `base_from_head`
/// (used for the needle's tilt against the skin and for the arm-time estimate; the plan
/// itself is in the head frame). See the crate docs for the steps and guarantees.
pub fn plan_session(
    map: &ScalpMap,
    spec: &SessionSpec,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
) -> Result<SessionPlan, PlanError> {
    plan_session_with(map, spec, rig, base_from_head, &PlannerConfig::default()).map(|o| o.plan)
}

fn region_name(kind: RegionKind) -> &'static str {
    match kind {
        RegionKind::Outside => "outside",
        RegionKind::Hair => "hair",
        RegionKind::Thinning => "thinning",
        RegionKind::Bald => "bald",
        RegionKind::Scar => "scar",
    }
}

/// [`plan_session`] with explicit tuning, returning the statistics too.
pub fn plan_session_with(
    map: &ScalpMap,
    spec: &SessionSpec,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    cfg: &PlannerConfig,
) -> Result<PlanOutcome, PlanError> {
    validate::inputs(map, spec, rig, base_from_head)?;
    let mut warnings = Vec::new();
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
    let mask = mask::TreatmentMask::build(map, spec, &geo);
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

    // 3. Density.
    let mut noise_rng = ChaCha8Rng::seed_from_u64(spec.seed);
    noise_rng.set_stream(1);
    let density = density::DensityField::build(map, spec, &mask, &geo, cfg, &mut noise_rng);
    let min_density = cfg.min_density_fraction * density.nominal_per_mm2;
    let saturated = density.saturated_cm2(&mask, min_density);
    if saturated > 0.05 {
        warnings.push(format!(
            "{saturated:.1} cm² of the treatment area already has natural follicles at or near the target {} per cm²; \
             no dots there",
            spec.target_density_per_cm2
        ));
    }

    // 4. Dots.
    let obstacles: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let inp = sample::SamplerInput {
        mask: &mask,
        density: &density,
        geo: &geo,
        obstacles_head: &obstacles,
        min_spacing_mm: spec.min_spacing_mm,
        min_density,
        candidates: cfg.bridson_candidates.max(1),
    };
    let target_dots = sample::expected_count(&inp, 3);
    if target_dots < 0.5 {
        return Err(PlanError::NoDots {
            reason: format!(
                "the density target asks for {target_dots:.1} dots over {:.1} cm²: natural follicles already reach \
                 {} per cm² there; nothing for this session to add",
                ms.mask_cm2, spec.target_density_per_cm2
            ),
        });
    }
    let mut kappa = cfg.kappa_initial;
    let mut best: Option<(f64, f64, Vec<sample::Sample>)> = None;
    let mut runs = 0;
    for run in 0..cfg.calibration_runs.max(1) {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(100 + run as u64);
        let samples = sample::sample(&inp, kappa, &mut rng);
        runs += 1;
        let ratio = samples.len() as f64 / target_dots;
        let err = (ratio - 1.0).abs();
        if best.as_ref().is_none_or(|(e, _, _)| err < *e) {
            best = Some((err, kappa, samples));
        }
        if err <= cfg.count_tolerance || ratio <= 0.0 {
            break;
        }
        // Bridson reaches about kappa_true / r² dots, and r² = kappa / density.
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
        if rig.dynamics.within_travel(m.hover) && rig.dynamics.within_travel(m.bottom) {
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
    let n = reachable.len();
    if n >= DOT_ID_STRIDE as usize {
        return Err(PlanError::TooManyDots { dots: n, max: DOT_ID_STRIDE - 1 });
    }

    // 5. Order, in the patch frame (a rigid copy of the head frame).
    let points: Vec<[f64; 3]> = reachable
        .iter()
        .map(|s| {
            let p = geo.to_patch(s.p_head);
            [p.x, p.y, p.z]
        })
        .collect();
    let start = match subset_centre {
        // The disc's rim, farthest from its centre.
        Some((cx, cy)) => (0..n)
            .max_by(|&a, &b| {
                let da = (reachable[a].x - cx).hypot(reachable[a].y - cy);
                let db = (reachable[b].x - cx).hypot(reachable[b].y - cy);
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0),
        // The dot closest to the mask border.
        None => (0..n)
            .min_by(|&a, &b| {
                let da = mask.border_distance_mm(reachable[a].x, reachable[a].y);
                let db = mask.border_distance_mm(reachable[b].x, reachable[b].y);
                da.total_cmp(&db).then(a.cmp(&b))
            })
            .unwrap_or(0),
    };
    let mut order = order::nearest_neighbour(&points, start as u32);
    let nn_tour_mm = order::path_length(&points, &order);
    let lists = order::neighbour_lists(&points, cfg.neighbours.max(1));
    let istats = order::improve(&points, &lists, &mut order, cfg.max_moves_per_dot.saturating_mul(n).max(1));
    if order.len() != n {
        return Err(PlanError::SelfCheck(format!("ordering returned {} of {n} dots", order.len())));
    }

    // 6. Dots, estimates.
    let dots: Vec<PlannedDot> = order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let s = &reachable[i as usize];
            let scar = mask.cell_index(s.x, s.y).is_some_and(|c| mask.scar[c]);
            PlannedDot {
                id: spec.session * DOT_ID_STRIDE + k as u32,
                x_mm: s.p_head[0],
                y_mm: s.p_head[1],
                z_mm: s.p_head[2],
                normal: s.n_head,
                layer: spec.session,
                // Scar tissue takes pigment differently: labelled so tone and density can
                // differ later; for now it gets the same density as the session's zone.
                zone: if scar { Zone::Scar } else { spec.zone },
                depth_mm: spec.depth_mm,
                dilution_pct: spec.dilution_pct,
            }
        })
        .collect();
    let motions: Vec<estimate::DotMotion> =
        dots.iter().map(|d| estimate::dot_motion(base_from_head, d.position(), spec)).collect();
    let (tour_mm, arm_time_s) = estimate::estimate(&motions, spec, &rig.dynamics);
    let (clearance_mm, worst_k, max_step_mm) =
        estimate::travel_clearance(&motions, &geo.base_from_patch.inverse(), geo.surface);
    let min_travel_clearance_mm = if clearance_mm.is_finite() { clearance_mm } else { spec.hover_mm };
    if min_travel_clearance_mm < 0.5 * spec.hover_mm {
        warnings.push(format!(
            "the straight travel move to dot {} passes {min_travel_clearance_mm:.2} mm above the skin (hover_mm {}): \
             long moves over the curved scalp need a lift",
            dots[worst_k].id, spec.hover_mm
        ));
    }

    let xy: Vec<(f64, f64)> = order.iter().map(|&i| (reachable[i as usize].x, reachable[i as usize].y)).collect();
    self_check(&dots, &xy, &obstacles, spec, &mask, &geo)?;

    let plan = SessionPlan {
        session: spec.session,
        spec: spec.clone(),
        limits: SessionLimits {
            depth_limit_mm: spec.depth_limit_mm,
            max_feed_mm_per_min: spec.max_feed_mm_per_min,
            min_spacing_mm: spec.min_spacing_mm,
            max_tilt_deg: spec.max_tilt_deg,
        },
        treatment: mask.grid.clone(),
        dots,
        estimates: estimate::plan_estimates(tour_mm, arm_time_s, ms.mask_cm2),
        warnings,
    };
    Ok(PlanOutcome {
        plan,
        stats: PlanStats {
            target_dots,
            sampled_dots,
            kappa,
            sampling_runs: runs,
            nn_tour_mm,
            tour_mm,
            two_opt_moves: istats.two_opt_moves,
            or_opt_moves: istats.or_opt_moves,
            max_step_mm,
            min_travel_clearance_mm,
            mask_area_cm2: ms.mask_cm2,
            nominal_density_per_cm2: density.nominal_per_mm2 * 100.0,
        },
    })
}

/// Re-checks the hard constraints on the finished dots, independently of how they were
/// made: a violation is a planner bug and must never reach the compiler.
fn self_check(
    dots: &[PlannedDot],
    xy: &[(f64, f64)],
    obstacles: &[[f64; 3]],
    spec: &SessionSpec,
    mask: &mask::TreatmentMask,
    geo: &geometry::PatchGeometry<'_>,
) -> Result<(), PlanError> {
    let s = spec.min_spacing_mm;
    let follicles = PointGrid::from_points(s, obstacles.iter().copied());
    let own = PointGrid::from_points(s, dots.iter().map(|d| d.position()));
    for (i, d) in dots.iter().enumerate() {
        let p = d.position();
        if let Some((_, dist)) = follicles.nearest_within(p, s) {
            if dist < s {
                return Err(PlanError::SelfCheck(format!("dot {} is {dist:.3} mm from a follicle", d.id)));
            }
        }
        let mut close = None;
        own.for_each_within(p, s, |j, dist| {
            if j as usize != i && dist < s {
                close = Some((j, dist));
            }
        });
        if let Some((j, dist)) = close {
            return Err(PlanError::SelfCheck(format!(
                "dots {} and {} are {dist:.3} mm apart",
                d.id, dots[j as usize].id
            )));
        }
        let (x, y) = xy[i];
        let q = geo.to_patch(p);
        if (q.x - x).abs() > 1e-6 || (q.y - y).abs() > 1e-6 || !mask.allows(geo, x, y) {
            return Err(PlanError::SelfCheck(format!("dot {} lies outside the treatment mask", d.id)));
        }
        if !d.depth_mm.is_finite() || d.depth_mm > spec.depth_limit_mm {
            return Err(PlanError::SelfCheck(format!("dot {} is deeper than the limit", d.id)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

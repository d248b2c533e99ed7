//! The planning pipeline end to end (see the crate docs for its steps): the public entry
//! points, ordering, zones and tone per dot, estimates, and the self-check every plan passes
//! before it leaves; plus the layered sessions' specs and the hairline for the viewer.

use std::sync::OnceLock;

use nalgebra::Isometry3;
use smp_core::intake::{HairColor, PatientIntake};
use smp_core::map::ScalpMap;
use smp_core::plan::{PlanEstimates, PlannedDot, SessionLimits, SessionPlan, SessionSpec};
use smp_core::rig::{AxisProfile, Rig};
use smp_core::spatial::PointGrid;
use smp_core::SpecError;

use crate::place::place;
use crate::prepare::{prepare, Prepared};
use crate::{estimate, order_dots, Hairline, HairlineParams, OrderParams, PigmentLadder, PlanError, RecoveryRule};
use crate::{Placement, PlanOutcome, PlanRequest, PlanStats, PlannerConfig, DOT_ID_STRIDE};

/// Skin type assumed for the pigment ladder when neither the map nor the intake has one.
const FALLBACK_FITZPATRICK: u8 = 3;
/// Hair colour assumed for the pigment ladder without an intake.
const FALLBACK_HAIR: HairColor = HairColor::DarkBrown;
/// Plans one session over a scalp map, for a rig registered to the head by `base_from_head`
/// (used for the needle's tilt against the skin and for the arm-time estimate; the plan
/// itself is in the head frame). See the crate docs for the steps and guarantees. Every dot
/// gets the spec's `dilution_pct` and no ladder tone (the issue-2 behaviour).
pub fn plan_session(
    map: &ScalpMap,
    spec: &SessionSpec,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
) -> Result<SessionPlan, PlanError> {
    plan_session_with(map, spec, rig, base_from_head, &PlannerConfig::default()).map(|o| o.plan)
}

/// [`plan_session`] with explicit tuning, returning the statistics too.
pub fn plan_session_with(
    map: &ScalpMap,
    spec: &SessionSpec,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    cfg: &PlannerConfig,
) -> Result<PlanOutcome, PlanError> {
    let req = PlanRequest { cfg: cfg.clone(), ..PlanRequest::new(map, spec, rig, base_from_head) };
    plan_internal(&req, ToneMode::Spec)
}

/// Plans one session with everything: the intake gate (and age for the hairline preset),
/// the pigment ladder (given, or the embedded one) and earlier sessions' entries.
pub fn plan_session_full(req: &PlanRequest<'_>) -> Result<PlanOutcome, PlanError> {
    let ladder = match req.ladder {
        Some(l) => {
            l.validate()?;
            l
        }
        None => embedded_ladder()?,
    };
    plan_internal(req, ToneMode::Ladder(ladder))
}

/// Places the dots of a session (steps 1-4 of the pipeline, with the intake gate) without
/// ordering, toning or estimating them.
pub fn place_session(req: &PlanRequest<'_>) -> Result<Placement, PlanError> {
    let prep = prepare(req, true)?;
    let placed = place(req, &prep)?;
    let mut warnings = prep.warnings.clone();
    warnings.extend(placed.warnings);
    Ok(Placement {
        points_head: placed.samples.iter().map(|s| s.p_head).collect(),
        normals_head: placed.samples.iter().map(|s| s.n_head).collect(),
        target_dots: placed.target_dots,
        kappa: placed.kappa,
        sampling_runs: placed.runs,
        warnings,
    })
}

/// The designed hairline of a spec on a map's skin (head frame, pieces), for the mock-up and
/// the viewer; `None` when the spec has no `[hairline]`. The intake's age picks the preset
/// when the spec names none.
pub fn hairline_polyline(
    map: &ScalpMap,
    spec: &SessionSpec,
    intake: Option<&PatientIntake>,
) -> Option<Vec<Vec<[f64; 3]>>> {
    let h = spec.hairline.as_ref()?;
    let params = HairlineParams::resolve(h, intake.map(|i| i.age_years));
    Some(Hairline::new(params).polyline(&map.surface))
}

/// The spec of session `session` of a layered treatment, derived from session 1's: session
/// 1 places about 40 % of the final dots; session 2 about 35 % more, between the healed
/// session-1 dots; session 3 and later complete what the healed scan still lacks
/// (`session_share = 1`). Dilution follows the embedded ladder's session rows (50/40/30 %);
/// each session gets its own seed (the hairline keeps its own). Plan sessions 2+ from a new
/// scan of the healed scalp.
pub fn layered_session_spec(session1: &SessionSpec, session: u32) -> SessionSpec {
    let session = session.max(1);
    let (share, dilution) = match session {
        1 => (session1.session_share, session1.dilution_pct),
        2 => (0.35, (session1.dilution_pct - 10.0).max(0.0)),
        _ => (1.0, (session1.dilution_pct - 20.0).max(0.0)),
    };
    SessionSpec {
        session,
        session_share: share,
        dilution_pct: dilution,
        seed: session1.seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(session as u64 - 1)),
        ..session1.clone()
    }
}

/// The embedded ladder, parsed once.
fn embedded_ladder() -> Result<&'static PigmentLadder, PlanError> {
    static LADDER: OnceLock<Result<PigmentLadder, SpecError>> = OnceLock::new();
    match LADDER.get_or_init(PigmentLadder::embedded) {
        Ok(l) => Ok(l),
        Err(e) => Err(PlanError::Input(e.clone())),
    }
}

/// How dots get their pigment.
#[derive(Debug, Clone, Copy)]
enum ToneMode<'a> {
    /// The spec's `dilution_pct`, no shade (issue-2 behaviour).
    Spec,
    Ladder(&'a PigmentLadder),
}

/// Figures of the ordering step.
struct OrderFigures {
    nn_tour_mm: f64,
    two_opt_moves: usize,
    or_opt_moves: usize,
    lower_bound_mm: f64,
    recovery_violations: usize,
    recovery_note: Option<String>,
}

/// Step 5, in one place: the execution order of `points` (patch frame) from `start`, under
/// the spec's skin-recovery rule when it has one (timed with the rig's dynamics).
fn order_points(
    points: &[[f64; 3]],
    start: u32,
    cfg: &PlannerConfig,
    spec: &SessionSpec,
    rig: &Rig,
) -> Result<(Vec<u32>, OrderFigures), PlanError> {
    let params = OrderParams {
        neighbours: cfg.neighbours.max(1),
        max_moves_per_dot: cfg.max_moves_per_dot.max(1),
        recovery: spec.recovery.map(|r| RecoveryRule { radius_mm: r.radius_mm, window_s: r.window_s }),
        timing: estimate::dot_timing_for_rig(spec, rig),
        seed: spec.seed,
        ..OrderParams::default()
    };
    let o = order_dots(points, start, &params).map_err(|e| PlanError::SelfCheck(format!("ordering: {e}")))?;
    let figures = OrderFigures {
        nn_tour_mm: o.nn_tour_mm,
        two_opt_moves: o.two_opt_moves,
        or_opt_moves: o.or_opt_moves,
        lower_bound_mm: o.lower_bound_mm,
        recovery_violations: o.recovery_violations,
        recovery_note: o.recovery_note,
    };
    Ok((o.order, figures))
}

/// The whole pipeline.
fn plan_internal(req: &PlanRequest<'_>, tone: ToneMode<'_>) -> Result<PlanOutcome, PlanError> {
    let (map, spec, rig, base_from_head, cfg) = (req.map, req.spec, req.rig, &req.base_from_head, &req.cfg);
    let prep = prepare(req, true)?;
    let mut warnings = prep.warnings.clone();
    let placed = place(req, &prep)?;
    warnings.extend(placed.warnings.iter().cloned());
    let reachable = &placed.samples;
    let mask = &prep.mask;
    let geo = &prep.geo;
    let n = reachable.len();
    if n >= DOT_ID_STRIDE as usize {
        return Err(PlanError::TooManyDots { dots: n, max: DOT_ID_STRIDE - 1 });
    }

    // 5. Order, in the patch frame (a rigid copy of the head frame).
    let points: Vec<[f64; 3]> = reachable.iter().map(|s| [s.x, s.y, s.z]).collect();
    let start = match placed.subset_centre {
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
    let (order, figures) = order_points(&points, start as u32, cfg, spec, rig)?;
    if figures.recovery_violations > 0 {
        warnings.push(format!(
            "the skin-recovery rule could not be kept for {} dot pair(s){}",
            figures.recovery_violations,
            figures.recovery_note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
        ));
    }
    if order.len() != n {
        return Err(PlanError::SelfCheck(format!("ordering returned {} of {n} dots", order.len())));
    }

    // 6. Zones and tone.
    let (fitzpatrick, hair) = match tone {
        ToneMode::Spec => (None, None),
        ToneMode::Ladder(_) => {
            let from_map = map.skin.as_ref().map(|s| s.fitzpatrick).filter(|f| (1..=6).contains(f));
            let f = match (from_map, req.intake.and_then(|i| i.fitzpatrick)) {
                (Some(f), _) | (None, Some(f)) => f,
                (None, None) => {
                    warnings.push(format!(
                        "the map has no skin tone and the intake no Fitzpatrick type: the pigment ladder assumed type \
                         {FALLBACK_FITZPATRICK}; scan under the rig's light or set [intake] fitzpatrick"
                    ));
                    FALLBACK_FITZPATRICK
                }
            };
            let h = match req.intake {
                Some(i) => i.hair_color,
                None => {
                    warnings.push(format!(
                        "no patient intake: contraindications were not checked and the pigment ladder assumed {} hair; \
                         pass the patient's [intake]",
                        FALLBACK_HAIR.as_str()
                    ));
                    FALLBACK_HAIR
                }
            };
            (Some(f), Some(h))
        }
    };
    let mut dots = Vec::with_capacity(n);
    for (k, &i) in order.iter().enumerate() {
        let s = &reachable[i as usize];
        let zone = prep.dot_zone(s.x, s.y, s.p_head);
        let (tone_choice, dilution_pct) = match (tone, fitzpatrick, hair) {
            (ToneMode::Ladder(l), Some(f), Some(h)) => match l.pick(spec.session, zone, f, h) {
                Some(c) => (Some(c.tone), c.dilution_pct),
                None => return Err(PlanError::SelfCheck("the validated pigment ladder gave no shade".into())),
            },
            _ => (None, spec.dilution_pct),
        };
        dots.push(PlannedDot {
            id: spec.session * DOT_ID_STRIDE + k as u32,
            x_mm: s.p_head[0],
            y_mm: s.p_head[1],
            z_mm: s.p_head[2],
            normal: s.n_head,
            layer: spec.session,
            zone,
            depth_mm: spec.depth_mm,
            dilution_pct,
            tone: tone_choice,
        });
    }

    // 7. Estimates.
    let motions: Vec<estimate::DotMotion> =
        dots.iter().map(|d| estimate::dot_motion(base_from_head, d.position(), spec)).collect();
    let (mut tour_mm, mut arm_time_s) = estimate::estimate_from(&motions, spec, &rig.dynamics, req.start_machine_mm);
    if rig.axes != AxisProfile::Xyz || cfg.dwell_step_s > 0.0 {
        // The tilted profiles' own path and axes (and the controller's dwell step); the
        // vertical-needle figure stays if the program cannot be timed (the compiler will then
        // refuse it with the same reason).
        match estimate::estimate_dots(&dots, spec, rig, base_from_head, req.start_machine_mm, cfg.dwell_step_s) {
            Ok(e) => (tour_mm, arm_time_s) = (e.tour_mm, e.arm_time_s),
            Err(e) => warnings.push(format!(
                "arm-time estimate: the {} program could not be timed ({e}); the vertical-needle estimate is given",
                match rig.axes {
                    AxisProfile::Xyzab => "xyzab",
                    _ => "joints",
                }
            )),
        }
    }
    let (clearance_mm, worst_k, max_step_mm) =
        estimate::travel_clearance(&motions, spec, rig.dynamics.z.max_mm, &geo.base_from_patch.inverse(), geo.surface);
    let min_travel_clearance_mm = if clearance_mm.is_finite() { clearance_mm } else { spec.hover_mm };
    if min_travel_clearance_mm < 0.5 * spec.hover_mm {
        warnings.push(format!(
            "the travel move to dot {} passes {min_travel_clearance_mm:.2} mm above the skin (hover_mm {}): the scalp \
             curves more tightly there than the compiler's lift assumes",
            dots[worst_k].id, spec.hover_mm
        ));
    }

    let xy: Vec<(f64, f64)> = order.iter().map(|&i| (reachable[i as usize].x, reachable[i as usize].y)).collect();
    self_check(&dots, &xy, &prep, spec)?;

    let ms = mask.stats;
    let plan = SessionPlan {
        session: spec.session,
        spec: spec.clone(),
        limits: SessionLimits::of(spec),
        treatment: mask.grid.clone(),
        dots,
        estimates: PlanEstimates {
            tour_lower_bound_mm: figures.lower_bound_mm.is_finite().then_some(figures.lower_bound_mm),
            ..estimate::plan_estimates(tour_mm, arm_time_s, ms.mask_cm2)
        },
        warnings,
    };
    Ok(PlanOutcome {
        plan,
        stats: PlanStats {
            target_dots: placed.target_dots,
            sampled_dots: placed.sampled_dots,
            kappa: placed.kappa,
            sampling_runs: placed.runs,
            nn_tour_mm: figures.nn_tour_mm,
            tour_mm,
            two_opt_moves: figures.two_opt_moves,
            or_opt_moves: figures.or_opt_moves,
            tour_lower_bound_mm: figures.lower_bound_mm,
            recovery_violations: figures.recovery_violations,
            max_step_mm,
            min_travel_clearance_mm,
            mask_area_cm2: ms.mask_cm2,
            nominal_density_per_cm2: prep.density.nominal_per_mm2 * 100.0,
            front_of_hairline_cm2: ms.front_cm2,
            zone_area_cm2: prep.zone_areas(),
            hairline: prep.density.hairline.as_ref().map(|h| h.line.params.clone()),
            fitzpatrick,
            hair_color: hair,
        },
    })
}

/// Re-checks the hard constraints on the finished dots, independently of how they were
/// made: a violation is a planner bug and must never reach the compiler.
fn self_check(
    dots: &[PlannedDot],
    xy: &[(f64, f64)],
    prep: &Prepared<'_>,
    spec: &SessionSpec,
) -> Result<(), PlanError> {
    let s = spec.min_spacing_mm;
    let fixed = PointGrid::from_points(s, prep.obstacles_head.iter().copied());
    let own = PointGrid::from_points(s, dots.iter().map(|d| d.position()));
    let hairline = prep.density.hairline.as_ref().map(|h| &h.line);
    for (i, d) in dots.iter().enumerate() {
        let p = d.position();
        if let Some((_, dist)) = fixed.nearest_within(p, s) {
            if dist < s {
                return Err(PlanError::SelfCheck(format!(
                    "dot {} is {dist:.3} mm from a follicle or an earlier dot",
                    d.id
                )));
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
        let q = prep.geo.to_patch(p);
        if (q.x - x).abs() > 1e-6 || (q.y - y).abs() > 1e-6 || !prep.mask.allows(&prep.geo, x, y) {
            return Err(PlanError::SelfCheck(format!("dot {} lies outside the treatment mask", d.id)));
        }
        if hairline.is_some_and(|h| h.in_front(p)) {
            return Err(PlanError::SelfCheck(format!("dot {} lies in front of the designed hairline", d.id)));
        }
        if !d.depth_mm.is_finite() || d.depth_mm > spec.depth_limit_mm {
            return Err(PlanError::SelfCheck(format!("dot {} is deeper than the limit", d.id)));
        }
    }
    Ok(())
}

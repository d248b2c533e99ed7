//! Tests of issue 5's planner on the synthetic full head and small maps: hairline, zones,
//! layered sessions, tone, intake gate, metrics, determinism.

use nalgebra::{Isometry3, Translation3, UnitQuaternion};
use proptest::prelude::*;
use rand::SeedableRng;
use smp_core::intake::{ClinicianOverride, Contraindication, HairColor, PatientIntake};
use smp_core::map::{FollicleKind, RegionKind, ScalpMap};
use smp_core::plan::{HairlinePreset, HairlineSpec, PlanFile, PlannedDot, SessionPlan, SessionSpec, Zone, ZonesSpec};

use super::*;
use crate::test_support::{base_from_head, rig, session1};
use smp_sim::healed_map::{heal_map, HealingModel};
use smp_testkit::{full_head_map, synthetic_map, FullHeadMapSpec, SyntheticMapSpec};

fn intake(age: f64) -> PatientIntake {
    PatientIntake {
        age_years: age,
        hair_color: HairColor::DarkBrown,
        fitzpatrick: None,
        contraindications: vec![Contraindication { name: "pigment allergy".into(), resolved: true, note: None }],
        clinician_override: None,
        notes: None,
    }
}

/// Session 1 over the full head: every zone, a hairline without preset (the intake's age
/// picks it) on this head's glabella, needle tilt up to 80° (a 5-axis rig would keep the
/// needle normal; the estimate is not what these tests look at).
fn full_head_session1(fh: &FullHeadMapSpec) -> SessionSpec {
    SessionSpec {
        treat: vec![RegionKind::Bald, RegionKind::Thinning, RegionKind::Scar],
        max_tilt_deg: 80.0,
        hairline: Some(HairlineSpec { glabella_head_mm: Some(fh.glabella_head_mm()), ..HairlineSpec::default() }),
        zones: Some(ZonesSpec::default()),
        ..session1()
    }
}

/// The full head map, built once per test binary.
fn full_head() -> &'static (FullHeadMapSpec, ScalpMap) {
    static MAP: std::sync::OnceLock<(FullHeadMapSpec, ScalpMap)> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        let fh = FullHeadMapSpec::default();
        let map = full_head_map(&fh);
        (fh, map)
    })
}

/// Session 1 of the full head for a 45-year-old (mature hairline), built once.
fn full_head_plan1() -> &'static (SessionSpec, PatientIntake, PlanOutcome) {
    static PLAN: std::sync::OnceLock<(SessionSpec, PatientIntake, PlanOutcome)> = std::sync::OnceLock::new();
    PLAN.get_or_init(|| {
        let (fh, map) = full_head();
        let spec = full_head_session1(fh);
        let who = intake(45.0);
        let rig = rig();
        let mut req = PlanRequest::new(map, &spec, &rig, &base_from_head());
        req.intake = Some(&who);
        let out = plan_session_full(&req).expect("full head session 1 plans");
        (spec, who, out)
    })
}

fn positions(plan: &SessionPlan) -> Vec<[f64; 3]> {
    plan.dots.iter().map(|d| d.position()).collect()
}

fn brute_min_distance(a: &[[f64; 3]], b: &[[f64; 3]], same: bool) -> f64 {
    let mut best = f64::INFINITY;
    for (i, p) in a.iter().enumerate() {
        for (j, q) in b.iter().enumerate() {
            if same && i >= j {
                continue;
            }
            best = best.min(geometry::dist3(*p, *q));
        }
    }
    best
}

/// Distance from a point to the nearest point of the hairline pieces (dense, ~1 mm).
fn distance_to_line(pieces: &[Vec<[f64; 3]>], p: [f64; 3]) -> f64 {
    pieces.iter().flatten().map(|q| geometry::dist3(*q, p)).fold(f64::INFINITY, f64::min)
}

#[test]
fn full_head_session1_is_about_12000_dots_with_zone_densities_on_target() {
    let (_, map) = full_head();
    let (spec, who, out) = full_head_plan1();
    let n = out.plan.dots.len();
    assert!((10_500..=13_500).contains(&n), "{n} dots");
    assert_eq!(out.stats.hairline.as_ref().map(|h| h.preset), Some(HairlinePreset::Mature), "age 45 picks mature");
    let rig = rig();
    let mut req = PlanRequest::new(map, spec, &rig, &base_from_head());
    req.intake = Some(who);
    let m = metrics::evaluate(&req, &out.plan).expect("metrics");
    assert_eq!(m.dots, n);
    assert!(m.min_spacing_mm >= 0.9, "{}", m.min_spacing_mm);
    // Stated tolerance: body zones within 8 %, the narrow hairline band and the scar strip
    // (a few cm², dominated by their borders) within 25 %.
    for z in &m.zones {
        let tol = if matches!(z.zone, Zone::Hairline | Zone::Scar) { 0.25 } else { 0.08 };
        assert!(z.rel_err.abs() <= tol, "{:?}: {:.1} vs {:.1} per cm²", z.zone, z.achieved_per_cm2, z.target_per_cm2);
    }
    for z in [Zone::Hairline, Zone::Frontal, Zone::MidScalp, Zone::Crown, Zone::Temple, Zone::Scar] {
        assert!(m.zone_area_cm2.get(&z).is_some_and(|a| *a > 1.0), "zone {z:?} present: {:?}", m.zone_area_cm2);
    }
    // Curved skin: density is per cm² of skin. The steep temples (up to 75° of tilt) carry
    // the same per-skin density as the flat vertex, within the tolerance above.
    assert!(m.mask_area_cm2 > 400.0, "{}", m.mask_area_cm2);
    assert!(m.largest_gap_mm > 0.0 && m.largest_gap_mm < 8.0, "{}", m.largest_gap_mm);
    // Every dot toned by the ladder; its zone is the metrics' zone of its cell.
    assert!(out.plan.dots.iter().all(|d| d.tone.is_some()));
}

#[test]
fn hairline_is_soft_irregular_and_never_crossed() {
    let (_, map) = full_head();
    let (spec, who, out) = full_head_plan1();
    let params = out.stats.hairline.clone().expect("hairline");
    let line = Hairline::new(params.clone());
    let pieces = hairline_polyline(map, spec, Some(who)).expect("spec has a hairline");
    assert!(!pieces.is_empty() && pieces.iter().map(|p| p.len()).sum::<usize>() > 100);
    // No dot in front of the line.
    for d in &out.plan.dots {
        assert!(line.height_above_line_mm(d.position()) >= 0.0, "dot {} in front of the hairline", d.id);
    }
    // Density ramps across the band: dots per cm² of skin in distance bins behind the line.
    let band = params.band_mm(1);
    let edges = [0.0, 0.25 * band, 0.5 * band, 0.75 * band, band, 3.0 * band];
    let mut dots = [0usize; 5];
    let front: Vec<[f64; 3]> = out
        .plan
        .dots
        .iter()
        .map(|d| d.position())
        .filter(|p| p[0] > 20.0 && line.height_above_line_mm(*p) < 40.0)
        .collect();
    for p in &front {
        let d = distance_to_line(&pieces, *p);
        if let Some(b) = (0..5).find(|&b| d >= edges[b] && d < edges[b + 1]) {
            dots[b] += 1;
        }
    }
    // Bin areas from a fine grid over the treatment mask (skin area per sample).
    let geo = geometry::PatchGeometry::new(&map.surface, &base_from_head());
    let g = &out.plan.treatment;
    let mut area = [0.0f64; 5];
    let sub = 4;
    let step = g.cell_mm / sub as f64;
    for j in 0..g.ny {
        for i in 0..g.nx {
            if g.code_at_cell(i, j) != '#' {
                continue;
            }
            for a in 0..sub {
                for b in 0..sub {
                    let x = g.origin_x_mm + i as f64 * g.cell_mm + (a as f64 + 0.5) * step;
                    let y = g.origin_y_mm + j as f64 * g.cell_mm + (b as f64 + 0.5) * step;
                    let (p, n) = geo.sample_head(x, y);
                    let p = [p.x, p.y, p.z];
                    if p[0] <= 20.0 || line.in_front(p) || line.height_above_line_mm(p) >= 40.0 {
                        continue;
                    }
                    let d = distance_to_line(&pieces, p);
                    if let Some(k) = (0..5).find(|&k| d >= edges[k] && d < edges[k + 1]) {
                        area[k] += step * step / n.z.max(0.05) / 100.0;
                    }
                }
            }
        }
    }
    let density: Vec<f64> = (0..5).map(|k| dots[k] as f64 / area[k].max(1e-9)).collect();
    assert!(density[0] > 0.0, "the front of the band is sparse, not empty: {density:?}");
    assert!(density[0] < 0.45 * density[4], "front {:.1} vs full {:.1}", density[0], density[4]);
    assert!(density[0] < density[2] && density[2] < density[4], "ramps up: {density:?}");
    // The line wobbles: it is not the smooth preset curve.
    let smooth = Hairline::new(HairlineParams { wobble_mm: 0.0, ..params.clone() });
    let dev: Vec<f64> = (-20..=20)
        .map(|k| {
            let phi = k as f64 * 0.02;
            line.line_z_mm(phi).unwrap_or(0.0) - smooth.line_z_mm(phi).unwrap_or(0.0)
        })
        .collect();
    let spread =
        dev.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b)) - dev.iter().fold(f64::INFINITY, |a, b| a.min(*b));
    assert!(spread > 1.0, "wobble spread {spread:.2} mm");
    // The band's leading edge is ragged: the frontmost dot of each 3 mm stretch of the line
    // sits at varying depths behind it (per-dot jitter), not on one offset curve.
    let mut nearest: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for p in &front {
        let d = distance_to_line(&pieces, *p);
        if d < band {
            let key = (p[1] / 3.0).floor() as i64;
            let e = nearest.entry(key).or_insert(f64::INFINITY);
            *e = e.min(d);
        }
    }
    let v: Vec<f64> = nearest.values().copied().collect();
    assert!(v.len() > 20, "{} stretches", v.len());
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!(sd > 0.3, "frontmost dots sit {mean:.2} ± {sd:.2} mm behind the line: too even");
    // Hairline dots are lighter (ladder: +10 % dilution) and labelled hairline.
    let hl: Vec<&PlannedDot> = out.plan.dots.iter().filter(|d| d.zone == Zone::Hairline).collect();
    assert!(hl.len() > 20);
    assert!(hl.iter().all(|d| d.dilution_pct == 60.0), "session 1 50 % + hairline 10 %");
}

#[test]
fn layered_sessions_interleave_keep_spacing_and_complete_the_density() {
    let (_, map) = full_head();
    let (s1, who, out1) = full_head_plan1();
    let rig = rig();
    let follicles: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let mut plans = vec![out1.plan.clone()];
    let mut prior: Vec<[f64; 3]> = positions(&out1.plan);
    let heal = HealingModel::default();
    let mut last_metrics = None;
    for k in 2..=3u32 {
        let refs: Vec<&SessionPlan> = plans.iter().collect();
        let healed = heal_map(map, &refs, &heal, 40 + k as u64);
        let smp = healed.follicles.iter().filter(|f| f.kind == FollicleKind::SmpDot).count();
        let made: usize = plans.iter().map(|p| p.dots.len()).sum();
        assert!(smp < made && smp as f64 > 0.85 * made as f64, "healing loses a few dots: {smp} of {made}");
        let spec = layered_session_spec(s1, k);
        let earlier = prior.clone();
        let mut req = PlanRequest::new(&healed, &spec, &rig, &base_from_head());
        req.intake = Some(who);
        req.prior_dots_head = &earlier;
        let out = plan_session_full(&req).expect("later session plans");
        assert!(out.plan.dots.iter().all(|d| d.layer == k && d.id / DOT_ID_STRIDE == k));
        // Hard spacing against every earlier entry (seen or faded) and every follicle.
        let now = positions(&out.plan);
        assert!(metrics::min_spacing_mm(&now, &prior) >= 0.9);
        assert!(metrics::min_spacing_mm(&now, &follicles) >= 0.9);
        if k == 2 {
            // Interleaved: session-2 dots sit in the gaps between session-1 dots, not next
            // to them: their nearest session-1 dot is mostly well beyond the hard spacing.
            // Interleaved: session-2 dots sit in the gaps between the healed session-1 dots,
            // not wherever the hard spacing allows. On the bald top of the head, fewer of them
            // come within 1 mm of a session-1 dot than random points the spacing allows
            // (measured: 24 % against 35 %).
            let healed_s1: Vec<[f64; 3]> =
                healed.follicles.iter().filter(|f| f.kind == FollicleKind::SmpDot).map(|f| f.position()).collect();
            let top =
                |p: &[f64; 3]| p[0].abs() < 40.0 && p[1].abs() < 40.0 && healed.regions.code_at(p[0], p[1]) == 'B';
            let s1grid = smp_core::spatial::PointGrid::from_points(1.0, healed_s1.iter().copied());
            let hugging = |pts: &[[f64; 3]]| {
                let inside: Vec<&[f64; 3]> = pts.iter().filter(|p| top(p)).collect();
                inside.iter().filter(|p| s1grid.any_within(***p, 1.0)).count() as f64 / inside.len().max(1) as f64
            };
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            let mut taken = smp_core::spatial::PointGrid::from_points(1.0, healed_s1.iter().copied());
            let mut random: Vec<[f64; 3]> = Vec::new();
            let wanted = now.iter().filter(|p| top(p)).count();
            while random.len() < wanted {
                let (x, y) =
                    (rand::Rng::random_range(&mut rng, -40.0..40.0), rand::Rng::random_range(&mut rng, -40.0..40.0));
                let p = [x, y, healed.surface.height(x, y)];
                if top(&p) && !taken.any_within(p, 0.9) {
                    taken.insert(p);
                    random.push(p);
                }
            }
            let (h_s2, h_random) = (hugging(&now), hugging(&random));
            assert!(
                h_s2 < 0.8 * h_random,
                "{h_s2:.3} of session-2 dots within 1 mm of a session-1 dot, random {h_random:.3}"
            );
        }
        prior.extend(now);
        last_metrics = Some(metrics::evaluate(&req, &out.plan).expect("metrics"));
        plans.push(out.plan);
    }
    // Shares: session 1 about 40 % of all dots; about 30,000 in total.
    let total: usize = plans.iter().map(|p| p.dots.len()).sum();
    let share1 = plans[0].dots.len() as f64 / total as f64;
    assert!((0.33..=0.45).contains(&share1), "session 1 share {share1:.2} of {total}");
    assert!((26_000..=36_000).contains(&total), "{total} dots over three sessions");
    // Every dot of every session, pairwise, and against the natural follicles.
    let all: Vec<[f64; 3]> = plans.iter().flat_map(positions).collect();
    assert!(metrics::min_spacing_mm(&all, &follicles) >= 0.9);
    // Session 3 completes the density: the healed scan plus its dots reach the zone targets
    // within the stated tolerance (the densest zones fall a few % short: faded dots keep
    // their sites, and 0.9 mm random layers saturate near 65-70 per cm²).
    let m = last_metrics.expect("session 3 measured");
    for z in &m.zones {
        let (lo, hi) = match z.zone {
            Zone::Hairline | Zone::Scar => (-0.25, 0.25),
            _ => (-0.12, 0.06),
        };
        assert!(
            (lo..=hi).contains(&z.rel_err),
            "{:?}: {:.1} vs {:.1} per cm² after session 3",
            z.zone,
            z.achieved_per_cm2,
            z.target_per_cm2
        );
    }
    // Tone: session 3 darkens one step, with less dilution; ids unique across the plan.
    let tone = |p: &SessionPlan, z: Zone| p.dots.iter().find(|d| d.zone == z).and_then(|d| d.tone.clone());
    let (t1, t3) = (tone(&plans[0], Zone::Crown).expect("s1"), tone(&plans[2], Zone::Crown).expect("s3"));
    assert!(t3.lab[0] < t1.lab[0], "{} -> {}", t1.shade, t3.shade);
    let file = PlanFile { version: smp_core::JSON_FORMAT_VERSION, patient: "p".into(), sessions: plans };
    file.validate().expect("plan file with three sessions validates");
}

#[test]
fn contraindications_refuse_unless_overridden_on_record() {
    let map = synthetic_map(&SyntheticMapSpec { half_extent_mm: 20.0, ..SyntheticMapSpec::default() });
    let spec = session1();
    let rig = rig();
    let mut who = intake(50.0);
    who.contraindications.push(Contraindication { name: "keloid scarring".into(), resolved: false, note: None });
    let mut overridden = who.clone();
    overridden.clinician_override = Some(ClinicianOverride {
        clinician: "Dr A".into(),
        reason: "scalp test patch flat".into(),
        date: "2026-02-01".into(),
    });
    let mut incomplete = overridden.clone();
    incomplete.clinician_override =
        Some(ClinicianOverride { clinician: "Dr A".into(), reason: " ".into(), date: "2026-02-01".into() });
    let mut req = PlanRequest::new(&map, &spec, &rig, &base_from_head());
    req.intake = Some(&who);
    let err = plan_session_full(&req).expect_err("refused");
    assert!(matches!(err, PlanError::Contraindicated { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("keloid scarring") && msg.contains("clinician_override"), "{msg}");
    assert!(matches!(place_session(&req), Err(PlanError::Contraindicated { .. })), "placement is gated too");
    // Resolved: plans. Overridden on record: plans, and says so.
    let req = PlanRequest { intake: Some(&overridden), ..req };
    let out = plan_session_full(&req).expect("overridden");
    assert!(
        out.plan.warnings.iter().any(|w| w.contains("keloid scarring") && w.contains("Dr A")),
        "{:?}",
        out.plan.warnings
    );
    // An incomplete override is an input error naming the field.
    let req = PlanRequest { intake: Some(&incomplete), ..req };
    let err = plan_session_full(&req).expect_err("incomplete override");
    assert!(err.to_string().contains("clinician_override.reason"), "{err}");
    // Without an intake the plan is made but warns that nothing was checked.
    let req = PlanRequest { intake: None, ..req };
    let out = plan_session_full(&req).expect("plans");
    assert!(out.plan.warnings.iter().any(|w| w.contains("contraindications were not checked")));
}

#[test]
fn ladder_tones_follow_zone_and_legacy_plans_keep_the_spec_dilution() {
    let map = synthetic_map(&SyntheticMapSpec { half_extent_mm: 30.0, cell_mm: 1.0, ..SyntheticMapSpec::default() });
    let spec = SessionSpec { zones: Some(ZonesSpec::default()), ..session1() };
    let rig = rig();
    let mut who = intake(30.0);
    who.hair_color = HairColor::Grey;
    let mut req = PlanRequest::new(&map, &spec, &rig, &base_from_head());
    req.intake = Some(&who);
    let out = plan_session_full(&req).expect("plans");
    // The map has no measured skin tone: the intake's type is missing too, so the ladder
    // assumes type 3 and says so.
    assert!(out.plan.warnings.iter().any(|w| w.contains("assumed type 3")));
    assert_eq!((out.stats.fitzpatrick, out.stats.hair_color), (Some(3), Some(HairColor::Grey)));
    let scar: Vec<&PlannedDot> = out.plan.dots.iter().filter(|d| d.zone == Zone::Scar).collect();
    let body: Vec<&PlannedDot> = out.plan.dots.iter().filter(|d| d.zone != Zone::Scar).collect();
    assert!(!scar.is_empty() && !body.is_empty());
    let shade = |d: &PlannedDot| d.tone.as_ref().map(|t| t.shade.clone()).unwrap_or_default();
    assert!(body.iter().all(|d| shade(d) == "graphite" && d.dilution_pct == 50.0));
    assert!(scar.iter().all(|d| shade(d) == "ash-grey" && d.dilution_pct == 60.0), "scar: own, lighter tone");
    // A clinic's own ladder wins over the embedded one.
    let own = PigmentLadder::from_toml_str(&DEFAULT_LADDER_TOML.replace("dilution_pct = 50.0", "dilution_pct = 45.0"))
        .expect("valid");
    let req2 = PlanRequest { ladder: Some(&own), ..req.clone() };
    let out2 = plan_session_full(&req2).expect("plans");
    assert!(out2.plan.dots.iter().filter(|d| d.zone != Zone::Scar).all(|d| d.dilution_pct == 45.0));
    // The issue-2 entry point: no ladder, the spec's dilution, no shade.
    let legacy = plan_session(&map, &session1(), &rig, &base_from_head()).expect("plans");
    assert!(legacy.dots.iter().all(|d| d.tone.is_none() && d.dilution_pct == 50.0));
    // Skin measured by the scan wins: type 6 skin with grey hair gets a deeper shade.
    let mut dark = map.clone();
    dark.skin = Some(smp_core::color::skin_tone(smp_core::color::srgb_to_lab([90, 60, 45])));
    assert_eq!(dark.skin.as_ref().map(|s| s.fitzpatrick), Some(6));
    let req3 = PlanRequest { map: &dark, ..req };
    let out3 = plan_session_full(&req3).expect("plans");
    assert_eq!(out3.stats.fitzpatrick, Some(6));
    assert!(out3.plan.dots.iter().filter(|d| d.zone != Zone::Scar).all(|d| shade(d) == "charcoal-warm"));
}

#[test]
fn full_plans_are_byte_identical_for_the_same_seed() {
    let m = SyntheticMapSpec { half_extent_mm: 25.0, cell_mm: 1.0, ..SyntheticMapSpec::default() };
    let map = synthetic_map(&m);
    let spec = SessionSpec { zones: Some(ZonesSpec::default()), ..session1() };
    let rig = rig();
    let who = intake(33.0);
    let mut req = PlanRequest::new(&map, &spec, &rig, &base_from_head());
    req.intake = Some(&who);
    let a = serde_json::to_string(&plan_session_full(&req).expect("plans").plan).expect("json");
    let b = serde_json::to_string(&plan_session_full(&req).expect("plans").plan).expect("json");
    assert_eq!(a, b);
    let s2 = SessionSpec { seed: 77, ..spec.clone() };
    let req2 = PlanRequest { spec: &s2, ..req.clone() };
    let c = serde_json::to_string(&plan_session_full(&req2).expect("plans").plan).expect("json");
    assert_ne!(a, c);
    // The healed map is deterministic too.
    let plan = plan_session_full(&req).expect("plans").plan;
    let h1 = heal_map(&map, &[&plan], &HealingModel::default(), 3);
    let h2 = heal_map(&map, &[&plan], &HealingModel::default(), 3);
    assert_eq!(h1, h2);
}

#[test]
fn healing_turns_dots_into_faded_smp_follicles() {
    let map = synthetic_map(&SyntheticMapSpec { half_extent_mm: 25.0, cell_mm: 1.0, ..SyntheticMapSpec::default() });
    let plan = plan_session(&map, &session1(), &rig(), &base_from_head()).expect("plans");
    let model = HealingModel { lost_fraction: 0.2, ..HealingModel::default() };
    let healed = heal_map(&map, &[&plan], &model, 9);
    let smp: Vec<_> = healed.follicles.iter().filter(|f| f.kind == FollicleKind::SmpDot).collect();
    let frac = smp.len() as f64 / plan.dots.len() as f64;
    assert!((0.72..=0.88).contains(&frac), "kept {frac:.2}");
    assert_eq!(healed.follicles.len() - smp.len(), map.follicles.len(), "natural follicles unchanged");
    assert_eq!(healed.regions, map.regions);
    // Kept dots stay where they were tattooed; darker pigment (less dilution) reads darker.
    let at: std::collections::HashSet<[u64; 3]> = plan.dots.iter().map(|d| d.position().map(f64::to_bits)).collect();
    assert!(smp.iter().all(|f| at.contains(&f.position().map(f64::to_bits))));
    let mut dark = plan.clone();
    for d in &mut dark.dots {
        d.dilution_pct = 0.0;
    }
    let mean = |m: &ScalpMap| {
        let v: Vec<f64> = m.follicles.iter().filter(|f| f.kind == FollicleKind::SmpDot).map(|f| f.darkness).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(&heal_map(&map, &[&dark], &model, 9)) > mean(&healed) + 0.1);
}

#[test]
fn layered_specs_follow_the_clinic_shares() {
    let s1 = session1();
    let s2 = layered_session_spec(&s1, 2);
    let s3 = layered_session_spec(&s1, 3);
    assert_eq!((s2.session, s3.session), (2, 3));
    assert_eq!((s1.session_share, s2.session_share, s3.session_share), (0.4, 0.35, 1.0));
    assert_eq!((s2.dilution_pct, s3.dilution_pct), (40.0, 30.0));
    assert!(s1.seed != s2.seed && s2.seed != s3.seed);
    assert_eq!(layered_session_spec(&s1, 1), s1);
    s2.validate().expect("valid");
    s3.validate().expect("valid");
}

#[test]
fn hairline_polyline_lies_on_the_skin_at_the_line_height() {
    let (fh, map) = full_head();
    let spec = full_head_session1(fh);
    let pieces = hairline_polyline(map, &spec, Some(&intake(45.0))).expect("hairline");
    let line = Hairline::new(HairlineParams::resolve(spec.hairline.as_ref().expect("set"), Some(45.0)));
    let mut n = 0;
    for p in pieces.iter().flatten() {
        let z_line = line.line_z_mm(p[1].atan2(p[0])).expect("in the front sector");
        assert!((p[2] - z_line).abs() < 1e-6, "on the line height");
        assert!((map.surface.height(p[0], p[1]) - p[2]).abs() < 1e-3, "on the skin");
        n += 1;
    }
    assert!(n > 150, "{n} points");
    // Consecutive points are close: a continuous line for the mock-up.
    for piece in &pieces {
        for w in piece.windows(2) {
            assert!(geometry::dist3(w[0], w[1]) < 2.0);
        }
    }
    assert_eq!(hairline_polyline(map, &session1(), None), None, "no [hairline], no line");
}

#[test]
fn metrics_agree_with_brute_force_on_a_small_plan() {
    let map = synthetic_map(&SyntheticMapSpec {
        half_extent_mm: 18.0,
        cell_mm: 1.0,
        thinning_radius_mm: 16.0,
        bald_radius_mm: 9.0,
        ..SyntheticMapSpec::default()
    });
    let spec = session1();
    let rig = rig();
    let req = PlanRequest::new(&map, &spec, &rig, &base_from_head());
    let out = plan_session_full(&req).expect("plans");
    let m = metrics::evaluate(&req, &out.plan).expect("metrics");
    let dots = positions(&out.plan);
    let fol: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let brute = brute_min_distance(&dots, &dots, true).min(brute_min_distance(&dots, &fol, false));
    assert!((m.min_spacing_mm - brute).abs() < 1e-9);
    // The largest gap: no grid point over the treated bald skin is farther from every dot and
    // follicle than it says, and it is at least the gap at the point it names.
    let at = m.largest_gap_at_head.expect("bald skin treated");
    let near = dots.iter().chain(&fol).map(|q| geometry::dist3(*q, at)).fold(f64::INFINITY, f64::min);
    assert!((near - m.largest_gap_mm).abs() < 1e-6, "{near} vs {}", m.largest_gap_mm);
    assert!(m.largest_gap_mm > 0.45 && m.largest_gap_mm < 5.0, "{}", m.largest_gap_mm);
    // Areas add up; the crown zone carries the session density.
    let sum: f64 = m.zone_area_cm2.values().sum();
    assert!((sum - m.mask_area_cm2).abs() < 1e-6 * sum.max(1.0));
    assert!(m.density_err_by_zone.get(&Zone::Crown).is_some_and(|e| e.abs() < 0.1), "{:?}", m.density_err_by_zone);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Hard spacing across layers: a first session, its healed scan (some dots lost), then a
    /// second session with random share, spacing, density and zones/hairline on or off: no
    /// two dots of either session, and no dot and follicle, closer than min_spacing_mm.
    #[test]
    fn spacing_holds_across_layers_and_specs(
        seed in 0u64..1_000_000,
        density in 30.0f64..120.0,
        spacing in 0.6f64..1.4,
        share2 in 0.2f64..1.0,
        zones in any::<bool>(),
        hairline in any::<bool>(),
        lost in 0.0f64..0.5,
    ) {
        let m = SyntheticMapSpec {
            half_extent_mm: 16.0,
            cell_mm: 1.0,
            curvature_radius_mm: Some(60.0),
            thinning_radius_mm: 15.0,
            bald_radius_mm: 8.0,
            thinning_per_cm2: 20.0,
            seed,
            ..SyntheticMapSpec::default()
        };
        let map = synthetic_map(&m);
        // A hairline across the patch: the patch top is at head z 100, the line at z ~ 99.
        let hl = hairline.then(|| HairlineSpec {
            glabella_head_mm: Some([90.0, 0.0, 40.0]),
            frontal_height_mm: Some(59.0),
            temporal_height_mm: Some(59.0),
            corner_recession_mm: Some(0.0),
            ..HairlineSpec::default()
        });
        let s1 = SessionSpec {
            seed,
            target_density_per_cm2: density,
            min_spacing_mm: spacing,
            max_tilt_deg: 60.0,
            hairline: hl,
            zones: zones.then(ZonesSpec::default),
            ..session1()
        };
        let rig = rig();
        let req = PlanRequest::new(&map, &s1, &rig, &base_from_head());
        let first = match plan_session_full(&req) {
            Ok(o) => o.plan,
            Err(PlanError::NoDots { .. }) | Err(PlanError::EmptyTreatment { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("session 1: {e}"))),
        };
        let healed = heal_map(&map, &[&first], &HealingModel { lost_fraction: lost, ..HealingModel::default() }, seed);
        let prior = positions(&first);
        let s2 = SessionSpec { session_share: share2, ..layered_session_spec(&s1, 2) };
        let req2 = PlanRequest { map: &healed, spec: &s2, prior_dots_head: &prior, ..req.clone() };
        let second = match plan_session_full(&req2) {
            Ok(o) => o.plan,
            Err(PlanError::NoDots { .. }) => SessionPlan { dots: vec![], ..first.clone() },
            Err(e) => return Err(TestCaseError::fail(format!("session 2: {e}"))),
        };
        let fol: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
        let a = positions(&first);
        let b = positions(&second);
        let all: Vec<[f64; 3]> = a.iter().chain(&b).copied().collect();
        prop_assert!(brute_min_distance(&all, &all, true) >= spacing);
        prop_assert!(brute_min_distance(&all, &fol, false) >= spacing);
        if let Some(h) = &s1.hairline {
            let line = Hairline::new(HairlineParams::resolve(h, None));
            prop_assert!(all.iter().all(|p| !line.in_front(*p)));
        }
    }
}

#[test]
fn mockup_draws_toned_dots_and_the_hairline() {
    use smp_core::camera::CameraIntrinsics;
    use smp_core::image::{CameraView, RgbImage};
    let (_, map) = full_head();
    let (spec, who, out) = full_head_plan1();
    let pieces = hairline_polyline(map, spec, Some(who)).expect("hairline");
    // 400 mm above the vertex, looking straight down.
    let base_from_camera = Isometry3::from_parts(
        Translation3::new(250.0, 0.0, 600.0),
        UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0),
    );
    let skin = [222u8, 178, 152];
    let photo = CameraView {
        label: "overview".into(),
        intrinsics: CameraIntrinsics {
            width_px: 900,
            height_px: 900,
            fx_px: 1500.0,
            fy_px: 1500.0,
            cx_px: 450.0,
            cy_px: 450.0,
            distortion: [0.0; 5],
        },
        base_from_camera,
        image: RgbImage::new(900, 900, skin),
        depth: None,
    };
    let dots_only = render_mockup(&photo, &base_from_head(), &[&out.plan]);
    let with_line = render_mockup_with_hairline(&photo, &base_from_head(), &[&out.plan], &pieces);
    // Dots are drawn (in their ladder shade, diluted) darker than the skin.
    let camera_from_head = base_from_camera.inverse() * base_from_head();
    let d = out.plan.dots.iter().find(|d| d.zone == Zone::MidScalp && d.z_mm > 100.0).expect("a dot on top");
    let px = photo.intrinsics.project(&(camera_from_head * nalgebra::Point3::from(d.position()))).expect("in view");
    let c = dots_only.get(px.x.round() as u32, px.y.round() as u32);
    assert!(c[0] < skin[0] && c[2] < skin[2], "{c:?}");
    // The line shows where it projects, in the marker colour, and nowhere else changed.
    let mut on_line = 0;
    for p in pieces.iter().flatten() {
        let q = camera_from_head * nalgebra::Point3::from(*p);
        if let Some(px) = photo.intrinsics.project(&q) {
            let (x, y) = (px.x.round(), px.y.round());
            if (0.0..900.0).contains(&x) && (0.0..900.0).contains(&y) {
                let c = with_line.get(x as u32, y as u32);
                on_line += usize::from(c[2] > c[0]);
            }
        }
    }
    assert!(on_line > 100, "{on_line} line points drawn in the marker colour");
    let changed = with_line.data.chunks(3).zip(dots_only.data.chunks(3)).filter(|(a, b)| a != b).count();
    assert!(changed > 500 && changed < 60_000, "{changed} pixels");
    assert_eq!(with_line.get(2, 2), skin);
}

/// Issue 5's target, as the arm-time model computes it (not a wall-clock timing): session 1
/// of the full head with the shipped full-head spec (`sim/sessions/full-s1.toml`: its feeds,
/// dwell, hover and recovery rule) at the default rig's dynamics takes under 60 minutes.
#[test]
fn full_head_session1_estimates_under_an_hour_at_the_default_dynamics() {
    let (fh, map) = full_head();
    let shipped = SessionSpec::from_toml_str(FULL_HEAD_SESSION1_TOML).expect("full-s1.toml parses");
    let spec = SessionSpec {
        max_tilt_deg: 80.0,
        hairline: shipped.hairline.clone().map(|h| HairlineSpec { glabella_head_mm: Some(fh.glabella_head_mm()), ..h }),
        ..shipped
    };
    let rig = rig();
    let bfh = base_from_head();
    let i = intake(45.0);
    let mut req = PlanRequest::new(map, &spec, &rig, &bfh);
    req.intake = Some(&i);
    let out = plan_session_full(&req).expect("full head session 1 plans");
    let (n, t) = (out.plan.dots.len(), out.plan.estimates.arm_time_s);
    eprintln!("full head session 1: {n} dots, estimated arm time {:.1} min ({:.3} s/dot)", t / 60.0, t / n as f64);
    assert!(n > 10_000, "a full-head session 1 has over 10,000 dots: {n}");
    assert!(t < 3600.0, "estimated arm time {:.1} min", t / 60.0);
    assert_eq!(out.stats.recovery_violations, 0);
    let bound = out.plan.estimates.tour_lower_bound_mm.expect("a bound");
    assert!(bound > 0.0 && bound <= out.plan.estimates.tour_mm);
}

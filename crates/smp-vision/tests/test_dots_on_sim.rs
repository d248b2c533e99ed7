//! Test dots on synthetic patients with different skin responses: the simulator deposits the
//! grid through each patient's own `[skin_response]` and renders the flange camera over it;
//! vision measures the dots, fits diameter against dwell and depth, finds the blowout onset
//! and chooses the session's dwell and depth. Scored against the simulator's truth
//! (`SkinResponse::diameter_mm`, the per-dot deposited diameters, the blowout depth).
//!
//! `cargo test -p smp-vision --test on_sim test_dots_on_sim:: -- --nocapture` prints the figures.

use smp_core::rig::Rig;
use smp_core::test_dots::{choose_parameters, ConcealedSite, ParameterLimits, TestDotPlan};
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::render::RenderConfig;
use smp_sim::skin::SkinResponse;
use smp_sim::test_dots::{grid_at_site, run_test_dots, TestDotRun};
use smp_vision::skin_response::{
    fit_skin_response, measure_test_dots, skin_response_from_test_dots, SkinResponseError, TestDotConfig,
};

const DEPTH_LIMIT_MM: f64 = 1.2;
/// Largest error of the predicted diameter at the chosen parameters against the model truth
/// (measured worst 0.011 mm over the four patients; the per-dot variation of 0.02-0.03 mm in
/// the truth limits what 8-16 dots can pin down).
const CHOSEN_TOL_MM: f64 = 0.03;
/// Largest per-dot error of a measured diameter against the deposited one (measured worst
/// 0.025 mm: a grey hair over a dot on Fitzpatrick VI skin), and the RMS over all clean dots.
const DOT_TOL_MM: f64 = 0.035;
const DOT_RMS_TOL_MM: f64 = 0.012;

struct Case {
    name: &'static str,
    toml: &'static str,
    site: ConcealedSite,
    response: SkinResponse,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "default skin, nape",
            toml: DEFAULT_PATIENT_TOML,
            site: ConcealedSite::Nape,
            response: SkinResponse::default(),
        },
        Case {
            name: "fast-spreading, blowout 1.1 mm, Fitzpatrick V, behind left ear",
            toml: include_str!("../../../sim/patients/norwood5-fitz5-black.toml"),
            site: ConcealedSite::BehindLeftEar,
            response: SkinResponse {
                base_diameter_mm: 0.15,
                diameter_per_dwell_mm_per_s: 0.8,
                diameter_per_depth_mm_per_mm: 0.25,
                blowout_depth_mm: 1.1,
                ..SkinResponse::default()
            },
        },
        Case {
            name: "slow-spreading, no blowout, Fitzpatrick I, nape",
            toml: include_str!("../../../sim/patients/norwood2-fitz1-blond.toml"),
            site: ConcealedSite::Nape,
            response: SkinResponse {
                base_diameter_mm: 0.25,
                diameter_per_dwell_mm_per_s: 0.3,
                diameter_per_depth_mm_per_mm: 0.12,
                blowout_depth_mm: 1.6,
                ..SkinResponse::default()
            },
        },
        Case {
            name: "thin skin, blowout 0.9 mm, Fitzpatrick VI, behind right ear",
            toml: include_str!("../../../sim/patients/norwood7-fitz6-grey.toml"),
            site: ConcealedSite::BehindRightEar,
            response: SkinResponse {
                base_diameter_mm: 0.2,
                diameter_per_dwell_mm_per_s: 0.6,
                diameter_per_depth_mm_per_mm: 0.2,
                diameter_sd_mm: 0.03,
                blowout_depth_mm: 0.9,
                ..SkinResponse::default()
            },
        },
    ]
}

fn patient(case: &Case) -> SyntheticPatient {
    let mut spec = PatientSpec::from_toml_str(case.toml).expect("patient file");
    spec.skin_response = case.response.clone();
    SyntheticPatient::generate(&spec)
}

fn simulate(case: &Case) -> (TestDotPlan, TestDotRun) {
    let p = patient(case);
    let plan = grid_at_site(&p, case.site, DEPTH_LIMIT_MM).plan(DEPTH_LIMIT_MM).expect("plan");
    let run = run_test_dots(&p, &Rig::default_sim(), &plan, &RenderConfig::default()).expect("simulated test dots");
    (plan, run)
}

fn limits() -> ParameterLimits {
    ParameterLimits { target_diameter_mm: 0.45, depth_limit_mm: DEPTH_LIMIT_MM, ..ParameterLimits::default() }
}

#[test]
fn test_dot_fit_matches_each_patients_skin_response() {
    let mut worst_chosen = 0.0f64;
    let mut worst_dot = 0.0f64;
    for case in cases() {
        let (plan, run) = simulate(&case);
        // The three steps of `skin_response_from_test_dots`, one by one so that the dots
        // print even when a later step fails.
        let cfg = TestDotConfig::default();
        let dots = measure_test_dots(&run.view, &run.base_from_head, &plan, &cfg)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let r = &case.response;
        println!("== {}", case.name);
        println!(
            "   truth d = {:.3} + {:.3} dwell + {:.3} depth, blowout beyond {:.2} mm",
            r.base_diameter_mm, r.diameter_per_dwell_mm_per_s, r.diameter_per_depth_mm_per_mm, r.blowout_depth_mm
        );
        // Per-dot measurement against the deposited diameter (blowouts included: their size
        // is measured, only the fit leaves them out).
        let mut errs = Vec::new();
        for (m, t) in dots.iter().zip(&run.truth) {
            assert_eq!(m.index, t.index);
            let e = m.diameter_mm - t.diameter_mm;
            if !t.blowout {
                errs.push(e);
            }
            println!(
                "   dot {:2} dwell {:.2} depth {:.2}: measured {:.3} truth {:.3} err {:+.4} edge {:.3} contrast {:.2} dropped {:.2}{}",
                m.index, m.dwell_s, m.depth_mm, m.diameter_mm, t.diameter_mm, e, m.edge_width_mm, m.contrast,
                m.dropped_rays, if t.blowout { " BLOWOUT" } else { "" }
            );
        }
        let fit = fit_skin_response(&dots, &cfg).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        println!(
            "   fit   d = {:.3} + {:.3} dwell + {:.3} depth, rms {:.4} mm over {} dots, onset {:?}",
            fit.d0_mm,
            fit.per_dwell_mm_per_s,
            fit.per_depth_mm_per_mm,
            fit.residual_rms_mm,
            fit.n,
            fit.blowout_onset_depth_mm
        );
        let c = choose_parameters(&fit, &limits()).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let report = skin_response_from_test_dots(&run.view, &run.base_from_head, &plan, &limits(), &cfg)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!((&report.fit, &report.chosen, &report.dots), (&fit, &c, &dots));
        let fit = &fit;
        let c = &c;
        let rms = (errs.iter().map(|e| e * e).sum::<f64>() / errs.len() as f64).sqrt();
        let bias = errs.iter().sum::<f64>() / errs.len() as f64;
        let max = errs.iter().fold(0.0f64, |m, e| m.max(e.abs()));
        println!("   per-dot diameter error (clean dots): rms {rms:.4} mm, bias {bias:+.4} mm, max {max:.4} mm");
        worst_dot = worst_dot.max(max);
        assert!(max <= DOT_TOL_MM, "{}: per-dot error {max}", case.name);
        assert!(rms <= DOT_RMS_TOL_MM, "{}: per-dot RMS {rms}", case.name);

        // Blowouts: every truly blown-out row is flagged, and no clean row is.
        let truly_blown: Vec<usize> = run.truth.iter().filter(|t| t.blowout).map(|t| t.index).collect();
        assert_eq!(fit.blowout_dots, truly_blown, "{}", case.name);
        if let Some(onset) = fit.blowout_onset_depth_mm {
            assert!(onset > r.blowout_depth_mm, "{}: onset {onset}", case.name);
        }

        // Fit against the model truth over the clean part of the grid.
        let mut worst_grid = 0.0f64;
        for d in plan.dots.iter().filter(|d| d.depth_mm <= fit.max_clean_depth_mm) {
            let e = fit.predict_mm(d.dwell_s, d.depth_mm) - r.diameter_mm(d.dwell_s, d.depth_mm);
            worst_grid = worst_grid.max(e.abs());
        }
        let truth_at_choice = r.diameter_mm(c.dwell_s, c.depth_mm);
        let err = c.predicted_diameter_mm - truth_at_choice;
        println!(
            "   chosen dwell {:.2} s depth {:.3} mm (ceiling {:.3}): predicted {:.4} mm, truth {:.4} mm, error {:+.4} mm; worst fit error over the clean grid {:.4} mm",
            c.dwell_s, c.depth_mm, c.depth_ceiling_mm, c.predicted_diameter_mm, truth_at_choice, err, worst_grid
        );
        worst_chosen = worst_chosen.max(err.abs());
        assert!(err.abs() <= CHOSEN_TOL_MM, "{}: chosen-parameter error {err}", case.name);
        assert!(c.depth_mm <= DEPTH_LIMIT_MM + 1e-9, "{}: depth {}", case.name, c.depth_mm);
        assert!(c.depth_mm <= r.blowout_depth_mm, "{}: chosen depth {} blows out", case.name, c.depth_mm);
        assert!((truth_at_choice - 0.45).abs() <= CHOSEN_TOL_MM, "{}: truth {truth_at_choice}", case.name);
    }
    println!("worst chosen-parameter error {worst_chosen:.4} mm, worst per-dot error {worst_dot:.4} mm");
}

#[test]
fn a_dot_missing_from_the_skin_is_named() {
    let case = &cases()[0];
    let p = patient(case);
    let plan = grid_at_site(&p, case.site, DEPTH_LIMIT_MM).plan(DEPTH_LIMIT_MM).expect("plan");
    // Place every dot but number 5 (the needle skipped it), then look for all of them.
    let mut placed = plan.clone();
    placed.dots.retain(|d| d.index != 5);
    let run = run_test_dots(&p, &Rig::default_sim(), &placed, &RenderConfig::default()).expect("simulated");
    let err = measure_test_dots(&run.view, &run.base_from_head, &plan, &TestDotConfig::default())
        .expect_err("dot 5 is missing");
    match &err {
        SkinResponseError::DotNotFound { index, .. } => assert_eq!(*index, 5, "{err}"),
        other => panic!("expected DotNotFound, got {other}"),
    }
    assert!(err.to_string().contains("test dot 5"), "{err}");
}

#[test]
fn too_few_clean_dots_refuse_to_fit() {
    // A 2 x 2 grid: 4 dots cannot fit 3 parameters with the redundancy the fit asks for.
    let case = cases().remove(0);
    let p = patient(&case);
    let mut grid = grid_at_site(&p, case.site, DEPTH_LIMIT_MM);
    grid.dwell_s = vec![0.05, 0.1];
    grid.depth_mm = vec![0.6, 0.8];
    let plan = grid.plan(DEPTH_LIMIT_MM).expect("plan");
    let run = run_test_dots(&p, &Rig::default_sim(), &plan, &RenderConfig::default()).expect("simulated");
    let err = skin_response_from_test_dots(&run.view, &run.base_from_head, &plan, &limits(), &TestDotConfig::default())
        .expect_err("4 dots are too few");
    assert!(matches!(err, SkinResponseError::TooFewDots { clean: 4, needed: 6, .. }), "{err}");
}

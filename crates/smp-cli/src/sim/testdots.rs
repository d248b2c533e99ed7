//! `smp testdots`: test dots at a concealed site in the simulator, measured and fitted by vision.

use std::path::PathBuf;

use serde::Serialize;
use smp_core::rig::Rig;

use crate::error::{stage, CliError};

/// `smp testdots` arguments.
#[derive(Debug, Clone)]
pub struct TestDotsArgs {
    pub patient: Option<PathBuf>,
    pub session: Option<PathBuf>,
    pub site: String,
    pub target_mm: f64,
    /// Write the session spec with the chosen dwell and depth here.
    pub out: Option<PathBuf>,
}

/// What `smp testdots` measured, fitted and chose, with the simulator's truth beside it.
#[derive(Debug, Clone, Serialize)]
pub struct TestDotsReport {
    pub patient: String,
    pub site: smp_core::test_dots::ConcealedSite,
    pub report: smp_vision::skin_response::TestDotReport,
    /// The patient's true dot diameter at the chosen dwell and depth (the simulator's model).
    pub truth_diameter_at_choice_mm: f64,
    /// Predicted minus true diameter at the choice.
    pub choice_err_mm: f64,
    /// Measured minus deposited diameter over the clean dots: RMS and max.
    pub measure_err_rms_mm: f64,
    pub measure_err_max_mm: f64,
    pub session_out: Option<String>,
}

/// `smp testdots --patient P [--spec S] [--site nape] [--target-mm 0.45] [--out S2]`: a
/// grid of test dots at a concealed site in the simulator, imaged, measured and fitted; the
/// session's dwell and depth chosen from this patient's fit.
pub fn test_dots(a: &TestDotsArgs) -> Result<TestDotsReport, CliError> {
    use smp_core::test_dots::{ConcealedSite, ParameterLimits};
    let site = match a.site.as_str() {
        "nape" => ConcealedSite::Nape,
        "behind_left_ear" => ConcealedSite::BehindLeftEar,
        "behind_right_ear" => ConcealedSite::BehindRightEar,
        other => {
            return Err(CliError::input(
                format!("--site {other:?} is not a concealed site"),
                "give nape, behind_left_ear or behind_right_ear",
            ))
        }
    };
    let cfg = crate::demo::DemoConfig { patient: a.patient.clone(), session: a.session.clone(), ..Default::default() };
    let (spec, mut session, name) = crate::demo::load_inputs(&cfg)?;
    let rig = Rig::default_sim();
    let patient = smp_sim::patient::SyntheticPatient::generate(&spec);
    let plan = smp_sim::test_dots::grid_at_site(&patient, site, session.depth_limit_mm)
        .plan(session.depth_limit_mm)
        .map_err(stage("test-dot grid"))?;
    let run = smp_sim::test_dots::run_test_dots(&patient, &rig, &plan, &smp_sim::render::RenderConfig::default())
        .map_err(stage("test dots (simulator)"))?;
    let limits = ParameterLimits::for_session(&session, a.target_mm);
    let report = smp_vision::skin_response::skin_response_from_test_dots(
        &run.view,
        &run.base_from_head,
        &plan,
        &limits,
        &smp_vision::skin_response::TestDotConfig::default(),
    )
    .map_err(stage("test dots (vision)"))?;
    let truth_at = spec.skin_response.diameter_mm(report.chosen.dwell_s, report.chosen.depth_mm);
    let errs: Vec<f64> = report
        .dots
        .iter()
        .filter_map(|m| {
            let t = run.truth.iter().find(|t| t.index == m.index)?;
            (!t.blowout).then_some(m.diameter_mm - t.diameter_mm)
        })
        .collect();
    let rms = (errs.iter().map(|e| e * e).sum::<f64>() / errs.len().max(1) as f64).sqrt();
    let max = errs.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    let mut session_out = None;
    if let Some(out) = &a.out {
        session.dwell_s = report.chosen.dwell_s;
        session.depth_mm = report.chosen.depth_mm;
        session.validate().map_err(|e| CliError::failure(format!("the chosen parameters do not validate: {e}")))?;
        let text =
            toml::to_string(&session).map_err(|e| CliError::failure(format!("cannot write the session: {e}")))?;
        crate::files::write_atomically(out, text.as_bytes())?;
        session_out = Some(out.display().to_string());
    }
    Ok(TestDotsReport {
        patient: name,
        site,
        truth_diameter_at_choice_mm: truth_at,
        choice_err_mm: report.chosen.predicted_diameter_mm - truth_at,
        measure_err_rms_mm: rms,
        measure_err_max_mm: max,
        report,
        session_out,
    })
}

/// Lines of `smp testdots`.
pub fn test_dots_summary(r: &TestDotsReport) -> String {
    let f = &r.report.fit;
    let c = &r.report.chosen;
    format!(
        "test dots on {} at {}: {} dots measured (error vs truth rms {:.4} mm, max {:.4} mm)\n  fit: d = {:.3} + {:.3}·dwell \
         + {:.3}·depth mm (rms {:.4} mm){}\n  chosen: dwell {:.2} s, depth {:.3} mm -> {:.3} mm predicted, {:.3} mm true \
         (target {:.2} mm, depth ceiling {:.2} mm){}\n",
        r.patient,
        r.site.as_str(),
        r.report.dots.len(),
        r.measure_err_rms_mm,
        r.measure_err_max_mm,
        f.d0_mm,
        f.per_dwell_mm_per_s,
        f.per_depth_mm_per_mm,
        f.residual_rms_mm,
        f.blowout_onset_depth_mm.map_or(String::new(), |d| format!(", blowout from {d:.2} mm")),
        c.dwell_s,
        c.depth_mm,
        c.predicted_diameter_mm,
        r.truth_diameter_at_choice_mm,
        c.target_diameter_mm,
        c.depth_ceiling_mm,
        r.session_out.as_ref().map_or(String::new(), |p| format!("\n  session -> {p}")),
    )
}

//! Planning subcommands: `smp plan` (a session plan from a map), `smp mockup` (the
//! consultation mock-up drawn on a photo) and `smp eval planner` (the planner measured on
//! a full head made from the simulator's ground truth).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use smp_core::image::CameraView;
use smp_core::intake::PatientIntake;
use smp_core::plan::{PlanFile, SessionSpec};
use smp_planner::PlanRequest;

use crate::error::{stage, CliError};
use crate::files::{encode_png, read_map, read_plan, read_png, read_rig, read_text, to_json, write_atomically};

/// `smp mockup` arguments.
#[derive(Debug, Clone)]
pub struct MockupArgs {
    pub plan: PathBuf,
    pub photo: PathBuf,
    pub out: PathBuf,
    /// Rig whose overview camera took the photo (embedded default when absent).
    pub rig: Option<PathBuf>,
    /// Map whose registration places the head in front of the camera (the rig's nominal
    /// head rest when absent).
    pub map: Option<PathBuf>,
    /// Only these sessions (all when empty).
    pub sessions: Vec<u32>,
    /// Patient file whose `[intake]` age chose the hairline preset (for drawing the line).
    pub patient: Option<PathBuf>,
}

/// `smp mockup`: draws the predicted healed dots of the plan's sessions (each with its
/// pigment and dilution) on the photo through the rig's overview camera model, and, given the
/// map, the designed hairline of the latest session.
pub fn mockup(a: &MockupArgs) -> Result<String, CliError> {
    let plan_file = read_plan(&a.plan)?;
    let rig = read_rig(a.rig.as_deref())?;
    let map = a.map.as_deref().map(read_map).transpose()?;
    let base_from_head = map.as_ref().map_or_else(|| rig.base_from_head_nominal(), |m| m.base_from_head.to_isometry());
    let intake = match &a.patient {
        Some(p) => Some(PatientIntake::from_patient_toml(&read_text(p, "patient", "patient")?).map_err(|e| {
            CliError::input(format!("{}: {e}", p.display()), "see sim/patients/default.toml for an [intake] table")
        })?),
        None => None,
    };
    let image = read_png(&a.photo)?;
    let k = &rig.overview_camera.intrinsics;
    if image.width != k.width_px || image.height != k.height_px {
        return Err(CliError::input(
            format!(
                "photo {} is {}x{} px but the rig's overview camera is {}x{} px",
                a.photo.display(),
                image.width,
                image.height,
                k.width_px,
                k.height_px
            ),
            "give the photo the rig's overview camera took (e.g. out/demo/overview.png), or the rig that took it (--rig)",
        ));
    }
    let plans: Vec<_> =
        plan_file.sessions.iter().filter(|s| a.sessions.is_empty() || a.sessions.contains(&s.session)).collect();
    let Some(last) = plans.last() else {
        return Err(CliError::input(
            format!("plan {} has no session {:?}", a.plan.display(), a.sessions),
            format!("sessions in the plan: {:?}", plan_file.sessions.iter().map(|s| s.session).collect::<Vec<_>>()),
        ));
    };
    let view = CameraView {
        label: "overview".into(),
        intrinsics: *k,
        base_from_camera: rig.overview_camera.base_from_camera.to_isometry(),
        image,
        depth: None,
    };
    let mut img = smp_planner::render_mockup(&view, &base_from_head, &plans);
    // The designed hairline of the latest session, on the surface of the map it was planned on.
    let hairline = map.as_ref().and_then(|m| smp_planner::hairline_polyline(m, &last.spec, intake.as_ref()));
    let hairline_px = hairline.as_ref().map_or(0, |h| smp_planner::draw_hairline(&mut img, &view, &base_from_head, h));
    write_atomically(&a.out, &encode_png(&img)?)?;
    let dots: usize = plans.iter().map(|p| p.dots.len()).sum();
    let line = match (&hairline, hairline_px) {
        (None, _) => String::new(),
        (Some(_), 0) => ", designed hairline out of the photo's view".to_string(),
        (Some(_), n) => format!(", designed hairline drawn ({n} px)"),
    };
    Ok(format!(
        "mock-up of {} session(s), {dots} dots{line}, drawn on {} -> {}\n",
        plans.len(),
        a.photo.display(),
        a.out.display()
    ))
}

/// Reads a plan file for merging, or starts a new one when `path` does not exist yet.
pub fn existing_or_new_plan(path: &Path, patient: &str) -> Result<PlanFile, CliError> {
    if !path.exists() {
        return Ok(PlanFile { version: smp_core::JSON_FORMAT_VERSION, patient: patient.to_string(), sessions: vec![] });
    }
    let text = read_text(path, "plan", "out")?;
    let pf = PlanFile::from_json_str(&text).map_err(|e| {
        CliError::input(
            format!("{} exists and is not a plan file: {e}", path.display()),
            "choose another --out, or remove the file",
        )
    })?;
    if pf.patient != patient {
        return Err(CliError::input(
            format!("{} holds the plan of patient {:?}, not {:?}", path.display(), pf.patient, patient),
            "choose another --out for this patient",
        ));
    }
    Ok(pf)
}

/// Turns a planner error into a CLI error naming the stage.
pub fn planner_error(e: smp_planner::PlanError) -> CliError {
    stage("planner")(e)
}

/// `smp plan` arguments.
#[derive(Debug, Clone)]
pub struct PlanArgs {
    pub map: PathBuf,
    /// Patient file with its `[intake]` (a sim patient file carries one).
    pub patient: PathBuf,
    pub session: u32,
    /// Plan file to write; an existing one of the same patient keeps its earlier sessions and
    /// gets this one added or replaced.
    pub out: PathBuf,
    /// Session spec; the embedded `sim/sessions/full-s1.toml` when absent. A session-1 spec
    /// is layered into session N ([`smp_planner::layered_session_spec`]).
    pub spec: Option<PathBuf>,
    pub rig: Option<PathBuf>,
}

/// Figures of one planned session, as `smp plan --json` and `smp eval planner --json` print them.
#[derive(Debug, Clone, Serialize)]
pub struct SessionFigures {
    pub session: u32,
    pub dots: usize,
    pub min_spacing_mm: f64,
    pub density_err_by_zone: BTreeMap<String, f64>,
    pub largest_gap_mm: f64,
    pub tour_mm: f64,
    pub tour_lower_bound_mm: f64,
    pub tour_over_bound: f64,
    pub recovery_violations: usize,
    pub est_arm_time_s: f64,
    pub plan_wall_s: f64,
    pub mask_area_cm2: f64,
    pub warnings: Vec<String>,
}

pub(crate) fn figures(
    req: &smp_planner::PlanRequest<'_>,
    o: &smp_planner::PlanOutcome,
    wall_s: f64,
) -> Result<SessionFigures, CliError> {
    let m = smp_planner::metrics::evaluate(req, &o.plan).map_err(planner_error)?;
    let bound = o.stats.tour_lower_bound_mm;
    Ok(SessionFigures {
        session: o.plan.session,
        dots: m.dots,
        min_spacing_mm: if m.min_spacing_mm.is_finite() { m.min_spacing_mm } else { -1.0 },
        density_err_by_zone: m.density_err_by_zone.iter().map(|(z, e)| (z.as_str().to_string(), *e)).collect(),
        largest_gap_mm: m.largest_gap_mm,
        tour_mm: o.plan.estimates.tour_mm,
        tour_lower_bound_mm: bound,
        tour_over_bound: if bound > 0.0 { o.stats.tour_mm / bound } else { 1.0 },
        recovery_violations: o.stats.recovery_violations,
        est_arm_time_s: o.plan.estimates.arm_time_s,
        plan_wall_s: wall_s,
        mask_area_cm2: m.mask_area_cm2,
        warnings: o.plan.warnings.clone(),
    })
}

/// The session spec for session `n`: from a file or the embedded full-head session 1, layered.
pub(crate) fn session_spec(path: Option<&Path>, n: u32) -> Result<SessionSpec, CliError> {
    let (text, name) = match path {
        Some(p) => (read_text(p, "session spec", "spec")?, p.display().to_string()),
        None => (smp_planner::FULL_HEAD_SESSION1_TOML.to_string(), "sim/sessions/full-s1.toml (embedded)".into()),
    };
    let spec = SessionSpec::from_toml_str(&text).map_err(|e| {
        CliError::input(format!("{name}: {e}"), "fix the session spec; sim/sessions/full-s1.toml is a valid example")
    })?;
    if !(1..=4).contains(&n) {
        return Err(CliError::input(format!("--session {n} is not a session"), "sessions are numbered 1 to 4"));
    }
    match spec.session {
        s if s == n => Ok(spec),
        1 => Ok(smp_planner::layered_session_spec(&spec, n)),
        s => Err(CliError::input(
            format!("{name} is a session-{s} spec, not session {n}"),
            "give a session-1 spec (the others derive from it) or the spec of this session",
        )),
    }
}

/// The patient's name in a patient file (`name = ...`), else the file's stem.
fn patient_name(text: &str, path: &Path) -> String {
    text.parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("name").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| path.file_stem().map_or("patient".into(), |s| s.to_string_lossy().into_owned()))
}

/// `smp plan`: plans session N on a map, gated by the patient's intake, and writes it into
/// the plan file next to the patient's earlier sessions (whose dots it keeps clear of).
pub fn plan(a: &PlanArgs) -> Result<SessionFigures, CliError> {
    let map = read_map(&a.map)?;
    let patient_text = read_text(&a.patient, "patient", "patient")?;
    let intake = PatientIntake::from_patient_toml(&patient_text).map_err(|e| {
        CliError::input(format!("{}: {e}", a.patient.display()), "see sim/patients/default.toml for an [intake] table")
    })?;
    let patient = patient_name(&patient_text, &a.patient);
    let spec = session_spec(a.spec.as_deref(), a.session)?;
    let rig = read_rig(a.rig.as_deref())?;
    let mut plan_file = existing_or_new_plan(&a.out, &patient)?;
    let prior: Vec<[f64; 3]> = plan_file
        .sessions
        .iter()
        .filter(|s| s.session < a.session)
        .flat_map(|s| s.dots.iter().map(|d| d.position()))
        .collect();
    let base_from_head = map.base_from_head.to_isometry();
    let mut req = PlanRequest::new(&map, &spec, &rig, &base_from_head);
    req.intake = Some(&intake);
    req.prior_dots_head = &prior;
    let t0 = Instant::now();
    let outcome = smp_planner::plan_session_full(&req).map_err(planner_error)?;
    let wall_s = t0.elapsed().as_secs_f64();
    let fig = figures(&req, &outcome, wall_s)?;
    let mut dropped: Vec<u32> = plan_file.sessions.iter().map(|s| s.session).filter(|s| *s > a.session).collect();
    dropped.sort_unstable();
    plan_file.sessions.retain(|s| s.session < a.session);
    plan_file.sessions.push(outcome.plan);
    plan_file.validate().map_err(|e| CliError::failure(format!("the new plan file does not validate: {e}")))?;
    write_atomically(&a.out, to_json(&plan_file)?.as_bytes())?;
    let mut fig = fig;
    if !dropped.is_empty() {
        fig.warnings.push(format!(
            "sessions {dropped:?} were removed from {}: they were planned on top of the session just replaced",
            a.out.display()
        ));
    }
    Ok(fig)
}

/// The readable lines `smp plan` and `smp eval planner` print for a session.
pub fn session_summary(f: &SessionFigures) -> String {
    let zones: Vec<String> = f.density_err_by_zone.iter().map(|(z, e)| format!("{z} {:+.1} %", 100.0 * e)).collect();
    let mut s = format!(
        "session {}: {} dots over {:.1} cm², min spacing {:.3} mm, largest gap {:.1} mm\n  density error: {}\n  \
         tour {:.0} mm (lower bound {:.0} mm, x{:.3}), recovery violations {}\n  estimated arm time {:.1} min, \
         planned in {:.2} s\n",
        f.session,
        f.dots,
        f.mask_area_cm2,
        f.min_spacing_mm,
        f.largest_gap_mm,
        zones.join(", "),
        f.tour_mm,
        f.tour_lower_bound_mm,
        f.tour_over_bound,
        f.recovery_violations,
        f.est_arm_time_s / 60.0,
        f.plan_wall_s,
    );
    for w in &f.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}

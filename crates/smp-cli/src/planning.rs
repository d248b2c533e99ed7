//! Planning subcommands: `smp plan` (a session plan from a map), `smp mockup` (the
//! consultation mock-up drawn on a photo) and `smp eval planner` (the planner measured on
//! a full head made from the simulator's ground truth).

use std::path::{Path, PathBuf};

use smp_core::image::CameraView;
use smp_core::plan::PlanFile;

use crate::error::{stage, CliError};
use crate::files::{encode_png, read_plan, read_png, read_rig, read_text, write_atomically};

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
}

/// `smp mockup`: draws the predicted healed dots of the plan's sessions on the photo,
/// through the rig's overview camera model.
pub fn mockup(a: &MockupArgs) -> Result<String, CliError> {
    let plan_file = read_plan(&a.plan)?;
    let rig = read_rig(a.rig.as_deref())?;
    let base_from_head = match &a.map {
        Some(p) => crate::files::read_map(p)?.base_from_head.to_isometry(),
        None => rig.base_from_head_nominal(),
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
    if plans.is_empty() {
        return Err(CliError::input(
            format!("plan {} has no session {:?}", a.plan.display(), a.sessions),
            format!("sessions in the plan: {:?}", plan_file.sessions.iter().map(|s| s.session).collect::<Vec<_>>()),
        ));
    }
    let view = CameraView {
        label: "overview".into(),
        intrinsics: *k,
        base_from_camera: rig.overview_camera.base_from_camera.to_isometry(),
        image,
        depth: None,
    };
    let img = smp_planner::render_mockup(&view, &base_from_head, &plans);
    write_atomically(&a.out, &encode_png(&img)?)?;
    let dots: usize = plans.iter().map(|p| p.dots.len()).sum();
    Ok(format!(
        "mock-up of {} session(s), {dots} dots, drawn on {} -> {}\n",
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

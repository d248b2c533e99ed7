//! The camera check of dots a fault left `uncertain`, on the simulated rig: the flange camera
//! is put over each such dot's planned site, the simulator renders the skin with every needle
//! entry of the session deposited through the patient's skin model, and vision decides
//! whether fresh pigment is there.
//!
//! What each answer does (journalled with the camera's evidence as the reason):
//! - pigment at the site: `executed`;
//! - clean skin at the site: `skipped` (never re-sent in this session: a wrong "clean" would
//!   double the dot, which a layered treatment cannot undo; the next layer's scan sees the gap
//!   and fills it);
//! - no safe answer (out of view, out of the arm's travel, glare): left `uncertain` for the
//!   operator (`smp resolve`).

use nalgebra::Isometry3;
use serde::Serialize;
use smp_core::plan::{DotState, SessionPlan};
use smp_core::rig::Rig;
use smp_core::NeedleEntry;
use smp_sim::dot_site::DotSiteScene;
use smp_sim::patient::SyntheticPatient;
use smp_sim::render::RenderConfig;
use smp_vision::dot_check::{check_dot_site, DotCheckConfig, DotSiteCheck};

use crate::error::{stage, CliError};

/// Pixels of the flange camera's centre crop the check renders and reads: a few millimetres
/// of skin around the site, all the evidence there is.
const CHECK_CROP_PX: (u32, u32) = (96, 96);

/// What the camera check decided.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CameraCheckReport {
    pub checked: usize,
    /// Resolved as executed (pigment seen).
    pub present: usize,
    /// Resolved as skipped (clean skin seen).
    pub absent: usize,
    /// Left uncertain for the operator, with the reason per dot.
    pub unclear: Vec<(u32, String)>,
}

impl CameraCheckReport {
    /// One line for the run's fault list.
    pub fn summary(&self) -> String {
        format!(
            "camera check of {} uncertain dot(s): {} pigment seen (executed), {} clean skin (skipped, left for the next \
             layer), {} unclear (left for the operator{})",
            self.checked,
            self.present,
            self.absent,
            self.unclear.len(),
            if self.unclear.is_empty() {
                String::new()
            } else {
                format!(": {}", self.unclear.iter().map(|(d, r)| format!("dot {d} {r}")).collect::<Vec<_>>().join("; "))
            }
        )
    }
}

/// Looks at every uncertain dot of `plan` in `journal` and resolves those the camera can.
///
/// `true_base_from_head` is where the simulator holds the head (it renders there);
/// `registered_base_from_head` is the rig's belief, which vision uses. `entries` are the
/// session's powered needle entries so far (the skin's truth in the simulator).
/// `expected_dot_mm` is the dot diameter the session aims at (the test-dot choice).
#[allow(clippy::too_many_arguments)]
pub fn resolve_uncertain_by_camera(
    journal: &mut smp_store::Journal,
    patient: &SyntheticPatient,
    rig: &Rig,
    true_base_from_head: &Isometry3<f64>,
    registered_base_from_head: &Isometry3<f64>,
    entries: &[NeedleEntry],
    plan: &SessionPlan,
    expected_dot_mm: f64,
) -> Result<CameraCheckReport, CliError> {
    let uncertain = journal.dots_in_state(DotState::Uncertain).map_err(stage("journal"))?;
    let mut report = CameraCheckReport::default();
    if uncertain.is_empty() {
        return Ok(report);
    }
    let scene = DotSiteScene::from_entries(
        patient,
        entries,
        plan.spec.dwell_s,
        plan.session,
        plan.spec.dilution_pct,
        *true_base_from_head,
    )
    .map_err(|e| CliError::failure(format!("camera check: {e}")))?;
    let cfg = RenderConfig { seed: patient.spec().seed, ..RenderConfig::default() };
    let check_cfg = DotCheckConfig::default();
    let at_s = crate::run_cmd::wall_clock_s();
    for id in uncertain {
        report.checked += 1;
        let Some(dot) = plan.dots.iter().find(|d| d.id == id) else {
            report.unclear.push((id, "is not in this session's plan".into()));
            continue;
        };
        let view = match scene.render_site(rig, dot.position(), Some(CHECK_CROP_PX), &format!("check{id}"), &cfg) {
            Ok(v) => v.view,
            Err(e) => {
                report.unclear.push((id, e.to_string()));
                continue;
            }
        };
        let seen = check_dot_site(
            &view.image,
            &view.intrinsics,
            &view.base_from_camera,
            registered_base_from_head,
            dot.position(),
            dot.normal,
            expected_dot_mm,
            &check_cfg,
        )
        .map_err(|e| CliError::failure(format!("camera check of dot {id}: {e}")))?;
        let (to, reason) = match seen {
            DotSiteCheck::Present { offset_mm, contrast, .. } => {
                report.present += 1;
                (
                    DotState::Executed,
                    format!("camera: pigment at the site ({offset_mm:.2} mm off plan, contrast {contrast:.2})"),
                )
            }
            DotSiteCheck::Absent { contrast } => {
                report.absent += 1;
                (
                    DotState::Skipped,
                    format!("camera: clean skin at the site (contrast {contrast:.2}); left for the next layer"),
                )
            }
            DotSiteCheck::Unclear { reason } => {
                report.unclear.push((id, reason.to_string()));
                continue;
            }
        };
        journal.resolve_uncertain(id, to, &reason, at_s).map_err(stage("journal"))?;
    }
    Ok(report)
}

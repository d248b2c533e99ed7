//! The camera check of dots a fault left `uncertain`: the flange camera is put over each such
//! dot's planned site (where the host believes it is: the current registration), and vision
//! decides whether fresh pigment is there.
//!
//! What each answer does (journalled with the camera's evidence as the reason):
//! - pigment at the site: `executed`;
//! - clean skin at the site: `skipped` (never re-sent in this session: a wrong "clean" would
//!   double the dot, which a layered treatment cannot undo; the next layer's scan sees the gap
//!   and fills it);
//! - no safe answer (out of view, out of the arm's travel, glare): left `uncertain` for the
//!   operator (`smp resolve`).

use nalgebra::{Isometry3, Point3};
use serde::Serialize;
use smp_core::plan::{DotState, SessionPlan};
use smp_core::rig::Rig;
use smp_store::Journal;
use smp_vision::dot_check::{check_dot_site, DotCheckConfig, DotSiteCheck};

use crate::world::FlangeCamera;

/// Pixels of the flange camera's centre crop the check reads: a few millimetres of skin
/// around the site, all the evidence there is.
pub const CHECK_CROP_PX: (u32, u32) = (96, 96);

/// What the camera check decided.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CheckReport {
    pub checked: usize,
    /// Resolved as executed (pigment seen).
    pub present: usize,
    /// Resolved as skipped (clean skin seen).
    pub absent: usize,
    /// Left uncertain for the operator, with the reason per dot.
    pub unclear: Vec<(u32, String)>,
}

impl CheckReport {
    /// One line for the session's log.
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

/// Why the check could not go on at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("journal: {0}")]
    Journal(#[from] smp_store::StoreError),
    #[error("dot check: {0}")]
    Vision(String),
}

/// Looks at every uncertain dot of `plan` in `journal` and resolves those the camera can.
/// `base_from_head` is the host's registration; `expected_dot_mm` the dot diameter the session
/// aims at; `at_s` the time the resolutions are journalled with.
pub fn resolve_uncertain_by_camera(
    journal: &mut Journal,
    camera: &mut dyn FlangeCamera,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    plan: &SessionPlan,
    expected_dot_mm: f64,
    at_s: f64,
) -> Result<CheckReport, CheckError> {
    let uncertain = journal.dots_in_state(DotState::Uncertain)?;
    let mut report = CheckReport::default();
    let cfg = DotCheckConfig::default();
    for id in uncertain {
        report.checked += 1;
        let Some(dot) = plan.dots.iter().find(|d| d.id == id) else {
            report.unclear.push((id, "is not in this session's plan".into()));
            continue;
        };
        // The camera over the site where the host believes it is.
        let site_base = base_from_head * Point3::from(dot.position());
        let machine = rig.machine_for_camera_over_xyz([site_base.x, site_base.y, site_base.z]);
        let view = match camera.capture_at(&machine, Some(CHECK_CROP_PX), &format!("check{id}")) {
            Ok(v) => v,
            Err(e) => {
                report.unclear.push((id, e.to_string()));
                continue;
            }
        };
        let seen = check_dot_site(
            &view.image,
            &view.intrinsics,
            &view.base_from_camera,
            base_from_head,
            dot.position(),
            dot.normal,
            expected_dot_mm,
            &cfg,
        )
        .map_err(|e| CheckError::Vision(format!("dot {id}: {e}")))?;
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
        journal.resolve_uncertain(id, to, &reason, at_s)?;
    }
    Ok(report)
}

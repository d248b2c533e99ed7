//! A simulated scan: the capture loop with lost-frame retries, and writing it as a scan
//! directory (`smp sim render`, `smp eval vision`, the scan tests).
//!
//! Why the capture loop lives here: a lost camera frame is an I/O event of the session (the
//! simulator's fault scenario says which frames never arrive), and the policy (retry a view a
//! few times, then leave it out and say so) is the host's, not vision's. Vision maps what it
//! is given; the warning names every view it was not given.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use nalgebra::Isometry3;
use smp_core::capture::{CameraRole, ScanManifest, ViewRecord, SCAN_MANIFEST_FILE, SCAN_MANIFEST_VERSION};
use smp_core::geometry::PoseSpec;
use smp_core::image::CameraView;
use smp_core::rig::Rig;
use smp_sim::faults::CameraFrameDrop;
use smp_sim::patient::SyntheticPatient;

use crate::error::{stage, CliError};
use crate::files::{to_json, write_png, write_text};

pub use smp_core::capture::{MAX_CAPTURE_ATTEMPTS, OVERVIEW_LABEL};

/// One capture attempt of a simulated scan.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub label: String,
    pub camera: CameraRole,
    pub frame_index: u64,
    /// The frame, or `None` when it was lost.
    pub view: Option<CameraView>,
}

/// What a simulated scan captured, attempt by attempt.
#[derive(Debug, Clone)]
pub struct SimScan {
    pub attempts: Vec<Attempt>,
    /// Where the rig believes the head is (its nominal rest), as the manifest records it.
    pub base_from_head: Isometry3<f64>,
    /// The patient's head band as measured, when one is worn (the band views register it).
    pub fiducial_layout: Option<smp_core::fiducial_layout::FiducialLayout>,
}

impl SimScan {
    /// The overview frame, if it arrived.
    pub fn overview(&self) -> Option<&CameraView> {
        self.attempts.iter().filter(|a| a.camera == CameraRole::Overview).find_map(|a| a.view.as_ref())
    }

    /// The flange tiles that arrived, one per view.
    pub fn tiles(&self) -> Vec<CameraView> {
        self.attempts.iter().filter(|a| a.camera == CameraRole::Flange).filter_map(|a| a.view.clone()).collect()
    }

    /// The band cameras' frames that arrived.
    pub fn band_views(&self) -> Vec<CameraView> {
        self.attempts.iter().filter(|a| a.camera == CameraRole::Band).filter_map(|a| a.view.clone()).collect()
    }

    /// Views whose every attempt was lost.
    pub fn lost_views(&self) -> Vec<String> {
        let mut labels: Vec<&str> = Vec::new();
        for a in &self.attempts {
            if !labels.contains(&a.label.as_str()) {
                labels.push(&a.label);
            }
        }
        labels
            .into_iter()
            .filter(|l| self.attempts.iter().filter(|a| a.label == *l).all(|a| a.view.is_none()))
            .map(str::to_string)
            .collect()
    }

    /// Frames lost in all (including those a retry replaced).
    pub fn frames_lost(&self) -> usize {
        self.attempts.iter().filter(|a| a.view.is_none()).count()
    }
}

/// Hands out frame indices and says which frames the fault scenario loses.
struct FrameCounter<'a> {
    drops: &'a [CameraFrameDrop],
    next: u64,
}

impl FrameCounter<'_> {
    /// The next frame index and whether that frame arrives.
    fn take(&mut self, label: &str) -> (u64, bool) {
        let index = self.next;
        self.next += 1;
        (index, !self.drops.iter().any(|d| d.matches(label, index)))
    }
}

/// A simulated scan: the overview, then a flange tile over each scan position vision asks
/// for, then (when the patient wears a head band) a frame from each band camera; frames the
/// scenario's `camera_drops` name are lost and retried up to [`MAX_CAPTURE_ATTEMPTS`] times
/// each. Fails only when the overview never arrives (tiles cannot be placed without it).
/// The head is rendered at `base_from_head` (where the simulator holds it); the scan records
/// the rig's nominal rest as its belief, and a reader registers the head from the band.
pub fn capture_sim(
    patient: &Arc<SyntheticPatient>,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    max_tilt_deg: f64,
    cfg: &smp_sim::render::RenderConfig,
    drops: &[CameraFrameDrop],
) -> Result<SimScan, CliError> {
    let mut frames = FrameCounter { drops, next: 0 };
    let mut attempts = Vec::new();
    let mut overview = None;
    for _ in 0..MAX_CAPTURE_ATTEMPTS {
        let (frame_index, arrives) = frames.take(OVERVIEW_LABEL);
        let view = arrives.then(|| smp_sim::render::render_overview(patient, rig, base_from_head, cfg));
        overview.clone_from(&view);
        attempts.push(Attempt { label: OVERVIEW_LABEL.into(), camera: CameraRole::Overview, frame_index, view });
        if overview.is_some() {
            break;
        }
    }
    let Some(overview) = overview else {
        let tried: Vec<String> = attempts.iter().map(|a| a.frame_index.to_string()).collect();
        return Err(CliError::failure(format!(
            "overview camera: no frame arrived in {MAX_CAPTURE_ATTEMPTS} attempts (frames {}); the scan cannot place \
             its close-ups without it. Check the overview camera's cable and trigger, then scan again",
            tried.join(", ")
        )));
    };
    let vision = smp_vision::VisionConfig::default();
    let outline = smp_vision::find_scalp(&overview, &vision).map_err(stage("vision (overview)"))?;
    let positions = smp_vision::scan_positions(rig, &outline, max_tilt_deg, &vision);
    if positions.is_empty() {
        return Err(CliError::failure("vision: no scan positions: the overview shows no scalp within the rig's reach"));
    }
    // Decide every attempt's fate first (frame indices are handed out in capture order, a
    // retry straight after its loss), then render the frames that arrive on both cores.
    let mut wanted: Vec<(String, [f64; 3])> = Vec::new();
    let mut tile_attempts: Vec<(String, u64, bool)> = Vec::new();
    for (i, p) in positions.iter().enumerate() {
        let label = format!("tile{i:03}");
        for _ in 0..MAX_CAPTURE_ATTEMPTS {
            let (frame_index, arrives) = frames.take(&label);
            tile_attempts.push((label.clone(), frame_index, arrives));
            if arrives {
                wanted.push((label.clone(), *p));
                break;
            }
        }
    }
    let mut rendered: BTreeMap<String, CameraView> =
        smp_sim::tiles::render_labelled_tiles(patient, rig, base_from_head, &wanted, cfg)
            .into_iter()
            .map(|v| (v.label.clone(), v))
            .collect();
    for (label, frame_index, arrives) in tile_attempts {
        let view = if arrives { rendered.remove(&label) } else { None };
        attempts.push(Attempt { label, camera: CameraRole::Flange, frame_index, view });
    }
    let fiducial_layout = smp_sim::band_cameras::measured_layout(patient).map_err(stage("fiducial layout"))?;
    if fiducial_layout.is_some() {
        for c in smp_sim::band_cameras::band_cameras(rig) {
            for _ in 0..MAX_CAPTURE_ATTEMPTS {
                let (frame_index, arrives) = frames.take(&c.label);
                let view = arrives.then(|| {
                    smp_sim::render::render_view(
                        patient,
                        &c.intrinsics,
                        &c.base_from_camera,
                        base_from_head,
                        &c.label,
                        cfg,
                    )
                });
                attempts.push(Attempt { label: c.label.clone(), camera: CameraRole::Band, frame_index, view });
                if arrives {
                    break;
                }
            }
        }
    }
    Ok(SimScan { attempts, base_from_head: rig.base_from_head_nominal(), fiducial_layout })
}

/// Writes a scan as files: PNG per arrived frame, `.npy` per depth frame and `views.json`.
/// Returns the manifest.
pub fn write_scan(scan: &SimScan, dir: &Path) -> Result<ScanManifest, CliError> {
    let mut views = Vec::with_capacity(scan.attempts.len());
    for a in &scan.attempts {
        let (image, depth, intrinsics, base_from_camera) = match &a.view {
            Some(v) => {
                let image = format!("{}.png", v.label);
                write_png(&dir.join(&image), &v.image)?;
                let depth = match &v.depth {
                    Some(d) => {
                        let file = format!("{}.depth.npy", v.label);
                        crate::files::write_atomically(&dir.join(&file), &d.to_npy())?;
                        Some(file)
                    }
                    None => None,
                };
                (Some(image), depth, v.intrinsics, PoseSpec::from_isometry(&v.base_from_camera))
            }
            // A lost frame still has the pose the arm was at and the camera it used: what
            // the rig knew, so a re-scan knows where to go.
            None => match scan.attempts.iter().find(|b| b.label == a.label && b.view.is_some()) {
                Some(Attempt { view: Some(v), .. }) => {
                    (None, None, v.intrinsics, PoseSpec::from_isometry(&v.base_from_camera))
                }
                _ => (None, None, lost_intrinsics(a.camera), PoseSpec::identity()),
            },
        };
        views.push(ViewRecord {
            label: a.label.clone(),
            camera: a.camera,
            frame_index: a.frame_index,
            image,
            depth,
            intrinsics,
            base_from_camera,
        });
    }
    let manifest = ScanManifest {
        version: SCAN_MANIFEST_VERSION,
        base_from_head: PoseSpec::from_isometry(&scan.base_from_head),
        views,
        fiducial_layout: scan.fiducial_layout.clone(),
    };
    manifest.validate().map_err(stage("scan manifest"))?;
    write_text(&dir.join(SCAN_MANIFEST_FILE), &to_json(&manifest)?)?;
    Ok(manifest)
}

/// The rig's camera for a view all of whose frames were lost (recorded for completeness).
fn lost_intrinsics(role: CameraRole) -> smp_core::camera::CameraIntrinsics {
    let rig = Rig::default_sim();
    match role {
        CameraRole::Overview => rig.overview_camera.intrinsics,
        CameraRole::Flange => rig.flange_camera.intrinsics,
        CameraRole::Band => {
            smp_sim::band_cameras::band_cameras(&rig).first().map_or(rig.overview_camera.intrinsics, |c| c.intrinsics)
        }
    }
}

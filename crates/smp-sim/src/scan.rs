//! A simulated scan: the overview, the flange tiles and the band cameras' frames rendered in
//! capture order, with the frames a fault scenario loses and their retries, and the manifest
//! a capture of it writes.
//!
//! Why the retry policy is here and not in vision: a lost camera frame is an I/O event of the
//! session (the scenario says which frames never arrive), and retrying a view a few times,
//! then leaving it out and saying so, is the host's policy. Vision maps what it is given; the
//! manifest names every view it was not given. Where the tiles go is vision's decision, so the
//! caller hands it in (`place_tiles`): the simulator renders, it never plans a scan.

use std::collections::BTreeMap;
use std::sync::Arc;

use nalgebra::Isometry3;
use smp_core::capture::{
    CameraRole, ScanManifest, ViewRecord, MAX_CAPTURE_ATTEMPTS, OVERVIEW_LABEL, SCAN_MANIFEST_VERSION,
};
use smp_core::geometry::PoseSpec;
use smp_core::image::CameraView;
use smp_core::rig::Rig;
use thiserror::Error;

use crate::faults::CameraFrameDrop;
use crate::patient::SyntheticPatient;
use crate::render::RenderConfig;

/// Why a simulated scan could not be captured.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The overview never arrived: the tiles cannot be placed without it.
    #[error(
        "overview camera: no frame arrived in {MAX_CAPTURE_ATTEMPTS} attempts (frames {frames}); the scan cannot place \
         its close-ups without it. Check the overview camera's cable and trigger, then scan again"
    )]
    OverviewLost { frames: String },
    /// The patient's head band could not be measured.
    #[error("fiducial layout: {0}")]
    Layout(#[from] smp_core::SpecError),
}

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
/// for (`place_tiles`, given the overview: vision's job, which the simulator does not do), then (when the patient wears a head band) a frame from each band camera; frames the
/// scenario's `camera_drops` name are lost and retried up to [`MAX_CAPTURE_ATTEMPTS`] times
/// each. Fails only when the overview never arrives (tiles cannot be placed without it).
/// The head is rendered at `base_from_head` (where the simulator holds it); the scan records
/// the rig's nominal rest as its belief, and a reader registers the head from the band.
pub fn capture_scan<E: From<CaptureError>>(
    patient: &Arc<SyntheticPatient>,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    cfg: &RenderConfig,
    drops: &[CameraFrameDrop],
    place_tiles: impl FnOnce(&CameraView) -> Result<Vec<[f64; 3]>, E>,
) -> Result<SimScan, E> {
    let mut frames = FrameCounter { drops, next: 0 };
    let mut attempts = Vec::new();
    let mut overview = None;
    for _ in 0..MAX_CAPTURE_ATTEMPTS {
        let (frame_index, arrives) = frames.take(OVERVIEW_LABEL);
        let view = arrives.then(|| crate::render::render_overview(patient, rig, base_from_head, cfg));
        overview.clone_from(&view);
        attempts.push(Attempt { label: OVERVIEW_LABEL.into(), camera: CameraRole::Overview, frame_index, view });
        if overview.is_some() {
            break;
        }
    }
    let Some(overview) = overview else {
        let tried: Vec<String> = attempts.iter().map(|a| a.frame_index.to_string()).collect();
        return Err(CaptureError::OverviewLost { frames: tried.join(", ") }.into());
    };
    let positions = place_tiles(&overview)?;
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
        crate::tiles::render_labelled_tiles(patient, rig, base_from_head, &wanted, cfg)
            .into_iter()
            .map(|v| (v.label.clone(), v))
            .collect();
    for (label, frame_index, arrives) in tile_attempts {
        let view = if arrives { rendered.remove(&label) } else { None };
        attempts.push(Attempt { label, camera: CameraRole::Flange, frame_index, view });
    }
    let fiducial_layout = crate::band_cameras::measured_layout(patient).map_err(CaptureError::from)?;
    if fiducial_layout.is_some() {
        for c in crate::band_cameras::band_cameras(rig) {
            for _ in 0..MAX_CAPTURE_ATTEMPTS {
                let (frame_index, arrives) = frames.take(&c.label);
                let view = arrives.then(|| {
                    crate::render::render_view(
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

impl SimScan {
    /// The scan's manifest as a capture writes it: each arrived frame is `LABEL.png` (and its
    /// depth `LABEL.depth.npy`); a lost frame keeps the pose and camera the rig used for
    /// that view, so a re-scan knows where to go.
    pub fn manifest(&self) -> ScanManifest {
        let views = self
            .attempts
            .iter()
            .map(|a| {
                let (image, depth, intrinsics, base_from_camera) = match &a.view {
                    Some(v) => (
                        Some(format!("{}.png", v.label)),
                        v.depth.as_ref().map(|_| format!("{}.depth.npy", v.label)),
                        v.intrinsics,
                        PoseSpec::from_isometry(&v.base_from_camera),
                    ),
                    None => match self.attempts.iter().find(|b| b.label == a.label && b.view.is_some()) {
                        Some(Attempt { view: Some(v), .. }) => {
                            (None, None, v.intrinsics, PoseSpec::from_isometry(&v.base_from_camera))
                        }
                        _ => (None, None, lost_intrinsics(a.camera), PoseSpec::identity()),
                    },
                };
                ViewRecord {
                    label: a.label.clone(),
                    camera: a.camera,
                    frame_index: a.frame_index,
                    image,
                    depth,
                    intrinsics,
                    base_from_camera,
                }
            })
            .collect();
        ScanManifest {
            version: SCAN_MANIFEST_VERSION,
            base_from_head: PoseSpec::from_isometry(&self.base_from_head),
            views,
            fiducial_layout: self.fiducial_layout.clone(),
        }
    }
}

/// The rig's camera for a view all of whose frames were lost (recorded for completeness).
pub fn lost_intrinsics(role: CameraRole) -> smp_core::camera::CameraIntrinsics {
    let rig = Rig::default_sim();
    match role {
        CameraRole::Overview => rig.overview_camera.intrinsics,
        CameraRole::Flange => rig.flange_camera.intrinsics,
        CameraRole::Band => {
            crate::band_cameras::band_cameras(&rig).first().map_or(rig.overview_camera.intrinsics, |c| c.intrinsics)
        }
    }
}

#[cfg(test)]
mod tests {
    use nalgebra::Point3;

    use super::*;
    use crate::patient::PatientSpec;

    /// A lost frame is retried straight away under the next frame index; a view whose every
    /// attempt is lost is named, keeps the rig's pose for it in the manifest, and the
    /// manifest stays valid.
    #[test]
    fn lost_frames_are_retried_then_left_out_and_named() {
        let spec = PatientSpec::default_patient().expect("embedded default patient parses");
        let patient = Arc::new(SyntheticPatient::generate(&spec));
        let rig = Rig::default_sim();
        let base_from_head = rig.base_from_head_nominal();
        let top = base_from_head * Point3::new(0.0, 0.0, patient.ellipsoid().semi_axes_mm[2]);
        let drops = [
            CameraFrameDrop { view: None, frame_index: Some(0) },
            CameraFrameDrop { view: Some("tile001".into()), frame_index: None },
        ];
        let cfg = RenderConfig { seed: spec.seed, ..Default::default() };
        let scan = capture_scan::<CaptureError>(&patient, &rig, &base_from_head, &cfg, &drops, |overview| {
            assert_eq!(overview.label, OVERVIEW_LABEL);
            Ok(vec![top.coords.into(), top.coords.into()])
        })
        .expect("the overview arrives on its retry");
        let overview: Vec<u64> =
            scan.attempts.iter().filter(|a| a.camera == CameraRole::Overview).map(|a| a.frame_index).collect();
        assert_eq!(overview, [0, 1]);
        assert!(scan.overview().is_some());
        assert_eq!(scan.tiles().len(), 1);
        assert_eq!(scan.lost_views(), ["tile001"]);
        assert_eq!(scan.frames_lost(), 1 + MAX_CAPTURE_ATTEMPTS);
        let manifest = scan.manifest();
        manifest.validate().expect("a valid manifest");
        let lost: Vec<&ViewRecord> = manifest.views.iter().filter(|v| v.label == "tile001").collect();
        assert_eq!(lost.len(), MAX_CAPTURE_ATTEMPTS);
        assert!(lost.iter().all(|v| v.image.is_none() && v.depth.is_none()));
        assert_eq!(lost[0].intrinsics, rig.flange_camera.intrinsics);
        let tile = manifest.views.iter().find(|v| v.label == "tile000").expect("tile000");
        assert_eq!(tile.image.as_deref(), Some("tile000.png"));

        // No overview at all: the scan fails and names the frames it tried.
        let all_lost: Vec<CameraFrameDrop> =
            (0..3).map(|i| CameraFrameDrop { view: None, frame_index: Some(i) }).collect();
        let err = capture_scan::<CaptureError>(&patient, &rig, &base_from_head, &cfg, &all_lost, |_| Ok(vec![]))
            .expect_err("no overview");
        assert!(err.to_string().contains("(frames 0, 1, 2)"), "{err}");
    }
}

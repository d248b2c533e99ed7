//! A simulated scan for the CLI: vision places the tiles on the simulator's overview
//! (`smp_sim::scan` renders and loses frames), and the scan is written as a scan directory
//! (`smp sim render`, `smp eval vision`, the scan tests).

use std::path::Path;
use std::sync::Arc;

use nalgebra::Isometry3;
use smp_core::capture::{ScanManifest, SCAN_MANIFEST_FILE};
use smp_core::rig::Rig;
use smp_sim::faults::CameraFrameDrop;
use smp_sim::patient::SyntheticPatient;
use smp_sim::scan::CaptureError;

use crate::error::{stage, CliError};
use crate::files::{to_json, write_png, write_text};

pub use smp_core::capture::{MAX_CAPTURE_ATTEMPTS, OVERVIEW_LABEL};
pub use smp_sim::scan::{Attempt, SimScan};

impl From<CaptureError> for CliError {
    fn from(e: CaptureError) -> Self {
        CliError::failure(e.to_string())
    }
}

/// A simulated scan (see `smp_sim::scan::capture_scan`) whose tiles vision places on the
/// overview up to `max_tilt_deg`. Fails only when the overview never arrives or vision finds
/// no scalp to scan in it.
pub fn capture_sim(
    patient: &Arc<SyntheticPatient>,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    max_tilt_deg: f64,
    cfg: &smp_sim::render::RenderConfig,
    drops: &[CameraFrameDrop],
) -> Result<SimScan, CliError> {
    smp_sim::scan::capture_scan(patient, rig, base_from_head, cfg, drops, |overview| {
        let vision = smp_vision::VisionConfig::default();
        let outline = smp_vision::find_scalp(overview, &vision).map_err(stage("vision (overview)"))?;
        let positions = smp_vision::scan_positions(rig, &outline, max_tilt_deg, &vision);
        if positions.is_empty() {
            return Err(CliError::failure(
                "vision: no scan positions: the overview shows no scalp within the rig's reach",
            ));
        }
        Ok(positions)
    })
}

/// Writes a scan as files: PNG per arrived frame, `.npy` per depth frame and `views.json`.
/// Returns the manifest.
pub fn write_scan(scan: &SimScan, dir: &Path) -> Result<ScanManifest, CliError> {
    let manifest = scan.manifest();
    for (a, record) in scan.attempts.iter().zip(&manifest.views) {
        let Some(v) = &a.view else { continue };
        if let Some(image) = &record.image {
            write_png(&dir.join(image), &v.image)?;
        }
        if let (Some(d), Some(file)) = (&v.depth, &record.depth) {
            crate::files::write_atomically(&dir.join(file), &d.to_npy())?;
        }
    }
    manifest.validate().map_err(stage("scan manifest"))?;
    write_text(&dir.join(SCAN_MANIFEST_FILE), &to_json(&manifest)?)?;
    Ok(manifest)
}

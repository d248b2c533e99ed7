//! Rendering a scan's flange tiles on several threads (the simulator's part of a scan's wall
//! time).

use nalgebra::Isometry3;
use smp_core::image::CameraView;
use smp_core::rig::Rig;

use crate::patient::SyntheticPatient;

/// Renders the flange tiles on both cores: the simulator's part of the demo's wall time.
/// Tile `i` is labelled `tile{i:03}`.
pub fn render_tiles(
    patient: &SyntheticPatient,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    positions: &[[f64; 3]],
    cfg: &crate::render::RenderConfig,
) -> Vec<CameraView> {
    let labelled: Vec<(String, [f64; 3])> =
        positions.iter().enumerate().map(|(i, p)| (format!("tile{i:03}"), *p)).collect();
    render_labelled_tiles(patient, rig, base_from_head, &labelled, cfg)
}

/// Renders flange tiles at labelled positions on up to four threads, in order.
pub fn render_labelled_tiles(
    patient: &SyntheticPatient,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    positions: &[(String, [f64; 3])],
    cfg: &crate::render::RenderConfig,
) -> Vec<CameraView> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    let per = positions.len().div_ceil(workers).max(1);
    let mut out: Vec<Option<CameraView>> = vec![None; positions.len()];
    std::thread::scope(|s| {
        for (w, chunk) in out.chunks_mut(per).enumerate() {
            let start = w * per;
            s.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let (label, p) = &positions[start + k];
                    *slot = Some(crate::render::render_flange_view(patient, rig, base_from_head, *p, label, cfg));
                }
            });
        }
    });
    out.into_iter().flatten().collect()
}

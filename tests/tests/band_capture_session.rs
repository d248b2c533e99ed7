//! The session's real band cameras (`smp_session::capture::CaptureBandCameras`, OpenCV's
//! `VideoCapture` over recordings) replay a recorded head band: the head is registered once it
//! is still, through the engine's re-registration, and tracked frame by frame until the
//! recorded 2 mm move shows as a drift at the frame that first sees it. The simulator only
//! renders the recording and gives the truth to score against; the session sees the files,
//! the rig file's camera models and the band's measured layout.

use nalgebra::Isometry3;
use smp_core::image::RgbImage;
use smp_core::rig::Rig;
use smp_session::capture::CaptureBandCameras;
use smp_session::register::{register_views, reregister_when_settled};
use smp_session::BandCameras;
use smp_sim::band_cameras::FixedCamera;
use smp_sim::patient::{PatientSpec, SyntheticPatient};
use smp_sim::render::{fiducial_corners_px, render_view, RenderConfig};
use smp_vision::capture::{CaptureSource, SequenceRecorder, SEQUENCE_PATTERN};
use smp_vision::tracking::{HeadTracker, TrackEvent, TrackerConfig};

const STRIP: &str = include_str!("../../sim/patients/norwood3-fitz3-brown-donor-strip.toml");
const FPS: f64 = 10.0;
const FRAMES: usize = 7;
/// Frames 0..=3 show the still head; from frame 4 on it has moved 2 mm.
const FIRST_MOVED_FRAME: usize = 4;

/// One camera's view of the head at `pose`, rendered only around the markers it sees.
fn render(patient: &SyntheticPatient, camera: &FixedCamera, pose: &Isometry3<f64>, seed: u64) -> RgbImage {
    let corners = fiducial_corners_px(patient, &camera.intrinsics, &camera.base_from_camera, pose);
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, 0.0f64, 0.0f64);
    for p in corners.iter().flat_map(|(_, c)| c.iter()) {
        (x0, y0, x1, y1) = (x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1]));
    }
    let window = if corners.is_empty() {
        [0, 0, 0, 0]
    } else {
        [(x0 - 40.0).max(0.0) as u32, (y0 - 40.0).max(0.0) as u32, (x1 + 40.0) as u32, (y1 + 40.0) as u32]
    };
    let cfg = RenderConfig { seed, window_px: Some(window), ..RenderConfig::default() };
    render_view(patient, &camera.intrinsics, &camera.base_from_camera, pose, &camera.label, &cfg).image
}

#[test]
fn recorded_band_cameras_register_the_still_head_and_track_its_move() {
    let rig = Rig::default_sim();
    let patient = SyntheticPatient::generate(&PatientSpec::from_toml_str(STRIP).unwrap());
    let layout = smp_sim::band_cameras::measured_layout(&patient).unwrap().expect("a band");
    let still = rig.base_from_head_nominal();
    let moved = Isometry3::translation(0.0, 2.0, 0.0) * still;
    let dir = tempfile::tempdir().unwrap();
    let cameras = smp_sim::band_cameras::band_cameras(&rig);
    let mut sources = Vec::new();
    for (ci, c) in cameras.iter().enumerate() {
        let shots = [render(&patient, c, &still, 2 * ci as u64), render(&patient, c, &moved, 2 * ci as u64 + 1)];
        let mut seq = SequenceRecorder::create(&dir.path().join(&c.label)).unwrap();
        for k in 0..FRAMES {
            seq.write(k as f64 / FPS, &shots[usize::from(k >= FIRST_MOVED_FRAME)]).unwrap();
        }
        seq.finish().unwrap();
        sources.push(CaptureSource::ImageSequence {
            pattern: dir.path().join(&c.label).join(SEQUENCE_PATTERN),
            fps: None,
        });
    }

    // Too few sources for the rig file: refused, naming the fix.
    let e = CaptureBandCameras::open(&rig, layout.clone(), sources[..1].to_vec()).expect_err("refused");
    assert!(e.to_string().contains("one source per `[[band_cameras]]`"), "{e}");

    let mut band = CaptureBandCameras::open(&rig, layout.clone(), sources).unwrap();
    // The engine's re-registration: three still frames agreeing within 0.05 mm.
    let (reg, at_s) = reregister_when_settled(&mut band, 3, 0.05, std::time::Duration::from_secs(30)).unwrap();
    assert!((at_s - 0.2).abs() < 1e-9, "settled at the third frame's time, not {at_s}");
    let off = (reg.base_from_head.translation.vector - still.translation.vector).norm();
    assert!(off < 0.05, "registered {off:.4} mm from where the head was");

    let mut tracker =
        HeadTracker::new(TrackerConfig { drift_threshold_mm: 1.0, ..TrackerConfig::default() }, reg.base_from_head)
            .unwrap();
    let mut drift_at = None;
    let mut frames_seen = 3;
    while let Some(frames) = band.next_frames(&reg.base_from_head).unwrap() {
        assert_eq!(frames.views.len(), cameras.len());
        let r = register_views(&frames.views, band.layout()).unwrap();
        let events = tracker.update(std::time::Duration::from_secs_f64(frames.t_s), Some(&r));
        for e in events {
            if let TrackEvent::Drift { translation_mm, .. } = e {
                assert!(drift_at.is_none(), "one drift");
                assert!((translation_mm - 2.0).abs() < 0.1, "a 2 mm move measured as {translation_mm} mm");
                drift_at = Some(frames.t_s);
            }
        }
        frames_seen += 1;
    }
    assert_eq!(frames_seen, FRAMES, "every recorded frame read once, then the end");
    assert_eq!(drift_at, Some(FIRST_MOVED_FRAME as f64 / FPS), "the drift at the first frame after the move");
    assert_eq!(band.unsynchronised_exposures, 0);
    let e = band.frames_now().expect_err("the recording has ended");
    assert!(e.to_string().contains("ended"), "{e}");
}

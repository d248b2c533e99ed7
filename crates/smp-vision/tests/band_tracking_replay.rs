//! Head tracking from a recording: the simulator renders the band cameras for a head that
//! keeps still, then moves 2 mm and turns 1 degree and keeps still again; the frames are
//! written as PNG sequences with their timestamp sidecars (and one camera also as a video
//! file through OpenCV's `VideoWriter`); then `smp_vision::capture` replays them through
//! OpenCV's `VideoCapture`, the head is registered from each synchronised set of frames, and
//! the tracker is fed the frames' own timestamps.
//!
//! Vision sees only the recordings, the rig file's band cameras and the band's layout; the
//! simulator's poses are used only to render and to score. Each camera is rendered once per
//! head pose (a render costs ~0.25 s whatever its window) and every frame carries its index
//! as a row of 8x8 px blocks in the top-left corner, far from the markers: the replay checks
//! that each frame comes back once, in order, with its own time.
//!
//! `cargo test -p smp-vision --test on_sim band_tracking_replay:: -- --nocapture` prints the figures;
//! `-- --ignored --nocapture` also tries other codecs than FFV1 (`codec_survey`).

use std::time::Instant;

use nalgebra::Isometry3;
use smp_core::fiducial_layout::FiducialLayout;
use smp_core::image::RgbImage;
use smp_core::rig::Rig;
use smp_sim::band_cameras::FixedCamera;
use smp_sim::faults::HeadMove;
use smp_sim::motion_model::HeadMotion;
use smp_sim::patient::{PatientSpec, SyntheticPatient};
use smp_sim::render::{fiducial_corners_px, render_view, RenderConfig};
use smp_vision::capture::{
    CalibratedCamera, CameraCapture, Capture, CaptureSource, SequenceRecorder, TimedView, VideoRecorder,
    SEQUENCE_PATTERN,
};
use smp_vision::fiducials::{detect_layout_markers, estimate_base_from_head, CameraMarkers, HeadRegistration};
use smp_vision::tracking::{HeadTracker, TrackEvent, TrackerConfig};

const STRIP: &str = include_str!("../../../sim/patients/norwood3-fitz3-brown-donor-strip.toml");

/// Camera rate of the recording, and how many frames each camera records.
const FPS: f64 = 10.0;
const FRAMES: usize = 8;
/// The head moves between frame 3 (0.3 s) and frame 4 (0.4 s).
const MOVE_AT_S: f64 = 0.35;
const FIRST_MOVED_FRAME: usize = 4;
/// The camera also recorded as a video file.
const VIDEO_CAMERA: &str = "band+30";
/// Rendered pixels around the markers a camera sees (the rest of the frame is backdrop).
const WINDOW_MARGIN_PX: f64 = 40.0;
/// Registration against the true pose: worst band corner, mm, and rotation, degrees.
/// Measured on the lossless recordings: 0.010-0.018 mm, 0.005-0.011 deg.
const TOL_MM: f64 = 0.05;
const TOL_DEG: f64 = 0.02;

struct World {
    patient: SyntheticPatient,
    cameras: Vec<FixedCamera>,
    motion: HeadMotion,
}

impl World {
    fn new(rig: &Rig) -> World {
        let patient = SyntheticPatient::generate(&PatientSpec::from_toml_str(STRIP).expect("banded patient"));
        let motion = HeadMotion {
            steps: vec![HeadMove { time_s: MOVE_AT_S, translation_mm: [0.0, 2.0, 0.0], rotation_deg: [0.0, 0.0, 1.0] }],
            registered_base_from_head: rig.base_from_head_nominal(),
            ..HeadMotion::default()
        };
        motion.validate().expect("valid motion");
        World { patient, cameras: smp_sim::band_cameras::band_cameras(rig), motion }
    }

    /// Where the simulator holds the head at `t_s`.
    fn true_pose(&self, t_s: f64) -> Isometry3<f64> {
        self.motion.base_delta(t_s) * self.motion.registered_base_from_head
    }

    /// One camera's view of the head at `pose`, rendered only around the markers it sees.
    fn render(&self, camera: &FixedCamera, pose: &Isometry3<f64>, seed: u64) -> RgbImage {
        let corners = fiducial_corners_px(&self.patient, &camera.intrinsics, &camera.base_from_camera, pose);
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, 0.0f64, 0.0f64);
        for p in corners.iter().flat_map(|(_, c)| c.iter()) {
            (x0, y0, x1, y1) = (x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1]));
        }
        let m = WINDOW_MARGIN_PX;
        let window = if corners.is_empty() {
            [0, 0, 0, 0]
        } else {
            [(x0 - m).max(0.0) as u32, (y0 - m).max(0.0) as u32, (x1 + m) as u32, (y1 + m) as u32]
        };
        let cfg = RenderConfig { seed, window_px: Some(window), ..RenderConfig::default() };
        render_view(&self.patient, &camera.intrinsics, &camera.base_from_camera, pose, &camera.label, &cfg).image
    }

    /// Every camera's frames, in camera order: frame k shows the head at frame k's time.
    fn frames(&self) -> Vec<Vec<RgbImage>> {
        let (still, moved) = (self.true_pose(0.0), self.true_pose(frame_time(FIRST_MOVED_FRAME)));
        assert!(self.true_pose(frame_time(FIRST_MOVED_FRAME - 1)) == still, "the head moves between frames 3 and 4");
        self.cameras
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let shots = [self.render(c, &still, 2 * ci as u64), self.render(c, &moved, 2 * ci as u64 + 1)];
                (0..FRAMES)
                    .map(|k| {
                        let mut img = shots[usize::from(k >= FIRST_MOVED_FRAME)].clone();
                        stamp(&mut img, k as u8);
                        img
                    })
                    .collect()
            })
            .collect()
    }
}

fn frame_time(k: usize) -> f64 {
    k as f64 / FPS
}

/// Writes `index` and its complement as 16 black or white 8x8 px blocks along the top.
fn stamp(img: &mut RgbImage, index: u8) {
    let bits = u16::from(index) | (u16::from(!index) << 8);
    for b in 0..16u32 {
        let level = if (bits >> b) & 1 == 1 { 255 } else { 0 };
        for y in 0..8 {
            for x in 8 * b..8 * b + 8 {
                img.put(x, y, [level; 3]);
            }
        }
    }
}

/// The index [`stamp`] wrote, or `None` when the blocks do not hold an index and its complement.
fn read_stamp(img: &RgbImage) -> Option<u8> {
    let mut bits = 0u16;
    for b in 0..16u32 {
        let sum: u32 = (0..8)
            .flat_map(|y| (8 * b..8 * b + 8).map(move |x| (x, y)))
            .map(|(x, y)| u32::from(img.get(x, y)[1]))
            .sum();
        bits |= u16::from(sum / 64 > 127) << b;
    }
    let (index, check) = (bits as u8, (bits >> 8) as u8);
    (check == !index).then_some(index)
}

/// The recordings in a temporary directory: every camera as a PNG sequence under
/// `<dir>/<label>/` timed by its sidecar, and what vision needs to replay them.
struct Recording {
    rig: Rig,
    world: World,
    layout: FiducialLayout,
    /// Every camera's frames as written, in camera order.
    frames: Vec<Vec<RgbImage>>,
    dir: tempfile::TempDir,
}

impl Recording {
    fn new() -> Recording {
        let rig = Rig::default_sim();
        let world = World::new(&rig);
        let layout = smp_sim::band_cameras::measured_layout(&world.patient).expect("layout").expect("a band");
        let frames = world.frames();
        let dir = tempfile::tempdir().expect("tempdir");
        for (c, images) in world.cameras.iter().zip(&frames) {
            let mut seq = SequenceRecorder::create(&dir.path().join(&c.label)).expect("sequence");
            for (k, img) in images.iter().enumerate() {
                seq.write(frame_time(k), img).expect("png frame");
            }
            seq.finish().expect("sidecar");
        }
        Recording { rig, world, layout, frames, dir }
    }

    /// The frames written for [`VIDEO_CAMERA`].
    fn video_frames(&self) -> &[RgbImage] {
        let ci = self.world.cameras.iter().position(|c| c.label == VIDEO_CAMERA).expect("the video camera");
        &self.frames[ci]
    }

    /// Records [`VIDEO_CAMERA`] also as `<dir>/<VIDEO_CAMERA>-<fourcc>.<ext>`.
    fn record_video(&self, fourcc: &str, ext: &str) -> Result<CaptureSource, String> {
        let camera = self.world.cameras.iter().find(|c| c.label == VIDEO_CAMERA).expect("the video camera");
        let (w, h) = (camera.intrinsics.width_px, camera.intrinsics.height_px);
        let path = self.dir.path().join(format!("{VIDEO_CAMERA}-{}.{ext}", fourcc.trim()));
        let mut v = VideoRecorder::create(&path, fourcc, FPS, w, h).map_err(|e| e.to_string())?;
        for img in self.video_frames() {
            v.write(img).map_err(|e| e.to_string())?;
        }
        v.finish().map_err(|e| e.to_string())
    }

    /// Replays every band camera of the rig file from its recording: the PNG sequence, or
    /// `video` for [`VIDEO_CAMERA`]. The sequences are opened with a frame rate that is wrong
    /// on purpose (30 fps for a 10 fps recording): their sidecars must time them.
    fn replay(&self, video: Option<&CaptureSource>) -> Result<Vec<Row>, String> {
        let mut captures = Vec::new();
        for camera in CalibratedCamera::band_cameras(&self.rig) {
            let source = match video {
                Some(v) if camera.label == VIDEO_CAMERA => v.clone(),
                _ => CaptureSource::ImageSequence {
                    pattern: self.dir.path().join(&camera.label).join(SEQUENCE_PATTERN),
                    fps: Some(30.0),
                },
            };
            captures.push(CameraCapture::open(camera, source).map_err(|e| e.to_string())?);
        }
        replay(&self.world, &self.layout, captures)
    }
}

fn register(views: &[TimedView], layout: &FiducialLayout) -> Result<HeadRegistration, String> {
    let mut seen = Vec::new();
    for v in views {
        let markers = detect_layout_markers(&v.view.image, &v.view.label, layout, &Default::default())
            .map_err(|e| e.to_string())?;
        seen.push(CameraMarkers {
            label: v.view.label.clone(),
            intrinsics: v.view.intrinsics,
            base_from_camera: v.view.base_from_camera,
            markers,
        });
    }
    estimate_base_from_head(&seen, layout, &Default::default()).map_err(|e| e.to_string())
}

/// Worst distance between the two poses over the band's marker corners, mm, and the
/// rotation between them, degrees.
fn pose_error(est: &Isometry3<f64>, truth: &Isometry3<f64>, layout: &FiducialLayout) -> (f64, f64) {
    let worst = layout
        .markers
        .iter()
        .flat_map(|m| m.corners_head().expect("corners"))
        .map(|c| (est * c - truth * c).norm())
        .fold(0.0, f64::max);
    (worst, est.rotation.angle_to(&truth.rotation).to_degrees())
}

/// One synchronised set of frames as replayed: its time, the registration's error against
/// the true pose (mm, deg), and the tracker's events.
struct Row {
    time_s: f64,
    err_mm: f64,
    err_deg: f64,
    events: Vec<TrackEvent>,
}

/// Replays the recordings: one frame from every camera per instant, each frame's stamp
/// checked against its index, registered, tracked from the frames' own times.
fn replay(world: &World, layout: &FiducialLayout, mut captures: Vec<CameraCapture>) -> Result<Vec<Row>, String> {
    let mut tracker: Option<HeadTracker> = None;
    let mut rows = Vec::new();
    loop {
        let next: Vec<_> = captures.iter_mut().map(Iterator::next).collect();
        if next.iter().all(Option::is_none) {
            return Ok(rows);
        }
        let mut views = Vec::new();
        for (v, c) in next.into_iter().zip(&captures) {
            let v = v.ok_or_else(|| format!("{} ended before the other cameras", c.source()))?;
            let v = v.map_err(|e| e.to_string())?;
            if read_stamp(&v.view.image) != Some(v.index as u8) {
                return Err(format!(
                    "{}: frame {} carries stamp {:?}",
                    v.view.label,
                    v.index,
                    read_stamp(&v.view.image)
                ));
            }
            views.push(v);
        }
        let t = views[0].time_s;
        if let Some(v) = views.iter().find(|v| (v.time_s - t).abs() > 1e-3 || v.index != views[0].index) {
            return Err(format!(
                "{} at {} s in a set taken at {t} s (frame {})",
                v.view.label, v.time_s, views[0].index
            ));
        }
        let reg = register(&views, layout)?;
        // The session registers the head at the first frame and tracks against that.
        let tracker = tracker.get_or_insert_with(|| {
            let cfg = TrackerConfig { drift_threshold_mm: 1.0, drift_threshold_deg: 0.5, ..TrackerConfig::default() };
            HeadTracker::new(cfg, reg.base_from_head).expect("tracker config")
        });
        let events = tracker.update(views[0].time(), Some(&reg));
        let (err_mm, err_deg) = pose_error(&reg.base_from_head, &world.true_pose(t), layout);
        println!(
            "t {t:.2} s: {} markers, rms {:.3} px, error {err_mm:.4} mm {err_deg:.4} deg {:?}",
            reg.markers_used.len(),
            reg.reprojection_rms_px,
            events
                .iter()
                .map(|e| match e {
                    TrackEvent::Drift { at, translation_mm, rotation_deg, .. } =>
                        format!("Drift at {at:?}: {translation_mm:.3} mm {rotation_deg:.3} deg"),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
        );
        rows.push(Row { time_s: t, err_mm, err_deg, events });
    }
}

/// Every frame replayed at its recorded time; the registrations within `tol_mm` / `tol_deg`
/// of the truth; quiet before the move; one drift at the first frame after it, carrying that
/// frame's time and the size of the move.
fn check(rows: &[Row], tol_mm: f64, tol_deg: f64) -> Result<(), String> {
    let times: Vec<f64> = rows.iter().map(|r| r.time_s).collect();
    let expected: Vec<f64> = (0..FRAMES).map(frame_time).collect();
    if times.len() != FRAMES || times.iter().zip(&expected).any(|(t, e)| (t - e).abs() > 1e-6) {
        return Err(format!("frame times {times:?}, recorded at {expected:?}"));
    }
    for (k, r) in rows.iter().enumerate() {
        let t = r.time_s;
        if !(r.err_mm <= tol_mm && r.err_deg <= tol_deg) {
            return Err(format!("frame {k} at {t} s: registration off by {} mm, {} deg", r.err_mm, r.err_deg));
        }
        let drifts: Vec<&TrackEvent> = r.events.iter().filter(|e| matches!(e, TrackEvent::Drift { .. })).collect();
        if k == FIRST_MOVED_FRAME {
            let [TrackEvent::Drift { at, translation_mm, rotation_deg, .. }] = drifts[..] else {
                return Err(format!("no single drift at the first frame after the move ({t} s): {:?}", r.events));
            };
            if at.as_secs_f64() != t {
                return Err(format!("the drift at frame {k} says {at:?}, the frame was taken at {t} s"));
            }
            if (translation_mm - 2.0).abs() > 0.1 || (rotation_deg - 1.0).abs() > 0.05 {
                return Err(format!("a 2 mm, 1 degree move measured as {translation_mm} mm, {rotation_deg} deg"));
            }
        } else if !drifts.is_empty() || (k < FIRST_MOVED_FRAME && !r.events.is_empty()) {
            return Err(format!("frame {k} at {t} s: {:?}", r.events));
        }
    }
    Ok(())
}

/// Reads a video back alone: its frames' times, and the largest pixel difference from what
/// was written.
fn read_back(video: &CaptureSource, written: &[RgbImage]) -> Result<(Vec<f64>, u8), String> {
    let frames: Vec<_> = Capture::open(video.clone())
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut worst = 0u8;
    for (f, w) in frames.iter().zip(written) {
        worst = worst.max(f.image.data.iter().zip(&w.data).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0));
    }
    if frames.len() != written.len() {
        return Err(format!("{} frames read back of {} written", frames.len(), written.len()));
    }
    Ok((frames.iter().map(|f| f.time_s).collect(), worst))
}

#[test]
fn a_recorded_head_move_is_tracked_from_png_sequences_and_a_video() {
    let started = Instant::now();
    let rec = Recording::new();
    let video = rec.record_video("FFV1", "avi").expect("FFV1 in .avi is writable");
    let cameras = rec.world.cameras.len();
    println!("rendered and recorded {FRAMES} frames x {cameras} cameras in {:.1} s", started.elapsed().as_secs_f64());

    let t = Instant::now();
    println!("-- all cameras from PNG sequences");
    check(&rec.replay(None).expect("replays"), TOL_MM, TOL_DEG).expect("tracked");
    println!("replayed in {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    println!("-- {VIDEO_CAMERA} from {video}");
    let (times, worst) = read_back(&video, rec.video_frames()).expect("reads the video back");
    assert_eq!(worst, 0, "FFV1 is lossless");
    let recorded: Vec<f64> = (0..FRAMES).map(frame_time).collect();
    assert!(
        times.len() == FRAMES && times.iter().zip(&recorded).all(|(a, b)| (a - b).abs() < 1e-6),
        "CAP_PROP_POS_MSEC times the video: {times:?}, recorded at {recorded:?}"
    );
    check(&rec.replay(Some(&video)).expect("replays"), TOL_MM, TOL_DEG).expect("tracked");
    println!("replayed in {:.1} s", t.elapsed().as_secs_f64());
}

/// How far the codec moves the ArUco corners OpenCV detects in the video camera's frames
/// (against the same frames written losslessly), px; an error when it loses a marker.
fn corner_shift_px(video: &CaptureSource, written: &[RgbImage], layout: &FiducialLayout) -> Result<f64, String> {
    let mut worst: f64 = 0.0;
    for (f, w) in Capture::open(video.clone()).map_err(|e| e.to_string())?.zip(written) {
        let f = f.map_err(|e| e.to_string())?;
        let detect = |img: &RgbImage| detect_layout_markers(img, VIDEO_CAMERA, layout, &Default::default());
        let (got, want) = (detect(&f.image).map_err(|e| e.to_string())?, detect(w).map_err(|e| e.to_string())?);
        if got.iter().map(|m| m.id).ne(want.iter().map(|m| m.id)) {
            return Err(format!("frame {}: markers {:?} read, {:?} written", f.index, got, want));
        }
        for (g, w) in got.iter().zip(&want) {
            for (a, b) in g.corners_px.iter().zip(&w.corners_px) {
                worst = worst.max((a[0] - b[0]).hypot(a[1] - b[1]));
            }
        }
    }
    Ok(worst)
}

/// Which codecs this OpenCV writes and reads back well enough to track from (the PNG
/// sequences stand in for the other cameras). Prints a table; asserts nothing.
#[test]
#[ignore = "a survey of this machine's codecs, for the record; slow"]
fn codec_survey() {
    let rec = Recording::new();
    let mut table = Vec::new();
    for (fourcc, ext) in [
        ("MJPG", "avi"),
        ("FFV1", "avi"),
        ("FFV1", "mkv"),
        ("png ", "avi"),
        ("HFYU", "avi"),
        ("XVID", "avi"),
        ("mp4v", "mp4"),
        ("avc1", "mp4"),
    ] {
        let outcome = rec.record_video(fourcc, ext).and_then(|v| {
            let bytes = std::fs::metadata(match &v {
                CaptureSource::VideoFile(p) => p.as_path(),
                _ => unreachable!(),
            })
            .map(|m| m.len())
            .unwrap_or(0);
            let (times, worst) = read_back(&v, rec.video_frames())?;
            let corner_px = corner_shift_px(&v, rec.video_frames(), &rec.layout)?;
            let rows = rec.replay(Some(&v))?;
            let tracked = check(&rows, TOL_MM, TOL_DEG).map(|()| "tracked within tolerance".to_string());
            let worst_mm = rows.iter().map(|r| r.err_mm).fold(0.0, f64::max);
            Ok(format!(
                "{} kB, worst pixel difference {worst}, ArUco corners moved up to {corner_px:.3} px, times {times:?}, \
                 worst band corner error {worst_mm:.4} mm: {}",
                bytes / 1024,
                tracked.unwrap_or_else(|e| e)
            ))
        });
        table.push(format!("{fourcc:>4} in .{ext}: {}", outcome.unwrap_or_else(|e| format!("FAILED: {e}"))));
    }
    println!("\n{}", table.join("\n"));
}

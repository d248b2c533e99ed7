//! Head-band fiducials in the simulator: OpenCV reads the markers the simulator drew, the
//! head is registered from them against the simulator's truth, and the tracker catches a
//! head movement (smp-sim's motion model, as a `HeadMove` fault applies it).
//!
//! Vision sees only pixels, the cameras' calibration and the band's [`FiducialLayout`]; the
//! layout is built here from the simulator's truth, as the clinic measures it once per band.
//!
//! `cargo test -p smp-vision --test on_sim fiducials_on_sim:: -- --nocapture` prints the figures.

use std::time::Duration;

use nalgebra::{Isometry3, Point3, Vector3};
use smp_core::fiducial_layout::FiducialLayout;
use smp_core::geometry::PoseSpec;
use smp_core::rig::Rig;
use smp_sim::faults::HeadMove;
use smp_sim::motion_model::HeadMotion;
use smp_sim::patient::{PatientSpec, SyntheticPatient};
use smp_sim::render::{fiducial_corners_px, render_view, RenderConfig};
use smp_vision::fiducials::{
    detect_layout_markers, estimate_base_from_head, CameraMarkers, FiducialDetectConfig, HeadRegistration,
    RegistrationConfig,
};
use smp_vision::tracking::{HeadTracker, TrackEvent, TrackerConfig};

const STRIP: &str = include_str!("../../../sim/patients/norwood3-fitz3-brown-donor-strip.toml");

use smp_sim::band_cameras::FixedCamera as Camera;

fn patient() -> SyntheticPatient {
    SyntheticPatient::generate(&PatientSpec::from_toml_str(STRIP).expect("banded patient"))
}

/// The band as the clinic would have measured it: pose and corners of each marker.
fn layout(p: &SyntheticPatient) -> FiducialLayout {
    smp_sim::band_cameras::measured_layout(p).expect("valid layout").expect("the patient wears a band")
}

/// The overview camera plus the four band cameras (smp_sim::band_cameras; the overview
/// alone looks down on the crown and sees the band's markers edge-on).
fn cameras(rig: &Rig) -> Vec<Camera> {
    let mut cams = vec![Camera {
        label: "overview".into(),
        intrinsics: rig.overview_camera.intrinsics,
        base_from_camera: rig.overview_camera.base_from_camera.to_isometry(),
    }];
    cams.extend(smp_sim::band_cameras::band_cameras(rig));
    cams
}

/// One camera's view of the markers: truth ids, detected ids, and per detected marker (id,
/// view angle from its normal in degrees, worst corner error px).
type CameraStats = (Vec<u32>, Vec<u32>, Vec<(u32, f64, f64)>);

struct Seen {
    markers: Vec<CameraMarkers>,
    /// Per camera.
    stats: Vec<CameraStats>,
}

fn look(p: &SyntheticPatient, cams: &[Camera], bfh: &Isometry3<f64>, seed: u64) -> Seen {
    let l = layout(p);
    let cfg = RenderConfig { seed, ..RenderConfig::default() };
    let mut markers = Vec::new();
    let mut stats = Vec::new();
    for c in cams {
        let view = render_view(p, &c.intrinsics, &c.base_from_camera, bfh, &c.label, &cfg);
        let dets = detect_layout_markers(&view.image, &c.label, &l, &FiducialDetectConfig::default()).expect("detects");
        let truth = fiducial_corners_px(p, &c.intrinsics, &c.base_from_camera, bfh);
        let eye_head = bfh.inverse() * Point3::from(c.base_from_camera.translation.vector);
        let mut per = Vec::new();
        for d in &dets {
            let Some((_, t)) = truth.iter().find(|(id, _)| *id == d.id) else { continue };
            let Some(f) = p.truth_fiducials().iter().find(|f| f.id == d.id) else { continue };
            let centre = Point3::from(f.head_from_marker.translation.vector);
            let normal = f.head_from_marker * Vector3::z();
            let angle = normal.angle(&(eye_head - centre)).to_degrees();
            let worst = d
                .corners_px
                .iter()
                .zip(t)
                .map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt())
                .fold(0.0, f64::max);
            let signed: Vec<String> =
                d.corners_px.iter().zip(t).map(|(a, b)| format!("({:+.2},{:+.2})", a[0] - b[0], a[1] - b[1])).collect();
            println!("           {} marker {}: detected minus truth per corner {}", c.label, d.id, signed.join(" "));
            per.push((d.id, angle, worst));
        }
        stats.push((truth.iter().map(|(id, _)| *id).collect(), dets.iter().map(|d| d.id).collect(), per));
        markers.push(CameraMarkers {
            label: c.label.clone(),
            intrinsics: c.intrinsics,
            base_from_camera: c.base_from_camera,
            markers: dets,
        });
    }
    Seen { markers, stats }
}

/// Worst error over the band's corners and the head centre, mm, and rotation error, degrees.
fn pose_error(est: &Isometry3<f64>, truth: &Isometry3<f64>, l: &FiducialLayout) -> (f64, f64, f64) {
    let mut worst_corner: f64 = 0.0;
    for m in &l.markers {
        for c in m.corners_head().expect("corners") {
            worst_corner = worst_corner.max((est * c - truth * c).norm());
        }
    }
    let origin = (est.translation.vector - truth.translation.vector).norm();
    (worst_corner, origin, est.rotation.angle_to(&truth.rotation).to_degrees())
}

#[test]
fn opencv_reads_every_marker_the_simulator_drew_to_subpixel() {
    let rig = Rig::default_sim();
    let p = patient();
    let bfh = rig.base_from_head_nominal();
    let cams = cameras(&rig);
    let seen = look(&p, &cams, &bfh, 1);
    let mut facing = 0;
    let mut failures = Vec::new();
    for (c, (truth, found, per)) in cams.iter().zip(&seen.stats) {
        println!("{:>9}: truth ids {truth:?}, detected {found:?}", c.label);
        for (id, angle, worst) in per {
            println!("           marker {id}: seen {angle:.1} deg off its normal, worst corner error {worst:.3} px");
            // Seen within 60 degrees of face-on: sub-pixel corners (measured worst 0.30 px).
            // Beyond, reported only: the overview looks at the band 83 degrees off its normal
            // and reads the ids, with corners off by 1-5 px (registration drops those).
            if *angle <= 60.0 {
                facing += 1;
                if *worst > 0.4 {
                    failures.push(format!("{} marker {id}: {worst:.3} px at {angle:.1} deg", c.label));
                }
            }
        }
        if found != truth {
            failures.push(format!("{}: drew {truth:?}, read {found:?}", c.label));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(facing >= 4, "markers seen face-on: {facing}");
}

#[test]
fn registration_matches_the_true_head_pose() {
    let rig = Rig::default_sim();
    let p = patient();
    let l = layout(&p);
    // A head off its rest by a few millimetres and a degree, so the nominal pose is no answer.
    let bfh_true = rig.base_from_head_nominal()
        * PoseSpec { translation_mm: [3.0, -2.0, 1.5], rpy_deg: [1.0, -0.5, 2.0] }.to_isometry();
    let cams = cameras(&rig);
    let seen = look(&p, &cams, &bfh_true, 2);
    let cfg = RegistrationConfig::default();
    let all = estimate_base_from_head(&seen.markers, &l, &cfg).expect("registers from all cameras");
    let (corner_mm, origin_mm, rot_deg) = pose_error(&all.base_from_head, &bfh_true, &l);
    println!(
        "all cameras: markers {:?}, rms {:.3} px, fiducial_err_mm {corner_mm:.4} (head centre {origin_mm:.4}), rotation {rot_deg:.4} deg",
        all.markers_used, all.reprojection_rms_px
    );
    println!("warnings: {:?}", all.warnings);
    assert_eq!(all.markers_used, vec![0, 1, 2, 3]);
    // Measured: fiducial_err_mm 0.0145 (head centre 0.0043 mm), rotation 0.0085 deg, RMS 0.26 px,
    // the overview's edge-on marker 2 dropped as an outlier.
    assert!(corner_mm <= 0.05, "fiducial_err_mm {corner_mm}");
    assert!(rot_deg <= 0.03, "rotation error {rot_deg} deg");
    assert!(all.reprojection_rms_px <= 0.5);
    // Each camera alone that sees a marker registers too, less well.
    for m in &seen.markers {
        match estimate_base_from_head(std::slice::from_ref(m), &l, &cfg) {
            Ok(r) => {
                let (c, o, d) = pose_error(&r.base_from_head, &bfh_true, &l);
                println!(
                    "{:>9} alone: markers {:?}, rms {:.3} px, fiducial_err_mm {c:.4} (head centre {o:.4}), rotation {d:.4} deg",
                    m.label, r.markers_used, r.reprojection_rms_px
                );
            }
            Err(e) => println!("{:>9} alone: {e}", m.label),
        }
    }
}

#[test]
fn tracker_pauses_on_a_2mm_head_move_and_not_on_0_2mm() {
    let rig = Rig::default_sim();
    let p = patient();
    let l = layout(&p);
    let bfh0 = rig.base_from_head_nominal();
    // The two front band cameras: enough for tracking, and half the rendering.
    let cams: Vec<Camera> =
        cameras(&rig).into_iter().filter(|c| c.label == "band+30" || c.label == "band-30").collect();
    assert_eq!(cams.len(), 2);
    let register = |bfh: &Isometry3<f64>, seed: u64| -> HeadRegistration {
        estimate_base_from_head(&look(&p, &cams, bfh, seed).markers, &l, &RegistrationConfig::default())
            .expect("registers")
    };
    // The session's registration, at rest.
    let reference = register(&bfh0, 10);
    // The simulator's head motion: two HeadMove faults (head frame, mm), 0.2 mm at 1 s and
    // 1.8 mm more at 3 s (2 mm total).
    let motion = HeadMotion {
        steps: vec![
            HeadMove { time_s: 1.0, translation_mm: [0.0, 0.2, 0.0], rotation_deg: [0.0; 3] },
            HeadMove { time_s: 3.0, translation_mm: [0.0, 1.8, 0.0], rotation_deg: [0.0; 3] },
        ],
        registered_base_from_head: bfh0,
        ..HeadMotion::default()
    };
    motion.validate().expect("valid motion");
    let at = |t_s: f64| motion.base_delta(t_s) * bfh0;
    let cfg = TrackerConfig { drift_threshold_mm: 1.0, drift_threshold_deg: 0.5, ..TrackerConfig::default() };
    let mut tracker = HeadTracker::new(cfg, reference.base_from_head).expect("valid config");
    // Camera frames at 0.5 s intervals (rendering every 33 ms frame would only repeat these),
    // one frame dropped at 2.5 s.
    let mut events = Vec::new();
    let mut first_moved_mm = None;
    for k in 0..10u64 {
        let t_s = 0.5 * k as f64;
        let reg = if k == 5 { None } else { Some(register(&at(t_s), 100 + k)) };
        if let Some(r) = &reg {
            let (dt, dr) = tracker.offset_from_reference(&r.base_from_head);
            let true_mm = motion.head_offset_base_mm(t_s).norm();
            println!("t {t_s:.1} s: true move {true_mm:.2} mm, measured {dt:.3} mm {dr:.4} deg");
            if (true_mm - 0.2).abs() < 1e-9 {
                first_moved_mm = Some(dt);
            }
        }
        let ev = tracker.update(Duration::from_secs_f64(t_s), reg.as_ref());
        for e in &ev {
            println!("t {t_s:.1} s: {e:?}");
        }
        events.extend(ev);
    }
    let drifts: Vec<&TrackEvent> = events.iter().filter(|e| matches!(e, TrackEvent::Drift { .. })).collect();
    assert_eq!(drifts.len(), 1, "{events:?}");
    let TrackEvent::Drift { at, translation_mm, .. } = drifts[0] else { unreachable!() };
    assert_eq!(*at, Duration::from_secs(3), "drift at the 2 mm move, not at the 0.2 mm one");
    // Two cameras with one 16 mm marker each: measured 1.90-1.96 mm for the 2 mm move and
    // 0.15-0.16 mm for the 0.2 mm one (0.013 mm at rest).
    assert!((translation_mm - 2.0).abs() < 0.15, "measured {translation_mm} mm for a 2 mm move");
    let small = first_moved_mm.expect("frames after the 0.2 mm move");
    assert!((small - 0.2).abs() < 0.1, "measured {small} mm for a 0.2 mm move");
    assert!(events.iter().any(|e| matches!(e, TrackEvent::Settled { .. })), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, TrackEvent::FiducialsLost { .. })), "one dropped frame is not a loss");
}

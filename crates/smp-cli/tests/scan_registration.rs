//! `smp scan` registers the head frame from the head band: the simulator holds the head
//! 1.5 mm and 1 degree away from the rig's nominal rest, the capture records only the nominal
//! pose (what the rig believes), and the scan's map must carry the true pose, read from the
//! band cameras' frames. Without a band the map keeps the nominal pose and warns.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed set-up step stops the test there

use std::sync::Arc;

use nalgebra::{Isometry3, Translation3, UnitQuaternion, Vector3};
use smp_cli::scan_cmd::{scan, ScanArgs};
use smp_cli::sim::scan::{capture_sim, write_scan};
use smp_sim::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};

const BANDED: &str = include_str!("../../../sim/patients/norwood3-fitz3-brown-donor-strip.toml");

fn displaced(rig: &smp_core::rig::Rig) -> Isometry3<f64> {
    let nominal = rig.base_from_head_nominal();
    let shift = Translation3::new(1.2, -0.9, 0.0);
    let turn = UnitQuaternion::from_axis_angle(&Vector3::z_axis(), 1.0_f64.to_radians());
    let centre = nominal.translation.vector;
    // Turned 1 degree about the head centre's vertical, then shifted 1.5 mm.
    Isometry3::from_parts(shift, UnitQuaternion::identity())
        * Translation3::from(centre)
        * Isometry3::from_parts(Translation3::identity(), turn)
        * Translation3::from(-centre)
        * nominal
}

fn scan_of(
    toml: &str,
    dir: &std::path::Path,
) -> (smp_cli::scan_cmd::ScanReport, smp_core::map::ScalpMap, Isometry3<f64>) {
    let rig = smp_core::rig::Rig::default_sim();
    let spec = PatientSpec::from_toml_str(toml).unwrap();
    let patient = Arc::new(SyntheticPatient::generate(&spec));
    let truth = displaced(&rig);
    let cfg = smp_sim::render::RenderConfig { seed: spec.seed, ..Default::default() };
    let captured = capture_sim(&patient, &rig, &truth, 35.0, &cfg, &[]).unwrap_or_else(|e| panic!("{e}"));
    let images = dir.join("scan");
    std::fs::create_dir_all(&images).unwrap();
    let manifest = write_scan(&captured, &images).unwrap_or_else(|e| panic!("{e}"));
    // The manifest holds the rig's belief, never the truth.
    let believed = manifest.base_from_head.to_isometry();
    assert!((believed.translation.vector - rig.base_from_head_nominal().translation.vector).norm() < 1e-9);
    let out = dir.join("map.json");
    let r = scan(&ScanArgs { images, rig: None, out: out.clone() }).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    let map: smp_core::map::ScalpMap = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (r, map, truth)
}

/// Worst distance between two poses over scalp points 100 mm from the head centre, mm.
fn scalp_error_mm(a: &Isometry3<f64>, b: &Isometry3<f64>) -> f64 {
    [[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0], [-100.0, 0.0, 0.0]]
        .iter()
        .map(|p| {
            let p = nalgebra::Point3::from(Vector3::from(*p));
            (a * p - b * p).norm()
        })
        .fold(0.0, f64::max)
}

#[test]
fn the_scan_registers_a_displaced_head_from_its_band() {
    let tmp = tempfile::tempdir().unwrap();
    let (r, map, truth) = scan_of(BANDED, tmp.path());
    eprintln!("{}", smp_cli::scan_cmd::scan_summary(&r));
    assert_eq!(r.registration.method, "fiducials");
    assert!(r.registration.markers_used >= 3, "{:?}", r.registration);
    let off = r.registration.offset_from_nominal_mm.unwrap();
    assert!((off - 1.5).abs() < 0.1, "head centre moved {off} mm from nominal");
    let err = scalp_error_mm(&map.base_from_head.to_isometry(), &truth);
    assert!(err < 0.05, "registered pose is {err} mm off at the scalp");
}

#[test]
fn without_a_band_the_scan_keeps_the_nominal_pose_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (r, map, truth) = scan_of(DEFAULT_PATIENT_TOML, tmp.path());
    assert_eq!(r.registration.method, "nominal");
    assert!(r.warnings.iter().any(|w| w.contains("no head band")), "{:?}", r.warnings);
    // The map is off by the displacement it could not see.
    let err = scalp_error_mm(&map.base_from_head.to_isometry(), &truth);
    assert!(err > 1.0, "{err}");
}

//! Tests of the head-band markers in renders and of the scar outlines.

use nalgebra::{Isometry3, Point2, Point3, Vector3};
use smp_core::image::RgbImage;
use smp_core::rig::Rig;

use super::markers::LABEL_MARGIN_CELLS;
use super::*;
use crate::charuco::DICT_4X4_50;
use crate::fiducial::TruthFiducial;
use crate::patient::{PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use nalgebra::{Rotation3, Translation3, UnitQuaternion};

const BANDED: &str = include_str!("../../../../sim/patients/norwood6-fitz4-light-brown-lab.toml");
const STRIP: &str = include_str!("../../../../sim/patients/norwood3-fitz3-brown-donor-strip.toml");

fn grey(img: &RgbImage, p: &Point2<f64>) -> f64 {
    let [r, g, b] = img.get(p.x.round() as u32, p.y.round() as u32);
    (f64::from(r) + f64::from(g) + f64::from(b)) / 3.0
}

/// A flange-type camera `dist_mm` straight out from the marker, upright on its pattern.
fn camera_facing(f: &TruthFiducial, bfh: &Isometry3<f64>, dist_mm: f64) -> Isometry3<f64> {
    let m = f.head_from_marker;
    let (x, y, z) = (m * Vector3::x(), m * Vector3::y(), m * Vector3::z());
    let rot = Rotation3::from_basis_unchecked(&[x, -y, -z]);
    let eye = Point3::from(m.translation.vector) + z * dist_mm;
    bfh * Isometry3::from_parts(Translation3::from(eye.coords), UnitQuaternion::from_rotation_matrix(&rot))
}

#[test]
fn markers_are_drawn_with_their_border_and_bits() {
    let rig = Rig::default_sim();
    let bfh = rig.base_from_head_nominal();
    let spec = PatientSpec::from_toml_str(BANDED).expect("banded patient");
    let p = SyntheticPatient::generate(&spec);
    let f = p.truth_fiducials().iter().find(|f| f.id == 10).expect("marker 10");
    let intr = rig.flange_camera.intrinsics;
    let bfc = camera_facing(f, &bfh, 150.0);
    let cfg = RenderConfig::default();
    let v = render_view(&p, &intr, &bfc, &bfh, "marker", &cfg);
    let camera_from_head = bfc.inverse() * bfh;
    let at = |u: f64, v: f64| -> Point2<f64> {
        // (u, v) across the black square, left to right and top to bottom.
        let s = f.size_mm;
        let q = f.head_from_marker * Point3::new((u - 0.5) * s, (0.5 - v) * s, 0.0);
        intr.project(&(camera_from_head * q)).expect("in front")
    };
    // Corner pixel truth agrees with the projection used here, in ArUco order.
    let truth = fiducial_corners_px(&p, &intr, &bfc, &bfh);
    let (_, corners) = truth.iter().find(|(id, _)| *id == 10).expect("marker 10 in view");
    for (c, (u, vv)) in corners.iter().zip([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]) {
        let q = at(u, vv);
        assert!((q.x - c[0]).abs() < 1e-9 && (q.y - c[1]).abs() < 1e-9);
    }
    // White label paper just outside the square, black border just inside each corner.
    let white = grey(&v.image, &at(-0.08, 0.5));
    for (u, vv) in [(0.04, 0.04), (0.96, 0.04), (0.96, 0.96), (0.04, 0.96)] {
        let g = grey(&v.image, &at(u, vv));
        assert!(g < 0.3 * white, "corner region ({u}, {vv}): {g} vs paper {white}");
    }
    // Every bit cell's centre matches DICT_4X4_50 (the centre cells included).
    let bits = DICT_4X4_50[10];
    for cy in 0..4 {
        for cx in 0..4 {
            let g = grey(&v.image, &at((cx as f64 + 1.5) / 6.0, (cy as f64 + 1.5) / 6.0));
            let is_white = (bits >> (15 - (cy * 4 + cx))) & 1 == 1;
            assert_eq!(g > 0.5 * white, is_white, "cell ({cx}, {cy}): {g} vs paper {white}");
        }
    }
    // The back marker (id 11) faces away from this camera: no pixel truth for it.
    assert!(truth.iter().all(|(id, _)| *id != 11));
}

#[test]
fn markers_change_only_their_own_pixels() {
    // The same patient without its band renders identically outside the labels: a patient
    // without fiducials goes through exactly the code path it went through before.
    let rig = Rig::default_sim();
    let bfh = rig.base_from_head_nominal();
    let spec = PatientSpec::from_toml_str(BANDED).expect("banded patient");
    let with = SyntheticPatient::generate(&spec);
    let without = SyntheticPatient::generate(&PatientSpec { fiducials: Vec::new(), ..spec.clone() });
    assert_eq!(with.truth_follicles(), without.truth_follicles());
    let f = with.truth_fiducials().iter().find(|f| f.id == 10).expect("marker 10");
    let intr = rig.flange_camera.intrinsics;
    let bfc = camera_facing(f, &bfh, 150.0);
    let cfg = RenderConfig::default();
    let a = render_view(&with, &intr, &bfc, &bfh, "band", &cfg);
    let b = render_view(&without, &intr, &bfc, &bfh, "band", &cfg);
    // Label outline in pixels (the square plus its white margin), with a pixel of slack.
    let camera_from_head = bfc.inverse() * bfh;
    let hl = 0.5 * f.size_mm * (1.0 + 2.0 * LABEL_MARGIN_CELLS / 6.0);
    let px: Vec<Point2<f64>> = [(-hl, -hl), (hl, -hl), (hl, hl), (-hl, hl)]
        .iter()
        .map(|&(x, y)| {
            intr.project(&(camera_from_head * (f.head_from_marker * Point3::new(x, y, 0.0)))).expect("front")
        })
        .collect();
    let (x0, x1) = px.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
    let (y0, y1) = px.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.y), b.max(p.y)));
    let w = intr.width_px as usize;
    let (mut inside_diff, mut outside_diff) = (0usize, 0usize);
    for (i, (pa, pb)) in a.image.data.chunks_exact(3).zip(b.image.data.chunks_exact(3)).enumerate() {
        let (x, y) = ((i % w) as f64, (i / w) as f64);
        let inside = x >= x0 - 1.0 && x <= x1 + 1.0 && y >= y0 - 1.0 && y <= y1 + 1.0;
        if pa != pb {
            if inside {
                inside_diff += 1;
            } else {
                outside_diff += 1;
            }
        }
    }
    assert_eq!(outside_diff, 0, "pixels changed outside the label");
    assert!(inside_diff > 10_000, "the label is drawn: {inside_diff} pixels");
    // The default patient has no band: its overview matches the band-less code path.
    let d = SyntheticPatient::generate(&PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default"));
    assert!(d.truth_fiducials().is_empty());
    assert!(fiducial_corners_px(&d, &intr, &bfc, &bfh).is_empty());
}

#[test]
fn scar_outlines_lie_on_the_scar_edges() {
    for text in [DEFAULT_PATIENT_TOML, STRIP] {
        let p = SyntheticPatient::generate(&PatientSpec::from_toml_str(text).expect("patient"));
        let outlines = scar_outlines_head_mm(&p, 0.5);
        assert_eq!(outlines.len(), p.spec().scars.len());
        assert!(!outlines.is_empty(), "both patients have a scar");
        for (k, ring) in outlines.iter().enumerate() {
            assert!(ring.len() >= 8, "scar {k}: {} points", ring.len());
            let mut worst: f64 = 0.0;
            for q in ring {
                let q = Point3::from(*q);
                assert!(p.ellipsoid().implicit(&q).abs() < 1e-6, "on the skin");
                worst = worst.max(p.sample_surface(&q).scar_sd_mm.abs());
            }
            // Within a few % of the scar's size: the patient model measures in tangent-plane
            // chords, the outline is drawn in the tangent plane and pressed onto the head.
            assert!(worst < 0.35, "scar {k}: edge off by {worst} mm");
            // Consecutive points about step_mm apart (closed loop).
            for w in ring.windows(2) {
                let d = (Vector3::from(w[0]) - Vector3::from(w[1])).norm();
                assert!(d < 1.5, "scar {k}: gap {d} mm");
            }
        }
    }
}

//! Test dots on a synthetic patient: the needle entries of a [`TestDotPlan`] deposited through
//! the patient's own skin response ([`crate::skin`]), and a flange-camera close-up of the
//! grid for vision to measure, with the truth diameters the fit is scored against.
//!
//! Why a camera pose along the site's normal rather than an `xyz` machine position: the
//! concealed sites (nape, behind the ears) face sideways or down on the head rest, where a
//! vertical flange camera cannot look; a 5-axis or 6-axis rig (or the patient turning the
//! head for the test) puts the camera square to the skin at its stand-off, which is what is
//! rendered here, through the rig's flange-camera intrinsics.

use nalgebra::{Isometry3, Matrix3, Point3, Rotation3, Translation3, UnitQuaternion, Vector3};
use smp_core::image::CameraView;
use smp_core::rig::Rig;
use smp_core::test_dots::{ConcealedSite, TestDotGrid, TestDotPlan};
use smp_core::{NeedleEntry, SpecError};
use thiserror::Error;

use crate::patient::{direction_from_angles_deg, SyntheticPatient};
use crate::render::{render_view, RenderConfig};
use crate::skin::DepositInput;

/// Why the test dots could not be simulated.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SimTestDotError {
    #[error("test dots: the plan has no dots; build it with TestDotGrid::plan")]
    EmptyPlan,
    #[error("test dots: the plan's normal {0:?} is not a direction; rebuild the plan from a valid grid")]
    BadNormal([f64; 3]),
    #[error("test dots: the camera stand-off {0} mm is not usable; give a positive distance")]
    BadStandoff(f64),
    #[error("test dots: attaching the deposited dots failed: {0}")]
    Attach(#[from] SpecError),
}

/// What the simulator knows about one test dot (for scoring only; vision never sees it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestDotTruth {
    /// Index of the planned dot.
    pub index: usize,
    pub dwell_s: f64,
    pub depth_mm: f64,
    /// Where the dot ended up on the skin (the planned point projected onto it), head frame.
    pub position_head_mm: [f64; 3],
    /// This dot's deposited diameter (the model plus per-dot variation), mm.
    pub diameter_mm: f64,
    /// The model's diameter for this dwell and depth, [`crate::skin::SkinResponse::diameter_mm`].
    pub model_diameter_mm: f64,
    /// The needle went beyond the patient's blowout depth.
    pub blowout: bool,
}

/// The close-up of the grid and everything needed to measure and score it.
#[derive(Debug, Clone)]
pub struct TestDotRun {
    /// The flange camera's frame: image, intrinsics, `base_from_camera`, depth.
    pub view: CameraView,
    /// Where the head is (the rig's nominal registration, as the session uses it).
    pub base_from_head: Isometry3<f64>,
    /// Distance from the camera to the grid centre along the optical axis, mm.
    pub standoff_mm: f64,
    pub truth: Vec<TestDotTruth>,
    /// The patient with the test dots on the skin (for further renders).
    pub patient: SyntheticPatient,
}

/// The default test-dot grid at a concealed site of this patient: the site's nominal
/// direction met on the head surface, with the outward normal there.
pub fn grid_at_site(patient: &SyntheticPatient, site: ConcealedSite, depth_limit_mm: f64) -> TestDotGrid {
    let (polar, azimuth) = site.nominal_direction_deg();
    let dir = direction_from_angles_deg(polar, azimuth);
    let ell = patient.ellipsoid();
    let p = ell.point_in_direction(&dir);
    let n = ell.normal(&p);
    TestDotGrid::default_at(site, [p.x, p.y, p.z], [n.x, n.y, n.z], depth_limit_mm)
}

/// Camera looking square at the grid from `standoff_mm` along its normal (camera +z into
/// the skin, image +y toward the neck), in the head frame.
pub fn head_from_test_camera(plan: &TestDotPlan, standoff_mm: f64) -> Option<Isometry3<f64>> {
    let n = Vector3::from(plan.normal_head).try_normalize(1e-9)?;
    let z = -n;
    let mut down = -Vector3::z() + n * n.dot(&Vector3::z());
    if down.norm() < 1e-3 {
        down = -Vector3::x() + n * n.dot(&Vector3::x());
    }
    let y = down.try_normalize(1e-9)?;
    let x = y.cross(&z);
    let rot = Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[x, y, z]));
    let eye = Point3::from(plan.centre_head_mm) + n * standoff_mm;
    Some(Isometry3::from_parts(Translation3::from(eye.coords), UnitQuaternion::from_rotation_matrix(&rot)))
}

/// Places the plan's dots on the patient (powered entries at the planned dwell and depth,
/// session 1 and the plan's dilution, through the patient's skin response and seed) and
/// renders the flange camera square over the grid at the rig's stand-off. The dots are
/// fresh (imaged right after placing them, as the session starts).
pub fn run_test_dots(
    patient: &SyntheticPatient,
    rig: &Rig,
    plan: &TestDotPlan,
    cfg: &RenderConfig,
) -> Result<TestDotRun, SimTestDotError> {
    if plan.dots.is_empty() {
        return Err(SimTestDotError::EmptyPlan);
    }
    let standoff_mm = rig.flange_camera.standoff_mm;
    if !(standoff_mm.is_finite() && standoff_mm > 0.0) {
        return Err(SimTestDotError::BadStandoff(standoff_mm));
    }
    let head_from_camera =
        head_from_test_camera(plan, standoff_mm).ok_or(SimTestDotError::BadNormal(plan.normal_head))?;
    let base_from_head = rig.base_from_head_nominal();
    let inputs: Vec<DepositInput> = plan
        .dots
        .iter()
        .map(|d| {
            let base = base_from_head * Point3::from(d.position_head_mm);
            DepositInput {
                entry: NeedleEntry {
                    base_mm: [base.x, base.y, base.z],
                    head_mm: d.position_head_mm,
                    depth_mm: d.depth_mm,
                    time_s: d.index as f64,
                },
                dwell_s: d.dwell_s,
                session: 1,
                dilution_pct: plan.dilution_pct,
            }
        })
        .collect();
    let deposit = patient.deposit(&inputs);
    let response = &patient.spec().skin_response;
    let before = patient.truth_prior_dots().len();
    let with_dots = patient.clone().with_prior_dots(deposit.dots.clone())?;
    let placed = &with_dots.truth_prior_dots()[before..];
    let truth = plan
        .dots
        .iter()
        .zip(placed)
        .map(|(d, dot)| TestDotTruth {
            index: d.index,
            dwell_s: d.dwell_s,
            depth_mm: d.depth_mm,
            position_head_mm: dot.position_head_mm,
            diameter_mm: dot.diameter_mm,
            model_diameter_mm: response.diameter_mm(d.dwell_s, d.depth_mm),
            blowout: dot.blowout,
        })
        .collect();
    let base_from_camera = base_from_head * head_from_camera;
    let view = render_view(
        &with_dots,
        &rig.flange_camera.intrinsics,
        &base_from_camera,
        &base_from_head,
        &format!("test-dots-{}", plan.site.as_str()),
        cfg,
    );
    Ok(TestDotRun { view, base_from_head, standoff_mm, truth, patient: with_dots })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::{PatientSpec, DEFAULT_PATIENT_TOML};

    #[test]
    fn the_grid_is_deposited_with_the_patients_response_and_seen_by_the_camera() {
        let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient");
        let patient = SyntheticPatient::generate(&spec);
        let rig = Rig::default_sim();
        for site in [ConcealedSite::Nape, ConcealedSite::BehindLeftEar, ConcealedSite::BehindRightEar] {
            let plan = grid_at_site(&patient, site, 1.2).plan(1.2).expect("plan");
            let run = run_test_dots(&patient, &rig, &plan, &RenderConfig::default()).expect("run");
            assert_eq!(run.truth.len(), 16);
            let head_from_camera = run.base_from_head.inverse() * run.view.base_from_camera;
            let camera_from_head = head_from_camera.inverse();
            let k = &run.view.intrinsics;
            for t in &run.truth {
                assert!((t.diameter_mm - t.model_diameter_mm).abs() < 0.1, "{t:?}");
                let pc = camera_from_head * Point3::from(t.position_head_mm);
                assert!((pc.z - rig.flange_camera.standoff_mm).abs() < 1.0, "{site:?} {pc:?}");
                let px = k.project(&pc).expect("in front");
                assert!(px.x > 50.0 && px.y > 50.0 && px.x < 750.0 && px.y < 550.0, "{site:?} {px:?}");
                // The dot is darker than the skin half a spacing away.
                let g = |x: f64, y: f64| -> f64 {
                    let p = run.view.image.get(x.round() as u32, y.round() as u32);
                    f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2])
                };
                // Skin: the median of eight points half a spacing away (a follicle may sit on one).
                let off = 0.5 * plan.spacing_mm * k.fx_px / pc.z;
                let mut ring: Vec<f64> = (0..8)
                    .map(|a| f64::from(a) * std::f64::consts::FRAC_PI_4)
                    .map(|a| g(px.x + off * a.cos(), px.y + off * a.sin()))
                    .collect();
                ring.sort_by(f64::total_cmp);
                assert!(g(px.x, px.y) < 0.8 * ring[4], "{site:?} dot {} not dark", t.index);
            }
        }
    }

    #[test]
    fn an_empty_plan_is_an_error() {
        let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient");
        let patient = SyntheticPatient::generate(&spec);
        let mut plan = grid_at_site(&patient, ConcealedSite::Nape, 1.2).plan(1.2).expect("plan");
        plan.dots.clear();
        let err = run_test_dots(&patient, &Rig::default_sim(), &plan, &RenderConfig::default()).expect_err("empty");
        assert_eq!(err, SimTestDotError::EmptyPlan);
    }
}

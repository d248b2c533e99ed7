//! The flange camera's view of one dot site after needle entries: what the camera check of an
//! uncertain dot sees in the simulator.
//!
//! Why: after a crash, a serial fault, a controller reset or an abort, the journal may hold
//! dots whose fate is unknown (the command was sent, the reply never came). Tattooing such a
//! dot again would double it; skipping it would leave a gap. The executor resolves each one
//! by looking: the arm puts the flange camera over the site (as the scan does, with
//! [`Rig::machine_for_camera_over_xyz`]) and vision decides whether fresh pigment is there.
//! In the simulator the pigment is what the controller's recorded needle entries deposited
//! through the patient's own skin model ([`SyntheticPatient::with_session_deposits`]),
//! drawn by the same renderer as a patient's earlier dots ([`crate::render::render_view`]):
//! no second renderer whose look could drift from the scan's.
//!
//! The view may be a centre crop of the flange camera (same focal length, distortion and
//! pixel grid; fewer pixels): the site lies on the optical axis, so a crop of a few hundred
//! pixels holds all the evidence and renders in a fraction of the full frame's time.

use nalgebra::{Isometry3, Point3};
use smp_core::camera::CameraIntrinsics;
use smp_core::image::CameraView;
use smp_core::rig::Rig;
use smp_core::{NeedleEntry, SpecError};
use thiserror::Error;

use crate::patient::SyntheticPatient;
use crate::render::{render_view, RenderConfig};
use crate::skin::{Deposit, DepositInput, PriorDot};

/// Why a dot-site view could not be made.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DotSiteError {
    #[error("dot site: the needle entries could not be deposited on the patient: {0}")]
    Deposit(#[from] SpecError),
    #[error("dot site {site_head_mm:?} (head frame, mm) is not a finite point; pass the planned dot position")]
    BadSite { site_head_mm: [f64; 3] },
    #[error(
        "dot site {site_head_mm:?}: the camera over it needs machine {axis} = {value_mm:.1} mm, outside the travel [{min_mm:.1}, {max_mm:.1}] mm; resolve this dot by the operator"
    )]
    OutOfTravel { site_head_mm: [f64; 3], axis: char, value_mm: f64, min_mm: f64, max_mm: f64 },
    #[error(
        "dot site crop {width_px}x{height_px} px does not fit the {sensor_w}x{sensor_h} px flange camera; use a crop of at least 8 px within the sensor"
    )]
    BadCrop { width_px: u32, height_px: u32, sensor_w: u32, sensor_h: u32 },
}

/// Intrinsics of the centre `width_px` x `height_px` crop of a camera: same focal lengths and
/// distortion (defined in normalised coordinates, so a crop changes only the principal
/// point). `None` when the crop is smaller than 8 px or larger than the sensor.
pub fn centre_crop(intrinsics: &CameraIntrinsics, width_px: u32, height_px: u32) -> Option<CameraIntrinsics> {
    if width_px < 8 || height_px < 8 || width_px > intrinsics.width_px || height_px > intrinsics.height_px {
        return None;
    }
    let dx = f64::from((intrinsics.width_px - width_px) / 2);
    let dy = f64::from((intrinsics.height_px - height_px) / 2);
    Some(CameraIntrinsics {
        width_px,
        height_px,
        cx_px: intrinsics.cx_px - dx,
        cy_px: intrinsics.cy_px - dy,
        ..*intrinsics
    })
}

/// One rendered dot-site view.
#[derive(Debug, Clone)]
pub struct DotSiteView {
    /// The image with its intrinsics (the crop's, if cropped) and `base_from_camera`.
    pub view: CameraView,
    /// Machine position (`xyz` profile) that put the flange camera over the site.
    pub machine_mm: [f64; 3],
}

/// A patient with a session's needle entries in the skin, ready to be looked at site by site.
///
/// Built once per check (cloning a patient with its tens of thousands of follicles is not
/// free); each [`Self::render_site`] is then one small render.
#[derive(Debug, Clone)]
pub struct DotSiteScene {
    patient: SyntheticPatient,
    deposit: Deposit,
    base_from_head: Isometry3<f64>,
}

impl DotSiteScene {
    /// The patient with `inputs` deposited as fresh dots by its skin model, the head at
    /// `base_from_head` (the simulator's true head pose).
    pub fn new(
        patient: &SyntheticPatient,
        inputs: &[DepositInput],
        base_from_head: Isometry3<f64>,
    ) -> Result<Self, DotSiteError> {
        let (patient, deposit) = patient.with_session_deposits(inputs)?;
        Ok(DotSiteScene { patient, deposit, base_from_head })
    }

    /// [`Self::new`] for the controller's recorded entries of one session, all at the
    /// session's dwell, layer and dilution (`DepositInput::for_session`).
    pub fn from_entries(
        patient: &SyntheticPatient,
        entries: &[NeedleEntry],
        dwell_s: f64,
        session: u32,
        dilution_pct: f64,
        base_from_head: Isometry3<f64>,
    ) -> Result<Self, DotSiteError> {
        Self::new(patient, &DepositInput::for_session(entries, dwell_s, session, dilution_pct), base_from_head)
    }

    /// The patient with the deposits (for evaluation and further renders).
    pub fn patient(&self) -> &SyntheticPatient {
        &self.patient
    }

    /// The fresh dots the entries left, in entry order (entries with a non-finite position
    /// left none): ground truth for tests.
    pub fn deposited(&self) -> &[PriorDot] {
        &self.deposit.dots
    }

    /// The whole deposit (merged pairs, blowouts, skipped entries).
    pub fn deposit(&self) -> &Deposit {
        &self.deposit
    }

    pub fn base_from_head(&self) -> &Isometry3<f64> {
        &self.base_from_head
    }

    /// Renders the flange camera put over `site_head_mm` (head frame) by
    /// [`Rig::machine_for_camera_over_xyz`], at the rig's stand-off, looking down. `crop_px`
    /// renders only the centre `(width, height)` of the sensor (see [`centre_crop`]); `None`
    /// renders the full frame. `label` names the view and seeds its sensor noise.
    ///
    /// The machine position must lie within the rig's travel: a site the camera cannot reach
    /// is [`DotSiteError::OutOfTravel`] (the operator resolves that dot).
    pub fn render_site(
        &self,
        rig: &Rig,
        site_head_mm: [f64; 3],
        crop_px: Option<(u32, u32)>,
        label: &str,
        cfg: &RenderConfig,
    ) -> Result<DotSiteView, DotSiteError> {
        if !site_head_mm.iter().all(|v| v.is_finite()) {
            return Err(DotSiteError::BadSite { site_head_mm });
        }
        let intrinsics = flange_intrinsics(rig, crop_px)?;
        let target = self.base_from_head * Point3::from(site_head_mm);
        let machine_mm = rig.machine_for_camera_over_xyz([target.x, target.y, target.z]);
        self.render_camera(rig, &intrinsics, machine_mm, site_head_mm, label, cfg)
    }

    /// The flange camera's view with the machine (`xyz` profile) at `machine_mm`, wherever the
    /// host put it: the host aims with its own registration, the world renders the head where
    /// it truly is. Cropped to `crop_px` around the centre.
    pub fn render_at_machine(
        &self,
        rig: &Rig,
        machine_mm: [f64; 3],
        crop_px: Option<(u32, u32)>,
        label: &str,
        cfg: &RenderConfig,
    ) -> Result<DotSiteView, DotSiteError> {
        let intrinsics = flange_intrinsics(rig, crop_px)?;
        // The site the camera looks at, in the head frame (for the error message).
        let base_from_camera = rig.base_from_flange_camera_xyz(machine_mm);
        let look = base_from_camera * Point3::new(0.0, 0.0, 0.0);
        let site = self.base_from_head.inverse() * look;
        self.render_camera(rig, &intrinsics, machine_mm, [site.x, site.y, site.z], label, cfg)
    }

    fn render_camera(
        &self,
        rig: &Rig,
        intrinsics: &CameraIntrinsics,
        machine_mm: [f64; 3],
        site_head_mm: [f64; 3],
        label: &str,
        cfg: &RenderConfig,
    ) -> Result<DotSiteView, DotSiteError> {
        for ((axis, value_mm), limits) in ['X', 'Y', 'Z'].into_iter().zip(machine_mm).zip(rig.dynamics.axes()) {
            if !(value_mm >= limits.min_mm && value_mm <= limits.max_mm) {
                return Err(DotSiteError::OutOfTravel {
                    site_head_mm,
                    axis,
                    value_mm,
                    min_mm: limits.min_mm,
                    max_mm: limits.max_mm,
                });
            }
        }
        let intrinsics = *intrinsics;
        let base_from_camera = rig.base_from_flange_camera_xyz(machine_mm);
        let view = render_view(&self.patient, &intrinsics, &base_from_camera, &self.base_from_head, label, cfg);
        Ok(DotSiteView { view, machine_mm })
    }
}

/// The flange camera's intrinsics, cropped to `crop_px` around the centre when given.
fn flange_intrinsics(rig: &Rig, crop_px: Option<(u32, u32)>) -> Result<CameraIntrinsics, DotSiteError> {
    let sensor = &rig.flange_camera.intrinsics;
    match crop_px {
        None => Ok(*sensor),
        Some((w, h)) => centre_crop(sensor, w, h).ok_or(DotSiteError::BadCrop {
            width_px: w,
            height_px: h,
            sensor_w: sensor.width_px,
            sensor_h: sensor.height_px,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::{up_direction_head, PatientSpec, DEFAULT_PATIENT_TOML};

    fn scene_with_one_dot() -> (DotSiteScene, [f64; 3], [f64; 3]) {
        let spec = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML).expect("default patient");
        let patient = SyntheticPatient::generate(&spec);
        let rig = Rig::default_sim();
        let base_from_head = rig.base_from_head_nominal();
        let ell = patient.ellipsoid();
        let up = up_direction_head(&base_from_head);
        let site = ell.point_in_direction(&up);
        // A second site 3 mm away: no entry there.
        let other = ell.point_in_direction(&(site.coords + nalgebra::Vector3::new(3.0, 0.0, 0.0)).normalize());
        let entry = NeedleEntry {
            base_mm: {
                let b = base_from_head * site;
                [b.x, b.y, b.z]
            },
            head_mm: [site.x, site.y, site.z],
            depth_mm: 1.0,
            time_s: 1.0,
        };
        let scene = DotSiteScene::from_entries(&patient, &[entry], 0.1, 1, 50.0, base_from_head).expect("scene");
        (scene, [site.x, site.y, site.z], [other.x, other.y, other.z])
    }

    fn centre_grey(v: &DotSiteView) -> f64 {
        let img = &v.view.image;
        let (w, h) = (img.width, img.height);
        let p = img.get(w / 2, h / 2);
        (f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2])) / 3.0
    }

    #[test]
    fn the_deposited_dot_is_dark_at_the_centre_of_its_view_and_the_other_site_is_not() {
        let (scene, site, other) = scene_with_one_dot();
        assert_eq!(scene.deposited().len(), 1);
        let rig = Rig::default_sim();
        let cfg = RenderConfig::default();
        let at = scene.render_site(&rig, site, Some((64, 64)), "site", &cfg).expect("render");
        let off = scene.render_site(&rig, other, Some((64, 64)), "other", &cfg).expect("render");
        assert_eq!((at.view.image.width, at.view.image.height), (64, 64));
        let (g_at, g_off) = (centre_grey(&at), centre_grey(&off));
        assert!(g_at < 0.6 * g_off, "dot {g_at} vs skin {g_off}");
        // The site projects onto the crop's centre.
        let camera_from_head = at.view.base_from_camera.inverse() * scene.base_from_head();
        let px = at.view.intrinsics.project(&(camera_from_head * Point3::from(site))).expect("in front");
        assert!((px.x - 32.0).abs() < 1.0 && (px.y - 32.0).abs() < 1.0, "{px:?}");
    }

    #[test]
    fn a_crop_renders_the_same_pixels_as_the_full_frame() {
        let (scene, site, _) = scene_with_one_dot();
        let rig = Rig::default_sim();
        let cfg = RenderConfig { noise_sigma_levels: 0.0, ..RenderConfig::default() };
        let full = scene.render_site(&rig, site, None, "same", &cfg).expect("full");
        let crop = scene.render_site(&rig, site, Some((40, 30)), "same", &cfg).expect("crop");
        let (dx, dy) = ((800 - 40) / 2, (600 - 30) / 2);
        for (x, y) in [(0, 0), (20, 15), (39, 29), (5, 25)] {
            let a = crop.view.image.get(x, y);
            let b = full.view.image.get(x + dx, y + dy);
            for k in 0..3 {
                assert!((i32::from(a[k]) - i32::from(b[k])).abs() <= 1, "({x},{y}) {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_naming_it() {
        let (scene, _, _) = scene_with_one_dot();
        let rig = Rig::default_sim();
        let cfg = RenderConfig::default();
        let err = scene.render_site(&rig, [f64::NAN, 0.0, 0.0], None, "x", &cfg).expect_err("nan");
        assert!(matches!(err, DotSiteError::BadSite { .. }));
        let err = scene.render_site(&rig, [0.0, 0.0, 90.0], Some((4, 4)), "x", &cfg).expect_err("crop");
        assert!(matches!(err, DotSiteError::BadCrop { .. }));
        // Under the chin: the camera would have to go below the machine's travel.
        let err = scene.render_site(&rig, [0.0, 0.0, -400.0], None, "x", &cfg).expect_err("travel");
        assert!(matches!(err, DotSiteError::OutOfTravel { .. }), "{err}");
    }
}

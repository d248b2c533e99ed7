//! A scalp map made from the simulator's ground truth instead of from images: what a perfect
//! scan of the top of the head would give. It lets `smp eval planner` measure the planner
//! on a full head apart from vision (whose own errors `smp eval vision` measures), and gives
//! engineers a known-good map to plan against.
//!
//! The map's surface is a polynomial height field over the head frame's (x, y) plane fitted
//! to the true head surface wherever its outward normal is within `max_tilt_deg` of the
//! vertex (+z head); regions come from the patient's region model, follicles from the
//! truth list (natural follicles and, when attached, earlier SMP dots), the skin tone from
//! the patient's skin colour.

use nalgebra::{DMatrix, DVector, Isometry3, Point3};
use smp_core::color::{skin_tone, srgb_to_lab};
use smp_core::geometry::{monomial_count, monomials, PoseSpec, SurfacePatch};
use smp_core::map::{CellGrid, Follicle, FollicleKind, RegionKind, ScalpMap};
use smp_core::JSON_FORMAT_VERSION;

use crate::patient::SyntheticPatient;

/// How the truth map is cut and fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthMapSettings {
    /// Skin whose outward normal is further than this from head +z is left out (labelled
    /// outside): the part of the head a full-head session treats from above.
    pub max_tilt_deg: f64,
    /// Region cell size, mm.
    pub cell_mm: f64,
    /// Degree of the fitted height field.
    pub degree: usize,
    /// Spacing of the surface samples the height field is fitted to, mm.
    pub fit_step_mm: f64,
    /// Registration written into the map (the nominal head rest, usually).
    pub base_from_head: Isometry3<f64>,
}

impl Default for TruthMapSettings {
    fn default() -> Self {
        TruthMapSettings {
            max_tilt_deg: 60.0,
            cell_mm: 1.0,
            degree: 10,
            fit_step_mm: 2.0,
            base_from_head: Isometry3::identity(),
        }
    }
}

/// Why no truth map could be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TruthMapError {
    #[error("truth map: max_tilt_deg {0} must be in 5..=80 degrees")]
    Tilt(f64),
    #[error("truth map: cell_mm {0} must be in 0.2..=5 mm")]
    Cell(f64),
    #[error("truth map: only {points} surface samples within the tilt limit, a degree-{degree} fit needs {needed}")]
    TooFewPoints { points: usize, degree: usize, needed: usize },
    #[error("truth map: the height-field fit failed ({0}); lower the degree")]
    Fit(String),
}

/// The map and how well its fitted surface follows the true head.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthMap {
    pub map: ScalpMap,
    /// RMS and max of fitted minus true height over the cells inside the tilt limit, mm.
    pub surface_rms_mm: f64,
    pub surface_max_mm: f64,
}

/// Builds the truth map of `patient`. See the module docs.
pub fn truth_map(patient: &SyntheticPatient, s: &TruthMapSettings) -> Result<TruthMap, TruthMapError> {
    if !(5.0..=80.0).contains(&s.max_tilt_deg) {
        return Err(TruthMapError::Tilt(s.max_tilt_deg));
    }
    if !(0.2..=5.0).contains(&s.cell_mm) {
        return Err(TruthMapError::Cell(s.cell_mm));
    }
    let semi = patient.ellipsoid().semi_axes_mm;
    let cos_max = s.max_tilt_deg.to_radians().cos();
    // The fit reaches a little beyond the tilt limit so the patch edge is not extrapolated.
    let cos_fit = (s.max_tilt_deg + 4.0).min(85.0).to_radians().cos();
    let step = s.fit_step_mm.max(0.5);
    let (mut pts, mut lo, mut hi) = (Vec::new(), [f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    let nx = (2.0 * semi[0] / step).ceil() as i64;
    let ny = (2.0 * semi[1] / step).ceil() as i64;
    for j in -ny..=ny {
        for i in -nx..=nx {
            let (x, y) = (i as f64 * step * 0.5, j as f64 * step * 0.5);
            if let Some((z, n)) = patient.ellipsoid().upper_surface(x, y) {
                if n.z >= cos_fit {
                    pts.push([x, y, z]);
                }
                if n.z >= cos_max {
                    lo = [lo[0].min(x), lo[1].min(y)];
                    hi = [hi[0].max(x), hi[1].max(y)];
                }
            }
        }
    }
    let n_coef = monomial_count(s.degree);
    if pts.len() < 3 * n_coef || !(lo[0] < hi[0] && lo[1] < hi[1]) {
        return Err(TruthMapError::TooFewPoints { points: pts.len(), degree: s.degree, needed: 3 * n_coef });
    }
    let scale_mm = semi[0].max(semi[1]);
    let mut a = DMatrix::zeros(pts.len(), n_coef);
    let mut rhs = DVector::zeros(pts.len());
    let mut row = Vec::with_capacity(n_coef);
    for (k, p) in pts.iter().enumerate() {
        monomials(s.degree, p[0] / scale_mm, p[1] / scale_mm, &mut row);
        for (c, v) in row.iter().enumerate() {
            a[(k, c)] = *v;
        }
        rhs[k] = p[2];
    }
    let coef = a.clone().svd(true, true).solve(&rhs, 1e-12).map_err(|e| TruthMapError::Fit(e.to_string()))?;
    let residual = &a * &coef - &rhs;
    let fit_rms_mm = (residual.norm_squared() / pts.len() as f64).sqrt();
    let surface = SurfacePatch {
        head_from_patch: Isometry3::identity(),
        degree: s.degree,
        coefficients: coef.iter().copied().collect(),
        scale_mm,
        x_range_mm: [lo[0], hi[0]],
        y_range_mm: [lo[1], hi[1]],
        fit_rms_mm,
    };

    // Regions on the cell grid, and the fit's error against the true head over them.
    let cell = s.cell_mm;
    let (gnx, gny) = (((hi[0] - lo[0]) / cell).ceil() as usize, ((hi[1] - lo[1]) / cell).ceil() as usize);
    let mut regions = CellGrid::filled(lo[0], lo[1], cell, gnx, gny, RegionKind::Outside.code());
    let (mut sq, mut n_err, mut max_err) = (0.0, 0usize, 0.0f64);
    for j in 0..gny {
        for i in 0..gnx {
            let (x, y) = regions.cell_centre(i, j);
            let Some((z, n)) = patient.ellipsoid().upper_surface(x, y) else { continue };
            if n.z < cos_max {
                continue;
            }
            let err = surface.height(x, y) - z;
            sq += err * err;
            n_err += 1;
            max_err = max_err.max(err.abs());
            regions.set(i, j, patient.region_at_head(&Point3::new(x, y, z)).code());
        }
    }
    let inside = |p: &[f64; 3]| {
        regions.cell_of(p[0], p[1]).is_some_and(|(i, j)| regions.code_at_cell(i, j) != RegionKind::Outside.code())
    };
    let mut follicles: Vec<Follicle> = patient
        .truth_follicles()
        .iter()
        .filter(|f| f.normal_head[2] >= cos_max && inside(&f.position_head_mm))
        .map(|f| Follicle {
            x_mm: f.position_head_mm[0],
            y_mm: f.position_head_mm[1],
            z_mm: f.position_head_mm[2],
            normal: f.normal_head,
            diameter_mm: f.diameter_mm,
            darkness: f.darkness,
            kind: FollicleKind::Natural,
        })
        .collect();
    // Earlier SMP dots as a perfect scan of the healed scalp would report them; lost dots
    // (healed away) are no longer in the truth list, as a camera would not see them either.
    follicles.extend(patient.truth_prior_dots().iter().filter(|d| inside(&d.position_head_mm)).filter_map(|d| {
        let p = d.position_head_mm;
        let (_, n) = patient.ellipsoid().upper_surface(p[0], p[1])?;
        (n.z >= cos_max).then_some(Follicle {
            x_mm: p[0],
            y_mm: p[1],
            z_mm: p[2],
            normal: [n.x, n.y, n.z],
            diameter_mm: d.diameter_mm,
            darkness: d.darkness,
            kind: FollicleKind::SmpDot,
        })
    }));
    follicles.sort_by(|a, b| a.x_mm.total_cmp(&b.x_mm).then(a.y_mm.total_cmp(&b.y_mm)));
    let map = ScalpMap {
        version: JSON_FORMAT_VERSION,
        base_from_head: PoseSpec::from_isometry(&s.base_from_head),
        surface,
        regions,
        follicles,
        skin: Some(skin_tone(srgb_to_lab(patient.spec().tone.skin_srgb))),
        warnings: vec![format!(
            "made from the simulator's ground truth (patient {}), not from images",
            patient.spec().name
        )],
    };
    let surface_rms_mm = if n_err > 0 { (sq / n_err as f64).sqrt() } else { 0.0 };
    Ok(TruthMap { map, surface_rms_mm, surface_max_mm: max_err })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::PatientSpec;

    fn default_patient() -> SyntheticPatient {
        let spec = PatientSpec::default_patient().expect("embedded default patient parses");
        SyntheticPatient::generate(&spec)
    }

    #[test]
    fn truth_map_of_the_default_patient_is_valid_and_accurate() {
        let p = default_patient();
        let t = truth_map(&p, &TruthMapSettings::default()).expect("truth map");
        t.map.validate().expect("a valid map");
        assert!(t.surface_rms_mm < 0.05, "surface rms {} mm", t.surface_rms_mm);
        assert!(t.surface_max_mm < 0.3, "surface max {} mm", t.surface_max_mm);
        let counts: Vec<usize> = ['H', 'T', 'B', 'S'].iter().map(|c| t.map.regions.count(*c)).collect();
        assert!(counts.iter().all(|n| *n > 0), "every region kind present: {counts:?}");
        // Every follicle lies on the fitted surface and inside a mapped cell.
        for f in &t.map.follicles {
            assert!((t.map.surface.height(f.x_mm, f.y_mm) - f.z_mm).abs() < 0.3);
        }
        assert!(t.map.follicles.len() > 1000);
        assert!(
            t.map.follicles.iter().all(|f| f.kind == FollicleKind::Natural),
            "the default patient has no prior dots"
        );
    }

    #[test]
    fn prior_dots_of_a_follow_up_patient_are_smp_dots() {
        let text = include_str!("../../../sim/patients/followup-s2.toml");
        let spec = PatientSpec::from_toml_str(text).expect("follow-up patient parses");
        let p = SyntheticPatient::generate(&spec);
        let t = truth_map(&p, &TruthMapSettings::default()).expect("truth map");
        let dots = t.map.follicles.iter().filter(|f| f.kind == FollicleKind::SmpDot).count();
        assert!(dots > 100, "{dots} prior dots in the map");
        assert!(dots <= p.truth_prior_dots().len());
    }

    #[test]
    fn a_wider_tilt_maps_more_skin() {
        let p = default_patient();
        let narrow = truth_map(&p, &TruthMapSettings { max_tilt_deg: 40.0, ..Default::default() }).expect("map");
        let wide = truth_map(&p, &TruthMapSettings::default()).expect("map");
        let mapped = |m: &ScalpMap| m.regions.nx * m.regions.ny - m.regions.count('.');
        assert!(mapped(&wide.map) > mapped(&narrow.map));
    }

    #[test]
    fn bad_settings_are_named() {
        let p = default_patient();
        let e = truth_map(&p, &TruthMapSettings { max_tilt_deg: 90.0, ..Default::default() });
        assert!(matches!(e, Err(TruthMapError::Tilt(_))), "{e:?}");
        let e = truth_map(&p, &TruthMapSettings { cell_mm: f64::NAN, ..Default::default() });
        assert!(matches!(&e, Err(TruthMapError::Cell(_))) && e.is_err_and(|e| e.to_string().contains("cell_mm")));
    }
}

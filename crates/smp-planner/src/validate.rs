//! Input checks before any planning: every number the planner reads must be finite and in
//! range, and an error names the field, so a NaN from a failed fit never becomes a dot.

use nalgebra::Isometry3;
use smp_core::map::ScalpMap;
use smp_core::plan::SessionSpec;
use smp_core::rig::Rig;
use smp_core::SpecError;

use crate::error::PlanError;
use crate::PlanRequest;

/// What the registration argument is called in messages.
const REGISTRATION: &str = "registration (base_from_head)";

fn finite(what: &'static str, field: impl FnOnce() -> String, v: f64) -> Result<(), SpecError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(SpecError::invalid(what, field(), format!("is {v}; it must be a finite number")))
    }
}

fn isometry_finite(what: &'static str, field: &str, iso: &Isometry3<f64>) -> Result<(), SpecError> {
    for (i, v) in iso.translation.vector.iter().enumerate() {
        finite(what, || format!("{field}.translation[{i}]"), *v)?;
    }
    for (i, v) in iso.rotation.coords.iter().enumerate() {
        finite(what, || format!("{field}.rotation[{i}]"), *v)?;
    }
    let norm = iso.rotation.coords.norm();
    if (norm - 1.0).abs() > 1e-6 {
        return Err(SpecError::invalid(
            what,
            format!("{field}.rotation"),
            format!("has norm {norm}; it must be a unit quaternion"),
        ));
    }
    Ok(())
}

/// Validates every input of [`crate::plan_session`], naming the first bad field.
pub(crate) fn inputs(
    map: &ScalpMap,
    spec: &SessionSpec,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
) -> Result<(), PlanError> {
    spec.validate()?;
    rig.validate()?;
    isometry_finite(REGISTRATION, "base_from_head", base_from_head)?;
    // The core validation covers follicle positions, surface coefficients, ranges and the
    // region grid; the rest below covers what it leaves out but the planner reads.
    map.validate()?;
    const W: &str = ScalpMap::WHAT;
    isometry_finite(W, "surface.head_from_patch", &map.surface.head_from_patch)?;
    finite(W, || "surface.fit_rms_mm".into(), map.surface.fit_rms_mm)?;
    if map.surface.degree > 12 {
        return Err(SpecError::invalid(
            W,
            "surface.degree",
            format!("is {}; at most 12 is supported", map.surface.degree),
        )
        .into());
    }
    if map.regions.nx == 0 || map.regions.ny == 0 {
        return Err(SpecError::invalid(W, "regions", "is empty (nx or ny is 0); re-run the scan").into());
    }
    if map.regions.nx.saturating_mul(map.regions.ny) > 16_000_000 {
        return Err(SpecError::invalid(W, "regions", "has more than 16 million cells; use a coarser cell_mm").into());
    }
    for (i, f) in map.follicles.iter().enumerate() {
        for (k, v) in f.normal.iter().enumerate() {
            finite(W, || format!("follicles[{i}].normal[{k}]"), *v)?;
        }
    }
    if let Some(skin) = &map.skin {
        for (k, v) in skin.lab.iter().enumerate() {
            finite(W, || format!("skin.lab[{k}]"), *v)?;
        }
        finite(W, || "skin.ita_deg".into(), skin.ita_deg)?;
    }
    Ok(())
}

/// Validates what [`crate::plan_session_full`] takes beyond the map, spec, rig and
/// registration: the intake, earlier entries and the tuning.
pub(crate) fn extras(req: &PlanRequest<'_>) -> Result<(), PlanError> {
    if let Some(i) = req.intake {
        i.validate()?;
    }
    const P: &str = "earlier sessions' dots";
    for (i, p) in req.prior_dots_head.iter().enumerate() {
        for (k, v) in p.iter().enumerate() {
            finite(P, || format!("prior_dots_head[{i}][{k}]"), *v)?;
        }
    }
    const C: &str = "planner config";
    let c = &req.cfg;
    for (name, v, lo, hi) in [
        ("feather_mm", c.feather_mm, 0.0, 50.0),
        ("feather_floor", c.feather_floor, 0.0, 1.0),
        ("feather_noise_mm", c.feather_noise_mm, 0.5, 500.0),
        ("natural_sigma_mm", c.natural_sigma_mm, 0.5, 50.0),
        ("smp_sigma_mm", c.smp_sigma_mm, 0.5, 50.0),
        ("min_density_fraction", c.min_density_fraction, 0.0, 1.0),
        ("kappa_initial", c.kappa_initial, 0.05, 5.0),
        ("count_tolerance", c.count_tolerance, 0.0, 1.0),
        ("fixed_radius_factor", c.fixed_radius_factor, 0.0, 3.0),
        ("fill_spacing_fraction", c.fill_spacing_fraction, 0.0, 2.0),
    ] {
        smp_core::error::check_range(C, name, v, lo, hi)?;
    }
    Ok(())
}

//! Test dots: a small grid of dots at several dwell times and depths, placed in a concealed
//! area before a session, whose measured diameters give this patient's skin response and so
//! the session's dwell and depth.
//!
//! Why: skin takes pigment differently from patient to patient (thickness, scarring, age),
//! and a dot's diameter grows with dwell and depth; too deep and the pigment spreads sideways
//! (a blowout). A clinic tries a few dots where hair hides them (the nape, behind an ear)
//! and picks the gentlest settings that give the intended size. This module owns the pure
//! parts of that: the grid and its validation against the session's depth limit, the fitted
//! response, and the parameter choice. Measuring the dots is vision's job
//! (`smp_vision::skin_response`); depositing and rendering them is the simulator's.
//!
//! Invariant: every planned depth and every chosen depth is at or below the session's depth
//! limit; the choice never extrapolates beyond the dwell and depth range the fit was made on.

use nalgebra::{Point3, Unit, Vector3};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::plan::SessionSpec;

/// Where the test dots go: skin the patient's remaining hair hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcealedSite {
    /// Above the nape hairline, centred at the back.
    Nape,
    /// Behind the patient's left ear (head +y side).
    BehindLeftEar,
    /// Behind the patient's right ear (head -y side).
    BehindRightEar,
}

impl ConcealedSite {
    /// Nominal direction of the site from the head centre, `(polar_deg, azimuth_deg)` in the
    /// convention of the patient files (polar from the vertex, azimuth from the nose toward
    /// the left ear). A few degrees inside the usual lower hair edge, so that hair covers the
    /// dots; a rig places the grid where its registered surface says this direction meets
    /// the skin.
    pub fn nominal_direction_deg(self) -> (f64, f64) {
        match self {
            ConcealedSite::Nape => (108.0, 180.0),
            ConcealedSite::BehindLeftEar => (92.0, 118.0),
            ConcealedSite::BehindRightEar => (92.0, 242.0),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConcealedSite::Nape => "nape",
            ConcealedSite::BehindLeftEar => "behind_left_ear",
            ConcealedSite::BehindRightEar => "behind_right_ear",
        }
    }
}

/// Why a test-dot grid, fit or parameter choice cannot be used.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TestDotError {
    /// A grid field is out of range (names the field and the fix).
    #[error("test-dot grid: field `{field}` {problem}")]
    Grid { field: String, problem: String },
    /// A planned depth is deeper than the session allows: test dots obey the same hard limit.
    #[error(
        "test-dot grid: depth_mm[{index}] = {depth_mm} mm exceeds the session depth limit {limit_mm} mm; remove it or lower it to the limit"
    )]
    DepthOverLimit { index: usize, depth_mm: f64, limit_mm: f64 },
    /// A parameter-choice limit is out of range.
    #[error("test-dot parameter limits: field `{field}` {problem}")]
    Limits { field: String, problem: String },
    /// The fit is unusable for a choice (e.g. diameter falling with dwell).
    #[error("skin-response fit cannot be used: {reason}")]
    Fit { reason: String },
    /// No depth is both deep enough and safe.
    #[error(
        "no usable depth: the shallowest allowed is {lowest_mm:.3} mm but the ceiling is {ceiling_mm:.3} mm ({why}); test shallower depths or review the limits"
    )]
    NoDepthWindow { lowest_mm: f64, ceiling_mm: f64, why: String },
    /// No dwell/depth in the allowed window reaches the target diameter.
    #[error(
        "target dot diameter {target_mm:.3} mm is out of reach: the closest is {closest_mm:.3} mm at dwell {dwell_s:.3} s, depth {depth_mm:.3} mm; change the target or test a wider dwell range"
    )]
    TargetUnreachable { target_mm: f64, closest_mm: f64, dwell_s: f64, depth_mm: f64 },
}

fn grid_err(field: impl Into<String>, problem: impl Into<String>) -> TestDotError {
    TestDotError::Grid { field: field.into(), problem: problem.into() }
}

fn limits_err(field: impl Into<String>, problem: impl Into<String>) -> TestDotError {
    TestDotError::Limits { field: field.into(), problem: problem.into() }
}

fn finite_in(value: f64, lo: f64, hi: f64) -> bool {
    value.is_finite() && value >= lo && value <= hi
}

/// The test-dot grid as a clinician sets it: one dot per (dwell, depth) pair, dwell along
/// the grid's columns and depth along its rows, on the skin's tangent plane at the site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestDotGrid {
    pub site: ConcealedSite,
    /// Centre of the grid on the skin, head frame, mm.
    pub centre_head_mm: [f64; 3],
    /// Outward skin normal at the centre, head frame (normalised on use).
    pub normal_head: [f64; 3],
    /// Dwell times tried, seconds, one column each.
    pub dwell_s: Vec<f64>,
    /// Needle depths tried, mm, one row each; all at or below the session depth limit.
    pub depth_mm: Vec<f64>,
    /// Centre spacing of neighbouring dots, mm: wide enough that even a blowout stays apart.
    pub spacing_mm: f64,
    /// Pigment dilution of the test dots, percent of water (the session's).
    #[serde(default = "default_dilution_pct")]
    pub dilution_pct: f64,
}

fn default_dilution_pct() -> f64 {
    50.0
}

impl TestDotGrid {
    /// The usual grid: 4 dwell times (multiples of grbl's 0.05 s dwell step) by 4 depths
    /// from 0.6 mm up to the session limit, 2 mm apart.
    pub fn default_at(
        site: ConcealedSite,
        centre_head_mm: [f64; 3],
        normal_head: [f64; 3],
        depth_limit_mm: f64,
    ) -> Self {
        let top = depth_limit_mm.clamp(0.3, 2.0);
        let bottom = (0.5 * top).min(0.6);
        let depth_mm = (0..4).map(|k| bottom + (top - bottom) * k as f64 / 3.0).collect();
        TestDotGrid {
            site,
            centre_head_mm,
            normal_head,
            dwell_s: vec![0.05, 0.1, 0.2, 0.3],
            depth_mm,
            spacing_mm: 2.0,
            dilution_pct: default_dilution_pct(),
        }
    }

    /// Checks every number; depths against the session's `depth_limit_mm`.
    pub fn validate(&self, depth_limit_mm: f64) -> Result<(), TestDotError> {
        if !finite_in(depth_limit_mm, 0.05, 5.0) {
            return Err(grid_err("depth_limit_mm", format!("is {depth_limit_mm}; give the session's limit in mm")));
        }
        if !self.centre_head_mm.iter().all(|v| v.is_finite()) {
            return Err(grid_err("centre_head_mm", "must be finite (a point on the skin, head frame, mm)"));
        }
        let n = Vector3::from(self.normal_head);
        if !(n.iter().all(|v| v.is_finite()) && n.norm() > 1e-6) {
            return Err(grid_err("normal_head", "must be a finite, non-zero direction"));
        }
        if self.dwell_s.len() < 2 || self.depth_mm.len() < 2 {
            return Err(grid_err(
                "dwell_s/depth_mm",
                format!(
                    "give at least 2 dwell times and 2 depths (have {} and {}): the fit needs both to vary",
                    self.dwell_s.len(),
                    self.depth_mm.len()
                ),
            ));
        }
        if self.dwell_s.len() * self.depth_mm.len() > 100 {
            return Err(grid_err("dwell_s/depth_mm", "more than 100 test dots; a few rows and columns suffice"));
        }
        for (i, d) in self.dwell_s.iter().enumerate() {
            if !finite_in(*d, 0.0, 5.0) {
                return Err(grid_err(format!("dwell_s[{i}]"), format!("is {d}; it must lie in [0, 5] s")));
            }
        }
        for (i, d) in self.depth_mm.iter().enumerate() {
            if !finite_in(*d, 0.05, 5.0) {
                return Err(grid_err(format!("depth_mm[{i}]"), format!("is {d}; it must lie in [0.05, 5] mm")));
            }
            if *d > depth_limit_mm {
                return Err(TestDotError::DepthOverLimit { index: i, depth_mm: *d, limit_mm: depth_limit_mm });
            }
        }
        for (name, v) in [("dwell_s", &self.dwell_s), ("depth_mm", &self.depth_mm)] {
            let mut s = v.clone();
            s.sort_by(f64::total_cmp);
            if s.windows(2).any(|w| w[1] - w[0] < 1e-6) {
                return Err(grid_err(name, "has repeated values; each row and column must differ"));
            }
        }
        if !finite_in(self.spacing_mm, 0.9, 10.0) {
            return Err(grid_err(
                "spacing_mm",
                format!(
                    "is {}; use 0.9-10 mm (DOMAIN.md minimum spacing 0.9, 2 keeps blowouts apart)",
                    self.spacing_mm
                ),
            ));
        }
        if !finite_in(self.dilution_pct, 0.0, 100.0) {
            return Err(grid_err("dilution_pct", format!("is {}; it must lie in [0, 100] %", self.dilution_pct)));
        }
        Ok(())
    }

    /// Unit tangent directions of the grid: `(column, row)`. Rows run toward the vertex
    /// (head +z projected onto the tangent plane), columns across; at the vertex itself the
    /// nose direction stands in for +z.
    pub fn tangent_axes(&self) -> Option<(Vector3<f64>, Vector3<f64>)> {
        let n = Unit::try_new(Vector3::from(self.normal_head), 1e-9)?;
        let mut up = Vector3::z() - n.into_inner() * n.dot(&Vector3::z());
        if up.norm() < 1e-3 {
            up = Vector3::x() - n.into_inner() * n.dot(&Vector3::x());
        }
        let row = up.try_normalize(1e-9)?;
        let col = row.cross(&n).try_normalize(1e-9)?;
        Some((col, row))
    }

    /// The dots, validated against the session's depth limit. Dot `row * n_dwell + col`
    /// has `dwell_s[col]` and `depth_mm[row]`; positions lie on the tangent plane at the
    /// centre (a 6 mm grid on a 90 mm head stays within 0.1 mm of the skin).
    pub fn plan(&self, depth_limit_mm: f64) -> Result<TestDotPlan, TestDotError> {
        self.validate(depth_limit_mm)?;
        let (col_dir, row_dir) =
            self.tangent_axes().ok_or_else(|| grid_err("normal_head", "must be a finite, non-zero direction"))?;
        let normal = Vector3::from(self.normal_head).normalize();
        let centre = Point3::from(self.centre_head_mm);
        let (nc, nr) = (self.dwell_s.len(), self.depth_mm.len());
        let mut dots = Vec::with_capacity(nc * nr);
        for (row, depth) in self.depth_mm.iter().enumerate() {
            for (col, dwell) in self.dwell_s.iter().enumerate() {
                let u = (col as f64 - 0.5 * (nc as f64 - 1.0)) * self.spacing_mm;
                let v = (row as f64 - 0.5 * (nr as f64 - 1.0)) * self.spacing_mm;
                let p = centre + col_dir * u + row_dir * v;
                dots.push(TestDot {
                    index: dots.len(),
                    row,
                    col,
                    dwell_s: *dwell,
                    depth_mm: *depth,
                    position_head_mm: [p.x, p.y, p.z],
                });
            }
        }
        Ok(TestDotPlan {
            site: self.site,
            centre_head_mm: self.centre_head_mm,
            normal_head: [normal.x, normal.y, normal.z],
            spacing_mm: self.spacing_mm,
            depth_limit_mm,
            dilution_pct: self.dilution_pct,
            dots,
        })
    }
}

/// One planned test dot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestDot {
    /// Position in the plan (`row * columns + col`): how errors and reports name the dot.
    pub index: usize,
    /// Row (depth index) and column (dwell index) in the grid.
    pub row: usize,
    pub col: usize,
    pub dwell_s: f64,
    pub depth_mm: f64,
    /// Where the needle enters, head frame, mm.
    pub position_head_mm: [f64; 3],
}

/// The test dots to place, in order, with the grid's geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestDotPlan {
    pub site: ConcealedSite,
    pub centre_head_mm: [f64; 3],
    /// Unit outward normal at the centre, head frame.
    pub normal_head: [f64; 3],
    pub spacing_mm: f64,
    /// The session limit every depth was validated against.
    pub depth_limit_mm: f64,
    pub dilution_pct: f64,
    pub dots: Vec<TestDot>,
}

/// This patient's dot diameter against dwell and depth, fitted to measured test dots:
/// `d = d0 + per_dwell * dwell + per_depth * depth` below the blowout onset.
///
/// Why linear: pigment is laid down while the needle reciprocates at depth, so the wound's
/// width grows in proportion to the time spent there and the depth reached, until the
/// dermis lets pigment spread sideways (a blowout), which is not part of the fit but an
/// observed ceiling on depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkinResponseFit {
    /// Diameter at zero dwell and depth (the intercept), mm.
    pub d0_mm: f64,
    pub per_dwell_mm_per_s: f64,
    pub per_depth_mm_per_mm: f64,
    /// RMS of the fit's residuals, mm.
    pub residual_rms_mm: f64,
    /// Dots the fit used (blowouts excluded).
    pub n: usize,
    /// Dwell and depth range of the dots the fit used: the choice stays inside it.
    pub dwell_range_s: [f64; 2],
    pub depth_range_mm: [f64; 2],
    /// Shallowest tested depth at which dots blew out (diameter jump or spread edge), if any.
    #[serde(default)]
    pub blowout_onset_depth_mm: Option<f64>,
    /// Deepest tested depth whose dots were all clean.
    pub max_clean_depth_mm: f64,
    /// Indices (into the measured dots) judged blowouts, sorted.
    #[serde(default)]
    pub blowout_dots: Vec<usize>,
}

impl SkinResponseFit {
    /// Predicted diameter, mm (valid below the blowout onset and inside the fitted range).
    pub fn predict_mm(&self, dwell_s: f64, depth_mm: f64) -> f64 {
        self.d0_mm + self.per_dwell_mm_per_s * dwell_s + self.per_depth_mm_per_mm * depth_mm
    }
}

/// What the session may use when choosing dwell and depth from a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParameterLimits {
    /// Intended dot diameter on the skin, mm (DOMAIN.md: 0.3-0.6 mm).
    pub target_diameter_mm: f64,
    /// Largest acceptable gap between the predicted and the target diameter, mm.
    pub tolerance_mm: f64,
    /// The session's hard depth limit, mm.
    pub depth_limit_mm: f64,
    /// Shallowest depth that holds pigment, mm: shallower, it sheds with the epidermis.
    pub min_depth_mm: f64,
    /// Dwell bounds, seconds (the fit's tested range narrows them further).
    pub min_dwell_s: f64,
    pub max_dwell_s: f64,
    /// Dwell resolution of the controller, s (grbl's DWELL_TIME_STEP, 0.05); 0 = any.
    pub dwell_step_s: f64,
    /// Distance kept above a blowout seen in the test dots, mm.
    pub blowout_margin_mm: f64,
}

impl Default for ParameterLimits {
    fn default() -> Self {
        ParameterLimits {
            target_diameter_mm: 0.45,
            tolerance_mm: 0.05,
            depth_limit_mm: 1.2,
            min_depth_mm: 0.6,
            min_dwell_s: 0.05,
            max_dwell_s: 1.0,
            dwell_step_s: 0.05,
            blowout_margin_mm: 0.1,
        }
    }
}

impl ParameterLimits {
    /// Defaults with the session's depth limit and a target diameter.
    pub fn for_session(spec: &SessionSpec, target_diameter_mm: f64) -> Self {
        ParameterLimits { target_diameter_mm, depth_limit_mm: spec.depth_limit_mm, ..ParameterLimits::default() }
    }

    pub fn validate(&self) -> Result<(), TestDotError> {
        let check = |field: &str, v: f64, lo: f64, hi: f64| {
            if finite_in(v, lo, hi) {
                Ok(())
            } else {
                Err(limits_err(field, format!("is {v}; it must lie in [{lo}, {hi}]")))
            }
        };
        check("target_diameter_mm", self.target_diameter_mm, 0.05, 3.0)?;
        check("tolerance_mm", self.tolerance_mm, 0.001, 1.0)?;
        check("depth_limit_mm", self.depth_limit_mm, 0.05, 5.0)?;
        check("min_depth_mm", self.min_depth_mm, 0.0, self.depth_limit_mm)?;
        check("min_dwell_s", self.min_dwell_s, 0.0, 5.0)?;
        check("max_dwell_s", self.max_dwell_s, self.min_dwell_s, 5.0)?;
        check("dwell_step_s", self.dwell_step_s, 0.0, 1.0)?;
        check("blowout_margin_mm", self.blowout_margin_mm, 0.0, 2.0)
    }
}

/// The session's dwell and depth, chosen from a fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChosenParameters {
    pub dwell_s: f64,
    pub depth_mm: f64,
    /// The fit's diameter there, mm.
    pub predicted_diameter_mm: f64,
    pub target_diameter_mm: f64,
    /// Deepest depth the choice was allowed (session limit, blowout, tested range), mm.
    pub depth_ceiling_mm: f64,
}

/// Chooses dwell and depth that give the target diameter: the shallowest depth that reaches
/// it with an allowed dwell (a multiple of the controller's dwell step), below the blowout
/// onset seen in the fit, within the session's depth limit and the tested range (a fit is not
/// trusted beyond the dots it was made from). Ties go to the shorter dwell.
pub fn choose_parameters(fit: &SkinResponseFit, limits: &ParameterLimits) -> Result<ChosenParameters, TestDotError> {
    limits.validate()?;
    let coeffs = [fit.d0_mm, fit.per_dwell_mm_per_s, fit.per_depth_mm_per_mm];
    if !coeffs.iter().all(|v| v.is_finite()) {
        return Err(TestDotError::Fit { reason: format!("non-finite coefficients {coeffs:?}") });
    }
    let ranges = [fit.dwell_range_s[0], fit.dwell_range_s[1], fit.depth_range_mm[0], fit.depth_range_mm[1]];
    if !(ranges.iter().all(|v| v.is_finite()) && fit.max_clean_depth_mm.is_finite()) {
        return Err(TestDotError::Fit { reason: format!("non-finite tested ranges {ranges:?}") });
    }
    if fit.per_dwell_mm_per_s < 0.0 || fit.per_depth_mm_per_mm < 0.0 {
        return Err(TestDotError::Fit {
            reason: format!(
                "diameter falls with dwell ({:.3} mm/s) or depth ({:.3} mm/mm); the dots were mismeasured or mis-associated, repeat the test",
                fit.per_dwell_mm_per_s, fit.per_depth_mm_per_mm
            ),
        });
    }
    let mut ceiling = limits.depth_limit_mm.min(fit.depth_range_mm[1]).min(fit.max_clean_depth_mm);
    let mut why = format!(
        "session limit {:.3} mm, deepest clean test dot {:.3} mm",
        limits.depth_limit_mm,
        fit.depth_range_mm[1].min(fit.max_clean_depth_mm)
    );
    if let Some(onset) = fit.blowout_onset_depth_mm {
        let below = onset - limits.blowout_margin_mm;
        if below < ceiling {
            ceiling = below;
            why = format!("blowout at {onset:.3} mm less the {:.3} mm margin", limits.blowout_margin_mm);
        }
    }
    let lowest = limits.min_depth_mm.max(fit.depth_range_mm[0]);
    if lowest.is_nan() || ceiling.is_nan() || lowest > ceiling + 1e-9 {
        return Err(TestDotError::NoDepthWindow { lowest_mm: lowest, ceiling_mm: ceiling, why });
    }
    let dwell_lo = limits.min_dwell_s.max(fit.dwell_range_s[0]);
    let dwell_hi = limits.max_dwell_s.min(fit.dwell_range_s[1]);
    if dwell_lo.is_nan() || dwell_hi.is_nan() || dwell_lo > dwell_hi + 1e-12 {
        return Err(limits_err(
            "min_dwell_s/max_dwell_s",
            format!(
                "[{:.3}, {:.3}] s does not overlap the tested dwell range [{:.3}, {:.3}] s",
                limits.min_dwell_s, limits.max_dwell_s, fit.dwell_range_s[0], fit.dwell_range_s[1]
            ),
        ));
    }
    let dwells = dwell_candidates(dwell_lo, dwell_hi, limits.dwell_step_s);
    if dwells.is_empty() {
        return Err(limits_err(
            "dwell_step_s",
            format!("no multiple of {} s lies in [{dwell_lo:.3}, {dwell_hi:.3}] s", limits.dwell_step_s),
        ));
    }
    let target = limits.target_diameter_mm;
    // For each dwell, the depth that hits the target (clamped to the window).
    let mut best: Option<(f64, f64, f64)> = None; // (dwell, depth, predicted)
    let mut exact: Option<(f64, f64, f64)> = None;
    for dwell in dwells {
        let at_lo = fit.predict_mm(dwell, lowest);
        let at_hi = fit.predict_mm(dwell, ceiling);
        let depth = if at_lo >= target || fit.per_depth_mm_per_mm <= 1e-12 {
            lowest
        } else if at_hi <= target {
            ceiling
        } else {
            (lowest + (target - at_lo) / fit.per_depth_mm_per_mm).clamp(lowest, ceiling)
        };
        let pred = fit.predict_mm(dwell, depth);
        let cand = (dwell, depth, pred);
        if (pred - target).abs() <= 1e-3 {
            // Shallowest first, then shortest dwell (dwells come in ascending order).
            if exact.is_none_or(|e| depth < e.1 - 1e-9) {
                exact = Some(cand);
            }
        }
        if best.is_none_or(|b| (pred - target).abs() < (b.2 - target).abs() - 1e-12) {
            best = Some(cand);
        }
    }
    let (dwell_s, depth_mm, predicted) = match (exact, best) {
        (Some(e), _) => e,
        (None, Some(b)) => b,
        (None, None) => {
            return Err(TestDotError::Fit { reason: "no dwell candidate".into() });
        }
    };
    if (predicted - target).abs() > limits.tolerance_mm {
        return Err(TestDotError::TargetUnreachable { target_mm: target, closest_mm: predicted, dwell_s, depth_mm });
    }
    Ok(ChosenParameters {
        dwell_s,
        depth_mm,
        predicted_diameter_mm: predicted,
        target_diameter_mm: target,
        depth_ceiling_mm: ceiling,
    })
}

/// Allowed dwell times in `[lo, hi]`, ascending: multiples of `step` (or a fine 0.005 s
/// sweep when the controller dwells exactly).
fn dwell_candidates(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let step_eff = if step > 0.0 { step } else { 0.005 };
    let first = (lo / step_eff - 1e-9).ceil().max(0.0) as u64;
    let mut out = Vec::new();
    let mut k = first;
    while out.len() < 10_000 {
        let v = k as f64 * step_eff;
        if v > hi + 1e-9 {
            break;
        }
        out.push(v);
        k += 1;
    }
    if step <= 0.0 && out.is_empty() {
        out.push(lo);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grid() -> TestDotGrid {
        TestDotGrid::default_at(ConcealedSite::Nape, [-90.0, 0.0, -30.0], [-0.95, 0.0, -0.3], 1.2)
    }

    fn fit(d0: f64, a: f64, b: f64) -> SkinResponseFit {
        SkinResponseFit {
            d0_mm: d0,
            per_dwell_mm_per_s: a,
            per_depth_mm_per_mm: b,
            residual_rms_mm: 0.01,
            n: 16,
            dwell_range_s: [0.05, 0.3],
            depth_range_mm: [0.6, 1.2],
            blowout_onset_depth_mm: None,
            max_clean_depth_mm: 1.2,
            blowout_dots: vec![],
        }
    }

    #[test]
    fn plan_lays_dots_on_the_tangent_plane_at_their_spacing() {
        let g = grid();
        let plan = g.plan(1.2).expect("valid");
        assert_eq!(plan.dots.len(), 16);
        let n = Vector3::from(plan.normal_head);
        let c = Point3::from(g.centre_head_mm);
        for d in &plan.dots {
            let p = Point3::from(d.position_head_mm);
            assert!((p - c).dot(&n).abs() < 1e-9, "on the tangent plane");
            assert_eq!(d.dwell_s, g.dwell_s[d.col]);
            assert_eq!(d.depth_mm, g.depth_mm[d.row]);
            assert!(d.depth_mm <= 1.2);
        }
        let d01 = Point3::from(plan.dots[0].position_head_mm) - Point3::from(plan.dots[1].position_head_mm);
        assert!((d01.norm() - 2.0).abs() < 1e-9);
        let d04 = Point3::from(plan.dots[0].position_head_mm) - Point3::from(plan.dots[4].position_head_mm);
        assert!((d04.norm() - 2.0).abs() < 1e-9);
        // Rows run toward the vertex.
        assert!(plan.dots[4].position_head_mm[2] > plan.dots[0].position_head_mm[2]);
    }

    #[test]
    fn depths_beyond_the_session_limit_are_refused_by_index() {
        let mut g = grid();
        g.depth_mm[2] = 1.3;
        let err = g.plan(1.2).expect_err("over the limit");
        assert_eq!(err, TestDotError::DepthOverLimit { index: 2, depth_mm: 1.3, limit_mm: 1.2 });
        assert!(err.to_string().contains("depth_mm[2]"), "{err}");
        let mut g = grid();
        g.dwell_s = vec![0.1];
        assert!(matches!(g.plan(1.2), Err(TestDotError::Grid { .. })));
        let mut g = grid();
        g.spacing_mm = f64::NAN;
        assert!(matches!(g.plan(1.2), Err(TestDotError::Grid { field, .. }) if field == "spacing_mm"));
        let mut g = grid();
        g.depth_mm[1] = g.depth_mm[0];
        assert!(matches!(g.plan(1.2), Err(TestDotError::Grid { field, .. }) if field == "depth_mm"));
    }

    #[test]
    fn choice_prefers_the_shallowest_depth_that_reaches_the_target() {
        // 0.2 + 0.5 dwell + 0.15 depth: 0.45 mm at depth 0.6 needs dwell 0.32 (> 0.3 tested),
        // so the depth rises: dwell 0.3 at depth (0.45 - 0.35) / 0.15 = 0.667 mm.
        let f = fit(0.2, 0.5, 0.15);
        let c = choose_parameters(&f, &ParameterLimits::default()).expect("reachable");
        assert!((c.dwell_s - 0.3).abs() < 1e-9, "{c:?}");
        assert!((c.depth_mm - 0.1 / 0.15).abs() < 1e-6, "{c:?}");
        assert!((c.predicted_diameter_mm - 0.45).abs() < 1e-6);
        // A smaller target is reached at the minimum depth with a shorter dwell.
        let l = ParameterLimits { target_diameter_mm: 0.34, ..ParameterLimits::default() };
        let c = choose_parameters(&f, &l).expect("reachable");
        assert!((c.depth_mm - 0.6).abs() < 1e-9 && (c.dwell_s - 0.1).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn a_blowout_lowers_the_ceiling_and_unreachable_targets_say_so() {
        let mut f = fit(0.1, 0.3, 0.2);
        f.blowout_onset_depth_mm = Some(1.0);
        f.max_clean_depth_mm = 0.8;
        let l = ParameterLimits { target_diameter_mm: 0.38, ..ParameterLimits::default() };
        let c = choose_parameters(&f, &l).expect("reachable");
        assert!(c.depth_mm <= 0.8 + 1e-9 && c.depth_ceiling_mm <= 0.8 + 1e-9, "{c:?}");
        let l = ParameterLimits { target_diameter_mm: 0.6, ..ParameterLimits::default() };
        let err = choose_parameters(&f, &l).expect_err("too big for a safe depth");
        assert!(matches!(err, TestDotError::TargetUnreachable { .. }), "{err}");
        let bad = fit(0.3, -0.1, 0.1);
        assert!(matches!(choose_parameters(&bad, &ParameterLimits::default()), Err(TestDotError::Fit { .. })));
    }

    proptest! {
        #[test]
        fn chosen_depth_never_exceeds_the_limit_nor_the_blowout(
            d0 in 0.05f64..0.4, a in 0.0f64..2.0, b in 0.0f64..0.5, target in 0.2f64..0.8,
            limit in 0.7f64..1.5, onset in proptest::option::of(0.8f64..1.4),
        ) {
            let mut f = fit(d0, a, b);
            f.blowout_onset_depth_mm = onset;
            let l = ParameterLimits { target_diameter_mm: target, depth_limit_mm: limit, ..ParameterLimits::default() };
            if let Ok(c) = choose_parameters(&f, &l) {
                prop_assert!(c.depth_mm <= limit + 1e-9);
                if let Some(o) = onset {
                    prop_assert!(c.depth_mm <= o - l.blowout_margin_mm + 1e-9);
                }
                prop_assert!((c.predicted_diameter_mm - target).abs() <= l.tolerance_mm + 1e-9);
                prop_assert!(c.dwell_s >= 0.05 - 1e-9 && c.dwell_s <= 0.3 + 1e-9);
            }
        }
    }
}

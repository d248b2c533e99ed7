//! Measurements of a finished plan, made from the plan's dots and the map, independently of
//! how the sampler placed them: what `smp eval planner` reports and the tests hold the
//! planner to.
//!
//! * `min_spacing_mm`: the smallest 3-D distance from any dot of the plan to another dot of
//!   the plan, a map follicle (natural or earlier dot) or an earlier session's entry.
//! * `density_err_by_zone`: per zone of the treatment mask (cells assigned by their centre),
//!   `achieved / target − 1` where achieved counts the plan's dots plus the map follicles in
//!   the zone's cells, and target is those follicles plus the integral of the session's
//!   density target over the zone (per cm² of skin both). The target field is the planner's
//!   (zone densities, hairline ramp, feather, share of what is missing); the count is not.
//! * `largest_gap_mm`: on a fine grid over the treated bald skin (behind the hairline), the
//!   largest distance from a grid point to its nearest dot or follicle: the radius of the
//!   largest empty disc, up to the grid step.

use std::collections::BTreeMap;

use serde::Serialize;
use smp_core::map::RegionKind;
use smp_core::plan::{SessionPlan, Zone};
use smp_core::spatial::PointGrid;

use crate::sample::PlaneBuckets;
use crate::{prepare, PlanError, PlanRequest};

/// Grid step of the largest-gap search, mm.
pub const GAP_GRID_MM: f64 = 0.5;

/// Density figures of one zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneMetrics {
    pub zone: Zone,
    /// Treated skin in the zone, cm².
    pub area_cm2: f64,
    /// Density the zone should carry after this session (follicles + session target), per cm².
    pub target_per_cm2: f64,
    /// Density it carries with the plan's dots, per cm².
    pub achieved_per_cm2: f64,
    /// `achieved / target − 1`.
    pub rel_err: f64,
    /// The plan's dots in the zone.
    pub dots: usize,
    /// Map follicles (natural and earlier dots) in the zone.
    pub fixed: usize,
}

/// What `smp eval planner` prints about a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanMetrics {
    pub dots: usize,
    /// Smallest distance from a dot to any other dot, follicle or earlier entry, mm
    /// (`inf` for a single dot on an empty map).
    pub min_spacing_mm: f64,
    /// Zone → relative density error (zones with treated area only), sorted by zone.
    pub density_err_by_zone: BTreeMap<Zone, f64>,
    pub zones: Vec<ZoneMetrics>,
    /// Radius of the largest empty disc over the treated bald skin, mm.
    pub largest_gap_mm: f64,
    /// Where it is (head frame), if the treated area has any bald skin.
    pub largest_gap_at_head: Option<[f64; 3]>,
    /// Treated (mask) area, cm² of skin, and its bald part.
    pub mask_area_cm2: f64,
    pub bald_area_cm2: f64,
    pub zone_area_cm2: BTreeMap<Zone, f64>,
}

/// Smallest 3-D distance from any of `dots` to another of `dots` or to any of `fixed`, mm
/// (pairs of fixed points are not counted: natural follicles may sit closer than the dot
/// spacing). `inf` when there is no pair.
pub fn min_spacing_mm(dots: &[[f64; 3]], fixed: &[[f64; 3]]) -> f64 {
    let mut all = PointGrid::new(1.0);
    for p in dots.iter().chain(fixed) {
        all.insert(*p);
    }
    let total = all.len();
    let mut best = f64::INFINITY;
    for (i, p) in dots.iter().enumerate() {
        let mut radius = 1.0;
        loop {
            let mut near = f64::INFINITY;
            all.for_each_within(*p, radius, |j, d| {
                if j as usize != i {
                    near = near.min(d);
                }
            });
            if near <= radius || radius > 1e4 || total < 2 {
                best = best.min(near);
                break;
            }
            radius *= 4.0;
        }
    }
    best
}

/// Measures `plan` (made from `req`, or any plan over the same map and spec).
pub fn evaluate(req: &PlanRequest<'_>, plan: &SessionPlan) -> Result<PlanMetrics, PlanError> {
    let prep = prepare(req, false)?;
    let mask = &prep.mask;
    let geo = &prep.geo;
    let n_cells = mask.mask.len();
    let cell_zone: Vec<Option<Zone>> = (0..n_cells).map(|k| mask.mask[k].then(|| prep.cell_zone(k))).collect();
    let cell_cm2 = mask.cell_mm * mask.cell_mm / 100.0;

    let mut area: BTreeMap<Zone, f64> = BTreeMap::new();
    for (z, af) in cell_zone.iter().zip(&mask.area_factor) {
        if let Some(z) = z {
            *area.entry(*z).or_insert(0.0) += cell_cm2 * af;
        }
    }
    let zone_of = |p_head: [f64; 3]| {
        let q = geo.to_patch(p_head);
        mask.cell_index(q.x, q.y).and_then(|k| cell_zone[k])
    };
    let mut dots_in: BTreeMap<Zone, usize> = BTreeMap::new();
    for d in &plan.dots {
        if let Some(z) = zone_of(d.position()) {
            *dots_in.entry(z).or_insert(0) += 1;
        }
    }
    let mut fixed_in: BTreeMap<Zone, usize> = BTreeMap::new();
    for f in &req.map.follicles {
        if let Some(z) = zone_of(f.position()) {
            *fixed_in.entry(z).or_insert(0) += 1;
        }
    }
    let inp = prep.sampler_input(&req.cfg, req.spec);
    let mut zones = Vec::new();
    let mut err = BTreeMap::new();
    for (&z, &a) in &area {
        if a <= 0.0 {
            continue;
        }
        let expected = crate::sample::expected_count_where(&inp, 3, |k| cell_zone[k] == Some(z));
        let fixed = fixed_in.get(&z).copied().unwrap_or(0);
        let dots = dots_in.get(&z).copied().unwrap_or(0);
        let target = fixed as f64 + expected;
        let achieved = (fixed + dots) as f64;
        let rel_err = if target > 0.0 { achieved / target - 1.0 } else { 0.0 };
        err.insert(z, rel_err);
        zones.push(ZoneMetrics {
            zone: z,
            area_cm2: a,
            target_per_cm2: target / a,
            achieved_per_cm2: achieved / a,
            rel_err,
            dots,
            fixed,
        });
    }

    // Fixed set for spacing and gaps: map follicles and earlier entries.
    let dots_head: Vec<[f64; 3]> = plan.dots.iter().map(|d| d.position()).collect();
    let min_spacing = min_spacing_mm(&dots_head, &prep.obstacles_head);

    // Largest gap over treated bald skin.
    let size = [mask.nx as f64 * mask.cell_mm, mask.ny as f64 * mask.cell_mm];
    let mut buckets = PlaneBuckets::new(mask.origin, size, 1.0);
    let mut pts: Vec<[f64; 3]> = Vec::with_capacity(dots_head.len() + prep.obstacles_head.len());
    for p in dots_head.iter().chain(&prep.obstacles_head) {
        let q = geo.to_patch(*p);
        buckets.insert(q.x, q.y, pts.len() as u32);
        pts.push([q.x, q.y, q.z]);
    }
    let hairline = prep.density.hairline.as_ref().map(|h| &h.line);
    let sub = (mask.cell_mm / GAP_GRID_MM).ceil().max(1.0) as usize;
    let step = mask.cell_mm / sub as f64;
    let mut gap = 0.0f64;
    let mut gap_at = None;
    let mut bald_cm2 = 0.0;
    for k in 0..n_cells {
        let (i, j) = (k % mask.nx, k / mask.nx);
        if !mask.mask[k] || req.map.regions.code_at_cell(i, j) != RegionKind::Bald.code() {
            continue;
        }
        bald_cm2 += cell_cm2 * mask.area_factor[k];
        for a in 0..sub {
            for b in 0..sub {
                let x = mask.origin[0] + i as f64 * mask.cell_mm + (a as f64 + 0.5) * step;
                let y = mask.origin[1] + j as f64 * mask.cell_mm + (b as f64 + 0.5) * step;
                if !mask.allows(geo, x, y) {
                    continue;
                }
                let (z, _, _) = geo.height_and_gradient(x, y);
                if let Some(h) = hairline {
                    let (p, _) = geo.sample_head(x, y);
                    if h.in_front([p.x, p.y, p.z]) {
                        continue;
                    }
                }
                let d = nearest_3d(&buckets, &pts, [x, y, z]);
                if d > gap {
                    gap = d;
                    let (p, _) = geo.sample_head(x, y);
                    gap_at = Some([p.x, p.y, p.z]);
                }
            }
        }
    }

    Ok(PlanMetrics {
        dots: plan.dots.len(),
        min_spacing_mm: min_spacing,
        density_err_by_zone: err,
        zones,
        largest_gap_mm: gap,
        largest_gap_at_head: gap_at,
        mask_area_cm2: mask.stats.mask_cm2,
        bald_area_cm2: bald_cm2,
        zone_area_cm2: area,
    })
}

/// 3-D distance from a patch-frame point to the nearest of `pts` (bucketed by (x, y)).
fn nearest_3d(buckets: &PlaneBuckets, pts: &[[f64; 3]], p: [f64; 3]) -> f64 {
    if pts.is_empty() {
        return f64::INFINITY;
    }
    let mut reach = 2.0;
    loop {
        let mut best = f64::INFINITY;
        buckets.any_near(p[0], p[1], reach, |i| {
            let q = pts[i as usize];
            best = best.min((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2) + (q[2] - p[2]).powi(2));
            false
        });
        let best = best.sqrt();
        // Every point within 3-D distance `reach` is within parameter distance `reach`.
        if best <= reach || reach > 1e4 {
            return best;
        }
        reach *= 2.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_spacing_matches_brute_force_and_ignores_fixed_pairs() {
        let dots: Vec<[f64; 3]> = (0..60).map(|i| [(i % 8) as f64 * 1.3, (i / 8) as f64 * 1.1, 0.0]).collect();
        let fixed = vec![[0.3, 0.2, 0.1], [0.35, 0.2, 0.1], [50.0, 50.0, 0.0]];
        let mut brute = f64::INFINITY;
        for (i, a) in dots.iter().enumerate() {
            for (j, b) in dots.iter().enumerate() {
                if i != j {
                    brute = brute.min(crate::geometry::dist3(*a, *b));
                }
            }
            for b in &fixed {
                brute = brute.min(crate::geometry::dist3(*a, *b));
            }
        }
        assert!((min_spacing_mm(&dots, &fixed) - brute).abs() < 1e-12);
        // Far apart: the search widens.
        assert!((min_spacing_mm(&[[0.0; 3]], &[[0.0, 30.0, 40.0]]) - 50.0).abs() < 1e-12);
        assert_eq!(min_spacing_mm(&[[0.0; 3]], &[]), f64::INFINITY);
    }

    #[test]
    fn nearest_search_widens_until_exact() {
        let pts = vec![[10.0, 0.0, 0.0], [0.0, 7.0, 3.0]];
        let mut b = PlaneBuckets::new([-20.0, -20.0], [40.0, 40.0], 1.0);
        for (i, p) in pts.iter().enumerate() {
            b.insert(p[0], p[1], i as u32);
        }
        let d = nearest_3d(&b, &pts, [0.0, 0.0, 0.0]);
        assert!((d - 58f64.sqrt()).abs() < 1e-12, "{d}");
    }
}

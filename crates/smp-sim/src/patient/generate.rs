//! [`SyntheticPatient`]: follicles generated from the spec over the region model, and the
//! ground-truth accessors that rendering and scoring read (the earlier SMP dots are in
//! `prior_dots`).

use std::collections::BTreeMap;
use std::f64::consts::PI;

use nalgebra::{Isometry3, Point3, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use smp_core::geometry::Ellipsoid;
use smp_core::map::RegionKind;
use smp_core::spatial::PointGrid;

use super::regions::{region_areas_cm2, RegionModel, SkinTexture, SurfaceSample};
use super::sampling::{cell_area, param_point, sample_in_cell, stochastic_round, MAX_ATTEMPTS, SAMPLE_CELL_DEG};
use super::spec::PatientSpec;
use crate::fiducial::TruthFiducial;
use crate::skin::PriorDot;

/// One natural follicle of the ground truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthFollicle {
    pub position_head_mm: [f64; 3],
    /// Outward unit normal of the skin there.
    pub normal_head: [f64; 3],
    pub diameter_mm: f64,
    /// 0 = skin colour, 1 = the patient's follicle colour.
    pub darkness: f64,
}

/// A generated patient: head, regions, skin and ground-truth follicles.
///
/// Ground truth (follicles, regions) is for rendering and evaluation only; the code under
/// test must learn the scalp from rendered images.
#[derive(Debug, Clone)]
pub struct SyntheticPatient {
    pub(super) spec: PatientSpec,
    pub(super) ellipsoid: Ellipsoid,
    pub(super) regions: RegionModel,
    pub(super) texture: SkinTexture,
    pub(super) follicles: Vec<TruthFollicle>,
    pub(super) positions: Vec<[f64; 3]>,
    /// Earlier SMP dots on the skin (generated from the spec, then any attached), with their
    /// positions and outward normals in parallel vectors for the renderer and for truth.
    pub(super) prior_dots: Vec<PriorDot>,
    pub(super) prior_positions: Vec<[f64; 3]>,
    pub(super) prior_normals: Vec<[f64; 3]>,
    /// Head-band markers (ground truth; not rendered yet).
    pub(super) fiducials: Vec<TruthFiducial>,
}

impl SyntheticPatient {
    /// Builds the patient deterministically from `spec.seed`.
    ///
    /// Follicles are placed cell by cell on a 1° parametric grid over the hair-bearing scalp:
    /// each cell gets `max density x area` slots (stochastically rounded), each slot keeps a
    /// follicle with probability `local density / max density`, and a kept slot retries its
    /// position until it is at least `min_spacing_mm` from every earlier follicle. The result
    /// is Poisson-disk-like and follows the region densities, including their soft edges.
    /// `spec` is expected to be validated (as `from_toml_str` does); an unvalidated spec with
    /// nonsense numbers gives a patient with fewer or no follicles, never a panic.
    pub fn generate(spec: &PatientSpec) -> Self {
        let ellipsoid = Ellipsoid { semi_axes_mm: spec.head.semi_axes_mm };
        let mut region_rng = ChaCha8Rng::seed_from_u64(spec.seed);
        region_rng.set_stream(1);
        let regions = RegionModel::new(spec, &ellipsoid, &mut region_rng);
        let mut texture_rng = ChaCha8Rng::seed_from_u64(spec.seed);
        texture_rng.set_stream(2);
        let texture = SkinTexture::new(spec.tone.mottling, &mut texture_rng);
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(3);

        let f = &spec.follicles;
        let semi = spec.head.semi_axes_mm;
        let d_max = (f.hair_per_cm2.max(f.thinning_per_cm2).max(f.bald_per_cm2) / 100.0).max(0.0);
        let spacing = if f.min_spacing_mm.is_finite() && f.min_spacing_mm > 0.0 { f.min_spacing_mm } else { 0.5 };
        let mut grid = PointGrid::new(spacing);
        let mut follicles = Vec::new();

        // Cells further than this polar angle (plus margin) from the vertex hold no scalp.
        let max_lower =
            spec.scalp.lower_edge_deg.iter().map(|r| r[1]).fold(0.0, f64::max) + spec.scalp.edge_irregularity_deg + 5.0;
        let step = SAMPLE_CELL_DEG.to_radians();
        let n_theta = (180.0 / SAMPLE_CELL_DEG).round() as usize;
        let n_phi = (360.0 / SAMPLE_CELL_DEG).round() as usize;
        if d_max > 0.0 && d_max.is_finite() {
            for i in 0..n_theta {
                let (t0, t1) = (i as f64 * step, (i + 1) as f64 * step);
                for j in 0..n_phi {
                    let (p0, p1) = (-PI + j as f64 * step, -PI + (j + 1) as f64 * step);
                    let (tc, pc) = (0.5 * (t0 + t1), 0.5 * (p0 + p1));
                    let centre = param_point(semi, tc, pc);
                    let polar = (centre.x.hypot(centre.y)).atan2(centre.z).to_degrees();
                    if polar > max_lower {
                        continue;
                    }
                    let (area, elem_max) = cell_area(semi, t0, t1, p0, p1);
                    let slots = stochastic_round(&mut rng, d_max * area);
                    for _ in 0..slots {
                        for _ in 0..MAX_ATTEMPTS {
                            let (t, p) = sample_in_cell(&mut rng, semi, t0, t1, p0, p1, elem_max);
                            let q = param_point(semi, t, p);
                            let s = regions.sample(&q);
                            if rng.random::<f64>() * d_max >= s.density_per_mm2 {
                                break; // this slot is empty at the local density
                            }
                            let pos = [q.x, q.y, q.z];
                            if grid.any_within(pos, spacing) {
                                continue; // too close: try another spot in the cell
                            }
                            grid.insert(pos);
                            let n = ellipsoid.normal(&q);
                            let dn: f64 = rng.sample(StandardNormal);
                            let kn: f64 = rng.sample(StandardNormal);
                            let diameter_mm = (f.diameter_mm + f.diameter_sd_mm * dn)
                                .clamp(0.5 * f.diameter_mm, (1.5 * f.diameter_mm).min(spacing));
                            let darkness = (f.darkness + f.darkness_sd * kn).clamp(0.05, 1.0);
                            follicles.push(TruthFollicle {
                                position_head_mm: pos,
                                normal_head: [n.x, n.y, n.z],
                                diameter_mm,
                                darkness,
                            });
                            break;
                        }
                    }
                }
            }
        }
        let positions = follicles.iter().map(|f| f.position_head_mm).collect();
        let fiducials = spec.fiducials.iter().filter_map(|f| f.truth(&ellipsoid)).collect();
        let mut patient = SyntheticPatient {
            spec: spec.clone(),
            ellipsoid,
            regions,
            texture,
            follicles,
            positions,
            prior_dots: Vec::new(),
            prior_positions: Vec::new(),
            prior_normals: Vec::new(),
            fiducials,
        };
        let dots = patient.generate_prior_dots();
        // Generated dots lie on the surface by construction, so attaching cannot fail; a
        // failure would mean a bug, and the patient then simply has no prior dots.
        let _ = patient.attach_prior_dots(dots);
        patient
    }

    /// Ground-truth head-band markers (pose and corners, head frame), in spec order. A
    /// validated spec gives every marker; the simulator does not render them yet.
    pub fn truth_fiducials(&self) -> &[TruthFiducial] {
        &self.fiducials
    }

    /// Ground-truth marker corners `(id, [top-left, top-right, bottom-right, bottom-left])`,
    /// head frame, mm, in ArUco corner order, sorted by id.
    pub fn truth_fiducial_corners_head(&self) -> Vec<(u32, [[f64; 3]; 4])> {
        let mut out: Vec<_> = self.fiducials.iter().map(|f| (f.id, f.corners_head_mm)).collect();
        out.sort_by_key(|c| c.0);
        out
    }

    pub fn spec(&self) -> &PatientSpec {
        &self.spec
    }

    /// The head surface in the head frame.
    pub fn ellipsoid(&self) -> &Ellipsoid {
        &self.ellipsoid
    }

    /// Ground-truth natural follicles (positions, head frame), for rendering and evaluation.
    pub fn truth_follicles_head(&self) -> &[[f64; 3]] {
        &self.positions
    }

    /// Ground-truth follicles with normal, diameter and darkness.
    pub fn truth_follicles(&self) -> &[TruthFollicle] {
        &self.follicles
    }

    /// Region of the scalp at a point (projected radially onto the head surface first).
    /// Face, ears and neck are `Outside`: skin that is not scalp.
    pub fn region_at_head(&self, p_head: &Point3<f64>) -> RegionKind {
        match self.surface_point_toward(p_head) {
            Some(q) => self.regions.sample(&q).region,
            None => RegionKind::Outside,
        }
    }

    /// Expected follicle density at a point (projected radially onto the surface), per cm².
    pub fn density_per_cm2_at_head(&self, p_head: &Point3<f64>) -> f64 {
        self.surface_point_toward(p_head).map_or(0.0, |q| self.regions.sample(&q).density_per_mm2 * 100.0)
    }

    fn surface_point_toward(&self, p_head: &Point3<f64>) -> Option<Point3<f64>> {
        let n = p_head.coords.norm();
        if !n.is_finite() || n < 1e-9 {
            return None;
        }
        Some(self.ellipsoid.point_in_direction(&(p_head.coords / n)))
    }

    /// Height (base z) of the skin under the vertical line (x, y) in the base frame, if it
    /// hits the head: what a vertical needle descending there would touch first.
    pub fn surface_z_base(&self, base_from_head: &Isometry3<f64>, x_mm: f64, y_mm: f64) -> Option<f64> {
        let reach = self.ellipsoid.semi_axes_mm.iter().fold(0.0, |m: f64, v| m.max(*v));
        let top = base_from_head.translation.vector.z + 2.0 * reach + 10.0;
        let head_from_base = base_from_head.inverse();
        let origin = head_from_base * Point3::new(x_mm, y_mm, top);
        let dir = head_from_base * -Vector3::z();
        let t = self.ellipsoid.intersect_ray(&origin, &dir)?;
        Some(top - t)
    }

    /// Area (cm²) of each region over the part of the scalp whose outward normal is within
    /// `max_tilt_deg` of `up_head` (e.g. [`up_direction_head`](super::up_direction_head)): what a vertical needle can
    /// treat. Integrated on a 0.5° grid; for reports and tests.
    pub fn region_areas_cm2(&self, up_head: &Vector3<f64>, max_tilt_deg: f64) -> BTreeMap<RegionKind, f64> {
        region_areas_cm2(&self.regions, &self.ellipsoid, up_head, max_tilt_deg)
    }

    /// Skin sample for the renderer.
    pub(crate) fn sample_surface(&self, p_head: &Point3<f64>) -> SurfaceSample {
        self.regions.sample(p_head)
    }

    /// Mottling brightness factor for the renderer.
    pub(crate) fn mottle(&self, p_head: &Point3<f64>) -> f64 {
        self.texture.factor(p_head)
    }

    /// Hair density at which `tone.hair_shadow` applies in full, per mm².
    pub(crate) fn full_density_per_mm2(&self) -> f64 {
        self.regions.hair_per_mm2
    }
}

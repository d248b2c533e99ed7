//! Earlier sessions' SMP dots on a [`SyntheticPatient`]: those the spec generates (placed
//! over regions at a density, keeping their spacing, deposited and healed through the skin
//! model) or lists, those attached later (a simulated session's deposit), their healing
//! between sessions, and their ground truth.

use std::f64::consts::PI;

use nalgebra::{Point3, Vector3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smp_core::spatial::PointGrid;
use smp_core::SpecError;

use super::generate::SyntheticPatient;
use super::regions::SurfaceFrame;
use super::sampling::{cell_area, param_point, sample_in_cell, stochastic_round, MAX_ATTEMPTS, SAMPLE_CELL_DEG};
use super::spec::{PriorSessionSpec, PRIOR_DOTS_WHAT};
use crate::skin::{deposit, heal, Deposit, DepositInput, HealModel, PriorDot};

impl SyntheticPatient {
    /// The spec's earlier-session dots: each `prior_sessions` entry placed over its regions
    /// (Poisson-disk-like at its density, `min_spacing_mm` from follicles and from every dot
    /// placed before), deposited by the skin model at its dwell, depth and dilution and healed
    /// for its weeks; then the explicit `prior_dots`. Seeded from `spec.seed` (stream 4).
    pub(super) fn generate_prior_dots(&self) -> Vec<PriorDot> {
        let spec = &self.spec;
        let mut out = Vec::new();
        if spec.prior_sessions.is_empty() && spec.prior_dots.is_empty() {
            return out;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(4);
        let deposit_seed = spec.seed ^ 0xd0e5_1b5e_0000_0001;
        let heal_seed = spec.seed ^ 0x4ea1_0000_0000_0002;
        let follicle_grid = PointGrid::from_points(1.0, self.positions.iter().copied());
        let mut dot_grid = PointGrid::new(1.0);
        for ps in &spec.prior_sessions {
            let placed = self.place_prior_session(ps, &mut rng, &follicle_grid, &mut dot_grid);
            let inputs: Vec<DepositInput> = placed
                .iter()
                .map(|p| DepositInput {
                    entry: smp_core::NeedleEntry {
                        // No arm placed these: the base frame is unknown.
                        base_mm: [f64::NAN; 3],
                        head_mm: *p,
                        depth_mm: ps.depth_mm,
                        time_s: 0.0,
                    },
                    dwell_s: ps.dwell_s,
                    session: ps.session,
                    dilution_pct: ps.dilution_pct,
                })
                .collect();
            let fresh = deposit(&inputs, &spec.skin_response, deposit_seed).dots;
            out.extend(heal(&fresh, ps.weeks_healed, &spec.healing, heal_seed).dots);
        }
        // Listed dots are kept whatever the loss rate: the file says they are there.
        let keep_all = HealModel { lost_fraction: 0.0, ..spec.healing.clone() };
        for pd in &spec.prior_dots {
            let Some((q, _)) = self.project_to_surface(pd.position_head_mm) else { continue };
            let input = DepositInput {
                entry: smp_core::NeedleEntry {
                    base_mm: [f64::NAN; 3],
                    head_mm: [q.x, q.y, q.z],
                    depth_mm: pd.depth_mm,
                    time_s: 0.0,
                },
                dwell_s: pd.dwell_s,
                session: pd.session,
                dilution_pct: pd.dilution_pct,
            };
            let fresh = deposit(&[input], &spec.skin_response, deposit_seed).dots;
            for mut d in heal(&fresh, pd.weeks_healed, &keep_all, heal_seed).dots {
                if let Some(k) = pd.darkness {
                    let kept = if d.fresh_darkness > 0.0 { d.darkness / d.fresh_darkness } else { 1.0 };
                    d.darkness = k;
                    d.fresh_darkness = if kept > 0.0 { (k / kept).min(1.0) } else { k };
                }
                if let Some(dia) = pd.diameter_mm {
                    let grown = if d.fresh_diameter_mm > 0.0 { d.diameter_mm / d.fresh_diameter_mm } else { 1.0 };
                    d.diameter_mm = dia;
                    d.fresh_diameter_mm = dia / grown.max(1e-6);
                }
                out.push(d);
            }
        }
        out
    }

    /// Positions of one generated prior session (see [`Self::generate_prior_dots`]).
    fn place_prior_session(
        &self,
        ps: &PriorSessionSpec,
        rng: &mut ChaCha8Rng,
        follicles: &PointGrid,
        dots: &mut PointGrid,
    ) -> Vec<[f64; 3]> {
        let mut out = Vec::new();
        let density_per_mm2 = ps.density_per_cm2 / 100.0;
        let spacing = ps.min_spacing_mm;
        if !(density_per_mm2 > 0.0 && density_per_mm2.is_finite() && spacing > 0.0 && spacing.is_finite()) {
            return out;
        }
        let ell = &self.ellipsoid;
        let semi = ell.semi_axes_mm;
        let disc = ps
            .within
            .as_ref()
            .map(|d| (SurfaceFrame::new(ell, d.centre_polar_deg, d.centre_azimuth_deg, 0.0), d.radius_mm));
        let in_disc = |q: &Point3<f64>| {
            disc.as_ref().is_none_or(|(frame, r)| {
                // Only the near side: the tangent-plane coordinates fold over behind the head.
                let (u, v) = frame.local_mm(q);
                (q - frame.centre).dot(&frame.normal) > -*r && u.hypot(v) <= *r
            })
        };
        let step = SAMPLE_CELL_DEG.to_radians();
        let n_theta = (180.0 / SAMPLE_CELL_DEG).round() as usize;
        let n_phi = (360.0 / SAMPLE_CELL_DEG).round() as usize;
        for i in 0..n_theta {
            let (t0, t1) = (i as f64 * step, (i + 1) as f64 * step);
            for j in 0..n_phi {
                let (p0, p1) = (-PI + j as f64 * step, -PI + (j + 1) as f64 * step);
                let (tc, pc) = (0.5 * (t0 + t1), 0.5 * (p0 + p1));
                let centre = param_point(semi, tc, pc);
                if let Some((frame, r)) = &disc {
                    // A cell is at most ~3 mm across on a head: skip cells clearly outside.
                    if (centre - frame.centre).norm() > r + 4.0 {
                        continue;
                    }
                }
                let (area, elem_max) = cell_area(semi, t0, t1, p0, p1);
                let slots = stochastic_round(rng, density_per_mm2 * area);
                for _ in 0..slots {
                    for _ in 0..MAX_ATTEMPTS {
                        let (t, p) = sample_in_cell(rng, semi, t0, t1, p0, p1, elem_max);
                        let q = param_point(semi, t, p);
                        if !in_disc(&q) || !ps.regions.contains(&self.regions.sample(&q).region) {
                            break; // this slot falls outside the treated area
                        }
                        let pos = [q.x, q.y, q.z];
                        if follicles.any_within(pos, spacing) || dots.any_within(pos, spacing) {
                            continue;
                        }
                        dots.insert(pos);
                        out.push(pos);
                        break;
                    }
                }
            }
        }
        out
    }

    /// Radial projection onto the head surface with the outward normal there; `None` for
    /// the origin or a non-finite point.
    fn project_to_surface(&self, p: [f64; 3]) -> Option<(Point3<f64>, Vector3<f64>)> {
        let v = Vector3::from(p);
        let n = v.norm();
        if !(n.is_finite() && n > 1e-9) {
            return None;
        }
        let q = self.ellipsoid.point_in_direction(&(v / n));
        Some((q, self.ellipsoid.normal(&q)))
    }

    pub(super) fn attach_prior_dots(&mut self, dots: Vec<PriorDot>) -> Result<(), SpecError> {
        let mut placed = Vec::with_capacity(dots.len());
        for (i, mut d) in dots.into_iter().enumerate() {
            let Some((q, n)) = self.project_to_surface(d.position_head_mm) else {
                return Err(SpecError::invalid(
                    PRIOR_DOTS_WHAT,
                    format!("[{i}].position_head_mm"),
                    format!("is {:?}; it must be a finite point away from the head centre", d.position_head_mm),
                ));
            };
            let sane = [d.diameter_mm, d.darkness, d.edge_softness_mm].iter().all(|v| v.is_finite() && *v >= 0.0);
            if !sane {
                return Err(SpecError::invalid(
                    PRIOR_DOTS_WHAT,
                    format!("[{i}]"),
                    "has a non-finite or negative diameter_mm, darkness or edge_softness_mm",
                ));
            }
            d.position_head_mm = [q.x, q.y, q.z];
            placed.push((d, [n.x, n.y, n.z]));
        }
        for (d, n) in placed {
            self.prior_positions.push(d.position_head_mm);
            self.prior_normals.push(n);
            self.prior_dots.push(d);
        }
        Ok(())
    }

    /// The patient with more earlier-session dots on the skin, e.g. the healed dots of a
    /// simulated session (`deposit` then `heal`): appended to those the spec generated.
    /// Each position is projected radially onto the head surface. A dot with a non-finite
    /// position or look is an error naming its index, and then none of `dots` is attached.
    pub fn with_prior_dots(mut self, dots: Vec<PriorDot>) -> Result<Self, SpecError> {
        self.attach_prior_dots(dots)?;
        Ok(self)
    }

    /// A copy of the patient with a session's needle entries deposited as fresh (unhealed)
    /// dots through its own skin response ([`Self::deposit`]), plus the deposit itself (its
    /// `dots` are the ones attached, in entry order). Why fresh: a dot left uncertain by a
    /// crash or a controller reset is checked by the camera minutes later, not weeks.
    /// Entries with a non-finite position deposit nothing (counted in `Deposit::skipped`).
    pub fn with_session_deposits(&self, inputs: &[DepositInput]) -> Result<(Self, Deposit), SpecError> {
        let deposit = self.deposit(inputs);
        let with = self.clone().with_prior_dots(deposit.dots.clone())?;
        Ok((with, deposit))
    }

    /// What the needle entries of a session leave in this patient's skin (the spec's
    /// `skin_response`, seeded from the patient's seed). Attach the result, healed, with
    /// [`Self::with_prior_dots`].
    pub fn deposit(&self, inputs: &[DepositInput]) -> Deposit {
        deposit(inputs, &self.spec.skin_response, self.spec.seed ^ 0xd0e5_1b5e_0000_0001)
    }

    /// Lets every prior dot heal for `weeks` more weeks (the spec's `healing` model, seeded
    /// from the patient's seed): what `smp sim heal --weeks N` does between sessions.
    /// Returns how many dots healing took.
    pub fn heal_prior_dots(&mut self, weeks: f64) -> usize {
        let healed = heal(&self.prior_dots, weeks, &self.spec.healing, self.spec.seed ^ 0x4ea1_0000_0000_0002);
        let lost: std::collections::BTreeSet<usize> = healed.lost.iter().copied().collect();
        let keep = |v: &Vec<[f64; 3]>| {
            v.iter().enumerate().filter(|(i, _)| !lost.contains(i)).map(|(_, p)| *p).collect::<Vec<_>>()
        };
        self.prior_positions = keep(&self.prior_positions);
        self.prior_normals = keep(&self.prior_normals);
        self.prior_dots = healed.dots;
        lost.len()
    }

    /// Ground-truth earlier SMP dots (position, session, healed look), for rendering and
    /// evaluation only.
    pub fn truth_prior_dots(&self) -> &[PriorDot] {
        &self.prior_dots
    }

    /// Ground-truth earlier SMP dot positions, head frame.
    pub fn truth_prior_dots_head(&self) -> &[[f64; 3]] {
        &self.prior_positions
    }

    /// Outward normals of the prior dots, parallel to [`Self::truth_prior_dots`].
    pub fn prior_dot_normals(&self) -> &[[f64; 3]] {
        &self.prior_normals
    }
}

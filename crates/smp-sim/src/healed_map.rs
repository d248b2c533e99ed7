//! What a new scan of the healed scalp would show, made straight from a map and the plans
//! tattooed on it, without a patient or vision: each planned dot becomes an `SmpDot`
//! follicle of the map unless it faded beyond detection. It models the world (the skin's
//! healing between sessions), so it lives in the simulator; `smp eval planner` and the
//! planner's layered-session tests chain sessions 1 → 2 → 3 with it. (The per-dot healing
//! of a simulated patient's skin is [`crate::skin::heal`]; this is its map-level shortcut.)

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smp_core::map::{Follicle, FollicleKind, ScalpMap};
use smp_core::plan::SessionPlan;

/// How dots look on the next scan, after healing (DOMAIN: the first layer "faded quite a
/// bit", fastest in the first two weeks).
#[derive(Debug, Clone, PartialEq)]
pub struct HealingModel {
    /// Share of dots faded beyond detection: gone from the new map (their entries remain in
    /// the plan, for the hard spacing).
    pub lost_fraction: f64,
    /// Darkness of a healed dot at 0 % dilution (0 = skin, 1 = black), and its spread; more
    /// dilution reads lighter (`× (1 − dilution/200)`).
    pub darkness: f64,
    pub darkness_sd: f64,
    /// Healed dot diameter, mm, and its spread.
    pub diameter_mm: f64,
    pub diameter_sd_mm: f64,
    /// Where the scan places a dot vs. where it was tattooed (detection error), mm σ.
    pub position_sd_mm: f64,
}

impl Default for HealingModel {
    fn default() -> Self {
        HealingModel {
            lost_fraction: 0.08,
            darkness: 0.65,
            darkness_sd: 0.08,
            diameter_mm: 0.45,
            diameter_sd_mm: 0.04,
            position_sd_mm: 0.0,
        }
    }
}

/// A standard normal draw (Box-Muller).
fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = rng.random::<f64>().max(1e-300);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The map a new scan of the healed scalp would give: `map` with every dot of `plans` as an
/// `SmpDot` follicle, except those faded beyond detection, per the seeded healing model.
/// Natural follicles and regions are unchanged. Pure and deterministic: tests chain
/// sessions 1 → 2 → 3 with it instead of running vision.
pub fn heal_map(map: &ScalpMap, plans: &[&SessionPlan], model: &HealingModel, seed: u64) -> ScalpMap {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(3);
    let mut out = map.clone();
    for plan in plans {
        for d in &plan.dots {
            if rng.random::<f64>() < model.lost_fraction {
                continue;
            }
            let mut p = d.position();
            if model.position_sd_mm > 0.0 {
                for v in &mut p {
                    *v += model.position_sd_mm * gauss(&mut rng);
                }
            }
            let shade = 1.0 - d.dilution_pct.clamp(0.0, 100.0) / 200.0;
            out.follicles.push(Follicle {
                x_mm: p[0],
                y_mm: p[1],
                z_mm: p[2],
                normal: d.normal,
                diameter_mm: (model.diameter_mm + model.diameter_sd_mm * gauss(&mut rng)).clamp(0.1, 2.0),
                darkness: (model.darkness * shade + model.darkness_sd * gauss(&mut rng)).clamp(0.05, 1.0),
                kind: FollicleKind::SmpDot,
            });
        }
    }
    out
}

//! Skin response and healing: what a needle entry leaves in the skin, and what is left of it
//! weeks later when the next session's scan looks at the scalp.
//!
//! Why a model at all: a follow-up session is planned from a scan of the *healed* scalp, on
//! which vision must tell earlier SMP dots from natural follicles, and the test-dot fit of
//! issue 4 estimates each patient's dot diameter against dwell and depth. Both need dots whose
//! size, darkness, colour and edge follow what the needle did and how long the skin has had to
//! heal, with per-patient parameters the tests know as truth.
//!
//! The model, all of it pure and seeded:
//! - **Deposit** ([`deposit`]): a powered needle entry leaves a round dot of diameter
//!   `d = base + k_dwell * dwell + k_depth * depth` (clamped), plus a blowout spread when the
//!   tip went deeper than the patient's blowout depth (pigment spreads sideways in the dermis:
//!   a larger, softer, fainter dot). Darkness follows the pigment dilution (session 1 is the
//!   lightest). Two dots closer than the sum of their radii touch: a merged pair, reported.
//! - **Healing** ([`heal`]): darkness fades as `1 - fast(1 - e^(-w/τ_fast)) - slow(1 - e^(-w/τ_slow))`
//!   (fast in the first two weeks, slow after), less for later sessions (the skin already
//!   holds pigment); each dot varies, a seeded fraction fades strongly and a few are lost.
//!   Healed dots spread a little, their edge softens and their colour moves from the fresh
//!   ink toward the blue-grey of pigment seen through new epidermis.
//!
//! Per-dot randomness is drawn from a hash of the seed, the dot's position and session, not
//! from a shared stream: healing a dot in two steps gives exactly what one step gives, and a
//! dot's fate does not depend on which other dots are in the list.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use smp_core::entry::EntryTiming;
use smp_core::error::check_range;
use smp_core::spatial::PointGrid;
use smp_core::{NeedleEntry, SpecError};

/// How one patient's skin takes pigment (patient file `[skin_response]`; every field has a
/// default, so the section may be left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SkinResponse {
    /// Diameter of a dot from a touch of the needle (no dwell, no depth), mm.
    pub base_diameter_mm: f64,
    /// Diameter gained per second of dwell at depth, mm/s.
    pub diameter_per_dwell_mm_per_s: f64,
    /// Diameter gained per millimetre of depth, mm/mm.
    pub diameter_per_depth_mm_per_mm: f64,
    /// Per-dot variation of the diameter (standard deviation), mm.
    pub diameter_sd_mm: f64,
    /// The diameter is clamped to `[min_diameter_mm, max_diameter_mm]` before any blowout.
    pub min_diameter_mm: f64,
    pub max_diameter_mm: f64,
    /// Depth beyond which pigment spreads sideways (a blowout), mm. Thin or scarred skin
    /// blows out shallower.
    pub blowout_depth_mm: f64,
    /// Extra diameter per millimetre beyond the blowout depth, mm/mm.
    pub blowout_spread_mm_per_mm: f64,
    /// Darkness (0 = skin, 1 = the ink colour) of an undiluted fresh dot.
    pub full_darkness: f64,
    /// Darkness lost per unit of dilution: darkness = full * (1 - this * dilution_pct / 100).
    pub dilution_lightening: f64,
    /// Per-dot variation of the darkness (standard deviation).
    pub darkness_sd: f64,
    /// Edge blur (Gaussian sigma) of a fresh dot, mm.
    pub edge_softness_mm: f64,
    /// Colour (sRGB) of fresh ink in the wound, at darkness 1.
    pub ink_srgb: [u8; 3],
}

impl Default for SkinResponse {
    fn default() -> Self {
        SkinResponse {
            base_diameter_mm: 0.20,
            diameter_per_dwell_mm_per_s: 0.5,
            diameter_per_depth_mm_per_mm: 0.15,
            diameter_sd_mm: 0.02,
            min_diameter_mm: 0.15,
            max_diameter_mm: 0.8,
            blowout_depth_mm: 1.3,
            blowout_spread_mm_per_mm: 1.5,
            full_darkness: 0.95,
            dilution_lightening: 0.5,
            darkness_sd: 0.04,
            edge_softness_mm: 0.02,
            ink_srgb: [28, 28, 32],
        }
    }
}

impl SkinResponse {
    /// Checks every number; `prefix` is the section name in the patient file.
    pub fn validate(&self, what: &'static str, prefix: &str) -> Result<(), SpecError> {
        let f = |name: &str| format!("{prefix}.{name}");
        check_range(what, &f("base_diameter_mm"), self.base_diameter_mm, 0.0, 2.0)?;
        check_range(what, &f("diameter_per_dwell_mm_per_s"), self.diameter_per_dwell_mm_per_s, 0.0, 10.0)?;
        check_range(what, &f("diameter_per_depth_mm_per_mm"), self.diameter_per_depth_mm_per_mm, 0.0, 5.0)?;
        check_range(what, &f("diameter_sd_mm"), self.diameter_sd_mm, 0.0, 0.5)?;
        check_range(what, &f("min_diameter_mm"), self.min_diameter_mm, 0.01, 2.0)?;
        check_range(what, &f("max_diameter_mm"), self.max_diameter_mm, self.min_diameter_mm, 3.0)?;
        check_range(what, &f("blowout_depth_mm"), self.blowout_depth_mm, 0.1, 5.0)?;
        check_range(what, &f("blowout_spread_mm_per_mm"), self.blowout_spread_mm_per_mm, 0.0, 20.0)?;
        check_range(what, &f("full_darkness"), self.full_darkness, 0.0, 1.0)?;
        check_range(what, &f("dilution_lightening"), self.dilution_lightening, 0.0, 1.0)?;
        check_range(what, &f("darkness_sd"), self.darkness_sd, 0.0, 0.5)?;
        check_range(what, &f("edge_softness_mm"), self.edge_softness_mm, 0.0, 0.5)?;
        Ok(())
    }

    /// The model's diameter before per-dot variation: `base + k_dwell * dwell + k_depth *
    /// depth`, clamped, plus the blowout spread beyond the blowout depth. Non-finite or
    /// negative dwell and depth count as zero.
    pub fn diameter_mm(&self, dwell_s: f64, depth_mm: f64) -> f64 {
        let dwell = finite_non_negative(dwell_s);
        let depth = finite_non_negative(depth_mm);
        let d = (self.base_diameter_mm
            + self.diameter_per_dwell_mm_per_s * dwell
            + self.diameter_per_depth_mm_per_mm * depth)
            .clamp(self.min_diameter_mm, self.max_diameter_mm);
        d + self.blowout_spread_mm_per_mm * (depth - self.blowout_depth_mm).max(0.0)
    }

    /// Fresh darkness before per-dot variation at a pigment dilution (percent of water).
    pub fn darkness(&self, dilution_pct: f64) -> f64 {
        let dil = finite_non_negative(dilution_pct).min(100.0) / 100.0;
        (self.full_darkness * (1.0 - self.dilution_lightening * dil)).clamp(0.0, 1.0)
    }
}

/// How dots fade while the skin heals (patient file `[healing]`; every field has a default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealModel {
    /// Share of a session-1 dot's darkness lost in the fast phase (scabbing and peeling).
    pub fast_loss: f64,
    /// Time constant of the fast phase, weeks (0.7: 95 % of it done by week 2).
    pub fast_weeks: f64,
    /// Share lost in the slow phase (macrophage clearance, sun).
    pub slow_loss: f64,
    /// Time constant of the slow phase, weeks.
    pub slow_weeks: f64,
    /// Each later session loses this factor less than the one before: session `s` loses
    /// `loss * factor^(s - 1)` (the skin already holds pigment around it).
    pub later_session_factor: f64,
    /// Per-dot variation of the losses (standard deviation of a log-normal factor).
    pub variation_sd: f64,
    /// Share of dots that fade strongly (pigment rejected in part)...
    pub strong_fade_fraction: f64,
    /// ... keeping only this share of the darkness a normal dot keeps.
    pub strong_fade_retention: f64,
    /// Share of dots lost altogether by the end of healing (the scab took the pigment).
    pub lost_fraction: f64,
    /// Relative diameter growth through healing (pigment settling into the dermis).
    pub spread_fraction: f64,
    /// Edge blur (Gaussian sigma) of a healed dot, mm.
    pub healed_edge_softness_mm: f64,
    /// Colour (sRGB) of healed pigment at darkness 1: black pigment seen through the new
    /// epidermis scatters blue back (the Tyndall effect), so healed dots look blue-grey.
    pub healed_srgb: [u8; 3],
}

impl Default for HealModel {
    fn default() -> Self {
        HealModel {
            fast_loss: 0.35,
            fast_weeks: 0.7,
            slow_loss: 0.15,
            slow_weeks: 26.0,
            later_session_factor: 0.7,
            variation_sd: 0.15,
            strong_fade_fraction: 0.05,
            strong_fade_retention: 0.35,
            lost_fraction: 0.02,
            spread_fraction: 0.10,
            healed_edge_softness_mm: 0.06,
            healed_srgb: [56, 64, 86],
        }
    }
}

impl HealModel {
    /// Checks every number; `prefix` is the section name in the patient file.
    pub fn validate(&self, what: &'static str, prefix: &str) -> Result<(), SpecError> {
        let f = |name: &str| format!("{prefix}.{name}");
        check_range(what, &f("fast_loss"), self.fast_loss, 0.0, 0.95)?;
        check_range(what, &f("fast_weeks"), self.fast_weeks, 0.05, 10.0)?;
        check_range(what, &f("slow_loss"), self.slow_loss, 0.0, 0.95 - self.fast_loss)?;
        check_range(what, &f("slow_weeks"), self.slow_weeks, self.fast_weeks, 1000.0)?;
        check_range(what, &f("later_session_factor"), self.later_session_factor, 0.0, 1.0)?;
        check_range(what, &f("variation_sd"), self.variation_sd, 0.0, 1.0)?;
        check_range(what, &f("strong_fade_fraction"), self.strong_fade_fraction, 0.0, 1.0)?;
        check_range(what, &f("strong_fade_retention"), self.strong_fade_retention, 0.0, 1.0)?;
        check_range(what, &f("lost_fraction"), self.lost_fraction, 0.0, 1.0 - self.strong_fade_fraction)?;
        check_range(what, &f("spread_fraction"), self.spread_fraction, 0.0, 1.0)?;
        check_range(what, &f("healed_edge_softness_mm"), self.healed_edge_softness_mm, 0.0, 0.5)?;
        Ok(())
    }

    /// Share of its fresh darkness a typical dot of `session` keeps after `weeks` (before
    /// per-dot variation): fast in the first two weeks, slow after.
    pub fn retention(&self, session: u32, weeks: f64) -> f64 {
        let w = finite_non_negative(weeks);
        let factor = self.later_session_factor.powi(session.max(1) as i32 - 1);
        let fast = self.fast_loss * factor * (1.0 - (-w / self.fast_weeks.max(1e-6)).exp());
        let slow = self.slow_loss * factor * (1.0 - (-w / self.slow_weeks.max(1e-6)).exp());
        (1.0 - fast - slow).clamp(0.0, 1.0)
    }

    /// How far healing has gone (0 fresh, 1 healed): drives spread, edge and colour.
    fn progress(&self, weeks: f64) -> f64 {
        1.0 - (-finite_non_negative(weeks) / self.fast_weeks.max(1e-6)).exp()
    }
}

/// A pigment dot in the skin: fresh from [`deposit`], or healed by [`heal`], or an earlier
/// session's dot from a patient file. Head frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PriorDot {
    /// Centre on the skin surface, head frame, mm.
    pub position_head_mm: [f64; 3],
    /// Session layer that placed it (1 = foundation).
    pub session: u32,
    /// Weeks since it was placed (0 = fresh).
    pub weeks_healed: f64,
    /// Visible diameter now, mm.
    pub diameter_mm: f64,
    /// Darkness now: 0 = skin colour, 1 = `srgb`.
    pub darkness: f64,
    /// Colour (sRGB) of the pigment at darkness 1, as it looks now.
    pub srgb: [u8; 3],
    /// Edge blur (Gaussian sigma) now, mm: pigment under the epidermis has no sharp rim.
    pub edge_softness_mm: f64,
    /// The needle went beyond the patient's blowout depth: a spread, fainter dot.
    pub blowout: bool,
    /// Diameter and darkness when fresh, so that healing in steps equals healing at once.
    pub fresh_diameter_mm: f64,
    pub fresh_darkness: f64,
    pub fresh_edge_softness_mm: f64,
    pub fresh_srgb: [u8; 3],
}

/// One needle entry as the skin model needs it: the controller's record plus what the
/// session did there that the record does not hold (time at depth, layer, pigment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DepositInput {
    pub entry: NeedleEntry,
    /// Time the tip spent in the skin at depth, seconds (the session's `dwell_s` plus the
    /// plunge and retract time below the surface, if known).
    pub dwell_s: f64,
    /// Session layer (1 = foundation).
    pub session: u32,
    /// Pigment dilution, percent of water.
    pub dilution_pct: f64,
}

impl DepositInput {
    /// Every entry of one session with the session's dwell and dilution.
    pub fn for_session(entries: &[NeedleEntry], dwell_s: f64, session: u32, dilution_pct: f64) -> Vec<DepositInput> {
        entries.iter().map(|e| DepositInput { entry: *e, dwell_s, session, dilution_pct }).collect()
    }

    /// Every entry of one session with the dwell it deposited for ([`deposit_dwell_s`] of
    /// its timing, same index; a missing or `None` timing gets the session's dwell).
    pub fn for_timed_session(
        entries: &[NeedleEntry],
        timing: &[Option<EntryTiming>],
        session_dwell_s: f64,
        session: u32,
        dilution_pct: f64,
    ) -> Vec<DepositInput> {
        entries
            .iter()
            .zip(deposit_dwell_s(entries.len(), timing, session_dwell_s))
            .map(|(e, dwell_s)| DepositInput { entry: *e, dwell_s, session, dilution_pct })
            .collect()
    }
}

/// The time at depth each of `n` entries deposits pigment for, seconds
/// ([`DepositInput::dwell_s`]): the session's programmed `session_dwell_s`, plus however much
/// longer than the session's typical entry the cartridge ran with the tip in the skin (a
/// pause that left a running needle at depth). The typical entry is the median running time
/// of the entries whose timing is known: every dot of a session is compiled with the same
/// plunge, dwell and retract, so an unpaused dot gets exactly the session's dwell, as the
/// skin model was calibrated for. An entry without timing gets the session's dwell.
pub fn deposit_dwell_s(n: usize, timing: &[Option<EntryTiming>], session_dwell_s: f64) -> Vec<f64> {
    let mut running: Vec<f64> = timing.iter().flatten().map(|t| t.running_in_skin_s).collect();
    running.sort_by(f64::total_cmp);
    let typical = running.get(running.len() / 2).copied().unwrap_or(0.0);
    (0..n)
        .map(|i| {
            let extra = timing.get(i).copied().flatten().map_or(0.0, |t| (t.running_in_skin_s - typical).max(0.0));
            session_dwell_s + extra
        })
        .collect()
}

/// Two dots whose discs touch or overlap (centre distance below the sum of their radii):
/// they read as one ink patch, a defect the planner's spacing rule exists to prevent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergedPair {
    /// Indices into the dot list, `a < b`.
    pub a: usize,
    pub b: usize,
    pub distance_mm: f64,
    /// Sum of the two radii: the distance below which they merge.
    pub touch_mm: f64,
}

/// What a session's entries left in the skin.
#[derive(Debug, Clone, PartialEq)]
pub struct Deposit {
    /// One fresh dot per entry with a finite position, in entry order.
    pub dots: Vec<PriorDot>,
    /// Pairs among `dots` that merged, sorted by `(a, b)`.
    pub merged: Vec<MergedPair>,
    /// Entries beyond the blowout depth.
    pub blowouts: usize,
    /// Entries skipped because their position was not finite.
    pub skipped: usize,
}

/// The dots a session's needle entries leave (powered entries only: the controller records
/// unpowered contacts separately, and they deposit nothing). Deterministic in `seed`.
pub fn deposit(inputs: &[DepositInput], response: &SkinResponse, seed: u64) -> Deposit {
    let mut dots = Vec::with_capacity(inputs.len());
    let mut skipped = 0;
    for inp in inputs {
        let p = inp.entry.head_mm;
        if !p.iter().all(|v| v.is_finite()) {
            skipped += 1;
            continue;
        }
        let mut rng = dot_rng(seed, p, inp.session, 0x5eed_0001);
        let depth = finite_non_negative(inp.entry.depth_mm);
        let blowout = depth > response.blowout_depth_mm;
        let dn: f64 = rng.sample(StandardNormal);
        let kn: f64 = rng.sample(StandardNormal);
        let diameter_mm = (response.diameter_mm(inp.dwell_s, depth) + response.diameter_sd_mm * dn.clamp(-3.0, 3.0))
            .max(0.5 * response.min_diameter_mm);
        let excess = (depth - response.blowout_depth_mm).max(0.0);
        // A blowout spreads the same pigment wider: fainter by the area it grew, softer.
        let base_d = response.diameter_mm(inp.dwell_s, response.blowout_depth_mm.min(depth));
        let area_ratio = if blowout { (base_d / diameter_mm.max(1e-6)).powi(2).clamp(0.3, 1.0) } else { 1.0 };
        let darkness = ((response.darkness(inp.dilution_pct) + response.darkness_sd * kn.clamp(-3.0, 3.0))
            * area_ratio)
            .clamp(0.02, 1.0);
        let edge = response.edge_softness_mm + 0.25 * excess;
        dots.push(PriorDot {
            position_head_mm: p,
            session: inp.session.max(1),
            weeks_healed: 0.0,
            diameter_mm,
            darkness,
            srgb: response.ink_srgb,
            edge_softness_mm: edge,
            blowout,
            fresh_diameter_mm: diameter_mm,
            fresh_darkness: darkness,
            fresh_edge_softness_mm: edge,
            fresh_srgb: response.ink_srgb,
        });
    }
    let blowouts = dots.iter().filter(|d| d.blowout).count();
    let merged = merged_pairs(&dots);
    Deposit { dots, merged, blowouts, skipped }
}

/// Pairs of dots closer than the sum of their radii, sorted by `(a, b)`.
pub fn merged_pairs(dots: &[PriorDot]) -> Vec<MergedPair> {
    let max_d = dots.iter().map(|d| d.diameter_mm).filter(|d| d.is_finite()).fold(0.0, f64::max);
    if dots.len() < 2 || max_d <= 0.0 {
        return Vec::new();
    }
    let grid = PointGrid::from_points(max_d, dots.iter().map(|d| d.position_head_mm));
    let mut out = Vec::new();
    for (i, d) in dots.iter().enumerate() {
        grid.for_each_within(d.position_head_mm, max_d, |j, dist| {
            let j = j as usize;
            if j > i {
                let touch = 0.5 * (d.diameter_mm + dots[j].diameter_mm);
                if dist < touch {
                    out.push(MergedPair { a: i, b: j, distance_mm: dist, touch_mm: touch });
                }
            }
        });
    }
    out.sort_by(|x, y| x.a.cmp(&y.a).then(x.b.cmp(&y.b)));
    out
}

/// Dots after healing, and the ones healing took.
#[derive(Debug, Clone, PartialEq)]
pub struct Healed {
    /// The dots still visible, in input order.
    pub dots: Vec<PriorDot>,
    /// Indices (into the input) of dots lost altogether.
    pub lost: Vec<usize>,
}

/// Heals `dots` for `weeks` more weeks. Each dot's look is recomputed from its fresh state at
/// its total healing time, so `heal(heal(d, a), b) == heal(d, a + b)`. Deterministic in
/// `seed` (per dot, from its position and session). Non-finite or negative `weeks` heal
/// nothing.
pub fn heal(dots: &[PriorDot], weeks: f64, model: &HealModel, seed: u64) -> Healed {
    let add = finite_non_negative(weeks);
    let mut out = Vec::with_capacity(dots.len());
    let mut lost = Vec::new();
    for (i, d) in dots.iter().enumerate() {
        let total = finite_non_negative(d.weeks_healed) + add;
        let mut rng = dot_rng(seed, d.position_head_mm, d.session, 0x4ea1_0002);
        let fate: f64 = rng.random();
        let vn: f64 = rng.sample(StandardNormal);
        let progress = model.progress(total);
        // Loss is decided at the start (the scab takes the pigment or not) and shows as
        // healing proceeds: a lost dot is gone once the fast phase is half done.
        if fate < model.lost_fraction && progress >= 0.5 {
            lost.push(i);
            continue;
        }
        let strong = fate >= model.lost_fraction && fate < model.lost_fraction + model.strong_fade_fraction;
        let typical_loss = 1.0 - model.retention(d.session, total);
        let variation = (model.variation_sd * vn.clamp(-3.0, 3.0)).exp();
        let mut retention = (1.0 - typical_loss * variation).clamp(0.05, 1.0);
        if strong {
            retention *= 1.0 - (1.0 - model.strong_fade_retention) * progress;
        }
        let mut h = *d;
        h.weeks_healed = total;
        h.darkness = (d.fresh_darkness * retention).clamp(0.0, 1.0);
        h.diameter_mm = d.fresh_diameter_mm * (1.0 + model.spread_fraction * progress);
        h.edge_softness_mm = d
            .fresh_edge_softness_mm
            .max(d.fresh_edge_softness_mm + (model.healed_edge_softness_mm - d.fresh_edge_softness_mm) * progress);
        h.srgb = mix_srgb(d.fresh_srgb, model.healed_srgb, progress);
        out.push(h);
    }
    Healed { dots: out, lost }
}

fn finite_non_negative(v: f64) -> f64 {
    if v.is_finite() {
        v.max(0.0)
    } else {
        0.0
    }
}

/// Per-dot generator: FNV-1a over the seed, the position's bits, the session and a salt
/// (one salt per model stage, so deposit and healing draw independent numbers).
fn dot_rng(seed: u64, p: [f64; 3], session: u32, salt: u64) -> ChaCha8Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |v: u64| {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(seed);
    for v in p {
        feed(v.to_bits());
    }
    feed(u64::from(session));
    feed(salt);
    ChaCha8Rng::seed_from_u64(h)
}

/// Mix of two sRGB colours in linear light.
fn mix_srgb(a: [u8; 3], b: [u8; 3], t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let lin = |v: u8| {
        let c = f64::from(v) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let enc = |l: f64| {
        let s = if l <= 0.003_130_8 { 12.92 * l } else { 1.055 * l.powf(1.0 / 2.4) - 0.055 };
        (s * 255.0).round().clamp(0.0, 255.0) as u8
    };
    [0, 1, 2].map(|k| enc(lin(a[k]) + (lin(b[k]) - lin(a[k])) * t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(x: f64, y: f64, depth_mm: f64) -> NeedleEntry {
        NeedleEntry { base_mm: [x, y, 0.0], head_mm: [x, y, 90.0], depth_mm, time_s: 0.0 }
    }

    #[test]
    fn a_paused_running_entry_deposits_longer_and_unknown_timing_gets_the_session_dwell() {
        let e = |x| entry(x, 0.0, 1.0);
        let entries = [e(0.0), e(2.0), e(4.0), e(6.0), e(8.0)];
        let timed = |running_in_skin_s| Some(EntryTiming { exit_time_s: 0.0, in_skin_s: 0.3, running_in_skin_s });
        let timing = [timed(0.2), timed(0.21), None, timed(1.2), timed(0.2)];
        let got = DepositInput::for_timed_session(&entries, &timing, 0.05, 2, 40.0);
        let dwell: Vec<f64> = got.iter().map(|d| d.dwell_s).collect();
        // The typical running time is the upper median of the known ones, 0.21 s: a dot that
        // ran no longer gets the session's dwell, the paused one 0.99 s more.
        let want = [0.05, 0.05, 0.05, 1.04, 0.05];
        for (g, w) in dwell.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{dwell:?}");
        }
        assert!(got.iter().all(|d| d.session == 2 && d.dilution_pct == 40.0));
        assert_eq!(got.iter().map(|d| d.entry).collect::<Vec<_>>(), entries);
        // No timing at all (a real controller): exactly the session's dwell.
        assert_eq!(
            DepositInput::for_timed_session(&entries, &[], 0.05, 2, 40.0),
            DepositInput::for_session(&entries, 0.05, 2, 40.0)
        );
    }

    fn input(x: f64, y: f64, depth_mm: f64, dwell_s: f64) -> DepositInput {
        DepositInput { entry: entry(x, y, depth_mm), dwell_s, session: 1, dilution_pct: 50.0 }
    }

    /// A grid of fresh session-`session` dots, 1 mm apart (no merges).
    fn field(n: usize, session: u32) -> Vec<PriorDot> {
        let inputs: Vec<DepositInput> =
            (0..n).map(|i| DepositInput { session, ..input((i % 100) as f64, (i / 100) as f64, 1.0, 0.1) }).collect();
        deposit(&inputs, &SkinResponse::default(), 7).dots
    }

    proptest! {
        #[test]
        fn diameter_grows_with_dwell_and_depth(
            dwell in 0.0f64..1.0, depth in 0.0f64..2.0, d_dwell in 0.0f64..0.5, d_depth in 0.0f64..0.5,
        ) {
            let r = SkinResponse::default();
            let d = r.diameter_mm(dwell, depth);
            prop_assert!(r.diameter_mm(dwell + d_dwell, depth) >= d);
            prop_assert!(r.diameter_mm(dwell, depth + d_depth) >= d);
            prop_assert!(d >= r.min_diameter_mm);
        }

        #[test]
        fn healing_in_steps_equals_healing_at_once(a in 0.0f64..8.0, b in 0.0f64..30.0, seed in 0u64..1000) {
            let dots = field(50, 1);
            let m = HealModel::default();
            let once = heal(&dots, a + b, &m, seed);
            let first = heal(&dots, a, &m, seed);
            let twice = heal(&first.dots, b, &m, seed);
            prop_assert_eq!(once.dots.len(), twice.dots.len());
            for (x, y) in once.dots.iter().zip(&twice.dots) {
                prop_assert!((x.darkness - y.darkness).abs() < 1e-9);
                prop_assert!((x.diameter_mm - y.diameter_mm).abs() < 1e-9);
                prop_assert!((x.weeks_healed - y.weeks_healed).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn session_defaults_give_a_clinic_sized_dot() {
        // Session spec defaults: dwell 0.1 s at 1.0 mm: DOMAIN.md's 0.3-0.6 mm.
        let d = SkinResponse::default().diameter_mm(0.1, 1.0);
        assert!((0.3..=0.6).contains(&d), "{d}");
        let out = deposit(&[input(0.0, 0.0, 1.0, 0.1)], &SkinResponse::default(), 1);
        assert_eq!((out.dots.len(), out.blowouts, out.skipped), (1, 0, 0));
        let dot = out.dots[0];
        assert!((dot.diameter_mm - d).abs() < 0.07, "{dot:?}");
        // Session 1 pigment is diluted 50 %: lighter than a dark follicle (0.85).
        assert!(dot.darkness > 0.55 && dot.darkness < 0.85, "{dot:?}");
    }

    #[test]
    fn beyond_the_blowout_depth_dots_spread_soften_and_fade() {
        let r = SkinResponse::default();
        let normal = deposit(&[input(0.0, 0.0, 1.2, 0.1)], &r, 3).dots[0];
        let deep = deposit(&[input(0.0, 0.0, 1.6, 0.1)], &r, 3);
        assert_eq!(deep.blowouts, 1);
        let deep = deep.dots[0];
        assert!(deep.blowout && !normal.blowout);
        assert!(deep.diameter_mm > normal.diameter_mm + 0.3, "{} vs {}", deep.diameter_mm, normal.diameter_mm);
        assert!(deep.edge_softness_mm > normal.edge_softness_mm);
        assert!(deep.darkness < normal.darkness);
        // The model's jump: spread per mm beyond the blowout depth.
        let jump = r.diameter_mm(0.1, 1.5) - r.diameter_mm(0.1, 1.3);
        assert!((jump - (0.2 * r.diameter_per_depth_mm_per_mm + 0.2 * r.blowout_spread_mm_per_mm)).abs() < 1e-9);
    }

    #[test]
    fn dots_closer_than_their_radii_are_reported_merged() {
        let r = SkinResponse { diameter_sd_mm: 0.0, ..SkinResponse::default() };
        let d = r.diameter_mm(0.1, 1.0);
        let inputs = [
            input(0.0, 0.0, 1.0, 0.1),
            input(0.8 * d, 0.0, 1.0, 0.1), // overlaps the first
            input(5.0, 0.0, 1.0, 0.1),
            input(5.0 + 1.2 * d, 0.0, 1.0, 0.1), // close but apart
            input(10.0, 0.0, 1.0, 0.1),
            input(10.0, 0.5 * d, 1.6, 0.1), // a blowout reaches its neighbour
        ];
        let out = deposit(&inputs, &r, 11);
        let pairs: Vec<(usize, usize)> = out.merged.iter().map(|m| (m.a, m.b)).collect();
        assert_eq!(pairs, vec![(0, 1), (4, 5)], "{:?}", out.merged);
        assert!((out.merged[0].distance_mm - 0.8 * d).abs() < 1e-9);
        assert!(out.merged.iter().all(|m| m.distance_mm < m.touch_mm));
        // NaN entries are skipped, not deposited at the origin.
        let bad = deposit(&[input(f64::NAN, 0.0, 1.0, 0.1)], &r, 11);
        assert_eq!((bad.dots.len(), bad.skipped), (0, 1));
    }

    #[test]
    fn fading_is_fast_in_the_first_two_weeks_then_slow() {
        let m = HealModel::default();
        let r = |w: f64| m.retention(1, w);
        let early = r(0.0) - r(2.0);
        let next = r(2.0) - r(4.0);
        let late = r(4.0) - r(12.0);
        assert!(early > 0.25, "the first two weeks take a good share: {early}");
        assert!(early > 5.0 * next, "weeks 0-2 lose {early}, weeks 2-4 {next}");
        assert!(next > 0.0 && late > 0.0, "still fading slowly: {next}, {late}");
        let mut prev = 1.0;
        for k in 1..100 {
            let v = r(k as f64 * 0.25);
            assert!(v < prev, "retention falls monotonically");
            prev = v;
        }
        // Later sessions fade less: the skin already holds pigment.
        assert!(m.retention(2, 4.0) > m.retention(1, 4.0));
        assert!(m.retention(3, 4.0) > m.retention(2, 4.0));
    }

    #[test]
    fn healed_dots_are_fainter_wider_softer_and_bluer() {
        let fresh = field(2000, 1);
        let healed = heal(&fresh, 6.0, &HealModel::default(), 5);
        let kept: Vec<&PriorDot> = healed.dots.iter().collect();
        let mut strong = 0;
        for h in &kept {
            let f = fresh.iter().find(|f| f.position_head_mm == h.position_head_mm).expect("same dot");
            assert!(h.darkness < f.darkness);
            assert!(h.diameter_mm > f.diameter_mm && h.edge_softness_mm > f.edge_softness_mm);
            assert!(h.srgb[2] > h.srgb[0] + 15, "blue-grey {:?}", h.srgb);
            if h.darkness < 0.5 * f.darkness * HealModel::default().retention(1, 6.0) {
                strong += 1;
            }
        }
        // The seeded fractions come out near the model's.
        let lost = healed.lost.len() as f64 / fresh.len() as f64;
        assert!((lost - 0.02).abs() < 0.01, "lost {lost}");
        let strong = strong as f64 / fresh.len() as f64;
        assert!((strong - 0.05).abs() < 0.02, "strongly faded {strong}");
        // Typical session-1 dot after 6 weeks: "faded quite a bit", still visible.
        let mut dark: Vec<f64> = kept.iter().map(|d| d.darkness).collect();
        dark.sort_by(f64::total_cmp);
        let median = dark[dark.len() / 2];
        assert!(median > 0.3 && median < 0.55, "median healed darkness {median}");
    }

    #[test]
    fn deposit_and_heal_are_deterministic_by_seed() {
        let inputs: Vec<DepositInput> = (0..200).map(|i| input(i as f64, 0.0, 1.0, 0.1)).collect();
        let r = SkinResponse::default();
        assert_eq!(deposit(&inputs, &r, 1), deposit(&inputs, &r, 1));
        assert_ne!(deposit(&inputs, &r, 1).dots, deposit(&inputs, &r, 2).dots);
        let dots = deposit(&inputs, &r, 1).dots;
        let m = HealModel::default();
        assert_eq!(heal(&dots, 4.0, &m, 9), heal(&dots, 4.0, &m, 9));
        assert_ne!(heal(&dots, 4.0, &m, 9).dots, heal(&dots, 4.0, &m, 10).dots);
        // A dot's fate does not depend on its neighbours in the list.
        let alone = heal(&dots[10..11], 4.0, &m, 9);
        let all = heal(&dots, 4.0, &m, 9);
        if let Some(d) = alone.dots.first() {
            assert!(all.dots.contains(d));
        } else {
            assert!(all.lost.contains(&10));
        }
        // Nonsense weeks heal nothing.
        assert_eq!(heal(&dots, f64::NAN, &m, 9).dots.len() + heal(&dots, f64::NAN, &m, 9).lost.len(), dots.len());
        assert!(heal(&dots, -3.0, &m, 9).dots.iter().all(|d| d.weeks_healed == 0.0));
    }

    #[test]
    fn validation_names_the_field() {
        let r = SkinResponse { max_diameter_mm: 0.1, ..SkinResponse::default() };
        let err = r.validate("patient", "skin_response").expect_err("max below min");
        assert!(matches!(&err, SpecError::Invalid { field, .. } if field == "skin_response.max_diameter_mm"), "{err}");
        let m = HealModel { fast_weeks: f64::NAN, ..HealModel::default() };
        let err = m.validate("patient", "healing").expect_err("nan");
        assert!(matches!(&err, SpecError::Invalid { field, .. } if field == "healing.fast_weeks"), "{err}");
        assert!(SkinResponse::default().validate("patient", "skin_response").is_ok());
        assert!(HealModel::default().validate("patient", "healing").is_ok());
    }
}

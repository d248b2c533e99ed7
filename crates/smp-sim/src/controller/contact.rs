//! The skin the needle can meet, and the detector that turns tip motion into needle entries.

use nalgebra::{Isometry3, Point3};
use serde::{Deserialize, Serialize};
use smp_core::NeedleEntry;

use super::axes::{NeedlePose, DOWN};

/// How far from the tip (mm, either way along the needle) [`Skin::line_crossing_at`]'s default
/// looks for the surface: far more than any depth, far less than a head.
pub const LINE_SEARCH_MM: f64 = 30.0;
/// Newton iterations of the default line crossing (it converges in 3-5 on a smooth scalp).
const LINE_ITERATIONS: usize = 30;
/// The default line crossing accepts a point this close to the surface (vertically), mm.
const LINE_TOLERANCE_MM: f64 = 1e-4;
/// Finite-difference step of the default surface normal, mm.
const NORMAL_STEP_MM: f64 = 0.01;
/// Below this |direction z| the default line crossing gives up: a needle this close to
/// horizontal meets a height field nowhere definite.
const MIN_LINE_DZ: f64 = 0.05;

/// The true skin under the machine, as the simulated world knows it.
///
/// The skin is a height field over the base frame's x, y: the tip is in the skin when it is
/// below the surface height at its (x, y), whatever the needle's direction (being inside is a
/// property of the point). A tilted needle (the `xyzab` and `joints` profiles) also needs
/// where its own line crosses the surface, for the depth along the needle, and the surface
/// normal, for the entry angle: [`Skin::line_crossing_at`] and [`Skin::surface_normal_at`]
/// answer from the height field by default, so every height-field skin answers tilted rays;
/// a skin with an exact geometry may override them. `Send` because the controller runs on
/// the pty thread.
pub trait Skin: Send {
    /// Height (base z, mm) of the skin surface under the vertical line (x, y) of the base
    /// frame, or `None` where the line misses the patient.
    fn surface_z_base(&self, x_mm: f64, y_mm: f64) -> Option<f64>;
    /// The patient's frame seen from the base, to report entries where plans live.
    fn head_from_base(&self) -> Isometry3<f64>;

    /// True when the surface or the head pose depends on time (a breathing or moving
    /// patient). The contact detector then evaluates the skin at each sample's machine time
    /// through the `*_at` methods; a still skin skips that work, because the machine time of
    /// a sample costs a bisection on the velocity profile. Override it together with
    /// [`Skin::surface_z_base_at`] and [`Skin::head_from_base_at`].
    fn moves(&self) -> bool {
        false
    }

    /// [`Skin::surface_z_base`] at machine time `t_s` (seconds since the controller
    /// started). Defaults to the still surface so that existing skins are unchanged.
    fn surface_z_base_at(&self, x_mm: f64, y_mm: f64, _t_s: f64) -> Option<f64> {
        self.surface_z_base(x_mm, y_mm)
    }

    /// [`Skin::head_from_base`] at machine time `t_s`: where the head really is when the
    /// needle meets it, so that an entry is recorded on the head it actually hit.
    fn head_from_base_at(&self, _t_s: f64) -> Isometry3<f64> {
        self.head_from_base()
    }

    /// Where the line through `point_mm` along the unit vector `direction` crosses the skin
    /// surface nearest to `point_mm`, at machine time `t_s` (`None`: a still skin): the signed
    /// distance `λ` such that `point + λ·direction` is on the surface. `None` when the line
    /// misses the skin within [`LINE_SEARCH_MM`] or is too close to horizontal.
    ///
    /// The contact detector asks with `point` = the needle tip and `direction` = from the tip
    /// towards the hub: `λ` is then the tip's depth below the skin along the needle.
    ///
    /// The default solves `z(λ) = height(x(λ), y(λ))` by Newton's method on the height field
    /// (finite-difference slope), starting from the vertical estimate; it converges in a few
    /// steps on any smooth scalp.
    fn line_crossing_at(&self, point_mm: [f64; 3], direction: [f64; 3], t_s: Option<f64>) -> Option<f64> {
        let [px, py, pz] = point_mm;
        let [dx, dy, dz] = direction;
        if !(dz.abs() >= MIN_LINE_DZ && point_mm.iter().chain(&direction).all(|v| v.is_finite())) {
            return None;
        }
        let height = |x: f64, y: f64| match t_s {
            Some(t) => self.surface_z_base_at(x, y, t),
            None => self.surface_z_base(x, y),
        };
        // g(λ) = z(λ) - height(λ): zero on the surface.
        let g = |l: f64| height(px + l * dx, py + l * dy).filter(|h| h.is_finite()).map(|h| pz + l * dz - h);
        let mut l = (height(px, py)? - pz) / dz;
        // Best point so far: a height field solved iteratively itself (a moving, turned head)
        // is only accurate to a micron or so, and Newton then wanders at that level.
        let mut best: Option<(f64, f64)> = None;
        for _ in 0..LINE_ITERATIONS {
            if l.is_nan() || l.abs() > LINE_SEARCH_MM {
                break;
            }
            let Some(gl) = g(l) else { break };
            if best.is_none_or(|(_, b)| gl.abs() < b) {
                best = Some((l, gl.abs()));
            }
            if gl.abs() < 1e-10 {
                break;
            }
            let h = 1e-3;
            let (Some(gp), Some(gm)) = (g(l + h), g(l - h)) else { break };
            let slope = (gp - gm) / (2.0 * h);
            if slope.is_nan() || slope.abs() <= 1e-9 {
                break;
            }
            l -= gl / slope;
        }
        best.filter(|(_, err)| *err < LINE_TOLERANCE_MM).map(|(l, _)| l)
    }

    /// Outward unit normal of the skin (base frame) at the surface point over (x, y), at
    /// machine time `t_s` (`None`: a still skin). The default differentiates the height field.
    fn surface_normal_at(&self, x_mm: f64, y_mm: f64, t_s: Option<f64>) -> Option<[f64; 3]> {
        let height = |x: f64, y: f64| {
            match t_s {
                Some(t) => self.surface_z_base_at(x, y, t),
                None => self.surface_z_base(x, y),
            }
            .filter(|h| h.is_finite())
        };
        let e = NORMAL_STEP_MM;
        let hx = (height(x_mm + e, y_mm)? - height(x_mm - e, y_mm)?) / (2.0 * e);
        let hy = (height(x_mm, y_mm + e)? - height(x_mm, y_mm - e)?) / (2.0 * e);
        let n = (hx * hx + hy * hy + 1.0).sqrt();
        Some([-hx / n, -hy / n, 1.0 / n])
    }
}

/// How the needle met the skin at an entry: its direction, the skin's normal there and the
/// angle between them. Kept beside each [`NeedleEntry`] (same index) because the core's
/// entry record has no field for it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntryGeometry {
    /// Needle pointing direction at the crossing (hub to tip, unit), base frame.
    pub needle_dir_base: [f64; 3],
    /// Outward unit skin normal at the entry point, base frame; `None` where the skin could
    /// not say (then the angle is `None` too).
    pub skin_normal_base: Option<[f64; 3]>,
    /// Angle between the needle and the inward normal, degrees (0 = perpendicular entry).
    pub needle_to_normal_deg: Option<f64>,
}

pub use smp_core::entry::EntryTiming;

/// No patient at all: nothing is ever touched. For protocol tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSkin;

impl Skin for NoSkin {
    fn surface_z_base(&self, _x_mm: f64, _y_mm: f64) -> Option<f64> {
        None
    }
    fn head_from_base(&self) -> Isometry3<f64> {
        Isometry3::identity()
    }
}

/// An infinite flat skin at base height `z_mm`: the simplest surface with a known answer.
#[derive(Debug, Clone, Copy)]
pub struct FlatSkin {
    pub z_mm: f64,
    pub head_from_base: Isometry3<f64>,
}

impl Skin for FlatSkin {
    fn surface_z_base(&self, _x_mm: f64, _y_mm: f64) -> Option<f64> {
        Some(self.z_mm)
    }
    fn head_from_base(&self) -> Isometry3<f64> {
        self.head_from_base
    }
}

/// A skin given by a closure, e.g. a synthetic patient's `surface_z_base` with its pose:
/// `FnSkin::new(base_from_head.inverse(), move |x, y| patient.surface_z_base(&base_from_head, x, y))`.
/// Tilted needles are answered from the same height field (the trait's defaults).
pub struct FnSkin<F> {
    surface: F,
    head_from_base: Isometry3<f64>,
}

impl<F> FnSkin<F>
where
    F: Fn(f64, f64) -> Option<f64> + Send,
{
    pub fn new(head_from_base: Isometry3<f64>, surface: F) -> Self {
        FnSkin { surface, head_from_base }
    }
}

impl<F> Skin for FnSkin<F>
where
    F: Fn(f64, f64) -> Option<f64> + Send,
{
    fn surface_z_base(&self, x_mm: f64, y_mm: f64) -> Option<f64> {
        (self.surface)(x_mm, y_mm)
    }
    fn head_from_base(&self) -> Isometry3<f64> {
        self.head_from_base
    }
}

/// A scalp map's fitted surface patch as the skin, with the head at `base_from_head`: the
/// skin of test scenes built from a map (the synthetic cases), solved as a height field under
/// each vertical line of the base by Newton's method along the base z.
pub struct PatchSkin {
    patch: smp_core::geometry::SurfacePatch,
    base_from_patch: Isometry3<f64>,
    patch_from_base: Isometry3<f64>,
    head_from_base: Isometry3<f64>,
}

impl PatchSkin {
    pub fn new(patch: smp_core::geometry::SurfacePatch, base_from_head: Isometry3<f64>) -> Self {
        let base_from_patch = base_from_head * patch.head_from_patch;
        PatchSkin {
            patch,
            base_from_patch,
            patch_from_base: base_from_patch.inverse(),
            head_from_base: base_from_head.inverse(),
        }
    }

    /// Height of the base point (x, y, z) above the surface, along the patch normal axis.
    fn gap(&self, x: f64, y: f64, z: f64) -> (f64, Point3<f64>) {
        let p = self.patch_from_base * Point3::new(x, y, z);
        (p.z - self.patch.height(p.x, p.y), p)
    }
}

impl Skin for PatchSkin {
    fn surface_z_base(&self, x_mm: f64, y_mm: f64) -> Option<f64> {
        let mut z = self.base_from_patch.translation.vector.z;
        for _ in 0..40 {
            let (f, p) = self.gap(x_mm, y_mm, z);
            let (f2, _) = self.gap(x_mm, y_mm, z + 1e-3);
            let slope = (f2 - f) / 1e-3;
            if !slope.is_finite() || slope.abs() < 1e-6 {
                return None;
            }
            let step = f / slope;
            z -= step;
            if step.abs() < 1e-10 {
                return self.patch.contains_xy(p.x, p.y).then_some(z);
            }
        }
        None
    }

    fn head_from_base(&self) -> Isometry3<f64> {
        self.head_from_base
    }
}

/// Vertical depth of the point below the skin (positive inside), or `None` where there is no
/// skin. `t_s` is the machine time of the sample, `None` for a still skin (not needed).
fn depth_at(skin: &dyn Skin, p: [f64; 3], t_s: Option<f64>) -> Option<f64> {
    let surface = match t_s {
        Some(t) => skin.surface_z_base_at(p[0], p[1], t),
        None => skin.surface_z_base(p[0], p[1]),
    };
    surface.filter(|h| h.is_finite()).map(|h| h - p[2])
}

/// Depth of the tip below the skin along the needle: the vertical depth for a vertical needle
/// (exactly as the `xyz` controller always measured it), else the distance back along the
/// needle to where its line crosses the surface (the vertical depth if the skin cannot say).
fn needle_depth(skin: &dyn Skin, n: &NeedlePose, vertical: f64, t_s: Option<f64>) -> f64 {
    if n.dir == DOWN {
        return vertical;
    }
    let back = [-n.dir[0], -n.dir[1], -n.dir[2]];
    skin.line_crossing_at(n.tip_mm, back, t_s).unwrap_or(vertical)
}

/// Machine time at `s` when the skin needs it (see [`Skin::moves`]).
fn time_if_moving(skin: &dyn Skin, time_at: &impl Fn(f64) -> f64, s: f64) -> Option<f64> {
    skin.moves().then(|| time_at(s))
}

fn inside(skin: &dyn Skin, p: [f64; 3], t_s: Option<f64>) -> bool {
    depth_at(skin, p, t_s).is_some_and(|d| d > 0.0)
}

#[derive(Debug, Clone, Copy)]
struct OpenContact {
    entry: NeedleEntry,
    geometry: EntryGeometry,
    /// The cartridge runs now (since `since_s`).
    powered: bool,
    /// The cartridge ran at some point of this contact: a powered entry.
    ever_powered: bool,
    /// Running time counted up to `since_s`.
    running_s: f64,
    since_s: f64,
}

/// Follows the needle along its path and records every passage of the tip through the skin.
///
/// Invariant: `open` is `Some` exactly while the last sampled tip position was below the
/// surface; an entry is recorded when the tip comes out (or at [`ContactTracker::close`]).
/// `entries`, `geometry` and `timing` (and the three `unpowered` vectors) have equal lengths.
/// An entry is powered when the cartridge ran at any time while the tip was in the skin.
#[derive(Debug, Clone)]
pub(crate) struct ContactTracker {
    step_mm: f64,
    open: Option<OpenContact>,
    pub(crate) entries: Vec<NeedleEntry>,
    pub(crate) geometry: Vec<EntryGeometry>,
    pub(crate) timing: Vec<EntryTiming>,
    pub(crate) unpowered: Vec<NeedleEntry>,
    pub(crate) unpowered_geometry: Vec<EntryGeometry>,
    pub(crate) unpowered_timing: Vec<EntryTiming>,
}

/// Bisection iterations on a sample interval (<= step): 2^-40 of 0.02 mm is far below 1 nm.
const BISECT_ITERATIONS: usize = 40;

impl ContactTracker {
    pub(crate) fn new(step_mm: f64) -> Self {
        ContactTracker {
            step_mm,
            open: None,
            entries: Vec::new(),
            geometry: Vec::new(),
            timing: Vec::new(),
            unpowered: Vec::new(),
            unpowered_geometry: Vec::new(),
            unpowered_timing: Vec::new(),
        }
    }

    /// The tip is in the skin now.
    pub(crate) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The cartridge started or stopped at machine time `t_s` (M3/M5, a spindle stop override
    /// or its restore, a reset): the open contact's running time is counted up to `t_s`.
    pub(crate) fn power_changed(&mut self, t_s: f64, powered: bool) {
        if let Some(open) = self.open.as_mut() {
            if open.powered {
                open.running_s += (t_s - open.since_s).max(0.0);
            }
            open.since_s = open.since_s.max(t_s);
            open.powered = powered;
            open.ever_powered |= powered;
        }
    }

    /// [`ContactTracker::sample_needle_path`] for a vertical needle whose tip follows
    /// `point(s)`, at the configured step (the `xyz` profile).
    #[cfg(test)]
    pub(crate) fn sample_segment(
        &mut self,
        skin: &dyn Skin,
        point: impl Fn(f64) -> [f64; 3],
        time_at: impl Fn(f64) -> f64,
        s_from: f64,
        s_to: f64,
        powered: bool,
    ) {
        let step = self.step_mm;
        self.sample_needle_path(
            skin,
            |s| NeedlePose { tip_mm: point(s), dir: DOWN },
            time_at,
            s_from,
            s_to,
            step,
            powered,
        );
    }

    /// Samples the needle path `needle(s)` for `s` in `[s_from, s_to]` at steps no longer
    /// than `step` (chosen by the caller so that the tip moves at most the configured sample
    /// distance per step), opening and closing contacts where the tip crosses the surface
    /// (found by bisection on the true path) and tracking the deepest point along the needle
    /// in between. `time_at(s)` gives the machine time at which the needle is at `s`;
    /// `powered` says whether the cartridge runs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sample_needle_path(
        &mut self,
        skin: &dyn Skin,
        needle: impl Fn(f64) -> NeedlePose,
        time_at: impl Fn(f64) -> f64,
        s_from: f64,
        s_to: f64,
        step: f64,
        powered: bool,
    ) {
        let span = s_to - s_from;
        let step = if step > 0.0 && step.is_finite() { step } else { self.step_mm };
        let n = if span > 0.0 { (span / step).ceil().max(1.0) as usize } else { 0 };
        let mut prev_s = s_from;
        // The first point is checked too: a contact can start where the tip already rests.
        self.visit(skin, &needle, &time_at, prev_s, prev_s, powered);
        for k in 1..=n {
            let s = if k == n { s_to } else { s_from + span * (k as f64) / (n as f64) };
            self.visit(skin, &needle, &time_at, prev_s, s, powered);
            prev_s = s;
        }
    }

    fn visit(
        &mut self,
        skin: &dyn Skin,
        needle: &impl Fn(f64) -> NeedlePose,
        time_at: &impl Fn(f64) -> f64,
        prev_s: f64,
        s: f64,
        powered: bool,
    ) {
        let n = needle(s);
        let t_s = time_if_moving(skin, time_at, s);
        let depth = depth_at(skin, n.tip_mm, t_s);
        let now_inside = depth.is_some_and(|d| d > 0.0);
        match (self.open.is_some(), now_inside) {
            (false, true) => {
                // Entry somewhere in (prev_s, s]: the last outside and first inside points.
                let point = |s: f64| needle(s).tip_mm;
                let s_c = crossing(skin, &point, time_at, prev_s, s, false);
                let at_c = needle(s_c);
                let c = at_c.tip_mm;
                let t_c = time_at(s_c);
                // The head pose at the crossing: on a moving head the entry lands where the
                // head was, not where it was planned, and that offset is the placement error.
                let head = skin.head_from_base_at(t_c) * Point3::new(c[0], c[1], c[2]);
                let normal = skin.surface_normal_at(c[0], c[1], skin.moves().then_some(t_c));
                let angle = normal.map(|m| {
                    let cos = -(m[0] * at_c.dir[0] + m[1] * at_c.dir[1] + m[2] * at_c.dir[2]);
                    cos.clamp(-1.0, 1.0).acos().to_degrees()
                });
                let d = depth.map_or(0.0, |v| needle_depth(skin, &n, v, t_s));
                self.open = Some(OpenContact {
                    entry: NeedleEntry {
                        base_mm: c,
                        head_mm: [head.x, head.y, head.z],
                        depth_mm: d.max(0.0),
                        time_s: t_c,
                    },
                    geometry: EntryGeometry {
                        needle_dir_base: at_c.dir,
                        skin_normal_base: normal,
                        needle_to_normal_deg: angle,
                    },
                    powered,
                    ever_powered: powered,
                    running_s: 0.0,
                    since_s: t_c,
                });
            }
            (true, true) => {
                if let (Some(open), Some(v)) = (self.open.as_mut(), depth) {
                    let d = needle_depth(skin, &n, v, t_s);
                    open.entry.depth_mm = open.entry.depth_mm.max(d);
                }
            }
            (true, false) => {
                // Exit somewhere in (prev_s, s]: the first point outside.
                let point = |s: f64| needle(s).tip_mm;
                let s_x = crossing(skin, &point, time_at, prev_s, s, true);
                self.close(time_at(s_x));
            }
            (false, false) => {}
        }
    }

    /// Records the open contact, if any (the tip left the skin at machine time `t_s`, or the
    /// run ends then).
    pub(crate) fn close(&mut self, t_s: f64) {
        if let Some(open) = self.open.take() {
            let exit_time_s = t_s.max(open.entry.time_s);
            let running_extra = if open.powered { (exit_time_s - open.since_s).max(0.0) } else { 0.0 };
            let timing = EntryTiming {
                exit_time_s,
                in_skin_s: exit_time_s - open.entry.time_s,
                running_in_skin_s: open.running_s + running_extra,
            };
            if open.ever_powered {
                self.entries.push(open.entry);
                self.geometry.push(open.geometry);
                self.timing.push(timing);
            } else {
                self.unpowered.push(open.entry);
                self.unpowered_geometry.push(open.geometry);
                self.unpowered_timing.push(timing);
            }
        }
    }
}

/// Distance along the path where `inside` changes between `a` (state `a_inside`) and `b`.
/// On a moving skin the surface is taken at each probe's own machine time.
fn crossing(
    skin: &dyn Skin,
    point: &impl Fn(f64) -> [f64; 3],
    time_at: &impl Fn(f64) -> f64,
    a: f64,
    b: f64,
    a_inside: bool,
) -> f64 {
    let probe = |s: f64| inside(skin, point(s), time_if_moving(skin, time_at, s));
    let (mut lo, mut hi) = (a, b);
    if probe(lo) != a_inside {
        return lo; // already crossed at the first point (e.g. a contact starting at rest)
    }
    for _ in 0..BISECT_ITERATIONS {
        let mid = 0.5 * (lo + hi);
        if probe(mid) == a_inside {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use nalgebra::Translation3;

    fn line(a: [f64; 3], b: [f64; 3]) -> impl Fn(f64) -> [f64; 3] {
        let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2) + (b[2] - a[2]).powi(2)).sqrt();
        move |s| {
            let u = s / len;
            [a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u, a[2] + (b[2] - a[2]) * u]
        }
    }

    #[test]
    fn plunge_and_retract_through_flat_skin() {
        let skin = FlatSkin {
            z_mm: 10.0,
            head_from_base: Isometry3::from_parts(Translation3::new(-1.0, 0.0, 0.0), Default::default()),
        };
        let mut tr = ContactTracker::new(0.02);
        // Down from 12 to 8.8 (3.2 mm), time = s.
        tr.sample_segment(&skin, line([5.0, 6.0, 12.0], [5.0, 6.0, 8.8]), |s| s, 0.0, 3.2, true);
        assert!(tr.is_open());
        tr.sample_segment(&skin, line([5.0, 6.0, 8.8], [5.0, 6.0, 12.0]), |s| 10.0 + s, 0.0, 3.2, true);
        assert!(!tr.is_open());
        assert_eq!(tr.entries.len(), 1);
        let e = tr.entries[0];
        assert_relative_eq!(e.depth_mm, 1.2, epsilon = 1e-9);
        assert_relative_eq!(e.base_mm[2], 10.0, epsilon = 1e-6);
        assert_relative_eq!(e.base_mm[0], 5.0);
        assert_relative_eq!(e.head_mm[0], 4.0);
        assert_relative_eq!(e.time_s, 2.0, epsilon = 1e-6);
    }

    /// Time in skin runs from the crossing in to the crossing out; running time counts only
    /// while the cartridge runs (a stop while the tip rests at depth, then a restart).
    #[test]
    fn running_time_in_skin_counts_only_while_the_cartridge_runs() {
        let skin = FlatSkin { z_mm: 10.0, head_from_base: Isometry3::identity() };
        let mut tr = ContactTracker::new(0.02);
        // Down from 12 to 9 at 1 mm/s: in the skin from t = 2.
        tr.sample_segment(&skin, line([0.0, 0.0, 12.0], [0.0, 0.0, 9.0]), |s| s, 0.0, 3.0, true);
        // At rest at depth from t = 3 to t = 10; stopped from 4 to 9.
        tr.power_changed(4.0, false);
        tr.power_changed(9.0, true);
        // Up from 9 to 12 starting at t = 10: out at t = 11.
        tr.sample_segment(&skin, line([0.0, 0.0, 9.0], [0.0, 0.0, 12.0]), |s| 10.0 + s, 0.0, 3.0, true);
        assert_eq!(tr.timing.len(), 1);
        let t = tr.timing[0];
        assert_relative_eq!(t.exit_time_s, 11.0, epsilon = 1e-6);
        assert_relative_eq!(t.in_skin_s, 9.0, epsilon = 1e-6);
        assert_relative_eq!(t.running_in_skin_s, 4.0, epsilon = 1e-6);
        // A contact that only ever ran while stopped is unpowered, with no running time.
        let mut tr = ContactTracker::new(0.02);
        tr.sample_segment(&skin, line([0.0, 0.0, 12.0], [0.0, 0.0, 9.0]), |s| s, 0.0, 3.0, false);
        tr.close(5.0);
        assert!(tr.entries.is_empty());
        assert_relative_eq!(tr.unpowered_timing[0].running_in_skin_s, 0.0);
        assert_relative_eq!(tr.unpowered_timing[0].in_skin_s, 3.0, epsilon = 1e-6);
    }

    /// The upper half of a sphere of radius 90 mm as a plain height field, as `FnSkin` over a
    /// patient's `surface_z_base` is.
    fn dome() -> FnSkin<impl Fn(f64, f64) -> Option<f64> + Send> {
        FnSkin::new(Isometry3::identity(), |x: f64, y: f64| {
            let r2 = 90.0f64.powi(2) - x * x - y * y;
            (r2 > 0.0).then(|| r2.sqrt())
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// The default line crossing and normal of a height field match the sphere's exact
        /// answers for needles tilted up to 60 degrees, tips up to 3 mm either side of the skin.
        #[test]
        fn height_field_answers_tilted_rays(
            polar in 0.0f64..0.9,
            azimuth in 0.0f64..std::f64::consts::TAU,
            tilt in 0.0f64..1.05,
            tilt_az in 0.0f64..std::f64::consts::TAU,
            offset in -3.0f64..3.0,
        ) {
            use nalgebra::Vector3;
            let skin = dome();
            let n = Vector3::new(polar.sin() * azimuth.cos(), polar.sin() * azimuth.sin(), polar.cos());
            // A needle direction `tilt` from the inward normal, pointing into the skin.
            let helper = if n.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
            let u = n.cross(&helper).normalize();
            let v = n.cross(&u);
            let d = -n * tilt.cos() + (u * tilt_az.cos() + v * tilt_az.sin()) * tilt.sin();
            proptest::prop_assume!(d.z < -0.2);
            let surface = n * 90.0;
            let tip = surface + d * offset; // `offset` mm beyond the surface along the needle
            let back = -d;
            let l = skin.line_crossing_at([tip.x, tip.y, tip.z], [back.x, back.y, back.z], None);
            // Exact: |tip + l back| = 90, the root nearest to the tip.
            let b = tip.dot(&back);
            let c = tip.norm_squared() - 8100.0;
            let disc = (b * b - c).sqrt();
            let exact = if (-b + disc).abs() < (-b - disc).abs() { -b + disc } else { -b - disc };
            let l = l.ok_or_else(|| proptest::test_runner::TestCaseError::fail("no crossing"))?;
            proptest::prop_assert!((l - exact).abs() < 1e-6, "lambda {} vs exact {}", l, exact);
            proptest::prop_assert!((l - offset).abs() < 1e-6);
            let m = skin.surface_normal_at(surface.x, surface.y, None)
                .ok_or_else(|| proptest::test_runner::TestCaseError::fail("no normal"))?;
            proptest::prop_assert!((Vector3::from(m) - n).norm() < 1e-5, "normal {:?} vs {:?}", m, n);
        }
    }

    #[test]
    fn height_field_line_crossing_refuses_what_it_cannot_answer() {
        let skin = dome();
        // Horizontal needle, a line missing the dome, and NaN.
        assert_eq!(skin.line_crossing_at([0.0, 0.0, 89.0], [1.0, 0.0, 0.0], None), None);
        assert_eq!(skin.line_crossing_at([200.0, 0.0, 10.0], [0.0, 0.0, 1.0], None), None);
        assert_eq!(skin.line_crossing_at([f64::NAN, 0.0, 10.0], [0.0, 0.0, 1.0], None), None);
        // Beyond the search range along the line.
        assert_eq!(skin.line_crossing_at([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], None), None);
        assert_eq!(NoSkin.line_crossing_at([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], None), None);
        assert_eq!(NoSkin.surface_normal_at(0.0, 0.0, None), None);
    }

    #[test]
    fn unpowered_and_off_skin() {
        let skin = FlatSkin { z_mm: 0.0, head_from_base: Isometry3::identity() };
        let mut tr = ContactTracker::new(0.02);
        tr.sample_segment(&skin, line([0.0, 0.0, 1.0], [0.0, 0.0, -1.0]), |s| s, 0.0, 2.0, false);
        tr.close(2.0);
        assert_eq!(tr.entries.len(), 0);
        assert_eq!(tr.unpowered.len(), 1);
        assert_relative_eq!(tr.unpowered[0].depth_mm, 1.0, epsilon = 1e-9);

        let mut tr = ContactTracker::new(0.02);
        tr.sample_segment(&NoSkin, line([0.0, 0.0, 1.0], [0.0, 0.0, -1.0]), |s| s, 0.0, 2.0, true);
        tr.close(2.0);
        assert!(tr.entries.is_empty() && tr.unpowered.is_empty());
    }
}

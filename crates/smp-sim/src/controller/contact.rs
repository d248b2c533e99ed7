//! The skin the needle can meet, and the detector that turns tip motion into needle entries.

use nalgebra::{Isometry3, Point3};
use smp_core::NeedleEntry;

/// The true skin under the machine, as the simulated world knows it.
///
/// The needle is vertical (pointing down, -z base) in the `xyz` profile, so a single height
/// per (x, y) is all the controller needs: the tip is in the skin when it is below that
/// height. `Send` because the controller runs on the pty thread.
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
}

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

/// Depth of the tip below the skin (positive inside), or `None` where there is no skin.
/// `t_s` is the machine time of the sample, `None` for a still skin (not needed).
fn depth_at(skin: &dyn Skin, p: [f64; 3], t_s: Option<f64>) -> Option<f64> {
    let surface = match t_s {
        Some(t) => skin.surface_z_base_at(p[0], p[1], t),
        None => skin.surface_z_base(p[0], p[1]),
    };
    surface.filter(|h| h.is_finite()).map(|h| h - p[2])
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
    powered: bool,
}

/// Follows the tip along straight segments and records every passage through the skin.
///
/// Invariant: `open` is `Some` exactly while the last sampled tip position was below the
/// surface; an entry is recorded when the tip comes out (or at [`ContactTracker::close`]).
#[derive(Debug, Clone)]
pub(crate) struct ContactTracker {
    step_mm: f64,
    open: Option<OpenContact>,
    pub(crate) entries: Vec<NeedleEntry>,
    pub(crate) unpowered: Vec<NeedleEntry>,
}

/// Bisection iterations on a sample interval (<= step): 2^-40 of 0.02 mm is far below 1 nm.
const BISECT_ITERATIONS: usize = 40;

impl ContactTracker {
    pub(crate) fn new(step_mm: f64) -> Self {
        ContactTracker { step_mm, open: None, entries: Vec::new(), unpowered: Vec::new() }
    }

    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Samples the straight path `point(s)` for `s` in `[s_from, s_to]` at steps no longer
    /// than the configured step, opening and closing contacts at the surface crossings
    /// (found by bisection) and tracking the deepest point in between. `time_at(s)` gives the
    /// machine time at which the tip is at `s`; `powered` says whether the cartridge runs.
    pub(crate) fn sample_segment(
        &mut self,
        skin: &dyn Skin,
        point: impl Fn(f64) -> [f64; 3],
        time_at: impl Fn(f64) -> f64,
        s_from: f64,
        s_to: f64,
        powered: bool,
    ) {
        let span = s_to - s_from;
        let n = if span > 0.0 { (span / self.step_mm).ceil().max(1.0) as usize } else { 0 };
        let mut prev_s = s_from;
        // The first point is checked too: a contact can start where the tip already rests.
        self.visit(skin, &point, &time_at, prev_s, prev_s, powered);
        for k in 1..=n {
            let s = if k == n { s_to } else { s_from + span * (k as f64) / (n as f64) };
            self.visit(skin, &point, &time_at, prev_s, s, powered);
            prev_s = s;
        }
    }

    fn visit(
        &mut self,
        skin: &dyn Skin,
        point: &impl Fn(f64) -> [f64; 3],
        time_at: &impl Fn(f64) -> f64,
        prev_s: f64,
        s: f64,
        powered: bool,
    ) {
        let p = point(s);
        let depth = depth_at(skin, p, time_if_moving(skin, time_at, s));
        let now_inside = depth.is_some_and(|d| d > 0.0);
        match (self.open.is_some(), now_inside) {
            (false, true) => {
                // Entry somewhere in (prev_s, s]: the last outside and first inside points.
                let s_c = crossing(skin, point, time_at, prev_s, s, false);
                let c = point(s_c);
                let t_c = time_at(s_c);
                // The head pose at the crossing: on a moving head the entry lands where the
                // head was, not where it was planned, and that offset is the placement error.
                let head = skin.head_from_base_at(t_c) * Point3::new(c[0], c[1], c[2]);
                self.open = Some(OpenContact {
                    entry: NeedleEntry {
                        base_mm: c,
                        head_mm: [head.x, head.y, head.z],
                        depth_mm: depth.unwrap_or(0.0).max(0.0),
                        time_s: t_c,
                    },
                    powered,
                });
            }
            (true, true) => {
                if let (Some(open), Some(d)) = (self.open.as_mut(), depth) {
                    open.entry.depth_mm = open.entry.depth_mm.max(d);
                }
            }
            (true, false) => {
                self.close();
            }
            (false, false) => {}
        }
    }

    /// Records the open contact, if any (the tip left the skin, or the run ends).
    pub(crate) fn close(&mut self) {
        if let Some(open) = self.open.take() {
            if open.powered {
                self.entries.push(open.entry);
            } else {
                self.unpowered.push(open.entry);
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

    #[test]
    fn unpowered_and_off_skin() {
        let skin = FlatSkin { z_mm: 0.0, head_from_base: Isometry3::identity() };
        let mut tr = ContactTracker::new(0.02);
        tr.sample_segment(&skin, line([0.0, 0.0, 1.0], [0.0, 0.0, -1.0]), |s| s, 0.0, 2.0, false);
        tr.close();
        assert_eq!(tr.entries.len(), 0);
        assert_eq!(tr.unpowered.len(), 1);
        assert_relative_eq!(tr.unpowered[0].depth_mm, 1.0, epsilon = 1e-9);

        let mut tr = ContactTracker::new(0.02);
        tr.sample_segment(&NoSkin, line([0.0, 0.0, 1.0], [0.0, 0.0, -1.0]), |s| s, 0.0, 2.0, true);
        tr.close();
        assert!(tr.entries.is_empty() && tr.unpowered.is_empty());
    }
}

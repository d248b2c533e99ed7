//! Head tracking from the fiducial registrations at camera rate: a pure, sans-I/O state
//! machine that turns a stream of (time, measurement or nothing) into events.
//!
//! Why: the needle aims at head-frame points through the registration a session started
//! from. If the head moves beyond what the treatment tolerates, the executor must pause and
//! re-register; if the band leaves the cameras' view, nobody knows where the head is. This
//! core decides *when*; the executor owns the clock and the cameras and decides *what*.
//!
//! Invariants: [`HeadTracker::update`] never panics, whatever the times or measurements (a
//! dropped frame is `None`; time going backwards is ignored); [`TrackEvent::Drift`] is emitted
//! once per excursion: the tracker re-arms only after the head is back within
//! `rearm_fraction` of both thresholds, or after [`HeadTracker::rebase`].

use std::time::Duration;

use nalgebra::Isometry3;
use serde::{Deserialize, Serialize};

use crate::fiducials::HeadRegistration;

/// Thresholds and timings of the tracker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Head-centre displacement from the reference (base frame) that is a drift, mm.
    pub drift_threshold_mm: f64,
    /// Rotation from the reference that is a drift, degrees (1° turns a scalp point 100 mm
    /// from the head centre by 1.7 mm).
    pub drift_threshold_deg: f64,
    /// Hysteresis: after a drift, the tracker re-arms when both the displacement and the
    /// rotation are below this fraction of their thresholds (0..1).
    pub rearm_fraction: f64,
    /// No usable measurement for this long means the fiducials are lost, s.
    pub lost_timeout_s: f64,
    /// Measurements with a reprojection RMS above this are ignored (counted as missing), px.
    pub max_reprojection_rms_px: f64,
    /// After a drift, the head is settled when every measurement within this window...
    pub settle_window_s: f64,
    /// ...lies within this distance of the window's mean, mm.
    pub settle_tolerance_mm: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            drift_threshold_mm: 1.0,
            drift_threshold_deg: 0.5,
            rearm_fraction: 0.5,
            lost_timeout_s: 0.5,
            max_reprojection_rms_px: 2.0,
            settle_window_s: 1.0,
            settle_tolerance_mm: 0.2,
        }
    }
}

/// A tracker setting that makes no sense, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tracker config: field `{field}` is {value}; {hint}")]
pub struct TrackerConfigError {
    pub field: &'static str,
    pub value: f64,
    pub hint: &'static str,
}

impl TrackerConfig {
    pub fn validate(&self) -> Result<(), TrackerConfigError> {
        let positive = [
            ("drift_threshold_mm", self.drift_threshold_mm),
            ("drift_threshold_deg", self.drift_threshold_deg),
            ("lost_timeout_s", self.lost_timeout_s),
            ("max_reprojection_rms_px", self.max_reprojection_rms_px),
            ("settle_window_s", self.settle_window_s),
            ("settle_tolerance_mm", self.settle_tolerance_mm),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(TrackerConfigError { field, value, hint: "it must be a positive number" });
            }
        }
        // Durations beyond an hour are a unit mistake (and would overflow `Duration`).
        for (field, value) in [("lost_timeout_s", self.lost_timeout_s), ("settle_window_s", self.settle_window_s)] {
            if value > 3600.0 {
                return Err(TrackerConfigError { field, value, hint: "give seconds, at most 3600" });
            }
        }
        if !(self.rearm_fraction > 0.0 && self.rearm_fraction < 1.0) {
            return Err(TrackerConfigError {
                field: "rearm_fraction",
                value: self.rearm_fraction,
                hint: "use a fraction in (0, 1) such as 0.5",
            });
        }
        Ok(())
    }
}

/// What the tracker tells the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackEvent {
    /// The head left the drift thresholds: pause, wait for [`TrackEvent::Settled`],
    /// re-register and [`HeadTracker::rebase`]. Emitted once per excursion.
    Drift {
        at: Duration,
        /// Head-centre displacement from the reference, base frame, mm.
        translation_mm: f64,
        /// Rotation from the reference, degrees.
        rotation_deg: f64,
        base_from_head: Isometry3<f64>,
    },
    /// After a drift the head came back within the re-arm band without a rebase.
    Returned { at: Duration, translation_mm: f64, rotation_deg: f64 },
    /// After a drift the head has been still for the settle window: `base_from_head` is the
    /// last measurement, a candidate for re-registration.
    Settled { at: Duration, base_from_head: Isometry3<f64>, translation_mm: f64, rotation_deg: f64 },
    /// No usable measurement since `since` for longer than the lost timeout.
    FiducialsLost { at: Duration, since: Duration },
    /// Measurements are back after a loss.
    FiducialsRecovered { at: Duration, lost_for: Duration },
}

/// The tracker's state (module doc).
#[derive(Debug, Clone)]
pub struct HeadTracker {
    cfg: TrackerConfig,
    reference: Isometry3<f64>,
    /// Latest time seen; earlier times are ignored.
    now: Option<Duration>,
    /// Time of the last usable measurement (or of the first update).
    last_seen: Option<Duration>,
    lost: bool,
    drifted: bool,
    settled: bool,
    /// Recent measurements (time, pose) for the settle test.
    window: Vec<(Duration, Isometry3<f64>)>,
    rejected: u64,
}

impl HeadTracker {
    /// A tracker around `reference_base_from_head` (the registration the session uses).
    pub fn new(cfg: TrackerConfig, reference_base_from_head: Isometry3<f64>) -> Result<Self, TrackerConfigError> {
        cfg.validate()?;
        Ok(HeadTracker {
            cfg,
            reference: reference_base_from_head,
            now: None,
            last_seen: None,
            lost: false,
            drifted: false,
            settled: false,
            window: Vec::new(),
            rejected: 0,
        })
    }

    /// New reference after a re-registration: re-arms drift detection.
    pub fn rebase(&mut self, new_reference_base_from_head: Isometry3<f64>) {
        self.reference = new_reference_base_from_head;
        self.drifted = false;
        self.settled = false;
        self.window.clear();
    }

    pub fn reference(&self) -> &Isometry3<f64> {
        &self.reference
    }

    /// Whether a drift is outstanding (emitted, not yet returned nor rebased).
    pub fn is_drifted(&self) -> bool {
        self.drifted
    }

    /// Whether the fiducials are currently lost.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Measurements ignored for a poor reprojection RMS or non-finite pose.
    pub fn rejected_measurements(&self) -> u64 {
        self.rejected
    }

    /// Displacement (mm) and rotation (degrees) of `base_from_head` from the reference.
    pub fn offset_from_reference(&self, base_from_head: &Isometry3<f64>) -> (f64, f64) {
        let t = (base_from_head.translation.vector - self.reference.translation.vector).norm();
        let r = base_from_head.rotation.angle_to(&self.reference.rotation).to_degrees();
        (t, r)
    }

    /// Feeds one camera instant: `measurement` is `None` when the frame was dropped or no
    /// registration could be made. Returns the events this instant causes, in order.
    pub fn update(&mut self, t: Duration, measurement: Option<&HeadRegistration>) -> Vec<TrackEvent> {
        let mut events = Vec::new();
        if self.now.is_some_and(|n| t < n) {
            return events; // time went backwards: a stale frame, ignored
        }
        self.now = Some(t);
        let since = *self.last_seen.get_or_insert(t);
        let usable = measurement.filter(|m| {
            let ok = m.reprojection_rms_px.is_finite()
                && m.reprojection_rms_px <= self.cfg.max_reprojection_rms_px
                && m.base_from_head.translation.vector.iter().all(|v| v.is_finite())
                && m.base_from_head.rotation.coords.iter().all(|v| v.is_finite());
            if !ok {
                self.rejected += 1;
            }
            ok
        });
        let Some(m) = usable else {
            let lost_for = t.saturating_sub(since);
            if !self.lost && lost_for.as_secs_f64() > self.cfg.lost_timeout_s {
                self.lost = true;
                events.push(TrackEvent::FiducialsLost { at: t, since });
            }
            return events;
        };
        if self.lost {
            self.lost = false;
            events.push(TrackEvent::FiducialsRecovered { at: t, lost_for: t.saturating_sub(since) });
        }
        self.last_seen = Some(t);
        let pose = m.base_from_head;
        let (dt, dr) = self.offset_from_reference(&pose);
        let beyond = dt > self.cfg.drift_threshold_mm || dr > self.cfg.drift_threshold_deg;
        let within_rearm = dt < self.cfg.drift_threshold_mm * self.cfg.rearm_fraction
            && dr < self.cfg.drift_threshold_deg * self.cfg.rearm_fraction;
        if !self.drifted && beyond {
            self.drifted = true;
            self.settled = false;
            self.window.clear();
            events.push(TrackEvent::Drift { at: t, translation_mm: dt, rotation_deg: dr, base_from_head: pose });
        } else if self.drifted && within_rearm {
            self.drifted = false;
            self.settled = false;
            self.window.clear();
            events.push(TrackEvent::Returned { at: t, translation_mm: dt, rotation_deg: dr });
            return events;
        }
        if self.drifted {
            self.settle_step(t, pose, dt, dr, &mut events);
        }
        events
    }

    /// Keeps the settle window and emits `Settled` once when the head has been still for it.
    fn settle_step(&mut self, t: Duration, pose: Isometry3<f64>, dt: f64, dr: f64, events: &mut Vec<TrackEvent>) {
        self.window.push((t, pose));
        let window = Duration::from_secs_f64(self.cfg.settle_window_s);
        // Keep one sample at or before the window's start, so its full span is covered.
        while self.window.len() > 2 && t.saturating_sub(self.window[1].0) >= window {
            self.window.remove(0);
        }
        let span = t.saturating_sub(self.window[0].0);
        let n = self.window.len() as f64;
        let mean = self.window.iter().map(|(_, p)| p.translation.vector).sum::<nalgebra::Vector3<f64>>() / n;
        let still =
            self.window.iter().all(|(_, p)| (p.translation.vector - mean).norm() <= self.cfg.settle_tolerance_mm);
        if !still {
            // Movement inside the window: restart it from the newest sample.
            self.settled = false;
            let last = self.window.len() - 1;
            self.window.drain(..last);
            return;
        }
        if !self.settled && span >= window {
            self.settled = true;
            events.push(TrackEvent::Settled { at: t, base_from_head: pose, translation_mm: dt, rotation_deg: dr });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion, Vector3};
    use proptest::prelude::*;

    fn reg(pose: Isometry3<f64>) -> HeadRegistration {
        HeadRegistration {
            base_from_head: pose,
            markers_used: vec![0],
            reprojection_rms_px: 0.1,
            cameras: Vec::new(),
            unknown_markers: 0,
            warnings: Vec::new(),
        }
    }

    fn reference() -> Isometry3<f64> {
        Isometry3::from_parts(Translation3::new(250.0, 0.0, 150.0), UnitQuaternion::from_euler_angles(0.0, 0.44, 0.0))
    }

    fn moved(dx: [f64; 3], rot_deg: [f64; 3]) -> Isometry3<f64> {
        let r = rot_deg.map(f64::to_radians);
        let b = reference();
        Isometry3::from_parts(
            Translation3::from(b.translation.vector + Vector3::from(dx)),
            UnitQuaternion::from_euler_angles(r[0], r[1], r[2]) * b.rotation,
        )
    }

    fn ms(t: u64) -> Duration {
        Duration::from_millis(t)
    }

    fn drifts(ev: &[TrackEvent]) -> usize {
        ev.iter().filter(|e| matches!(e, TrackEvent::Drift { .. })).count()
    }

    #[test]
    fn a_step_drifts_once_settles_once_and_rebase_rearms() {
        let cfg = TrackerConfig::default();
        let mut tr = HeadTracker::new(cfg, reference()).expect("valid");
        let mut all = Vec::new();
        for k in 0..10 {
            all.extend(tr.update(ms(k * 33), Some(&reg(reference()))));
        }
        assert!(all.is_empty(), "{all:?}");
        let step = moved([1.5, 0.0, 0.0], [0.0; 3]);
        for k in 10..100 {
            all.extend(tr.update(ms(k * 33), Some(&reg(step))));
        }
        assert_eq!(drifts(&all), 1, "{all:?}");
        let settled: Vec<_> = all.iter().filter(|e| matches!(e, TrackEvent::Settled { .. })).collect();
        assert_eq!(settled.len(), 1, "{all:?}");
        if let TrackEvent::Drift { translation_mm, at, .. } = &all[0] {
            assert!((translation_mm - 1.5).abs() < 1e-9);
            assert_eq!(*at, ms(330));
        }
        if let TrackEvent::Settled { at, .. } = settled[0] {
            assert!(*at >= ms(330 + 1000) && *at <= ms(330 + 1100), "{at:?}");
        }
        tr.rebase(step);
        assert!(!tr.is_drifted());
        let further = moved([3.0, 0.0, 0.0], [0.0; 3]);
        assert_eq!(drifts(&tr.update(ms(5000), Some(&reg(further)))), 1);
    }

    #[test]
    fn rotation_alone_drifts_and_return_rearms_with_hysteresis() {
        let mut tr = HeadTracker::new(TrackerConfig::default(), reference()).expect("valid");
        assert_eq!(drifts(&tr.update(ms(0), Some(&reg(moved([0.0; 3], [0.0, 0.0, 0.8]))))), 1);
        // Just below the threshold but above the re-arm band: still drifted, no new event.
        let ev = tr.update(ms(33), Some(&reg(moved([0.0; 3], [0.0, 0.0, 0.4]))));
        assert!(ev.is_empty() && tr.is_drifted(), "{ev:?}");
        assert_eq!(drifts(&tr.update(ms(66), Some(&reg(moved([0.0; 3], [0.0, 0.0, 0.8]))))), 0);
        let ev = tr.update(ms(99), Some(&reg(moved([0.0; 3], [0.0, 0.0, 0.1]))));
        assert!(matches!(ev.as_slice(), [TrackEvent::Returned { .. }]), "{ev:?}");
        assert_eq!(drifts(&tr.update(ms(132), Some(&reg(moved([0.0; 3], [0.0, 0.0, 0.8]))))), 1);
    }

    #[test]
    fn missing_frames_lose_and_recover_without_panicking() {
        let mut tr = HeadTracker::new(TrackerConfig::default(), reference()).expect("valid");
        assert!(tr.update(ms(0), Some(&reg(reference()))).is_empty());
        assert!(tr.update(ms(400), None).is_empty(), "within the timeout");
        let ev = tr.update(ms(600), None);
        assert_eq!(ev, vec![TrackEvent::FiducialsLost { at: ms(600), since: ms(0) }]);
        assert!(tr.update(ms(900), None).is_empty(), "lost is emitted once");
        // A poor measurement is no measurement.
        let mut poor = reg(reference());
        poor.reprojection_rms_px = 9.0;
        assert!(tr.update(ms(950), Some(&poor)).is_empty());
        assert_eq!(tr.rejected_measurements(), 1);
        let ev = tr.update(ms(1000), Some(&reg(reference())));
        assert_eq!(ev, vec![TrackEvent::FiducialsRecovered { at: ms(1000), lost_for: ms(1000) }]);
        // Time running backwards and a tracker that never saw a frame do not panic.
        assert!(tr.update(ms(10), Some(&reg(moved([5.0, 0.0, 0.0], [0.0; 3])))).is_empty());
        let mut fresh = HeadTracker::new(TrackerConfig::default(), reference()).expect("valid");
        assert!(fresh.update(ms(0), None).is_empty());
        assert_eq!(fresh.update(ms(2000), None).len(), 1);
    }

    #[test]
    fn bad_config_is_refused_by_name() {
        let e = HeadTracker::new(TrackerConfig { drift_threshold_mm: -1.0, ..TrackerConfig::default() }, reference())
            .expect_err("negative");
        assert_eq!(e.field, "drift_threshold_mm");
        let e = HeadTracker::new(TrackerConfig { settle_window_s: 1e30, ..TrackerConfig::default() }, reference())
            .expect_err("overflows a Duration");
        assert_eq!(e.field, "settle_window_s");
        let e = HeadTracker::new(TrackerConfig { rearm_fraction: 1.0, ..TrackerConfig::default() }, reference())
            .expect_err("no hysteresis");
        assert_eq!(e.field, "rearm_fraction");
    }

    fn small_motion(max_mm: f64, max_deg: f64) -> impl Strategy<Value = Option<([f64; 3], [f64; 3])>> {
        let frac = 0.95 / 3f64.sqrt();
        let t = -max_mm * frac..max_mm * frac;
        let r = -max_deg * frac * 0.5..max_deg * frac * 0.5;
        prop::option::weighted(
            0.9,
            ((t.clone(), t.clone(), t), (r.clone(), r.clone(), r))
                .prop_map(|(a, b)| ([a.0, a.1, a.2], [b.0, b.1, b.2])),
        )
    }

    proptest! {
        #[test]
        fn motion_below_threshold_never_drifts(
            thr_mm in 0.2f64..3.0,
            thr_deg in 0.2f64..2.0,
            steps in prop::collection::vec(small_motion(1.0, 1.0), 1..120),
        ) {
            let cfg = TrackerConfig { drift_threshold_mm: thr_mm, drift_threshold_deg: thr_deg, ..TrackerConfig::default() };
            let mut tr = HeadTracker::new(cfg, reference()).expect("valid");
            for (k, s) in steps.iter().enumerate() {
                let m = s.map(|(d, r)| reg(moved(d.map(|v| v * thr_mm), r.map(|v| v * thr_deg))));
                let ev = tr.update(ms(k as u64 * 33), m.as_ref());
                prop_assert_eq!(drifts(&ev), 0, "step {}: {:?}", k, ev);
            }
        }

        #[test]
        fn motion_beyond_threshold_drifts_exactly_once(
            thr_mm in 0.2f64..3.0,
            before in prop::collection::vec(small_motion(1.0, 1.0), 0..40),
            after in prop::collection::vec(prop::option::weighted(0.8, (1.1f64..3.0, -1.0f64..1.0, -1.0f64..1.0)), 1..80),
        ) {
            let cfg = TrackerConfig { drift_threshold_mm: thr_mm, drift_threshold_deg: 10.0, ..TrackerConfig::default() };
            let mut tr = HeadTracker::new(cfg, reference()).expect("valid");
            let mut n = 0;
            let mut k = 0u64;
            for s in &before {
                let m = s.map(|(d, _)| reg(moved(d.map(|v| v * thr_mm), [0.0; 3])));
                n += drifts(&tr.update(ms(k * 33), m.as_ref()));
                k += 1;
            }
            prop_assert_eq!(n, 0);
            // Beyond: the head sits further than the threshold (plus wobble), some frames lost.
            let mut seen_beyond = false;
            for s in &after {
                let m = s.map(|(x, y, z)| reg(moved([x * thr_mm, 0.3 * y * thr_mm, 0.3 * z * thr_mm], [0.0; 3])));
                seen_beyond |= m.is_some();
                n += drifts(&tr.update(ms(k * 33), m.as_ref()));
                k += 1;
            }
            prop_assert_eq!(n, usize::from(seen_beyond));
        }
    }
}

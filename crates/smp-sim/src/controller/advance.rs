//! Machine time: internal events (the end of a leg or a dwell, a timed fault) run in order at
//! their own time, motion and skin contact integrated between them, legs started, completed
//! and held.

use super::motion::{Block, Leg, LegKind};
use super::{Dwell, Fault, MachineState, SimController, SpindleDir, TIME_EPS_S};

impl SimController {
    pub(super) fn next_event_s(&self) -> Option<f64> {
        let mut next: Option<f64> = None;
        let mut consider = |t: f64| next = Some(next.map_or(t, |n: f64| n.min(t)));
        if let Some(leg) = self.leg {
            consider(leg.end_s());
        }
        if let Some(Dwell::Running { end_s }) = self.dwell {
            consider(end_s);
        }
        for (i, f) in self.cfg.faults.faults.iter().enumerate() {
            if let (Fault::ResetAtTime { time_s } | Fault::FeedRateAtTime { time_s, .. }, false) =
                (f, self.fault_fired[i])
            {
                consider(time_s.max(self.now_s));
            }
        }
        next
    }

    /// Runs every internal event up to `now_s` at its own time, then settles at `now_s`.
    /// Returns the time reached (time never goes backwards).
    pub(super) fn advance_to(&mut self, now_s: f64) -> f64 {
        let target = if now_s.is_finite() { now_s.max(self.now_s) } else { self.now_s };
        // Bounded: each event completes a leg, a dwell or a fault; a run has far fewer.
        for _ in 0..10_000_000u32 {
            let Some(te) = self.next_event_s() else { break };
            if te > target + TIME_EPS_S {
                break;
            }
            let te = te.max(self.now_s);
            self.count_starved(te);
            self.advance_motion(te);
            self.now_s = te;
            self.fire_timed_faults(te);
            self.pump(te);
        }
        self.count_starved(target);
        self.advance_motion(target);
        self.now_s = target;
        self.pump(target);
        target
    }

    /// Counts `now_s..until` as starved when the machine has nothing to do then: it has been
    /// streamed to, nothing moves, dwells or waits in its queues, and neither a hold nor an
    /// alarm stops it. Its clock runs on while the host prepares the next line, so this is
    /// the host's latency in machine time (large at high time scales).
    fn count_starved(&mut self, until: f64) {
        let waiting = self.stats.lines_received > 0
            && self.leg.is_none()
            && self.dwell.is_none()
            && self.blocks.is_empty()
            && self.current.is_none()
            && self.marlin.as_ref().is_none_or(|m| m.is_idle())
            && matches!(self.state, MachineState::Idle | MachineState::Run);
        if waiting && until > self.now_s {
            self.stats.starved_s += until - self.now_s;
        }
    }

    pub(super) fn powered(&self) -> bool {
        self.spindle != SpindleDir::Off && self.spindle_rpm > 0.0
    }

    /// Integrates motion (and skin contact) from `motion_time_s` to `t`, completing legs.
    pub(super) fn advance_motion(&mut self, t: f64) {
        for _ in 0..1_000_000u32 {
            let (Some(block), Some(leg)) = (self.blocks.front().copied(), self.leg) else { break };
            let end = leg.end_s();
            let t_to = t.min(end);
            if t_to > self.motion_time_s {
                let s_from = leg.s_at(self.motion_time_s);
                let s_to = if t_to >= end { leg.s0_mm + leg.length_mm() } else { leg.s_at(t_to) };
                let powered = self.powered();
                let kin = &self.kin;
                self.contacts.sample_needle_path(
                    self.skin.as_ref(),
                    |s| kin.needle(&block.point_at(s)),
                    |s| leg.time_at_s(s),
                    s_from,
                    s_to,
                    block.sample_step,
                    powered,
                );
                self.motion_time_s = t_to;
            }
            if end <= t + TIME_EPS_S {
                self.motion_time_s = self.motion_time_s.max(end);
                self.complete_leg(block, leg, end);
            } else {
                break;
            }
        }
        self.motion_time_s = self.motion_time_s.max(t);
    }

    fn complete_leg(&mut self, block: Block, leg: Leg, end_s: f64) {
        self.leg = None;
        match leg.kind {
            LegKind::Trapezoid { .. } => {
                self.blocks.pop_front();
                self.rest_mm = block.end_mm;
                self.s_held_mm = 0.0;
                if self.state == MachineState::Run {
                    self.start_front_leg(end_s);
                }
            }
            LegKind::Decel { .. } => {
                self.s_held_mm = leg.s0_mm + leg.length_mm();
                self.complete_hold(end_s);
            }
        }
    }

    /// Starts (or resumes, from rest) the front block at time `t`; Idle when none is left.
    pub(super) fn start_front_leg(&mut self, t: f64) {
        while let Some(block) = self.blocks.front().copied() {
            let remaining = block.length_mm - self.s_held_mm;
            if remaining <= 1e-9 {
                self.blocks.pop_front();
                self.rest_mm = block.end_mm;
                self.s_held_mm = 0.0;
                continue;
            }
            self.leg = Some(Leg {
                kind: LegKind::Trapezoid { len_mm: remaining, v: block.speed_mm_s, a: block.accel_mm_s2 },
                s0_mm: self.s_held_mm,
                t0_s: t,
            });
            self.motion_time_s = t;
            self.state = MachineState::Run;
            return;
        }
        self.state = MachineState::Idle;
    }

    pub(super) fn complete_hold(&mut self, t: f64) {
        self.leg = None;
        if let Some(block) = self.blocks.front().copied() {
            if self.s_held_mm >= block.length_mm - 1e-9 {
                self.blocks.pop_front();
                self.rest_mm = block.end_mm;
                self.s_held_mm = 0.0;
            }
        }
        self.state = MachineState::Hold { complete: true };
        if self.soft_limit_pending {
            self.soft_limit_alarm(t);
            return;
        }
        self.suspend_spindle_step(t);
    }
}

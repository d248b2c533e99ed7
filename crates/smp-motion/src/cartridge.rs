//! The cartridge during an operator's pause (grbl): a feed hold stops the arm, not the
//! cartridge, so a pause landing in a plunge or a dwell would leave a running needle in the
//! skin for as long as the operator takes (a blown-out dot). grbl 1.1's spindle stop override
//! (0x9E) stops the spindle once the hold is complete (`Hold:0`), and grbl itself restores it
//! at its speed on the next cycle start (`~`) before resuming the program.
//!
//! [`PauseGuard`] is the sans-I/O decision, fed with the status reports the relay polls:
//! - after a pause, at the first `Hold:0` that shows the cartridge running (or does not say),
//!   send the spindle stop; never earlier (grbl takes 0x9E in `Hold:1` too, but acting only on
//!   a complete hold keeps the rule obvious and the same on every grbl build);
//! - a later report with the spindle speed at 0 confirms the stop; one still running a second
//!   after it is a warning (the operator must stop the cartridge by hand);
//! - after a resume, grbl drops a `~` that arrives before the hold is complete (`Hold:1`), and
//!   the machine would stay held with the executor streaming into a full buffer: until a report
//!   shows the machine out of Hold (taken only from reports arriving a little after the resume,
//!   so that one already on the wire does not count), each `Hold:0` report arriving after that
//!   little while sends `~` again.
//!   A stray `~` is harmless to grbl (it is its own auto cycle start). The watch ends after
//!   [`RESUME_WATCH`], so that a hold from the machine's own button later is never overridden.
//!
//! The core writes the bytes through the operator gate (`GuardedWrite`, `Wire::write_if_paused` /
//! `Wire::write_if_running` in a live run), so that a spindle stop can never follow the `~` of
//! its pause. Times are the executor core's clock (time since the run started).

use std::time::Duration;

use smp_gcode::{MachineState, StatusReport};

/// A spindle stop not confirmed by a report showing speed 0 this long after it was written is
/// reported ([`CartridgeEventKind::StillRunning`]).
pub(crate) const STOP_CONFIRM_WINDOW: Duration = Duration::from_secs(1);
/// Reports arriving this soon after a resume may have been generated before grbl saw the `~`:
/// they neither confirm the resume nor end the watch.
pub(crate) const STALE_REPORT_WINDOW: Duration = Duration::from_millis(300);
/// How long after a resume a `Hold:0` report still sends `~` again.
pub(crate) const RESUME_WATCH: Duration = Duration::from_secs(30);

/// What happened to the cartridge around an operator's pause, for the run report.
#[derive(Debug, Clone, PartialEq)]
pub struct CartridgeEvent {
    /// Seconds since the run started (the executor's clock).
    pub at_s: f64,
    pub kind: CartridgeEventKind,
    /// The oldest dot whose plunge was sent and not yet confirmed executed (the one the
    /// machine is at, or on its way to), if any.
    pub dot: Option<u32>,
    /// Machine position of the status report that triggered the event (3 to 6 axes).
    pub machine_pos: Option<Vec<f64>>,
    /// `xyz` programs: how far the tip was above the plunge bottom of `dot`, mm (0 at depth;
    /// above the hover height the needle is out of the skin).
    pub tip_above_plunge_bottom_mm: Option<f64>,
    /// `xyz` programs: the tip's full distance (X, Y and Z) from the plunge bottom of `dot`,
    /// mm: a tip held at the right height but beside the dot's entry shows here.
    pub tip_from_plunge_bottom_mm: Option<f64>,
    /// One line for the operator and the log.
    pub message: String,
}

/// Kinds of [`CartridgeEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CartridgeEventKind {
    /// The hold was complete with the cartridge running: the spindle stop (0x9E) was written.
    StopSent,
    /// A report showed the cartridge stopped after the spindle stop.
    Stopped,
    /// The cartridge still ran [`STOP_CONFIRM_WINDOW`] after the spindle stop was written.
    StillRunning,
    /// grbl restored the cartridge on the cycle start (`[MSG:Restoring spindle]`).
    Restored,
    /// A `~` was sent again: grbl was still (or again) in `Hold:0` after the resume.
    CycleStartRepeated,
}

/// What the pump should do after a status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuardAction {
    None,
    /// Write the spindle stop (0x9E), if the pause is still in force.
    SendSpindleStop,
    /// The stop is confirmed by this report.
    Stopped,
    /// The stop is not confirmed in time.
    StillRunning,
    /// Write `~` again, if the run is still resumed.
    SendCycleStart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No operator pause in force.
    Off,
    /// Paused; waiting for `Hold:0`.
    AwaitHold,
    /// 0x9E written at `at`; `warned` once the window passed.
    StopSent { at: Duration, warned: bool },
    /// Confirmed stopped, or nothing to stop (the cartridge was off).
    Done,
}

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PauseGuard {
    stage: Stage,
    /// When the operator last resumed, while the resume is not yet confirmed by a report.
    resumed_at: Option<Duration>,
}

impl Default for PauseGuard {
    fn default() -> Self {
        PauseGuard { stage: Stage::Off, resumed_at: None }
    }
}

/// Whether the report shows the cartridge running: the `FS:` speed, else the `A:` field
/// (grbl prints it only with `Ov:`, so its absence alone says nothing); `None` when unknown.
fn spindle_running(s: &StatusReport) -> Option<bool> {
    s.spindle_rpm.map(|r| r > 0.0).or_else(|| s.accessories.as_ref().map(|a| a.spindle_cw || a.spindle_ccw))
}

impl PauseGuard {
    /// The operator's pause was admitted (its `!` is on the wire).
    pub(crate) fn on_pause(&mut self) {
        self.stage = Stage::AwaitHold;
        self.resumed_at = None;
    }

    /// The operator's resume was admitted (its `~` is on the wire; grbl restores a stopped
    /// cartridge itself on it). Returns whether a spindle stop had been sent in this pause.
    pub(crate) fn on_resume(&mut self, now: Duration) -> bool {
        let stopped = matches!(self.stage, Stage::StopSent { .. } | Stage::Done);
        self.stage = Stage::Off;
        self.resumed_at = Some(now);
        stopped
    }

    /// The gate refused the spindle stop (the operator resumed meanwhile): nothing was sent.
    pub(crate) fn stop_not_sent(&mut self) {
        if self.stage == Stage::AwaitHold {
            self.stage = Stage::Off;
        }
    }

    /// The spindle stop was written at `at`.
    pub(crate) fn stop_written(&mut self, at: Duration) {
        self.stage = Stage::StopSent { at, warned: false };
    }

    /// A status report arrived at `now` (the executor core's clock).
    pub(crate) fn on_status(&mut self, s: &StatusReport, now: Duration) -> GuardAction {
        let running = spindle_running(s);
        match (&s.state, self.stage) {
            (MachineState::Hold(0), Stage::AwaitHold) => {
                if running == Some(false) {
                    self.stage = Stage::Done;
                    GuardAction::None
                } else {
                    GuardAction::SendSpindleStop
                }
            }
            (MachineState::Hold(0), Stage::StopSent { at, warned }) => {
                if running == Some(false) {
                    self.stage = Stage::Done;
                    GuardAction::Stopped
                } else if !warned && now.saturating_sub(at) >= STOP_CONFIRM_WINDOW {
                    self.stage = Stage::StopSent { at, warned: true };
                    GuardAction::StillRunning
                } else {
                    GuardAction::None
                }
            }
            (MachineState::Hold(0), Stage::Off) => match self.resumed_at {
                // Perhaps generated before grbl saw the `~` (grbl prints a status report before
                // it acts on a cycle start read in the same pass), or while it restores the
                // spindle: not yet a sign that the `~` was dropped.
                Some(t) if now.saturating_sub(t) < STALE_REPORT_WINDOW => GuardAction::None,
                Some(t) if now.saturating_sub(t) < RESUME_WATCH => GuardAction::SendCycleStart,
                Some(_) => {
                    self.resumed_at = None;
                    GuardAction::None
                }
                None => GuardAction::None,
            },
            (MachineState::Hold(_), _) => GuardAction::None,
            (_, Stage::Off) => {
                if let Some(t) = self.resumed_at {
                    if now.saturating_sub(t) >= STALE_REPORT_WINDOW {
                        self.resumed_at = None; // grbl is out of Hold: the resume took
                    }
                }
                GuardAction::None
            }
            _ => GuardAction::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: MachineState, rpm: Option<f64>) -> StatusReport {
        StatusReport { spindle_rpm: rpm, ..StatusReport::new(state) }
    }

    #[test]
    fn the_stop_waits_for_a_complete_hold_and_is_confirmed_by_speed_zero() {
        let t0 = Duration::from_secs(7);
        let mut g = PauseGuard::default();
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(12000.0)), t0), GuardAction::None, "no pause");
        g.on_pause();
        assert_eq!(g.on_status(&report(MachineState::Run, Some(12000.0)), t0), GuardAction::None);
        // Hold:1 may last a while: nothing until Hold:0.
        for _ in 0..5 {
            assert_eq!(g.on_status(&report(MachineState::Hold(1), Some(12000.0)), t0), GuardAction::None);
        }
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(12000.0)), t0), GuardAction::SendSpindleStop);
        g.stop_written(t0);
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(12000.0)), t0), GuardAction::None);
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(0.0)), t0), GuardAction::Stopped);
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(0.0)), t0), GuardAction::None, "once");
        assert!(g.on_resume(t0), "a stop was sent in this pause");
    }

    #[test]
    fn an_unconfirmed_stop_warns_once_and_an_idle_cartridge_is_left_alone() {
        let t0 = Duration::from_secs(7);
        let mut g = PauseGuard::default();
        g.on_pause();
        // Unknown speed: sent anyway (harmless with the spindle off: grbl clears it).
        assert_eq!(g.on_status(&report(MachineState::Hold(0), None), t0), GuardAction::SendSpindleStop);
        g.stop_written(t0);
        let later = t0 + STOP_CONFIRM_WINDOW;
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(9000.0)), later), GuardAction::StillRunning);
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(9000.0)), later), GuardAction::None);
        let mut g = PauseGuard::default();
        g.on_pause();
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(0.0)), t0), GuardAction::None);
        assert!(g.on_resume(t0) && g.on_status(&report(MachineState::Idle, Some(0.0)), t0) == GuardAction::None);
        // Resumed before the stop went out: the gate refused it, nothing more is asked.
        let mut g = PauseGuard::default();
        g.on_pause();
        g.stop_not_sent();
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(9000.0)), t0), GuardAction::None);
    }

    #[test]
    fn a_resume_dropped_in_hold_1_is_repeated_at_hold_0_until_grbl_leaves_hold() {
        let t0 = Duration::from_secs(7);
        let mut g = PauseGuard::default();
        g.on_pause();
        assert_eq!(g.on_status(&report(MachineState::Hold(1), Some(12000.0)), t0), GuardAction::None);
        assert!(!g.on_resume(t0), "resumed before any stop");
        // A stale report from before the `~` does not end the watch, and a `Hold:0` that may
        // predate it does not repeat it.
        assert_eq!(g.on_status(&report(MachineState::Run, Some(12000.0)), t0), GuardAction::None);
        assert_eq!(g.on_status(&report(MachineState::Hold(1), Some(12000.0)), t0), GuardAction::None);
        let early = t0 + STALE_REPORT_WINDOW - Duration::from_millis(1);
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(12000.0)), early), GuardAction::None);
        let t1 = t0 + Duration::from_millis(400);
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(12000.0)), t1), GuardAction::SendCycleStart);
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(12000.0)), t1), GuardAction::SendCycleStart);
        assert_eq!(g.on_status(&report(MachineState::Run, Some(12000.0)), t1), GuardAction::None);
        // Out of Hold after the window: the watch is over, a later hold is left alone.
        assert_eq!(g.on_status(&report(MachineState::Hold(0), Some(12000.0)), t1), GuardAction::None);
        // The watch also ends by time.
        let mut g = PauseGuard::default();
        g.on_pause();
        g.on_resume(t0);
        assert_eq!(g.on_status(&report(MachineState::Hold(0), None), t0 + RESUME_WATCH), GuardAction::None);
    }
}

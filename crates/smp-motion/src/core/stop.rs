//! The end of a run: waiting for Idle after the last line, and the stop after a fault or an
//! operator's abort (hold, flush, journal the dots in flight as uncertain).

use std::time::Duration;

use smp_core::plan::DotState;
use smp_gcode::{MachineState, Realtime};

use super::io::{Action, JournalOp};
use super::pump::{Phase, Pump};
use crate::error::{FaultKind, FaultReport, MotionError};

/// Status query period while waiting for Idle after the last line (a fixed pace: waking on
/// every reply would turn it into a ping-pong).
const FINISH_QUERY_PERIOD: Duration = Duration::from_millis(50);
/// Status query period while waiting for a feed hold to complete after a fault.
const HOLD_QUERY_PERIOD: Duration = Duration::from_millis(20);

impl Pump {
    fn stream_time_s(&self) -> f64 {
        match (self.first_write, self.last_answer) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// After the last answer: wait (bounded) for the controller to report Idle.
    pub(super) async fn finish(&mut self) {
        self.phase = Phase::Finishing;
        // The wait for Idle polls faster on its own.
        self.ctx.push(Action::StatusPeriod(None));
        self.report.stream_time_s = self.stream_time_s();
        if self.sync_tag.is_some() {
            // Marlin: the appended M400 was the last line; its `ok` means every move is done.
            if !self.sync_done {
                self.report.errors.push("the final M400 was acknowledged only as queued, not processed".into());
            }
            return;
        }
        let mut deadline = self.now() + self.cfg.final_idle_timeout;
        self.last_state = None;
        let mut next_query = self.now();
        loop {
            if self.stop_request.is_some() {
                return;
            }
            let now = self.now();
            if self.operator_paused_at.is_some() {
                // Held by the operator: the wait for Idle starts again at the resume.
                deadline = now + self.cfg.final_idle_timeout;
            }
            if now >= next_query {
                self.streamer.realtime(Realtime::StatusQuery);
                next_query = now + FINISH_QUERY_PERIOD;
            }
            if let Err(kind) = self.transmit().await {
                self.report.errors.push(format!("while waiting for Idle: {kind}"));
                return;
            }
            self.wait_input(Some(next_query.min(deadline))).await;
            self.drain().await;
            if let Some(kind) = self.fault.take() {
                self.report.errors.push(format!("after the last line: {kind}"));
                return;
            }
            match &self.last_state {
                Some(MachineState::Idle) => return,
                Some(MachineState::Alarm) => {
                    self.report.errors.push("controller in Alarm after the last line".into());
                    return;
                }
                _ => {}
            }
            if self.port_dead {
                self.report.errors.push("port failed while waiting for Idle".into());
                return;
            }
            if self.now() >= deadline {
                self.report.errors.push(format!(
                    "controller not Idle {:.1} s after the last line (last state {:?})",
                    self.cfg.final_idle_timeout.as_secs_f64(),
                    self.last_state
                ));
                return;
            }
        }
    }

    /// Holds and flushes the controller where it still listens, journals the dots in flight
    /// as uncertain, and builds the error.
    pub(super) async fn stop_after_fault(&mut self, kind: FaultKind) -> MotionError {
        self.phase = Phase::Stopping;
        // From here only an emergency stop is admitted (never a resume of a controller being
        // flushed), and the relay's status queries stop: the flush polls on its own.
        self.ctx.push(Action::GateFaultStopping);
        self.apply_all_forwarded();
        self.end_operator_pause();
        let aborted = matches!(kind, FaultKind::Aborted { .. });
        self.report.aborted = aborted;
        self.report.stream_time_s = self.stream_time_s();
        let dropped = self.streamer.clear_queue();
        self.streamer.pause();
        if !dropped.is_empty() {
            self.report.errors.push(format!("{} queued line(s) not sent", dropped.len()));
        }
        let port_alive = !matches!(kind, FaultKind::PortIo { .. }) && !self.port_dead;
        let mut flushed = matches!(kind, FaultKind::ControllerReset) && self.streamer.in_flight() == 0;
        if port_alive && !flushed {
            flushed = if self.cfg.protocol.has_realtime() {
                let emergency = kind == FaultKind::Aborted { emergency: true };
                self.hold_and_flush(emergency).await
            } else {
                self.drain_in_flight().await
            };
        }
        // Journal what is known: answers that arrived, then every dot still in flight.
        let mut uncertain = Vec::new();
        for &d in &self.plunge_order {
            if matches!(self.states.get(&d), Some(DotState::Sent | DotState::Accepted)) {
                uncertain.push(d);
            }
        }
        let mut changes = std::mem::take(&mut self.pending);
        let executed_now = std::mem::take(&mut self.executed_pending);
        changes.extend(uncertain.iter().map(|&d| (d, DotState::Uncertain)));
        let at_s = self.now_s();
        let journaled = match self.ctx.journal(JournalOp::SetStates { changes, at_s }).await {
            Ok(()) => {
                self.executed_committed(executed_now);
                true
            }
            Err(e) => {
                self.report.errors.push(format!("journaling the fault failed: {e}"));
                false
            }
        };
        if self.run_open {
            let outcome = if aborted { format!("aborted: {kind}") } else { format!("stopped: {kind}") };
            if let Err(e) = self.ctx.journal(JournalOp::EndRun { outcome }).await {
                self.report.errors.push(format!("ending the run in the journal failed: {e}"));
            }
        }
        self.report.dots_uncertain = uncertain.clone();
        self.finalize_report();
        MotionError::Fault(Box::new(FaultReport {
            kind,
            uncertain,
            uncertain_journaled: journaled,
            controller_flushed: flushed,
            report: self.report.clone(),
        }))
    }

    /// Feed hold, wait until the machine stopped, then soft reset to flush the controller's
    /// buffers so that nothing of this program can run later. Returns whether the banner
    /// confirmed the reset. With `emergency` the soft reset already went out (no hold first).
    async fn hold_and_flush(&mut self, emergency: bool) -> bool {
        let settle = self.cfg.fault_settle;
        if !emergency {
            self.streamer.realtime(Realtime::FeedHold);
        }
        self.last_state = None;
        let deadline = self.now() + settle;
        let mut next_query = self.now();
        while !emergency && !self.estop_during_stop {
            // (an operator's emergency stop meanwhile has already sent the reset)
            let now = self.now();
            if now >= next_query {
                self.streamer.realtime(Realtime::StatusQuery);
                next_query = now + HOLD_QUERY_PERIOD;
            }
            self.transmit_raw();
            self.wait_input(Some(next_query.min(deadline))).await;
            self.drain_events();
            if self.port_dead {
                return false;
            }
            let stopped =
                matches!(self.last_state, Some(MachineState::Hold(0) | MachineState::Idle | MachineState::Alarm));
            if stopped || self.reset_seen || self.now() >= deadline {
                break;
            }
        }
        if !self.reset_seen && !emergency && !self.estop_during_stop {
            self.streamer.realtime(Realtime::SoftReset);
            self.transmit_raw();
        }
        let deadline = self.now() + settle;
        while !self.reset_seen && self.now() < deadline {
            self.wait_input(Some(deadline)).await;
            self.drain_events();
            if self.port_dead {
                return false;
            }
        }
        // Answers that raced the reset are in; commit them with the fault.
        self.reset_seen
    }

    /// Marlin has neither feed hold nor soft reset: with nothing more fed, wait (bounded) for
    /// the lines in the controller to be answered. Returns whether all were.
    async fn drain_in_flight(&mut self) -> bool {
        let deadline = self.now() + self.cfg.fault_settle.max(self.cfg.ack_timeout);
        while self.streamer.in_flight() > 0 && self.now() < deadline {
            self.transmit_raw();
            self.wait_input(Some(deadline)).await;
            self.drain_events();
            if self.port_dead {
                return false;
            }
        }
        self.streamer.in_flight() == 0
    }
}

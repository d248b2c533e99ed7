//! The operator's commands as the core books them, and the cartridge during a pause.
//!
//! A command reaches the core after the operator gate (`wire.rs` in a live run) admitted it
//! and wrote its realtime byte: here the streamer learns of it, the state changes, and the
//! cartridge guard (`cartridge.rs`) decides on the spindle stop, written back through the gate.

use std::collections::HashMap;

use smp_core::plan::DotState;
use smp_gcode::{LineRole, Program, Realtime, StatusReport};

use super::io::GateNeed;
use super::pump::{Phase, Pump};
use crate::cartridge::{CartridgeEvent, CartridgeEventKind, GuardAction};
use crate::control::{AppliedCommand, ExecutorState, ExecutorUpdate, OperatorCommand};
use crate::error::FaultKind;
use crate::wire::Forwarded;

/// Removes the first occurrence of `bytes` from `buf` (bytes the operator path already wrote).
fn strip_once(buf: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() || bytes.len() > buf.len() {
        return;
    }
    if let Some(i) = buf.windows(bytes.len()).position(|w| w == bytes) {
        buf.drain(i..i + bytes.len());
    }
}

/// Machine X Y Z at the end of each dot's plunge line in an `xyz` program (modal words carried
/// from the lines before it: the plunge line may give only Z).
pub(super) fn plunge_bottoms(program: &Program) -> HashMap<u32, [f64; 3]> {
    let mut out = HashMap::new();
    if !program.lines.iter().take(8).any(|l| l.text.contains("profile xyz,")) {
        return out;
    }
    let mut pos = [f64::NAN; 3];
    for line in &program.lines {
        let code = line.text.split(['(', ';']).next().unwrap_or("");
        for w in code.split_whitespace() {
            let (axis, value) = w.split_at(1);
            let i = match axis {
                "X" | "x" => 0,
                "Y" | "y" => 1,
                "Z" | "z" => 2,
                _ => continue,
            };
            if let Ok(v) = value.parse::<f64>() {
                pos[i] = v;
            }
        }
        if let (LineRole::Plunge, Some(d)) = (line.role, line.dot_id) {
            if pos.iter().all(|v| v.is_finite()) {
                out.insert(d, pos);
            }
        }
    }
    out
}

impl Pump {
    /// Applies every command the operator path has handled since the last look, in order.
    pub(super) fn apply_all_forwarded(&mut self) {
        for f in self.ctx.take_forwarded() {
            self.apply_forwarded(f);
        }
    }

    /// The core's side of an operator command the operator path admitted (or refused) and
    /// whose bytes it already wrote: the streamer's bookkeeping (its own copy of those bytes
    /// is dropped, any other realtime byte it holds is written), state, report and observer.
    fn apply_forwarded(&mut self, f: Forwarded) {
        let Forwarded { command: cmd, received_at, applied, bytes, written_at, write_error } = f;
        if let Some(detail) = write_error {
            self.port_dead = true;
            self.set_fault(FaultKind::PortIo { detail });
        }
        if applied {
            // Once stopping, a pause or resume admitted just before can change nothing: the
            // core is flushing the controller.
            let stopping = self.phase == Phase::Stopping;
            match cmd {
                OperatorCommand::Pause if !stopping => {
                    self.streamer.pause();
                    self.streamer.realtime(Realtime::FeedHold);
                    self.operator_paused_at = Some(received_at);
                    if self.cfg.protocol.has_realtime() {
                        self.guard.on_pause();
                    }
                    if self.phase != Phase::Handshake {
                        self.set_state(ExecutorState::Paused);
                    }
                    self.write_bookkeeping(&bytes);
                }
                OperatorCommand::Resume if !stopping => {
                    // The streamer learns of `~` while still paused, so no line rides along
                    // before the journal rules see it; lines flow from the next turn.
                    self.streamer.realtime(Realtime::CycleStart);
                    self.write_bookkeeping(&bytes);
                    self.end_operator_pause();
                    if self.cfg.protocol.has_realtime() {
                        self.guard.on_resume(written_at.unwrap_or(received_at));
                    }
                    if self.phase != Phase::Handshake {
                        self.streamer.resume();
                        self.set_state(ExecutorState::Running);
                    }
                }
                OperatorCommand::Pause | OperatorCommand::Resume => {}
                OperatorCommand::Abort => {
                    self.streamer.pause();
                    if self.cfg.protocol.has_realtime() {
                        // (Marlin: an abort drains the lines in flight, so no `P000`.)
                        self.streamer.realtime(Realtime::FeedHold);
                    }
                    if self.stop_request.is_none() {
                        self.stop_request = Some(FaultKind::Aborted { emergency: false });
                    }
                    self.write_bookkeeping(&bytes);
                }
                OperatorCommand::EmergencyStop => {
                    self.streamer.emergency_stop();
                    self.stop_request = Some(FaultKind::Aborted { emergency: true });
                    if self.phase == Phase::Stopping {
                        self.estop_during_stop = true;
                    }
                    self.write_bookkeeping(&bytes);
                }
            }
            if cmd != OperatorCommand::Resume {
                if let Some(w) = written_at {
                    let latency = w.saturating_sub(received_at).as_secs_f64();
                    self.report.feed_hold_latency_max_s = self.report.feed_hold_latency_max_s.max(latency);
                }
            }
        }
        self.report.operator_commands.push((cmd, applied));
        self.update(ExecutorUpdate::Command(AppliedCommand { command: cmd, received_at, written_at, applied }));
    }

    /// Polls a paused streamer after an operator command's bookkeeping and writes what it
    /// emits (realtime bytes or their stand-ins, never a new line) except `already`, the bytes
    /// the operator path wrote for that command.
    fn write_bookkeeping(&mut self, already: &[u8]) {
        let mut buf = Vec::new();
        let now = self.now();
        self.streamer.poll_transmit(now, &mut buf);
        // Events of a paused poll (a Marlin resend probe's `Sent`) are journal-neutral, but
        // drained here so their bookkeeping stays in order.
        self.drain_events();
        strip_once(&mut buf, already);
        self.write(&buf);
    }

    /// The cartridge during an operator's pause: feeds a status report to [`PauseGuard`]
    /// (`cartridge.rs`); what it decides is done at the next await point ([`Pump::run_guard`]).
    ///
    /// [`PauseGuard`]: crate::cartridge::PauseGuard
    pub(super) fn queue_guard(&mut self, s: &StatusReport) {
        if !self.cfg.protocol.has_realtime() || self.phase == Phase::Stopping {
            return;
        }
        let now = self.now();
        match self.guard.on_status(s, now) {
            GuardAction::None => {}
            action => self.guard_pending.push((action, s.clone())),
        }
    }

    /// Does the guard's pending decisions. The bytes go through the operator gate, so a
    /// spindle stop never follows the `~` of its pause, and a repeated `~` never follows a new
    /// pause.
    pub(super) async fn run_guard(&mut self) {
        for (action, s) in std::mem::take(&mut self.guard_pending) {
            match action {
                GuardAction::None => {}
                GuardAction::SendSpindleStop => {
                    match self.ctx.guarded_write(vec![smp_gcode::SPINDLE_STOP_BYTE], GateNeed::Paused).await {
                        Some(Ok(at)) => {
                            self.guard.stop_written(at);
                            let msg = "hold complete with the cartridge running: spindle stop (0x9E) sent".to_string();
                            self.cartridge_event(CartridgeEventKind::StopSent, Some(&s), msg);
                        }
                        Some(Err(detail)) => {
                            self.port_dead = true;
                            self.set_fault(FaultKind::PortIo { detail });
                        }
                        None => self.guard.stop_not_sent(),
                    }
                }
                GuardAction::Stopped => {
                    let msg = "cartridge stopped during the pause".to_string();
                    self.cartridge_event(CartridgeEventKind::Stopped, Some(&s), msg);
                }
                GuardAction::StillRunning => {
                    let msg = format!(
                        "the cartridge still runs {:.1} s after the spindle stop: stop it by hand (the needle may be \
                         in the skin)",
                        crate::cartridge::STOP_CONFIRM_WINDOW.as_secs_f64()
                    );
                    self.warn(msg.clone());
                    self.cartridge_event(CartridgeEventKind::StillRunning, Some(&s), msg);
                }
                GuardAction::SendCycleStart => match self.ctx.guarded_write(b"~".to_vec(), GateNeed::Running).await {
                    Some(Ok(_)) => {
                        let msg = "controller still held after the resume (grbl drops a cycle start before the hold \
                                   completes): cycle start sent again"
                            .to_string();
                        self.cartridge_event(CartridgeEventKind::CycleStartRepeated, Some(&s), msg);
                    }
                    Some(Err(detail)) => {
                        self.port_dead = true;
                        self.set_fault(FaultKind::PortIo { detail });
                    }
                    None => {}
                },
            }
        }
    }

    /// Records a cartridge event with the dot in flight and, for `xyz` programs, where the tip
    /// is against that dot's plunge bottom: the full distance (X, Y and Z) and the height.
    pub(super) fn cartridge_event(&mut self, kind: CartridgeEventKind, s: Option<&StatusReport>, message: String) {
        // The oldest dot sent and not confirmed executed is the one the machine is at; later
        // plunges may already wait in the controller's buffer.
        let dot = self
            .plunge_order
            .iter()
            .copied()
            .find(|d| matches!(self.states.get(d), Some(DotState::Sent | DotState::Accepted)));
        let pos = s.and_then(|s| s.mpos.as_ref().or(s.wpos.as_ref())).map(|p| p.as_slice().to_vec());
        let bottom = dot.and_then(|d| self.plunge_bottoms.get(&d).copied());
        let (above, from) = match (bottom, &pos) {
            (Some(b), Some(p)) if p.len() >= 3 => {
                let d = ((p[0] - b[0]).powi(2) + (p[1] - b[1]).powi(2) + (p[2] - b[2]).powi(2)).sqrt();
                (Some(p[2] - b[2]), Some(d))
            }
            _ => (None, None),
        };
        let mut message = message;
        if let Some(d) = dot {
            message.push_str(&format!("; dot {d} in flight"));
        }
        match (above, from, &pos) {
            (Some(a), Some(f), Some(p)) => message.push_str(&format!(
                ", tip at X {:.3} Y {:.3} Z {:.3} mm: {f:.3} mm from its plunge bottom, {a:.3} mm above it",
                p[0], p[1], p[2]
            )),
            (_, _, Some(p)) => message.push_str(&format!(", machine position {p:?}")),
            _ => {}
        }
        self.report.cartridge_events.push(CartridgeEvent {
            at_s: self.now_s(),
            kind,
            dot,
            machine_pos: pos,
            tip_above_plunge_bottom_mm: above,
            tip_from_plunge_bottom_mm: from,
            message,
        });
    }
}

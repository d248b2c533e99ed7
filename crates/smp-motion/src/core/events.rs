//! What the controller says, in the executor's terms: every [`HostEvent`] read while
//! streaming, finishing or stopping, and the rules that turn answers into dot states.

use smp_core::plan::DotState;
use smp_gcode::{HostEvent, LineRole, MachineState, Overrides, StatusReport};
use smp_store::CommandResult;

use super::io::{Action, LogLine};
use super::pump::{marlin_overrides, Phase, Pump};
use crate::cartridge::CartridgeEventKind;
use crate::error::FaultKind;

impl Pump {
    /// Sets the fault unless one is already set (the first cause is the one reported).
    pub(super) fn set_fault(&mut self, kind: FaultKind) {
        if self.phase == Phase::Stopping || self.fault.is_some() {
            self.report.errors.push(format!("after the fault: {kind}"));
        } else if self.ctx.operator_stop() == Some(true) {
            // The operator's emergency stop went out from the operator's thread (grbl Ctrl-X,
            // Marlin `M112`), perhaps before this pump took the command: what the controller
            // says next (`ALARM:3`, the reset banner, lost answers) is that stop's echo, and
            // the stop is the fault.
            self.report.errors.push(format!("after the emergency stop: {kind}"));
            self.stop_request = Some(FaultKind::Aborted { emergency: true });
        } else {
            self.fault = Some(kind);
        }
    }

    /// A reset nobody asked for (a reset from elsewhere, a controller that restarted): grbl
    /// prints the `ok` of the dwell it interrupted just before its banner, so a dwell answered
    /// in the same read as the banner may have been cut short. Its `executed`, not yet
    /// committed, is taken back: the dot stays in flight and the fault journals it uncertain.
    /// (An `executed` committed before the banner arrived stays; the note names the limit.)
    fn revoke_uncommitted_executions(&mut self) {
        if !self.cfg.protocol.has_realtime() {
            return;
        }
        for d in std::mem::take(&mut self.executed_pending) {
            self.pending.retain(|&(p, s)| !(p == d && s == DotState::Executed));
            self.states.insert(d, DotState::Accepted);
            self.report.errors.push(format!(
                "dot {d}: its dwell was answered in the same read as the controller's reset banner; not taken as \
                 executed (uncertain, resolved by looking)"
            ));
        }
    }

    /// A stop has begun: a fault is set or being handled, the operator's abort or emergency
    /// stop was admitted (its bytes may be on the wire before this pump applied it), or the
    /// soft reset went out. From then on no answer confirms a dot executed (issue 20): on grbl
    /// the stop's feed hold and reset interrupt a dwell, which grbl still answers `ok`.
    /// Marlin's abort only stops feeding and lets the lines it holds run to completion, so
    /// there an `ok` keeps its meaning until an emergency stop (`M112`) kills the firmware.
    pub(super) fn stop_begun(&self) -> bool {
        let operator = self.ctx.operator_stop();
        if !self.cfg.protocol.has_realtime() {
            return operator == Some(true) || self.estop_during_stop;
        }
        self.phase == Phase::Stopping || self.fault.is_some() || self.stop_request.is_some() || operator.is_some()
    }

    pub(super) fn line_text(&self, tag: u64) -> (usize, String) {
        let i = tag as usize;
        (i + 1, self.program.lines.get(i).map(|l| l.text.clone()).unwrap_or_default())
    }

    /// Dots whose dwell was only queued are confirmed by a later processed dwell or `M400`
    /// (the controller runs commands in order).
    fn confirm_awaiting(&mut self) {
        for d in std::mem::take(&mut self.awaiting_sync) {
            if self.states.get(&d) == Some(&DotState::Accepted) {
                self.push(d, DotState::Executed, true);
                self.executed_pending.push(d);
            }
        }
    }

    /// At the end of a run: a dot never confirmed executed (Marlin: dwell queued only, final
    /// `M400` not processed) is journaled uncertain, not executed. Returns the run outcome.
    pub(super) fn unconfirmed_to_uncertain(&mut self) -> String {
        let open: Vec<u32> = self
            .plunge_order
            .iter()
            .copied()
            .filter(|d| matches!(self.states.get(d), Some(DotState::Sent | DotState::Accepted)))
            .collect();
        if open.is_empty() {
            return "completed".to_string();
        }
        self.report.errors.push(format!("{} dot(s) acknowledged but never confirmed executed: uncertain", open.len()));
        for &d in &open {
            self.push(d, DotState::Uncertain, true);
        }
        self.report.dots_uncertain = open;
        "completed with unconfirmed dots".to_string()
    }

    pub(super) fn on_event(&mut self, ev: HostEvent) {
        let now_s = self.now_s();
        match ev {
            HostEvent::Sent { tag, wire_bytes } => {
                self.report.lines_sent += 1;
                let Some(line) = self.program.lines.get(tag as usize) else {
                    self.batch_lines.push((wire_bytes, None));
                    return;
                };
                let first = self.sent_once.insert(tag);
                let plunge = match (line.role, line.dot_id) {
                    (LineRole::Plunge, Some(d)) if first && !self.states.contains_key(&d) => Some(d),
                    _ => None,
                };
                self.batch_lines.push((wire_bytes, plunge));
                if self.run_open && first {
                    let (text, dot) = (line.text.clone(), line.dot_id);
                    self.ctx.push(Action::Log(LogLine::Sent { line_no: tag as u32 + 1, text, dot, at_s: now_s }));
                }
                if let Some(d) = plunge {
                    self.push(d, DotState::Sent, true);
                }
            }
            HostEvent::Accepted { tag } | HostEvent::Queued { tag } => {
                let processed = matches!(ev, HostEvent::Accepted { .. });
                self.last_answer = Some(self.now());
                if Some(tag) == self.sync_tag {
                    if processed {
                        self.sync_done = true;
                        self.confirm_awaiting();
                    }
                    return;
                }
                self.report.lines_acked += 1;
                if self.run_open {
                    let result = CommandResult::Ok;
                    self.ctx.push(Action::Log(LogLine::Answer { line_no: tag as u32 + 1, result, at_s: now_s }));
                }
                let Some(line) = self.program.lines.get(tag as usize) else { return };
                match (line.role, line.dot_id) {
                    (LineRole::Plunge, Some(d)) if self.states.get(&d) == Some(&DotState::Sent) => {
                        self.push(d, DotState::Accepted, false);
                    }
                    (LineRole::Dwell, Some(d)) => {
                        if self.stop_begun() {
                            // grbl answers `ok` to a dwell that a soft reset cut short
                            // (protocol.c: the buffer synchronisation returns on abort and the
                            // line's `ok` is still printed), and a dwell held by the stop's feed
                            // hold never finished: after a stop has begun an `ok` proves nothing.
                            // The dot stays in flight and the stop journals it uncertain.
                            self.report.errors.push(format!(
                                "dot {d}: its dwell was answered after the stop began; not taken as executed \
                                 (uncertain, resolved by looking)"
                            ));
                        } else if self.states.get(&d) != Some(&DotState::Accepted) {
                            let state = self.states.get(&d).map_or("unknown", |s| s.as_str());
                            self.set_fault(FaultKind::Desync {
                                detail: format!("dwell of dot {d} answered while the dot is {state}"),
                            });
                        } else if processed {
                            self.confirm_awaiting();
                            self.push(d, DotState::Executed, true);
                            self.executed_pending.push(d);
                        } else {
                            self.awaiting_sync.push(d);
                        }
                    }
                    _ => {}
                }
            }
            HostEvent::Rejected { tag, code } => {
                self.last_answer = Some(self.now());
                if self.run_open {
                    let result = CommandResult::Error(code.into());
                    self.ctx.push(Action::Log(LogLine::Answer { line_no: tag as u32 + 1, result, at_s: now_s }));
                }
                let (line_no, text) = self.line_text(tag);
                self.set_fault(FaultKind::Rejected { line_no, text, code });
            }
            HostEvent::Alarm { code, text } => {
                if let Some(t) = text {
                    self.report.controller_messages.push(format!("ALARM:{t}"));
                }
                self.set_fault(FaultKind::Alarm { code });
            }
            HostEvent::Status(s) => {
                self.report.status_reports += 1;
                self.note_bad_fields(&s);
                self.check_overrides(&s);
                self.queue_guard(&s);
                if matches!(s.state, MachineState::Alarm) && self.phase == Phase::Streaming {
                    self.set_fault(FaultKind::Alarm { code: None });
                }
                self.last_state = Some(s.state);
            }
            HostEvent::Ready => {}
            HostEvent::FeedRate { percent } => {
                // Marlin's M220 scales feeds and rapids alike: the same fault as grbl's `Ov:`.
                let o = marlin_overrides(percent);
                self.record_overrides(o);
                if percent != 100 && matches!(self.phase, Phase::Streaming | Phase::Finishing) {
                    self.streamer.pause();
                    self.set_fault(FaultKind::OverrideActive { feed_pct: percent, rapid_pct: percent });
                }
            }
            HostEvent::Message(m) => {
                if m == "Restoring spindle" {
                    self.cartridge_event(
                        CartridgeEventKind::Restored,
                        None,
                        "the controller restored the cartridge on the cycle start".into(),
                    );
                }
                self.report.controller_messages.push(m)
            }
            HostEvent::Feedback { line, .. } => self.report.controller_messages.push(line),
            HostEvent::Welcome { version } => {
                self.report.controller_version = Some(version);
                // A banner mid-stream is a restart even with nothing in flight (the core then
                // reports no `Reset`): position and modal state are gone.
                if matches!(self.phase, Phase::Streaming | Phase::Finishing) && !self.reset_seen {
                    self.reset_seen = true;
                    self.revoke_uncommitted_executions();
                    self.set_fault(FaultKind::ControllerReset);
                }
            }
            HostEvent::Reset { lost_tags } => {
                if !self.reset_seen && self.phase != Phase::Stopping {
                    self.revoke_uncommitted_executions();
                }
                self.reset_seen = true;
                if self.phase != Phase::Stopping {
                    self.set_fault(FaultKind::ControllerReset);
                } else if !lost_tags.is_empty() {
                    self.report.errors.push(format!("flushed {} line(s) from the controller", lost_tags.len()));
                }
            }
            HostEvent::AckTimeout { tag } => {
                let (line_no, text) = self.line_text(tag);
                self.set_fault(FaultKind::AckTimeout { line_no, text });
            }
            HostEvent::UnexpectedOk => {
                self.set_fault(FaultKind::Desync { detail: "`ok` with no line in flight".into() })
            }
            HostEvent::UnexpectedError { code } => {
                self.set_fault(FaultKind::Desync { detail: format!("`error:{code}` with no line in flight") })
            }
            HostEvent::Desync(detail) => self.set_fault(FaultKind::Desync { detail }),
            HostEvent::Note(n) => self.note(n),
            HostEvent::Unparsed(s) => self.unknown_line(s),
        }
    }

    /// Status fields that did not parse: a protocol note each (the report's other fields
    /// were used).
    pub(super) fn note_bad_fields(&mut self, s: &StatusReport) {
        for f in &s.bad_fields {
            self.note(format!("status report field unreadable: {f}"));
        }
    }

    /// Remembers the overrides and warns once per spindle override value other than 100 %.
    pub(super) fn record_overrides(&mut self, o: Overrides) {
        let before = self.report.last_overrides.replace(o);
        if o.spindle_pct != 100 && before.map(|b| b.spindle_pct) != Some(o.spindle_pct) {
            self.warn(format!(
                "spindle (cartridge speed) override at {} % on the controller; the programmed speed is 100 %",
                o.spindle_pct
            ));
        }
    }

    /// Patient safety: the verifier proved the programmed feeds, and a feed or rapid override
    /// other than 100 % scales them (200 % doubles the plunge feed). Seen while lines flow,
    /// it stops the stream at once (the fault path holds, then flushes, the controller); an
    /// unreadable `Ov:` field is treated the same, the override being unknown.
    fn check_overrides(&mut self, s: &StatusReport) {
        if self.phase == Phase::Stopping {
            return;
        }
        let flowing = matches!(self.phase, Phase::Streaming | Phase::Finishing);
        if s.overrides_unreadable() && flowing {
            let field = s.bad_fields.iter().find(|f| f.starts_with("Ov:")).cloned().unwrap_or_default();
            self.streamer.pause();
            self.set_fault(FaultKind::OverrideUnreadable { field });
            return;
        }
        let Some(o) = s.overrides else { return };
        self.record_overrides(o);
        if !o.motion_as_programmed() && flowing {
            self.streamer.pause();
            self.set_fault(FaultKind::OverrideActive { feed_pct: o.feed_pct, rapid_pct: o.rapid_pct });
        }
    }
}

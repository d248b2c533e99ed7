//! Faults the controller injects on purpose (a reset or alarm at a line, a lost `ok`, lost
//! or corrupted bytes, a disconnect, a feed-rate change), and where the state machine fires
//! them, so a fault run is as deterministic as a clean one.

use serde::{Deserialize, Serialize};
use smp_core::SpecError;

use super::{codes, Assembler, MachineState, SimController, MSG_CRITICAL, TIME_EPS_S};

/// Faults the controller injects on purpose, to test the host's recovery.
///
/// Each [`Fault`] is one event or one rate; `sim/faults/*.toml` scenarios
/// ([`crate::faults::FaultScenario`]) list them as `[[controller]]` tables. The rate faults
/// draw from one ChaCha8 stream seeded by
/// [`ControllerConfig::fault_seed`](super::ControllerConfig::fault_seed), one draw per
/// received byte and rate fault in list order, so a run is reproduced exactly by the same
/// bytes, plan and seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// Highest grbl 1.1h alarm code (9: homing failed to find the switch).
pub const MAX_ALARM_CODE: u8 = 9;

impl FaultPlan {
    /// Checks every fault's parameters; `what` names the document in the error.
    pub fn validate(&self, what: &'static str) -> Result<(), SpecError> {
        for (i, fault) in self.faults.iter().enumerate() {
            let field = |name: &str| format!("controller[{i}].{name}");
            match *fault {
                Fault::ResetAtTime { time_s } => {
                    if !(time_s.is_finite() && time_s >= 0.0) {
                        return Err(SpecError::invalid(
                            what,
                            field("time_s"),
                            format!("is {time_s}; use a machine time >= 0 s"),
                        ));
                    }
                }
                Fault::ByteLoss { rate } | Fault::ByteCorruption { rate } => {
                    if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
                        return Err(SpecError::invalid(
                            what,
                            field("rate"),
                            format!("is {rate}; use a probability per byte in [0, 1], e.g. 0.001"),
                        ));
                    }
                }
                Fault::ResetBeforeLine { line }
                | Fault::DisconnectAtLine { line }
                | Fault::LostOk { line }
                | Fault::AlarmAtLine { line, .. } => {
                    if line == 0 {
                        return Err(SpecError::invalid(what, field("line"), "is 0; lines count from 1"));
                    }
                    if let Fault::AlarmAtLine { code, .. } = *fault {
                        if !(1..=MAX_ALARM_CODE).contains(&code) {
                            return Err(SpecError::invalid(
                                what,
                                field("code"),
                                format!("is {code}; grbl 1.1 alarms are 1-{MAX_ALARM_CODE} (2 = soft limit)"),
                            ));
                        }
                    }
                }
                Fault::FeedRateAtTime { time_s, percent } => {
                    if !(time_s.is_finite() && time_s >= 0.0) {
                        return Err(SpecError::invalid(
                            what,
                            field("time_s"),
                            format!("is {time_s}; use a machine time >= 0 s"),
                        ));
                    }
                    if !(10..=200).contains(&percent) {
                        return Err(SpecError::invalid(
                            what,
                            field("percent"),
                            format!("is {percent}; grbl and Marlin take 10-200 % (100 = as programmed)"),
                        ));
                    }
                }
                Fault::DropByte { .. } | Fault::CorruptByte { .. } => {}
            }
        }
        Ok(())
    }
}

/// One injected fault. The one-shot kinds fire at most once; the rate kinds act on every
/// received byte with their probability.
///
/// Lines are counted as the controller reads them (1-based, blank lines included), so
/// `line = N` is the N-th G-code line of the stream the host sent since power-up (grbl `$`
/// system commands, such as the `$I` and `$$` a host asks before a program, are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Fault {
    /// A soft reset (as if 0x18 arrived, ALARM:3 if moving) instead of executing the
    /// `line`-th line the controller reads: that line is lost without a response, as are all
    /// lines buffered after it.
    ResetBeforeLine { line: u64 },
    /// A soft reset at machine time `time_s`.
    ResetAtTime { time_s: f64 },
    /// The `index`-th received byte (0-based, every byte counted) is lost on the wire.
    DropByte { index: u64 },
    /// The `index`-th received byte is XORed with `xor` before the controller sees it.
    CorruptByte { index: u64, xor: u8 },
    /// Each received byte is lost on the wire with probability `rate`.
    ByteLoss { rate: f64 },
    /// Each received byte has one random bit flipped with probability `rate`, before the
    /// controller sees it (so a flip can also forge a real-time byte, as on a real wire).
    ByteCorruption { rate: f64 },
    /// The link dies when the controller is about to read the `line`-th line: that line and
    /// everything after it is lost, nothing more is sent, and the pty runner closes its end
    /// (the host reads EOF/EIO or silence). Motion already planned runs to its end, as a
    /// grbl whose USB cable is pulled keeps executing its planner.
    DisconnectAtLine { line: u64 },
    /// The `line`-th line is executed but its response (`ok` or `error:N`) is never sent:
    /// a character-counting host waits forever for it.
    LostOk { line: u64 },
    /// At machine time `time_s` the feed rate percentage becomes `percent`, as an operator
    /// turning the feed override knob would set it: grbl's feed override (reported in `Ov:`),
    /// Marlin's `M220 S<percent>`. Moves planned from then on run at that percentage of their
    /// programmed feed (the simulator does not rescale blocks already planned).
    FeedRateAtTime { time_s: f64, percent: u16 },
    /// `ALARM:code` is raised instead of executing the `line`-th line, which gets no
    /// response. Code 2 (soft limit) stops under control like a real soft limit; code 1
    /// (hard limit) stops at once; both lock the controller until a reset ("Reset to
    /// continue"). Other codes stop at once and lock until `$X` or a reset.
    AlarmAtLine { line: u64, code: u8 },
}

/// A fault that fired, for the report. Rate faults appear once, at their first firing; their
/// totals are in [`ControllerStats`](super::ControllerStats).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FiredFault {
    /// Index in [`FaultPlan::faults`].
    pub fault: usize,
    pub time_s: f64,
}

impl SimController {
    pub(super) fn fire_timed_faults(&mut self, t: f64) {
        for i in 0..self.cfg.faults.faults.len() {
            match (self.cfg.faults.faults[i], self.fault_fired[i]) {
                (Fault::ResetAtTime { time_s }, false) if time_s <= t + TIME_EPS_S => {
                    self.mark_fired(i, t);
                    self.soft_reset(t);
                }
                (Fault::FeedRateAtTime { time_s, percent }, false) if time_s <= t + TIME_EPS_S => {
                    self.mark_fired(i, t);
                    self.set_feed_rate_percent(percent);
                }
                _ => {}
            }
        }
    }

    /// A rate fault is reported once, at its first firing.
    pub(super) fn mark_rate_fired(&mut self, i: usize, t: f64) {
        if !self.fault_fired[i] {
            self.mark_fired(i, t);
        }
    }

    pub(super) fn mark_fired(&mut self, i: usize, t: f64) {
        self.fault_fired[i] = true;
        self.faults_fired.push(FiredFault { fault: i, time_s: t });
    }

    /// The `disconnect_at_line` fault: the line being read and everything buffered is lost,
    /// no further byte is taken or sent; the planner runs out on its own.
    fn disconnect(&mut self) {
        self.disconnected = true;
        self.rx.clear();
        self.asm = Assembler::default();
        self.unacked_bytes = 0;
    }

    /// True once a `disconnect_at_line` fault has cut the link: the pty runner then closes
    /// its end of the pty.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    /// The `alarm_at_line` fault, raised instead of executing a line (no response to it).
    pub(super) fn injected_alarm(&mut self, code: u8, raw_len: usize, t: f64) {
        self.unacked_bytes = self.unacked_bytes.saturating_sub(raw_len);
        if code == codes::ALARM_SOFT_LIMIT {
            self.soft_limit_violation(t);
            return;
        }
        // Any other alarm stops the machine where it is, as grbl's mc_reset does.
        self.stop_in_place(t);
        self.state = MachineState::Alarm;
        self.alarm(code);
        if code == codes::ALARM_HARD_LIMIT {
            self.critical = true;
            self.emit(MSG_CRITICAL);
        }
    }

    /// Index of the first unfired fault matching `kind` whose `line` is the line being read.
    pub(super) fn one_shot_line_fault(&self, kind: impl Fn(&Fault) -> bool) -> Option<usize> {
        self.cfg.faults.faults.iter().enumerate().position(|(i, f)| {
            let line = match *f {
                Fault::ResetBeforeLine { line }
                | Fault::DisconnectAtLine { line }
                | Fault::LostOk { line }
                | Fault::AlarmAtLine { line, .. } => line,
                _ => return false,
            };
            !self.fault_fired[i] && line == self.lines_read && kind(f)
        })
    }

    /// Counts a line read and plays the line-numbered faults that stop it from being
    /// executed (a disconnect or a reset before it); `true` when one fired.
    pub(crate) fn line_read_faults(&mut self, t: f64) -> bool {
        self.lines_read += 1;
        if let Some(i) = self.one_shot_line_fault(|f| matches!(f, Fault::DisconnectAtLine { .. })) {
            self.mark_fired(i, t);
            self.disconnect();
            return true;
        }
        if let Some(i) = self.one_shot_line_fault(|f| matches!(f, Fault::ResetBeforeLine { .. })) {
            self.mark_fired(i, t);
            self.soft_reset(t);
            return true;
        }
        false
    }
}

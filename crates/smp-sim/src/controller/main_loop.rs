//! grbl's protocol loop and main loop: lines assembled from the RX ring, executed op by op
//! (synchronising, dwelling, queueing motion, waiting for planner room), and answered with
//! `ok` or `error:N`.

use std::collections::VecDeque;

use smp_core::kinematics::executed_dwell_s;

use super::gcode::{self, Op};
use super::motion::Block;
use super::{codes, marlin, Dwell, Fault, MachinePos, MachineState, SimController, SpindleDir, TIME_EPS_S};

/// grbl's protocol-loop line filter: one line being assembled from raw bytes.
#[derive(Debug, Clone, Default)]
pub(super) struct Assembler {
    pub(super) chars: Vec<u8>,
    pub(super) overflow: bool,
    pub(super) paren: bool,
    pub(super) semicolon: bool,
    pub(super) raw_len: usize,
}

/// A complete line as grbl's parser receives it.
pub(super) struct AssembledLine {
    pub(super) text: Vec<u8>,
    pub(super) overflow: bool,
    pub(super) raw_len: usize,
}

impl Assembler {
    fn push(&mut self, c: u8, max_chars: usize) -> Option<AssembledLine> {
        self.raw_len += 1;
        if c == b'\n' || c == b'\r' {
            let done = std::mem::take(self);
            return Some(AssembledLine { text: done.chars, overflow: done.overflow, raw_len: done.raw_len });
        }
        if self.overflow || self.paren || self.semicolon {
            if c == b')' {
                self.paren = false;
            }
        } else if c <= b' ' || c == b'/' {
            // whitespace, control bytes (NUL included) and block delete are thrown away
        } else if c == b'(' {
            self.paren = true;
        } else if c == b';' {
            self.semicolon = true;
        } else if self.chars.len() >= max_chars - 1 {
            self.overflow = true;
        } else {
            self.chars.push(c.to_ascii_uppercase());
        }
        None
    }

    pub(super) fn is_empty(&self) -> bool {
        self.raw_len == 0
    }
}

/// The line the main loop is executing: its remaining physical effects.
pub(super) struct LineExec {
    pub(super) ops: VecDeque<Op>,
    pub(super) raw_len: usize,
    /// The soft-limit check of the front `Line` op has passed.
    pub(super) front_checked: bool,
}

impl SimController {
    pub(super) fn emit(&mut self, line: &str) {
        self.send_raw(line.as_bytes());
        // Marlin ends lines with `\n` alone; grbl with `\r\n`.
        self.send_raw(if self.marlin.is_some() { b"\n" } else { b"\r\n" });
    }

    /// Every byte to the host goes through here, so that a cut link sends nothing.
    pub(super) fn send_raw(&mut self, bytes: &[u8]) {
        if !self.disconnected {
            self.tx.extend_from_slice(bytes);
        }
    }

    /// Sends the line's response and releases its bytes from the host's count.
    pub(super) fn respond(&mut self, result: Result<(), u8>, raw_len: usize) {
        self.unacked_bytes = self.unacked_bytes.saturating_sub(raw_len);
        let lost = self.one_shot_line_fault(|f| matches!(f, Fault::LostOk { .. }));
        if let Some(i) = lost {
            let t = self.now_s;
            self.mark_fired(i, t);
            self.stats.responses_withheld += 1;
            return;
        }
        match result {
            Ok(()) => {
                self.emit("ok");
                self.stats.oks_sent += 1;
            }
            Err(code) => {
                self.emit(&format!("error:{code}"));
                self.stats.errors_sent += 1;
                *self.stats.error_codes.entry(code).or_insert(0) += 1;
            }
        }
    }

    /// grbl's main loop: runs the current line as far as it can, then reads and runs further
    /// lines, until something blocks (planner full, sync, dwell, hold, critical alarm).
    pub(super) fn pump(&mut self, t: f64) {
        if self.marlin.is_some() {
            self.marlin_pump(t);
            return;
        }
        loop {
            if self.critical || matches!(self.state, MachineState::Hold { .. }) {
                return;
            }
            if self.current.is_some() {
                if !self.step_current(t) {
                    return;
                }
                continue;
            }
            let Some(line) = self.read_line() else { return };
            self.start_line(line, t);
        }
    }

    fn read_line(&mut self) -> Option<AssembledLine> {
        while let Some(b) = self.rx.pop_front() {
            if let Some(line) = self.asm.push(b, self.cfg.line_buffer_chars) {
                return Some(line);
            }
        }
        None
    }

    fn start_line(&mut self, line: AssembledLine, t: f64) {
        if !line.overflow && line.text.first() == Some(&b'$') {
            // A system command is not one of the lines a fault scenario counts: a scenario
            // names G-code lines, whatever the host asked before (`$I`, `$$`).
            let (result, then_reset) = self.system_command(&line.text);
            self.respond(result, line.raw_len);
            if then_reset {
                self.soft_reset(t);
            }
            return;
        }
        if self.line_read_faults(t) {
            return;
        }
        if let Some(i) = self.one_shot_line_fault(|f| matches!(f, Fault::AlarmAtLine { .. })) {
            self.mark_fired(i, t);
            if let Fault::AlarmAtLine { code, .. } = self.cfg.faults.faults[i] {
                self.injected_alarm(code, line.raw_len, t);
            }
            return;
        }
        if line.overflow {
            self.respond(Err(codes::ERROR_OVERFLOW), line.raw_len);
        } else if line.text.is_empty() {
            self.respond(Ok(()), line.raw_len);
        } else if self.state == MachineState::Alarm {
            self.respond(Err(codes::ERROR_SYSTEM_GC_LOCK), line.raw_len);
        } else {
            match gcode::execute_line(&mut self.gc, &line.text, self.axis_words) {
                Err(code) => self.respond(Err(code), line.raw_len),
                Ok(ops) if ops.is_empty() => self.respond(Ok(()), line.raw_len),
                Ok(ops) => {
                    self.current = Some(LineExec { ops: ops.into(), raw_len: line.raw_len, front_checked: false });
                }
            }
        }
    }

    /// Executes the current line's ops in order. Returns true when the line has finished
    /// (its `ok` is sent), false when it is blocked.
    pub(super) fn step_current(&mut self, t: f64) -> bool {
        let Some(mut exec) = self.current.take() else { return true };
        let check_mode = self.state == MachineState::Check;
        loop {
            let Some(op) = exec.ops.front().cloned() else {
                self.respond(Ok(()), exec.raw_len);
                return true;
            };
            let synchronising = !matches!(op, Op::Line { .. });
            if synchronising && !check_mode && !self.blocks.is_empty() {
                self.current = Some(exec);
                return false; // protocol_buffer_synchronize: wait for the planner to drain
            }
            match op {
                Op::Spindle { dir, rpm } => {
                    if !check_mode {
                        self.set_spindle(dir, rpm, t);
                    }
                }
                Op::Coolant => {}
                Op::Dwell { seconds } => {
                    if !check_mode {
                        match self.dwell {
                            None => {
                                // Marlin dwells exactly; grbl in whole DWELL_TIME_STEPs.
                                let q = if self.marlin.is_some() { 0.0 } else { self.cfg.dwell_quantum_s };
                                let d = executed_dwell_s(seconds, q);
                                if d > 0.0 {
                                    self.dwell = Some(Dwell::Running { end_s: t + d });
                                    self.current = Some(exec);
                                    return false;
                                }
                            }
                            Some(Dwell::Running { end_s }) if end_s <= t + TIME_EPS_S => self.dwell = None,
                            Some(_) => {
                                self.current = Some(exec);
                                return false;
                            }
                        }
                    }
                }
                Op::Pause => {
                    exec.ops.pop_front();
                    if !check_mode {
                        self.state = MachineState::Hold { complete: true };
                        self.current = Some(exec);
                        return false;
                    }
                    continue;
                }
                Op::ProgramEnd => {
                    if !check_mode {
                        self.set_spindle(SpindleDir::Off, 0.0, t);
                    }
                    self.emit("[MSG:Pgm End]");
                }
                Op::Line { target_mm, feed_mm_per_min } => {
                    // Marlin's software endstops clamp the target silently instead of alarming.
                    let target_mm = if self.marlin.is_some() {
                        marlin::clamp_to_travel(&self.limits[..self.axis_words.count], target_mm)
                    } else {
                        target_mm
                    };
                    if !exec.front_checked && self.marlin.is_none() {
                        if self.settings.soft_limits() && !self.within_limits(&target_mm) {
                            self.current = Some(exec);
                            self.soft_limit_violation(t);
                            return false;
                        }
                        exec.front_checked = true;
                    }
                    if !check_mode {
                        if self.blocks.len() >= self.cfg.planner_blocks {
                            self.current = Some(exec);
                            return false; // planner full: the ok waits for room
                        }
                        let feed = feed_mm_per_min.map(|f| f * f64::from(self.feed_pct) / 100.0);
                        self.queue_block(target_mm, feed, t);
                    }
                    exec.front_checked = false;
                }
            }
            exec.ops.pop_front();
        }
    }

    fn set_spindle(&mut self, dir: SpindleDir, rpm: f64, t: f64) {
        self.spindle = dir;
        let (max, min) = (self.settings.rpm_max(), self.settings.rpm_min());
        // grbl's spindle_compute_pwm_value, for the speed it reports.
        self.spindle_rpm = match dir {
            SpindleDir::Off => 0.0,
            _ if min >= max || rpm >= max => max,
            _ if rpm <= min => {
                if rpm == 0.0 {
                    0.0
                } else {
                    min
                }
            }
            _ => rpm,
        };
        self.contacts.power_changed(t, self.powered());
    }

    fn queue_block(&mut self, target_mm: MachinePos, feed_mm_per_min: Option<f64>, t: f64) {
        let end = self.step_rounded(target_mm);
        let limits = &self.limits[..self.axis_words.count];
        let step = self.cfg.sample_step_mm;
        let Some(block) = Block::new(&self.kin, limits, self.planner_end_mm, end, feed_mm_per_min, step) else {
            return; // empty block: nothing to move
        };
        self.planner_end_mm = end;
        self.blocks.push_back(block);
        if self.state == MachineState::Idle && self.blocks.len() == 1 && !self.steppers_suspended {
            self.s_held_mm = 0.0;
            self.start_front_leg(t);
        }
    }
}

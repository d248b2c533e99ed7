//! Bytes as they arrive (faults on the wire, grbl's real-time commands picked out of the
//! stream, the RX ring) and what the real-time commands do: status reports, feed hold, cycle
//! start, the spindle stop override, soft reset; alarms and soft limits.

use rand::Rng;

use super::gcode::{fmt0, fmt3, GcState};
use super::motion::{Leg, LegKind};
use super::{codes, Assembler, Dwell, Fault, MachinePos, MachineState, SimController, SpindleDir, SpindleStopOvr};
use super::{GRBL_BANNER, MSG_ALARM_LOCK, MSG_CRITICAL, MSG_SPINDLE_RESTORE, REALTIME_SPINDLE_STOP};

impl SimController {
    pub(super) fn handle_byte(&mut self, b: u8, t: f64) {
        let index = self.bytes_seen;
        self.bytes_seen += 1;
        if self.disconnected {
            self.stats.bytes_after_disconnect += 1;
            return;
        }
        let mut b = b;
        for i in 0..self.cfg.faults.faults.len() {
            match self.cfg.faults.faults[i] {
                Fault::DropByte { index: n } if n == index && !self.fault_fired[i] => {
                    self.mark_fired(i, t);
                    self.stats.bytes_dropped_by_fault += 1;
                    return;
                }
                Fault::CorruptByte { index: n, xor } if n == index && !self.fault_fired[i] => {
                    self.mark_fired(i, t);
                    self.stats.bytes_corrupted_by_fault += 1;
                    b ^= xor;
                }
                // The guards draw from the stream: exactly one draw per byte and rate fault.
                Fault::ByteLoss { rate } if self.fault_rng.random::<f64>() < rate => {
                    self.mark_rate_fired(i, t);
                    self.stats.bytes_dropped_by_fault += 1;
                    return;
                }
                Fault::ByteCorruption { rate } if self.fault_rng.random::<f64>() < rate => {
                    self.mark_rate_fired(i, t);
                    self.stats.bytes_corrupted_by_fault += 1;
                    b ^= 1u8 << self.fault_rng.random_range(0..8u32);
                }
                _ => {}
            }
        }
        if self.marlin.is_some() {
            self.marlin_byte(b, t);
            return;
        }
        match b {
            0x18 => self.soft_reset(t),
            b'?' => self.status_report(),
            b'!' => self.feed_hold(t),
            b'~' => self.cycle_start(t),
            REALTIME_SPINDLE_STOP => self.spindle_stop_override(t),
            0x80..=0xFF => {} // other extended real-time commands (overrides, door): not simulated
            _ => {
                if self.rx.len() >= self.cfg.rx_buffer_bytes {
                    self.stats.rx_overflows += 1;
                    return;
                }
                self.rx.push_back(b);
                self.stats.rx_high_water_bytes = self.stats.rx_high_water_bytes.max(self.rx.len());
                self.unacked_bytes += 1;
                if self.unacked_bytes > self.cfg.rx_buffer_bytes {
                    self.stats.flow_violations += 1;
                }
                if b == b'\n' || b == b'\r' {
                    self.stats.lines_received += 1;
                }
            }
        }
        self.pump(t);
    }

    fn feed_hold(&mut self, t: f64) {
        match self.state {
            MachineState::Run => {
                let (Some(block), Some(leg)) = (self.blocks.front().copied(), self.leg) else {
                    self.complete_hold(t);
                    return;
                };
                let v0 = leg.speed_at(t);
                let s = leg.s_at(t);
                self.state = MachineState::Hold { complete: false };
                if v0 <= 1e-9 {
                    self.s_held_mm = s;
                    self.complete_hold(t);
                } else {
                    self.leg = Some(Leg { kind: LegKind::Decel { v0, a: block.accel_mm_s2 }, s0_mm: s, t0_s: t });
                    self.motion_time_s = t;
                }
            }
            MachineState::Idle => {
                self.state = MachineState::Hold { complete: true };
                if let Some(Dwell::Running { end_s }) = self.dwell {
                    self.dwell = Some(Dwell::Paused { remaining_s: (end_s - t).max(0.0) });
                }
                self.suspend_spindle_step(t);
            }
            _ => {}
        }
    }

    /// 0x9E, grbl's `EXEC_SPINDLE_OVR_STOP`: allowed only in Hold (either sub-state). The
    /// first initiates the stop (acted on once the hold is complete), a second one while
    /// stopped restores the spindle without resuming; ignored in any other state.
    fn spindle_stop_override(&mut self, t: f64) {
        if !matches!(self.state, MachineState::Hold { .. }) {
            return;
        }
        match self.spindle_stop {
            SpindleStopOvr::Disabled => self.spindle_stop = SpindleStopOvr::Initiate,
            SpindleStopOvr::Enabled { .. } => {
                self.restore_spindle(t);
                return;
            }
            SpindleStopOvr::Initiate => {}
        }
        self.suspend_spindle_step(t);
    }

    /// The feed hold manager of grbl's `protocol_exec_rt_suspend`, once the hold is complete:
    /// an initiated spindle stop de-energises the spindle (remembering how it ran), or clears
    /// itself when the spindle is already off.
    pub(super) fn suspend_spindle_step(&mut self, t: f64) {
        if self.state != (MachineState::Hold { complete: true }) || self.spindle_stop != SpindleStopOvr::Initiate {
            return;
        }
        if self.spindle == SpindleDir::Off {
            self.spindle_stop = SpindleStopOvr::Disabled;
            return;
        }
        self.spindle_stop = SpindleStopOvr::Enabled { dir: self.spindle, rpm: self.spindle_rpm };
        self.spindle = SpindleDir::Off;
        self.spindle_rpm = 0.0;
        self.contacts.power_changed(t, false);
        self.ovr_counter = 0; // grbl's spindle_set_state: report the change at once
    }

    /// `SPINDLE_STOP_OVR_RESTORE`: the spindle runs again as it did before the stop, with
    /// grbl's feedback message; the override is cleared.
    fn restore_spindle(&mut self, t: f64) {
        if let SpindleStopOvr::Enabled { dir, rpm } = self.spindle_stop {
            self.emit(MSG_SPINDLE_RESTORE);
            self.spindle = dir;
            self.spindle_rpm = rpm;
            self.contacts.power_changed(t, self.powered());
            self.ovr_counter = 0;
        }
        self.spindle_stop = SpindleStopOvr::Disabled;
    }

    fn cycle_start(&mut self, t: f64) {
        if self.state != (MachineState::Hold { complete: true }) {
            return; // grbl ignores cycle start unless a hold has completed
        }
        // `SPINDLE_STOP_OVR_RESTORE_CYCLE`: restore the spindle first, then resume.
        if self.spindle_stop != SpindleStopOvr::Disabled {
            self.restore_spindle(t);
        }
        if let Some(Dwell::Paused { remaining_s }) = self.dwell {
            self.dwell = Some(Dwell::Running { end_s: t + remaining_s });
        }
        self.start_front_leg(t);
    }

    /// Position rounded to whole steps, as a stepper machine can only be.
    pub(super) fn step_rounded(&self, p: MachinePos) -> MachinePos {
        let spu = self.settings.steps_per_unit();
        std::array::from_fn(|i| (p[i] * spu[i]).round() / spu[i])
    }

    /// Soft limits: every driven axis inside its travel, and in `joints` the tip inside the
    /// Cartesian workspace (the rig's dynamics table).
    pub(super) fn within_limits(&self, p: &MachinePos) -> bool {
        let axes_ok = self.limits[..self.axis_words.count]
            .iter()
            .zip(p)
            .all(|(a, v)| *v >= a.min_mm - 1e-9 && *v <= a.max_mm + 1e-9);
        axes_ok && (!self.kin.tip_workspace_applies() || self.cfg.dynamics.within_travel(self.kin.needle(p).tip_mm))
    }

    /// grbl's `mc_reset` followed by the re-initialisation in `main()`.
    ///
    /// The line the main loop was executing (a dwell or M-code waiting in
    /// `protocol_buffer_synchronize`, a dwell counting down, a motion line waiting in
    /// `mc_line` for planner room, the line a soft limit stopped) returns on `sys.abort` and
    /// `gc_execute_line` still reports `STATUS_OK`: grbl prints that line's `ok` after the
    /// `ALARM:3` of a reset in motion and before the banner (protocol.c, motion_control.c,
    /// gcode.c of grbl 1.1h). A host must not read that `ok` as "the dwell ran".
    pub(super) fn soft_reset(&mut self, t: f64) {
        let in_motion = matches!(self.state, MachineState::Run | MachineState::Hold { complete: false });
        let was_alarm = self.state == MachineState::Alarm;
        let interrupted = if self.marlin.is_none() { self.current.take() } else { None };
        let p = self.step_rounded(self.machine_pos());
        self.blocks.clear();
        self.leg = None;
        self.s_held_mm = 0.0;
        self.motion_time_s = t;
        self.rest_mm = p;
        self.planner_end_mm = p;
        self.dwell = None;
        self.current = None;
        self.rx.clear();
        self.asm = Assembler::default();
        self.unacked_bytes = 0;
        self.spindle = SpindleDir::Off;
        self.spindle_rpm = 0.0;
        self.spindle_stop = SpindleStopOvr::Disabled;
        self.contacts.power_changed(t, false);
        self.feed_pct = 100; // grbl's overrides and Marlin's feedrate_percentage start at 100
        self.steppers_suspended = false;
        self.critical = false;
        self.soft_limit_pending = false;
        self.gc = GcState::new(p);
        self.wco_counter = 0;
        self.ovr_counter = 0;
        self.stats.soft_resets += 1;
        if self.marlin.is_some() {
            self.marlin_reset();
            return;
        }
        if in_motion {
            self.alarm(codes::ALARM_ABORT_CYCLE);
        }
        if let Some(line) = interrupted {
            // (the host's count of this line's bytes is already reset above)
            self.respond(Ok(()), line.raw_len);
            self.stats.oks_after_reset += 1;
        }
        self.state = if in_motion || was_alarm { MachineState::Alarm } else { MachineState::Idle };
        self.send_raw(GRBL_BANNER.as_bytes());
        if self.state == MachineState::Alarm {
            self.emit(MSG_ALARM_LOCK);
        }
    }

    /// Stops the machine where it is now (step-rounded), as grbl's `mc_reset` does on an
    /// alarm: the planner and any dwell are dropped and the spindle is off.
    pub(super) fn stop_in_place(&mut self, t: f64) {
        let p = self.step_rounded(self.machine_pos());
        self.blocks.clear();
        self.leg = None;
        self.s_held_mm = 0.0;
        self.motion_time_s = t;
        self.rest_mm = p;
        self.planner_end_mm = p;
        self.dwell = None;
        self.spindle = SpindleDir::Off;
        self.spindle_rpm = 0.0;
        self.spindle_stop = SpindleStopOvr::Disabled;
        self.contacts.power_changed(t, false);
    }

    pub(super) fn alarm(&mut self, code: u8) {
        self.emit(&format!("ALARM:{code}"));
        self.stats.alarms.push(code);
    }

    pub(super) fn soft_limit_violation(&mut self, t: f64) {
        if self.state == MachineState::Run {
            self.soft_limit_pending = true;
            self.feed_hold(t); // a controlled stop first, so the position is kept
        } else {
            self.soft_limit_alarm(t);
        }
    }

    pub(super) fn soft_limit_alarm(&mut self, t: f64) {
        self.stop_in_place(t);
        self.soft_limit_pending = false;
        self.state = MachineState::Alarm;
        self.critical = true;
        self.alarm(codes::ALARM_SOFT_LIMIT);
        self.emit(MSG_CRITICAL);
    }

    fn status_report(&mut self) {
        let p = self.step_rounded(self.machine_pos());
        let state = match self.state {
            MachineState::Idle => "Idle",
            MachineState::Run => "Run",
            MachineState::Hold { complete: true } => "Hold:0",
            MachineState::Hold { complete: false } => "Hold:1",
            MachineState::Alarm => "Alarm",
            MachineState::Check => "Check",
        };
        let mask = self.settings.status_report_mask();
        // grbl prints one value per configured axis.
        let coords: Vec<String> = p[..self.axis_words.count].iter().map(|v| fmt3(*v)).collect();
        let mut s = format!("<{state}|{}:{}", if mask & 1 != 0 { "MPos" } else { "WPos" }, coords.join(","));
        if mask & 2 != 0 {
            let blocks_free = self.cfg.planner_blocks.saturating_sub(self.blocks.len());
            let rx_free = self.cfg.rx_buffer_bytes.saturating_sub(self.rx.len());
            s.push_str(&format!("|Bf:{blocks_free},{rx_free}"));
        }
        let speed_mm_per_min = self.leg.map_or(0.0, |l| l.speed_at(self.motion_time_s) * 60.0);
        s.push_str(&format!("|FS:{},{}", fmt0(speed_mm_per_min), fmt0(self.spindle_rpm)));
        if self.cfg.report_wco_and_overrides {
            let busy = matches!(self.state, MachineState::Run | MachineState::Hold { .. });
            if self.wco_counter > 0 {
                self.wco_counter -= 1;
            } else {
                self.wco_counter = if busy { 29 } else { 9 };
                if self.ovr_counter == 0 {
                    self.ovr_counter = 1;
                }
                s.push_str("|WCO:0.000,0.000,0.000");
            }
            if self.ovr_counter > 0 {
                self.ovr_counter -= 1;
            } else {
                self.ovr_counter = if busy { 19 } else { 9 };
                s.push_str(&format!("|Ov:{},100,100", self.feed_pct));
                match self.spindle {
                    SpindleDir::Cw => s.push_str("|A:S"),
                    SpindleDir::Ccw => s.push_str("|A:C"),
                    SpindleDir::Off => {}
                }
            }
        }
        s.push('>');
        self.emit(&s);
    }
}

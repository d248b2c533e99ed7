//! Marlin-style serial protocol for the simulated controller ([`ProtocolMode::Marlin`]).
//!
//! Marlin numbers host lines (`N<n> <gcode>*<checksum>`) so that a corrupted or lost line is
//! detected and sent again rather than executed wrongly or skipped. This module reproduces
//! Marlin 2.x's `GCodeQueue::get_serial_commands` and `gcode_line_error` as they behave on the
//! wire, and hands the accepted commands to the same motion, dwell, spindle and skin-contact
//! model as the grbl mode, so needle entries are recorded identically in both modes.
//!
//! Behaviour reproduced:
//! - a line ends at `\n` or `\r`; `;` starts a comment; characters beyond `MAX_CMD_SIZE - 1`
//!   (95) are dropped; empty lines are ignored (no `ok`);
//! - a line starting with `N` must carry the number `last + 1` (checked first) and a checksum
//!   equal to the XOR of every byte before the last `*`; `M110 N<n>` on a numbered line
//!   takes its number from the second `N`; a checksum without a line number is an error;
//! - an error prints `Error:<reason>, Last Line: <last>`, flushes what is waiting in the
//!   serial buffer (Marlin's `while (read_serial() != -1)`), then `Resend: <last + 1>` and
//!   `ok`;
//! - good lines wait in a `BUFSIZE` (4) command queue, the executing command included; the
//!   serial buffer is read only between commands; `ok` is sent when a command has been
//!   processed (a move: once it is in the planner), so a host keeping at most 4 unanswered
//!   lines never overruns the queue;
//! - `G4 P<ms>` / `G4 S<s>` (S wins when both are given) synchronise then dwell, exactly (no
//!   grbl 50 ms quantum); `M400` synchronises; `M114` reports `X:.. Y:.. Z:.. E:0.00 Count
//!   X:.. Y:.. Z:..` (the commanded position, and the live position in steps); `M110 N<n>`
//!   sets the line number when executed (as Marlin does, so a host must wait for its `ok`);
//!   `M115` prints a firmware line; `M220` reports the feed rate percentage (`FR:100%`) and
//!   `M220 S<n>` sets it (later moves run at n % of their feed); `M2` and `M30` are unknown
//!   commands, as in Marlin 2.x, whose `process_parsed_command` has no `M2` (`M30` deletes a
//!   file on an SD card, which is not modelled): nothing stops, and the answer is
//!   `echo:Unknown command: "M2"` then `ok`; other commands go to the grbl-mode g-code parser,
//!   and what it rejects is answered `echo:Unknown command: "<line>"` then `ok`;
//! - targets outside the travel are clamped to it (Marlin's software endstops), without alarm;
//! - power-up and every reset print `start`.
//!
//! - with [`super::ControllerConfig::marlin_realtime_commands`] (Marlin's
//!   `REALTIME_REPORTING_COMMANDS`): the emergency parser watches every received byte, and a
//!   line `P000` (after an optional `N<n>`, anything may follow) suspends the stepper
//!   interrupt at its end of line, freezing motion where it is with no deceleration (the
//!   planner keeps its blocks, commands go on being processed: moves are planned while there
//!   is room, and whatever synchronises, `G4` and `M400` included, waits; a dwell already
//!   counting runs on, the cartridge keeps running); `R000` wakes the steppers. The line
//!   itself is then queued and answered `ok` as a no-op. Deviation: the resumed block starts
//!   again from rest (Marlin picks up its trapezoid at the speed it stopped at).
//!
//! Not modelled: `busy: processing` keep-alives, `M0`/`M1` (answered as the grbl parser does,
//! with no way to resume), the rest of the emergency parser (`M108`, `M112`, `M410`, `S000`), temperature
//! reports, `ADVANCED_OK`, SD printing, and the `alarm_at_line`/`lost_ok` faults' grbl
//! semantics (byte, reset and disconnect faults work as in grbl mode).

use std::collections::VecDeque;

use smp_core::kinematics::AxisLimits;

use super::axes::MachinePos;
use super::gcode::{self, Op};
use super::{LineExec, MachineState, SimController};

/// Marlin's `BUFSIZE`: commands held in the queue, the one executing included.
pub const MARLIN_BUFSIZE: usize = 4;
/// Marlin's `MAX_CMD_SIZE`: a line keeps at most this many characters minus one.
pub const MARLIN_MAX_CMD_SIZE: usize = 96;
/// What Marlin prints at power-up and after a reset.
pub const MARLIN_START: &str = "start";

/// A command the simulated Marlin executed, in execution order, for tests and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarlinExecuted {
    /// The `N` number the line carried, `None` for an unnumbered line.
    pub line_number: Option<i64>,
    /// The command as executed: without its `N` word and checksum, trimmed.
    pub command: String,
}

/// A command waiting in the queue.
#[derive(Debug, Clone)]
struct Queued {
    line_number: Option<i64>,
    command: String,
}

/// Marlin's serial and command-queue state.
#[derive(Debug, Clone, Default)]
pub(crate) struct MarlinState {
    /// `serial_state.last_N`.
    last_n: i64,
    line: Vec<u8>,
    comment: bool,
    queue: VecDeque<Queued>,
    /// A command is being processed (counts against `BUFSIZE`).
    executing: bool,
    /// The emergency parser's view of the line being received (upper-cased, capped).
    ep_line: Vec<u8>,
    executed: Vec<MarlinExecuted>,
}

impl MarlinState {
    /// Nothing queued, executing or half-received.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.executing && self.line.is_empty()
    }

    /// State after power-up or a reset (the execution log is kept).
    fn reset(&mut self) {
        let executed = std::mem::take(&mut self.executed);
        *self = MarlinState { executed, ..MarlinState::default() };
    }
}

/// Marlin's software endstops: each coordinate limited to the axis travel (never panics,
/// unlike `f64::clamp`, even on a malformed inverted range).
pub(crate) fn clamp_to_travel(limits: &[AxisLimits], p: MachinePos) -> MachinePos {
    let mut out = p;
    for (v, a) in out.iter_mut().zip(limits) {
        *v = v.max(a.min_mm).min(a.max_mm);
    }
    out
}

/// XOR of every byte: Marlin's line checksum, computed over everything before the `*`.
pub fn marlin_checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc ^ b)
}

/// C `strtol(s, nullptr, 10)`: leading spaces, optional sign, digits; 0 when none.
fn strtol(s: &[u8]) -> i64 {
    let mut i = 0;
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
        neg = s[i] == b'-';
        i += 1;
    }
    let mut v: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add(i64::from(s[i] - b'0'));
        i += 1;
    }
    if neg {
        -v
    } else {
        v
    }
}

/// Why a received line was refused, with Marlin's exact message prefix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LineError {
    LineNumber,
    Checksum,
    NoChecksum,
    NoLineNumber,
}

impl LineError {
    fn text(self) -> &'static str {
        match self {
            LineError::LineNumber => "Line Number is not Last Line Number+1, Last Line: ",
            LineError::Checksum => "checksum mismatch, Last Line: ",
            LineError::NoChecksum => "No Checksum with line number, Last Line: ",
            LineError::NoLineNumber => "No Line Number with checksum, Last Line: ",
        }
    }
}

/// Marlin's checks of one complete line. Returns the line number (if numbered) and the
/// command text, or the error. `last_n` is updated on success, as Marlin does.
fn validate(line: &[u8], last_n: &mut i64) -> Result<Queued, LineError> {
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    let command = &line[start..];
    let star = command.iter().rposition(|&b| b == b'*');
    if command.first() == Some(&b'N') {
        let mut npos = 0;
        let is_m110 = command.windows(4).any(|w| w == b"M110");
        if is_m110 {
            if let Some(p) = command.iter().skip(4).position(|&b| b == b'N') {
                npos = p + 4;
            }
        }
        let n = strtol(&command[npos + 1..]);
        if n != *last_n + 1 && !is_m110 {
            return Err(LineError::LineNumber);
        }
        let Some(star) = star else { return Err(LineError::NoChecksum) };
        if strtol(&command[star + 1..]) != i64::from(marlin_checksum(&command[..star])) {
            return Err(LineError::Checksum);
        }
        *last_n = n;
        // The command proper: after the `N<digits>` word, before the checksum.
        let mut i = 1;
        while i < star && (command[i].is_ascii_digit() || command[i] == b'-') {
            i += 1;
        }
        // Marlin's parser ends the command at the *first* `*` (the checksum check used the
        // last): when a corrupted newline merges two lines and the merged line still passes
        // the 8-bit checksum, only the first line's command runs (the second is resent).
        let end = command[i..star].iter().position(|&b| b == b'*').map_or(star, |p| i + p);
        let text = String::from_utf8_lossy(&command[i..end]).trim().to_string();
        Ok(Queued { line_number: Some(n), command: text })
    } else if star.is_some() {
        Err(LineError::NoLineNumber)
    } else {
        Ok(Queued { line_number: None, command: String::from_utf8_lossy(command).trim().to_string() })
    }
}

/// The first word of a compact (upper-case, no spaces) command: letter and integer number.
fn command_word(compact: &[u8]) -> Option<(u8, u32)> {
    let letter = *compact.first()?;
    let digits: Vec<u8> = compact[1..].iter().take_while(|b| b.is_ascii_digit()).copied().collect();
    if digits.is_empty() || compact.get(1 + digits.len()) == Some(&b'.') {
        return None;
    }
    let n = std::str::from_utf8(&digits).ok()?.parse().ok()?;
    Some((letter, n))
}

/// Value of parameter `letter` in a compact command, after the command word.
fn param(compact: &[u8], letter: u8) -> Option<f64> {
    let skip = 1 + compact[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    let pos = compact[skip..].iter().position(|&b| b == letter)? + skip;
    let mut i = pos + 1;
    gcode::read_float(compact, &mut i)
}

impl SimController {
    /// A data byte in Marlin mode: into the serial buffer (no real-time bytes in Marlin).
    pub(super) fn marlin_byte(&mut self, b: u8, t: f64) {
        // The emergency parser runs in the serial interrupt, ahead of the receive buffer.
        if self.cfg.marlin_realtime_commands {
            self.emergency_parser(b, t);
        }
        if self.rx.len() >= self.cfg.rx_buffer_bytes {
            self.stats.rx_overflows += 1;
            return;
        }
        self.rx.push_back(b);
        self.stats.rx_high_water_bytes = self.stats.rx_high_water_bytes.max(self.rx.len());
        if b == b'\n' || b == b'\r' {
            self.stats.lines_received += 1;
        }
        self.pump(t);
    }

    /// Marlin's `EmergencyParser::update` for `P000` and `R000`: acts at the end of the line.
    fn emergency_parser(&mut self, b: u8, t: f64) {
        let Some(m) = self.marlin.as_mut() else { return };
        if b != b'\n' && b != b'\r' {
            if m.ep_line.len() < MARLIN_MAX_CMD_SIZE {
                m.ep_line.push(b.to_ascii_uppercase());
            }
            return;
        }
        let line = std::mem::take(&mut m.ep_line);
        // An optional line number (`N` then digits, spaces, `-`), then the command.
        let rest = match line.strip_prefix(b"N") {
            Some(r) => {
                let skip = r.iter().take_while(|c| c.is_ascii_digit() || **c == b' ' || **c == b'-').count();
                &r[skip..]
            }
            None => {
                let skip = line.iter().take_while(|c| **c == b' ').count();
                &line[skip..]
            }
        };
        if rest.starts_with(b"P000") {
            self.quick_pause(t);
        } else if rest.starts_with(b"R000") {
            self.quick_resume(t);
        }
    }

    /// `quickpause_stepper`: the stepper interrupt stops now, the planner keeps its blocks.
    fn quick_pause(&mut self, t: f64) {
        if self.steppers_suspended {
            return;
        }
        self.advance_motion(t);
        if let Some(leg) = self.leg.take() {
            self.s_held_mm = leg.s_at(t);
        }
        self.motion_time_s = t;
        self.steppers_suspended = true;
    }

    /// `quickresume_stepper`: the steppers run the planner on.
    fn quick_resume(&mut self, t: f64) {
        if !self.steppers_suspended {
            return;
        }
        self.steppers_suspended = false;
        if self.leg.is_none() && !self.blocks.is_empty() {
            self.start_front_leg(t);
        }
        self.pump(t);
    }

    /// Marlin's steppers are suspended by `P000` (until `R000`).
    pub fn marlin_steppers_suspended(&self) -> bool {
        self.steppers_suspended
    }

    /// Commands executed so far in Marlin mode, in order (empty in grbl mode).
    pub fn marlin_executed(&self) -> &[MarlinExecuted] {
        self.marlin.as_ref().map_or(&[], |m| &m.executed)
    }

    /// The line number Marlin expects next minus one (`last_N`); `None` in grbl mode.
    pub fn marlin_last_line(&self) -> Option<i64> {
        self.marlin.as_ref().map(|m| m.last_n)
    }

    /// Marlin's `reset()`: queue and numbering cleared, `start` printed.
    pub(super) fn marlin_reset(&mut self) {
        if let Some(m) = self.marlin.as_mut() {
            m.reset();
        }
        self.state = MachineState::Idle;
        self.emit(MARLIN_START);
    }

    /// Marlin's main loop: between commands, read the serial buffer into the queue, then
    /// process queued commands until one blocks.
    pub(super) fn marlin_pump(&mut self, t: f64) {
        for _ in 0..100_000u32 {
            if self.critical || self.disconnected || matches!(self.state, MachineState::Hold { .. }) {
                return;
            }
            if self.current.is_some() {
                if !self.step_current(t) {
                    return;
                }
                self.marlin_command_done();
                continue;
            }
            self.marlin_read_serial(t);
            let next = self.marlin.as_mut().and_then(|m| m.queue.pop_front());
            let Some(cmd) = next else { return };
            self.marlin_execute(cmd, t);
        }
    }

    fn marlin_command_done(&mut self) {
        if let Some(m) = self.marlin.as_mut() {
            m.executing = false;
        }
    }

    /// `get_serial_commands`: complete lines go into the queue while it has room.
    fn marlin_read_serial(&mut self, t: f64) {
        loop {
            let Some(m) = self.marlin.as_ref() else { return };
            if m.queue.len() + usize::from(m.executing) >= MARLIN_BUFSIZE {
                return;
            }
            let Some(b) = self.rx.pop_front() else { return };
            let Some(m) = self.marlin.as_mut() else { return };
            if b == b'\n' || b == b'\r' {
                m.comment = false;
                let line = std::mem::take(&mut m.line);
                if line.is_empty() {
                    continue;
                }
                if self.line_read_faults(t) {
                    return;
                }
                let Some(m) = self.marlin.as_mut() else { return };
                match validate(&line, &mut m.last_n) {
                    Ok(q) => m.queue.push_back(q),
                    Err(e) => self.marlin_line_error(e),
                }
            } else if b == b';' {
                m.comment = true;
            } else if !m.comment && m.line.len() < MARLIN_MAX_CMD_SIZE - 1 {
                m.line.push(b);
            }
        }
    }

    /// `gcode_line_error` + `flush_and_request_resend`.
    fn marlin_line_error(&mut self, e: LineError) {
        let Some(m) = self.marlin.as_mut() else { return };
        let last = m.last_n;
        m.line.clear();
        m.comment = false;
        self.rx.clear();
        self.stats.errors_sent += 1;
        self.emit(&format!("Error:{}{last}", e.text()));
        self.emit(&format!("Resend: {}", last + 1));
        self.emit("ok");
    }

    fn marlin_execute(&mut self, cmd: Queued, t: f64) {
        if let Some(m) = self.marlin.as_mut() {
            m.executed.push(MarlinExecuted { line_number: cmd.line_number, command: cmd.command.clone() });
            m.executing = true;
        }
        let compact: Vec<u8> =
            cmd.command.bytes().filter(|b| !b.is_ascii_whitespace()).map(|b| b.to_ascii_uppercase()).collect();
        let ops: Vec<Op> = match command_word(&compact) {
            Some((b'M', 110)) => {
                if let (Some(n), Some(m)) = (param(&compact, b'N'), self.marlin.as_mut()) {
                    m.last_n = n as i64;
                }
                Vec::new()
            }
            Some((b'M', 114)) => {
                let p = self.gc.position_mm;
                let spm = self.settings.steps_per_unit();
                let live = self.machine_pos();
                let count = |i: usize| (live[i] * spm[i]).round() as i64;
                // Marlin 2.1 with extra axes prints them after Z, before E (here named A B C).
                let n = self.settings.n_axes();
                let names = &crate::controller::AXIS_LETTERS[..n];
                let mut report = String::new();
                for (name, v) in names.iter().zip(p) {
                    report.push_str(&format!("{}:{v:.2} ", char::from(*name)));
                }
                report.push_str("E:0.00 Count");
                for (i, name) in names.iter().enumerate() {
                    report.push_str(&format!(" {}:{}", char::from(*name), count(i)));
                }
                self.emit(&report);
                Vec::new()
            }
            Some((b'M', 115)) => {
                self.emit(
                    "FIRMWARE_NAME:Marlin 2.1.2.1 (smp-sim) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin \
                     PROTOCOL_VERSION:1.0 MACHINE_TYPE:SMP EXTRUDER_COUNT:0",
                );
                Vec::new()
            }
            Some((b'M', 220)) => {
                // Marlin 2.x: no parameter reports `FR:<n>%`; `S<n>` sets the percentage
                // (B/R, the MMU backup and restore, are not modelled).
                match param(&compact, b'S') {
                    Some(v) if v.is_finite() => self.set_feed_rate_percent(v.clamp(1.0, 999.0) as u16),
                    _ => {
                        let fr = format!("FR:{}%", self.feed_rate_percent());
                        self.emit(&fr);
                    }
                }
                Vec::new()
            }
            Some((b'M', 400)) => vec![Op::Dwell { seconds: 0.0 }],
            // Not grbl's program end: Marlin has no M2 (and M30 is an SD card command).
            Some((b'M', 2 | 30)) => {
                self.emit(&format!("echo:Unknown command: \"{}\"", cmd.command));
                Vec::new()
            }
            // Already acted on by the emergency parser: a no-op answered `ok`.
            Some((b'P' | b'R' | b'S', 0)) if self.cfg.marlin_realtime_commands => Vec::new(),
            Some((b'G', 4)) => {
                // Marlin: P is milliseconds, S seconds; S wins when both are present.
                let mut seconds = param(&compact, b'P').map_or(0.0, |ms| ms / 1000.0);
                if let Some(s) = param(&compact, b'S') {
                    seconds = s;
                }
                vec![Op::Dwell { seconds: seconds.max(0.0) }]
            }
            _ if compact.is_empty() => Vec::new(),
            _ => match gcode::execute_line(&mut self.gc, &compact, self.axis_words) {
                Ok(ops) => ops,
                Err(_) => {
                    self.emit(&format!("echo:Unknown command: \"{}\"", cmd.command));
                    Vec::new()
                }
            },
        };
        if ops.is_empty() {
            self.respond(Ok(()), 0);
            self.marlin_command_done();
        } else {
            self.current = Some(LineExec { ops: ops.into(), raw_len: 0, front_checked: false });
            if self.step_current(t) {
                self.marlin_command_done();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use crate::controller::Fault;
    use proptest::prelude::*;
    use smp_core::kinematics::{AxisLimits, MachineDynamics};
    use smp_gcode::marlin::{numbered_line, MarlinConfig, MarlinEvent, MarlinStreamer};

    use super::super::{ControllerConfig, NoSkin, ProtocolMode};
    use super::*;

    fn cfg() -> ControllerConfig {
        let axis = |max| AxisLimits { max_rate_mm_per_min: 6000.0, accel_mm_per_s2: 1000.0, min_mm: 0.0, max_mm: max };
        let mut c = ControllerConfig::new(MachineDynamics { x: axis(200.0), y: axis(200.0), z: axis(100.0) });
        c.initial_position_mm = [0.0, 0.0, 50.0];
        c.protocol = ProtocolMode::Marlin;
        c
    }

    fn sim(c: ControllerConfig) -> SimController {
        match SimController::new(c, Box::new(NoSkin)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn take(c: &mut SimController) -> String {
        let mut buf = Vec::new();
        c.poll_transmit(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn send(c: &mut SimController, line: &str, t_s: f64) -> String {
        c.handle_bytes(format!("{line}\n").as_bytes(), Duration::from_secs_f64(t_s));
        take(c)
    }

    #[test]
    fn start_checksum_and_line_number_errors_request_resend() {
        let mut c = sim(cfg());
        assert_eq!(take(&mut c), "start\n");
        assert_eq!(send(&mut c, &numbered_line(1, "G90"), 0.0), "ok\n");
        let bad = numbered_line(2, "G91").replace("G91", "G92");
        assert_eq!(send(&mut c, &bad, 0.0), "Error:checksum mismatch, Last Line: 1\nResend: 2\nok\n");
        assert_eq!(
            send(&mut c, &numbered_line(3, "G90"), 0.0),
            "Error:Line Number is not Last Line Number+1, Last Line: 1\nResend: 2\nok\n"
        );
        assert_eq!(send(&mut c, "N2 G90", 0.0), "Error:No Checksum with line number, Last Line: 1\nResend: 2\nok\n");
        assert_eq!(send(&mut c, &numbered_line(7, "M110 N9"), 0.0), "ok\n");
        assert_eq!(c.marlin_last_line(), Some(9));
        assert_eq!(send(&mut c, &numbered_line(10, "G90"), 0.0), "ok\n");
    }

    #[test]
    fn queue_holds_four_commands_and_answers_after_processing() {
        let mut c = sim(cfg());
        take(&mut c);
        // A long dwell blocks; three more lines wait in the queue, a fifth stays in serial.
        let mut batch = numbered_line(1, "G4 S10");
        for n in 2..=5 {
            batch += &format!("\n{}", numbered_line(n, "G90"));
        }
        assert_eq!(send(&mut c, &batch, 0.0), "");
        // Lines 2-5 wait (serial buffer or queue) until the dwell ends; none is answered early.
        let waiting = c.marlin.as_ref().map_or(0, |m| m.queue.len()) + c.rx.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(waiting, 4);
        c.handle_timeout(Duration::from_secs_f64(10.0));
        assert_eq!(take(&mut c), "ok\nok\nok\nok\nok\n");
    }

    #[test]
    fn g4_p_is_milliseconds_and_s_seconds() {
        let mut c = sim(cfg());
        take(&mut c);
        assert_eq!(send(&mut c, &numbered_line(1, "G4 P300"), 0.0), "");
        c.handle_timeout(Duration::from_secs_f64(0.299));
        assert_eq!(take(&mut c), "");
        c.handle_timeout(Duration::from_secs_f64(0.3001));
        assert_eq!(take(&mut c), "ok\n");
        assert_eq!(send(&mut c, &numbered_line(2, "G4 S1"), 1.0), "");
        c.handle_timeout(Duration::from_secs_f64(2.0001));
        assert_eq!(take(&mut c), "ok\n");
    }

    #[test]
    fn m114_reports_marlin_format_and_m400_waits() {
        let mut c = sim(cfg());
        take(&mut c);
        assert_eq!(send(&mut c, &numbered_line(1, "G1 X10 Y20 F6000"), 0.0), "ok\n");
        let r = send(&mut c, &numbered_line(2, "M114"), 0.0);
        assert_eq!(r, "X:10.00 Y:20.00 Z:50.00 E:0.00 Count X:0 Y:0 Z:12500\nok\n");
        assert_eq!(send(&mut c, &numbered_line(3, "M400"), 0.0), "");
        c.handle_timeout(Duration::from_secs(5));
        assert_eq!(take(&mut c), "ok\n");
        let r = send(&mut c, &numbered_line(4, "M114"), 5.0);
        assert_eq!(r, "X:10.00 Y:20.00 Z:50.00 E:0.00 Count X:2500 Y:5000 Z:12500\nok\n");
        assert_eq!(send(&mut c, &numbered_line(5, "M999"), 5.0), "echo:Unknown command: \"M999\"\nok\n");
    }

    /// Marlin 2.x has no `M2`: it falls to `unknown_command_warning`, then `ok`; unlike grbl's
    /// program end it neither stops the spindle nor prints `[MSG:Pgm End]`.
    #[test]
    fn m2_is_an_unknown_command_that_stops_nothing() {
        let mut c = sim(cfg());
        take(&mut c);
        assert_eq!(send(&mut c, &numbered_line(1, "M3 S9000"), 0.0), "ok\n");
        assert!(c.cartridge_running());
        assert_eq!(send(&mut c, &numbered_line(2, "M2"), 0.0), "echo:Unknown command: \"M2\"\nok\n");
        assert!(c.cartridge_running(), "M2 stops nothing on Marlin");
        assert_eq!(send(&mut c, &numbered_line(3, "M30"), 0.0), "echo:Unknown command: \"M30\"\nok\n");
        assert_eq!(send(&mut c, &numbered_line(4, "M5"), 0.0), "ok\n");
        assert!(!c.cartridge_running());
    }

    #[test]
    fn m220_reports_and_sets_the_feed_rate_percentage_which_scales_later_moves() {
        let mut c = sim(cfg());
        take(&mut c);
        assert_eq!(send(&mut c, "M220\n", 0.0), "FR:100%\nok\n", "unnumbered, as a host's query");
        assert_eq!(send(&mut c, &numbered_line(1, "M220 S50"), 0.0), "ok\n");
        assert_eq!(send(&mut c, &numbered_line(2, "M220"), 0.0), "FR:50%\nok\n");
        // 10 mm at F600 (10 mm/s) at 50 %: 2 s (and a little for the 1000 mm/s² ramps).
        send(&mut c, &numbered_line(3, "G1 X10 F600"), 0.0);
        assert_eq!(send(&mut c, &numbered_line(4, "M400"), 0.0), "");
        c.handle_timeout(Duration::from_secs_f64(1.9));
        assert_eq!(take(&mut c), "");
        c.handle_timeout(Duration::from_secs_f64(2.1));
        assert_eq!(take(&mut c), "ok\n");
        // The fault sets it as an operator's knob would; a reset puts it back to 100.
        let mut cfgf = cfg();
        cfgf.faults.faults = vec![Fault::FeedRateAtTime { time_s: 1.0, percent: 150 }];
        let mut c = sim(cfgf);
        take(&mut c);
        assert_eq!(send(&mut c, "M220\n", 0.5), "FR:100%\nok\n");
        assert_eq!(send(&mut c, "M220\n", 1.5), "FR:150%\nok\n");
        assert_eq!(c.feed_rate_percent(), 150);
        c.handle_bytes(&[0x18], Duration::from_secs(2));
        assert_eq!(c.feed_rate_percent(), 150, "Marlin has no Ctrl-X");
    }

    #[test]
    fn p000_freezes_motion_at_once_and_r000_runs_the_planner_on() {
        let mut c = cfg();
        c.marlin_realtime_commands = true;
        let mut c = sim(c);
        take(&mut c);
        assert_eq!(send(&mut c, &numbered_line(1, "G1 X100 F6000"), 0.0), "ok\n");
        assert_eq!(send(&mut c, &numbered_line(2, "G4 S1"), 0.0), "", "the dwell waits for the move");
        // Mid-move (100 mm/s): P000 stops it where it is, and is answered as a no-op only
        // once the dwell ahead of it in the queue is done.
        c.handle_timeout(Duration::from_secs_f64(0.5));
        let at = c.position_mm()[0];
        assert_eq!(send(&mut c, &numbered_line(3, "P000"), 0.5), "");
        assert!(c.marlin_steppers_suspended());
        c.handle_timeout(Duration::from_secs(5));
        assert_eq!(c.position_mm()[0], at, "frozen, no deceleration");
        assert_eq!(take(&mut c), "", "the dwell synchronises: it waits for the frozen move");
        assert_eq!(send(&mut c, "R000\n", 5.0), "");
        assert!(!c.marlin_steppers_suspended());
        c.handle_timeout(Duration::from_secs(10));
        assert_eq!(take(&mut c), "ok\nok\nok\n", "dwell, P000 and R000 answered in order");
        assert_eq!(c.position_mm()[0], 100.0);
        // Without the option, P000 is an unknown command that pauses nothing.
        let mut c = sim(cfg());
        take(&mut c);
        send(&mut c, &numbered_line(1, "G1 X100 F6000"), 0.0);
        assert_eq!(send(&mut c, &numbered_line(2, "P000"), 0.5), "echo:Unknown command: \"P000\"\nok\n");
        assert!(!c.marlin_steppers_suspended());
    }

    /// Host and controller in one loop, bytes moved by hand under a fake clock.
    fn run_loop(c: &mut SimController, s: &mut MarlinStreamer) -> Vec<MarlinEvent> {
        let mut now = Duration::ZERO;
        let mut events = Vec::new();
        // A host waits for `start` before talking (see MarlinStreamer's docs on resets).
        let mut banner = Vec::new();
        c.poll_transmit(&mut banner);
        s.handle_received(&banner, now);
        for _ in 0..200_000 {
            let mut to_ctrl = Vec::new();
            s.poll_transmit(now, &mut to_ctrl);
            if !to_ctrl.is_empty() {
                c.handle_bytes(&to_ctrl, now);
            }
            let mut to_host = Vec::new();
            c.poll_transmit(&mut to_host);
            if !to_host.is_empty() {
                s.handle_received(&to_host, now);
            }
            events.extend(std::iter::from_fn(|| s.poll_event()));
            if s.pending() == 0 && c.is_quiescent() && to_ctrl.is_empty() && to_host.is_empty() {
                break;
            }
            if to_ctrl.is_empty() && to_host.is_empty() {
                let next = [c.poll_timeout(), s.poll_timeout()].into_iter().flatten().min();
                now = next.map_or(now + Duration::from_millis(1), |t| t.max(now + Duration::from_micros(1)));
                c.handle_timeout(now);
                s.handle_timeout(now);
            } else {
                now += Duration::from_micros(100);
            }
        }
        events
    }

    fn program() -> Vec<String> {
        let mut p = vec!["G90".to_string(), "M3 S1000".to_string()];
        for i in 0..12 {
            p.push(format!("G1 X{} Y{} F3000", i * 2, i));
            p.push("G4 S0.05".to_string());
        }
        p.push("M5".to_string());
        p
    }

    fn check_exactly_once(c: &SimController, prog: &[String], events: &[MarlinEvent]) {
        // Line 0 is the host's `M110 N0`, a no-op at power-up: it may be lost to a corruption.
        let executed: Vec<&MarlinExecuted> =
            c.marlin_executed().iter().filter(|e| e.line_number.is_some_and(|n| n >= 1)).collect();
        let numbers: Vec<i64> = executed.iter().filter_map(|e| e.line_number).collect();
        let expect: Vec<i64> = (1..=prog.len() as i64).collect();
        assert_eq!(numbers, expect, "executed {:?}", c.marlin_executed());
        for (e, line) in executed.iter().zip(prog) {
            assert_eq!(&e.command, line);
        }
        let accepted: Vec<u64> = events
            .iter()
            .filter_map(|e| if let MarlinEvent::Accepted { tag } = e { Some(*tag) } else { None })
            .collect();
        assert_eq!(accepted, (0..prog.len() as u64).collect::<Vec<_>>());
    }

    /// A corrupted newline merges two numbered lines; for some corrupt bytes the merged line
    /// still passes Marlin's 8-bit checksum (taken at the last `*`). Marlin's parser ends the
    /// command at the first `*`, so only the first line's command runs; the second, merged
    /// away, is refused by number when the next line arrives and resent.
    #[test]
    fn a_merged_line_that_passes_the_checksum_runs_only_its_first_command() {
        let first = numbered_line(10, "G4 S0.05");
        let second = numbered_line(11, "G1 X8 Y4 F3000");
        // The byte that makes the XOR of the whole first line and itself zero: the merged
        // line's checksum is then the second line's, and the merge goes unnoticed.
        let byte = marlin_checksum(first.as_bytes());
        let merged = [first.as_bytes(), &[byte], second.as_bytes()].concat();
        let mut last_n = 9;
        let q = validate(&merged, &mut last_n).expect("the merged line passes the checksum");
        assert_eq!((q.line_number, q.command.as_str(), last_n), (Some(10), "G4 S0.05", 10));
        // The next line is refused by number: the host resends N11.
        let third = numbered_line(12, "G4 S0.05");
        assert_eq!(validate(third.as_bytes(), &mut last_n).map(|_| ()), Err(LineError::LineNumber));
    }

    #[test]
    fn clean_stream_executes_every_line_once() {
        let mut c = sim(cfg());
        let mut s = MarlinStreamer::new(MarlinConfig::default());
        let prog = program();
        for (i, l) in prog.iter().enumerate() {
            s.queue_line(l, i as u64).unwrap();
        }
        let ev = run_loop(&mut c, &mut s);
        check_exactly_once(&c, &prog, &ev);
        assert_eq!(c.position_mm(), [22.0, 11.0, 50.0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn single_corruption_still_runs_every_line_once_in_order(index in 0u64..700, xor in 1u8..=255) {
            let mut config = cfg();
            config.faults.faults.push(Fault::CorruptByte { index, xor });
            let mut c = sim(config);
            let mut s = MarlinStreamer::new(MarlinConfig { resend_timeout: Duration::from_secs(2), ..MarlinConfig::default() });
            let prog = program();
            for (i, l) in prog.iter().enumerate() {
                s.queue_line(l, i as u64).unwrap();
            }
            let ev = run_loop(&mut c, &mut s);
            check_exactly_once(&c, &prog, &ev);
        }
    }
}

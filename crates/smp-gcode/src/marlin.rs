//! Marlin numbered-line host protocol (`N<n> <gcode>*<checksum>`, `Resend: N`), sans-I/O.
//!
//! Marlin detects a corrupted or lost line by its number and XOR checksum and asks for it
//! again with `Resend: N` (always followed by `ok`); numbering makes a resent line impossible
//! to execute twice, since Marlin refuses any number but `last + 1`. This streamer numbers
//! and checksums lines, keeps at most `max_in_flight` (Marlin's `BUFSIZE`, 4) unanswered, and
//! rewinds to line N on `Resend: N`, keeping each line's tag so it stays mapped to its dot.
//!
//! Acknowledgement rules (why they are safe):
//! - a plain `ok` answers the oldest sent line: Marlin answers validated lines in order;
//! - `Resend: N` proves every line below N was validated into Marlin's queue (it will run
//!   unless the controller resets): they are reported `Accepted`, and their `ok`s, still to
//!   come, are counted as owed so that they do not acknowledge later lines;
//! - the `ok` after `Resend:` and the `ok` after `echo:Unknown command` (a line fragment made
//!   by a corrupted newline) acknowledge nothing;
//! - after a `Resend: N`, the lines already on the wire behind the bad one each draw another
//!   `Resend: N`; those repeats are ignored until a line is acknowledged;
//! - with nothing heard for `resend_timeout`, the oldest unanswered line is sent again: if
//!   Marlin already has it, its numbering check answers `Resend: <next>`, which settles it.
//!
//! Unknown, `echo:` and `busy:` lines are reported and never fatal. `start` (a controller
//! reset) loses the lines in flight: they are reported in [`MarlinEvent::Reset`], numbering
//! restarts with `M110 N0`, and nothing more is sent until [`MarlinStreamer::resume`].

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

/// Marlin's `MAX_CMD_SIZE` (96) less the terminator: the longest wire line, number and
/// checksum included.
pub const MAX_WIRE_CHARS: usize = 95;
/// Bytes kept while waiting for a newline before the run is reported as unparsed.
const MAX_RX_LINE_BYTES: usize = 512;

/// XOR of every byte: Marlin's checksum of the text before `*`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc ^ b)
}

/// The wire form of a command: `N<number> <command>*<checksum>` (no newline).
pub fn numbered_line(number: i64, command: &str) -> String {
    let body = format!("N{number} {command}");
    let cs = checksum(body.as_bytes());
    format!("{body}*{cs}")
}

/// A line that cannot be sent to Marlin as given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MarlinError {
    #[error("line with tag {tag} has non-ASCII characters; Marlin reads bytes, write plain ASCII G-code")]
    NonAscii { tag: u64 },
    #[error("line with tag {tag} has a control character or a newline; queue one line per call")]
    ControlCharacter { tag: u64 },
    #[error("line with tag {tag} contains `*`, which Marlin takes as the checksum marker; remove it")]
    Asterisk { tag: u64 },
    #[error("line with tag {tag} is empty (or only a comment); skip it instead of queueing it")]
    Empty { tag: u64 },
    #[error("line with tag {tag} is {len} characters on the wire, Marlin keeps {max}; shorten numbers or split it")]
    TooLong { tag: u64, len: usize, max: usize },
    #[error("grbl line `{line}`: G4 P `{value}` is not a number of seconds; fix the program")]
    BadDwell { line: String, value: String },
}

/// Settings of the streamer.
#[derive(Debug, Clone, PartialEq)]
pub struct MarlinConfig {
    /// Lines sent and unanswered at most (Marlin's `BUFSIZE`, 4).
    pub max_in_flight: usize,
    /// Silence after which the oldest unanswered line is sent again. Longer than the longest
    /// single command (a dwell, or a move waiting for planner room) avoids needless probes;
    /// a needless probe is harmless (Marlin refuses the duplicate number).
    pub resend_timeout: Duration,
    /// The firmware has `REALTIME_REPORTING_COMMANDS` (with `EMERGENCY_PARSER`): its serial
    /// interrupt acts on `P000` (quick pause: the stepper interrupt is suspended at once, no
    /// deceleration, the planner kept) and `R000` (resume) as they arrive, and the line is
    /// then queued and answered `ok` like any other. Off: Marlin has no feed hold.
    pub realtime_commands: bool,
}

impl Default for MarlinConfig {
    fn default() -> Self {
        MarlinConfig { max_in_flight: 4, resend_timeout: Duration::from_secs(10), realtime_commands: false }
    }
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum MarlinEvent {
    /// The line went into the transmit buffer with this number (again, after a resend).
    Sent { tag: u64, line_number: i64 },
    /// Marlin has taken the line (processed it, or validated it into its queue): it will run
    /// unless the controller resets.
    Accepted { tag: u64 },
    /// Marlin asked for lines from `from_line` again; they are being retransmitted.
    Resent { from_line: i64 },
    /// An `Error:` line, verbatim after the prefix (a `Resend:` normally follows).
    Error(String),
    /// `busy: processing`: Marlin is alive inside a long command.
    Busy,
    /// Nothing heard for `resend_timeout`: the oldest unanswered line was sent again.
    Timeout { line_number: i64 },
    /// `start`: the controller reset. The tags were in flight and their fate is unknown.
    /// Sending is paused until [`MarlinStreamer::resume`].
    Reset { lost_tags: Vec<u64> },
    /// An `ok` with nothing to acknowledge.
    UnexpectedOk,
    /// A received line this host does not interpret (`echo:`, reports, noise), verbatim.
    Unparsed(String),
}

#[derive(Debug, Clone)]
struct Entry {
    number: i64,
    command: String,
    /// `None` for the host's own `M110`.
    tag: Option<u64>,
}

/// Host side of Marlin's numbered-line protocol. See the module docs.
#[derive(Debug)]
pub struct MarlinStreamer {
    cfg: MarlinConfig,
    /// Lines not yet accepted, oldest first; `entries[..next_send]` are on the wire.
    entries: VecDeque<Entry>,
    next_send: usize,
    next_number: i64,
    /// Sent lines whose answer has not arrived (flow control).
    outstanding: usize,
    /// `ok`s still to come for lines accepted by a `Resend:`.
    owed_oks: usize,
    /// `ok`s that belong to an error or an unknown fragment.
    skip_oks: usize,
    ignore_resends: usize,
    last_resend: Option<i64>,
    paused: bool,
    /// Lines at `next_send` to send at the next transmit whatever the pause and the window
    /// ([`MarlinStreamer::send_now`]).
    force_next: usize,
    progress_at: Option<Duration>,
    probe: Option<String>,
    rx: Vec<u8>,
    events: VecDeque<MarlinEvent>,
}

impl MarlinStreamer {
    /// A streamer whose first line resets Marlin's numbering (`N0 M110 N0`).
    pub fn new(cfg: MarlinConfig) -> Self {
        let mut s = MarlinStreamer {
            cfg,
            entries: VecDeque::new(),
            next_send: 0,
            next_number: 0,
            outstanding: 0,
            owed_oks: 0,
            skip_oks: 0,
            ignore_resends: 0,
            last_resend: None,
            paused: false,
            force_next: 0,
            progress_at: None,
            probe: None,
            rx: Vec::new(),
            events: VecDeque::new(),
        };
        s.push_m110();
        s
    }

    fn push_m110(&mut self) {
        self.entries.push_front(Entry { number: 0, command: "M110 N0".to_string(), tag: None });
        self.next_number = 1;
    }

    pub fn config(&self) -> &MarlinConfig {
        &self.cfg
    }

    /// Queues one Marlin-dialect command (no `N`, no checksum, no newline); `tag` comes back
    /// in its events. A `;` comment is dropped. Translate grbl programs first with
    /// [`grbl_to_marlin`].
    pub fn queue_line(&mut self, line: &str, tag: u64) -> Result<(), MarlinError> {
        let command = clean_command(line, tag)?;
        let number = self.next_number;
        let len = numbered_line(number, &command).len();
        if len > MAX_WIRE_CHARS {
            return Err(MarlinError::TooLong { tag, len, max: MAX_WIRE_CHARS });
        }
        self.entries.push_back(Entry { number, command, tag: Some(tag) });
        self.next_number += 1;
        Ok(())
    }

    /// Queues `command` (tag `tag`) ahead of every line not yet sent: a query the host makes
    /// between program lines, e.g. `M220` for the feed percentage. The unsent lines behind it
    /// are renumbered: none of them is on the wire, so their numbers are still free (Marlin
    /// only ever sees consecutive numbers). Refused, changing nothing, for the reasons of
    /// [`MarlinStreamer::queue_line`], also when a renumbered line would grow too long.
    pub fn insert_next(&mut self, command: &str, tag: u64) -> Result<(), MarlinError> {
        let command = clean_command(command, tag)?;
        // Behind lines being forced out, and behind an unsent `M110` (after a reset): it must
        // stay the first line of its numbering.
        let mut at = (self.next_send + self.force_next).min(self.entries.len());
        while self.entries.get(at).is_some_and(|e| e.tag.is_none()) {
            at += 1;
        }
        let number = self.entries.get(at).map_or(self.next_number, |e| e.number);
        let too_long = |n: i64, c: &str| numbered_line(n, c).len() > MAX_WIRE_CHARS;
        if too_long(number, &command) {
            let len = numbered_line(number, &command).len();
            return Err(MarlinError::TooLong { tag, len, max: MAX_WIRE_CHARS });
        }
        if let Some(e) = self.entries.iter().skip(at).find(|e| too_long(e.number + 1, &e.command)) {
            let len = numbered_line(e.number + 1, &e.command).len();
            return Err(MarlinError::TooLong { tag: e.tag.unwrap_or(tag), len, max: MAX_WIRE_CHARS });
        }
        for e in self.entries.iter_mut().skip(at) {
            e.number += 1;
        }
        self.entries.insert(at, Entry { number, command, tag: Some(tag) });
        self.next_number += 1;
        Ok(())
    }

    /// [`MarlinStreamer::insert_next`], and the line goes out at the next transmit even while
    /// paused or with `max_in_flight` lines unanswered: for the emergency parser's `P000` and
    /// `R000`, which Marlin's serial interrupt acts on as they arrive (its receive buffer holds
    /// the one extra line until the queue has room). Numbered like any line, so it is answered
    /// in order and a resend covers it. Returns whether it goes out at once: not while an
    /// `M110` after a reset is still unsent (it then waits behind it, like any line).
    pub fn send_now(&mut self, command: &str, tag: u64) -> Result<bool, MarlinError> {
        self.insert_next(command, tag)?;
        let at_front = self.entries.get(self.next_send + self.force_next).is_some_and(|e| e.tag == Some(tag));
        if at_front {
            self.force_next += 1;
        }
        Ok(at_front)
    }

    /// Takes bytes read from the port, in any chunking.
    pub fn handle_received(&mut self, bytes: &[u8], now: Duration) {
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.rx);
                self.handle_line(&line, now);
            } else {
                self.rx.push(b);
                if self.rx.len() > MAX_RX_LINE_BYTES {
                    let junk = std::mem::take(&mut self.rx);
                    self.events.push_back(MarlinEvent::Unparsed(String::from_utf8_lossy(&junk).into_owned()));
                }
            }
        }
    }

    fn handle_line(&mut self, raw: &[u8], now: Duration) {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim();
        if line.is_empty() {
            return;
        }
        self.progress_at = Some(now);
        if line == "ok" || line.starts_with("ok ") {
            self.handle_ok();
        } else if let Some(rest) = line.strip_prefix("Resend:").or_else(|| line.strip_prefix("rs ")) {
            self.skip_oks += 1;
            match rest.trim().parse::<i64>() {
                Ok(n) => self.handle_resend(n),
                Err(_) => self.events.push_back(MarlinEvent::Unparsed(line.to_string())),
            }
        } else if let Some(msg) = line.strip_prefix("Error:").or_else(|| line.strip_prefix("error:")) {
            self.events.push_back(MarlinEvent::Error(msg.to_string()));
        } else if line.ends_with("busy: processing") || line.starts_with("busy:") {
            self.events.push_back(MarlinEvent::Busy);
        } else if line == "start" {
            self.handle_start();
        } else {
            if line.starts_with("echo:Unknown command") {
                // Its `ok` answers whatever was unknown: maybe a fragment of a corrupted line,
                // so it must not acknowledge one of ours.
                self.skip_oks += 1;
            }
            self.events.push_back(MarlinEvent::Unparsed(line.to_string()));
        }
    }

    fn handle_ok(&mut self) {
        if self.skip_oks > 0 {
            self.skip_oks -= 1;
            self.outstanding = self.outstanding.saturating_sub(1);
            return;
        }
        if self.owed_oks > 0 {
            self.owed_oks -= 1;
            return;
        }
        if self.next_send == 0 {
            self.events.push_back(MarlinEvent::UnexpectedOk);
            return;
        }
        self.ignore_resends = 0;
        self.outstanding = self.outstanding.saturating_sub(1);
        self.accept_front();
    }

    fn accept_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.next_send = self.next_send.saturating_sub(1);
            if let Some(tag) = e.tag {
                self.events.push_back(MarlinEvent::Accepted { tag });
            }
        }
        if self.entries.is_empty() || self.next_send == 0 {
            self.progress_at = if self.next_send == 0 { None } else { self.progress_at };
        }
    }

    fn handle_resend(&mut self, from: i64) {
        if self.ignore_resends > 0 && self.last_resend == Some(from) {
            self.ignore_resends -= 1;
            return;
        }
        while self.next_send > 0 && self.entries.front().is_some_and(|e| e.number < from) {
            self.accept_front();
            self.owed_oks += 1;
        }
        if let Some(front) = self.entries.front() {
            if front.number > from {
                self.events.push_back(MarlinEvent::Error(format!(
                    "controller asked for line {from}, which was already acknowledged; the stream cannot be repaired"
                )));
                self.paused = true;
                return;
            }
        }
        self.ignore_resends = self.outstanding.saturating_sub(1);
        self.outstanding = 0;
        self.next_send = 0;
        self.force_next = 0;
        self.last_resend = Some(from);
        self.events.push_back(MarlinEvent::Resent { from_line: from });
    }

    fn handle_start(&mut self) {
        let lost_tags: Vec<u64> = self.entries.drain(..self.next_send).filter_map(|e| e.tag).collect();
        // The controller numbers from 0 again: renumber what is left behind a fresh M110.
        self.entries.retain(|e| e.tag.is_some());
        let mut n = 1;
        for e in self.entries.iter_mut() {
            e.number = n;
            n += 1;
        }
        self.push_m110();
        self.next_number = n;
        self.next_send = 0;
        self.force_next = 0;
        self.outstanding = 0;
        self.owed_oks = 0;
        self.skip_oks = 0;
        self.ignore_resends = 0;
        self.last_resend = None;
        self.progress_at = None;
        self.probe = None;
        if !lost_tags.is_empty() {
            self.paused = true;
            self.events.push_back(MarlinEvent::Reset { lost_tags });
        }
    }

    /// Appends the bytes to write now: a timeout probe first, then new or resent lines while
    /// fewer than `max_in_flight` are unanswered. An `M110` is sent alone (Marlin applies it
    /// when it runs, so lines behind it would be numbered against the old count).
    pub fn poll_transmit(&mut self, now: Duration, buf: &mut Vec<u8>) {
        if let Some(p) = self.probe.take() {
            buf.extend_from_slice(p.as_bytes());
            buf.push(b'\n');
        }
        while self.force_next > 0 {
            self.force_next -= 1;
            self.send_entry(now, buf);
        }
        if self.paused {
            return;
        }
        while self.outstanding < self.cfg.max_in_flight.max(1) {
            let Some(e) = self.entries.get(self.next_send) else { break };
            let m110_on_wire = self.entries.iter().take(self.next_send).any(|e| e.tag.is_none());
            if m110_on_wire || (e.tag.is_none() && self.next_send > 0) {
                break;
            }
            self.send_entry(now, buf);
        }
    }

    /// Writes the line at `next_send` and counts it on the wire.
    fn send_entry(&mut self, now: Duration, buf: &mut Vec<u8>) {
        let Some(e) = self.entries.get(self.next_send) else { return };
        buf.extend_from_slice(numbered_line(e.number, &e.command).as_bytes());
        buf.push(b'\n');
        if let Some(tag) = e.tag {
            self.events.push_back(MarlinEvent::Sent { tag, line_number: e.number });
        }
        if self.outstanding == 0 {
            self.progress_at = Some(now);
        }
        self.next_send += 1;
        self.outstanding += 1;
    }

    pub fn poll_event(&mut self) -> Option<MarlinEvent> {
        self.events.pop_front()
    }

    /// When [`MarlinStreamer::handle_timeout`] next needs calling, if ever.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.next_send == 0 {
            return None;
        }
        self.progress_at.map(|t| t + self.cfg.resend_timeout)
    }

    /// After `resend_timeout` of silence, sends the oldest unanswered line again.
    pub fn handle_timeout(&mut self, now: Duration) {
        let Some(deadline) = self.poll_timeout() else { return };
        if now < deadline {
            return;
        }
        if let Some(e) = self.entries.front() {
            self.events.push_back(MarlinEvent::Timeout { line_number: e.number });
            self.probe = Some(numbered_line(e.number, &e.command));
            self.outstanding += 1;
            self.progress_at = Some(now);
        }
    }

    /// Lines queued and not yet accepted (the host's own `M110` excluded).
    pub fn pending(&self) -> usize {
        self.entries.iter().filter(|e| e.tag.is_some()).count()
    }

    /// Lines on the wire without an answer.
    pub fn in_flight(&self) -> usize {
        self.outstanding
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Drops every queued line not yet sent and returns their tags, oldest first (lines on
    /// the wire stay, so that resends of them still work).
    pub fn clear_queue(&mut self) -> Vec<u64> {
        let at = self.next_send.min(self.entries.len());
        let dropped: Vec<u64> = self.entries.drain(at..).filter_map(|e| e.tag).collect();
        self.next_number = self.entries.back().map_or(1, |e| e.number + 1);
        dropped
    }

    /// Lets lines go out again after a reset, an unrepairable resend or `pause`.
    pub fn resume(&mut self) {
        self.paused = false;
    }
}

/// The feed rate percentage in Marlin 2.x's answer to `M220` without arguments
/// (`FR:100%`, printed before the command's `ok`); `None` for any other line.
pub fn feed_rate_percent(line: &str) -> Option<u16> {
    let line = line.trim();
    let rest = line.strip_prefix("echo:").unwrap_or(line).trim_start();
    rest.strip_prefix("FR:")?.trim().strip_suffix('%')?.trim().parse().ok()
}

/// Translates one line of the compiler's grbl dialect to Marlin's, or `None` for a line that
/// is only a comment or grbl's program end `M2`, which Marlin does not have (it would answer
/// `Unknown command`). grbl's `G4 P` is in **seconds**, Marlin's in **milliseconds**: a dwell
/// passed through unchanged would last a thousand times less, so every `G4` is rewritten to
/// Marlin's `G4 S<seconds>` (grbl reads S as the spindle speed). `(...)` comments are removed
/// (Marlin only strips `;` comments by default).
///
/// A program compiled in the Marlin dialect ([`crate::Dialect::Marlin`]) is already what
/// Marlin reads, and verified as such; this translation is for grbl programs only. It cannot
/// split a line: of grbl's `G21 G90 G94` Marlin runs only `G21`.
pub fn grbl_to_marlin(line: &str) -> Result<Option<String>, MarlinError> {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in line.split(';').next().unwrap_or("").chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let words: Vec<String> = out.split_whitespace().map(str::to_ascii_uppercase).collect();
    if words.is_empty() || words == ["M2"] {
        return Ok(None);
    }
    let is_dwell = words.iter().any(|w| w == "G4" || w == "G04");
    if !is_dwell {
        return Ok(Some(out.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    let translated: Result<Vec<String>, MarlinError> = words
        .iter()
        .map(|w| match w.strip_prefix('P') {
            Some(v) => match v.parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => Ok(format!("S{}", trim_number(s))),
                _ => Err(MarlinError::BadDwell { line: line.to_string(), value: v.to_string() }),
            },
            None => Ok(w.clone()),
        })
        .collect();
    Ok(Some(translated?.join(" ")))
}

/// Shortest decimal of `v` with at most 3 decimals (millisecond resolution), no trailing zeros.
fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A host line as Marlin will number it: printable ASCII, the `;` comment dropped, tabs as
/// spaces, no `*` (it starts the checksum), not empty.
fn clean_command(line: &str, tag: u64) -> Result<String, MarlinError> {
    crate::program::check_line_chars(line).map_err(|p| match p {
        crate::program::LineCharProblem::NonAscii => MarlinError::NonAscii { tag },
        crate::program::LineCharProblem::ControlCharacter => MarlinError::ControlCharacter { tag },
    })?;
    let command = line.split(';').next().unwrap_or("").trim().replace('\t', " ");
    if command.contains('*') {
        return Err(MarlinError::Asterisk { tag });
    }
    if command.is_empty() {
        return Err(MarlinError::Empty { tag });
    }
    Ok(command)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn events(s: &mut MarlinStreamer) -> Vec<MarlinEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn sent(s: &mut MarlinStreamer, now: Duration) -> String {
        let mut buf = Vec::new();
        s.poll_transmit(now, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[test]
    fn checksums_match_known_marlin_examples() {
        // From the RepRap wiki / Marlin docs: "N3 T0*57" and the usual host reset line.
        assert_eq!(numbered_line(3, "T0"), "N3 T0*57");
        assert_eq!(numbered_line(0, "M110 N0"), "N0 M110 N0*125");
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn dwell_seconds_become_marlin_seconds_not_milliseconds() {
        assert_eq!(grbl_to_marlin("G4 P0.3").unwrap().as_deref(), Some("G4 S0.3"));
        assert_eq!(grbl_to_marlin("g4 p2").unwrap().as_deref(), Some("G4 S2"));
        assert_eq!(grbl_to_marlin("G1 Z5.000 F600").unwrap().as_deref(), Some("G1 Z5.000 F600"));
        assert_eq!(grbl_to_marlin("(smp session 1)").unwrap(), None);
        assert_eq!(grbl_to_marlin("M2").unwrap(), None, "Marlin has no program end");
        assert_eq!(grbl_to_marlin("M2 (shutdown)").unwrap(), None);
        assert_eq!(grbl_to_marlin("G4 S0.050").unwrap().as_deref(), Some("G4 S0.050"), "already Marlin's");
        assert!(matches!(grbl_to_marlin("G4 Px"), Err(MarlinError::BadDwell { .. })));
        assert!(matches!(grbl_to_marlin("G4 P-1"), Err(MarlinError::BadDwell { .. })));
    }

    #[test]
    fn a_query_inserted_between_lines_goes_next_and_renumbers_the_unsent_lines() {
        let mut s = MarlinStreamer::new(MarlinConfig { max_in_flight: 2, ..MarlinConfig::default() });
        for i in 0..4 {
            s.queue_line("G1 X1", i).unwrap();
        }
        // Before anything is sent: behind the M110, which keeps number 0.
        s.insert_next("M220", 100).unwrap();
        assert_eq!(sent(&mut s, ms(0)), "N0 M110 N0*125\n");
        s.handle_received(b"ok\n", ms(1));
        assert_eq!(sent(&mut s, ms(1)), format!("{}\n{}\n", numbered_line(1, "M220"), numbered_line(2, "G1 X1")));
        // Mid-stream: ahead of the unsent lines 3, 4, 5, which become 4, 5, 6.
        s.insert_next("M220", 101).unwrap();
        s.handle_received(b"FR:100%\nok\nok\n", ms(2));
        let out = sent(&mut s, ms(2));
        assert_eq!(out, format!("{}\n{}\n", numbered_line(3, "M220"), numbered_line(4, "G1 X1")));
        s.handle_received(b"ok\nok\n", ms(3));
        assert_eq!(sent(&mut s, ms(3)), format!("{}\n{}\n", numbered_line(5, "G1 X1"), numbered_line(6, "G1 X1")));
        let accepted: Vec<u64> = events(&mut s)
            .into_iter()
            .filter_map(|e| match e {
                MarlinEvent::Accepted { tag } => Some(tag),
                _ => None,
            })
            .collect();
        assert_eq!(accepted, [100, 0, 101, 1]);
        assert!(matches!(s.insert_next("M220*", 7), Err(MarlinError::Asterisk { tag: 7 })));
        assert_eq!(feed_rate_percent("FR:100%"), Some(100));
        assert_eq!(feed_rate_percent("echo:FR:150%"), Some(150));
        assert_eq!(feed_rate_percent("FR:abc%"), None);
        assert_eq!(feed_rate_percent("ok"), None);
    }

    #[test]
    fn an_emergency_parser_line_goes_out_while_paused_and_full_and_is_answered_in_order() {
        let mut s = MarlinStreamer::new(MarlinConfig::default());
        for i in 0..6 {
            s.queue_line("G1 X1", i).unwrap();
        }
        sent(&mut s, ms(0));
        s.handle_received(b"ok\n", ms(1));
        assert_eq!(sent(&mut s, ms(1)).lines().count(), 4, "window full");
        s.pause();
        assert!(s.send_now("P000", 100).unwrap());
        assert_eq!(sent(&mut s, ms(2)), format!("{}\n", numbered_line(5, "P000")), "paused and full, still sent");
        assert_eq!(sent(&mut s, ms(2)), "", "once");
        assert_eq!(s.in_flight(), 5);
        s.handle_received(b"ok\nok\nok\nok\nok\n", ms(3));
        let accepted: Vec<u64> = events(&mut s)
            .into_iter()
            .filter_map(|e| match e {
                MarlinEvent::Accepted { tag } => Some(tag),
                _ => None,
            })
            .collect();
        assert_eq!(accepted, [0, 1, 2, 3, 100]);
        assert!(s.send_now("R000", 101).unwrap());
        s.resume();
        let out = sent(&mut s, ms(4));
        assert!(out.starts_with(&format!("{}\n{}\n", numbered_line(6, "R000"), numbered_line(7, "G1 X1"))), "{out}");
    }

    #[test]
    fn m110_goes_alone_then_four_in_flight() {
        let mut s = MarlinStreamer::new(MarlinConfig::default());
        for i in 0..6 {
            s.queue_line("G1 X1", i).unwrap();
        }
        assert_eq!(sent(&mut s, ms(0)), "N0 M110 N0*125\n");
        s.handle_received(b"ok\n", ms(1));
        let out = sent(&mut s, ms(1));
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(out.starts_with("N1 G1 X1*"));
        assert_eq!(sent(&mut s, ms(2)), "");
        s.handle_received(b"ok\n", ms(3));
        assert_eq!(sent(&mut s, ms(3)).lines().count(), 1);
        assert_eq!(s.pending(), 5);
    }

    #[test]
    fn resend_rewinds_and_keeps_tags() {
        let mut s = MarlinStreamer::new(MarlinConfig::default());
        for i in 0..4 {
            s.queue_line(&format!("G1 X{i}"), 100 + i).unwrap();
        }
        sent(&mut s, ms(0));
        s.handle_received(b"ok\n", ms(1));
        sent(&mut s, ms(1));
        events(&mut s);
        s.handle_received(b"ok\nError:checksum mismatch, Last Line: 1\nResend: 2\nok\n", ms(2));
        // Stale lines 3 and 4 draw the same request: ignored.
        s.handle_received(b"Error:Line Number is not Last Line Number+1, Last Line: 1\nResend: 2\nok\n", ms(3));
        let ev = events(&mut s);
        assert_eq!(ev[0], MarlinEvent::Accepted { tag: 100 });
        assert!(ev.contains(&MarlinEvent::Resent { from_line: 2 }));
        assert_eq!(ev.iter().filter(|e| matches!(e, MarlinEvent::Resent { .. })).count(), 1);
        let out = sent(&mut s, ms(4));
        assert!(out.starts_with("N2 G1 X1*"), "{out}");
        let ev = events(&mut s);
        assert_eq!(ev[0], MarlinEvent::Sent { tag: 101, line_number: 2 });
    }

    #[test]
    fn noise_is_tolerated_and_bad_lines_refused() {
        let mut s = MarlinStreamer::new(MarlinConfig::default());
        s.handle_received(b"start\necho:busy: processing\nX:1.00 Y:2.00 Z:3.00 E:0.00 Count X:1 Y:2 Z:3\n", ms(0));
        let ev = events(&mut s);
        assert!(ev.contains(&MarlinEvent::Busy));
        assert!(matches!(ev.last(), Some(MarlinEvent::Unparsed(_))));
        assert_eq!(s.queue_line("G1 X1*5", 1), Err(MarlinError::Asterisk { tag: 1 }));
        assert_eq!(s.queue_line("; only", 2), Err(MarlinError::Empty { tag: 2 }));
        assert_eq!(s.queue_line("G1\nX", 3), Err(MarlinError::ControlCharacter { tag: 3 }));
        assert!(matches!(s.queue_line(&"G1 X1 ".repeat(30), 4), Err(MarlinError::TooLong { .. })));
    }

    #[test]
    fn timeout_resends_the_oldest_line() {
        let mut s = MarlinStreamer::new(MarlinConfig { resend_timeout: ms(500), ..MarlinConfig::default() });
        s.queue_line("G1 X1", 7).unwrap();
        sent(&mut s, ms(0));
        s.handle_received(b"ok\n", ms(1));
        sent(&mut s, ms(1));
        assert_eq!(s.poll_timeout(), Some(ms(501)));
        s.handle_timeout(ms(600));
        assert!(sent(&mut s, ms(600)).starts_with("N1 G1 X1*"));
        s.handle_received(b"Error:Line Number is not Last Line Number+1, Last Line: 1\nResend: 2\nok\n", ms(700));
        let ev = events(&mut s);
        assert!(ev.contains(&MarlinEvent::Accepted { tag: 7 }));
        assert_eq!(s.pending(), 0);
        assert_eq!(s.poll_timeout(), None);
    }
}

//! The host side of grbl's character-counting protocol as a state machine: [`GrblStreamer`]
//! queues lines, sends as many as fit in grbl's receive buffer, matches each `ok`/`error:N` to
//! the oldest line in flight, holds the queue after a fault, and times the answers out.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

use super::realtime::{realtime_name, Realtime};
use super::response::{parse_response, Feedback, Response};
use super::status::StatusReport;

/// Longest line (without its newline) [`GrblStreamer::queue_line`] accepts; grbl's line
/// buffer is 80 bytes including the terminator.
pub const MAX_LINE_CHARS: usize = 78;

/// Bytes of received text kept while waiting for a newline; a longer run without one is
/// reported as [`GrblEvent::Unparsed`] and dropped, so a babbling line cannot grow memory.
const MAX_RX_LINE_BYTES: usize = 512;

/// Settings of the streamer.
#[derive(Debug, Clone, PartialEq)]
pub struct GrblConfig {
    /// grbl's serial receive buffer (`RX_BUFFER_SIZE`, 128 on an Uno).
    pub rx_buffer_bytes: usize,
    /// How long the oldest in-flight line may wait for its answer, counted from the later of
    /// its sending and the previous answer. Must exceed the longest single block (grbl only
    /// answers a line once the planner has room for it; a `G4` only after all motion ends).
    pub ack_timeout: Duration,
    /// Hold back queued lines after an `error:N` until [`GrblStreamer::resume`].
    pub pause_on_error: bool,
    /// Send nothing but realtime bytes until grbl's welcome banner arrives (an Arduino resets
    /// when the port opens, and bytes sent during its boot are lost).
    pub wait_for_welcome: bool,
    /// Record a text transcript of the bytes exchanged (for golden tests and fault logs).
    pub record_transcript: bool,
}

impl Default for GrblConfig {
    fn default() -> Self {
        GrblConfig {
            rx_buffer_bytes: 128,
            ack_timeout: Duration::from_secs(20),
            pause_on_error: true,
            wait_for_welcome: false,
            record_transcript: false,
        }
    }
}

/// A line the streamer refuses to queue; each names the tag and what to change.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("line for tag {tag} holds a non-ASCII byte; grbl only takes printable ASCII")]
    NonAscii { tag: u64 },
    #[error("line for tag {tag} holds a newline or control character; queue one line at a time")]
    ControlCharacter { tag: u64 },
    #[error(
        "line for tag {tag} holds the grbl realtime character `{ch}`, which grbl would act on and strip; \
         remove it (also from comments)"
    )]
    RealtimeCharacter { tag: u64, ch: char },
    #[error("line for tag {tag} is {len} characters; grbl takes at most {max}, split the line")]
    TooLong { tag: u64, len: usize, max: usize },
}

/// What happened, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum GrblEvent {
    /// The line with this tag was put into the transmit buffer by the last `poll_transmit`
    /// (journal it before writing the bytes).
    Sent { tag: u64 },
    /// grbl answered `ok` for this line (it is in the planner, or done for `G4`/`$` lines).
    Accepted { tag: u64 },
    /// grbl answered `error:N` for this line; it will not be executed.
    Rejected { tag: u64, code: u16 },
    /// `ALARM:N` (`code`), or an alarm with text instead of a number (`text`). Queued lines
    /// are held back until [`GrblStreamer::resume`].
    Alarm { code: Option<u16>, text: Option<String> },
    /// Boxed: a report is large next to the other variants.
    Status(Box<StatusReport>),
    /// `[MSG:...]` feedback (or a grbl 0.9 `[...]` message), text inside.
    Message(String),
    /// Typed feedback, with the line verbatim.
    Feedback { feedback: Feedback, line: String },
    /// The controller's banner: `Grbl 1.1h ['$' for help]` is firmware `Grbl`, version `1.1h`.
    Welcome { firmware: String, version: String },
    /// The controller reset while lines were in flight (or after a host soft reset): those
    /// lines' fate is unknown. In-flight bookkeeping is cleared and queued lines are held.
    Reset { lost_tags: Vec<u64> },
    /// The oldest in-flight line got no answer within `ack_timeout` (reported once per line).
    AckTimeout { tag: u64 },
    /// An `ok` arrived with nothing in flight: the count is off, or someone else is talking.
    UnexpectedOk,
    /// An `error:N` arrived with nothing in flight.
    UnexpectedError { code: u16 },
    /// A received line this build cannot interpret, verbatim (lossy UTF-8). Never fatal.
    Unparsed(String),
}

#[derive(Debug, Clone)]
struct InFlight {
    tag: u64,
    bytes: usize,
}

/// Host side of grbl's character-counting streaming protocol. See the module docs.
#[derive(Debug)]
pub struct GrblStreamer {
    cfg: GrblConfig,
    queue: VecDeque<(String, u64)>,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    realtime: Vec<u8>,
    rx: Vec<u8>,
    events: VecDeque<GrblEvent>,
    paused: bool,
    welcomed: bool,
    /// A soft reset byte was sent; nothing but realtime bytes goes out until the banner.
    awaiting_reset: bool,
    /// Feed hold requested: the ack timer does not run while the machine is held.
    held: bool,
    /// Start of the current wait for the oldest in-flight line's answer.
    progress_at: Option<Duration>,
    /// Tag already reported as timed out (reported once).
    timed_out: Option<u64>,
    transcript: Vec<String>,
}

impl GrblStreamer {
    pub fn new(cfg: GrblConfig) -> Self {
        let welcomed = !cfg.wait_for_welcome;
        GrblStreamer {
            cfg,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            realtime: Vec::new(),
            rx: Vec::new(),
            events: VecDeque::new(),
            paused: false,
            welcomed,
            awaiting_reset: false,
            held: false,
            progress_at: None,
            timed_out: None,
            transcript: Vec::new(),
        }
    }

    pub fn config(&self) -> &GrblConfig {
        &self.cfg
    }

    /// Queues a line (without newline) for sending; `tag` comes back in its events.
    pub fn queue_line(&mut self, line: &str, tag: u64) -> Result<(), ProtocolError> {
        self.check_line(line, tag)?;
        self.queue.push_back((line.to_string(), tag));
        Ok(())
    }

    /// The checks of [`GrblStreamer::queue_line`] without queueing (for hosts that hold
    /// lines back themselves, such as the send-response streamer).
    pub fn check_line(&self, line: &str, tag: u64) -> Result<(), ProtocolError> {
        crate::program::check_line_chars(line).map_err(|p| match p {
            crate::program::LineCharProblem::NonAscii => ProtocolError::NonAscii { tag },
            crate::program::LineCharProblem::ControlCharacter => ProtocolError::ControlCharacter { tag },
        })?;
        if let Some(ch) = line.chars().find(|c| matches!(c, '?' | '!' | '~')) {
            return Err(ProtocolError::RealtimeCharacter { tag, ch });
        }
        let max = MAX_LINE_CHARS.min(self.cfg.rx_buffer_bytes.saturating_sub(1));
        if line.len() > max {
            return Err(ProtocolError::TooLong { tag, len: line.len(), max });
        }
        Ok(())
    }

    /// Requests a realtime command; it goes out ahead of every queued line.
    pub fn realtime(&mut self, cmd: Realtime) {
        let b = cmd.byte();
        if cmd == Realtime::StatusQuery && self.realtime.contains(&b) {
            return; // one pending query is enough
        }
        self.realtime.push(b);
    }

    /// Takes bytes read from the port, in any chunking; complete lines become events.
    pub fn handle_received(&mut self, bytes: &[u8], now: Duration) {
        for &b in bytes {
            match b {
                b'\n' => {
                    let line = std::mem::take(&mut self.rx);
                    self.handle_line(&line, now);
                }
                _ => {
                    self.rx.push(b);
                    if self.rx.len() > MAX_RX_LINE_BYTES {
                        let junk = std::mem::take(&mut self.rx);
                        let text = String::from_utf8_lossy(&junk).into_owned();
                        self.record(format!("< {text}"));
                        self.events.push_back(GrblEvent::Unparsed(text));
                    }
                }
            }
        }
    }

    fn handle_line(&mut self, raw: &[u8], now: Duration) {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim_matches(|c: char| c == '\r' || c.is_whitespace());
        if line.is_empty() {
            return;
        }
        self.record(format!("< {line}"));
        match parse_response(line) {
            Response::Ok => match self.pop_in_flight(now) {
                Some(tag) => self.events.push_back(GrblEvent::Accepted { tag }),
                None => self.events.push_back(GrblEvent::UnexpectedOk),
            },
            Response::Error { code } => match self.pop_in_flight(now) {
                Some(tag) => {
                    if self.cfg.pause_on_error {
                        self.paused = true;
                    }
                    self.events.push_back(GrblEvent::Rejected { tag, code });
                }
                None => self.events.push_back(GrblEvent::UnexpectedError { code }),
            },
            Response::Alarm { code, text } => {
                self.paused = true;
                self.events.push_back(GrblEvent::Alarm { code, text });
            }
            Response::Status(s) => self.events.push_back(GrblEvent::Status(s)),
            Response::Message(m) => self.events.push_back(GrblEvent::Message(m)),
            Response::Feedback(feedback) => {
                self.events.push_back(GrblEvent::Feedback { feedback, line: line.to_string() })
            }
            Response::Banner { firmware, version } => {
                if !self.in_flight.is_empty() || self.awaiting_reset {
                    let lost_tags: Vec<u64> = self.in_flight.drain(..).map(|f| f.tag).collect();
                    self.in_flight_bytes = 0;
                    self.progress_at = None;
                    self.timed_out = None;
                    self.awaiting_reset = false;
                    self.held = false;
                    self.paused = true;
                    self.events.push_back(GrblEvent::Reset { lost_tags });
                }
                self.welcomed = true;
                self.events.push_back(GrblEvent::Welcome { firmware, version });
            }
            Response::Unknown => self.events.push_back(GrblEvent::Unparsed(line.to_string())),
        }
    }

    fn pop_in_flight(&mut self, now: Duration) -> Option<u64> {
        let f = self.in_flight.pop_front()?;
        self.in_flight_bytes -= f.bytes;
        self.progress_at = if self.in_flight.is_empty() { None } else { Some(now) };
        self.timed_out = None;
        Some(f.tag)
    }

    /// Appends the bytes to write now to `buf`: pending realtime bytes first, then as many
    /// queued lines as fit in grbl's receive buffer. Emits `Sent` for each line.
    pub fn poll_transmit(&mut self, now: Duration, buf: &mut Vec<u8>) {
        for b in std::mem::take(&mut self.realtime) {
            buf.push(b);
            self.record(format!("> {}", realtime_name(b)));
            match b {
                0x18 => self.awaiting_reset = true,
                b'!' => self.held = true,
                // Resuming restarts the wait for the oldest answer: the hold was not grbl's fault.
                b'~' if self.held => {
                    self.held = false;
                    if !self.in_flight.is_empty() {
                        self.progress_at = Some(now);
                    }
                }
                _ => {}
            }
        }
        if self.paused || self.awaiting_reset || !self.welcomed {
            return;
        }
        while let Some((line, _)) = self.queue.front() {
            let bytes = line.len() + 1;
            if self.in_flight_bytes + bytes > self.cfg.rx_buffer_bytes {
                break;
            }
            let Some((line, tag)) = self.queue.pop_front() else { break };
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            if self.in_flight.is_empty() {
                self.progress_at = Some(now);
            }
            self.in_flight.push_back(InFlight { tag, bytes });
            self.in_flight_bytes += bytes;
            self.record(format!("> {line}"));
            self.events.push_back(GrblEvent::Sent { tag });
        }
    }

    /// Next event, oldest first.
    pub fn poll_event(&mut self) -> Option<GrblEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` next needs calling, if ever.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.held {
            return None;
        }
        let front = self.in_flight.front()?;
        if self.timed_out == Some(front.tag) {
            return None;
        }
        self.progress_at.map(|t| t + self.cfg.ack_timeout)
    }

    /// Reports an `AckTimeout` for the oldest in-flight line if its deadline has passed.
    pub fn handle_timeout(&mut self, now: Duration) {
        if let (Some(deadline), Some(front)) = (self.poll_timeout(), self.in_flight.front()) {
            if now >= deadline {
                let tag = front.tag;
                self.timed_out = Some(tag);
                self.events.push_back(GrblEvent::AckTimeout { tag });
            }
        }
    }

    /// Lines queued and not yet answered.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Lines sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bytes (newlines included) of the lines in flight; never above `rx_buffer_bytes`.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Tags of the lines in flight, oldest first.
    pub fn in_flight_tags(&self) -> Vec<u64> {
        self.in_flight.iter().map(|f| f.tag).collect()
    }

    /// Lines queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// True while queued lines are held back (after an alarm, reset, error, or `pause`).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Holds back queued lines (realtime bytes still go out).
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Lets queued lines go out again after a pause, alarm, reset or error.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Drops every queued (unsent) line and returns their tags, oldest first.
    pub fn clear_queue(&mut self) -> Vec<u64> {
        self.queue.drain(..).map(|(_, tag)| tag).collect()
    }

    /// True once the banner has been seen (or when `wait_for_welcome` is off).
    pub fn welcomed(&self) -> bool {
        self.welcomed
    }

    /// The transcript so far: `> ` lines sent (realtime bytes by name), `< ` lines received.
    pub fn transcript(&self) -> &[String] {
        &self.transcript
    }

    pub fn take_transcript(&mut self) -> Vec<String> {
        std::mem::take(&mut self.transcript)
    }

    fn record(&mut self, line: String) {
        if self.cfg.record_transcript {
            self.transcript.push(line);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::grbl::{AxisValues, MachineState, SPINDLE_STOP_BYTE};

    pub(crate) const T0: Duration = Duration::ZERO;

    pub(crate) fn drain(s: &mut GrblStreamer) -> Vec<GrblEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn sent_lines(buf: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(buf).lines().map(str::to_string).collect()
    }

    #[test]
    fn fills_the_buffer_and_no_more() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        // 10 lines of 18 chars + newline = 19 bytes each: 6 fit in 128 (7 would be 133).
        for tag in 0..10 {
            s.queue_line(&format!("G1 X{:>5}.000 F100", tag), tag).expect("valid");
        }
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        assert_eq!(sent_lines(&buf).len(), 6);
        assert_eq!(s.in_flight_bytes(), 114);
        let events = drain(&mut s);
        assert_eq!(events, (0..6).map(|tag| GrblEvent::Sent { tag }).collect::<Vec<_>>());
        s.handle_received(b"ok\n", T0);
        assert_eq!(drain(&mut s), vec![GrblEvent::Accepted { tag: 0 }]);
        buf.clear();
        s.poll_transmit(T0, &mut buf);
        assert_eq!(sent_lines(&buf), vec!["G1 X    6.000 F100".to_string()]);
        assert_eq!(s.pending(), 10 - 1);
    }

    #[test]
    fn bad_lines_are_refused() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        assert_eq!(s.queue_line("G1 X1é", 1), Err(ProtocolError::NonAscii { tag: 1 }));
        assert_eq!(s.queue_line("G1 X1\nG1 X2", 2), Err(ProtocolError::ControlCharacter { tag: 2 }));
        assert_eq!(s.queue_line("G1 X1 (why?)", 3), Err(ProtocolError::RealtimeCharacter { tag: 3, ch: '?' }));
        let long = "G1 X1 ".repeat(14);
        assert!(matches!(s.queue_line(&long, 4), Err(ProtocolError::TooLong { tag: 4, len: 84, max: 78 })));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn realtime_jumps_the_queue_and_does_not_count() {
        let mut s = GrblStreamer::new(GrblConfig { record_transcript: true, ..GrblConfig::default() });
        s.queue_line("G4 P1.000", 1).expect("valid");
        s.realtime(Realtime::StatusQuery);
        s.realtime(Realtime::StatusQuery);
        s.realtime(Realtime::FeedHold);
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        assert_eq!(buf, b"?!G4 P1.000\n");
        assert_eq!(s.in_flight_bytes(), 10);
        assert_eq!(s.transcript(), ["> ?", "> !", "> G4 P1.000"]);
        // Held: no ack timeout while the machine is in feed hold.
        assert_eq!(s.poll_timeout(), None);
        s.realtime(Realtime::CycleStart);
        buf.clear();
        s.poll_transmit(Duration::from_secs(5), &mut buf);
        assert_eq!(s.poll_timeout(), Some(Duration::from_secs(25)));
    }

    #[test]
    fn spindle_stop_is_the_0x9e_realtime_byte_and_does_not_count() {
        let mut s = GrblStreamer::new(GrblConfig { record_transcript: true, ..GrblConfig::default() });
        s.pause();
        s.queue_line("G4 P1.000", 1).expect("valid");
        s.realtime(Realtime::FeedHold);
        s.realtime(Realtime::SpindleStop);
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        assert_eq!(buf, [b'!', 0x9E]);
        assert_eq!(Realtime::SpindleStop.byte(), SPINDLE_STOP_BYTE);
        assert_eq!(s.in_flight_bytes(), 0);
        assert_eq!(s.transcript(), ["> !", "> SpindleStop"]);
        // The restore is grbl's, on the cycle start; the host only sends `~`.
        s.handle_received(b"[MSG:Restoring spindle]\r\n", T0);
        assert_eq!(s.poll_event(), Some(GrblEvent::Message("Restoring spindle".into())));
    }

    #[test]
    fn errors_alarms_messages_status_and_junk() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        for tag in 0..3 {
            s.queue_line("G1 X1 F100", tag).expect("valid");
        }
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        drain(&mut s);
        s.handle_received(b"ok\r\nerror:20\r\n[MSG:Caution: Unlocked]\r\nALARM:2\r\n", T0);
        s.handle_received(b"<Hold:1|MPos:1.000,-2.500,3.000|Bf:15,128|FS:250,12000|WCO:0,0,0>\r\n", T0);
        s.handle_received(b"<>\r\nwhat\xff\xfe\r\nALARM:x\r\nok\r\n", T0);
        let events = drain(&mut s);
        assert_eq!(
            events,
            vec![
                GrblEvent::Accepted { tag: 0 },
                GrblEvent::Rejected { tag: 1, code: 20 },
                GrblEvent::Message("Caution: Unlocked".into()),
                GrblEvent::Alarm { code: Some(2), text: None },
                GrblEvent::Status(Box::new(StatusReport {
                    mpos: AxisValues::from_slice(&[1.0, -2.5, 3.0]),
                    wco: AxisValues::from_slice(&[0.0; 3]),
                    feed_mm_per_min: Some(250.0),
                    spindle_rpm: Some(12000.0),
                    buffer: Some((15, 128)),
                    ..StatusReport::new(MachineState::Hold(1))
                })),
                GrblEvent::Unparsed("<>".into()),
                GrblEvent::Unparsed("what\u{fffd}\u{fffd}".into()),
                // An alarm whose code does not read is still an alarm.
                GrblEvent::Alarm { code: None, text: Some("x".into()) },
                GrblEvent::Accepted { tag: 2 },
            ]
        );
        assert!(s.is_paused(), "an error and an alarm hold back queued lines");
        s.handle_received(b"ok\nerror:9\n", T0);
        assert_eq!(drain(&mut s), vec![GrblEvent::UnexpectedOk, GrblEvent::UnexpectedError { code: 9 }]);
    }

    #[test]
    fn paused_streamer_sends_only_realtime_until_resumed() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        s.queue_line("G1 X1 F100", 0).expect("valid");
        s.queue_line("G1 X2 F100", 1).expect("valid");
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        s.handle_received(b"error:33\n", T0);
        s.queue_line("G1 X3 F100", 2).expect("valid");
        buf.clear();
        s.realtime(Realtime::StatusQuery);
        s.poll_transmit(T0, &mut buf);
        assert_eq!(buf, b"?");
        assert_eq!(s.clear_queue(), vec![2]);
        s.resume();
        s.queue_line("G1 X4 F100", 3).expect("valid");
        buf.clear();
        s.poll_transmit(T0, &mut buf);
        assert_eq!(buf, b"G1 X4 F100\n");
    }

    #[test]
    fn banner_with_lines_in_flight_is_a_reset() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        for tag in 10..14 {
            s.queue_line("G1 Z5 F100", tag).expect("valid");
        }
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        drain(&mut s);
        s.handle_received(b"ok\r\n\r\nGrbl 1.1h ['$' for help]\r\n", T0);
        assert_eq!(
            drain(&mut s),
            vec![
                GrblEvent::Accepted { tag: 10 },
                GrblEvent::Reset { lost_tags: vec![11, 12, 13] },
                GrblEvent::Welcome { firmware: "Grbl".into(), version: "1.1h".into() },
            ]
        );
        assert_eq!(s.in_flight_bytes(), 0);
        assert_eq!(s.poll_timeout(), None);
        // A banner with nothing in flight is only a welcome.
        s.handle_received(b"Grbl 1.1h ['$' for help]\n", T0);
        assert_eq!(drain(&mut s), vec![GrblEvent::Welcome { firmware: "Grbl".into(), version: "1.1h".into() }]);
    }

    #[test]
    fn host_soft_reset_waits_for_the_banner() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        s.realtime(Realtime::SoftReset);
        s.queue_line("G21", 1).expect("valid");
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        assert_eq!(buf, [0x18]);
        s.handle_received(b"Grbl 1.1h ['$' for help]\n", T0);
        assert_eq!(
            drain(&mut s),
            vec![
                GrblEvent::Reset { lost_tags: vec![] },
                GrblEvent::Welcome { firmware: "Grbl".into(), version: "1.1h".into() }
            ]
        );
        buf.clear();
        s.poll_transmit(T0, &mut buf);
        assert!(buf.is_empty(), "held after a reset until the caller resumes");
        s.resume();
        s.poll_transmit(T0, &mut buf);
        assert_eq!(buf, b"G21\n");
    }

    #[test]
    fn wait_for_welcome_holds_lines_until_the_banner() {
        let mut s = GrblStreamer::new(GrblConfig { wait_for_welcome: true, ..GrblConfig::default() });
        s.queue_line("G21", 1).expect("valid");
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        assert!(buf.is_empty());
        s.handle_received(b"\r\nGrbl 1.1h ['$' for help]\r\n", T0);
        s.poll_transmit(T0, &mut buf);
        assert_eq!(buf, b"G21\n");
    }

    #[test]
    fn ack_timeout_fires_once_per_line() {
        let cfg = GrblConfig { ack_timeout: Duration::from_secs(2), ..GrblConfig::default() };
        let mut s = GrblStreamer::new(cfg);
        s.queue_line("G4 P0.5", 1).expect("valid");
        s.queue_line("G4 P0.5", 2).expect("valid");
        let mut buf = Vec::new();
        s.poll_transmit(Duration::from_secs(1), &mut buf);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(Duration::from_secs(3)));
        s.handle_timeout(Duration::from_millis(2999));
        assert_eq!(s.poll_event(), None);
        s.handle_timeout(Duration::from_secs(3));
        assert_eq!(drain(&mut s), vec![GrblEvent::AckTimeout { tag: 1 }]);
        assert_eq!(s.poll_timeout(), None);
        s.handle_timeout(Duration::from_secs(10));
        assert_eq!(s.poll_event(), None);
        // The answer restarts the clock for the next line.
        s.handle_received(b"ok\n", Duration::from_secs(11));
        assert_eq!(s.poll_timeout(), Some(Duration::from_secs(13)));
        s.handle_received(b"ok\n", Duration::from_secs(12));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn overlong_garbage_without_newline_is_bounded() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        s.handle_received(&[b'x'; 2000], T0);
        let events = drain(&mut s);
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| matches!(e, GrblEvent::Unparsed(_))));
    }

    #[test]
    fn textual_alarm_holds_the_queue_and_grblhal_banner_is_a_reset() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        s.queue_line("G1 X1 F100", 1).expect("valid");
        s.queue_line("G1 X2 F100", 2).expect("valid");
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        drain(&mut s);
        s.handle_received(b"ALARM:Hard limit\r\n", T0);
        assert_eq!(drain(&mut s), vec![GrblEvent::Alarm { code: None, text: Some("Hard limit".into()) }]);
        assert!(s.is_paused());
        s.handle_received(b"GrblHAL 1.1f ['$' or '$HELP' for help]\r\n", T0);
        assert_eq!(
            drain(&mut s),
            vec![
                GrblEvent::Reset { lost_tags: vec![1, 2] },
                GrblEvent::Welcome { firmware: "GrblHAL".into(), version: "1.1f".into() }
            ]
        );
    }

    #[test]
    fn partial_lines_and_garbage_never_panic() {
        let mut s = GrblStreamer::new(GrblConfig::default());
        s.queue_line("G4 P0", 1).expect("valid");
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        drain(&mut s);
        // A status report cut anywhere, with the answer after it, in 1-byte chunks.
        for b in b"<Run|MPos:1.0,2.0,3.0|Ov:100,100,100>\r\nok\r\n" {
            s.handle_received(&[*b], T0);
        }
        let ev = drain(&mut s);
        assert!(matches!(ev[0], GrblEvent::Status(_)), "{ev:?}");
        assert_eq!(ev[1], GrblEvent::Accepted { tag: 1 });
        for junk in [
            &b"<"[..],
            b">",
            b"<|>",
            b"<Idle|>",
            b"<Idle|:|::|Ov:|Pn:|A:>",
            b"<Idle,>",
            b"<Idle,,,>",
            b"<\xff\xfe|MPos:\xff>",
            b"[:]",
            b"[MSG:",
            b"\r\r\r",
            b"ALARM:\xff",
            b"error:99999999999",
            b">:error:",
            b"$\xff=\xff",
            b"Grbl \xff [",
        ] {
            s.handle_received(junk, T0);
            s.handle_received(b"\n", T0);
        }
        let ev = drain(&mut s);
        assert!(!ev.iter().any(|e| matches!(e, GrblEvent::Accepted { .. } | GrblEvent::Reset { .. })), "{ev:?}");
    }
}

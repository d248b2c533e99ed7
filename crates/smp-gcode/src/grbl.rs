//! grbl 1.1 character-counting host protocol, sans-I/O (in the manner of quinn-proto).
//!
//! grbl has a serial receive buffer of `rx_buffer_bytes` (128). The host keeps track of the
//! bytes of every line it has sent but not yet seen answered (`ok` or `error:N`, one answer
//! per line, in order) and only sends the next line when it fits: that keeps the buffer full
//! (so short moves never starve the planner) and never overflows it (an overflow silently
//! drops bytes, i.e. corrupts G-code). Realtime commands (`?`, `!`, `~`, Ctrl-X) are taken off
//! the wire by grbl's interrupt handler, never enter the buffer, and so jump the queue here too.
//!
//! Inputs: [`GrblStreamer::queue_line`], [`GrblStreamer::realtime`],
//! [`GrblStreamer::handle_received`] (any chunking of the byte stream), and
//! [`GrblStreamer::handle_timeout`]. Outputs: [`GrblStreamer::poll_transmit`] (bytes to write),
//! [`GrblStreamer::poll_event`] (in order) and [`GrblStreamer::poll_timeout`] (next deadline).
//! The caller owns the port and the clock; `now` is a [`Duration`] since any fixed origin.
//!
//! Safety defaults: after an `ALARM`, a controller reset, or (with `pause_on_error`) an
//! `error:N`, no further queued line is sent until the caller calls [`GrblStreamer::resume`]
//! (or drops the rest with [`GrblStreamer::clear_queue`]): a medical program is never
//! continued past a fault without a decision.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

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

/// grbl realtime commands; they bypass the line buffer and the character count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Realtime {
    /// `?`: ask for a status report.
    StatusQuery,
    /// `!`: decelerate to a stop and hold.
    FeedHold,
    /// `~`: resume from a hold.
    CycleStart,
    /// Ctrl-X (0x18): abort motion, flush buffers, reset; grbl answers with its banner.
    SoftReset,
}

impl Realtime {
    pub fn byte(self) -> u8 {
        match self {
            Realtime::StatusQuery => b'?',
            Realtime::FeedHold => b'!',
            Realtime::CycleStart => b'~',
            Realtime::SoftReset => 0x18,
        }
    }
}

/// Machine state field of a status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineState {
    Idle,
    Run,
    /// `Hold:0` complete, `Hold:1` in progress.
    Hold(u8),
    Jog,
    Alarm,
    Door(u8),
    Check,
    Home,
    Sleep,
    /// A state this build does not know, verbatim.
    Other(String),
}

impl MachineState {
    fn parse(s: &str) -> MachineState {
        let (name, sub) = match s.split_once(':') {
            Some((n, sub)) => (n, sub.parse::<u8>().ok()),
            None => (s, None),
        };
        match name {
            "Idle" => MachineState::Idle,
            "Run" => MachineState::Run,
            "Hold" => MachineState::Hold(sub.unwrap_or(0)),
            "Jog" => MachineState::Jog,
            "Alarm" => MachineState::Alarm,
            "Door" => MachineState::Door(sub.unwrap_or(0)),
            "Check" => MachineState::Check,
            "Home" => MachineState::Home,
            "Sleep" => MachineState::Sleep,
            _ => MachineState::Other(s.to_string()),
        }
    }
}

/// A parsed `<...>` status report. Fields grbl did not include are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub state: MachineState,
    /// Machine position, mm (`MPos:`).
    pub mpos: Option<[f64; 3]>,
    /// Work position, mm (`WPos:`), when grbl is set to report it instead.
    pub wpos: Option<[f64; 3]>,
    /// Current feed, mm/min (`FS:` or `F:`).
    pub feed: Option<f64>,
    /// Current spindle speed (`FS:`).
    pub spindle: Option<f64>,
    /// Planner blocks and rx bytes available (`Bf:`).
    pub buffer: Option<(u32, u32)>,
}

/// What happened, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum GrblEvent {
    /// The line with this tag was put into the transmit buffer by the last `poll_transmit`
    /// (journal it before writing the bytes).
    Sent {
        tag: u64,
    },
    /// grbl answered `ok` for this line (it is in the planner, or done for `G4`/`$` lines).
    Accepted {
        tag: u64,
    },
    /// grbl answered `error:N` for this line; it will not be executed.
    Rejected {
        tag: u64,
        code: u16,
    },
    /// `ALARM:N`. Queued lines are held back until [`GrblStreamer::resume`].
    Alarm {
        code: u16,
    },
    Status(StatusReport),
    /// `[MSG:...]` feedback, text inside.
    Message(String),
    /// grbl's banner `Grbl 1.1h ['$' for help]`.
    Welcome {
        version: String,
    },
    /// The controller reset while lines were in flight (or after a host soft reset): those
    /// lines' fate is unknown. In-flight bookkeeping is cleared and queued lines are held.
    Reset {
        lost_tags: Vec<u64>,
    },
    /// The oldest in-flight line got no answer within `ack_timeout` (reported once per line).
    AckTimeout {
        tag: u64,
    },
    /// An `ok` arrived with nothing in flight: the count is off, or someone else is talking.
    UnexpectedOk,
    /// An `error:N` arrived with nothing in flight.
    UnexpectedError {
        code: u16,
    },
    /// A received line this build cannot interpret, verbatim (lossy UTF-8).
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
        if line == "ok" {
            match self.pop_in_flight(now) {
                Some(tag) => self.events.push_back(GrblEvent::Accepted { tag }),
                None => self.events.push_back(GrblEvent::UnexpectedOk),
            }
        } else if let Some(code) = line.strip_prefix("error:") {
            let code = code.trim().parse::<u16>().unwrap_or(0);
            match self.pop_in_flight(now) {
                Some(tag) => {
                    if self.cfg.pause_on_error {
                        self.paused = true;
                    }
                    self.events.push_back(GrblEvent::Rejected { tag, code });
                }
                None => self.events.push_back(GrblEvent::UnexpectedError { code }),
            }
        } else if let Some(code) = line.strip_prefix("ALARM:") {
            match code.trim().parse::<u16>() {
                Ok(code) => {
                    self.paused = true;
                    self.events.push_back(GrblEvent::Alarm { code });
                }
                Err(_) => self.events.push_back(GrblEvent::Unparsed(line.to_string())),
            }
        } else if line.starts_with('<') && line.ends_with('>') {
            match parse_status(&line[1..line.len() - 1]) {
                Some(s) => self.events.push_back(GrblEvent::Status(s)),
                None => self.events.push_back(GrblEvent::Unparsed(line.to_string())),
            }
        } else if let Some(msg) = line.strip_prefix("[MSG:").and_then(|m| m.strip_suffix(']')) {
            self.events.push_back(GrblEvent::Message(msg.to_string()));
        } else if let Some(version) = parse_banner(line) {
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
            self.events.push_back(GrblEvent::Welcome { version });
        } else {
            self.events.push_back(GrblEvent::Unparsed(line.to_string()));
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

fn realtime_name(b: u8) -> &'static str {
    match b {
        b'?' => "?",
        b'!' => "!",
        b'~' => "~",
        0x18 => "^X",
        _ => "<realtime>",
    }
}

/// `Grbl 1.1h ['$' for help]` -> `1.1h`.
fn parse_banner(line: &str) -> Option<String> {
    let rest = line.strip_prefix("Grbl ")?;
    let version = rest.split_whitespace().next()?;
    Some(version.to_string())
}

fn parse_triple(s: &str) -> Option<[f64; 3]> {
    let mut it = s.split(',').map(|v| v.trim().parse::<f64>());
    let out = [it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?];
    // Extra axes (A, B...) are ignored: the xyz profile reads three.
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// Parses the inside of `<...>`: `Idle|MPos:1.000,2.000,3.000|FS:0,0|...`.
fn parse_status(inner: &str) -> Option<StatusReport> {
    let mut fields = inner.split('|');
    let state = fields.next()?;
    if state.is_empty() {
        return None;
    }
    let mut report = StatusReport {
        state: MachineState::parse(state),
        mpos: None,
        wpos: None,
        feed: None,
        spindle: None,
        buffer: None,
    };
    for f in fields {
        let Some((key, value)) = f.split_once(':') else { continue };
        match key {
            "MPos" => report.mpos = Some(parse_triple(value)?),
            "WPos" => report.wpos = Some(parse_triple(value)?),
            "FS" => {
                let (feed, spindle) = value.split_once(',')?;
                report.feed = Some(feed.trim().parse().ok()?);
                report.spindle = Some(spindle.trim().parse().ok()?);
            }
            "F" => report.feed = Some(value.trim().parse().ok()?),
            "Bf" => {
                let (blocks, bytes) = value.split_once(',')?;
                report.buffer = Some((blocks.trim().parse().ok()?, bytes.trim().parse().ok()?));
            }
            _ => {} // Ln, WCO, Ov, Pn, A: not needed by the host yet
        }
    }
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Duration = Duration::ZERO;

    fn drain(s: &mut GrblStreamer) -> Vec<GrblEvent> {
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
                GrblEvent::Alarm { code: 2 },
                GrblEvent::Status(StatusReport {
                    state: MachineState::Hold(1),
                    mpos: Some([1.0, -2.5, 3.0]),
                    wpos: None,
                    feed: Some(250.0),
                    spindle: Some(12000.0),
                    buffer: Some((15, 128)),
                }),
                GrblEvent::Unparsed("<>".into()),
                GrblEvent::Unparsed("what\u{fffd}\u{fffd}".into()),
                GrblEvent::Unparsed("ALARM:x".into()),
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
                GrblEvent::Welcome { version: "1.1h".into() },
            ]
        );
        assert_eq!(s.in_flight_bytes(), 0);
        assert_eq!(s.poll_timeout(), None);
        // A banner with nothing in flight is only a welcome.
        s.handle_received(b"Grbl 1.1h ['$' for help]\n", T0);
        assert_eq!(drain(&mut s), vec![GrblEvent::Welcome { version: "1.1h".into() }]);
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
            vec![GrblEvent::Reset { lost_tags: vec![] }, GrblEvent::Welcome { version: "1.1h".into() }]
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

    /// A line set to stream, and a way to chunk the controller's replies.
    fn lines_strategy() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[GXYZF0-9. ]{1,78}", 1..60)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Random line sets, a controller that answers lines at random moments, and replies
        /// delivered in random chunks: the controller's buffer never overflows, the host's
        /// count never exceeds 128 and every tag is answered once, in order.
        #[test]
        fn never_overfills_and_acks_in_order(
            lines in lines_strategy(),
            steps in prop::collection::vec((0usize..4, 1usize..12), 1..400),
            errors in prop::collection::vec(any::<bool>(), 1..60),
        ) {
            let mut s = GrblStreamer::new(GrblConfig { pause_on_error: false, ..GrblConfig::default() });
            for (tag, l) in lines.iter().enumerate() {
                s.queue_line(l, tag as u64).expect("generated lines are valid");
            }
            let mut ctrl_rx: VecDeque<usize> = VecDeque::new();
            let mut ctrl_bytes = 0usize;
            let mut ctrl_answered = 0usize;
            let mut reply: Vec<u8> = Vec::new();
            let mut answered = Vec::new();
            let mut step = steps.iter().cycle();
            let mut buf = Vec::new();
            let mut rounds = 0;
            while s.pending() > 0 {
                rounds += 1;
                prop_assert!(rounds < 100_000, "stalled with {} pending", s.pending());
                buf.clear();
                s.poll_transmit(T0, &mut buf);
                prop_assert!(s.in_flight_bytes() <= 128);
                for l in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    ctrl_rx.push_back(l.len() + 1);
                    ctrl_bytes += l.len() + 1;
                }
                prop_assert!(ctrl_bytes <= 128, "controller rx buffer overflow: {ctrl_bytes}");
                prop_assert!(s.in_flight_bytes() >= ctrl_bytes);
                let (process, chunk_len) = *step.next().unwrap_or(&(1, 1));
                // The controller answers up to `process` lines (at least one when idle).
                let n = if reply.is_empty() { process.max(1) } else { process };
                for _ in 0..n {
                    let Some(len) = ctrl_rx.pop_front() else { break };
                    ctrl_bytes -= len;
                    let err = errors[ctrl_answered % errors.len()];
                    reply.extend_from_slice(if err { b"error:2\r\n" } else { b"ok\r\n" });
                    ctrl_answered += 1;
                }
                let chunk: Vec<u8> = reply.drain(..chunk_len.min(reply.len())).collect();
                s.handle_received(&chunk, T0);
                while let Some(e) = s.poll_event() {
                    match e {
                        GrblEvent::Accepted { tag } | GrblEvent::Rejected { tag, .. } => answered.push(tag),
                        GrblEvent::Sent { .. } => {}
                        other => prop_assert!(false, "unexpected event {other:?}"),
                    }
                }
            }
            prop_assert_eq!(answered, (0..lines.len() as u64).collect::<Vec<_>>());
        }
    }

    /// A scripted grbl stand-in for the golden test (not smp-sim: the host protocol must not
    /// be tested only against the controller it was written next to). It answers `ok` to each
    /// line once it has "run" it (a `G4` takes its P seconds and synchronises), `error:20` to
    /// `M7`, answers `?` with a status report, and asserts its 128-byte buffer never overflows.
    struct ScriptedGrbl {
        rx: VecDeque<u8>,
        dwell_ok_at: Option<Duration>,
        out: Vec<u8>,
        pos: [f64; 3],
    }

    impl ScriptedGrbl {
        fn new() -> Self {
            ScriptedGrbl {
                rx: VecDeque::new(),
                dwell_ok_at: None,
                out: b"\r\nGrbl 1.1h ['$' for help]\r\n".to_vec(),
                pos: [0.0; 3],
            }
        }

        fn receive(&mut self, bytes: &[u8]) {
            for &b in bytes {
                if b == b'?' {
                    let p = self.pos;
                    self.out.extend_from_slice(
                        format!("<Idle|MPos:{:.3},{:.3},{:.3}|FS:0,0>\r\n", p[0], p[1], p[2]).as_bytes(),
                    );
                } else {
                    self.rx.push_back(b);
                    assert!(self.rx.len() <= 128, "controller rx buffer overflow");
                }
            }
        }

        fn tick(&mut self, now: Duration) {
            if let Some(at) = self.dwell_ok_at {
                if now < at {
                    return;
                }
                self.out.extend_from_slice(b"ok\r\n");
                self.dwell_ok_at = None;
            }
            while let Some(end) = self.rx.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.rx.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                if line.starts_with("M7") {
                    self.out.extend_from_slice(b"error:20\r\n");
                    continue;
                }
                let mut dwell_s = None;
                for w in line.split(' ') {
                    if let Some(p) = w.strip_prefix('P') {
                        dwell_s = p.parse::<f64>().ok();
                    }
                    for (i, axis) in ['X', 'Y', 'Z'].into_iter().enumerate() {
                        if let Some(v) = w.strip_prefix(axis) {
                            self.pos[i] = v.parse().unwrap_or(self.pos[i]);
                        }
                    }
                }
                if let Some(p) = dwell_s {
                    // grbl answers a G4 only when the dwell is over; nothing else runs meanwhile.
                    self.dwell_ok_at = Some(now + Duration::from_secs_f64(p));
                    return;
                }
                self.out.extend_from_slice(b"ok\r\n");
            }
        }
    }

    #[test]
    fn golden_transcript_against_a_scripted_controller() {
        let c = crate::fixtures::synthetic_case(2);
        let program = crate::compile::compile(&c.plan, &c.rig, &c.base_from_head).expect("compiles");
        let cfg = GrblConfig {
            wait_for_welcome: true,
            record_transcript: true,
            pause_on_error: false,
            ..GrblConfig::default()
        };
        let mut host = GrblStreamer::new(cfg);
        for (i, l) in program.lines.iter().enumerate() {
            host.queue_line(&l.text, i as u64).expect("compiled lines are valid");
            if i == 5 {
                host.queue_line("M7", 999).expect("valid line, rejected by grbl");
            }
        }
        let mut ctrl = ScriptedGrbl::new();
        let mut now = Duration::ZERO;
        let mut buf = Vec::new();
        let mut events = Vec::new();
        for step in 0..10_000 {
            if step == 3 {
                host.realtime(Realtime::StatusQuery);
            }
            buf.clear();
            host.poll_transmit(now, &mut buf);
            ctrl.receive(&buf);
            ctrl.tick(now);
            // Replies arrive in 7-byte chunks.
            let take = ctrl.out.len().min(7);
            let chunk: Vec<u8> = ctrl.out.drain(..take).collect();
            host.handle_received(&chunk, now);
            events.extend(std::iter::from_fn(|| host.poll_event()));
            if host.pending() == 0 && ctrl.out.is_empty() && host.welcomed() {
                break;
            }
            now += Duration::from_millis(10);
        }
        assert_eq!(host.pending(), 0, "stream did not finish");
        let accepted: Vec<u64> =
            events.iter().filter_map(|e| if let GrblEvent::Accepted { tag } = e { Some(*tag) } else { None }).collect();
        assert_eq!(accepted, (0..program.lines.len() as u64).collect::<Vec<_>>());
        assert!(events.contains(&GrblEvent::Rejected { tag: 999, code: 20 }));
        let transcript = host.transcript().join("\n");
        if std::env::var_os("SMP_PRINT_GOLDEN").is_some() {
            println!("{transcript}");
        }
        assert_eq!(
            transcript,
            GOLDEN.trim(),
            "transcript changed; if intended, rerun with SMP_PRINT_GOLDEN=1 --nocapture"
        );
    }

    const GOLDEN: &str = r#"
> ?
< Grbl 1.1h ['$' for help]
> (smp session 1, 2 dots, generated by smp)
> (limits: depth 1.200 mm, feed 3000.000 mm/min)
< <Idle|MPos:0.000,0.000,0.000|FS:0,0>
< ok
> (rig sim-xyz-default, profile xyz, units mm)
> G21 G90 G94
> G1 Z275.852 F3000.000
< ok
> M3 S9000.000
> M7
< ok
< ok
> G1 X301.080 Y-34.016 Z275.852 F3000.000
> G1 Z227.852 F3000.000
> G1 Z224.852 F600.000
< ok
< ok
> G4 P0.050
> G1 Z227.852 F1200.000
< error:20
< ok
> G1 X307.590 Y-30.982 Z228.013 F3000.000
< ok
< ok
> G1 Z225.526 F3000.000
> G1 Z222.526 F600.000
> G4 P0.050
< ok
< ok
< ok
> G1 Z225.526 F1200.000
> M5
> G1 Z275.852 F3000.000
< ok
< ok
< ok
< ok
< ok
< ok
"#;
}

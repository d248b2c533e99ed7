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
//! Safety defaults: after an `ALARM` (numbered or with text), a controller reset, or (with
//! `pause_on_error`) an `error:N`, no further queued line is sent until the caller calls
//! [`GrblStreamer::resume`] (or drops the rest with [`GrblStreamer::clear_queue`]): a medical
//! program is never continued past a fault without a decision.
//!
//! Every received line goes through [`parse_response`], the one place that knows grbl's
//! response forms (grbl 1.1, grbl 0.9, grblHAL): answers, alarms, status reports with every
//! field typed (positions of 3 to 6 axes, overrides, work offset, line number, pins,
//! accessories), `[...]` feedback and settings, banners. It is total: a line it does not know
//! becomes [`GrblEvent::Unparsed`] (logged, never fatal), and a status report is read field
//! by field, so one malformed field is listed in [`StatusReport::bad_fields`] and the others
//! are kept. A malformed line never answers a line: only an exact `ok` or `error:` does.

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
    /// 0x9E, grbl 1.1's spindle stop override: taken only in Hold. Once the hold is complete
    /// (`Hold:0`) grbl stops the spindle (for SMP: the cartridge, so that a needle held in the
    /// skin does not keep tattooing); the next cycle start restores it at its speed
    /// (`[MSG:Restoring spindle]`) before resuming. A second 0x9E while stopped restores it
    /// without resuming. Ignored in any other state.
    SpindleStop,
}

impl Realtime {
    pub fn byte(self) -> u8 {
        match self {
            Realtime::StatusQuery => b'?',
            Realtime::FeedHold => b'!',
            Realtime::CycleStart => b'~',
            Realtime::SoftReset => 0x18,
            Realtime::SpindleStop => SPINDLE_STOP_BYTE,
        }
    }
}

/// The byte of [`Realtime::SpindleStop`] (grbl's `CMD_SPINDLE_OVR_STOP`).
pub const SPINDLE_STOP_BYTE: u8 = 0x9E;

/// Machine state field of a status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineState {
    Idle,
    Run,
    /// `Hold:0` complete, `Hold:1` in progress.
    Hold(u8),
    Jog,
    /// `Alarm` (grblHAL may add the code, `Alarm:11`: still an alarm).
    Alarm,
    Door(u8),
    Check,
    Home,
    Sleep,
    /// A state this build does not know (grblHAL `Tool`, grbl 0.9 `Queue`), or a known state
    /// with an unreadable sub-state (`Hold:x`: never taken for `Hold:0`), verbatim.
    Other(String),
}

impl MachineState {
    fn parse(s: &str) -> MachineState {
        let (name, sub) = match s.split_once(':') {
            Some((n, sub)) => (n, Some(sub.trim().parse::<u8>().ok())),
            None => (s, None),
        };
        match (name, sub) {
            // A sub-state that does not read is not guessed: `Hold:?` is not "hold complete".
            ("Hold" | "Door", Some(None)) => MachineState::Other(s.to_string()),
            ("Idle", _) => MachineState::Idle,
            ("Run", _) => MachineState::Run,
            ("Hold", sub) => MachineState::Hold(sub.flatten().unwrap_or(0)),
            ("Jog", _) => MachineState::Jog,
            ("Alarm", _) => MachineState::Alarm,
            ("Door", sub) => MachineState::Door(sub.flatten().unwrap_or(0)),
            ("Check", _) => MachineState::Check,
            ("Home", _) => MachineState::Home,
            ("Sleep", _) => MachineState::Sleep,
            _ => MachineState::Other(s.to_string()),
        }
    }
}

/// Most axes a position field may carry (X Y Z A B C).
pub const MAX_AXES: usize = 6;

/// The values of a position field (`MPos`, `WPos`, `WCO`, `[G54:...]`, `[PRB:...]`): 3 to 6
/// axes in the controller's order (X Y Z, then A B C on 5- and 6-axis rigs), mm for linear
/// axes and degrees for rotary ones. Never fewer than 3 nor a non-finite value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisValues {
    values: [f64; MAX_AXES],
    len: usize,
}

impl AxisValues {
    /// `None` unless 3 to 6 finite values.
    pub fn from_slice(values: &[f64]) -> Option<AxisValues> {
        if !(3..=MAX_AXES).contains(&values.len()) || !values.iter().all(|v| v.is_finite()) {
            return None;
        }
        let mut out = [0.0; MAX_AXES];
        out[..values.len()].copy_from_slice(values);
        Some(AxisValues { values: out, len: values.len() })
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.values[..self.len]
    }

    /// X, Y and Z (always present).
    pub fn xyz(&self) -> [f64; 3] {
        [self.values[0], self.values[1], self.values[2]]
    }

    /// Number of axes reported (3 to 6).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (at least 3 axes); present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn parse(s: &str) -> Result<AxisValues, String> {
        let values: Result<Vec<f64>, _> = s.split(',').map(|v| v.trim().parse::<f64>()).collect();
        match values {
            Ok(v) => AxisValues::from_slice(&v)
                .ok_or_else(|| format!("expected 3 to {MAX_AXES} finite axis values, got {}", v.len())),
            Err(_) => Err("an axis value is not a number".to_string()),
        }
    }
}

/// Override values of a status report (`Ov:feed,rapid,spindle`), percent of programmed.
/// Feed and rapid overrides scale the feeds the verifier proved; 100 is "as programmed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrides {
    pub feed_pct: u16,
    pub rapid_pct: u16,
    pub spindle_pct: u16,
}

impl Overrides {
    /// Feeds and rapids run as programmed (the spindle override does not change motion).
    pub fn motion_as_programmed(&self) -> bool {
        self.feed_pct == 100 && self.rapid_pct == 100
    }
}

/// Input pins reported active (`Pn:XYZPDHRS`; grblHAL adds `ABC` limits and `E` e-stop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinState {
    /// Limit switches X, Y, Z, A, B, C.
    pub limits: [bool; MAX_AXES],
    pub probe: bool,
    pub door: bool,
    pub hold: bool,
    pub soft_reset: bool,
    pub cycle_start: bool,
    pub e_stop: bool,
    /// Letters this build does not know, verbatim.
    pub other: String,
}

impl PinState {
    fn parse(s: &str) -> PinState {
        let mut p = PinState::default();
        for c in s.trim().chars() {
            match c {
                'X' => p.limits[0] = true,
                'Y' => p.limits[1] = true,
                'Z' => p.limits[2] = true,
                'A' => p.limits[3] = true,
                'B' => p.limits[4] = true,
                'C' => p.limits[5] = true,
                'P' => p.probe = true,
                'D' => p.door = true,
                'H' => p.hold = true,
                'R' => p.soft_reset = true,
                'S' => p.cycle_start = true,
                'E' => p.e_stop = true,
                other => p.other.push(other),
            }
        }
        p
    }
}

/// Accessory state (`A:SCFM`): spindle clockwise / counter-clockwise (for SMP, the cartridge
/// motor), flood and mist coolant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessoryState {
    pub spindle_cw: bool,
    pub spindle_ccw: bool,
    pub flood: bool,
    pub mist: bool,
    /// Letters this build does not know (grblHAL `T` tool change...), verbatim.
    pub other: String,
}

impl AccessoryState {
    fn parse(s: &str) -> AccessoryState {
        let mut a = AccessoryState::default();
        for c in s.trim().chars() {
            match c {
                'S' => a.spindle_cw = true,
                'C' => a.spindle_ccw = true,
                'F' => a.flood = true,
                'M' => a.mist = true,
                other => a.other.push(other),
            }
        }
        a
    }
}

/// A parsed status report, grbl 1.1 `<Idle|MPos:..|FS:..>` or grbl 0.9 `<Idle,MPos:..,WPos:..>`.
/// Fields grbl did not include are `None`. Parsed field by field: one malformed field is
/// `None` and listed in `bad_fields`, the others are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub state: MachineState,
    /// Machine position (`MPos:`), 3 to 6 axes.
    pub mpos: Option<AxisValues>,
    /// Work position (`WPos:`), when grbl is set to report it instead.
    pub wpos: Option<AxisValues>,
    /// Work coordinate offset (`WCO:`): work position = machine position - WCO. grbl sends it
    /// only every 10 to 30 reports.
    pub wco: Option<AxisValues>,
    /// Current feed (`FS:` or `F:`), mm/min.
    pub feed_mm_per_min: Option<f64>,
    /// Current spindle speed (`FS:`), rpm.
    pub spindle_rpm: Option<f64>,
    /// Planner blocks and rx bytes available (`Bf:`).
    pub buffer: Option<(u32, u32)>,
    /// Line number being executed (`Ln:`, when the program numbers its lines).
    pub line_number: Option<u32>,
    /// Override values (`Ov:`). grbl sends them only every 10 to 20 reports, and on the
    /// report after any change.
    pub overrides: Option<Overrides>,
    /// Input pins active (`Pn:`); absent when none is.
    pub pins: Option<PinState>,
    /// Accessory state (`A:`); absent when all are off.
    pub accessories: Option<AccessoryState>,
    /// Fields this build does not interpret (grblHAL `SD:`, `H:`, `T:`...; grbl 0.9 `Buf:`,
    /// `RX:`, `Lim:`), verbatim.
    pub other_fields: Vec<String>,
    /// Known fields that did not parse: the field verbatim and why. Their value above is `None`.
    pub bad_fields: Vec<String>,
}

impl StatusReport {
    /// A report of `state` with no field.
    pub fn new(state: MachineState) -> StatusReport {
        StatusReport {
            state,
            mpos: None,
            wpos: None,
            wco: None,
            feed_mm_per_min: None,
            spindle_rpm: None,
            buffer: None,
            line_number: None,
            overrides: None,
            pins: None,
            accessories: None,
            other_fields: Vec::new(),
            bad_fields: Vec::new(),
        }
    }

    /// Whether an `Ov` field was present but unreadable: the overrides are then unknown.
    pub fn overrides_unreadable(&self) -> bool {
        self.bad_fields.iter().any(|f| f.starts_with("Ov:"))
    }
}

/// Typed `[...]` and `$` feedback (answers to `$G`, `$#`, `$I`, `$$`, `$N`, probing, echo).
#[derive(Debug, Clone, PartialEq)]
pub enum Feedback {
    /// `[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]` (grbl 0.9: without the `GC:` tag).
    ParserState(String),
    /// `[PRB:0.000,0.000,1.492:1]`: probe position, and whether the probe touched.
    Probe { position: AxisValues, success: bool },
    /// `[echo:...]`: the line as grbl's parser received it.
    Echo(String),
    /// `[VER:1.1h.20190825:name]`.
    Version { version: String, build_info: String },
    /// `[OPT:V,15,128]`: option codes, then the numbers (planner blocks, rx buffer bytes...).
    Options { codes: String, values: Vec<u32> },
    /// `[HLP:$$ $# $G ...]`.
    Help(String),
    /// `[TLO:0.000]` tool length offset(s), mm.
    ToolLengthOffset(Vec<f64>),
    /// `[G54:...]`..`[G59:...]`, `[G28:...]`, `[G30:...]`, `[G92:...]` (grblHAL `[G59.3:...]`).
    CoordinateOffset { system: String, offset: AxisValues },
    /// `$110=3000.000`, `$N0=G21`: a setting or startup block as listed by `$$` / `$N`.
    Setting { key: String, value: String },
    /// `>G21:ok` / `>G21:error:20`: a startup block grbl ran at boot, and its outcome.
    StartupBlock { block: String, error_code: Option<u16> },
    /// grblHAL `$I` extras (`[FIRMWARE:grblHAL]`, `[NEWOPT:...]`, `[AXS:...]`, `[DRIVER:...]`...).
    Info { tag: String, text: String },
}

/// One received line, parsed (see [`parse_response`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Ok,
    /// `error:N`; code 0 for a grbl 0.9 textual error (`error: Bad number format`).
    Error {
        code: u16,
    },
    /// `ALARM:N`, or with text (`ALARM:Hard limit`, grbl 0.9 `ALARM: Probe fail`).
    Alarm {
        code: Option<u16>,
        text: Option<String>,
    },
    /// Boxed: a report is large next to the other variants.
    Status(Box<StatusReport>),
    /// `[MSG:...]`, or a grbl 0.9 bracketed message (`[Caution: Unlocked]`), text inside.
    Message(String),
    Feedback(Feedback),
    /// `Grbl 1.1h ['$' for help]`, `GrblHAL 1.1f ['$' or '$HELP' for help]`.
    Banner {
        firmware: String,
        version: String,
    },
    /// Nothing this build interprets (debug output, line noise, an empty `<>`).
    Unknown,
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

fn realtime_name(b: u8) -> &'static str {
    match b {
        b'?' => "?",
        b'!' => "!",
        b'~' => "~",
        0x18 => "^X",
        SPINDLE_STOP_BYTE => "SpindleStop",
        _ => "<realtime>",
    }
}

/// Parses one received line (without its line ending) into what it means. Total: every input
/// gives an answer, never a panic; what this build does not know is [`Response::Unknown`].
///
/// Forms: `ok`; `error:N` (grbl 0.9: `error: text`); `ALARM:N` or with text; status reports
/// in grbl 1.1 (`<Idle|MPos:..|..>`) and 0.9 (`<Idle,MPos:..,WPos:..>`) form; `[MSG:..]`
/// and grbl 0.9's bare `[...]` messages; `[GC:..]`, `[PRB:..]`, `[echo:..]`, `[VER:..]`,
/// `[OPT:..]`, `[HLP:..]`, `[TLO:..]`, `[G54:..]`.. feedback and grblHAL's `$I` extras;
/// `$N=value` settings; `>block:ok` startup echoes; grbl's and grblHAL's banners.
pub fn parse_response(line: &str) -> Response {
    let line = line.trim();
    if line == "ok" {
        return Response::Ok;
    }
    if let Some(code) = line.strip_prefix("error:") {
        // grbl 0.9 answers with text; it is still a rejection of the line (code 0).
        return Response::Error { code: code.trim().parse::<u16>().unwrap_or(0) };
    }
    if line.len() >= 5 && line.as_bytes()[..5].eq_ignore_ascii_case(b"ALARM") {
        let rest = line[5..].trim_start_matches(':').trim();
        return match rest.parse::<u16>() {
            Ok(code) => Response::Alarm { code: Some(code), text: None },
            Err(_) => Response::Alarm { code: None, text: (!rest.is_empty()).then(|| rest.to_string()) },
        };
    }
    if let Some(inner) = line.strip_prefix('<').and_then(|l| l.strip_suffix('>')) {
        return parse_status(inner).map_or(Response::Unknown, |s| Response::Status(Box::new(s)));
    }
    if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        return parse_bracketed(inner);
    }
    if let Some(setting) = line.strip_prefix('$') {
        if let Some((key, value)) = setting.split_once('=') {
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Response::Feedback(Feedback::Setting { key: key.to_string(), value: value.to_string() });
            }
        }
        return Response::Unknown;
    }
    if let Some(echo) = line.strip_prefix('>') {
        if let Some(block) = echo.strip_suffix(":ok") {
            return Response::Feedback(Feedback::StartupBlock { block: block.to_string(), error_code: None });
        }
        if let Some((block, code)) = echo.rsplit_once(":error:") {
            let error_code = Some(code.trim().parse::<u16>().unwrap_or(0));
            return Response::Feedback(Feedback::StartupBlock { block: block.to_string(), error_code });
        }
        return Response::Unknown;
    }
    if let Some((firmware, version)) = parse_banner(line) {
        return Response::Banner { firmware, version };
    }
    Response::Unknown
}

/// `Grbl 1.1h ['$' for help]` -> (`Grbl`, `1.1h`); `GrblHAL 1.1f ['$' or '$HELP' for help]` ->
/// (`GrblHAL`, `1.1f`). The version must start with a digit and the help hint must follow,
/// so that chatter starting with "Grbl" is not taken for a restart.
fn parse_banner(line: &str) -> Option<(String, String)> {
    let mut words = line.split_whitespace();
    let firmware = words.next()?;
    if !(firmware.eq_ignore_ascii_case("grbl") || firmware.eq_ignore_ascii_case("grblhal")) {
        return None;
    }
    let version = words.next()?;
    if !version.starts_with(|c: char| c.is_ascii_digit()) || !line.contains('[') {
        return None;
    }
    Some((firmware.to_string(), version.to_string()))
}

/// grbl 0.9's feedback messages, bracketed without a tag.
const GRBL09_MESSAGES: [&str; 9] = [
    "Reset to continue",
    "'$H'|'$X' to unlock",
    "Caution: Unlocked",
    "Enabled",
    "Disabled",
    "Check Door",
    "Pgm End",
    "Restoring defaults",
    "Restoring spindle",
];

/// grblHAL's `$I` and report tags (informational only).
const INFO_TAGS: [&str; 16] = [
    "NEWOPT",
    "FIRMWARE",
    "AXS",
    "SIGNALS",
    "PLUGIN",
    "DRIVER",
    "DRIVER VERSION",
    "DRIVER OPTIONS",
    "BOARD",
    "NVS STORAGE",
    "FREE MEMORY",
    "AUX IO",
    "COMPILER",
    "SETTING",
    "SPINDLE",
    "LASER",
];

fn is_coordinate_system(tag: &str) -> bool {
    matches!(tag, "G28" | "G30" | "G92")
        || tag
            .strip_prefix("G5")
            .is_some_and(|n| matches!(n, "4" | "5" | "6" | "7" | "8" | "9" | "9.1" | "9.2" | "9.3"))
}

/// The inside of `[...]`.
fn parse_bracketed(inner: &str) -> Response {
    let Some((tag, body)) = inner.split_once(':') else {
        return parse_bare_bracketed(inner);
    };
    let fb = match tag {
        "MSG" => return Response::Message(body.to_string()),
        "GC" => Feedback::ParserState(body.to_string()),
        "echo" => Feedback::Echo(body.to_string()),
        "HLP" => Feedback::Help(body.to_string()),
        "VER" => {
            let (version, build_info) = body.split_once(':').unwrap_or((body, ""));
            Feedback::Version { version: version.to_string(), build_info: build_info.to_string() }
        }
        "OPT" => {
            let mut parts = body.split(',');
            let codes = parts.next().unwrap_or("").to_string();
            let values: Result<Vec<u32>, _> = parts.map(|v| v.trim().parse::<u32>()).collect();
            match values {
                Ok(values) => Feedback::Options { codes, values },
                Err(_) => return Response::Unknown,
            }
        }
        "PRB" => {
            let Some((pos, ok)) = body.rsplit_once(':') else { return Response::Unknown };
            let (Ok(position), Some(success)) = (AxisValues::parse(pos), parse_flag(ok)) else {
                return Response::Unknown;
            };
            Feedback::Probe { position, success }
        }
        "TLO" => {
            let values: Result<Vec<f64>, _> = body.split(',').map(|v| v.trim().parse::<f64>()).collect();
            match values {
                Ok(v) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => Feedback::ToolLengthOffset(v),
                _ => return Response::Unknown,
            }
        }
        t if is_coordinate_system(t) => match AxisValues::parse(body) {
            Ok(offset) => Feedback::CoordinateOffset { system: t.to_string(), offset },
            Err(_) => return Response::Unknown,
        },
        t if INFO_TAGS.contains(&t) => Feedback::Info { tag: t.to_string(), text: body.to_string() },
        _ => return parse_bare_bracketed(inner),
    };
    Response::Feedback(fb)
}

/// grbl 0.9's untagged `[...]`: a known message, or the `$G` parser state.
fn parse_bare_bracketed(inner: &str) -> Response {
    if GRBL09_MESSAGES.contains(&inner) {
        return Response::Message(inner.to_string());
    }
    let first = inner.split_whitespace().next().unwrap_or("");
    let is_gcode_word = first.len() >= 2
        && first.starts_with('G')
        && first[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
        && inner.contains(' ');
    if is_gcode_word {
        return Response::Feedback(Feedback::ParserState(inner.to_string()));
    }
    Response::Unknown
}

fn parse_flag(s: &str) -> Option<bool> {
    match s.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// Parses the inside of `<...>`; `None` only when there is no state at all.
fn parse_status(inner: &str) -> Option<StatusReport> {
    if !inner.contains('|') && inner.contains(',') {
        return parse_status_09(inner);
    }
    let mut fields = inner.split('|');
    let state = fields.next()?.trim();
    if state.is_empty() {
        return None;
    }
    let mut report = StatusReport::new(MachineState::parse(state));
    for f in fields {
        apply_field(&mut report, f);
    }
    Some(report)
}

/// grbl 0.9: `Idle,MPos:0.000,0.000,0.000,WPos:0.000,0.000,0.000,Buf:0,RX:0`. A comma starts
/// a new field when what follows has a `Key:`; otherwise it continues the field's values.
fn parse_status_09(inner: &str) -> Option<StatusReport> {
    let mut tokens = inner.split(',');
    let state = tokens.next()?.trim();
    if state.is_empty() || state.contains(':') {
        return None;
    }
    let mut report = StatusReport::new(MachineState::parse(state));
    let mut field: Option<String> = None;
    for t in tokens {
        let starts_field =
            t.split_once(':').is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic()));
        if starts_field {
            if let Some(f) = field.take() {
                apply_field(&mut report, &f);
            }
            field = Some(t.to_string());
        } else if let Some(f) = field.as_mut() {
            f.push(',');
            f.push_str(t);
        } else {
            report.bad_fields.push(format!("{t}: a value with no field name"));
        }
    }
    if let Some(f) = field.take() {
        apply_field(&mut report, &f);
    }
    Some(report)
}

/// Applies one `Key:value` field; a malformed known field goes to `bad_fields`, an unknown
/// one to `other_fields`, and neither disturbs the other fields.
fn apply_field(report: &mut StatusReport, field: &str) {
    let Some((key, value)) = field.split_once(':') else {
        if !field.trim().is_empty() {
            report.other_fields.push(field.to_string());
        }
        return;
    };
    let result: Result<(), String> = (|| {
        match key {
            "MPos" => report.mpos = Some(AxisValues::parse(value)?),
            "WPos" => report.wpos = Some(AxisValues::parse(value)?),
            "WCO" => report.wco = Some(AxisValues::parse(value)?),
            "FS" => {
                let (feed, spindle) = value.split_once(',').ok_or("expected feed,speed")?;
                let feed = parse_finite(feed)?;
                let spindle = parse_finite(spindle)?;
                report.feed_mm_per_min = Some(feed);
                report.spindle_rpm = Some(spindle);
            }
            "F" => report.feed_mm_per_min = Some(parse_finite(value)?),
            "Bf" => {
                let (blocks, bytes) = value.split_once(',').ok_or("expected blocks,bytes")?;
                let blocks = blocks.trim().parse::<u32>().map_err(|_| "blocks is not a count")?;
                let bytes = bytes.trim().parse::<u32>().map_err(|_| "bytes is not a count")?;
                report.buffer = Some((blocks, bytes));
            }
            "Ln" => report.line_number = Some(value.trim().parse::<u32>().map_err(|_| "not a line number")?),
            "Ov" => {
                let v: Result<Vec<u16>, _> = value.split(',').map(|p| p.trim().parse::<u16>()).collect();
                match v.as_deref() {
                    Ok([feed_pct, rapid_pct, spindle_pct]) => {
                        report.overrides =
                            Some(Overrides { feed_pct: *feed_pct, rapid_pct: *rapid_pct, spindle_pct: *spindle_pct })
                    }
                    _ => return Err("expected three whole percentages feed,rapid,spindle".to_string()),
                }
            }
            "Pn" => report.pins = Some(PinState::parse(value)),
            "A" => report.accessories = Some(AccessoryState::parse(value)),
            _ => report.other_fields.push(field.to_string()),
        }
        Ok(())
    })();
    if let Err(why) = result {
        report.bad_fields.push(format!("{field}: {why}"));
    }
}

fn parse_finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{}` is not a finite number", s.trim())),
    }
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

    fn status(line: &str) -> StatusReport {
        match parse_response(line) {
            Response::Status(s) => *s,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn axes(v: &[f64]) -> Option<AxisValues> {
        AxisValues::from_slice(v)
    }

    #[test]
    fn full_grbl11_status_report_keeps_every_field() {
        let s = status("<Run|MPos:1.000,2.000,3.000|Bf:15,128|FS:600,9000|Ln:7|WCO:0.500,-1.000,0.000|Ov:120,50,90|Pn:XZPDHRSEq|A:SFMCt>");
        assert_eq!(s.state, MachineState::Run);
        assert_eq!(s.mpos, axes(&[1.0, 2.0, 3.0]));
        assert_eq!(s.buffer, Some((15, 128)));
        assert_eq!((s.feed_mm_per_min, s.spindle_rpm), (Some(600.0), Some(9000.0)));
        assert_eq!(s.line_number, Some(7));
        assert_eq!(s.wco, axes(&[0.5, -1.0, 0.0]));
        assert_eq!(s.overrides, Some(Overrides { feed_pct: 120, rapid_pct: 50, spindle_pct: 90 }));
        assert!(!s.overrides.is_some_and(|o| o.motion_as_programmed()));
        let pins = s.pins.clone().expect("pins");
        assert_eq!(pins.limits, [true, false, true, false, false, false]);
        assert!(pins.probe && pins.door && pins.hold && pins.soft_reset && pins.cycle_start && pins.e_stop);
        assert_eq!(pins.other, "q");
        let a = s.accessories.clone().expect("accessories");
        assert!(a.spindle_cw && a.spindle_ccw && a.flood && a.mist);
        assert_eq!(a.other, "t");
        assert!(s.bad_fields.is_empty() && s.other_fields.is_empty(), "{s:?}");
        assert!(!s.overrides_unreadable());
    }

    #[test]
    fn positions_with_three_to_six_axes_and_wpos_and_f_only() {
        for n in 3..=6 {
            let v: Vec<String> = (0..n).map(|i| format!("{i}.500")).collect();
            let s = status(&format!("<Idle|WPos:{}|F:250.5>", v.join(",")));
            let got = s.wpos.expect("wpos");
            assert_eq!(got.len(), n);
            assert_eq!(got.as_slice()[n - 1], n as f64 - 0.5);
            assert_eq!(got.xyz(), [0.5, 1.5, 2.5]);
            assert_eq!(s.feed_mm_per_min, Some(250.5));
            assert_eq!(s.spindle_rpm, None);
        }
        for bad in ["1,2", "1,2,3,4,5,6,7", "1,x,3", "1,2,inf", ""] {
            let s = status(&format!("<Idle|MPos:{bad}|FS:1,2>"));
            assert_eq!(s.mpos, None, "{bad}");
            assert_eq!(s.feed_mm_per_min, Some(1.0), "the good field is kept next to `{bad}`");
            assert_eq!(s.bad_fields.len(), 1, "{bad}: {:?}", s.bad_fields);
            assert!(s.bad_fields[0].starts_with("MPos:"), "{:?}", s.bad_fields);
        }
    }

    #[test]
    fn one_bad_field_leaves_the_others() {
        let s = status("<Hold:0|MPos:1,2|Bf:x,1|FS:5|Ln:-3|Ov:200,100|WCO:0,0,0|SD:42.0,file.nc|H:1,7|Pn:Y>");
        assert_eq!(s.state, MachineState::Hold(0));
        assert_eq!(s.wco, axes(&[0.0; 3]));
        assert_eq!(s.pins.as_ref().map(|p| p.limits[1]), Some(true));
        assert_eq!((s.mpos, s.buffer, s.feed_mm_per_min, s.line_number, s.overrides), (None, None, None, None, None));
        let bad: Vec<&str> = s.bad_fields.iter().map(|f| f.split(':').next().unwrap_or("")).collect();
        assert_eq!(bad, ["MPos", "Bf", "FS", "Ln", "Ov"]);
        assert!(s.overrides_unreadable());
        assert_eq!(s.other_fields, ["SD:42.0,file.nc", "H:1,7"]);
    }

    #[test]
    fn states_with_and_without_substates() {
        let cases = [
            ("Idle", MachineState::Idle),
            ("Run", MachineState::Run),
            ("Hold:1", MachineState::Hold(1)),
            ("Hold", MachineState::Hold(0)),
            ("Hold:x", MachineState::Other("Hold:x".into())),
            ("Jog", MachineState::Jog),
            ("Alarm", MachineState::Alarm),
            ("Alarm:11", MachineState::Alarm),
            ("Door:2", MachineState::Door(2)),
            ("Check", MachineState::Check),
            ("Home", MachineState::Home),
            ("Sleep", MachineState::Sleep),
            ("Tool", MachineState::Other("Tool".into())),
        ];
        for (text, state) in cases {
            assert_eq!(status(&format!("<{text}|MPos:0,0,0>")).state, state, "{text}");
            assert_eq!(status(&format!("<{text}>")).state, state, "{text}");
        }
    }

    #[test]
    fn grbl09_comma_status() {
        let s = status("<Idle,MPos:0.000,1.000,2.000,WPos:-1.000,0.000,1.000,Buf:0,RX:3,Ln:12,F:300.>");
        assert_eq!(s.state, MachineState::Idle);
        assert_eq!(s.mpos, axes(&[0.0, 1.0, 2.0]));
        assert_eq!(s.wpos, axes(&[-1.0, 0.0, 1.0]));
        assert_eq!(s.line_number, Some(12));
        assert_eq!(s.feed_mm_per_min, Some(300.0));
        assert_eq!(s.other_fields, ["Buf:0", "RX:3"]);
        let s = status("<Alarm,MPos:0.000,0.000,0.000>");
        assert_eq!(s.state, MachineState::Alarm);
        assert_eq!(parse_response("<,MPos:1,2,3>"), Response::Unknown);
    }

    #[test]
    fn alarms_errors_banners_and_answers() {
        assert_eq!(parse_response("ok"), Response::Ok);
        assert_eq!(parse_response("error:20"), Response::Error { code: 20 });
        assert_eq!(parse_response("error: Bad number format"), Response::Error { code: 0 });
        assert_eq!(parse_response("ALARM:3"), Response::Alarm { code: Some(3), text: None });
        assert_eq!(parse_response("ALARM:Hard limit"), Response::Alarm { code: None, text: Some("Hard limit".into()) });
        assert_eq!(
            parse_response("ALARM: Hard/soft limit"),
            Response::Alarm { code: None, text: Some("Hard/soft limit".into()) }
        );
        assert_eq!(parse_response("ALARM"), Response::Alarm { code: None, text: None });
        assert_eq!(
            parse_response("GrblHAL 1.1f ['$' or '$HELP' for help]"),
            Response::Banner { firmware: "GrblHAL".into(), version: "1.1f".into() }
        );
        assert_eq!(
            parse_response("Grbl 0.9j ['$' for help]"),
            Response::Banner { firmware: "Grbl".into(), version: "0.9j".into() }
        );
        assert_eq!(
            parse_response("Grbl 3.7.8 [FluidNC v3.7.8 (wifi) '$' for help]"),
            Response::Banner { firmware: "Grbl".into(), version: "3.7.8".into() }
        );
        for not_banner in ["Grbl is great", "Grbl 1.1h", "grblish 1.1 [x]", "Grbl"] {
            assert_eq!(parse_response(not_banner), Response::Unknown, "{not_banner}");
        }
    }

    #[test]
    fn every_feedback_form_is_typed() {
        let fb = |l: &str| match parse_response(l) {
            Response::Feedback(f) => f,
            other => panic!("{l}: {other:?}"),
        };
        assert_eq!(parse_response("[MSG:Caution: Unlocked]"), Response::Message("Caution: Unlocked".into()));
        assert_eq!(parse_response("[Caution: Unlocked]"), Response::Message("Caution: Unlocked".into()));
        assert_eq!(parse_response("['$H'|'$X' to unlock]"), Response::Message("'$H'|'$X' to unlock".into()));
        assert_eq!(
            fb("[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]"),
            Feedback::ParserState("G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0".into())
        );
        assert_eq!(
            fb("[G0 G54 G17 G21 G90 G94 M0 M5 M9 T0 F0. S0.]"),
            Feedback::ParserState("G0 G54 G17 G21 G90 G94 M0 M5 M9 T0 F0. S0.".into())
        );
        assert_eq!(
            fb("[PRB:0.000,0.000,1.492:1]"),
            Feedback::Probe { position: AxisValues::from_slice(&[0.0, 0.0, 1.492]).expect("3"), success: true }
        );
        assert_eq!(fb("[echo:G1X1]"), Feedback::Echo("G1X1".into()));
        assert_eq!(
            fb("[VER:1.1h.20190825:my rig]"),
            Feedback::Version { version: "1.1h.20190825".into(), build_info: "my rig".into() }
        );
        assert_eq!(fb("[OPT:V,15,128]"), Feedback::Options { codes: "V".into(), values: vec![15, 128] });
        assert_eq!(fb("[HLP:$$ $# $G $I $N $x=val]"), Feedback::Help("$$ $# $G $I $N $x=val".into()));
        assert_eq!(fb("[TLO:0.000]"), Feedback::ToolLengthOffset(vec![0.0]));
        for sys in ["G54", "G55", "G56", "G57", "G58", "G59", "G59.3", "G28", "G30", "G92"] {
            assert_eq!(
                fb(&format!("[{sys}:1.000,2.000,3.000,4.000,5.000]")),
                Feedback::CoordinateOffset {
                    system: sys.into(),
                    offset: AxisValues::from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0]).expect("5")
                }
            );
        }
        assert_eq!(fb("[FIRMWARE:grblHAL]"), Feedback::Info { tag: "FIRMWARE".into(), text: "grblHAL".into() });
        assert_eq!(fb("$110=3000.000"), Feedback::Setting { key: "110".into(), value: "3000.000".into() });
        assert_eq!(fb("$N0=G21"), Feedback::Setting { key: "N0".into(), value: "G21".into() });
        assert_eq!(fb(">G21:ok"), Feedback::StartupBlock { block: "G21".into(), error_code: None });
        assert_eq!(fb(">G54G20:error:20"), Feedback::StartupBlock { block: "G54G20".into(), error_code: Some(20) });
        // Malformed or unknown feedback is unknown, never misread.
        for junk in [
            "[FOO:1]",
            "[PRB:1,2:1]",
            "[PRB:1,2,3:7]",
            "[OPT:V,x]",
            "[G54:1,2]",
            "[TLO:x]",
            "$=x",
            "$",
            ">G21",
            "[]",
            "[",
        ] {
            assert_eq!(parse_response(junk), Response::Unknown, "{junk}");
        }
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

    /// A well-formed answer line, or a line of garbage that is not one.
    #[derive(Debug, Clone)]
    enum RxLine {
        Ok,
        Error(u16),
        Garbage(Vec<u8>),
    }

    fn rx_line() -> impl Strategy<Value = RxLine> {
        let garbage = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            "<[A-Za-z]{0,6}[|,][A-Za-z]{0,4}:[0-9.,:-]{0,30}([|,][A-Za-z]{0,4}:[0-9.,A-Z-]{0,20}){0,6}>"
                .prop_map(String::into_bytes),
            "\\[[A-Za-z0-9 ]{0,8}:[ -~]{0,30}\\]".prop_map(String::into_bytes),
            "(ALARM|\\$|>)[ -~]{0,30}".prop_map(String::into_bytes),
        ]
        .prop_map(|mut g| {
            g.retain(|b| *b != b'\n');
            g
        })
        .prop_filter("garbage that is an answer or a banner", |g| {
            let t = String::from_utf8_lossy(g);
            let t = t.trim();
            !(t == "ok" || t.starts_with("error:") || parse_banner(t).is_some())
        });
        prop_oneof![Just(RxLine::Ok), (0u16..200).prop_map(RxLine::Error), garbage.prop_map(RxLine::Garbage),]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Arbitrary bytes in arbitrary chunks never panic the parser.
        #[test]
        fn parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000), cut in 1usize..64) {
            let mut s = GrblStreamer::new(GrblConfig::default());
            for chunk in bytes.chunks(cut) {
                s.handle_received(chunk, T0);
            }
            while s.poll_event().is_some() {}
            let _ = parse_response(&String::from_utf8_lossy(&bytes));
        }

        /// Well-formed `ok` / `error:N` lines mixed into garbage (random bytes, mangled status
        /// reports and feedback), delivered in random chunks: each answers its line, in order,
        /// with its code; garbage never answers a line.
        #[test]
        fn answers_are_never_lost_in_garbage(
            lines in prop::collection::vec(rx_line(), 1..60),
            cut in 1usize..40,
            crlf in any::<bool>(),
        ) {
            let answers: Vec<Option<u16>> = lines
                .iter()
                .filter_map(|l| match l {
                    RxLine::Ok => Some(None),
                    RxLine::Error(c) => Some(Some(*c)),
                    RxLine::Garbage(_) => None,
                })
                .collect();
            // A buffer large enough to have every line in flight at once.
            let cfg = GrblConfig { pause_on_error: false, rx_buffer_bytes: 4096, ..GrblConfig::default() };
            let mut s = GrblStreamer::new(cfg);
            for tag in 0..answers.len() as u64 {
                s.queue_line("G0", tag).expect("valid");
            }
            let mut buf = Vec::new();
            s.poll_transmit(T0, &mut buf);
            prop_assert_eq!(s.in_flight(), answers.len());
            let mut stream = Vec::new();
            for l in &lines {
                match l {
                    RxLine::Ok => stream.extend_from_slice(b"ok"),
                    RxLine::Error(c) => stream.extend_from_slice(format!("error:{c}").as_bytes()),
                    RxLine::Garbage(g) => stream.extend_from_slice(g),
                }
                stream.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            for chunk in stream.chunks(cut) {
                s.handle_received(chunk, T0);
            }
            let mut got = Vec::new();
            while let Some(e) = s.poll_event() {
                match e {
                    GrblEvent::Accepted { tag } => got.push((tag, None)),
                    GrblEvent::Rejected { tag, code } => got.push((tag, Some(code))),
                    GrblEvent::UnexpectedOk | GrblEvent::UnexpectedError { .. } | GrblEvent::Reset { .. } => {
                        prop_assert!(false, "garbage answered or reset: {:?}", e)
                    }
                    _ => {}
                }
            }
            let want: Vec<(u64, Option<u16>)> = answers.iter().enumerate().map(|(i, a)| (i as u64, *a)).collect();
            prop_assert_eq!(got, want);
        }
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
        let c = smp_testkit::synthetic_case(2);
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

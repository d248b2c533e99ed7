//! Marlin's numbered lines behind [`HostStreamer`]: the handshake, the stand-ins for grbl's
//! realtime bytes, and which acknowledgements prove a line processed (see the parent module).

use std::collections::HashMap;
use std::time::Duration;

use super::{HostEvent, HostStreamer, FEED_RATE_TAG_BASE, REALTIME_TAG_BASE};
use crate::marlin::{numbered_line, MarlinConfig, MarlinEvent, MarlinStreamer};
use crate::Realtime;

/// Longest received line kept while waiting for its newline.
const MAX_RX_LINE_BYTES: usize = 512;

/// [`MarlinStreamer`] with the handshake, the stand-ins for realtime bytes, and the
/// processed/queued distinction (see the module docs).
pub(crate) struct MarlinHost {
    inner: MarlinStreamer,
    /// Command text of each queued line, by tag (for its wire length once numbered).
    commands: HashMap<u64, String>,
    /// Bytes to write ahead of any line (`M400` handshake query, `M112`).
    urgent: Vec<u8>,
    /// A received line in progress: the stream is split here so that each line's events
    /// are known to come from that line.
    rx: Vec<u8>,
    /// `resume` was called once: the handshake is over and numbered lines flow.
    started: bool,
    /// `ok`s of the handshake (`M220`, `M400`) still to come; the last one is `Ready`.
    handshake_oks: usize,
    /// Period of the streaming `M220` queries.
    feed_rate_query: Option<Duration>,
    /// When the next streaming `M220` is due (set at the first transmit after `resume`).
    next_feed_rate_at: Option<Duration>,
    /// A streaming `M220` is queued or on the wire and not yet acknowledged.
    feed_rate_query_out: bool,
    feed_rate_queries: u64,
    /// A `P000` went out and no `R000` since (firmware with realtime commands).
    quick_paused: bool,
    realtime_lines: u64,
    events: std::collections::VecDeque<HostEvent>,
    record: bool,
    transcript: Vec<String>,
}

impl MarlinHost {
    pub(crate) fn new(cfg: MarlinConfig, record: bool, feed_rate_query: Option<Duration>) -> Self {
        let mut inner = MarlinStreamer::new(cfg);
        inner.pause();
        MarlinHost {
            inner,
            commands: HashMap::new(),
            urgent: Vec::new(),
            rx: Vec::new(),
            started: false,
            handshake_oks: 0,
            feed_rate_query: feed_rate_query.filter(|p| !p.is_zero()),
            next_feed_rate_at: None,
            feed_rate_query_out: false,
            feed_rate_queries: 0,
            quick_paused: false,
            realtime_lines: 0,
            events: std::collections::VecDeque::new(),
            record,
            transcript: Vec::new(),
        }
    }

    fn handle_line(&mut self, raw: &[u8], now: Duration) {
        let text = String::from_utf8_lossy(raw).into_owned();
        let line = text.trim();
        if line.is_empty() {
            return;
        }
        if self.record {
            self.transcript.push(format!("< {line}"));
        }
        if let Some(percent) = crate::feed_rate_percent(line) {
            self.events.push_back(HostEvent::FeedRate { percent });
            return;
        }
        // The queries are only sent before any numbered line, so the first `ok`s are theirs.
        if self.handshake_oks > 0 && (line == "ok" || line.starts_with("ok ")) {
            self.handshake_oks -= 1;
            if self.handshake_oks == 0 {
                self.events.push_back(HostEvent::Ready);
            }
            return;
        }
        let from_resend = line.starts_with("Resend:") || line.starts_with("rs ");
        let is_start = line == "start";
        let mut line_bytes = line.as_bytes().to_vec();
        line_bytes.push(b'\n');
        self.inner.handle_received(&line_bytes, now);
        let reset_reported = self.drain_inner(from_resend);
        if is_start {
            // The core only reports a reset that lost lines; mid-stream any restart loses the
            // controller's position and state, so it is reported (and sending held) always.
            if self.started && !reset_reported {
                self.inner.pause();
                self.events.push_back(HostEvent::Reset { lost_tags: Vec::new() });
            }
            self.events.push_back(HostEvent::Welcome { version: "Marlin".into() });
        }
    }

    /// Maps the core's events to the host's, in order (`from_resend`: the reply that carried
    /// them asked for a resend, so an accepted line is only queued again). True when a reset
    /// was among them.
    fn drain_inner(&mut self, from_resend: bool) -> bool {
        let mut reset_reported = false;
        while let Some(ev) = self.inner.poll_event() {
            let mapped = match ev {
                MarlinEvent::Sent { tag, line_number } => self.sent(tag, line_number),
                MarlinEvent::Accepted { tag } if tag >= FEED_RATE_TAG_BASE => {
                    if tag < REALTIME_TAG_BASE {
                        self.feed_rate_query_out = false;
                    }
                    continue;
                }
                MarlinEvent::Accepted { tag } if from_resend => HostEvent::Queued { tag },
                MarlinEvent::Accepted { tag } => HostEvent::Accepted { tag },
                MarlinEvent::Resent { from_line } => {
                    HostEvent::Note(format!("controller asked for lines from N{from_line} again"))
                }
                MarlinEvent::Error(e) if e.contains("cannot be repaired") => HostEvent::Desync(e),
                MarlinEvent::Error(e) => HostEvent::Note(format!("controller error: {e}")),
                MarlinEvent::Busy => continue,
                MarlinEvent::Timeout { line_number } => {
                    HostEvent::Note(format!("no answer in time: line N{line_number} sent again"))
                }
                MarlinEvent::Reset { lost_tags } => {
                    reset_reported = true;
                    HostEvent::Reset { lost_tags }
                }
                MarlinEvent::UnexpectedOk => HostEvent::UnexpectedOk,
                MarlinEvent::Unparsed(s) if s.starts_with("echo:") => HostEvent::Message(s),
                MarlinEvent::Unparsed(s) => HostEvent::Unparsed(s),
            };
            self.events.push_back(mapped);
        }
        reset_reported
    }

    /// Puts a numbered `M220` ahead of the unsent lines when one is due (streaming, not held,
    /// none already out). Lines behind it move back by one: none of them is on the wire.
    fn queue_feed_rate_query(&mut self, now: Duration) {
        let Some(period) = self.feed_rate_query else { return };
        if !self.started || self.inner.is_paused() || self.feed_rate_query_out || self.inner.pending() == 0 {
            return;
        }
        let due = *self.next_feed_rate_at.get_or_insert(now + period);
        if now < due {
            return;
        }
        let tag = FEED_RATE_TAG_BASE + self.feed_rate_queries;
        match self.inner.insert_next("M220", tag) {
            Ok(()) => {
                self.commands.insert(tag, "M220".to_string());
                self.feed_rate_queries += 1;
                self.feed_rate_query_out = true;
            }
            Err(e) => self.events.push_back(HostEvent::Note(format!("feed rate query not queued: {e}"))),
        }
        self.next_feed_rate_at = Some(now + period);
    }

    /// `P000`/`R000` as a numbered line sent at once (see `MarlinStreamer::send_now`).
    fn send_realtime_line(&mut self, command: &str) {
        let tag = REALTIME_TAG_BASE + self.realtime_lines;
        self.realtime_lines += 1;
        match self.inner.send_now(command, tag) {
            Ok(true) => {}
            Ok(false) => self.events.push_back(HostEvent::Note(format!("{command} waits behind the M110 of a reset"))),
            Err(e) => self.events.push_back(HostEvent::Note(format!("{command} not sent: {e}"))),
        }
        self.commands.insert(tag, command.to_string());
    }

    fn sent(&self, tag: u64, line_number: i64) -> HostEvent {
        let wire_bytes = self.commands.get(&tag).map_or(0, |c| numbered_line(line_number, c).len() + 1);
        HostEvent::Sent { tag, wire_bytes }
    }
}

impl HostStreamer for MarlinHost {
    fn translate(&self, line: &str) -> Result<Option<String>, String> {
        crate::grbl_to_marlin(line).map_err(|e| e.to_string())
    }

    fn queue_line(&mut self, line: &str, tag: u64) -> Result<(), String> {
        self.inner.queue_line(line, tag).map_err(|e| e.to_string())?;
        self.commands.insert(tag, line.split(';').next().unwrap_or("").trim().replace('\t', " "));
        Ok(())
    }

    fn handle_received(&mut self, bytes: &[u8], now: Duration) {
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.rx);
                self.handle_line(&line, now);
            } else {
                self.rx.push(b);
                if self.rx.len() > MAX_RX_LINE_BYTES {
                    let junk = std::mem::take(&mut self.rx);
                    self.events.push_back(HostEvent::Unparsed(String::from_utf8_lossy(&junk).into_owned()));
                }
            }
        }
    }

    fn poll_transmit(&mut self, now: Duration, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.append(&mut self.urgent);
        self.queue_feed_rate_query(now);
        self.inner.poll_transmit(now, buf);
        // `Sent` events of the core, mapped now so that they precede any later reply's events.
        self.drain_inner(false);
        if self.record && buf.len() > start {
            for l in String::from_utf8_lossy(&buf[start..]).lines() {
                self.transcript.push(format!("> {l}"));
            }
        }
    }

    fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        // Only a query that `queue_feed_rate_query` would queue: a deadline it would pass over
        // (one out already, nothing left, held) would wake the core for nothing, again and again.
        let query = self.next_feed_rate_at.filter(|_| {
            self.feed_rate_query.is_some()
                && self.started
                && !self.inner.is_paused()
                && !self.feed_rate_query_out
                && self.inner.pending() > 0
        });
        match (self.inner.poll_timeout(), query) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        // The query's deadline is one of `poll_timeout`'s: it is queued here when due, even
        // while no line can go out (it waits at the head of the unsent lines).
        self.queue_feed_rate_query(now);
        self.inner.handle_timeout(now);
        self.drain_inner(false);
    }

    fn pending(&self) -> usize {
        self.inner.pending()
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    fn pause(&mut self) {
        self.inner.pause();
    }

    fn resume(&mut self) {
        self.started = true;
        self.inner.resume();
    }

    fn clear_queue(&mut self) -> Vec<u64> {
        self.inner.clear_queue()
    }

    fn realtime(&mut self, cmd: Realtime) {
        match cmd {
            Realtime::StatusQuery if !self.started && self.handshake_oks == 0 => {
                self.handshake_oks = 2;
                self.urgent.extend_from_slice(b"M220\nM400\n");
            }
            Realtime::FeedHold => {
                self.inner.pause();
                if self.inner.config().realtime_commands && !self.quick_paused {
                    self.send_realtime_line("P000");
                    self.quick_paused = true;
                }
            }
            Realtime::CycleStart if self.quick_paused => {
                self.send_realtime_line("R000");
                self.quick_paused = false;
            }
            // Resuming is the pump's `resume`; Marlin has no soft reset (an abort drains) and
            // no spindle stop override (M5 is a queued line, behind the moves).
            Realtime::StatusQuery | Realtime::CycleStart | Realtime::SoftReset | Realtime::SpindleStop => {}
        }
    }

    fn emergency_stop(&mut self) {
        self.inner.pause();
        self.urgent.extend_from_slice(b"M112\n");
    }

    fn take_transcript(&mut self) -> Vec<String> {
        std::mem::take(&mut self.transcript)
    }
}

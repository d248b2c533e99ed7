//! One face for the three host protocols, so the executor is written once.
//!
//! This crate's sans-I/O cores ([`crate::GrblStreamer`], [`crate::GrblSrStreamer`], [`crate::MarlinStreamer`]) are
//! wrapped behind [`HostStreamer`], which speaks in [`HostEvent`]s. The wrappers add only what
//! the executor needs and the cores do not say on their own:
//! - the wire length of each line sent (the pump writes the bytes before a plunge line, commits
//!   the journal, then writes the plunge: it must know where the plunge starts in the buffer);
//! - for Marlin, which acknowledgements prove a line was *processed* (`ok`, [`HostEvent::Accepted`])
//!   and which only that it was *validated into Marlin's queue* (a `Resend: N` acknowledges
//!   every line below N, [`HostEvent::Queued`]): only the first may confirm a dwell;
//! - for Marlin, what stands in for the realtime bytes grbl has and Marlin lacks (below).
//!
//! Marlin has no `?`, `!`, `~` or Ctrl-X. Here:
//! - status query: before streaming, an unnumbered `M220` (feed rate percentage, answered
//!   `FR:<n>%`, [`HostEvent::FeedRate`]) and `M400` (wait for all moves) whose `ok`s become
//!   [`HostEvent::Ready`] (the handshake); while streaming, nothing (no event);
//! - feed rate percentage (Marlin's override, which scales every move the verifier proved):
//!   besides the handshake's, a numbered `M220` is put ahead of the unsent lines every
//!   `feed_rate_query` of streaming (one at a time), and each `FR:` answer is a
//!   [`HostEvent::FeedRate`]; these queries' own acknowledgements are not reported;
//! - feed hold: no new line is sent; the up to `BUFSIZE` (4) lines already in Marlin run to
//!   completion (honest limit: a Marlin "hold" is a drain, not a deceleration). With
//!   `MarlinConfig::realtime_commands` (firmware built with `REALTIME_REPORTING_COMMANDS`), a
//!   numbered `P000` also goes out at once, ahead of the window: Marlin's emergency parser
//!   suspends the steppers as it arrives (an abrupt stop, no deceleration; a dwell already
//!   counting runs on, and the cartridge keeps running);
//! - cycle start: `R000` after a `P000`, and lines flow again (the pump's `resume`);
//! - soft reset: none; an abort drains the lines in flight instead;
//! - emergency stop: `M112` written at once, unnumbered (Marlin's emergency parser acts on it
//!   as it arrives; without that option it waits behind the queued commands).

use std::time::Duration;

mod grbl;
mod marlin;
pub mod survey;

use crate::marlin::MarlinConfig;
use crate::{Feedback, GrblConfig, GrblSrStreamer, GrblStreamer, Realtime, StatusReport};

use self::grbl::{GrblCore, GrblHost};
use self::marlin::MarlinHost;

/// Which host protocol the executor speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// grbl 1.1 character counting (keeps grbl's 128-byte receive buffer full).
    #[default]
    Grbl,
    /// grbl 1.1 send-response (one line unanswered at a time).
    GrblSendResponse,
    /// Marlin 2.x numbered lines with checksums and `Resend:` (4 lines unanswered at most).
    Marlin,
}

impl Protocol {
    /// The G-code dialect a program for this controller is compiled in (the verified text is
    /// what goes on the wire, so no dialect is rewritten after verification).
    pub fn dialect(self) -> crate::Dialect {
        match self {
            Protocol::Grbl | Protocol::GrblSendResponse => crate::Dialect::Grbl,
            Protocol::Marlin => crate::Dialect::Marlin,
        }
    }

    /// The name used on the command line (`grbl`, `grbl-sr`, `marlin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grbl => "grbl",
            Protocol::GrblSendResponse => "grbl-sr",
            Protocol::Marlin => "marlin",
        }
    }

    /// Whether the controller has grbl's realtime bytes (status query, feed hold, cycle start,
    /// soft reset). Marlin does not (see the module docs for what stands in for them).
    pub fn has_realtime(self) -> bool {
        !matches!(self, Protocol::Marlin)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--protocol` value not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol `{0}`; use grbl, grbl-sr or marlin")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grbl" => Ok(Protocol::Grbl),
            "grbl-sr" | "grbl_sr" | "grbl-send-response" => Ok(Protocol::GrblSendResponse),
            "marlin" => Ok(Protocol::Marlin),
            _ => Err(UnknownProtocol(s.to_string())),
        }
    }
}

/// What the protocol core reports, in order, in the executor's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    /// The line went into the transmit buffer (again, for a Marlin resend) and takes
    /// `wire_bytes` there, newline included.
    Sent {
        tag: u64,
        wire_bytes: usize,
    },
    /// The controller processed the line (grbl `ok`; Marlin `ok`): for a dwell, the moves
    /// before it are done.
    Accepted {
        tag: u64,
    },
    /// The controller holds the line in its queue and will run it unless it resets, but has
    /// not processed it (Marlin `Resend:` above it). Confirms nothing about motion.
    Queued {
        tag: u64,
    },
    /// `error:N` for this line: not executed.
    Rejected {
        tag: u64,
        code: u16,
    },
    /// `ALARM:N`, or an alarm with text instead of a number (grblHAL, grbl 0.9).
    Alarm {
        code: Option<u16>,
        text: Option<String>,
    },
    /// Boxed: a report is large next to the other variants.
    Status(Box<StatusReport>),
    /// Typed grbl feedback (`[GC:..]`, `[PRB:..]`, `$N=..`...), with the line verbatim.
    Feedback {
        feedback: Feedback,
        line: String,
    },
    /// Answer to the handshake query of a controller without status reports (Marlin): all
    /// moves are done and the controller listens.
    Ready,
    /// Marlin's feed rate percentage (`FR:<n>%`, the answer to `M220`): 100 is as programmed.
    FeedRate {
        percent: u16,
    },
    /// Feedback text (`[MSG:...]`, Marlin `echo:`).
    Message(String),
    /// The controller's banner (grbl version, or `Marlin` for `start`).
    Welcome {
        version: String,
    },
    /// The controller restarted; these lines' fate is unknown. Sending is held.
    Reset {
        lost_tags: Vec<u64>,
    },
    AckTimeout {
        tag: u64,
    },
    UnexpectedOk,
    UnexpectedError {
        code: u16,
    },
    /// The protocol cannot continue (e.g. Marlin asks again for a line already confirmed).
    Desync(String),
    /// Protocol housekeeping worth a line in the report (resend requests, Marlin `Error:`).
    Note(String),
    /// A received line nobody interprets, verbatim. Logged, never fatal.
    Unparsed(String),
}

/// The host protocol core as the pump drives it (sans-I/O: bytes and `now` in, bytes,
/// events and deadlines out).
pub trait HostStreamer {
    /// The wire form of a program line in this protocol's dialect; `None` when nothing needs
    /// sending (a comment for Marlin).
    fn translate(&self, line: &str) -> Result<Option<String>, String>;
    /// Queues an already translated line; refused lines come back with the reason.
    fn queue_line(&mut self, line: &str, tag: u64) -> Result<(), String>;
    fn handle_received(&mut self, bytes: &[u8], now: Duration);
    fn poll_transmit(&mut self, now: Duration, buf: &mut Vec<u8>);
    fn poll_event(&mut self) -> Option<HostEvent>;
    fn poll_timeout(&self) -> Option<Duration>;
    fn handle_timeout(&mut self, now: Duration);
    /// Lines queued and not yet answered.
    fn pending(&self) -> usize;
    /// Lines sent and not yet answered.
    fn in_flight(&self) -> usize;
    fn pause(&mut self);
    fn resume(&mut self);
    /// Drops the lines not sent yet; their tags, oldest first.
    fn clear_queue(&mut self) -> Vec<u64>;
    /// Requests a realtime command (or its stand-in, see the module docs).
    fn realtime(&mut self, cmd: Realtime);
    /// Stops the machine now: grbl soft reset (Ctrl-X), Marlin `M112`.
    fn emergency_stop(&mut self);
    fn take_transcript(&mut self) -> Vec<String>;
}

/// The streamer for `protocol` (paused: nothing but realtime bytes goes out until `resume`).
/// `feed_rate_query`: Marlin only, the period of the feed rate queries while streaming
/// (`None`: only the handshake's).
pub fn new_streamer(
    protocol: Protocol,
    grbl: GrblConfig,
    marlin: MarlinConfig,
    feed_rate_query: Option<Duration>,
) -> Box<dyn HostStreamer> {
    match protocol {
        Protocol::Grbl => Box::new(GrblHost::new(GrblCore::Counting(GrblStreamer::new(grbl)))),
        Protocol::GrblSendResponse => Box::new(GrblHost::new(GrblCore::SendResponse(GrblSrStreamer::new(grbl)))),
        Protocol::Marlin => Box::new(MarlinHost::new(marlin, grbl.record_transcript, feed_rate_query)),
    }
}

/// Tags of the host's own `M220` queries (far above any program line's tag).
pub(crate) const FEED_RATE_TAG_BASE: u64 = 1 << 48;
/// Tags of the host's own `P000`/`R000` lines; every tag from [`FEED_RATE_TAG_BASE`] up is the
/// host's, never reported as a program line's acknowledgement.
pub(crate) const REALTIME_TAG_BASE: u64 = 1 << 49;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::marlin::numbered_line;

    const T0: Duration = Duration::ZERO;

    fn drain(s: &mut dyn HostStreamer) -> Vec<HostEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn send(s: &mut dyn HostStreamer) -> String {
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[test]
    fn protocol_names_round_trip() {
        for p in [Protocol::Grbl, Protocol::GrblSendResponse, Protocol::Marlin] {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
        }
        assert!("smoothie".parse::<Protocol>().unwrap_err().to_string().contains("grbl-sr"));
    }

    #[test]
    fn marlin_handshake_is_an_unnumbered_m400_and_its_ok_is_not_a_line_ack() {
        let mut s = new_streamer(Protocol::Marlin, GrblConfig::default(), MarlinConfig::default(), None);
        s.queue_line("G1 X1", 0).unwrap();
        s.realtime(Realtime::StatusQuery);
        s.realtime(Realtime::StatusQuery);
        assert_eq!(send(s.as_mut()), "M220\nM400\n", "one query, and no numbered line before resume");
        s.handle_received(b"start\nFR:100%\nok\nok\n", T0);
        assert_eq!(
            drain(s.as_mut()),
            vec![
                HostEvent::Welcome { version: "Marlin".into() },
                HostEvent::FeedRate { percent: 100 },
                HostEvent::Ready
            ]
        );
        s.resume();
        assert_eq!(send(s.as_mut()), "N0 M110 N0*125\n");
        s.handle_received(b"ok\n", T0);
        let wire = send(s.as_mut());
        assert_eq!(wire, format!("{}\n", numbered_line(1, "G1 X1")));
        assert_eq!(drain(s.as_mut()), vec![HostEvent::Sent { tag: 0, wire_bytes: wire.len() }]);
        s.handle_received(b"ok\n", T0);
        assert_eq!(drain(s.as_mut()), vec![HostEvent::Accepted { tag: 0 }]);
        // Marlin has no status query once streaming: nothing is sent.
        s.realtime(Realtime::StatusQuery);
        assert_eq!(send(s.as_mut()), "");
    }

    #[test]
    fn marlin_feed_rate_is_queried_between_lines_while_streaming() {
        let period = Duration::from_secs(3);
        let mut s = new_streamer(Protocol::Marlin, GrblConfig::default(), MarlinConfig::default(), Some(period));
        for t in 0..8 {
            s.queue_line("G1 X1", t).unwrap();
        }
        s.resume();
        let at = |secs: u64| Duration::from_secs(secs);
        assert_eq!(send(s.as_mut()), "N0 M110 N0*125\n");
        assert_eq!(s.poll_timeout(), Some(period), "the pump wakes for the query");
        s.handle_received(b"ok\n", T0);
        let mut buf = Vec::new();
        s.poll_transmit(at(1), &mut buf);
        assert_eq!(String::from_utf8_lossy(&buf).lines().count(), 4);
        drain(s.as_mut());
        // Due at 3 s: the M220 goes ahead of the unsent lines, numbered 5.
        s.handle_received(b"ok\n", at(3));
        buf.clear();
        s.poll_transmit(at(3), &mut buf);
        assert_eq!(String::from_utf8_lossy(&buf), format!("{}\n", numbered_line(5, "M220")));
        let ev = drain(s.as_mut());
        assert_eq!(ev[0], HostEvent::Accepted { tag: 0 });
        let len = numbered_line(5, "M220").len() + 1;
        assert!(matches!(ev[1], HostEvent::Sent { tag, wire_bytes } if tag >= FEED_RATE_TAG_BASE && wire_bytes == len));
        // Its answer: the percentage, then an `ok` that is not reported as a line's.
        s.handle_received(b"ok\nok\nok\nFR:150%\nok\n", at(4));
        let ev = drain(s.as_mut());
        assert_eq!(
            ev,
            vec![
                HostEvent::Accepted { tag: 1 },
                HostEvent::Accepted { tag: 2 },
                HostEvent::Accepted { tag: 3 },
                HostEvent::FeedRate { percent: 150 },
            ]
        );
        buf.clear();
        s.poll_transmit(at(4), &mut buf);
        assert!(String::from_utf8_lossy(&buf).starts_with(&numbered_line(6, "G1 X1")));
    }

    #[test]
    fn marlin_with_realtime_commands_pauses_with_p000_and_resumes_with_r000() {
        let cfg = MarlinConfig { realtime_commands: true, ..MarlinConfig::default() };
        let mut s = new_streamer(Protocol::Marlin, GrblConfig::default(), cfg, None);
        for t in 0..6 {
            s.queue_line("G1 X1", t).unwrap();
        }
        s.resume();
        send(s.as_mut());
        s.handle_received(b"ok\n", T0);
        assert_eq!(send(s.as_mut()).lines().count(), 4);
        drain(s.as_mut());
        s.realtime(Realtime::FeedHold);
        s.realtime(Realtime::FeedHold);
        assert_eq!(send(s.as_mut()), format!("{}\n", numbered_line(5, "P000")), "once, past the full window");
        // Answered in order; its acknowledgement is not a program line's.
        s.handle_received(b"ok\nok\nok\nok\nok\n", T0);
        let ev = drain(s.as_mut());
        assert!(matches!(ev[0], HostEvent::Sent { tag, .. } if tag >= REALTIME_TAG_BASE), "{ev:?}");
        assert_eq!(ev[1..], [0, 1, 2, 3].map(|tag| HostEvent::Accepted { tag }));
        s.realtime(Realtime::CycleStart);
        s.resume();
        let out = send(s.as_mut());
        assert!(out.starts_with(&format!("{}\n{}\n", numbered_line(6, "R000"), numbered_line(7, "G1 X1"))), "{out}");
        // Without the firmware option a feed hold sends nothing.
        let mut s = new_streamer(Protocol::Marlin, GrblConfig::default(), MarlinConfig::default(), None);
        s.queue_line("G1 X1", 0).unwrap();
        s.resume();
        send(s.as_mut());
        s.realtime(Realtime::FeedHold);
        assert_eq!(send(s.as_mut()), "");
    }

    #[test]
    fn marlin_resend_acknowledgement_is_queued_not_processed() {
        let mut s = new_streamer(Protocol::Marlin, GrblConfig::default(), MarlinConfig::default(), None);
        for t in 0..3 {
            s.queue_line(&format!("G4 S0.{t}"), t).unwrap();
        }
        s.resume();
        send(s.as_mut());
        s.handle_received(b"ok\n", T0);
        send(s.as_mut());
        drain(s.as_mut());
        s.handle_received(b"Error:checksum mismatch, Last Line: 2\nResend: 3\nok\n", T0);
        let ev = drain(s.as_mut());
        assert_eq!(ev[0], HostEvent::Note("controller error: checksum mismatch, Last Line: 2".into()));
        assert!(ev.contains(&HostEvent::Queued { tag: 0 }) && ev.contains(&HostEvent::Queued { tag: 1 }), "{ev:?}");
        assert!(!ev.iter().any(|e| matches!(e, HostEvent::Accepted { .. })), "{ev:?}");
        // A restart mid-stream is a reset even with the core's bookkeeping empty of lost lines.
        s.handle_received(b"echo:Unknown thing\nX:1.00 Y:2.00 Z:3.00 E:0.00 Count X:1 Y:2 Z:3\nstart\n", T0);
        let ev = drain(s.as_mut());
        assert_eq!(ev[0], HostEvent::Message("echo:Unknown thing".into()));
        assert!(matches!(ev[1], HostEvent::Unparsed(_)));
        assert!(ev.iter().any(|e| matches!(e, HostEvent::Reset { .. })), "{ev:?}");
    }

    #[test]
    fn marlin_emergency_stop_is_m112_ahead_of_lines_and_feed_hold_stops_feeding() {
        let mut s = new_streamer(Protocol::Marlin, GrblConfig::default(), MarlinConfig::default(), None);
        for t in 0..6 {
            s.queue_line("G1 X1", t).unwrap();
        }
        s.resume();
        send(s.as_mut());
        s.handle_received(b"ok\n", T0);
        assert_eq!(send(s.as_mut()).lines().count(), 4);
        s.realtime(Realtime::FeedHold);
        s.handle_received(b"ok\n", T0);
        assert_eq!(send(s.as_mut()), "", "held: the freed slot is not refilled");
        s.emergency_stop();
        assert_eq!(send(s.as_mut()), "M112\n");
        assert_eq!(s.clear_queue(), vec![4, 5]);
    }

    #[test]
    fn grbl_hosts_report_wire_lengths_and_sr_sends_one_line() {
        for (p, lines) in [(Protocol::Grbl, 3), (Protocol::GrblSendResponse, 1)] {
            let mut s = new_streamer(p, GrblConfig::default(), MarlinConfig::default(), None);
            for t in 0..3 {
                s.queue_line("G1 X10", t).unwrap();
            }
            assert_eq!(send(s.as_mut()), "", "{p}: paused until resume");
            s.resume();
            assert_eq!(send(s.as_mut()).lines().count(), lines, "{p}");
            assert_eq!(drain(s.as_mut())[0], HostEvent::Sent { tag: 0, wire_bytes: 7 });
            s.emergency_stop();
            assert_eq!(send(s.as_mut()), "\u{18}");
        }
    }
}

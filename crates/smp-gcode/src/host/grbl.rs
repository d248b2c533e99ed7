//! grbl's two host protocols (character counting, send-response) behind [`HostStreamer`].

use std::collections::HashMap;
use std::time::Duration;

use super::{HostEvent, HostStreamer};
use crate::{GrblEvent, GrblSrStreamer, GrblStreamer, Realtime};

pub(crate) enum GrblCore {
    Counting(GrblStreamer),
    SendResponse(GrblSrStreamer),
}

/// Calls the same method on whichever grbl core is inside (their APIs are identical).
macro_rules! core {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            GrblCore::Counting($s) => $e,
            GrblCore::SendResponse($s) => $e,
        }
    };
}

pub(crate) struct GrblHost {
    core: GrblCore,
    /// Wire bytes (newline included) of each queued line, by tag.
    wire_bytes: HashMap<u64, usize>,
}

impl GrblHost {
    pub(crate) fn new(core: GrblCore) -> Self {
        let mut h = GrblHost { core, wire_bytes: HashMap::new() };
        h.pause();
        h
    }
}

impl HostStreamer for GrblHost {
    fn translate(&self, line: &str) -> Result<Option<String>, String> {
        Ok(Some(line.to_string()))
    }

    fn queue_line(&mut self, line: &str, tag: u64) -> Result<(), String> {
        core!(&mut self.core, s => s.queue_line(line, tag)).map_err(|e| e.to_string())?;
        self.wire_bytes.insert(tag, line.len() + 1);
        Ok(())
    }

    fn handle_received(&mut self, bytes: &[u8], now: Duration) {
        core!(&mut self.core, s => s.handle_received(bytes, now))
    }

    fn poll_transmit(&mut self, now: Duration, buf: &mut Vec<u8>) {
        core!(&mut self.core, s => s.poll_transmit(now, buf))
    }

    fn poll_event(&mut self) -> Option<HostEvent> {
        let ev = core!(&mut self.core, s => s.poll_event())?;
        Some(match ev {
            GrblEvent::Sent { tag } => {
                HostEvent::Sent { tag, wire_bytes: self.wire_bytes.get(&tag).copied().unwrap_or(0) }
            }
            GrblEvent::Accepted { tag } => HostEvent::Accepted { tag },
            GrblEvent::Rejected { tag, code } => HostEvent::Rejected { tag, code },
            GrblEvent::Alarm { code, text } => HostEvent::Alarm { code, text },
            GrblEvent::Status(s) => HostEvent::Status(s),
            GrblEvent::Message(m) => HostEvent::Message(m),
            GrblEvent::Feedback { feedback, line } => HostEvent::Feedback { feedback, line },
            // The report names derivatives (`GrblHAL 1.1f`); grbl itself by version alone.
            GrblEvent::Welcome { firmware, version } if firmware == "Grbl" => HostEvent::Welcome { version },
            GrblEvent::Welcome { firmware, version } => HostEvent::Welcome { version: format!("{firmware} {version}") },
            GrblEvent::Reset { lost_tags } => HostEvent::Reset { lost_tags },
            GrblEvent::AckTimeout { tag } => HostEvent::AckTimeout { tag },
            GrblEvent::UnexpectedOk => HostEvent::UnexpectedOk,
            GrblEvent::UnexpectedError { code } => HostEvent::UnexpectedError { code },
            GrblEvent::Unparsed(s) => HostEvent::Unparsed(s),
        })
    }

    fn poll_timeout(&self) -> Option<Duration> {
        core!(&self.core, s => s.poll_timeout())
    }

    fn handle_timeout(&mut self, now: Duration) {
        core!(&mut self.core, s => s.handle_timeout(now))
    }

    fn pending(&self) -> usize {
        core!(&self.core, s => s.pending())
    }

    fn in_flight(&self) -> usize {
        core!(&self.core, s => s.in_flight())
    }

    fn pause(&mut self) {
        core!(&mut self.core, s => s.pause())
    }

    fn resume(&mut self) {
        core!(&mut self.core, s => s.resume())
    }

    fn clear_queue(&mut self) -> Vec<u64> {
        core!(&mut self.core, s => s.clear_queue())
    }

    fn realtime(&mut self, cmd: Realtime) {
        core!(&mut self.core, s => s.realtime(cmd))
    }

    fn emergency_stop(&mut self) {
        self.pause();
        self.realtime(Realtime::SoftReset);
    }

    fn take_transcript(&mut self) -> Vec<String> {
        core!(&mut self.core, s => s.take_transcript())
    }
}

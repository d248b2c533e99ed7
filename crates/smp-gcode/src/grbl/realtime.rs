//! grbl's realtime commands: single bytes that grbl's serial interrupt takes off the wire
//! before they reach the line buffer, so they never count against it and act at once.

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

/// The name of a realtime byte in the transcript.
pub(super) fn realtime_name(b: u8) -> &'static str {
    match b {
        b'?' => "?",
        b'!' => "!",
        b'~' => "~",
        0x18 => "^X",
        SPINDLE_STOP_BYTE => "SpindleStop",
        _ => "<realtime>",
    }
}

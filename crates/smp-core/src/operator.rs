//! What an operator can ask of a running session. One type for the bus (where it travels as
//! its snake_case name) and the executor (which carries it out), so the two never disagree on
//! what a command is.

use serde::{Deserialize, Serialize};

/// An operator's command to the chair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorCommand {
    /// Feed hold now (grbl `!` written at once; Marlin `P000` where the firmware has it, else
    /// no new line and the queued ones run on); once held, the cartridge is stopped. Always
    /// accepted.
    Pause,
    /// Cycle start (grbl `~`, which also restores the cartridge) and lines flow again;
    /// accepted only while paused.
    Resume,
    /// Stop the session for good: feed hold, wait for the machine to stop, soft reset (grbl)
    /// or drain (Marlin); the dots in flight become uncertain, the rest stay planned. Refused
    /// once the session is over.
    Abort,
    /// Soft reset now (grbl Ctrl-X; Marlin `M112`), no deceleration; then as `Abort`. Always
    /// accepted.
    EmergencyStop,
}

impl OperatorCommand {
    /// The wire name (`pause`, `resume`, `abort`, `emergency_stop`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort => "abort",
            Self::EmergencyStop => "emergency_stop",
        }
    }
}

impl std::fmt::Display for OperatorCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_name_is_the_serde_name() {
        for c in
            [OperatorCommand::Pause, OperatorCommand::Resume, OperatorCommand::Abort, OperatorCommand::EmergencyStop]
        {
            assert_eq!(serde_json::to_string(&c).ok(), Some(format!("\"{}\"", c.as_str())));
            assert_eq!(c.to_string(), c.as_str());
        }
    }
}

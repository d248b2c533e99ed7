//! The safety rules for operator commands, as pure functions (no I/O, no clock).
//!
//! Kept apart from the zenoh plumbing so that the rules are tested exhaustively and the
//! executor can apply them to its own, authoritative state before acknowledging.

use std::collections::{BTreeMap, VecDeque};

use crate::wire::{AckResult, OperatorCommand, SessionState};

/// Decide whether the executor should act on `command` in `state`.
///
/// - `emergency_stop` and `pause` are always accepted: stopping must never depend on what the
///   controller believes its state is (in a final state they are harmless no-ops).
/// - `resume` is accepted only from `paused`.
/// - `abort` is accepted until the session is over.
pub fn admit(command: OperatorCommand, state: SessionState) -> AckResult {
    match command {
        OperatorCommand::EmergencyStop | OperatorCommand::Pause => AckResult::Accepted,
        OperatorCommand::Resume if state == SessionState::Paused => AckResult::Accepted,
        OperatorCommand::Resume => {
            AckResult::refused(format!("resume is accepted only while paused; the session is {}", state_name(state)))
        }
        OperatorCommand::Abort if state.is_final() => {
            AckResult::refused(format!("the session is already {}; nothing to abort", state_name(state)))
        }
        OperatorCommand::Abort => AckResult::Accepted,
    }
}

fn state_name(state: SessionState) -> String {
    serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| format!("{state:?}"))
}

/// What to do with a received (operator, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Never seen: deliver to the executor.
    New,
    /// Seen recently: an operator retry or a network duplicate; do not deliver again (the bus
    /// re-sends the cached acknowledgement, if any).
    Duplicate,
    /// Older than the newest seq of that operator and not recently seen: a replay; ignored.
    Replayed,
}

/// Per-operator replay and duplicate filter.
///
/// Invariant: a given (operator, seq) is delivered at most once while it is among the
/// `window` most recent seqs of that operator, and a seq below the newest seen is never
/// delivered, except an `emergency_stop`: stopping twice is harmless, failing to stop is not,
/// so an out-of-order emergency stop (an operator whose clock stepped back) is still delivered
/// unless it is a recent duplicate.
#[derive(Debug, Clone)]
pub struct SeqFilter {
    window: usize,
    operators: BTreeMap<String, OperatorSeqs>,
}

#[derive(Debug, Clone, Default)]
struct OperatorSeqs {
    newest: u64,
    recent: VecDeque<u64>,
}

impl Default for SeqFilter {
    fn default() -> Self {
        Self::new(64)
    }
}

impl SeqFilter {
    /// A filter remembering the last `window` seqs of each operator (at least 1).
    pub fn new(window: usize) -> Self {
        Self { window: window.max(1), operators: BTreeMap::new() }
    }

    /// Classify (operator, seq) and record it.
    pub fn check(&mut self, operator: &str, seq: u64, command: OperatorCommand) -> SeqVerdict {
        let window = self.window;
        let Some(seen) = self.operators.get_mut(operator) else {
            let mut recent = VecDeque::with_capacity(window);
            recent.push_back(seq);
            self.operators.insert(operator.to_owned(), OperatorSeqs { newest: seq, recent });
            return SeqVerdict::New;
        };
        if seen.recent.contains(&seq) {
            return SeqVerdict::Duplicate;
        }
        if seq < seen.newest && command != OperatorCommand::EmergencyStop {
            return SeqVerdict::Replayed;
        }
        if seen.recent.len() >= window {
            seen.recent.pop_front();
        }
        seen.recent.push_back(seq);
        seen.newest = seen.newest.max(seq);
        SeqVerdict::New
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_STATES: [SessionState; 10] = [
        SessionState::Connecting,
        SessionState::Homing,
        SessionState::Registering,
        SessionState::Running,
        SessionState::Paused,
        SessionState::Faulted,
        SessionState::Resuming,
        SessionState::Done,
        SessionState::Aborted,
        SessionState::EmergencyStopped,
    ];

    #[test]
    fn stop_commands_are_always_accepted() {
        for s in ALL_STATES {
            assert_eq!(admit(OperatorCommand::EmergencyStop, s), AckResult::Accepted, "{s:?}");
            assert_eq!(admit(OperatorCommand::Pause, s), AckResult::Accepted, "{s:?}");
        }
    }

    #[test]
    fn resume_only_from_paused() {
        for s in ALL_STATES {
            assert_eq!(admit(OperatorCommand::Resume, s).is_accepted(), s == SessionState::Paused, "{s:?}");
        }
        let AckResult::Refused { reason } = admit(OperatorCommand::Resume, SessionState::Running) else {
            panic!("resume while running must be refused")
        };
        assert!(reason.contains("running"), "{reason}");
    }

    #[test]
    fn abort_refused_only_when_over() {
        for s in ALL_STATES {
            assert_eq!(admit(OperatorCommand::Abort, s).is_accepted(), !s.is_final(), "{s:?}");
        }
    }

    #[test]
    fn duplicates_and_replays_are_not_new() {
        let mut f = SeqFilter::new(4);
        assert_eq!(f.check("ana", 10, OperatorCommand::Pause), SeqVerdict::New);
        assert_eq!(f.check("ana", 10, OperatorCommand::Pause), SeqVerdict::Duplicate);
        assert_eq!(f.check("ana", 11, OperatorCommand::Resume), SeqVerdict::New);
        assert_eq!(f.check("ana", 9, OperatorCommand::Resume), SeqVerdict::Replayed);
        // Operators are independent.
        assert_eq!(f.check("ben", 1, OperatorCommand::Pause), SeqVerdict::New);
        // An out-of-order emergency stop still goes through, once.
        assert_eq!(f.check("ana", 5, OperatorCommand::EmergencyStop), SeqVerdict::New);
        assert_eq!(f.check("ana", 5, OperatorCommand::EmergencyStop), SeqVerdict::Duplicate);
        // The newest is unchanged by the late emergency stop.
        assert_eq!(f.check("ana", 6, OperatorCommand::Pause), SeqVerdict::Replayed);
    }

    proptest! {
        /// Whatever the arrival order (retries, duplicates), each non-emergency (operator, seq)
        /// is delivered at most once, and delivered seqs of non-emergency commands increase.
        #[test]
        fn at_most_once_and_increasing(arrivals in proptest::collection::vec((0u8..3, 0u64..40, any::<bool>()), 0..200)) {
            let mut f = SeqFilter::new(64);
            let mut delivered: BTreeMap<(u8, u64), usize> = BTreeMap::new();
            let mut last: BTreeMap<u8, u64> = BTreeMap::new();
            for (op, seq, estop) in arrivals {
                let cmd = if estop { OperatorCommand::EmergencyStop } else { OperatorCommand::Pause };
                if f.check(&format!("op{op}"), seq, cmd) == SeqVerdict::New {
                    *delivered.entry((op, seq)).or_default() += 1;
                    if !estop {
                        if let Some(prev) = last.get(&op) {
                            prop_assert!(seq > *prev, "non-increasing delivery {seq} after {prev}");
                        }
                    }
                    let newest = last.entry(op).or_insert(seq);
                    *newest = (*newest).max(seq);
                }
            }
            // Window 64 > 40 distinct seqs: nothing can be delivered twice.
            for (k, n) in delivered {
                prop_assert_eq!(n, 1, "{:?} delivered {} times", k, n);
            }
        }
    }
}

//! The legal moves of a dot's state. Kept as one pure function so the journal, the executor
//! and the property tests agree on a single table.

use smp_core::plan::DotState;

/// True when a dot may move from `from` to `to`.
///
/// Staying in the same state is not a transition: a second `sent` for a dot already `sent`
/// would mean the executor is about to plunge it again, which is exactly what the journal is
/// here to refuse.
pub fn is_legal_transition(from: DotState, to: DotState) -> bool {
    use DotState::*;
    matches!(
        (from, to),
        (Planned, Sent)
            | (Planned, Skipped)
            | (Sent, Accepted)
            | (Sent, Uncertain)
            | (Accepted, Executed)
            | (Accepted, Uncertain)
            | (Executed, Verified)
            | (Uncertain, Executed)
            | (Uncertain, Skipped)
    )
}

/// True when the transition resolves a fault and therefore must carry a reason (who looked,
/// and what they saw): `uncertain -> executed | skipped`.
pub fn needs_reason(from: DotState, to: DotState) -> bool {
    from == DotState::Uncertain && is_legal_transition(from, to)
}

/// Every state, in lifecycle order; used by counts and tests.
pub(crate) const ALL_STATES: [DotState; 7] = DotState::ALL;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_state_may_repeat_and_nothing_returns_to_planned() {
        for s in ALL_STATES {
            assert!(!is_legal_transition(s, s), "{s:?} -> {s:?}");
            assert!(!is_legal_transition(s, DotState::Planned), "{s:?} -> planned");
        }
    }

    #[test]
    fn terminal_states_are_terminal() {
        for s in ALL_STATES {
            assert!(!is_legal_transition(DotState::Verified, s));
            assert!(!is_legal_transition(DotState::Skipped, s));
        }
    }

    #[test]
    fn only_uncertain_resolutions_need_a_reason() {
        assert!(needs_reason(DotState::Uncertain, DotState::Executed));
        assert!(needs_reason(DotState::Uncertain, DotState::Skipped));
        assert!(!needs_reason(DotState::Accepted, DotState::Executed));
        assert!(!needs_reason(DotState::Uncertain, DotState::Sent));
    }
}

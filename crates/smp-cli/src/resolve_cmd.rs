//! `smp resolve`: the operator resolves dots a fault left `uncertain` (the needle may or may
//! not have entered), after looking at the sites. Each resolution is journalled with who
//! decided and why, durably, before the session may resume.
//!
//! A resolved dot becomes `executed` (the dot is there) or `skipped` (it is not there and will
//! not be tattooed in this session: the next layer's scan sees the gap and fills it). A dot is
//! never put back to `planned`: a wrong "not there" would tattoo it twice, which a layered
//! treatment cannot undo, while a gap costs nothing the next layer does not repair.

use std::path::PathBuf;

use smp_core::plan::DotState;

use crate::error::{stage, CliError};

/// What the operator saw at the sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resolution {
    /// The dot is in the skin.
    Executed,
    /// The dot is not there; it is left for the next layer.
    Skipped,
}

impl Resolution {
    fn state(self) -> DotState {
        match self {
            Resolution::Executed => DotState::Executed,
            Resolution::Skipped => DotState::Skipped,
        }
    }
}

/// `smp resolve` arguments.
#[derive(Debug, Clone)]
pub struct ResolveArgs {
    pub journal: PathBuf,
    /// The dots to resolve; empty with `all` = every uncertain dot.
    pub dots: Vec<u32>,
    pub all: bool,
    pub to: Resolution,
    pub operator: String,
    pub reason: String,
}

/// Resolves the given uncertain dots; all or none (every dot is checked before any is written).
pub fn resolve(a: &ResolveArgs) -> Result<String, CliError> {
    if a.operator.trim().is_empty() || a.reason.trim().is_empty() {
        return Err(CliError::input(
            "a resolution needs the operator's name and what they saw",
            "give --operator NAME --reason \"what was seen at the sites\"",
        ));
    }
    if a.dots.is_empty() != a.all {
        return Err(CliError::input(
            "say which dots: --dot N[,N...] or --all (every uncertain dot), not both and not neither",
            "list the uncertain dots with `smp journal FILE`",
        ));
    }
    let mut j = crate::inspect::open_journal(&a.journal)?;
    let uncertain = j.dots_in_state(DotState::Uncertain).map_err(stage("journal"))?;
    let chosen: Vec<u32> = if a.all { uncertain.clone() } else { a.dots.clone() };
    for id in &chosen {
        if !uncertain.contains(id) {
            let now = j.dot_state(*id).map_err(|e| {
                CliError::input(format!("dot {id}: {e}"), "list the uncertain dots with `smp journal FILE`")
            })?;
            return Err(CliError::input(
                format!("dot {id} is {}, not uncertain: only an uncertain dot is resolved", now.as_str()),
                "list the uncertain dots with `smp journal FILE`",
            ));
        }
    }
    let reason = format!("operator {}: {}", a.operator.trim(), a.reason.trim());
    let at_s = crate::run_cmd::wall_clock_s();
    j.resolve_uncertain_many(&chosen, a.to.state(), &reason, at_s).map_err(stage("journal"))?;
    let left = j.dots_in_state(DotState::Uncertain).map_err(stage("journal"))?.len();
    j.checkpoint_and_close().map_err(stage("journal"))?;
    Ok(format!(
        "{} dot(s) resolved as {} in {} ({reason}); {left} still uncertain{}\n",
        chosen.len(),
        a.to.state().as_str(),
        a.journal.display(),
        if left == 0 { "; the session may resume with `smp run --resume`" } else { "" }
    ))
}

//! What a session did, as its report says it: counts from the journal (the record), and what
//! the runs, the tracker and the camera checks reported on the way. Only what the host can
//! know: placement against the world's truth is the simulator's scoring, not this.

use serde::Serialize;
use smp_core::plan::DotState;
use smp_motion::{ExecutionReport, MotionError};
use smp_store::Journal;

use crate::check::CheckReport;
use crate::core::{Outcome, RunEnd};
use crate::engine::{run_end, SessionInputs};
use crate::register::TrackingReport;

/// One verified program the session streamed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProgramSummary {
    pub path: String,
    pub lines: usize,
    pub dots: usize,
    /// The verifier's deepest plunge below the mapped skin, mm.
    pub max_depth_mm: f64,
    /// SHA-256 of the text streamed (the journal keeps the text under the same hash).
    pub sha256: String,
}

/// See the module docs. Keys are part of `smp run --json`'s contract.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionReport {
    pub session: u32,
    /// The machine, as it describes itself.
    pub machine: String,
    pub protocol: String,
    pub dots_planned: usize,
    /// Dots streamed and confirmed by this session's runs.
    pub dots_streamed: usize,
    /// Dots the journal holds as executed at the end (earlier runs included).
    pub dots_executed: usize,
    pub dots_uncertain: usize,
    /// Dots resolved as not in the skin (camera or operator): left for the next layer.
    pub dots_skipped: usize,
    pub dots_still_planned: usize,
    /// Lines written to the controller, all runs.
    pub lines_sent: usize,
    /// How the session ended: `completed`, `incomplete`, `aborted`, `faulted: ...`,
    /// `held: ...`.
    pub outcome: String,
    /// Stopped by the operator (abort or emergency stop).
    pub aborted: bool,
    /// What stopped or disturbed a run.
    pub faults: Vec<String>,
    /// What the operator should know that did not disturb the run.
    pub warnings: Vec<String>,
    /// The session's log: drifts, re-registrations, camera checks, fiducial holds.
    pub notes: Vec<String>,
    /// What happened to the cartridge around pauses.
    pub cartridge_events: Vec<String>,
    /// Machine time of the session (the machine's clock), s.
    pub arm_time_s: f64,
    pub journal: String,
    /// Programs streamed, in order (the first, then one per re-registration).
    pub programs: Vec<ProgramSummary>,
    /// Operator commands applied.
    pub operator_commands: usize,
    /// Longest time from an operator's pause to its feed hold on the wire, s.
    pub feed_hold_latency_max_s: Option<f64>,
    /// Head tracking (band cameras), when the rig has them.
    pub tracking: Option<TrackingReport>,
    /// Camera checks of uncertain dots.
    pub camera_checks: Vec<CheckReport>,
    #[serde(skip)]
    pub(crate) fiducial_loss_holds: u32,
    #[serde(skip)]
    pub(crate) reregistered_at_s: Vec<f64>,
}

impl SessionReport {
    pub(crate) fn new(inputs: &SessionInputs, machine: String) -> SessionReport {
        SessionReport {
            session: inputs.plan.session,
            machine,
            protocol: inputs.execute.protocol.as_str().to_string(),
            dots_planned: inputs.plan.dots.len(),
            dots_streamed: 0,
            dots_executed: 0,
            dots_uncertain: 0,
            dots_skipped: 0,
            dots_still_planned: 0,
            lines_sent: 0,
            outcome: String::new(),
            aborted: false,
            faults: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
            cartridge_events: Vec::new(),
            arm_time_s: 0.0,
            journal: inputs.journal.path().display().to_string(),
            programs: Vec::new(),
            operator_commands: 0,
            feed_hold_latency_max_s: None,
            tracking: None,
            camera_checks: Vec::new(),
            fiducial_loss_holds: 0,
            reregistered_at_s: Vec::new(),
        }
    }

    /// Takes in one executor run's result; returns how it ended for the core.
    pub(crate) fn absorb_run(&mut self, result: Result<ExecutionReport, MotionError>, _dots: usize) -> RunEnd {
        let end = run_end(&result);
        let rep = match &result {
            Ok(r) => Some(r),
            Err(e) => {
                self.faults.push(e.to_string());
                e.fault().map(|f| &f.report)
            }
        };
        if let Some(r) = rep {
            self.dots_streamed += r.dots_executed;
            self.lines_sent += r.lines_sent;
            self.faults.extend(r.errors.iter().cloned());
            for w in &r.warnings {
                if !self.warnings.contains(w) {
                    self.warnings.push(w.clone());
                }
            }
            self.cartridge_events.extend(r.cartridge_events.iter().map(|e| format!("{:.2} s: {}", e.at_s, e.message)));
            if r.feed_hold_latency_max_s > 0.0 {
                let worst = self.feed_hold_latency_max_s.unwrap_or(0.0).max(r.feed_hold_latency_max_s);
                self.feed_hold_latency_max_s = Some(worst);
            }
        }
        end
    }

    pub(crate) fn absorb_tracking(&mut self, t: &TrackingReport) {
        let mine = self.tracking.get_or_insert_with(TrackingReport::default);
        mine.frames += t.frames;
        mine.frames_missing += t.frames_missing;
    }

    pub(crate) fn finish(&mut self, outcome: &Outcome) {
        if let Some(t) = self.tracking.as_mut() {
            t.fiducial_loss_holds = self.fiducial_loss_holds;
            t.reregistered_at_s = self.reregistered_at_s.clone();
        }
        self.aborted = matches!(outcome, Outcome::Aborted { .. });
        self.outcome = match outcome {
            Outcome::Completed => "completed".into(),
            Outcome::Aborted { emergency: true } => "emergency stop".into(),
            Outcome::Aborted { emergency: false } => "aborted".into(),
            Outcome::Faulted(f) => format!("faulted: {f}"),
            Outcome::HeldForOperator(why) => format!("held: {why}"),
        };
        if let Outcome::HeldForOperator(why) = outcome {
            self.faults.push(why.clone());
        }
    }

    /// Counts from the journal, the record of the session. A session whose last run completed
    /// with dots left (uncertain, skipped) is `incomplete`.
    pub(crate) fn read_journal(&mut self, journal: &Journal) -> Result<(), smp_store::StoreError> {
        let counts = journal.state_counts()?;
        let count = |s| counts.get(&s).copied().unwrap_or(0);
        self.dots_executed = count(DotState::Executed) + count(DotState::Verified);
        self.dots_uncertain = count(DotState::Uncertain) + count(DotState::Sent) + count(DotState::Accepted);
        self.dots_skipped = count(DotState::Skipped);
        self.dots_still_planned = count(DotState::Planned);
        if self.outcome == "completed" && self.dots_executed != self.dots_planned {
            self.outcome = "incomplete".into();
        }
        Ok(())
    }

    /// One readable summary for the terminal.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "session {}: {} of {} dots executed ({} by this run), {} uncertain, {} skipped, {} still planned; {}; arm \
             time {:.1} s",
            self.session,
            self.dots_executed,
            self.dots_planned,
            self.dots_streamed,
            self.dots_uncertain,
            self.dots_skipped,
            self.dots_still_planned,
            self.outcome,
            self.arm_time_s
        );
        let _ = writeln!(s, "  journal {}", self.journal);
        for f in &self.faults {
            let _ = writeln!(s, "  fault: {f}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        for c in &self.cartridge_events {
            let _ = writeln!(s, "  cartridge: {c}");
        }
        if self.dots_uncertain > 0 {
            s.push_str(
                "  uncertain dots are never sent again automatically: a resume looks at them with the flange camera \
                 first where there is one; otherwise look at the sites and `smp resolve` them, then resume\n",
            );
        }
        s
    }
}

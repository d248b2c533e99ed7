//! The live driver of [`ExecutorCore`]: moves bytes between the port and the core, does the
//! journal writes it asks for, relays observer updates, and sleeps until the next input,
//! operator command or deadline on a current-thread tokio runtime. It decides nothing.
//!
//! Operator commands never pass through here first: the gate (`wire.rs`) writes their bytes
//! from the operator's thread and forwards them; the driver hands them to the core at its next
//! turn, before any received bytes of that turn.

use std::time::{Duration, Instant};

use smp_store::{Journal, RunId};
use tokio::sync::mpsc;

use crate::control::ExecutorUpdate;
use crate::core::{Action, ExecutorCore, GateNeed, JournalOp, LogLine, Step};
use crate::error::MotionError;
use crate::executor::ExecutionReport;
use crate::link::{Input, Link};
use crate::wire::Wire;

/// What the driver measured, added to the core's report.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    commits: u64,
    commit_total_s: f64,
    commit_max_s: f64,
}

/// Runs the core to its end over `wire` (writes) and `rx` (what the reader thread read).
pub(crate) async fn drive<L: Link>(
    mut core: ExecutorCore,
    wire: &Wire<L>,
    mut rx: mpsc::Receiver<Input>,
    journal: &mut Journal,
    observer: &mut dyn FnMut(ExecutorUpdate),
    t0: Instant,
) -> (Result<ExecutionReport, MotionError>, Figures) {
    let mut run: Option<RunId> = None;
    let mut figures = Figures::default();
    let mut rx_open = true;
    loop {
        core.set_operator_stop(wire.operator_stop());
        for f in wire.take_forwarded() {
            core.handle_forwarded(f);
        }
        match core.step(t0.elapsed()) {
            Step::Act(action) => match action {
                Action::Write(bytes) => {
                    if let Err(e) = wire.write(&bytes) {
                        core.handle_port_failed(e.to_string());
                    }
                }
                Action::GuardedWrite { bytes, need } => {
                    let r = match need {
                        GateNeed::Paused => wire.write_if_paused(&bytes),
                        GateNeed::Running => wire.write_if_running(&bytes),
                    };
                    core.handle_guarded_write(
                        r.map(|r| r.map(|at| at.saturating_duration_since(t0)).map_err(|e| e.to_string())),
                    );
                }
                Action::Journal(op) => {
                    let r = journal_op(journal, &mut run, op, &mut figures);
                    // What arrived during the commit is read before the core decides what to
                    // write next (a plunge waiting on this commit is held back by a fault).
                    take_ready_input(&mut core, &mut rx, &mut rx_open, wire);
                    core.handle_journal(r);
                }
                Action::Log(line) => {
                    if let Some(run) = run {
                        match line {
                            LogLine::Sent { line_no, text, dot, at_s } => {
                                journal.log_command_sent(run, line_no, &text, dot, at_s)
                            }
                            LogLine::Answer { line_no, result, at_s } => {
                                journal.log_command_answer(run, line_no, result, at_s)
                            }
                        }
                    }
                }
                Action::StatusPeriod(p) => wire.set_status_period(p),
                Action::GateFaultStopping => wire.set_fault_stopping(),
                Action::CloseGate => {
                    for f in wire.close() {
                        core.handle_forwarded(f);
                    }
                    core.handle_gate_closed();
                }
                Action::Update(u) => observer(u),
            },
            Step::Wait(deadline) => wait(&mut core, &mut rx, &mut rx_open, wire, deadline.map(|d| t0 + d)).await,
            Step::Done(result) => return (*result, figures),
        }
    }
}

fn journal_op(
    journal: &mut Journal,
    run: &mut Option<RunId>,
    op: JournalOp,
    figures: &mut Figures,
) -> Result<(), smp_store::StoreError> {
    match op {
        JournalOp::BeginRun => {
            *run = Some(journal.begin_run()?);
            Ok(())
        }
        JournalOp::SetStates { changes, at_s } => {
            let t = Instant::now();
            let r = journal.set_dot_states(&changes, at_s);
            let dt = t.elapsed().as_secs_f64();
            figures.commits += 1;
            figures.commit_total_s += dt;
            figures.commit_max_s = figures.commit_max_s.max(dt);
            r
        }
        JournalOp::EndRun { outcome } => match *run {
            Some(id) => journal.end_run(id, &outcome),
            None => Ok(()),
        },
    }
}

/// Hands one reader message to the core.
fn feed<L: Link>(core: &mut ExecutorCore, m: Option<Input>, rx_open: &mut bool, wire: &Wire<L>) {
    match m {
        Some(Input::Bytes(b)) => {
            wire.log_received(&b);
            core.handle_received(&b);
        }
        Some(Input::Failed(e)) => {
            *rx_open = false;
            core.handle_port_failed(e.to_string());
        }
        None => {
            *rx_open = false;
            core.handle_port_failed("the port reader stopped");
        }
    }
}

/// Takes whatever the reader already sent, without waiting.
fn take_ready_input<L: Link>(
    core: &mut ExecutorCore,
    rx: &mut mpsc::Receiver<Input>,
    rx_open: &mut bool,
    wire: &Wire<L>,
) {
    while *rx_open {
        match rx.try_recv() {
            Ok(m) => feed(core, Some(m), rx_open, wire),
            Err(mpsc::error::TryRecvError::Empty) => return,
            Err(mpsc::error::TryRecvError::Disconnected) => feed(core, None, rx_open, wire),
        }
    }
}

/// Waits for input, a forwarded operator command or the deadline (commands first).
async fn wait<L: Link>(
    core: &mut ExecutorCore,
    rx: &mut mpsc::Receiver<Input>,
    rx_open: &mut bool,
    wire: &Wire<L>,
    deadline: Option<Instant>,
) {
    let far = Instant::now() + Duration::from_secs(3600);
    let d = deadline.unwrap_or(far);
    if !*rx_open {
        tokio::select! {
            biased;
            _ = wire.forwarded_ready() => {}
            _ = tokio::time::sleep_until(d.into()) => {}
        }
        return;
    }
    tokio::select! {
        biased;
        _ = wire.forwarded_ready() => {}
        m = rx.recv() => {
            feed(core, m, rx_open, wire);
            take_ready_input(core, rx, rx_open, wire);
        }
        _ = tokio::time::sleep_until(d.into()) => {}
    }
}

/// Adds what the driver and the wire measured to the run's report, however the run ended.
pub(crate) fn add_figures<L: Link>(
    result: &mut Result<ExecutionReport, MotionError>,
    figures: &Figures,
    wire: &Wire<L>,
    t0: Instant,
    cpu_s: f64,
) {
    let report = match result {
        Ok(r) => r,
        Err(MotionError::Fault(f)) => &mut f.report,
        Err(_) => return,
    };
    report.started = Some(t0);
    report.wall_time_s = t0.elapsed().as_secs_f64();
    report.pump_cpu_s = cpu_s;
    report.transcript.extend(wire.take_transcript());
    report.bytes_written = wire.bytes_written();
    let status = wire.status_figures();
    report.status_queries_streaming = status.queries;
    report.status_query_gap_max_s = status.max_gap_s;
    report.journal_commits = figures.commits;
    report.journal_commit_total_s = figures.commit_total_s;
    report.journal_commit_max_s = figures.commit_max_s;
}

//! The session bus (zenoh) as a session's operator and observer: the bus's admitted commands
//! go to the session, the session's state and progress go out as telemetry.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use smp_bus::{AckResult, BusConfig, ControlEvent, ControllerBus, Telemetry};
use smp_core::operator::OperatorCommand;
use smp_session::{Observer, Operator, SessionEvent, SessionState};

use crate::error::CliError;

/// What the operator half and the observer half share.
struct Shared {
    bus: Arc<ControllerBus>,
    state: Mutex<smp_bus::SessionState>,
    done: AtomicU32,
    total: u32,
    t0: Instant,
}

impl Shared {
    fn state(&self) -> smp_bus::SessionState {
        self.state.lock().map(|s| *s).unwrap_or(smp_bus::SessionState::Faulted)
    }

    fn publish(&self, last_dot: Option<u32>, fault: Option<String>) {
        self.bus.publish_telemetry(&Telemetry {
            state: self.state(),
            dots_done: self.done.load(Ordering::Relaxed),
            dots_total: self.total,
            last_dot,
            machine: None,
            fault,
            t_s: self.t0.elapsed().as_secs_f64(),
            dropped_before: 0,
        });
    }
}

/// The bus's state for the session's.
fn bus_state(s: SessionState) -> smp_bus::SessionState {
    use smp_bus::SessionState as B;
    match s {
        SessionState::Connecting => B::Connecting,
        SessionState::Running => B::Running,
        SessionState::Paused => B::Paused,
        SessionState::Reregistering => B::Registering,
        SessionState::Checking => B::Resuming,
        SessionState::Faulted => B::Faulted,
        SessionState::Aborted => B::Aborted,
        SessionState::Done => B::Done,
    }
}

/// The operator half: commands the bus admitted against the session's state.
pub struct BusOperator {
    rx: mpsc::Receiver<OperatorCommand>,
    _forwarder: std::thread::JoinHandle<()>,
}

impl Operator for BusOperator {
    fn next_command(&mut self, timeout: Duration) -> Option<OperatorCommand> {
        self.rx.recv_timeout(timeout).ok()
    }
}

/// The observer half: telemetry for every state change and dot.
pub struct BusObserver {
    shared: Arc<Shared>,
}

impl Observer for BusObserver {
    fn on_event(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::State(s) => {
                if let Ok(mut g) = self.shared.state.lock() {
                    *g = bus_state(*s);
                }
                self.shared.publish(None, None);
            }
            SessionEvent::Progress { done, .. } => {
                self.shared.done.store(*done as u32, Ordering::Relaxed);
            }
            SessionEvent::Dot { id, .. } => self.shared.publish(Some(*id), None),
            SessionEvent::Note(n) if n.starts_with("head drift") => self.shared.publish(None, Some(n.clone())),
            _ => {}
        }
    }

    fn finish(&mut self) {
        self.shared.publish(None, None);
    }
}

/// Opens the bus on `endpoint` for session `id` of rig `rig`; prints how an operator reaches
/// it. Returns the operator, the observer and the session id.
pub fn open(endpoint: &str, id: &str, rig: &str, dots_total: usize) -> Result<(BusOperator, BusObserver), CliError> {
    let cfg = BusConfig { rig: rig.to_string(), ..BusConfig::listening(endpoint.to_string()) };
    let mut bus = ControllerBus::open(&cfg, id).map_err(|e| {
        CliError::input(format!("bus on {endpoint}: {e}"), "give a free local endpoint, e.g. --bus tcp/127.0.0.1:7447")
    })?;
    eprintln!(
        "operator control: smp operator pause|resume|abort|estop --session-id {id} --connect {endpoint} --rig {rig}"
    );
    let mut events = bus.commands().map_err(|e| CliError::failure(format!("bus: {e}")))?;
    let shared = Arc::new(Shared {
        bus: Arc::new(bus),
        state: Mutex::new(smp_bus::SessionState::Connecting),
        done: AtomicU32::new(0),
        total: dots_total as u32,
        t0: Instant::now(),
    });
    let (tx, rx) = mpsc::channel();
    let weak = Arc::downgrade(&shared);
    // Admits each command against the session's state, acknowledges it, and passes the
    // admitted ones on. Ends when the bus's event channel closes or the session is gone.
    let forwarder = std::thread::spawn(move || {
        while let Some(ev) = events.blocking_recv() {
            let ControlEvent::Command(c) = ev else { continue };
            let Some(shared) = weak.upgrade() else { break };
            if let Ok(AckResult::Accepted) = shared.bus.decide(&c, shared.state()) {
                if tx.send(c.command).is_err() {
                    break;
                }
            }
        }
    });
    Ok((BusOperator { rx, _forwarder: forwarder }, BusObserver { shared }))
}

/// The bus's session id for a patient's session: `[A-Za-z0-9._-]` only.
pub fn session_id(patient: &str, session: u32) -> String {
    let clean: String =
        patient.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    format!("{clean}-s{session}")
}

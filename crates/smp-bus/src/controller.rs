//! The chair side: publishes telemetry, receives operator commands, acknowledges them.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use zenoh::qos::{CongestionControl, Priority};

use crate::config::{BusConfig, SessionKeys};
use crate::error::{zenoh_err, BusError, DecodeError};
use crate::policy::{admit, SeqFilter, SeqVerdict};
use crate::wire::{
    decode, encode, AckMessage, AckResult, CommandId, ControlMessage, OperatorCommand, SessionState, Telemetry,
    TelemetryMessage, WIRE_VERSION,
};
use crate::worker::{declared_or_close, open_session, BusStats, Counters, SharedCounters, Worker};

/// A command delivered to the executor: new (not a duplicate or replay) and addressed to the
/// running session. The executor must answer it with [`ControllerBus::ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedCommand {
    /// Operator and sequence number; pass it back to [`ControllerBus::ack`].
    pub id: CommandId,
    /// What the operator asked for.
    pub command: OperatorCommand,
}

/// What the controller side reports to the executor, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEvent {
    /// A command to act on and acknowledge.
    Command(ReceivedCommand),
    /// A payload on a control key that did not decode; nothing was delivered or acknowledged.
    Malformed(DecodeError),
    /// A duplicate or replayed command that was not delivered again (its cached
    /// acknowledgement, if any, was re-sent).
    Ignored {
        /// Operator and sequence number.
        id: CommandId,
        /// The command it carried.
        command: OperatorCommand,
        /// Duplicate or replay.
        verdict: SeqVerdict,
    },
    /// A command the bus refused by itself (stale session id, executor's queue full); the
    /// refusal was acknowledged to the operator.
    Refused {
        /// Operator and sequence number.
        id: CommandId,
        /// The command it carried.
        command: OperatorCommand,
        /// The reason sent to the operator.
        reason: String,
    },
}

/// Controller (chair) side of the bus for one session.
///
/// Every method is non-blocking except [`ControllerBus::open`] (waits for zenoh to open) and
/// [`ControllerBus::close`]; they may be called from sync code or from inside any tokio
/// runtime, including the executor's current-thread one.
#[derive(Debug)]
pub struct ControllerBus {
    session_id: String,
    keys: SessionKeys,
    telemetry_tx: mpsc::Sender<Telemetry>,
    ack_tx: mpsc::UnboundedSender<(CommandId, AckResult)>,
    commands: Option<mpsc::Receiver<ControlEvent>>,
    counters: SharedCounters,
    worker: Worker,
}

impl ControllerBus {
    /// Open a zenoh session for `session_id` and start listening for commands on every control
    /// key of `cfg.rig` (commands for another session are refused, not left to time out).
    pub fn open(cfg: &BusConfig, session_id: &str) -> Result<Self, BusError> {
        let keys = SessionKeys::new(&cfg.rig, session_id)?;
        let zcfg = cfg.to_zenoh()?;
        let (telemetry_tx, telemetry_rx) = mpsc::channel(cfg.telemetry_queue);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::channel(cfg.command_queue);
        let counters: SharedCounters = Arc::new(Counters::default());
        let ctx = Ctx {
            rig: cfg.rig.clone(),
            session_id: session_id.to_owned(),
            keys: keys.clone(),
            event_tx,
            counters: counters.clone(),
            seqs: SeqFilter::default(),
            acks: VecDeque::new(),
        };
        let worker = Worker::start("smp-bus-controller", move |ready, shutdown| {
            run(zcfg, ctx, telemetry_rx, ack_rx, ready, shutdown)
        })?;
        Ok(Self {
            session_id: session_id.to_owned(),
            keys,
            telemetry_tx,
            ack_tx,
            commands: Some(event_rx),
            counters,
            worker,
        })
    }

    /// The session this bus serves.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The key expressions in use.
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// Queue a telemetry sample for publication. Never blocks: when the queue is full (zenoh
    /// slow or disconnected) the sample is dropped and counted, and `false` is returned.
    pub fn publish_telemetry(&self, telemetry: &Telemetry) -> bool {
        match self.telemetry_tx.try_send(telemetry.clone()) {
            Ok(()) => true,
            Err(_) => {
                Counters::bump(&self.counters.telemetry_dropped);
                false
            }
        }
    }

    /// The stream of control events. Returns the receiver once; later calls fail. The tokio
    /// receiver works from async code (`recv().await`) and from sync code (`try_recv()` in the
    /// executor's loop; `blocking_recv()` outside any runtime).
    pub fn commands(&mut self) -> Result<mpsc::Receiver<ControlEvent>, BusError> {
        self.commands.take().ok_or(BusError::ReceiverTaken { what: "commands" })
    }

    /// Acknowledge a delivered command. Never blocks. The result is cached so that an
    /// operator's retry of the same seq gets the same answer.
    pub fn ack(&self, id: &CommandId, result: AckResult) -> Result<(), BusError> {
        self.ack_tx
            .send((id.clone(), result))
            .map_err(|_| BusError::Worker { what: "has stopped; acknowledgement not sent".to_owned() })
    }

    /// Apply the safety rules ([`admit`]) to `command` in the executor's current `state`,
    /// acknowledge accordingly, and return the decision so the executor acts only on
    /// `Accepted`.
    pub fn decide(&self, command: &ReceivedCommand, state: SessionState) -> Result<AckResult, BusError> {
        let result = admit(command.command, state);
        self.ack(&command.id, result.clone())?;
        Ok(result)
    }

    /// Counters so far.
    pub fn stats(&self) -> BusStats {
        self.counters.snapshot()
    }

    /// Close the zenoh session and wait for the worker thread. Blocking; dropping the bus
    /// closes it too, without waiting.
    pub fn close(self) {
        let Self { worker, telemetry_tx, ack_tx, .. } = self;
        drop((telemetry_tx, ack_tx));
        worker.close();
    }
}

/// Worker-side state.
struct Ctx {
    rig: String,
    session_id: String,
    keys: SessionKeys,
    event_tx: mpsc::Sender<ControlEvent>,
    counters: SharedCounters,
    seqs: SeqFilter,
    /// Recent acknowledgements, newest last, for answering retries.
    acks: VecDeque<(CommandId, AckResult)>,
}

const ACK_CACHE: usize = 256;

async fn run(
    zcfg: zenoh::Config,
    mut ctx: Ctx,
    mut telemetry_rx: mpsc::Receiver<Telemetry>,
    mut ack_rx: mpsc::UnboundedReceiver<(CommandId, AckResult)>,
    ready: std_mpsc::SyncSender<Result<(), BusError>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let Some(session) = open_session(zcfg, &ready).await else { return };
    let declared = async {
        let telemetry_pub = session
            .declare_publisher(ctx.keys.telemetry.clone())
            .congestion_control(CongestionControl::Drop)
            .priority(Priority::DataLow)
            .await
            .map_err(|e| zenoh_err("declare telemetry publisher", e))?;
        let control_sub = session
            .declare_subscriber(SessionKeys::all_control(&ctx.rig))
            .await
            .map_err(|e| zenoh_err("declare control subscriber", e))?;
        Ok::<_, BusError>((telemetry_pub, control_sub))
    }
    .await;
    let Some((telemetry_pub, control_sub)) = declared_or_close(&session, &ready, declared).await else { return };

    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            sample = control_sub.recv_async() => match sample {
                Ok(sample) => {
                    let key = sample.key_expr().as_str().to_owned();
                    let payload = sample.payload().to_bytes();
                    ctx.on_control(&session, &key, &payload).await;
                }
                Err(_) => break,
            },
            Some((id, result)) = ack_rx.recv() => {
                ctx.remember(&id, result.clone());
                let key = ctx.keys.ack.clone();
                let session_id = ctx.session_id.clone();
                put_ack(&session, &key, &session_id, &id, result).await;
            },
            Some(t) = telemetry_rx.recv() => ctx.publish(&telemetry_pub, t).await,
        }
    }
    // Flush what the executor handed over before closing: its last acknowledgements (an
    // `abort` acknowledged just before the executor drops the bus) and its last telemetry
    // (the final state) must still go out.
    while let Ok((id, result)) = ack_rx.try_recv() {
        ctx.remember(&id, result.clone());
        put_ack(&session, &ctx.keys.ack, &ctx.session_id, &id, result).await;
    }
    while let Ok(t) = telemetry_rx.try_recv() {
        ctx.publish(&telemetry_pub, t).await;
    }
    drop(control_sub);
    drop(telemetry_pub);
    let _ = session.close().await;
}

async fn put_ack(session: &zenoh::Session, key: &str, session_id: &str, id: &CommandId, result: AckResult) {
    let msg = AckMessage {
        v: WIRE_VERSION,
        session_id: session_id.to_owned(),
        operator: id.operator.clone(),
        seq: id.seq,
        result,
    };
    if let Ok(bytes) = encode(&msg) {
        // A failed put is recovered by the operator's retry, which re-sends the cached ack.
        let _ = session
            .put(key, bytes)
            .congestion_control(CongestionControl::Block)
            .priority(Priority::InteractiveHigh)
            .express(true)
            .await;
    }
}

impl Ctx {
    async fn publish(&self, publisher: &zenoh::pubsub::Publisher<'_>, mut t: Telemetry) {
        t.dropped_before = self.counters.telemetry_dropped.load(Ordering::Relaxed);
        let msg = TelemetryMessage { v: WIRE_VERSION, session_id: self.session_id.clone(), telemetry: t };
        let sent = match encode(&msg) {
            Ok(bytes) => publisher.put(bytes).await.is_ok(),
            Err(_) => false,
        };
        Counters::bump(if sent { &self.counters.telemetry_published } else { &self.counters.telemetry_dropped });
    }

    /// Cache an acknowledgement so a retry of the same (operator, seq) gets the same answer.
    fn remember(&mut self, id: &CommandId, result: AckResult) {
        if self.acks.len() >= ACK_CACHE {
            self.acks.pop_front();
        }
        self.acks.push_back((id.clone(), result));
    }

    fn emit(&self, event: ControlEvent) -> bool {
        match self.event_tx.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                Counters::bump(&self.counters.events_dropped);
                false
            }
        }
    }

    async fn on_control(&mut self, session: &zenoh::Session, key: &str, payload: &[u8]) {
        let msg: ControlMessage = match decode(key, "control", payload) {
            Ok(m) => m,
            Err(e) => {
                Counters::bump(&self.counters.malformed);
                self.emit(ControlEvent::Malformed(e));
                return;
            }
        };
        let id = msg.id();
        let key_session = SessionKeys::session_of_control_key(&self.rig, key).unwrap_or(msg.session_id.as_str());
        if key_session != self.session_id || msg.session_id != self.session_id {
            let reason = format!(
                "session {} is not running on rig {}; the running session is {}",
                msg.session_id, self.rig, self.session_id
            );
            Counters::bump(&self.counters.refused_by_bus);
            let ack_key = SessionKeys::ack_for(&self.rig, key_session);
            put_ack(session, &ack_key, &msg.session_id, &id, AckResult::refused(reason.clone())).await;
            self.emit(ControlEvent::Refused { id, command: msg.command, reason });
            return;
        }
        match self.seqs.check(&msg.operator, msg.seq, msg.command) {
            SeqVerdict::New => {
                let delivered =
                    self.emit(ControlEvent::Command(ReceivedCommand { id: id.clone(), command: msg.command }));
                if !delivered {
                    // The executor is not draining its events: say so rather than leave the
                    // operator waiting (an emergency stop must then be done at the machine).
                    let reason =
                        "the controller's command queue is full; the executor is not responding — use the physical stop"
                            .to_owned();
                    Counters::bump(&self.counters.refused_by_bus);
                    self.remember(&id, AckResult::refused(reason.clone()));
                    let ack_key = self.keys.ack.clone();
                    let session_id = self.session_id.clone();
                    put_ack(session, &ack_key, &session_id, &id, AckResult::refused(reason)).await;
                }
            }
            verdict @ (SeqVerdict::Duplicate | SeqVerdict::Replayed) => {
                Counters::bump(&self.counters.duplicates);
                if verdict == SeqVerdict::Duplicate {
                    if let Some((_, cached)) = self.acks.iter().rev().find(|(k, _)| *k == id) {
                        let (ack_key, session_id, cached) =
                            (self.keys.ack.clone(), self.session_id.clone(), cached.clone());
                        put_ack(session, &ack_key, &session_id, &id, cached).await;
                    }
                }
                self.emit(ControlEvent::Ignored { id, command: msg.command, verdict });
            }
        }
    }
}

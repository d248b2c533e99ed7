//! The operator side: sends commands and waits for their acknowledgement, receives telemetry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use zenoh::qos::{CongestionControl, Priority};

use crate::config::{check_chunk, BusConfig, SessionKeys};
use crate::error::{zenoh_err, BusError, DecodeError};
use crate::wire::{
    decode, encode, AckMessage, AckResult, ControlMessage, OperatorCommand, Telemetry, TelemetryMessage, WIRE_VERSION,
};
use crate::worker::{declared_or_close, open_session, BusStats, Counters, SharedCounters, Worker};

/// What the operator side receives on the telemetry key.
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryEvent {
    /// A decoded sample.
    Sample(Telemetry),
    /// A payload that did not decode.
    Malformed(DecodeError),
}

/// How a caller waits for the answer to one command.
enum Reply {
    Sync(std_mpsc::SyncSender<Result<AckResult, BusError>>),
    Async(oneshot::Sender<Result<AckResult, BusError>>),
}

impl Reply {
    fn send(self, result: Result<AckResult, BusError>) {
        match self {
            Self::Sync(tx) => {
                let _ = tx.try_send(result);
            }
            Self::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

struct SendRequest {
    msg: ControlMessage,
    reply: Reply,
}

/// Operator-station side of the bus for one session.
///
/// Sequence numbers start at the wall clock in microseconds since the Unix epoch and increase
/// by one per command, so that a one-shot CLI invocation (`smp operator pause`) always sends a
/// higher seq than the previous invocation by the same operator name, without any state file.
#[derive(Debug)]
pub struct OperatorBus {
    session_id: String,
    operator: String,
    keys: SessionKeys,
    next_seq: AtomicU64,
    ack_timeout: Duration,
    req_tx: mpsc::UnboundedSender<SendRequest>,
    telemetry: Option<mpsc::Receiver<TelemetryEvent>>,
    counters: SharedCounters,
    worker: Worker,
}

impl std::fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRequest").field("msg", &self.msg).finish_non_exhaustive()
    }
}

const TELEMETRY_EVENTS: usize = 256;

impl OperatorBus {
    /// Open a zenoh session as `operator` for `session_id` and subscribe to its telemetry and
    /// acknowledgements.
    pub fn open(cfg: &BusConfig, session_id: &str, operator: &str) -> Result<Self, BusError> {
        let keys = SessionKeys::new(&cfg.rig, session_id)?;
        check_chunk("operator", operator)?;
        let zcfg = cfg.to_zenoh()?;
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let (telemetry_tx, telemetry_rx) = mpsc::channel(TELEMETRY_EVENTS);
        let counters: SharedCounters = Arc::new(Counters::default());
        let ctx = Ctx {
            keys: keys.clone(),
            operator: operator.to_owned(),
            session_id: session_id.to_owned(),
            ack_timeout: cfg.ack_timeout(),
            resend_interval: cfg.resend_interval(),
            telemetry_tx,
            counters: counters.clone(),
            pending: BTreeMap::new(),
        };
        let worker = Worker::start("smp-bus-operator", move |ready, shutdown| run(zcfg, ctx, req_rx, ready, shutdown))?;
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        let first_seq = u64::try_from(now_us).unwrap_or(u64::MAX / 2).max(1);
        Ok(Self {
            session_id: session_id.to_owned(),
            operator: operator.to_owned(),
            keys,
            next_seq: AtomicU64::new(first_seq),
            ack_timeout: cfg.ack_timeout(),
            req_tx,
            telemetry: Some(telemetry_rx),
            counters,
            worker,
        })
    }

    /// The session commands are addressed to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The key expressions in use.
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    fn request(&self, command: OperatorCommand) -> ControlMessage {
        ControlMessage {
            v: WIRE_VERSION,
            session_id: self.session_id.clone(),
            operator: self.operator.clone(),
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            command,
        }
    }

    fn worker_gone() -> BusError {
        BusError::Worker { what: "has stopped; command not sent".to_owned() }
    }

    /// Send `command` and block until the controller acknowledges it or the configured ack
    /// timeout passes (the command is re-sent with the same seq meanwhile). For sync callers
    /// (the CLI); from async code use [`OperatorBus::send_async`].
    pub fn send(&self, command: OperatorCommand) -> Result<AckResult, BusError> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.req_tx
            .send(SendRequest { msg: self.request(command), reply: Reply::Sync(tx) })
            .map_err(|_| Self::worker_gone())?;
        // The worker enforces the timeout; the margin only guards against a dead worker.
        match rx.recv_timeout(self.ack_timeout + Duration::from_secs(2)) {
            Ok(result) => result,
            Err(_) => Err(Self::worker_gone()),
        }
    }

    /// Async form of [`OperatorBus::send`]; works on any tokio runtime.
    pub async fn send_async(&self, command: OperatorCommand) -> Result<AckResult, BusError> {
        let (tx, rx) = oneshot::channel();
        self.req_tx
            .send(SendRequest { msg: self.request(command), reply: Reply::Async(tx) })
            .map_err(|_| Self::worker_gone())?;
        rx.await.unwrap_or_else(|_| Err(Self::worker_gone()))
    }

    /// The telemetry stream. Returns the receiver once; later calls fail. When it is not
    /// drained, new samples are dropped and counted.
    pub fn telemetry(&mut self) -> Result<mpsc::Receiver<TelemetryEvent>, BusError> {
        self.telemetry.take().ok_or(BusError::ReceiverTaken { what: "telemetry" })
    }

    /// Counters so far.
    pub fn stats(&self) -> BusStats {
        self.counters.snapshot()
    }

    /// Close the zenoh session and wait for the worker thread (blocking).
    pub fn close(self) {
        let Self { worker, req_tx, .. } = self;
        drop(req_tx);
        worker.close();
    }
}

struct Pending {
    msg: ControlMessage,
    reply: Reply,
    deadline: Instant,
    next_resend: Instant,
}

struct Ctx {
    keys: SessionKeys,
    operator: String,
    session_id: String,
    ack_timeout: Duration,
    resend_interval: Duration,
    telemetry_tx: mpsc::Sender<TelemetryEvent>,
    counters: SharedCounters,
    pending: BTreeMap<u64, Pending>,
}

async fn run(
    zcfg: zenoh::Config,
    mut ctx: Ctx,
    mut req_rx: mpsc::UnboundedReceiver<SendRequest>,
    ready: std_mpsc::SyncSender<Result<(), BusError>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let Some(session) = open_session(zcfg, &ready).await else { return };
    let declared = async {
        let ack_sub = session
            .declare_subscriber(ctx.keys.ack.clone())
            .await
            .map_err(|e| zenoh_err("declare ack subscriber", e))?;
        let telemetry_sub = session
            .declare_subscriber(ctx.keys.telemetry.clone())
            .await
            .map_err(|e| zenoh_err("declare telemetry subscriber", e))?;
        Ok::<_, BusError>((ack_sub, telemetry_sub))
    }
    .await;
    let Some((ack_sub, telemetry_sub)) = declared_or_close(&session, &ready, declared).await else { return };
    let mut tick = tokio::time::interval(ctx.resend_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            sample = ack_sub.recv_async() => match sample {
                Ok(s) => ctx.on_ack(s.key_expr().as_str(), &s.payload().to_bytes()),
                Err(_) => break,
            },
            req = req_rx.recv() => match req {
                Some(req) => {
                    put_control(&session, &ctx.keys.control, &req.msg).await;
                    let now = Instant::now();
                    let seq = req.msg.seq;
                    ctx.pending.insert(seq, Pending {
                        msg: req.msg,
                        reply: req.reply,
                        deadline: now + ctx.ack_timeout,
                        next_resend: now + ctx.resend_interval,
                    });
                }
                None => break,
            },
            _ = tick.tick() => ctx.on_tick(&session).await,
            sample = telemetry_sub.recv_async() => match sample {
                Ok(s) => ctx.on_telemetry(s.key_expr().as_str(), &s.payload().to_bytes()),
                Err(_) => break,
            },
        }
    }
    for (_, p) in std::mem::take(&mut ctx.pending) {
        p.reply.send(Err(BusError::Worker { what: "was closed while waiting for an acknowledgement".to_owned() }));
    }
    drop((ack_sub, telemetry_sub));
    let _ = session.close().await;
}

async fn put_control(session: &zenoh::Session, key: &str, msg: &ControlMessage) {
    let priority = match msg.command {
        OperatorCommand::EmergencyStop => Priority::RealTime,
        _ => Priority::InteractiveHigh,
    };
    if let Ok(bytes) = encode(msg) {
        // A failed put is covered by the periodic re-send until the deadline.
        let _ =
            session.put(key, bytes).congestion_control(CongestionControl::Block).priority(priority).express(true).await;
    }
}

impl Ctx {
    fn on_ack(&mut self, key: &str, payload: &[u8]) {
        match decode::<AckMessage>(key, "ack", payload) {
            Ok(ack) if ack.operator == self.operator => {
                if let Some(p) = self.pending.remove(&ack.seq) {
                    p.reply.send(Ok(ack.result));
                }
            }
            Ok(_) => {} // another operator's acknowledgement
            Err(_) => Counters::bump(&self.counters.malformed),
        }
    }

    async fn on_tick(&mut self, session: &zenoh::Session) {
        let now = Instant::now();
        let expired: Vec<u64> = self.pending.iter().filter(|(_, p)| now >= p.deadline).map(|(s, _)| *s).collect();
        for seq in expired {
            if let Some(p) = self.pending.remove(&seq) {
                p.reply.send(Err(BusError::AckTimeout {
                    command: p.msg.command.to_string(),
                    seq,
                    session_id: self.session_id.clone(),
                    timeout: self.ack_timeout,
                }));
            }
        }
        for p in self.pending.values_mut() {
            if now >= p.next_resend {
                p.next_resend = now + self.resend_interval;
                Counters::bump(&self.counters.resends);
                put_control(session, &self.keys.control, &p.msg).await;
            }
        }
    }

    fn on_telemetry(&mut self, key: &str, payload: &[u8]) {
        let event = match decode::<TelemetryMessage>(key, "telemetry", payload) {
            Ok(m) => {
                Counters::bump(&self.counters.telemetry_received);
                TelemetryEvent::Sample(m.telemetry)
            }
            Err(e) => {
                Counters::bump(&self.counters.malformed);
                TelemetryEvent::Malformed(e)
            }
        };
        if self.telemetry_tx.try_send(event).is_err() {
            Counters::bump(&self.counters.events_dropped);
        }
    }
}

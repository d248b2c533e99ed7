//! The thread that owns each bus object's tokio runtime and zenoh session.
//!
//! Zenoh 1.x panics when its blocking calls run on a current-thread tokio runtime, which is
//! what the executor uses, and a runtime cannot be dropped inside another one. So each bus
//! object runs zenoh on a dedicated thread with its own one-worker multi-thread runtime, and
//! talks to it only through channels whose send side never blocks: any caller (sync, async,
//! current-thread) can use the bus, and dropping it never blocks either.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::error::BusError;

/// Handle on a worker thread; dropping it tells the worker to close its zenoh session.
#[derive(Debug)]
pub(crate) struct Worker {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Start `body` on a new thread and wait (blocking, bounded by zenoh's own open) until it
    /// reports that its session is open, or why it could not open it.
    pub(crate) fn start<F, Fut>(name: &str, body: F) -> Result<Self, BusError>
    where
        F: FnOnce(std_mpsc::SyncSender<Result<(), BusError>>, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("{thread_name}-rt"))
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => rt.block_on(body(ready_tx, shutdown_rx)),
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(BusError::Worker { what: format!("could not start its runtime: {e}") }));
                    }
                }
            })
            .map_err(|e| BusError::Worker { what: format!("could not start thread {name}: {e}") })?;
        let worker = Self { shutdown: Some(shutdown_tx), thread: Some(thread) };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BusError::Worker { what: "stopped before opening its session".to_owned() }),
        }
    }

    /// Ask the worker to close its session and wait for the thread to finish. Blocks: for
    /// sync callers that want the ports released before going on (tests, CLI exit).
    pub(crate) fn close(mut self) {
        self.shutdown.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Dropping the sender wakes the worker's shutdown branch; the thread is not joined so
        // that dropping a bus inside an async task never blocks it.
        self.shutdown.take();
    }
}

/// Opens the worker's zenoh session, or reports to the waiting `Worker::start` why not.
pub(crate) async fn open_session(
    zcfg: zenoh::Config,
    ready: &std_mpsc::SyncSender<Result<(), BusError>>,
) -> Option<zenoh::Session> {
    match zenoh::open(zcfg).await {
        Ok(s) => Some(s),
        Err(e) => {
            let _ = ready.send(Err(crate::error::zenoh_err("open", e)));
            None
        }
    }
}

/// Reports the worker ready once its publishers and subscribers are declared; when one
/// could not be, reports why and closes the session.
pub(crate) async fn declared_or_close<T>(
    session: &zenoh::Session,
    ready: &std_mpsc::SyncSender<Result<(), BusError>>,
    declared: Result<T, BusError>,
) -> Option<T> {
    match declared {
        Ok(d) => {
            let _ = ready.send(Ok(()));
            Some(d)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            let _ = session.close().await;
            None
        }
    }
}

/// Counters shared between a bus object and its worker.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) telemetry_published: AtomicU64,
    pub(crate) telemetry_dropped: AtomicU64,
    pub(crate) telemetry_received: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) refused_by_bus: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) resends: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BusStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BusStats {
            telemetry_published: g(&self.telemetry_published),
            telemetry_dropped: g(&self.telemetry_dropped),
            telemetry_received: g(&self.telemetry_received),
            malformed: g(&self.malformed),
            duplicates: g(&self.duplicates),
            refused_by_bus: g(&self.refused_by_bus),
            events_dropped: g(&self.events_dropped),
            resends: g(&self.resends),
        }
    }
}

pub(crate) type SharedCounters = Arc<Counters>;

/// What a bus object has seen so far. Fields that do not apply to a side stay zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusStats {
    /// Telemetry samples handed to zenoh (controller).
    pub telemetry_published: u64,
    /// Telemetry samples dropped because the queue was full or zenoh refused them (controller).
    pub telemetry_dropped: u64,
    /// Telemetry samples received and decoded (operator).
    pub telemetry_received: u64,
    /// Payloads that did not decode (garbage, wrong version).
    pub malformed: u64,
    /// Commands ignored as duplicates or replays (controller).
    pub duplicates: u64,
    /// Commands refused by the bus itself: stale session, full command queue (controller).
    pub refused_by_bus: u64,
    /// Events dropped because the application did not drain its receiver.
    pub events_dropped: u64,
    /// Commands re-sent while waiting for their acknowledgement (operator).
    pub resends: u64,
}

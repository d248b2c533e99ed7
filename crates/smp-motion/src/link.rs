//! The byte link to the controller: a writer (shared by the pump and the realtime relay
//! through [`crate::wire::Wire`]), and a reader thread that forwards received bytes over a
//! channel so the pump can wait on input, operator commands and deadlines at once without
//! polling.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use tokio::sync::mpsc;

use crate::error::MotionError;

/// What the reader thread hands the pump.
#[derive(Debug)]
pub(crate) enum Input {
    Bytes(Vec<u8>),
    /// The port failed; the reader has stopped.
    Failed(std::io::Error),
}

/// Where the pump writes. A trait so tests can script a controller without a port.
pub(crate) trait Link {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()>;

    /// A second handle on the same port for realtime bytes (see `wire.rs`); `None` when the
    /// link has none (they then share this one).
    fn realtime_clone(&self) -> Option<Box<dyn Link + Send>> {
        None
    }
}

impl Link for Box<dyn Link + Send> {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        (**self).send(bytes)
    }
}

impl Link for TTYPort {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)?;
        Ok(())
    }

    fn realtime_clone(&self) -> Option<Box<dyn Link + Send>> {
        // Same open file description: the write timeout and line settings carry over.
        self.try_clone_native().ok().map(|p| Box::new(p) as Box<dyn Link + Send>)
    }
}

/// Opens a real serial device (8N1, no flow control) for [`crate::execute`].
pub fn open_serial(path: &str, baud: u32) -> Result<TTYPort, MotionError> {
    serialport::new(path, baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(Duration::from_millis(100))
        .open_native()
        .map_err(|source| MotionError::Open { path: path.to_string(), baud, source })
}

/// A thread reading the port with a short timeout, so it notices `stop` promptly.
pub(crate) struct Reader {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Reader {
    /// Starts reading a clone of `port`. Timeouts are not errors; any other error is sent
    /// once as [`Input::Failed`] and ends the thread.
    pub(crate) fn spawn(port: &TTYPort, poll: Duration, tx: mpsc::Sender<Input>) -> Result<Self, MotionError> {
        let mut port = port.try_clone_native().map_err(|e| MotionError::Port {
            context: "cloning the port for the reader thread",
            source: std::io::Error::other(e.to_string()),
        })?;
        port.set_timeout(poll).map_err(|e| MotionError::Port {
            context: "setting the read timeout",
            source: std::io::Error::other(e.to_string()),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("smp-motion-reader".into())
            .spawn(move || {
                let mut buf = [0u8; 1024];
                while !flag.load(Ordering::Relaxed) {
                    match port.read(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            if tx.blocking_send(Input::Bytes(buf[..n].to_vec())).is_err() {
                                return; // pump gone
                            }
                        }
                        Err(e)
                            if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
                        Err(e) => {
                            if !flag.load(Ordering::Relaxed) {
                                let _ = tx.blocking_send(Input::Failed(e));
                            }
                            return;
                        }
                    }
                }
            })
            .map_err(|source| MotionError::Port { context: "starting the reader thread", source })?;
        Ok(Reader { stop, handle: Some(handle) })
    }

    /// Stops the thread and waits for it (at most one read timeout).
    pub(crate) fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

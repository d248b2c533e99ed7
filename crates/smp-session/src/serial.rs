//! The real arm: a controller behind a serial device, on the wall clock.

use std::sync::Arc;

use serialport::TTYPort;
use smp_motion::Protocol;

use crate::world::{Clock, Machine, MachineError, WallClock};

/// A controller on a serial device (8N1, no flow control).
#[derive(Debug, Clone)]
pub struct SerialMachine {
    pub device: String,
    pub baud: u32,
    pub protocol: Protocol,
    clock: Arc<WallClock>,
}

impl SerialMachine {
    pub fn new(device: impl Into<String>, baud: u32, protocol: Protocol) -> SerialMachine {
        SerialMachine { device: device.into(), baud, protocol, clock: Arc::new(WallClock::new()) }
    }
}

impl Machine for SerialMachine {
    fn describe(&self) -> String {
        format!("{} controller on {} at {} baud", self.protocol, self.device, self.baud)
    }

    fn protocol(&self) -> Protocol {
        self.protocol
    }

    fn connect(&mut self) -> Result<TTYPort, MachineError> {
        smp_motion::open_serial(&self.device, self.baud).map_err(|e| MachineError::Open {
            what: format!("serial port {}", self.device),
            detail: e.to_string(),
            hint: "check the cable, the device name and that no other program holds the port".into(),
        })
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }
}

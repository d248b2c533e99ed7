//! What the controller tells about itself: its state as grbl reports it, counters, and the
//! report of a run (needle entries with their geometry and timing, faults fired).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use smp_core::NeedleEntry;

use super::{EntryGeometry, EntryTiming, FiredFault};

/// Machine state as grbl reports it in `<State|...>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MachineState {
    Idle,
    Run,
    /// `complete` is false while decelerating (`Hold:1`), true once stopped (`Hold:0`).
    Hold {
        complete: bool,
    },
    Alarm,
    Check,
}

/// Counters of the serial protocol, for tests and the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControllerStats {
    /// Line terminators that entered the RX buffer.
    pub lines_received: u64,
    pub oks_sent: u64,
    pub errors_sent: u64,
    /// Count of each `error:N` sent, by N.
    pub error_codes: BTreeMap<u8, u64>,
    /// Every `ALARM:N` raised, in order.
    pub alarms: Vec<u8>,
    /// Bytes lost because the RX buffer was full (a host flow-control bug, or a controller
    /// blocked long enough for an unchecked host to fill it).
    pub rx_overflows: u64,
    /// Bytes that arrived while more than `rx_buffer_bytes` bytes were unacknowledged: exactly
    /// the host's character-counting invariant, checked even when grbl would have coped.
    pub flow_violations: u64,
    /// Highest RX buffer fill seen, bytes.
    pub rx_high_water_bytes: usize,
    pub soft_resets: u64,
    /// `ok`s grbl prints for the line a soft reset interrupted (a dwell cut short, a motion
    /// line waiting for planner room), before its banner.
    pub oks_after_reset: u64,
    /// Bytes lost to the `byte_loss` and `drop_byte` faults.
    pub bytes_dropped_by_fault: u64,
    /// Bytes altered by the `byte_corruption` and `corrupt_byte` faults.
    pub bytes_corrupted_by_fault: u64,
    /// Responses withheld by the `lost_ok` fault.
    pub responses_withheld: u64,
    /// Bytes that arrived after a `disconnect_at_line` fault cut the link.
    pub bytes_after_disconnect: u64,
    /// Machine time spent with nothing to do after the first line arrived (idle, queues
    /// empty, no hold or alarm): waiting for the host. At a high time scale this is the
    /// host's latency multiplied; at x1 it is the host's real share of the session.
    #[serde(default)]
    pub starved_s: f64,
}

/// What a simulated run did: the needle's record and the protocol's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Needle entries with the cartridge running, in time order.
    pub entries: Vec<NeedleEntry>,
    /// Skin contacts with the cartridge off (M5 or S0): collisions, always a defect.
    pub unpowered_contacts: Vec<NeedleEntry>,
    pub machine_time_s: f64,
    /// The serial protocol's counters at the end of the run.
    pub stats: ControllerStats,
    pub faults_fired: Vec<FiredFault>,
    pub final_position_mm: [f64; 3],
    /// Final position of every driven axis (3, 5 or 6 values; degrees for rotary axes).
    #[serde(default)]
    pub final_machine_position: Vec<f64>,
    /// How the needle met the skin at each of `entries` (same index).
    #[serde(default)]
    pub entry_geometry: Vec<EntryGeometry>,
    /// The same for each of `unpowered_contacts`.
    #[serde(default)]
    pub unpowered_geometry: Vec<EntryGeometry>,
    /// How long the needle stayed in the skin at each of `entries`, and how long the cartridge
    /// ran meanwhile (same index): a pause with a running needle at depth shows here as a
    /// longer running time; one with the cartridge stopped does not.
    #[serde(default)]
    pub entry_timing: Vec<EntryTiming>,
    /// The same for each of `unpowered_contacts`.
    #[serde(default)]
    pub unpowered_timing: Vec<EntryTiming>,
    /// I/O problems of the runner (the pure controller never sets these).
    pub runner_errors: Vec<String>,
}

impl SimReport {
    /// The time at depth each of `entries` deposits pigment for, seconds, for the skin model:
    /// [`crate::skin::deposit_dwell_s`] of `entry_timing`.
    pub fn deposit_dwell_s(&self, session_dwell_s: f64) -> Vec<f64> {
        let timing: Vec<Option<EntryTiming>> = self.entry_timing.iter().copied().map(Some).collect();
        crate::skin::deposit_dwell_s(self.entries.len(), &timing, session_dwell_s)
    }

    /// [`crate::skin::DepositInput`]s for every entry, with [`SimReport::deposit_dwell_s`]:
    /// use instead of `DepositInput::for_session` so that a blown-out dot shows in the skin.
    pub fn deposit_inputs(
        &self,
        session_dwell_s: f64,
        session: u32,
        dilution_pct: f64,
    ) -> Vec<crate::skin::DepositInput> {
        self.entries
            .iter()
            .zip(self.deposit_dwell_s(session_dwell_s))
            .map(|(e, dwell_s)| crate::skin::DepositInput { entry: *e, dwell_s, session, dilution_pct })
            .collect()
    }
}

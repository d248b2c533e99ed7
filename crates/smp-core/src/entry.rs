//! What the needle actually did: the record a (simulated or instrumented) controller keeps
//! of every time the tip went through the skin.

use serde::{Deserialize, Serialize};

/// One needle entry: where the tip crossed the skin surface and how far it went below it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NeedleEntry {
    /// Point where the tip crossed the skin, in the base frame.
    pub base_mm: [f64; 3],
    /// Same point in the head frame (the patient's frame, where plans live).
    pub head_mm: [f64; 3],
    /// Deepest tip position below the skin along the needle, millimetres.
    pub depth_mm: f64,
    /// Controller time at the entry, seconds since the controller started.
    pub time_s: f64,
}

/// How long the needle stayed in the skin at an entry, and how much of that the cartridge ran.
/// Kept beside each [`NeedleEntry`] (same index) by the simulator, which knows it; a real
/// controller reports no such thing. The pigment deposited (and the dot's size) grows with
/// the *running* time in skin, not with the time the tip merely rests there: a feed hold that
/// leaves a running needle at depth blows the dot out, while one that stops the cartridge
/// (grbl's spindle stop override) adds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntryTiming {
    /// Machine time at which the tip left the skin (or the run ended with it inside), seconds.
    pub exit_time_s: f64,
    /// From the crossing in to the crossing out, seconds.
    pub in_skin_s: f64,
    /// Part of `in_skin_s` during which the cartridge ran, seconds.
    pub running_in_skin_s: f64,
}

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

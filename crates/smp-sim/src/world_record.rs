//! The simulated world's own record of a session: every run's [`SimReport`] (every needle
//! entry, how long each stayed in the skin, the faults injected), written beside the journal
//! as `NAME.world.json` but never read by the host. Scoring, healing the skin between
//! sessions and the camera's view of earlier pigment read it; the journal holds only what the
//! host knew.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use smp_core::entry::EntryTiming;
use smp_core::NeedleEntry;

use crate::controller::SimReport;

/// Format version of the record file.
pub const WORLD_RECORD_VERSION: u32 = 1;

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("world record {path}: {detail}; it is the simulator's record of the session (NAME.world.json beside the journal)")]
    Read { path: String, detail: String },
    #[error("world record {path}: cannot write: {detail}")]
    Write { path: String, detail: String },
}

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorldRecord {
    pub version: u32,
    /// One per run of the session (a resume adds one), in order.
    pub runs: Vec<SimReport>,
}

impl WorldRecord {
    /// The record beside `journal` (`session.sqlite` -> `session.world.json`).
    pub fn path_for(journal: &Path) -> PathBuf {
        journal.with_extension("world.json")
    }

    /// The record at `path`, or an empty one when there is none yet.
    pub fn load_or_default(path: &Path) -> Result<WorldRecord, RecordError> {
        if !path.exists() {
            return Ok(WorldRecord { version: WORLD_RECORD_VERSION, runs: Vec::new() });
        }
        let err = |detail: String| RecordError::Read { path: path.display().to_string(), detail };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let r: WorldRecord = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if r.version != WORLD_RECORD_VERSION {
            return Err(err(format!("version {} (this build reads {WORLD_RECORD_VERSION})", r.version)));
        }
        Ok(r)
    }

    /// Appends a run and writes the file (through a temporary file and a rename).
    pub fn append_and_save(&mut self, run: SimReport, path: &Path) -> Result<(), RecordError> {
        self.runs.push(run);
        let err = |detail: String| RecordError::Write { path: path.display().to_string(), detail };
        let text = serde_json::to_string(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("world.json.tmp");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Every powered needle entry of every run, in order.
    pub fn entries(&self) -> Vec<NeedleEntry> {
        self.runs.iter().flat_map(|r| r.entries.iter().copied()).collect()
    }

    /// The timing of every entry of [`WorldRecord::entries`] (same index).
    pub fn entry_timing(&self) -> Vec<Option<EntryTiming>> {
        self.runs.iter().flat_map(|r| (0..r.entries.len()).map(move |i| r.entry_timing.get(i).copied())).collect()
    }

    /// Machine time of every run, s.
    pub fn machine_time_s(&self) -> f64 {
        self.runs.iter().map(|r| r.machine_time_s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_append_and_read_back_with_their_timing() {
        let dir = tempfile::tempdir().expect("dir");
        let path = WorldRecord::path_for(&dir.path().join("session.sqlite"));
        assert!(path.ends_with("session.world.json"));
        let mut r = WorldRecord::load_or_default(&path).expect("empty");
        let e = NeedleEntry { base_mm: [1.0; 3], head_mm: [2.0; 3], depth_mm: 1.0, time_s: 3.0 };
        let t = EntryTiming { exit_time_s: 3.2, in_skin_s: 0.2, running_in_skin_s: 0.2 };
        let run = SimReport { entries: vec![e], entry_timing: vec![t], machine_time_s: 5.0, ..SimReport::default() };
        r.append_and_save(run.clone(), &path).expect("save");
        let mut again = WorldRecord::load_or_default(&path).expect("load");
        again.append_and_save(SimReport { entries: vec![e], ..SimReport::default() }, &path).expect("save");
        let back = WorldRecord::load_or_default(&path).expect("load");
        assert_eq!(back.entries().len(), 2);
        assert_eq!(back.entry_timing(), vec![Some(t), None]);
        assert_eq!(back.machine_time_s(), 5.0);
        std::fs::write(&path, "{").expect("write");
        let e = WorldRecord::load_or_default(&path).expect_err("truncated");
        assert!(e.to_string().contains("session.world.json"), "{e}");
    }
}

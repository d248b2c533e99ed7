//! Needle entries as the controller or simulator recorded them, with their time in skin
//! where the source knows it.

use rusqlite::params;
use smp_core::entry::EntryTiming;
use smp_core::NeedleEntry;

use super::{Journal, StoreError};

impl Journal {
    /// Appends needle entries (from the controller or the simulator) in one transaction, with
    /// each one's [`EntryTiming`] (same index) when the source knows it: `timing` is either
    /// empty or as long as `entries`.
    pub fn record_entries(&mut self, entries: &[NeedleEntry], timing: &[EntryTiming]) -> Result<(), StoreError> {
        if !timing.is_empty() && timing.len() != entries.len() {
            return Err(StoreError::EntryTimingMismatch { entries: entries.len(), timing: timing.len() });
        }
        self.commit_with(|tx| {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO entries(base_x_mm, base_y_mm, base_z_mm, head_x_mm, head_y_mm, head_z_mm, depth_mm, time_s, \
                     exit_time_s, in_skin_s, running_in_skin_s) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(StoreError::sql("preparing the entry insert"))?;
            for (i, e) in entries.iter().enumerate() {
                let t = timing.get(i);
                st.execute(params![
                    e.base_mm[0],
                    e.base_mm[1],
                    e.base_mm[2],
                    e.head_mm[0],
                    e.head_mm[1],
                    e.head_mm[2],
                    e.depth_mm,
                    e.time_s,
                    t.map(|t| t.exit_time_s),
                    t.map(|t| t.in_skin_s),
                    t.map(|t| t.running_in_skin_s),
                ])
                .map_err(StoreError::sql("inserting a needle entry"))?;
            }
            Ok(())
        })
    }

    /// Needle entries in the order recorded.
    pub fn entries(&self) -> Result<Vec<NeedleEntry>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT base_x_mm, base_y_mm, base_z_mm, head_x_mm, head_y_mm, head_z_mm, depth_mm, time_s \
                 FROM entries ORDER BY seq",
            )
            .map_err(StoreError::sql("reading needle entries"))?;
        let rows = st
            .query_map([], |r| {
                Ok(NeedleEntry {
                    base_mm: [r.get(0)?, r.get(1)?, r.get(2)?],
                    head_mm: [r.get(3)?, r.get(4)?, r.get(5)?],
                    depth_mm: r.get(6)?,
                    time_s: r.get(7)?,
                })
            })
            .map_err(StoreError::sql("reading needle entries"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(StoreError::sql("reading needle entries"))
    }

    /// Each needle entry's [`EntryTiming`], in the order of [`Journal::entries`]; `None` where
    /// it was not recorded (a real controller, or a journal from before schema version 2).
    pub fn entry_timing(&self) -> Result<Vec<Option<EntryTiming>>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT exit_time_s, in_skin_s, running_in_skin_s FROM entries ORDER BY seq")
            .map_err(StoreError::sql("reading entry timings"))?;
        let rows = st
            .query_map([], |r| {
                let (exit, in_skin, running): (Option<f64>, Option<f64>, Option<f64>) =
                    (r.get(0)?, r.get(1)?, r.get(2)?);
                Ok(match (exit, in_skin, running) {
                    (Some(exit_time_s), Some(in_skin_s), Some(running_in_skin_s)) => {
                        Some(EntryTiming { exit_time_s, in_skin_s, running_in_skin_s })
                    }
                    _ => None,
                })
            })
            .map_err(StoreError::sql("reading entry timings"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(StoreError::sql("reading entry timings"))
    }
}

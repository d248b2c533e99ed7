//! The simulator's world record beside a journal, as `smp journal` lists it.

use std::path::Path;

use crate::error::CliError;

/// The needle entries the simulator recorded beside the journal at `path` (the host journals
/// what it commanded and heard; where the needle really went is the world's record, which only
/// a simulated session has), or a line saying a real session cannot observe them.
pub fn world_record_listing(path: &Path) -> Result<String, CliError> {
    let mut out = String::new();
    let world_path = smp_sim::world_record::WorldRecord::path_for(path);
    if world_path.is_file() {
        let world = smp_sim::world_record::WorldRecord::load_or_default(&world_path).map_err(|e| {
            CliError::input(e.to_string(), "the world record is written by `smp run --sim` and `smp demo`")
        })?;
        let (entries, timing) = (world.entries(), world.entry_timing());
        out.push_str(&format!("  simulator's record {}: needle entries: {}\n", world_path.display(), entries.len()));
        out.push_str(&running_time_listing(&entries, &timing));
    } else {
        out.push_str(
            "  needle entries: not observable by the host (a simulated session keeps them in NAME.world.json)\n",
        );
    }
    Ok(out)
}

/// An entry whose cartridge ran at least this much longer in the skin than the session's
/// typical entry is listed for QA: a pause held a running needle at depth there, and the dot
/// may have blown out (about twice the session's 50 ms dwell).
pub const LONG_RUN_EXTRA_S: f64 = 0.1;
/// At most this many long-running entries are listed one by one.
const LONG_RUN_LISTED: usize = 20;

/// The journal's running time in skin, for QA: the typical and longest entry, and each entry
/// that ran [`LONG_RUN_EXTRA_S`] longer than the typical one (where to look for a blowout).
fn running_time_listing(entries: &[smp_core::NeedleEntry], timing: &[Option<smp_core::entry::EntryTiming>]) -> String {
    let mut running: Vec<f64> = timing.iter().flatten().map(|t| t.running_in_skin_s).collect();
    if running.is_empty() {
        return "  time in skin: not recorded (the controller does not report it)\n".to_string();
    }
    running.sort_by(f64::total_cmp);
    // The extra deposit time over the typical entry, as the healing model counts it.
    let extra = smp_sim::skin::deposit_dwell_s(entries.len(), timing, 0.0);
    let long: Vec<usize> = (0..entries.len()).filter(|&i| extra[i] >= LONG_RUN_EXTRA_S).collect();
    let mut out = format!(
        "  cartridge running in skin: typical {:.3} s, longest {:.3} s ({} of {} entries timed)\n",
        running[running.len() / 2],
        running[running.len() - 1],
        running.len(),
        entries.len()
    );
    if !long.is_empty() {
        out.push_str(&format!(
            "  entries that ran {LONG_RUN_EXTRA_S} s or more longer (a pause with a running needle in the skin; look at these dots for a blowout): {}\n",
            long.len()
        ));
        for &i in long.iter().take(LONG_RUN_LISTED) {
            let e = &entries[i];
            out.push_str(&format!(
                "    entry {} at {:.2} s, head ({:.2}, {:.2}, {:.2}) mm: +{:.3} s\n",
                i + 1,
                e.time_s,
                e.head_mm[0],
                e.head_mm[1],
                e.head_mm[2],
                extra[i]
            ));
        }
        if long.len() > LONG_RUN_LISTED {
            out.push_str(&format!("    and {} more\n", long.len() - LONG_RUN_LISTED));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use smp_core::entry::EntryTiming;
    use smp_core::NeedleEntry;

    use super::*;

    fn entry(i: usize) -> NeedleEntry {
        NeedleEntry { base_mm: [0.0; 3], head_mm: [i as f64, 2.0, 90.0], depth_mm: 1.0, time_s: 0.3 * i as f64 }
    }

    #[test]
    fn qa_sees_the_entries_a_pause_left_running_in_the_skin() {
        let entries: Vec<NeedleEntry> = (0..30).map(entry).collect();
        let timed = |running_in_skin_s| Some(EntryTiming { exit_time_s: 0.0, in_skin_s: 2.0, running_in_skin_s });
        let mut timing: Vec<Option<EntryTiming>> = (0..30).map(|_| timed(0.15)).collect();
        timing[7] = timed(1.35);
        timing[8] = timed(0.2); // 0.05 s longer: a normal spread, not listed
        let text = running_time_listing(&entries, &timing);
        assert!(text.contains("typical 0.150 s, longest 1.350 s (30 of 30 entries timed)"), "{text}");
        assert!(text.contains("look at these dots for a blowout): 1\n"), "{text}");
        assert!(text.contains("entry 8 at 2.10 s, head (7.00, 2.00, 90.00) mm: +1.200 s"), "{text}");
        assert!(!text.contains("entry 9 "), "{text}");
        // Many: the first 20, then a count.
        let entries: Vec<NeedleEntry> = (0..60).map(entry).collect();
        let many: Vec<Option<EntryTiming>> = (0..60).map(|i| timed(if i < 35 { 0.15 } else { 1.0 })).collect();
        let text = running_time_listing(&entries, &many);
        assert!(text.contains("look at these dots for a blowout): 25\n"), "{text}");
        assert_eq!(text.matches("    entry ").count(), 20, "{text}");
        assert!(text.ends_with("    and 5 more\n"), "{text}");
        let entries: Vec<NeedleEntry> = (0..30).map(entry).collect();
        // A real controller's journal: nothing recorded, and it says so.
        let text = running_time_listing(&entries, &vec![None; 30]);
        assert_eq!(text, "  time in skin: not recorded (the controller does not report it)\n");
    }
}

//! QA subcommands over a finished session's files: `smp journal` reads a journal,
//! `smp verify` re-checks a G-code file against its plan and map.

use std::fs;
use std::path::Path;

use smp_core::map::ScalpMap;
use smp_core::plan::{DotState, PlanFile};
use smp_core::rig::AxisProfile;

use crate::error::CliError;

fn read(path: &Path, what: &str, hint: &str) -> Result<String, CliError> {
    fs::read_to_string(path).map_err(|e| CliError::input(format!("cannot read {what} {}: {e}", path.display()), hint))
}

/// Opens an existing journal for reading and resolution, with errors that say which file.
pub fn open_journal(path: &Path) -> Result<smp_store::Journal, CliError> {
    if !path.is_file() {
        return Err(CliError::input(
            format!("journal {} does not exist", path.display()),
            "give the session.sqlite a run wrote (e.g. out/demo/session.sqlite)",
        ));
    }
    smp_store::Journal::open(path).map_err(|e| {
        CliError::input(
            format!("{}: {e}", path.display()),
            "give a session.sqlite written by `smp demo` or a session run",
        )
    })
}

/// `smp journal FILE`: the session row, how many dots are in each state, and the dots a
/// fault left uncertain (which must be resolved before the session resumes).
pub fn journal(path: &Path) -> Result<String, CliError> {
    let j = open_journal(path)?;
    let s = j.session().map_err(|e| CliError::failure(format!("{}: {e}", path.display())))?;
    let counts = j.state_counts().map_err(|e| CliError::failure(format!("{}: {e}", path.display())))?;
    let mut out = format!(
        "journal {}\n  patient {}, session {}, rig {}, seed {}\n  started {}, ended {}, outcome {}\n",
        path.display(),
        s.meta.patient,
        s.meta.session,
        s.meta.rig_name,
        s.meta.seed,
        s.started_utc,
        s.ended_utc.as_deref().unwrap_or("-"),
        s.outcome.as_deref().unwrap_or("-"),
    );
    for state in DotState::ALL {
        out.push_str(&format!("  {:<10} {:>6}\n", state.as_str(), counts.get(&state).copied().unwrap_or(0)));
    }
    let programs = j.programs().map_err(|e| CliError::failure(format!("{}: {e}", path.display())))?;
    for p in &programs {
        out.push_str(&format!(
            "  program {} ({}): {} lines, {} dots, deepest {:.3} mm, sha256 {}, {}\n",
            p.seq,
            p.reason.as_str(),
            p.lines,
            p.dots,
            p.max_depth_mm,
            &p.sha256[..p.sha256.len().min(16)],
            p.path
        ));
    }
    // The host journals what it commanded and heard; where the needle really went is the
    // world's record, which only a simulated session has (beside the journal).
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
    let uncertain =
        j.dots_in_state(DotState::Uncertain).map_err(|e| CliError::failure(format!("{}: {e}", path.display())))?;
    if !uncertain.is_empty() {
        let ids: Vec<String> = uncertain.iter().map(u32::to_string).collect();
        out.push_str(&format!(
            "  uncertain dots (look at the sites, then `smp resolve {} --dot ... --as executed|skipped`): {}\n",
            path.display(),
            ids.join(",")
        ));
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

/// `smp verify PROGRAM --plan PLAN --map MAP [--rig RIG]`: the independent safety check, from
/// files, against the rig the program is for (default: the embedded `calibration/rig.toml`).
/// `xyzab` and `joints` rigs are checked by the tilted verifier, through their kinematics; a
/// program compiled for another rig than the one given is refused by its header.
pub fn verify(program: &Path, plan: &Path, map: &Path, rig: Option<&Path>) -> Result<String, CliError> {
    let nc = read(program, "program", "give the program.nc to check")?;
    let plan_text = read(plan, "plan", "give the plan.json the program was compiled from")?;
    let map_text = read(map, "map", "give the map.json the plan was made on")?;
    let program = smp_gcode::parse_nc(&nc)
        .map_err(|e| CliError::input(format!("{}: {e}", program.display()), "a G-code file written by smp"))?;
    let plan_file = PlanFile::from_json_str(&plan_text)
        .map_err(|e| CliError::input(format!("{}: {e}", plan.display()), "a plan.json written by smp"))?;
    let map = ScalpMap::from_json_str(&map_text)
        .map_err(|e| CliError::input(format!("{}: {e}", map.display()), "a map.json written by smp"))?;
    let session = plan_file.sessions.iter().find(|s| s.session == program.session).ok_or_else(|| {
        CliError::input(
            format!("the plan has no session {} (the program's session)", program.session),
            "give the plan this program was compiled from",
        )
    })?;
    let rig = crate::files::read_rig(rig)?;
    let base_from_head = map.base_from_head.to_isometry();
    match smp_gcode::verify(program, session, &map, &rig, &base_from_head) {
        Ok(v) => {
            let r = v.report();
            Ok(format!(
                "verified for rig {} ({}, {} dialect): {} dots, {} lines, max depth {:.3} mm (limit {:.3}), max feed {:.0} mm/min (limit {:.0}), estimated {:.0} s\n",
                rig.name,
                profile(rig.axes),
                r.dialect,
                r.dots,
                r.lines,
                r.max_depth_mm,
                session.limits.depth_limit_mm,
                r.max_feed_mm_per_min,
                session.limits.max_feed_mm_per_min,
                r.estimated_time_s
            ))
        }
        Err(e) => {
            let other_rig = e.violations().iter().any(|v| v.kind == smp_gcode::ViolationKind::RigMismatch);
            let hint = if other_rig {
                "the program must not be run on this rig; verify it with --rig and the rig file it was compiled for"
            } else {
                "the program must not be run; recompile it from the plan"
            };
            Err(CliError::failure(format!("REJECTED: {e}")).with_hint(hint))
        }
    }
}

fn profile(axes: AxisProfile) -> &'static str {
    match axes {
        AxisProfile::Xyz => "xyz",
        AxisProfile::Xyzab => "xyzab",
        AxisProfile::Joints => "joints",
    }
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

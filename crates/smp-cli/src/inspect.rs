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
    out.push_str(&crate::sim::journal::world_record_listing(path)?);
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

//! `smp run --sim`: the session engine on the simulated world, then the score against the
//! world's truth (which only this scoring reads). The world's record of every needle entry is
//! written beside the journal (`NAME.world.json`) and carried over by a resume.

use std::sync::Arc;

use smp_core::eval::placement_score;
use smp_session::World;
use smp_sim::controller::{ControllerConfig, ProtocolMode};
use smp_sim::patient::SyntheticPatient;
use smp_sim::world::{SessionPigment, SimWorld, WorldSpec};
use smp_sim::world_record::WorldRecord;

use crate::error::{stage, CliError};
use crate::files::read_rig;
use crate::run_cmd::{inputs, operator_and_observers, session_error, RunArgs, RunReport, SimScore, Target};

pub use smp_sim::score::PLACEMENT_MATCH_RADIUS_MM;

pub fn run(a: &RunArgs) -> Result<RunReport, CliError> {
    let Target::Sim { patient, faults, time_scale } = &a.target else {
        return Err(CliError::failure("internal: the simulator's run was asked for a serial port"));
    };
    let rig = read_rig(a.rig.as_deref())?;
    let (inputs, patient_id) = inputs(a, rig.clone())?;
    let (spec, _) = super::read_sim_patient(patient.as_deref())?;
    let scenario = faults.as_deref().map(super::read_scenario).transpose()?;
    let mut controller = ControllerConfig {
        time_scale: *time_scale,
        marlin_realtime_commands: a.marlin_realtime,
        ..ControllerConfig::for_rig(&rig).map_err(stage("simulated controller"))?
    };
    if a.protocol == smp_motion::Protocol::Marlin {
        controller.protocol = ProtocolMode::Marlin;
    }
    if let Some(s) = &scenario {
        s.apply_to(&mut controller);
    }
    let injected = controller.faults.faults.clone();
    let record_path = WorldRecord::path_for(&a.journal);
    let mut record = WorldRecord::load_or_default(&record_path).map_err(|e| CliError::failure(e.to_string()))?;
    let plan = &inputs.plan;
    let world_spec = WorldSpec {
        patient: Arc::new(SyntheticPatient::generate(&spec)),
        rig,
        // The world puts the head where the map says it is (issue 15 parts them).
        base_from_head: inputs.base_from_head,
        scenario,
        controller,
        tracking_hz: a.tracking_hz,
        earlier_entries: record.entries(),
        pigment: SessionPigment {
            dwell_s: plan.spec.dwell_s,
            session: plan.session,
            dilution_pct: plan.spec.dilution_pct,
        },
    };
    let mut world =
        SimWorld::new(world_spec).map_err(|e| CliError::input(e.to_string(), "fix the patient or scenario file"))?;
    let cameras = world.cameras().map_err(|e| CliError::failure(e.to_string()))?;
    let (operator, observers, bus_session) = operator_and_observers(a, &patient_id, &inputs)?;
    let result = {
        let w = World { machine: world.machine(), cameras, operator, observers };
        smp_session::run_session(&inputs, w)
    };
    let report = world.finish();
    let starved_s = report.stats.starved_s;
    // What the world did to the session (truth: for the score, never shown to the host).
    let faults_injected: Vec<String> = report
        .faults_fired
        .iter()
        .map(|f| match injected.get(f.fault) {
            Some(k) => format!("simulator injected {k:?} at {:.2} s", f.time_s),
            None => format!("simulator injected fault #{} at {:.2} s", f.fault, f.time_s),
        })
        .collect();
    // The world's record is kept whatever the session did (a resume carries it over).
    if !report.entries.is_empty() || !report.unpowered_contacts.is_empty() || result.is_ok() {
        record.append_and_save(report, &record_path).map_err(|e| CliError::failure(e.to_string()))?;
    }
    let session = result.map_err(session_error)?;
    let planned: Vec<[f64; 3]> = inputs.plan.dots.iter().map(|d| d.position()).collect();
    let entries: Vec<[f64; 3]> = record.entries().iter().map(|e| e.head_mm).collect();
    let p = placement_score(&planned, &entries, PLACEMENT_MATCH_RADIUS_MM);
    let score = SimScore {
        dots_doubled: p.dots_doubled,
        stray_entries: p.stray_entries,
        placement_max_mm: p.placement_max_mm,
        placement_rms_mm: p.placement_rms_mm,
        entries: entries.len(),
        world_record: record_path.display().to_string(),
        faults_injected,
        arm_waiting_for_host_s: starved_s,
    };
    Ok(RunReport { session, bus_session, score: Some(score) })
}

//! `smp demo`: one complete simulated session, every stage real.
//!
//! synthetic patient -> rendered overview + flange tiles -> vision map -> session-1 plan ->
//! G-code compile + verify -> stream over a real pty to the simulated grbl controller ->
//! journal, recording, mockup, and figures measured against the simulator's ground truth.
//! Ground truth is only read here, after the fact, to score the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use smp_core::eval::{min_spacing_mm, placement_score};
use smp_core::plan::{PlanFile, SessionSpec};
use smp_core::rig::Rig;
use smp_core::NeedleEntry;
use smp_sim::patient::{PatientSpec, SyntheticPatient};

use crate::error::{stage, CliError};
use crate::files::{read_text, to_json, write_png, write_text};
use crate::outdir::StagedDir;

pub use smp_sim::score::{FOLLICLE_MATCH_RADIUS_MM, PLACEMENT_MATCH_RADIUS_MM};

/// What `smp demo` runs on. Every field has an embedded default.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub out_dir: PathBuf,
    /// Patient TOML; the embedded `sim/patients/default.toml` when absent.
    pub patient: Option<PathBuf>,
    /// Session spec TOML; the embedded `sim/sessions/crown-s1.toml` when absent.
    pub session: Option<PathBuf>,
    /// Stop the plan after this many dots (small demos and tests).
    pub max_dots: Option<u32>,
    /// Simulated machine seconds per wall second.
    pub time_scale: f64,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Print stage lines on stderr.
    pub verbose: bool,
    /// Earlier sessions of a course (`smp demo --sessions N`): this run is a follow-up.
    pub prior: Option<PriorSessions>,
}

/// What earlier sessions left for a follow-up session: their plans (whose entries the new
/// plan keeps clear of) and the healed dots they left on the simulated skin (which the new
/// scan must find and tell from follicles).
#[derive(Debug, Clone, Default)]
pub struct PriorSessions {
    /// This session's number (2, 3, ...).
    pub session: u32,
    pub plans: Vec<smp_core::plan::SessionPlan>,
    pub healed_dots: Vec<smp_sim::skin::PriorDot>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            out_dir: PathBuf::from("out/demo"),
            patient: None,
            session: None,
            max_dots: None,
            time_scale: 100.0,
            progress: true,
            verbose: true,
            prior: None,
        }
    }
}

/// The figures `smp demo --json` prints. Keys are part of the CLI's contract.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub patient: String,
    pub dots_planned: usize,
    pub dots_executed: usize,
    pub dots_doubled: usize,
    pub dots_missing: usize,
    pub stray_entries: usize,
    pub unpowered_contacts: usize,
    pub placement_rms_mm: f64,
    pub placement_max_mm: f64,
    pub min_spacing_mm: f64,
    pub max_depth_mm: f64,
    pub depth_limit_mm: f64,
    pub follicles_detected: usize,
    pub follicles_truth_in_view: usize,
    pub follicle_precision: f64,
    pub follicle_recall: f64,
    pub follicle_f1: f64,
    pub follicle_loc_rms_mm: f64,
    /// Session number (1 unless a follow-up of a course).
    pub session: u32,
    /// Earlier SMP dots on the skin within the scan's view, and the share of matched items
    /// (follicles and dots) vision gave the right kind.
    pub prior_dots_in_view: usize,
    pub dot_vs_follicle_accuracy: f64,
    /// Smallest distance from a new dot to an earlier session's planned dot, mm (-1: none).
    pub min_spacing_to_earlier_mm: f64,
    pub surface_fit_rms_mm: f64,
    pub tiles: usize,
    pub treatment_area_cm2: f64,
    pub journal_executed: usize,
    pub journal_uncertain: usize,
    pub program_lines: usize,
    pub estimated_arm_time_s: f64,
    pub arm_time_s: f64,
    /// Of `arm_time_s`, the machine time the simulated controller had nothing to do, waiting
    /// for the host (the host's latency times the time scale).
    pub arm_waiting_for_host_s: f64,
    pub wall_time_s: f64,
    pub stage_times_s: Vec<(String, f64)>,
    pub viz_dropped: u64,
    pub warnings: Vec<String>,
    pub files: Vec<String>,
}

/// The files every demo writes. `overview.png` is the consultation photo that
/// `smp mockup --photo` draws on.
pub const DEMO_FILES: [&str; 8] = [
    "map.json",
    "plan.json",
    "program.nc",
    "session.sqlite",
    "session.rrd",
    "overview.png",
    "mockup.png",
    "session.world.json",
];

/// Loads the inputs before anything is written, so bad input leaves no trace.
pub fn load_inputs(cfg: &DemoConfig) -> Result<(PatientSpec, SessionSpec, String), CliError> {
    let (patient, patient_name) = crate::sim::read_sim_patient(cfg.patient.as_deref())?;
    let (session_text, session_name) = match &cfg.session {
        Some(p) => (read_text(p, "session", "session")?, p.display().to_string()),
        None => (smp_planner::DEFAULT_SESSION1_TOML.to_string(), "sim/sessions/crown-s1.toml (embedded)".to_string()),
    };
    let mut spec = SessionSpec::from_toml_str(&session_text).map_err(|e| {
        CliError::input(
            format!("{session_name}: {e}"),
            "fix the session file; sim/sessions/crown-s1.toml is a valid example",
        )
    })?;
    if let Some(n) = cfg.max_dots {
        spec.max_dots = Some(n);
    }
    crate::files::check_time_scale(cfg.time_scale)?;
    Ok((patient, spec, patient_name))
}

struct Stages {
    started: Instant,
    last: Instant,
    times: Vec<(String, f64)>,
    verbose: bool,
}

impl Stages {
    fn new(verbose: bool) -> Self {
        let now = Instant::now();
        Stages { started: now, last: now, times: Vec::new(), verbose }
    }
    fn done(&mut self, name: &str, detail: String) {
        let now = Instant::now();
        let dt = (now - self.last).as_secs_f64();
        self.last = now;
        self.times.push((name.to_string(), dt));
        if self.verbose {
            eprintln!("  {name:<9} {dt:>6.2} s  {detail}");
        }
    }
}

/// Runs the whole demo and returns its figures. Nothing is left in `out_dir` unless every
/// stage succeeded.
pub fn run(cfg: &DemoConfig) -> Result<DemoReport, CliError> {
    let (patient_spec, spec, patient_name) = load_inputs(cfg)?;
    let mut stages = Stages::new(cfg.verbose);
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let out = StagedDir::new(&cfg.out_dir).map_err(|e| {
        CliError::input(
            format!("cannot create output directory {}: {e}", cfg.out_dir.display()),
            "choose a writable --out",
        )
    })?;
    let mut warnings = Vec::new();

    let viz = smp_viz::Recorder::to_file(&out.path("session.rrd")).map_err(stage("recording"))?;
    viz.set_base_from_head(&base_from_head);

    // 1. The simulated world: patient and camera images.
    let prior = cfg.prior.clone().unwrap_or_default();
    let spec = match &cfg.prior {
        Some(p) if spec.session == 1 => smp_planner::layered_session_spec(&spec, p.session),
        _ => spec,
    };
    let patient =
        SyntheticPatient::generate(&patient_spec).with_prior_dots(prior.healed_dots.clone()).map_err(|e| {
            CliError::failure(format!("cannot put the earlier sessions' dots on the simulated patient: {e}"))
        })?;
    let patient = Arc::new(patient);
    let earlier: Vec<[f64; 3]> = prior.plans.iter().flat_map(|p| p.dots.iter().map(|d| d.position())).collect();
    let render_cfg = smp_sim::render::RenderConfig { seed: patient_spec.seed, ..Default::default() };
    let overview = smp_sim::render::render_overview(&patient, &rig, &base_from_head, &render_cfg);
    stages.done(
        "patient",
        format!("{} ({} follicles in truth)", patient_spec.name, patient.truth_follicles_head().len()),
    );

    // 2. Vision: where is the scalp, where to look closer, what is there.
    let vision_cfg = smp_vision::VisionConfig::default();
    let outline = smp_vision::find_scalp(&overview, &vision_cfg).map_err(stage("vision (overview)"))?;
    viz.log_scalp_outline(&outline.points_base);
    let positions = smp_vision::scan_positions(&rig, &outline, spec.max_tilt_deg, &vision_cfg);
    if positions.is_empty() {
        return Err(CliError::failure("vision: no scan positions: the overview shows no scalp within the rig's reach"));
    }
    let tiles = smp_sim::tiles::render_tiles(&patient, &rig, &base_from_head, &positions, &render_cfg);
    let mut views = vec![overview.clone()];
    views.extend(tiles.iter().cloned());
    viz.log_camera_views(&views);
    stages.done("scan", format!("{} flange tiles", tiles.len()));

    let map_out =
        smp_vision::build_map(&tiles, Some(&overview), &base_from_head, &vision_cfg).map_err(stage("vision (map)"))?;
    let map = map_out.map;
    warnings.extend(map.warnings.iter().map(|w| format!("vision: {w}")));
    viz.log_map(&map);
    write_text(&out.path("map.json"), &to_json(&map)?)?;
    stages.done("map", format!("{} follicles, surface fit rms {:.3} mm", map.follicles.len(), map.surface.fit_rms_mm));

    // 3. Plan session 1.
    // The estimate starts where the simulated arm starts, so it can be held against the
    // controller's clock; the intake gates the plan and picks the pigment.
    let controller_cfg = smp_sim::controller::ControllerConfig {
        time_scale: cfg.time_scale,
        ..smp_sim::controller::ControllerConfig::for_rig(&rig).map_err(stage("simulated controller"))?
    };
    let mut req = smp_planner::PlanRequest::new(&map, &spec, &rig, &base_from_head);
    req.intake = patient_spec.intake.as_ref();
    req.start_machine_mm = controller_cfg.initial_tip_base_mm();
    req.prior_dots_head = &earlier;
    let plan = smp_planner::plan_session_full(&req).map_err(stage("planner"))?.plan;
    warnings.extend(plan.warnings.iter().map(|w| format!("planner: {w}")));
    viz.log_plan(&plan);
    let treatment_area_cm2 = plan.treatment.count('#') as f64 * plan.treatment.cell_mm * plan.treatment.cell_mm / 100.0;
    let plan_file = PlanFile {
        version: smp_core::JSON_FORMAT_VERSION,
        patient: patient_spec.name.clone(),
        sessions: prior.plans.iter().cloned().chain(std::iter::once(plan.clone())).collect(),
    };
    write_text(&out.path("plan.json"), &to_json(&plan_file)?)?;
    stages.done("plan", format!("{} dots over {:.1} cm²", plan.dots.len(), treatment_area_cm2));
    if plan.dots.is_empty() {
        return Err(CliError::failure("planner: the plan has no dots; nothing to run (see plan warnings)"));
    }

    // 4-5. The session: compile, verify, journal and stream over a real pseudo-terminal to the
    // simulated controller, through the same engine as `smp run`.
    let toolpath: Vec<[f64; 3]> = plan.dots.iter().map(|d| d.position()).collect();
    viz.log_toolpath(&toolpath);
    let inputs = smp_session::SessionInputs {
        plan: plan.clone(),
        map: map.clone(),
        rig: rig.clone(),
        base_from_head,
        patient_id: patient_spec.name.clone(),
        journal: smp_session::JournalTarget::New(out.path("session.sqlite")),
        program: out.path("program.nc"),
        execute: smp_motion::ExecuteConfig::default(),
        tracking: Default::default(),
        core: Default::default(),
        expected_dot_mm: smp_core::test_dots::ParameterLimits::default().target_diameter_mm,
    };
    let world_spec = smp_sim::world::WorldSpec {
        patient: Arc::clone(&patient),
        rig: rig.clone(),
        base_from_head,
        scenario: None,
        controller: controller_cfg,
        tracking_hz: 5.0,
        earlier_entries: Vec::new(),
        pigment: smp_sim::world::SessionPigment {
            dwell_s: plan.spec.dwell_s,
            session: plan.session,
            dilution_pct: plan.spec.dilution_pct,
        },
    };
    let mut world = smp_sim::world::SimWorld::new(world_spec).map_err(|e| CliError::failure(e.to_string()))?;
    let cameras = world.cameras().map_err(|e| CliError::failure(e.to_string()))?;
    let observers: Vec<Box<dyn smp_session::Observer + '_>> = vec![
        Box::new(crate::observe::ProgressBar::new(cfg.progress, plan.dots.len() as u64)),
        Box::new(crate::observe::Recording::new(&viz)),
    ];
    let session = {
        let w = smp_session::World { machine: world.machine(), cameras, operator: None, observers };
        smp_session::run_session(&inputs, w).map_err(crate::run_cmd::session_error)?
    };
    let sim_report = world.finish();
    viz.log_entries(&sim_report.entries);
    let mut record = smp_sim::world_record::WorldRecord::load_or_default(&out.path("session.world.json"))
        .map_err(|e| CliError::failure(e.to_string()))?;
    record
        .append_and_save(sim_report.clone(), &out.path("session.world.json"))
        .map_err(|e| CliError::failure(e.to_string()))?;
    let program = session.programs.first().cloned();
    let (program_lines, max_planned_depth) = program.as_ref().map_or((0, 0.0), |p| (p.lines, p.max_depth_mm));
    if session.outcome != "completed" {
        return Err(CliError::failure(format!(
            "streaming: the session ended {}: {}",
            session.outcome,
            session.faults.join("; ")
        )));
    }
    // One stage: the engine compiles, verifies, journals and streams in one call.
    stages.done(
        "session",
        format!(
            "{program_lines} lines verified (max depth {max_planned_depth:.3} mm), {} dots executed, {} lines sent, \
             arm time {:.1} s at x{}",
            session.dots_streamed, session.lines_sent, sim_report.machine_time_s, cfg.time_scale
        ),
    );

    // 6. Mockup on the patient photo.
    write_png(&out.path("overview.png"), &overview.image)?;
    let mockup = smp_planner::render_mockup(&overview, &base_from_head, &[&plan]);
    viz.log_image("mockup", &mockup);
    write_png(&out.path("mockup.png"), &mockup)?;

    // 7. Score against the plan and the simulator's ground truth.
    let planned: Vec<[f64; 3]> = plan.dots.iter().map(|d| d.position()).collect();
    let entries_head: Vec<[f64; 3]> = sim_report.entries.iter().map(|e| e.head_mm).collect();
    let placement = placement_score(&planned, &entries_head, PLACEMENT_MATCH_RADIUS_MM);
    let follicles: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let scored = smp_sim::score::score_detections(&patient, &map, &tiles, &base_from_head);
    let kind = scored.kind;
    // Follicle figures: detections vision called natural against the natural truth.
    let detection = kind.natural;
    let spacing_earlier = if earlier.is_empty() { -1.0 } else { min_spacing_mm(&planned, &earlier, 3.0) };
    let spacing = min_spacing_mm(&planned, &follicles, 3.0);
    let max_depth = sim_report.entries.iter().map(|e: &NeedleEntry| e.depth_mm).fold(0.0, f64::max);

    let viz_stats = viz.finish().map_err(stage("recording"))?;
    stages.done("report", String::new());
    let final_dir = out
        .commit()
        .map_err(|e| CliError::failure(format!("cannot move results into {}: {e}", cfg.out_dir.display())))?;

    Ok(DemoReport {
        patient: patient_name,
        dots_planned: plan.dots.len(),
        dots_executed: placement.dots_executed,
        dots_doubled: placement.dots_doubled,
        dots_missing: placement.dots_missing,
        stray_entries: placement.stray_entries,
        unpowered_contacts: sim_report.unpowered_contacts.len(),
        placement_rms_mm: placement.placement_rms_mm,
        placement_max_mm: placement.placement_max_mm,
        min_spacing_mm: if spacing.is_finite() { spacing } else { -1.0 },
        max_depth_mm: max_depth,
        depth_limit_mm: plan.limits.depth_limit_mm,
        follicles_detected: detection.found,
        follicles_truth_in_view: detection.truth,
        follicle_precision: detection.precision,
        follicle_recall: detection.recall,
        follicle_f1: detection.f1,
        follicle_loc_rms_mm: detection.loc_rms_mm,
        session: plan.session,
        prior_dots_in_view: scored.truth_dots,
        dot_vs_follicle_accuracy: kind.dot_vs_follicle_accuracy,
        min_spacing_to_earlier_mm: spacing_earlier,
        surface_fit_rms_mm: map.surface.fit_rms_mm,
        tiles: tiles.len(),
        treatment_area_cm2,
        journal_executed: session.dots_executed,
        journal_uncertain: session.dots_uncertain,
        program_lines,
        estimated_arm_time_s: plan.estimates.arm_time_s,
        arm_time_s: sim_report.machine_time_s,
        arm_waiting_for_host_s: sim_report.stats.starved_s,
        wall_time_s: stages.started.elapsed().as_secs_f64(),
        stage_times_s: stages.times,
        viz_dropped: viz_stats.dropped,
        warnings,
        files: DEMO_FILES.iter().map(|f| final_dir.join(f).display().to_string()).collect(),
    })
}

/// Runs a simulated course: session 1 as [`run`] does, then for each later session the
/// skin takes the pigment of every needle entry (the patient's skin response), heals for
/// `heal_weeks`, is scanned again (vision must tell the healed dots from follicles), and the
/// next session is planned on that scan, kept clear of every earlier entry, and executed.
/// Session k writes into `out_dir/session-k`.
pub fn run_course(cfg: &DemoConfig, sessions: u32, heal_weeks: f64) -> Result<Vec<DemoReport>, CliError> {
    if !(1..=4).contains(&sessions) {
        return Err(CliError::input(format!("--sessions {sessions} is out of range"), "run 1 to 4 sessions"));
    }
    if !(heal_weeks.is_finite() && (0.0..=520.0).contains(&heal_weeks)) {
        return Err(CliError::input(format!("--heal-weeks {heal_weeks} is not usable"), "give 0 to 520 weeks"));
    }
    let (patient_spec, _, _) = load_inputs(cfg)?;
    let mut prior = PriorSessions::default();
    let mut reports = Vec::new();
    for k in 1..=sessions {
        let dir = cfg.out_dir.join(format!("session-{k}"));
        let sub = DemoConfig {
            out_dir: dir.clone(),
            prior: (k > 1).then(|| PriorSessions { session: k, ..prior.clone() }),
            ..cfg.clone()
        };
        if cfg.verbose {
            eprintln!("session {k} of {sessions}");
        }
        reports.push(run(&sub)?);
        if k == sessions {
            break;
        }
        // What the session left in the skin, from the files it wrote.
        let plan_file = crate::files::read_plan(&dir.join("plan.json"))?;
        let plan = plan_file.sessions.last().cloned().ok_or_else(|| CliError::failure("the session wrote no plan"))?;
        // The world's record of the session (the host's journal holds no needle entries).
        let record = smp_sim::world_record::WorldRecord::load_or_default(&dir.join("session.world.json"))
            .map_err(|e| CliError::failure(e.to_string()))?;
        let (entries, timing) = (record.entries(), record.entry_timing());
        let patient = SyntheticPatient::generate(&patient_spec);
        let fresh = patient.deposit(&smp_sim::skin::DepositInput::for_timed_session(
            &entries,
            &timing,
            plan.spec.dwell_s,
            plan.session,
            plan.spec.dilution_pct,
        ));
        let mut all = prior.healed_dots.clone();
        all.extend(fresh.dots);
        let healed = smp_sim::skin::heal(&all, heal_weeks, &patient_spec.healing, patient_spec.seed ^ u64::from(k));
        if cfg.verbose {
            eprintln!(
                "healed {heal_weeks} weeks: {} dots on the skin, {} faded away, {} merged pairs",
                healed.dots.len(),
                healed.lost.len(),
                fresh.merged.len()
            );
        }
        prior.healed_dots = healed.dots;
        prior.plans.push(plan);
    }
    Ok(reports)
}

/// The checks `smp demo` prints (`ok`/`FAIL`): every dot executed once and none astray,
/// placement, depth within the limit, follicle detection.
pub fn checks(r: &DemoReport) -> [(&'static str, bool); 4] {
    [
        ("dots", r.dots_executed == r.dots_planned && r.dots_doubled == 0 && r.stray_entries == 0),
        ("placement", r.placement_rms_mm < 0.1),
        ("depth", r.max_depth_mm <= r.depth_limit_mm),
        ("follicles", r.follicle_f1 >= 0.9),
    ]
}

/// Whether every check passed (`smp demo` exits non-zero otherwise).
pub fn passed(r: &DemoReport) -> bool {
    checks(r).iter().all(|(_, ok)| *ok)
}

/// The readable summary `smp demo` prints without `--json`.
pub fn summary(r: &DemoReport) -> String {
    let ok = |b: bool| if b { "ok" } else { "FAIL" };
    let [(_, dots_ok), (_, placement_ok), (_, depth_ok), (_, follicles_ok)] = checks(r);
    let mut s = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(s, "SMP demo, session {}, patient {}", r.session, r.patient);
    let _ = writeln!(s, "  dots planned       {:>8}   over {:.1} cm² of crown", r.dots_planned, r.treatment_area_cm2);
    let _ = writeln!(
        s,
        "  dots executed      {:>8}   doubled {}, missing {}, stray entries {}  [{}]",
        r.dots_executed,
        r.dots_doubled,
        r.dots_missing,
        r.stray_entries,
        ok(dots_ok)
    );
    let _ = writeln!(
        s,
        "  placement          rms {:.3} mm, max {:.3} mm  [{}]",
        r.placement_rms_mm,
        r.placement_max_mm,
        ok(placement_ok)
    );
    let _ = writeln!(s, "  min spacing        {:.3} mm (dots and detected follicles)", r.min_spacing_mm);
    if r.session > 1 {
        let _ = writeln!(
            s,
            "  earlier dots       {} in view, dot vs follicle accuracy {:.3}; min spacing to earlier sessions' dots {:.3} mm",
            r.prior_dots_in_view, r.dot_vs_follicle_accuracy, r.min_spacing_to_earlier_mm
        );
    }
    let _ = writeln!(
        s,
        "  max depth          {:.3} mm, limit {:.3} mm  [{}]",
        r.max_depth_mm,
        r.depth_limit_mm,
        ok(depth_ok)
    );
    let _ = writeln!(
        s,
        "  follicles          {} detected, F1 {:.3} (P {:.3}, R {:.3}, loc rms {:.3} mm) vs {} in view  [{}]",
        r.follicles_detected,
        r.follicle_f1,
        r.follicle_precision,
        r.follicle_recall,
        r.follicle_loc_rms_mm,
        r.follicles_truth_in_view,
        ok(follicles_ok)
    );
    let _ = writeln!(
        s,
        "  arm time           {:.1} s simulated (plan estimate {:.1} s), of which {:.1} s waiting for the host",
        r.arm_time_s, r.estimated_arm_time_s, r.arm_waiting_for_host_s
    );
    let _ = writeln!(s, "  wall time          {:.1} s", r.wall_time_s);
    for w in &r.warnings {
        let _ = writeln!(s, "  warning: {w}");
    }
    let _ = writeln!(s, "  files:");
    for f in &r.files {
        let _ = writeln!(s, "    {f}");
    }
    s
}

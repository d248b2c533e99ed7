//! `smp demo`: one complete simulated session, every stage real.
//!
//! synthetic patient -> rendered overview + flange tiles -> vision map -> session-1 plan ->
//! G-code compile + verify -> stream over a real pty to the simulated grbl controller ->
//! journal, recording, mockup, and figures measured against the simulator's ground truth.
//! Ground truth is only read here, after the fact, to score the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use nalgebra::{Isometry3, Point3};
use serde::Serialize;

use smp_core::eval::{kind_score, min_spacing_mm, placement_score};
use smp_core::image::CameraView;
use smp_core::map::{RegionKind, ScalpMap};
use smp_core::plan::{PlanFile, SessionSpec};
use smp_core::rig::Rig;
use smp_core::NeedleEntry;
use smp_sim::patient::{PatientSpec, SyntheticPatient};

use crate::error::{stage, CliError};
use crate::files::{read_text, to_json, write_png, write_text};
use crate::outdir::StagedDir;

/// Match radius for detected follicles against the simulator's truth (issue 2).
pub const FOLLICLE_MATCH_RADIUS_MM: f64 = 0.3;
/// Radius within which a needle entry is credited to a planned dot: well under the 0.9 mm
/// minimum spacing, so an entry can never be credited to a neighbour.
pub const PLACEMENT_MATCH_RADIUS_MM: f64 = 0.4;

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
    pub wall_time_s: f64,
    pub stage_times_s: Vec<(String, f64)>,
    pub viz_dropped: u64,
    pub warnings: Vec<String>,
    pub files: Vec<String>,
}

/// The files every demo writes. `overview.png` is the consultation photo that
/// `smp mockup --photo` draws on.
pub const DEMO_FILES: [&str; 7] =
    ["map.json", "plan.json", "program.nc", "session.sqlite", "session.rrd", "overview.png", "mockup.png"];

/// Loads the inputs before anything is written, so bad input leaves no trace.
pub fn load_inputs(cfg: &DemoConfig) -> Result<(PatientSpec, SessionSpec, String), CliError> {
    let (patient, patient_name) = crate::files::read_sim_patient(cfg.patient.as_deref())?;
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

/// The simulated patient's true skin, as the simulated controller feels it.
pub(crate) struct PatientSkin {
    pub(crate) patient: Arc<SyntheticPatient>,
    pub(crate) base_from_head: Isometry3<f64>,
}

impl smp_sim::controller::Skin for PatientSkin {
    fn surface_z_base(&self, x_mm: f64, y_mm: f64) -> Option<f64> {
        self.patient.surface_z_base(&self.base_from_head, x_mm, y_mm)
    }
    fn head_from_base(&self) -> Isometry3<f64> {
        self.base_from_head.inverse()
    }
}

/// The simulated skin under the needle: the patient at `base_from_head`, moving by the
/// patient file's `[motion]` (breathing, drift) and the scenario's head moves, if any. A
/// still patient gets the plain skin, so runs without motion are unchanged bit for bit.
pub(crate) fn moving_patient_skin(
    patient: Arc<SyntheticPatient>,
    base_from_head: Isometry3<f64>,
    scenario: Option<&smp_sim::faults::FaultScenario>,
) -> Result<Box<dyn smp_sim::controller::Skin>, CliError> {
    let motion = patient_motion(&patient, base_from_head, scenario)?;
    let skin = PatientSkin { patient, base_from_head };
    if motion.is_still() {
        return Ok(Box::new(skin));
    }
    let moving = smp_sim::motion_model::MovingSkin::new(skin, motion)
        .map_err(|e| CliError::input(format!("patient motion: {e}"), "fix [motion] or [[head_moves]]"))?;
    Ok(Box::new(moving))
}

/// How the simulator moves the patient's head during a run: the patient file's `[motion]`
/// (breathing, drift) and the fault scenario's head moves, from the registered pose.
pub(crate) fn patient_motion(
    patient: &SyntheticPatient,
    base_from_head: Isometry3<f64>,
    scenario: Option<&smp_sim::faults::FaultScenario>,
) -> Result<smp_sim::motion_model::HeadMotion, CliError> {
    let spec = patient.spec();
    let motion = match &spec.motion {
        Some(m) => m
            .head_motion(spec.seed)
            .map_err(|e| CliError::input(format!("patient {}: [motion]: {e}", spec.name), "fix the [motion] table"))?,
        None => smp_sim::motion_model::HeadMotion::default(),
    };
    match scenario {
        Some(sc) => motion
            .with_scenario(sc, &base_from_head)
            .map_err(|e| CliError::input(format!("head moves: {e}"), "fix [[head_moves]] in the fault scenario")),
        None => Ok(smp_sim::motion_model::HeadMotion { registered_base_from_head: base_from_head, ..motion }),
    }
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

/// Truth follicles the scan could have seen: inside at least one tile image and on the
/// mapped part of the scalp. Follicles outside every image cannot count against vision.
pub(crate) fn truth_in_view(
    truth_head: &[[f64; 3]],
    normals_head: &[[f64; 3]],
    tiles: &[CameraView],
    map: &ScalpMap,
    base_from_head: &Isometry3<f64>,
) -> Vec<[f64; 3]> {
    truth_head
        .iter()
        .zip(normals_head)
        .filter(|(p, n)| seen_face_on(p, n, tiles, map, base_from_head))
        .map(|(p, _)| *p)
        .collect()
}

/// The map's detections (positions and kinds) on the points [`seen_face_on`] keeps.
pub(crate) fn scored_detections(
    map: &ScalpMap,
    tiles: &[CameraView],
    base_from_head: &Isometry3<f64>,
) -> (Vec<[f64; 3]>, Vec<smp_core::map::FollicleKind>) {
    map.follicles
        .iter()
        .filter(|f| seen_face_on(&f.position(), &f.normal, tiles, map, base_from_head))
        .map(|f| (f.position(), f.kind))
        .unzip()
}

/// True when the point (head frame, outward normal `n`) lies in the map's scalp and some
/// tile images it, 3 px inside the border, within [`TRUTH_MAX_VIEW_ANGLE_DEG`] of its normal.
/// Truth and detections are scored on the same points.
pub(crate) fn seen_face_on(
    p: &[f64; 3],
    n: &[f64; 3],
    tiles: &[CameraView],
    map: &ScalpMap,
    base_from_head: &Isometry3<f64>,
) -> bool {
    let cos_max = TRUTH_MAX_VIEW_ANGLE_DEG.to_radians().cos();
    let p_head = Point3::from(*p);
    let p_patch = map.surface.head_from_patch.inverse() * p_head;
    if map.regions.code_at(p_patch.x, p_patch.y) == RegionKind::Outside.code() {
        return false;
    }
    let p_base = base_from_head * p_head;
    let n_base = base_from_head.rotation * nalgebra::Vector3::from(*n);
    tiles.iter().any(|t| {
        let to_camera = t.base_from_camera.translation.vector - p_base.coords;
        let facing = n_base.dot(&to_camera) >= cos_max * n_base.norm() * to_camera.norm();
        let p_cam = t.base_from_camera.inverse() * p_base;
        facing
            && t.intrinsics.project(&p_cam).is_some_and(|px| {
                // A margin of 3 px: a follicle cut by the border is not a fair miss.
                px.x >= 3.0
                    && px.y >= 3.0
                    && px.x <= t.intrinsics.width_px as f64 - 4.0
                    && px.y <= t.intrinsics.height_px as f64 - 4.0
            })
    })
}

/// A follicle or dot (truth or detection) is scored only where some tile sees it within this
/// angle of its skin normal: seen more obliquely (the fringe of the head's outline in a tile)
/// a 0.3 mm follicle is a sliver no camera resolves, and no plan treats skin that steep.
const TRUTH_MAX_VIEW_ANGLE_DEG: f64 = 70.0;

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
    let tiles = render_tiles(&patient, &rig, &base_from_head, &positions, &render_cfg);
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

    // 4. G-code, verified independently against the map and the limits.
    let program = smp_gcode::compile(&plan, &rig, &base_from_head).map_err(stage("G-code compile"))?;
    let verified = smp_gcode::verify(program, &plan, &map, &rig, &base_from_head).map_err(stage("G-code verify"))?;
    write_text(&out.path("program.nc"), &verified.program().to_nc())?;
    let toolpath: Vec<[f64; 3]> = plan.dots.iter().map(|d| d.position()).collect();
    viz.log_toolpath(&toolpath);
    let vr = verified.report().clone();
    stages.done("gcode", format!("{} lines verified, max depth {:.3} mm", vr.lines, vr.max_depth_mm));

    // 5. Journal and stream to the simulated controller over a real pseudo-terminal.
    let mut journal = smp_store::Journal::create(
        &out.path("session.sqlite"),
        &smp_store::SessionMeta {
            patient: patient_spec.name.clone(),
            session: plan.session,
            rig_name: rig.name.clone(),
            seed: spec.seed,
            plan_json: to_json(&plan)?,
        },
    )
    .map_err(stage("journal"))?;
    journal.insert_plan(&plan).map_err(stage("journal"))?;

    let (host, device) = serialport::TTYPort::pair()
        .map_err(|e| CliError::failure(format!("cannot open a pseudo-terminal pair: {e}")))?;
    let skin = moving_patient_skin(Arc::clone(&patient), base_from_head, None)?;
    let controller =
        smp_sim::controller::SimController::new(controller_cfg, skin).map_err(stage("simulated controller"))?;
    let sim = smp_sim::pty::PtyController::spawn(device, controller)
        .map_err(|e| CliError::failure(format!("cannot start the simulated controller: {e}")))?;

    let bar = progress_bar(cfg.progress, plan.dots.len() as u64);
    let positions_by_id: std::collections::BTreeMap<u32, [f64; 3]> =
        plan.dots.iter().map(|d| (d.id, d.position())).collect();
    let stream_started = Instant::now();
    // Dot states go on the controller's (scaled) clock, the one needle entries carry.
    let time_scale = cfg.time_scale;
    let mut on_progress = |p: smp_motion::Progress| {
        bar.set_position(p.dots_done as u64);
        if let Some(id) = p.last_dot {
            if let Some(pos) = positions_by_id.get(&id) {
                viz.log_dot_state(
                    stream_started.elapsed().as_secs_f64() * time_scale,
                    id,
                    smp_core::plan::DotState::Executed,
                    *pos,
                );
            }
        }
    };
    let exec =
        smp_motion::execute(&verified, host, &mut journal, &smp_motion::ExecuteConfig::default(), &mut on_progress);
    bar.finish_and_clear();
    let sim_report = sim.shutdown();
    let exec = exec.map_err(stage("streaming"))?;
    journal.record_entries(&sim_report.entries, &sim_report.entry_timing).map_err(stage("journal"))?;
    viz.log_entries(&sim_report.entries);
    stages.done(
        "stream",
        format!(
            "{} dots executed, {} lines, arm time {:.1} s at x{}",
            exec.dots_executed, exec.lines_sent, sim_report.machine_time_s, cfg.time_scale
        ),
    );

    // 6. Mockup on the patient photo.
    write_png(&out.path("overview.png"), &overview.image)?;
    let mockup = smp_planner::render_mockup(&overview, &base_from_head, &[&plan]);
    viz.log_image("mockup", &mockup);
    write_png(&out.path("mockup.png"), &mockup)?;

    // 7. Score against the plan and the simulator's ground truth.
    let counts = journal.state_counts().map_err(stage("journal"))?;
    let count = |s| counts.get(&s).copied().unwrap_or(0);
    let planned: Vec<[f64; 3]> = plan.dots.iter().map(|d| d.position()).collect();
    let entries_head: Vec<[f64; 3]> = sim_report.entries.iter().map(|e| e.head_mm).collect();
    let placement = placement_score(&planned, &entries_head, PLACEMENT_MATCH_RADIUS_MM);
    let follicles: Vec<[f64; 3]> = map.follicles.iter().map(|f| f.position()).collect();
    let normals: Vec<[f64; 3]> = patient.truth_follicles().iter().map(|f| f.normal_head).collect();
    let truth = truth_in_view(patient.truth_follicles_head(), &normals, &tiles, &map, &base_from_head);
    let truth_dots =
        truth_in_view(patient.truth_prior_dots_head(), patient.prior_dot_normals(), &tiles, &map, &base_from_head);
    let (scored, kinds) = scored_detections(&map, &tiles, &base_from_head);
    let kind = kind_score(&scored, &kinds, &truth, &truth_dots, FOLLICLE_MATCH_RADIUS_MM);
    // Follicle figures: detections vision called natural against the natural truth.
    let detection = kind.natural;
    let spacing_earlier = if earlier.is_empty() { -1.0 } else { min_spacing_mm(&planned, &earlier, 3.0) };
    let spacing = min_spacing_mm(&planned, &follicles, 3.0);
    let max_depth = sim_report.entries.iter().map(|e: &NeedleEntry| e.depth_mm).fold(0.0, f64::max);

    let outcome = if placement.dots_executed == plan.dots.len() { "completed" } else { "incomplete" };
    journal.end_session(outcome).map_err(stage("journal"))?;
    journal.checkpoint_and_close().map_err(stage("journal"))?;
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
        prior_dots_in_view: truth_dots.len(),
        dot_vs_follicle_accuracy: kind.dot_vs_follicle_accuracy,
        min_spacing_to_earlier_mm: spacing_earlier,
        surface_fit_rms_mm: map.surface.fit_rms_mm,
        tiles: tiles.len(),
        treatment_area_cm2,
        journal_executed: count(smp_core::plan::DotState::Executed),
        journal_uncertain: count(smp_core::plan::DotState::Uncertain),
        program_lines: vr.lines,
        estimated_arm_time_s: plan.estimates.arm_time_s,
        arm_time_s: sim_report.machine_time_s,
        wall_time_s: stages.started.elapsed().as_secs_f64(),
        stage_times_s: stages.times,
        viz_dropped: viz_stats.dropped,
        warnings,
        files: DEMO_FILES.iter().map(|f| final_dir.join(f).display().to_string()).collect(),
    })
}

/// Renders the flange tiles on both cores: the simulator's part of the demo's wall time.
/// Tile `i` is labelled `tile{i:03}`.
pub(crate) fn render_tiles(
    patient: &SyntheticPatient,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    positions: &[[f64; 3]],
    cfg: &smp_sim::render::RenderConfig,
) -> Vec<CameraView> {
    let labelled: Vec<(String, [f64; 3])> =
        positions.iter().enumerate().map(|(i, p)| (format!("tile{i:03}"), *p)).collect();
    render_labelled_tiles(patient, rig, base_from_head, &labelled, cfg)
}

/// Renders flange tiles at labelled positions on up to four threads, in order.
pub(crate) fn render_labelled_tiles(
    patient: &SyntheticPatient,
    rig: &Rig,
    base_from_head: &Isometry3<f64>,
    positions: &[(String, [f64; 3])],
    cfg: &smp_sim::render::RenderConfig,
) -> Vec<CameraView> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    let per = positions.len().div_ceil(workers).max(1);
    let mut out: Vec<Option<CameraView>> = vec![None; positions.len()];
    std::thread::scope(|s| {
        for (w, chunk) in out.chunks_mut(per).enumerate() {
            let start = w * per;
            s.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let (label, p) = &positions[start + k];
                    *slot = Some(smp_sim::render::render_flange_view(patient, rig, base_from_head, *p, label, cfg));
                }
            });
        }
    });
    out.into_iter().flatten().collect()
}

fn progress_bar(enabled: bool, total: u64) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "  stream    [{elapsed_precise}] {wide_bar} {pos}/{len} dots ({eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
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
        let journal = smp_store::Journal::open(&dir.join("session.sqlite")).map_err(stage("journal"))?;
        let entries = journal.entries().map_err(stage("journal"))?;
        let timing = journal.entry_timing().map_err(stage("journal"))?;
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

/// The readable summary `smp demo` prints without `--json`.
pub fn summary(r: &DemoReport) -> String {
    let ok = |b: bool| if b { "ok" } else { "FAIL" };
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
        ok(r.dots_executed == r.dots_planned && r.dots_doubled == 0 && r.stray_entries == 0)
    );
    let _ = writeln!(
        s,
        "  placement          rms {:.3} mm, max {:.3} mm  [{}]",
        r.placement_rms_mm,
        r.placement_max_mm,
        ok(r.placement_rms_mm < 0.1)
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
        ok(r.max_depth_mm <= r.depth_limit_mm)
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
        ok(r.follicle_f1 >= 0.9)
    );
    let _ = writeln!(
        s,
        "  arm time           {:.1} s simulated (plan estimate {:.1} s)",
        r.arm_time_s, r.estimated_arm_time_s
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

//! `smp sim ...`: the simulator as a tool for engineers. `smp sim controller` serves the
//! simulated grbl 1.1h controller on a pseudo-terminal and prints the device path, so any
//! G-code sender (ours with `--port`, or a third-party one) can connect to it.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use smp_sim::controller::{ControllerConfig, SimController};
use smp_sim::patient::{PatientSpec, SyntheticPatient};
use smp_sim::pty::{PtyController, SimReport};

use crate::error::{stage, CliError};
use crate::files::{read_rig, read_text};

/// `smp sim controller` arguments.
#[derive(Debug, Clone)]
pub struct SimControllerArgs {
    pub rig: Option<PathBuf>,
    /// Patient on the head rest whose skin the needle meets (default: the embedded default).
    pub patient: Option<PathBuf>,
    /// Simulated seconds per wall second.
    pub time_scale: f64,
    /// Stop after this many wall seconds instead of waiting for Enter / end of stdin.
    pub seconds: Option<f64>,
    /// Fault scenario (`sim/faults/*.toml`) the controller plays out.
    pub faults: Option<PathBuf>,
    /// Speak Marlin (numbered, checksummed lines, `Resend: N`) instead of grbl.
    pub marlin: bool,
}

/// A controller being served, and the device path a sender opens.
pub struct ServedController {
    pub path: String,
    runner: PtyController,
    /// The device end is held open so the pty does not hang up between senders.
    _device: TTYPort,
}

impl ServedController {
    /// Stops serving and returns what the controller recorded.
    pub fn stop(self) -> SimReport {
        self.runner.shutdown()
    }
}

/// Starts the simulated controller on the host end of a new pty pair.
pub fn serve_controller(a: &SimControllerArgs) -> Result<ServedController, CliError> {
    let rig = read_rig(a.rig.as_deref())?;
    let (spec, _) = crate::sim::read_sim_patient(a.patient.as_deref())?;
    crate::files::check_time_scale(a.time_scale)?;
    let mut cfg = ControllerConfig {
        time_scale: a.time_scale,
        ..ControllerConfig::for_rig(&rig).map_err(|e| {
            CliError::input(format!("simulated controller for rig {}: {e}", rig.name), "fix the rig file")
        })?
    };
    if a.marlin {
        cfg.protocol = smp_sim::controller::ProtocolMode::Marlin;
    }
    let mut scenario_parsed = None;
    if let Some(p) = &a.faults {
        let text = read_text(p, "fault scenario", "faults")?;
        let scenario = smp_sim::faults::FaultScenario::from_toml_str(&text).map_err(|e| {
            CliError::input(format!("{}: {e}", p.display()), "see sim/faults/ for valid scenarios (sim/README.md)")
        })?;
        scenario.apply_to(&mut cfg);
        scenario_parsed = Some(scenario);
    }
    let patient = Arc::new(SyntheticPatient::generate(&spec));
    let motion = smp_sim::world::patient_motion(&patient, rig.base_from_head_nominal(), scenario_parsed.as_ref())
        .map_err(|e| CliError::input(e.to_string(), "fix the patient's [motion] or the scenario's [[head_moves]]"))?;
    let skin = smp_sim::world::moving_patient_skin(patient, rig.base_from_head_nominal(), &motion)
        .map_err(|e| CliError::input(e.to_string(), "fix the patient's [motion]"))?;
    let controller = SimController::new(cfg, skin).map_err(stage("simulated controller"))?;
    let (host, device) =
        TTYPort::pair().map_err(|e| CliError::failure(format!("cannot open a pseudo-terminal pair: {e}")))?;
    let path = device.name().ok_or_else(|| CliError::failure("the pseudo-terminal has no device path to print"))?;
    let runner = PtyController::spawn(host, controller)
        .map_err(|e| CliError::failure(format!("cannot start the simulated controller: {e}")))?;
    Ok(ServedController { path, runner, _device: device })
}

/// One line per figure of a finished run.
pub fn report_summary(r: &SimReport) -> String {
    format!(
        "simulated controller stopped: {} lines received, {} ok, {} errors, alarms {:?}, {} soft resets, \
         {} needle entries, {} unpowered contacts, machine time {:.1} s, flow violations {}\n",
        r.stats.lines_received,
        r.stats.oks_sent,
        r.stats.errors_sent,
        r.stats.alarms,
        r.stats.soft_resets,
        r.entries.len(),
        r.unpowered_contacts.len(),
        r.machine_time_s,
        r.stats.flow_violations,
    )
}

/// `smp sim controller`: prints the device path on stdout (first line, flushed), serves
/// until Enter, end of stdin, or `--seconds`, then prints the run's figures.
pub fn controller(a: &SimControllerArgs) -> Result<String, CliError> {
    let served = serve_controller(a)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", served.path).and_then(|_| out.flush()).map_err(|e| CliError::failure(e.to_string()))?;
    drop(out);
    eprintln!(
        "simulated {} on {} (any baud rate is accepted; time x{}); press Enter or close stdin to stop",
        if a.marlin { "Marlin" } else { "grbl 1.1h" },
        served.path,
        a.time_scale
    );
    match a.seconds {
        Some(s) if s.is_finite() && s >= 0.0 => std::thread::sleep(Duration::from_secs_f64(s)),
        Some(s) => return Err(CliError::input(format!("--seconds {s} is not usable"), "give a duration >= 0")),
        None => {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        }
    }
    Ok(report_summary(&served.stop()))
}

/// `smp sim heal` arguments.
#[derive(Debug, Clone)]
pub struct SimHealArgs {
    /// The patient the session was run on.
    pub patient: PathBuf,
    /// The session's journal (its needle entries and its plan).
    pub journal: PathBuf,
    /// Weeks of healing after the session.
    pub weeks: f64,
    /// Where to write the healed patient file.
    pub out: PathBuf,
}

/// `smp sim heal`: the session's needle entries deposit pigment in the patient's skin (its
/// skin response), every dot on the skin heals for `weeks` (its healing model), and the
/// healed patient is written as a new patient file whose `[[prior_dots]]` list every dot
/// still visible, with its healed size and darkness. Scanning that patient is the follow-up
/// scan the next session is planned from.
pub fn heal(a: &SimHealArgs) -> Result<String, CliError> {
    if !(a.weeks.is_finite() && (0.0..=520.0).contains(&a.weeks)) {
        return Err(CliError::input(format!("--weeks {} is not usable", a.weeks), "give 0 to 520 weeks"));
    }
    let text = read_text(&a.patient, "patient", "patient")?;
    let mut spec = PatientSpec::from_toml_str(&text).map_err(|e| {
        CliError::input(format!("{}: {e}", a.patient.display()), "give the patient file the session was run on")
    })?;
    if !a.journal.is_file() {
        return Err(CliError::input(
            format!("journal {} does not exist", a.journal.display()),
            "give the session.sqlite the session wrote",
        ));
    }
    let journal = smp_store::Journal::open(&a.journal).map_err(|e| {
        CliError::input(format!("{}: {e}", a.journal.display()), "give the session.sqlite the session wrote")
    })?;
    let record = journal.session().map_err(stage("journal"))?;
    let plan: smp_core::plan::SessionPlan = serde_json::from_str(&record.meta.plan_json).map_err(|e| {
        CliError::input(format!("{}: its plan does not parse: {e}", a.journal.display()), "a journal written by smp")
    })?;
    // Where the needle went is the world's record beside the journal, not the host's belief.
    let world_path = smp_sim::world_record::WorldRecord::path_for(&a.journal);
    if !world_path.is_file() {
        return Err(CliError::input(
            format!("{} has no world record {} beside it", a.journal.display(), world_path.display()),
            "heal a session run on the simulator (`smp run --sim` or `smp demo` write it)",
        ));
    }
    let world = smp_sim::world_record::WorldRecord::load_or_default(&world_path)
        .map_err(|e| CliError::input(e.to_string(), "give the world record the simulated session wrote"))?;
    let (entries, timing) = (world.entries(), world.entry_timing());
    let patient = SyntheticPatient::generate(&spec);
    let fresh = patient.deposit(&smp_sim::skin::DepositInput::for_timed_session(
        &entries,
        &timing,
        plan.spec.dwell_s,
        plan.session,
        plan.spec.dilution_pct,
    ));
    let mut all: Vec<smp_sim::skin::PriorDot> = patient.truth_prior_dots().to_vec();
    let earlier = all.len();
    all.extend(fresh.dots.iter().cloned());
    let healed = smp_sim::skin::heal(&all, a.weeks, &spec.healing, spec.seed ^ u64::from(plan.session));
    spec.prior_sessions.clear();
    spec.prior_dots = healed
        .dots
        .iter()
        .map(|d| smp_sim::patient::PriorDotSpec {
            position_head_mm: d.position_head_mm,
            session: d.session,
            weeks_healed: d.weeks_healed,
            diameter_mm: Some(d.diameter_mm),
            darkness: Some(d.darkness),
            dwell_s: plan.spec.dwell_s,
            depth_mm: plan.spec.depth_mm,
            dilution_pct: plan.spec.dilution_pct,
        })
        .collect();
    let toml = spec.to_toml_string().map_err(|e| CliError::failure(format!("cannot write the healed patient: {e}")))?;
    // The file must read back as the patient it describes.
    PatientSpec::from_toml_str(&toml)
        .map_err(|e| CliError::failure(format!("the healed patient file does not read back: {e}")))?;
    crate::files::write_atomically(&a.out, toml.as_bytes())?;
    Ok(format!(
        "{} needle entries deposited {} dots ({} merged pairs, {} blowouts); with {earlier} earlier dots, after {} weeks \
         {} are visible and {} faded away -> {}\n",
        entries.len(),
        fresh.dots.len(),
        fresh.merged.len(),
        fresh.blowouts,
        a.weeks,
        healed.dots.len(),
        healed.lost.len(),
        a.out.display()
    ))
}

/// `smp sim render` arguments.
#[derive(Debug, Clone)]
pub struct SimRenderArgs {
    pub patient: Option<PathBuf>,
    pub rig: Option<PathBuf>,
    pub out: PathBuf,
    /// Flange-camera tiles cover the scalp up to this tilt from the needle's vertical.
    pub max_tilt_deg: f64,
    /// Fault scenario whose `camera_drops` lose frames (retried, then left out).
    pub faults: Option<PathBuf>,
}

/// One image of a render set: where its camera was.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TruthCamera {
    pub label: String,
    pub file: String,
    pub intrinsics: smp_core::camera::CameraIntrinsics,
    pub base_from_camera: smp_core::geometry::PoseSpec,
}

/// One ground-truth item (a follicle or an earlier SMP dot): head frame and, for every image
/// it projects into (facing the camera, inside the frame), its pixel position.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TruthItem {
    pub head_mm: [f64; 3],
    pub diameter_mm: f64,
    pub pixels: BTreeMap<String, [f64; 2]>,
}

/// `truth.json` of `smp sim render`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RenderTruth {
    pub version: u32,
    pub patient: String,
    pub base_from_head: smp_core::geometry::PoseSpec,
    pub cameras: Vec<TruthCamera>,
    pub follicles: Vec<TruthItem>,
    pub prior_dots: Vec<TruthItem>,
    /// ArUco markers on the head band: corners in ArUco order (head frame) and where each
    /// corner would project in each image (markers are not drawn in the images yet).
    pub fiducials: Vec<TruthFiducialItem>,
    /// Each scar's outline as a closed loop of head-frame points (about 1 mm apart), in the
    /// order of the patient file's `[[scars]]`.
    pub scar_outlines_head_mm: Vec<Vec<[f64; 3]>>,
    /// Views whose every frame the fault scenario lost (not in `cameras`).
    pub lost_views: Vec<String>,
}

/// One fiducial marker of `truth.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TruthFiducialItem {
    pub id: u32,
    pub dictionary: String,
    pub size_mm: f64,
    pub corners_head_mm: [[f64; 3]; 4],
    pub corner_pixels: BTreeMap<String, [[f64; 2]; 4]>,
}

fn project_into(
    views: &[smp_core::image::CameraView],
    base_from_head: &nalgebra::Isometry3<f64>,
    p_head: [f64; 3],
    n_head: [f64; 3],
) -> BTreeMap<String, [f64; 2]> {
    let p_base = base_from_head * nalgebra::Point3::from(p_head);
    let n_base = base_from_head * nalgebra::Vector3::from(n_head);
    views
        .iter()
        .filter_map(|v| {
            let p_cam = v.base_from_camera.inverse() * p_base;
            let n_cam = v.base_from_camera.inverse() * n_base;
            if n_cam.dot(&p_cam.coords) >= 0.0 {
                return None; // facing away from this camera
            }
            let px = v.intrinsics.project(&p_cam)?;
            v.intrinsics.contains(&px).then(|| (v.label.clone(), [px.x, px.y]))
        })
        .collect()
}

/// `smp sim render`: the overview photo and the flange-camera scan tiles of a patient as
/// PNG files, with `truth.json`: every camera's pose and intrinsics, every follicle and
/// earlier SMP dot in the head frame and in the pixels of each image that sees it, and the
/// head band's fiducial corners (not drawn in the images yet).
pub fn render(a: &SimRenderArgs) -> Result<String, CliError> {
    let rig = read_rig(a.rig.as_deref())?;
    let (spec, _) = crate::sim::read_sim_patient(a.patient.as_deref())?;
    if !(a.max_tilt_deg.is_finite() && (0.0..=80.0).contains(&a.max_tilt_deg)) {
        return Err(CliError::input(format!("--max-tilt-deg {} is out of range", a.max_tilt_deg), "give 0 to 80"));
    }
    let out = crate::outdir::StagedDir::new(&a.out).map_err(|e| {
        CliError::input(format!("cannot create output directory {}: {e}", a.out.display()), "choose a writable --out")
    })?;
    let drops = match &a.faults {
        Some(p) => {
            let text = read_text(p, "fault scenario", "faults")?;
            smp_sim::faults::FaultScenario::from_toml_str(&text)
                .map_err(|e| {
                    CliError::input(
                        format!("{}: {e}", p.display()),
                        "see sim/faults/ for valid scenarios (sim/README.md)",
                    )
                })?
                .camera_drops
        }
        None => Vec::new(),
    };
    let base_from_head = rig.base_from_head_nominal();
    let patient = Arc::new(SyntheticPatient::generate(&spec));
    let cfg = smp_sim::render::RenderConfig { seed: spec.seed, ..Default::default() };
    let scan = super::scan::capture_sim(&patient, &rig, &base_from_head, a.max_tilt_deg, &cfg, &drops)?;
    // The frames and views.json (what the rig knew: `smp scan` reads them), then the truth.
    super::scan::write_scan(&scan, &out.path(""))?;
    let views: Vec<smp_core::image::CameraView> = scan.attempts.iter().filter_map(|a| a.view.clone()).collect();
    let cameras: Vec<TruthCamera> = views
        .iter()
        .map(|v| TruthCamera {
            label: v.label.clone(),
            file: format!("{}.png", v.label),
            intrinsics: v.intrinsics,
            base_from_camera: smp_core::geometry::PoseSpec::from_isometry(&v.base_from_camera),
        })
        .collect();
    let follicles: Vec<TruthItem> = patient
        .truth_follicles()
        .iter()
        .map(|f| TruthItem {
            head_mm: f.position_head_mm,
            diameter_mm: f.diameter_mm,
            pixels: project_into(&views, &base_from_head, f.position_head_mm, f.normal_head),
        })
        .collect();
    let prior_dots: Vec<TruthItem> = patient
        .truth_prior_dots()
        .iter()
        .map(|d| {
            let p = nalgebra::Point3::from(d.position_head_mm);
            let n = patient.ellipsoid().normal(&p);
            TruthItem {
                head_mm: d.position_head_mm,
                diameter_mm: d.diameter_mm,
                pixels: project_into(&views, &base_from_head, d.position_head_mm, [n.x, n.y, n.z]),
            }
        })
        .collect();
    let fiducials: Vec<TruthFiducialItem> = patient
        .truth_fiducials()
        .iter()
        .map(|f| {
            let normal = f.head_from_marker * nalgebra::Vector3::z();
            let mut corner_pixels = BTreeMap::new();
            for v in &views {
                let px: Vec<[f64; 2]> = f
                    .corners_head_mm
                    .iter()
                    .filter_map(|c| {
                        project_into(std::slice::from_ref(v), &base_from_head, *c, normal.into()).remove(&v.label)
                    })
                    .collect();
                if let Ok(px) = <[[f64; 2]; 4]>::try_from(px) {
                    corner_pixels.insert(v.label.clone(), px);
                }
            }
            TruthFiducialItem {
                id: f.id,
                dictionary: f.dictionary.clone(),
                size_mm: f.size_mm,
                corners_head_mm: f.corners_head_mm,
                corner_pixels,
            }
        })
        .collect();
    let lost_views = scan.lost_views();
    let truth = RenderTruth {
        lost_views: lost_views.clone(),
        version: smp_core::JSON_FORMAT_VERSION,
        patient: spec.name.clone(),
        base_from_head: smp_core::geometry::PoseSpec::from_isometry(&base_from_head),
        cameras,
        follicles,
        prior_dots,
        fiducials,
        scar_outlines_head_mm: smp_sim::render::scar_outlines_head_mm(&patient, 1.0),
    };
    crate::files::write_text(&out.path("truth.json"), &crate::files::to_json(&truth)?)?;
    let (n_views, n_f, n_d) = (views.len(), truth.follicles.len(), truth.prior_dots.len());
    let seen = truth.follicles.iter().filter(|f| !f.pixels.is_empty()).count();
    out.commit().map_err(|e| CliError::failure(format!("cannot move results into {}: {e}", a.out.display())))?;
    let lost = match (scan.frames_lost(), lost_views.is_empty()) {
        (0, _) => String::new(),
        (n, true) => format!("; {n} frames lost and re-captured"),
        (n, false) => format!("; {n} frames lost, views never captured: {}", lost_views.join(", ")),
    };
    Ok(format!(
        "{n_views} images ({} scan tiles) of {}: {n_f} follicles ({seen} in some image), {n_d} earlier dots{lost}; \
         views.json, truth.json -> {}\n",
        scan.tiles().len(),
        spec.name,
        a.out.display()
    ))
}

//! `smp`: the SMP controller's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use smp_cli::demo::{self, DemoConfig};
use smp_cli::error::CliError;

#[derive(Parser)]
#[command(name = "smp", version, about = "Scalp micropigmentation robot controller", after_help = smp_cli::error::EXIT_STATUSES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Calibrate the flange camera (intrinsics, hand-eye) and the needle tip, from images or in the simulator.
    Calibrate {
        #[command(subcommand)]
        what: CalibrateCommand,
    },
    /// Build the scalp map (surface, regions, follicles, skin tone) from a captured scan directory.
    Scan {
        /// Directory with views.json and its frames (`smp sim render --out DIR` writes one).
        #[arg(long)]
        images: PathBuf,
        /// Rig TOML (default: the embedded calibration/rig.toml).
        #[arg(long)]
        rig: Option<PathBuf>,
        /// Where to write map.json.
        #[arg(long)]
        out: PathBuf,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Test dots at a concealed site (simulated): measure, fit this patient's dot size against dwell and depth, choose them.
    Testdots {
        /// Sim patient TOML (default: the embedded sim/patients/default.toml).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Session spec TOML whose depth limit bounds the grid (default: the embedded crown-s1).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// nape, behind_left_ear or behind_right_ear.
        #[arg(long, default_value = "nape")]
        site: String,
        /// Target healed-look dot diameter, mm.
        #[arg(long, default_value_t = 0.45)]
        target_mm: f64,
        /// Write the session spec with the chosen dwell and depth here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Plan session N on a scalp map (gated by the patient's intake) into a plan file.
    Plan {
        /// map.json of the (new) scan; for sessions 2+ the healed scalp.
        #[arg(long)]
        map: PathBuf,
        /// Patient file with an [intake] table (age, hair colour, contraindications).
        #[arg(long)]
        patient: PathBuf,
        /// Session number (1 foundation, 2 layering, 3 density, 4 top-up).
        #[arg(long, default_value_t = 1)]
        session: u32,
        /// Plan file; earlier sessions in it are kept and their dots kept clear of.
        #[arg(long)]
        out: PathBuf,
        /// Session spec TOML (default: the embedded sim/sessions/full-s1.toml, layered to --session).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Rig TOML (default: the embedded calibration/rig.toml).
        #[arg(long)]
        rig: Option<PathBuf>,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Draw the planned dots (predicted healed look) on the patient's photo: the consultation mock-up.
    Mockup {
        /// plan.json written by `smp plan` or `smp demo`.
        #[arg(long)]
        plan: PathBuf,
        /// The overview photo (PNG) the rig's overview camera took, e.g. out/demo/overview.png.
        #[arg(long)]
        photo: PathBuf,
        /// Where to write the mock-up PNG.
        #[arg(long)]
        out: PathBuf,
        /// Rig TOML whose overview camera took the photo (default: the embedded calibration/rig.toml).
        #[arg(long)]
        rig: Option<PathBuf>,
        /// map.json whose registration places the head (default: the rig's nominal head rest).
        #[arg(long)]
        map: Option<PathBuf>,
        /// Draw only this session (repeatable; default: all sessions in the plan).
        #[arg(long)]
        session: Vec<u32>,
        /// Patient file whose [intake] age chose the hairline preset (to draw the same line).
        #[arg(long)]
        patient: Option<PathBuf>,
    },
    /// Re-check a G-code program against its plan, map and rig (depth, feed, region, every dot once).
    Verify {
        /// The program (.nc) to check.
        program: PathBuf,
        /// plan.json the program was compiled from.
        #[arg(long)]
        plan: PathBuf,
        /// map.json the plan was made on.
        #[arg(long)]
        map: PathBuf,
        /// Rig TOML the program was compiled for (default: the embedded calibration/rig.toml);
        /// e.g. calibration/rig-xyzab.toml or calibration/rig-6axis.toml for tilted programs.
        #[arg(long)]
        rig: Option<PathBuf>,
    },
    /// Execute one session of a plan on the arm (--port) or the simulator (--sim), journalled; --resume after a fault.
    Run {
        /// plan.json written by `smp plan` (or `smp demo`).
        #[arg(long)]
        plan: PathBuf,
        /// map.json the plan was made on (the verifier checks every plunge against it).
        #[arg(long)]
        map: PathBuf,
        /// Session of the plan (default: the last one in the file).
        #[arg(long)]
        session: Option<u32>,
        /// Serial device of the arm's controller, e.g. /dev/ttyUSB0 (needs --rig).
        #[arg(long, conflicts_with = "sim", required_unless_present = "sim")]
        port: Option<String>,
        /// Baud rate of --port (default: the rig file's serial.baud).
        #[arg(long)]
        baud: Option<u32>,
        /// Run on the simulated controller over a pseudo-terminal.
        #[arg(long)]
        sim: bool,
        /// Patient on the simulated head rest (--sim; default: the embedded default).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Fault scenario for the simulator (--sim; sim/faults/*.toml).
        #[arg(long)]
        faults: Option<PathBuf>,
        /// Simulated machine seconds per wall second (--sim).
        #[arg(long, default_value_t = 100.0)]
        time_scale: f64,
        /// Rig TOML of the arm: required with --port (its serial.baud is the default baud rate);
        /// with --sim the default is the embedded calibration/rig.toml.
        #[arg(long)]
        rig: Option<PathBuf>,
        /// Session journal (SQLite): created, or with --resume the one to continue.
        #[arg(long, default_value = "session.sqlite")]
        journal: PathBuf,
        /// Continue a session from its journal: only dots still planned are sent.
        #[arg(long)]
        resume: bool,
        /// Host protocol: grbl (character counting), grbl-sr (send-response) or marlin (numbered lines).
        #[arg(long, default_value = "grbl")]
        protocol: smp_motion::Protocol,
        /// Take operator commands and publish telemetry over zenoh on this endpoint (e.g. tcp/127.0.0.1:7447).
        #[arg(long)]
        bus: Option<String>,
        /// Head-band camera rate for tracking (simulator, banded patient), frames per second of
        /// machine time; the simulated machine waits for each frame.
        #[arg(long, default_value_t = 5.0)]
        tracking_hz: f64,
        /// Marlin firmware built with REALTIME_REPORTING_COMMANDS: a pause sends `P000`, which stops the
        /// steppers at once (without it a pause lets the queued moves run on; the report says how far).
        #[arg(long)]
        marlin_realtime: bool,
        /// Print the session's report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The operator's side of the session bus (zenoh): pause, resume, abort, estop, watch.
    Operator {
        #[command(subcommand)]
        what: OperatorAction,
        /// Session id the controller announced on the bus (`smp run --bus` prints it).
        #[arg(long, global = true, default_value = "")]
        session_id: String,
        /// Where the chair's controller listens.
        #[arg(long, global = true, default_value = smp_cli::operator_cmd::DEFAULT_BUS_ENDPOINT)]
        connect: String,
        /// Rig name (the namespace of the session's keys).
        #[arg(long, global = true, default_value = "sim-xyz-default")]
        rig: String,
        /// Who sends the command (recorded with it).
        #[arg(long, global = true, default_value = "operator")]
        operator: String,
        /// Seconds to wait for the controller's answer.
        #[arg(long, global = true, default_value_t = 2.0)]
        timeout: f64,
    },
    /// Resolve dots a fault left uncertain, after looking at their sites (journalled with who and why).
    Resolve {
        /// The session.sqlite of the run that faulted.
        journal: PathBuf,
        /// Dots to resolve (ids from `smp journal FILE`), comma-separated.
        #[arg(long, value_delimiter = ',')]
        dot: Vec<u32>,
        /// Resolve every uncertain dot the same way.
        #[arg(long)]
        all: bool,
        /// What was seen: executed (the dot is there) or skipped (it is not; the next layer fills it).
        #[arg(long = "as")]
        to: smp_cli::resolve_cmd::Resolution,
        /// Who looked.
        #[arg(long)]
        operator: String,
        /// What they saw.
        #[arg(long)]
        reason: String,
    },
    /// Show a session journal: session record, dots per state, needle entries.
    Journal {
        /// The session.sqlite a run wrote.
        file: PathBuf,
    },
    /// Run a complete simulated session: scan, plan, compile, stream to the simulated arm.
    Demo {
        /// Output directory (replaced only when the whole run succeeds).
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
        /// Synthetic patient TOML (default: the embedded sim/patients/default.toml).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Session spec TOML (default: the embedded sim/sessions/crown-s1.toml).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Plan at most this many dots (a small demo).
        #[arg(long)]
        max_dots: Option<u32>,
        /// Simulated machine seconds per wall second.
        #[arg(long, default_value_t = 100.0)]
        time_scale: f64,
        /// Run a course of this many sessions: between sessions the simulated skin takes the
        /// pigment, heals, and is scanned again; each session goes into OUT/session-N.
        #[arg(long, default_value_t = 1)]
        sessions: u32,
        /// Weeks of healing between the sessions of a course.
        #[arg(long, default_value_t = 6.0)]
        heal_weeks: f64,
        /// Print one JSON object with the figures instead of the summary (an array for a course).
        #[arg(long)]
        json: bool,
    },
    /// The simulator as a tool: a controller any G-code sender can connect to.
    Sim {
        #[command(subcommand)]
        what: SimCommand,
    },
    /// Measure a component against the simulator's ground truth.
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Serve the simulated grbl 1.1h controller on a pseudo-terminal; prints the device path.
    Controller {
        /// Rig TOML (axes, dynamics, head rest; default: the embedded calibration/rig.toml).
        #[arg(long)]
        rig: Option<PathBuf>,
        /// Patient on the head rest (default: the embedded sim/patients/default.toml).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Simulated machine seconds per wall second.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// Stop after this many seconds (default: on Enter or end of stdin).
        #[arg(long)]
        seconds: Option<f64>,
        /// Fault scenario to play out (sim/faults/*.toml: byte loss, lost ok, reset, alarm...).
        #[arg(long)]
        faults: Option<PathBuf>,
        /// Firmware to simulate: grbl (grbl 1.1h; a host may stream to it with grbl or grbl-sr) or
        /// marlin (N-numbered lines with checksums, Resend: N).
        #[arg(long, default_value = "grbl")]
        protocol: smp_motion::Protocol,
    },
    /// Render a patient's overview photo and scan tiles (PNG) with truth.json (every follicle in head frame and pixels).
    Render {
        /// Sim patient TOML (default: the embedded sim/patients/default.toml).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Rig TOML (default: the embedded calibration/rig.toml).
        #[arg(long)]
        rig: Option<PathBuf>,
        /// Output directory (replaced only when everything was written).
        #[arg(long)]
        out: PathBuf,
        /// Tiles cover the scalp up to this tilt from the vertical needle, degrees.
        #[arg(long, default_value_t = 35.0)]
        max_tilt_deg: f64,
        /// Fault scenario whose [[camera_drops]] lose frames (each view is retried, then left out).
        #[arg(long)]
        faults: Option<PathBuf>,
    },
    /// Deposit a session's needle entries in the simulated skin, heal N weeks, write the healed patient.
    Heal {
        /// The patient file the session ran on.
        #[arg(long)]
        patient: PathBuf,
        /// The session's session.sqlite.
        #[arg(long)]
        journal: PathBuf,
        /// Weeks of healing.
        #[arg(long)]
        weeks: f64,
        /// The healed patient file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Feed hold now; the session waits in Paused.
    Pause,
    /// Continue a paused session.
    Resume,
    /// Stop the session: hold, reset, dots in flight left uncertain (never resent).
    Abort,
    /// Emergency stop: soft reset at once.
    Estop,
    /// Print the session's telemetry for SECONDS (or until it ends).
    Watch {
        /// Seconds to watch (or until the session ends).
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
    },
}

#[derive(Subcommand)]
enum CalibrateCommand {
    /// The whole calibration in the simulator, scored against the rig's true parameters.
    Sim {
        /// Hand-eye views (poses of a 6-axis arm around the board).
        #[arg(long, default_value_t = 15)]
        views: usize,
        /// Gaussian corner noise added to the hand-eye views, px.
        #[arg(long, default_value_t = 0.2)]
        noise_px: f64,
        /// Gaussian corner noise added to the intrinsics views, px.
        #[arg(long, default_value_t = 0.0)]
        intrinsics_noise_px: f64,
        /// Seed of the simulated views and their noise.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the views (intrinsics/, hand-eye/ with poses.toml) and the calibration files here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Camera matrix and distortion from ChArUco board views (PNG files in a directory).
    Intrinsics {
        /// Directory of ChArUco board views (PNG).
        #[arg(long)]
        images: PathBuf,
        /// Board TOML (default: the embedded calibration/charuco.toml).
        #[arg(long)]
        board: Option<PathBuf>,
        /// Calibration file (TOML) to write.
        #[arg(long)]
        out: PathBuf,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Needle tip (tool centre point) from flange poses holding the tip on one point.
    Tcp {
        /// Pivot file: version = 1, [[poses]] translation_mm, rpy_deg (base_from_flange).
        #[arg(long)]
        poses: PathBuf,
        /// Calibration file (TOML) to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Camera-to-flange transform (AX = XB) from board views and the arm's flange poses.
    HandEye {
        /// Directory of ChArUco board views (PNG).
        #[arg(long)]
        images: PathBuf,
        /// poses.toml: [[views]] image = "view00.png", base_from_flange = { translation_mm, rpy_deg }.
        #[arg(long)]
        poses: PathBuf,
        /// The intrinsics file `smp calibrate intrinsics` wrote.
        #[arg(long)]
        intrinsics: PathBuf,
        /// Board TOML (default: the embedded calibration/charuco.toml).
        #[arg(long)]
        board: Option<PathBuf>,
        /// Calibration file (TOML) to write.
        #[arg(long)]
        out: PathBuf,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Vision against the simulator's truth: render the patient, scan, score (follicles, regions, tone, surface, speed).
    Vision {
        /// Sim patient TOML (default: the embedded sim/patients/default.toml).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Fault scenario whose [[camera_drops]] lose frames during the scan.
        #[arg(long)]
        faults: Option<PathBuf>,
        /// Tiles cover the scalp up to this tilt from the vertical needle, degrees.
        #[arg(long, default_value_t = 35.0)]
        max_tilt_deg: f64,
        /// Score N random patients (none in the repository: Norwood 2-7, Fitzpatrick I-VI, all hair colours) instead.
        #[arg(long)]
        random: Option<u32>,
        /// First seed of the random patients.
        #[arg(long, default_value_t = 1000)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The planner on a full head made from the patient's ground truth: sessions 1..N in a row.
    Planner {
        /// Sim patient TOML (default: the embedded sim/patients/default.toml).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Plan at most this many dots per session (a quick run).
        #[arg(long)]
        max_dots: Option<u32>,
        /// Sessions to plan, each on the map healed after the ones before (1-3).
        #[arg(long, default_value_t = 3)]
        sessions: u32,
        /// Session-1 spec TOML (default: the embedded sim/sessions/full-s1.toml).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The dot cycle of each rig profile on a full-head session: the planner's estimate, the
    /// simulated controller over the first dots (real pty), and the floor the session's feeds allow.
    Motion {
        /// Sim patient TOML (default: the embedded sim/patients/default.toml).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Session-1 spec TOML (default: the embedded sim/sessions/full-s1.toml).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Rig file to measure; repeat for several (default: calibration/rig.toml, rig-xyzab.toml, rig-6axis.toml).
        #[arg(long)]
        rig: Vec<PathBuf>,
        /// Dots of each plan run on the simulated controller (0: the estimate only).
        #[arg(long, default_value_t = 100)]
        sim_dots: usize,
        /// The target: this many dots ...
        #[arg(long, default_value_t = 30_000)]
        target_dots: u32,
        /// ... in this many minutes of arm time.
        #[arg(long, default_value_t = 60.0)]
        target_min: f64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn print_json_or<T: serde::Serialize>(r: Result<T, CliError>, json: bool, text: impl Fn(&T) -> String) -> ExitCode {
    match r {
        Ok(v) if json => match serde_json::to_string(&v) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => report(&CliError::failure(format!("cannot serialise the report: {e}"))),
        },
        Ok(v) => {
            print!("{}", text(&v));
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

fn print_or_report(r: Result<String, CliError>) -> ExitCode {
    match r {
        Ok(s) => {
            print!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

fn report(err: &CliError) -> ExitCode {
    eprintln!("error: {}", err.message);
    if let Some(h) = &err.hint {
        eprintln!("hint: {h}");
    }
    ExitCode::from(err.exit_code.clamp(1, 255) as u8)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { out, patient, spec, max_dots, time_scale, sessions, heal_weeks, json } => {
            let cfg = DemoConfig {
                out_dir: out,
                patient,
                session: spec,
                max_dots,
                time_scale,
                progress: !json,
                verbose: !json,
                prior: None,
            };
            // A failed check is printed and also ends in a non-zero exit status.
            let (code, passed) = if sessions > 1 {
                let r = demo::run_course(&cfg, sessions, heal_weeks);
                let passed = r.as_ref().map_or(true, |rs| rs.iter().all(demo::passed));
                (print_json_or(r, json, |rs| rs.iter().map(demo::summary).collect::<Vec<_>>().join("\n")), passed)
            } else {
                let r = demo::run(&cfg);
                let passed = r.as_ref().map_or(true, demo::passed);
                (print_json_or(r, json, demo::summary), passed)
            };
            if !passed && code == ExitCode::SUCCESS {
                eprintln!("error: a check failed (marked FAIL above)");
                return ExitCode::from(smp_cli::error::EXIT_FAILURE as u8);
            }
            code
        }
        Command::Plan { map, patient, session, out, spec, rig, json } => {
            let a = smp_cli::planning::PlanArgs { map, patient, session, out, spec, rig };
            print_json_or(smp_cli::planning::plan(&a), json, smp_cli::planning::session_summary)
        }
        Command::Eval { what: EvalCommand::Vision { patient, faults, max_tilt_deg, random, seed, json } } => {
            let a = smp_cli::eval::vision::EvalVisionArgs { patient, faults, max_tilt_deg, random, seed };
            match random {
                Some(n) => print_json_or(
                    smp_cli::eval::vision::eval_vision_random(&a, n),
                    json,
                    smp_cli::eval::vision::eval_vision_course_summary,
                ),
                None => print_json_or(
                    smp_cli::eval::vision::eval_vision(&a),
                    json,
                    smp_cli::eval::vision::eval_vision_summary,
                ),
            }
        }
        Command::Calibrate {
            what: CalibrateCommand::Sim { views, noise_px, intrinsics_noise_px, seed, out, json },
        } => {
            let a = smp_cli::sim::calibrate::CalibrateSimArgs { views, noise_px, intrinsics_noise_px, seed, out };
            print_json_or(smp_cli::sim::calibrate::sim(&a), json, smp_cli::sim::calibrate::sim_summary)
        }
        Command::Calibrate { what: CalibrateCommand::Tcp { poses, out } } => {
            print_or_report(smp_cli::calibrate_cmd::tcp(&poses, &out))
        }
        Command::Calibrate { what: CalibrateCommand::Intrinsics { images, board, out, json } } => {
            let a = smp_cli::calibrate_cmd::IntrinsicsArgs { images, board, out };
            print_json_or(smp_cli::calibrate_cmd::intrinsics(&a), json, smp_cli::calibrate_cmd::intrinsics_summary)
        }
        Command::Calibrate { what: CalibrateCommand::HandEye { images, poses, intrinsics, board, out, json } } => {
            let a = smp_cli::calibrate_cmd::HandEyeArgs { images, poses, intrinsics, board, out };
            print_json_or(smp_cli::calibrate_cmd::hand_eye(&a), json, smp_cli::calibrate_cmd::hand_eye_summary)
        }
        Command::Operator { what, session_id, connect, rig, operator, timeout } => {
            let a =
                smp_cli::operator_cmd::OperatorArgs { session: session_id, connect, rig, operator, timeout_s: timeout };
            let r = match what {
                OperatorAction::Pause => smp_cli::operator_cmd::send(&a, smp_bus::OperatorCommand::Pause),
                OperatorAction::Resume => smp_cli::operator_cmd::send(&a, smp_bus::OperatorCommand::Resume),
                OperatorAction::Abort => smp_cli::operator_cmd::send(&a, smp_bus::OperatorCommand::Abort),
                OperatorAction::Estop => smp_cli::operator_cmd::send(&a, smp_bus::OperatorCommand::EmergencyStop),
                OperatorAction::Watch { seconds } => smp_cli::operator_cmd::watch(&a, seconds),
            };
            print_or_report(r)
        }
        Command::Testdots { patient, spec, site, target_mm, out, json } => {
            let a = smp_cli::sim::testdots::TestDotsArgs { patient, session: spec, site, target_mm, out };
            print_json_or(smp_cli::sim::testdots::test_dots(&a), json, smp_cli::sim::testdots::test_dots_summary)
        }
        Command::Scan { images, rig, out, json } => {
            let a = smp_cli::scan_cmd::ScanArgs { images, rig, out };
            print_json_or(smp_cli::scan_cmd::scan(&a), json, smp_cli::scan_cmd::scan_summary)
        }
        Command::Eval { what: EvalCommand::Planner { patient, max_dots, sessions, spec, json } } => {
            let a = smp_cli::eval::planner::EvalPlannerArgs { patient, dots: max_dots, sessions, spec };
            print_json_or(smp_cli::eval::planner::eval_planner(&a), json, smp_cli::eval::planner::eval_summary)
        }
        Command::Eval { what: EvalCommand::Motion { patient, spec, rig, sim_dots, target_dots, target_min, json } } => {
            let a =
                smp_cli::eval::motion::EvalMotionArgs { patient, spec, rigs: rig, sim_dots, target_dots, target_min };
            print_json_or(smp_cli::eval::motion::eval_motion(&a), json, smp_cli::eval::motion::eval_motion_summary)
        }
        Command::Mockup { plan, photo, out, rig, map, session, patient } => {
            let a = smp_cli::planning::MockupArgs { plan, photo, out, rig, map, sessions: session, patient };
            print_or_report(smp_cli::planning::mockup(&a))
        }
        Command::Sim { what: SimCommand::Controller { rig, patient, time_scale, seconds, faults, protocol } } => {
            let marlin = protocol == smp_motion::Protocol::Marlin;
            let a = smp_cli::sim::cmd::SimControllerArgs { rig, patient, time_scale, seconds, faults, marlin };
            print_or_report(smp_cli::sim::cmd::controller(&a))
        }
        Command::Sim { what: SimCommand::Heal { patient, journal, weeks, out } } => {
            let a = smp_cli::sim::cmd::SimHealArgs { patient, journal, weeks, out };
            print_or_report(smp_cli::sim::cmd::heal(&a))
        }
        Command::Sim { what: SimCommand::Render { patient, rig, out, max_tilt_deg, faults } } => {
            let a = smp_cli::sim::cmd::SimRenderArgs { patient, rig, out, max_tilt_deg, faults };
            print_or_report(smp_cli::sim::cmd::render(&a))
        }
        Command::Run {
            plan,
            map,
            session,
            port,
            baud,
            sim,
            patient,
            faults,
            time_scale,
            rig,
            journal,
            resume,
            protocol,
            bus,
            tracking_hz,
            marlin_realtime,
            json,
        } => {
            let target = match port {
                Some(path) if !sim => smp_cli::run_cmd::Target::Port { path, baud },
                _ => smp_cli::run_cmd::Target::Sim { patient, faults, time_scale },
            };
            let a = smp_cli::run_cmd::RunArgs {
                plan,
                map,
                session,
                target,
                rig,
                journal,
                resume,
                protocol,
                bus,
                tracking_hz,
                marlin_realtime,
            };
            let r = smp_cli::run_cmd::run(&a);
            let failed = matches!(&r, Ok(rep) if rep.session.dots_executed < rep.session.dots_planned
                    || rep.score.as_ref().is_some_and(|s| s.stray_entries > 0 || s.dots_doubled > 0));
            let code = print_json_or(r, json, smp_cli::run_cmd::summary);
            if failed && code == ExitCode::SUCCESS {
                return ExitCode::from(smp_cli::error::EXIT_FAILURE as u8);
            }
            code
        }
        Command::Resolve { journal, dot, all, to, operator, reason } => {
            let a = smp_cli::resolve_cmd::ResolveArgs { journal, dots: dot, all, to, operator, reason };
            print_or_report(smp_cli::resolve_cmd::resolve(&a))
        }
        Command::Journal { file } => print_or_report(smp_cli::inspect::journal(&file)),
        Command::Verify { program, plan, map, rig } => {
            print_or_report(smp_cli::inspect::verify(&program, &plan, &map, rig.as_deref()))
        }
    }
}

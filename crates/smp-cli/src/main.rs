//! `smp`: the SMP controller's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use smp_cli::demo::{self, DemoConfig};
use smp_cli::error::CliError;

#[derive(Parser)]
#[command(name = "smp", version, about = "Scalp micropigmentation robot controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        session: Option<PathBuf>,
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
    /// Show a session journal: session record, dots per state, needle entries.
    Journal {
        /// The session.sqlite a run wrote.
        file: PathBuf,
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
    /// Execute one session of a plan on the arm (--port) or the simulator (--sim), journalled; --resume after a fault.
    Run {
        #[arg(long)]
        plan: PathBuf,
        /// map.json the plan was made on (the verifier checks every plunge against it).
        #[arg(long)]
        map: PathBuf,
        /// Session of the plan (default: the last one in the file).
        #[arg(long)]
        session: Option<u32>,
        /// Serial device of the arm's controller, e.g. /dev/ttyUSB0.
        #[arg(long, conflicts_with = "sim", required_unless_present = "sim")]
        port: Option<String>,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Run on the simulated controller over a pseudo-terminal.
        #[arg(long)]
        sim: bool,
        /// Patient on the simulated head rest (--sim; default: the embedded default).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// Fault scenario for the simulator (--sim; sim/faults/*.toml).
        #[arg(long)]
        faults: Option<PathBuf>,
        #[arg(long, default_value_t = 100.0)]
        time_scale: f64,
        #[arg(long)]
        rig: Option<PathBuf>,
        /// Session journal (SQLite): created, or with --resume the one to continue.
        #[arg(long, default_value = "session.sqlite")]
        journal: PathBuf,
        /// Continue a session from its journal: only dots still planned are sent.
        #[arg(long)]
        resume: bool,
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
        #[arg(long)]
        json: bool,
    },
    /// Re-check a G-code program against its plan and map (depth, feed, region, every dot once).
    Verify {
        /// The program (.nc) to check.
        program: PathBuf,
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        map: PathBuf,
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
        /// Speak Marlin (N-numbered lines with checksums, Resend: N) instead of grbl 1.1.
        #[arg(long)]
        marlin: bool,
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
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The planner on a full head made from the patient's ground truth: sessions 1..N in a row.
    Planner {
        /// Sim patient TOML (default: the embedded sim/patients/default.toml).
        #[arg(long)]
        patient: Option<PathBuf>,
        /// At most this many dots per session (a quick run).
        #[arg(long)]
        dots: Option<u32>,
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
        Command::Demo { out, patient, session, max_dots, time_scale, sessions, heal_weeks, json } => {
            let cfg = DemoConfig {
                out_dir: out,
                patient,
                session,
                max_dots,
                time_scale,
                progress: !json,
                verbose: !json,
                prior: None,
            };
            if sessions > 1 {
                let r = demo::run_course(&cfg, sessions, heal_weeks);
                return print_json_or(r, json, |rs| rs.iter().map(demo::summary).collect::<Vec<_>>().join("\n"));
            }
            print_json_or(demo::run(&cfg), json, demo::summary)
        }
        Command::Plan { map, patient, session, out, spec, rig, json } => {
            let a = smp_cli::planning::PlanArgs { map, patient, session, out, spec, rig };
            print_json_or(smp_cli::planning::plan(&a), json, smp_cli::planning::session_summary)
        }
        Command::Eval { what: EvalCommand::Vision { patient, faults, max_tilt_deg, json } } => {
            let a = smp_cli::scan_cmd::EvalVisionArgs { patient, faults, max_tilt_deg };
            print_json_or(smp_cli::scan_cmd::eval_vision(&a), json, smp_cli::scan_cmd::eval_vision_summary)
        }
        Command::Scan { images, rig, out, json } => {
            let a = smp_cli::scan_cmd::ScanArgs { images, rig, out };
            print_json_or(smp_cli::scan_cmd::scan(&a), json, smp_cli::scan_cmd::scan_summary)
        }
        Command::Eval { what: EvalCommand::Planner { patient, dots, sessions, spec, json } } => {
            let a = smp_cli::planning::EvalPlannerArgs { patient, dots, sessions, spec };
            print_json_or(smp_cli::planning::eval_planner(&a), json, smp_cli::planning::eval_summary)
        }
        Command::Mockup { plan, photo, out, rig, map, session, patient } => {
            let a = smp_cli::planning::MockupArgs { plan, photo, out, rig, map, sessions: session, patient };
            print_or_report(smp_cli::planning::mockup(&a))
        }
        Command::Sim { what: SimCommand::Controller { rig, patient, time_scale, seconds, faults, marlin } } => {
            let a = smp_cli::sim_cmd::SimControllerArgs { rig, patient, time_scale, seconds, faults, marlin };
            print_or_report(smp_cli::sim_cmd::controller(&a))
        }
        Command::Sim { what: SimCommand::Heal { patient, journal, weeks, out } } => {
            let a = smp_cli::sim_cmd::SimHealArgs { patient, journal, weeks, out };
            print_or_report(smp_cli::sim_cmd::heal(&a))
        }
        Command::Sim { what: SimCommand::Render { patient, rig, out, max_tilt_deg, faults } } => {
            let a = smp_cli::sim_cmd::SimRenderArgs { patient, rig, out, max_tilt_deg, faults };
            print_or_report(smp_cli::sim_cmd::render(&a))
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
            json,
        } => {
            let target = match port {
                Some(path) if !sim => smp_cli::run_cmd::Target::Port { path, baud },
                _ => smp_cli::run_cmd::Target::Sim { patient, faults, time_scale },
            };
            let a = smp_cli::run_cmd::RunArgs { plan, map, session, target, rig, journal, resume };
            let r = smp_cli::run_cmd::run(&a);
            let failed =
                matches!(&r, Ok(rep) if rep.dots_executed < rep.dots_planned || rep.stray_entries.unwrap_or(0) > 0);
            let code = print_json_or(r, json, smp_cli::run_cmd::summary);
            if failed && code == ExitCode::SUCCESS {
                return ExitCode::from(smp_cli::error::EXIT_FAILURE as u8);
            }
            code
        }
        Command::Journal { file } => print_or_report(smp_cli::inspect::journal(&file)),
        Command::Verify { program, plan, map } => print_or_report(smp_cli::inspect::verify(&program, &plan, &map)),
    }
}

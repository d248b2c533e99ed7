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
        /// Print one JSON object with the figures instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Show a session journal: session record, dots per state, needle entries.
    Journal {
        /// The session.sqlite a run wrote.
        file: PathBuf,
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
        Command::Demo { out, patient, session, max_dots, time_scale, json } => {
            let cfg =
                DemoConfig { out_dir: out, patient, session, max_dots, time_scale, progress: !json, verbose: !json };
            match demo::run(&cfg) {
                Ok(r) => {
                    if json {
                        match serde_json::to_string(&r) {
                            Ok(s) => println!("{s}"),
                            Err(e) => return report(&CliError::failure(format!("cannot serialise the report: {e}"))),
                        }
                    } else {
                        print!("{}", demo::summary(&r));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
        Command::Mockup { plan, photo, out, rig, map, session } => {
            let a = smp_cli::planning::MockupArgs { plan, photo, out, rig, map, sessions: session };
            print_or_report(smp_cli::planning::mockup(&a))
        }
        Command::Journal { file } => print_or_report(smp_cli::inspect::journal(&file)),
        Command::Verify { program, plan, map } => print_or_report(smp_cli::inspect::verify(&program, &plan, &map)),
    }
}

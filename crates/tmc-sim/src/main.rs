//! `tmc-sim`: place workloads on a fleet offline and explain the result.
//!
//! Exit codes: 0 on success (whatever the phases), 2 on bad input (unreadable file, invalid
//! YAML, validation errors, bad flags), 1 on an internal error.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tmc_core::solve_validated;
use tmc_sim::{
    DEFAULT_SCENARIO, load_scenario,
    render::{Format, render},
};

#[derive(Parser)]
#[command(name = "tmc-sim", version, about = "Offline multi-cluster placement: solve and explain scenarios.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Place the workloads of a scenario and print the decisions.
    Place {
        /// Scenario YAML with `clusters`, `workloads` and optionally `previous`.
        scenario: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Yaml,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Json => Format::Json,
            OutputFormat::Yaml => Format::Yaml,
        }
    }
}

/// An error that maps to exit code 2.
struct InputError(anyhow::Error);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(e)) => {
            eprintln!("error: {:#}", e.0);
            ExitCode::from(2)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Input(InputError),
    Internal(anyhow::Error),
}

fn run(cli: Cli) -> Result<(), Failure> {
    let (text, origin, format) = match cli.command {
        None => {
            eprintln!("tmc-sim: no command given; placing the embedded default scenario (multi-region web shop).");
            eprintln!(
                "         Try `tmc-sim place examples/scenarios/gpu-training/scenario.yaml` or `tmc-sim --help`."
            );
            (DEFAULT_SCENARIO.to_string(), "embedded default scenario".to_string(), Format::Table)
        }
        Some(Command::Place { scenario, format }) => {
            let text = std::fs::read_to_string(&scenario)
                .with_context(|| format!("cannot read {}", scenario.display()))
                .map_err(|e| Failure::Input(InputError(e)))?;
            (text, scenario.display().to_string(), format.into())
        }
    };
    let input =
        load_scenario(&text).with_context(|| format!("in {origin}")).map_err(|e| Failure::Input(InputError(e)))?;
    let plan = solve_validated(&input);
    let out = render(&plan, format).map_err(|e| Failure::Internal(e.into()))?;
    print!("{out}");
    Ok(())
}

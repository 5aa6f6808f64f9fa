//! `tmc-sim`: place workloads on a fleet offline, replay failures on a virtual clock, explain
//! decisions and compare scenarios.
//!
//! Exit codes: 0 on success (whatever the phases), 2 on bad input (unreadable file, invalid
//! YAML, validation errors, unknown workload, bad flags), 1 on an internal error (including a
//! report or generated scenario that cannot be written).

use std::{
    io::{IsTerminal as _, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum, builder::RangedU64ValueParser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tmc_core::{ExactError, ExactOptions, solve_exact, solve_validated};
use tmc_sim::{
    DEFAULT_SCENARIO, Scenario, SimError, diff, explain,
    generate::{Contention, GenerateConfig, scenario_yaml},
    load_sim_scenario,
    render::{Format, Timing, render_timed},
    report::render_report,
    simulate,
    summary::{RunFormat, render_run},
    timeline::{SimTime, parse_workload_key},
};

#[derive(Parser)]
#[command(
    name = "tmc-sim",
    version,
    about = "Offline multi-cluster placement: solve scenarios, replay failures on a virtual clock, explain and compare.",
    after_help = "Without a command, runs the embedded default scenario (40 clusters, 200 workloads, a region outage and its recovery), prints the summary and writes an HTML report."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Place the workloads of a scenario (its initial state) and print the decisions.
    ///
    /// JSON and YAML: top-level `objective` (replicas placed, weighted by priority), `bound` (an
    /// upper bound on the objective of any plan for the scenario), `gap` (`(bound - objective) /
    /// bound`), `placements`, and `timing.solveMs`: wall-clock milliseconds spent in the solver
    /// (reading, validating and printing the scenario excluded). The table ends with the same as a
    /// footer line. Everything but the timing is the same for the same scenario.
    Place {
        /// Scenario YAML with `clusters`, `workloads` and optionally `previous` (a `timeline` is
        /// checked but not run).
        scenario: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Solve to optimality as one mixed-integer program (microlp) instead of the fast solver:
        /// for small scenarios and for measuring the fast solver (`bound` is then the optimum).
        #[arg(long)]
        exact: bool,
        /// With `--exact`: refuse programs with more variables than this.
        #[arg(long, value_name = "N", default_value_t = ExactOptions::default().max_variables, requires = "exact")]
        max_variables: usize,
    },
    /// Replay a scenario's timeline on a virtual clock as the controller would, and summarize.
    Run {
        /// Scenario YAML; the embedded default when absent.
        scenario: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RunOutput::Table)]
        format: RunOutput,
        /// Also write a self-contained HTML report with charts to this file.
        #[arg(long, value_name = "FILE.html")]
        report: Option<PathBuf>,
    },
    /// Explain a workload cluster by cluster, with the smallest changes that would place it fully.
    Explain {
        /// Scenario YAML.
        scenario: PathBuf,
        /// The workload, as `namespace/name` (or `name` in the default namespace).
        workload: String,
        /// Explain the state at this time of the timeline (`90s`, `10m`) instead of the start.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RunOutput::Table)]
        format: RunOutput,
    },
    /// Write a synthetic scenario: a realistic fleet and workloads of any size, as YAML.
    ///
    /// The same flags always give the same bytes. The scenario uses every placement feature
    /// (selectors, taints, spread, division, fallbacks, priorities, GPUs); the replica counts are
    /// scaled so that total cpu demand is about 30-50 % (`low`) or 90-120 % (`high`) of the free
    /// cpu of the schedulable clusters. `tmc-sim place`, `run`, `explain` and `diff` read it.
    Generate {
        /// Number of clusters (1 to 100000).
        #[arg(long, value_name = "N", allow_negative_numbers = true,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_CLUSTERS))]
        clusters: usize,
        /// Number of workloads (0 to 1000000).
        #[arg(long, value_name = "M", allow_negative_numbers = true,
              value_parser = RangedU64ValueParser::<usize>::new().range(0..=MAX_WORKLOADS))]
        workloads: usize,
        /// Seed of the pseudo-random generator (0 to 18446744073709551615).
        #[arg(long, value_name = "S", allow_negative_numbers = true)]
        seed: u64,
        /// Demand relative to the fleet's free capacity.
        #[arg(long, value_enum, default_value_t = ContentionArg::Low)]
        contention: ContentionArg,
        /// Write the scenario to FILE instead of stdout. The file is replaced only once the whole
        /// scenario is written (through a temporary file in the same directory).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Compare the decisions of two scenarios and the moves the change would cause.
    Diff {
        /// The scenario before the change.
        before: PathBuf,
        /// The scenario after the change.
        after: PathBuf,
        /// Solve AFTER from scratch instead of starting from BEFORE's decisions.
        #[arg(long)]
        fresh: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RunOutput::Table)]
        format: RunOutput,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Yaml,
}

/// Largest `--clusters` of `generate`.
const MAX_CLUSTERS: u64 = 100_000;
/// Largest `--workloads` of `generate`.
const MAX_WORKLOADS: u64 = 1_000_000;

#[derive(Clone, Copy, ValueEnum)]
enum ContentionArg {
    /// Total demand about 30-50 % of the free capacity: nearly everything fits.
    Low,
    /// Total demand about 90-120 % of the free capacity: priorities and fallbacks matter.
    High,
}

impl From<ContentionArg> for Contention {
    fn from(c: ContentionArg) -> Self {
        match c {
            ContentionArg::Low => Contention::Low,
            ContentionArg::High => Contention::High,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum RunOutput {
    Table,
    Json,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A failure and its exit code: bad input (2) or anything else (1).
enum Failure {
    Input(anyhow::Error),
    Internal(anyhow::Error),
}

fn input_error(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Input(e.into())
}

fn internal(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Internal(e.into())
}

/// Reads and fully checks a scenario file.
fn load(path: &Path) -> Result<Scenario, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(input_error)?;
    load_sim_scenario(&text).with_context(|| format!("in {}", path.display())).map_err(input_error)
}

fn embedded_default() -> Result<Scenario, Failure> {
    load_sim_scenario(DEFAULT_SCENARIO).context("in the embedded default scenario").map_err(internal)
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        None => {
            let report = default_report_path();
            eprintln!(
                "tmc-sim: no command given; running the embedded default scenario (40 clusters, 200 workloads, a region outage and its recovery)."
            );
            eprintln!(
                "         Try `tmc-sim --help`, or `tmc-sim run examples/scenarios/multi-region-webshop/scenario.yaml`."
            );
            run_scenario(embedded_default()?, RunOutput::Table, Some(report))
        }
        Some(Command::Place { scenario, format, exact, max_variables }) => {
            let input = load(&scenario)?.input();
            let started = Instant::now();
            let plan = if exact {
                let options = ExactOptions { max_variables, ..ExactOptions::default() };
                match solve_exact(&input, &options) {
                    Ok(plan) => plan,
                    Err(e @ (ExactError::TooLarge { .. } | ExactError::Invalid(_))) => {
                        return Err(input_error(anyhow::anyhow!("--exact: {e}")));
                    }
                    Err(e) => return Err(internal(anyhow::anyhow!("--exact: {e}"))),
                }
            } else {
                solve_validated(&input)
            };
            let timing = Timing::new(started.elapsed());
            print!("{}", render_timed(&plan, timing, format.into()).map_err(internal)?);
            Ok(())
        }
        Some(Command::Generate { clusters, workloads, seed, contention, output }) => {
            let config = GenerateConfig { clusters, workloads, seed, contention: contention.into() };
            let yaml = scenario_yaml(&config).context("cannot write the scenario as YAML").map_err(internal)?;
            match output {
                Some(path) => write_atomically(&path, yaml.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))
                    .map_err(internal),
                None => write_stdout(yaml.as_bytes()),
            }
        }
        Some(Command::Run { scenario, format, report }) => {
            let scenario = match scenario {
                Some(path) => load(&path)?,
                None => embedded_default()?,
            };
            run_scenario(scenario, format, report)
        }
        Some(Command::Explain { scenario, workload, at, format }) => {
            let scenario = load(&scenario)?;
            let key = parse_workload_key(&workload).map_err(|e| input_error(anyhow::anyhow!(e)))?;
            let input = match at {
                None => scenario.input(),
                Some(at) => {
                    let at = SimTime::parse(&at).map_err(|e| input_error(anyhow::anyhow!("--at: {e}")))?;
                    let run = simulate(&scenario, &mut |_, _| {}).map_err(sim_failure)?;
                    let snapshot = run.snapshots.iter().rev().find(|s| s.at <= at.seconds());
                    snapshot.map(|s| s.input.clone()).ok_or_else(|| input_error(anyhow::anyhow!("--at: no step")))?
                }
            };
            let e = explain::explain(&input, &key).map_err(|e| match e {
                explain::ExplainError::UnknownWorkload { .. } => input_error(e),
                explain::ExplainError::Invalid(_) => internal(e),
            })?;
            match format {
                RunOutput::Table => print!("{}", explain::table(&e)),
                RunOutput::Json => print!("{}", tmc_sim::json::to_json(&e).map_err(internal)?),
            }
            Ok(())
        }
        Some(Command::Diff { before, after, fresh, format }) => {
            let (b, a) = (load(&before)?, load(&after)?);
            let d = diff::diff(&b.input(), &a.input(), fresh).map_err(input_error)?;
            match format {
                RunOutput::Table => print!("{}", diff::table(&d)),
                RunOutput::Json => print!("{}", tmc_sim::json::to_json(&d).map_err(internal)?),
            }
            Ok(())
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`, so `path` is
/// either left as it was or holds all of `bytes`. The temporary file is removed on failure.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(internal(anyhow::Error::new(e).context("cannot write to stdout")))
        }
        _ => Ok(()),
    }
}

fn sim_failure(e: SimError) -> Failure {
    match e {
        SimError::Invalid(_) => input_error(e),
        _ => internal(e),
    }
}

/// Where the run without arguments writes its report: `target/` when run from a cargo workspace,
/// else the temporary directory.
fn default_report_path() -> PathBuf {
    let target = Path::new("target");
    if target.is_dir() { target.join("tmc-sim-report.html") } else { std::env::temp_dir().join("tmc-sim-report.html") }
}

fn run_scenario(scenario: Scenario, format: RunOutput, report: Option<PathBuf>) -> Result<(), Failure> {
    let progress = Progress::new();
    let run = simulate(&scenario, &mut |at, end| progress.update(at, end));
    progress.finish();
    let run = run.map_err(sim_failure)?;
    let out = render_run(
        &run,
        match format {
            RunOutput::Table => RunFormat::Table,
            RunOutput::Json => RunFormat::Json,
        },
    )
    .map_err(internal)?;
    print!("{out}");
    if let Some(path) = report {
        let html = render_report(&run);
        std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display())).map_err(internal)?;
        let shown = std::fs::canonicalize(&path).unwrap_or(path);
        eprintln!("tmc-sim: report written to {} (open file://{} in a browser)", shown.display(), shown.display());
    }
    Ok(())
}

/// A progress bar over virtual time on stderr, shown only on a terminal and only once a run has
/// taken more than a moment.
struct Progress {
    bar: ProgressBar,
    started: Instant,
    terminal: bool,
}

impl Progress {
    const DELAY: Duration = Duration::from_millis(300);

    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template("{spinner} simulating [{bar:40}] {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        Progress { bar, started: Instant::now(), terminal: std::io::stderr().is_terminal() }
    }

    fn update(&self, at: i64, end: i64) {
        if self.terminal && self.bar.is_hidden() && self.started.elapsed() >= Self::DELAY {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.set_length(u64::try_from(end).unwrap_or(0).max(1));
        self.bar.set_position(u64::try_from(at).unwrap_or(0));
        self.bar.set_message(format!(
            "{} / {}",
            tmc_sim::timeline::format_seconds(at),
            tmc_sim::timeline::format_seconds(end)
        ));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

//! `sentinel-sim`: run a scenario and write its report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sentinel_datasets::{Dataset, Meta};
use sentinel_models::TractScorer;
use sentinel_simulator::scenario::CryptoMode;
use sentinel_simulator::{RunReport, Scenario, Sim};

/// Deterministic simulator for Sentinel Mesh.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario file and writes report.json, report.md and plots.
    Run {
        /// The scenario (TOML), e.g. simulator/scenarios/default.toml.
        file: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Overrides the scenario's node count.
        #[arg(long)]
        nodes: Option<usize>,
        /// Overrides the simulated duration, seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// Overrides the crypto mode (real or modelled).
        #[arg(long, value_parser = ["real", "modelled"])]
        crypto: Option<String>,
        /// Output directory [default: sim-out/<scenario>-<seed>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Writes a labelled dataset (Parquet and Arrow IPC) to this
        /// directory.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Scores with this model manifest (overrides the scenario's
        /// `detection.model`).
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let Command::Run {
        file,
        seed,
        nodes,
        duration,
        crypto,
        out,
        quiet,
        dataset,
        model,
    } = Cli::parse().command;
    let mut sc = match Scenario::load(&file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(s) = seed {
        sc.seed = s;
    }
    if let Some(n) = nodes {
        sc.nodes = n;
    }
    if let Some(d) = duration {
        sc.duration_s = d;
    }
    if let Some(c) = crypto {
        sc.crypto = if c == "real" {
            CryptoMode::Real
        } else {
            CryptoMode::Modelled
        };
    }
    if let Err(e) = sc.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if model.is_some() {
        sc.detection.model = model;
    }
    let scorer = match sc
        .detection
        .model
        .as_deref()
        .map(|m| TractScorer::load(m, None))
    {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let dataset = match dataset.map(|dir| {
        let meta = Meta {
            producer: format!("sentinel-sim {}", env!("CARGO_PKG_VERSION")),
            commit: git_commit(),
            seed: Some(sc.seed),
            scenario: Some(sc.name.clone()),
            scenario_sha256: Some(sentinel_models::sha256_hex(
                toml::to_string(&sc).unwrap_or_default().as_bytes(),
            )),
        };
        Dataset::create(&dir, meta)
    }) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = out.unwrap_or_else(|| PathBuf::from(format!("sim-out/{}-{}", sc.name, sc.seed)));
    let started = Instant::now();
    let duration_s = sc.duration_s;
    let mut sim = match Sim::new(sc) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot set up the run: {e}");
            return ExitCode::FAILURE;
        }
    };
    sim.set_detection(scorer, dataset);
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(duration_s)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} simulated s ({eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    sim.run(|s| bar.set_position(s));
    bar.finish_and_clear();
    let report = RunReport::build(&sim, started.elapsed().as_secs_f64());
    if let Some(d) = sim.take_dataset() {
        match d.finish() {
            Ok(counts) => println!("dataset rows: {counts:?}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(e) = report.scoring.as_ref().and_then(|s| s.error.as_ref()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = report.write(&out) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    print!("{}", report.markdown());
    println!("\nWritten to {}", out.display());
    println!("trace-hash {}", report.trace_hash);
    ExitCode::SUCCESS
}

/// The commit of the working tree the simulator runs in, or `unknown`.
fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_string())
}

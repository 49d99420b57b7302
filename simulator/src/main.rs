//! `sentinel-sim`: run a scenario and write its report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
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
    if let Err(e) = report.write(&out) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    print!("{}", report.markdown());
    println!("\nWritten to {}", out.display());
    println!("trace-hash {}", report.trace_hash);
    ExitCode::SUCCESS
}

//! `weir-loadtest`: Weir's benchmark tooling.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod dist;
mod mock;
mod plot;
mod run;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "weir-loadtest",
    version,
    about = "Weir load generator and mock inference server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a mock OpenAI-compatible inference API (benchmark upstream).
    Mock(mock::MockArgs),
    /// Generate load against an OpenAI-compatible endpoint and report
    /// latency percentiles.
    Run(run::RunArgs),
    /// Draw SVG charts (latency percentiles, throughput) from `run --json`
    /// result files.
    Plot(plot::PlotArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mock(args) => mock::run(args),
        Command::Run(args) => run::run(args),
        Command::Plot(args) => plot::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

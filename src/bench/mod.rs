//! `toki-sync bench`: load generators for capacity planning, also used to produce the figures in
//! BENCHMARKS.md.

mod client;
mod http;
mod ingest;
mod progress;
mod seed;
pub mod workload;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Sync load against a running server: events/s and ACK latency.
    Ingest(ingest::IngestArgs),
    /// Fill a data file (server stopped) with realistic events for query benchmarks.
    Seed(seed::SeedArgs),
}

pub fn run(command: BenchCommand) -> ExitCode {
    let result = match command {
        BenchCommand::Ingest(args) => ingest::run(args),
        BenchCommand::Seed(args) => seed::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("toki-sync bench: {e}");
            ExitCode::FAILURE
        }
    }
}

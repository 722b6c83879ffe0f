//! `toki-sync bench`: load generators for capacity planning, also used to produce the figures in
//! BENCHMARKS.md.

mod api;
mod client;
mod http;
mod ingest;
pub(crate) mod progress;
mod query;
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
    /// Query latency against a running server: the usage API and the toki query endpoint for
    /// typical dashboard windows, p50/p99 per query.
    Query(query::QueryArgs),
    /// Public API costs against a running server: a request with a JWT against one with an
    /// API key, record pages at every cursor depth, export throughput and server memory.
    Api(api::ApiArgs),
}

pub fn run(command: BenchCommand) -> ExitCode {
    let result = match command {
        BenchCommand::Ingest(args) => ingest::run(args),
        BenchCommand::Seed(args) => seed::run(args),
        BenchCommand::Query(args) => query::run(args),
        BenchCommand::Api(args) => api::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("toki-sync bench: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The command line: `serve`, `config`, the offline `admin` commands, and the `bench` load
//! generators (`src/bench/`).

mod admin;
mod check;
mod public_api;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, Env, Overrides};

#[derive(Parser)]
#[command(
    name = "toki-sync",
    version,
    about = "Self-hosted sync server for AI token usage (toki daemons)",
    after_help = config::env_help()
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API and sync listener).
    Serve(ServeArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Offline administration on the data file (stop the server first).
    Admin(admin::AdminArgs),
    /// Download a backup from a running server (GET /admin/backup).
    Backup(crate::backup::client::BackupArgs),
    /// Load generators: ingest throughput, query latency, seeding a data file.
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented example configuration with every key and its default.
    PrintDefault {
        /// Print the packaged file instead (packaging/toki-sync.toml, installed as
        /// /etc/toki-sync/toki-sync.toml): the defaults with data_dir = /var/lib/toki-sync.
        #[arg(long)]
        packaged: bool,
    },
    /// Print the configuration keys as a Markdown table.
    Keys,
    /// Load the configuration as `serve` would, report problems, and print where data lives.
    Check(CommonArgs),
}

/// Where the configuration and the data file are. Global, so they may be given anywhere on the
/// command line: `admin --data-dir X stats` and `admin stats --data-dir X` are the same.
#[derive(Args, Clone, Default)]
pub struct CommonArgs {
    /// Configuration file (TOML). [env: TOKI_SYNC_CONFIG]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Directory of the data file (overrides storage.data_dir). [env: TOKI_SYNC_DATA_DIR]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to bind both listeners to. [env: TOKI_SYNC_BIND]
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// HTTP port (default 9091; 0 = any free port). [env: TOKI_SYNC_HTTP_PORT]
    #[arg(long, value_name = "N")]
    http_port: Option<String>,
    /// Sync port (default 9090; 0 = any free port). [env: TOKI_SYNC_SYNC_PORT]
    #[arg(long, value_name = "N")]
    sync_port: Option<String>,
}

impl CommonArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            data_dir: self.data_dir.clone(),
            ..Overrides::default()
        }
    }
}

/// Loads the configuration or explains what is wrong (with the warnings found before the error,
/// such as an unknown key that may be the cause).
fn load_config(overrides: &Overrides) -> Result<Config, ExitCode> {
    Config::load_reporting(overrides, &Env::from_process()).map_err(|f| {
        for w in &f.warnings {
            eprintln!("toki-sync: warning: {w}");
        }
        eprintln!("toki-sync: configuration error: {}", f.error);
        ExitCode::from(2)
    })
}

/// Commands that only print end quietly when their output pipe closes (`admin user list | head`),
/// as Unix tools do, instead of panicking on the write. Not for `serve` and `bench`: they write
/// to sockets, where a closed peer must be an error, not a signal.
fn default_sigpipe() {
    // SAFETY: restoring a signal's default disposition has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs go to stderr. `filter` is `log.level`, or `RUST_LOG` when set (the configuration has
/// already checked it and put it there).
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A closed stderr (a pipe whose reader left, a restarted journald) must not matter: with
    // internal-error reporting on, the subscriber would eprintln! about it, which panics in
    // whatever task was logging (e.g. the one handling SIGTERM).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Config { .. } | Command::Admin(_)) {
        default_sigpipe();
    }
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config { command: ConfigCommand::PrintDefault { packaged } } => {
            print!("{}", if packaged { config::packaged_file() } else { config::default_file() });
            ExitCode::SUCCESS
        }
        Command::Config { command: ConfigCommand::Keys } => {
            print!("{}", config::key_table());
            ExitCode::SUCCESS
        }
        Command::Config { command: ConfigCommand::Check(common) } => check::run(&common),
        Command::Admin(args) => admin::run(args),
        Command::Backup(args) => crate::backup::client::run(args),
        Command::Bench { command } => crate::bench::run(command),
    }
}

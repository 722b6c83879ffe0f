//! `toki-sync serve`: load the configuration, bind, launch, and run until SIGINT/SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use super::{init_logging, load_config, ServeArgs};
use crate::bootstrap::admin_password_banner;
use crate::config::Overrides;
use crate::{launch, Listeners};

pub fn run(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        bind: args.bind,
        http_port: args.http_port,
        sync_port: args.sync_port,
        ..args.common.overrides()
    };
    let config = match load_config(&overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config.log.level);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("toki-sync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listeners = match Listeners::bind(&config) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let banner_config = config.clone();
        let server = match launch(config, listeners, stop_signal()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(password) = &server.generated_admin_password {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(admin_password_banner(password, &banner_config).as_bytes());
            let _ = out.flush();
        }
        tracing::info!(version = env!("CARGO_PKG_VERSION"), http = %server.http_addr, "toki-sync is serving");
        match server.wait().await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(reason) => {
                tracing::error!("stopped after a fatal error: {reason}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

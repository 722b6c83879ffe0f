//! `toki-sync serve`: load the configuration, bind, launch, and run until SIGINT/SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use super::{ServeArgs, init_logging, load_config};
use crate::bootstrap::admin_password_banner;
use crate::config::Overrides;
use crate::{Listeners, launch};

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
    for w in config.warnings.iter().cloned().chain(config.plain_http_warning()) {
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
        // Handlers are installed now, before the ready line: a SIGTERM sent right after it must
        // already take the graceful path.
        let stop = match stop_signal() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let server = match launch(config, listeners, stop).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        {
            let mut out = std::io::stdout().lock();
            if let Some(password) = &server.generated_admin_password {
                let _ = out.write_all(admin_password_banner(password, &banner_config).as_bytes());
            }
            // On stdout as well as in the log (which level `warn` filters): users compare it with
            // the certificate their client sees.
            let _ = writeln!(
                out,
                "toki-sync: sync TLS certificate {} SHA-256 fingerprint {}",
                server.tls_certificate.display(),
                server.tls_fingerprint
            );
            let _ = out.flush();
        }
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            http = %server.http_addr,
            sync = %server.sync_addr,
            "toki-sync is serving"
        );
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

/// A future that resolves on SIGINT or SIGTERM; the handlers are registered when this returns.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        }
    })
}

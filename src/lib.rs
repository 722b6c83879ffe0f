//! toki-sync: a self-hosted sync server for AI token usage.
//!
//! [`launch`] starts a whole server on listeners the caller bound (tests use `127.0.0.1:0`), and
//! returns once it is serving.

// Nested `if let`s read more clearly here than let-chains.
#![allow(clippy::collapsible_if)]

pub mod acme;
pub mod address_slots;
pub mod app;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod fasthash;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod query;
pub mod shutdown;
pub mod store;
pub mod sync;
pub mod tls;
pub mod work_queue;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::App;
use config::Config;
use shutdown::Shutdown;
use store::Store;

/// How often expired refresh-token records are removed.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);

pub struct Listeners {
    pub http: std::net::TcpListener,
    pub sync: std::net::TcpListener,
    /// `server.https_port`, when set.
    pub https: Option<std::net::TcpListener>,
    /// `metrics.bind`, when set.
    pub metrics: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds `server.bind` on the configured ports.
    pub fn bind(config: &Config) -> Result<Listeners, String> {
        let bind = |port: u16, what: &str, key: &str| {
            let addr = SocketAddr::new(config.server.bind, port);
            std::net::TcpListener::bind(addr).map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && port < 1024 {
                    "; ports below 1024 need CAP_NET_BIND_SERVICE, which the packaged systemd unit grants (or run `setcap cap_net_bind_service=+ep` on the binary)"
                } else {
                    ""
                };
                format!("cannot listen for {what} on {addr}: {e} (set {key}){hint}")
            })
        };
        Ok(Listeners {
            http: bind(config.server.http_port, "HTTP", "server.http_port or --http-port")?,
            sync: bind(config.server.sync_port, "sync", "server.sync_port or --sync-port")?,
            https: config.server.https_port.map(|p| bind(p, "HTTPS", "server.https_port")).transpose()?,
            metrics: match config.metrics.bind {
                Some(addr) => {
                    Some(std::net::TcpListener::bind(addr).map_err(|e| {
                        format!("cannot listen for metrics on {addr}: {e} (set metrics.bind)")
                    })?)
                }
                None => None,
            },
        })
    }
}

fn into_tokio(
    listener: std::net::TcpListener,
    what: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), String> {
    listener.set_nonblocking(true).map_err(|e| format!("{what} listener: {e}"))?;
    let l = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("{what} listener: {e}"))?;
    let addr = l.local_addr().map_err(|e| format!("{what} listener: {e}"))?;
    Ok((l, addr))
}

pub struct Server {
    pub http_addr: SocketAddr,
    pub sync_addr: SocketAddr,
    /// The HTTPS listener, when `server.https_port` is set.
    pub https_addr: Option<SocketAddr>,
    /// The metrics listener, when `metrics.bind` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// SHA-256 fingerprint of the TLS certificate served at start-up.
    pub tls_fingerprint: String,
    /// The file of the certificate served at start-up.
    pub tls_certificate: std::path::PathBuf,
    /// The certificate being served now (it changes on renewal and reload).
    pub certs: Arc<tls::Certs>,
    pub app: Arc<App>,
    /// The first admin's password when it was generated on this start; show it once.
    pub generated_admin_password: Option<String>,
    shutdown: Shutdown,
    http_task: tokio::task::JoinHandle<()>,
    https_task: Option<tokio::task::JoinHandle<()>>,
    sync_task: tokio::task::JoinHandle<()>,
    maintenance_task: tokio::task::JoinHandle<()>,
    vm_drain_task: tokio::task::JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
}

impl Server {
    /// Asks the server to stop; `wait` returns once it has.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Waits for shutdown, lets in-flight requests finish, and closes the data file. Returns the
    /// reason if the server stopped because of a fatal error.
    pub async fn wait(self) -> Result<(), String> {
        let Server {
            app,
            shutdown,
            http_task,
            https_task,
            sync_task,
            maintenance_task,
            mut vm_drain_task,
            writer_thread,
            ..
        } = self;
        let _ = http_task.await;
        if let Some(task) = https_task {
            let _ = task.await;
        }
        let _ = sync_task.await;
        maintenance_task.abort();
        let _ = maintenance_task.await;
        // The drainer stops between rounds; a round cut short is repeated at the next start.
        if tokio::time::timeout(Duration::from_secs(5), &mut vm_drain_task).await.is_err() {
            vm_drain_task.abort();
            let _ = vm_drain_task.await;
        }
        let store = Arc::clone(&app.store);
        // The writer finishes the jobs already queued and stops once the last handle is gone.
        drop(app);
        let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
        close_store(store).await;
        match shutdown.fatal_reason() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// Waits briefly for blocking work that still holds the store, then closes it cleanly.
async fn close_store(mut store: Arc<Store>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(store) {
            Ok(s) => {
                match tokio::task::spawn_blocking(move || s.close()).await {
                    Ok(Ok(())) => tracing::info!("data file closed"),
                    Ok(Err(e)) => tracing::error!(error = %e, "closing the data file failed"),
                    Err(e) => tracing::error!(error = %e, "closing the data file failed"),
                }
                return;
            }
            Err(shared) if Instant::now() < deadline => {
                store = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                tracing::warn!("data file still in use at shutdown; it closes when the last user ends");
                return;
            }
        }
    }
}

/// Opens the store, creates what a first start needs, and starts serving. `stop` ends the server
/// when it resolves (for example on SIGTERM).
pub async fn launch(
    mut config: Config,
    listeners: Listeners,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Server, String> {
    tls::install_crypto_provider();
    let shutdown = Shutdown::new();
    // Everything that can fail runs before App::start: on a first start it creates `admin` with
    // a generated password that is shown only once, after launch returns. Failing later (a bad
    // `tls.cert_file`, say) would leave an account whose password nobody ever saw.
    let (http, http_addr) = into_tokio(listeners.http, "http")?;
    let (sync_listener, sync_addr) = into_tokio(listeners.sync, "sync")?;
    let https = listeners.https.map(|l| into_tokio(l, "https")).transpose()?;
    let https_addr = https.as_ref().map(|(_, a)| *a);
    // Redirects to HTTPS name the port actually bound (`0` in tests picks one).
    if let Some(addr) = https_addr {
        config.server.https_port = Some(addr.port());
    }
    let metrics = listeners.metrics.map(|l| into_tokio(l, "metrics")).transpose()?;
    let metrics_addr = metrics.as_ref().map(|(_, a)| *a);
    let cfg = config.clone();
    let (served, cert_path) = tokio::task::spawn_blocking(move || {
        // A generated certificate lives in the data directory: create it (private) first.
        let dir = &cfg.storage.data_dir;
        if !dir.exists() {
            bootstrap::create_private_dir(dir)
                .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        }
        let files = tls::files::load(&cfg)?;
        // With ACME, its stored certificate; the generated one until the first arrives.
        if let Some(acme) = cfg.acme.enabled().then(|| acme::stored(&cfg)).flatten() {
            return Ok::<_, String>((acme, acme::storage::AcmeFiles::new(&cfg.storage.data_dir).cert_path()));
        }
        let source = if files.generated { "self-signed" } else { "files" };
        Ok((tls::Served { key: files.key, info: files.info, source }, files.cert_path))
    })
    .await
    .map_err(|e| format!("start-up task failed: {e}"))??;
    let certs = tls::Certs::new(served);
    let started_tls = certs.current();
    let hook = shutdown.clone();
    let certs_for_app = Arc::clone(&certs);
    let started = tokio::task::spawn_blocking(move || {
        App::start(config, Some(certs_for_app), move |msg| hook.fail(&format!("storage failure: {msg}")))
    })
    .await
    .map_err(|e| format!("start-up task failed: {e}"))??;
    let app = started.app;

    let plain = http::server::Transport::Plain;
    let http_task = tokio::spawn(http::server::serve(http, Arc::clone(&app), plain, shutdown.signal()));
    let https_task = https.map(|(listener, _)| {
        let tls = http::server::Transport::Tls(tokio_rustls::TlsAcceptor::from(certs.https_config()));
        tokio::spawn(http::server::serve(listener, Arc::clone(&app), tls, shutdown.signal()))
    });
    if let (Some(cert), Some(key)) = (&app.config.tls.cert_file, &app.config.tls.key_file) {
        tokio::spawn(tls::reload::watch(Arc::clone(&certs), cert.clone(), key.clone(), shutdown.signal()));
    }
    if app.config.acme.enabled() {
        tokio::spawn(acme::run(app.config.clone(), Arc::clone(&certs), shutdown.signal()));
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.sync_config());
    let sync_task =
        tokio::spawn(sync::listener::serve(sync_listener, Arc::clone(&app), acceptor, shutdown.clone()));
    let maintenance_task = tokio::spawn(maintenance(Arc::clone(&app)));
    let vm_drain_task = tokio::spawn(query::vm::drain::run(Arc::clone(&app), shutdown.signal()));
    if let Some(oidc) = &app.oidc {
        tokio::spawn(Arc::clone(oidc).discover_until_ready(shutdown.signal()));
    }
    if let Some((listener, addr)) = metrics {
        tokio::spawn(metrics::server::serve(listener, Arc::clone(&app), shutdown.signal()));
        tracing::info!(metrics = %addr, "metrics listening (GET /metrics)");
    }
    // Stops at shutdown between backups; one in progress finishes on its blocking thread.
    tokio::spawn(backup::schedule::run(Arc::clone(&app), shutdown.signal()));
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            stop.await;
            shutdown.trigger();
        });
    }
    tracing::info!(%http_addr, "http listening");
    if let Some(addr) = https_addr {
        tracing::info!(https_addr = %addr, "https listening (HTTP/2 and HTTP/1.1)");
    }
    tracing::info!(
        %sync_addr,
        certificate = %cert_path.display(),
        source = started_tls.source,
        fingerprint = %started_tls.info.fingerprint,
        "sync listening (TLS and plaintext); TLS certificate SHA-256 fingerprint shown"
    );
    Ok(Server {
        http_addr,
        sync_addr,
        https_addr,
        metrics_addr,
        tls_fingerprint: started_tls.info.fingerprint.clone(),
        tls_certificate: cert_path,
        certs,
        app,
        generated_admin_password: started.generated_admin_password,
        shutdown,
        http_task,
        https_task,
        sync_task,
        maintenance_task,
        vm_drain_task,
        writer_thread: started.writer_thread,
    })
}

async fn maintenance(app: Arc<App>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.tick().await; // the first tick is immediate; start-up already pruned
    loop {
        tick.tick().await;
        match app.blocking(|a| a.store.prune_refresh(store::now_secs())).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(pruned = n, "removed expired refresh-token records"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "refresh-token pruning failed"),
            Err(e) => tracing::warn!(error = %e, "refresh-token pruning failed"),
        }
    }
}

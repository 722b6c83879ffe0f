//! The state every request handler shares.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::lockout::Lockout;
use crate::auth::oidc::Oidc;
use crate::auth::password::Passwords;
use crate::auth::tokens::Tokens;
use crate::config::{Config, RegistrationMode};
use crate::http::ratelimit::RateLimiter;
use crate::ingest::Ingest;
use crate::query::QueryServices;
use crate::store::settings::REGISTRATION_MODE;
use crate::store::{Store, StoreError};
use crate::sync::registry::Registry;
use crate::work_queue::WorkQueue;

/// Accounts one address group may register per hour (pending or active); the next gets 429.
pub const REGISTRATIONS_PER_HOUR: u32 = 5;

/// Query jobs running at once: one per core, so queries leave room for everything else.
fn query_parallel() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
/// Query jobs waiting, beyond those running.
pub const QUERY_QUEUE: usize = 16;
/// Query jobs one address group may have running or waiting.
pub const QUERY_PER_ADDRESS: usize = 4;

/// A freshly started [`App`] and what the caller must keep.
pub struct Started {
    pub app: Arc<App>,
    /// Join after the last `App` handle is dropped (the writer then finishes and stops).
    pub writer_thread: std::thread::JoinHandle<()>,
    /// The first admin's password when it was generated on this start; show it once.
    pub generated_admin_password: Option<String>,
}

pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    /// The single writer for usage data (batches, device and user deletion).
    pub ingest: Ingest,
    /// Live sync sessions.
    pub sessions: Arc<Registry>,
    pub tokens: Tokens,
    pub passwords: Passwords,
    pub lockout: Lockout,
    /// Successful registrations per address group ([`REGISTRATIONS_PER_HOUR`]).
    pub registrations: Lockout,
    /// Per-principal request limits of the HTTP API.
    pub ratelimit: RateLimiter,
    pub started_at: Instant,
    /// Prices and VictoriaMetrics for the usage and query endpoints.
    pub query: QueryServices,
    /// Sign-in through the OpenID Connect provider, when one is configured.
    pub oidc: Option<Arc<Oidc>>,
    /// The bounded queue for CPU-heavy query work (toki query parsing and evaluation).
    pub query_work: Arc<WorkQueue>,
    /// The certificate the TLS listeners serve, and ACME challenge answers (`None` where no
    /// listener runs: the fuzzing harness).
    pub certs: Option<Arc<crate::tls::Certs>>,
}

impl App {
    /// Opens and prepares the data file (first-start admin, signing secret) and starts the
    /// ingest writer. `on_fatal` runs if a commit ever fails. Blocking.
    pub fn start(
        config: Config,
        certs: Option<Arc<crate::tls::Certs>>,
        on_fatal: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<Started, String> {
        let query = QueryServices::from_config(&config)?;
        let oidc = Oidc::from_config(&config)?.map(Arc::new);
        let opened = crate::bootstrap::prepare(&config).map_err(|e| e.to_string())?;
        opened.store.set_fatal_hook(on_fatal);
        let store = Arc::new(opened.store);
        let (ingest, writer_thread) = Ingest::start(Arc::clone(&store)).map_err(|e| e.to_string())?;
        let app = Arc::new(App {
            ingest,
            sessions: Arc::new(Registry::default()),
            tokens: Tokens::new(&opened.jwt_secret, &config.auth),
            passwords: Passwords::new(),
            lockout: Lockout::new(&config.auth),
            registrations: Lockout::with_limits(
                REGISTRATIONS_PER_HOUR,
                Duration::from_secs(3600),
                Duration::from_secs(3600),
                10_000,
            ),
            ratelimit: RateLimiter::new(&config.rate_limit),
            store,
            config,
            started_at: Instant::now(),
            query,
            oidc,
            query_work: WorkQueue::new("query", query_parallel(), QUERY_QUEUE, QUERY_PER_ADDRESS),
            certs,
        });
        Ok(Started { app, writer_thread, generated_admin_password: opened.generated_admin_password })
    }

    /// Runs blocking work (store access, which may fsync) on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&App) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let app = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&app)).await
    }

    /// The stored setting (changed by an admin) wins over the configured default.
    pub fn registration_mode(&self) -> Result<RegistrationMode, StoreError> {
        effective_registration_mode(&self.store, &self.config)
    }
}

pub fn effective_registration_mode(store: &Store, config: &Config) -> Result<RegistrationMode, StoreError> {
    Ok(store
        .setting(REGISTRATION_MODE)?
        .and_then(|s| RegistrationMode::parse(&s))
        .unwrap_or(config.auth.registration_mode))
}

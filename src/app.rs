//! The state every request handler shares.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::lockout::Lockout;
use crate::auth::oidc::Oidc;
use crate::auth::password::Passwords;
use crate::auth::tokens::Tokens;
use crate::config::{Config, RegistrationMode};
use crate::ingest::Ingest;
use crate::query::QueryServices;
use crate::store::settings::REGISTRATION_MODE;
use crate::store::{Store, StoreError};
use crate::sync::registry::Registry;

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
    pub started_at: Instant,
    /// Prices and VictoriaMetrics for the usage and query endpoints.
    pub query: QueryServices,
    /// Sign-in through the OpenID Connect provider, when one is configured.
    pub oidc: Option<Arc<Oidc>>,
}

impl App {
    /// Opens and prepares the data file (first-start admin, signing secret) and starts the
    /// ingest writer. `on_fatal` runs if a commit ever fails. Blocking.
    pub fn start(config: Config, on_fatal: impl Fn(&str) + Send + Sync + 'static) -> Result<Started, String> {
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
            store,
            config,
            started_at: Instant::now(),
            query,
            oidc,
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

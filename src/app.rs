//! The state every request handler shares.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::lockout::Lockout;
use crate::auth::password::Passwords;
use crate::auth::tokens::Tokens;
use crate::config::{Config, RegistrationMode};
use crate::ingest::Ingest;
use crate::query::QueryServices;
use crate::store::settings::REGISTRATION_MODE;
use crate::store::{Store, StoreError};
use crate::sync::registry::Registry;

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
}

impl App {
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

//! Configuration: built-in defaults < TOML file < environment < command-line flags.
//!
//! Where things are:
//! - one file per section (`server.rs`, `auth.rs`, …) holds that section's settings struct and its
//!   keys: type, default, help text and where each value goes. To add a key, add a field and an
//!   entry there; nothing else needs to change.
//! - `key.rs`: the key types and how a value of each type is read and checked.
//! - `load.rs`: the layering (file, environment, flags) and the checks that span keys.
//! - `docs.rs`: `config print-default`, the README key table and `--help`'s environment list.
//!
//! The file reader, the environment reader, the printers, the unknown-key report and the README
//! table all come from the one list of sections, so they cannot drift apart.

use std::fmt;
use std::path::PathBuf;

#[macro_use]
mod key;
mod acme;
mod audit;
mod auth;
mod backend;
mod backup;
mod docs;
mod http;
mod load;
mod log;
mod metrics;
mod oidc;
mod pricing;
mod rate_limit;
mod server;
mod storage;
mod sync;
#[cfg(test)]
mod tests;
mod tls;

pub use acme::{AcmeChallenge, AcmeConfig};
pub use audit::AuditConfig;
pub use auth::{AuthConfig, RegistrationMode};
pub use backend::BackendConfig;
pub use backup::BackupConfig;
pub use docs::{PACKAGED_DATA_DIR, default_file, env_help, key_table, packaged_file};
pub use http::HttpConfig;
pub use load::{Env, LoadFailure, Overrides};
pub use log::LogConfig;
pub use metrics::MetricsConfig;
pub use oidc::{ENV_OIDC_CLIENT_SECRET, OidcConfig, redirect_url as oidc_redirect_url};
pub use pricing::PricingConfig;
pub use rate_limit::RateLimitConfig;
pub use server::ServerConfig;
pub use storage::StorageConfig;
pub use sync::{PlaintextPolicy, SyncConfig};
pub use tls::TlsConfig;

use key::{Key, Section};

/// Prefix of every environment variable the server reads (besides the two secrets).
pub const ENV_PREFIX: &str = "TOKI_SYNC_";
pub const ENV_CONFIG: &str = "TOKI_SYNC_CONFIG";
pub const ENV_ADMIN_PASSWORD: &str = "TOKI_ADMIN_PASSWORD";
pub const ENV_JWT_SECRET: &str = "JWT_SECRET";
/// Environment variables that are not configuration keys but are allowed to be set.
const ENV_NOT_KEYS: &[&str] = &[ENV_CONFIG, "TOKI_SYNC_FULL_TESTS"];
/// Short environment names for the most common keys (the long form works too).
const ENV_SHORTCUTS: &[(&str, &str, &str)] = &[
    ("TOKI_SYNC_DATA_DIR", "storage", "data_dir"),
    ("TOKI_SYNC_BIND", "server", "bind"),
    ("TOKI_SYNC_HTTP_PORT", "server", "http_port"),
    ("TOKI_SYNC_SYNC_PORT", "server", "sync_port"),
];

#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub sync: SyncConfig,
    pub tls: TlsConfig,
    pub acme: AcmeConfig,
    pub backend: BackendConfig,
    pub backup: BackupConfig,
    pub pricing: PricingConfig,
    pub rate_limit: RateLimitConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
    pub oidc: OidcConfig,
    pub metrics: MetricsConfig,
    pub secrets: Secrets,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Problems that do not stop start-up (unknown keys); shown once the logger is up.
    pub warnings: Vec<String>,
}

/// Values that only come from the environment and must never be logged.
#[derive(Clone, Default)]
pub struct Secrets {
    pub admin_password: Option<String>,
    pub jwt_secret: Option<String>,
    /// From `TOKI_OIDC_CLIENT_SECRET` or `oidc.client_secret_file`.
    pub oidc_client_secret: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |s: &Option<String>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field("admin_password", &shown(&self.admin_password))
            .field("jwt_secret", &shown(&self.jwt_secret))
            .field("oidc_client_secret", &shown(&self.oidc_client_secret))
            .finish()
    }
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Every section, in the order `print-default` shows them.
const SECTIONS: &[&Section] = &[
    &server::SECTION,
    &http::SECTION,
    &storage::SECTION,
    &auth::SECTION,
    &sync::SECTION,
    &tls::SECTION,
    &acme::SECTION,
    &backend::SECTION,
    &backup::SECTION,
    &pricing::SECTION,
    &rate_limit::SECTION,
    &audit::SECTION,
    &log::SECTION,
    &oidc::SECTION,
    &metrics::SECTION,
];

/// Every key with its section.
fn all_keys() -> impl Iterator<Item = (&'static str, &'static Key)> {
    SECTIONS.iter().flat_map(|s| s.keys.iter().map(move |k| (s.name, k)))
}

fn find_key(section: &str, name: &str) -> Option<&'static Key> {
    all_keys().find(|(s, k)| *s == section && k.name == name).map(|(_, k)| k)
}

fn env_name(section: &str, key: &Key) -> String {
    format!("{ENV_PREFIX}{}__{}", section.to_uppercase(), key.name.to_uppercase())
}

impl Config {
    /// The built-in defaults, exactly as `print-default` shows them.
    pub fn defaults() -> Config {
        let mut cfg = Config {
            server: ServerConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            sync: SyncConfig::default(),
            tls: TlsConfig::default(),
            acme: AcmeConfig::default(),
            backend: BackendConfig::default(),
            backup: BackupConfig::default(),
            pricing: PricingConfig::default(),
            rate_limit: RateLimitConfig::default(),
            audit: AuditConfig::default(),
            log: LogConfig::default(),
            oidc: OidcConfig::default(),
            metrics: MetricsConfig::default(),
            secrets: Secrets::default(),
            file: None,
            warnings: Vec::new(),
        };
        for (section, key) in all_keys() {
            key::apply(&mut cfg, section, key, key::Raw::Text(key.default), key::Origin::Default)
                .expect("built-in defaults are valid");
        }
        cfg
    }

    /// `<data_dir>/toki-sync.redb`
    pub fn db_path(&self) -> PathBuf {
        self.storage.data_dir.join(crate::store::DB_FILE_NAME)
    }
}

//! First start and every start: create the data directory and file, pick the signing secret,
//! create the first admin when there are no users.

use std::path::Path;

use crate::auth::{password, random, rules};
use crate::config::Config;
use crate::store::users::{NewUser, Role, UserStatus};
use crate::store::{Store, StoreError};

pub const FIRST_ADMIN: &str = "admin";

pub struct Opened {
    pub store: Store,
    pub jwt_secret: Vec<u8>,
    /// Set when the first admin was created with a generated password (to show once).
    pub generated_admin_password: Option<String>,
}

#[derive(Debug)]
pub enum BootstrapError {
    DataDir(String),
    Store(StoreError),
}

impl std::fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootstrapError::DataDir(m) => f.write_str(m),
            BootstrapError::Store(e) => e.fmt(f),
        }
    }
}

impl From<StoreError> for BootstrapError {
    fn from(e: StoreError) -> Self {
        BootstrapError::Store(e)
    }
}

/// Creates the data directory (mode 0700) if needed and opens the store. The file is created
/// with mode 0600 before redb initialises it: it holds password hashes and the signing secret.
pub fn open_store(config: &Config) -> Result<Store, BootstrapError> {
    let dir = &config.storage.data_dir;
    if !dir.exists() {
        create_private_dir(dir).map_err(|e| {
            BootstrapError::DataDir(format!("cannot create data directory {}: {e}", dir.display()))
        })?;
    }
    let path = config.db_path();
    if !path.exists() {
        create_private_file(&path).map_err(|e| {
            BootstrapError::DataDir(format!("cannot create data file {}: {e}", path.display()))
        })?;
    }
    Ok(Store::open(&path)?)
}

#[cfg(unix)]
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map(drop)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path).map(drop)
}

/// Opens the store and prepares it for serving. Blocking.
pub fn prepare(config: &Config) -> Result<Opened, BootstrapError> {
    let store = open_store(config)?;
    let jwt_secret = match &config.secrets.jwt_secret {
        Some(s) => s.as_bytes().to_vec(),
        None => store.jwt_secret()?,
    };
    let mut generated_admin_password = None;
    if store.count_users()? == 0 {
        let password = match &config.secrets.admin_password {
            Some(p) => p.clone(),
            None => {
                let p = random::password();
                generated_admin_password = Some(p.clone());
                p
            }
        };
        debug_assert!(rules::check_password(&password).is_ok());
        store
            .create_user(NewUser {
                username: FIRST_ADMIN.into(),
                role: Role::Admin,
                status: UserStatus::Active,
                password_hash: Some(password::hash_blocking(&password)),
                oidc_subject: None,
            })
            .map_err(|e| BootstrapError::DataDir(format!("cannot create the first admin: {e}")))?;
        tracing::info!(username = FIRST_ADMIN, "created the first admin account");
    }
    let pruned = store.prune_refresh(crate::store::now_secs())?;
    if pruned > 0 {
        tracing::debug!(pruned, "removed expired refresh-token records");
    }
    Ok(Opened { store, jwt_secret, generated_admin_password })
}

/// The one-time notice for a generated admin password, printed to stdout (never to the log).
pub fn admin_password_banner(password: &str, config: &Config) -> String {
    let line = "=".repeat(72);
    format!(
        "{line}\n  toki-sync created the first admin account.\n\n    username: {FIRST_ADMIN}\n    password: {password}\n\n  This password is shown only once. Sign in and change it, or set it with\n    toki-sync admin --data-dir {} user passwd {FIRST_ADMIN} --password-stdin\n  (stop the server first). Set TOKI_ADMIN_PASSWORD before the first start to choose it.\n{line}\n",
        config.storage.data_dir.display()
    )
}

//! First start and every start: create the data directory and file, pick the signing secret,
//! create the first admin when there is no active admin.

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
        create_private_file(&path).map(drop).map_err(|e| {
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

/// A new file only its owner can read and write (the data file, backups, a restore's staging
/// file: they hold password hashes and the signing secret). Created with the mode, so there is no
/// moment with the umask's.
#[cfg(unix)]
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// Opens the store and prepares it for serving. Blocking.
pub fn prepare(config: &Config) -> Result<Opened, BootstrapError> {
    let store = open_store(config)?;
    let jwt_secret = match &config.secrets.jwt_secret {
        Some(s) => s.as_bytes().to_vec(),
        None => store.jwt_secret()?,
    };
    let generated_admin_password = ensure_admin(&store, config)?;
    let pruned = store.prune_refresh(crate::store::now_secs())?;
    if pruned > 0 {
        tracing::debug!(pruned, "removed expired refresh-token records");
    }
    Ok(Opened { store, jwt_secret, generated_admin_password })
}

/// Creates the account `admin` (password from TOKI_ADMIN_PASSWORD, else generated and returned
/// to be shown once) when the data file has no active admin: a new file, or one filled offline
/// (`bench seed`, `admin user add` with the user role) before the first start.
///
/// An account that already holds the name `admin` but is not an active admin (pending,
/// disabled, or a plain user) is left exactly as it is: changing its role, status or password
/// on a restart would hand an existing account, or one an admin switched off on purpose, to
/// whoever reads the start-up output. The server then says at every start how to make an admin.
fn ensure_admin(store: &Store, config: &Config) -> Result<Option<String>, BootstrapError> {
    let users = store.users()?;
    if users.iter().any(|u| u.role == Role::Admin && u.status == UserStatus::Active) {
        return Ok(None);
    }
    if let Some(taken) = store.user_by_name(FIRST_ADMIN)? {
        tracing::warn!(
            "the data file has no active admin, and the name `{FIRST_ADMIN}` belongs to a {} account with the {} role, which is left as it is; stop the server and make an admin with `toki-sync admin user role NAME admin` (an active account) or `toki-sync admin user add NAME --role admin --password-stdin`",
            taken.status.as_str(),
            taken.role.as_str()
        );
        return Ok(None);
    }
    let (password, generated) = match &config.secrets.admin_password {
        Some(p) => (p.clone(), None),
        None => {
            let p = random::password();
            (p.clone(), Some(p))
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
    tracing::info!(
        username = FIRST_ADMIN,
        other_accounts = users.len(),
        "created the first admin account (the data file had no active admin)"
    );
    Ok(generated)
}

/// The one-time notice for a generated admin password, printed to stdout (never to the log).
pub fn admin_password_banner(password: &str, config: &Config) -> String {
    let line = "=".repeat(72);
    format!(
        "{line}\n  toki-sync created the first admin account.\n\n    username: {FIRST_ADMIN}\n    password: {password}\n\n  This password is shown only once. Sign in and change it, or set it with\n    toki-sync admin --data-dir {} user passwd {FIRST_ADMIN} --password-stdin\n  (stop the server first). Set TOKI_ADMIN_PASSWORD before the first start to choose it.\n{line}\n",
        config.storage.data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let mut c = Config::defaults();
        c.storage.data_dir = dir.to_owned();
        c.secrets.admin_password = Some("first-admin-pw".into());
        c
    }

    fn add(store: &Store, name: &str, role: Role, status: UserStatus) {
        store
            .create_user(NewUser {
                username: name.into(),
                role,
                status,
                password_hash: None,
                oidc_subject: None,
            })
            .unwrap();
    }

    fn admin_of(store: &Store) -> Option<(Role, UserStatus, bool)> {
        store.user_by_name(FIRST_ADMIN).unwrap().map(|u| (u.role, u.status, u.password_hash.is_some()))
    }

    #[test]
    fn an_admin_is_created_whenever_no_active_admin_exists() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        // A file filled offline with plain users only (as `bench seed` makes it).
        let store = open_store(&cfg).unwrap();
        add(&store, "seed-user-1", Role::User, UserStatus::Active);
        add(&store, "old-admin", Role::Admin, UserStatus::Disabled);
        add(&store, "waiting", Role::Admin, UserStatus::Pending);
        drop(store);
        let opened = prepare(&cfg).unwrap();
        assert_eq!(opened.generated_admin_password, None, "TOKI_ADMIN_PASSWORD was given");
        assert_eq!(admin_of(&opened.store), Some((Role::Admin, UserStatus::Active, true)));
        let hash = opened.store.user_by_name(FIRST_ADMIN).unwrap().unwrap().password_hash.unwrap();
        assert!(password::verify_blocking("first-admin-pw", &hash));
        assert_eq!(opened.store.count_users().unwrap(), 4);
        drop(opened);
        // With an active admin, later starts change nothing.
        let opened = prepare(&cfg).unwrap();
        assert_eq!(opened.store.count_users().unwrap(), 4);
    }

    #[test]
    fn a_generated_password_is_returned_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.secrets.admin_password = None;
        let generated = prepare(&cfg).unwrap().generated_admin_password.expect("generated");
        assert!(rules::check_password(&generated).is_ok());
        assert_eq!(prepare(&cfg).unwrap().generated_admin_password, None);
    }

    #[test]
    fn an_account_already_named_admin_is_left_alone() {
        for (role, status) in [
            (Role::Admin, UserStatus::Disabled),
            (Role::Admin, UserStatus::Pending),
            (Role::User, UserStatus::Active),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(dir.path());
            let store = open_store(&cfg).unwrap();
            add(&store, "Admin", role, status);
            drop(store);
            let opened = prepare(&cfg).unwrap();
            assert_eq!(opened.generated_admin_password, None);
            assert_eq!(admin_of(&opened.store), Some((role, status, false)), "unchanged");
            assert_eq!(opened.store.count_users().unwrap(), 1);
        }
    }
}

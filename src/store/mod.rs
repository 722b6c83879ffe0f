//! Everything redb: one file, `<data_dir>/toki-sync.redb`, opened by the server or by the offline
//! admin CLI (never both: redb locks the file, and we turn that into a plain message).
//!
//! Methods are synchronous (a durable commit is an fsync); async callers run them through
//! `App::blocking`.

pub mod api_keys;
pub mod audit;
pub mod codec;
pub mod day_rollups;
pub mod device_codes;
pub mod devices;
pub mod events;
pub mod names;
pub mod oauth_clients;
pub mod recent_spill;
pub mod schema;
pub mod settings;
pub mod stats;
pub mod streams;
pub mod strings;
pub mod teams;
pub mod tokens;
pub mod users;
pub mod vm_outbox;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{ReadTransaction, ReadableDatabase, WriteTransaction};

pub use codec::CodecError;

pub const DB_FILE_NAME: &str = "toki-sync.redb";

/// redb's page cache. Its default (1 GiB) is far more than a sync server needs: the hot data is
/// the tail of the event table and the rollups.
const CACHE_BYTES: usize = 32 << 20;

#[derive(Debug)]
pub enum StoreError {
    /// Another process (a running server, or an admin command) holds the file.
    Locked(PathBuf),
    /// The file was written by a newer toki-sync.
    NewerSchema {
        found: u32,
        supported: u32,
    },
    /// A value or key could not be decoded.
    Corrupt(String),
    /// A commit failed; redb refuses further writes, so the server stops.
    CommitFailed(String),
    Db(redb::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked(p) => write!(
                f,
                "the data file {} is in use by another process (a running toki-sync server?). Stop the server first, or make the change through the HTTP admin API while it runs",
                p.display()
            ),
            StoreError::NewerSchema { found, supported } => write!(
                f,
                "the data file has schema version {found}, but this toki-sync understands versions up to {supported}: it was written by a newer toki-sync. Upgrade toki-sync, or restore a backup made by this version"
            ),
            StoreError::Corrupt(m) => write!(f, "the data file holds an unreadable value: {m}"),
            StoreError::CommitFailed(m) => write!(f, "commit to the data file failed: {m}"),
            StoreError::Db(e) => write!(f, "data file error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(redb::Error, redb::StorageError, redb::TableError, redb::TransactionError);

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Corrupt(e.0)
    }
}

/// For an outcome enum with a `Store(StoreError)` variant: lets `?` on redb and codec results
/// work inside `Store::write` closures that return it.
macro_rules! outcome_wraps_store_error {
    ($($t:ident),*) => {$(
        impl From<$crate::store::StoreError> for $t {
            fn from(e: $crate::store::StoreError) -> Self {
                $t::Store(e)
            }
        }
        impl From<redb::TableError> for $t {
            fn from(e: redb::TableError) -> Self {
                $t::Store(e.into())
            }
        }
        impl From<redb::StorageError> for $t {
            fn from(e: redb::StorageError) -> Self {
                $t::Store(e.into())
            }
        }
        impl From<$crate::store::CodecError> for $t {
            fn from(e: $crate::store::CodecError) -> Self {
                $t::Store(e.into())
            }
        }
    )*};
}
pub(crate) use outcome_wraps_store_error;

type FatalHook = Box<dyn Fn(&str) + Send + Sync>;

pub struct Store {
    db: redb::Database,
    path: PathBuf,
    on_fatal: Mutex<Option<FatalHook>>,
}

impl Store {
    /// Opens (or creates) the data file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut builder = redb::Builder::new();
        builder.set_cache_size(CACHE_BYTES);
        builder.set_repair_callback(|session| {
            tracing::warn!(progress = session.progress(), "data file was not closed cleanly; repairing");
        });
        let db = builder.create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
                StoreError::Locked(path.to_owned())
            }
            other => StoreError::Db(other.into()),
        })?;
        let store = Store { db, path: path.to_owned(), on_fatal: Mutex::new(None) };
        let found = store.write(schema::migrate)?;
        if found == 0 {
            tracing::info!(path = %path.display(), "created data file");
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Called (once per failure) when a commit fails: the process should stop and be restarted.
    pub fn set_fatal_hook(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        *self.on_fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    pub fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Runs `f` in a durable write transaction and commits it. An error from `f` aborts the
    /// transaction, so nothing is half-written.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.begin_write()?;
        let out = f(&txn)?;
        self.commit(txn)?;
        Ok(out)
    }

    /// A durable write transaction. Prefer [`Store::write`]; this is for the ingest writer,
    /// which groups many batches into one transaction.
    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        // Quick-repair records the allocator state with each commit, so a reopen after a crash
        // takes milliseconds instead of a walk over the whole file.
        txn.set_quick_repair(true);
        Ok(txn)
    }

    /// Commits durably. A failed commit leaves redb refusing writes, so the fatal hook runs.
    pub fn commit(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        txn.commit().map_err(|e| {
            let msg = e.to_string();
            tracing::error!(error = %msg, "commit failed; the data file refuses further writes until restart");
            if let Some(hook) = self.on_fatal.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                hook(&msg);
            }
            StoreError::CommitFailed(msg)
        })
    }

    /// Closes the file, reporting errors instead of ignoring them as a drop would.
    pub fn close(self) -> Result<(), StoreError> {
        self.db.close().map_err(|e| StoreError::Db(e.into()))
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stored Unix time in RFC 3339 (UTC), for people and for API fields that use it.
pub fn rfc3339(secs: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_file_gets_current_schema_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE_NAME);
        let store = Store::open(&path).unwrap();
        let v = store.write(schema::read_version).unwrap();
        assert_eq!(v, schema::SCHEMA_VERSION);
        store.close().unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.write(schema::read_version).unwrap(), schema::SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE_NAME);
        let store = Store::open(&path).unwrap();
        store
            .write(|t| {
                t.open_table(schema::META)?
                    .insert(schema::META_SCHEMA_VERSION, 99u32.to_le_bytes().as_slice())?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        store.close().unwrap();
        let err = Store::open(&path).err().expect("must refuse");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::NewerSchema { found: 99, .. }), "{msg}");
        assert!(msg.contains("newer toki-sync"), "{msg}");
    }

    #[test]
    fn second_open_reports_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE_NAME);
        let _store = Store::open(&path).unwrap();
        let err = Store::open(&path).err().expect("second open must fail");
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
        assert!(err.to_string().contains("in use"));
    }
}

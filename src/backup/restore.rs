//! `toki-sync admin restore`: turns a backup back into the data file, with the server stopped.
//!
//! Nothing is replaced until the backup has been read twice: once to check the file (format,
//! checksum, schema version), once to build a new data file beside the old one, which is then
//! opened as the server would open it and read completely. Only then is the old file moved
//! aside (kept as `toki-sync.redb.before-restore-<time>`) and the new one renamed into place.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use redb::Durability;

use super::format::{self, Header, Item, Reader};
use super::tables;
use crate::store::schema::SCHEMA_VERSION;
use crate::store::{Store, StoreError};

/// Entries per intermediate (non-durable) commit while loading; bounds the write set in memory.
const COMMIT_EVERY: u64 = 200_000;

pub struct Restored {
    pub header: Header,
    /// Where the replaced data file was moved, if there was one.
    pub previous: Option<PathBuf>,
}

/// Checks `backup` and makes it the data file at `db_path`. `force` allows replacing an
/// existing file. `progress` gets the entries done so far and the total.
pub fn restore(
    backup: &Path,
    db_path: &Path,
    force: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<Restored, String> {
    let open = || {
        File::open(backup).map(BufReader::new).map_err(|e| format!("cannot open {}: {e}", backup.display()))
    };
    let header = format::verify(open()?, |_| {}).map_err(|e| format!("{}: {e}", backup.display()))?;
    if header.schema_version > SCHEMA_VERSION {
        return Err(format!(
            "{}: the backup has schema version {}, but this toki-sync understands versions up to {SCHEMA_VERSION}; restore it with the toki-sync version that made it ({}) or newer",
            backup.display(),
            header.schema_version,
            header.toki_sync_version
        ));
    }
    if db_path.exists() {
        if !force {
            return Err(format!(
                "{} exists; restoring would replace it. Pass --force to replace it (the old file is kept beside it as {}.before-restore-<time>)",
                db_path.display(),
                db_path.display()
            ));
        }
        ensure_not_in_use(db_path)?;
    }
    let dir = db_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        crate::bootstrap::create_private_dir(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    }
    let staging = db_path.with_extension("redb.restoring");
    let _ = std::fs::remove_file(&staging);
    let result = build(open()?, &staging, &header, &mut progress).and_then(|()| check(&staging, &header));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&staging);
        return Err(format!("{}: {e}; the existing data file was not touched", backup.display()));
    }
    let previous = if db_path.exists() {
        let stamp = crate::store::now_secs();
        let aside = PathBuf::from(format!("{}.before-restore-{stamp}", db_path.display()));
        std::fs::rename(db_path, &aside)
            .map_err(|e| format!("cannot move {} aside: {e}", db_path.display()))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staging, db_path)
        .map_err(|e| format!("cannot move the restored file into place: {e}"))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Restored { header, previous })
}

/// A running server (or admin command) holds redb's lock on the file.
fn ensure_not_in_use(db_path: &Path) -> Result<(), String> {
    match redb::Database::open(db_path) {
        Ok(db) => {
            drop(db);
            Ok(())
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch) => {
            Err(StoreError::Locked(db_path.to_owned()).to_string())
        }
        // A damaged file is a reason to restore, not a reason to refuse.
        Err(_) => Ok(()),
    }
}

/// Loads every entry of the backup into a new redb file at `path`.
fn build(
    source: BufReader<File>,
    path: &Path,
    header: &Header,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(), String> {
    // Created private before redb opens it, like the data file itself.
    crate::bootstrap::create_private_file(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let db = redb::Database::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut reader = Reader::new(source).map_err(|e| e.to_string())?;
    let begin = |durable: bool| -> Result<redb::WriteTransaction, String> {
        let mut txn = db.begin_write().map_err(|e| e.to_string())?;
        if !durable {
            txn.set_durability(Durability::None).map_err(|e| e.to_string())?;
        }
        Ok(txn)
    };
    let mut txn = begin(false)?;
    let (mut table, mut done, mut in_txn) = (String::new(), 0u64, 0u64);
    while let Some(item) = reader.next_item().map_err(|e| e.to_string())? {
        match item {
            Item::Table { name, .. } => {
                table = name.to_owned();
                // An empty table is still created, as in the original.
                tables::create(&txn, &table)?;
            }
            Item::Entry { key, value } => {
                tables::insert(&txn, &table, key, value)?;
                done += 1;
                in_txn += 1;
                if in_txn >= COMMIT_EVERY {
                    txn.commit().map_err(|e| e.to_string())?;
                    txn = begin(false)?;
                    in_txn = 0;
                    progress(done, header.entries);
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    // Non-durable commits become durable with the next durable one.
    begin(true)?.commit().map_err(|e| e.to_string())?;
    progress(done, header.entries);
    db.close().map_err(|e| e.to_string())
}

/// Opens the new file as the server would (schema check and migration) and reads all of it.
fn check(path: &Path, header: &Header) -> Result<(), String> {
    let store = Store::open(path).map_err(|e| format!("the restored file does not open: {e}"))?;
    let txn = store.read().map_err(|e| e.to_string())?;
    let counts = tables::inventory(&txn).map_err(|e| e.to_string())?;
    for t in &header.tables {
        let found = counts.iter().find(|c| c.name == t.name).map(|c| c.entries).unwrap_or(0);
        // A migration may add rows (never for the same schema version).
        if found < t.entries || (header.schema_version == SCHEMA_VERSION && found != t.entries) {
            return Err(format!(
                "table `{}` has {found} entries after restoring, the backup {}",
                t.name, t.entries
            ));
        }
    }
    tables::read_all(&txn).map_err(|e| format!("the restored file is not fully readable: {e}"))?;
    drop(txn);
    store.close().map_err(|e| e.to_string())
}

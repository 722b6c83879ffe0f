//! Every table of the data file, for dumping and loading by name with its key and value types.
//!
//! A table that exists in the file but is missing here makes a backup fail (rather than leave
//! it out silently); `tests::every_table_is_listed` catches that before it ships.

use redb::{
    Key, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, Value, WriteTransaction,
};

use super::format::{TableInfo, Writer};
use crate::store::StoreError;
use crate::store::api_keys::{API_KEYS, USER_API_KEYS};
use crate::store::audit::AUDIT;
use crate::store::day_rollups::{DAY_ROLLUPS, USER_ZONES};
use crate::store::oauth_clients::{CLIENT_TOKEN_EXPIRY, CLIENT_TOKENS, OAUTH_CLIENTS, USER_OAUTH_CLIENTS};
use crate::store::recent_spill::{RECENT_SPILL, RECENT_SPILL_BY_TS};
use crate::store::schema::*;

/// Calls `$m!(DEFINITION)` for every table.
macro_rules! for_each_table {
    ($m:ident) => {
        $m!(META);
        $m!(SETTINGS);
        $m!(USERS);
        $m!(USER_NAMES);
        $m!(USER_UUIDS);
        $m!(OIDC_IDENTITIES);
        $m!(REFRESH_TOKENS);
        $m!(DEVICES);
        $m!(DEVICE_KEYS);
        $m!(DEVICE_UUIDS);
        $m!(DEVICE_TOMBSTONES);
        $m!(STRINGS);
        $m!(STRING_IDS);
        $m!(STREAMS);
        $m!(STREAM_KEYS);
        $m!(CURSORS);
        $m!(EVENTS);
        $m!(ROLLUPS);
        $m!(DAY_ROLLUPS);
        $m!(USER_ZONES);
        $m!(DEVICE_CODES);
        $m!(DEVICE_USER_CODES);
        $m!(TEAMS);
        $m!(TEAM_NAMES);
        $m!(TEAM_UUIDS);
        $m!(TEAM_MEMBERS);
        $m!(USER_TEAMS);
        $m!(VM_OUTBOX);
        $m!(VM_REVISIONS);
        $m!(VM_DELETIONS);
        $m!(RECENT_SPILL);
        $m!(RECENT_SPILL_BY_TS);
        // Created on first use (an absent one is left out of the dump).
        $m!(API_KEYS);
        $m!(USER_API_KEYS);
        $m!(OAUTH_CLIENTS);
        $m!(USER_OAUTH_CLIENTS);
        $m!(CLIENT_TOKENS);
        $m!(CLIENT_TOKEN_EXPIRY);
        $m!(AUDIT);
    };
}

/// Names of every table this version knows.
pub fn known() -> Vec<&'static str> {
    let mut names = Vec::new();
    macro_rules! name {
        ($t:ident) => {
            names.push(redb::TableHandle::name(&$t));
        };
    }
    for_each_table!(name);
    names
}

#[derive(Debug)]
pub enum DumpError {
    Store(StoreError),
    /// Writing the dump failed (disk full, client gone).
    Io(std::io::Error),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Store(e) => write!(f, "{e}"),
            DumpError::Io(e) => write!(f, "writing the backup failed: {e}"),
        }
    }
}

impl From<StoreError> for DumpError {
    fn from(e: StoreError) -> Self {
        DumpError::Store(e)
    }
}

impl From<std::io::Error> for DumpError {
    fn from(e: std::io::Error) -> Self {
        DumpError::Io(e)
    }
}

/// The tables present in the snapshot with their sizes, in dump order. Tables created lazily
/// and not there yet are left out (restoring recreates them on first use).
pub fn inventory(txn: &ReadTransaction) -> Result<Vec<TableInfo>, StoreError> {
    let present: Vec<String> = txn
        .list_tables()
        .map_err(StoreError::from)?
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    let known = known();
    if let Some(unknown) = present.iter().find(|p| !known.contains(&p.as_str())) {
        return Err(StoreError::Corrupt(format!(
            "the data file has a table `{unknown}` that backups do not know; refusing to write an incomplete backup"
        )));
    }
    let mut out = Vec::new();
    macro_rules! size {
        ($t:ident) => {
            let name = redb::TableHandle::name(&$t);
            if present.iter().any(|p| p == name) {
                out.push(TableInfo { name: name.to_owned(), entries: txn.open_table($t)?.len()? });
            }
        };
    }
    for_each_table!(size);
    Ok(out)
}

fn dump_table<K: Key + 'static, V: Value + 'static, W: std::io::Write>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
    entries: u64,
    out: &mut Writer<W>,
) -> Result<(), DumpError> {
    let table = txn.open_table(def).map_err(StoreError::from)?;
    out.table(redb::TableHandle::name(&def), entries)?;
    for row in table.iter().map_err(StoreError::from)? {
        let (k, v) = row.map_err(StoreError::from)?;
        out.entry(K::as_bytes(&k.value()).as_ref(), V::as_bytes(&v.value()).as_ref())?;
    }
    Ok(())
}

/// Writes every table of `txn` listed in `tables` (from [`inventory`] on the same transaction).
pub fn dump<W: std::io::Write>(
    txn: &ReadTransaction,
    tables: &[TableInfo],
    out: &mut Writer<W>,
) -> Result<(), DumpError> {
    for info in tables {
        macro_rules! one {
            ($t:ident) => {
                if info.name == redb::TableHandle::name(&$t) {
                    dump_table(txn, $t, info.entries, out)?;
                    continue;
                }
            };
        }
        for_each_table!(one);
        unreachable!("inventory lists only known tables");
    }
    Ok(())
}

/// Inserts one entry given in redb's byte encoding into the table `name`. The lengths of
/// fixed-width types are checked first (a wrong length would make redb's decoders panic).
pub fn insert(txn: &WriteTransaction, name: &str, key: &[u8], value: &[u8]) -> Result<(), String> {
    fn put<K: Key + 'static, V: Value + 'static>(
        txn: &WriteTransaction,
        def: TableDefinition<K, V>,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), String> {
        let name = redb::TableHandle::name(&def);
        if K::fixed_width().is_some_and(|w| w != key.len())
            || V::fixed_width().is_some_and(|w| w != value.len())
        {
            return Err(format!("an entry of table `{name}` has the wrong size"));
        }
        // Variable-width parts are decoded with unwraps inside redb; the dump's checksum
        // vouches for them, and a probe decode keeps a bug elsewhere from becoming a panic here.
        let probe = std::panic::catch_unwind(|| {
            std::hint::black_box((K::from_bytes(key), V::from_bytes(value)));
        });
        if probe.is_err() {
            return Err(format!("an entry of table `{name}` cannot be decoded"));
        }
        let mut table = txn.open_table(def).map_err(|e| e.to_string())?;
        table.insert(K::from_bytes(key), V::from_bytes(value)).map_err(|e| e.to_string())?;
        Ok(())
    }
    macro_rules! one {
        ($t:ident) => {
            if name == redb::TableHandle::name(&$t) {
                return put(txn, $t, key, value);
            }
        };
    }
    for_each_table!(one);
    Err(format!(
        "the backup has a table `{name}` that this toki-sync does not know (made by a newer version?)"
    ))
}

/// Creates the (empty) table `name`.
pub fn create(txn: &WriteTransaction, name: &str) -> Result<(), String> {
    macro_rules! one {
        ($t:ident) => {
            if name == redb::TableHandle::name(&$t) {
                txn.open_table($t).map_err(|e| e.to_string())?;
                return Ok(());
            }
        };
    }
    for_each_table!(one);
    Err(format!(
        "the backup has a table `{name}` that this toki-sync does not know (made by a newer version?)"
    ))
}

/// Reads every entry of every table, so a damaged page shows up now rather than in production.
pub fn read_all(txn: &ReadTransaction) -> Result<u64, StoreError> {
    let mut n = 0u64;
    macro_rules! scan {
        ($t:ident) => {
            match txn.open_table($t) {
                Ok(table) => {
                    for row in table.iter()? {
                        let (k, v) = row?;
                        std::hint::black_box((k.value(), v.value()));
                        n += 1;
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
        };
    }
    for_each_table!(scan);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("t.redb")).unwrap();
        // Lazily created tables exist once something was written to them.
        store
            .write(|t| {
                t.open_table(RECENT_SPILL)?;
                t.open_table(RECENT_SPILL_BY_TS)?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let txn = store.read().unwrap();
        let tables = inventory(&txn).expect("every table of a fresh file is known to backups");
        let present = txn.list_tables().unwrap().count();
        assert_eq!(tables.len(), present);
    }

    /// Tables created on first use do not show up in a fresh file, so every table the store's
    /// sources define is checked against the list too.
    #[test]
    fn every_table_defined_in_the_store_is_listed() {
        let known = known();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store");
        let mut defined = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for part in text.split("TableDefinition::new(\"").skip(1) {
                let name = part.split('"').next().unwrap();
                defined += 1;
                assert!(
                    known.contains(&name),
                    "table `{name}` ({}) is missing from backup::tables::for_each_table",
                    path.display()
                );
            }
        }
        assert!(defined >= known.len(), "found only {defined} table definitions in {dir}");
    }
}

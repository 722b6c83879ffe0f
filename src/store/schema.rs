//! Table definitions, the schema version and the migrations between versions.
//!
//! Keys are fixed-width and big-endian where order matters (redb sorts integer and tuple keys by
//! value), values are [`super::codec`] records. A fresh file is schema 0; `MIGRATIONS[n]` moves a
//! file from version n to n + 1 inside the open transaction, so an upgrade is all-or-nothing.
//!
//! Planned tables (added by later migrations, named here so the layout stays coherent):
//! devices `u32 -> record`, device keys `(user u32, key &str) -> device u32`, cursors
//! `(device u32, provider u32) -> i64`, events `(device, provider, ts_ms, id hash) -> record`,
//! hourly rollups `(user, hour, device, provider, model, project) -> sums`, interned strings,
//! device codes and teams.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::StoreError;

/// The schema this binary writes. Files with a higher version are refused.
pub const SCHEMA_VERSION: u32 = 1;

/// Small values about the file itself: `schema_version` (u32 LE), `jwt_secret`, id counters.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Run-time settings changed by admins (`registration_mode`), string to string.
pub const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");
/// Users by compact id.
pub const USERS: TableDefinition<u32, &[u8]> = TableDefinition::new("users");
/// Lower-cased username to user id (usernames are unique ignoring case).
pub const USER_NAMES: TableDefinition<&str, u32> = TableDefinition::new("user_names");
/// External UUID (what the API shows and tokens carry) to user id.
pub const USER_UUIDS: TableDefinition<u128, u32> = TableDefinition::new("user_uuids");
/// Refresh-token records by (user id, SHA-256 of the token), so a user's tokens are one range.
pub const REFRESH_TOKENS: TableDefinition<(u32, [u8; 32]), &[u8]> = TableDefinition::new("refresh_tokens");

pub const META_SCHEMA_VERSION: &str = "schema_version";
pub const META_JWT_SECRET: &str = "jwt_secret";
pub const META_NEXT_USER_ID: &str = "next_user_id";

type Migration = fn(&WriteTransaction) -> Result<(), StoreError>;

/// `MIGRATIONS[n]` upgrades schema n to n + 1.
const MIGRATIONS: &[Migration] = &[create_v1];

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

fn create_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(SETTINGS)?;
    txn.open_table(USERS)?;
    txn.open_table(USER_NAMES)?;
    txn.open_table(USER_UUIDS)?;
    txn.open_table(REFRESH_TOKENS)?;
    Ok(())
}

pub fn read_version(txn: &WriteTransaction) -> Result<u32, StoreError> {
    let meta = txn.open_table(META)?;
    let v = match meta.get(META_SCHEMA_VERSION)? {
        None => 0,
        Some(v) => {
            let bytes: [u8; 4] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("schema_version is not 4 bytes".into()))?;
            u32::from_le_bytes(bytes)
        }
    };
    Ok(v)
}

/// Brings the file to [`SCHEMA_VERSION`]. Returns the version found, or an error for a newer file.
pub fn migrate(txn: &WriteTransaction) -> Result<u32, StoreError> {
    let found = read_version(txn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { found, supported: SCHEMA_VERSION });
    }
    for (step, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        migration(txn)?;
        if found > 0 {
            tracing::info!(from = step, to = step + 1, "migrated data file schema");
        }
    }
    if found != SCHEMA_VERSION {
        txn.open_table(META)?
            .insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_le_bytes().as_slice())?;
    }
    Ok(found)
}

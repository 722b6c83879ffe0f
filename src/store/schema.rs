//! Table definitions, the schema version and the migrations between versions.
//!
//! Keys are fixed-width and big-endian where order matters (redb sorts integer and tuple keys by
//! value), values are [`super::codec`] records. A fresh file is schema 0; `MIGRATIONS[n]` moves a
//! file from version n to n + 1 inside the open transaction, so an upgrade is all-or-nothing.
//!
//! Usage data: each (device, provider) pair is a *stream* with a compact id, and events are keyed
//! by (stream, ts_ms, message-id hash), so one stream's events are one key range in time order
//! and an exact retransmission is found by a point lookup (the dedup index is the table itself). Hourly rollups are keyed by (user, hour, device,
//! provider, model, project): a user's month is one key range of a few thousand rows. Strings
//! that repeat (providers, models, projects, sessions, token column names) are interned to u32.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::StoreError;

/// The schema this binary writes. Files with a higher version are refused.
pub const SCHEMA_VERSION: u32 = 3;

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
/// OIDC identity (`issuer|subject`, see [`super::users::oidc_key`]) -> user id: an account
/// signs in through a provider by this pair only, never by email or name.
pub const OIDC_IDENTITIES: TableDefinition<&str, u32> = TableDefinition::new("oidc_identities");
/// Refresh-token records by (user id, SHA-256 of the token), so a user's tokens are one range.
pub const REFRESH_TOKENS: TableDefinition<(u32, [u8; 32]), &[u8]> = TableDefinition::new("refresh_tokens");

/// Devices by compact id.
pub const DEVICES: TableDefinition<u32, &[u8]> = TableDefinition::new("devices");
/// (user id, device key as sent by the client) -> device id. The same key under two users is two
/// devices.
pub const DEVICE_KEYS: TableDefinition<(u32, &str), u32> = TableDefinition::new("device_keys");
/// External device UUID (`/me/devices` id, AUTH_OK device_id) -> device id.
pub const DEVICE_UUIDS: TableDefinition<u128, u32> = TableDefinition::new("device_uuids");
/// (user id, device key) of deleted devices -> deletion time; such a key gets `device_removed`
/// until it completes the device flow again.
pub const DEVICE_TOMBSTONES: TableDefinition<(u32, &str), i64> = TableDefinition::new("device_tombstones");
/// Interned strings: id -> string, and string -> id. Id 0 is the empty string.
pub const STRINGS: TableDefinition<u32, &str> = TableDefinition::new("strings");
pub const STRING_IDS: TableDefinition<&str, u32> = TableDefinition::new("string_ids");
/// (device id, provider string id) -> stream id.
pub const STREAMS: TableDefinition<(u32, u32), u32> = TableDefinition::new("streams");
/// Stream id -> (device id, provider string id).
pub const STREAM_KEYS: TableDefinition<u32, (u32, u32)> = TableDefinition::new("stream_keys");
/// Stream id -> largest accepted ts_ms (the LAST_TS cursor).
pub const CURSORS: TableDefinition<u32, i64> = TableDefinition::new("cursors");
/// (stream id, ts_ms, message-id hash) -> event record.
pub const EVENTS: TableDefinition<super::events::EventKey, &[u8]> = TableDefinition::new("events");
/// (user, hour since epoch, device, provider, model, project) -> token sums and event count.
pub const ROLLUPS: TableDefinition<super::events::RollupKey, &[u8]> = TableDefinition::new("rollups");

/// Pending device-code logins by SHA-256 of the device code (the code itself is never stored).
pub const DEVICE_CODES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("device_codes");
/// User code (`XXXX-XXXX`) -> device-code hash, for approval from the browser.
pub const DEVICE_USER_CODES: TableDefinition<&str, [u8; 32]> = TableDefinition::new("device_user_codes");

/// Teams by compact id.
pub const TEAMS: TableDefinition<u32, &[u8]> = TableDefinition::new("teams");
/// Lower-cased team name -> team id (names are unique ignoring case).
pub const TEAM_NAMES: TableDefinition<&str, u32> = TableDefinition::new("team_names");
/// External team UUID -> team id.
pub const TEAM_UUIDS: TableDefinition<u128, u32> = TableDefinition::new("team_uuids");
/// (team id, user id) -> membership record: a team's members are one key range.
pub const TEAM_MEMBERS: TableDefinition<(u32, u32), &[u8]> = TableDefinition::new("team_members");
/// (user id, team id), the reverse index: a user's teams are one key range.
pub const USER_TEAMS: TableDefinition<(u32, u32), ()> = TableDefinition::new("user_teams");

/// The VictoriaMetrics outbox ([`super::vm_outbox`]): rollup keys whose current value has not
/// reached VictoriaMetrics yet. Written in the same transaction as the rollup change.
pub const VM_OUTBOX: TableDefinition<super::events::RollupKey, ()> = TableDefinition::new("vm_outbox");
/// Rollup key -> the last revision assigned to its VictoriaMetrics samples and every token
/// column ever sent for it.
pub const VM_REVISIONS: TableDefinition<super::events::RollupKey, &[u8]> =
    TableDefinition::new("vm_revisions");
/// UUIDs of deleted devices whose VictoriaMetrics series are still to be deleted.
pub const VM_DELETIONS: TableDefinition<u128, ()> = TableDefinition::new("vm_deletions");

pub const META_SCHEMA_VERSION: &str = "schema_version";
pub const META_JWT_SECRET: &str = "jwt_secret";
pub const META_NEXT_USER_ID: &str = "next_user_id";
pub const META_NEXT_DEVICE_ID: &str = "next_device_id";
pub const META_NEXT_STRING_ID: &str = "next_string_id";
pub const META_NEXT_TEAM_ID: &str = "next_team_id";
pub const META_NEXT_STREAM_ID: &str = "next_stream_id";

type Migration = fn(&WriteTransaction) -> Result<(), StoreError>;

/// `MIGRATIONS[n]` upgrades schema n to n + 1.
const MIGRATIONS: &[Migration] = &[create_v1, add_oidc_identities, super::day_rollups::migrate_v3];

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

fn create_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(SETTINGS)?;
    txn.open_table(USERS)?;
    txn.open_table(USER_NAMES)?;
    txn.open_table(USER_UUIDS)?;
    txn.open_table(REFRESH_TOKENS)?;
    txn.open_table(DEVICES)?;
    txn.open_table(DEVICE_KEYS)?;
    txn.open_table(DEVICE_UUIDS)?;
    txn.open_table(DEVICE_TOMBSTONES)?;
    txn.open_table(STRING_IDS)?.insert("", 0)?;
    txn.open_table(STRINGS)?.insert(0, "")?;
    txn.open_table(STREAMS)?;
    txn.open_table(STREAM_KEYS)?;
    txn.open_table(CURSORS)?;
    txn.open_table(EVENTS)?;
    txn.open_table(ROLLUPS)?;
    txn.open_table(DEVICE_CODES)?;
    txn.open_table(DEVICE_USER_CODES)?;
    txn.open_table(TEAMS)?;
    txn.open_table(TEAM_NAMES)?;
    txn.open_table(TEAM_UUIDS)?;
    txn.open_table(TEAM_MEMBERS)?;
    txn.open_table(USER_TEAMS)?;
    txn.open_table(VM_OUTBOX)?;
    txn.open_table(VM_REVISIONS)?;
    txn.open_table(VM_DELETIONS)?;
    Ok(())
}

/// v2: the OIDC identity index, filled from the users already linked to a provider.
fn add_oidc_identities(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut index = txn.open_table(OIDC_IDENTITIES)?;
    let users = txn.open_table(USERS)?;
    for row in users.iter()? {
        let (id, v) = row?;
        let user = <super::users::User as super::codec::Record>::decode(v.value())?;
        if let Some(key) = &user.oidc_subject {
            index.insert(key.as_str(), id.value())?;
        }
    }
    Ok(())
}

/// Reads a u32 counter from META (absent: `first`), stores the next value, returns the current.
pub fn next_id(txn: &WriteTransaction, name: &str, first: u32) -> Result<u32, StoreError> {
    let mut meta = txn.open_table(META)?;
    let id = match meta.get(name)? {
        Some(v) => u32::from_le_bytes(
            v.value().try_into().map_err(|_| StoreError::Corrupt(format!("{name} is not 4 bytes")))?,
        ),
        None => first,
    };
    let next = id.checked_add(1).ok_or_else(|| StoreError::Corrupt(format!("{name} exhausted")))?;
    meta.insert(name, next.to_le_bytes().as_slice())?;
    Ok(id)
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
        txn.open_table(META)?.insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_le_bytes().as_slice())?;
    }
    Ok(found)
}

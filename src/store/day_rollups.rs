//! The day tier: the hourly rollups summed per local day in each user's own UTC offset, so a
//! year of a busy user is a few thousand rows instead of a few hundred thousand.
//!
//! Keyed like the hourly rollups with the day in place of the hour: (user, day + 1, device,
//! provider, model, project), where day = floor((hour start + offset) / 24 h) — an hour counts
//! in the local day its start falls in, as the usage API counts days (the + 1 keeps a day
//! before 1970-01-01 at a negative offset representable). The tier is derivable from the hourly
//! one at any time: the ingest writer keeps both in the same transaction, a change of the user's
//! offset rebuilds the user's days from their hourly rows, and device or user deletion removes
//! their days with their hours. Queries at another offset read the hourly tier.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::StoreError;
use super::codec::Record;
use super::events::{RollupDelta, RollupKey, RollupRecord};
use super::schema::ROLLUPS;
use crate::fasthash::FxHashMap;

pub const DAY_ROLLUPS: TableDefinition<RollupKey, &[u8]> = TableDefinition::new("day_rollups");
/// User id -> (offset of their day tier in seconds, when it was last changed in Unix seconds).
/// No row: UTC.
pub const USER_ZONES: TableDefinition<u32, (i32, i64)> = TableDefinition::new("user_zones");

const HOUR_SECS: i64 = 3600;
const DAY_SECS: i64 = 86_400;

/// The day-tier key component of an hour at an offset (day number + 1).
pub fn day_key_of_hour(hour: u32, offset_secs: i32) -> u32 {
    let day = (i64::from(hour) * HOUR_SECS + i64::from(offset_secs)).div_euclid(DAY_SECS);
    (day + 1).clamp(0, i64::from(u32::MAX)) as u32
}

/// The first hour (since the epoch) that counts in the day with key `day_key`.
pub fn first_hour_of_day_key(day_key: u32, offset_secs: i32) -> i64 {
    let start = (i64::from(day_key) - 1) * DAY_SECS - i64::from(offset_secs);
    start.div_euclid(HOUR_SECS) + i64::from(start.rem_euclid(HOUR_SECS) != 0)
}

/// Start (UTC ms) of the local day with key `day_key`.
pub fn day_key_start_ms(day_key: u32, offset_secs: i32) -> i64 {
    ((i64::from(day_key) - 1) * DAY_SECS - i64::from(offset_secs)) * 1000
}

/// The user's day-tier offset inside a write transaction.
pub fn zone_in(txn: &WriteTransaction, user: u32) -> Result<i32, StoreError> {
    Ok(txn.open_table(USER_ZONES)?.get(user)?.map_or(0, |v| v.value().0))
}

/// Adds a stored record into a delta (for building days from hours).
pub fn add_record(delta: &mut RollupDelta, rec: &RollupRecord) {
    delta.events = delta.events.saturating_add(i128::from(rec.events));
    delta.usage_total = delta.usage_total.saturating_add(i128::from(rec.usage_total));
    for (col, n) in &rec.tokens {
        let slot = delta.tokens.entry(*col).or_default();
        *slot = slot.saturating_add(i128::from(*n));
    }
}

/// Applies day deltas accumulated over a transaction.
pub fn apply_deltas_in(
    txn: &WriteTransaction,
    deltas: impl Iterator<Item = (RollupKey, RollupDelta)>,
) -> Result<(), StoreError> {
    let mut days = txn.open_table(DAY_ROLLUPS)?;
    for (key, delta) in deltas {
        if delta.is_zero() {
            continue;
        }
        let mut rec = match days.get(key)? {
            Some(v) => RollupRecord::decode(v.value())?,
            None => RollupRecord::default(),
        };
        rec.merge(&delta);
        if rec.is_empty() {
            days.remove(key)?;
        } else {
            days.insert(key, rec.encode().as_slice())?;
        }
    }
    Ok(())
}

fn user_range(user: u32) -> std::ops::RangeInclusive<RollupKey> {
    (user, 0, 0, 0, 0, 0)..=(user, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX)
}

/// Replaces the user's days with sums of their hourly rows at `offset_secs`. Returns the number
/// of day rows written.
pub fn rebuild_user_in(txn: &WriteTransaction, user: u32, offset_secs: i32) -> Result<usize, StoreError> {
    txn.open_table(DAY_ROLLUPS)?.extract_from_if(user_range(user), |_, _| true)?.for_each(drop);
    let mut sums: FxHashMap<RollupKey, RollupDelta> = FxHashMap::default();
    {
        let hours = txn.open_table(ROLLUPS)?;
        for row in hours.range(user_range(user))? {
            let (k, v) = row?;
            let (u, hour, device, provider, model, project) = k.value();
            let rec = RollupRecord::decode(v.value())?;
            let key = (u, day_key_of_hour(hour, offset_secs), device, provider, model, project);
            add_record(sums.entry(key).or_default(), &rec);
        }
    }
    let mut keys: Vec<(RollupKey, RollupDelta)> = sums.into_iter().collect();
    keys.sort_unstable_by_key(|(k, _)| *k);
    let written = keys.len();
    let mut days = txn.open_table(DAY_ROLLUPS)?;
    for (key, delta) in keys {
        let mut rec = RollupRecord::default();
        rec.merge(&delta);
        if !rec.is_empty() {
            days.insert(key, rec.encode().as_slice())?;
        }
    }
    Ok(written)
}

/// Sets the user's offset and rebuilds their days (nothing to do when it is unchanged).
pub fn set_zone_in(
    txn: &WriteTransaction,
    user: u32,
    offset_secs: i32,
    now: i64,
) -> Result<Option<usize>, StoreError> {
    if zone_in(txn, user)? == offset_secs {
        return Ok(None);
    }
    txn.open_table(USER_ZONES)?.insert(user, (offset_secs, now))?;
    rebuild_user_in(txn, user, offset_secs).map(Some)
}

/// Removes one device's days (with its hours, on device deletion).
pub fn delete_device_in(txn: &WriteTransaction, user: u32, device: u32) -> Result<(), StoreError> {
    txn.open_table(DAY_ROLLUPS)?.extract_from_if(user_range(user), |k, _| k.2 == device)?.for_each(drop);
    Ok(())
}

/// Removes everything of a deleted user.
pub fn delete_user_in(txn: &WriteTransaction, user: u32) -> Result<(), StoreError> {
    txn.open_table(DAY_ROLLUPS)?.extract_from_if(user_range(user), |_, _| true)?.for_each(drop);
    txn.open_table(USER_ZONES)?.remove(user)?;
    Ok(())
}

impl super::Store {
    /// The user's day-tier offset and when it was set (None: UTC, never set).
    pub fn user_zone(&self, user: u32) -> Result<Option<(i32, i64)>, StoreError> {
        Ok(self.read()?.open_table(USER_ZONES)?.get(user)?.map(|v| v.value()))
    }
}

/// Schema 3: builds the day tier (UTC) for every user from the hourly rows already stored.
pub fn migrate_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(USER_ZONES)?;
    txn.open_table(DAY_ROLLUPS)?;
    let users: Vec<u32> = {
        let hours = txn.open_table(ROLLUPS)?;
        let mut users = Vec::new();
        let mut next = Some(0u32);
        // One seek per user: the first key at or after (user, 0, …).
        while let Some(u) = next {
            let Some(row) = hours.range((u, 0, 0, 0, 0, 0)..)?.next() else { break };
            let user = row?.0.value().0;
            users.push(user);
            next = user.checked_add(1);
        }
        users
    };
    for user in users {
        rebuild_user_in(txn, user, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_offset() {
        let h = 493_960; // 2026-05-08T16:00Z (hour since the epoch)
        let day = (h as i64 * 3600).div_euclid(DAY_SECS) as u32 + 1;
        assert_eq!(day_key_of_hour(h, 0), day);
        assert_eq!(day_key_of_hour(h + 7, 0), day, "23:00Z");
        assert_eq!(day_key_of_hour(h + 8, 0), day + 1, "00:00Z");
        assert_eq!(day_key_of_hour(h + 6, 2 * 3600), day + 1, "22:00Z is the next day at +02:00");
        assert_eq!(
            day_key_of_hour(h + 7, 5 * 3600 + 1800),
            day + 1,
            "23:00Z is 04:30 the next day at +05:30"
        );
        assert_eq!(day_key_of_hour(0, -3600), 0, "before 1970 at a negative offset");
        for off in [0, 7200, -18000, 19800, -34200, 50400] {
            for d in [day - 1, day, day + 1] {
                let first = first_hour_of_day_key(d, off);
                assert_eq!(day_key_of_hour(first as u32, off), d, "offset {off}");
                assert_eq!(day_key_of_hour(first as u32 - 1, off), d - 1, "offset {off}");
                assert!(day_key_start_ms(d, off) <= first * 3_600_000);
            }
        }
    }
}

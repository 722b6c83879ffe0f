//! Counts for `admin stats`, server info and benchmarks.

use redb::ReadableTableMetadata;
use serde::Serialize;

use super::schema::{CURSORS, DEVICES, EVENTS, REFRESH_TOKENS, ROLLUPS, STRINGS, TEAMS, USERS};
use super::{Store, StoreError};

#[derive(Clone, Debug, Serialize)]
pub struct StoreStats {
    pub users: u64,
    pub devices: u64,
    pub events: u64,
    pub rollup_buckets: u64,
    pub cursors: u64,
    pub strings: u64,
    pub teams: u64,
    pub refresh_tokens: u64,
    pub file_bytes: u64,
}

impl Store {
    /// Row counts (redb keeps them per table, so this does not scan) and the file size.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.read()?;
        Ok(StoreStats {
            users: txn.open_table(USERS)?.len()?,
            devices: txn.open_table(DEVICES)?.len()?,
            events: txn.open_table(EVENTS)?.len()?,
            rollup_buckets: txn.open_table(ROLLUPS)?.len()?,
            cursors: txn.open_table(CURSORS)?.len()?,
            strings: txn.open_table(STRINGS)?.len()?,
            teams: txn.open_table(TEAMS)?.len()?,
            refresh_tokens: txn.open_table(REFRESH_TOKENS)?.len()?,
            file_bytes: self.file_size(),
        })
    }
}

//! The recent-message spill: Claude message ids the ingest writer evicted from its in-memory
//! recent index (a stream with more than `ingest::recent::MAX_PER_STREAM` ids in its window).
//!
//! Two tables hold the same rows: [`RECENT_SPILL`] by (stream, message-id hash), for the point
//! lookup on a miss, and [`RECENT_SPILL_BY_TS`] by (stream, ts, hash), so that pruning what fell
//! out of the time window is one short range at the start of the stream's rows instead of a scan
//! over hash-ordered keys. Written only for such streams, deleted with the device, created on
//! first use (an older file's spill rows get their time index at the next start).

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{Store, StoreError};

/// (stream id, message-id hash) -> ts of the stored version.
pub const RECENT_SPILL: TableDefinition<(u32, u64), i64> = TableDefinition::new("recent_spill");
/// (stream id, ts, message-id hash), the same rows in time order.
pub const RECENT_SPILL_BY_TS: TableDefinition<(u32, i64, u64), ()> =
    TableDefinition::new("recent_spill_by_ts");

/// The stored ts of a spilled id.
pub fn get_in(txn: &WriteTransaction, stream: u32, hash: u64) -> Result<Option<i64>, StoreError> {
    Ok(txn.open_table(RECENT_SPILL)?.get((stream, hash))?.map(|v| v.value()))
}

/// Spills `(stream, hash, ts)` rows. An id spilled before keeps the newer of its two versions.
pub fn put_in(txn: &WriteTransaction, rows: &[(u32, u64, i64)]) -> Result<(), StoreError> {
    let mut by_id = txn.open_table(RECENT_SPILL)?;
    let mut by_ts = txn.open_table(RECENT_SPILL_BY_TS)?;
    for &(stream, hash, ts) in rows {
        let old = by_id.get((stream, hash))?.map(|v| v.value());
        if old.is_some_and(|o| o >= ts) {
            continue;
        }
        if let Some(o) = old {
            by_ts.remove((stream, o, hash))?;
        }
        by_id.insert((stream, hash), ts)?;
        by_ts.insert((stream, ts, hash), ())?;
    }
    Ok(())
}

/// Removes a stream's rows older than `horizon` (the same rule as the in-memory index: older than
/// the window behind the stream's newest event). Returns how many were removed and the ts of the
/// oldest row left, `None` when the stream has none left.
pub fn prune_in(
    txn: &WriteTransaction,
    stream: u32,
    horizon: i64,
) -> Result<(usize, Option<i64>), StoreError> {
    let mut by_id = txn.open_table(RECENT_SPILL)?;
    let mut by_ts = txn.open_table(RECENT_SPILL_BY_TS)?;
    let mut removed = 0;
    for row in by_ts
        .extract_from_if::<(u32, i64, u64), _>((stream, i64::MIN, 0)..(stream, horizon, 0), |_, _| true)?
    {
        let (key, _) = row?;
        let (_, _, hash) = key.value();
        by_id.remove((stream, hash))?;
        removed += 1;
    }
    let oldest = by_ts.range((stream, i64::MIN, 0)..=(stream, i64::MAX, u64::MAX))?.next().transpose()?;
    Ok((removed, oldest.map(|(k, _)| k.value().1)))
}

/// Deletes every spilled row of a stream (its device is being deleted).
pub fn delete_stream_in(txn: &WriteTransaction, stream: u32) -> Result<(), StoreError> {
    txn.open_table(RECENT_SPILL)?
        .extract_from_if::<(u32, u64), _>((stream, 0)..=(stream, u64::MAX), |_, _| true)?
        .for_each(drop);
    txn.open_table(RECENT_SPILL_BY_TS)?
        .extract_from_if::<(u32, i64, u64), _>(
            (stream, i64::MIN, 0)..=(stream, i64::MAX, u64::MAX),
            |_, _| true,
        )?
        .for_each(drop);
    Ok(())
}

impl Store {
    /// The oldest spilled ts of every stream that has spilled rows (start-up). Rebuilds the time
    /// index first if it does not match the id table (a file written before it existed).
    pub fn recent_spill_oldest(&self) -> Result<Vec<(u32, i64)>, StoreError> {
        let counts = {
            let txn = self.read()?;
            let by_id = match txn.open_table(RECENT_SPILL) {
                Ok(t) => t.len()?,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let by_ts = match txn.open_table(RECENT_SPILL_BY_TS) {
                Ok(t) => t.len()?,
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(e.into()),
            };
            (by_id, by_ts)
        };
        if counts.0 != counts.1 {
            tracing::info!(rows = counts.0, "rebuilding the time index of the recent-message spill table");
            self.write(|txn| {
                txn.delete_table(RECENT_SPILL_BY_TS)?;
                let by_id = txn.open_table(RECENT_SPILL)?;
                let mut by_ts = txn.open_table(RECENT_SPILL_BY_TS)?;
                for row in by_id.iter()? {
                    let (k, v) = row?;
                    let (stream, hash) = k.value();
                    by_ts.insert((stream, v.value(), hash), ())?;
                }
                Ok::<_, StoreError>(())
            })?;
        }
        let txn = self.read()?;
        let by_ts = txn.open_table(RECENT_SPILL_BY_TS)?;
        let mut out = Vec::new();
        let mut next = Some((0u32, i64::MIN, 0u64));
        // One seek per stream: the first row of a stream is its oldest.
        while let Some(from) = next {
            let Some(row) = by_ts.range(from..)?.next().transpose()? else { break };
            let (stream, ts, _) = row.0.value();
            out.push((stream, ts));
            next = stream.checked_add(1).map(|s| (s, i64::MIN, 0));
        }
        Ok(out)
    }
}

//! Streams: one per (device, provider) pair, with a compact id that prefixes event keys and keys
//! the LAST_TS cursor.

use redb::{ReadableTable, WriteTransaction};

use super::schema::{CURSORS, META_NEXT_STREAM_ID, STREAM_KEYS, STREAMS, STRING_IDS, next_id};
use super::{Store, StoreError};

/// The stream of (device, provider), created if new.
pub fn stream_in(txn: &WriteTransaction, device: u32, provider: u32) -> Result<u32, StoreError> {
    if let Some(id) = txn.open_table(STREAMS)?.get((device, provider))?.map(|v| v.value()) {
        return Ok(id);
    }
    let id = next_id(txn, META_NEXT_STREAM_ID, 1)?;
    txn.open_table(STREAMS)?.insert((device, provider), id)?;
    txn.open_table(STREAM_KEYS)?.insert(id, (device, provider))?;
    Ok(id)
}

/// (provider id, stream id) of every stream of a device.
pub fn device_streams(
    table: &impl ReadableTable<(u32, u32), u32>,
    device: u32,
) -> Result<Vec<(u32, u32)>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((device, 0)..=(device, u32::MAX))? {
        let (k, v) = row?;
        out.push((k.value().1, v.value()));
    }
    Ok(out)
}

impl Store {
    /// The LAST_TS cursor of (device, provider), 0 if none.
    pub fn cursor(&self, device: u32, provider: &str) -> Result<i64, StoreError> {
        let txn = self.read()?;
        let Some(p) = super::strings::lookup_in(&txn.open_table(STRING_IDS)?, provider)? else {
            return Ok(0);
        };
        let Some(stream) = txn.open_table(STREAMS)?.get((device, p))?.map(|v| v.value()) else {
            return Ok(0);
        };
        Ok(txn.open_table(CURSORS)?.get(stream)?.map(|v| v.value()).unwrap_or(0))
    }

    /// (provider id, stream id) of every stream of a device.
    pub fn device_streams(&self, device: u32) -> Result<Vec<(u32, u32)>, StoreError> {
        device_streams(&self.read()?.open_table(STREAMS)?, device)
    }
}

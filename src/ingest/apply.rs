//! Applying decoded batches inside the writer's transaction: event identity and dedup
//! (protocol.md §9), rollup deltas and cursors. Deltas and cursors are accumulated in memory and
//! written once per key when the transaction is flushed.

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};

use super::intern::Interner;
use super::recent::RecentIds;
use super::{BatchJob, IngestError};
use crate::store::codec::Record;
use crate::store::events::{hour_of, id_hash, EventRecord, RollupDelta, RollupKey, RollupRecord};
use crate::store::schema::{CURSORS, DEVICES, EVENTS, ROLLUPS};
use crate::store::StoreError;

/// The provider whose message ids identify a message across its streaming versions.
pub const CLAUDE_CODE: &str = "claude_code";

/// What happened to one batch's items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub provider: u32,
    /// New identities.
    pub inserted: u32,
    /// Exact retransmissions (same identity and ts), replaced idempotently.
    pub duplicates: u32,
    /// Claude messages replaced by a later version.
    pub replaced: u32,
    /// Claude versions older than the stored one, ignored.
    pub stale: u32,
}

/// Writer state that outlives transactions.
#[derive(Default)]
pub struct WriterState {
    pub interner: Interner,
    pub recent: RecentIds,
}

impl WriterState {
    pub fn commit(&mut self) {
        self.interner.commit();
        self.recent.commit();
    }

    pub fn rollback(&mut self) {
        self.interner.rollback();
        self.recent.rollback();
    }
}

/// Changes accumulated over one transaction.
#[derive(Default)]
pub struct Pending {
    rollups: HashMap<RollupKey, RollupDelta>,
    cursors: HashMap<(u32, u32), i64>,
}

impl Pending {
    fn account(&mut self, user: u32, device: u32, provider: u32, ts: i64, rec: &EventRecord, sign: i64) {
        let key = (user, hour_of(ts), device, provider, rec.model, rec.project);
        self.rollups.entry(key).or_default().apply(rec, sign);
    }

    /// Writes rollup deltas and cursors; returns the cursor of every (device, provider) touched.
    pub fn flush(&mut self, txn: &WriteTransaction) -> Result<HashMap<(u32, u32), i64>, StoreError> {
        let mut rollups = txn.open_table(ROLLUPS)?;
        for (key, delta) in self.rollups.drain() {
            let mut rec = match rollups.get(key)? {
                Some(v) => RollupRecord::decode(v.value())?,
                None => RollupRecord::default(),
            };
            rec.merge(&delta);
            if rec.is_empty() {
                rollups.remove(key)?;
            } else {
                rollups.insert(key, rec.encode().as_slice())?;
            }
        }
        let mut cursors = txn.open_table(CURSORS)?;
        let mut out = HashMap::with_capacity(self.cursors.len());
        for (key, ts) in self.cursors.drain() {
            let old = cursors.get(key)?.map(|v| v.value()).unwrap_or(0);
            let new = old.max(ts);
            if new != old {
                cursors.insert(key, new)?;
            }
            out.insert(key, new);
        }
        Ok(out)
    }
}

/// Reads the cursor of (device, provider) inside the transaction.
pub fn cursor_in(txn: &WriteTransaction, device: u32, provider: u32) -> Result<i64, StoreError> {
    Ok(txn.open_table(CURSORS)?.get((device, provider))?.map(|v| v.value()).unwrap_or(0))
}

pub fn apply_batch(
    txn: &WriteTransaction,
    st: &mut WriterState,
    pending: &mut Pending,
    job: &BatchJob,
) -> Result<Result<Applied, IngestError>, StoreError> {
    if txn.open_table(DEVICES)?.get(job.device)?.is_none() {
        return Ok(Err(IngestError::DeviceGone));
    }
    let batch = &job.batch;
    let provider = st.interner.id(txn, &batch.provider)?;
    let columns = batch.token_columns.iter().map(|c| st.interner.id(txn, c)).collect::<Result<Vec<u32>, _>>()?;
    // Dict ids mean something only inside this batch; a missing id reads as "".
    let mut dict_ids: HashMap<u32, u32> = HashMap::with_capacity(batch.dict.len() + 1);
    let mut resolve = |interner: &mut Interner, id: u32| -> Result<u32, StoreError> {
        if let Some(s) = dict_ids.get(&id) {
            return Ok(*s);
        }
        let s = interner.id(txn, batch.dict.get(&id).map(String::as_str).unwrap_or(""))?;
        dict_ids.insert(id, s);
        Ok(s)
    };
    let is_claude = batch.provider == CLAUDE_CODE;
    let (device, user) = (job.device, job.user);
    let mut events = txn.open_table(EVENTS)?;
    let mut applied = Applied { provider, ..Applied::default() };
    let mut max_ts: Option<i64> = None;

    for item in &batch.items {
        max_ts = Some(max_ts.map_or(item.ts_ms, |m| m.max(item.ts_ms)));
        let ev = &item.event;
        let rec = EventRecord {
            model: resolve(&mut st.interner, ev.model_id)?,
            session: resolve(&mut st.interner, ev.session_id)?,
            // Project id 0 means "no project", even though 0 is also a real dict entry.
            project: if ev.project_name_id == 0 { 0 } else { resolve(&mut st.interner, ev.project_name_id)? },
            // Tokens are read by column name; extra values or names beyond the shorter list are dropped.
            tokens: columns.iter().zip(&ev.tokens).filter(|(_, n)| **n > 0).map(|(c, n)| (*c, *n)).collect(),
            usage_total: item.usage_total,
        };
        let message_id = item.message_id.split(':').next().unwrap_or("");
        let hash = id_hash(message_id);
        let ts = item.ts_ms;

        let mut replaced_earlier = false;
        if is_claude && !message_id.is_empty() {
            // Identity is the message id: a later version replaces the stored one.
            match st.recent.get(device, provider, hash) {
                Some(stored_ts) if ts < stored_ts => {
                    applied.stale += 1;
                    continue;
                }
                Some(stored_ts) if ts > stored_ts => {
                    if let Some(old) = events.remove((device, provider, stored_ts, hash))? {
                        let old = EventRecord::decode(old.value())?;
                        pending.account(user, device, provider, stored_ts, &old, -1);
                        replaced_earlier = true;
                    }
                }
                _ => {}
            }
            st.recent.set(device, provider, hash, ts);
        }

        // The key includes ts: an exact retransmission lands on the same key and replaces
        // itself; for codex and others that is the whole identity rule.
        let previous = events.insert((device, provider, ts, hash), rec.encode().as_slice())?;
        match previous {
            Some(old) => {
                let old = EventRecord::decode(old.value())?;
                pending.account(user, device, provider, ts, &old, -1);
                applied.duplicates += 1;
            }
            None if replaced_earlier => applied.replaced += 1,
            None => applied.inserted += 1,
        }
        pending.account(user, device, provider, ts, &rec, 1);
    }

    let entry = pending.cursors.entry((device, provider)).or_insert(i64::MIN);
    if let Some(m) = max_ts {
        *entry = (*entry).max(m);
    }
    Ok(Ok(applied))
}

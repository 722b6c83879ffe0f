//! Applying decoded batches inside the writer's transaction: event identity and dedup
//! (protocol.md §9), rollup deltas and cursors. Deltas and cursors are accumulated in memory and
//! written once per key when the transaction is flushed.

use std::ops::Bound;

use redb::{ReadableTable, WriteTransaction};

use super::intern::Interner;
use super::recent::RecentIds;
use super::{BatchJob, IngestError};
use crate::fasthash::FxHashMap;
use crate::store::StoreError;
use crate::store::codec::Record;
use crate::store::day_rollups;
use crate::store::events::{EventKey, EventRecord, RollupDelta, RollupKey, RollupRecord, hour_of, id_hash};
use crate::store::recent_spill;
use crate::store::schema::{CURSORS, DEVICES, EVENTS, ROLLUPS};
use crate::store::streams::stream_in;
use crate::store::vm_outbox;
use crate::sync::wire::MAX_TOKEN_COLUMNS;

/// The provider whose message ids identify a message across its streaming versions.
pub const CLAUDE_CODE: &str = "claude_code";

/// What happened to one batch's items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub stream: u32,
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
    rollups: FxHashMap<RollupKey, RollupDelta>,
    /// Day-tier offsets of the users met in this transaction, for the day tier
    /// (`store::day_rollups`), whose deltas are the hourly ones summed per local day at flush.
    /// Offset changes run in transactions of their own, so the cache never outlives one.
    zones: FxHashMap<u32, i32>,
    /// stream -> largest ts seen
    cursors: FxHashMap<u32, i64>,
}

/// Whose usage a batch is: the rollup key parts it shares.
#[derive(Clone, Copy)]
struct Owner {
    user: u32,
    device: u32,
    provider: u32,
}

impl Pending {
    fn account(&mut self, owner: Owner, ts: i64, rec: &EventRecord, sign: i8) {
        let Owner { user, device, provider } = owner;
        let key = (user, hour_of(ts), device, provider, rec.model, rec.project);
        self.rollups.entry(key).or_default().apply(rec, sign);
    }

    /// Reads `user`'s day-tier offset into the cache, once per transaction.
    fn note_zone(&mut self, txn: &WriteTransaction, user: u32) -> Result<(), StoreError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.zones.entry(user) {
            slot.insert(day_rollups::zone_in(txn, user)?);
        }
        Ok(())
    }

    /// Writes rollup deltas and cursors; returns the cursor of every stream touched. Each
    /// changed rollup is queued for VictoriaMetrics in the same transaction.
    pub fn flush(&mut self, txn: &WriteTransaction) -> Result<FxHashMap<u32, i64>, StoreError> {
        let mut rollups = txn.open_table(ROLLUPS)?;
        let mut vm_outbox = vm_outbox::Marker::open(txn)?;
        let mut days: FxHashMap<RollupKey, RollupDelta> = FxHashMap::default();
        for (key, delta) in self.rollups.drain() {
            if !delta.is_zero() {
                vm_outbox.mark(key)?;
                let (user, hour, device, provider, model, project) = key;
                let zone = self.zones.get(&user).copied().unwrap_or_default();
                let day = (user, day_rollups::day_key_of_hour(hour, zone), device, provider, model, project);
                days.entry(day).or_default().add(&delta);
            }
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
        drop(rollups);
        day_rollups::apply_deltas_in(txn, days.into_iter())?;
        let mut cursors = txn.open_table(CURSORS)?;
        let mut out = FxHashMap::default();
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

/// Reads a stream's cursor inside the transaction.
pub fn cursor_in(txn: &WriteTransaction, stream: u32) -> Result<i64, StoreError> {
    Ok(txn.open_table(CURSORS)?.get(stream)?.map(|v| v.value()).unwrap_or(0))
}

/// Applies one batch. Decisions are made in item order (protocol.md §9: duplicates inside a batch
/// follow the same rules), then the surviving events are written in key order through a cursor:
/// redb packs a run of ascending inserts into full leaves, where single inserts at the end of a
/// key range would leave every leaf half empty.
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
    let stream = stream_in(txn, job.device, provider)?;
    // At most MAX_TOKEN_COLUMNS names (the decoder drops the rest). A name repeated in the list
    // counts once: its first position wins and later positions are ignored, so an event never
    // holds two sums for one column.
    let mut columns: Vec<Option<u32>> = Vec::with_capacity(batch.token_columns.len());
    for name in batch.token_columns.iter().take(MAX_TOKEN_COLUMNS) {
        let id = st.interner.id(txn, name)?;
        columns.push((!columns.contains(&Some(id))).then_some(id));
    }
    // Dict ids mean something only inside this batch; a missing id reads as "".
    let mut dict_ids: FxHashMap<u32, u32> = FxHashMap::default();
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
    pending.note_zone(txn, user)?;
    let owner = Owner { user, device, provider };
    let mut applied = Applied { stream, ..Applied::default() };
    let mut max_ts: Option<i64> = None;

    // Phase 1, in item order: what to store, and which versions (stored, or earlier in this
    // batch) later versions supersede.
    let mut upserts: Vec<(EventKey, EventRecord)> = Vec::with_capacity(batch.items.len());
    let mut superseded: Vec<EventKey> = Vec::new();
    for item in &batch.items {
        max_ts = Some(max_ts.map_or(item.ts_ms, |m| m.max(item.ts_ms)));
        let ev = &item.event;
        let rec = EventRecord {
            model: resolve(&mut st.interner, ev.model_id)?,
            session: resolve(&mut st.interner, ev.session_id)?,
            // Project id 0 means "no project", even though 0 is also a real dict entry.
            project: if ev.project_name_id == 0 { 0 } else { resolve(&mut st.interner, ev.project_name_id)? },
            // Tokens are read by column name; values beyond the shorter list are dropped.
            tokens: columns
                .iter()
                .zip(&ev.tokens)
                .filter_map(|(c, n)| c.filter(|_| *n > 0).map(|c| (c, *n)))
                .collect(),
            usage_total: item.usage_total,
        };
        let message_id = match item.message_id.find(':') {
            Some(end) => &item.message_id[..end],
            None => &item.message_id,
        };
        let hash = id_hash(message_id);
        let ts = item.ts_ms;
        if is_claude && !message_id.is_empty() {
            // Identity is the message id: a later version replaces the current one; an older
            // one is ignored.
            // The in-memory index first; a stream that overflowed it keeps the rest in the
            // spill table.
            let known = match st.recent.get(stream, hash) {
                Some(ts) => Some(ts),
                None if st.recent.spilled(stream) => recent_spill::get_in(txn, stream, hash)?,
                None => None,
            };
            match known {
                Some(current) if ts < current => {
                    applied.stale += 1;
                    continue;
                }
                Some(current) if ts > current => {
                    superseded.push((stream, current, hash));
                    applied.replaced += 1;
                }
                _ => {}
            }
            st.recent.set(device, stream, hash, ts);
        }
        upserts.push(((stream, ts, hash), rec));
    }

    // The key includes ts: an exact retransmission lands on the same key, and the later item
    // wins (for codex and others that is the whole identity rule). A stable sort keeps item
    // order among equal keys; items come from the client in time order, so it is nearly free.
    upserts.sort_by_key(|(k, _)| *k);
    let mut kept: Vec<(EventKey, EventRecord)> = Vec::with_capacity(upserts.len());
    for (key, rec) in upserts {
        match kept.last_mut() {
            Some(last) if last.0 == key => {
                last.1 = rec;
                applied.duplicates += 1;
            }
            _ => kept.push((key, rec)),
        }
    }
    // A superseded version is dropped, whether it came earlier in this batch, is stored, or
    // both (a retransmitted stored version followed by a newer one).
    superseded.sort_unstable();
    superseded.dedup();
    if !superseded.is_empty() {
        kept.retain(|(k, _)| superseded.binary_search(k).is_err());
    }

    // Phase 2: remove superseded stored versions.
    let mut events = txn.open_table(EVENTS)?;
    for key in superseded {
        if let Some(old) = events.remove(key)? {
            let old = EventRecord::decode(old.value())?;
            pending.account(owner, key.1, &old, -1);
        }
    }

    // Phase 3: write in key order. New keys go through the cursor; keys that already exist
    // (retransmissions) are overwritten afterwards, subtracting what they held.
    let mut existing: Vec<usize> = Vec::new();
    let mut buf = Vec::with_capacity(64);
    let mut next = 0;
    while next < kept.len() {
        next = insert_run(&mut events, &kept, next, &mut existing, &mut buf, &mut applied)?;
    }
    for i in existing {
        let (key, rec) = &kept[i];
        rec.encode_into(&mut buf);
        if let Some(old) = events.insert(*key, buf.as_slice())? {
            let old = EventRecord::decode(old.value())?;
            pending.account(owner, key.1, &old, -1);
        }
        applied.duplicates += 1;
    }
    for ((_, ts, _), rec) in &kept {
        pending.account(owner, *ts, rec, 1);
    }

    let entry = pending.cursors.entry(stream).or_insert(i64::MIN);
    if let Some(m) = max_ts {
        *entry = (*entry).max(m);
    }
    Ok(Ok(applied))
}

/// Inserts `entries[start..]` through one cursor, in order, for as long as no stored entry lies
/// between the cursor and the next key (then the caller seeks again from the returned index).
/// Indexes of keys already present are collected in `existing` for overwriting.
fn insert_run(
    events: &mut redb::Table<'_, EventKey, &'static [u8]>,
    entries: &[(EventKey, EventRecord)],
    start: usize,
    existing: &mut Vec<usize>,
    buf: &mut Vec<u8>,
    applied: &mut Applied,
) -> Result<usize, StoreError> {
    let mut cursor = events.lower_bound_mut(Bound::Included(entries[start].0))?;
    let mut i = start;
    while i < entries.len() {
        let (key, rec) = (entries[i].0, &entries[i].1);
        let next = cursor.peek_next()?.map(|(k, _)| k.value());
        match next {
            Some(k) if k == key => {
                existing.push(i);
                cursor.next()?;
            }
            // Stored entries lie between the cursor and this key: seek instead of walking.
            Some(k) if k < key && i > start => break,
            _ => {
                rec.encode_into(buf);
                cursor.insert_before(key, buf.as_slice()).map_err(cursor_error)?;
                applied.inserted += 1;
            }
        }
        i += 1;
    }
    cursor.close()?;
    Ok(i)
}

fn cursor_error(e: redb::CursorError) -> StoreError {
    match e {
        redb::CursorError::Storage(s) => s.into(),
        other => StoreError::Corrupt(format!("event insert out of order: {other}")),
    }
}

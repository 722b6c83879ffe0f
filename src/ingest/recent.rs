//! The in-memory index of recent Claude message ids, used to find the earlier version of a
//! streaming message (same id, earlier ts) without a random-keyed table on the ingest path.
//!
//! Per stream (device and provider) it maps the message-id hash to the ts of the stored version,
//! for the last [`WINDOW_MS`] of that stream's event time (protocol.md §9 allows a window of at
//! least 24 h; exact retransmissions are caught forever by the event key itself). Changes are
//! applied at once and logged; a rolled-back transaction undoes them from the log.
//!
//! A stream holds at most [`MAX_PER_STREAM`] ids in memory (a real device logs a few thousand
//! Claude messages a day; a hostile one could send millions of distinct ids in one millisecond,
//! which the time window never prunes). Beyond that the oldest ids are evicted *into the data
//! file* (`store::recent_spill`, written in the same transaction) and the stream is marked
//! spilled; a miss in a spilled stream is looked up there, so dedup never depends on what the
//! cache holds. The spilled rows are pruned by the same window as the memory (see
//! [`RecentIds::spill_to_prune`]), so a stream that overflowed once goes back to memory only.

use crate::fasthash::FxHashMap;

/// 24 h plus an hour of slack.
pub const WINDOW_MS: i64 = 25 * 3_600_000;
/// Ids held in memory per stream; eviction brings a stream back down to 3/4 of this.
pub const MAX_PER_STREAM: usize = 100_000;

#[derive(Default)]
struct Recent {
    device: u32,
    ids: FxHashMap<u64, i64>,
    /// Size after the last prune; the next prune happens when the map has doubled.
    pruned_len: usize,
    /// Some ids of this stream were evicted to the spill table (a miss must look there), the
    /// oldest of them (or a lower bound) with this ts.
    spill_oldest: Option<i64>,
}

#[derive(Default)]
pub struct RecentIds {
    streams: FxHashMap<u32, Recent>,
    /// (stream, hash, previous ts) for every change since the last commit.
    undo: Vec<(u32, u64, Option<i64>)>,
    /// (stream, previous `spill_oldest`) for every change of it since the last commit.
    spill_undo: Vec<(u32, Option<i64>)>,
}

impl RecentIds {
    /// The ts of the stored version of this message, if it is recent and in memory.
    pub fn get(&self, stream: u32, hash: u64) -> Option<i64> {
        self.streams.get(&stream)?.ids.get(&hash).copied()
    }

    /// True if ids of this stream were evicted to the spill table (a miss is not an answer).
    pub fn spilled(&self, stream: u32) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.spill_oldest.is_some())
    }

    /// Marks a stream whose ids are partly in the spill table, the oldest with ts `oldest`.
    pub fn mark_spilled(&mut self, device: u32, stream: u32, oldest: i64) {
        let s = self.streams.entry(stream).or_default();
        s.device = device;
        let previous = s.spill_oldest;
        s.spill_oldest = Some(previous.map_or(oldest, |p| p.min(oldest)));
        self.spill_undo.push((stream, previous));
    }

    /// Whether this stream's spill table rows reach back beyond the window behind `newest` (the
    /// stream's cursor): then the caller prunes them (`store::recent_spill::prune_in`) and
    /// reports back with [`RecentIds::spill_pruned`]. Cheap enough to ask for every stream of
    /// every transaction; a prune happens only when there is something to remove.
    pub fn spill_to_prune(&self, stream: u32, newest: i64) -> Option<i64> {
        let horizon = newest.saturating_sub(WINDOW_MS);
        let oldest = self.streams.get(&stream)?.spill_oldest?;
        (oldest < horizon).then_some(horizon)
    }

    /// After a prune: the oldest spilled ts left, `None` when the stream has no spilled rows.
    pub fn spill_pruned(&mut self, stream: u32, oldest: Option<i64>) {
        if let Some(s) = self.streams.get_mut(&stream) {
            self.spill_undo.push((stream, s.spill_oldest));
            s.spill_oldest = oldest;
        }
    }

    /// Evicts the oldest ids of every stream changed since the last commit that holds more than
    /// [`MAX_PER_STREAM`], down to 3/4 of it, and returns them as (stream, hash, ts) for the
    /// caller to write to the spill table in the same transaction. Evictions are logged like
    /// changes, so a rollback brings them back. Linear in the stream's size, and amortised: the
    /// next eviction of that stream is at least a quarter of the cap away.
    pub fn evict_over_cap(&mut self) -> Vec<(u32, u64, i64)> {
        // Streams over the cap, looking at each run of one stream's changes once (as `commit`
        // does); in the common case nothing is over and nothing is allocated.
        let mut over: Vec<u32> = Vec::new();
        let mut last = None;
        for (stream, _, _) in &self.undo {
            if last == Some(*stream) {
                continue;
            }
            last = Some(*stream);
            if self.streams.get(stream).is_some_and(|s| s.ids.len() > MAX_PER_STREAM)
                && !over.contains(stream)
            {
                over.push(*stream);
            }
        }
        let mut out = Vec::new();
        for stream in over {
            let Some(s) = self.streams.get_mut(&stream) else { continue };
            let device = s.device;
            let mut by_age: Vec<(i64, u64)> = s.ids.iter().map(|(h, ts)| (*ts, *h)).collect();
            let evict = by_age.len() - MAX_PER_STREAM * 3 / 4;
            by_age.select_nth_unstable(evict - 1);
            for (ts, hash) in &by_age[..evict] {
                s.ids.remove(hash);
                self.undo.push((stream, *hash, Some(*ts)));
                out.push((stream, *hash, *ts));
            }
            let oldest = by_age[..evict].iter().map(|e| e.0).min().unwrap_or(i64::MAX);
            self.mark_spilled(device, stream, oldest);
        }
        out
    }

    /// Records the stored version's ts.
    pub fn set(&mut self, device: u32, stream: u32, hash: u64, ts: i64) {
        let s = self.streams.entry(stream).or_default();
        s.device = device;
        let previous = s.ids.insert(hash, ts);
        self.undo.push((stream, hash, previous));
    }

    pub fn commit(&mut self) {
        self.spill_undo.clear();
        let mut last = None;
        for (stream, _, _) in self.undo.drain(..) {
            // Entries of one stream are consecutive; look at each stream once per commit.
            if last == Some(stream) {
                continue;
            }
            last = Some(stream);
            let Some(s) = self.streams.get_mut(&stream) else { continue };
            // Pruning is amortised: only when the map has doubled since the last prune.
            if s.ids.len() >= 1024 && s.ids.len() >= s.pruned_len * 2 {
                let newest = s.ids.values().copied().max().unwrap_or(i64::MIN);
                let horizon = newest.saturating_sub(WINDOW_MS);
                s.ids.retain(|_, ts| *ts >= horizon);
                s.ids.shrink_to_fit();
                s.pruned_len = s.ids.len().max(512);
            }
        }
    }

    pub fn rollback(&mut self) {
        for (stream, previous) in self.spill_undo.drain(..).rev() {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.spill_oldest = previous;
            }
        }
        for (stream, hash, previous) in self.undo.drain(..).rev() {
            if let Some(s) = self.streams.get_mut(&stream) {
                match previous {
                    Some(ts) => s.ids.insert(hash, ts),
                    None => s.ids.remove(&hash),
                };
            }
        }
    }

    pub fn forget_device(&mut self, device: u32) {
        self.streams.retain(|_, s| s.device != device);
    }

    /// Ids held in memory for one stream.
    pub fn stream_len(&self, stream: u32) -> usize {
        self.streams.get(&stream).map_or(0, |s| s.ids.len())
    }

    pub fn len(&self) -> usize {
        self.streams.values().map(|s| s.ids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_undoes_and_old_entries_are_pruned_by_event_time() {
        let mut r = RecentIds::default();
        r.set(1, 2, 99, 1000);
        assert_eq!(r.get(2, 99), Some(1000));
        r.rollback();
        assert_eq!(r.get(2, 99), None);
        r.set(1, 2, 99, 1000);
        r.commit();
        r.set(1, 2, 99, 2000);
        r.rollback();
        assert_eq!(r.get(2, 99), Some(1000), "rollback restores the previous version");
        assert_eq!(r.get(3, 99), None);
        // Many events far later push the old one out of the window.
        for i in 0..5000u64 {
            r.set(1, 2, 1000 + i, 1000 + WINDOW_MS + 10 + i as i64);
        }
        r.commit();
        assert_eq!(r.get(2, 99), None);
        assert!(r.len() >= 5000);
        r.forget_device(1);
        assert!(r.is_empty());
    }

    #[test]
    fn eviction_takes_the_oldest_and_rolls_back() {
        let mut r = RecentIds::default();
        for i in 0..MAX_PER_STREAM as u64 {
            r.set(1, 7, i, 5_000 + i as i64);
        }
        r.set(1, 8, 1, 1);
        assert!(r.evict_over_cap().is_empty(), "at the cap nothing is evicted");
        r.commit();
        // Past the cap, with equal timestamps too (a hostile client's constant ts).
        for i in 0..10u64 {
            r.set(1, 7, 1_000_000 + i, 5_000);
        }
        let evicted = r.evict_over_cap();
        assert_eq!(evicted.len(), MAX_PER_STREAM + 10 - MAX_PER_STREAM * 3 / 4);
        assert_eq!(r.stream_len(7), MAX_PER_STREAM * 3 / 4);
        let newest_evicted = evicted.iter().map(|e| e.2).max().unwrap();
        assert!(r.streams[&7].ids.values().all(|ts| *ts >= newest_evicted), "the oldest go first");
        assert!(r.spilled(7) && !r.spilled(8));
        assert_eq!(r.get(7, MAX_PER_STREAM as u64 - 1), Some(5_000 + MAX_PER_STREAM as i64 - 1));
        // A failed commit brings every evicted id back (the spill rows were rolled back too).
        r.rollback();
        assert_eq!(r.stream_len(7), MAX_PER_STREAM);
        assert_eq!(r.get(7, 0), Some(5_000));
        assert_eq!(r.get(7, 1_000_000), None);
        assert!(!r.spilled(7), "the spill rows were rolled back with the eviction");
        // The spill window: nothing to prune until the window passes the oldest spilled id.
        r.mark_spilled(1, 7, 5_000);
        r.commit();
        assert_eq!(r.spill_to_prune(7, 5_000 + WINDOW_MS), None);
        assert_eq!(r.spill_to_prune(7, 5_001 + WINDOW_MS), Some(5_001));
        r.spill_pruned(7, None);
        r.rollback();
        assert!(r.spilled(7), "a rolled-back prune leaves the stream spilled");
        r.spill_pruned(7, None);
        r.commit();
        assert!(!r.spilled(7));
    }
}

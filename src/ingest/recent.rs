//! The in-memory index of recent Claude message ids, used to find the earlier version of a
//! streaming message (same id, earlier ts) without a random-keyed table on the ingest path.
//!
//! Per stream (device and provider) it maps the message-id hash to the ts of the stored version,
//! for the last [`WINDOW_MS`] of that stream's event time (protocol.md §9 allows a window of at
//! least 24 h; exact retransmissions are caught forever by the event key itself). Changes are
//! applied at once and logged; a rolled-back transaction undoes them from the log.

use super::fasthash::FxHashMap;

/// 24 h plus an hour of slack.
pub const WINDOW_MS: i64 = 25 * 3_600_000;

#[derive(Default)]
struct Recent {
    device: u32,
    ids: FxHashMap<u64, i64>,
    /// Size after the last prune; the next prune happens when the map has doubled.
    pruned_len: usize,
}

#[derive(Default)]
pub struct RecentIds {
    streams: FxHashMap<u32, Recent>,
    /// (stream, hash, previous ts) for every change since the last commit.
    undo: Vec<(u32, u64, Option<i64>)>,
}

impl RecentIds {
    /// The ts of the stored version of this message, if it is recent.
    pub fn get(&self, stream: u32, hash: u64) -> Option<i64> {
        self.streams.get(&stream)?.ids.get(&hash).copied()
    }

    /// Records the stored version's ts.
    pub fn set(&mut self, device: u32, stream: u32, hash: u64, ts: i64) {
        let s = self.streams.entry(stream).or_default();
        s.device = device;
        let previous = s.ids.insert(hash, ts);
        self.undo.push((stream, hash, previous));
    }

    pub fn commit(&mut self) {
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
}

//! The in-memory index of recent Claude message ids, used to find the earlier version of a
//! streaming message (same id, earlier ts) without a random-keyed table on the ingest path.
//!
//! Per (device, provider) it maps the message-id hash to the ts of the stored version, for the
//! last [`WINDOW_MS`] of that device's event time (protocol.md §9 allows a window of at least
//! 24 h; exact retransmissions are caught forever by the event key itself). Changes made inside a
//! transaction are staged and only become visible to later transactions once it commits.

use std::collections::HashMap;

/// 24 h plus an hour of slack.
pub const WINDOW_MS: i64 = 25 * 3_600_000;

#[derive(Default)]
struct Recent {
    max_ts: i64,
    ids: HashMap<u64, i64>,
    /// Size after the last prune; the next prune happens when the map has doubled.
    pruned_len: usize,
}

#[derive(Default)]
pub struct RecentIds {
    streams: HashMap<(u32, u32), Recent>,
    staged: HashMap<(u32, u32, u64), i64>,
}

impl RecentIds {
    /// The ts of the stored version of this message, if it is recent.
    pub fn get(&self, device: u32, provider: u32, hash: u64) -> Option<i64> {
        if let Some(ts) = self.staged.get(&(device, provider, hash)) {
            return Some(*ts);
        }
        self.streams.get(&(device, provider))?.ids.get(&hash).copied()
    }

    /// Records the stored version's ts (visible to this transaction at once, to others after commit).
    pub fn set(&mut self, device: u32, provider: u32, hash: u64, ts: i64) {
        self.staged.insert((device, provider, hash), ts);
    }

    pub fn commit(&mut self) {
        for ((device, provider, hash), ts) in self.staged.drain() {
            let stream = self.streams.entry((device, provider)).or_default();
            stream.max_ts = stream.max_ts.max(ts);
            stream.ids.insert(hash, ts);
            if stream.ids.len() >= 1024 && stream.ids.len() >= stream.pruned_len * 2 {
                let horizon = stream.max_ts.saturating_sub(WINDOW_MS);
                stream.ids.retain(|_, ts| *ts >= horizon);
                stream.ids.shrink_to_fit();
                stream.pruned_len = stream.ids.len().max(512);
            }
        }
    }

    pub fn rollback(&mut self) {
        self.staged.clear();
    }

    pub fn forget_device(&mut self, device: u32) {
        self.streams.retain(|(d, _), _| *d != device);
        self.staged.retain(|(d, _, _), _| *d != device);
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
    fn staged_until_commit_and_pruned_by_event_time() {
        let mut r = RecentIds::default();
        r.set(1, 2, 99, 1000);
        assert_eq!(r.get(1, 2, 99), Some(1000));
        r.rollback();
        assert_eq!(r.get(1, 2, 99), None);
        r.set(1, 2, 99, 1000);
        r.commit();
        assert_eq!(r.get(1, 2, 99), Some(1000));
        assert_eq!(r.get(1, 3, 99), None);
        // Many events far later push the old one out of the window.
        for i in 0..5000u64 {
            r.set(1, 2, 1000 + i, 1000 + WINDOW_MS + 10 + i as i64);
        }
        r.commit();
        assert_eq!(r.get(1, 2, 99), None);
        assert!(r.len() >= 5000);
        r.forget_device(1);
        assert!(r.is_empty());
    }
}

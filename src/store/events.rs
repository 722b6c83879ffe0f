//! Usage events and their hourly rollups: keys, value records, and the stable hash of message ids.
//!
//! Both the key layout and [`id_hash`] are part of the file format: changing either needs a
//! migration.

use super::codec::{CodecError, Dec, Enc, Record};

/// (stream id, ts_ms, message-id hash)
pub type EventKey = (u32, i64, u64);

/// (user id, hour since the epoch, device id, provider id, model id, project id)
pub type RollupKey = (u32, u32, u32, u32, u32, u32);

pub const HOUR_MS: i64 = 3_600_000;

/// The rollup hour of a timestamp; timestamps before 1970 land in hour 0.
pub fn hour_of(ts_ms: i64) -> u32 {
    ts_ms.div_euclid(HOUR_MS).clamp(0, i64::from(u32::MAX)) as u32
}

/// A stable 64-bit hash of a message id (FNV-1a, then a splitmix64 finaliser for good bit
/// dispersion). It tells apart events of one stream and millisecond, and identifies a streaming
/// Claude message across its versions (64 bits keep collisions negligible over a day of
/// messages; the recent-message index is rebuilt from event keys at start-up).
pub fn id_hash(message_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in message_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// (column-name id, count) pairs, as a count then varint pairs.
fn encode_tokens(e: &mut Enc, tokens: &[(u32, u64)]) {
    e.uvar(tokens.len() as u64);
    for (col, n) in tokens {
        e.uvar(u64::from(*col));
        e.uvar(*n);
    }
}

fn decode_tokens(d: &mut Dec<'_>) -> Result<Vec<(u32, u64)>, CodecError> {
    let n = d.uvar()?;
    // Each pair takes at least two bytes: a count beyond that is corruption, not an allocation.
    if n > d.remaining() as u64 / 2 {
        return Err(CodecError(format!("token column count {n} exceeds the value size")));
    }
    let mut tokens = Vec::with_capacity(n as usize);
    for _ in 0..n {
        tokens.push((d.u32var()?, d.uvar()?));
    }
    Ok(tokens)
}

/// One stored event. Strings are interned ids; token columns are (column-name id, count) pairs
/// with zero counts left out.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EventRecord {
    pub model: u32,
    pub session: u32,
    /// 0 = no project.
    pub project: u32,
    pub tokens: Vec<(u32, u64)>,
    /// The client's own total (claude: all four columns; codex: input + output).
    pub usage_total: u64,
}

impl Record for EventRecord {
    const NAME: &'static str = "event";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.uvar(u64::from(self.model));
        e.uvar(u64::from(self.session));
        e.uvar(u64::from(self.project));
        encode_tokens(e, &self.tokens);
        e.uvar(self.usage_total);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        let model = d.u32var()?;
        let session = d.u32var()?;
        let project = d.u32var()?;
        let tokens = decode_tokens(d)?;
        Ok(EventRecord { model, session, project, tokens, usage_total: d.uvar()? })
    }
}

/// Sums for one rollup key.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RollupRecord {
    pub events: u64,
    pub usage_total: u64,
    /// (column-name id, sum), sorted by column id.
    pub tokens: Vec<(u32, u64)>,
}

/// A stored sum plus a signed change, clamped to what a u64 can hold: the counts come from
/// clients, so a sum may exceed u64 (or a subtraction go below zero after an earlier clamp), and
/// neither may panic or wrap.
fn clamped(stored: u64, delta: i128) -> u64 {
    i128::from(stored).saturating_add(delta).clamp(0, i128::from(u64::MAX)) as u64
}

impl RollupRecord {
    /// Applies a delta accumulated over one commit. Both token lists are sorted by column, so
    /// this is one merge pass, linear in the number of columns.
    pub fn merge(&mut self, other: &RollupDelta) {
        self.events = clamped(self.events, other.events);
        self.usage_total = clamped(self.usage_total, other.usage_total);
        if other.tokens.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.tokens.len().max(other.tokens.len()));
        let mut stored = std::mem::take(&mut self.tokens).into_iter().peekable();
        let mut delta = other.tokens.iter().peekable();
        loop {
            let next = match (stored.peek(), delta.peek()) {
                (None, None) => break,
                (Some(_), None) => stored.next().expect("peeked"),
                (None, Some(_)) => {
                    let (col, d) = delta.next().expect("peeked");
                    (*col, clamped(0, *d))
                }
                (Some((sc, _)), Some((dc, _))) => match sc.cmp(dc) {
                    std::cmp::Ordering::Less => stored.next().expect("peeked"),
                    std::cmp::Ordering::Greater => {
                        let (col, d) = delta.next().expect("peeked");
                        (*col, clamped(0, *d))
                    }
                    std::cmp::Ordering::Equal => {
                        let (col, n) = stored.next().expect("peeked");
                        let (_, d) = delta.next().expect("peeked");
                        (col, clamped(n, *d))
                    }
                },
            };
            if next.1 > 0 {
                merged.push(next);
            }
        }
        self.tokens = merged;
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.usage_total == 0 && self.tokens.is_empty()
    }
}

/// A signed change to a rollup, accumulated in memory over one commit and applied once per key.
/// Sums are i128 with saturating adds: client values up to u64::MAX each cannot overflow them in
/// any realistic number of events, and saturation guarantees no panic or wrap regardless.
#[derive(Clone, Debug, Default)]
pub struct RollupDelta {
    pub events: i128,
    pub usage_total: i128,
    /// Per column id, kept sorted so applying an event and merging into the stored record are
    /// logarithmic and linear, however many columns hostile batches spread over one bucket.
    pub tokens: std::collections::BTreeMap<u32, i128>,
}

impl RollupDelta {
    /// True when applying this delta changes nothing (e.g. an exact retransmission).
    pub fn is_zero(&self) -> bool {
        self.events == 0 && self.usage_total == 0 && self.tokens.values().all(|n| *n == 0)
    }

    /// Adds another delta (the hours of one day, for the day tier).
    pub fn add(&mut self, other: &RollupDelta) {
        self.events = self.events.saturating_add(other.events);
        self.usage_total = self.usage_total.saturating_add(other.usage_total);
        for (col, n) in &other.tokens {
            let slot = self.tokens.entry(*col).or_default();
            *slot = slot.saturating_add(*n);
        }
    }

    /// Adds (`sign` = 1) or subtracts (`sign` = -1) one event.
    pub fn apply(&mut self, event: &EventRecord, sign: i8) {
        let sign = i128::from(sign.signum());
        self.events = self.events.saturating_add(sign);
        self.usage_total = self.usage_total.saturating_add(sign * i128::from(event.usage_total));
        for (col, n) in &event.tokens {
            let slot = self.tokens.entry(*col).or_default();
            *slot = slot.saturating_add(sign * i128::from(*n));
        }
    }
}

impl Record for RollupRecord {
    const NAME: &'static str = "rollup";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.uvar(self.events);
        e.uvar(self.usage_total);
        encode_tokens(e, &self.tokens);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        let events = d.uvar()?;
        let usage_total = d.uvar()?;
        Ok(RollupRecord { events, usage_total, tokens: decode_tokens(d)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_OF_MSG_01ABCDEF: u64 = 8_497_212_199_990_577_993;

    #[test]
    fn hours_and_hashes() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(-5), 0);
        assert_eq!(hour_of(3_600_000), 1);
        assert_eq!(hour_of(1_700_000_000_000), 472_222);
        // Stability: this value is part of the file format.
        assert_eq!(id_hash("msg_01"), id_hash("msg_01"));
        assert_ne!(id_hash("msg_01"), id_hash("msg_02"));
        assert_eq!(id_hash("msg_01ABCDEF"), HASH_OF_MSG_01ABCDEF);
    }

    #[test]
    fn records_round_trip_and_are_compact() {
        let e = EventRecord {
            model: 3,
            session: 200,
            project: 0,
            tokens: vec![(1, 1200), (2, 350), (4, 90_000)],
            usage_total: 91_550,
        };
        let bytes = e.encode();
        assert!(bytes.len() <= 20, "{} bytes", bytes.len());
        assert_eq!(EventRecord::decode(&bytes).unwrap(), e);
        let mut hostile = vec![1u8, 0, 0, 0];
        hostile.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(EventRecord::decode(&hostile).is_err());
    }

    #[test]
    fn rollup_add_and_subtract() {
        let a = EventRecord { tokens: vec![(1, 10), (2, 5)], usage_total: 15, ..Default::default() };
        let b = EventRecord { tokens: vec![(1, 7), (3, 1)], usage_total: 8, ..Default::default() };
        let mut d = RollupDelta::default();
        d.apply(&a, 1);
        d.apply(&b, 1);
        d.apply(&a, -1);
        let mut stored = RollupRecord::default();
        stored.merge(&d);
        assert_eq!(stored.tokens, vec![(1, 7), (3, 1)]);
        assert_eq!((stored.events, stored.usage_total), (1, 8));
        let mut neg = RollupDelta::default();
        neg.apply(&b, -1);
        stored.merge(&neg);
        assert!(stored.is_empty());
    }

    #[test]
    fn rollup_sums_saturate_instead_of_overflowing() {
        // Client-chosen values near u64::MAX: two of them in one bucket exceed every integer
        // type the old code used. Nothing may panic (debug) or wrap (release).
        let huge = EventRecord {
            tokens: vec![(1, u64::MAX), (2, 1 << 61)],
            usage_total: u64::MAX,
            ..Default::default()
        };
        let mut d = RollupDelta::default();
        for _ in 0..4 {
            d.apply(&huge, 1);
        }
        let mut stored =
            RollupRecord { events: u64::MAX - 1, usage_total: u64::MAX - 5, tokens: vec![(1, 7), (2, 1)] };
        stored.merge(&d);
        assert_eq!(stored.events, u64::MAX);
        assert_eq!(stored.usage_total, u64::MAX);
        assert_eq!(stored.tokens, vec![(1, u64::MAX), (2, (1 << 61) * 4 + 1)]);
        // Subtracting more than is stored (after a clamp) floors at zero.
        let mut neg = RollupDelta::default();
        for _ in 0..8 {
            neg.apply(&huge, -1);
        }
        stored.merge(&neg);
        assert_eq!((stored.usage_total, stored.tokens.clone()), (0, vec![]));
        // The i128 accumulators themselves saturate.
        let mut d = RollupDelta { usage_total: i128::MAX - 1, ..Default::default() };
        d.apply(&huge, 1);
        assert_eq!(d.usage_total, i128::MAX);
    }

    #[test]
    fn merging_many_columns_is_linear_and_sorted() {
        let mut d = RollupDelta::default();
        for col in (0..50_000u32).rev() {
            d.apply(&EventRecord { tokens: vec![(col, 1)], ..Default::default() }, 1);
        }
        let mut stored = RollupRecord {
            tokens: (0..50_000u32).step_by(2).map(|c| (c, 1)).collect(),
            ..Default::default()
        };
        stored.merge(&d);
        assert_eq!(stored.tokens.len(), 50_000);
        assert!(stored.tokens.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(stored.tokens[0], (0, 2));
        assert_eq!(stored.tokens[1], (1, 1));
    }
}

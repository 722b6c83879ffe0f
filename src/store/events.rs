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

impl RollupRecord {
    /// Applies a delta accumulated over one commit.
    pub fn merge(&mut self, other: &RollupDelta) {
        self.events = (self.events as i128 + other.events as i128).clamp(0, u64::MAX as i128) as u64;
        self.usage_total =
            (self.usage_total as i128 + other.usage_total as i128).clamp(0, u64::MAX as i128) as u64;
        for (col, d) in &other.tokens {
            match self.tokens.binary_search_by_key(col, |(c, _)| *c) {
                Ok(i) => {
                    self.tokens[i].1 = (self.tokens[i].1 as i128 + *d as i128).clamp(0, u64::MAX as i128) as u64
                }
                Err(i) if *d > 0 => self.tokens.insert(i, (*col, *d as u64)),
                Err(_) => {}
            }
        }
        self.tokens.retain(|(_, n)| *n > 0);
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.usage_total == 0 && self.tokens.is_empty()
    }
}

/// A signed change to a rollup, accumulated in memory over one commit and applied once per key.
#[derive(Clone, Debug, Default)]
pub struct RollupDelta {
    pub events: i64,
    pub usage_total: i64,
    pub tokens: Vec<(u32, i64)>,
}

impl RollupDelta {
    /// True when applying this delta changes nothing (e.g. an exact retransmission).
    pub fn is_zero(&self) -> bool {
        self.events == 0 && self.usage_total == 0 && self.tokens.iter().all(|(_, n)| *n == 0)
    }

    pub fn apply(&mut self, event: &EventRecord, sign: i64) {
        self.events += sign;
        self.usage_total += sign * event.usage_total.min(i64::MAX as u64) as i64;
        for (col, n) in &event.tokens {
            let n = sign * (*n).min(i64::MAX as u64) as i64;
            match self.tokens.iter_mut().find(|(c, _)| c == col) {
                Some(slot) => slot.1 += n,
                None => self.tokens.push((*col, n)),
            }
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
        let e = EventRecord { model: 3, session: 200, project: 0, tokens: vec![(1, 1200), (2, 350), (4, 90_000)], usage_total: 91_550 };
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
}

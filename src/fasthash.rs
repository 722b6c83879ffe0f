//! A fast hasher for hot in-memory maps whose keys are small integers and 64-bit message-id
//! hashes: the ingest writer's, and the queries' grouping (std's SipHash showed up in both
//! profiles). Message ids are chosen by clients and their hash function is public, so a plain
//! FxHash would let a client pick ids that all land in one bucket. Each process therefore starts every hasher from a random seed and
//! finishes with a full-avalanche mix: bucket positions depend on every input bit and on a seed
//! the client cannot see. Not a keyed cryptographic hash, but it takes the cheap attack away.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// FxHash (as used by rustc): one multiply-rotate per word, seeded per process.
#[derive(Clone, Copy)]
pub struct FxHasher(u64);

fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    // std's RandomState is seeded from the OS once per process: a free source of randomness.
    *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x7031_u64))
}

impl Default for FxHasher {
    fn default() -> Self {
        FxHasher(process_seed())
    }
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_i64(&mut self, n: i64) {
        self.add(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    /// MurmurHash3's fmix64: every output bit depends on every bit of the state.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_mixed() {
        let hash = |n: u64| FxBuild::default().hash_one(n);
        assert_eq!(hash(42), hash(42));
        assert_ne!(process_seed(), 0);
        // Keys that agree in their low bits (the classic FxHash bucket collision) spread out.
        let buckets: std::collections::HashSet<u64> = (0..1024u64).map(|i| hash(i << 20) & 1023).collect();
        assert!(buckets.len() > 500, "{} distinct buckets", buckets.len());
    }
}

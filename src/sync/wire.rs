//! The toki sync wire format (protocol.md §2-§5): frame header, message codes, payload structs
//! and their bincode 1.3 encoding.
//!
//! bincode is used with `DefaultOptions` switched to fixed-width integers and trailing bytes
//! allowed (the client's `bincode::serialize` layout), always with a size limit: length prefixes
//! come from the peer and must never drive an allocation beyond what the frame can hold.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use bincode::Options;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u16 = 1;
pub const SCHEMA_VERSION: u32 = 3;
/// Largest payload in either direction, limit included.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// Largest decompressed SYNC_BATCH_ZSTD payload.
pub const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;
/// Items accepted in one batch (the client sends at most 1000).
pub const MAX_BATCH_ITEMS: usize = 100_000;
/// Dict entries accepted in one batch: the dict holds only the ids the batch uses, at most four
/// per item. A larger dict is refused like an oversized batch.
pub const MAX_DICT_ENTRIES: usize = 4 * MAX_BATCH_ITEMS;
/// Token columns read from a batch (the client sends 4). Columns beyond this position, and the
/// token values paired with them, are skipped while decoding: protocol.md §8 says unknown columns
/// may be ignored but must never fail a batch, and skipping keeps a hostile column list from
/// costing memory on the session or time on the ingest writer.
pub const MAX_TOKEN_COLUMNS: usize = 64;
pub const HEADER_LEN: usize = 8;
/// Largest zstd window a SYNC_BATCH_ZSTD frame may ask for (log2, 16 MiB). The decoder allocates
/// the window the frame header asks for, up to 128 MiB by default; the client compresses at level
/// 3, whose window is at most 2^21, and even level 19 stays at 2^23.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    Auth = 0x01,
    AuthOk = 0x02,
    AuthErr = 0x03,
    GetLastTs = 0x10,
    LastTs = 0x11,
    SyncBatch = 0x20,
    SyncAck = 0x21,
    SyncErr = 0x22,
    SyncBatchZstd = 0x23,
    Ping = 0x30,
    Pong = 0x31,
}

impl MsgType {
    pub fn from_u32(v: u32) -> Option<MsgType> {
        use MsgType::*;
        Some(match v {
            0x01 => Auth,
            0x02 => AuthOk,
            0x03 => AuthErr,
            0x10 => GetLastTs,
            0x11 => LastTs,
            0x20 => SyncBatch,
            0x21 => SyncAck,
            0x22 => SyncErr,
            0x23 => SyncBatchZstd,
            0x30 => Ping,
            0x31 => Pong,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthPayload {
    pub jwt: String,
    pub device_name: String,
    pub schema_version: u32,
    pub provider: String,
    pub device_key: String,
    pub protocol_version: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthOkPayload {
    pub device_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthErrPayload {
    pub reason: String,
    pub reset_required: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetLastTsPayload {
    pub provider: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTsPayload {
    pub ts_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBatchPayload {
    #[serde(deserialize_with = "bounded_items")]
    pub items: Vec<SyncItem>,
    #[serde(deserialize_with = "bounded_dict")]
    pub dict: HashMap<u32, String>,
    pub provider: String,
    /// At most [`MAX_TOKEN_COLUMNS`] after decoding.
    #[serde(deserialize_with = "capped_columns")]
    pub token_columns: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncItem {
    pub ts_ms: i64,
    pub message_id: String,
    pub event: StoredEvent,
    pub usage_total: u64,
    pub is_correction: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub model_id: u32,
    pub session_id: u32,
    pub source_file_id: u32,
    pub project_name_id: u32,
    /// At most [`MAX_TOKEN_COLUMNS`] after decoding (later values have no column to pair with).
    #[serde(deserialize_with = "capped_tokens")]
    pub tokens: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAckPayload {
    pub last_ts_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncErrPayload {
    pub reason: String,
}

/// Refuses a batch with more than [`MAX_BATCH_ITEMS`] items before allocating for them.
fn bounded_items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SyncItem>, D::Error> {
    struct Items;
    impl<'de> Visitor<'de> for Items {
        type Value = Vec<SyncItem>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_BATCH_ITEMS} sync items")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let n = seq.size_hint().unwrap_or(0);
            if n > MAX_BATCH_ITEMS {
                return Err(serde::de::Error::custom(format!(
                    "batch has {n} items; the limit is {MAX_BATCH_ITEMS}"
                )));
            }
            // Capacity follows the claimed count only up to a small bound; a lying count runs
            // into the end of the input instead of a huge allocation.
            let mut items = Vec::with_capacity(n.min(1024));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_seq(Items)
}

/// Refuses a dict with more than [`MAX_DICT_ENTRIES`] entries before allocating for them. A
/// repeated key keeps its last value (protocol.md §4).
fn bounded_dict<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<u32, String>, D::Error> {
    struct Dict;
    impl<'de> Visitor<'de> for Dict {
        type Value = HashMap<u32, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_DICT_ENTRIES} dict entries")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let n = map.size_hint().unwrap_or(0);
            if n > MAX_DICT_ENTRIES {
                return Err(serde::de::Error::custom(format!(
                    "dict has {n} entries; the limit is {MAX_DICT_ENTRIES}"
                )));
            }
            let mut dict = HashMap::with_capacity(n.min(1024));
            while let Some((k, v)) = map.next_entry()? {
                dict.insert(k, v);
            }
            Ok(dict)
        }
    }
    d.deserialize_map(Dict)
}

/// A string that is checked (length, UTF-8) and then dropped without being copied.
struct SkippedStr;

impl<'de> Deserialize<'de> for SkippedStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SkippedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SkippedStr, E> {
                Ok(SkippedStr)
            }
        }
        d.deserialize_str(V)
    }
}

/// Keeps the first [`MAX_TOKEN_COLUMNS`] elements of a sequence and reads past the rest as `Skip`,
/// so the input is still checked to the end but nothing is stored for it.
fn capped_seq<'de, D, T, Skip>(d: D, what: &'static str) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
    Skip: Deserialize<'de>,
{
    struct Capped<T, Skip>(&'static str, std::marker::PhantomData<(T, Skip)>);
    impl<'de, T: Deserialize<'de>, Skip: Deserialize<'de>> Visitor<'de> for Capped<T, Skip> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of {}", self.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut kept = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_TOKEN_COLUMNS));
            while kept.len() < MAX_TOKEN_COLUMNS {
                match seq.next_element()? {
                    Some(v) => kept.push(v),
                    None => return Ok(kept),
                }
            }
            while seq.next_element::<Skip>()?.is_some() {}
            Ok(kept)
        }
    }
    d.deserialize_seq(Capped::<T, Skip>(what, std::marker::PhantomData))
}

fn capped_columns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    capped_seq::<D, String, SkippedStr>(d, "token column names")
}

fn capped_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    capped_seq::<D, u64, u64>(d, "token counts")
}

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_little_endian()
        .with_limit(limit)
}

#[derive(Debug)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes a payload held in memory (its size is already bounded by the frame limit).
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, DecodeError> {
    options(payload.len() as u64).deserialize(payload).map_err(|e| DecodeError(e.to_string()))
}

/// Decodes a SYNC_BATCH_ZSTD payload. A streaming decoder produces at most `max_decompressed`
/// bytes (stopping at one more and refusing: the client's frames may not record their content
/// size, so nothing from the frame header is trusted), then bincode decodes that buffer.
/// Decompressing in large reads rather than letting bincode pull bytes one field at a time
/// through the decoder is several times faster.
pub fn decode_zstd_batch(payload: &[u8], max_decompressed: usize) -> Result<SyncBatchPayload, DecodeError> {
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(payload).map_err(|e| DecodeError(format!("zstd: {e}")))?;
    decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| DecodeError(format!("zstd: {e}")))?;
    let mut out = Vec::with_capacity((payload.len() * 6).min(max_decompressed));
    decoder
        .take(max_decompressed as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError(format!("zstd stream: {e}")))?;
    if out.len() > max_decompressed {
        return Err(DecodeError(format!("decompressed batch exceeds {max_decompressed} bytes")));
    }
    decode(&out)
}

/// Encodes a whole frame: header and bincode payload.
pub fn encode_frame<T: Serialize>(kind: MsgType, payload: &T) -> Vec<u8> {
    let body = options(MAX_PAYLOAD as u64).serialize(payload).unwrap_or_default();
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&(kind as u32).to_le_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A frame with an empty payload (PONG).
pub fn empty_frame(kind: MsgType) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN);
    frame.extend_from_slice(&(kind as u32).to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    // protocol.md §13.
    #[test]
    fn test_vectors() {
        let auth = hex(
            "01 00 00 00 2f 00 00 00  01 00 00 00 00 00 00 00 4a  02 00 00 00 00 00 00 00 6d 62  03 00 00 00
             05 00 00 00 00 00 00 00 63 6f 64 65 78  01 00 00 00 00 00 00 00 4b  01 00",
        );
        let p: AuthPayload = decode(&auth[8..]).unwrap();
        assert_eq!(
            p,
            AuthPayload {
                jwt: "J".into(),
                device_name: "mb".into(),
                schema_version: 3,
                provider: "codex".into(),
                device_key: "K".into(),
                protocol_version: 1
            }
        );
        assert_eq!(encode_frame(MsgType::Auth, &p), auth);
        assert_eq!(
            encode_frame(MsgType::AuthOk, &AuthOkPayload { device_id: "K".into() }),
            hex("02 00 00 00 09 00 00 00 01 00 00 00 00 00 00 00 4b")
        );
        assert_eq!(
            encode_frame(MsgType::AuthErr, &AuthErrPayload { reason: "x".into(), reset_required: true }),
            hex("03 00 00 00 0a 00 00 00 01 00 00 00 00 00 00 00 78 01")
        );
        assert_eq!(
            encode_frame(MsgType::GetLastTs, &GetLastTsPayload { provider: "codex".into() }),
            hex("10 00 00 00 0d 00 00 00 05 00 00 00 00 00 00 00 63 6f 64 65 78")
        );
        assert_eq!(
            encode_frame(MsgType::LastTs, &LastTsPayload { ts_ms: 1_700_000_000_000 }),
            hex("11 00 00 00 08 00 00 00 00 68 e5 cf 8b 01 00 00")
        );
        assert_eq!(
            encode_frame(MsgType::SyncAck, &SyncAckPayload { last_ts_ms: -1 }),
            hex("21 00 00 00 08 00 00 00 ff ff ff ff ff ff ff ff")
        );
        assert_eq!(
            encode_frame(MsgType::SyncErr, &SyncErrPayload { reason: "e".into() }),
            hex("22 00 00 00 09 00 00 00 01 00 00 00 00 00 00 00 65")
        );
        assert_eq!(empty_frame(MsgType::Pong), hex("31 00 00 00 00 00 00 00"));
    }

    fn sample_batch_payload() -> Vec<u8> {
        hex("01 00 00 00 00 00 00 00
             01 00 00 00 00 00 00 00
             01 00 00 00 00 00 00 00 61
             00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
             04 00 00 00 00 00 00 00
             01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00
             0a 00 00 00 00 00 00 00
             00
             01 00 00 00 00 00 00 00
             00 00 00 00 01 00 00 00 00 00 00 00 6d
             01 00 00 00 00 00 00 00 78
             01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 69")
    }

    #[test]
    fn batch_vector_raw_and_zstd() {
        let payload = sample_batch_payload();
        assert_eq!(payload.len(), 137);
        let b: SyncBatchPayload = decode(&payload).unwrap();
        assert_eq!(b.items.len(), 1);
        assert_eq!(b.items[0].ts_ms, 1);
        assert_eq!(b.items[0].message_id, "a");
        assert_eq!(b.items[0].event.tokens, vec![1, 2, 3, 4]);
        assert_eq!(b.items[0].usage_total, 10);
        assert_eq!(b.dict.get(&0).map(String::as_str), Some("m"));
        assert_eq!(b.provider, "x");
        assert_eq!(b.token_columns, vec!["i"]);
        let frame = encode_frame(MsgType::SyncBatch, &b);
        assert_eq!(&frame[..8], &hex("20 00 00 00 89 00 00 00")[..]);
        assert_eq!(&frame[8..], &payload[..]);

        let z = zstd::encode_all(&payload[..], 3).unwrap();
        assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(decode_zstd_batch(&z, MAX_DECOMPRESSED).unwrap(), b);
    }

    #[test]
    fn decoding_rules() {
        // Trailing bytes are ignored.
        let mut last = hex("00 68 e5 cf 8b 01 00 00");
        last.push(0xaa);
        assert_eq!(decode::<LastTsPayload>(&last).unwrap().ts_ms, 1_700_000_000_000);
        // A SyncItem without its last byte fails; so does a bool byte 02.
        let payload = sample_batch_payload();
        assert!(decode::<SyncItem>(&payload[8..89]).is_err());
        let mut bad_bool = payload.clone();
        bad_bool[89] = 2;
        assert!(decode::<SyncBatchPayload>(&bad_bool).is_err());
        // Invalid UTF-8 in a string.
        let mut bad_utf8 = payload.clone();
        bad_utf8[24] = 0xff;
        assert!(decode::<SyncBatchPayload>(&bad_utf8).is_err());
        // A huge length prefix fails without allocating.
        let mut huge = payload.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<SyncBatchPayload>(&huge).is_err());
        let mut many = payload.clone();
        many[0..8].copy_from_slice(&(MAX_BATCH_ITEMS as u64 + 1).to_le_bytes());
        assert!(decode::<SyncBatchPayload>(&many).unwrap_err().0.contains("limit"));
        // A repeated dict key: the last entry wins.
        let mut b: SyncBatchPayload = decode(&payload).unwrap();
        b.dict.clear();
        let mut bytes = options(1 << 20).serialize(&b).unwrap();
        let dict_at = 90;
        let tail = bytes.split_off(dict_at);
        let mut with_dup = bytes;
        with_dup.extend_from_slice(&2u64.to_le_bytes());
        for v in ["first", "second"] {
            with_dup.extend_from_slice(&0u32.to_le_bytes());
            with_dup.extend_from_slice(&(v.len() as u64).to_le_bytes());
            with_dup.extend_from_slice(v.as_bytes());
        }
        with_dup.extend_from_slice(&tail[8..]);
        let d: SyncBatchPayload = decode(&with_dup).unwrap();
        assert_eq!(d.dict.get(&0).map(String::as_str), Some("second"));
    }

    #[test]
    fn zstd_bomb_and_garbage() {
        // A batch claiming 50,000 items followed by 80 MiB of zeros (each zero item is 49 bytes)
        // compresses to a few KiB; decoding stops at the cap.
        let mut zeros = vec![0u8; 80 << 20];
        zeros[..8].copy_from_slice(&50_000u64.to_le_bytes());
        let bomb = zstd::encode_all(&zeros[..], 3).unwrap();
        assert!(bomb.len() < 1 << 20);
        let err = decode_zstd_batch(&bomb, 1 << 20).unwrap_err().0;
        assert!(err.contains("exceeds") || err.contains("limit"), "{err}");
        assert!(decode_zstd_batch(b"not zstd at all", MAX_DECOMPRESSED).is_err());
        let payload = sample_batch_payload();
        let z = zstd::encode_all(&payload[..], 3).unwrap();
        assert!(decode_zstd_batch(&z[..z.len() - 3], MAX_DECOMPRESSED).is_err(), "truncated stream");
    }

    /// A batch whose payload is `len` bytes of varied, compressible data after a valid batch.
    fn padded_batch(len: usize) -> Vec<u8> {
        let mut p = sample_batch_payload();
        let mut x: u32 = 1;
        while p.len() < len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            p.push(b'a' + (x >> 28) as u8);
        }
        p
    }

    #[test]
    fn zstd_window_is_limited_but_real_client_frames_decode() {
        // Level 3 (the client's) over 24 MiB, and level 19 (window 2^23 for a stream of unknown
        // size, as encode_all writes it) decode.
        let payload = padded_batch(24 << 20);
        for (level, len) in [(3, payload.len()), (19, 1 << 20)] {
            let z = zstd::encode_all(&payload[..len], level).unwrap();
            assert_eq!(decode_zstd_batch(&z, MAX_DECOMPRESSED).unwrap().items.len(), 1, "level {level}");
        }
        // A frame asking for a 32 MiB window is refused before the decoder allocates it.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.window_log(25).unwrap();
        std::io::Write::write_all(&mut enc, &payload[..1 << 20]).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(
            zstd::decode_all(&z[..]).unwrap().len(),
            1 << 20,
            "a valid frame, only its window is too big"
        );
        let err = decode_zstd_batch(&z, MAX_DECOMPRESSED).unwrap_err().0;
        assert!(err.contains("zstd"), "{err}");
    }

    #[test]
    fn hostile_columns_tokens_and_dict_are_capped() {
        // 100k column names and 100k tokens in the item: decoded, keeping the first 64 of each.
        let mut b: SyncBatchPayload = decode(&sample_batch_payload()).unwrap();
        b.token_columns = (0..100_000).map(|i| format!("c{i}")).collect();
        b.items[0].event.tokens = (0..100_000).collect();
        let bytes = options(1 << 30).serialize(&b).unwrap();
        let d: SyncBatchPayload = decode(&bytes).unwrap();
        assert_eq!(d.token_columns.len(), MAX_TOKEN_COLUMNS);
        assert_eq!(d.token_columns[63], "c63");
        assert_eq!(d.items[0].event.tokens, (0..MAX_TOKEN_COLUMNS as u64).collect::<Vec<_>>());
        // The skipped part is still checked: truncated or bad UTF-8 fails.
        assert!(decode::<SyncBatchPayload>(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert!(decode::<SyncBatchPayload>(&bad).is_err());
        // Skipped tokens inside an item keep the following fields aligned.
        let mut two = b.clone();
        two.token_columns.truncate(4);
        two.items.push(two.items[0].clone());
        two.items[1].usage_total = 77;
        let d: SyncBatchPayload = decode(&options(1 << 30).serialize(&two).unwrap()).unwrap();
        assert_eq!((d.items.len(), d.items[1].usage_total, d.provider.as_str()), (2, 77, "x"));
        // A dict over the limit is refused before anything is allocated for it.
        let mut dict = sample_batch_payload();
        dict[90..98].copy_from_slice(&(MAX_DICT_ENTRIES as u64 + 1).to_le_bytes());
        assert!(decode::<SyncBatchPayload>(&dict).unwrap_err().0.contains("limit"));
    }
}

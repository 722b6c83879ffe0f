//! The backup file format: a logical dump of every table, taken from one read transaction.
//!
//! ```text
//! "toki-sync backup v1\n"                 20 bytes, uncompressed, so `head -c 20` tells what it is
//! zstd stream (with frame checksums) of:
//!   u32 LE length, header JSON             format, schema version, tables and entry count
//!   per table: 'T' u16 LE name length, name, u64 LE entries
//!              'E' u32 LE key length, key bytes, u32 LE value length, value bytes   (× entries)
//!   'Z' u64 LE total entries, SHA-256 of every byte of the zstd stream before this hash
//! ```
//!
//! Keys and values are redb's own byte encodings, so a dump needs no per-table codec and restores
//! bit for bit. A file that ends early lacks the `Z` record; a changed byte fails zstd's checksum
//! or ours. Either way the reader says so before anything is replaced.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 20] = b"toki-sync backup v1\n";
/// File name suffix of backups written by the scheduler (and suggested by the HTTP endpoint).
pub const EXTENSION: &str = "tsbak";
const FORMAT: u32 = 1;
/// zstd level: events compress ~5× at level 3 and the dump stays faster than the disk.
const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window the reader accepts (the writer uses far less at level 3).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
const MAX_HEADER: usize = 64 << 10;
/// redb's limits are far above these; a larger length in a file means the file is damaged.
const MAX_KEY: usize = 1 << 20;
const MAX_VALUE: usize = 256 << 20;

const TAG_TABLE: u8 = b'T';
const TAG_ENTRY: u8 = b'E';
const TAG_END: u8 = b'Z';

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub format: u32,
    /// The data file's schema version at the snapshot.
    pub schema_version: u32,
    pub toki_sync_version: String,
    /// RFC 3339 time of the snapshot.
    pub created_at: String,
    pub tables: Vec<TableInfo>,
    pub entries: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub entries: u64,
}

impl Header {
    pub fn new(schema_version: u32, tables: Vec<TableInfo>) -> Header {
        Header {
            format: FORMAT,
            schema_version,
            toki_sync_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: crate::store::rfc3339(crate::store::now_secs()).unwrap_or_default(),
            entries: tables.iter().map(|t| t.entries).sum(),
            tables,
        }
    }
}

/// Hashes what passes through on its way to `inner`.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one dump. Call [`Writer::table`] and [`Writer::entry`] in header order, then
/// [`Writer::finish`].
pub struct Writer<W: Write> {
    out: Hashing<io::BufWriter<zstd::stream::write::Encoder<'static, W>>>,
    entries: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(mut sink: W, header: &Header) -> io::Result<Writer<W>> {
        sink.write_all(MAGIC)?;
        let mut encoder = zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL)?;
        encoder.include_checksum(true)?;
        let mut out =
            Hashing { inner: io::BufWriter::with_capacity(256 << 10, encoder), hash: Sha256::new() };
        let json = serde_json::to_vec(header).map_err(io::Error::other)?;
        out.write_all(&(json.len() as u32).to_le_bytes())?;
        out.write_all(&json)?;
        Ok(Writer { out, entries: 0 })
    }

    pub fn table(&mut self, name: &str, entries: u64) -> io::Result<()> {
        self.out.write_all(&[TAG_TABLE])?;
        self.out.write_all(&(name.len() as u16).to_le_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&entries.to_le_bytes())
    }

    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.out.write_all(&[TAG_ENTRY])?;
        self.out.write_all(&(key.len() as u32).to_le_bytes())?;
        self.out.write_all(key)?;
        self.out.write_all(&(value.len() as u32).to_le_bytes())?;
        self.out.write_all(value)?;
        self.entries += 1;
        Ok(())
    }

    /// Writes the end record and the checksum, ends the zstd stream; returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[TAG_END])?;
        self.out.write_all(&self.entries.to_le_bytes())?;
        let Hashing { mut inner, hash } = self.out;
        inner.write_all(&hash.finalize())?;
        let encoder = inner.into_inner().map_err(|e| e.into_error())?;
        let mut sink = encoder.finish()?;
        sink.flush()?;
        Ok(sink)
    }
}

/// Why a backup file cannot be used. The message is for the operator.
#[derive(Debug)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

fn damaged(what: impl std::fmt::Display) -> FormatError {
    FormatError(format!("the backup is damaged: {what}"))
}

/// Maps a read error: running out of input means the file was cut short.
fn read_error(e: io::Error) -> FormatError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FormatError(
            "the backup is truncated: it ends before its end record (an interrupted download or a full disk?)"
                .into(),
        )
    } else if e.kind() == io::ErrorKind::Other || e.kind() == io::ErrorKind::InvalidData {
        // zstd reports damaged frames (bad checksum, invalid block) as generic errors.
        damaged(format!("zstd: {e}"))
    } else {
        FormatError(format!("cannot read the backup: {e}"))
    }
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// What the reader hands out, in file order.
pub enum Item<'a> {
    Table { name: &'a str, entries: u64 },
    Entry { key: &'a [u8], value: &'a [u8] },
}

/// Reads a dump, checking its structure as it goes: the header, that every table holds the
/// entries it announced, the end record, the checksum, and that nothing follows.
pub struct Reader<R: Read> {
    input: HashingReader<zstd::stream::read::Decoder<'static, io::BufReader<R>>>,
    header: Header,
    table_left: u64,
    tables_seen: usize,
    entries: u64,
    name: String,
    key: Vec<u8>,
    value: Vec<u8>,
    done: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(mut source: R) -> Result<Reader<R>, FormatError> {
        let mut magic = [0u8; MAGIC.len()];
        source.read_exact(&mut magic).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                FormatError("not a toki-sync backup: the file is too short".into())
            }
            _ => FormatError(format!("cannot read the backup: {e}")),
        })?;
        if &magic != MAGIC {
            return Err(FormatError(
                "not a toki-sync backup (it does not start with \"toki-sync backup v1\"); a backup is made by `toki-sync backup` or the [backup] schedule".into(),
            ));
        }
        let mut decoder = zstd::stream::read::Decoder::new(source).map_err(read_error)?;
        decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(read_error)?;
        let mut input = HashingReader { inner: decoder, hash: Sha256::new() };
        let len = read_u32(&mut input)? as usize;
        if len > MAX_HEADER {
            return Err(damaged(format!("header length {len}")));
        }
        let mut json = vec![0; len];
        input.read_exact(&mut json).map_err(read_error)?;
        let header: Header =
            serde_json::from_slice(&json).map_err(|e| damaged(format!("header is not valid: {e}")))?;
        if header.format != FORMAT {
            return Err(FormatError(format!(
                "backup format {} is not supported by this toki-sync (format {FORMAT}); use the toki-sync version that made it",
                header.format
            )));
        }
        if header.entries != header.tables.iter().map(|t| t.entries).sum::<u64>() {
            return Err(damaged("header entry counts disagree"));
        }
        Ok(Reader {
            input,
            header,
            table_left: 0,
            tables_seen: 0,
            entries: 0,
            name: String::new(),
            key: Vec::new(),
            value: Vec::new(),
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next table or entry; `None` after the end record has been checked.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, FormatError> {
        if self.done {
            return Ok(None);
        }
        let tag = read_u8(&mut self.input)?;
        match tag {
            TAG_TABLE => {
                if self.table_left != 0 {
                    return Err(damaged(format!(
                        "table `{}` ends {} entries early",
                        self.name, self.table_left
                    )));
                }
                let len = read_u16(&mut self.input)? as usize;
                let mut name = vec![0; len];
                self.input.read_exact(&mut name).map_err(read_error)?;
                self.name = String::from_utf8(name).map_err(|_| damaged("a table name is not UTF-8"))?;
                let entries = read_u64(&mut self.input)?;
                let expected = self.header.tables.get(self.tables_seen);
                if expected.is_none_or(|t| t.name != self.name || t.entries != entries) {
                    return Err(damaged(format!(
                        "table `{}` is not the one the header lists next",
                        self.name
                    )));
                }
                self.tables_seen += 1;
                self.table_left = entries;
                Ok(Some(Item::Table { name: &self.name, entries }))
            }
            TAG_ENTRY => {
                if self.table_left == 0 {
                    return Err(damaged(format!("table `{}` has more entries than announced", self.name)));
                }
                self.table_left -= 1;
                read_blob(&mut self.input, &mut self.key, MAX_KEY)?;
                read_blob(&mut self.input, &mut self.value, MAX_VALUE)?;
                self.entries += 1;
                Ok(Some(Item::Entry { key: &self.key, value: &self.value }))
            }
            TAG_END => {
                if self.table_left != 0 || self.tables_seen != self.header.tables.len() {
                    return Err(damaged("it ends before all tables"));
                }
                let total = read_u64(&mut self.input)?;
                let computed = self.input.hash.clone().finalize();
                let mut stored = [0u8; 32];
                self.input.inner.read_exact(&mut stored).map_err(read_error)?;
                if total != self.entries || total != self.header.entries {
                    return Err(damaged("entry count mismatch"));
                }
                if computed[..] != stored {
                    return Err(damaged("checksum mismatch"));
                }
                let mut rest = [0u8; 1];
                match self.input.inner.read(&mut rest).map_err(read_error)? {
                    0 => {}
                    _ => return Err(damaged("bytes follow the end record")),
                }
                self.done = true;
                Ok(None)
            }
            other => Err(damaged(format!("unknown record tag {other:#04x}"))),
        }
    }
}

/// Reads a whole dump, checking everything the format can check; returns its header.
pub fn verify<R: Read>(source: R, mut on_entry: impl FnMut(u64)) -> Result<Header, FormatError> {
    let mut reader = Reader::new(source)?;
    let mut n = 0;
    while let Some(item) = reader.next_item()? {
        if let Item::Entry { .. } = item {
            n += 1;
            if n % 4096 == 0 {
                on_entry(n);
            }
        }
    }
    on_entry(n);
    Ok(reader.header)
}

fn read_u8(r: &mut impl Read) -> Result<u8, FormatError> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).map_err(read_error)?;
    Ok(b[0])
}

fn read_u16(r: &mut impl Read) -> Result<u16, FormatError> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b).map_err(read_error)?;
    Ok(u16::from_le_bytes(b))
}

fn read_u32(r: &mut impl Read) -> Result<u32, FormatError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(read_error)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> Result<u64, FormatError> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(read_error)?;
    Ok(u64::from_le_bytes(b))
}

fn read_blob(r: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> Result<(), FormatError> {
    let len = read_u32(r)? as usize;
    if len > max {
        return Err(damaged(format!("a record claims {len} bytes")));
    }
    buf.resize(len, 0);
    r.read_exact(buf).map_err(read_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let header = Header::new(
            1,
            vec![TableInfo { name: "a".into(), entries: 2 }, TableInfo { name: "b".into(), entries: 0 }],
        );
        let mut w = Writer::new(Vec::new(), &header).unwrap();
        w.table("a", 2).unwrap();
        w.entry(b"k1", b"v1").unwrap();
        w.entry(b"k2", &[7u8; 5000]).unwrap();
        w.table("b", 0).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().entries, 2);
        let mut seen = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            seen.push(match item {
                Item::Table { name, entries } => format!("T{name}{entries}"),
                Item::Entry { key, value } => format!("E{}:{}", key.len(), value.len()),
            });
        }
        assert_eq!(seen, ["Ta2", "E2:2", "E2:5000", "Tb0"]);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let err = verify(&bytes[..cut], |_| {}).expect_err("a cut file must be refused");
            assert!(
                err.0.contains("truncated") || err.0.contains("too short") || err.0.contains("damaged"),
                "cut at {cut}: {err}"
            );
        }
        verify(&bytes[..], |_| {}).unwrap();
    }

    /// (table name or "", key, value) in file order.
    type Items = Vec<(String, Vec<u8>, Vec<u8>)>;

    fn items(bytes: &[u8]) -> Result<Items, FormatError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(item) = r.next_item()? {
            out.push(match item {
                Item::Table { name, .. } => (name.to_owned(), Vec::new(), Vec::new()),
                Item::Entry { key, value } => (String::new(), key.to_vec(), value.to_vec()),
            });
        }
        Ok(out)
    }

    /// A changed byte is refused, unless it changes no content (a window-size bit of zstd's
    /// frame header, say): then the contents read back unchanged.
    #[test]
    fn every_flipped_byte_is_refused_or_harmless() {
        let bytes = sample();
        let original = items(&bytes).unwrap();
        let mut harmless = 0;
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            if let Ok(got) = items(&b) {
                assert_eq!(got, original, "flip at {i} changed the contents without an error");
                harmless += 1;
            }
        }
        assert!(harmless * 10 < bytes.len(), "{harmless} of {} flips went unnoticed", bytes.len());
    }

    #[test]
    fn other_files_are_named_as_such() {
        let err = verify(&b"SQLite format 3\0 and more bytes"[..], |_| {}).unwrap_err();
        assert!(err.0.contains("not a toki-sync backup"), "{err}");
        let mut extra = sample();
        extra.extend_from_slice(&sample()[MAGIC.len()..]);
        let err = verify(&extra[..], |_| {}).unwrap_err();
        assert!(err.0.contains("follow"), "{err}");
    }
}

//! Compact, versioned value encoding for everything stored in redb.
//!
//! A stored value is one version byte followed by fields written with [`Enc`]: LEB128 varints for
//! integers (token counts and ids are small, so this keeps the file compact), zig-zag for signed
//! integers, and length-prefixed bytes for strings. Decoding is bounds-checked and never panics; a
//! record type decides which versions it can read, so old values are upgraded as they are read and
//! values from a newer binary are refused with a clear error.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// A value type stored in a table.
pub trait Record: Sized {
    /// Name used in error messages.
    const NAME: &'static str;
    /// The version this binary writes.
    const VERSION: u8;
    fn encode_fields(&self, e: &mut Enc);
    /// Reads the fields of a value written with `version` (<= `VERSION`).
    fn decode_fields(version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError>;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Encodes into `out` (cleared first), reusing its allocation on hot paths.
    fn encode_into(&self, out: &mut Vec<u8>) {
        let mut e = Enc(std::mem::take(out));
        e.0.clear();
        e.u8(Self::VERSION);
        self.encode_fields(&mut e);
        *out = e.0;
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut d = Dec::new(bytes);
        let version = d.u8()?;
        if version == 0 || version > Self::VERSION {
            return Err(CodecError(format!(
                "{} record has version {version}, this binary reads versions 1 to {}; the data file was written by a newer toki-sync",
                Self::NAME,
                Self::VERSION
            )));
        }
        Self::decode_fields(version, &mut d).map_err(|e| CodecError(format!("{} record: {e}", Self::NAME)))
    }
}

pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }

    pub fn uvar(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub fn ivar(&mut self, v: i64) {
        self.uvar(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.uvar(v.len() as u64);
        self.0.extend_from_slice(v);
    }

    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    pub fn opt_ivar(&mut self, v: Option<i64>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.ivar(x);
            }
        }
    }

    pub fn fixed<const N: usize>(&mut self, v: &[u8; N]) {
        self.0.extend_from_slice(v);
    }
}

pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| {
            CodecError(format!(
                "truncated value: wanted {n} bytes at offset {}, have {}",
                self.pos,
                self.buf.len()
            ))
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(CodecError(format!("invalid bool byte {b}"))),
        }
    }

    pub fn uvar(&mut self) -> Result<u64, CodecError> {
        // On the slice directly (queries decode millions of these): at most 10 bytes, the 10th
        // holding only the top bit.
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 9 && b > 1 {
                    break;
                }
                self.pos += i + 1;
                return Ok(v);
            }
        }
        if rest.len() < 10 && rest.iter().all(|b| b & 0x80 != 0) {
            return Err(CodecError(format!(
                "truncated value: varint at offset {} runs past the end ({} bytes)",
                self.pos,
                self.buf.len()
            )));
        }
        Err(CodecError("varint overflows 64 bits".into()))
    }

    pub fn u32var(&mut self) -> Result<u32, CodecError> {
        u32::try_from(self.uvar()?).map_err(|_| CodecError("value overflows 32 bits".into()))
    }

    pub fn ivar(&mut self) -> Result<i64, CodecError> {
        let u = self.uvar()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.uvar()?;
        let n = usize::try_from(n).map_err(|_| CodecError("length overflows".into()))?;
        self.take(n)
    }

    pub fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError("string is not UTF-8".into()))
    }

    pub fn string(&mut self) -> Result<String, CodecError> {
        self.str().map(str::to_owned)
    }

    pub fn opt_string(&mut self) -> Result<Option<String>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            b => Err(CodecError(format!("invalid option tag {b}"))),
        }
    }

    pub fn opt_ivar(&mut self) -> Result<Option<i64>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.ivar().map(Some),
            b => Err(CodecError(format!("invalid option tag {b}"))),
        }
    }

    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut e = Enc(Vec::new());
            e.uvar(v);
            assert_eq!(Dec::new(&e.0).uvar().unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -1_700_000_000_000] {
            let mut e = Enc(Vec::new());
            e.ivar(v);
            assert_eq!(Dec::new(&e.0).ivar().unwrap(), v);
        }
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        assert!(Dec::new(&[0xff; 11]).uvar().is_err());
        assert!(Dec::new(&[0x80]).uvar().is_err());
        assert!(Dec::new(&[0x05, b'a']).str().is_err());
        assert!(Dec::new(&[0x02, 0xff, 0xfe]).str().is_err());
        assert!(Dec::new(&[0x02]).bool().is_err());
        let mut huge = Enc(Vec::new());
        huge.uvar(u64::MAX);
        assert!(Dec::new(&huge.0).bytes().is_err());
    }
}

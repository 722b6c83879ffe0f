//! The API key format: `tks_` + base64url(32 random bytes + a 4-byte checksum), 52 characters.
//!
//! The checksum (the first 4 bytes of SHA-256 over the random part) tells a mistyped or
//! truncated key apart from a revoked one without a store lookup. Keys are stored as SHA-256 of
//! the whole key: with 256 random bits a fast hash is as safe as a password hash, and a lookup
//! costs one hash and one key read, never an argon2 run.

use base64::Engine;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "tks_";
const RANDOM_BYTES: usize = 32;
const ENCODED_LEN: usize = 48; // (32 + 4) bytes in base64url without padding
/// Characters of a key shown in listings (`tks_` and 8 more) so a user can tell keys apart.
pub const SHOWN_PREFIX_LEN: usize = 12;

#[derive(Debug, PartialEq, Eq)]
pub enum KeyFormatError {
    /// Starts with `tks_` but has the wrong length or characters.
    Malformed,
    /// Well-formed, but the checksum does not match: a typo.
    Checksum,
}

impl KeyFormatError {
    pub fn message(&self) -> &'static str {
        match self {
            KeyFormatError::Malformed => "malformed API key: expected tks_ and 48 characters",
            KeyFormatError::Checksum => "API key checksum mismatch: the key was mistyped or cut short",
        }
    }
}

fn checksum(random: &[u8]) -> [u8; 4] {
    let d = Sha256::digest(random);
    [d[0], d[1], d[2], d[3]]
}

/// A new random key (shown once) and its stored hash.
pub fn generate() -> (String, [u8; 32]) {
    let random = crate::auth::random::bytes::<RANDOM_BYTES>();
    let mut raw = random.to_vec();
    raw.extend_from_slice(&checksum(&random));
    let key = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    let hash = hash(&key);
    (key, hash)
}

pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Checks the format and checksum of a presented key.
pub fn check(token: &str) -> Result<(), KeyFormatError> {
    let body = token.strip_prefix(PREFIX).ok_or(KeyFormatError::Malformed)?;
    if body.len() != ENCODED_LEN {
        return Err(KeyFormatError::Malformed);
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| KeyFormatError::Malformed)?;
    let (random, sum) = raw.split_at(RANDOM_BYTES);
    if checksum(random) != sum {
        return Err(KeyFormatError::Checksum);
    }
    Ok(())
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn shown_prefix(key: &str) -> String {
    key.chars().take(SHOWN_PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_checksum() {
        let (key, h) = generate();
        assert_eq!(key.len(), 52);
        assert!(key.starts_with("tks_"));
        assert_eq!(check(&key), Ok(()));
        assert_eq!(hash(&key), h);
        assert_ne!(generate().0, key);
        // One changed character: the checksum catches it (unless it only changes padding bits).
        let mut typo: Vec<char> = key.chars().collect();
        typo[10] = if typo[10] == 'A' { 'B' } else { 'A' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(check(&typo), Err(KeyFormatError::Checksum));
        assert_eq!(check(&key[..40]), Err(KeyFormatError::Malformed));
        assert_eq!(
            check("tks_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"),
            Err(KeyFormatError::Malformed)
        );
        assert_eq!(shown_prefix(&key).len(), 12);
    }
}

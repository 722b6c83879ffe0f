//! Secrets from the operating system's CSPRNG.

use base64::Engine;

/// `N` random bytes from the OS. Failing to read the OS generator leaves no safe way to make
/// secrets, so it aborts with a message rather than continuing with weak ones.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random number generator is unavailable");
    out
}

/// URL-safe random token with `N` bytes of entropy (`N * 4 / 3` characters).
pub fn token<const N: usize>() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes::<N>())
}

pub fn u64() -> u64 {
    u64::from_le_bytes(bytes::<8>())
}

/// A password for the generated first admin: 24 characters from an alphabet without
/// look-alikes (about 140 bits).
pub fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(24);
    let mut pool = bytes::<64>().into_iter();
    while out.len() < 24 {
        let b = match pool.next() {
            Some(b) => b,
            None => {
                pool = bytes::<64>().into_iter();
                continue;
            }
        };
        // Rejection sampling keeps the distribution uniform.
        let limit = 256 - (256 % ALPHABET.len());
        if usize::from(b) < limit {
            out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
        }
    }
    out
}

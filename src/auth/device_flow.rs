//! The device-code flow's rules (RFC 8628 with the toki client's needs, compat.md §5): code
//! formats, polling pace, and limits on codes in progress. The records live in
//! `store::device_codes`; the endpoints in `http::handlers::device`.

use crate::store::device_codes::Limits;

/// User codes use letters and digits that cannot be mistaken for each other (no 0/O, 1/I/L).
pub const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Seconds the client waits between polls.
pub const POLL_INTERVAL_SECS: u64 = 5;
/// The interval suggested with `slow_down`.
pub const SLOW_DOWN_INTERVAL_SECS: u64 = 10;
/// A poll sooner than this after the previous one gets `slow_down` (the interval less about a
/// second of jitter: the client sleeps `interval` and then sends, so its gaps are never shorter).
pub const MIN_POLL_GAP_MS: i64 = (POLL_INTERVAL_SECS as i64 - 1) * 1000;
/// Codes in progress, per client address and in all. `POST /device/code` needs no account,
/// so these bound what anonymous callers can make the server store.
pub const LIMITS: Limits = Limits { total: 10_000, per_address: 20 };

/// A fresh device code: 32 random bytes, base64url (43 characters).
pub fn new_device_code() -> String {
    super::random::token::<32>()
}

/// A fresh user code, `XXXX-XXXX` (about 40 bits: guessing is stopped by the approver's lockout
/// long before it could succeed).
pub fn new_user_code() -> String {
    let mut chars = Vec::with_capacity(8);
    let limit = 256 - (256 % USER_CODE_ALPHABET.len());
    while chars.len() < 8 {
        for b in super::random::bytes::<16>() {
            // Rejection sampling keeps every character equally likely.
            if usize::from(b) < limit && chars.len() < 8 {
                chars.push(USER_CODE_ALPHABET[usize::from(b) % USER_CODE_ALPHABET.len()]);
            }
        }
    }
    format_user_code(&chars)
}

fn format_user_code(chars: &[u8]) -> String {
    let s = String::from_utf8_lossy(chars);
    format!("{}-{}", &s[..4], &s[4..])
}

/// A user code as typed (any case, with or without spaces and the hyphen) in its stored form
/// `XXXX-XXXX`; `None` if it cannot be a code.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let chars: Vec<u8> = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .map(|c| u8::try_from(c).unwrap_or(0))
        .collect();
    if chars.len() != 8 || !chars.iter().all(|c| USER_CODE_ALPHABET.contains(c)) {
        return None;
    }
    Some(format_user_code(&chars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes() {
        for _ in 0..200 {
            let code = new_user_code();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
            assert!(code.bytes().filter(|b| *b != b'-').all(|b| USER_CODE_ALPHABET.contains(&b)), "{code}");
        }
        assert_eq!(normalize_user_code("wdjb-mjht").as_deref(), Some("WDJB-MJHT"));
        assert_eq!(normalize_user_code(" wdjb mjht ").as_deref(), Some("WDJB-MJHT"));
        assert_eq!(normalize_user_code("WDJBMJHT").as_deref(), Some("WDJB-MJHT"));
        assert_eq!(normalize_user_code("WD-JB-MJ-HT").as_deref(), Some("WDJB-MJHT"));
        assert_eq!(normalize_user_code("WDJB-MJH0"), None, "0 is not in the alphabet");
        assert_eq!(normalize_user_code("WDJB-MJH"), None);
        assert_eq!(normalize_user_code("WDJB-MJHTX"), None);
        assert_eq!(normalize_user_code("WDJB-MJHÉ"), None);
        assert_eq!(normalize_user_code(""), None);
    }

    #[test]
    fn device_codes_are_long_and_url_safe() {
        let a = new_device_code();
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, new_device_code());
    }
}

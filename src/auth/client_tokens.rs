//! OAuth 2.0 client credentials (RFC 6749 §4.4): client ids (`tkc_…`), client secrets
//! (`tkcs_…`, shown once) and the opaque access tokens (`tkt_…`) `POST /oauth/token` issues.
//! Secrets and tokens carry 256 random bits and are stored as SHA-256, like API keys.

use crate::auth::random;

pub const TOKEN_PREFIX: &str = "tkt_";
pub const CLIENT_ID_PREFIX: &str = "tkc_";
pub const SECRET_PREFIX: &str = "tkcs_";
/// Access tokens live one hour.
pub const TOKEN_TTL_SECS: i64 = 3600;

pub fn looks_like_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

pub fn new_client_id() -> String {
    format!("{CLIENT_ID_PREFIX}{}", random::token::<16>())
}

pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", random::token::<32>())
}

pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random::token::<32>())
}

/// Constant-time comparison of two hashes (a secret's hash against the stored one).
pub fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

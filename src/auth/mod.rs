//! Authentication: passwords, tokens, brute-force lockout, the device-code flow and the rules for
//! names and passwords.

pub mod api_keys;
pub mod client_tokens;
pub mod device_flow;
pub mod jwt;
pub mod lockout;
pub mod oidc;
pub mod password;
pub mod random;
pub mod rules;
pub mod scopes;
pub mod tokens;

//! Authentication: passwords, tokens, brute-force lockout, the device-code flow and the rules for
//! names and passwords.

pub mod device_flow;
pub mod jwt;
pub mod lockout;
pub mod oidc;
pub mod password;
pub mod random;
pub mod rules;
pub mod tokens;

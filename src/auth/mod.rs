//! Authentication: passwords, tokens, brute-force lockout and the rules for names and passwords.

pub mod jwt;
pub mod lockout;
pub mod password;
pub mod random;
pub mod rules;
pub mod tokens;

//! `[auth]`: Tokens, registration and brute-force protection.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use std::fmt;

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegistrationMode {
    Open,
    Approval,
    #[default]
    Closed,
}

impl RegistrationMode {
    pub const NAMES: &'static [&'static str] = &["open", "approval", "closed"];

    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Open => "open",
            RegistrationMode::Approval => "approval",
            RegistrationMode::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(RegistrationMode::Open),
            "approval" => Some(RegistrationMode::Approval),
            "closed" => Some(RegistrationMode::Closed),
            _ => None,
        }
    }
}

impl fmt::Display for RegistrationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub registration_mode: RegistrationMode,
    pub brute_force_max_attempts: u32,
    pub brute_force_window_secs: u64,
    pub brute_force_lockout_secs: u64,
    pub refresh_reuse_grace_secs: u64,
    pub device_code_ttl_secs: u64,
}

pub(super) const SECTION: Section = Section {
    name: "auth",
    help: "Tokens, registration and brute-force protection.",
    keys: &[
        Key {
            name: "access_token_ttl_secs",
            kind: Kind::Int { min: 60, max: 30 * 86400 },
            default: "3600",
            example: "",
            help: "Lifetime of access tokens.",
            set: setter!(auth.access_token_ttl_secs, Int, u64),
        },
        Key {
            name: "refresh_token_ttl_secs",
            kind: Kind::Int { min: 300, max: 3650 * 86400 },
            default: "7776000",
            example: "",
            help: "Lifetime of refresh tokens (90 days). Each use rotates the token.",
            set: setter!(auth.refresh_token_ttl_secs, Int, u64),
        },
        Key {
            name: "registration_mode",
            kind: Kind::Enum(RegistrationMode::NAMES),
            default: "closed",
            example: "",
            help: "Self-registration: \"open\", \"approval\" (an admin approves) or \"closed\". An admin can change it at run time; the stored setting then wins.",
            set: |c, p| {
                if let Parsed::Str(v) = p {
                    c.auth.registration_mode = RegistrationMode::parse(&v).unwrap_or(RegistrationMode::Closed)
                }
            },
        },
        Key {
            name: "brute_force_max_attempts",
            kind: Kind::Int { min: 1, max: 1000 },
            default: "5",
            example: "",
            help: "Failed attempts (per client IP and username) allowed within the window.",
            set: setter!(auth.brute_force_max_attempts, Int, u32),
        },
        Key {
            name: "brute_force_window_secs",
            kind: Kind::Int { min: 1, max: 86400 },
            default: "300",
            example: "",
            help: "Window in which failures are counted.",
            set: setter!(auth.brute_force_window_secs, Int, u64),
        },
        Key {
            name: "brute_force_lockout_secs",
            kind: Kind::Int { min: 1, max: 86400 },
            default: "900",
            example: "",
            help: "How long a key stays locked (429) once it reaches the limit.",
            set: setter!(auth.brute_force_lockout_secs, Int, u64),
        },
        Key {
            name: "refresh_reuse_grace_secs",
            kind: Kind::Int { min: 0, max: 300 },
            default: "30",
            example: "",
            help: "A rotated refresh token presented again within this time gets the same new pair (concurrent refreshes); later reuse revokes the whole token family.",
            set: setter!(auth.refresh_reuse_grace_secs, Int, u64),
        },
        Key {
            name: "device_code_ttl_secs",
            kind: Kind::Int { min: 60, max: 3600 },
            default: "900",
            example: "",
            help: "How long a device-login code (`toki settings sync enable`) stays valid before it must be approved in the browser.",
            set: setter!(auth.device_code_ttl_secs, Int, u64),
        },
    ],
};

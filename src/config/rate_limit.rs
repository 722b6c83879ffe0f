//! `[rate_limit]`: HTTP API request limits per principal and minute.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct RateLimitConfig {
    pub usage_per_minute: u32,
    pub devices_per_minute: u32,
    pub admin_per_minute: u32,
    pub account_per_minute: u32,
    pub anonymous_per_minute: u32,
    pub max_tracked: usize,
}

const LIMIT: Kind = Kind::Int { min: 0, max: 10_000_000 };

pub(super) const SECTION: Section = Section {
    name: "rate_limit",
    help: "HTTP API request limits, per principal (a user's sessions, one API key, one OAuth client) and minute; 0 turns a class off. The sync port is not limited this way.",
    keys: &[
        Key {
            name: "usage_per_minute",
            kind: LIMIT,
            default: "1000",
            example: "",
            help: "Usage reads: /api/v1/usage, records, export, toki query, PromQL.",
            set: setter!(rate_limit.usage_per_minute, Int, u32),
        },
        Key {
            name: "devices_per_minute",
            kind: LIMIT,
            default: "1000",
            example: "",
            help: "/me/devices reads and changes.",
            set: setter!(rate_limit.devices_per_minute, Int, u32),
        },
        Key {
            name: "admin_per_minute",
            kind: LIMIT,
            default: "1000",
            example: "",
            help: "/admin/... requests.",
            set: setter!(rate_limit.admin_per_minute, Int, u32),
        },
        Key {
            name: "account_per_minute",
            kind: LIMIT,
            default: "1000",
            example: "",
            help: "/me, API keys, OAuth clients, device approval.",
            set: setter!(rate_limit.account_per_minute, Int, u32),
        },
        Key {
            name: "anonymous_per_minute",
            kind: LIMIT,
            default: "1000",
            example: "",
            help: "Requests without a valid credential (sign-in, token endpoints, failed authentication), per client address (IPv6 by /64).",
            set: setter!(rate_limit.anonymous_per_minute, Int, u32),
        },
        Key {
            name: "max_tracked",
            kind: Kind::Int { min: 16, max: 10_000_000 },
            default: "100000",
            example: "",
            help: "Most counters kept in memory; beyond it, new principals and addresses share one counter per class until the minute ends.",
            set: setter!(rate_limit.max_tracked, Int, usize),
        },
    ],
};

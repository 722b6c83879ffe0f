//! `[audit]`: the audit log.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    pub retention_days: u64,
}

pub(super) const SECTION: Section = Section {
    name: "audit",
    help: "The audit log of sign-ins, credential, user, device, team and setting changes.",
    keys: &[Key {
        name: "retention_days",
        kind: Kind::Int { min: 1, max: 36_500 },
        default: "365",
        example: "",
        help: "Days an audit entry is kept; older entries are removed as new ones are written.",
        set: setter!(audit.retention_days, Int, u64),
    }],
};

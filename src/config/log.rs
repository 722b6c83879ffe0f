//! `[log]`: Logging (to stderr).
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct LogConfig {
    pub level: String,
}

pub(super) const SECTION: Section = Section {
    name: "log",
    help: "Logging (to stderr).",
    keys: &[Key {
        name: "level",
        kind: Kind::LogFilter,
        default: "info",
        example: "",
        help: "Log level (off, error, warn, info, debug, trace), or comma-separated directives: a level and target=level pairs such as \"info,toki_sync::http=debug\". RUST_LOG wins when set; both are checked at start.",
        set: |c, p| {
            if let Parsed::Str(v) = p {
                c.log.level = v
            }
        },
    }],
};

//! `[storage]`: Where the single redb data file lives.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use std::path::PathBuf;

use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
}

pub(super) const SECTION: Section = Section {
    name: "storage",
    help: "Where the single redb data file lives.",
    keys: &[Key {
        name: "data_dir",
        kind: Kind::Str,
        default: "data",
        example: "",
        help: "Directory holding toki-sync.redb (created if missing). Relative paths start at the working directory.",
        set: |c, p| {
            if let Parsed::Str(v) = p {
                c.storage.data_dir = PathBuf::from(v)
            }
        },
    }],
};

//! `[backup]`: Scheduled backups while the server runs.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use std::path::PathBuf;

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct BackupConfig {
    /// Unset: no scheduled backups.
    pub dir: Option<PathBuf>,
    pub interval_hours: u64,
    pub keep: usize,
}

pub(super) const SECTION: Section = Section {
    name: "backup",
    help: "Scheduled backups while the server runs.",
    keys: &[
        Key {
            name: "dir",
            kind: Kind::OptPath,
            default: "",
            example: "\"/var/backups/toki-sync\"",
            help: "Directory for scheduled backups (created if missing; best on another disk). Unset: no scheduled backups (`toki-sync backup` and GET /admin/backup still work).",
            set: setter!(backup.dir, OptPath),
        },
        Key {
            name: "interval_hours",
            kind: Kind::Int { min: 1, max: 8760 },
            default: "24",
            example: "",
            help: "Time between scheduled backups, counted from the newest backup in `dir` (so restarts do not postpone them).",
            set: setter!(backup.interval_hours, Int, u64),
        },
        Key {
            name: "keep",
            kind: Kind::Int { min: 1, max: 10000 },
            default: "7",
            example: "",
            help: "Scheduled backups to keep; older ones in `dir` are deleted after each new one.",
            set: setter!(backup.keep, Int, usize),
        },
    ],
};

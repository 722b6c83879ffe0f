//! `[pricing]`: Model prices for the costs in usage responses.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use std::path::PathBuf;

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct PricingConfig {
    /// TOML file whose prices replace or add to the built-in table.
    pub file: Option<PathBuf>,
}

pub(super) const SECTION: Section = Section {
    name: "pricing",
    help: "Model prices for the costs in usage responses.",
    keys: &[Key {
        name: "file",
        kind: Kind::OptPath,
        default: "",
        example: "\"/etc/toki-sync/prices.toml\"",
        help: "TOML file with model prices (USD per million tokens) that replace or add to the built-in table; see the README for the format. Read at start-up; a bad file stops start-up.",
        set: setter!(pricing.file, OptPath),
    }],
};

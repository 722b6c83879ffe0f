//! `[backend]`: Optional VictoriaMetrics for PromQL.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct BackendConfig {
    pub vm_url: Option<String>,
    pub vm_timeout_secs: u64,
}

pub(super) const SECTION: Section = Section {
    name: "backend",
    help: "Optional VictoriaMetrics for PromQL.",
    keys: &[
        Key {
            name: "vm_url",
            kind: Kind::Url,
            default: "",
            example: "\"http://127.0.0.1:8428\"",
            help: "VictoriaMetrics base URL. Set: accepted usage is written there (run it with -dedup.minScrapeInterval=1h, see the README) and the PromQL proxy serves /api/v1/query*. Unset: the proxy answers 503.",
            set: setter!(backend.vm_url, OptStr),
        },
        Key {
            name: "vm_timeout_secs",
            kind: Kind::Int { min: 1, max: 600 },
            default: "30",
            example: "",
            help: "Time one VictoriaMetrics request (a write of queued usage, or a proxied query) may take.",
            set: setter!(backend.vm_timeout_secs, Int, u64),
        },
    ],
};

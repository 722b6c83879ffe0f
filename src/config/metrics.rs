//! `[metrics]`: Prometheus metrics on a listener of their own.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use std::net::SocketAddr;

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct MetricsConfig {
    /// Unset: no metrics listener.
    pub bind: Option<SocketAddr>,
}

pub(super) const SECTION: Section = Section {
    name: "metrics",
    help: "Prometheus metrics on a listener of their own.",
    keys: &[Key {
        name: "bind",
        kind: Kind::OptSocketAddr,
        default: "",
        example: "\"127.0.0.1:9464\"",
        help: "Address and port serving GET /metrics (Prometheus text format) without authentication: keep it on loopback or a private network. Unset: no metrics listener.",
        set: |c: &mut Config, p: Parsed| {
            if let Parsed::OptStr(v) = p {
                c.metrics.bind = v.and_then(|s| s.parse().ok())
            }
        },
    }],
};

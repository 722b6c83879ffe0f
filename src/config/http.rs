//! `[http]`: HTTP limits.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    pub header_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

pub(super) const SECTION: Section = Section {
    name: "http",
    help: "HTTP limits.",
    keys: &[
        Key {
            name: "max_body_bytes",
            kind: Kind::Int { min: 1024, max: 64 << 20 },
            default: "1048576",
            example: "",
            help: "Largest accepted request body; larger requests get 413.",
            set: setter!(http.max_body_bytes, Int, usize),
        },
        Key {
            name: "header_timeout_secs",
            kind: Kind::Int { min: 1, max: 600 },
            default: "10",
            example: "",
            help: "Time a client has to send the request headers (also the keep-alive idle time); headers begun but not finished by then get 408.",
            set: setter!(http.header_timeout_secs, Int, u64),
        },
        Key {
            name: "request_timeout_secs",
            kind: Kind::Int { min: 1, max: 3600 },
            default: "30",
            example: "",
            help: "Time a request (body and handling) may take before it is answered with 503.",
            set: setter!(http.request_timeout_secs, Int, u64),
        },
        Key {
            name: "max_connections",
            kind: Kind::Int { min: 1, max: 1_000_000 },
            default: "1024",
            example: "",
            help: "Concurrent HTTP connections, on each of the HTTP and HTTPS listeners; further ones get 503 and are closed.",
            set: setter!(http.max_connections, Int, usize),
        },
        Key {
            name: "max_connections_per_ip",
            kind: Kind::Int { min: 1, max: 1_000_000 },
            default: "128",
            example: "",
            help: "Concurrent HTTP connections from one address (IPv6: one /64); further ones get 503 and are closed. The default leaves room for a dozen machines behind one NAT, each with a browser (up to 6 connections) and the toki CLI. server.trusted_proxies are exempt.",
            set: setter!(http.max_connections_per_ip, Int, usize),
        },
    ],
};

//! `[sync]`: The TCP sync listener for toki daemons.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use super::Config;
use super::key::{Key, Kind, Parsed, Section};
use crate::net::Cidr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlaintextPolicy {
    /// Plaintext only from loopback peers (and `plaintext_allow`).
    #[default]
    Loopback,
    Always,
    Never,
}

#[derive(Clone, Debug, Default)]
pub struct SyncConfig {
    pub plaintext: PlaintextPolicy,
    /// Extra networks allowed to sync without TLS.
    pub plaintext_allow: Vec<Cidr>,
    pub idle_timeout_secs: u64,
    pub handshake_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_frame_bytes: usize,
    pub max_decompressed_bytes: usize,
    pub sync_err_delay_secs: u64,
}

pub(super) const SECTION: Section = Section {
    name: "sync",
    help: "The TCP sync listener for toki daemons.",
    keys: &[
        Key {
            name: "plaintext",
            kind: Kind::Enum(&["loopback", "always", "never"]),
            default: "loopback",
            example: "",
            help: "Who may sync without TLS: \"loopback\" (127.0.0.0/8, ::1, plus plaintext_allow), \"always\" or \"never\". The toki client speaks plaintext to localhost. A refused peer is told to use TLS.",
            set: |c, p| {
                if let Parsed::Str(v) = p {
                    c.sync.plaintext = match v.as_str() {
                        "always" => PlaintextPolicy::Always,
                        "never" => PlaintextPolicy::Never,
                        _ => PlaintextPolicy::Loopback,
                    }
                }
            },
        },
        Key {
            name: "plaintext_allow",
            kind: Kind::CidrList,
            default: "",
            example: "[\"10.0.0.0/8\", \"192.168.0.0/16\"]",
            help: "Networks also allowed to sync without TLS when plaintext = \"loopback\".",
            set: setter!(sync.plaintext_allow, Cidrs),
        },
        Key {
            name: "idle_timeout_secs",
            kind: Kind::Int { min: 61, max: 86400 },
            default: "180",
            example: "",
            help: "A sync connection with no frame for this long is closed (the client pings every 60 s).",
            set: setter!(sync.idle_timeout_secs, Int, u64),
        },
        Key {
            name: "handshake_timeout_secs",
            kind: Kind::Int { min: 1, max: 300 },
            default: "15",
            example: "",
            help: "Time a new connection has for its first byte, for the TLS handshake, and for its AUTH frame.",
            set: setter!(sync.handshake_timeout_secs, Int, u64),
        },
        Key {
            name: "max_connections",
            kind: Kind::Int { min: 1, max: 1_000_000 },
            default: "1024",
            example: "",
            help: "Concurrent sync connections (each daemon opens one per provider). Over the cap a client is answered AUTH_ERR \"server busy\"; beyond twice the cap connections are closed unanswered.",
            set: setter!(sync.max_connections, Int, usize),
        },
        Key {
            name: "max_connections_per_ip",
            kind: Kind::Int { min: 1, max: 1_000_000 },
            default: "128",
            example: "",
            help: "Concurrent sync connections from one address (IPv6: one /64), answered like max_connections beyond it. The default leaves room for a dozen machines behind one NAT with a few providers each, twice over (a machine that lost its network reconnects before its old connection times out). server.trusted_proxies are exempt.",
            set: setter!(sync.max_connections_per_ip, Int, usize),
        },
        Key {
            name: "max_frame_bytes",
            kind: Kind::Int { min: 65536, max: 16_777_216 },
            default: "16777216",
            example: "",
            help: "Largest frame payload accepted (the protocol's limit is 16 MiB); a larger announced length closes the connection.",
            set: setter!(sync.max_frame_bytes, Int, usize),
        },
        Key {
            name: "max_decompressed_bytes",
            kind: Kind::Int { min: 1_048_576, max: 268_435_456 },
            default: "67108864",
            example: "",
            help: "Largest decompressed SYNC_BATCH_ZSTD payload (64 MiB); beyond it the batch is refused.",
            set: setter!(sync.max_decompressed_bytes, Int, usize),
        },
        Key {
            name: "sync_err_delay_secs",
            kind: Kind::Int { min: 0, max: 60 },
            default: "3",
            example: "",
            help: "Pause before a SYNC_ERR (storage trouble), so clients that retry at once do not spin.",
            set: setter!(sync.sync_err_delay_secs, Int, u64),
        },
    ],
};

//! `[server]`: Listeners and public address.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use std::net::IpAddr;

use super::Config;
use super::key::{Key, Kind, Parsed, Section};
use crate::net::Cidr;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub bind: IpAddr,
    pub http_port: u16,
    pub sync_port: u16,
    /// The HTTPS listener's port, when there is one.
    pub https_port: Option<u16>,
    /// Plain HTTP from the network is answered with a redirect to HTTPS.
    pub redirect_http_to_https: bool,
    /// Public base URL without a trailing slash (`https://toki.example.com`).
    pub external_url: Option<String>,
    /// Peers whose `X-Forwarded-For` header is believed.
    pub trusted_proxies: Vec<Cidr>,
    pub shutdown_grace_secs: u64,
}

impl ServerConfig {
    /// Whether `ip` is one of `trusted_proxies` (which carry many clients' connections).
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

/// Placeholders only: [`Config::defaults`] sets every key from its entry below.
impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            http_port: 0,
            sync_port: 0,
            https_port: None,
            redirect_http_to_https: false,
            external_url: None,
            trusted_proxies: Vec::new(),
            shutdown_grace_secs: 0,
        }
    }
}

pub(super) const SECTION: Section = Section {
    name: "server",
    help: "Listeners and public address.",
    keys: &[
        Key {
            name: "bind",
            kind: Kind::Ip,
            default: "0.0.0.0",
            example: "",
            help: "IP address both listeners bind to (\"::\" for all IPv6 and IPv4 addresses).",
            set: setter!(server.bind, Ip),
        },
        Key {
            name: "http_port",
            kind: Kind::Int { min: 0, max: 65535 },
            default: "9091",
            example: "",
            help: "HTTP port: JSON API, device login and pages. 0 picks a free port (tests).",
            set: setter!(server.http_port, Int, u16),
        },
        Key {
            name: "sync_port",
            kind: Kind::Int { min: 0, max: 65535 },
            default: "9090",
            example: "",
            help: "TCP sync port for toki daemons (TLS and plaintext on one port). 0 picks a free port.",
            set: setter!(server.sync_port, Int, u16),
        },
        Key {
            name: "https_port",
            kind: Kind::OptPort,
            default: "",
            example: "443",
            help: "HTTPS port: the same API and pages as http_port, over TLS with HTTP/2 and HTTP/1.1, with the sync port's certificate (tls.cert_file, [acme], or the generated one). 0 picks a free port. Unset: no HTTPS listener, or 443 when [acme] domains are set.",
            set: |c: &mut Config, p: Parsed| {
                if let Parsed::OptStr(v) = p {
                    c.server.https_port = v.and_then(|s| s.parse().ok())
                }
            },
        },
        Key {
            name: "redirect_http_to_https",
            kind: Kind::Bool,
            default: "false",
            example: "",
            help: "Answer plain-HTTP requests from the network with a 308 redirect to https_port (loopback clients, a trusted proxy saying X-Forwarded-Proto: https, and ACME HTTP-01 challenges are still served). Needs https_port.",
            set: setter!(server.redirect_http_to_https, Bool),
        },
        Key {
            name: "external_url",
            kind: Kind::Url,
            default: "",
            example: "\"https://toki.example.com\"",
            help: "Public base URL of the HTTP side, used in links handed to clients (device login).",
            set: setter!(server.external_url, OptStr),
        },
        Key {
            name: "trusted_proxies",
            kind: Kind::CidrList,
            default: "",
            example: "[\"127.0.0.1\", \"10.0.0.0/8\"]",
            help: "Reverse proxies whose X-Forwarded-For header gives the client address (IPs or CIDRs).",
            set: setter!(server.trusted_proxies, Cidrs),
        },
        Key {
            name: "shutdown_grace_secs",
            kind: Kind::Int { min: 1, max: 3600 },
            default: "30",
            example: "",
            help: "On SIGINT/SIGTERM, how long in-flight requests may take to finish.",
            set: setter!(server.shutdown_grace_secs, Int, u64),
        },
    ],
};

//! `[tls]`: TLS for the sync port.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use std::path::PathBuf;

use super::Config;
use super::key::{Key, Kind, Parsed, Section};

#[derive(Clone, Debug, Default)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

pub(super) const SECTION: Section = Section {
    name: "tls",
    help: "TLS for the sync port.",
    keys: &[
        Key {
            name: "cert_file",
            kind: Kind::OptPath,
            default: "",
            example: "\"/etc/toki-sync/cert.pem\"",
            help: "PEM certificate chain for the sync port's TLS. Unset: a self-signed certificate is generated into <data_dir>/tls/ on first start and reused (and generated anew when it no longer covers the current names).",
            set: setter!(tls.cert_file, OptPath),
        },
        Key {
            name: "key_file",
            kind: Kind::OptPath,
            default: "",
            example: "\"/etc/toki-sync/key.pem\"",
            help: "PEM private key for cert_file.",
            set: setter!(tls.key_file, OptPath),
        },
    ],
};

//! `[acme]`: Certificates from Let's Encrypt (or another ACME CA), obtained and renewed automatically.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries.

use std::path::PathBuf;

use super::key::{Key, Kind, Parsed, Section};
use super::{Config, ConfigError};

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Which challenge proves control of the domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// TLS-ALPN-01 on the HTTPS port when it is 443, else HTTP-01 when the HTTP port is 80, else
    /// TLS-ALPN-01 (a port forward from 443 is assumed).
    Auto,
    TlsAlpn01,
    Http01,
}

#[derive(Clone, Debug)]
pub struct AcmeConfig {
    /// Empty: ACME is off.
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory_url: String,
    pub staging: bool,
    pub challenge: AcmeChallenge,
    /// Trusted instead of the public roots when talking to the directory.
    pub ca_file: Option<PathBuf>,
    pub renew_before_days: u64,
}

/// Placeholders only: [`Config::defaults`] sets every key from its entry below.
impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            domains: Vec::new(),
            email: None,
            directory_url: String::new(),
            staging: false,
            challenge: AcmeChallenge::Auto,
            ca_file: None,
            renew_before_days: 0,
        }
    }
}

impl AcmeConfig {
    pub fn enabled(&self) -> bool {
        !self.domains.is_empty()
    }

    /// The directory actually used: staging when asked for and no other directory is set.
    pub fn directory(&self) -> &str {
        if self.staging { LETS_ENCRYPT_STAGING } else { &self.directory_url }
    }
}

pub(super) const SECTION: Section = Section {
    name: "acme",
    help: "Certificates from Let's Encrypt (or another ACME CA), obtained and renewed automatically.",
    keys: &[
        Key {
            name: "domains",
            kind: Kind::StrList,
            default: "",
            example: "[\"toki.example.com\"]",
            help: "DNS names to get one certificate for, served on server.https_port and the sync port. The names must point at this machine, reachable from the internet on port 443 (server.https_port, which defaults to 443 with ACME) or port 80 for HTTP-01. Setting it agrees to the CA's terms of service. Empty: ACME is off.",
            set: setter!(acme.domains, Strs),
        },
        Key {
            name: "email",
            kind: Kind::OptStr,
            default: "",
            example: "\"admin@example.com\"",
            help: "Contact address given to the CA (expiry warnings, policy changes). Optional.",
            set: setter!(acme.email, OptStr),
        },
        Key {
            name: "directory_url",
            kind: Kind::Url,
            default: LETS_ENCRYPT,
            example: "",
            help: "The CA's ACME directory. Defaults to Let's Encrypt production; see staging.",
            set: |c: &mut Config, p: Parsed| {
                if let Parsed::OptStr(v) = p {
                    c.acme.directory_url = v.unwrap_or_default()
                }
            },
        },
        Key {
            name: "staging",
            kind: Kind::Bool,
            default: "false",
            example: "",
            help: "Use Let's Encrypt's staging directory (untrusted certificates, generous rate limits) to try a setup out.",
            set: setter!(acme.staging, Bool),
        },
        Key {
            name: "challenge",
            kind: Kind::Enum(&["auto", "tls-alpn-01", "http-01"]),
            default: "auto",
            example: "",
            help: "How control of the domains is proven: \"tls-alpn-01\" on the HTTPS port, \"http-01\" on the HTTP port (the CA connects to port 80), or \"auto\": tls-alpn-01 unless http_port is 80 and https_port is not 443.",
            set: |c: &mut Config, p: Parsed| {
                if let Parsed::Str(v) = p {
                    c.acme.challenge = match v.as_str() {
                        "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
                        "http-01" => AcmeChallenge::Http01,
                        _ => AcmeChallenge::Auto,
                    }
                }
            },
        },
        Key {
            name: "ca_file",
            kind: Kind::OptPath,
            default: "",
            example: "\"/etc/toki-sync/acme-ca.pem\"",
            help: "PEM CA certificate(s) trusted, instead of the public roots, for the directory's own HTTPS (a private ACME CA such as step-ca).",
            set: setter!(acme.ca_file, OptPath),
        },
        Key {
            name: "renew_before_days",
            kind: Kind::Int { min: 1, max: 60 },
            default: "30",
            example: "",
            help: "Renew this many days before the certificate expires. A failed renewal keeps the current certificate and is retried with back-off.",
            set: setter!(acme.renew_before_days, Int, u64),
        },
    ],
};

/// The checks that span keys.
pub(super) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let a = &cfg.acme;
    let err = |m: String| Err(ConfigError(m));
    if !a.enabled() {
        if a.email.is_some() || a.ca_file.is_some() || a.staging {
            return err("`acme.email`, `acme.ca_file` or `acme.staging` is set but `acme.domains` is empty; list the domains to get a certificate for, e.g. domains = [\"toki.example.com\"]".into());
        }
        return Ok(());
    }
    if cfg.tls.cert_file.is_some() {
        return err("`acme.domains` and `tls.cert_file` are both set; the certificate comes from one of them, so remove one".into());
    }
    if a.staging && a.directory_url != LETS_ENCRYPT {
        return err(format!(
            "`acme.staging` and `acme.directory_url` ({}) are both set; choose one",
            a.directory_url
        ));
    }
    for d in &a.domains {
        if d.starts_with("*.") {
            return err(format!(
                "`acme.domains`: `{d}` is a wildcard, which needs a DNS-01 challenge; list the names themselves"
            ));
        }
        let dns =
            rustls_pki_types::DnsName::try_from(d.as_str()).is_ok() && d.parse::<std::net::IpAddr>().is_err();
        if !dns {
            return err(format!("`acme.domains`: `{d}` is not a DNS name"));
        }
    }
    if let Some(email) = &a.email {
        let (user, host) = email.split_once('@').unwrap_or(("", ""));
        if user.is_empty() || host.is_empty() || email.contains(char::is_whitespace) {
            return err(format!("`acme.email`: `{email}` is not an email address"));
        }
    }
    Ok(())
}

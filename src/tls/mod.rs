//! TLS for the sync port and the HTTPS listener: one certificate, presented by both.
//!
//! - `files.rs`: a configured PEM pair, or the self-signed one generated into `<data_dir>/tls/`.
//! - `certs.rs`: the certificate being served ([`Certs`]), swapped without a restart (a renewal,
//!   a changed file), and the TLS-ALPN-01 / HTTP-01 answers while an ACME order is validated.
//! - `reload.rs`: watches configured certificate files and loads them again when they change.
//!
//! rustls with the ring provider only; TLS 1.2 and 1.3 (the client on macOS speaks 1.2 at most).

pub mod certs;
pub mod files;
pub mod reload;

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

pub use certs::{Certs, Served};

/// Installs ring as rustls' process-wide provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// SHA-256 of a certificate, `AB:CD:…`, for pinning and for users to compare.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// What is known of a served certificate, for logs, `/admin/server-info` and renewal timing.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub fingerprint: String,
    /// The DNS names and IP addresses it is valid for.
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub issuer: String,
}

impl CertInfo {
    pub fn of(leaf: &CertificateDer<'_>) -> Result<CertInfo, String> {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, cert) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => {
                            names.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string())
                        }
                        16 => names
                            .push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        Ok(CertInfo {
            fingerprint: fingerprint(leaf),
            names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            issuer: cert.issuer().to_string(),
        })
    }

    /// Whether every one of `domains` is among the certificate's names (exactly, ignoring case).
    pub fn covers(&self, domains: &[String]) -> bool {
        domains.iter().all(|d| self.names.iter().any(|n| n.eq_ignore_ascii_case(d)))
    }
}

/// A certificate chain and its key from PEM, checked to belong together, ready to serve.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<(Arc<CertifiedKey>, CertInfo), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a valid PEM certificate chain: {e}"))?;
    let leaf = certs.first().ok_or("the file holds no certificate")?;
    let info = CertInfo::of(leaf)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("not a valid PEM private key: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| format!("the certificate and the key do not work together: {e}"))?;
    Ok((Arc::new(certified), info))
}

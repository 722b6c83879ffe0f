//! TLS for the sync port: a configured PEM certificate, or a self-signed one generated on first
//! start into `<data_dir>/tls/` and reused. rustls with the ring provider only; TLS 1.2 and 1.3
//! (the client on macOS speaks 1.2 at most); no ALPN, no client certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;

pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, `AB:CD:…`, for pinning and for users to compare.
    pub fingerprint: String,
    pub cert_path: PathBuf,
    pub generated: bool,
}

/// Installs ring as rustls' process-wide provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Loads the configured certificate, or the generated one (creating it if needed).
pub fn load(config: &Config) -> Result<Tls, String> {
    let (cert_path, key_path, generated) = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ => {
            let (c, k) = self_signed_paths(&config.storage.data_dir);
            if !c.exists() || !k.exists() {
                generate(config, &c, &k)?;
            } else if let Some(missing) = names_not_covered(config, &c) {
                // `server.external_url`, the host name or the bind address changed since the
                // certificate was made. Only a generated certificate is ever replaced.
                tracing::warn!(
                    cert = %c.display(),
                    missing = ?missing,
                    "the generated TLS certificate is not valid for every current name; generating a new one (its fingerprint changes)"
                );
                generate(config, &c, &k)?;
            }
            (c, k, true)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {} is not valid PEM: {e}", cert_path.display()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| format!("TLS certificate file {} holds no certificate", cert_path.display()))?;
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read TLS private key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "TLS certificate {} and key {} do not work together: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    Ok(Tls { config: Arc::new(server), fingerprint, cert_path, generated })
}

/// For `config check`: loads the configured certificate and key as `serve` would (readable,
/// valid PEM, key matching the certificate) and describes them; `None` when no certificate is
/// configured (serve then uses the generated one). Creates nothing.
pub fn check_configured(config: &Config) -> Result<Option<String>, String> {
    if config.tls.cert_file.is_none() {
        return Ok(None);
    }
    let tls = load(config)?;
    Ok(Some(format!("{} (SHA-256 fingerprint {})", tls.cert_path.display(), tls.fingerprint)))
}

/// The current subject names that the certificate in `cert_path` does not cover; `None` when it
/// covers all (or cannot be read, which `load` then reports).
fn names_not_covered(config: &Config, cert_path: &Path) -> Option<Vec<String>> {
    let der = CertificateDer::pem_file_iter(cert_path).ok()?.next()?.ok()?;
    let parsed = rustls::server::ParsedCertificate::try_from(&der).ok()?;
    let missing: Vec<String> = subject_names(config)
        .into_iter()
        .filter(|name| {
            // A name that is neither a DNS name nor an IP address cannot be checked (nor used
            // by a client); it does not force a new certificate.
            rustls_pki_types::ServerName::try_from(name.as_str())
                .is_ok_and(|sn| rustls::client::verify_server_name(&parsed, &sn).is_err())
        })
        .collect();
    (!missing.is_empty()).then_some(missing)
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Names the generated certificate is valid for: loopback, this host's name, and the host of
/// `server.external_url`.
fn subject_names(config: &Config) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    if let Some(url) = &config.server.external_url {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority),
        };
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    if !config.server.bind.is_unspecified() {
        names.push(config.server.bind.to_string());
    }
    names.sort();
    names.dedup();
    names
}

fn generate(config: &Config, cert_path: &Path, key_path: &Path) -> Result<(), String> {
    let names = subject_names(config);
    let mut params = rcgen::CertificateParams::new(names.clone())
        .map_err(|e| format!("certificate names {names:?}: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "toki-sync self-signed");
    let key = rcgen::KeyPair::generate().map_err(|e| format!("generating a TLS key: {e}"))?;
    let cert = params.self_signed(&key).map_err(|e| format!("generating a TLS certificate: {e}"))?;
    let dir = cert_path.parent().expect("tls dir");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    tracing::info!(cert = %cert_path.display(), names = ?names, "generated a self-signed TLS certificate for the sync port");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, external_url: Option<&str>) -> Config {
        let mut c = Config::defaults();
        c.storage.data_dir = dir.to_owned();
        c.server.external_url = external_url.map(str::to_owned);
        c
    }

    #[test]
    fn a_generated_certificate_follows_the_external_url_and_a_configured_one_is_never_touched() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let first = load(&config(dir.path(), Some("https://old.example.com"))).unwrap();
        assert!(first.generated);
        let again = load(&config(dir.path(), Some("https://old.example.com"))).unwrap();
        assert_eq!(again.fingerprint, first.fingerprint, "reused while its names still match");
        let moved = load(&config(dir.path(), Some("https://new.example.com:8443/"))).unwrap();
        assert_ne!(moved.fingerprint, first.fingerprint, "regenerated for the new host");
        let (cert, _) = self_signed_paths(dir.path());
        assert!(names_not_covered(&config(dir.path(), Some("https://new.example.com")), &cert).is_none());
        assert_eq!(
            names_not_covered(&config(dir.path(), Some("https://old.example.com")), &cert),
            Some(vec!["old.example.com".to_owned()])
        );

        // The same files, configured: used as they are, whatever the names.
        let (cert, key) = self_signed_paths(dir.path());
        let before = std::fs::read(&cert).unwrap();
        let mut c = config(dir.path(), Some("https://elsewhere.example.com"));
        c.tls.cert_file = Some(cert.clone());
        c.tls.key_file = Some(key);
        let configured = load(&c).unwrap();
        assert!(!configured.generated);
        assert_eq!(configured.fingerprint, moved.fingerprint);
        assert_eq!(std::fs::read(&cert).unwrap(), before);
        assert!(check_configured(&c).unwrap().unwrap().contains(&moved.fingerprint));
    }

    #[test]
    fn check_configured_reports_missing_broken_and_mismatched_files() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(check_configured(&config(d, None)).unwrap(), None, "nothing configured, nothing made");
        assert!(!d.join("tls").exists());
        let mut c = config(d, None);
        c.tls.cert_file = Some(d.join("missing.pem"));
        c.tls.key_file = Some(d.join("missing-key.pem"));
        let e = check_configured(&c).unwrap_err();
        assert!(e.contains("cannot read TLS certificate") && e.contains("missing.pem"), "{e}");

        // Two generated pairs: the key of one does not match the certificate of the other.
        let (a, b) = (d.join("a"), d.join("b"));
        load(&config(&a, None)).unwrap();
        load(&config(&b, None)).unwrap();
        c.tls.cert_file = Some(self_signed_paths(&a).0);
        c.tls.key_file = Some(self_signed_paths(&b).1);
        let e = check_configured(&c).unwrap_err();
        assert!(e.contains("do not work together"), "{e}");

        std::fs::write(d.join("garbage.pem"), "not a certificate").unwrap();
        c.tls.cert_file = Some(d.join("garbage.pem"));
        let e = check_configured(&c).unwrap_err();
        assert!(e.contains("garbage.pem"), "{e}");
    }
}

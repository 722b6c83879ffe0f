//! Certificate files: a configured PEM pair (`tls.cert_file`/`tls.key_file`), or a self-signed
//! certificate generated on first start into `<data_dir>/tls/` and reused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::CertInfo;
use crate::config::Config;

/// A certificate read from files, ready to serve.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The self-signed certificate this server generated (not a configured one).
    pub generated: bool,
}

pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Loads the configured certificate, or the generated one (creating it if needed).
pub fn load(config: &Config) -> Result<Loaded, String> {
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
    let (key, info) = load_pair(&cert_path, &key_path)?;
    Ok(Loaded { key, info, cert_path, key_path, generated })
}

/// Reads and checks one certificate file and its key file.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<(Arc<CertifiedKey>, CertInfo), String> {
    let cert_pem = std::fs::read(cert_path)
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert_path.display()))?;
    let key_pem = std::fs::read(key_path)
        .map_err(|e| format!("cannot read TLS private key {}: {e}", key_path.display()))?;
    super::certified_key(&cert_pem, &key_pem)
        .map_err(|e| format!("TLS certificate {} with key {}: {e}", cert_path.display(), key_path.display()))
}

/// For `config check`: loads the configured certificate and key as `serve` would (readable,
/// valid PEM, key matching the certificate) and describes them; `None` when no certificate is
/// configured (serve then uses the generated one). Creates nothing.
pub fn check_configured(config: &Config) -> Result<Option<String>, String> {
    if config.tls.cert_file.is_none() {
        return Ok(None);
    }
    let tls = load(config)?;
    Ok(Some(format!("{} (SHA-256 fingerprint {})", tls.cert_path.display(), tls.info.fingerprint)))
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

/// Names the generated certificate is valid for: loopback, this host's name, the host of
/// `server.external_url` and the ACME domains.
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
    // While the first ACME certificate is on its way, this one stands in for it.
    names.extend(config.acme.domains.iter().map(|d| d.to_ascii_lowercase()));
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
    tracing::info!(cert = %cert_path.display(), names = ?names, "generated a self-signed TLS certificate");
    Ok(())
}

/// Writes a file only its owner can read (mode 0600), all at once: into a temporary file that is
/// synced and then renamed over `path`, so a reader (the server, after a crash) sees the old
/// content or the new, never half of it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(failed)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
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
        crate::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let first = load(&config(dir.path(), Some("https://old.example.com"))).unwrap();
        assert!(first.generated);
        let again = load(&config(dir.path(), Some("https://old.example.com"))).unwrap();
        assert_eq!(again.info.fingerprint, first.info.fingerprint, "reused while its names still match");
        let moved = load(&config(dir.path(), Some("https://new.example.com:8443/"))).unwrap();
        assert_ne!(moved.info.fingerprint, first.info.fingerprint, "regenerated for the new host");
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
        assert_eq!(configured.info.fingerprint, moved.info.fingerprint);
        assert_eq!(std::fs::read(&cert).unwrap(), before);
        assert!(check_configured(&c).unwrap().unwrap().contains(&moved.info.fingerprint));
    }

    #[test]
    fn check_configured_reports_missing_broken_and_mismatched_files() {
        crate::tls::install_crypto_provider();
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

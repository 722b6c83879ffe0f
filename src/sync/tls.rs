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

//! What ACME keeps in the data directory, in `<data_dir>/acme/` (mode 0700), every file mode
//! 0600: the account key (`account-<directory>.json`, one per directory, so switching between
//! staging and production does not mix accounts), the certificate chain (`cert.pem`) and its key
//! (`key.pem`). Files are replaced whole (written aside, then renamed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::tls::CertInfo;
use crate::tls::files::write_private;

pub struct AcmeFiles {
    dir: PathBuf,
}

impl AcmeFiles {
    pub fn new(data_dir: &Path) -> AcmeFiles {
        AcmeFiles { dir: data_dir.join("acme") }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    pub fn account_path(&self, directory_url: &str) -> PathBuf {
        let id: String =
            Sha256::digest(directory_url.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("account-{id}.json"))
    }

    fn ensure_dir(&self) -> Result<(), String> {
        if !self.dir.exists() {
            crate::bootstrap::create_private_dir(&self.dir)
                .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        }
        Ok(())
    }

    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), String> {
        self.ensure_dir()?;
        write_private(path, bytes)
    }

    /// The stored certificate, if there is one that loads. One that does not is reported and
    /// then ordered anew.
    pub fn load_cert(&self) -> Option<(Arc<CertifiedKey>, CertInfo)> {
        let (cert, key) = (self.cert_path(), self.key_path());
        if !cert.exists() {
            return None;
        }
        match crate::tls::files::load_pair(&cert, &key) {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::warn!(error = %e, "the stored ACME certificate does not load; ordering a new one");
                None
            }
        }
    }

    /// Stores a new certificate: the key first, so a crash in between leaves a pair that does
    /// not load (and is ordered again) rather than a certificate with the wrong key served.
    pub fn store_cert(&self, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        self.write(&self.key_path(), key_pem.as_bytes())?;
        self.write(&self.cert_path(), chain_pem.as_bytes())
    }
}

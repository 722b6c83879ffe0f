//! The certificate both TLS listeners present, and the ACME challenge answers.
//!
//! The sync port and the HTTPS listener share one [`Certs`]: rustls asks it for the certificate
//! at every handshake, so a renewed or reloaded certificate is served from the next connection
//! on, without a restart and without touching connections already open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::CertInfo;

/// The ALPN protocol of a TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate being served and what is known of it.
pub struct Served {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    /// Where it comes from: "acme", "files" or "self-signed".
    pub source: &'static str,
}

/// How certificate renewal is going, for `/admin/server-info` (ACME only).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RenewalStatus {
    /// `waiting` (until the renewal time), `ordering`, or `retrying` after a failure.
    pub state: &'static str,
    /// Unix seconds.
    pub next_attempt: Option<i64>,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub failures: u32,
}

pub struct Certs {
    current: RwLock<Arc<Served>>,
    /// TLS-ALPN-01 challenge certificates by domain (lowercase), while an order is validated.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01: token → key authorization, while an order is validated.
    http: Mutex<HashMap<String, String>>,
    renewal: Mutex<Option<RenewalStatus>>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").field("fingerprint", &self.current().info.fingerprint).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Certs {
    pub fn new(served: Served) -> Arc<Certs> {
        Arc::new(Certs {
            current: RwLock::new(Arc::new(served)),
            alpn: Mutex::new(HashMap::new()),
            http: Mutex::new(HashMap::new()),
            renewal: Mutex::new(None),
        })
    }

    pub fn current(&self) -> Arc<Served> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Serves `served` from the next handshake on.
    pub fn replace(&self, served: Served) {
        tracing::info!(
            fingerprint = %served.info.fingerprint,
            names = ?served.info.names,
            source = served.source,
            "TLS certificate now served on the sync port and the HTTPS listener"
        );
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(served);
    }

    pub fn set_alpn_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        lock(&self.alpn).insert(domain.to_ascii_lowercase(), key);
    }

    pub fn set_http_challenge(&self, token: &str, key_authorization: String) {
        lock(&self.http).insert(token.to_owned(), key_authorization);
    }

    /// Forgets every challenge answer (the order is over, whatever its outcome).
    pub fn clear_challenges(&self) {
        lock(&self.alpn).clear();
        lock(&self.http).clear();
    }

    /// The key authorization for an HTTP-01 token, while its order is being validated.
    pub fn http_challenge(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    pub fn renewal(&self) -> Option<RenewalStatus> {
        lock(&self.renewal).clone()
    }

    pub fn set_renewal(&self, status: RenewalStatus) {
        *lock(&self.renewal) = Some(status);
    }

    /// The sync port's TLS: no ALPN (the toki client offers none).
    pub fn sync_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        Arc::new(self.server_config(Vec::new()))
    }

    /// The HTTPS listener's TLS: HTTP/2 and HTTP/1.1 by ALPN, and TLS-ALPN-01 validations.
    pub fn https_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        Arc::new(self.server_config(vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()]))
    }

    fn server_config(self: &Arc<Self>, alpn: Vec<Vec<u8>>) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn;
        config
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if validation {
            // Only the challenge certificate may answer a validation; with none (no order in
            // progress, or another name) the handshake fails, as RFC 8737 asks.
            let name = hello.server_name()?.to_ascii_lowercase();
            return lock(&self.alpn).get(&name).cloned();
        }
        Some(Arc::clone(&self.current().key))
    }
}

//! The one outbound HTTP client for talking to other services (the OpenID Connect provider, the
//! ACME directory, a server being backed up): ureq, blocking, never following redirects (a 3xx
//! is an answer the caller refuses), with a timeout per request and a cap on the response size.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A request and its answer, bodies whole.
pub type HttpRequest = ureq::http::Request<Vec<u8>>;
pub type HttpResponse = ureq::http::Response<Vec<u8>>;

#[derive(Clone)]
pub struct Outbound {
    agent: ureq::Agent,
    max_bytes: u64,
}

#[derive(Debug)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// TLS settings trusting only the PEM certificates in `path` (a private CA), instead of the
/// public roots.
pub fn trusting(path: &Path) -> Result<ureq::tls::TlsConfig, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs))).build())
}

impl Outbound {
    /// `ca_file`: trust these certificates instead of the public roots.
    pub fn new(timeout: Duration, max_bytes: u64, ca_file: Option<&Path>) -> Result<Outbound, String> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5).min(timeout)))
            .timeout_global(Some(timeout))
            .user_agent(concat!("toki-sync/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            config = config.tls_config(trusting(path)?);
        }
        Ok(Outbound { agent: config.build().into(), max_bytes })
    }

    /// Sends one request and reads the whole answer (any status but a redirect), at most the
    /// size cap. Blocking: call it on the blocking pool.
    pub fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let result = if body.is_empty() {
            self.agent.run(ureq::http::Request::from_parts(parts, ()))
        } else {
            self.agent.run(ureq::http::Request::from_parts(parts, body))
        };
        let mut resp = result.map_err(|e| HttpError(format!("request to {url} failed: {e}")))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(self.max_bytes)
            .read_to_vec()
            .map_err(|e| HttpError(format!("reading the answer of {url}: {e}")))?;
        if status.is_redirection() {
            return Err(HttpError(format!(
                "{url} answered with a redirect ({status}), which is not followed"
            )));
        }
        let mut out = ureq::http::Response::new(bytes);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

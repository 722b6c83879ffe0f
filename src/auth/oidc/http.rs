//! The one HTTP function the OpenID Connect client uses (discovery, keys, code exchange,
//! userinfo): ureq, blocking, never following redirects (a 3xx is an answer the caller refuses),
//! with a timeout per request and a cap on the response size.

use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};

/// Discovery documents, key sets and token responses are a few KiB; anything larger is refused.
pub const MAX_RESPONSE_BYTES: u64 = 512 * 1024;

#[derive(Clone)]
pub struct ProviderHttp {
    agent: ureq::Agent,
}

#[derive(Debug)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

impl ProviderHttp {
    pub fn new(timeout: Duration) -> ProviderHttp {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5).min(timeout)))
            .timeout_global(Some(timeout))
            .user_agent(concat!("toki-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        ProviderHttp { agent }
    }

    /// Sends one request and reads the whole answer (any status), at most
    /// [`MAX_RESPONSE_BYTES`]. Blocking: call it on the blocking pool.
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
            .limit(MAX_RESPONSE_BYTES)
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

impl openidconnect::SyncHttpClient for ProviderHttp {
    type Error = HttpError;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.send(request)
    }
}

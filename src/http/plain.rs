//! What is answered before routing: ACME HTTP-01 challenges (on either port), and, with
//! `server.redirect_http_to_https`, the redirect from plain HTTP to the HTTPS listener.
//!
//! The plain port stays usable from loopback (the admin CLI, a local proxy, health checks) and
//! for a trusted reverse proxy that terminated TLS itself (`X-Forwarded-Proto: https`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, LOCATION};
use hyper::{Method, Response, StatusCode};

use super::error::ApiError;
use super::request::client_ip;
use super::response::HttpResponse;
use crate::app::App;
use crate::net::is_loopback;

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

pub fn before_routing(
    app: &Arc<App>,
    peer: SocketAddr,
    secure: bool,
    req: &hyper::Request<Incoming>,
) -> Option<Result<HttpResponse, ApiError>> {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        return Some(http_challenge(app, token));
    }
    let server = &app.config.server;
    if secure || !server.redirect_http_to_https {
        return None;
    }
    let forwarded_https = server.is_trusted_proxy(peer.ip())
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim() == "https");
    if forwarded_https || is_loopback(client_ip(peer.ip(), req.headers(), &server.trusted_proxies)) {
        return None;
    }
    Some(redirect(app, req))
}

fn http_challenge(app: &App, token: &str) -> Result<HttpResponse, ApiError> {
    let answer = app.certs.as_ref().and_then(|c| c.http_challenge(token));
    let Some(key_authorization) = answer else {
        return Err(ApiError::not_found("no such ACME challenge"));
    };
    tracing::info!(token, "answered an ACME HTTP-01 challenge");
    let mut resp = Response::new(Full::new(Bytes::from(key_authorization)));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(resp)
}

/// 308 keeps the method and body (a POST stays a POST); browsers and the toki client follow it.
fn redirect(app: &App, req: &hyper::Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let server = &app.config.server;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let base = match server.external_url.as_deref().filter(|u| u.starts_with("https://")) {
        Some(url) => url.to_owned(),
        None => {
            let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).and_then(host_name).ok_or_else(
                || {
                    ApiError::bad_request(
                        "plain HTTP is redirected to HTTPS, which needs a valid Host header",
                    )
                },
            )?;
            match server.https_port {
                Some(443) | None => format!("https://{host}"),
                Some(port) => format!("https://{host}:{port}"),
            }
        }
    };
    let location = HeaderValue::try_from(format!("{base}{path}"))
        .map_err(|_| ApiError::bad_request("the request URI cannot be redirected"))?;
    let mut resp = ApiError::new(StatusCode::PERMANENT_REDIRECT, "use HTTPS").into_response();
    resp.headers_mut().insert(LOCATION, location);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        tracing::info!(method = %req.method(), path, "plain-HTTP request redirected to HTTPS; its body crossed the network unencrypted");
    }
    Ok(resp)
}

/// The host of a Host header without its port, if it is a plausible name or address.
fn host_name(header: &str) -> Option<&str> {
    let header = header.trim();
    let host = if header.starts_with('[') {
        &header[..=header.find(']')?]
    } else {
        header
            .rsplit_once(':')
            .map_or(header, |(h, port)| if port.parse::<u16>().is_ok() { h } else { header })
    };
    let ok = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_lose_their_port_and_junk_is_refused() {
        assert_eq!(host_name("toki.example.com"), Some("toki.example.com"));
        assert_eq!(host_name("toki.example.com:9091"), Some("toki.example.com"));
        assert_eq!(host_name("[2001:db8::1]:80"), Some("[2001:db8::1]"));
        assert_eq!(host_name("10.0.0.5:80"), Some("10.0.0.5"));
        assert_eq!(host_name("evil.com/path"), None);
        assert_eq!(host_name("a b"), None);
        assert_eq!(host_name(""), None);
    }
}

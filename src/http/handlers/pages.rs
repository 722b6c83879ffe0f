//! The browser pages and their scripts and styles, compiled into the binary from `assets/`.
//!
//! Pages get a strict Content-Security-Policy: scripts, styles and requests only from this
//! server, no inline code, no framing. Files carry an ETag (their SHA-256) and are revalidated on
//! each use, so an upgraded server never serves stale scripts.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, LOCATION,
};
use hyper::{Response, StatusCode};
use rust_embed::RustEmbed;

use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::HttpResponse;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Serves one embedded file, or 304 when the browser's copy is current.
fn serve(name: &str, req: &Request) -> Result<HttpResponse, ApiError> {
    let file = Assets::get(name).ok_or_else(|| ApiError::not_found("not found"))?;
    let etag: String = file.metadata.sha256_hash()[..16].iter().map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{etag}\"");
    let fresh = req
        .headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (StatusCode::OK, Bytes::from(file.data.into_owned()))
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    Ok(resp)
}

fn redirect(location: &str) -> Result<HttpResponse, ApiError> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    let value = HeaderValue::from_str(location)
        .map_err(|e| ApiError::internal(format!("bad redirect target: {e}")))?;
    resp.headers_mut().insert(LOCATION, value);
    Ok(resp)
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode_query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /`
pub fn root() -> Result<HttpResponse, ApiError> {
    redirect("/dashboard")
}

/// `GET /login`. With `?device=CODE` (a toki client whose server gave no verification URL opens
/// `/login?device=CODE`) it is the device page.
pub fn login(req: &Request) -> Result<HttpResponse, ApiError> {
    match req.query("device") {
        Some(code) => redirect(&format!("/device?device={}", encode_query_value(&code))),
        None => serve("login.html", req),
    }
}

/// `GET /device`, `GET /login/device`
pub fn device(req: &Request) -> Result<HttpResponse, ApiError> {
    serve("device.html", req)
}

/// `GET /dashboard`
pub fn dashboard(req: &Request) -> Result<HttpResponse, ApiError> {
    serve("dashboard.html", req)
}

/// `GET /assets/NAME`
pub fn asset(name: &str, req: &Request) -> Result<HttpResponse, ApiError> {
    serve(name, req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query_value("ABCD-EFGH"), "ABCD-EFGH");
        assert_eq!(encode_query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn every_asset_has_a_known_type() {
        for name in Assets::iter() {
            assert_ne!(content_type(&name), "application/octet-stream", "{name}");
        }
    }
}

//! Building responses, and the headers every response carries.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub type HttpResponse = Response<Full<Bytes>>;

pub fn json(status: StatusCode, value: &impl Serialize) -> HttpResponse {
    let body =
        serde_json::to_vec(value).unwrap_or_else(|_| b"{\"error\":\"internal server error\"}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON body that is already encoded (passed on from VictoriaMetrics).
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn ok(value: &impl Serialize) -> HttpResponse {
    json(StatusCode::OK, value)
}

/// Security headers, applied to every response in one place. A handler that serves a page sets
/// its own Content-Security-Policy and caching; everything else gets the strictest ones.
pub fn apply_security_headers(headers: &mut HeaderMap) {
    headers.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    headers.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    headers.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer"));
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
}

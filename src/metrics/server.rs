//! The metrics listener (`metrics.bind`): `GET /metrics` and nothing else, no authentication,
//! so it belongs on loopback or a private network. Kept apart from the API port so a scraper
//! never competes with users for the HTTP connection cap, and the API never exposes it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::shutdown::ShutdownSignal;

/// Scrapers are few; more connections than this are closed at once.
const MAX_CONNECTIONS: usize = 16;

pub async fn serve(listener: TcpListener, app: Arc<App>, mut shutdown: ShutdownSignal) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    while let Some((stream, peer)) = crate::net::accept(&listener, &mut shutdown, "metrics").await {
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, "metrics connection limit reached; closing");
            continue;
        };
        let app = Arc::clone(&app);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service_fn(move |req| answer(Arc::clone(&app), req)));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

async fn answer(
    app: Arc<App>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            match tokio::task::spawn_blocking(move || crate::metrics::render(&app)).await {
                Ok(text) => {
                    (StatusCode::OK, prometheus_client::encoding::prometheus_text::CONTENT_TYPE, text)
                }
                Err(e) => {
                    tracing::error!(error = %e, "metrics: rendering failed");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "application/json",
                        r#"{"error":"internal server error"}"#.into(),
                    )
                }
            }
        }
        (_, "/metrics") => {
            (StatusCode::METHOD_NOT_ALLOWED, "application/json", r#"{"error":"method not allowed"}"#.into())
        }
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":"not found; metrics are at /metrics"}"#.into(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    crate::http::response::apply_security_headers(resp.headers_mut());
    Ok(resp)
}

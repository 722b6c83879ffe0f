//! The hyper 1 accept loop, for the plain HTTP port and the HTTPS port alike: connection caps (in
//! all and per address), header and request timeouts, body limit, security headers and graceful
//! shutdown (stop accepting, let in-flight requests finish). On HTTPS, ALPN picks HTTP/2 or
//! HTTP/1.1, and a TLS-ALPN-01 validation ends with its handshake. One connection's serving, and
//! the answers hyper would write on its own, are in [`super::conn`]; the plain port's redirects
//! and ACME HTTP-01 answers in [`super::plain`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderValue, STRICT_TRANSPORT_SECURITY};
use hyper::server::conn::http1;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::conn;
use super::error::{ApiError, ErrorNote};
use super::request::{Request, client_ip};
use super::response::{HttpResponse, apply_security_headers};
use super::router::{RouteError, route};
use crate::address_slots::AddressSlots;
use crate::app::App;
use crate::shutdown::ShutdownSignal;
use crate::tls::certs::ACME_TLS_ALPN;

/// How a listener's connections arrive.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

pub async fn serve(listener: TcpListener, app: Arc<App>, transport: Transport, mut shutdown: ShutdownSignal) {
    let cfg = &app.config.http;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_timeout_secs))
        .keep_alive(true);
    let h2 = conn::h2_builder();
    let what = match transport {
        Transport::Plain => "http",
        Transport::Tls(_) => "https",
    };
    let permits = Arc::new(Semaphore::new(cfg.max_connections));
    let by_address = AddressSlots::new();
    let (stop_tx, stop_rx) = watch::channel(false);

    while let Some((stream, peer)) = crate::net::accept(&listener, &mut shutdown, what).await {
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, limit = cfg.max_connections, "http connection limit reached; refusing connection");
            refuse_busy(&transport, stream, "server busy: too many connections");
            continue;
        };
        // Trusted proxies carry many clients' connections; only the global cap applies to them.
        let (address_slot, from_address) = by_address.take(peer.ip());
        let proxy = app.config.server.is_trusted_proxy(peer.ip());
        if from_address > cfg.max_connections_per_ip && !proxy {
            tracing::warn!(%peer, limit = cfg.max_connections_per_ip, "http connection limit per address reached; refusing connection");
            drop((permit, address_slot));
            refuse_busy(&transport, stream, "server busy: too many connections from your address");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let (builder, h2) = (builder.clone(), h2.clone());
        let stop = stop_rx.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            let handshake = Duration::from_secs(app.config.http.header_timeout_secs);
            let handler = move |secure| move |req| handle(Arc::clone(&app), peer, secure, req);
            let served = match transport {
                Transport::Plain => conn::serve(&builder, stream, peer, stop, handler(false)).await,
                Transport::Tls(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => match tls.get_ref().1.alpn_protocol() {
                            // The CA has seen the challenge certificate; there is nothing to serve.
                            Some(ACME_TLS_ALPN) => Ok(()),
                            Some(b"h2") => conn::serve_h2(&h2, tls, stop, handler(true)).await,
                            _ => conn::serve(&builder, tls, peer, stop, handler(true)).await,
                        },
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::info!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
            drop((permit, address_slot));
        });
    }

    drop(listener);
    stop_tx.send_replace(true);
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    // Every connection holds a permit until it ends: all of them back means all finished.
    let all = u32::try_from(cfg.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = permits.acquire_many(all) => tracing::info!("http: all connections finished"),
        () = tokio::time::sleep(grace) => tracing::warn!(secs = grace.as_secs(), "http: connections still open after the shutdown grace time; closing them"),
    }
}

/// Over a connection cap: a short 503 and close, written without hyper so it costs little. On
/// HTTPS the connection is just closed: answering would cost the TLS handshake the cap saves.
fn refuse_busy(transport: &Transport, mut stream: TcpStream, message: &'static str) {
    if let Transport::Plain = transport {
        tokio::spawn(async move {
            let err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
            conn::write_error(&mut stream, err, &[("retry-after", "1")]).await;
        });
    }
}

async fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    secure: bool,
    req: hyper::Request<Incoming>,
) -> HttpResponse {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let timeout = Duration::from_secs(app.config.http.request_timeout_secs);
    let mut resp = match tokio::time::timeout(timeout, process(&app, peer, secure, req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request timed out").into_response(),
    };
    apply_security_headers(resp.headers_mut());
    // Browsers that met this server over HTTPS with a real certificate stay on HTTPS. Not with
    // the self-signed one: a browser would then refuse to let its user click through.
    if secure && app.certs.as_ref().is_some_and(|c| c.current().source != "self-signed") {
        resp.headers_mut().insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    log_request(&method, &path, peer, &resp, started);
    crate::metrics::http_request(&method, &path, resp.status().as_u16(), started.elapsed());
    resp
}

async fn process(
    app: &Arc<App>,
    peer: SocketAddr,
    secure: bool,
    req: hyper::Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    if let Some(answer) = super::plain::before_routing(app, peer, secure, &req) {
        return answer;
    }
    let endpoint = match route(req.method(), req.uri().path()) {
        Ok(e) => e,
        Err(RouteError::NotFound) => return Err(ApiError::not_found("not found")),
        Err(RouteError::MethodNotAllowed(allow)) => return Err(ApiError::method_not_allowed(allow)),
    };
    let (parts, body) = req.into_parts();
    let limit = app.config.http.max_body_bytes;
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body too large (limit {limit} bytes)"))
    };
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => return Err(ApiError::bad_request(format!("could not read the request body: {e}"))),
    };
    let request = Request {
        client_ip: client_ip(peer.ip(), &parts.headers, &app.config.server.trusted_proxies),
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
    };
    super::handlers::dispatch(app, endpoint, request).await
}

fn log_request(method: &Method, path: &str, peer: SocketAddr, resp: &HttpResponse, started: Instant) {
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = resp.extensions().get::<ErrorNote>().map(|n| n.0.as_str()).unwrap_or("");
    if status >= 500 {
        tracing::error!(target: "toki_sync::access", %method, path, status, %peer, ms, error);
    } else if path == "/health" {
        tracing::debug!(target: "toki_sync::access", %method, path, status, %peer, ms);
    } else {
        tracing::info!(target: "toki_sync::access", %method, path, status, %peer, ms, error);
    }
}

//! One HTTP connection, served by hyper, with every response in our own form.
//!
//! hyper answers some requests itself, before any service runs: a malformed request head (400), a
//! head too large (431), a URI too long (414). Its builder cannot customise those responses, and a
//! header timeout closes the connection without any. So the connection's IO is wrapped
//! ([`Watched`]): it knows when no response of ours is in progress (every request handed to the
//! service has its response body handed back and flushed), and whatever hyper writes at such a
//! time is hyper's own answer. That is discarded; once hyper ends the connection with the parse
//! error, the IO is taken back ([`http1::Connection::into_parts`]) and the same status is written
//! with the security headers and a JSON body, like every other response. A header timeout on a
//! request head that had started to arrive is answered 408 the same way (an idle keep-alive
//! connection is just closed: an unasked-for response there would be read as the answer to the
//! client's next request).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use super::error::ApiError;
use super::response::{HttpResponse, apply_security_headers};

/// Requests handed to the service, and response bodies handed back to (and dropped by) hyper.
#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    ends: AtomicU64,
}

/// The connection's IO, watching for what hyper writes on its own (see the module notes). hyper
/// polls the IO, the service and the response bodies from one task, so the counters are only
/// ever read and changed in order.
pub struct Watched<I> {
    inner: I,
    counters: Arc<Counters>,
    /// `Some(n)`: after `n` requests, every response was handed back and flushed (no response of
    /// ours is in progress until the next request arrives).
    idle_at: Option<u64>,
    /// The start of hyper's own response, discarded (it holds the status).
    own: Option<Vec<u8>>,
}

impl<I> Watched<I> {
    fn new(inner: I, counters: Arc<Counters>) -> Self {
        Watched { inner, counters, idle_at: Some(0), own: None }
    }

    fn idle(&self) -> bool {
        self.idle_at == Some(self.counters.calls.load(Ordering::Acquire))
    }

    /// Discards a write of hyper's own response, keeping its status line.
    fn swallow<'b>(&mut self, bufs: impl IntoIterator<Item = &'b [u8]>) -> Option<usize> {
        if self.own.is_none() && !self.idle() {
            return None;
        }
        let mut own = self.own.take().unwrap_or_default();
        let mut n = 0;
        for b in bufs {
            let keep = b.len().min(16usize.saturating_sub(own.len()));
            own.extend_from_slice(&b[..keep]);
            n += b.len();
        }
        // An empty write says nothing about whose response it is.
        if !own.is_empty() {
            self.own = Some(own);
        }
        Some(n)
    }

    /// The status hyper tried to answer with on its own, if it did.
    fn own_status(&self) -> Option<StatusCode> {
        let own = self.own.as_ref()?;
        // "HTTP/1.1 431 ..."
        let code = own.get(9..12).and_then(|c| std::str::from_utf8(c).ok()?.parse::<u16>().ok());
        Some(code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_REQUEST))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(n) = self.swallow([buf]) {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(n) = self.swallow(bufs.iter().map(|b| &**b)) {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        // hyper flushes its own buffer into the IO before flushing the IO: whatever it was
        // given so far is on its way.
        if matches!(r, Poll::Ready(Ok(()))) {
            let calls = self.counters.calls.load(Ordering::Acquire);
            if self.counters.ends.load(Ordering::Acquire) == calls {
                self.idle_at = Some(calls);
            }
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that counts itself handed back when hyper drops it (after its last frame).
/// It is a whole body, or a streamed one (`super::stream`, the export).
pub struct CountedBody {
    inner: super::stream::AnyBody,
    counters: Arc<Counters>,
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        self.counters.ends.fetch_add(1, Ordering::AcqRel);
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one connection until it ends, stopping gracefully (after the request in progress) once
/// `stop` turns true. `handle` answers each request.
pub async fn serve<I, H, F>(
    builder: &http1::Builder,
    io: I,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
    handle: H,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(hyper::Request<Incoming>) -> F + Send + Unpin + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let counters = Arc::new(Counters::default());
    let service = {
        let counters = Arc::clone(&counters);
        service_fn(move |req| {
            counters.calls.fetch_add(1, Ordering::AcqRel);
            let counters = Arc::clone(&counters);
            let answer = handle(req);
            Box::pin(async move {
                // A streamed body (the export, GET /admin/backup) replaces the handler's empty one here.
                let (parts, body) = super::stream::finish(answer.await).into_parts();
                Ok::<_, Infallible>(hyper::Response::from_parts(parts, CountedBody { inner: body, counters }))
            })
        })
    };
    let mut conn = builder.serve_connection(TokioIo::new(Watched::new(io, Arc::clone(&counters))), service);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break r,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
        }
    };
    let parts = conn.into_parts();
    let mut io = parts.io.into_inner();
    if let Err(e) = &result {
        // What hyper had read of a request head it never finished parsing.
        let partial_head = parts.read_buf.iter().any(|b| !b.is_ascii_whitespace());
        let answer = match io.own_status() {
            Some(status) => Some(ApiError::new(status, own_message(status))),
            None if e.is_timeout() && io.idle() && partial_head => {
                Some(ApiError::new(StatusCode::REQUEST_TIMEOUT, "timed out reading the request headers"))
            }
            None => None,
        };
        if let Some(err) = answer {
            tracing::info!(target: "toki_sync::access", status = err.status.as_u16(), %peer, error = %err.message, "request refused before routing");
            write_error(&mut io.inner, err, &[]).await;
            linger(&mut io.inner).await;
            return result;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), io.inner.shutdown()).await;
    result
}

/// HTTP/2 (HTTPS with ALPN `h2`): hyper answers malformed frames and headers itself, as stream
/// or connection errors, so there is no response of its own to rewrite.
pub type H2Builder = http2::Builder<TokioExecutor>;

pub fn h2_builder() -> H2Builder {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        // A client may keep this many requests in flight on one connection; each still runs
        // under the request timeout and the per-principal rate limits.
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024)
        // Finds peers that went away without closing (an HTTP/2 connection idles for long).
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves one HTTP/2 connection until it ends, stopping gracefully (GOAWAY, then the requests in
/// progress finish) once `stop` turns true.
pub async fn serve_h2<I, H, F>(
    builder: &H2Builder,
    io: I,
    mut stop: watch::Receiver<bool>,
    handle: H,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(hyper::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let service = service_fn(move |req| {
        let answer = handle(req);
        Box::pin(async move { Ok::<_, Infallible>(super::stream::finish(answer.await)) })
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

fn own_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request headers too large",
        StatusCode::URI_TOO_LONG => "request URI too long",
        _ => "malformed request",
    }
}

/// Writes an error response (security headers, JSON body, `connection: close`) straight to a
/// connection hyper does not serve (any more), then closes it. Bounded in time.
pub async fn write_error<W: AsyncWrite + Unpin>(io: &mut W, err: ApiError, extra: &[(&str, &str)]) {
    let mut resp = err.into_response();
    apply_security_headers(resp.headers_mut());
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("Error")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in extra {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        io.write_all(&out).await?;
        io.shutdown().await
    })
    .await;
}

/// Reads what the client is still sending (the rest of a head too large, say) for a moment after
/// an answer: closing a socket with unread data resets the connection, and the client may then
/// lose the answer before reading it.
async fn linger<R: AsyncRead + Unpin>(io: &mut R) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 8192];
        let mut left = 1usize << 20;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

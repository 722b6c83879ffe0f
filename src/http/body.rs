//! The body type the server sends: the handlers' whole bodies, or a stream for the few responses
//! too large to hold in memory (`GET /admin/backup`).
//!
//! Handlers keep returning [`HttpResponse`]; a streaming one attaches a [`Streaming`] extension
//! and the server swaps it in as the body ([`finish`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::response::HttpResponse;

/// Chunks from a producer; an `Err` aborts the response (the client sees a cut connection, not
/// a complete body).
pub type Chunks = mpsc::Receiver<Result<Bytes, std::io::Error>>;

/// A response extension carrying the body stream (extensions must be `Clone`).
#[derive(Clone)]
pub struct Streaming(Arc<Mutex<Option<Chunks>>>);

impl Streaming {
    pub fn new(chunks: Chunks) -> Streaming {
        Streaming(Arc::new(Mutex::new(Some(chunks))))
    }
}

pub enum ResponseBody {
    Full(Full<Bytes>),
    Stream(Chunks),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Full(full) => {
                Pin::new(full).poll_frame(cx).map(|f| f.map(|r| r.map_err(|never| match never {})))
            }
            ResponseBody::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(full) => full.is_end_stream(),
            ResponseBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(full) => full.size_hint(),
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// The response as sent: a [`Streaming`] extension replaces the (empty) body.
pub fn finish(resp: HttpResponse) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    let stream = parts.extensions.remove::<Streaming>().and_then(|s| s.0.lock().ok()?.take());
    match stream {
        Some(rx) => Response::from_parts(parts, ResponseBody::Stream(rx)),
        None => Response::from_parts(parts, ResponseBody::Full(body)),
    }
}

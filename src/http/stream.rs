//! Streamed response bodies (the export): a handler answers with headers and a
//! [`StreamedBody`] marker in the response's extensions; the accept loop sends the chunks a
//! producer pushes into a bounded channel, so memory stays constant and a client that goes
//! away stops the producer (its next send fails).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

/// Chunks in flight between the producer and the socket.
pub const CHANNEL_CHUNKS: usize = 8;

/// An item of the stream: a chunk, or a failure that aborts the response (the client sees a
/// truncated transfer rather than a short file that looks complete).
pub type Chunk = Result<Bytes, std::io::Error>;

/// The marker a handler puts in its response's extensions (extensions must be `Clone`).
#[derive(Clone)]
pub struct StreamedBody(Arc<Mutex<Option<mpsc::Receiver<Chunk>>>>);

/// A channel for a streamed body: the sender for the producer, the marker for the response.
pub fn channel() -> (mpsc::Sender<Chunk>, StreamedBody) {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    (tx, StreamedBody(Arc::new(Mutex::new(Some(rx)))))
}

pub struct ChannelBody(mpsc::Receiver<Chunk>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data)))
    }
}

/// The body type the accept loop sends: a whole body, or a streamed one.
pub type AnyBody = Either<Full<Bytes>, ChannelBody>;

/// Turns a handler's response into the one sent: a streamed body when it carries the marker.
pub fn finish(mut resp: hyper::Response<Full<Bytes>>) -> hyper::Response<AnyBody> {
    let streamed = resp
        .extensions_mut()
        .remove::<StreamedBody>()
        .and_then(|m| m.0.lock().unwrap_or_else(|p| p.into_inner()).take());
    resp.map(|full| match streamed {
        Some(rx) => Either::Right(ChannelBody(rx)),
        None => Either::Left(full),
    })
}

//! `GET /admin/backup` (admin): streams a consistent snapshot of the whole data file.
//!
//! The read transaction is taken before the response starts, so the backup holds exactly what
//! was committed at that moment, while ingest continues. The dump runs on a blocking thread and
//! feeds the response through a small channel: a slow client slows the dump, not the server's
//! memory. If the dump fails midway the connection is cut, so the client never sees a complete
//! (checksummed) file.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use crate::app::App;
use crate::backup::Snapshot;
use crate::backup::format::EXTENSION;
use crate::backup::schedule::stamp;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::HttpResponse;
use crate::http::stream;

const CHUNK: usize = 256 << 10;

/// Sends what is written in chunks; fails once the receiver (the connection) is gone.
struct ChannelWriter {
    tx: mpsc::Sender<stream::Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

pub async fn backup(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let admin = guard::admin(app, &req).await?;
    crate::http::audit::record(app, &req, "backup.download", "data file").await;
    let snapshot = app.blocking(|a| Snapshot::begin(&a.store)).await??;
    let entries = snapshot.header.entries;
    let (tx, body) = stream::channel();
    let errors = tx.clone();
    let user = admin.username.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let writer = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) };
        match snapshot.write(writer).and_then(|mut w| w.flush().map_err(Into::into)) {
            Ok(()) => {
                crate::metrics::backup("http", true);
                tracing::info!(admin = %user, entries, secs = started.elapsed().as_secs_f64(), "backup streamed")
            }
            Err(e) => {
                crate::metrics::backup("http", false);
                tracing::warn!(admin = %user, error = %e, "backup aborted");
                let _ = errors.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    let name = format!("attachment; filename=\"toki-sync-{}.{EXTENSION}\"", stamp(crate::store::now_secs()));
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    // Lets a client show progress; the body's own end record is what proves completeness.
    h.insert("x-backup-entries", HeaderValue::from(entries));
    resp.extensions_mut().insert(body);
    Ok(resp)
}

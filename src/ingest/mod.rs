//! The ingest writer: one thread that owns the write path for usage data.
//!
//! Sync sessions hand it decoded batches; it applies as many as are waiting (up to a bound) in
//! one durable transaction, commits once, and only then answers each session, so a SYNC_ACK
//! always follows a commit and many sessions share the cost of one fsync (group commit). Other
//! changes to usage data (deleting a device or a user) run through the same thread with
//! [`Ingest::exec`], so they are ordered with ingest and never race a batch for the same device.

mod apply;
mod intern;
pub mod recent;
mod writer;

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::WriteTransaction;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError};
use crate::sync::wire::SyncBatchPayload;
pub use apply::{Applied, CLAUDE_CODE};

/// Jobs waiting for the writer. A full queue makes sessions wait (back-pressure) instead of
/// growing without bound.
const QUEUE_DEPTH: usize = 256;

pub struct BatchJob {
    pub device: u32,
    pub user: u32,
    pub batch: SyncBatchPayload,
}

/// The answer to one batch, sent after its transaction committed.
#[derive(Clone, Copy, Debug)]
pub struct BatchOutcome {
    /// The (device, provider) cursor after this batch: the SYNC_ACK value.
    pub cursor: i64,
    pub applied: Applied,
}

#[derive(Debug, Clone)]
pub enum IngestError {
    /// The device was deleted while the session was connected.
    DeviceGone,
    /// Storage failed; the batch was not committed (transient for the client).
    Store(String),
    /// The writer has stopped (server shutting down).
    Stopped,
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::DeviceGone => f.write_str("device was removed"),
            IngestError::Store(e) => write!(f, "storage error: {e}"),
            IngestError::Stopped => f.write_str("server is shutting down"),
        }
    }
}

/// What an [`Ingest::exec`] closure can do besides writing through `txn`.
pub struct ExecCtx<'a> {
    pub txn: &'a WriteTransaction,
    forget: Vec<u32>,
}

impl ExecCtx<'_> {
    /// Drops the writer's in-memory state for a device whose events this closure deletes.
    pub fn forget_device(&mut self, device: u32) {
        self.forget.push(device);
    }
}

type ExecResult = Result<Box<dyn Any + Send>, StoreError>;
type ExecFn = Box<dyn FnOnce(&mut ExecCtx<'_>) -> ExecResult + Send>;

/// The outcome, and the job itself: its decoded batch (thousands of small allocations) is freed
/// by the session that submitted it rather than on the writer thread, the server's bottleneck.
type BatchReply = (Result<BatchOutcome, IngestError>, BatchJob);

enum Job {
    Batch(BatchJob, oneshot::Sender<BatchReply>),
    Exec(ExecFn, oneshot::Sender<ExecResult>),
}

/// Counters for status pages and benchmarks.
#[derive(Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub batches: AtomicU64,
    pub items: AtomicU64,
}

impl WriterStats {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
            self.items.load(Ordering::Relaxed),
        )
    }
}

/// Handle to the writer thread. The thread ends when every handle is dropped, after finishing
/// the jobs already queued.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
    pub stats: Arc<WriterStats>,
}

impl Ingest {
    /// Starts the writer thread (after rebuilding its recent-message index from the file).
    pub fn start(store: Arc<Store>) -> Result<(Ingest, std::thread::JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(WriterStats::default());
        let state = writer::load_state(&store)?;
        let thread_stats = Arc::clone(&stats);
        let handle = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || writer::run(store, rx, state, thread_stats))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the ingest writer thread: {e}")))?;
        Ok((Ingest { tx, stats }, handle))
    }

    /// Applies a batch; resolves after it is durably committed.
    pub async fn submit(&self, job: BatchJob) -> Result<BatchOutcome, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Batch(job, reply)).await.map_err(|_| IngestError::Stopped)?;
        match rx.await {
            Ok((outcome, spent)) => {
                drop(spent);
                outcome
            }
            Err(_) => Err(IngestError::Stopped),
        }
    }

    /// Runs `f` in its own write transaction on the writer thread and commits it; resolves with
    /// its result after the commit. An error from `f` aborts the transaction.
    pub async fn exec<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ExecCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let job: ExecFn = Box::new(move |ctx| f(ctx).map(|v| Box::new(v) as Box<dyn Any + Send>));
        let stopped = || StoreError::Corrupt("the ingest writer has stopped".into());
        self.tx.send(Job::Exec(job, reply)).await.map_err(|_| stopped())?;
        let out = rx.await.map_err(|_| stopped())??;
        Ok(*out.downcast::<T>().expect("exec result has the closure's type"))
    }
}

#[cfg(test)]
mod tests;

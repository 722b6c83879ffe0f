//! Bounded queues for CPU-heavy request work (password hashing, toki query parsing and
//! evaluation): the work runs on the blocking pool, never on the async workers, at most
//! `parallel` jobs at once; at most `queue` more wait, and one address group may have at most
//! `per_address` jobs running or waiting. A request over a bound is refused at once (503 when
//! the queue is full, 429 for the address) instead of waiting behind everyone else.
//!
//! A request that times out while waiting leaves the queue (its future is dropped). Work that
//! has started runs to its end (a blocking job cannot be interrupted) and keeps its place in
//! the bounds until then, so timed-out requests cannot pile up more work than the bounds allow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::http::error::ApiError;
use crate::net::address_group;

#[derive(Debug, PartialEq, Eq)]
pub enum WorkError {
    /// `parallel + queue` jobs are running or waiting.
    QueueFull,
    /// The caller's address group has `per_address` jobs running or waiting.
    AddressBusy,
    /// The job panicked (a bug; logged).
    Failed,
}

impl From<WorkError> for ApiError {
    fn from(e: WorkError) -> ApiError {
        match e {
            WorkError::QueueFull => ApiError::busy("server busy; retry in a moment", 2),
            WorkError::AddressBusy => ApiError::new(
                hyper::StatusCode::TOO_MANY_REQUESTS,
                "too many requests in progress from this address; retry when they are done",
            )
            .with_retry_after(1),
            WorkError::Failed => ApiError::internal("a background job failed"),
        }
    }
}

pub struct WorkQueue {
    name: &'static str,
    permits: Arc<Semaphore>,
    capacity: usize,
    per_address: usize,
    /// Jobs running or waiting: in all, and per address group.
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A place in the queue; given back when dropped (the job finished, or its request left).
struct Ticket {
    queue: Arc<WorkQueue>,
    group: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.queue.state();
        state.0 -= 1;
        if let Some(g) = self.group {
            if let Some(n) = state.1.get_mut(&g) {
                *n -= 1;
                if *n == 0 {
                    state.1.remove(&g);
                }
            }
        }
    }
}

impl WorkQueue {
    pub fn new(name: &'static str, parallel: usize, queue: usize, per_address: usize) -> Arc<WorkQueue> {
        let parallel = parallel.max(1);
        Arc::new(WorkQueue {
            name,
            permits: Arc::new(Semaphore::new(parallel)),
            capacity: parallel + queue,
            per_address: per_address.max(1),
            state: Mutex::new((0, HashMap::new())),
        })
    }

    /// Twice the cores, the pool size the password hasher always used.
    pub fn default_parallel() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Ticket, WorkError> {
        let group = client.map(address_group);
        let mut state = self.state();
        if state.0 >= self.capacity {
            tracing::warn!(queue = self.name, "work queue full; refusing a request");
            return Err(WorkError::QueueFull);
        }
        if let Some(g) = group {
            let n = state.1.entry(g).or_insert(0);
            if *n >= self.per_address {
                return Err(WorkError::AddressBusy);
            }
            *n += 1;
        }
        state.0 += 1;
        Ok(Ticket { queue: Arc::clone(self), group })
    }

    /// Runs `f` on the blocking pool within the bounds; `client` is the caller's address (`None`
    /// for work no address asked for).
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkError> {
        let ticket = self.enter(client)?;
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| WorkError::Failed)?;
        tokio::task::spawn_blocking(move || {
            let _held = (ticket, permit);
            f()
        })
        .await
        .map_err(|e| {
            tracing::error!(queue = self.name, error = %e, "a background job failed");
            WorkError::Failed
        })
    }

    /// Jobs running or waiting now.
    pub fn in_use(&self) -> usize {
        self.state().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test(flavor = "multi_thread")]
    async fn bounds_are_enforced_and_given_back() {
        let q = WorkQueue::new("test", 2, 3, 2);
        let (tx, rx) = mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut jobs = Vec::new();
        // Five blocked jobs from five addresses: two run, three wait; the queue is full.
        for i in 0..5u8 {
            let (q, rx) = (Arc::clone(&q), Arc::clone(&rx));
            let ip = IpAddr::from([10, 0, 1, i]);
            jobs.push(tokio::spawn(async move {
                q.run(Some(ip), move || {
                    let _ = rx.lock().unwrap().recv();
                })
                .await
            }));
        }
        while q.in_use() < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(q.run(Some(a), || ()).await, Err(WorkError::QueueFull));
        assert_eq!(q.run(None, || ()).await, Err(WorkError::QueueFull));
        for _ in 0..5 {
            tx.send(()).unwrap();
        }
        for j in jobs {
            assert_eq!(j.await.unwrap(), Ok(()));
        }
        assert_eq!(q.in_use(), 0, "every place is given back");

        // Per address group: two at once from one IPv6 /64, a third is refused, others are not.
        let q = WorkQueue::new("test", 3, 0, 2);
        let mut held = Vec::new();
        for i in 1..=2u16 {
            let (q, rx) = (Arc::clone(&q), Arc::clone(&rx));
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i));
            held.push(tokio::spawn(async move {
                q.run(Some(ip), move || {
                    let _ = rx.lock().unwrap().recv();
                })
                .await
            }));
        }
        while q.in_use() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let same: IpAddr = "2001:db8:0:1:ffff::9".parse().unwrap();
        assert_eq!(q.run(Some(same), || ()).await, Err(WorkError::AddressBusy));
        assert_eq!(q.run(Some(a), || 7).await, Ok(7));
        for _ in 0..2 {
            tx.send(()).unwrap();
        }
        for j in held {
            assert_eq!(j.await.unwrap(), Ok(()));
        }
        assert_eq!(q.run(Some(same), || 8).await, Ok(8));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_request_that_leaves_while_waiting_gives_its_place_back() {
        let q = WorkQueue::new("test", 1, 1, 5);
        let (tx, rx) = mpsc::channel::<()>();
        let running = {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                q.run(None, move || {
                    let _ = rx.recv();
                })
                .await
            })
        };
        while q.in_use() < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Waits for the permit; timed out (as the request timeout does), it leaves the queue.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), q.run(None, || ())).await;
        assert!(waited.is_err());
        assert_eq!(q.in_use(), 1);
        tx.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Ok(()));
        assert_eq!(q.in_use(), 0);
    }
}

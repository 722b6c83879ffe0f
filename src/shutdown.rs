//! One shutdown signal for the whole server: triggered by SIGINT/SIGTERM, by the embedding code
//! (tests), or by a fatal storage failure, which is remembered so the process exits non-zero and
//! systemd restarts it.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    fatal: Arc<Mutex<Option<String>>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown { tx: Arc::new(watch::channel(false).0), fatal: Arc::new(Mutex::new(None)) }
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Stops the server because it cannot go on; `wait` then reports the reason.
    pub fn fail(&self, reason: &str) {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| reason.to_owned());
        self.trigger();
    }

    pub fn fatal_reason(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.tx.subscribe())
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// Resolves once shutdown has been triggered (at once if it already was). Cancel-safe.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

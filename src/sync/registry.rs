//! Live sync sessions: who is connected right now, for `/admin/active`, the connected-devices
//! count, and for closing connections whose device or account was deleted, or whose user's
//! password changed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub user_id: u32,
    pub user_uuid: Uuid,
    pub username: String,
    pub device_id: u32,
    pub device_uuid: Uuid,
    pub device_name: String,
    pub provider: String,
    pub peer: SocketAddr,
    pub tls: bool,
    /// Unix seconds.
    pub connected_at: i64,
    pub last_activity_at: i64,
    pub last_batch_at: Option<i64>,
    /// The cursor after the last acknowledged batch.
    pub last_ts_ms: i64,
    /// Items acknowledged on this connection.
    pub events_accepted: u64,
}

struct Entry {
    info: SessionInfo,
    kill: Arc<Notify>,
}

#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    sessions: Mutex<HashMap<u64, Entry>>,
}

impl Registry {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a session; it is removed when the guard drops.
    pub fn register(self: &Arc<Self>, info: SessionInfo) -> SessionGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(Notify::new());
        self.sessions().insert(id, Entry { info, kill: Arc::clone(&kill) });
        SessionGuard { registry: Arc::clone(self), id, kill }
    }

    /// All live sessions, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self.sessions().values().map(|e| e.info.clone()).collect();
        out.sort_by_key(|s| (s.connected_at, s.device_id));
        out
    }

    /// How many sessions are live (without copying them, as `list` does).
    pub fn count(&self) -> usize {
        self.sessions().len()
    }

    /// Distinct devices with at least one live session.
    pub fn connected_devices(&self) -> usize {
        let sessions = self.sessions();
        let mut ids: Vec<u32> = sessions.values().map(|e| e.info.device_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Closes every session matching `pred`; returns how many were told to close.
    pub fn disconnect(&self, pred: impl Fn(&SessionInfo) -> bool) -> usize {
        let sessions = self.sessions();
        let mut n = 0;
        for e in sessions.values().filter(|e| pred(&e.info)) {
            e.kill.notify_one();
            n += 1;
        }
        n
    }
}

impl Registry {
    /// Closes every live session of one user (account deleted, password changed or reset).
    pub fn disconnect_user(&self, user_id: u32) -> usize {
        self.disconnect(|s| s.user_id == user_id)
    }
}

pub struct SessionGuard {
    registry: Arc<Registry>,
    id: u64,
    kill: Arc<Notify>,
}

impl SessionGuard {
    pub fn update(&self, f: impl FnOnce(&mut SessionInfo)) {
        if let Some(e) = self.registry.sessions().get_mut(&self.id) {
            f(&mut e.info);
        }
    }

    /// Resolves when the session was told to close (see [`Registry::disconnect`]).
    pub async fn killed(&self) {
        self.kill.notified().await;
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.registry.sessions().remove(&self.id);
    }
}

//! The background task that drains the VictoriaMetrics outbox (`store::vm_outbox`): claim a
//! round of queued buckets, send them, acknowledge them; then delete the series of deleted
//! devices. Failures are retried with exponential back-off and lose nothing, since the outbox
//! stays in the data file until VictoriaMetrics has accepted the samples. The ingest writer never
//! waits for any of this: a SYNC_ACK only needs the outbox entry, written in the batch's own
//! transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::samples;
use crate::app::App;
use crate::shutdown::ShutdownSignal;
use crate::store::vm_outbox::{self, Backlog};
use crate::store::{now_ms, rfc3339};

/// Buckets per round (about 1.5 kB of samples each).
const ROUND_BUCKETS: usize = 2000;
/// Device deletions per round.
const ROUND_DELETIONS: usize = 100;
/// How often an empty outbox is looked at.
const POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A device's series are deleted only this long after its deletion is first seen. VictoriaMetrics
/// makes a new series findable by `delete_series` about a second after it arrives; samples of the
/// device sent just before its deletion must be findable, or they would survive it.
const DELETE_DELAY: Duration = Duration::from_secs(10);

/// What the drainer reports (server info, `/me`).
#[derive(Default)]
pub struct DrainStatus(Mutex<StatusInner>);

#[derive(Clone, Default)]
struct StatusInner {
    last_push_ms: Option<i64>,
    failing_since_ms: Option<i64>,
    last_error: Option<String>,
    buckets_sent: u64,
    devices_deleted: u64,
}

/// The drainer's state, as shown by `/admin/server-info`.
#[derive(Serialize)]
pub struct StatusView {
    pub configured: bool,
    pub outbox: Backlog,
    pub last_push_at: Option<String>,
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
    pub buckets_sent: u64,
    pub devices_deleted: u64,
}

impl DrainStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self, outbox: Backlog) -> StatusView {
        let s = self.lock().clone();
        StatusView {
            configured: true,
            outbox,
            last_push_at: s.last_push_ms.and_then(|ms| rfc3339(ms.div_euclid(1000))),
            failing_since: s.failing_since_ms.and_then(|ms| rfc3339(ms.div_euclid(1000))),
            last_error: s.last_error,
            buckets_sent: s.buckets_sent,
            devices_deleted: s.devices_deleted,
        }
    }

    fn succeeded(&self, buckets: usize, deleted: usize) {
        let mut s = self.lock();
        if let Some(since) = s.failing_since_ms.take() {
            tracing::info!(failing_secs = (now_ms() - since) / 1000, "VictoriaMetrics accepts writes again; the outbox is draining");
        }
        s.last_push_ms = Some(now_ms());
        s.buckets_sent += buckets as u64;
        s.devices_deleted += deleted as u64;
    }

    fn failed(&self, error: String) {
        let mut s = self.lock();
        if s.failing_since_ms.is_none() {
            tracing::warn!(%error, "VictoriaMetrics write failed; the outbox keeps everything and retries with back-off");
            s.failing_since_ms = Some(now_ms());
        } else {
            tracing::debug!(%error, "VictoriaMetrics write failed again");
        }
        s.last_error = Some(error);
    }
}

/// Runs until shutdown. Does nothing without a configured VictoriaMetrics.
pub async fn run(app: Arc<App>, mut stop: ShutdownSignal) {
    let Some(vm) = app.query.vm.as_ref() else { return };
    match app.blocking(|a| a.store.vm_backlog()).await {
        Ok(Ok(b)) => tracing::info!(buckets = b.buckets, deletions = b.deletions, "VictoriaMetrics outbox drainer started"),
        other => tracing::warn!(result = ?other.map(|r| r.map(|_| ())), "cannot read the VictoriaMetrics outbox size"),
    }
    let mut first_seen: HashMap<Uuid, Instant> = HashMap::new();
    let mut backoff = Duration::ZERO;
    loop {
        let wait = match round(&app, &mut first_seen).await {
            Ok(more) => {
                backoff = Duration::ZERO;
                if more { Duration::ZERO } else { POLL }
            }
            Err(e) => {
                vm.status.failed(e);
                backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                backoff
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.wait() => break,
        }
    }
    tracing::debug!("VictoriaMetrics outbox drainer stopped");
}

/// One round. Returns whether more is waiting right away.
async fn round(app: &Arc<App>, first_seen: &mut HashMap<Uuid, Instant>) -> Result<bool, String> {
    let Some(vm) = app.query.vm.as_ref() else { return Ok(false) };
    let backlog = app.blocking(|a| a.store.vm_backlog()).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let mut more = false;
    let mut sent = 0;
    if backlog.buckets > 0 {
        let claim = app.ingest.exec(|ctx| vm_outbox::claim_in(ctx.txn, ROUND_BUCKETS)).await.map_err(|e| e.to_string())?;
        if claim.revision_capped {
            tracing::error!(
                "a rollup bucket reached {} VictoriaMetrics revisions; its newest value may tie with an older one",
                vm_outbox::MAX_REVISION
            );
        }
        if !claim.buckets.is_empty() {
            let body = samples::encode(&claim.buckets);
            let client = vm.client.clone();
            tokio::task::spawn_blocking(move || client.import(body)).await.map_err(|e| e.to_string())??;
        }
        let acks: Vec<_> = claim.buckets.iter().map(|b| (b.key, b.record.clone())).collect();
        sent = acks.len();
        app.ingest.exec(move |ctx| vm_outbox::ack_in(ctx.txn, &acks, &[])).await.map_err(|e| e.to_string())?;
        more = claim.buckets.len() == ROUND_BUCKETS;
    }
    let mut deleted = 0;
    if backlog.deletions > 0 {
        let pending = app.blocking(|a| a.store.vm_pending_deletions(ROUND_DELETIONS)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        first_seen.retain(|d, _| pending.contains(d));
        let now = Instant::now();
        let due: Vec<Uuid> =
            pending.iter().copied().filter(|d| now.duration_since(*first_seen.entry(*d).or_insert(now)) >= DELETE_DELAY).collect();
        if !due.is_empty() {
            let (client, list) = (vm.client.clone(), due.clone());
            tokio::task::spawn_blocking(move || list.iter().try_for_each(|d| client.delete_device_series(*d)))
                .await
                .map_err(|e| e.to_string())??;
            let acked = due.clone();
            app.ingest.exec(move |ctx| vm_outbox::ack_in(ctx.txn, &[], &acked)).await.map_err(|e| e.to_string())?;
            for d in &due {
                first_seen.remove(d);
            }
            deleted = due.len();
        }
    }
    if sent > 0 || deleted > 0 {
        vm.status.succeeded(sent, deleted);
    }
    Ok(more)
}

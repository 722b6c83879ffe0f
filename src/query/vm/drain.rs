//! The background task that drains the VictoriaMetrics outbox (`store::vm_outbox`): claim a
//! round of queued buckets, send them, acknowledge them; then delete the series of deleted
//! devices. Failures are retried with exponential back-off and lose nothing, since the outbox
//! stays in the data file until VictoriaMetrics has accepted the samples. The ingest writer never
//! waits for any of this: a SYNC_ACK only needs the outbox entry, written in the batch's own
//! transaction.
//!
//! Nothing is sent to a VictoriaMetrics whose flags would make the data wrong (no hourly
//! deduplication, a short retention; see [`flags`]): its `/flags` are checked at start, after
//! every failure (VictoriaMetrics may have been restarted with other flags) and every few
//! minutes. While they are wrong the outbox waits, and the problem is logged and shown in
//! `/admin/server-info`. Buckets more than a day in the future also wait, since VictoriaMetrics
//! drops such samples while answering 2xx.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::{Vm, flags, samples};
use crate::app::App;
use crate::query::source::hour_u32;
use crate::query::time::{DAY_MS, HOUR_MS};
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
/// Between two full rounds the drainer rests as long as the last round kept the ingest writer
/// busy (within these bounds), so a large backlog takes at most about half the writer's time and
/// SYNC_ACKs never queue behind back-to-back rounds.
const MIN_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(250);
/// How often the flags are checked again while everything works.
const RECHECK: Duration = Duration::from_secs(300);
/// How often wrong flags are checked again (fixing them means restarting VictoriaMetrics).
const CONFIG_RECHECK: Duration = Duration::from_secs(10);
/// Buckets whose hour starts later than this after now wait: VictoriaMetrics silently drops
/// samples more than about two days in the future.
const FUTURE_HORIZON_MS: i64 = DAY_MS;
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
    config_problem: Option<String>,
    buckets_sent: u64,
    devices_deleted: u64,
}

/// The drainer's state, as shown by `/admin/server-info`.
#[derive(Serialize)]
pub struct StatusView {
    pub configured: bool,
    pub outbox: Backlog,
    /// The hour (RFC 3339) of the oldest usage still waiting.
    pub outbox_oldest_hour: Option<String>,
    pub last_push_at: Option<String>,
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
    /// Why nothing is sent although VictoriaMetrics answers: its flags are wrong.
    pub config_problem: Option<String>,
    pub buckets_sent: u64,
    pub devices_deleted: u64,
}

/// An hour number as RFC 3339.
pub fn hour_rfc3339(hour: u32) -> Option<String> {
    rfc3339(i64::from(hour) * HOUR_MS / 1000)
}

impl DrainStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self, outbox: Backlog, oldest_hour: Option<u32>) -> StatusView {
        let s = self.lock().clone();
        StatusView {
            configured: true,
            outbox,
            outbox_oldest_hour: oldest_hour.and_then(hour_rfc3339),
            last_push_at: s.last_push_ms.and_then(|ms| rfc3339(ms.div_euclid(1000))),
            failing_since: s.failing_since_ms.and_then(|ms| rfc3339(ms.div_euclid(1000))),
            last_error: s.last_error,
            config_problem: s.config_problem,
            buckets_sent: s.buckets_sent,
            devices_deleted: s.devices_deleted,
        }
    }

    fn succeeded(&self, buckets: usize, deleted: usize) {
        let mut s = self.lock();
        if let Some(since) = s.failing_since_ms.take() {
            tracing::info!(
                failing_secs = (now_ms() - since) / 1000,
                "VictoriaMetrics accepts writes again; the outbox is draining"
            );
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

    /// VictoriaMetrics answers, but with flags that would make its data wrong.
    fn misconfigured(&self, problem: String) {
        let mut s = self.lock();
        if s.config_problem.as_deref() != Some(problem.as_str()) {
            tracing::error!(
                %problem,
                "VictoriaMetrics is not configured as toki-sync needs; nothing is sent to it until this is fixed (the outbox keeps everything)"
            );
        }
        // It answered, so it is no outage.
        s.failing_since_ms = None;
        s.config_problem = Some(problem);
    }

    fn flags_ok(&self) {
        let mut s = self.lock();
        if s.config_problem.take().is_some() {
            tracing::info!("VictoriaMetrics' flags are right now; sending the outbox");
        }
    }
}

/// Why a round stopped.
enum Failure {
    /// VictoriaMetrics (or the store) failed: retry with back-off.
    Io(String),
    /// VictoriaMetrics' flags are wrong: send nothing, check again later.
    Config(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Io(e.to_string())
    }
}

/// Runs until shutdown. Does nothing without a configured VictoriaMetrics.
pub async fn run(app: Arc<App>, mut stop: ShutdownSignal) {
    let Some(vm) = app.query.vm.as_ref() else { return };
    match app.blocking(|a| a.store.vm_backlog()).await {
        Ok(Ok(b)) => tracing::info!(
            buckets = b.buckets,
            deletions = b.deletions,
            "VictoriaMetrics outbox drainer started"
        ),
        other => {
            tracing::warn!(result = ?other.map(|r| r.map(|_| ())), "cannot read the VictoriaMetrics outbox size")
        }
    }
    let mut first_seen: HashMap<Uuid, Instant> = HashMap::new();
    let mut checked: Option<Instant> = None;
    let mut backoff = Duration::ZERO;
    loop {
        let result = match check_flags(vm, &mut checked).await {
            Ok(()) => round(&app, vm, &mut first_seen).await,
            Err(e) => Err(e),
        };
        let wait = match result {
            Ok(Some(writer_time)) => {
                backoff = Duration::ZERO;
                writer_time.clamp(MIN_PAUSE, MAX_PAUSE)
            }
            Ok(None) => {
                backoff = Duration::ZERO;
                POLL
            }
            Err(failure) => {
                // Whatever failed, VictoriaMetrics may have been restarted: check its flags
                // again before the next send.
                checked = None;
                match failure {
                    Failure::Config(problem) => {
                        vm.status.misconfigured(problem);
                        CONFIG_RECHECK
                    }
                    Failure::Io(e) => {
                        vm.status.failed(e);
                        backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                        backoff
                    }
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.wait() => break,
        }
    }
    tracing::debug!("VictoriaMetrics outbox drainer stopped");
}

/// Reads VictoriaMetrics' flags unless they were found right recently. An unreachable
/// `/flags` is an outage like any other.
async fn check_flags(vm: &Vm, checked: &mut Option<Instant>) -> Result<(), Failure> {
    if checked.is_some_and(|t| t.elapsed() < RECHECK) {
        return Ok(());
    }
    let client = vm.client.clone();
    let text = tokio::task::spawn_blocking(move || client.flags()).await?.map_err(Failure::Io)?;
    if let Some(problem) = flags::problems(&text) {
        return Err(Failure::Config(problem));
    }
    vm.status.flags_ok();
    *checked = Some(Instant::now());
    Ok(())
}

/// One round. Returns, when a full round was sent and more is waiting, how long it kept the
/// ingest writer busy.
async fn round(
    app: &Arc<App>,
    vm: &Vm,
    first_seen: &mut HashMap<Uuid, Instant>,
) -> Result<Option<Duration>, Failure> {
    let backlog = app.blocking(|a| a.store.vm_backlog()).await??;
    let last_hour = hour_u32((now_ms() + FUTURE_HORIZON_MS).div_euclid(HOUR_MS));
    let mut more = None;
    let mut sent = 0;
    // A read transaction first: when only future buckets wait, the writer is not bothered.
    if backlog.buckets > 0 && app.blocking(move |a| a.store.vm_due(last_hour)).await?? {
        let started = Instant::now();
        let claim =
            app.ingest.exec(move |ctx| vm_outbox::claim_in(ctx.txn, ROUND_BUCKETS, last_hour)).await?;
        let mut writer_time = started.elapsed();
        if claim.revision_capped {
            tracing::error!(
                "a rollup bucket reached {} VictoriaMetrics revisions; its newest value may tie with an older one",
                vm_outbox::MAX_REVISION
            );
        }
        if !claim.buckets.is_empty() {
            let body = samples::encode(&claim.buckets);
            let client = vm.client.clone();
            tokio::task::spawn_blocking(move || client.import(body)).await?.map_err(Failure::Io)?;
        }
        let acks: Vec<_> = claim.buckets.iter().map(|b| (b.key, b.record.clone())).collect();
        sent = acks.len();
        let started = Instant::now();
        app.ingest.exec(move |ctx| vm_outbox::ack_in(ctx.txn, &acks, &[])).await?;
        writer_time += started.elapsed();
        if claim.buckets.len() == ROUND_BUCKETS {
            more = Some(writer_time);
        }
    }
    let mut deleted = 0;
    if backlog.deletions > 0 {
        let pending = app.blocking(|a| a.store.vm_pending_deletions(ROUND_DELETIONS)).await??;
        first_seen.retain(|d, _| pending.contains(d));
        let now = Instant::now();
        let due: Vec<Uuid> = pending
            .iter()
            .copied()
            .filter(|d| now.duration_since(*first_seen.entry(*d).or_insert(now)) >= DELETE_DELAY)
            .collect();
        if !due.is_empty() {
            let (client, list) = (vm.client.clone(), due.clone());
            tokio::task::spawn_blocking(move || {
                list.iter().try_for_each(|d| client.delete_device_series(*d))
            })
            .await?
            .map_err(Failure::Io)?;
            let acked = due.clone();
            app.ingest.exec(move |ctx| vm_outbox::ack_in(ctx.txn, &[], &acked)).await?;
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

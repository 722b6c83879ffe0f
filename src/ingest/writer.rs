//! The writer thread's loop: gather waiting jobs, apply batches in one transaction, commit,
//! answer. If a batch fails to apply, the group is rolled back and its batches are retried one
//! transaction each, so one bad batch cannot fail the others.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redb::ReadableTable;
use tokio::sync::{mpsc, oneshot};

use super::apply::{Applied, CLAUDE_CODE, Pending, WriterState, apply_batch, cursor_in};
use super::recent::{MAX_PER_STREAM, WINDOW_MS};
use super::{BatchJob, BatchOutcome, BatchReply, ExecCtx, ExecFn, ExecResult, IngestError, Job, WriterStats};
use crate::store::recent_spill;
use crate::store::schema::{CURSORS, EVENTS, STREAM_KEYS};
use crate::store::{Store, StoreError};

/// Upper bounds for one group commit.
const MAX_GROUP_BATCHES: usize = 256;
const MAX_GROUP_ITEMS: usize = 64 * 1024;

type Reply = oneshot::Sender<BatchReply>;

/// Rebuilds the recent Claude message index from the tail of each Claude stream: the newest
/// [`MAX_PER_STREAM`] ids of its window in memory, any older ones in the window written to the
/// spill table (so a restart never loses what the running writer had evicted, and never loads
/// more than the cap). Spilled ids that are out of the window are pruned (a stream that has been
/// silent since, or a file from before the spill table was pruned).
pub fn load_state(store: &Store) -> Result<WriterState, StoreError> {
    let mut state = WriterState::default();
    let Some(claude) = store.string_id(CLAUDE_CODE)? else { return Ok(state) };
    let empty_id = crate::store::events::id_hash("");
    let mut spill: Vec<(u32, u64, i64)> = Vec::new();
    let mut prune: Vec<(u32, i64)> = Vec::new();
    let spilled: crate::fasthash::FxHashMap<u32, i64> = store.recent_spill_oldest()?.into_iter().collect();
    {
        let txn = store.read()?;
        let cursors = txn.open_table(CURSORS)?;
        let streams = txn.open_table(STREAM_KEYS)?;
        let events = txn.open_table(EVENTS)?;
        for row in cursors.iter()? {
            let (key, cursor) = row?;
            let stream = key.value();
            let Some((device, provider)) = streams.get(stream)?.map(|v| v.value()) else { continue };
            if provider != claude {
                continue;
            }
            if let Some(oldest) = spilled.get(&stream) {
                state.recent.mark_spilled(device, stream, *oldest);
            }
            // Newest first: the first ts seen for an id is its stored version.
            let from = cursor.value().saturating_sub(WINDOW_MS);
            for ev in events.range((stream, from, 0)..=(stream, i64::MAX, u64::MAX))?.rev() {
                let (k, _) = ev?;
                let (_, ts, hash) = k.value();
                if hash == empty_id || state.recent.get(stream, hash).is_some() {
                    continue;
                }
                if state.recent.stream_len(stream) < MAX_PER_STREAM {
                    state.recent.set(device, stream, hash, ts);
                } else {
                    state.recent.mark_spilled(device, stream, ts);
                    spill.push((stream, hash, ts));
                }
            }
            if let Some(horizon) = state.recent.spill_to_prune(stream, cursor.value()) {
                prune.push((stream, horizon));
            }
        }
    }
    if !spill.is_empty() || !prune.is_empty() {
        // An id may already be spilled with a newer ts (its later version); `put_in` keeps it.
        // The new rows are inside the window, so the prune leaves them.
        let pruned = store.write(|txn| {
            recent_spill::put_in(txn, &spill)?;
            let mut left = Vec::with_capacity(prune.len());
            for (stream, horizon) in &prune {
                left.push((*stream, recent_spill::prune_in(txn, *stream, *horizon)?.1));
            }
            Ok::<_, StoreError>(left)
        })?;
        for (stream, oldest) in pruned {
            state.recent.spill_pruned(stream, oldest);
        }
    }
    state.recent.commit();
    tracing::debug!(recent_ids = state.recent.len(), spilled = spill.len(), "ingest writer state loaded");
    Ok(state)
}

pub fn run(store: Arc<Store>, mut rx: mpsc::Receiver<Job>, mut state: WriterState, stats: Arc<WriterStats>) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.blocking_recv() {
                Some(j) => j,
                None => break,
            },
        };
        match first {
            Job::Exec(f, reply) => run_exec(&store, &mut state, f, reply),
            Job::Batch(job, reply) => {
                let mut items = job.batch.items.len();
                let mut group = vec![(job, reply)];
                // Take whatever else is already waiting, up to the bounds; an exec job ends the
                // group and runs after it, keeping arrival order.
                while group.len() < MAX_GROUP_BATCHES && items < MAX_GROUP_ITEMS {
                    match rx.try_recv() {
                        Ok(Job::Batch(j, r)) => {
                            items += j.batch.items.len();
                            group.push((j, r));
                        }
                        Ok(exec) => {
                            carry = Some(exec);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_group(&store, &mut state, group, &stats);
            }
        }
    }
    tracing::debug!("ingest writer stopped");
}

fn run_exec(store: &Store, state: &mut WriterState, f: ExecFn, reply: oneshot::Sender<ExecResult>) {
    let result = (|| {
        let txn = store.begin_write()?;
        let mut ctx = ExecCtx { txn: &txn, forget: Vec::new() };
        let out = f(&mut ctx)?;
        let forget = std::mem::take(&mut ctx.forget);
        store.commit(txn)?;
        for device in forget {
            state.recent.forget_device(device);
        }
        Ok(out)
    })();
    let _ = reply.send(result);
}

fn run_group(store: &Store, state: &mut WriterState, group: Vec<(BatchJob, Reply)>, stats: &WriterStats) {
    let started = std::time::Instant::now();
    match try_group(store, state, &group) {
        Ok(outcomes) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.batches.fetch_add(group.len() as u64, Ordering::Relaxed);
            let items: usize = group.iter().map(|(j, _)| j.batch.items.len()).sum();
            stats.items.fetch_add(items as u64, Ordering::Relaxed);
            crate::metrics::group_committed(group.len(), items as u64, started.elapsed());
            // One metrics update per group, not per batch: the writer thread is the hot path.
            let mut sum = Applied::default();
            for a in outcomes.iter().flatten().map(|o| &o.applied) {
                sum.inserted = sum.inserted.saturating_add(a.inserted);
                sum.duplicates = sum.duplicates.saturating_add(a.duplicates);
                sum.replaced = sum.replaced.saturating_add(a.replaced);
                sum.stale = sum.stale.saturating_add(a.stale);
            }
            crate::metrics::events_stored(sum.inserted, sum.duplicates, sum.replaced, sum.stale);
            for ((job, reply), outcome) in group.into_iter().zip(outcomes) {
                let _ = reply.send((outcome, job));
            }
        }
        Err(e) => {
            state.rollback();
            let fatal = matches!(e, StoreError::CommitFailed(_));
            if group.len() > 1 && !fatal {
                tracing::warn!(error = %e, batches = group.len(), "group commit failed; retrying its batches one by one");
                for one in group {
                    run_group(store, state, vec![one], stats);
                }
            } else {
                tracing::error!(error = %e, "batch not committed");
                for (job, reply) in group {
                    let _ = reply.send((Err(IngestError::Store(e.to_string())), job));
                }
            }
        }
    }
}

/// Applies the whole group in one transaction and commits it. On error nothing is committed.
fn try_group(
    store: &Store,
    state: &mut WriterState,
    group: &[(BatchJob, Reply)],
) -> Result<Vec<Result<BatchOutcome, IngestError>>, StoreError> {
    let txn = store.begin_write()?;
    let mut pending = Pending::default();
    let mut applied = Vec::with_capacity(group.len());
    for (job, _) in group {
        applied.push(apply_batch(&txn, state, &mut pending, job)?);
    }
    let evicted = state.recent.evict_over_cap();
    if !evicted.is_empty() {
        tracing::debug!(
            ids = evicted.len(),
            "recent message index over its cap; oldest ids moved to the data file"
        );
        recent_spill::put_in(&txn, &evicted)?;
    }
    let cursors = pending.flush(&txn)?;
    // Spilled ids that fell out of the window go, as they do from memory: one range from the
    // start of the stream's rows in the time-ordered spill index, only when there is any.
    for (stream, cursor) in &cursors {
        if let Some(horizon) = state.recent.spill_to_prune(*stream, *cursor) {
            let (removed, oldest) = recent_spill::prune_in(&txn, *stream, horizon)?;
            tracing::debug!(stream, removed, "spilled recent message ids pruned");
            state.recent.spill_pruned(*stream, oldest);
        }
    }
    let mut outcomes = Vec::with_capacity(group.len());
    for a in applied {
        outcomes.push(match a {
            Ok(applied) => {
                let cursor = match cursors.get(&applied.stream) {
                    Some(c) => *c,
                    None => cursor_in(&txn, applied.stream)?,
                };
                Ok(BatchOutcome { cursor, applied })
            }
            Err(e) => Err(e),
        });
    }
    store.commit(txn)?;
    state.commit();
    Ok(outcomes)
}
